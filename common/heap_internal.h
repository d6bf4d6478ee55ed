/*
 * heap_internal.h - what tests and benchmarks see of a heap beyond
 * rmpool/heap.h: its engine and its word store (for the test modes).
 */
#ifndef RMP_HEAP_INTERNAL_H
#define RMP_HEAP_INTERNAL_H

#include <stdbool.h>

#include "rmpool/heap.h"
#include "buddy.h"
#include "store_local.h"

struct rmp_store_local *rmp_heap_store(rmp_heap *h);
const struct rmp_buddy *rmp_heap_buddy(const rmp_heap *h);
void *rmp_heap_base(const rmp_heap *h);

/* The thread caches (heap.c): blocks handed out from and taken into a
 * cache, given back to the engine, and held now; a quiet heap's figures
 * (the owners update theirs without a lock). */
struct rmp_heap_cache_stats {
	bool on;
	uint64_t hits_alloc, hits_free, drained, held;
};
void rmp_heap_cache_stats(const rmp_heap *h, struct rmp_heap_cache_stats *out);

#endif /* RMP_HEAP_INTERNAL_H */
