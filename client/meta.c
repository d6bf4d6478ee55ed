/*
 * meta.c - read a pool's allocator metadata region over RDMA and check it.
 *
 * rmp_pool_check (public: what `rmpool pool check` runs) over
 * rmp_meta_check (the internal report), and rmp_meta_try_connect for the
 * provisioning test's forged-token probe. The check: connect with
 * rdma_cm to the coordinator endpoint of the segment table, carrying a
 * METADATA token (auth.h) for this pool and this client's session id;
 * register a local buffer; RDMA-READ the whole region into it in pieces
 * of at most READ_PIECE bytes (posted together: one round trip per
 * max_inflight pieces); then classify and walk it.
 *
 * Several RDMA READs are not atomic together, so a check reads
 * snapshots as the resolver does (rmp_buddy_snapshot): the consumers'
 * slot array, the region, the slot array again. Every operation of a
 * context with records changes its slot (seq at its start, op at its
 * end), so when both slot reads agree and no slot is busy nothing
 * changed the region while it was read. Otherwise it reads again, up to
 * RMP_CHECK_TRIES times CHECK_PAUSE_MS apart, until a snapshot is quiet
 * or two agree word for word (a dead consumer's busy slot changes
 * nothing: its image is exact too). Corrupt is said only of an image
 * two reads agree on (the coordinator's retire writes without a busy
 * slot: a quiet snapshot may still be torn by it). The last image is classified by
 * the engine (rmp_buddy_classify: valid, lagging, corrupt), and walked
 * by its exact invariant checker (rmp_buddy_check) on a read-only word
 * store over the buffer (loads are copies, CAS/FAA are refused with
 * -EROFS): an image the walker fails is never called valid. A pool that
 * changed under every read is lagging, never corrupt: its image may be
 * torn.
 *
 * Words are copied as they are in the coordinator's memory, in its byte
 * order; consumers and coordinator share one (x86-64, little-endian).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/mman.h>
#include <time.h>

#include "buddy.h"
#include "client_internal.h"
#include "clock.h"
#include "store.h"

#ifdef RMPOOL_HAVE_RDMA
#include "rdma.h"
#endif

/* Tokens live long enough to connect under emulation, not much longer. */
#define TOKEN_TTL_MS 60000u
/* One RDMA READ's size: well under rxe's and most HCAs' max message size. */
#define READ_PIECE (1u << 20)
/* Between the snapshots of a check that was not quiet. */
#define CHECK_PAUSE_MS 20

/* ---- the read-only word store over a buffer ---- */

struct ro_store {
	struct rmp_store base;
	const uint64_t *words;
	uint64_t nwords;
};

static int ro_exec(struct rmp_store *s, struct rmp_wop *ops, unsigned n)
{
	struct ro_store *ro = (struct ro_store *)s;

	for (unsigned i = 0; i < n; i++) {
		struct rmp_wop *op = &ops[i];
		if (op->kind != RMP_WOP_LOAD)
			return -EROFS;
		if (op->idx > ro->nwords || op->nwords > ro->nwords - op->idx)
			return -EFAULT;
		memcpy(op->dst, ro->words + op->idx, (size_t)op->nwords * sizeof(uint64_t));
	}
	return 0;
}

static int ro_post(struct rmp_store *s, struct rmp_wop *ops, unsigned n)
{
	(void)s;
	(void)ops;
	return n ? -EROFS : 0;
}

static const struct rmp_store_ops ro_ops = { .exec = ro_exec, .post = ro_post };

/* src after the text in dst, cut to dst's cap bytes. */
static void text_append(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(dst), k = strlen(src);

	if (k > cap - 1 - n)
		k = cap - 1 - n;
	memcpy(dst + n, src, k);
	dst[n + k] = '\0';
}

int rmp_meta_check_image(const uint64_t *words, uint64_t nwords, struct rmp_meta_report *r)
{
	struct rmp_buddy_geom g;
	struct rmp_buddy_report br;
	struct rmp_buddy b;
	uint64_t usable = 0;
	int rc;

	r->bytes_read = nwords * sizeof(uint64_t);
	r->valid = false;
	if (nwords < RMP_BUDDY_HDR_WORDS) {
		snprintf(r->error, sizeof(r->error), "region of %llu words is shorter than the header",
			 (unsigned long long)nwords);
		return -EPROTO;
	}
	unsigned version = 0;
	if (rmp_buddy_header_version(words, &version) == -EPROTONOSUPPORT) {
		snprintf(r->error, sizeof(r->error),
			 "metadata of layout version %u; this build reads version %u", version,
			 RMP_BUDDY_VERSION);
		return -EPROTONOSUPPORT;
	}
	rc = rmp_buddy_geom_from_header(&g, words, &usable);
	if (rc) {
		snprintf(r->error, sizeof(r->error), "no buddy metadata header (wrong magic or geometry)");
		return -EPROTO;
	}
	if (g.total_words > nwords) {
		snprintf(r->error, sizeof(r->error), "header says %llu words, the region has %llu",
			 (unsigned long long)g.total_words, (unsigned long long)nwords);
		return -EPROTO;
	}
	r->max_order = g.max_order;
	r->min_order = g.min_order;
	r->usable = usable;

	struct ro_store ro = {
		.base = { .ops = &ro_ops, .chunk_words = 512, .direct = NULL },
		.words = words,
		.nwords = nwords,
	};
	rmp_buddy_init(&b, &g, &ro.base);
	struct rmp_buddy_class cls;
	rc = rmp_buddy_classify(&b, words, &cls);
	if (rc) {
		snprintf(r->error, sizeof(r->error), "classification failed: %s", rmp_strerror(rc));
		return rc;
	}
	/* The exact walker too: an image it fails is never called valid. */
	rc = rmp_buddy_check(&b, &br);
	if (rc && rc != -EUCLEAN) {
		snprintf(r->error, sizeof(r->error), "walk failed: %s", rmp_strerror(rc));
		return rc;
	}
	if (cls.state == RMP_BUDDY_STATE_VALID && rc == -EUCLEAN) {
		cls.state = RMP_BUDDY_STATE_CORRUPT;
		snprintf(cls.error, sizeof(cls.error), "%s", br.error);
	}
	_Static_assert(RMP_BUDDY_STATE_VALID == RMP_CHECK_VALID && RMP_BUDDY_STATE_LAGGING == RMP_CHECK_LAGGING &&
			       RMP_BUDDY_STATE_CORRUPT == RMP_CHECK_CORRUPT,
		       "the engine's states are the API's");
	r->state = cls.state;
	r->valid = cls.state == RMP_BUDDY_STATE_VALID;
	r->free_bytes = cls.free_bytes;
	r->alloc_bytes = cls.alloc_bytes;
	r->reserved_bytes = cls.reserved_bytes;
	r->busy_slots = cls.busy_slots;
	r->abandoned_slots = cls.abandoned_slots;
	r->drift_counts = cls.drift_counts;
	r->drift_total = cls.drift_total;
	r->moves = cls.moves;
	r->holes = cls.holes;
	r->hole_bytes = cls.hole_bytes;
	r->odd_tags = cls.odd_tags;
	r->untagged_tied = cls.untagged_tied;
	r->error[0] = '\0';
	if (cls.state != RMP_BUDDY_STATE_VALID)
		text_append(r->error, sizeof(r->error), cls.error);
	return 0;
}

#ifdef RMPOOL_HAVE_RDMA

static int connect_meta(rmp_pool *p, const void *pd, uint8_t len, unsigned timeout_ms,
			rmp_rdma_conn **conn)
{
	struct rmp_rdma_opts o = { .timeout_ms = (int)timeout_ms, .wait = RMP_RDMA_WAIT_ADAPTIVE };
	struct rmp_wire_region meta;
	struct rmp_wire_endpoint ep;
	uint64_t epoch;

	if (rmp_client_away(p->c))
		return rmp_client_fail_away(p->c, "metadata connect");
	rmp_pool_meta_get(p, &meta, &ep, &epoch);
	int rc = rmp_rdma_connect(ep.host, ep.port, pd, len, &o, conn);
	if (rc)
		rmp_client_fail(p->c, rc, "rdma_cm connect to %s:%u (pool %s metadata): %s", ep.host,
				(unsigned)ep.port, p->name, rmp_strerror(rc));
	return rc;
}

int rmp_meta_try_connect(rmp_pool *p, const void *pdata, uint8_t len, unsigned timeout_ms)
{
	rmp_rdma_conn *conn = NULL;
	int rc = connect_meta(p, pdata, len, timeout_ms, &conn);
	if (rc == 0)
		rmp_rdma_close(conn);
	return rc;
}

/* Where a check reads: the connection, the buffer registered for it
 * ([image][image][the first slot read]) and the region. */
struct meta_read {
	rmp_rdma_conn *conn;
	struct ibv_mr *mr;
	const struct rmp_wire_region *meta;
	uint8_t *slots;               /* the first slot read */
	uint64_t slot_off, slot_len;  /* the slot array in the region, bytes; 0: none */
};

/* len bytes at offset off of the region into local (in the registered
 * buffer), in pieces of at most READ_PIECE posted together. */
static int read_span(const struct meta_read *m, uint64_t off, uint64_t len, uint8_t *local)
{
	uint64_t npieces = (len + READ_PIECE - 1) / READ_PIECE;
	struct rmp_rdma_op *ops = calloc(npieces, sizeof(*ops));

	if (!ops)
		return -ENOMEM;
	for (uint64_t i = 0; i < npieces; i++) {
		uint64_t o = i * READ_PIECE, n = len - o < READ_PIECE ? len - o : READ_PIECE;
		ops[i] = (struct rmp_rdma_op){
			.kind = RMP_RDMA_READ,
			.local = local + o,
			.lkey = m->mr->lkey,
			.len = (uint32_t)n,
			.raddr = m->meta->addr + off + o,
			.rkey = m->meta->rkey,
		};
	}
	int rc = rmp_rdma_exec(m->conn, ops, (unsigned)npieces);
	free(ops);
	return rc;
}

/* One snapshot into img: the slots, the region, the slots again (into
 * the image's own slot words), each read waited for before the next is
 * sent, so that the region read lies between the two slot reads (as
 * rmp_buddy_snapshot). *stable: both slot reads agree (no operation of a
 * context with records began or ended meanwhile). */
static int snapshot(const struct meta_read *m, uint8_t *img, bool *stable)
{
	int rc;

	*stable = true;
	if (m->slot_len && (rc = read_span(m, m->slot_off, m->slot_len, m->slots)) != 0)
		return rc;
	if ((rc = read_span(m, 0, m->meta->len, img)) != 0)
		return rc;
	if (m->slot_len && (rc = read_span(m, m->slot_off, m->slot_len, img + m->slot_off)) != 0)
		return rc;
	*stable = !m->slot_len || memcmp(m->slots, img + m->slot_off, m->slot_len) == 0;
	return 0;
}

/* Where the slot array is, from the header (already read into img):
 * none when the header does not hold together (the image check says
 * why). */
static void find_slots(struct meta_read *m, const uint8_t *img)
{
	struct rmp_buddy_geom g;
	uint64_t usable;

	m->slot_off = m->slot_len = 0;
	if (rmp_buddy_geom_from_header(&g, (const uint64_t *)img, &usable) != 0 ||
	    g.total_words > m->meta->len / sizeof(uint64_t) || g.slots == 0)
		return;
	m->slot_off = g.slot_word * sizeof(uint64_t);
	m->slot_len = 2ull * g.slots * sizeof(uint64_t);
}

/* Snapshots until one is quiet (the slots agree and none is busy: no
 * operation changed the region while it was read) and not corrupt, or
 * two in a row agree word for word (nothing changed between them, so
 * what they show is exact: a dead consumer's busy slot, or corruption),
 * at most RMP_CHECK_TRIES, CHECK_PAUSE_MS apart. A pool that changed
 * under every read is lagging: what its last image showed may be torn. */
static int read_until_quiet(rmp_pool *p, const struct meta_read *m, uint8_t *img[2], struct rmp_meta_report *r)
{
	uint64_t nwords = m->meta->len / sizeof(uint64_t);
	bool done = false;
	int rc = 0;

	for (unsigned k = 0; k < RMP_CHECK_TRIES && !done; k++) {
		uint8_t *cur = img[k & 1], *prev = img[(k & 1) ^ 1];
		bool stable;
		if (k)
			nanosleep(&(struct timespec){ .tv_nsec = CHECK_PAUSE_MS * 1000000L }, NULL);
		if ((rc = snapshot(m, cur, &stable)) != 0) {
			rmp_client_fail(p->c, rc, "RDMA READ of the metadata region (%llu bytes): %s",
					(unsigned long long)m->meta->len, rmp_strerror(rc));
			snprintf(r->error, sizeof(r->error), "%s", rmp_last_error(p->c));
			return rc;
		}
		r->tries = k + 1;
		if ((rc = rmp_meta_check_image((const uint64_t *)cur, nwords, r)) != 0)
			return rmp_client_fail(p->c, rc, "metadata of pool %s: %s", p->name, r->error);
		bool agreed = stable && k > 0 && memcmp(cur, prev, m->meta->len) == 0;
		done = agreed || (stable && r->busy_slots == 0 && r->state != RMP_CHECK_CORRUPT);
	}
	if (!done) {
		char seen[sizeof(r->error)];
		snprintf(seen, sizeof(seen), "%s", r->error);
		r->state = RMP_CHECK_LAGGING;
		r->valid = false;
		snprintf(r->error, sizeof(r->error), "the pool changed during each of %u reads (operations in flight)",
			 r->tries);
		if (seen[0]) {
			text_append(r->error, sizeof(r->error), "; the last showed: ");
			text_append(r->error, sizeof(r->error), seen);
		}
	}
	return 0;
}

int rmp_meta_check(rmp_pool *p, unsigned timeout_ms, struct rmp_meta_report *r)
{
	struct rmp_wire_region meta_now;
	struct rmp_wire_endpoint ep_now;
	uint64_t epoch;
	rmp_pool_meta_get(p, &meta_now, &ep_now, &epoch);
	const struct rmp_wire_region *meta = &meta_now;
	uint8_t token[RMP_AUTH_TOKEN_LEN];
	struct meta_read m = { .meta = meta };
	uint64_t t0 = rmp_mono_ms(), slots_max;
	uint8_t *buf;
	int rc;

	memset(r, 0, sizeof(*r));
	if (meta->len == 0 || meta->len % sizeof(uint64_t) || meta->len > (1ull << 40)) {
		snprintf(r->error, sizeof(r->error), "segment table gives a metadata region of %llu bytes",
			 (unsigned long long)meta->len);
		return rmp_client_fail(p->c, -EPROTO, "%s", r->error);
	}
	struct rmp_wire_token t = {
		.kind = RMP_TOKEN_METADATA,
		.target_id = p->pool_id,
		.client_id = p->c->session_id,
		.expires_ms = rmp_wall_ms() + TOKEN_TTL_MS,
		.generation = (uint16_t)atomic_load_explicit(&p->c->generation, memory_order_acquire),
	};
	rc = rmp_auth_token_make(rmp_client_key(p->c), &t, token);
	if (rc)
		return rmp_client_fail(p->c, rc, "cannot make a metadata token: %s", rmp_strerror(rc));
	rc = connect_meta(p, token, sizeof(token), timeout_ms, &m.conn);
	if (rc) {
		snprintf(r->error, sizeof(r->error), "%s", rmp_last_error(p->c));
		return rc;
	}
	/* Two images (this read and the one before) and the first slot
	 * read, which is at most the whole slot array. mmap: page-aligned,
	 * zeroed, and returned to the kernel at once. */
	slots_max = 2ull * RMP_BUDDY_MAX_SLOTS * sizeof(uint64_t);
	if (slots_max > meta->len)
		slots_max = meta->len;
	size_t buf_len = 2 * meta->len + slots_max;
	buf = mmap(NULL, buf_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		rc = rmp_client_fail(p->c, -ENOMEM, "cannot map %llu bytes for the metadata",
				     (unsigned long long)buf_len);
		goto out_close;
	}
	m.mr = ibv_reg_mr(rmp_rdma_conn_pd(m.conn), buf, buf_len, IBV_ACCESS_LOCAL_WRITE);
	if (!m.mr) {
		rc = rmp_client_fail(p->c, -errno, "ibv_reg_mr(%llu bytes): %s", (unsigned long long)buf_len,
				     rmp_strerror(errno));
		goto out_unmap;
	}
	uint8_t *img[2] = { buf, buf + meta->len };
	m.slots = buf + 2 * meta->len;
	rc = read_span(&m, 0, meta->len < 64 ? meta->len : 64, img[0]); /* the header: where the slots are */
	if (rc) {
		rmp_client_fail(p->c, rc, "RDMA READ of the metadata header: %s", rmp_strerror(rc));
		snprintf(r->error, sizeof(r->error), "%s", rmp_last_error(p->c));
		goto out_dereg_mr;
	}
	find_slots(&m, img[0]);
	if (m.slot_len > slots_max)
		m.slot_len = 0; /* cannot be: the header's geometry was checked */
	rc = read_until_quiet(p, &m, img, r);
	r->read_ms = rmp_mono_ms() - t0;

out_dereg_mr:
	ibv_dereg_mr(m.mr);
out_unmap:
	munmap(buf, buf_len);
out_close:
	rmp_rdma_close(m.conn);
	return rc;
}

#else /* !RMPOOL_HAVE_RDMA */

int rmp_meta_try_connect(rmp_pool *p, const void *pdata, uint8_t len, unsigned timeout_ms)
{
	(void)pdata;
	(void)len;
	(void)timeout_ms;
	return rmp_client_fail(p->c, -ENOSYS, "built without the rdma module");
}

int rmp_meta_check(rmp_pool *p, unsigned timeout_ms, struct rmp_meta_report *r)
{
	(void)timeout_ms;
	memset(r, 0, sizeof(*r));
	snprintf(r->error, sizeof(r->error), "built without the rdma module");
	return rmp_client_fail(p->c, -ENOSYS, "built without the rdma module");
}

#endif

/* The least report a caller may pass: this call's first version. When a
 * field is added at the end, this stays where it is (the end of error). */
#define CHECK_REPORT_V1_SIZE \
	(offsetof(struct rmp_pool_check_report, error) + sizeof(((struct rmp_pool_check_report *)0)->error))

/* The public face of rmp_meta_check: a report the caller sized. */
int rmp_pool_check(rmp_pool *p, unsigned timeout_ms, struct rmp_pool_check_report *r)
{
	struct rmp_meta_report m;
	struct rmp_pool_check_report full;

	if (!p || !r || r->size < CHECK_REPORT_V1_SIZE)
		return rmp_client_fail(p ? p->c : NULL, -EINVAL, "rmp_pool_check: %s",
				       !p ? "NULL pool" : !r ? "NULL report" : "report size below the first version's");
	size_t n = r->size < sizeof(full) ? r->size : sizeof(full);
	if (timeout_ms == 0)
		timeout_ms = p->c->opts.rdma_timeout_ms ? p->c->opts.rdma_timeout_ms : 10000;
	int rc = rmp_meta_check(p, timeout_ms, &m);
	full = (struct rmp_pool_check_report){
		.size = n, .bytes_read = m.bytes_read, .max_order = m.max_order, .min_order = m.min_order,
		.usable = m.usable, .free_bytes = m.free_bytes, .alloc_bytes = m.alloc_bytes,
		.reserved_bytes = m.reserved_bytes, .read_ms = m.read_ms, .valid = m.valid,
		.state = (int)m.state, .tries = m.tries, .busy_slots = m.busy_slots,
		.abandoned_slots = m.abandoned_slots, .drift_counts = m.drift_counts, .drift_total = m.drift_total,
		.moves = m.moves, .holes = m.holes, .hole_bytes = m.hole_bytes, .odd_tags = m.odd_tags,
		.untagged_busy = m.untagged_tied,
	};
	_Static_assert(sizeof(full.error) == sizeof(m.error), "the report's error text has the walk's size");
	memcpy(full.error, m.error, sizeof(full.error));
	memcpy(r, &full, n);
	return rc;
}
