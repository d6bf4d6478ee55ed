/* rdma_listen.c - the coordinator's rdma_cm listener, in the event loop.
 *
 * Consumers connect here to reach a pool's allocator metadata (token
 * kind METADATA, target = pool id) and, when the coordinator contributes
 * memory itself, that share (kind DONOR, target = the pool's self donor
 * id). A connect request is accepted only with a valid, unexpired token
 * for a pool that is ready, minted under this coordinator's generation
 * (or a later one): a token of an older generation was minted before a
 * restart, by a client that has not reconnected since, and is refused so
 * that it reconnects and learns the new segment table. Everything else is
 * rejected and logged. A client cut off on that pool (cutoff.c: its
 * lease expired) is refused whatever its token, and so is one that holds
 * no live lease on the pool (the coordinator's own engine, client 0,
 * aside: server/self.c); each accepted connection
 * is kept with its client and pool (struct mconn, the connection's tag
 * is its serial) so that a cut can tear down exactly that client's
 * connections to that pool (rmp_srv_rdma_cut).
 *
 * The listener is bound at start; when that fails (no RDMA device yet,
 * its address not configured yet) it is tried again on a timer with a
 * bounded backoff (250 ms doubling to 5 s, jittered) until it works. The
 * first failure is logged at warning, the attempts after it at debug,
 * the success at info; meanwhile the coordinator serves control, status
 * and metrics, refuses to create pools saying why, answers /healthz with
 * 503 and the reason, and has not told systemd it is ready (health.c,
 * unless require-rdma is false). Recorded pools wait: they are
 * re-adopted once the listener is up (rmp_srv_rdma_up). Without the rdma
 * module in the build there is nothing to retry.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "srv.h"

#ifdef RMPOOL_SERVER_HAVE_RDMA
#include <unistd.h>

#include "ctlconn.h"
#include "rdma.h"

/* Retry pacing of a listener that could not be bound: quick at first
 * (an address being configured right now), then every few seconds -
 * each attempt opens the devices, cheap but not free. */
#define RDMA_RETRY_MIN_MS 250
#define RDMA_RETRY_MAX_MS 5000
#define RDMA_RETRY_JITTER_PCT 20

/* One accepted connection: whose, to which pool. Its serial is the
 * listener's tag for it. */
struct mconn {
	struct mconn *next;
	uint64_t serial, client_id;
	uint32_t pool_id;
	uint8_t kind; /* enum rmp_wire_token_kind */
};

struct rmp_srv_rdma {
	rmp_rdma_listener *l;
	struct event *ev;
	char addr[RMP_WIRE_HOST_MAX + 1];
	uint16_t port;
	struct mconn *conns;
	uint64_t next_serial;
};

static int accept_cb(void *arg, const void *pdata, uint8_t len, uint64_t *tag)
{
	struct rmp_srv *srv = arg;
	struct rmp_wire_token t;

	if (!pdata || len < RMP_AUTH_TOKEN_LEN || rmp_wire_token_get(pdata, &t)) {
		rmp_log_warn("rdma: connect request without a valid token (%u bytes of private "
			     "data): rejected",
			     (unsigned)len);
		return -EACCES;
	}
	/* Find what the token names before checking its MAC against it. */
	bool known = false;
	uint32_t pool_id = 0;
	for (struct rmp_srv_pool *p = srv->pools; p && !known; p = p->next) {
		if (p->state != RMP_SRV_POOL_READY)
			continue;
		known = (t.kind == RMP_TOKEN_METADATA && p->id == t.target_id) ||
			(t.kind == RMP_TOKEN_DONOR && p->self_donor_id &&
			 p->self_donor_id == t.target_id);
		pool_id = p->id;
	}
	if (!known) {
		rmp_log_warn("rdma: connect request for %s %" PRIu32 " (client %" PRIu64
			     "): no such ready pool here; rejected",
			     t.kind == RMP_TOKEN_METADATA ? "pool" : "donor", t.target_id,
			     t.client_id);
		return -EACCES;
	}
	int rc = rmp_auth_token_verify(srv->key, pdata, len, (enum rmp_wire_token_kind)t.kind,
				       t.target_id, rmp_wall_ms(), &t);
	if (rc) {
		if (rc != -EKEYEXPIRED) /* a MAC that does not verify: another secret */
			srv->m.auth_failures_total++;
		rmp_log_warn("rdma: connect request from client %" PRIu64 ": token %s; rejected",
			     t.client_id,
			     rc == -EKEYEXPIRED ? "expired" : "does not verify (wrong secret?)");
		return rc;
	}
	if (rmp_auth_generation_older(t.generation, srv->generation)) {
		rmp_log_warn("rdma: connect request from client %" PRIu64 ": token of generation %u, "
			     "older than this coordinator's %" PRIu64 " (minted before a restart); "
			     "rejected",
			     t.client_id, (unsigned)t.generation, srv->generation);
		return -EACCES;
	}
	if (rmp_srv_cut_refused(srv, pool_id, t.client_id)) {
		rmp_log_warn("rdma: connect request from client %" PRIu64 " to pool %" PRIu32
			     ": it was cut off (its lease expired); rejected",
			     t.client_id, pool_id);
		return -EACCES;
	}
	/* Only a lease holder reaches a pool's memory here (and this
	 * coordinator's own engine, client 0: server/self.c). Leases are on
	 * record, so this holds across a restart, which forgets the cut
	 * lists: a client whose lease expired before it is refused too. */
	if (t.client_id != 0 && !rmp_srv_leases_held(&srv->leases, pool_id, t.client_id, rmp_mono_ms())) {
		rmp_log_warn("rdma: connect request from client %" PRIu64 " to pool %" PRIu32
			     ": it holds no lease on the pool; rejected",
			     t.client_id, pool_id);
		return -EACCES;
	}
	struct mconn *mc = calloc(1, sizeof(*mc));
	if (!mc) {
		rmp_log_warn("rdma: connect request from client %" PRIu64 ": out of memory; rejected",
			     t.client_id);
		return -ENOMEM;
	}
	*mc = (struct mconn){ .next = srv->rdma->conns, .serial = ++srv->rdma->next_serial,
			      .client_id = t.client_id, .pool_id = pool_id, .kind = t.kind };
	srv->rdma->conns = mc;
	*tag = mc->serial;
	rmp_log_info("rdma: client %" PRIu64 " connected to %s %" PRIu32, t.client_id,
		     t.kind == RMP_TOKEN_METADATA ? "the metadata of pool" : "coordinator donor",
		     t.target_id);
	return 0;
}

static void closed_cb(void *arg, uint64_t tag)
{
	struct rmp_srv *srv = arg;

	for (struct mconn **pp = &srv->rdma->conns; *pp; pp = &(*pp)->next) {
		struct mconn *mc = *pp;
		if (mc->serial != tag)
			continue;
		rmp_log_info("rdma: connection of client %" PRIu64 " to pool %" PRIu32 " ended",
			     mc->client_id, mc->pool_id);
		*pp = mc->next;
		free(mc);
		return;
	}
}

unsigned rmp_srv_rdma_cut(struct rmp_srv *srv, uint32_t pool_id, uint64_t client_id)
{
	struct rmp_srv_rdma *r = srv->rdma;
	unsigned n = 0;

	if (!r)
		return 0;
	/* Dropping calls closed_cb, which unlinks: take one match at a time. */
	for (bool again = true; again;) {
		again = false;
		for (struct mconn **pp = &r->conns; *pp; pp = &(*pp)->next) {
			struct mconn *mc = *pp;
			if (mc->pool_id != pool_id || mc->client_id != client_id)
				continue;
			unsigned k = rmp_rdma_listener_drop_tag(r->l, mc->serial);
			if (k == 0) { /* never became a connection (rdma_accept failed) */
				*pp = mc->next;
				free(mc);
			}
			n += k;
			again = true;
			break;
		}
	}
	return n;
}

static void readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rmp_srv *srv = arg;
	int rc = rmp_rdma_listener_dispatch(srv->rdma->l);

	if (rc < 0 && rc != -EAGAIN)
		rmp_log_syserr("rmp_rdma_listener_dispatch()", rc, "rdma_cm event");
}

/* One attempt: 0 with srv->rdma set, or a negative errno with the
 * reason in srv->rdma_why_not. */
static int rdma_try_listen(struct rmp_srv *srv)
{
	char addr[RMP_WIRE_HOST_MAX + 1];
	int rc;

	if (srv->cfg.rdma_addr[0]) {
		snprintf(addr, sizeof(addr), "%s", srv->cfg.rdma_addr);
	} else if ((rc = rmp_rdma_local_addr(addr, sizeof(addr))) < 0) {
		snprintf(srv->rdma_why_not, sizeof(srv->rdma_why_not),
			 "no RDMA device with an IPv4 address found: %s", strerror(-rc));
		return rc;
	}
	struct rmp_srv_rdma *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(srv->rdma_why_not, sizeof(srv->rdma_why_not), "out of memory");
		return -ENOMEM;
	}
	struct rmp_rdma_opts opts = { .timeout_ms = 5000 };
	rc = rmp_rdma_listen(addr, (uint16_t)srv->cfg.rdma_port, &opts, accept_cb, closed_cb, srv,
			     &r->l);
	if (rc) {
		snprintf(srv->rdma_why_not, sizeof(srv->rdma_why_not),
			 "rdma_cm listen on %s:%d failed: %s", addr, (int)srv->cfg.rdma_port,
			 strerror(-rc));
		free(r);
		return rc;
	}
	r->ev = event_new(srv->base, rmp_rdma_listener_fd(r->l), EV_READ | EV_PERSIST, readable_cb,
			  srv);
	if (!r->ev || event_add(r->ev, NULL)) {
		snprintf(srv->rdma_why_not, sizeof(srv->rdma_why_not),
			 "cannot watch the rdma_cm channel");
		if (r->ev)
			event_free(r->ev);
		rmp_rdma_listener_close(r->l);
		free(r);
		return -ENOMEM;
	}
	snprintf(r->addr, sizeof(r->addr), "%s", addr);
	r->port = rmp_rdma_listener_port(r->l);
	srv->rdma = r;
	srv->rdma_why_not[0] = '\0';
	return 0;
}

/* The retry timer: one more attempt, then the next one paced by the
 * backoff, until the listener is bound. */
static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rmp_srv *srv = arg;

	srv->rdma_attempts++;
	if (rdma_try_listen(srv) == 0) {
		rmp_log_info("rdma_cm listener on %s:%u, after %" PRIu32 " attempt(s)",
			     srv->rdma->addr, srv->rdma->port, srv->rdma_attempts);
		rmp_srv_rdma_up(srv);
		return;
	}
	uint32_t delay = rmp_ctlconn_backoff_next(&srv->rdma_backoff);
	rmp_log_debug("rdma: attempt %" PRIu32 ": %s; next in %" PRIu32 " ms", srv->rdma_attempts,
		      srv->rdma_why_not, delay);
	struct timeval tv = { .tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000 };
	if (evtimer_add(srv->rdma_retry, &tv))
		rmp_log_error("rdma: cannot arm the retry timer; no more attempts");
}

void rmp_srv_rdma_start(struct rmp_srv *srv)
{
	srv->rdma_attempts = 1;
	if (rdma_try_listen(srv) == 0) {
		rmp_log_info("rdma_cm listener on %s:%u", srv->rdma->addr, srv->rdma->port);
		return;
	}
	/* The address may come later than we do (an interface configured
	 * after rdma-hw.target, an rxe device added by hand): keep trying,
	 * from RDMA_RETRY_MIN_MS doubling to RDMA_RETRY_MAX_MS, jittered. */
	rmp_ctlconn_backoff_init(&srv->rdma_backoff, RDMA_RETRY_MIN_MS, RDMA_RETRY_MAX_MS,
				 RDMA_RETRY_JITTER_PCT, (uint64_t)getpid());
	srv->rdma_retry = evtimer_new(srv->base, retry_cb, srv);
	uint32_t delay = rmp_ctlconn_backoff_next(&srv->rdma_backoff);
	struct timeval tv = { .tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000 };
	if (!srv->rdma_retry || evtimer_add(srv->rdma_retry, &tv)) {
		rmp_log_error("rdma: %s; cannot arm the retry timer: serving control, status and "
			      "metrics only, pools cannot be created",
			      srv->rdma_why_not);
		return;
	}
	rmp_log_warn("rdma: %s; retrying every %u..%u ms until it works (/healthz answers 503 "
		     "meanwhile; pools cannot be created yet)",
		     srv->rdma_why_not, RDMA_RETRY_MIN_MS, RDMA_RETRY_MAX_MS);
}

void rmp_srv_rdma_stop(struct rmp_srv *srv)
{
	struct rmp_srv_rdma *r = srv->rdma;

	if (srv->rdma_retry) {
		event_free(srv->rdma_retry);
		srv->rdma_retry = NULL;
	}
	if (!r)
		return;
	event_free(r->ev);
	rmp_rdma_listener_close(r->l); /* closed_cb for each: the list empties */
	while (r->conns) { /* accepted by us, then refused by rdma_accept() */
		struct mconn *mc = r->conns;
		r->conns = mc->next;
		free(mc);
	}
	free(r);
	srv->rdma = NULL;
}

void rmp_srv_rdma_endpoint(const struct rmp_srv *srv, struct rmp_wire_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	if (srv->rdma) {
		snprintf(ep->host, sizeof(ep->host), "%s", srv->rdma->addr);
		ep->port = srv->rdma->port;
	}
}

int rmp_srv_rdma_reg(struct rmp_srv *srv, struct rmp_srv_region *r, char *err, size_t errlen)
{
	struct ibv_pd *pd = srv->rdma ? rmp_rdma_listener_pd(srv->rdma->l) : NULL;
	struct ibv_mr *mr;

	if (!pd) {
		snprintf(err, errlen, "the rdma listener has no protection domain");
		return -ENODEV;
	}
	int rc = rmp_rdma_reg_remote(pd, r->mem, r->len, &mr);
	if (rc) {
		snprintf(err, errlen, "rmp_rdma_reg_remote(%s, %" PRIu64 " bytes): %s", r->shm_name,
			 r->len, strerror(-rc));
		return rc;
	}
	r->mr = mr;
	r->rkey = mr->rkey;
	return 0;
}

void rmp_srv_rdma_dereg(struct rmp_srv_region *r)
{
	if (r->mr) {
		int rc = ibv_dereg_mr(r->mr);
		if (rc)
			rmp_log_syserr("ibv_dereg_mr()", rc, "%s", r->shm_name);
		r->mr = NULL;
	}
}

#else /* !RMPOOL_SERVER_HAVE_RDMA: built without common/rdma.c */

void rmp_srv_rdma_start(struct rmp_srv *srv)
{
	snprintf(srv->rdma_why_not, sizeof(srv->rdma_why_not),
		 "this rmpool-server was built without RDMA support");
	srv->rdma_attempts = 1;
	rmp_log_warn("rdma: %s; serving control, status and metrics only", srv->rdma_why_not);
}

void rmp_srv_rdma_stop(struct rmp_srv *srv)
{
}

void rmp_srv_rdma_endpoint(const struct rmp_srv *srv, struct rmp_wire_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
}

int rmp_srv_rdma_reg(struct rmp_srv *srv, struct rmp_srv_region *r, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", srv->rdma_why_not);
	return -ENODEV;
}

void rmp_srv_rdma_dereg(struct rmp_srv_region *r)
{
}

unsigned rmp_srv_rdma_cut(struct rmp_srv *srv, uint32_t pool_id, uint64_t client_id)
{
	return 0;
}

#endif /* RMPOOL_SERVER_HAVE_RDMA */

const char *rmp_srv_rdma_why_not(const struct rmp_srv *srv)
{
	return srv->rdma_why_not[0] ? srv->rdma_why_not : "no RDMA listener";
}
