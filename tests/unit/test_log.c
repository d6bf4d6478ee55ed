/* test_log.c - silent by default, filtered before formatting, one whole
 * line per message, "call(): what: strerror" for system errors, syslog
 * priorities when stderr is the journal's stream.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static char last[2048];
static int lines;
static enum rmp_log_level last_level;

static void sink(enum rmp_log_level level, const char *line, void *ctx)
{
	(void)ctx;
	snprintf(last, sizeof(last), "%s", line);
	last_level = level;
	lines++;
}

static int evaluated;
static int side_effect(void)
{
	return ++evaluated;
}

Test(log, off_by_default)
{
	/* each Criterion test runs in a fresh process: this is the library's
	 * state before any daemon configured logging */
	cr_assert_eq(rmp_log_get_level(), RMP_LOG_OFF);
	rmp_log_set_sink(sink, NULL);
	rmp_log_error("must not appear %d", side_effect());
	cr_assert_eq(lines, 0);
	cr_assert_eq(evaluated, 0, "arguments are not evaluated below the threshold");
}

Test(log, threshold)
{
	rmp_log_set_sink(sink, NULL);
	rmp_log_set_level(RMP_LOG_WARN);
	rmp_log_debug("d %d", side_effect());
	rmp_log_info("i");
	cr_assert_eq(lines, 0);
	cr_assert_eq(evaluated, 0);
	rmp_log_warn("w %d", 1);
	cr_assert_eq(lines, 1);
	cr_assert_str_eq(last, "w 1");
	cr_assert_eq(last_level, RMP_LOG_WARN);
	rmp_log_error("e");
	cr_assert_eq(lines, 2);
	rmp_log_set_level(RMP_LOG_DEBUG);
	rmp_log_debug("d %d", side_effect());
	cr_assert_eq(evaluated, 1);
	cr_assert_str_eq(last, "d 1");
}

Test(log, syserr_line)
{
	rmp_log_set_sink(sink, NULL);
	rmp_log_set_level(RMP_LOG_ERROR);
	errno = EINTR;
	rmp_log_syserr("mmap", -ENOMEM, "cannot map %d bytes for donor %u", 4096, 3u);
	cr_assert_str_eq(last, "mmap(): cannot map 4096 bytes for donor 3: Cannot allocate memory");
	cr_assert_eq(errno, EINTR, "logging leaves errno alone");
	rmp_log_syserr("rdma_connect", ETIMEDOUT, "to %s", "10.0.0.2:20017");
	cr_assert_str_eq(last, "rdma_connect(): to 10.0.0.2:20017: Connection timed out");
}

Test(log, long_lines_are_cut_not_split)
{
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	rmp_log_set_sink(sink, NULL);
	rmp_log_set_level(RMP_LOG_INFO);
	rmp_log_info("%s", big);
	cr_assert_eq(lines, 1);
	size_t n = strlen(last);
	cr_assert_lt(n, 1100);
	cr_assert_str_eq(last + n - 3, "...");
}

Test(log, stderr_format)
{
	char path[] = "/tmp/rmp_test_log_XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);

	rmp_log_open("rmpool-test", RMP_LOG_INFO);
	rmp_log_info("pool %s ready", "kv");
	rmp_log_debug("hidden");

	dup2(saved, STDERR_FILENO);
	close(saved);
	char buf[512] = "";
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	unlink(path);
	cr_assert_gt(n, 0);
	char want[64];
	snprintf(want, sizeof(want), " rmpool-test[%ld] INFO: pool kv ready\n", (long)getpid());
	cr_assert(strstr(buf, want), "got \"%s\"", buf);
	cr_assert_eq(buf[4], '-');
	cr_assert_eq(buf[23], 'Z', "UTC stamp with milliseconds: %s", buf);
	cr_assert_null(strstr(buf, "hidden"));
	cr_assert_eq(strchr(buf, '\n'), buf + n - 1, "exactly one line");
}

Test(log, level_names)
{
	enum rmp_log_level l;
	cr_assert_eq(rmp_log_level_parse("WARN", &l), 0);
	cr_assert_eq(l, RMP_LOG_WARN);
	cr_assert_eq(rmp_log_level_parse("off", &l), 0);
	cr_assert_eq(l, RMP_LOG_OFF);
	cr_assert_eq(rmp_log_level_parse("verbose", &l), -EINVAL);
	cr_assert_str_eq(rmp_log_level_name(RMP_LOG_DEBUG), "debug");
}

/* Points stderr at a fresh file; returns its descriptor for reading. */
static int stderr_to_file(char *path, size_t cap, struct stat *st)
{
	snprintf(path, cap, "/tmp/test_log.%d.XXXXXX", (int)getpid());
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
	cr_assert(fstat(fd, st) == 0);
	return fd;
}

static void read_back(int fd, char *buf, size_t cap)
{
	ssize_t n = pread(fd, buf, cap - 1, 0);
	cr_assert(n >= 0);
	buf[n] = '\0';
}

Test(log, journal_priorities)
{
	char path[64], env[64], out[512];
	struct stat st;
	int fd = stderr_to_file(path, sizeof(path), &st);

	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", env, 1);
	rmp_log_open("test", RMP_LOG_DEBUG);
	cr_assert(rmp_log_journal(), "stderr is the stream $JOURNAL_STREAM names");
	rmp_log_error("e %d", 1);
	rmp_log_warn("w");
	rmp_log_info("i");
	rmp_log_debug("d");
	rmp_log_syserr("open", ENOENT, "f");
	read_back(fd, out, sizeof(out));
	unlink(path);
	cr_assert_str_eq(out, "<3>e 1\n<4>w\n<6>i\n<7>d\n<3>open(): f: No such file or directory\n");
}

Test(log, journal_stream_of_another_file)
{
	char path[64], out[512];
	struct stat st;
	int fd = stderr_to_file(path, sizeof(path), &st);

	/* Inherited from a parent whose stderr was the journal: not ours. */
	setenv("JOURNAL_STREAM", "1:1", 1);
	rmp_log_open("test", RMP_LOG_INFO);
	cr_assert(!rmp_log_journal());
	rmp_log_warn("w");
	read_back(fd, out, sizeof(out));
	unlink(path);
	cr_assert(strstr(out, " test[") && strstr(out, "] WARN: w\n"), "plain line: %s", out);
	cr_assert(out[0] != '<', "no priority prefix: %s", out);
}
