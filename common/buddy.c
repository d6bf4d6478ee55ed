/*
 * buddy.c - a lock-free binary buddy allocator on a word store.
 *
 * After the lock-free buddy heap seed (HeapCreate/HeapAlloc/HeapFree;
 * DESIGN.md, The buddy engine), written for what one-sided RDMA offers: 64-bit
 * loads, CAS and FAA on aligned words (store.h). No lock, no spin-wait on
 * another client, no kernel call.
 *
 * Layout of the metadata region (words of 64 bits), layout version 3:
 *   [0, 8)          header: magic+version, orders, usable bytes, size,
 *                   generation, slots; word 7 is the transit word (below)
 *   [8, 8+levels)   count[t]: free blocks at level t, the root of its summary
 *   then per level t (8-word aligned): the level bitmap, 2 bits per block
 *   then per level t, per tier k = 1..tiers[t] (8-word aligned): the summary
 *   then, if the region has slots: 2 words per context slot (op, seq) and
 *   one tag word per minimum block (owner records, below)
 * Level t holds the 2^t blocks of order M - t; level 0 is the whole heap.
 * Block i of level t has state bits at word i/32, shift 2*(i%32):
 *   00 NONE     split into halves, or inside a larger block
 *   01 FREE     free at this order
 *   10 ALLOC    allocated at this order
 *   11 RESERVED the tail beyond the usable size, or retired space
 *               (rmp_buddy_retire); never handed out, never changed again
 * Buddies 2j and 2j+1 sit in one nibble of one word, so "my buddy is free:
 * merge" and "my buddy is not free: mark myself free" are each one CAS on
 * one word, and two buddies freed at once can never both miss the merge.
 *
 * Invariant: every descendant of a FREE, ALLOC or RESERVED block is NONE.
 * Hence a client that claims a FREE block owns every bit below it, and can
 * set those bits with FAA (adding to bits known to be 0 cannot carry into
 * a neighbour) in one batch, without retries.
 *
 * The summary says where free blocks are, so that no search reads more
 * than O(levels) words whatever the fill. Per level, a tree of free-block
 * counts: tier 1 has one count per group of 64 bitmap words (2048
 * blocks), tier k one per 64 counts of tier k-1, until a tier has at most
 * 64 words; count[t] is the root. A search reads the roots (one load),
 * then the top tier of a level whose root says it has a free block, then
 * the 64 counts below a non-zero one, ..., then 64 bitmap words, and CASes
 * a FREE block: 1 + tiers + 1 loads and a CAS, tiers <= 3 (a level of 2^28
 * blocks). Invariant of the summary: a count is never below the number of
 * FREE blocks in its subtree (it may say more, never fewer), so a zero
 * count proves its subtree has nothing free. The update order that keeps
 * it (FAA on every count of the path, root included, in one batch):
 *   - before a block becomes FREE (a free, a split's halves, a merged
 *     parent): increment its path, and only then CAS/FAA the block FREE;
 *   - after a block stops being FREE (a claim, a split's parent, a merged
 *     buddy): CAS it first, and only then decrement its path.
 * In between the counts over-report, which costs a searcher a look at an
 * empty group, never a missed block. A ctx that keeps credit
 * (rmp_buddy_ctx_defer) over-reports on purpose, by a bounded amount.
 *
 * Cost of the summary in metadata bytes: 1/63 of the bitmaps, plus the
 * 8-word alignment of each tier. 1 GiB of 4 KiB blocks (19 levels): 128
 * KiB of bitmaps, 2.1 KiB of summary, 130.8 KiB in all (was 128.7); 4 GiB
 * (21 levels): 512 KiB and 8.2 KiB, 520.9 KiB (was 512.7); 1 TiB of 4 KiB
 * blocks: 128 MiB and 2.0 MiB. The transit word is a header word.
 *
 * alloc(order): the level of the order is t. Look at the client's cursor
 * first (the block it freed or split off last: warm, LIFO-like); on a miss
 * search the summary of level t, then of the nearest larger order, claim a
 * FREE block there (CAS FREE->NONE) and split it down: for each level
 * below it, FAA the half not on the way to FREE, and at level t the block
 * on the way to ALLOC, in one batch. The block is halved until it is less
 * than twice the request, as in the seed.
 *
 * free(offset, order): the block must be ALLOC (else -EINVAL: a double
 * free or a stray handle, seen by any client). While the buddy is FREE,
 * CAS the pair to NONE and go up one level (where the parent is NONE);
 * when it is not, CAS the block to FREE. Every step is one CAS; a failed
 * CAS returns the current word and the step is recomputed from it.
 *
 * Memory in passing, and no false ENOMEM. A split holds memory that is
 * nobody's (the claimed parent, before its halves are FREE), and so does a
 * merge (the merged pair, before the parent is FREE above). The transit
 * word counts these moves: low half moves in progress, high half moves
 * begun. A move adds 1 to both (FAA) before it takes memory out of FREE
 * (the claim, the first merge CAS), and 1 is taken off the low half after
 * the memory is FREE again where it lands (exec, never left in a queue).
 * ENOMEM is said only when a complete search found nothing FREE at levels
 * 0..t and the transit word, read before and after that search (an atomic
 * read), showed no move in progress and no move begun: then during the
 * search no memory was in passing and none moved between levels, and the
 * zero counts it followed were true. The proof costs two searches and two
 * reads of the transit word: O(levels). When the summary says memory
 * exists and no search gets it (a client stalled or preempted in the
 * middle of a split or merge, or lost races) the allocation returns
 * -EAGAIN after ALLOC_RETRIES searches: lock-free, never waiting for the
 * client that holds it. (A client that dies in the middle of a move
 * leaves the transit word up for good: allocations then say -EAGAIN
 * rather than ENOMEM when the pool is full, until the pool is recreated.)
 *
 * Retirement (rmp_buddy_retire: a dead donor's segment out of service).
 * The range is one block R, at level r. Update order:
 *   1. R's path from the root, read in one round trip of CASes that change
 *      nothing, each `after` the one above (so read top-down, and no value
 *      old); the first set block decides: ALLOC or RESERVED, nothing to
 *      do; a FREE block above R is claimed and split down to R by the
 *      split protocol ([transit +1, +1 on every half's path, the claim
 *      CAS], then [the halves FREE and R RESERVED by FAA, -1 on the
 *      claimed block's path, transit -1]); R FREE: CAS it RESERVED, then
 *      -1 on its path;
 *   2. R split: the levels below R, top-down, each after the one above;
 *      at each, every word holding a block still to look at (a half of a
 *      NONE block seen above) gets a CAS from its hint to the hint with
 *      those blocks' FREE made RESERVED (01 -> 11, one CAS per word) and,
 *      after it, -1 per block on the word's path. A lost CAS returns the
 *      word, which goes again.
 * The summary never under-reports during a retire: RESERVED is not FREE,
 * so FREE -> RESERVED is a claim (the CAS first, the decrement after: the
 * counts over-report in between), and the split is an allocation's split
 * (each half's count raised before it is FREE, the claimed block's
 * lowered after it is not). RESERVED never changes again (no free, merge
 * or claim takes it), so it costs no count ever after, and
 * rmp_buddy_free_retired (ALLOC -> RESERVED) touches none. FREE ->
 * RESERVED is no move: memory leaves FREE for good, no transit word, and
 * an ENOMEM beside it is true. Memory in passing: a NONE leaf seen with
 * nothing set above it is a split or merge half done; the pass is
 * repeated, and after RETIRE_PASSES passes -EAGAIN (the engine does not
 * wait for the client that holds it). A repeat reads the path again but
 * walks down only to the leaves the pass before found in passing (or to
 * all, when that one lost a race and saw less): every other leaf was in
 * a set block when seen, which stands (ALLOC then, or RESERVED for good),
 * and the argument below holds per leaf, for its own chain of blocks
 * read top-down. Why the top-down order finds all
 * of it: a split moves memory down (the claim at level j, then the
 * halves FREE below), a merge up (the pair NONE, then the parent FREE
 * above). Read top-down, a split's memory is seen FREE at j (reserved:
 * the claim then fails), or FREE in its halves, or as NONE leaves; a
 * merge's is seen FREE at the parent, or FREE as the buddy (reserved: the
 * merge CAS fails and the block being freed goes FREE alone, a late free
 * the next retire takes), or as NONE leaves. ALLOC blocks in R stay; the
 * owner's free retires them; a free by a client that did not know yet
 * makes them FREE, and the retire, called again, takes that. So 0 says:
 * every byte of R is RESERVED or in a block that was ALLOC during the
 * call. Cost: 1 round trip for the path, a split 2 more; below R one
 * round trip per level and per RETIRE_BATCH words past the first batch
 * (each level's first batch also loads the next level's hints, at most
 * RETIRE_LOAD words); a word per 32 blocks still to look at, so only the
 * words under R that are NONE above are read.
 *
 * Remote round trips. Each step is one batch; the atomics that must land
 * before a step's CAS ride in its batch ahead of it, the CAS marked
 * `after` them (store.h: one queue pair executes atomics in order), and
 * what may land later is posted (sent at once, not waited for). A ctx
 * remembers the bitmap words it saw last (its word cache): an allocation
 * CASes a FREE block of the word at its cursor as last seen, beside the
 * READ of the chunk there and of the roots; a free CASes its block's word
 * as last seen, with +1 on its path ahead of it and the READ of all its
 * ancestors' words beside it. When nothing changed since, each is one
 * round trip; a split costs two more (the claim with its counts ahead,
 * then the halves with transit -1 behind), a merge one per level.
 *
 * Loads are hints (an RDMA READ may race with atomics): a load that says
 * "not mine" is confirmed by a CAS that would change nothing before any
 * error is returned; the ENOMEM proof reads the transit word and, on a
 * remote store, the roots with FAA 0, which an old value cannot fake.
 *
 * A stalled client holds at most the block it has claimed; it never
 * blocks another (tests freeze clients after every word operation).
 *
 * Owner records (layout 3; DESIGN.md, Owner records and Reclaim). On a
 * remote store a ctx with a record (rmp_buddy_ctx_record) says in its
 * slot what it is doing and in tag[X] whose each ALLOC block X is, in the
 * batches it sends anyway: the first claim or free batch names the block
 * (FAA seq +1, CAS op idle -> busy|kind|level|block) ahead of its CAS; a
 * claim is followed by CAS tag 0 -> own|PENDING (a won claim that found
 * another value CASes it to its own, a lost one that set it takes it
 * back, one round trip each, only then); a free's step CAS is followed by
 * CAS tag own -> 0 (and a lost step that cleared it tags the block again
 * before it retries); the end is posted FAAs, in order: after an
 * allocation op += DONE and tag -= PENDING, then op back to idle, once
 * every tag is right. Invariant: a live ctx that owns X and is not busy
 * has tag[X] = its tag; a busy one's slot names its block. A free of a
 * block another ctx may own (rmp_buddy_free_foreign) first locks the tag
 * (CAS T -> LOCK|own), so that two frees, or a free and the resolver,
 * never both free one allocation.
 *
 * The resolver (reclaim, at the end of this file) takes a clean snapshot
 * (slots, region, slots: equal, and only dead or abandoned contexts busy),
 * finds the ALLOC blocks no live tag owns, the holes a dead split or
 * merge left, the stale tags, the counts' drift and the moves left in
 * transit, and repairs them while live clients go on: garbage frees under
 * the tag lock, holes released as a merge's parent, FAAs for the drift,
 * the dead slots reset last.
 *
 * Classification (rmp_buddy_classify, for `rmpool pool check`, which
 * knows no parties): the same findings on any image, split into lag
 * (what an operation in flight or a dead context leaves: busy slots,
 * drift, moves, holes while a move is in transit, odd tags while a slot
 * is busy) and corruption (what none leaves: a block set inside another,
 * two free buddies, a count below its blocks, ...).
 *
 * On local memory (store->direct) the steady state is inline: alloc loads
 * the word at the cursor and CASes a free block in it; free tries the
 * order it freed last, then walks top-down, and CASes the block FREE. A
 * ctx that one thread owns may keep credit (rmp_buddy_ctx_defer): then an
 * alloc and a free in the same bitmap group leave the counts as they are,
 * and the steady state is one load and one CAS each. Each ctx has a home
 * (rmp_buddy_ctx_home); a local miss first looks, at every level, at the
 * blocks overlapping the bitmap line around its home, and splits toward
 * it, so that threads keep to their own cache lines; when the home line
 * is exhausted its cursor follows what the summary search found. Remote
 * clients split to the left, as the seed does.
 */
#include "buddy.h"

#include <errno.h>
#include <stdarg.h>
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
/* The summary's fan-out: bitmap words per tier-1 count, counts per count
 * above. 64 words are one 512-byte READ: a remote search step costs what
 * a one-word step costs, and 3 tiers reach 2^28 blocks. */
#define SUM_SHIFT      6u
#define SUM_FAN        (1u << SUM_SHIFT)
/* Searches before -EAGAIN when the summary says memory exists but it is
 * not found (held in passing by another client, or races lost). On local
 * memory one search is well under a microsecond; remotely a few round
 * trips. */
#define ALLOC_RETRIES  32u
/* Group reads per search: a full descent is 1 + tiers; the rest is for
 * groups other clients over-report (their credit, a decrement not landed
 * yet). Past it the search does not count as complete. */
#define SEARCH_BUDGET  1024u
#define LOCAL_SPAN_WORDS 8u /* local memory: a cache line of a level's bitmap */
#define HDR_MAGIC_WORD 0
#define HDR_ORDERS_WORD 1
#define HDR_USABLE_WORD 2
#define HDR_SIZE_WORD  3
#define HDR_TRANSIT_WORD 7
/* The transit word: moves in progress in the low half, moves begun in the
 * high half (a sequence: equal values read at two instants mean no move
 * began in between). */
#define TRANSIT_BEGIN  (1ull + (1ull << 32))
#define TRANSIT_END    (~0ull) /* -1 on the low half, which is >= 1 then */
#define TRANSIT_MOVES(x) ((uint32_t)(x))
/* Operations of one summary path: the root and every tier. */
#define PATH_OPS       (RMP_BUDDY_MAX_TIERS + 1u)
/* A split's first batch: the transit word and the path of every half. */
#define SPLIT_OPS      (1u + RMP_BUDDY_MAX_LEVELS * PATH_OPS)
/* A retire: passes over its range before -EAGAIN (a block in it held in
 * passing), and rounds that lose a CAS per pass; CASes per round trip
 * (a remote store takes 128 work requests a batch); words per hint load
 * (the RDMA store's scratch holds 8192). */
#define RETIRE_PASSES  16u
#define RETIRE_BATCH   64u
#define RETIRE_LOAD    4096u

enum { OP_ALLOC = 0, OP_FREE = 1, OP_RETIRE = 2 };
enum { C_CALLS, C_RTS, C_LOADS, C_CAS_OK, C_CAS_FAIL, C_FAA, C_FAST, C_FAST_LOADS, C_N };

/* Where an operation counts what it issues: the client's counters for
 * that kind of operation. Relaxed load+store, not fetch_add: a ctx
 * belongs to one thread at a time in practice (the heap gives each
 * thread its own shard), and a locked add per counter would cost more
 * than the operation's own atomics. Two threads sharing a ctx may lose
 * counts, never correctness. */
struct rec;
struct tally {
	_Atomic uint64_t *c;          /* C_N counters */
	struct rmp_buddy_ctx *ctx;    /* whose word cache results go to; NULL: none */
	struct rec *rec;              /* the operation's owner records; NULL: none kept */
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

/* Words of tier k of level t's summary (k = 0: the bitmap itself). */
static inline uint64_t tier_len(unsigned t, unsigned k)
{
	unsigned s = SUM_SHIFT * k;
	return (level_words(t) + (1ull << s) - 1) >> s;
}

int rmp_buddy_geom_init(struct rmp_buddy_geom *g, unsigned max_order, unsigned min_order)
{
	return rmp_buddy_geom_init_records(g, max_order, min_order, 0);
}

int rmp_buddy_geom_init_records(struct rmp_buddy_geom *g, unsigned max_order, unsigned min_order,
				unsigned slots)
{
	if (max_order > RMP_BUDDY_MAX_ORDER || min_order > max_order ||
	    max_order - min_order > RMP_BUDDY_MAX_LEVELS - 1 || slots > RMP_BUDDY_MAX_SLOTS)
		return -EINVAL;
	memset(g, 0, sizeof(*g));
	g->max_order = max_order;
	g->min_order = min_order;
	g->levels = max_order - min_order + 1;
	g->transit_word = HDR_TRANSIT_WORD;
	g->count_word = RMP_BUDDY_HDR_WORDS;
	uint64_t w = g->count_word + g->levels;
	for (unsigned t = 0; t < g->levels; t++) {
		w = (w + 7) & ~7ull; /* each level starts on a cache line */
		g->level_word[t] = w;
		w += level_words(t);
	}
	for (unsigned t = 0; t < g->levels; t++) {
		unsigned k = 0;
		while (tier_len(t, k) > SUM_FAN)
			k++; /* the top tier fits in one group: the root's children */
		rmp_assert(k <= RMP_BUDDY_MAX_TIERS);
		g->tiers[t] = k;
		for (unsigned j = 1; j <= k; j++) {
			w = (w + 7) & ~7ull;
			g->tier_word[t][j - 1] = w;
			w += tier_len(t, j);
		}
	}
	if (slots) {
		/* The records: the slots, then one tag per minimum block. */
		g->slots = slots;
		g->slot_word = w = (w + 7) & ~7ull;
		w += 2ull * slots;
		g->tag_word = w = (w + 7) & ~7ull;
		w += 1ull << (g->levels - 1);
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

/* The summary of a freshly marked bitmap: every tier counts the FREE
 * blocks below it (the roots were counted while marking). */
static void fmt_summary(uint64_t *words, const struct rmp_buddy_geom *g)
{
	for (unsigned t = 0; t < g->levels; t++)
		for (uint64_t wi = 0; wi < level_words(t); wi++) {
			uint64_t n = (uint64_t)__builtin_popcountll(free_bits(words[g->level_word[t] + wi]));
			for (unsigned k = 1; k <= g->tiers[t] && n; k++)
				words[g->tier_word[t][k - 1] + (wi >> (SUM_SHIFT * k))] += n;
		}
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
	words[RMP_BUDDY_HDR_SLOTS_WORD] = g->slots;
	fmt_mark(words, g, 0, 0, usable);
	fmt_summary(words, g);
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
	if (hdr[RMP_BUDDY_HDR_SLOTS_WORD] > RMP_BUDDY_MAX_SLOTS)
		return -EPROTO;
	int rc = rmp_buddy_geom_init_records(g, maxo, mino, (unsigned)hdr[RMP_BUDDY_HDR_SLOTS_WORD]);
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
	for (unsigned k = 0; k < 3; k++)
		for (unsigned c = 0; c < C_N; c++)
			atomic_init(&ctx->ctr[k][c], 0);
	for (unsigned t = 0; t <= RMP_BUDDY_MAX_LEVELS; t++) {
		atomic_init(&ctx->credit[t], 0);
		atomic_init(&ctx->credit_grp[t], 0);
	}
	ctx->defer_max = 0;
	atomic_init(&ctx->last_free_order, 0);
	for (unsigned k = 0; k < 2 * RMP_BUDDY_WCACHE; k++)
		atomic_init(&ctx->wc_inline[k], 0);
	ctx->wc = ctx->wc_inline;
	ctx->wc_mask = RMP_BUDDY_WCACHE - 1;
	ctx->home = 0;
	ctx->homed = false;
	ctx->rec_tag = 0;
	ctx->rec_slot = 0;
	atomic_init(&ctx->rec_fixes, 0);
}

int rmp_buddy_ctx_record(struct rmp_buddy_ctx *ctx, const struct rmp_buddy *b, unsigned slot, uint64_t id)
{
	if (slot >= b->g.slots || id >> 61 != 0)
		return -EINVAL;
	ctx->rec_slot = slot;
	ctx->rec_tag = RMP_BUDDY_TAG_BIT | id;
	return 0;
}

static inline uint64_t home_blk(const struct rmp_buddy_ctx *ctx, unsigned t)
{
	return t ? ctx->home >> (64 - t) : 0;
}

/* Blocks per bitmap line of a level: a homed ctx's window. */
#define LINE_BLOCKS ((uint64_t)LOCAL_SPAN_WORDS * BLOCKS_PER_WORD)

/* Point the cursor of level t at block i: always, or for a homed ctx only
 * inside its home line (a block it took or freed elsewhere is not worth
 * coming back to: that line is another thread's), unless follow (its home
 * line had nothing: stay where the search found memory). */
static inline void cursor_set(struct rmp_buddy_ctx *ctx, unsigned t, uint64_t i, bool follow)
{
	if (!follow && ctx->homed && i / LINE_BLOCKS != home_blk(ctx, t) / LINE_BLOCKS)
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

void rmp_buddy_ctx_cache(struct rmp_buddy_ctx *ctx, _Atomic uint64_t *mem, unsigned entries)
{
	rmp_assert(entries >= 1 && (entries & (entries - 1)) == 0);
	for (unsigned k = 0; k < 2 * entries; k++)
		atomic_init(&mem[k], 0);
	ctx->wc = mem;
	ctx->wc_mask = entries - 1;
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

/* --- the word cache (remote stores) ----------------------------------- */

/* Where word idx goes: a multiplicative hash, since the words at the same
 * place of different levels are apart by powers of two. */
static inline uint64_t wc_slot(const struct rmp_buddy_ctx *ctx, uint64_t idx)
{
	return ((idx + 1) * 0x9E3779B97F4A7C15ull >> 32) & ctx->wc_mask;
}

/* Remember what bitmap word idx holds. Two threads sharing a ctx may pair
 * one's index with the other's value: a wrong guess, which a CAS corrects. */
static void wc_note(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t idx, uint64_t val)
{
	const struct rmp_buddy_geom *g = &b->g;
	uint64_t end = g->level_word[g->levels - 1] + level_words(g->levels - 1);

	if (!ctx || idx < g->level_word[0] || idx >= end)
		return;
	_Atomic uint64_t *e = &ctx->wc[2 * wc_slot(ctx, idx)];
	atomic_store_explicit(&e[1], val, memory_order_relaxed);
	atomic_store_explicit(&e[0], idx + 1, memory_order_relaxed);
}

/* What this ctx saw last in word idx, if it remembers it. */
static bool wc_get(const struct rmp_buddy_ctx *ctx, uint64_t idx, uint64_t *val)
{
	_Atomic uint64_t *e = &ctx->wc[2 * wc_slot(ctx, idx)];
	if (atomic_load_explicit(&e[0], memory_order_relaxed) != idx + 1)
		return false;
	*val = atomic_load_explicit(&e[1], memory_order_relaxed);
	return true;
}

/* After a remote batch: what its results say the words hold now. */
static void wc_note_batch(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, const struct rmp_wop *ops,
			  unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		const struct rmp_wop *op = &ops[i];
		if (op->kind == RMP_WOP_LOAD)
			wc_note(b, ctx, op->idx, op->dst[0]); /* the first: a chunk would flush the cache */
		else if (op->kind == RMP_WOP_CAS)
			wc_note(b, ctx, op->idx, op->old == op->arg ? op->swap : op->old);
		else
			wc_note(b, ctx, op->idx, op->old + op->arg);
	}
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

	if (n == 0)
		return 0;
	bool seen_load = false;
	for (unsigned i = 0; i < n; i++) {
		rmp_assert(ops[i].idx < b->g.total_words);
		/* store.h: an atomic is never ordered after a READ (the RDMA
		 * store refuses it); the local stores would not notice. */
		rmp_assert(!(ops[i].after && ops[i].kind != RMP_WOP_LOAD && seen_load));
		seen_load |= ops[i].kind == RMP_WOP_LOAD;
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
		if (tl->ctx)
			wc_note_batch(b, tl->ctx, ops, n);
	}
	for (unsigned i = 0; i < n; i++)
		if (ops[i].kind == RMP_WOP_CAS)
			tl_add(tl, ops[i].old == ops[i].arg ? C_CAS_OK : C_CAS_FAIL, 1);
	return 0;
}

static int st_post(const struct rmp_buddy *b, struct tally *tl, struct rmp_wop *ops, unsigned n)
{
	_Atomic uint64_t *direct = b->store->direct;

	if (n == 0)
		return 0;
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

/* --- the summary: count paths, credit, the transit word ---------------- */

/* The FAAs that add d to every count on the summary path of bitmap word
 * wi of level t (root first). Returns how many (1 + tiers). */
static unsigned path_ops(const struct rmp_buddy_geom *g, unsigned t, uint64_t wi, int64_t d, struct rmp_wop *ops)
{
	unsigned n = 0;

	rmp_assert(t < g->levels && wi < level_words(t));
	rmp_wop_faa(&ops[n++], g->count_word + t, (uint64_t)d);
	for (unsigned k = 1; k <= g->tiers[t]; k++)
		rmp_wop_faa(&ops[n++], g->tier_word[t][k - 1] + (wi >> (SUM_SHIFT * k)), (uint64_t)d);
	return n;
}

/* A block of level t in bitmap group grp (word / 64) stopped being FREE:
 * the change to make on the group's path now, after the CAS (0: kept as
 * credit). Credit is one group per level: a claim elsewhere pays at once. */
static inline int64_t credit_claimed(struct rmp_buddy_ctx *ctx, unsigned t, uint64_t grp, unsigned n)
{
	int64_t max = ctx->defer_max;
	if (!max)
		return -(int64_t)n;
	int64_t c = atomic_load_explicit(&ctx->credit[t], memory_order_relaxed);
	if (c == 0)
		atomic_store_explicit(&ctx->credit_grp[t], grp, memory_order_relaxed);
	else if (atomic_load_explicit(&ctx->credit_grp[t], memory_order_relaxed) != grp)
		return -(int64_t)n;
	c += n;
	int64_t d = 0;
	if (c > max) {
		d = -(c - max / 2); /* keep half: the next frees there are free too */
		c = max / 2;
	}
	atomic_store_explicit(&ctx->credit[t], c, memory_order_relaxed);
	return d;
}

/* A block of level t in bitmap group grp is about to become FREE: the
 * change to make on the group's path first (0: the credit covers it).
 * Without credit there, pay for this block and half a credit ahead. */
static inline int64_t credit_freeing(struct rmp_buddy_ctx *ctx, unsigned t, uint64_t grp)
{
	int64_t max = ctx->defer_max;
	if (!max)
		return 1;
	int64_t c = atomic_load_explicit(&ctx->credit[t], memory_order_relaxed);
	if (c > 0) {
		if (atomic_load_explicit(&ctx->credit_grp[t], memory_order_relaxed) != grp)
			return 1;
		atomic_store_explicit(&ctx->credit[t], c - 1, memory_order_relaxed);
		return 0;
	}
	atomic_store_explicit(&ctx->credit_grp[t], grp, memory_order_relaxed);
	atomic_store_explicit(&ctx->credit[t], max / 2, memory_order_relaxed);
	return 1 + max / 2;
}

/* The ctx's own over-report on the count at tier k, index idx, of level t
 * (k = tiers + 1: the root): what a search may take off what it reads. */
static inline int64_t credit_on(const struct rmp_buddy_ctx *ctx, const struct rmp_buddy_geom *g, unsigned t,
				unsigned k, uint64_t idx)
{
	if (!ctx->defer_max)
		return 0;
	int64_t c = atomic_load_explicit(&ctx->credit[t], memory_order_relaxed);
	if (c == 0)
		return 0;
	if (k > g->tiers[t])
		return c;
	uint64_t grp = atomic_load_explicit(&ctx->credit_grp[t], memory_order_relaxed);
	return grp >> (SUM_SHIFT * (k - 1)) == idx ? c : 0;
}

/* After n blocks of level t in bitmap word wi stopped being FREE: lower
 * their path (posted: it only has to land after the CAS that decided), or
 * keep it as credit. */
static int count_down(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl, unsigned t,
		      uint64_t wi, unsigned n)
{
	int64_t d = credit_claimed(ctx, t, wi >> SUM_SHIFT, n);
	if (d == 0)
		return 0;
	_Atomic uint64_t *direct = b->store->direct;
	if (direct) {
		/* Inline, as in st_post: relaxed would do for a count alone,
		 * acq_rel keeps it ordered with the transit word. */
		const struct rmp_buddy_geom *g = &b->g;
		tl_add(tl, C_FAA, 1 + g->tiers[t]);
		uint64_t old = atomic_fetch_add_explicit(&direct[g->count_word + t], (uint64_t)d, memory_order_acq_rel);
		/* The summary's invariant: a decrement follows the increment of
		 * the same block (or of credit), so no count goes below zero. */
		rmp_assert((int64_t)old + d >= 0);
		for (unsigned k = 1; k <= g->tiers[t]; k++)
			atomic_fetch_add_explicit(&direct[g->tier_word[t][k - 1] + (wi >> (SUM_SHIFT * k))],
						  (uint64_t)d, memory_order_acq_rel);
		return 0;
	}
	struct rmp_wop ops[PATH_OPS];
	unsigned m = path_ops(&b->g, t, wi, d, ops);
	return st_post(b, tl, ops, m);
}

/* count_down as operations appended at ops, for a batch that must carry
 * them (none when the credit takes them). */
static unsigned count_down_ops(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, unsigned t, uint64_t wi,
			       unsigned n, struct rmp_wop *ops)
{
	int64_t d = credit_claimed(ctx, t, wi >> SUM_SHIFT, n);
	return d ? path_ops(&b->g, t, wi, d, ops) : 0;
}

/* Before a block of level t in bitmap word wi becomes FREE: the FAAs that
 * raise its path, appended at ops (none when the credit covers it). They
 * must have landed before the CAS or FAA that makes the block FREE. */
static unsigned count_up_ops(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, unsigned t, uint64_t wi,
			     struct rmp_wop *ops)
{
	int64_t d = credit_freeing(ctx, t, wi >> SUM_SHIFT);
	return d ? path_ops(&b->g, t, wi, d, ops) : 0;
}

int rmp_buddy_ctx_flush(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx)
{
	_Atomic uint64_t scratch[C_N]; /* bookkeeping, not an operation: counted nowhere */
	struct tally tl = { scratch, NULL, NULL };

	for (unsigned t = 0; t < b->g.levels; t++) {
		int64_t c = atomic_load_explicit(&ctx->credit[t], memory_order_relaxed);
		if (c == 0)
			continue;
		struct rmp_wop ops[PATH_OPS];
		uint64_t grp = atomic_load_explicit(&ctx->credit_grp[t], memory_order_relaxed);
		unsigned n = path_ops(&b->g, t, grp << SUM_SHIFT, -c, ops);
		int rc = st_exec(b, &tl, ops, n);
		if (rc)
			return rc;
		atomic_store_explicit(&ctx->credit[t], 0, memory_order_relaxed);
	}
	return 0;
}

/* The transit word, read so that an old value cannot pass for the current
 * one: an acquire load on local memory, FAA 0 on any other store. */
static int transit_read(const struct rmp_buddy *b, struct tally *tl, uint64_t *x)
{
	if (b->store->direct)
		return st_load(b, tl, b->g.transit_word, 1, x);
	struct rmp_wop op;
	rmp_wop_faa(&op, b->g.transit_word, 0);
	int rc = st_exec(b, tl, &op, 1);
	*x = op.old;
	return rc;
}

/* A move's end, after the memory it held is FREE where it landed: posted
 * (sent at once, not waited for; store.h), never held back for a later
 * batch: others' ENOMEM proofs wait for it. */
static int transit_end(const struct rmp_buddy *b, struct tally *tl)
{
	struct rmp_wop op;
	rmp_wop_faa(&op, b->g.transit_word, TRANSIT_END);
	return st_post(b, tl, &op, 1);
}

/* --- owner records (remote stores, layout 3) ---------------------------- */

/* An operation's records: the slot's op word as this ctx wrote it last
 * (it is the only writer: its CASes know the old value), and its tag. */
struct rec {
	const struct rmp_buddy *b;
	struct rmp_buddy_ctx *ctx;
	unsigned kind;   /* RMP_BUDDY_SLOT_ALLOC or _FREE */
	uint64_t op;     /* the slot's op word now: 0 idle */
	uint64_t tag;    /* the ctx's tag */
	uint64_t pend;   /* the tag word of a block claimed, tagged PENDING until the end; 0: none */
	/* The caller holds the block's tag locked and ends the operation
	 * itself: a free refused (-EINVAL) leaves the slot busy, so that the
	 * lock is never left with the slot idle (the caller puts the tag
	 * back first, then ends). */
	bool hold;
};

static inline bool rec_wanted(const struct rmp_buddy *b, const struct rmp_buddy_ctx *ctx)
{
	return ctx->rec_tag != 0 && b->g.slots != 0 && !b->store->direct;
}

static inline uint64_t tag_idx(const struct rmp_buddy_geom *g, unsigned t, uint64_t i)
{
	return g->tag_word + (i << (g->levels - 1 - t));
}

static inline uint64_t slot_op_idx(const struct rec *r)
{
	return r->b->g.slot_word + 2ull * r->ctx->rec_slot;
}

/* Name block i of level t in the slot (busy), ahead of a CAS that claims
 * or frees it, which the caller marks `after`: an FAA on seq when the
 * slot was idle (an operation begins), and the CAS of the op word from
 * what this ctx wrote last. Returns how many operations (0 without
 * records or when the slot names the block already). */
static unsigned rec_name_ops(struct rec *r, unsigned t, uint64_t i, struct rmp_wop *ops)
{
	if (!r)
		return 0;
	uint64_t want = RMP_BUDDY_SLOT_BUSY | (uint64_t)r->kind << RMP_BUDDY_SLOT_KIND_SHIFT |
			(uint64_t)t << RMP_BUDDY_SLOT_LEVEL_SHIFT | (i & RMP_BUDDY_SLOT_NO_BLOCK);
	unsigned n = 0;
	if (r->op == want)
		return 0;
	if (r->op == 0)
		rmp_wop_faa(&ops[n++], slot_op_idx(r) + 1, 1);
	rmp_wop_cas(&ops[n++], slot_op_idx(r), r->op, want);
	r->op = want;
	return n;
}

/* The operation is over and every tag it touched is right: the slot goes
 * idle, posted (FAA of the exact opposite of what it holds, which only
 * this ctx writes: the same as a CAS, and nobody waits for it). */
static int rec_end(struct tally *tl)
{
	struct rec *r = tl->rec;
	if (!r || r->op == 0)
		return 0;
	struct rmp_wop ops[3];
	unsigned n = 0;
	uint64_t op = r->op;
	if (r->pend) {
		/* The block claimed is the caller's now: DONE in the slot (so
		 * that an abandoned slot says whether its block got this far),
		 * then its tag loses PENDING, then the slot goes idle. */
		rmp_wop_faa(&ops[n++], slot_op_idx(r), RMP_BUDDY_SLOT_DONE);
		rmp_wop_faa(&ops[n], r->pend, (uint64_t)0 - RMP_BUDDY_TAG_PENDING);
		ops[n++].after = 1;
		op |= RMP_BUDDY_SLOT_DONE;
	}
	rmp_wop_faa(&ops[n], slot_op_idx(r), (uint64_t)0 - op);
	ops[n++].after = 1; /* in this order: idle last */
	r->op = 0;
	r->pend = 0;
	return st_post(r->b, tl, ops, n);
}

/* One round trip: CAS tag word idx from expect to swap; *seen the value
 * found. 1, 0, or a store error. Counted as a tag fix. */
static int rec_tag_cas(struct tally *tl, uint64_t idx, uint64_t expect, uint64_t swap, uint64_t *seen)
{
	struct rec *r = tl->rec;
	atomic_fetch_add_explicit(&r->ctx->rec_fixes, 1, memory_order_relaxed);
	return st_cas(r->b, tl, idx, expect, swap, seen);
}

/* After a batch that claimed (won) or tried to claim (lost) the block
 * whose tag word is idx, with a CAS tag 0 -> own that found old: a won
 * claim makes the tag its own whatever it found (a stale tag of a freed
 * block, a loser's tag, a lock left over), CAS by CAS; a lost claim takes
 * back a tag it set. 0 or a store error; the slot stays busy meanwhile. */
static int rec_tag_settle(struct tally *tl, uint64_t idx, uint64_t old, bool won)
{
	struct rec *r = tl->rec;
	uint64_t seen = 0;
	int rc;

	uint64_t mine = r->tag | RMP_BUDDY_TAG_PENDING;

	if (!won) {
		rc = old == 0 ? rec_tag_cas(tl, idx, mine, 0, &seen) : 0;
		return rc < 0 ? rc : 0;
	}
	/* Only a claimant of this block (or a lock of its last owner's
	 * free) writes anything but 0 into its tag word, and the block is
	 * ours now: a few CASes at most. */
	r->pend = idx;
	for (unsigned k = 0; old != 0 && old != mine; k++) {
		if (k == 64)
			return -EUCLEAN;
		if ((rc = rec_tag_cas(tl, idx, old, mine, &seen)) != 0)
			return rc < 0 ? rc : 0;
		old = seen;
		if (old == 0 && (rc = rec_tag_cas(tl, idx, 0, mine, &seen)) != 0)
			return rc < 0 ? rc : 0;
		old = seen;
	}
	return 0;
}

/* --- allocation -------------------------------------------------------- */

/* One search for a block of level t: what it looks at and what it found. */
struct search {
	const struct rmp_buddy *b;
	struct rmp_buddy_ctx *ctx;
	struct tally *tl;
	unsigned t;      /* the level asked for */
	unsigned j;      /* the level being searched (<= t: j < t means a split) */
	bool follow;     /* the home line had nothing: cursors follow what is found */
	bool cut;        /* the budget ran out: not a complete search */
	unsigned budget; /* group reads left */
	uint64_t blk;    /* found: the block of level t */
};

/* Where to split block blk of level j toward, at level t: the seed's left
 * end, or on local memory the block of blk's range nearest the cursor
 * (for a homed ctx, inside its home line until it had nothing). */
static uint64_t split_target(const struct rmp_buddy *b, const struct rmp_buddy_ctx *ctx, unsigned j,
			     uint64_t blk, unsigned t)
{
	uint64_t lo = blk << (t - j), hi = lo + (1ull << (t - j)) - 1;
	if (!b->store->direct)
		return lo;
	uint64_t cur = atomic_load_explicit(&ctx->cursor[t], memory_order_relaxed);
	return cur < lo ? lo : cur > hi ? hi : cur;
}

/*
 * Claim FREE block i of level s->j (its word holds v) and split it down to
 * level s->t toward a target in its range: at each level the half on the
 * way stays ours and the other half becomes FREE; at level t ours becomes
 * ALLOC. Two batches, each atomic marked `after` behind the ones before it
 * (store.h):
 *   1. with records, the slot names the block; then transit +1 (a move
 *      begins), +1 on the path of every half, then the CAS of the block
 *      FREE -> NONE (the claim; memory in passing now);
 *   2. FAA the halves FREE and the target ALLOC (all bits touched are 0,
 *      so FAA sets them exactly, in any completion order), -1 on the
 *      claimed block's path, then transit -1.
 * A lost claim takes batch 1 back (posted). 1 claimed (s->blk), 0 lost
 * with *seen the word now, or a store error.
 */
static int split_claim(struct search *s, uint64_t i, uint64_t v, uint64_t *seen)
{
	const struct rmp_buddy *b = s->b;
	const struct rmp_buddy_geom *g = &b->g;
	unsigned j = s->j, t = s->t;
	uint64_t target = split_target(b, s->ctx, j, i, t);
	struct rmp_wop ops[SPLIT_OPS + 3];
	unsigned n = 0;
	int rc;

	/* A claimed block of level j splits down to level t, toward a block
	 * of its own range. */
	rmp_assert(j < t && t < g->levels);
	rmp_assert(target >> (t - j) == i);
	/* With records the slot names the block before anything else of
	 * the split lands: a snapshot that saw the transit word or a count
	 * raised with the slot still idle would be clean, and its resolver
	 * would end the move and take the counts off while this split goes
	 * on (test_buddy: a_clean_snapshot_shows_nothing_of_a_live_operation). */
	n += rec_name_ops(s->tl->rec, t, target, &ops[n]);
	rmp_wop_faa(&ops[n], g->transit_word, TRANSIT_BEGIN);
	ops[n].after = n > 0;
	n++;
	for (unsigned lv = j + 1; lv <= t; lv++) {
		uint64_t half = (target >> (t - lv)) ^ 1;
		n += count_up_ops(b, s->ctx, lv, half / BLOCKS_PER_WORD, &ops[n]);
	}
	unsigned claim = n++;
	rmp_wop_cas(&ops[claim], blk_word(g, j, i), v, with_state(v, i, ST_NONE));
	ops[claim].after = 1;
	rmp_assert(n <= SPLIT_OPS + 3);
	if ((rc = st_exec(b, s->tl, ops, n)) != 0)
		return rc;
	*seen = ops[claim].old;
	if (*seen != v) {
		/* Lost: the halves never became FREE; the counts come down
		 * again and the move is over. */
		for (unsigned lv = j + 1; lv <= t && rc == 0; lv++)
			rc = count_down(b, s->ctx, s->tl, lv, ((target >> (t - lv)) ^ 1) / BLOCKS_PER_WORD, 1);
		int rc2 = transit_end(b, s->tl);
		return rc < 0 ? rc : rc2;
	}
	n = 0;
	for (unsigned lv = j + 1; lv <= t; lv++) {
		uint64_t c = target >> (t - lv); /* ours at level lv; c ^ 1 is set free */
		uint64_t add = (uint64_t)ST_FREE << blk_shift(c ^ 1);
		if (lv == t)
			add += (uint64_t)ST_ALLOC << blk_shift(c);
		rmp_wop_faa(&ops[n++], blk_word(g, lv, c), add);
	}
	n += count_down_ops(b, s->ctx, j, i / BLOCKS_PER_WORD, 1, &ops[n]);
	unsigned tagop = n;
	if (s->tl->rec) /* the block is ours: its tag (settled below) */
		rmp_wop_cas(&ops[n++], tag_idx(g, t, target), 0, s->tl->rec->tag | RMP_BUDDY_TAG_PENDING);
	rmp_wop_faa(&ops[n], g->transit_word, TRANSIT_END);
	ops[n++].after = 1;
	if ((rc = st_exec(b, s->tl, ops, n)) != 0)
		return rc;
	if (s->tl->rec && (rc = rec_tag_settle(s->tl, ops[tagop].idx, ops[tagop].old, true)) != 0)
		return rc;
	for (unsigned lv = j + 1; lv <= t; lv++)
		cursor_set(s->ctx, lv, (target >> (t - lv)) ^ 1, s->follow);
	s->blk = target;
	return 1;
}

/*
 * CAS FREE block i of level s->j (in word wi, its value v) to ALLOC: 1
 * claimed, 0 lost with *seen the word now, or a store error. With
 * records, one batch: the slot names the block, the claim, the tag.
 */
static int claim_cas(struct search *s, uint64_t wi, uint64_t v, uint64_t i, uint64_t *seen)
{
	const struct rmp_buddy_geom *g = &s->b->g;
	struct rec *r = s->tl->rec;
	uint64_t widx = g->level_word[s->j] + wi, want = with_state(v, i, ST_ALLOC);

	if (!r)
		return st_cas(s->b, s->tl, widx, v, want, seen);
	struct rmp_wop ops[4];
	unsigned n = rec_name_ops(r, s->j, i, ops), claim = n;
	rmp_wop_cas(&ops[n], widx, v, want);
	ops[n++].after = 1;
	rmp_wop_cas(&ops[n], tag_idx(g, s->j, i), 0, r->tag | RMP_BUDDY_TAG_PENDING);
	ops[n++].after = 1;
	int rc = st_exec(s->b, s->tl, ops, n);
	if (rc)
		return rc;
	*seen = ops[claim].old;
	bool won = *seen == v;
	if ((rc = rec_tag_settle(s->tl, ops[n - 1].idx, ops[n - 1].old, won)) != 0)
		return rc;
	return won;
}

/*
 * Claim a FREE block among the bits of word wi of level s->j (its value v)
 * that mask allows, from the cursor's block on: ALLOC when j is the level
 * asked for, else split. A lost CAS recomputes from the word it returned.
 * 1 claimed, 0 nothing (left), or a store error.
 */
static int claim_in_word(struct search *s, uint64_t wi, uint64_t v, uint64_t mask)
{
	unsigned j = s->j;
	uint64_t cur = atomic_load_explicit(&s->ctx->cursor[j], memory_order_relaxed);
	unsigned pref = cur / BLOCKS_PER_WORD == wi ? blk_shift(cur) : 0;

	for (;;) {
		uint64_t fb = free_bits(v) & mask;
		if (!fb)
			return 0;
		uint64_t hi = fb & (~0ull << pref);
		uint64_t i = wi * BLOCKS_PER_WORD + (unsigned)__builtin_ctzll(hi ? hi : fb) / 2;
		uint64_t seen = 0;
		int rc;
		if (j < s->t)
			rc = split_claim(s, i, v, &seen);
		else {
			rc = claim_cas(s, wi, v, i, &seen);
			if (rc == 1) {
				rc = count_down(s->b, s->ctx, s->tl, j, wi, 1);
				if (rc)
					return rc;
				cursor_set(s->ctx, j, i, s->follow);
				s->blk = i;
				return 1;
			}
		}
		if (rc)
			return rc;
		v = seen;
	}
}

/*
 * Local memory: claim a FREE block of level s->j that overlaps the address
 * range of the bitmap line holding this ctx's cursor at level t (for a
 * homed ctx its home line, until that had nothing and the cursor followed
 * the search). A few words at most, read as one load. 1, 0, or a store
 * error.
 */
static int claim_near(struct search *s)
{
	const struct rmp_buddy_geom *g = &s->b->g;
	struct rmp_buddy_ctx *ctx = s->ctx;
	unsigned t = s->t, lv = s->j;
	uint64_t cur = atomic_load_explicit(&ctx->cursor[t], memory_order_relaxed) & ((1ull << t) - 1);
	uint64_t lo = cur / LINE_BLOCKS * LINE_BLOCKS, hi = lo + LINE_BLOCKS; /* level-t blocks [lo, hi) */
	uint64_t buf[LOCAL_SPAN_WORDS];

	if (hi > (1ull << t))
		hi = 1ull << t;
	lo >>= t - lv;
	hi = ((hi - 1) >> (t - lv)) + 1; /* level-lv blocks [lo, hi) */
	uint64_t w0 = lo / BLOCKS_PER_WORD, nw = (hi - 1) / BLOCKS_PER_WORD - w0 + 1;
	rmp_assert(nw <= LOCAL_SPAN_WORDS);
	int rc = st_load(s->b, s->tl, g->level_word[lv] + w0, (uint32_t)nw, buf);
	if (rc)
		return rc;
	for (uint64_t k = 0; k < nw; k++) {
		uint64_t first = (w0 + k) * BLOCKS_PER_WORD, mask = ~0ull;
		if (lo > first)
			mask &= ~0ull << blk_shift(lo);
		if (hi < first + BLOCKS_PER_WORD)
			mask &= ~(~0ull << blk_shift(hi));
		if (!(free_bits(buf[k]) & mask))
			continue;
		rc = claim_in_word(s, w0 + k, buf[k], mask);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Depth-first through level s->j's summary from node n of tier k (k =
 * tiers + 1: the root, n = 0): read its children in one load - counts of
 * tier k - 1, or bitmap words when k = 1 - and go into those with a
 * count above this ctx's own credit there, the one toward the cursor
 * first. A child that turns out empty (others' over-report) costs one
 * read; the budget bounds them. 1 claimed, 0 nothing, or a store error.
 */
static int dfs(struct search *s, unsigned k, uint64_t n)
{
	const struct rmp_buddy_geom *g = &s->b->g;
	unsigned j = s->j, ck = k - 1; /* the children's tier; 0: bitmap words */
	uint64_t nchild = tier_len(j, ck), first, cnt;
	uint64_t buf[SUM_FAN];

	if (k == g->tiers[j] + 1) {
		first = 0;
		cnt = nchild; /* the top tier: at most 64 words */
	} else {
		first = n << SUM_SHIFT;
		cnt = nchild - first < SUM_FAN ? nchild - first : SUM_FAN;
	}
	rmp_assert(cnt >= 1 && cnt <= SUM_FAN);
	if (s->budget == 0) {
		s->cut = true;
		return 0;
	}
	s->budget--;
	uint64_t base = ck ? g->tier_word[j][ck - 1] : g->level_word[j];
	int rc = st_load(s->b, s->tl, base + first, (uint32_t)cnt, buf);
	if (rc)
		return rc;
	uint64_t pref = (atomic_load_explicit(&s->ctx->cursor[j], memory_order_relaxed) / BLOCKS_PER_WORD) >>
			(SUM_SHIFT * ck);
	uint64_t start = pref >= first && pref < first + cnt ? pref - first : 0;
	for (uint64_t q = 0; q < cnt; q++) {
		uint64_t c = (start + q) % cnt, idx = first + c;
		if (ck == 0) {
			if (free_bits(buf[c]))
				rc = claim_in_word(s, idx, buf[c], ~0ull);
		} else if ((int64_t)buf[c] - credit_on(s->ctx, g, j, ck, idx) > 0) {
			rc = dfs(s, ck, idx);
		}
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Remote: the first look, one round trip: a CAS on a FREE block of the
 * word at the cursor as this ctx last saw it (when it remembers one), with
 * the chunk of level t from that word and the roots of levels 0..t (for
 * what follows a miss). In the steady state the word has not changed and
 * the CAS is the allocation. Else a CAS on a FREE block of what was read.
 * 1, 0, or a store error.
 */
static int first_batch(struct search *s, uint64_t *counts)
{
	const struct rmp_buddy_geom *g = &s->b->g;
	unsigned t = s->t;
	uint64_t nw = level_words(t), buf[MAX_CHUNK];
	uint64_t chunk = s->b->store->chunk_words;
	uint64_t cur = atomic_load_explicit(&s->ctx->cursor[t], memory_order_relaxed) & ((1ull << t) - 1);
	uint64_t w0 = cur / BLOCKS_PER_WORD, guess = 0, i = 0;
	struct rmp_wop ops[6];
	unsigned n = 0, claim = 0, tagop = 0;
	int rc;

	if (chunk == 0 || chunk > MAX_CHUNK)
		chunk = MAX_CHUNK;
	if (chunk > nw - w0)
		chunk = nw - w0;
	s->j = t;
	bool spec = wc_get(s->ctx, g->level_word[t] + w0, &guess) && free_bits(guess);
	if (spec) {
		uint64_t fb = free_bits(guess), hi = fb & (~0ull << blk_shift(cur));
		i = w0 * BLOCKS_PER_WORD + (unsigned)__builtin_ctzll(hi ? hi : fb) / 2;
		/* With records: the slot names the block first, its tag
		 * follows the claim (rec_tag_settle corrects either). */
		n += rec_name_ops(s->tl->rec, t, i, &ops[n]);
		claim = n;
		rmp_wop_cas(&ops[n], g->level_word[t] + w0, guess, with_state(guess, i, ST_ALLOC));
		ops[n++].after = claim > 0;
		if (s->tl->rec) {
			tagop = n;
			rmp_wop_cas(&ops[n], tag_idx(g, t, i), 0, s->tl->rec->tag | RMP_BUDDY_TAG_PENDING);
			ops[n++].after = 1;
		}
	}
	rmp_wop_load(&ops[n++], g->level_word[t] + w0, (uint32_t)chunk, buf);
	rmp_wop_load(&ops[n++], g->count_word, t + 1, counts);
	if ((rc = st_exec(s->b, s->tl, ops, n)) != 0)
		return rc;
	if (spec) {
		bool won = ops[claim].old == guess;
		if (s->tl->rec && (rc = rec_tag_settle(s->tl, ops[tagop].idx, ops[tagop].old, won)) != 0)
			return rc;
		if (won) {
			if ((rc = count_down(s->b, s->ctx, s->tl, t, w0, 1)) != 0)
				return rc;
			cursor_set(s->ctx, t, i, false);
			s->blk = i;
			return 1;
		}
		buf[0] = ops[claim].old; /* the word itself, newer than the READ beside it */
	}
	for (uint64_t k = 0; k < chunk; k++) {
		if (!free_bits(buf[k]))
			continue;
		rc = claim_in_word(s, w0 + k, buf[k], ~0ull);
		if (rc)
			return rc;
	}
	return 0;
}

/* Remote: before a search of level s->j reads anything, the word at its
 * cursor as this ctx last saw it (after a split, the half it set FREE
 * there): a CAS on a FREE block of it, which corrects a wrong guess. */
static int claim_cached(struct search *s)
{
	const struct rmp_buddy_geom *g = &s->b->g;
	unsigned j = s->j;
	uint64_t wi = (atomic_load_explicit(&s->ctx->cursor[j], memory_order_relaxed) & ((1ull << j) - 1)) /
		      BLOCKS_PER_WORD, v;

	if (s->b->store->direct || !wc_get(s->ctx, g->level_word[j] + wi, &v) || !free_bits(v))
		return 0;
	return claim_in_word(s, wi, v, ~0ull);
}

/* The roots of levels 0..t; authoritative (FAA 0: no old value) for an
 * ENOMEM proof on a store whose loads may be stale. */
static int read_roots(const struct rmp_buddy *b, struct tally *tl, unsigned t, bool proof, uint64_t *counts)
{
	if (!proof || b->store->direct)
		return st_load(b, tl, b->g.count_word, t + 1, counts);
	struct rmp_wop ops[RMP_BUDDY_MAX_LEVELS + 1];
	for (unsigned j = 0; j <= t; j++)
		rmp_wop_faa(&ops[j], b->g.count_word + j, 0);
	int rc = st_exec(b, tl, ops, t + 1);
	for (unsigned j = 0; j <= t && rc == 0; j++)
		counts[j] = ops[j].old;
	return rc;
}

/*
 * One search for a block of level t: on the first, the cheap looks (near
 * home on local memory, the chunk at the cursor remotely); then the
 * summary of level t and of every larger order, nearest first (halve as
 * little as possible). 1 with *blk, 0 when nothing was found (*complete:
 * every count that said "free" was followed to the end), or a store error.
 */
static int search(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl, unsigned t,
		  bool first, bool proof, uint64_t *blk, bool *complete)
{
	const struct rmp_buddy_geom *g = &b->g;
	uint64_t counts[RMP_BUDDY_MAX_LEVELS + 1];
	struct search s = { .b = b, .ctx = ctx, .tl = tl, .t = t, .budget = SEARCH_BUDGET };
	bool have_counts = false;
	int rc = 0;

	if (first && b->store->direct) {
		/* Near home at every level first, so that a thread splits a
		 * block there rather than take one in another thread's lines. */
		for (unsigned lv = t + 1; lv-- > 0 && rc == 0;) {
			s.j = lv;
			rc = claim_near(&s);
		}
		s.follow = ctx->homed;
	} else if (first) {
		rc = first_batch(&s, counts);
		have_counts = true;
	}
	if (rc == 0 && !have_counts)
		rc = read_roots(b, tl, t, proof, counts);
	for (unsigned j = t + 1; rc == 0 && j-- > 0;) {
		if ((int64_t)counts[j] - credit_on(ctx, g, j, g->tiers[j] + 1, 0) <= 0)
			continue;
		s.j = j;
		if (j < t || !first)
			rc = claim_cached(&s);
		if (rc == 0)
			rc = dfs(&s, g->tiers[j] + 1, 0);
	}
	if (rc == 1)
		*blk = s.blk;
	*complete = !s.cut;
	return rc;
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
	cursor_set(ctx, t, i, false);
	*blk = i;
	return 1;
}

/*
 * Searches until one finds a block, or proves there is none: a complete
 * search that found nothing, between two reads of the transit word that
 * show no move in progress and none begun (buddy.c's opening comment).
 * The first search has no read before it, so ENOMEM takes two. After
 * ALLOC_RETRIES searches that neither found nor proved: -EAGAIN.
 */
static __attribute__((noinline)) int alloc_slow(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx,
						struct tally tl, unsigned order, uint64_t *offset)
{
	unsigned t = b->g.max_order - order;
	uint64_t blk = 0, before = 0;
	bool have_before = false;
	struct rec rec = { .b = b, .ctx = ctx, .kind = RMP_BUDDY_SLOT_ALLOC, .tag = ctx->rec_tag };
	int rc;

	if (rec_wanted(b, ctx))
		tl.rec = &rec;
	for (unsigned attempt = 0;; attempt++) {
		bool complete = false;
		rc = search(b, ctx, &tl, t, attempt == 0, have_before, &blk, &complete);
		if (rc != 0)
			break;
		uint64_t after;
		if ((rc = transit_read(b, &tl, &after)) != 0)
			break;
		if (have_before && complete && after == before && TRANSIT_MOVES(after) == 0) {
			rc = -ENOMEM;
			break;
		}
		if (attempt == ALLOC_RETRIES) {
			rc = -EAGAIN;
			break;
		}
		before = after;
		have_before = true;
	}
	/* The slot goes idle unless the store failed: then the operation
	 * may be half done and its client gives the ctx up (the resolver
	 * finishes it). */
	if (rc >= 0 || rc == -ENOMEM || rc == -EAGAIN) {
		int rc2 = rec_end(&tl);
		if (rc >= 0 && rc2)
			rc = rc2;
	}
	tl_add(&tl, C_CALLS, 1);
	if (rc < 0)
		return rc;
	rmp_assert(blk >> t == 0);
	*offset = blk << order;
	return 0;
}

int rmp_buddy_alloc(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, unsigned order,
		    uint64_t *offset)
{
	struct tally tl = { ctx->ctr[OP_ALLOC], ctx, NULL };
	_Atomic uint64_t *direct = b->store->direct;
	uint64_t blk;

	if (order < b->g.min_order || order > b->g.max_order)
		return -EINVAL;
	unsigned t = b->g.max_order - order;
	if (direct && alloc_direct(b, ctx, &tl, direct, t, &blk)) {
		int rc = count_down(b, ctx, &tl, t, blk / BLOCKS_PER_WORD, 1);
		if (rc)
			return rc;
		rmp_assert(blk >> t == 0);
		*offset = blk << order;
		return 0;
	}
	return alloc_slow(b, ctx, tl, order, offset);
}

/* --- free -------------------------------------------------------------- */

/* Where a free stands: the block (level t, index i) it is about to mark
 * FREE or merge, and what it has done ahead. */
struct freeing {
	unsigned t;
	uint64_t i;
	unsigned expect; /* ALLOC: the block freed; NONE: a parent merged into */
	bool counted;    /* the block's path was raised (it is to become FREE at t) */
	bool moving;     /* transit +1 done: memory in passing until the last CAS */
	/* With records: the freed block's tag word, what it should hold
	 * (the owner's tag, or a lock of ours), and where it stands. */
	uint64_t tidx, texp;
	unsigned ts;
};

enum {
	TAG_DONE = 0, /* no records, or the block left ALLOC: nothing more to do */
	TAG_HELD,     /* the tag word holds texp and the block is ALLOC: clear it with the first step */
	TAG_CLEARED,  /* cleared, but the step lost: the block is still ALLOC, tag it again before a retry */
};

/* The free stops without freeing (not a live block, corrupt metadata, a
 * store error): take back what it did ahead. Returns rc. */
static int free_abort(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl,
		      const struct freeing *f, int rc)
{
	if (f->counted)
		count_down(b, ctx, tl, f->t, f->i / BLOCKS_PER_WORD, 1);
	if (f->moving)
		transit_end(b, tl);
	if (f->ts == TAG_CLEARED) {
		/* The block is still somebody's (maybe ours at another order:
		 * the tag word is the same): its tag comes back. */
		uint64_t seen;
		rec_tag_cas(tl, f->tidx, 0, f->texp, &seen);
	}
	if (rc == -ESTALE || (rc == -EINVAL && !(tl->rec && tl->rec->hold)))
		rec_end(tl); /* nothing half done: a refused free, a hole gone */
	return rc;
}

/* After a step batch that carried the tag's clear (CAS texp -> 0, which
 * found old) behind the step's CAS (won or lost). 0 or a store error. */
static int free_tag_seen(struct tally *tl, struct freeing *f, uint64_t old, bool won)
{
	uint64_t seen;

	if (old == f->texp)
		f->ts = won ? TAG_DONE : TAG_CLEARED;
	else if (old == 0)
		f->ts = TAG_DONE; /* an untagged block: nothing to clear */
	else if (!won)
		f->texp = old; /* not the tag expected: clear what is there */
	else {
		/* Freed, and its tag was not the one said: clear it now. */
		f->ts = TAG_DONE;
		if (!(old & RMP_BUDDY_TAG_LOCK)) {
			int rc = rec_tag_cas(tl, f->tidx, old, 0, &seen);
			return rc < 0 ? rc : 0;
		}
	}
	return 0;
}

/* Before a step CAS on the freed block (still ALLOC) after a lost one
 * that cleared its tag: tag it again, one round trip. 1 ready; 0
 * somebody else holds the tag (a foreign free's lock); or a store error.
 * An unlocked tag found there instead is a losing claimant's: its claim
 * of a block starting here lost (ours is ALLOC) while its tag CAS found
 * the word cleared and won, and it takes the tag back on its next round
 * trip (rec_tag_settle). Taking the word over from it is safe (its
 * take-back then finds ours and changes nothing); failing the free for
 * it made a live block look freed (-EINVAL under contention: rdma_pool_data
 * with records on). */
static int free_retag(struct tally *tl, struct freeing *f)
{
	uint64_t seen, cur = 0;

	for (unsigned k = 0; k < 8; k++) {
		int rc = rec_tag_cas(tl, f->tidx, cur, f->texp, &seen);
		if (rc == 1)
			f->ts = TAG_HELD;
		if (rc != 0)
			return rc;
		if (seen & RMP_BUDDY_TAG_LOCK)
			break;
		cur = seen;
	}
	f->ts = TAG_DONE; /* not ours to put back */
	return 0;
}

/*
 * One step of a free: block f->i of level f->t, its word as last seen v.
 * One batch whose CAS (the last operation) is marked `after` the atomics
 * it needs landed:
 *   merge (buddy FREE): [transit +1 the first time], CAS the pair to NONE;
 *     after it, -1 on the pair's path for the buddy (and for the block, if
 *     it was counted), and the free goes on at the parent (NONE, ours);
 *   free (buddy not FREE): [+1 on the block's path unless counted], CAS
 *     the block FREE; after it, transit -1 if this free was a move.
 * step_ops() builds the batch (and notes in f what it does ahead); it
 * returns how many operations, *merge which kind of step.
 */
static unsigned step_ops(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct freeing *f, uint64_t v,
			 struct rmp_wop *ops, bool *merge)
{
	const struct rmp_buddy_geom *g = &b->g;
	unsigned n = 0;

	*merge = f->t > 0 && state_of(v, f->i ^ 1) == ST_FREE;
	if (*merge && !f->moving)
		rmp_wop_faa(&ops[n++], g->transit_word, TRANSIT_BEGIN);
	if (!*merge && !f->counted)
		n += count_up_ops(b, ctx, f->t, f->i / BLOCKS_PER_WORD, &ops[n]);
	f->moving |= *merge;
	f->counted |= !*merge;
	uint64_t want = *merge ? v & ~(PAIR_MASK << blk_shift(f->i & ~1ull)) : with_state(v, f->i, ST_FREE);
	rmp_wop_cas(&ops[n], blk_word(g, f->t, f->i), v, want);
	ops[n].after = 1;
	return n + 1;
}

/* What follows the step's CAS, which found old where v was expected.
 * 1: the free is done; 0: go on (f moved up to the parent after a merge,
 * or the CAS lost and old is the word now); negative: an error (what was
 * done ahead is taken back). */
static int step_done(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl, struct freeing *f,
		     uint64_t v, uint64_t old, bool merge)
{
	int rc;

	if (old != v)
		return 0;
	if (!merge) {
		cursor_set(ctx, f->t, f->i, false);
		if (f->moving && (rc = transit_end(b, tl)) != 0)
			return rc;
		return 1;
	}
	/* Buddy and block are NONE now: the parent is ours to free. */
	rc = count_down(b, ctx, tl, f->t, f->i / BLOCKS_PER_WORD, f->counted ? 2 : 1);
	f->t--;
	f->i >>= 1;
	f->expect = ST_NONE;
	f->counted = false;
	return rc ? free_abort(b, ctx, tl, f, rc) : 0;
}

/*
 * Free block i of level t: steps from the block up while merges go on.
 * Remotely the first round trip reads the words of the block and of all
 * its ancestors (so that each merge step is one round trip: a CAS on a
 * word that changed fails and returns it), and carries the first step
 * already when this ctx remembers the block's word: one round trip in the
 * steady state. seen_word: the block's word as last seen, or NULL.
 */
/* do_free's texp for a hole (reclaim): block i of level t is NONE and
 * nobody's (a dead split or merge left it); it becomes FREE, or merges
 * with a FREE buddy, as the parent of a merge would. No tag is touched. */
static const uint64_t TEXP_HOLE = ~0ull;

static int do_free(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl,
		   unsigned t, uint64_t i, const uint64_t *seen_word, uint64_t texp)
{
	const struct rmp_buddy_geom *g = &b->g;
	bool hole = texp == TEXP_HOLE;
	struct freeing f = { .t = t, .i = i, .expect = hole ? ST_NONE : ST_ALLOC };
	uint64_t chain[RMP_BUDDY_MAX_LEVELS + 1]; /* chain[k]: the word of the ancestor at level k */
	bool have_chain = false, confirmed = false, merge = false;
	uint64_t v = 0, seen = 0;
	struct rmp_wop ops[RMP_BUDDY_MAX_LEVELS + PATH_OPS + 5];
	unsigned n = 0, cas = 0, tagop = 0;
	struct rec *r = tl->rec;
	int rc;

	rmp_assert(t < g->levels && i >> t == 0);
	if (r && !hole) {
		f.tidx = tag_idx(g, t, i);
		f.texp = texp ? texp : r->tag;
		f.ts = TAG_HELD;
	}
	if (seen_word)
		v = *seen_word;
	else if (b->store->direct) {
		if ((rc = st_load(b, tl, blk_word(g, t, i), 1, &v)) != 0)
			return rc;
	} else {
		bool spec = !hole && wc_get(ctx, blk_word(g, t, i), &v) && state_of(v, i) == ST_ALLOC;
		if (spec) {
			unsigned named = n = rec_name_ops(r, t, i, ops);
			cas = (n += step_ops(b, ctx, &f, v, &ops[n], &merge)) - 1;
			ops[named].after |= named > 0; /* the slot first (split_claim) */
			if (r) {
				tagop = n;
				rmp_wop_cas(&ops[n], f.tidx, f.texp, 0);
				ops[n++].after = 1;
			}
		}
		for (unsigned k = 0; k <= t; k++)
			rmp_wop_load(&ops[n++], blk_word(g, k, i >> (t - k)), 1, &chain[k]);
		if ((rc = st_exec(b, tl, ops, n)) != 0)
			return free_abort(b, ctx, tl, &f, rc);
		have_chain = true;
		if (spec && r && (rc = free_tag_seen(tl, &f, ops[tagop].old, ops[cas].old == v)) != 0)
			return free_abort(b, ctx, tl, &f, rc);
		if (!spec)
			v = chain[t];
		else if ((rc = step_done(b, ctx, tl, &f, v, ops[cas].old, merge)) != 0)
			return rc < 0 ? rc : rec_end(tl);
		else if (f.t == t) {
			v = ops[cas].old; /* lost: the word itself, now */
			confirmed = true;
		} else
			v = chain[f.t];
	}
	for (;;) {
		if (state_of(v, f.i) != f.expect) {
			if (!confirmed) {
				/* A load is a hint: ask the word itself with a CAS
				 * that changes nothing, then decide. */
				rc = st_cas(b, tl, blk_word(g, f.t, f.i), v, v, &seen);
				if (rc < 0)
					return free_abort(b, ctx, tl, &f, rc);
				confirmed = true;
				v = seen;
				continue;
			}
			/* ALLOC missing: not a live block of this order. NONE
			 * missing above a merge: the metadata is corrupt. */
			return free_abort(b, ctx, tl, &f, f.expect == ST_ALLOC ? -EINVAL
							  : hole && f.t == t ? -ESTALE : -EUCLEAN);
		}
		unsigned level = f.t;
		bool first = f.expect == ST_ALLOC; /* the block itself: its tag goes with this CAS */
		if (first && f.ts == TAG_CLEARED && (rc = free_retag(tl, &f)) != 1)
			return free_abort(b, ctx, tl, &f, rc < 0 ? rc : -EINVAL);
		unsigned named = n = rec_name_ops(r, t, i, ops);
		n += step_ops(b, ctx, &f, v, &ops[n], &merge);
		ops[named].after |= named > 0; /* the slot first (split_claim) */
		cas = n - 1;
		if (first && f.ts == TAG_HELD) {
			tagop = n;
			rmp_wop_cas(&ops[n], f.tidx, f.texp, 0);
			ops[n++].after = 1;
		}
		if ((rc = st_exec(b, tl, ops, n)) != 0)
			return free_abort(b, ctx, tl, &f, rc);
		if (first && f.ts == TAG_HELD && (rc = free_tag_seen(tl, &f, ops[tagop].old, ops[cas].old == v)) != 0)
			return free_abort(b, ctx, tl, &f, rc);
		if ((rc = step_done(b, ctx, tl, &f, v, ops[cas].old, merge)) != 0)
			return rc < 0 ? rc : rec_end(tl);
		if (f.t == level) {
			v = ops[cas].old; /* lost: the word now, from the CAS */
			confirmed = true;
			continue;
		}
		confirmed = false;
		if (have_chain)
			v = chain[f.t]; /* read with the block: a hint */
		else if ((rc = st_load(b, tl, blk_word(g, f.t, f.i), 1, &v)) != 0)
			return free_abort(b, ctx, tl, &f, rc);
	}
}

int rmp_buddy_free(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
		   unsigned order)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE], ctx, NULL };
	struct rec rec = { .b = b, .ctx = ctx, .kind = RMP_BUDDY_SLOT_FREE, .tag = ctx->rec_tag };

	if (order < g->min_order || order > g->max_order || (offset >> g->max_order) != 0 ||
	    (offset & ((1ull << order) - 1)) != 0)
		return -EINVAL;
	if (rec_wanted(b, ctx))
		tl.rec = &rec;
	int rc = do_free(b, ctx, &tl, g->max_order - order, offset >> order, NULL, 0);
	tl_add(&tl, C_CALLS, 1);
	return rc;
}

/* The tag lock of a foreign free: one round trip reads the tag (with the
 * slot naming the block) and the block's word (a CAS that changes
 * nothing: not a stale load), then CAS tag -> LOCK | own until it holds
 * (another lock there: somebody else frees the block). A block that is
 * not ALLOC at that order is refused before any lock: the tag word is
 * shared by every block starting there, and a lock left on another
 * order's live block by a consumer killed before it put the tag back
 * would make that block garbage to the resolver (only a race - its owner
 * freeing it and allocating another order there within the round trip -
 * can still lock one). 0 with *was the tag it replaced, -EINVAL, or a
 * store error. */
static int foreign_lock(const struct rmp_buddy *b, struct tally *tl, unsigned t, uint64_t i, uint64_t *was)
{
	struct rec *r = tl->rec;
	uint64_t tidx = tag_idx(&b->g, t, i), cur = 0, seen = 0;
	struct rmp_wop ops[4];
	unsigned n = rec_name_ops(r, t, i, ops);
	rmp_wop_load(&ops[n++], tidx, 1, &cur);
	unsigned word = n;
	rmp_wop_cas(&ops[n++], blk_word(&b->g, t, i), 0, 0);
	int rc = st_exec(b, tl, ops, n);
	if (rc == 0 && state_of(ops[word].old, i) != ST_ALLOC)
		return -EINVAL;
	for (unsigned k = 0; rc == 0 && k < 8; k++) {
		if (cur & RMP_BUDDY_TAG_LOCK)
			return -EINVAL;
		rc = st_cas(b, tl, tidx, cur, RMP_BUDDY_TAG_LOCK | r->tag, &seen);
		if (rc == 1) {
			*was = cur;
			return 0;
		}
		cur = seen;
	}
	return rc < 0 ? rc : -EAGAIN;
}

int rmp_buddy_free_foreign(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
			   unsigned order)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE], ctx, NULL };
	struct rec rec = { .b = b, .ctx = ctx, .kind = RMP_BUDDY_SLOT_FREE, .tag = ctx->rec_tag };
	uint64_t was = 0, seen;

	if (!rec_wanted(b, ctx))
		return rmp_buddy_free(b, ctx, offset, order);
	if (order < g->min_order || order > g->max_order || (offset >> g->max_order) != 0 ||
	    (offset & ((1ull << order) - 1)) != 0)
		return -EINVAL;
	tl.rec = &rec;
	unsigned t = g->max_order - order;
	uint64_t i = offset >> order;
	int rc = foreign_lock(b, &tl, t, i, &was);
	if (rc == 0) {
		rec.hold = true;
		rc = do_free(b, ctx, &tl, t, i, NULL, RMP_BUDDY_TAG_LOCK | rec.tag);
		if (rc == -EINVAL) { /* not freed: the tag it had comes back, then the slot goes idle */
			rec_tag_cas(&tl, tag_idx(g, t, i), RMP_BUDDY_TAG_LOCK | rec.tag, was, &seen);
			rec_end(&tl);
		}
	} else if (rc == -EINVAL || rc == -EAGAIN)
		rec_end(&tl);
	tl_add(&tl, C_CALLS, 1);
	return rc;
}

int rmp_buddy_free_settle(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
			  unsigned order)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE], ctx, NULL };
	struct rec rec = { .b = b, .ctx = ctx, .kind = RMP_BUDDY_SLOT_FREE, .tag = ctx->rec_tag };
	uint64_t seen;

	if (!rec_wanted(b, ctx) || order < g->min_order || order > g->max_order || (offset >> g->max_order) != 0 ||
	    (offset & ((1ull << order) - 1)) != 0)
		return -EINVAL;
	tl.rec = &rec;
	unsigned t = g->max_order - order;
	uint64_t i = offset >> order, tidx = tag_idx(g, t, i), lock = RMP_BUDDY_TAG_LOCK | rec.tag;
	/* Only this ctx writes its own tag, and it writes nothing while it
	 * settles: own there now means the cut free never cleared it, and a
	 * landed free's stale tag was cleared by the resolver before it reset
	 * the slot (or never written by a claimant, which makes it its own).
	 * The lock rides behind the slot naming the block. */
	struct rmp_wop ops[3];
	unsigned n = rec_name_ops(&rec, t, i, ops);
	rmp_wop_cas(&ops[n], tidx, rec.tag, lock);
	ops[n++].after = 1;
	int rc = st_exec(b, &tl, ops, n);
	if (rc)
		return rc;
	if (ops[n - 1].old != rec.tag) {
		rc = rec_end(&tl);
		tl_add(&tl, C_CALLS, 1);
		return rc < 0 ? rc : 0;
	}
	rec.hold = true;
	rc = do_free(b, ctx, &tl, t, i, NULL, lock);
	rec.hold = false;
	if (rc == -EINVAL) {
		/* Not ALLOC at that order after all: the tag goes back. */
		rc = rec_tag_cas(&tl, tidx, lock, rec.tag, &seen);
		if (rc >= 0)
			rc = rec_end(&tl);
		tl_add(&tl, C_CALLS, 1);
		return rc < 0 ? rc : 0;
	}
	tl_add(&tl, C_CALLS, 1);
	return rc < 0 ? rc : 1;
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
 * its buddy is not free, raise its path (or take a credit) and CAS it to
 * FREE. The order this ctx freed last is tried first: a block ALLOC at
 * (order, offset) is the live block that starts at offset, since nothing
 * above or below an ALLOC block is set. Else top-down as find_live()
 * does. 1: freed; 0: take the general path with *order and *v set when
 * the block was found (a merge is due, or the CAS lost a race), else with
 * *order = 0; negative: a store error.
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
		uint64_t wi = i / BLOCKS_PER_WORD;
		int64_t d = credit_freeing(ctx, t, wi >> SUM_SHIFT);
		if (d) {
			struct rmp_wop ops[PATH_OPS];
			int rc = st_post(b, tl, ops, path_ops(g, t, wi, d, ops)); /* direct: applied now */
			if (rc)
				return rc;
		}
		if (!atomic_compare_exchange_strong_explicit(w, v, with_state(x, i, ST_FREE), memory_order_acq_rel,
							     memory_order_acquire)) {
			tl_add(tl, C_RTS, 1);
			tl_add(tl, C_CAS_FAIL, 1);
			/* Not freed: take the count back (over-report until then). */
			int rc = count_down(b, ctx, tl, t, wi, 1);
			if (rc)
				return rc;
			break;
		}
		tl_add(tl, C_FAST, 1); /* the call, 1 CAS, a round trip per load and the CAS */
		tl_add(tl, C_FAST_LOADS, loads);
		cursor_set(ctx, t, i, false);
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
	struct rec rec = { .b = b, .ctx = ctx, .kind = RMP_BUDDY_SLOT_FREE, .tag = ctx->rec_tag };
	int rc;

	if (rec_wanted(b, ctx))
		tl.rec = &rec;
	if (order)
		rc = do_free(b, ctx, &tl, g->max_order - order, offset >> order, &v, 0);
	else {
		rc = find_live(b, &tl, offset, false, &order, &v);
		if (rc == 0)
			rc = do_free(b, ctx, &tl, g->max_order - order, offset >> order, &v, 0);
	}
	if (rc == -EINVAL) {
		/* Loads are hints (stale in the RDMA-like test mode): before
		 * calling a free bad, ask the words themselves. */
		rc = find_live(b, &tl, offset, true, &order, &v);
		if (rc == 0)
			rc = do_free(b, ctx, &tl, g->max_order - order, offset >> order, &v, 0);
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
	struct tally tl = { ctx->ctr[OP_FREE], ctx, NULL };
	_Atomic uint64_t *direct = b->store->direct;
	unsigned order = 0;
	uint64_t v = 0;

	if ((offset >> g->max_order) != 0 || (offset & ((1ull << g->min_order) - 1)) != 0)
		return -EINVAL;
	if (direct) {
		int rc = free_direct(b, ctx, &tl, direct, offset, &order, &v);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			if (order_out)
				*order_out = order;
			return 0;
		}
	}
	return free_at_slow(b, ctx, tl, offset, order, v, order_out);
}

int rmp_buddy_order_of(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
		       bool authoritative, unsigned *order)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE], ctx, NULL };
	uint64_t v;

	if ((offset >> g->max_order) != 0 || (offset & ((1ull << g->min_order) - 1)) != 0)
		return -EINVAL;
	int rc = find_live(b, &tl, offset, authoritative, order, &v);
	return rc;
}

int rmp_buddy_is_live(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset, unsigned order)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE], ctx, NULL };

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

/* --- retirement: a block's range out of service ------------------------ */

/*
 * Retire inside FREE block i of level j (its word as seen: v), which
 * holds block r of level t: claim it and split it down toward r, every
 * half off the way FREE and r RESERVED. The split protocol of
 * split_claim(), with RESERVED where an allocation puts ALLOC:
 *   1. transit +1, +1 on the path of every half, then the claim CAS;
 *   2. the FAAs that make the halves FREE and r RESERVED, -1 on the
 *      claimed block's path, then transit -1.
 * 1 done, 0 lost (*seen: the word now), or a store error.
 */
static int retire_split(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl, unsigned j,
			uint64_t i, uint64_t v, unsigned t, uint64_t r, uint64_t *seen)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct rmp_wop ops[SPLIT_OPS + 1];
	unsigned n = 0;
	int rc;

	rmp_assert(j < t && t < g->levels && r >> (t - j) == i);
	rmp_wop_faa(&ops[n++], g->transit_word, TRANSIT_BEGIN);
	for (unsigned lv = j + 1; lv <= t; lv++)
		n += count_up_ops(b, ctx, lv, ((r >> (t - lv)) ^ 1) / BLOCKS_PER_WORD, &ops[n]);
	unsigned claim = n++;
	rmp_wop_cas(&ops[claim], blk_word(g, j, i), v, with_state(v, i, ST_NONE));
	ops[claim].after = 1;
	if ((rc = st_exec(b, tl, ops, n)) != 0)
		return rc;
	*seen = ops[claim].old;
	if (*seen != v) {
		/* Lost: the halves never became FREE. */
		for (unsigned lv = j + 1; lv <= t && rc == 0; lv++)
			rc = count_down(b, ctx, tl, lv, ((r >> (t - lv)) ^ 1) / BLOCKS_PER_WORD, 1);
		int rc2 = transit_end(b, tl);
		return rc < 0 ? rc : rc2;
	}
	n = 0;
	for (unsigned lv = j + 1; lv <= t; lv++) {
		uint64_t c = r >> (t - lv); /* on the way to r; c ^ 1 is set free */
		uint64_t add = (uint64_t)ST_FREE << blk_shift(c ^ 1);
		if (lv == t)
			add += (uint64_t)ST_RESERVED << blk_shift(c);
		rmp_wop_faa(&ops[n++], blk_word(g, lv, c), add);
	}
	n += count_down_ops(b, ctx, j, i / BLOCKS_PER_WORD, 1, &ops[n]);
	rmp_wop_faa(&ops[n], g->transit_word, TRANSIT_END);
	ops[n++].after = 1;
	rc = st_exec(b, tl, ops, n);
	return rc ? rc : 1;
}

/* A retire's walk below its block: per level, the block's part of the
 * level's bitmap (words [w0, w0 + nw), level-relative), and per word the
 * 2-bit masks of the blocks still to look at and the word's value (a
 * hint, then what a CAS confirmed). */
struct retire {
	const struct rmp_buddy *b;
	struct rmp_buddy_ctx *ctx;
	struct tally *tl;
	unsigned t;           /* the block retired: level t, index i */
	uint64_t i;
	uint64_t bytes;       /* newly RESERVED so far */
	uint64_t cap;         /* words per array below */
	uint64_t *need, *val; /* this level */
	uint64_t *nneed, *nval; /* the next level (nval: hints loaded ahead) */
	uint64_t lfrom, lto;  /* words [lfrom, lto) of val hold loaded hints */
	unsigned lost;        /* rounds of this pass that lost a CAS */
	/* The leaf level (2-bit masks per leaf word): the leaves this pass
	 * looks at, when not all (the last pass found them in passing; every
	 * other leaf was in a set block then, which stands), and those this
	 * pass finds in passing. */
	uint64_t *todo, *ntodo;
	bool all;             /* every leaf: the first pass, or after a race lost */
	bool churned;         /* this pass lost a race: the next looks at all */
};

/* The block's part of level lv: its first word and how many. */
static void retire_span(const struct retire *rt, unsigned lv, uint64_t *w0, uint64_t *nw)
{
	unsigned d = lv - rt->t;
	uint64_t lo = rt->i << d, n = 1ull << d;
	*w0 = lo / BLOCKS_PER_WORD;
	*nw = (lo + n - 1) / BLOCKS_PER_WORD - *w0 + 1;
}

/* Whether block blk of level lv holds a leaf this pass looks at. */
static bool retire_wanted(const struct retire *rt, unsigned lv, uint64_t blk)
{
	const struct rmp_buddy_geom *g = &rt->b->g;
	unsigned s = g->levels - 1 - lv;
	uint64_t lw0, lnw, lo = blk << s, n = 1ull << s;

	if (rt->all)
		return true;
	retire_span(rt, g->levels - 1, &lw0, &lnw);
	for (uint64_t w = lo / BLOCKS_PER_WORD; w <= (lo + n - 1) / BLOCKS_PER_WORD; w++) {
		uint64_t m = rt->todo[w - lw0];
		if (n < BLOCKS_PER_WORD) /* within one word: its leaves only */
			m &= ((1ull << (2 * n)) - 1) << blk_shift(lo);
		if (m)
			return true;
	}
	return false;
}

/*
 * The path from the root to the block, in one round trip of CASes that
 * change nothing, each `after` the one above (so read top-down, and a
 * CAS result is never old); the first set block on it decides. 1: done
 * (the block or a larger one is ALLOC or RESERVED, or was FREE and is
 * RESERVED now); 0: the walk below goes on (the block is split); 2: a
 * race was lost (pass again); or a store error.
 */
static int retire_path(struct retire *rt)
{
	const struct rmp_buddy *b = rt->b;
	const struct rmp_buddy_geom *g = &b->g;
	struct rmp_wop ops[RMP_BUDDY_MAX_LEVELS + 1];
	unsigned t = rt->t;
	uint64_t seen;
	int rc;

	for (unsigned k = 0; k <= t; k++) {
		rmp_wop_cas(&ops[k], blk_word(g, k, rt->i >> (t - k)), 0, 0);
		ops[k].after = k > 0;
	}
	if ((rc = st_exec(b, rt->tl, ops, t + 1)) != 0)
		return rc;
	for (unsigned k = 0; k <= t; k++) {
		uint64_t v = ops[k].old, bi = rt->i >> (t - k);
		unsigned st = state_of(v, bi);
		if (st == ST_NONE)
			continue;
		if (st != ST_FREE)
			return 1; /* ALLOC stays (its free retires it), RESERVED is done */
		if (k < t) {
			rc = retire_split(b, rt->ctx, rt->tl, k, bi, v, t, rt->i, &seen);
			if (rc == 1)
				rt->bytes += 1ull << (g->max_order - t);
			return rc < 0 ? rc : rc == 1 ? 1 : 2;
		}
		/* The block itself is FREE: RESERVED, then its path down. */
		rc = st_cas(b, rt->tl, blk_word(g, t, rt->i), v, v | (uint64_t)ST_RESERVED << blk_shift(rt->i), &seen);
		if (rc != 1)
			return rc < 0 ? rc : 2;
		rt->bytes += 1ull << (g->max_order - t);
		rc = count_down(b, rt->ctx, rt->tl, t, rt->i / BLOCKS_PER_WORD, 1);
		return rc ? rc : 1;
	}
	return t == g->levels - 1 ? 2 : 0; /* a leaf that is NONE: in passing */
}

/* Hints for words [from, to) of level lv's span, loaded in pieces. */
static int retire_load(struct retire *rt, unsigned lv, uint64_t w0, uint64_t from, uint64_t to)
{
	for (uint64_t k = from; k < to; k += RETIRE_LOAD) {
		uint64_t n = to - k < RETIRE_LOAD ? to - k : RETIRE_LOAD;
		int rc = st_load(rt->b, rt->tl, rt->b->g.level_word[lv] + w0 + k, (uint32_t)n, &rt->val[k]);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * One level lv below the block: every word holding a block still to look
 * at (rt->need) gets a CAS from its hint to the hint with those blocks'
 * FREE made RESERVED (a CAS that changes nothing when none is FREE): a
 * success confirms the word and reserves them (their paths come down
 * after it), a failure returns the word and it goes again. The first
 * round trip also loads the next level's hints. The blocks found NONE
 * make the next level's need. 1: nothing to look at below; 0: go on to
 * lv + 1; 2: a block is in passing (a NONE leaf) or the words kept
 * changing (pass again); or a store error.
 */
static int retire_level(struct retire *rt, unsigned lv)
{
	const struct rmp_buddy *b = rt->b;
	const struct rmp_buddy_geom *g = &b->g;
	uint64_t w0, nw, nw0 = 0, nnw = 0, first = 0, last = 0;
	unsigned obytes = g->max_order - lv;
	bool leaf = lv == g->levels - 1, any = false, hole = false;
	int rc;

	retire_span(rt, lv, &w0, &nw);
	for (uint64_t k = 0; k < nw; k++)
		if (rt->need[k]) {
			first = any ? first : k;
			last = k;
			any = true;
		}
	if (!any)
		return 1;
	/* This level's hints: what the level above loaded ahead, the rest now. */
	uint64_t lf = rt->lfrom, lt = rt->lto;
	if (lt <= lf || lf > last || lt <= first)
		lf = lt = last + 1; /* nothing useful loaded */
	if (first < lf && (rc = retire_load(rt, lv, w0, first, lf)) != 0)
		return rc;
	if (lt < last + 1 && (rc = retire_load(rt, lv, w0, lt, last + 1)) != 0)
		return rc;
	rt->lfrom = rt->lto = 0;
	if (!leaf) {
		retire_span(rt, lv + 1, &nw0, &nnw);
		memset(rt->nneed, 0, nnw * sizeof(uint64_t));
	}
	uint64_t next = first; /* the words before it are confirmed */
	for (bool round0 = true; next <= last; round0 = false) {
		struct rmp_wop ops[RETIRE_BATCH + 1];
		uint64_t idx[RETIRE_BATCH];
		unsigned n = 0;
		for (uint64_t k = next; k <= last && n < RETIRE_BATCH; k++) {
			if (!rt->need[k])
				continue;
			uint64_t v = rt->val[k], fb = free_bits(v) & rt->need[k];
			idx[n] = k;
			rmp_wop_cas(&ops[n++], g->level_word[lv] + w0 + k, v, v | fb << 1);
		}
		if (n == 0)
			break;
		unsigned ncas = n;
		if (round0 && !leaf) {
			/* The next level's hints ride along: the halves of the
			 * blocks in words [first, last], as far as one load goes
			 * (after the CASes: nothing `after` follows it). */
			uint64_t cf = 2 * (w0 + first) > nw0 ? 2 * (w0 + first) - nw0 : 0;
			uint64_t ct = 2 * (w0 + last) + 2 - nw0;
			ct = ct > nnw ? nnw : ct;
			ct = ct - cf > RETIRE_LOAD ? cf + RETIRE_LOAD : ct;
			rmp_wop_load(&ops[n++], g->level_word[lv + 1] + nw0 + cf, (uint32_t)(ct - cf), &rt->nval[cf]);
			rt->lfrom = cf;
			rt->lto = ct;
		}
		if ((rc = st_exec(b, rt->tl, ops, n)) != 0)
			return rc;
		bool lost = false;
		next = idx[ncas - 1] + 1;
		for (unsigned q = 0; q < ncas; q++) {
			uint64_t k = idx[q];
			if (ops[q].old != ops[q].arg) {
				rt->val[k] = ops[q].old; /* the word now: again */
				next = lost ? next : k;
				lost = true;
				continue;
			}
			uint64_t v = ops[q].arg, fb = free_bits(v) & rt->need[k];
			unsigned nf = (unsigned)__builtin_popcountll(fb);
			if (nf) {
				rt->bytes += (uint64_t)nf << obytes;
				if ((rc = count_down(b, rt->ctx, rt->tl, lv, w0 + k, nf)) != 0)
					return rc;
			}
			/* NONE blocks still to look at: their halves a level down
			 * (those holding a leaf this pass looks at). */
			uint64_t none = ~v & ~(v >> 1) & LOW_BITS & rt->need[k];
			rt->need[k] = 0;
			if (none && leaf) {
				hole = true; /* leaves in passing: a split or merge half done */
				rt->ntodo[k] |= none | none << 1;
			}
			for (; none && !leaf; none &= none - 1) {
				uint64_t blk = (w0 + k) * BLOCKS_PER_WORD + (unsigned)__builtin_ctzll(none) / 2;
				uint64_t cw = 2 * blk / BLOCKS_PER_WORD - nw0;
				rmp_assert(cw < nnw);
				for (uint64_t c = 2 * blk; c < 2 * blk + 2; c++)
					if (retire_wanted(rt, lv + 1, c))
						rt->nneed[cw] |= STATE_MASK << blk_shift(c);
			}
		}
		if (lost && ++rt->lost >= RETIRE_PASSES) {
			rt->churned = true;
			return 2;
		}
	}
	return hole ? 2 : 0;
}

/* One pass: the path, then the levels below the block, top-down (each
 * level's CASes after the level above's: buddy.c's opening comment says
 * why that finds everything in passing). 1 done, 2 again, or an error. */
static int retire_pass(struct retire *rt)
{
	const struct rmp_buddy_geom *g = &rt->b->g;
	int rc = retire_path(rt);

	rt->churned |= rc == 2;
	if (rc != 0)
		return rc;
	/* The block is split: its halves are to look at. */
	uint64_t w0, nw;
	retire_span(rt, rt->t + 1, &w0, &nw);
	memset(rt->need, 0, nw * sizeof(uint64_t));
	for (uint64_t c = 2 * rt->i; c < 2 * rt->i + 2; c++)
		if (retire_wanted(rt, rt->t + 1, c))
			rt->need[c / BLOCKS_PER_WORD - w0] |= STATE_MASK << blk_shift(c);
	rt->lfrom = rt->lto = 0;
	rt->lost = 0;
	for (unsigned lv = rt->t + 1; lv < g->levels; lv++) {
		if ((rc = retire_level(rt, lv)) != 0)
			return rc;
		uint64_t *p = rt->need;
		rt->need = rt->nneed;
		rt->nneed = p;
		p = rt->val;
		rt->val = rt->nval;
		rt->nval = p;
	}
	return 1;
}

int rmp_buddy_retire(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset, unsigned order,
		     uint64_t *bytes)
{
	const struct rmp_buddy_geom *g = &b->g;
	/* No word cache: a range's thousands of words would only flush it. */
	struct tally tl = { ctx->ctr[OP_RETIRE], NULL, NULL };
	struct retire rt = { .b = b, .ctx = ctx, .tl = &tl };
	int rc = -ENOMEM;

	if (bytes)
		*bytes = 0;
	if (order < g->min_order || order > g->max_order || (offset >> g->max_order) != 0 ||
	    (offset & ((1ull << order) - 1)) != 0)
		return -EINVAL;
	rt.t = g->max_order - order;
	rt.i = offset >> order;
	/* The widest level below the block: its leaves' words. */
	unsigned depth = g->levels - 1 - rt.t;
	rt.cap = depth >= 5 ? 1ull << (depth - 5) : 1;
	rt.cap += 1;
	uint64_t *mem = depth ? calloc(6 * rt.cap, sizeof(uint64_t)) : NULL;
	if (depth && !mem)
		return -ENOMEM;
	rt.need = mem;
	rt.val = mem + rt.cap;
	rt.nneed = mem + 2 * rt.cap;
	rt.nval = mem + 3 * rt.cap;
	rt.todo = mem + 4 * rt.cap;
	rt.ntodo = mem + 5 * rt.cap;
	rt.all = true;
	for (unsigned pass = 0;; pass++) {
		if (mem)
			memset(rt.ntodo, 0, rt.cap * sizeof(uint64_t));
		rt.churned = false;
		rc = retire_pass(&rt);
		if (rc != 2)
			break;
		if (pass + 1 == RETIRE_PASSES) {
			rc = -EAGAIN;
			break;
		}
		/* Again: only where this pass found memory in passing (each
		 * other leaf was in a set block when seen, and a FREE one is
		 * RESERVED now), unless it lost a race and saw less. */
		rt.all = rt.churned;
		uint64_t *p = rt.todo;
		rt.todo = rt.ntodo;
		rt.ntodo = p;
	}
	free(mem);
	tl_add(&tl, C_CALLS, 1);
	if (bytes)
		*bytes = rt.bytes;
	return rc < 0 ? rc : 0;
}

int rmp_buddy_free_retired(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
			   unsigned order)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE], ctx, NULL };
	bool confirmed = false;
	uint64_t v = 0, seen = 0;
	int rc;

	if (order < g->min_order || order > g->max_order || (offset >> g->max_order) != 0 ||
	    (offset & ((1ull << order) - 1)) != 0)
		return -EINVAL;
	unsigned t = g->max_order - order;
	uint64_t i = offset >> order, widx = blk_word(g, t, i);
	/* Remotely, the word as last seen: one round trip when it is right. */
	if ((b->store->direct || !wc_get(ctx, widx, &v) || state_of(v, i) != ST_ALLOC) &&
	    (rc = st_load(b, &tl, widx, 1, &v)) != 0)
		goto out;
	for (;;) {
		if (state_of(v, i) != ST_ALLOC) {
			rc = -EINVAL;
			if (confirmed)
				break;
			/* A load is a hint: ask the word itself, then decide. */
			if ((rc = st_cas(b, &tl, widx, v, v, &seen)) < 0)
				break;
		} else if ((rc = st_cas(b, &tl, widx, v, with_state(v, i, ST_RESERVED), &seen)) != 0)
			break; /* 1: RESERVED now, nothing else changes; or an error */
		confirmed = true;
		v = seen;
	}
	if (rc == 1 && rec_wanted(b, ctx)) {
		/* With records: the block left ALLOC, its tag goes (a round
		 * trip of its own: a retired block is never handed out again,
		 * so a tag left for a moment misleads nobody). */
		struct rec rec = { .b = b, .ctx = ctx, .kind = RMP_BUDDY_SLOT_FREE, .tag = ctx->rec_tag };
		uint64_t tidx = tag_idx(g, t, i);
		tl.rec = &rec;
		rc = rec_tag_cas(&tl, tidx, rec.tag, 0, &seen);
		if (rc == 0 && seen != 0 && !(seen & RMP_BUDDY_TAG_LOCK))
			rc = rec_tag_cas(&tl, tidx, seen, 0, &seen);
	}
out:
	tl_add(&tl, C_CALLS, 1);
	return rc < 0 ? rc : 0;
}

/* --- holding blocks (the local heap's thread caches) --------------------
 *
 * A held block is ALLOC turned NONE with one CAS and nothing set below
 * it: memory in nobody's hands as far as the metadata say, like the
 * parent in the middle of a split. No count changes (it is not FREE
 * either way), a search never finds it, its buddy's free sees it not FREE
 * and does not merge (coalescing is deferred, not lost), and a free of it
 * finds no live block: -EINVAL, so a double free of a cached block is
 * caught from the shared state by any thread. Local memory only: the
 * holder (rmp_heap) must give every held block back (unhold + free)
 * before it reports ENOMEM or checks the heap.
 */
static int hold_cas(_Atomic uint64_t *w, uint64_t i, unsigned from, unsigned to)
{
	uint64_t x = atomic_load_explicit(w, memory_order_acquire);

	while (state_of(x, i) == from)
		if (atomic_compare_exchange_weak_explicit(w, &x, with_state(x, i, to), memory_order_acq_rel,
							  memory_order_acquire))
			return 0;
	return -1;
}

int rmp_buddy_hold(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset, unsigned max_order,
		   unsigned *order)
{
	const struct rmp_buddy_geom *g = &b->g;
	_Atomic uint64_t *direct = b->store->direct;

	if (!direct)
		return -ENOTSUP;
	if ((offset >> g->max_order) != 0 || (offset & ((1ull << g->min_order) - 1)) != 0)
		return -EINVAL;
	unsigned top = offset ? (unsigned)__builtin_ctzll(offset) : g->max_order;
	unsigned hint = atomic_load_explicit(&ctx->last_free_order, memory_order_relaxed);
	if (top > g->max_order)
		top = g->max_order;
	/* The order freed last first (one load in the steady state), then
	 * top-down: ALLOC at (o, offset) is the live block that starts there. */
	bool hinted = hint >= g->min_order && hint <= top;
	for (unsigned o = hinted ? hint : top + 1; hinted || o-- > g->min_order;) {
		unsigned t = g->max_order - o;
		uint64_t i = offset >> o;
		_Atomic uint64_t *w = &direct[blk_word(g, t, i)];
		unsigned st = state_of(atomic_load_explicit(w, memory_order_acquire), i);
		if (hinted) {
			hinted = false;
			if (st != ST_ALLOC) {
				o = top + 1;
				continue;
			}
		}
		if (st == ST_NONE)
			continue;
		if (st != ST_ALLOC)
			return -EINVAL;
		*order = o;
		if (o != hint)
			atomic_store_explicit(&ctx->last_free_order, o, memory_order_relaxed);
		if (o > max_order)
			return 1; /* live, not held: the caller frees it at this order */
		return hold_cas(w, i, ST_ALLOC, ST_NONE) == 0 ? 0 : -EINVAL;
	}
	return -EINVAL;
}

int rmp_buddy_unhold(const struct rmp_buddy *b, uint64_t offset, unsigned order)
{
	const struct rmp_buddy_geom *g = &b->g;
	_Atomic uint64_t *direct = b->store->direct;

	if (!direct)
		return -ENOTSUP;
	unsigned t = g->max_order - order;
	uint64_t i = offset >> order;
	return hold_cas(&direct[blk_word(g, t, i)], i, ST_NONE, ST_ALLOC) == 0 ? 0 : -EUCLEAN;
}

/* --- the invariant walker ---------------------------------------------- */

static int check_fail(struct rmp_buddy_report *r, const char *what, unsigned t, uint64_t i)
{
	snprintf(r->error, sizeof(r->error), "level %u block %llu: %s", t, (unsigned long long)i, what);
	return -EUCLEAN;
}

/* Level t's summary against its bitmap, exactly: every count of tier k is
 * the number of FREE blocks in its 64^k bitmap words, the root their sum.
 * 0, -EUCLEAN with r->error, or -ENOMEM. */
static int check_summary(const struct rmp_buddy_geom *g, const uint64_t *words, unsigned t,
			 struct rmp_buddy_report *r)
{
	uint64_t nw = level_words(t), *low = malloc(nw * sizeof(uint64_t)), total = 0;
	int rc = 0;

	if (!low)
		return -ENOMEM;
	for (uint64_t wi = 0; wi < nw; wi++) {
		low[wi] = (uint64_t)__builtin_popcountll(free_bits(words[g->level_word[t] + wi]));
		total += low[wi];
	}
	/* Tier k from tier k - 1, in place: entry c of tier k sums entries
	 * [64c, 64c + 64) of the tier below, which are not needed after. */
	for (unsigned k = 1; k <= g->tiers[t] && rc == 0; k++) {
		uint64_t below = tier_len(t, k - 1), len = tier_len(t, k);
		for (uint64_t c = 0; c < len; c++) {
			uint64_t sum = 0;
			for (uint64_t q = c << SUM_SHIFT; q < below && q < (c + 1) << SUM_SHIFT; q++)
				sum += low[q];
			low[c] = sum;
			uint64_t have = words[g->tier_word[t][k - 1] + c];
			if (have != sum && rc == 0) {
				snprintf(r->error, sizeof(r->error),
					 "level %u: summary tier %u count %llu says %llu free, its words hold %llu", t,
					 k, (unsigned long long)c, (unsigned long long)have, (unsigned long long)sum);
				rc = -EUCLEAN;
			}
		}
	}
	if (rc == 0 && words[g->count_word + t] != total) {
		snprintf(r->error, sizeof(r->error), "level %u: count says %lld free, its bitmap holds %llu", t,
			 (long long)words[g->count_word + t], (unsigned long long)total);
		rc = -EUCLEAN;
	}
	free(low);
	return rc;
}

/* One level of the walk: each block's state against what covers it from
 * above (covered: per block of level t-1, set or inside a set block). */
static int check_level(const struct rmp_buddy_geom *g, const uint64_t *words, unsigned t, const uint8_t *covered,
		       uint8_t *covered_next, uint8_t *alloc_start, struct rmp_buddy_report *r)
{
	uint64_t nb = 1ull << t, bsz = 1ull << (g->max_order - t), usable = words[HDR_USABLE_WORD];

	r->counts[t] = (int64_t)words[g->count_word + t];
	for (uint64_t i = 0; i < nb; i++) {
		unsigned st = state_of(words[blk_word(g, t, i)], i);
		bool inside = t > 0 && covered[i >> 1];
		if (inside && st != ST_NONE)
			return check_fail(r, "set inside a larger block", t, i);
		if (!inside && st == ST_NONE && t == g->levels - 1)
			return check_fail(r, "split below the minimum block", t, i);
		if (!inside && st == ST_FREE && t > 0 && (i & 1) == 0 &&
		    state_of(words[blk_word(g, t, i + 1)], i + 1) == ST_FREE)
			return check_fail(r, "it and its buddy are both free (lost merge)", t, i);
		covered_next[i] = inside || st != ST_NONE;
		if (inside)
			continue;
		uint64_t lo = i * bsz, hi = lo + bsz;
		if ((st == ST_FREE || st == ST_ALLOC) && hi > usable)
			return check_fail(r, st == ST_FREE ? "free beyond the usable size" : "allocated beyond the usable size",
					  t, i);
		if (st == ST_FREE) {
			r->free_bytes += bsz;
			r->free_blocks[t]++;
		} else if (st == ST_ALLOC) {
			r->alloc_bytes += bsz;
			alloc_start[i << (g->levels - 1 - t)] = 1;
		} else if (st == ST_RESERVED) {
			/* The tail past the usable size, or retired space inside it. */
			uint64_t tail = hi <= usable ? 0 : hi - (lo > usable ? lo : usable);
			r->reserved_bytes += bsz;
			r->tail_bytes += tail;
			r->retired_bytes += bsz - tail;
		}
	}
	if (r->counts[t] != (int64_t)r->free_blocks[t]) {
		snprintf(r->error, sizeof(r->error), "level %u: count says %lld free, walk found %llu", t,
			 (long long)r->counts[t], (unsigned long long)r->free_blocks[t]);
		return -EUCLEAN;
	}
	return check_summary(g, words, t, r);
}

/* The records on a quiet heap: every slot idle; every tag 0 or a tag (no
 * lock) at the start of an ALLOC block. alloc_start: per minimum block,
 * whether an ALLOC block starts there. */
static int check_records(const struct rmp_buddy_geom *g, const uint64_t *words, const uint8_t *alloc_start,
			 struct rmp_buddy_report *r)
{
	for (unsigned c = 0; c < g->slots; c++) {
		uint64_t op = words[g->slot_word + 2ull * c];
		if (op & RMP_BUDDY_SLOT_BUSY) {
			snprintf(r->error, sizeof(r->error), "slot %u is busy (op %#llx) on a quiet heap", c,
				 (unsigned long long)op);
			return -EUCLEAN;
		}
	}
	uint64_t nmin = g->slots ? 1ull << (g->levels - 1) : 0;
	for (uint64_t m = 0; m < nmin; m++) {
		uint64_t tag = words[g->tag_word + m];
		if (alloc_start[m]) {
			if (tag)
				r->tagged_blocks++;
			else
				r->untagged_blocks++;
		}
		if (tag == 0)
			continue;
		const char *why = !(tag & RMP_BUDDY_TAG_BIT) ? "is not a tag"
				  : (tag & RMP_BUDDY_TAG_LOCK) ? "is locked on a quiet heap"
				  : (tag & RMP_BUDDY_TAG_PENDING) ? "is pending on a quiet heap"
				  : !alloc_start[m] ? "is left where no allocated block starts" : NULL;
		if (why) {
			snprintf(r->error, sizeof(r->error), "minimum block %llu: tag %#llx %s", (unsigned long long)m,
				 (unsigned long long)tag, why);
			return -EUCLEAN;
		}
	}
	return 0;
}

int rmp_buddy_check(const struct rmp_buddy *b, struct rmp_buddy_report *r)
{
	const struct rmp_buddy_geom *g = &b->g;
	_Atomic uint64_t scratch[C_N]; /* the walk's reads count nowhere */
	struct tally tl = { scratch, NULL, NULL };

	for (unsigned c = 0; c < C_N; c++)
		atomic_init(&scratch[c], 0);
	uint64_t *words;
	uint8_t *covered = NULL, *covered_next = NULL; /* per block: inside a leaf above */
	uint8_t *alloc_start = NULL;                   /* per minimum block: an ALLOC block starts there */
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
	r->transit = words[g->transit_word];
	if (TRANSIT_MOVES(r->transit) != 0) {
		snprintf(r->error, sizeof(r->error), "transit word says %u moves in progress on a quiet heap",
			 TRANSIT_MOVES(r->transit));
		rc = -EUCLEAN;
		goto out_free_words;
	}
	rc = -ENOMEM;
	covered = calloc(1ull << (g->levels - 1), 1);
	covered_next = calloc(1ull << (g->levels - 1), 1);
	alloc_start = calloc(1ull << (g->levels - 1), 1);
	if (!covered || !covered_next || !alloc_start)
		goto out_free_maps;
	rc = 0;
	for (unsigned t = 0; t < g->levels && rc == 0; t++) {
		rc = check_level(g, words, t, covered, covered_next, alloc_start, r);
		uint8_t *tmp = covered;
		covered = covered_next;
		covered_next = tmp;
	}
	if (rc == 0 && r->free_bytes + r->alloc_bytes + r->reserved_bytes != 1ull << g->max_order) {
		snprintf(r->error, sizeof(r->error), "blocks cover %llu bytes, not the capacity",
			 (unsigned long long)(r->free_bytes + r->alloc_bytes + r->reserved_bytes));
		rc = -EUCLEAN;
	}
	if (rc == 0)
		rc = check_records(g, words, alloc_start, r);
out_free_maps:
	free(alloc_start);
	free(covered);
	free(covered_next);
out_free_words:
	free(words);
	return rc;
}

/* --- reclaim: the resolver (DESIGN.md, Reclaim) ------------------------ */

#define SNAP_READ_WORDS 8192u /* one READ of the snapshot: 64 KiB */

static int read_span(const struct rmp_buddy *b, struct tally *tl, uint64_t from, uint64_t n, uint64_t *dst)
{
	for (uint64_t w = 0; w < n; w += SNAP_READ_WORDS) {
		uint64_t k = n - w < SNAP_READ_WORDS ? n - w : SNAP_READ_WORDS;
		int rc = st_load(b, tl, from + w, (uint32_t)k, dst + w);
		if (rc)
			return rc;
	}
	return 0;
}

/* The party of slot c as the snapshot sees it: abandoned when its op word
 * says so, whatever the caller knew. */
static unsigned party_of(const struct rmp_buddy_who *who, unsigned c, uint64_t op)
{
	if (op & RMP_BUDDY_SLOT_ABANDONED)
		return RMP_BUDDY_PARTY_ABANDONED;
	return who ? who[c].party : RMP_BUDDY_PARTY_NONE;
}

/* The same in a snapshot: the resolver's own slot is dead (buddy.h,
 * struct rmp_buddy_snap). */
static unsigned snap_party(const struct rmp_buddy_snap *snap, const struct rmp_buddy_who *who, unsigned c,
			   uint64_t op)
{
	if (snap->own && c == snap->own_slot)
		return RMP_BUDDY_PARTY_DEAD;
	return party_of(who, c, op);
}

int rmp_buddy_snapshot(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, const struct rmp_buddy_who *who,
		       struct rmp_buddy_snap *snap)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE], NULL, NULL };
	uint64_t ns = 2ull * g->slots, *first = NULL;
	int rc = -ENOMEM;

	memset(snap, 0, sizeof(*snap));
	if (g->slots == 0)
		return -EINVAL;
	snap->words = malloc(g->total_words * sizeof(uint64_t));
	first = malloc(ns * sizeof(uint64_t));
	if (!snap->words || !first)
		goto out_free;
	/* Slots, region, slots: each read waited for before the next is
	 * sent, so that the region read lies between the two slot reads. */
	if ((rc = read_span(b, &tl, g->slot_word, ns, first)) != 0 ||
	    (rc = read_span(b, &tl, 0, g->total_words, snap->words)) != 0 ||
	    (rc = read_span(b, &tl, g->slot_word, ns, snap->words + g->slot_word)) != 0)
		goto out_free;
	snap->moved = memcmp(first, snap->words + g->slot_word, ns * sizeof(uint64_t)) != 0;
	snap->own = ctx->rec_tag != 0 && ctx->rec_slot < g->slots;
	snap->own_slot = ctx->rec_slot;
	for (unsigned c = 0; c < g->slots; c++) {
		uint64_t op = snap->words[g->slot_word + 2ull * c];
		unsigned party = snap_party(snap, who, c, op);
		if ((op & RMP_BUDDY_SLOT_BUSY) && party != RMP_BUDDY_PARTY_DEAD && party != RMP_BUDDY_PARTY_ABANDONED)
			snap->busy++;
	}
	snap->clean = !snap->moved && snap->busy == 0;
	free(first);
	return 0;
out_free:
	free(first);
	rmp_buddy_snap_free(snap);
	return rc;
}

void rmp_buddy_snap_free(struct rmp_buddy_snap *snap)
{
	free(snap->words);
	snap->words = NULL;
	snap->clean = false;
}

static int plan_add(struct rmp_buddy_plan *p, unsigned kind, unsigned level, uint64_t index, uint64_t word,
		    int64_t by)
{
	if (p->n == p->cap) {
		unsigned cap = p->cap ? 2 * p->cap : 64;
		struct rmp_buddy_fix *f = realloc(p->fix, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		p->fix = f;
		p->cap = cap;
	}
	p->fix[p->n++] = (struct rmp_buddy_fix){ .kind = kind, .level = level, .index = index, .word = word, .by = by };
	return 0;
}

void rmp_buddy_plan_free(struct rmp_buddy_plan *plan)
{
	free(plan->fix);
	memset(plan, 0, sizeof(*plan));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* What find_garbage works with: the snapshot, the live tags (sorted),
 * per minimum block whether a block covers it and whether an ALLOC block
 * starts there. */
struct finding {
	const struct rmp_buddy_geom *g;
	const struct rmp_buddy_snap *snap;
	const uint64_t *w;
	uint64_t *live;
	size_t nlive;
	uint8_t *cov, *alloc_start;
	struct rmp_buddy_plan *plan;
	/* Abandoned allocations that got as far as DONE: the block its slot
	 * names is no handle of its client's (the call failed after). */
	uint64_t *done_op, *done_tag;
	unsigned ndone;
};

/* A tag is live when, lock bit aside, it is a live or abandoned context's
 * (an abandoned context's blocks are still its client's). */
static bool tag_live(const struct finding *fd, uint64_t tag)
{
	uint64_t base = tag & ~RMP_BUDDY_TAG_LOCK;
	return tag != 0 && bsearch(&base, fd->live, fd->nlive, sizeof(uint64_t), cmp_u64) != NULL;
}

/* The blocks: every set block that no larger one covers marks its minimum
 * blocks covered; an ALLOC one with no live tag is garbage. A block set
 * inside another is -EUCLEAN (no dead context leaves that). */
static int find_blocks(struct finding *fd)
{
	const struct rmp_buddy_geom *g = fd->g;
	unsigned last = g->levels - 1;
	int rc = 0;

	for (unsigned t = 0; t < g->levels && rc == 0; t++) {
		for (uint64_t i = 0; i < 1ull << t && rc == 0; i++) {
			unsigned st = state_of(fd->w[blk_word(g, t, i)], i);
			uint64_t m0 = i << (last - t), nm = 1ull << (last - t);
			if (st == ST_NONE)
				continue;
			if (fd->cov[m0])
				return -EUCLEAN; /* set inside a set block */
			memset(fd->cov + m0, 1, nm);
			if (st != ST_ALLOC)
				continue;
			fd->alloc_start[m0] = 1;
			uint64_t tag = fd->w[g->tag_word + m0];
			bool done = false;
			for (unsigned d = 0; d < fd->ndone && !done; d++)
				done = fd->done_tag[d] == tag &&
				       (fd->done_op[d] & ((1ull << 56) - 1)) ==
					       ((uint64_t)t << RMP_BUDDY_SLOT_LEVEL_SHIFT | i);
			if (done || !tag_live(fd, tag)) {
				rc = plan_add(fd->plan, RMP_BUDDY_FIX_GARBAGE, t, i, tag, 0);
				fd->plan->garbage_blocks++;
				fd->plan->garbage_bytes += 1ull << (g->max_order - t);
			}
		}
	}
	return rc;
}

/* The largest aligned block (its order in minimum blocks, at most last)
 * that starts at minimum block m and ends by end: how a run of uncovered
 * minimum blocks is cut into holes (find_holes and class_holes alike). */
static unsigned hole_order(uint64_t m, uint64_t end, unsigned last)
{
	unsigned o = m ? (unsigned)__builtin_ctzll(m) : last;

	if (o > last)
		o = last;
	while (m + (1ull << o) > end)
		o--;
	return o;
}

/* Holes: the runs of minimum blocks no block covers, each cut into the
 * largest aligned blocks (every one NONE with all below it NONE: a dead
 * split's claimed parent or unfinished halves, a dead merge's parent). */
static int find_holes(struct finding *fd)
{
	const struct rmp_buddy_geom *g = fd->g;
	unsigned last = g->levels - 1;
	uint64_t nmin = 1ull << last;

	for (uint64_t m = 0; m < nmin;) {
		if (fd->cov[m]) {
			m++;
			continue;
		}
		uint64_t end = m;
		while (end < nmin && !fd->cov[end])
			end++;
		while (m < end) {
			unsigned o = hole_order(m, end, last);
			int rc = plan_add(fd->plan, RMP_BUDDY_FIX_HOLE, last - o, m >> o, 0, 0);
			if (rc)
				return rc;
			fd->plan->holes++;
			fd->plan->hole_bytes += 1ull << (g->min_order + o);
			m += 1ull << o;
		}
	}
	return 0;
}

/* Counts: every count word against the FREE blocks below it in the
 * snapshot; a dead context leaves only more (raised before a block became
 * FREE, lowered after it stopped), so less is -EUCLEAN. */
static int find_drift(struct finding *fd)
{
	const struct rmp_buddy_geom *g = fd->g;
	int rc = 0;

	for (unsigned t = 0; t < g->levels && rc == 0; t++) {
		uint64_t nw = level_words(t), *low = malloc(nw * sizeof(uint64_t)), total = 0;
		if (!low)
			return -ENOMEM;
		for (uint64_t wi = 0; wi < nw; wi++) {
			low[wi] = (uint64_t)__builtin_popcountll(free_bits(fd->w[g->level_word[t] + wi]));
			total += low[wi];
		}
		for (unsigned k = 1; k <= g->tiers[t] && rc == 0; k++) {
			uint64_t below = tier_len(t, k - 1), len = tier_len(t, k);
			for (uint64_t c = 0; c < len && rc == 0; c++) {
				uint64_t sum = 0, idx = g->tier_word[t][k - 1] + c;
				for (uint64_t q = c << SUM_SHIFT; q < below && q < (c + 1) << SUM_SHIFT; q++)
					sum += low[q];
				low[c] = sum;
				int64_t d = (int64_t)(fd->w[idx] - sum);
				if (d < 0)
					rc = -EUCLEAN;
				else if (d > 0 && (rc = plan_add(fd->plan, RMP_BUDDY_FIX_COUNT, t, c, idx, d)) == 0)
					fd->plan->counts++;
			}
		}
		int64_t d = (int64_t)(fd->w[g->count_word + t] - total);
		if (rc == 0 && d < 0)
			rc = -EUCLEAN;
		else if (rc == 0 && d > 0 && (rc = plan_add(fd->plan, RMP_BUDDY_FIX_COUNT, t, 0, g->count_word + t, d)) == 0)
			fd->plan->counts++;
		free(low);
	}
	return rc;
}

/* Stale tags (where no ALLOC block starts), the transit word, and the
 * busy slots of dead and abandoned contexts. */
static int find_rest(struct finding *fd, const struct rmp_buddy_who *who)
{
	const struct rmp_buddy_geom *g = fd->g;
	uint64_t nmin = 1ull << (g->levels - 1);
	int rc = 0;

	for (uint64_t m = 0; m < nmin && rc == 0; m++) {
		uint64_t tag = fd->w[g->tag_word + m];
		if (tag != 0 && !fd->alloc_start[m] && (rc = plan_add(fd->plan, RMP_BUDDY_FIX_STALE_TAG, 0, m, tag, 0)) == 0)
			fd->plan->stale_tags++;
	}
	uint32_t moves = TRANSIT_MOVES(fd->w[g->transit_word]);
	if (rc == 0 && moves && (rc = plan_add(fd->plan, RMP_BUDDY_FIX_TRANSIT, 0, 0, 0, moves)) == 0)
		fd->plan->moves = moves;
	for (unsigned c = 0; c < g->slots && rc == 0; c++) {
		uint64_t op = fd->w[g->slot_word + 2ull * c];
		unsigned party = snap_party(fd->snap, who, c, op);
		if (op != 0 && (party == RMP_BUDDY_PARTY_DEAD || party == RMP_BUDDY_PARTY_ABANDONED) &&
		    (rc = plan_add(fd->plan, RMP_BUDDY_FIX_SLOT, 0, 0, op, c)) == 0)
			fd->plan->slots++;
	}
	return rc;
}

int rmp_buddy_find_garbage(const struct rmp_buddy *b, const struct rmp_buddy_snap *snap,
			   const struct rmp_buddy_who *who, struct rmp_buddy_plan *plan)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct finding fd = { .g = g, .snap = snap, .w = snap->words, .plan = plan };
	uint64_t nmin = 1ull << (g->levels - 1);
	int rc = -ENOMEM;

	memset(plan, 0, sizeof(*plan));
	if (!snap->clean || !snap->words || g->slots == 0)
		return -EINVAL;
	fd.live = malloc(g->slots * sizeof(uint64_t));
	fd.done_op = malloc(g->slots * sizeof(uint64_t));
	fd.done_tag = malloc(g->slots * sizeof(uint64_t));
	fd.cov = calloc(nmin, 1);
	fd.alloc_start = calloc(nmin, 1);
	if (!fd.live || !fd.done_op || !fd.done_tag || !fd.cov || !fd.alloc_start)
		goto out_free;
	for (unsigned c = 0; c < g->slots; c++) {
		uint64_t op = snap->words[g->slot_word + 2ull * c];
		unsigned party = snap_party(snap, who, c, op);
		if (who && who[c].tag && (party == RMP_BUDDY_PARTY_LIVE || party == RMP_BUDDY_PARTY_ABANDONED))
			fd.live[fd.nlive++] = who[c].tag;
		if (who && party == RMP_BUDDY_PARTY_ABANDONED && (op & RMP_BUDDY_SLOT_DONE) &&
		    (op >> RMP_BUDDY_SLOT_KIND_SHIFT & 3) == RMP_BUDDY_SLOT_ALLOC) {
			fd.done_op[fd.ndone] = op;
			fd.done_tag[fd.ndone++] = who[c].tag;
		}
	}
	qsort(fd.live, fd.nlive, sizeof(uint64_t), cmp_u64);
	if ((rc = find_blocks(&fd)) == 0 && (rc = find_holes(&fd)) == 0 && (rc = find_drift(&fd)) == 0)
		rc = find_rest(&fd, who);
out_free:
	free(fd.live);
	free(fd.done_op);
	free(fd.done_tag);
	free(fd.cov);
	free(fd.alloc_start);
	if (rc)
		rmp_buddy_plan_free(plan);
	return rc;
}

/* The dead-tag sweep (DESIGN.md, Reclaim): from any snapshot, clean or
 * not, the ALLOC blocks whose tag at their first minimum block is
 * exactly a DEAD party's tag (no lock, no pending bit) and that overlap
 * no busy slot's named block. Only a context writes its own tag, and a
 * dead one writes nothing more; a free clears or locks the tag (an own
 * free cut between its bitmap CAS and its tag clear is named by its busy
 * slot, and so is every block later starting there until that slot is
 * reset); a dead block was ALLOC all through the read, so nothing else
 * overlapping it was set then, even in a torn read. The repair locks T
 * first, so a foreign free of a copied handle meanwhile is one or the
 * other. Everything else waits for a clean snapshot. A busy slot naming
 * no block, or the resolver's own slot busy (a killed earlier resolver's
 * lock to finish), plans nothing. */
int rmp_buddy_find_dead_blocks(const struct rmp_buddy *b, const struct rmp_buddy_snap *snap,
			       const struct rmp_buddy_who *who, struct rmp_buddy_plan *plan)
{
	const struct rmp_buddy_geom *g = &b->g;
	const uint64_t *w = snap->words;
	unsigned last = g->levels - 1, ndead = 0, nbusy = 0;
	uint64_t *dead = NULL, *lo = NULL, *hi = NULL;
	int rc = -ENOMEM;

	memset(plan, 0, sizeof(*plan));
	if (!w || !who || g->slots == 0)
		return -EINVAL;
	dead = malloc(g->slots * sizeof(uint64_t));
	lo = malloc(g->slots * sizeof(uint64_t));
	hi = malloc(g->slots * sizeof(uint64_t));
	if (!dead || !lo || !hi)
		goto out_free;
	rc = 0;
	for (unsigned c = 0; c < g->slots; c++) {
		uint64_t op = w[g->slot_word + 2ull * c];
		bool own = snap->own && c == snap->own_slot;
		if (!own && party_of(who, c, op) == RMP_BUDDY_PARTY_DEAD && (who[c].tag & RMP_BUDDY_TAG_BIT) &&
		    !(who[c].tag & (RMP_BUDDY_TAG_LOCK | RMP_BUDDY_TAG_PENDING)))
			dead[ndead++] = who[c].tag;
		if (!(op & RMP_BUDDY_SLOT_BUSY))
			continue;
		unsigned t = (unsigned)(op >> RMP_BUDDY_SLOT_LEVEL_SHIFT & 0xff);
		uint64_t i = op & RMP_BUDDY_SLOT_NO_BLOCK;
		if (own || i == RMP_BUDDY_SLOT_NO_BLOCK || t > last || i >> t != 0)
			goto out_free; /* nothing to plan: rc 0, the plan empty */
		lo[nbusy] = i << (last - t);
		hi[nbusy++] = (i + 1) << (last - t);
	}
	qsort(dead, ndead, sizeof(uint64_t), cmp_u64);
	for (unsigned t = 0; t < g->levels && rc == 0 && ndead; t++) {
		for (uint64_t i = 0; i < 1ull << t && rc == 0; i++) {
			if (state_of(w[blk_word(g, t, i)], i) != ST_ALLOC)
				continue;
			uint64_t m0 = i << (last - t), m1 = (i + 1) << (last - t), tag = w[g->tag_word + m0];
			if (!bsearch(&tag, dead, ndead, sizeof(uint64_t), cmp_u64))
				continue;
			bool named = false;
			for (unsigned k = 0; k < nbusy && !named; k++)
				named = lo[k] < m1 && m0 < hi[k];
			if (named)
				continue;
			rc = plan_add(plan, RMP_BUDDY_FIX_GARBAGE, t, i, tag, 0);
			plan->garbage_blocks++;
			plan->garbage_bytes += 1ull << (g->max_order - t);
		}
	}
out_free:
	free(dead);
	free(lo);
	free(hi);
	if (rc)
		rmp_buddy_plan_free(plan);
	return rc;
}

/* A garbage block: lock its tag (T as the snapshot saw it -> LOCK | own)
 * in one batch behind the slot naming the block, and only while the lock
 * holds free it; a free that finds it no longer ALLOC puts T back, and
 * only then does the slot go idle. So a resolver killed anywhere leaves
 * its lock with its slot busy: lag, never a lock with no busy slot, and
 * the next resolver (the same slot and tag: its own slot is dead in its
 * snapshot) finds the block garbage under LOCK | own and frees it. 1
 * freed, 0 skipped (the tag moved on: the block was freed, and maybe
 * allocated again, since the snapshot), or a store error. */
static int repair_garbage(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, struct tally *tl,
			  const struct rmp_buddy_fix *f)
{
	struct rec *r = tl->rec;
	uint64_t tidx = tag_idx(&b->g, f->level, f->index), lock = RMP_BUDDY_TAG_LOCK | ctx->rec_tag, seen;
	struct rmp_wop ops[3];
	unsigned n = rec_name_ops(r, f->level, f->index, ops);

	rmp_wop_cas(&ops[n], tidx, f->word, lock);
	ops[n++].after = 1; /* the slot names the block before the lock lands */
	atomic_fetch_add_explicit(&ctx->rec_fixes, 1, memory_order_relaxed);
	int rc = st_exec(b, tl, ops, n);
	if (rc)
		return rc;
	if (ops[n - 1].old != f->word)
		return rec_end(tl);
	r->hold = true;
	rc = do_free(b, ctx, tl, f->level, f->index, NULL, lock);
	r->hold = false;
	if (rc == -EINVAL) {
		rc = rec_tag_cas(tl, tidx, lock, f->word, &seen);
		if (rc >= 0)
			rc = rec_end(tl);
		return rc < 0 ? rc : 0;
	}
	return rc < 0 ? rc : 1;
}

/* The counts' drift, the transit word's moves: FAAs, relative, so that
 * the balanced changes of live clients in the meantime do not matter. */
static int repair_faa(const struct rmp_buddy *b, struct tally *tl, const struct rmp_buddy_plan *plan, unsigned kind,
		      struct rmp_buddy_resolve_report *r)
{
	struct rmp_wop ops[SUM_FAN];
	unsigned n = 0;
	int rc = 0;

	for (unsigned k = 0; k <= plan->n && rc == 0; k++) {
		if (k < plan->n && plan->fix[k].kind == kind) {
			const struct rmp_buddy_fix *f = &plan->fix[k];
			uint64_t idx = kind == RMP_BUDDY_FIX_COUNT ? f->word : b->g.transit_word;
			rmp_wop_faa(&ops[n++], idx, (uint64_t)-f->by);
			if (kind == RMP_BUDDY_FIX_COUNT)
				r->counts_fixed++;
			else
				r->moves_ended += (unsigned)f->by;
		}
		if (n == SUM_FAN || (k == plan->n && n > 0)) {
			rc = st_exec(b, tl, ops, n);
			n = 0;
		}
	}
	return rc;
}

int rmp_buddy_repair(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, const struct rmp_buddy_plan *plan,
		     struct rmp_buddy_resolve_report *r)
{
	const struct rmp_buddy_geom *g = &b->g;
	struct tally tl = { ctx->ctr[OP_FREE], ctx, NULL };
	struct rec rec = { .b = b, .ctx = ctx, .kind = RMP_BUDDY_SLOT_FREE, .tag = ctx->rec_tag };
	uint64_t rts0 = atomic_load_explicit(&ctx->ctr[OP_FREE][C_RTS], memory_order_relaxed), seen;
	int rc = 0;

	if (!rec_wanted(b, ctx))
		return -EINVAL; /* the garbage frees lock tags with this ctx's own */
	tl.rec = &rec;
	/* Its own slot left busy by a killed earlier resolver: what it holds
	 * is the slot's op now (only this ctx writes it), and it stays busy
	 * until an operation of this repair names its own block. */
	for (unsigned k = 0; k < plan->n; k++)
		if (plan->fix[k].kind == RMP_BUDDY_FIX_SLOT && (unsigned)plan->fix[k].by == ctx->rec_slot)
			rec.op = plan->fix[k].word;
	uint64_t own_op = rec.op;
	/* Blocks first, holes next (memory is FREE again before the moves
	 * that held it end: no false ENOMEM meanwhile), then the tags, the
	 * counts, transit, and last the slots. */
	for (unsigned k = 0; k < plan->n && rc >= 0; k++) {
		const struct rmp_buddy_fix *f = &plan->fix[k];
		if (f->kind == RMP_BUDDY_FIX_GARBAGE) {
			rc = repair_garbage(b, ctx, &tl, f);
			if (rc == 1) {
				r->garbage_freed++;
				r->garbage_bytes += 1ull << (g->max_order - f->level);
			} else if (rc == 0)
				r->garbage_skipped++;
		}
	}
	for (unsigned k = 0; k < plan->n && rc >= 0; k++) {
		const struct rmp_buddy_fix *f = &plan->fix[k];
		if (f->kind != RMP_BUDDY_FIX_HOLE)
			continue;
		rc = do_free(b, ctx, &tl, f->level, f->index, NULL, TEXP_HOLE);
		if (rc == 0) {
			r->holes_released++;
			r->hole_bytes += 1ull << (g->max_order - f->level);
		} else if (rc == -ESTALE)
			rc = 0;
	}
	for (unsigned k = 0; k < plan->n && rc >= 0; k++) {
		const struct rmp_buddy_fix *f = &plan->fix[k];
		if (f->kind == RMP_BUDDY_FIX_STALE_TAG && (rc = rec_tag_cas(&tl, g->tag_word + f->index, f->word, 0, &seen)) == 1)
			r->tags_cleared++;
	}
	if (rc >= 0)
		rc = repair_faa(b, &tl, plan, RMP_BUDDY_FIX_COUNT, r);
	if (rc >= 0)
		rc = repair_faa(b, &tl, plan, RMP_BUDDY_FIX_TRANSIT, r);
	for (unsigned k = 0; k < plan->n && rc >= 0; k++) {
		const struct rmp_buddy_fix *f = &plan->fix[k];
		if (f->kind != RMP_BUDDY_FIX_SLOT)
			continue;
		if ((unsigned)f->by == ctx->rec_slot && rec.op != own_op) {
			r->slots_reset++; /* idle already: ended by this repair's first operation */
			continue;
		}
		if ((rc = st_cas(b, &tl, g->slot_word + 2ull * (uint64_t)f->by, f->word, 0, &seen)) == 1)
			r->slots_reset++;
		if ((unsigned)f->by == ctx->rec_slot)
			rec.op = 0;
	}
	r->round_trips += atomic_load_explicit(&ctx->ctr[OP_FREE][C_RTS], memory_order_relaxed) - rts0;
	return rc < 0 ? rc : 0;
}

int rmp_buddy_resolve(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, const struct rmp_buddy_who *who,
		      unsigned tries, struct rmp_buddy_resolve_report *r)
{
	struct rmp_buddy_snap snap;
	struct rmp_buddy_plan plan;
	int rc = -EAGAIN;

	memset(r, 0, sizeof(*r));
	for (unsigned k = 0; k < tries; k++) {
		if ((rc = rmp_buddy_snapshot(b, ctx, who, &snap)) != 0)
			return rc;
		r->snapshots++;
		if (!snap.clean) {
			rmp_buddy_snap_free(&snap);
			rc = -EAGAIN;
			continue;
		}
		rc = rmp_buddy_find_garbage(b, &snap, who, &plan);
		rmp_buddy_snap_free(&snap);
		if (rc)
			return rc;
		rc = rmp_buddy_repair(b, ctx, &plan, r);
		rmp_buddy_plan_free(&plan);
		return rc;
	}
	return rc;
}

int rmp_buddy_ctx_abandon(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx)
{
	struct tally tl = { ctx->ctr[OP_FREE], NULL, NULL };
	uint64_t idx = b->g.slot_word + 2ull * ctx->rec_slot, v = 0, seen = 0;
	int rc = 0;

	if (ctx->rec_tag == 0 || b->g.slots == 0)
		return 0;
	/* A CAS that changes nothing reads the word itself. */
	for (unsigned k = 0; k < 8 && (rc = st_cas(b, &tl, idx, v, v, &seen)) == 0; k++)
		v = seen;
	if (rc == 1 && (v & RMP_BUDDY_SLOT_BUSY) && !(v & RMP_BUDDY_SLOT_ABANDONED))
		rc = st_cas(b, &tl, idx, v, v | RMP_BUDDY_SLOT_ABANDONED, &seen);
	if (rc < 0)
		return rc;
	ctx->rec_tag = 0;
	return 0;
}

/* --- classification: lag or corruption (buddy.h) ------------------------
 *
 * The resolver's findings without its knowledge of the parties: what an
 * interrupted operation can leave is what find_garbage repairs (holes
 * while a move is in transit, counts above their blocks, odd tags and
 * busy slots), and it is lag; what find_garbage calls -EUCLEAN, and
 * what no operation writes at all, is corruption. An operation is busy
 * in its slot from its first batch to its end (rec_name_ops, rec_end),
 * so a pending or locked tag, or a tag where no ALLOC block starts, is
 * corruption only while no slot is busy. Holes need a move in transit:
 * a split or merge raises the transit word before memory leaves FREE
 * and lowers it after the memory is FREE again, the resolver releases
 * holes before it ends the moves, and a retire splits by the same
 * protocol. */

/* What classify works with: per minimum block, covered by a set block
 * and whether an ALLOC block starts there; the busy slots' named blocks
 * as ranges [lo, hi) of minimum blocks. */
struct classing {
	const struct rmp_buddy_geom *g;
	const uint64_t *w;
	struct rmp_buddy_class *c;
	uint8_t *cov, *astart;
	uint64_t *lo, *hi;
	unsigned nnamed;
	bool nomem;
};

/* The first violation: state corrupt. Returns false (the walk stops). */
static bool class_bad(struct rmp_buddy_class *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool class_bad(struct rmp_buddy_class *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	c->state = RMP_BUDDY_STATE_CORRUPT;
	return false;
}

/* Whether minimum blocks [m, m + n) overlap a busy slot's named block;
 * start: only a named block that starts at m counts. */
static bool class_tied(const struct classing *k, uint64_t m, uint64_t n, bool start)
{
	for (unsigned s = 0; s < k->nnamed; s++)
		if (start ? k->lo[s] == m : k->lo[s] < m + n && m < k->hi[s])
			return true;
	return false;
}

static bool class_slots(struct classing *k)
{
	const struct rmp_buddy_geom *g = k->g;
	struct rmp_buddy_class *c = k->c;
	unsigned last = g->levels - 1;

	for (unsigned s = 0; s < g->slots; s++) {
		uint64_t op = k->w[g->slot_word + 2ull * s];
		if (!(op & RMP_BUDDY_SLOT_BUSY)) {
			if (op != 0)
				return class_bad(c, "slot %u: op %#llx is set but not busy", s, (unsigned long long)op);
			continue;
		}
		unsigned kind = (unsigned)(op >> RMP_BUDDY_SLOT_KIND_SHIFT & 0x1f);
		unsigned t = (unsigned)(op >> RMP_BUDDY_SLOT_LEVEL_SHIFT & 0xff);
		uint64_t i = op & RMP_BUDDY_SLOT_NO_BLOCK;
		if (kind != RMP_BUDDY_SLOT_ALLOC && kind != RMP_BUDDY_SLOT_FREE)
			return class_bad(c, "slot %u: op %#llx is of no kind", s, (unsigned long long)op);
		c->busy_slots++;
		c->busy_alloc += kind == RMP_BUDDY_SLOT_ALLOC;
		c->busy_free += kind == RMP_BUDDY_SLOT_FREE;
		c->abandoned_slots += (op & RMP_BUDDY_SLOT_ABANDONED) != 0;
		if (i == RMP_BUDDY_SLOT_NO_BLOCK)
			continue;
		if (t > last || i >> t != 0)
			return class_bad(c, "slot %u: op %#llx names a block outside the space", s,
					 (unsigned long long)op);
		k->lo[k->nnamed] = i << (last - t);
		k->hi[k->nnamed++] = (i + 1) << (last - t);
	}
	return true;
}

/* The blocks, top-down: each set block that no larger one covers. */
static bool class_blocks(struct classing *k)
{
	const struct rmp_buddy_geom *g = k->g;
	struct rmp_buddy_class *c = k->c;
	unsigned last = g->levels - 1;
	uint64_t usable = k->w[HDR_USABLE_WORD];

	for (unsigned t = 0; t < g->levels; t++) {
		uint64_t bsz = 1ull << (g->max_order - t);
		/* A level of fewer than 32 blocks has one word, part of it
		 * past its blocks: nothing writes there. */
		if (t < 5 && k->w[g->level_word[t]] >> (2u << t) != 0)
			return class_bad(c, "level %u: bits %#llx past its %u blocks", t,
					 (unsigned long long)k->w[g->level_word[t]], 1u << t);
		for (uint64_t i = 0; i < 1ull << t; i++) {
			unsigned st = state_of(k->w[blk_word(g, t, i)], i);
			uint64_t m0 = i << (last - t), lo = i * bsz, hi = lo + bsz;
			if (st == ST_NONE)
				continue;
			if (k->cov[m0])
				return class_bad(c, "level %u block %llu: set inside a larger block", t, (unsigned long long)i);
			if (st == ST_FREE && t > 0 && (i & 1) == 0 && state_of(k->w[blk_word(g, t, i + 1)], i + 1) == ST_FREE)
				return class_bad(c, "level %u block %llu: it and its buddy are both free (a lost merge)", t,
						 (unsigned long long)i);
			if ((st == ST_FREE || st == ST_ALLOC) && hi > usable)
				return class_bad(c, "level %u block %llu: %s beyond the usable size", t, (unsigned long long)i,
						 st == ST_FREE ? "free" : "allocated");
			memset(k->cov + m0, 1, 1ull << (last - t));
			if (st == ST_FREE) {
				c->free_bytes += bsz;
			} else if (st == ST_ALLOC) {
				c->alloc_bytes += bsz;
				k->astart[m0] = 1;
			} else {
				uint64_t tail = hi <= usable ? 0 : hi - (lo > usable ? lo : usable);
				c->reserved_bytes += bsz;
				c->tail_bytes += tail;
				c->retired_bytes += bsz - tail;
			}
		}
	}
	return true;
}

/* Holes, cut as find_holes cuts them; lag only while a move is in transit. */
static bool class_holes(struct classing *k)
{
	const struct rmp_buddy_geom *g = k->g;
	struct rmp_buddy_class *c = k->c;
	unsigned last = g->levels - 1;
	uint64_t nmin = 1ull << last, first = nmin;

	for (uint64_t m = 0; m < nmin;) {
		if (k->cov[m]) {
			m++;
			continue;
		}
		uint64_t end = m;
		while (end < nmin && !k->cov[end])
			end++;
		if (first == nmin)
			first = m;
		while (m < end) {
			unsigned o = hole_order(m, end, last);
			c->holes++;
			c->hole_bytes += 1ull << (g->min_order + o);
			c->holes_tied += class_tied(k, m, 1ull << o, false);
			m += 1ull << o;
		}
	}
	if (c->holes && c->moves == 0)
		return class_bad(c, "%llu bytes in no block (from minimum block %llu) and no move in transit",
				 (unsigned long long)c->hole_bytes, (unsigned long long)first);
	return true;
}

/* Every count of every summary against the FREE blocks below it: above
 * is drift (lag), below is corruption (find_drift's rule). */
static bool class_counts(struct classing *k)
{
	const struct rmp_buddy_geom *g = k->g;
	struct rmp_buddy_class *c = k->c;
	bool ok = true;

	for (unsigned t = 0; t < g->levels && ok; t++) {
		uint64_t nw = level_words(t), *low = malloc(nw * sizeof(uint64_t)), total = 0;
		if (!low) {
			k->nomem = true;
			return false;
		}
		for (uint64_t wi = 0; wi < nw; wi++) {
			low[wi] = (uint64_t)__builtin_popcountll(free_bits(k->w[g->level_word[t] + wi]));
			total += low[wi];
		}
		for (unsigned tier = 1; tier <= g->tiers[t] && ok; tier++) {
			uint64_t below = tier_len(t, tier - 1), len = tier_len(t, tier);
			for (uint64_t q = 0; q < len && ok; q++) {
				uint64_t sum = 0, have = k->w[g->tier_word[t][tier - 1] + q];
				for (uint64_t x = q << SUM_SHIFT; x < below && x < (q + 1) << SUM_SHIFT; x++)
					sum += low[x];
				low[q] = sum;
				int64_t d = (int64_t)(have - sum); /* as find_drift: a count is signed */
				if (d < 0)
					ok = class_bad(c, "level %u: summary tier %u count %llu says %lld free, below the %llu "
						       "its words hold", t, tier, (unsigned long long)q, (long long)have,
						       (unsigned long long)sum);
				else if (d > 0) {
					c->drift_counts++;
					c->drift_total += (uint64_t)d;
				}
			}
		}
		uint64_t have = k->w[g->count_word + t];
		int64_t d = (int64_t)(have - total);
		if (ok && d < 0)
			ok = class_bad(c, "level %u: count says %lld free, below the %llu its bitmap holds", t,
				       (long long)have, (unsigned long long)total);
		else if (ok && d > 0) {
			c->drift_counts++;
			c->drift_total += (uint64_t)d;
		}
		free(low);
	}
	return ok;
}

/* The tags: 0 or a tag; pending, locked, or where no ALLOC block
 * starts only while a slot is busy. */
static bool class_tags(struct classing *k)
{
	const struct rmp_buddy_geom *g = k->g;
	struct rmp_buddy_class *c = k->c;
	uint64_t nmin = g->slots ? 1ull << (g->levels - 1) : 0;

	for (uint64_t m = 0; m < nmin; m++) {
		uint64_t tag = k->w[g->tag_word + m];
		if (k->astart[m] && tag == 0) {
			c->untagged_blocks++;
			c->untagged_tied += class_tied(k, m, 1, true);
		} else if (k->astart[m])
			c->tagged_blocks++;
		if (tag == 0)
			continue;
		if (!(tag & RMP_BUDDY_TAG_BIT))
			return class_bad(c, "minimum block %llu: tag %#llx is not a tag", (unsigned long long)m,
					 (unsigned long long)tag);
		const char *odd = (tag & RMP_BUDDY_TAG_LOCK) ? "locked" : (tag & RMP_BUDDY_TAG_PENDING) ? "pending"
				  : !k->astart[m] ? "left where no allocated block starts" : NULL;
		if (!odd)
			continue;
		if (c->busy_slots == 0)
			return class_bad(c, "minimum block %llu: tag %#llx %s and no slot is busy", (unsigned long long)m,
					 (unsigned long long)tag, odd);
		c->odd_tags++;
		c->odd_tags_tied += class_tied(k, m, 1, true);
	}
	return true;
}

/* One more part of what lags, after a "; " when there is one already. */
static void class_add(struct rmp_buddy_class *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void class_add(struct rmp_buddy_class *c, const char *fmt, ...)
{
	size_t n = strlen(c->error), cap = sizeof(c->error);
	va_list ap;

	if (n > 0 && n + 2 < cap) {
		memcpy(c->error + n, "; ", 3);
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(c->error + n, cap - n, fmt, ap);
	va_end(ap);
}

/* What lags, in words, for c->error. */
static void class_say(struct rmp_buddy_class *c)
{
	c->error[0] = '\0';
	if (c->busy_slots)
		class_add(c, "%u busy slots (%u alloc, %u free, %u abandoned)", c->busy_slots, c->busy_alloc,
			  c->busy_free, c->abandoned_slots);
	if (c->drift_counts)
		class_add(c, "%u counts above their free blocks by %llu", c->drift_counts,
			  (unsigned long long)c->drift_total);
	if (c->moves)
		class_add(c, "%u moves in transit", c->moves);
	if (c->holes)
		class_add(c, "%u holes of %llu bytes (%u at a busy slot's block)", c->holes,
			  (unsigned long long)c->hole_bytes, c->holes_tied);
	if (c->odd_tags)
		class_add(c, "%u tags in passing (%u at a busy slot's block)", c->odd_tags, c->odd_tags_tied);
	if (c->untagged_tied)
		class_add(c, "%u untagged blocks a busy slot names", c->untagged_tied);
}

int rmp_buddy_classify(const struct rmp_buddy *b, const uint64_t *words, struct rmp_buddy_class *c)
{
	const struct rmp_buddy_geom *g = &b->g;
	uint64_t nmin = 1ull << (g->levels - 1);
	struct classing k = { .g = g, .w = words, .c = c };
	int rc = -ENOMEM;

	memset(c, 0, sizeof(*c));
	if (words[HDR_MAGIC_WORD] != (RMP_BUDDY_MAGIC << 16 | RMP_BUDDY_VERSION)) {
		snprintf(c->error, sizeof(c->error), "bad magic word %#llx", (unsigned long long)words[HDR_MAGIC_WORD]);
		return -EPROTO;
	}
	k.cov = calloc(nmin, 1);
	k.astart = calloc(nmin, 1);
	k.lo = malloc((g->slots + 1) * sizeof(uint64_t));
	k.hi = malloc((g->slots + 1) * sizeof(uint64_t));
	if (!k.cov || !k.astart || !k.lo || !k.hi)
		goto out_free;
	rc = 0;
	c->moves = TRANSIT_MOVES(words[g->transit_word]);
	if (class_slots(&k) && class_blocks(&k) && class_holes(&k) && class_counts(&k) && class_tags(&k)) {
		bool lag = c->busy_slots || c->drift_counts || c->moves || c->holes || c->odd_tags;
		c->state = lag ? RMP_BUDDY_STATE_LAGGING : RMP_BUDDY_STATE_VALID;
		class_say(c);
	}
	if (k.nomem)
		rc = -ENOMEM;
out_free:
	free(k.cov);
	free(k.astart);
	free(k.lo);
	free(k.hi);
	return rc;
}

void rmp_buddy_stats(const struct rmp_buddy_ctx *ctx, struct rmp_buddy_stats *out)
{
	struct rmp_buddy_opstats *dst[3] = { &out->alloc, &out->free, &out->retire };

	for (unsigned k = 0; k < 3; k++) {
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
	struct rmp_buddy_opstats *d[3] = { &sum->alloc, &sum->free, &sum->retire };
	const struct rmp_buddy_opstats *a[3] = { &s->alloc, &s->free, &s->retire };

	for (unsigned k = 0; k < 3; k++) {
		d[k]->calls += a[k]->calls;
		d[k]->round_trips += a[k]->round_trips;
		d[k]->loads += a[k]->loads;
		d[k]->cas_ok += a[k]->cas_ok;
		d[k]->cas_fail += a[k]->cas_fail;
		d[k]->faa += a[k]->faa;
	}
}
