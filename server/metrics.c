/* metrics.c - see metrics.h. One row per metric: name, type, help and
 * where its value lives, so a metric cannot be exported without its HELP
 * and TYPE lines. */
#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>

struct row {
	const char *name;
	const char *type; /* "gauge" or "counter" */
	const char *help;
	size_t offset;
};

#define ROW(field, type, help) \
	{ "rmpool_" #field, type, help, offsetof(struct rmp_srv_metrics, field) }

static const struct row rows[] = {
	ROW(pools, "gauge", "Pools that exist (ready or being created or destroyed)."),
	ROW(capacity_bytes, "gauge", "Usable bytes of all ready pools."),
	ROW(free_bytes, "gauge", "Free bytes of all ready pools, from their metadata counts."),
	ROW(donors, "gauge",
	    "Donor processes alive (spawned and not exited, or standalone and connected)."),
	ROW(donors_standalone, "gauge",
	    "Standalone donors (started on their own, no agent) connected, spare or in a pool."),
	ROW(donors_spare, "gauge", "Standalone donors in no pool: memory on offer."),
	ROW(clients, "gauge", "Authenticated consumer connections."),
	ROW(agents, "gauge", "Host agents registered."),
	ROW(leases, "gauge", "Leases held."),
	ROW(connections, "gauge", "Control connections open."),
	ROW(pools_recovering, "gauge",
	    "Pools re-adopted after a restart that wait for their donors to register again."),
	ROW(pools_lost, "gauge", "Pools that could not be re-adopted (rmpool status says why)."),
	ROW(donors_away, "gauge",
	    "Donors whose control connection is gone (or not back since a restart), within "
	    "their return timeout."),
	ROW(donors_lost, "gauge", "Donors of pools that died or did not come back in time."),
	ROW(generation, "gauge", "This coordinator's generation, raised at every start."),
	ROW(frames_rejected_total, "counter",
	    "Frames refused as malformed, truncated, oversized or unauthenticated."),
	ROW(auth_failures_total, "counter",
	    "Handshakes that failed (a wrong proof, a peer that hung up after the challenge, "
	    "a frame before authenticating) or timed out, and rdma_cm tokens whose MAC did not verify."),
	ROW(leases_expired_total, "counter", "Leases not renewed in time."),
	ROW(pools_created_total, "counter", "Pools provisioned."),
	ROW(pool_failures_total, "counter", "Pool creations that failed."),
	ROW(connections_total, "counter", "Control connections accepted."),
	ROW(pools_readopted_total, "counter", "Pools taken back after a restart."),
	ROW(donors_readopted_total, "counter",
	    "Donors taken back after a restart or a dropped control connection."),
	ROW(state_errors_total, "counter", "Writes to the state store that failed."),
};

size_t rmp_srv_metrics_format(const struct rmp_srv_metrics *m, char *buf, size_t cap)
{
	size_t used = 0;

	if (cap)
		buf[0] = '\0';
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		uint64_t v = *(const uint64_t *)((const char *)m + r->offset);
		int n = snprintf(used < cap ? buf + used : NULL, used < cap ? cap - used : 0,
				 "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", r->name, r->help,
				 r->name, r->type, r->name, v);
		if (n < 0)
			return used;
		used += (size_t)n;
	}
	return used;
}
