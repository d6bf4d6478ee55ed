/*
 * pool_data.c - consumer-side checks of librmpool's data path, run on the
 * Soft-RoCE guests by tests/rdma/pool_data.sh.
 *
 *   pool_data big     NAME   one block larger than any donor region:
 *                            every byte written and read back; its
 *                            segments lie on at least 2 hosts
 *   pool_data steps   NAME --threads T --steps N --id I
 *                            each step one of alloc / write own pattern /
 *                            read and verify / free; >= 90% of allocs ok
 *   pool_data whole   NAME   the whole capacity in one allocation
 *   pool_data stopped NAME --go FILE
 *                            connect everything, write FILE.ready, wait for
 *                            FILE (the driver stops coordinator and donors
 *                            in between), then alloc/write/read/free
 *   pool_data bad     NAME   bad arguments are refused and lose nothing
 *   pool_data regbuf  NAME   registered buffers: a write from one over a
 *                            donor boundary of a block on several donors,
 *                            read back by rmp_read and by rmp_read_buf;
 *                            bad buffers and ranges refused
 *   pool_data async   NAME   16 asynchronous writes in flight (bounce and
 *                            registered), then 16 reads, verified; -EBUSY
 *                            for a buffer an unreaped op uses
 *   pool_data noanswer HOST:PORT
 *                            a coordinator that does not answer: bounded
 * Coordinator from RMPOOL_COORDINATOR, secret from RMPOOL_SECRET.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "data_util.h"
#include "rmpool.h"

static rmp_client *cl;

static int cmd_big(const char *name)
{
	rmp_pool *p = du_open_pool(name, &cl);
	struct rmp_pool_info *info;
	du_require_ok(rmp_pool_info(p, &info), "rmp_pool_info");
	uint64_t max_donor = 0;
	for (size_t i = 0; i < info->n_donors; i++)
		if (info->donors[i].bytes > max_donor)
			max_donor = info->donors[i].bytes;
	/* Larger than any donor; larger than two when the pool allows, so
	 * that it spans three donors: no host holds more than two here. */
	uint64_t size = 2 * max_donor + 1 <= info->capacity ? 2 * max_donor + 1 : max_donor + 1;
	rmp_addr a;
	du_require_ok(rmp_alloc(p, size, &a), "rmp_alloc of more than one donor");
	uint64_t block = 1ull << RMP_ADDR_ORDER(a);
	char hosts[DU_MAX_HOSTS][DU_HOST_LEN];
	unsigned nh = 0;
	du_block_hosts(p, info, a, hosts, &nh, NULL);
	printf("pool_data: block of %" PRIu64 " bytes (asked %" PRIu64 ", largest donor %" PRIu64 ") on %u hosts\n",
	       block, size, max_donor, nh);
	if (nh < 2)
		check_die("the block lies on %u host(s), expected at least 2", nh);
	size_t chunk = 4u << 20;
	uint8_t *w = malloc(chunk), *r = malloc(chunk);
	double t0 = du_now_s();
	for (uint64_t at = 0; at < block; at += chunk) {
		size_t n = block - at < chunk ? (size_t)(block - at) : chunk;
		du_fill(w, n, at);
		du_require_ok(rmp_write(p, a + at, w, n), "rmp_write");
	}
	double t1 = du_now_s();
	for (uint64_t at = 0; at < block; at += chunk) {
		size_t n = block - at < chunk ? (size_t)(block - at) : chunk;
		du_fill(w, n, at);
		du_require_ok(rmp_read(p, r, a + at, n), "rmp_read");
		if (memcmp(w, r, n))
			check_die("bytes at block offset %" PRIu64 " read back wrong", at);
	}
	double t2 = du_now_s();
	printf("pool_data: wrote %" PRIu64 " MiB in %.2f s (%.1f MiB/s), read and verified in %.2f s (%.1f MiB/s)\n",
	       block >> 20, t1 - t0, (double)(block >> 20) / (t1 - t0), t2 - t1, (double)(block >> 20) / (t2 - t1));
	du_require_ok(rmp_free(p, a), "rmp_free");
	if (rmp_free(p, a) != -EINVAL)
		check_die("a second free of the same block was not refused");
	rmp_pool_info_free(info);
	du_require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	printf("pool_data: big: PASS\n");
	return 0;
}

struct worker {
	rmp_pool *p;
	unsigned id, steps;
	uint64_t allocs, allocs_ok, writes, reads;
	int failed;
	pthread_t tid;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	enum { LIVE = 8 };
	struct { rmp_addr a; uint64_t len; uint64_t seed; int written; } live[LIVE] = { { 0, 0, 0, 0 } };
	uint8_t *buf = malloc(1u << 16), *rb = malloc(1u << 16);
	uint64_t x = 0xD1B54A32D192ED03ull * (w->id + 1);
	for (unsigned s = 0; s < w->steps && !w->failed; s++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		unsigned k = (unsigned)(x % LIVE), op = (unsigned)((x >> 8) % 4);
		int rc;
		if (!live[k].a)
			op = 0;
		switch (op) {
		case 0: /* alloc (replacing what was there) */
			if (live[k].a && (rc = rmp_free(w->p, live[k].a)) != 0) {
				fprintf(stderr, "pool_data: free: %s (%s)\n", rmp_strerror(rc), rmp_last_error(NULL));
				w->failed = 1;
				break;
			}
			live[k].a = 0;
			live[k].len = 64u << ((x >> 16) % 11); /* 64 B .. 64 KiB */
			w->allocs++;
			rc = rmp_alloc(w->p, live[k].len, &live[k].a);
			if (rc == -ENOMEM) {
				live[k].a = 0;
				break;
			}
			if (rc) {
				fprintf(stderr, "pool_data: alloc: %s (%s)\n", rmp_strerror(rc), rmp_last_error(NULL));
				w->failed = 1;
				break;
			}
			w->allocs_ok++;
			live[k].written = 0;
			break;
		case 1: /* write own pattern */
			live[k].seed = ((uint64_t)w->id << 40) ^ s;
			du_fill(buf, live[k].len, live[k].seed);
			if ((rc = rmp_write(w->p, live[k].a, buf, live[k].len)) != 0) {
				fprintf(stderr, "pool_data: write: %s (%s)\n", rmp_strerror(rc), rmp_last_error(NULL));
				w->failed = 1;
			}
			live[k].written = 1;
			w->writes++;
			break;
		case 2: /* read and verify */
			if (!live[k].written)
				break;
			if ((rc = rmp_read(w->p, rb, live[k].a, live[k].len)) != 0) {
				fprintf(stderr, "pool_data: read: %s (%s)\n", rmp_strerror(rc), rmp_last_error(NULL));
				w->failed = 1;
				break;
			}
			du_fill(buf, live[k].len, live[k].seed);
			if (memcmp(buf, rb, live[k].len)) {
				fprintf(stderr, "pool_data: FAILED: thread %u: pattern of block %#" PRIx64 " corrupted\n", w->id,
					(uint64_t)live[k].a);
				w->failed = 1;
			}
			w->reads++;
			break;
		case 3: /* free */
			if ((rc = rmp_free(w->p, live[k].a)) != 0) {
				fprintf(stderr, "pool_data: free: %s (%s)\n", rmp_strerror(rc), rmp_last_error(NULL));
				w->failed = 1;
			}
			live[k].a = 0;
			break;
		}
	}
	for (unsigned k = 0; k < LIVE; k++)
		if (live[k].a && rmp_free(w->p, live[k].a) != 0)
			w->failed = 1;
	free(buf);
	free(rb);
	return NULL;
}

static int cmd_steps(const char *name, unsigned threads, unsigned steps, unsigned id)
{
	rmp_pool *p = du_open_pool(name, &cl);
	struct worker *w = calloc(threads, sizeof(*w));
	double t0 = du_now_s();
	for (unsigned i = 0; i < threads; i++) {
		w[i] = (struct worker){ .p = p, .id = id * 16 + i, .steps = steps };
		pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
	}
	uint64_t allocs = 0, ok = 0, writes = 0, reads = 0;
	int failed = 0;
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		allocs += w[i].allocs, ok += w[i].allocs_ok, writes += w[i].writes, reads += w[i].reads;
		failed |= w[i].failed;
	}
	double secs = du_now_s() - t0;
	struct rmp_pool_stats st;
	du_require_ok(rmp_pool_stats(p, &st), "rmp_pool_stats");
	printf("pool_data: consumer %u: %u threads x %u steps in %.1f s: %" PRIu64 "/%" PRIu64
	       " allocs ok, %" PRIu64 " writes, %" PRIu64 " reads verified; round trips per alloc %.2f, per free %.2f; "
	       "failed CAS per alloc %.3f, per free %.3f\n",
	       id, threads, steps, secs, ok, allocs, writes, reads,
	       st.allocs ? (double)st.alloc_round_trips / (double)st.allocs : 0,
	       st.frees ? (double)st.free_round_trips / (double)st.frees : 0,
	       st.allocs ? (double)st.alloc_cas_failed / (double)st.allocs : 0,
	       st.frees ? (double)st.free_cas_failed / (double)st.frees : 0);
	du_require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	if (failed)
		check_die("a thread failed");
	if (ok * 10 < allocs * 9)
		check_die("only %" PRIu64 " of %" PRIu64 " allocations succeeded", ok, allocs);
	return 0;
}

static int cmd_whole(const char *name)
{
	rmp_pool *p = du_open_pool(name, &cl);
	struct rmp_pool_info *info;
	rmp_addr a;
	du_require_ok(rmp_pool_info(p, &info), "rmp_pool_info");
	du_require_ok(rmp_alloc(p, info->capacity, &a), "rmp_alloc of the whole capacity");
	du_require_ok(rmp_free(p, a), "rmp_free of the whole capacity");
	printf("pool_data: the whole capacity (%" PRIu64 " bytes) in one allocation: PASS\n", info->capacity);
	rmp_pool_info_free(info);
	du_require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	return 0;
}

static int cmd_stopped(const char *name, const char *go)
{
	rmp_pool *p = du_open_pool(name, &cl);
	struct rmp_pool_info *info;
	rmp_addr a;
	du_require_ok(rmp_pool_info(p, &info), "rmp_pool_info");
	/* Touch every donor once so that every connection exists: rdma_cm
	 * setup needs the far side's CPU, the data path must not. */
	du_require_ok(rmp_alloc(p, info->capacity, &a), "rmp_alloc of the whole capacity");
	uint8_t byte = 1;
	for (uint64_t at = 0; at < info->capacity; at += info->segment_size)
		du_require_ok(rmp_write(p, a + at, &byte, 1), "rmp_write (connect)");
	du_require_ok(rmp_free(p, a), "rmp_free");
	char ready[512];
	snprintf(ready, sizeof(ready), "%s.ready", go);
	FILE *f = fopen(ready, "w");
	if (f)
		fclose(f);
	for (int i = 0; access(go, F_OK) != 0; i++)
		if (i > 1200)
			check_die("no go within 120 s");
		else
			usleep(100000);
	double t0 = du_now_s();
	unsigned rounds = 20;
	uint8_t w[4096], r[4096];
	for (unsigned i = 0; i < rounds; i++) {
		uint64_t size = 4096ull << (i % 6);
		du_require_ok(rmp_alloc(p, size, &a), "rmp_alloc with coordinator and donors stopped");
		du_fill(w, sizeof(w), i);
		uint64_t at = size - sizeof(w);
		du_require_ok(rmp_write(p, a + at, w, sizeof(w)), "rmp_write with everything stopped");
		du_require_ok(rmp_read(p, r, a + at, sizeof(r)), "rmp_read with everything stopped");
		if (memcmp(w, r, sizeof(w)))
			check_die("read back wrong bytes with everything stopped");
		du_require_ok(rmp_free(p, a), "rmp_free with everything stopped");
	}
	printf("pool_data: %u alloc/write/read/free rounds with coordinator and donors stopped in %.2f s: PASS\n",
	       rounds, du_now_s() - t0);
	rmp_pool_info_free(info);
	du_require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	return 0;
}

static void expect_rc(int got, int want, const char *what)
{
	if (got != want)
		check_die("%s: got %d (%s), expected %d (%s)", what, got, rmp_strerror(got), want, rmp_strerror(want));
	printf("pool_data: refused as expected: %s: %s (%s)\n", what, rmp_strerror(got), rmp_last_error(NULL));
}

static int cmd_bad(const char *name)
{
	rmp_pool *p = du_open_pool(name, &cl);
	struct rmp_pool_info *info;
	rmp_addr a, b;
	uint8_t buf[128], rb[128];
	du_require_ok(rmp_pool_info(p, &info), "rmp_pool_info");
	du_require_ok(rmp_alloc(p, 4096, &a), "rmp_alloc");
	du_fill(buf, sizeof(buf), 42);
	du_require_ok(rmp_write(p, a, buf, sizeof(buf)), "rmp_write");

	expect_rc(rmp_alloc(p, 0, &b), -EINVAL, "alloc of 0 bytes");
	expect_rc(rmp_alloc(p, info->space + 1, &b), -EINVAL, "alloc larger than the pool");
	expect_rc(rmp_free(p, 0), -EINVAL, "free of handle 0");
	expect_rc(rmp_free(p, a + 64), -EINVAL, "free of a handle inside a block");
	expect_rc(rmp_free(p, RMP_ADDR_MAKE(20, RMP_ADDR_OFFSET(a))), -EINVAL, "free with the wrong order");
	expect_rc(rmp_write(p, a, buf, 0), -EINVAL, "write of 0 bytes");
	expect_rc(rmp_write(p, a, NULL, 8), -EINVAL, "write from NULL");
	expect_rc(rmp_read(p, NULL, a, 8), -EINVAL, "read into NULL");
	expect_rc(rmp_write(p, a + 4090, buf, 64), -EINVAL, "write past the end of the block");
	expect_rc(rmp_read(p, rb, a + 4000, 128), -EINVAL, "read past the end of the block");
	expect_rc(rmp_write(p, RMP_ADDR_MAKE(60, 0), buf, 8), -EINVAL, "write to an order beyond the pool");
	/* nothing lost: the block still holds its bytes */
	du_require_ok(rmp_read(p, rb, a, sizeof(rb)), "rmp_read");
	if (memcmp(buf, rb, sizeof(rb)))
		check_die("a refused call changed the block's bytes");

	/* Liveness, decided by the shared metadata: a second client (its own
	 * session and data path, as another process would have). */
	rmp_client *cl2;
	rmp_pool *p2;
	du_require_ok(rmp_connect(getenv("RMPOOL_COORDINATOR"), NULL, &cl2), "rmp_connect (second client)");
	du_require_ok(rmp_pool_open(cl2, name, 0, &p2), "rmp_pool_open (second client)");
	memset(rb, 0, sizeof(rb));
	du_require_ok(rmp_read(p2, rb, a, sizeof(rb)), "rmp_read of another client's live block");
	if (memcmp(buf, rb, sizeof(rb)))
		check_die("the second client read other bytes than the first wrote");
	du_require_ok(rmp_alloc(p, 4096, &b), "rmp_alloc");
	du_require_ok(rmp_free(p, b), "rmp_free");
	expect_rc(rmp_read(p, rb, b, 8), -EINVAL, "read of a block this client freed");
	expect_rc(rmp_write(p, b + 8, buf, 8), -EINVAL, "write inside a block this client freed");
	expect_rc(rmp_read(p2, rb, b, 8), -EINVAL, "read of a block another client freed");
	/* The whole space as one block: never live while a is. */
	expect_rc(rmp_write(p2, RMP_ADDR_MAKE(__builtin_ctzll(info->space), 0), buf, 8), -EINVAL,
		  "write to a block nobody allocated");
	du_require_ok(rmp_free(p2, a), "rmp_free of another client's block");
	expect_rc(rmp_free(p, a), -EINVAL, "second free of the same block, the first by another client");
	expect_rc(rmp_read(p2, rb, a, 8), -EINVAL, "read of a block the reader freed");
	du_require_ok(rmp_pool_close(p2), "rmp_pool_close (second client)");
	rmp_disconnect(cl2);
	rmp_pool_info_free(info);
	du_require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	printf("pool_data: bad arguments: PASS\n");
	return 0;
}

/* A block larger than any donor, and a window of w bytes in it that
 * crosses a donor boundary. *ndon: donors behind the window. */
static void donor_window(rmp_pool *p, uint64_t w, rmp_addr *a, uint64_t *start, unsigned *ndon)
{
	struct rmp_pool_info *info;
	du_require_ok(rmp_pool_info(p, &info), "rmp_pool_info");
	uint64_t max_donor = 0;
	for (size_t i = 0; i < info->n_donors; i++)
		if (info->donors[i].bytes > max_donor)
			max_donor = info->donors[i].bytes;
	du_require_ok(rmp_alloc(p, max_donor + 1, a), "rmp_alloc of more than one donor");
	uint64_t block = 1ull << RMP_ADDR_ORDER(*a), off = RMP_ADDR_OFFSET(*a), seg = info->segment_size;
	uint32_t first, did, seen[64];
	uint64_t boundary = 0;
	du_require_ok(rmp_pool_segment_donor(p, off / seg, &first), "rmp_pool_segment_donor");
	for (uint64_t s = off / seg + 1; s < (off + block) / seg && !boundary; s++) {
		du_require_ok(rmp_pool_segment_donor(p, s, &did), "rmp_pool_segment_donor");
		if (did != first)
			boundary = s * seg - off;
	}
	if (!boundary)
		check_die("the block of %" PRIu64 " bytes lies on one donor", block);
	*start = boundary > w / 2 ? boundary - w / 2 : 0;
	if (*start + w > block)
		*start = block - w;
	*ndon = 0;
	for (uint64_t s = (off + *start) / seg; s <= (off + *start + w - 1) / seg; s++) {
		du_require_ok(rmp_pool_segment_donor(p, s, &did), "rmp_pool_segment_donor");
		unsigned k;
		for (k = 0; k < *ndon && seen[k] != did; k++)
			;
		if (k == *ndon && *ndon < 64)
			seen[(*ndon)++] = did;
	}
	rmp_pool_info_free(info);
}

static int cmd_regbuf(const char *name)
{
	rmp_pool *p = du_open_pool(name, &cl);
	const uint64_t W = 4u << 20;
	rmp_addr a;
	uint64_t start;
	unsigned ndon;
	donor_window(p, W, &a, &start, &ndon);
	printf("pool_data: regbuf: %" PRIu64 " MiB at block offset %" PRIu64 " over %u donors\n", W >> 20, start, ndon);
	if (ndon < 2)
		check_die("the window lies on %u donor(s)", ndon);
	uint8_t *wm = malloc(W + 4096), *rm = malloc(W + 8192), *plain = malloc(W);
	rmp_buffer *wb, *rb, *tmp;
	du_fill(wm + 123, W, 77);
	du_require_ok(rmp_buffer_register(p, wm, W + 4096, &wb), "rmp_buffer_register");
	du_require_ok(rmp_buffer_register(p, rm, W + 8192, &rb), "rmp_buffer_register");
	double t0 = du_now_s();
	du_require_ok(rmp_write_buf(p, a + start, wb, 123, W), "rmp_write_buf");
	double t1 = du_now_s();
	du_require_ok(rmp_read(p, plain, a + start, W), "rmp_read after rmp_write_buf");
	if (memcmp(plain, wm + 123, W))
		check_die("rmp_read returned other bytes than rmp_write_buf wrote");
	double t2 = du_now_s();
	memset(rm, 0, W + 8192);
	du_require_ok(rmp_read_buf(p, rb, 4096, a + start, W), "rmp_read_buf");
	double t3 = du_now_s();
	if (memcmp(rm + 4096, wm + 123, W))
		check_die("rmp_read_buf returned other bytes than rmp_write_buf wrote");
	if (rm[4095] != 0 || rm[4096 + W] != 0)
		check_die("rmp_read_buf wrote outside its range");
	/* an unaligned piece across the boundary, into the same buffer again */
	du_require_ok(rmp_read_buf(p, rb, 1, a + start + W / 2 - 50001, 100003), "rmp_read_buf (unaligned)");
	if (memcmp(rm + 1, wm + 123 + W / 2 - 50001, 100003))
		check_die("unaligned rmp_read_buf returned wrong bytes");
	/* and a bounce write read back through a registered buffer */
	du_fill(plain, W, 78);
	du_require_ok(rmp_write(p, a + start, plain, W), "rmp_write");
	du_require_ok(rmp_read_buf(p, rb, 0, a + start, W), "rmp_read_buf after rmp_write");
	if (memcmp(rm, plain, W))
		check_die("rmp_read_buf after rmp_write returned wrong bytes");
	printf("pool_data: regbuf: write_buf %.1f MiB/s, read (bounce) %.1f MiB/s, read_buf %.1f MiB/s\n",
	       (double)(W >> 20) / (t1 - t0), (double)(W >> 20) / (t2 - t1), (double)(W >> 20) / (t3 - t2));

	expect_rc(rmp_write_buf(p, a + start, wb, W + 4096 - 10, 100), -EINVAL, "write_buf past the end of the buffer");
	expect_rc(rmp_read_buf(p, rb, W + 8192 + 1, a + start, 1), -EINVAL, "read_buf from an offset past the buffer");
	expect_rc(rmp_read_buf(p, rb, 8, a + start, UINT64_MAX - 4), -EINVAL, "read_buf of a huge length");
	expect_rc(rmp_write_buf(p, a + start, wb, 0, 0), -EINVAL, "write_buf of 0 bytes");
	expect_rc(rmp_write_buf(p, a + (1ull << RMP_ADDR_ORDER(a)) - 10, wb, 0, 100), -EINVAL,
		  "write_buf past the end of the block");
	expect_rc(rmp_write_buf(p, a, NULL, 0, 8), -EINVAL, "write_buf from a NULL buffer");
	expect_rc(rmp_read_buf(p, NULL, 0, a, 8), -EINVAL, "read_buf into a NULL buffer");
	expect_rc(rmp_buffer_register(p, NULL, 64, &tmp), -EINVAL, "register of NULL");
	expect_rc(rmp_buffer_register(p, plain, 0, &tmp), -EINVAL, "register of 0 bytes");
	expect_rc(rmp_buffer_deregister(NULL), -EINVAL, "deregister of NULL");
	du_require_ok(rmp_buffer_register(p, plain, 4096, &tmp), "rmp_buffer_register");
	du_require_ok(rmp_write_buf(p, a, tmp, 0, 4096), "rmp_write_buf (a third buffer)");
	du_require_ok(rmp_buffer_deregister(tmp), "rmp_buffer_deregister");
	expect_rc(rmp_write_buf(p, a, tmp, 0, 8), -EINVAL, "write_buf from a deregistered buffer");
	expect_rc(rmp_read_buf(p, tmp, 0, a, 8), -EINVAL, "read_buf into a deregistered buffer");
	expect_rc(rmp_buffer_deregister(tmp), -EINVAL, "second deregister");
	du_require_ok(rmp_buffer_deregister(wb), "rmp_buffer_deregister");
	du_require_ok(rmp_buffer_deregister(rb), "rmp_buffer_deregister");
	du_require_ok(rmp_free(p, a), "rmp_free");
	free(wm);
	free(rm);
	free(plain);
	du_require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	printf("pool_data: regbuf: PASS\n");
	return 0;
}

static int cmd_async(const char *name)
{
	enum { N = 16 };
	rmp_pool *p = du_open_pool(name, &cl);
	const uint64_t W = 4u << 20, C = W / N;
	rmp_addr a;
	uint64_t start;
	unsigned ndon;
	donor_window(p, W, &a, &start, &ndon);
	uint8_t *wm = malloc(W), *rm = malloc(W);
	rmp_buffer *wb, *rb;
	rmp_op *ops[N];
	du_fill(wm, W, 99);
	memset(rm, 0, W);
	du_require_ok(rmp_buffer_register(p, wm, W, &wb), "rmp_buffer_register");
	du_require_ok(rmp_buffer_register(p, rm, W, &rb), "rmp_buffer_register");

	double t0 = du_now_s();
	for (unsigned i = 0; i < N; i++)
		du_require_ok(i % 2 ? rmp_write_buf_async(p, a + start + i * C, wb, i * C, C, &ops[i])
			    : rmp_write_async(p, a + start + i * C, wm + i * C, C, &ops[i]),
		      "rmp_write_async");
	int last = rmp_op_test(ops[N - 1]), early = rmp_op_wait(ops[N - 1], 0);
	if (early != -EINPROGRESS && early != 0)
		check_die("rmp_op_wait(0) of the last write: %s", rmp_strerror(early));
	expect_rc(rmp_buffer_deregister(wb), -EBUSY, "deregister of a buffer with unreaped operations");
	unsigned pending = 0;
	for (unsigned i = 0; i < N; i++)
		pending += rmp_op_test(ops[i]) == -EINPROGRESS;
	for (unsigned i = 0; i < N; i++) {
		if (i == N - 1 && early == 0)
			break;
		du_require_ok(rmp_op_wait(ops[i], 60000), "rmp_op_wait (write)");
	}
	double t1 = du_now_s();
	printf("pool_data: async: %d writes of %" PRIu64 " KiB over %u donors submitted; %u still in flight right after "
	       "(last: %s)\n", N, C >> 10, ndon, pending, last == -EINPROGRESS ? "in progress" : rmp_strerror(last));

	for (unsigned i = 0; i < N; i++)
		du_require_ok(i % 2 ? rmp_read_async(p, rm + i * C, a + start + i * C, C, &ops[i])
			    : rmp_read_buf_async(p, rb, i * C, a + start + i * C, C, &ops[i]),
		      "rmp_read_async");
	for (unsigned i = N; i-- > 0;) {
		int rc;
		while ((rc = rmp_op_wait(ops[i], 100)) == -EINPROGRESS)
			;
		du_require_ok(rc, "rmp_op_wait (read)");
	}
	double t2 = du_now_s();
	if (memcmp(wm, rm, W))
		check_die("async reads returned other bytes than async writes wrote");
	printf("pool_data: async: %d writes in flight: %.1f MiB/s; %d reads: %.1f MiB/s; verified\n", N,
	       (double)(W >> 20) / (t1 - t0), N, (double)(W >> 20) / (t2 - t1));

	rmp_op *op = (rmp_op *)1;
	expect_rc(rmp_write_async(p, a + (1ull << RMP_ADDR_ORDER(a)) - 10, wm, 100, &op), -EINVAL,
		  "async write past the end of the block");
	if (op)
		check_die("a refused async call left an operation handle");
	expect_rc(rmp_read_buf_async(p, rb, W - 10, a, 100, &op), -EINVAL, "async read_buf past the end of the buffer");
	expect_rc(rmp_op_wait(NULL, 10), -EINVAL, "wait for NULL");
	expect_rc(rmp_op_test(NULL), -EINVAL, "test of NULL");
	du_require_ok(rmp_buffer_deregister(wb), "rmp_buffer_deregister");
	du_require_ok(rmp_buffer_deregister(rb), "rmp_buffer_deregister");
	/* an op still unreaped at close is the pool's to finish and free */
	du_require_ok(rmp_write_async(p, a, wm, 4096, &op), "rmp_write_async");
	du_require_ok(rmp_pool_close(p), "rmp_pool_close with an unreaped operation");
	du_require_ok(rmp_pool_open(cl, name, 0, &p), "rmp_pool_open (again)");
	du_require_ok(rmp_free(p, a), "rmp_free");
	free(wm);
	free(rm);
	du_require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	printf("pool_data: async: PASS\n");
	return 0;
}

static int cmd_noanswer(const char *coord)
{
	struct rmp_connect_opts o = RMP_CONNECT_OPTS_INIT;
	o.connect_timeout_ms = 3000;
	double t0 = du_now_s();
	int rc = rmp_connect_ex(coord, NULL, &o, &cl);
	double secs = du_now_s() - t0;
	if (rc == 0)
		check_die("connected to a coordinator that should not answer");
	if (secs > 10)
		check_die("took %.1f s to fail (limit 3 s)", secs);
	printf("pool_data: a coordinator that does not answer: %s after %.1f s: PASS\n", rmp_strerror(rc), secs);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned threads = 2, steps = 1000, id = 1;
	const char *go = NULL;
	static const struct option opts[] = {
		{ "threads", required_argument, NULL, 't' }, { "steps", required_argument, NULL, 's' },
		{ "id", required_argument, NULL, 'i' },      { "go", required_argument, NULL, 'g' },
		{ NULL, 0, NULL, 0 },
	};
	check_init("pool_data", NULL, 0); /* "pool_data: FAILED: why", exit 1 */
	if (argc < 3) {
		fprintf(stderr, "usage: pool_data big|steps|whole|stopped|bad|regbuf|async NAME [options] | noanswer HOST:PORT\n");
		return 2;
	}
	optind = 3;
	for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		if (c == 't')
			threads = (unsigned)atoi(optarg);
		else if (c == 's')
			steps = (unsigned)atoi(optarg);
		else if (c == 'i')
			id = (unsigned)atoi(optarg);
		else if (c == 'g')
			go = optarg;
		else
			return 2;
	}
	const char *cmd = argv[1], *name = argv[2];
	if (!strcmp(cmd, "big"))
		return cmd_big(name);
	if (!strcmp(cmd, "steps"))
		return cmd_steps(name, threads, steps, id);
	if (!strcmp(cmd, "whole"))
		return cmd_whole(name);
	if (!strcmp(cmd, "stopped") && go)
		return cmd_stopped(name, go);
	if (!strcmp(cmd, "bad"))
		return cmd_bad(name);
	if (!strcmp(cmd, "regbuf"))
		return cmd_regbuf(name);
	if (!strcmp(cmd, "async"))
		return cmd_async(name);
	if (!strcmp(cmd, "noanswer"))
		return cmd_noanswer(name);
	fprintf(stderr, "pool_data: unknown command or missing --go\n");
	return 2;
}
