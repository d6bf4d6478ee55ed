/* status.c - what the coordinator holds, for STATUS_REQUEST (the
 * `rmpool status` view) and for the metrics gauges. Both read the same
 * live lists, so they cannot disagree.
 *
 * Pools: their state (a re-adopted one waiting for donors, a lost one
 * with why), donors away and lost, and the bytes of the space on lost
 * donors: a lost donor's segments stay in the table, so this is where
 * they show.
 *
 * Hosts: one entry per agent, and one per other host that runs standalone
 * donors. A standalone donor counts on its host as a donor; its offer
 * (whole segments) adds to the host's budget, and to its used bytes while
 * a pool holds it (a pool takes a standalone donor whole).
 *
 * The metrics snapshot adds the same per pool, per host and per donor as
 * labelled series (metrics.h): the agents' and donors' own figures, as
 * they reported them, relayed by the coordinator.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "rmpool/version.h"
#include "srv.h"

static uint32_t pool_donor_count(const struct rmp_srv_pool *p)
{
	uint32_t n = p->self_donor_id != 0;

	for (uint32_t i = 0; i < p->n_donors; i++)
		n += p->donors[i] != NULL;
	return n;
}

static uint8_t wire_state(const struct rmp_srv_pool *p)
{
	switch (p->state) {
	case RMP_SRV_POOL_PROVISIONING:
		return RMP_POOL_CREATING;
	case RMP_SRV_POOL_READY:
		return rmp_srv_pool_degraded(p) ? RMP_POOL_DEGRADED : RMP_POOL_READY;
	case RMP_SRV_POOL_DESTROYING:
		return RMP_POOL_DESTROYING;
	case RMP_SRV_POOL_RECOVERING:
		return RMP_POOL_RECOVERING;
	case RMP_SRV_POOL_LOST:
		break;
	}
	return RMP_POOL_LOST;
}

/* State, donors away and lost, bytes on lost donors, and a note. */
static void pool_health(const struct rmp_srv_pool *p, struct rmp_wire_pool_status *ps)
{
	ps->state = wire_state(p);
	ps->donors_away = rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_AWAY);
	ps->donors_lost = rmp_srv_pool_count_donors(p, RMP_SRV_DONOR_LOST);
	for (uint32_t i = 0; i < p->n_donors; i++)
		if (p->donors[i] && p->donors[i]->state == RMP_SRV_DONOR_LOST)
			ps->lost_bytes += p->donors[i]->region_len;
	if (p->state == RMP_SRV_POOL_LOST)
		snprintf(ps->note, sizeof(ps->note), "%s", p->lost);
	else if (ps->donors_lost && rmp_srv_pool_degraded(p))
		snprintf(ps->note, sizeof(ps->note),
			 "degraded: %" PRIu32 " donor(s) lost: their segments are out of service "
			 "(segment table version %" PRIu64 ")",
			 ps->donors_lost, p->segtab.version);
	else if (ps->donors_lost)
		snprintf(ps->note, sizeof(ps->note),
			 "%" PRIu32 " donor(s) lost: their segments are unbacked", ps->donors_lost);
	else if (ps->donors_away)
		snprintf(ps->note, sizeof(ps->note),
			 "%" PRIu32 " donor(s) away: waiting for them to register again",
			 ps->donors_away);
	/* The reason came from our own text, but stay wire-clean whatever it holds. */
	for (char *c = ps->note; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
}

static uint32_t client_count(const struct rmp_srv *srv)
{
	uint32_t n = 0;

	for (const struct rmp_srv_conn *c = srv->conns; c; c = c->next)
		n += c->authed && c->role == RMP_ROLE_CLIENT;
	return n;
}

void rmp_srv_status_reply(struct rmp_srv_conn *c)
{
	struct rmp_srv *srv = c->srv;
	struct rmp_wire_msg m = { .type = RMP_MSG_STATUS_REPLY };
	struct rmp_wire_status_reply *s = &m.u.status;
	uint32_t np = 0, nh = 0;

	for (struct rmp_srv_pool *p = srv->pools; p; p = p->next)
		np++;
	for (struct rmp_srv_agent *a = srv->agents; a; a = a->next)
		nh++;
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next)
		nh += d->standalone; /* at most one new host each */
	if (np > RMP_WIRE_MAX_POOLS)
		np = RMP_WIRE_MAX_POOLS;
	if (nh > RMP_WIRE_MAX_HOSTS)
		nh = RMP_WIRE_MAX_HOSTS;
	s->pools = calloc(np ? np : 1, sizeof(*s->pools));
	s->hosts = calloc(nh ? nh : 1, sizeof(*s->hosts));
	if (!s->pools || !s->hosts) {
		free(s->pools);
		free(s->hosts);
		rmp_srv_conn_send_error(c, ENOMEM, RMP_MSG_STATUS_REQUEST, "out of memory");
		return;
	}
	s->uptime_ms = rmp_mono_ms() - srv->start_ms;
	s->generation = srv->generation;
	s->clients = client_count(srv);
	for (struct rmp_srv_pool *p = srv->pools; p && s->n_pools < np; p = p->next) {
		struct rmp_wire_pool_status *ps = &s->pools[s->n_pools++];
		memcpy(ps->name, p->name, sizeof(ps->name));
		ps->pool_id = p->id;
		ps->capacity = rmp_srv_pool_capacity(p);
		ps->space = p->space;
		ps->free_bytes = rmp_srv_pool_free_bytes(p);
		ps->clients = rmp_srv_leases_count_pool(&srv->leases, p->id);
		ps->donors = pool_donor_count(p);
		ps->segtab_version = p->segtab.version;
		pool_health(p, ps);
		if (p->state == RMP_SRV_POOL_READY) {
			s->capacity += ps->capacity;
			s->free_bytes += ps->free_bytes;
		}
	}
	for (struct rmp_srv_agent *a = srv->agents; a && s->n_hosts < nh; a = a->next) {
		struct rmp_wire_host_status *hs = &s->hosts[s->n_hosts++];
		memcpy(hs->host, a->host, sizeof(hs->host));
		hs->donors = a->donors;
		hs->budget = a->budget;
		hs->used = a->used;
	}
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next) {
		if (!d->standalone)
			continue;
		struct rmp_wire_host_status *hs = NULL;
		for (uint32_t i = 0; i < s->n_hosts && !hs; i++)
			if (strcmp(s->hosts[i].host, d->host) == 0)
				hs = &s->hosts[i];
		if (!hs) {
			if (s->n_hosts >= nh)
				continue;
			hs = &s->hosts[s->n_hosts++];
			memcpy(hs->host, d->host, sizeof(hs->host));
		}
		hs->donors++;
		hs->budget += d->offered;
		if (d->pool)
			hs->used += d->offered;
	}
	rmp_srv_conn_send(c, &m);
	free(s->pools);
	free(s->hosts);
}

static const char *pool_state_name(const struct rmp_srv_pool *p)
{
	switch (p->state) {
	case RMP_SRV_POOL_PROVISIONING:
		return "creating";
	case RMP_SRV_POOL_READY:
		return rmp_srv_pool_degraded(p) ? "degraded" : "ready";
	case RMP_SRV_POOL_DESTROYING:
		return "destroying";
	case RMP_SRV_POOL_RECOVERING:
		return "recovering";
	case RMP_SRV_POOL_LOST:
		break;
	}
	return "lost";
}

static const char *donor_state_name(enum rmp_srv_donor_state st)
{
	switch (st) {
	case RMP_SRV_DONOR_SPAWNING:
		return "spawning";
	case RMP_SRV_DONOR_SPAWNED:
		return "spawned";
	case RMP_SRV_DONOR_REGISTERED:
		return "registered";
	case RMP_SRV_DONOR_LOST:
		return "lost";
	case RMP_SRV_DONOR_TERMINATING:
		return "terminating";
	case RMP_SRV_DONOR_AWAY:
		break;
	}
	return "away";
}

/* The labelled series: one entry per pool, per host (as STATUS_REPLY
 * counts them: each agent's, then each other host of standalone donors)
 * and per donor. Out of memory: the series are left out, the totals stay. */
static void labelled_snapshot(struct rmp_srv *srv, struct rmp_srv_metrics *out)
{
	size_t np = 0, nh = 0, nd = 0;

	for (struct rmp_srv_pool *p = srv->pools; p; p = p->next)
		np++;
	for (struct rmp_srv_agent *a = srv->agents; a; a = a->next)
		nh++;
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next)
		nd++;
	struct rmp_srv_metrics_pool *pools = calloc(np ? np : 1, sizeof(*pools));
	struct rmp_srv_metrics_host *hosts = calloc(nh + nd ? nh + nd : 1, sizeof(*hosts));
	struct rmp_srv_metrics_donor *donors = calloc(nd ? nd : 1, sizeof(*donors));
	if (!pools || !hosts || !donors) {
		free(pools);
		free(hosts);
		free(donors);
		return;
	}
	size_t i = 0;
	for (struct rmp_srv_pool *p = srv->pools; p; p = p->next, i++) {
		struct rmp_wire_pool_status ps = { 0 };
		pool_health(p, &ps);
		pools[i] = (struct rmp_srv_metrics_pool){
			.name = p->name, .id = p->id, .state = pool_state_name(p),
			.capacity_bytes = rmp_srv_pool_capacity(p), .lost_bytes = ps.lost_bytes,
			.free_bytes = p->state == RMP_SRV_POOL_READY ? rmp_srv_pool_free_bytes(p) : 0,
			.donors = pool_donor_count(p), .donors_away = ps.donors_away,
			.donors_lost = ps.donors_lost,
			.leases = rmp_srv_leases_count_pool(&srv->leases, p->id),
		};
	}
	size_t h = 0;
	for (struct rmp_srv_agent *a = srv->agents; a; a = a->next, h++)
		hosts[h] = (struct rmp_srv_metrics_host){
			.host = a->host, .agent = true, .budget_bytes = a->budget, .used_bytes = a->used,
			.donors = a->donors, .process_limit_bytes = a->process_limit,
			.donor_footprint_bytes = a->donor_footprint,
		};
	i = 0;
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next, i++) {
		donors[i] = (struct rmp_srv_metrics_donor){
			.id = d->id, .pool = d->pool ? d->pool->name : "", .host = d->host,
			.state = donor_state_name(d->state), .region_bytes = d->region.len,
		};
		if (!d->standalone)
			continue;
		struct rmp_srv_metrics_host *hs = NULL;
		for (size_t k = 0; k < h && !hs; k++)
			if (strcmp(hosts[k].host, d->host) == 0)
				hs = &hosts[k];
		if (!hs) {
			hs = &hosts[h++];
			hs->host = d->host;
		}
		hs->donors++;
		hs->budget_bytes += d->offered;
		if (d->pool)
			hs->used_bytes += d->offered;
	}
	out->pool = pools;
	out->n_pools = np;
	out->host = hosts;
	out->n_hosts = h;
	out->donor = donors;
	out->n_donors = nd;
}

void rmp_srv_metrics_snapshot(struct rmp_srv *srv, struct rmp_srv_metrics *out)
{
	*out = srv->m;
	out->version = RMPOOL_VERSION;
	out->pools = out->capacity_bytes = out->free_bytes = out->donors = 0;
	out->pools_recovering = out->pools_lost = out->donors_away = out->donors_lost = 0;
	out->pools_degraded = 0;
	out->generation = srv->generation;
	for (struct rmp_srv_pool *p = srv->pools; p; p = p->next) {
		out->pools++;
		out->pools_recovering += p->state == RMP_SRV_POOL_RECOVERING;
		out->pools_lost += p->state == RMP_SRV_POOL_LOST;
		out->pools_degraded += p->state == RMP_SRV_POOL_READY && rmp_srv_pool_degraded(p);
		if (p->state == RMP_SRV_POOL_READY) {
			out->capacity_bytes += rmp_srv_pool_capacity(p);
			out->free_bytes += rmp_srv_pool_free_bytes(p);
		}
	}
	out->donors_standalone = out->donors_spare = 0;
	for (struct rmp_srv_donor *d = srv->donors; d; d = d->next) {
		out->donors++;
		out->donors_standalone += d->standalone;
		out->donors_spare += rmp_srv_donor_spare(d);
		out->donors_away += d->state == RMP_SRV_DONOR_AWAY;
		out->donors_lost += d->state == RMP_SRV_DONOR_LOST;
	}
	out->clients = client_count(srv);
	out->agents = 0;
	for (struct rmp_srv_agent *a = srv->agents; a; a = a->next)
		out->agents++;
	out->leases = srv->leases.n;
	out->connections = srv->n_conns;
	labelled_snapshot(srv, out);
}

void rmp_srv_metrics_snapshot_free(struct rmp_srv_metrics *m)
{
	free((void *)m->pool);
	free((void *)m->host);
	free((void *)m->donor);
	m->pool = NULL;
	m->host = NULL;
	m->donor = NULL;
	m->n_pools = m->n_hosts = m->n_donors = 0;
}
