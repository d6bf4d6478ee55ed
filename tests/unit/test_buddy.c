/*
 * test_buddy.c - the buddy engine (common/buddy.c) on the local word
 * store: geometry, the reserved tail, the walker catching corruption, a
 * randomized sequence checked against a model in the RDMA-like store
 * mode, and lock-freedom with one client frozen after each of its word
 * operations in turn.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buddy.h"
#include "store_local.h"

struct engine {
	struct rmp_buddy_geom g;
	uint64_t *words;
	struct rmp_store_local store;
	struct rmp_buddy b;
	struct rmp_buddy_ctx ctx[8];
};

static struct engine *engine_new(unsigned max_order, unsigned min_order, uint64_t usable)
{
	struct engine *e = calloc(1, sizeof(*e));
	cr_assert_eq(rmp_buddy_geom_init(&e->g, max_order, min_order), 0);
	e->words = calloc(e->g.total_words, sizeof(uint64_t));
	rmp_buddy_format(e->words, &e->g, usable);
	rmp_store_local_init(&e->store, (_Atomic uint64_t *)e->words, e->g.total_words);
	rmp_buddy_init(&e->b, &e->g, &e->store.base);
	/* Count word operations: the freeze hook needs it. */
	rmp_store_local_set_mode(&e->store, RMP_STORE_TRACE, 0);
	for (unsigned i = 0; i < 8; i++)
		rmp_buddy_ctx_init(&e->ctx[i], &e->b, i);
	return e;
}

static void engine_free(struct engine *e)
{
	free(e->words);
	free(e);
}

static void check_ok(struct engine *e, struct rmp_buddy_report *r)
{
	int rc = rmp_buddy_check(&e->b, r);
	cr_assert_eq(rc, 0, "walker: %s", r->error);
}

Test(buddy, geometry_bounds)
{
	struct rmp_buddy_geom g;
	cr_assert_eq(rmp_buddy_geom_init(&g, 20, 8), 0);
	cr_assert_eq(g.levels, 13);
	cr_assert_eq(rmp_buddy_geom_init(&g, 8, 9), -EINVAL);
	cr_assert_eq(rmp_buddy_geom_init(&g, 58, 40), -EINVAL);
	cr_assert_eq(rmp_buddy_geom_init(&g, 40, 12), 0, "1 TiB of 4 KiB blocks");
	/* 2 bits per block per order: about 128 MiB for 1 TiB / 4 KiB, and
	 * the summary 1/63 of that on top (buddy.c: 1 MiB per 64). */
	cr_assert_lt(g.total_words * 8, (128ull << 20) + (3ull << 20));
	cr_assert_gt(g.total_words * 8, (128ull << 20) + (2ull << 20));
	cr_assert_eq(rmp_buddy_geom_init(&g, 41, 12), -EINVAL, "more levels than allowed");
	cr_assert_eq(g.levels, 29, "a failed init leaves the old geometry");

	unsigned o;
	cr_assert_eq(rmp_buddy_order_for(&g, 0, &o), -EINVAL);
	cr_assert_eq(rmp_buddy_order_for(&g, (1ull << 40) + 1, &o), -EINVAL);
	cr_assert_eq(rmp_buddy_order_for(&g, 1, &o), 0);
	cr_assert_eq(o, 12);
	cr_assert_eq(rmp_buddy_order_for(&g, 8193, &o), 0);
	cr_assert_eq(o, 14);
}

Test(buddy, reserved_tail_is_never_handed_out)
{
	/* 2^16 space, 40000 usable: the tail is reserved at creation. */
	struct engine *e = engine_new(16, 10, 40000);
	struct rmp_buddy_report r;
	uint64_t off, usable;
	check_ok(e, &r);
	cr_assert_eq(r.free_bytes, 40960, "usable rounds up to whole minimum blocks");
	cr_assert_eq(r.reserved_bytes, 65536 - 40960);
	cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[0], 16, &off), -ENOMEM);
	cr_assert_eq(rmp_buddy_free(&e->b, &e->ctx[0], 32768 + 8192, 13), -EINVAL,
		     "a reserved block cannot be freed");
	struct rmp_buddy_geom g2;
	cr_assert_eq(rmp_buddy_geom_from_header(&g2, e->words, &usable), 0);
	cr_assert_eq(usable, 40960);
	cr_assert_eq(g2.total_words, e->g.total_words);
	unsigned version = 0;
	cr_assert_eq(rmp_buddy_header_version(e->words, &version), 0);
	cr_assert_eq(version, RMP_BUDDY_VERSION);
	uint64_t hdr[RMP_BUDDY_HDR_WORDS];
	memcpy(hdr, e->words, sizeof(hdr));
	hdr[0] += 1; /* a newer layout */
	cr_assert_eq(rmp_buddy_header_version(hdr, &version), -EPROTONOSUPPORT);
	cr_assert_eq(version, RMP_BUDDY_VERSION + 1);
	cr_assert_eq(rmp_buddy_geom_from_header(&g2, hdr, &usable), -EPROTONOSUPPORT);
	hdr[0] ^= 1ull << 40; /* not buddy metadata at all */
	cr_assert_eq(rmp_buddy_geom_from_header(&g2, hdr, &usable), -EPROTO);
	unsigned n = 0;
	while (rmp_buddy_alloc(&e->b, &e->ctx[0], 10, &off) == 0) {
		cr_assert_lt(off + 1024, 40961, "block at %llu is past the usable end", (unsigned long long)off);
		n++;
	}
	cr_assert_eq(n, 40);
	engine_free(e);
}

Test(buddy, walker_catches_corruption)
{
	struct engine *e = engine_new(12, 8, 0);
	struct rmp_buddy_report r;
	uint64_t a, b;
	cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[0], 8, &a), 0);
	cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[0], 8, &b), 0);
	check_ok(e, &r);
	/* Mark both buddies free behind the engine's back: a lost merge. */
	uint64_t lvl = e->g.max_order - 8, w = e->g.level_word[lvl];
	uint64_t saved = e->words[w];
	e->words[w] = (saved & ~0xFull) | 0x5;
	cr_assert_eq(rmp_buddy_check(&e->b, &r), -EUCLEAN);
	cr_assert(strstr(r.error, "both free") != NULL, "%s", r.error);
	/* A bit set inside a free block. */
	e->words[w] = saved;
	check_ok(e, &r);
	/* The 2 KiB block at 2048 is free; mark a 256 B block inside it. */
	uint64_t deep = e->g.level_word[e->g.levels - 1];
	e->words[deep] |= 2ull << 16;
	cr_assert_eq(rmp_buddy_check(&e->b, &r), -EUCLEAN);
	cr_assert(strstr(r.error, "inside a larger block") != NULL, "%s", r.error);
	e->words[deep] &= ~(2ull << 16);
	check_ok(e, &r);
	/* A count that disagrees. */
	e->words[e->g.count_word + 1] += 1;
	cr_assert_eq(rmp_buddy_check(&e->b, &r), -EUCLEAN);
	cr_assert(strstr(r.error, "count") != NULL, "%s", r.error);
	engine_free(e);
}

/* Liveness of a block from the metadata: live after its allocation, at
 * its order only; not after its free, nor inside it, nor a free block,
 * also when the loads are stale (the no-op CAS decides). */
Test(buddy, is_live_from_the_metadata)
{
	struct engine *e = engine_new(16, 8, 0);
	uint64_t a, b;
	cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[0], 10, &a), 0);
	cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[1], 12, &b), 0);
	for (int stale = 0; stale < 2; stale++) {
		rmp_store_local_set_mode(&e->store, stale ? RMP_STORE_STALE_LOADS | RMP_STORE_TRACE : RMP_STORE_TRACE,
					 stale ? 500 : 0);
		cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[0], a, 10), 1);
		cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[2], b, 12), 1, "another client's block");
		cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[0], a, 11), 0, "the wrong order");
		cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[0], a, 9), 0, "half of it");
		cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[0], a + 256, 8), 0, "inside it");
		cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[0], a + 1, 10), 0, "misaligned");
		cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[0], 1ull << 16, 10), 0, "past the capacity");
		cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[0], a, 17), 0, "order past the capacity");
	}
	rmp_store_local_set_mode(&e->store, RMP_STORE_TRACE, 0);
	cr_assert_eq(rmp_buddy_free(&e->b, &e->ctx[1], a, 10), 0, "freed by another client");
	cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[0], a, 10), 0, "after its free");
	cr_assert_eq(rmp_buddy_free(&e->b, &e->ctx[0], b, 12), 0);
	cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[0], b, 12), 0);
	cr_assert_eq(rmp_buddy_is_live(&e->b, &e->ctx[0], 0, 16), 0, "the whole heap, free");
	engine_free(e);
}

/* Random alloc/free against a model, single client, store in the
 * RDMA-like mode (stale loads, shuffled batches). */
Test(buddy, random_sequence_in_rdma_like_mode)
{
	struct engine *e = engine_new(16, 8, 0);
	enum { LIVE = 48, STEPS = 20000 };
	struct { uint64_t off; unsigned order; } live[LIVE];
	uint8_t owner[256] = { 0 }; /* per 256-byte minimum block */
	struct rmp_buddy_report r;
	unsigned nlive = 0, ok = 0, tries = 0;
	srand(7);
	rmp_store_local_set_mode(&e->store, RMP_STORE_STALE_LOADS | RMP_STORE_SHUFFLE, 300);
	for (int s = 0; s < STEPS; s++) {
		if (nlive == LIVE || (nlive > 0 && rand() % 2)) {
			unsigned k = (unsigned)rand() % nlive;
			int rc = rmp_buddy_free(&e->b, &e->ctx[0], live[k].off, live[k].order);
			cr_assert_eq(rc, 0, "free of a live block failed: %d", rc);
			for (uint64_t m = live[k].off >> 8; m < (live[k].off + (1ull << live[k].order)) >> 8; m++)
				owner[m] = 0;
			/* A second free of the same block is refused. */
			cr_assert_eq(rmp_buddy_free(&e->b, &e->ctx[0], live[k].off, live[k].order), -EINVAL);
			live[k] = live[--nlive];
		} else {
			unsigned order = 8 + (unsigned)rand() % 6;
			uint64_t off;
			tries++;
			int rc = rmp_buddy_alloc(&e->b, &e->ctx[0], order, &off);
			if (rc == -ENOMEM)
				continue;
			cr_assert_eq(rc, 0);
			ok++;
			cr_assert_eq(off % (1ull << order), 0, "misaligned block");
			for (uint64_t m = off >> 8; m < (off + (1ull << order)) >> 8; m++) {
				cr_assert_eq(owner[m], 0, "overlap at minimum block %llu", (unsigned long long)m);
				owner[m] = 1;
			}
			live[nlive].off = off;
			live[nlive++].order = order;
		}
	}
	cr_assert_gt(ok, tries * 9 / 10, "only %u of %u allocations succeeded", ok, tries);
	while (nlive > 0) {
		nlive--;
		cr_assert_eq(rmp_buddy_free(&e->b, &e->ctx[0], live[nlive].off, live[nlive].order), 0);
	}
	/* Quiet now: a READ would see current values. */
	rmp_store_local_set_mode(&e->store, RMP_STORE_TRACE, 0);
	check_ok(e, &r);
	uint64_t off;
	cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[0], 16, &off), 0, "whole capacity after all frees");
	engine_free(e);
}

/* --- lock-freedom: freeze one client after its k-th word operation ------ */

struct freeze {
	sem_t frozen, release;
	_Atomic int froze;
};

static void freeze_here(void *arg)
{
	struct freeze *f = arg;
	atomic_store(&f->froze, 1);
	sem_post(&f->frozen);
	sem_wait(&f->release);
}

struct victim {
	struct engine *e;
	struct freeze *f;
	uint64_t k;
	int do_free; /* 0: freeze inside an alloc; 1: inside a free */
	uint64_t off;
	int rc;
};

static void *victim_main(void *arg)
{
	struct victim *v = arg;
	if (v->do_free) {
		rmp_store_local_freeze_after(v->k, freeze_here, v->f);
		v->rc = rmp_buddy_free(&v->e->b, &v->e->ctx[1], v->off, v->e->g.min_order);
	} else {
		rmp_store_local_freeze_after(v->k, freeze_here, v->f);
		v->rc = rmp_buddy_alloc(&v->e->b, &v->e->ctx[1], v->e->g.min_order, &v->off);
	}
	rmp_store_local_freeze_after(0, NULL, NULL);
	sem_post(&v->f->frozen); /* finished without freezing (k past its length) */
	return NULL;
}

struct worker {
	struct engine *e;
	unsigned id;
	sem_t *done;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t live[16];
	unsigned n = 0, seed = w->id * 7919u;
	for (int s = 0; s < 600; s++) {
		seed = seed * 1103515245u + 12345u;
		if (n == 16 || (n > 0 && (seed >> 16) % 2)) {
			n--;
			if (rmp_buddy_free(&w->e->b, &w->e->ctx[w->id], live[n], w->e->g.min_order) != 0)
				w->failures++;
		} else {
			int rc = rmp_buddy_alloc(&w->e->b, &w->e->ctx[w->id], w->e->g.min_order, &live[n]);
			if (rc == 0)
				n++;
			else if (rc != -ENOMEM && rc != -EAGAIN) /* EAGAIN: the victim holds it in passing */
				w->failures++;
		}
	}
	while (n > 0)
		if (rmp_buddy_free(&w->e->b, &w->e->ctx[w->id], live[--n], w->e->g.min_order) != 0)
			w->failures++;
	sem_post(w->done);
	return NULL;
}

static int sem_wait_secs(sem_t *s, int secs)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	return sem_timedwait(s, &ts);
}

/* Length, in word operations, of the victim's operation on a fresh engine. */
static uint64_t op_length(int do_free)
{
	struct engine *e = engine_new(14, 8, 0);
	uint64_t off, before;
	if (do_free)
		cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[1], 8, &off), 0);
	before = rmp_store_local_thread_ops();
	if (do_free)
		cr_assert_eq(rmp_buddy_free(&e->b, &e->ctx[1], off, 8), 0);
	else
		cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[1], 8, &off), 0);
	uint64_t len = rmp_store_local_thread_ops() - before;
	engine_free(e);
	return len;
}

static void run_frozen(int do_free)
{
	uint64_t len = op_length(do_free);
	cr_assert_gt(len, 3);
	for (uint64_t k = 1; k <= len; k++) {
		/* A fresh 16 KiB engine of 256 B blocks: the victim's alloc
		 * splits from the top; its free merges back to the top. */
		struct engine *e = engine_new(14, 8, 0);
		struct freeze f = { .froze = 0 };
		struct victim v = { .e = e, .f = &f, .k = k, .do_free = do_free };
		sem_init(&f.frozen, 0, 0);
		sem_init(&f.release, 0, 0);
		if (do_free)
			cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[1], 8, &v.off), 0);
		pthread_t vt;
		pthread_create(&vt, NULL, victim_main, &v);
		cr_assert_eq(sem_wait_secs(&f.frozen, 20), 0, "victim never froze nor finished (k=%llu)",
			     (unsigned long long)k);
		cr_assert(atomic_load(&f.froze), "victim finished before its word op %llu of %llu",
			  (unsigned long long)k, (unsigned long long)len);

		sem_t done;
		sem_init(&done, 0, 0);
		struct worker w[3];
		pthread_t wt[3];
		for (unsigned i = 0; i < 3; i++) {
			w[i] = (struct worker){ .e = e, .id = 2 + i, .done = &done };
			pthread_create(&wt[i], NULL, worker_main, &w[i]);
		}
		for (unsigned i = 0; i < 3; i++)
			cr_assert_eq(sem_wait_secs(&done, 30), 0,
				     "%s frozen after word op %llu of %llu blocked the other clients",
				     do_free ? "free" : "alloc", (unsigned long long)k, (unsigned long long)len);
		for (unsigned i = 0; i < 3; i++) {
			pthread_join(wt[i], NULL);
			cr_assert_eq(w[i].failures, 0);
		}
		sem_post(&f.release);
		pthread_join(vt, NULL);
		cr_assert_eq(v.rc, 0, "victim's own operation failed after thaw: %d", v.rc);
		if (!do_free)
			cr_assert_eq(rmp_buddy_free(&e->b, &e->ctx[1], v.off, 8), 0);
		struct rmp_buddy_report r;
		check_ok(e, &r);
		cr_assert_eq(r.free_bytes, 1u << 14, "k=%llu: lost %llu bytes", (unsigned long long)k,
			     (unsigned long long)((1u << 14) - r.free_bytes));
		uint64_t all;
		cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[0], 14, &all), 0);
		sem_destroy(&done);
		sem_destroy(&f.frozen);
		sem_destroy(&f.release);
		engine_free(e);
	}
}

Test(buddy, lock_free_with_a_client_frozen_inside_alloc, .timeout = 240)
{
	run_frozen(0);
}

Test(buddy, lock_free_with_a_client_frozen_inside_free, .timeout = 240)
{
	run_frozen(1);
}

/* --- no false ENOMEM: a client frozen in the middle of a split or merge --
 *
 * A 64-block heap; the victim (ctx 1) allocates one block on the fresh
 * heap (a split from the top) or frees its only block (a merge back to the
 * top), frozen after each of its word operations in turn. Meanwhile two
 * others take the 63 blocks that are not the victim's: every answer must
 * be 0 or -EAGAIN (memory in passing, held by the frozen split or merge),
 * never -ENOMEM. Once the victim thaws it finishes, the others get the
 * rest, and only then does the full heap say -ENOMEM. */

struct taker {
	struct engine *e;
	unsigned id, want, n;
	uint64_t live[64];
	bool frozen_phase; /* stop at the first run of EAGAIN: the rest is in passing */
	unsigned eagain, enomem, other;
};

static void *taker_main(void *arg)
{
	struct taker *tk = arg;
	unsigned streak = 0;
	while (tk->n < tk->want) {
		int rc = rmp_buddy_alloc(&tk->e->b, &tk->e->ctx[tk->id], tk->e->g.min_order, &tk->live[tk->n]);
		if (rc == 0) {
			tk->n++;
			streak = 0;
		} else if (rc == -EAGAIN) {
			tk->eagain++;
			if ((tk->frozen_phase && ++streak == 3) || tk->eagain > 100000)
				break;
		} else {
			if (rc == -ENOMEM)
				tk->enomem++;
			else
				tk->other++;
			break;
		}
	}
	return NULL;
}

static void run_takers(struct taker *tk, unsigned n)
{
	pthread_t th[2];
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, taker_main, &tk[i]), 0);
	for (unsigned i = 0; i < n; i++)
		pthread_join(th[i], NULL);
}

static void run_frozen_no_enomem(int do_free)
{
	uint64_t len = op_length(do_free);
	unsigned saw_eagain = 0;
	for (uint64_t k = 1; k <= len; k++) {
		struct engine *e = engine_new(14, 8, 0);
		struct freeze f = { .froze = 0 };
		struct victim v = { .e = e, .f = &f, .k = k, .do_free = do_free };
		sem_init(&f.frozen, 0, 0);
		sem_init(&f.release, 0, 0);
		if (do_free)
			cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[1], 8, &v.off), 0);
		pthread_t vt;
		pthread_create(&vt, NULL, victim_main, &v);
		cr_assert_eq(sem_wait_secs(&f.frozen, 20), 0, "victim never froze nor finished (k=%llu)",
			     (unsigned long long)k);
		cr_assert(atomic_load(&f.froze), "victim finished before its word op %llu of %llu",
			  (unsigned long long)k, (unsigned long long)len);

		struct taker tk[2] = {
			{ .e = e, .id = 2, .want = 32, .frozen_phase = true },
			{ .e = e, .id = 3, .want = 31, .frozen_phase = true },
		};
		/* The takers keep credit: the counts over-report on their
		 * account, and the full heap must still say ENOMEM below. */
		rmp_buddy_ctx_defer(&e->ctx[2], 8);
		rmp_buddy_ctx_defer(&e->ctx[3], 8);
		run_takers(tk, 2);
		for (unsigned i = 0; i < 2; i++) {
			cr_assert_eq(tk[i].enomem, 0,
				     "%s frozen after word op %llu of %llu: taker %u got ENOMEM holding %u + %u of 63",
				     do_free ? "free" : "alloc", (unsigned long long)k, (unsigned long long)len, i,
				     tk[0].n, tk[1].n);
			cr_assert_eq(tk[i].other, 0);
			saw_eagain += tk[i].eagain > 0;
		}
		sem_post(&f.release);
		pthread_join(vt, NULL);
		cr_assert_eq(v.rc, 0, "victim's own operation failed after thaw: %d", v.rc);

		/* Thawed: the rest of the heap is there to take. */
		tk[0].frozen_phase = tk[1].frozen_phase = false;
		tk[1].want = do_free ? 32 : 31;
		run_takers(tk, 2);
		for (unsigned i = 0; i < 2; i++)
			cr_assert(tk[i].n == tk[i].want && tk[i].enomem == 0 && tk[i].other == 0,
				  "k=%llu after thaw: taker %u has %u of %u (ENOMEM %u, other %u)",
				  (unsigned long long)k, i, tk[i].n, tk[i].want, tk[i].enomem, tk[i].other);
		uint64_t off;
		cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[0], 8, &off), -ENOMEM, "the heap is full now");
		for (unsigned i = 0; i < 2; i++)
			for (unsigned m = 0; m < tk[i].n; m++)
				cr_assert_eq(rmp_buddy_free(&e->b, &e->ctx[tk[i].id], tk[i].live[m], 8), 0);
		if (!do_free)
			cr_assert_eq(rmp_buddy_free(&e->b, &e->ctx[1], v.off, 8), 0);
		cr_assert_eq(rmp_buddy_ctx_flush(&e->b, &e->ctx[2]), 0);
		cr_assert_eq(rmp_buddy_ctx_flush(&e->b, &e->ctx[3]), 0);
		struct rmp_buddy_report r;
		check_ok(e, &r);
		cr_assert_eq(r.free_bytes, 1u << 14);
		cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[0], 14, &off), 0);
		sem_destroy(&f.frozen);
		sem_destroy(&f.release);
		engine_free(e);
	}
	/* The frozen victim did hold memory in passing at some of its steps. */
	cr_assert_gt(saw_eagain, 0);
}

Test(buddy, no_false_enomem_with_a_client_frozen_inside_a_split, .timeout = 240)
{
	run_frozen_no_enomem(0);
}

Test(buddy, no_false_enomem_with_a_client_frozen_inside_a_merge, .timeout = 240)
{
	run_frozen_no_enomem(1);
}

/* --- searches bounded by the levels -------------------------------------
 *
 * On the RDMA-like store (no direct path, 64-word chunks as the RDMA store
 * reads), at 256 MiB and 4 GiB of 4 KiB blocks: the last free block of a
 * full pool is found, and ENOMEM proved, in at most 2 x levels round
 * trips; a burst of allocations costs a bounded number of loads each,
 * whatever its length. */

static struct engine *engine_remote_like(unsigned max_order, unsigned min_order)
{
	struct engine *e = engine_new(max_order, min_order, 0);
	e->store.base.chunk_words = 64;
	return e;
}

static uint64_t rts_of(struct rmp_buddy_ctx *ctx, int do_free)
{
	struct rmp_buddy_stats s;
	rmp_buddy_stats(ctx, &s);
	return do_free ? s.free.round_trips : s.alloc.round_trips;
}

Test(buddy, last_block_and_enomem_in_at_most_2x_levels_round_trips)
{
	unsigned orders[] = { 28, 32 };
	for (unsigned k = 0; k < 2; k++) {
		unsigned M = orders[k], m = 12;
		struct engine *e = engine_remote_like(M, m);
		uint64_t off, last;
		/* Everything but one 4 KiB block: 2^(M-1), ..., 2^m, each once. */
		for (unsigned o = M - 1; o >= m; o--)
			cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[0], o, &off), 0);
		/* Another client, whose cursors point elsewhere. */
		uint64_t r0 = rts_of(&e->ctx[5], 0);
		cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[5], m, &last), 0);
		uint64_t lb = rts_of(&e->ctx[5], 0) - r0;
		r0 = rts_of(&e->ctx[5], 0);
		cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[5], m, &off), -ENOMEM);
		uint64_t en = rts_of(&e->ctx[5], 0) - r0;
		r0 = rts_of(&e->ctx[6], 0);
		cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[6], M - 1, &off), -ENOMEM);
		uint64_t en_big = rts_of(&e->ctx[6], 0) - r0;
		cr_log_info("2^%u bytes, %u levels: last free block in %llu round trips, ENOMEM in %llu (%llu for "
			    "half the pool)", M, e->g.levels, (unsigned long long)lb, (unsigned long long)en,
			    (unsigned long long)en_big);
		cr_assert_leq(lb, 2 * e->g.levels);
		cr_assert_leq(en, 2 * e->g.levels);
		cr_assert_leq(en_big, 2 * e->g.levels);
		engine_free(e);
	}
}

Test(buddy, loads_per_alloc_in_a_burst_do_not_grow_with_the_burst)
{
	unsigned bursts[] = { 1000, 10000, 50000 };
	double per[3];
	for (unsigned k = 0; k < 3; k++) {
		struct engine *e = engine_remote_like(31, 12); /* 2 GiB of 4 KiB blocks */
		struct rmp_buddy_stats s0, s1;
		uint64_t off;
		rmp_buddy_stats(&e->ctx[0], &s0);
		for (unsigned i = 0; i < bursts[k]; i++)
			cr_assert_eq(rmp_buddy_alloc(&e->b, &e->ctx[0], 12, &off), 0);
		rmp_buddy_stats(&e->ctx[0], &s1);
		per[k] = (double)(s1.alloc.loads - s0.alloc.loads) / bursts[k];
		cr_log_info("burst of %u allocations on the RDMA-like store: %.2f loads, %.2f round trips each",
			    bursts[k], per[k], (double)(s1.alloc.round_trips - s0.alloc.round_trips) / bursts[k]);
		cr_assert_leq(per[k], 2.0 * e->g.levels);
		engine_free(e);
	}
	cr_assert_leq(per[2], per[0] * 1.5 + 1, "loads per alloc grow with the burst: %.2f at 1k, %.2f at 50k",
		      per[0], per[2]);
}

/* --- round trips on the RDMA-like store ---------------------------------
 *
 * With a word cache of 1024 entries (what librmpool gives each shard), in
 * the steady state (a block freed and one of its order taken again, 64
 * live blocks of mixed orders) alloc and free are one round trip each on
 * average, or nearly; a fresh pool's burst of small allocations and frees
 * (the demo's) costs at most about two. */

Test(buddy, round_trips_per_operation_on_the_rdma_like_store)
{
	static _Atomic uint64_t words[2 * 1024];
	struct engine *e = engine_remote_like(28, 12);
	struct rmp_buddy_ctx *c = &e->ctx[0];
	struct rmp_buddy_stats s0, s1;
	uint64_t off[100];
	rmp_buddy_ctx_cache(c, words, 1024);
	rmp_buddy_stats(c, &s0);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(rmp_buddy_alloc(&e->b, c, 12, &off[i]), 0);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(rmp_buddy_free(&e->b, c, off[i], 12), 0);
	rmp_buddy_stats(c, &s1);
	double fa = (double)(s1.alloc.round_trips - s0.alloc.round_trips) / 100;
	double ff = (double)(s1.free.round_trips - s0.free.round_trips) / 100;

	enum { L = 64, S = 4000 };
	uint64_t lo[L];
	unsigned lord[L], seed = 1;
	for (int i = 0; i < L; i++) {
		lord[i] = 12 + (unsigned)(i % 4);
		cr_assert_eq(rmp_buddy_alloc(&e->b, c, lord[i], &lo[i]), 0);
	}
	rmp_buddy_stats(c, &s0);
	for (int s = 0; s < S; s++) {
		seed = seed * 1103515245u + 12345u;
		int k = (int)((seed >> 16) % L);
		cr_assert_eq(rmp_buddy_free(&e->b, c, lo[k], lord[k]), 0);
		cr_assert_eq(rmp_buddy_alloc(&e->b, c, lord[k], &lo[k]), 0);
	}
	rmp_buddy_stats(c, &s1);
	double sa = (double)(s1.alloc.round_trips - s0.alloc.round_trips) / S;
	double sf = (double)(s1.free.round_trips - s0.free.round_trips) / S;
	cr_log_info("RDMA-like store, 256 MiB of 4 KiB blocks: fresh pool burst %.2f round trips per alloc, %.2f "
		    "per free; steady state %.2f per alloc, %.2f per free", fa, ff, sa, sf);
	cr_assert_leq(sa, 1.05);
	cr_assert_leq(sf, 1.3);
	cr_assert_leq(fa, 2.2);
	cr_assert_leq(ff, 2.3);
	for (int i = 0; i < L; i++)
		cr_assert_eq(rmp_buddy_free(&e->b, c, lo[i], lord[i]), 0);
	struct rmp_buddy_report r;
	check_ok(e, &r);
	cr_assert_eq(r.free_bytes, 1ull << 28);
	engine_free(e);
}
