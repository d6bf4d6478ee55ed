/* options.c - see options.h. The defaults and why:
 *   listen 0.0.0.0:7400   agents and donors on other hosts must reach the
 *                         coordinator; every connection authenticates.
 *   http 127.0.0.1:7401   /metrics is not authenticated: loopback only
 *                         unless the operator opens it.
 *   rdma-port 7402        next to the others, easy to firewall together.
 *   segment-size 4M       pools of tens of MiB still span several segments
 *                         (and donors); a 1 TiB pool needs 2^18 segments at
 *                         this size, past the wire limit, so big clusters
 *                         raise it (32M fits 1 TiB in 32768 segments).
 *   min-block 4K          a page: the smallest block worth an RDMA op.
 *   lease-timeout 10s     a dead consumer's memory returns within seconds,
 *                         while a client renewing every ttl/3 survives a
 *                         couple of lost renewals.
 *   provision-timeout 60s forking donors and registering their memory on
 *                         Soft-RoCE in a slow VM takes seconds, not minutes.
 *   state-dir /var/lib/rmpool  where a system service keeps its state
 *                         (systemd's StateDirectory=rmpool); tests and
 *                         unprivileged runs give their own.
 *   reclaim-delay 0s      an expired consumer's blocks come back as soon
 *                         as it is cut off; a delay keeps them for a
 *                         post-mortem look (and for tests that inspect a
 *                         cut consumer's blocks).
 *   donor-return-timeout 30s  donors reconnect with a backoff that tops out
 *                         at 2 s: 30 s rides out a slow restart many times
 *                         over, while a pool whose donor really died is
 *                         reported within half a minute.
 */
#include "options.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "buddy.h"

static const char *const log_levels[] = { "off", "error", "warn", "info", "debug", NULL };

#define KIB INT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define TIB (GIB * 1024)

static const struct rmp_config_option opts[] = {
	RMP_OPT_HOSTPORT("listen", 'l', struct rmp_srv_cfg, listen, "0.0.0.0:7400",
			 "control-protocol address (agents, donors, consumers)"),
	RMP_OPT_STRING("secret-file", 's', struct rmp_srv_cfg, secret_file, "", 0,
		       "file holding the shared secret (else $RMPOOL_SECRET)"),
	RMP_OPT_STRING("http-addr", 0, struct rmp_srv_cfg, http_addr, "127.0.0.1", 1,
		       "address of the HTTP endpoint (/metrics, /healthz)"),
	RMP_OPT_INT("http-port", 0, struct rmp_srv_cfg, http_port, "7401", 0, 65535,
		    "port of the HTTP endpoint; 0 turns it off"),
	RMP_OPT_STRING("rdma-addr", 0, struct rmp_srv_cfg, rdma_addr, "", 0,
		       "address of the rdma_cm listener (\"\": the first RDMA device's)"),
	RMP_OPT_INT("rdma-port", 0, struct rmp_srv_cfg, rdma_port, "7402", 0, 65535,
		    "port of the rdma_cm listener; 0 picks a free one"),
	RMP_OPT_BOOL("require-rdma", 0, struct rmp_srv_cfg, require_rdma, "true",
		     "report ready (systemd) and healthy (/healthz) only once the rdma_cm listener "
		     "is bound; false: also without it (control, status and metrics only)"),
	RMP_OPT_SIZE("segment-size", 0, struct rmp_srv_cfg, segment_size, "4M", 4 * KIB, TIB,
		     "segment size, a power of two: donor regions are whole segments"),
	RMP_OPT_SIZE("min-block", 0, struct rmp_srv_cfg, min_block, "4K", 64, GIB,
		     "default smallest block, a power of two <= segment-size"),
	RMP_OPT_SIZE("self-contribution", 0, struct rmp_srv_cfg, self_contribution, "0", 0,
		     TIB, "bytes of each pool the coordinator serves from its own memory"),
	RMP_OPT_DURATION("lease-timeout", 0, struct rmp_srv_cfg, lease_ms, "10s", 1000,
			 3600000, "a lease not renewed within this expires"),
	RMP_OPT_DURATION("provision-timeout", 0, struct rmp_srv_cfg, provision_ms, "60s", 1000,
			 3600000, "how long a pool creation waits for its donors"),
	RMP_OPT_DURATION("terminate-timeout", 0, struct rmp_srv_cfg, terminate_ms, "10s", 100,
			 600000, "how long a pool destruction waits for donors to exit"),
	RMP_OPT_DURATION("handshake-timeout", 0, struct rmp_srv_cfg, handshake_ms, "5s", 100,
			 60000, "a peer must authenticate within this"),
	RMP_OPT_INT("max-connections", 0, struct rmp_srv_cfg, max_connections, "1024", 1,
		    65536, "control connections held at once; more are refused"),
	RMP_OPT_STRING("state-dir", 0, struct rmp_srv_cfg, state_dir, "/var/lib/rmpool", 1,
		       "directory of the durable state (pools, donors, leases, ids); one "
		       "coordinator per directory"),
	RMP_OPT_DURATION("donor-return-timeout", 0, struct rmp_srv_cfg, donor_return_ms, "30s",
			 100, 3600000,
			 "how long a donor may stay away (a restart, a dropped connection) "
			 "before its segments are marked lost"),
	RMP_OPT_DURATION("reclaim-delay", 0, struct rmp_srv_cfg, reclaim_delay_ms, "0s", 0,
			 3600000,
			 "how long after an expired consumer is cut off its blocks are reclaimed"),
	RMP_OPT_ENUM("log-level", 'v', struct rmp_srv_cfg, log_level, "info", log_levels,
		     "log threshold"),
};

static const struct rmp_config_spec spec = {
	.prog = "rmpool-server",
	.summary = "The rmpool coordinator: pools donor memory over RDMA and serves the "
		   "allocator metadata.",
	.opts = opts,
	.n_opts = sizeof(opts) / sizeof(opts[0]),
};

const struct rmp_config_spec *rmp_srv_options_spec(void)
{
	return &spec;
}

static bool is_pow2(uint64_t x)
{
	return x && (x & (x - 1)) == 0;
}

int rmp_srv_options_check(const struct rmp_srv_cfg *cfg, char *err, size_t errlen)
{
	char a[32], b[32];

	rmp_config_format_size(cfg->segment_size, a, sizeof(a));
	if (!is_pow2(cfg->segment_size)) {
		snprintf(err, errlen, "--segment-size: \"%s\" is not a power of two", a);
		return -EINVAL;
	}
	rmp_config_format_size(cfg->min_block, b, sizeof(b));
	if (!is_pow2(cfg->min_block)) {
		snprintf(err, errlen, "--min-block: \"%s\" is not a power of two", b);
		return -EINVAL;
	}
	if (cfg->min_block > cfg->segment_size) {
		snprintf(err, errlen,
			 "--min-block: \"%s\" is larger than --segment-size \"%s\"; allowed "
			 "[64, segment-size]",
			 b, a);
		return -EINVAL;
	}
	/* One segment must be a heap the engine can describe. */
	unsigned s = (unsigned)__builtin_ctzll(cfg->segment_size);
	unsigned m = (unsigned)__builtin_ctzll(cfg->min_block);
	if (s - m > RMP_BUDDY_MAX_LEVELS - 1) {
		snprintf(err, errlen,
			 "--min-block: \"%s\" is too small for --segment-size \"%s\": one segment "
			 "would need %u buddy levels, at most %u",
			 b, a, s - m + 1, RMP_BUDDY_MAX_LEVELS);
		return -EINVAL;
	}
	return 0;
}

int rmp_srv_options_load(struct rmp_srv_cfg *cfg, int argc, char **argv, FILE *help_out,
			 char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	int rc = rmp_config_load(&spec, cfg, argc, argv, help_out, err, errlen);
	if (rc)
		return rc;
	return rmp_srv_options_check(cfg, err, errlen);
}
