/* test_client_meta.c - the metadata walk `pool check` runs on what it
 * read over RDMA (client/meta.c), on images formatted by the buddy
 * engine: a fresh pool is valid with free bytes == usable bytes and the
 * tail reserved; allocations show up; a flipped bit, a wrong magic or a
 * short image are reported, never crash; an operation cut in the middle
 * lags, a count below its blocks is corrupt.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buddy.h"
#include "client_internal.h"
#include "store_local.h"

static uint64_t *image(unsigned max_order, unsigned min_order, uint64_t usable,
		       struct rmp_buddy_geom *g)
{
	cr_assert_eq(rmp_buddy_geom_init(g, max_order, min_order), 0);
	uint64_t *w = calloc(g->total_words, sizeof(uint64_t));
	rmp_buddy_format(w, g, usable);
	return w;
}

Test(client_meta, fresh_pool_is_valid_and_all_free)
{
	struct rmp_buddy_geom g;
	struct rmp_meta_report r;
	/* 224 MiB usable of a 256 MiB space, 4 KiB blocks: the test pool's shape. */
	uint64_t *w = image(28, 12, 224u << 20, &g);

	cr_assert_eq(rmp_meta_check_image(w, g.total_words, &r), 0, "%s", r.error);
	cr_assert(r.valid, "%s", r.error);
	cr_assert_eq(r.free_bytes, 224u << 20);
	cr_assert_eq(r.reserved_bytes, 32u << 20);
	cr_assert_eq(r.alloc_bytes, 0);
	cr_assert_eq(r.usable, 224u << 20);
	cr_assert_eq(r.max_order, 28);
	cr_assert_eq(r.min_order, 12);
	free(w);
}

Test(client_meta, allocations_are_counted)
{
	struct rmp_buddy_geom g;
	struct rmp_meta_report r;
	uint64_t *w = image(20, 12, 1u << 20, &g);
	struct rmp_store_local s;
	struct rmp_buddy b;
	struct rmp_buddy_ctx ctx;
	uint64_t off;

	rmp_store_local_init(&s, (_Atomic uint64_t *)w, g.total_words);
	rmp_buddy_init(&b, &g, &s.base);
	rmp_buddy_ctx_init(&ctx, &b, 1);
	cr_assert_eq(rmp_buddy_alloc(&b, &ctx, 14, &off), 0);
	cr_assert_eq(rmp_meta_check_image(w, g.total_words, &r), 0);
	cr_assert(r.valid, "%s", r.error);
	cr_assert_eq(r.alloc_bytes, 1u << 14);
	cr_assert_eq(r.free_bytes, (1u << 20) - (1u << 14));
	free(w);
}

Test(client_meta, damage_is_reported)
{
	struct rmp_buddy_geom g;
	struct rmp_meta_report r;
	uint64_t *w = image(20, 12, 1u << 20, &g);

	/* Mark a block of the last level FREE while the whole heap is free at
	 * level 0: a byte in two free blocks. */
	w[g.level_word[g.levels - 1]] |= 1;
	cr_assert_eq(rmp_meta_check_image(w, g.total_words, &r), 0);
	cr_assert_not(r.valid);
	cr_assert_eq(r.state, RMP_CHECK_CORRUPT);
	cr_assert_neq(r.error[0], '\0');

	w[0] ^= 0xff0000; /* the magic (the low 16 bits are the layout version) */
	cr_assert_eq(rmp_meta_check_image(w, g.total_words, &r), -EPROTO);
	cr_assert_not(r.valid);
	cr_assert_eq(rmp_meta_check_image(w, 3, &r), -EPROTO);
	free(w);
}

Test(client_meta, other_layout_version_is_refused)
{
	struct rmp_buddy_geom g;
	struct rmp_meta_report r;
	uint64_t *w = image(20, 12, 1u << 20, &g);

	w[0] += 1; /* the low 16 bits of the magic word: layout version + 1 */
	cr_assert_eq(rmp_meta_check_image(w, g.total_words, &r), -EPROTONOSUPPORT);
	cr_assert_not(r.valid);
	char want[64];
	snprintf(want, sizeof(want), "layout version %u", RMP_BUDDY_VERSION + 1);
	cr_assert(strstr(r.error, want) != NULL, "%s", r.error);
	free(w);
}

Test(client_meta, short_image_is_refused)
{
	struct rmp_buddy_geom g;
	struct rmp_meta_report r;
	uint64_t *w = image(20, 12, 1u << 20, &g);

	cr_assert_eq(rmp_meta_check_image(w, g.total_words - 8, &r), -EPROTO);
	cr_assert(strstr(r.error, "words") != NULL, "%s", r.error);
	free(w);
}

/* The classification `pool check` reports (rmp_buddy_classify): a pool
 * with owner records where a consumer was cut in the middle of an
 * allocation's split lags (its slot busy, a move in transit) and is
 * never called corrupt; a count lowered is corrupt; the state and the
 * figures reach the report. */
Test(client_meta, lag_is_told_from_corruption)
{
	struct rmp_buddy_geom g;
	struct rmp_meta_report r;
	cr_assert_eq(rmp_buddy_geom_init_records(&g, 20, 12, 4), 0);
	uint64_t *w = calloc(g.total_words, sizeof(uint64_t)), off;
	rmp_buddy_format(w, &g, 1u << 20);
	struct rmp_store_local s;
	struct rmp_buddy b;
	struct rmp_buddy_ctx ctx;
	rmp_store_local_init(&s, (_Atomic uint64_t *)w, g.total_words);
	rmp_store_local_set_mode(&s, RMP_STORE_TRACE, 0); /* a remote store: records are kept */
	rmp_buddy_init(&b, &g, &s.base);
	rmp_buddy_ctx_init(&ctx, &b, 1);
	cr_assert_eq(rmp_buddy_ctx_record(&ctx, &b, 1, 7), 0);
	cr_assert_eq(rmp_buddy_alloc(&b, &ctx, 12, &off), 0);
	cr_assert_eq(rmp_meta_check_image(w, g.total_words, &r), 0);
	cr_assert(r.valid, "%s", r.error);
	cr_assert_eq(r.state, RMP_CHECK_VALID);
	cr_assert_eq(r.error[0], '\0');

	/* A split cut after its first batch: claimed, halves not yet FREE. */
	uint64_t *saved = malloc(g.total_words * sizeof(uint64_t));
	memcpy(saved, w, g.total_words * sizeof(uint64_t));
	unsigned lagging = 0;
	for (uint64_t k = 1; k < 40; k++) {
		memcpy(w, saved, g.total_words * sizeof(uint64_t));
		rmp_buddy_ctx_init(&ctx, &b, 1);
		cr_assert_eq(rmp_buddy_ctx_record(&ctx, &b, 1, 7), 0);
		rmp_store_local_cut_after(k);
		int rc = rmp_buddy_alloc(&b, &ctx, 12, &off);
		rmp_store_local_cut_after(0);
		cr_assert_eq(rmp_meta_check_image(w, g.total_words, &r), 0);
		cr_assert_neq(r.state, RMP_CHECK_CORRUPT, "k=%llu: %s", (unsigned long long)k, r.error);
		if (r.state == RMP_CHECK_LAGGING) {
			lagging++;
			cr_assert_not(r.valid);
			cr_assert(r.busy_slots + r.drift_counts + r.moves + r.holes + r.odd_tags > 0);
			cr_assert_neq(r.error[0], '\0');
		}
		if (rc == 0)
			break; /* the allocation got through inside k */
	}
	cr_assert_gt(lagging, 0);

	memcpy(w, saved, g.total_words * sizeof(uint64_t));
	w[g.count_word + 0] = 1; /* level 0 is split: its count was 0 */
	cr_assert_eq(rmp_meta_check_image(w, g.total_words, &r), 0);
	cr_assert_eq(r.state, RMP_CHECK_LAGGING, "%s", r.error);
	cr_assert_eq(r.drift_counts, 1);
	w[g.count_word + g.levels - 1] = (uint64_t)-1; /* below its free blocks */
	cr_assert_eq(rmp_meta_check_image(w, g.total_words, &r), 0);
	cr_assert_eq(r.state, RMP_CHECK_CORRUPT);
	cr_assert_not(r.valid);
	cr_assert(strstr(r.error, "below") != NULL, "%s", r.error);
	free(saved);
	free(w);
}
