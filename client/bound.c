/*
 * bound.c - the bounds of the data path's waits on donors (see bound.h).
 */
#include "bound.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

unsigned rmp_bound_first_try_ms(unsigned timeout_ms)
{
	unsigned first = (unsigned)((uint64_t)timeout_ms * 2 / 3);
	return first > 0 ? first : 1;
}

void rmp_bound_backoff_start(struct rmp_bound_backoff *b, int rc, uint64_t now_ms)
{
	b->at_ms = now_ms;
	b->until_ms = now_ms + RMP_BOUND_BACKOFF_MS;
	b->rc = rc;
}

int rmp_bound_backoff_check(const struct rmp_bound_backoff *b, uint64_t now_ms, uint64_t *since_ms,
			    uint64_t *left_ms)
{
	if (b->until_ms == 0 || now_ms >= b->until_ms)
		return 0;
	*since_ms = now_ms - b->at_ms;
	*left_ms = b->until_ms - now_ms;
	return b->rc;
}

void rmp_bound_backoff_clear(struct rmp_bound_backoff *b)
{
	b->until_ms = 0;
	b->at_ms = 0;
	b->rc = 0;
}

struct job {
	void (*fn)(void *);
	void *arg;
	pthread_t tid;
	bool started;
};

static void *job_run(void *arg)
{
	struct job *j = arg;
	j->fn(j->arg);
	return NULL;
}

void rmp_bound_parallel(unsigned n, void (*fn)(void *), void *args, size_t stride)
{
	if (n == 0)
		return;
	struct job *jobs = n > 1 ? calloc(n - 1, sizeof(*jobs)) : NULL;
	for (unsigned i = 1; jobs && i < n; i++) {
		struct job *j = &jobs[i - 1];
		j->fn = fn;
		j->arg = (char *)args + (size_t)i * stride;
		j->started = pthread_create(&j->tid, NULL, job_run, j) == 0;
	}
	fn(args);
	for (unsigned i = 1; i < n; i++) {
		void *arg = (char *)args + (size_t)i * stride;
		if (!jobs)
			fn(arg); /* no memory for the threads: one after the other */
		else if (jobs[i - 1].started)
			pthread_join(jobs[i - 1].tid, NULL);
		else
			fn(arg);
	}
	free(jobs);
}
