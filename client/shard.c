/*
 * shard.c - librmpool's engine contexts and what happens to one whose
 * operation failed in the middle (shard.h has the states).
 *
 * Why a failed shard cannot just go on: its slot may be left busy naming
 * a block (the operation partly landed), and every resolver snapshot of
 * the pool would stay unclean - an expired consumer's reclaim would wait
 * until this process exits. So the shard gives the slot up
 * (rmp_buddy_ctx_abandon: RMP_BUDDY_SLOT_ABANDONED in it, once the store
 * works again), the coordinator's periodic scan (server/self.c) runs the
 * resolver, which finishes what the operation left (frees the block it
 * claimed when the call failed after the claim) and resets the slot to
 * idle. Until then the shard's operations go to another OK shard of the
 * same lease, under that shard's lock; afterwards it records again with
 * the same slot and tag: the blocks it allocated before keep that tag and
 * stay its own to the resolver throughout (an abandoned slot's tag counts
 * as live).
 *
 * The look at an abandoned slot is a CAS 0 -> 0: it changes nothing, and
 * unlike a READ it cannot return a value older than the abandon (the slot
 * was idle before the failed operation began).
 */
#include "shard.h"

#include <errno.h>
#include <poll.h>

#include "clock.h"

enum {
	CTR_FAILED,
	CTR_ABANDONED,
	CTR_RECORDED,
	CTR_FORWARDED,
	CTR_GAVE_UP,
	CTR_LAST_RESET_MS,
	CTR_DOUBTS,
	CTR_SETTLED_FREED,
	CTR_SETTLED_LANDED,
};

/* A pause between rounds when no shard is OK. */
#define SHARD_WAIT_STEP_MS 10u

void rmp_shards_init(struct rmp_shards *s, struct rmp_data_shard *v)
{
	s->b = NULL;
	s->v = v;
	s->records = false;
	s->slot_base = 0;
	s->id_base = 0;
	for (unsigned k = 0; k < sizeof(s->ctr) / sizeof(s->ctr[0]); k++)
		atomic_init(&s->ctr[k], 0);
	for (unsigned i = 0; i < RMP_DATA_SHARDS; i++) {
		pthread_mutex_init(&v[i].lock, NULL);
		atomic_init(&v[i].state, RMP_SHARD_OK);
		v[i].check_ms = 0;
		v[i].since_ms = 0;
		v[i].doubt = false;
		v[i].doubt_order = 0;
		v[i].doubt_off = 0;
	}
	atomic_init(&s->unsettled, 0);
}

void rmp_shards_start(struct rmp_shards *s, const struct rmp_buddy *b, uint64_t client_id)
{
	s->b = b;
	for (unsigned i = 0; i < RMP_DATA_SHARDS; i++) {
		rmp_buddy_ctx_init(&s->v[i].ctx, b, client_id * RMP_DATA_SHARDS + i);
		rmp_buddy_ctx_cache(&s->v[i].ctx, s->v[i].words, RMP_SHARD_WORDS_CACHED);
	}
}

void rmp_shards_destroy(struct rmp_shards *s)
{
	for (unsigned i = 0; s->v && i < RMP_DATA_SHARDS; i++)
		pthread_mutex_destroy(&s->v[i].lock);
	s->v = NULL;
}

static void ctr_add(struct rmp_shards *s, unsigned k, uint64_t n)
{
	atomic_fetch_add_explicit(&s->ctr[k], n, memory_order_relaxed);
}

static int record_one(struct rmp_shards *s, unsigned i)
{
	return rmp_buddy_ctx_record(&s->v[i].ctx, s->b, s->slot_base + i, s->id_base + i);
}

int rmp_shards_record(struct rmp_shards *s, unsigned slot_base, uint64_t id_base)
{
	if (slot_base > s->b->g.slots || s->b->g.slots - slot_base < RMP_DATA_SHARDS)
		return -EINVAL;
	s->slot_base = slot_base;
	s->id_base = id_base;
	s->records = true;
	for (unsigned i = 0; i < RMP_DATA_SHARDS; i++) {
		struct rmp_data_shard *sh = &s->v[i];
		pthread_mutex_lock(&sh->lock);
		int rc = atomic_load_explicit(&sh->state, memory_order_relaxed) == RMP_SHARD_OK ? record_one(s, i) : 0;
		pthread_mutex_unlock(&sh->lock);
		if (rc)
			return rc;
	}
	return 0;
}

/* Requires sh's lock. A FAILED shard abandons its slot. 0 or a store
 * error (it stays FAILED). */
static int abandon_locked(struct rmp_shards *s, struct rmp_data_shard *sh)
{
	int rc = rmp_buddy_ctx_abandon(s->b, &sh->ctx);
	if (rc)
		return rc;
	atomic_store_explicit(&sh->state, RMP_SHARD_ABANDONED, memory_order_relaxed);
	sh->check_ms = 0; /* an idle slot (the failure came after the end) records again at once */
	ctr_add(s, CTR_ABANDONED, 1);
	return 0;
}

/* Requires sh's lock. Moves a shard that is not OK on as far as it can
 * now: FAILED abandons; ABANDONED looks at its slot (at most every
 * RMP_SHARD_CHECK_MS) and records again once it is idle. 0 (whatever the
 * state now) or a store error. */
static int heal_locked(struct rmp_shards *s, struct rmp_data_shard *sh)
{
	unsigned st = atomic_load_explicit(&sh->state, memory_order_relaxed);
	int rc;

	if (st == RMP_SHARD_FAILED && (rc = abandon_locked(s, sh)) != 0)
		return rc;
	if (atomic_load_explicit(&sh->state, memory_order_relaxed) != RMP_SHARD_ABANDONED)
		return 0;
	uint64_t now = rmp_mono_ms();
	if (now < sh->check_ms)
		return 0;
	sh->check_ms = now + RMP_SHARD_CHECK_MS;
	struct rmp_wop op;
	rmp_wop_cas(&op, s->b->g.slot_word + 2ull * sh->ctx.rec_slot, 0, 0);
	if ((rc = s->b->store->ops->exec(s->b->store, &op, 1)) != 0)
		return rc;
	if (op.old != 0)
		return 0; /* not reset yet */
	unsigned i = (unsigned)(sh - s->v);
	if ((rc = record_one(s, i)) != 0)
		return rc;
	if (sh->doubt) {
		/* Before anything else on this tag: the free cut in the
		 * middle, freed now if it had not landed. */
		rc = rmp_buddy_free_settle(s->b, &sh->ctx, sh->doubt_off, sh->doubt_order);
		if (rc < 0 && rc != -EINVAL) {
			atomic_store_explicit(&sh->state, RMP_SHARD_FAILED, memory_order_relaxed);
			return rc; /* in doubt again: its slot may be busy */
		}
		ctr_add(s, rc == 1 ? CTR_SETTLED_FREED : CTR_SETTLED_LANDED, 1);
		sh->doubt = false;
		atomic_fetch_sub_explicit(&s->unsettled, 1, memory_order_relaxed);
	}
	atomic_store_explicit(&sh->state, RMP_SHARD_OK, memory_order_relaxed);
	ctr_add(s, CTR_RECORDED, 1);
	atomic_store_explicit(&s->ctr[CTR_LAST_RESET_MS], now - sh->since_ms, memory_order_relaxed);
	return 0;
}

/* Locks shard i and heals it if need be: 1 (locked, OK), 0 (not OK,
 * unlocked) or a store error (unlocked). */
static int try_shard(struct rmp_shards *s, unsigned i)
{
	struct rmp_data_shard *sh = &s->v[i];
	pthread_mutex_lock(&sh->lock);
	int rc = atomic_load_explicit(&sh->state, memory_order_relaxed) == RMP_SHARD_OK ? 0 : heal_locked(s, sh);
	if (rc == 0 && atomic_load_explicit(&sh->state, memory_order_relaxed) == RMP_SHARD_OK)
		return 1;
	pthread_mutex_unlock(&sh->lock);
	return rc;
}

int rmp_shards_take(struct rmp_shards *s, unsigned home, unsigned wait_ms, struct rmp_data_shard **out)
{
	home %= RMP_DATA_SHARDS;
	if (atomic_load_explicit(&s->unsettled, memory_order_relaxed))
		(void)rmp_shards_settle(s, 0);
	int rc = try_shard(s, home);
	if (rc == 1) {
		*out = &s->v[home];
		return 0;
	}
	if (rc < 0)
		return rc;
	/* Forwarded: the next OK shard (its state read without its lock,
	 * confirmed under it). */
	for (unsigned k = 1; k < RMP_DATA_SHARDS; k++) {
		unsigned i = (home + k) % RMP_DATA_SHARDS;
		if (atomic_load_explicit(&s->v[i].state, memory_order_relaxed) != RMP_SHARD_OK)
			continue;
		pthread_mutex_lock(&s->v[i].lock);
		if (atomic_load_explicit(&s->v[i].state, memory_order_relaxed) == RMP_SHARD_OK) {
			ctr_add(s, CTR_FORWARDED, 1);
			*out = &s->v[i];
			return 0;
		}
		pthread_mutex_unlock(&s->v[i].lock);
	}
	/* None OK: every shard failed mid-operation. Wait for a reset. */
	uint64_t deadline = rmp_deadline_ms(wait_ms);
	for (;;) {
		for (unsigned k = 0; k < RMP_DATA_SHARDS; k++) {
			unsigned i = (home + k) % RMP_DATA_SHARDS;
			if ((rc = try_shard(s, i)) == 1) {
				if (i != home)
					ctr_add(s, CTR_FORWARDED, 1);
				*out = &s->v[i];
				return 0;
			}
			if (rc < 0)
				return rc;
		}
		int left = rmp_ms_left(deadline);
		if (left <= 0)
			break;
		(void)poll(NULL, 0, left < (int)SHARD_WAIT_STEP_MS ? left : (int)SHARD_WAIT_STEP_MS);
	}
	ctr_add(s, CTR_GAVE_UP, 1);
	return -EAGAIN;
}

/* Requires sh's lock. True when rc leaves the shard FAILED (now). */
static bool fail_locked(struct rmp_shards *s, struct rmp_data_shard *sh, int rc)
{
	bool store_error = rc < 0 && rc != -ENOMEM && rc != -EAGAIN && rc != -EINVAL;
	if (!store_error || sh->ctx.rec_tag == 0 || !s->records ||
	    atomic_load_explicit(&sh->state, memory_order_relaxed) != RMP_SHARD_OK)
		return false;
	atomic_store_explicit(&sh->state, RMP_SHARD_FAILED, memory_order_relaxed);
	sh->since_ms = rmp_mono_ms();
	ctr_add(s, CTR_FAILED, 1);
	return true;
}

void rmp_shards_give(struct rmp_shards *s, struct rmp_data_shard *sh, int rc)
{
	(void)fail_locked(s, sh, rc);
	pthread_mutex_unlock(&sh->lock);
}

bool rmp_shards_give_free(struct rmp_shards *s, struct rmp_data_shard *sh, int rc, uint64_t off, unsigned order)
{
	bool doubt = fail_locked(s, sh, rc) && !sh->doubt;
	if (doubt) {
		sh->doubt = true;
		sh->doubt_off = off;
		sh->doubt_order = order;
		ctr_add(s, CTR_DOUBTS, 1);
		atomic_fetch_add_explicit(&s->unsettled, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&sh->lock);
	return doubt;
}

unsigned rmp_shards_settle(struct rmp_shards *s, unsigned wait_ms)
{
	uint64_t deadline = rmp_deadline_ms(wait_ms);
	unsigned left;

	for (;;) {
		for (unsigned i = 0; i < RMP_DATA_SHARDS; i++) {
			struct rmp_data_shard *sh = &s->v[i];
			if (atomic_load_explicit(&sh->state, memory_order_relaxed) == RMP_SHARD_OK)
				continue; /* a shard in doubt is never OK */
			if (pthread_mutex_trylock(&sh->lock) != 0)
				continue; /* another thread has it (and heals it) */
			if (sh->doubt)
				(void)heal_locked(s, sh);
			pthread_mutex_unlock(&sh->lock);
		}
		left = atomic_load_explicit(&s->unsettled, memory_order_relaxed);
		int ms = rmp_ms_left(deadline);
		if (left == 0 || wait_ms == 0 || ms <= 0)
			return left;
		(void)poll(NULL, 0, ms < (int)SHARD_WAIT_STEP_MS ? ms : (int)SHARD_WAIT_STEP_MS);
	}
}

int rmp_shards_abandon_failed(struct rmp_shards *s)
{
	int first = 0;

	for (unsigned i = 0; i < RMP_DATA_SHARDS; i++) {
		struct rmp_data_shard *sh = &s->v[i];
		if (atomic_load_explicit(&sh->state, memory_order_relaxed) != RMP_SHARD_FAILED)
			continue;
		pthread_mutex_lock(&sh->lock);
		int rc = atomic_load_explicit(&sh->state, memory_order_relaxed) == RMP_SHARD_FAILED ? abandon_locked(s, sh) : 0;
		pthread_mutex_unlock(&sh->lock);
		if (rc && !first)
			first = rc;
	}
	return first;
}

unsigned rmp_shards_count(const struct rmp_shards *s, enum rmp_shard_state st)
{
	unsigned n = 0;
	for (unsigned i = 0; i < RMP_DATA_SHARDS; i++)
		n += atomic_load_explicit(&s->v[i].state, memory_order_relaxed) == (unsigned)st;
	return n;
}

void rmp_shards_stats(const struct rmp_shards *s, struct rmp_shard_stats *out)
{
	*out = (struct rmp_shard_stats){
		.failed = atomic_load_explicit(&s->ctr[CTR_FAILED], memory_order_relaxed),
		.abandoned = atomic_load_explicit(&s->ctr[CTR_ABANDONED], memory_order_relaxed),
		.recorded = atomic_load_explicit(&s->ctr[CTR_RECORDED], memory_order_relaxed),
		.forwarded = atomic_load_explicit(&s->ctr[CTR_FORWARDED], memory_order_relaxed),
		.gave_up = atomic_load_explicit(&s->ctr[CTR_GAVE_UP], memory_order_relaxed),
		.last_reset_ms = atomic_load_explicit(&s->ctr[CTR_LAST_RESET_MS], memory_order_relaxed),
		.doubts = atomic_load_explicit(&s->ctr[CTR_DOUBTS], memory_order_relaxed),
		.settled_freed = atomic_load_explicit(&s->ctr[CTR_SETTLED_FREED], memory_order_relaxed),
		.settled_landed = atomic_load_explicit(&s->ctr[CTR_SETTLED_LANDED], memory_order_relaxed),
		.unsettled = atomic_load_explicit(&s->unsettled, memory_order_relaxed),
	};
}
