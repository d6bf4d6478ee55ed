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
 *   reclaim_data churn NAME FIXED SIZE READY CTL
 *       a survivor under load (tests/rdma/reclaim_restart.sh): FIXED
 *       blocks of SIZE bytes from THREADS threads, each written with its
 *       pattern; READY as above; then each of CHURN_THREADS threads
 *       allocates and frees blocks of SIZE in a loop (up to CHURN_LIVE at
 *       a time, the first 4 KiB of every other one written with a pattern
 *       of its own and checked before its free), non-stop, so that a
 *       coordinator killed meanwhile cuts operations in the middle. A
 *       handle that overlaps a block this process holds is an error (an
 *       owner map over the pool's space, claimed with CAS). Errors of
 *       alloc and free while the coordinator is away are counted and the
 *       loop goes on; a free cut mid-way returns 0 (the library
 *       settles it: rmp_free); a free that failed (nothing sent: the
 *       coordinator away) is not retried and its block is given up: it
 *       stays with the churner's tag until its lease ends, and the next
 *       resolver run after that gives it back. Files: CTL.gentle - from then on the
 *       threads work only 250 ms of every 400 (the resolver needs a
 *       moment with no operation in flight for a clean snapshot);
 *       CTL.quiet - they stop, free their churn blocks, the fixed blocks
 *       are read back byte for byte (else exit 1) and freed, the pool is
 *       closed, and CTL.done gets
 *         ops N failed F away A free_failed R overlaps O bad B in_doubt D unsettled U
 *       (failed: calls that failed with anything but -RMP_EAWAY, -ENOMEM,
 *       -EAGAIN; free_failed: frees that failed, whose blocks were given
 *       up; in_doubt: frees cut in the middle, settled by the library;
 *       unsettled: of them not settled yet before the close).
 * Coordinator from RMPOOL_COORDINATOR, secret from RMPOOL_SECRET.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
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

/* ---- churn ---- */

#define CHURN_LIVE 8u
/* Threads of the churn loop: enough that some operation is nearly always
 * in the middle of its metadata round trips when the coordinator dies. */
#define CHURN_THREADS 8u
#define CHURN_HEAD 4096u /* bytes of a churn block written and checked */

static const char *churn_ctl;
static _Atomic uint8_t *owner; /* per SIZE unit of the pool's space: 1 while this process holds it */
static uint64_t owner_units;
static _Atomic uint64_t c_ops, c_failed, c_away, c_free_failed, c_overlaps, c_bad;

static bool ctl_has(const char *what)
{
	char path[512];
	snprintf(path, sizeof(path), "%s.%s", churn_ctl, what);
	return access(path, F_OK) == 0;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void owner_take(rmp_addr a, uint64_t size)
{
	uint64_t u = RMP_ADDR_OFFSET(a) / size;
	uint8_t want = 0;
	if (u >= owner_units || !atomic_compare_exchange_strong(&owner[u], &want, 1)) {
		fprintf(stderr, "reclaim_data: FAILED: rmp_alloc returned %#" PRIx64 ", which overlaps a block this "
			"process holds\n", (uint64_t)a);
		atomic_fetch_add(&c_overlaps, 1);
	}
}

static void owner_drop(rmp_addr a, uint64_t size)
{
	uint64_t u = RMP_ADDR_OFFSET(a) / size;
	if (u < owner_units)
		atomic_store(&owner[u], 0);
}

/* An error of rmp_alloc/rmp_free in the loop: counted; only an RDMA error
 * (not -RMP_EAWAY, not the allocator's own answers) may leave a block. */
static void churn_error(int rc)
{
	if (rc == -RMP_EAWAY) {
		atomic_fetch_add(&c_away, 1);
		usleep(5000); /* the coordinator is away: no busy loop on a 1-vCPU guest */
	}
	else if (rc != -ENOMEM && rc != -EAGAIN)
		atomic_fetch_add(&c_failed, 1);
}

struct churn {
	rmp_pool *p;
	uint64_t size;
	unsigned id;
	rmp_addr live[CHURN_LIVE];
	uint64_t seed[CHURN_LIVE];
	unsigned n;
	uint64_t next_seed;
};

static void churn_free(struct churn *c, unsigned k)
{
	uint8_t got[CHURN_HEAD], want[CHURN_HEAD];
	size_t head = c->size < CHURN_HEAD ? c->size : CHURN_HEAD;
	int rc = c->seed[k] ? rmp_read(c->p, got, c->live[k], head) : -1;
	if (rc == 0) {
		du_fill(want, head, c->seed[k]);
		if (memcmp(got, want, head) != 0) {
			fprintf(stderr, "reclaim_data: FAILED: churn block %#" PRIx64 " lost its bytes\n",
				(uint64_t)c->live[k]);
			atomic_fetch_add(&c_bad, 1);
		}
	}
	/* Out of the owner map first: once the free lands another thread
	 * may get the block. */
	owner_drop(c->live[k], c->size);
	if ((rc = rmp_free(c->p, c->live[k])) != 0) {
		churn_error(rc); /* given up: it may have landed */
		atomic_fetch_add(&c_free_failed, 1);
	}
	atomic_fetch_add(&c_ops, 1);
	c->live[k] = c->live[--c->n];
	c->seed[k] = c->seed[c->n];
}

static void churn_step(struct churn *c)
{
	uint8_t buf[CHURN_HEAD];
	size_t head = c->size < CHURN_HEAD ? c->size : CHURN_HEAD;
	c->next_seed = c->next_seed * 6364136223846793005ull + 1442695040888963407ull;
	if (c->n == CHURN_LIVE || (c->n > 0 && (c->next_seed >> 40) % 2)) {
		churn_free(c, (unsigned)(c->next_seed >> 20) % c->n);
		return;
	}
	rmp_addr a;
	int rc = rmp_alloc(c->p, c->size, &a);
	atomic_fetch_add(&c_ops, 1);
	if (rc) {
		churn_error(rc);
		return;
	}
	owner_take(a, c->size);
	/* Every other block's head carries a pattern (checked at its free);
	 * the rest keep the loop on the metadata. */
	uint64_t seed = (c->next_seed >> 30) & 1 ? c->next_seed | 1 : 0;
	du_fill(buf, head, seed);
	if (seed && rmp_write(c->p, a, buf, head) != 0) {
		owner_drop(a, c->size);
		(void)rmp_free(c->p, a); /* a failed write is not what this tests */
		return;
	}
	c->live[c->n] = a;
	c->seed[c->n++] = seed;
}

static void *churn_main(void *arg)
{
	struct churn *c = arg;
	c->next_seed = 0xC4u + c->id;
	while (!ctl_has("quiet")) {
		if (ctl_has("gentle") && mono_ms() % 400 >= 250) {
			usleep(10000);
			continue;
		}
		churn_step(c);
	}
	while (c->n)
		churn_free(c, c->n - 1);
	return NULL;
}

static int cmd_churn(const char *name, unsigned count, uint64_t size, const char *ready, const char *ctl)
{
	static rmp_addr a[MAX_BLOCKS];
	static struct churn c[CHURN_THREADS];
	pthread_t t[CHURN_THREADS];
	rmp_client *cl;
	struct rmp_pool_info *in;
	rmp_pool *p = fill(name, &cl, count, size, 0xC0DE, a, ready);
	uint8_t *want = malloc(size), *got = malloc(size);
	unsigned bad_blocks = 0;

	churn_ctl = ctl;
	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	owner_units = in->space / size + 1;
	rmp_pool_info_free(in);
	owner = calloc(owner_units, 1);
	if (!owner || !want || !got)
		check_die("out of memory");
	for (unsigned i = 0; i < count; i++)
		owner_take(a[i], size);
	for (unsigned k = 0; k < CHURN_THREADS; k++) {
		c[k] = (struct churn){ .p = p, .size = size, .id = k };
		if (pthread_create(&t[k], NULL, churn_main, &c[k]))
			check_die("pthread_create");
	}
	for (unsigned k = 0; k < CHURN_THREADS; k++)
		pthread_join(t[k], NULL);
	for (unsigned i = 0; i < count; i++) {
		du_require_ok(rmp_read(p, got, a[i], size), "rmp_read");
		du_fill(want, size, seed_of(0xC0DE, i));
		if (memcmp(got, want, size) != 0) {
			fprintf(stderr, "reclaim_data: FAILED: fixed block %u (%#" PRIx64 ") lost its bytes\n", i,
				(uint64_t)a[i]);
			bad_blocks++;
		}
		du_require_ok(rmp_free(p, a[i]), "rmp_free of a fixed block");
	}
	/* Frees the kill cut in the middle returned 0: the library settles
	 * them (rmp_free); rmp_pool_close settles what is left. */
	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	uint64_t in_doubt = in->frees_in_doubt, unsettled = in->frees_unsettled;
	rmp_pool_info_free(in);
	du_require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
	char path[512], tmp[520];
	snprintf(path, sizeof(path), "%s.done", ctl);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	uint64_t bad = atomic_load(&c_bad) + bad_blocks;
	if (!f || fprintf(f, "ops %" PRIu64 " failed %" PRIu64 " away %" PRIu64 " free_failed %" PRIu64
			  " overlaps %" PRIu64 " bad %" PRIu64 " in_doubt %" PRIu64 " unsettled %" PRIu64 "\n",
			  atomic_load(&c_ops), atomic_load(&c_failed), atomic_load(&c_away), atomic_load(&c_free_failed),
			  atomic_load(&c_overlaps), bad, in_doubt, unsettled) < 0 || fclose(f) || rename(tmp, path))
		check_die("cannot write %s", path);
	printf("reclaim_data: churn: %" PRIu64 " operations, %" PRIu64 " failed with an RDMA error, %" PRIu64
	       " with the coordinator away (%" PRIu64 " frees failed: blocks given up), %" PRIu64
	       " overlaps; %u fixed blocks read back, %" PRIu64 " blocks wrong\n",
	       atomic_load(&c_ops), atomic_load(&c_failed), atomic_load(&c_away), atomic_load(&c_free_failed),
	       atomic_load(&c_overlaps), count, bad);
	free(want);
	free(got);
	return bad || atomic_load(&c_overlaps) ? 1 : 0;
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
	if (argc >= 7 && strcmp(argv[1], "churn") == 0) {
		unsigned n = (unsigned)strtoul(argv[3], NULL, 0);
		uint64_t size = strtoull(argv[4], NULL, 0);
		if (n == 0 || n > MAX_BLOCKS || size == 0)
			check_die("churn: COUNT 1..%u, SIZE > 0", MAX_BLOCKS);
		return cmd_churn(argv[2], n, size, argv[5], argv[6]);
	}
	fprintf(stderr, "usage: reclaim_data hold NAME COUNT SIZE READY\n"
			"       reclaim_data keep NAME COUNT SIZE READY GO\n"
			"       reclaim_data churn NAME FIXED SIZE READY CTL\n");
	return 2;
}
