/*
 * ctl.c - the control connection's socket: connect by a deadline, write
 * whole frames by a deadline, and a reader that turns bytes into decoded
 * messages.
 *
 * The socket is non-blocking from the start; every wait is a poll(2)
 * bounded by an absolute monotonic deadline, so a coordinator that
 * accepts and then says nothing cannot hang a caller. Writes use
 * MSG_NOSIGNAL: a peer that went away gives -EPIPE, never SIGPIPE (a
 * library must not kill its host process).
 *
 * The reader keeps bytes until rmp_wire_frame_parse() says a whole frame
 * is in, decodes it, and drops it. Its limit starts at the pre-auth frame
 * size: until the coordinator has proved it holds the secret, it cannot
 * make us buffer more than that either.
 */
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
#include <time.h>
#include <unistd.h>

#include "client_internal.h"
#include "config.h"

uint64_t rmp_ctl_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int ms_left(uint64_t deadline_ms)
{
	uint64_t now = rmp_ctl_now_ms();

	if (now >= deadline_ms)
		return 0;
	uint64_t d = deadline_ms - now;
	return d > 60000 ? 60000 : (int)d;
}

/* Waits for `events` on fd by the deadline: 0, -ETIMEDOUT, or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
	for (;;) {
		int left = ms_left(deadline_ms);
		if (left == 0)
			return -ETIMEDOUT;
		struct pollfd pfd = { .fd = fd, .events = events };
		int n = poll(&pfd, 1, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n > 0)
			return 0;
	}
}

static int parse_coordinator(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	struct rmp_config_hostport hp;
	char tmp[RMP_CONFIG_HOST_MAX + 16];

	if (!s || !*s || strlen(s) >= sizeof(tmp) - 8)
		return -EINVAL;
	int rc = rmp_config_parse_hostport(s, &hp);
	if (rc == -EINVAL && !strchr(s, ':') && !strchr(s, '[')) {
		/* "host" alone: the default port */
		snprintf(tmp, sizeof(tmp), "%s:%u", s, (unsigned)RMP_DEFAULT_PORT);
		rc = rmp_config_parse_hostport(tmp, &hp);
	}
	if (rc)
		return -EINVAL;
	if (strlen(hp.host) >= hostlen)
		return -EINVAL;
	strcpy(host, hp.host);
	*port = hp.port;
	return 0;
}

/* One attempt on one resolved address. */
static int connect_one(const struct addrinfo *ai, uint64_t deadline_ms, int *fd_out)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			ai->ai_protocol);
	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			int rc = -errno;
			close(fd);
			return rc;
		}
		int rc = wait_fd(fd, POLLOUT, deadline_ms);
		if (rc) {
			close(fd);
			return rc;
		}
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			close(fd);
			return -soerr;
		}
	}
	/* Small request/reply frames: do not let Nagle hold them back. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*fd_out = fd;
	return 0;
}

int rmp_ctl_connect(const char *coordinator, uint64_t deadline_ms, int *fd_out, char *host,
		    size_t hostlen, uint16_t *port, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	char portstr[8];
	int rc;

	rc = parse_coordinator(coordinator, host, hostlen, port);
	if (rc) {
		snprintf(err, errlen, "bad coordinator address \"%.80s\": want host:port or [v6addr]:port",
			 coordinator ? coordinator : "(null)");
		return rc;
	}
	snprintf(portstr, sizeof(portstr), "%u", (unsigned)*port);
	int gai = getaddrinfo(host, portstr, &hints, &res);
	if (gai) {
		snprintf(err, errlen, "resolve %s: %s", host, gai_strerror(gai));
		return gai == EAI_NONAME ? -EHOSTUNREACH : -EAGAIN;
	}
	rc = -EHOSTUNREACH;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		rc = connect_one(ai, deadline_ms, fd_out);
		if (rc == 0 || rc == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (rc)
		snprintf(err, errlen, "%s:%u: %s", host, (unsigned)*port,
			 rc == -ETIMEDOUT ? "timed out" : strerrordesc_np(-rc));
	return rc;
}

int rmp_ctl_send(int fd, const struct rmp_wire_msg *m, uint64_t deadline_ms)
{
	uint8_t small[512];
	uint8_t *buf = small;
	size_t len = 0;
	int rc;

	rc = rmp_wire_encode(m, small, sizeof(small), &len);
	if (rc == -ENOSPC) {
		buf = malloc(len);
		if (!buf)
			return -ENOMEM;
		rc = rmp_wire_encode(m, buf, len, &len);
	}
	if (rc)
		goto out_free;
	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			rc = wait_fd(fd, POLLOUT, deadline_ms);
			if (rc)
				goto out_free;
			continue;
		}
		rc = n < 0 ? -errno : -EPIPE;
		goto out_free;
	}
out_free:
	if (buf != small)
		free(buf);
	return rc;
}

void rmp_ctl_reader_init(struct rmp_ctl_reader *r, size_t limit)
{
	*r = (struct rmp_ctl_reader){ .limit = limit };
}

void rmp_ctl_reader_free(struct rmp_ctl_reader *r)
{
	free(r->buf);
	*r = (struct rmp_ctl_reader){ 0 };
}

int rmp_ctl_reader_next(struct rmp_ctl_reader *r, struct rmp_wire_msg *m, char *err,
			size_t errlen)
{
	struct rmp_wire_frame f;
	struct rmp_wire_err werr = { { 0 } };
	int rc;

	rc = rmp_wire_frame_parse(r->buf, r->len, r->limit, &f, NULL, &werr);
	if (rc == 0)
		return 0;
	if (rc < 0) {
		snprintf(err, errlen, "bad frame from the coordinator: %s", werr.text);
		return rc;
	}
	rc = rmp_wire_decode(&f, m, &werr);
	/* Drop the frame whatever the outcome: a bad one closes the connection. */
	memmove(r->buf, r->buf + f.frame_len, r->len - f.frame_len);
	r->len -= f.frame_len;
	if (rc) {
		snprintf(err, errlen, "bad %s frame from the coordinator: %s",
			 rmp_wire_type_name(f.type) ? rmp_wire_type_name(f.type) : "?", werr.text);
		return rc;
	}
	return 1;
}

int rmp_ctl_reader_fill(struct rmp_ctl_reader *r, int fd)
{
	/* Grow to hold at least 4 KiB more, never past one frame of slack
	 * over the limit: the parser refuses longer frames before that. */
	if (r->cap - r->len < 4096) {
		size_t ncap = r->cap ? r->cap * 2 : 8192;
		while (ncap - r->len < 4096)
			ncap *= 2;
		uint8_t *nb = realloc(r->buf, ncap);
		if (!nb)
			return -ENOMEM;
		r->buf = nb;
		r->cap = ncap;
	}
	for (;;) {
		ssize_t n = recv(fd, r->buf + r->len, r->cap - r->len, 0);
		if (n > 0) {
			r->len += (size_t)n;
			return (int)n;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -EAGAIN;
		return -errno;
	}
}

int rmp_ctl_recv(int fd, struct rmp_ctl_reader *r, struct rmp_wire_msg *m, uint64_t deadline_ms,
		 char *err, size_t errlen)
{
	for (;;) {
		int rc = rmp_ctl_reader_next(r, m, err, errlen);
		if (rc > 0)
			return 0;
		if (rc < 0)
			return rc;
		rc = rmp_ctl_reader_fill(r, fd);
		if (rc > 0)
			continue;
		if (rc == 0) {
			snprintf(err, errlen, "the coordinator closed the connection");
			return -ECONNRESET;
		}
		if (rc != -EAGAIN) {
			snprintf(err, errlen, "recv: %s", strerrordesc_np(-rc));
			return rc;
		}
		rc = wait_fd(fd, POLLIN, deadline_ms);
		if (rc) {
			snprintf(err, errlen, "%s",
				 rc == -ETIMEDOUT ? "no answer from the coordinator in time" : "poll failed");
			return rc;
		}
	}
}
