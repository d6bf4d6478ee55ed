/*
 * store_local.h - the word store on process memory (C11 atomics).
 *
 * The fast path for the in-process heap, and the test bench of the buddy
 * engine. Besides the plain mode it has a mode that behaves the way RDMA
 * may: a load returns, now and then, a value the word held earlier (as a
 * READ that raced with atomics does), and the operations of one batch run
 * in random order. A per-thread hook freezes the calling thread after its
 * k-th word operation, so tests can stall a client at any point of an
 * allocation or a free and check that the others still finish; another
 * cuts it off there for good (a client killed mid-batch).
 *
 * Never mix these atomics with RDMA atomics on the same memory: rxe
 * makes RDMA atomics atomic only against each other (DESIGN.md,
 * Soft-RoCE).
 */
#ifndef RMP_STORE_LOCAL_H
#define RMP_STORE_LOCAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "store.h"

enum {
	RMP_STORE_STALE_LOADS = 1u << 0, /* loads sometimes return an older value */
	RMP_STORE_SHUFFLE     = 1u << 1, /* a batch completes in random order */
	RMP_STORE_TRACE       = 1u << 2, /* count word operations per thread; needed by
					     rmp_store_local_freeze_after() */
};

struct rmp_store_local {
	struct rmp_store base;
	_Atomic uint64_t *words;
	uint64_t nwords;
	_Atomic unsigned flags;
	unsigned stale_permille; /* chance of a stale load, per mille */
	uint64_t gen;            /* this store's generation (stale loads key on it) */
};

void rmp_store_local_init(struct rmp_store_local *s, _Atomic uint64_t *words, uint64_t nwords);
/* Test modes (RMP_STORE_*); 0 turns them off, e.g. once every thread has
 * stopped, where a real RDMA READ would no longer see an old value. Call
 * only while no operation runs. With no mode on, the engine works on the
 * words directly (store.h: direct) and nothing is counted here. */
void rmp_store_local_set_mode(struct rmp_store_local *s, unsigned flags, unsigned stale_permille);

/* Per-thread hook: after this thread's k-th word operation from now
 * (k >= 1), call fn(arg) before going on; fn may block. k = 0 disarms. */
void rmp_store_local_freeze_after(uint64_t k, void (*fn)(void *), void *arg);
/* Per-thread cut: this thread's word operations after the k-th from now
 * fail with -EIO and change nothing (a client killed in the middle of a
 * batch); k = 0 disarms. Needs RMP_STORE_TRACE (or another mode). */
void rmp_store_local_cut_after(uint64_t k);
/* Word operations issued by this thread so far. */
uint64_t rmp_store_local_thread_ops(void);

#endif /* RMP_STORE_LOCAL_H */
