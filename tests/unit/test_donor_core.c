/*
 * test_donor_core.c - the pure parts of rmpool-donor (donor/ rmpool_donor_core):
 *   away.c   reconnect pacing and the orphan grace, walked through time
 *            given by hand (no clock, no sleep);
 *   adopt.c  the argv parser a restarted agent reads /proc/PID/cmdline
 *            with, and the /proc scan itself, on a stand-in process: a
 *            shell (`sh -c 'read x' sh --coordinator ...`) waiting on a
 *            pipe, whose exe is the shell and whose argv is a donor's.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "adopt.h"
#include "away.h"

/* ---- away.c ---- */

Test(away, not_away_has_no_deadline)
{
	struct dn_away w;
	dn_away_init(&w, 600000, 1);
	cr_assert_eq(dn_away_poll_ms(&w, 5000, false), -1);
	cr_assert(!dn_away_due(&w, 5000));
	cr_assert(!dn_away_orphaned(&w, UINT64_C(1) << 40));
	cr_assert_eq(dn_away_for_ms(&w, 5000), 0);
}

Test(away, first_attempt_one_jittered_step_after_the_loss)
{
	for (uint64_t seed = 1; seed < 200; seed++) {
		struct dn_away w;
		dn_away_init(&w, 600000, seed);
		dn_away_lost(&w, 1000);
		uint64_t d = w.next_try_ms - 1000;
		cr_assert(d >= DN_AWAY_BASE_MS / 2 && d <= DN_AWAY_BASE_MS, "first delay %lu",
			  (unsigned long)d);
		cr_assert(!dn_away_due(&w, 1000 + d - 1));
		cr_assert(dn_away_due(&w, 1000 + d));
		cr_assert_eq(dn_away_poll_ms(&w, 1000, false), (int)d);
	}
}

Test(away, delays_double_to_the_cap_and_stay_under_it)
{
	struct dn_away w;
	dn_away_init(&w, 600000, 7);
	dn_away_lost(&w, 0);
	uint64_t now = w.next_try_ms, prev_nominal = DN_AWAY_BASE_MS;
	for (int i = 0; i < 40; i++) {
		dn_away_failed(&w, now);
		uint64_t d = w.next_try_ms - now;
		uint64_t nominal = prev_nominal * 2 > DN_AWAY_MAX_MS ? DN_AWAY_MAX_MS : prev_nominal * 2;
		cr_assert(d <= nominal && d >= nominal / 2, "attempt %d: delay %lu, nominal %lu", i,
			  (unsigned long)d, (unsigned long)nominal);
		prev_nominal = nominal;
		now = w.next_try_ms;
	}
	cr_assert_eq(w.attempts, 40);
}

Test(away, orphaned_exactly_at_the_grace)
{
	struct dn_away w;
	dn_away_init(&w, 600000, 3);
	dn_away_lost(&w, 10000);
	cr_assert(!dn_away_orphaned(&w, 10000 + 599999));
	cr_assert(dn_away_orphaned(&w, 10000 + 600000));
	cr_assert_eq(dn_away_for_ms(&w, 10000 + 1234), 1234);
	/* While an attempt runs only the grace counts. */
	cr_assert_eq(dn_away_poll_ms(&w, 10000 + 500000, true), 100000);
	/* Past every deadline: 0, never negative (poll's "forever"). */
	cr_assert_eq(dn_away_poll_ms(&w, 10000 + 700000, true), 0);
	cr_assert_eq(dn_away_poll_ms(&w, 10000 + 700000, false), 0);
}

Test(away, the_nearer_deadline_wins)
{
	struct dn_away w;
	dn_away_init(&w, 1000, 3);
	dn_away_lost(&w, 0);
	for (int i = 0; i < 10; i++)
		dn_away_failed(&w, 900); /* next try >= 1900: after the grace */
	cr_assert_eq(dn_away_poll_ms(&w, 900, false), 100, "the grace ends first");
	cr_assert_eq(dn_away_poll_ms(&w, 950, false), 50);
}

Test(away, a_long_grace_is_clamped_not_wrapped)
{
	struct dn_away w;
	dn_away_init(&w, UINT64_C(1) << 40, 3);
	dn_away_lost(&w, 0);
	cr_assert_eq(dn_away_poll_ms(&w, 0, true), INT_MAX);
	cr_assert(dn_away_poll_ms(&w, 0, false) <= (int)DN_AWAY_BASE_MS);
}

Test(away, the_grace_runs_from_the_first_loss_until_accepted)
{
	struct dn_away w;
	dn_away_init(&w, 600000, 3);
	dn_away_lost(&w, 1000);
	dn_away_failed(&w, 2000);
	dn_away_lost(&w, 5000); /* again while away: no new grace */
	cr_assert_eq(w.since_ms, 1000);
	cr_assert_eq(w.attempts, 1);
	dn_away_back(&w);
	cr_assert(!w.away);
	cr_assert_eq(dn_away_poll_ms(&w, 6000, false), -1);
	dn_away_lost(&w, 9000); /* a new loss: a new grace, pacing from the start */
	cr_assert_eq(w.since_ms, 9000);
	cr_assert_eq(w.attempts, 0);
	cr_assert(w.next_try_ms - 9000 <= DN_AWAY_BASE_MS);
	cr_assert(!dn_away_orphaned(&w, 1000 + 600000));
}

/* ---- adopt.c: the parser ---- */

/* argv as /proc/PID/cmdline holds it, from a NULL-terminated list. */
static size_t cmdline(char *buf, size_t cap, const char *const *argv)
{
	size_t n = 0;
	for (; *argv; argv++) {
		size_t l = strlen(*argv) + 1;
		cr_assert(n + l <= cap);
		memcpy(buf + n, *argv, l);
		n += l;
	}
	return n;
}

static int parse(const char *const *argv, struct dn_adopt_args *a)
{
	char buf[4096];
	size_t n = cmdline(buf, sizeof(buf), argv);
	return dn_adopt_parse_cmdline(buf, n, a);
}

Test(adopt_parse, what_an_agent_spawns)
{
	const char *argv[] = {"/usr/local/bin/rmpool-donor", "--coordinator", "10.0.0.1:7400",
			      "--pool-id", "3", "--donor-id", "17", "--size", "67108864",
			      "--process-limit", "268435456", "--timeout", "10000ms",
			      "--orphan-grace", "600000ms", "--log-level", "info", "--rdma-addr",
			      "10.0.0.2", NULL};
	struct dn_adopt_args a;
	cr_assert_eq(parse(argv, &a), 0);
	cr_assert_eq(a.pool_id, 3);
	cr_assert_eq(a.donor_id, 17);
	cr_assert_eq(a.size, UINT64_C(67108864));
	cr_assert_str_eq(a.coordinator.host, "10.0.0.1");
	cr_assert_eq(a.coordinator.port, 7400);
}

Test(adopt_parse, inline_values_units_and_ipv6)
{
	const char *argv[] = {"rmpool-donor", "--size=64M", "--coordinator=[fd00::1]:7400",
			      "--donor-id=2", "--pool-id=1", NULL};
	struct dn_adopt_args a;
	cr_assert_eq(parse(argv, &a), 0);
	cr_assert_eq(a.size, UINT64_C(64) << 20);
	cr_assert_str_eq(a.coordinator.host, "fd00::1");
	cr_assert_eq(a.donor_id, 2);
}

Test(adopt_parse, not_a_pool_donor)
{
	struct dn_adopt_args a;
	const char *agent[] = {"rmpool-donor", "--agent", "--coordinator", "h:1", "--budget", "1G",
			       "--pool-id", "1", "--donor-id", "1", "--size", "1M", NULL};
	const char *standalone[] = {"rmpool-donor", "--coordinator", "h:1", "--size", "1M", NULL};
	const char *zero[] = {"rmpool-donor", "--coordinator", "h:1", "--size", "1M",
			      "--pool-id", "0", "--donor-id", "0", NULL};
	const char *probe[] = {"rmpool-donor", "--measure-footprint", NULL};
	const char *nosize[] = {"rmpool-donor", "--coordinator", "h:1", "--pool-id", "1",
				"--donor-id", "1", NULL};
	const char *only0[] = {"rmpool-donor", NULL};
	cr_assert_eq(parse(agent, &a), -ENOENT);
	cr_assert_eq(parse(standalone, &a), -ENOENT);
	cr_assert_eq(parse(zero, &a), -ENOENT);
	cr_assert_eq(parse(probe, &a), -ENOENT);
	cr_assert_eq(parse(nosize, &a), -ENOENT);
	cr_assert_eq(parse(only0, &a), -ENOENT);
	cr_assert_eq(dn_adopt_parse_cmdline("", 0, &a), -ENOENT);
}

Test(adopt_parse, bad_values)
{
	struct dn_adopt_args a;
	const char *id[] = {"d", "--coordinator", "h:1", "--size", "1M", "--pool-id", "x1",
			    "--donor-id", "1", NULL};
	const char *big[] = {"d", "--donor-id", "4294967296", NULL};
	const char *neg[] = {"d", "--pool-id", "-1", NULL};
	const char *hp[] = {"d", "--coordinator", "nohost", NULL};
	const char *size[] = {"d", "--size", "12Q", NULL};
	const char *dangling[] = {"d", "--coordinator", "h:1", "--size", NULL};
	cr_assert_eq(parse(id, &a), -EINVAL);
	cr_assert_eq(parse(big, &a), -EINVAL);
	cr_assert_eq(parse(neg, &a), -EINVAL);
	cr_assert_eq(parse(hp, &a), -EINVAL);
	cr_assert_eq(parse(size, &a), -EINVAL);
	cr_assert_eq(parse(dangling, &a), -EINVAL);
}

Test(adopt_parse, unknown_arguments_and_long_ones_are_skipped)
{
	char longarg[1000];
	memset(longarg, 'x', sizeof(longarg) - 1);
	longarg[sizeof(longarg) - 1] = '\0';
	const char *argv[] = {"d", "-v", longarg, "--coordinator", "h:9", "--sizes", "5",
			      "--pool-id", "1", "--donor-id", "2", "--size", "4096", NULL};
	struct dn_adopt_args a;
	cr_assert_eq(parse(argv, &a), 0);
	cr_assert_eq(a.size, 4096);
}

Test(adopt_parse, the_last_nul_may_be_missing)
{
	char buf[256];
	const char *argv[] = {"d", "--coordinator", "h:9", "--pool-id", "1", "--donor-id", "2",
			      "--size", "4096", NULL};
	size_t n = cmdline(buf, sizeof(buf), argv);
	struct dn_adopt_args a;
	cr_assert_eq(dn_adopt_parse_cmdline(buf, n - 1, &a), 0);
	cr_assert_eq(a.size, 4096);
	/* ...and a value cut off by the end is not read past it. */
	cr_assert_eq(dn_adopt_parse_cmdline(buf, n - 3, &a), 0);
	cr_assert_eq(a.size, 40);
}

/* ---- adopt.c: the scan ---- */

struct found {
	pid_t want;
	int hits, others;
	struct dn_adopt_args args;
	int pidfd;
};

static int record(void *arg, pid_t pid, int pidfd, const struct dn_adopt_args *a)
{
	struct found *f = arg;
	if (pid == f->want && f->hits++ == 0) {
		f->args = *a;
		f->pidfd = pidfd;
		return 0;
	}
	f->others++;
	close(pidfd);
	return 0;
}

/* A shell that waits on a pipe, with a donor's argv. */
static pid_t stand_in(int *wfd, const char *port)
{
	int p[2];
	cr_assert(pipe(p) == 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		dup2(p[0], STDIN_FILENO);
		close(p[0]);
		close(p[1]);
		char coord[32];
		snprintf(coord, sizeof(coord), "127.0.0.1:%s", port);
		execl("/bin/sh", "sh", "-c", "read x", "sh", "--coordinator", coord, "--pool-id",
		      "3", "--donor-id", "4", "--size", "1M", (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	*wfd = p[1];
	/* exec has happened when the cmdline shows the flags. */
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	for (int i = 0; i < 200; i++) {
		FILE *fp = fopen(path, "r");
		size_t n = fp ? fread(buf, 1, sizeof(buf), fp) : 0;
		if (fp)
			fclose(fp);
		if (memmem(buf, n, "--donor-id", 10))
			break;
		usleep(10000);
	}
	return pid;
}

Test(adopt_scan, finds_the_donor_of_our_coordinator_only)
{
	char *sh = realpath("/bin/sh", NULL);
	cr_assert(sh, "no /bin/sh");
	int wfd;
	pid_t pid = stand_in(&wfd, "7409");

	struct rmp_config_hostport ours = {.host = "127.0.0.1", .port = 7409};
	struct rmp_config_hostport other = {.host = "127.0.0.1", .port = 7410};
	struct found f = {.want = pid, .pidfd = -1};
	int n = dn_adopt_scan(sh, &other, record, &f);
	cr_assert(n >= 0);
	cr_assert_eq(f.hits, 0, "adopted the donor of another coordinator");
	n = dn_adopt_scan("/nonexistent/rmpool-donor", &ours, record, &f);
	cr_assert_eq(f.hits, 0, "adopted a process of another executable");
	n = dn_adopt_scan(sh, &ours, record, &f);
	cr_assert(n >= 1);
	cr_assert_eq(f.hits, 1);
	cr_assert_eq(f.args.pool_id, 3);
	cr_assert_eq(f.args.donor_id, 4);
	cr_assert_eq(f.args.size, UINT64_C(1) << 20);

	/* The pidfd is that process: a signal through it ends it, and the
	 * pidfd turns readable. */
	cr_assert(pidfd_send_signal(f.pidfd, SIGTERM, NULL, 0) == 0);
	struct pollfd p = {.fd = f.pidfd, .events = POLLIN};
	cr_assert_eq(poll(&p, 1, 10000), 1, "the pidfd did not report the exit");
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
	close(f.pidfd);
	close(wfd);
	free(sh);
}
