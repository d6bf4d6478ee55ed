/* control.h - the donor's and the agent's connection to the coordinator:
 * TCP with bounded connect, send and receive, rmpool frames (wire.h) and
 * the shared-secret handshake (auth.h).
 *
 * Blocking-style calls (dn_ctl_connect, dn_ctl_send, dn_ctl_recv) wait at
 * most their timeout on a non-blocking socket with poll(); the event-loop
 * style is dn_ctl_fill() when poll() says the fd is readable, then
 * dn_ctl_pop() until it returns 0. Both styles share one receive buffer.
 */
#ifndef RMP_DONOR_CONTROL_H
#define RMP_DONOR_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "config.h"
#include "wire.h"

struct dn_ctl {
	int fd;
	bool authed;	 /* frames beyond the handshake allowed */
	uint8_t *buf;	 /* RMP_WIRE_MAX_FRAME bytes */
	size_t len;	 /* bytes buffered */
	uint64_t session_id;
	char peer[300];	 /* "host:port", for messages */
};

/* TCP connect (all addresses of host, each bounded by what is left of
 * timeout_ms), keepalive on (a silent coordinator is noticed in about a
 * minute even while we sleep), then the handshake with `role`.
 * 0, or a negative errno with one line in err: -ETIMEDOUT, -ECONNREFUSED,
 * -EACCES (a coordinator without our secret, or it refused our proof). */
int dn_ctl_open(struct dn_ctl *c, const struct rmp_config_hostport *hp, const rmp_auth_key *k,
		enum rmp_wire_role role, const char *ident, int timeout_ms, char *err,
		size_t errlen);
void dn_ctl_close(struct dn_ctl *c);

/* Whole frame out within timeout_ms. 0, -ETIMEDOUT, -EPIPE, -EINVAL. */
int dn_ctl_send(struct dn_ctl *c, const struct rmp_wire_msg *m, int timeout_ms);
/* Next message within timeout_ms (release it with rmp_wire_msg_release).
 * 0, -ETIMEDOUT, -ECONNRESET (closed), or a frame error (err says). */
int dn_ctl_recv(struct dn_ctl *c, struct rmp_wire_msg *m, int timeout_ms, char *err,
		size_t errlen);
/* Reads what the socket has (never blocks). 0, or -ECONNRESET / errno. */
int dn_ctl_fill(struct dn_ctl *c);
/* 1 and *m when a whole frame is buffered, 0 when not, < 0 on a bad
 * frame (close the connection; err says why). */
int dn_ctl_pop(struct dn_ctl *c, struct rmp_wire_msg *m, char *err, size_t errlen);

/* Monotonic milliseconds, for deadlines. */
uint64_t dn_now_ms(void);

#endif /* RMP_DONOR_CONTROL_H */
