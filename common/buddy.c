/*
 * buddy.c - a lock-free binary buddy allocator on a word store.
 *
 * After the lock-free buddy heap seed (HeapCreate/HeapAlloc/HeapFree;
 * DESIGN.md, The buddy engine), written for what one-sided RDMA offers: 64-bit
 * loads, CAS and FAA on aligned words (store.h). No lock, no spin-wait on
 * another client, no kernel call.
 *
 * Layout of the metadata region (words of 64 bits):
 *   [0, 8)          header: magic+version, orders, usable bytes, size
 *   [8, 8+levels)   count[t]: free blocks at level t (a hint, kept by FAA)
 *   then per level t (8-word aligned): the level bitmap, 2 bits per block.
 * Level t holds the 2^t blocks of order M - t; level 0 is the whole heap.
 * Block i of level t has state bits at word i/32, shift 2*(i%32):
 *   00 NONE     split into halves, or inside a larger block
 *   01 FREE     free at this order
 *   10 ALLOC    allocated at this order
 *   11 RESERVED the tail beyond the usable size; never handed out
 * Buddies 2j and 2j+1 sit in one nibble of one word, so "my buddy is free:
 * merge" and "my buddy is not free: mark myself free" are each one CAS on
 * one word, and two buddies freed at once can never both miss the merge.
 *
 * Invariant: every descendant of a FREE, ALLOC or RESERVED block is NONE.
 * Hence a client that claims a FREE block owns every bit below it, and can
 * set those bits with FAA (adding to bits known to be 0 cannot carry into
 * a neighbour) in one batch, without retries.
 *
 * alloc(order): the level of the order is t. Load the chunk of level t at
 * this client's cursor; for a FREE bit, CAS it to ALLOC: done, in two
 * round trips when the chunk had one. Otherwise read the counts, scan the
 * level if its count says it has a free block, else claim a FREE block of
 * the nearest larger order (CAS FREE->NONE) and split it down: for each
 * level below it, FAA the right half to FREE, and at the target level the
 * left half to ALLOC - one batch. The block is halved until it is less
 * than twice the request, as in the seed.
 *
 * free(offset, order): the block must be ALLOC (else -EINVAL: a double
 * free or a stray handle, seen by any client). While the buddy is FREE,
 * CAS the pair to NONE and go up one level (where the parent is NONE);
 * when it is not, CAS the block to FREE. Every step is one CAS; a failed
 * CAS returns the current word and the step is recomputed from it.
 *
 * Loads are hints (an RDMA READ may race with atomics): a load that says
 * "not mine" is confirmed by a CAS that would change nothing before any
 * error is returned. The counts are hints too, updated after the CAS that
 * decides, off the critical path (store post()).
 *
 * A stalled client holds at most the block it has claimed; it never
 * blocks another (tests freeze clients after every word operation).
 *
 * On local memory (store->direct) the steady state is inline: alloc loads
 * the word at the cursor and CASes a free block in it; free tries the
 * order it freed last, then walks top-down, and CASes the block FREE. A
 * ctx that one thread owns may keep the count changes of that fast path
 * to itself (rmp_buddy_ctx_defer: a free and an alloc of one order
 * cancel). Each ctx has a home (rmp_buddy_ctx_home); a local miss first
 * looks, at every level, at the blocks overlapping the bitmap line around
 * its cursor, and splits toward the cursor, so that threads keep to their
 * own cache lines. Remote clients split to the left, as the seed does.
 */
#include "buddy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "debug.h"

enum {
	ST_NONE = 0,
	ST_FREE = 1,
	ST_ALLOC = 2,
	ST_RESERVED = 3,
};

#define STATE_MASK     3ull
#define BLOCKS_PER_WORD 32u
#define PAIR_MASK      0xFull
/* The FREE (low) bit of every 2-bit state in a word. */
#define LOW_BITS       0x5555555555555555ull
#define MAX_CHUNK      64u
#define ALLOC_RETRIES  8u   /* searches after one that found memory held in passing */
#define SWEEP_CHUNK    512u /* words per load in the last-resort sweep: 4 KiB READs */
#define LOCAL_SPAN_WORDS 8u /* local memory: a cache line of a level's bitmap */
#define HDR_MAGIC_WORD 0
#define HDR_ORDERS_WORD 1
#define HDR_USABLE_WORD 2
#define HDR_SIZE_WORD  3

enum { OP_ALLOC = 0, OP_FREE = 1 };
enum { C_CALLS, C_RTS, C_LOADS, C_CAS_OK, C_CAS_FAIL, C_FAA, C_FAST, C_FAST_LOADS, C_N };

/* Where an operation counts what it issues: the client's counters for
 * that kind of operation. Relaxed load+store, not fetch_add: a ctx
 * belongs to one thread at a time in practice (the heap gives each
 * thread its own shard), and a locked add per counter would cost more
 * than the operation's own atomics. Two threads sharing a ctx may lose
 * counts, never correctness. */
struct tally {
	_Atomic uint64_t *c; /* C_N counters */
};
_Static_assert(sizeof(((struct rmp_buddy_ctx *)0)->ctr[0]) == C_N * sizeof(uint64_t), "ctr has C_N counters");

static inline __attribute__((always_inline)) void tl_add(struct tally *tl, unsigned which, uint64_t n)
{
	_Atomic uint64_t *ctr = &tl->c[which];
	atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline unsigned blk_shift(uint64_t i)
{
	return (unsigned)(2 * (i % BLOCKS_PER_WORD));
}

static inline uint64_t blk_word(const struct rmp_buddy_geom *g, unsigned t, uint64_t i)
{
	rmp_assert(t < g->levels);
	rmp_assert(i >> t == 0); /* level t has 2^t blocks */
	return g->level_word[t] + i / BLOCKS_PER_WORD;
}

static inline unsigned state_of(uint64_t w, uint64_t i)
{
	return (unsigned)((w >> blk_shift(i)) & STATE_MASK);
}

static inline uint64_t with_state(uint64_t w, uint64_t i, unsigned st)
{
	unsigned sh = blk_shift(i);
	return (w & ~(STATE_MASK << sh)) | ((uint64_t)st << sh);
}

/* Bits whose block is FREE (01): low bit set, high bit clear. */
static inline uint64_t free_bits(uint64_t w)
{
	return w & ~(w >> 1) & LOW_BITS;
}

static inline uint64_t level_words(unsigned t)
{
	uint64_t blocks = 1ull << t;
	return (blocks + BLOCKS_PER_WORD - 1) / BLOCKS_PER_WORD;
}

int rmp_buddy_geom_init(struct rmp_buddy_geom *g, unsigned max_order, unsigned min_order)
{
	if (max_order > RMP_BUDDY_MAX_ORDER || min_order > max_order ||
	    max_order - min_order > RMP_BUDDY_MAX_LEVELS - 1)
		return -EINVAL;
	memset(g, 0, sizeof(*g));
	g->max_order = max_order;
	g->min_order = min_order;
	g->levels = max_order - min_order + 1;
	g->count_word = RMP_BUDDY_HDR_WORDS;
	uint64_t w = g->count_word + g->levels;
	for (unsigned t = 0; t < g->levels; t++) {
		w = (w + 7) & ~7ull; /* each level starts on a cache line */
		g->level_word[t] = w;
		w += level_words(t);
	}
	g->total_words = (w + 7) & ~7ull;
	return 0;
}

static void fmt_mark(uint64_t *words, const struct rmp_buddy_geom *g, unsigned t, uint64_t i,
		     uint64_t usable)
{
	unsigned order = g->max_order - t;
	uint64_t lo = i << order, hi = lo + (1ull << order);
	unsigned st;

	if (hi <= usable)
		st = ST_FREE;
	else if (lo >= usable)
		st = ST_RESERVED;
	else {
		/* Straddles the end of the usable space: split and recurse.
		 * usable is a multiple of the minimum block, so this stops
		 * above the last level. */
		fmt_mark(words, g, t + 1, 2 * i, usable);
		fmt_mark(words, g, t + 1, 2 * i + 1, usable);
		return;
	}
	uint64_t *w = &words[blk_word(g, t, i)];
	*w = with_state(*w, i, st);
	if (st == ST_FREE)
		words[g->count_word + t]++;
}

void rmp_buddy_format(uint64_t *words, const struct rmp_buddy_geom *g, uint64_t usable)
{
	uint64_t cap = 1ull << g->max_order, minb = 1ull << g->min_order;

	if (usable == 0 || usable > cap)
		usable = cap;
	usable = (usable + minb - 1) & ~(minb - 1);
	memset(words, 0, g->total_words * sizeof(uint64_t));
	words[HDR_MAGIC_WORD] = RMP_BUDDY_MAGIC << 16 | RMP_BUDDY_VERSION;
	words[HDR_ORDERS_WORD] = g->max_order | (uint64_t)g->min_order << 8 | (uint64_t)g->levels << 16;
	words[HDR_USABLE_WORD] = usable;
	words[HDR_SIZE_WORD] = g->total_words;
	fmt_mark(words, g, 0, 0, usable);
}

int rmp_buddy_header_version(const uint64_t hdr[RMP_BUDDY_HDR_WORDS], unsigned *version)
{
	if (hdr[HDR_MAGIC_WORD] >> 16 != RMP_BUDDY_MAGIC)
		return -EPROTO;
	*version = (unsigned)(hdr[HDR_MAGIC_WORD] & 0xffff);
	return *version == RMP_BUDDY_VERSION ? 0 : -EPROTONOSUPPORT;
}

int rmp_buddy_geom_from_header(struct rmp_buddy_geom *g, const uint64_t hdr[RMP_BUDDY_HDR_WORDS],
			       uint64_t *usable)
{
	unsigned version;
	int vrc = rmp_buddy_header_version(hdr, &version);

	if (vrc)
		return vrc;
	unsigned maxo = hdr[HDR_ORDERS_WORD] & 0xff, mino = (hdr[HDR_ORDERS_WORD] >> 8) & 0xff;
	int rc = rmp_buddy_geom_init(g, maxo, mino);
	if (rc)
		return -EPROTO;
	if (hdr[HDR_SIZE_WORD] != g->total_words || hdr[HDR_USABLE_WORD] > (1ull << maxo))
		return -EPROTO;
	if (usable)
		*usable = hdr[HDR_USABLE_WORD];
	return 0;
}

void rmp_buddy_init(struct rmp_buddy *b, const struct rmp_buddy_geom *g, struct rmp_store *store)
{
	b->g = *g;
	b->store = store;
}

void rmp_buddy_ctx_init(struct rmp_buddy_ctx *ctx, const struct rmp_buddy *b, uint64_t client_id)
{
	/* Spread clients: a multiplicative hash of the id picks each one's
	 * starting block in every level. */
	uint64_t h = (client_id + 1) * 0x9E3779B97F4A7C15ull;

	for (unsigned t = 0; t <= RMP_BUDDY_MAX_LEVELS; t++) {
		uint64_t start = t < b->g.levels ? (h >> 20) % (1ull << t) : 0;
		atomic_init(&ctx->cursor[t], start);
	}
	for (unsigned k = 0; k < 2; k++)
		for (unsigned c = 0; c < C_N; c++)
			atomic_init(&ctx->ctr[k][c], 0);
	for (unsigned t = 0; t <= RMP_BUDDY_MAX_LEVELS; t++)
		atomic_init(&ctx->pending[t], 0);
	ctx->defer_max = 0;
	atomic_init(&ctx->last_free_order, 0);
	ctx->home = 0;
	ctx->homed = false;
}

static inline uint64_t home_blk(const struct rmp_buddy_ctx *ctx, unsigned t)
{
	return t ? ctx->home >> (64 - t) : 0;
}

/* Blocks per bitmap line of a level: a homed ctx's window. */
#define LINE_BLOCKS ((uint64_t)LOCAL_SPAN_WORDS * BLOCKS_PER_WORD)

/* Point the cursor of level t at block i: always, or for a homed ctx only
 * inside its home line (a block it took or freed elsewhere is not worth
 * coming back to: that line is another thread's). */
static inline void cursor_set(struct rmp_buddy_ctx *ctx, unsigned t, uint64_t i)
{
	if (ctx->homed && i / LINE_BLOCKS != home_blk(ctx, t) / LINE_BLOCKS)
		return;
	atomic_store_explicit(&ctx->cursor[t], i, memory_order_relaxed);
}

void rmp_buddy_ctx_home(struct rmp_buddy_ctx *ctx, const struct rmp_buddy *b, uint64_t frac)
{
	ctx->home = frac;
	ctx->homed = true;
	for (unsigned t = 0; t < b->g.levels; t++)
		atomic_store_explicit(&ctx->cursor[t], home_blk(ctx, t), memory_order_relaxed);
}

void rmp_buddy_ctx_defer(struct rmp_buddy_ctx *ctx, unsigned max)
{
	ctx->defer_max = max;
}

int rmp_buddy_order_for(const struct rmp_buddy_geom *g, uint64_t size, unsigned *order)
{
	if (size == 0 || size > (1ull << g->max_order))
		return -EINVAL;
	unsigned o = size <= 1 ? 0 : 64 - (unsigned)__builtin_clzll(size - 1);
	*order = o < g->min_order ? g->min_order : o;
	return 0;
}

/* --- issuing operations, with counting --------------------------------- */

static void direct_one(_Atomic uint64_t *w, struct rmp_wop *op)
{
	switch (op->kind) {
	case RMP_WOP_LOAD:
		for (uint32_t k = 0; k < op->nwords; k++)
			op->dst[k] = atomic_load_explicit(&w[op->idx + k], memory_order_acquire);
		break;
	case RMP_WOP_CAS: {
		uint64_t expect = op->arg;
		atomic_compare_exchange_strong_explicit(&w[op->idx], &expect, op->swap,
							memory_order_acq_rel, memory_order_acquire);
		op->old = expect;
		break;
	}
	case RMP_WOP_FAA:
		op->old = atomic_fetch_add_explicit(&w[op->idx], op->arg, memory_order_acq_rel);
		break;
	}
}

static int st_exec(const struct rmp_buddy *b, struct tally *tl, struct rmp_wop *ops, unsigned n)
{
	_Atomic uint64_t *direct = b->store->direct;

	for (unsigned i = 0; i < n; i++) {
		if (ops[i].kind == RMP_WOP_LOAD)
			tl_add(tl, C_LOADS, 1);
		else if (ops[i].kind == RMP_WOP_FAA)
			tl_add(tl, C_FAA, 1);
	}
	tl_add(tl, C_RTS, 1);
	if (direct) {
		for (unsigned i = 0; i < n; i++)
			direct_one(direct, &ops[i]);
	} else {
		int rc = b->store->ops->exec(b->store, ops, n);
		if (rc)
			return rc;
	}
	for (unsigned i = 0; i < n; i++)
		if (ops[i].kind == RMP_WOP_CAS)
			tl_add(tl, ops[i].old == ops[i].arg ? C_CAS_OK : C_CAS_FAIL, 1);
	return 0;
}

static int st_post(const struct rmp_buddy *b, struct tally *tl, struct rmp_wop *ops, unsigned n)
{
	_Atomic uint64_t *direct = b->store->direct;

	tl_add(tl, C_FAA, n);
	if (!direct)
		return b->store->ops->post(b->store, ops, n);
	for (unsigned i = 0; i < n; i++)
		direct_one(direct, &ops[i]);
	return 0;
}

/* The three primitives below take the direct path inline when they can:
 * the same atomics, counted the same way, without an operation record. */
static int st_load(const struct rmp_buddy *b, struct tally *tl, uint64_t idx, uint32_t n, uint64_t *dst)
{
	_Atomic uint64_t *direct = b->store->direct;

	rmp_assert(n > 0 && idx + n <= b->g.total_words);
	if (direct) {
		tl_add(tl, C_LOADS, 1);
		tl_add(tl, C_RTS, 1);
		for (uint32_t k = 0; k < n; k++)
			dst[k] = atomic_load_explicit(&direct[idx + k], memory_order_acquire);
		return 0;
	}
	struct rmp_wop op;
	rmp_wop_load(&op, idx, n, dst);
	return st_exec(b, tl, &op, 1);
}

/* CAS word idx from expect to swap. Returns 1 on success, 0 on failure
 * with *seen = the current value, or a negative store error. */
static int st_cas(const struct rmp_buddy *b, struct tally *tl, uint64_t idx, uint64_t expect,
		  uint64_t swap, uint64_t *seen)
{
	_Atomic uint64_t *direct = b->store->direct;

	rmp_assert(idx < b->g.total_words);
	if (direct) {
		uint64_t e = expect;
		bool ok = atomic_compare_exchange_strong_explicit(&direct[idx], &e, swap, memory_order_acq_rel,
								  memory_order_acquire);
		tl_add(tl, C_RTS, 1);
		tl_add(tl, ok ? C_CAS_OK : C_CAS_FAIL, 1);
		*seen = e;
		return ok;
	}
	struct rmp_wop op;
	rmp_wop_cas(&op, idx, expect, swap);
	int rc = st_exec(b, tl, &op, 1);
	if (rc)
		return rc;
	*seen = op.old;
	return op.old == expect;
}

static int count_faa(const struct rmp_buddy *b, struct tally *tl, unsigned t, int64_t delta)
{
	_Atomic uint64_t *direct = b->store->direct;

	rmp_assert(t < b->g.levels);
	if (direct) {
		tl_add(tl, C_FAA, 1);
		atomic_fetch_add_explicit(&direct[b->g.count_word + t], (uint64_t)delta, memory_order_relaxed);
		return 0;
	}
	struct rmp_wop op;
	rmp_wop_faa(&op, b->g.count_word + t, (uint64_t)delta);
	return st_post(b, tl, &op, 1);
}

/* Change the free count of level t by delta: at once, or when the ctx
 * defers, once its pending change for the level leaves [-max, max]. */
static inline __attribute__((always_inline)) int count_add(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl, unsigned t,
		     int64_t delta)
{
	int64_t max = ctx->defer_max;
	if (max == 0)
		return count_faa(b, tl, t, delta);
	int64_t p = atomic_load_explicit(&ctx->pending[t], memory_order_relaxed) + delta;
	if (p > max || p < -max) {
		int rc = count_faa(b, tl, t, p);
		if (rc)
			return rc;
		p = 0;
	}
	atomic_store_explicit(&ctx->pending[t], p, memory_order_relaxed);
	return 0;
}

int rmp_buddy_ctx_flush(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx)
{
	_Atomic uint64_t scratch[C_N]; /* bookkeeping, not an operation: counted nowhere */
	struct tally tl = { scratch };

	for (unsigned t = 0; t < b->g.levels; t++) {
		int64_t p = atomic_load_explicit(&ctx->pending[t], memory_order_relaxed);
		if (p == 0)
			continue;
		int rc = count_faa(b, &tl, t, p);
		if (rc)
			return rc;
		atomic_store_explicit(&ctx->pending[t], 0, memory_order_relaxed);
	}
	return 0;
}

/* --- allocation -------------------------------------------------------- */

/*
 * Scan up to max_words words of level t from the client's cursor (wrapping)
 * and claim the first FREE block found by CAS-ing it to new_state.
 * 0 and *blk on success, -ENOMEM if none was found, or a store error.
 */
static int scan_claim(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl,
		      unsigned t, unsigned new_state, uint64_t max_words, uint64_t *blk, uint64_t *counts,
		      bool sweep)
{
	const struct rmp_buddy_geom *g = &b->g;
	uint64_t nw = level_words(t); /* a power of two */
	/* The cursor is a block: the one this client freed or split off
	 * last at this level, else where it last found one. Trying it first
	 * reuses memory that is still warm in cache (like a LIFO free list)
	 * and keeps clients apart. */
	uint64_t cur = atomic_load_explicit(&ctx->cursor[t], memory_order_relaxed);
	uint64_t start = (cur / BLOCKS_PER_WORD) & (nw - 1);
	unsigned pref = blk_shift(cur);
	uint64_t chunk = b->store->chunk_words;
	uint64_t buf[SWEEP_CHUNK];

	if (chunk == 0 || chunk > MAX_CHUNK)
		chunk = MAX_CHUNK;
	if (sweep)
		chunk = SWEEP_CHUNK;
	if (b->store->direct)
		chunk = 1; /* local memory: read a word only when the last had nothing */
	if (max_words > nw)
		max_words = nw;
	for (uint64_t scanned = 0; scanned < max_words;) {
		uint64_t w0 = (start + scanned) & (nw - 1);
		uint64_t n = chunk;
		if (n > nw - w0)
			n = nw - w0;
		if (n > max_words - scanned)
			n = max_words - scanned;
		int rc;
		if (counts && scanned == 0) {
			/* Remote: the free counts ride in the same round trip as
			 * the first chunk, for the caller's next step on a miss. */
			struct rmp_wop two[2];
			rmp_wop_load(&two[0], g->level_word[t] + w0, (uint32_t)n, buf);
			rmp_wop_load(&two[1], g->count_word, t + 1, counts);
			rc = st_exec(b, tl, two, 2);
		} else
			rc = st_load(b, tl, g->level_word[t] + w0, (uint32_t)n, buf);
		if (rc)
			return rc;
		for (uint64_t k = 0; k < n; k++, pref = 0) {
			uint64_t v = buf[k];
			for (;;) {
				uint64_t fb = free_bits(v);
				if (!fb)
					break;
				/* From the cursor's block on, wrapping. */
				uint64_t hi = fb & (~0ull << pref);
				unsigned bit = (unsigned)__builtin_ctzll(hi ? hi : fb);
				uint64_t i = (w0 + k) * BLOCKS_PER_WORD + bit / 2;
				uint64_t seen = 0;
				rc = st_cas(b, tl, g->level_word[t] + w0 + k, v, with_state(v, i, new_state), &seen);
				if (rc < 0)
					return rc;
				if (rc == 1) {
					cursor_set(ctx, t, i);
					*blk = i;
					return 0;
				}
				v = seen; /* lost a race: recompute from what is there now */
			}
		}
		scanned += n;
	}
	return -ENOMEM;
}

/*
 * We own block `blk` of level j (just CAS-ed FREE -> NONE) and everything
 * below it. Split it down to level t toward block `target` of level t (in
 * blk's range): at each level the half on the way stays ours and the
 * other half becomes FREE; at level t ours becomes ALLOC. All bits touched
 * are 0, so FAA sets them exactly; one batch, any completion order. The
 * seed splits toward the left (target = blk << (t - j)); local memory
 * splits toward the thread's cursor, to keep threads on their own lines.
 */
static int split_down(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl,
		      unsigned j, uint64_t blk, unsigned t, uint64_t target, uint64_t *left)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct rmp_wop ops[RMP_BUDDY_MAX_LEVELS + 1], cnt[RMP_BUDDY_MAX_LEVELS + 2];
	unsigned n = 0;
	uint64_t c;

	/* A claimed block of level j splits down to level t, toward a block
	 * of its own range. */
	rmp_assert(j < t && t < g->levels);
	rmp_assert(target >> (t - j) == blk);
	for (unsigned lv = j + 1; lv <= t; lv++) {
		c = target >> (t - lv); /* ours at level lv; c ^ 1 is set free */
		uint64_t add = (uint64_t)ST_FREE << blk_shift(c ^ 1);
		if (lv == t)
			add += (uint64_t)ST_ALLOC << blk_shift(c);
		rmp_wop_faa(&ops[n], blk_word(g, lv, c), add);
		rmp_wop_faa(&cnt[n], g->count_word + lv, 1);
		n++;
	}
	int rc = st_exec(b, tl, ops, n);
	if (rc)
		return rc;
	/* Published at once, even by a ctx that defers: the halves are
	 * free for others, and the counts are how they find them near
	 * their own cursors instead of sweeping into this client's. */
	rmp_wop_faa(&cnt[n], g->count_word + j, (uint64_t)-1);
	rc = st_post(b, tl, cnt, n + 1);
	if (rc)
		return rc;
	for (unsigned lv = j + 1; lv <= t; lv++)
		cursor_set(ctx, lv, (target >> (t - lv)) ^ 1);
	*left = target;
	return 0;
}

/* Where to split block blk of level j toward, at level t: the seed's left
 * end, or on local memory the block of blk's range nearest the cursor. */
static uint64_t split_target(const struct rmp_buddy *b, const struct rmp_buddy_ctx *ctx, unsigned j,
			     uint64_t blk, unsigned t)
{
	uint64_t lo = blk << (t - j), hi = lo + (1ull << (t - j)) - 1;
	if (!b->store->direct)
		return lo;
	uint64_t cur = ctx->homed ? home_blk(ctx, t) : atomic_load_explicit(&ctx->cursor[t], memory_order_relaxed);
	return cur < lo ? lo : cur > hi ? hi : cur;
}

/*
 * Local memory: claim a FREE block of level lv that overlaps the address
 * range of the bitmap line holding this ctx's cursor at level t (its home
 * in that level). 0 with *blk, -ENOMEM, or a store error.
 */
static int claim_near(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl, unsigned t,
		      unsigned lv, unsigned new_state, uint64_t *blk)
{
	const struct rmp_buddy_geom *g = &b->g;
	uint64_t cur = ctx->homed ? home_blk(ctx, t)
				  : atomic_load_explicit(&ctx->cursor[t], memory_order_relaxed) & ((1ull << t) - 1);
	uint64_t lo = cur / LINE_BLOCKS * LINE_BLOCKS, hi = lo + LINE_BLOCKS; /* level-t blocks [lo, hi) */

	if (hi > (1ull << t))
		hi = 1ull << t;
	lo >>= t - lv;
	hi = ((hi - 1) >> (t - lv)) + 1; /* level-lv blocks [lo, hi) */
	for (uint64_t wi = lo / BLOCKS_PER_WORD; wi * BLOCKS_PER_WORD < hi; wi++) {
		uint64_t v, seen = 0;
		int rc = st_load(b, tl, g->level_word[lv] + wi, 1, &v);
		if (rc)
			return rc;
		uint64_t first = wi * BLOCKS_PER_WORD, mask = ~0ull;
		if (lo > first)
			mask &= ~0ull << blk_shift(lo);
		if (hi < first + BLOCKS_PER_WORD)
			mask &= ~(~0ull << blk_shift(hi));
		for (uint64_t fb; (fb = free_bits(v) & mask) != 0;) {
			uint64_t i = first + (unsigned)__builtin_ctzll(fb) / 2;
			rc = st_cas(b, tl, g->level_word[lv] + wi, v, with_state(v, i, new_state), &seen);
			if (rc < 0)
				return rc;
			if (rc == 1) {
				if (lv == t)
					cursor_set(ctx, t, i);
				*blk = i;
				return 0;
			}
			v = seen;
		}
	}
	return -ENOMEM;
}

static int do_alloc(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl,
		    unsigned t, uint64_t *blk, bool *held)
{
	const struct rmp_buddy_geom *g = &b->g;
	uint64_t counts[RMP_BUDDY_MAX_LEVELS + 1];
	int rc;

	/* Fast path: a free block of this order near where we last saw one.
	 * A remote store loads the counts in the same round trip. */
	bool have_counts = b->store->direct == NULL;
	rc = scan_claim(b, ctx, tl, t, ST_ALLOC, b->store->chunk_words, blk, have_counts ? counts : NULL, false);
	if (rc != -ENOMEM)
		goto out_claimed;

	/* Local memory first looks near home: blocks of every level that
	 * overlap the bitmap line around the cursor at level t, so that a
	 * thread splits a block there rather than take a free block of the
	 * order in another thread's lines (they would share cache lines from
	 * then on); every level, a few words each, since the counts may not
	 * show what other threads keep back. Then two passes over whole
	 * levels where the counts say: they lag the CAS that decides by one
	 * posted FAA, so a miss is worth one more look before ENOMEM. */
	int first = b->store->direct ? -1 : 0;
	for (int pass = first; pass < 2; pass++) {
		if (pass == 0 && !have_counts) {
			rc = st_load(b, tl, g->count_word, t + 1, counts);
			if (rc)
				return rc;
		} else if (pass > 0) {
			rc = st_load(b, tl, g->count_word, t + 1, counts);
			if (rc)
				return rc;
		}
		/* What this ctx has not published yet is as good as published. */
		if (pass >= 0 && ctx->defer_max)
			for (unsigned j = 0; j <= t; j++)
				counts[j] += (uint64_t)atomic_load_explicit(&ctx->pending[j], memory_order_relaxed);
		if (pass < 0 || (int64_t)counts[t] > 0) {
			if (pass < 0)
				rc = claim_near(b, ctx, tl, t, t, ST_ALLOC, blk);
			else
				rc = scan_claim(b, ctx, tl, t, ST_ALLOC, UINT64_MAX, blk, NULL, false);
			if (rc != -ENOMEM)
				goto out_claimed;
		}
		/* The nearest larger order first: halve as little as possible. */
		for (unsigned j = t; j-- > 0;) {
			if (pass >= 0 && (int64_t)counts[j] <= 0)
				continue;
			uint64_t big;
			if (pass < 0)
				rc = claim_near(b, ctx, tl, t, j, ST_NONE, &big);
			else
				rc = scan_claim(b, ctx, tl, j, ST_NONE, UINT64_MAX, &big, NULL, false);
			if (rc == -ENOMEM)
				continue;
			if (rc)
				return rc;
			return split_down(b, ctx, tl, j, big, t, split_target(b, ctx, j, big, t), blk);
		}
	}
	/* The counts said nothing fits. They lag (a remote client's count
	 * updates ride with its next batch), so before saying ENOMEM sweep
	 * every level that could serve, in large reads: only a sweep that
	 * finds nothing proves the pool full for this order. */
	for (unsigned j = t + 1; j-- > 0;) {
		uint64_t big;
		rc = scan_claim(b, ctx, tl, j, j == t ? ST_ALLOC : ST_NONE, UINT64_MAX, &big, NULL, true);
		if (rc == -ENOMEM)
			continue;
		if (rc)
			return rc;
		if (j == t) {
			*blk = big;
			return count_faa(b, tl, t, -1);
		}
		return split_down(b, ctx, tl, j, big, t, split_target(b, ctx, j, big, t), blk);
	}
	/* Nothing free, yet the counts (last read) say a block that would do
	 * exists: another client holds it in passing (claimed and being split,
	 * or merged and being freed upward). Worth another try. */
	for (unsigned j = 0; j <= t; j++)
		*held |= (int64_t)counts[j] > 0;
	return -ENOMEM;

out_claimed:
	if (rc)
		return rc;
	return count_faa(b, tl, t, -1);
}

/*
 * The steady state on local memory, inline: one load of the word holding
 * the block this ctx freed or split off last at level t, one CAS on a free
 * block in it. 1: claimed *blk; 0: take the general path (nothing free in
 * that word, or the CAS lost a race).
 */
static inline int alloc_direct(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl,
			       _Atomic uint64_t *direct, unsigned t, uint64_t *blk)
{
	uint64_t cur = atomic_load_explicit(&ctx->cursor[t], memory_order_relaxed);
	uint64_t wi = (cur / BLOCKS_PER_WORD) & (level_words(t) - 1);
	_Atomic uint64_t *w = &direct[b->g.level_word[t] + wi];
	uint64_t v = atomic_load_explicit(w, memory_order_acquire);
	uint64_t fb = free_bits(v);

	if (!fb) {
		tl_add(tl, C_LOADS, 1);
		tl_add(tl, C_RTS, 1);
		return 0;
	}
	uint64_t hi = fb & (~0ull << blk_shift(cur));
	uint64_t i = wi * BLOCKS_PER_WORD + (unsigned)__builtin_ctzll(hi ? hi : fb) / 2;
	if (!atomic_compare_exchange_strong_explicit(w, &v, with_state(v, i, ST_ALLOC), memory_order_acq_rel,
						     memory_order_acquire)) {
		tl_add(tl, C_LOADS, 1);
		tl_add(tl, C_RTS, 2);
		tl_add(tl, C_CAS_FAIL, 1);
		return 0;
	}
	tl_add(tl, C_FAST, 1); /* the call, 1 load, 1 CAS, 2 round trips */
	tl_add(tl, C_FAST_LOADS, 1);
	cursor_set(ctx, t, i);
	*blk = i;
	return 1;
}

static __attribute__((noinline)) int alloc_slow(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx,
						       struct tally tl, unsigned order, uint64_t *offset)
{
	unsigned t = b->g.max_order - order;
	uint64_t blk;
	int rc;

	/* Lock-free, not wait-free: a client stalled in the middle of a split
	 * holds the block it claimed, and a request that only that block
	 * could serve fails meanwhile. A few more searches cover the usual
	 * case (the other client finishes within a round trip or two); a
	 * client stalled for longer makes this return ENOMEM, never wait. */
	for (unsigned attempt = 0;; attempt++) {
		bool held = false;
		rc = do_alloc(b, ctx, &tl, t, &blk, &held);
		if (rc != -ENOMEM || !held || attempt == ALLOC_RETRIES)
			break;
	}
	tl_add(&tl, C_CALLS, 1);
	if (rc)
		return rc;
	*offset = blk << order;
	return 0;
}

int rmp_buddy_alloc(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, unsigned order,
		    uint64_t *offset)
{
	struct tally tl = { ctx->ctr[OP_ALLOC] };
	_Atomic uint64_t *direct = b->store->direct;
	uint64_t blk;

	if (order < b->g.min_order || order > b->g.max_order)
		return -EINVAL;
	unsigned t = b->g.max_order - order;
	if (direct && alloc_direct(b, ctx, &tl, direct, t, &blk)) {
		int rc = count_add(b, ctx, &tl, t, -1);
		if (rc)
			return rc;
		rmp_assert(blk >> t == 0);
		*offset = blk << order;
		return 0;
	}
	return alloc_slow(b, ctx, tl, order, offset);
}

/* --- free -------------------------------------------------------------- */

/* v: the block's word as last seen, or NULL to load it first. */
static int do_free(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl,
		   unsigned t, uint64_t i, const uint64_t *seen_word)
{
	const struct rmp_buddy_geom *g = &b->g;
	unsigned expect = ST_ALLOC; /* the freed block; its merged parents are NONE */
	bool confirmed = false;
	uint64_t v, seen = 0;
	int rc;

	rmp_assert(t < g->levels && i >> t == 0);
	if (seen_word)
		v = *seen_word;
	else if ((rc = st_load(b, tl, blk_word(g, t, i), 1, &v)) != 0)
		return rc;
	for (;;) {
		uint64_t widx = blk_word(g, t, i);
		if (state_of(v, i) != expect) {
			if (!confirmed) {
				/* A load is a hint: ask the word itself with a CAS
				 * that changes nothing, then decide. */
				rc = st_cas(b, tl, widx, v, v, &seen);
				if (rc < 0)
					return rc;
				confirmed = true;
				v = seen;
				continue;
			}
			/* ALLOC missing: not a live block of this order. NONE
			 * missing above a merge: the metadata is corrupt. */
			return expect == ST_ALLOC ? -EINVAL : -EUCLEAN;
		}
		if (t > 0 && state_of(v, i ^ 1) == ST_FREE) {
			/* Buddy free: take both out; the parent is ours to free. */
			uint64_t pm = PAIR_MASK << blk_shift(i & ~1ull);
			rc = st_cas(b, tl, widx, v, v & ~pm, &seen);
			if (rc < 0)
				return rc;
			if (rc == 0) {
				v = seen;
				confirmed = true;
				continue;
			}
			rc = count_faa(b, tl, t, -1);
			if (rc)
				return rc;
			t--;
			i >>= 1;
			expect = ST_NONE;
			confirmed = false;
			rc = st_load(b, tl, blk_word(g, t, i), 1, &v);
			if (rc)
				return rc;
			continue;
		}
		rc = st_cas(b, tl, widx, v, with_state(v, i, ST_FREE), &seen);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			cursor_set(ctx, t, i);
			return count_faa(b, tl, t, 1);
		}
		v = seen;
		confirmed = true;
	}
}

int rmp_buddy_free(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
		   unsigned order)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE] };

	if (order < g->min_order || order > g->max_order || (offset >> g->max_order) != 0 ||
	    (offset & ((1ull << order) - 1)) != 0)
		return -EINVAL;
	int rc = do_free(b, ctx, &tl, g->max_order - order, offset >> order, NULL);
	tl_add(&tl, C_CALLS, 1);
	return rc;
}

/*
 * The live block that starts at offset: walk down from the largest block
 * that may start there; above the live block every ancestor is NONE
 * (split), and the first level that is not NONE decides. Top-down finds
 * a typical block in one or two words, where bottom-up would read every
 * smaller level. authoritative: read each word with a CAS that changes
 * nothing, so a stale load cannot mislead. 0 with *order and *word (the
 * block's word as read), or -EINVAL.
 */
static int find_live(const struct rmp_buddy *b, struct tally *tl, uint64_t offset, bool authoritative,
		     unsigned *order, uint64_t *word)
{
	const struct rmp_buddy_geom *g = &b->g;
	unsigned top = offset ? (unsigned)__builtin_ctzll(offset) : g->max_order;
	int rc;

	if (top > g->max_order)
		top = g->max_order;
	for (unsigned o = top + 1; o-- > g->min_order;) {
		unsigned t = g->max_order - o;
		uint64_t widx = blk_word(g, t, offset >> o), v = 0;
		if (authoritative)
			rc = st_cas(b, tl, widx, 0, 0, &v); /* 1 or 0: v is the word either way */
		else
			rc = st_load(b, tl, widx, 1, &v);
		if (rc < 0)
			return rc;
		unsigned st = state_of(v, offset >> o);
		if (st == ST_NONE)
			continue;
		if (st != ST_ALLOC)
			return -EINVAL; /* inside a free or reserved block */
		*order = o;
		*word = v;
		return 0;
	}
	return -EINVAL;
}

/*
 * The steady state on local memory, inline: find the live block and, when
 * its buddy is not free, CAS it to FREE. The order this ctx freed last is
 * tried first: a block ALLOC at (order, offset) is the live block that
 * starts at offset, since nothing above or below an ALLOC block is set.
 * Else top-down as find_live() does. 1: freed; 0: take the general path
 * with *order and *v set when the block was found (a merge is due, or the
 * CAS lost a race), else with *order = 0.
 */
static inline int free_direct(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl,
			      _Atomic uint64_t *direct, uint64_t offset, unsigned *order, uint64_t *v)
{
	const struct rmp_buddy_geom *g = &b->g;
	unsigned top = offset ? (unsigned)__builtin_ctzll(offset) : g->max_order;
	unsigned hint = atomic_load_explicit(&ctx->last_free_order, memory_order_relaxed);

	if (top > g->max_order)
		top = g->max_order;
	*order = 0;
	unsigned loads = 0;
	bool hinted = hint >= g->min_order && hint <= top;
	for (unsigned o = hinted ? hint : top + 1; hinted || o-- > g->min_order;) {
		unsigned t = g->max_order - o;
		uint64_t i = offset >> o;
		_Atomic uint64_t *w = &direct[blk_word(g, t, i)];
		uint64_t x = atomic_load_explicit(w, memory_order_acquire);
		loads++;
		unsigned st = state_of(x, i);
		if (hinted) {
			hinted = false;
			if (st != ST_ALLOC) {
				o = top + 1; /* not there: top-down */
				continue;
			}
		}
		if (st == ST_NONE)
			continue;
		if (st != ST_ALLOC)
			break; /* the general path decides, authoritatively */
		*order = o;
		*v = x;
		if (t > 0 && state_of(x, i ^ 1) == ST_FREE)
			break; /* a merge: the general path */
		if (!atomic_compare_exchange_strong_explicit(w, v, with_state(x, i, ST_FREE), memory_order_acq_rel,
							     memory_order_acquire)) {
			tl_add(tl, C_RTS, 1);
			tl_add(tl, C_CAS_FAIL, 1);
			break;
		}
		tl_add(tl, C_FAST, 1); /* the call, 1 CAS, a round trip per load and the CAS */
		tl_add(tl, C_FAST_LOADS, loads);
		cursor_set(ctx, t, i);
		if (o != hint)
			atomic_store_explicit(&ctx->last_free_order, o, memory_order_relaxed);
		return 1;
	}
	tl_add(tl, C_LOADS, loads);
	tl_add(tl, C_RTS, loads);
	return 0;
}

/* order != 0: the block was found there with its word *v (free_direct). */
static __attribute__((noinline)) int free_at_slow(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx,
						  struct tally tl, uint64_t offset, unsigned order, uint64_t v,
						  unsigned *order_out)
{
	const struct rmp_buddy_geom *g = &b->g;
	int rc;

	if (order)
		rc = do_free(b, ctx, &tl, g->max_order - order, offset >> order, &v);
	else {
		rc = find_live(b, &tl, offset, false, &order, &v);
		if (rc == 0)
			rc = do_free(b, ctx, &tl, g->max_order - order, offset >> order, &v);
	}
	if (rc == -EINVAL) {
		/* Loads are hints (stale in the RDMA-like test mode): before
		 * calling a free bad, ask the words themselves. */
		rc = find_live(b, &tl, offset, true, &order, &v);
		if (rc == 0)
			rc = do_free(b, ctx, &tl, g->max_order - order, offset >> order, &v);
	}
	tl_add(&tl, C_CALLS, 1);
	if (rc == 0 && order_out)
		*order_out = order;
	return rc;
}

int rmp_buddy_free_at(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
		      unsigned *order_out)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE] };
	_Atomic uint64_t *direct = b->store->direct;
	unsigned order = 0;
	uint64_t v = 0;

	if ((offset >> g->max_order) != 0 || (offset & ((1ull << g->min_order) - 1)) != 0)
		return -EINVAL;
	if (direct && free_direct(b, ctx, &tl, direct, offset, &order, &v)) {
		int rc = count_add(b, ctx, &tl, g->max_order - order, 1);
		if (rc == 0 && order_out)
			*order_out = order;
		return rc;
	}
	return free_at_slow(b, ctx, tl, offset, order, v, order_out);
}

int rmp_buddy_order_of(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
		       bool authoritative, unsigned *order)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE] };
	uint64_t v;

	if ((offset >> g->max_order) != 0 || (offset & ((1ull << g->min_order) - 1)) != 0)
		return -EINVAL;
	int rc = find_live(b, &tl, offset, authoritative, order, &v);
	return rc;
}

int rmp_buddy_is_live(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset, unsigned order)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE] };

	if (order < g->min_order || order > g->max_order || (offset >> g->max_order) != 0 ||
	    (offset & ((1ull << order) - 1)) != 0)
		return 0;
	unsigned t = g->max_order - order;
	uint64_t i = offset >> order, widx = blk_word(g, t, i), v = 0, seen = 0;
	/* ALLOC at (order, offset) is the live block there: nothing above or
	 * below an ALLOC block is set. */
	int rc = st_load(b, &tl, widx, 1, &v);
	if (rc)
		return rc;
	if (state_of(v, i) == ST_ALLOC)
		return 1;
	rc = st_cas(b, &tl, widx, v, v, &seen);
	if (rc < 0)
		return rc;
	return state_of(seen, i) == ST_ALLOC;
}

/* --- the invariant walker ---------------------------------------------- */

static int check_fail(struct rmp_buddy_report *r, const char *what, unsigned t, uint64_t i)
{
	snprintf(r->error, sizeof(r->error), "level %u block %llu: %s", t, (unsigned long long)i, what);
	return -EUCLEAN;
}

int rmp_buddy_check(const struct rmp_buddy *b, struct rmp_buddy_report *r)
{
	const struct rmp_buddy_geom *g = &b->g;
	_Atomic uint64_t scratch[C_N]; /* the walk's reads count nowhere */
	struct tally tl = { scratch };

	for (unsigned c = 0; c < C_N; c++)
		atomic_init(&scratch[c], 0);
	uint64_t *words;
	uint8_t *covered = NULL, *covered_next = NULL; /* per block: inside a leaf above */
	int rc;

	memset(r, 0, sizeof(*r));
	words = calloc(g->total_words, sizeof(uint64_t));
	if (!words)
		return -ENOMEM;
	/* Read the region in bounded pieces, as a remote store would. */
	for (uint64_t w = 0; w < g->total_words; w += 4096) {
		uint64_t n = g->total_words - w < 4096 ? g->total_words - w : 4096;
		rc = st_load(b, &tl, w, (uint32_t)n, words + w);
		if (rc)
			goto out_free_words;
	}
	rc = -EPROTO;
	if (words[HDR_MAGIC_WORD] != (RMP_BUDDY_MAGIC << 16 | RMP_BUDDY_VERSION)) {
		snprintf(r->error, sizeof(r->error), "bad magic word %#llx",
			 (unsigned long long)words[HDR_MAGIC_WORD]);
		goto out_free_words;
	}
	rc = -ENOMEM;
	covered = calloc(1ull << (g->levels - 1), 1);
	covered_next = calloc(1ull << (g->levels - 1), 1);
	if (!covered || !covered_next)
		goto out_free_maps;
	rc = 0;
	for (unsigned t = 0; t < g->levels && rc == 0; t++) {
		uint64_t nb = 1ull << t, bsz = 1ull << (g->max_order - t);
		r->counts[t] = (int64_t)words[g->count_word + t];
		for (uint64_t i = 0; i < nb; i++) {
			unsigned st = state_of(words[blk_word(g, t, i)], i);
			bool inside = t > 0 && covered[i >> 1];
			if (inside && st != ST_NONE) {
				rc = check_fail(r, "set inside a larger block", t, i);
				break;
			}
			if (!inside && st == ST_NONE && t == g->levels - 1) {
				rc = check_fail(r, "split below the minimum block", t, i);
				break;
			}
			if (!inside && st == ST_FREE && t > 0 && (i & 1) == 0 &&
			    state_of(words[blk_word(g, t, i + 1)], i + 1) == ST_FREE) {
				rc = check_fail(r, "it and its buddy are both free (lost merge)", t, i);
				break;
			}
			covered_next[i] = inside || st != ST_NONE;
			if (!inside) {
				if (st == ST_FREE) {
					r->free_bytes += bsz;
					r->free_blocks[t]++;
				} else if (st == ST_ALLOC)
					r->alloc_bytes += bsz;
				else if (st == ST_RESERVED)
					r->reserved_bytes += bsz;
			}
		}
		if (rc == 0 && r->counts[t] != (int64_t)r->free_blocks[t]) {
			snprintf(r->error, sizeof(r->error), "level %u: count says %lld free, walk found %llu",
				 t, (long long)r->counts[t], (unsigned long long)r->free_blocks[t]);
			rc = -EUCLEAN;
		}
		uint8_t *tmp = covered;
		covered = covered_next;
		covered_next = tmp;
	}
	if (rc == 0 && r->free_bytes + r->alloc_bytes + r->reserved_bytes != 1ull << g->max_order) {
		snprintf(r->error, sizeof(r->error), "blocks cover %llu bytes, not the capacity",
			 (unsigned long long)(r->free_bytes + r->alloc_bytes + r->reserved_bytes));
		rc = -EUCLEAN;
	}
out_free_maps:
	free(covered);
	free(covered_next);
out_free_words:
	free(words);
	return rc;
}

void rmp_buddy_stats(const struct rmp_buddy_ctx *ctx, struct rmp_buddy_stats *out)
{
	struct rmp_buddy_opstats *dst[2] = { &out->alloc, &out->free };

	for (unsigned k = 0; k < 2; k++) {
		uint64_t v[C_N];
		for (unsigned c = 0; c < C_N; c++)
			v[c] = atomic_load_explicit(&ctx->ctr[k][c], memory_order_relaxed);
		*dst[k] = (struct rmp_buddy_opstats){
			.calls = v[C_CALLS] + v[C_FAST],
			.round_trips = v[C_RTS] + v[C_FAST] + v[C_FAST_LOADS],
			.loads = v[C_LOADS] + v[C_FAST_LOADS],
			.cas_ok = v[C_CAS_OK] + v[C_FAST], .cas_fail = v[C_CAS_FAIL], .faa = v[C_FAA],
		};
	}
}

void rmp_buddy_stats_add(struct rmp_buddy_stats *sum, const struct rmp_buddy_stats *s)
{
	struct rmp_buddy_opstats *d[2] = { &sum->alloc, &sum->free };
	const struct rmp_buddy_opstats *a[2] = { &s->alloc, &s->free };

	for (unsigned k = 0; k < 2; k++) {
		d[k]->calls += a[k]->calls;
		d[k]->round_trips += a[k]->round_trips;
		d[k]->loads += a[k]->loads;
		d[k]->cas_ok += a[k]->cas_ok;
		d[k]->cas_fail += a[k]->cas_fail;
		d[k]->faa += a[k]->faa;
	}
}
