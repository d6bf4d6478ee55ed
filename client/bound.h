/*
 * bound.h - the bounds of the data path's waits on donors (DESIGN.md,
 * Failure model: "Every wait is bounded").
 *
 * Three rules, kept here so that they can be tested without RDMA:
 *   - a connect gets one bound (rdma_timeout_ms) in all: a first try of
 *     two thirds of it and, after a timeout, a second try of what is left
 *     (rmp_bound_first_try_ms), so a stopped far side costs the bound,
 *     not twice it;
 *   - after a timeout a donor is in back-off for RMP_BOUND_BACKOFF_MS:
 *     every use fails at once with the timeout's code instead of paying
 *     the bound again (struct rmp_bound_backoff); the first use after it
 *     tries again;
 *   - the connects one transfer needs run at once (rmp_bound_parallel),
 *     so an outage of several donors costs one bound, not one per donor.
 * No locks: a back-off lives under its donor's lock.
 */
#ifndef RMP_BOUND_H
#define RMP_BOUND_H

#include <stddef.h>
#include <stdint.h>

/* How long a donor that timed out is not tried again: long enough that a
 * loop of operations on a stopped donor costs one bound per second at
 * most, short enough that a donor back from a pause (SIGCONT, a long GC
 * in its host) is used again within a second. */
#define RMP_BOUND_BACKOFF_MS 1000u
/* The reconnect that tells a dead donor from a live one after its
 * connection broke (a rejection by its CM comes within a round trip; a
 * live donor accepts within milliseconds): bounded short, as it runs
 * inside the failing operation. */
#define RMP_BOUND_PROBE_MS 500u

/* The first of a connect's two tries gets this much of timeout_ms (at
 * least 1 ms); the second what is left. */
unsigned rmp_bound_first_try_ms(unsigned timeout_ms);

struct rmp_bound_backoff {
	uint64_t at_ms;    /* rmp_mono_ms of the timeout */
	uint64_t until_ms; /* 0: not in back-off */
	int rc;            /* the code uses fail with meanwhile */
};

/* A timeout (rc) at now_ms: the back-off starts. */
void rmp_bound_backoff_start(struct rmp_bound_backoff *b, int rc, uint64_t now_ms);
/* Before a use at now_ms: 0 (go ahead: no back-off, or it is over), or
 * the back-off's code with *since_ms (since the timeout) and *left_ms. */
int rmp_bound_backoff_check(const struct rmp_bound_backoff *b, uint64_t now_ms, uint64_t *since_ms,
			    uint64_t *left_ms);
/* A use that worked: no back-off. */
void rmp_bound_backoff_clear(struct rmp_bound_backoff *b);

/* Runs fn on each of the n elements of args (stride bytes apart) at
 * once: n - 1 threads and the caller's; returns when all have. An
 * element whose thread cannot be started runs in the caller, after its
 * own (late, never lost). */
void rmp_bound_parallel(unsigned n, void (*fn)(void *), void *args, size_t stride);

#endif /* RMP_BOUND_H */
