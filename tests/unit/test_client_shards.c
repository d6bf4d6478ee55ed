/* test_client_shards.c - librmpool's shards (client/shard.c) on the
 * simulated remote store: an allocation or a free cut off after each of
 * its word operations (rmp_store_local_cut_after, as an RDMA error in the
 * middle would) leaves its shard FAILED; once the store works again the
 * shard abandons its slot, its operations go to another shard of the
 * lease (whose blocks carry that shard's tag: nothing untagged), and
 * after the resolver reset the slot it records again with the same tag
 * and takes operations again. The blocks it had keep their tag and stay
 * live through the resolver; the walker passes and the free bytes are
 * exact. With every shard abandoned a take waits for a reset within its
 * bound, and fails with -EAGAIN after it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "shard.h"
#include "store_local.h"

#define SLOTS 32u      /* the lease: 0..15; the resolver: 31 */
#define SELF_SLOT 31u
#define ID_BASE 112u   /* lease 7: tag ids 7 * 16 + s */
#define SELF_ID (1ull << 60)

struct rig {
	struct rmp_buddy_geom g;
	uint64_t *words;
	struct rmp_store_local store, rstore; /* the client's, the resolver's */
	struct rmp_buddy b, rb;
	struct rmp_buddy_ctx rctx;
	struct rmp_data_shard *v;
	struct rmp_shards s;
	struct rmp_buddy_who who[SLOTS];
};

static struct rig *rig_new(void)
{
	struct rig *r = calloc(1, sizeof(*r));
	cr_assert_eq(rmp_buddy_geom_init_records(&r->g, 16, 8, SLOTS), 0);
	r->words = calloc(r->g.total_words, sizeof(uint64_t));
	rmp_buddy_format(r->words, &r->g, 1u << 16);
	rmp_store_local_init(&r->store, (_Atomic uint64_t *)r->words, r->g.total_words);
	rmp_store_local_set_mode(&r->store, RMP_STORE_TRACE, 0); /* not direct: records kept */
	rmp_buddy_init(&r->b, &r->g, &r->store.base);
	rmp_store_local_init(&r->rstore, (_Atomic uint64_t *)r->words, r->g.total_words);
	rmp_store_local_set_mode(&r->rstore, RMP_STORE_TRACE, 0);
	rmp_buddy_init(&r->rb, &r->g, &r->rstore.base);
	rmp_buddy_ctx_init(&r->rctx, &r->rb, 0);
	cr_assert_eq(rmp_buddy_ctx_record(&r->rctx, &r->rb, SELF_SLOT, SELF_ID), 0);
	cr_assert_eq(posix_memalign((void **)&r->v, 64, RMP_DATA_SHARDS * sizeof(*r->v)), 0);
	memset(r->v, 0, RMP_DATA_SHARDS * sizeof(*r->v));
	rmp_shards_init(&r->s, r->v);
	rmp_shards_start(&r->s, &r->b, 7);
	cr_assert_eq(rmp_shards_record(&r->s, 0, ID_BASE), 0);
	for (unsigned i = 0; i < RMP_DATA_SHARDS; i++)
		r->who[i] = (struct rmp_buddy_who){ RMP_BUDDY_TAG_BIT | (ID_BASE + i), RMP_BUDDY_PARTY_LIVE };
	r->who[SELF_SLOT] = (struct rmp_buddy_who){ RMP_BUDDY_TAG_BIT | SELF_ID, RMP_BUDDY_PARTY_DEAD };
	return r;
}

static void rig_free(struct rig *r)
{
	rmp_shards_destroy(&r->s);
	free(r->v);
	free(r->words);
	free(r);
}

static uint64_t slot_op(const struct rig *r, unsigned slot)
{
	return r->words[r->g.slot_word + 2ull * slot];
}

static uint64_t tag_of(const struct rig *r, uint64_t off)
{
	return r->words[r->g.tag_word + (off >> 8)];
}

/* One allocation or free through the shards, as data.c runs them. */
static int run_op(struct rig *r, unsigned home, bool do_free, uint64_t *off, unsigned order,
		  struct rmp_data_shard **used)
{
	struct rmp_data_shard *sh;
	int rc = rmp_shards_take(&r->s, home, 1000, &sh);
	if (rc)
		return rc;
	*used = sh;
	rc = do_free ? rmp_buddy_free(&r->b, &sh->ctx, *off, order) : rmp_buddy_alloc(&r->b, &sh->ctx, order, off);
	rmp_shards_give(&r->s, sh, rc);
	return rc;
}

static void check_quiet(struct rig *r, uint64_t alloc_bytes, uint64_t k)
{
	struct rmp_buddy_report rep;
	int rc = rmp_buddy_check(&r->b, &rep);
	cr_assert_eq(rc, 0, "k=%llu: walker: %s", (unsigned long long)k, rep.error);
	cr_assert_eq(rep.alloc_bytes, alloc_bytes, "k=%llu: %llu bytes allocated, want %llu", (unsigned long long)k,
		     (unsigned long long)rep.alloc_bytes, (unsigned long long)alloc_bytes);
	cr_assert_eq(rep.untagged_blocks, 0, "k=%llu: an untagged block (an operation without records)",
		     (unsigned long long)k);
}

/* The cut, the abandon, the forwarding, the reset, the re-record: for an
 * allocation (do_free 0) or a free, cut after each of its word ops. */
static void cut_every_step(bool do_free)
{
	unsigned cut = 0, forwarded = 0, rerecorded = 0;
	for (uint64_t k = 1; k < 64; k++) {
		struct rig *r = rig_new();
		struct rmp_data_shard *used;
		uint64_t keep[3], x = 0, y;
		for (int i = 0; i < 3; i++)
			cr_assert_eq(run_op(r, 0, false, &keep[i], 9, &used), 0);
		/* A split for the allocation; a free that merges up. */
		if (do_free)
			cr_assert_eq(run_op(r, 0, false, &x, 12, &used), 0);
		rmp_store_local_cut_after(k);
		int rc = run_op(r, 0, do_free, &x, 12, &used);
		rmp_store_local_cut_after(0);
		if (rc == 0) {
			rig_free(r);
			break; /* it finished inside k: every longer cut does too */
		}
		cut++;
		cr_assert_eq(rc, -EIO);
		cr_assert_eq(used, &r->v[0]);
		cr_assert_eq(atomic_load(&r->v[0].state), RMP_SHARD_FAILED, "k=%llu", (unsigned long long)k);
		/* The store works again (the reopen): the slot is given up. */
		cr_assert_eq(rmp_shards_abandon_failed(&r->s), 0);
		cr_assert_eq(atomic_load(&r->v[0].state), RMP_SHARD_ABANDONED);
		bool busy = slot_op(r, 0) != 0;
		if (busy)
			cr_assert(slot_op(r, 0) & RMP_BUDDY_SLOT_ABANDONED, "k=%llu: a busy slot not marked abandoned",
				  (unsigned long long)k);
		/* This thread's next allocation: forwarded while the slot is
		 * not reset, tagged with the shard that ran it. */
		cr_assert_eq(run_op(r, 0, false, &y, 10, &used), 0);
		if (busy) {
			cr_assert_neq(used, &r->v[0], "k=%llu: an abandoned shard allocated", (unsigned long long)k);
			forwarded++;
		}
		cr_assert_eq(tag_of(r, y), RMP_BUDDY_TAG_BIT | (ID_BASE + (unsigned)(used - r->v)));
		/* The coordinator's resolver, the lease live. */
		struct rmp_buddy_resolve_report rep;
		cr_assert_eq(rmp_buddy_resolve(&r->rb, &r->rctx, r->who, 10, &rep), 0);
		cr_assert_eq(slot_op(r, 0), 0, "k=%llu: the abandoned slot is idle again", (unsigned long long)k);
		/* Within a check period the shard records again. */
		uint64_t t0 = rmp_mono_ms();
		while (atomic_load(&r->v[0].state) != RMP_SHARD_OK && rmp_mono_ms() - t0 < 1000) {
			struct rmp_data_shard *sh;
			cr_assert_eq(rmp_shards_take(&r->s, 0, 1000, &sh), 0);
			rmp_shards_give(&r->s, sh, 0);
			usleep(5000);
		}
		cr_assert_eq(atomic_load(&r->v[0].state), RMP_SHARD_OK, "k=%llu: not recording again in 1 s",
			     (unsigned long long)k);
		cr_assert_eq(r->v[0].ctx.rec_tag, RMP_BUDDY_TAG_BIT | ID_BASE, "the same tag");
		rerecorded++;
		uint64_t z;
		cr_assert_eq(run_op(r, 0, false, &z, 10, &used), 0);
		cr_assert_eq(used, &r->v[0]);
		cr_assert_eq(tag_of(r, z), RMP_BUDDY_TAG_BIT | ID_BASE);
		/* The old blocks kept their tag and are live; what the cut
		 * left is gone (a claimed block of a failed allocation is
		 * garbage; a free that landed merged). */
		for (int i = 0; i < 3; i++) {
			cr_assert_eq(rmp_buddy_is_live(&r->b, &r->rctx, keep[i], 9), 1, "k=%llu: a block of the "
				     "abandoned shard was freed", (unsigned long long)k);
			cr_assert_eq(tag_of(r, keep[i]), RMP_BUDDY_TAG_BIT | ID_BASE);
		}
		int xl = do_free ? rmp_buddy_is_live(&r->b, &r->rctx, x, 12) : 0;
		check_quiet(r, 3 * 512 + 2 * 1024 + (xl == 1 ? 4096 : 0), k);
		rig_free(r);
	}
	cr_assert_gt(cut, 5, "only %u cut points", cut);
	cr_assert_gt(forwarded, 0);
	cr_assert_eq(rerecorded, cut);
	cr_log_info("%s: %u cut points, %u forwarded while abandoned, %u recorded again", do_free ? "free" : "alloc",
		    cut, forwarded, rerecorded);
}

Test(shards, alloc_cut_at_every_step_abandons_forwards_and_records_again)
{
	cut_every_step(false);
}

Test(shards, free_cut_at_every_step_abandons_forwards_and_records_again)
{
	cut_every_step(true);
}


/* A free through the shards as data.c runs it: given back with
 * rmp_shards_give_free (*doubt: left for the shard to settle). */
static int free_give(struct rig *r, unsigned home, uint64_t off, unsigned order, bool *doubt)
{
	struct rmp_data_shard *sh;
	int rc = rmp_shards_take(&r->s, home, 1000, &sh);
	if (rc)
		return rc;
	rc = rmp_buddy_free(&r->b, &sh->ctx, off, order);
	*doubt = rmp_shards_give_free(&r->s, sh, rc, off, order);
	return rc;
}

/* A free cut after each of its word operations is in doubt: it may have
 * landed. It is never retried as it was: once the resolver has reset the
 * abandoned slot the shard settles it before it takes anything else, and
 * the block is freed exactly once - by the settle when the cut free had
 * not landed, not at all when it had. With realloc, another shard of the
 * lease (another tag) is given the block between the cut and the settle
 * whenever the cut free landed (the hazard of a retry: rmpool.h used to
 * say "free it again later"): the settle leaves that block alone. */
static void settle_every_step(bool realloc)
{
	unsigned cut = 0, freed = 0, landed = 0, taken = 0;
	for (uint64_t k = 1; k < 64; k++) {
		struct rig *r = rig_new();
		struct rmp_data_shard *used;
		uint64_t keep[3], x = 0, other[16];
		unsigned nother = 0;
		bool doubt = false, got = false;
		for (int i = 0; i < 3; i++)
			cr_assert_eq(run_op(r, 0, false, &keep[i], 9, &used), 0);
		cr_assert_eq(run_op(r, 0, false, &x, 12, &used), 0);
		rmp_store_local_cut_after(k);
		int rc = free_give(r, 0, x, 12, &doubt);
		rmp_store_local_cut_after(0);
		if (rc == 0) {
			cr_assert(!doubt);
			rig_free(r);
			break; /* it finished inside k: every longer cut does too */
		}
		cut++;
		cr_assert_eq(rc, -EIO);
		cr_assert(doubt, "k=%llu: a free cut in the middle is not left in doubt", (unsigned long long)k);
		struct rmp_shard_stats st;
		rmp_shards_stats(&r->s, &st);
		cr_assert_eq(st.unsettled, 1);
		bool was_live = rmp_buddy_is_live(&r->b, &r->rctx, x, 12) == 1;
		if (realloc && !was_live) {
			/* The cut free landed: shard 5 allocates until it is given x
			 * (a merge half done holds it until the resolver). */
			uint64_t y;
			while (nother < 16 && run_op(r, 5, false, &y, 12, &used) == 0) {
				other[nother++] = y;
				if (y == x) {
					got = true;
					break;
				}
			}
		}
		cr_assert_eq(rmp_shards_abandon_failed(&r->s), 0);
		struct rmp_buddy_resolve_report rep;
		cr_assert_eq(rmp_buddy_resolve(&r->rb, &r->rctx, r->who, 10, &rep), 0);
		unsigned left = rmp_shards_settle(&r->s, 1000);
		cr_assert_eq(left, 0, "k=%llu: %u frees still in doubt 1 s after the reset", (unsigned long long)k, left);
		cr_assert_eq(atomic_load(&r->v[0].state), RMP_SHARD_OK, "k=%llu", (unsigned long long)k);
		rmp_shards_stats(&r->s, &st);
		cr_assert_eq(st.settled_freed + st.settled_landed, 1);
		cr_assert_eq(st.settled_freed, was_live ? 1u : 0u, "k=%llu: the settle freed %llu, the block was %s",
			     (unsigned long long)k, (unsigned long long)st.settled_freed, was_live ? "live" : "freed");
		freed += (unsigned)st.settled_freed;
		landed += (unsigned)st.settled_landed;
		if (got) {
			taken++;
			cr_assert_eq(rmp_buddy_is_live(&r->b, &r->rctx, x, 12), 1, "k=%llu: the settle freed the block "
				     "another shard was given", (unsigned long long)k);
			cr_assert_eq(tag_of(r, x), RMP_BUDDY_TAG_BIT | (ID_BASE + 5));
		} else
			cr_assert_eq(rmp_buddy_is_live(&r->b, &r->rctx, x, 12), 0, "k=%llu: still allocated after the "
				     "settle", (unsigned long long)k);
		for (int i = 0; i < 3; i++)
			cr_assert_eq(rmp_buddy_is_live(&r->b, &r->rctx, keep[i], 9), 1);
		for (unsigned i = 0; i < nother; i++)
			cr_assert_eq(rmp_buddy_is_live(&r->b, &r->rctx, other[i], 12), 1);
		check_quiet(r, 3 * 512 + nother * 4096ull, k);
		rig_free(r);
	}
	cr_assert_gt(cut, 5, "only %u cut points", cut);
	cr_assert_gt(freed, 0, "no cut before the free landed");
	cr_assert_gt(landed, 0, "no cut after the free landed");
	if (realloc)
		cr_assert_gt(taken, 0, "the landed frees' blocks were never given to another shard");
	cr_log_info("free cut at %u points: %u settled by freeing (had not landed), %u had landed; %u times the "
		    "block was given to another shard before the settle, and kept", cut, freed, landed, taken);
}

Test(shards, a_free_cut_at_every_step_is_settled_exactly_once)
{
	settle_every_step(false);
}

Test(shards, a_settle_never_frees_a_block_given_to_another_since)
{
	settle_every_step(true);
}
/* The engine's own answers leave a shard OK; without records nothing is
 * ever failed (there is no slot to abandon). */
Test(shards, engine_answers_and_no_records_leave_shards_ok)
{
	struct rig *r = rig_new();
	struct rmp_data_shard *sh;
	int answers[] = { 0, -ENOMEM, -EAGAIN, -EINVAL };
	for (unsigned k = 0; k < 4; k++) {
		cr_assert_eq(rmp_shards_take(&r->s, 3, 10, &sh), 0);
		rmp_shards_give(&r->s, sh, answers[k]);
		cr_assert_eq(atomic_load(&sh->state), RMP_SHARD_OK);
	}
	cr_assert_eq(rmp_shards_take(&r->s, 3, 10, &sh), 0);
	rmp_shards_give(&r->s, sh, -EIO);
	cr_assert_eq(atomic_load(&sh->state), RMP_SHARD_FAILED);
	rig_free(r);

	r = rig_new();
	rmp_shards_init(&r->s, r->v); /* again, with no records this time */
	rmp_shards_start(&r->s, &r->b, 7);
	cr_assert_eq(rmp_shards_take(&r->s, 3, 10, &sh), 0);
	rmp_shards_give(&r->s, sh, -EIO);
	cr_assert_eq(atomic_load(&sh->state), RMP_SHARD_OK);
	rig_free(r);
}

/* Fails every shard in the middle of an allocation with its slot busy. */
static void fail_all(struct rig *r)
{
	for (unsigned i = 0; i < RMP_DATA_SHARDS; i++) {
		for (uint64_t k = 1; k < 64; k++) {
			struct rmp_data_shard *sh;
			uint64_t off;
			cr_assert_eq(rmp_shards_take(&r->s, i, 10, &sh), 0);
			cr_assert_eq(sh, &r->v[i]);
			rmp_store_local_cut_after(k);
			int rc = rmp_buddy_alloc(&r->b, &sh->ctx, 8, &off);
			rmp_store_local_cut_after(0);
			rmp_shards_give(&r->s, sh, rc);
			if (rc != 0 && slot_op(r, i) != 0)
				break;
			cr_assert_eq(rmp_shards_take(&r->s, i, 10, &sh), 0); /* idle slot: OK again at once */
			rmp_shards_give(&r->s, sh, 0);
		}
		cr_assert_eq(atomic_load(&r->v[i].state), RMP_SHARD_FAILED, "shard %u", i);
	}
	cr_assert_eq(rmp_shards_abandon_failed(&r->s), 0);
	cr_assert_eq(rmp_shards_count(&r->s, RMP_SHARD_ABANDONED), RMP_DATA_SHARDS);
}

static void *resolve_later(void *arg)
{
	struct rig *r = arg;
	struct rmp_buddy_resolve_report rep;
	usleep(150000);
	cr_assert_eq(rmp_buddy_resolve(&r->rb, &r->rctx, r->who, 10, &rep), 0);
	return NULL;
}

Test(shards, all_abandoned_waits_for_a_reset_within_its_bound)
{
	struct rig *r = rig_new();
	struct rmp_data_shard *sh;
	fail_all(r);
	uint64_t t0 = rmp_mono_ms();
	cr_assert_eq(rmp_shards_take(&r->s, 5, 300, &sh), -EAGAIN);
	uint64_t waited = rmp_mono_ms() - t0;
	cr_assert_geq(waited, 300);
	cr_assert_lt(waited, 900, "waited %llu ms for a bound of 300", (unsigned long long)waited);
	struct rmp_shard_stats st;
	rmp_shards_stats(&r->s, &st);
	cr_assert_eq(st.gave_up, 1);
	cr_assert_geq(st.abandoned, RMP_DATA_SHARDS);

	/* A reset 150 ms on: the take that waits gets a shard, recording. */
	pthread_t th;
	pthread_create(&th, NULL, resolve_later, r);
	t0 = rmp_mono_ms();
	cr_assert_eq(rmp_shards_take(&r->s, 5, 3000, &sh), 0);
	waited = rmp_mono_ms() - t0;
	cr_assert_eq(atomic_load(&sh->state), RMP_SHARD_OK);
	cr_assert_neq(sh->ctx.rec_tag, 0);
	uint64_t off;
	int rc = rmp_buddy_alloc(&r->b, &sh->ctx, 8, &off);
	rmp_shards_give(&r->s, sh, rc);
	cr_assert_eq(rc, 0);
	pthread_join(th, NULL);
	cr_assert_geq(waited, 140);
	cr_assert_lt(waited, 1000, "%llu ms from a reset at +150 ms to a shard", (unsigned long long)waited);
	cr_log_info("all abandoned: -EAGAIN after its 300 ms bound; a reset at +150 ms served in %llu ms",
		    (unsigned long long)waited);
	rig_free(r);
}
