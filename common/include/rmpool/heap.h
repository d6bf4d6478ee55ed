/*
 * rmpool/heap.h - a lock-free buddy heap in process memory.
 *
 * The same engine that manages an rmpool pool over RDMA, here on local
 * memory with C11 atomics: rmp_heap_create() sets aside 2^M bytes (M the
 * least power of two that holds `bytes`); rmp_heap_alloc() returns a block
 * of the least power of two >= size (never below min_block), splitting
 * larger free blocks in halves; rmp_heap_free() returns a block and
 * reunites it with its free buddy, repeatedly. Any number of threads may
 * call alloc and free at once: no lock, no spin-wait, no system call on
 * those paths. Blocks are not zeroed (like malloc).
 *
 * Errors: functions returning int give 0 or a negative errno; alloc gives
 * NULL and sets errno (EINVAL for a size of 0 or above the capacity,
 * ENOMEM when no block of the size is free nor can be made by splitting,
 * EAGAIN when the memory that could serve is held in passing by another
 * thread stalled or preempted in the middle of a split or merge: alloc
 * does not wait for it; try again).
 */
#ifndef RMPOOL_HEAP_H
#define RMPOOL_HEAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* This is an opaque structure. */
typedef struct rmp_heap rmp_heap;

/* bytes > 0 (rounded up to a power of two, at most 2^57); min_block a
 * power of two, at most the capacity, and such that capacity/min_block
 * <= 2^28 (the metadata is 2 bits per block per order: 4 bits per minimum
 * block in all). -EINVAL when these do not hold, -ENOMEM when the memory
 * cannot be mapped. */
int rmp_heap_create(uint64_t bytes, uint64_t min_block, rmp_heap **out);
/* NULL + errno (EINVAL, ENOMEM, EAGAIN: see above) when it can't. */
void *rmp_heap_alloc(rmp_heap *h, uint64_t size);
/* 0, or -EINVAL for NULL, a pointer not from this heap, not the start of
 * a live block, or a block freed already. The heap is unchanged then. */
int rmp_heap_free(rmp_heap *h, void *p);
/* 2^M. */
uint64_t rmp_heap_capacity(const rmp_heap *h);
/* The size of the live block at p (its power of two), or 0 if none. */
uint64_t rmp_heap_block_size(rmp_heap *h, const void *p);
void rmp_heap_destroy(rmp_heap *h);

/* Word operations issued, per kind of operation, summed over threads. */
struct rmp_heap_opstats {
	uint64_t calls, round_trips, loads, cas_ok, cas_fail, faa;
};
struct rmp_heap_stats {
	struct rmp_heap_opstats alloc, free;
};
void rmp_heap_stats(const rmp_heap *h, struct rmp_heap_stats *out);

/* Walk the heap's metadata and check its invariants; call it only when
 * no thread is inside alloc or free. 0, or -EUCLEAN with a description in
 * err. free_bytes (may be NULL) receives the bytes in free blocks. */
int rmp_heap_check(rmp_heap *h, char *err, size_t errlen, uint64_t *free_bytes);

#ifdef __cplusplus
}
#endif

#endif /* RMPOOL_HEAP_H */
