/* plan.c - see plan.h. One function per step of the plan; they share a
 * struct planning (the request, the plan being filled, the numbers the
 * later steps need) and each refusal is formatted once, into the plan's
 * err, by refuse(). The texts are the ones consumers and tests look for:
 * "pool NAME (ASKED): ..." when the numbers do not work out, bare ones
 * for a bad min_block or memory.
 */
#include "plan.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "debug.h"
#include "layout.h"

struct planning {
	const struct rmp_srv_plan_req *rq;
	struct rmp_srv_plan *pl;
	char asked[32]; /* the capacity, as the replies print it */
	/* the hosts: the one with the least room per donor decides the
	 * region, the largest footprint the cost of a donor anywhere */
	const struct rmp_srv_plan_host *tightest;
	uint64_t max_footprint;
	struct rmp_srv_sizing_host *hosts; /* placement's view, placed counts */
	struct rmp_srv_layout_spare *spare;
	uint64_t taken; /* bytes the standalone regions give */
	struct rmp_srv_sizing sizing;
};

static int refuse(struct planning *g, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int refuse(struct planning *g, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g->pl->err, sizeof(g->pl->err), fmt, ap);
	va_end(ap);
	return rc;
}

/* A refusal from sizing.h, whose text gives the numbers. */
static int refuse_because(struct planning *g, int rc, const char *why)
{
	return refuse(g, rc, "pool %s (%s): %s", g->rq->name, g->asked, why);
}

int rmp_srv_plan_check_name(const char *name, char *err, size_t errlen)
{
	bool ok = name[0] && name[0] != '.' && name[0] != '-';

	for (const char *s = name; ok && *s; s++) {
		char ch = *s;
		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		     ch == '.' || ch == '_' || ch == '-';
	}
	if (ok)
		return 0;
	snprintf(err, errlen,
		 "pool name \"%s\": use letters, digits, '.', '_' and '-', not first '.' or '-'",
		 name);
	return -EINVAL;
}

/* 1. The request itself. */
static int plan_check_request(struct planning *g)
{
	const struct rmp_srv_plan_req *rq = g->rq;
	char seg[32];

	int rc = rmp_srv_plan_check_name(rq->name, g->pl->err, sizeof(g->pl->err));
	if (rc)
		return rc;
	uint64_t min_block = rq->min_block ? rq->min_block : rq->default_min_block;
	if ((min_block & (min_block - 1)) || min_block < 64 || min_block > rq->segment_size) {
		rmp_config_format_size(rq->segment_size, seg, sizeof(seg));
		return refuse(g, -EINVAL, "min_block %" PRIu64 " must be a power of two in [64, %s]",
			      min_block, seg);
	}
	g->pl->min_block_log2 = (unsigned)__builtin_ctzll(min_block);
	for (size_t i = 0; i < rq->n_hosts; i++) {
		const struct rmp_srv_plan_host *h = &rq->hosts[i];
		/* agents.c refuses a host whose limit does not exceed its footprint */
		rmp_assert(h->process_limit > h->donor_footprint);
		if (!g->tightest || h->process_limit - h->donor_footprint <
					    g->tightest->process_limit - g->tightest->donor_footprint)
			g->tightest = h;
		if (h->donor_footprint > g->max_footprint)
			g->max_footprint = h->donor_footprint;
	}
	return 0;
}

/* 2. Who backs what: the coordinator's share, spare standalone regions,
 * then spawned donors for what is left. */
static int plan_sources(struct planning *g)
{
	const struct rmp_srv_plan_req *rq = g->rq;
	char why[RMP_WIRE_TEXT_MAX + 1], given[32];

	uint64_t mask = rq->segment_size - 1;
	uint64_t need = rq->capacity <= UINT64_MAX - mask ? (rq->capacity + mask) & ~mask : 0;
	uint64_t share = rq->self_contribution & ~mask;
	g->spare = calloc(rq->n_spare ? rq->n_spare : 1, sizeof(*g->spare));
	if (!g->spare)
		return refuse(g, -ENOMEM, "out of memory");
	for (size_t i = 0; i < rq->n_spare; i++)
		g->spare[i].offered = rq->spare[i].offered;
	g->taken = rmp_srv_layout_pick_spare(need - (share < need ? share : need), g->spare,
					     rq->n_spare);
	if (g->taken < rq->capacity) {
		struct rmp_srv_sizing_req req = { .capacity = rq->capacity - g->taken,
						  .segment_size = rq->segment_size,
						  .coordinator_share = rq->self_contribution };
		if (g->tightest) {
			req.process_limit = g->tightest->process_limit;
			req.donor_footprint = g->tightest->donor_footprint;
		} else {
			/* No agent: only the coordinator's share (and standalone
			 * donors) can serve the pool. */
			req.process_limit = rq->segment_size;
		}
		int rc = rmp_srv_sizing_count(&req, &g->sizing, why, sizeof(why));
		if (rc)
			return refuse_because(g, rc, why);
	}
	if (g->sizing.donors && !g->tightest) {
		rmp_config_format_bytes(g->taken, given, sizeof(given));
		return refuse(g, -EHOSTUNREACH,
			      "pool %s (%s): no host agent is registered to run donors "
			      "(%zu spare standalone donor(s) give %s)",
			      rq->name, g->asked, rq->n_spare, given);
	}
	return 0;
}

/* 3. The space, and its buddy metadata. */
static int plan_space(struct planning *g)
{
	const struct rmp_srv_plan_req *rq = g->rq;
	struct rmp_srv_geometry *geo = &g->pl->geo;
	char why[RMP_WIRE_TEXT_MAX + 1], seg[32];

	int rc = rmp_srv_sizing_geometry(rq->capacity, rq->segment_size,
					 g->sizing.provided + g->taken, geo, why, sizeof(why));
	if (rc)
		return refuse_because(g, rc, why);
	if (geo->segments > RMP_WIRE_MAX_SEGMENTS) {
		rmp_config_format_size(rq->segment_size, seg, sizeof(seg));
		return refuse(g, -E2BIG,
			      "pool %s (%s): %" PRIu64 " segments of %s, at most %u: raise the "
			      "coordinator's segment-size",
			      rq->name, g->asked, geo->segments, seg, RMP_WIRE_MAX_SEGMENTS);
	}
	unsigned min_log2 = g->pl->min_block_log2;
	if (rmp_buddy_geom_init_records(&g->pl->buddy, geo->space_log2, min_log2, RMP_SRV_POOL_SLOTS))
		return refuse(g, -EINVAL,
			      "pool %s (%s): a 2^%u-byte space in 2^%u-byte blocks needs %u buddy "
			      "levels, at most %u: ask for a larger min_block",
			      rq->name, g->asked, geo->space_log2, min_log2,
			      geo->space_log2 - min_log2 + 1, RMP_BUDDY_MAX_LEVELS);
	return 0;
}

/* 4. The spawned donors over the hosts' budgets. */
static int plan_placement(struct planning *g)
{
	const struct rmp_srv_plan_req *rq = g->rq;
	char why[RMP_WIRE_TEXT_MAX + 1];

	if (!g->sizing.donors)
		return 0;
	rmp_assert(rq->n_hosts > 0); /* plan_sources refused a pool no host can run */
	g->hosts = calloc(rq->n_hosts, sizeof(*g->hosts));
	if (!g->hosts)
		return refuse(g, -ENOMEM, "out of memory");
	for (size_t i = 0; i < rq->n_hosts; i++)
		g->hosts[i] = (struct rmp_srv_sizing_host){ .name = rq->hosts[i].name,
							    .budget = rq->hosts[i].budget };
	int rc = rmp_srv_sizing_place(g->sizing.donors, g->sizing.region_len + g->max_footprint,
				      g->hosts, rq->n_hosts, why, sizeof(why));
	if (rc)
		return refuse_because(g, rc, why);
	return 0;
}

/* 5. Every piece's length and pool address. */
static int plan_layout(struct planning *g)
{
	const struct rmp_srv_plan_req *rq = g->rq;
	struct rmp_srv_plan *pl = g->pl;
	uint64_t n_spawn = g->sizing.donors;
	size_t n_used = 0;

	for (size_t i = 0; i < rq->n_spare; i++)
		n_used += g->spare[i].take != 0;
	struct rmp_srv_layout_region *r = calloc(n_used + n_spawn ? n_used + n_spawn : 1, sizeof(*r));
	pl->standalone = calloc(n_used ? n_used : 1, sizeof(*pl->standalone));
	pl->spawn = calloc(n_spawn ? n_spawn : 1, sizeof(*pl->spawn));
	if (!r || !pl->standalone || !pl->spawn) {
		free(r);
		return refuse(g, -ENOMEM, "out of memory");
	}
	/* The standalone regions taken, in the order they go in the space. */
	for (size_t i = 0, k = 0; i < rq->n_spare; i++) {
		if (g->spare[i].take) {
			pl->standalone[k].from = i;
			r[k++].len = g->spare[i].take;
		}
	}
	struct rmp_srv_layout_req lrq = { .capacity = rq->capacity,
					  .segment_size = rq->segment_size,
					  .self_len = g->sizing.coordinator_len,
					  .region_max = g->sizing.region_len };
	if (rmp_srv_layout_regions(&lrq, r, n_used, r + n_used, n_spawn, &pl->self_len)) {
		free(r);
		return refuse(g, -EINVAL,
			      "pool %s (%s): internal error laying out %zu standalone and %" PRIu64
			      " spawned donors",
			      rq->name, g->asked, n_used, n_spawn);
	}
	for (size_t i = 0; i < n_used; i++) {
		pl->standalone[i].len = r[i].len;
		pl->standalone[i].base = r[i].base;
	}
	/* Host by host, in placement order, each taking the next regions. */
	uint64_t k = 0;
	for (size_t h = 0; n_spawn && h < rq->n_hosts; h++)
		for (uint64_t j = 0; j < g->hosts[h].placed; j++, k++)
			pl->spawn[k] = (struct rmp_srv_plan_piece){
				.from = h, .len = r[n_used + k].len, .base = r[n_used + k].base
			};
	rmp_assert(k == n_spawn);
	free(r);
	pl->n_standalone = n_used;
	pl->standalone_bytes = g->taken;
	pl->n_spawn = n_spawn;
	pl->region_len = g->sizing.region_len;
	return 0;
}

int rmp_srv_plan_make(const struct rmp_srv_plan_req *rq, struct rmp_srv_plan *out)
{
	struct planning g = { .rq = rq, .pl = out };

	memset(out, 0, sizeof(*out));
	rmp_config_format_bytes(rq->capacity, g.asked, sizeof(g.asked));
	int rc = plan_check_request(&g);
	if (rc == 0)
		rc = plan_sources(&g);
	if (rc == 0)
		rc = plan_space(&g);
	if (rc == 0)
		rc = plan_placement(&g);
	if (rc == 0)
		rc = plan_layout(&g);
	free(g.hosts);
	free(g.spare);
	return rc;
}

void rmp_srv_plan_free(struct rmp_srv_plan *pl)
{
	free(pl->standalone);
	free(pl->spawn);
	pl->standalone = pl->spawn = NULL;
	pl->n_standalone = 0;
	pl->n_spawn = 0;
}
