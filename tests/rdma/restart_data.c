/*
 * restart_data.c - blocks that must outlive restarts of the coordinator,
 * for tests/rdma/restart.sh. Each run is a fresh consumer.
 *
 *   restart_data put  NAME FILE SIZE HOSTS
 *       allocates blocks of SIZE bytes until they lie on HOSTS hosts (or
 *       the pool is full: failure), writes each with a pattern of its own
 *       handle, appends the handles to FILE and leaves them allocated
 *   restart_data get  NAME FILE
 *       reads every block in FILE back (blocks this process did not
 *       allocate) and checks every byte
 *   restart_data drop NAME FILE
 *       frees every block in FILE
 * Coordinator from RMPOOL_COORDINATOR, secret from RMPOOL_SECRET. Prints
 * one line of figures; exits non-zero, saying why, on any failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "rmpool.h"

#define CHUNK (1u << 20)
#define MAX_BLOCKS 4096

static rmp_client *cl;

static void require_ok(int rc, const char *what)
{
	if (rc)
		check_die("%s: %s (%s)", what, rmp_strerror(rc), rmp_last_error(NULL));
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static rmp_pool *open_pool(const char *name)
{
	const char *coord = getenv("RMPOOL_COORDINATOR");
	rmp_pool *p;

	if (!coord)
		check_die("RMPOOL_COORDINATOR is not set");
	require_ok(rmp_connect(coord, NULL, &cl), "rmp_connect");
	require_ok(rmp_pool_open(cl, name, 0, &p), "rmp_pool_open (attach)");
	return p;
}

static void close_pool(rmp_pool *p)
{
	require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
}

/* Byte i of block a's pattern, written chunk by chunk. */
static void fill(uint8_t *b, size_t n, rmp_addr a, uint64_t at)
{
	uint64_t x = (a ^ (at * 0x9E3779B97F4A7C15ull)) | 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b[i] = (uint8_t)x;
	}
}

static size_t load(const char *file, rmp_addr *v)
{
	FILE *f = fopen(file, "r");
	size_t n = 0;
	unsigned long long a;

	if (!f)
		check_die("cannot read %s", file);
	while (n < MAX_BLOCKS && fscanf(f, "%llx", &a) == 1)
		v[n++] = (rmp_addr)a;
	fclose(f);
	if (n == 0)
		check_die("%s holds no handle", file);
	return n;
}

/* Adds the hosts behind block a to hosts[] (*nh of them). */
static void note_hosts(rmp_pool *p, const struct rmp_pool_info *in, rmp_addr a, char (*hosts)[256],
		       unsigned *nh)
{
	uint64_t off = RMP_ADDR_OFFSET(a), len = 1ull << RMP_ADDR_ORDER(a);

	for (uint64_t s = off / in->segment_size; s * in->segment_size < off + len; s++) {
		uint32_t did;
		require_ok(rmp_pool_segment_donor(p, s, &did), "rmp_pool_segment_donor");
		for (size_t i = 0; i < in->n_donors; i++) {
			if (in->donors[i].donor_id != did)
				continue;
			unsigned k;
			for (k = 0; k < *nh && strcmp(hosts[k], in->donors[i].host); k++)
				;
			if (k == *nh && *nh < 16)
				snprintf(hosts[(*nh)++], sizeof(hosts[0]), "%s", in->donors[i].host);
		}
	}
}

static void write_block(rmp_pool *p, rmp_addr a, uint8_t *buf)
{
	uint64_t len = 1ull << RMP_ADDR_ORDER(a);

	for (uint64_t at = 0; at < len; at += CHUNK) {
		size_t n = len - at < CHUNK ? (size_t)(len - at) : CHUNK;
		fill(buf, n, a, at);
		require_ok(rmp_write(p, a + at, buf, n), "rmp_write");
	}
}

static int cmd_put(const char *name, const char *file, uint64_t size, unsigned want_hosts)
{
	rmp_pool *p = open_pool(name);
	struct rmp_pool_info *in;
	char hosts[16][256];
	unsigned nh = 0, n = 0;
	uint8_t *buf = malloc(CHUNK);
	FILE *f = fopen(file, "a");

	if (!buf || !f)
		check_die("cannot set up (%s)", file);
	require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	double t0 = now_s();
	while (nh < want_hosts) {
		rmp_addr a;
		int rc = rmp_alloc(p, size, &a);
		if (rc == -ENOMEM)
			check_die("the pool is full after %u blocks on %u host(s), want %u", n, nh, want_hosts);
		require_ok(rc, "rmp_alloc");
		write_block(p, a, buf);
		fprintf(f, "%" PRIx64 "\n", (uint64_t)a);
		note_hosts(p, in, a, hosts, &nh);
		n++;
	}
	if (fclose(f) != 0)
		check_die("cannot write %s", file);
	printf("restart_data: put %u block(s) of %" PRIu64 " bytes on %u hosts in %.2f s\n", n, size, nh,
	       now_s() - t0);
	rmp_pool_info_free(in);
	free(buf);
	close_pool(p);
	return 0;
}

static int cmd_get(const char *name, const char *file)
{
	static rmp_addr v[MAX_BLOCKS];
	size_t n = load(file, v);
	rmp_pool *p = open_pool(name);
	uint8_t *w = malloc(CHUNK), *r = malloc(CHUNK);
	uint64_t bytes = 0;

	if (!w || !r)
		check_die("out of memory");
	double t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		uint64_t len = 1ull << RMP_ADDR_ORDER(v[i]);
		for (uint64_t at = 0; at < len; at += CHUNK) {
			size_t k = len - at < CHUNK ? (size_t)(len - at) : CHUNK;
			fill(w, k, v[i], at);
			require_ok(rmp_read(p, r, v[i] + at, k), "rmp_read");
			if (memcmp(w, r, k))
				check_die("block %zu (handle %#" PRIx64 "): bytes at %" PRIu64 " read back wrong",
					  i, (uint64_t)v[i], at);
			bytes += k;
		}
	}
	printf("restart_data: read back %zu block(s), %" PRIu64 " bytes, every byte right, in %.2f s\n", n,
	       bytes, now_s() - t0);
	free(w);
	free(r);
	close_pool(p);
	return 0;
}

static int cmd_drop(const char *name, const char *file)
{
	static rmp_addr v[MAX_BLOCKS];
	size_t n = load(file, v);
	rmp_pool *p = open_pool(name);

	for (size_t i = 0; i < n; i++)
		require_ok(rmp_free(p, v[i]), "rmp_free");
	printf("restart_data: freed %zu block(s)\n", n);
	close_pool(p);
	return 0;
}

int main(int argc, char **argv)
{
	check_init("restart_data", NULL, 0); /* "restart_data: FAILED: why", exit 1 */
	if (argc == 6 && strcmp(argv[1], "put") == 0)
		return cmd_put(argv[2], argv[3], strtoull(argv[4], NULL, 0), (unsigned)atoi(argv[5]));
	if (argc == 4 && strcmp(argv[1], "get") == 0)
		return cmd_get(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "drop") == 0)
		return cmd_drop(argv[2], argv[3]);
	fprintf(stderr, "usage: restart_data put NAME FILE SIZE HOSTS | get NAME FILE | drop NAME FILE\n");
	return 2;
}
