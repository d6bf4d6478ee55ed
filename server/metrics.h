/* metrics.h - the coordinator's counters and their Prometheus text
 * exposition (format 0.0.4). Pure: the HTTP glue (http.c) fills a
 * snapshot and serves the text.
 *
 * Counters only ever grow (names end in _total); gauges are computed
 * from the live state at each scrape.
 */
#ifndef RMP_SRV_METRICS_H
#define RMP_SRV_METRICS_H

#include <stddef.h>
#include <stdint.h>

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
};

/* Writes the exposition into buf (NUL-terminated). Returns its length,
 * or, when cap is too small, the length it needs (>= cap), like snprintf. */
size_t rmp_srv_metrics_format(const struct rmp_srv_metrics *m, char *buf, size_t cap);

#endif /* RMP_SRV_METRICS_H */
