/*
 * client_internal.h - what the librmpool modules share (not installed).
 *
 * Modules:
 *   errors.c   rmp_strerror, the per-thread last-error text
 *   client.c   rmp_connect/rmp_disconnect (the control connection of
 *              common/ctlconn.h: connect and handshake, synchronous,
 *              before any thread exists), the background I/O thread
 *              (reads every frame, dispatches replies, renews leases),
 *              request/reply calls, rmp_status
 *   pool.c     rmp_pool_open/close/destroy/info
 *   meta.c     the metadata region read over rdma_cm and its check
 *   data.c     rmp_alloc/free/read/write over one-sided RDMA: the buddy
 *              engine on the metadata region, data in donor regions (with
 *              route.c, transfer.c, buffer.c, async.c: see data.h)
 *
 * Locking (names say who must hold what):
 *   c->call_lock  one request/reply exchange at a time (client_call)
 *   c->wlock      one writer on the socket at a time (rmp_client_send
 *                 takes it around rmp_ctlconn_send)
 *   c->lock       everything the I/O thread shares with callers: the
 *                 pending call, the list of open pools and their lease
 *                 and table state, dead/dead_rc, away and its detail;
 *                 c->cond signals changes
 * Order: call_lock, then lock or wlock; lock and wlock are never held
 * together. The I/O thread replaces the socket (a reconnect) under wlock.
 *
 * Riding through a coordinator restart (DESIGN.md, "Consumers ride
 * through"): when the connection drops, the client is "away" (c->away,
 * mirrored in the atomic c->away_flag for the data path's fast check)
 * and the I/O thread reconnects in the background; calls fail at once
 * with -RMP_EAWAY. Once back it renews each pool's lease by its old id
 * and fetches its segment table; each pool stays "resyncing" (alloc and
 * free: -RMP_EAWAY) until the new table is in, which raises the pool's
 * meta_epoch; the data path then re-opens its metadata connection.
 *
 * A donor lost (DESIGN.md, "Donor death"): the coordinator pushes the
 * pool's new table (SEGTAB_PUSH) on the control connection; the I/O
 * thread marks those donors lost in the pool's table (the arrays are
 * never replaced: the data path and rmp_pool_segment_donor read them
 * without a lock) and raises lost_gen.
 */
#ifndef RMP_CLIENT_INTERNAL_H
#define RMP_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "clock.h"
#include "ctlconn.h"
#include "rmpool.h"
#include "wire.h"

#define RMP_CLIENT_DEF_CONNECT_MS 10000u
#define RMP_CLIENT_DEF_REQUEST_MS 10000u
#define RMP_CLIENT_DEF_PROVISION_MS 300000u

/* ---- errors.c ---- */

/* Records the detail of a failure for rmp_last_error() and returns rc. */
int rmp_client_fail(const rmp_client *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void rmp_client_clear_error(const rmp_client *c);

/* Monotonic milliseconds: clock.h's, under the name meta.c still uses
 * (it moves to rmp_mono_ms with the client split). */
static inline uint64_t rmp_ctl_now_ms(void)
{
	return rmp_mono_ms();
}

/* ---- client.c ---- */

/* One request/reply exchange in progress. */
struct rmp_call {
	const uint8_t *want;   /* reply types that end it (ERROR always does) */
	unsigned n_want;
	uint8_t req_type;      /* the ERROR ref_type that belongs to it */
	bool relay_progress;   /* queue PROGRESS frames for the caller */
	bool done;
	struct rmp_wire_msg reply; /* valid when done */
	/* POOL_OPEN: the I/O thread turns POOL_READY into this pool and puts
	 * it on c->pools at once, so a lease frame that follows POOL_READY
	 * immediately finds it. NULL if that failed (out of memory). */
	const char *pool_name;
	struct rmp_pool *new_pool;
	struct rmp_progress_item *progress_head, *progress_tail;
};

struct rmp_progress_item {
	struct rmp_progress_item *next;
	struct rmp_wire_progress p;
};

struct rmp_client {
	/* The socket (ctl.fd) is shared: callers write under wlock, the I/O
	 * thread alone reads (fill, pop) once it runs; see ctlconn.h. */
	struct rmp_ctlconn ctl;
	int wake[2]; /* pipe: wakes the I/O thread (pool list changed, stop) */
	rmp_auth_key *key;
	uint64_t session_id; /* ctl.session_id, fixed once connected */
	char host[RMP_WIRE_HOST_MAX + 1];
	uint16_t port;
	struct rmp_connect_opts opts;
	char ident[RMP_WIRE_IDENT_MAX + 1];

	pthread_mutex_t call_lock;
	pthread_mutex_t wlock;
	pthread_mutex_t lock;
	pthread_cond_t cond;

	/* under lock */
	struct rmp_call *call;
	struct rmp_pool *pools;
	bool dead;   /* closed for good (rmp_disconnect); calls fail with dead_rc */
	int dead_rc;
	bool stopping;
	bool away;              /* the connection dropped; the I/O thread reconnects */
	uint64_t away_since_ms; /* monotonic: when it dropped */
	char away_text[256];    /* why it dropped, then why the last reconnect failed */
	uint64_t reconnects;    /* successful reconnects since rmp_connect */
	rmp_progress_fn *progress_fn;
	void *progress_arg;

	pthread_t io_thread;
	bool io_started;

	/* Read without c->lock (the data path; senders): */
	_Atomic bool away_flag;        /* == away */
	_Atomic uint64_t generation;   /* the coordinator's, from the last AUTH_OK */
	_Atomic uint64_t conn_epoch;   /* raised at each reconnect (under wlock) */
	struct rmp_ctlconn_backoff backoff; /* the I/O thread's alone */
};

struct rmp_pool {
	rmp_client *c;
	struct rmp_pool *next; /* in c->pools, under c->lock */
	char name[RMP_WIRE_NAME_MAX + 1];
	uint32_t pool_id;
	struct rmp_wire_segtab segtab; /* arrays owned here */

	/* lease, under c->lock */
	uint64_t lease_id;
	uint32_t slot_base; /* its owner-record slots (RMP_WIRE_NO_SLOT: none); never changes */
	uint32_t ttl_ms;
	uint64_t last_grant_ms; /* monotonic: when the lease was last confirmed */
	uint64_t next_renew_ms;
	uint64_t renew_sent_ms; /* 0: no renewal outstanding */
	bool expired;
	bool unconfirmed; /* no grant for a whole time to live (renewals go on) */
	char expired_text[RMP_WIRE_TEXT_MAX + 64];
	/* Read without c->lock by the data path (rmp_data_lease_check): */
	_Atomic bool expired_flag;	/* == expired */
	_Atomic uint64_t lease_until_ms; /* last_grant_ms + ttl_ms; UINT64_MAX: not counted */

	/* after a reconnect, under c->lock: the table is being fetched again */
	bool resync;
	uint64_t fetch_next_ms; /* when to send (again) SEGTAB_FETCH */
	uint64_t fetch_sent_ms; /* 0: none outstanding */
	/* Donors the coordinator took out of service (a table version with
	 * them lost: SEGTAB_PUSH, or a table fetched again): their entries in
	 * segtab are marked lost under c->lock, lost_note says why, and
	 * lost_gen goes up; the data path then marks those donor slots lost
	 * (data.c). */
	char lost_note[RMP_WIRE_TEXT_MAX + 1];
	/* Read without c->lock by the data path: */
	_Atomic bool resyncing;        /* == resync */
	_Atomic uint64_t meta_epoch;   /* raised when a new table brings a new metadata key */
	_Atomic uint64_t lost_gen;     /* raised when a table marks more donors lost */
	/* POOL_HOLD: no allocation or free starts before this (mono ms; 0:
	 * none); the holds received and the ms threads waited in them. */
	_Atomic uint64_t hold_until_ms;
	_Atomic uint64_t holds, hold_waits, hold_wait_ms;

	/* data path (data.c), set up on first use under data_lock */
	pthread_mutex_t data_lock;
	struct rmp_data *data;
};

/* Sends req and waits for one of want[] (or ERROR with ref_type
 * req->type) by the deadline. *reply is then owned by the caller
 * (rmp_wire_msg_release). ERROR replies become -code with the text
 * recorded for rmp_last_error(). Takes c->call_lock. */
int rmp_client_call(rmp_client *c, const struct rmp_wire_msg *req, const uint8_t *want,
		    unsigned n_want, bool relay_progress, unsigned timeout_ms,
		    struct rmp_wire_msg *reply);
/* The same for POOL_OPEN: *pool is the pool made from POOL_READY, already
 * on c->pools (its lease is being renewed). */
int rmp_client_call_open(rmp_client *c, const struct rmp_wire_msg *req, unsigned timeout_ms,
			 rmp_pool **pool);
/* Sends m without waiting for anything (POOL_CLOSE, LEASE_RENEW). */
int rmp_client_send(rmp_client *c, const struct rmp_wire_msg *m);
/* Takes p off the pools whose leases the I/O thread renews. */
void rmp_client_remove_pool(rmp_client *c, rmp_pool *p);
/* Makes the I/O thread recompute its renewal deadlines now. */
void rmp_client_wake(rmp_client *c);
/* The coordinator is away (no lock: a hint that is exact once the I/O
 * thread has noticed the loss). */
bool rmp_client_away(const rmp_client *c);
/* -RMP_EAWAY, with the detail (what was refused, since when, why) for
 * rmp_last_error(). */
int rmp_client_fail_away(rmp_client *c, const char *what);
/* The pool's metadata region and coordinator endpoint as of meta_epoch
 * *epoch (copied under c->lock: the I/O thread replaces them). */
void rmp_pool_meta_get(rmp_pool *p, struct rmp_wire_region *meta, struct rmp_wire_endpoint *coord,
		       uint64_t *epoch);
const rmp_auth_key *rmp_client_key(const rmp_client *c);

/* Requires c->lock: the pool's lease is gone (the caller writes
 * expired_text); the data path sees it at once. */
static inline void rmp_pool_expire_locked(rmp_pool *p)
{
	p->expired = true;
	atomic_store_explicit(&p->expired_flag, true, memory_order_release);
}
/* Requires c->lock: the lease was confirmed at now (or is counted again
 * from now, back from away). */
static inline void rmp_pool_granted_locked(rmp_pool *p, uint64_t now)
{
	p->last_grant_ms = now;
	atomic_store_explicit(&p->lease_until_ms, p->ttl_ms ? now + p->ttl_ms : UINT64_MAX,
			      memory_order_release);
}

/* ---- pool.c ---- */
void rmp_pool_free(rmp_pool *p);

/* ---- data.c ---- */
/* Tears down the pool's RDMA connections (sends the queued count hints
 * first). Safe on a pool whose data path never started. */
void rmp_data_close(rmp_pool *p);
/* A pool from POOL_READY: takes over the segment table's arrays (they
 * are cleared in *ready). NULL when out of memory (ready left intact). */
rmp_pool *rmp_pool_from_ready(rmp_client *c, const char *name, struct rmp_wire_pool_ready *ready);

/* ---- meta.c: the allocator metadata region, read over RDMA ---- */

struct rmp_meta_report {
	uint64_t bytes_read;   /* size of the region */
	unsigned max_order, min_order;
	uint64_t usable;       /* header: bytes not reserved */
	uint64_t free_bytes, alloc_bytes, reserved_bytes;
	uint64_t read_ms;      /* connect + read, wall time */
	bool valid;            /* the invariants hold: state valid */
	char error[200];       /* first violation, what lags, or why it could not be read */
	/* The classification (rmp_buddy_classify) of the last image read. */
	unsigned state;        /* RMP_CHECK_VALID, _LAGGING, _CORRUPT (rmpool.h) */
	unsigned tries;        /* images read (rmp_meta_check: until one was quiet) */
	unsigned busy_slots, abandoned_slots;
	unsigned drift_counts; /* free counts above the free blocks below them */
	uint64_t drift_total;
	unsigned moves, holes, odd_tags, untagged_tied;
	uint64_t hole_bytes;
};

/* Connects to the pool's metadata region (rdma_cm, to the segment
 * table's coordinator endpoint, with a METADATA token for this pool and
 * client), RDMA-READs all of it into a local buffer and walks it with
 * the buddy checker. 0 with r filled (r->valid says whether the
 * invariants hold); -ENOSYS when built without the rdma module; an RDMA
 * error (-ETIMEDOUT, -ECONNREFUSED for a refused token, ...); -EPROTO
 * for a region that is not buddy metadata. */
int rmp_meta_check(rmp_pool *p, unsigned timeout_ms, struct rmp_meta_report *r);

/* For tests: a connect with an arbitrary private data (e.g. a forged
 * token) to the pool's metadata endpoint; returns what rdma_cm says. */
int rmp_meta_try_connect(rmp_pool *p, const void *pdata, uint8_t len, unsigned timeout_ms);

/* Checks a metadata image already in memory (words in host order):
 * classifies it (valid, lagging, corrupt) and runs the exact walker on
 * it too; r->tries is left as it was. */
int rmp_meta_check_image(const uint64_t *words, uint64_t nwords, struct rmp_meta_report *r);

#endif /* RMP_CLIENT_INTERNAL_H */
