/* donors.c - donor processes as the coordinator sees them: their
 * records, registration, spare standalone memory, failure and
 * termination. Agents (agents.c) start and stop the spawned ones; pools
 * (pool.c) use them; this file owns the record.
 *
 * Two kinds:
 *   spawned     a pool asked an agent to start it. The record exists from
 *               SPAWN on (SPAWNING, then SPAWNED with the pid the agent
 *               reports) and is charged to the agent's budget (region +
 *               footprint) until the agent reports EXITED, so a pool
 *               created right after a destroy cannot overcommit a host;
 *   standalone  an operator started it (`rmpool-donor --size ...` without
 *               --pool-id). It registers on its own (DONOR_REGISTER {pool
 *               0, donor 0}), gets an id, and its region in whole segments
 *               is spare memory until a pool's plan takes it (plan.h); it
 *               serves at most one pool, and a pool that fails gives it
 *               back, spare again (nothing was written to it).
 *
 * Registration: a spawned donor's DONOR_REGISTER {pool, donor} hands its
 * region over (at least what was asked, at a usable address); the record
 * is written down (persist.c), then DONOR_ACCEPTED goes out; its pool
 * hears of it (rmp_srv_pool_donor_registered) and the last one completes
 * the pool. A donor on record that registers again - after a restart of
 * the coordinator, or after its connection dropped - is recover.c's
 * (rmp_srv_recover_donor): taken back only as the process it was. A
 * standalone donor does not learn which pool took it, so it comes back
 * as {pool 0, its donor id}, which finds its record the same way.
 *
 * Failure, when a donor's control connection closes:
 *   standalone, spare       its offer is withdrawn, the record goes;
 *   being terminated        a standalone one reports its exit this way;
 *   pool being created      the pool fails; a spawned process is
 *                           terminated through its agent;
 *   pool ready (or being    AWAY: the process keeps serving its region and
 *   re-adopted, or lost)    reconnects; if it is not back within
 *                           donor-return-timeout it is LOST (a log line,
 *                           status, metrics). A LOST donor stays in its
 *                           pool, uncharged, and its segments leave
 *                           service (pool.c, rmp_srv_pool_donor_lost: a
 *                           new table version marks it lost, consumers
 *                           get it pushed, self.c retires its segments in
 *                           the allocator); it is never taken back. An
 *                           agent's report that the process exited makes
 *                           it LOST at once.
 * Consumers' reads and writes of lost segments fail with -RMP_EDONOR;
 * they never return other data.
 *
 * Termination: TERMINATE goes through the agent when there is one, else
 * on the donor's own connection; the record stays until the exit is
 * reported or terminate-timeout passes (rmp_srv_donors_reap_overdue on
 * the tick). A donor nobody can reach, or whose SPAWN never went out, is
 * gone at once, inside the call: callers that loop over donors copy the
 * list first. A record that goes takes its row in the state with it.
 *
 * Invariants: every record is on srv->donors once; a donor with d->pool
 * set is in that pool's donors[]; an agent's `used` is the sum of its
 * donors' cost and `donors` their number; a LOST donor has no agent and
 * no connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adopt.h"
#include "clock.h"
#include "debug.h"
#include "layout.h"
#include "log.h"
#include "srv.h"

/* ---- the records ---- */

struct rmp_srv_donor *rmp_srv_donor_find(struct rmp_srv *srv, uint32_t id)
{
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next)
		if (d->id == id)
			return d;
	return NULL;
}

bool rmp_srv_donor_spare(const struct rmp_srv_donor *d)
{
	return d->standalone && !d->pool && d->conn && d->state == RMP_SRV_DONOR_REGISTERED;
}

bool rmp_srv_donor_live(const struct rmp_srv_donor *d)
{
	return d->state != RMP_SRV_DONOR_AWAY && d->state != RMP_SRV_DONOR_LOST;
}

void rmp_srv_donor_gone(struct rmp_srv *srv, struct rmp_srv_donor *d, const char *why)
{
	/* its pool let go of it first: no pool keeps a pointer to a freed donor */
	rmp_assert(d->pool == NULL);
	rmp_assert(!d->agent || (d->agent->donors > 0 && d->agent->used >= d->cost));
	rmp_log_info("donor %" PRIu32 " (pool %" PRIu32 ", host %s, pid %" PRIu32 ") is gone: %s",
		     d->id, d->pool_id, d->host, d->pid, why);
	if (d->agent) {
		d->agent->used -= d->cost;
		d->agent->donors--;
	}
	if (d->conn)
		d->conn->donor = NULL;
	for (struct rmp_srv_donor **pp = &srv->donors; *pp; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	rmp_srv_persist_donor_gone(srv, d->id);
	free(d);
}

/* A spawned donor's record, charged to its agent, listed, and in the
 * pool's next slot; the caller sends the SPAWN. NULL: out of memory. */
struct rmp_srv_donor *rmp_srv_donor_new_spawned(struct rmp_srv *srv, struct rmp_srv_pool *p,
						struct rmp_srv_agent *a, uint64_t region_len,
						uint64_t base)
{
	struct rmp_srv_donor *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->id = srv->next_donor++;
	d->pool_id = p->id;
	d->pool = p;
	d->agent = a;
	memcpy(d->host, a->host, sizeof(d->host));
	d->region_len = region_len;
	d->base = base;
	d->cost = region_len + a->donor_footprint;
	d->next = srv->donors;
	srv->donors = d;
	a->used += d->cost;
	a->donors++;
	rmp_assert(p->n_donors < p->max_donors);
	p->donors[p->n_donors++] = d;
	return d;
}

/* ---- standalone donors and spare memory ---- */

/* A donor that listens on every address does not know which one we
 * reach it by: use the one its control connection came from. */
static void endpoint_from(struct rmp_srv_donor *d, const struct rmp_srv_conn *c,
			  const struct rmp_wire_endpoint *ep)
{
	d->endpoint = *ep;
	if (!d->endpoint.host[0] || strcmp(d->endpoint.host, "0.0.0.0") == 0) {
		snprintf(d->endpoint.host, sizeof(d->endpoint.host), "%s", c->peer);
		char *colon = strrchr(d->endpoint.host, ':');
		if (colon)
			*colon = '\0';
	}
}

uint32_t rmp_srv_donors_spare_count(const struct rmp_srv *srv)
{
	uint32_t n = 0;

	for (const struct rmp_srv_donor *d = srv->donors; d; d = d->next)
		n += rmp_srv_donor_spare(d);
	return n;
}

/* A spare standalone donor joins a pool: len bytes of its offer at pool
 * address base. Its region is registered already. */
void rmp_srv_donor_join(struct rmp_srv_donor *d, struct rmp_srv_pool *p, uint64_t len,
			uint64_t base)
{
	rmp_assert(rmp_srv_donor_spare(d) && len > 0 && len <= d->offered);
	rmp_assert(p->n_donors < p->max_donors);
	d->pool = p;
	d->pool_id = p->id;
	d->region_len = len;
	d->base = base;
	p->donors[p->n_donors++] = d;
	p->registered++;
}

/* A standalone donor leaves a pool that never became ready: it is spare
 * again, its whole offer free for the next pool. */
void rmp_srv_donor_release(struct rmp_srv *srv, struct rmp_srv_donor *d)
{
	char len[32];

	rmp_assert(d->standalone && d->pool == NULL); /* detached by its pool */
	d->pool_id = 0;
	d->base = 0;
	d->region_len = d->offered;
	rmp_config_format_bytes(d->offered, len, sizeof(len));
	rmp_log_info("standalone donor %" PRIu32 " on %s (%s) is spare again", d->id, d->host,
		     len);
	rmp_srv_persist_donor_gone(srv, d->id); /* spare is not on record */
}

/* ---- registration ---- */

/* DONOR_REGISTER {pool 0, donor 0}: a donor started on its own offers its
 * region. Only whole segments count; it is spare until a pool takes it. */
/* DONOR_ACCEPTED: d's id, its pool's (0 for a standalone donor, which
 * does not learn it) and its base in that pool's space. */
static void send_accepted(struct rmp_srv_conn *c, const struct rmp_srv_donor *d, uint32_t pool_id)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_DONOR_ACCEPTED };

	m.u.donor_accepted.donor_id = d->id;
	m.u.donor_accepted.pool_id = pool_id;
	m.u.donor_accepted.base = d->base;
	rmp_srv_conn_send(c, &m);
}

static void standalone_register(struct rmp_srv_conn *c, const struct rmp_wire_donor_register *r)
{
	struct rmp_srv *srv = c->srv;
	uint64_t seg = srv->cfg.segment_size;
	char len[32], sz[32], whole_s[32];

	if (r->region.addr == 0 || r->region.len == 0 ||
	    r->region.addr > UINT64_MAX - r->region.len) {
		rmp_srv_conn_send_error(c, EINVAL, RMP_MSG_DONOR_REGISTER,
					"standalone donor: region of %" PRIu64 " bytes at 0x%" PRIx64
					" is not usable",
					r->region.len, r->region.addr);
		return;
	}
	uint64_t whole = r->region.len & ~(seg - 1);
	rmp_config_format_bytes(r->region.len, len, sizeof(len));
	rmp_config_format_size(seg, sz, sizeof(sz));
	if (whole == 0) {
		rmp_srv_conn_send_error(c, EINVAL, RMP_MSG_DONOR_REGISTER,
					"standalone donor: its region of %s (%" PRIu64
					" bytes) is smaller than one segment of %s (%" PRIu64
					" bytes): give --size %s or more",
					len, r->region.len, sz, seg, sz);
		return;
	}
	struct rmp_srv_donor *d = calloc(1, sizeof(*d));
	if (!d) {
		rmp_srv_conn_send_error(c, ENOMEM, RMP_MSG_DONOR_REGISTER, "out of memory");
		return;
	}
	/* One that comes back after a restart keeps the id it was given (ids
	 * never repeat, so a free one below next_donor is its own). */
	bool known = r->donor_id && r->donor_id < srv->next_donor && !rmp_srv_donor_find(srv, r->donor_id);
	d->id = known ? r->donor_id : srv->next_donor++;
	if (!known && rmp_srv_persist_ids(srv))
		rmp_log_warn("standalone donor %" PRIu32 ": its id is not on record", d->id);
	d->standalone = true;
	d->conn = c;
	c->donor = d;
	d->region = r->region;
	endpoint_from(d, c, &r->endpoint);
	memcpy(d->host, d->endpoint.host, sizeof(d->host));
	d->pid = r->pid;
	d->offered = d->region_len = whole;
	d->state = RMP_SRV_DONOR_REGISTERED;
	d->next = srv->donors;
	srv->donors = d;

	send_accepted(c, d, 0); /* its base: 0 until a pool takes it */
	rmp_config_format_bytes(whole, whole_s, sizeof(whole_s));
	rmp_log_info("standalone donor %" PRIu32 " registered from %s: %s offered on %s (%s in "
		     "whole %s segments; rdma %s:%u, pid %" PRIu32 "); %" PRIu32 " spare",
		     d->id, c->peer, len, d->host, whole_s, sz, d->endpoint.host, d->endpoint.port,
		     d->pid, rmp_srv_donors_spare_count(srv));
}

/* A spawned donor of a pool being created hands its region over: on
 * record first, then DONOR_ACCEPTED. */
static void spawned_register(struct rmp_srv_conn *c, struct rmp_srv_donor *d,
			     const struct rmp_wire_donor_register *r)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_srv_pool *p = d ? d->pool : NULL;
	char len[32], want[32];

	if (!d || d->pool_id != r->pool_id || !p) {
		rmp_srv_conn_send_error(c, ENOENT, RMP_MSG_DONOR_REGISTER,
					"no donor %" PRIu32 " is expected for pool %" PRIu32
					" (the pool is gone or was never asked for)",
					r->donor_id, r->pool_id);
		return;
	}
	if (d->conn || d->state == RMP_SRV_DONOR_REGISTERED ||
	    p->state != RMP_SRV_POOL_PROVISIONING) {
		rmp_srv_conn_send_error(c, EALREADY, RMP_MSG_DONOR_REGISTER,
					"donor %" PRIu32 " of pool %s registered already", d->id,
					p->name);
		return;
	}
	uint64_t seg = UINT64_C(1) << p->segment_log2;
	if (r->region.len < d->region_len || r->region.addr == 0 ||
	    r->region.addr > UINT64_MAX - r->region.len) {
		rmp_config_format_bytes(r->region.len, len, sizeof(len));
		rmp_config_format_bytes(d->region_len, want, sizeof(want));
		rmp_srv_conn_send_error(c, EINVAL, RMP_MSG_DONOR_REGISTER,
					"donor %" PRIu32 ": region of %s at 0x%" PRIx64
					", asked for %s (segments of %" PRIu64 ")",
					d->id, len, r->region.addr, want, seg);
		return;
	}
	struct rmp_srv_donor before = *d;
	d->region = r->region;
	endpoint_from(d, c, &r->endpoint);
	if (!d->pid)
		d->pid = r->pid;
	d->state = RMP_SRV_DONOR_REGISTERED;
	if (rmp_srv_persist_donor(srv, d)) {
		*d = before;
		rmp_srv_conn_send_error(c, EIO, RMP_MSG_DONOR_REGISTER,
					"donor %" PRIu32 ": the coordinator cannot record it: %s", d->id,
					rmp_srv_persist_error(srv));
		return;
	}
	d->conn = c;
	c->donor = d;
	rmp_assert(p->registered < p->n_donors);
	p->registered++;

	send_accepted(c, d, p->id);
	rmp_config_format_bytes(d->region_len, len, sizeof(len));
	rmp_log_info("pool %s: donor %" PRIu32 " registered %s on %s (rdma %s:%u), %" PRIu32
		     "/%" PRIu32,
		     p->name, d->id, len, d->host, d->endpoint.host, d->endpoint.port,
		     p->registered, p->n_donors);
	rmp_srv_pool_donor_registered(p, d);
}

/* Charges a spawned donor that has none to its host's agent, if one is
 * registered (it came back before its agent, or after being lost). */
static void charge_to_host(struct rmp_srv *srv, struct rmp_srv_donor *d)
{
	if (d->standalone || d->agent)
		return;
	for (struct rmp_srv_agent *a = srv->agents; a; a = a->next) {
		if (strcmp(a->host, d->host) == 0) {
			d->agent = a;
			a->used += d->cost;
			a->donors++;
			return;
		}
	}
}

/* A donor that was being terminated comes back: it is who it says (id
 * and pool), so it is accepted, then told to exit on its own connection. */
static void readopt_to_terminate(struct rmp_srv_conn *c, struct rmp_srv_donor *d)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_wire_msg m = { .type = RMP_MSG_TERMINATE };

	if (d->conn)
		d->conn->donor = NULL;
	d->conn = c;
	c->donor = d;
	send_accepted(c, d, d->pool_id);
	d->request_id = srv->next_request++;
	m.u.terminate.request_id = d->request_id;
	m.u.terminate.donor_id = d->id;
	rmp_srv_conn_send(c, &m);
	rmp_log_info("donor %" PRIu32 " (pool %" PRIu32 ", host %s) came back while it is being "
		     "terminated: terminate sent on its connection",
		     d->id, d->pool_id, d->host);
}

/* A donor on record registers again - after a restart, or after its
 * connection dropped: taken back only as the process it was (adopt.h),
 * on record before DONOR_ACCEPTED; its pool may be complete again. */
static void donor_readopt(struct rmp_srv_conn *c, struct rmp_srv_donor *d,
			  const struct rmp_wire_donor_register *r)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_srv_pool *p = d->pool;
	char why[RMP_WIRE_TEXT_MAX + 1];

	if (d->state == RMP_SRV_DONOR_TERMINATING) {
		readopt_to_terminate(c, d);
		return;
	}
	if (d->state == RMP_SRV_DONOR_LOST && p && rmp_srv_segtab_is_lost(&p->segtab, d->id)) {
		/* Its segments left service for good (retired in the
		 * allocator, consumers told): nothing brings them back. */
		rmp_srv_conn_send_error(c, ESTALE, RMP_MSG_DONOR_REGISTER,
					"donor %" PRIu32 " of pool %s was lost and its segments left "
					"service (segment table version %" PRIu64 "): not taken back",
					d->id, p->name, p->segtab.version);
		return;
	}
	struct rmp_srv_donor got = { .pid = r->pid, .region = r->region };
	endpoint_from(&got, c, &r->endpoint);
	struct rmp_srv_adopt_donor rec = { d->pid, d->region, d->endpoint };
	struct rmp_srv_adopt_donor now = { got.pid, got.region, got.endpoint };
	if (rmp_srv_adopt_donor_check(d->id, &rec, &now, why, sizeof(why))) {
		rmp_srv_conn_send_error(c, EINVAL, RMP_MSG_DONOR_REGISTER, "%s: not taken back", why);
		return;
	}
	enum rmp_srv_donor_state was = d->state;
	d->state = RMP_SRV_DONOR_REGISTERED;
	if (rmp_srv_persist_donor(srv, d)) {
		d->state = was;
		rmp_srv_conn_send_error(c, EIO, RMP_MSG_DONOR_REGISTER,
					"donor %" PRIu32 ": the coordinator cannot record it: %s", d->id,
					rmp_srv_persist_error(srv));
		return;
	}
	if (d->conn) /* a half-open connection we had not seen end */
		d->conn->donor = NULL;
	d->conn = c;
	c->donor = d;
	charge_to_host(srv, d);
	srv->m.donors_readopted_total++;
	send_accepted(c, d, d->pool_id);
	rmp_log_info("pool %s: donor %" PRIu32 " on %s (pid %" PRIu32 ") taken back%s; %" PRIu32
		     " of its donors still away",
		     p ? p->name : "?", d->id, d->host, d->pid,
		     was == RMP_SRV_DONOR_LOST ? " after it had been marked lost" : "",
		     p ? rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_AWAY) : 0);
	if (p)
		rmp_srv_pool_check_recovered(p);
}

/* A record a DONOR_REGISTER may take back: one that lost its connection
 * (or was not back since a restart), died or did not come back in time,
 * is being terminated, or is registered on an older connection (a
 * half-open one whose end we have not seen yet) of a pool past creation. */
static bool on_record(const struct rmp_srv_donor *d, const struct rmp_wire_donor_register *r)
{
	if (r->pool_id != d->pool_id && !(d->standalone && r->pool_id == 0 && d->pool))
		return false;
	switch (d->state) {
	case RMP_SRV_DONOR_AWAY:
	case RMP_SRV_DONOR_LOST:
	case RMP_SRV_DONOR_TERMINATING:
		return true;
	case RMP_SRV_DONOR_REGISTERED:
		return d->pool && d->pool->state != RMP_SRV_POOL_PROVISIONING;
	default:
		return false;
	}
}

/* DONOR_REGISTER: a donor on record comes back (recover.c); {0, 0} (or a
 * standalone one's old id) offers spare memory; else a spawned donor of a
 * pool being created hands its region over. */
void rmp_srv_donor_register(struct rmp_srv_conn *c, const struct rmp_wire_donor_register *r)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_srv_donor *d = r->donor_id ? rmp_srv_donor_find(srv, r->donor_id) : NULL;

	if (c->donor) {
		rmp_srv_conn_send_error(c, EALREADY, RMP_MSG_DONOR_REGISTER,
					"this connection registered donor %" PRIu32 " already",
					c->donor->id);
		return;
	}
	if (d && on_record(d, r)) {
		donor_readopt(c, d, r);
		return;
	}
	if (r->pool_id == 0) {
		standalone_register(c, r);
		return;
	}
	spawned_register(c, d, r);
}

/* ---- failure and termination ---- */

/* A standalone donor hung up unasked: spare, or in a pool being created
 * (a ready pool's goes AWAY instead). */
static void standalone_lost(struct rmp_srv *srv, struct rmp_srv_donor *d)
{
	struct rmp_srv_pool *p = d->pool;
	char len[32];

	rmp_config_format_bytes(d->region_len, len, sizeof(len));
	if (!p) {
		rmp_log_info("standalone donor %" PRIu32 " on %s disconnected while spare: its %s "
			     "offer is withdrawn",
			     d->id, d->host, len);
		rmp_srv_donor_gone(srv, d, "standalone, spare, disconnected");
		return;
	}
	rmp_srv_pool_donor_failed(p, d, "the standalone donor's control connection closed");
	rmp_srv_donor_gone(srv, d, "standalone, disconnected");
}

void rmp_srv_donor_away(struct rmp_srv *srv, struct rmp_srv_donor *d, uint64_t deadline_ms)
{
	struct rmp_srv_pool *p = d->pool;
	char t[32];

	if (d->conn) {
		d->conn->donor = NULL;
		d->conn = NULL;
	}
	d->state = RMP_SRV_DONOR_AWAY;
	d->away_deadline_ms = deadline_ms;
	rmp_config_format_duration(srv->cfg.donor_return_ms, t, sizeof(t));
	if (p)
		rmp_log_warn("pool %s: donor %" PRIu32 " on %s (pid %" PRIu32 ") lost its control "
			     "connection; it keeps serving, and has %s to register again",
			     p->name, d->id, d->host, d->pid, t);
	rmp_srv_persist_donor_state(srv, d);
}

void rmp_srv_donor_lost(struct rmp_srv *srv, struct rmp_srv_donor *d, const char *why)
{
	struct rmp_srv_pool *p = d->pool;

	if (d->agent) {
		rmp_assert(d->agent->donors > 0 && d->agent->used >= d->cost);
		d->agent->used -= d->cost;
		d->agent->donors--;
		d->agent = NULL;
	}
	if (d->conn) {
		d->conn->donor = NULL;
		d->conn = NULL;
	}
	d->state = RMP_SRV_DONOR_LOST;
	if (p) {
		uint64_t seg = UINT64_C(1) << p->segment_log2;
		char len[32];
		rmp_config_format_bytes(d->region_len, len, sizeof(len));
		rmp_log_warn("pool %s: donor %" PRIu32 " on %s (pid %" PRIu32 ") is lost: %s; its "
			     "%" PRIu64 " segment(s), pool addresses [%" PRIu64 ", %" PRIu64 ") (%s), "
			     "leave service",
			     p->name, d->id, d->host, d->pid, why, d->region_len / seg, d->base,
			     d->base + d->region_len, len);
	}
	rmp_srv_persist_donor_state(srv, d);
	if (p) {
		rmp_srv_pool_donor_lost(p, d, why);
		rmp_srv_pool_check_recovered(p);
	}
}

void rmp_srv_donors_tick(struct rmp_srv *srv, uint64_t now_ms)
{
	char t[32], why[96];

	rmp_config_format_duration(srv->cfg.donor_return_ms, t, sizeof(t));
	snprintf(why, sizeof(why), "it did not register again within %s", t);
	/* Marking one lost may complete a pool, which touches no donor list. */
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next)
		if (d->state == RMP_SRV_DONOR_AWAY && now_ms >= d->away_deadline_ms)
			rmp_srv_donor_lost(srv, d, why);
}

/* The donor's control connection closed (see the table at the top). */
void rmp_srv_donor_conn_closed(struct rmp_srv_conn *c)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_srv_donor *d = c->donor;

	if (!d)
		return;
	c->donor = NULL;
	d->conn = NULL;
	struct rmp_srv_pool *p = d->pool;
	bool serving = p && p->state != RMP_SRV_POOL_PROVISIONING && p->state != RMP_SRV_POOL_DESTROYING;
	if (d->state == RMP_SRV_DONOR_TERMINATING) {
		/* Standalone donors report their exit by hanging up. */
		if (!d->agent) {
			rmp_srv_pool_donor_exited(p, d);
			rmp_srv_donor_gone(srv, d, "its connection closed after terminate");
		}
	} else if (serving && d->state == RMP_SRV_DONOR_REGISTERED) {
		rmp_srv_donor_away(srv, d, rmp_deadline_ms(srv->cfg.donor_return_ms));
	} else if (d->standalone) {
		standalone_lost(srv, d);
	} else if (p && p->state == RMP_SRV_POOL_PROVISIONING) {
		rmp_srv_pool_donor_failed(p, d, "its control connection closed");
		if (d->agent)
			rmp_srv_donor_terminate(srv, d);
		else
			rmp_srv_donor_gone(srv, d, "connection lost, no agent");
	} else if (!p) {
		rmp_srv_donor_gone(srv, d, "connection lost, and it is in no pool");
	}
}

void rmp_srv_donor_terminate(struct rmp_srv *srv, struct rmp_srv_donor *d)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_TERMINATE };
	int rc = -ENOTCONN;

	if (d->state == RMP_SRV_DONOR_TERMINATING)
		return;
	bool never_spawned = d->state == RMP_SRV_DONOR_SPAWNING && d->request_id == 0;
	d->request_id = srv->next_request++;
	d->state = RMP_SRV_DONOR_TERMINATING;
	d->terminate_deadline_ms = rmp_deadline_ms(srv->cfg.terminate_ms);
	m.u.terminate.request_id = d->request_id;
	m.u.terminate.donor_id = d->id;
	if (d->agent && d->agent->conn && !never_spawned)
		rc = rmp_srv_conn_send(d->agent->conn, &m);
	if (rc && d->conn)
		rc = rmp_srv_conn_send(d->conn, &m);
	if (rc) {
		/* Nobody to tell: it never started, or both links are down. */
		rmp_srv_pool_donor_exited(d->pool, d);
		rmp_srv_donor_gone(srv, d, "no agent or connection to terminate it through");
		return;
	}
	rmp_log_info("donor %" PRIu32 " (pool %" PRIu32 ", host %s): terminate sent via %s", d->id,
		     d->pool_id, d->host, d->agent && d->agent->conn ? "its agent" : "its connection");
}

void rmp_srv_donors_reap_overdue(struct rmp_srv *srv, uint64_t now_ms)
{
	for (struct rmp_srv_donor *d = srv->donors, *next; d; d = next) {
		next = d->next;
		if (d->state != RMP_SRV_DONOR_TERMINATING || now_ms < d->terminate_deadline_ms)
			continue;
		rmp_log_warn("donor %" PRIu32 " (pool %" PRIu32 ", host %s, pid %" PRIu32
			     ") did not report its exit in time; forgetting it",
			     d->id, d->pool_id, d->host, d->pid);
		if (d->pool)
			rmp_srv_pool_donor_exited(d->pool, d);
		rmp_srv_donor_gone(srv, d, "terminate timed out");
	}
}
