/* layout.h - where each donor's memory goes in a pool's address space,
 * and the segment table that says so (DESIGN.md 3). Pure: no I/O.
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

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* Region sizes and pool addresses for `donors` donors of at most
 * region_max bytes each, after a coordinator share of self_len bytes, so
 * that together they back capacity rounded up to segment_size.
 * self_len and region_max must be multiples of segment_size.
 * region_len[i], base[i] for each donor; *self_used gets the share
 * actually used (it may exceed the need). 0, or -EINVAL (bad arguments,
 * or the donors are too few or too many for the capacity). */
int rmp_srv_layout_regions(uint64_t capacity, uint64_t segment_size, uint64_t self_len,
			   uint64_t region_max, uint64_t donors, uint64_t *region_len,
			   uint64_t *base, uint64_t *self_used);

/* The same with standalone donors (DESIGN.md 3, issue 4): regions that
 * donors started on their own offered before the pool was asked for.
 * They go right after the coordinator's share, in the order given:
 * fixed_len[i] bytes (a whole number of segments, > 0) at fixed_base[i];
 * the spawned donors back what is left, as above. The fixed regions may
 * not cover more than the need left after the share (-EINVAL). */
int rmp_srv_layout_mixed(uint64_t capacity, uint64_t segment_size, uint64_t self_len,
			 const uint64_t *fixed_len, size_t n_fixed, uint64_t *fixed_base,
			 uint64_t region_max, uint64_t donors, uint64_t *region_len,
			 uint64_t *base, uint64_t *self_used);

/* Chooses spare standalone regions (spare_len[i]: whole segments) for a
 * need of `need` bytes (whole segments): while no unused region covers
 * what is left, the largest unused one is taken whole; then the smallest
 * one that covers the rest is taken for just that rest (best fit: as
 * little offered memory as possible sits idle in the pool). take[i] gets
 * the bytes used of region i (0: not used). Returns the bytes taken, at
 * most need; need minus that is for spawned donors. */
uint64_t rmp_srv_layout_pick_spare(uint64_t need, const uint64_t *spare_len, size_t n,
				   uint64_t *take);

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

#endif /* RMP_SRV_LAYOUT_H */
