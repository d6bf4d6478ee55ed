/*
 * store.h - the word store: the only memory interface the buddy engine has.
 *
 * A word store offers exactly what one-sided RDMA offers on a registered
 * region: 64-bit loads of one or more consecutive words (RDMA READ),
 * compare-and-swap returning the old value and fetch-and-add returning
 * the old value (RDMA atomics), on 8-byte-aligned words addressed by
 * their index in the metadata region. Nothing else: no masked atomics,
 * no fetch-or, no locks.
 *
 * Operations are posted as a batch and waited for together (exec): the
 * remote store turns one batch into one round trip of pipelined work
 * requests. Inside a batch the operations are independent and may
 * complete in any order, except that an atomic marked `after` takes
 * effect after every atomic before it in the batch (one RC queue pair
 * executes atomics in the order they were posted; an atomic is not
 * ordered after a READ, so `after` never follows a LOAD). A load in a
 * batch may return a value that was already stale when it landed. The
 * engine therefore treats loads as hints and takes decisions only from
 * successful CAS results.
 *
 * post() hands over FAAs whose results nobody reads (free-count changes,
 * the end of a move): the store sends them at once and does not wait; they
 * take effect after everything executed before and before anything
 * executed after, and soon whatever the caller does next (they are not
 * held back for a later batch).
 *
 * Implementations: store_local.c (C11 atomics on process memory, with
 * test modes) and, in client/, the RDMA store.
 */
#ifndef RMP_STORE_H
#define RMP_STORE_H

#include <stdatomic.h>
#include <stdint.h>

enum rmp_wop_kind {
	RMP_WOP_LOAD = 1, /* dst[0..nwords) = words[idx..idx+nwords) */
	RMP_WOP_CAS,      /* old = words[idx]; if old == arg then words[idx] = swap */
	RMP_WOP_FAA,      /* old = words[idx]; words[idx] += arg */
};

struct rmp_wop {
	uint64_t idx;     /* first word, index into the metadata region */
	uint64_t arg;     /* CAS: expected value; FAA: addend */
	uint64_t swap;    /* CAS: new value */
	uint64_t old;     /* CAS/FAA: the value before, filled by the store */
	uint64_t *dst;    /* LOAD: destination for nwords words */
	uint32_t nwords;  /* LOAD: number of consecutive words (>= 1) */
	uint8_t kind;     /* enum rmp_wop_kind */
	uint8_t after;    /* CAS/FAA: after every earlier CAS/FAA of the batch */
};

struct rmp_store;

struct rmp_store_ops {
	/* Execute all n operations and wait for all of them. 0 or -errno
	 * (-ETIMEDOUT, -EIO, ...); on error, the results are undefined. */
	int (*exec)(struct rmp_store *s, struct rmp_wop *ops, unsigned n);
	/* Hand over operations whose results are not needed (FAA only). */
	int (*post)(struct rmp_store *s, struct rmp_wop *ops, unsigned n);
};

struct rmp_store {
	const struct rmp_store_ops *ops;
	/* How many words one scanning load fetches. Local memory wants a
	 * cache line; a remote store wants more per round trip. */
	uint32_t chunk_words;
	/* Non-NULL: the words are in this process's memory and no test mode
	 * is on, so the engine may apply the same C11 atomics that exec()
	 * would, inline, without building operations or an indirect call.
	 * Changed only while no operation runs. */
	_Atomic uint64_t *direct;
};

static inline void rmp_wop_load(struct rmp_wop *op, uint64_t idx, uint32_t n, uint64_t *dst)
{
	*op = (struct rmp_wop){ .kind = RMP_WOP_LOAD, .idx = idx, .nwords = n, .dst = dst };
}

static inline void rmp_wop_cas(struct rmp_wop *op, uint64_t idx, uint64_t expect, uint64_t swap)
{
	*op = (struct rmp_wop){ .kind = RMP_WOP_CAS, .idx = idx, .arg = expect, .swap = swap };
}

static inline void rmp_wop_faa(struct rmp_wop *op, uint64_t idx, uint64_t add)
{
	*op = (struct rmp_wop){ .kind = RMP_WOP_FAA, .idx = idx, .arg = add };
}

#endif /* RMP_STORE_H */
