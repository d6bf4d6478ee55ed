/* agents.c - host agents and the donor processes they run.
 *
 * An agent registers its host's budget, the per-process limit and a
 * donor's measured footprint; plan.c places donors over agents and
 * pool.c asks here to SPAWN them. The agent answers each SPAWN or TERMINATE with
 * PROGRESS {SPAWNED pid | FAILED | EXITED}, which we apply to the donor
 * and pass on to its pool (which relays it to the consumer waiting in
 * `rmpool pool create`).
 *
 * Budgets: a donor costs region + footprint on its agent's host from
 * SPAWN until the agent reports EXITED (or the donor's terminate deadline
 * passes), so a pool created right after a destroy cannot overcommit a
 * host whose donors are still tearing down.
 *
 * An agent that disconnects leaves its donors running (a restarted
 * agent must not take pools down); they are terminated through their own
 * connections from then on, like standalone donors (donors.c), which
 * never had an agent. An agent that registers (again, or after the
 * coordinator restarted) is charged for the donors on record on its host
 * that are not lost, and is asked to end those that are being
 * terminated. The donor records themselves are donors.c's.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "srv.h"

static struct rmp_srv_agent *agent_of(struct rmp_srv_conn *c)
{
	return c->agent;
}

/* Donors of the agent's host that were being terminated when their agent
 * (or the coordinator) went away: TERMINATE them through it now. */
static void terminate_pending(struct rmp_srv *srv, struct rmp_srv_agent *a)
{
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next) {
		if (d->agent != a || d->state != RMP_SRV_DONOR_TERMINATING)
			continue;
		struct rmp_wire_msg m = { .type = RMP_MSG_TERMINATE };
		d->request_id = srv->next_request++;
		m.u.terminate.request_id = d->request_id;
		m.u.terminate.donor_id = d->id;
		if (rmp_srv_conn_send(a->conn, &m) == 0)
			rmp_log_info("donor %" PRIu32 " (pool %" PRIu32 ", host %s): terminate sent via "
				     "its agent, which registered again",
				     d->id, d->pool_id, d->host);
	}
}

void rmp_srv_agent_register(struct rmp_srv_conn *c, const struct rmp_wire_agent_register *r)
{
	struct rmp_srv *srv = c->srv;
	char b[32], l[32], f[32];

	if (agent_of(c)) {
		rmp_srv_conn_send_error(c, EALREADY, RMP_MSG_AGENT_REGISTER,
					"this connection registered agent %" PRIu32 " already",
					c->agent->id);
		return;
	}
	if (r->host[0] == '\0') {
		rmp_srv_conn_send_error(c, EINVAL, RMP_MSG_AGENT_REGISTER,
					"an agent must name its host");
		return;
	}
	if (r->process_limit <= r->donor_footprint) {
		rmp_config_format_bytes(r->process_limit, l, sizeof(l));
		rmp_config_format_bytes(r->donor_footprint, f, sizeof(f));
		rmp_srv_conn_send_error(c, EINVAL, RMP_MSG_AGENT_REGISTER,
					"process limit %s leaves nothing after the donor "
					"footprint %s",
					l, f);
		return;
	}
	for (struct rmp_srv_agent *a = srv->agents; a; a = a->next) {
		if (strcmp(a->host, r->host) == 0) {
			rmp_srv_conn_send_error(c, EEXIST, RMP_MSG_AGENT_REGISTER,
						"host %s has a registered agent already (from %s)",
						r->host, a->conn ? a->conn->peer : "?");
			return;
		}
	}
	struct rmp_srv_agent *a = calloc(1, sizeof(*a));
	if (!a) {
		rmp_srv_conn_send_error(c, ENOMEM, RMP_MSG_AGENT_REGISTER, "out of memory");
		return;
	}
	a->id = srv->next_agent++;
	if (rmp_srv_persist_ids(srv)) {
		rmp_srv_conn_send_error(c, EIO, RMP_MSG_AGENT_REGISTER,
					"the coordinator cannot record the agent: %s",
					rmp_srv_persist_error(srv));
		free(a);
		return;
	}
	a->conn = c;
	memcpy(a->host, r->host, sizeof(a->host));
	a->budget = r->budget;
	a->process_limit = r->process_limit;
	a->donor_footprint = r->donor_footprint;
	/* Donors this host still runs from before (the agent or the
	 * coordinator restarted); a lost one is charged again if it returns. */
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next) {
		if (!d->agent && !d->standalone && d->state != RMP_SRV_DONOR_LOST &&
		    strcmp(d->host, a->host) == 0) {
			d->agent = a;
			a->used += d->cost;
			a->donors++;
		}
	}
	a->next = srv->agents;
	srv->agents = a;
	c->agent = a;

	struct rmp_wire_msg m = { .type = RMP_MSG_AGENT_REGISTERED };
	m.u.agent_registered.agent_id = a->id;
	rmp_srv_conn_send(c, &m);
	rmp_config_format_bytes(a->budget, b, sizeof(b));
	rmp_config_format_bytes(a->process_limit, l, sizeof(l));
	rmp_config_format_bytes(a->donor_footprint, f, sizeof(f));
	rmp_log_info("agent %" PRIu32 " registered: host %s (%s), budget %s, process limit %s, "
		     "donor footprint %s; %" PRIu32 " donor(s) of its host on record",
		     a->id, a->host, c->peer, b, l, f, a->donors);
	terminate_pending(srv, a);
}

int rmp_srv_agent_spawn(struct rmp_srv *srv, struct rmp_srv_donor *d, uint64_t segment_size)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_SPAWN };

	d->request_id = srv->next_request++;
	m.u.spawn.request_id = d->request_id;
	m.u.spawn.pool_id = d->pool_id;
	m.u.spawn.donor_id = d->id;
	m.u.spawn.region_len = d->region_len;
	m.u.spawn.segment_size = segment_size;
	d->state = RMP_SRV_DONOR_SPAWNING;
	return rmp_srv_conn_send(d->agent->conn, &m);
}

void rmp_srv_agent_progress(struct rmp_srv_conn *c, const struct rmp_wire_progress *p)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_srv_agent *a = agent_of(c);

	if (!a) {
		rmp_srv_conn_send_error(c, EPERM, RMP_MSG_PROGRESS,
					"PROGRESS before AGENT_REGISTER");
		return;
	}
	struct rmp_srv_donor *d = rmp_srv_donor_find(srv, p->donor_id);
	if (!d || d->agent != a) {
		rmp_log_warn("agent %" PRIu32 " (%s): PROGRESS for donor %" PRIu32
			     " that is not one of its donors; ignored",
			     a->id, a->host, p->donor_id);
		return;
	}
	switch (p->state) {
	case RMP_PROGRESS_SPAWNED:
		if (d->state == RMP_SRV_DONOR_SPAWNING)
			d->state = RMP_SRV_DONOR_SPAWNED;
		d->pid = p->pid;
		rmp_log_info("donor %" PRIu32 " (pool %" PRIu32 ") spawned on %s, pid %" PRIu32,
			     d->id, d->pool_id, a->host, p->pid);
		if (d->pool)
			rmp_srv_pool_donor_spawned(d->pool, d);
		break;
	case RMP_PROGRESS_FAILED: {
		char why[RMP_WIRE_TEXT_MAX + RMP_WIRE_HOST_MAX + 160];
		snprintf(why, sizeof(why), "could not start on %s: %s%s%s", a->host,
			 p->text[0] ? p->text : "", p->text[0] && p->error ? ": " : "",
			 p->error ? strerror((int)p->error) : "");
		rmp_log_warn("donor %" PRIu32 " (pool %" PRIu32 ") %s", d->id, d->pool_id, why);
		if (d->pool)
			rmp_srv_pool_donor_failed(d->pool, d, why);
		rmp_srv_donor_gone(srv, d, "spawn failed");
		break;
	}
	case RMP_PROGRESS_EXITED: {
		bool asked = d->state == RMP_SRV_DONOR_TERMINATING;
		if (!asked)
			rmp_log_warn("donor %" PRIu32 " (pool %" PRIu32 ", pid %" PRIu32
				     ") on %s exited unasked%s%s",
				     d->id, d->pool_id, d->pid, a->host, p->text[0] ? ": " : "",
				     p->text);
		struct rmp_srv_pool *pl = d->pool;
		if (!asked && pl && pl->state != RMP_SRV_POOL_PROVISIONING &&
		    pl->state != RMP_SRV_POOL_DESTROYING) {
			/* Its pool lives on: the record stays, LOST (donors.c). */
			rmp_srv_donor_lost(srv, d, "the donor process exited");
			break;
		}
		if (pl) {
			if (asked)
				rmp_srv_pool_donor_exited(pl, d);
			else
				rmp_srv_pool_donor_failed(pl, d, "the donor process exited");
		}
		rmp_srv_donor_gone(srv, d, asked ? "terminated" : "exited");
		break;
	}
	}
}

void rmp_srv_agent_conn_closed(struct rmp_srv_conn *c)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_srv_agent *a = c->agent;

	if (!a)
		return;
	rmp_log_warn("agent %" PRIu32 " (host %s) disconnected; its donors keep running", a->id,
		     a->host);
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next)
		if (d->agent == a)
			d->agent = NULL;
	/* A donor that has not registered yet cannot finish without it, and
	 * nobody could terminate it: fail its pool and forget it. Failing a
	 * pool may free other donors, so rescan after each one. */
	for (;;) {
		struct rmp_srv_donor *d = srv->donors;
		while (d && !(d->agent == NULL && d->conn == NULL && strcmp(d->host, a->host) == 0 &&
			      (d->state == RMP_SRV_DONOR_SPAWNING ||
			       d->state == RMP_SRV_DONOR_SPAWNED)))
			d = d->next;
		if (!d)
			break;
		if (d->pool)
			rmp_srv_pool_donor_failed(d->pool, d, "its host agent disconnected");
		rmp_srv_donor_gone(srv, d, "its agent disconnected before it registered");
	}
	for (struct rmp_srv_agent **pp = &srv->agents; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	c->agent = NULL;
	free(a);
}
