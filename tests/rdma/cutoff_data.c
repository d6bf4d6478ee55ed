/*
 * cutoff_data.c - the consumers of tests/rdma/cutoff.sh: one that outlives
 * its lease (SIGSTOP past it, then SIGCONT), and one that writes into
 * its block meanwhile.
 *
 *   cutoff_data stale NAME READY GO REPORT
 *       attaches (RDMA bound 2 s), allocates one BLOCK-byte block, writes
 *       pattern A into it and reads it back, then writes
 *         client C lease L block 0xHANDLE
 *       to READY (renamed into place) and waits for the file GO (polled
 *       every 10 ms: the driver SIGSTOPs it meanwhile and creates GO just
 *       before the SIGCONT). Then, at once: write pattern C into its
 *       block, allocate, write C again, allocate again, read its block
 *       (each once; a write that went out must not land). REPORT gets
 *       one line per call, "op NAME rc RC ms MS", and
 *         total ops N elease E other O first_ms F lease_expired X
 *       then it closes the pool and attaches again on the same
 *       connection ("reopen rc RC"): the coordinator refuses the session
 *       it cut off (-EACCES). Exit 0 only when every call failed with
 *       -RMP_ELEASE, the pool says lease_expired, and the reattach was
 *       refused.
 *       RMPOOL_TEST_NO_LEASE_CHECK=1 in its environment turns the
 *       library's own check off: then its calls go out on the wire and
 *       only the far sides' cut-off stops them.
 *   cutoff_data write NAME HANDLE
 *       another consumer writes pattern B into that live block (any
 *       process may) and reads it back
 *   cutoff_data check NAME HANDLE
 *       the block holds pattern B byte for byte (else exit 1, saying how
 *       many bytes differ and whether they are pattern C's); then frees it
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
	if (!*s || *end || v == 0)
		check_die("not a handle: %s", s);
	return (rmp_addr)v;
}

static int write_b(const char *name, rmp_addr a)
{
	rmp_client *cl;
	rmp_pool *p = attach(name, &cl);

	du_fill(want, BLOCK, SEED_B);
	du_require_ok(rmp_write(p, a, want, BLOCK), "rmp_write B (another process's live block)");
	du_require_ok(rmp_read(p, buf, a, BLOCK), "rmp_read B");
	if (memcmp(buf, want, BLOCK))
		check_die("pattern B did not read back");
	printf("writer: pattern B in block %#" PRIx64 "\n", (uint64_t)a);
	du_close_pool(p, cl);
	return 0;
}

static int check_b(const char *name, rmp_addr a)
{
	static uint8_t c[BLOCK];
	rmp_client *cl;
	rmp_pool *p = attach(name, &cl);
	size_t wrong = 0, as_c = 0;

	du_require_ok(rmp_read(p, buf, a, BLOCK), "rmp_read");
	du_fill(want, BLOCK, SEED_B);
	du_fill(c, BLOCK, SEED_C);
	for (size_t i = 0; i < BLOCK; i++) {
		wrong += buf[i] != want[i];
		as_c += buf[i] != want[i] && buf[i] == c[i];
	}
	printf("check: block %#" PRIx64 ": %zu of %u bytes differ from pattern B (%zu of them "
	       "pattern C's)\n",
	       (uint64_t)a, wrong, BLOCK, as_c);
	du_require_ok(rmp_free(p, a), "rmp_free (another process's block)");
	du_close_pool(p, cl);
	return wrong ? 1 : 0;
}

int main(int argc, char **argv)
{
	check_init("cutoff_data", NULL, 0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 6 && !strcmp(argv[1], "stale"))
		return stale(argv[2], argv[3], argv[4], argv[5]);
	if (argc == 4 && !strcmp(argv[1], "write"))
		return write_b(argv[2], handle_of(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "check"))
		return check_b(argv[2], handle_of(argv[3]));
	fprintf(stderr, "usage: cutoff_data stale NAME READY GO REPORT | write NAME HANDLE | "
			"check NAME HANDLE\n");
	return 2;
}
