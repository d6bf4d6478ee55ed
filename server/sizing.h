/* sizing.h - how many donor processes a pool needs, where they go, and
 * the pool's geometry. Pure arithmetic: no I/O, no allocation. Only the
 * coordinator sizes pools, so it lives beside layout.h in server/ (plan.h
 * puts the two together for one pool).
 *
 * DESIGN.md, "Pools and donors": a pool larger than one process may hold
 * is served by ceil(remaining / per_donor) donor processes, fewer when
 * the coordinator serves part of the request itself; each donor holds at
 * most the per-process limit, less its own footprint, in whole segments.
 * DESIGN.md, "The global address space": the space is 2^M >= capacity,
 * cut into 2^s segments; the segments no donor backs form the reserved
 * tail.
 *
 * Errors are a negative errno plus one line in a caller buffer that
 * gives the numbers (asked, possible), so the coordinator can send it to
 * the consumer in an ERROR frame as it is.
 */
#ifndef RMP_SRV_SIZING_H
#define RMP_SRV_SIZING_H

#include <stddef.h>
#include <stdint.h>

/* More donor processes than this is a configuration mistake (a tiny
 * per-process limit), not a pool: refuse rather than fork thousands. */
#define RMP_SRV_SIZING_MAX_DONORS 4096u

struct rmp_srv_sizing_req {
	uint64_t capacity;	    /* usable bytes asked for (> 0) */
	uint64_t process_limit;	    /* most memory one process may hold */
	uint64_t donor_footprint;   /* a donor process's own memory, measured */
	uint64_t segment_size;	    /* power of two */
	uint64_t coordinator_share; /* bytes the coordinator serves itself */
};

struct rmp_srv_sizing {
	uint64_t region_len;	   /* per donor: whole segments */
	uint64_t segments_per_donor;
	uint64_t coordinator_len;  /* the share, rounded down to segments */
	uint64_t donors;	   /* number of donor processes */
	uint64_t provided;	   /* coordinator_len + donors * region_len */
};

/* 0, or -EINVAL (zero capacity, segment size not a power of two), or
 * -ENOSPC (the limit minus the footprint is less than one segment), or
 * -E2BIG (more than RMP_SRV_SIZING_MAX_DONORS donors), or -EOVERFLOW (the
 * numbers do not fit in 64 bits). */
int rmp_srv_sizing_count(const struct rmp_srv_sizing_req *req, struct rmp_srv_sizing *out,
		    char *err, size_t errlen);

struct rmp_srv_sizing_host {
	const char *name;
	uint64_t budget; /* in: bytes this host may still give */
	uint64_t placed; /* out: donors placed on it */
};

/* Places `donors` processes that each cost `donor_cost` bytes of host
 * budget (region plus footprint) over the hosts, spreading them: each goes
 * to the host with the most budget left (the lowest index on a tie), so
 * hosts fill evenly and the loss of one host takes as few donors as the
 * budgets allow. hosts[i].placed receives host i's count. -ENOSPC when
 * they do not fit, with how many would (and where) in err; -EINVAL for
 * zero cost or no hosts; -E2BIG above RMP_SRV_SIZING_MAX_DONORS. */
int rmp_srv_sizing_place(uint64_t donors, uint64_t donor_cost, struct rmp_srv_sizing_host *hosts,
			 size_t n_hosts, char *err, size_t errlen);

struct rmp_srv_geometry {
	unsigned space_log2;	/* M */
	unsigned segment_log2;	/* s */
	uint64_t space;		/* 2^M */
	uint64_t segments;	/* 2^(M-s) */
	uint64_t backed;	/* segments with memory behind them (the head) */
	uint64_t reserved;	/* segments - backed: the tail, allocated at creation */
	uint64_t reserved_base; /* pool address where the reserved tail starts */
};

/* Geometry for a pool of `capacity` usable bytes whose donors (and the
 * coordinator) provide `provided` bytes (0: exactly capacity rounded up
 * to segments). The space is at least one segment. -EINVAL for zero
 * capacity or a segment size that is not a power of two; -EOVERFLOW when
 * the space would exceed 2^63. */
int rmp_srv_sizing_geometry(uint64_t capacity, uint64_t segment_size, uint64_t provided,
			struct rmp_srv_geometry *out, char *err, size_t errlen);

/* Least power of two >= x, x in [1, 2^63]; 0 for x == 0 or x > 2^63. */
uint64_t rmp_srv_sizing_pow2_ceil(uint64_t x);

#endif /* RMP_SRV_SIZING_H */
