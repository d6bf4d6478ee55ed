/*
 * heap_internal.h - what tests and benchmarks see of a heap beyond
 * rmpool/heap.h: its engine and its word store (for the test modes).
 */
#ifndef RMP_HEAP_INTERNAL_H
#define RMP_HEAP_INTERNAL_H

#include "rmpool/heap.h"
#include "buddy.h"
#include "store_local.h"

struct rmp_store_local *rmp_heap_store(rmp_heap *h);
const struct rmp_buddy *rmp_heap_buddy(const rmp_heap *h);
void *rmp_heap_base(const rmp_heap *h);

#endif /* RMP_HEAP_INTERNAL_H */
