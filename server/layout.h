/* layout.h - where each donor's memory goes in a pool's address space,
 * and the segment table that says so (DESIGN.md, "The global
 * address space"). Pure: no I/O.
 *
 * The space [0, 2^M) is filled from the bottom, in whole segments: the
 * coordinator's own share first (if any), then the standalone donors'
 * regions (if any), then each spawned donor in order. The
 * usable part, capacity rounded up to a segment, is split so that every
 * donor but the last holds a full region and the last holds what is left;
 * a donor is never asked for more memory than the pool will map. What no
 * one backs is the reserved tail: its segments carry
 * RMP_WIRE_SEG_RESERVED and the buddy heap never hands them out.
 */
#ifndef RMP_SRV_LAYOUT_H
#define RMP_SRV_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* One piece of the space: len bytes at pool address base, both whole
 * segments. */
struct rmp_srv_layout_region {
	uint64_t len;
	uint64_t base;
};

/* What the space is cut for. */
struct rmp_srv_layout_req {
	uint64_t capacity;     /* usable bytes (> 0); the need is this rounded up to segments */
	uint64_t segment_size; /* power of two */
	uint64_t self_len;     /* the coordinator's share on offer, whole segments */
	uint64_t region_max;   /* most one spawned donor holds, whole segments */
};

/* Lays the regions out from the bottom of the space: the coordinator's
 * share (*self_used gets the part used, at most the need; NULL is fine),
 * then the standalone donors' regions (issue 4: offered before the
 * pool was asked for) in the order given, each fixed[i].len
 * bytes (whole segments, > 0) at fixed[i].base, then the n_spawned
 * spawned donors, spawned[i].len and .base, every one full but the last.
 * 0, or -EINVAL: bad arguments, fixed regions covering more than the need
 * left after the share, or n_spawned too few or too many for the rest. */
int rmp_srv_layout_regions(const struct rmp_srv_layout_req *rq, struct rmp_srv_layout_region *fixed,
			   size_t n_fixed, struct rmp_srv_layout_region *spawned,
			   uint64_t n_spawned, uint64_t *self_used);

/* A spare standalone region, and what a pool takes of it. */
struct rmp_srv_layout_spare {
	uint64_t offered; /* in: whole segments */
	uint64_t take;	  /* out: bytes used of it (0: not used) */
};

/* Chooses spare standalone regions for a need of `need` bytes (whole
 * segments): while no unused region covers what is left, the largest
 * unused one is taken whole; then the smallest one that covers the rest
 * is taken for just that rest (best fit: as little offered memory as
 * possible sits idle in the pool). Returns the bytes taken, at most need;
 * need minus that is for spawned donors. */
uint64_t rmp_srv_layout_pick_spare(uint64_t need, struct rmp_srv_layout_spare *spare, size_t n);

/* One contiguous piece of registered memory at pool address `base`. */
struct rmp_srv_backing {
	uint32_t donor_id;
	uint32_t rkey;
	uint64_t addr; /* remote virtual address of the piece's first byte */
	uint64_t len;  /* whole segments */
	uint64_t base; /* pool address, segment-aligned */
};

/* Fills segs[0..n_segments) from the backings: every segment inside one
 * gets (donor, addr + offset, rkey), every other one is reserved.
 * -EINVAL with a reason in err when a backing is misaligned, runs past
 * the space, or overlaps another. */
int rmp_srv_segtab_fill(struct rmp_wire_segment *segs, uint64_t n_segments, unsigned segment_log2,
			const struct rmp_srv_backing *b, size_t n, char *err, size_t errlen);

/* Bytes of the space with memory behind them. */
uint64_t rmp_srv_segtab_backed(const struct rmp_wire_segment *segs, uint64_t n_segments,
			       unsigned segment_log2);

/* A donor dies (DESIGN.md, "Donor death"): its entry in t is marked
 * RMP_DONOR_LOST and t->capacity becomes `asked` (the pool's capacity at
 * creation) less the bytes below it on every lost donor. The version is
 * the caller's to raise. 1: marked now; 0: it was lost already (nothing
 * changed); -ENOENT: no such donor in t. */
int rmp_srv_segtab_donor_lost(struct rmp_wire_segtab *t, uint32_t donor_id, uint64_t asked);

/* Whether the donor entry of donor_id in t is lost. */
bool rmp_srv_segtab_is_lost(const struct rmp_wire_segtab *t, uint32_t donor_id);

/* Bytes of t's usable range [0, usable) whose segments lie on lost donors. */
uint64_t rmp_srv_segtab_lost_usable(const struct rmp_wire_segtab *t, uint64_t usable);

/* The segments of lost donors that hold usable bytes (below `usable`),
 * in order: up to cap indexes into out; returns how many there are. */
uint32_t rmp_srv_segtab_lost_segments(const struct rmp_wire_segtab *t, uint64_t usable,
				      uint32_t *out, uint32_t cap);

#endif /* RMP_SRV_LAYOUT_H */
