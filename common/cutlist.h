/* cutlist.h - the client ids a passive side (a donor, the coordinator's
 * metadata listener) refuses because their lease expired and they were
 * cut off (DESIGN.md, "Cut-off of an expired consumer").
 *
 * Why a list at all: a consumer holds the secret and mints its own
 * rdma_cm tokens, so tearing its queue pairs down is not enough - a
 * consumer resumed after SIGSTOP would connect again with a fresh token.
 * Its client id (the session id the coordinator gave it) is never handed
 * out again, so an entry can never refuse a live consumer and may stay
 * for the life of the process.
 *
 * Bounded, in memory, persisted nowhere: a ring of RMP_CUTLIST_MAX ids;
 * the oldest entry goes when it is full (the one that risks coming back
 * is then the consumer that has been stopped through RMP_CUTLIST_MAX
 * later expiries on the same pool). 8 bytes an entry; a lookup walks the
 * ring, which costs a connect request a few microseconds at worst and
 * nothing on the data path. Not thread-safe: one owner (the donor's poll
 * loop, the coordinator's event loop).
 */
#ifndef RMP_CUTLIST_H
#define RMP_CUTLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMP_CUTLIST_MAX 4096u

struct rmp_cutlist {
	uint64_t *ids; /* RMP_CUTLIST_MAX slots once the first id is added */
	size_t n;      /* ids held, <= RMP_CUTLIST_MAX */
	size_t next;   /* the slot the next id goes to (the oldest once full) */
	uint64_t evicted; /* ids pushed out by newer ones */
};

/* Zero-initialised is empty. */
void rmp_cutlist_fini(struct rmp_cutlist *l);
/* Adds id (again: a no-op). 0, or -ENOMEM (the list is unchanged). */
int rmp_cutlist_add(struct rmp_cutlist *l, uint64_t id);
bool rmp_cutlist_has(const struct rmp_cutlist *l, uint64_t id);

#endif /* RMP_CUTLIST_H */
