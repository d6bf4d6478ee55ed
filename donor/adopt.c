/* adopt.c - finding the donors a previous agent started (interface and
 * the rules: adopt.h).
 *
 * The parser reads argv the way rmpool-donor's option table would for
 * the five flags it needs, and nothing more: a donor an agent started
 * has exactly the argv spawn_donor() (agent.c) gives it, so anything
 * else in it - another flag, a short flag, a --config file - is skipped,
 * not understood. (A process started by hand with --config and the ids
 * in the file is not found: it is not one an agent started.)
 *
 * The scan reads, per numeric /proc entry: pidfd_open, then exe, owner
 * and cmdline, then whether the pidfd already says "exited" (then the
 * reads may be of a process that reused the pid: skipped). Processes
 * that vanish mid-scan, and ones we may not read, are skipped quietly.
 */
#include "adopt.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMDLINE_MAX 8192 /* a donor's argv is a few hundred bytes */

static int parse_id(const char *s, uint32_t *out)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* Which flag an argument is, and its value when given as --name=VALUE. */
enum flag { F_OTHER, F_COORD, F_POOL, F_DONOR, F_SIZE, F_NOT_A_DONOR };

static enum flag flag_of(const char *arg, const char **inline_value)
{
	static const struct {
		const char *name;
		enum flag f;
	} flags[] = {
		{"--coordinator", F_COORD},	 {"--pool-id", F_POOL},
		{"--donor-id", F_DONOR},	 {"--size", F_SIZE},
		{"--agent", F_NOT_A_DONOR},	 {"--measure-footprint", F_NOT_A_DONOR},
		{"--no-coordinator", F_NOT_A_DONOR},
	};
	*inline_value = NULL;
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		size_t n = strlen(flags[i].name);
		if (strncmp(arg, flags[i].name, n) != 0)
			continue;
		if (arg[n] == '\0')
			return flags[i].f;
		if (arg[n] == '=') {
			*inline_value = arg + n + 1;
			return flags[i].f;
		}
	}
	return F_OTHER;
}

static int apply(enum flag f, const char *v, struct dn_adopt_args *a, unsigned *seen)
{
	switch (f) {
	case F_COORD:
		*seen |= 1u << f;
		return rmp_config_parse_hostport(v, &a->coordinator) ? -EINVAL : 0;
	case F_POOL:
		*seen |= 1u << f;
		return parse_id(v, &a->pool_id);
	case F_DONOR:
		*seen |= 1u << f;
		return parse_id(v, &a->donor_id);
	case F_SIZE:
		*seen |= 1u << f;
		return rmp_config_parse_size(v, &a->size) ? -EINVAL : 0;
	default:
		return 0;
	}
}

int dn_adopt_parse_cmdline(const char *buf, size_t len, struct dn_adopt_args *out)
{
	const unsigned want = 1u << F_COORD | 1u << F_POOL | 1u << F_DONOR | 1u << F_SIZE;
	struct dn_adopt_args a = {0};
	unsigned seen = 0;
	const char *end = buf + len;

	/* argv[0] is the program; the flags follow. Strings are NUL-ended
	 * except perhaps the last: p never reads past end. */
	const char *p = memchr(buf, '\0', len);
	p = p ? p + 1 : end;
	while (p < end) {
		const char *q = memchr(p, '\0', (size_t)(end - p));
		size_t n = q ? (size_t)(q - p) : (size_t)(end - p);
		char arg[512];
		if (n >= sizeof(arg)) { /* no flag of ours is that long */
			p += n + 1;
			continue;
		}
		memcpy(arg, p, n);
		arg[n] = '\0';
		p += n + 1;

		const char *v;
		enum flag f = flag_of(arg, &v);
		if (f == F_NOT_A_DONOR)
			return -ENOENT;
		if (f == F_OTHER)
			continue;
		char next[512];
		if (!v) { /* the value is the next argument */
			if (p >= end)
				return -EINVAL;
			q = memchr(p, '\0', (size_t)(end - p));
			n = q ? (size_t)(q - p) : (size_t)(end - p);
			if (n >= sizeof(next))
				return -EINVAL;
			memcpy(next, p, n);
			next[n] = '\0';
			p += n + 1;
			v = next;
		}
		int rc = apply(f, v, &a, &seen);
		if (rc)
			return rc;
	}
	if ((seen & want) != want || a.pool_id == 0 || a.donor_id == 0 || a.size == 0)
		return -ENOENT;
	*out = a;
	return 0;
}

/* ---- the scan ---- */

/* The whole of a small /proc file; its length, or -1. */
static ssize_t read_small(int dirfd, const char *name, char *buf, size_t cap)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == cap)
			break;
	}
	close(fd);
	return (ssize_t)got;
}

static bool same_exe(int dirfd, const char *exe)
{
	char link[PATH_MAX + 16];
	ssize_t n = readlinkat(dirfd, "exe", link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = '\0';
	size_t e = strlen(exe);
	return strncmp(link, exe, e) == 0 &&
	       (link[e] == '\0' || strcmp(link + e, " (deleted)") == 0);
}

static bool has_exited(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	return poll(&p, 1, 0) != 0; /* readable (exited) or an error */
}

/* 1 with *pidfd_out when pid is a donor of ours, 0 when not. */
static int check_pid(int procfd, pid_t pid, const char *name, const char *exe,
		     const struct rmp_config_hostport *coord, struct dn_adopt_args *a,
		     int *pidfd_out)
{
	char cmdline[CMDLINE_MAX];
	struct stat st;

	int pidfd = pidfd_open(pid, 0);
	if (pidfd < 0)
		return 0; /* gone already */
	int dirfd = openat(procfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		goto out_close_pidfd;
	bool ours = fstat(dirfd, &st) == 0 && st.st_uid == geteuid() && same_exe(dirfd, exe);
	ssize_t n = ours ? read_small(dirfd, "cmdline", cmdline, sizeof(cmdline)) : -1;
	close(dirfd);
	if (n <= 0 || dn_adopt_parse_cmdline(cmdline, (size_t)n, a) != 0)
		goto out_close_pidfd;
	if (strcmp(a->coordinator.host, coord->host) != 0 || a->coordinator.port != coord->port)
		goto out_close_pidfd;
	if (has_exited(pidfd))
		goto out_close_pidfd; /* what we read may be another process's */
	*pidfd_out = pidfd;
	return 1;

out_close_pidfd:
	close(pidfd);
	return 0;
}

int dn_adopt_scan(const char *exe, const struct rmp_config_hostport *coord, dn_adopt_fn *fn,
		  void *arg)
{
	DIR *d = opendir("/proc");
	if (!d)
		return -errno;
	int procfd = dirfd(d), found = 0, rc = 0;
	struct dirent *e;

	while (rc == 0 && (e = readdir(d)) != NULL) {
		char *end;
		long v = strtol(e->d_name, &end, 10);
		if (*end || v <= 0 || (pid_t)v == getpid())
			continue;
		struct dn_adopt_args a;
		int pidfd = -1;
		if (check_pid(procfd, (pid_t)v, e->d_name, exe, coord, &a, &pidfd) != 1)
			continue;
		found++;
		rc = fn(arg, (pid_t)v, pidfd, &a);
	}
	closedir(d);
	return rc ? rc : found;
}
