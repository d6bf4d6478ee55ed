/* reclaim.c - a consumer's owner-record slots, and the reclaim of an
 * expired consumer's blocks (DESIGN.md, "Reclaim of an expired consumer").
 *
 * Slots: a pool's metadata region has RMP_SRV_POOL_SLOTS context slots
 * (plan.h). Each lease on it owns a group of RMP_SRV_LEASE_SLOTS
 * consecutive ones, one per engine context of the consumer (its shards),
 * picked here at POOL_READY (the lowest free group), sent in POOL_READY
 * (slot_base), kept in the lease's row of the state store and restored
 * with it. The last group is the coordinator's: its resolver's context
 * keeps records like any other (rmp_srv_self_slot), so 1024 slots serve
 * 63 consumers. A group is taken while its lease lives, and after the
 * lease expired until its reclaim is done: a slot is reused only once
 * nothing of its old context is left in the metadata. A pool with every
 * group taken refuses POOL_OPEN (EBUSY).
 *
 * Reclaim, per expired lease with slots (rmp_srv_reclaim_expired, from
 * the lease reaper, after rmp_srv_cut_start):
 *   1. its row is marked reclaim-pending (persist.c) and it is listed
 *      here (srv->reclaims);
 *   2. the tick (rmp_srv_reclaims_tick) waits for its cut to be complete
 *      (rmp_srv_lease_cut_done: nothing it posts lands anywhere any
 *      more) and --reclaim-delay after (0 by default), then queues a job with the loopback engine (self.c) that
 *      runs the resolver for the pool with this lease's contexts DEAD;
 *   3. the job's end (rmp_srv_reclaim_finished): on success the row is
 *      deleted, the slots are free, the line "pool P: lease L reclaimed:
 *      N blocks, B bytes back in T ms" is logged and counted
 *      (rmpool_reclaims_total, rmpool_reclaimed_bytes_total); a failure
 *      is logged, counted (rmpool_reclaim_failures_total) and tried again
 *      after a pause that doubles up to RECLAIM_RETRY_MAX_MS, except "no
 *      clean snapshot" (-EAGAIN, a busy pool), tried again every
 *      RECLAIM_RETRY_MS (the job's sweep gave the bulk back already).
 * After a restart the cut records are gone (cutoff.c keeps them in
 * memory), so a restored pending lease is cut off again by this process
 * once its pool is ready, and reclaimed once that cut is complete.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "srv.h"

/* A failed reclaim is tried again after this, doubling up to the max. */
#define RECLAIM_RETRY_MS 1000u
#define RECLAIM_RETRY_MAX_MS 30000u

uint32_t rmp_srv_slot_groups(const struct rmp_srv_pool *p)
{
	uint32_t groups = p->geom.slots / RMP_SRV_LEASE_SLOTS;

	return groups > 1 ? groups - 1 : 0; /* the last group: the coordinator's */
}

unsigned rmp_srv_self_slot(const struct rmp_srv_pool *p)
{
	return p->geom.slots ? p->geom.slots - 1 : 0;
}

/* Marks the groups taken by p's leases and pending reclaims in used[]. */
static void groups_taken(const struct rmp_srv *srv, const struct rmp_srv_pool *p, uint8_t *used,
			 uint32_t groups)
{
	rmp_srv_leases_slots_used(&srv->leases, p->id, used, groups);
	for (const struct rmp_srv_reclaim *q = srv->reclaims; q; q = q->next)
		if (q->pool_id == p->id && q->slot_base / RMP_SRV_LEASE_SLOTS < groups)
			used[q->slot_base / RMP_SRV_LEASE_SLOTS] = 1;
}

uint32_t rmp_srv_slot_groups_taken(const struct rmp_srv *srv, const struct rmp_srv_pool *p)
{
	uint8_t used[RMP_BUDDY_MAX_SLOTS / RMP_SRV_LEASE_SLOTS] = { 0 };
	uint32_t groups = rmp_srv_slot_groups(p), n = 0;

	groups_taken(srv, p, used, groups);
	for (uint32_t g = 0; g < groups; g++)
		n += used[g];
	return n;
}

int rmp_srv_slots_pick(const struct rmp_srv *srv, const struct rmp_srv_pool *p, uint32_t *base)
{
	uint8_t used[RMP_BUDDY_MAX_SLOTS / RMP_SRV_LEASE_SLOTS] = { 0 };
	uint32_t groups = rmp_srv_slot_groups(p);

	if (p->geom.slots == 0) {
		*base = RMP_SRV_NO_SLOT; /* a region without records */
		return 0;
	}
	groups_taken(srv, p, used, groups);
	return rmp_srv_slot_group_pick(used, groups, base);
}

static struct rmp_srv_reclaim *reclaim_find(struct rmp_srv *srv, uint64_t lease_id)
{
	for (struct rmp_srv_reclaim *q = srv->reclaims; q; q = q->next)
		if (q->lease_id == lease_id)
			return q;
	return NULL;
}

static void reclaim_unlink(struct rmp_srv *srv, struct rmp_srv_reclaim *q)
{
	for (struct rmp_srv_reclaim **pp = &srv->reclaims; *pp; pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
			free(q);
			return;
		}
	}
}

static struct rmp_srv_reclaim *reclaim_add(struct rmp_srv *srv, uint64_t lease_id,
					   uint32_t pool_id, uint64_t client_id, uint32_t slot_base)
{
	struct rmp_srv_reclaim *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	*q = (struct rmp_srv_reclaim){ .next = srv->reclaims, .lease_id = lease_id,
				       .pool_id = pool_id, .client_id = client_id,
				       .slot_base = slot_base, .expired_ms = rmp_mono_ms() };
	srv->reclaims = q;
	return q;
}

void rmp_srv_reclaim_expired(struct rmp_srv *srv, const struct rmp_srv_lease *l)
{
	struct rmp_srv_pool *p = rmp_srv_pool_find_id(srv, l->pool_id);

	if (l->slot_base == RMP_SRV_NO_SLOT || !p) {
		rmp_srv_persist_lease_gone(srv, l->id);
		return;
	}
	struct rmp_srv_reclaim *q = reclaim_add(srv, l->id, l->pool_id, l->client_id, l->slot_base);
	if (!q) {
		/* Not listed: its slots are free again at once, and its blocks
		 * stay where they are (leaked, as before reclaim existed); its
		 * row stays for a restart to reclaim. */
		rmp_log_error("pool %s: lease %" PRIu64 ": out of memory, its blocks are not reclaimed",
			      p->name, l->id);
		return;
	}
	rmp_srv_persist_lease_reclaim(srv, q);
	rmp_log_info("pool %s: lease %" PRIu64 " (slots %" PRIu32 "..%" PRIu32
		     ") waits for its reclaim: once its cut-off is complete",
		     p->name, l->id, l->slot_base, l->slot_base + RMP_SRV_LEASE_SLOTS - 1);
}

int rmp_srv_reclaim_restore(struct rmp_srv *srv, const struct rmp_state_lease *r)
{
	if (r->slot_base == UINT32_MAX || reclaim_find(srv, r->id))
		return 0;
	struct rmp_srv_reclaim *q = reclaim_add(srv, r->id, r->pool_id, r->session, r->slot_base);
	if (!q)
		return -ENOMEM;
	q->restored = true;
	return 0;
}

void rmp_srv_reclaims_tick(struct rmp_srv *srv, uint64_t now_ms)
{
	for (struct rmp_srv_reclaim *q = srv->reclaims; q; q = q->next) {
		struct rmp_srv_pool *p = rmp_srv_pool_find_id(srv, q->pool_id);
		if (q->queued || !p || p->state != RMP_SRV_POOL_READY || now_ms < q->retry_ms)
			continue;
		int cut = rmp_srv_lease_cut_done(srv, q->lease_id);
		if (cut == -ENOENT && !q->cut_asked) {
			/* Restored after a restart (or its cut could not be
			 * recorded): this process cuts it off itself first. */
			struct rmp_srv_lease l = { .id = q->lease_id, .pool_id = q->pool_id,
						   .client_id = q->client_id,
						   .slot_base = q->slot_base };
			q->cut_asked = true;
			rmp_srv_cut_start(srv, &l);
			cut = rmp_srv_lease_cut_done(srv, q->lease_id);
		}
		if (cut != 1)
			continue;
		if (!q->cut_ms)
			q->cut_ms = now_ms;
		if (now_ms < q->cut_ms + srv->cfg.reclaim_delay_ms)
			continue;
		/* Dead in the parties' table before the worker can read it. */
		q->queued = true;
		rmp_srv_self_parties(srv, p);
		if (rmp_srv_self_reclaim(srv, p, q) != 0) {
			q->queued = false;
			q->retry_ms = now_ms + RECLAIM_RETRY_MS;
		}
	}
}

void rmp_srv_reclaim_finished(struct rmp_srv *srv, uint64_t lease_id, int rc, uint64_t blocks,
			      uint64_t bytes, uint64_t ms, const char *err)
{
	struct rmp_srv_reclaim *q = reclaim_find(srv, lease_id);
	struct rmp_srv_pool *p = q ? rmp_srv_pool_find_id(srv, q->pool_id) : NULL;

	if (!q) /* its pool went meanwhile */
		return;
	q->queued = false;
	q->attempts++;
	if (rc) {
		uint64_t pause = RECLAIM_RETRY_MS;
		/* No clean snapshot (a busy pool): the sweep gave the bulk
		 * back; the rest is done soon after the pool is quiet for a
		 * moment, so it is tried at a steady 1 s, never doubled. */
		for (uint32_t k = 1; rc != -EAGAIN && k < q->attempts && pause < RECLAIM_RETRY_MAX_MS; k++)
			pause *= 2;
		if (pause > RECLAIM_RETRY_MAX_MS)
			pause = RECLAIM_RETRY_MAX_MS;
		q->retry_ms = rmp_mono_ms() + pause;
		srv->m.reclaim_failures_total++;
		rmp_log_warn("pool %s: lease %" PRIu64 ": reclaim attempt %" PRIu32 " failed after %" PRIu64
			     " ms: %s; tried again in %" PRIu64 " ms",
			     p ? p->name : "?", lease_id, q->attempts, ms, err && err[0] ? err : strerror(-rc),
			     pause);
		return;
	}
	srv->m.reclaims_total++;
	srv->m.reclaimed_bytes_total += bytes;
	rmp_log_info("pool %s: lease %" PRIu64 " reclaimed: %" PRIu64 " blocks, %" PRIu64
		     " bytes back in %" PRIu64 " ms (%" PRIu64 " ms after the expiry)",
		     p ? p->name : "?", lease_id, blocks, bytes, ms, rmp_mono_ms() - q->expired_ms);
	rmp_srv_persist_lease_gone(srv, lease_id);
	reclaim_unlink(srv, q);
}

void rmp_srv_reclaims_drop_pool(struct rmp_srv *srv, uint32_t pool_id)
{
	for (struct rmp_srv_reclaim **pp = &srv->reclaims; *pp;) {
		struct rmp_srv_reclaim *q = *pp;
		if (q->pool_id == pool_id) {
			*pp = q->next;
			free(q);
		} else {
			pp = &q->next;
		}
	}
}

void rmp_srv_reclaims_free(struct rmp_srv *srv)
{
	while (srv->reclaims) {
		struct rmp_srv_reclaim *q = srv->reclaims;
		srv->reclaims = q->next;
		free(q);
	}
}
