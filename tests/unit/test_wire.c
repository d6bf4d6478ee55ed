/* test_wire.c - the control-protocol codec: round trips of every message,
 * and table-driven rejections (truncation at every byte, bad header
 * fields, oversized frames, lengths and counts past the payload,
 * out-of-domain values, trailing bytes).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static const enum rmp_wire_type all_types[] = {
	RMP_MSG_HELLO,		RMP_MSG_CHALLENGE,	  RMP_MSG_AUTH_PROOF,
	RMP_MSG_AUTH_OK,	RMP_MSG_ERROR,		  RMP_MSG_ACK,
	RMP_MSG_AGENT_REGISTER, RMP_MSG_AGENT_REGISTERED, RMP_MSG_SPAWN,
	RMP_MSG_TERMINATE,	RMP_MSG_PROGRESS,	  RMP_MSG_DONOR_REGISTER,
	RMP_MSG_DONOR_ACCEPTED, RMP_MSG_POOL_OPEN,	  RMP_MSG_POOL_READY,
	RMP_MSG_SEGTAB_FETCH,	RMP_MSG_SEGTAB,		  RMP_MSG_POOL_CLOSE,
	RMP_MSG_POOL_DESTROY,	RMP_MSG_LEASE_RENEW,	  RMP_MSG_LEASE_GRANT,
	RMP_MSG_LEASE_EXPIRED,	RMP_MSG_STATUS_REQUEST,	  RMP_MSG_STATUS_REPLY,
	RMP_MSG_POOL_FORGET,	RMP_MSG_SEGTAB_PUSH,
	RMP_MSG_CLIENT_CUT,	  RMP_MSG_CLIENT_CUT_ACK, RMP_MSG_POOL_HOLD,
};
#define N_TYPES (sizeof(all_types) / sizeof(all_types[0]))

static struct rmp_wire_donor_entry sample_donors[3];
static struct rmp_wire_segment sample_segments[8];
static struct rmp_wire_pool_status sample_pools[2];
static struct rmp_wire_host_status sample_hosts[2];

/* A 16 KiB pool, 2 KiB segments (8), 3 donors, the last 2 reserved. */
static void sample_segtab(struct rmp_wire_segtab *t)
{
	t->version = 7;
	t->capacity = 12000;
	t->space_log2 = 14;
	t->min_block_log2 = 8;
	t->segment_log2 = 11;
	t->meta = (struct rmp_wire_region){0x7f0000001000ull, 1 << 16, 0xabcd};
	strcpy(t->coordinator.host, "coord.example");
	t->coordinator.port = 7471;
	for (unsigned i = 0; i < 3; i++) {
		sample_donors[i].donor_id = 10 + i;
		snprintf(sample_donors[i].endpoint.host, sizeof(sample_donors[i].endpoint.host),
			 "fe80::%u", i + 1);
		sample_donors[i].endpoint.port = (uint16_t)(20000 + i);
		sample_donors[i].state = i == 1 ? RMP_DONOR_LOST : RMP_DONOR_SERVING;
	}
	for (unsigned i = 0; i < 8; i++) {
		bool reserved = i >= 6;
		sample_segments[i].donor_id = reserved ? RMP_WIRE_SEG_RESERVED : 10 + i / 2;
		sample_segments[i].rkey = reserved ? 0 : 0x1000u + i;
		sample_segments[i].addr = reserved ? 0 : 0x7fff00000000ull + (i % 2) * 2048;
	}
	t->n_donors = 3;
	t->donors = sample_donors;
	t->n_segments = 8;
	t->segments = sample_segments;
}

/* A valid message of each type, with every field set to something other
 * than zero where the domain allows, so that a swapped or dropped field
 * changes the bytes. */
static void sample(enum rmp_wire_type type, struct rmp_wire_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	switch (type) {
	case RMP_MSG_HELLO:
		m->u.hello.role = RMP_ROLE_DONOR;
		memset(m->u.hello.nonce, 0xa5, sizeof(m->u.hello.nonce));
		strcpy(m->u.hello.ident, "donor@host-1");
		break;
	case RMP_MSG_CHALLENGE:
		memset(m->u.challenge.nonce, 0x11, RMP_WIRE_NONCE_LEN);
		memset(m->u.challenge.proof, 0x22, RMP_WIRE_MAC_LEN);
		break;
	case RMP_MSG_AUTH_PROOF:
		memset(m->u.auth_proof.proof, 0x33, RMP_WIRE_MAC_LEN);
		break;
	case RMP_MSG_AUTH_OK:
		m->u.auth_ok.session_id = 0x0102030405060708ull;
		m->u.auth_ok.generation = 0x1112131415161718ull;
		break;
	case RMP_MSG_ERROR:
		m->u.error.code = ENOSPC;
		m->u.error.ref_type = RMP_MSG_POOL_OPEN;
		strcpy(m->u.error.text, "pool \"big\": 40 GiB asked, 24 GiB possible");
		break;
	case RMP_MSG_ACK:
		m->u.ack.ref_type = RMP_MSG_POOL_DESTROY;
		break;
	case RMP_MSG_AGENT_REGISTER:
		strcpy(m->u.agent_register.host, "host-2.rack7");
		m->u.agent_register.budget = 64ull << 30;
		m->u.agent_register.process_limit = 4ull << 30;
		m->u.agent_register.donor_footprint = 12ull << 20;
		break;
	case RMP_MSG_AGENT_REGISTERED:
		m->u.agent_registered.agent_id = 3;
		break;
	case RMP_MSG_SPAWN:
		m->u.spawn = (struct rmp_wire_spawn){99, 4, 17, 4032ull << 20, 64ull << 20};
		break;
	case RMP_MSG_TERMINATE:
		m->u.terminate = (struct rmp_wire_terminate){100, 17};
		break;
	case RMP_MSG_PROGRESS:
		m->u.progress.request_id = 99;
		m->u.progress.donor_id = 17;
		m->u.progress.state = RMP_PROGRESS_EXITED;
		m->u.progress.pid = 4242;
		m->u.progress.error = ENOMEM;
		strcpy(m->u.progress.text, "mmap(): Cannot allocate memory");
		break;
	case RMP_MSG_DONOR_REGISTER:
		m->u.donor_register.donor_id = 17;
		m->u.donor_register.pool_id = 4;
		m->u.donor_register.pid = 4242;
		m->u.donor_register.region =
			(struct rmp_wire_region){0x7f1234560000ull, 4032ull << 20, 0xdeadbeef};
		strcpy(m->u.donor_register.endpoint.host, "10.0.0.2");
		m->u.donor_register.endpoint.port = 20017;
		break;
	case RMP_MSG_DONOR_ACCEPTED:
		m->u.donor_accepted = (struct rmp_wire_donor_accepted){17, 4, 1ull << 36};
		break;
	case RMP_MSG_POOL_OPEN:
		strcpy(m->u.pool_open.name, "kv-cache");
		m->u.pool_open.capacity = 40ull << 30;
		m->u.pool_open.min_block = 4096;
		break;
	case RMP_MSG_POOL_READY:
		m->u.pool_ready.pool_id = 4;
		m->u.pool_ready.lease_id = 0xfeedull;
		m->u.pool_ready.lease_ms = 30000;
		m->u.pool_ready.slot_base = 48;
		sample_segtab(&m->u.pool_ready.segtab);
		break;
	case RMP_MSG_SEGTAB_FETCH:
		m->u.segtab_fetch = (struct rmp_wire_segtab_fetch){4, 6};
		break;
	case RMP_MSG_SEGTAB:
		m->u.segtab.pool_id = 4;
		sample_segtab(&m->u.segtab.segtab);
		break;
	case RMP_MSG_SEGTAB_PUSH:
		m->u.segtab_push.pool_id = 4;
		strcpy(m->u.segtab_push.note, "donor 11 on fe80::2 is lost: the donor process exited");
		sample_segtab(&m->u.segtab_push.segtab);
		break;
	case RMP_MSG_POOL_CLOSE:
		m->u.pool_close = (struct rmp_wire_pool_close){4, 0xfeedull};
		break;
	case RMP_MSG_POOL_DESTROY:
		strcpy(m->u.pool_destroy.name, "kv-cache");
		break;
	case RMP_MSG_POOL_FORGET:
		strcpy(m->u.pool_forget.name, "kv-cache");
		break;
	case RMP_MSG_LEASE_RENEW:
		m->u.lease_renew.lease_id = 0xfeedull;
		break;
	case RMP_MSG_LEASE_GRANT:
		m->u.lease_grant = (struct rmp_wire_lease_grant){0xfeedull, 30000};
		break;
	case RMP_MSG_LEASE_EXPIRED:
		m->u.lease_expired = (struct rmp_wire_lease_expired){0xfeedull, 4};
		break;
	case RMP_MSG_CLIENT_CUT:
		m->u.client_cut = (struct rmp_wire_client_cut){4, 0x123456789abcull};
		break;
	case RMP_MSG_CLIENT_CUT_ACK:
		m->u.client_cut_ack = (struct rmp_wire_client_cut_ack){4, 11, 0x123456789abcull, 3};
		break;
	case RMP_MSG_POOL_HOLD:
		m->u.pool_hold = (struct rmp_wire_pool_hold){0xbeef01ull, 4, 150};
		break;
	case RMP_MSG_STATUS_REQUEST:
		break;
	case RMP_MSG_STATUS_REPLY:
		m->u.status.uptime_ms = 123456;
		m->u.status.capacity = 80ull << 30;
		m->u.status.free_bytes = 20ull << 30;
		m->u.status.clients = 5;
		for (unsigned i = 0; i < 2; i++) {
			snprintf(sample_pools[i].name, sizeof(sample_pools[i].name), "pool-%u", i);
			sample_pools[i].pool_id = i + 1;
			sample_pools[i].capacity = 40ull << 30;
			sample_pools[i].space = 64ull << 30;
			sample_pools[i].free_bytes = 10ull << 30;
			sample_pools[i].clients = 2 + i;
			sample_pools[i].donors = 10;
			sample_pools[i].segtab_version = 3;
			sample_pools[i].state = i ? RMP_POOL_LOST : RMP_POOL_READY;
			sample_pools[i].donors_away = 1 + i;
			sample_pools[i].donors_lost = i;
			sample_pools[i].lost_bytes = i ? 8ull << 30 : 0;
			snprintf(sample_pools[i].note, sizeof(sample_pools[i].note), "%s",
				 i ? "metadata object /rmpool-pool-1 is gone" : "");
			snprintf(sample_hosts[i].host, sizeof(sample_hosts[i].host), "host-%u", i);
			sample_hosts[i].donors = 10;
			sample_hosts[i].budget = 64ull << 30;
			sample_hosts[i].used = 40ull << 30;
		}
		m->u.status.n_pools = 2;
		m->u.status.pools = sample_pools;
		m->u.status.n_hosts = 2;
		m->u.status.hosts = sample_hosts;
		m->u.status.generation = 0x1234567ull;
		break;
	}
}

/* Encodes into a fresh heap buffer of exactly the frame's size, so that
 * ASan catches any read past it. */
static uint8_t *encode_exact(const struct rmp_wire_msg *m, size_t *len)
{
	size_t need = 0;
	cr_assert_eq(rmp_wire_encode(m, NULL, 0, &need), -ENOSPC);
	uint8_t *buf = malloc(need);
	cr_assert_not_null(buf);
	cr_assert_eq(rmp_wire_encode(m, buf, need, len), 0, "encode %s",
		     rmp_wire_type_name(m->type));
	cr_assert_eq(*len, need);
	return buf;
}

static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);
	cr_assert_not_null(q);
	memcpy(q, p, n);
	return q;
}

static void set_len(uint8_t *frame, uint32_t len)
{
	frame[4] = (uint8_t)(len >> 24);
	frame[5] = (uint8_t)(len >> 16);
	frame[6] = (uint8_t)(len >> 8);
	frame[7] = (uint8_t)len;
}

Test(wire, round_trip_every_type)
{
	for (size_t i = 0; i < N_TYPES; i++) {
		struct rmp_wire_msg in, out;
		struct rmp_wire_err err = {{0}};
		size_t len, len2;

		sample(all_types[i], &in);
		uint8_t *buf = encode_exact(&in, &len);
		cr_assert_eq(rmp_wire_decode_buf(buf, len, RMP_WIRE_MAX_FRAME, &out, &err), 0,
			     "%s: %s", rmp_wire_type_name(in.type), err.text);
		cr_assert_eq(out.type, in.type);
		uint8_t *again = encode_exact(&out, &len2);
		cr_assert_eq(len2, len, "%s", rmp_wire_type_name(in.type));
		cr_assert(memcmp(buf, again, len) == 0, "%s re-encodes differently",
			  rmp_wire_type_name(in.type));
		rmp_wire_msg_release(&out);
		free(again);
		free(buf);
	}
}

Test(wire, round_trip_fields)
{
	struct rmp_wire_msg in, out;
	size_t len;

	sample(RMP_MSG_POOL_READY, &in);
	uint8_t *buf = encode_exact(&in, &len);
	cr_assert_eq(rmp_wire_decode_buf(buf, len, 0, &out, NULL), 0);
	const struct rmp_wire_segtab *t = &out.u.pool_ready.segtab;
	cr_assert_eq(out.u.pool_ready.lease_id, 0xfeedull);
	cr_assert_eq(out.u.pool_ready.slot_base, 48);
	cr_assert_eq(t->version, 7);
	cr_assert_eq(t->meta.addr, 0x7f0000001000ull);
	cr_assert_eq(t->meta.rkey, 0xabcd);
	cr_assert_str_eq(t->coordinator.host, "coord.example");
	cr_assert_eq(t->coordinator.port, 7471);
	cr_assert_eq(t->n_donors, 3);
	cr_assert_str_eq(t->donors[2].endpoint.host, "fe80::3");
	cr_assert_eq(t->donors[2].endpoint.port, 20002);
	cr_assert_eq(t->n_segments, 8);
	cr_assert_eq(t->segments[3].addr, 0x7fff00000000ull + 2048);
	cr_assert_eq(t->segments[7].donor_id, RMP_WIRE_SEG_RESERVED);
	rmp_wire_msg_release(&out);
	cr_assert_null(out.u.pool_ready.segtab.segments);
	free(buf);

	sample(RMP_MSG_SPAWN, &in);
	buf = encode_exact(&in, &len);
	cr_assert_eq(rmp_wire_decode_buf(buf, len, 0, &out, NULL), 0);
	cr_assert_eq(out.u.spawn.region_len, 4032ull << 20);
	cr_assert_eq(out.u.spawn.segment_size, 64ull << 20);
	cr_assert_eq(out.u.spawn.donor_id, 17);
	free(buf);
}

Test(wire, header_is_big_endian)
{
	struct rmp_wire_msg m;
	size_t len;

	sample(RMP_MSG_LEASE_RENEW, &m);
	uint8_t *buf = encode_exact(&m, &len);
	const uint8_t want[] = {'R', 'M', 3, RMP_MSG_LEASE_RENEW, 0, 0, 0, 8,
				0,   0,	  0, 0,			  0, 0, 0xfe, 0xed};
	cr_assert_eq(len, sizeof(want));
	cr_assert(memcmp(buf, want, len) == 0);
	free(buf);
}

/* Every proper prefix of every frame: the parser asks for exactly the
 * missing bytes, and never reports a frame. */
Test(wire, truncated_at_every_byte_needs_more)
{
	for (size_t i = 0; i < N_TYPES; i++) {
		struct rmp_wire_msg m;
		struct rmp_wire_frame f;
		size_t len;

		sample(all_types[i], &m);
		uint8_t *buf = encode_exact(&m, &len);
		for (size_t n = 0; n < len; n++) {
			uint8_t *part = dup_bytes(buf, n);
			size_t need = 0;
			cr_assert_eq(rmp_wire_frame_parse(part, n, 0, &f, &need, NULL), 0);
			cr_assert_eq(need, n < RMP_WIRE_HDR_LEN ? RMP_WIRE_HDR_LEN - n : len - n,
				     "%s cut at %zu", rmp_wire_type_name(m.type), n);
			struct rmp_wire_msg out;
			cr_assert_eq(rmp_wire_decode_buf(part, n, 0, &out, NULL), -EBADMSG);
			free(part);
		}
		free(buf);
	}
}

/* A header that claims a shorter payload than the message needs: the
 * decoder must stop at the payload's end wherever it falls. */
Test(wire, payload_cut_at_every_byte_is_rejected)
{
	for (size_t i = 0; i < N_TYPES; i++) {
		struct rmp_wire_msg m, out;
		struct rmp_wire_err err;
		size_t len;

		sample(all_types[i], &m);
		uint8_t *buf = encode_exact(&m, &len);
		for (size_t n = RMP_WIRE_HDR_LEN; n < len; n++) {
			uint8_t *cut = dup_bytes(buf, n);
			set_len(cut, (uint32_t)(n - RMP_WIRE_HDR_LEN));
			err.text[0] = '\0';
			cr_assert_eq(rmp_wire_decode_buf(cut, n, 0, &out, &err), -EBADMSG,
				     "%s cut at %zu", rmp_wire_type_name(m.type), n);
			cr_assert_neq(err.text[0], '\0');
			free(cut);
		}
		free(buf);
	}
}

Test(wire, trailing_bytes_are_rejected)
{
	for (size_t i = 0; i < N_TYPES; i++) {
		struct rmp_wire_msg m, out;
		struct rmp_wire_err err;
		size_t len;

		sample(all_types[i], &m);
		uint8_t *buf = encode_exact(&m, &len);
		uint8_t *longer = malloc(len + 1);
		memcpy(longer, buf, len);
		longer[len] = 0;
		set_len(longer, (uint32_t)(len + 1 - RMP_WIRE_HDR_LEN));
		cr_assert_eq(rmp_wire_decode_buf(longer, len + 1, 0, &out, &err), -EBADMSG);
		cr_assert(strstr(err.text, "trailing"), "%s", err.text);
		/* and garbage after a whole frame in a one-frame buffer */
		memcpy(longer, buf, len);
		cr_assert_eq(rmp_wire_decode_buf(longer, len + 1, 0, &out, NULL), -EBADMSG);
		free(longer);
		free(buf);
	}
}

struct header_case {
	const char *what;
	uint8_t bytes[8];
	size_t avail; /* the error must show with only this many bytes */
	int rc;
	const char *detail;
};

Test(wire, bad_headers)
{
	static const struct header_case cases[] = {
		{"magic byte 0", {'G', 'E', 'T', ' ', 0, 0, 0, 0}, 1, -EPROTO, "magic"},
		{"magic byte 1", {'R', 'X', 1, 1, 0, 0, 0, 0}, 2, -EPROTO, "magic"},
		{"version 0", {'R', 'M', 0, 1, 0, 0, 0, 0}, 3, -EPROTONOSUPPORT, "version 0"},
		{"version 4", {'R', 'M', 4, 1, 0, 0, 0, 0}, 3, -EPROTONOSUPPORT, "version 4"},
		{"version 2", {'R', 'M', 2, 1, 0, 0, 0, 0}, 3, -EPROTONOSUPPORT, "version 2"},
		{"version 1", {'R', 'M', 1, 1, 0, 0, 0, 0}, 3, -EPROTONOSUPPORT, "version 1"},
		{"type 0", {'R', 'M', RMP_WIRE_VERSION, 0, 0, 0, 0, 0}, 4, -ENOMSG, "0x00"},
		{"type 0x07", {'R', 'M', RMP_WIRE_VERSION, 0x07, 0, 0, 0, 0}, 4, -ENOMSG, "0x07"},
		{"type 0xff", {'R', 'M', RMP_WIRE_VERSION, 0xff, 0, 0, 0, 0}, 4, -ENOMSG, "0xff"},
		{"len 1 MiB", {'R', 'M', RMP_WIRE_VERSION, RMP_MSG_STATUS_REQUEST, 0, 0x10, 0, 0}, 8, -EMSGSIZE,
		 "exceeds"},
		{"len 4 GiB-1", {'R', 'M', RMP_WIRE_VERSION, RMP_MSG_HELLO, 0xff, 0xff, 0xff, 0xff}, 8, -EMSGSIZE,
		 "4294967295"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct header_case *c = &cases[i];
		struct rmp_wire_frame f;
		struct rmp_wire_err err = {{0}};
		size_t need = 0;

		for (size_t avail = c->avail; avail <= 8; avail++) {
			uint8_t *b = dup_bytes(c->bytes, avail);
			cr_assert_eq(rmp_wire_frame_parse(b, avail, 0, &f, &need, &err), c->rc,
				     "%s with %zu bytes", c->what, avail);
			cr_assert(strstr(err.text, c->detail), "%s: %s", c->what, err.text);
			free(b);
		}
		cr_assert_str_neq(rmp_wire_strerror(c->rc), "unknown wire error");
	}
}

Test(wire, size_limits)
{
	struct rmp_wire_frame f;
	struct rmp_wire_err err;
	size_t need;
	uint8_t hdr[8] = {'R', 'M', RMP_WIRE_VERSION, RMP_MSG_HELLO, 0, 0, 0, 0};

	/* exactly at the limit: fine (needs the payload); one above: not */
	set_len(hdr, RMP_WIRE_MAX_FRAME - RMP_WIRE_HDR_LEN);
	cr_assert_eq(rmp_wire_frame_parse(hdr, 8, RMP_WIRE_MAX_FRAME, &f, &need, &err), 0);
	cr_assert_eq(need, RMP_WIRE_MAX_FRAME - RMP_WIRE_HDR_LEN);
	set_len(hdr, RMP_WIRE_MAX_FRAME - RMP_WIRE_HDR_LEN + 1);
	cr_assert_eq(rmp_wire_frame_parse(hdr, 8, RMP_WIRE_MAX_FRAME, &f, &need, &err),
		     -EMSGSIZE);
	/* before authentication */
	set_len(hdr, RMP_WIRE_PREAUTH_MAX_FRAME - RMP_WIRE_HDR_LEN);
	cr_assert_eq(rmp_wire_frame_parse(hdr, 8, RMP_WIRE_PREAUTH_MAX_FRAME, &f, &need, &err),
		     0);
	set_len(hdr, RMP_WIRE_PREAUTH_MAX_FRAME - RMP_WIRE_HDR_LEN + 1);
	cr_assert_eq(rmp_wire_frame_parse(hdr, 8, RMP_WIRE_PREAUTH_MAX_FRAME, &f, &need, &err),
		     -EMSGSIZE);
	cr_assert(strstr(err.text, "256"), "%s", err.text);
	/* a limit above the protocol's is capped */
	set_len(hdr, RMP_WIRE_MAX_FRAME);
	cr_assert_eq(rmp_wire_frame_parse(hdr, 8, SIZE_MAX, &f, &need, &err), -EMSGSIZE);

	/* every handshake message fits the pre-auth limit at its largest */
	struct rmp_wire_msg m;
	size_t len;
	sample(RMP_MSG_HELLO, &m);
	memset(m.u.hello.ident, 'x', RMP_WIRE_IDENT_MAX);
	cr_assert_eq(rmp_wire_encode(&m, NULL, 0, &len), -ENOSPC);
	cr_assert_leq(len, RMP_WIRE_PREAUTH_MAX_FRAME);
	sample(RMP_MSG_ERROR, &m);
	memset(m.u.error.text, 'x', RMP_WIRE_TEXT_MAX);
	cr_assert_eq(rmp_wire_encode(&m, NULL, 0, &len), -ENOSPC);
	cr_assert_leq(len, RMP_WIRE_PREAUTH_MAX_FRAME, "ERROR is %zu", len);
	/* ...and the largest segment table fits the frame limit */
	static struct rmp_wire_segment segs[RMP_WIRE_MAX_SEGMENTS];
	static struct rmp_wire_donor_entry donors[RMP_WIRE_MAX_DONORS];
	for (size_t i = 0; i < RMP_WIRE_MAX_DONORS; i++) {
		memset(donors[i].endpoint.host, 'h', RMP_WIRE_HOST_MAX);
		donors[i].endpoint.port = 1;
	}
	sample(RMP_MSG_SEGTAB, &m);
	m.u.segtab.segtab.space_log2 = 40;
	m.u.segtab.segtab.segment_log2 = 25;
	m.u.segtab.segtab.n_segments = RMP_WIRE_MAX_SEGMENTS;
	m.u.segtab.segtab.segments = segs;
	m.u.segtab.segtab.n_donors = RMP_WIRE_MAX_DONORS;
	m.u.segtab.segtab.donors = donors;
	cr_assert_eq(rmp_wire_encode(&m, NULL, 0, &len), -ENOSPC);
	cr_assert_leq(len, RMP_WIRE_MAX_FRAME);
	uint8_t *buf = malloc(len);
	cr_assert_eq(rmp_wire_encode(&m, buf, len, &len), 0);
	struct rmp_wire_msg out;
	cr_assert_eq(rmp_wire_decode_buf(buf, len, 0, &out, NULL), 0);
	cr_assert_eq(out.u.segtab.segtab.n_segments, RMP_WIRE_MAX_SEGMENTS);
	rmp_wire_msg_release(&out);
	free(buf);
}

/* Handcrafted payloads, each wrong in one way. */
struct payload_case {
	const char *what;
	uint8_t type;
	uint8_t payload[64];
	size_t len;
	const char *detail; /* expected in the error text */
};

Test(wire, bad_payloads)
{
	static const struct payload_case cases[] = {
		{"role 0", RMP_MSG_HELLO, {0}, 35, "role"},
		{"role 4", RMP_MSG_HELLO, {4}, 35, "out of range"},
		{"ident length past payload", RMP_MSG_HELLO, {1, [33] = 0, [34] = 5, 'a'}, 36,
		 "ident"},
		{"ident with NUL", RMP_MSG_HELLO, {1, [33] = 0, [34] = 2, 'a', 0}, 37,
		 "control byte 0x00"},
		{"ident with newline", RMP_MSG_HELLO, {1, [33] = 0, [34] = 2, 'a', '\n'}, 37,
		 "control byte 0x0a"},
		{"ident over max", RMP_MSG_HELLO, {1, [33] = 0, [34] = 65}, 35, "[0, 64]"},
		{"empty pool name", RMP_MSG_POOL_OPEN, {0, 0}, 18, "name"},
		{"pool name 0xffff", RMP_MSG_POOL_OPEN, {0xff, 0xff}, 18, "65535"},
		{"min_block not pow2",
		 RMP_MSG_POOL_OPEN,
		 {0, 1, 'p', [10] = 0, [17] = 3, [18] = 0},
		 19,
		 "power of two"},
		{"segment_size 0", RMP_MSG_SPAWN, {0}, 32, "segment_size"},
		{"hold 0 ms", RMP_MSG_POOL_HOLD, {0}, 16, "hold_ms"},
		{"hold past the maximum", RMP_MSG_POOL_HOLD, {[12] = 0, [13] = 0, [14] = 0x03, [15] = 0xe9}, 16,
		 "[1, 1000]"},
		{"progress state 0", RMP_MSG_PROGRESS, {[12] = 0}, 23, "state"},
		{"progress state 9", RMP_MSG_PROGRESS, {[12] = 9}, 23, "state"},
		{"endpoint port 0",
		 RMP_MSG_DONOR_REGISTER,
		 {[32] = 0, [33] = 1, 'h', 0, 0},
		 37,
		 "port 0"},
		{"status pools count huge",
		 RMP_MSG_STATUS_REPLY,
		 {[28] = 0, [29] = 0, [30] = 0, [31] = 200},
		 32,
		 "needs at least"},
		{"status pools count over max",
		 RMP_MSG_STATUS_REPLY,
		 {[28] = 0xff, [29] = 0xff, [30] = 0xff, [31] = 0xff},
		 32,
		 "exceeds the maximum"},
		{"segtab s > M", RMP_MSG_SEGTAB, {[20] = 10, [21] = 4, [22] = 11}, 23, "geometry"},
		{"segtab m > s", RMP_MSG_SEGTAB, {[20] = 10, [21] = 9, [22] = 8}, 23, "geometry"},
		{"segtab M = 64", RMP_MSG_SEGTAB, {[20] = 64, [21] = 4, [22] = 8}, 23, "geometry"},
		{"segtab capacity > space",
		 RMP_MSG_SEGTAB,
		 {[17] = 1, [20] = 8, [21] = 4, [22] = 8},
		 23,
		 "exceeds the space"},
		{"empty status request", RMP_MSG_STATUS_REQUEST, {0}, 1, "trailing"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct payload_case *c = &cases[i];
		struct rmp_wire_frame f = {
			.type = c->type,
			.payload_len = (uint32_t)c->len,
			.payload = dup_bytes(c->payload, c->len),
			.frame_len = RMP_WIRE_HDR_LEN + c->len,
		};
		struct rmp_wire_msg out;
		struct rmp_wire_err err = {{0}};
		cr_assert_eq(rmp_wire_decode(&f, &out, &err), -EBADMSG, "%s", c->what);
		cr_assert(strstr(err.text, c->detail), "%s: \"%s\"", c->what, err.text);
		cr_assert(strstr(err.text, rmp_wire_type_name(c->type)), "%s", err.text);
		free((void *)f.payload);
	}
}

/* Arrays: counts that disagree with the geometry or the payload, and a
 * failure after an array was allocated (ASan checks that it is freed). */
Test(wire, segtab_counts)
{
	struct rmp_wire_msg m, out;
	struct rmp_wire_err err;
	size_t len;

	sample(RMP_MSG_SEGTAB, &m);
	m.u.segtab.segtab.n_segments = 7;
	cr_assert_eq(rmp_wire_encode(&m, NULL, 0, &len), -EINVAL, "geometry says 8");

	sample(RMP_MSG_SEGTAB, &m);
	uint8_t *buf = encode_exact(&m, &len);
	/* n_segments is the u32 just before the 8 segments of 16 bytes */
	size_t at = len - 8 * 16 - 4;
	cr_assert_eq(buf[at + 3], 8);
	buf[at + 3] = 9;
	cr_assert_eq(rmp_wire_decode_buf(buf, len, 0, &out, &err), -EBADMSG);
	cr_assert(strstr(err.text, "n_segments"), "%s", err.text);
	buf[at + 3] = 8;
	/* break the last donor's port (before its state byte): donors array
	 * allocated, then failure */
	size_t port_at = at - 3;
	buf[port_at] = 0;
	buf[port_at + 1] = 0;
	cr_assert_eq(rmp_wire_decode_buf(buf, len, 0, &out, &err), -EBADMSG);
	cr_assert(strstr(err.text, "port 0"), "%s", err.text);
	cr_assert_null(out.u.segtab.segtab.donors);
	free(buf);

	sample(RMP_MSG_SEGTAB, &m);
	m.u.segtab.segtab.donors = NULL;
	cr_assert_eq(rmp_wire_encode(&m, NULL, 0, &len), -EINVAL);
	sample(RMP_MSG_SEGTAB, &m);
	m.u.segtab.segtab.n_donors = RMP_WIRE_MAX_DONORS + 1;
	cr_assert_eq(rmp_wire_encode(&m, NULL, 0, &len), -EINVAL);
}

/* Donor states: lost travels in every table message, anything else is
 * refused both ways. */
Test(wire, donor_states)
{
	static const enum rmp_wire_type types[] = { RMP_MSG_POOL_READY, RMP_MSG_SEGTAB, RMP_MSG_SEGTAB_PUSH };
	struct rmp_wire_msg m, out;
	struct rmp_wire_err err;
	size_t len;

	for (size_t k = 0; k < 3; k++) {
		sample(types[k], &m);
		uint8_t *buf = encode_exact(&m, &len);
		cr_assert_eq(rmp_wire_decode_buf(buf, len, 0, &out, &err), 0, "%s", err.text);
		const struct rmp_wire_segtab *t = types[k] == RMP_MSG_POOL_READY ? &out.u.pool_ready.segtab
						  : types[k] == RMP_MSG_SEGTAB	  ? &out.u.segtab.segtab
										  : &out.u.segtab_push.segtab;
		cr_assert_eq(t->donors[0].state, RMP_DONOR_SERVING);
		cr_assert_eq(t->donors[1].state, RMP_DONOR_LOST);
		cr_assert_eq(t->donors[2].state, RMP_DONOR_SERVING);
		if (types[k] == RMP_MSG_SEGTAB_PUSH) {
			cr_assert_eq(out.u.segtab_push.pool_id, 4);
			cr_assert(strstr(out.u.segtab_push.note, "is lost"));
		}
		rmp_wire_msg_release(&out);
		/* the last donor's state byte sits just before n_segments */
		size_t at = len - 8 * 16 - 4 - 1;
		cr_assert_eq(buf[at], RMP_DONOR_SERVING);
		buf[at] = 2;
		cr_assert_eq(rmp_wire_decode_buf(buf, len, 0, &out, &err), -EBADMSG);
		cr_assert(strstr(err.text, "donors.state"), "%s", err.text);
		free(buf);
	}
	sample(RMP_MSG_SEGTAB, &m);
	sample_donors[0].state = 7;
	cr_assert_eq(rmp_wire_encode(&m, NULL, 0, &len), -EINVAL);
	sample(RMP_MSG_SEGTAB_PUSH, &m);
	strcpy(m.u.segtab_push.note, "two\nlines");
	cr_assert_eq(rmp_wire_encode(&m, NULL, 0, &len), -EINVAL);
}

/* A version-1 SEGTAB (a table a state store recorded before donor
 * states): the record decoder reads it (every donor serving), the live
 * decoder refuses it; a version-1 frame of another type is refused. */
Test(wire, record_of_version_1)
{
	struct rmp_wire_msg m, out;
	struct rmp_wire_err err = {{0}};
	size_t len;

	sample(RMP_MSG_SEGTAB, &m);
	for (unsigned i = 0; i < 3; i++)
		sample_donors[i].state = RMP_DONOR_SERVING;
	uint8_t *v2 = encode_exact(&m, &len);
	/* Drop each donor's state byte: donors start after pool_id (4),
	 * version, capacity (16), 3 geometry bytes, meta (20), the
	 * coordinator endpoint and n_donors (4). */
	uint8_t *v1 = malloc(len);
	size_t in = RMP_WIRE_HDR_LEN + 4 + 16 + 3 + 20, out_len;
	in += 2 + strlen("coord.example") + 2 + 4;
	memcpy(v1, v2, in);
	out_len = in;
	for (unsigned i = 0; i < 3; i++) {
		size_t e = 4 + 2 + (size_t)(v2[in + 4] << 8 | v2[in + 5]) + 2;
		memcpy(v1 + out_len, v2 + in, e);
		out_len += e;
		in += e + 1;
	}
	memcpy(v1 + out_len, v2 + in, len - in);
	out_len += len - in;
	cr_assert_eq(out_len, len - 3);
	v1[2] = 1;
	uint32_t pl = (uint32_t)(out_len - RMP_WIRE_HDR_LEN);
	v1[4] = (uint8_t)(pl >> 24), v1[5] = (uint8_t)(pl >> 16), v1[6] = (uint8_t)(pl >> 8), v1[7] = (uint8_t)pl;
	cr_assert_eq(rmp_wire_decode_buf(v1, out_len, 0, &out, NULL), -EPROTONOSUPPORT);
	cr_assert_eq(rmp_wire_decode_record(v1, out_len, &out, &err), 0, "%s", err.text);
	cr_assert_eq(out.u.segtab.segtab.n_donors, 3);
	cr_assert_str_eq(out.u.segtab.segtab.donors[2].endpoint.host, "fe80::3");
	cr_assert_eq(out.u.segtab.segtab.donors[1].state, RMP_DONOR_SERVING);
	cr_assert_eq(out.u.segtab.segtab.segments[3].addr, 0x7fff00000000ull + 2048);
	/* re-encoded as version 2: the frame it came from */
	uint8_t *again = encode_exact(&out, &len);
	cr_assert_eq(len, out_len + 3);
	cr_assert(memcmp(again, v2, len) == 0);
	rmp_wire_msg_release(&out);
	free(again);
	/* the record decoder still reads version 2, and refuses a cut one */
	cr_assert_eq(rmp_wire_decode_record(v2, len, &out, &err), 0, "%s", err.text);
	rmp_wire_msg_release(&out);
	cr_assert_eq(rmp_wire_decode_record(v1, out_len - 1, &out, &err), -EBADMSG);
	v1[3] = RMP_MSG_POOL_READY;
	cr_assert_eq(rmp_wire_decode_record(v1, out_len, &out, &err), -EPROTONOSUPPORT);
	/* A version-2 SEGTAB (recorded before POOL_READY had slot_base: the
	 * SEGTAB layout is the same) still reads back; live, it is refused. */
	v2[2] = 2;
	cr_assert_eq(rmp_wire_decode_buf(v2, len, 0, &out, NULL), -EPROTONOSUPPORT);
	cr_assert_eq(rmp_wire_decode_record(v2, len, &out, &err), 0, "%s", err.text);
	cr_assert_eq(out.u.segtab.segtab.n_donors, 3);
	rmp_wire_msg_release(&out);
	v2[3] = RMP_MSG_POOL_READY;
	cr_assert_eq(rmp_wire_decode_record(v2, len, &out, &err), -EPROTONOSUPPORT);
	free(v1);
	free(v2);
}

Test(wire, encode_rejects_what_decode_would)
{
	struct rmp_wire_msg m;
	size_t len;
	uint8_t buf[512];

	sample(RMP_MSG_POOL_OPEN, &m);
	memset(m.u.pool_open.name, 'n', sizeof(m.u.pool_open.name)); /* no NUL */
	cr_assert_eq(rmp_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
	sample(RMP_MSG_POOL_OPEN, &m);
	m.u.pool_open.name[0] = '\0';
	cr_assert_eq(rmp_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
	sample(RMP_MSG_POOL_OPEN, &m);
	m.u.pool_open.name[2] = '\t';
	cr_assert_eq(rmp_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
	sample(RMP_MSG_HELLO, &m);
	m.u.hello.role = 0;
	cr_assert_eq(rmp_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
	sample(RMP_MSG_SPAWN, &m);
	m.u.spawn.segment_size = 3 << 20;
	cr_assert_eq(rmp_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
	m.type = (enum rmp_wire_type)0x7e;
	cr_assert_eq(rmp_wire_encode(&m, buf, sizeof(buf), &len), -EINVAL);
}

Test(wire, encode_never_writes_past_cap)
{
	struct rmp_wire_msg m;
	size_t len = 0, need;

	sample(RMP_MSG_STATUS_REPLY, &m);
	cr_assert_eq(rmp_wire_encode(&m, NULL, 0, &need), -ENOSPC);
	for (size_t cap = 0; cap < need; cap++) {
		uint8_t *buf = malloc(cap ? cap : 1); /* ASan: exact size */
		cr_assert_eq(rmp_wire_encode(&m, buf, cap, &len), -ENOSPC);
		cr_assert_eq(len, need);
		free(buf);
	}
}

/* Frames arrive in pieces; the parser finds each one exactly. */
Test(wire, incremental_stream)
{
	enum rmp_wire_type seq[] = {RMP_MSG_HELLO, RMP_MSG_STATUS_REQUEST, RMP_MSG_SEGTAB,
				    RMP_MSG_LEASE_GRANT};
	uint8_t stream[4096];
	size_t total = 0;

	for (size_t i = 0; i < 4; i++) {
		struct rmp_wire_msg m;
		size_t len;
		sample(seq[i], &m);
		cr_assert_eq(rmp_wire_encode(&m, stream + total, sizeof(stream) - total, &len), 0);
		total += len;
	}
	for (size_t step = 1; step <= 17; step += 4) {
		size_t have = 0, start = 0, seen = 0;
		while (start < total) {
			struct rmp_wire_frame f;
			size_t need = 0;
			int rc = rmp_wire_frame_parse(stream + start, have - start, 0, &f, &need,
						      NULL);
			cr_assert_geq(rc, 0);
			if (rc == 0) {
				cr_assert_gt(need, 0);
				have = have + step < total ? have + step : total;
				continue;
			}
			cr_assert_eq(f.type, seq[seen]);
			struct rmp_wire_msg out;
			cr_assert_eq(rmp_wire_decode(&f, &out, NULL), 0);
			rmp_wire_msg_release(&out);
			start += (size_t)rc;
			seen++;
		}
		cr_assert_eq(seen, 4);
	}
}

Test(wire, type_table)
{
	cr_assert_str_eq(rmp_wire_type_name(RMP_MSG_POOL_READY), "POOL_READY");
	cr_assert_null(rmp_wire_type_name(0));
	cr_assert_null(rmp_wire_type_name(1000));
	size_t preauth = 0;
	for (unsigned t = 0; t < 256; t++)
		preauth += rmp_wire_type_preauth(t);
	cr_assert_eq(preauth, 5, "HELLO, CHALLENGE, AUTH_PROOF, AUTH_OK, ERROR");
	cr_assert(!rmp_wire_type_preauth(RMP_MSG_POOL_OPEN));
	for (size_t i = 0; i < N_TYPES; i++)
		cr_assert_not_null(rmp_wire_type_name(all_types[i]));
}

Test(wire, token_body)
{
	struct rmp_wire_token t = {RMP_TOKEN_DONOR, 17, 0x1122334455667788ull, 1700000000123ull, 0xbeef};
	struct rmp_wire_token back;
	uint8_t b[RMP_WIRE_TOKEN_BODY_LEN];

	rmp_wire_token_put(&t, b);
	cr_assert_eq(b[0], RMP_WIRE_TOKEN_VERSION);
	cr_assert_eq(b[7], 17);
	cr_assert_eq(b[8], 0x11);
	cr_assert_eq(rmp_wire_token_get(b, &back), 0);
	cr_assert_eq(back.kind, t.kind);
	cr_assert_eq(back.target_id, t.target_id);
	cr_assert_eq(back.client_id, t.client_id);
	cr_assert_eq(back.expires_ms, t.expires_ms);
	cr_assert_eq(b[2], 0xbe);
	cr_assert_eq(b[3], 0xef);
	cr_assert_eq(back.generation, 0xbeef);
	b[1] = 3;
	cr_assert_eq(rmp_wire_token_get(b, &back), -EBADMSG);
	b[1] = RMP_TOKEN_DONOR;
	b[0] = 1; /* version 1 tokens had no generation: refused */
	cr_assert_eq(rmp_wire_token_get(b, &back), -EBADMSG);
}
