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
 * rmp_heap_alloc() never waits for another thread: when the memory that
 * could serve is held in passing by a thread preempted in the middle of a
 * split or merge, it fails with EAGAIN (buddy.h), not ENOMEM.
 */
#include "heap_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HEAP_SHARDS 64u /* slots: bits of one mask word */
#define DEFER_MAX   8u  /* credit a shard may keep on the free counts, per level */

struct shard {
	alignas(64) struct rmp_buddy_ctx ctx;
};

struct rmp_heap {
	struct rmp_buddy b;
	struct rmp_store_local store;
	char *base;
	uint64_t capacity;
	_Atomic uint64_t *meta;
	size_t meta_len;
	struct shard shards[HEAP_SHARDS + 1]; /* the last: for threads without a slot */
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
	int rc = rmp_buddy_alloc(&h->b, my_ctx(h), order, &off);
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
	return rmp_buddy_free_at(&h->b, my_ctx(h), off, NULL);
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
	/* The heap is quiet (the caller's promise): every thread's shard
	 * gives its credit back, then the counts must be exact. */
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
