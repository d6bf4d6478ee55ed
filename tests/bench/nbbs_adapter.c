/*
 * nbbs_adapter.c - rmp_heap behind the two calls that the benchmark
 * drivers of NBBS (HPDCS/NBBS, the lock-free buddy system) make of the
 * allocator they are linked with: bd_xx_malloc(bytes) and bd_xx_free(p).
 *
 * tests/bench/nbbs-compare.sh links this file, instead of an NBBS
 * allocator, into NBBS's own drivers (threadtest, linux-scalability,
 * constant occupancy, cached allocation), built outside the tree from a
 * fetched NBBS checkout; nothing of NBBS is in this file or in the tree.
 * bench_shapes.c runs the same four shapes on its own, and its figures
 * must agree with these.
 *
 * The heap is the one NBBS is configured with in the comparison: 2 GiB in
 * blocks of at least 4 KiB (RMP_NBBS_HEAP_BYTES, RMP_NBBS_MIN_BLOCK
 * override both). It is created before main, as NBBS creates its own: the
 * drivers call no init, and the first timed allocation must not pay for
 * the heap's creation. At exit (every driver frees all it allocated and
 * joins its threads first) it prints to stderr, in one line, what the
 * driver cannot see: the word operations per alloc and per free from
 * rmp_heap_stats, the allocations that failed with ENOMEM (false ones:
 * the drivers never fill a 2 GiB heap), and whether everything coalesced
 * back into one block of the whole capacity.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmpool/heap.h"

/* The drivers declare these two themselves. */
void *bd_xx_malloc(size_t bytes);
void bd_xx_free(void *p);

static rmp_heap *heap;
static _Atomic uint64_t enomem, other_errors, bad_frees;

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);
	return v && *v ? strtoull(v, NULL, 0) : dflt;
}

__attribute__((constructor)) static void adapter_create(void)
{
	uint64_t bytes = env_u64("RMP_NBBS_HEAP_BYTES", 2ull << 30);
	uint64_t min_block = env_u64("RMP_NBBS_MIN_BLOCK", 4096);
	int rc = rmp_heap_create(bytes, min_block, &heap);
	if (rc) {
		fprintf(stderr, "nbbs_adapter: rmp_heap_create(%llu, %llu): %s\n", (unsigned long long)bytes,
			(unsigned long long)min_block, strerror(-rc));
		exit(1);
	}
}

void *bd_xx_malloc(size_t bytes)
{
	void *p = rmp_heap_alloc(heap, bytes);
	if (!p)
		atomic_fetch_add_explicit(errno == ENOMEM ? &enomem : &other_errors, 1, memory_order_relaxed);
	return p;
}

void bd_xx_free(void *p)
{
	/* The constant-occupancy driver frees a slot whose allocation had
	 * failed: NULL, as free(NULL) would take. */
	if (p && rmp_heap_free(heap, p) != 0)
		atomic_fetch_add_explicit(&bad_frees, 1, memory_order_relaxed);
}

static double per(uint64_t n, uint64_t calls)
{
	return calls ? (double)n / (double)calls : 0.0;
}

__attribute__((destructor)) static void adapter_report(void)
{
	struct rmp_heap_stats s;
	char err[200] = "";
	uint64_t free_bytes = 0;

	if (!heap)
		return;
	rmp_heap_stats(heap, &s);
	int rc = rmp_heap_check(heap, err, sizeof(err), &free_bytes);
	const char *coalesced = rc ? "check-failed" : free_bytes == rmp_heap_capacity(heap) ? "yes" : "no";
	fprintf(stderr,
		"nbbs_adapter: allocs %llu frees %llu | per alloc: loads %.2f cas %.2f cas_fail %.3f faa %.2f | "
		"per free: loads %.2f cas %.2f | false_enomem %llu other_errors %llu bad_frees %llu | coalesced %s%s%s\n",
		(unsigned long long)s.alloc.calls, (unsigned long long)s.free.calls, per(s.alloc.loads, s.alloc.calls),
		per(s.alloc.cas_ok + s.alloc.cas_fail, s.alloc.calls), per(s.alloc.cas_fail, s.alloc.calls),
		per(s.alloc.faa, s.alloc.calls), per(s.free.loads, s.free.calls),
		per(s.free.cas_ok + s.free.cas_fail, s.free.calls), (unsigned long long)atomic_load(&enomem),
		(unsigned long long)atomic_load(&other_errors), (unsigned long long)atomic_load(&bad_frees), coalesced,
		rc ? ": " : "", rc ? err : "");
	rmp_heap_destroy(heap);
	heap = NULL;
}
