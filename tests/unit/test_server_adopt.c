/* test_server_adopt.c - server/adopt.c: what a restarted coordinator
 * accepts of a recorded pool (metadata header, stored segment table,
 * re-registering donors, leases).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "adopt.h"
#include "buddy.h"

/* A pool of 2^20 bytes in blocks of 2^12, 600000 usable. */
static uint64_t *formatted(struct rmp_buddy_geom *g, uint64_t *len)
{
	cr_assert_eq(rmp_buddy_geom_init(g, 20, 12), 0);
	uint64_t *w = calloc(g->total_words, sizeof(*w));
	cr_assert_not_null(w);
	rmp_buddy_format(w, g, 600000);
	*len = g->total_words * sizeof(*w);
	return w;
}

static const struct rmp_srv_adopt_expect want = {
	.shm_name = "/rmpool-t", .space_log2 = 20, .min_block_log2 = 12, .capacity = 600000
};

Test(adopt, the_metadata_it_made_is_taken_back_and_the_generation_word_is_free)
{
	struct rmp_buddy_geom g;
	uint64_t len;
	uint64_t *w = formatted(&g, &len);
	char err[256] = "";

	cr_assert_eq(rmp_srv_adopt_check_meta(w, len, &want, err, sizeof(err)), 0, "%s", err);
	/* A stamped generation is not part of what is checked. */
	w[RMP_BUDDY_HDR_GEN_WORD] = 41;
	cr_assert_eq(rmp_srv_adopt_check_meta(w, len, &want, err, sizeof(err)), 0, "%s", err);
	cr_assert_lt(RMP_BUDDY_HDR_GEN_WORD, RMP_BUDDY_HDR_WORDS);
	free(w);
}

Test(adopt, metadata_of_another_layout_geometry_or_size_is_refused_naming_the_object)
{
	struct rmp_buddy_geom g;
	uint64_t len;
	uint64_t *w = formatted(&g, &len);
	char err[256];
	struct rmp_srv_adopt_expect other = want;

	cr_assert_eq(rmp_srv_adopt_check_meta(w, 32, &want, err, sizeof(err)), -EPROTO);
	cr_expect(strstr(err, "shorter than the header"), "%s", err);
	cr_assert_eq(rmp_srv_adopt_check_meta(w, len - 8, &want, err, sizeof(err)), -EPROTO);
	cr_expect(strstr(err, "its header needs"), "%s", err);
	other.space_log2 = 21;
	cr_assert_eq(rmp_srv_adopt_check_meta(w, len, &other, err, sizeof(err)), -EPROTO);
	cr_expect(strstr(err, "/rmpool-t") && strstr(err, "the record says 2^21"), "%s", err);
	other = want;
	other.capacity = 4096;
	cr_assert_eq(rmp_srv_adopt_check_meta(w, len, &other, err, sizeof(err)), -EPROTO);
	cr_expect(strstr(err, "usable bytes"), "%s", err);

	uint64_t magic = w[0];
	w[0] = (magic & ~UINT64_C(0xffff)) | 7;
	cr_assert_eq(rmp_srv_adopt_check_meta(w, len, &want, err, sizeof(err)), -EPROTONOSUPPORT);
	cr_expect(strstr(err, "layout version 7"), "%s", err);
	w[0] = 0;
	cr_assert_eq(rmp_srv_adopt_check_meta(w, len, &want, err, sizeof(err)), -EPROTO);
	cr_expect(strstr(err, "no buddy metadata"), "%s", err);
	free(w);
}

static struct rmp_wire_donor_entry donors[2];
static struct rmp_wire_segment segs[4];

/* 4 segments of 2^18: the coordinator's share (donor 9) in 0 and 1, donor
 * 10 in 2, 3 reserved. */
static void table(struct rmp_wire_segtab *t)
{
	memset(t, 0, sizeof(*t));
	t->version = 3;
	t->capacity = 3u << 18;
	t->space_log2 = 20;
	t->min_block_log2 = 12;
	t->segment_log2 = 18;
	t->meta = (struct rmp_wire_region){ 0x1000, 8192, 0x11 };
	strcpy(t->coordinator.host, "10.0.0.1");
	t->coordinator.port = 7402;
	donors[0] = (struct rmp_wire_donor_entry){ .donor_id = 9, .endpoint = t->coordinator };
	donors[1] = (struct rmp_wire_donor_entry){ .donor_id = 10, .endpoint = { "10.0.0.2", 9000 } };
	segs[0] = (struct rmp_wire_segment){ 9, 0x22, 0x500000 };
	segs[1] = (struct rmp_wire_segment){ 9, 0x22, 0x540000 };
	segs[2] = (struct rmp_wire_segment){ 10, 0x33, 0x900000 };
	segs[3] = (struct rmp_wire_segment){ RMP_WIRE_SEG_RESERVED, 0, 0 };
	t->n_donors = 2;
	t->donors = donors;
	t->n_segments = 4;
	t->segments = segs;
}

Test(adopt, a_stored_table_decodes_to_what_was_stored)
{
	struct rmp_wire_segtab t, back;
	uint8_t *blob;
	size_t len;
	char err[256];

	table(&t);
	cr_assert_eq(rmp_srv_adopt_segtab_encode(6, &t, &blob, &len), 0);
	cr_assert_eq(rmp_srv_adopt_segtab_decode(blob, len, 6, &back, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(back.version, 3);
	cr_expect_eq(back.n_segments, 4);
	cr_expect_eq(back.segments[2].addr, 0x900000);
	cr_expect_str_eq(back.donors[1].endpoint.host, "10.0.0.2");
	cr_expect_eq(rmp_srv_adopt_donor_bytes(&back, 9), 2u << 18);
	cr_expect_eq(rmp_srv_adopt_donor_bytes(&back, 10), 1u << 18);
	free(back.donors);
	free(back.segments);

	cr_assert_eq(rmp_srv_adopt_segtab_decode(blob, len, 7, &back, err, sizeof(err)), -EPROTO);
	cr_expect(strstr(err, "for pool 6"), "%s", err);
	cr_assert_eq(rmp_srv_adopt_segtab_decode(blob, len - 1, 6, &back, err, sizeof(err)), -EPROTO);
	cr_expect(strstr(err, "does not decode"), "%s", err);
	cr_assert_eq(rmp_srv_adopt_segtab_decode(NULL, 0, 6, &back, err, sizeof(err)), -EPROTO);
	free(blob);
}

Test(adopt, the_patch_moves_the_metadata_and_the_share_and_keeps_the_donors)
{
	struct rmp_wire_segtab t;
	char err[256];
	struct rmp_srv_adopt_patch pt = {
		.meta = { 0x7000, 8192, 0x44 },
		.coordinator = { "10.0.0.1", 7502 },
		.self_donor_id = 9,
		.self = { 0xa00000, 2u << 18, 0x55 },
	};

	table(&t);
	cr_assert_eq(rmp_srv_adopt_segtab_patch(&t, &pt, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(t.version, 4);
	cr_expect_eq(t.meta.addr, 0x7000);
	cr_expect_eq(t.meta.rkey, 0x44);
	cr_expect_eq(t.coordinator.port, 7502);
	cr_expect_eq(t.donors[0].endpoint.port, 7502, "the share is served by the coordinator");
	cr_expect_eq(t.donors[1].endpoint.port, 9000);
	cr_expect_eq(t.segments[0].rkey, 0x55);
	cr_expect_eq(t.segments[0].addr, 0xa00000);
	cr_expect_eq(t.segments[1].addr, 0xa00000 + (1u << 18));
	cr_expect_eq(t.segments[2].rkey, 0x33, "a donor's segments keep its key");
	cr_expect_eq(t.segments[2].addr, 0x900000);

	table(&t);
	pt.self.len = 1u << 18; /* the share is smaller than the table says */
	cr_assert_eq(rmp_srv_adopt_segtab_patch(&t, &pt, err, sizeof(err)), -EPROTO);
	cr_expect(strstr(err, "past its"), "%s", err);
}

Test(adopt, only_the_recorded_process_is_taken_back)
{
	struct rmp_srv_adopt_donor rec = { 4242, { 0x7f0000, 1u << 22, 7 }, { "10.0.0.3", 9000 } };
	struct rmp_srv_adopt_donor got = rec;
	char err[256];

	cr_assert_eq(rmp_srv_adopt_donor_check(5, &rec, &got, err, sizeof(err)), 0);
	got.pid = 1;
	cr_assert_eq(rmp_srv_adopt_donor_check(5, &rec, &got, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "pid 4242"), "%s", err);
	got = rec;
	got.region.rkey = 8;
	cr_assert_eq(rmp_srv_adopt_donor_check(5, &rec, &got, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "rkey"), "%s", err);
	got = rec;
	got.region.len /= 2;
	cr_assert_eq(rmp_srv_adopt_donor_check(5, &rec, &got, err, sizeof(err)), -EINVAL);
	got = rec;
	got.endpoint.port = 9001;
	cr_assert_eq(rmp_srv_adopt_donor_check(5, &rec, &got, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "10.0.0.3:9001"), "%s", err);
}

Test(adopt, a_restored_lease_lives_at_least_one_period_from_the_restart)
{
	/* recorded expiry long past: one period from now */
	cr_expect_eq(rmp_srv_adopt_lease_deadline(1000, 50000, 7, 10000), 10007);
	/* recorded expiry sooner than a period: still a whole period */
	cr_expect_eq(rmp_srv_adopt_lease_deadline(52000, 50000, 7, 10000), 10007);
	/* recorded expiry later than a period: kept */
	cr_expect_eq(rmp_srv_adopt_lease_deadline(75000, 50000, 7, 10000), 25007);
	cr_expect_eq(rmp_srv_adopt_lease_deadline(UINT64_MAX, 0, UINT64_MAX - 5, 10), UINT64_MAX);
}
