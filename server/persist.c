/* persist.c - the coordinator's changes, written to its state store
 * (state.h) before they are acknowledged (DESIGN.md, "The state store").
 *
 * One transaction per change; the caller sends its reply only after the
 * commit returned (WAL + synchronous=FULL: on disk by then). What is
 * written when:
 *   pool create     the pool row (PROVISIONING) before its shm objects
 *                   exist, so a crash never leaves an object that no
 *                   record names; then its donors (spawned: id, host,
 *                   cost, base; standalone: region) before the first
 *                   SPAWN goes out;
 *   donor register  its pid, region and endpoint, before DONOR_ACCEPTED;
 *   pool ready      its encoded segment table and version, before
 *                   POOL_READY (and again at each re-adoption);
 *   lease           granted before POOL_READY (with its owner-record
 *                   slots), closed before the ACK, dropped when that
 *                   happens; expired: marked reclaim-pending (a lease
 *                   with slots; one without is deleted), deleted once
 *                   its reclaim is done (reclaim.c). Renewals write
 *                   nothing: a restart gives every lease a full period
 *                   from the restart (recover.c), which is never earlier
 *                   than any expiry a renewal could have recorded, so
 *                   writing it would buy nothing and cost an fsync per
 *                   renewal;
 *   donor lost      its state; a donor gone: its row;
 *   pool destroy    DESTROYING (and its leases gone) before the first
 *                   TERMINATE; its row after its shm objects are unlinked;
 *   ids             the next pool, donor, agent and lease ids ride in the
 *                   transaction of the change that takes one; session ids
 *                   (one per connection) are reserved SESSION_BLOCK at a
 *                   time, so that a handshake rarely waits for the disk.
 * So ids never repeat across restarts.
 *
 * Failures: a write that an acknowledgement waits on returns the error
 * and the request is refused (the caller says EIO with the store's
 * text); one that acknowledges nothing (a donor gone, a lease expired)
 * is logged and counted, and memory moves on: a restart reconciles (a
 * recorded donor that is gone never returns and is marked lost; a
 * recorded lease that was closed expires after its grace).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adopt.h"
#include "clock.h"
#include "debug.h"
#include "log.h"
#include "srv.h"

#define SESSION_BLOCK 1024

const char *rmp_srv_persist_error(const struct rmp_srv *srv)
{
	return srv->state ? rmp_state_error(srv->state) : "no state store";
}

static int tx_begin(struct rmp_srv *srv)
{
	return rmp_state_begin(srv->state);
}

/* Commits when rc is 0, else rolls back; logs and counts a failure. */
static int tx_end(struct rmp_srv *srv, int rc, const char *what)
{
	if (rc == 0)
		rc = rmp_state_commit(srv->state);
	if (rc) {
		rmp_state_rollback(srv->state);
		srv->m.state_errors_total++;
		rmp_log_error("state: cannot record %s: %s", what, rmp_state_error(srv->state));
	}
	return rc;
}

/* The id counters that ride with a change (sessions are reserved apart). */
static int put_ids(struct rmp_srv *srv)
{
	int rc = rmp_state_counter_set(srv->state, RMP_STATE_NEXT_POOL, srv->next_pool);
	if (!rc)
		rc = rmp_state_counter_set(srv->state, RMP_STATE_NEXT_DONOR, srv->next_donor);
	if (!rc)
		rc = rmp_state_counter_set(srv->state, RMP_STATE_NEXT_AGENT, srv->next_agent);
	if (!rc)
		rc = rmp_state_counter_set(srv->state, RMP_STATE_NEXT_LEASE, srv->leases.next_id);
	return rc;
}

static void donor_record(const struct rmp_srv_donor *d, struct rmp_state_donor *r)
{
	memset(r, 0, sizeof(*r));
	r->id = d->id;
	r->pool_id = d->pool ? d->pool->id : d->pool_id;
	r->state = (uint32_t)d->state;
	r->pid = d->pid;
	r->standalone = d->standalone;
	memcpy(r->host, d->host, sizeof(r->host));
	r->region = d->region;
	r->endpoint = d->endpoint;
	r->base = d->base;
	r->cost = d->cost;
	r->offered = d->offered;
}

/* The pool's row; *blob is the table encoded for it (free it), or NULL
 * when the row carries the recorded bytes or none. */
static int pool_record(const struct rmp_srv_pool *p, struct rmp_state_pool *r, uint8_t **blob)
{
	memset(r, 0, sizeof(*r));
	*blob = NULL;
	r->id = p->id;
	memcpy(r->name, p->name, sizeof(r->name));
	/* Recovering is this process's business: on record it stays ready. */
	r->state = p->state == RMP_SRV_POOL_RECOVERING ? RMP_SRV_POOL_READY : (uint32_t)p->state;
	r->capacity = p->capacity;
	r->space_log2 = (uint8_t)p->space_log2;
	r->segment_log2 = (uint8_t)p->segment_log2;
	r->min_block_log2 = (uint8_t)p->min_block_log2;
	memcpy(r->meta_shm, p->meta_shm, sizeof(r->meta_shm));
	r->meta_len = p->meta_len;
	r->self_donor_id = p->self_donor_id;
	memcpy(r->self_shm, p->self_shm, sizeof(r->self_shm));
	r->self_len = p->self_len;
	r->segtab_version = p->segtab.version;
	memcpy(r->lost, p->lost, sizeof(r->lost));
	if (p->segtab.segments) {
		int rc = rmp_srv_adopt_segtab_encode(p->id, &p->segtab, blob, &r->segtab_len);
		if (rc)
			return rc;
		r->segtab = *blob;
	} else if (p->rec_segtab) {
		r->segtab = p->rec_segtab;
		r->segtab_len = p->rec_segtab_len;
	}
	return 0;
}

int rmp_srv_persist_pool(struct rmp_srv *srv, const struct rmp_srv_pool *p)
{
	struct rmp_state_pool r;
	uint8_t *blob;
	char what[RMP_WIRE_NAME_MAX + 32];

	if (!srv->state)
		return 0;
	snprintf(what, sizeof(what), "pool %s", p->name);
	int rc = pool_record(p, &r, &blob);
	if (rc) {
		rmp_log_error("state: cannot encode the segment table of pool %s: %s", p->name,
			      rmp_wire_strerror(rc));
		return rc;
	}
	rc = tx_begin(srv);
	if (!rc)
		rc = rmp_state_pool_put(srv->state, &r);
	/* A destroy drops the pool's leases at once: so does the record. */
	for (size_t i = 0; !rc && p->state == RMP_SRV_POOL_DESTROYING && i < srv->leases.n; i++)
		if (srv->leases.v[i].pool_id == p->id)
			rc = rmp_state_lease_delete(srv->state, srv->leases.v[i].id);
	for (const struct rmp_srv_reclaim *q = srv->reclaims;
	     !rc && p->state == RMP_SRV_POOL_DESTROYING && q; q = q->next)
		if (q->pool_id == p->id)
			rc = rmp_state_lease_delete(srv->state, q->lease_id);
	if (!rc)
		rc = put_ids(srv);
	rc = tx_end(srv, rc, what);
	free(blob);
	return rc;
}

int rmp_srv_persist_pool_donors(struct rmp_srv *srv, const struct rmp_srv_pool *p)
{
	struct rmp_state_donor r;
	char what[RMP_WIRE_NAME_MAX + 32];

	if (!srv->state)
		return 0;
	snprintf(what, sizeof(what), "the donors of pool %s", p->name);
	int rc = tx_begin(srv);
	for (uint32_t i = 0; !rc && i < p->n_donors; i++) {
		if (!p->donors[i])
			continue;
		donor_record(p->donors[i], &r);
		rc = rmp_state_donor_put(srv->state, &r);
	}
	if (!rc)
		rc = put_ids(srv);
	return tx_end(srv, rc, what);
}

int rmp_srv_persist_donor(struct rmp_srv *srv, const struct rmp_srv_donor *d)
{
	struct rmp_state_donor r;
	char what[48];

	if (!srv->state)
		return 0;
	snprintf(what, sizeof(what), "donor %" PRIu32, d->id);
	donor_record(d, &r);
	int rc = tx_begin(srv);
	if (!rc)
		rc = rmp_state_donor_put(srv->state, &r);
	if (!rc)
		rc = put_ids(srv);
	return tx_end(srv, rc, what);
}

void rmp_srv_persist_donor_state(struct rmp_srv *srv, const struct rmp_srv_donor *d)
{
	(void)rmp_srv_persist_donor(srv, d);
}

void rmp_srv_persist_donor_gone(struct rmp_srv *srv, uint32_t id)
{
	char what[48];

	if (!srv->state)
		return;
	snprintf(what, sizeof(what), "that donor %" PRIu32 " is gone", id);
	int rc = tx_begin(srv);
	if (!rc)
		rc = rmp_state_donor_delete(srv->state, id);
	tx_end(srv, rc, what);
}

void rmp_srv_persist_pool_gone(struct rmp_srv *srv, uint32_t id)
{
	char what[48];

	if (!srv->state)
		return;
	snprintf(what, sizeof(what), "that pool %" PRIu32 " is gone", id);
	int rc = tx_begin(srv);
	if (!rc)
		rc = rmp_state_pool_delete(srv->state, id);
	for (size_t i = 0; !rc && i < srv->leases.n; i++)
		if (srv->leases.v[i].pool_id == id)
			rc = rmp_state_lease_delete(srv->state, srv->leases.v[i].id);
	for (const struct rmp_srv_reclaim *q = srv->reclaims; !rc && q; q = q->next)
		if (q->pool_id == id)
			rc = rmp_state_lease_delete(srv->state, q->lease_id);
	tx_end(srv, rc, what);
}

int rmp_srv_persist_lease(struct rmp_srv *srv, uint64_t lease_id)
{
	const struct rmp_srv_lease *l = rmp_srv_leases_find(&srv->leases, lease_id);
	char what[48];

	if (!srv->state)
		return 0;
	rmp_assert(l != NULL);
	uint64_t now = rmp_mono_ms();
	struct rmp_state_lease r = {
		.id = l->id,
		.pool_id = l->pool_id,
		.session = l->client_id,
		.expires_wall_ms = rmp_wall_ms() + (l->deadline_ms > now ? l->deadline_ms - now : 0),
		.slot_base = l->slot_base,
	};
	snprintf(what, sizeof(what), "lease %" PRIu64, lease_id);
	int rc = tx_begin(srv);
	if (!rc)
		rc = rmp_state_lease_put(srv->state, &r);
	if (!rc)
		rc = put_ids(srv);
	return tx_end(srv, rc, what);
}

void rmp_srv_persist_lease_gone(struct rmp_srv *srv, uint64_t id)
{
	char what[48];

	if (!srv->state)
		return;
	snprintf(what, sizeof(what), "that lease %" PRIu64 " is gone", id);
	int rc = tx_begin(srv);
	if (!rc)
		rc = rmp_state_lease_delete(srv->state, id);
	tx_end(srv, rc, what);
}

void rmp_srv_persist_lease_reclaim(struct rmp_srv *srv, const struct rmp_srv_reclaim *q)
{
	char what[64];

	if (!srv->state)
		return;
	struct rmp_state_lease r = { .id = q->lease_id, .pool_id = q->pool_id,
				     .session = q->client_id, .expires_wall_ms = rmp_wall_ms(),
				     .slot_base = q->slot_base, .reclaim = true };
	snprintf(what, sizeof(what), "that lease %" PRIu64 " waits for its reclaim", q->lease_id);
	int rc = tx_begin(srv);
	if (!rc)
		rc = rmp_state_lease_put(srv->state, &r);
	tx_end(srv, rc, what);
}

int rmp_srv_persist_ids(struct rmp_srv *srv)
{
	if (!srv->state)
		return 0;
	int rc = tx_begin(srv);
	if (!rc)
		rc = put_ids(srv);
	return tx_end(srv, rc, "the id counters");
}

int rmp_srv_persist_session(struct rmp_srv *srv)
{
	if (!srv->state || srv->next_session < srv->session_reserved)
		return 0;
	uint64_t upto = srv->next_session + SESSION_BLOCK;
	int rc = tx_begin(srv);
	if (!rc)
		rc = rmp_state_counter_set(srv->state, RMP_STATE_NEXT_SESSION, upto);
	rc = tx_end(srv, rc, "the session ids");
	if (!rc)
		srv->session_reserved = upto;
	return rc;
}
