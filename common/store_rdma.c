/*
 * store_rdma.c - the buddy engine's word store over one-sided RDMA.
 *
 * A batch of word operations becomes one batch of work requests:
 *   LOAD n words  -> one RDMA READ of 8n bytes into a registered scratch
 *   CAS           -> IBV_WR_ATOMIC_CMP_AND_SWP, old value into scratch
 *   FAA           -> IBV_WR_ATOMIC_FETCH_AND_ADD, old value into scratch
 * posted together and waited for together: one round trip, whatever the
 * batch holds. Atomic results pass through rmp_rdma_atomic_result(), the
 * one place that knows their byte order. One RC queue pair executes
 * atomics in posting order (the responder takes requests in PSN order;
 * only an RDMA READ may be executed late, so an atomic marked `after`
 * must not follow a READ of its batch: refused with -EINVAL).
 *
 * Posted operations (FAAs whose results nobody reads: free-count changes,
 * the end of a move) are sent at once and not waited for; their results
 * land in a ring of their own. The next batch is posted behind them and
 * waits for all completions, theirs included (they were sent first, so
 * they cost it nothing); a full ring is reaped first.
 *
 * The scratch region is registered once; a mutex hands it to one batch at
 * a time. Several threads therefore serialize here; the engine is still
 * lock-free towards other clients, which is what matters remotely.
 *
 * The test hook (rmp_store_rdma_test_kill_after; tests/rdma/crash.sh):
 * every batch, executed or posted, is counted against a process-wide
 * limit; the batch that reaches it sends only its operations up to it,
 * waits for them and for every posted one, and the process SIGKILLs
 * itself - a consumer that died right after its k-th word operation,
 * with exactly operations 1..k landed. Counting starts at the first call
 * of a test function: until then the hook costs one relaxed load per
 * batch.
 */
#include "store_rdma.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SCRATCH_WORDS 8192u /* the largest load: the walker reads 4096 words */
#define MAX_BATCH 128u      /* work requests per exec */
#define POST_SLOTS 32u      /* posted operations in flight at most */

struct rmp_store_rdma {
	struct rmp_store base; /* first: the engine sees a struct rmp_store */
	rmp_rdma_conn *conn;
	uint64_t raddr;
	uint32_t rkey;
	uint64_t nwords;
	pthread_mutex_t lock;
	struct ibv_mr *mr;
	uint64_t *scratch;     /* [0, SCRATCH_WORDS): a batch; then POST_SLOTS for posted results */
	unsigned inflight;     /* posted operations not reaped yet */
};

/* The test hook (store_rdma.h), process-wide: on once a test function
 * was called; the word operations counted since; the one to die after. */
static _Atomic bool test_on;
static _Atomic uint64_t test_ops;
static _Atomic uint64_t test_kill_at;

void rmp_store_rdma_test_kill_after(uint64_t k)
{
	atomic_store(&test_on, true);
	atomic_store(&test_kill_at, k ? atomic_load(&test_ops) + k : 0);
}

uint64_t rmp_store_rdma_test_ops(void)
{
	atomic_store(&test_on, true);
	return atomic_load(&test_ops);
}

/* How many of a batch's n operations go out: n, or those up to the limit
 * when the hook dies in this batch (*die set: send them, wait, die). */
static unsigned test_count(unsigned n, bool *die)
{
	*die = false;
	if (!atomic_load_explicit(&test_on, memory_order_relaxed))
		return n;
	uint64_t before = atomic_fetch_add(&test_ops, n);
	uint64_t at = atomic_load(&test_kill_at);
	if (at == 0 || before + n < at)
		return n;
	*die = true;
	return at > before ? (unsigned)(at - before) : 0;
}

static int reap_posted_locked(struct rmp_store_rdma *s);

/* The hook's end: what was sent has completed (the caller waited for
 * its batch), the posted operations are reaped too, then SIGKILL. */
static void test_die_locked(struct rmp_store_rdma *s)
{
	reap_posted_locked(s);
	raise(SIGKILL);
}

/* One work request per operation, its result at *slot onwards. */
static int to_rdma_op(struct rmp_store_rdma *s, const struct rmp_wop *op, uint64_t *local, struct rmp_rdma_op *r)
{
	uint32_t words = op->kind == RMP_WOP_LOAD ? op->nwords : 1;

	if (op->idx >= s->nwords || words == 0 || words > s->nwords - op->idx)
		return -EFAULT;
	*r = (struct rmp_rdma_op){
		.local = local,
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
	return 0;
}

/* Wait for every posted operation. Requires s->lock. */
static int reap_posted_locked(struct rmp_store_rdma *s)
{
	if (s->inflight == 0)
		return 0;
	int got = rmp_rdma_poll(s->conn, s->inflight, NULL, 0);
	s->inflight = 0; /* reaped, or the connection failed for good */
	return got < 0 ? got : 0;
}

static int run_batch_locked(struct rmp_store_rdma *s, struct rmp_wop *ops, unsigned n)
{
	struct rmp_rdma_op rops[MAX_BATCH];
	unsigned slot = 0;
	bool seen_load = false, die;

	if (n > MAX_BATCH)
		return -E2BIG;
	for (unsigned k = 0; k < n; k++) {
		struct rmp_wop *op = &ops[k];
		uint32_t words = op->kind == RMP_WOP_LOAD ? op->nwords : 1;
		if (words > SCRATCH_WORDS - slot)
			return -EFAULT;
		if (op->after && op->kind != RMP_WOP_LOAD && seen_load)
			return -EINVAL; /* an atomic is not ordered after a READ */
		seen_load |= op->kind == RMP_WOP_LOAD;
		int rc = to_rdma_op(s, op, &s->scratch[slot], &rops[k]);
		if (rc)
			return rc;
		slot += words;
	}
	unsigned send = test_count(n, &die);
	if (send == 0)
		test_die_locked(s);
	/* Behind the posted operations, on the same queue pair; then wait for
	 * all of them. A batch too large to post beside them goes alone. */
	int rc = rmp_rdma_post(s->conn, rops, send, 0);
	if (rc == -EAGAIN) {
		if ((rc = reap_posted_locked(s)) == 0)
			rc = rmp_rdma_exec(s->conn, rops, send);
	} else if (rc == 0) {
		int got = rmp_rdma_poll(s->conn, s->inflight + send, NULL, 0);
		s->inflight = 0;
		rc = got < 0 ? got : 0;
	}
	if (die)
		test_die_locked(s);
	if (rc)
		return rc;
	for (unsigned k = 0; k < n; k++) {
		struct rmp_wop *op = &ops[k];
		if (op->kind == RMP_WOP_LOAD)
			memcpy(op->dst, rops[k].local, (size_t)op->nwords * 8u);
		else
			op->old = rmp_rdma_atomic_result(s->conn, rops[k].local);
	}
	return 0;
}

static int rdma_exec(struct rmp_store *base, struct rmp_wop *ops, unsigned n)
{
	struct rmp_store_rdma *s = (struct rmp_store_rdma *)base;

	pthread_mutex_lock(&s->lock);
	int rc = run_batch_locked(s, ops, n);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int rdma_post(struct rmp_store *base, struct rmp_wop *ops, unsigned n)
{
	struct rmp_store_rdma *s = (struct rmp_store_rdma *)base;
	struct rmp_rdma_op rops[POST_SLOTS];
	int rc = 0;
	bool die;

	pthread_mutex_lock(&s->lock);
	n = test_count(n, &die);
	for (unsigned done = 0; done < n && rc == 0;) {
		unsigned m = n - done < POST_SLOTS ? n - done : POST_SLOTS;
		if (s->inflight + m > POST_SLOTS && (rc = reap_posted_locked(s)) != 0)
			break;
		for (unsigned k = 0; k < m && rc == 0; k++) {
			if (ops[done + k].kind != RMP_WOP_FAA)
				rc = -EINVAL; /* only results nobody reads may go unwaited */
			else
				rc = to_rdma_op(s, &ops[done + k], &s->scratch[SCRATCH_WORDS + s->inflight + k], &rops[k]);
		}
		if (rc)
			break;
		rc = rmp_rdma_post(s->conn, rops, m, 0);
		if (rc == -EAGAIN) {
			/* The queue pair is full of posted work: wait for it. */
			if ((rc = reap_posted_locked(s)) == 0)
				continue;
			break;
		}
		if (rc == 0) {
			s->inflight += m;
			done += m;
		}
	}
	if (die)
		test_die_locked(s);
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
	s->scratch = aligned_alloc(64, (SCRATCH_WORDS + POST_SLOTS) * 8u);
	if (!s->scratch) {
		rc = -ENOMEM;
		goto out_free_store;
	}
	s->mr = ibv_reg_mr(rmp_rdma_conn_pd(conn), s->scratch, (SCRATCH_WORDS + POST_SLOTS) * 8u,
			   IBV_ACCESS_LOCAL_WRITE);
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
	pthread_mutex_lock(&s->lock);
	int rc = reap_posted_locked(s);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void rmp_store_rdma_abandon(rmp_store_rdma *s)
{
	if (!s)
		return;
	ibv_dereg_mr(s->mr);
	pthread_mutex_destroy(&s->lock);
	free(s->scratch);
	free(s);
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
