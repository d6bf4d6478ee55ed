/* adopt.h - a restarted host agent finds the donors its predecessor
 * started, so that it counts them against its budget and can terminate
 * them (agent.c).
 *
 * Donors outlive their agent (they run in sessions of their own), so
 * after a restart this host may run donors nobody here knows. They are
 * found on /proc, not asked of the coordinator: the agent must count
 * them whether or not a coordinator is up (a restart of both, or of the
 * agent during a coordinator outage), a donor the coordinator has
 * forgotten (one of a pool create that was cut short) still holds this
 * host's memory until its orphan grace ends, and terminating one needs
 * its pid anyway. A process is a donor of ours when
 *   - its /proc/PID/exe is our own executable (also when the file was
 *     replaced since: the link then reads "PATH (deleted)"),
 *   - it runs as our effective uid (we could not signal it otherwise),
 *   - its argv is a pool donor's: --pool-id and --donor-id both nonzero
 *     (not a standalone donor, which no agent owns; not an agent; not a
 *     --measure-footprint probe), --size, and --coordinator naming our
 *     coordinator (the donors of another coordinator's agent on the same
 *     host are not ours).
 * Its pidfd (pidfd_open, Linux >= 5.3) is opened before the checks and
 * kept: a live process keeps its pid, so the checks cannot have read
 * another process that reused it, and every later signal goes through
 * the pidfd (pidfd_send_signal) to exactly that process.
 */
#ifndef RMP_DONOR_ADOPT_H
#define RMP_DONOR_ADOPT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

/* What a donor's command line says about it. */
struct dn_adopt_args {
	uint32_t pool_id;
	uint32_t donor_id;
	uint64_t size;
	struct rmp_config_hostport coordinator;
};

/* Parses argv as /proc/PID/cmdline holds it: len bytes of NUL-terminated
 * strings (the last NUL may be missing). Flags as `--name VALUE` or
 * `--name=VALUE`; arguments it does not know are skipped. 0 and *out for
 * a pool donor; -ENOENT for any other process (an agent, a standalone
 * donor, a footprint probe, not rmpool-donor at all); -EINVAL when a
 * flag it reads has a bad value. Pure. */
int dn_adopt_parse_cmdline(const char *buf, size_t len, struct dn_adopt_args *out);

/* Called for each donor found; takes over pidfd. Return 0 to go on, or
 * a negative errno to stop the scan with it. */
typedef int dn_adopt_fn(void *arg, pid_t pid, int pidfd, const struct dn_adopt_args *a);

/* Scans /proc for donors of ours (see the top): exe is our executable's
 * path, coord our --coordinator. Skips our own pid. The number found,
 * or a negative errno (no /proc, or what fn returned). */
int dn_adopt_scan(const char *exe, const struct rmp_config_hostport *coord, dn_adopt_fn *fn,
		  void *arg);

#endif /* RMP_DONOR_ADOPT_H */
