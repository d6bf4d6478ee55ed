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
 * rkey. A transfer is cut at segment boundaries and at the size of a
 * donor's bounce buffer, and goes out in waves: in each wave every donor
 * involved gets its pieces posted at once (on its own connection), then
 * the wave waits for all of them. One allocation larger than any donor
 * (and any host) is thus read and written as one range. Donor
 * connections are made on first use, with a DONOR token for that donor.
 *
 * Data moves through a registered bounce buffer per donor connection
 * (the caller's memory is not registered): a copy, in exchange for
 * working with any buffer. Locks: a donor's lock covers its connection
 * and bounce buffer for one wave; a wave takes the locks of its donors
 * in index order, so two waves cannot deadlock.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buddy.h"
#include "client_internal.h"
#include "rdma.h"
#include "store_rdma.h"

#define DATA_SHARDS 16u
#define BOUNCE_BYTES (4u << 20) /* per donor connection */
#define PIECE_MAX (64u << 10) /* one work request moves at most this: rxe under
				 * emulation drops packets of long READ bursts and
				 * retries whole requests; shorter ones recover faster */
#define WAVE_MAX 16u            /* work requests per donor per wave (1 MiB of pieces) */
#define TOKEN_TTL_MS (24ull * 3600 * 1000)
#define PLAN_MAX 256u           /* pieces per wave, all donors */

struct piece {
	unsigned idx;   /* donor index */
	uint64_t raddr;
	uint32_t rkey;
	uint32_t n;
	uint64_t at;    /* offset in the caller's buffer */
};

struct data_donor {
	uint32_t donor_id;
	struct rmp_wire_endpoint ep;
	pthread_mutex_t lock;
	rmp_rdma_conn *conn; /* NULL until first use */
	uint8_t *bounce;
	struct ibv_mr *bounce_mr;
	/* the wave being built, under lock */
	struct rmp_rdma_op ops[WAVE_MAX];
	void *user[WAVE_MAX]; /* read: where each piece goes */
	unsigned nops;
	uint32_t used;
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

static int token_for(rmp_pool *p, enum rmp_wire_token_kind kind, uint32_t target, uint8_t *out)
{
	struct rmp_wire_token t = { .kind = (uint8_t)kind, .target_id = target,
				    .client_id = p->c->session_id, .expires_ms = wall_ms() + TOKEN_TTL_MS };
	return rmp_auth_token_make(rmp_client_key(p->c), &t, out);
}

void rmp_data_close(rmp_pool *p)
{
	struct rmp_data *d = p->data;

	if (!d)
		return;
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
	rc = rmp_rdma_connect(st->coordinator.host, st->coordinator.port, tok, sizeof(tok), &d->opts, &d->meta);
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
static int data_of(rmp_pool *p, struct rmp_data **out)
{
	int rc = 0;

	if (!p)
		return -EINVAL;
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
		return -EINVAL;
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
		return -EINVAL;
	if ((rc = data_of(p, &d)) != 0)
		return rc;
	if (decode(d, a, &order, &off) != 0 || (off & ((1ull << order) - 1)) != 0)
		return rmp_client_fail(p->c, -EINVAL, "rmp_free: %#llx is not the handle of a block",
				       (unsigned long long)a);
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
		 * could land in the bounce buffer): make a new one. */
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
	rc = rmp_rdma_connect(dn->ep.host, dn->ep.port, tok, sizeof(tok), &d->opts, &dn->conn);
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

/* Post every donor's wave, then wait for all. Requires the locks of all
 * donors in use (mask). */
static int run_wave_locked(rmp_pool *p, struct rmp_data *d, const uint8_t *in_use, bool is_read)
{
	int rc = 0;
	unsigned posted_to[d->ndonors ? d->ndonors : 1], nposted = 0;

	for (unsigned i = 0; i < d->ndonors; i++) {
		struct data_donor *dn = &d->donors[i];
		if (!in_use[i] || dn->nops == 0)
			continue;
		rc = rmp_rdma_post(dn->conn, dn->ops, dn->nops, 0);
		if (rc)
			break;
		posted_to[nposted++] = i;
	}
	for (unsigned k = 0; k < nposted; k++) {
		struct data_donor *dn = &d->donors[posted_to[k]];
		unsigned got = 0;
		uint64_t ids[WAVE_MAX];
		while (got < dn->nops) {
			int n = rmp_rdma_poll(dn->conn, dn->nops - got, ids, WAVE_MAX);
			if (n < 0) {
				if (rc == 0)
					rc = rmp_client_fail(p->c, n, "donor %u: %s", dn->donor_id, rmp_strerror(n));
				break;
			}
			got += (unsigned)n;
		}
		if (rc == 0 && is_read)
			for (unsigned j = 0; j < dn->nops; j++)
				memcpy(dn->user[j], dn->ops[j].local, dn->ops[j].len);
	}
	for (unsigned i = 0; i < d->ndonors; i++) {
		d->donors[i].nops = 0;
		d->donors[i].used = 0;
	}
	return rc;
}

/*
 * Move len bytes between buf and pool bytes [off, off+len), cut at
 * segment boundaries and bounce-buffer sizes, in waves over the donors.
 */
static int transfer(rmp_pool *p, struct rmp_data *d, uint64_t off, uint8_t *buf, uint64_t len, bool is_read)
{
	const struct rmp_wire_segtab *st = &p->segtab;
	uint64_t seg_size = 1ull << d->seg_log2;
	uint8_t in_use[d->ndonors ? d->ndonors : 1];
	int rc = 0;

	while (len > 0 && rc == 0) {
		/* Plan one wave (no lock held: counts are local): walk forward
		 * until some donor's wave is full. */
		unsigned cnt[d->ndonors ? d->ndonors : 1];
		uint64_t used[d->ndonors ? d->ndonors : 1];
		struct piece plan[PLAN_MAX];
		unsigned np = 0;
		uint64_t w_off = off, w_len = len;
		memset(in_use, 0, sizeof(in_use));
		memset(cnt, 0, sizeof(cnt));
		memset(used, 0, sizeof(used));
		while (w_len > 0 && np < PLAN_MAX) {
			const struct rmp_wire_segment *sg = &st->segments[w_off >> d->seg_log2];
			unsigned idx;
			if (sg->donor_id == RMP_WIRE_SEG_RESERVED || !donor_by_id(d, sg->donor_id, &idx))
				return rmp_client_fail(p->c, -EFAULT, "pool offset %#llx has no donor behind it",
						       (unsigned long long)w_off);
			uint64_t n = seg_size - (w_off & (seg_size - 1));
			if (n > w_len)
				n = w_len;
			if (n > PIECE_MAX)
				n = PIECE_MAX;
			if (cnt[idx] == WAVE_MAX || used[idx] + n > BOUNCE_BYTES)
				break; /* this donor is full: the rest waits for the next wave */
			plan[np++] = (struct piece){ .idx = idx, .raddr = sg->addr + (w_off & (seg_size - 1)),
						     .rkey = sg->rkey, .n = (uint32_t)n, .at = w_off - off };
			cnt[idx]++;
			used[idx] += n;
			in_use[idx] = 1;
			w_off += n;
			w_len -= n;
		}
		/* Lock in index order, connect where needed, fill the ops. */
		unsigned locked = 0;
		for (unsigned i = 0; i < d->ndonors; i++) {
			if (!in_use[i])
				continue;
			pthread_mutex_lock(&d->donors[i].lock);
			locked = i + 1;
			rc = donor_connect_locked(p, d, &d->donors[i]);
			if (rc)
				break;
		}
		if (rc == 0) {
			for (unsigned k = 0; k < np; k++) {
				struct data_donor *dn = &d->donors[plan[k].idx];
				uint8_t *local = dn->bounce + dn->used;
				uint8_t *user = buf + plan[k].at;
				if (!is_read)
					memcpy(local, user, plan[k].n);
				dn->user[dn->nops] = user;
				dn->ops[dn->nops++] = (struct rmp_rdma_op){
					.kind = is_read ? RMP_RDMA_READ : RMP_RDMA_WRITE, .local = local,
					.lkey = dn->bounce_mr->lkey, .len = plan[k].n, .raddr = plan[k].raddr,
					.rkey = plan[k].rkey };
				dn->used += plan[k].n;
			}
			rc = run_wave_locked(p, d, in_use, is_read);
		}
		for (unsigned i = 0; i < locked && i < d->ndonors; i++)
			if (in_use[i])
				pthread_mutex_unlock(&d->donors[i].lock);
		uint64_t done = w_off - off;
		off += done;
		buf += done;
		len -= done;
	}
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
	return 0;
}

int rmp_write(rmp_pool *p, rmp_addr dst, const void *src, uint64_t len)
{
	struct rmp_data *d;
	uint64_t off;
	int rc;

	if (!p || !src || len == 0)
		return p ? rmp_client_fail(p->c, -EINVAL, "rmp_write: %s", src ? "zero length" : "NULL buffer") : -EINVAL;
	if ((rc = data_of(p, &d)) != 0 || (rc = range_check(p, d, dst, src, len, "rmp_write", &off)) != 0)
		return rc;
	return transfer(p, d, off, (uint8_t *)(uintptr_t)src, len, false);
}

int rmp_read(rmp_pool *p, void *dst, rmp_addr src, uint64_t len)
{
	struct rmp_data *d;
	uint64_t off;
	int rc;

	if (!p || !dst || len == 0)
		return p ? rmp_client_fail(p->c, -EINVAL, "rmp_read: %s", dst ? "zero length" : "NULL buffer") : -EINVAL;
	if ((rc = data_of(p, &d)) != 0 || (rc = range_check(p, d, src, dst, len, "rmp_read", &off)) != 0)
		return rc;
	return transfer(p, d, off, dst, len, true);
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
