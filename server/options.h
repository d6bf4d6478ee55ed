/* options.h - rmpool-server's options: one table (common/config.h) drives
 * the config file, the flags, --help and validation.
 *
 * rmp_srv_options_load() applies defaults, then --config FILE, then the
 * flags, then the checks a table row cannot express (powers of two, the
 * minimum block below the segment size, buddy level limits), and reports
 * any refusal as one line naming the option, its value and what is
 * allowed. The secret is never an option value: it comes from the file
 * named by --secret-file or from RMPOOL_SECRET, so it never shows up in
 * `ps`, in --help or in a config dump.
 */
#ifndef RMP_SRV_OPTIONS_H
#define RMP_SRV_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

#define RMP_SRV_PATH_MAX 1023

struct rmp_srv_cfg {
	struct rmp_config_hostport listen; /* control protocol (TCP) */
	char secret_file[RMP_SRV_PATH_MAX + 1];
	char http_addr[RMP_CONFIG_HOST_MAX + 1];
	int64_t http_port; /* 0: no HTTP endpoint */
	char rdma_addr[RMP_CONFIG_HOST_MAX + 1]; /* "": the first RDMA device's */
	int64_t rdma_port;
	bool require_rdma; /* ready and healthy only with the rdma_cm listener bound */
	uint64_t segment_size;
	uint64_t min_block;
	uint64_t self_contribution;
	uint64_t lease_ms;
	uint64_t provision_ms;
	uint64_t terminate_ms;
	uint64_t handshake_ms;
	int64_t max_connections;
	char state_dir[RMP_SRV_PATH_MAX + 1]; /* the durable state (state.h) */
	uint64_t donor_return_ms; /* a donor away longer than this is lost */
	uint64_t reclaim_delay_ms; /* an expired lease is reclaimed this long after its cut */
	int log_level; /* index into the level names: off, error, warn, info, debug */
};

const struct rmp_config_spec *rmp_srv_options_spec(void);

/* 0, RMP_CONFIG_HELP (help printed to help_out), or a negative errno with
 * one line in err. */
int rmp_srv_options_load(struct rmp_srv_cfg *cfg, int argc, char **argv, FILE *help_out,
			 char *err, size_t errlen);

/* The cross-option checks alone (the table has done the rest). */
int rmp_srv_options_check(const struct rmp_srv_cfg *cfg, char *err, size_t errlen);

#endif /* RMP_SRV_OPTIONS_H */
