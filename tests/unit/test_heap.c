/*
 * test_heap.c - the in-process buddy heap (common/heap.c): the seed's
 * examples, split and coalesce sequences, exhaustion and bad input, with
 * the invariant walker after every scenario.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "heap_internal.h"

static void assert_consistent(rmp_heap *h, uint64_t expect_free)
{
	char err[200] = "";
	uint64_t free_bytes = 0;
	int rc = rmp_heap_check(h, err, sizeof(err), &free_bytes);
	cr_assert_eq(rc, 0, "invariant walker: %s", err);
	cr_assert_eq(free_bytes, expect_free, "free bytes %llu, expected %llu",
		     (unsigned long long)free_bytes, (unsigned long long)expect_free);
}

static void free_blocks_per_order(rmp_heap *h, uint64_t out[64])
{
	const struct rmp_buddy *b = rmp_heap_buddy(h);
	struct rmp_buddy_report r;
	char err[200] = "";
	memset(out, 0, 64 * sizeof(uint64_t));
	/* The heap's check publishes the count changes threads keep back;
	 * the engine's walker then finds the counts exact. */
	cr_assert_eq(rmp_heap_check(h, err, sizeof(err), NULL), 0, "%s", err);
	cr_assert_eq(rmp_buddy_check(b, &r), 0, "%s", r.error);
	for (unsigned t = 0; t < b->g.levels; t++)
		out[b->g.max_order - t] = r.free_blocks[t];
}

Test(heap, capacity_rounds_up_to_power_of_two)
{
	rmp_heap *h;
	cr_assert_eq(rmp_heap_create(5000, 64, &h), 0);
	cr_assert_eq(rmp_heap_capacity(h), 8192);
	assert_consistent(h, 8192);
	rmp_heap_destroy(h);

	cr_assert_eq(rmp_heap_create(8192, 64, &h), 0);
	cr_assert_eq(rmp_heap_capacity(h), 8192);
	rmp_heap_destroy(h);
}

Test(heap, request_rounds_up_never_below_min_block)
{
	rmp_heap *h;
	cr_assert_eq(rmp_heap_create(1 << 16, 1024, &h), 0);
	void *p = rmp_heap_alloc(h, 1000);
	cr_assert_not_null(p);
	cr_assert_eq(rmp_heap_block_size(h, p), 1024);
	void *q = rmp_heap_alloc(h, 1);
	cr_assert_eq(rmp_heap_block_size(h, q), 1024, "below the minimum block");
	void *r = rmp_heap_alloc(h, 1025);
	cr_assert_eq(rmp_heap_block_size(h, r), 2048);
	assert_consistent(h, (1 << 16) - 4096);
	rmp_heap_destroy(h);

	cr_assert_eq(rmp_heap_create(1 << 16, 256, &h), 0);
	p = rmp_heap_alloc(h, 1000);
	cr_assert_eq(rmp_heap_block_size(h, p), 1024);
	rmp_heap_destroy(h);
}

Test(heap, split_halves_until_less_than_twice_the_request)
{
	rmp_heap *h;
	uint64_t fb[64];
	cr_assert_eq(rmp_heap_create(1 << 16, 1024, &h), 0);
	char *p = rmp_heap_alloc(h, 3000); /* 64K -> 32K -> 16K -> 8K -> 4K */
	cr_assert_not_null(p);
	cr_assert_eq(rmp_heap_block_size(h, p), 4096);
	free_blocks_per_order(h, fb);
	/* The unused halves became free: one block each of 32K, 16K, 8K, 4K. */
	for (unsigned o = 12; o <= 15; o++)
		cr_assert_eq(fb[o], 1, "order %u has %llu free blocks", o, (unsigned long long)fb[o]);
	cr_assert_eq(fb[16], 0);
	cr_assert_eq(fb[11], 0);
	cr_assert_eq(fb[10], 0);
	/* The next 4K request takes the free 4K half, splitting nothing. */
	char *q = rmp_heap_alloc(h, 4096);
	cr_assert_eq(q, p + 4096, "took the buddy: %p vs %p", (void *)q, (void *)p);
	free_blocks_per_order(h, fb);
	cr_assert_eq(fb[12], 0);
	cr_assert_eq(fb[13], 1);
	assert_consistent(h, (1 << 16) - 8192);
	rmp_heap_destroy(h);
}

Test(heap, free_reunites_buddies_repeatedly)
{
	rmp_heap *h;
	uint64_t fb[64];
	cr_assert_eq(rmp_heap_create(1 << 16, 1024, &h), 0);
	char *a = rmp_heap_alloc(h, 1024);
	char *b = rmp_heap_alloc(h, 1024);
	cr_assert_eq(b, a + 1024);
	cr_assert_eq(rmp_heap_free(h, a), 0);
	free_blocks_per_order(h, fb);
	cr_assert_eq(fb[10], 1, "a is free but its buddy b is live: no merge");
	cr_assert_eq(rmp_heap_free(h, b), 0);
	free_blocks_per_order(h, fb);
	/* b's free merged 1K+1K, then every level up to the whole heap. */
	cr_assert_eq(fb[16], 1);
	for (unsigned o = 10; o < 16; o++)
		cr_assert_eq(fb[o], 0, "order %u still has a free block", o);
	assert_consistent(h, 1 << 16);
	rmp_heap_destroy(h);
}

Test(heap, exhaustion_then_full_coalescing)
{
	rmp_heap *h;
	enum { N = 64 };
	void *p[N + 1];
	cr_assert_eq(rmp_heap_create(1 << 16, 1024, &h), 0);
	for (int i = 0; i < N; i++) {
		p[i] = rmp_heap_alloc(h, 700);
		cr_assert_not_null(p[i], "allocation %d of %d failed", i, N);
		memset(p[i], i, 1024);
	}
	errno = 0;
	p[N] = rmp_heap_alloc(h, 1);
	cr_assert_null(p[N]);
	cr_assert_eq(errno, ENOMEM);
	assert_consistent(h, 0);
	for (int i = 0; i < N; i++)
		for (int k = 0; k < 1024; k += 255)
			cr_assert_eq(((unsigned char *)p[i])[k], (unsigned char)i, "block %d overwritten", i);
	/* Free in a scrambled order; everything must coalesce. */
	for (int i = 0; i < N; i++) {
		int j = (i * 37) % N;
		cr_assert_eq(rmp_heap_free(h, p[j]), 0);
	}
	assert_consistent(h, 1 << 16);
	void *all = rmp_heap_alloc(h, 1 << 16);
	cr_assert_not_null(all, "whole capacity in one piece after freeing everything");
	cr_assert_eq(rmp_heap_free(h, all), 0);
	assert_consistent(h, 1 << 16);
	rmp_heap_destroy(h);
}

Test(heap, bad_create_arguments)
{
	rmp_heap *h = NULL;
	cr_assert_eq(rmp_heap_create(0, 64, &h), -EINVAL);
	cr_assert_eq(rmp_heap_create(4096, 0, &h), -EINVAL);
	cr_assert_eq(rmp_heap_create(4096, 48, &h), -EINVAL, "not a power of two");
	cr_assert_eq(rmp_heap_create(4096, 8192, &h), -EINVAL, "larger than the capacity");
	cr_assert_eq(rmp_heap_create(1ull << 40, 1, &h), -EINVAL, "too many levels");
	cr_assert_eq(rmp_heap_create((1ull << 57) + 1, 1ull << 40, &h), -EINVAL);
	cr_assert_eq(rmp_heap_create(4096, 64, NULL), -EINVAL);
	cr_assert_null(h);
}

Test(heap, bad_sizes_and_frees_change_nothing)
{
	rmp_heap *h;
	int on_stack;
	cr_assert_eq(rmp_heap_create(1 << 16, 1024, &h), 0);
	char *live = rmp_heap_alloc(h, 4096);
	char *gone = rmp_heap_alloc(h, 1024);
	cr_assert_eq(rmp_heap_free(h, gone), 0);
	uint64_t expect_free = (1 << 16) - 4096;
	assert_consistent(h, expect_free);

	errno = 0;
	cr_assert_null(rmp_heap_alloc(h, 0));
	cr_assert_eq(errno, EINVAL);
	errno = 0;
	cr_assert_null(rmp_heap_alloc(h, (1 << 16) + 1));
	cr_assert_eq(errno, EINVAL);

	char *base = rmp_heap_base(h);
	cr_assert_eq(rmp_heap_free(h, NULL), -EINVAL);
	cr_assert_eq(rmp_heap_free(h, &on_stack), -EINVAL, "not from the heap");
	cr_assert_eq(rmp_heap_free(h, base + (1 << 16)), -EINVAL, "one past the end");
	cr_assert_eq(rmp_heap_free(h, live + 1), -EINVAL, "inside a live block");
	cr_assert_eq(rmp_heap_free(h, live + 1024), -EINVAL, "aligned, inside a live block");
	cr_assert_eq(rmp_heap_free(h, gone), -EINVAL, "freed twice");
	cr_assert_eq(rmp_heap_free(h, base + 32768), -EINVAL, "a free block");
	assert_consistent(h, expect_free);
	cr_assert_eq(rmp_heap_free(h, live), 0);
	assert_consistent(h, 1 << 16);
	cr_assert_eq(rmp_heap_free(h, live), -EINVAL, "freed twice, after coalescing");
	assert_consistent(h, 1 << 16);
	rmp_heap_destroy(h);
}

/* The engine's own steady state, seen through the heap: thread caches
 * off (they would serve these without touching the engine). */
static void cache_off(void)
{
	setenv("RMPOOL_HEAP_CACHE", "0", 1);
}

Test(heap, stats_count_word_operations, .init = cache_off)
{
	rmp_heap *h;
	struct rmp_heap_stats s0, s1;
	cr_assert_eq(rmp_heap_create(1 << 20, 64, &h), 0);
	void *a = rmp_heap_alloc(h, 64);
	void *b = rmp_heap_alloc(h, 64);
	cr_assert_eq(rmp_heap_free(h, a), 0); /* a's order now has a free block */
	rmp_heap_stats(h, &s0);
	void *c = rmp_heap_alloc(h, 64);
	rmp_heap_stats(h, &s1);
	cr_assert_eq(s1.alloc.calls - s0.alloc.calls, 1);
	/* A block of the order is free: one load, one CAS, and no count FAA:
	 * the count stays as it was, as the thread's credit. */
	cr_assert_eq(s1.alloc.cas_ok - s0.alloc.cas_ok, 1);
	cr_assert_eq(s1.alloc.cas_fail - s0.alloc.cas_fail, 0);
	cr_assert_eq(s1.alloc.loads - s0.alloc.loads, 1);
	cr_assert_eq(s1.alloc.round_trips - s0.alloc.round_trips, 2);
	cr_assert_eq(s1.alloc.faa - s0.alloc.faa, 0);
	/* And its free: the order freed last, one load, one CAS, no FAA (the
	 * credit the alloc left pays for it). */
	cr_assert_eq(rmp_heap_free(h, c), 0);
	rmp_heap_stats(h, &s0);
	cr_assert_eq(s0.free.loads - s1.free.loads, 1);
	cr_assert_eq(s0.free.cas_ok - s1.free.cas_ok, 1);
	cr_assert_eq(s0.free.faa - s1.free.faa, 0);
	cr_assert_eq(s0.free.round_trips - s1.free.round_trips, 2);
	cr_assert_eq(rmp_heap_free(h, b), 0);
	assert_consistent(h, 1 << 20);
	rmp_heap_destroy(h);
}

/* A thread keeps a bounded credit per order: 32 frees of one order pay
 * for theirs with a few FAA (each pays for itself and 4 more), and the
 * shared count never says fewer free blocks than there are, nor more
 * than the truth plus that credit (DEFER_MAX = 8). */
Test(heap, credit_is_bounded_and_never_under_reports, .init = cache_off)
{
	rmp_heap *h;
	struct rmp_heap_stats s0, s1;
	enum { N = 64 };
	void *p[N];
	cr_assert_eq(rmp_heap_create(N * 64, 64, &h), 0);
	const struct rmp_buddy *b = rmp_heap_buddy(h);
	char *base = rmp_heap_base(h);
	for (int i = 0; i < N; i++)
		cr_assert_not_null(p[i] = rmp_heap_alloc(h, 64));
	errno = 0;
	cr_assert_null(rmp_heap_alloc(h, 64), "the heap is full");
	cr_assert_eq(errno, ENOMEM, "a full heap says ENOMEM (not EAGAIN) despite the thread's own credit");
	rmp_heap_stats(h, &s0);
	/* Every left buddy: no merge, 32 more free blocks of 64 B. */
	for (int i = 0; i < N; i++)
		if ((((char *)p[i] - base) / 64) % 2 == 0)
			cr_assert_eq(rmp_heap_free(h, p[i]), 0);
	rmp_heap_stats(h, &s1);
	uint64_t faa = s1.free.faa - s0.free.faa;
	cr_assert(faa >= 1 && faa <= 32 / 5 + 1, "32 count changes paid with %llu FAA", (unsigned long long)faa);
	_Atomic uint64_t *words = rmp_heap_store(h)->words;
	unsigned leaf = b->g.levels - 1;
	for (unsigned lv = 0; lv < b->g.levels; lv++) {
		int64_t c = (int64_t)atomic_load(&words[b->g.count_word + lv]), truth = lv == leaf ? N / 2 : 0;
		cr_assert(c >= truth && c - truth <= 8, "level %u: count %lld, truth %lld", lv, (long long)c,
			  (long long)truth);
	}
	assert_consistent(h, N / 2 * 64); /* gives the credit back, then exact */
	for (int i = 0; i < N; i++)
		if ((((char *)p[i] - base) / 64) % 2 == 1)
			cr_assert_eq(rmp_heap_free(h, p[i]), 0);
	assert_consistent(h, N * 64);
	rmp_heap_destroy(h);
}

/* More threads at once than there are per-thread slots (64): those
 * beyond share one shard that does not defer. Slots come back when
 * threads exit. Every thread's blocks are its own, and at the end the
 * counts are exact and the heap whole. */
struct many_arg {
	rmp_heap *h;
	pthread_barrier_t *all_in;
	int bad;
};

static void *many_main(void *arg)
{
	struct many_arg *m = arg;
	void *p[8];
	for (int i = 0; i < 8; i++) {
		/* 640 blocks of 4 KiB in 16 MiB: ENOMEM would be false. EAGAIN
		 * is not: another thread preempted in the middle of a split
		 * holds the memory in passing (on one CPU, the common case);
		 * it runs again once this one yields. */
		unsigned tries = 0;
		while (!(p[i] = rmp_heap_alloc(m->h, 4096)) && errno == EAGAIN && ++tries < 100000)
			sched_yield();
		if (!p[i])
			m->bad++;
	}
	for (int i = 0; i < 8; i++)
		if (p[i])
			memset(p[i], (int)(uintptr_t)m & 0xff, 4096);
	pthread_barrier_wait(m->all_in); /* all 80 hold their blocks at once */
	for (int i = 0; i < 8; i++) {
		const unsigned char *c = p[i];
		if (c && (c[0] != ((uintptr_t)m & 0xff) || c[4095] != ((uintptr_t)m & 0xff)))
			m->bad++;
		if (c && rmp_heap_free(m->h, p[i]) != 0)
			m->bad++;
	}
	return NULL;
}

Test(heap, more_threads_than_slots)
{
	enum { T = 80 };
	rmp_heap *h;
	pthread_t t[T];
	static struct many_arg a[T];
	pthread_barrier_t all_in;
	cr_assert_eq(rmp_heap_create(16u << 20, 64, &h), 0);
	for (int round = 0; round < 2; round++) { /* the second reuses released slots */
		pthread_barrier_init(&all_in, NULL, T);
		for (int i = 0; i < T; i++) {
			a[i] = (struct many_arg){ .h = h, .all_in = &all_in };
			cr_assert_eq(pthread_create(&t[i], NULL, many_main, &a[i]), 0);
		}
		for (int i = 0; i < T; i++) {
			pthread_join(t[i], NULL);
			cr_assert_eq(a[i].bad, 0, "round %d thread %d: %d failures", round, i, a[i].bad);
		}
		pthread_barrier_destroy(&all_in);
		assert_consistent(h, 16u << 20);
	}
	rmp_heap_destroy(h);
}

/* ---- thread caches (heap.c) ---- */

/* A small free and alloc of the same size, the steady state, is served
 * by the thread's cache: no engine call, no merge up an empty heap. With
 * RMPOOL_HEAP_CACHE=0 the same loop goes to the engine every time. */
static void pairs(bool on, uint64_t *engine_allocs, struct rmp_heap_cache_stats *cs)
{
	rmp_heap *h;
	struct rmp_heap_stats s;
	if (on)
		unsetenv("RMPOOL_HEAP_CACHE");
	else
		setenv("RMPOOL_HEAP_CACHE", "0", 1);
	cr_assert_eq(rmp_heap_create(1 << 24, 4096, &h), 0);
	for (int i = 0; i < 1000; i++) {
		void *p = rmp_heap_alloc(h, 4096);
		cr_assert_not_null(p);
		memset(p, i, 64);
		cr_assert_eq(rmp_heap_free(h, p), 0);
	}
	rmp_heap_stats(h, &s);
	*engine_allocs = s.alloc.calls + s.alloc.cas_ok; /* calls are counted on the slow path only */
	assert_consistent(h, 1 << 24);
	rmp_heap_cache_stats(h, cs);
	rmp_heap_destroy(h);
	unsetenv("RMPOOL_HEAP_CACHE");
}

Test(heap, cache_serves_the_steady_state)
{
	uint64_t on_ops, off_ops;
	struct rmp_heap_cache_stats on, off;
	pairs(true, &on_ops, &on);
	pairs(false, &off_ops, &off);
	cr_assert(on.on && !off.on);
	cr_assert_eq(on.hits_alloc, 999, "every alloc but the first from the cache: %llu",
		     (unsigned long long)on.hits_alloc);
	cr_assert_eq(on.hits_free, 1000);
	cr_assert_eq(on.held, 0, "the check drained it");
	cr_assert_eq(off.hits_alloc + off.hits_free, 0);
	cr_assert(on_ops < 10 && off_ops >= 1000, "engine allocation work: %llu with the cache, %llu without",
		  (unsigned long long)on_ops, (unsigned long long)off_ops);
}

/* A cached block is nobody's in the metadata: freeing it again is caught,
 * by its own thread and by any other, and changes nothing. */
static void *free_again(void *arg)
{
	void **a = arg;
	return (void *)(intptr_t)rmp_heap_free(a[0], a[1]);
}

Test(heap, cache_catches_double_frees)
{
	rmp_heap *h;
	pthread_t t;
	void *rc;
	cr_assert_eq(rmp_heap_create(1 << 20, 64, &h), 0);
	void *p = rmp_heap_alloc(h, 64), *q = rmp_heap_alloc(h, 64);
	cr_assert_eq(rmp_heap_free(h, p), 0);
	cr_assert_eq(rmp_heap_free(h, p), -EINVAL, "same thread");
	void *arg[2] = { h, p };
	cr_assert_eq(pthread_create(&t, NULL, free_again, arg), 0);
	pthread_join(t, &rc);
	cr_assert_eq((intptr_t)rc, -EINVAL, "another thread");
	cr_assert_eq(rmp_heap_block_size(h, p), 0, "not live");
	void *r = rmp_heap_alloc(h, 64);
	cr_assert_eq(r, p, "the cached block comes back once");
	cr_assert_eq(rmp_heap_free(h, r), 0);
	cr_assert_eq(rmp_heap_free(h, q), 0);
	assert_consistent(h, 1 << 20);
	rmp_heap_destroy(h);
}

/* Threads leave their caches full and exit or idle; a request for the
 * whole capacity still succeeds (alloc drains every cache before it says
 * ENOMEM), and the heap is one block again afterwards. */
struct filler {
	rmp_heap *h;
	pthread_barrier_t *hold;
};

static void *fill_cache(void *arg)
{
	struct filler *f = arg;
	void *p[40];
	for (int i = 0; i < 40; i++)
		cr_assert_not_null(p[i] = rmp_heap_alloc(f->h, (uint64_t)64 << (i % 4)));
	for (int i = 0; i < 40; i++)
		cr_assert_eq(rmp_heap_free(f->h, p[i]), 0);
	pthread_barrier_wait(f->hold); /* caches full */
	pthread_barrier_wait(f->hold); /* the main thread is done */
	return NULL;
}

Test(heap, cache_keeps_full_coalescing)
{
	rmp_heap *h;
	pthread_t t[3];
	pthread_barrier_t hold;
	struct rmp_heap_cache_stats cs;
	cr_assert_eq(rmp_heap_create(1 << 16, 64, &h), 0);
	pthread_barrier_init(&hold, NULL, 4);
	struct filler f = { h, &hold };
	for (int i = 0; i < 3; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, fill_cache, &f), 0);
	pthread_barrier_wait(&hold);
	rmp_heap_cache_stats(h, &cs);
	cr_assert_eq(cs.held, 120, "the threads' caches hold their blocks: %llu", (unsigned long long)cs.held);
	void *all = rmp_heap_alloc(h, 1 << 16);
	cr_assert_not_null(all, "the whole capacity, from the drained caches (errno %d)", errno);
	cr_assert_null(rmp_heap_alloc(h, 64));
	cr_assert_eq(errno, ENOMEM);
	cr_assert_eq(rmp_heap_free(h, all), 0);
	pthread_barrier_wait(&hold);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	assert_consistent(h, 1 << 16);
	rmp_heap_destroy(h);
	pthread_barrier_destroy(&hold);
}
