/* log.h - leveled logging for the rmpool daemons, silent in the library.
 *
 * One process-wide threshold. A message below the threshold costs one
 * relaxed atomic load and a compare: the rmp_log_*() macros test the
 * level before the arguments are evaluated or formatted (Redis's
 * serverLog does the same), so debug calls may stay in hot paths.
 *
 * The threshold starts at RMP_LOG_OFF: librmpool links this module and
 * must never print on its own (DESIGN.md, Consumer API), so nothing is
 * written until a daemon calls rmp_log_open(). A program that embeds the
 * library may route lines elsewhere with rmp_log_set_sink().
 *
 * Lines are whole: "2026-01-02T03:04:05.678Z rmpool-server[42] ERROR:
 * text" is built in one buffer and written with one call, so lines from
 * several threads never interleave. Errors from system calls read
 * "call(): what failed: strerror", which tells an operator what to fix.
 */
#ifndef RMP_LOG_H
#define RMP_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum rmp_log_level {
	RMP_LOG_OFF = 0, /* threshold only: nothing is printed */
	RMP_LOG_ERROR = 1,
	RMP_LOG_WARN = 2,
	RMP_LOG_INFO = 3,
	RMP_LOG_DEBUG = 4,
};

/* Receives each finished line (no trailing newline). */
typedef void rmp_log_sink_fn(enum rmp_log_level level, const char *line, void *ctx);

/* The threshold; read through rmp_log_enabled(), written by the setters. */
extern _Atomic int rmp_log_threshold;

static inline bool rmp_log_enabled(enum rmp_log_level level)
{
	return (int)level <= atomic_load_explicit(&rmp_log_threshold, memory_order_relaxed);
}

/* Daemons: name the process in every line and print from `level` up.
 * When stderr is systemd's journal stream ($JOURNAL_STREAM), lines carry
 * a "<priority>" prefix (syslog's 3, 4, 6, 7) instead of time and name. */
void rmp_log_open(const char *ident, enum rmp_log_level level);
/* Whether rmp_log_open() found the journal on stderr. */
bool rmp_log_journal(void);
void rmp_log_set_level(enum rmp_log_level level);
enum rmp_log_level rmp_log_get_level(void);
/* NULL restores stderr. Not to be changed while other threads log. */
void rmp_log_set_sink(rmp_log_sink_fn *fn, void *ctx);

/* "error", "warn", "info", "debug", "off" -> level; -EINVAL otherwise. */
int rmp_log_level_parse(const char *name, enum rmp_log_level *out);
const char *rmp_log_level_name(enum rmp_log_level level);

/* Unconditional: callers go through the macros below. */
void rmp_log_write(enum rmp_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define rmp_log_at(level, ...)                                                  \
	do {                                                                    \
		if (rmp_log_enabled(level))                                     \
			rmp_log_write((level), __VA_ARGS__);                    \
	} while (0)
#define rmp_log_error(...) rmp_log_at(RMP_LOG_ERROR, __VA_ARGS__)
#define rmp_log_warn(...) rmp_log_at(RMP_LOG_WARN, __VA_ARGS__)
#define rmp_log_info(...) rmp_log_at(RMP_LOG_INFO, __VA_ARGS__)
#define rmp_log_debug(...) rmp_log_at(RMP_LOG_DEBUG, __VA_ARGS__)

/* "call(): what: strerror(err)" at ERROR. err may be errno or -errno. */
#define rmp_log_syserr(call, err, ...)                                          \
	do {                                                                    \
		if (rmp_log_enabled(RMP_LOG_ERROR))                             \
			rmp_log_syserr_write((call), (err), __VA_ARGS__);       \
	} while (0)
void rmp_log_syserr_write(const char *call, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Formats a one-line error into a caller's buffer (err may be NULL or
 * errlen 0: then nothing is written). For functions that report why they
 * failed through (char *err, size_t errlen) instead of logging. */
void rmp_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif /* RMP_LOG_H */
