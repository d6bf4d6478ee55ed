/* adopt.h - the pure part of taking a recorded pool back after a
 * coordinator restart (DESIGN.md, "Re-adoption"); recover.c does the I/O
 * (shm, RDMA registration, the state store) and calls these. No clock,
 * no I/O: every input is an argument, so each rule is unit-tested.
 *
 *   metadata check   a re-opened shm object must hold buddy metadata of
 *                    the layout version this code reads, with exactly the
 *                    geometry and usable size the record says; anything
 *                    else is refused with one line naming the object, and
 *                    the object is left as it is (never re-formatted);
 *   segment table    stored in the state as a SEGTAB frame of the wire
 *                    codec (which owns all byte order); after re-adoption
 *                    the metadata region (new address and key), the
 *                    coordinator's endpoint and its own share (new key)
 *                    are patched in and the version goes up by one; the
 *                    donors' segments keep their address and key, because
 *                    a donor is taken back only with the region it had;
 *   donors           a re-registering donor must present the recorded pid,
 *                    region {addr, len, rkey} and rdma endpoint;
 *   leases           restored with a grace: they expire no earlier than
 *                    one lease period after the restart.
 */
#ifndef RMP_SRV_ADOPT_H
#define RMP_SRV_ADOPT_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* What the record says a pool's metadata object holds. */
struct rmp_srv_adopt_expect {
	const char *shm_name; /* for the messages */
	unsigned space_log2, min_block_log2;
	uint64_t capacity; /* usable bytes asked for (rounded up to a block in the header) */
};

/* Checks the metadata region words[0 .. len_bytes/8) against the record.
 * 0; -EPROTONOSUPPORT (buddy metadata of another layout version) or
 * -EPROTO (not buddy metadata, or another geometry or size), with one
 * line in err. */
int rmp_srv_adopt_check_meta(const uint64_t *words, uint64_t len_bytes,
			     const struct rmp_srv_adopt_expect *want, char *err, size_t errlen);

/* The segment table as the state stores it: a SEGTAB frame (malloc'ed,
 * *out; free() it). 0, -ENOMEM or the codec's -EINVAL. */
int rmp_srv_adopt_segtab_encode(uint32_t pool_id, const struct rmp_wire_segtab *t, uint8_t **out,
				size_t *len);
/* Back from the state: *t owns its arrays (free t->donors and
 * t->segments). -EPROTO with one line in err when the blob is not a
 * SEGTAB frame of pool_id. */
int rmp_srv_adopt_segtab_decode(const uint8_t *blob, size_t len, uint32_t pool_id,
				struct rmp_wire_segtab *t, char *err, size_t errlen);

/* What changed at re-adoption. */
struct rmp_srv_adopt_patch {
	struct rmp_wire_region meta;	      /* the metadata, registered again */
	struct rmp_wire_endpoint coordinator; /* this coordinator's rdma_cm listener */
	uint32_t self_donor_id;		      /* 0: no share of its own */
	struct rmp_wire_region self;	      /* its share, registered again */
};

/* Patches a recorded table in place and raises its version by one: the
 * metadata region and the coordinator's endpoint; the coordinator's own
 * donor entry gets that endpoint and its segments (from pool address 0,
 * where the layout puts its share) the new key and address. -EPROTO with
 * one line in err when the share's segments run past its region. */
int rmp_srv_adopt_segtab_patch(struct rmp_wire_segtab *t, const struct rmp_srv_adopt_patch *pt,
			       char *err, size_t errlen);

/* Bytes of the space that donor_id backs in t. */
uint64_t rmp_srv_adopt_donor_bytes(const struct rmp_wire_segtab *t, uint32_t donor_id);

/* A recorded donor, and what it presents when it registers again. */
struct rmp_srv_adopt_donor {
	uint32_t pid;
	struct rmp_wire_region region;
	struct rmp_wire_endpoint endpoint;
};

/* 0 when `got` is the recorded donor; -EINVAL with what differs in err. */
int rmp_srv_adopt_donor_check(uint32_t donor_id, const struct rmp_srv_adopt_donor *rec,
			      const struct rmp_srv_adopt_donor *got, char *err, size_t errlen);

/* The monotonic deadline of a restored lease: now_mono plus whatever is
 * left of its recorded wall-clock expiry, but at least one period. */
uint64_t rmp_srv_adopt_lease_deadline(uint64_t recorded_wall_ms, uint64_t now_wall_ms,
				      uint64_t now_mono_ms, uint64_t period_ms);

#endif /* RMP_SRV_ADOPT_H */
