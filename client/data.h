/*
 * data.h - what the modules of librmpool's data path share (not
 * installed). The control half's modules share client_internal.h.
 *
 * Modules:
 *   data.c      the pool's data path: setup on first use (metadata
 *               connection, buddy engine, segment index), teardown,
 *               rmp_alloc/rmp_free, argument and liveness checks, stats
 *   route.c     the segment index and the one routing function (route.h)
 *   transfer.c  rmp_read/rmp_write: donor connections and the pipeline
 *               that moves a range's pieces
 *   bound.c     the bounds of donor waits: a connect's budget, the
 *               back-off after a timeout, parallel connects
 *   buffer.c    registered buffers (rmp_buffer_*, rmp_*_buf)
 *   async.c     asynchronous operations: the worker threads (rmp_*_async,
 *               rmp_op_*)
 *   shard.c     the engine contexts (shards): which one an operation
 *               runs on, and a shard that failed mid-operation (its slot
 *               abandoned until the coordinator resets it; shard.h)
 *
 * Locks, in the order they are taken:
 *   p->data_lock       the data path's setup (rmp_data_of)
 *   d->meta_rw         the metadata connection (read: using it; write:
 *                      re-opening it)
 *   a shard's lock     its engine context, for one allocation or free
 *   donor locks        in index order; one covers a donor's connection,
 *                      its pipeline, its bounce buffer and the MRs that
 *                      registered buffers hold on its PD
 *   buffer.c's list lock  the live registered buffers, their refs
 *   async.c's lock     the queue and the ops not yet reaped
 * The segment index is read-only after setup and needs no lock.
 */
#ifndef RMP_CLIENT_DATA_H
#define RMP_CLIENT_DATA_H

#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>

#include "bound.h"
#include "buddy.h"
#include "cache.h"
#include "client_internal.h"
#include "liveset.h"
#include "rdma.h"
#include "route.h"
#include "shard.h"
#include "store_rdma.h"

/* One work request moves at most this: rxe under emulation drops packets
 * of long READ bursts and retries whole requests; shorter ones recover
 * faster. */
#define RMP_PIECE_MAX (64u << 10)
#define RMP_DEPTH_MAX 16u    /* pieces in flight per donor (1 MiB): a power of 2 */
/* Per donor connection: a bounce slot per piece in flight. */
#define RMP_BOUNCE_BYTES (RMP_DEPTH_MAX * RMP_PIECE_MAX)
/* The small-block cache's chunks: 1 MiB blocks of the pool. A library
 * constant, so that any process can tell a handle inside a live chunk
 * (rmpool.h, rmp_pool_set_small_cache). */
#define RMP_CACHE_CHUNK_ORDER 20u

/* One donor of the pool, in the segment table's order (its slot). */
struct rmp_data_donor {
	uint32_t donor_id;
	struct rmp_wire_endpoint ep;
	pthread_mutex_t lock;
	rmp_rdma_conn *conn; /* NULL until first use */
	uint8_t *bounce;
	struct ibv_mr *bounce_mr;
	/* the pipeline of the transfer holding the lock: pieces head - tail
	 * are in flight (at most RMP_DEPTH_MAX), piece i in ops/user[i %
	 * RMP_DEPTH_MAX] and (through the bounce buffer) in bounce slot i %
	 * RMP_DEPTH_MAX of RMP_PIECE_MAX bytes */
	struct rmp_rdma_op ops[RMP_DEPTH_MAX];
	void *user[RMP_DEPTH_MAX]; /* read: where each piece goes */
	unsigned head, tail;
	/* Out of service (rmp_data_donor_lost): set once, never cleared while
	 * this segment table holds; every transfer touching it then fails at
	 * once with -RMP_EDONOR and lost_why. Read without the lock, and set
	 * without it (so that marking a donor lost never waits for a
	 * transfer that holds the lock): the first to claim lost_claimed
	 * writes lost_why, then sets lost. */
	_Atomic bool lost;
	_Atomic bool lost_claimed;
	char lost_why[160];
	/* After a timeout (connect or completions): every use fails at once
	 * with -ETIMEDOUT until the back-off is over (bound.h). Under the
	 * lock. */
	struct rmp_bound_backoff backoff;
};

struct rmp_async;

struct rmp_data {
	/* The metadata connection and the engine on it. Held for reading by
	 * every use (alloc, free, a liveness check), for writing by its
	 * re-opening (data.c: after a coordinator restart, or a failure). */
	pthread_rwlock_t meta_rw;
	rmp_rdma_conn *meta;
	rmp_store_rdma *store;
	uint64_t meta_epoch;       /* the pool's meta_epoch it was opened at */
	_Atomic bool meta_broken;  /* an RDMA error on it: open it again */
	uint64_t meta_reopens;     /* times it was opened again */
	struct rmp_buddy b;
	uint64_t usable;
	struct rmp_route route;  /* segment -> donor slot, built at setup */
	unsigned ndonors;
	struct rmp_data_donor *donors;
	/* The pool's lost_gen whose lost donors are marked in donors[]
	 * (UINT64_MAX: none yet); data.c, data_sync_lost. */
	_Atomic uint64_t lost_gen;
	struct rmp_rdma_opts opts;
	struct rmp_async *async;
	struct rmp_liveset live; /* blocks this process allocated, not yet freed */
	/* The small-block cache (cache.h): set up with the engine when the
	 * pool's space can hold a chunk; carving only while cache_order > 0. */
	bool cache_ready;
	_Atomic unsigned cache_order; /* largest carved order, 0: off */
	struct rmp_cache cache;
	struct rmp_data_shard shards[RMP_DATA_SHARDS];
	struct rmp_shards sh; /* their states (shard.h) */
};

/* ---- data.c ---- */

/* The pool's data path, set up on first use (a failed setup is retried
 * by the next call). -EINVAL for a NULL pool. */
int rmp_data_of(rmp_pool *p, struct rmp_data **out);
/* -EINVAL for a missing argument, the detail recorded for
 * rmp_last_error() (on p's client when there is a pool), so that the
 * detail never tells of an earlier call. */
int rmp_data_bad_arg(const rmp_pool *p, const char *what);
/* Checks a transfer of len bytes at handle a from/to buf: the range
 * inside one live block of the pool. 0 with the pool offset of byte a. */
int rmp_data_range_check(rmp_pool *p, struct rmp_data *d, rmp_addr a, const void *buf, uint64_t len,
			 const char *what, uint64_t *off);
/* The checks every bounce-buffer transfer makes before it touches the
 * network: a buffer and a length, the data path up, the range inside one
 * live block. 0 with *d and the pool offset of byte a. */
int rmp_data_prepare(rmp_pool *p, rmp_addr a, const void *buf, uint64_t len, const char *what,
		     struct rmp_data **d, uint64_t *off);
/* -RMP_ELEASE (the detail for rmp_last_error(): what, the pool, why)
 * when the pool's lease is known gone (LEASE_EXPIRED, a refused renewal,
 * a far side's refusal). 0 otherwise, and always 0 under
 * RMPOOL_TEST_NO_LEASE_CHECK=1. One atomic load: the local courtesy
 * check; the far sides do the cut-off. */
/* rmp_pool_close: the frees in doubt (shard.h) settled first, waiting up
 * to wait_ms for the coordinator to reset their slots; what is left
 * carries the closed lease's tags, which the next reclaim on the pool
 * frees. How many are left. */
unsigned rmp_data_settle(rmp_pool *p, unsigned wait_ms);
int rmp_data_lease_check(rmp_pool *p, const char *what);
/* After a failed operation: -RMP_ELEASE when the pool's lease is gone
 * or unconfirmed for its time to live (not away): the failure is taken
 * for the far side's cut-off, and the pool is known gone from then on.
 * Else rc (also -EINVAL as is). */
int rmp_data_lease_lost(rmp_pool *p, int rc, const char *what);
/* A signed token of kind for target (a donor, a pool), for this client;
 * -RMP_ELEASE once its lease is gone (rmp_data_lease_check). */
int rmp_data_token(rmp_pool *p, enum rmp_wire_token_kind kind, uint32_t target, uint8_t *out);
/* rmp_rdma_connect, with one more try after a timeout. */
int rmp_data_connect(const char *host, uint16_t port, const void *tok, uint8_t len,
		     const struct rmp_rdma_opts *o, rmp_rdma_conn **out);

/* ---- transfer.c ---- */

/* Takes donor slot `slot` out of service for this process: every later
 * transfer touching it fails at once with -RMP_EDONOR naming the donor,
 * its host and why. The first reason sticks. */
void rmp_data_donor_lost(struct rmp_data *d, unsigned slot, const char *why);
/* -RMP_EDONOR with the detail recorded for rmp_last_error() when donor
 * slot `slot` is out of service, else 0. */
int rmp_data_donor_check(rmp_pool *p, const struct rmp_data *d, unsigned slot);

/* Moves len bytes between buf and pool bytes [off, off+len) (checked by
 * the caller) as a pipeline per donor. reg: buf lies in that registered
 * buffer (a reference is held) and pieces go straight from/to it; NULL:
 * through the donors' bounce buffers. */
int rmp_transfer(rmp_pool *p, struct rmp_data *d, uint64_t off, uint8_t *buf, rmp_buffer *reg,
		 uint64_t len, bool is_read);

/* ---- buffer.c ---- */

/* Checks a registered-buffer transfer (b live and registered on p,
 * [boff, boff+len) inside it, the pool range inside one live block) and
 * takes a reference on b: 0 with the pool offset and the local address. */
int rmp_buffer_prepare(rmp_pool *p, struct rmp_data *d, rmp_buffer *b, size_t boff, rmp_addr a,
		       uint64_t len, const char *what, uint64_t *off, uint8_t **local);
/* Drops a reference taken by rmp_buffer_prepare. */
void rmp_buffer_put(rmp_buffer *b);
/* b's MR on donor slot's connection (made now if there is none): 0 with
 * its lkey. Requires the donor's lock and a connection. */
int rmp_buffer_mr_locked(rmp_pool *p, struct rmp_data_donor *dn, unsigned slot, rmp_buffer *b,
			 uint32_t *lkey);
/* Deregisters the MRs p's buffers hold on donor slot's connection (it is
 * being replaced). Requires the donor's lock. */
void rmp_buffer_drop_donor_locked(rmp_pool *p, unsigned slot);
/* Frees every buffer still registered on p (the pool closes): their
 * handles die. Before the donor connections close. */
void rmp_buffer_drop_pool(rmp_pool *p);

/* ---- async.c ---- */

int rmp_async_create(struct rmp_async **out);
/* Stops the workers (queued operations end with -ECANCELED, running ones
 * finish, bounded by the RDMA timeout), frees every op and a. NULL is a
 * no-op. */
void rmp_async_destroy(struct rmp_async *a);

#endif /* RMP_CLIENT_DATA_H */
