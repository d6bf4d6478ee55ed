/*
 * bench.c - `rmpool bench NAME`: rmpool's own figures on an existing pool,
 * measured from this host, for tests/bench/pool-bench.sh to set beside
 * perftest's (same two hosts, same run, same completion mode).
 *
 * Measures, in this order:
 *   read_lat / write_lat  64-byte rmp_read / rmp_write, one at a time:
 *                         median and 99th percentile, microseconds
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
 * and prints them as key=value lines (for the script) and a short table.
 * The completion mode comes from RMPOOL_WAIT (poll|event|adaptive).
 */
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "rmpool.h"

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
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
	double t0 = now_us();

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
	return *rc ? -1 : (double)iters * MIB / (now_us() - t0);
}

static int fail(const char *what, int rc, rmp_client *c)
{
	fprintf(stderr, "rmpool bench: %s: %s%s%s\n", what, rmp_strerror(rc), *rmp_last_error(c) ? ": " : "",
		rmp_last_error(c));
	return 1;
}

int rmpool_bench(const char *coordinator, const char *secret, const struct rmp_connect_opts *opts, int argc,
		 char **argv)
{
	unsigned lat_iters = 200, bw_iters = 20, af_iters = 200;
	const char *name = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--lat-iters") && i + 1 < argc)
			lat_iters = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--bw-iters") && i + 1 < argc)
			bw_iters = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--alloc-iters") && i + 1 < argc)
			af_iters = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("Usage: rmpool bench NAME [--lat-iters N (200)] [--bw-iters N (20)] [--alloc-iters N (200)]\n"
			       "Latency of 64-byte reads and writes, alloc+free latency with round trips per\n"
			       "operation, and 1 MiB read/write bandwidth on pool NAME, from this host.\n"
			       "RMPOOL_WAIT=poll|event|adaptive picks how completions are awaited.\n");
			return 0;
		} else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else {
			fprintf(stderr, "rmpool bench: unexpected argument '%s' (try --help)\n", argv[i]);
			return 2;
		}
	}
	if (!name || lat_iters < 10 || bw_iters < 1 || af_iters < 10 || lat_iters > 1000000 || bw_iters > 100000 ||
	    af_iters > 1000000) {
		fprintf(stderr, "rmpool bench: want NAME; iteration counts of at least 10 (1 for --bw-iters)\n");
		return 2;
	}

	rmp_client *c;
	rmp_pool *p;
	int rc = rmp_connect_ex(coordinator, secret, opts, &c);
	if (rc)
		return fail("connect", rc, NULL);
	if ((rc = rmp_pool_open(c, name, 0, &p)) != 0) {
		fail("pool open", rc, c);
		rmp_disconnect(c);
		return 1;
	}
	int ex = 1;
	unsigned nmax = lat_iters > af_iters ? lat_iters : af_iters;
	double *t = calloc(nmax, sizeof(*t));
	uint8_t *big = malloc(STREAM_OPS * MIB);
	uint8_t small[64] = { 0 };
	rmp_addr a = 0, bw = 0, sbw = 0;
	memset(big, 0x5a, STREAM_OPS * MIB);

	/* 64-byte latency, after a warm-up that makes the connections. */
	if ((rc = rmp_alloc(p, 4096, &a)) != 0 || (rc = rmp_write(p, a, small, 64)) != 0 ||
	    (rc = rmp_read(p, small, a, 64)) != 0) {
		fail("warm-up", rc, c);
		goto out;
	}
	for (unsigned i = 0; i < lat_iters; i++) {
		double t0 = now_us();
		if ((rc = rmp_read(p, small, a, 64)) != 0) {
			fail("rmp_read", rc, c);
			goto out;
		}
		t[i] = now_us() - t0;
	}
	double read_med = pct(t, lat_iters, 0.5), read_p99 = pct(t, lat_iters, 0.99);
	for (unsigned i = 0; i < lat_iters; i++) {
		double t0 = now_us();
		if ((rc = rmp_write(p, a, small, 64)) != 0) {
			fail("rmp_write", rc, c);
			goto out;
		}
		t[i] = now_us() - t0;
	}
	double write_med = pct(t, lat_iters, 0.5), write_p99 = pct(t, lat_iters, 0.99);

	/* alloc+free of a minimum block when a block of that order is free:
	 * a stays allocated, so the block each free returns (a's buddy, or
	 * one near it) stays free at its order instead of merging up to the
	 * whole pool, and the next alloc finds it where it left it. */
	struct rmp_pool_stats s0, s1;
	rmp_addr x;
	for (unsigned i = 0; i < 5; i++) /* settle the cursor on a free block */
		if (rmp_alloc(p, 4096, &x) == 0)
			rmp_free(p, x);
	rmp_pool_stats(p, &s0);
	int64_t pk0 = sent_pkts();
	for (unsigned i = 0; i < af_iters; i++) {
		double t0 = now_us();
		if ((rc = rmp_alloc(p, 4096, &x)) != 0 || (rc = rmp_free(p, x)) != 0) {
			fail("alloc+free", rc, c);
			goto out;
		}
		t[i] = now_us() - t0;
	}
	int64_t pk1 = sent_pkts();
	rmp_pool_stats(p, &s1);
	double af_med = pct(t, af_iters, 0.5);
	double na = (double)(s1.allocs - s0.allocs), nf = (double)(s1.frees - s0.frees);
	double rt_alloc = (double)(s1.alloc_round_trips - s0.alloc_round_trips) / na;
	double rt_free = (double)(s1.free_round_trips - s0.free_round_trips) / nf;
	double wr_alloc = (double)(s1.alloc_wrs - s0.alloc_wrs) / na;
	double wr_free = (double)(s1.free_wrs - s0.free_wrs) / nf;
	double pk_pair = pk0 >= 0 && pk1 >= 0 ? (double)(pk1 - pk0) / (double)af_iters : -1;

	/* 1 MiB bandwidth. */
	if ((rc = rmp_alloc(p, 1u << 20, &bw)) != 0 || (rc = rmp_alloc(p, STREAM_OPS * MIB, &sbw)) != 0) {
		fail("rmp_alloc 1 MiB", rc, c);
		goto out;
	}
	double t0 = now_us();
	for (unsigned i = 0; i < bw_iters; i++)
		if ((rc = rmp_write(p, bw, big, 1u << 20)) != 0) {
			fail("rmp_write 1 MiB", rc, c);
			goto out;
		}
	double write_bw = (double)bw_iters * (1 << 20) / (now_us() - t0); /* bytes/us = MB/s */
	t0 = now_us();
	for (unsigned i = 0; i < bw_iters; i++)
		if ((rc = rmp_read(p, big, bw, 1u << 20)) != 0) {
			fail("rmp_read 1 MiB", rc, c);
			goto out;
		}
	double read_bw = (double)bw_iters * (1 << 20) / (now_us() - t0);
	double write_stream_bw = stream_bw(p, sbw, big, NULL, false, bw_iters, &rc);
	if (rc) {
		fail("rmp_write_async 1 MiB", rc, c);
		goto out;
	}
	double read_stream_bw = stream_bw(p, sbw, big, NULL, true, bw_iters, &rc);
	if (rc) {
		fail("rmp_read_async 1 MiB", rc, c);
		goto out;
	}
	rmp_buffer *rb;
	if ((rc = rmp_buffer_register(p, big, STREAM_OPS * MIB, &rb)) != 0) {
		fail("rmp_buffer_register 1 MiB", rc, c);
		goto out;
	}
	t0 = now_us();
	for (unsigned i = 0; i < bw_iters && rc == 0; i++)
		if ((rc = rmp_write_buf(p, bw, rb, 0, 1u << 20)) != 0)
			fail("rmp_write_buf 1 MiB", rc, c);
	double write_buf_bw = (double)bw_iters * (1 << 20) / (now_us() - t0);
	t0 = now_us();
	for (unsigned i = 0; i < bw_iters && rc == 0; i++)
		if ((rc = rmp_read_buf(p, rb, 0, bw, 1u << 20)) != 0)
			fail("rmp_read_buf 1 MiB", rc, c);
	double read_buf_bw = (double)bw_iters * (1 << 20) / (now_us() - t0);
	double write_buf_stream_bw = -1, read_buf_stream_bw = -1;
	if (rc == 0 && (write_buf_stream_bw = stream_bw(p, sbw, NULL, rb, false, bw_iters, &rc)) < 0)
		fail("rmp_write_buf_async 1 MiB", rc, c);
	if (rc == 0 && (read_buf_stream_bw = stream_bw(p, sbw, NULL, rb, true, bw_iters, &rc)) < 0)
		fail("rmp_read_buf_async 1 MiB", rc, c);
	rmp_buffer_deregister(rb);
	if (rc)
		goto out;

	const char *mode = getenv("RMPOOL_WAIT") ? getenv("RMPOOL_WAIT") : "adaptive";
	printf("mode=%s\n", mode);
	printf("read_lat.median_us=%.2f\nread_lat.p99_us=%.2f\n", read_med, read_p99);
	printf("write_lat.median_us=%.2f\nwrite_lat.p99_us=%.2f\n", write_med, write_p99);
	printf("alloc_free_lat.median_us=%.2f\n", af_med);
	printf("alloc.round_trips=%.2f\nfree.round_trips=%.2f\n", rt_alloc, rt_free);
	printf("alloc.work_requests=%.2f\nfree.work_requests=%.2f\n", wr_alloc, wr_free);
	printf("alloc_free.sent_pkts=%.2f\n", pk_pair);
	printf("read_bw.MBps=%.2f\nwrite_bw.MBps=%.2f\n", read_bw, write_bw);
	printf("read_buf_bw.MBps=%.2f\nwrite_buf_bw.MBps=%.2f\n", read_buf_bw, write_buf_bw);
	printf("stream_ops=%u\n", STREAM_OPS);
	printf("read_stream_bw.MBps=%.2f\nwrite_stream_bw.MBps=%.2f\n", read_stream_bw, write_stream_bw);
	printf("read_buf_stream_bw.MBps=%.2f\nwrite_buf_stream_bw.MBps=%.2f\n", read_buf_stream_bw,
	       write_buf_stream_bw);
	ex = 0;
out:
	if (a)
		rmp_free(p, a);
	if (bw)
		rmp_free(p, bw);
	if (sbw)
		rmp_free(p, sbw);
	rmp_pool_close(p); /* before big goes: it ends any async operation */
	rmp_disconnect(c);
	free(t);
	free(big);
	return ex;
}
