/* srv.h - the coordinator's state, shared by the event-loop modules
 * (internal header; nothing outside server/ includes it).
 *
 * One thread runs everything: the libevent base owns the control
 * listener, every connection's bufferevent, the HTTP server, the rdma_cm
 * listener's fd and the timers. Handlers never block, so no state here
 * needs a lock.
 *
 * Objects and who owns them:
 *   rmp_srv        the process: config, secret, lists below, counters
 *   rmp_srv_conn   one TCP peer (client, agent or donor), freed on close
 *   rmp_srv_agent  a registered host agent; lives while its connection does
 *   rmp_srv_donor  a donor process, from SPAWN until EXITED (or its
 *                  terminate deadline); outlives the pool that asked for it
 *                  so budgets stay charged until the memory is really free.
 *                  A standalone donor (started by an operator, no agent)
 *                  lives from its DONOR_REGISTER until its connection
 *                  closes; while in no pool it is "spare" (offered memory)
 *   rmp_srv_pool   a pool, from POOL_OPEN until destroyed (or forgotten)
 * Every change to pools, donors, leases and ids is written to the state
 * store (persist.c) before it is acknowledged; a restart loads it back
 * (recover.c). The states below are stored by value: never renumber.
 * Cross pointers (donor->agent, donor->conn, pool->requester, ...) are
 * cleared by the module that frees the target (rmp_srv_*_conn_closed).
 */
#ifndef RMP_SRV_H
#define RMP_SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "auth.h"
#include "buddy.h"
#include "ctlconn.h"
#include "leases.h"
#include "metrics.h"
#include "options.h"
#include "state.h"
#include "wire.h"

struct bufferevent;
struct evconnlistener;
struct evhttp;
struct rmp_srv_rdma;
struct rmp_srv_self;
struct rmp_srv_cuts;

struct rmp_srv_conn {
	struct rmp_srv *srv;
	struct rmp_srv_conn *next, *prev;
	struct bufferevent *bev;
	struct event *hs_timer; /* handshake deadline; NULL once authenticated */
	struct rmp_auth_handshake hs;
	bool authed;
	bool closing; /* flushing a last frame, then freed */
	uint8_t role; /* enum rmp_wire_role, from HELLO */
	uint64_t session_id;
	char peer[64]; /* "addr:port", for log lines */
	struct rmp_srv_agent *agent; /* role AGENT, after AGENT_REGISTER */
	struct rmp_srv_donor *donor; /* role DONOR, after DONOR_REGISTER */
};

struct rmp_srv_agent {
	struct rmp_srv_agent *next;
	uint32_t id;
	struct rmp_srv_conn *conn;
	char host[RMP_WIRE_HOST_MAX + 1];
	uint64_t budget, process_limit, donor_footprint;
	uint64_t used; /* charged for donors spawned and not yet exited */
	uint32_t donors;
};

enum rmp_srv_donor_state {
	RMP_SRV_DONOR_SPAWNING = 0,   /* SPAWN sent (request_id 0: not yet) */
	RMP_SRV_DONOR_SPAWNED = 1,    /* the agent reported a pid */
	RMP_SRV_DONOR_REGISTERED = 2, /* region handed over */
	RMP_SRV_DONOR_LOST = 3,	      /* died, or did not come back in time */
	RMP_SRV_DONOR_TERMINATING = 4,
	RMP_SRV_DONOR_AWAY = 5, /* its connection is gone (or not back since a restart):
				 * it keeps serving; lost if not back by away_deadline_ms */
};

struct rmp_srv_donor {
	struct rmp_srv_donor *next;
	uint32_t id;
	uint32_t pool_id;
	struct rmp_srv_pool *pool; /* NULL once the pool is gone */
	struct rmp_srv_agent *agent; /* NULL: standalone, or its agent is gone */
	bool standalone; /* registered on its own (pool 0, donor 0), no agent ever */
	uint64_t offered; /* standalone: its region in whole segments */
	struct rmp_srv_conn *conn;   /* its own control connection */
	char host[RMP_WIRE_HOST_MAX + 1];
	enum rmp_srv_donor_state state;
	uint64_t request_id; /* of the SPAWN, then of the TERMINATE */
	uint64_t region_len, base, cost;
	uint32_t pid;
	struct rmp_wire_region region;
	struct rmp_wire_endpoint endpoint;
	uint64_t terminate_deadline_ms;
	uint64_t away_deadline_ms; /* AWAY: marked LOST at this time */
};

enum rmp_srv_pool_state {
	RMP_SRV_POOL_PROVISIONING = 0,
	RMP_SRV_POOL_READY = 1,
	RMP_SRV_POOL_DESTROYING = 2,
	RMP_SRV_POOL_RECOVERING = 3, /* re-adopted at start, waiting for its donors (not stored) */
	RMP_SRV_POOL_LOST = 4,	     /* could not be re-adopted; `lost` says why */
};

/* The coordinator's own memory in a pool (self-contribution). */
struct rmp_srv_region {
	void *mem;
	uint64_t len;
	void *mr; /* opaque to all but rdma_listen.c */
	uint32_t rkey;
	char shm_name[RMP_WIRE_NAME_MAX + 16];
};

struct rmp_srv_pool {
	struct rmp_srv_pool *next;
	struct rmp_srv *srv;
	uint32_t id;
	char name[RMP_WIRE_NAME_MAX + 1];
	enum rmp_srv_pool_state state;
	uint64_t capacity, space;
	unsigned space_log2, segment_log2, min_block_log2;
	struct rmp_srv_donor **donors; /* max_donors slots, n_donors used (NULL: detached) */
	uint32_t max_donors, n_donors, registered;
	struct rmp_srv_conn *requester; /* of POOL_OPEN or POOL_DESTROY */
	uint8_t request_type;
	bool busy; /* terminating its donors: the last exit must not free it yet */
	uint32_t self_donor_id; /* 0: no self-contribution */
	struct rmp_srv_region self;
	struct rmp_srv_region meta; /* the buddy metadata, in shm */
	struct rmp_buddy_geom geom;
	struct rmp_wire_segtab segtab; /* valid once ready (recovering: the recorded one) */
	struct event *timer;		/* provisioning or destroy deadline */
	/* What the state store knows it by: the shm objects' names and sizes
	 * (set at creation, or from the record; the regions above may not be
	 * mapped), why it is lost, and a recorded table that did not decode
	 * (kept as it was, never overwritten). */
	char meta_shm[RMP_STATE_SHM_MAX], self_shm[RMP_STATE_SHM_MAX];
	uint64_t meta_len, self_len;
	char lost[RMP_WIRE_TEXT_MAX + 1];
	uint8_t *rec_segtab;
	size_t rec_segtab_len;
};

/* An expired lease whose blocks are not yet reclaimed (reclaim.c): its
 * row stays in the state store marked reclaim-pending and its slots stay
 * taken until the reclaim is done. */
struct rmp_srv_reclaim {
	struct rmp_srv_reclaim *next;
	uint64_t lease_id, client_id;
	uint32_t pool_id, slot_base;
	uint64_t expired_ms; /* expired, or restored from the store (monotonic) */
	uint64_t cut_ms;     /* its cut seen complete (0: not yet) */
	bool restored;	     /* from the store: this process has not cut it off yet */
	bool cut_asked;	     /* this process started its cut (restored ones) */
	bool queued;	     /* a job for it is with the loopback engine (self.c) */
	uint32_t attempts;   /* jobs run for it so far */
	uint64_t retry_ms;   /* not queued again before this */
};

struct rmp_srv {
	struct rmp_srv_cfg cfg;
	rmp_auth_key *key;
	struct event_base *base;
	struct evconnlistener *listener;
	struct evhttp *http;
	struct rmp_srv_rdma *rdma; /* NULL: no RDMA device; pools are refused */
	struct rmp_srv_self *self; /* the loopback engine (self.c); NULL: not started */
	char rdma_why_not[400];	   /* why rdma is NULL, for the refusals */
	struct event *rdma_retry;  /* armed while the rdma_cm listener is not bound */
	struct rmp_ctlconn_backoff rdma_backoff;
	uint32_t rdma_attempts;	   /* to bind it, so far */
	bool adopted;		   /* the recorded pools were re-adopted (rmp_srv_rdma_up) */
	bool loop_running;	   /* the event loop dispatches: health.c may say ready */
	bool ready_sent;	   /* READY=1 went to systemd */
	int argc;		   /* the command line, read again at SIGHUP */
	char **argv;
	struct event *sig_int, *sig_term, *sig_hup, *tick;
	struct rmp_srv_conn *conns;
	struct rmp_srv_agent *agents;
	struct rmp_srv_donor *donors;
	struct rmp_srv_pool *pools;
	struct rmp_srv_leases leases;
	struct rmp_srv_cuts *cuts; /* cutoff.c's: expired clients being or been cut off */
	uint64_t lease_look_ms;	   /* last look at the leases (pool.c: stalls extend them) */
	struct rmp_srv_reclaim *reclaims; /* reclaim.c's: expired leases not yet reclaimed */
	struct rmp_srv_metrics m; /* the counters; gauges are filled at scrape */
	uint64_t n_conns;
	uint64_t next_session, next_request;
	uint32_t next_agent, next_donor, next_pool;
	uint64_t start_ms;
	uint64_t generation; /* raised at every start (state store) */
	struct rmp_state *state;  /* the durable state (--state-dir) */
	uint64_t session_reserved; /* session ids below this are recorded as used */
	bool stopping; /* shutdown: connections close without tearing pools down */
};

/* Time is common/clock.h's: rmp_mono_ms for deadlines and durations
 * (leases, terminate, uptime), rmp_wall_ms for what leaves the process
 * (rdma_cm token stamps). */

/* conn.c */
int rmp_srv_conn_listen(struct rmp_srv *srv);
void rmp_srv_conn_close_all(struct rmp_srv *srv);
int rmp_srv_conn_send(struct rmp_srv_conn *c, const struct rmp_wire_msg *m);
/* ERROR {code, ref_type, text}; code is a positive or negative errno. */
void rmp_srv_conn_send_error(struct rmp_srv_conn *c, int code, uint8_t ref_type,
			     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* agents.c */
void rmp_srv_agent_register(struct rmp_srv_conn *c, const struct rmp_wire_agent_register *r);
void rmp_srv_agent_progress(struct rmp_srv_conn *c, const struct rmp_wire_progress *p);
void rmp_srv_agent_conn_closed(struct rmp_srv_conn *c);
int rmp_srv_agent_spawn(struct rmp_srv *srv, struct rmp_srv_donor *d, uint64_t segment_size);

/* donors.c */
struct rmp_srv_donor *rmp_srv_donor_find(struct rmp_srv *srv, uint32_t id);
/* A spawned donor's record: charged to agent a, listed, in p's next
 * slot. The caller sends the SPAWN. NULL: out of memory. */
struct rmp_srv_donor *rmp_srv_donor_new_spawned(struct rmp_srv *srv, struct rmp_srv_pool *p,
						struct rmp_srv_agent *a, uint64_t region_len,
						uint64_t base);
/* DONOR_REGISTER: a spawned donor hands its region over, or (pool 0,
 * donor 0) a standalone one offers its region as spare memory. */
void rmp_srv_donor_register(struct rmp_srv_conn *c, const struct rmp_wire_donor_register *r);
/* A standalone donor in no pool (its offer is free for the next pool). */
bool rmp_srv_donor_spare(const struct rmp_srv_donor *d);
uint32_t rmp_srv_donors_spare_count(const struct rmp_srv *srv);
/* A spare donor joins p with len bytes of its offer at pool address base. */
void rmp_srv_donor_join(struct rmp_srv_donor *d, struct rmp_srv_pool *p, uint64_t len,
			uint64_t base);
/* A standalone donor leaves a pool that never became ready: spare again.
 * The caller has detached it from the pool. */
void rmp_srv_donor_release(struct rmp_srv *srv, struct rmp_srv_donor *d);
/* Asks the donor to exit: through its agent, else on its own connection.
 * The donor stays listed until it has exited or its deadline passed. */
void rmp_srv_donor_terminate(struct rmp_srv *srv, struct rmp_srv_donor *d);
/* The donor is gone: uncharge its agent, unlink and free it. */
void rmp_srv_donor_gone(struct rmp_srv *srv, struct rmp_srv_donor *d, const char *why);
void rmp_srv_donor_conn_closed(struct rmp_srv_conn *c);
void rmp_srv_donors_reap_overdue(struct rmp_srv *srv, uint64_t now_ms);
/* The donor's control connection is gone but the process may serve on:
 * AWAY until it registers again or return-timeout passes. */
void rmp_srv_donor_away(struct rmp_srv *srv, struct rmp_srv_donor *d, uint64_t deadline_ms);
/* It died, or did not come back in time: LOST, kept in its pool (its
 * segments stay in the table, status counts them), uncharged. */
void rmp_srv_donor_lost(struct rmp_srv *srv, struct rmp_srv_donor *d, const char *why);
/* AWAY donors past their deadline become LOST. */
void rmp_srv_donors_tick(struct rmp_srv *srv, uint64_t now_ms);
/* Whether the process is known to run and reach us (not AWAY or LOST). */
bool rmp_srv_donor_live(const struct rmp_srv_donor *d);

/* pool.c */
void rmp_srv_pool_open(struct rmp_srv_conn *c, const struct rmp_wire_pool_open *o);
void rmp_srv_pool_close(struct rmp_srv_conn *c, const struct rmp_wire_pool_close *pc);
void rmp_srv_pool_destroy(struct rmp_srv_conn *c, const struct rmp_wire_pool_destroy *d);
void rmp_srv_pool_forget(struct rmp_srv_conn *c, const struct rmp_wire_pool_forget *f);
void rmp_srv_pool_segtab_fetch(struct rmp_srv_conn *c, const struct rmp_wire_segtab_fetch *f);
void rmp_srv_pool_lease_renew(struct rmp_srv_conn *c, const struct rmp_wire_lease_renew *r);
/* Events from agents.c and donors.c about one of a pool's donors. */
void rmp_srv_pool_donor_spawned(struct rmp_srv_pool *p, struct rmp_srv_donor *d);
/* It handed its region over (p->registered counts it already); the last
 * one completes the pool. */
void rmp_srv_pool_donor_registered(struct rmp_srv_pool *p, struct rmp_srv_donor *d);
/* The donor is gone for good (it failed to start or died): detach it;
 * a pool being created fails. The caller frees the donor. */
void rmp_srv_pool_donor_failed(struct rmp_srv_pool *p, struct rmp_srv_donor *d, const char *why);
/* It exited when asked to (p may be NULL): detach it; the last exit
 * completes a destroy. */
void rmp_srv_pool_donor_exited(struct rmp_srv_pool *p, struct rmp_srv_donor *d);
/* The connection of a consumer waiting on a create or destroy closed. */
void rmp_srv_pool_conn_closed(struct rmp_srv_conn *c);
struct rmp_srv_pool *rmp_srv_pool_find_id(struct rmp_srv *srv, uint32_t id);
/* Donor d of p is lost (donors.c): a ready or recovering pool's table
 * gets a new version with d's entry lost and the capacity lowered, on
 * record; a ready pool's consumers get it pushed (SEGTAB_PUSH) and d's
 * segments are retired in the allocator (self.c). */
void rmp_srv_pool_donor_lost(struct rmp_srv_pool *p, struct rmp_srv_donor *d, const char *why);
/* Whether p's table has a lost donor. */
bool rmp_srv_pool_degraded(const struct rmp_srv_pool *p);
/* Usable bytes in service: the table's (asked for, less lost donors'). */
uint64_t rmp_srv_pool_capacity(const struct rmp_srv_pool *p);
/* A recovering pool with no donor AWAY any more is ready again (a new
 * table version, written down first). */
void rmp_srv_pool_check_recovered(struct rmp_srv_pool *p);
/* Finishes a destroy whose donors are all gone (also one recorded at a
 * crash); frees p. */
void rmp_srv_pool_destroy_done(struct rmp_srv *srv, struct rmp_srv_pool *p);
/* Frees a pool's memory and mappings; forget: also its shm objects and
 * its state (else both stay, as at shutdown). */
void rmp_srv_pool_free(struct rmp_srv *srv, struct rmp_srv_pool *p, bool forget);
/* Donors of p by state. */
uint32_t rmp_srv_pool_count_donors(const struct rmp_srv_pool *p, enum rmp_srv_donor_state st);
uint64_t rmp_srv_pool_free_bytes(const struct rmp_srv_pool *p);
void rmp_srv_pools_free_all(struct rmp_srv *srv);
void rmp_srv_leases_tick(struct rmp_srv *srv, uint64_t now_ms);

/* meta.c: the metadata region and the coordinator's own share */
int rmp_srv_meta_create(struct rmp_srv_region *r, const char *pool_name, const char *suffix,
			uint64_t len, char *err, size_t errlen);
/* Maps an existing object (a recorded pool's) of exactly len bytes;
 * never creates one. -ENOENT: it is gone; -EPROTO: another size. */
int rmp_srv_meta_open(struct rmp_srv_region *r, const char *shm_name, uint64_t len, char *err,
		      size_t errlen);
void rmp_srv_meta_destroy(struct rmp_srv_region *r, bool unlink_shm);
/* Removes a shm object by name ("" and a missing one are fine). */
void rmp_srv_meta_unlink(const char *shm_name);

/* persist.c: changes written to the state store before they are
 * acknowledged. The int ones return 0 or a negative errno, with the
 * store's text in rmp_srv_persist_error(); the void ones log a failure
 * (nothing waits on them; a restart reconciles). */
int rmp_srv_persist_pool(struct rmp_srv *srv, const struct rmp_srv_pool *p);
int rmp_srv_persist_pool_donors(struct rmp_srv *srv, const struct rmp_srv_pool *p);
int rmp_srv_persist_donor(struct rmp_srv *srv, const struct rmp_srv_donor *d);
void rmp_srv_persist_donor_state(struct rmp_srv *srv, const struct rmp_srv_donor *d);
void rmp_srv_persist_donor_gone(struct rmp_srv *srv, uint32_t id);
void rmp_srv_persist_pool_gone(struct rmp_srv *srv, uint32_t id);
int rmp_srv_persist_lease(struct rmp_srv *srv, uint64_t lease_id);
void rmp_srv_persist_lease_gone(struct rmp_srv *srv, uint64_t id);
/* The lease expired: its row stays, marked reclaim-pending. */
void rmp_srv_persist_lease_reclaim(struct rmp_srv *srv, const struct rmp_srv_reclaim *q);
int rmp_srv_persist_ids(struct rmp_srv *srv);
/* Before session id srv->next_session is handed out. */
int rmp_srv_persist_session(struct rmp_srv *srv);
const char *rmp_srv_persist_error(const struct rmp_srv *srv);

/* recover.c: a restart takes the recorded state back. */
/* Before listening: ids, pools, donors and leases into memory; pools
 * that were being created are failed and cleaned. */
int rmp_srv_recover_load(struct rmp_srv *srv, char *err, size_t errlen);
/* After the rdma listener is up: re-opens, checks and registers each
 * recorded pool's shm objects (else marks it lost, saying why). */
void rmp_srv_recover_adopt(struct rmp_srv *srv);
/* The rdma_cm listener came up after the start: the recovering pools that
 * waited for it are checked again and registered. */
void rmp_srv_recover_register(struct rmp_srv *srv);

/* self.c: the coordinator's own RDMA engine on its metadata (loopback
 * to its rdma_cm listener, on a worker thread): the only way it changes
 * allocator words (never CPU stores or atomics: DESIGN.md, Generations). */
int rmp_srv_self_start(struct rmp_srv *srv);
void rmp_srv_self_stop(struct rmp_srv *srv);
/* Retires every segment of p's lost donors in the allocator now, and
 * again at +1 s, +3 s and +10 s (a consumer that had not yet heard of
 * the loss may have freed into them meanwhile). */
void rmp_srv_self_retire_lost(struct rmp_srv *srv, struct rmp_srv_pool *p);
/* p is going: passes not yet run for it are dropped. */
void rmp_srv_self_forget_pool(struct rmp_srv *srv, uint32_t pool_id);
/* Queues the reclaim of q's lease (its cut is complete) on pool p; the
 * result comes back through rmp_srv_reclaim_finished. 0, or -ENOMEM, or
 * -ENODEV (no engine, no RDMA registration). */
int rmp_srv_self_reclaim(struct rmp_srv *srv, struct rmp_srv_pool *p, const struct rmp_srv_reclaim *q);
/* p's leases changed (granted, closed, expired, reclaimed): the table of
 * who owns which slot that a running reclaim reads is rebuilt. */
void rmp_srv_self_parties(struct rmp_srv *srv, const struct rmp_srv_pool *p);
/* The tick: every second, a scan per ready pool with records for slots
 * its consumers abandoned mid-operation; the resolver resets them. */
void rmp_srv_self_tick(struct rmp_srv *srv, uint64_t now_ms);
/* cutoff.c: an expired lease's client cut off at the metadata listener
 * and at every donor of its pool before anything of it is freed. */
/* From the lease reaper (l is already out of the table). */
void rmp_srv_cut_start(struct rmp_srv *srv, const struct rmp_srv_lease *l);
/* CLIENT_CUT_ACK from a donor's connection. */
void rmp_srv_cut_ack(struct rmp_srv_conn *c, const struct rmp_wire_client_cut_ack *a);
/* Sends cuts to donors that came back, marks silent ones lost. */
void rmp_srv_cuts_tick(struct rmp_srv *srv, uint64_t now_ms);
/* Whether this listener must refuse client_id's connections to pool_id. */
bool rmp_srv_cut_refused(const struct rmp_srv *srv, uint32_t pool_id, uint64_t client_id);
/* For the reclaim: 1 when lease_id's client is cut off everywhere (its
 * blocks may be freed), 0 while the cut is in progress, -ENOENT for a
 * lease with no cut on record (never expired, its pool gone, or the cut
 * could not be recorded: then nothing of it may be reclaimed). */
int rmp_srv_lease_cut_done(const struct rmp_srv *srv, uint64_t lease_id);
/* The pool is freed: its cut list and records go. */
void rmp_srv_cuts_drop_pool(struct rmp_srv *srv, uint32_t pool_id);
void rmp_srv_cuts_free(struct rmp_srv *srv);

/* reclaim.c: an expired consumer's owner-record slots and blocks (DESIGN.md,
 * Reclaim). Each lease on a pool with records owns RMP_SRV_LEASE_SLOTS
 * consecutive slots; the last group of a pool is the coordinator's. */
/* The lowest free group of p's slots for a new lease: 0 and *base
 * (RMP_SRV_NO_SLOT for a region without records), -EBUSY when every
 * consumer group is taken (by a live lease or one waiting for its
 * reclaim). */
int rmp_srv_slots_pick(const struct rmp_srv *srv, const struct rmp_srv_pool *p, uint32_t *base);
/* Consumer slot groups of p, and how many are taken. */
uint32_t rmp_srv_slot_groups(const struct rmp_srv_pool *p);
uint32_t rmp_srv_slot_groups_taken(const struct rmp_srv *srv, const struct rmp_srv_pool *p);
/* The coordinator's own slot in p (its resolver's context). */
unsigned rmp_srv_self_slot(const struct rmp_srv_pool *p);
/* From the lease reaper (after the cut started): a lease with slots
 * waits for its reclaim (recorded as pending), one without is gone. */
void rmp_srv_reclaim_expired(struct rmp_srv *srv, const struct rmp_srv_lease *l);
/* A reclaim-pending lease from the state store at a restart. */
int rmp_srv_reclaim_restore(struct rmp_srv *srv, const struct rmp_state_lease *r);
/* Queues the reclaims whose cut is complete; starts the cut of restored
 * ones once their pool is ready. */
void rmp_srv_reclaims_tick(struct rmp_srv *srv, uint64_t now_ms);
/* A reclaim job ended (self.c): done (rc 0: row deleted, slots free,
 * logged, counted) or to be tried again later. */
void rmp_srv_reclaim_finished(struct rmp_srv *srv, uint64_t lease_id, int rc, uint64_t blocks,
			      uint64_t bytes, uint64_t ms, const char *err);
/* The pool is gone: its pending reclaims go (their rows go with the
 * pool's). */
void rmp_srv_reclaims_drop_pool(struct rmp_srv *srv, uint32_t pool_id);
void rmp_srv_reclaims_free(struct rmp_srv *srv);

/* status.c */
void rmp_srv_status_reply(struct rmp_srv_conn *c);
/* Totals and labelled series; release with rmp_srv_metrics_snapshot_free. */
void rmp_srv_metrics_snapshot(struct rmp_srv *srv, struct rmp_srv_metrics *out);
void rmp_srv_metrics_snapshot_free(struct rmp_srv_metrics *m);

/* health.c: healthy = every needed listener up (why says what is not);
 * update tells systemd (READY=1 the first time, then STATUS=). */
bool rmp_srv_health(const struct rmp_srv *srv, char *why, size_t len);
void rmp_srv_health_update(struct rmp_srv *srv);
/* The rdma_cm listener is bound (at start or by a retry): recorded pools
 * are re-adopted now if they were waiting, then health is updated. */
void rmp_srv_rdma_up(struct rmp_srv *srv);

/* http.c */
int rmp_srv_http_start(struct rmp_srv *srv);
void rmp_srv_http_stop(struct rmp_srv *srv);

/* rdma_listen.c */
void rmp_srv_rdma_start(struct rmp_srv *srv);
void rmp_srv_rdma_stop(struct rmp_srv *srv);
/* The listener's endpoint, for segment tables. */
void rmp_srv_rdma_endpoint(const struct rmp_srv *srv, struct rmp_wire_endpoint *ep);
/* Registers r->mem for remote read, write and atomics (r->mr, r->rkey). */
int rmp_srv_rdma_reg(struct rmp_srv *srv, struct rmp_srv_region *r, char *err, size_t errlen);
void rmp_srv_rdma_dereg(struct rmp_srv_region *r);
/* Cut-off: disconnects and destroys every connection of client_id to
 * pool_id's metadata or coordinator share. Returns how many. */
unsigned rmp_srv_rdma_cut(struct rmp_srv *srv, uint32_t pool_id, uint64_t client_id);
const char *rmp_srv_rdma_why_not(const struct rmp_srv *srv);

#endif /* RMP_SRV_H */
