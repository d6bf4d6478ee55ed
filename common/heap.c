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
 * Per-thread engine contexts (cursors and counters) live in cache-line
 * sized shards; a thread takes the next shard on its first call, so
 * threads rarely share a cursor or a counter line.
 */
#include "heap_internal.h"

#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HEAP_SHARDS 64u

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
	struct shard shards[HEAP_SHARDS];
};

static _Atomic unsigned next_shard;
static _Thread_local unsigned my_shard_plus1;

static struct rmp_buddy_ctx *my_ctx(rmp_heap *h)
{
	if (my_shard_plus1 == 0)
		my_shard_plus1 = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % HEAP_SHARDS + 1;
	return &h->shards[my_shard_plus1 - 1].ctx;
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
	for (unsigned s = 0; s < HEAP_SHARDS; s++)
		rmp_buddy_ctx_init(&h->shards[s].ctx, &h->b, s);
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

	if (!h || rmp_buddy_order_for(&h->b.g, size, &order) != 0) {
		errno = EINVAL;
		return NULL;
	}
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

	for (unsigned i = 0; i < HEAP_SHARDS; i++) {
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
