/*
 * bench_shapes.c - rmp_heap on the four benchmark shapes of NBBS (HPDCS/NBBS,
 * the lock-free buddy system of CLUSTER'18 / IEEE TC), with NBBS's drivers'
 * parameters, so that its figures can be set beside theirs
 * (tests/bench/nbbs-compare.sh runs both, interleaved).
 *
 * Shapes, per thread, for blocks of S bytes (S a power of two >= 4 KiB;
 * k = S / 4 KiB):
 *   threadtest      bursts of 50000/threads/k allocs, then as many frees;
 *                   500*k bursts (the Hoard threadtest, as NBBS sizes it)
 *   linux-scal      the same with bursts of 87040/k, 2*k bursts, not
 *                   divided among threads (the CITI linux-scalability test)
 *   const-occ       31 live blocks, 1 of 16S, 2 of 8S, ... 16 of S; then
 *                   50M/threads times: free a random one, allocate its size
 *                   again (constant occupancy, CCGrid'19)
 *   cached          5M times: allocate one block and free it
 * As in the drivers, the threads start together on a flag, the clock runs
 * from the flag to the last join, and ns/op is that time over all allocs
 * and frees of all threads. What the drivers do around each call is done
 * here too, because in the cheap shapes it is a good part of what they
 * measure, for NBBS as for rmp_heap: each alloc and free adds one to the
 * thread's element of an array of counters indexed by thread (two
 * threads' counters share a cache line, as in the drivers), and constant
 * occupancy draws its victims with lrand48 (glibc's lrand48_r, the
 * generator the drivers carry a copy of), seeded with 17 x thread.
 * Without these, bench_shapes ran constant occupancy in 0.5-0.7 of the
 * drivers' time on rmp_heap.
 *
 * Per cell it prints ns/op and the word operations the engine issued per
 * alloc and per free (rmp_heap_stats): the counts that become round trips
 * over RDMA and that noise cannot blur. The heap is 2 GiB and never more
 * than a third full in any shape, so every ENOMEM is false: counted and
 * printed (EAGAIN and other errors apart). After each cell every block
 * must have coalesced back into one free block of the whole capacity
 * (rmp_heap_check).
 *
 * A second table gives the loads per alloc of single-thread threadtest
 * bursts of N = 1k, 10k, 50k (--bursts): the cost of a miss as the burst
 * grows.
 *
 *   bench_shapes [--shape tt|ls|co|ca] [--size BYTES] [--threads N]
 *                [--scale D] [--bursts N,N,...] [--heap BYTES] [--min-block BYTES]
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "heap_internal.h"

/* The drivers' parameters (their parameters.h). */
#define BASE_BLOCK    4096u     /* the drivers scale bursts by S / 4 KiB */
#define TT_ITERATIONS 500u
#define TT_OBJS       50000u
#define LS_ITERATIONS 87040u
#define CO_ITERATIONS 50000000u
#define CO_LEVELS     5u        /* sizes S .. 16S, 2^i blocks of 16S >> i */
#define CA_ITERATIONS 5000000u
#define MAX_THREADS   64u

enum shape { SH_TT, SH_LS, SH_CO, SH_CA, SH_N };
static const char *const shape_name[SH_N] = { "threadtest", "linux-scal", "const-occ", "cached" };
static const char *const shape_short[SH_N] = { "tt", "ls", "co", "ca" };

struct cell {
	enum shape shape;
	uint64_t size;
	unsigned threads;
	unsigned scale;  /* divides the repetitions (bursts, iterations), at least 1 left */
	uint64_t burst;  /* threadtest: this burst length instead of the shape's (0: its own) */
	uint64_t bursts; /* with burst: this many bursts */
};

struct worker {
	alignas(64) rmp_heap *h;
	const struct cell *c;
	unsigned id;
	atomic_bool *go;
	volatile uint64_t *allocs, *frees; /* this thread's elements of drv_allocs, drv_frees */
	uint64_t enomem, eagain, errors, bad_frees;
};

/* The drivers' counters: one array per count, one element per thread. */
static volatile uint64_t drv_allocs[MAX_THREADS], drv_frees[MAX_THREADS];

struct result {
	double ns_op;
	uint64_t allocs, frees, enomem, eagain, errors, bad_frees;
	struct rmp_heap_stats st;
	struct rmp_heap_cache_stats cs;
	bool coalesced;
	char check_err[160];
};

static void *get(struct worker *w, uint64_t size)
{
	void *p = rmp_heap_alloc(w->h, size);
	if (p)
		(*w->allocs)++;
	else if (errno == ENOMEM)
		w->enomem++;
	else if (errno == EAGAIN)
		w->eagain++;
	else
		w->errors++;
	return p;
}

static void put(struct worker *w, void *p)
{
	if (!p)
		return;
	if (rmp_heap_free(w->h, p) == 0)
		(*w->frees)++;
	else
		w->bad_frees++;
}

static uint64_t scaled(uint64_t n, unsigned scale)
{
	return n / scale ? n / scale : 1;
}

/* threadtest and linux-scalability: `iterations` bursts of n allocs, each
 * followed by the n frees (of those that succeeded), in order. */
static int shape_bursts(struct worker *w, uint64_t n, uint64_t iterations)
{
	void **addrs = calloc(n ? n : 1, sizeof(*addrs));
	if (!addrs)
		return -ENOMEM;
	for (uint64_t j = 0; j < iterations; j++) {
		for (uint64_t i = 0; i < n; i++)
			addrs[i] = get(w, w->c->size);
		for (uint64_t i = 0; i < n; i++)
			put(w, addrs[i]);
	}
	free(addrs);
	return 0;
}

/* Constant occupancy: the 31 live blocks of 5 sizes, one replaced per step
 * at random, drawn as the driver draws them. */
static void shape_constant(struct worker *w)
{
	enum { BLOCKS = (1u << CO_LEVELS) - 1 };
	void *chunk[BLOCKS];
	uint64_t size[BLOCKS];
	unsigned k = 0;
	for (unsigned i = 0; i < CO_LEVELS; i++)
		for (unsigned j = 0; j < 1u << i; j++) {
			size[k] = (w->c->size << (CO_LEVELS - 1)) >> i;
			chunk[k] = get(w, size[k]);
			k++;
		}
	/* The driver counts its steps, not the first allocations. */
	*w->allocs = 0;
	struct drand48_data rnd;
	srand48_r(17 * (long)w->id, &rnd);
	uint64_t steps = scaled(CO_ITERATIONS / w->c->threads, w->c->scale);
	for (uint64_t s = 0; s < steps; s++) {
		long x;
		lrand48_r(&rnd, &x);
		unsigned j = (unsigned)x % BLOCKS;
		put(w, chunk[j]);
		chunk[j] = get(w, size[j]);
	}
	for (unsigned j = 0; j < BLOCKS; j++) {
		put(w, chunk[j]);
		*w->frees -= chunk[j] != NULL; /* nor the last frees */
	}
}

static void shape_cached(struct worker *w)
{
	uint64_t n = scaled(CA_ITERATIONS, w->c->scale);
	for (uint64_t i = 0; i < n; i++)
		put(w, get(w, w->c->size));
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const struct cell *c = w->c;
	uint64_t k = c->size / BASE_BLOCK;

	while (!atomic_load_explicit(w->go, memory_order_acquire))
		sched_yield();
	switch (c->shape) {
	case SH_TT:
		if (c->burst)
			w->errors += shape_bursts(w, c->burst, c->bursts) != 0;
		else
			w->errors += shape_bursts(w, TT_OBJS / c->threads / k,
						  scaled(TT_ITERATIONS * k, c->scale)) != 0;
		break;
	case SH_LS:
		w->errors += shape_bursts(w, LS_ITERATIONS / k, 2 * k) != 0;
		break;
	case SH_CO:
		shape_constant(w);
		break;
	default:
		shape_cached(w);
		break;
	}
	return NULL;
}

static void result_add(struct result *r, const struct worker *w)
{
	r->allocs += *w->allocs;
	r->frees += *w->frees;
	r->enomem += w->enomem;
	r->eagain += w->eagain;
	r->errors += w->errors;
	r->bad_frees += w->bad_frees;
}

/* One cell on a fresh heap, as each driver run starts a fresh process. */
static int run_cell(const struct cell *c, uint64_t heap_bytes, uint64_t min_block, struct result *r)
{
	static struct worker w[MAX_THREADS];
	pthread_t tid[MAX_THREADS];
	atomic_bool go = false;
	rmp_heap *h;
	unsigned started = 0;
	int rc = rmp_heap_create(heap_bytes, min_block, &h);

	memset(r, 0, sizeof(*r));
	if (rc) {
		fprintf(stderr, "bench_shapes: rmp_heap_create(%llu, %llu): %s\n", (unsigned long long)heap_bytes,
			(unsigned long long)min_block, strerror(-rc));
		return rc;
	}
	for (; started < c->threads; started++) {
		drv_allocs[started] = drv_frees[started] = 0;
		w[started] = (struct worker){ .h = h, .c = c, .id = started, .go = &go,
					      .allocs = &drv_allocs[started], .frees = &drv_frees[started] };
		rc = -pthread_create(&tid[started], NULL, worker_main, &w[started]);
		if (rc) {
			fprintf(stderr, "bench_shapes: pthread_create: %s\n", strerror(-rc));
			break;
		}
	}
	uint64_t t0 = rmp_mono_ns();
	atomic_store_explicit(&go, true, memory_order_release);
	for (unsigned i = 0; i < started; i++) {
		pthread_join(tid[i], NULL);
		result_add(r, &w[i]);
	}
	uint64_t t1 = rmp_mono_ns();
	if (rc)
		goto out_destroy_heap;
	r->ns_op = (double)(t1 - t0) / (double)(r->allocs + r->frees ? r->allocs + r->frees : 1);
	rmp_heap_stats(h, &r->st);
	rmp_heap_cache_stats(h, &r->cs);
	uint64_t free_bytes = 0;
	rc = rmp_heap_check(h, r->check_err, sizeof(r->check_err), &free_bytes);
	r->coalesced = rc == 0 && free_bytes == rmp_heap_capacity(h);
	rc = 0;
out_destroy_heap:
	rmp_heap_destroy(h);
	return rc;
}

static double per(uint64_t n, uint64_t calls)
{
	return calls ? (double)n / (double)calls : 0.0;
}

static void print_header(void)
{
	printf("%-10s %6s %3s %9s %8s | %13s | %29s | %15s | %20s |\n", "", "", "", "", "", "thread cache",
	       "per alloc the engine served", "per free", "failed allocations");
	printf("%-10s %6s %3s %9s %8s | %6s %6s | %8s %5s %8s %5s | %8s %6s | %6s %6s %5s | %s\n", "shape", "size",
	       "thr", "ns/op", "Mops/s", "alloc%", "free%", "ld/alloc", "cas", "cas_fail", "faa", "ld/free", "cas",
	       "ENOMEM", "EAGAIN", "error", "coalesced");
}

static void print_row(const struct cell *c, const struct result *r)
{
	const struct rmp_heap_opstats *a = &r->st.alloc, *f = &r->st.free;
	printf("%-10s %5lluK %3u %9.1f %8.2f | %6.1f %6.1f | %8.2f %5.2f %8.3f %5.2f | %8.2f %6.2f | %6llu %6llu %5llu | "
	       "%s%s%s\n",
	       shape_name[c->shape], (unsigned long long)(c->size >> 10), c->threads, r->ns_op, 1e3 / r->ns_op,
	       100.0 * per(r->cs.hits_alloc, r->allocs), 100.0 * per(r->cs.hits_free, r->frees), per(a->loads, a->calls), per(a->cas_ok + a->cas_fail, a->calls), per(a->cas_fail, a->calls),
	       per(a->faa, a->calls), per(f->loads, f->calls), per(f->cas_ok + f->cas_fail, f->calls),
	       (unsigned long long)r->enomem, (unsigned long long)r->eagain,
	       (unsigned long long)(r->errors + r->bad_frees), r->coalesced ? "yes" : "NO",
	       r->check_err[0] ? ": " : "", r->check_err);
	fflush(stdout);
}

struct opts {
	int shape;          /* -1: all */
	uint64_t size;      /* 0: 4 KiB and 32 KiB */
	unsigned threads;   /* 0: 1 and 2 */
	unsigned scale;
	bool cells;         /* run the shapes table */
	char bursts[128];   /* burst lengths for the second table; "": none */
	uint64_t heap, min_block;
};

static int parse_shape(const char *s)
{
	for (int i = 0; i < SH_N; i++)
		if (!strcmp(s, shape_name[i]) || !strcmp(s, shape_short[i]))
			return i;
	return -2;
}

static void usage(FILE *f, const char *argv0)
{
	fprintf(f,
		"usage: %s [--shape tt|ls|co|ca] [--size BYTES] [--threads N] [--scale D]\n"
		"          [--bursts N,N,...] [--heap BYTES] [--min-block BYTES]\n"
		"  --shape      threadtest (tt), linux-scal (ls), const-occ (co), cached (ca); default all\n"
		"  --size       block size, a power of two >= 4096; default 4096 and 32768\n"
		"  --threads    1..%u; default 1 and 2\n"
		"  --scale      divide the shapes' repetitions by D (not linux-scal's); default 1, NBBS's own\n"
		"  --bursts     single-thread threadtest bursts of these lengths (4 KiB, 3 bursts each):\n"
		"               loads per alloc; default 1000,10000,50000, none once a cell is chosen\n"
		"  --heap       heap bytes, default 2 GiB; --min-block default 4096 (NBBS's configuration)\n",
		argv0, MAX_THREADS);
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "shape", required_argument, NULL, 's' },   { "size", required_argument, NULL, 'z' },
		{ "threads", required_argument, NULL, 't' }, { "scale", required_argument, NULL, 'd' },
		{ "bursts", required_argument, NULL, 'b' },  { "heap", required_argument, NULL, 'H' },
		{ "min-block", required_argument, NULL, 'm' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool chosen = false, bursts_given = false;
	*o = (struct opts){ .shape = -1, .scale = 1, .heap = 2ull << 30, .min_block = 4096 };
	for (int c; (c = getopt_long(argc, argv, "s:z:t:d:b:H:m:h", lo, NULL)) != -1;) {
		switch (c) {
		case 's': o->shape = parse_shape(optarg); chosen = true; break;
		case 'z': o->size = strtoull(optarg, NULL, 0); chosen = true; break;
		case 't': o->threads = (unsigned)strtoul(optarg, NULL, 10); chosen = true; break;
		case 'd': o->scale = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'b': snprintf(o->bursts, sizeof(o->bursts), "%s", optarg); bursts_given = true; break;
		case 'H': o->heap = strtoull(optarg, NULL, 0); break;
		case 'm': o->min_block = strtoull(optarg, NULL, 0); break;
		case 'h': usage(stdout, argv[0]); exit(0);
		default: usage(stderr, argv[0]); return -EINVAL;
		}
	}
	/* No choice: both tables. A cell chosen: that cell only, unless
	 * --bursts asks for bursts too. Only --bursts: the bursts only. */
	o->cells = chosen || !bursts_given;
	if (!chosen && !bursts_given)
		snprintf(o->bursts, sizeof(o->bursts), "1000,10000,50000");
	if (o->shape == -2 || (o->size && (o->size < BASE_BLOCK || (o->size & (o->size - 1)))) ||
	    o->threads > MAX_THREADS || o->scale == 0 || optind != argc) {
		usage(stderr, argv[0]);
		return -EINVAL;
	}
	if (o->size << (CO_LEVELS - 1) > o->heap) {
		fprintf(stderr, "bench_shapes: --size %llu: const-occ needs blocks of 16x that in the heap\n",
			(unsigned long long)o->size);
		return -EINVAL;
	}
	return 0;
}

struct totals {
	uint64_t allocs, enomem, eagain, errors, not_coalesced;
};

static int run_shapes(const struct opts *o, struct totals *tot)
{
	static const uint64_t sizes[] = { 4096, 32768 };
	print_header();
	for (int s = 0; s < SH_N; s++) {
		if (o->shape >= 0 && s != o->shape)
			continue;
		for (unsigned zi = 0; zi < 2; zi++) {
			uint64_t size = o->size ? o->size : sizes[zi];
			if (o->size && zi)
				break;
			for (unsigned t = 1; t <= 2; t++) {
				unsigned threads = o->threads ? o->threads : t;
				if (o->threads && t > 1)
					break;
				struct cell c = { .shape = (enum shape)s, .size = size, .threads = threads, .scale = o->scale };
				struct result r;
				if (run_cell(&c, o->heap, o->min_block, &r))
					return 1;
				print_row(&c, &r);
				tot->allocs += r.allocs;
				tot->enomem += r.enomem;
				tot->eagain += r.eagain;
				tot->errors += r.errors + r.bad_frees;
				tot->not_coalesced += !r.coalesced;
			}
		}
	}
	return 0;
}

/* Loads per alloc in single-thread threadtest bursts of each length. */
static int run_bursts(const struct opts *o, struct totals *tot)
{
	char list[sizeof(o->bursts)], *save = NULL;
	snprintf(list, sizeof(list), "%s", o->bursts);
	printf("\nthreadtest bursts, 1 thread, 4K blocks, 3 bursts each: word operations per alloc and per free\n");
	printf("%8s %9s | %8s %6s %8s %6s | %8s %6s\n", "N", "ns/op", "ld/alloc", "cas", "cas_fail", "faa", "ld/free",
	       "cas");
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint64_t n = strtoull(tok, NULL, 10);
		if (n == 0 || n * BASE_BLOCK > o->heap) {
			fprintf(stderr, "bench_shapes: --bursts: %s is not a burst that fits the heap\n", tok);
			return 1;
		}
		struct cell c = { .shape = SH_TT, .size = BASE_BLOCK, .threads = 1, .scale = 1, .burst = n, .bursts = 3 };
		struct result r;
		if (run_cell(&c, o->heap, o->min_block, &r))
			return 1;
		const struct rmp_heap_opstats *a = &r.st.alloc, *f = &r.st.free;
		printf("%8llu %9.1f | %8.2f %6.2f %8.3f %6.2f | %8.2f %6.2f%s\n", (unsigned long long)n, r.ns_op,
		       per(a->loads, a->calls), per(a->cas_ok + a->cas_fail, a->calls), per(a->cas_fail, a->calls),
		       per(a->faa, a->calls), per(f->loads, f->calls), per(f->cas_ok + f->cas_fail, f->calls),
		       r.coalesced ? "" : "  NOT COALESCED");
		fflush(stdout);
		tot->allocs += r.allocs;
		tot->enomem += r.enomem;
		tot->eagain += r.eagain;
		tot->errors += r.errors + r.bad_frees;
		tot->not_coalesced += !r.coalesced;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct totals tot = { 0 };

	if (parse_opts(argc, argv, &o))
		return 2;
	printf("bench_shapes: rmp_heap on NBBS's benchmark shapes, NBBS's drivers' parameters%s; heap %llu MiB, "
	       "min block %llu\n",
	       o.scale > 1 ? " (repetitions scaled down)" : "", (unsigned long long)(o.heap >> 20),
	       (unsigned long long)o.min_block);
	/* What the heap keeps per thread; RMPOOL_HEAP_CACHE=0 turns the block
	 * caches off (heap.c), the rest has no switch. */
	const char *hc = getenv("RMPOOL_HEAP_CACHE");
	bool cache = !(hc && strcmp(hc, "0") == 0);
	printf("per-thread state: a slot per thread (64) with its own cursors and up to 8 blocks of credit on "
	       "the free counts per level; thread block caches %s (16 blocks of each of the 8 smallest orders%s)\n",
	       cache ? "ON" : "OFF", cache ? "; RMPOOL_HEAP_CACHE=0 turns them off" : "");
	if (o.cells && run_shapes(&o, &tot))
		return 1;
	if (o.bursts[0] && run_bursts(&o, &tot))
		return 1;
	printf("\nbench_shapes: false ENOMEM (the heap was never a third full): %llu in %llu allocations; "
	       "EAGAIN %llu; other errors %llu; cells not coalesced %llu\n",
	       (unsigned long long)tot.enomem, (unsigned long long)tot.allocs, (unsigned long long)tot.eagain,
	       (unsigned long long)tot.errors, (unsigned long long)tot.not_coalesced);
	return tot.errors || tot.not_coalesced ? 1 : 0;
}
