/* rdma_pair - common/rdma.c end to end between two hosts (driver:
 * rdma_pair.sh, which runs the server on guest 1 and the client on guest 2).
 *
 *   rdma_pair server [--addr IP] [--port P] [--lifetime SEC]
 *       Registers a region (REGION_LEN bytes: a pattern area and one
 *       atomic word per wait mode set to ATOMIC_INIT), listens and
 *       accepts only connect requests whose private data is a DONOR token
 *       for target TARGET_ID made with $RMPOOL_SECRET. Prints
 *       "READY <addr> <port> <raddr> <rkey> <len>" and, on SIGTERM,
 *       "DONE accepted=A rejected=R closed=C", then exits 0.
 *   rdma_pair client HOST PORT RADDR RKEY LEN
 *       For WAIT_POLL and WAIT_EVENT (and ADAPTIVE): connect with a valid
 *       token; WRITE a pattern, READ it back; READ the atomic word, FAA,
 *       CAS that succeeds, CAS that fails, checking every returned value
 *       against the READ (byte order); a batch larger than the send queue
 *       (waves); post/poll. Then: a wrong-target token, a bad MAC and no
 *       private data are each refused with -ECONNREFUSED within the
 *       timeout; a port nobody listens on is rejected with -ESRCH at
 *       once (within 1 s, no timeout).
 *   rdma_pair probe HOST PORT RADDR RKEY LEN TARGET
 *       Against any region served with DONOR tokens (a donor process):
 *       a token for another target is refused; with one for TARGET,
 *       WRITE+READ 4 KiB at both ends of the region and FAA on its first
 *       word. Leaves the region's first word changed.
 * Exit status 0 only when every check passed; each failure prints a line.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "auth.h"
#include "check.h"
#include "rdma.h"

#define REGION_LEN (1u << 20)
#define PATTERN_LEN (64u * 1024)
#define ATOMIC_OFF (512u * 1024) /* one word per wait mode, 64 bytes apart */
#define ATOMIC_INIT UINT64_C(0x0102030405060708) /* its bytes differ both ways */
#define TARGET_ID 7u
#define TIMEOUT_MS 4000
#define N_MODES 3

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static rmp_auth_key *load_key(void)
{
	rmp_auth_key *k;
	char err[160];
	if (rmp_auth_key_create(NULL, &k, err, sizeof(err))) {
		fprintf(stderr, "rmp_auth_key_create(): %s\n", err);
		exit(2);
	}
	return k;
}

/* ---- server ---- */

static volatile sig_atomic_t stop;
static unsigned n_accepted, n_rejected, n_closed;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int accept_token(void *arg, const void *pdata, uint8_t len, uint64_t *tag)
{
	struct rmp_wire_token tok;
	int rc = rmp_auth_token_verify(arg, pdata, len, RMP_TOKEN_DONOR, TARGET_ID, wall_ms(),
				       &tok);
	if (rc) {
		n_rejected++;
		printf("rejected a connect request (%u bytes of private data): %s\n", len,
		       strerror(-rc));
		fflush(stdout);
		return rc;
	}
	n_accepted++;
	*tag = tok.client_id;
	printf("accepted client %" PRIu64 "\n", tok.client_id);
	fflush(stdout);
	return 0;
}

static void on_closed(void *arg, uint64_t tag)
{
	(void)arg;
	n_closed++;
	printf("client %" PRIu64 " disconnected\n", tag);
	fflush(stdout);
}

static int run_server(int argc, char **argv)
{
	char addr[64] = "";
	unsigned port = 0, lifetime = 150;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--addr"))
			snprintf(addr, sizeof(addr), "%s", argv[i + 1]);
		else if (!strcmp(argv[i], "--port"))
			port = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--lifetime"))
			lifetime = (unsigned)strtoul(argv[i + 1], NULL, 10);
	}
	if (!addr[0]) {
		int rc = rmp_rdma_local_addr(addr, sizeof(addr));
		if (rc) {
			fprintf(stderr, "rmp_rdma_local_addr(): %s\n", strerror(-rc));
			return 1;
		}
	}
	rmp_auth_key *key = load_key();
	struct sigaction sa = {.sa_handler = on_term};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	rmp_rdma_listener *l;
	struct rmp_rdma_opts o = {.timeout_ms = TIMEOUT_MS};
	int rc = rmp_rdma_listen(addr, (uint16_t)port, &o, accept_token, on_closed, key, &l);
	if (rc) {
		fprintf(stderr, "rmp_rdma_listen(%s:%u): %s\n", addr, port, strerror(-rc));
		return 1;
	}
	uint8_t *region = mmap(NULL, REGION_LEN, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (unsigned m = 0; m < N_MODES; m++) {
		uint64_t v = ATOMIC_INIT;
		memcpy(region + ATOMIC_OFF + 64 * m, &v, 8);
	}
	struct ibv_mr *mr;
	rc = rmp_rdma_reg_remote(rmp_rdma_listener_pd(l), region, REGION_LEN, &mr);
	if (rc) {
		fprintf(stderr, "rmp_rdma_reg_remote(): %s\n", strerror(-rc));
		return 1;
	}
	printf("READY %s %u %" PRIu64 " %u %u\n", addr, rmp_rdma_listener_port(l),
	       (uint64_t)(uintptr_t)region, mr->rkey, REGION_LEN);
	fflush(stdout);

	uint64_t end = mono_ms() + lifetime * 1000ull;
	while (!stop && mono_ms() < end) {
		struct pollfd pfd = {.fd = rmp_rdma_listener_fd(l), .events = POLLIN};
		if (poll(&pfd, 1, 200) > 0) {
			rc = rmp_rdma_listener_dispatch(l);
			if (rc < 0)
				fprintf(stderr, "rmp_rdma_listener_dispatch(): %s\n", strerror(-rc));
		}
	}
	printf("DONE accepted=%u rejected=%u closed=%u live=%u\n", n_accepted, n_rejected,
	       n_closed, rmp_rdma_listener_connections(l));
	fflush(stdout);
	ibv_dereg_mr(mr);
	rmp_rdma_listener_close(l);
	munmap(region, REGION_LEN);
	rmp_auth_key_destroy(key);
	return stop ? 0 : 3; /* lifetime ran out: the driver never stopped us */
}

/* ---- client ---- */

struct target {
	const char *host;
	uint16_t port;
	uint64_t raddr;
	uint32_t rkey;
	uint32_t len;
};

static void make_token(rmp_auth_key *k, uint32_t target, uint8_t out[RMP_AUTH_TOKEN_LEN])
{
	struct rmp_wire_token t = {.kind = RMP_TOKEN_DONOR,
				   .target_id = target,
				   .client_id = 42,
				   .expires_ms = wall_ms() + 120000};
	if (rmp_auth_token_make(k, &t, out)) {
		fprintf(stderr, "rmp_auth_token_make() failed\n");
		exit(2);
	}
}

static const char *mode_name(enum rmp_rdma_wait w)
{
	return w == RMP_RDMA_WAIT_POLL ? "poll" : w == RMP_RDMA_WAIT_EVENT ? "event" : "adaptive";
}

static void exercise(rmp_auth_key *k, const struct target *t, enum rmp_rdma_wait mode)
{
	uint8_t tok[RMP_AUTH_TOKEN_LEN];
	make_token(k, TARGET_ID, tok);
	struct rmp_rdma_opts o = {.timeout_ms = TIMEOUT_MS, .wait = mode, .max_inflight = 4};
	rmp_rdma_conn *c;
	int rc = rmp_rdma_connect(t->host, t->port, tok, sizeof(tok), &o, &c);
	CHECK(rc == 0, "[%s] connect: %s", mode_name(mode), strerror(-rc));
	if (rc)
		return;
	CHECK(rmp_rdma_conn_device(c)->atomic_cap != IBV_ATOMIC_NONE, "[%s] device has no atomics",
	      mode_name(mode));

	size_t buf_len = 2 * PATTERN_LEN + 4096;
	uint8_t *buf = aligned_alloc(4096, buf_len);
	memset(buf, 0, buf_len);
	struct ibv_mr *mr = ibv_reg_mr(rmp_rdma_conn_pd(c), buf, buf_len, IBV_ACCESS_LOCAL_WRITE);
	CHECK(mr != NULL, "[%s] ibv_reg_mr: %s", mode_name(mode), strerror(errno));
	if (!mr)
		goto out_close;
	uint8_t *wbuf = buf, *rbuf = buf + PATTERN_LEN;
	uint64_t *words = (uint64_t *)(buf + 2 * PATTERN_LEN);
	uint64_t pat_raddr = t->raddr + (uint64_t)mode * PATTERN_LEN;
	uint64_t word_raddr = t->raddr + ATOMIC_OFF + 64u * (unsigned)mode;

	/* WRITE then READ back a pattern particular to this mode. */
	for (unsigned i = 0; i < PATTERN_LEN; i++)
		wbuf[i] = (uint8_t)(i * 31u + 7u + (unsigned)mode);
	struct rmp_rdma_op w = {.kind = RMP_RDMA_WRITE, .local = wbuf, .lkey = mr->lkey,
				.len = PATTERN_LEN, .raddr = pat_raddr, .rkey = t->rkey};
	rc = rmp_rdma_exec(c, &w, 1);
	CHECK(rc == 0, "[%s] write: %s", mode_name(mode), strerror(-rc));
	struct rmp_rdma_op r = {.kind = RMP_RDMA_READ, .local = rbuf, .lkey = mr->lkey,
				.len = PATTERN_LEN, .raddr = pat_raddr, .rkey = t->rkey};
	rc = rmp_rdma_exec(c, &r, 1);
	CHECK(rc == 0, "[%s] read: %s", mode_name(mode), strerror(-rc));
	CHECK(memcmp(wbuf, rbuf, PATTERN_LEN) == 0, "[%s] read-back differs from what was written",
	      mode_name(mode));

	/* Atomics: the READ shows the word's bytes as stored; every atomic
	 * result must decode to the same host value (byte order). */
	struct rmp_rdma_op rd = {.kind = RMP_RDMA_READ, .local = &words[0], .lkey = mr->lkey,
				 .len = 8, .raddr = word_raddr, .rkey = t->rkey};
	rc = rmp_rdma_exec(c, &rd, 1);
	CHECK(rc == 0 && words[0] == ATOMIC_INIT, "[%s] atomic word reads %#" PRIx64 " (rc %d)",
	      mode_name(mode), words[0], rc);
	struct rmp_rdma_op faa = {.kind = RMP_RDMA_FAA, .local = &words[1], .lkey = mr->lkey,
				  .len = 8, .raddr = word_raddr, .rkey = t->rkey, .swap_add = 1};
	rc = rmp_rdma_exec(c, &faa, 1);
	uint64_t old = rmp_rdma_atomic_result(c, &words[1]);
	CHECK(rc == 0 && old == ATOMIC_INIT, "[%s] FAA returned %#" PRIx64 ", want %#" PRIx64,
	      mode_name(mode), old, ATOMIC_INIT);
	struct rmp_rdma_op cas = {.kind = RMP_RDMA_CAS, .local = &words[2], .lkey = mr->lkey,
				  .len = 8, .raddr = word_raddr, .rkey = t->rkey,
				  .compare = ATOMIC_INIT + 1, .swap_add = UINT64_C(0xa1b2c3d4e5f60718)};
	rc = rmp_rdma_exec(c, &cas, 1);
	old = rmp_rdma_atomic_result(c, &words[2]);
	CHECK(rc == 0 && old == ATOMIC_INIT + 1, "[%s] CAS (should succeed) returned %#" PRIx64,
	      mode_name(mode), old);
	cas.local = &words[3];
	cas.compare = ATOMIC_INIT; /* stale: must fail and show the current value */
	cas.swap_add = 99;
	rc = rmp_rdma_exec(c, &cas, 1);
	old = rmp_rdma_atomic_result(c, &words[3]);
	CHECK(rc == 0 && old == UINT64_C(0xa1b2c3d4e5f60718),
	      "[%s] CAS (should fail) returned %#" PRIx64, mode_name(mode), old);
	rd.local = &words[4];
	rc = rmp_rdma_exec(c, &rd, 1);
	CHECK(rc == 0 && words[4] == UINT64_C(0xa1b2c3d4e5f60718),
	      "[%s] word after the CASes reads %#" PRIx64, mode_name(mode), words[4]);
	rc = rmp_rdma_probe_atomic_order(c, word_raddr, t->rkey);
	CHECK(rc == 0, "[%s] probe_atomic_order: %s", mode_name(mode), strerror(-rc));
	printf("[%s] atomic results arrive in %s byte order\n", mode_name(mode),
	       rmp_rdma_atomic_result(c, &(uint64_t){htobe64(1)}) == 1 ? "big-endian" : "host");

	/* A batch of 10 reads with a send queue of 4: three waves. */
	struct rmp_rdma_op batch[10];
	memset(rbuf, 0, PATTERN_LEN);
	for (unsigned i = 0; i < 10; i++)
		batch[i] = (struct rmp_rdma_op){.kind = RMP_RDMA_READ, .local = rbuf + i * 1000,
						 .lkey = mr->lkey, .len = 1000,
						 .raddr = pat_raddr + i * 1000, .rkey = t->rkey};
	rc = rmp_rdma_exec(c, batch, 10);
	CHECK(rc == 0 && memcmp(wbuf, rbuf, 10000) == 0, "[%s] batch of 10: rc %d", mode_name(mode),
	      rc);

	/* post + poll. */
	memset(rbuf, 0, PATTERN_LEN);
	rc = rmp_rdma_post(c, batch, 3, 100);
	CHECK(rc == 0, "[%s] post: %s", mode_name(mode), strerror(-rc));
	rc = rmp_rdma_exec(c, batch, 1);
	CHECK(rc == -EBUSY, "[%s] exec with posts outstanding gave %d, want -EBUSY",
	      mode_name(mode), rc);
	uint64_t ids[4] = {0};
	int got = rmp_rdma_poll(c, 3, ids, 4);
	CHECK(got == 3 && ids[0] + ids[1] + ids[2] == 303 && memcmp(wbuf, rbuf, 3000) == 0,
	      "[%s] poll: got %d", mode_name(mode), got);

	/* A misaligned atomic is refused before it can break the QP. */
	faa.raddr = word_raddr + 4;
	CHECK(rmp_rdma_exec(c, &faa, 1) == -EINVAL, "[%s] misaligned FAA accepted",
	      mode_name(mode));
	CHECK(!rmp_rdma_conn_failed(c), "[%s] connection marked failed", mode_name(mode));

	/* A bad rkey gives -EIO and leaves the connection failed. */
	r.rkey = t->rkey ^ 0x5a5a00u;
	rc = rmp_rdma_exec(c, &r, 1);
	CHECK(rc == -EIO && rmp_rdma_conn_failed(c), "[%s] bad rkey gave %d", mode_name(mode), rc);
	CHECK(rmp_rdma_exec(c, &w, 1) == -EIO, "[%s] failed connection still posts",
	      mode_name(mode));

	ibv_dereg_mr(mr);
out_close:
	free(buf);
	rmp_rdma_close(c);
	printf("[%s] done\n", mode_name(mode));
}

/* A connect that must fail: returns the code, checks it came in time. */
static int refused(const struct target *t, uint16_t port, const void *pd, uint8_t len,
		   const char *what)
{
	struct rmp_rdma_opts o = {.timeout_ms = TIMEOUT_MS, .wait = RMP_RDMA_WAIT_EVENT};
	rmp_rdma_conn *c = NULL;
	uint64_t t0 = mono_ms();
	int rc = rmp_rdma_connect(t->host, port, pd, len, &o, &c);
	uint64_t took = mono_ms() - t0;
	printf("%s: %s after %" PRIu64 " ms\n", what, rc ? strerror(-rc) : "connected", took);
	CHECK(rc != 0, "%s: connected", what);
	if (rc == 0)
		rmp_rdma_close(c);
	CHECK(took <= TIMEOUT_MS + 1000, "%s: took %" PRIu64 " ms, timeout %d", what, took,
	      TIMEOUT_MS);
	return rc;
}

static int run_client(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: rdma_pair client HOST PORT RADDR RKEY LEN\n");
		return 2;
	}
	struct target t = {.host = argv[2],
			   .port = (uint16_t)strtoul(argv[3], NULL, 10),
			   .raddr = strtoull(argv[4], NULL, 10),
			   .rkey = (uint32_t)strtoul(argv[5], NULL, 10),
			   .len = (uint32_t)strtoul(argv[6], NULL, 10)};
	if (t.len < REGION_LEN) {
		fprintf(stderr, "region of %u bytes is too small\n", t.len);
		return 2;
	}
	rmp_auth_key *k = load_key();

	exercise(k, &t, RMP_RDMA_WAIT_POLL);
	exercise(k, &t, RMP_RDMA_WAIT_EVENT);
	exercise(k, &t, RMP_RDMA_WAIT_ADAPTIVE);

	uint8_t tok[RMP_AUTH_TOKEN_LEN];
	make_token(k, TARGET_ID + 1, tok);
	int rc = refused(&t, t.port, tok, sizeof(tok), "token for another target");
	CHECK(rc == -ECONNREFUSED, "token for another target: %d, want -ECONNREFUSED", rc);
	make_token(k, TARGET_ID, tok);
	tok[RMP_AUTH_TOKEN_LEN - 1] ^= 1;
	rc = refused(&t, t.port, tok, sizeof(tok), "token with a bad MAC");
	CHECK(rc == -ECONNREFUSED, "token with a bad MAC: %d, want -ECONNREFUSED", rc);
	rc = refused(&t, t.port, NULL, 0, "no private data");
	CHECK(rc == -ECONNREFUSED, "no private data: %d, want -ECONNREFUSED", rc);
	make_token(k, TARGET_ID, tok);
	/* The far side's CM rejects it for want of a listener: -ESRCH, told
	 * apart from a listener's refusal, within a round trip (that is how
	 * a consumer tells a dead donor from one that refuses its token). */
	uint64_t t0 = mono_ms();
	rc = refused(&t, (uint16_t)(t.port + 1), tok, sizeof(tok), "port nobody listens on");
	CHECK(rc == -ESRCH, "port nobody listens on: %d, want -ESRCH", rc);
	CHECK(mono_ms() - t0 < 1000, "port nobody listens on: %" PRIu64 " ms, want a rejection at once",
	      mono_ms() - t0);

	rmp_auth_key_destroy(k);
	printf("%s: %d failure(s)\n", check_failures() ? "FAIL" : "PASS", check_failures());
	return check_failures() ? 1 : 0;
}

static int run_probe(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: rdma_pair probe HOST PORT RADDR RKEY LEN TARGET\n");
		return 2;
	}
	struct target t = {.host = argv[2],
			   .port = (uint16_t)strtoul(argv[3], NULL, 10),
			   .raddr = strtoull(argv[4], NULL, 10),
			   .rkey = (uint32_t)strtoul(argv[5], NULL, 10),
			   .len = (uint32_t)strtoul(argv[6], NULL, 10)};
	uint32_t target = (uint32_t)strtoul(argv[7], NULL, 10);
	rmp_auth_key *k = load_key();
	uint8_t tok[RMP_AUTH_TOKEN_LEN];

	make_token(k, target + 1, tok);
	int rc = refused(&t, t.port, tok, sizeof(tok), "token for another donor");
	CHECK(rc == -ECONNREFUSED, "token for another donor: %d, want -ECONNREFUSED", rc);

	make_token(k, target, tok);
	struct rmp_rdma_opts o = {.timeout_ms = TIMEOUT_MS, .wait = RMP_RDMA_WAIT_ADAPTIVE};
	rmp_rdma_conn *c;
	rc = rmp_rdma_connect(t.host, t.port, tok, sizeof(tok), &o, &c);
	CHECK(rc == 0, "connect with a token for donor %u: %s", target, strerror(-rc));
	if (rc)
		goto out;
	static uint8_t buf[3 * 4096] __attribute__((aligned(4096)));
	struct ibv_mr *mr = ibv_reg_mr(rmp_rdma_conn_pd(c), buf, sizeof(buf), IBV_ACCESS_LOCAL_WRITE);
	CHECK(mr != NULL, "ibv_reg_mr: %s", strerror(errno));
	if (!mr)
		goto out_close;
	uint64_t ends[2] = {t.raddr, t.raddr + t.len - 4096};
	uint64_t first = 0; /* the region's first word after e == 0 */
	for (int e = 0; e < 2; e++) {
		for (unsigned i = 0; i < 4096; i++)
			buf[i] = (uint8_t)(i ^ (unsigned)e ^ 0x5au);
		struct rmp_rdma_op ops[2] = {
			{.kind = RMP_RDMA_WRITE, .local = buf, .lkey = mr->lkey, .len = 4096,
			 .raddr = ends[e], .rkey = t.rkey},
			{.kind = RMP_RDMA_READ, .local = buf + 4096, .lkey = mr->lkey, .len = 4096,
			 .raddr = ends[e], .rkey = t.rkey},
		};
		rc = rmp_rdma_exec(c, ops, 2);
		CHECK(rc == 0 && memcmp(buf, buf + 4096, 4096) == 0,
		      "write+read at %s of the region: rc %d", e ? "the end" : "the start", rc);
		if (e == 0)
			memcpy(&first, buf, 8);
	}
	struct rmp_rdma_op faa = {.kind = RMP_RDMA_FAA, .local = buf + 8192, .lkey = mr->lkey,
				  .len = 8, .raddr = t.raddr, .rkey = t.rkey, .swap_add = 5};
	rc = rmp_rdma_exec(c, &faa, 1);
	CHECK(rc == 0 && rmp_rdma_atomic_result(c, buf + 8192) == first,
	      "FAA on the first word: rc %d, old %#" PRIx64 ", want %#" PRIx64, rc,
	      rmp_rdma_atomic_result(c, buf + 8192), first);
	ibv_dereg_mr(mr);
out_close:
	rmp_rdma_close(c);
out:
	rmp_auth_key_destroy(k);
	printf("%s: %d failure(s)\n", check_failures() ? "FAIL" : "PASS", check_failures());
	return check_failures() ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "server"))
		return run_server(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "client"))
		return run_client(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "probe"))
		return run_probe(argc, argv);
	fprintf(stderr, "usage: rdma_pair server [--addr IP] [--port P] [--lifetime SEC]\n"
			"       rdma_pair client HOST PORT RADDR RKEY LEN\n"
			"       rdma_pair probe HOST PORT RADDR RKEY LEN TARGET\n");
	return 2;
}
