/* test_server_layout.c - server/layout.c: donor regions cover exactly the
 * capacity rounded up to segments, the last donor holds only what is
 * left, and the segment table maps every backed segment once and
 * reserves the tail. Also the sizing -> layout glue (server/sizing.h
 * count and geometry feeding the layout; plan.c runs it for a pool, see
 * test_server_plan.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "layout.h"
#include "sizing.h"

#define MiB (UINT64_C(1) << 20)

/* Only spawned donors: n of at most region_max after a share of self_len. */
static int spawned_only(uint64_t capacity, uint64_t seg, uint64_t self_len, uint64_t region_max,
			uint64_t n, struct rmp_srv_layout_region *r, uint64_t *self_used)
{
	struct rmp_srv_layout_req rq = { .capacity = capacity,
					 .segment_size = seg,
					 .self_len = self_len,
					 .region_max = region_max };
	return rmp_srv_layout_regions(&rq, NULL, 0, r, n, self_used);
}

/* Standalone regions (fixed[i].len in, .base out), then spawned donors. */
static int mixed(uint64_t capacity, uint64_t seg, uint64_t self_len,
		 struct rmp_srv_layout_region *fixed, size_t n_fixed, uint64_t region_max,
		 uint64_t n, struct rmp_srv_layout_region *r, uint64_t *self_used)
{
	struct rmp_srv_layout_req rq = { .capacity = capacity,
					 .segment_size = seg,
					 .self_len = self_len,
					 .region_max = region_max };
	return rmp_srv_layout_regions(&rq, fixed, n_fixed, r, n, self_used);
}

Test(server_layout, regions_split_the_capacity)
{
	struct rmp_srv_layout_region r[8];
	uint64_t self = 1;

	/* 100 MiB in 4 MiB segments, 40 MiB per donor, no self share:
	 * 100 MiB -> 40 + 40 + 20. */
	cr_assert_eq(spawned_only(100 * MiB, 4 * MiB, 0, 40 * MiB, 3, r, &self), 0);
	cr_assert_eq(self, 0);
	cr_assert_eq(r[0].len, 40 * MiB);
	cr_assert_eq(r[1].len, 40 * MiB);
	cr_assert_eq(r[2].len, 20 * MiB);
	cr_assert_eq(r[0].base, 0);
	cr_assert_eq(r[1].base, 40 * MiB);
	cr_assert_eq(r[2].base, 80 * MiB);
}

Test(server_layout, capacity_rounds_up_to_segments)
{
	struct rmp_srv_layout_region r[2];
	uint64_t self;

	/* 10 MiB + 1 byte needs three 4 MiB segments: 12 MiB. */
	cr_assert_eq(spawned_only(10 * MiB + 1, 4 * MiB, 0, 8 * MiB, 2, r, &self), 0);
	cr_assert_eq(r[0].len + r[1].len, 12 * MiB);
	cr_assert_eq(r[1].len, 4 * MiB);
}

Test(server_layout, self_share_comes_first)
{
	struct rmp_srv_layout_region r[2];
	uint64_t self;

	cr_assert_eq(spawned_only(64 * MiB, 4 * MiB, 16 * MiB, 32 * MiB, 2, r, &self), 0);
	cr_assert_eq(self, 16 * MiB);
	cr_assert_eq(r[0].base, 16 * MiB);
	cr_assert_eq(r[0].len, 32 * MiB);
	cr_assert_eq(r[1].base, 48 * MiB);
	cr_assert_eq(r[1].len, 16 * MiB);
	/* A share larger than the pool is cut to the need; no donor then. */
	cr_assert_eq(spawned_only(8 * MiB, 4 * MiB, 64 * MiB, 32 * MiB, 0, r, &self), 0);
	cr_assert_eq(self, 8 * MiB);
}

Test(server_layout, wrong_donor_count_refused)
{
	struct rmp_srv_layout_region r[4];

	cr_assert_eq(spawned_only(100 * MiB, 4 * MiB, 0, 40 * MiB, 2, r, NULL), -EINVAL);
	cr_assert_eq(spawned_only(100 * MiB, 4 * MiB, 0, 40 * MiB, 4, r, NULL), -EINVAL);
	cr_assert_eq(spawned_only(100 * MiB, 3 * MiB, 0, 40 * MiB, 3, r, NULL), -EINVAL);
	cr_assert_eq(spawned_only(100 * MiB, 4 * MiB, 0, 41 * MiB, 3, r, NULL), -EINVAL);
	cr_assert_eq(spawned_only(0, 4 * MiB, 0, 40 * MiB, 0, r, NULL), -EINVAL);
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

/* The coordinator's glue: count (per-process limit less footprint, whole
 * segments), place over the agents' budgets, lay out, geometry. */
Test(server_layout, count_place_layout_geometry)
{
	struct rmp_srv_sizing_req req = { .capacity = 300 * MiB,
					  .process_limit = 72 * MiB,
					  .donor_footprint = 6 * MiB,
					  .segment_size = 4 * MiB };
	struct rmp_srv_sizing sz;
	char err[256];

	cr_assert_eq(rmp_srv_sizing_count(&req, &sz, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sz.region_len, 64 * MiB); /* 66 MiB rounded down to 4 MiB */
	cr_assert_eq(sz.donors, 5);

	struct rmp_srv_sizing_host hosts[3] = { { .name = "g1", .budget = 200 * MiB },
						{ .name = "g2", .budget = 200 * MiB },
						{ .name = "g3", .budget = 140 * MiB } };
	cr_assert_eq(rmp_srv_sizing_place(sz.donors, sz.region_len + 6 * MiB, hosts, 3, err,
					  sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(hosts[0].placed + hosts[1].placed + hosts[2].placed, 5);

	struct rmp_srv_layout_region r[5];
	cr_assert_eq(spawned_only(req.capacity, req.segment_size, 0, sz.region_len, sz.donors, r,
				  NULL),
		     0);
	cr_assert_eq(r[4].len, 300 * MiB - 4 * 64 * MiB);

	struct rmp_srv_geometry geo;
	cr_assert_eq(rmp_srv_sizing_geometry(req.capacity, req.segment_size, sz.provided, &geo, err,
					     sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(geo.space, 512 * MiB);
	cr_assert_eq(geo.segments, 128);

	/* Too little budget: refused with the numbers. */
	hosts[0].budget = hosts[1].budget = hosts[2].budget = 100 * MiB;
	cr_assert_eq(rmp_srv_sizing_place(sz.donors, sz.region_len + 6 * MiB, hosts, 3, err,
					  sizeof(err)),
		     -ENOSPC);
	cr_assert(strstr(err, "g1: 1"), "%s", err);
}

/* ---- standalone donors (issue 4): spare regions first, spawned ones for the rest ---- */

Test(server_layout, pick_spare_largest_then_best_fit)
{
	struct rmp_srv_layout_spare sp[4] = {
		{ .offered = 8 * MiB }, { .offered = 48 * MiB },
		{ .offered = 20 * MiB }, { .offered = 12 * MiB }
	};

	/* 60 MiB: 48 whole (largest), then the 12 MiB region covers exactly. */
	cr_assert_eq(rmp_srv_layout_pick_spare(60 * MiB, sp, 4), 60 * MiB);
	cr_assert_eq(sp[0].take, 0);
	cr_assert_eq(sp[1].take, 48 * MiB);
	cr_assert_eq(sp[2].take, 0);
	cr_assert_eq(sp[3].take, 12 * MiB);

	/* 4 MiB: the smallest region that covers it, and only 4 MiB of it. */
	cr_assert_eq(rmp_srv_layout_pick_spare(4 * MiB, sp, 4), 4 * MiB);
	cr_assert_eq(sp[0].take, 4 * MiB);
	cr_assert_eq(sp[1].take + sp[2].take + sp[3].take, 0);

	/* More than all of them: everything, the rest is for spawned donors. */
	cr_assert_eq(rmp_srv_layout_pick_spare(128 * MiB, sp, 4), 88 * MiB);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(sp[i].take, sp[i].offered, "region %d", i);

	/* Nothing asked, or nothing on offer. */
	cr_assert_eq(rmp_srv_layout_pick_spare(0, sp, 4), 0);
	cr_assert_eq(sp[0].take + sp[1].take + sp[2].take + sp[3].take, 0);
	cr_assert_eq(rmp_srv_layout_pick_spare(64 * MiB, sp, 0), 0);
}

Test(server_layout, mixed_standalone_then_spawned)
{
	/* The rdma_standalone scenario: 128 MiB in 4 MiB segments, one 48 MiB
	 * standalone region, spawned donors of 56 MiB (64 MiB limit less a
	 * 5 MiB footprint, rounded down): 48 + 56 + 24. */
	struct rmp_srv_layout_spare sp[1] = { { .offered = 48 * MiB } };
	struct rmp_srv_layout_region fixed[1], r[2];
	uint64_t self = 1;
	uint64_t taken = rmp_srv_layout_pick_spare(128 * MiB, sp, 1);
	cr_assert_eq(taken, 48 * MiB);

	struct rmp_srv_sizing_req req = { .capacity = 128 * MiB - taken,
					  .process_limit = 64 * MiB,
					  .donor_footprint = 5 * MiB,
					  .segment_size = 4 * MiB };
	struct rmp_srv_sizing sz;
	char err[256];
	cr_assert_eq(rmp_srv_sizing_count(&req, &sz, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sz.region_len, 56 * MiB);
	cr_assert_eq(sz.donors, 2);

	fixed[0].len = sp[0].take;
	cr_assert_eq(mixed(128 * MiB, 4 * MiB, 0, fixed, 1, sz.region_len, sz.donors, r, &self), 0);
	cr_assert_eq(self, 0);
	cr_assert_eq(fixed[0].base, 0);
	cr_assert_eq(r[0].base, 48 * MiB);
	cr_assert_eq(r[0].len, 56 * MiB);
	cr_assert_eq(r[1].base, 104 * MiB);
	cr_assert_eq(r[1].len, 24 * MiB);

	/* The segment table: standalone donor 5, spawned donors 6 and 7, all
	 * 32 segments backed, each by the right donor. */
	struct rmp_wire_segment segs[32];
	struct rmp_srv_backing b[3] = {
		{ .donor_id = 5, .rkey = 50, .addr = 0x7f0000000000, .len = fixed[0].len,
		  .base = fixed[0].base },
		{ .donor_id = 6, .rkey = 60, .addr = 0x10000000, .len = r[0].len, .base = r[0].base },
		{ .donor_id = 7, .rkey = 70, .addr = 0x20000000, .len = r[1].len, .base = r[1].base },
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
	struct rmp_srv_layout_region fixed[2] = { { .len = 16 * MiB }, { .len = 8 * MiB } }, r[1];
	uint64_t self;

	/* Coordinator share 8 MiB at 0, standalone 16 + 8 after it, no
	 * spawned donor: 32 MiB exactly. */
	cr_assert_eq(mixed(32 * MiB, 4 * MiB, 8 * MiB, fixed, 2, 0, 0, r, &self), 0);
	cr_assert_eq(self, 8 * MiB);
	cr_assert_eq(fixed[0].base, 8 * MiB);
	cr_assert_eq(fixed[1].base, 24 * MiB);

	/* A capacity that is not whole segments: 30 MiB + 1 still needs 32. */
	cr_assert_eq(mixed(30 * MiB + 1, 4 * MiB, 8 * MiB, fixed, 2, 0, 0, r, &self), 0);

	/* One spawned donor for what the standalone ones leave. */
	cr_assert_eq(mixed(40 * MiB, 4 * MiB, 0, fixed, 2, 32 * MiB, 1, r, &self), 0);
	cr_assert_eq(fixed[1].base, 16 * MiB);
	cr_assert_eq(r[0].base, 24 * MiB);
	cr_assert_eq(r[0].len, 16 * MiB);
}

Test(server_layout, mixed_refuses_bad_standalone_regions)
{
	struct rmp_srv_layout_region r[2];
	struct rmp_srv_layout_region odd[1] = { { .len = 6 * MiB } }; /* not whole segments */
	struct rmp_srv_layout_region empty[1] = { { .len = 0 } };     /* nothing */
	struct rmp_srv_layout_region over[2] = { { .len = 32 * MiB },
						 { .len = 8 * MiB } }; /* more than the need */

	cr_assert_eq(mixed(64 * MiB, 4 * MiB, 0, odd, 1, 32 * MiB, 2, r, NULL), -EINVAL);
	cr_assert_eq(mixed(64 * MiB, 4 * MiB, 0, empty, 1, 32 * MiB, 2, r, NULL), -EINVAL);
	cr_assert_eq(mixed(32 * MiB, 4 * MiB, 0, over, 2, 32 * MiB, 0, r, NULL), -EINVAL);
	/* Right regions, wrong spawned count: 64 - 40 = 24 needs one donor of 32. */
	cr_assert_eq(mixed(64 * MiB, 4 * MiB, 0, over, 2, 32 * MiB, 2, r, NULL), -EINVAL);
	cr_assert_eq(mixed(64 * MiB, 4 * MiB, 0, over, 2, 32 * MiB, 1, r, NULL), 0);
}

/* A donor dies: its entry is marked lost, the capacity in service drops
 * by its usable bytes (those below the capacity asked for), a second loss
 * of it changes nothing, and its usable segments are listed for the
 * retire passes (not the tail past the capacity). */
Test(server_layout, segtab_donor_lost)
{
	/* 64 MiB space of 4 MiB segments: donor 7 backs [0, 24), donor 8
	 * [24, 44) MiB; 42 MiB asked for, so 8's last segment is 2 MiB usable. */
	struct rmp_wire_segment segs[16];
	struct rmp_wire_donor_entry donors[2] = { { .donor_id = 7 }, { .donor_id = 8 } };
	struct rmp_srv_backing b[2] = {
		{ .donor_id = 7, .rkey = 70, .addr = 0x10000000, .len = 24 * MiB, .base = 0 },
		{ .donor_id = 8, .rkey = 80, .addr = 0x20000000, .len = 20 * MiB, .base = 24 * MiB },
	};
	struct rmp_wire_segtab t = { .version = 1, .capacity = 42 * MiB, .space_log2 = 26,
				     .min_block_log2 = 12, .segment_log2 = 22, .n_donors = 2,
				     .donors = donors, .n_segments = 16, .segments = segs };
	char err[160];
	uint32_t list[16];

	cr_assert_eq(rmp_srv_segtab_fill(segs, 16, 22, b, 2, err, sizeof(err)), 0, "%s", err);
	cr_assert_not(rmp_srv_segtab_is_lost(&t, 8));
	cr_assert_eq(rmp_srv_segtab_lost_usable(&t, 42 * MiB), 0);
	cr_assert_eq(rmp_srv_segtab_lost_segments(&t, 42 * MiB, list, 16), 0);
	cr_assert_eq(rmp_srv_segtab_donor_lost(&t, 9, 42 * MiB), -ENOENT);

	cr_assert_eq(rmp_srv_segtab_donor_lost(&t, 8, 42 * MiB), 1);
	cr_assert(rmp_srv_segtab_is_lost(&t, 8));
	cr_assert_not(rmp_srv_segtab_is_lost(&t, 7));
	cr_assert_eq(donors[1].state, RMP_DONOR_LOST);
	cr_assert_eq(t.capacity, 24 * MiB, "capacity %llu", (unsigned long long)t.capacity);
	cr_assert_eq(rmp_srv_segtab_lost_usable(&t, 42 * MiB), 18 * MiB);
	/* segments 6..10 hold usable bytes (10: 2 MiB of it); 11 is tail */
	cr_assert_eq(rmp_srv_segtab_lost_segments(&t, 42 * MiB, list, 16), 5);
	for (uint32_t i = 0; i < 5; i++)
		cr_assert_eq(list[i], 6 + i);
	cr_assert_eq(rmp_srv_segtab_lost_segments(&t, 42 * MiB, list, 2), 5, "count beyond cap");
	cr_assert_eq(rmp_srv_segtab_donor_lost(&t, 8, 42 * MiB), 0, "lost twice");
	cr_assert_eq(t.capacity, 24 * MiB);

	cr_assert_eq(rmp_srv_segtab_donor_lost(&t, 7, 42 * MiB), 1);
	cr_assert_eq(t.capacity, 0);
	cr_assert_eq(rmp_srv_segtab_lost_segments(&t, 42 * MiB, NULL, 0), 11);
}
