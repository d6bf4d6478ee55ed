/* cutoff.c - a consumer whose lease expired is cut off before anything
 * of it may be freed (DESIGN.md, "Cut-off of an expired consumer").
 *
 * Why: a consumer that outlived its lease (SIGSTOP past the deadline,
 * then SIGCONT) still holds connected queue pairs to the metadata and to
 * every donor it used, and the secret to mint new tokens. A check in the
 * library cannot stop it (it may resume between its check and its post),
 * so the far sides stop it: once the cut is complete, nothing it posts
 * is executed anywhere, and only then may its blocks be reclaimed.
 *
 * A cut, per expired lease (rmp_srv_cut_start, from the lease reaper):
 *   1. the client id goes on the pool's cut list here, so that this
 *      coordinator's rdma_cm listener refuses its connect requests from
 *      now on (rmp_srv_cut_refused, asked by rdma_listen.c), whatever
 *      token it shows;
 *   2. its connections on that listener - the pool's metadata, the
 *      coordinator's own share - are disconnected and their QPs destroyed
 *      (rmp_srv_rdma_cut), synchronously, in this event-loop turn;
 *   3. every donor of the pool is sent CLIENT_CUT {pool, client} on its
 *      control connection; it does the same two steps at its side and
 *      answers CLIENT_CUT_ACK (rmp_srv_cut_ack).
 * The cut is complete when every donor of the pool has acknowledged or is
 * out of service: LOST (its memory is nobody's any more), gone (exited),
 * or terminating (its pool is being destroyed). The completion is logged
 * ("cut complete") with the time since the expiry, counted
 * (rmpool_clients_cut_total), and rmp_srv_lease_cut_done() says so to
 * the reclaim that waits for it.
 *
 * Donors that do not answer:
 *   - a donor that was sent the cut and has not acknowledged it within
 *     CUT_ACK_MS while still connected is marked LOST (rmp_srv_donor_lost):
 *     we cannot know that the consumer is cut there, and a lost donor's
 *     memory is out of service for everyone, so nothing anyone keeps
 *     there can be harmed by the stale consumer;
 *   - a donor that is AWAY (its control connection dropped; it may still
 *     serve) is sent the cut when it registers again, and is LOST at its
 *     return deadline (--donor-return-timeout) otherwise: the cut waits
 *     for whichever comes first. The bound of a cut is therefore
 *     CUT_ACK_MS after the expiry, or the return deadline of an away
 *     donor, whichever is later.
 * Ticks (rmp_srv_cuts_tick, 250 ms) send what is due and apply the bound.
 *
 * What is kept: the cut lists (cutlist.h: bounded rings, in memory,
 * persisted nowhere - session ids never repeat, so they never refuse a
 * live consumer; a restart loses them, see DESIGN.md), and the last
 * CUT_KEEP cut records, done or not, for rmp_srv_lease_cut_done.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "cutlist.h"
#include "log.h"
#include "srv.h"

/* How long a connected donor has to acknowledge a cut. Its poll loop
 * answers in milliseconds; 5 s is a loaded host's worst turn, far
 * below any lease time (1 s at least) times the 9 periods an operator
 * waits for memory today. */
#define CUT_ACK_MS 5000u
/* Cut records kept (done ones go first, oldest first). */
#define CUT_KEEP 256u

struct cut_donor {
	uint32_t donor_id;
	uint64_t sent_ms; /* 0: not (or no more) sent */
	enum { CD_PENDING, CD_ACKED, CD_LOST, CD_GONE } state;
	uint32_t dropped; /* connections it tore down (its ACK) */
};

struct cut {
	struct cut *next;
	uint64_t lease_id, client_id;
	uint32_t pool_id;
	uint64_t start_ms, done_ms;
	bool done;
	unsigned meta_dropped;
	uint32_t n_donors;
	struct cut_donor *donors;
};

struct pool_cuts {
	struct pool_cuts *next;
	uint32_t pool_id;
	struct rmp_cutlist list;
};

struct rmp_srv_cuts {
	struct cut *cuts; /* newest first */
	size_t n_cuts;
	struct pool_cuts *pools;
};

static struct rmp_srv_cuts *cuts_of(struct rmp_srv *srv)
{
	if (!srv->cuts)
		srv->cuts = calloc(1, sizeof(*srv->cuts));
	return srv->cuts;
}

static struct pool_cuts *pool_list(struct rmp_srv_cuts *cs, uint32_t pool_id, bool create)
{
	for (struct pool_cuts *pc = cs->pools; pc; pc = pc->next)
		if (pc->pool_id == pool_id)
			return pc;
	if (!create)
		return NULL;
	struct pool_cuts *pc = calloc(1, sizeof(*pc));
	if (!pc)
		return NULL;
	pc->pool_id = pool_id;
	pc->next = cs->pools;
	cs->pools = pc;
	return pc;
}

bool rmp_srv_cut_refused(const struct rmp_srv *srv, uint32_t pool_id, uint64_t client_id)
{
	if (!srv->cuts)
		return false;
	for (const struct pool_cuts *pc = srv->cuts->pools; pc; pc = pc->next)
		if (pc->pool_id == pool_id)
			return rmp_cutlist_has(&pc->list, client_id);
	return false;
}

static void cut_free(struct cut *c)
{
	free(c->donors);
	free(c);
}

/* At most CUT_KEEP records: the oldest done one goes (never one in
 * progress: its donors must still be told). */
static void trim(struct rmp_srv_cuts *cs)
{
	while (cs->n_cuts > CUT_KEEP) {
		struct cut **victim = NULL;
		for (struct cut **pp = &cs->cuts; *pp; pp = &(*pp)->next)
			if ((*pp)->done)
				victim = pp; /* the last done one is the oldest */
		if (!victim)
			return;
		struct cut *c = *victim;
		*victim = c->next;
		cut_free(c);
		cs->n_cuts--;
	}
}

/* Sends CLIENT_CUT to a donor that can hear it now. */
static void send_cut(struct rmp_srv *srv, struct cut *c, struct cut_donor *cd,
		     struct rmp_srv_donor *d, uint64_t now)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_CLIENT_CUT };

	m.u.client_cut = (struct rmp_wire_client_cut){ .pool_id = c->pool_id,
						       .client_id = c->client_id };
	if (rmp_srv_conn_send(d->conn, &m) == 0) {
		cd->sent_ms = now ? now : 1;
		rmp_log_debug("cut of client %" PRIu64 ": CLIENT_CUT sent to donor %" PRIu32 " on %s",
			      c->client_id, d->id, d->host);
	}
	(void)srv;
}

/* Brings one donor's entry up to date: out of service counts as done;
 * a connected donor not yet told is told; an unanswered one past the
 * bound is marked lost. */
static void donor_step(struct rmp_srv *srv, struct cut *c, struct cut_donor *cd, uint64_t now)
{
	if (cd->state != CD_PENDING)
		return;
	struct rmp_srv_donor *d = rmp_srv_donor_find(srv, cd->donor_id);
	if (!d || d->pool_id != c->pool_id || d->state == RMP_SRV_DONOR_TERMINATING) {
		cd->state = CD_GONE;
		return;
	}
	if (d->state == RMP_SRV_DONOR_LOST) {
		cd->state = CD_LOST;
		return;
	}
	if (!rmp_srv_donor_live(d) || !d->conn) {
		cd->sent_ms = 0; /* away: told again once it is back */
		return;
	}
	if (!cd->sent_ms) {
		send_cut(srv, c, cd, d, now);
		return;
	}
	if (now >= cd->sent_ms + CUT_ACK_MS) {
		char why[160];
		snprintf(why, sizeof(why),
			 "it did not acknowledge the cut-off of client %" PRIu64 " within %u ms",
			 c->client_id, CUT_ACK_MS);
		rmp_srv_donor_lost(srv, d, why);
		cd->state = CD_LOST;
	}
}

/* Done once no donor is pending: logged once, counted. */
static void check_done(struct rmp_srv *srv, struct cut *c, uint64_t now)
{
	uint32_t acked = 0, lost = 0, gone = 0, conns = c->meta_dropped;

	if (c->done)
		return;
	for (uint32_t i = 0; i < c->n_donors; i++) {
		switch (c->donors[i].state) {
		case CD_PENDING:
			return;
		case CD_ACKED:
			acked++;
			conns += c->donors[i].dropped;
			break;
		case CD_LOST:
			lost++;
			break;
		case CD_GONE:
			gone++;
			break;
		}
	}
	c->done = true;
	c->done_ms = now;
	srv->m.clients_cut_total++;
	struct rmp_srv_pool *p = rmp_srv_pool_find_id(srv, c->pool_id);
	rmp_log_info("lease %" PRIu64 " of client %" PRIu64 " on pool %s: cut complete %" PRIu64
		     " ms after the expiry (%u connection(s) torn down; donors: %" PRIu32
		     " acknowledged, %" PRIu32 " lost, %" PRIu32 " gone): its blocks may be reclaimed",
		     c->lease_id, c->client_id, p ? p->name : "?", now - c->start_ms, conns, acked,
		     lost, gone);
}

void rmp_srv_cut_start(struct rmp_srv *srv, const struct rmp_srv_lease *l)
{
	struct rmp_srv_cuts *cs = cuts_of(srv);
	struct rmp_srv_pool *p = rmp_srv_pool_find_id(srv, l->pool_id);
	uint64_t now = rmp_mono_ms();

	if (!p) /* the pool is gone: so is everything a cut would protect */
		return;
	struct pool_cuts *pc = cs ? pool_list(cs, p->id, true) : NULL;
	struct cut *c = calloc(1, sizeof(*c));
	if (c && p->n_donors)
		c->donors = calloc(p->n_donors, sizeof(*c->donors));
	if (!pc || !c || (p->n_donors && !c->donors) || rmp_cutlist_add(&pc->list, l->client_id)) {
		/* Not cut, not recorded: rmp_srv_lease_cut_done says -ENOENT
		 * and nothing is reclaimed for this lease. */
		rmp_log_error("lease %" PRIu64 " of client %" PRIu64 " on pool %s: out of memory, "
			      "the client is NOT cut off; its blocks must not be reclaimed",
			      l->id, l->client_id, p->name);
		if (c)
			cut_free(c);
		return;
	}
	struct cut_donor *slots = c->donors;
	*c = (struct cut){ .next = cs->cuts, .lease_id = l->id, .client_id = l->client_id,
			   .pool_id = p->id, .start_ms = now, .donors = slots };
	cs->cuts = c;
	cs->n_cuts++;
	c->meta_dropped = rmp_srv_rdma_cut(srv, p->id, l->client_id);
	for (uint32_t i = 0; i < p->n_donors; i++) {
		struct cut_donor *cd = &c->donors[c->n_donors];
		if (!p->donors[i])
			continue;
		*cd = (struct cut_donor){ .donor_id = p->donors[i]->id, .state = CD_PENDING };
		c->n_donors++;
		donor_step(srv, c, cd, now);
	}
	rmp_log_info("lease %" PRIu64 " of client %" PRIu64 " on pool %s: cutting it off (%u "
		     "connection(s) on the metadata listener torn down, %" PRIu32
		     " donor(s) to acknowledge)",
		     l->id, l->client_id, p->name, c->meta_dropped, c->n_donors);
	check_done(srv, c, now);
	trim(cs);
}

void rmp_srv_cut_ack(struct rmp_srv_conn *conn, const struct rmp_wire_client_cut_ack *a)
{
	struct rmp_srv *srv = conn->srv;
	struct rmp_srv_donor *d = conn->donor;
	uint64_t now = rmp_mono_ms();

	if (!d || !srv->cuts) {
		rmp_log_debug("CLIENT_CUT_ACK from %s (no donor of ours, or no cut): ignored",
			      conn->peer);
		return;
	}
	for (struct cut *c = srv->cuts->cuts; c; c = c->next) {
		if (c->client_id != a->client_id || c->pool_id != a->pool_id)
			continue;
		for (uint32_t i = 0; i < c->n_donors; i++) {
			struct cut_donor *cd = &c->donors[i];
			if (cd->donor_id != d->id || cd->state != CD_PENDING)
				continue;
			cd->state = CD_ACKED;
			cd->dropped = a->dropped;
			rmp_log_debug("cut of client %" PRIu64 ": donor %" PRIu32
				      " acknowledged (%" PRIu32 " connection(s) torn down)",
				      c->client_id, d->id, a->dropped);
		}
		check_done(srv, c, now);
	}
}

void rmp_srv_cuts_tick(struct rmp_srv *srv, uint64_t now_ms)
{
	if (!srv->cuts)
		return;
	for (struct cut *c = srv->cuts->cuts; c; c = c->next) {
		if (c->done)
			continue;
		for (uint32_t i = 0; i < c->n_donors; i++)
			donor_step(srv, c, &c->donors[i], now_ms);
		check_done(srv, c, now_ms);
	}
}

int rmp_srv_lease_cut_done(const struct rmp_srv *srv, uint64_t lease_id)
{
	if (!srv->cuts)
		return -ENOENT;
	for (const struct cut *c = srv->cuts->cuts; c; c = c->next)
		if (c->lease_id == lease_id)
			return c->done ? 1 : 0;
	return -ENOENT;
}

void rmp_srv_cuts_drop_pool(struct rmp_srv *srv, uint32_t pool_id)
{
	struct rmp_srv_cuts *cs = srv->cuts;

	if (!cs)
		return;
	for (struct pool_cuts **pp = &cs->pools; *pp;) {
		struct pool_cuts *pc = *pp;
		if (pc->pool_id == pool_id) {
			*pp = pc->next;
			rmp_cutlist_fini(&pc->list);
			free(pc);
		} else {
			pp = &pc->next;
		}
	}
	for (struct cut **pp = &cs->cuts; *pp;) {
		struct cut *c = *pp;
		if (c->pool_id == pool_id) {
			*pp = c->next;
			cut_free(c);
			cs->n_cuts--;
		} else {
			pp = &c->next;
		}
	}
}

void rmp_srv_cuts_free(struct rmp_srv *srv)
{
	struct rmp_srv_cuts *cs = srv->cuts;

	if (!cs)
		return;
	while (cs->pools)
		rmp_srv_cuts_drop_pool(srv, cs->pools->pool_id);
	while (cs->cuts) {
		struct cut *c = cs->cuts;
		cs->cuts = c->next;
		cut_free(c);
	}
	free(cs);
	srv->cuts = NULL;
}
