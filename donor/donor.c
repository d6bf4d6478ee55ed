/* donor.c - a donor process (DESIGN.md, Where the ideas come from, and
 * Process model): the memory it gives lives here, and it does nothing
 * else than keep it registered until told to go.
 *
 * Sequence (each step fails with the numbers an operator needs):
 *   1. RLIMIT_AS := --process-limit, soft and hard, before anything is
 *      allocated: the process can never hold more than the per-process
 *      maximum the coordinator planned with (nor raise it again).
 *   2. listen on the RDMA device's address, port 0: this opens the device
 *      and makes the PD and CQ, the donor's own footprint (what
 *      --measure-footprint prints).
 *   3. check footprint + --size against the limit, mmap the region
 *      (MAP_POPULATE: the pages exist before anyone is told about them)
 *      and register it for remote read, write and atomics.
 *   4. coordinator: handshake (role DONOR), DONOR_REGISTER {ids, pid,
 *      region, endpoint}, wait for DONOR_ACCEPTED (bounded). A failure
 *      here ends the donor (status 1): nobody has been told of it yet.
 *   5. serve: poll() on the rdma_cm channel, a signalfd, the coordinator
 *      socket and the timers of 5b. Connect requests are accepted only
 *      with a DONOR token for this donor id (rmp_auth_token_verify) whose
 *      generation is not older than the newest coordinator generation
 *      this donor has seen; TERMINATE, SIGTERM or SIGINT end it, SIGHUP
 *      reloads the log level (dn_reload). A donor started on its own
 *      under systemd (Type=notify) reports READY=1 once accepted.
 *   5b. the coordinator connection drops (a restart, a crash, a network
 *      cut; TCP keepalive notices a vanished host within a minute): the
 *      region, its MR and the listener stay, consumers go on reading and
 *      writing. The donor presents the same DONOR_REGISTER again (with
 *      the id it was given), paced by away.h (100 ms doubling to 2 s,
 *      jittered), each attempt on a thread of its own so that a
 *      coordinator that is slow to answer never holds up rdma_cm events.
 *      A coordinator of an older generation than one seen before is
 *      refused (closed; the next attempt follows). The loss is logged
 *      once, the return once, each distinct refusal once. If no
 *      coordinator accepts the donor for --orphan-grace, it is an orphan:
 *      on to 6, exit status 3 (DN_EXIT_ORPHANED).
 *   5c. CLIENT_CUT {pool, client} (a consumer's lease expired; DESIGN.md,
 *      "Cut-off of an expired consumer"): the client id goes on the cut
 *      list first (its connect requests are refused from then on, with
 *      any token), then every connection it has here is disconnected and
 *      its QP destroyed, then CLIENT_CUT_ACK goes back. A cut that comes
 *      again (the coordinator resends after a return) is answered again.
 *   6. deregister (consumers' operations now fail, they never read freed
 *      memory), disconnect consumers, unmap, exit 0 (3: orphaned).
 * While connected the sleep has no timeout on purpose (a donor lives as
 * long as its pool).
 */
#include "donor.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "away.h"
#include "clock.h"
#include "cutlist.h"
#include "link.h"
#include "log.h"
#include "notify.h"
#include "rdma.h"
#include "wire.h"

/* The stack of a return attempt's thread (5b): enough for getaddrinfo
 * and the handshake, small because it counts against RLIMIT_AS - which
 * is why --measure-footprint includes it, with its guard page. */
#define ATTEMPT_STACK (256u << 10)
#define ATTEMPT_VM (ATTEMPT_STACK + 4096u)

/* How one registration (step 4, or a return in 5b) ended. */
enum outcome_kind {
	OUT_ACCEPTED,	 /* DONOR_ACCEPTED: the connection is open */
	OUT_UNREACHABLE, /* no connection, handshake or answer */
	OUT_STALE,	 /* a coordinator of an older generation */
	OUT_REFUSED,	 /* ERROR, or an answer that is not one */
	OUT_TERMINATE,	 /* TERMINATE instead of an acceptance */
};

struct outcome {
	enum outcome_kind kind;
	int rc;		     /* 0 or a negative errno */
	uint64_t generation; /* the coordinator's, when it authenticated */
	struct rmp_wire_donor_accepted acc;
	char why[640];
};

/* A return attempt on its own thread. It owns ctl and out until it has
 * written to efd; the main thread reads them only after joining it. */
struct attempt {
	pthread_t thread;
	struct rmp_ctlconn ctl;
	const struct dn_cfg *cfg;
	struct rmp_wire_donor_register reg;
	uint64_t known_gen;
	int efd;
	struct outcome out;
};

struct donor {
	const struct dn_cfg *cfg;
	const rmp_auth_key *key;
	uint32_t donor_id; /* tokens must name it; the coordinator may assign it */
	char addr[64];
	rmp_rdma_listener *listener;
	void *region;
	size_t len;
	struct ibv_mr *mr;
	struct rmp_ctlconn ctl; /* closed while away; keeps its settings */
	bool have_ctl;
	int sfd;
	struct rmp_wire_donor_register reg; /* who we are, the same every time */
	uint64_t generation; /* the newest coordinator generation seen */
	struct dn_away away;
	struct attempt *att; /* a return under way, or NULL */
	int efd;	     /* the attempt's "done" */
	char refusal[640];   /* the last refusal logged (each is logged once) */
	struct rmp_cutlist cut; /* consumers cut off (5c): refused for good */
};

uint64_t dn_vmsize(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t kib = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %" SCNu64 " kB", &kib) == 1)
			break;
	fclose(f);
	return kib * 1024;
}

static const char *human(uint64_t bytes, char *buf, size_t len)
{
	rmp_config_format_bytes(bytes, buf, len);
	return buf;
}

/* rdma_cm accept callback: a consumer must show a token for this donor. */
static int accept_consumer(void *arg, const void *pdata, uint8_t len, uint64_t *tag)
{
	struct donor *d = arg;
	struct rmp_wire_token tok;

	if (!d->key) {
		rmp_log_warn("refused an RDMA connection: no secret to check its token with");
		return -EACCES;
	}
	int rc = rmp_auth_token_verify(d->key, pdata, len, RMP_TOKEN_DONOR, d->donor_id,
				       rmp_wall_ms(), &tok);
	if (rc) {
		rmp_log_warn("refused an RDMA connection to donor %u: token %s", d->donor_id,
			     rc == -EKEYEXPIRED ? "expired"
			     : rc == -EACCES	? "not valid for this donor (MAC, kind or target)"
						: "malformed or missing");
		return rc;
	}
	if (rmp_auth_generation_older(tok.generation, d->generation)) {
		rmp_log_warn("refused an RDMA connection to donor %u from consumer %" PRIu64
			     ": its token is of coordinator generation %u, older than generation "
			     "%" PRIu64 " (minted before a coordinator restart)",
			     d->donor_id, tok.client_id, (unsigned)tok.generation, d->generation);
		return -EACCES;
	}
	if (rmp_cutlist_has(&d->cut, tok.client_id)) {
		rmp_log_warn("refused an RDMA connection to donor %u from consumer %" PRIu64
			     ": it was cut off (its lease expired)",
			     d->donor_id, tok.client_id);
		return -EACCES;
	}
	*tag = tok.client_id;
	rmp_log_info("consumer %" PRIu64 " connected over RDMA", tok.client_id);
	return 0;
}

static void consumer_closed(void *arg, uint64_t tag)
{
	(void)arg;
	rmp_log_info("consumer %" PRIu64 " disconnected", tag);
}

/* Step 1. *limit gets the limit in force (RLIM_INFINITY: none). */
static int apply_rlimit(const struct dn_cfg *cfg, rlim_t *limit)
{
	struct rlimit rl;
	char a[32], b[32];

	if (getrlimit(RLIMIT_AS, &rl)) {
		rmp_log_syserr("getrlimit", errno, "cannot read RLIMIT_AS");
		return -errno;
	}
	if (!cfg->process_limit) {
		*limit = rl.rlim_cur;
		return 0;
	}
	if (rl.rlim_max != RLIM_INFINITY && cfg->process_limit > rl.rlim_max) {
		rmp_log_error("--process-limit %s (%" PRIu64 ") is above this process's hard "
			      "RLIMIT_AS %s (%" PRIu64 "), which cannot be raised",
			      human(cfg->process_limit, a, sizeof(a)), cfg->process_limit,
			      human(rl.rlim_max, b, sizeof(b)), (uint64_t)rl.rlim_max);
		return -EPERM;
	}
	rl.rlim_cur = rl.rlim_max = cfg->process_limit;
	if (setrlimit(RLIMIT_AS, &rl)) {
		int e = errno;
		rmp_log_syserr("setrlimit", e, "cannot set RLIMIT_AS to %" PRIu64,
			       cfg->process_limit);
		return -e;
	}
	*limit = cfg->process_limit;
	return 0;
}

static int find_addr(const struct dn_cfg *cfg, char *buf, size_t len)
{
	if (cfg->rdma_addr[0]) {
		snprintf(buf, len, "%s", cfg->rdma_addr);
		return 0;
	}
	int rc = rmp_rdma_local_addr(buf, len);
	if (rc)
		rmp_log_syserr("rmp_rdma_local_addr", rc,
			       "no RDMA device with an IPv4 address on this host (give --rdma-addr)");
	return rc;
}

static int open_listener(struct donor *d)
{
	struct rmp_rdma_opts o = {.timeout_ms = (int)d->cfg->timeout_ms};
	int rc = find_addr(d->cfg, d->addr, sizeof(d->addr));
	if (rc)
		return rc;
	rc = rmp_rdma_listen(d->addr, 0, &o, accept_consumer, consumer_closed, d, &d->listener);
	if (rc)
		rmp_log_syserr("rmp_rdma_listen", rc, "cannot listen on %s", d->addr);
	return rc;
}

int dn_measure_footprint(const struct dn_cfg *cfg)
{
	struct donor d = {.cfg = cfg};
	if (open_listener(&d))
		return 1;
	/* What a donor holds besides its region: the device open, and the
	 * stack of the thread that takes it back to a coordinator. */
	printf("%" PRIu64 "\n", dn_vmsize() + ATTEMPT_VM);
	fflush(stdout);
	rmp_rdma_listener_close(d.listener);
	return 0;
}

/* Step 3. */
static int map_region(struct donor *d, rlim_t limit)
{
	const struct dn_cfg *cfg = d->cfg;
	char a[32], b[32], c[32];
	uint64_t foot = dn_vmsize() + (cfg->no_coordinator ? 0 : ATTEMPT_VM);

	if (limit != RLIM_INFINITY && (cfg->size >= limit || foot + cfg->size > limit)) {
		rmp_log_error("--size %s (%" PRIu64 " bytes) does not fit under --process-limit %s "
			      "(%" PRIu64 " bytes, RLIMIT_AS): the donor's own footprint is "
			      "already %s (%" PRIu64 " bytes)",
			      human(cfg->size, a, sizeof(a)), cfg->size,
			      human((uint64_t)limit, b, sizeof(b)), (uint64_t)limit,
			      human(foot, c, sizeof(c)), foot);
		return -ENOMEM;
	}
	d->len = (size_t)cfg->size;
	d->region = mmap(NULL, d->len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (d->region == MAP_FAILED) {
		int e = errno;
		d->region = NULL;
		rmp_log_syserr("mmap", e, "cannot map the %" PRIu64 "-byte region (RLIMIT_AS %s)",
			       cfg->size,
			       limit == RLIM_INFINITY ? "unlimited" : human(limit, a, sizeof(a)));
		return -e;
	}
	int rc = rmp_rdma_reg_remote(rmp_rdma_listener_pd(d->listener), d->region, d->len,
				     &d->mr);
	if (rc) {
		rmp_log_syserr("rmp_rdma_reg_remote", rc,
			       "cannot register the %" PRIu64 "-byte region for remote access "
			       "(is `ulimit -l` unlimited?)",
			       cfg->size);
		munmap(d->region, d->len);
		d->region = NULL;
		return rc;
	}
	return 0;
}

/* Step 4, and every return of 5b: connect, check the coordinator's
 * generation, DONOR_REGISTER, wait for the answer. Logs nothing (runs on
 * the attempt thread too): *o says what happened and why. c is open when
 * o->kind is OUT_ACCEPTED, closed otherwise. */
static void register_once(struct rmp_ctlconn *c, const struct dn_cfg *cfg,
			  const struct rmp_wire_donor_register *reg, uint64_t known_gen,
			  struct outcome *o)
{
	char err[512];
	struct rmp_wire_msg m = {.type = RMP_MSG_DONOR_REGISTER};

	*o = (struct outcome){.kind = OUT_UNREACHABLE};
	o->rc = dn_link_try(c, cfg, o->why, sizeof(o->why));
	if (o->rc)
		return;
	o->generation = c->generation;
	if (c->generation < known_gen) {
		o->kind = OUT_STALE;
		o->rc = -ESTALE;
		snprintf(o->why, sizeof(o->why),
			 "coordinator %s is of generation %" PRIu64 ", older than generation %" PRIu64
			 " which this donor has seen (it has been replaced): refused",
			 c->peer, c->generation, known_gen);
		goto out_close;
	}
	m.u.donor_register = *reg;
	o->rc = rmp_ctlconn_send(c, &m, rmp_deadline_ms(cfg->timeout_ms));
	if (o->rc) {
		snprintf(o->why, sizeof(o->why), "rmp_ctlconn_send(): DONOR_REGISTER to %s: %s",
			 c->peer, strerror(-o->rc));
		goto out_close;
	}
	o->rc = rmp_ctlconn_recv(c, &m, rmp_deadline_ms(cfg->timeout_ms), err, sizeof(err));
	if (o->rc) {
		snprintf(o->why, sizeof(o->why), "waiting for DONOR_ACCEPTED: %s", err);
		goto out_close;
	}
	switch (m.type) {
	case RMP_MSG_DONOR_ACCEPTED:
		o->kind = OUT_ACCEPTED;
		o->acc = m.u.donor_accepted;
		return;
	case RMP_MSG_ERROR:
		o->kind = OUT_REFUSED;
		o->rc = m.u.error.code ? -(int)m.u.error.code : -EPROTO;
		snprintf(o->why, sizeof(o->why), "the coordinator refused this donor: %s (%s)",
			 m.u.error.text, strerror((int)m.u.error.code));
		break;
	case RMP_MSG_TERMINATE: /* for us: a pool destroyed while we were away */
		o->kind = OUT_TERMINATE;
		o->rc = 0;
		snprintf(o->why, sizeof(o->why), "the coordinator terminates this donor");
		break;
	default:
		o->kind = OUT_REFUSED;
		o->rc = -EPROTO;
		snprintf(o->why, sizeof(o->why), "%s: expected DONOR_ACCEPTED, got %s", c->peer,
			 rmp_wire_type_name(m.type));
		rmp_wire_msg_release(&m);
		break;
	}
out_close:
	rmp_ctlconn_close(c);
}

/* A coordinator accepted us (the first time, or back from 5b). */
static void accepted(struct donor *d, const struct outcome *o)
{
	d->donor_id = o->acc.donor_id;
	d->reg.donor_id = o->acc.donor_id; /* a standalone donor: the id it was given */
	if (o->generation > d->generation)
		d->generation = o->generation;
	d->have_ctl = true;
	d->refusal[0] = '\0';
}

/* Step 4. 0: accepted; 1: told to go instead; < 0: failed (logged). */
static int hand_over(struct donor *d)
{
	const struct dn_cfg *cfg = d->cfg;
	char ident[RMP_WIRE_IDENT_MAX + 1];
	struct outcome o;

	snprintf(ident, sizeof(ident), "donor-%ld@%.40s", (long)getpid(), d->addr);
	int rc = dn_link_init(&d->ctl, cfg, d->key, RMP_ROLE_DONOR, ident);
	if (rc)
		return rc;
	struct rmp_wire_donor_register *r = &d->reg;
	r->donor_id = (uint32_t)cfg->donor_id;
	r->pool_id = (uint32_t)cfg->pool_id;
	r->pid = (uint32_t)getpid();
	r->region.addr = (uint64_t)(uintptr_t)d->region;
	r->region.len = d->len;
	r->region.rkey = d->mr->rkey;
	snprintf(r->endpoint.host, sizeof(r->endpoint.host), "%s", d->addr);
	r->endpoint.port = rmp_rdma_listener_port(d->listener);

	register_once(&d->ctl, cfg, r, 0, &o);
	if (o.kind == OUT_TERMINATE) {
		rmp_log_info("%s", o.why);
		return 1;
	}
	if (o.kind != OUT_ACCEPTED) {
		rmp_log_error("%s", o.why);
		return o.rc ? o.rc : -EPROTO;
	}
	accepted(d, &o);
	rmp_log_info("donor %u of pool %u: %" PRIu64 " bytes at pool address %" PRIu64
		     ", rdma_cm %s:%u (coordinator generation %" PRIu64 ")",
		     d->donor_id, o.acc.pool_id, (uint64_t)d->len, o.acc.base, d->addr,
		     rmp_rdma_listener_port(d->listener), d->generation);
	/* A standalone donor's unit is ready now (a spawned one's agent
	 * hid the socket from it: it is not a unit's main process). */
	rmp_notify_ready("donor %u of pool %u: %" PRIu64 " bytes, rdma_cm %s:%u, coordinator %s",
			 d->donor_id, o.acc.pool_id, (uint64_t)d->len, d->addr,
			 rmp_rdma_listener_port(d->listener), d->ctl.peer);
	return 0;
}

/* ---- 5b: away from the coordinator ---- */

static void went_away(struct donor *d, const char *why)
{
	char grace[32];

	rmp_ctlconn_close(&d->ctl);
	d->have_ctl = false;
	dn_away_lost(&d->away, rmp_mono_ms());
	rmp_config_format_duration(d->away.grace_ms, grace, sizeof(grace));
	rmp_notify_status("away: lost the coordinator %s (%s); serving on, registering again",
			  d->ctl.peer, why);
	rmp_log_warn("lost the coordinator %s (%s): donor %u keeps serving its region and "
		     "registers again when a coordinator is back (an orphan after %s)",
		     d->ctl.peer, why, d->donor_id, grace);
}

static void *attempt_main(void *arg)
{
	struct attempt *a = arg;
	uint64_t one = 1;

	register_once(&a->ctl, a->cfg, &a->reg, a->known_gen, &a->out);
	ssize_t ignored = write(a->efd, &one, sizeof(one));
	(void)ignored; /* an eventfd counter does not overflow at 1 */
	return NULL;
}

/* Starts a return attempt; false (logged) when no thread can be made:
 * the caller counts it as a failed attempt. */
static bool attempt_start(struct donor *d)
{
	struct attempt *a = calloc(1, sizeof(*a));
	if (!a) {
		rmp_log_warn("no memory for a reconnection attempt; trying later");
		return false;
	}
	*a = (struct attempt){.ctl = d->ctl, /* closed: its settings only */
			      .cfg = d->cfg,
			      .reg = d->reg,
			      .known_gen = d->generation,
			      .efd = d->efd};
	pthread_attr_t attr;
	int rc = pthread_attr_init(&attr);
	if (!rc) {
		rc = pthread_attr_setstacksize(&attr, ATTEMPT_STACK);
		if (!rc)
			rc = pthread_create(&a->thread, &attr, attempt_main, a);
		pthread_attr_destroy(&attr);
	}
	if (rc) {
		rmp_log_syserr("pthread_create", rc, "reconnection attempt; trying later");
		free(a);
		return false;
	}
	d->att = a;
	return true;
}

/* At exit: an attempt still running is cancelled (its connect, poll or
 * read is a cancellation point) so that it cannot outlive the key. */
static void attempt_cancel(struct donor *d)
{
	if (!d->att)
		return;
	pthread_cancel(d->att->thread);
	pthread_join(d->att->thread, NULL);
	free(d->att); /* its socket and buffer go with the process */
	d->att = NULL;
}

static int on_control(struct donor *d);

/* The attempt's thread is done: join it and act on its outcome.
 * 1: time to go (TERMINATE); 0: serve on. */
static int attempt_finish(struct donor *d)
{
	uint64_t n;
	if (read(d->efd, &n, sizeof(n)) != (ssize_t)sizeof(n))
		return 0; /* not yet (spurious wakeup) */
	struct attempt *a = d->att;
	pthread_join(a->thread, NULL);
	d->att = NULL;
	const struct outcome *o = &a->out;
	uint64_t now = rmp_mono_ms();
	int leave = 0;

	switch (o->kind) {
	case OUT_ACCEPTED:
		rmp_log_info("back with coordinator %s (generation %" PRIu64 ") after %" PRIu64
			     " ms away and %u failed attempt(s): donor %u of pool %u registered "
			     "again",
			     a->ctl.peer, o->generation, dn_away_for_ms(&d->away, now),
			     d->away.attempts, o->acc.donor_id, o->acc.pool_id);
		d->ctl = a->ctl; /* the open connection is ours now */
		accepted(d, o);
		rmp_notify_status("donor %u of pool %u: back with coordinator %s", o->acc.donor_id,
				  o->acc.pool_id, d->ctl.peer);
		dn_away_back(&d->away);
		/* What came behind DONOR_ACCEPTED may be buffered already,
		 * where poll cannot see it. */
		leave = on_control(d);
		break;
	case OUT_TERMINATE:
		rmp_log_info("%s", o->why);
		leave = 1;
		break;
	case OUT_STALE:
	case OUT_REFUSED:
		if (strcmp(o->why, d->refusal) != 0) {
			rmp_log_warn("%s; trying again until the orphan grace ends", o->why);
			snprintf(d->refusal, sizeof(d->refusal), "%s", o->why);
		}
		dn_away_failed(&d->away, now);
		break;
	case OUT_UNREACHABLE:
		rmp_log_debug("attempt %u: %s", d->away.attempts + 1, o->why);
		dn_away_failed(&d->away, now);
		break;
	}
	free(a);
	return leave;
}

static int orphaned(struct donor *d, uint64_t now)
{
	char grace[32], len[32];

	rmp_config_format_duration(d->away.grace_ms, grace, sizeof(grace));
	rmp_log_warn("orphaned: no coordinator has accepted donor %u for %" PRIu64
		     " ms (--orphan-grace %s, %u attempts), so nobody will use its %s region "
		     "again: freeing it and exiting with status %d",
		     d->donor_id, dn_away_for_ms(&d->away, now), grace, d->away.attempts,
		     human(d->len, len, sizeof(len)), DN_EXIT_ORPHANED);
	return DN_EXIT_ORPHANED;
}

/* ---- step 5 ---- */

/* 5c: cut the consumer off, then say so. The list entry comes first, so
 * that no connect request of it is accepted between the teardown and
 * the entry. Out of memory for the list: no ACK (the coordinator then
 * treats this donor as lost, which is the safe answer). */
static void on_client_cut(struct donor *d, const struct rmp_wire_client_cut *cut)
{
	uint64_t t0 = rmp_mono_ms();

	if (rmp_cutlist_add(&d->cut, cut->client_id)) {
		rmp_log_error("cannot record the cut-off of consumer %" PRIu64 " (out of memory): "
			      "not acknowledged",
			      cut->client_id);
		return;
	}
	unsigned n = rmp_rdma_listener_drop_tag(d->listener, cut->client_id);
	rmp_log_info("consumer %" PRIu64 " cut off (its lease on pool %u expired): %u connection(s) "
		     "torn down in %" PRIu64 " ms, its tokens refused from now on",
		     cut->client_id, cut->pool_id, n, rmp_mono_ms() - t0);
	struct rmp_wire_msg m = { .type = RMP_MSG_CLIENT_CUT_ACK };
	m.u.client_cut_ack = (struct rmp_wire_client_cut_ack){ .pool_id = cut->pool_id,
							       .donor_id = d->donor_id,
							       .client_id = cut->client_id,
							       .dropped = n };
	int rc = rmp_ctlconn_send(&d->ctl, &m, rmp_deadline_ms(d->cfg->timeout_ms));
	if (rc) /* the coordinator resends once we are back */
		rmp_log_warn("CLIENT_CUT_ACK for consumer %" PRIu64 ": %s", cut->client_id,
			     strerror(-rc));
}

/* Handles what the coordinator sent. 1: time to go; 0: serve on (also
 * when the connection was lost: then we are away). */
static int on_control(struct donor *d)
{
	char err[512];
	struct rmp_wire_msg m;
	int rc = rmp_ctlconn_fill(&d->ctl);

	for (;;) {
		int got = rmp_ctlconn_pop(&d->ctl, &m, err, sizeof(err));
		if (got < 0) {
			went_away(d, err);
			return 0;
		}
		if (got == 0)
			break;
		switch (m.type) {
		case RMP_MSG_TERMINATE:
			if (m.u.terminate.donor_id && m.u.terminate.donor_id != d->donor_id) {
				rmp_log_warn("TERMINATE for donor %u, we are donor %u: ignored",
					     m.u.terminate.donor_id, d->donor_id);
				break;
			}
			rmp_log_info("the coordinator terminates this donor");
			return 1;
		case RMP_MSG_ERROR:
			rmp_log_warn("the coordinator reports: %s", m.u.error.text);
			break;
		case RMP_MSG_CLIENT_CUT:
			on_client_cut(d, &m.u.client_cut);
			break;
		default:
			rmp_log_debug("ignoring %s from the coordinator", rmp_wire_type_name(m.type));
			rmp_wire_msg_release(&m);
			break;
		}
	}
	if (rc)
		went_away(d, rc == -ECONNRESET ? "it closed the connection" : strerror(-rc));
	return 0;
}

/* Step 5 (and 5b). Returns the exit status. */
static int serve(struct donor *d)
{
	/* A frame that came with DONOR_ACCEPTED is buffered, not pollable. */
	if (d->have_ctl && on_control(d))
		return 0;
	for (;;) {
		uint64_t now = rmp_mono_ms();
		if (dn_away_orphaned(&d->away, now))
			return orphaned(d, now);
		if (!d->have_ctl && !d->att && dn_away_due(&d->away, now) && !attempt_start(d))
			dn_away_failed(&d->away, now);
		struct pollfd pfd[4] = {
			{.fd = d->sfd, .events = POLLIN},
			{.fd = rmp_rdma_listener_fd(d->listener), .events = POLLIN},
			{.fd = d->have_ctl ? d->ctl.fd : -1, .events = POLLIN},
			{.fd = d->att ? d->efd : -1, .events = POLLIN},
		};
		int n = poll(pfd, 4, dn_away_poll_ms(&d->away, now, d->att != NULL));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rmp_log_syserr("poll", errno, "donor loop");
			return 1;
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;
			if (read(d->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					dn_reload();
					continue;
				}
				rmp_notify_stopping("stopping (%s)", strsignal((int)si.ssi_signo));
				rmp_log_info("%s: leaving", strsignal((int)si.ssi_signo));
				return 0;
			}
		}
		if (pfd[1].revents) {
			int rc = rmp_rdma_listener_dispatch(d->listener);
			if (rc < 0)
				rmp_log_syserr("rmp_rdma_listener_dispatch", rc, "rdma_cm events");
		}
		if (pfd[2].revents && on_control(d))
			return 0;
		if (pfd[3].revents && attempt_finish(d))
			return 0;
	}
}

int dn_donor_run(const struct dn_cfg *cfg, const rmp_auth_key *key)
{
	struct donor d = {.cfg = cfg, .key = key, .donor_id = (uint32_t)cfg->donor_id,
			  .ctl = {.fd = -1}, .sfd = -1, .efd = -1};
	rlim_t limit = RLIM_INFINITY;
	int status = 1;
	sigset_t set;

	/* Signals become fd events; blocked before anything can arrive (and
	 * before the attempt threads, which inherit the mask). A log line to
	 * a pipe whose reader is gone (an agent's, say) must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	/* One malloc arena: a thread's own would reserve 64 MiB of address
	 * space, far past what RLIMIT_AS leaves a donor beside its region. */
	mallopt(M_ARENA_MAX, 1);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) || (d.sfd = signalfd(-1, &set, SFD_CLOEXEC)) < 0) {
		rmp_log_syserr("signalfd", errno, "cannot watch SIGTERM");
		return 1;
	}
	d.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d.efd < 0) {
		rmp_log_syserr("eventfd", errno, "for reconnection attempts");
		goto out_close_signalfd;
	}
	dn_away_init(&d.away, cfg->orphan_grace_ms, (uint64_t)getpid() << 32 ^ rmp_wall_ms());
	if (apply_rlimit(cfg, &limit))
		goto out_close_eventfd;
	if (open_listener(&d))
		goto out_close_eventfd;
	if (map_region(&d, limit))
		goto out_close_listener;

	if (cfg->no_coordinator) {
		/* Tests: everything a coordinator would be told, on one line. */
		printf("READY %s %u %" PRIu64 " %u %" PRIu64 " %ld\n", d.addr,
		       rmp_rdma_listener_port(d.listener), (uint64_t)(uintptr_t)d.region,
		       d.mr->rkey, (uint64_t)d.len, (long)getpid());
		fflush(stdout);
		status = serve(&d);
	} else {
		int rc = hand_over(&d);
		status = rc < 0 ? 1 : rc == 1 ? 0 : serve(&d);
	}

	attempt_cancel(&d);
	rmp_cutlist_fini(&d.cut);
	ibv_dereg_mr(d.mr);
	munmap(d.region, d.len);
	rmp_ctlconn_close(&d.ctl);
out_close_listener:
	rmp_rdma_listener_close(d.listener);
out_close_eventfd:
	close(d.efd);
out_close_signalfd:
	close(d.sfd);
	return status;
}
