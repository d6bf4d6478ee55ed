/* SPDX-License-Identifier: Apache-2.0 */
/* health.c - what "healthy" and "ready" mean for the coordinator: the
 * answer of GET /healthz and what systemd is told (common/notify.h).
 *
 * Needed: the control listener and the HTTP endpoint (when on), both
 * bound before the event loop starts - the coordinator exits when it
 * cannot bind them - and the rdma_cm listener, unless require-rdma is
 * false. The RDMA listener is the one that can be missing while the
 * process runs: its address may appear after we start, so rdma_listen.c
 * keeps retrying it, and until it is bound
 *   - GET /healthz answers 503 with the reason (and 200 "ok" after);
 *   - systemd is not told READY=1: a Type=notify unit stays "activating"
 *     (systemctl start waits; TimeoutStartSec ends it) while STATUS= says
 *     what we wait for.
 * READY=1 is sent once, from a callback of the running event loop, so
 * that by then a connection to the control port is accepted and served
 * and the HTTP port answers: dependent units may use us at once. Later
 * changes send STATUS= alone.
 */
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "notify.h"
#include "srv.h"

bool rmp_srv_health(const struct rmp_srv *srv, char *why, size_t len)
{
	if (!srv->loop_running) {
		snprintf(why, len, "starting");
		return false;
	}
	if (!srv->rdma && srv->cfg.require_rdma) {
		snprintf(why, len, "the rdma_cm listener is down: %s; retrying (attempt %" PRIu32 ")",
			 rmp_srv_rdma_why_not(srv), srv->rdma_attempts);
		return false;
	}
	snprintf(why, len, "ok");
	return true;
}

static uint32_t pool_count(const struct rmp_srv *srv)
{
	uint32_t n = 0;

	for (const struct rmp_srv_pool *p = srv->pools; p; p = p->next)
		n++;
	return n;
}

void rmp_srv_health_update(struct rmp_srv *srv)
{
	char why[512], rdma[300] = "no rdma_cm listener", http[300] = "no HTTP endpoint";
	struct rmp_wire_endpoint ep;

	if (!rmp_srv_health(srv, why, sizeof(why))) {
		rmp_notify_status("waiting: %s", why);
		return;
	}
	rmp_srv_rdma_endpoint(srv, &ep);
	if (ep.host[0])
		snprintf(rdma, sizeof(rdma), "rdma_cm %s:%u", ep.host, (unsigned)ep.port);
	if (srv->http)
		snprintf(http, sizeof(http), "http://%s:%d/metrics", srv->cfg.http_addr,
			 (int)srv->cfg.http_port);
	if (srv->ready_sent) {
		rmp_notify_status("serving: control %s:%u, %s, %s; %" PRIu32 " pool(s)",
				  srv->cfg.listen.host, (unsigned)srv->cfg.listen.port, http, rdma,
				  pool_count(srv));
		return;
	}
	srv->ready_sent = true;
	rmp_notify_ready("serving: control %s:%u, %s, %s; %" PRIu32 " pool(s), generation %" PRIu64,
			 srv->cfg.listen.host, (unsigned)srv->cfg.listen.port, http, rdma,
			 pool_count(srv), srv->generation);
	rmp_log_info("ready: control %s:%u, %s, %s (generation %" PRIu64 ")", srv->cfg.listen.host,
		     (unsigned)srv->cfg.listen.port, http, rdma, srv->generation);
}

void rmp_srv_rdma_up(struct rmp_srv *srv)
{
	if (!srv->adopted) {
		/* Recorded pools waited for the listener: their metadata is
		 * registered on its protection domain. */
		srv->adopted = true;
		rmp_srv_recover_register(srv);
	}
	rmp_srv_health_update(srv);
}
