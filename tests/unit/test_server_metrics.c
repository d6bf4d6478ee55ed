/* test_server_metrics.c - server/metrics.c: every metric has HELP and
 * TYPE lines before its sample, counters end in _total, values print
 * in full, a short buffer reports the size it needs, build info and the
 * per-pool, per-host and per-donor series carry escaped labels.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static const char *const required[] = {
	"rmpool_pools",
	"rmpool_capacity_bytes",
	"rmpool_free_bytes",
	"rmpool_donors",
	"rmpool_clients",
	"rmpool_frames_rejected_total",
	"rmpool_auth_failures_total",
	"rmpool_leases_expired_total",
};

Test(server_metrics, help_type_sample)
{
	struct rmp_srv_metrics m = { .pools = 2,
				     .capacity_bytes = UINT64_C(1) << 40,
				     .free_bytes = 12345,
				     .frames_rejected_total = 3,
				     .auth_failures_total = 4,
				     .leases_expired_total = UINT64_MAX };
	char buf[8192];

	size_t len = rmp_srv_metrics_format(&m, buf, sizeof(buf));
	cr_assert_lt(len, sizeof(buf));
	cr_assert_eq(strlen(buf), len);
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		char help[96], type[128], *h, *t, *s;
		snprintf(help, sizeof(help), "# HELP %s ", required[i]);
		const char *kind = strstr(required[i], "_total") ? "counter" : "gauge";
		snprintf(type, sizeof(type), "# TYPE %s %s\n", required[i], kind);
		h = strstr(buf, help);
		t = strstr(buf, type);
		cr_assert(h && t, "%s lacks HELP or TYPE %s", required[i], kind);
		char sample[96];
		snprintf(sample, sizeof(sample), "\n%s ", required[i]);
		s = strstr(buf, sample);
		cr_assert(s && h < t && t < s, "%s: HELP, TYPE, sample out of order", required[i]);
	}
	cr_assert(strstr(buf, "\nrmpool_capacity_bytes 1099511627776\n"));
	cr_assert(strstr(buf, "\nrmpool_leases_expired_total 18446744073709551615\n"));
	cr_assert(strstr(buf, "\nrmpool_pools 2\n"));
	cr_assert_eq(buf[len - 1], '\n');
}

Test(server_metrics, short_buffer_reports_size)
{
	struct rmp_srv_metrics m = { 0 };
	char small[64], *big;

	size_t need = rmp_srv_metrics_format(&m, small, sizeof(small));
	cr_assert_geq(need, sizeof(small));
	cr_assert_eq(strlen(small), sizeof(small) - 1);
	big = malloc(need + 1);
	cr_assert_eq(rmp_srv_metrics_format(&m, big, need + 1), need);
	cr_assert_eq(strlen(big), need);
	cr_assert_eq(rmp_srv_metrics_format(&m, NULL, 0), need);
	free(big);
}

Test(server_metrics, build_info_and_labelled_series)
{
	const struct rmp_srv_metrics_pool pools[] = {
		{ .name = "big", .id = 3, .state = "ready", .capacity_bytes = 1024, .free_bytes = 512,
		  .donors = 2, .leases = 1 },
		{ .name = "we\"ird\\name", .id = 4, .state = "lost", .lost_bytes = 7 },
	};
	const struct rmp_srv_metrics_host hosts[] = {
		{ .host = "10.0.0.2", .agent = true, .budget_bytes = 4096, .used_bytes = 1024,
		  .donors = 2, .process_limit_bytes = 2048, .donor_footprint_bytes = 64 },
		{ .host = "10.0.0.3", .budget_bytes = 8192, .donors = 1 },
	};
	const struct rmp_srv_metrics_donor donors[] = {
		{ .id = 9, .pool = "big", .host = "10.0.0.2", .state = "registered", .region_bytes = 512 },
		{ .id = 10, .pool = "", .host = "10.0.0.3", .state = "registered", .region_bytes = 8192 },
	};
	struct rmp_srv_metrics m = { .version = "1.2.3", .pool = pools, .n_pools = 2, .host = hosts,
				     .n_hosts = 2, .donor = donors, .n_donors = 2 };
	char buf[16384];

	size_t len = rmp_srv_metrics_format(&m, buf, sizeof(buf));
	cr_assert_lt(len, sizeof(buf));
	const char *want[] = {
		"# TYPE rmpool_build_info gauge\nrmpool_build_info{version=\"1.2.3\"} 1\n",
		"rmpool_pool_info{pool=\"big\",id=\"3\",state=\"ready\"} 1\n",
		"rmpool_pool_info{pool=\"we\\\"ird\\\\name\",id=\"4\",state=\"lost\"} 1\n",
		"# TYPE rmpool_pool_free_bytes gauge\nrmpool_pool_free_bytes{pool=\"big\",id=\"3\"} 512\n",
		"rmpool_pool_lost_bytes{pool=\"we\\\"ird\\\\name\",id=\"4\"} 7\n",
		"rmpool_pool_leases{pool=\"big\",id=\"3\"} 1\n",
		"rmpool_host_agent{host=\"10.0.0.2\"} 1\nrmpool_host_agent{host=\"10.0.0.3\"} 0\n",
		"rmpool_host_budget_bytes{host=\"10.0.0.3\"} 8192\n",
		"rmpool_host_process_limit_bytes{host=\"10.0.0.2\"} 2048\n",
		"rmpool_host_donor_footprint_bytes{host=\"10.0.0.2\"} 64\n",
		"rmpool_donor_region_bytes{donor=\"9\",pool=\"big\",host=\"10.0.0.2\",state=\"registered\"} 512\n",
		"rmpool_donor_region_bytes{donor=\"10\",pool=\"\",host=\"10.0.0.3\",state=\"registered\"} 8192\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert(strstr(buf, want[i]), "missing:\n%s", want[i]);
	/* Each family's HELP and TYPE once, before its samples. */
	const char *t = strstr(buf, "# TYPE rmpool_pool_capacity_bytes gauge\n");
	cr_assert(t && !strstr(t + 1, "# TYPE rmpool_pool_capacity_bytes"));
	cr_assert(strstr(buf, "# HELP rmpool_pool_capacity_bytes ") < t);
	/* Without series (no pools, hosts, donors, version): the totals alone. */
	struct rmp_srv_metrics bare = { 0 };
	rmp_srv_metrics_format(&bare, buf, sizeof(buf));
	cr_assert(!strstr(buf, "rmpool_build_info") && !strstr(buf, "rmpool_pool_info") &&
		  !strstr(buf, "rmpool_pool_capacity_bytes") && !strstr(buf, "rmpool_host_") &&
		  !strstr(buf, "rmpool_donor_region_bytes"));
}
