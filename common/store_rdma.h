/*
 * store_rdma.h - the word store over RDMA: the buddy engine's metadata in
 * a registered region on another host (the coordinator), read with RDMA
 * READ and changed only with RDMA compare-and-swap and fetch-and-add.
 *
 * One exec() is one round trip: its operations are posted together and
 * waited for together. post() (free-count changes, the end of a move)
 * costs no round trip: the operations are sent at once and their
 * completions reaped by the next exec() (or rmp_store_rdma_flush(), which
 * waits for them: flush before anyone checks the counts exactly, and
 * before an rmp_rdma_exec() of your own on the same connection, which
 * refuses to run while they are in flight).
 *
 * Thread-safe: one store may serve many threads (a mutex covers a batch;
 * the queue pair serializes them anyway).
 *
 * A test hook (tests/rdma/crash_data.c; not part of librmpool's API): a
 * process that kills itself after its k-th word operation, to show that
 * a consumer dying at any step is reclaimed.
 */
#ifndef RMP_STORE_RDMA_H
#define RMP_STORE_RDMA_H

#include <stdint.h>

#include "rdma.h"
#include "store.h"

typedef struct rmp_store_rdma rmp_store_rdma; /* opaque; its first member is a struct rmp_store */

/* The metadata region is nwords words at raddr/rkey over conn. */
int rmp_store_rdma_create(rmp_rdma_conn *conn, uint64_t raddr, uint32_t rkey, uint64_t nwords,
			  rmp_store_rdma **out);
struct rmp_store *rmp_store_rdma_base(rmp_store_rdma *s);
/* Wait for what post() sent. */
int rmp_store_rdma_flush(rmp_store_rdma *s);
/* Flushes, then frees (the connection stays the caller's). */
void rmp_store_rdma_destroy(rmp_store_rdma *s);
/* Frees without waiting for what post() sent: for a connection that has
 * failed (its peer is gone), where a flush would only wait for the
 * timeout. Before the connection is closed (the scratch MR is on its PD). */
void rmp_store_rdma_abandon(rmp_store_rdma *s);

/* Tests only. Arms a process-wide counter (k = 0 disarms): after the
 * k-th word operation from this call on (a LOAD of n words, a CAS and an
 * FAA count 1 each, in exec batches and posted alike), over every store
 * of the process, the process raises SIGKILL. A batch that would cross
 * k posts only its operations up to the k-th, waits for their
 * completions and for every posted one, then dies: operations 1..k
 * landed, none after. */
void rmp_store_rdma_test_kill_after(uint64_t k);
/* Tests only. Word operations this process issued since its first call
 * of either test function (counted like the above). */
uint64_t rmp_store_rdma_test_ops(void);

#endif /* RMP_STORE_RDMA_H */
