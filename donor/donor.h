/* donor.h - rmpool-donor's two roles and the options they share.
 *
 * main.c parses one option table (config.h) into struct dn_cfg and runs
 * one of:
 *   dn_donor_run()      a donor process (donor.c): RLIMIT_AS, region,
 *                       registration, rdma_cm listener, hand-over, sleep
 *   dn_agent_run()      a host agent (agent.c): spawns and reaps donors
 *   dn_measure_footprint()  --measure-footprint (donor.c)
 * Each returns the process exit status: 0 done as asked (TERMINATE,
 * SIGTERM, SIGINT), 1 failed, 2 bad usage, DN_EXIT_ORPHANED a donor that
 * no coordinator accepted for --orphan-grace after it lost its own.
 */
#ifndef RMP_DONOR_DONOR_H
#define RMP_DONOR_DONOR_H

#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "config.h"

#define DN_SECRET_FILE_MAX 4096

/* A donor's exit status when it gave up on its coordinator (donor.c 5b):
 * not 0, so that an agent's log and an init system see that its memory
 * went unused rather than that someone asked it to go. */
#define DN_EXIT_ORPHANED 3

struct dn_cfg {
	bool agent;
	bool measure_footprint;
	bool no_coordinator;
	struct rmp_config_hostport coordinator;
	char secret[RMP_AUTH_SECRET_MAX + 1];
	char secret_file[DN_SECRET_FILE_MAX];
	uint64_t size;		/* donor: region bytes */
	uint64_t process_limit; /* RLIMIT_AS; 0: keep the current one */
	int64_t pool_id;
	int64_t donor_id;
	char rdma_addr[64];
	uint64_t budget;  /* agent: bytes this host may give */
	char host[256];	  /* agent: how the coordinator calls this host */
	uint64_t timeout_ms;	   /* every network wait */
	uint64_t term_grace_ms;	   /* agent: SIGTERM -> SIGKILL */
	uint64_t reconnect_max_ms; /* agent: backoff cap */
	uint64_t orphan_grace_ms;  /* donor: give up on coordinators; agent: pass on */
	int log_level;
};

/* The log levels in option order (RMP_OPT_ENUM choices). */
extern const char *const dn_log_levels[];

int dn_donor_run(const struct dn_cfg *cfg, const rmp_auth_key *key);
int dn_measure_footprint(const struct dn_cfg *cfg);
int dn_agent_run(const struct dn_cfg *cfg, const rmp_auth_key *key, const char *secret);

/* SIGHUP: the options read again (command line, --config), the log level
 * applied, the reload logged; nothing else changes (main.c). */
void dn_reload(void);

/* VmSize of this process in bytes (from /proc/self/status), or 0. */
uint64_t dn_vmsize(void);

#endif /* RMP_DONOR_DONOR_H */
