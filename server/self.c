/* self.c - the coordinator's own engine on its pools' allocator metadata:
 * a loopback RDMA connection to its own rdma_cm listener, the buddy
 * engine over it, on a worker thread.
 *
 * Why RDMA to itself: consumers change the metadata words with RDMA CAS
 * and FAA, and rxe's atomics are not atomic against the CPU (DESIGN.md,
 * Generations): a CPU store or CPU atomic on a word a consumer may CAS
 * at the same moment can be lost. So the coordinator changes a word the
 * way every consumer does - through the same device, as one more
 * client - and never with the CPU. The event loop never blocks: it
 * queues jobs; the worker connects (with a METADATA token the loop
 * minted under the coordinator's own key), runs the engine and queues
 * the result back, waking the loop through a pipe, which logs it and
 * counts it (metrics). The worker touches nothing of struct rmp_srv:
 * a job carries copies of all it needs (endpoint, token, region,
 * geometry, segment list), so a pool freed meanwhile costs at most one
 * refused connection.
 *
 * Jobs: retiring a lost donor's segments (DESIGN.md, "Donor death"),
 * and reclaiming an expired lease's blocks (below).
 * Each segment is one buddy block (segment_log2, aligned), retired with
 * rmp_buddy_retire: its FREE parts become RESERVED, so no allocation
 * lands there and no merge brings it back; blocks allocated inside stay
 * until their owner frees them (rmp_buddy_free_retired in the client).
 * A consumer that had not yet received the new table may free a block
 * there with a plain free in the meantime, so the pass runs at the loss
 * and again at +1 s, +3 s and +10 s (retire is idempotent: later passes
 * find only what such frees gave back). -EAGAIN (a block in passing: a
 * split or merge half done) is retried within the pass, then left to the
 * next pass.
 *
 * Reclaim (DESIGN.md, "Reclaim of an expired consumer"; reclaim.c
 * decides when): one job per expired lease whose cut-off is complete
 * runs the engine's resolver over the pool's metadata with that lease's
 * contexts DEAD: a clean
 * snapshot, the garbage it shows (ALLOC blocks with no live tag, holes
 * of a dead split or merge, count and transit drift, busy dead slots),
 * and the repairs, concurrently with the live consumers. A busy pool
 * (SELF_SWEEP_AFTER unclean snapshots) is swept first: the dead lease's
 * blocks tagged exactly with its tags that no busy slot names are freed
 * from the unclean snapshot (rmp_buddy_find_dead_blocks), logged "pool P:
 * lease L: N blocks, B bytes swept from a busy pool" and counted in
 * rmpool_reclaimed_bytes_total; the rest waits for a clean one. The resolver's
 * own context keeps records in the pool's last slot (reclaim.c,
 * rmp_srv_self_slot). Who owns which slot (the parties) is the one
 * thing the worker must see current, not as copied when the job was
 * queued: a lease granted while a job runs would otherwise look like
 * nobody's and its blocks like garbage. So the loop keeps a table of
 * parties per pool here, under the lock, rebuilt at every grant (before
 * the POOL_READY that lets its client allocate) and every queued
 * reclaim (rmp_srv_self_parties); the worker copies it before
 * each snapshot (which of the busy slots are live) and again after a
 * clean one (whose tags are live): a block of a lease granted meanwhile
 * was allocated after its grant, so the second copy knows its tag. A
 * pool where a live lease keeps no records (a lease restored from a
 * schema-1 store) is not reclaimed: its blocks have no tag and would
 * look like garbage.
 *
 * Abandoned slots (DESIGN.md, "Owner records"): a consumer whose
 * operation failed in the middle on an RDMA error marks that shard's slot
 * RMP_BUDDY_SLOT_ABANDONED and uses its other shards until the slot is
 * idle again; only the resolver resets it, and while it is busy every
 * snapshot of the pool is unclean for anyone else's reclaim. So every
 * SELF_SCAN_MS the tick queues a scan job per ready pool with records and
 * at least one lease (its table of parties rebuilt first: after a restart
 * no grant has built it): one READ of the pool's slot array over a loopback
 * connection the worker keeps per pool (made once, dropped when it fails
 * or the pool is no longer scanned); if a slot says ABANDONED the worker
 * runs the resolver with the current parties (no lease dead: while one
 * is, its reclaim is queued and resets them; the scan defers), which frees
 * what the abandoned operation left (the block it claimed when the call
 * failed after the claim, a half-done split or merge) and resets the slot.
 * The loop logs "pool P: slot S of lease L abandoned mid-operation:
 * reset, N blocks / B bytes freed" and counts it
 * (rmpool_abandoned_slots_reset_total, rmpool_abandoned_bytes_freed_total).
 * The scan runs the resolver too when the resolver's own slot is busy:
 * what a coordinator killed mid-repair left (DESIGN.md, Reclaim). One
 * scan per pool is out at a time.
 *
 * Entry points: rmp_srv_self_start/stop (main.c), rmp_srv_self_retire_lost
 * (pool.c), rmp_srv_self_reclaim (reclaim.c), rmp_srv_self_parties (pool
 * and reclaim changes), rmp_srv_self_forget_pool (a pool freed),
 * rmp_srv_self_tick (main.c: the scans).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "layout.h"
#include "log.h"
#include "srv.h"

/* The retire passes of one loss: at it, then these many ms after. */
static const uint32_t self_pass_delay_ms[] = { 0, 1000, 3000, 10000 };
#define SELF_PASSES (sizeof(self_pass_delay_ms) / sizeof(self_pass_delay_ms[0]))

#ifdef RMPOOL_SERVER_HAVE_RDMA
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "buddy.h"
#include "rdma.h"
#include "store_rdma.h"

/* Every wait of a pass (connect, each round trip): a loopback through
 * the local device answers in well under a millisecond; 5 s covers a
 * loaded host, and a pass that fails is tried again by the next. */
#define SELF_RDMA_TIMEOUT_MS 5000
/* A token outlives the last pass of its loss (+10 s) with room. */
#define SELF_TOKEN_TTL_MS 60000u
/* -EAGAIN from retire: a block in passing; tries within one pass. */
#define SELF_EAGAIN_TRIES 20
#define SELF_EAGAIN_PAUSE_US 10000
/* The engine context's id (cursor hashing; the reclaim work gives the
 * coordinator a tag of its own). Session ids start at 1: 0 is nobody's. */
#define SELF_CLIENT_ID 0u
/* The resolver's tag id in a pool: above every lease's (lease id * 16 +
 * shard), one per pool. */
#define SELF_TAG_ID(pool_id) ((UINT64_C(1) << 60) | (pool_id))
/* Snapshots a reclaim takes until one is clean, with a pause between
 * (a live consumer's operation in flight makes one unclean). */
#define SELF_RECLAIM_TRIES 50
#define SELF_RECLAIM_PAUSE_US 20000
/* An unclean snapshot (a consumer's operation in flight) asks the pool's
 * live consumers to hold new allocations and frees (POOL_HOLD, on their
 * control connections: the loop sends it) for SELF_HOLD_MS, waits
 * SELF_HOLD_LEAD_US for the message to land and the operations on their
 * way to end, and snapshots again: at most SELF_HOLDS_MAX holds per job,
 * then the plain pauses. A snapshot of a 128 MiB pool takes about 45 ms
 * in the guests. */
#define SELF_HOLD_MS 150u
#define SELF_HOLD_LEAD_US 25000
#define SELF_HOLDS_MAX 6u
/* After this many unclean snapshots a reclaim sweeps the last one for
 * the dead lease's blocks (rmp_buddy_find_dead_blocks: no clean snapshot
 * needed), then goes on for a clean one for the rest. */
#define SELF_SWEEP_AFTER 3
/* How often each pool's slots are read for abandoned ones; a kept
 * connection not used for SELF_CONN_IDLE_MS (its pool no longer scanned)
 * is closed. */
#define SELF_SCAN_MS 1000u
#define SELF_CONN_IDLE_MS 10000u
/* Abandoned slots a scan names in its log line (it resets them all). */
#define SELF_SCAN_NAMED 8u

/* Who owns a slot (the values of buddy.h's enum rmp_buddy_party). */
enum self_party { SELF_NONE = 0, SELF_LIVE = 1, SELF_DEAD = 2 };
struct self_slot_party {
	uint64_t tag;
	unsigned party;
};
/* A pool's parties, rebuilt by the loop (rmp_srv_self_parties). */
struct self_parties {
	struct self_parties *next;
	uint32_t pool_id;
	unsigned slots;
	unsigned untagged; /* live leases that keep no records */
	struct self_slot_party *v;
};

enum self_kind { SELF_RETIRE, SELF_RECLAIM, SELF_SCAN };

struct self_job {
	struct self_job *next;
	enum self_kind kind;
	uint32_t pool_id;
	char pool_name[RMP_WIRE_NAME_MAX + 1];
	unsigned pass; /* index into self_pass_delay_ms */
	uint64_t due_ms;
	struct rmp_wire_endpoint ep;
	uint8_t token[RMP_AUTH_TOKEN_LEN];
	struct rmp_wire_region meta;
	struct rmp_buddy_geom geom;
	unsigned segment_log2;
	uint32_t n_segs;
	uint32_t *segs;
	/* reclaim: the lease, the resolver's slot (scan: the slot too) */
	uint64_t lease_id;
	unsigned self_slot;
	/* scan: the abandoned slots seen (the first SELF_SCAN_NAMED, with
	 * their leases), the slots the resolver reset; repeat: it failed
	 * as the last scan of the pool did (logged quieter) */
	unsigned abandoned, slots_reset;
	unsigned named_slot[SELF_SCAN_NAMED];
	uint64_t named_lease[SELF_SCAN_NAMED];
	bool repeat;
	/* scan: the resolver ran for what a killed resolver left (its own
	 * slot busy) */
	bool leftover;
	bool deferred; /* scan: a lease of the pool is dead - its reclaim resets the slots */
	/* the result, filled by the worker */
	int rc;
	uint32_t segs_done;
	uint64_t bytes; /* retire: newly RESERVED; reclaim: given back */
	uint64_t blocks; /* reclaim: garbage blocks freed and holes released */
	uint64_t swept_blocks, swept_bytes; /* reclaim: of them, by the sweep of a busy pool */
	unsigned snapshots;
	unsigned holds;   /* POOL_HOLD rounds asked for */
	uint64_t snap_ms; /* reclaim: time spent in snapshots, clean or not */
	uint64_t ms;
	char err[200];
};

/* A loopback connection the worker keeps for a pool's scans (only the
 * worker touches these, and stop once it joined). */
struct self_conn {
	struct self_conn *next;
	uint32_t pool_id;
	uint64_t addr;
	uint32_t rkey;
	rmp_rdma_conn *conn;
	rmp_store_rdma *st;
	uint64_t used_ms;
	int last_rc;
};

struct rmp_srv_self {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	struct self_job *pending; /* by due_ms */
	struct self_job *done;
	struct self_job *running; /* the job the worker runs now (under lock) */
	struct self_parties *parties;
	struct self_conn *conns;  /* the worker's */
	uint64_t scan_ms;         /* the loop's: the last round of scans queued */
	uint64_t scan_warn_ms;    /* the loop's: the last warning of a failed scan */
	bool stop;
	pthread_t thread;
	int pipe[2]; /* worker -> loop: results are waiting, or a hold is asked for */
	struct event *ev;
	/* The worker asks the loop to send POOL_HOLD to hold_pool's leases
	 * (under lock; one at a time: the worker runs one job). */
	bool hold_req;
	uint32_t hold_pool;
};

/* The worker's side of a hold: the loop sends it (self_done_cb). */
static void self_ask_hold(struct rmp_srv_self *s, uint32_t pool_id)
{
	pthread_mutex_lock(&s->lock);
	s->hold_req = true;
	s->hold_pool = pool_id;
	pthread_mutex_unlock(&s->lock);
	ssize_t w = write(s->pipe[1], "h", 1);
	(void)w; /* a full pipe already holds a wake-up */
}

static void job_free(struct self_job *j)
{
	free(j->segs);
	free(j);
}

/* Retires j's segments over a connection of its own. */
static int self_retire_segments(struct self_job *j, rmp_rdma_conn *conn, rmp_store_rdma *st)
{
	struct rmp_buddy b;
	struct rmp_buddy_ctx *ctx = calloc(1, sizeof(*ctx));
	int rc = 0;

	if (!ctx)
		return -ENOMEM;
	rmp_buddy_init(&b, &j->geom, rmp_store_rdma_base(st));
	rmp_buddy_ctx_init(ctx, &b, SELF_CLIENT_ID);
	for (uint32_t i = 0; i < j->n_segs && rc == 0; i++) {
		uint64_t off = (uint64_t)j->segs[i] << j->segment_log2;
		for (int t = 0; t < SELF_EAGAIN_TRIES; t++) {
			/* A call that says -EAGAIN has RESERVED bytes too: count each. */
			uint64_t bytes = 0;
			rc = rmp_buddy_retire(&b, ctx, off, j->segment_log2, &bytes);
			j->bytes += bytes;
			if (rc != -EAGAIN)
				break;
			usleep(SELF_EAGAIN_PAUSE_US);
		}
		if (rc) {
			snprintf(j->err, sizeof(j->err), "segment %" PRIu32 " (offset %" PRIu64 "): %s",
				 j->segs[i], off, strerror(-rc));
			break;
		}
		j->segs_done++;
	}
	if (rc == 0 && rmp_rdma_conn_failed(conn))
		rc = -EIO;
	free(ctx);
	return rc;
}

/* The worker's copy of pool_id's parties, as buddy.h's who array of
 * `slots` entries. -ENOENT: the loop has no table for the pool (it could
 * not build one). */
static int parties_copy(struct rmp_srv_self *s, uint32_t pool_id, struct self_slot_party *out,
			unsigned slots, unsigned *untagged)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&s->lock);
	for (const struct self_parties *t = s->parties; t; t = t->next) {
		if (t->pool_id == pool_id && t->slots == slots) {
			memcpy(out, t->v, slots * sizeof(*out));
			*untagged = t->untagged;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* Both copies of the parties into who (the same values: enum self_party
 * is buddy.h's enum rmp_buddy_party). */
static int self_who(struct rmp_srv_self *s, struct self_job *j, struct self_slot_party *tmp,
		    struct rmp_buddy_who *who, unsigned n)
{
	unsigned untagged = 0;
	int rc = parties_copy(s, j->pool_id, tmp, n, &untagged);

	if (rc) {
		snprintf(j->err, sizeof(j->err), "no table of the pool's slot owners");
		return rc;
	}
	if (untagged) {
		snprintf(j->err, sizeof(j->err), "%u live lease(s) keep no owner records (recorded before "
			 "records): their blocks would look like garbage", untagged);
		return -EBUSY;
	}
	for (unsigned c = 0; c < n; c++)
		who[c] = (struct rmp_buddy_who){ .tag = tmp[c].tag, .party = tmp[c].party };
	return 0;
}

/* The slots the plan resets that their clients abandoned (any job of the
 * resolver resets them: a reclaim's as well as a scan's), with their
 * leases from the parties, for the log line. */
static void name_abandoned(struct self_job *j, const struct rmp_buddy_plan *plan, const struct self_slot_party *tmp)
{
	j->abandoned = 0;
	for (unsigned k = 0; k < plan->n; k++) {
		const struct rmp_buddy_fix *f = &plan->fix[k];
		if (f->kind != RMP_BUDDY_FIX_SLOT || !(f->word & RMP_BUDDY_SLOT_ABANDONED))
			continue;
		unsigned c = (unsigned)f->by;
		if (j->abandoned < SELF_SCAN_NAMED) {
			j->named_slot[j->abandoned] = c;
			j->named_lease[j->abandoned] = tmp[c].party != SELF_NONE
				? (tmp[c].tag & ~RMP_BUDDY_TAG_BIT) / RMP_SRV_LEASE_SLOTS : UINT64_MAX;
		}
		j->abandoned++;
	}
}

/* The dead-tag sweep of an unclean snapshot (a busy pool): the dead
 * lease's blocks that no busy slot names, freed under the tag lock. 0 or
 * an error with j->err set. */
static int self_sweep(struct self_job *j, struct rmp_buddy *b, struct rmp_buddy_ctx *ctx,
		      const struct rmp_buddy_snap *snap, const struct rmp_buddy_who *who)
{
	struct rmp_buddy_plan plan;
	struct rmp_buddy_resolve_report r = { 0 };
	int rc = rmp_buddy_find_dead_blocks(b, snap, who, &plan);

	if (rc) {
		snprintf(j->err, sizeof(j->err), "sweeping the dead blocks: %s", strerror(-rc));
		return rc;
	}
	if (plan.n)
		rc = rmp_buddy_repair(b, ctx, &plan, &r);
	rmp_buddy_plan_free(&plan);
	j->swept_blocks += r.garbage_freed;
	j->swept_bytes += r.garbage_bytes;
	if (rc)
		snprintf(j->err, sizeof(j->err), "sweep repair: %s", strerror(-rc));
	return rc;
}

/* A scan leaves the pool alone while one of its leases is dead (a
 * reclaim is queued or running: it resets the abandoned slots too), so
 * that a dead lease's blocks come back in its reclaim, said and counted
 * there, not as what an abandoned operation left. */
static bool scan_defers(const struct self_job *j, const struct rmp_buddy_who *who, unsigned n)
{
	if (j->kind != SELF_SCAN)
		return false;
	for (unsigned c = 0; c < n; c++)
		if (c != j->self_slot && who[c].party == RMP_BUDDY_PARTY_DEAD)
			return true;
	return false;
}

/* The resolver with the parties read fresh: before each snapshot (busy
 * slots of live contexts make it unclean) and after a clean one (whose
 * tags are live: a lease granted meanwhile is in it). */
static int self_resolve(struct rmp_srv_self *s, struct self_job *j, struct rmp_buddy *b,
			struct rmp_buddy_ctx *ctx)
{
	unsigned n = b->g.slots;
	struct self_slot_party *tmp = calloc(n, sizeof(*tmp));
	struct rmp_buddy_who *who = calloc(n, sizeof(*who));
	int rc = -ENOMEM;

	if (!tmp || !who)
		goto out_free;
	rc = -EAGAIN;
	for (unsigned k = 0; k < SELF_RECLAIM_TRIES; k++) {
		struct rmp_buddy_snap snap;
		struct rmp_buddy_plan plan;
		struct rmp_buddy_resolve_report r = { 0 };
		if ((rc = self_who(s, j, tmp, who, n)) != 0)
			break;
		if (scan_defers(j, who, n)) {
			j->deferred = true;
			break;
		}
		uint64_t ts = rmp_mono_ms();
		rc = rmp_buddy_snapshot(b, ctx, who, &snap);
		j->snap_ms += rmp_mono_ms() - ts;
		if (rc != 0) {
			snprintf(j->err, sizeof(j->err), "snapshot: %s", strerror(-rc));
			break;
		}
		j->snapshots++;
		if (!snap.clean) {
			/* A busy pool: the dead lease's blocks come back now
			 * from this one, the rest with a clean one. */
			rc = j->kind == SELF_RECLAIM && k + 1 == SELF_SWEEP_AFTER ? self_sweep(j, b, ctx, &snap, who) : 0;
			rmp_buddy_snap_free(&snap);
			if (rc)
				break;
			rc = -EAGAIN;
			if (j->holds < SELF_HOLDS_MAX) {
				/* A quiet moment, asked of the live consumers. */
				j->holds++;
				self_ask_hold(s, j->pool_id);
				usleep(SELF_HOLD_LEAD_US);
			} else
				usleep(SELF_RECLAIM_PAUSE_US);
			continue;
		}
		rc = self_who(s, j, tmp, who, n);
		if (rc == 0 && scan_defers(j, who, n)) {
			j->deferred = true;
			rmp_buddy_snap_free(&snap);
			break;
		}
		if (rc == 0 && (rc = rmp_buddy_find_garbage(b, &snap, who, &plan)) != 0)
			snprintf(j->err, sizeof(j->err), "finding the garbage: %s", strerror(-rc));
		rmp_buddy_snap_free(&snap);
		if (rc)
			break;
		name_abandoned(j, &plan, tmp);
		rc = rmp_buddy_repair(b, ctx, &plan, &r);
		rmp_buddy_plan_free(&plan);
		j->blocks = r.garbage_freed + r.holes_released + j->swept_blocks;
		j->bytes = r.garbage_bytes + r.hole_bytes + j->swept_bytes;
		j->slots_reset = r.slots_reset;
		if (rc)
			snprintf(j->err, sizeof(j->err), "repair: %s", strerror(-rc));
		break;
	}
	if (rc == -EAGAIN)
		snprintf(j->err, sizeof(j->err), "no clean snapshot in %u tries", j->snapshots);
	if (j->deferred) {
		rc = 0;
		j->abandoned = 0; /* the reclaim's resolver resets them, and says so */
	}
out_free:
	free(tmp);
	free(who);
	return rc;
}

/* Reclaims j's lease over a connection of its own: the resolver's ctx
 * keeps records in the pool's own slot. */
static int self_reclaim_lease(struct rmp_srv_self *s, struct self_job *j, rmp_rdma_conn *conn,
			      rmp_store_rdma *st)
{
	struct rmp_buddy b;
	struct rmp_buddy_ctx *ctx = calloc(1, sizeof(*ctx));
	int rc;

	if (!ctx)
		return -ENOMEM;
	rmp_buddy_init(&b, &j->geom, rmp_store_rdma_base(st));
	rmp_buddy_ctx_init(ctx, &b, SELF_CLIENT_ID);
	rc = rmp_buddy_ctx_record(ctx, &b, j->self_slot, SELF_TAG_ID(j->pool_id));
	if (rc)
		snprintf(j->err, sizeof(j->err), "the resolver's slot %u: %s", j->self_slot, strerror(-rc));
	else
		rc = self_resolve(s, j, &b, ctx);
	if (rc == 0 && rmp_rdma_conn_failed(conn))
		rc = -EIO;
	free(ctx);
	return rc;
}

/* A loopback connection to j's pool's metadata: connected, a word store
 * on it, the device's atomic byte order learned. 0, or an error with
 * j->err set (nothing left open). */
static int self_connect(struct self_job *j, rmp_rdma_conn **conn_out, rmp_store_rdma **st_out)
{
	struct rmp_rdma_opts o = { .timeout_ms = SELF_RDMA_TIMEOUT_MS, .wait = RMP_RDMA_WAIT_ADAPTIVE };
	rmp_rdma_conn *conn = NULL;
	rmp_store_rdma *st = NULL;

	int rc = rmp_rdma_connect(j->ep.host, j->ep.port, j->token, sizeof(j->token), &o, &conn);
	if (rc) {
		rmp_errf(j->err, sizeof(j->err), "rdma_cm connect to %s:%u: %s", j->ep.host,
			 j->ep.port, strerror(-rc));
		return rc;
	}
	rc = rmp_store_rdma_create(conn, j->meta.addr, j->meta.rkey, j->meta.len / 8, &st);
	if (rc) {
		snprintf(j->err, sizeof(j->err), "word store: %s", strerror(-rc));
		goto out_close;
	}
	/* Atomic replies: the device's byte order, on the magic word. */
	rc = rmp_rdma_probe_atomic_order(conn, j->meta.addr, j->meta.rkey);
	if (rc) {
		snprintf(j->err, sizeof(j->err), "atomic byte order probe: %s", strerror(-rc));
		goto out_store;
	}
	*conn_out = conn;
	*st_out = st;
	return 0;
out_store:
	rmp_store_rdma_abandon(st);
out_close:
	rmp_rdma_close(conn);
	return rc;
}

static void self_disconnect(rmp_rdma_conn *conn, rmp_store_rdma *st)
{
	if (rmp_rdma_conn_failed(conn))
		rmp_store_rdma_abandon(st);
	else
		rmp_store_rdma_destroy(st); /* sends the count changes that wait */
	rmp_rdma_close(conn);
}

static void conn_free(struct self_conn *c)
{
	self_disconnect(c->conn, c->st);
	free(c);
}

/* The kept connection for j's pool (a new one when there is none, or it
 * failed, or the pool's region was registered again). 0 with *out, or an
 * error with j->err set. */
static int scan_conn(struct rmp_srv_self *s, struct self_job *j, struct self_conn **out)
{
	struct self_conn **pp = &s->conns;

	while (*pp && (*pp)->pool_id != j->pool_id)
		pp = &(*pp)->next;
	struct self_conn *c = *pp;
	if (c && (c->addr != j->meta.addr || c->rkey != j->meta.rkey || rmp_rdma_conn_failed(c->conn))) {
		*pp = c->next;
		conn_free(c);
		c = NULL;
	}
	if (!c) {
		if (!(c = calloc(1, sizeof(*c))))
			return -ENOMEM;
		int rc = self_connect(j, &c->conn, &c->st);
		if (rc) {
			free(c);
			return rc;
		}
		*c = (struct self_conn){ .next = s->conns, .pool_id = j->pool_id, .addr = j->meta.addr,
					 .rkey = j->meta.rkey, .conn = c->conn, .st = c->st };
		s->conns = c;
	}
	c->used_ms = rmp_mono_ms();
	*out = c;
	return 0;
}

/* Which slots of j's pool say ABANDONED (one READ per 64 KiB of slot
 * words, the first with the transit word); with any, the resolver (the
 * current parties, no lease dead) finishes what their operations left and
 * resets them. It runs too for what a killed coordinator's resolver or
 * retire left (DESIGN.md, Reclaim): the resolver's own slot busy (no
 * resolver is running: this worker runs them). Not for moves in transit
 * with no slot busy (see below). */
static int scan_slots(struct rmp_srv_self *s, struct self_job *j, struct self_conn *c)
{
	unsigned n = j->geom.slots;
	uint64_t *w = malloc(2ull * n * sizeof(uint64_t));
	struct self_slot_party *tmp = calloc(n, sizeof(*tmp));
	struct rmp_buddy_ctx *ctx = NULL;
	struct rmp_buddy b;
	unsigned untagged = 0, busy = 0;
	uint64_t transit = 0;
	int rc = -ENOMEM;

	if (!w || !tmp)
		goto out_free;
	rmp_buddy_init(&b, &j->geom, rmp_store_rdma_base(c->st));
	for (uint64_t k = 0; k < 2ull * n; k += 8192) {
		struct rmp_wop op[2];
		uint64_t len = 2ull * n - k < 8192 ? 2ull * n - k : 8192;
		rmp_wop_load(&op[0], j->geom.transit_word, 1, &transit);
		rmp_wop_load(&op[1], j->geom.slot_word + k, (uint32_t)len, w + k);
		if ((rc = b.store->ops->exec(b.store, k ? &op[1] : op, k ? 1 : 2)) != 0) {
			snprintf(j->err, sizeof(j->err), "reading the slots: %s", strerror(-rc));
			goto out_free;
		}
	}
	bool have_parties = parties_copy(s, j->pool_id, tmp, n, &untagged) == 0;
	for (unsigned c2 = 0; c2 < n; c2++) {
		busy += (w[2ull * c2] & RMP_BUDDY_SLOT_BUSY) != 0;
		if (!(w[2ull * c2] & RMP_BUDDY_SLOT_ABANDONED))
			continue;
		if (j->abandoned < SELF_SCAN_NAMED) {
			j->named_slot[j->abandoned] = c2;
			j->named_lease[j->abandoned] = have_parties && tmp[c2].party != SELF_NONE
				? (tmp[c2].tag & ~RMP_BUDDY_TAG_BIT) / RMP_SRV_LEASE_SLOTS : UINT64_MAX;
		}
		j->abandoned++;
	}
	rc = 0;
	j->leftover = j->self_slot < n && (w[2ull * j->self_slot] & RMP_BUDDY_SLOT_BUSY);
	/* Moves in transit with no slot busy are not a trigger: a consumer
	 * that keeps no records (RMPOOL_TEST_NO_RECORDS, measurements) moves
	 * with no slot at all, and a resolver run then takes its untagged
	 * blocks for garbage (rdma_pool_data lost live blocks so). What a
	 * killed retire left waits for the pool's next reclaim. */
	(void)transit;
	(void)busy;
	(void)untagged;
	if (j->abandoned == 0 && !j->leftover)
		goto out_free;
	if (!(ctx = calloc(1, sizeof(*ctx)))) {
		rc = -ENOMEM;
		goto out_free;
	}
	rmp_buddy_ctx_init(ctx, &b, SELF_CLIENT_ID);
	if ((rc = rmp_buddy_ctx_record(ctx, &b, j->self_slot, SELF_TAG_ID(j->pool_id))) != 0)
		snprintf(j->err, sizeof(j->err), "the resolver's slot %u: %s", j->self_slot, strerror(-rc));
	else
		rc = self_resolve(s, j, &b, ctx);
out_free:
	free(ctx);
	free(tmp);
	free(w);
	return rc;
}

/* A scan of j's pool on its kept connection; kept connections that
 * failed or went unused go. */
static void self_scan(struct rmp_srv_self *s, struct self_job *j)
{
	struct self_conn *c = NULL;

	j->rc = scan_conn(s, j, &c);
	if (j->rc == 0)
		j->rc = scan_slots(s, j, c);
	if (j->rc == 0 && c && rmp_rdma_conn_failed(c->conn))
		j->rc = -EIO;
	if (c) {
		j->repeat = j->rc != 0 && j->rc == c->last_rc;
		c->last_rc = j->rc;
	}
	uint64_t now = rmp_mono_ms();
	for (struct self_conn **pp = &s->conns; *pp;) {
		struct self_conn *k = *pp;
		if (rmp_rdma_conn_failed(k->conn) || now - k->used_ms > SELF_CONN_IDLE_MS) {
			*pp = k->next;
			conn_free(k);
		} else {
			pp = &k->next;
		}
	}
}

static void self_run(struct rmp_srv_self *s, struct self_job *j)
{
	rmp_rdma_conn *conn = NULL;
	rmp_store_rdma *st = NULL;
	uint64_t t0 = rmp_mono_ms();

	if (j->kind == SELF_SCAN) {
		self_scan(s, j);
	} else if ((j->rc = self_connect(j, &conn, &st)) == 0) {
		j->rc = j->kind == SELF_RECLAIM ? self_reclaim_lease(s, j, conn, st)
						: self_retire_segments(j, conn, st);
		self_disconnect(conn, st);
	}
	j->ms = rmp_mono_ms() - t0;
}

static void *self_main(void *arg)
{
	struct rmp_srv_self *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct self_job *j = s->pending;
		uint64_t now = rmp_mono_ms();
		if (!j || j->due_ms > now) {
			if (!j) {
				pthread_cond_wait(&s->cond, &s->lock);
			} else {
				struct timespec ts;
				clock_gettime(CLOCK_MONOTONIC, &ts);
				uint64_t wait = j->due_ms - now;
				ts.tv_sec += (time_t)(wait / 1000);
				ts.tv_nsec += (long)(wait % 1000) * 1000000L;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&s->cond, &s->lock, &ts);
			}
			continue;
		}
		s->pending = j->next;
		s->running = j;
		pthread_mutex_unlock(&s->lock);
		self_run(s, j);
		pthread_mutex_lock(&s->lock);
		s->running = NULL;
		j->next = s->done;
		s->done = j;
		/* A full pipe (EAGAIN) already holds a wake-up. */
		ssize_t w = write(s->pipe[1], "r", 1);
		(void)w;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* The loop's side of a scan: a reset is logged and counted; a failure is
 * logged (quieter when the last scan of the pool failed the same way). */
static void abandoned_names(const struct self_job *j, char *names, size_t len)
{
	size_t at = 0;

	names[0] = 0;
	for (unsigned k = 0; k < j->abandoned && k < SELF_SCAN_NAMED && at < len; k++) {
		if (j->named_lease[k] == UINT64_MAX)
			at += (size_t)snprintf(names + at, len - at, "%sslot %u (no lease)", k ? ", " : "",
					       j->named_slot[k]);
		else
			at += (size_t)snprintf(names + at, len - at, "%sslot %u of lease %" PRIu64, k ? ", " : "",
					       j->named_slot[k], j->named_lease[k]);
	}
	if (j->abandoned > SELF_SCAN_NAMED && at < len)
		snprintf(names + at, len - at, " and %u more", j->abandoned - SELF_SCAN_NAMED);
}

/* A scan that failed with no abandoned slot seen (the loopback
 * connection): warned at most this often, else logged at debug. */
#define SELF_SCAN_WARN_MS 60000u

static void scan_done(struct rmp_srv *srv, const struct self_job *j)
{
	char names[SELF_SCAN_NAMED * 48 + 16];

	if (j->deferred) {
		rmp_log_debug("pool %s: the scan's resolver run left to the reclaim queued on the pool",
			      j->pool_name);
		return;
	}
	if (j->rc == 0 && j->abandoned == 0 && j->leftover) {
		/* Nothing freed nor reset: the killed resolver's slot only. */
		if (j->blocks == 0 && j->slots_reset == 0)
			rmp_log_debug("pool %s: the resolver ran for its own busy slot and freed nothing (%u "
				      "snapshot(s), %" PRIu64 " ms)", j->pool_name, j->snapshots, j->ms);
		else
			rmp_log_info("pool %s: what a killed resolver or retire left repaired: %" PRIu64
				     " blocks / %" PRIu64 " bytes freed (%u snapshot(s), %" PRIu64 " ms)",
				     j->pool_name, j->blocks, j->bytes, j->snapshots, j->ms);
		return;
	}
	if (j->rc == 0 && j->abandoned == 0)
		return;
	abandoned_names(j, names, sizeof(names));
	if (j->rc == 0) {
		srv->m.abandoned_slots_reset_total += j->abandoned;
		srv->m.abandoned_bytes_freed_total += j->bytes;
		rmp_log_info("pool %s: %s abandoned mid-operation: reset, %" PRIu64 " blocks / %" PRIu64
			     " bytes freed (%u snapshot(s), %" PRIu64 " ms)",
			     j->pool_name, names, j->blocks, j->bytes, j->snapshots, j->ms);
	} else if (j->repeat || (!j->abandoned && srv->self->scan_warn_ms &&
				  rmp_mono_ms() - srv->self->scan_warn_ms < SELF_SCAN_WARN_MS)) {
		rmp_log_debug("pool %s: slot scan failed again: %s", j->pool_name, j->err[0] ? j->err : strerror(-j->rc));
	} else if (j->abandoned) {
		rmp_log_warn("pool %s: %s abandoned mid-operation, not reset yet: %s; the next scan tries again",
			     j->pool_name, names, j->err[0] ? j->err : strerror(-j->rc));
	} else {
		srv->self->scan_warn_ms = rmp_mono_ms();
		rmp_log_warn("pool %s: the scan for abandoned slots failed: %s; the next scan tries again",
			     j->pool_name, j->err[0] ? j->err : strerror(-j->rc));
	}
}

/* The loop's side of a hold: POOL_HOLD to every lease of the pool whose
 * client is connected (an old client that does not know it closes the
 * connection: DESIGN.md, Wire protocol; it reconnects). */
static void self_send_holds(struct rmp_srv *srv, uint32_t pool_id)
{
	unsigned sent = 0;

	for (size_t i = 0; i < srv->leases.n; i++) {
		const struct rmp_srv_lease *l = &srv->leases.v[i];
		if (l->pool_id != pool_id || !l->owner)
			continue;
		struct rmp_wire_msg m = { .type = RMP_MSG_POOL_HOLD };
		m.u.pool_hold.lease_id = l->id;
		m.u.pool_hold.pool_id = pool_id;
		m.u.pool_hold.hold_ms = SELF_HOLD_MS;
		rmp_srv_conn_send(l->owner, &m);
		sent++;
	}
	srv->m.reclaim_holds_total++;
	rmp_log_debug("pool %" PRIu32 ": POOL_HOLD (%u ms) sent to %u lease(s): a snapshot caught an operation in "
		      "flight", pool_id, SELF_HOLD_MS, sent);
}

/* The loop's side: results in, logged and counted. */
static void self_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rmp_srv *srv = arg;
	struct rmp_srv_self *s = srv->self;
	char buf[64];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		continue;
	pthread_mutex_lock(&s->lock);
	struct self_job *list = s->done;
	s->done = NULL;
	bool hold = s->hold_req;
	uint32_t hold_pool = s->hold_pool;
	s->hold_req = false;
	pthread_mutex_unlock(&s->lock);
	if (hold)
		self_send_holds(srv, hold_pool);
	while (list) {
		struct self_job *j = list;
		list = j->next;
		if (j->kind == SELF_SCAN) {
			scan_done(srv, j);
			job_free(j);
			continue;
		}
		if (j->kind == SELF_RECLAIM && j->rc == 0 && j->abandoned) {
			/* The reclaim's resolver reset abandoned slots of live
			 * leases too: said and counted as a scan's are (their
			 * bytes are in the reclaim's). */
			char names[SELF_SCAN_NAMED * 48 + 16];
			abandoned_names(j, names, sizeof(names));
			srv->m.abandoned_slots_reset_total += j->abandoned;
			rmp_log_info("pool %s: %s abandoned mid-operation: reset with the reclaim of lease %" PRIu64,
				     j->pool_name, names, j->lease_id);
		}
		if (j->kind == SELF_RECLAIM && j->swept_blocks) {
			/* Counted here when the rest failed (a success counts
			 * them in its own bytes). */
			if (j->rc)
				srv->m.reclaimed_bytes_total += j->swept_bytes;
			rmp_log_info("pool %s: lease %" PRIu64 ": %" PRIu64 " blocks, %" PRIu64 " bytes swept from a "
				     "busy pool; %s", j->pool_name, j->lease_id, j->swept_blocks, j->swept_bytes,
				     j->rc ? "the rest waits for a quiet snapshot" : "the rest done with a quiet one");
		}
		if (j->kind == SELF_RECLAIM) {
			rmp_log_debug("pool %s: reclaim of lease %" PRIu64 ": %u snapshot(s) in %" PRIu64
				      " ms of its %" PRIu64 " ms, %u hold(s) asked", j->pool_name, j->lease_id,
				      j->snapshots, j->snap_ms, j->ms, j->holds);
			rmp_srv_reclaim_finished(srv, j->lease_id, j->rc, j->blocks, j->bytes, j->ms,
						 j->err);
			job_free(j);
			continue;
		}
		srv->m.retire_passes_total++;
		srv->m.retired_bytes_total += j->bytes;
		if (j->rc) {
			srv->m.retire_failures_total++;
			rmp_log_warn("pool %s: retire pass %u (+%" PRIu32 " ms) of lost donors' "
				     "segments failed after %" PRIu32 " of %" PRIu32 " in %" PRIu64
				     " ms: %s%s",
				     j->pool_name, j->pass, self_pass_delay_ms[j->pass], j->segs_done,
				     j->n_segs, j->ms, j->err,
				     j->pass + 1 < SELF_PASSES ? "; the next pass tries again" : "");
		} else {
			rmp_log_info("pool %s: retire pass %u (+%" PRIu32 " ms): %" PRIu32
				     " segment(s) of lost donors retired over the loopback engine in "
				     "%" PRIu64 " ms, %" PRIu64 " byte(s) newly reserved",
				     j->pool_name, j->pass, self_pass_delay_ms[j->pass], j->n_segs, j->ms,
				     j->bytes);
		}
		job_free(j);
	}
}

int rmp_srv_self_start(struct rmp_srv *srv)
{
	struct rmp_srv_self *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;

	if (!s)
		return -ENOMEM;
	if (pipe2(s->pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
		int rc = -errno;
		free(s);
		return rc;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	s->ev = event_new(srv->base, s->pipe[0], EV_READ | EV_PERSIST, self_done_cb, srv);
	int rc = s->ev && event_add(s->ev, NULL) == 0 ? 0 : -ENOMEM;
	if (rc == 0)
		rc = -pthread_create(&s->thread, NULL, self_main, s);
	if (rc) {
		if (s->ev)
			event_free(s->ev);
		close(s->pipe[0]);
		close(s->pipe[1]);
		pthread_cond_destroy(&s->cond);
		pthread_mutex_destroy(&s->lock);
		free(s);
		return rc;
	}
	srv->self = s;
	return 0;
}

void rmp_srv_self_stop(struct rmp_srv *srv)
{
	struct rmp_srv_self *s = srv->self;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL); /* a pass running ends within its RDMA bounds */
	for (struct self_job *l = s->pending; l;) {
		struct self_job *j = l;
		l = l->next;
		job_free(j);
	}
	for (struct self_job *l = s->done; l;) {
		struct self_job *j = l;
		l = l->next;
		job_free(j);
	}
	while (s->conns) {
		struct self_conn *c = s->conns;
		s->conns = c->next;
		conn_free(c);
	}
	while (s->parties) {
		struct self_parties *t = s->parties;
		s->parties = t->next;
		free(t->v);
		free(t);
	}
	event_free(s->ev);
	close(s->pipe[0]);
	close(s->pipe[1]);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
	srv->self = NULL;
}

/* Requires s->lock. */
static void queue_locked(struct rmp_srv_self *s, struct self_job *j)
{
	struct self_job **pp = &s->pending;

	while (*pp && (*pp)->due_ms <= j->due_ms)
		pp = &(*pp)->next;
	j->next = *pp;
	*pp = j;
}

/* A job on p's metadata, due at due_ms: its endpoint, token, region and
 * geometry. NULL: out of memory. */
static struct self_job *job_base(struct rmp_srv *srv, struct rmp_srv_pool *p, enum self_kind kind,
				 uint64_t due_ms)
{
	struct self_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->kind = kind;
	j->pool_id = p->id;
	snprintf(j->pool_name, sizeof(j->pool_name), "%s", p->name);
	j->due_ms = due_ms;
	rmp_srv_rdma_endpoint(srv, &j->ep);
	j->meta = (struct rmp_wire_region){ .addr = (uint64_t)(uintptr_t)p->meta.mem,
					    .len = p->meta.len,
					    .rkey = p->meta.rkey };
	j->geom = p->geom;
	j->segment_log2 = p->segment_log2;
	struct rmp_wire_token t = { .kind = RMP_TOKEN_METADATA, .target_id = p->id,
				    .client_id = SELF_CLIENT_ID,
				    .expires_ms = rmp_wall_ms() + SELF_TOKEN_TTL_MS,
				    .generation = (uint16_t)srv->generation };
	if (rmp_auth_token_make(srv->key, &t, j->token)) {
		job_free(j);
		return NULL;
	}
	return j;
}

/* A job for one pass over p's lost segments (copied). NULL: out of memory. */
static struct self_job *job_new(struct rmp_srv *srv, struct rmp_srv_pool *p, const uint32_t *segs,
				uint32_t n, unsigned pass, uint64_t now)
{
	struct self_job *j = job_base(srv, p, SELF_RETIRE, now + self_pass_delay_ms[pass]);

	if (!j)
		return NULL;
	if (!(j->segs = malloc((n ? n : 1) * sizeof(*segs)))) {
		job_free(j);
		return NULL;
	}
	memcpy(j->segs, segs, n * sizeof(*segs));
	j->n_segs = n;
	j->pass = pass;
	return j;
}

int rmp_srv_self_reclaim(struct rmp_srv *srv, struct rmp_srv_pool *p, const struct rmp_srv_reclaim *q)
{
	struct rmp_srv_self *s = srv->self;

	if (!s || !srv->rdma || !p->meta.mr) {
		rmp_log_error("pool %s: lease %" PRIu64 " cannot be reclaimed: %s", p->name, q->lease_id,
			      !s ? "the loopback engine did not start" : "no RDMA registration");
		return -ENODEV;
	}
	struct self_job *j = job_base(srv, p, SELF_RECLAIM, rmp_mono_ms());
	if (!j)
		return -ENOMEM;
	j->lease_id = q->lease_id;
	j->self_slot = rmp_srv_self_slot(p);
	pthread_mutex_lock(&s->lock);
	queue_locked(s, j);
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	rmp_log_info("pool %s: lease %" PRIu64 " cut off: its reclaim is queued", p->name, q->lease_id);
	return 0;
}

/* Requires s->lock. Whether a scan of pool_id is queued, running or
 * not yet taken in by the loop. */
static bool scan_out_locked(const struct rmp_srv_self *s, uint32_t pool_id)
{
	const struct self_job *lists[2] = { s->pending, s->done };
	for (unsigned k = 0; k < 2; k++)
		for (const struct self_job *j = lists[k]; j; j = j->next)
			if (j->kind == SELF_SCAN && j->pool_id == pool_id)
				return true;
	return s->running && s->running->kind == SELF_SCAN && s->running->pool_id == pool_id;
}

/* Whether a lease on p keeps owner records (then a shard of it may
 * abandon a slot). */
static bool pool_has_recorded_lease(const struct rmp_srv *srv, const struct rmp_srv_pool *p)
{
	for (size_t i = 0; i < srv->leases.n; i++)
		if (srv->leases.v[i].pool_id == p->id && srv->leases.v[i].slot_base != RMP_SRV_NO_SLOT)
			return true;
	return false;
}

void rmp_srv_self_tick(struct rmp_srv *srv, uint64_t now_ms)
{
	struct rmp_srv_self *s = srv->self;

	if (!s || !srv->rdma || now_ms - s->scan_ms < SELF_SCAN_MS)
		return;
	s->scan_ms = now_ms;
	for (struct rmp_srv_pool *p = srv->pools; p; p = p->next) {
		if (p->state != RMP_SRV_POOL_READY || !p->meta.mr || p->geom.slots == 0 ||
		    !pool_has_recorded_lease(srv, p))
			continue;
		pthread_mutex_lock(&s->lock);
		bool out = scan_out_locked(s, p->id);
		pthread_mutex_unlock(&s->lock);
		if (out)
			continue;
		/* The parties as they are now: after a restart no grant built
		 * the table yet, and a closed lease is nobody's. */
		rmp_srv_self_parties(srv, p);
		struct self_job *j = job_base(srv, p, SELF_SCAN, now_ms);
		if (!j)
			return;
		j->self_slot = rmp_srv_self_slot(p);
		pthread_mutex_lock(&s->lock);
		queue_locked(s, j);
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
}

/* Slots base.. of one lease: its tags, one per shard. */
static void parties_group(struct self_slot_party *v, unsigned slots, uint32_t base, uint64_t lease_id,
			  unsigned party)
{
	for (unsigned k = 0; k < RMP_SRV_LEASE_SLOTS && base + k < slots; k++)
		v[base + k] = (struct self_slot_party){
			.tag = RMP_BUDDY_TAG_BIT | (lease_id * RMP_SRV_LEASE_SLOTS + k), .party = party };
}

void rmp_srv_self_parties(struct rmp_srv *srv, const struct rmp_srv_pool *p)
{
	struct rmp_srv_self *s = srv->self;
	unsigned n = p->geom.slots, untagged = 0;

	if (!s || n == 0)
		return;
	struct self_slot_party *v = calloc(n, sizeof(*v));
	struct self_parties *fresh = calloc(1, sizeof(*fresh));
	if (v && fresh) {
		for (size_t i = 0; i < srv->leases.n; i++) {
			const struct rmp_srv_lease *l = &srv->leases.v[i];
			if (l->pool_id != p->id)
				continue;
			if (l->slot_base == RMP_SRV_NO_SLOT)
				untagged++;
			else
				parties_group(v, n, l->slot_base, l->id, SELF_LIVE);
		}
		/* An expired lease is live until its cut is complete (it is
		 * queued only then): it may still be changing words. */
		for (const struct rmp_srv_reclaim *q = srv->reclaims; q; q = q->next)
			if (q->pool_id == p->id)
				parties_group(v, n, q->slot_base, q->lease_id, q->queued ? SELF_DEAD : SELF_LIVE);
		/* The resolver's own slot: idle at every snapshot; dead, so
		 * that what a coordinator that crashed mid-repair left there is
		 * finished. */
		v[rmp_srv_self_slot(p)] = (struct self_slot_party){
			.tag = RMP_BUDDY_TAG_BIT | SELF_TAG_ID(p->id), .party = SELF_DEAD };
		*fresh = (struct self_parties){ .pool_id = p->id, .slots = n, .untagged = untagged, .v = v };
	} else {
		rmp_log_error("pool %s: out of memory for its slot owners' table: no reclaim runs on it "
			      "until the next change",
			      p->name);
	}
	pthread_mutex_lock(&s->lock);
	for (struct self_parties **pp = &s->parties; *pp; pp = &(*pp)->next) {
		if ((*pp)->pool_id == p->id) {
			struct self_parties *old = *pp;
			*pp = old->next;
			free(old->v);
			free(old);
			break;
		}
	}
	if (v && fresh) {
		fresh->next = s->parties;
		s->parties = fresh;
	}
	pthread_mutex_unlock(&s->lock);
	if (!v || !fresh) {
		free(v);
		free(fresh);
	}
}

void rmp_srv_self_retire_lost(struct rmp_srv *srv, struct rmp_srv_pool *p)
{
	struct rmp_srv_self *s = srv->self;
	uint64_t usable = (p->capacity + (UINT64_C(1) << p->min_block_log2) - 1) &
			  ~((UINT64_C(1) << p->min_block_log2) - 1);

	if (!s || !srv->rdma || !p->meta.mr) {
		rmp_log_error("pool %s: lost donors' segments cannot be retired in the allocator: %s",
			      p->name, !s ? "the loopback engine did not start" : "no RDMA registration");
		return;
	}
	uint32_t n = rmp_srv_segtab_lost_segments(&p->segtab, usable, NULL, 0);
	if (n == 0)
		return;
	uint32_t *segs = malloc(n * sizeof(*segs));
	if (!segs) {
		rmp_log_error("pool %s: out of memory for the retire passes", p->name);
		return;
	}
	rmp_srv_segtab_lost_segments(&p->segtab, usable, segs, n);
	uint64_t now = rmp_mono_ms();
	pthread_mutex_lock(&s->lock);
	for (unsigned pass = 0; pass < SELF_PASSES; pass++) {
		struct self_job *j = job_new(srv, p, segs, n, pass, now);
		if (!j) {
			rmp_log_error("pool %s: out of memory for retire pass %u", p->name, pass);
			continue;
		}
		queue_locked(s, j);
	}
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	free(segs);
	rmp_log_info("pool %s: %" PRIu32 " segment(s) of lost donors to retire: now and at +1 s, "
		     "+3 s, +10 s",
		     p->name, n);
}

void rmp_srv_self_forget_pool(struct rmp_srv *srv, uint32_t pool_id)
{
	struct rmp_srv_self *s = srv->self;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	for (struct self_job **pp = &s->pending; *pp;) {
		struct self_job *j = *pp;
		if (j->pool_id == pool_id) {
			*pp = j->next;
			job_free(j);
		} else {
			pp = &j->next;
		}
	}
	for (struct self_parties **pp = &s->parties; *pp; pp = &(*pp)->next) {
		if ((*pp)->pool_id == pool_id) {
			struct self_parties *old = *pp;
			*pp = old->next;
			free(old->v);
			free(old);
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

#else /* !RMPOOL_SERVER_HAVE_RDMA: no pool is ever ready, nothing to retire */

int rmp_srv_self_start(struct rmp_srv *srv)
{
	(void)srv;
	return 0;
}

void rmp_srv_self_stop(struct rmp_srv *srv)
{
	(void)srv;
}

void rmp_srv_self_retire_lost(struct rmp_srv *srv, struct rmp_srv_pool *p)
{
	(void)srv;
	rmp_log_error("pool %s: built without RDMA: lost donors' segments cannot be retired", p->name);
}

void rmp_srv_self_forget_pool(struct rmp_srv *srv, uint32_t pool_id)
{
	(void)srv;
	(void)pool_id;
}

int rmp_srv_self_reclaim(struct rmp_srv *srv, struct rmp_srv_pool *p, const struct rmp_srv_reclaim *q)
{
	(void)srv;
	(void)q;
	rmp_log_error("pool %s: built without RDMA: nothing can be reclaimed", p->name);
	return -ENODEV;
}

void rmp_srv_self_parties(struct rmp_srv *srv, const struct rmp_srv_pool *p)
{
	(void)srv;
	(void)p;
}

void rmp_srv_self_tick(struct rmp_srv *srv, uint64_t now_ms)
{
	(void)srv;
	(void)now_ms;
}

#endif
