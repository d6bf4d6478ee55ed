/*
 * restart_data.c - blocks that must outlive restarts of the coordinator,
 * and a consumer that stays attached through them, for
 * tests/rdma/restart.sh.
 *
 *   restart_data put  NAME FILE SIZE HOSTS [AVOID...]
 *       a fresh consumer: allocates blocks of SIZE bytes until they lie
 *       on HOSTS hosts (or the pool is full: failure), keeps up to KEEP
 *       of them per host and frees the rest (so that the pool keeps room
 *       on every host for the next consumer), writes each kept block with
 *       a pattern of its own handle and appends the handles to FILE.
 *       Every block it allocates must overlap none of the blocks listed in
 *       FILE and the AVOID files (blocks other consumers hold)
 *   restart_data get  NAME FILE
 *       reads every block in FILE back (blocks this process did not
 *       allocate) and checks every byte
 *   restart_data drop NAME FILE
 *       frees every block in FILE
 *   restart_data ride NAME BLOCKFILE REPORT STOPFILE [AVOID...]
 *       the consumer that rides through the outages (below); its blocks
 *       must overlap none listed in the AVOID files
 * Coordinator from RMPOOL_COORDINATOR, secret from RMPOOL_SECRET. Prints
 * one line of figures; exits non-zero, saying why, on any failure.
 *
 * ride: attaches, gathers RIDE_BLOCK blocks as put does (checked to lie
 * on every host of the pool), writes each with a pattern, writes their
 * handles to BLOCKFILE (put's format; renamed into place once all are
 * written), then until STOPFILE exists: read block k back and check it
 * against the pattern it was last written with, write a fresh pattern,
 * read that back and check it; k rotates over the blocks, so every host
 * is touched every round. Every RIDE_STATUS_MS it calls rmp_status: an
 * outage runs from the first call that fails (any code: -RMP_EAWAY is the
 * documented one) to the first that works again; the reads and writes
 * that complete in between count for it. From an outage's start until
 * the first allocation that works (also after the outage, while the pool
 * is being re-adopted), it probes rmp_alloc of one small block every
 * RIDE_PROBE_MS and frees the block at once. It calls rmp_alloc and
 * rmp_free at no other time while it rides: an allocation cut off by a
 * SIGKILL of the coordinator in mid-flight is not what this test is about.
 * Every RIDE_PROGRESS_MS it replaces REPORT.progress (counts so far, for
 * the driver to watch). On STOPFILE: every block checked once more and
 * freed, REPORT written:
 *   outage I duration_ms D reads R writes W errors E wrong_bytes B
 *          alloc_ms A alloc_bad X status_max_ms S   (A -1: no allocation)
 *   total outages N reads R writes W errors E wrong_bytes B alloc_bad X seconds T
 * errors are failed reads and writes; alloc_bad probes that returned
 * another code than -RMP_EAWAY or -EAGAIN; status_max_ms the longest
 * rmp_status call in the outage (a stall shows there). Exit 0 only when
 * no read or write failed and no byte was wrong. Every wait is bounded.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "data_util.h"
#include "rmpool.h"

#define CHUNK (1u << 20)
#define MAX_BLOCKS 4096
#define KEEP 3 /* blocks kept per host by put and ride */

static rmp_client *cl;

/* The pattern of block a's bytes from offset at on. */
static void fill(uint8_t *b, size_t n, rmp_addr a, uint64_t at)
{
	du_fill(b, n, (uint64_t)a ^ (at * 0xD1B54A32D192ED03ull));
}

/* Appends the handles in file to v[*n..]; a file that does not exist
 * holds none when optional. */
static void load_into(const char *file, rmp_addr *v, size_t *n, int optional)
{
	FILE *f = fopen(file, "r");
	unsigned long long a;

	if (!f) {
		if (optional && errno == ENOENT)
			return;
		check_die("cannot read %s", file);
	}
	while (*n < MAX_BLOCKS && fscanf(f, "%llx", &a) == 1)
		v[(*n)++] = (rmp_addr)a;
	fclose(f);
}

static size_t load(const char *file, rmp_addr *v)
{
	size_t n = 0;

	load_into(file, v, &n, 0);
	if (n == 0)
		check_die("%s holds no handle", file);
	return n;
}

static int overlap(rmp_addr a, rmp_addr b)
{
	uint64_t ao = RMP_ADDR_OFFSET(a), bo = RMP_ADDR_OFFSET(b);
	return ao < bo + (1ull << RMP_ADDR_ORDER(b)) && bo < ao + (1ull << RMP_ADDR_ORDER(a));
}

/* What gather collected: the blocks kept, on how many hosts. */
struct gathered {
	rmp_addr v[MAX_BLOCKS];
	size_t n;
	unsigned hosts, tried;
};

/* Allocates blocks of size bytes until they lie on want_hosts hosts; a
 * block is kept while one of its hosts has fewer than KEEP kept blocks,
 * the others are freed at the end (not at once: the next allocation would
 * get the same block back). The blocks usually come in address order, so
 * reaching the last host means walking through the others' free space;
 * the frees give it back. Each block must overlap none of avoid[]. */
static void gather(rmp_pool *p, uint64_t size, unsigned want_hosts, const rmp_addr *avoid,
		   size_t n_avoid, struct gathered *g)
{
	static rmp_addr surplus[MAX_BLOCKS];
	struct rmp_pool_info *in;
	char hosts[DU_MAX_HOSTS][DU_HOST_LEN];
	unsigned nh = 0, kept[DU_MAX_HOSTS] = { 0 }, mine[DU_MAX_HOSTS];
	size_t n_surplus = 0;

	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	g->n = 0;
	g->tried = 0;
	while (nh < want_hosts) {
		rmp_addr a;
		int rc = rmp_alloc(p, size, &a);
		if (rc == -ENOMEM)
			check_die("the pool is full after %u blocks on %u host(s), want %u", g->tried, nh,
				  want_hosts);
		du_require_ok(rc, "rmp_alloc");
		g->tried++;
		for (size_t i = 0; i < n_avoid; i++)
			if (overlap(a, avoid[i]))
				check_die("new block %#" PRIx64 " overlaps live block %#" PRIx64 " of another consumer",
					  (uint64_t)a, (uint64_t)avoid[i]);
		for (size_t i = 0; i < g->n + n_surplus; i++) {
			rmp_addr b = i < g->n ? g->v[i] : surplus[i - g->n];
			if (overlap(a, b))
				check_die("new block %#" PRIx64 " overlaps block %#" PRIx64 " this consumer holds",
					  (uint64_t)a, (uint64_t)b);
		}
		unsigned nm = du_block_hosts(p, in, a, hosts, &nh, mine), keep = 0;
		for (unsigned i = 0; i < nm; i++)
			keep |= kept[mine[i]] < KEEP;
		if (!keep || g->n == MAX_BLOCKS) {
			if (n_surplus == MAX_BLOCKS)
				check_die("%u blocks allocated and still on %u of %u hosts", g->tried, nh,
					  want_hosts);
			surplus[n_surplus++] = a;
			continue;
		}
		for (unsigned i = 0; i < nm; i++)
			kept[mine[i]]++;
		g->v[g->n++] = a;
	}
	for (size_t i = 0; i < n_surplus; i++)
		du_require_ok(rmp_free(p, surplus[i]), "rmp_free (a block not kept)");
	g->hosts = nh;
	rmp_pool_info_free(in);
}

static void write_block(rmp_pool *p, rmp_addr a, uint8_t *buf)
{
	uint64_t len = 1ull << RMP_ADDR_ORDER(a);

	for (uint64_t at = 0; at < len; at += CHUNK) {
		size_t n = len - at < CHUNK ? (size_t)(len - at) : CHUNK;
		fill(buf, n, a, at);
		du_require_ok(rmp_write(p, a + at, buf, n), "rmp_write");
	}
}

static int cmd_put(const char *name, const char *file, uint64_t size, unsigned want_hosts, char **avoid,
		   int n_avoid_files)
{
	static rmp_addr live[MAX_BLOCKS];
	static struct gathered g;
	size_t n_live = 0;

	load_into(file, live, &n_live, 1);
	for (int i = 0; i < n_avoid_files; i++)
		load_into(avoid[i], live, &n_live, 0);
	rmp_pool *p = du_open_pool(name, &cl);
	uint8_t *buf = malloc(CHUNK);
	if (!buf)
		check_die("out of memory");
	double t0 = du_now_s();
	gather(p, size, want_hosts, live, n_live, &g);
	FILE *f = fopen(file, "a");
	if (!f)
		check_die("cannot append to %s", file);
	for (size_t i = 0; i < g.n; i++) {
		write_block(p, g.v[i], buf);
		fprintf(f, "%" PRIx64 "\n", (uint64_t)g.v[i]);
	}
	if (fclose(f) != 0)
		check_die("cannot write %s", file);
	printf("restart_data: put %zu block(s) of %" PRIu64 " bytes on %u hosts (%u allocated, the rest freed; "
	       "none overlaps the %zu live block(s) listed) in %.2f s\n",
	       g.n, size, g.hosts, g.tried, n_live, du_now_s() - t0);
	free(buf);
	du_close_pool(p, cl);
	return 0;
}

static int cmd_get(const char *name, const char *file)
{
	static rmp_addr v[MAX_BLOCKS];
	size_t n = load(file, v);
	rmp_pool *p = du_open_pool(name, &cl);
	uint8_t *w = malloc(CHUNK), *r = malloc(CHUNK);
	uint64_t bytes = 0;

	if (!w || !r)
		check_die("out of memory");
	double t0 = du_now_s();
	for (size_t i = 0; i < n; i++) {
		uint64_t len = 1ull << RMP_ADDR_ORDER(v[i]);
		for (uint64_t at = 0; at < len; at += CHUNK) {
			size_t k = len - at < CHUNK ? (size_t)(len - at) : CHUNK;
			fill(w, k, v[i], at);
			du_require_ok(rmp_read(p, r, v[i] + at, k), "rmp_read");
			if (memcmp(w, r, k))
				check_die("block %zu (handle %#" PRIx64 "): bytes at %" PRIu64 " read back wrong",
					  i, (uint64_t)v[i], at);
			bytes += k;
		}
	}
	printf("restart_data: read back %zu block(s), %" PRIu64 " bytes, every byte right, in %.2f s\n", n,
	       bytes, du_now_s() - t0);
	free(w);
	free(r);
	du_close_pool(p, cl);
	return 0;
}

static int cmd_drop(const char *name, const char *file)
{
	static rmp_addr v[MAX_BLOCKS];
	size_t n = load(file, v);
	rmp_pool *p = du_open_pool(name, &cl);

	for (size_t i = 0; i < n; i++)
		du_require_ok(rmp_free(p, v[i]), "rmp_free");
	printf("restart_data: freed %zu block(s)\n", n);
	du_close_pool(p, cl);
	return 0;
}

/* ---- ride ------------------------------------------------------------- */

#define RIDE_BLOCK (256u << 10) /* 3 transfers of it take ~50 ms on Soft-RoCE in the guests */
#define RIDE_STATUS_MS 50
#define RIDE_PROBE_MS 50
#define RIDE_PROGRESS_MS 500
#define RIDE_MAX_OUTAGES 64
#define RIDE_MAX_MS (1800u * 1000u)     /* the whole ride: the driver stops it long before */
#define RIDE_ALLOC_BOUND_MS (180u * 1000u) /* probing, from an outage's start */
#define RIDE_END_MS (60u * 1000u)       /* waiting for the coordinator to free the blocks */
#define RIDE_SAY_MAX 20                 /* failures printed; all are counted */

struct outage {
	uint64_t start_ms, end_ms; /* end_ms 0: still away */
	uint64_t reads, writes, errors, wrong, alloc_bad, status_max_ms;
	int64_t alloc_ms; /* from start_ms to the first allocation that worked; -1: none */
};

struct ride {
	rmp_pool *p;
	struct gathered g;
	uint64_t seed[MAX_BLOCKS]; /* what block i was last written with */
	int known[MAX_BLOCKS];	   /* 0 after a failed write: its bytes are unknown */
	uint8_t *want, *got;
	uint64_t reads, writes, errors, wrong, alloc_bad, next_seed;
	rmp_addr leftover[RIDE_MAX_OUTAGES]; /* probe blocks whose free failed */
	unsigned n_left, said;
	struct outage out[RIDE_MAX_OUTAGES];
	unsigned n_out;
	int away, probing;
};

static struct outage *ride_current(struct ride *r)
{
	return r->away ? &r->out[r->n_out - 1] : NULL;
}

static void ride_failed(struct ride *r, const char *what, size_t k, int rc)
{
	struct outage *o = ride_current(r);

	r->errors++;
	if (o)
		o->errors++;
	if (r->said++ < RIDE_SAY_MAX)
		fprintf(stderr, "restart_data: ride: %s of block %zu (%#" PRIx64 ")%s: %s (%s)\n", what, k,
			(uint64_t)r->g.v[k], o ? " in an outage" : "", rmp_strerror(rc), rmp_last_error(NULL));
}

/* Reads block k and counts the bytes that differ from its pattern. */
static void ride_check(struct ride *r, size_t k)
{
	int rc = rmp_read(r->p, r->got, r->g.v[k], RIDE_BLOCK);
	struct outage *o = ride_current(r);

	if (rc) {
		ride_failed(r, "read", k, rc);
		return;
	}
	r->reads++;
	if (o)
		o->reads++;
	if (!r->known[k])
		return;
	du_fill(r->want, RIDE_BLOCK, r->seed[k]);
	uint64_t bad = 0;
	for (size_t i = 0; i < RIDE_BLOCK; i++)
		bad += r->want[i] != r->got[i];
	if (!bad)
		return;
	r->wrong += bad;
	if (o)
		o->wrong += bad;
	if (r->said++ < RIDE_SAY_MAX)
		fprintf(stderr, "restart_data: ride: block %zu (%#" PRIx64 "): %" PRIu64 " wrong byte(s)%s\n", k,
			(uint64_t)r->g.v[k], bad, o ? " in an outage" : "");
}

/* One step on block k: check what is there, write a fresh pattern, check it. */
static void ride_step(struct ride *r, size_t k)
{
	ride_check(r, k);
	uint64_t seed = ++r->next_seed;
	du_fill(r->want, RIDE_BLOCK, seed);
	int rc = rmp_write(r->p, r->g.v[k], r->want, RIDE_BLOCK);
	if (rc) {
		r->known[k] = 0;
		ride_failed(r, "write", k, rc);
		return;
	}
	r->seed[k] = seed;
	r->known[k] = 1;
	r->writes++;
	if (ride_current(r))
		r->out[r->n_out - 1].writes++;
	ride_check(r, k);
}

/* rmp_status: opens an outage at the first call that fails, closes it at
 * the first that works. */
static void ride_status(struct ride *r)
{
	struct rmp_status *s = NULL;
	uint64_t t0 = du_now_ms();
	int rc = rmp_status(cl, &s);
	uint64_t t1 = du_now_ms();

	if (rc == 0)
		rmp_status_free(s);
	if (rc && !r->away) {
		if (r->n_out == RIDE_MAX_OUTAGES)
			check_die("more than %d outages", RIDE_MAX_OUTAGES);
		r->out[r->n_out++] = (struct outage){ .start_ms = t1, .alloc_ms = -1 };
		r->away = 1;
		r->probing = 1;
		printf("restart_data: ride: outage %u begins: rmp_status: %s (%s), after %" PRIu64 " ms\n", r->n_out,
		       rmp_strerror(rc), rmp_last_error(NULL), t1 - t0);
	} else if (!rc && r->away) {
		struct outage *o = &r->out[r->n_out - 1];
		o->end_ms = t1;
		r->away = 0;
		printf("restart_data: ride: outage %u ends after %" PRIu64 " ms: %" PRIu64 " reads, %" PRIu64
		       " writes inside, %" PRIu64 " failed\n",
		       r->n_out, o->end_ms - o->start_ms, o->reads, o->writes, o->errors);
	}
	if (r->away && t1 - t0 > r->out[r->n_out - 1].status_max_ms)
		r->out[r->n_out - 1].status_max_ms = t1 - t0;
	fflush(stdout);
}

/* One allocation probe for the latest outage. */
static void ride_probe(struct ride *r)
{
	struct outage *o = &r->out[r->n_out - 1];
	rmp_addr a;
	uint64_t t0 = du_now_ms();
	int rc = rmp_alloc(r->p, 4096, &a);

	if (rc == 0) {
		o->alloc_ms = (int64_t)(du_now_ms() - o->start_ms);
		r->probing = 0;
		printf("restart_data: ride: outage %u: first allocation %" PRId64 " ms after its start\n", r->n_out,
		       o->alloc_ms);
		fflush(stdout);
		if ((rc = rmp_free(r->p, a)) != 0) {
			fprintf(stderr, "restart_data: ride: free of the probe block: %s (%s): again at the end\n",
				rmp_strerror(rc), rmp_last_error(NULL));
			if (r->n_left < RIDE_MAX_OUTAGES)
				r->leftover[r->n_left++] = a;
		}
		return;
	}
	if (rc != -RMP_EAWAY && rc != -EAGAIN) {
		o->alloc_bad++;
		r->alloc_bad++;
		if (r->said++ < RIDE_SAY_MAX)
			fprintf(stderr, "restart_data: ride: outage %u: rmp_alloc: %s (%s) after %" PRIu64 " ms, "
				"want %s or %s\n", r->n_out, rmp_strerror(rc), rmp_last_error(NULL),
				du_now_ms() - t0, rmp_strerror(-RMP_EAWAY), rmp_strerror(-EAGAIN));
	}
	if (du_now_ms() - o->start_ms > RIDE_ALLOC_BOUND_MS) {
		fprintf(stderr, "restart_data: ride: outage %u: no allocation within %u s of its start\n",
			r->n_out, RIDE_ALLOC_BOUND_MS / 1000);
		r->probing = 0;
	}
}

static void ride_progress(const struct ride *r, const char *report)
{
	char path[4096], tmp[4200];

	snprintf(path, sizeof(path), "%s.progress", report);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return; /* the next one may work; the final report is checked */
	fprintf(f, "reads %" PRIu64 " writes %" PRIu64 " errors %" PRIu64 " wrong_bytes %" PRIu64
		   " outages %u away %d probing %d\n",
		r->reads, r->writes, r->errors, r->wrong, r->n_out, r->away, r->probing);
	if (fclose(f) == 0)
		rename(tmp, path);
}

/* Frees a, retrying while the coordinator is away, up to deadline. */
static void ride_free(struct ride *r, rmp_addr a, uint64_t deadline)
{
	int rc;

	while ((rc = rmp_free(r->p, a)) == -RMP_EAWAY || rc == -EAGAIN) {
		if (du_now_ms() > deadline)
			break;
		usleep(RIDE_PROBE_MS * 1000);
	}
	if (rc)
		check_die("rmp_free of %#" PRIx64 " at the end of the ride: %s (%s)", (uint64_t)a, rmp_strerror(rc),
			  rmp_last_error(NULL));
}

static void ride_report(const struct ride *r, const char *report, double secs)
{
	FILE *f = fopen(report, "w");

	if (!f)
		check_die("cannot write %s", report);
	for (unsigned i = 0; i < r->n_out; i++) {
		const struct outage *o = &r->out[i];
		long long dur = o->end_ms ? (long long)(o->end_ms - o->start_ms) : -1;
		fprintf(f, "outage %u duration_ms %lld reads %" PRIu64 " writes %" PRIu64 " errors %" PRIu64
			   " wrong_bytes %" PRIu64 " alloc_ms %" PRId64 " alloc_bad %" PRIu64 " status_max_ms %" PRIu64 "\n",
			i + 1, dur, o->reads, o->writes, o->errors, o->wrong, o->alloc_ms, o->alloc_bad, o->status_max_ms);
	}
	fprintf(f, "total outages %u reads %" PRIu64 " writes %" PRIu64 " errors %" PRIu64 " wrong_bytes %" PRIu64
		   " alloc_bad %" PRIu64 " seconds %.1f\n",
		r->n_out, r->reads, r->writes, r->errors, r->wrong, r->alloc_bad, secs);
	if (fclose(f) != 0)
		check_die("cannot write %s", report);
}

/* Gathers the blocks (none overlapping the AVOID files'), writes them
 * and BLOCKFILE. */
static void ride_setup(struct ride *r, const char *blockfile, char **avoid, int n_avoid_files)
{
	static rmp_addr live[MAX_BLOCKS];
	size_t n_live = 0;
	struct rmp_pool_info *in;
	char tmp[4200];

	for (int i = 0; i < n_avoid_files; i++)
		load_into(avoid[i], live, &n_live, 0);
	du_require_ok(rmp_pool_info(r->p, &in), "rmp_pool_info");
	gather(r->p, RIDE_BLOCK, (unsigned)in->n_hosts, live, n_live, &r->g);
	rmp_pool_info_free(in);
	for (size_t k = 0; k < r->g.n; k++) {
		r->seed[k] = ++r->next_seed;
		du_fill(r->want, RIDE_BLOCK, r->seed[k]);
		du_require_ok(rmp_write(r->p, r->g.v[k], r->want, RIDE_BLOCK), "rmp_write");
		r->known[k] = 1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", blockfile);
	FILE *f = fopen(tmp, "w");
	if (!f)
		check_die("cannot write %s", tmp);
	for (size_t k = 0; k < r->g.n; k++)
		fprintf(f, "%" PRIx64 "\n", (uint64_t)r->g.v[k]);
	if (fclose(f) != 0 || rename(tmp, blockfile) != 0)
		check_die("cannot write %s", blockfile);
	printf("restart_data: ride: %zu block(s) of %u bytes on %u hosts (%u allocated, the rest freed), in %s\n",
	       r->g.n, RIDE_BLOCK, r->g.hosts, r->g.tried, blockfile);
	fflush(stdout);
}

static int ride_main(const char *name, const char *blockfile, const char *report, const char *stop, char **avoid,
		     int n_avoid_files)
{
	static struct ride r;

	r.p = du_open_pool(name, &cl);
	r.want = malloc(RIDE_BLOCK);
	r.got = malloc(RIDE_BLOCK);
	if (!r.want || !r.got)
		check_die("out of memory");
	ride_setup(&r, blockfile, avoid, n_avoid_files);

	uint64_t t0 = du_now_ms(), next_status = 0, next_probe = 0, next_progress = 0;
	for (size_t k = 0;; k = (k + 1) % r.g.n) {
		ride_step(&r, k);
		uint64_t now = du_now_ms();
		if (now - t0 > RIDE_MAX_MS)
			check_die("no stop file %s within %u s", stop, RIDE_MAX_MS / 1000);
		if (now >= next_status) {
			ride_status(&r);
			next_status = now + RIDE_STATUS_MS;
		}
		if (r.probing && now >= next_probe) {
			ride_probe(&r);
			next_probe = du_now_ms() + RIDE_PROBE_MS;
		}
		if (now >= next_progress) {
			ride_progress(&r, report);
			next_progress = now + RIDE_PROGRESS_MS;
			if (access(stop, F_OK) == 0)
				break;
		}
	}
	double secs = (double)(du_now_ms() - t0) / 1000.0;

	/* The end: the blocks checked once more, then freed, and the report. */
	uint64_t deadline = du_now_ms() + RIDE_END_MS;
	for (size_t k = 0; k < r.g.n; k++)
		ride_check(&r, k);
	for (size_t k = 0; k < r.g.n; k++)
		ride_free(&r, r.g.v[k], deadline);
	for (unsigned i = 0; i < r.n_left; i++)
		ride_free(&r, r.leftover[i], deadline);
	ride_progress(&r, report);
	ride_report(&r, report, secs);
	printf("restart_data: ride: %.1f s, %u outage(s), %" PRIu64 " reads, %" PRIu64 " writes, %" PRIu64
	       " failed, %" PRIu64 " wrong byte(s), %" PRIu64 " bad allocation code(s); blocks freed\n",
	       secs, r.n_out, r.reads, r.writes, r.errors, r.wrong, r.alloc_bad);
	free(r.want);
	free(r.got);
	du_close_pool(r.p, cl);
	if (r.errors || r.wrong)
		check_die("%" PRIu64 " failed read(s) or write(s), %" PRIu64 " wrong byte(s)", r.errors, r.wrong);
	return 0;
}

int main(int argc, char **argv)
{
	check_init("restart_data", NULL, 0); /* "restart_data: FAILED: why", exit 1 */
	if (argc >= 6 && strcmp(argv[1], "put") == 0)
		return cmd_put(argv[2], argv[3], strtoull(argv[4], NULL, 0), (unsigned)atoi(argv[5]), argv + 6,
			       argc - 6);
	if (argc == 4 && strcmp(argv[1], "get") == 0)
		return cmd_get(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "drop") == 0)
		return cmd_drop(argv[2], argv[3]);
	if (argc >= 6 && strcmp(argv[1], "ride") == 0)
		return ride_main(argv[2], argv[3], argv[4], argv[5], argv + 6, argc - 6);
	fprintf(stderr, "usage: restart_data put NAME FILE SIZE HOSTS [AVOID...] | get NAME FILE | drop NAME FILE\n"
			"       | ride NAME BLOCKFILE REPORT STOPFILE [AVOID...]\n");
	return 2;
}
