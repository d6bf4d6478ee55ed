/* log.c - see log.h. Formatting happens only after the level check in
 * the macros; here a line is built in a fixed stack buffer (truncated,
 * never allocated, so logging works when memory is short) and handed to
 * the sink in one piece.
 *
 * Under systemd (stderr is the journal's stream: $JOURNAL_STREAM names
 * its device and inode, see systemd.exec(5)) a line starts with the
 * syslog priority in angle brackets instead of our time, name and pid,
 * which the journal records itself: "<4>text" is a warning, which
 * `journalctl -p warning` finds. The check is made once, at
 * rmp_log_open(), so only daemons do it.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

/* Long enough for a frame-rejection line with a quoted field; longer
 * lines end in "..." rather than being split. */
#define RMP_LOG_LINE_MAX 1024

_Atomic int rmp_log_threshold = RMP_LOG_OFF;

static char log_ident[64] = "rmpool";
static bool log_journal; /* stderr is the journal: "<prio>" prefixes */
static rmp_log_sink_fn *log_sink;
static void *log_sink_ctx;

static const char *const level_names[] = {
	[RMP_LOG_OFF] = "off",	   [RMP_LOG_ERROR] = "error", [RMP_LOG_WARN] = "warn",
	[RMP_LOG_INFO] = "info",   [RMP_LOG_DEBUG] = "debug",
};

/* Whether stderr is the stream $JOURNAL_STREAM ("DEV:INODE") names. A
 * variable inherited by a process whose stderr was redirected elsewhere
 * names another file, and then plain lines are right. */
static bool stderr_is_journal(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!v || sscanf(v, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st))
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void rmp_log_open(const char *ident, enum rmp_log_level level)
{
	if (ident) {
		snprintf(log_ident, sizeof(log_ident), "%s", ident);
	}
	log_journal = stderr_is_journal();
	rmp_log_set_level(level);
}

bool rmp_log_journal(void)
{
	return log_journal;
}

void rmp_log_set_level(enum rmp_log_level level)
{
	if (level > RMP_LOG_DEBUG)
		level = RMP_LOG_DEBUG;
	atomic_store_explicit(&rmp_log_threshold, (int)level, memory_order_relaxed);
}

enum rmp_log_level rmp_log_get_level(void)
{
	return (enum rmp_log_level)atomic_load_explicit(&rmp_log_threshold,
							 memory_order_relaxed);
}

void rmp_log_set_sink(rmp_log_sink_fn *fn, void *ctx)
{
	log_sink = fn;
	log_sink_ctx = ctx;
}

int rmp_log_level_parse(const char *name, enum rmp_log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*out = (enum rmp_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *rmp_log_level_name(enum rmp_log_level level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "?";
	return level_names[level];
}

/* syslog(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static int journal_priority(enum rmp_log_level level)
{
	return level == RMP_LOG_ERROR ? 3 : level == RMP_LOG_WARN ? 4 : level == RMP_LOG_INFO ? 6 : 7;
}

/* Writes the "time ident[pid] LEVEL: " prefix, or under the journal
 * "<priority>"; returns its length. */
static size_t log_prefix(char *buf, size_t cap, enum rmp_log_level level)
{
	if (log_journal) {
		int n = snprintf(buf, cap, "<%d>", journal_priority(level));
		return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
	}
	uint64_t now = rmp_wall_ms();
	time_t sec = (time_t)(now / 1000u);
	struct tm tm;
	char stamp[32] = "";

	if (gmtime_r(&sec, &tm))
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	int n = snprintf(buf, cap, "%s.%03ldZ %s[%ld] %s: ", stamp, (long)(now % 1000u),
			 log_ident, (long)getpid(), level == RMP_LOG_ERROR ? "ERROR"
						    : level == RMP_LOG_WARN ? "WARN"
						    : level == RMP_LOG_INFO ? "INFO"
									    : "DEBUG");
	return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
}

static void log_emit(enum rmp_log_level level, char *line, size_t len)
{
	/* The buffer holds at least two spare bytes past len (see callers). */
	if (log_sink) {
		log_sink(level, line, log_sink_ctx);
		return;
	}
	line[len] = '\n';
	/* One write(2) per line: stdio's stderr is unbuffered and would emit
	 * the prefix and the text separately. A failed write has nowhere to
	 * be reported. */
	ssize_t rc = write(STDERR_FILENO, line, len + 1);
	(void)rc;
	line[len] = '\0';
}

/* Appends fmt/ap after `used` bytes, marking truncation with "...". */
static size_t log_append(char *buf, size_t cap, size_t used, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
static size_t log_append(char *buf, size_t cap, size_t used, const char *fmt, va_list ap)
{
	int n = vsnprintf(buf + used, cap - used, fmt, ap);
	if (n < 0)
		return used;
	if ((size_t)n >= cap - used) {
		memcpy(buf + cap - 4, "...", 4);
		return cap - 1;
	}
	return used + (size_t)n;
}

void rmp_log_write(enum rmp_log_level level, const char *fmt, ...)
{
	char line[RMP_LOG_LINE_MAX + 2];
	size_t cap = RMP_LOG_LINE_MAX;
	va_list ap;
	int saved = errno; /* callers may log and then look at errno */

	size_t len = log_sink ? 0 : log_prefix(line, cap, level);
	va_start(ap, fmt);
	len = log_append(line, cap, len, fmt, ap);
	va_end(ap);
	log_emit(level, line, len);
	errno = saved;
}

void rmp_log_syserr_write(const char *call, int err, const char *fmt, ...)
{
	char line[RMP_LOG_LINE_MAX + 2];
	char ebuf[128];
	size_t cap = RMP_LOG_LINE_MAX;
	va_list ap;
	int saved = errno;

	if (err < 0)
		err = -err;
	size_t len = log_sink ? 0 : log_prefix(line, cap, RMP_LOG_ERROR);
	int n = snprintf(line + len, cap - len, "%s(): ", call);
	if (n > 0 && (size_t)n < cap - len)
		len += (size_t)n;
	va_start(ap, fmt);
	len = log_append(line, cap, len, fmt, ap);
	va_end(ap);
	/* GNU strerror_r (we build with _GNU_SOURCE) returns the string. */
	const char *es = strerror_r(err, ebuf, sizeof(ebuf));
	n = snprintf(line + len, cap - len, ": %s", es);
	if (n > 0)
		len = (size_t)n < cap - len ? len + (size_t)n : cap - 1;
	log_emit(RMP_LOG_ERROR, line, len);
	errno = saved;
}

void rmp_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
