/*
 * stress_heap.c - many threads on one heap, proving no overlap.
 *
 * A plain executable (Criterion cannot start under ThreadSanitizer), so
 * the same test runs in the normal, ASan/UBSan and TSan builds. Each
 * thread keeps a live set and replaces a random member each step; sizes
 * are log-uniform from the minimum block to 1/8 of the capacity. An owner
 * array with one entry per minimum block is claimed with CAS when a block
 * is handed out and released before it is freed: two live blocks sharing
 * a byte make a claim fail. A pattern at each block's first and last byte
 * is checked before the free. At the end, the walker checks the metadata
 * and the whole capacity must be allocatable in one piece.
 *
 * With --nearly-empty each thread holds one block (--live) of at most 1/64
 * of the capacity at a time (at most 16 live blocks in all: they touch at
 * most 16 of the 64 aligned blocks of that size): every request can be
 * served, so every ENOMEM is false and fails the run. The whole heap is
 * split from the top and merged back to it all the time (the case where
 * a thread held the root in passing and others said ENOMEM); an EAGAIN
 * (memory held in passing by a thread in the middle of a split or merge)
 * is counted, not failed.
 *
 * With --check-every K (the default at RMPOOL_DEBUG >= 2: every 2000
 * steps of each thread) all threads also meet at a barrier every K steps;
 * there, one of them walks the metadata with the invariant checker while
 * the heap is quiet, and the free bytes it finds plus every thread's live
 * bytes must equal the capacity. A thread that fails still comes to every
 * barrier, and all threads leave together, so a failure never hangs it.
 *
 *   stress_heap [--threads N] [--ops N] [--live N] [--rdma-like] [--nearly-empty] [--check-every K]
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "debug.h"
#include "heap_internal.h"

#define CAP_ORDER 22 /* 4 MiB */
#define MIN_ORDER 8  /* 256 B: 16384 owner entries */
#if RMPOOL_DEBUG >= 2
#define DEFAULT_CHECK_EVERY 2000u /* 1M steps, 4 threads: 125 walks of ~30 us */
#else
#define DEFAULT_CHECK_EVERY 0u
#endif

struct shared {
	rmp_heap *h;
	char *base;
	_Atomic uint32_t *owner;
	uint64_t ops_per_thread;
	unsigned live;
	/* --check-every: the barrier, and the verdict of the last walk (written
	 * only between the two barrier waits, read after the second) */
	uint64_t check_every;
	unsigned nthreads;
	int rdma_like;
	bool nearly_empty;
	pthread_barrier_t barrier;
	bool stop;
	uint64_t walks;
	struct thread *threads;
	bool inject_lost_block; /* fault injection: the walker must notice */
};

struct thread {
	struct shared *s;
	unsigned id;
	pthread_t tid;
	uint64_t tries, ok, eagain, false_enomem;
	uint64_t live_bytes; /* read by the walker at a barrier */
};

struct slot {
	char *p;
	uint64_t size; /* the block's size: power of two */
};

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static uint64_t pow2_at_least(uint64_t x, uint64_t min)
{
	uint64_t p = min;
	while (p < x)
		p <<= 1;
	return p;
}

static int claim(struct shared *s, struct slot *b, uint32_t me)
{
	uint64_t first = (uint64_t)(b->p - s->base) >> MIN_ORDER, n = b->size >> MIN_ORDER;
	for (uint64_t i = first; i < first + n; i++) {
		uint32_t expect = 0;
		if (!atomic_compare_exchange_strong(&s->owner[i], &expect, me)) {
			check_fail("overlap: minimum block %llu already owned by thread %u", (unsigned long long)i, expect - 1);
			return -1;
		}
	}
	b->p[0] = (char)me;
	b->p[b->size - 1] = (char)~me;
	return 0;
}

static int release(struct shared *s, struct slot *b, uint32_t me)
{
	uint64_t first = (uint64_t)(b->p - s->base) >> MIN_ORDER, n = b->size >> MIN_ORDER;
	if (b->p[0] != (char)me || b->p[b->size - 1] != (char)~me) {
		check_fail("pattern of a live block at offset %llu overwritten (thread %u)",
		     (unsigned long long)(b->p - s->base), me - 1);
		return -1;
	}
	for (uint64_t i = first; i < first + n; i++) {
		uint32_t expect = me;
		if (!atomic_compare_exchange_strong(&s->owner[i], &expect, 0)) {
			check_fail("owner entry %llu changed under its owner (now %u)", (unsigned long long)i, expect);
			return -1;
		}
	}
	return 0;
}

/* One step: replace a random member of the live set. 0, or -1 on a
 * failure (already reported). */
static int step_once(struct thread *t, struct slot *live, uint64_t *x)
{
	struct shared *s = t->s;
	uint32_t me = t->id + 1;
	double lo = MIN_ORDER, hi = s->nearly_empty ? CAP_ORDER - 6 : CAP_ORDER - 3;
	struct slot *b = &live[rnd(x) % s->live];

	if (b->p) {
		if (release(s, b, me) != 0)
			return -1;
		int rc = rmp_heap_free(s->h, b->p);
		if (rc != 0) {
			check_fail("free of a live block at offset %llu failed: %s",
			     (unsigned long long)(b->p - s->base), strerror(-rc));
			return -1;
		}
		t->live_bytes -= b->size;
		b->p = NULL;
	}
	/* log-uniform size in [2^lo, 2^hi] */
	double e = lo + (hi - lo) * ((double)(rnd(x) >> 11) / (double)(1ull << 53));
	uint64_t size = (uint64_t)exp2(e);
	t->tries++;
	b->p = rmp_heap_alloc(s->h, size);
	if (!b->p) {
		if (errno == EAGAIN) {
			t->eagain++; /* memory held in passing by another thread: documented */
			return 0;
		}
		if (errno == ENOMEM && s->nearly_empty) {
			t->false_enomem++; /* there was room: see the opening comment */
			return 0;
		}
		if (errno != ENOMEM) {
			check_fail("alloc of %llu bytes: %s", (unsigned long long)size, strerror(errno));
			return -1;
		}
		return 0;
	}
	t->ok++;
	b->size = pow2_at_least(size, 1ull << MIN_ORDER);
	t->live_bytes += b->size;
	return claim(s, b, me);
}

/* Run by one thread while all others wait at the barrier: the heap is
 * quiet, so the walker's view is exact. */
static void walk_at_barrier(struct shared *s)
{
	char err[200] = "";
	uint64_t free_bytes = 0, live_bytes = 0;

	if (s->rdma_like)
		rmp_store_local_set_mode(rmp_heap_store(s->h), 0, 0); /* current reads */
	int rc = rmp_heap_check(s->h, err, sizeof(err), &free_bytes);
	for (unsigned i = 0; i < s->nthreads; i++)
		live_bytes += s->threads[i].live_bytes;
	if (rc)
		check_fail("invariant walker at a barrier (walk %llu): %s", (unsigned long long)s->walks, err);
	else if (free_bytes + live_bytes != 1ull << CAP_ORDER)
		check_fail("walk %llu: %llu bytes free + %llu live != capacity %llu", (unsigned long long)s->walks,
		     (unsigned long long)free_bytes, (unsigned long long)live_bytes, 1ull << CAP_ORDER);
	if (s->rdma_like)
		rmp_store_local_set_mode(rmp_heap_store(s->h), RMP_STORE_STALE_LOADS | RMP_STORE_SHUFFLE, 200);
	s->walks++;
	s->stop = check_failures() != 0;
}

/* Every thread calls this the same number of times. 1: stop now. */
static int barrier_check(struct shared *s)
{
	if (pthread_barrier_wait(&s->barrier) == PTHREAD_BARRIER_SERIAL_THREAD)
		walk_at_barrier(s);
	pthread_barrier_wait(&s->barrier);
	return s->stop;
}

static void *thread_main(void *arg)
{
	struct thread *t = arg;
	struct shared *s = t->s;
	uint32_t me = t->id + 1;
	uint64_t x = 0x243F6A8885A308D3ull * (t->id + 1);
	struct slot *live = calloc(s->live, sizeof(*live));
	bool broken = false; /* this thread failed: it only meets the barriers */

	for (uint64_t step = 0; step < s->ops_per_thread; step++) {
		if (s->inject_lost_block && t->id == 0 && step == s->ops_per_thread / 2 && live[0].p) {
			/* Forget a live block without freeing it: a leak the walk at
			 * the next barrier must report. */
			t->live_bytes -= live[0].size;
			live[0].p = NULL;
		}
		if (!broken && !check_failures() && step_once(t, live, &x) != 0)
			broken = true;
		if (s->check_every) {
			if ((step + 1) % s->check_every == 0 && barrier_check(s))
				break;
		} else if (broken || check_failures()) {
			break;
		}
	}
	for (unsigned i = 0; i < s->live; i++)
		if (live[i].p && !check_failures()) {
			if (release(s, &live[i], me) == 0 && rmp_heap_free(s->h, live[i].p) != 0)
				check_fail("final free at offset %llu failed", (unsigned long long)(live[i].p - s->base));
		}
	free(live);
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned nthreads = 4, live = 0;
	uint64_t ops = 1000000;
	int rdma_like = 0;
	static const struct option opts[] = {
		{ "threads", required_argument, NULL, 't' },
		{ "ops", required_argument, NULL, 'n' },
		{ "live", required_argument, NULL, 'l' },
		{ "rdma-like", no_argument, NULL, 'r' },
		{ "nearly-empty", no_argument, NULL, 'e' },
		{ "check-every", required_argument, NULL, 'c' },
		{ "inject-lost-block", no_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t check_every = DEFAULT_CHECK_EVERY;
	bool inject = false, nearly_empty = false;
	/* "stress_heap: FAILED: why" for the first failure only: the threads
	 * that trip over the same broken heap after it add nothing. */
	check_init("stress_heap", NULL, CHECK_FIRST_ONLY);
	for (int c; (c = getopt_long(argc, argv, "t:n:l:rec:Lh", opts, NULL)) != -1;) {
		switch (c) {
		case 't': nthreads = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'n': ops = strtoull(optarg, NULL, 10); break;
		case 'l': live = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r': rdma_like = 1; break;
		case 'e': nearly_empty = true; break;
		case 'c': check_every = strtoull(optarg, NULL, 10); break;
		case 'L': inject = true; break;
		default:
			fprintf(c == 'h' ? stdout : stderr,
				"usage: %s [--threads N (4)] [--ops TOTAL (1000000)] [--live PER_THREAD (4; 1)] [--rdma-like]\n"
				"          [--nearly-empty] [--check-every K (%u)]\n"
				"  --rdma-like: the store returns stale loads and completes batches in random order\n"
				"  --nearly-empty: blocks of at most 1/64 of the heap, 1 per thread: any ENOMEM is\n"
				"                  false and fails the run (EAGAIN is counted)\n"
				"  --check-every: all threads stop every K steps while one walks the metadata\n"
				"                 (0: only at the end; the default is set by RMPOOL_DEBUG)\n"
				"  --inject-lost-block: thread 0 forgets a live block halfway (must FAIL)\n",
				argv[0], DEFAULT_CHECK_EVERY);
			return c == 'h' ? 0 : 2;
		}
	}
	if (live == 0)
		live = nearly_empty ? 1 : 4;
	if (nthreads < 1 || nthreads > 64 || live < 1 || ops < nthreads) {
		fprintf(stderr, "stress_heap: --threads must be 1..64, --live >= 1, --ops >= threads\n");
		return 2;
	}
	if (nearly_empty && nthreads * live > 16) {
		/* 16 live blocks of 1/64 touch at most 16 of the 64 aligned
		 * blocks of that size: room for every request is certain. */
		fprintf(stderr, "stress_heap: --nearly-empty allows at most 16 live blocks in all (threads x live)\n");
		return 2;
	}

	struct shared s = { .ops_per_thread = ops / nthreads, .live = live, .check_every = check_every,
			    .nthreads = nthreads, .rdma_like = rdma_like, .inject_lost_block = inject,
			    .nearly_empty = nearly_empty };
	int rc = rmp_heap_create(1ull << CAP_ORDER, 1ull << MIN_ORDER, &s.h);
	if (rc) {
		fprintf(stderr, "rmp_heap_create(): %s\n", strerror(-rc));
		return 1;
	}
	s.base = rmp_heap_base(s.h);
	s.owner = calloc(1u << (CAP_ORDER - MIN_ORDER), sizeof(*s.owner));
	if (rdma_like)
		rmp_store_local_set_mode(rmp_heap_store(s.h), RMP_STORE_STALE_LOADS | RMP_STORE_SHUFFLE, 200);

	struct thread *t = calloc(nthreads, sizeof(*t));
	s.threads = t;
	if (check_every)
		pthread_barrier_init(&s.barrier, NULL, nthreads);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < nthreads; i++) {
		t[i] = (struct thread){ .s = &s, .id = i };
		pthread_create(&t[i].tid, NULL, thread_main, &t[i]);
	}
	uint64_t tries = 0, ok = 0, eagain = 0, false_enomem = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(t[i].tid, NULL);
		tries += t[i].tries;
		eagain += t[i].eagain;
		false_enomem += t[i].false_enomem;
		ok += t[i].ok;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	rmp_store_local_set_mode(rmp_heap_store(s.h), 0, 0); /* quiet: reads are current */

	int bad = check_failures();
	double rate = tries ? (double)ok / (double)tries : 0;
	if (check_every) {
		pthread_barrier_destroy(&s.barrier);
		printf("stress_heap: the walker ran at %llu barriers (every %llu steps per thread)\n",
		       (unsigned long long)s.walks, (unsigned long long)check_every);
	}
	printf("stress_heap: %u threads, %llu steps, %s store: %.1f%% of %llu allocations succeeded (%llu EAGAIN), %.2f s (%.0f steps/s)\n",
	       nthreads, (unsigned long long)(s.ops_per_thread * nthreads), rdma_like ? "RDMA-like" : "plain",
	       100 * rate, (unsigned long long)tries, (unsigned long long)eagain, secs,
	       (double)(s.ops_per_thread * nthreads) / secs);
	struct rmp_heap_stats st;
	rmp_heap_stats(s.h, &st);
	printf("stress_heap: per alloc %.2f loads %.2f CAS ok %.2f CAS failed %.2f FAA; per free %.2f loads %.2f CAS ok %.2f CAS failed %.2f FAA\n",
	       (double)st.alloc.loads / (double)st.alloc.calls, (double)st.alloc.cas_ok / (double)st.alloc.calls,
	       (double)st.alloc.cas_fail / (double)st.alloc.calls, (double)st.alloc.faa / (double)st.alloc.calls,
	       (double)st.free.loads / (double)st.free.calls, (double)st.free.cas_ok / (double)st.free.calls,
	       (double)st.free.cas_fail / (double)st.free.calls, (double)st.free.faa / (double)st.free.calls);
	if (nearly_empty)
		printf("stress_heap: nearly empty heap: %llu false ENOMEM, %llu EAGAIN in %llu allocations\n",
		       (unsigned long long)false_enomem, (unsigned long long)eagain, (unsigned long long)tries);
	if (!bad && false_enomem) {
		check_fail("%llu false ENOMEM (room for every request was certain)", (unsigned long long)false_enomem);
		bad = 1;
	}
	if (!bad && rate < 0.90) {
		check_fail("only %.1f%% of allocations succeeded (need 90%%)", 100 * rate);
		bad = 1;
	}
	char err[200] = "";
	uint64_t free_bytes = 0;
	if (!bad && (rc = rmp_heap_check(s.h, err, sizeof(err), &free_bytes)) != 0) {
		check_fail("invariant walker: %s", err);
		bad = 1;
	}
	if (!bad && free_bytes != 1ull << CAP_ORDER) {
		check_fail("%llu bytes free after freeing everything",
			(unsigned long long)free_bytes);
		bad = 1;
	}
	void *all = bad ? NULL : rmp_heap_alloc(s.h, 1ull << CAP_ORDER);
	if (!bad && !all) {
		check_fail("whole capacity not allocatable in one piece");
		bad = 1;
	}
	printf("stress_heap: %s\n", bad ? "FAILED" : "passed (no overlap, patterns intact, walker clean, whole capacity allocatable)");
	free(t);
	free(s.owner);
	rmp_heap_destroy(s.h);
	return bad ? 1 : 0;
}
