/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_anchor - the floors bench-pool (tests/bench/pool-bench.sh) sets
 * rmpool's figures against: minimal verbs loops of the project's own,
 * doing what rmpool's data path does on the wire and nothing else.
 *
 *   bench_anchor server [--addr IP] [--port P] [--len BYTES] [--lifetime SEC]
 *       Registers LEN bytes (default 8 MiB) for remote read, write and
 *       atomics, listens with rdma_cm and accepts connect requests whose
 *       private data is a DONOR token for ANCHOR_TARGET made with
 *       $RMPOOL_SECRET (as a donor does). Prints
 *       "READY <addr> <port> <raddr> <rkey> <len>"; exits 0 on SIGTERM.
 *   bench_anchor client HOST PORT RADDR RKEY LEN [--space BYTES]
 *                [--min-block BYTES] [--capacity BYTES] [--lat-iters N]
 *                [--alloc-iters N] [--bw-iters N]
 *       Connects like librmpool (common/rdma.c, same options: RMPOOL_WAIT
 *       picks poll, event or adaptive completion; rmpool's ACK timeout and
 *       RDMA timeout) and measures, as key=value lines "anchor.*":
 *   (a) read_lat: one 64 B RDMA READ per iteration, one at a time: the
 *       floor of a 64 B rmp_read (median and p99, us); write_lat: the same
 *       with a 64 B WRITE (the floor of a 64 B rmp_write);
 *   (b) batch_lat: one 64-word READ and a CAS posted together and waited
 *       for together, as common/store_rdma.c turns one engine batch into
 *       one round trip: the floor of one allocator round trip; and
 *       alloc_free_lat: a replay, batch by batch, of the word operations
 *       rmp_alloc + rmp_free of a 4 KiB block issue in bench.c's steady
 *       state (see record_pattern: the buddy engine itself runs on a
 *       local copy of the pool's metadata, formatted as the coordinator
 *       formats it, behind a store that records each batch with the chunk
 *       size of the real RDMA store); the recorded round trips and work
 *       requests per alloc and per free are printed beside it, and the
 *       batches of the first and last pair (anchor.pairN=alloc [C+R64+R15]
 *       [>F+F] free [...]: R<n> a READ of n words, C a CAS, F a FAA, '>'
 *       a posted batch);
 *   (c) read_bw / write_bw: 1 MiB moved as rmpool's transfer.c moves it to
 *       one donor: pieces of RMP_PIECE_MAX bytes, at most RMP_DEPTH_MAX in
 *       flight, the next one posted as the oldest completes, from and to a
 *       registered buffer (no bounce copy): the bandwidth ceiling of one
 *       1 MiB call at a time (MB/s = 10^6 B/s).
 *
 * Why common/rdma.c and not plain verbs: the anchors then share rmpool's
 * connection setup, queue sizes, ACK timeout (14) and completion waits,
 * so a ratio rmpool/anchor is what rmpool's own layers cost (routing,
 * locks, the engine's CPU, bounce copies) on the same QPs; perftest, run
 * beside these in the same session, is the anchor that knows nothing of
 * rmpool (raw verbs, its own QP setup).
 *   bench_anchor pattern [--space ...]
 *       Only records and prints the allocator's pattern (no network).
 * Exit status: 0 when every figure was measured, 1 on a failure (said on
 * stderr), 2 for bad usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "buddy.h"
#include "clock.h"
#include "data.h" /* RMP_PIECE_MAX, RMP_DEPTH_MAX, RMP_SHARD_WORDS_CACHED: rmpool's own values */
#include "rdma.h"
#include "store_local.h"
#include "store_rdma.h"

#define ANCHOR_TARGET 0x414e4348u /* "ANCH": the DONOR token's target id */
#define DEFAULT_LEN (8u << 20)
#define MIB (1u << 20)
/* Remote region: [0, 1 MiB) bandwidth, REMOTE_LAT the 64 B reads, from
 * REMOTE_META the metadata words the replay addresses. */
#define REMOTE_LAT (1u * MIB)
#define REMOTE_META (2u * MIB)
/* Local region: [0, 1 MiB) bandwidth, then the batch scratch (as
 * store_rdma.c: the largest load, then a ring for posted results). */
#define SCRATCH_WORDS 8192u
#define POST_SLOTS 32u
#define MAX_BATCH 128u
#define LOCAL_SCRATCH (1u * MIB)
#define LOCAL_LEN (LOCAL_SCRATCH + (SCRATCH_WORDS + POST_SLOTS) * 8u)
#define RDMA_TIMEOUT_MS 10000 /* librmpool's default rdma_timeout (data.c) */

_Static_assert(RMP_PIECE_MAX * RMP_DEPTH_MAX <= MIB, "a 1 MiB transfer fills the pipeline");

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static double us_since(uint64_t t0_ns)
{
	return (double)(rmp_mono_ns() - t0_ns) / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile of v[0..n), as bench.c computes it (sorts v). */
static double pct(double *v, unsigned n, double q)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[(unsigned)(q * (n - 1) + 0.5)];
}

static rmp_auth_key *load_key(void)
{
	rmp_auth_key *k;
	char err[160];
	if (rmp_auth_key_create(NULL, &k, err, sizeof(err))) {
		fprintf(stderr, "bench_anchor: %s\n", err);
		return NULL;
	}
	return k;
}

/* ---- server ---- */

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int accept_token(void *arg, const void *pdata, uint8_t len, uint64_t *tag)
{
	struct rmp_wire_token tok;
	int rc = rmp_auth_token_verify(arg, pdata, len, RMP_TOKEN_DONOR, ANCHOR_TARGET, wall_ms(), &tok);
	if (rc)
		fprintf(stderr, "bench_anchor: refused a connect request: %s\n", strerror(-rc));
	else
		*tag = tok.client_id;
	return rc;
}

static int run_server(int argc, char **argv)
{
	char addr[64] = "";
	unsigned port = 0, lifetime = 3600;
	size_t len = DEFAULT_LEN;
	rmp_rdma_listener *l = NULL;
	struct ibv_mr *mr = NULL;
	uint8_t *region = NULL;
	int rc, ex = 1;

	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--addr"))
			snprintf(addr, sizeof(addr), "%s", argv[i + 1]);
		else if (!strcmp(argv[i], "--port"))
			port = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--len"))
			len = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--lifetime"))
			lifetime = (unsigned)strtoul(argv[i + 1], NULL, 10);
	}
	if (len < REMOTE_META + 4096 || len > (1ull << 32)) {
		fprintf(stderr, "bench_anchor: --len from %u to 4 GiB\n", REMOTE_META + 4096);
		return 2;
	}
	if (!addr[0] && (rc = rmp_rdma_local_addr(addr, sizeof(addr))) != 0) {
		fprintf(stderr, "bench_anchor: no RDMA address: %s\n", strerror(-rc));
		return 1;
	}
	rmp_auth_key *key = load_key();
	if (!key)
		return 1;
	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	struct rmp_rdma_opts o = { .timeout_ms = RDMA_TIMEOUT_MS };
	if ((rc = rmp_rdma_listen(addr, (uint16_t)port, &o, accept_token, NULL, key, &l)) != 0) {
		fprintf(stderr, "bench_anchor: listen on %s:%u: %s\n", addr, port, strerror(-rc));
		goto out_key;
	}
	if (!(region = aligned_alloc(4096, len)))
		goto out_listener;
	memset(region, 0, len);
	if ((rc = rmp_rdma_reg_remote(rmp_rdma_listener_pd(l), region, len, &mr)) != 0) {
		fprintf(stderr, "bench_anchor: register %zu bytes: %s\n", len, strerror(-rc));
		goto out_region;
	}
	printf("READY %s %u %" PRIu64 " %u %zu\n", addr, rmp_rdma_listener_port(l), (uint64_t)(uintptr_t)region,
	       mr->rkey, len);
	fflush(stdout);
	uint64_t end = rmp_mono_ms() + lifetime * 1000ull;
	while (!stop && rmp_mono_ms() < end) {
		struct pollfd pfd = { .fd = rmp_rdma_listener_fd(l), .events = POLLIN };
		if (poll(&pfd, 1, 200) > 0 && (rc = rmp_rdma_listener_dispatch(l)) < 0)
			fprintf(stderr, "bench_anchor: dispatch: %s\n", strerror(-rc));
	}
	ex = stop ? 0 : 3; /* 3: the lifetime ran out, the driver never stopped us */
	ibv_dereg_mr(mr);
out_region:
	free(region);
out_listener:
	rmp_rdma_listener_close(l);
out_key:
	rmp_auth_key_destroy(key);
	return ex;
}

/* ---- client: the recorded allocator pattern ---- */

struct rec_op {
	uint64_t idx, arg, swap;
	uint32_t nwords;
	uint8_t kind;
};

struct rec_batch {
	uint32_t first, n; /* ops[first, first + n) */
	bool posted;       /* handed to post(): sent, not waited for */
};

/* A word store that runs every batch on a local store and records it. */
struct recorder {
	struct rmp_store base; /* first: the engine sees a struct rmp_store */
	struct rmp_store *inner;
	bool on;
	struct rec_op *ops;
	struct rec_batch *b;
	size_t nops, cap_ops, nb, cap_b;
	int err; /* -ENOMEM once recording could not keep up */
};

static void rec_add(struct recorder *r, const struct rmp_wop *ops, unsigned n, bool posted)
{
	if (!r->on || r->err)
		return;
	if (r->nops + n > r->cap_ops) {
		size_t cap = 2 * (r->nops + n);
		struct rec_op *o = realloc(r->ops, cap * sizeof(*o));
		if (!o) {
			r->err = -ENOMEM;
			return;
		}
		r->ops = o, r->cap_ops = cap;
	}
	if (r->nb + 1 > r->cap_b) {
		size_t cap = 2 * (r->nb + 1);
		struct rec_batch *b = realloc(r->b, cap * sizeof(*b));
		if (!b) {
			r->err = -ENOMEM;
			return;
		}
		r->b = b, r->cap_b = cap;
	}
	r->b[r->nb++] = (struct rec_batch){ .first = (uint32_t)r->nops, .n = n, .posted = posted };
	for (unsigned k = 0; k < n; k++)
		r->ops[r->nops++] = (struct rec_op){ .idx = ops[k].idx, .arg = ops[k].arg, .swap = ops[k].swap,
						     .nwords = ops[k].kind == RMP_WOP_LOAD ? ops[k].nwords : 1,
						     .kind = ops[k].kind };
}

static int rec_exec(struct rmp_store *s, struct rmp_wop *ops, unsigned n)
{
	struct recorder *r = (struct recorder *)s;
	rec_add(r, ops, n, false);
	return r->inner->ops->exec(r->inner, ops, n);
}

static int rec_post(struct rmp_store *s, struct rmp_wop *ops, unsigned n)
{
	struct recorder *r = (struct recorder *)s;
	rec_add(r, ops, n, true);
	return r->inner->ops->post(r->inner, ops, n);
}

static const struct rmp_store_ops rec_ops = { .exec = rec_exec, .post = rec_post };

/* What one alloc+free pair of the steady state issued. */
struct rec_pair {
	size_t first_batch, alloc_batches, free_batches;
};

struct pattern {
	struct recorder r;
	struct rec_pair *pairs;
	unsigned npairs;
	uint64_t meta_words;
	double rt_alloc, rt_free, wr_alloc, wr_free; /* per alloc, per free */
};

struct client_opts {
	uint64_t space, min_block, capacity;
	unsigned lat_iters, af_iters, bw_iters;
};

static unsigned log2_exact(uint64_t v)
{
	unsigned k = 0;
	while (k < 63 && (1ull << k) < v)
		k++;
	return (1ull << k) == v ? k : 0;
}

static void pattern_counts(struct pattern *pt)
{
	double rt[2] = { 0 }, wr[2] = { 0 };
	for (unsigned i = 0; i < pt->npairs; i++) {
		const struct rec_pair *p = &pt->pairs[i];
		for (size_t k = 0; k < p->alloc_batches + p->free_batches; k++) {
			const struct rec_batch *b = &pt->r.b[p->first_batch + k];
			unsigned which = k >= p->alloc_batches;
			rt[which] += !b->posted; /* a round trip is an exec() (rmp_buddy_opstats) */
			wr[which] += b->n;
		}
	}
	pt->rt_alloc = rt[0] / pt->npairs, pt->rt_free = rt[1] / pt->npairs;
	pt->wr_alloc = wr[0] / pt->npairs, pt->wr_free = wr[1] / pt->npairs;
}

/* Runs the buddy engine as librmpool runs it in `rmpool bench`'s
 * alloc+free step (data.c: one ctx with a word cache of
 * RMP_SHARD_WORDS_CACHED entries; bench.c: a 4 KiB block held, 5
 * alloc+free to settle, then af_iters pairs measured) on a local copy of a
 * fresh pool's metadata formatted as the coordinator formats it
 * (rmp_buddy_format with the capacity), behind a recorder with the RDMA
 * store's chunk size. Records the measured pairs' batches. */
static int record_pattern(const struct client_opts *o, uint32_t chunk_words, struct pattern *pt)
{
	static _Atomic uint64_t wcache[2 * RMP_SHARD_WORDS_CACHED];
	static struct rmp_buddy_ctx ctx;
	struct rmp_buddy_geom g;
	struct rmp_store_local local;
	struct rmp_buddy b;
	unsigned order;
	uint64_t held, x;
	int rc;

	unsigned mo = log2_exact(o->space), mi = log2_exact(o->min_block);
	if (!mo || !mi || o->capacity > o->space || rmp_buddy_geom_init(&g, mo, mi)) {
		fprintf(stderr, "bench_anchor: --space and --min-block must be powers of 2, capacity <= space\n");
		return -EINVAL;
	}
	uint64_t *words = calloc(g.total_words, 8);
	pt->pairs = calloc(o->af_iters, sizeof(*pt->pairs));
	if (!words || !pt->pairs) {
		free(words);
		return -ENOMEM;
	}
	pt->meta_words = g.total_words;
	rmp_buddy_format(words, &g, o->capacity);
	rmp_store_local_init(&local, (_Atomic uint64_t *)words, g.total_words);
	pt->r.base = (struct rmp_store){ .ops = &rec_ops, .chunk_words = chunk_words, .direct = NULL };
	pt->r.inner = &local.base;
	rmp_buddy_init(&b, &g, &pt->r.base);
	rmp_buddy_ctx_init(&ctx, &b, 1);
	rmp_buddy_ctx_cache(&ctx, wcache, RMP_SHARD_WORDS_CACHED);
	if ((rc = rmp_buddy_order_for(&g, 4096, &order)) != 0 || (rc = rmp_buddy_alloc(&b, &ctx, order, &held)) != 0)
		goto out_words;
	for (unsigned i = 0; i < 5; i++) /* as bench.c: settle the cursor on a free block */
		if (rmp_buddy_alloc(&b, &ctx, order, &x) == 0 && (rc = rmp_buddy_free(&b, &ctx, x, order)) != 0)
			goto out_words;
	pt->r.on = true;
	for (unsigned i = 0; i < o->af_iters; i++) {
		struct rec_pair *p = &pt->pairs[i];
		p->first_batch = pt->r.nb;
		if ((rc = rmp_buddy_alloc(&b, &ctx, order, &x)) != 0)
			goto out_words;
		p->alloc_batches = pt->r.nb - p->first_batch;
		if ((rc = rmp_buddy_free(&b, &ctx, x, order)) != 0)
			goto out_words;
		p->free_batches = pt->r.nb - p->first_batch - p->alloc_batches;
	}
	pt->r.on = false;
	pt->npairs = o->af_iters;
	rc = pt->r.err;
	if (rc == 0)
		pattern_counts(pt);
out_words:
	free(words);
	if (rc)
		fprintf(stderr, "bench_anchor: recording the allocator's pattern: %s\n", strerror(-rc));
	return rc;
}

/* ---- client: the loops ---- */

struct anchor {
	struct client_opts o;
	rmp_rdma_conn *c;
	uint8_t *local;
	struct ibv_mr *mr;
	uint64_t raddr;
	uint32_t rkey;
	uint64_t len;
	unsigned inflight; /* posted (not waited for) replayed operations */
	double *t;
};

static int failed(const char *what, int rc)
{
	fprintf(stderr, "bench_anchor: %s: %s\n", what, strerror(-rc));
	return rc;
}

/* (a) one 64 B READ (or WRITE) per iteration: median and p99 us. */
static int small_lat(struct anchor *a, bool is_read, double *med, double *p99)
{
	struct rmp_rdma_op op = { .kind = is_read ? RMP_RDMA_READ : RMP_RDMA_WRITE, .local = a->local + LOCAL_SCRATCH,
				  .lkey = a->mr->lkey, .len = 64, .raddr = a->raddr + REMOTE_LAT, .rkey = a->rkey };
	int rc = rmp_rdma_exec(a->c, &op, 1); /* warm-up */
	for (unsigned i = 0; rc == 0 && i < a->o.lat_iters; i++) {
		uint64_t t0 = rmp_mono_ns();
		rc = rmp_rdma_exec(a->c, &op, 1);
		a->t[i] = us_since(t0);
	}
	if (rc)
		return failed(is_read ? "64 B READ" : "64 B WRITE", rc);
	*med = pct(a->t, a->o.lat_iters, 0.5);
	*p99 = pct(a->t, a->o.lat_iters, 0.99);
	return 0;
}

/* (b) one allocator round trip at its smallest: a 64-word READ and a CAS
 * on a word of it, one batch (median us). */
static int batch_lat(struct anchor *a, double *med)
{
	uint64_t *s = (uint64_t *)(a->local + LOCAL_SCRATCH);
	struct rmp_rdma_op ops[2] = {
		{ .kind = RMP_RDMA_READ, .local = s, .lkey = a->mr->lkey, .len = 64 * 8, .raddr = a->raddr + REMOTE_META,
		  .rkey = a->rkey },
		{ .kind = RMP_RDMA_CAS, .local = s + 64, .lkey = a->mr->lkey, .len = 8, .raddr = a->raddr + REMOTE_META + 8,
		  .rkey = a->rkey, .compare = 1, .swap_add = 2 },
	};
	int rc = rmp_rdma_exec(a->c, ops, 2);
	for (unsigned i = 0; rc == 0 && i < a->o.lat_iters; i++) {
		uint64_t t0 = rmp_mono_ns();
		rc = rmp_rdma_exec(a->c, ops, 2);
		a->t[i] = us_since(t0);
	}
	if (rc)
		return failed("READ+CAS batch", rc);
	*med = pct(a->t, a->o.lat_iters, 0.5);
	return 0;
}

/* Waits for every posted replayed operation (store_rdma.c's
 * reap_posted_locked). */
static int reap_posted(struct anchor *a)
{
	if (a->inflight == 0)
		return 0;
	int got = rmp_rdma_poll(a->c, a->inflight, NULL, 0);
	a->inflight = 0; /* reaped, or the connection failed for good */
	return got < 0 ? got : 0;
}

/* One recorded batch as store_rdma.c sends it: an exec batch posted
 * behind the posted operations and waited for with them; a posted batch
 * sent into the ring of posted results, reaped when the ring is full or
 * by the next exec. */
static int replay_batch(struct anchor *a, const struct pattern *pt, const struct rec_batch *rb)
{
	struct rmp_rdma_op ops[MAX_BATCH];
	uint64_t *scratch = (uint64_t *)(a->local + LOCAL_SCRATCH);
	unsigned slot = 0;
	int rc;

	if (rb->n > MAX_BATCH || (rb->posted && rb->n > POST_SLOTS))
		return -E2BIG;
	if (rb->posted && a->inflight + rb->n > POST_SLOTS && (rc = reap_posted(a)) != 0)
		return rc;
	for (unsigned k = 0; k < rb->n; k++) {
		const struct rec_op *o = &pt->r.ops[rb->first + k];
		uint64_t *local = rb->posted ? &scratch[SCRATCH_WORDS + a->inflight + k] : &scratch[slot];
		if (!rb->posted && o->nwords > SCRATCH_WORDS - slot)
			return -E2BIG;
		if (o->idx + o->nwords > pt->meta_words)
			return -EFAULT;
		ops[k] = (struct rmp_rdma_op){ .local = local, .lkey = a->mr->lkey, .len = o->nwords * 8u,
					       .raddr = a->raddr + REMOTE_META + o->idx * 8u, .rkey = a->rkey };
		ops[k].kind = o->kind == RMP_WOP_LOAD ? RMP_RDMA_READ : o->kind == RMP_WOP_CAS ? RMP_RDMA_CAS : RMP_RDMA_FAA;
		ops[k].compare = o->arg;
		ops[k].swap_add = o->kind == RMP_WOP_CAS ? o->swap : o->arg;
		slot += rb->posted ? 0 : o->nwords;
	}
	rc = rmp_rdma_post(a->c, ops, rb->n, 0);
	if (rc == -EAGAIN) { /* the send queue is full of posted work */
		if ((rc = reap_posted(a)) != 0)
			return rc;
		if (!rb->posted)
			return rmp_rdma_exec(a->c, ops, rb->n);
		rc = rmp_rdma_post(a->c, ops, rb->n, 0);
	}
	if (rc)
		return rc;
	if (rb->posted) {
		a->inflight += rb->n;
		return 0;
	}
	int got = rmp_rdma_poll(a->c, a->inflight + rb->n, NULL, 0);
	a->inflight = 0;
	return got < 0 ? got : 0;
}

/* (b) the recorded alloc+free pairs replayed one after the other, each
 * timed from its first batch to its last (median us). */
static int replay(struct anchor *a, const struct pattern *pt, double *med)
{
	int rc = 0;

	if (REMOTE_META + pt->meta_words * 8 > a->len) {
		fprintf(stderr, "bench_anchor: the server's region holds no %" PRIu64 " metadata words\n",
			pt->meta_words);
		return -EINVAL;
	}
	for (unsigned i = 0; rc == 0 && i < pt->npairs; i++) {
		const struct rec_pair *p = &pt->pairs[i];
		uint64_t t0 = rmp_mono_ns();
		for (size_t k = 0; rc == 0 && k < p->alloc_batches + p->free_batches; k++)
			rc = replay_batch(a, pt, &pt->r.b[p->first_batch + k]);
		a->t[i] = us_since(t0);
	}
	if (rc == 0)
		rc = reap_posted(a);
	if (rc)
		return failed("allocator replay", rc);
	*med = pct(a->t, pt->npairs, 0.5);
	return 0;
}

/* (c) bw_iters transfers of 1 MiB, each a pipeline as transfer.c runs
 * one donor's: RMP_PIECE_MAX pieces, RMP_DEPTH_MAX in flight, the oldest
 * reaped when it is full, then drained. MB/s. */
static int pipe_bw(struct anchor *a, bool is_read, double *mbps)
{
	struct rmp_rdma_op ops[RMP_DEPTH_MAX];
	uint64_t ids[RMP_DEPTH_MAX];
	int rc = 0;

	uint64_t t0 = rmp_mono_ns();
	for (unsigned it = 0; rc == 0 && it < a->o.bw_iters; it++) {
		unsigned head = 0, tail = 0;
		for (uint32_t pos = 0; rc == 0 && pos < MIB; pos += RMP_PIECE_MAX) {
			if (head - tail == RMP_DEPTH_MAX) { /* full: the oldest piece, at least */
				int n = rmp_rdma_poll(a->c, 1, ids, RMP_DEPTH_MAX);
				if (n < 0) {
					rc = n;
					break;
				}
				tail += (unsigned)n;
			}
			unsigned k = head % RMP_DEPTH_MAX;
			ops[k] = (struct rmp_rdma_op){ .kind = is_read ? RMP_RDMA_READ : RMP_RDMA_WRITE,
						       .local = a->local + pos, .lkey = a->mr->lkey,
						       .len = RMP_PIECE_MAX, .raddr = a->raddr + pos, .rkey = a->rkey };
			if ((rc = rmp_rdma_post(a->c, &ops[k], 1, head)) == 0)
				head++;
		}
		while (head != tail) { /* drained, also after an error */
			int n = rmp_rdma_poll(a->c, head - tail, ids, RMP_DEPTH_MAX);
			if (n < 0) {
				rc = rc ? rc : n;
				break;
			}
			tail += (unsigned)n;
		}
	}
	if (rc)
		return failed(is_read ? "1 MiB READ pipeline" : "1 MiB WRITE pipeline", rc);
	*mbps = (double)a->o.bw_iters * MIB / us_since(t0);
	return 0;
}

/* -1 to go on, else the exit status (2: bad usage). */
static int parse_client(int argc, char **argv, int first, struct client_opts *o)
{
	*o = (struct client_opts){ .space = 64u * MIB, .min_block = 4096, .lat_iters = 200, .af_iters = 200,
				   .bw_iters = 20 };
	for (int i = first; i < argc; i += 2) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			goto usage;
		if (!strcmp(argv[i], "--space"))
			o->space = strtoull(v, NULL, 10);
		else if (!strcmp(argv[i], "--min-block"))
			o->min_block = strtoull(v, NULL, 10);
		else if (!strcmp(argv[i], "--capacity"))
			o->capacity = strtoull(v, NULL, 10);
		else if (!strcmp(argv[i], "--lat-iters"))
			o->lat_iters = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(argv[i], "--alloc-iters"))
			o->af_iters = (unsigned)strtoul(v, NULL, 10);
		else if (!strcmp(argv[i], "--bw-iters"))
			o->bw_iters = (unsigned)strtoul(v, NULL, 10);
		else
			goto usage;
	}
	if (!o->capacity)
		o->capacity = o->space;
	if (o->lat_iters >= 10 && o->af_iters >= 10 && o->bw_iters >= 1 && o->lat_iters <= 1000000 &&
	    o->af_iters <= 100000 && o->bw_iters <= 100000)
		return -1;
usage:
	fprintf(stderr, "usage: bench_anchor client HOST PORT RADDR RKEY LEN [OPTIONS]\n"
			"       bench_anchor pattern [OPTIONS]   (the recorded allocator pattern, no network)\n"
			"OPTIONS: [--space B] [--min-block B] [--capacity B] [--lat-iters N (200)]\n"
			"         [--alloc-iters N (200)] [--bw-iters N (20)]\n");
	return 2;
}

static enum rmp_rdma_wait wait_mode(const char **name)
{
	const char *e = getenv("RMPOOL_WAIT"); /* as data.c reads it */
	*name = !e ? "adaptive" : !strcmp(e, "poll") ? "poll" : !strcmp(e, "event") ? "event" : "adaptive";
	return !strcmp(*name, "poll") ? RMP_RDMA_WAIT_POLL : !strcmp(*name, "event") ? RMP_RDMA_WAIT_EVENT
										  : RMP_RDMA_WAIT_ADAPTIVE;
}

/* Connects with a DONOR token, registers the local region, learns the
 * chunk size of the real RDMA store on this connection. */
static int client_connect(struct anchor *a, const char *host, uint16_t port, enum rmp_rdma_wait w,
			  uint32_t *chunk_words)
{
	struct rmp_wire_token t = { .kind = RMP_TOKEN_DONOR, .target_id = ANCHOR_TARGET, .client_id = 1,
				    .expires_ms = wall_ms() + 600000 };
	uint8_t tok[RMP_AUTH_TOKEN_LEN];
	rmp_store_rdma *s;
	rmp_auth_key *k = load_key();
	int rc;

	if (!k)
		return -EINVAL;
	rc = rmp_auth_token_make(k, &t, tok);
	rmp_auth_key_destroy(k);
	if (rc)
		return failed("token", rc);
	struct rmp_rdma_opts o = { .timeout_ms = RDMA_TIMEOUT_MS, .wait = w }; /* as data.c's */
	if ((rc = rmp_rdma_connect(host, port, tok, sizeof(tok), &o, &a->c)) != 0)
		return failed("connect", rc);
	if (!(a->local = aligned_alloc(4096, LOCAL_LEN)))
		return -ENOMEM;
	memset(a->local, 0x5a, LOCAL_LEN);
	if (!(a->mr = ibv_reg_mr(rmp_rdma_conn_pd(a->c), a->local, LOCAL_LEN, IBV_ACCESS_LOCAL_WRITE)))
		return failed("ibv_reg_mr", errno ? -errno : -ENOMEM);
	if ((rc = rmp_store_rdma_create(a->c, a->raddr + REMOTE_META, a->rkey, (a->len - REMOTE_META) / 8, &s)) != 0)
		return failed("rmp_store_rdma_create", rc);
	*chunk_words = rmp_store_rdma_base(s)->chunk_words;
	rmp_store_rdma_destroy(s);
	return 0;
}

/* One batch as text: R<words> for a READ, C for a CAS, F for a FAA,
 * joined by '+', in brackets; posted batches marked with '>'. */
static void print_batch(const struct pattern *pt, const struct rec_batch *b)
{
	printf(" [%s", b->posted ? ">" : "");
	for (unsigned k = 0; k < b->n; k++) {
		const struct rec_op *o = &pt->r.ops[b->first + k];
		if (o->kind == RMP_WOP_LOAD)
			printf("%sR%u", k ? "+" : "", o->nwords);
		else
			printf("%s%c", k ? "+" : "", o->kind == RMP_WOP_CAS ? 'C' : 'F');
	}
	printf("]");
}

/* The batches of recorded pair i as one key=value line. */
static void print_pair(const struct pattern *pt, unsigned i)
{
	const struct rec_pair *p = &pt->pairs[i];
	printf("anchor.pair%u=alloc", i);
	for (size_t k = 0; k < p->alloc_batches + p->free_batches; k++) {
		if (k == p->alloc_batches)
			printf(" free");
		print_batch(pt, &pt->r.b[p->first_batch + k]);
	}
	printf("\n");
}

static int run_client(int argc, char **argv)
{
	struct anchor a = { 0 };
	struct pattern pt = { 0 };
	double rl_med = 0, rl_p99 = 0, wl_med = 0, wl_p99 = 0, bl = 0, af = 0, rbw = 0, wbw = 0;
	const char *mode;
	uint32_t chunk = 0;
	int ex;

	if (argc < 7)
		return parse_client(0, argv, 0, &a.o);
	if ((ex = parse_client(argc, argv, 7, &a.o)) >= 0)
		return ex;
	a.raddr = strtoull(argv[4], NULL, 10);
	a.rkey = (uint32_t)strtoul(argv[5], NULL, 10);
	a.len = strtoull(argv[6], NULL, 10);
	if (a.len < REMOTE_META + 4096) {
		fprintf(stderr, "bench_anchor: the server's region (%" PRIu64 " bytes) is too small\n", a.len);
		return 2;
	}
	enum rmp_rdma_wait w = wait_mode(&mode);
	a.t = calloc(a.o.lat_iters > a.o.af_iters ? a.o.lat_iters : a.o.af_iters, sizeof(*a.t));
	ex = 1;
	if (a.t && client_connect(&a, argv[2], (uint16_t)strtoul(argv[3], NULL, 10), w, &chunk) == 0 &&
	    record_pattern(&a.o, chunk, &pt) == 0 && small_lat(&a, true, &rl_med, &rl_p99) == 0 &&
	    small_lat(&a, false, &wl_med, &wl_p99) == 0 && batch_lat(&a, &bl) == 0 &&
	    replay(&a, &pt, &af) == 0 && pipe_bw(&a, false, &wbw) == 0 && pipe_bw(&a, true, &rbw) == 0)
		ex = 0;
	if (ex == 0) {
		printf("anchor.mode=%s\n", mode);
		printf("anchor.read_lat.median_us=%.2f\nanchor.read_lat.p99_us=%.2f\n", rl_med, rl_p99);
		printf("anchor.write_lat.median_us=%.2f\nanchor.write_lat.p99_us=%.2f\n", wl_med, wl_p99);
		printf("anchor.batch_lat.median_us=%.2f\n", bl);
		printf("anchor.alloc_free_lat.median_us=%.2f\n", af);
		printf("anchor.alloc.round_trips=%.2f\nanchor.free.round_trips=%.2f\n", pt.rt_alloc, pt.rt_free);
		printf("anchor.alloc.work_requests=%.2f\nanchor.free.work_requests=%.2f\n", pt.wr_alloc, pt.wr_free);
		printf("anchor.chunk_words=%u\n", chunk);
		printf("anchor.read_bw.MBps=%.2f\nanchor.write_bw.MBps=%.2f\n", rbw, wbw);
		printf("anchor.piece_bytes=%u\nanchor.depth=%u\n", RMP_PIECE_MAX, RMP_DEPTH_MAX);
		print_pair(&pt, 0); /* what (b) replays: the first pair, the last */
		print_pair(&pt, pt.npairs - 1);
	}
	if (a.mr)
		ibv_dereg_mr(a.mr);
	rmp_rdma_close(a.c);
	free(a.local);
	free(a.t);
	free(pt.pairs);
	free(pt.r.ops);
	free(pt.r.b);
	return ex;
}

/* `bench_anchor pattern [options]`: the recorded pattern without a
 * network (chunk size 64, store_rdma.c's): counts, and the batches of the
 * first and the last pair. */
static int run_pattern(int argc, char **argv)
{
	struct client_opts o;
	struct pattern pt = { 0 };
	int ex = parse_client(argc, argv, 2, &o);

	if (ex >= 0)
		return ex;
	ex = record_pattern(&o, 64, &pt) ? 1 : 0;
	if (ex == 0) {
		printf("anchor.alloc.round_trips=%.2f\nanchor.free.round_trips=%.2f\n", pt.rt_alloc, pt.rt_free);
		printf("anchor.alloc.work_requests=%.2f\nanchor.free.work_requests=%.2f\n", pt.wr_alloc, pt.wr_free);
		print_pair(&pt, 0);
		print_pair(&pt, pt.npairs - 1);
	}
	free(pt.pairs);
	free(pt.r.ops);
	free(pt.r.b);
	return ex;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "pattern"))
		return run_pattern(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "server"))
		return run_server(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "client"))
		return run_client(argc, argv);
	fprintf(stderr, "usage: bench_anchor server [--addr IP] [--port P] [--len BYTES] [--lifetime SEC]\n"
			"       bench_anchor client HOST PORT RADDR RKEY LEN [options] (RMPOOL_WAIT=poll|event|adaptive)\n");
	return 2;
}
