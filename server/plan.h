/* plan.h - a pool's creation, decided before anything runs: the first of
 * the three steps of pool creation (plan, metadata, donors; pool.c).
 *
 * From what the coordinator knows when POOL_OPEN {name, capacity,
 * min_block} arrives - its segment size, default min_block and own share
 * (self-contribution), the registered host agents' budgets and limits,
 * and the spare standalone donors' offers - rmp_srv_plan_make() decides
 * the whole pool in one pass:
 *   1. the name and the min_block are valid;
 *   2. the sources, bottom of the space up: the coordinator's share, then
 *      spare standalone regions (layout.h picks them), then spawned donors
 *      for the rest (sizing.h: per-donor region = the tightest host's
 *      process limit less its donor footprint, in whole segments);
 *   3. the space: the next power of two (sizing.h), at most
 *      RMP_WIRE_MAX_SEGMENTS segments and RMP_BUDDY_MAX_LEVELS levels; its
 *      buddy metadata with owner records (RMP_SRV_POOL_SLOTS slots and a
 *      tag per minimum block);
 *   4. the spawned donors placed over the hosts' budgets (sizing.h);
 *   5. every piece's length and pool address (layout.h).
 * The result is one plan, or one error text: the ERROR frame the
 * consumer gets, exactly as sent (with the numbers: asked, possible per
 * host). Pure: no I/O and no globals; it allocates only the plan's two
 * arrays.
 */
#ifndef RMP_SRV_PLAN_H
#define RMP_SRV_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "buddy.h"
#include "sizing.h"
#include "wire.h"

/* Context slots in a pool's metadata (owner records, for reclaim; buddy.h):
 * one per engine context, 64 consumers of RMP_DATA_SHARDS (16) each. */
#define RMP_SRV_POOL_SLOTS 1024u

/* A registered host agent, as placement sees it. */
struct rmp_srv_plan_host {
	const char *name;
	uint64_t budget; /* bytes it may still give: its budget less what its donors use */
	uint64_t process_limit;
	uint64_t donor_footprint;
	void *owner; /* the caller's (its agent), carried through untouched */
};

/* A spare standalone donor's offer. */
struct rmp_srv_plan_spare {
	uint64_t offered; /* whole segments */
	void *owner;	  /* the caller's (the donor) */
};

struct rmp_srv_plan_req {
	const char *name;	    /* the pool's */
	uint64_t capacity;	    /* usable bytes asked for, > 0 */
	uint64_t min_block;	    /* asked; 0: default_min_block */
	uint64_t segment_size;	    /* the coordinator's: a power of two */
	uint64_t default_min_block; /* the coordinator's */
	uint64_t self_contribution; /* the coordinator's own share, bytes */
	const struct rmp_srv_plan_host *hosts;
	size_t n_hosts;
	const struct rmp_srv_plan_spare *spare; /* oldest first */
	size_t n_spare;
};

/* One piece of the space: [base, base + len), whole segments, backed by
 * source `from` (an index into the request's spare or hosts). */
struct rmp_srv_plan_piece {
	size_t from;
	uint64_t len;
	uint64_t base;
};

struct rmp_srv_plan {
	struct rmp_srv_geometry geo;
	struct rmp_buddy_geom buddy;
	unsigned min_block_log2;
	uint64_t self_len;	   /* the coordinator's share used, at pool address 0 (0: none) */
	uint64_t standalone_bytes; /* what the standalone pieces give in all */
	size_t n_standalone;
	struct rmp_srv_plan_piece *standalone; /* from = spare index; in space order */
	uint64_t region_len;		       /* most one spawned donor holds (0: none spawned) */
	uint64_t n_spawn;
	struct rmp_srv_plan_piece *spawn; /* from = host index; host by host, in space order */
	char err[RMP_WIRE_TEXT_MAX + 1];  /* why not: the ERROR frame's text */
};

/* Plans the pool. 0, or a negative errno (the ERROR frame's code) with
 * out->err set. Either way release with rmp_srv_plan_free. */
int rmp_srv_plan_make(const struct rmp_srv_plan_req *rq, struct rmp_srv_plan *out);
void rmp_srv_plan_free(struct rmp_srv_plan *pl);

/* Pool names become shm object names: letters, digits, '.', '_', '-',
 * not first '.' or '-'. 0, or -EINVAL with the ERROR text in err. */
int rmp_srv_plan_check_name(const char *name, char *err, size_t errlen);

#endif /* RMP_SRV_PLAN_H */
