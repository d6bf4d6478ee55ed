/* wire.h - the rmpool control protocol: frames and messages.
 *
 * All byte order lives in wire.c; everything else sees host-order
 * structs. See wire.c for the message sequence and the frame format.
 *
 * Using it:
 *   - a reader accumulates bytes and calls rmp_wire_frame_parse() until it
 *     returns a frame length (> 0), then rmp_wire_decode() on that frame
 *     and drops that many bytes; 0 means "read more" (need says how
 *     many at least); < 0 means close this connection and log err->text.
 *   - until the handshake is done, a reader passes
 *     RMP_WIRE_PREAUTH_MAX_FRAME as the limit and refuses any frame whose
 *     type is not rmp_wire_type_preauth(): an unauthenticated peer gets
 *     nothing but the handshake.
 *   - a writer fills a struct rmp_wire_msg and calls rmp_wire_encode().
 *   - decoded segment/donor/pool/host arrays are heap memory:
 *     rmp_wire_msg_release() frees them (and is a no-op for other types).
 */
#ifndef RMP_WIRE_H
#define RMP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMP_WIRE_MAGIC 0x524du /* "RM" */
/* 2: donor entries of a segment table carry their state (lost: out of
 * service), SEGTAB_PUSH. 3: POOL_READY carries the lease's owner-record
 * slots (slot_base). SEGTAB frames of versions 1 and 2 recorded in a
 * state store still decode (rmp_wire_decode_record). */
#define RMP_WIRE_VERSION 3u
#define RMP_WIRE_HDR_LEN 8u

/* Whole frames, header included. 1 MiB holds the largest segment table
 * (RMP_WIRE_MAX_SEGMENTS entries plus RMP_WIRE_MAX_DONORS endpoints) with
 * room to spare, and bounds what one peer can make us buffer. Before a
 * peer has authenticated it may send only handshake frames, and those fit
 * in 256 bytes: an unauthenticated peer cannot make us hold more. */
#define RMP_WIRE_MAX_FRAME (1u << 20)
#define RMP_WIRE_PREAUTH_MAX_FRAME 256u

#define RMP_WIRE_NONCE_LEN 32u
#define RMP_WIRE_MAC_LEN 32u

/* String bounds, in bytes, not counting the NUL the decoder adds. */
#define RMP_WIRE_IDENT_MAX 64u /* who a peer says it is (handshake) */
#define RMP_WIRE_NAME_MAX 64u  /* pool names */
#define RMP_WIRE_HOST_MAX 255u /* DNS names are at most 253 bytes */
/* Error and progress text: small enough that an ERROR frame fits the
 * pre-authentication limit, so a refused handshake can say why. */
#define RMP_WIRE_TEXT_MAX 200u

/* Array bounds. Segment table: 32768 segments of 32 MiB is a 1 TiB pool. */
#define RMP_WIRE_MAX_SEGMENTS 32768u
#define RMP_WIRE_MAX_DONORS 1024u
#define RMP_WIRE_MAX_POOLS 256u
#define RMP_WIRE_MAX_HOSTS 256u

/* Segment-table entry of a segment no donor backs yet (the reserved tail). */
#define RMP_WIRE_SEG_RESERVED UINT32_MAX

/* Message types. The values are the wire encoding: never renumber. */
enum rmp_wire_type {
	/* handshake: the only types accepted before authentication */
	RMP_MSG_HELLO = 0x01,
	RMP_MSG_CHALLENGE = 0x02,
	RMP_MSG_AUTH_PROOF = 0x03,
	RMP_MSG_AUTH_OK = 0x04,
	RMP_MSG_ERROR = 0x05,
	RMP_MSG_ACK = 0x06,
	/* host agents and donors */
	RMP_MSG_AGENT_REGISTER = 0x10,
	RMP_MSG_AGENT_REGISTERED = 0x11,
	RMP_MSG_SPAWN = 0x12,
	RMP_MSG_TERMINATE = 0x13,
	RMP_MSG_PROGRESS = 0x14,
	RMP_MSG_DONOR_REGISTER = 0x15,
	RMP_MSG_DONOR_ACCEPTED = 0x16,
	/* consumers: pools and segment tables */
	RMP_MSG_POOL_OPEN = 0x20,
	RMP_MSG_POOL_READY = 0x21,
	RMP_MSG_SEGTAB_FETCH = 0x22,
	RMP_MSG_SEGTAB = 0x23,
	RMP_MSG_POOL_CLOSE = 0x24,
	RMP_MSG_POOL_DESTROY = 0x25,
	RMP_MSG_POOL_FORGET = 0x26,
	/* the coordinator's own: a pool's new table, unasked (a donor lost) */
	RMP_MSG_SEGTAB_PUSH = 0x27,
	/* leases */
	RMP_MSG_LEASE_RENEW = 0x30,
	RMP_MSG_LEASE_GRANT = 0x31,
	RMP_MSG_LEASE_EXPIRED = 0x32,
	/* cut-off of a consumer whose lease expired (server/cutoff.c) */
	RMP_MSG_CLIENT_CUT = 0x33,
	RMP_MSG_CLIENT_CUT_ACK = 0x34,
	/* coordinator -> consumer: hold new allocations and frees on a pool
	 * for a moment (a reclaim wants a quiet snapshot) */
	RMP_MSG_POOL_HOLD = 0x35,
	/* status */
	RMP_MSG_STATUS_REQUEST = 0x40,
	RMP_MSG_STATUS_REPLY = 0x41,
};

enum rmp_wire_role {
	RMP_ROLE_CLIENT = 1, /* consumer (librmpool, the rmpool CLI) */
	RMP_ROLE_DONOR = 2,
	RMP_ROLE_AGENT = 3,
};

/* A pool's state in STATUS_REPLY. */
enum rmp_wire_pool_state {
	RMP_POOL_CREATING = 1,	 /* its donors are being provisioned */
	RMP_POOL_READY = 2,	 /* attachable */
	RMP_POOL_DESTROYING = 3, /* its donors are being terminated */
	RMP_POOL_RECOVERING = 4, /* re-adopted after a restart: waiting for its donors */
	RMP_POOL_LOST = 5,	 /* could not be re-adopted: note says why */
	RMP_POOL_DEGRADED = 6,	 /* attachable, but donors are lost: their segments
				  * are out of service and capacity is lower */
};

/* A donor entry's state in a segment table. */
enum rmp_wire_donor_state {
	RMP_DONOR_SERVING = 0,
	RMP_DONOR_LOST = 1, /* dead: its segments are out of service for good */
};

/* How a spawn or terminate request is going (RMP_MSG_PROGRESS). */
enum rmp_wire_progress_state {
	RMP_PROGRESS_SPAWNED = 1, /* the process exists; pid is set */
	RMP_PROGRESS_FAILED = 2,  /* it could not be started; error is set */
	RMP_PROGRESS_EXITED = 3,  /* it is gone (terminated, or died: error) */
};

struct rmp_wire_endpoint {
	char host[RMP_WIRE_HOST_MAX + 1];
	uint16_t port;
};

/* A registered memory region as RDMA sees it. */
struct rmp_wire_region {
	uint64_t addr;
	uint64_t len;
	uint32_t rkey;
};

struct rmp_wire_hello {
	uint8_t role; /* enum rmp_wire_role */
	uint8_t nonce[RMP_WIRE_NONCE_LEN];
	char ident[RMP_WIRE_IDENT_MAX + 1];
};

struct rmp_wire_challenge {
	uint8_t nonce[RMP_WIRE_NONCE_LEN];
	uint8_t proof[RMP_WIRE_MAC_LEN]; /* the server's, over both nonces */
};

struct rmp_wire_auth_proof {
	uint8_t proof[RMP_WIRE_MAC_LEN];
};

struct rmp_wire_auth_ok {
	uint64_t session_id; /* the client id tokens and leases carry */
	/* The coordinator's generation, raised at every start (its state
	 * store): peers fence an older coordinator with it, and tokens carry
	 * its low 16 bits. 0: a coordinator without durable state. */
	uint64_t generation;
};

struct rmp_wire_error {
	uint32_t code;	  /* positive errno value */
	uint8_t ref_type; /* type of the request refused, 0 if none */
	char text[RMP_WIRE_TEXT_MAX + 1];
};

struct rmp_wire_ack {
	uint8_t ref_type; /* type of the request done (close, destroy) */
};

struct rmp_wire_agent_register {
	char host[RMP_WIRE_HOST_MAX + 1];
	uint64_t budget;	  /* bytes this host may give, in all */
	uint64_t process_limit;	  /* per-process maximum (RLIMIT_AS-style) */
	uint64_t donor_footprint; /* a donor process's own measured footprint */
};

struct rmp_wire_agent_registered {
	uint32_t agent_id;
};

struct rmp_wire_spawn {
	uint64_t request_id;
	uint32_t pool_id;
	uint32_t donor_id;
	uint64_t region_len;
	uint64_t segment_size;
};

struct rmp_wire_terminate {
	uint64_t request_id;
	uint32_t donor_id;
};

struct rmp_wire_progress {
	uint64_t request_id;
	uint32_t donor_id;
	uint8_t state; /* enum rmp_wire_progress_state */
	uint32_t pid;
	uint32_t error; /* positive errno value, 0 if none */
	char text[RMP_WIRE_TEXT_MAX + 1];
};

/* Region hand-over: the donor has registered its memory and listens. */
struct rmp_wire_donor_register {
	uint32_t donor_id;
	uint32_t pool_id;
	uint32_t pid;
	struct rmp_wire_region region;
	struct rmp_wire_endpoint endpoint; /* its rdma_cm listener */
};

struct rmp_wire_donor_accepted {
	uint32_t donor_id;
	uint32_t pool_id;
	uint64_t base; /* pool address of the donor's first segment */
};

struct rmp_wire_pool_open {
	char name[RMP_WIRE_NAME_MAX + 1];
	uint64_t capacity;  /* usable bytes; 0 attaches to an existing pool */
	uint64_t min_block; /* 0: the coordinator's default */
};

struct rmp_wire_donor_entry {
	uint32_t donor_id;
	struct rmp_wire_endpoint endpoint;
	uint8_t state; /* enum rmp_wire_donor_state */
};

struct rmp_wire_segment {
	uint32_t donor_id; /* RMP_WIRE_SEG_RESERVED: no memory behind it */
	uint32_t rkey;
	uint64_t addr; /* remote virtual address on that donor */
};

/* The pool's geometry and where every segment lives. The decoder checks
 * min_block_log2 <= segment_log2 <= space_log2 <= 63 and that the segment
 * count is 2^(space_log2 - segment_log2). */
struct rmp_wire_segtab {
	uint64_t version;
	/* usable bytes in service: asked for, less those on lost donors */
	uint64_t capacity;
	uint8_t space_log2;
	uint8_t min_block_log2;
	uint8_t segment_log2;
	struct rmp_wire_region meta; /* allocator metadata MR on the coordinator */
	struct rmp_wire_endpoint coordinator; /* its rdma_cm listener */
	uint32_t n_donors;
	struct rmp_wire_donor_entry *donors;
	uint32_t n_segments;
	struct rmp_wire_segment *segments;
};

/* A lease without owner-record slots (the pool's region has none). */
#define RMP_WIRE_NO_SLOT UINT32_MAX

struct rmp_wire_pool_ready {
	uint32_t pool_id;
	uint64_t lease_id;
	uint32_t lease_ms;
	/* The lease's owner records (DESIGN.md, "Reclaim of an expired
	 * consumer"): its engine context s (0..15) keeps slot slot_base + s
	 * of the metadata region, tag id lease_id * 16 + s.
	 * RMP_WIRE_NO_SLOT: no records. */
	uint32_t slot_base;
	struct rmp_wire_segtab segtab;
};

struct rmp_wire_segtab_fetch {
	uint32_t pool_id;
	uint64_t have_version;
};

struct rmp_wire_segtab_reply {
	uint32_t pool_id;
	struct rmp_wire_segtab segtab;
};

/* A new version of a pool's table, sent unasked to every consumer that
 * holds a lease on it (a donor was lost); note says why ("" if nothing
 * to say). Same codec as SEGTAB after the note. */
struct rmp_wire_segtab_push {
	uint32_t pool_id;
	char note[RMP_WIRE_TEXT_MAX + 1];
	struct rmp_wire_segtab segtab;
};

struct rmp_wire_pool_close {
	uint32_t pool_id;
	uint64_t lease_id;
};

struct rmp_wire_pool_destroy {
	char name[RMP_WIRE_NAME_MAX + 1];
};

/* Forget a pool whose donors are gone (lost): its state and its shm
 * objects go; refused while any of its donors is live. ACKed. */
struct rmp_wire_pool_forget {
	char name[RMP_WIRE_NAME_MAX + 1];
};

struct rmp_wire_lease_renew {
	uint64_t lease_id;
};

struct rmp_wire_lease_grant {
	uint64_t lease_id;
	uint32_t ttl_ms;
};

struct rmp_wire_lease_expired {
	uint64_t lease_id;
	uint32_t pool_id;
};

/* Coordinator -> donor: tear down every RDMA connection of client
 * client_id and refuse its tokens from now on (its lease on pool_id
 * expired). Answered with CLIENT_CUT_ACK. */
struct rmp_wire_client_cut {
	uint32_t pool_id;
	uint64_t client_id;
};

/* Donor -> coordinator: the cut is in force (its connections are gone,
 * its tokens refused); dropped = connections it tore down. */
/* Coordinator -> consumer holding lease lease_id on pool_id: start no
 * allocation or free on the pool for hold_ms (1..RMP_WIRE_HOLD_MAX_MS)
 * from now; operations already on their way finish. A reclaim asks it
 * when its snapshots of a busy pool keep catching operations in flight
 * (DESIGN.md, "Reclaim of an expired consumer"). No answer. */
#define RMP_WIRE_HOLD_MAX_MS 1000u
struct rmp_wire_pool_hold {
	uint64_t lease_id;
	uint32_t pool_id;
	uint32_t hold_ms;
};

struct rmp_wire_client_cut_ack {
	uint32_t pool_id;
	uint32_t donor_id;
	uint64_t client_id;
	uint32_t dropped;
};

struct rmp_wire_pool_status {
	char name[RMP_WIRE_NAME_MAX + 1];
	uint32_t pool_id;
	uint64_t capacity;
	uint64_t space;
	uint64_t free_bytes;
	uint32_t clients;
	uint32_t donors;
	uint64_t segtab_version;
	uint8_t state;	       /* enum rmp_wire_pool_state */
	uint32_t donors_away;  /* recorded, not re-registered yet */
	uint32_t donors_lost;  /* did not come back, or died */
	uint64_t lost_bytes;   /* of the space, on lost donors */
	char note[RMP_WIRE_TEXT_MAX + 1]; /* why it is lost or degraded; "" */
};

struct rmp_wire_host_status {
	char host[RMP_WIRE_HOST_MAX + 1];
	uint32_t donors;
	uint64_t budget;
	uint64_t used;
};

struct rmp_wire_status_reply {
	uint64_t uptime_ms;
	uint64_t capacity; /* bytes in all pools */
	uint64_t free_bytes;
	uint32_t clients;
	uint32_t n_pools;
	struct rmp_wire_pool_status *pools;
	uint32_t n_hosts;
	struct rmp_wire_host_status *hosts;
	uint64_t generation; /* the coordinator's (as in AUTH_OK) */
};

struct rmp_wire_msg {
	enum rmp_wire_type type;
	union {
		struct rmp_wire_hello hello;
		struct rmp_wire_challenge challenge;
		struct rmp_wire_auth_proof auth_proof;
		struct rmp_wire_auth_ok auth_ok;
		struct rmp_wire_error error;
		struct rmp_wire_ack ack;
		struct rmp_wire_agent_register agent_register;
		struct rmp_wire_agent_registered agent_registered;
		struct rmp_wire_spawn spawn;
		struct rmp_wire_terminate terminate;
		struct rmp_wire_progress progress;
		struct rmp_wire_donor_register donor_register;
		struct rmp_wire_donor_accepted donor_accepted;
		struct rmp_wire_pool_open pool_open;
		struct rmp_wire_pool_ready pool_ready;
		struct rmp_wire_segtab_fetch segtab_fetch;
		struct rmp_wire_segtab_reply segtab;
		struct rmp_wire_segtab_push segtab_push;
		struct rmp_wire_pool_close pool_close;
		struct rmp_wire_pool_destroy pool_destroy;
		struct rmp_wire_pool_forget pool_forget;
		struct rmp_wire_lease_renew lease_renew;
		struct rmp_wire_lease_grant lease_grant;
		struct rmp_wire_lease_expired lease_expired;
		struct rmp_wire_client_cut client_cut;
		struct rmp_wire_client_cut_ack client_cut_ack;
		struct rmp_wire_pool_hold pool_hold;
		/* RMP_MSG_STATUS_REQUEST has an empty payload */
		struct rmp_wire_status_reply status;
	} u;
};

/* Why a frame was refused: one line, ready for the log. */
struct rmp_wire_err {
	char text[224];
};

struct rmp_wire_frame {
	uint8_t type;
	uint32_t payload_len;
	const uint8_t *payload; /* points into the caller's buffer */
	size_t frame_len;	/* header + payload */
};

/* Looks for one frame at the start of buf.
 * Returns its length (> 0) and fills *f when buf holds the whole frame;
 * 0 when more bytes are needed (*need, if not NULL, gets the least number
 * of further bytes that can complete it); or a negative errno, with the
 * reason in *err (may be NULL):
 *   -EPROTO          bad magic: not an rmpool peer
 *   -EPROTONOSUPPORT another protocol version
 *   -ENOMSG          unknown message type
 *   -EMSGSIZE        the length exceeds limit (RMP_WIRE_MAX_FRAME or,
 *                    before authentication, RMP_WIRE_PREAUTH_MAX_FRAME)
 * Errors are reported as soon as the bytes that show them have arrived. */
int rmp_wire_frame_parse(const void *buf, size_t avail, size_t limit, struct rmp_wire_frame *f,
			 size_t *need, struct rmp_wire_err *err);

/* Decodes the payload of a parsed frame. 0, or -EBADMSG (a field runs
 * past the payload, a count exceeds its maximum, a value is out of its
 * domain, bytes are left over) or -ENOMEM, with the reason in *err.
 * On error *m holds nothing that needs releasing. */
int rmp_wire_decode(const struct rmp_wire_frame *f, struct rmp_wire_msg *m,
		    struct rmp_wire_err *err);

/* Both steps on a buffer that must hold exactly one frame (tests, fuzz). */
int rmp_wire_decode_buf(const void *buf, size_t len, size_t limit, struct rmp_wire_msg *m,
			struct rmp_wire_err *err);

/* rmp_wire_decode_buf for a frame a state store kept (a recorded
 * segment table): also accepts a version-1 SEGTAB frame, whose donor
 * entries had no state (all serving). */
int rmp_wire_decode_record(const void *buf, size_t len, struct rmp_wire_msg *m,
			   struct rmp_wire_err *err);

/* Encodes a whole frame into buf. 0 and *len = frame length; -ENOSPC
 * when cap is too small (*len = the length needed: pass cap 0 to ask);
 * -EINVAL when a field is out of its domain (string too long or holding
 * control bytes, unknown enum, counts above their maxima, inconsistent
 * geometry), -EMSGSIZE above RMP_WIRE_MAX_FRAME. Never writes past cap. */
int rmp_wire_encode(const struct rmp_wire_msg *m, void *buf, size_t cap, size_t *len);

/* Frees what rmp_wire_decode allocated; leaves the message reusable. */
void rmp_wire_msg_release(struct rmp_wire_msg *m);

/* "POOL_OPEN", or NULL for a type this version does not know. */
const char *rmp_wire_type_name(unsigned type);
/* True for the handshake types a peer may send before it authenticates. */
bool rmp_wire_type_preauth(unsigned type);
/* Text for the codes the parser and decoder return. */
const char *rmp_wire_strerror(int rc);

/* The signed part of an rdma_cm private-data token (see auth.h), encoded
 * here so that byte order stays in this module. */
#define RMP_WIRE_TOKEN_BODY_LEN 24u
#define RMP_WIRE_TOKEN_VERSION 2u /* 2: bytes 2..3 carry the generation */

enum rmp_wire_token_kind {
	RMP_TOKEN_METADATA = 1, /* consumer -> coordinator, target = pool id */
	RMP_TOKEN_DONOR = 2,	/* consumer -> donor, target = donor id */
};

struct rmp_wire_token {
	uint8_t kind;
	uint32_t target_id;
	uint64_t client_id;
	uint64_t expires_ms; /* CLOCK_REALTIME, milliseconds since the epoch */
	uint16_t generation; /* low 16 bits of the coordinator's generation */
};

void rmp_wire_token_put(const struct rmp_wire_token *t, uint8_t out[RMP_WIRE_TOKEN_BODY_LEN]);
/* -EBADMSG for another token version, reserved bits, or an unknown kind. */
int rmp_wire_token_get(const uint8_t in[RMP_WIRE_TOKEN_BODY_LEN], struct rmp_wire_token *t);

#endif /* RMP_WIRE_H */
