/* metrics.c - see metrics.h. One row per metric: name, type, help and
 * where its value lives, so a metric cannot be exported without its HELP
 * and TYPE lines. */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
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
	ROW(pools_degraded, "gauge",
	    "Ready pools with lost donors: their segments out of service, capacity lower."),
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
	ROW(donors_retired_total, "counter",
	    "Donors taken out of service in their pool's segment table (a new version)."),
	ROW(segtab_pushes_total, "counter", "Segment tables pushed to consumers (SEGTAB_PUSH)."),
	ROW(retire_passes_total, "counter",
	    "Passes of the coordinator's loopback engine that retired lost donors' segments."),
	ROW(retire_failures_total, "counter",
	    "Such passes that failed (the log says why; later passes try again)."),
	ROW(retired_bytes_total, "counter",
	    "Bytes of lost donors' segments made RESERVED in the allocator metadata."),
	ROW(clients_cut_total, "counter",
	    "Expired consumers cut off at the metadata listener and every donor of the pool "
	    "(cut complete)."),
	ROW(reclaims_total, "counter",
	    "Expired leases whose blocks the coordinator's resolver gave back (reclaim done)."),
	ROW(reclaimed_bytes_total, "counter",
	    "Bytes those reclaims gave back (garbage blocks freed, holes released)."),
	ROW(reclaim_failures_total, "counter",
	    "Reclaim attempts that failed (the log says why; they are tried again)."),
	ROW(abandoned_slots_reset_total, "counter",
	    "Owner-record slots consumers abandoned mid-operation (an RDMA error), reset by the "
	    "coordinator's resolver."),
	ROW(abandoned_bytes_freed_total, "counter",
	    "Bytes those resets freed (what the abandoned operations left)."),
	ROW(reclaim_holds_total, "counter",
	    "POOL_HOLD rounds: a reclaim or scan whose snapshot caught an operation in flight asked "
	    "the pool's consumers for a quiet moment."),
};

/* The text being built: like snprintf, it counts what does not fit. */
struct out {
	char *buf;
	size_t cap, used;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(o->used < o->cap ? o->buf + o->used : NULL,
			  o->used < o->cap ? o->cap - o->used : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->used += (size_t)n;
}

/* A label value in the text format: \\, \" and \n escaped. */
static const char *esc(const char *in, char *buf, size_t cap)
{
	size_t j = 0;

	for (; in && *in && j + 3 < cap; in++) {
		if (*in == '\\' || *in == '"' || *in == '\n') {
			buf[j++] = '\\';
			buf[j++] = *in == '\n' ? 'n' : *in;
		} else {
			buf[j++] = *in;
		}
	}
	buf[j] = '\0';
	return buf;
}

static void family(struct out *o, const char *name, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

#define LABEL_MAX (2 * RMP_SRV_METRICS_LABEL_MAX + 1)

/* The per-pool series: one family at a time, one sample per pool. */
static void pools(struct out *o, const struct rmp_srv_metrics *m)
{
	static const struct {
		const char *name, *help;
		size_t offset;
	} series[] = {
#define PROW(f, h) { "rmpool_pool_" #f, h, offsetof(struct rmp_srv_metrics_pool, f) }
		PROW(capacity_bytes, "Usable bytes of the pool."),
		PROW(free_bytes, "Free bytes of the pool, from its metadata counts (0 unless ready)."),
		PROW(lost_bytes, "Bytes of the pool's space on lost donors (unbacked)."),
		PROW(donors, "Donors of the pool (the coordinator's own share counts as one)."),
		PROW(donors_away, "Donors of the pool whose connection is gone, within their return timeout."),
		PROW(donors_lost, "Donors of the pool that died or did not come back in time."),
		PROW(leases, "Leases held on the pool (attached consumers)."),
#undef PROW
	};
	char name[LABEL_MAX];

	if (!m->n_pools)
		return;
	family(o, "rmpool_pool_info", "Each pool: 1, with its state as a label.");
	for (size_t i = 0; i < m->n_pools; i++)
		put(o, "rmpool_pool_info{pool=\"%s\",id=\"%" PRIu32 "\",state=\"%s\"} 1\n",
		    esc(m->pool[i].name, name, sizeof(name)), m->pool[i].id, m->pool[i].state);
	for (size_t r = 0; r < sizeof(series) / sizeof(series[0]); r++) {
		family(o, series[r].name, series[r].help);
		for (size_t i = 0; i < m->n_pools; i++)
			put(o, "%s{pool=\"%s\",id=\"%" PRIu32 "\"} %" PRIu64 "\n", series[r].name,
			    esc(m->pool[i].name, name, sizeof(name)), m->pool[i].id,
			    *(const uint64_t *)((const char *)&m->pool[i] + series[r].offset));
	}
}

static void hosts(struct out *o, const struct rmp_srv_metrics *m)
{
	static const struct {
		const char *name, *help;
		size_t offset;
	} series[] = {
#define HROW(f, h) { "rmpool_host_" #f, h, offsetof(struct rmp_srv_metrics_host, f) }
		HROW(budget_bytes, "Bytes the host may give: its agent's --budget plus its standalone donors' offers."),
		HROW(used_bytes, "Bytes of the host's budget charged to donors that have not exited."),
		HROW(donors, "Donor processes on the host."),
		HROW(process_limit_bytes, "Its agent's --process-limit (RLIMIT_AS of each donor); 0 without an agent."),
		HROW(donor_footprint_bytes, "A donor's own footprint as its agent measured it; 0 without an agent."),
#undef HROW
	};
	char host[LABEL_MAX];

	if (!m->n_hosts)
		return;
	family(o, "rmpool_host_agent", "1 when an agent is registered for the host, 0 when it has standalone donors only.");
	for (size_t i = 0; i < m->n_hosts; i++)
		put(o, "rmpool_host_agent{host=\"%s\"} %d\n", esc(m->host[i].host, host, sizeof(host)),
		    m->host[i].agent ? 1 : 0);
	for (size_t r = 0; r < sizeof(series) / sizeof(series[0]); r++) {
		family(o, series[r].name, series[r].help);
		for (size_t i = 0; i < m->n_hosts; i++)
			put(o, "%s{host=\"%s\"} %" PRIu64 "\n", series[r].name,
			    esc(m->host[i].host, host, sizeof(host)),
			    *(const uint64_t *)((const char *)&m->host[i] + series[r].offset));
	}
}

static void donors(struct out *o, const struct rmp_srv_metrics *m)
{
	char pool[LABEL_MAX], host[LABEL_MAX];

	if (!m->n_donors)
		return;
	family(o, "rmpool_donor_region_bytes",
	       "Each donor's region as it registered it (0 before), with its pool, host and state.");
	for (size_t i = 0; i < m->n_donors; i++) {
		const struct rmp_srv_metrics_donor *d = &m->donor[i];
		put(o,
		    "rmpool_donor_region_bytes{donor=\"%" PRIu32
		    "\",pool=\"%s\",host=\"%s\",state=\"%s\"} %" PRIu64 "\n",
		    d->id, esc(d->pool, pool, sizeof(pool)), esc(d->host, host, sizeof(host)), d->state,
		    d->region_bytes);
	}
}

size_t rmp_srv_metrics_format(const struct rmp_srv_metrics *m, char *buf, size_t cap)
{
	struct out o = { .buf = buf, .cap = cap };
	char version[LABEL_MAX];

	if (cap)
		buf[0] = '\0';
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		uint64_t v = *(const uint64_t *)((const char *)m + r->offset);
		put(&o, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", r->name, r->help, r->name,
		    r->type, r->name, v);
	}
	if (m->version) {
		family(&o, "rmpool_build_info", "1, with this rmpool-server's version as a label.");
		put(&o, "rmpool_build_info{version=\"%s\"} 1\n", esc(m->version, version, sizeof(version)));
	}
	pools(&o, m);
	hosts(&o, m);
	donors(&o, m);
	return o.used;
}
