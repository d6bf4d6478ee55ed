/*
 * data.c - the data half of librmpool: its setup, alloc and free with
 * one-sided RDMA, no coordinator or donor CPU on the path.
 *
 * Allocation runs the buddy engine (common/buddy.c) on the RDMA word
 * store (common/store_rdma.c) over one connection to the coordinator's
 * metadata region: loads are RDMA READs, changes are RDMA CAS and FAA.
 * Per-thread engine contexts (cursors, counters) live in shards, as in
 * the local heap.
 *
 * Setup happens on a pool's first data call (rmp_data_of, under
 * p->data_lock): the donor array in the segment table's order, the
 * segment index (route.c), the metadata connection with a METADATA
 * token, the region's header checked against the segment table, and the
 * device's atomic byte order. Donor connections are made later, by the
 * first transfer on each donor (transfer.c). data.h lists the other
 * modules of the data path and its locks.
 *
 * The coordinator away (client.c: its connection dropped, it restarts):
 * alloc, free and liveness checks of handles this process did not
 * allocate fail at once with -RMP_EAWAY, before touching the metadata
 * connection; an operation already on it when the coordinator went ends
 * within the RDMA timeout, also -RMP_EAWAY. Transfers of this process's
 * own blocks need only the donors and go on. Once the pool's new segment
 * table is in (its meta_epoch moved), the next use re-opens the metadata
 * connection to the new registration under d->meta_rw's write side, so
 * no operation runs on a half-replaced engine. The engine's per-thread
 * state (cursors, credit) stays: the metadata are the same memory.
 *
 * An operation that failed in the middle on an RDMA error (the
 * coordinator died mid-alloc, any connection error) leaves its shard's
 * owner-record slot maybe busy: the shard gives the slot up once the
 * metadata connection works again (meta_reopen, or its next use) and its
 * threads use the lease's other shards until the coordinator reset the
 * slot; then it records again with the same slot and tag (shard.h;
 * DESIGN.md, "Reclaim of an expired consumer"). A busy slot left behind would make
 * every resolver snapshot of the pool unclean.
 *
 * Donors out of service (DESIGN.md, "Donor death"): when the pool's
 * table marks donors lost (client.c: pushed by the coordinator), the
 * next call here marks their slots lost (rmp_data_donor_lost), so every
 * transfer touching them fails at once with -RMP_EDONOR. rmp_free of a
 * block on one releases the handle and leaves the block RESERVED
 * (rmp_buddy_free_retired); rmp_alloc sets aside a block it got there
 * before the coordinator's retire reached it and takes another.
 * A reclaim's POOL_HOLD (client.c) makes an allocation or free wait
 * until the hold ends before it starts (hold_wait: one relaxed load when
 * there is none).
 * An expired lease (DESIGN.md, "Cut-off of an expired consumer"): every
 * call fails with -RMP_ELEASE once the lease is known gone (the
 * coordinator said so, a renewal was refused, or a far side refused us:
 * rmp_data_lease_check: two relaxed-or-acquire atomic loads per call,
 * the test switch and the pool's expired flag), and no token is
 * minted for it any more. A lease merely unconfirmed (a coordinator
 * stalled past it) refuses nothing here: the data path needs no
 * coordinator CPU. That check is a courtesy, not the protection: the
 * coordinator has the metadata listener and every donor tear this
 * client's queue pairs down and refuse its tokens, so a call that
 * slipped past the check (the process stopped between check and post)
 * fails at the far side; that failure becomes -RMP_ELEASE when the
 * lease is gone or unconfirmed (rmp_data_lease_lost). RMPOOL_TEST_NO_LEASE_CHECK=1
 * (tests only) turns the local checks off, so that a test sees the far
 * side refuse.
 *
 * Liveness: a transfer is refused (-EINVAL) unless its handle's block is
 * live. The blocks this process allocated and has not freed are in a
 * local set (liveset.h) and cost nothing to check; any other handle (a
 * block another process allocated, or a stray one) is asked of the
 * shared metadata first (rmp_buddy_is_live: one RDMA READ, and a no-op
 * CAS to confirm a no), one more round trip before the data moves. Not
 * seen: a block of this process's set freed by another process; until
 * this process frees it too, its transfers go through.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "data.h"

#define TOKEN_TTL_MS (24ull * 3600 * 1000)

static _Atomic unsigned next_shard;
static _Thread_local unsigned my_shard_plus1;

static unsigned my_shard(void)
{
	if (my_shard_plus1 == 0)
		my_shard_plus1 = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % RMP_DATA_SHARDS + 1;
	return my_shard_plus1 - 1;
}

/* This thread's engine context for reading (a liveness check writes no
 * record, so it needs no lock, and an abandoned context reads as well). */
static struct rmp_buddy_ctx *my_ctx(struct rmp_data *d)
{
	return &d->shards[my_shard()].ctx;
}

/* An engine context for an allocation or a free, locked: this thread's
 * shard, or another of the lease's while this one's slot is abandoned
 * (shard.h); give it back with ctx_give. Requires d->meta_rw for reading.
 * 0; -EAGAIN (the detail recorded) when every shard is abandoned and none
 * was reset within the RDMA bound; a store error. */
static int ctx_take(rmp_pool *p, struct rmp_data *d, const char *what, struct rmp_data_shard **out)
{
	int rc = rmp_shards_take(&d->sh, my_shard(), (unsigned)d->opts.timeout_ms, out);
	if (rc == -EAGAIN)
		return rmp_client_fail(p->c, rc, "%s: pool %s: all %u engine contexts gave their owner-record "
				       "slots up after RDMA errors mid-operation, and the coordinator reset none "
				       "within %d ms (try again)", what, p->name, RMP_DATA_SHARDS, d->opts.timeout_ms);
	return rc;
}

/* After the engine ran on a taken shard: a store error leaves it FAILED
 * (its slot is abandoned once the store works again). */
static void ctx_give(struct rmp_data *d, struct rmp_data_shard *sh, int rc)
{
	rmp_shards_give(&d->sh, sh, rc);
}

/* rdma_cm setup needs the far side's CPU (it accepts the connection); a
 * loaded host may miss one bounded wait. A refusal (-ECONNREFUSED: a bad
 * token; -ESRCH: nobody listens) is final; a timeout is worth one more
 * try - within the same bound: the first attempt gets two thirds of it,
 * the second what is left (bound.h), so a stopped donor costs
 * rdma_timeout_ms, not twice that. */
int rmp_data_connect(const char *host, uint16_t port, const void *tok, uint8_t len,
		     const struct rmp_rdma_opts *o, rmp_rdma_conn **out)
{
	uint64_t deadline = rmp_deadline_ms((uint64_t)o->timeout_ms);
	struct rmp_rdma_opts first = *o;
	first.timeout_ms = (int)rmp_bound_first_try_ms((unsigned)o->timeout_ms);

	int rc = rmp_rdma_connect(host, port, tok, len, &first, out);
	int left = (int)rmp_ms_left(deadline);
	if (rc == -ETIMEDOUT && left > 0) {
		struct rmp_rdma_opts second = *o;
		second.timeout_ms = left;
		rc = rmp_rdma_connect(host, port, tok, len, &second, out);
	}
	return rc;
}

/* The local checks, unless a test turned them off (read once). */
static bool lease_checks_on(void)
{
	static _Atomic int on = -1;
	int v = atomic_load_explicit(&on, memory_order_relaxed);
	if (v < 0) {
		const char *e = getenv("RMPOOL_TEST_NO_LEASE_CHECK");
		v = !(e && e[0] == '1');
		atomic_store_explicit(&on, v, memory_order_relaxed);
	}
	return v;
}

/* Whether the pool's lease is known gone: the coordinator said so, a
 * renewal was refused, or a far side refused us as cut off. */
static bool lease_known_gone(rmp_pool *p)
{
	return atomic_load_explicit(&p->expired_flag, memory_order_acquire);
}

/* After a failure: is the lease gone, or unconfirmed for its time to
 * live while the coordinator is not away? Then the failure is taken for
 * the far side's cut-off and the pool is known gone from now on. */
static bool lease_probably_gone(rmp_pool *p)
{
	if (lease_known_gone(p))
		return true;
	uint64_t until = atomic_load_explicit(&p->lease_until_ms, memory_order_acquire);
	pthread_mutex_lock(&p->c->lock);
	bool gone = !p->c->away && (p->expired || p->unconfirmed ||
				    (until != UINT64_MAX && rmp_mono_ms() >= until));
	if (gone) {
		if (!p->expired || !p->expired_text[0])
			snprintf(p->expired_text, sizeof(p->expired_text),
				 "lease %llu not confirmed for %u ms, and refused at the far side",
				 (unsigned long long)p->lease_id, p->ttl_ms);
		rmp_pool_expire_locked(p);
	}
	pthread_mutex_unlock(&p->c->lock);
	return gone;
}

/* -RMP_ELEASE with the reason for rmp_last_error(). */
static int lease_fail(rmp_pool *p, const char *what)
{
	char why[sizeof(p->expired_text)];
	pthread_mutex_lock(&p->c->lock);
	snprintf(why, sizeof(why), "%s", p->expired_text);
	pthread_mutex_unlock(&p->c->lock);
	return rmp_client_fail(p->c, -RMP_ELEASE, "%s: pool %s: %s (cut off: close the pool, connect again to attach)",
			       what, p->name, why[0] ? why : "its lease expired");
}

int rmp_data_lease_check(rmp_pool *p, const char *what)
{
	if (!lease_checks_on() || !lease_known_gone(p))
		return 0;
	return lease_fail(p, what);
}

int rmp_data_lease_lost(rmp_pool *p, int rc, const char *what)
{
	if (rc >= 0 || rc == -EINVAL || rc == -RMP_ELEASE || !lease_probably_gone(p))
		return rc;
	return lease_fail(p, what);
}

int rmp_data_token(rmp_pool *p, enum rmp_wire_token_kind kind, uint32_t target, uint8_t *out)
{
	/* None for a client whose lease is gone: it would be refused anyway
	 * (the far sides cut it off), and trying costs a connect. */
	int rc = rmp_data_lease_check(p, "RDMA connection");
	if (rc)
		return rc;
	/* Minted under the generation of our control connection: a coordinator
	 * (or donor) that knows a newer one refuses it (DESIGN.md, "Generations"). */
	struct rmp_wire_token t = { .kind = (uint8_t)kind, .target_id = target,
				    .client_id = p->c->session_id, .expires_ms = rmp_wall_ms() + TOKEN_TTL_MS,
				    .generation = (uint16_t)atomic_load_explicit(&p->c->generation,
										 memory_order_acquire) };
	return rmp_auth_token_make(rmp_client_key(p->c), &t, out);
}

void rmp_data_close(rmp_pool *p)
{
	struct rmp_data *d = p->data;

	if (!d)
		return;
	rmp_async_destroy(d->async);
	/* The small-block cache's chunks go back while the engine is up
	 * (carved handles die with the pool). */
	if (d->cache_ready)
		(void)rmp_cache_destroy(&d->cache);
	d->cache_ready = false;
	/* Buffers still registered on this pool: their MRs go before the
	 * connections (and PDs) they were made on. */
	rmp_buffer_drop_pool(p);
	/* An expired pool's metadata connection is cut at the far side:
	 * flushing its queued count hints would only wait out the RDMA
	 * bound (the reclaim repairs counts). */
	bool failed = d->meta && (rmp_rdma_conn_failed(d->meta) || rmp_client_away(p->c) ||
				  atomic_load_explicit(&p->expired_flag, memory_order_acquire));
	if (d->store && failed)
		rmp_store_rdma_abandon(d->store); /* nothing more reaches a failed one */
	else if (d->store)
		rmp_store_rdma_destroy(d->store); /* sends what waits (count hints) */
	if (d->meta)
		rmp_rdma_close(d->meta);
	pthread_rwlock_destroy(&d->meta_rw);
	rmp_shards_destroy(&d->sh);
	for (unsigned i = 0; i < d->ndonors; i++) {
		struct rmp_data_donor *dn = &d->donors[i];
		if (dn->bounce_mr)
			ibv_dereg_mr(dn->bounce_mr);
		free(dn->bounce);
		if (dn->conn)
			rmp_rdma_close(dn->conn);
		pthread_mutex_destroy(&dn->lock);
	}
	free(d->donors);
	rmp_route_free(&d->route);
	rmp_liveset_destroy(&d->live);
	free(d);
	p->data = NULL;
}

static enum rmp_rdma_wait wait_mode(const rmp_client *c)
{
	int m = c->opts.wait_mode;
	if (m == RMP_WAIT_DEFAULT) {
		const char *e = getenv("RMPOOL_WAIT");
		m = !e ? RMP_WAIT_ADAPTIVE : !strcmp(e, "poll") ? RMP_WAIT_POLL
			: !strcmp(e, "event") ? RMP_WAIT_EVENT : RMP_WAIT_ADAPTIVE;
	}
	return m == RMP_WAIT_POLL ? RMP_RDMA_WAIT_POLL : m == RMP_WAIT_EVENT ? RMP_RDMA_WAIT_EVENT
									  : RMP_RDMA_WAIT_ADAPTIVE;
}

/* The parts that need no network: the donor array in the table's order
 * (a donor's index is its slot in the segment index), the index, the
 * async queue. */
static int data_init_local(rmp_pool *p, struct rmp_data *d, unsigned timeout_ms)
{
	const struct rmp_wire_segtab *st = &p->segtab;
	int rc;

	d->opts = (struct rmp_rdma_opts){ .timeout_ms = (int)timeout_ms, .wait = wait_mode(p->c) };
	d->donors = calloc(st->n_donors ? st->n_donors : 1, sizeof(*d->donors));
	if (!d->donors)
		return -ENOMEM;
	for (unsigned i = 0; i < st->n_donors; i++) {
		d->donors[i].donor_id = st->donors[i].donor_id;
		d->donors[i].ep = st->donors[i].endpoint;
		pthread_mutex_init(&d->donors[i].lock, NULL);
		d->ndonors++;
	}
	if ((rc = rmp_route_build(&d->route, st)) != 0)
		return rc;
	atomic_store_explicit(&d->lost_gen, UINT64_MAX, memory_order_relaxed);
	return rmp_async_create(&d->async);
}

/* The metadata region of the pool's current table: connect, check its
 * header against the segment table (and, re-opening, against the
 * geometry the engine runs with), learn the device's atomic byte order.
 * Sets d->meta, d->store, d->meta_epoch; *g gets the geometry. */
static int meta_connect(rmp_pool *p, struct rmp_data *d, struct rmp_buddy_geom *g)
{
	const struct rmp_wire_segtab *st = &p->segtab;
	struct rmp_wire_region meta;
	struct rmp_wire_endpoint ep;
	uint8_t tok[RMP_AUTH_TOKEN_LEN];
	uint64_t hdr[RMP_BUDDY_HDR_WORDS];
	int rc;

	if (rmp_client_away(p->c) || atomic_load_explicit(&p->resyncing, memory_order_acquire))
		return rmp_client_fail_away(p->c, "metadata connection");
	rmp_pool_meta_get(p, &meta, &ep, &d->meta_epoch);
	rc = rmp_data_token(p, RMP_TOKEN_METADATA, p->pool_id, tok);
	if (rc)
		return rc;
	rc = rmp_data_connect(ep.host, ep.port, tok, sizeof(tok), &d->opts, &d->meta);
	if (rc)
		return rmp_client_fail(p->c, rc, "metadata region at %s:%u: %s", ep.host, ep.port,
				       rmp_strerror(rc));
	if (rmp_rdma_conn_device(d->meta)->atomic_cap == IBV_ATOMIC_NONE)
		return rmp_client_fail(p->c, -EOPNOTSUPP, "the RDMA device has no atomics: the allocator needs them");
	rc = rmp_store_rdma_create(d->meta, meta.addr, meta.rkey, meta.len / 8, &d->store);
	if (rc)
		return rc;
	/* The header says how the region was formatted; it must agree with
	 * the segment table (a mismatch is a coordinator bug, not ours to
	 * paper over). */
	struct rmp_wop op;
	rmp_wop_load(&op, 0, RMP_BUDDY_HDR_WORDS, hdr);
	rc = rmp_store_rdma_base(d->store)->ops->exec(rmp_store_rdma_base(d->store), &op, 1);
	if (rc)
		return rc;
	rc = rmp_buddy_geom_from_header(g, hdr, &d->usable);
	if (rc || g->max_order != st->space_log2 || g->min_order != st->min_block_log2 ||
	    g->total_words * 8 > meta.len)
		return rmp_client_fail(p->c, -EPROTO, "the metadata region does not match the segment table");
	/* Atomic replies: learn the device's byte order once, on the magic
	 * word (which is never a palindrome and never changes). */
	return rmp_rdma_probe_atomic_order(d->meta, meta.addr, meta.rkey);
}

/* The metadata connection and store go (before a new one, or on a failed
 * setup). */
static void meta_drop(struct rmp_data *d)
{
	if (d->store)
		rmp_store_rdma_abandon(d->store);
	if (d->meta)
		rmp_rdma_close(d->meta);
	d->store = NULL;
	d->meta = NULL;
}

static int cache_setup(rmp_pool *p, struct rmp_data *d);

/* Whether this process keeps owner records (RMPOOL_TEST_NO_RECORDS=1:
 * not, for measurements only - an expired consumer's untagged blocks
 * look like garbage to the coordinator's reclaim, so a consumer without
 * records must never share a pool that reclaims). */
static bool records_wanted(void)
{
	static int on = -1;

	if (on < 0) {
		const char *e = getenv("RMPOOL_TEST_NO_RECORDS");
		on = !(e && strcmp(e, "1") == 0);
	}
	return on;
}

/* Each shard's context keeps owner records in the lease's slots: slot
 * slot_base + s, tag id lease_id * RMP_DATA_SHARDS + s (DESIGN.md,
 * "Reclaim of an expired consumer"), so that the coordinator can tell this lease's blocks from
 * everyone else's if it dies. At setup and after a metadata reopen (the
 * same lease, so the same slots); a shard whose slot is abandoned records
 * again only once the coordinator reset it (shard.h). */
static int data_records(rmp_pool *p, struct rmp_data *d)
{
	if (p->slot_base == RMP_WIRE_NO_SLOT || d->b.g.slots == 0 || !records_wanted())
		return 0;
	int rc = rmp_shards_record(&d->sh, p->slot_base, p->lease_id * RMP_DATA_SHARDS);
	if (rc)
		return rmp_client_fail(p->c, -EPROTO, "pool %s: owner-record slots %u.. given, the region has %u",
				       p->name, p->slot_base, d->b.g.slots);
	return 0;
}

/* First setup: connect, then start the engine and its shards. */
static int data_init_meta(rmp_pool *p, struct rmp_data *d)
{
	struct rmp_buddy_geom g;
	int rc = meta_connect(p, d, &g);
	if (rc)
		return rc;
	rmp_buddy_init(&d->b, &g, rmp_store_rdma_base(d->store));
	rmp_shards_start(&d->sh, &d->b, p->c->session_id);
	if ((rc = data_records(p, d)) != 0)
		return rc;
	return cache_setup(p, d);
}

/* Requires d->meta_rw for writing. The metadata connection again, to the
 * pool's current table: after a coordinator restart (a new key), or
 * after an RDMA error on it. The geometry must be the one the engine
 * runs with; the word caches start empty (words may have changed while
 * we were away, and a cached word is only worth a guess). */
static int meta_reopen(rmp_pool *p, struct rmp_data *d)
{
	struct rmp_buddy_geom g;

	meta_drop(d);
	int rc = meta_connect(p, d, &g);
	if (rc == 0 && (g.max_order != d->b.g.max_order || g.min_order != d->b.g.min_order ||
			g.total_words != d->b.g.total_words))
		rc = rmp_client_fail(p->c, -EPROTO, "pool %s: the metadata region came back with another geometry",
				     p->name);
	if (rc) {
		meta_drop(d);
		atomic_store_explicit(&d->meta_broken, true, memory_order_release);
		return rc;
	}
	d->b.store = rmp_store_rdma_base(d->store);
	for (unsigned s = 0; s < RMP_DATA_SHARDS; s++)
		rmp_buddy_ctx_cache(&d->shards[s].ctx, d->shards[s].words, RMP_SHARD_WORDS_CACHED);
	if ((rc = data_records(p, d)) != 0) {
		meta_drop(d);
		atomic_store_explicit(&d->meta_broken, true, memory_order_release);
		return rc;
	}
	/* A shard whose operation failed in the middle gives its slot up
	 * now that the store works (a failure here is retried by its next
	 * use). */
	(void)rmp_shards_abandon_failed(&d->sh);
	atomic_store_explicit(&d->meta_broken, false, memory_order_release);
	d->meta_reopens++;
	return 0;
}

/* POOL_HOLD (client.c): a reclaim wants a quiet snapshot of the pool's
 * metadata, so an allocation or free waits until the hold ends (at most
 * RMP_WIRE_HOLD_MAX_MS) before it starts; one that is on its way
 * finishes. No hold: one relaxed load. */
static void hold_wait(rmp_pool *p)
{
	uint64_t until = atomic_load_explicit(&p->hold_until_ms, memory_order_relaxed);
	if (until == 0)
		return;
	uint64_t now = rmp_mono_ms();
	if (now >= until) {
		(void)atomic_compare_exchange_strong_explicit(&p->hold_until_ms, &until, 0, memory_order_relaxed,
							      memory_order_relaxed);
		return;
	}
	uint64_t ms = until - now;
	if (ms > RMP_WIRE_HOLD_MAX_MS)
		ms = RMP_WIRE_HOLD_MAX_MS;
	(void)poll(NULL, 0, (int)ms);
	atomic_fetch_add_explicit(&p->hold_waits, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->hold_wait_ms, ms, memory_order_relaxed);
}

/* Before any use of the metadata connection: -RMP_EAWAY at once while
 * the coordinator is away or the pool's table is being fetched again;
 * re-opens the connection if the table moved on or it failed. 0 with
 * d->meta_rw held for reading (meta_leave releases it). */
static int meta_enter(rmp_pool *p, struct rmp_data *d, const char *what)
{
	int lrc = rmp_data_lease_check(p, what);
	if (lrc)
		return lrc;
	for (unsigned tries = 0;; tries++) {
		if (rmp_client_away(p->c) || atomic_load_explicit(&p->resyncing, memory_order_acquire))
			return rmp_client_fail_away(p->c, what);
		pthread_rwlock_rdlock(&d->meta_rw);
		uint64_t want = atomic_load_explicit(&p->meta_epoch, memory_order_acquire);
		if (d->meta && d->meta_epoch == want && !atomic_load_explicit(&d->meta_broken, memory_order_acquire))
			return 0;
		pthread_rwlock_unlock(&d->meta_rw);
		if (tries == 2)
			return rmp_client_fail(p->c, -EAGAIN, "%s: the pool's segment table keeps changing", what);
		pthread_rwlock_wrlock(&d->meta_rw);
		int rc = 0;
		if (!d->meta || d->meta_epoch != atomic_load_explicit(&p->meta_epoch, memory_order_acquire) ||
		    atomic_load_explicit(&d->meta_broken, memory_order_acquire))
			rc = meta_reopen(p, d);
		pthread_rwlock_unlock(&d->meta_rw);
		if (rc)
			return rmp_data_lease_lost(p, rc, what); /* refused as cut off? */
	}
}

/* A coordinator that dies ends its metadata connections (its kernel
 * disconnects them, rdma.c notices at once) as it ends the control
 * connection; the I/O thread may take a moment longer to see the latter.
 * How long a failed metadata operation waits for the client to be away,
 * so that it says -RMP_EAWAY as it did when it ran into the RDMA timeout. */
#define META_AWAY_GRACE_MS 500u
#define META_AWAY_STEP_MS 10u

/* After the engine ran: releases d->meta_rw. An error that is not the
 * engine's own answer (ENOMEM, EINVAL, EAGAIN) came from the connection:
 * it is marked for re-opening, and while the coordinator is away the
 * caller gets -RMP_EAWAY (the operation may or may not have landed). */
static int meta_leave(rmp_pool *p, struct rmp_data *d, int rc, const char *what)
{
	bool conn_failed = rc < 0 && rc != -ENOMEM && rc != -EINVAL && rc != -EAGAIN &&
			   d->meta && rmp_rdma_conn_failed(d->meta);
	bool reset = conn_failed && rmp_rdma_conn_error(d->meta) == -ECONNRESET;
	pthread_rwlock_unlock(&d->meta_rw);
	if (!conn_failed)
		return rc;
	atomic_store_explicit(&d->meta_broken, true, memory_order_release);
	for (unsigned t = 0; reset && !rmp_client_away(p->c) && t < META_AWAY_GRACE_MS; t += META_AWAY_STEP_MS)
		(void)poll(NULL, 0, (int)META_AWAY_STEP_MS);
	if (rmp_client_away(p->c))
		return rmp_client_fail_away(p->c, what);
	return rmp_data_lease_lost(p, rc, what); /* cut off at the far side? */
}

/* ctx_take failed inside meta_enter/meta_leave: the lock goes, and the
 * caller returns this (-EAGAIN with ctx_take's detail, or a store
 * error as meta_leave sees it). */
static int take_failed(rmp_pool *p, struct rmp_data *d, int rc, const char *what)
{
	if ((rc = meta_leave(p, d, rc, what)) == -EAGAIN || rc == -RMP_EAWAY || rc == -RMP_ELEASE)
		return rc;
	return rmp_client_fail(p->c, rc, "%s: metadata: %s", what, rmp_strerror(rc));
}

/* ---- donors out of service (DESIGN.md, "Donor death") ---- */

/* The pool's table marks donors lost that d does not know of yet (a
 * push came, client.c): their slots leave service here. One thread does
 * it per change (the CAS); the others go on. */
static void data_sync_lost(rmp_pool *p, struct rmp_data *d)
{
	uint64_t want = atomic_load_explicit(&p->lost_gen, memory_order_acquire);
	uint64_t have = atomic_load_explicit(&d->lost_gen, memory_order_acquire);

	if (have == want || !atomic_compare_exchange_strong(&d->lost_gen, &have, want))
		return;
	char why[RMP_WIRE_TEXT_MAX + 8];
	pthread_mutex_lock(&p->c->lock);
	snprintf(why, sizeof(why), "lost: %s", p->lost_note[0] ? p->lost_note : "taken out of service");
	bool lost[RMP_WIRE_MAX_DONORS];
	unsigned n = d->ndonors < p->segtab.n_donors ? d->ndonors : p->segtab.n_donors;
	for (unsigned i = 0; i < n; i++)
		lost[i] = p->segtab.donors[i].state == RMP_DONOR_LOST;
	pthread_mutex_unlock(&p->c->lock);
	for (unsigned i = 0; i < n; i++)
		if (lost[i] && !atomic_load(&d->donors[i].lost))
			rmp_data_donor_lost(d, i, why);
}

/* Whether any byte of block [off, off + 2^order) lies on a donor out of
 * service. */
static bool block_on_lost(const struct rmp_data *d, uint64_t off, unsigned order)
{
	const struct rmp_route *r = &d->route;
	uint64_t first = off >> r->seg_log2, last = (off + (1ull << order) - 1) >> r->seg_log2;

	for (uint64_t s = first; s <= last && s < r->n_segments; s++) {
		uint32_t slot = r->slot[s];
		if (slot != RMP_ROUTE_NO_SLOT && atomic_load(&d->donors[slot].lost))
			return true;
	}
	return false;
}

/* How many blocks on lost donors one rmp_alloc sets aside before it
 * gives up (the coordinator's retire, self.c, normally leaves none). */
#define ALLOC_LOST_TRIES 64u

/* ---- the small-block cache's chunks: blocks of the shared engine ---- */

static int cache_claim(void *arg, unsigned order, uint64_t *off)
{
	rmp_pool *p = arg;
	struct rmp_data *d = p->data;
	hold_wait(p);
	int rc = meta_enter(p, d, "small-block cache: claiming a chunk");
	if (rc)
		return rc;
	struct rmp_data_shard *sh;
	if ((rc = ctx_take(p, d, "small-block cache: claiming a chunk", &sh)) == 0) {
		rc = rmp_buddy_alloc(&d->b, &sh->ctx, order, off);
		ctx_give(d, sh, rc);
	}
	return meta_leave(p, d, rc, "small-block cache: claiming a chunk");
}

static int cache_release(void *arg, uint64_t off, unsigned order)
{
	rmp_pool *p = arg;
	struct rmp_data *d = p->data;
	hold_wait(p);
	int rc = meta_enter(p, d, "small-block cache: giving a chunk back");
	if (rc)
		return rc;
	/* A chunk on a lost donor stays out of service (RESERVED). */
	struct rmp_data_shard *sh;
	if ((rc = ctx_take(p, d, "small-block cache: giving a chunk back", &sh)) != 0)
		return meta_leave(p, d, rc, "small-block cache: giving a chunk back");
	if (block_on_lost(d, off, order))
		rc = rmp_buddy_free_retired(&d->b, &sh->ctx, off, order);
	else
		rc = rmp_buddy_free(&d->b, &sh->ctx, off, order);
	ctx_give(d, sh, rc);
	return meta_leave(p, d, rc, "small-block cache: giving a chunk back");
}

/* The cache exists once the engine runs, if the pool's space holds a few
 * chunks; it carves only once asked (rmp_pool_set_small_cache or
 * RMPOOL_SMALL_CACHE). */
static int cache_setup(rmp_pool *p, struct rmp_data *d)
{
	const struct rmp_buddy_geom *g = &d->b.g;
	const struct rmp_cache_source src = { .claim = cache_claim, .release = cache_release, .arg = p };

	if (g->max_order < RMP_CACHE_CHUNK_ORDER + 2 || g->min_order >= RMP_CACHE_CHUNK_ORDER)
		return 0;
	unsigned top = 31 - (unsigned)__builtin_clz(RMP_SMALL_CACHE_MAX);
	if (top < g->min_order)
		return 0;
	int rc = rmp_cache_init(&d->cache, g->min_order, top, RMP_CACHE_CHUNK_ORDER, &src);
	if (rc)
		return rc;
	d->cache_ready = true;
	const char *e = getenv("RMPOOL_SMALL_CACHE");
	uint64_t max = 0;
	if (e && *e && rmp_config_parse_size(e, &max) == 0 && max > 0) {
		unsigned o;
		if (max > RMP_SMALL_CACHE_MAX)
			max = RMP_SMALL_CACHE_MAX;
		if (rmp_buddy_order_for(g, max, &o) == 0)
			atomic_store_explicit(&d->cache_order, o, memory_order_release);
	}
	return 0;
}

int rmp_pool_set_small_cache(rmp_pool *p, uint64_t max_size)
{
	struct rmp_data *d;
	unsigned o = 0;
	int rc;

	if (max_size > RMP_SMALL_CACHE_MAX)
		return rmp_data_bad_arg(p, "rmp_pool_set_small_cache: at most 64 KiB");
	if ((rc = rmp_data_of(p, &d)) != 0)
		return rc;
	if (max_size && !d->cache_ready)
		return rmp_client_fail(p->c, -EOPNOTSUPP,
				       "rmp_pool_set_small_cache: the pool's space is too small for 1 MiB chunks");
	if (max_size && (rc = rmp_buddy_order_for(&d->b.g, max_size, &o)) != 0)
		return rc;
	atomic_store_explicit(&d->cache_order, o, memory_order_release);
	return 0;
}

int rmp_pool_small_cache_stats(rmp_pool *p, struct rmp_small_cache_stats *out)
{
	struct rmp_small_cache_stats s = { 0 };
	struct rmp_cache_counts k = { 0 };
	struct rmp_data *d;
	int rc;

	if (!out || out->size < sizeof(size_t))
		return rmp_data_bad_arg(p, "rmp_pool_small_cache_stats: set out->size");
	if ((rc = rmp_data_of(p, &d)) != 0)
		return rc;
	if (d->cache_ready)
		rmp_cache_counts(&d->cache, &k);
	unsigned o = atomic_load_explicit(&d->cache_order, memory_order_acquire);
	s = (struct rmp_small_cache_stats){
		.max_size = o ? 1ull << o : 0,
		.carved_allocs = k.carved_allocs, .carved_frees = k.carved_frees,
		.chunks_claimed = k.chunks_claimed, .chunks_released = k.chunks_released,
		.chunks_held = k.chunks_held, .bytes_held = k.bytes_held,
		.carved_live = k.carved_live, .carved_live_bytes = k.carved_live_bytes,
	};
	size_t n = out->size < sizeof(s) ? out->size : sizeof(s);
	s.size = n;
	memcpy(out, &s, n);
	return 0;
}

/* A handle that the pool's metadata says is no block: is it inside a
 * live chunk of some process's small-block cache? 1 (yes: -RMP_ECACHED
 * is the honest answer), 0, or a store error. One more round trip, on
 * the error path only. Requires d->meta_rw for reading. */
static int in_live_chunk(struct rmp_data *d, uint64_t start, unsigned order)
{
	if (order >= RMP_CACHE_CHUNK_ORDER || d->b.g.max_order < RMP_CACHE_CHUNK_ORDER)
		return 0;
	uint64_t chunk = start & ~((1ull << RMP_CACHE_CHUNK_ORDER) - 1);
	return rmp_buddy_is_live(&d->b, my_ctx(d), chunk, RMP_CACHE_CHUNK_ORDER);
}

static int data_open(rmp_pool *p, unsigned timeout_ms)
{
	struct rmp_data *d = aligned_alloc(alignof(struct rmp_data_shard), sizeof(*d));
	int rc;

	if (!d)
		return -ENOMEM;
	memset(d, 0, sizeof(*d));
	rmp_liveset_init(&d->live);
	pthread_rwlock_init(&d->meta_rw, NULL);
	rmp_shards_init(&d->sh, d->shards);
	p->data = d;
	if ((rc = data_init_local(p, d, timeout_ms)) != 0 || (rc = data_init_meta(p, d)) != 0) {
		meta_drop(d);
		rmp_data_close(p);
	}
	return rc;
}

int rmp_data_bad_arg(const rmp_pool *p, const char *what)
{
	return rmp_client_fail(p ? p->c : NULL, -EINVAL, "%s", what);
}

int rmp_data_of(rmp_pool *p, struct rmp_data **out)
{
	int rc = 0;

	*out = NULL;
	if (!p)
		return rmp_data_bad_arg(p, "NULL pool");
	pthread_mutex_lock(&p->data_lock);
	if (!p->data) {
		unsigned t = p->c->opts.rdma_timeout_ms ? p->c->opts.rdma_timeout_ms : 10000;
		rc = data_open(p, t);
		rc = rc ? rmp_data_lease_lost(p, rc, "data path setup") : 0; /* refused as cut off? */
	}
	*out = p->data;
	pthread_mutex_unlock(&p->data_lock);
	return rc;
}

int rmp_alloc(rmp_pool *p, uint64_t size, rmp_addr *out)
{
	struct rmp_data *d;
	unsigned order;
	uint64_t off;
	int rc;

	if (!out || !p)
		return rmp_data_bad_arg(p, out ? "rmp_alloc: NULL pool" : "rmp_alloc: NULL result pointer");
	*out = 0;
	if (size == 0)
		return rmp_client_fail(p->c, -EINVAL, "rmp_alloc: size 0");
	if ((rc = rmp_data_of(p, &d)) != 0)
		return rc;
	data_sync_lost(p, d);
	if ((rc = rmp_data_lease_check(p, "rmp_alloc")) != 0)
		return rc;
	if (size == 0 || size > d->usable)
		return rmp_client_fail(p->c, -EINVAL, "rmp_alloc: size %llu is not in [1, %llu]",
				       (unsigned long long)size, (unsigned long long)d->usable);
	rc = rmp_buddy_order_for(&d->b.g, size, &order);
	if (rc)
		return rc;
	unsigned co = atomic_load_explicit(&d->cache_order, memory_order_acquire);
	if (co && order <= co) {
		/* From the small-block cache; if it cannot claim a chunk (the
		 * pool has no free 1 MiB block), the engine may still find a
		 * small block: no ENOMEM the pool would not give. */
		if ((rc = rmp_cache_alloc(&d->cache, order, &off)) == 0 && block_on_lost(d, off, order)) {
			/* A chunk on a lost donor: back to it, and from the
			 * engine instead (the chunk goes when it empties). */
			(void)rmp_cache_free(&d->cache, off, order);
			rc = -ENOMEM;
		} else if (rc == 0) {
			*out = RMP_ADDR_MAKE(order, off);
			(void)rmp_liveset_add(&d->live, *out);
			return 0;
		}
		if (rc != -ENOMEM && rc != -EAGAIN)
			return rc == -RMP_EAWAY || rc == -RMP_ELEASE ? rc : rmp_client_fail(p->c, rc, "rmp_alloc: small-block cache: %s",
								      rmp_strerror(rc));
	}
	hold_wait(p);
	if ((rc = meta_enter(p, d, "rmp_alloc")) != 0)
		return rc;
	struct rmp_data_shard *sh;
	if ((rc = ctx_take(p, d, "rmp_alloc", &sh)) != 0)
		return take_failed(p, d, rc, "rmp_alloc");
	struct rmp_buddy_ctx *ctx = &sh->ctx;
	rc = rmp_buddy_alloc(&d->b, ctx, order, &off);
	/* A block on a lost donor (the coordinator's retire has not reached
	 * it yet): set aside for good (RESERVED) and another one taken. */
	for (unsigned t = 0; rc == 0 && block_on_lost(d, off, order); t++) {
		int frc = rmp_buddy_free_retired(&d->b, ctx, off, order);
		if (frc < 0 && frc != -EINVAL) {
			rc = frc; /* a store error: the shard fails */
			break;
		}
		rc = t + 1 < ALLOC_LOST_TRIES ? rmp_buddy_alloc(&d->b, ctx, order, &off) : -ENOMEM;
	}
	ctx_give(d, sh, rc);
	if ((rc = meta_leave(p, d, rc, "rmp_alloc")) == -RMP_EAWAY || rc == -RMP_ELEASE)
		return rc;
	if (rc == -ENOMEM)
		return rmp_client_fail(p->c, rc, "rmp_alloc: no free block of %llu bytes",
				       (unsigned long long)(1ull << order));
	if (rc)
		return rmp_client_fail(p->c, rc, "rmp_alloc: metadata: %s", rmp_strerror(rc));
	*out = RMP_ADDR_MAKE(order, off);
	/* Out of memory here only costs the metadata check on transfers. */
	(void)rmp_liveset_add(&d->live, *out);
	return 0;
}

/* Checks the shape of a handle (not whether it is live: that needs the
 * metadata). 0 with the block's order and offset of byte a. */
static int decode(struct rmp_data *d, rmp_addr a, unsigned *order, uint64_t *off)
{
	int o = RMP_ADDR_ORDER(a);
	if (o < (int)d->b.g.min_order || o > (int)d->b.g.max_order)
		return -EINVAL;
	*order = (unsigned)o;
	*off = RMP_ADDR_OFFSET(a);
	if (*off >= (1ull << d->b.g.max_order))
		return -EINVAL;
	return 0;
}

/* rmp_free of a block on a lost donor: its handle is released and the
 * block stays out of service (ALLOC -> RESERVED, never merged), so no
 * allocation lands on the dead donor's memory. A block spanning live and
 * lost segments takes its live part out of service with it. The small-
 * block cache's own blocks go back to their chunk, which goes RESERVED
 * when it empties (cache_release). */
static int free_on_lost(rmp_pool *p, struct rmp_data *d, rmp_addr a, uint64_t off, unsigned order)
{
	int rc;

	if (d->cache_ready && (rc = rmp_cache_free(&d->cache, off, order)) != -ENOENT) {
		if (rc == -EINVAL)
			return rmp_client_fail(p->c, rc, "rmp_free: no live block of %llu bytes at %#llx in this "
					       "process's small-block cache (freed already?)",
					       (unsigned long long)(1ull << order), (unsigned long long)off);
		rmp_liveset_remove(&d->live, a);
		return 0;
	}
	hold_wait(p);
	if ((rc = meta_enter(p, d, "rmp_free")) != 0)
		return rc;
	struct rmp_data_shard *sh;
	if ((rc = ctx_take(p, d, "rmp_free", &sh)) != 0)
		return take_failed(p, d, rc, "rmp_free");
	rmp_liveset_remove(&d->live, a);
	rc = rmp_buddy_free_retired(&d->b, &sh->ctx, off, order);
	ctx_give(d, sh, rc);
	if ((rc = meta_leave(p, d, rc, "rmp_free")) == -RMP_EAWAY)
		return rc;
	if (rc == -EINVAL)
		return rmp_client_fail(p->c, rc, "rmp_free: no live block of %llu bytes at %#llx (freed already?)",
				       (unsigned long long)(1ull << order), (unsigned long long)off);
	if (rc)
		return rmp_client_fail(p->c, rc, "rmp_free: block at %#llx on a lost donor: %s",
				       (unsigned long long)off, rmp_strerror(rc));
	return 0;
}

int rmp_free(rmp_pool *p, rmp_addr a)
{
	struct rmp_data *d;
	unsigned order;
	uint64_t off;
	int rc;

	if (!p || a == 0)
		return rmp_data_bad_arg(p, p ? "rmp_free: handle 0 is never a block" : "rmp_free: NULL pool");
	if ((rc = rmp_data_of(p, &d)) != 0)
		return rc;
	if ((rc = rmp_data_lease_check(p, "rmp_free")) != 0)
		return rc;
	if (decode(d, a, &order, &off) != 0 || (off & ((1ull << order) - 1)) != 0)
		return rmp_client_fail(p->c, -EINVAL, "rmp_free: %#llx is not the handle of a block",
				       (unsigned long long)a);
	data_sync_lost(p, d);
	if (block_on_lost(d, off, order))
		return free_on_lost(p, d, a, off, order);
	if (d->cache_ready) {
		/* A block of our own cache is freed here, with no round trip
		 * (an emptied chunk may go back: its error is not the caller's). */
		rc = rmp_cache_free(&d->cache, off, order);
		if (rc == -EINVAL)
			return rmp_client_fail(p->c, rc, "rmp_free: no live block of %llu bytes at %#llx in this "
					       "process's small-block cache (freed already?)",
					       (unsigned long long)(1ull << order), (unsigned long long)off);
		if (rc != -ENOENT) {
			rmp_liveset_remove(&d->live, a);
			return 0;
		}
	}
	hold_wait(p);
	if ((rc = meta_enter(p, d, "rmp_free")) != 0)
		return rc; /* still live, still in the set: free it again later */
	/* Out of the set first: from now on a transfer on it asks the
	 * metadata, which says "free" as soon as the CAS below lands. A
	 * block this process did not allocate carries another context's
	 * tag: the foreign free locks that tag first, so that neither a
	 * reclaim nor its owner can free it at the same time. */
	struct rmp_data_shard *sh;
	if ((rc = ctx_take(p, d, "rmp_free", &sh)) != 0)
		return take_failed(p, d, rc, "rmp_free"); /* still in the set: free it again later */
	bool mine = rmp_liveset_remove(&d->live, a), doubt = false;
	if (mine) {
		rc = rmp_buddy_free(&d->b, &sh->ctx, off, order);
		/* Cut in the middle by a store error: it may have landed, so
		 * it is not the caller's to retry (the block may be somebody
		 * else's by then); the shard settles it (shard.h). */
		doubt = rmp_shards_give_free(&d->sh, sh, rc, off, order);
	} else {
		rc = rmp_buddy_free_foreign(&d->b, &sh->ctx, off, order);
		ctx_give(d, sh, rc);
	}
	if (rc == -EINVAL && in_live_chunk(d, off, order) == 1)
		rc = -RMP_ECACHED;
	if ((rc = meta_leave(p, d, rc, "rmp_free")) == -RMP_ELEASE)
		return rc;
	if (doubt)
		return 0; /* freed exactly once: by the cut free, or by its settle */
	if (rc == -RMP_EAWAY)
		return rc;
	if (rc == -RMP_ECACHED)
		return rmp_client_fail(p->c, rc, "rmp_free: %#llx lies inside a live 1 MiB chunk of another "
				       "process's small-block cache: only that process can free it",
				       (unsigned long long)a);
	if (rc == -EINVAL)
		return rmp_client_fail(p->c, rc, "rmp_free: no live block of %llu bytes at %#llx (freed already?)",
				       (unsigned long long)(1ull << order), (unsigned long long)off);
	if (rc)
		return rmp_client_fail(p->c, rc, "rmp_free: metadata: %s", rmp_strerror(rc));
	return 0;
}

unsigned rmp_data_settle(rmp_pool *p, unsigned wait_ms)
{
	struct rmp_data *d = p->data;
	unsigned left = 0;

	if (!d || atomic_load_explicit(&d->sh.unsettled, memory_order_relaxed) == 0)
		return 0;
	uint64_t deadline = rmp_deadline_ms(wait_ms);
	for (;;) {
		if (meta_enter(p, d, "rmp_pool_close") == 0) {
			left = rmp_shards_settle(&d->sh, 0);
			(void)meta_leave(p, d, 0, "rmp_pool_close");
		} else
			left = atomic_load_explicit(&d->sh.unsettled, memory_order_relaxed);
		int ms = rmp_ms_left(deadline);
		if (left == 0 || ms <= 0 || atomic_load_explicit(&p->expired_flag, memory_order_acquire))
			return left;
		(void)poll(NULL, 0, ms < 100 ? ms : 100);
	}
}

int rmp_data_range_check(rmp_pool *p, struct rmp_data *d, rmp_addr a, const void *buf, uint64_t len,
			 const char *what, uint64_t *off)
{
	unsigned order;
	int rc;

	if (!buf || len == 0)
		return rmp_client_fail(p->c, -EINVAL, "%s: %s", what, buf ? "zero length" : "NULL buffer");
	data_sync_lost(p, d);
	if ((rc = rmp_data_lease_check(p, what)) != 0)
		return rc;
	if (decode(d, a, &order, off) != 0)
		return rmp_client_fail(p->c, -EINVAL, "%s: %#llx is not a pool address", what, (unsigned long long)a);
	uint64_t in_block = *off & ((1ull << order) - 1);
	if (len > (1ull << order) - in_block)
		return rmp_client_fail(p->c, -EINVAL, "%s: %llu bytes from byte %llu run past the %llu-byte block", what,
				       (unsigned long long)len, (unsigned long long)in_block,
				       (unsigned long long)(1ull << order));
	if (*off + len > d->usable)
		return rmp_client_fail(p->c, -EINVAL, "%s: range past the pool's usable space", what);
	uint64_t start = *off - in_block;
	if (rmp_liveset_has(&d->live, RMP_ADDR_MAKE(order, start)))
		return 0;
	if (d->cache_ready && (rc = rmp_cache_is_live(&d->cache, start, order)) != -ENOENT) {
		if (rc == 1)
			return 0;
		return rmp_client_fail(p->c, -EINVAL, "%s: no live block of %llu bytes at %#llx in this process's "
				       "small-block cache (freed?)", what, (unsigned long long)(1ull << order),
				       (unsigned long long)start);
	}
	if ((rc = meta_enter(p, d, what)) != 0)
		return rc;
	rc = rmp_buddy_is_live(&d->b, my_ctx(d), start, order);
	if (rc == 0 && in_live_chunk(d, start, order) == 1)
		rc = -RMP_ECACHED;
	rc = meta_leave(p, d, rc, what);
	if (rc == -RMP_EAWAY || rc == -RMP_ELEASE)
		return rc;
	if (rc == -RMP_ECACHED)
		return rmp_client_fail(p->c, rc, "%s: %#llx lies inside a live 1 MiB chunk of another process's "
				       "small-block cache: it cannot be checked from here", what,
				       (unsigned long long)a);
	if (rc == 0)
		return rmp_client_fail(p->c, -EINVAL, "%s: no live block of %llu bytes at %#llx (freed, or never allocated)",
				       what, (unsigned long long)(1ull << order), (unsigned long long)start);
	if (rc < 0)
		return rmp_client_fail(p->c, rc, "%s: metadata: %s", what, rmp_strerror(rc));
	return 0;
}

int rmp_data_prepare(rmp_pool *p, rmp_addr a, const void *buf, uint64_t len, const char *what,
		     struct rmp_data **d, uint64_t *off)
{
	int rc;

	if (!p || !buf || len == 0)
		return p ? rmp_client_fail(p->c, -EINVAL, "%s: %s", what, buf ? "zero length" : "NULL buffer") : -EINVAL;
	if ((rc = rmp_data_of(p, d)) != 0)
		return rc;
	return rmp_data_range_check(p, *d, a, buf, len, what, off);
}

int rmp_pool_stats(rmp_pool *p, struct rmp_pool_stats *out)
{
	struct rmp_data *d;
	struct rmp_buddy_stats sum = { 0 }, s;
	int rc;

	if (!out)
		return -EINVAL;
	if ((rc = rmp_data_of(p, &d)) != 0)
		return rc;
	for (unsigned i = 0; i < RMP_DATA_SHARDS; i++) {
		rmp_buddy_stats(&d->shards[i].ctx, &s);
		rmp_buddy_stats_add(&sum, &s);
	}
	*out = (struct rmp_pool_stats){
		.allocs = sum.alloc.calls, .alloc_round_trips = sum.alloc.round_trips,
		.alloc_cas_failed = sum.alloc.cas_fail,
		.alloc_wrs = sum.alloc.loads + sum.alloc.cas_ok + sum.alloc.cas_fail + sum.alloc.faa,
		.frees = sum.free.calls, .free_round_trips = sum.free.round_trips,
		.free_cas_failed = sum.free.cas_fail,
		.free_wrs = sum.free.loads + sum.free.cas_ok + sum.free.cas_fail + sum.free.faa,
	};
	return 0;
}

int rmp_pool_segment_donor(rmp_pool *p, uint64_t segment, uint32_t *donor_id)
{
	if (!p || !donor_id || segment >= p->segtab.n_segments)
		return -EINVAL;
	uint32_t id = p->segtab.segments[segment].donor_id;
	*donor_id = id == RMP_WIRE_SEG_RESERVED ? RMP_NO_DONOR : id;
	return 0;
}
