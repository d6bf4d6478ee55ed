/* test_server_sizing.c - server/sizing.c: donor-count arithmetic,
 * placement over host budgets and pool geometry, at ordinary sizes and at
 * the 2^63 edge.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "sizing.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TOP (UINT64_C(1) << 63)

static char err[512];

static int plan(uint64_t cap, uint64_t limit, uint64_t footprint, uint64_t seg, uint64_t share,
		struct rmp_srv_sizing *p)
{
	struct rmp_srv_sizing_req r = {cap, limit, footprint, seg, share};
	err[0] = '\0';
	memset(p, 0xee, sizeof(*p));
	return rmp_srv_sizing_count(&r, p, err, sizeof(err));
}

Test(sizing, region_is_limit_minus_footprint_in_whole_segments)
{
	struct rmp_srv_sizing p;

	/* 4 GiB - 12 MiB = 4084 MiB, down to 63 segments of 64 MiB */
	cr_assert_eq(plan(40 * GiB, 4 * GiB, 12 * MiB, 64 * MiB, 0, &p), 0, "%s", err);
	cr_assert_eq(p.region_len, 4032 * MiB);
	cr_assert_eq(p.segments_per_donor, 63);
	cr_assert_eq(p.donors, 11, "40960 / 4032 = 10.2, up");
	cr_assert_eq(p.provided, 11 * 4032 * MiB);
	cr_assert_eq(p.coordinator_len, 0);

	/* no footprint, limit a whole number of segments: nothing is lost */
	cr_assert_eq(plan(40 * GiB, 4 * GiB, 0, 64 * MiB, 0, &p), 0);
	cr_assert_eq(p.region_len, 4 * GiB);
	cr_assert_eq(p.donors, 10, "exact multiple: no extra donor");
	cr_assert_eq(p.provided, 40 * GiB);

	/* one byte more needs one donor more */
	cr_assert_eq(plan(40 * GiB + 1, 4 * GiB, 0, 64 * MiB, 0, &p), 0);
	cr_assert_eq(p.donors, 11);

	/* a pool smaller than one region */
	cr_assert_eq(plan(1, 4 * GiB, 0, 4 * KiB, 0, &p), 0);
	cr_assert_eq(p.donors, 1);
}

Test(sizing, coordinator_share)
{
	struct rmp_srv_sizing p;

	/* 1 GiB + 10 MiB offered, 1 GiB usable (16 segments); 39 GiB left */
	cr_assert_eq(plan(40 * GiB, 4 * GiB, 12 * MiB, 64 * MiB, GiB + 10 * MiB, &p), 0);
	cr_assert_eq(p.coordinator_len, GiB);
	cr_assert_eq(p.donors, 10, "39936 / 4032 = 9.9, up");
	cr_assert_eq(p.provided, GiB + 10 * 4032 * MiB);

	/* the coordinator serves all of it: no donor processes */
	cr_assert_eq(plan(2 * GiB, 4 * GiB, 0, 64 * MiB, 3 * GiB, &p), 0);
	cr_assert_eq(p.donors, 0);
	cr_assert_eq(p.provided, 3 * GiB);

	/* a share below one segment counts for nothing */
	cr_assert_eq(plan(8 * GiB, 4 * GiB, 0, 64 * MiB, 63 * MiB, &p), 0);
	cr_assert_eq(p.coordinator_len, 0);
	cr_assert_eq(p.donors, 2);
}

Test(sizing, region_below_one_segment)
{
	struct rmp_srv_sizing p;

	cr_assert_eq(plan(GiB, 64 * MiB, 12 * MiB, 64 * MiB, 0, &p), -ENOSPC);
	cr_assert(strstr(err, "64.0 MiB"), "%s", err);
	cr_assert(strstr(err, "12.0 MiB"), "%s", err);
	cr_assert(strstr(err, "less than one"), "%s", err);
	/* footprint above the limit */
	cr_assert_eq(plan(GiB, 64 * MiB, 65 * MiB, 4 * KiB, 0, &p), -ENOSPC);
	/* exactly one segment is enough */
	cr_assert_eq(plan(GiB, 64 * MiB + 12 * MiB, 12 * MiB, 64 * MiB, 0, &p), 0);
	cr_assert_eq(p.segments_per_donor, 1);
	cr_assert_eq(p.donors, 16);
}

Test(sizing, bad_input)
{
	struct rmp_srv_sizing p;

	cr_assert_eq(plan(0, 4 * GiB, 0, 64 * MiB, 0, &p), -EINVAL);
	cr_assert_eq(plan(GiB, 4 * GiB, 0, 0, 0, &p), -EINVAL);
	cr_assert_eq(plan(GiB, 4 * GiB, 0, 3 * MiB, 0, &p), -EINVAL);
	cr_assert(strstr(err, "3145728 is not a power of two"), "%s", err);
}

Test(sizing, near_two_to_the_63)
{
	struct rmp_srv_sizing p;

	/* 2^63 in one process whose limit is 2^63: one donor */
	cr_assert_eq(plan(TOP, TOP, 0, TOP >> 1, 0, &p), 0, "%s", err);
	cr_assert_eq(p.donors, 1);
	cr_assert_eq(p.provided, TOP);
	/* 2^64-1 in regions of 2^63: two donors would hold 2^64 */
	cr_assert_eq(plan(UINT64_MAX, UINT64_MAX, 0, TOP, 0, &p), -EOVERFLOW);
	cr_assert(strstr(err, "64 bits"), "%s", err);
	/* share + donors wrapping */
	cr_assert_eq(plan(UINT64_MAX, TOP, 0, TOP, TOP, &p), -EOVERFLOW);
	/* 2^63 in 1 GiB regions: 2^33 donors, refused with the numbers */
	cr_assert_eq(plan(TOP, GiB, 0, GiB, 0, &p), -E2BIG);
	cr_assert(strstr(err, "8589934592 donors"), "%s", err);
	/* the largest count still allowed */
	cr_assert_eq(plan(RMP_SRV_SIZING_MAX_DONORS * GiB, GiB, 0, GiB, 0, &p), 0);
	cr_assert_eq(p.donors, RMP_SRV_SIZING_MAX_DONORS);
	cr_assert_eq(plan(RMP_SRV_SIZING_MAX_DONORS * GiB + 1, GiB, 0, GiB, 0, &p), -E2BIG);
	/* limit of 2^64-1 with 2^63 segments: region 2^63, not wrapped */
	cr_assert_eq(plan(TOP, UINT64_MAX, 1, TOP, 0, &p), 0);
	cr_assert_eq(p.region_len, TOP);
}

/* Places over a copy of h (placement writes each host's count into it)
 * and hands the counts back in per[]. */
static int place(uint64_t donors, uint64_t cost, const struct rmp_srv_sizing_host *h, size_t n,
		 uint64_t *per)
{
	struct rmp_srv_sizing_host v[8];

	cr_assert_leq(n, 8);
	memcpy(v, h, n * sizeof(*h));
	for (size_t i = 0; i < n; i++)
		v[i].placed = 0xee;
	err[0] = '\0';
	int rc = rmp_srv_sizing_place(donors, cost, v, n, err, sizeof(err));
	for (size_t i = 0; i < n; i++)
		per[i] = v[i].placed;
	return rc;
}

Test(sizing, place_spreads_evenly)
{
	const struct rmp_srv_sizing_host h[] = {{"a", 100, 0}, {"b", 100, 0}, {"c", 100, 0}};
	uint64_t per[3];

	cr_assert_eq(place(9, 10, h, 3, per), 0);
	cr_assert_eq(per[0], 3);
	cr_assert_eq(per[1], 3);
	cr_assert_eq(per[2], 3);
	cr_assert_eq(place(4, 10, h, 3, per), 0);
	cr_assert_eq(per[0] + per[1] + per[2], 4);
	cr_assert_eq(per[0], 2, "ties go to the lowest index");
	cr_assert_eq(place(0, 10, h, 3, per), 0);
	cr_assert_eq(per[0] + per[1] + per[2], 0);
}

Test(sizing, place_follows_remaining_budget)
{
	const struct rmp_srv_sizing_host h[] = {{"big", 100, 0}, {"mid", 50, 0}, {"small", 20, 0}};
	uint64_t per[3];

	/* big takes donors until its remaining budget is down to mid's,
	 * then they alternate; small is never the fullest */
	cr_assert_eq(place(10, 10, h, 3, per), 0);
	cr_assert_eq(per[0], 8);
	cr_assert_eq(per[1], 2);
	cr_assert_eq(per[2], 0);
	/* all of it: every host to its budget */
	cr_assert_eq(place(17, 10, h, 3, per), 0);
	cr_assert_eq(per[0], 10);
	cr_assert_eq(per[1], 5);
	cr_assert_eq(per[2], 2);
}

Test(sizing, place_respects_budgets)
{
	/* leftovers below one donor's cost are never used */
	const struct rmp_srv_sizing_host h[] = {{"a", 29, 0}, {"b", 9, 0}, {"c", 31, 0}};
	uint64_t per[3];

	cr_assert_eq(place(5, 10, h, 3, per), 0);
	cr_assert_eq(per[1], 0);
	for (size_t i = 0; i < 3; i++)
		cr_assert_leq(per[i] * 10, h[i].budget);
	cr_assert_eq(per[0] + per[2], 5);
	cr_assert_eq(place(6, 10, h, 3, per), -ENOSPC);
	cr_assert(strstr(err, "cannot place 6 donors of 10 B"), "%s", err);
	cr_assert(strstr(err, "take 5 (a: 2, b: 0, c: 3)"), "%s", err);
	cr_assert(strstr(err, "50 B in all"), "%s", err);
}

Test(sizing, place_bad_input)
{
	const struct rmp_srv_sizing_host h[] = {{"a", UINT64_MAX, 0}, {"b", UINT64_MAX, 0}};
	uint64_t per[2];

	cr_assert_eq(place(1, 0, h, 2, per), -EINVAL);
	cr_assert_eq(place(1, 10, h, 0, per), -EINVAL);
	cr_assert(strstr(err, "no hosts"), "%s", err);
	/* budgets that would let 2^64 donors fit: the fit count saturates */
	cr_assert_eq(place(RMP_SRV_SIZING_MAX_DONORS + 1, 1, h, 2, per), -E2BIG);
	cr_assert_eq(place(RMP_SRV_SIZING_MAX_DONORS, 1, h, 2, per), 0);
	cr_assert_eq(per[0], RMP_SRV_SIZING_MAX_DONORS / 2);
}

Test(sizing, geometry)
{
	struct rmp_srv_geometry g;

	cr_assert_eq(rmp_srv_sizing_geometry(40 * GiB, 64 * MiB, 0, &g, err, sizeof(err)), 0);
	cr_assert_eq(g.space, 64 * GiB);
	cr_assert_eq(g.space_log2, 36);
	cr_assert_eq(g.segment_log2, 26);
	cr_assert_eq(g.segments, 1024);
	cr_assert_eq(g.backed, 640);
	cr_assert_eq(g.reserved, 384);
	cr_assert_eq(g.reserved_base, 40 * GiB);

	/* what the donors really provide decides the tail */
	cr_assert_eq(rmp_srv_sizing_geometry(40 * GiB, 64 * MiB, 11 * 4032 * MiB, &g, err,
					 sizeof(err)),
		     0);
	cr_assert_eq(g.backed, 11 * 63);
	cr_assert_eq(g.reserved, 1024 - 693);
	/* more than the space: capped */
	cr_assert_eq(rmp_srv_sizing_geometry(40 * GiB, 64 * MiB, 100 * GiB, &g, err, sizeof(err)), 0);
	cr_assert_eq(g.backed, 1024);
	cr_assert_eq(g.reserved, 0);
	/* a partial segment backs nothing */
	cr_assert_eq(rmp_srv_sizing_geometry(GiB, 64 * MiB, 10 * 64 * MiB + 100, &g, err, sizeof(err)),
		     0);
	cr_assert_eq(g.backed, 10);
	/* a power of two: no tail */
	cr_assert_eq(rmp_srv_sizing_geometry(GiB, 64 * MiB, 0, &g, err, sizeof(err)), 0);
	cr_assert_eq(g.reserved, 0);
	cr_assert_eq(g.segments, 16);
	/* capacity rounded up to a segment */
	cr_assert_eq(rmp_srv_sizing_geometry(GiB + 1, 64 * MiB, 0, &g, err, sizeof(err)), 0);
	cr_assert_eq(g.space, 2 * GiB);
	cr_assert_eq(g.backed, 17);
	/* smaller than one segment: the space is one segment */
	cr_assert_eq(rmp_srv_sizing_geometry(1000, 4 * KiB, 0, &g, err, sizeof(err)), 0);
	cr_assert_eq(g.space, 4 * KiB);
	cr_assert_eq(g.segments, 1);
	cr_assert_eq(g.backed, 1);
}

Test(sizing, geometry_edges)
{
	struct rmp_srv_geometry g;

	cr_assert_eq(rmp_srv_sizing_geometry(TOP, TOP, 0, &g, err, sizeof(err)), 0);
	cr_assert_eq(g.space_log2, 63);
	cr_assert_eq(g.segments, 1);
	cr_assert_eq(g.backed, 1);
	cr_assert_eq(rmp_srv_sizing_geometry(TOP - 1, GiB, 0, &g, err, sizeof(err)), 0);
	cr_assert_eq(g.space, TOP);
	cr_assert_eq(g.reserved, 0);
	cr_assert_eq(rmp_srv_sizing_geometry(TOP + 1, GiB, 0, &g, err, sizeof(err)), -EOVERFLOW);
	cr_assert(strstr(err, "2^63"), "%s", err);
	cr_assert_eq(rmp_srv_sizing_geometry(UINT64_MAX, GiB, 0, &g, err, sizeof(err)), -EOVERFLOW);
	cr_assert_eq(rmp_srv_sizing_geometry(0, GiB, 0, &g, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rmp_srv_sizing_geometry(GiB, 0, 0, &g, err, sizeof(err)), -EINVAL);
	cr_assert_eq(rmp_srv_sizing_geometry(GiB, 48 * MiB, 0, &g, err, sizeof(err)), -EINVAL);
}

Test(sizing, pow2_ceil)
{
	static const uint64_t in[] = {0, 1, 2, 3, 4, 5, 4095, 4096, 4097, TOP - 1, TOP, TOP + 1,
				      UINT64_MAX};
	static const uint64_t out[] = {0,    1,	   2,	4,   4,	  8, 4096,
				       4096, 8192, TOP, TOP, 0, 0};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
		cr_assert_eq(rmp_srv_sizing_pow2_ceil(in[i]), out[i], "%llu",
			     (unsigned long long)in[i]);
}

/* The pieces together, as the coordinator uses them: every byte asked
 * for is backed, and the tail is what is left. */
Test(sizing, plan_then_geometry)
{
	static const uint64_t caps[] = {1, 4095, 40 * GiB, 100 * GiB + 12345, 3 * GiB};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		struct rmp_srv_sizing p;
		struct rmp_srv_geometry g;
		cr_assert_eq(plan(caps[i], 4 * GiB, 30 * MiB, 32 * MiB, 512 * MiB, &p), 0);
		cr_assert_eq(rmp_srv_sizing_geometry(caps[i], 32 * MiB, p.provided, &g, err,
						 sizeof(err)),
			     0);
		uint64_t need_segs = (caps[i] + 32 * MiB - 1) / (32 * MiB);
		cr_assert_geq(g.backed, need_segs, "cap %llu", (unsigned long long)caps[i]);
		cr_assert_eq(g.backed + g.reserved, g.segments);
		cr_assert_geq(g.space, caps[i]);
		cr_assert_lt(g.space / 2, caps[i] > 32 * MiB ? caps[i] : 32 * MiB);
	}
}
