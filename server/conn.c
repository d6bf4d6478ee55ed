/* conn.c - control-protocol connections: accept, framing, the shared-
 * secret handshake, dispatch.
 *
 * A connection goes through
 *   accepted -> HELLO -> (CHALLENGE sent) -> AUTH_PROOF -> authenticated
 * and only then may it send anything else. Before authentication frames
 * are parsed with RMP_WIRE_PREAUTH_MAX_FRAME, so a stranger can make us
 * buffer at most 256 bytes, and must finish within handshake-timeout.
 * Every refusal (bad magic, version, type, length, payload, a frame out
 * of order, a wrong proof) closes that connection only, counts in the
 * metrics and logs one line naming the peer; so does a peer that hangs up
 * after our CHALLENGE (it could not verify our proof: another secret),
 * at warning, counted in auth_failures_total. A failed proof gets a bare
 * ERROR "authentication failed": no pool name or any other state leaks
 * to a peer that does not hold the secret.
 *
 * Reading: bufferevent delivers bytes; we look at the 8-byte header
 * first, learn the frame length (refused early when over the limit),
 * and pull up exactly one frame before decoding it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "log.h"
#include "srv.h"

static const char *role_name(uint8_t role)
{
	switch (role) {
	case RMP_ROLE_CLIENT:
		return "client";
	case RMP_ROLE_DONOR:
		return "donor";
	case RMP_ROLE_AGENT:
		return "agent";
	}
	return "peer";
}

static void conn_free(struct rmp_srv_conn *c)
{
	struct rmp_srv *srv = c->srv;

	if (c->authed && !srv->stopping) {
		rmp_srv_agent_conn_closed(c);
		rmp_srv_donor_conn_closed(c);
		rmp_srv_pool_conn_closed(c);
		rmp_srv_leases_forget_owner(&srv->leases, c);
	}
	if (c->hs_timer)
		event_free(c->hs_timer);
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->n_conns--;
	free(c);
}

/* Protocol violation: count, log, close now (nothing more is sent). */
static void conn_reject(struct rmp_srv_conn *c, const char *what, const char *why)
{
	c->srv->m.frames_rejected_total++;
	rmp_log_warn("%s %s: %s: %s; closing the connection", role_name(c->role), c->peer, what,
		     why);
	conn_free(c);
}

static void close_after_flush_cb(struct bufferevent *bev, void *arg)
{
	struct rmp_srv_conn *c = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_free(c);
}

/* The peer hung up (or the socket failed) while we were flushing. */
static void close_event_cb(struct bufferevent *bev, short what, void *arg)
{
	conn_free(arg);
}

/* Sends nothing more after what is queued, then closes. Reading stops at
 * once; the handshake timer (if armed) still bounds the flush. */
static void conn_close_after_flush(struct rmp_srv_conn *c)
{
	c->closing = true;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setcb(c->bev, NULL, close_after_flush_cb, close_event_cb, c);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_free(c);
}

int rmp_srv_conn_send(struct rmp_srv_conn *c, const struct rmp_wire_msg *m)
{
	uint8_t small[512];
	size_t len = 0;

	if (!c || c->closing)
		return -EPIPE;
	int rc = rmp_wire_encode(m, small, sizeof(small), &len);
	if (rc == 0)
		return bufferevent_write(c->bev, small, len) ? -ENOMEM : 0;
	if (rc != -ENOSPC) {
		rmp_log_error("rmp_wire_encode(): %s for %s: %s", rmp_wire_type_name(m->type),
			      c->peer, rmp_wire_strerror(rc));
		return rc;
	}
	uint8_t *buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	rc = rmp_wire_encode(m, buf, len, &len);
	if (rc == 0 && bufferevent_write(c->bev, buf, len))
		rc = -ENOMEM;
	free(buf);
	return rc;
}

void rmp_srv_conn_send_error(struct rmp_srv_conn *c, int code, uint8_t ref_type,
			     const char *fmt, ...)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_ERROR };
	va_list ap;

	m.u.error.code = (uint32_t)(code < 0 ? -code : code);
	m.u.error.ref_type = ref_type;
	va_start(ap, fmt);
	vsnprintf(m.u.error.text, sizeof(m.u.error.text), fmt, ap);
	va_end(ap);
	/* The text came from our own format: make sure it is wire-clean. */
	for (char *p = m.u.error.text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	rmp_log_info("%s %s: %s refused: %s", role_name(c->role), c->peer,
		     ref_type ? rmp_wire_type_name(ref_type) : "request", m.u.error.text);
	rmp_srv_conn_send(c, &m);
}

/* ---- handshake ---- */

static void auth_failed(struct rmp_srv_conn *c, const char *why)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_ERROR };

	c->srv->m.auth_failures_total++;
	rmp_log_warn("%s %s (\"%s\"): authentication failed: %s; closing the connection",
		     role_name(c->role), c->peer, c->hs.ident, why);
	m.u.error.code = EACCES;
	m.u.error.ref_type = RMP_MSG_AUTH_PROOF;
	snprintf(m.u.error.text, sizeof(m.u.error.text), "authentication failed");
	rmp_srv_conn_send(c, &m);
	conn_close_after_flush(c);
}

static void handshake_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rmp_srv_conn *c = arg;
	char d[32];

	if (c->closing) {
		rmp_log_warn("%s: could not deliver the last frame in time; closing", c->peer);
		conn_free(c);
		return;
	}
	c->srv->m.auth_failures_total++;
	rmp_config_format_duration(c->srv->cfg.handshake_ms, d, sizeof(d));
	rmp_log_warn("%s: no authentication within %s; closing the connection", c->peer, d);
	conn_free(c);
}

/* Returns false when the connection was closed. */
static bool handshake_step(struct rmp_srv_conn *c, struct rmp_wire_msg *m)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_wire_msg out = { 0 };
	int rc;

	if (m->type == RMP_MSG_HELLO && c->hs.state == RMP_AUTH_IDLE) {
		c->role = m->u.hello.role;
		out.type = RMP_MSG_CHALLENGE;
		rc = rmp_auth_coord_challenge(srv->key, &c->hs, &m->u.hello, &out.u.challenge);
		if (rc) {
			auth_failed(c, "bad HELLO");
			return false;
		}
		rmp_srv_conn_send(c, &out);
		return true;
	}
	if (m->type == RMP_MSG_AUTH_PROOF && c->hs.state == RMP_AUTH_CHALLENGED) {
		rc = rmp_auth_coord_verify(srv->key, &c->hs, &m->u.auth_proof);
		if (rc) {
			auth_failed(c, "wrong proof (is the peer using another secret?)");
			return false;
		}
		if (rmp_srv_persist_session(srv)) {
			/* Ids must never repeat across a restart: refuse rather than guess. */
			rmp_srv_conn_send_error(c, EIO, RMP_MSG_AUTH_PROOF,
						"the coordinator cannot record session ids: %s",
						rmp_srv_persist_error(srv));
			conn_close_after_flush(c);
			return false;
		}
		c->authed = true;
		c->session_id = srv->next_session++;
		event_free(c->hs_timer);
		c->hs_timer = NULL;
		out.type = RMP_MSG_AUTH_OK;
		out.u.auth_ok.session_id = c->session_id;
		out.u.auth_ok.generation = srv->generation;
		rmp_srv_conn_send(c, &out);
		rmp_log_info("%s %s (\"%s\") authenticated, session %" PRIu64, role_name(c->role),
			     c->peer, c->hs.ident, c->session_id);
		return true;
	}
	char why[96];
	snprintf(why, sizeof(why), "%s out of order before authentication",
		 rmp_wire_type_name(m->type) ? rmp_wire_type_name(m->type) : "frame");
	conn_reject(c, "handshake", why);
	return false;
}

/* ---- authenticated requests ---- */

static bool role_is(struct rmp_srv_conn *c, uint8_t role, uint8_t type)
{
	if (c->role == role)
		return true;
	rmp_srv_conn_send_error(c, EPERM, type, "%s is for %ss; this connection said it is a %s",
				rmp_wire_type_name(type), role_name(role), role_name(c->role));
	return false;
}

/* Returns false when the connection was closed. */
static bool dispatch(struct rmp_srv_conn *c, struct rmp_wire_msg *m)
{
	switch (m->type) {
	case RMP_MSG_AGENT_REGISTER:
		if (role_is(c, RMP_ROLE_AGENT, m->type))
			rmp_srv_agent_register(c, &m->u.agent_register);
		return true;
	case RMP_MSG_PROGRESS:
		if (role_is(c, RMP_ROLE_AGENT, m->type))
			rmp_srv_agent_progress(c, &m->u.progress);
		return true;
	case RMP_MSG_DONOR_REGISTER:
		if (role_is(c, RMP_ROLE_DONOR, m->type))
			rmp_srv_donor_register(c, &m->u.donor_register);
		return true;
	case RMP_MSG_CLIENT_CUT_ACK:
		if (role_is(c, RMP_ROLE_DONOR, m->type))
			rmp_srv_cut_ack(c, &m->u.client_cut_ack);
		return true;
	case RMP_MSG_POOL_OPEN:
		rmp_srv_pool_open(c, &m->u.pool_open);
		return true;
	case RMP_MSG_POOL_CLOSE:
		rmp_srv_pool_close(c, &m->u.pool_close);
		return true;
	case RMP_MSG_POOL_DESTROY:
		rmp_srv_pool_destroy(c, &m->u.pool_destroy);
		return true;
	case RMP_MSG_POOL_FORGET:
		rmp_srv_pool_forget(c, &m->u.pool_forget);
		return true;
	case RMP_MSG_SEGTAB_FETCH:
		rmp_srv_pool_segtab_fetch(c, &m->u.segtab_fetch);
		return true;
	case RMP_MSG_LEASE_RENEW:
		rmp_srv_pool_lease_renew(c, &m->u.lease_renew);
		return true;
	case RMP_MSG_STATUS_REQUEST:
		rmp_srv_status_reply(c);
		return true;
	case RMP_MSG_ERROR:
		/* A peer telling us why it gives up; it will hang up itself. */
		rmp_log_warn("%s %s reports: %s", role_name(c->role), c->peer, m->u.error.text);
		return true;
	default: {
		char why[96];
		snprintf(why, sizeof(why), "%s is not a request the coordinator serves",
			 rmp_wire_type_name(m->type));
		conn_reject(c, "unexpected frame", why);
		return false;
	}
	}
}

/* ---- reading ---- */

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct rmp_srv_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (!c->closing) {
		size_t avail = evbuffer_get_length(in);
		size_t limit = c->authed ? RMP_WIRE_MAX_FRAME : RMP_WIRE_PREAUTH_MAX_FRAME;
		struct rmp_wire_frame f;
		struct rmp_wire_err err = { { 0 } };
		size_t need = 0;

		if (avail == 0)
			return;
		size_t look = avail < RMP_WIRE_HDR_LEN ? avail : RMP_WIRE_HDR_LEN;
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)look);
		int rc = rmp_wire_frame_parse(p, look, limit, &f, &need, &err);
		/* Refuse a stranger's non-handshake frame from its header, before
		 * waiting for (and buffering) its payload. */
		if (rc >= 0 && look == RMP_WIRE_HDR_LEN && !c->authed &&
		    !rmp_wire_type_preauth(p[3])) {
			char why[96];
			snprintf(why, sizeof(why), "%s before authentication",
				 rmp_wire_type_name(p[3]));
			c->srv->m.auth_failures_total++;
			conn_reject(c, "unauthenticated frame", why);
			return;
		}
		if (rc == 0 && look == RMP_WIRE_HDR_LEN && avail >= look + need) {
			p = evbuffer_pullup(in, (ev_ssize_t)(look + need));
			rc = rmp_wire_frame_parse(p, look + need, limit, &f, &need, &err);
		}
		if (rc < 0) {
			conn_reject(c, "bad frame", err.text);
			return;
		}
		if (rc == 0)
			return; /* wait for the rest */
		struct rmp_wire_msg m;
		rc = rmp_wire_decode(&f, &m, &err);
		if (rc < 0) {
			conn_reject(c, "bad message", err.text);
			return;
		}
		evbuffer_drain(in, f.frame_len);
		rmp_log_debug("%s: %s", c->peer, rmp_wire_type_name(m.type));
		bool alive = c->authed ? dispatch(c, &m) : handshake_step(c, &m);
		rmp_wire_msg_release(&m);
		if (!alive)
			return;
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct rmp_srv_conn *c = arg;

	if (what & BEV_EVENT_EOF) {
		size_t left = evbuffer_get_length(bufferevent_get_input(bev));
		if (left) {
			char why[96];
			snprintf(why, sizeof(why), "connection closed inside a frame (%zu bytes)",
				 left);
			conn_reject(c, "truncated frame", why);
			return;
		}
		/* Port probes (health checks, scanners) hang up before HELLO:
		 * not worth a line at info. A peer that hangs up after our
		 * CHALLENGE found that our proof does not verify with its
		 * secret (ctlconn.c checks it before proving itself): that is
		 * a failed authentication, told to the operator like a wrong
		 * proof. */
		if (c->authed) {
			rmp_log_info("%s %s closed the connection", role_name(c->role), c->peer);
		} else if (c->hs.state == RMP_AUTH_CHALLENGED) {
			c->srv->m.auth_failures_total++;
			rmp_log_warn("%s %s (\"%s\"): authentication failed: it hung up after the "
				     "challenge (is the peer using another secret?)",
				     role_name(c->role), c->peer, c->hs.ident);
		} else {
			rmp_log_debug("%s closed the connection before authenticating", c->peer);
		}
	} else if (what & BEV_EVENT_ERROR) {
		rmp_log_warn("%s %s: connection error: %s", role_name(c->role), c->peer,
			     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
	conn_free(c);
}

static void format_peer(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "unknown peer");
	}
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct rmp_srv *srv = arg;
	char peer[64];

	format_peer(sa, peer, sizeof(peer));
	if (srv->n_conns >= (uint64_t)srv->cfg.max_connections) {
		rmp_log_warn("%s: refused: %" PRIu64 " connections already (max-connections)",
			     peer, srv->n_conns);
		evutil_closesocket(fd);
		return;
	}
	struct rmp_srv_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		rmp_log_syserr("calloc()", ENOMEM, "connection from %s", peer);
		evutil_closesocket(fd);
		return;
	}
	c->srv = srv;
	memcpy(c->peer, peer, sizeof(c->peer));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->hs_timer = evtimer_new(srv->base, handshake_timeout_cb, c);
	if (!c->bev || !c->hs_timer) {
		rmp_log_error("%s: cannot set up the connection (out of memory)", peer);
		if (c->hs_timer)
			event_free(c->hs_timer);
		if (c->bev)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		free(c);
		return;
	}
	struct timeval tv = { .tv_sec = (time_t)(srv->cfg.handshake_ms / 1000),
			      .tv_usec = (suseconds_t)(srv->cfg.handshake_ms % 1000) * 1000 };
	evtimer_add(c->hs_timer, &tv);
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->n_conns++;
	srv->m.connections_total++;
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	rmp_log_debug("%s: connected", peer);
}

static void listener_error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: keep serving who is connected; libevent
	 * retries the accept on the next readiness. */
	rmp_log_syserr("accept()", err, "on the control listener");
}

int rmp_srv_conn_listen(struct rmp_srv *srv)
{
	struct evutil_addrinfo hints = { .ai_family = AF_UNSPEC,
					 .ai_socktype = SOCK_STREAM,
					 .ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV };
	struct evutil_addrinfo *ai = NULL;
	char port[8];

	snprintf(port, sizeof(port), "%u", srv->cfg.listen.port);
	int rc = evutil_getaddrinfo(srv->cfg.listen.host, port, &hints, &ai);
	if (rc) {
		rmp_log_error("getaddrinfo(): --listen %s:%s: %s", srv->cfg.listen.host, port,
			      evutil_gai_strerror(rc));
		return -EINVAL;
	}
	srv->listener = evconnlistener_new_bind(srv->base, accept_cb, srv,
						LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
							LEV_OPT_CLOSE_ON_EXEC,
						128, ai->ai_addr, (int)ai->ai_addrlen);
	int err = errno;
	evutil_freeaddrinfo(ai);
	if (!srv->listener) {
		rmp_log_syserr("bind()", err, "control listener on %s:%s", srv->cfg.listen.host,
			       port);
		return -err;
	}
	evconnlistener_set_error_cb(srv->listener, listener_error_cb);
	rmp_log_info("control protocol on %s:%s", srv->cfg.listen.host, port);
	return 0;
}

void rmp_srv_conn_close_all(struct rmp_srv *srv)
{
	srv->stopping = true;
	if (srv->listener) {
		evconnlistener_free(srv->listener);
		srv->listener = NULL;
	}
	while (srv->conns)
		conn_free(srv->conns);
}
