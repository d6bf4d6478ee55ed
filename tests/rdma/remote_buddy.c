/*
 * remote_buddy.c - the buddy engine over real RDMA: several consumer
 * processes on several hosts allocate from one metadata region with RDMA
 * READ, CAS and FAA, while the process that serves the region sleeps (or
 * is stopped). Overlap is proved by an owner array served beside the
 * metadata: every minimum block of an allocation is claimed with an RDMA
 * CAS (0 -> client id) and released with another before the free, so two
 * live allocations sharing a byte, on any host, make a claim fail.
 *
 *   remote_buddy serve  --info FILE [--order M] [--min m] [--timeout S]
 *       format the region, register it, listen, write FILE (endpoint,
 *       keys), then serve until SIGTERM; then walk the metadata (reading
 *       only) and exit 0 if the invariants hold and everything is free.
 *   remote_buddy client --info FILE --id N [--threads T] [--steps S] [--go FILE]
 *       T threads, one connection each, S steps each: replace a random
 *       member of a live set (release + free, alloc + claim). Then free
 *       everything; the last client (--final) allocates the whole
 *       capacity in one piece and frees it. With --go, each thread
 *       connects, creates FILE.ready.<id>, and starts when FILE exists.
 *
 * The secret comes from RMPOOL_SECRET; tokens as for the coordinator.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "buddy.h"
#include "check.h"
#include "rdma.h"
#include "store_local.h"
#include "store_rdma.h"

#define POOL_ID 7u

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static rmp_auth_key *key;

static int accept_token(void *arg, const void *pdata, uint8_t len, uint64_t *tag)
{
	struct rmp_wire_token t;
	(void)arg;
	int rc = rmp_auth_token_verify(key, pdata, len, RMP_TOKEN_METADATA, POOL_ID, now_ms(), &t);
	if (rc) {
		fprintf(stderr, "remote_buddy: rejected a connection: %s\n", strerror(-rc));
		return rc;
	}
	*tag = t.client_id;
	return 0;
}

struct info {
	char host[64];
	unsigned port;
	uint64_t meta_addr, owner_addr, nwords, nowner;
	uint32_t meta_rkey, owner_rkey;
	unsigned max_order, min_order;
};

static int serve(const char *info_path, unsigned max_order, unsigned min_order, int timeout_s)
{
	struct rmp_buddy_geom g;
	struct rmp_rdma_opts o = { .timeout_ms = 10000 };
	rmp_rdma_listener *l;
	struct ibv_mr *meta_mr, *owner_mr;
	char host[64];
	int rc;

	if ((rc = rmp_buddy_geom_init(&g, max_order, min_order)) != 0) {
		fprintf(stderr, "remote_buddy: bad geometry\n");
		return 2;
	}
	uint64_t nowner = 1ull << (max_order - min_order);
	uint64_t *meta = mmap(NULL, g.total_words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *owner = mmap(NULL, nowner * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (meta == MAP_FAILED || owner == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	/* Plain stores before the key is handed out; never written after. */
	rmp_buddy_format(meta, &g, 0);
	if ((rc = rmp_rdma_local_addr(host, sizeof(host))) != 0) {
		fprintf(stderr, "rmp_rdma_local_addr(): %s\n", strerror(-rc));
		return 1;
	}
	if ((rc = rmp_rdma_listen(host, 0, &o, accept_token, NULL, NULL, &l)) != 0) {
		fprintf(stderr, "rmp_rdma_listen(%s): %s\n", host, strerror(-rc));
		return 1;
	}
	if ((rc = rmp_rdma_reg_remote(rmp_rdma_listener_pd(l), meta, g.total_words * 8, &meta_mr)) != 0 ||
	    (rc = rmp_rdma_reg_remote(rmp_rdma_listener_pd(l), owner, nowner * 8, &owner_mr)) != 0) {
		fprintf(stderr, "rmp_rdma_reg_remote(): %s\n", strerror(-rc));
		return 1;
	}
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s.tmp", info_path);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		perror(tmp);
		return 1;
	}
	fprintf(f, "%s %u %" PRIu64 " %u %" PRIu64 " %" PRIu64 " %u %" PRIu64 " %u %u\n", host,
		rmp_rdma_listener_port(l), (uint64_t)(uintptr_t)meta, meta_mr->rkey, g.total_words,
		(uint64_t)(uintptr_t)owner, owner_mr->rkey, nowner, max_order, min_order);
	fclose(f);
	rename(tmp, info_path);
	printf("remote_buddy: serving 2^%u bytes of 2^%u blocks (%" PRIu64 " metadata words) at %s:%u\n",
	       max_order, min_order, g.total_words, host, rmp_rdma_listener_port(l));
	fflush(stdout);

	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	uint64_t deadline = now_ms() + (uint64_t)timeout_s * 1000u;
	while (!stop && now_ms() < deadline) {
		struct pollfd p = { .fd = rmp_rdma_listener_fd(l), .events = POLLIN };
		if (poll(&p, 1, 200) > 0)
			rmp_rdma_listener_dispatch(l);
	}
	if (!stop) {
		check_fail("no SIGTERM within %d s", timeout_s);
		return 1;
	}
	/* Read-only walk of what the clients left: a local store view. */
	struct rmp_store_local view;
	struct rmp_buddy b;
	struct rmp_buddy_report r;
	rmp_store_local_init(&view, (_Atomic uint64_t *)meta, g.total_words);
	rmp_buddy_init(&b, &g, &view.base);
	rc = rmp_buddy_check(&b, &r);
	uint64_t owned = 0;
	for (uint64_t i = 0; i < nowner; i++)
		owned += owner[i] != 0;
	printf("remote_buddy: walker %s%s; free %" PRIu64 " of %" PRIu64 " bytes; %" PRIu64 " owner entries still set\n",
	       rc ? "FAILED: " : "clean", rc ? r.error : "", r.free_bytes, (uint64_t)1 << max_order, owned);
	rmp_rdma_listener_close(l);
	return rc == 0 && r.free_bytes == (1ull << max_order) && owned == 0 ? 0 : 1;
}

struct client_thread {
	const struct info *in;
	unsigned id; /* global client id, >= 1 */
	unsigned steps;
	const char *go_path; /* wait for this file after connecting */
	pthread_t tid;
	int failed;
	uint64_t tries, ok;
	struct rmp_buddy_stats stats;
	double secs;
};

/* The owner words of a block, CAS-ed on the connection the store uses:
 * the store's posted operations are reaped first (rmp_rdma_exec refuses
 * to run while they are in flight). */
static int owner_batch(rmp_rdma_conn *c, rmp_store_rdma *st, struct ibv_mr *mr, uint64_t *res,
		       const struct info *in, uint64_t off, unsigned order, uint64_t expect, uint64_t swap)
{
	uint64_t first = off >> in->min_order, n = 1ull << (order - in->min_order);
	struct rmp_rdma_op ops[64];
	if (n > 64)
		return -E2BIG;
	int frc = rmp_store_rdma_flush(st);
	if (frc)
		return frc;
	for (uint64_t i = 0; i < n; i++)
		ops[i] = (struct rmp_rdma_op){ .kind = RMP_RDMA_CAS, .local = &res[i], .lkey = mr->lkey, .len = 8,
					       .raddr = in->owner_addr + (first + i) * 8, .rkey = in->owner_rkey,
					       .compare = expect, .swap_add = swap };
	int rc = rmp_rdma_exec(c, ops, (unsigned)n);
	if (rc)
		return rc;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t old = rmp_rdma_atomic_result(c, &res[i]);
		if (old != expect) {
			check_fail("owner word of minimum block %" PRIu64
				" is %" PRIu64 ", expected %" PRIu64 " (overlap)", first + i, old, expect);
			return -EUCLEAN;
		}
	}
	return 0;
}

static void *client_main(void *arg)
{
	struct client_thread *t = arg;
	const struct info *in = t->in;
	struct rmp_rdma_opts o = { .timeout_ms = 10000, .wait = RMP_RDMA_WAIT_ADAPTIVE };
	struct rmp_wire_token tok = { .kind = RMP_TOKEN_METADATA, .target_id = POOL_ID, .client_id = t->id,
				      .expires_ms = now_ms() + 600000 };
	uint8_t pd[RMP_AUTH_TOKEN_LEN];
	rmp_rdma_conn *c;
	rmp_store_rdma *st;
	struct rmp_buddy_geom g;
	struct rmp_buddy b;
	struct rmp_buddy_ctx *ctx = calloc(1, sizeof(*ctx));
	uint64_t res[64];
	struct ibv_mr *mr;
	int rc;

	t->failed = 1;
	rmp_auth_token_make(key, &tok, pd);
	if ((rc = rmp_rdma_connect(in->host, (uint16_t)in->port, pd, sizeof(pd), &o, &c)) != 0) {
		fprintf(stderr, "rmp_rdma_connect(%s:%u): %s\n", in->host, in->port, strerror(-rc));
		return NULL;
	}
	mr = ibv_reg_mr(rmp_rdma_conn_pd(c), res, sizeof(res), IBV_ACCESS_LOCAL_WRITE);
	if (!mr || rmp_store_rdma_create(c, in->meta_addr, in->meta_rkey, in->nwords, &st) != 0) {
		fprintf(stderr, "remote_buddy: cannot register client buffers\n");
		return NULL;
	}
	rmp_buddy_geom_init(&g, in->max_order, in->min_order);
	rmp_buddy_init(&b, &g, rmp_store_rdma_base(st));
	rmp_buddy_ctx_init(ctx, &b, t->id);
	static _Thread_local _Atomic uint64_t words[2 * 1024]; /* the word cache: one round trip when unchanged */
	rmp_buddy_ctx_cache(ctx, words, 1024);

	/* Connected: say so, then wait for the go (the driver stops the
	 * server in between: connecting needs its CPU, working must not). */
	if (t->go_path) {
		char ready[600];
		snprintf(ready, sizeof(ready), "%s.ready.%u", t->go_path, t->id);
		FILE *rf = fopen(ready, "w");
		if (rf)
			fclose(rf);
		int waited = 0;
		while (access(t->go_path, F_OK) != 0 && waited++ < 1200)
			usleep(100000);
		if (waited > 1200) {
			check_fail("no go within 120 s");
			goto out;
		}
	}
	enum { LIVE = 6 };
	struct { uint64_t off; unsigned order; int used; } live[LIVE] = { { 0, 0, 0 } };
	uint64_t x = 0x9E3779B97F4A7C15ull * t->id;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned s = 0; s < t->steps; s++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		unsigned k = (unsigned)(x % LIVE);
		if (live[k].used) {
			if (owner_batch(c, st, mr, res, in, live[k].off, live[k].order, t->id, 0) != 0)
				goto out;
			if ((rc = rmp_buddy_free(&b, ctx, live[k].off, live[k].order)) != 0) {
				check_fail("free: %s", strerror(-rc));
				goto out;
			}
			live[k].used = 0;
		}
		/* orders min .. min+4: up to 16 minimum blocks, one CAS batch */
		unsigned order = in->min_order + (unsigned)((x >> 20) % 5);
		t->tries++;
		rc = rmp_buddy_alloc(&b, ctx, order, &live[k].off);
		if (rc == -ENOMEM || rc == -EAGAIN) /* EAGAIN: held in passing by another client */
			continue;
		if (rc) {
			check_fail("alloc: %s", strerror(-rc));
			goto out;
		}
		t->ok++;
		live[k].order = order;
		live[k].used = 1;
		if (owner_batch(c, st, mr, res, in, live[k].off, order, 0, t->id) != 0)
			goto out;
	}
	for (unsigned k = 0; k < LIVE; k++)
		if (live[k].used) {
			if (owner_batch(c, st, mr, res, in, live[k].off, live[k].order, t->id, 0) != 0 ||
			    rmp_buddy_free(&b, ctx, live[k].off, live[k].order) != 0)
				goto out;
		}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	t->secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	t->failed = rmp_store_rdma_flush(st) != 0;
	rmp_buddy_stats(ctx, &t->stats);
out:
	rmp_store_rdma_destroy(st);
	ibv_dereg_mr(mr);
	rmp_rdma_close(c);
	free(ctx);
	return NULL;
}

static int final_check(const struct info *in)
{
	struct rmp_rdma_opts o = { .timeout_ms = 10000 };
	struct rmp_wire_token tok = { .kind = RMP_TOKEN_METADATA, .target_id = POOL_ID, .client_id = 999,
				      .expires_ms = now_ms() + 60000 };
	uint8_t pd[RMP_AUTH_TOKEN_LEN];
	rmp_rdma_conn *c;
	rmp_store_rdma *st;
	struct rmp_buddy_geom g;
	struct rmp_buddy b;
	struct rmp_buddy_ctx ctx;
	struct rmp_buddy_report r;
	uint64_t off;
	int rc;

	rmp_auth_token_make(key, &tok, pd);
	if ((rc = rmp_rdma_connect(in->host, (uint16_t)in->port, pd, sizeof(pd), &o, &c)) != 0 ||
	    (rc = rmp_store_rdma_create(c, in->meta_addr, in->meta_rkey, in->nwords, &st)) != 0) {
		fprintf(stderr, "remote_buddy: final: %s\n", strerror(-rc));
		return 1;
	}
	rmp_buddy_geom_init(&g, in->max_order, in->min_order);
	rmp_buddy_init(&b, &g, rmp_store_rdma_base(st));
	rmp_buddy_ctx_init(&ctx, &b, 999);
	rc = rmp_buddy_check(&b, &r);
	printf("remote_buddy: walker over RDMA: %s%s, %" PRIu64 " bytes free\n", rc ? "FAILED: " : "clean",
	       rc ? r.error : "", r.free_bytes);
	int bad = rc != 0;
	rc = rmp_buddy_alloc(&b, &ctx, in->max_order, &off);
	printf("remote_buddy: whole capacity in one allocation: %s\n", rc ? strerror(-rc) : "yes");
	bad |= rc != 0 || rmp_buddy_free(&b, &ctx, off, in->max_order) != 0;
	rmp_store_rdma_destroy(st);
	rmp_rdma_close(c);
	return bad;
}

static int read_info(const char *path, struct info *in)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		return -1;
	}
	int n = fscanf(f, "%63s %u %" SCNu64 " %u %" SCNu64 " %" SCNu64 " %u %" SCNu64 " %u %u", in->host, &in->port,
		       &in->meta_addr, &in->meta_rkey, &in->nwords, &in->owner_addr, &in->owner_rkey, &in->nowner,
		       &in->max_order, &in->min_order);
	fclose(f);
	return n == 10 ? 0 : -1;
}

int main(int argc, char **argv)
{
	const char *info = NULL;
	unsigned max_order = 20, min_order = 12, threads = 2, steps = 500, id = 1;
	int timeout_s = 600, final = 0;
	const char *go = NULL;
	char err[128];
	static const struct option opts[] = {
		{ "info", required_argument, NULL, 'i' }, { "order", required_argument, NULL, 'M' },
		{ "min", required_argument, NULL, 'm' },  { "timeout", required_argument, NULL, 'T' },
		{ "threads", required_argument, NULL, 't' }, { "steps", required_argument, NULL, 's' },
		{ "id", required_argument, NULL, 'n' },   { "final", no_argument, NULL, 'f' },
		{ "go", required_argument, NULL, 'g' },
		{ NULL, 0, NULL, 0 },
	};
	check_init("remote_buddy", NULL, 0); /* "remote_buddy: FAILED: why" */
	if (argc < 2 || (strcmp(argv[1], "serve") && strcmp(argv[1], "client"))) {
		fprintf(stderr, "usage: remote_buddy serve|client --info FILE [options] (see the source's header)\n");
		return 2;
	}
	optind = 2;
	for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (c) {
		case 'i': info = optarg; break;
		case 'M': max_order = (unsigned)atoi(optarg); break;
		case 'm': min_order = (unsigned)atoi(optarg); break;
		case 'T': timeout_s = atoi(optarg); break;
		case 't': threads = (unsigned)atoi(optarg); break;
		case 's': steps = (unsigned)atoi(optarg); break;
		case 'n': id = (unsigned)atoi(optarg); break;
		case 'f': final = 1; break;
		case 'g': go = optarg; break;
		default: return 2;
		}
	}
	if (!info || threads < 1 || threads > 16) {
		fprintf(stderr, "remote_buddy: --info is required; --threads 1..16\n");
		return 2;
	}
	if (rmp_auth_key_create(NULL, &key, err, sizeof(err)) != 0) {
		fprintf(stderr, "remote_buddy: %s\n", err);
		return 2;
	}
	if (!strcmp(argv[1], "serve"))
		return serve(info, max_order, min_order, timeout_s);

	struct info in;
	if (read_info(info, &in) != 0) {
		fprintf(stderr, "remote_buddy: cannot read %s\n", info);
		return 1;
	}
	if (final)
		return final_check(&in);
	struct client_thread *t = calloc(threads, sizeof(*t));
	for (unsigned i = 0; i < threads; i++) {
		t[i] = (struct client_thread){ .in = &in, .id = id * 100 + i + 1, .steps = steps, .go_path = go };
		pthread_create(&t[i].tid, NULL, client_main, &t[i]);
	}
	int bad = 0;
	uint64_t tries = 0, ok = 0;
	struct rmp_buddy_stats sum = { 0 };
	double secs = 0;
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(t[i].tid, NULL);
		bad |= t[i].failed;
		tries += t[i].tries;
		ok += t[i].ok;
		rmp_buddy_stats_add(&sum, &t[i].stats);
		secs = t[i].secs > secs ? t[i].secs : secs;
	}
	printf("remote_buddy: client %u: %u threads x %u steps in %.1f s, %" PRIu64 " of %" PRIu64
	       " allocations succeeded\n", id, threads, steps, secs, ok, tries);
	if (sum.alloc.calls && sum.free.calls)
		printf("remote_buddy: round trips per alloc %.2f (CAS ok %.2f, failed %.2f), per free %.2f\n",
		       (double)sum.alloc.round_trips / (double)sum.alloc.calls,
		       (double)sum.alloc.cas_ok / (double)sum.alloc.calls,
		       (double)sum.alloc.cas_fail / (double)sum.alloc.calls,
		       (double)sum.free.round_trips / (double)sum.free.calls);
	if (!bad && tries && ok * 10 < tries * 9) {
		check_fail("fewer than 90%% of allocations succeeded");
		bad = 1;
	}
	return bad;
}
