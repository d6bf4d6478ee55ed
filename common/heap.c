/*
 * heap.c - the in-process lock-free buddy heap (rmpool/heap.h): the buddy
 * engine on the local word store, over one anonymous mapping.
 *
 * A pointer maps to an offset from the mapping's base. Free recovers the
 * block's order from the metadata alone (the level at which the block
 * starting there is ALLOC), so callers pass no size, and a stray or
 * doubled free is caught from the shared state, not from a per-thread
 * table.
 *
 * Per-thread engine contexts (cursors, counters, credit) live in
 * cache-line aligned shards. A thread owns a slot (0..63) for its
 * lifetime, the same in every heap, taken on its first call with one CAS
 * on a process-wide mask and given back when it exits; a slot's shard is
 * used by one thread at a time, so it may keep credit on the free counts
 * (rmp_buddy_ctx_defer): a free and an alloc of the same order, the
 * steady state, then touch no shared count (one load and one CAS each).
 * Threads beyond 64 share one more shard that keeps no credit.
 *
 * Thread caches (lazy coalescing): a slot's shard keeps up to
 * CACHE_DEPTH freed blocks of each of the CACHE_LEVELS smallest orders,
 * held in the metadata (rmp_buddy_hold: ALLOC -> NONE, one CAS, no count
 * touched), so that a free and an alloc of a small size - the steady
 * state of most programs - neither merges up nor splits down through
 * every level of an empty heap. A held block is nobody's: a search never
 * finds it, its buddy does not merge with it, and freeing it again is
 * -EINVAL from the shared state, so the double-free guarantee holds for
 * cached blocks too. A cache is a small array behind a try-lock word that
 * its owner takes uncontended; another thread takes it only to drain it.
 * Full coalescing is kept by draining: before alloc reports ENOMEM or
 * EAGAIN it gives every cache's blocks back to the engine (unhold, then a
 * free that merges) and tries again, and rmp_heap_check drains first; a
 * cache whose owner holds its lock at that moment is skipped, and then
 * the answer is EAGAIN, never ENOMEM. A full cache gives half its blocks
 * of that order back. RMPOOL_HEAP_CACHE=0 in the environment at
 * rmp_heap_create turns the caches off (the benchmarks' "cache off").
 *
 * rmp_heap_alloc() never waits for another thread: when the memory that
 * could serve is held in passing by a thread preempted in the middle of a
 * split or merge, it fails with EAGAIN (buddy.h), not ENOMEM.
 */
#include "heap_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HEAP_SHARDS 64u /* slots: bits of one mask word */
#define DEFER_MAX   8u  /* credit a shard may keep on the free counts, per level */
#define CACHE_LEVELS 8u  /* the smallest orders a thread cache keeps */
#define CACHE_DEPTH 16u  /* blocks per order */

struct tcache {
	alignas(64) _Atomic unsigned lock; /* 0 free, 1 taken (try-lock only, never waited on) */
	_Atomic unsigned total;            /* blocks held, read without the lock as a hint */
	unsigned n[CACHE_LEVELS];
	uint64_t off[CACHE_LEVELS][CACHE_DEPTH];
	uint64_t hits_alloc, hits_free, drained; /* the owner's, or under the lock */
};

struct shard {
	alignas(64) struct rmp_buddy_ctx ctx;
	struct tcache tc;
};

struct rmp_heap {
	struct rmp_buddy b;
	struct rmp_store_local store;
	char *base;
	uint64_t capacity;
	_Atomic uint64_t *meta;
	size_t meta_len;
	bool cache_on;
	unsigned cache_top; /* the largest order cached */
	struct shard shards[HEAP_SHARDS + 1]; /* the last: for threads without a slot (no cache) */
};

static _Atomic uint64_t slots_taken;
static pthread_key_t slot_key;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;
static int slot_key_ok;
static _Thread_local unsigned my_slot_plus1; /* 0: none yet */

static void slot_release(void *v)
{
	unsigned s = (unsigned)(uintptr_t)v - 1;
	atomic_fetch_and_explicit(&slots_taken, ~(1ull << s), memory_order_release);
}

static void slot_key_create(void)
{
	slot_key_ok = pthread_key_create(&slot_key, slot_release) == 0;
}

/* This thread's slot, or HEAP_SHARDS (the shared shard) when all are
 * taken or a slot could not be tied to the thread's exit. */
static unsigned my_slot(void)
{
	if (my_slot_plus1)
		return my_slot_plus1 - 1;
	uint64_t taken = atomic_load_explicit(&slots_taken, memory_order_relaxed);
	unsigned s = HEAP_SHARDS;
	while (slot_key_ok && taken != ~0ull) {
		unsigned f = (unsigned)__builtin_ctzll(~taken);
		if (atomic_compare_exchange_weak_explicit(&slots_taken, &taken, taken | 1ull << f,
							  memory_order_acquire, memory_order_relaxed)) {
			if (pthread_setspecific(slot_key, (void *)(uintptr_t)(f + 1)) == 0)
				s = f;
			else
				slot_release((void *)(uintptr_t)(f + 1));
			break;
		}
	}
	my_slot_plus1 = s + 1;
	return s;
}

static struct rmp_buddy_ctx *my_ctx(rmp_heap *h)
{
	return &h->shards[my_slot()].ctx;
}

static bool tc_trylock(struct tcache *tc)
{
	unsigned z = 0;
	return atomic_compare_exchange_strong_explicit(&tc->lock, &z, 1, memory_order_acquire, memory_order_relaxed);
}

static void tc_unlock(struct tcache *tc)
{
	atomic_store_explicit(&tc->lock, 0, memory_order_release);
}

/* Gives n blocks of cache level k (from the top of its stack) back to the
 * engine: unhold, then a free that merges. Requires tc's lock. */
static int tc_give_back_locked(rmp_heap *h, struct rmp_buddy_ctx *ctx, struct tcache *tc, unsigned k, unsigned n)
{
	unsigned order = h->b.g.min_order + k;
	int rc = 0;

	while (n-- > 0 && tc->n[k] > 0) {
		uint64_t off = tc->off[k][--tc->n[k]];
		atomic_fetch_sub_explicit(&tc->total, 1, memory_order_relaxed);
		int r = rmp_buddy_unhold(&h->b, off, order);
		if (r == 0)
			r = rmp_buddy_free(&h->b, ctx, off, order);
		if (r && !rc)
			rc = r;
		tc->drained++;
	}
	return rc;
}

/* Drains every thread cache into the engine. 0; 1 when some cache with
 * blocks was skipped because its owner held its lock (the caller says
 * EAGAIN, not ENOMEM); negative when the metadata refused a block back. */
static int drain_all(rmp_heap *h, struct rmp_buddy_ctx *ctx)
{
	int skipped = 0, rc = 0;

	for (unsigned s = 0; s < HEAP_SHARDS; s++) {
		struct tcache *tc = &h->shards[s].tc;
		if (atomic_load_explicit(&tc->total, memory_order_relaxed) == 0)
			continue;
		if (!tc_trylock(tc)) {
			skipped = 1;
			continue;
		}
		for (unsigned k = 0; k < CACHE_LEVELS; k++) {
			int r = tc_give_back_locked(h, ctx, tc, k, CACHE_DEPTH);
			if (r && !rc)
				rc = r;
		}
		tc_unlock(tc);
	}
	return rc ? rc : skipped;
}

/* A block of cache level k from this thread's cache, unheld: 0 and *off,
 * or -ENOENT. */
static int tc_take(rmp_heap *h, struct tcache *tc, unsigned k, uint64_t *off)
{
	if (atomic_load_explicit(&tc->total, memory_order_relaxed) == 0 || !tc_trylock(tc))
		return -ENOENT;
	int rc = -ENOENT;
	while (tc->n[k] > 0) {
		uint64_t o = tc->off[k][--tc->n[k]];
		atomic_fetch_sub_explicit(&tc->total, 1, memory_order_relaxed);
		if (rmp_buddy_unhold(&h->b, o, h->b.g.min_order + k) == 0) {
			*off = o;
			tc->hits_alloc++;
			rc = 0;
			break;
		}
	}
	tc_unlock(tc);
	return rc;
}

/* Frees the block at off through this thread's cache: 0 when it was
 * held and cached (or freed), 1 when the caller must free it the usual
 * way, negative for a bad free. */
static int tc_free(rmp_heap *h, unsigned slot, uint64_t off)
{
	struct shard *sh = &h->shards[slot];
	struct tcache *tc = &sh->tc;
	unsigned order;

	if (!tc_trylock(tc))
		return 1; /* a drain holds it: the usual way */
	int rc = rmp_buddy_hold(&h->b, &sh->ctx, off, h->cache_top, &order);
	if (rc == 1) {
		tc_unlock(tc);
		return rmp_buddy_free(&h->b, &sh->ctx, off, order);
	}
	if (rc < 0) {
		tc_unlock(tc);
		return 1; /* the engine's free decides, authoritatively */
	}
	unsigned k = order - h->b.g.min_order;
	if (tc->n[k] == CACHE_DEPTH)
		rc = tc_give_back_locked(h, &sh->ctx, tc, k, CACHE_DEPTH / 2);
	tc->off[k][tc->n[k]++] = off;
	atomic_fetch_add_explicit(&tc->total, 1, memory_order_relaxed);
	tc->hits_free++;
	tc_unlock(tc);
	return rc;
}

static uint64_t bitrev64(uint64_t x)
{
	uint64_t r = 0;
	for (unsigned k = 0; k < 64; k++, x >>= 1)
		r = r << 1 | (x & 1);
	return r;
}

static unsigned log2_ceil(uint64_t x)
{
	return x <= 1 ? 0 : 64 - (unsigned)__builtin_clzll(x - 1);
}

int rmp_heap_create(uint64_t bytes, uint64_t min_block, rmp_heap **out)
{
	struct rmp_buddy_geom g;
	rmp_heap *h;
	int rc;

	if (!out || bytes == 0 || bytes > (1ull << RMP_BUDDY_MAX_ORDER) || min_block == 0 ||
	    (min_block & (min_block - 1)) != 0)
		return -EINVAL;
	unsigned M = log2_ceil(bytes), m = log2_ceil(min_block);
	if (m > M)
		return -EINVAL; /* minimum block larger than the capacity */
	rc = rmp_buddy_geom_init(&g, M, m);
	if (rc)
		return rc;

	/* Here, not on the first alloc: the alloc path never waits. */
	pthread_once(&slot_once, slot_key_create);
	h = aligned_alloc(alignof(struct shard), sizeof(*h));
	if (!h)
		return -ENOMEM;
	memset(h, 0, sizeof(*h));
	h->capacity = 1ull << M;
	h->meta_len = g.total_words * sizeof(uint64_t);
	h->meta = mmap(NULL, h->meta_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h->meta == MAP_FAILED) {
		rc = -ENOMEM;
		goto out_free_heap;
	}
	/* NORESERVE: the heap's pages are only committed when used. */
	h->base = mmap(NULL, h->capacity, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (h->base == MAP_FAILED) {
		rc = -ENOMEM;
		goto out_unmap_meta;
	}
	/* Plain stores before any other thread can see the heap; the
	 * atomic and plain views of a uint64_t have the same layout. */
	rmp_buddy_format((uint64_t *)h->meta, &g, h->capacity);
	rmp_store_local_init(&h->store, h->meta, g.total_words);
	rmp_buddy_init(&h->b, &g, &h->store.base);
	const char *env = getenv("RMPOOL_HEAP_CACHE");
	h->cache_on = !(env && strcmp(env, "0") == 0);
	h->cache_top = g.min_order + CACHE_LEVELS - 1;
	if (h->cache_top > g.max_order)
		h->cache_top = g.max_order;
	for (unsigned s = 0; s <= HEAP_SHARDS; s++) {
		rmp_buddy_ctx_init(&h->shards[s].ctx, &h->b, s);
		if (s < HEAP_SHARDS) {
			/* Slots 0, 1, 2, 3... start at 0, 1/2, 1/4, 3/4... of the
			 * heap: the first threads as far apart as can be. */
			rmp_buddy_ctx_home(&h->shards[s].ctx, &h->b, bitrev64(s));
			rmp_buddy_ctx_defer(&h->shards[s].ctx, DEFER_MAX);
		}
	}
	*out = h;
	return 0;

out_unmap_meta:
	munmap((void *)h->meta, h->meta_len);
out_free_heap:
	free(h);
	return rc;
}

void *rmp_heap_alloc(rmp_heap *h, uint64_t size)
{
	unsigned order;
	uint64_t off;

	if (!h || size == 0 || size > h->capacity) {
		errno = EINVAL;
		return NULL;
	}
	order = log2_ceil(size);
	if (order < h->b.g.min_order)
		order = h->b.g.min_order;
	unsigned slot = my_slot();
	struct rmp_buddy_ctx *ctx = &h->shards[slot].ctx;
	bool cached = h->cache_on && slot < HEAP_SHARDS && order <= h->cache_top;
	if (cached && tc_take(h, &h->shards[slot].tc, order - h->b.g.min_order, &off) == 0)
		return h->base + off;
	int rc = rmp_buddy_alloc(&h->b, ctx, order, &off);
	if ((rc == -ENOMEM || rc == -EAGAIN) && h->cache_on) {
		/* The memory may sit in thread caches: give it all back to the
		 * engine, then ask again. A cache skipped while its owner held
		 * it makes the answer EAGAIN (it exists, in passing). */
		int d = drain_all(h, ctx);
		rc = rmp_buddy_alloc(&h->b, ctx, order, &off);
		if (rc == -ENOMEM && d == 1)
			rc = -EAGAIN;
	}
	if (rc) {
		errno = -rc;
		return NULL;
	}
	return h->base + off;
}

static int offset_of(const rmp_heap *h, const void *p, uint64_t *off)
{
	uintptr_t a = (uintptr_t)p, base = (uintptr_t)h->base;

	if (!p || a < base || a - base >= h->capacity)
		return -EINVAL;
	*off = a - base;
	return 0;
}

int rmp_heap_free(rmp_heap *h, void *p)
{
	uint64_t off;

	if (!h || offset_of(h, p, &off) != 0)
		return -EINVAL;
	unsigned slot = my_slot();
	if (h->cache_on && slot < HEAP_SHARDS) {
		int rc = tc_free(h, slot, off);
		if (rc != 1)
			return rc;
	}
	return rmp_buddy_free_at(&h->b, &h->shards[slot].ctx, off, NULL);
}

uint64_t rmp_heap_block_size(rmp_heap *h, const void *p)
{
	unsigned order;
	uint64_t off;

	if (!h || offset_of(h, p, &off) != 0 || rmp_buddy_order_of(&h->b, my_ctx(h), off, true, &order) != 0)
		return 0;
	return 1ull << order;
}

uint64_t rmp_heap_capacity(const rmp_heap *h)
{
	return h ? h->capacity : 0;
}

void rmp_heap_destroy(rmp_heap *h)
{
	if (!h)
		return;
	munmap(h->base, h->capacity);
	munmap((void *)h->meta, h->meta_len);
	free(h);
}

void rmp_heap_stats(const rmp_heap *h, struct rmp_heap_stats *out)
{
	struct rmp_buddy_stats sum = { 0 }, s;

	for (unsigned i = 0; i <= HEAP_SHARDS; i++) {
		rmp_buddy_stats(&h->shards[i].ctx, &s);
		rmp_buddy_stats_add(&sum, &s);
	}
	out->alloc = (struct rmp_heap_opstats){ sum.alloc.calls, sum.alloc.round_trips, sum.alloc.loads,
						sum.alloc.cas_ok, sum.alloc.cas_fail, sum.alloc.faa };
	out->free = (struct rmp_heap_opstats){ sum.free.calls, sum.free.round_trips, sum.free.loads,
					       sum.free.cas_ok, sum.free.cas_fail, sum.free.faa };
}

int rmp_heap_check(rmp_heap *h, char *err, size_t errlen, uint64_t *free_bytes)
{
	struct rmp_buddy_report *r = malloc(sizeof(*r));
	int rc;

	if (!r)
		return -ENOMEM;
	/* The heap is quiet (the caller's promise): every thread cache gives
	 * its blocks back and every shard its credit, then the counts must be
	 * exact and every block coalesced. */
	rc = drain_all(h, &h->shards[HEAP_SHARDS].ctx);
	if (rc) {
		if (err && errlen)
			snprintf(err, errlen, "thread caches could not be drained (%d): is the heap quiet?", rc);
		free(r);
		return rc < 0 ? rc : -EBUSY;
	}
	for (unsigned s = 0; s < HEAP_SHARDS; s++)
		rmp_buddy_ctx_flush(&h->b, &h->shards[s].ctx);
	rc = rmp_buddy_check(&h->b, r);
	if (err && errlen)
		snprintf(err, errlen, "%s", r->error);
	if (free_bytes)
		*free_bytes = r->free_bytes;
	free(r);
	return rc;
}

struct rmp_store_local *rmp_heap_store(rmp_heap *h)
{
	return &h->store;
}

const struct rmp_buddy *rmp_heap_buddy(const rmp_heap *h)
{
	return &h->b;
}

void *rmp_heap_base(const rmp_heap *h)
{
	return h->base;
}

void rmp_heap_cache_stats(const rmp_heap *h, struct rmp_heap_cache_stats *out)
{
	*out = (struct rmp_heap_cache_stats){ .on = h->cache_on };
	for (unsigned s = 0; s < HEAP_SHARDS; s++) {
		const struct tcache *tc = &h->shards[s].tc;
		out->hits_alloc += tc->hits_alloc;
		out->hits_free += tc->hits_free;
		out->drained += tc->drained;
		out->held += atomic_load_explicit(&tc->total, memory_order_relaxed);
	}
}
