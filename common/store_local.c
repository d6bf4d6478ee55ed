/*
 * store_local.c - the word store on process memory, and its RDMA-like
 * test modes.
 *
 * Plain mode: LOAD is an acquire load per word, CAS and FAA are
 * acq_rel read-modify-writes; these orderings carry the happens-before
 * edge from one thread's free to another's allocation of the same bytes.
 *
 * Stale loads: each thread keeps a small direct-mapped table of values it
 * loaded before; with probability stale_permille/1000 a load returns the
 * remembered (possibly outdated) value of that word instead of the
 * current one. Every such value was really held by the word at some
 * point, which is what an RDMA READ racing with atomics can return (the
 * table knows which store each value came from: a thread that runs one
 * engine after another never sees the last one's words).
 *
 * Shuffle: the operations of a batch run in a random order, as posted
 * RDMA work requests may land under emulation, except that an atomic
 * marked `after` runs after every earlier atomic of its batch (store.h):
 * the batch is cut before each such atomic and the pieces run in order,
 * each shuffled, loads of a piece anywhere in it.
 *
 * Cut: a thread's word operations past the k-th from now fail with -EIO
 * and change nothing, as when a client dies or is cut off in the middle
 * of a batch (what landed landed, nothing after).
 */
#include "store_local.h"

#include <errno.h>
#include <stddef.h>

#define STALE_SLOTS 256u /* per-thread memory of loaded values; power of two */

struct stale_slot {
	uint64_t idx_plus1; /* 0: empty */
	uint64_t store;     /* the store's generation: a word of another store is another word */
	uint64_t value;
};

static _Atomic uint64_t store_gens; /* one generation per rmp_store_local_init */

static _Thread_local struct {
	uint64_t ops;           /* word operations issued by this thread */
	uint64_t freeze_at;     /* 0: no freeze armed */
	void (*freeze_fn)(void *);
	void *freeze_arg;
	uint64_t cut_at;        /* 0: no cut armed; else ops past this one fail */
	uint64_t rng;
	struct stale_slot stale[STALE_SLOTS];
} tls;

static uint64_t rng_next(void)
{
	/* xorshift64*: cheap, per thread, good enough for test schedules. */
	if (tls.rng == 0)
		tls.rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&tls;
	tls.rng ^= tls.rng >> 12;
	tls.rng ^= tls.rng << 25;
	tls.rng ^= tls.rng >> 27;
	return tls.rng * 0x2545F4914F6CDD1Dull;
}

static void count_op(void)
{
	tls.ops++;
	if (tls.freeze_at != 0 && tls.ops == tls.freeze_at) {
		void (*fn)(void *) = tls.freeze_fn;
		tls.freeze_at = 0;
		fn(tls.freeze_arg);
	}
}

void rmp_store_local_freeze_after(uint64_t k, void (*fn)(void *), void *arg)
{
	tls.freeze_at = k ? tls.ops + k : 0;
	tls.freeze_fn = fn;
	tls.freeze_arg = arg;
}

void rmp_store_local_cut_after(uint64_t k)
{
	tls.cut_at = k ? tls.ops + k : 0;
}

uint64_t rmp_store_local_thread_ops(void)
{
	return tls.ops;
}

static uint64_t load_word(struct rmp_store_local *s, uint64_t idx, unsigned flags)
{
	uint64_t v = atomic_load_explicit(&s->words[idx], memory_order_acquire);

	if (!(flags & RMP_STORE_STALE_LOADS))
		return v;
	struct stale_slot *slot = &tls.stale[idx & (STALE_SLOTS - 1)];
	if (slot->idx_plus1 == idx + 1 && slot->store == s->gen && rng_next() % 1000 < s->stale_permille)
		return slot->value; /* an older value this word really held */
	slot->idx_plus1 = idx + 1;
	slot->store = s->gen;
	slot->value = v;
	return v;
}

static int run_one(struct rmp_store_local *s, struct rmp_wop *op, unsigned flags)
{
	if (tls.cut_at != 0 && tls.ops >= tls.cut_at)
		return -EIO; /* the connection is gone: nothing lands any more */
	if (op->idx >= s->nwords)
		return -EFAULT;
	switch (op->kind) {
	case RMP_WOP_LOAD:
		if (op->nwords == 0 || op->nwords > s->nwords - op->idx)
			return -EFAULT;
		for (uint32_t k = 0; k < op->nwords; k++)
			op->dst[k] = load_word(s, op->idx + k, flags);
		break;
	case RMP_WOP_CAS: {
		uint64_t expect = op->arg;
		atomic_compare_exchange_strong_explicit(&s->words[op->idx], &expect, op->swap,
							memory_order_acq_rel, memory_order_acquire);
		op->old = expect; /* the value found, whether or not it matched */
		break;
	}
	case RMP_WOP_FAA:
		op->old = atomic_fetch_add_explicit(&s->words[op->idx], op->arg, memory_order_acq_rel);
		break;
	default:
		return -EINVAL;
	}
	count_op();
	return 0;
}

static int local_exec(struct rmp_store *base, struct rmp_wop *ops, unsigned n)
{
	struct rmp_store_local *s = (struct rmp_store_local *)base;
	unsigned flags = atomic_load_explicit(&s->flags, memory_order_relaxed);

	if (!(flags & RMP_STORE_SHUFFLE) || n < 2) {
		for (unsigned i = 0; i < n; i++) {
			int rc = run_one(s, &ops[i], flags);
			if (rc)
				return rc;
		}
		return 0;
	}
	/* Random completion order: a random permutation of each piece
	 * between atomics marked `after`. */
	unsigned order[64];
	unsigned done = 0;
	while (done < n) {
		unsigned m = 1;
		while (m < 64 && done + m < n && !(ops[done + m].after && ops[done + m].kind != RMP_WOP_LOAD))
			m++;
		for (unsigned i = 0; i < m; i++)
			order[i] = done + i;
		for (unsigned i = m - 1; i > 0; i--) {
			unsigned j = (unsigned)(rng_next() % (i + 1));
			unsigned t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		for (unsigned i = 0; i < m; i++) {
			int rc = run_one(s, &ops[order[i]], flags);
			if (rc)
				return rc;
		}
		done += m;
	}
	return 0;
}

static const struct rmp_store_ops local_ops = {
	.exec = local_exec,
	/* Local memory has no round trip to hide: posted work runs at once. */
	.post = local_exec,
};

void rmp_store_local_init(struct rmp_store_local *s, _Atomic uint64_t *words, uint64_t nwords)
{
	s->base.ops = &local_ops;
	s->base.chunk_words = 8; /* one cache line */
	s->base.direct = words;
	s->words = words;
	s->nwords = nwords;
	s->gen = atomic_fetch_add_explicit(&store_gens, 1, memory_order_relaxed) + 1;
	atomic_init(&s->flags, 0);
	s->stale_permille = 0;
}

void rmp_store_local_set_mode(struct rmp_store_local *s, unsigned flags, unsigned stale_permille)
{
	s->stale_permille = stale_permille > 1000 ? 1000 : stale_permille;
	atomic_store_explicit(&s->flags, flags, memory_order_relaxed);
	s->base.direct = flags ? NULL : s->words;
}
