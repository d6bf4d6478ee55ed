/*
 * crash_data.c - the consumers of tests/rdma/crash.sh: a victim that
 * SIGKILLs itself after its k-th remote word operation (the store's test
 * hook, common/store_rdma.h), and a survivor on another host that keeps
 * allocating and freeing meanwhile and proves none of its blocks was
 * freed under it.
 *
 *   crash_data victim NAME KIND K DIR [SEED]
 *       attaches, holds HOLD_N blocks of HOLD_SIZE (written, from two
 *       threads: two shards, two tags), does KIND's setup and (split,
 *       merge) a dry run of the operation, undone (until the dry run did
 *       split, 3+ round trips, or merge, 2+: another client may have
 *       freed a block of the size meanwhile), writes
 *         client C lease L kind KIND k K held B dry_ops N dry_rts R
 *       to DIR/victim.ready (B: the setup's bytes, which the reclaim must
 *       give back whatever K is; N: the dry run's word operations, the
 *       operation's length this time), arms the hook with K and runs
 *       KIND's operation; it dies inside it. KIND:
 *         split   an alloc of S_SIZE that splits: S_SIZE blocks are
 *                 allocated until one came from a split (3+ round
 *                 trips, and the next alloc gets its buddy, which is
 *                 freed again), which is freed again (it merges back,
 *                 so the next alloc of S_SIZE splits the same way);
 *         merge   the free of that block, whose buddy is free: a merge;
 *         cache   the first small alloc with the small-block cache on:
 *                 its remote operations are the 1 MiB chunk's claim;
 *         random  RAND_THREADS threads allocating and freeing mixed
 *                 sizes, patterns written (the cache on for odd SEEDs).
 *       The setup's blocks stay allocated when it dies. An operation
 *       that ends before its K-th word operation (another client's
 *       moves made it shorter this time) is noted in DIR/victim.short
 *       and the process SIGKILLs itself right after it.
 *       K = 0, the count mode: the same without a kill; writes
 *         count KIND ops N rts R ...evidence
 *       to DIR/count.KIND (N: the word operations of the operation, the
 *       k range for the kills), then frees everything and closes. The
 *       evidence that the operation does what it is named for: split -
 *       3+ round trips, and the next alloc of S_SIZE gets the split's
 *       other half (its buddy, left free); merge - 2+ round trips (one
 *       per level merged); cache - one chunk claimed. Exit 4 without it.
 *   crash_data survivor NAME THREADS GAP_US DIR
 *       THREADS threads allocate and free blocks of 4 KiB .. 128 KiB (the
 *       small cache on up to CACHE_MAX), a random pause of 0..2*GAP_US
 *       between operations; each block's pattern is written after its
 *       alloc and checked before its free; every block is claimed in an
 *       owner array (one byte per 4 KiB of the space) with CAS, so a
 *       block handed out while this process still holds any byte of it
 *       is seen ("handed out twice"). Writes DIR/survivor.ready (client,
 *       lease). The pause protocol, polled every 5 ms: DIR/PAUSE appears
 *       -> every thread finishes its operation and parks; the survivor
 *       checks the pool (rmp_pool_check) and writes DIR/report:
 *         live B valid V free F usable U ops N wrong W twice T
 *       (B: its blocks as the metadata see them - engine blocks at their
 *       size, and the cache's 1 MiB chunks held - so free must be U - B
 *       once the victims are reclaimed); DIR/PAUSE removed -> it removes
 *       DIR/report and resumes. DIR/STOP: it stops, reads every block
 *       back byte for byte, frees all and closes; exit 0 only when no
 *       byte was ever wrong and nothing was handed out twice.
 * Coordinator from RMPOOL_COORDINATOR, secret from RMPOOL_SECRET.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "data_util.h"
#include "rmpool.h"
#include "store_rdma.h"

#define HOLD_N 4u
#define HOLD_SIZE (256u << 10)
#define S_SIZE (64u << 10)
#define SMALL_SIZE (4u << 10)
#define CACHE_MAX (16u << 10)
#define SPLIT_TRIES 64u
#define DRY_TRIES 8u
#define RAND_THREADS 3u
#define RAND_OPS 40u       /* per thread, in the count mode's run */
#define RAND_HELD 16u
#define GRANULE 4096u      /* the owner array's unit: the smallest size used */
#define SURV_MAX_THREADS 8u
#define SURV_HELD 24u

static const char *dir;

static void write_file(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void write_file(const char *name, const char *fmt, ...)
{
	char path[512], tmp[520];
	va_list ap;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		check_die("cannot write %s", tmp);
	va_start(ap, fmt);
	int rc = vfprintf(f, fmt, ap);
	va_end(ap);
	if (rc < 0 || fclose(f) || rename(tmp, path))
		check_die("cannot write %s", path);
}

static int file_exists(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static uint64_t rng_next(uint64_t *x)
{
	*x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
	return *x;
}

static void put_pattern(rmp_pool *p, rmp_addr a, uint64_t size, uint64_t seed)
{
	uint8_t *b = malloc(size);

	if (!b)
		check_die("out of memory");
	du_fill(b, size, seed);
	du_require_ok(rmp_write(p, a, b, size), "rmp_write");
	free(b);
}

/* ------------------------------------------------------------ the victim */

struct hold_job {
	rmp_pool *p;
	unsigned from, to;
	rmp_addr *a;
};

static void *hold_main(void *arg)
{
	struct hold_job *j = arg;

	for (unsigned i = j->from; i < j->to; i++) {
		du_require_ok(rmp_alloc(j->p, HOLD_SIZE, &j->a[i]), "rmp_alloc (held block)");
		put_pattern(j->p, j->a[i], HOLD_SIZE, 0xC0DE + i);
	}
	return NULL;
}

/* HOLD_N blocks from two threads: two shards, so two of its tags. */
static void hold_blocks(rmp_pool *p, rmp_addr *a)
{
	struct hold_job j[2];
	pthread_t t[2];

	for (unsigned k = 0; k < 2; k++) {
		j[k] = (struct hold_job){ .p = p, .from = HOLD_N * k / 2, .to = HOLD_N * (k + 1) / 2, .a = a };
		if (pthread_create(&t[k], NULL, hold_main, &j[k]))
			check_die("pthread_create");
	}
	for (unsigned k = 0; k < 2; k++)
		pthread_join(t[k], NULL);
}

struct opcost {
	uint64_t ops, rts;
};

static void cost_begin(rmp_pool *p, struct opcost *c)
{
	struct rmp_pool_stats st;

	du_require_ok(rmp_pool_stats(p, &st), "rmp_pool_stats");
	c->rts = st.alloc_round_trips + st.free_round_trips;
	c->ops = rmp_store_rdma_test_ops();
}

static void cost_end(rmp_pool *p, struct opcost *c)
{
	struct rmp_pool_stats st;

	du_require_ok(rmp_pool_stats(p, &st), "rmp_pool_stats");
	c->rts = st.alloc_round_trips + st.free_round_trips - c->rts;
	c->ops = rmp_store_rdma_test_ops() - c->ops;
}

/* Allocates S_SIZE blocks until one is the product of a split: it cost
 * 3+ round trips and the next alloc gets its buddy (the split's other
 * half, left free), which is freed again (no merge: the block is
 * allocated). The others are kept in extra[] (written); the split one is
 * returned, with its buddy free. */
static rmp_addr find_split(rmp_pool *p, rmp_addr *extra, unsigned *n_extra, struct opcost *cost)
{
	for (unsigned i = 0; i < SPLIT_TRIES && *n_extra + 3 <= SPLIT_TRIES; i++) {
		rmp_addr a, z;
		cost_begin(p, cost);
		du_require_ok(rmp_alloc(p, S_SIZE, &a), "rmp_alloc (looking for a split)");
		cost_end(p, cost);
		put_pattern(p, a, S_SIZE, 0x5117 + i);
		if (cost->rts < 3) {
			extra[(*n_extra)++] = a;
			continue;
		}
		du_require_ok(rmp_alloc(p, S_SIZE, &z), "rmp_alloc (the split's other half)");
		if (RMP_ADDR_OFFSET(z) == (RMP_ADDR_OFFSET(a) ^ S_SIZE)) {
			du_require_ok(rmp_free(p, z), "rmp_free (the split's other half)");
			return a;
		}
		extra[(*n_extra)++] = a;
		put_pattern(p, z, S_SIZE, 0x5117 + i + SPLIT_TRIES);
		extra[(*n_extra)++] = z;
	}
	check_die("no alloc of %u bytes split in %u tries", S_SIZE, SPLIT_TRIES);
}

struct rand_job {
	rmp_pool *p;
	uint64_t rng;
	unsigned ops; /* per thread */
	rmp_addr a[RAND_HELD];
	unsigned n;
};

static void *rand_main(void *arg)
{
	struct rand_job *j = arg;

	for (unsigned i = 0; i < j->ops; i++) {
		uint64_t r = rng_next(&j->rng);
		if (j->n == RAND_HELD || (j->n > 0 && r % 2)) {
			unsigned k = (unsigned)(r >> 8) % j->n;
			du_require_ok(rmp_free(j->p, j->a[k]), "rmp_free (random)");
			j->a[k] = j->a[--j->n];
			continue;
		}
		uint64_t size = (uint64_t)SMALL_SIZE << ((r >> 16) % 6);
		int rc = rmp_alloc(j->p, size, &j->a[j->n]);
		if (rc == -ENOMEM || rc == -EAGAIN)
			continue;
		du_require_ok(rc, "rmp_alloc (random)");
		put_pattern(j->p, j->a[j->n++], size, r);
	}
	return NULL;
}

/* The random workload from RAND_THREADS threads, ops each; j[] keeps
 * what they hold (the count mode frees it). */
static void run_random(rmp_pool *p, uint64_t seed, unsigned ops, struct rand_job *j)
{
	pthread_t t[RAND_THREADS];

	for (unsigned k = 0; k < RAND_THREADS; k++) {
		j[k] = (struct rand_job){ .p = p, .rng = seed * 0x9E3779B97F4A7C15ull + k + 1, .ops = ops };
		if (pthread_create(&t[k], NULL, rand_main, &j[k]))
			check_die("pthread_create");
	}
	for (unsigned k = 0; k < RAND_THREADS; k++)
		pthread_join(t[k], NULL);
}

/* The kill did not come: the operation ended first. Say so, then die
 * right after it (a kill after its last word operation). */
static void noreturn_short(const char *kind, uint64_t k, uint64_t done)
{
	write_file("victim.short", "kind %s k %" PRIu64 " ended after %" PRIu64 "\n", kind, k, done);
	fprintf(stderr, "crash_data: %s ended after %" PRIu64 " word operations, before k = %" PRIu64
		": killed after it\n", kind, done, k);
	raise(SIGKILL);
	abort();
}

static int cmd_victim(const char *name, const char *kind, uint64_t k, uint64_t seed)
{
	static rmp_addr held[HOLD_N], extra[SPLIT_TRIES];
	unsigned n_extra = 0;
	rmp_client *cl;
	rmp_pool *p = du_open_pool(name, &cl);
	struct rmp_pool_info *in;
	struct opcost cost, setup_cost = { 0 };
	rmp_addr x = 0, y = 0;
	uint64_t ops0;

	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	if (in->min_block > SMALL_SIZE)
		check_die("the pool's min block is %" PRIu64 ", this test needs at most %u", in->min_block, SMALL_SIZE);
	uint64_t lease = in->lease_id;
	rmp_pool_info_free(in);
	hold_blocks(p, held);
	uint64_t held_bytes = (uint64_t)HOLD_N * HOLD_SIZE;
	int is_split = strcmp(kind, "split") == 0, is_merge = strcmp(kind, "merge") == 0;
	int is_cache = strcmp(kind, "cache") == 0, is_random = strcmp(kind, "random") == 0;
	if (!is_split && !is_merge && !is_cache && !is_random)
		check_die("unknown kind '%s' (split, merge, cache, random)", kind);
	(void)rmp_store_rdma_test_ops(); /* counting on from here */
	/* A dry run of the operation first, undone (an alloc freed merges
	 * back, a free is followed by a new split block): its length this
	 * time, as the other clients' blocks lie now. */
	struct opcost dry = { 0 };
	if (is_split || is_merge) {
		unsigned tries = 0;
		for (;; tries++) {
			if (tries == DRY_TRIES)
				check_die("%s: the dry run did not %s in %u tries (other clients' frees made blocks "
					  "of %u bytes free each time)", kind, is_split ? "split" : "merge", DRY_TRIES,
					  S_SIZE);
			x = find_split(p, extra, &n_extra, &setup_cost);
			if (is_split) {
				du_require_ok(rmp_free(p, x), "rmp_free (the split block, merging back)");
				cost_begin(p, &dry);
				du_require_ok(rmp_alloc(p, S_SIZE, &y), "rmp_alloc (split, dry run)");
				cost_end(p, &dry);
				if (dry.rts >= 3) {
					du_require_ok(rmp_free(p, y), "rmp_free (the dry run's block, merging back)");
					break;
				}
				put_pattern(p, y, S_SIZE, 0xD27 + tries);
				extra[n_extra++] = y; /* a free block of its size was there: not a split */
			} else {
				cost_begin(p, &dry);
				du_require_ok(rmp_free(p, x), "rmp_free (merge, dry run)");
				cost_end(p, &dry);
				if (dry.rts >= 2) {
					x = find_split(p, extra, &n_extra, &setup_cost);
					break;
				}
			}
		}
		held_bytes += (uint64_t)n_extra * S_SIZE;
	}
	if (is_cache || (is_random && seed % 2))
		du_require_ok(rmp_pool_set_small_cache(p, CACHE_MAX), "rmp_pool_set_small_cache");
	/* held: what the reclaim must give back whatever k is (the setup's
	 * blocks; the block a merge frees may be free already). */
	write_file("victim.ready", "client %" PRIu64 " lease %" PRIu64 " kind %s k %" PRIu64 " held %" PRIu64
		   " dry_ops %" PRIu64 " dry_rts %" PRIu64 "\n", rmp_client_id(cl), lease, kind, k, held_bytes, dry.ops,
		   dry.rts);
	ops0 = rmp_store_rdma_test_ops();
	if (k)
		rmp_store_rdma_test_kill_after(k);
	cost_begin(p, &cost);
	if (is_split) {
		du_require_ok(rmp_alloc(p, S_SIZE, &y), "rmp_alloc (split)");
	} else if (is_merge) {
		du_require_ok(rmp_free(p, x), "rmp_free (merge)");
	} else if (is_cache) {
		du_require_ok(rmp_alloc(p, SMALL_SIZE, &y), "rmp_alloc (cached)");
	} else {
		static struct rand_job j[RAND_THREADS];
		run_random(p, seed, k ? 100000 : RAND_OPS, j);
		if (k)
			noreturn_short(kind, k, rmp_store_rdma_test_ops() - ops0);
		cost_end(p, &cost);
		write_file("count.random", "count random ops %" PRIu64 " rts %" PRIu64 " threads %u ops_per_thread %u\n",
			   cost.ops, cost.rts, RAND_THREADS, RAND_OPS);
		for (unsigned t = 0; t < RAND_THREADS; t++)
			for (unsigned i = 0; i < j[t].n; i++)
				du_require_ok(rmp_free(p, j[t].a[i]), "rmp_free");
		goto out_free;
	}
	cost_end(p, &cost);
	if (k)
		noreturn_short(kind, k, cost.ops);
	/* The count mode: the evidence. */
	if (is_split) {
		struct opcost c2;
		rmp_addr z;
		cost_begin(p, &c2);
		du_require_ok(rmp_alloc(p, S_SIZE, &z), "rmp_alloc (the split's other half)");
		cost_end(p, &c2);
		int buddy = RMP_ADDR_OFFSET(z) == (RMP_ADDR_OFFSET(y) ^ S_SIZE);
		write_file("count.split", "count split ops %" PRIu64 " rts %" PRIu64 " next_alloc_ops %" PRIu64
			   " next_alloc_rts %" PRIu64 " next_is_buddy %d dry_ops %" PRIu64 "\n", cost.ops, cost.rts, c2.ops,
			   c2.rts, buddy, dry.ops);
		du_require_ok(rmp_free(p, z), "rmp_free");
		du_require_ok(rmp_free(p, y), "rmp_free");
		if (cost.rts < 3 || !buddy)
			return 4;
	} else if (is_merge) {
		write_file("count.merge", "count merge ops %" PRIu64 " rts %" PRIu64 " split_ops %" PRIu64
			   " split_rts %" PRIu64 " dry_ops %" PRIu64 "\n", cost.ops, cost.rts, setup_cost.ops,
			   setup_cost.rts, dry.ops);
		if (cost.rts < 2)
			return 4;
	} else {
		struct rmp_small_cache_stats cs = { .size = sizeof(cs) };
		du_require_ok(rmp_pool_small_cache_stats(p, &cs), "rmp_pool_small_cache_stats");
		write_file("count.cache", "count cache ops %" PRIu64 " rts %" PRIu64 " chunks_claimed %" PRIu64
			   " bytes_held %" PRIu64 "\n", cost.ops, cost.rts, cs.chunks_claimed, cs.bytes_held);
		du_require_ok(rmp_free(p, y), "rmp_free");
		if (cs.chunks_claimed != 1 || cost.ops == 0)
			return 4;
	}
out_free:
	for (unsigned i = 0; i < n_extra; i++)
		du_require_ok(rmp_free(p, extra[i]), "rmp_free");
	for (unsigned i = 0; i < HOLD_N; i++)
		du_require_ok(rmp_free(p, held[i]), "rmp_free");
	du_close_pool(p, cl);
	return 0;
}

/* ------------------------------------------------------------ the survivor */

struct sblock {
	rmp_addr a;
	uint64_t size, seed;
};

struct sthread {
	unsigned id;
	rmp_pool *p;
	pthread_t t;
	uint64_t rng, gap_us;
	struct sblock b[SURV_HELD];
	unsigned n;
	_Atomic uint64_t ops;
	_Atomic int parked;
	uint8_t *buf, *buf2;
};

static _Atomic int s_pause, s_stop;
static _Atomic uint64_t s_wrong, s_twice;
static _Atomic uint8_t *s_owner;
static uint64_t s_granules;

/* Claims (mine = thread id + 1) or releases (mine = 0) the block's
 * granules; a granule not as expected is a block handed out twice. */
static void owner_claim(const struct sthread *t, rmp_addr a, uint64_t size, int claim)
{
	uint64_t off = RMP_ADDR_OFFSET(a);

	if ((off + size) / GRANULE > s_granules)
		check_die("block at %#" PRIx64 " (%" PRIu64 " bytes) lies beyond the space", off, size);
	for (uint64_t g = off / GRANULE; g < (off + size) / GRANULE; g++) {
		uint8_t want = claim ? 0 : (uint8_t)(t->id + 1), to = claim ? (uint8_t)(t->id + 1) : 0;
		uint8_t seen = want;
		if (!atomic_compare_exchange_strong(&s_owner[g], &seen, to)) {
			if (atomic_fetch_add(&s_twice, 1) < 10)
				fprintf(stderr, "crash_data: FAILED: survivor thread %u: block at %#" PRIx64 " (%" PRIu64
					" bytes) %s: its bytes at %#" PRIx64 " are held by thread %u\n", t->id, off, size,
					claim ? "handed out twice (this process still holds part of it)"
					      : "released but not held",
					g * GRANULE, (unsigned)seen ? (unsigned)seen - 1 : 0);
		}
	}
}

/* The block's bytes against its pattern; differences are counted. */
static uint64_t verify(struct sthread *t, const struct sblock *b, const char *when)
{
	du_require_ok(rmp_read(t->p, t->buf, b->a, b->size), "rmp_read");
	du_fill(t->buf2, b->size, b->seed);
	uint64_t diff = 0;
	for (uint64_t i = 0; i < b->size; i++)
		diff += t->buf[i] != t->buf2[i];
	if (diff) {
		atomic_fetch_add(&s_wrong, diff);
		fprintf(stderr, "crash_data: FAILED: survivor thread %u: block at %#" PRIx64 " (%" PRIu64 " bytes), %s: %"
			PRIu64 " bytes differ from its pattern\n", t->id, (uint64_t)RMP_ADDR_OFFSET(b->a), b->size, when,
			diff);
	}
	return diff;
}

static void surv_step(struct sthread *t)
{
	uint64_t r = rng_next(&t->rng);

	if (t->n == SURV_HELD || (t->n > 0 && r % 2)) {
		unsigned k = (unsigned)(r >> 8) % t->n;
		struct sblock *b = &t->b[k];
		verify(t, b, "before its free");
		owner_claim(t, b->a, b->size, 0);
		du_require_ok(rmp_free(t->p, b->a), "survivor rmp_free");
		*b = t->b[--t->n];
	} else {
		struct sblock *b = &t->b[t->n];
		b->size = (uint64_t)SMALL_SIZE << ((r >> 16) % 6);
		int rc = rmp_alloc(t->p, b->size, &b->a);
		if (rc == -ENOMEM || rc == -EAGAIN)
			return;
		du_require_ok(rc, "survivor rmp_alloc");
		owner_claim(t, b->a, b->size, 1);
		b->seed = r ^ ((uint64_t)t->id << 56);
		du_fill(t->buf, b->size, b->seed);
		du_require_ok(rmp_write(t->p, b->a, t->buf, b->size), "survivor rmp_write");
		t->n++;
	}
	atomic_fetch_add(&t->ops, 1);
}

static void *surv_main(void *arg)
{
	struct sthread *t = arg;

	while (!atomic_load(&s_stop)) {
		if (atomic_load(&s_pause)) {
			atomic_store(&t->parked, 1);
			while (atomic_load(&s_pause) && !atomic_load(&s_stop))
				usleep(1000);
			atomic_store(&t->parked, 0);
			continue;
		}
		surv_step(t);
		if (t->gap_us)
			usleep((useconds_t)(rng_next(&t->rng) % (2 * t->gap_us)));
	}
	return NULL;
}

/* Every thread parked: their blocks as the metadata count them. */
static uint64_t surv_live(rmp_pool *p, struct sthread *th, unsigned n, uint64_t min_block)
{
	struct rmp_small_cache_stats cs = { .size = sizeof(cs) };
	uint64_t live = 0;

	du_require_ok(rmp_pool_small_cache_stats(p, &cs), "rmp_pool_small_cache_stats");
	for (unsigned i = 0; i < n; i++)
		for (unsigned k = 0; k < th[i].n; k++)
			if (th[i].b[k].size > CACHE_MAX)
				live += th[i].b[k].size > min_block ? th[i].b[k].size : min_block;
	return live + cs.bytes_held;
}

static void surv_pause(rmp_pool *p, struct sthread *th, unsigned n, uint64_t min_block)
{
	atomic_store(&s_pause, 1);
	for (unsigned i = 0; i < n; i++)
		for (unsigned w = 0; !atomic_load(&th[i].parked); w++) {
			if (w > 10000)
				check_die("survivor thread %u did not park within 10 s", i);
			usleep(1000);
		}
	uint64_t ops = 0;
	for (unsigned i = 0; i < n; i++)
		ops += atomic_load(&th[i].ops);
	uint64_t live = surv_live(p, th, n, min_block);
	struct rmp_pool_check_report r = { .size = sizeof(r) };
	int rc = rmp_pool_check(p, 0, &r);
	if (rc)
		snprintf(r.error, sizeof(r.error), "rmp_pool_check: %s", rmp_strerror(rc));
	write_file("report", "live %" PRIu64 " valid %d free %" PRIu64 " usable %" PRIu64 " ops %" PRIu64
		   " wrong %" PRIu64 " twice %" PRIu64 " | %s\n", live, rc == 0 && r.valid, r.free_bytes, r.usable, ops,
		   atomic_load(&s_wrong), atomic_load(&s_twice), r.valid ? "" : r.error);
	for (unsigned w = 0; file_exists("PAUSE"); w++) {
		if (w > 120000)
			check_die("paused for 10 minutes");
		usleep(5000);
	}
	char path[512];
	snprintf(path, sizeof(path), "%s/report", dir);
	unlink(path);
	atomic_store(&s_pause, 0);
}

static int cmd_survivor(const char *name, unsigned nthreads, uint64_t gap_us)
{
	static struct sthread th[SURV_MAX_THREADS];
	rmp_client *cl;
	rmp_pool *p = du_open_pool(name, &cl);
	struct rmp_pool_info *in;

	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	uint64_t min_block = in->min_block, lease = in->lease_id;
	s_granules = in->space / GRANULE;
	rmp_pool_info_free(in);
	if (min_block > SMALL_SIZE)
		check_die("the pool's min block is %" PRIu64 ", this test needs at most %u", min_block, SMALL_SIZE);
	s_owner = calloc(s_granules, 1);
	if (!s_owner)
		check_die("out of memory");
	du_require_ok(rmp_pool_set_small_cache(p, CACHE_MAX), "rmp_pool_set_small_cache");
	for (unsigned i = 0; i < nthreads; i++) {
		th[i] = (struct sthread){ .id = i, .p = p, .rng = 0xABCDull * (i + 1), .gap_us = gap_us };
		th[i].buf = malloc((size_t)SMALL_SIZE << 5);
		th[i].buf2 = malloc((size_t)SMALL_SIZE << 5);
		if (!th[i].buf || !th[i].buf2 || pthread_create(&th[i].t, NULL, surv_main, &th[i]))
			check_die("cannot start survivor thread %u", i);
	}
	write_file("survivor.ready", "client %" PRIu64 " lease %" PRIu64 " threads %u\n", rmp_client_id(cl), lease,
		   nthreads);
	printf("crash_data: survivor: client %" PRIu64 " lease %" PRIu64 ", %u threads\n", rmp_client_id(cl), lease,
	       nthreads);
	for (uint64_t w = 0; !file_exists("STOP"); w++) {
		if (w > 720000)
			check_die("no STOP within an hour");
		if (file_exists("PAUSE"))
			surv_pause(p, th, nthreads, min_block);
		usleep(5000);
	}
	atomic_store(&s_stop, 1);
	uint64_t ops = 0, blocks = 0, bad = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(th[i].t, NULL);
		ops += atomic_load(&th[i].ops);
		for (unsigned k = 0; k < th[i].n; k++, blocks++)
			bad += verify(&th[i], &th[i].b[k], "at the end") != 0;
		for (unsigned k = 0; k < th[i].n; k++) {
			owner_claim(&th[i], th[i].b[k].a, th[i].b[k].size, 0);
			du_require_ok(rmp_free(p, th[i].b[k].a), "survivor rmp_free");
		}
		free(th[i].buf);
		free(th[i].buf2);
	}
	/* What the reclaims' quiet moments cost this consumer. */
	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	printf("crash_data: survivor: %" PRIu64 " POOL_HOLDs received, %" PRIu64 " allocations and frees waited in "
	       "them, %" PRIu64 " ms in all\n", in->holds, in->hold_waits, in->hold_wait_ms);
	rmp_pool_info_free(in);
	du_close_pool(p, cl);
	printf("crash_data: survivor: %" PRIu64 " operations; at the end %" PRIu64 " blocks read back, %" PRIu64
	       " differ; %" PRIu64 " wrong bytes in all, %" PRIu64 " handed out twice\n", ops, blocks, bad,
	       atomic_load(&s_wrong), atomic_load(&s_twice));
	return atomic_load(&s_wrong) || atomic_load(&s_twice) ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 6 && strcmp(argv[1], "victim") == 0) {
		dir = argv[5];
		return cmd_victim(argv[2], argv[3], strtoull(argv[4], NULL, 0),
				  argc >= 7 ? strtoull(argv[6], NULL, 0) : 1);
	}
	if (argc >= 6 && strcmp(argv[1], "survivor") == 0) {
		unsigned n = (unsigned)strtoul(argv[3], NULL, 0);
		if (n == 0 || n > SURV_MAX_THREADS)
			check_die("survivor: THREADS 1..%u", SURV_MAX_THREADS);
		dir = argv[5];
		return cmd_survivor(argv[2], n, strtoull(argv[4], NULL, 0));
	}
	fprintf(stderr, "usage: crash_data victim NAME KIND K DIR [SEED]\n"
			"       crash_data survivor NAME THREADS GAP_US DIR\n");
	return 2;
}
