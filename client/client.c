/*
 * client.c - one consumer's connection to the coordinator: connect and
 * authenticate, then one background thread that owns the socket's
 * reading side.
 *
 * Why a thread that reads everything: the coordinator may send at any
 * time - lease grants, LEASE_EXPIRED, PROGRESS while a pool is being
 * provisioned - and a pool open may take minutes, during which the
 * leases of the client's other pools must still be renewed. So:
 *   - the I/O thread reads and decodes every frame and dispatches it:
 *     lease frames update the pools' lease state; replies complete the
 *     one pending request; PROGRESS frames are queued for the caller;
 *   - it renews each open pool's lease at a third of its time to live
 *     (LEASE_RENEW; the grant comes back through the same dispatch);
 *   - callers send their request under c->wlock and sleep on c->cond
 *     until the I/O thread hands them the reply or the deadline passes.
 *     They run the progress callback themselves, outside every lock, so
 *     a slow callback never holds up lease renewals.
 * The protocol has no request ids, so there is at most one request in
 * flight (c->call_lock), and a request whose reply does not come in time
 * drops the connection: a late reply must never be taken for the answer
 * to the next request. (ACKs name the request they answer, so a late ACK
 * of a POOL_CLOSE is harmless and does not need that.)
 *
 * When the connection drops (the coordinator restarts, or the network
 * fails), nothing is torn down: the client goes "away", calls fail at
 * once with -RMP_EAWAY, and the I/O thread reconnects with bounded
 * backoff (RECONNECT_BASE_MS doubling to RECONNECT_MAX_MS, jittered),
 * forever, until rmp_disconnect. Back, it renews every pool's lease by
 * its old id (the restarted coordinator has it on record and grants a
 * grace of one lease) and fetches each pool's segment table again
 * (SEGTAB_FETCH, retried while the pool is still being re-adopted); the
 * new table brings the metadata region's new key, and the data path
 * re-opens its metadata connection on its next use. Lease expiry is not
 * counted locally while away: the coordinator is the judge once it is
 * back (a refused renewal marks the pool expired).
 *
 * A donor lost: the coordinator pushes the pool's new table unasked
 * (SEGTAB_PUSH, within a second of the loss); the I/O thread marks the
 * lost donors in the pool's table (client_internal.h) and the data path
 * takes them out of service on its next call.
 *
 * The connection itself - connect, handshake, frames - is common/ctlconn.c,
 * shared with the donor and the agent; the handshake runs before the
 * thread starts, synchronously. connect_rc() is the one place its codes
 * become the ones rmpool.h promises.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"
#include "config.h"

/* Lease renewals sent in one pass of the I/O thread; the rest go in the next. */
#define RENEW_BATCH 32u
/* The I/O thread wakes at least this often, to notice silent lease loss. */
#define IO_TICK_MS 1000
/* Reconnect pacing (ctlconn.h's backoff), and one attempt's bound. */
#define RECONNECT_BASE_MS 100u
#define RECONNECT_MAX_MS 1000u
#define RECONNECT_JITTER_PCT 50u
#define RECONNECT_ATTEMPT_MS 3000u
/* SEGTAB_FETCH again this long after "the pool is being re-adopted". */
#define REFETCH_MS 200u

/* ---- locking helpers: these cannot fail on a valid, unlocked mutex ---- */

static void lock(pthread_mutex_t *m)
{
	pthread_mutex_lock(m);
}

static void unlock(pthread_mutex_t *m)
{
	pthread_mutex_unlock(m);
}

const rmp_auth_key *rmp_client_key(const rmp_client *c)
{
	return c->key;
}

uint64_t rmp_client_id(const rmp_client *c)
{
	return c ? c->session_id : 0;
}

void rmp_client_set_progress(rmp_client *c, rmp_progress_fn *fn, void *arg)
{
	if (!c)
		return;
	lock(&c->lock);
	c->progress_fn = fn;
	c->progress_arg = arg;
	unlock(&c->lock);
}

static void wake_io(rmp_client *c)
{
	char b = 1;
	ssize_t n = write(c->wake[1], &b, 1);
	(void)n; /* a full pipe already holds a wake-up */
}

bool rmp_client_away(const rmp_client *c)
{
	return atomic_load_explicit(&c->away_flag, memory_order_acquire);
}

int rmp_client_fail_away(rmp_client *c, const char *what)
{
	lock(&c->lock);
	uint64_t since = c->away ? rmp_mono_ms() - c->away_since_ms : 0;
	char text[sizeof(c->away_text)];
	snprintf(text, sizeof(text), "%s", c->away_text);
	unlock(&c->lock);
	return rmp_client_fail(c, -RMP_EAWAY, "%s: the coordinator %s:%u is away (%llu ms; %s); "
			       "reconnecting in the background", what, c->host, (unsigned)c->port,
			       (unsigned long long)since, text[0] ? text : "connection lost");
}

/* Requires c->lock. The connection is gone: calls fail with -RMP_EAWAY
 * (the one in flight ends), and the I/O thread reconnects. */
static void go_away_locked(rmp_client *c, int rc, const char *why)
{
	if (c->away || c->dead)
		return;
	c->away = true;
	c->away_since_ms = rmp_mono_ms();
	snprintf(c->away_text, sizeof(c->away_text), "%s: %s", why, rmp_strerror(rc));
	atomic_store_explicit(&c->away_flag, true, memory_order_release);
	pthread_cond_broadcast(&c->cond);
}

/* ---- the I/O thread ---- */

/* Requires c->lock. */
static rmp_pool *pool_by_lease_locked(rmp_client *c, uint64_t lease_id)
{
	for (rmp_pool *p = c->pools; p; p = p->next)
		if (p->lease_id == lease_id)
			return p;
	return NULL;
}

static bool call_wants(const struct rmp_call *call, const struct rmp_wire_msg *m)
{
	if (m->type == RMP_MSG_ERROR)
		return m->u.error.ref_type == call->req_type || m->u.error.ref_type == 0;
	if (m->type == RMP_MSG_ACK && m->u.ack.ref_type != call->req_type)
		return false;
	for (unsigned i = 0; i < call->n_want; i++)
		if (call->want[i] == m->type)
			return true;
	return false;
}

/* Requires c->lock. Takes the donor states and the capacity of a newer
 * table t of p (pushed, or fetched again): donors it marks lost are
 * marked in p's table and lost_gen goes up (data.c takes their slots out
 * of service). The donor list must be p's, in p's order: a table with
 * other donors is another pool's layout, which this library does not
 * follow (the pool is expired: reopen it). false then. */
static bool take_donor_states_locked(rmp_pool *p, const struct rmp_wire_segtab *t, const char *note)
{
	bool same = t->n_donors == p->segtab.n_donors && t->n_segments == p->segtab.n_segments;
	for (uint32_t i = 0; same && i < t->n_donors; i++)
		same = t->donors[i].donor_id == p->segtab.donors[i].donor_id;
	if (!same) {
		p->expired = true;
		snprintf(p->expired_text, sizeof(p->expired_text),
			 "pool %s: the coordinator's segment table version %llu lists other donors: reopen it",
			 p->name, (unsigned long long)t->version);
		return false;
	}
	bool more = false;
	for (uint32_t i = 0; i < t->n_donors; i++) {
		if (t->donors[i].state == RMP_DONOR_LOST && p->segtab.donors[i].state != RMP_DONOR_LOST) {
			p->segtab.donors[i].state = RMP_DONOR_LOST;
			more = true;
		}
	}
	p->segtab.capacity = t->capacity;
	if (more) {
		if (note && *note)
			snprintf(p->lost_note, sizeof(p->lost_note), "%s", note);
		else
			snprintf(p->lost_note, sizeof(p->lost_note),
				 "out of service since segment table version %llu", (unsigned long long)t->version);
		atomic_fetch_add_explicit(&p->lost_gen, 1, memory_order_acq_rel);
	}
	return true;
}

/* Requires c->lock. SEGTAB_PUSH: a pool's new table, unasked (a donor
 * was lost). Every pool of ours with that id takes it, if newer. The
 * metadata region may have moved too (a push right after a restart):
 * then the data path re-opens its metadata connection. */
static void push_segtab_locked(rmp_client *c, const struct rmp_wire_segtab_push *r)
{
	const struct rmp_wire_segtab *t = &r->segtab;

	for (rmp_pool *p = c->pools; p; p = p->next) {
		if (p->pool_id != r->pool_id || t->version <= p->segtab.version)
			continue;
		if (t->meta.len != p->segtab.meta.len || t->space_log2 != p->segtab.space_log2 ||
		    t->min_block_log2 != p->segtab.min_block_log2 || t->segment_log2 != p->segtab.segment_log2) {
			p->expired = true;
			snprintf(p->expired_text, sizeof(p->expired_text),
				 "pool %s: the coordinator pushed a table of another geometry: reopen it", p->name);
			continue;
		}
		if (!take_donor_states_locked(p, t, r->note))
			continue;
		bool moved = t->meta.addr != p->segtab.meta.addr || t->meta.rkey != p->segtab.meta.rkey ||
			     strcmp(t->coordinator.host, p->segtab.coordinator.host) != 0 ||
			     t->coordinator.port != p->segtab.coordinator.port;
		p->segtab.version = t->version;
		p->segtab.meta = t->meta;
		p->segtab.coordinator = t->coordinator;
		if (moved)
			atomic_fetch_add_explicit(&p->meta_epoch, 1, memory_order_acq_rel);
	}
}

/* Requires c->lock. A pool's table as the coordinator has it now (the
 * answer to the I/O thread's SEGTAB_FETCH after a reconnect). What the
 * library follows: the metadata region's key and address and the
 * coordinator's endpoint (a restart changes them), the version, and the
 * donors lost meanwhile with the capacity left. The donors and segments
 * stay those the pool opened with: a restart does not change them (the
 * coordinator re-adopts the same donors), and following a donor's
 * replacement is the elasticity work's. */
static void install_segtab_locked(rmp_client *c, const struct rmp_wire_segtab_reply *r)
{
	rmp_pool *p = c->pools;

	while (p && (p->pool_id != r->pool_id || !p->resync))
		p = p->next;
	if (!p)
		return; /* closed meanwhile, or not asked for */
	const struct rmp_wire_segtab *t = &r->segtab;
	if (t->meta.len != p->segtab.meta.len || t->space_log2 != p->segtab.space_log2 ||
	    t->min_block_log2 != p->segtab.min_block_log2) {
		rmp_pool_expire_locked(p);
		snprintf(p->expired_text, sizeof(p->expired_text),
			 "pool %s came back with another geometry (metadata %llu bytes, was %llu): reopen it",
			 p->name, (unsigned long long)t->meta.len, (unsigned long long)p->segtab.meta.len);
	}
	if (!p->expired)
		(void)take_donor_states_locked(p, t, NULL);
	p->segtab.version = t->version;
	p->segtab.meta = t->meta;
	p->segtab.coordinator = t->coordinator;
	p->resync = false;
	p->fetch_sent_ms = 0;
	/* Always a new epoch, even with the same key: the metadata
	 * connection went with the coordinator the control connection lost. */
	atomic_fetch_add_explicit(&p->meta_epoch, 1, memory_order_acq_rel);
	atomic_store_explicit(&p->resyncing, false, memory_order_release);
}

/* Requires c->lock. An ERROR answering the I/O thread's SEGTAB_FETCH:
 * fetches are answered in order, so it is the oldest one outstanding.
 * EAGAIN: the pool is still being re-adopted (its donors registering
 * again): ask again shortly. Anything else (the pool was lost, or
 * forgotten): the pool is expired with the coordinator's reason. false
 * when no fetch of ours is outstanding (then it is a caller's). */
static bool refetch_refused_locked(rmp_client *c, const struct rmp_wire_error *e)
{
	rmp_pool *oldest = NULL;

	for (rmp_pool *p = c->pools; p; p = p->next)
		if (p->resync && p->fetch_sent_ms && (!oldest || p->fetch_sent_ms < oldest->fetch_sent_ms))
			oldest = p;
	if (!oldest)
		return false;
	oldest->fetch_sent_ms = 0;
	if (e->code == EAGAIN) {
		oldest->fetch_next_ms = rmp_mono_ms() + REFETCH_MS;
		return true;
	}
	oldest->resync = false;
	rmp_pool_expire_locked(oldest);
	snprintf(oldest->expired_text, sizeof(oldest->expired_text), "after the coordinator's restart: %.*s",
		 (int)RMP_WIRE_TEXT_MAX, e->text);
	atomic_store_explicit(&oldest->resyncing, false, memory_order_release);
	return true;
}

/* Requires c->lock. Takes over m (moves it or releases it). */
static void dispatch_locked(rmp_client *c, struct rmp_wire_msg *m)
{
	uint64_t now = rmp_mono_ms();
	struct rmp_call *call = c->call;
	rmp_pool *p;

	switch (m->type) {
	case RMP_MSG_LEASE_GRANT:
		p = pool_by_lease_locked(c, m->u.lease_grant.lease_id);
		if (p && !p->expired) {
			if (m->u.lease_grant.ttl_ms)
				p->ttl_ms = m->u.lease_grant.ttl_ms;
			rmp_pool_granted_locked(p, now);
			p->unconfirmed = false;
			p->renew_sent_ms = 0;
			p->next_renew_ms = now + p->ttl_ms / 3;
		}
		break;
	case RMP_MSG_LEASE_EXPIRED:
		p = pool_by_lease_locked(c, m->u.lease_expired.lease_id);
		if (p) {
			rmp_pool_expire_locked(p);
			snprintf(p->expired_text, sizeof(p->expired_text),
				 "the coordinator expired lease %llu",
				 (unsigned long long)p->lease_id);
		}
		break;
	case RMP_MSG_POOL_HOLD:
		/* A reclaim wants a quiet snapshot: new allocations and frees
		 * wait (data.c, hold_wait); a later hold may extend it. */
		p = pool_by_lease_locked(c, m->u.pool_hold.lease_id);
		if (p && p->pool_id == m->u.pool_hold.pool_id) {
			uint64_t until = now + m->u.pool_hold.hold_ms;
			if (until > atomic_load_explicit(&p->hold_until_ms, memory_order_relaxed))
				atomic_store_explicit(&p->hold_until_ms, until, memory_order_release);
			atomic_fetch_add_explicit(&p->holds, 1, memory_order_relaxed);
		}
		break;
	case RMP_MSG_PROGRESS:
		if (call && call->relay_progress && !call->done) {
			struct rmp_progress_item *it = calloc(1, sizeof(*it));
			if (it) {
				it->p = m->u.progress;
				if (call->progress_tail)
					call->progress_tail->next = it;
				else
					call->progress_head = it;
				call->progress_tail = it;
			}
		}
		break;
	case RMP_MSG_SEGTAB:
		if (call && !call->done && call_wants(call, m))
			goto reply; /* a caller's own fetch */
		install_segtab_locked(c, &m->u.segtab);
		break;
	case RMP_MSG_SEGTAB_PUSH:
		push_segtab_locked(c, &m->u.segtab_push);
		break;
	case RMP_MSG_ERROR:
		if (m->u.error.ref_type == RMP_MSG_SEGTAB_FETCH && refetch_refused_locked(c, &m->u.error))
			break;
		if (m->u.error.ref_type == RMP_MSG_LEASE_RENEW) {
			/* Renewals are answered in order: the oldest one
			 * outstanding is the one refused. */
			rmp_pool *oldest = NULL;
			for (p = c->pools; p; p = p->next)
				if (p->renew_sent_ms && (!oldest || p->renew_sent_ms < oldest->renew_sent_ms))
					oldest = p;
			if (oldest) {
				rmp_pool_expire_locked(oldest);
				snprintf(oldest->expired_text, sizeof(oldest->expired_text),
					 "lease renewal refused: %s", m->u.error.text);
			}
			break;
		}
		if (call && !call->done && call_wants(call, m)) {
			call->reply = *m;
			call->done = true;
			pthread_cond_broadcast(&c->cond);
			return;
		}
		break;
	default:
	reply:
		if (call && !call->done && call_wants(call, m)) {
			if (m->type == RMP_MSG_POOL_READY && call->pool_name) {
				call->new_pool = rmp_pool_from_ready(c, call->pool_name, &m->u.pool_ready);
				if (call->new_pool) {
					call->new_pool->next = c->pools;
					c->pools = call->new_pool;
				}
			}
			call->reply = *m;
			call->done = true;
			pthread_cond_broadcast(&c->cond);
			return;
		}
		break;
	}
	rmp_wire_msg_release(m);
}

/* Collects the leases due for renewal (and notices leases that went
 * unconfirmed for a whole time to live). Requires c->lock. Returns how
 * many ids it put in ids[]; *wait_ms gets the time to the next event. */
static unsigned due_renewals_locked(rmp_client *c, uint64_t now, uint64_t *ids, int *wait_ms)
{
	unsigned n = 0;
	uint64_t next = now + IO_TICK_MS;

	for (rmp_pool *p = c->pools; p; p = p->next) {
		if (p->expired || p->ttl_ms == 0) /* 0: a lease that never expires */
			continue;
		if (now >= p->last_grant_ms + p->ttl_ms && !p->unconfirmed) {
			/* Shown (rmp_pool_info), not a refusal, and renewals
			 * go on: a stalled coordinator keeps the lease (it
			 * extends leases by its stall) and grants it again,
			 * and the data path needs no coordinator CPU. If the
			 * lease is really gone, the renewal is refused and the
			 * far sides refuse us (DESIGN.md, "Cut-off of an
			 * expired consumer"). */
			p->unconfirmed = true;
			snprintf(p->expired_text, sizeof(p->expired_text),
				 "lease %llu not confirmed for %u ms", (unsigned long long)p->lease_id,
				 p->ttl_ms);
		}
		if (now >= p->next_renew_ms && n < RENEW_BATCH) {
			ids[n++] = p->lease_id;
			if (!p->renew_sent_ms)
				p->renew_sent_ms = now;
			/* Retry at the same pace if no grant comes back. */
			p->next_renew_ms = now + (p->ttl_ms / 3 ? p->ttl_ms / 3 : 1);
		}
		if (p->next_renew_ms < next)
			next = p->next_renew_ms;
	}
	*wait_ms = next > now ? (int)(next - now) : 0;
	return n;
}

/* Pools whose table must be fetched again (after a reconnect): their
 * pool ids in ids[], at most RENEW_BATCH. Requires c->lock; lowers
 * *wait_ms to the next retry. */
static unsigned due_fetches_locked(rmp_client *c, uint64_t now, uint32_t *ids, int *wait_ms)
{
	unsigned n = 0;

	for (rmp_pool *p = c->pools; p; p = p->next) {
		if (!p->resync || p->fetch_sent_ms)
			continue;
		if (now >= p->fetch_next_ms && n < RENEW_BATCH) {
			ids[n++] = p->pool_id;
			p->fetch_sent_ms = now;
			continue;
		}
		int w = p->fetch_next_ms > now ? (int)(p->fetch_next_ms - now) : 0;
		if (w < *wait_ms)
			*wait_ms = w;
	}
	return n;
}

/* The connection is back (c->lock held): every pool renews its lease by
 * its old id at once, with a grace of one time to live from now (the
 * restarted coordinator grants the same), and fetches its table again. */
static void back_locked(rmp_client *c)
{
	uint64_t now = rmp_mono_ms();

	for (rmp_pool *p = c->pools; p; p = p->next) {
		rmp_pool_granted_locked(p, now);
		p->next_renew_ms = now;
		p->renew_sent_ms = 0;
		p->resync = true;
		p->fetch_next_ms = now;
		p->fetch_sent_ms = 0;
		atomic_store_explicit(&p->resyncing, true, memory_order_release);
	}
	c->away = false;
	c->away_text[0] = '\0';
	c->reconnects++;
	atomic_store_explicit(&c->away_flag, false, memory_order_release);
	pthread_cond_broadcast(&c->cond);
}

/* One reconnect attempt, after the backoff's delay (cut short by a stop).
 * The socket is replaced under wlock, so a sender never writes to a
 * descriptor that is being closed and reused. */
static void reconnect_step(rmp_client *c)
{
	char err[256];
	struct pollfd pfd = { .fd = c->wake[0], .events = POLLIN };

	(void)poll(&pfd, 1, (int)rmp_ctlconn_backoff_next(&c->backoff));
	if (pfd.revents & POLLIN) {
		char buf[64];
		while (read(c->wake[0], buf, sizeof(buf)) > 0)
			;
	}
	lock(&c->lock);
	bool stop = c->stopping;
	unlock(&c->lock);
	if (stop)
		return;

	unsigned t = c->opts.connect_timeout_ms < RECONNECT_ATTEMPT_MS ? c->opts.connect_timeout_ms
								     : RECONNECT_ATTEMPT_MS;
	lock(&c->wlock);
	atomic_fetch_add_explicit(&c->conn_epoch, 1, memory_order_acq_rel);
	int rc = rmp_ctlconn_reconnect(&c->ctl, rmp_deadline_ms(t), err, sizeof(err));
	uint64_t known = atomic_load_explicit(&c->generation, memory_order_relaxed);
	if (rc == 0 && c->ctl.generation < known) {
		/* A coordinator older than the one we knew (a stale process on
		 * an old state directory): not ours to trust. */
		snprintf(err, sizeof(err), "coordinator %.100s: generation %llu is older than %llu, seen before",
			 c->ctl.peer, (unsigned long long)c->ctl.generation, (unsigned long long)known);
		rmp_ctlconn_close(&c->ctl);
		rc = -ESTALE;
	}
	if (rc == 0)
		atomic_store_explicit(&c->generation, c->ctl.generation, memory_order_release);
	unlock(&c->wlock);

	lock(&c->lock);
	if (rc == 0) {
		rmp_ctlconn_backoff_reset(&c->backoff);
		back_locked(c);
	} else {
		snprintf(c->away_text, sizeof(c->away_text), "reconnecting: %.200s", err);
	}
	unlock(&c->lock);
}

/* Sends what is due (renewals, table fetches); on a send failure the
 * client goes away. Returns whether anything was sent. */
static bool send_due(rmp_client *c, int *wait_ms)
{
	uint64_t ids[RENEW_BATCH];
	uint32_t pids[RENEW_BATCH];

	lock(&c->lock);
	uint64_t now = rmp_mono_ms();
	unsigned n = due_renewals_locked(c, now, ids, wait_ms);
	unsigned nf = due_fetches_locked(c, now, pids, wait_ms);
	unlock(&c->lock);

	int rc = 0;
	for (unsigned i = 0; i < n && !rc; i++) {
		struct rmp_wire_msg m = { .type = RMP_MSG_LEASE_RENEW };
		m.u.lease_renew.lease_id = ids[i];
		rc = rmp_client_send(c, &m);
	}
	for (unsigned i = 0; i < nf && !rc; i++) {
		struct rmp_wire_msg m = { .type = RMP_MSG_SEGTAB_FETCH };
		m.u.segtab_fetch.pool_id = pids[i];
		rc = rmp_client_send(c, &m);
	}
	if (rc) {
		lock(&c->lock);
		go_away_locked(c, rc, "sending to the coordinator");
		unlock(&c->lock);
	}
	return n + nf > 0;
}

/* Reads what came and dispatches it; a lost connection or a bad frame
 * sends the client away. */
static void read_frames(rmp_client *c)
{
	char err[256];

	int rc = rmp_ctlconn_fill(&c->ctl);
	if (rc < 0) {
		lock(&c->lock);
		go_away_locked(c, rc, "the connection was lost");
		unlock(&c->lock);
		return;
	}
	for (;;) {
		struct rmp_wire_msg m;
		rc = rmp_ctlconn_pop(&c->ctl, &m, err, sizeof(err));
		if (rc == 0)
			return;
		lock(&c->lock);
		if (rc < 0)
			go_away_locked(c, -EPROTO, err);
		else
			dispatch_locked(c, &m);
		unlock(&c->lock);
		if (rc < 0)
			return;
	}
}

static void *io_main(void *arg)
{
	rmp_client *c = arg;

	for (;;) {
		lock(&c->lock);
		bool stop = c->stopping || c->dead, away = c->away;
		unlock(&c->lock);
		if (stop)
			break;
		if (away) {
			reconnect_step(c);
			continue;
		}
		int wait_ms = IO_TICK_MS;
		bool sent = send_due(c, &wait_ms);
		if (rmp_client_away(c))
			continue;

		struct pollfd pfd[2] = {
			{ .fd = c->ctl.fd, .events = POLLIN },
			{ .fd = c->wake[0], .events = POLLIN },
		};
		int pn = poll(pfd, 2, sent ? 0 : wait_ms);
		if (pn < 0 && errno != EINTR) {
			lock(&c->lock);
			go_away_locked(c, -errno, "poll");
			unlock(&c->lock);
			continue;
		}
		if (pn <= 0)
			continue;
		if (pfd[1].revents & POLLIN) {
			char buf[64];
			while (read(c->wake[0], buf, sizeof(buf)) > 0)
				;
		}
		if (pfd[0].revents & (POLLIN | POLLERR | POLLHUP))
			read_frames(c);
	}
	return NULL;
}

/* ---- requests ---- */

/* Sends m on the connection of epoch (a reconnect since: -ENOTCONN, so
 * that a request meant for the lost coordinator never reaches the new
 * one unannounced). */
static int send_in_epoch(rmp_client *c, const struct rmp_wire_msg *m, uint64_t epoch)
{
	unsigned t = c->opts.request_timeout_ms;

	lock(&c->wlock);
	int rc = atomic_load_explicit(&c->conn_epoch, memory_order_acquire) != epoch || c->ctl.fd < 0
			 ? -ENOTCONN
			 : rmp_ctlconn_send(&c->ctl, m, rmp_deadline_ms(t));
	unlock(&c->wlock);
	return rc;
}

int rmp_client_send(rmp_client *c, const struct rmp_wire_msg *m)
{
	uint64_t epoch = atomic_load_explicit(&c->conn_epoch, memory_order_acquire);

	if (rmp_client_away(c))
		return -ENOTCONN;
	return send_in_epoch(c, m, epoch);
}

static void run_progress(rmp_client *c, struct rmp_progress_item *it)
{
	lock(&c->lock);
	rmp_progress_fn *fn = c->progress_fn;
	void *arg = c->progress_arg;
	unlock(&c->lock);
	if (fn) {
		struct rmp_progress ev = {
			.state = (enum rmp_progress_state)it->p.state,
			.donor_id = it->p.donor_id,
			.pid = it->p.pid,
			.error = (int)it->p.error,
			.text = it->p.text,
		};
		fn(arg, &ev);
	}
	free(it);
}

/* Requires c->lock; returns with it held (drops it around callbacks). */
static void drain_progress_locked(rmp_client *c, struct rmp_call *call)
{
	while (call->progress_head) {
		struct rmp_progress_item *it = call->progress_head;
		call->progress_head = it->next;
		if (!call->progress_head)
			call->progress_tail = NULL;
		unlock(&c->lock);
		run_progress(c, it);
		lock(&c->lock);
	}
}

static void deadline_ts(uint64_t deadline_mono_ms, struct timespec *ts)
{
	ts->tv_sec = (time_t)(deadline_mono_ms / 1000);
	ts->tv_nsec = (long)(deadline_mono_ms % 1000) * 1000000L;
}

static int do_call(rmp_client *c, struct rmp_call *callp, const struct rmp_wire_msg *req,
		   unsigned timeout_ms, struct rmp_wire_msg *reply)
{
	struct rmp_call *call = callp;
	const char *what = rmp_wire_type_name(req->type);
	uint64_t deadline = rmp_deadline_ms(timeout_ms);
	int rc = 0;

	/* Refuse a request that cannot be encoded before anything is sent:
	 * a bad argument must not cost the connection. */
	size_t need = 0;
	rc = rmp_wire_encode(req, NULL, 0, &need);
	if (rc != -ENOSPC)
		return rmp_client_fail(c, rc ? rc : -EINVAL, "%s: invalid request (%s)", what,
				       rmp_strerror(rc ? rc : -EINVAL));
	rc = 0;

	lock(&c->call_lock);
	lock(&c->lock);
	if (c->dead || c->away) {
		rc = c->dead_rc;
		bool away = c->away;
		unlock(&c->lock);
		unlock(&c->call_lock);
		if (away)
			return rmp_client_fail_away(c, what);
		return rmp_client_fail(c, -ENOTCONN, "%s: not connected to %s:%u (%s)", what, c->host,
				       (unsigned)c->port, rmp_strerror(rc));
	}
	uint64_t epoch = atomic_load_explicit(&c->conn_epoch, memory_order_acquire);
	c->call = call;
	unlock(&c->lock);

	rc = send_in_epoch(c, req, epoch);

	lock(&c->lock);
	if (rc) {
		go_away_locked(c, rc, "sending a request");
	} else {
		struct timespec ts;
		deadline_ts(deadline, &ts);
		while (!call->done && !c->dead && !c->away) {
			drain_progress_locked(c, call);
			if (call->done || c->dead || c->away)
				break;
			if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
				break;
		}
		drain_progress_locked(c, call);
	}
	c->call = NULL;
	bool timed_out = !call->done && !c->dead && !c->away;
	if (timed_out && req->type != RMP_MSG_POOL_CLOSE) {
		/* Drop the connection: a late reply must not answer the next
		 * request. The I/O thread connects again. */
		go_away_locked(c, -ETIMEDOUT, "a request went unanswered");
		shutdown(c->ctl.fd, SHUT_RDWR);
	}
	bool lost = !call->done && (c->dead || c->away) && !timed_out;
	unlock(&c->lock);
	unlock(&c->call_lock);

	if (rc)
		return rmp_client_fail(c, -RMP_EAWAY, "%s: sending to %s:%u failed: %s (reconnecting)", what,
				       c->host, (unsigned)c->port, rmp_strerror(rc));
	if (timed_out)
		return rmp_client_fail(c, -ETIMEDOUT, "%s: no answer from %s:%u in %u ms", what,
				       c->host, (unsigned)c->port, timeout_ms);
	if (lost)
		return rmp_client_fail(c, -RMP_EAWAY, "%s: the connection to %s:%u was lost before the "
				       "answer (the request may have been carried out); reconnecting",
				       what, c->host, (unsigned)c->port);
	if (call->reply.type == RMP_MSG_ERROR) {
		int code = call->reply.u.error.code ? (int)call->reply.u.error.code : RMP_EREMOTE;
		rmp_client_fail(c, -code, "%s", call->reply.u.error.text);
		rmp_wire_msg_release(&call->reply);
		return -code;
	}
	*reply = call->reply;
	return 0;
}

int rmp_client_call(rmp_client *c, const struct rmp_wire_msg *req, const uint8_t *want,
		    unsigned n_want, bool relay_progress, unsigned timeout_ms,
		    struct rmp_wire_msg *reply)
{
	struct rmp_call call = { .want = want, .n_want = n_want, .req_type = (uint8_t)req->type,
				 .relay_progress = relay_progress };
	return do_call(c, &call, req, timeout_ms, reply);
}

int rmp_client_call_open(rmp_client *c, const struct rmp_wire_msg *req, unsigned timeout_ms,
			 rmp_pool **pool)
{
	static const uint8_t want[] = { RMP_MSG_POOL_READY };
	struct rmp_call call = { .want = want, .n_want = 1, .req_type = RMP_MSG_POOL_OPEN,
				 .relay_progress = true, .pool_name = req->u.pool_open.name };
	struct rmp_wire_msg reply;

	int rc = do_call(c, &call, req, timeout_ms, &reply);
	if (rc)
		return rc;
	if (!call.new_pool) {
		/* Out of memory in the I/O thread: the coordinator holds a
		 * lease we cannot renew; give it back. */
		struct rmp_wire_msg close_req = { .type = RMP_MSG_POOL_CLOSE };
		close_req.u.pool_close.pool_id = reply.u.pool_ready.pool_id;
		close_req.u.pool_close.lease_id = reply.u.pool_ready.lease_id;
		rmp_client_send(c, &close_req);
		rmp_wire_msg_release(&reply);
		return rmp_client_fail(c, -ENOMEM, "pool open: out of memory");
	}
	rmp_wire_msg_release(&reply);
	*pool = call.new_pool;
	return 0;
}

void rmp_client_wake(rmp_client *c)
{
	wake_io(c);
}

void rmp_client_remove_pool(rmp_client *c, rmp_pool *p)
{
	lock(&c->lock);
	for (rmp_pool **pp = &c->pools; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	p->next = NULL;
	unlock(&c->lock);
}

/* ---- connect, handshake, disconnect ---- */

static void default_ident(char *buf, size_t len)
{
	char host[64] = "";

	if (gethostname(host, sizeof(host) - 1) != 0)
		strcpy(host, "unknown");
	host[sizeof(host) - 1] = '\0';
	for (char *s = host; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
	snprintf(buf, len, "librmpool/%.40s/%ld", host, (long)getpid());
}

/* "host:port", "[v6addr]:port", or "host" alone (RMP_DEFAULT_PORT). */
static int parse_coordinator(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	struct rmp_config_hostport hp;
	char tmp[RMP_CONFIG_HOST_MAX + 16];

	if (!s || !*s || strlen(s) >= sizeof(tmp) - 8)
		return -EINVAL;
	int rc = rmp_config_parse_hostport(s, &hp);
	if (rc == -EINVAL && !strchr(s, ':') && !strchr(s, '[')) {
		snprintf(tmp, sizeof(tmp), "%s:%u", s, (unsigned)RMP_DEFAULT_PORT);
		rc = rmp_config_parse_hostport(tmp, &hp);
	}
	if (rc)
		return -EINVAL;
	if (strlen(hp.host) >= hostlen)
		return -EINVAL;
	strcpy(host, hp.host);
	*port = hp.port;
	return 0;
}

/* The one place the control connection's codes become librmpool's (the
 * ones rmpool.h promises): a failed authentication is RMP_EAUTH, a
 * refusal that gives no code RMP_EREMOTE, a frame this library cannot
 * read from a peer that is not an rmpool coordinator EPROTO. */
static int connect_rc(int rc)
{
	switch (rc) {
	case -RMP_CTLCONN_EAUTH:
		return -RMP_EAUTH;
	case -EREMOTEIO:
		return -RMP_EREMOTE;
	case -EMSGSIZE:
	case -EBADMSG:
		return -EPROTO;
	default:
		return rc;
	}
}

/* Connects c->ctl to c->host:c->port and authenticates, by the deadline. */
static int connect_ctl(rmp_client *c, uint64_t deadline)
{
	const struct rmp_ctlconn_opts o = {
		.host = c->host,
		.port = c->port,
		.key = c->key,
		.role = RMP_ROLE_CLIENT,
		.ident = c->ident,
		/* Off, as it always was: lease renewals keep a pool user's
		 * connection busy, and every request has its own deadline. */
		.keepalive = false,
	};
	char err[256];

	int rc = rmp_ctlconn_open(&c->ctl, &o, deadline, err, sizeof(err));
	if (rc)
		return rmp_client_fail(NULL, connect_rc(rc), "%s", err);
	c->session_id = c->ctl.session_id;
	atomic_store_explicit(&c->generation, c->ctl.generation, memory_order_release);
	/* The jitter's seed differs per process: consumers that lost the
	 * coordinator together do not come back in step. */
	rmp_ctlconn_backoff_init(&c->backoff, RECONNECT_BASE_MS, RECONNECT_MAX_MS, RECONNECT_JITTER_PCT,
				 c->session_id * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid());
	return 0;
}

static int init_sync(rmp_client *c)
{
	pthread_condattr_t ca;
	int rc;

	rc = pthread_condattr_init(&ca);
	if (rc)
		return -rc;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (rc)
		return -rc;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->wlock, NULL);
	pthread_mutex_init(&c->call_lock, NULL);
	return 0;
}

static void destroy_sync(rmp_client *c)
{
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->wlock);
	pthread_mutex_destroy(&c->call_lock);
}

int rmp_connect(const char *coordinator, const char *secret, rmp_client **out)
{
	return rmp_connect_ex(coordinator, secret, NULL, out);
}

/* The first layout with a size (0.1.0, symbol version RMPOOL_1.0): it
 * ends with rdma_timeout_ms. Callers compiled since have at least this. */
#define CONNECT_OPTS_SIZE_1 \
	(offsetof(struct rmp_connect_opts, rdma_timeout_ms) + sizeof(unsigned))

/* The caller's options, read as far as its own layout goes (rmpool.h,
 * "Versions and layouts"): what it does not have stays 0 (the default);
 * what it has beyond ours must be 0, or it asked for something this
 * library cannot do. dst is zeroed. */
static int connect_opts_copy(struct rmp_connect_opts *dst, const struct rmp_connect_opts *src)
{
	size_t n = src->size;

	if (n < CONNECT_OPTS_SIZE_1)
		return rmp_client_fail(NULL, -EINVAL,
				       "rmp_connect: opts->size is %zu, not sizeof(struct rmp_connect_opts) "
				       "(start from RMP_CONNECT_OPTS_INIT)",
				       n);
	for (size_t i = sizeof(*dst); i < n; i++)
		if (((const unsigned char *)src)[i])
			return rmp_client_fail(NULL, -E2BIG,
					       "rmp_connect: opts sets a field librmpool %s does not have",
					       RMPOOL_VERSION);
	memcpy(dst, src, n < sizeof(*dst) ? n : sizeof(*dst));
	dst->size = sizeof(*dst);
	return 0;
}

int rmp_connect_ex(const char *coordinator, const char *secret,
		   const struct rmp_connect_opts *opts, rmp_client **out)
{
	rmp_client *c;
	char err[256];
	int rc;

	if (!out)
		return rmp_client_fail(NULL, -EINVAL, "rmp_connect: out is NULL");
	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return rmp_client_fail(NULL, -ENOMEM, "rmp_connect: out of memory");
	c->ctl.fd = -1; /* closed: rmp_ctlconn_close is a no-op on it */
	c->wake[0] = c->wake[1] = -1;
	rc = opts ? connect_opts_copy(&c->opts, opts) : 0;
	if (rc) {
		free(c);
		return rc;
	}
	if (!c->opts.connect_timeout_ms)
		c->opts.connect_timeout_ms = RMP_CLIENT_DEF_CONNECT_MS;
	if (!c->opts.request_timeout_ms)
		c->opts.request_timeout_ms = RMP_CLIENT_DEF_REQUEST_MS;
	if (!c->opts.provision_timeout_ms)
		c->opts.provision_timeout_ms = RMP_CLIENT_DEF_PROVISION_MS;
	if (c->opts.ident && strlen(c->opts.ident) <= RMP_WIRE_IDENT_MAX)
		strcpy(c->ident, c->opts.ident);
	else
		default_ident(c->ident, sizeof(c->ident));
	c->opts.ident = NULL; /* not kept: the caller's string */

	rc = rmp_auth_key_create(secret, &c->key, err, sizeof(err));
	if (rc) {
		rmp_client_fail(NULL, rc, "secret: %s", err);
		goto out_free;
	}
	rc = init_sync(c);
	if (rc) {
		rmp_client_fail(NULL, rc, "rmp_connect: cannot set up locks");
		goto out_key;
	}
	if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = rmp_client_fail(NULL, -errno, "rmp_connect: pipe: %s", rmp_strerror(errno));
		goto out_sync;
	}
	rc = parse_coordinator(coordinator, c->host, sizeof(c->host), &c->port);
	if (rc) {
		rmp_client_fail(NULL, rc, "bad coordinator address \"%.80s\": want host:port or "
				"[v6addr]:port", coordinator ? coordinator : "(null)");
		goto out_pipe;
	}
	rc = connect_ctl(c, rmp_deadline_ms(c->opts.connect_timeout_ms));
	if (rc)
		goto out_pipe;
	rc = pthread_create(&c->io_thread, NULL, io_main, c);
	if (rc) {
		rc = rmp_client_fail(NULL, -rc, "rmp_connect: cannot start the I/O thread: %s",
				     rmp_strerror(rc));
		goto out_close;
	}
	c->io_started = true;
	rmp_client_clear_error(NULL);
	*out = c;
	return 0;

out_close:
	rmp_ctlconn_close(&c->ctl);
out_pipe:
	close(c->wake[0]);
	close(c->wake[1]);
out_sync:
	destroy_sync(c);
out_key:
	rmp_auth_key_destroy(c->key);
out_free:
	free(c);
	return rc;
}

void rmp_disconnect(rmp_client *c)
{
	if (!c)
		return;
	/* Pools still open: tell the coordinator (best effort), then free. */
	for (;;) {
		lock(&c->lock);
		rmp_pool *p = c->pools;
		unlock(&c->lock);
		if (!p)
			break;
		rmp_pool_close(p);
	}
	lock(&c->lock);
	c->stopping = true;
	c->dead = true;
	c->dead_rc = -ENOTCONN;
	unlock(&c->lock);
	wake_io(c);
	if (c->io_started)
		pthread_join(c->io_thread, NULL);
	rmp_ctlconn_close(&c->ctl);
	close(c->wake[0]);
	close(c->wake[1]);
	destroy_sync(c);
	rmp_auth_key_destroy(c->key);
	free(c);
}

/* ---- status ---- */

int rmp_status(rmp_client *c, struct rmp_status **out)
{
	static const uint8_t want[] = { RMP_MSG_STATUS_REPLY };
	struct rmp_wire_msg req = { .type = RMP_MSG_STATUS_REQUEST }, rep;
	struct rmp_status *s;
	int rc;

	if (!c || !out)
		return -EINVAL;
	*out = NULL;
	rc = rmp_client_call(c, &req, want, 1, false, c->opts.request_timeout_ms, &rep);
	if (rc)
		return rc;
	const struct rmp_wire_status_reply *w = &rep.u.status;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto out_nomem;
	s->pools = calloc(w->n_pools ? w->n_pools : 1, sizeof(*s->pools));
	s->hosts = calloc(w->n_hosts ? w->n_hosts : 1, sizeof(*s->hosts));
	if (!s->pools || !s->hosts)
		goto out_nomem;
	s->uptime_ms = w->uptime_ms;
	s->generation = w->generation;
	s->capacity = w->capacity;
	s->free_bytes = w->free_bytes;
	s->clients = w->clients;
	s->n_pools = w->n_pools;
	s->n_hosts = w->n_hosts;
	for (uint32_t i = 0; i < w->n_pools; i++) {
		const struct rmp_wire_pool_status *wp = &w->pools[i];
		struct rmp_status_pool *sp = &s->pools[i];
		snprintf(sp->name, sizeof(sp->name), "%s", wp->name);
		sp->pool_id = wp->pool_id;
		sp->capacity = wp->capacity;
		sp->space = wp->space;
		sp->free_bytes = wp->free_bytes;
		sp->clients = wp->clients;
		sp->donors = wp->donors;
		sp->segtab_version = wp->segtab_version;
		sp->state = (enum rmp_pool_state)wp->state;
		sp->donors_away = wp->donors_away;
		sp->donors_lost = wp->donors_lost;
		sp->lost_bytes = wp->lost_bytes;
		snprintf(sp->note, sizeof(sp->note), "%s", wp->note);
	}
	for (uint32_t i = 0; i < w->n_hosts; i++) {
		snprintf(s->hosts[i].host, sizeof(s->hosts[i].host), "%s", w->hosts[i].host);
		s->hosts[i].donors = w->hosts[i].donors;
		s->hosts[i].budget = w->hosts[i].budget;
		s->hosts[i].used = w->hosts[i].used;
	}
	rmp_wire_msg_release(&rep);
	*out = s;
	return 0;

out_nomem:
	rmp_status_free(s);
	rmp_wire_msg_release(&rep);
	return rmp_client_fail(c, -ENOMEM, "status: out of memory");
}

void rmp_status_free(struct rmp_status *s)
{
	if (!s)
		return;
	free(s->pools);
	free(s->hosts);
	free(s);
}
