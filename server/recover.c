/* recover.c - a restarted coordinator takes back what its state store
 * recorded (DESIGN.md, "Re-adoption"). The pure rules are adopt.c's.
 *
 * At start, before the control listener exists (rmp_srv_recover_load):
 *   ids     every next_* counter, and past every id on record, so that
 *           ids never repeat;
 *   pools   each recorded pool is listed again:
 *             being created    failed and cleaned at once: its shm objects
 *                              are unlinked and its record goes; its
 *                              spawned donors stay on record TERMINATING,
 *                              so that each one that comes back (or whose
 *                              agent does) is told to exit - no half pool
 *                              stays; its standalone donors are spare again;
 *             being destroyed  the destroy goes on: its donors are told to
 *                              exit as they come back, and the pool goes
 *                              with the last (or its deadline);
 *             ready, lost      RECOVERING: re-adopted below;
 *   donors  of a pool to re-adopt: AWAY, with donor-return-timeout to
 *           register again (donors.c takes them back); of any other:
 *           TERMINATING, with that timeout plus terminate-timeout;
 *   leases  of the listed pools, with a grace (adopt.h); others go.
 * After the rdma listener is up and before the event loop serves anyone
 * (rmp_srv_recover_adopt), each recovering pool's metadata object is
 * re-opened (never created), checked against its record (adopt.h),
 * stamped with this generation and registered again (a new key); the
 * coordinator's share likewise. Anything wrong makes the pool LOST with
 * the reason (status, logs, attach refuses naming it) and leaves its
 * objects as they are: never half-adopted. When the rdma_cm listener is
 * not bound yet (rdma_listen.c retries it) the objects are checked and
 * unmapped again, and the pool waits, RECOVERING, until the listener is
 * up (rmp_srv_recover_register). A recovering pool is ready
 * again when none of its donors is AWAY (pool.c).
 *
 * The generation word is the one store a restarted coordinator makes in
 * a pool's metadata, and it makes it with the CPU before the region is
 * registered again: no RDMA reaches the region then (the registration of
 * the process before died with it), and no client ever writes that
 * word, so the store races with nothing (DESIGN.md, "Generations").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adopt.h"
#include "clock.h"
#include "layout.h"
#include "log.h"
#include "plan.h"
#include "srv.h"

/* Ids whose rows go once a scan is over (a scan does not write). */
struct idlist {
	uint64_t *v;
	size_t n, cap;
};

struct load {
	struct rmp_srv *srv;
	uint64_t now_mono, now_wall;
	uint32_t max_pool, max_donor;
	struct idlist drop_leases; /* of no listed pool */
	struct idlist drop_donors; /* standalone, in no listed pool: spare is not on record */
	uint32_t n_pools, n_donors, n_leases;
};

static int idlist_push(struct idlist *l, uint64_t id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		uint64_t *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = id;
	return 0;
}

static uint64_t page_round(uint64_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t pg = page > 0 ? (uint64_t)page : 4096u;

	return (len + pg - 1) & ~(pg - 1);
}

static void pool_lost(struct rmp_srv_pool *p, const char *why)
{
	snprintf(p->lost, sizeof(p->lost), "%s", why);
	p->state = RMP_SRV_POOL_LOST;
}

/* The record's geometry and table; a failure makes the pool LOST (its
 * recorded table kept as it was). */
static void pool_from_record(struct rmp_srv_pool *p, const struct rmp_state_pool *r)
{
	char why[RMP_WIRE_TEXT_MAX + 1];

	p->space_log2 = r->space_log2;
	p->segment_log2 = r->segment_log2;
	p->min_block_log2 = r->min_block_log2;
	if (p->space_log2 >= 64 || rmp_buddy_geom_init_records(&p->geom, p->space_log2, p->min_block_log2,
							     RMP_SRV_POOL_SLOTS)) {
		snprintf(why, sizeof(why), "its recorded geometry (2^%u in blocks of 2^%u) is not valid",
			 p->space_log2, p->min_block_log2);
		pool_lost(p, why);
		return;
	}
	p->space = UINT64_C(1) << p->space_log2;
	if (!r->segtab) {
		if (r->state != RMP_SRV_POOL_PROVISIONING && r->state != RMP_SRV_POOL_DESTROYING)
			pool_lost(p, "no segment table was recorded for it");
		return;
	}
	if (rmp_srv_adopt_segtab_decode(r->segtab, r->segtab_len, p->id, &p->segtab, why,
					sizeof(why)) == 0)
		return;
	p->rec_segtab = malloc(r->segtab_len);
	if (p->rec_segtab) {
		memcpy(p->rec_segtab, r->segtab, r->segtab_len);
		p->rec_segtab_len = r->segtab_len;
	}
	pool_lost(p, why);
}

static int load_pool(void *arg, const struct rmp_state_pool *r)
{
	struct load *ld = arg;
	struct rmp_srv *srv = ld->srv;
	struct rmp_srv_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->srv = srv;
	p->id = r->id;
	memcpy(p->name, r->name, sizeof(p->name));
	p->capacity = r->capacity;
	memcpy(p->meta_shm, r->meta_shm, sizeof(p->meta_shm));
	p->meta_len = r->meta_len;
	p->self_donor_id = r->self_donor_id;
	memcpy(p->self_shm, r->self_shm, sizeof(p->self_shm));
	p->self_len = r->self_len;
	memcpy(p->lost, r->lost, sizeof(p->lost));
	switch (r->state) {
	case RMP_SRV_POOL_PROVISIONING:
	case RMP_SRV_POOL_DESTROYING:
		p->state = (enum rmp_srv_pool_state)r->state;
		break;
	case RMP_SRV_POOL_READY:
	case RMP_SRV_POOL_LOST: /* tried again: what was missing may be back */
		p->state = RMP_SRV_POOL_RECOVERING;
		p->lost[0] = '\0';
		break;
	default:
		pool_lost(p, "its recorded state is unknown to this rmpool-server");
		break;
	}
	pool_from_record(p, r);
	p->next = srv->pools;
	srv->pools = p;
	if (p->id > ld->max_pool)
		ld->max_pool = p->id;
	if (p->self_donor_id > ld->max_donor)
		ld->max_donor = p->self_donor_id;
	ld->n_pools++;
	return 0;
}

static int pool_add_slot(struct rmp_srv_pool *p, struct rmp_srv_donor *d)
{
	struct rmp_srv_donor **v = realloc(p->donors, (p->n_donors + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	p->donors = v;
	p->donors[p->n_donors++] = d;
	p->max_donors = p->n_donors;
	d->pool = p;
	return 0;
}

static int load_donor(void *arg, const struct rmp_state_donor *r)
{
	struct load *ld = arg;
	struct rmp_srv *srv = ld->srv;
	struct rmp_srv_pool *p = rmp_srv_pool_find_id(srv, r->pool_id);

	if (r->id > ld->max_donor)
		ld->max_donor = r->id;
	if (!p && r->standalone)
		return idlist_push(&ld->drop_donors, r->id);
	struct rmp_srv_donor *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->id = r->id;
	d->pool_id = r->pool_id;
	d->pid = r->pid;
	d->standalone = r->standalone;
	memcpy(d->host, r->host, sizeof(d->host));
	d->region = r->region;
	d->endpoint = r->endpoint;
	d->base = r->base;
	d->cost = r->cost;
	d->offered = r->offered;
	d->region_len = r->region.len;
	if (p && p->segtab.segments)
		d->region_len = rmp_srv_adopt_donor_bytes(&p->segtab, d->id);
	if (p && p->state == RMP_SRV_POOL_RECOVERING && p->segtab.donors &&
	    (r->state == RMP_SRV_DONOR_LOST || rmp_srv_segtab_is_lost(&p->segtab, d->id))) {
		/* Out of service for good (DESIGN.md, "Donor death"); a table
		 * not written at the loss (the store failed) is marked now. */
		d->state = RMP_SRV_DONOR_LOST;
		if (rmp_srv_segtab_donor_lost(&p->segtab, d->id, p->capacity) == 1)
			p->segtab.version++;
	} else if (p && (p->state == RMP_SRV_POOL_RECOVERING || p->state == RMP_SRV_POOL_LOST)) {
		d->state = RMP_SRV_DONOR_AWAY;
		d->away_deadline_ms = ld->now_mono + srv->cfg.donor_return_ms;
	} else if (p && p->state == RMP_SRV_POOL_PROVISIONING) {
		d->state = (enum rmp_srv_donor_state)r->state; /* recover_load fails the pool */
	} else {
		d->state = RMP_SRV_DONOR_TERMINATING;
		d->terminate_deadline_ms =
			ld->now_mono + srv->cfg.donor_return_ms + srv->cfg.terminate_ms;
	}
	if (p && pool_add_slot(p, d)) {
		free(d);
		return -ENOMEM;
	}
	d->next = srv->donors;
	srv->donors = d;
	ld->n_donors++;
	return 0;
}

static int load_lease(void *arg, const struct rmp_state_lease *r)
{
	struct load *ld = arg;
	struct rmp_srv *srv = ld->srv;
	struct rmp_srv_pool *p = rmp_srv_pool_find_id(srv, r->pool_id);

	if (!p || p->state == RMP_SRV_POOL_PROVISIONING || p->state == RMP_SRV_POOL_DESTROYING)
		return idlist_push(&ld->drop_leases, r->id);
	uint64_t deadline = rmp_srv_adopt_lease_deadline(r->expires_wall_ms, ld->now_wall,
							 ld->now_mono, srv->cfg.lease_ms);
	if (r->reclaim) /* expired before the restart: its reclaim is still due */
		return rmp_srv_reclaim_restore(srv, r);
	int rc = rmp_srv_leases_restore(&srv->leases, r->id, r->pool_id, r->session, r->slot_base,
					deadline);
	if (rc == -ENOMEM)
		return rc;
	ld->n_leases += rc == 0;
	return 0;
}

/* A pool that was being created when the coordinator stopped: it fails
 * now, and nothing of it stays but the records of its spawned donors,
 * which are told to exit when they (or their agents) come back. */
static void abandon_pool(struct rmp_srv *srv, struct rmp_srv_pool *p, uint64_t now_ms)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < p->n_donors; i++) {
		struct rmp_srv_donor *d = p->donors[i];
		if (!d)
			continue;
		p->donors[i] = NULL;
		d->pool = NULL;
		if (d->standalone) {
			rmp_srv_donor_gone(srv, d, "its pool was being created at the last stop");
			continue;
		}
		d->state = RMP_SRV_DONOR_TERMINATING;
		d->terminate_deadline_ms = now_ms + srv->cfg.donor_return_ms + srv->cfg.terminate_ms;
		rmp_srv_persist_donor_state(srv, d);
		n++;
	}
	rmp_log_warn("pool %s (id %" PRIu32 ") was being created when the coordinator stopped: it "
		     "fails now; its shm objects are removed and its %" PRIu32 " spawned donor(s) are "
		     "told to exit when they come back",
		     p->name, p->id, n);
	rmp_srv_pool_free(srv, p, true);
}

/* The counters, raised past every id on record. */
static int load_ids(struct rmp_srv *srv, const struct load *ld)
{
	uint64_t v[RMP_STATE_N_COUNTERS] = { 0 };

	for (int c = RMP_STATE_NEXT_POOL; c < RMP_STATE_N_COUNTERS; c++) {
		int rc = rmp_state_counter_get(srv->state, (enum rmp_state_counter)c, &v[c]);
		if (rc)
			return rc;
		if (v[c] == 0)
			v[c] = 1;
	}
	srv->next_pool = (uint32_t)v[RMP_STATE_NEXT_POOL];
	if (srv->next_pool <= ld->max_pool)
		srv->next_pool = ld->max_pool + 1;
	srv->next_donor = (uint32_t)v[RMP_STATE_NEXT_DONOR];
	if (srv->next_donor <= ld->max_donor)
		srv->next_donor = ld->max_donor + 1;
	srv->next_agent = (uint32_t)v[RMP_STATE_NEXT_AGENT];
	srv->next_session = srv->session_reserved = v[RMP_STATE_NEXT_SESSION];
	if (srv->leases.next_id < v[RMP_STATE_NEXT_LEASE])
		srv->leases.next_id = v[RMP_STATE_NEXT_LEASE];
	return 0;
}

int rmp_srv_recover_load(struct rmp_srv *srv, char *err, size_t errlen)
{
	struct load ld = { .srv = srv, .now_mono = rmp_mono_ms(), .now_wall = rmp_wall_ms() };
	int rc = rmp_state_pools_each(srv->state, load_pool, &ld);

	if (!rc)
		rc = rmp_state_donors_each(srv->state, load_donor, &ld);
	if (!rc)
		rc = rmp_state_leases_each(srv->state, load_lease, &ld);
	if (!rc)
		rc = load_ids(srv, &ld);
	if (!rc) {
		for (size_t i = 0; i < ld.drop_leases.n; i++)
			rmp_srv_persist_lease_gone(srv, ld.drop_leases.v[i]);
		for (size_t i = 0; i < ld.drop_donors.n; i++)
			rmp_srv_persist_donor_gone(srv, (uint32_t)ld.drop_donors.v[i]);
	}
	free(ld.drop_leases.v);
	free(ld.drop_donors.v);
	if (rc) {
		snprintf(err, errlen, "cannot load the state: %s",
			 rc == -ENOMEM ? "out of memory" : rmp_state_error(srv->state));
		return rc;
	}
	for (struct rmp_srv_pool *p = srv->pools, *next; p; p = next) {
		next = p->next;
		if (p->state == RMP_SRV_POOL_PROVISIONING)
			abandon_pool(srv, p, ld.now_mono);
	}
	rmp_log_info("state %s: generation %" PRIu64 "; %" PRIu32 " pool(s), %" PRIu32
		     " donor(s), %" PRIu32 " lease(s) on record",
		     rmp_state_path(srv->state), srv->generation, ld.n_pools, ld.n_donors, ld.n_leases);
	return 0;
}

/* Re-opens, checks, stamps and registers one object; 0, or a negative
 * errno with the reason in why (the region is unmapped again). */
static int adopt_region(struct rmp_srv *srv, struct rmp_srv_region *r, const char *shm,
			uint64_t len, const struct rmp_srv_adopt_expect *meta, char *why,
			size_t whylen)
{
	int rc = rmp_srv_meta_open(r, shm, len, why, whylen);

	if (!rc && meta)
		rc = rmp_srv_adopt_check_meta(r->mem, r->len, meta, why, whylen);
	if (!rc && !srv->rdma && srv->rdma_retry) {
		/* Sound so far; registering waits for the listener being
		 * retried (rmp_srv_recover_register). */
		rmp_srv_meta_destroy(r, false);
		return -EAGAIN;
	}
	if (!rc && !srv->rdma) {
		snprintf(why, whylen, "this coordinator has no RDMA listener (%s)",
			 rmp_srv_rdma_why_not(srv));
		rc = -ENODEV;
	}
	if (!rc && meta)
		((uint64_t *)r->mem)[RMP_BUDDY_HDR_GEN_WORD] = srv->generation; /* not registered yet */
	if (!rc)
		rc = rmp_srv_rdma_reg(srv, r, why, whylen);
	if (rc)
		rmp_srv_meta_destroy(r, false);
	return rc;
}

static void adopt_pool(struct rmp_srv *srv, struct rmp_srv_pool *p)
{
	char why[RMP_WIRE_TEXT_MAX + 1];
	struct rmp_srv_adopt_expect want = { .shm_name = p->meta_shm,
					     .space_log2 = p->space_log2,
					     .min_block_log2 = p->min_block_log2,
					     .capacity = p->capacity };

	int rc = adopt_region(srv, &p->meta, p->meta_shm, p->meta_len, &want, why, sizeof(why));
	if (!rc && p->self_donor_id) {
		rc = adopt_region(srv, &p->self, p->self_shm, page_round(p->self_len), NULL, why,
				  sizeof(why));
		if (rc) {
			rmp_srv_rdma_dereg(&p->meta);
			rmp_srv_meta_destroy(&p->meta, false);
		}
	}
	if (rc == -EAGAIN) {
		rmp_log_info("pool %s (id %" PRIu32 "): metadata %s checked; it is registered once "
			     "the rdma_cm listener is up",
			     p->name, p->id, p->meta_shm);
		return;
	}
	if (rc) {
		pool_lost(p, why);
		rmp_log_error("pool %s (id %" PRIu32 ") is lost: %s; it stays listed (rmpool status) "
			      "until `rmpool pool forget %s`",
			      p->name, p->id, why, p->name);
		rmp_srv_persist_pool(srv, p);
		return;
	}
	char t[32];
	rmp_config_format_duration(srv->cfg.donor_return_ms, t, sizeof(t));
	rmp_log_info("pool %s (id %" PRIu32 "): metadata %s re-opened and registered again (rkey "
		     "%#" PRIx32 "), generation %" PRIu64 "; waiting up to %s for its %" PRIu32
		     " donor(s)",
		     p->name, p->id, p->meta_shm, p->meta.rkey, srv->generation, t,
		     rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_AWAY));
	rmp_srv_pool_check_recovered(p);
}

void rmp_srv_recover_adopt(struct rmp_srv *srv)
{
	for (struct rmp_srv_pool *p = srv->pools, *next; p; p = next) {
		next = p->next;
		if (p->state == RMP_SRV_POOL_RECOVERING) {
			adopt_pool(srv, p);
		} else if (p->state == RMP_SRV_POOL_LOST) {
			rmp_log_error("pool %s (id %" PRIu32 ") is lost: %s", p->name, p->id, p->lost);
			rmp_srv_persist_pool(srv, p);
		} else if (p->state == RMP_SRV_POOL_DESTROYING) {
			uint32_t n = rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_TERMINATING);
			rmp_log_info("pool %s (id %" PRIu32 ") was being destroyed: %" PRIu32
				     " donor(s) are told to exit as they come back",
				     p->name, p->id, n);
			if (n == 0)
				rmp_srv_pool_destroy_done(srv, p);
		}
	}
}

void rmp_srv_recover_register(struct rmp_srv *srv)
{
	for (struct rmp_srv_pool *p = srv->pools, *next; p; p = next) {
		next = p->next;
		if (p->state == RMP_SRV_POOL_RECOVERING && !p->meta.mem)
			adopt_pool(srv, p);
	}
}
