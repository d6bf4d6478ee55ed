/*
 * cache_data.c - the small-block cache over real RDMA, for
 * tests/rdma/pool_data.sh (issue 10, item 5). Each run is a consumer.
 *
 *   cache_data own NAME FILE GO
 *       turns the cache on (32 KiB), allocates N small blocks of 4-32 KiB,
 *       writes each with its own pattern, reads all back; prints the round
 *       trips per small alloc (the engine's, chunk claims included, over
 *       the allocations made); checks a double free of its own is -EINVAL
 *       and a read of a freed carved handle is refused; writes some live
 *       handles to FILE and creates FILE.ready; waits (bounded) for GO to
 *       exist while another process pokes at them; then checks every
 *       pattern is intact, frees everything (no round trip per free on
 *       average) and closes: the chunks go back.
 *   cache_data foreign NAME FILE
 *       a process without the cache: for each handle in FILE, rmp_free,
 *       rmp_read and rmp_write must fail with -RMP_ECACHED and change
 *       nothing.
 * Coordinator from RMPOOL_COORDINATOR, secret from RMPOOL_SECRET. Exits
 * non-zero, saying why, on any failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "rmpool.h"

#define N 2000
#define SHARED 16

static rmp_client *cl;

static void require_ok(int rc, const char *what)
{
	if (rc)
		check_die("%s: %s (%s)", what, rmp_strerror(rc), rmp_last_error(cl));
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

static void fill(uint8_t *b, size_t n, rmp_addr a)
{
	uint64_t x = a | 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b[i] = (uint8_t)x;
	}
}

static uint64_t size_of(rmp_addr a)
{
	return 1ull << RMP_ADDR_ORDER(a);
}

static void verify(rmp_pool *p, rmp_addr a, uint8_t *buf, uint8_t *want)
{
	uint64_t n = size_of(a);
	memset(buf, 0, n);
	require_ok(rmp_read(p, buf, a, n), "rmp_read of an own carved block");
	fill(want, n, a);
	REQUIRE(memcmp(buf, want, n) == 0, "block %#" PRIx64 ": wrong bytes", a);
}

static int own(const char *name, const char *file, const char *go)
{
	static rmp_addr a[N];
	static uint8_t buf[32 << 10], want[32 << 10];
	struct rmp_pool_stats s0, s1, s2;
	struct rmp_small_cache_stats cs = { .size = sizeof(cs) };
	rmp_pool *p = open_pool(name);
	uint64_t rng = 12345;

	require_ok(rmp_pool_set_small_cache(p, 32 << 10), "rmp_pool_set_small_cache");
	REQUIRE(rmp_pool_set_small_cache(p, 128 << 10) == -EINVAL, "a cache above 64 KiB was accepted");
	require_ok(rmp_pool_stats(p, &s0), "rmp_pool_stats");
	for (int i = 0; i < N; i++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		uint64_t size = 4096ull << (rng % 4);
		require_ok(rmp_alloc(p, size, &a[i]), "rmp_alloc (small)");
		fill(buf, size_of(a[i]), a[i]);
		require_ok(rmp_write(p, a[i], buf, size_of(a[i])), "rmp_write of an own carved block");
	}
	require_ok(rmp_pool_stats(p, &s1), "rmp_pool_stats");
	for (int i = 0; i < N; i++)
		verify(p, a[i], buf, want);
	require_ok(rmp_pool_small_cache_stats(p, &cs), "rmp_pool_small_cache_stats");
	double rt_alloc = (double)(s1.alloc_round_trips - s0.alloc_round_trips) / N;
	printf("cache_data: %d small allocations (4-32 KiB): %" PRIu64 " carved, %" PRIu64
	       " chunks of 1 MiB claimed, %.3f round trips per allocation\n",
	       N, cs.carved_allocs, cs.chunks_claimed, rt_alloc);
	REQUIRE(cs.carved_allocs == N, "only %" PRIu64 " of %d allocations came from the cache", cs.carved_allocs, N);
	REQUIRE(cs.size == sizeof(cs), "stats size %zu", cs.size);

	/* Own double free and a read of a freed carved handle: refused. */
	rmp_addr gone = a[N - 1];
	require_ok(rmp_free(p, gone), "rmp_free");
	REQUIRE(rmp_free(p, gone) == -EINVAL, "a double free of a carved block was not refused");
	REQUIRE(rmp_read(p, buf, gone, 64) == -EINVAL, "a read of a freed carved block was not refused");

	/* Hand some live ones to the other process. */
	FILE *f = fopen(file, "w");
	if (!f)
		check_die("cannot write %s", file);
	for (int i = 0; i < SHARED; i++)
		fprintf(f, "%#" PRIx64 "\n", a[i * (N / SHARED)]);
	fclose(f);
	char ready[512];
	snprintf(ready, sizeof(ready), "%s.ready", file);
	fclose(fopen(ready, "w"));
	for (int i = 0; access(go, F_OK) != 0; i++) {
		if (i > 3000)
			check_die("%s did not appear within 300 s", go);
		usleep(100000);
	}
	/* Nothing the other process tried reached these blocks. */
	for (int i = 0; i < N - 1; i++)
		verify(p, a[i], buf, want);
	require_ok(rmp_pool_stats(p, &s1), "rmp_pool_stats");
	for (int i = 0; i < N - 1; i++)
		require_ok(rmp_free(p, a[i]), "rmp_free (small)");
	require_ok(rmp_pool_stats(p, &s2), "rmp_pool_stats");
	require_ok(rmp_pool_small_cache_stats(p, &cs), "rmp_pool_small_cache_stats");
	double rt_free = (double)(s2.free_round_trips - s1.free_round_trips) / (N - 1);
	printf("cache_data: %d frees: %.3f round trips per free; %" PRIu64 " chunk(s) given back, %" PRIu64
	       " held as the spare\n", N - 1, rt_free, cs.chunks_released, cs.chunks_held);
	REQUIRE(cs.carved_live == 0, "%" PRIu64 " carved blocks still live", cs.carved_live);
	REQUIRE(rt_alloc < 0.1 && rt_free < 0.1, "small blocks cost %.3f / %.3f round trips", rt_alloc, rt_free);
	require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	printf("cache_data: own: PASS\n");
	return check_failures() ? 1 : 0;
}

static int foreign(const char *name, const char *file)
{
	rmp_pool *p = open_pool(name);
	uint8_t buf[64];
	char line[64];
	int n = 0;
	FILE *f = fopen(file, "r");

	if (!f)
		check_die("cannot read %s", file);
	memset(buf, 0xee, sizeof(buf));
	while (fgets(line, sizeof(line), f)) {
		rmp_addr a = strtoull(line, NULL, 0);
		int rc = rmp_free(p, a);
		CHECK(rc == -RMP_ECACHED, "free of carved %#" PRIx64 ": %d, want -RMP_ECACHED (%s)", a, rc,
		      rmp_last_error(cl));
		rc = rmp_read(p, buf, a, sizeof(buf));
		CHECK(rc == -RMP_ECACHED, "read of carved %#" PRIx64 ": %d, want -RMP_ECACHED", a, rc);
		rc = rmp_write(p, a, buf, sizeof(buf));
		CHECK(rc == -RMP_ECACHED, "write of carved %#" PRIx64 ": %d, want -RMP_ECACHED", a, rc);
		n++;
	}
	fclose(f);
	REQUIRE(n == SHARED, "read %d handles from %s", n, file);
	printf("cache_data: foreign: %d carved handles of another process: free, read and write refused "
	       "(-RMP_ECACHED: \"%s\")\n", n, rmp_strerror(-RMP_ECACHED));
	require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	return check_failures() ? 1 : 0;
}

int main(int argc, char **argv)
{
	check_init("cache_data", NULL, 0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && strcmp(argv[1], "own") == 0)
		return own(argv[2], argv[3], argv[4]);
	if (argc == 4 && strcmp(argv[1], "foreign") == 0)
		return foreign(argv[2], argv[3]);
	fprintf(stderr, "usage: cache_data own NAME FILE GO | cache_data foreign NAME FILE\n");
	return 2;
}
