/* link.h - the donor's and the agent's connection to the coordinator.
 *
 * Both roles use common/ctlconn.h with the same settings (keepalive on: a
 * donor sleeps in poll() with no timeout, so a vanished coordinator must
 * be noticed by TCP) and report a failed connect the same way; this is
 * the one place the connection's codes become theirs.
 */
#ifndef RMP_DONOR_LINK_H
#define RMP_DONOR_LINK_H

#include "auth.h"
#include "ctlconn.h"
#include "donor.h"
#include "wire.h"

/* A closed connection to cfg->coordinator as `role`, named `ident` (no
 * I/O). -EINVAL (logged) when the settings do not fit the wire. */
int dn_link_init(struct rmp_ctlconn *c, const struct dn_cfg *cfg, const rmp_auth_key *key,
		 enum rmp_wire_role role, const char *ident);

/* Connects (or reconnects) and authenticates within cfg->timeout_ms.
 * 0, or a negative errno after one ERROR line in the log: -EACCES when
 * the coordinator does not hold our secret or refused our proof,
 * -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -EPROTO, ... */
int dn_link_connect(struct rmp_ctlconn *c, const struct dn_cfg *cfg);

/* The same without the log line: the reason goes to err. For the
 * attempts after a loss, which their callers log once, not each. Safe
 * on another thread than the caller's (it touches c and err only). */
int dn_link_try(struct rmp_ctlconn *c, const struct dn_cfg *cfg, char *err, size_t errlen);

#endif /* RMP_DONOR_LINK_H */
