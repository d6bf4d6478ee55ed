/* ctlconn.h - the peer side of the control connection: what librmpool,
 * the donor process and the host agent share to talk to the coordinator.
 *
 * One connection = one non-blocking TCP socket, a receive buffer and the
 * settings it was opened with (so it can be opened again):
 *   rmp_ctlconn_open()       TCP connect (every address of the host, each
 *                            bounded by what is left of the deadline), TCP
 *                            keepalive if asked, then the handshake of
 *                            auth.h: HELLO -> CHALLENGE (the coordinator's
 *                            proof is checked) -> AUTH_PROOF -> AUTH_OK.
 *   rmp_ctlconn_reconnect()  the same again after a loss, same settings;
 *                            rmp_ctlconn_backoff_next() paces the attempts.
 * Two styles of use, on the same buffer:
 *   blocking    rmp_ctlconn_send() / rmp_ctlconn_recv() by a deadline;
 *   event loop  poll(2) c->fd for POLLIN, rmp_ctlconn_fill(), then
 *               rmp_ctlconn_pop() until it returns 0.
 * The reader returns whatever message comes next: a reply, or something
 * the coordinator pushes unasked (TERMINATE, LEASE_EXPIRED, PROGRESS, and
 * later a new segment table). Callers dispatch on m->type; this module
 * never interprets a message after the handshake.
 *
 * Deadlines are absolute, in rmp_mono_ms() milliseconds (clock.h).
 * Errors are negative errno values with one line in err ("coordinator
 * HOST:PORT: what"), and -RMP_CTLCONN_EAUTH for authentication failures;
 * each program maps that to its own reporting in one place.
 *
 * Threads: one thread may send while one other reads (fill, pop, recv):
 * rmp_ctlconn_send() only reads c->fd and c->peer. Everything else wants
 * the connection to itself.
 */
#ifndef RMP_CTLCONN_H
#define RMP_CTLCONN_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "wire.h"

/* The handshake failed on authentication: the coordinator did not prove
 * it holds our secret, refused our proof, or hung up right after it (it
 * sends ERROR and closes; the close can overtake the ERROR). Neither
 * connect(2) nor send/recv return it, so it is never a socket error. */
#define RMP_CTLCONN_EAUTH EKEYREJECTED

struct rmp_ctlconn_opts {
	const char *host;	 /* the coordinator: a name or an address */
	uint16_t port;
	const rmp_auth_key *key; /* borrowed: must outlive the connection */
	enum rmp_wire_role role;
	const char *ident;	 /* who we are, for the coordinator's log (copied) */
	bool keepalive;		 /* notice a vanished coordinator while idle */
};

/* Callers read fd (to poll), peer (for messages) and session_id; the rest
 * is this module's. */
struct rmp_ctlconn {
	int fd;		     /* -1 while closed */
	bool authed;	     /* handshake done: frames up to RMP_WIRE_MAX_FRAME */
	uint64_t session_id; /* from AUTH_OK: the id leases and tokens carry */
	uint64_t generation; /* from AUTH_OK: the coordinator's generation */
	char peer[RMP_WIRE_HOST_MAX + 10]; /* "host:port" or "[v6]:port" */

	/* received bytes: buf[off, len) not yet popped */
	uint8_t *buf;
	size_t off, len, cap;

	/* settings, kept for reconnect */
	char host[RMP_WIRE_HOST_MAX + 1];
	uint16_t port;
	const rmp_auth_key *key;
	enum rmp_wire_role role;
	char ident[RMP_WIRE_IDENT_MAX + 1];
	bool keepalive;
};

/* A closed connection with these settings (no I/O). -EINVAL when host or
 * ident is too long for the wire. */
int rmp_ctlconn_init(struct rmp_ctlconn *c, const struct rmp_ctlconn_opts *o);

/* init, then connect and authenticate by the deadline. 0, or:
 *   -EINVAL            bad settings
 *   -EHOSTUNREACH      the name does not resolve (-EAGAIN: resolver trouble)
 *   -ECONNREFUSED ...  connect(2) failed on every address
 *   -ETIMEDOUT         the deadline passed (connecting or in the handshake)
 *   -RMP_CTLCONN_EAUTH see above
 *   -ECONNRESET        the coordinator hung up during the handshake
 *   -EPROTO, -EMSGSIZE, -EBADMSG, ...  it does not speak this protocol
 *   -code              it refused the handshake with ERROR {code}
 * On failure c is closed but keeps its settings. */
int rmp_ctlconn_open(struct rmp_ctlconn *c, const struct rmp_ctlconn_opts *o,
		     uint64_t deadline_ms, char *err, size_t errlen);

/* Drops what the last connection left (socket, buffered bytes, session)
 * and connects and authenticates again with the same settings. Returns
 * as rmp_ctlconn_open(). */
int rmp_ctlconn_reconnect(struct rmp_ctlconn *c, uint64_t deadline_ms, char *err, size_t errlen);

/* Takes over a socket someone else connected or accepted (a test's fake
 * coordinator, for one), not yet authenticated; makes it non-blocking.
 * peer names it in messages. 0, or -errno from fcntl(2) (then fd is still
 * the caller's). No settings: reconnect refuses it. */
int rmp_ctlconn_adopt(struct rmp_ctlconn *c, int fd, const char *peer);

/* The other side has authenticated: accept frames of any type and size
 * (open does this itself after AUTH_OK). */
void rmp_ctlconn_set_authed(struct rmp_ctlconn *c);

/* Closes the socket and frees the buffer; the settings stay. Safe to
 * call again, and on a connection that init, open or adopt set up. */
void rmp_ctlconn_close(struct rmp_ctlconn *c);

/* Encodes m and writes the whole frame by the deadline (MSG_NOSIGNAL: a
 * peer that went away is -EPIPE, never SIGPIPE). 0, -ETIMEDOUT, -EPIPE,
 * -ECONNRESET, -EINVAL (m cannot be encoded), -ENOMEM. */
int rmp_ctlconn_send(const struct rmp_ctlconn *c, const struct rmp_wire_msg *m,
		     uint64_t deadline_ms);

/* The next message by the deadline (release it: rmp_wire_msg_release).
 * 0, -ETIMEDOUT, -ECONNRESET (closed), or a frame error; err says. */
int rmp_ctlconn_recv(struct rmp_ctlconn *c, struct rmp_wire_msg *m, uint64_t deadline_ms,
		     char *err, size_t errlen);

/* Reads what the socket holds without blocking. 0 (bytes may have come:
 * pop them), -ECONNRESET when the coordinator has closed and nothing more
 * came first, -ENOMEM, or -errno. */
int rmp_ctlconn_fill(struct rmp_ctlconn *c);

/* 1 and *m when a whole frame is buffered, 0 when not, < 0 on a bad frame
 * (close the connection; err says why): before authentication anything
 * but a handshake frame, or one over RMP_WIRE_PREAUTH_MAX_FRAME, is bad. */
int rmp_ctlconn_pop(struct rmp_ctlconn *c, struct rmp_wire_msg *m, char *err, size_t errlen);

/* ---- reconnect pacing ----
 * Bounded exponential backoff: the nominal delay starts at base_ms and
 * doubles after every failed attempt up to max_ms. Each delay handed out
 * is drawn from [nominal * (100 - jitter_pct) / 100, nominal], so it is
 * never above the cap, and peers that lost the coordinator together (a
 * restart) spread their attempts instead of arriving at once. jitter_pct
 * 0 gives the nominal sequence exactly; 50 is "equal jitter". */
struct rmp_ctlconn_backoff {
	uint32_t base_ms, max_ms;
	uint32_t jitter_pct;
	uint32_t nominal_ms; /* before jitter, for the next delay */
	uint64_t rng;	     /* xorshift64 state, never 0 */
};

/* max_ms below base_ms is raised to base_ms; jitter_pct above 100 is 100.
 * seed varies the jitter between processes (0 is fine for tests). */
void rmp_ctlconn_backoff_init(struct rmp_ctlconn_backoff *b, uint32_t base_ms, uint32_t max_ms,
			      uint32_t jitter_pct, uint64_t seed);
/* The delay before the next attempt; then the nominal delay doubles. */
uint32_t rmp_ctlconn_backoff_next(struct rmp_ctlconn_backoff *b);
/* After a success: the next delay is base_ms again. */
void rmp_ctlconn_backoff_reset(struct rmp_ctlconn_backoff *b);

#endif /* RMP_CTLCONN_H */
