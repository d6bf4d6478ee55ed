/* test_server_layout.c - server/layout.c: donor regions cover exactly the
 * capacity rounded up to segments, the last donor holds only what is
 * left, and the segment table maps every backed segment once and
 * reserves the tail. Also the sizing -> layout glue the coordinator
 * runs (common/sizing.h plan and geometry feeding the layout).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "layout.h"
#include "sizing.h"

#define MiB (UINT64_C(1) << 20)

Test(server_layout, regions_split_the_capacity)
{
	uint64_t len[8], base[8], self = 1;

	/* 100 MiB in 4 MiB segments, 40 MiB per donor, no self share:
	 * 100 MiB -> 40 + 40 + 20. */
	cr_assert_eq(rmp_srv_layout_regions(100 * MiB, 4 * MiB, 0, 40 * MiB, 3, len, base, &self),
		     0);
	cr_assert_eq(self, 0);
	cr_assert_eq(len[0], 40 * MiB);
	cr_assert_eq(len[1], 40 * MiB);
	cr_assert_eq(len[2], 20 * MiB);
	cr_assert_eq(base[0], 0);
	cr_assert_eq(base[1], 40 * MiB);
	cr_assert_eq(base[2], 80 * MiB);
}

Test(server_layout, capacity_rounds_up_to_segments)
{
	uint64_t len[2], base[2], self;

	/* 10 MiB + 1 byte needs three 4 MiB segments: 12 MiB. */
	cr_assert_eq(rmp_srv_layout_regions(10 * MiB + 1, 4 * MiB, 0, 8 * MiB, 2, len, base, &self),
		     0);
	cr_assert_eq(len[0] + len[1], 12 * MiB);
	cr_assert_eq(len[1], 4 * MiB);
}

Test(server_layout, self_share_comes_first)
{
	uint64_t len[2], base[2], self;

	cr_assert_eq(rmp_srv_layout_regions(64 * MiB, 4 * MiB, 16 * MiB, 32 * MiB, 2, len, base,
					    &self),
		     0);
	cr_assert_eq(self, 16 * MiB);
	cr_assert_eq(base[0], 16 * MiB);
	cr_assert_eq(len[0], 32 * MiB);
	cr_assert_eq(base[1], 48 * MiB);
	cr_assert_eq(len[1], 16 * MiB);
	/* A share larger than the pool is cut to the need; no donor then. */
	cr_assert_eq(rmp_srv_layout_regions(8 * MiB, 4 * MiB, 64 * MiB, 32 * MiB, 0, len, base,
					    &self),
		     0);
	cr_assert_eq(self, 8 * MiB);
}

Test(server_layout, wrong_donor_count_refused)
{
	uint64_t len[4], base[4];

	cr_assert_eq(rmp_srv_layout_regions(100 * MiB, 4 * MiB, 0, 40 * MiB, 2, len, base, NULL),
		     -EINVAL);
	cr_assert_eq(rmp_srv_layout_regions(100 * MiB, 4 * MiB, 0, 40 * MiB, 4, len, base, NULL),
		     -EINVAL);
	cr_assert_eq(rmp_srv_layout_regions(100 * MiB, 3 * MiB, 0, 40 * MiB, 3, len, base, NULL),
		     -EINVAL);
	cr_assert_eq(rmp_srv_layout_regions(100 * MiB, 4 * MiB, 0, 41 * MiB, 3, len, base, NULL),
		     -EINVAL);
	cr_assert_eq(rmp_srv_layout_regions(0, 4 * MiB, 0, 40 * MiB, 0, len, base, NULL), -EINVAL);
}

Test(server_layout, segtab_maps_and_reserves)
{
	/* 128 MiB space of 4 MiB segments (32), donors back 100 MiB rounded
	 * to 100 (25 segments): 7 reserved at the tail. */
	struct rmp_wire_segment segs[32];
	struct rmp_srv_backing b[3] = {
		{ .donor_id = 7, .rkey = 70, .addr = 0x10000000, .len = 40 * MiB, .base = 0 },
		{ .donor_id = 8, .rkey = 80, .addr = 0x20000000, .len = 40 * MiB, .base = 40 * MiB },
		{ .donor_id = 9, .rkey = 90, .addr = 0x30000000, .len = 20 * MiB, .base = 80 * MiB },
	};
	char err[160];

	cr_assert_eq(rmp_srv_segtab_fill(segs, 32, 22, b, 3, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(segs[0].donor_id, 7);
	cr_assert_eq(segs[0].addr, 0x10000000);
	cr_assert_eq(segs[9].addr, 0x10000000 + 9 * 4 * MiB);
	cr_assert_eq(segs[10].donor_id, 8);
	cr_assert_eq(segs[10].rkey, 80);
	cr_assert_eq(segs[10].addr, 0x20000000);
	cr_assert_eq(segs[24].donor_id, 9);
	cr_assert_eq(segs[24].addr, 0x30000000 + 4 * 4 * MiB);
	for (int j = 25; j < 32; j++)
		cr_assert_eq(segs[j].donor_id, RMP_WIRE_SEG_RESERVED, "segment %d", j);
	cr_assert_eq(rmp_srv_segtab_backed(segs, 32, 22), 100 * MiB);
}

Test(server_layout, segtab_refuses_bad_backings)
{
	struct rmp_wire_segment segs[4];
	char err[160];
	struct rmp_srv_backing overlap[2] = {
		{ .donor_id = 1, .addr = 0x1000, .len = 8 * MiB, .base = 0 },
		{ .donor_id = 2, .addr = 0x2000, .len = 4 * MiB, .base = 4 * MiB },
	};
	struct rmp_srv_backing past = { .donor_id = 3, .len = 8 * MiB, .base = 12 * MiB };
	struct rmp_srv_backing odd = { .donor_id = 4, .len = 4 * MiB, .base = 1 };

	cr_assert_eq(rmp_srv_segtab_fill(segs, 4, 22, overlap, 2, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "both claim"), "%s", err);
	cr_assert_eq(rmp_srv_segtab_fill(segs, 4, 22, &past, 1, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "past"), "%s", err);
	cr_assert_eq(rmp_srv_segtab_fill(segs, 4, 22, &odd, 1, err, sizeof(err)), -EINVAL);
}

/* The coordinator's glue: plan (per-process limit less footprint, whole
 * segments), place over the agents' budgets, lay out, geometry. */
Test(server_layout, plan_place_layout_geometry)
{
	struct rmp_sizing_request req = { .capacity = 300 * MiB,
					  .process_limit = 72 * MiB,
					  .donor_footprint = 6 * MiB,
					  .segment_size = 4 * MiB };
	struct rmp_sizing_plan plan;
	char err[256];

	cr_assert_eq(rmp_sizing_plan(&req, &plan, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(plan.region_len, 64 * MiB); /* 66 MiB rounded down to 4 MiB */
	cr_assert_eq(plan.donors, 5);

	struct rmp_sizing_host hosts[3] = { { "g1", 200 * MiB }, { "g2", 200 * MiB },
					    { "g3", 140 * MiB } };
	uint64_t per_host[3];
	cr_assert_eq(rmp_sizing_place(plan.donors, plan.region_len + 6 * MiB, hosts, 3, per_host,
				      err, sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(per_host[0] + per_host[1] + per_host[2], 5);

	uint64_t len[5], base[5];
	cr_assert_eq(rmp_srv_layout_regions(req.capacity, req.segment_size, 0, plan.region_len,
					    plan.donors, len, base, NULL),
		     0);
	cr_assert_eq(len[4], 300 * MiB - 4 * 64 * MiB);

	struct rmp_sizing_geometry geo;
	cr_assert_eq(rmp_sizing_geometry(req.capacity, req.segment_size, plan.provided, &geo, err,
					 sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(geo.space, 512 * MiB);
	cr_assert_eq(geo.segments, 128);

	/* Too little budget: refused with the numbers. */
	hosts[0].budget = hosts[1].budget = hosts[2].budget = 100 * MiB;
	cr_assert_eq(rmp_sizing_place(plan.donors, plan.region_len + 6 * MiB, hosts, 3, per_host,
				      err, sizeof(err)),
		     -ENOSPC);
	cr_assert(strstr(err, "g1: 1"), "%s", err);
}

/* ---- standalone donors (issue 4): spare regions first, spawned ones for the rest ---- */

Test(server_layout, pick_spare_largest_then_best_fit)
{
	uint64_t spare[4] = { 8 * MiB, 48 * MiB, 20 * MiB, 12 * MiB }, take[4];

	/* 60 MiB: 48 whole (largest), then the 12 MiB region covers exactly. */
	cr_assert_eq(rmp_srv_layout_pick_spare(60 * MiB, spare, 4, take), 60 * MiB);
	cr_assert_eq(take[0], 0);
	cr_assert_eq(take[1], 48 * MiB);
	cr_assert_eq(take[2], 0);
	cr_assert_eq(take[3], 12 * MiB);

	/* 4 MiB: the smallest region that covers it, and only 4 MiB of it. */
	cr_assert_eq(rmp_srv_layout_pick_spare(4 * MiB, spare, 4, take), 4 * MiB);
	cr_assert_eq(take[0], 4 * MiB);
	cr_assert_eq(take[1] + take[2] + take[3], 0);

	/* More than all of them: everything, the rest is for spawned donors. */
	cr_assert_eq(rmp_srv_layout_pick_spare(128 * MiB, spare, 4, take), 88 * MiB);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(take[i], spare[i], "region %d", i);

	/* Nothing asked, or nothing on offer. */
	cr_assert_eq(rmp_srv_layout_pick_spare(0, spare, 4, take), 0);
	cr_assert_eq(take[0] + take[1] + take[2] + take[3], 0);
	cr_assert_eq(rmp_srv_layout_pick_spare(64 * MiB, spare, 0, take), 0);
}

Test(server_layout, mixed_standalone_then_spawned)
{
	/* The rdma_standalone scenario: 128 MiB in 4 MiB segments, one 48 MiB
	 * standalone region, spawned donors of 56 MiB (64 MiB limit less a
	 * 5 MiB footprint, rounded down): 48 + 56 + 24. */
	uint64_t spare[1] = { 48 * MiB }, take[1], fbase[1], len[2], base[2], self = 1;
	uint64_t taken = rmp_srv_layout_pick_spare(128 * MiB, spare, 1, take);
	cr_assert_eq(taken, 48 * MiB);

	struct rmp_sizing_request req = { .capacity = 128 * MiB - taken,
					  .process_limit = 64 * MiB,
					  .donor_footprint = 5 * MiB,
					  .segment_size = 4 * MiB };
	struct rmp_sizing_plan plan;
	char err[256];
	cr_assert_eq(rmp_sizing_plan(&req, &plan, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(plan.region_len, 56 * MiB);
	cr_assert_eq(plan.donors, 2);

	cr_assert_eq(rmp_srv_layout_mixed(128 * MiB, 4 * MiB, 0, take, 1, fbase, plan.region_len,
					  plan.donors, len, base, &self),
		     0);
	cr_assert_eq(self, 0);
	cr_assert_eq(fbase[0], 0);
	cr_assert_eq(base[0], 48 * MiB);
	cr_assert_eq(len[0], 56 * MiB);
	cr_assert_eq(base[1], 104 * MiB);
	cr_assert_eq(len[1], 24 * MiB);

	/* The segment table: standalone donor 5, spawned donors 6 and 7, all
	 * 32 segments backed, each by the right donor. */
	struct rmp_wire_segment segs[32];
	struct rmp_srv_backing b[3] = {
		{ .donor_id = 5, .rkey = 50, .addr = 0x7f0000000000, .len = take[0], .base = fbase[0] },
		{ .donor_id = 6, .rkey = 60, .addr = 0x10000000, .len = len[0], .base = base[0] },
		{ .donor_id = 7, .rkey = 70, .addr = 0x20000000, .len = len[1], .base = base[1] },
	};
	cr_assert_eq(rmp_srv_segtab_fill(segs, 32, 22, b, 3, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(segs[11].donor_id, 5);
	cr_assert_eq(segs[11].addr, 0x7f0000000000 + 11 * 4 * MiB);
	cr_assert_eq(segs[12].donor_id, 6);
	cr_assert_eq(segs[25].donor_id, 6);
	cr_assert_eq(segs[26].donor_id, 7);
	cr_assert_eq(segs[31].addr, 0x20000000 + 5 * 4 * MiB);
	cr_assert_eq(rmp_srv_segtab_backed(segs, 32, 22), 128 * MiB);
}

Test(server_layout, mixed_share_first_and_standalone_only)
{
	uint64_t fixed[2] = { 16 * MiB, 8 * MiB }, fbase[2], len[1], base[1], self;

	/* Coordinator share 8 MiB at 0, standalone 16 + 8 after it, no
	 * spawned donor: 32 MiB exactly. */
	cr_assert_eq(rmp_srv_layout_mixed(32 * MiB, 4 * MiB, 8 * MiB, fixed, 2, fbase, 0, 0, len,
					  base, &self),
		     0);
	cr_assert_eq(self, 8 * MiB);
	cr_assert_eq(fbase[0], 8 * MiB);
	cr_assert_eq(fbase[1], 24 * MiB);

	/* A capacity that is not whole segments: 30 MiB + 1 still needs 32. */
	cr_assert_eq(rmp_srv_layout_mixed(30 * MiB + 1, 4 * MiB, 8 * MiB, fixed, 2, fbase, 0, 0,
					  len, base, &self),
		     0);

	/* One spawned donor for what the standalone ones leave. */
	cr_assert_eq(rmp_srv_layout_mixed(40 * MiB, 4 * MiB, 0, fixed, 2, fbase, 32 * MiB, 1, len,
					  base, &self),
		     0);
	cr_assert_eq(fbase[1], 16 * MiB);
	cr_assert_eq(base[0], 24 * MiB);
	cr_assert_eq(len[0], 16 * MiB);
}

Test(server_layout, mixed_refuses_bad_standalone_regions)
{
	uint64_t fbase[2], len[2], base[2];
	uint64_t odd[1] = { 6 * MiB };		  /* not whole segments */
	uint64_t empty[1] = { 0 };		  /* nothing */
	uint64_t over[2] = { 32 * MiB, 8 * MiB }; /* more than the need */

	cr_assert_eq(rmp_srv_layout_mixed(64 * MiB, 4 * MiB, 0, odd, 1, fbase, 32 * MiB, 2, len,
					  base, NULL),
		     -EINVAL);
	cr_assert_eq(rmp_srv_layout_mixed(64 * MiB, 4 * MiB, 0, empty, 1, fbase, 32 * MiB, 2, len,
					  base, NULL),
		     -EINVAL);
	cr_assert_eq(rmp_srv_layout_mixed(32 * MiB, 4 * MiB, 0, over, 2, fbase, 32 * MiB, 0, len,
					  base, NULL),
		     -EINVAL);
	/* Right regions, wrong spawned count: 64 - 40 = 24 needs one donor of 32. */
	cr_assert_eq(rmp_srv_layout_mixed(64 * MiB, 4 * MiB, 0, over, 2, fbase, 32 * MiB, 2, len,
					  base, NULL),
		     -EINVAL);
	cr_assert_eq(rmp_srv_layout_mixed(64 * MiB, 4 * MiB, 0, over, 2, fbase, 32 * MiB, 1, len,
					  base, NULL),
		     0);
}
