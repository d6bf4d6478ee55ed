/* control.c - TCP to the coordinator, frames and the handshake
 * (interface: control.h).
 *
 * The socket is non-blocking from the start; every wait is a poll() with
 * what is left of the caller's deadline, so neither a coordinator that
 * accepts and then says nothing nor one that stops reading can hold a
 * donor or an agent. The handshake is the peer half of auth.h:
 *   HELLO -> CHALLENGE (check the coordinator's proof) -> AUTH_PROOF ->
 *   AUTH_OK (or ERROR: its text goes to err).
 */
#include "control.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Keepalive: first probe after 30 s idle, then every 10 s, 3 misses. */
#define KEEPALIVE_IDLE_S 30
#define KEEPALIVE_INTVL_S 10
#define KEEPALIVE_CNT 3
#define SEND_BUF_MAX 4096 /* our frames: DONOR_REGISTER is the largest */

uint64_t dn_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int left_ms(uint64_t deadline)
{
	uint64_t now = dn_now_ms();
	return now >= deadline ? 0 : (int)(deadline - now);
}


/* Waits for events on fd until deadline: 0 ready, -ETIMEDOUT, -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		int left = left_ms(deadline);
		if (left == 0)
			return -ETIMEDOUT;
		struct pollfd pfd = {.fd = fd, .events = events};
		int n = poll(&pfd, 1, left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int connect_one(const struct addrinfo *ai, uint64_t deadline, int *out)
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
		rc = wait_fd(fd, POLLOUT, deadline);
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
	int one = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTVL_S, cnt = KEEPALIVE_CNT;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*out = fd;
	return 0;

out_close:
	close(fd);
	return rc;
}

int dn_ctl_send(struct dn_ctl *c, const struct rmp_wire_msg *m, int timeout_ms)
{
	uint8_t buf[SEND_BUF_MAX];
	size_t len;
	int rc = rmp_wire_encode(m, buf, sizeof(buf), &len);
	if (rc)
		return rc;
	uint64_t deadline = dn_now_ms() + (uint64_t)timeout_ms;
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		rc = wait_fd(c->fd, POLLOUT, deadline);
		if (rc)
			return rc;
	}
	return 0;
}

int dn_ctl_fill(struct dn_ctl *c)
{
	for (;;) {
		if (c->len == RMP_WIRE_MAX_FRAME)
			return 0; /* a whole frame fits: pop will find it */
		ssize_t n = recv(c->fd, c->buf + c->len, RMP_WIRE_MAX_FRAME - c->len, 0);
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -errno;
	}
}

int dn_ctl_pop(struct dn_ctl *c, struct rmp_wire_msg *m, char *err, size_t errlen)
{
	struct rmp_wire_frame f;
	struct rmp_wire_err werr = {{0}};
	size_t limit = c->authed ? RMP_WIRE_MAX_FRAME : RMP_WIRE_PREAUTH_MAX_FRAME;
	int rc = rmp_wire_frame_parse(c->buf, c->len, limit, &f, NULL, &werr);
	if (rc == 0)
		return 0;
	if (rc < 0) {
		rmp_errf(err, errlen, "%s: %s", c->peer, werr.text);
		return rc;
	}
	if (!c->authed && !rmp_wire_type_preauth(f.type)) {
		rmp_errf(err, errlen, "%s: %s before authentication", c->peer,
		     rmp_wire_type_name(f.type) ? rmp_wire_type_name(f.type) : "unknown frame");
		return -EPROTO;
	}
	rc = rmp_wire_decode(&f, m, &werr);
	size_t used = f.frame_len;
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= used;
	if (rc) {
		rmp_errf(err, errlen, "%s: %s", c->peer, werr.text);
		return rc;
	}
	return 1;
}

int dn_ctl_recv(struct dn_ctl *c, struct rmp_wire_msg *m, int timeout_ms, char *err,
		size_t errlen)
{
	uint64_t deadline = dn_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		int rc = dn_ctl_pop(c, m, err, errlen);
		if (rc > 0)
			return 0;
		if (rc < 0)
			return rc;
		rc = wait_fd(c->fd, POLLIN, deadline);
		if (rc == -ETIMEDOUT) {
			rmp_errf(err, errlen, "%s: no answer within %d ms", c->peer, timeout_ms);
			return rc;
		}
		if (rc)
			return rc;
		rc = dn_ctl_fill(c);
		if (rc) {
			rmp_errf(err, errlen, "%s: %s", c->peer,
			     rc == -ECONNRESET ? "the coordinator closed the connection"
					       : strerror(-rc));
			return rc;
		}
	}
}

/* HELLO, CHALLENGE, AUTH_PROOF, AUTH_OK: the peer half of auth.h. */
static int handshake(struct dn_ctl *c, const rmp_auth_key *k, enum rmp_wire_role role,
		     const char *ident, uint64_t deadline, char *err, size_t errlen)
{
	struct rmp_auth_handshake hs = {0};
	struct rmp_wire_msg m = {.type = RMP_MSG_HELLO};
	int rc = rmp_auth_peer_hello(&hs, role, ident, &m.u.hello);
	if (rc) {
		rmp_errf(err, errlen, "rmp_auth_peer_hello(): bad identity \"%s\"", ident);
		return rc;
	}
	rc = dn_ctl_send(c, &m, left_ms(deadline));
	if (rc) {
		rmp_errf(err, errlen, "%s: sending HELLO: %s", c->peer, strerror(-rc));
		return rc;
	}
	rc = dn_ctl_recv(c, &m, left_ms(deadline), err, errlen);
	if (rc)
		return rc;
	if (m.type == RMP_MSG_ERROR) {
		rmp_errf(err, errlen, "%s refused us: %s", c->peer, m.u.error.text);
		return -EACCES;
	}
	if (m.type != RMP_MSG_CHALLENGE) {
		rmp_errf(err, errlen, "%s: expected CHALLENGE, got %s", c->peer,
		     rmp_wire_type_name(m.type));
		rmp_wire_msg_release(&m);
		return -EPROTO;
	}
	struct rmp_wire_challenge ch = m.u.challenge;
	m.type = RMP_MSG_AUTH_PROOF;
	rc = rmp_auth_peer_prove(k, &hs, &ch, &m.u.auth_proof);
	if (rc) {
		rmp_errf(err, errlen, "%s does not hold our secret (its proof is wrong)", c->peer);
		return -EACCES;
	}
	rc = dn_ctl_send(c, &m, left_ms(deadline));
	if (rc) {
		rmp_errf(err, errlen, "%s: sending AUTH_PROOF: %s", c->peer, strerror(-rc));
		return rc;
	}
	rc = dn_ctl_recv(c, &m, left_ms(deadline), err, errlen);
	if (rc)
		return rc;
	if (m.type == RMP_MSG_ERROR) {
		rmp_errf(err, errlen, "%s refused our proof: %s", c->peer, m.u.error.text);
		return -EACCES;
	}
	if (m.type != RMP_MSG_AUTH_OK) {
		rmp_errf(err, errlen, "%s: expected AUTH_OK, got %s", c->peer,
		     rmp_wire_type_name(m.type));
		rmp_wire_msg_release(&m);
		return -EPROTO;
	}
	c->session_id = m.u.auth_ok.session_id;
	c->authed = true;
	return 0;
}

int dn_ctl_open(struct dn_ctl *c, const struct rmp_config_hostport *hp, const rmp_auth_key *k,
		enum rmp_wire_role role, const char *ident, int timeout_ms, char *err,
		size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res, *ai;
	char port[8];
	uint64_t deadline = dn_now_ms() + (uint64_t)timeout_ms;
	int rc;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	snprintf(c->peer, sizeof(c->peer), "%s:%u", hp->host, (unsigned)hp->port);
	snprintf(port, sizeof(port), "%u", (unsigned)hp->port);
	rc = getaddrinfo(hp->host, port, &hints, &res);
	if (rc) {
		rmp_errf(err, errlen, "getaddrinfo(): cannot resolve %s: %s", hp->host, gai_strerror(rc));
		return -EHOSTUNREACH;
	}
	rc = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		rc = connect_one(ai, deadline, &c->fd);
		if (rc == 0 || rc == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (rc) {
		rmp_errf(err, errlen, "connect(): coordinator %s: %s", c->peer, strerror(-rc));
		return rc;
	}
	c->buf = malloc(RMP_WIRE_MAX_FRAME);
	if (!c->buf) {
		rc = -ENOMEM;
		rmp_errf(err, errlen, "malloc(): receive buffer: %s", strerror(ENOMEM));
		goto out_close_fd;
	}
	rc = handshake(c, k, role, ident, deadline, err, errlen);
	if (rc)
		goto out_free_buf;
	return 0;

out_free_buf:
	free(c->buf);
	c->buf = NULL;
out_close_fd:
	close(c->fd);
	c->fd = -1;
	return rc;
}

void dn_ctl_close(struct dn_ctl *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->len = 0;
	c->authed = false;
}
