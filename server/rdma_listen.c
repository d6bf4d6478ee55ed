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
 * rejected and logged.
 *
 * Without an RDMA device (or without the rdma module in the build) the
 * coordinator still runs: it logs one warning, serves control, status
 * and metrics, and refuses to create pools, saying why.
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
#include "rdma.h"

struct rmp_srv_rdma {
	rmp_rdma_listener *l;
	struct event *ev;
	char addr[RMP_WIRE_HOST_MAX + 1];
	uint16_t port;
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
	for (struct rmp_srv_pool *p = srv->pools; p && !known; p = p->next) {
		if (p->state != RMP_SRV_POOL_READY)
			continue;
		known = (t.kind == RMP_TOKEN_METADATA && p->id == t.target_id) ||
			(t.kind == RMP_TOKEN_DONOR && p->self_donor_id &&
			 p->self_donor_id == t.target_id);
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
	*tag = t.client_id;
	rmp_log_info("rdma: client %" PRIu64 " connected to %s %" PRIu32, t.client_id,
		     t.kind == RMP_TOKEN_METADATA ? "the metadata of pool" : "coordinator donor",
		     t.target_id);
	return 0;
}

static void closed_cb(void *arg, uint64_t tag)
{
	rmp_log_info("rdma: connection of client %" PRIu64 " ended", tag);
}

static void readable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rmp_srv *srv = arg;
	int rc = rmp_rdma_listener_dispatch(srv->rdma->l);

	if (rc < 0 && rc != -EAGAIN)
		rmp_log_syserr("rmp_rdma_listener_dispatch()", rc, "rdma_cm event");
}

void rmp_srv_rdma_start(struct rmp_srv *srv)
{
	char addr[RMP_WIRE_HOST_MAX + 1];
	int rc;

	if (srv->cfg.rdma_addr[0]) {
		snprintf(addr, sizeof(addr), "%s", srv->cfg.rdma_addr);
	} else if ((rc = rmp_rdma_local_addr(addr, sizeof(addr))) < 0) {
		snprintf(srv->rdma_why_not, sizeof(srv->rdma_why_not),
			 "no RDMA device with an IPv4 address found: %s", strerror(-rc));
		rmp_log_warn("rdma: %s; serving control, status and metrics only, pools cannot "
			     "be created",
			     srv->rdma_why_not);
		return;
	}
	struct rmp_srv_rdma *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(srv->rdma_why_not, sizeof(srv->rdma_why_not), "out of memory");
		return;
	}
	struct rmp_rdma_opts opts = { .timeout_ms = 5000 };
	rc = rmp_rdma_listen(addr, (uint16_t)srv->cfg.rdma_port, &opts, accept_cb, closed_cb, srv,
			     &r->l);
	if (rc) {
		snprintf(srv->rdma_why_not, sizeof(srv->rdma_why_not),
			 "rdma_cm listen on %s:%d failed: %s", addr, (int)srv->cfg.rdma_port,
			 strerror(-rc));
		rmp_log_warn("rdma: %s; serving control, status and metrics only, pools cannot "
			     "be created",
			     srv->rdma_why_not);
		free(r);
		return;
	}
	r->ev = event_new(srv->base, rmp_rdma_listener_fd(r->l), EV_READ | EV_PERSIST, readable_cb,
			  srv);
	if (!r->ev || event_add(r->ev, NULL)) {
		snprintf(srv->rdma_why_not, sizeof(srv->rdma_why_not),
			 "cannot watch the rdma_cm channel");
		rmp_log_error("rdma: %s", srv->rdma_why_not);
		if (r->ev)
			event_free(r->ev);
		rmp_rdma_listener_close(r->l);
		free(r);
		return;
	}
	snprintf(r->addr, sizeof(r->addr), "%s", addr);
	r->port = rmp_rdma_listener_port(r->l);
	srv->rdma = r;
	rmp_log_info("rdma_cm listener on %s:%u", r->addr, r->port);
}

void rmp_srv_rdma_stop(struct rmp_srv *srv)
{
	struct rmp_srv_rdma *r = srv->rdma;

	if (!r)
		return;
	event_free(r->ev);
	rmp_rdma_listener_close(r->l);
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

#endif /* RMPOOL_SERVER_HAVE_RDMA */

const char *rmp_srv_rdma_why_not(const struct rmp_srv *srv)
{
	return srv->rdma_why_not[0] ? srv->rdma_why_not : "no RDMA listener";
}
