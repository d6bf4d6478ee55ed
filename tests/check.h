/*
 * check.h - how the C tests that are not Criterion tests check and fail:
 * the stress tests, the RDMA test programs (the .c files of tests/rdma/)
 * and the integration test. Criterion tests keep cr_assert.
 *
 *   check_init(NAME, ON_FATAL, FLAGS)  once, before any check (optional:
 *                            no name, no hook, no flags)
 *   CHECK(cond, fmt, ...)    counts a failure and goes on:
 *                            "FAIL func:line: message"
 *   REQUIRE(cond, fmt, ...)  the same, then check_fatal(): the test ends
 *   check_fail(fmt, ...)     counts a failure: "NAME: FAILED: message",
 *                            or "FAIL: message" when NAME is NULL
 *   check_die(fmt, ...)      check_fail, then check_fatal()
 *   check_fatal()            runs ON_FATAL (kill children, dump a log,
 *                            print a summary; it may exit itself), then
 *                            exit(1)
 *   check_failures()         failures counted so far
 *   check_count()            counts one without a message
 * cond is evaluated once. Messages go to stderr, one line each.
 *
 * FLAGS:
 *   CHECK_COND_LINE   a failed CHECK/REQUIRE prints "file:line: cond" on a
 *                     line of its own, then the message as check_fail
 *                     does (the integration test's style)
 *   CHECK_FIRST_ONLY  only the first failure is printed (threads racing
 *                     to report one broken heap: the first is the cause);
 *                     all are counted
 *
 * The counter is atomic, so threads may fail at once; the rest is set
 * once by check_init before any thread starts. Header-only: each test is
 * one translation unit, and the state below is that program's.
 */
#ifndef RMP_TESTS_CHECK_H
#define RMP_TESTS_CHECK_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

enum {
	CHECK_COND_LINE = 1u << 0,
	CHECK_FIRST_ONLY = 1u << 1,
};

static struct {
	const char *name;
	void (*on_fatal)(void);
	unsigned flags;
	_Atomic int failures;
} check_state __attribute__((unused));

__attribute__((unused)) static void check_init(const char *name, void (*on_fatal)(void), unsigned flags)
{
	check_state.name = name;
	check_state.on_fatal = on_fatal;
	check_state.flags = flags;
}

__attribute__((unused)) static int check_failures(void)
{
	return atomic_load(&check_state.failures);
}

/* Counts one failure; true when its message should be printed. */
__attribute__((unused)) static bool check_count(void)
{
	int before = atomic_fetch_add(&check_state.failures, 1);
	return before == 0 || !(check_state.flags & CHECK_FIRST_ONLY);
}

__attribute__((unused, format(printf, 1, 0))) static void check_vfail(const char *fmt, va_list ap)
{
	if (!check_count())
		return;
	if (check_state.name)
		fprintf(stderr, "%s: FAILED: ", check_state.name);
	else
		fprintf(stderr, "FAIL: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

__attribute__((unused, format(printf, 1, 2))) static void check_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	check_vfail(fmt, ap);
	va_end(ap);
}

__attribute__((unused, noreturn)) static void check_fatal(void)
{
	if (check_state.on_fatal)
		check_state.on_fatal();
	exit(1);
}

__attribute__((unused, noreturn, format(printf, 1, 2))) static void check_die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	check_vfail(fmt, ap);
	va_end(ap);
	check_fatal();
}

/* What CHECK and REQUIRE print for a failed cond. */
__attribute__((unused, format(printf, 5, 6))) static void check_at(const char *func, const char *file, int line,
								    const char *cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (check_state.flags & CHECK_COND_LINE) {
		if (!(check_state.flags & CHECK_FIRST_ONLY) || check_failures() == 0)
			fprintf(stderr, "%s:%d: %s\n", file, line, cond);
		check_vfail(fmt, ap);
	} else if (check_count()) {
		fprintf(stderr, "FAIL %s:%d: ", func, line);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond))                                                               \
			check_at(__func__, __FILE__, __LINE__, #cond, __VA_ARGS__);        \
	} while (0)

#define REQUIRE(cond, ...)                                                                 \
	do {                                                                               \
		if (!(cond)) {                                                             \
			check_at(__func__, __FILE__, __LINE__, #cond, __VA_ARGS__);        \
			check_fatal();                                                     \
		}                                                                          \
	} while (0)

#endif /* RMP_TESTS_CHECK_H */
