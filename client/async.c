/*
 * async.c - asynchronous operations (rmp_*_async, rmp_op_test/wait).
 *
 * Argument checks run in the caller; the transfer itself is queued to a
 * small set of worker threads per pool (started on the first async
 * call), each of which runs the same synchronous transfer (transfer.c),
 * so up to ASYNC_WORKERS operations move at once (in parallel over
 * different donors, one after the other on one donor). Every RDMA wait
 * inside is bounded by the pool's RDMA timeout, and rmp_op_wait takes a
 * timeout of its own.
 *
 * One lock per pool (a->lock) covers the queue (head..tail, FIFO), the
 * list of every op not yet reaped (all: what closing frees), each op's
 * done/rc/err and the stop flag; `work` wakes idle workers, `done`
 * (CLOCK_MONOTONIC, for the bounded waits) wakes waiters. An op holds a
 * reference on its registered buffer until it is reaped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "data.h"

#define ASYNC_WORKERS 4u /* threads per pool that run async operations */

struct rmp_op {
	struct rmp_op *next;     /* queue, under the async lock */
	struct rmp_op *all_next; /* every op not yet waited for, under the async lock */
	rmp_pool *p;
	uint64_t off, len;
	uint8_t *buf;
	struct rmp_buffer *reg;  /* a reference is held until the op is reaped */
	bool is_read;
	bool done;
	int rc;
	char err[256];
};

struct rmp_async {
	pthread_mutex_t lock;
	pthread_cond_t work, done; /* done: CLOCK_MONOTONIC */
	struct rmp_op *head, *tail;
	struct rmp_op *all;
	pthread_t th[ASYNC_WORKERS];
	unsigned nth;
	bool stop;
};

int rmp_async_create(struct rmp_async **out)
{
	struct rmp_async *a = calloc(1, sizeof(*a));
	pthread_condattr_t ca;

	*out = NULL;
	if (!a)
		return -ENOMEM;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->work, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->done, &ca);
	pthread_condattr_destroy(&ca);
	*out = a;
	return 0;
}

void rmp_async_destroy(struct rmp_async *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	for (struct rmp_op *op = a->head; op; op = op->next) {
		op->done = true;
		op->rc = -ECANCELED;
		snprintf(op->err, sizeof(op->err), "the pool was closed before the operation ran");
	}
	a->head = a->tail = NULL;
	pthread_cond_broadcast(&a->work);
	pthread_cond_broadcast(&a->done);
	unsigned nth = a->nth;
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < nth; i++)
		pthread_join(a->th[i], NULL);
	for (struct rmp_op *op = a->all, *next; op; op = next) {
		next = op->all_next;
		if (op->reg)
			rmp_buffer_put(op->reg);
		free(op);
	}
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->work);
	pthread_cond_destroy(&a->done);
	free(a);
}

static void *async_worker(void *arg)
{
	struct rmp_data *d = arg;
	struct rmp_async *a = d->async;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		while (!a->stop && !a->head)
			pthread_cond_wait(&a->work, &a->lock); /* idle; close wakes it */
		if (a->stop)
			break;
		struct rmp_op *op = a->head;
		a->head = op->next;
		if (!a->head)
			a->tail = NULL;
		pthread_mutex_unlock(&a->lock);
		int rc = rmp_transfer(op->p, d, op->off, op->buf, op->reg, op->len, op->is_read);
		pthread_mutex_lock(&a->lock);
		if (rc)
			snprintf(op->err, sizeof(op->err), "%s", rmp_last_error(op->p->c));
		op->rc = rc;
		op->done = true;
		pthread_cond_broadcast(&a->done);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

/* Queues op (arguments checked, reference on op->reg held); starts the
 * workers on first use. On failure the reference is dropped. */
static int async_submit(rmp_pool *p, struct rmp_data *d, struct rmp_op *op, rmp_op **out)
{
	struct rmp_async *a = d->async;
	int rc = 0;

	pthread_mutex_lock(&a->lock);
	if (a->stop) {
		rc = -ECANCELED;
		goto out_unlock;
	}
	while (a->nth < ASYNC_WORKERS) {
		int e = pthread_create(&a->th[a->nth], NULL, async_worker, d);
		if (e) {
			if (a->nth == 0) {
				rc = -e;
				goto out_unlock;
			}
			break; /* fewer workers are fine */
		}
		a->nth++;
	}
	op->next = NULL;
	if (a->tail)
		a->tail->next = op;
	else
		a->head = op;
	a->tail = op;
	op->all_next = a->all;
	a->all = op;
	pthread_cond_signal(&a->work);
out_unlock:
	pthread_mutex_unlock(&a->lock);
	if (rc) {
		if (op->reg)
			rmp_buffer_put(op->reg);
		free(op);
		return rmp_client_fail(p->c, rc, "asynchronous operation: %s",
				       rc == -ECANCELED ? "the pool is closing" : "cannot start the workers");
	}
	*out = op;
	return 0;
}

static int async_start(rmp_pool *p, uint64_t poff, uint8_t *local, struct rmp_buffer *reg, uint64_t len,
		       bool is_read, rmp_op **out)
{
	struct rmp_op *op = calloc(1, sizeof(*op));
	if (!op) {
		if (reg)
			rmp_buffer_put(reg);
		return -ENOMEM;
	}
	*op = (struct rmp_op){ .p = p, .off = poff, .len = len, .buf = local, .reg = reg, .is_read = is_read };
	return async_submit(p, p->data, op, out);
}

int rmp_write_async(rmp_pool *p, rmp_addr dst, const void *src, uint64_t len, rmp_op **op)
{
	struct rmp_data *d;
	uint64_t off = 0;
	int rc;

	if (!op)
		return rmp_data_bad_arg(p, "rmp_write_async: NULL op pointer");
	*op = NULL;
	if ((rc = rmp_data_prepare(p, dst, src, len, "rmp_write_async", &d, &off)) != 0)
		return rc;
	return async_start(p, off, (uint8_t *)(uintptr_t)src, NULL, len, false, op);
}

int rmp_read_async(rmp_pool *p, void *dst, rmp_addr src, uint64_t len, rmp_op **op)
{
	struct rmp_data *d;
	uint64_t off = 0;
	int rc;

	if (!op)
		return rmp_data_bad_arg(p, "rmp_read_async: NULL op pointer");
	*op = NULL;
	if ((rc = rmp_data_prepare(p, src, dst, len, "rmp_read_async", &d, &off)) != 0)
		return rc;
	return async_start(p, off, dst, NULL, len, true, op);
}

int rmp_write_buf_async(rmp_pool *p, rmp_addr dst, rmp_buffer *b, size_t off, uint64_t len, rmp_op **op)
{
	struct rmp_data *d;
	uint64_t poff;
	uint8_t *local;
	int rc;

	if (!op)
		return rmp_data_bad_arg(p, "rmp_write_buf_async: NULL op pointer");
	*op = NULL;
	if ((rc = rmp_data_of(p, &d)) != 0 ||
	    (rc = rmp_buffer_prepare(p, d, b, off, dst, len, "rmp_write_buf_async", &poff, &local)) != 0)
		return rc;
	return async_start(p, poff, local, b, len, false, op);
}

int rmp_read_buf_async(rmp_pool *p, rmp_buffer *b, size_t off, rmp_addr src, uint64_t len, rmp_op **op)
{
	struct rmp_data *d;
	uint64_t poff;
	uint8_t *local;
	int rc;

	if (!op)
		return rmp_data_bad_arg(p, "rmp_read_buf_async: NULL op pointer");
	*op = NULL;
	if ((rc = rmp_data_of(p, &d)) != 0 ||
	    (rc = rmp_buffer_prepare(p, d, b, off, src, len, "rmp_read_buf_async", &poff, &local)) != 0)
		return rc;
	return async_start(p, poff, local, b, len, true, op);
}

int rmp_op_test(rmp_op *op)
{
	if (!op)
		return rmp_data_bad_arg(NULL, "rmp_op_test: NULL op");
	if (!op->p->data)
		return rmp_data_bad_arg(op->p, "rmp_op_test: the op's pool is closed");
	struct rmp_async *a = op->p->data->async;
	pthread_mutex_lock(&a->lock);
	int rc = op->done ? op->rc : -EINPROGRESS;
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* Takes op off the list of ops not yet reaped. Requires a->lock. */
static void unlink_op_locked(struct rmp_async *a, struct rmp_op *op)
{
	for (struct rmp_op **pp = &a->all; *pp; pp = &(*pp)->all_next)
		if (*pp == op) {
			*pp = op->all_next;
			break;
		}
}

int rmp_op_wait(rmp_op *op, unsigned timeout_ms)
{
	if (!op)
		return rmp_data_bad_arg(NULL, "rmp_op_wait: NULL op");
	if (!op->p->data)
		return rmp_data_bad_arg(op->p, "rmp_op_wait: the op's pool is closed");
	rmp_pool *p = op->p;
	struct rmp_async *a = p->data->async;
	uint64_t dl_ns = rmp_mono_ns() + (uint64_t)timeout_ms * 1000000u;
	struct timespec dl = { .tv_sec = (time_t)(dl_ns / 1000000000u), .tv_nsec = (long)(dl_ns % 1000000000u) };

	pthread_mutex_lock(&a->lock);
	while (!op->done)
		if (pthread_cond_timedwait(&a->done, &a->lock, &dl) == ETIMEDOUT)
			break;
	if (!op->done) {
		pthread_mutex_unlock(&a->lock);
		return -EINPROGRESS;
	}
	unlink_op_locked(a, op);
	pthread_mutex_unlock(&a->lock);
	int rc = op->rc;
	if (rc)
		rmp_client_fail(p->c, rc, "%s", op->err);
	if (op->reg)
		rmp_buffer_put(op->reg);
	free(op);
	return rc;
}
