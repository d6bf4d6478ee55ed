/*
 * data.c - the data half of librmpool: alloc, free, read and write with
 * one-sided RDMA, no coordinator or donor CPU on the path.
 *
 * Allocation runs the buddy engine (common/buddy.c) on the RDMA word
 * store (common/store_rdma.c) over one connection to the coordinator's
 * metadata region: loads are RDMA READs, changes are RDMA CAS and FAA.
 * Per-thread engine contexts (cursors, counters) live in shards, as in
 * the local heap.
 *
 * Reads and writes: a pool address maps to (segment = addr >> s, offset
 * in it); the segment table gives the donor, its region's address and
 * rkey. A transfer is cut at segment boundaries and into pieces of at
 * most PIECE_MAX (one work request each), and runs as a pipeline on each
 * donor's connection: up to DEPTH_MAX pieces in flight, the next one
 * posted as soon as the oldest completes, so the send queue never drains
 * in the middle of a transfer (an RDMA READ loss is then noticed from
 * the next READ's response, not after the ACK timeout; see
 * RMP_RDMA_ACK_TIMEOUT_DEFAULT for the timeout that remains at a tail).
 * One allocation larger than any donor (and any host) is thus read and
 * written as one range. Donor connections are made on first use, with a
 * DONOR token for that donor.
 *
 * rmp_read/rmp_write move data through a registered bounce buffer per
 * donor connection (the caller's memory is not registered): a copy, in
 * exchange for working with any buffer; piece i in flight uses bounce
 * slot i % DEPTH_MAX, and a read's piece is copied out when it completes.
 * Locks: a transfer takes the locks of all donors behind its range, in
 * index order (two transfers cannot deadlock), and holds them until its
 * pipelines have drained: a donor's lock covers its connection, its
 * pipeline and its bounce buffer.
 *
 * Registered buffers (rmp_buffer_register): the caller's memory is
 * posted from and to directly, no bounce copy. Each donor connection has
 * its own PD, so a buffer holds one MR per donor, made the first time a
 * transfer on that donor uses the buffer, under the donor's lock (mrs[i]
 * is only touched under donor i's lock). Live buffers are kept on one
 * process-wide list (buf_lock): a handle is checked against it before
 * use, so a stale or foreign handle is refused with -EINVAL instead of
 * being dereferenced, and each use holds a reference (refs) so that
 * deregistration of a buffer in use fails with -EBUSY. When a donor's
 * connection is replaced, the MRs on its old PD are dropped first.
 * Lock order: donor locks (index order), then buf_lock.
 *
 * Liveness: a transfer is refused (-EINVAL) unless its handle's block is
 * live. The blocks this process allocated and has not freed are in a
 * local set (liveset.h) and cost nothing to check; any other handle (a
 * block another process allocated, or a stray one) is asked of the
 * shared metadata first (rmp_buddy_is_live: one RDMA READ, and a no-op
 * CAS to confirm a no), one more round trip before the data moves. Not
 * seen: a block of this process's set freed by another process; until
 * this process frees it too, its transfers go through.
 *
 * Asynchronous operations (rmp_*_async): argument checks run in the
 * caller; the transfer itself is queued to a small set of worker threads
 * per pool (started on the first async call), each of which runs the
 * same synchronous transfer, so up to ASYNC_WORKERS operations move at
 * once (in parallel over different donors, one after the other on one donor).
 * Every RDMA wait inside is bounded by the pool's RDMA timeout, and
 * rmp_op_wait takes a timeout of its own.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buddy.h"
#include "client_internal.h"
#include "liveset.h"
#include "rdma.h"
#include "store_rdma.h"

#define DATA_SHARDS 16u
#define BOUNCE_BYTES (DEPTH_MAX * PIECE_MAX) /* per donor connection: a slot per piece in flight */
#define PIECE_MAX (64u << 10) /* one work request moves at most this: rxe under
				 * emulation drops packets of long READ bursts and
				 * retries whole requests; shorter ones recover faster */
#define DEPTH_MAX 16u           /* pieces in flight per donor (1 MiB): a power of 2 */
#define TOKEN_TTL_MS (24ull * 3600 * 1000)
#define ASYNC_WORKERS 4u        /* threads per pool that run async operations */

struct data_donor {
	uint32_t donor_id;
	struct rmp_wire_endpoint ep;
	pthread_mutex_t lock;
	rmp_rdma_conn *conn; /* NULL until first use */
	uint8_t *bounce;
	struct ibv_mr *bounce_mr;
	/* the pipeline of the transfer holding the lock: pieces head - tail
	 * are in flight, piece i in ops/user[i % DEPTH_MAX] and (through the
	 * bounce buffer) in bounce slot i % DEPTH_MAX of PIECE_MAX bytes */
	struct rmp_rdma_op ops[DEPTH_MAX];
	void *user[DEPTH_MAX]; /* read: where each piece goes */
	unsigned head, tail;
};

struct rmp_buffer {
	struct rmp_buffer *next; /* on buffers, under buf_lock */
	rmp_pool *p;
	uint8_t *addr;
	size_t len;
	unsigned refs;       /* transfers using it, under buf_lock */
	bool dead;           /* being deregistered, under buf_lock */
	unsigned ndonors;
	struct ibv_mr **mrs; /* per donor index; mrs[i] under donor i's lock */
};

static pthread_mutex_t buf_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rmp_buffer *buffers;

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

struct data_async {
	pthread_mutex_t lock;
	pthread_cond_t work, done; /* done: CLOCK_MONOTONIC */
	struct rmp_op *head, *tail;
	struct rmp_op *all;
	pthread_t th[ASYNC_WORKERS];
	unsigned nth;
	bool stop;
};

struct data_shard {
	alignas(64) struct rmp_buddy_ctx ctx;
};

struct rmp_data {
	rmp_rdma_conn *meta;
	rmp_store_rdma *store;
	struct rmp_buddy b;
	uint64_t usable;
	unsigned seg_log2;
	unsigned ndonors;
	struct data_donor *donors;
	struct rmp_rdma_opts opts;
	struct data_async async;
	struct rmp_liveset live; /* blocks this process allocated, not yet freed */
	struct data_shard shards[DATA_SHARDS];
};

static _Atomic unsigned next_shard;
static _Thread_local unsigned my_shard_plus1;

static struct rmp_buddy_ctx *my_ctx(struct rmp_data *d)
{
	if (my_shard_plus1 == 0)
		my_shard_plus1 = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % DATA_SHARDS + 1;
	return &d->shards[my_shard_plus1 - 1].ctx;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* rdma_cm setup needs the far side's CPU (it accepts the connection); a
 * loaded host may miss one bounded wait. A refusal (-ECONNREFUSED: a bad
 * token) is final; a timeout is worth one more bounded try. */
static int connect_retry(const char *host, uint16_t port, const void *tok, uint8_t len,
			 const struct rmp_rdma_opts *o, rmp_rdma_conn **out)
{
	int rc = rmp_rdma_connect(host, port, tok, len, o, out);
	if (rc == -ETIMEDOUT)
		rc = rmp_rdma_connect(host, port, tok, len, o, out);
	return rc;
}

static int token_for(rmp_pool *p, enum rmp_wire_token_kind kind, uint32_t target, uint8_t *out)
{
	struct rmp_wire_token t = { .kind = (uint8_t)kind, .target_id = target,
				    .client_id = p->c->session_id, .expires_ms = wall_ms() + TOKEN_TTL_MS };
	return rmp_auth_token_make(rmp_client_key(p->c), &t, out);
}

static void buffer_put(struct rmp_buffer *b)
{
	pthread_mutex_lock(&buf_lock);
	b->refs--;
	pthread_mutex_unlock(&buf_lock);
}

/* Stops the workers: queued operations end with -ECANCELED, running ones
 * finish (bounded by the RDMA timeout); then every op is freed. */
static void async_stop(struct rmp_data *d)
{
	struct data_async *a = &d->async;

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
			buffer_put(op->reg);
		free(op);
	}
	a->all = NULL;
	a->nth = 0;
}

void rmp_data_close(rmp_pool *p)
{
	struct rmp_data *d = p->data;

	if (!d)
		return;
	async_stop(d);
	/* Buffers still registered on this pool: their MRs go before the
	 * connections (and PDs) they were made on; the handles die. */
	pthread_mutex_lock(&buf_lock);
	for (struct rmp_buffer **pp = &buffers; *pp;) {
		struct rmp_buffer *b = *pp;
		if (b->p != p) {
			pp = &b->next;
			continue;
		}
		*pp = b->next;
		for (unsigned i = 0; i < b->ndonors; i++)
			if (b->mrs[i])
				ibv_dereg_mr(b->mrs[i]);
		free(b->mrs);
		free(b);
	}
	pthread_mutex_unlock(&buf_lock);
	if (d->store)
		rmp_store_rdma_destroy(d->store); /* sends what waits (count hints) */
	if (d->meta)
		rmp_rdma_close(d->meta);
	for (unsigned i = 0; i < d->ndonors; i++) {
		struct data_donor *dn = &d->donors[i];
		if (dn->bounce_mr)
			ibv_dereg_mr(dn->bounce_mr);
		free(dn->bounce);
		if (dn->conn)
			rmp_rdma_close(dn->conn);
		pthread_mutex_destroy(&dn->lock);
	}
	free(d->donors);
	pthread_mutex_destroy(&d->async.lock);
	pthread_cond_destroy(&d->async.work);
	pthread_cond_destroy(&d->async.done);
	rmp_liveset_destroy(&d->live);
	free(d);
	p->data = NULL;
}

static enum rmp_rdma_wait wait_mode(const rmp_client *c)
{
	int m = c->opts.wait_mode;
	if (m == RMP_WAIT_DEFAULT) {
		const char *e = getenv("RMPOOL_WAIT");
		m = !e ? RMP_WAIT_ADAPTIVE : !strcmp(e, "poll") ? RMP_WAIT_POLL
			: !strcmp(e, "event") ? RMP_WAIT_EVENT : RMP_WAIT_ADAPTIVE;
	}
	return m == RMP_WAIT_POLL ? RMP_RDMA_WAIT_POLL : m == RMP_WAIT_EVENT ? RMP_RDMA_WAIT_EVENT
									  : RMP_RDMA_WAIT_ADAPTIVE;
}

static int data_open(rmp_pool *p, unsigned timeout_ms)
{
	const struct rmp_wire_segtab *st = &p->segtab;
	uint8_t tok[RMP_AUTH_TOKEN_LEN];
	uint64_t hdr[RMP_BUDDY_HDR_WORDS];
	struct rmp_buddy_geom g;
	struct rmp_data *d;
	int rc;

	d = aligned_alloc(alignof(struct data_shard), sizeof(*d));
	if (!d)
		return -ENOMEM;
	memset(d, 0, sizeof(*d));
	rmp_liveset_init(&d->live);
	pthread_mutex_init(&d->async.lock, NULL);
	pthread_cond_init(&d->async.work, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->async.done, &ca);
	pthread_condattr_destroy(&ca);
	p->data = d;
	d->opts = (struct rmp_rdma_opts){ .timeout_ms = (int)timeout_ms, .wait = wait_mode(p->c) };
	d->seg_log2 = st->segment_log2;
	d->donors = calloc(st->n_donors ? st->n_donors : 1, sizeof(*d->donors));
	if (!d->donors) {
		rc = -ENOMEM;
		goto out_close;
	}
	for (unsigned i = 0; i < st->n_donors; i++) {
		d->donors[i].donor_id = st->donors[i].donor_id;
		d->donors[i].ep = st->donors[i].endpoint;
		pthread_mutex_init(&d->donors[i].lock, NULL);
		d->ndonors++;
	}

	rc = token_for(p, RMP_TOKEN_METADATA, p->pool_id, tok);
	if (rc)
		goto out_close;
	rc = connect_retry(st->coordinator.host, st->coordinator.port, tok, sizeof(tok), &d->opts, &d->meta);
	if (rc) {
		rmp_client_fail(p->c, rc, "metadata region at %s:%u: %s", st->coordinator.host,
				st->coordinator.port, rmp_strerror(rc));
		goto out_close;
	}
	if (rmp_rdma_conn_device(d->meta)->atomic_cap == IBV_ATOMIC_NONE) {
		rc = rmp_client_fail(p->c, -EOPNOTSUPP, "the RDMA device has no atomics: the allocator needs them");
		goto out_close;
	}
	rc = rmp_store_rdma_create(d->meta, st->meta.addr, st->meta.rkey, st->meta.len / 8, &d->store);
	if (rc)
		goto out_close;
	/* The header says how the region was formatted; it must agree with
	 * the segment table (a mismatch is a coordinator bug, not ours to
	 * paper over). */
	struct rmp_wop op;
	rmp_wop_load(&op, 0, RMP_BUDDY_HDR_WORDS, hdr);
	rc = rmp_store_rdma_base(d->store)->ops->exec(rmp_store_rdma_base(d->store), &op, 1);
	if (rc)
		goto out_close;
	rc = rmp_buddy_geom_from_header(&g, hdr, &d->usable);
	if (rc || g.max_order != st->space_log2 || g.min_order != st->min_block_log2 ||
	    g.total_words * 8 > st->meta.len) {
		rc = rmp_client_fail(p->c, -EPROTO, "the metadata region does not match the segment table");
		goto out_close;
	}
	/* Atomic replies: learn the device's byte order once, on the magic
	 * word (which is never a palindrome and never changes). */
	rc = rmp_rdma_probe_atomic_order(d->meta, st->meta.addr, st->meta.rkey);
	if (rc)
		goto out_close;
	rmp_buddy_init(&d->b, &g, rmp_store_rdma_base(d->store));
	for (unsigned s = 0; s < DATA_SHARDS; s++)
		rmp_buddy_ctx_init(&d->shards[s].ctx, &d->b, p->c->session_id * DATA_SHARDS + s);
	return 0;

out_close:
	rmp_data_close(p);
	return rc;
}

/* The pool's data path, set up on first use: the metadata connection
 * (donors connect on their own first use). A failed setup is retried by
 * the next call. */
/* -EINVAL for an argument that is missing, with the detail recorded for
 * rmp_last_error() (on the pool's client when there is a pool), so that
 * the detail never tells of an earlier call. */
static int bad_arg(const rmp_pool *p, const char *what)
{
	return rmp_client_fail(p ? p->c : NULL, -EINVAL, "%s", what);
}

static int data_of(rmp_pool *p, struct rmp_data **out)
{
	int rc = 0;

	*out = NULL;
	if (!p)
		return bad_arg(p, "NULL pool");
	pthread_mutex_lock(&p->data_lock);
	if (!p->data) {
		unsigned t = p->c->opts.rdma_timeout_ms ? p->c->opts.rdma_timeout_ms : 10000;
		rc = data_open(p, t);
	}
	*out = p->data;
	pthread_mutex_unlock(&p->data_lock);
	return rc;
}

int rmp_alloc(rmp_pool *p, uint64_t size, rmp_addr *out)
{
	struct rmp_data *d;
	unsigned order;
	uint64_t off;
	int rc;

	if (!out || !p)
		return bad_arg(p, out ? "rmp_alloc: NULL pool" : "rmp_alloc: NULL result pointer");
	*out = 0;
	if (size == 0)
		return rmp_client_fail(p->c, -EINVAL, "rmp_alloc: size 0");
	if ((rc = data_of(p, &d)) != 0)
		return rc;
	if (size == 0 || size > d->usable)
		return rmp_client_fail(p->c, -EINVAL, "rmp_alloc: size %llu is not in [1, %llu]",
				       (unsigned long long)size, (unsigned long long)d->usable);
	rc = rmp_buddy_order_for(&d->b.g, size, &order);
	if (rc)
		return rc;
	rc = rmp_buddy_alloc(&d->b, my_ctx(d), order, &off);
	if (rc == -ENOMEM)
		return rmp_client_fail(p->c, rc, "rmp_alloc: no free block of %llu bytes",
				       (unsigned long long)(1ull << order));
	if (rc)
		return rmp_client_fail(p->c, rc, "rmp_alloc: metadata: %s", rmp_strerror(rc));
	*out = RMP_ADDR_MAKE(order, off);
	/* Out of memory here only costs the metadata check on transfers. */
	(void)rmp_liveset_add(&d->live, *out);
	return 0;
}

/* Checks the shape of a handle (not whether it is live: that needs the
 * metadata). 0 with the block's order and offset of byte a. */
static int decode(struct rmp_data *d, rmp_addr a, unsigned *order, uint64_t *off)
{
	int o = RMP_ADDR_ORDER(a);
	if (o < (int)d->b.g.min_order || o > (int)d->b.g.max_order)
		return -EINVAL;
	*order = (unsigned)o;
	*off = RMP_ADDR_OFFSET(a);
	if (*off >= (1ull << d->b.g.max_order))
		return -EINVAL;
	return 0;
}

int rmp_free(rmp_pool *p, rmp_addr a)
{
	struct rmp_data *d;
	unsigned order;
	uint64_t off;
	int rc;

	if (!p || a == 0)
		return bad_arg(p, p ? "rmp_free: handle 0 is never a block" : "rmp_free: NULL pool");
	if ((rc = data_of(p, &d)) != 0)
		return rc;
	if (decode(d, a, &order, &off) != 0 || (off & ((1ull << order) - 1)) != 0)
		return rmp_client_fail(p->c, -EINVAL, "rmp_free: %#llx is not the handle of a block",
				       (unsigned long long)a);
	/* Out of the set first: from now on a transfer on it asks the
	 * metadata, which says "free" as soon as the CAS below lands. */
	rmp_liveset_remove(&d->live, a);
	rc = rmp_buddy_free(&d->b, my_ctx(d), off, order);
	if (rc == -EINVAL)
		return rmp_client_fail(p->c, rc, "rmp_free: no live block of %llu bytes at %#llx (freed already?)",
				       (unsigned long long)(1ull << order), (unsigned long long)off);
	if (rc)
		return rmp_client_fail(p->c, rc, "rmp_free: metadata: %s", rmp_strerror(rc));
	return 0;
}

static struct data_donor *donor_by_id(struct rmp_data *d, uint32_t id, unsigned *idx)
{
	for (unsigned i = 0; i < d->ndonors; i++)
		if (d->donors[i].donor_id == id) {
			*idx = i;
			return &d->donors[i];
		}
	return NULL;
}

/* Requires dn->lock. */
static int donor_connect_locked(rmp_pool *p, struct rmp_data *d, struct data_donor *dn)
{
	uint8_t tok[RMP_AUTH_TOKEN_LEN];
	int rc;

	if (dn->conn && !rmp_rdma_conn_failed(dn->conn))
		return 0;
	if (dn->conn) {
		/* A failed connection is never trusted again (late completions
		 * could land in the bounce buffer): make a new one. The
		 * registered buffers' MRs on its PD go first. */
		unsigned idx = (unsigned)(dn - d->donors);
		pthread_mutex_lock(&buf_lock);
		for (struct rmp_buffer *b = buffers; b; b = b->next)
			if (b->p == p && idx < b->ndonors && b->mrs[idx]) {
				ibv_dereg_mr(b->mrs[idx]);
				b->mrs[idx] = NULL;
			}
		pthread_mutex_unlock(&buf_lock);
		ibv_dereg_mr(dn->bounce_mr);
		dn->bounce_mr = NULL;
		rmp_rdma_close(dn->conn);
		dn->conn = NULL;
	}
	if (!dn->bounce && !(dn->bounce = aligned_alloc(4096, BOUNCE_BYTES)))
		return -ENOMEM;
	rc = token_for(p, RMP_TOKEN_DONOR, dn->donor_id, tok);
	if (rc)
		return rc;
	rc = connect_retry(dn->ep.host, dn->ep.port, tok, sizeof(tok), &d->opts, &dn->conn);
	if (rc)
		return rmp_client_fail(p->c, rc, "donor %u at %s:%u: %s", dn->donor_id, dn->ep.host, dn->ep.port,
				       rmp_strerror(rc));
	dn->bounce_mr = ibv_reg_mr(rmp_rdma_conn_pd(dn->conn), dn->bounce, BOUNCE_BYTES, IBV_ACCESS_LOCAL_WRITE);
	if (!dn->bounce_mr) {
		rc = -errno;
		rmp_rdma_close(dn->conn);
		dn->conn = NULL;
		return rc ? rc : -ENOMEM;
	}
	return 0;
}

/* Reaps at least min completions of donor dn's pipeline (they come back
 * in posting order on its one RC queue pair); a read through the bounce
 * buffer copies each piece to the caller as it completes. Requires the
 * donor's lock. */
static int pipe_reap_locked(rmp_pool *p, struct data_donor *dn, unsigned min, bool copy_back)
{
	uint64_t ids[DEPTH_MAX];
	int n = rmp_rdma_poll(dn->conn, min, ids, DEPTH_MAX);

	if (n < 0) {
		/* The connection is failed now (rdma.c marks it): nothing of
		 * it is trusted again, donor_connect_locked replaces it. */
		dn->head = dn->tail = 0;
		return rmp_client_fail(p->c, n, "donor %u: %s", dn->donor_id, rmp_strerror(n));
	}
	for (int i = 0; i < n; i++) {
		unsigned k = dn->tail++ % DEPTH_MAX;
		if (copy_back)
			memcpy(dn->user[k], dn->ops[k].local, dn->ops[k].len);
	}
	return 0;
}

/* The MR of registered buffer b on donor idx's connection, made now if
 * there is none. Requires the donor's lock and a connection. */
static int buffer_mr_locked(rmp_pool *p, struct data_donor *dn, unsigned idx, struct rmp_buffer *b)
{
	if (b->mrs[idx])
		return 0;
	errno = 0;
	b->mrs[idx] = ibv_reg_mr(rmp_rdma_conn_pd(dn->conn), b->addr, b->len, IBV_ACCESS_LOCAL_WRITE);
	if (!b->mrs[idx]) {
		int rc = errno ? -errno : -ENOMEM;
		return rmp_client_fail(p->c, rc, "registering the buffer of %zu bytes at %p for donor %u: %s",
				       b->len, (void *)b->addr, dn->donor_id, rmp_strerror(rc));
	}
	return 0;
}

/*
 * Move len bytes between buf and pool bytes [off, off+len), cut at
 * segment boundaries and PIECE_MAX, as a pipeline per donor: up to
 * DEPTH_MAX pieces in flight on each donor's connection, the next piece
 * posted as soon as the oldest one completes (no drain between batches).
 * reg: buf lies in that registered buffer (a reference is held) and the
 * pieces go straight from/to it; NULL: through the bounce buffers, one
 * PIECE_MAX slot per piece in flight.
 */
static int transfer(rmp_pool *p, struct rmp_data *d, uint64_t off, uint8_t *buf, struct rmp_buffer *reg,
		    uint64_t len, bool is_read)
{
	const struct rmp_wire_segtab *st = &p->segtab;
	uint64_t seg_size = 1ull << d->seg_log2;
	uint8_t in_use[d->ndonors ? d->ndonors : 1];
	bool copy_back = is_read && !reg;
	int rc = 0;

	/* The donors behind the range: one look per segment. */
	memset(in_use, 0, sizeof(in_use));
	for (uint64_t o = off; o < off + len; o = (o | (seg_size - 1)) + 1) {
		const struct rmp_wire_segment *sg = &st->segments[o >> d->seg_log2];
		unsigned idx;
		if (sg->donor_id == RMP_WIRE_SEG_RESERVED || !donor_by_id(d, sg->donor_id, &idx))
			return rmp_client_fail(p->c, -EFAULT, "pool offset %#llx has no donor behind it",
					       (unsigned long long)o);
		in_use[idx] = 1;
	}
	/* Lock in index order (two transfers cannot deadlock), connect where
	 * needed, make the buffer's MRs. */
	unsigned locked = 0;
	for (unsigned i = 0; i < d->ndonors && rc == 0; i++) {
		if (!in_use[i])
			continue;
		pthread_mutex_lock(&d->donors[i].lock);
		locked = i + 1;
		d->donors[i].head = d->donors[i].tail = 0;
		rc = donor_connect_locked(p, d, &d->donors[i]);
		if (rc == 0 && reg)
			rc = buffer_mr_locked(p, &d->donors[i], i, reg);
	}
	for (uint64_t pos = 0; rc == 0 && pos < len;) {
		uint64_t o = off + pos;
		const struct rmp_wire_segment *sg = &st->segments[o >> d->seg_log2];
		unsigned idx = 0;
		donor_by_id(d, sg->donor_id, &idx); /* checked above */
		struct data_donor *dn = &d->donors[idx];
		if (dn->head - dn->tail == DEPTH_MAX) {
			rc = pipe_reap_locked(p, dn, 1, copy_back); /* the oldest piece, at least */
			continue;
		}
		uint64_t n = seg_size - (o & (seg_size - 1));
		if (n > len - pos)
			n = len - pos;
		if (n > PIECE_MAX)
			n = PIECE_MAX;
		unsigned k = dn->head % DEPTH_MAX;
		uint8_t *user = buf + pos;
		uint8_t *local = reg ? user : dn->bounce + (size_t)k * PIECE_MAX;
		if (!is_read && !reg)
			memcpy(local, user, n);
		dn->user[k] = user;
		dn->ops[k] = (struct rmp_rdma_op){ .kind = is_read ? RMP_RDMA_READ : RMP_RDMA_WRITE, .local = local,
						   .lkey = reg ? reg->mrs[idx]->lkey : dn->bounce_mr->lkey,
						   .len = (uint32_t)n, .raddr = sg->addr + (o & (seg_size - 1)),
						   .rkey = sg->rkey };
		if ((rc = rmp_rdma_post(dn->conn, &dn->ops[k], 1, dn->head)) != 0) {
			rc = rmp_client_fail(p->c, rc, "donor %u: %s", dn->donor_id, rmp_strerror(rc));
			break;
		}
		dn->head++;
		pos += n;
	}
	/* Drain every pipeline, also after an error (nothing may land in a
	 * buffer after we return). */
	for (unsigned i = 0; i < locked; i++) {
		struct data_donor *dn = &d->donors[i];
		if (!in_use[i] || !dn->conn)
			continue;
		while (dn->head != dn->tail) {
			int e = pipe_reap_locked(p, dn, dn->head - dn->tail, copy_back && rc == 0);
			if (e && rc == 0)
				rc = e;
		}
	}
	for (unsigned i = 0; i < locked; i++)
		if (in_use[i])
			pthread_mutex_unlock(&d->donors[i].lock);
	return rc;
}

static int range_check(rmp_pool *p, struct rmp_data *d, rmp_addr a, const void *buf, uint64_t len,
		       const char *what, uint64_t *off)
{
	unsigned order;

	if (!buf || len == 0)
		return rmp_client_fail(p->c, -EINVAL, "%s: %s", what, buf ? "zero length" : "NULL buffer");
	if (decode(d, a, &order, off) != 0)
		return rmp_client_fail(p->c, -EINVAL, "%s: %#llx is not a pool address", what, (unsigned long long)a);
	uint64_t in_block = *off & ((1ull << order) - 1);
	if (len > (1ull << order) - in_block)
		return rmp_client_fail(p->c, -EINVAL, "%s: %llu bytes from byte %llu run past the %llu-byte block", what,
				       (unsigned long long)len, (unsigned long long)in_block,
				       (unsigned long long)(1ull << order));
	if (*off + len > d->usable)
		return rmp_client_fail(p->c, -EINVAL, "%s: range past the pool's usable space", what);
	uint64_t start = *off - in_block;
	if (rmp_liveset_has(&d->live, RMP_ADDR_MAKE(order, start)))
		return 0;
	int rc = rmp_buddy_is_live(&d->b, my_ctx(d), start, order);
	if (rc == 0)
		return rmp_client_fail(p->c, -EINVAL, "%s: no live block of %llu bytes at %#llx (freed, or never allocated)",
				       what, (unsigned long long)(1ull << order), (unsigned long long)start);
	if (rc < 0)
		return rmp_client_fail(p->c, rc, "%s: metadata: %s", what, rmp_strerror(rc));
	return 0;
}

/* The checks every bounce-buffer transfer makes before it touches the
 * network: a buffer and a length, the data path up, the range inside
 * one block. 0 with *d and the pool offset of byte a. */
static int bounce_prepare(rmp_pool *p, rmp_addr a, const void *buf, uint64_t len, const char *what,
			  struct rmp_data **d, uint64_t *off)
{
	int rc;

	if (!p || !buf || len == 0)
		return p ? rmp_client_fail(p->c, -EINVAL, "%s: %s", what, buf ? "zero length" : "NULL buffer") : -EINVAL;
	if ((rc = data_of(p, d)) != 0)
		return rc;
	return range_check(p, *d, a, buf, len, what, off);
}

int rmp_write(rmp_pool *p, rmp_addr dst, const void *src, uint64_t len)
{
	struct rmp_data *d = NULL;
	uint64_t off = 0;
	int rc = bounce_prepare(p, dst, src, len, "rmp_write", &d, &off);

	return rc ? rc : transfer(p, d, off, (uint8_t *)(uintptr_t)src, NULL, len, false);
}

int rmp_read(rmp_pool *p, void *dst, rmp_addr src, uint64_t len)
{
	struct rmp_data *d = NULL;
	uint64_t off = 0;
	int rc = bounce_prepare(p, src, dst, len, "rmp_read", &d, &off);

	return rc ? rc : transfer(p, d, off, dst, NULL, len, true);
}

/* ---- registered buffers ---- */

int rmp_buffer_register(rmp_pool *p, void *addr, size_t len, rmp_buffer **out)
{
	struct rmp_data *d;
	int rc;

	if (!out)
		return bad_arg(p, "rmp_buffer_register: NULL result pointer");
	*out = NULL;
	if (!p)
		return bad_arg(p, "rmp_buffer_register: NULL pool");
	if (!addr || len == 0)
		return rmp_client_fail(p->c, -EINVAL, "rmp_buffer_register: %s", addr ? "zero length" : "NULL address");
	if ((rc = data_of(p, &d)) != 0)
		return rc;
	struct rmp_buffer *b = calloc(1, sizeof(*b));
	if (!b || !(b->mrs = calloc(d->ndonors ? d->ndonors : 1, sizeof(*b->mrs)))) {
		free(b);
		return -ENOMEM;
	}
	b->p = p;
	b->addr = addr;
	b->len = len;
	b->ndonors = d->ndonors;
	pthread_mutex_lock(&buf_lock);
	b->next = buffers;
	buffers = b;
	pthread_mutex_unlock(&buf_lock);
	*out = b;
	return 0;
}

int rmp_buffer_deregister(rmp_buffer *b)
{
	struct rmp_buffer **pp;

	if (!b)
		return bad_arg(NULL, "rmp_buffer_deregister: NULL buffer");
	pthread_mutex_lock(&buf_lock);
	for (pp = &buffers; *pp && *pp != b; pp = &(*pp)->next)
		;
	if (!*pp || b->dead) {
		pthread_mutex_unlock(&buf_lock);
		return bad_arg(NULL, "rmp_buffer_deregister: not a registered buffer (deregistered, or its pool closed)");
	}
	if (b->refs) {
		pthread_mutex_unlock(&buf_lock);
		return rmp_client_fail(b->p->c, -EBUSY, "rmp_buffer_deregister: %u operation(s) still use the buffer",
				       b->refs);
	}
	b->dead = true; /* no new user from here on */
	pthread_mutex_unlock(&buf_lock);
	struct rmp_data *d = b->p->data;
	for (unsigned i = 0; i < b->ndonors; i++) {
		pthread_mutex_lock(&d->donors[i].lock);
		if (b->mrs[i])
			ibv_dereg_mr(b->mrs[i]);
		b->mrs[i] = NULL;
		pthread_mutex_unlock(&d->donors[i].lock);
	}
	pthread_mutex_lock(&buf_lock);
	for (pp = &buffers; *pp && *pp != b; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = b->next;
	pthread_mutex_unlock(&buf_lock);
	free(b->mrs);
	free(b);
	return 0;
}

/* Checks a registered-buffer transfer and takes a reference on b:
 * 0 with the pool offset and the local address. */
static int buf_args(rmp_pool *p, struct rmp_data *d, rmp_buffer *b, size_t boff, rmp_addr a, uint64_t len,
		    const char *what, uint64_t *off, uint8_t **local)
{
	int found = 0;
	int rc;

	pthread_mutex_lock(&buf_lock);
	for (struct rmp_buffer *x = buffers; x; x = x->next)
		if (x == b) {
			found = x->p == p && !x->dead;
			break;
		}
	if (found && (boff > b->len || len > b->len - boff)) {
		pthread_mutex_unlock(&buf_lock);
		return rmp_client_fail(p->c, -EINVAL, "%s: %llu bytes from offset %zu run past the %zu-byte buffer", what,
				       (unsigned long long)len, boff, b->len);
	}
	if (found)
		b->refs++;
	pthread_mutex_unlock(&buf_lock);
	if (!found)
		return rmp_client_fail(p->c, -EINVAL, "%s: %s", what,
				       b ? "not a buffer registered on this pool (deregistered?)" : "NULL buffer");
	*local = b->addr + boff;
	if ((rc = range_check(p, d, a, *local, len, what, off)) != 0)
		buffer_put(b);
	return rc;
}

int rmp_write_buf(rmp_pool *p, rmp_addr dst, rmp_buffer *b, size_t off, uint64_t len)
{
	struct rmp_data *d;
	uint64_t poff;
	uint8_t *local;
	int rc;

	if ((rc = data_of(p, &d)) != 0 || (rc = buf_args(p, d, b, off, dst, len, "rmp_write_buf", &poff, &local)) != 0)
		return rc;
	rc = transfer(p, d, poff, local, b, len, false);
	buffer_put(b);
	return rc;
}

int rmp_read_buf(rmp_pool *p, rmp_buffer *b, size_t off, rmp_addr src, uint64_t len)
{
	struct rmp_data *d;
	uint64_t poff;
	uint8_t *local;
	int rc;

	if ((rc = data_of(p, &d)) != 0 || (rc = buf_args(p, d, b, off, src, len, "rmp_read_buf", &poff, &local)) != 0)
		return rc;
	rc = transfer(p, d, poff, local, b, len, true);
	buffer_put(b);
	return rc;
}

/* ---- asynchronous operations ---- */

static void *async_worker(void *arg)
{
	struct rmp_data *d = arg;
	struct data_async *a = &d->async;

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
		int rc = transfer(op->p, d, op->off, op->buf, op->reg, op->len, op->is_read);
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
	struct data_async *a = &d->async;
	int rc = 0;

	pthread_mutex_lock(&a->lock);
	if (a->stop) {
		rc = -ECANCELED;
		goto out;
	}
	while (a->nth < ASYNC_WORKERS) {
		int e = pthread_create(&a->th[a->nth], NULL, async_worker, d);
		if (e) {
			if (a->nth == 0) {
				rc = -e;
				goto out;
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
out:
	pthread_mutex_unlock(&a->lock);
	if (rc) {
		if (op->reg)
			buffer_put(op->reg);
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
			buffer_put(reg);
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
		return bad_arg(p, "rmp_write_async: NULL op pointer");
	*op = NULL;
	if ((rc = bounce_prepare(p, dst, src, len, "rmp_write_async", &d, &off)) != 0)
		return rc;
	return async_start(p, off, (uint8_t *)(uintptr_t)src, NULL, len, false, op);
}

int rmp_read_async(rmp_pool *p, void *dst, rmp_addr src, uint64_t len, rmp_op **op)
{
	struct rmp_data *d;
	uint64_t off = 0;
	int rc;

	if (!op)
		return bad_arg(p, "rmp_read_async: NULL op pointer");
	*op = NULL;
	if ((rc = bounce_prepare(p, src, dst, len, "rmp_read_async", &d, &off)) != 0)
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
		return bad_arg(p, "rmp_write_buf_async: NULL op pointer");
	*op = NULL;
	if ((rc = data_of(p, &d)) != 0 ||
	    (rc = buf_args(p, d, b, off, dst, len, "rmp_write_buf_async", &poff, &local)) != 0)
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
		return bad_arg(p, "rmp_read_buf_async: NULL op pointer");
	*op = NULL;
	if ((rc = data_of(p, &d)) != 0 ||
	    (rc = buf_args(p, d, b, off, src, len, "rmp_read_buf_async", &poff, &local)) != 0)
		return rc;
	return async_start(p, poff, local, b, len, true, op);
}

int rmp_op_test(rmp_op *op)
{
	if (!op)
		return bad_arg(NULL, "rmp_op_test: NULL op");
	if (!op->p->data)
		return bad_arg(op->p, "rmp_op_test: the op's pool is closed");
	struct data_async *a = &op->p->data->async;
	pthread_mutex_lock(&a->lock);
	int rc = op->done ? op->rc : -EINPROGRESS;
	pthread_mutex_unlock(&a->lock);
	return rc;
}

int rmp_op_wait(rmp_op *op, unsigned timeout_ms)
{
	if (!op)
		return bad_arg(NULL, "rmp_op_wait: NULL op");
	if (!op->p->data)
		return bad_arg(op->p, "rmp_op_wait: the op's pool is closed");
	rmp_pool *p = op->p;
	struct data_async *a = &p->data->async;
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += (time_t)(timeout_ms / 1000u);
	dl.tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&a->lock);
	while (!op->done)
		if (pthread_cond_timedwait(&a->done, &a->lock, &dl) == ETIMEDOUT)
			break;
	if (!op->done) {
		pthread_mutex_unlock(&a->lock);
		return -EINPROGRESS;
	}
	for (struct rmp_op **pp = &a->all; *pp; pp = &(*pp)->all_next)
		if (*pp == op) {
			*pp = op->all_next;
			break;
		}
	pthread_mutex_unlock(&a->lock);
	int rc = op->rc;
	if (rc)
		rmp_client_fail(p->c, rc, "%s", op->err);
	if (op->reg)
		buffer_put(op->reg);
	free(op);
	return rc;
}

int rmp_pool_stats(rmp_pool *p, struct rmp_pool_stats *out)
{
	struct rmp_data *d;
	struct rmp_buddy_stats sum = { 0 }, s;
	int rc;

	if (!out)
		return -EINVAL;
	if ((rc = data_of(p, &d)) != 0)
		return rc;
	for (unsigned i = 0; i < DATA_SHARDS; i++) {
		rmp_buddy_stats(&d->shards[i].ctx, &s);
		rmp_buddy_stats_add(&sum, &s);
	}
	*out = (struct rmp_pool_stats){
		.allocs = sum.alloc.calls, .alloc_round_trips = sum.alloc.round_trips,
		.alloc_cas_failed = sum.alloc.cas_fail,
		.alloc_wrs = sum.alloc.loads + sum.alloc.cas_ok + sum.alloc.cas_fail + sum.alloc.faa,
		.frees = sum.free.calls, .free_round_trips = sum.free.round_trips,
		.free_cas_failed = sum.free.cas_fail,
		.free_wrs = sum.free.loads + sum.free.cas_ok + sum.free.cas_fail + sum.free.faa,
	};
	return 0;
}

int rmp_pool_segment_donor(rmp_pool *p, uint64_t segment, uint32_t *donor_id)
{
	if (!p || !donor_id || segment >= p->segtab.n_segments)
		return -EINVAL;
	uint32_t id = p->segtab.segments[segment].donor_id;
	*donor_id = id == RMP_WIRE_SEG_RESERVED ? RMP_NO_DONOR : id;
	return 0;
}
