/*
 * test_client_bound.c - the bounds of the data path's donor waits
 * (client/bound.c): a connect's two tries share one bound, the back-off
 * after a timeout fails uses at once for RMP_BOUND_BACKOFF_MS and then
 * lets one through, and the connects of one transfer run at once (three
 * 300 ms waits take one wait's time, not three).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "bound.h"
#include "clock.h"

Test(bound, two_tries_share_one_bound)
{
	const unsigned bounds[] = { 1, 2, 3, 100, 3000, 10000, 60000 };

	for (unsigned i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
		unsigned t = bounds[i], first = rmp_bound_first_try_ms(t);
		cr_assert(first >= 1, "bound %u: first try %u ms", t, first);
		/* The second try gets what is left of the same bound. */
		cr_assert(first <= t, "bound %u: first try %u ms exceeds it", t, first);
		if (t >= 3)
			cr_assert(first < t, "bound %u: first try %u ms leaves nothing for the second", t, first);
	}
	cr_assert_eq(rmp_bound_first_try_ms(10000), 6666u);
}

Test(bound, backoff_fails_fast_then_lets_one_through)
{
	struct rmp_bound_backoff b = { 0 };
	uint64_t since = 0, left = 0;

	cr_assert_eq(rmp_bound_backoff_check(&b, 5000, &since, &left), 0, "no back-off before a timeout");
	rmp_bound_backoff_start(&b, -ETIMEDOUT, 5000);
	cr_assert_eq(rmp_bound_backoff_check(&b, 5000, &since, &left), -ETIMEDOUT);
	cr_assert_eq(since, 0);
	cr_assert_eq(left, RMP_BOUND_BACKOFF_MS);
	cr_assert_eq(rmp_bound_backoff_check(&b, 5400, &since, &left), -ETIMEDOUT);
	cr_assert_eq(since, 400);
	cr_assert_eq(left, RMP_BOUND_BACKOFF_MS - 400);
	cr_assert_eq(rmp_bound_backoff_check(&b, 5000 + RMP_BOUND_BACKOFF_MS - 1, &since, &left), -ETIMEDOUT);
	cr_assert_eq(rmp_bound_backoff_check(&b, 5000 + RMP_BOUND_BACKOFF_MS, &since, &left), 0,
		     "the back-off is over: the donor is tried again");
	/* That try timed out again: a new back-off from then. */
	rmp_bound_backoff_start(&b, -ETIMEDOUT, 16000);
	cr_assert_eq(rmp_bound_backoff_check(&b, 16500, &since, &left), -ETIMEDOUT);
	rmp_bound_backoff_clear(&b);
	cr_assert_eq(rmp_bound_backoff_check(&b, 16500, &since, &left), 0, "a use that worked ends it");
}

struct wait_job {
	unsigned ms;
	pthread_t who;
	int done;
};

static void wait_run(void *arg)
{
	struct wait_job *j = arg;
	struct timespec ts = { .tv_sec = j->ms / 1000, .tv_nsec = (long)(j->ms % 1000) * 1000000L };

	j->who = pthread_self();
	nanosleep(&ts, NULL);
	j->done++;
}

Test(bound, parallel_waits_cost_one_wait)
{
	enum { N = 3, WAIT_MS = 300 };
	struct wait_job jobs[N];

	for (unsigned i = 0; i < N; i++)
		jobs[i] = (struct wait_job){ .ms = WAIT_MS };
	uint64_t t0 = rmp_mono_ms();
	rmp_bound_parallel(N, wait_run, jobs, sizeof(jobs[0]));
	uint64_t took = rmp_mono_ms() - t0;
	for (unsigned i = 0; i < N; i++)
		cr_assert_eq(jobs[i].done, 1, "job %u ran %d times", i, jobs[i].done);
	cr_assert(pthread_equal(jobs[0].who, pthread_self()), "the first runs in the caller");
	cr_assert(!pthread_equal(jobs[1].who, jobs[2].who), "the others run in threads of their own");
	/* In turn they would take N * WAIT_MS = 900 ms. */
	cr_assert(took >= WAIT_MS && took < 2 * WAIT_MS, "%d waits of %d ms took %llu ms", N, WAIT_MS,
		  (unsigned long long)took);
	cr_log_info("%d waits of %d ms at once: %llu ms", N, WAIT_MS, (unsigned long long)took);

	struct wait_job one = { .ms = 1 };
	rmp_bound_parallel(1, wait_run, &one, sizeof(one));
	cr_assert_eq(one.done, 1);
	cr_assert(pthread_equal(one.who, pthread_self()), "one job runs in the caller");
	rmp_bound_parallel(0, wait_run, NULL, sizeof(one)); /* nothing to run */
}
