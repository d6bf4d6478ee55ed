/* test_server_metrics.c - server/metrics.c: every metric has HELP and
 * TYPE lines before its sample, counters end in _total, values print
 * in full, and a short buffer reports the size it needs.
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
