/* test_server_plan.c - server/plan.c: a pool's creation decided on its
 * own, without a coordinator: what the budgets cannot hold is refused
 * with the numbers, spare standalone regions are used first (after the
 * coordinator's share), the geometry and every piece's address are
 * right, and bad names and sizes are refused with the texts the
 * consumer gets.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "plan.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

/* The rdma_provision cluster: three agents with a 64M per-process limit,
 * a 5M donor footprint (56M regions in whole 4M segments). */
static struct rmp_srv_plan_host hosts[3] = {
	{ .name = "g1", .budget = 96 * MiB, .process_limit = 64 * MiB, .donor_footprint = 5 * MiB },
	{ .name = "g2", .budget = 128 * MiB, .process_limit = 64 * MiB, .donor_footprint = 5 * MiB },
	{ .name = "g3", .budget = 128 * MiB, .process_limit = 64 * MiB, .donor_footprint = 5 * MiB },
};

static struct rmp_srv_plan_req req(const char *name, uint64_t capacity)
{
	return (struct rmp_srv_plan_req){ .name = name,
					  .capacity = capacity,
					  .segment_size = 4 * MiB,
					  .default_min_block = 4 * KiB,
					  .hosts = hosts,
					  .n_hosts = 3 };
}

/* Every piece lies in the space, in whole segments, and together they
 * tile [0, capacity rounded up to segments) with no gap or overlap. */
static void check_tiling(const struct rmp_srv_plan *pl, uint64_t capacity, uint64_t seg)
{
	uint64_t at = pl->self_len;

	for (size_t i = 0; i < pl->n_standalone; i++) {
		cr_assert_eq(pl->standalone[i].base, at, "standalone %zu", i);
		cr_assert_eq(pl->standalone[i].len % seg, 0);
		at += pl->standalone[i].len;
	}
	for (uint64_t k = 0; k < pl->n_spawn; k++) {
		cr_assert_eq(pl->spawn[k].base, at, "spawned %llu", (unsigned long long)k);
		cr_assert_gt(pl->spawn[k].len, 0);
		cr_assert_leq(pl->spawn[k].len, pl->region_len);
		at += pl->spawn[k].len;
	}
	cr_assert_eq(at, (capacity + seg - 1) / seg * seg);
	cr_assert_leq(at, pl->geo.space);
}

Test(server_plan, budgets_cannot_hold_it_refused_with_the_numbers)
{
	struct rmp_srv_plan_req rq = req("big", 2 * GiB);
	struct rmp_srv_plan pl;

	/* 2G in 56M regions: 37 donors of 61M each (region + footprint);
	 * the budgets take 1 + 2 + 2. */
	cr_assert_eq(rmp_srv_plan_make(&rq, &pl), -ENOSPC);
	cr_assert(strstr(pl.err, "pool big (2.0 GiB): cannot place 37 donors of 61.0 MiB: the "
				 "hosts' budgets take 5 (g1: 1, g2: 2, g3: 2)"),
		  "%s", pl.err);
	cr_assert_eq(pl.n_spawn, 0);
	rmp_srv_plan_free(&pl);

	/* What is left after a pool: the budgets the coordinator passes are
	 * what each host may still give. */
	struct rmp_srv_plan_host left[3];
	memcpy(left, hosts, sizeof(left));
	left[0].budget = 60 * MiB; /* under one donor's cost */
	left[1].budget = left[2].budget = 64 * MiB;
	rq = req("p", 224 * MiB);
	rq.hosts = left;
	cr_assert_eq(rmp_srv_plan_make(&rq, &pl), -ENOSPC);
	cr_assert(strstr(pl.err, "cannot place 4 donors of 61.0 MiB: the hosts' budgets take 2 "
				 "(g1: 0, g2: 1, g3: 1)"),
		  "%s", pl.err);
	rmp_srv_plan_free(&pl);
}

Test(server_plan, spawned_donors_host_by_host)
{
	struct rmp_srv_plan_req rq = req("prov", 224 * MiB);
	struct rmp_srv_plan pl;

	/* The rdma_provision pool: 224M needs 4 donors of 56M (61M with the
	 * footprint), each to the host with the most budget left, ties to the
	 * first listed: g2 (128), g3 (128), g1 (96 > 67), g2 -> 1 + 2 + 1. */
	cr_assert_eq(rmp_srv_plan_make(&rq, &pl), 0, "%s", pl.err);
	cr_assert_eq(pl.n_standalone, 0);
	cr_assert_eq(pl.self_len, 0);
	cr_assert_eq(pl.region_len, 56 * MiB);
	cr_assert_eq(pl.n_spawn, 4);
	size_t per[3] = { 0 };
	for (uint64_t k = 0; k < pl.n_spawn; k++) {
		cr_assert_lt(pl.spawn[k].from, 3);
		per[pl.spawn[k].from]++;
		if (k)
			cr_assert_geq(pl.spawn[k].from, pl.spawn[k - 1].from, "host by host");
	}
	cr_assert_eq(per[0], 1);
	cr_assert_eq(per[1], 2);
	cr_assert_eq(per[2], 1);
	check_tiling(&pl, rq.capacity, 4 * MiB);
	/* 224M: a 256M space of 64 segments, 56 backed, 8 reserved */
	cr_assert_eq(pl.geo.space, 256 * MiB);
	cr_assert_eq(pl.geo.space_log2, 28);
	cr_assert_eq(pl.geo.segment_log2, 22);
	cr_assert_eq(pl.geo.segments, 64);
	cr_assert_eq(pl.geo.backed, 56);
	cr_assert_eq(pl.geo.reserved, 8);
	cr_assert_eq(pl.geo.reserved_base, 224 * MiB);
	/* the default min_block of 4K: 2^28 / 2^12 -> 17 buddy levels */
	cr_assert_eq(pl.min_block_log2, 12);
	cr_assert_eq(pl.buddy.max_order, 28);
	cr_assert_eq(pl.buddy.min_order, 12);
	cr_assert_eq(pl.buddy.levels, 17);
	cr_assert_gt(pl.buddy.total_words, 0);
	rmp_srv_plan_free(&pl);
}

Test(server_plan, share_then_standalone_then_spawned)
{
	/* Two spare standalone regions (oldest first), 48M and 20M; the
	 * coordinator serves 8M of 8M + 1 byte (whole segments only). */
	const struct rmp_srv_plan_spare spare[2] = { { .offered = 48 * MiB },
						     { .offered = 20 * MiB } };
	struct rmp_srv_plan_req rq = req("mix", 128 * MiB);
	struct rmp_srv_plan pl;

	rq.spare = spare;
	rq.n_spare = 2;
	rq.self_contribution = 8 * MiB + 1;
	/* need 128: 8 from the coordinator, then 48 + 20 standalone (the
	 * largest first while none covers the rest), 52 left: one 56M donor
	 * holding 52 */
	cr_assert_eq(rmp_srv_plan_make(&rq, &pl), 0, "%s", pl.err);
	cr_assert_eq(pl.self_len, 8 * MiB);
	cr_assert_eq(pl.n_standalone, 2);
	cr_assert_eq(pl.standalone[0].from, 0);
	cr_assert_eq(pl.standalone[0].base, 8 * MiB);
	cr_assert_eq(pl.standalone[0].len, 48 * MiB);
	cr_assert_eq(pl.standalone[1].from, 1);
	cr_assert_eq(pl.standalone[1].base, 56 * MiB);
	cr_assert_eq(pl.standalone[1].len, 20 * MiB);
	cr_assert_eq(pl.standalone_bytes, 68 * MiB);
	cr_assert_eq(pl.n_spawn, 1);
	cr_assert_eq(pl.spawn[0].base, 76 * MiB);
	cr_assert_eq(pl.spawn[0].len, 52 * MiB);
	check_tiling(&pl, rq.capacity, 4 * MiB);
	cr_assert_eq(pl.geo.backed, 32);
	cr_assert_eq(pl.geo.reserved, 0);
	rmp_srv_plan_free(&pl);

	/* A need the standalone regions cover: no donor to spawn, and no
	 * agent needed; best fit takes only what it needs of the 20M one. */
	rq = req("small", 16 * MiB);
	rq.spare = spare;
	rq.n_spare = 2;
	rq.n_hosts = 0;
	cr_assert_eq(rmp_srv_plan_make(&rq, &pl), 0, "%s", pl.err);
	cr_assert_eq(pl.n_spawn, 0);
	cr_assert_eq(pl.n_standalone, 1);
	cr_assert_eq(pl.standalone[0].from, 1);
	cr_assert_eq(pl.standalone[0].len, 16 * MiB);
	cr_assert_eq(pl.standalone[0].base, 0);
	check_tiling(&pl, rq.capacity, 4 * MiB);
	rmp_srv_plan_free(&pl);

	/* More than they give and no agent to run the rest: refused, naming
	 * the spare donors and what they give. */
	rq = req("far", 128 * MiB);
	rq.spare = spare;
	rq.n_spare = 2;
	rq.n_hosts = 0;
	cr_assert_eq(rmp_srv_plan_make(&rq, &pl), -EHOSTUNREACH);
	cr_assert(strstr(pl.err, "pool far (128.0 MiB): no host agent is registered to run donors (2 "
				 "spare standalone donor(s) give 68.0 MiB)"),
		  "%s", pl.err);
	rmp_srv_plan_free(&pl);
}

Test(server_plan, bad_names_refused)
{
	static const char *bad[] = { "", "-x", ".hidden", "a/b", "sp ace", "semi;colon" };
	struct rmp_srv_plan pl;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rmp_srv_plan_req rq = req(bad[i], 64 * MiB);
		cr_assert_eq(rmp_srv_plan_make(&rq, &pl), -EINVAL, "\"%s\"", bad[i]);
		cr_assert(strstr(pl.err, "use letters, digits, '.', '_' and '-', not first '.' or "
					 "'-'"),
			  "%s", pl.err);
		rmp_srv_plan_free(&pl);
	}
	char err[256];
	cr_assert_eq(rmp_srv_plan_check_name("ok.name_1-2", err, sizeof(err)), 0);
	cr_assert_eq(rmp_srv_plan_check_name("x.", err, sizeof(err)), 0);
}

Test(server_plan, bad_sizes_refused)
{
	struct rmp_srv_plan_req rq = req("p", 64 * MiB);
	struct rmp_srv_plan pl;

	/* min_block: a power of two in [64, segment size] */
	static const uint64_t bad_min[] = { 32, 96, 8 * MiB };
	for (size_t i = 0; i < sizeof(bad_min) / sizeof(bad_min[0]); i++) {
		rq.min_block = bad_min[i];
		cr_assert_eq(rmp_srv_plan_make(&rq, &pl), -EINVAL);
		cr_assert(strstr(pl.err, "must be a power of two in [64, 4M]"), "%s", pl.err);
		rmp_srv_plan_free(&pl);
	}
	rq.min_block = 64;
	cr_assert_eq(rmp_srv_plan_make(&rq, &pl), 0, "%s", pl.err);
	cr_assert_eq(pl.min_block_log2, 6);
	rmp_srv_plan_free(&pl);

	/* A per-process limit that leaves less than one segment. */
	struct rmp_srv_plan_host tight = { .name = "t", .budget = GiB, .process_limit = 8 * MiB,
					   .donor_footprint = 5 * MiB };
	rq = req("p", 64 * MiB);
	rq.hosts = &tight;
	rq.n_hosts = 1;
	cr_assert_eq(rmp_srv_plan_make(&rq, &pl), -ENOSPC);
	cr_assert(strstr(pl.err, "pool p (64.0 MiB): per-process limit 8.0 MiB minus donor "
				 "footprint 5.0 MiB leaves less than one 4.0 MiB segment"),
		  "%s", pl.err);
	rmp_srv_plan_free(&pl);

	/* More segments than a segment table holds. */
	struct rmp_srv_plan_host roomy = { .name = "r", .budget = UINT64_MAX / 2,
					   .process_limit = UINT64_C(1) << 42 };
	rq = req("p", 256 * GiB);
	rq.hosts = &roomy;
	rq.n_hosts = 1;
	cr_assert_eq(rmp_srv_plan_make(&rq, &pl), -E2BIG);
	cr_assert(strstr(pl.err, "65536 segments of 4M, at most 32768: raise the coordinator's "
				 "segment-size"),
		  "%s", pl.err);
	rmp_srv_plan_free(&pl);

	/* More buddy levels than the metadata allows: 2^38 in 64-byte blocks. */
	rq.segment_size = GiB;
	rq.min_block = 64;
	cr_assert_eq(rmp_srv_plan_make(&rq, &pl), -EINVAL);
	cr_assert(strstr(pl.err, "a 2^38-byte space in 2^6-byte blocks needs 33 buddy levels, at "
				 "most 29"),
		  "%s", pl.err);
	rmp_srv_plan_free(&pl);
}
