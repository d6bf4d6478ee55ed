/*
 * test_liveset.c - the set of this process's live blocks (client/liveset.c):
 * random add/remove/has against a sorted-array model through growth and
 * many deletions, the keys it refuses, and threads adding and removing
 * their own keys at once.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "liveset.h"

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Handles look like the pool's: order + 1 on top, an aligned offset. */
static uint64_t handle(uint64_t r)
{
	unsigned order = 6 + (unsigned)(r % 8);
	return (uint64_t)(order + 1) << 58 | ((r >> 8) % 4096) << order;
}

Test(liveset, matches_a_model)
{
	enum { KEYS = 3000, STEPS = 200000 };
	static uint64_t keys[KEYS];
	static bool in[KEYS];
	struct rmp_liveset s;
	uint64_t x = 0x9E3779B97F4A7C15ull;
	size_t n = 0;

	rmp_liveset_init(&s);
	for (unsigned i = 0; i < KEYS; i++) {
		keys[i] = handle(rnd(&x));
		for (unsigned j = 0; j < i; j++)
			if (keys[j] == keys[i]) {
				keys[i] = handle(rnd(&x));
				j = (unsigned)-1; /* start over */
			}
	}
	for (unsigned step = 0; step < STEPS; step++) {
		unsigned k = (unsigned)(rnd(&x) % KEYS);
		switch (rnd(&x) % 3) {
		case 0:
			cr_assert_eq(rmp_liveset_add(&s, keys[k]), in[k] ? -EEXIST : 0, "step %u", step);
			n += !in[k];
			in[k] = true;
			break;
		case 1:
			cr_assert_eq(rmp_liveset_remove(&s, keys[k]), in[k], "step %u", step);
			n -= in[k];
			in[k] = false;
			break;
		default:
			cr_assert_eq(rmp_liveset_has(&s, keys[k]), in[k], "step %u", step);
		}
		cr_assert_eq(rmp_liveset_size(&s), n);
	}
	for (unsigned k = 0; k < KEYS; k++)
		cr_assert_eq(rmp_liveset_has(&s, keys[k]), in[k]);
	/* Deleted marks do not pile up: the table is rehashed, not grown. */
	cr_assert_leq(s.cap, 4u * 8192u, "capacity %zu for at most %u keys", s.cap, (unsigned)KEYS);
	rmp_liveset_destroy(&s);
}

Test(liveset, refuses_the_marker_keys)
{
	struct rmp_liveset s;
	rmp_liveset_init(&s);
	cr_assert_eq(rmp_liveset_add(&s, 0), -EINVAL);
	cr_assert_eq(rmp_liveset_add(&s, UINT64_MAX), -EINVAL);
	cr_assert_not(rmp_liveset_has(&s, 0));
	cr_assert_not(rmp_liveset_remove(&s, UINT64_MAX));
	cr_assert_not(rmp_liveset_has(&s, 42), "empty set");
	cr_assert_eq(rmp_liveset_add(&s, 42), 0);
	cr_assert(rmp_liveset_has(&s, 42));
	cr_assert_eq(rmp_liveset_size(&s), 1);
	rmp_liveset_destroy(&s);
}

struct worker {
	struct rmp_liveset *s;
	unsigned id;
	int bad;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (unsigned round = 0; round < 50; round++) {
		for (uint64_t k = 1; k <= 500; k++)
			if (rmp_liveset_add(w->s, (uint64_t)w->id << 32 | k) != 0)
				w->bad++;
		for (uint64_t k = 1; k <= 500; k++)
			if (!rmp_liveset_has(w->s, (uint64_t)w->id << 32 | k))
				w->bad++;
		for (uint64_t k = 1; k <= 500; k += 2)
			if (!rmp_liveset_remove(w->s, (uint64_t)w->id << 32 | k))
				w->bad++;
		for (uint64_t k = 2; k <= 500; k += 2)
			if (!rmp_liveset_remove(w->s, (uint64_t)w->id << 32 | k))
				w->bad++;
	}
	return NULL;
}

Test(liveset, threads_keep_their_own_keys)
{
	struct rmp_liveset s;
	struct worker w[4];
	pthread_t t[4];
	rmp_liveset_init(&s);
	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct worker){ .s = &s, .id = i + 1 };
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].bad, 0, "thread %u: %d wrong answers", i, w[i].bad);
	}
	cr_assert_eq(rmp_liveset_size(&s), 0);
	rmp_liveset_destroy(&s);
}
