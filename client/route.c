/*
 * route.c - the segment index and the routing function (route.h).
 *
 * The index is an array of donor slots, one per segment (the decoder
 * bounds the table at RMP_WIRE_MAX_SEGMENTS entries: at most 128 KiB).
 * It is built by sorting (donor id, slot) pairs once and looking every
 * segment's donor id up in them, instead of a linear scan of the donor
 * list per segment on every transfer. After the build it is read-only,
 * so transfers on any number of threads use it without a lock.
 *
 * Invariants: slot[s] < n_slots or RMP_ROUTE_NO_SLOT; a piece lies inside
 * one segment and inside the range asked for.
 */
#include <errno.h>
#include <stdlib.h>

#include "debug.h"
#include "route.h"

struct id_slot {
	uint32_t id, slot;
};

static int cmp_id_slot(const void *a, const void *b)
{
	const struct id_slot *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* The first slot of donor id in sorted ids[0..n), or RMP_ROUTE_NO_SLOT. */
static uint32_t slot_of(const struct id_slot *ids, unsigned n, uint32_t id)
{
	unsigned lo = 0, hi = n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (ids[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && ids[lo].id == id ? ids[lo].slot : RMP_ROUTE_NO_SLOT;
}

int rmp_route_build(struct rmp_route *r, const struct rmp_wire_segtab *st)
{
	struct id_slot *ids = calloc(st->n_donors ? st->n_donors : 1, sizeof(*ids));

	*r = (struct rmp_route){ .segs = st->segments, .n_segments = st->n_segments,
				 .seg_log2 = st->segment_log2, .n_slots = st->n_donors };
	r->slot = calloc(st->n_segments ? st->n_segments : 1, sizeof(*r->slot));
	if (!ids || !r->slot) {
		free(ids);
		rmp_route_free(r);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < st->n_donors; i++)
		ids[i] = (struct id_slot){ .id = st->donors[i].donor_id, .slot = i };
	qsort(ids, st->n_donors, sizeof(*ids), cmp_id_slot);
	for (uint32_t s = 0; s < st->n_segments; s++) {
		uint32_t id = st->segments[s].donor_id;
		r->slot[s] = id == RMP_WIRE_SEG_RESERVED ? RMP_ROUTE_NO_SLOT : slot_of(ids, st->n_donors, id);
	}
	free(ids);
	return 0;
}

void rmp_route_free(struct rmp_route *r)
{
	free(r->slot);
	r->slot = NULL;
	r->n_segments = 0;
}

int rmp_route_range(const struct rmp_route *r, uint64_t off, uint64_t len, uint64_t max,
		    struct rmp_route_piece *pc)
{
	uint64_t seg_size = UINT64_C(1) << r->seg_log2;
	uint64_t s = off >> r->seg_log2, in_seg = off & (seg_size - 1);

	rmp_assert(len > 0 && max > 0);
	rmp_assert(s < r->n_segments);
	rmp_assert(len <= (r->n_segments << r->seg_log2) - off); /* inside the space */
	uint64_t n = seg_size - in_seg;
	if (n > len)
		n = len;
	if (n > max)
		n = max;
	pc->off = off;
	pc->len = n;
	rmp_assert(in_seg + n <= seg_size); /* inside one segment */

	uint32_t slot = r->slot[s];
	if (slot == RMP_ROUTE_NO_SLOT) {
		pc->state = RMP_SEG_RESERVED;
		pc->n_targets = 0;
		return -EFAULT;
	}
	rmp_assert(slot < r->n_slots);
	pc->state = RMP_SEG_LIVE;
	pc->n_targets = 1;
	pc->target[0] = (struct rmp_route_target){ .slot = slot, .rkey = r->segs[s].rkey,
						   .raddr = r->segs[s].addr + in_seg };
	return 0;
}
