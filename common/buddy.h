/*
 * buddy.h - the lock-free binary buddy engine, written against a word
 * store (store.h) so that the same code runs on local memory and, over
 * RDMA, on a coordinator's registered metadata region.
 *
 * See buddy.c for the layout and the algorithm. Offsets are byte offsets
 * in [0, 2^max_order); orders are log2 of block sizes.
 */
#ifndef RMP_BUDDY_H
#define RMP_BUDDY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define RMP_BUDDY_MAGIC      0x524d50425544ull /* "RMPBUD" */
#define RMP_BUDDY_VERSION    3u /* layout version: bumped with any change of the region's format
				    * (2: the free-count summary and the transit word; 3: the
				    * owner records, slots and tags, for reclaim) */
#define RMP_BUDDY_MAX_ORDER  57u /* offsets fit the 58 low bits of a handle */
#define RMP_BUDDY_MAX_LEVELS 29u /* 2^30 bits of metadata: 128 MiB (1 TiB of 4 KiB blocks) */
#define RMP_BUDDY_HDR_WORDS  8u
#define RMP_BUDDY_MAX_TIERS  4u /* summary tiers below a level's count (3 reach 2^28 blocks) */
#define RMP_BUDDY_WCACHE     64u /* bitmap words a ctx remembers without a cache of its own */
/* Header word 4: the generation of the coordinator that registered the
 * region last (set with the CPU before each registration; clients only
 * read it). The engine neither sets nor checks it. */
#define RMP_BUDDY_HDR_GEN_WORD 4u
/* Header word 5: how many context slots the region has (0: no records,
 * no tag array). */
#define RMP_BUDDY_HDR_SLOTS_WORD 5u
#define RMP_BUDDY_MAX_SLOTS  65536u /* context slots a region may have */

/* Owner records (layout 3, regions formatted with slots; buddy.c's
 * opening comment). A tag names an engine context for the pool's life:
 * RMP_BUDDY_TAG_BIT | its number; RMP_BUDDY_TAG_LOCK is set in a tag
 * word while a free that did not own the block holds it;
 * RMP_BUDDY_TAG_PENDING from a claim to the end of its allocation (the
 * caller has no handle yet). */
#define RMP_BUDDY_TAG_BIT    (1ull << 63)
#define RMP_BUDDY_TAG_LOCK   (1ull << 62)
#define RMP_BUDDY_TAG_PENDING (1ull << 61)
/* A slot's op word: RMP_BUDDY_SLOT_BUSY | kind << RMP_BUDDY_SLOT_KIND_SHIFT |
 * level << RMP_BUDDY_SLOT_LEVEL_SHIFT | block index; 0 when idle.
 * RMP_BUDDY_SLOT_ABANDONED: its client gave the context up (an RDMA error
 * in the middle of an operation) and uses another. */
#define RMP_BUDDY_SLOT_BUSY      (1ull << 63)
#define RMP_BUDDY_SLOT_ABANDONED (1ull << 62)
#define RMP_BUDDY_SLOT_DONE      (1ull << 61) /* an allocation's block is complete (its end began) */
#define RMP_BUDDY_SLOT_KIND_SHIFT  56u
#define RMP_BUDDY_SLOT_LEVEL_SHIFT 48u
#define RMP_BUDDY_SLOT_NO_BLOCK  ((1ull << 48) - 1) /* busy, no block named yet */
enum rmp_buddy_slot_kind {
	RMP_BUDDY_SLOT_ALLOC = 1,
	RMP_BUDDY_SLOT_FREE = 2,
};

/* Where everything lives in the metadata region, in words. */
struct rmp_buddy_geom {
	unsigned max_order;          /* M: capacity is 2^M bytes */
	unsigned min_order;          /* m: smallest block is 2^m bytes */
	unsigned levels;             /* M - m + 1; level t holds blocks of order M - t */
	uint64_t transit_word;       /* moves in progress (low half), moves begun (high half) */
	uint64_t count_word;         /* first of `levels` free-count words: the summaries' roots */
	uint64_t level_word[RMP_BUDDY_MAX_LEVELS + 1]; /* first bitmap word of each level */
	/* The summary of level t: tiers[t] tiers of free counts below its
	 * count word; tier k (1-based) has one count per 64^k bitmap words,
	 * starting at word tier_word[t][k - 1]. */
	unsigned tiers[RMP_BUDDY_MAX_LEVELS + 1];
	uint64_t tier_word[RMP_BUDDY_MAX_LEVELS + 1][RMP_BUDDY_MAX_TIERS];
	/* Owner records (0 slots: none, and no tag array). Slot c is the
	 * two words at slot_word + 2c (op, seq); the tag of the ALLOC block
	 * that starts at minimum block i is word tag_word + i. */
	unsigned slots;
	uint64_t slot_word;
	uint64_t tag_word;
	uint64_t total_words;
};

/* Word operations issued, per kind of engine operation. */
struct rmp_buddy_opstats {
	uint64_t calls;
	uint64_t round_trips; /* store exec() calls: what a remote store waits for */
	uint64_t loads;
	uint64_t cas_ok;
	uint64_t cas_fail;
	uint64_t faa;
};

struct rmp_buddy_stats {
	struct rmp_buddy_opstats alloc, free;
	struct rmp_buddy_opstats retire; /* rmp_buddy_retire (free_retired counts as a free) */
};

/* Per-client state: where to start looking, and what was issued. A ctx
 * may be shared by threads (all fields are atomics, relaxed: the cursors
 * are hints and the counters only add up) unless it keeps credit. */
struct rmp_buddy_ctx {
	_Atomic uint64_t cursor[RMP_BUDDY_MAX_LEVELS + 1]; /* per level: block to try first */
	/* [alloc|free|retire][calls, rts, loads, cas_ok, cas_fail, faa, fast, fast_loads]:
	 * "fast" counts calls done by the inline local path, each one CAS
	 * that succeeded after fast_loads loads in all (rmp_buddy_stats adds
	 * them in: one counter on the hot path instead of five). */
	_Atomic uint64_t ctr[3][8];
	/* Credit, per level (only with defer_max > 0; rmp_buddy_ctx_defer):
	 * the counts on the summary path of bitmap group credit_grp[t] say
	 * credit[t] more free blocks than there are, on this ctx's account. */
	_Atomic int64_t credit[RMP_BUDDY_MAX_LEVELS + 1];
	_Atomic uint64_t credit_grp[RMP_BUDDY_MAX_LEVELS + 1];
	int64_t defer_max;
	_Atomic unsigned last_free_order; /* local fast path: the order to try first */
	/* Remote stores: the bitmap words this ctx saw last, so that a CAS
	 * can expect a value before anything is read (one round trip when the
	 * word has not changed since). wc_mask + 1 pairs (index + 1, value),
	 * direct-mapped: wc_inline, or a larger cache (rmp_buddy_ctx_cache).
	 * Hints. */
	_Atomic uint64_t *wc;
	uint64_t wc_mask;
	_Atomic uint64_t wc_inline[2 * RMP_BUDDY_WCACHE];
	uint64_t home;                     /* fraction of the heap, / 2^64 (rmp_buddy_ctx_home) */
	bool homed;
	/* Owner records (rmp_buddy_ctx_record): its tag (0: off) and slot. */
	uint64_t rec_tag;
	unsigned rec_slot;
	_Atomic uint64_t rec_fixes; /* round trips spent on tag fixes and undos */
};

struct rmp_buddy {
	struct rmp_buddy_geom g;
	struct rmp_store *store;
};

/* Geometry for 2^max_order bytes in blocks of at least 2^min_order.
 * -EINVAL for orders out of range or more than RMP_BUDDY_MAX_LEVELS levels. */
int rmp_buddy_geom_init(struct rmp_buddy_geom *g, unsigned max_order, unsigned min_order);
/* The same with owner records: `slots` context slots and the tag array
 * (one word per minimum block). slots = 0 is rmp_buddy_geom_init.
 * -EINVAL also for more than RMP_BUDDY_MAX_SLOTS. */
int rmp_buddy_geom_init_records(struct rmp_buddy_geom *g, unsigned max_order, unsigned min_order,
				unsigned slots);

/* Write a fresh heap into words[0..g->total_words) with plain stores,
 * before anyone else can see it: [0, usable) free, the tail reserved
 * (never handed out until rmp_buddy_unreserve()). usable is rounded up to
 * the minimum block. */
void rmp_buddy_format(uint64_t *words, const struct rmp_buddy_geom *g, uint64_t usable);

/* The layout version of a metadata region (its header words; the low 16
 * bits of the magic word). 0 when it is RMP_BUDDY_VERSION, the layout this
 * code reads; -EPROTONOSUPPORT for buddy metadata of another layout
 * version (*version says which); -EPROTO when it is not buddy metadata. */
int rmp_buddy_header_version(const uint64_t hdr[RMP_BUDDY_HDR_WORDS], unsigned *version);

/* Read back the geometry a region was formatted with (header words).
 * -EPROTONOSUPPORT for another layout version, -EPROTO for a header that
 * is not buddy metadata or whose geometry does not hold together. */
int rmp_buddy_geom_from_header(struct rmp_buddy_geom *g, const uint64_t hdr[RMP_BUDDY_HDR_WORDS],
			       uint64_t *usable);

void rmp_buddy_init(struct rmp_buddy *b, const struct rmp_buddy_geom *g, struct rmp_store *store);
void rmp_buddy_ctx_init(struct rmp_buddy_ctx *ctx, const struct rmp_buddy *b, uint64_t client_id);

/* Make this ctx keep owner records (the region must have slots): it owns
 * slot `slot` (nobody else may use it while it lives) and its tag is
 * RMP_BUDDY_TAG_BIT | id (id < 2^61, unique per context for the pool's
 * life). On a store that is not direct (remote) every allocation and
 * free then writes its slot and its blocks' tags in the batches it sends
 * anyway (buddy.c); on direct local memory nothing changes. A ctx that
 * keeps records is used by one thread at a time. -EINVAL for a slot out
 * of range or a bad id. */
int rmp_buddy_ctx_record(struct rmp_buddy_ctx *ctx, const struct rmp_buddy *b, unsigned slot, uint64_t id);

/* Give this ctx a home at the fraction frac / 2^64 of the heap: on local
 * memory a miss looks there first at every level and splits toward it,
 * and the cursor only follows blocks inside the home's bitmap line, so
 * that threads homed apart work on different cache lines. */
void rmp_buddy_ctx_home(struct rmp_buddy_ctx *ctx, const struct rmp_buddy *b, uint64_t frac);

/* Give this ctx a word cache of its own: entries (a power of two) pairs
 * of words at mem, which the caller keeps while the ctx lives (16 bytes
 * an entry; 1024 make a remote client's frees one round trip on a busy
 * pool, where the default 64 remember too little). Before any operation. */
void rmp_buddy_ctx_cache(struct rmp_buddy_ctx *ctx, _Atomic uint64_t *mem, unsigned entries);

/* Let this ctx keep up to max blocks of credit per level: the free counts
 * on the summary path of one bitmap group may say up to max more free
 * blocks than there are, on this ctx's account. An allocation there then
 * leaves the counts as they are (credit + 1) and a free there takes one
 * back (credit - 1) before its block is marked free: the steady state of
 * alloc and free costs no FAA, and threads stop bouncing the counts'
 * cache lines. The counts only ever over-report (never fewer than the
 * free blocks: buddy.c), so nothing is missed; a search that follows
 * another ctx's credit finds that group empty and goes on. Only for a ctx
 * that one thread uses at a time (plain read-modify-writes) and that
 * stays with the heap (rmp_buddy_ctx_flush before a check; a departing
 * client's credit stays as harmless over-report). 0: off. */
void rmp_buddy_ctx_defer(struct rmp_buddy_ctx *ctx, unsigned max);
/* Give the ctx's credit back: the counts are exact again for its share. */
int rmp_buddy_ctx_flush(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx);

/* Allocate one block of 2^order bytes. 0 and *offset; -ENOMEM when no
 * block of the order is free nor can be made by splitting (proved from
 * the summary in O(levels) while no split or merge is in progress); -EAGAIN
 * when the counts say memory exists but a bounded number of searches did
 * not get it: another client holds it in passing (stalled in the middle of
 * a split or a merge, or preempted there) or the searches kept losing
 * races. The caller may retry; the engine never waits for another client.
 * -EINVAL, or a store error. */
int rmp_buddy_alloc(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, unsigned order,
		    uint64_t *offset);
/* Free the live block of 2^order bytes at offset, coalescing with free
 * buddies. -EINVAL if that is not a live block (never allocated, freed
 * already, reserved, or the wrong order), decided from the shared
 * metadata only. */
int rmp_buddy_free(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
		   unsigned order);
/* Free a live block this ctx may not own (a handle from another process
 * or context): with records on, the block's tag is read and locked first
 * (CAS tag -> RMP_BUDDY_TAG_LOCK | own tag) and the bitmap is changed only
 * while the lock is held, so that neither a resolver nor another late
 * free can free it again after it was allocated anew. rmp_buddy_free
 * expects the block to carry this ctx's tag and costs one round trip in
 * the steady state (this one three); it frees a block of another live
 * context correctly too (the resolver never touches a live tag: the tag
 * is cleared one round trip later), but a block whose owner may be dead
 * (a resolver may be freeing it) must go through this one. Without
 * records it is rmp_buddy_free. */
int rmp_buddy_free_foreign(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
			   unsigned order);
/* Settle a free of this ctx's own block that was cut in the middle (a
 * store error: it may or may not have landed), once its slot is idle
 * again (the resolver reset it after the abandon, or the cut came before
 * the slot named the block) and before the ctx does anything else with
 * its tag: the block is freed if it is still ALLOC at that order with
 * this ctx's own tag (the cut free did not land), else nothing is done
 * (it landed; the block may be somebody else's since). The tag is
 * locked first (CAS own -> RMP_BUDDY_TAG_LOCK | own, the slot naming the
 * block), so a settle cut in its turn leaves a lock the resolver
 * finishes. 1 freed now, 0 it had landed, -EINVAL (no records), or a
 * store error (still in doubt: settle again later). */
int rmp_buddy_free_settle(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
			  unsigned order);
/* Free the live block that starts at offset, whatever its order, found
 * from the metadata (for callers that keep no size, like the heap). The
 * order freed goes to *order if not NULL. -EINVAL if none starts there. */
int rmp_buddy_free_at(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
		      unsigned *order);
/* The order of the live block that starts at offset, found from the
 * metadata. authoritative=true confirms each candidate with a CAS that
 * changes nothing, so a stale load cannot mislead it. -EINVAL if none. */
int rmp_buddy_order_of(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
		       bool authoritative, unsigned *order);

/* Whether the block of 2^order bytes at offset is live (allocated at
 * that order): one load of its word; a load that says no is confirmed by
 * a CAS that changes nothing. 1, 0 (not live, or a bad offset/order), or
 * a store error. */
int rmp_buddy_is_live(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset, unsigned order);

/* Take the block of 2^order bytes at offset out of service: every FREE
 * block inside it becomes RESERVED; a FREE block that contains it is
 * claimed and split down so that exactly this block's part is RESERVED
 * and the rest is FREE again; ALLOC blocks inside stay (their free
 * retires them: rmp_buddy_free_retired), and so does an ALLOC block that
 * contains it. Idempotent: call it again after a client that had not yet
 * learned of the retirement freed a block inside it with rmp_buddy_free.
 * 0 with *bytes = bytes newly made RESERVED (may be NULL; also set after
 * -EAGAIN); -EAGAIN after a bound while a block inside is in passing (a
 * split or merge half done): call again later. On return 0 every byte of
 * the block is RESERVED or in a block that was ALLOC during the call.
 * -EINVAL for a bad offset/order, -ENOMEM, or a store error. Memory: 48
 * bytes per word of the block's leaf level, for the call. A block held
 * by rmp_buddy_hold (local heaps only; NONE while held) looks in passing:
 * -EAGAIN until it is unheld. */
int rmp_buddy_retire(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
		     unsigned order, uint64_t *bytes);
/* Free a live block that lies in a retired range: ALLOC -> RESERVED, no
 * merge, counts untouched. -EINVAL when it is not ALLOC (decided by a
 * CAS, not a load). Counted as a free. */
int rmp_buddy_free_retired(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset,
			   unsigned order);

/* Local memory only (-ENOTSUP otherwise): hold the live block that
 * starts at offset, for a thread cache: 0 with *order when it was ALLOC
 * and is now held (NONE, nothing below: no search finds it, no merge takes
 * it, a free of it is -EINVAL); 1 with *order when it is live but larger
 * than max_order (not held: free it at *order); -EINVAL when no live block
 * starts there. No count changes. */
int rmp_buddy_hold(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, uint64_t offset, unsigned max_order,
		   unsigned *order);
/* Make a held block ALLOC again (one CAS): to hand it out, or to free it
 * with rmp_buddy_free. -EUCLEAN if it is not held. */
int rmp_buddy_unhold(const struct rmp_buddy *b, uint64_t offset, unsigned order);

/* Smallest order that holds size bytes, never below the minimum;
 * -EINVAL for 0 or more than the capacity. */
int rmp_buddy_order_for(const struct rmp_buddy_geom *g, uint64_t size, unsigned *order);

struct rmp_buddy_report {
	uint64_t free_bytes;
	uint64_t alloc_bytes;
	uint64_t reserved_bytes;                         /* tail_bytes + retired_bytes */
	uint64_t tail_bytes;                             /* RESERVED past the usable size */
	uint64_t retired_bytes;                          /* RESERVED inside it (rmp_buddy_retire) */
	uint64_t free_blocks[RMP_BUDDY_MAX_LEVELS + 1];  /* per level, as walked */
	int64_t counts[RMP_BUDDY_MAX_LEVELS + 1];        /* per level, the summaries' roots */
	uint64_t transit;                                /* the transit word */
	uint64_t tagged_blocks;                          /* ALLOC blocks with a tag (records) */
	uint64_t untagged_blocks;                        /* ALLOC blocks with tag 0 */
	char error[160];                                 /* first violation found */
};

/* Invariant walker, for a quiet heap (no operation in flight, credit
 * flushed): every byte is in exactly one free, allocated or reserved
 * block; nothing past the usable size is free or allocated (RESERVED
 * inside it is retired space, reported apart); no two free buddies
 * (coalescing was never lost); nothing below a leaf; every count of every
 * summary equals the free blocks below it; no move in transit; with
 * records, every slot idle and every tag either 0 or a tag
 * (RMP_BUDDY_TAG_BIT, no lock) at the start of an ALLOC block. 0,
 * -EUCLEAN with r->error set, or a store error. */
int rmp_buddy_check(const struct rmp_buddy *b, struct rmp_buddy_report *r);

/* --- reclaim: the resolver (DESIGN.md, Reclaim) ------------------------
 *
 * For a region with records, run by one resolver at a time (the
 * coordinator's worker, with a ctx that keeps records; nothing without
 * records may change the region meanwhile) while live clients go on. The
 * caller says what each slot's context is, in an array of g.slots: */
enum rmp_buddy_party {
	RMP_BUDDY_PARTY_NONE = 0, /* no context in this slot */
	RMP_BUDDY_PARTY_LIVE,      /* alive: its tag's blocks are its own */
	RMP_BUDDY_PARTY_DEAD,      /* dead and cut off: nothing of it lands any more */
	RMP_BUDDY_PARTY_ABANDONED, /* its client lives but gave the context up mid-operation */
};
struct rmp_buddy_who {
	uint64_t tag;    /* the slot's context's tag (RMP_BUDDY_TAG_BIT | id) */
	unsigned party;  /* enum rmp_buddy_party */
};

/* A snapshot: the slots, the whole region, the slots again. Clean when
 * both slot reads agree and no context the caller did not call dead or
 * abandoned is busy (a slot marked RMP_BUDDY_SLOT_ABANDONED counts as
 * abandoned). Nothing may be written from an unclean one. The slot of the
 * ctx that takes it (the resolver's, when it keeps records) is DEAD
 * whatever who says: the resolver is between operations, so what its slot
 * and its tag show is a killed earlier resolver's in the same slot (a
 * restarted coordinator's), to be finished like any dead context's. */
struct rmp_buddy_snap {
	uint64_t *words;    /* g.total_words, malloc'd */
	bool clean;
	unsigned busy;      /* busy slots of live (or unknown) contexts */
	bool moved;         /* the two slot reads differ */
	bool own;           /* own_slot is the resolver's */
	unsigned own_slot;
};
int rmp_buddy_snapshot(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, const struct rmp_buddy_who *who,
		       struct rmp_buddy_snap *snap);
void rmp_buddy_snap_free(struct rmp_buddy_snap *snap);

/* What a clean snapshot says is to be repaired. */
enum rmp_buddy_fix_kind {
	RMP_BUDDY_FIX_GARBAGE = 1, /* an ALLOC block with no live tag: free it (tag locked first) */
	RMP_BUDDY_FIX_HOLE,        /* memory in no block (a dead split or merge): release it */
	RMP_BUDDY_FIX_STALE_TAG,   /* a tag where no ALLOC block starts: clear it */
	RMP_BUDDY_FIX_COUNT,       /* a count above the FREE blocks below it: take the drift off */
	RMP_BUDDY_FIX_TRANSIT,     /* moves a dead context left in progress: end them */
	RMP_BUDDY_FIX_SLOT,        /* a dead or abandoned context's busy slot: make it idle */
};
struct rmp_buddy_fix {
	unsigned kind;  /* enum rmp_buddy_fix_kind */
	unsigned level; /* GARBAGE, HOLE: the block */
	uint64_t index;
	uint64_t word;  /* GARBAGE, STALE_TAG: the tag seen; COUNT: the count's word index;
			 * SLOT: the op seen */
	int64_t by;     /* COUNT: the drift; TRANSIT: the moves; SLOT: the slot */
};
struct rmp_buddy_plan {
	struct rmp_buddy_fix *fix; /* malloc'd; rmp_buddy_plan_free */
	unsigned n, cap;
	uint64_t garbage_bytes, hole_bytes;
	unsigned garbage_blocks, holes, stale_tags, counts, moves, slots;
};
/* From a clean snapshot: every repair due (-EINVAL for an unclean one,
 * -EUCLEAN for metadata no dead context can explain: a block set inside
 * another, a count below the FREE blocks under it, ...). */
int rmp_buddy_find_garbage(const struct rmp_buddy *b, const struct rmp_buddy_snap *snap,
			   const struct rmp_buddy_who *who, struct rmp_buddy_plan *plan);
void rmp_buddy_plan_free(struct rmp_buddy_plan *plan);
/* The dead-tag sweep, from any snapshot (clean or not; the DEAD
 * parties' slots must be cut off): GARBAGE fixes only, for the ALLOC
 * blocks tagged exactly with a DEAD party's tag (no lock, no pending bit)
 * that overlap no busy slot's named block; rmp_buddy_repair frees them
 * under the tag lock while live clients go on. The rest (holes, stale
 * tags, drift, transit, slots) waits for a clean snapshot. An empty plan
 * when a busy slot names no block or the resolver's own slot is busy. 0,
 * -EINVAL (no who), -ENOMEM. */
int rmp_buddy_find_dead_blocks(const struct rmp_buddy *b, const struct rmp_buddy_snap *snap,
			       const struct rmp_buddy_who *who, struct rmp_buddy_plan *plan);

struct rmp_buddy_resolve_report {
	unsigned snapshots;         /* taken until one was clean */
	unsigned garbage_freed;     /* garbage blocks freed */
	uint64_t garbage_bytes;
	unsigned garbage_skipped;   /* its tag changed since the snapshot: somebody else's now */
	unsigned holes_released;
	uint64_t hole_bytes;
	unsigned tags_cleared, counts_fixed, moves_ended, slots_reset;
	uint64_t round_trips;       /* the repairs' (the snapshots read the region besides) */
};
/* Carry the plan out, concurrently with live clients, in this order:
 * garbage frees (the resolver's slot names the block and, in the same
 * batch, CAS tag T -> RMP_BUDDY_TAG_LOCK | own; only if that held, the
 * free), holes, stale tags, counts (FAA -drift), transit (FAA -moves),
 * slots (CAS op -> idle). A plan that resets ctx's own slot (a killed
 * earlier resolver left it busy) is carried out from that op: the slot
 * stays busy until this repair's first operation names its own block.
 * 0 or a store error; killed anywhere (its word operations cut), what it
 * leaves is lag (rmp_buddy_classify) that the next repair finishes. */
int rmp_buddy_repair(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, const struct rmp_buddy_plan *plan,
		     struct rmp_buddy_resolve_report *r);
/* Snapshot until clean (at most `tries`), find, repair: the resolver in
 * one call. -EAGAIN when no snapshot was clean. */
int rmp_buddy_resolve(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx, const struct rmp_buddy_who *who,
		      unsigned tries, struct rmp_buddy_resolve_report *r);
/* A client gives ctx up after a store error in the middle of an
 * operation (its slot may be busy): RMP_BUDDY_SLOT_ABANDONED is set in
 * the slot (through a store that works again) and the ctx keeps no more
 * records. The resolver finishes what it left. 0 or a store error. */
int rmp_buddy_ctx_abandon(const struct rmp_buddy *b, struct rmp_buddy_ctx *ctx);

/* --- classification: lag or corruption ---------------------------------
 *
 * For a checker that does not know which contexts are alive (`rmpool
 * pool check`): what a region image (a snapshot, or any words of
 * g.total_words) says, in three states. Corrupt: something no
 * operation in flight and no dead consumer leaves (a block set inside a
 * set block, two free buddies, a count below the FREE blocks under it,
 * memory in no block while no move is in transit, a tag lock or a
 * pending tag while no slot is busy, a slot naming no block of the
 * space, bits that are not a tag, FREE or ALLOC past the usable size).
 * Lagging: only what an operation in flight, or a dead or abandoned
 * consumer the resolver has not yet reclaimed, leaves: busy slots,
 * counts above the FREE blocks under them (drift; also a live context's
 * credit), moves in transit, holes, odd tags, ALLOC blocks with no tag
 * that a busy slot names; each is tied, where it can be, to a busy
 * slot's named block. Valid: neither; then rmp_buddy_check passes on
 * the same words. Exact only for an image no operation changed while it
 * was read (rmpool pool check reads it until two reads agree). */
enum rmp_buddy_state {
	RMP_BUDDY_STATE_VALID = 0,
	RMP_BUDDY_STATE_LAGGING = 1,
	RMP_BUDDY_STATE_CORRUPT = 2,
};
struct rmp_buddy_class {
	unsigned state;                 /* enum rmp_buddy_state */
	uint64_t free_bytes, alloc_bytes, reserved_bytes, tail_bytes, retired_bytes; /* as walked */
	unsigned busy_slots;            /* slots in the middle of an operation */
	unsigned busy_alloc, busy_free; /* of them, by kind */
	unsigned abandoned_slots;       /* of them, given up by their client (RMP_BUDDY_SLOT_ABANDONED) */
	unsigned drift_counts;          /* count words above the FREE blocks below them */
	uint64_t drift_total;           /* by how much, summed */
	unsigned moves;                 /* moves in transit (the transit word's low half) */
	unsigned holes;                 /* memory in no block, as the resolver's largest aligned blocks */
	uint64_t hole_bytes;
	unsigned holes_tied;            /* of them, overlapping a busy slot's named block */
	unsigned odd_tags;              /* tags pending, locked, or where no ALLOC block starts */
	unsigned odd_tags_tied;         /* of them, at the start of a busy slot's named block */
	uint64_t tagged_blocks, untagged_blocks; /* ALLOC blocks with and without a tag (records) */
	unsigned untagged_tied;         /* ALLOC blocks with no tag that a busy slot names */
	char error[240];                /* corrupt: the first violation; lagging: what lags */
};
/* Classify words[0..b->g.total_words) (the geometry from its header:
 * rmp_buddy_geom_from_header). 0 with *c filled, whatever the state;
 * -EPROTO when the magic word is not this layout's; -ENOMEM. Reads only
 * the words; any value of them is safe. */
int rmp_buddy_classify(const struct rmp_buddy *b, const uint64_t *words, struct rmp_buddy_class *c);

void rmp_buddy_stats(const struct rmp_buddy_ctx *ctx, struct rmp_buddy_stats *out);
void rmp_buddy_stats_add(struct rmp_buddy_stats *sum, const struct rmp_buddy_stats *s);

#endif /* RMP_BUDDY_H */
