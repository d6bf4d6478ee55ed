/* main.c - rmpool-donor: one option table, the secret, then a role.
 *
 *   rmpool-donor --coordinator HOST:PORT --size BYTES [...]    a donor process
 *   rmpool-donor --agent --coordinator HOST:PORT --budget BYTES [...]
 *   rmpool-donor --measure-footprint                        (for the agent)
 *
 * The secret comes from --secret-file (preferred: a file only the operator
 * reads; common/secret.h reads it, and a file group or others may read
 * is used with a warning), --secret (visible in ps: for tests), or
 * $RMPOOL_SECRET, in that order. It is read into locked memory (auth.h)
 * and the copies here are wiped; the agent hands it to its donors through
 * their environment, never on their command line.
 *
 * SIGHUP (both roles) reads the command line and the --config file again
 * (dn_reload) and applies the log level, the one option that can change
 * while running; a file that does not load changes nothing. It is logged
 * and never ends the process.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "donor.h"
#include "log.h"
#include "secret.h"

const char *const dn_log_levels[] = {"error", "warn", "info", "debug", NULL};

#define MAX_U32 INT64_C(4294967295)

static const struct rmp_config_option options[] = {
	RMP_OPT_BOOL("agent", 'a', struct dn_cfg, agent, "false",
		     "run as the host agent: spawn and reap donor processes for the coordinator"),
	RMP_OPT_HOSTPORT("coordinator", 'C', struct dn_cfg, coordinator, NULL,
			 "the coordinator's control address (required)"),
	RMP_OPT_STRING("secret-file", 0, struct dn_cfg, secret_file, "", 0,
		       "file holding the shared secret (else --secret, else $RMPOOL_SECRET)"),
	RMP_OPT_STRING("secret", 0, struct dn_cfg, secret, "", 0,
		       "the shared secret itself (shows in ps: prefer --secret-file)"),
	RMP_OPT_SIZE("size", 's', struct dn_cfg, size, "0", 0, INT64_C(1) << 50,
		     "donor: bytes of memory to give (required for a donor)"),
	RMP_OPT_SIZE("process-limit", 'l', struct dn_cfg, process_limit, "0", 0,
		     INT64_C(1) << 56,
		     "address-space limit (RLIMIT_AS) of each donor process; 0: the current limit"),
	RMP_OPT_INT("pool-id", 0, struct dn_cfg, pool_id, "0", 0, MAX_U32,
		    "donor: pool this donor serves (0: standalone, the coordinator assigns)"),
	RMP_OPT_INT("donor-id", 0, struct dn_cfg, donor_id, "0", 0, MAX_U32,
		    "donor: id given by the coordinator (0: standalone)"),
	RMP_OPT_STRING("rdma-addr", 0, struct dn_cfg, rdma_addr, "", 0,
		       "address of this host's RDMA device to listen on (default: found)"),
	RMP_OPT_SIZE("budget", 'b', struct dn_cfg, budget, "0", 0, INT64_C(1) << 56,
		     "agent: bytes this host may give in all, donor footprints included"),
	RMP_OPT_STRING("host", 0, struct dn_cfg, host, "", 0,
		       "agent: this host's name for the coordinator (default: the RDMA address)"),
	RMP_OPT_DURATION("timeout", 0, struct dn_cfg, timeout_ms, "10s", 100, 600000,
			 "bound on every wait for the network (connect, handshake, replies)"),
	RMP_OPT_DURATION("term-grace", 0, struct dn_cfg, term_grace_ms, "5s", 100, 600000,
			 "agent: time a donor has to exit after SIGTERM before SIGKILL"),
	RMP_OPT_DURATION("reconnect-max", 0, struct dn_cfg, reconnect_max_ms, "30s", 1000,
			 3600000, "agent: longest pause between reconnection attempts"),
	RMP_OPT_DURATION("orphan-grace", 0, struct dn_cfg, orphan_grace_ms, "10m", 100,
			 INT64_C(7) * 24 * 3600 * 1000,
			 "donor: after losing its coordinator, how long it serves on and tries to "
			 "register again; then it frees its region and exits with status 3. "
			 "agent: given to the donors it starts"),
	RMP_OPT_ENUM("log-level", 0, struct dn_cfg, log_level, "info", dn_log_levels,
		     "log threshold"),
	RMP_OPT_BOOL("measure-footprint", 0, struct dn_cfg, measure_footprint, "false",
		     "print a donor's own VmSize (bytes) with its RDMA device open, and exit"),
	RMP_OPT_BOOL("no-coordinator", 0, struct dn_cfg, no_coordinator, "false",
		     "testing only: register and listen without a coordinator, print the region, "
		     "sleep until SIGTERM"),
};

static const struct rmp_config_spec spec = {
	.prog = "rmpool-donor",
	.summary = "Give memory to an rmpool coordinator over RDMA (donor process), or spawn\n"
		   "donor processes on this host when the coordinator asks (--agent).",
	.opts = options,
	.n_opts = sizeof(options) / sizeof(options[0]),
};

static int saved_argc;
static char **saved_argv;

void dn_reload(void)
{
	static struct dn_cfg fresh; /* static: large, and it may hold a secret */
	char err[512];

	int was = rmp_log_get_level();
	int rc = rmp_config_load(&spec, &fresh, saved_argc, saved_argv, NULL, err, sizeof(err));
	explicit_bzero(fresh.secret, sizeof(fresh.secret));
	if (rc) {
		rmp_log_error("SIGHUP: the configuration does not load, nothing changed: %s", err);
		return;
	}
	int now = fresh.log_level + RMP_LOG_ERROR;
	rmp_log_set_level((enum rmp_log_level)now);
	/* At warning, so that it shows whatever the new level is. */
	rmp_log_warn("SIGHUP: configuration reloaded; log-level %s -> %s (the other options "
		     "take effect at the next start)",
		     rmp_log_level_name((enum rmp_log_level)was),
		     rmp_log_level_name((enum rmp_log_level)now));
}

/* --secret-file into buf. The exit status on failure: 2 for a secret
 * that is not one (too short, too long: what rmp_auth_key_create says of
 * a bad --secret too), 1 when the file cannot be read. */
static int read_secret(const char *path, char *buf, size_t cap)
{
	char err[512];
	bool loose = false;

	int rc = rmp_secret_read_file(path, buf, cap, &loose, err, sizeof(err));
	if (rc) {
		rmp_log_error("%s", err);
		return rc == -EINVAL ? 2 : 1;
	}
	if (loose)
		rmp_log_warn("--secret-file \"%s\" is readable by group or others; chmod 600 it",
			     path);
	return 0;
}

int main(int argc, char **argv)
{
	static struct dn_cfg cfg; /* static: it holds a secret; wiped below */
	char err[512];

	rmp_log_open("rmpool-donor", RMP_LOG_INFO);
	int rc = rmp_config_load(&spec, &cfg, argc, argv, stdout, err, sizeof(err));
	if (rc == RMP_CONFIG_HELP)
		return 0;
	if (rc) {
		fprintf(stderr, "rmpool-donor: %s\n", err);
		return 2;
	}
	rmp_log_set_level((enum rmp_log_level)(cfg.log_level + RMP_LOG_ERROR));
	saved_argc = argc;
	saved_argv = argv;

	if (cfg.measure_footprint)
		return dn_measure_footprint(&cfg);
	if (!cfg.no_coordinator && !cfg.coordinator.host[0]) {
		fprintf(stderr, "rmpool-donor: --coordinator HOST:PORT is required (see --help)\n");
		return 2;
	}
	if (cfg.agent && cfg.budget == 0) {
		fprintf(stderr, "rmpool-donor: --agent needs --budget BYTES (see --help)\n");
		return 2;
	}
	if (!cfg.agent && cfg.size == 0) {
		fprintf(stderr, "rmpool-donor: a donor needs --size BYTES (see --help)\n");
		return 2;
	}
	if (!cfg.agent && (cfg.pool_id == 0) != (cfg.donor_id == 0)) {
		fprintf(stderr, "rmpool-donor: --pool-id and --donor-id go together "
				"(both 0: standalone), got %lld and %lld\n",
			(long long)cfg.pool_id, (long long)cfg.donor_id);
		return 2;
	}

	static char secret[RMP_AUTH_SECRET_MAX + 2];
	const char *src = NULL; /* NULL: rmp_auth_key_create reads the env */
	if (cfg.secret_file[0]) {
		rc = read_secret(cfg.secret_file, secret, sizeof(secret));
		if (rc)
			return rc;
		src = secret;
	} else if (cfg.secret[0]) {
		src = cfg.secret;
	}
	/* Even without a coordinator a donor needs the secret: it checks
	 * every consumer's token with it. */
	rmp_auth_key *key = NULL;
	rc = rmp_auth_key_create(src, &key, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "rmpool-donor: %s\n", err);
		return 2;
	}
	/* The agent passes the secret on to its donors' environment. */
	const char *pass_on = src ? src : getenv(RMP_AUTH_SECRET_ENV);

	if (cfg.agent)
		rc = dn_agent_run(&cfg, key, pass_on);
	else
		rc = dn_donor_run(&cfg, key);
	explicit_bzero(secret, sizeof(secret));
	explicit_bzero(cfg.secret, sizeof(cfg.secret));
	rmp_auth_key_destroy(key);
	return rc;
}
