/* layout.c - see layout.h. */
#include "layout.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

static int is_pow2(uint64_t x)
{
	return x && (x & (x - 1)) == 0;
}

int rmp_srv_layout_mixed(uint64_t capacity, uint64_t segment_size, uint64_t self_len,
			 const uint64_t *fixed_len, size_t n_fixed, uint64_t *fixed_base,
			 uint64_t region_max, uint64_t donors, uint64_t *region_len,
			 uint64_t *base, uint64_t *self_used)
{
	if (capacity == 0 || !is_pow2(segment_size) || (self_len & (segment_size - 1)) ||
	    (region_max & (segment_size - 1)) || (donors && region_max == 0))
		return -EINVAL;
	uint64_t mask = segment_size - 1;
	if (capacity > UINT64_MAX - mask)
		return -EINVAL;
	uint64_t need = (capacity + mask) & ~mask;
	uint64_t own = self_len < need ? self_len : need;
	uint64_t rest = need - own;
	uint64_t at = own;

	for (size_t i = 0; i < n_fixed; i++) {
		if (fixed_len[i] == 0 || (fixed_len[i] & mask) || fixed_len[i] > rest)
			return -EINVAL;
		fixed_base[i] = at;
		at += fixed_len[i];
		rest -= fixed_len[i];
	}
	/* Exactly enough donors: one too many would get an empty region. */
	uint64_t want = rest / (region_max ? region_max : 1) +
			(region_max && rest % region_max != 0);
	if (donors != want)
		return -EINVAL;
	for (uint64_t i = 0; i < donors; i++) {
		uint64_t len = rest < region_max ? rest : region_max;
		region_len[i] = len;
		base[i] = at;
		at += len;
		rest -= len;
	}
	if (self_used)
		*self_used = own;
	return 0;
}

int rmp_srv_layout_regions(uint64_t capacity, uint64_t segment_size, uint64_t self_len,
			   uint64_t region_max, uint64_t donors, uint64_t *region_len,
			   uint64_t *base, uint64_t *self_used)
{
	return rmp_srv_layout_mixed(capacity, segment_size, self_len, NULL, 0, NULL, region_max,
				    donors, region_len, base, self_used);
}

uint64_t rmp_srv_layout_pick_spare(uint64_t need, const uint64_t *spare_len, size_t n,
				   uint64_t *take)
{
	uint64_t rest = need;

	for (size_t i = 0; i < n; i++)
		take[i] = 0;
	while (rest > 0) {
		size_t fit = n, big = n;
		for (size_t i = 0; i < n; i++) {
			if (take[i] || spare_len[i] == 0)
				continue;
			if (spare_len[i] >= rest && (fit == n || spare_len[i] < spare_len[fit]))
				fit = i;
			if (big == n || spare_len[i] > spare_len[big])
				big = i;
		}
		if (fit < n) {
			take[fit] = rest;
			rest = 0;
		} else if (big < n) {
			take[big] = spare_len[big];
			rest -= spare_len[big];
		} else {
			break;
		}
	}
	return need - rest;
}

int rmp_srv_segtab_fill(struct rmp_wire_segment *segs, uint64_t n_segments, unsigned segment_log2,
			const struct rmp_srv_backing *b, size_t n, char *err, size_t errlen)
{
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
