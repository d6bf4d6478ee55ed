/* pool.c - pools: creation (donor provisioning), attach, close, destroy,
 * segment tables and leases.
 *
 * Creating a pool (POOL_OPEN, capacity > 0), all or nothing, in three
 * steps that pool_create() runs in turn:
 *   1. plan (plan.h, pure): from the agents' budgets and the spare
 *      standalone donors, the coordinator's share first, then spare
 *      standalone regions, then donors to spawn for the rest, placed over
 *      the hosts; the space, the buddy geometry, every piece's address -
 *      or one refusal with the numbers (asked, possible per host) before
 *      anything runs;
 *   2. metadata: create the metadata region in shm, format it (the tail
 *      past the capacity reserved), register it on the rdma listener's
 *      PD: from here on the CPU only reads it; the coordinator's share
 *      likewise;
 *   3. donors: the standalone ones join at once; SPAWN every other one,
 *      relaying each PROGRESS to the consumer; when every donor has
 *      handed its region over (DONOR_REGISTER, donors.c), build the
 *      segment table and answer POOL_READY with a lease.
 * A failure at any step (a spawn failing, a donor or agent or the
 * consumer disconnecting, provision-timeout) sends ERROR, TERMINATEs
 * every spawned donor already asked for, gives the standalone ones back
 * (spare again: nothing was written to them) and removes the pool: no
 * donor is left behind and the name is free again.
 *
 * Donors - spawned and standalone, their registration, spare memory,
 * failure and termination - are donors.c's; this file hears of their
 * events (rmp_srv_pool_donor_*) and acts for the pool.
 *
 * Destroying (POOL_DESTROY): TERMINATE every donor (spawned ones through
 * their agent, standalone ones on their own connection), wait for each
 * exit (bounded by terminate-timeout, see donors.c), deregister the
 * metadata, unlink its shm object, ACK.
 *
 * Re-entrancy: terminating a donor that nobody can reach frees it at
 * once (donors.c), so loops over a pool's donors first detach them
 * into a copy and never walk a list that a call may change.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "adopt.h"
#include "layout.h"
#include "clock.h"
#include "config.h"
#include "debug.h"
#include "log.h"
#include "plan.h"
#include "srv.h"

static struct rmp_srv_pool *pool_find_name(struct rmp_srv *srv, const char *name)
{
	for (struct rmp_srv_pool *p = srv->pools; p; p = p->next)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

struct rmp_srv_pool *rmp_srv_pool_find_id(struct rmp_srv *srv, uint32_t id)
{
	for (struct rmp_srv_pool *p = srv->pools; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

static void pool_progress(struct rmp_srv_pool *p, const struct rmp_srv_donor *d, uint8_t state,
			  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void pool_progress(struct rmp_srv_pool *p, const struct rmp_srv_donor *d, uint8_t state,
			  const char *fmt, ...)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_PROGRESS };
	va_list ap;

	if (!p->requester || p->request_type != RMP_MSG_POOL_OPEN)
		return;
	m.u.progress.request_id = p->id;
	m.u.progress.donor_id = d ? d->id : 0;
	m.u.progress.state = state;
	m.u.progress.pid = d ? d->pid : 0;
	va_start(ap, fmt);
	vsnprintf(m.u.progress.text, sizeof(m.u.progress.text), fmt, ap);
	va_end(ap);
	rmp_srv_conn_send(p->requester, &m);
}

static void pool_unlink(struct rmp_srv *srv, struct rmp_srv_pool *p)
{
	for (struct rmp_srv_pool **pp = &srv->pools; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

/* Frees the pool and what the coordinator holds for it; the donors must
 * have been detached already. forget: its shm objects go, then its
 * record (in that order: a crash between leaves a record whose objects
 * are gone, which a restart reports, never an object nobody names). */
void rmp_srv_pool_free(struct rmp_srv *srv, struct rmp_srv_pool *p, bool forget)
{
	pool_unlink(srv, p);
	rmp_srv_self_forget_pool(srv, p->id);
	rmp_srv_cuts_drop_pool(srv, p->id);
	if (p->timer)
		event_free(p->timer);
	rmp_srv_rdma_dereg(&p->meta);
	rmp_srv_meta_destroy(&p->meta, false);
	rmp_srv_rdma_dereg(&p->self);
	rmp_srv_meta_destroy(&p->self, false);
	if (forget) {
		rmp_srv_meta_unlink(p->meta_shm);
		rmp_srv_meta_unlink(p->self_shm);
		rmp_srv_persist_pool_gone(srv, p->id);
	}
	rmp_srv_leases_drop_pool(&srv->leases, p->id);
	rmp_srv_reclaims_drop_pool(srv, p->id);
	free(p->segtab.donors);
	free(p->segtab.segments);
	free(p->rec_segtab);
	free(p->donors);
	free(p);
}

uint32_t rmp_srv_pool_count_donors(const struct rmp_srv_pool *p, enum rmp_srv_donor_state st)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < p->n_donors; i++)
		n += p->donors[i] && p->donors[i]->state == st;
	return n;
}

static uint32_t pool_live_donors(const struct rmp_srv_pool *p)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < p->n_donors; i++)
		n += p->donors[i] != NULL;
	return n;
}

static void pool_detach(struct rmp_srv_pool *p, struct rmp_srv_donor *d)
{
	bool found = false;

	rmp_assert(d->pool == p);
	for (uint32_t i = 0; i < p->n_donors; i++) {
		if (p->donors[i] == d) {
			p->donors[i] = NULL;
			found = true;
		}
	}
	rmp_assert(found); /* d->pool == p means d is in p->donors */
	d->pool = NULL;
}

/* Detaches every donor and asks each to exit (with release_standalone,
 * the standalone ones become spare again instead). */
static void pool_terminate_donors(struct rmp_srv *srv, struct rmp_srv_pool *p,
				  bool release_standalone)
{
	uint32_t n = 0;
	struct rmp_srv_donor **v = calloc(p->n_donors ? p->n_donors : 1, sizeof(*v));

	if (!v) {
		/* Cannot even copy: terminate from the pool's array, slot by slot. */
		for (uint32_t i = 0; i < p->n_donors; i++) {
			struct rmp_srv_donor *d = p->donors[i];
			if (d) {
				pool_detach(p, d);
				if (release_standalone && d->standalone)
					rmp_srv_donor_release(srv, d);
				else
					rmp_srv_donor_terminate(srv, d);
			}
		}
		return;
	}
	for (uint32_t i = 0; i < p->n_donors; i++) {
		if (p->donors[i]) {
			v[n++] = p->donors[i];
			pool_detach(p, p->donors[i]);
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		if (release_standalone && v[i]->standalone)
			rmp_srv_donor_release(srv, v[i]);
		else
			rmp_srv_donor_terminate(srv, v[i]);
	}
	free(v);
}

/* Provisioning failed: tell the consumer, take every donor down, forget
 * the pool (its shm object goes too: no one ever saw it). */
static void pool_fail(struct rmp_srv *srv, struct rmp_srv_pool *p, int code, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));
static void pool_fail(struct rmp_srv *srv, struct rmp_srv_pool *p, int code, const char *fmt,
		      ...)
{
	char why[RMP_WIRE_TEXT_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	srv->m.pool_failures_total++;
	rmp_log_warn("pool %s: creation failed: %s; terminating its %" PRIu32 " donor(s)", p->name,
		     why, pool_live_donors(p));
	if (p->requester)
		rmp_srv_conn_send_error(p->requester, code, RMP_MSG_POOL_OPEN, "pool %s: %s",
					p->name, why);
	p->requester = NULL;
	pool_terminate_donors(srv, p, true);
	rmp_srv_pool_free(srv, p, true);
}

static void provision_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rmp_srv_pool *p = arg;
	struct rmp_srv *srv = p->srv;
	char d[32];

	rmp_config_format_duration(srv->cfg.provision_ms, d, sizeof(d));
	pool_fail(srv, p, ETIMEDOUT, "only %" PRIu32 " of %" PRIu32 " donors registered within %s",
		  p->registered, p->n_donors, d);
}

static int grant_and_send_ready(struct rmp_srv_conn *c, struct rmp_srv_pool *p)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_wire_msg m = { .type = RMP_MSG_POOL_READY };
	uint64_t lease;

	rmp_assert(p->state == RMP_SRV_POOL_READY);
	/* A session cut off from this pool stays cut (its id is on the
	 * donors' and our cut lists): a new lease under it could not connect
	 * anywhere. A new connection brings a new session id. */
	if (rmp_srv_cut_refused(srv, p->id, c->session_id)) {
		rmp_srv_conn_send_error(c, EACCES, RMP_MSG_POOL_OPEN,
					"pool %s: this session (client %" PRIu64 ") was cut off when its "
					"lease expired; connect again to attach",
					p->name, c->session_id);
		return -EACCES;
	}
	uint32_t slot_base;
	int rc = rmp_srv_slots_pick(srv, p, &slot_base);
	if (rc) {
		rmp_srv_conn_send_error(c, EBUSY, RMP_MSG_POOL_OPEN,
					"pool %s has no free consumer slot (%u slots / %u per consumer; "
					"%" PRIu32 " consumers at most, %" PRIu32 " taken by live leases "
					"and expired ones not yet reclaimed)",
					p->name, p->geom.slots, RMP_SRV_LEASE_SLOTS,
					rmp_srv_slot_groups(p), rmp_srv_slot_groups_taken(srv, p));
		return -EBUSY;
	}
	rc = rmp_srv_leases_grant(&srv->leases, p->id, c->session_id, slot_base, c, rmp_mono_ms(),
				  &lease);
	if (rc) {
		rmp_srv_conn_send_error(c, rc, RMP_MSG_POOL_OPEN, "out of memory for a lease");
		return rc;
	}
	rc = rmp_srv_persist_lease(srv, lease);
	if (rc) {
		rmp_srv_leases_release(&srv->leases, lease);
		rmp_srv_conn_send_error(c, EIO, RMP_MSG_POOL_OPEN,
					"pool %s: the coordinator cannot record a lease: %s", p->name,
					rmp_srv_persist_error(srv));
		return rc;
	}
	/* Live in the table a running reclaim reads before the client can
	 * allocate a block (self.c). */
	rmp_srv_self_parties(srv, p);
	m.u.pool_ready.pool_id = p->id;
	m.u.pool_ready.lease_id = lease;
	m.u.pool_ready.lease_ms = (uint32_t)srv->cfg.lease_ms;
	m.u.pool_ready.slot_base = slot_base;
	m.u.pool_ready.segtab = p->segtab;
	rc = rmp_srv_conn_send(c, &m);
	if (rc) {
		rmp_srv_leases_release(&srv->leases, lease);
		rmp_srv_persist_lease_gone(srv, lease);
		rmp_srv_conn_send_error(c, rc, RMP_MSG_POOL_OPEN,
					"cannot send the segment table: %s", strerror(-rc));
		return rc;
	}
	rmp_log_info("pool %s: lease %" PRIu64 " granted to session %" PRIu64 " (%s), slots %" PRIu32
		     "..%" PRIu32,
		     p->name, lease, c->session_id, c->peer, slot_base,
		     slot_base == RMP_SRV_NO_SLOT ? slot_base : slot_base + RMP_SRV_LEASE_SLOTS - 1);
	return 0;
}

/* Every donor is in: build the segment table, answer POOL_READY. */
static void pool_finish_provisioning(struct rmp_srv *srv, struct rmp_srv_pool *p)
{
	struct rmp_wire_segtab *t = &p->segtab;
	char err[RMP_WIRE_TEXT_MAX + 1];
	uint32_t nb = 0;

	rmp_assert(p->state == RMP_SRV_POOL_PROVISIONING && p->registered == p->n_donors);
	rmp_assert(p->segment_log2 <= p->space_log2 && p->space_log2 < 64);
	t->version = 1;
	t->capacity = p->capacity;
	t->space_log2 = (uint8_t)p->space_log2;
	t->min_block_log2 = (uint8_t)p->min_block_log2;
	t->segment_log2 = (uint8_t)p->segment_log2;
	t->meta = (struct rmp_wire_region){ .addr = (uint64_t)(uintptr_t)p->meta.mem,
					    .len = p->meta.len,
					    .rkey = p->meta.rkey };
	rmp_srv_rdma_endpoint(srv, &t->coordinator);
	t->n_donors = p->n_donors + (p->self_donor_id != 0);
	t->n_segments = (uint32_t)(UINT64_C(1) << (p->space_log2 - p->segment_log2));
	rmp_assert(t->n_segments <= RMP_WIRE_MAX_SEGMENTS); /* the plan refused more */
	t->donors = calloc(t->n_donors ? t->n_donors : 1, sizeof(*t->donors));
	t->segments = calloc(t->n_segments, sizeof(*t->segments));
	struct rmp_srv_backing *b = calloc(t->n_donors ? t->n_donors : 1, sizeof(*b));
	if (!t->donors || !t->segments || !b) {
		free(b);
		pool_fail(srv, p, ENOMEM, "out of memory for the segment table");
		return;
	}
	if (p->self_donor_id) {
		t->donors[nb].donor_id = p->self_donor_id;
		t->donors[nb].endpoint = t->coordinator;
		b[nb] = (struct rmp_srv_backing){ .donor_id = p->self_donor_id,
						  .rkey = p->self.rkey,
						  .addr = (uint64_t)(uintptr_t)p->self.mem,
						  .len = p->self.len,
						  .base = 0 };
		nb++;
	}
	for (uint32_t i = 0; i < p->n_donors; i++) {
		const struct rmp_srv_donor *d = p->donors[i];
		/* a donor that left fails the pool before it is complete */
		rmp_assert(d && d->pool == p && d->state == RMP_SRV_DONOR_REGISTERED);
		t->donors[nb].donor_id = d->id;
		t->donors[nb].endpoint = d->endpoint;
		b[nb] = (struct rmp_srv_backing){ .donor_id = d->id,
						  .rkey = d->region.rkey,
						  .addr = d->region.addr,
						  .len = d->region_len,
						  .base = d->base };
		nb++;
	}
	rmp_assert(nb == t->n_donors);
	int rc = rmp_srv_segtab_fill(t->segments, t->n_segments, p->segment_log2, b, nb, err,
				     sizeof(err));
	free(b);
	if (rc) {
		pool_fail(srv, p, -rc, "segment table: %s", err);
		return;
	}
	/* On record before anyone hears that it is ready. */
	p->state = RMP_SRV_POOL_READY;
	rc = rmp_srv_persist_pool(srv, p);
	if (rc) {
		p->state = RMP_SRV_POOL_PROVISIONING;
		pool_fail(srv, p, EIO, "cannot record the pool: %s", rmp_srv_persist_error(srv));
		return;
	}
	if (p->timer)
		evtimer_del(p->timer);
	srv->m.pools_created_total++;
	char cap[32], space[32];
	rmp_config_format_bytes(p->capacity, cap, sizeof(cap));
	rmp_config_format_bytes(p->space, space, sizeof(space));
	rmp_log_info("pool %s (id %" PRIu32 ") ready: %s usable in a %s space, %" PRIu32
		     " donor(s), %" PRIu32 " segments",
		     p->name, p->id, cap, space, p->n_donors, t->n_segments);
	struct rmp_srv_conn *c = p->requester;
	p->requester = NULL;
	p->request_type = 0;
	if (c)
		grant_and_send_ready(c, p);
}

/* A pool that is not ready refuses what needs it ready, saying why: one
 * being re-adopted with EAGAIN (try again in a moment), a lost one with
 * EIO and the reason, one being created or destroyed with EBUSY. */
static bool pool_refuse_unready(struct rmp_srv_conn *c, const struct rmp_srv_pool *p,
				uint8_t ref_type)
{
	switch (p->state) {
	case RMP_SRV_POOL_READY:
		return false;
	case RMP_SRV_POOL_RECOVERING:
		rmp_srv_conn_send_error(c, EAGAIN, ref_type,
					"pool %s is being re-adopted after a restart: %" PRIu32
					" of its donors have not registered again yet",
					p->name, rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_AWAY));
		return true;
	case RMP_SRV_POOL_LOST: {
		/* A wire text holds RMP_WIRE_TEXT_MAX bytes: when the hint does
		 * not fit, the reason goes whole and the hint not at all (a cut
		 * one reads as garbage). */
		char text[RMP_WIRE_TEXT_MAX + 1];
		int n = snprintf(text, sizeof(text), "pool %s is lost: %s (rmpool pool forget %s removes it)",
				 p->name, p->lost, p->name);
		if (n < 0 || (size_t)n >= sizeof(text))
			rmp_errf(text, sizeof(text), "pool %s is lost: %s", p->name, p->lost);
		rmp_srv_conn_send_error(c, EIO, ref_type, "%s", text);
		return true;
	}
	default:
		rmp_srv_conn_send_error(c, EBUSY, ref_type, "pool %s is being %s", p->name,
					p->state == RMP_SRV_POOL_PROVISIONING ? "created"
									      : "destroyed");
		return true;
	}
}

static void pool_attach(struct rmp_srv_conn *c, const struct rmp_wire_pool_open *o)
{
	struct rmp_srv_pool *p = pool_find_name(c->srv, o->name);

	if (!p) {
		rmp_srv_conn_send_error(c, ENOENT, RMP_MSG_POOL_OPEN,
					"no pool named %s (give a capacity to create it)", o->name);
		return;
	}
	if (pool_refuse_unready(c, p, RMP_MSG_POOL_OPEN))
		return;
	grant_and_send_ready(c, p);
}

/* What a plan is made from, gathered from the coordinator's lists: the
 * agents (in list order: placement ties go to the first) with the budget
 * each has left, and the spare standalone donors, oldest first (the list
 * is newest first). */
struct pool_sources {
	struct rmp_srv_plan_host *hosts;
	size_t n_hosts;
	struct rmp_srv_plan_spare *spare;
	size_t n_spare;
};

static int pool_sources_collect(struct rmp_srv *srv, struct pool_sources *src)
{
	memset(src, 0, sizeof(*src));
	for (struct rmp_srv_agent *a = srv->agents; a; a = a->next)
		src->n_hosts++;
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next)
		src->n_spare += rmp_srv_donor_spare(d);
	src->hosts = calloc(src->n_hosts ? src->n_hosts : 1, sizeof(*src->hosts));
	src->spare = calloc(src->n_spare ? src->n_spare : 1, sizeof(*src->spare));
	if (!src->hosts || !src->spare)
		return -ENOMEM;
	size_t i = 0;
	for (struct rmp_srv_agent *a = srv->agents; a; a = a->next, i++)
		src->hosts[i] = (struct rmp_srv_plan_host){
			.name = a->host,
			.budget = a->budget > a->used ? a->budget - a->used : 0,
			.process_limit = a->process_limit,
			.donor_footprint = a->donor_footprint,
			.owner = a,
		};
	i = src->n_spare;
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next)
		if (rmp_srv_donor_spare(d))
			src->spare[--i] = (struct rmp_srv_plan_spare){ .offered = d->offered, .owner = d };
	return 0;
}

static void pool_sources_fini(struct pool_sources *src)
{
	free(src->hosts);
	free(src->spare);
}

/* The pool's record for a plan, in PROVISIONING and not yet listed. */
static struct rmp_srv_pool *pool_new(struct rmp_srv_conn *c, const struct rmp_wire_pool_open *o,
				     const struct rmp_srv_plan *plan)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_srv_pool *p = calloc(1, sizeof(*p));
	uint64_t n = plan->n_standalone + plan->n_spawn;

	if (!p)
		return NULL;
	p->donors = calloc(n ? n : 1, sizeof(*p->donors));
	if (!p->donors) {
		free(p);
		return NULL;
	}
	p->max_donors = (uint32_t)n;
	p->srv = srv;
	p->id = srv->next_pool++;
	memcpy(p->name, o->name, sizeof(p->name));
	p->state = RMP_SRV_POOL_PROVISIONING;
	p->capacity = o->capacity;
	p->space = plan->geo.space;
	p->space_log2 = plan->geo.space_log2;
	p->segment_log2 = plan->geo.segment_log2;
	p->min_block_log2 = plan->min_block_log2;
	p->geom = plan->buddy;
	p->requester = c;
	p->request_type = RMP_MSG_POOL_OPEN;
	/* What its record names (meta.c makes the same names and rounds the
	 * same way): the record is written before the objects exist. */
	long page = sysconf(_SC_PAGESIZE);
	uint64_t pg = page > 0 ? (uint64_t)page : 4096u;
	snprintf(p->meta_shm, sizeof(p->meta_shm), "/rmpool-%s", p->name);
	p->meta_len = (p->geom.total_words * sizeof(uint64_t) + pg - 1) & ~(pg - 1);
	if (plan->self_len) {
		snprintf(p->self_shm, sizeof(p->self_shm), "/rmpool-%s.self", p->name);
		p->self_len = plan->self_len;
		p->self_donor_id = srv->next_donor++;
	}
	return p;
}

/* Frees a pool that was never listed (a failed metadata step). Only a
 * region that was mapped is ours to unlink: a create refused with EEXIST
 * names another coordinator's object, which must stay. */
static void pool_discard(struct rmp_srv_pool *p)
{
	struct rmp_srv_region *own[] = { &p->self, &p->meta };

	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		if (own[i]->mem) {
			rmp_srv_rdma_dereg(own[i]);
			rmp_srv_meta_destroy(own[i], true);
		}
	}
	if (p->timer)
		event_free(p->timer);
	free(p->donors);
	free(p);
}

/* The second step: the metadata region in shm, formatted (the tail past
 * the capacity reserved) and registered on the rdma listener's PD - from
 * here on the CPU only reads it - then the coordinator's own share and
 * the provisioning timer. 0, or a negative errno with the ERROR text in
 * err; the caller discards the pool. */
static int pool_setup_meta(struct rmp_srv *srv, struct rmp_srv_pool *p, uint64_t self_len,
			   char *err, size_t errlen)
{
	char why[RMP_WIRE_TEXT_MAX + 1];

	int rc = rmp_srv_meta_create(&p->meta, p->name, "", p->geom.total_words * sizeof(uint64_t),
				     why, sizeof(why));
	if (rc == 0) {
		rmp_assert(p->meta.len == p->meta_len);
		rmp_buddy_format(p->meta.mem, &p->geom, p->capacity);
		/* Plain stores, before the key exists (DESIGN.md, "Generations"). */
		((uint64_t *)p->meta.mem)[RMP_BUDDY_HDR_GEN_WORD] = srv->generation;
		rc = rmp_srv_rdma_reg(srv, &p->meta, why, sizeof(why));
	}
	if (rc) {
		rmp_errf(err, errlen, "pool %s: metadata: %s", p->name, why);
		return rc;
	}
	if (self_len) {
		rmp_assert(self_len == p->self_len && p->self_donor_id != 0);
		rc = rmp_srv_meta_create(&p->self, p->name, ".self", self_len, why, sizeof(why));
		if (rc == 0)
			rc = rmp_srv_rdma_reg(srv, &p->self, why, sizeof(why));
		if (rc) {
			rmp_errf(err, errlen, "pool %s: self-contribution: %s", p->name, why);
			return rc;
		}
		p->self.len = self_len; /* the page-rounded rest backs nothing */
	}
	p->timer = evtimer_new(srv->base, provision_timeout_cb, p);
	if (!p->timer) {
		rmp_errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* The standalone donors the plan takes join the pool at once: their
 * regions are registered already. */
static void pool_take_standalone(struct rmp_srv_pool *p, const struct rmp_srv_plan *plan,
				 const struct pool_sources *src)
{
	for (size_t i = 0; i < plan->n_standalone; i++) {
		const struct rmp_srv_plan_piece *pc = &plan->standalone[i];
		rmp_assert(pc->from < src->n_spare);
		struct rmp_srv_donor *d = src->spare[pc->from].owner;
		char len[32];
		rmp_srv_donor_join(d, p, pc->len, pc->base);
		rmp_config_format_bytes(d->region_len, len, sizeof(len));
		rmp_log_info("pool %s: standalone donor %" PRIu32 " on %s gives %s at pool address "
			     "%" PRIu64,
			     p->name, d->id, d->host, len, d->base);
		pool_progress(p, d, RMP_PROGRESS_SPAWNED,
			      "standalone donor %" PRIu32 " on %s gives %s (%" PRIu32 "/%" PRIu64
			      " ready)",
			      d->id, d->host, len, p->registered,
			      plan->n_standalone + plan->n_spawn);
	}
}

/* The third step: every donor's record (the standalone ones have joined
 * already), all of them written down in one transaction, then SPAWN the
 * spawned ones, host by host in placement order, each relaying its
 * PROGRESS to the consumer from now on. 0, or the pool has failed (and
 * is freed). */
static int pool_spawn_donors(struct rmp_srv *srv, struct rmp_srv_pool *p,
			     const struct rmp_srv_plan *plan, const struct pool_sources *src)
{
	for (uint64_t k = 0; k < plan->n_spawn; k++) {
		const struct rmp_srv_plan_piece *pc = &plan->spawn[k];
		rmp_assert(pc->from < src->n_hosts);
		if (!rmp_srv_donor_new_spawned(srv, p, src->hosts[pc->from].owner, pc->len,
					       pc->base)) {
			pool_fail(srv, p, ENOMEM, "out of memory for donor %" PRIu64, k);
			return -ENOMEM;
		}
	}
	if (rmp_srv_persist_pool_donors(srv, p)) {
		/* No SPAWN went out: the records go at once (donors.c). */
		pool_fail(srv, p, EIO, "cannot record its donors: %s", rmp_srv_persist_error(srv));
		return -EIO;
	}
	for (uint32_t i = 0; i < p->n_donors; i++) {
		struct rmp_srv_donor *d = p->donors[i];
		if (!d || d->standalone)
			continue;
		int rc = rmp_srv_agent_spawn(srv, d, srv->cfg.segment_size);
		if (rc) {
			pool_fail(srv, p, -rc, "cannot send SPAWN to the agent on %s: %s", d->host,
				  strerror(-rc));
			return rc;
		}
	}
	return 0;
}

/* POOL_OPEN with a capacity, all or nothing: plan, metadata, donors (see
 * the top of the file). Every refusal before the pool exists sends the
 * plan's one text; after, pool_fail undoes what was started. */
static void pool_create(struct rmp_srv_conn *c, const struct rmp_wire_pool_open *o)
{
	struct rmp_srv *srv = c->srv;
	const struct rmp_srv_cfg *cfg = &srv->cfg;
	char err[RMP_WIRE_TEXT_MAX + 1];
	struct pool_sources src;
	struct rmp_srv_plan plan = { 0 };

	if (pool_find_name(srv, o->name)) {
		rmp_srv_conn_send_error(c, EEXIST, RMP_MSG_POOL_OPEN,
					"pool %s exists already (capacity 0 attaches to it)",
					o->name);
		return;
	}
	if (!srv->rdma) {
		rmp_srv_conn_send_error(c, ENODEV, RMP_MSG_POOL_OPEN,
					"cannot create pool %s: this coordinator has no RDMA "
					"listener (%s)",
					o->name, rmp_srv_rdma_why_not(srv));
		return;
	}
	if (pool_sources_collect(srv, &src)) {
		rmp_srv_conn_send_error(c, ENOMEM, RMP_MSG_POOL_OPEN, "out of memory");
		goto out_free_sources;
	}
	/* 1. plan */
	struct rmp_srv_plan_req rq = { .name = o->name,
				       .capacity = o->capacity,
				       .min_block = o->min_block,
				       .segment_size = cfg->segment_size,
				       .default_min_block = cfg->min_block,
				       .self_contribution = cfg->self_contribution,
				       .hosts = src.hosts,
				       .n_hosts = src.n_hosts,
				       .spare = src.spare,
				       .n_spare = src.n_spare };
	int rc = rmp_srv_plan_make(&rq, &plan);
	if (rc) {
		rmp_srv_conn_send_error(c, rc, RMP_MSG_POOL_OPEN, "%s", plan.err);
		goto out_free_plan;
	}
	/* 2. metadata, on record before its shm objects exist */
	struct rmp_srv_pool *p = pool_new(c, o, &plan);
	if (!p) {
		srv->m.pool_failures_total++;
		rmp_srv_conn_send_error(c, ENOMEM, RMP_MSG_POOL_OPEN, "out of memory");
		goto out_free_plan;
	}
	if (rmp_srv_persist_pool(srv, p)) {
		srv->m.pool_failures_total++;
		rmp_srv_conn_send_error(c, EIO, RMP_MSG_POOL_OPEN,
					"pool %s: the coordinator cannot record it: %s", p->name,
					rmp_srv_persist_error(srv));
		pool_discard(p);
		goto out_free_plan;
	}
	rc = pool_setup_meta(srv, p, plan.self_len, err, sizeof(err));
	if (rc) {
		srv->m.pool_failures_total++;
		rmp_srv_conn_send_error(c, rc, RMP_MSG_POOL_OPEN, "%s", err);
		uint32_t id = p->id;
		pool_discard(p); /* its objects first, then the record that names them */
		rmp_srv_persist_pool_gone(srv, id);
		goto out_free_plan;
	}
	p->next = srv->pools;
	srv->pools = p;

	/* 3. donors: the standalone ones are in already; spawn the others */
	char asked[32], region[32], given[32];
	rmp_config_format_bytes(o->capacity, asked, sizeof(asked));
	rmp_config_format_bytes(plan.region_len, region, sizeof(region));
	rmp_config_format_bytes(plan.standalone_bytes, given, sizeof(given));
	rmp_log_info("pool %s (id %" PRIu32 "): %s asked by %s: %zu standalone donor(s) give %s, "
		     "%" PRIu64 " donor(s) of up to %s to spawn, %s from the coordinator",
		     p->name, p->id, asked, c->peer, plan.n_standalone, given, plan.n_spawn, region,
		     plan.self_len ? "some" : "nothing");
	pool_take_standalone(p, &plan, &src);
	if (pool_spawn_donors(srv, p, &plan, &src))
		goto out_free_plan; /* the pool has failed and is gone */
	if (p->registered == p->n_donors) {
		pool_finish_provisioning(srv, p);
		goto out_free_plan;
	}
	struct timeval tv = { .tv_sec = (time_t)(cfg->provision_ms / 1000),
			      .tv_usec = (suseconds_t)(cfg->provision_ms % 1000) * 1000 };
	evtimer_add(p->timer, &tv);
out_free_plan:
	rmp_srv_plan_free(&plan);
out_free_sources:
	pool_sources_fini(&src);
}

void rmp_srv_pool_open(struct rmp_srv_conn *c, const struct rmp_wire_pool_open *o)
{
	char err[RMP_WIRE_TEXT_MAX + 1];

	if (rmp_srv_plan_check_name(o->name, err, sizeof(err))) {
		rmp_srv_conn_send_error(c, EINVAL, RMP_MSG_POOL_OPEN, "%s", err);
		return;
	}
	if (o->capacity == 0)
		pool_attach(c, o);
	else
		pool_create(c, o);
}

void rmp_srv_pool_donor_spawned(struct rmp_srv_pool *p, struct rmp_srv_donor *d)
{
	if (p->state == RMP_SRV_POOL_PROVISIONING)
		pool_progress(p, d, RMP_PROGRESS_SPAWNED, "donor %" PRIu32 " started on %s (pid %" PRIu32 ")",
			      d->id, d->host, d->pid);
}

void rmp_srv_pool_donor_registered(struct rmp_srv_pool *p, struct rmp_srv_donor *d)
{
	char len[32];

	rmp_assert(d->pool == p && p->registered <= p->n_donors);
	rmp_config_format_bytes(d->region_len, len, sizeof(len));
	pool_progress(p, d, RMP_PROGRESS_SPAWNED,
		      "donor %" PRIu32 " on %s gave %s (%" PRIu32 "/%" PRIu32 " ready)", d->id,
		      d->host, len, p->registered, p->n_donors);
	if (p->registered == p->n_donors)
		pool_finish_provisioning(p->srv, p);
}

void rmp_srv_pool_donor_failed(struct rmp_srv_pool *p, struct rmp_srv_donor *d, const char *why)
{
	pool_detach(p, d);
	switch (p->state) {
	case RMP_SRV_POOL_PROVISIONING:
		pool_progress(p, d, RMP_PROGRESS_FAILED, "donor %" PRIu32 " on %s: %s", d->id,
			      d->host, why);
		pool_fail(p->srv, p, EIO, "donor %" PRIu32 " on %s: %s", d->id, d->host, why);
		break;
	case RMP_SRV_POOL_READY:
	case RMP_SRV_POOL_RECOVERING:
	case RMP_SRV_POOL_LOST:
		rmp_log_warn("pool %s: donor %" PRIu32 " on %s is gone (%s): reads and writes of "
			     "its segments fail from now on",
			     p->name, d->id, d->host, why);
		rmp_srv_pool_check_recovered(p);
		break;
	case RMP_SRV_POOL_DESTROYING:
		rmp_srv_pool_donor_exited(p, d);
		break;
	}
}

void rmp_srv_pool_destroy_done(struct rmp_srv *srv, struct rmp_srv_pool *p)
{
	struct rmp_srv_conn *c = p->requester;

	rmp_log_info("pool %s (id %" PRIu32 ") destroyed", p->name, p->id);
	rmp_srv_pool_free(srv, p, true);
	if (c) {
		struct rmp_wire_msg m = { .type = RMP_MSG_ACK };
		m.u.ack.ref_type = RMP_MSG_POOL_DESTROY;
		rmp_srv_conn_send(c, &m);
	}
}

void rmp_srv_pool_donor_exited(struct rmp_srv_pool *p, struct rmp_srv_donor *d)
{
	if (!p)
		return;
	pool_detach(p, d);
	/* The last exit completes a destroy; a pool whose donors were all
	 * detached at once (pool_terminate_donors) finishes there instead. */
	if (p->state == RMP_SRV_POOL_DESTROYING && !p->busy && pool_live_donors(p) == 0)
		rmp_srv_pool_destroy_done(p->srv, p);
}

void rmp_srv_pool_close(struct rmp_srv_conn *c, const struct rmp_wire_pool_close *pc)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_srv_lease *l = rmp_srv_leases_find(&srv->leases, pc->lease_id);

	if (!l || l->pool_id != pc->pool_id) {
		rmp_srv_conn_send_error(c, ENOENT, RMP_MSG_POOL_CLOSE,
					"no lease %" PRIu64 " on pool %" PRIu32, pc->lease_id,
					pc->pool_id);
		return;
	}
	rmp_srv_leases_release(&srv->leases, pc->lease_id);
	rmp_srv_persist_lease_gone(srv, pc->lease_id);
	rmp_log_info("lease %" PRIu64 " on pool %" PRIu32 " closed by %s", pc->lease_id,
		     pc->pool_id, c->peer);
	struct rmp_wire_msg m = { .type = RMP_MSG_ACK };
	m.u.ack.ref_type = RMP_MSG_POOL_CLOSE;
	rmp_srv_conn_send(c, &m);
}

void rmp_srv_pool_destroy(struct rmp_srv_conn *c, const struct rmp_wire_pool_destroy *pd)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_srv_pool *p = pool_find_name(srv, pd->name);

	if (!p) {
		rmp_srv_conn_send_error(c, ENOENT, RMP_MSG_POOL_DESTROY, "no pool named %s",
					pd->name);
		return;
	}
	if (p->state == RMP_SRV_POOL_PROVISIONING || p->state == RMP_SRV_POOL_DESTROYING) {
		rmp_srv_conn_send_error(c, EBUSY, RMP_MSG_POOL_DESTROY, "pool %s is being %s",
					p->name,
					p->state == RMP_SRV_POOL_PROVISIONING ? "created"
									      : "destroyed");
		return;
	}
	/* On record first: a restart in the middle finishes the destroy. */
	enum rmp_srv_pool_state was = p->state;
	p->state = RMP_SRV_POOL_DESTROYING;
	if (rmp_srv_persist_pool(srv, p)) {
		p->state = was;
		rmp_srv_conn_send_error(c, EIO, RMP_MSG_POOL_DESTROY,
					"pool %s: the coordinator cannot record the destroy: %s",
					p->name, rmp_srv_persist_error(srv));
		return;
	}
	uint32_t held = rmp_srv_leases_count_pool(&srv->leases, p->id);
	rmp_log_info("pool %s: destroy asked by %s (%" PRIu32 " lease(s) held); terminating %" PRIu32
		     " donor(s)",
		     p->name, c->peer, held, pool_live_donors(p));
	p->requester = c;
	p->request_type = RMP_MSG_POOL_DESTROY;
	rmp_srv_leases_drop_pool(&srv->leases, p->id);
	rmp_srv_reclaims_drop_pool(srv, p->id);

	/* Ask every donor to exit; each exit detaches it from the pool, the
	 * last one finishes the destroy (rmp_srv_pool_donor_exited). The
	 * unreachable ones exit at once, inside the loop: count those after. */
	uint32_t n = p->n_donors;
	struct rmp_srv_donor **v = malloc((n ? n : 1) * sizeof(*v));
	if (v) {
		memcpy(v, p->donors, n * sizeof(*v));
		/* Hold the finish back until every TERMINATE is out. */
		p->busy = true;
		for (uint32_t i = 0; i < n; i++)
			if (v[i])
				rmp_srv_donor_terminate(srv, v[i]);
		free(v);
		p->busy = false;
	} else {
		pool_terminate_donors(srv, p, false);
	}
	if (pool_live_donors(p) == 0)
		rmp_srv_pool_destroy_done(srv, p);
}

/* POOL_FORGET: an operator gives up on a pool whose donors are gone for
 * good - lost, or one whose metadata could not be re-adopted. Its
 * records, its state and its shm objects go; nothing is terminated (no
 * donor of it runs), so a pool with a live donor, or served by the
 * coordinator's own memory, is refused: destroy that. */
void rmp_srv_pool_forget(struct rmp_srv_conn *c, const struct rmp_wire_pool_forget *f)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_srv_pool *p = pool_find_name(srv, f->name);

	if (!p) {
		rmp_srv_conn_send_error(c, ENOENT, RMP_MSG_POOL_FORGET, "no pool named %s", f->name);
		return;
	}
	uint32_t live = rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_REGISTERED) +
			rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_AWAY);
	bool self = p->self_donor_id && p->self.mem && p->state != RMP_SRV_POOL_LOST;
	if (p->state == RMP_SRV_POOL_PROVISIONING || p->state == RMP_SRV_POOL_DESTROYING || live ||
	    self) {
		rmp_srv_conn_send_error(c, EBUSY, RMP_MSG_POOL_FORGET,
					"pool %s %s: destroy it instead (rmpool pool destroy %s)",
					p->name,
					p->state == RMP_SRV_POOL_PROVISIONING ? "is being created"
					: p->state == RMP_SRV_POOL_DESTROYING ? "is being destroyed"
					: live ? "has donors that are alive or may come back"
					       : "is served by the coordinator's own memory",
					p->name);
		return;
	}
	uint32_t lost = rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_LOST);
	rmp_log_warn("pool %s (id %" PRIu32 ") forgotten, asked by %s: %" PRIu32 " lost donor(s)%s%s",
		     p->name, p->id, c->peer, lost, p->lost[0] ? "; it was lost: " : "", p->lost);
	for (uint32_t i = 0; i < p->n_donors; i++) {
		struct rmp_srv_donor *d = p->donors[i];
		if (d) {
			pool_detach(p, d);
			rmp_srv_donor_gone(srv, d, "its pool was forgotten");
		}
	}
	rmp_srv_pool_free(srv, p, true);
	struct rmp_wire_msg m = { .type = RMP_MSG_ACK };
	m.u.ack.ref_type = RMP_MSG_POOL_FORGET;
	rmp_srv_conn_send(c, &m);
}

/* Every donor of a re-adopted pool is back or lost: its table gets the
 * new metadata key and address, the coordinator's endpoint and share,
 * and a new version, written down before the pool is ready again. */
void rmp_srv_pool_check_recovered(struct rmp_srv_pool *p)
{
	struct rmp_srv *srv = p->srv;
	char err[RMP_WIRE_TEXT_MAX + 1];

	/* Not before its metadata is re-adopted (that waits for the rdma_cm
	 * listener, rdma_listen.c): its donors may all be back sooner. */
	if (p->state != RMP_SRV_POOL_RECOVERING || !srv->adopted ||
	    rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_AWAY))
		return;
	struct rmp_srv_adopt_patch pt = {
		.meta = { .addr = (uint64_t)(uintptr_t)p->meta.mem, .len = p->meta.len, .rkey = p->meta.rkey },
		.self_donor_id = p->self_donor_id,
		.self = { .addr = (uint64_t)(uintptr_t)p->self.mem, .len = p->self_len, .rkey = p->self.rkey },
	};
	rmp_srv_rdma_endpoint(srv, &pt.coordinator);
	uint64_t version = p->segtab.version;
	int rc = rmp_srv_adopt_segtab_patch(&p->segtab, &pt, err, sizeof(err));
	if (rc) {
		rmp_errf(p->lost, sizeof(p->lost), "its recorded segment table: %s", err);
		p->state = RMP_SRV_POOL_LOST;
		rmp_log_error("pool %s is lost: %s", p->name, p->lost);
		rmp_srv_persist_pool(srv, p);
		return;
	}
	p->state = RMP_SRV_POOL_READY;
	if (rmp_srv_persist_pool(srv, p)) {
		/* Not on record: stay recovering and try again on the tick. */
		p->state = RMP_SRV_POOL_RECOVERING;
		p->segtab.version = version;
		return;
	}
	srv->m.pools_readopted_total++;
	/* Lost donors' segments: retired again (idempotent), in case a
	 * restart came between a loss and its retire passes. */
	if (rmp_srv_pool_degraded(p))
		rmp_srv_self_retire_lost(srv, p);
	uint32_t lost = rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_LOST);
	rmp_log_info("pool %s (id %" PRIu32 ") re-adopted and ready, %" PRIu64 " ms after the start: "
		     "%" PRIu32 " donor(s) back, %" PRIu32 " lost; segment table version %" PRIu64,
		     p->name, p->id, rmp_mono_ms() - srv->start_ms,
		     rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_REGISTERED), lost, p->segtab.version);
}

/* ---- donor death (DESIGN.md, "Donor death") ---- */

/* The new table to every consumer holding a lease on p, once per
 * connection (a consumer may hold several). Returns how many got it. */
static uint32_t pool_push_segtab(struct rmp_srv *srv, struct rmp_srv_pool *p, const char *note)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_SEGTAB_PUSH };
	const struct rmp_srv_leases *t = &srv->leases;
	uint32_t sent = 0;

	m.u.segtab_push.pool_id = p->id;
	snprintf(m.u.segtab_push.note, sizeof(m.u.segtab_push.note), "%s", note);
	for (char *ch = m.u.segtab_push.note; *ch; ch++)
		if ((unsigned char)*ch < 0x20 || *ch == 0x7f)
			*ch = ' ';
	m.u.segtab_push.segtab = p->segtab;
	for (size_t i = 0; i < t->n; i++) {
		const struct rmp_srv_lease *l = &t->v[i];
		if (l->pool_id != p->id || !l->owner)
			continue;
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = t->v[k].pool_id == p->id && t->v[k].owner == l->owner;
		if (!seen && rmp_srv_conn_send(l->owner, &m) == 0)
			sent++;
	}
	srv->m.segtab_pushes_total += sent;
	return sent;
}

void rmp_srv_pool_donor_lost(struct rmp_srv_pool *p, struct rmp_srv_donor *d, const char *why)
{
	struct rmp_srv *srv = p->srv;
	char note[RMP_WIRE_TEXT_MAX + 1], cap[32];

	if ((p->state != RMP_SRV_POOL_READY && p->state != RMP_SRV_POOL_RECOVERING) ||
	    !p->segtab.donors)
		return;
	int rc = rmp_srv_segtab_donor_lost(&p->segtab, d->id, p->capacity);
	if (rc <= 0)
		return; /* lost already, or not in the table (not our business then) */
	p->segtab.version++;
	/* On record like every table; if the store fails, the donor's own
	 * record (LOST) still says it, and a restart marks the table again
	 * (recover.c). */
	if (rmp_srv_persist_pool(srv, p))
		rmp_log_warn("pool %s: segment table version %" PRIu64 " (donor %" PRIu32
			     " lost) is not on record: %s",
			     p->name, p->segtab.version, d->id, rmp_srv_persist_error(srv));
	srv->m.donors_retired_total++;
	rmp_errf(note, sizeof(note), "donor %" PRIu32 " on %s is lost: %s", d->id, d->host, why);
	rmp_config_format_bytes(p->segtab.capacity, cap, sizeof(cap));
	if (p->state != RMP_SRV_POOL_READY) {
		/* Its consumers are fetching the table again anyway (they
		 * lost the coordinator); the retire runs once it is ready. */
		rmp_log_warn("pool %s: %s; segment table version %" PRIu64 ", %s in service", p->name,
			     note, p->segtab.version, cap);
		return;
	}
	uint64_t t0 = rmp_mono_ms();
	uint32_t sent = pool_push_segtab(srv, p, note);
	rmp_log_warn("pool %s: %s; its segments are out of service: segment table version %" PRIu64
		     ", %s in service, pushed to %" PRIu32 " consumer(s) in %" PRIu64 " ms",
		     p->name, note, p->segtab.version, cap, sent, rmp_mono_ms() - t0);
	rmp_srv_self_retire_lost(srv, p);
}

bool rmp_srv_pool_degraded(const struct rmp_srv_pool *p)
{
	if (!p->segtab.donors)
		return false;
	for (uint32_t i = 0; i < p->segtab.n_donors; i++)
		if (p->segtab.donors[i].state == RMP_DONOR_LOST)
			return true;
	return false;
}

uint64_t rmp_srv_pool_capacity(const struct rmp_srv_pool *p)
{
	return p->segtab.segments ? p->segtab.capacity : p->capacity;
}

void rmp_srv_pool_segtab_fetch(struct rmp_srv_conn *c, const struct rmp_wire_segtab_fetch *f)
{
	struct rmp_srv_pool *p = rmp_srv_pool_find_id(c->srv, f->pool_id);

	if (!p) {
		rmp_srv_conn_send_error(c, ENOENT, RMP_MSG_SEGTAB_FETCH,
					"no ready pool with id %" PRIu32, f->pool_id);
		return;
	}
	if (pool_refuse_unready(c, p, RMP_MSG_SEGTAB_FETCH))
		return;
	struct rmp_wire_msg m = { .type = RMP_MSG_SEGTAB };
	m.u.segtab.pool_id = p->id;
	m.u.segtab.segtab = p->segtab;
	rmp_srv_conn_send(c, &m);
}

/* A gap this long between two looks at the leases (the tick looks
 * every 250 ms) is a stall of the coordinator itself. */
#define LEASE_STALL_MS 1000u

/* The event loop did not run for a while (the coordinator SIGSTOPped,
 * swapped out, its host frozen): renewals sent meanwhile wait unread in
 * the sockets. Every lease moves by the stall before anything is
 * expired or a renewal refused, so a stalled coordinator never expires
 * - and cuts off - consumers it could not hear. Called first by both. */
static void leases_catch_up(struct rmp_srv *srv, uint64_t now)
{
	if (srv->lease_look_ms && now > srv->lease_look_ms + LEASE_STALL_MS) {
		uint64_t gap = now - srv->lease_look_ms;
		rmp_srv_leases_shift(&srv->leases, gap);
		rmp_log_warn("the coordinator did not run for %" PRIu64 " ms: every lease is extended "
			     "by as much (renewals sent meanwhile are read only now)",
			     gap);
	}
	srv->lease_look_ms = now;
}

void rmp_srv_pool_lease_renew(struct rmp_srv_conn *c, const struct rmp_wire_lease_renew *r)
{
	struct rmp_srv *srv = c->srv;
	uint64_t now = rmp_mono_ms();

	leases_catch_up(srv, now);
	int rc = rmp_srv_leases_renew(&srv->leases, r->lease_id, c, now);

	if (rc) {
		rmp_srv_conn_send_error(c, rc == -ETIMEDOUT ? ETIMEDOUT : ENOENT, RMP_MSG_LEASE_RENEW,
					"lease %" PRIu64 " %s", r->lease_id,
					rc == -ETIMEDOUT ? "has expired" : "is unknown or closed");
		return;
	}
	struct rmp_wire_msg m = { .type = RMP_MSG_LEASE_GRANT };
	m.u.lease_grant.lease_id = r->lease_id;
	m.u.lease_grant.ttl_ms = (uint32_t)srv->cfg.lease_ms;
	rmp_srv_conn_send(c, &m);
}

/* A consumer waiting on a create or a destroy hung up. Failing a pool
 * may free others, so rescan after each. */
void rmp_srv_pool_conn_closed(struct rmp_srv_conn *c)
{
	struct rmp_srv *srv = c->srv;

	for (;;) {
		struct rmp_srv_pool *p = srv->pools;
		while (p && p->requester != c)
			p = p->next;
		if (!p)
			break;
		p->requester = NULL;
		if (p->state == RMP_SRV_POOL_PROVISIONING)
			pool_fail(srv, p, ECONNABORTED, "the requesting client disconnected");
	}
}

uint64_t rmp_srv_pool_free_bytes(const struct rmp_srv_pool *p)
{
	const uint64_t *w = p->meta.mem;
	uint64_t sum = 0;

	if (!w || p->state != RMP_SRV_POOL_READY)
		return 0;
	/* the count words lie inside the mapped metadata */
	rmp_assert(p->geom.levels <= RMP_BUDDY_MAX_LEVELS &&
		   p->geom.count_word + p->geom.levels <= p->meta.len / sizeof(uint64_t));
	/* The per-level counts are hints kept by FAA (DESIGN.md, "Counting"): good for
	 * a gauge, a whole walk is not worth it on every scrape. A count can
	 * dip below zero for an instant between a CAS and its FAA. */
	for (unsigned t = 0; t < p->geom.levels; t++) {
		int64_t n = (int64_t)__atomic_load_n(&w[p->geom.count_word + t], __ATOMIC_RELAXED);
		if (n > 0)
			sum += (uint64_t)n << (p->geom.max_order - t);
	}
	return sum;
}

static void lease_expired_cb(void *arg, const struct rmp_srv_lease *l)
{
	struct rmp_srv *srv = arg;
	struct rmp_srv_pool *p = rmp_srv_pool_find_id(srv, l->pool_id);
	struct rmp_srv_conn *c = l->owner;

	srv->m.leases_expired_total++;
	rmp_log_warn("lease %" PRIu64 " of session %" PRIu64 " on pool %s expired (not renewed "
		     "in time)%s",
		     l->id, l->client_id, p ? p->name : "?", c ? "" : "; its client is gone");
	/* The far sides first: once its connections are torn down, the
	 * client learning of the expiry changes nothing they serve. */
	rmp_srv_cut_start(srv, l);
	rmp_srv_reclaim_expired(srv, l);
	if (c) {
		struct rmp_wire_msg m = { .type = RMP_MSG_LEASE_EXPIRED };
		m.u.lease_expired.lease_id = l->id;
		m.u.lease_expired.pool_id = l->pool_id;
		rmp_srv_conn_send(c, &m);
	}
}

void rmp_srv_leases_tick(struct rmp_srv *srv, uint64_t now_ms)
{
	leases_catch_up(srv, now_ms);
	rmp_srv_leases_expire(&srv->leases, now_ms, lease_expired_cb, srv);
}

void rmp_srv_pools_free_all(struct rmp_srv *srv)
{
	/* Shutdown, like a crash: the metadata stays in shm, the donors keep
	 * running and the state keeps every record (DESIGN.md, "Failure
	 * model"); only this process's mappings go. A pool being created is
	 * failed and cleaned by the next start. */
	while (srv->pools) {
		struct rmp_srv_pool *p = srv->pools;
		for (uint32_t i = 0; i < p->n_donors; i++)
			if (p->donors[i])
				p->donors[i]->pool = NULL;
		rmp_srv_pool_free(srv, p, false);
	}
	while (srv->donors) {
		struct rmp_srv_donor *d = srv->donors;
		srv->donors = d->next;
		free(d);
	}
}
