/* leases.h - the lease table: which client holds which pool, until when.
 * Pure bookkeeping, no clock and no I/O: callers pass `now` (ms on a
 * monotonic clock), so expiry is testable without waiting.
 *
 * A lease lives from POOL_READY until POOL_CLOSE, or until `ttl` passes
 * without a LEASE_RENEW: a lease whose deadline is <= now is expired,
 * even before rmp_srv_leases_expire() has reaped it, so a renewal that
 * arrives late is refused rather than raced against the reaper. Ids are
 * never reused within a table. Small tables (hundreds of clients): a
 * linear array is simpler than a heap and fast enough at that size.
 */
#ifndef RMP_SRV_LEASES_H
#define RMP_SRV_LEASES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmp_srv_lease {
	uint64_t id;
	uint32_t pool_id;
	uint64_t client_id; /* session id of the client it was granted to */
	void *owner;	    /* its connection, NULL once that closed */
	uint64_t deadline_ms;
	/* Its owner-record slots in the pool's metadata: slot_base ..
	 * slot_base + RMP_SRV_LEASE_SLOTS - 1 (RMP_SRV_NO_SLOT: none). */
	uint32_t slot_base;
};

/* Slots per lease: one per engine context of a consumer (client/data.h's
 * RMP_DATA_SHARDS). */
#define RMP_SRV_LEASE_SLOTS 16u
/* No slots (wire.h's RMP_WIRE_NO_SLOT, the same value). */
#define RMP_SRV_NO_SLOT UINT32_MAX

struct rmp_srv_leases {
	struct rmp_srv_lease *v;
	size_t n, cap;
	uint64_t next_id;
	uint64_t ttl_ms;
};

void rmp_srv_leases_init(struct rmp_srv_leases *t, uint64_t ttl_ms, uint64_t first_id);
void rmp_srv_leases_fini(struct rmp_srv_leases *t);

/* now + ttl, saturating instead of wrapping. */
uint64_t rmp_srv_lease_deadline(uint64_t now_ms, uint64_t ttl_ms);

/* 0 and *id, or -ENOMEM. */
int rmp_srv_leases_grant(struct rmp_srv_leases *t, uint32_t pool_id, uint64_t client_id,
			 uint32_t slot_base, void *owner, uint64_t now_ms, uint64_t *id);
/* A lease taken back from the state store after a restart, with its id
 * and deadline (no owner until it is renewed); next_id moves past id so
 * that ids never repeat. -EEXIST (id held already) or -ENOMEM. */
int rmp_srv_leases_restore(struct rmp_srv_leases *t, uint64_t id, uint32_t pool_id,
			   uint64_t client_id, uint32_t slot_base, uint64_t deadline_ms);
/* NULL when unknown (never granted, closed or reaped). */
struct rmp_srv_lease *rmp_srv_leases_find(struct rmp_srv_leases *t, uint64_t id);
/* Pushes the deadline to now + ttl and moves it to owner. -ENOENT unknown,
 * -ETIMEDOUT when it had already expired (it stays for the reaper). */
int rmp_srv_leases_renew(struct rmp_srv_leases *t, uint64_t id, void *owner, uint64_t now_ms);
/* Ends a lease (POOL_CLOSE). -ENOENT unknown. */
int rmp_srv_leases_release(struct rmp_srv_leases *t, uint64_t id);

typedef void rmp_srv_lease_fn(void *arg, const struct rmp_srv_lease *l);
/* Removes every lease with deadline <= now, calling fn on each first.
 * Returns how many expired. */
size_t rmp_srv_leases_expire(struct rmp_srv_leases *t, uint64_t now_ms, rmp_srv_lease_fn *fn,
			     void *arg);
/* Earliest deadline, UINT64_MAX when the table is empty. */
uint64_t rmp_srv_leases_next_deadline(const struct rmp_srv_leases *t);
/* Every deadline moves by ms (saturating): the coordinator was stalled
 * that long and read no renewal meanwhile. */
void rmp_srv_leases_shift(struct rmp_srv_leases *t, uint64_t ms);
/* A connection closed: its leases stay until they expire. */
void rmp_srv_leases_forget_owner(struct rmp_srv_leases *t, const void *owner);
/* Whether client_id holds a lease on pool_id that is live at now (its
 * deadline not reached: an expired one counts as gone even before the
 * reaper took it). The metadata listener asks it of every connect. */
bool rmp_srv_leases_held(const struct rmp_srv_leases *t, uint32_t pool_id, uint64_t client_id,
			 uint64_t now_ms);
/* Live leases on one pool. */
uint32_t rmp_srv_leases_count_pool(const struct rmp_srv_leases *t, uint32_t pool_id);
/* Slot groups (RMP_SRV_LEASE_SLOTS each) of pool_id taken by its leases:
 * used[g] = 1 for each, g < groups. */
void rmp_srv_leases_slots_used(const struct rmp_srv_leases *t, uint32_t pool_id, uint8_t *used,
			       uint32_t groups);
/* The lowest group not in used: 0 and *base (its first slot), -EBUSY. */
int rmp_srv_slot_group_pick(const uint8_t *used, uint32_t groups, uint32_t *base);
/* The pool is gone: drop its leases (no expiry is counted). */
void rmp_srv_leases_drop_pool(struct rmp_srv_leases *t, uint32_t pool_id);

#endif /* RMP_SRV_LEASES_H */
