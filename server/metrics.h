/* metrics.h - the coordinator's counters and their Prometheus text
 * exposition (format 0.0.4). Pure: the HTTP glue (http.c) fills a
 * snapshot and serves the text.
 *
 * Counters only ever grow (names end in _total); gauges are computed
 * from the live state at each scrape.
 *
 * Besides the totals: rmpool_build_info{version="..."} 1, and labelled
 * series per pool (pool="name",id="N"), per host (host="...") and per
 * donor (donor="N",pool="name",host="..."). The hosts' and donors'
 * figures are the ones the agents and donors report to the coordinator
 * (AGENT_REGISTER: budget, process limit, donor footprint; DONOR_REGISTER:
 * region; PROGRESS: their life), relayed here: they expose no endpoint
 * of their own. Label values are escaped as the text format asks (\\,
 * \", \n).
 */
#ifndef RMP_SRV_METRICS_H
#define RMP_SRV_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest label value printed (longer ones are cut): a host name. */
#define RMP_SRV_METRICS_LABEL_MAX 255

/* One pool's series. */
struct rmp_srv_metrics_pool {
	const char *name;
	uint32_t id;
	const char *state; /* "creating", "ready", "destroying", "recovering", "lost" */
	uint64_t capacity_bytes, free_bytes, lost_bytes;
	uint64_t donors, donors_away, donors_lost, leases;
};

/* One host's: its agent's figures, and its standalone donors'. */
struct rmp_srv_metrics_host {
	const char *host;
	bool agent; /* an agent is registered for it (else standalone donors only) */
	uint64_t budget_bytes, used_bytes, donors;
	uint64_t process_limit_bytes, donor_footprint_bytes; /* the agent's; 0 without */
};

/* One donor's. */
struct rmp_srv_metrics_donor {
	uint32_t id;
	const char *pool; /* "" when in no pool (a spare standalone donor) */
	const char *host;
	const char *state; /* "spawning", "spawned", "registered", "lost", "terminating", "away" */
	uint64_t region_bytes;
};

struct rmp_srv_metrics {
	/* gauges */
	uint64_t pools;
	uint64_t capacity_bytes;
	uint64_t free_bytes;
	uint64_t donors;
	uint64_t donors_standalone;
	uint64_t donors_spare;
	uint64_t clients;
	uint64_t agents;
	uint64_t leases;
	uint64_t connections;
	uint64_t pools_recovering;
	uint64_t pools_lost;
	uint64_t pools_degraded;
	uint64_t donors_away;
	uint64_t donors_lost;
	uint64_t generation;
	/* counters */
	uint64_t frames_rejected_total;
	uint64_t auth_failures_total;
	uint64_t leases_expired_total;
	uint64_t pools_created_total;
	uint64_t pool_failures_total;
	uint64_t connections_total;
	uint64_t pools_readopted_total;
	uint64_t donors_readopted_total;
	uint64_t state_errors_total;
	uint64_t donors_retired_total;
	uint64_t segtab_pushes_total;
	uint64_t retire_passes_total;
	uint64_t retire_failures_total;
	uint64_t retired_bytes_total;
	uint64_t clients_cut_total;
	uint64_t reclaims_total;
	uint64_t reclaimed_bytes_total;
	uint64_t reclaim_failures_total;
	uint64_t abandoned_slots_reset_total;
	uint64_t abandoned_bytes_freed_total;
	uint64_t reclaim_holds_total;
	/* labelled series (n_* 0: none) */
	const char *version; /* rmpool_build_info; NULL: not printed */
	const struct rmp_srv_metrics_pool *pool;
	size_t n_pools;
	const struct rmp_srv_metrics_host *host;
	size_t n_hosts;
	const struct rmp_srv_metrics_donor *donor;
	size_t n_donors;
};

/* Writes the exposition into buf (NUL-terminated). Returns its length,
 * or, when cap is too small, the length it needs (>= cap), like snprintf. */
size_t rmp_srv_metrics_format(const struct rmp_srv_metrics *m, char *buf, size_t cap);

#endif /* RMP_SRV_METRICS_H */
