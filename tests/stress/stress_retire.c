/*
 * stress_retire.c - retiring a segment while threads allocate and free.
 *
 * A plain executable, like stress_heap, so that it also runs under TSan.
 * Each round formats a fresh 256 KiB buddy heap of 256 B blocks on the
 * local word store (direct, or with --rdma-like stale loads and shuffled
 * batches) cut into 4 segments of 64 KiB, and starts --threads threads
 * that each keep up to 16 live blocks of 256 B .. 8 KiB, replacing a
 * random one per step; an owner array with one entry per minimum block
 * is claimed with CAS for every block handed out, so two live blocks
 * sharing a byte fail the run. Meanwhile two retiring threads (two
 * coordinators, or a coordinator's repeat racing its first call) retire
 * the round's segment at once, as the coordinator does for a dead donor:
 *   1. the workers do not know: their frees in the segment go FREE;
 *   2. they learn (each acknowledges): from then on they free blocks in
 *      the segment with rmp_buddy_free_retired; both retirers repeat;
 *   3. sealed: no allocation begun after it may touch the segment.
 * At the end of a round the workers free everything and the walker checks
 * the metadata: the segment is retired and nothing else (free space is
 * one block at each level above it: full coalescing around it), and the
 * bytes the retires said they reserved plus those freed as retired are
 * the segment, exactly: each byte went RESERVED once.
 *
 *   stress_retire [--threads N] [--rounds N] [--steps N] [--rdma-like]
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buddy.h"
#include "check.h"
#include "store_local.h"

#define CAP_ORDER 18u /* 256 KiB */
#define MIN_ORDER 8u  /* 256 B: 4096 owner entries */
#define SEG_ORDER 16u /* 64 KiB: 4 segments */
#define MAX_ORDER_ASKED 13u
#define LIVE 16u
#define MAX_THREADS 8u

enum { PH_UNAWARE, PH_LEARNED, PH_SEALED, PH_STOP };

struct round {
	struct rmp_buddy b;
	struct rmp_store_local store;
	uint64_t seg_lo, seg_hi;
	_Atomic int phase;
	_Atomic unsigned acks;
	_Atomic uint32_t owner[1u << (CAP_ORDER - MIN_ORDER)];
	_Atomic uint64_t retired_by_free; /* bytes freed as retired */
};

struct worker {
	struct round *r;
	struct rmp_buddy_ctx ctx;
	unsigned id;
	pthread_t tid;
	_Atomic uint64_t steps;
	uint64_t eagain, enomem;
};

struct retirer {
	struct round *r;
	struct rmp_buddy_ctx ctx;
	pthread_t tid;
	uint64_t bytes, eagain;
	struct rmp_buddy_stats st;
};

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static bool in_segment(const struct round *r, uint64_t off, unsigned order)
{
	return off < r->seg_hi && off + (1ull << order) > r->seg_lo;
}

static void own(struct round *r, uint64_t off, unsigned order, uint32_t me)
{
	for (uint64_t i = off >> MIN_ORDER; i < (off + (1ull << order)) >> MIN_ORDER; i++) {
		uint32_t expect = 0;
		if (!atomic_compare_exchange_strong(&r->owner[i], &expect, me)) {
			check_fail("overlap: minimum block %llu already owned by thread %u", (unsigned long long)i,
				   expect - 1);
			return;
		}
	}
}

static void disown(struct round *r, uint64_t off, unsigned order, uint32_t me)
{
	for (uint64_t i = off >> MIN_ORDER; i < (off + (1ull << order)) >> MIN_ORDER; i++) {
		uint32_t expect = me;
		if (!atomic_compare_exchange_strong(&r->owner[i], &expect, 0)) {
			check_fail("owner entry %llu changed under its owner (now %u)", (unsigned long long)i, expect);
			return;
		}
	}
}

static void worker_free(struct worker *w, uint64_t off, unsigned order, bool learned)
{
	struct round *r = w->r;
	bool retired = learned && in_segment(r, off, order);
	disown(r, off, order, w->id + 1);
	int rc = retired ? rmp_buddy_free_retired(&r->b, &w->ctx, off, order) : rmp_buddy_free(&r->b, &w->ctx, off, order);
	CHECK(rc == 0, "thread %u: %s of %llu (order %u): %d", w->id, retired ? "free_retired" : "free",
	      (unsigned long long)off, order, rc);
	if (retired && rc == 0)
		atomic_fetch_add(&r->retired_by_free, 1ull << order);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct round *r = w->r;
	uint64_t live[LIVE], x = 0x9E3779B97F4A7C15ull * (w->id + 1) + (uint64_t)r->seg_lo;
	unsigned ord[LIVE], n = 0;
	bool learned = false;

	for (;;) {
		int p = atomic_load(&r->phase);
		if (p == PH_STOP)
			break;
		if (p >= PH_LEARNED && !learned) {
			learned = true;
			atomic_fetch_add(&r->acks, 1);
		}
		uint64_t v = rnd(&x);
		if (n == LIVE || (n > 0 && v % 2)) {
			unsigned k = (unsigned)((v >> 8) % n);
			worker_free(w, live[k], ord[k], learned);
			live[k] = live[--n];
			ord[k] = ord[n];
		} else {
			unsigned o = MIN_ORDER + (unsigned)((v >> 20) % (MAX_ORDER_ASKED - MIN_ORDER + 1));
			int rc = rmp_buddy_alloc(&r->b, &w->ctx, o, &live[n]);
			if (rc == 0) {
				CHECK(p < PH_SEALED || !in_segment(r, live[n], o),
				      "thread %u: block at %llu (order %u) handed out in the retired segment [%llu, %llu)",
				      w->id, (unsigned long long)live[n], o, (unsigned long long)r->seg_lo,
				      (unsigned long long)r->seg_hi);
				own(r, live[n], o, w->id + 1);
				ord[n++] = o;
			} else if (rc == -EAGAIN)
				w->eagain++;
			else if (rc == -ENOMEM)
				w->enomem++;
			else
				CHECK(0, "thread %u: alloc of order %u: %d", w->id, o, rc);
		}
		atomic_fetch_add(&w->steps, 1);
	}
	while (n > 0) {
		n--;
		worker_free(w, live[n], ord[n], true);
	}
	return NULL;
}

static void *retirer_main(void *arg)
{
	struct retirer *t = arg;
	struct round *r = t->r;
	uint64_t bytes = 0;
	int rc;

	for (unsigned k = 0; (rc = rmp_buddy_retire(&r->b, &t->ctx, r->seg_lo, SEG_ORDER, &bytes)) == -EAGAIN; k++) {
		t->bytes += bytes;
		t->eagain++;
		if (k == 100000) {
			check_fail("a retire said EAGAIN 100000 times, with nobody stalled");
			return NULL;
		}
		sched_yield();
	}
	CHECK(rc == 0, "retire: %d", rc);
	t->bytes += bytes;
	return NULL;
}

/* Both retirers at once; back when both are done. */
static void retire_twice_at_once(struct retirer *t)
{
	for (unsigned k = 0; k < 2; k++)
		REQUIRE(pthread_create(&t[k].tid, NULL, retirer_main, &t[k]) == 0, "pthread_create");
	for (unsigned k = 0; k < 2; k++)
		pthread_join(t[k].tid, NULL);
}

static void wait_steps(struct worker *w, unsigned n, uint64_t more)
{
	uint64_t target[MAX_THREADS];
	for (unsigned k = 0; k < n; k++)
		target[k] = atomic_load(&w[k].steps) + more;
	for (unsigned k = 0; k < n; k++)
		while (atomic_load(&w[k].steps) < target[k] && check_failures() == 0)
			sched_yield();
}

/* The round's verdict from the walker, on the quiet heap. */
static void check_round(struct round *r, const struct retirer *t, unsigned round)
{
	struct rmp_buddy_report rep;
	rmp_store_local_set_mode(&r->store, 0, 0); /* quiet: a READ sees what is there */
	int rc = rmp_buddy_check(&r->b, &rep);
	REQUIRE(rc == 0, "round %u: walker: %s", round, rep.error);
	unsigned tr = CAP_ORDER - SEG_ORDER;
	for (unsigned lv = 0; lv < r->b.g.levels; lv++)
		CHECK(rep.free_blocks[lv] == (lv >= 1 && lv <= tr ? 1u : 0u),
		      "round %u: level %u has %llu free blocks: not coalesced around the segment", round, lv,
		      (unsigned long long)rep.free_blocks[lv]);
	CHECK(rep.retired_bytes == 1ull << SEG_ORDER, "round %u: %llu bytes retired", round,
	      (unsigned long long)rep.retired_bytes);
	uint64_t sum = t[0].bytes + t[1].bytes + atomic_load(&r->retired_by_free);
	CHECK(sum == 1ull << SEG_ORDER,
	      "round %u: the retires reserved %llu + %llu bytes and %llu were freed as retired: not the segment",
	      round, (unsigned long long)t[0].bytes, (unsigned long long)t[1].bytes,
	      (unsigned long long)atomic_load(&r->retired_by_free));
}

int main(int argc, char **argv)
{
	unsigned nthreads = 4, rounds = 100;
	uint64_t steps = 2000;
	bool rdma_like = false;
	static const struct option opts[] = {
		{ "threads", required_argument, NULL, 't' }, { "rounds", required_argument, NULL, 'r' },
		{ "steps", required_argument, NULL, 's' },   { "rdma-like", no_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		if (c == 't')
			nthreads = (unsigned)strtoul(optarg, NULL, 10);
		else if (c == 'r')
			rounds = (unsigned)strtoul(optarg, NULL, 10);
		else if (c == 's')
			steps = strtoull(optarg, NULL, 10);
		else if (c == 'R')
			rdma_like = true;
		else {
			fprintf(stderr, "usage: stress_retire [--threads N] [--rounds N] [--steps N] [--rdma-like]\n");
			return 2;
		}
	}
	check_init("stress_retire", NULL, CHECK_FIRST_ONLY);
	REQUIRE(nthreads >= 1 && nthreads <= MAX_THREADS, "--threads: 1..%u", MAX_THREADS);

	struct rmp_buddy_geom g;
	REQUIRE(rmp_buddy_geom_init(&g, CAP_ORDER, MIN_ORDER) == 0, "geometry");
	uint64_t *words = calloc(g.total_words, sizeof(uint64_t));
	struct round *r = calloc(1, sizeof(*r));
	struct worker *w = calloc(nthreads, sizeof(*w));
	REQUIRE(words && r && w, "out of memory");
	uint64_t eagain = 0, enomem = 0, retire_eagain = 0, retire_rts = 0, retire_calls = 0;

	for (unsigned round = 0; round < rounds && check_failures() == 0; round++) {
		rmp_buddy_format(words, &g, 0);
		memset(r, 0, sizeof(*r));
		rmp_store_local_init(&r->store, (_Atomic uint64_t *)words, g.total_words);
		if (rdma_like)
			rmp_store_local_set_mode(&r->store, RMP_STORE_STALE_LOADS | RMP_STORE_SHUFFLE, 300);
		rmp_buddy_init(&r->b, &g, &r->store.base);
		r->seg_lo = (uint64_t)(round % (1u << (CAP_ORDER - SEG_ORDER))) << SEG_ORDER;
		r->seg_hi = r->seg_lo + (1ull << SEG_ORDER);
		struct retirer t[2] = { { .r = r }, { .r = r } };
		for (unsigned k = 0; k < 2; k++)
			rmp_buddy_ctx_init(&t[k].ctx, &r->b, 100 + k);
		for (unsigned k = 0; k < nthreads; k++) {
			w[k] = (struct worker){ .r = r, .id = k };
			rmp_buddy_ctx_init(&w[k].ctx, &r->b, k);
			atomic_init(&w[k].steps, 0);
			REQUIRE(pthread_create(&w[k].tid, NULL, worker_main, &w[k]) == 0, "pthread_create");
		}
		wait_steps(w, nthreads, steps);
		retire_twice_at_once(t);
		wait_steps(w, nthreads, steps); /* unaware: frees in the segment go FREE */
		atomic_store(&r->phase, PH_LEARNED);
		while (atomic_load(&r->acks) < nthreads)
			sched_yield();
		retire_twice_at_once(t);
		atomic_store(&r->phase, PH_SEALED);
		wait_steps(w, nthreads, steps);
		atomic_store(&r->phase, PH_STOP);
		for (unsigned k = 0; k < nthreads; k++) {
			pthread_join(w[k].tid, NULL);
			eagain += w[k].eagain;
			enomem += w[k].enomem;
		}
		check_round(r, t, round);
		for (unsigned k = 0; k < 2; k++) {
			rmp_buddy_stats(&t[k].ctx, &t[k].st);
			retire_eagain += t[k].eagain;
			retire_rts += t[k].st.retire.round_trips;
			retire_calls += t[k].st.retire.calls;
		}
	}
	printf("stress_retire: %u rounds, %u threads%s: workers %llu EAGAIN, %llu ENOMEM; %llu retire calls, %.1f "
	       "round trips each, %llu EAGAIN\n",
	       rounds, nthreads, rdma_like ? ", rdma-like" : "", (unsigned long long)eagain,
	       (unsigned long long)enomem, (unsigned long long)retire_calls,
	       retire_calls ? (double)retire_rts / (double)retire_calls : 0.0, (unsigned long long)retire_eagain);
	free(w);
	free(r);
	free(words);
	if (check_failures()) {
		fprintf(stderr, "stress_retire: %d failure(s)\n", check_failures());
		return 1;
	}
	return 0;
}
