/*
 * cutoff_data.c - the consumers of tests/rdma/cutoff.sh: one that outlives
 * its lease (SIGSTOP past it, then SIGCONT), and the one that is given
 * its reclaimed block meanwhile.
 *
 *   cutoff_data stale NAME READY GO REPORT
 *       attaches (RDMA bound 2 s), allocates one BLOCK-byte block, writes
 *       pattern A into it and reads it back, then writes
 *         client C lease L block 0xHANDLE
 *       to READY (renamed into place) and waits for the file GO (polled
 *       every 10 ms: the driver SIGSTOPs it meanwhile - its lease
 *       expires, it is cut off, its block reclaimed and given to the
 *       taker - and creates GO just before the SIGCONT). Then, at once,
 *       as a process that knew nothing of its stop: write pattern C into
 *       its block, allocate, write C again, allocate again, read its
 *       block, free its block (each once; a write or free that went out
 *       must not land: the block is the taker's now). REPORT gets one
 *       line per call, "op NAME rc RC ms MS", and
 *         total ops N elease E other O first_ms F lease_expired X
 *       then it closes the pool and attaches again on the same
 *       connection ("reopen rc RC"): the coordinator refuses the session
 *       it cut off (-EACCES). Exit 0 only when every call failed with
 *       -RMP_ELEASE, the pool says lease_expired, and the reattach was
 *       refused.
 *       RMPOOL_TEST_NO_LEASE_CHECK=1 in its environment turns the
 *       library's own check off: then its calls go out on the wire and
 *       only the far sides' cut-off stops them.
 *   cutoff_data take NAME READY GO HANDLE...
 *       a new consumer, after the reclaim: allocates BLOCK-byte blocks
 *       until it has been given every HANDLE (a stale consumer's
 *       reclaimed block: same offset, same order; at most the pool's
 *       capacity in blocks), frees the others, writes pattern B into
 *       the ones it wanted and reads them back, writes
 *         client C lease L allocs N others M
 *       and one "block 0xHANDLE from allocation K" line per HANDLE to
 *       READY, and keeps them (the library renews its lease in the
 *       background) until the file GO. Then it reads each back: pattern B
 *       byte for byte, else exit 1 (saying how many bytes differ and
 *       whether they are pattern C's, the stale consumers'), and frees
 *       them: each free must succeed (the block was still its own).
 * Coordinator from RMPOOL_COORDINATOR, secret from RMPOOL_SECRET.
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

#define BLOCK (64u << 10)
#define SEED_A 0xA11CEull
#define SEED_B 0xB0Bull
#define SEED_C 0xC0FFEEull

static uint8_t buf[BLOCK], want[BLOCK];

static rmp_pool *attach(const char *name, rmp_client **cl)
{
	struct rmp_connect_opts o = RMP_CONNECT_OPTS_INIT;
	rmp_pool *p;

	o.rdma_timeout_ms = 2000; /* what a post to a torn-down QP waits for */
	if (!getenv("RMPOOL_COORDINATOR"))
		check_die("RMPOOL_COORDINATOR is not set");
	du_require_ok(rmp_connect_ex(getenv("RMPOOL_COORDINATOR"), NULL, &o, cl), "rmp_connect_ex");
	du_require_ok(rmp_pool_open(*cl, name, 0, &p), "rmp_pool_open (attach)");
	return p;
}

struct op_log {
	FILE *f;
	unsigned n, elease, other;
	uint64_t first_ms;
};

static void record(struct op_log *lg, const char *what, int rc, uint64_t t0)
{
	uint64_t ms = du_now_ms() - t0;
	fprintf(lg->f, "op %s rc %d ms %" PRIu64 " (%s)\n", what, rc, ms,
		rc ? rmp_last_error(NULL) : "it worked");
	printf("stale: %s -> %d (%s) after %" PRIu64 " ms: %s\n", what, rc, rmp_strerror(rc), ms,
	       rc ? rmp_last_error(NULL) : "");
	if (lg->n++ == 0)
		lg->first_ms = ms;
	if (rc == -RMP_ELEASE)
		lg->elease++;
	else
		lg->other++;
}

static int stale(const char *name, const char *ready, const char *go, const char *report)
{
	rmp_client *cl;
	rmp_pool *p = attach(name, &cl);
	struct rmp_pool_info *in;
	rmp_addr a, b;
	char tmp[512];

	du_require_ok(rmp_alloc(p, BLOCK, &a), "rmp_alloc");
	du_fill(want, BLOCK, SEED_A);
	du_require_ok(rmp_write(p, a, want, BLOCK), "rmp_write A");
	du_require_ok(rmp_read(p, buf, a, BLOCK), "rmp_read A");
	if (memcmp(buf, want, BLOCK))
		check_die("pattern A did not read back");
	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	snprintf(tmp, sizeof(tmp), "%s.tmp", ready);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "client %" PRIu64 " lease %" PRIu64 " block %#" PRIx64 "\n",
			  rmp_client_id(cl), in->lease_id, (uint64_t)a) < 0 || fclose(f) || rename(tmp, ready))
		check_die("cannot write %s", ready);
	printf("stale: client %" PRIu64 " lease %" PRIu64 " block %#" PRIx64 " written with A\n",
	       rmp_client_id(cl), in->lease_id, (uint64_t)a);
	rmp_pool_info_free(in);
	fflush(stdout);

	/* Bounded: the driver creates GO within minutes or fails anyway. */
	for (int i = 0; access(go, F_OK) != 0; i++) {
		if (i > 60000)
			check_die("no %s within 10 minutes", go);
		usleep(10000);
	}
	/* Resumed: at once, as a process that knew nothing of its stop. */
	struct op_log lg = { .f = fopen(report, "w") };
	if (!lg.f)
		check_die("cannot write %s", report);
	uint64_t t0 = du_now_ms();
	du_fill(want, BLOCK, SEED_C);
	record(&lg, "write", rmp_write(p, a, want, BLOCK), t0);
	t0 = du_now_ms();
	record(&lg, "alloc", rmp_alloc(p, BLOCK, &b), t0);
	t0 = du_now_ms();
	record(&lg, "write-again", rmp_write(p, a, want, BLOCK), t0);
	t0 = du_now_ms();
	record(&lg, "alloc-again", rmp_alloc(p, BLOCK, &b), t0);
	t0 = du_now_ms();
	record(&lg, "read", rmp_read(p, buf, a, BLOCK), t0);
	/* The most harmful call: the block is the taker's now. */
	t0 = du_now_ms();
	record(&lg, "free", rmp_free(p, a), t0);
	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	int expired = in->lease_expired;
	rmp_pool_info_free(in);
	fprintf(lg.f, "total ops %u elease %u other %u first_ms %" PRIu64 " lease_expired %d\n", lg.n,
		lg.elease, lg.other, lg.first_ms, expired);
	(void)rmp_pool_close(p); /* the lease is gone: nothing to give back */
	/* The session stays cut: attaching again needs a new connection. */
	rmp_pool *p2 = NULL;
	int orc = rmp_pool_open(cl, name, 0, &p2);
	fprintf(lg.f, "reopen rc %d (%s)\n", orc, orc ? rmp_last_error(cl) : "attached");
	printf("stale: attaching again on the same connection -> %d: %s\n", orc,
	       orc ? rmp_last_error(cl) : "attached");
	if (p2)
		(void)rmp_pool_close(p2);
	fclose(lg.f);
	rmp_disconnect(cl);
	return lg.other == 0 && expired && orc == -EACCES ? 0 : 1;
}

static rmp_addr handle_of(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);
	if (!*s || *end || v == 0 || RMP_ADDR_ORDER(v) < 0 || (1ull << RMP_ADDR_ORDER(v)) != BLOCK)
		check_die("not the handle of a %u-byte block: %s", BLOCK, s);
	return (rmp_addr)v;
}

enum { TAKE_MAX = 4 };

struct taking {
	unsigned n;                /* blocks wanted */
	rmp_addr want[TAKE_MAX];   /* the stale consumers' handles */
	unsigned from[TAKE_MAX];   /* which allocation (1-based) gave it; 0: not yet */
	unsigned allocs, n_others; /* allocations made; of them not wanted */
};

/* Allocates BLOCK-byte blocks until each wanted handle has been given
 * (its offset and its order: the same block), then frees the others.
 * Bounded by the pool's capacity in blocks; ENOMEM first is a failure. */
static void take_blocks(rmp_pool *p, uint64_t capacity, struct taking *tk)
{
	size_t max = capacity / BLOCK + 1, got = 0;
	rmp_addr *others = calloc(max, sizeof(*others));

	if (!others)
		check_die("out of memory");
	while (got < tk->n) {
		rmp_addr a;
		if (tk->allocs == max)
			check_die("%u allocations and the wanted blocks are not all among them", tk->allocs);
		int rc = rmp_alloc(p, BLOCK, &a);
		if (rc == -ENOMEM)
			check_die("the pool ran out after %u allocations, %zu of %u wanted blocks given",
				  tk->allocs, got, tk->n);
		du_require_ok(rc, "rmp_alloc");
		tk->allocs++;
		unsigned k;
		for (k = 0; k < tk->n; k++)
			if (RMP_ADDR_OFFSET(a) == RMP_ADDR_OFFSET(tk->want[k]) &&
			    RMP_ADDR_ORDER(a) == RMP_ADDR_ORDER(tk->want[k]))
				break;
		if (k == tk->n) {
			others[tk->n_others++] = a;
			continue;
		}
		if (tk->from[k])
			check_die("block %#" PRIx64 " given twice (allocations %u and %u)", (uint64_t)a,
				  tk->from[k], tk->allocs);
		tk->from[k] = tk->allocs;
		got++;
		printf("taker: allocation %u gave %#" PRIx64 " (offset %#" PRIx64 ", %llu bytes): the "
		       "stale block %#" PRIx64 "\n",
		       tk->allocs, (uint64_t)a, RMP_ADDR_OFFSET(a), 1ull << RMP_ADDR_ORDER(a),
		       (uint64_t)tk->want[k]);
	}
	for (unsigned i = 0; i < tk->n_others; i++)
		du_require_ok(rmp_free(p, others[i]), "rmp_free (a block not wanted)");
	free(others);
}

static int take(const char *name, const char *ready, const char *go, int n, char **hs)
{
	static uint8_t c[BLOCK];
	struct taking tk = { .n = (unsigned)n };
	struct rmp_pool_info *in;
	rmp_client *cl;
	rmp_pool *p = attach(name, &cl);
	char tmp[512];

	for (int k = 0; k < n; k++)
		tk.want[k] = handle_of(hs[k]);
	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	take_blocks(p, in->capacity, &tk);
	du_fill(want, BLOCK, SEED_B);
	for (unsigned k = 0; k < tk.n; k++) {
		du_require_ok(rmp_write(p, tk.want[k], want, BLOCK), "rmp_write B");
		du_require_ok(rmp_read(p, buf, tk.want[k], BLOCK), "rmp_read B");
		if (memcmp(buf, want, BLOCK))
			check_die("pattern B did not read back from %#" PRIx64, (uint64_t)tk.want[k]);
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", ready);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "client %" PRIu64 " lease %" PRIu64 " allocs %u others %u\n", rmp_client_id(cl),
			  in->lease_id, tk.allocs, tk.n_others) < 0)
		check_die("cannot write %s", tmp);
	for (unsigned k = 0; k < tk.n; k++)
		fprintf(f, "block %#" PRIx64 " from allocation %u\n", (uint64_t)tk.want[k], tk.from[k]);
	if (fclose(f) || rename(tmp, ready))
		check_die("cannot write %s", ready);
	printf("taker: client %" PRIu64 " lease %" PRIu64 ": %u allocations for the %u stale block(s), "
	       "%u others freed; pattern B written, held until %s\n",
	       rmp_client_id(cl), in->lease_id, tk.allocs, tk.n, tk.n_others, go);
	rmp_pool_info_free(in);

	for (int i = 0; access(go, F_OK) != 0; i++) {
		if (i > 60000)
			check_die("no %s within 10 minutes", go);
		usleep(10000);
	}
	size_t wrong_all = 0;
	du_fill(c, BLOCK, SEED_C);
	for (unsigned k = 0; k < tk.n; k++) {
		size_t wrong = 0, as_c = 0;
		du_require_ok(rmp_read(p, buf, tk.want[k], BLOCK), "rmp_read (after the SIGCONT)");
		for (size_t i = 0; i < BLOCK; i++) {
			wrong += buf[i] != want[i];
			as_c += buf[i] != want[i] && buf[i] == c[i];
		}
		printf("taker: block %#" PRIx64 ": %zu of %u bytes differ from pattern B (%zu of them "
		       "pattern C's)\n",
		       (uint64_t)tk.want[k], wrong, BLOCK, as_c);
		wrong_all += wrong;
		du_require_ok(rmp_free(p, tk.want[k]), "rmp_free (its own block, still allocated)");
	}
	printf("taker: wrong bytes %zu; its %u block(s) freed\n", wrong_all, tk.n);
	du_close_pool(p, cl);
	return wrong_all ? 1 : 0;
}

int main(int argc, char **argv)
{
	check_init("cutoff_data", NULL, 0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 6 && !strcmp(argv[1], "stale"))
		return stale(argv[2], argv[3], argv[4], argv[5]);
	if (argc >= 6 && argc <= 5 + TAKE_MAX && !strcmp(argv[1], "take"))
		return take(argv[2], argv[3], argv[4], argc - 5, argv + 5);
	fprintf(stderr, "usage: cutoff_data stale NAME READY GO REPORT | take NAME READY GO HANDLE...\n");
	return 2;
}
