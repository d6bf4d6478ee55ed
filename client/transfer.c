/*
 * transfer.c - rmp_read/rmp_write: a pool range moved with one-sided RDMA
 * READ and WRITE to the donors, as a pipeline per donor.
 *
 * A transfer asks the routing function (route.c) for the range's pieces:
 * each lies in one segment, is at most RMP_PIECE_MAX bytes (one work
 * request) and names its targets (donor slot, remote address, rkey).
 * Each donor's connection runs a pipeline: up to RMP_DEPTH_MAX pieces in
 * flight, the next one posted as soon as the oldest completes, so the
 * send queue never drains in the middle of a transfer (an RDMA READ loss
 * is then noticed from the next READ's response, not after the ACK
 * timeout; see RMP_RDMA_ACK_TIMEOUT_DEFAULT for the timeout that remains
 * at a tail). One allocation larger than any donor (and any host) is
 * thus read and written as one range. A write goes to every target of a
 * piece, a read comes from its first (today each piece has one).
 *
 * Steps of rmp_transfer:
 *   1. the donors behind the range: one routing call per segment;
 *   2. their locks in slot order (two transfers cannot deadlock); a
 *      donor out of service (-RMP_EDONOR) or in back-off after a timeout
 *      (-ETIMEDOUT) fails the transfer here, at once; the donors that
 *      need a connection (first use, or the last one failed) are
 *      connected all at once, each with a DONOR token for that donor, so
 *      an outage of several costs one bound (bound.h); then each donor's
 *      local key (the bounce buffer's, or the registered buffer's MR on
 *      that donor's PD, made now if needed);
 *   3. the pieces posted, one routing call per piece, reaping the oldest
 *      of a donor's pipeline when it is full;
 *   4. every pipeline drained, also after an error (nothing may land in
 *      a buffer after we return); a connection that broke other than by
 *      a timeout is probed with one short reconnect, which tells a dead
 *      donor (its CM rejects: nobody listens) from a live one; the locks
 *      released.
 *
 * Donor death (DESIGN.md, Failure model): when a donor's process dies
 * its kernel disconnects our connection; rdma.c fails it at once and
 * wakes the transfer waiting on it (-ECONNRESET), the probe of step 4
 * is rejected, and the donor is out of service for this process
 * (rmp_data_donor_lost): that transfer and every later one touching it
 * fail with -RMP_EDONOR naming the donor and its host, with no wait.
 * Blocks wholly on other donors go on. A donor that does not answer (a
 * stopped process, a host gone) costs one bound (rdma_timeout_ms) and
 * then RMP_BOUND_BACKOFF_MS of -ETIMEDOUT at once before it is tried
 * again.
 *
 * rmp_read/rmp_write move data through a registered bounce buffer per
 * donor connection (the caller's memory is not registered): a copy, in
 * exchange for working with any buffer; piece i in flight uses bounce
 * slot i % RMP_DEPTH_MAX, and a read's piece is copied out when it
 * completes. A donor's lock covers its connection, its pipeline and its
 * bounce buffer; it is held until the transfer's pipelines have drained.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "data.h"
#include "debug.h"

/* No lock: a transfer may hold the donor's lock for a whole connect
 * bound, and whoever marks the donor lost (the control connection's
 * thread with a pushed table, a transfer's probe) must not wait for it.
 * The first reason sticks. */
static void donor_mark_lost(struct rmp_data_donor *dn, const char *why)
{
	if (atomic_exchange_explicit(&dn->lost_claimed, true, memory_order_acq_rel))
		return;
	snprintf(dn->lost_why, sizeof(dn->lost_why), "%s", why);
	atomic_store_explicit(&dn->lost, true, memory_order_release);
}

void rmp_data_donor_lost(struct rmp_data *d, unsigned slot, const char *why)
{
	donor_mark_lost(&d->donors[slot], why);
}

int rmp_data_donor_check(rmp_pool *p, const struct rmp_data *d, unsigned slot)
{
	const struct rmp_data_donor *dn = &d->donors[slot];

	if (!atomic_load_explicit(&dn->lost, memory_order_acquire))
		return 0;
	return rmp_client_fail(p->c, -RMP_EDONOR, "donor %u at %s:%u is out of service: %s", dn->donor_id,
			       dn->ep.host, dn->ep.port, dn->lost_why);
}

/* A failed connection is never trusted again (late completions could
 * land in the bounce buffer): it goes, and the registered buffers' MRs on
 * its PD first. Requires dn->lock. */
static void donor_drop_conn_locked(rmp_pool *p, struct rmp_data *d, struct rmp_data_donor *dn)
{
	if (!dn->conn)
		return;
	rmp_buffer_drop_donor_locked(p, (unsigned)(dn - d->donors));
	if (dn->bounce_mr)
		ibv_dereg_mr(dn->bounce_mr);
	dn->bounce_mr = NULL;
	rmp_rdma_close(dn->conn);
	dn->conn = NULL;
}

/* One donor connect, run at once with the others a transfer needs
 * (rmp_bound_parallel): it touches no client state (the detail of a
 * failure is per thread: the transfer's thread records it). */
struct dial {
	const char *host;
	uint16_t port;
	struct rmp_rdma_opts opts;
	uint8_t tok[RMP_AUTH_TOKEN_LEN];
	unsigned slot;
	rmp_rdma_conn *conn;
	int rc;
};

static void dial_run(void *arg)
{
	struct dial *x = arg;

	x->conn = NULL;
	x->rc = rmp_data_connect(x->host, x->port, x->tok, sizeof(x->tok), &x->opts, &x->conn);
}

/* Requires dn->lock. 0: its connection is up; 1: it needs one, and x is
 * ready for dial_run (the failed connection is gone, the token minted);
 * or the error at once: the donor is out of service, or in its back-off
 * after a timeout. */
static int donor_ready_locked(rmp_pool *p, struct rmp_data *d, struct rmp_data_donor *dn, struct dial *x,
			      int timeout_ms)
{
	unsigned slot = (unsigned)(dn - d->donors);
	uint64_t since, left;
	int rc;

	if ((rc = rmp_data_donor_check(p, d, slot)) != 0)
		return rc;
	if (dn->conn && rmp_rdma_conn_check(dn->conn) == 0)
		return 0;
	if ((rc = rmp_bound_backoff_check(&dn->backoff, rmp_mono_ms(), &since, &left)) != 0)
		return rmp_client_fail(p->c, rc, "donor %u at %s:%u did not answer within %d ms %llu ms ago: "
				       "not tried again for %llu ms (back-off)", dn->donor_id, dn->ep.host,
				       dn->ep.port, d->opts.timeout_ms, (unsigned long long)since,
				       (unsigned long long)left);
	donor_drop_conn_locked(p, d, dn);
	if (!dn->bounce && !(dn->bounce = aligned_alloc(4096, RMP_BOUNCE_BYTES)))
		return -ENOMEM;
	*x = (struct dial){ .host = dn->ep.host, .port = dn->ep.port, .opts = d->opts, .slot = slot };
	x->opts.timeout_ms = timeout_ms;
	if ((rc = rmp_data_token(p, RMP_TOKEN_DONOR, dn->donor_id, x->tok)) != 0)
		return rc;
	return 1;
}

/* After dial_run: the connection taken in, or the failure typed. A
 * rejection by the donor's CM for want of a listener (-ESRCH) means its
 * process is gone: the donor is out of service from now on (-RMP_EDONOR).
 * A timeout starts the back-off. Requires dn->lock. */
static int donor_dialed_locked(rmp_pool *p, struct rmp_data *d, struct rmp_data_donor *dn, struct dial *x)
{
	if (x->rc == 0) {
		dn->bounce_mr = ibv_reg_mr(rmp_rdma_conn_pd(x->conn), dn->bounce, RMP_BOUNCE_BYTES,
					   IBV_ACCESS_LOCAL_WRITE);
		if (!dn->bounce_mr) {
			int rc = errno ? -errno : -ENOMEM;
			rmp_rdma_close(x->conn);
			return rc;
		}
		dn->conn = x->conn;
		rmp_bound_backoff_clear(&dn->backoff);
		return 0;
	}
	if (x->rc == -ESRCH) {
		/* The detail names the donor and its host:port already. */
		donor_mark_lost(dn, "its process is gone (the reconnect was rejected: nobody listens on its "
				      "port)");
		return rmp_data_donor_check(p, d, x->slot);
	}
	if (x->rc == -ETIMEDOUT) {
		rmp_bound_backoff_start(&dn->backoff, x->rc, rmp_mono_ms());
		return rmp_client_fail(p->c, x->rc, "donor %u at %s:%u did not answer within %d ms (connect): "
				       "not tried again for %u ms", dn->donor_id, dn->ep.host, dn->ep.port,
				       x->opts.timeout_ms, RMP_BOUND_BACKOFF_MS);
	}
	return rmp_client_fail(p->c, x->rc, "donor %u at %s:%u: %s", dn->donor_id, dn->ep.host, dn->ep.port,
			       rmp_strerror(x->rc));
}

/* Runs the dials and takes their results in (in slot order; the last
 * failure's code and detail are the caller's). Requires the donors'
 * locks. */
static int dial_all_locked(rmp_pool *p, struct rmp_data *d, struct dial *dials, unsigned n)
{
	int rc = 0;

	rmp_bound_parallel(n, dial_run, dials, sizeof(dials[0]));
	for (unsigned k = 0; k < n; k++) {
		int e = donor_dialed_locked(p, d, &d->donors[dials[k].slot], &dials[k]);
		if (e)
			rc = e;
	}
	return rc;
}

/* A donor's connection that broke other than by a timeout (it was reset:
 * the donor's kernel disconnected it; an error completion): is the donor
 * alive? One short reconnect tells: a dead process's port is rejected by
 * its CM at once (the donor is then lost), a live one accepts (the new
 * connection is kept). Anything else leaves the question to the next
 * use. Requires the donors' locks; *lost_rc: -RMP_EDONOR if one was found
 * dead. */
static void probe_broken_locked(rmp_pool *p, struct rmp_data *d, const uint8_t *in_use, unsigned locked,
				int *lost_rc)
{
	unsigned nd = d->ndonors ? d->ndonors : 1;
	struct dial dials[nd];
	unsigned n = 0;

	for (unsigned i = 0; i < locked; i++) {
		struct rmp_data_donor *dn = &d->donors[i];
		if (!in_use[i] || !dn->conn)
			continue;
		int why = rmp_rdma_conn_check(dn->conn);
		if (why == 0 || why == -ETIMEDOUT)
			continue;
		int r = donor_ready_locked(p, d, dn, &dials[n], (int)RMP_BOUND_PROBE_MS);
		if (r == 1)
			n++;
		else if (r == -RMP_EDONOR)
			*lost_rc = r; /* taken out of service meanwhile (a pushed table) */
	}
	if (n == 0)
		return;
	rmp_bound_parallel(n, dial_run, dials, sizeof(dials[0]));
	for (unsigned k = 0; k < n; k++) {
		struct rmp_data_donor *dn = &d->donors[dials[k].slot];
		if (dials[k].rc == 0 || dials[k].rc == -ESRCH) {
			int e = donor_dialed_locked(p, d, dn, &dials[k]);
			if (e == -RMP_EDONOR)
				*lost_rc = e;
		}
	}
}

/* Reaps at least min completions of donor dn's pipeline (they come back
 * in posting order on its one RC queue pair); a read through the bounce
 * buffer copies each piece to the caller as it completes. Requires the
 * donor's lock. */
static int pipe_reap_locked(rmp_pool *p, struct rmp_data_donor *dn, unsigned min, bool copy_back)
{
	uint64_t ids[RMP_DEPTH_MAX];

	rmp_assert(min >= 1 && min <= dn->head - dn->tail && dn->head - dn->tail <= RMP_DEPTH_MAX);
	int n = rmp_rdma_poll(dn->conn, min, ids, RMP_DEPTH_MAX);
	if (n < 0) {
		/* The connection is failed now (rdma.c marks it): nothing of
		 * it is trusted again, donor_ready_locked replaces it. */
		dn->head = dn->tail = 0;
		if (n == -ETIMEDOUT) {
			rmp_bound_backoff_start(&dn->backoff, n, rmp_mono_ms());
			return rmp_client_fail(p->c, n, "donor %u at %s:%u: no completion within %d ms: not tried "
					       "again for %u ms", dn->donor_id, dn->ep.host, dn->ep.port,
					       p->data->opts.timeout_ms, RMP_BOUND_BACKOFF_MS);
		}
		return rmp_client_fail(p->c, n, "donor %u at %s:%u: %s", dn->donor_id, dn->ep.host, dn->ep.port,
				       rmp_strerror(n));
	}
	rmp_assert((unsigned)n <= dn->head - dn->tail);
	for (int i = 0; i < n; i++) {
		unsigned k = dn->tail++ % RMP_DEPTH_MAX;
		if (copy_back)
			memcpy(dn->user[k], dn->ops[k].local, dn->ops[k].len);
	}
	return 0;
}

/* Posts one piece of n bytes (user: its bytes on our side; reg: user
 * lies in a registered buffer with that lkey) to target t on its donor's
 * pipeline, which must have room. Requires the donor's lock. */
static int pipe_post_locked(rmp_pool *p, struct rmp_data_donor *dn, const struct rmp_route_target *t,
			    uint8_t *user, uint32_t n, bool reg, uint32_t lkey, bool is_read)
{
	rmp_assert(dn->head - dn->tail < RMP_DEPTH_MAX);
	rmp_assert(n > 0 && n <= RMP_PIECE_MAX);
	unsigned k = dn->head % RMP_DEPTH_MAX;
	uint8_t *local = reg ? user : dn->bounce + (size_t)k * RMP_PIECE_MAX;
	if (!is_read && !reg)
		memcpy(local, user, n);
	dn->user[k] = user;
	dn->ops[k] = (struct rmp_rdma_op){ .kind = is_read ? RMP_RDMA_READ : RMP_RDMA_WRITE, .local = local,
					   .lkey = lkey, .len = n, .raddr = t->raddr, .rkey = t->rkey };
	int rc = rmp_rdma_post(dn->conn, &dn->ops[k], 1, dn->head);
	if (rc)
		return rmp_client_fail(p->c, rc, "donor %u at %s:%u: %s", dn->donor_id, dn->ep.host, dn->ep.port,
				       rmp_strerror(rc));
	dn->head++;
	return 0;
}

/* The targets of a piece a transfer posts to: all of them for a write,
 * the first for a read. */
static unsigned targets_used(const struct rmp_route_piece *pc, bool is_read)
{
	return is_read && pc->n_targets > 0 ? 1 : pc->n_targets;
}

/* Step 1: marks in_use[slot] for every donor the range's pieces go to
 * (one routing call per segment: max is the whole range). */
static int mark_donors(rmp_pool *p, struct rmp_data *d, uint64_t off, uint64_t len, bool is_read,
		       uint8_t *in_use)
{
	memset(in_use, 0, d->ndonors ? d->ndonors : 1);
	for (uint64_t pos = 0; pos < len;) {
		struct rmp_route_piece pc;
		if (rmp_route_range(&d->route, off + pos, len - pos, len - pos, &pc) != 0)
			return rmp_client_fail(p->c, -EFAULT, "pool offset %#llx has no donor behind it",
					       (unsigned long long)(off + pos));
		for (unsigned i = 0; i < targets_used(&pc, is_read); i++)
			in_use[pc.target[i].slot] = 1;
		pos += pc.len;
	}
	return 0;
}

/* Step 3: posts every piece of the range; the donors are locked and
 * connected, lkey[slot] is the local key on each. */
static int post_range_locked(rmp_pool *p, struct rmp_data *d, uint64_t off, uint8_t *buf, bool reg,
			     const uint32_t *lkey, const uint8_t *in_use, uint64_t len, bool is_read)
{
	bool copy_back = is_read && !reg;
	int rc = 0;

	for (uint64_t pos = 0; rc == 0 && pos < len;) {
		struct rmp_route_piece pc;
		if (rmp_route_range(&d->route, off + pos, len - pos, RMP_PIECE_MAX, &pc) != 0)
			return rmp_client_fail(p->c, -EFAULT, "pool offset %#llx has no donor behind it",
					       (unsigned long long)(off + pos));
		for (unsigned i = 0; rc == 0 && i < targets_used(&pc, is_read); i++) {
			const struct rmp_route_target *t = &pc.target[i];
			struct rmp_data_donor *dn = &d->donors[t->slot];
			rmp_assert(t->slot < d->ndonors && in_use[t->slot]);
			if (dn->head - dn->tail == RMP_DEPTH_MAX) /* full: the oldest piece, at least */
				rc = pipe_reap_locked(p, dn, 1, copy_back);
			if (rc == 0)
				rc = pipe_post_locked(p, dn, t, buf + pos, (uint32_t)pc.len, reg, lkey[t->slot],
						      is_read);
		}
		pos += pc.len;
	}
	return rc;
}

int rmp_transfer(rmp_pool *p, struct rmp_data *d, uint64_t off, uint8_t *buf, rmp_buffer *reg,
		 uint64_t len, bool is_read)
{
	unsigned nd = d->ndonors ? d->ndonors : 1;
	uint8_t in_use[nd];
	uint32_t lkey[nd];
	bool copy_back = is_read && !reg;
	unsigned locked = 0;
	int rc;

	struct dial dials[nd];
	unsigned ndial = 0;

	if ((rc = mark_donors(p, d, off, len, is_read, in_use)) != 0)
		return rc;
	/* Step 2: lock in slot order; the connects needed all at once (one
	 * outage costs one bound); the lkeys. */
	for (unsigned i = 0; i < d->ndonors && rc == 0; i++) {
		struct rmp_data_donor *dn = &d->donors[i];
		if (!in_use[i])
			continue;
		pthread_mutex_lock(&dn->lock);
		locked = i + 1;
		dn->head = dn->tail = 0;
		rc = donor_ready_locked(p, d, dn, &dials[ndial], d->opts.timeout_ms);
		if (rc == 1) {
			ndial++;
			rc = 0;
		}
	}
	if (rc == 0 && ndial)
		rc = dial_all_locked(p, d, dials, ndial);
	for (unsigned i = 0; i < locked && rc == 0; i++) {
		struct rmp_data_donor *dn = &d->donors[i];
		if (in_use[i] && reg)
			rc = rmp_buffer_mr_locked(p, dn, i, reg, &lkey[i]);
		else if (in_use[i])
			lkey[i] = dn->bounce_mr->lkey;
	}
	if (rc == 0)
		rc = post_range_locked(p, d, off, buf, reg != NULL, lkey, in_use, len, is_read);
	/* Step 4: drain every pipeline, also after an error. */
	for (unsigned i = 0; i < locked; i++) {
		struct rmp_data_donor *dn = &d->donors[i];
		if (!in_use[i] || !dn->conn)
			continue;
		while (dn->head != dn->tail) {
			int e = pipe_reap_locked(p, dn, dn->head - dn->tail, copy_back && rc == 0);
			if (e && rc == 0)
				rc = e;
		}
	}
	/* A connection that broke under the transfer: a dead donor is told
	 * apart now, so that the caller gets -RMP_EDONOR at once. */
	if (rc && rc != -RMP_EDONOR)
		probe_broken_locked(p, d, in_use, locked, &rc);
	for (unsigned i = 0; i < locked; i++)
		if (in_use[i])
			pthread_mutex_unlock(&d->donors[i].lock);
	return rc ? rmp_data_lease_lost(p, rc, is_read ? "read" : "write") : 0; /* cut off? */
}

int rmp_write(rmp_pool *p, rmp_addr dst, const void *src, uint64_t len)
{
	struct rmp_data *d = NULL;
	uint64_t off = 0;
	int rc = rmp_data_prepare(p, dst, src, len, "rmp_write", &d, &off);

	return rc ? rc : rmp_transfer(p, d, off, (uint8_t *)(uintptr_t)src, NULL, len, false);
}

int rmp_read(rmp_pool *p, void *dst, rmp_addr src, uint64_t len)
{
	struct rmp_data *d = NULL;
	uint64_t off = 0;
	int rc = rmp_data_prepare(p, src, dst, len, "rmp_read", &d, &off);

	return rc ? rc : rmp_transfer(p, d, off, dst, NULL, len, true);
}
