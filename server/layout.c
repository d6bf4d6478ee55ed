/* layout.c - see layout.h. */
#include "layout.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "debug.h"

static int is_pow2(uint64_t x)
{
	return x && (x & (x - 1)) == 0;
}

int rmp_srv_layout_regions(const struct rmp_srv_layout_req *rq, struct rmp_srv_layout_region *fixed,
			   size_t n_fixed, struct rmp_srv_layout_region *spawned,
			   uint64_t n_spawned, uint64_t *self_used)
{
	uint64_t seg = rq->segment_size, region_max = rq->region_max;

	if (rq->capacity == 0 || !is_pow2(seg) || (rq->self_len & (seg - 1)) ||
	    (region_max & (seg - 1)) || (n_spawned && region_max == 0))
		return -EINVAL;
	uint64_t mask = seg - 1;
	if (rq->capacity > UINT64_MAX - mask)
		return -EINVAL;
	uint64_t need = (rq->capacity + mask) & ~mask;
	uint64_t own = rq->self_len < need ? rq->self_len : need;
	uint64_t rest = need - own;
	uint64_t at = own;

	for (size_t i = 0; i < n_fixed; i++) {
		if (fixed[i].len == 0 || (fixed[i].len & mask) || fixed[i].len > rest)
			return -EINVAL;
		fixed[i].base = at;
		at += fixed[i].len;
		rest -= fixed[i].len;
	}
	/* Exactly enough donors: one too many would get an empty region. */
	uint64_t want = rest / (region_max ? region_max : 1) +
			(region_max && rest % region_max != 0);
	if (n_spawned != want)
		return -EINVAL;
	for (uint64_t i = 0; i < n_spawned; i++) {
		uint64_t len = rest < region_max ? rest : region_max;
		spawned[i] = (struct rmp_srv_layout_region){ .len = len, .base = at };
		at += len;
		rest -= len;
	}
	rmp_assert(rest == 0 && at == need); /* the pieces tile the need exactly */
	if (self_used)
		*self_used = own;
	return 0;
}

uint64_t rmp_srv_layout_pick_spare(uint64_t need, struct rmp_srv_layout_spare *spare, size_t n)
{
	uint64_t rest = need;

	for (size_t i = 0; i < n; i++)
		spare[i].take = 0;
	while (rest > 0) {
		size_t fit = n, big = n;
		for (size_t i = 0; i < n; i++) {
			uint64_t len = spare[i].offered;
			if (spare[i].take || len == 0)
				continue;
			if (len >= rest && (fit == n || len < spare[fit].offered))
				fit = i;
			if (big == n || len > spare[big].offered)
				big = i;
		}
		if (fit < n) {
			spare[fit].take = rest;
			rest = 0;
		} else if (big < n) {
			spare[big].take = spare[big].offered;
			rest -= spare[big].offered;
		} else {
			break;
		}
	}
	return need - rest;
}

int rmp_srv_segtab_fill(struct rmp_wire_segment *segs, uint64_t n_segments, unsigned segment_log2,
			const struct rmp_srv_backing *b, size_t n, char *err, size_t errlen)
{
	rmp_assert(segment_log2 < 64);
	uint64_t seg = UINT64_C(1) << segment_log2;

	for (uint64_t j = 0; j < n_segments; j++)
		segs[j] = (struct rmp_wire_segment){ .donor_id = RMP_WIRE_SEG_RESERVED };
	for (size_t i = 0; i < n; i++) {
		if ((b[i].base | b[i].len) & (seg - 1)) {
			snprintf(err, errlen,
				 "donor %" PRIu32 ": base %" PRIu64 " or length %" PRIu64
				 " is not a whole number of %" PRIu64 "-byte segments",
				 b[i].donor_id, b[i].base, b[i].len, seg);
			return -EINVAL;
		}
		uint64_t first = b[i].base >> segment_log2, count = b[i].len >> segment_log2;
		if (first > n_segments || count > n_segments - first) {
			snprintf(err, errlen,
				 "donor %" PRIu32 ": segments [%" PRIu64 ", %" PRIu64
				 ") run past the %" PRIu64 " of the space",
				 b[i].donor_id, first, first + count, n_segments);
			return -EINVAL;
		}
		for (uint64_t j = 0; j < count; j++) {
			struct rmp_wire_segment *s = &segs[first + j];
			if (s->donor_id != RMP_WIRE_SEG_RESERVED) {
				snprintf(err, errlen,
					 "donors %" PRIu32 " and %" PRIu32 " both claim segment %" PRIu64,
					 s->donor_id, b[i].donor_id, first + j);
				return -EINVAL;
			}
			s->donor_id = b[i].donor_id;
			s->rkey = b[i].rkey;
			s->addr = b[i].addr + (j << segment_log2);
		}
	}
	return 0;
}

uint64_t rmp_srv_segtab_backed(const struct rmp_wire_segment *segs, uint64_t n_segments,
			       unsigned segment_log2)
{
	uint64_t n = 0;

	for (uint64_t j = 0; j < n_segments; j++)
		n += segs[j].donor_id != RMP_WIRE_SEG_RESERVED;
	return n << segment_log2;
}

bool rmp_srv_segtab_is_lost(const struct rmp_wire_segtab *t, uint32_t donor_id)
{
	for (uint32_t i = 0; i < t->n_donors; i++)
		if (t->donors[i].donor_id == donor_id)
			return t->donors[i].state == RMP_DONOR_LOST;
	return false;
}

/* Bytes of segment j below `limit`. */
static uint64_t seg_below(uint64_t j, unsigned segment_log2, uint64_t limit)
{
	uint64_t start = j << segment_log2, len = UINT64_C(1) << segment_log2;

	if (start >= limit)
		return 0;
	return limit - start < len ? limit - start : len;
}

uint64_t rmp_srv_segtab_lost_usable(const struct rmp_wire_segtab *t, uint64_t usable)
{
	uint64_t n = 0;

	for (uint32_t j = 0; j < t->n_segments; j++)
		if (t->segments[j].donor_id != RMP_WIRE_SEG_RESERVED &&
		    rmp_srv_segtab_is_lost(t, t->segments[j].donor_id))
			n += seg_below(j, t->segment_log2, usable);
	return n;
}

uint32_t rmp_srv_segtab_lost_segments(const struct rmp_wire_segtab *t, uint64_t usable,
				      uint32_t *out, uint32_t cap)
{
	uint32_t n = 0;

	for (uint32_t j = 0; j < t->n_segments; j++) {
		if (t->segments[j].donor_id == RMP_WIRE_SEG_RESERVED ||
		    !rmp_srv_segtab_is_lost(t, t->segments[j].donor_id) ||
		    seg_below(j, t->segment_log2, usable) == 0)
			continue;
		if (n < cap)
			out[n] = j;
		n++;
	}
	return n;
}

int rmp_srv_segtab_donor_lost(struct rmp_wire_segtab *t, uint32_t donor_id, uint64_t asked)
{
	struct rmp_wire_donor_entry *e = NULL;

	for (uint32_t i = 0; i < t->n_donors && !e; i++)
		if (t->donors[i].donor_id == donor_id)
			e = &t->donors[i];
	if (!e)
		return -ENOENT;
	if (e->state == RMP_DONOR_LOST)
		return 0;
	e->state = RMP_DONOR_LOST;
	uint64_t lost = rmp_srv_segtab_lost_usable(t, asked);
	rmp_assert(lost <= asked);
	t->capacity = asked - lost;
	return 1;
}
