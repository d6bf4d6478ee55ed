/*
 * store_rdma.c - the buddy engine's word store over one-sided RDMA.
 *
 * A batch of word operations becomes one batch of work requests:
 *   LOAD n words  -> one RDMA READ of 8n bytes into a registered scratch
 *   CAS           -> IBV_WR_ATOMIC_CMP_AND_SWP, old value into scratch
 *   FAA           -> IBV_WR_ATOMIC_FETCH_AND_ADD, old value into scratch
 * posted together and waited for together (rmp_rdma_exec): one round
 * trip, whatever the batch holds. Atomic results pass through
 * rmp_rdma_atomic_result(), the one place that knows their byte order.
 *
 * Posted operations (free-count FAAs whose results nobody reads) wait in
 * a small queue and are sent in front of the next batch, so they cost no
 * round trip. A full queue is flushed on its own.
 *
 * The scratch region is registered once; a mutex hands it to one batch at
 * a time. Several threads therefore serialize here; the engine is still
 * lock-free towards other clients, which is what matters remotely.
 */
#include "store_rdma.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SCRATCH_WORDS 8192u /* the largest load: the walker reads 4096 words */
#define MAX_BATCH 128u      /* work requests per exec, posted ones included */
#define POST_QUEUE 32u

struct rmp_store_rdma {
	struct rmp_store base; /* first: the engine sees a struct rmp_store */
	rmp_rdma_conn *conn;
	uint64_t raddr;
	uint32_t rkey;
	uint64_t nwords;
	pthread_mutex_t lock;
	struct ibv_mr *mr;
	uint64_t *scratch;
	struct rmp_wop queued[POST_QUEUE];
	unsigned nqueued;
};

static int run_batch_locked(struct rmp_store_rdma *s, struct rmp_wop *ops, unsigned n)
{
	struct rmp_rdma_op rops[MAX_BATCH];
	unsigned slot = 0, total = s->nqueued + n;

	if (total > MAX_BATCH)
		return -E2BIG;
	for (unsigned k = 0; k < total; k++) {
		struct rmp_wop *op = k < s->nqueued ? &s->queued[k] : &ops[k - s->nqueued];
		struct rmp_rdma_op *r = &rops[k];
		uint32_t words = op->kind == RMP_WOP_LOAD ? op->nwords : 1;
		if (op->idx >= s->nwords || words == 0 || words > s->nwords - op->idx ||
		    words > SCRATCH_WORDS - slot)
			return -EFAULT;
		*r = (struct rmp_rdma_op){
			.local = &s->scratch[slot],
			.lkey = s->mr->lkey,
			.len = words * 8u,
			.raddr = s->raddr + op->idx * 8u,
			.rkey = s->rkey,
		};
		switch (op->kind) {
		case RMP_WOP_LOAD:
			r->kind = RMP_RDMA_READ;
			break;
		case RMP_WOP_CAS:
			r->kind = RMP_RDMA_CAS;
			r->compare = op->arg;
			r->swap_add = op->swap;
			break;
		case RMP_WOP_FAA:
			r->kind = RMP_RDMA_FAA;
			r->swap_add = op->arg;
			break;
		default:
			return -EINVAL;
		}
		slot += words;
	}
	int rc = rmp_rdma_exec(s->conn, rops, total);
	if (rc)
		return rc;
	for (unsigned k = s->nqueued; k < total; k++) {
		struct rmp_wop *op = &ops[k - s->nqueued];
		if (op->kind == RMP_WOP_LOAD)
			memcpy(op->dst, rops[k].local, (size_t)op->nwords * 8u);
		else
			op->old = rmp_rdma_atomic_result(s->conn, rops[k].local);
	}
	s->nqueued = 0;
	return 0;
}

static int rdma_exec(struct rmp_store *base, struct rmp_wop *ops, unsigned n)
{
	struct rmp_store_rdma *s = (struct rmp_store_rdma *)base;
	int rc;

	pthread_mutex_lock(&s->lock);
	if (s->nqueued + n > MAX_BATCH) {
		/* Too many to ride along: send the queue on its own first. */
		rc = run_batch_locked(s, NULL, 0);
		if (rc)
			goto out_unlock;
	}
	rc = run_batch_locked(s, ops, n);
out_unlock:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int rdma_post(struct rmp_store *base, struct rmp_wop *ops, unsigned n)
{
	struct rmp_store_rdma *s = (struct rmp_store_rdma *)base;
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < n && rc == 0; i++) {
		if (ops[i].kind != RMP_WOP_FAA) {
			rc = -EINVAL; /* only results nobody reads may wait */
			break;
		}
		if (s->nqueued == POST_QUEUE)
			rc = run_batch_locked(s, NULL, 0);
		if (rc == 0)
			s->queued[s->nqueued++] = ops[i];
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static const struct rmp_store_ops rdma_store_ops = {
	.exec = rdma_exec,
	.post = rdma_post,
};

int rmp_store_rdma_create(rmp_rdma_conn *conn, uint64_t raddr, uint32_t rkey, uint64_t nwords,
			  rmp_store_rdma **out)
{
	struct rmp_store_rdma *s;
	int rc;

	if (!conn || !out || nwords == 0 || (raddr & 7u) != 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->scratch = aligned_alloc(64, SCRATCH_WORDS * 8u);
	if (!s->scratch) {
		rc = -ENOMEM;
		goto out_free_store;
	}
	s->mr = ibv_reg_mr(rmp_rdma_conn_pd(conn), s->scratch, SCRATCH_WORDS * 8u, IBV_ACCESS_LOCAL_WRITE);
	if (!s->mr) {
		rc = errno ? -errno : -ENOMEM;
		goto out_free_scratch;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->base.ops = &rdma_store_ops;
	/* One READ per round trip: 64 words (512 B) scan 2048 blocks. */
	s->base.chunk_words = 64;
	s->base.direct = NULL;
	s->conn = conn;
	s->raddr = raddr;
	s->rkey = rkey;
	s->nwords = nwords;
	*out = s;
	return 0;

out_free_scratch:
	free(s->scratch);
out_free_store:
	free(s);
	return rc;
}

struct rmp_store *rmp_store_rdma_base(rmp_store_rdma *s)
{
	return &s->base;
}

int rmp_store_rdma_flush(rmp_store_rdma *s)
{
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	if (s->nqueued)
		rc = run_batch_locked(s, NULL, 0);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void rmp_store_rdma_destroy(rmp_store_rdma *s)
{
	if (!s)
		return;
	rmp_store_rdma_flush(s);
	ibv_dereg_mr(s->mr);
	pthread_mutex_destroy(&s->lock);
	free(s->scratch);
	free(s);
}
