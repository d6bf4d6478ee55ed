/*
 * route.h - where the bytes of a pool range live: the one routing
 * function of the data path.
 *
 * A pool offset lies in segment s = off >> segment_log2; the segment
 * table says which donor backs s and at which remote address and rkey.
 * rmp_route_build turns the table into an index once, when the data path
 * takes the table in: for every segment the slot of its donor in the
 * table's donor list (the data path's donor array has the same order),
 * so routing costs O(1) per segment and no search.
 *
 * rmp_route_range cuts a range into pieces: a piece never crosses a
 * segment boundary and is at most `max` bytes, and it carries up to
 * RMP_MAX_REPLICAS targets (donor slot, remote address, rkey) and the
 * state of its segment. Today every segment has one copy (R = 1) and is
 * live or reserved. The failure model of the open issues changes this
 * function only: a dead donor's segments become unavailable (or route to
 * a surviving replica first), replication gives writes several targets
 * (reads use the first), migration routes a segment to its old and new
 * home. The transfer pipeline (transfer.c) posts a piece to the targets
 * it is given and nothing else, so it need not change with them.
 */
#ifndef RMP_ROUTE_H
#define RMP_ROUTE_H

#include <stdint.h>

#include "wire.h"

/* Copies of a segment a piece may name. Room for the replication issue;
 * today's segment tables have one. */
#define RMP_MAX_REPLICAS 3u
/* An index entry whose segment has no donor: the reserved tail, or a
 * donor id the table's donor list does not carry. */
#define RMP_ROUTE_NO_SLOT UINT32_MAX

enum rmp_seg_state {
	RMP_SEG_LIVE = 0,     /* its targets hold the data and answer */
	RMP_SEG_RESERVED,     /* no memory behind it, no targets: the reserved tail
			       * (or a donor id the donor list lacks) */
	RMP_SEG_UNAVAILABLE,  /* its donor is gone (not produced yet: donor death) */
	RMP_SEG_MIGRATING,    /* moving to a new donor (not produced yet: migration) */
};

struct rmp_route_target {
	uint32_t slot;  /* the donor's index in the segment table's donor list */
	uint32_t rkey;
	uint64_t raddr; /* remote address of the piece's first byte */
};

struct rmp_route_piece {
	uint64_t off;             /* pool offset of its first byte */
	uint64_t len;             /* 1..max, inside one segment */
	enum rmp_seg_state state;
	unsigned n_targets;       /* 0 (not live) .. RMP_MAX_REPLICAS; reads use target[0] */
	struct rmp_route_target target[RMP_MAX_REPLICAS];
};

struct rmp_route {
	const struct rmp_wire_segment *segs; /* the pool's table (not owned; outlives this) */
	uint32_t *slot;                      /* per segment: donor slot or RMP_ROUTE_NO_SLOT */
	uint64_t n_segments;
	unsigned seg_log2;
	unsigned n_slots;                    /* donors in the table */
};

/* Builds the index of st (which must outlive r): O(segments x log
 * donors), once. Where the table lists a donor id twice, the first entry
 * is its slot. 0 or -ENOMEM. */
int rmp_route_build(struct rmp_route *r, const struct rmp_wire_segtab *st);
void rmp_route_free(struct rmp_route *r);

/* The first piece of pool range [off, off + len) (len > 0, the range
 * inside the pool's space): at most max bytes (> 0), not past the end of
 * off's segment. 0 with *pc filled; -EFAULT when the segment has no live
 * target (*pc still says its length and state, with no targets): the
 * caller fails the transfer. O(1). */
int rmp_route_range(const struct rmp_route *r, uint64_t off, uint64_t len, uint64_t max,
		    struct rmp_route_piece *pc);

#endif /* RMP_ROUTE_H */
