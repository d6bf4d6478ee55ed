/* ctlconn.c - the peer side of the control connection (interface and
 * the two styles of use: ctlconn.h).
 *
 * Bounded waits: the socket is non-blocking from socket(2) on, and every
 * wait is a poll(2) on what is left of the caller's absolute deadline, so
 * neither a coordinator that accepts and then says nothing nor one that
 * stops reading can hold a caller past it. Name resolution is the one
 * exception: getaddrinfo(3) has the system resolver's own timeouts.
 *
 * Connect: each address getaddrinfo returns is tried in turn with the
 * time that is left; a timeout ends the walk (the deadline is spent).
 *
 * Frames out: encoded into a stack buffer (a heap one for the rare large
 * frame), written whole with MSG_NOSIGNAL, waiting for POLLOUT between
 * partial writes.
 *
 * Frames in: bytes accumulate in buf[off, len) until rmp_wire_frame_parse
 * finds a whole frame at off; pop decodes it and moves off past it (the
 * unread tail is moved to the front only when the buffer's end is hit).
 * The buffer grows only while it holds less than one frame at the current
 * limit: RMP_WIRE_PREAUTH_MAX_FRAME until the handshake is done, so an
 * unauthenticated coordinator can make us hold at most RECV_BUF_MIN bytes,
 * then RMP_WIRE_MAX_FRAME. fill() reports the bytes that came before a
 * close first and the close on the next call: an ERROR followed by a close
 * is always read as the ERROR.
 *
 * Handshake (auth.h, peer half):
 *   HELLO -> CHALLENGE (check the coordinator's proof) -> AUTH_PROOF ->
 *   AUTH_OK, or ERROR {code, text}: EACCES is the coordinator's
 *   "authentication failed" and becomes -RMP_CTLCONN_EAUTH.
 */
#include "ctlconn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* Keepalive: first probe after 30 s idle, then every 10 s, 3 misses: a
 * vanished coordinator is noticed in about a minute even by a peer that
 * sleeps in poll() with no timeout (a donor). */
#define KEEPALIVE_IDLE_S 30
#define KEEPALIVE_INTVL_S 10
#define KEEPALIVE_CNT 3
/* Every handshake frame and most later ones fit; larger ones use the heap. */
#define SEND_STACK_MAX 512
#define RECV_BUF_MIN 4096

/* Thread-safe text for an errno (strerror(3) may write a shared buffer). */
static const char *errtext(int rc)
{
	const char *s = strerrordesc_np(rc < 0 ? -rc : rc);
	return s ? s : "unknown error";
}

static const char *type_name(unsigned type)
{
	const char *s = rmp_wire_type_name(type);
	return s ? s : "unknown frame";
}

/* Waits for events on fd by the deadline: 0 ready, -ETIMEDOUT, -errno. */
static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
	for (;;) {
		int left = rmp_ms_left(deadline_ms);
		if (left == 0)
			return -ETIMEDOUT;
		struct pollfd pfd = { .fd = fd, .events = events };
		int n = poll(&pfd, 1, left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static size_t frame_limit(const struct rmp_ctlconn *c)
{
	return c->authed ? RMP_WIRE_MAX_FRAME : RMP_WIRE_PREAUTH_MAX_FRAME;
}

/* ---- connect ---- */

static void set_socket_options(int fd, bool keepalive)
{
	int one = 1;

	/* Small request/reply frames: do not let Nagle hold them back. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!keepalive)
		return;
	int idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTVL_S, cnt = KEEPALIVE_CNT;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* One attempt on one resolved address. */
static int connect_one(const struct addrinfo *ai, uint64_t deadline_ms, int *out)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			ai->ai_protocol);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto out_close;
		}
		rc = wait_fd(fd, POLLOUT, deadline_ms);
		if (rc)
			goto out_close;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			rc = -soerr;
			goto out_close;
		}
	}
	*out = fd;
	return 0;

out_close:
	close(fd);
	return rc;
}

/* Resolves c->host and connects to the first address that answers. */
static int connect_tcp(struct rmp_ctlconn *c, uint64_t deadline_ms, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	char port[8];

	snprintf(port, sizeof(port), "%u", (unsigned)c->port);
	int gai = getaddrinfo(c->host, port, &hints, &res);
	if (gai) {
		rmp_errf(err, errlen, "getaddrinfo(): cannot resolve %s: %s", c->host,
			 gai_strerror(gai));
		return gai == EAI_NONAME ? -EHOSTUNREACH : -EAGAIN;
	}
	int rc = -EHOSTUNREACH;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		rc = connect_one(ai, deadline_ms, &c->fd);
		if (rc == 0 || rc == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (rc) {
		rmp_errf(err, errlen, "connect(): coordinator %s: %s", c->peer, errtext(rc));
		return rc;
	}
	set_socket_options(c->fd, c->keepalive);
	return 0;
}

/* ---- frames out ---- */

int rmp_ctlconn_send(const struct rmp_ctlconn *c, const struct rmp_wire_msg *m,
		     uint64_t deadline_ms)
{
	uint8_t small[SEND_STACK_MAX];
	uint8_t *buf = small;
	size_t len = 0;

	int rc = rmp_wire_encode(m, small, sizeof(small), &len);
	if (rc == -ENOSPC) {
		buf = malloc(len);
		if (!buf)
			return -ENOMEM;
		rc = rmp_wire_encode(m, buf, len, &len);
	}
	for (size_t off = 0; rc == 0 && off < len;) {
		ssize_t n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			rc = wait_fd(c->fd, POLLOUT, deadline_ms);
		else
			rc = n < 0 ? -errno : -EPIPE;
	}
	if (buf != small)
		free(buf);
	return rc;
}

/* ---- frames in ---- */

/* Room for more bytes at buf + len: 0; 1 when the buffer already holds a
 * whole frame's worth at the current limit (pop first); -ENOMEM. */
static int make_room(struct rmp_ctlconn *c)
{
	size_t limit = frame_limit(c);

	if (c->off == c->len)
		c->off = c->len = 0;
	if (c->len < c->cap)
		return 0;
	size_t held = c->len - c->off;
	if (held >= limit)
		return 1;
	if (c->off) {
		memmove(c->buf, c->buf + c->off, held);
		c->off = 0;
		c->len = held;
		return 0;
	}
	/* Here cap == held < limit: grow towards one frame at the limit. */
	size_t ncap = c->cap ? c->cap * 2 : RECV_BUF_MIN;
	if (c->cap && ncap > limit)
		ncap = limit;
	uint8_t *nb = realloc(c->buf, ncap);
	if (!nb)
		return -ENOMEM;
	c->buf = nb;
	c->cap = ncap;
	return 0;
}

int rmp_ctlconn_fill(struct rmp_ctlconn *c)
{
	bool got = false;

	for (;;) {
		int rc = make_room(c);
		if (rc > 0)
			return 0;
		if (rc < 0)
			return got ? 0 : rc;
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n > 0) {
			c->len += (size_t)n;
			got = true;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		/* A close or an error: report it once the bytes before it are popped. */
		if (got)
			return 0;
		return n == 0 ? -ECONNRESET : -errno;
	}
}

int rmp_ctlconn_pop(struct rmp_ctlconn *c, struct rmp_wire_msg *m, char *err, size_t errlen)
{
	struct rmp_wire_frame f;
	struct rmp_wire_err werr = { { 0 } };

	if (c->off == c->len)
		return 0;
	int rc = rmp_wire_frame_parse(c->buf + c->off, c->len - c->off, frame_limit(c), &f, NULL,
				      &werr);
	if (rc == 0)
		return 0;
	if (rc < 0) {
		rmp_errf(err, errlen, "coordinator %s: bad frame: %s", c->peer, werr.text);
		return rc;
	}
	if (!c->authed && !rmp_wire_type_preauth(f.type)) {
		rmp_errf(err, errlen, "coordinator %s: %s before authentication", c->peer,
			 type_name(f.type));
		return -EPROTO;
	}
	rc = rmp_wire_decode(&f, m, &werr);
	/* Drop the frame whatever the outcome: a bad one closes the connection. */
	c->off += f.frame_len;
	if (rc) {
		rmp_errf(err, errlen, "coordinator %s: bad %s frame: %s", c->peer, type_name(f.type),
			 werr.text);
		return rc;
	}
	return 1;
}

/* rmp_ctlconn_recv; `during` ("" or " during the handshake") ends the
 * texts of a timeout and of a close. */
static int recv_during(struct rmp_ctlconn *c, struct rmp_wire_msg *m, uint64_t deadline_ms,
		       const char *during, char *err, size_t errlen)
{
	uint64_t start = rmp_mono_ms();

	for (;;) {
		int rc = rmp_ctlconn_pop(c, m, err, errlen);
		if (rc > 0)
			return 0;
		if (rc < 0)
			return rc;
		rc = wait_fd(c->fd, POLLIN, deadline_ms);
		if (rc == -ETIMEDOUT) {
			rmp_errf(err, errlen, "coordinator %s: no answer within %llu ms%s", c->peer,
				 (unsigned long long)(deadline_ms > start ? deadline_ms - start : 0),
				 during);
			return rc;
		}
		if (rc) {
			rmp_errf(err, errlen, "poll(): coordinator %s: %s", c->peer, errtext(rc));
			return rc;
		}
		rc = rmp_ctlconn_fill(c);
		if (rc == -ECONNRESET) {
			rmp_errf(err, errlen, "coordinator %s closed the connection%s", c->peer, during);
			return rc;
		}
		if (rc) {
			rmp_errf(err, errlen, "recv(): coordinator %s: %s", c->peer, errtext(rc));
			return rc;
		}
	}
}

int rmp_ctlconn_recv(struct rmp_ctlconn *c, struct rmp_wire_msg *m, uint64_t deadline_ms,
		     char *err, size_t errlen)
{
	return recv_during(c, m, deadline_ms, "", err, errlen);
}

/* ---- handshake ---- */

/* An ERROR in answer to our HELLO or our proof. */
static int refusal(const struct rmp_ctlconn *c, const struct rmp_wire_error *e, const char *what,
		   char *err, size_t errlen)
{
	rmp_errf(err, errlen, "coordinator %s refused %s: %s", c->peer, what, e->text);
	if (e->code == EACCES)
		return -RMP_CTLCONN_EAUTH;
	return e->code ? -(int)e->code : -EREMOTEIO;
}

/* Not the frame the handshake expects next: releases it. */
static int unexpected(const struct rmp_ctlconn *c, struct rmp_wire_msg *m, const char *want,
		      char *err, size_t errlen)
{
	rmp_errf(err, errlen, "coordinator %s: expected %s, got %s", c->peer, want,
		 type_name(m->type));
	rmp_wire_msg_release(m);
	return -EPROTO;
}

/* HELLO out, CHALLENGE in (*ch). */
static int hello(struct rmp_ctlconn *c, struct rmp_auth_handshake *hs, uint64_t deadline_ms,
		 struct rmp_wire_challenge *ch, char *err, size_t errlen)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_HELLO };

	int rc = rmp_auth_peer_hello(hs, c->role, c->ident, &m.u.hello);
	if (rc) {
		rmp_errf(err, errlen, "rmp_auth_peer_hello(): bad identity \"%s\"", c->ident);
		return rc;
	}
	rc = rmp_ctlconn_send(c, &m, deadline_ms);
	if (rc) {
		rmp_errf(err, errlen, "send(): coordinator %s: HELLO: %s", c->peer, errtext(rc));
		return rc;
	}
	rc = recv_during(c, &m, deadline_ms, " during the handshake", err, errlen);
	if (rc)
		return rc;
	if (m.type == RMP_MSG_ERROR)
		return refusal(c, &m.u.error, "the handshake", err, errlen);
	if (m.type != RMP_MSG_CHALLENGE)
		return unexpected(c, &m, "CHALLENGE", err, errlen);
	*ch = m.u.challenge;
	return 0;
}

/* Checks the coordinator's proof, AUTH_PROOF out, AUTH_OK in. */
static int prove(struct rmp_ctlconn *c, struct rmp_auth_handshake *hs,
		 const struct rmp_wire_challenge *ch, uint64_t deadline_ms, char *err, size_t errlen)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_AUTH_PROOF };

	int rc = rmp_auth_peer_prove(c->key, hs, ch, &m.u.auth_proof);
	if (rc == -EACCES) {
		rmp_errf(err, errlen,
			 "coordinator %s did not prove it holds our secret (the secrets differ)",
			 c->peer);
		return -RMP_CTLCONN_EAUTH;
	}
	if (rc) {
		rmp_errf(err, errlen, "rmp_auth_peer_prove(): %s", errtext(rc));
		return rc;
	}
	rc = rmp_ctlconn_send(c, &m, deadline_ms);
	if (rc) {
		rmp_errf(err, errlen, "send(): coordinator %s: AUTH_PROOF: %s", c->peer,
			 errtext(rc));
		return rc;
	}
	rc = recv_during(c, &m, deadline_ms, " during the handshake", err, errlen);
	if (rc == -ECONNRESET) {
		rmp_errf(err, errlen,
			 "coordinator %s closed the connection after our proof (the secrets differ?)",
			 c->peer);
		return -RMP_CTLCONN_EAUTH;
	}
	if (rc)
		return rc;
	if (m.type == RMP_MSG_ERROR)
		return refusal(c, &m.u.error, "our proof", err, errlen);
	if (m.type != RMP_MSG_AUTH_OK)
		return unexpected(c, &m, "AUTH_OK", err, errlen);
	c->session_id = m.u.auth_ok.session_id;
	c->generation = m.u.auth_ok.generation;
	rmp_ctlconn_set_authed(c);
	return 0;
}

static int handshake(struct rmp_ctlconn *c, uint64_t deadline_ms, char *err, size_t errlen)
{
	struct rmp_auth_handshake hs = { 0 };
	struct rmp_wire_challenge ch;

	int rc = hello(c, &hs, deadline_ms, &ch, err, errlen);
	if (rc)
		return rc;
	return prove(c, &hs, &ch, deadline_ms, err, errlen);
}

/* ---- life cycle ---- */

int rmp_ctlconn_init(struct rmp_ctlconn *c, const struct rmp_ctlconn_opts *o)
{
	*c = (struct rmp_ctlconn){ .fd = -1 };
	if (!o || !o->host || !o->host[0] || strlen(o->host) > RMP_WIRE_HOST_MAX || !o->ident ||
	    strlen(o->ident) > RMP_WIRE_IDENT_MAX)
		return -EINVAL;
	strcpy(c->host, o->host);
	strcpy(c->ident, o->ident);
	c->port = o->port;
	c->key = o->key;
	c->role = o->role;
	c->keepalive = o->keepalive;
	/* The form our --coordinator flags read back. */
	if (strchr(c->host, ':'))
		snprintf(c->peer, sizeof(c->peer), "[%s]:%u", c->host, (unsigned)c->port);
	else
		snprintf(c->peer, sizeof(c->peer), "%s:%u", c->host, (unsigned)c->port);
	return 0;
}

int rmp_ctlconn_open(struct rmp_ctlconn *c, const struct rmp_ctlconn_opts *o,
		     uint64_t deadline_ms, char *err, size_t errlen)
{
	int rc = rmp_ctlconn_init(c, o);
	if (rc) {
		rmp_errf(err, errlen, "control connection: no coordinator host, or the host name "
				      "or identity is too long");
		return rc;
	}
	return rmp_ctlconn_reconnect(c, deadline_ms, err, errlen);
}

int rmp_ctlconn_reconnect(struct rmp_ctlconn *c, uint64_t deadline_ms, char *err, size_t errlen)
{
	rmp_ctlconn_close(c);
	if (!c->host[0]) {
		rmp_errf(err, errlen, "control connection to %s: nothing to reconnect to", c->peer);
		return -EINVAL;
	}
	int rc = connect_tcp(c, deadline_ms, err, errlen);
	if (rc)
		return rc;
	rc = handshake(c, deadline_ms, err, errlen);
	if (rc)
		rmp_ctlconn_close(c);
	return rc;
}

int rmp_ctlconn_adopt(struct rmp_ctlconn *c, int fd, const char *peer)
{
	*c = (struct rmp_ctlconn){ .fd = -1 };
	snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "?");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	c->fd = fd;
	return 0;
}

void rmp_ctlconn_set_authed(struct rmp_ctlconn *c)
{
	c->authed = true;
}

void rmp_ctlconn_close(struct rmp_ctlconn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->off = c->len = c->cap = 0;
	c->authed = false;
	c->session_id = 0;
	c->generation = 0;
}

/* ---- reconnect pacing ---- */

void rmp_ctlconn_backoff_init(struct rmp_ctlconn_backoff *b, uint32_t base_ms, uint32_t max_ms,
			      uint32_t jitter_pct, uint64_t seed)
{
	if (base_ms == 0)
		base_ms = 1; /* 0 would never grow */
	*b = (struct rmp_ctlconn_backoff){
		.base_ms = base_ms,
		.max_ms = max_ms < base_ms ? base_ms : max_ms,
		.jitter_pct = jitter_pct > 100 ? 100 : jitter_pct,
		.nominal_ms = base_ms,
		/* xorshift64 stays at 0 forever from 0; any other state is fine. */
		.rng = seed ? seed : UINT64_C(0x9e3779b97f4a7c15),
	};
}

/* Marsaglia's xorshift64: jitter needs spread, not secrecy. */
static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

uint32_t rmp_ctlconn_backoff_next(struct rmp_ctlconn_backoff *b)
{
	uint32_t d = b->nominal_ms;

	b->nominal_ms = d > b->max_ms / 2 ? b->max_ms : d * 2;
	if (b->jitter_pct) {
		uint64_t span = (uint64_t)d * b->jitter_pct / 100; /* how far below nominal */
		d -= (uint32_t)(xorshift64(&b->rng) % (span + 1));
	}
	return d;
}

void rmp_ctlconn_backoff_reset(struct rmp_ctlconn_backoff *b)
{
	b->nominal_ms = b->base_ms;
}
