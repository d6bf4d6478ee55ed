/*
 * shard.h - librmpool's engine contexts (shards) and their owner-record
 * slots (not installed; data.c uses it, test_client_shards drives it on
 * the simulated store).
 *
 * Each of a pool's RMP_DATA_SHARDS contexts keeps owner records in slot
 * slot_base + s of the pool's metadata with tag id id_base + s (DESIGN.md,
 * "Owner records"). A shard is in one of three states:
 *   OK         it records; allocations and frees run on it;
 *   FAILED     an operation on it failed on a store error in the middle
 *              (its slot may be left busy, the operation partly landed):
 *              it takes no operation until its slot is abandoned;
 *   ABANDONED  rmp_buddy_ctx_abandon marked its slot (through a store
 *              that works again): the ctx keeps no records, so it must
 *              not allocate (an untagged block would look like garbage
 *              to the resolver); its operations go to another OK shard.
 *              Every SHARD_CHECK_MS at most, while a thread wants it,
 *              one READ of its slot's op word: once the coordinator's
 *              resolver has reset it to idle, the shard records again in
 *              the same slot with the same tag (its blocks keep that
 *              tag) and is OK.
 * A free of the shard's own block cut by the store error is in doubt: it
 * may have landed (the block may be somebody else's by now), so it is
 * never retried as it was. The shard keeps it and, once its slot is idle
 * again and before it is OK, settles it (rmp_buddy_free_settle: the
 * block is freed only if it still carries the shard's own tag). The
 * caller's rmp_free returned 0: the block is freed exactly once, by the
 * settle or by the free that landed (DESIGN.md, "Frees in doubt").
 * Nothing of this is on the fast path: an OK shard costs one relaxed load
 * of its state under its lock. If no shard is OK, rmp_shards_take waits
 * (bounded by the caller's wait, the operation's RDMA bound) for a reset
 * and then fails with -EAGAIN.
 *
 * Locks: a shard's lock is held around every allocation and free on its
 * ctx and around every state change; take/give bracket them. The caller
 * holds what makes the store usable (data.c: d->meta_rw for reading).
 */
#ifndef RMP_CLIENT_SHARD_H
#define RMP_CLIENT_SHARD_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "buddy.h"

#define RMP_DATA_SHARDS 16u  /* engine contexts: one per thread, hashed */
/* The engine's word cache per shard: the words a thread saw last, so that
 * a free or an allocation where nothing changed since is one round trip. */
#define RMP_SHARD_WORDS_CACHED 1024u
/* An abandoned shard looks at its slot at most this often. */
#define RMP_SHARD_CHECK_MS 100u

enum rmp_shard_state {
	RMP_SHARD_OK = 0,
	RMP_SHARD_FAILED,
	RMP_SHARD_ABANDONED,
};

struct rmp_data_shard {
	alignas(64) struct rmp_buddy_ctx ctx;
	/* Held around every allocation and free on ctx: a context that keeps
	 * owner records writes its one slot, so it serves one thread at a
	 * time (buddy.h, rmp_buddy_ctx_record); threads beyond
	 * RMP_DATA_SHARDS share shards. Uncontended below that. */
	pthread_mutex_t lock;
	/* enum rmp_shard_state: written under the lock, read without it to
	 * pick another shard. */
	_Atomic unsigned state;
	uint64_t check_ms;  /* ABANDONED: the next look at the slot (under the lock) */
	uint64_t since_ms;  /* FAILED or ABANDONED since (under the lock) */
	/* A free of this shard's own block cut by its store error (it may
	 * or may not have landed): settled (rmp_buddy_free_settle) when the
	 * slot is idle again, before the shard is OK (under the lock). */
	bool doubt;
	unsigned doubt_order;
	uint64_t doubt_off;
	_Atomic uint64_t words[2 * RMP_SHARD_WORDS_CACHED];
};

struct rmp_shard_stats {
	uint64_t failed;     /* operations that left their shard FAILED */
	uint64_t abandoned;  /* slots abandoned (rmp_buddy_ctx_abandon) */
	uint64_t recorded;   /* abandoned shards that record again */
	uint64_t forwarded;  /* operations run on another shard than the caller's */
	uint64_t gave_up;    /* takes that found no OK shard within their wait */
	uint64_t last_reset_ms; /* the last abandoned shard's time from FAILED to OK */
	uint64_t doubts;     /* own frees cut in the middle by a store error */
	uint64_t settled_freed;  /* of them settled: freed by the settle (had not landed) */
	uint64_t settled_landed; /* settled: they had landed */
	uint64_t unsettled;  /* now: frees in doubt not settled yet */
};

struct rmp_shards {
	const struct rmp_buddy *b;
	struct rmp_data_shard *v;   /* RMP_DATA_SHARDS of them */
	bool records;               /* slots given: the shards keep records */
	unsigned slot_base;
	uint64_t id_base;
	_Atomic uint64_t ctr[9];    /* struct rmp_shard_stats, in its order (unsettled: counted) */
	_Atomic unsigned unsettled; /* shards with a free in doubt: takes try to settle them */
};

/* Shards v[0..RMP_DATA_SHARDS): their locks, all OK, no engine yet. */
void rmp_shards_init(struct rmp_shards *s, struct rmp_data_shard *v);
/* Their contexts on engine b (set up), with word caches, no records yet. */
void rmp_shards_start(struct rmp_shards *s, const struct rmp_buddy *b, uint64_t client_id);
void rmp_shards_destroy(struct rmp_shards *s);
/* The shards keep records in slots slot_base.. with tag ids id_base..
 * (at setup, and after a metadata reopen).
 * OK shards record now; FAILED and ABANDONED ones keep their state (they
 * record again once their slot is reset). 0 or -EINVAL (slots out of
 * range). */
int rmp_shards_record(struct rmp_shards *s, unsigned slot_base, uint64_t id_base);
/* The store works again (a metadata reopen): every FAILED shard abandons
 * its slot now. 0, or the first store error (those shards stay FAILED
 * and abandon at their next take). */
int rmp_shards_abandon_failed(struct rmp_shards *s);
/* An OK shard for one allocation or free, locked: shard `home` if it is
 * OK (or becomes so now: a FAILED one abandons, an ABANDONED one whose
 * slot was reset records again), else the next OK one. With none OK it
 * waits up to wait_ms for a reset, looking every RMP_SHARD_CHECK_MS.
 * 0 with *out; -EAGAIN when no shard became OK in time; a store error
 * (from an abandon or a look at a slot). */
int rmp_shards_take(struct rmp_shards *s, unsigned home, unsigned wait_ms, struct rmp_data_shard **out);
/* Gives a taken shard back after its operation returned rc: a store error
 * (anything but 0 and the engine's own answers -ENOMEM, -EAGAIN, -EINVAL)
 * on a shard that records leaves it FAILED. */
void rmp_shards_give(struct rmp_shards *s, struct rmp_data_shard *sh, int rc);
/* The same after a free of this shard's own block at off (2^order
 * bytes): a store error leaves the free in doubt on the shard, which
 * settles it itself (rmp_buddy_free_settle) once its slot is idle again
 * and before it takes any other operation: the block is freed exactly
 * once. Returns true when the free is in doubt (the caller's free is
 * done as far as it is concerned: the handle is released). */
bool rmp_shards_give_free(struct rmp_shards *s, struct rmp_data_shard *sh, int rc, uint64_t off, unsigned order);
/* Settles what frees in doubt it can now (shards whose slot was reset),
 * without waiting for a lock another thread holds; up to wait_ms for the
 * resets when wait_ms > 0 (rmp_pool_close). The number still in doubt. */
unsigned rmp_shards_settle(struct rmp_shards *s, unsigned wait_ms);
/* How many shards are in state st. */
unsigned rmp_shards_count(const struct rmp_shards *s, enum rmp_shard_state st);
void rmp_shards_stats(const struct rmp_shards *s, struct rmp_shard_stats *out);

#endif /* RMP_CLIENT_SHARD_H */
