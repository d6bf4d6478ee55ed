/*
 * store_rdma.h - the word store over RDMA: the buddy engine's metadata in
 * a registered region on another host (the coordinator), read with RDMA
 * READ and changed only with RDMA compare-and-swap and fetch-and-add.
 *
 * One exec() is one round trip: its operations are posted together and
 * waited for together. post() (the engine's free-count hints) does not
 * cost a round trip of its own: the operations wait in the store and ride
 * along with the next exec() (or rmp_store_rdma_flush()). Counts are
 * hints, so the lag is harmless; flush before anyone checks them exactly.
 *
 * Thread-safe: one store may serve many threads (a mutex covers a batch;
 * the queue pair serializes them anyway).
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
/* Execute what post() queued. */
int rmp_store_rdma_flush(rmp_store_rdma *s);
/* Flushes, then frees (the connection stays the caller's). */
void rmp_store_rdma_destroy(rmp_store_rdma *s);

#endif /* RMP_STORE_RDMA_H */
