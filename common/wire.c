/* wire.c - encode and decode the control protocol (TCP; DESIGN.md, Wire
 * protocol).
 *
 * Message sequence (every connection starts with the handshake; see
 * auth.c for what the proofs are):
 *
 *   peer (client, donor or agent)             coordinator
 *   HELLO {role, nonce_c, ident}        --->
 *                                       <---  CHALLENGE {nonce_s, proof_s}
 *     the peer checks proof_s and hangs up on a coordinator that does
 *     not hold the secret
 *   AUTH_PROOF {proof_c}                --->
 *                                       <---  AUTH_OK {session_id, generation}
 *                                             or ERROR, then close
 *   consumer (librmpool, rmpool CLI):
 *   POOL_OPEN {name, capacity}          --->  provisions donors (below)
 *                                       <---  POOL_READY {pool, lease, slot_base, segtab}
 *   LEASE_RENEW {lease}                 --->
 *                                       <---  LEASE_GRANT {lease, ttl}
 *                                       <---  LEASE_EXPIRED (renewed too late)
 *                                       <---  POOL_HOLD {lease, pool, ms}
 *                                             (a reclaim wants a quiet moment)
 *   SEGTAB_FETCH {pool, have_version}   --->
 *                                       <---  SEGTAB {pool, segtab}
 *                                       <---  SEGTAB_PUSH {pool, note, segtab}
 *                                             (unasked: a donor was lost)
 *   POOL_CLOSE {pool, lease}            --->
 *   POOL_DESTROY {name}                 --->
 *   POOL_FORGET {name}                  --->  (a pool whose donors are gone)
 *                                       <---  ACK {ref_type}
 *   STATUS_REQUEST                      --->
 *                                       <---  STATUS_REPLY {pools, hosts}
 *   host agent:
 *   AGENT_REGISTER {host, budget, ...}  --->
 *                                       <---  AGENT_REGISTERED {agent_id}
 *                                       <---  SPAWN {request, pool, donor, len}
 *   PROGRESS {request, SPAWNED, pid}    --->
 *                                       <---  TERMINATE {request, donor}
 *   PROGRESS {request, EXITED}          --->
 *   donor process (own connection, own handshake):
 *   DONOR_REGISTER {region, endpoint}   --->  region hand-over
 *                                       <---  DONOR_ACCEPTED {base}
 *                                       <---  TERMINATE (pool destroyed)
 *                                       <---  CLIENT_CUT {pool, client}
 *   CLIENT_CUT_ACK {pool, donor, client} --->  (a lease expired: cut off)
 * Any request may instead be answered with ERROR {code, ref_type, text}.
 *
 * Frame: 8-byte header, then the payload.
 *   0  magic    2 bytes  'R' 'M'
 *   2  version  1 byte   RMP_WIRE_VERSION
 *   3  type     1 byte   enum rmp_wire_type
 *   4  length   4 bytes  payload bytes, big-endian
 * Payload fields are fixed-width big-endian integers, raw byte arrays of
 * fixed length, strings (u16 length + bytes, no NUL, no control bytes,
 * bounded per field) and arrays (u32 count, bounded per field, then the
 * elements). Nothing may follow the last field.
 *
 * Each message is described once, by a codec_*() function that walks its
 * fields through a struct codec which either writes them or reads them.
 * Encoding and decoding cannot drift apart, and the decoder accepts only
 * what the encoder produces (canonical: a string with a NUL or an enum
 * out of range is refused both ways), so decode-then-encode gives back
 * the same bytes, which the fuzz target checks.
 */
#include "wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct codec {
	bool decoding;
	const uint8_t *in; /* decoding: the payload */
	size_t in_len;
	uint8_t *out; /* encoding: the frame buffer, possibly NULL */
	size_t cap;
	size_t off; /* decoding: payload offset; encoding: frame offset */
	int rc;	    /* first failure; later fields are skipped */
	unsigned version; /* decoding: the frame's protocol version */
	const char *msg_name;
	struct rmp_wire_err *err;
};

/* ---- byte order: the only place in rmpool that knows about it ---- */

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* ---- the codec primitives ---- */

static void set_err(struct rmp_wire_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_err(struct rmp_wire_err *err, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
}

/* Records the first failure: -EBADMSG when reading, -EINVAL when writing
 * (the caller built a message the protocol cannot carry). */
static void cd_fail(struct codec *c, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void cd_fail(struct codec *c, const char *field, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	if (c->rc)
		return;
	c->rc = c->decoding ? -EBADMSG : -EINVAL;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	set_err(c->err, "%s: field '%s' at payload offset %zu: %s", c->msg_name, field,
		c->decoding ? c->off : c->off - RMP_WIRE_HDR_LEN, why);
}

/* Moves n bytes between the frame and p. */
static void cd_raw(struct codec *c, const char *field, void *p, size_t n)
{
	if (c->rc)
		return;
	if (c->decoding) {
		if (c->in_len - c->off < n) {
			cd_fail(c, field, "needs %zu bytes, %zu left", n, c->in_len - c->off);
			return;
		}
		memcpy(p, c->in + c->off, n);
	} else if (n > 0 && c->off <= c->cap && n <= c->cap - c->off) {
		memcpy(c->out + c->off, p, n);
	}
	/* When encoding past cap, off keeps counting: the caller learns the
	 * size it needs. */
	c->off += n;
}

static void cd_u8(struct codec *c, const char *field, uint8_t *v)
{
	cd_raw(c, field, v, 1);
}

static void cd_u16(struct codec *c, const char *field, uint16_t *v)
{
	uint8_t b[2];

	if (!c->decoding)
		put_be16(b, *v);
	cd_raw(c, field, b, sizeof(b));
	if (c->decoding && !c->rc)
		*v = get_be16(b);
}

static void cd_u32(struct codec *c, const char *field, uint32_t *v)
{
	uint8_t b[4];

	if (!c->decoding)
		put_be32(b, *v);
	cd_raw(c, field, b, sizeof(b));
	if (c->decoding && !c->rc)
		*v = get_be32(b);
}

static void cd_u64(struct codec *c, const char *field, uint64_t *v)
{
	uint8_t b[8];

	if (!c->decoding)
		put_be64(b, *v);
	cd_raw(c, field, b, sizeof(b));
	if (c->decoding && !c->rc)
		*v = get_be64(b);
}

static void cd_u8_in(struct codec *c, const char *field, uint8_t *v, unsigned lo, unsigned hi)
{
	cd_u8(c, field, v);
	if (!c->rc && (*v < lo || *v > hi))
		cd_fail(c, field, "value %u is out of range [%u, %u]", *v, lo, hi);
}

/* Sizes that must be powers of two (or 0 where zero_ok: "the default"). */
static void cd_pow2(struct codec *c, const char *field, uint64_t *v, bool zero_ok)
{
	cd_u64(c, field, v);
	if (c->rc)
		return;
	if (*v == 0 ? !zero_ok : (*v & (*v - 1)) != 0)
		cd_fail(c, field, "%llu is not a power of two", (unsigned long long)*v);
}

/* u16 length, then the bytes. Control bytes are refused so that a name
 * can go into a log line as it is, and NUL because it would cut the
 * C string short (and break the round trip). */
static void cd_str(struct codec *c, const char *field, char *s, size_t min, size_t max)
{
	uint16_t n = 0;

	if (!c->decoding) {
		size_t len = strnlen(s, max + 1);
		if (len > max) {
			cd_fail(c, field, "string longer than %zu bytes", max);
			return;
		}
		n = (uint16_t)len;
	}
	cd_u16(c, field, &n);
	if (c->rc)
		return;
	if (n < min || n > max) {
		cd_fail(c, field, "string length %u is out of range [%zu, %zu]", n, min, max);
		return;
	}
	cd_raw(c, field, s, n);
	if (c->rc)
		return;
	if (c->decoding)
		s[n] = '\0';
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == 0x7f) {
			cd_fail(c, field, "control byte 0x%02x at index %zu", ch, i);
			return;
		}
	}
}

/* u32 count, checked against its maximum and, when reading, against the
 * bytes left, before anything is allocated: a 20-byte frame cannot make
 * us allocate for 32768 segments. */
static void cd_count(struct codec *c, const char *field, uint32_t *n, uint32_t max,
		     size_t min_elem_len)
{
	cd_u32(c, field, n);
	if (c->rc)
		return;
	if (*n > max) {
		cd_fail(c, field, "count %u exceeds the maximum %u", *n, max);
		return;
	}
	if (c->decoding && *n > (c->in_len - c->off) / min_elem_len)
		cd_fail(c, field, "count %u needs at least %zu bytes, %zu left", *n,
			(size_t)*n * min_elem_len, c->in_len - c->off);
}

/* When reading, allocates the array the count announced. */
static void cd_array(struct codec *c, const char *field, void **arr, uint32_t n, size_t elem)
{
	if (c->rc)
		return;
	if (!c->decoding) {
		if (n > 0 && !*arr)
			cd_fail(c, field, "count %u but no array", n);
		return;
	}
	*arr = NULL;
	if (n == 0)
		return;
	*arr = calloc(n, elem);
	if (!*arr) {
		c->rc = -ENOMEM;
		set_err(c->err, "%s: field '%s': cannot allocate %u entries", c->msg_name, field, n);
	}
}

/* ---- shared structures ---- */

/* An address a peer will connect to: a host and a nonzero port. */
static void cd_endpoint(struct codec *c, const char *field, struct rmp_wire_endpoint *e)
{
	cd_str(c, field, e->host, 1, RMP_WIRE_HOST_MAX);
	cd_u16(c, field, &e->port);
	if (!c->rc && e->port == 0)
		cd_fail(c, field, "port 0");
}
#define ENDPOINT_MIN_LEN (2 + 1 + 2)

static void cd_region(struct codec *c, const char *field, struct rmp_wire_region *r)
{
	cd_u64(c, field, &r->addr);
	cd_u64(c, field, &r->len);
	cd_u32(c, field, &r->rkey);
}

static void cd_segtab(struct codec *c, struct rmp_wire_segtab *t)
{
	cd_u64(c, "version", &t->version);
	cd_u64(c, "capacity", &t->capacity);
	cd_u8(c, "space_log2", &t->space_log2);
	cd_u8(c, "min_block_log2", &t->min_block_log2);
	cd_u8(c, "segment_log2", &t->segment_log2);
	if (c->rc)
		return;
	/* DESIGN.md, The global address space: m <= s <= M; offsets are
	 * 58-bit handles (rmp_addr), but a 2^63 bound is what keeps the
	 * shifts below defined. */
	if (t->space_log2 > 63 || t->segment_log2 > t->space_log2 ||
	    t->min_block_log2 > t->segment_log2) {
		cd_fail(c, "segment_log2", "geometry m=%u s=%u M=%u violates m <= s <= M <= 63",
			t->min_block_log2, t->segment_log2, t->space_log2);
		return;
	}
	if (t->capacity > (UINT64_C(1) << t->space_log2)) {
		cd_fail(c, "capacity", "%llu exceeds the space 2^%u",
			(unsigned long long)t->capacity, t->space_log2);
		return;
	}
	cd_region(c, "meta", &t->meta);
	cd_endpoint(c, "coordinator", &t->coordinator);

	/* Version 1 (a recorded table) had no state byte: all serving. */
	bool v1 = c->decoding && c->version == 1;
	cd_count(c, "n_donors", &t->n_donors, RMP_WIRE_MAX_DONORS, 4 + ENDPOINT_MIN_LEN + !v1);
	cd_array(c, "donors", (void **)&t->donors, t->n_donors, sizeof(*t->donors));
	for (uint32_t i = 0; i < t->n_donors && !c->rc; i++) {
		cd_u32(c, "donors.id", &t->donors[i].donor_id);
		cd_endpoint(c, "donors.endpoint", &t->donors[i].endpoint);
		if (!v1)
			cd_u8_in(c, "donors.state", &t->donors[i].state, RMP_DONOR_SERVING,
				 RMP_DONOR_LOST);
	}

	cd_count(c, "n_segments", &t->n_segments, RMP_WIRE_MAX_SEGMENTS, 16);
	if (c->rc)
		return;
	uint64_t want = UINT64_C(1) << (t->space_log2 - t->segment_log2);
	if (t->n_segments != want) {
		cd_fail(c, "n_segments", "count %u, but the geometry has 2^(%u-%u) = %llu",
			t->n_segments, t->space_log2, t->segment_log2, (unsigned long long)want);
		return;
	}
	cd_array(c, "segments", (void **)&t->segments, t->n_segments, sizeof(*t->segments));
	for (uint32_t i = 0; i < t->n_segments && !c->rc; i++) {
		cd_u32(c, "segments.donor", &t->segments[i].donor_id);
		cd_u32(c, "segments.rkey", &t->segments[i].rkey);
		cd_u64(c, "segments.addr", &t->segments[i].addr);
	}
}

/* ---- one function per message: the field list, in wire order ---- */

static void codec_hello(struct codec *c, struct rmp_wire_msg *m)
{
	struct rmp_wire_hello *h = &m->u.hello;
	cd_u8_in(c, "role", &h->role, RMP_ROLE_CLIENT, RMP_ROLE_AGENT);
	cd_raw(c, "nonce", h->nonce, sizeof(h->nonce));
	cd_str(c, "ident", h->ident, 0, RMP_WIRE_IDENT_MAX);
}

static void codec_challenge(struct codec *c, struct rmp_wire_msg *m)
{
	cd_raw(c, "nonce", m->u.challenge.nonce, sizeof(m->u.challenge.nonce));
	cd_raw(c, "proof", m->u.challenge.proof, sizeof(m->u.challenge.proof));
}

static void codec_auth_proof(struct codec *c, struct rmp_wire_msg *m)
{
	cd_raw(c, "proof", m->u.auth_proof.proof, sizeof(m->u.auth_proof.proof));
}

static void codec_auth_ok(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u64(c, "session_id", &m->u.auth_ok.session_id);
	cd_u64(c, "generation", &m->u.auth_ok.generation);
}

static void codec_error(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u32(c, "code", &m->u.error.code);
	cd_u8(c, "ref_type", &m->u.error.ref_type);
	cd_str(c, "text", m->u.error.text, 0, RMP_WIRE_TEXT_MAX);
}

static void codec_ack(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u8(c, "ref_type", &m->u.ack.ref_type);
}

static void codec_agent_register(struct codec *c, struct rmp_wire_msg *m)
{
	struct rmp_wire_agent_register *a = &m->u.agent_register;
	cd_str(c, "host", a->host, 1, RMP_WIRE_HOST_MAX);
	cd_u64(c, "budget", &a->budget);
	cd_u64(c, "process_limit", &a->process_limit);
	cd_u64(c, "donor_footprint", &a->donor_footprint);
}

static void codec_agent_registered(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u32(c, "agent_id", &m->u.agent_registered.agent_id);
}

static void codec_spawn(struct codec *c, struct rmp_wire_msg *m)
{
	struct rmp_wire_spawn *s = &m->u.spawn;
	cd_u64(c, "request_id", &s->request_id);
	cd_u32(c, "pool_id", &s->pool_id);
	cd_u32(c, "donor_id", &s->donor_id);
	cd_u64(c, "region_len", &s->region_len);
	cd_pow2(c, "segment_size", &s->segment_size, false);
}

static void codec_terminate(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u64(c, "request_id", &m->u.terminate.request_id);
	cd_u32(c, "donor_id", &m->u.terminate.donor_id);
}

static void codec_progress(struct codec *c, struct rmp_wire_msg *m)
{
	struct rmp_wire_progress *p = &m->u.progress;
	cd_u64(c, "request_id", &p->request_id);
	cd_u32(c, "donor_id", &p->donor_id);
	cd_u8_in(c, "state", &p->state, RMP_PROGRESS_SPAWNED, RMP_PROGRESS_EXITED);
	cd_u32(c, "pid", &p->pid);
	cd_u32(c, "error", &p->error);
	cd_str(c, "text", p->text, 0, RMP_WIRE_TEXT_MAX);
}

static void codec_donor_register(struct codec *c, struct rmp_wire_msg *m)
{
	struct rmp_wire_donor_register *d = &m->u.donor_register;
	cd_u32(c, "donor_id", &d->donor_id);
	cd_u32(c, "pool_id", &d->pool_id);
	cd_u32(c, "pid", &d->pid);
	cd_region(c, "region", &d->region);
	cd_endpoint(c, "endpoint", &d->endpoint);
}

static void codec_donor_accepted(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u32(c, "donor_id", &m->u.donor_accepted.donor_id);
	cd_u32(c, "pool_id", &m->u.donor_accepted.pool_id);
	cd_u64(c, "base", &m->u.donor_accepted.base);
}

static void codec_pool_open(struct codec *c, struct rmp_wire_msg *m)
{
	struct rmp_wire_pool_open *o = &m->u.pool_open;
	cd_str(c, "name", o->name, 1, RMP_WIRE_NAME_MAX);
	cd_u64(c, "capacity", &o->capacity);
	cd_pow2(c, "min_block", &o->min_block, true);
}

static void codec_pool_ready(struct codec *c, struct rmp_wire_msg *m)
{
	struct rmp_wire_pool_ready *r = &m->u.pool_ready;
	cd_u32(c, "pool_id", &r->pool_id);
	cd_u64(c, "lease_id", &r->lease_id);
	cd_u32(c, "lease_ms", &r->lease_ms);
	cd_u32(c, "slot_base", &r->slot_base);
	cd_segtab(c, &r->segtab);
}

static void codec_segtab_fetch(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u32(c, "pool_id", &m->u.segtab_fetch.pool_id);
	cd_u64(c, "have_version", &m->u.segtab_fetch.have_version);
}

static void codec_segtab(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u32(c, "pool_id", &m->u.segtab.pool_id);
	cd_segtab(c, &m->u.segtab.segtab);
}

static void codec_segtab_push(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u32(c, "pool_id", &m->u.segtab_push.pool_id);
	cd_str(c, "note", m->u.segtab_push.note, 0, RMP_WIRE_TEXT_MAX);
	cd_segtab(c, &m->u.segtab_push.segtab);
}

static void codec_pool_close(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u32(c, "pool_id", &m->u.pool_close.pool_id);
	cd_u64(c, "lease_id", &m->u.pool_close.lease_id);
}

static void codec_pool_destroy(struct codec *c, struct rmp_wire_msg *m)
{
	cd_str(c, "name", m->u.pool_destroy.name, 1, RMP_WIRE_NAME_MAX);
}

static void codec_pool_forget(struct codec *c, struct rmp_wire_msg *m)
{
	cd_str(c, "name", m->u.pool_forget.name, 1, RMP_WIRE_NAME_MAX);
}

static void codec_lease_renew(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u64(c, "lease_id", &m->u.lease_renew.lease_id);
}

static void codec_lease_grant(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u64(c, "lease_id", &m->u.lease_grant.lease_id);
	cd_u32(c, "ttl_ms", &m->u.lease_grant.ttl_ms);
}

static void codec_lease_expired(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u64(c, "lease_id", &m->u.lease_expired.lease_id);
	cd_u32(c, "pool_id", &m->u.lease_expired.pool_id);
}

static void codec_pool_hold(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u64(c, "lease_id", &m->u.pool_hold.lease_id);
	cd_u32(c, "pool_id", &m->u.pool_hold.pool_id);
	cd_u32(c, "hold_ms", &m->u.pool_hold.hold_ms);
	if (!c->rc && (m->u.pool_hold.hold_ms == 0 || m->u.pool_hold.hold_ms > RMP_WIRE_HOLD_MAX_MS))
		cd_fail(c, "hold_ms", "value %u is out of range [1, %u]", m->u.pool_hold.hold_ms, RMP_WIRE_HOLD_MAX_MS);
}

static void codec_client_cut(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u32(c, "pool_id", &m->u.client_cut.pool_id);
	cd_u64(c, "client_id", &m->u.client_cut.client_id);
}

static void codec_client_cut_ack(struct codec *c, struct rmp_wire_msg *m)
{
	cd_u32(c, "pool_id", &m->u.client_cut_ack.pool_id);
	cd_u32(c, "donor_id", &m->u.client_cut_ack.donor_id);
	cd_u64(c, "client_id", &m->u.client_cut_ack.client_id);
	cd_u32(c, "dropped", &m->u.client_cut_ack.dropped);
}

static void codec_status_request(struct codec *c, struct rmp_wire_msg *m)
{
	(void)c;
	(void)m;
}

static void codec_status_reply(struct codec *c, struct rmp_wire_msg *m)
{
	struct rmp_wire_status_reply *s = &m->u.status;
	cd_u64(c, "uptime_ms", &s->uptime_ms);
	cd_u64(c, "capacity", &s->capacity);
	cd_u64(c, "free_bytes", &s->free_bytes);
	cd_u32(c, "clients", &s->clients);

	cd_count(c, "n_pools", &s->n_pools, RMP_WIRE_MAX_POOLS,
		 2 + 1 + 4 + 3 * 8 + 2 * 4 + 8 + 1 + 2 * 4 + 8 + 2);
	cd_array(c, "pools", (void **)&s->pools, s->n_pools, sizeof(*s->pools));
	for (uint32_t i = 0; i < s->n_pools && !c->rc; i++) {
		struct rmp_wire_pool_status *p = &s->pools[i];
		cd_str(c, "pools.name", p->name, 1, RMP_WIRE_NAME_MAX);
		cd_u32(c, "pools.pool_id", &p->pool_id);
		cd_u64(c, "pools.capacity", &p->capacity);
		cd_u64(c, "pools.space", &p->space);
		cd_u64(c, "pools.free_bytes", &p->free_bytes);
		cd_u32(c, "pools.clients", &p->clients);
		cd_u32(c, "pools.donors", &p->donors);
		cd_u64(c, "pools.segtab_version", &p->segtab_version);
		cd_u8_in(c, "pools.state", &p->state, RMP_POOL_CREATING, RMP_POOL_DEGRADED);
		cd_u32(c, "pools.donors_away", &p->donors_away);
		cd_u32(c, "pools.donors_lost", &p->donors_lost);
		cd_u64(c, "pools.lost_bytes", &p->lost_bytes);
		cd_str(c, "pools.note", p->note, 0, RMP_WIRE_TEXT_MAX);
	}

	cd_count(c, "n_hosts", &s->n_hosts, RMP_WIRE_MAX_HOSTS, 2 + 1 + 4 + 2 * 8);
	cd_array(c, "hosts", (void **)&s->hosts, s->n_hosts, sizeof(*s->hosts));
	for (uint32_t i = 0; i < s->n_hosts && !c->rc; i++) {
		struct rmp_wire_host_status *h = &s->hosts[i];
		cd_str(c, "hosts.host", h->host, 1, RMP_WIRE_HOST_MAX);
		cd_u32(c, "hosts.donors", &h->donors);
		cd_u64(c, "hosts.budget", &h->budget);
		cd_u64(c, "hosts.used", &h->used);
	}
	cd_u64(c, "generation", &s->generation);
}

struct msg_desc {
	const char *name;
	bool preauth;
	void (*codec)(struct codec *c, struct rmp_wire_msg *m);
};

/* Indexed by type byte; a NULL name is a type this version does not know. */
static const struct msg_desc msg_table[256] = {
	[RMP_MSG_HELLO] = {"HELLO", true, codec_hello},
	[RMP_MSG_CHALLENGE] = {"CHALLENGE", true, codec_challenge},
	[RMP_MSG_AUTH_PROOF] = {"AUTH_PROOF", true, codec_auth_proof},
	[RMP_MSG_AUTH_OK] = {"AUTH_OK", true, codec_auth_ok},
	/* so that a refused handshake can say why before the close */
	[RMP_MSG_ERROR] = {"ERROR", true, codec_error},
	[RMP_MSG_ACK] = {"ACK", false, codec_ack},
	[RMP_MSG_AGENT_REGISTER] = {"AGENT_REGISTER", false, codec_agent_register},
	[RMP_MSG_AGENT_REGISTERED] = {"AGENT_REGISTERED", false, codec_agent_registered},
	[RMP_MSG_SPAWN] = {"SPAWN", false, codec_spawn},
	[RMP_MSG_TERMINATE] = {"TERMINATE", false, codec_terminate},
	[RMP_MSG_PROGRESS] = {"PROGRESS", false, codec_progress},
	[RMP_MSG_DONOR_REGISTER] = {"DONOR_REGISTER", false, codec_donor_register},
	[RMP_MSG_DONOR_ACCEPTED] = {"DONOR_ACCEPTED", false, codec_donor_accepted},
	[RMP_MSG_POOL_OPEN] = {"POOL_OPEN", false, codec_pool_open},
	[RMP_MSG_POOL_READY] = {"POOL_READY", false, codec_pool_ready},
	[RMP_MSG_SEGTAB_FETCH] = {"SEGTAB_FETCH", false, codec_segtab_fetch},
	[RMP_MSG_SEGTAB] = {"SEGTAB", false, codec_segtab},
	[RMP_MSG_POOL_CLOSE] = {"POOL_CLOSE", false, codec_pool_close},
	[RMP_MSG_POOL_DESTROY] = {"POOL_DESTROY", false, codec_pool_destroy},
	[RMP_MSG_POOL_FORGET] = {"POOL_FORGET", false, codec_pool_forget},
	[RMP_MSG_SEGTAB_PUSH] = {"SEGTAB_PUSH", false, codec_segtab_push},
	[RMP_MSG_LEASE_RENEW] = {"LEASE_RENEW", false, codec_lease_renew},
	[RMP_MSG_LEASE_GRANT] = {"LEASE_GRANT", false, codec_lease_grant},
	[RMP_MSG_LEASE_EXPIRED] = {"LEASE_EXPIRED", false, codec_lease_expired},
	[RMP_MSG_CLIENT_CUT] = {"CLIENT_CUT", false, codec_client_cut},
	[RMP_MSG_CLIENT_CUT_ACK] = {"CLIENT_CUT_ACK", false, codec_client_cut_ack},
	[RMP_MSG_POOL_HOLD] = {"POOL_HOLD", false, codec_pool_hold},
	[RMP_MSG_STATUS_REQUEST] = {"STATUS_REQUEST", false, codec_status_request},
	[RMP_MSG_STATUS_REPLY] = {"STATUS_REPLY", false, codec_status_reply},
};

static const struct msg_desc *msg_lookup(unsigned type)
{
	if (type >= sizeof(msg_table) / sizeof(msg_table[0]) || !msg_table[type].name)
		return NULL;
	return &msg_table[type];
}

const char *rmp_wire_type_name(unsigned type)
{
	const struct msg_desc *d = msg_lookup(type);
	return d ? d->name : NULL;
}

bool rmp_wire_type_preauth(unsigned type)
{
	const struct msg_desc *d = msg_lookup(type);
	return d && d->preauth;
}

const char *rmp_wire_strerror(int rc)
{
	switch (rc) {
	case 0:
		return "success";
	case -EPROTO:
		return "not an rmpool peer (bad magic)";
	case -EPROTONOSUPPORT:
		return "unsupported protocol version";
	case -ENOMSG:
		return "unknown message type";
	case -EMSGSIZE:
		return "frame exceeds the size limit";
	case -EBADMSG:
		return "malformed message";
	case -EINVAL:
		return "message field out of range";
	case -ENOSPC:
		return "buffer too small for the frame";
	case -ENOMEM:
		return "out of memory";
	default:
		return "unknown wire error";
	}
}

/* ---- frames ---- */

int rmp_wire_frame_parse(const void *buf, size_t avail, size_t limit, struct rmp_wire_frame *f,
			 size_t *need, struct rmp_wire_err *err)
{
	const uint8_t *b = buf;

	/* Limits above the protocol's are the caller's mistake; capping keeps
	 * the returned length within int. */
	if (limit == 0 || limit > RMP_WIRE_MAX_FRAME)
		limit = RMP_WIRE_MAX_FRAME;
	/* Check each header byte as soon as it is here: a peer that speaks
	 * something else (an HTTP client on the wrong port) is told so on
	 * its first byte, not after we waited for eight. */
	if ((avail >= 1 && b[0] != (RMP_WIRE_MAGIC >> 8)) ||
	    (avail >= 2 && b[1] != (RMP_WIRE_MAGIC & 0xff))) {
		set_err(err, "frame header: bad magic 0x%02x%02x, expected 0x%04x", b[0],
			avail >= 2 ? b[1] : (RMP_WIRE_MAGIC & 0xff), RMP_WIRE_MAGIC);
		return -EPROTO;
	}
	if (avail >= 3 && b[2] != RMP_WIRE_VERSION) {
		set_err(err, "frame header: protocol version %u, this peer speaks %u", b[2],
			RMP_WIRE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (avail >= 4 && !msg_lookup(b[3])) {
		set_err(err, "frame header: unknown message type 0x%02x", b[3]);
		return -ENOMSG;
	}
	if (avail < RMP_WIRE_HDR_LEN) {
		if (need)
			*need = RMP_WIRE_HDR_LEN - avail;
		return 0;
	}
	uint32_t len = get_be32(b + 4);
	if (len > limit - RMP_WIRE_HDR_LEN) {
		set_err(err, "frame header: %s payload of %u bytes exceeds the %zu-byte frame limit",
			msg_table[b[3]].name, len, limit);
		return -EMSGSIZE;
	}
	size_t total = RMP_WIRE_HDR_LEN + (size_t)len;
	if (avail < total) {
		if (need)
			*need = total - avail;
		return 0;
	}
	f->type = b[3];
	f->payload_len = len;
	f->payload = b + RMP_WIRE_HDR_LEN;
	f->frame_len = total;
	return (int)total;
}

void rmp_wire_msg_release(struct rmp_wire_msg *m)
{
	struct rmp_wire_segtab *t = NULL;

	switch (m->type) {
	case RMP_MSG_POOL_READY:
		t = &m->u.pool_ready.segtab;
		break;
	case RMP_MSG_SEGTAB:
		t = &m->u.segtab.segtab;
		break;
	case RMP_MSG_SEGTAB_PUSH:
		t = &m->u.segtab_push.segtab;
		break;
	case RMP_MSG_STATUS_REPLY:
		free(m->u.status.pools);
		free(m->u.status.hosts);
		m->u.status.pools = NULL;
		m->u.status.hosts = NULL;
		m->u.status.n_pools = 0;
		m->u.status.n_hosts = 0;
		break;
	default:
		break;
	}
	if (t) {
		free(t->donors);
		free(t->segments);
		t->donors = NULL;
		t->segments = NULL;
		t->n_donors = 0;
		t->n_segments = 0;
	}
}

static int decode_version(const struct rmp_wire_frame *f, unsigned version, struct rmp_wire_msg *m,
			  struct rmp_wire_err *err)
{
	const struct msg_desc *d = msg_lookup(f->type);

	memset(m, 0, sizeof(*m));
	if (!d) {
		set_err(err, "unknown message type 0x%02x", f->type);
		return -ENOMSG;
	}
	m->type = (enum rmp_wire_type)f->type;
	struct codec c = {
		.decoding = true,
		.in = f->payload,
		.in_len = f->payload_len,
		.msg_name = d->name,
		.err = err,
		.version = version,
	};
	d->codec(&c, m);
	if (!c.rc && c.off != c.in_len)
		cd_fail(&c, "(end)", "%zu trailing bytes after the last field", c.in_len - c.off);
	if (c.rc) {
		/* Arrays were calloc'ed (NULL-filled) before their elements
		 * were read, so a partial message releases cleanly. */
		rmp_wire_msg_release(m);
		return c.rc;
	}
	return 0;
}

int rmp_wire_decode(const struct rmp_wire_frame *f, struct rmp_wire_msg *m,
		    struct rmp_wire_err *err)
{
	return decode_version(f, RMP_WIRE_VERSION, m, err);
}

int rmp_wire_decode_record(const void *buf, size_t len, struct rmp_wire_msg *m,
			   struct rmp_wire_err *err)
{
	const uint8_t *b = buf;

	memset(m, 0, sizeof(*m));
	if (len < RMP_WIRE_HDR_LEN || b[2] == 0 || b[2] >= RMP_WIRE_VERSION)
		return rmp_wire_decode_buf(buf, len, RMP_WIRE_MAX_FRAME, m, err);
	/* A frame of an older version: only a SEGTAB is worth reading back
	 * (a state store records nothing else). */
	if (get_be16(b) != RMP_WIRE_MAGIC || b[3] != RMP_MSG_SEGTAB) {
		set_err(err, "recorded frame: version %u, type 0x%02x: not a segment table", b[2], b[3]);
		return -EPROTONOSUPPORT;
	}
	uint32_t plen = get_be32(b + 4);
	if (plen != len - RMP_WIRE_HDR_LEN) {
		set_err(err, "recorded frame: %u payload bytes announced, %zu there", plen,
			len - RMP_WIRE_HDR_LEN);
		return -EBADMSG;
	}
	struct rmp_wire_frame f = { .type = b[3], .payload_len = plen, .payload = b + RMP_WIRE_HDR_LEN,
				    .frame_len = len };
	return decode_version(&f, b[2], m, err);
}

int rmp_wire_decode_buf(const void *buf, size_t len, size_t limit, struct rmp_wire_msg *m,
			struct rmp_wire_err *err)
{
	struct rmp_wire_frame f;
	size_t need = 0;

	memset(m, 0, sizeof(*m));
	int rc = rmp_wire_frame_parse(buf, len, limit, &f, &need, err);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		set_err(err, "truncated frame: %zu more bytes needed", need);
		return -EBADMSG;
	}
	if ((size_t)rc != len) {
		set_err(err, "%zu bytes after a %d-byte frame", len - (size_t)rc, rc);
		return -EBADMSG;
	}
	return rmp_wire_decode(&f, m, err);
}

int rmp_wire_encode(const struct rmp_wire_msg *m, void *buf, size_t cap, size_t *len)
{
	const struct msg_desc *d = msg_lookup(m->type);

	if (!d)
		return -EINVAL;
	struct codec c = {
		.decoding = false,
		.out = buf,
		.cap = buf ? cap : 0,
		.off = RMP_WIRE_HDR_LEN,
		.msg_name = d->name,
	};
	/* Encoding only reads *m: the cast lets one codec serve both ways. */
	d->codec(&c, (struct rmp_wire_msg *)m);
	if (c.rc)
		return c.rc;
	if (c.off > RMP_WIRE_MAX_FRAME)
		return -EMSGSIZE;
	if (len)
		*len = c.off;
	if (c.off > c.cap)
		return -ENOSPC;
	uint8_t *b = buf;
	put_be16(b, RMP_WIRE_MAGIC);
	b[2] = RMP_WIRE_VERSION;
	b[3] = (uint8_t)m->type;
	put_be32(b + 4, (uint32_t)(c.off - RMP_WIRE_HDR_LEN));
	return 0;
}

/* ---- rdma_cm private-data token body ----
 *   0 version  1 kind  2..3 generation (low 16 bits)  4..7 target_id
 *   8..15 client_id  16..23 expires_ms, all big-endian */
void rmp_wire_token_put(const struct rmp_wire_token *t, uint8_t out[RMP_WIRE_TOKEN_BODY_LEN])
{
	out[0] = RMP_WIRE_TOKEN_VERSION;
	out[1] = t->kind;
	out[2] = (uint8_t)(t->generation >> 8);
	out[3] = (uint8_t)t->generation;
	put_be32(out + 4, t->target_id);
	put_be64(out + 8, t->client_id);
	put_be64(out + 16, t->expires_ms);
}

int rmp_wire_token_get(const uint8_t in[RMP_WIRE_TOKEN_BODY_LEN], struct rmp_wire_token *t)
{
	if (in[0] != RMP_WIRE_TOKEN_VERSION)
		return -EBADMSG;
	if (in[1] != RMP_TOKEN_METADATA && in[1] != RMP_TOKEN_DONOR)
		return -EBADMSG;
	t->kind = in[1];
	t->generation = (uint16_t)(in[2] << 8 | in[3]);
	t->target_id = get_be32(in + 4);
	t->client_id = get_be64(in + 8);
	t->expires_ms = get_be64(in + 16);
	return 0;
}
