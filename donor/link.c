/* link.c - the donor's and the agent's connection to the coordinator
 * (interface: link.h): the settings of common/ctlconn.h both roles use,
 * and dn_link_try(), the one place a failed connect becomes an
 * rmpool-donor error code (dn_link_connect() also logs it).
 */
#include "link.h"

#include <errno.h>

#include "clock.h"
#include "log.h"

int dn_link_init(struct rmp_ctlconn *c, const struct dn_cfg *cfg, const rmp_auth_key *key,
		 enum rmp_wire_role role, const char *ident)
{
	const struct rmp_ctlconn_opts o = {
		.host = cfg->coordinator.host,
		.port = cfg->coordinator.port,
		.key = key,
		.role = role,
		.ident = ident,
		.keepalive = true,
	};
	int rc = rmp_ctlconn_init(c, &o);
	if (rc)
		rmp_log_error("coordinator \"%s\": no host, or the host or identity \"%s\" is too long",
			      cfg->coordinator.host, ident);
	return rc;
}

int dn_link_try(struct rmp_ctlconn *c, const struct dn_cfg *cfg, char *err, size_t errlen)
{
	int rc = rmp_ctlconn_reconnect(c, rmp_deadline_ms(cfg->timeout_ms), err, errlen);
	/* rmpool-donor's code for "we and the coordinator do not hold the
	 * same secret", as it always was. */
	return rc == -RMP_CTLCONN_EAUTH ? -EACCES : rc;
}

int dn_link_connect(struct rmp_ctlconn *c, const struct dn_cfg *cfg)
{
	char err[512];

	int rc = dn_link_try(c, cfg, err, sizeof(err));
	if (rc)
		rmp_log_error("%s", err);
	return rc;
}
