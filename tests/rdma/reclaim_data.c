/*
 * reclaim_data.c - the consumers of tests/rdma/reclaim.sh: one that dies
 * holding blocks (SIGKILL), and one that survives and keeps its own.
 *
 *   reclaim_data hold NAME COUNT SIZE READY
 *       attaches, allocates COUNT blocks of SIZE bytes (from several
 *       threads' shards: the blocks carry several of its tags), writes a
 *       pattern into each, then writes
 *         client C lease L blocks N bytes B
 *       to READY (renamed into place) and sleeps until it is killed (at
 *       most 10 minutes). It never frees anything.
 *   reclaim_data keep NAME COUNT SIZE READY GO
 *       the survivor: the same allocation and patterns, READY likewise;
 *       then waits for the file GO (polled every 10 ms, renewing its
 *       lease meanwhile) and reads every block back: byte for byte its
 *       pattern (else exit 1, saying how many bytes of which block
 *       differ); then frees them all and closes.
 * Coordinator from RMPOOL_COORDINATOR, secret from RMPOOL_SECRET.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "data_util.h"
#include "rmpool.h"

#define MAX_BLOCKS 4096u
#define THREADS 4u

struct job {
	rmp_pool *p;
	unsigned from, to; /* block indexes */
	uint64_t size, seed;
	rmp_addr *a;
	int rc;
};

static uint64_t seed_of(uint64_t seed, unsigned i) { return seed * 0x9E3779B97F4A7C15ull + i; }

/* Allocates and writes blocks [from, to) from its own thread (its own
 * shard: another tag). */
static void *fill_main(void *arg)
{
	struct job *j = arg;
	uint8_t *b = malloc(j->size);

	if (!b) {
		j->rc = -ENOMEM;
		return NULL;
	}
	for (unsigned i = j->from; i < j->to && j->rc == 0; i++) {
		if ((j->rc = rmp_alloc(j->p, j->size, &j->a[i])) != 0) {
			fprintf(stderr, "reclaim_data: rmp_alloc of block %u: %s: %s\n", i, rmp_strerror(j->rc),
				rmp_last_error(NULL));
			break;
		}
		du_fill(b, j->size, seed_of(j->seed, i));
		if ((j->rc = rmp_write(j->p, j->a[i], b, j->size)) != 0)
			fprintf(stderr, "reclaim_data: rmp_write of block %u: %s: %s\n", i, rmp_strerror(j->rc),
				rmp_last_error(NULL));
	}
	free(b);
	return NULL;
}

static rmp_pool *fill(const char *name, rmp_client **cl, unsigned count, uint64_t size, uint64_t seed,
		      rmp_addr *a, const char *ready)
{
	rmp_pool *p;
	struct job j[THREADS];
	pthread_t t[THREADS];
	struct rmp_pool_info *in;
	char tmp[512];

	if (!getenv("RMPOOL_COORDINATOR"))
		check_die("RMPOOL_COORDINATOR is not set");
	du_require_ok(rmp_connect(getenv("RMPOOL_COORDINATOR"), NULL, cl), "rmp_connect");
	du_require_ok(rmp_pool_open(*cl, name, 0, &p), "rmp_pool_open (attach)");
	for (unsigned k = 0; k < THREADS; k++) {
		j[k] = (struct job){ .p = p, .from = count * k / THREADS, .to = count * (k + 1) / THREADS,
				     .size = size, .seed = seed, .a = a };
		if (pthread_create(&t[k], NULL, fill_main, &j[k]))
			check_die("pthread_create");
	}
	for (unsigned k = 0; k < THREADS; k++) {
		pthread_join(t[k], NULL);
		if (j[k].rc)
			check_die("thread %u: %s", k, rmp_strerror(j[k].rc));
	}
	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	snprintf(tmp, sizeof(tmp), "%s.tmp", ready);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "client %" PRIu64 " lease %" PRIu64 " blocks %u bytes %" PRIu64 "\n",
			  rmp_client_id(*cl), in->lease_id, count, (uint64_t)count * size) < 0 ||
	    fclose(f) || rename(tmp, ready))
		check_die("cannot write %s", ready);
	printf("reclaim_data: client %" PRIu64 " lease %" PRIu64 ": %u blocks of %" PRIu64 " bytes written\n",
	       rmp_client_id(*cl), in->lease_id, count, size);
	rmp_pool_info_free(in);
	fflush(stdout);
	return p;
}

static int cmd_hold(const char *name, unsigned count, uint64_t size, const char *ready)
{
	static rmp_addr a[MAX_BLOCKS];
	rmp_client *cl;

	fill(name, &cl, count, size, 0x501D, a, ready);
	sleep(600); /* killed long before */
	check_die("hold: not killed within 10 minutes");
	return 1;
}

static int cmd_keep(const char *name, unsigned count, uint64_t size, const char *ready, const char *go)
{
	static rmp_addr a[MAX_BLOCKS];
	rmp_client *cl;
	rmp_pool *p = fill(name, &cl, count, size, 0x5AFE, a, ready);
	uint8_t *want = malloc(size), *got = malloc(size);
	unsigned bad_blocks = 0;

	if (!want || !got)
		check_die("out of memory");
	for (int i = 0; access(go, F_OK) != 0; i++) {
		if (i > 60000)
			check_die("no %s within 10 minutes", go);
		usleep(10000);
	}
	for (unsigned i = 0; i < count; i++) {
		du_require_ok(rmp_read(p, got, a[i], size), "rmp_read");
		du_fill(want, size, seed_of(0x5AFE, i));
		uint64_t diff = 0;
		for (uint64_t k = 0; k < size; k++)
			diff += got[k] != want[k];
		if (diff) {
			fprintf(stderr, "reclaim_data: FAILED: block %u (%#" PRIx64 "): %" PRIu64
				" of %" PRIu64 " bytes differ\n", i, (uint64_t)a[i], diff, size);
			bad_blocks++;
		}
	}
	printf("reclaim_data: survivor: %u blocks of %" PRIu64 " bytes read back, %u differ\n", count, size,
	       bad_blocks);
	for (unsigned i = 0; i < count; i++)
		du_require_ok(rmp_free(p, a[i]), "rmp_free");
	du_require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	free(want);
	free(got);
	return bad_blocks ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 6 && strcmp(argv[1], "hold") == 0) {
		unsigned n = (unsigned)strtoul(argv[3], NULL, 0);
		uint64_t size = strtoull(argv[4], NULL, 0);
		if (n == 0 || n > MAX_BLOCKS || size == 0)
			check_die("hold: COUNT 1..%u, SIZE > 0", MAX_BLOCKS);
		return cmd_hold(argv[2], n, size, argv[5]);
	}
	if (argc >= 7 && strcmp(argv[1], "keep") == 0) {
		unsigned n = (unsigned)strtoul(argv[3], NULL, 0);
		uint64_t size = strtoull(argv[4], NULL, 0);
		if (n == 0 || n > MAX_BLOCKS || size == 0)
			check_die("keep: COUNT 1..%u, SIZE > 0", MAX_BLOCKS);
		return cmd_keep(argv[2], n, size, argv[5], argv[6]);
	}
	fprintf(stderr, "usage: reclaim_data hold NAME COUNT SIZE READY\n"
			"       reclaim_data keep NAME COUNT SIZE READY GO\n");
	return 2;
}
