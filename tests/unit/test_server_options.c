/* test_server_options.c - server/options.c: the defaults pass their own
 * checks, and the checks the table cannot express (powers of two, the
 * minimum block against the segment size) name the option and value.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "options.h"

static int load(struct rmp_srv_cfg *cfg, char *err, size_t errlen, int argc, char **argv)
{
	return rmp_srv_options_load(cfg, argc, argv, NULL, err, errlen);
}

Test(server_options, defaults)
{
	struct rmp_srv_cfg cfg;
	char err[256] = "";
	char *argv[] = { "rmpool-server", NULL };

	cr_assert_eq(load(&cfg, err, sizeof(err), 1, argv), 0, "%s", err);
	cr_assert_str_eq(cfg.listen.host, "0.0.0.0");
	cr_assert_eq(cfg.listen.port, 7400);
	cr_assert_str_eq(cfg.http_addr, "127.0.0.1");
	cr_assert_eq(cfg.http_port, 7401);
	cr_assert_eq(cfg.segment_size, 4u << 20);
	cr_assert_eq(cfg.min_block, 4096);
	cr_assert_eq(cfg.lease_ms, 10000);
	cr_assert_eq(cfg.self_contribution, 0);
	cr_assert_str_eq(cfg.rdma_addr, "");
	cr_assert_str_eq(cfg.state_dir, "/var/lib/rmpool");
	cr_assert_eq(cfg.donor_return_ms, 30000);
}

Test(server_options, cross_checks)
{
	struct rmp_srv_cfg cfg;
	char err[256] = "";
	char *pow2[] = { "rmpool-server", "--segment-size", "6M", NULL };
	char *minb[] = { "rmpool-server", "--min-block", "3000", NULL };
	char *order[] = { "rmpool-server", "--segment-size", "64K", "--min-block", "1M", NULL };
	char *ok[] = { "rmpool-server", "--segment-size", "32M", "--min-block", "64K",
		       "--self-contribution", "128M", NULL };

	cr_assert_eq(load(&cfg, err, sizeof(err), 3, pow2), -EINVAL);
	cr_assert(strstr(err, "--segment-size") && strstr(err, "6M"), "%s", err);
	cr_assert_eq(load(&cfg, err, sizeof(err), 3, minb), -EINVAL);
	cr_assert(strstr(err, "--min-block"), "%s", err);
	cr_assert_eq(load(&cfg, err, sizeof(err), 5, order), -EINVAL);
	cr_assert(strstr(err, "larger than --segment-size"), "%s", err);
	cr_assert_eq(load(&cfg, err, sizeof(err), 7, ok), 0, "%s", err);
	cr_assert_eq(cfg.self_contribution, 128u << 20);
}

Test(server_options, range_errors_name_the_option)
{
	struct rmp_srv_cfg cfg;
	char err[256] = "";
	char *lease[] = { "rmpool-server", "--lease-timeout", "2h", NULL };

	cr_assert_eq(load(&cfg, err, sizeof(err), 3, lease), -EINVAL);
	cr_assert(strstr(err, "lease-timeout") && strstr(err, "2h"), "%s", err);
}
