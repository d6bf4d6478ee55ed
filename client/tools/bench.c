/*
 * bench.c - `rmpool bench NAME`: rmpool's own figures on an existing pool,
 * measured from this host, for tests/bench/pool-bench.sh to set beside
 * perftest's (same two hosts, same run, same completion mode).
 *
 * Measures, in this order:
 *   read_lat / write_lat  64-byte rmp_read / rmp_write, one at a time:
 *                         median and 99th percentile, microseconds
 *   read4k_lat / write4k_lat
 *                         the same of 4 KiB (a page: tests/bench/nbd-bench.sh
 *                         sets it beside 4 KiB disk requests)
 *   alloc_free_lat        rmp_alloc + rmp_free of one minimum block when
 *                         a block of that order is free (steady state):
 *                         median microseconds, round trips and work
 *                         requests per alloc and per free, and the RDMA
 *                         packets this host's device sent meanwhile (the
 *                         rxe counter), per alloc+free pair
 *   read_bw / write_bw    1 MiB rmp_read / rmp_write, MB/s (10^6 B/s)
 *   read_buf_bw / write_buf_bw
 *                         the same from a registered buffer (rmp_read_buf /
 *                         rmp_write_buf: no bounce copy)
 *   read_stream_bw / write_stream_bw / read_buf_stream_bw / write_buf_stream_bw
 *                         the same streamed, as perftest measures: STREAM_OPS
 *                         1 MiB operations in flight (rmp_*_async), a new
 *                         one started as the oldest is reaped, each on its
 *                         own MiB of a 4 MiB block
 * and prints them as key=value lines (for the script).
 * The completion mode comes from RMPOOL_WAIT (poll|event|adaptive).
 * rmpool_bench runs these steps in order (bench_latency, bench_alloc_free,
 * bench_bandwidth, bench_buffers); the first failure ends the run.
 */
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "clock.h"
#include "rmpool.h"

/* Microseconds since t0_ns (rmp_mono_ns). */
static double us_since(uint64_t t0_ns)
{
	return (double)(rmp_mono_ns() - t0_ns) / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, unsigned n, double q)
{
	qsort(v, n, sizeof(*v), cmp_double);
	unsigned i = (unsigned)(q * (n - 1) + 0.5);
	return v[i];
}

/* Packets sent by this host's first RDMA device (rxe keeps the count). */
static int64_t sent_pkts(void)
{
	glob_t g;
	int64_t v = -1;
	if (glob("/sys/class/infiniband/*/ports/1/hw_counters/sent_pkts", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
		FILE *f = fopen(g.gl_pathv[0], "r");
		if (f) {
			if (fscanf(f, "%" SCNd64, &v) != 1)
				v = -1;
			fclose(f);
		}
	}
	globfree(&g);
	return v;
}

#define MIB (1u << 20)
#define STREAM_OPS 4u /* 1 MiB operations in flight in the streamed figures */

/* iters 1 MiB transfers between remote block dst (STREAM_OPS MiB) and buf
 * (or registered buffer rb over it), STREAM_OPS in flight. MB/s, or -1
 * with *rc set (every started operation is reaped before returning). */
static double stream_bw(rmp_pool *p, rmp_addr dst, uint8_t *buf, rmp_buffer *rb, bool is_read, unsigned iters,
			int *rc)
{
	rmp_op *ops[STREAM_OPS] = { 0 };
	unsigned started = 0, reaped = 0;
	uint64_t t0 = rmp_mono_ns();

	*rc = 0;
	while (reaped < started || (started < iters && *rc == 0)) {
		while (*rc == 0 && started < iters && started - reaped < STREAM_OPS) {
			unsigned k = started % STREAM_OPS;
			size_t o = (size_t)k * MIB;
			rmp_addr a = dst + o;
			if (rb)
				*rc = is_read ? rmp_read_buf_async(p, rb, o, a, MIB, &ops[k])
					      : rmp_write_buf_async(p, a, rb, o, MIB, &ops[k]);
			else
				*rc = is_read ? rmp_read_async(p, buf + o, a, MIB, &ops[k])
					      : rmp_write_async(p, a, buf + o, MIB, &ops[k]);
			if (*rc == 0)
				started++;
		}
		if (reaped == started)
			break;
		unsigned k = reaped % STREAM_OPS;
		int r;
		while ((r = rmp_op_wait(ops[k], 60000)) == -EINPROGRESS)
			; /* each RDMA wait inside is bounded: the op ends */
		if (r && *rc == 0)
			*rc = r;
		ops[k] = NULL;
		reaped++;
	}
	return *rc ? -1 : (double)iters * MIB / us_since(t0);
}

static int fail(const char *what, int rc, rmp_client *c)
{
	fprintf(stderr, "rmpool bench: %s: %s%s%s\n", what, rmp_strerror(rc), *rmp_last_error(c) ? ": " : "",
		rmp_last_error(c));
	return 1;
}

struct bench_opts {
	const char *name;
	unsigned lat_iters, bw_iters, af_iters;
};

/* What a run measured (bench.c's opening comment says what each is). */
struct bench_figures {
	double read_med, read_p99, write_med, write_p99;
	double read4k_med, read4k_p99, write4k_med, write4k_p99;
	double af_med, rt_alloc, rt_free, wr_alloc, wr_free, pk_pair;
	double read_bw, write_bw, read_buf_bw, write_buf_bw;
	double read_stream_bw, write_stream_bw, read_buf_stream_bw, write_buf_stream_bw;
};

struct bench {
	struct bench_opts o;
	rmp_client *c;
	rmp_pool *p;
	double *t;         /* per-iteration times, max(lat_iters, af_iters) */
	uint8_t *big;      /* STREAM_OPS MiB of local memory */
	rmp_addr a, bw, sbw; /* blocks: 4 KiB for latency, 1 MiB, STREAM_OPS MiB */
	struct bench_figures f;
};

/* -1 to go on, else the exit status (0 after --help, 2 for bad usage). */
static int parse_args(int argc, char **argv, struct bench_opts *o)
{
	*o = (struct bench_opts){ .lat_iters = 200, .bw_iters = 20, .af_iters = 200 };
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--lat-iters") && i + 1 < argc)
			o->lat_iters = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--bw-iters") && i + 1 < argc)
			o->bw_iters = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--alloc-iters") && i + 1 < argc)
			o->af_iters = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("Usage: rmpool bench NAME [--lat-iters N (200)] [--bw-iters N (20)] [--alloc-iters N (200)]\n"
			       "Latency of 64-byte and 4 KiB reads and writes, alloc+free latency with round trips per\n"
			       "operation, and 1 MiB read/write bandwidth on pool NAME, from this host.\n"
			       "RMPOOL_WAIT=poll|event|adaptive picks how completions are awaited.\n");
			return 0;
		} else if (argv[i][0] != '-' && !o->name)
			o->name = argv[i];
		else {
			fprintf(stderr, "rmpool bench: unexpected argument '%s' (try --help)\n", argv[i]);
			return 2;
		}
	}
	if (!o->name || o->lat_iters < 10 || o->bw_iters < 1 || o->af_iters < 10 || o->lat_iters > 1000000 ||
	    o->bw_iters > 100000 || o->af_iters > 1000000) {
		fprintf(stderr, "rmpool bench: want NAME; iteration counts of at least 10 (1 for --bw-iters)\n");
		return 2;
	}
	return -1;
}

/* lat_iters rmp_read (or rmp_write) calls of len bytes of buf at b->a,
 * one at a time: their median and 99th percentile in *med and *p99. 0, or
 * 1 after saying what failed. */
static int time_one_way(struct bench *b, bool write, uint8_t *buf, uint64_t len, const char *what, double *med,
			double *p99)
{
	for (unsigned i = 0; i < b->o.lat_iters; i++) {
		uint64_t t0 = rmp_mono_ns();
		int rc = write ? rmp_write(b->p, b->a, buf, len) : rmp_read(b->p, buf, b->a, len);
		if (rc != 0)
			return fail(what, rc, b->c);
		b->t[i] = us_since(t0);
	}
	*med = pct(b->t, b->o.lat_iters, 0.5);
	*p99 = pct(b->t, b->o.lat_iters, 0.99);
	return 0;
}

/* 64-byte and 4 KiB read and write latency, after a warm-up that makes
 * the connections. 0, or 1 after saying what failed. */
static int bench_latency(struct bench *b)
{
	uint8_t small[64] = { 0 };
	static uint8_t page[4096];
	int rc;

	if ((rc = rmp_alloc(b->p, 4096, &b->a)) != 0 || (rc = rmp_write(b->p, b->a, small, 64)) != 0 ||
	    (rc = rmp_read(b->p, small, b->a, 64)) != 0)
		return fail("warm-up", rc, b->c);
	struct bench_figures *f = &b->f;
	return time_one_way(b, false, small, sizeof(small), "rmp_read", &f->read_med, &f->read_p99) ||
	       time_one_way(b, true, small, sizeof(small), "rmp_write", &f->write_med, &f->write_p99) ||
	       time_one_way(b, false, page, sizeof(page), "rmp_read of 4 KiB", &f->read4k_med, &f->read4k_p99) ||
	       time_one_way(b, true, page, sizeof(page), "rmp_write of 4 KiB", &f->write4k_med, &f->write4k_p99);
}

/* alloc+free of a minimum block when a block of that order is free:
 * b->a stays allocated, so the block each free returns (a's buddy, or
 * one near it) stays free at its order instead of merging up to the
 * whole pool, and the next alloc finds it where it left it. */
static int bench_alloc_free(struct bench *b)
{
	struct rmp_pool_stats s0, s1;
	rmp_addr x;
	int rc;

	for (unsigned i = 0; i < 5; i++) /* settle the cursor on a free block */
		if (rmp_alloc(b->p, 4096, &x) == 0)
			rmp_free(b->p, x);
	rmp_pool_stats(b->p, &s0);
	int64_t pk0 = sent_pkts();
	for (unsigned i = 0; i < b->o.af_iters; i++) {
		uint64_t t0 = rmp_mono_ns();
		if ((rc = rmp_alloc(b->p, 4096, &x)) != 0 || (rc = rmp_free(b->p, x)) != 0)
			return fail("alloc+free", rc, b->c);
		b->t[i] = us_since(t0);
	}
	int64_t pk1 = sent_pkts();
	rmp_pool_stats(b->p, &s1);
	b->f.af_med = pct(b->t, b->o.af_iters, 0.5);
	double na = (double)(s1.allocs - s0.allocs), nf = (double)(s1.frees - s0.frees);
	b->f.rt_alloc = (double)(s1.alloc_round_trips - s0.alloc_round_trips) / na;
	b->f.rt_free = (double)(s1.free_round_trips - s0.free_round_trips) / nf;
	b->f.wr_alloc = (double)(s1.alloc_wrs - s0.alloc_wrs) / na;
	b->f.wr_free = (double)(s1.free_wrs - s0.free_wrs) / nf;
	b->f.pk_pair = pk0 >= 0 && pk1 >= 0 ? (double)(pk1 - pk0) / (double)b->o.af_iters : -1;
	return 0;
}

/* 1 MiB bandwidth through the bounce buffers: one at a time, then
 * streamed. */
static int bench_bandwidth(struct bench *b)
{
	unsigned n = b->o.bw_iters;
	int rc;

	if ((rc = rmp_alloc(b->p, 1u << 20, &b->bw)) != 0 || (rc = rmp_alloc(b->p, STREAM_OPS * MIB, &b->sbw)) != 0)
		return fail("rmp_alloc 1 MiB", rc, b->c);
	uint64_t t0 = rmp_mono_ns();
	for (unsigned i = 0; i < n; i++)
		if ((rc = rmp_write(b->p, b->bw, b->big, 1u << 20)) != 0)
			return fail("rmp_write 1 MiB", rc, b->c);
	b->f.write_bw = (double)n * (1 << 20) / us_since(t0); /* bytes/us = MB/s */
	t0 = rmp_mono_ns();
	for (unsigned i = 0; i < n; i++)
		if ((rc = rmp_read(b->p, b->big, b->bw, 1u << 20)) != 0)
			return fail("rmp_read 1 MiB", rc, b->c);
	b->f.read_bw = (double)n * (1 << 20) / us_since(t0);
	b->f.write_stream_bw = stream_bw(b->p, b->sbw, b->big, NULL, false, n, &rc);
	if (rc)
		return fail("rmp_write_async 1 MiB", rc, b->c);
	b->f.read_stream_bw = stream_bw(b->p, b->sbw, b->big, NULL, true, n, &rc);
	if (rc)
		return fail("rmp_read_async 1 MiB", rc, b->c);
	return 0;
}

/* The same from a registered buffer over b->big (no bounce copy). */
static int bench_buffers(struct bench *b)
{
	unsigned n = b->o.bw_iters;
	rmp_buffer *rb;
	int rc;

	if ((rc = rmp_buffer_register(b->p, b->big, STREAM_OPS * MIB, &rb)) != 0)
		return fail("rmp_buffer_register 1 MiB", rc, b->c);
	uint64_t t0 = rmp_mono_ns();
	for (unsigned i = 0; i < n && rc == 0; i++)
		if ((rc = rmp_write_buf(b->p, b->bw, rb, 0, 1u << 20)) != 0)
			fail("rmp_write_buf 1 MiB", rc, b->c);
	b->f.write_buf_bw = (double)n * (1 << 20) / us_since(t0);
	t0 = rmp_mono_ns();
	for (unsigned i = 0; i < n && rc == 0; i++)
		if ((rc = rmp_read_buf(b->p, rb, 0, b->bw, 1u << 20)) != 0)
			fail("rmp_read_buf 1 MiB", rc, b->c);
	b->f.read_buf_bw = (double)n * (1 << 20) / us_since(t0);
	b->f.write_buf_stream_bw = b->f.read_buf_stream_bw = -1;
	if (rc == 0 && (b->f.write_buf_stream_bw = stream_bw(b->p, b->sbw, NULL, rb, false, n, &rc)) < 0)
		fail("rmp_write_buf_async 1 MiB", rc, b->c);
	if (rc == 0 && (b->f.read_buf_stream_bw = stream_bw(b->p, b->sbw, NULL, rb, true, n, &rc)) < 0)
		fail("rmp_read_buf_async 1 MiB", rc, b->c);
	rmp_buffer_deregister(rb);
	return rc ? 1 : 0;
}

static void print_figures(const struct bench_figures *f)
{
	const char *mode = getenv("RMPOOL_WAIT") ? getenv("RMPOOL_WAIT") : "adaptive";

	printf("mode=%s\n", mode);
	printf("read_lat.median_us=%.2f\nread_lat.p99_us=%.2f\n", f->read_med, f->read_p99);
	printf("write_lat.median_us=%.2f\nwrite_lat.p99_us=%.2f\n", f->write_med, f->write_p99);
	printf("read4k_lat.median_us=%.2f\nread4k_lat.p99_us=%.2f\n", f->read4k_med, f->read4k_p99);
	printf("write4k_lat.median_us=%.2f\nwrite4k_lat.p99_us=%.2f\n", f->write4k_med, f->write4k_p99);
	printf("alloc_free_lat.median_us=%.2f\n", f->af_med);
	printf("alloc.round_trips=%.2f\nfree.round_trips=%.2f\n", f->rt_alloc, f->rt_free);
	printf("alloc.work_requests=%.2f\nfree.work_requests=%.2f\n", f->wr_alloc, f->wr_free);
	printf("alloc_free.sent_pkts=%.2f\n", f->pk_pair);
	printf("read_bw.MBps=%.2f\nwrite_bw.MBps=%.2f\n", f->read_bw, f->write_bw);
	printf("read_buf_bw.MBps=%.2f\nwrite_buf_bw.MBps=%.2f\n", f->read_buf_bw, f->write_buf_bw);
	printf("stream_ops=%u\n", STREAM_OPS);
	printf("read_stream_bw.MBps=%.2f\nwrite_stream_bw.MBps=%.2f\n", f->read_stream_bw, f->write_stream_bw);
	printf("read_buf_stream_bw.MBps=%.2f\nwrite_buf_stream_bw.MBps=%.2f\n", f->read_buf_stream_bw,
	       f->write_buf_stream_bw);
}

int rmpool_bench(const char *coordinator, const char *secret, const struct rmp_connect_opts *opts, int argc,
		 char **argv)
{
	struct bench b = { 0 };
	int ex = parse_args(argc, argv, &b.o);

	if (ex >= 0)
		return ex;
	int rc = rmp_connect_ex(coordinator, secret, opts, &b.c);
	if (rc)
		return fail("connect", rc, NULL);
	if ((rc = rmp_pool_open(b.c, b.o.name, 0, &b.p)) != 0) {
		fail("pool open", rc, b.c);
		rmp_disconnect(b.c);
		return 1;
	}
	b.t = calloc(b.o.lat_iters > b.o.af_iters ? b.o.lat_iters : b.o.af_iters, sizeof(*b.t));
	b.big = malloc(STREAM_OPS * MIB);
	memset(b.big, 0x5a, STREAM_OPS * MIB);
	ex = bench_latency(&b);
	if (ex == 0)
		ex = bench_alloc_free(&b);
	if (ex == 0)
		ex = bench_bandwidth(&b);
	if (ex == 0)
		ex = bench_buffers(&b);
	if (ex == 0)
		print_figures(&b.f);
	if (b.a)
		rmp_free(b.p, b.a);
	if (b.bw)
		rmp_free(b.p, b.bw);
	if (b.sbw)
		rmp_free(b.p, b.sbw);
	rmp_pool_close(b.p); /* before big goes: it ends any async operation */
	rmp_disconnect(b.c);
	free(b.t);
	free(b.big);
	return ex;
}
