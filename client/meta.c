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
 * max_inflight pieces); then walk it.
 *
 * The walk is the buddy engine's own invariant checker (rmp_buddy_check)
 * on a read-only word store over the buffer: loads are copies out of the
 * buffer, and CAS/FAA are refused with -EROFS (a check never changes
 * anything, and this copy is no place to change anything anyway).
 *
 * The snapshot is consistent only when no allocation is in flight:
 * several RDMA READs are not atomic together. The check reports what it
 * saw; on a busy pool a violation can be a torn read, so it says so.
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
	rc = rmp_buddy_check(&b, &br);
	r->free_bytes = br.free_bytes;
	r->alloc_bytes = br.alloc_bytes;
	r->reserved_bytes = br.reserved_bytes;
	if (rc == -EUCLEAN) {
		snprintf(r->error, sizeof(r->error), "%s", br.error);
		return 0;
	}
	if (rc) {
		snprintf(r->error, sizeof(r->error), "walk failed: %s", rmp_strerror(rc));
		return rc;
	}
	r->valid = true;
	r->error[0] = '\0';
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

int rmp_meta_check(rmp_pool *p, unsigned timeout_ms, struct rmp_meta_report *r)
{
	struct rmp_wire_region meta_now;
	struct rmp_wire_endpoint ep_now;
	uint64_t epoch;
	rmp_pool_meta_get(p, &meta_now, &ep_now, &epoch);
	const struct rmp_wire_region *meta = &meta_now;
	uint8_t token[RMP_AUTH_TOKEN_LEN];
	rmp_rdma_conn *conn = NULL;
	struct ibv_mr *mr;
	uint64_t t0 = rmp_mono_ms();
	void *buf;
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
	rc = connect_meta(p, token, sizeof(token), timeout_ms, &conn);
	if (rc) {
		snprintf(r->error, sizeof(r->error), "%s", rmp_last_error(p->c));
		return rc;
	}
	/* mmap: page-aligned, zeroed, and returned to the kernel at once. */
	buf = mmap(NULL, meta->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		rc = rmp_client_fail(p->c, -ENOMEM, "cannot map %llu bytes for the metadata",
				     (unsigned long long)meta->len);
		goto out_close;
	}
	mr = ibv_reg_mr(rmp_rdma_conn_pd(conn), buf, meta->len, IBV_ACCESS_LOCAL_WRITE);
	if (!mr) {
		rc = rmp_client_fail(p->c, -errno, "ibv_reg_mr(%llu bytes): %s",
				     (unsigned long long)meta->len, rmp_strerror(errno));
		goto out_unmap;
	}
	uint64_t npieces = (meta->len + READ_PIECE - 1) / READ_PIECE;
	struct rmp_rdma_op *ops = calloc(npieces, sizeof(*ops));
	if (!ops) {
		rc = rmp_client_fail(p->c, -ENOMEM, "out of memory");
		goto out_dereg_mr;
	}
	for (uint64_t i = 0; i < npieces; i++) {
		uint64_t off = i * READ_PIECE;
		uint64_t len = meta->len - off < READ_PIECE ? meta->len - off : READ_PIECE;
		ops[i] = (struct rmp_rdma_op){
			.kind = RMP_RDMA_READ,
			.local = (uint8_t *)buf + off,
			.lkey = mr->lkey,
			.len = (uint32_t)len,
			.raddr = meta->addr + off,
			.rkey = meta->rkey,
		};
	}
	rc = rmp_rdma_exec(conn, ops, (unsigned)npieces);
	free(ops);
	if (rc) {
		rmp_client_fail(p->c, rc, "RDMA READ of the metadata region (%llu bytes): %s",
				(unsigned long long)meta->len, rmp_strerror(rc));
		snprintf(r->error, sizeof(r->error), "%s", rmp_last_error(p->c));
		goto out_dereg_mr;
	}
	r->read_ms = rmp_mono_ms() - t0;
	uint64_t read_ms = r->read_ms;
	rc = rmp_meta_check_image(buf, meta->len / sizeof(uint64_t), r);
	r->read_ms = read_ms;
	if (rc)
		rmp_client_fail(p->c, rc, "metadata of pool %s: %s", p->name, r->error);

out_dereg_mr:
	ibv_dereg_mr(mr);
out_unmap:
	munmap(buf, meta->len);
out_close:
	rmp_rdma_close(conn);
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
	};
	_Static_assert(sizeof(full.error) == sizeof(m.error), "the report's error text has the walk's size");
	memcpy(full.error, m.error, sizeof(full.error));
	memcpy(r, &full, n);
	return rc;
}
