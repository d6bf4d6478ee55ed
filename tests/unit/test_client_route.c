/* test_client_route.c - the data path's routing function (client/route.c)
 * on synthetic segment tables, without RDMA: the index maps every
 * segment to its donor's slot (first entry of a listed id; none for the
 * reserved tail and for an id the donor list lacks); pieces are cut at
 * segment boundaries and at the size asked for, carry the segment's
 * remote address and rkey, and tile a range over several donors exactly.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "route.h"

#define SEG_LOG2 22u /* 4 MiB segments, the coordinator's default */
#define SEG (UINT64_C(1) << SEG_LOG2)
#define PIECE (64u << 10)
#define NSEG 8u

/* Donors listed as 7, 3, 9 (slots 0, 1, 2); the segments are
 *   0,1: donor 7   2,3,4: donor 3   5: donor 9   6: donor 42 (unlisted)   7: reserved */
static struct rmp_wire_donor_entry donors[3];
static struct rmp_wire_segment segs[NSEG];
static struct rmp_wire_segtab st;

static void table(void)
{
	static const uint32_t ids[NSEG] = { 7, 7, 3, 3, 3, 9, 42, RMP_WIRE_SEG_RESERVED };

	memset(&st, 0, sizeof(st));
	donors[0].donor_id = 7;
	donors[1].donor_id = 3;
	donors[2].donor_id = 9;
	for (unsigned s = 0; s < NSEG; s++)
		segs[s] = (struct rmp_wire_segment){ .donor_id = ids[s], .rkey = 0x100 + s,
						     .addr = UINT64_C(0x7f0000000000) + (uint64_t)s * 0x10000000 };
	st.space_log2 = SEG_LOG2 + 3;
	st.segment_log2 = SEG_LOG2;
	st.min_block_log2 = 12;
	st.n_donors = 3;
	st.donors = donors;
	st.n_segments = NSEG;
	st.segments = segs;
}

TestSuite(client_route, .init = table);

Test(client_route, index_maps_segments_to_slots)
{
	struct rmp_route r;
	static const uint32_t want[NSEG] = { 0, 0, 1, 1, 1, 2, RMP_ROUTE_NO_SLOT, RMP_ROUTE_NO_SLOT };

	cr_assert_eq(rmp_route_build(&r, &st), 0);
	cr_assert_eq(r.n_segments, NSEG);
	cr_assert_eq(r.n_slots, 3);
	for (unsigned s = 0; s < NSEG; s++)
		cr_assert_eq(r.slot[s], want[s], "segment %u: slot %u, want %u", s, r.slot[s], want[s]);
	rmp_route_free(&r);
}

Test(client_route, a_donor_listed_twice_routes_to_its_first_slot)
{
	struct rmp_wire_donor_entry four[4] = { { .donor_id = 9 }, { .donor_id = 3 }, { .donor_id = 7 },
						{ .donor_id = 3 } };
	struct rmp_route r;

	st.donors = four;
	st.n_donors = 4;
	cr_assert_eq(rmp_route_build(&r, &st), 0);
	cr_assert_eq(r.slot[0], 2); /* 7 */
	cr_assert_eq(r.slot[2], 1); /* 3: slot 1, not 3 */
	cr_assert_eq(r.slot[5], 0); /* 9 */
	rmp_route_free(&r);
}

Test(client_route, piece_carries_the_segments_address_and_rkey)
{
	struct rmp_route r;
	struct rmp_route_piece pc;

	cr_assert_eq(rmp_route_build(&r, &st), 0);
	cr_assert_eq(rmp_route_range(&r, 2 * SEG + 12345, 100, PIECE, &pc), 0);
	cr_assert_eq(pc.off, 2 * SEG + 12345);
	cr_assert_eq(pc.len, 100);
	cr_assert_eq(pc.state, RMP_SEG_LIVE);
	cr_assert_eq(pc.n_targets, 1);
	cr_assert_eq(pc.target[0].slot, 1);
	cr_assert_eq(pc.target[0].rkey, 0x102);
	cr_assert_eq(pc.target[0].raddr, segs[2].addr + 12345);
	rmp_route_free(&r);
}

Test(client_route, pieces_stop_at_segment_boundaries_and_at_max)
{
	struct rmp_route r;
	struct rmp_route_piece pc;

	cr_assert_eq(rmp_route_build(&r, &st), 0);
	/* 100 bytes before the end of segment 1 (donor 7), 1000 asked for:
	 * the piece ends at the boundary; the next one starts segment 2
	 * (donor 3) at its region's first byte. */
	cr_assert_eq(rmp_route_range(&r, 2 * SEG - 100, 1000, PIECE, &pc), 0);
	cr_assert_eq(pc.len, 100);
	cr_assert_eq(pc.target[0].slot, 0);
	cr_assert_eq(pc.target[0].raddr, segs[1].addr + SEG - 100);
	cr_assert_eq(rmp_route_range(&r, 2 * SEG, 900, PIECE, &pc), 0);
	cr_assert_eq(pc.len, 900);
	cr_assert_eq(pc.target[0].slot, 1);
	cr_assert_eq(pc.target[0].raddr, segs[2].addr);
	/* max cuts inside a segment; len cuts below max */
	cr_assert_eq(rmp_route_range(&r, 0, 1u << 20, PIECE, &pc), 0);
	cr_assert_eq(pc.len, PIECE);
	cr_assert_eq(rmp_route_range(&r, 0, 4096, PIECE, &pc), 0);
	cr_assert_eq(pc.len, 4096);
	/* a whole segment, exactly */
	cr_assert_eq(rmp_route_range(&r, 3 * SEG, SEG, SEG, &pc), 0);
	cr_assert_eq(pc.len, SEG);
	/* max = the range: one piece per segment (the transfer's donor pass) */
	cr_assert_eq(rmp_route_range(&r, SEG / 2, 3 * SEG, 3 * SEG, &pc), 0);
	cr_assert_eq(pc.len, SEG / 2);
	rmp_route_free(&r);
}

Test(client_route, a_range_over_three_donors_is_tiled_exactly)
{
	struct rmp_route r;
	uint64_t per_slot[3] = { 0 }, pieces = 0;
	/* from 3 pieces and 7 bytes before the end of segment 0 to 11 bytes
	 * into segment 5 */
	uint64_t off = SEG - 3 * PIECE - 7, len = 5 * SEG + 11 - off;

	cr_assert_eq(rmp_route_build(&r, &st), 0);
	for (uint64_t pos = 0; pos < len;) {
		struct rmp_route_piece pc;
		cr_assert_eq(rmp_route_range(&r, off + pos, len - pos, PIECE, &pc), 0, "at %#llx",
			     (unsigned long long)(off + pos));
		uint64_t s = pc.off >> SEG_LOG2;
		cr_assert_eq(pc.off, off + pos);
		cr_assert(pc.len > 0 && pc.len <= PIECE);
		cr_assert_eq((pc.off + pc.len - 1) >> SEG_LOG2, s, "piece crosses a segment boundary");
		cr_assert_eq(pc.target[0].raddr, segs[s].addr + (pc.off & (SEG - 1)));
		cr_assert_eq(pc.target[0].rkey, segs[s].rkey);
		per_slot[pc.target[0].slot] += pc.len;
		pieces++;
		pos += pc.len;
	}
	cr_assert_eq(per_slot[0], 2 * SEG - off);             /* the tail of 0, all of 1 */
	cr_assert_eq(per_slot[1], 3 * SEG);                   /* 2, 3, 4 */
	cr_assert_eq(per_slot[2], off + len - 5 * SEG);       /* the head of 5 */
	/* segment 0: 3 whole pieces and a 7-byte one (the cut at max keeps
	 * its phase from the start of the range, not from the segment) */
	cr_assert_eq(pieces, 4 + 4 * (SEG / PIECE) + 1);
	rmp_route_free(&r);
}

Test(client_route, reserved_and_unlisted_segments_have_no_target)
{
	struct rmp_route r;
	struct rmp_route_piece pc;

	cr_assert_eq(rmp_route_build(&r, &st), 0);
	cr_assert_eq(rmp_route_range(&r, 7 * SEG + 5, 10, PIECE, &pc), -EFAULT);
	cr_assert_eq(pc.state, RMP_SEG_RESERVED);
	cr_assert_eq(pc.n_targets, 0);
	cr_assert_eq(pc.len, 10);
	cr_assert_eq(rmp_route_range(&r, 6 * SEG, SEG, SEG, &pc), -EFAULT); /* donor 42 */
	cr_assert_eq(pc.n_targets, 0);
	/* the last live byte still routes */
	cr_assert_eq(rmp_route_range(&r, 6 * SEG - 1, 1, PIECE, &pc), 0);
	cr_assert_eq(pc.target[0].slot, 2);
	rmp_route_free(&r);
}

Test(client_route, an_empty_donor_list_routes_nothing)
{
	struct rmp_route r;
	struct rmp_route_piece pc;

	st.n_donors = 0;
	st.donors = NULL;
	cr_assert_eq(rmp_route_build(&r, &st), 0);
	for (unsigned s = 0; s < NSEG; s++)
		cr_assert_eq(rmp_route_range(&r, (uint64_t)s * SEG, 1, PIECE, &pc), -EFAULT);
	rmp_route_free(&r);
}
