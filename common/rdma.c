/* rdma.c - rdma_cm + verbs helpers (interface and contracts: rdma.h).
 *
 * Active side: one rmp_rdma_conn owns an event channel, a cm_id, a PD, a
 * completion channel, one CQ (send and receive) and an RC QP. Setup is
 *   resolve_addr -> ADDR_RESOLVED -> resolve_route -> ROUTE_RESOLVED ->
 *   PD/CQ/QP -> connect(private data, rd_atomic depths) -> ESTABLISHED
 * and every arrow is a bounded wait: the event channel fd is non-blocking
 * and cm_wait() poll()s it until the connection's deadline.
 *
 * Completions: every work request is signalled. WAIT_POLL spins on
 * ibv_poll_cq; WAIT_EVENT arms the CQ (ibv_req_notify_cq), polls once
 * more to close the race with completions that landed before arming,
 * then poll()s the non-blocking completion channel fd and takes the
 * event (ibv_get_cq_event, acked at once: acking is cheap and an unacked
 * event would block ibv_destroy_cq); WAIT_ADAPTIVE spins for
 * ADAPTIVE_SPIN_NS first, then blocks like WAIT_EVENT. The spin is short
 * on purpose: in a 1-vCPU guest rxe does its work in softirq context on
 * the same CPU, and a long spin starves it (DESIGN.md, Soft-RoCE).
 *
 * Invariants of a connection:
 *   - outstanding = WRs posted and not yet reaped (all signalled), never
 *     more than opts.max_inflight, so the send queue and the CQ (sized
 *     max_inflight + 1) never overflow;
 *   - once failed is set (an error completion, a timed-out wait, a
 *     disconnect) it stays set and every later post returns -EIO: after a
 *     timeout late completions could still write into buffers the caller
 *     has reused, so the connection is not trusted again. Setting it moves
 *     the QP to the error state (conn_fail): what is still out flushes and
 *     nothing more lands; fail_rc keeps the first cause.
 * Once established, the connection's event channel is watched by every
 * wait (poll()ed beside the completion channel; while spinning, read
 * every 1024 polls of the CQ) and by rmp_rdma_conn_check(): DISCONNECTED
 * fails the connection with -ECONNRESET. When a donor or the coordinator
 * dies, its kernel sends the disconnect request as it closes the
 * process's rdma_cm ids, so the consumer's operations end within a
 * network round trip instead of the timeout (rxe retries a request to a
 * vanished QP forever: the timeout was all that ended it). A reconnect to
 * a port nobody listens on is rejected by the far side's CM with reason
 * "invalid service ID", which connect reports as -ESRCH, apart from a
 * live listener's refusal (-ECONNREFUSED). A failed connection's close
 * does not wait for the far side's answer to its disconnect.
 * Thread-safety: rmp_rdma_exec, rmp_rdma_post and rmp_rdma_poll take one
 * mutex per connection for their whole post+wait, so concurrent callers
 * are serialised (simple and correct; a per-thread CQ would scale better
 * and can come later behind the same interface). exec refuses (-EBUSY)
 * while completions of rmp_rdma_post are still unreaped: the two styles
 * share one CQ and must not steal each other's completions.
 *
 * Atomic results: rxe and most HCAs write the old value in host order;
 * some mlx5 parts write it big-endian. rmp_rdma_atomic_result() is the
 * only place that looks at those bytes; the per-connection flag it obeys
 * is false after connect (no probe: it would cost a round trip on every
 * connection and needs a remote word) and is set by the caller with
 * rmp_rdma_set_atomic_be() or measured with rmp_rdma_probe_atomic_order().
 *
 * Passive side: the listener's cm_id is bound (to a device's address when
 * one is given, so its PD exists before any connection) and its event
 * channel fd is for the caller's poll loop. A CONNECT_REQUEST's private
 * data goes to the accept callback; a refusal is rdma_reject() and the
 * child id is destroyed, so no unauthenticated peer ever gets a QP. An
 * accepted child gets a QP on the listener's PD and a shared CQ (passive
 * QPs post nothing and responder work produces no completions) and
 * responder_resources for the initiator's atomics.
 */
#include "rdma.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <endian.h>
#include <rdma/rdma_cma.h>

#include "clock.h"

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_INFLIGHT 64u
#define LISTEN_BACKLOG 64
/* Outstanding RDMA READs/atomics per QP we ask for. rxe offers 128; the
 * initiator rarely has more in flight and each one costs the responder
 * state, so cap what we negotiate. */
#define RD_ATOMIC_CAP 16
/* ADAPTIVE: how long to spin before blocking; about one rxe round trip on
 * real hardware-less hosts is far longer, so this only catches completions
 * that are already there or about to be. */
#define ADAPTIVE_SPIN_NS 20000
#define PASSIVE_CQ_DEPTH 16
#define WC_BATCH 16
#define PROBE_TRIES 4
/* The IB CM's reject reason for a request no listener takes (IBTA
 * CM REJ reason 8, IB_CM_REJ_INVALID_SERVICE_ID in the kernel's ib_cm.h;
 * rdma_cm passes it as the REJECTED event's status). */
#define REJ_INVALID_SERVICE_ID 8
/* rmp_rdma_close of a healthy connection: how long it waits for the
 * far side's answer to its disconnect request. */
#define CLOSE_WAIT_MS 1000

struct rmp_rdma_conn {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	struct ibv_device_attr attr;
	struct rmp_rdma_opts opts;
	pthread_mutex_t lock;
	unsigned outstanding; /* posted, not yet reaped; under lock */
	bool failed;
	int fail_rc;	      /* why it failed, the first cause (atomic, like failed) */
	/* Taken (trylock) to drain the event channel once established; a
	 * thread that finds it held leaves the events to the one that holds
	 * it. */
	pthread_mutex_t cm_lock;
	bool peer_gone;	      /* DISCONNECTED came: close need not wait for it */
	bool atomic_be;	      /* the device writes atomic results big-endian */
	bool connected;
	uint64_t probe_buf[2]; /* rmp_rdma_probe_atomic_order's scratch */
	struct ibv_mr *probe_mr;
};

struct passive_conn {
	struct rdma_cm_id *id;
	uint64_t tag;
	bool established;
	struct passive_conn *next;
};

struct rmp_rdma_listener {
	struct rdma_event_channel *ec;
	struct rdma_cm_id *id;
	struct ibv_context *verbs; /* device of pd/cq; NULL until known */
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_device_attr attr;
	struct rmp_rdma_opts opts;
	rmp_rdma_accept_fn *accept;
	rmp_rdma_closed_fn *closed;
	void *arg;
	struct passive_conn *conns;
	unsigned n_conns;
};

/* ---- small helpers (time: clock.h; deadlines are rmp_mono_ms values) ---- */

static void opts_fill(struct rmp_rdma_opts *dst, const struct rmp_rdma_opts *src)
{
	if (src)
		*dst = *src;
	else
		memset(dst, 0, sizeof(*dst));
	if (dst->timeout_ms <= 0)
		dst->timeout_ms = DEFAULT_TIMEOUT_MS;
	if (dst->max_inflight == 0)
		dst->max_inflight = DEFAULT_INFLIGHT;
	if (dst->ack_timeout == 0)
		dst->ack_timeout = RMP_RDMA_ACK_TIMEOUT_DEFAULT;
	if (dst->ack_timeout > 31)
		dst->ack_timeout = 31; /* the field has 5 bits */
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int neg_errno(int fallback)
{
	return errno > 0 ? -errno : -fallback;
}

static int min_int(int a, int b)
{
	return a < b ? a : b;
}

/* Resolves host:port to an IPv4/IPv6 socket address (numeric or a name). */
static int resolve_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char portstr[8];

	snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
	int rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0)
		return rc == EAI_SYSTEM ? neg_errno(EHOSTUNREACH) : -EHOSTUNREACH;
	if (res->ai_addrlen > sizeof(*ss)) {
		freeaddrinfo(res);
		return -EAFNOSUPPORT;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

/* ---- connection manager events ---- */

/* The errno a cm event that is not the awaited one stands for. */
static int cm_event_error(const struct rdma_cm_event *ev)
{
	switch (ev->event) {
	case RDMA_CM_EVENT_REJECTED:
		/* The far side's CM answers a request for a port nobody
		 * listens on with reason "invalid service ID": the process
		 * that listened there is gone. Any other reason is a refusal
		 * by a live listener (a bad token). */
		return ev->status == REJ_INVALID_SERVICE_ID ? -ESRCH : -ECONNREFUSED;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		/* rdma_cm reports a peer that never answered as UNREACHABLE
		 * with status -ETIMEDOUT: keep that distinction. */
		return ev->status == -ETIMEDOUT ? -ETIMEDOUT : -EHOSTUNREACH;
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_DISCONNECTED:
		return -ECONNRESET;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return -ENODEV;
	default:
		return -EPROTO;
	}
}

/* Waits until the deadline for the next event on a non-blocking channel.
 * 0 and *out (to be acked by the caller), -ETIMEDOUT, or another error. */
static int cm_next(struct rdma_event_channel *ec, uint64_t deadline, struct rdma_cm_event **out)
{
	for (;;) {
		if (rdma_get_cm_event(ec, out) == 0)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return neg_errno(EIO);
		int left = rmp_ms_left(deadline);
		if (left == 0)
			return -ETIMEDOUT;
		struct pollfd pfd = {.fd = ec->fd, .events = POLLIN};
		int n = poll(&pfd, 1, left);
		if (n < 0 && errno != EINTR)
			return neg_errno(EIO);
	}
}

/* Waits for event `want`; acks it unless out is given (then the caller
 * acks). Any other event ends the wait with its error. */
static int cm_wait(struct rdma_event_channel *ec, enum rdma_cm_event_type want, uint64_t deadline,
		   struct rdma_cm_event **out)
{
	struct rdma_cm_event *ev;
	int rc = cm_next(ec, deadline, &ev);
	if (rc)
		return rc;
	if (ev->event != want) {
		rc = cm_event_error(ev);
		rdma_ack_cm_event(ev);
		return rc;
	}
	if (out)
		*out = ev;
	else
		rdma_ack_cm_event(ev);
	return 0;
}

/* ---- active side ---- */

static int conn_make_qp(struct rmp_rdma_conn *c)
{
	struct ibv_context *verbs = c->id->verbs;
	int rc;

	if (ibv_query_device(verbs, &c->attr))
		return neg_errno(EIO);
	if (c->attr.atomic_cap == IBV_ATOMIC_NONE && !c->opts.no_atomics)
		return -EOPNOTSUPP;
	if (c->opts.max_inflight > (unsigned)c->attr.max_qp_wr)
		c->opts.max_inflight = (unsigned)c->attr.max_qp_wr;

	c->pd = ibv_alloc_pd(verbs);
	if (!c->pd)
		return neg_errno(ENOMEM);
	c->cc = ibv_create_comp_channel(verbs);
	if (!c->cc) {
		rc = neg_errno(ENOMEM);
		goto out_dealloc_pd;
	}
	rc = set_nonblock(c->cc->fd);
	if (rc)
		goto out_destroy_channel;
	c->cq = ibv_create_cq(verbs, (int)c->opts.max_inflight + 1, c, c->cc, 0);
	if (!c->cq) {
		rc = neg_errno(ENOMEM);
		goto out_destroy_channel;
	}
	struct ibv_qp_init_attr qia = {
		.send_cq = c->cq,
		.recv_cq = c->cq,
		.cap = {.max_send_wr = c->opts.max_inflight,
			.max_recv_wr = 1,
			.max_send_sge = 1,
			.max_recv_sge = 1},
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 1,
	};
	if (rdma_create_qp(c->id, c->pd, &qia)) {
		rc = neg_errno(ENOMEM);
		goto out_destroy_cq;
	}
	c->probe_mr = ibv_reg_mr(c->pd, c->probe_buf, sizeof(c->probe_buf),
				 IBV_ACCESS_LOCAL_WRITE);
	if (!c->probe_mr) {
		rc = neg_errno(ENOMEM);
		goto out_destroy_qp;
	}
	return 0;

out_destroy_qp:
	rdma_destroy_qp(c->id);
out_destroy_cq:
	ibv_destroy_cq(c->cq);
	c->cq = NULL;
out_destroy_channel:
	ibv_destroy_comp_channel(c->cc);
	c->cc = NULL;
out_dealloc_pd:
	ibv_dealloc_pd(c->pd);
	c->pd = NULL;
	return rc;
}

static void conn_free_qp(struct rmp_rdma_conn *c)
{
	if (c->probe_mr)
		ibv_dereg_mr(c->probe_mr);
	if (c->id->qp)
		rdma_destroy_qp(c->id);
	if (c->cq)
		ibv_destroy_cq(c->cq);
	if (c->cc)
		ibv_destroy_comp_channel(c->cc);
	/* EBUSY here means the caller still has regions on this PD: they
	 * leak, but the connection itself is gone. */
	if (c->pd)
		ibv_dealloc_pd(c->pd);
}

int rmp_rdma_connect(const char *host, uint16_t port, const void *pdata, uint8_t pdata_len,
		     const struct rmp_rdma_opts *opts, rmp_rdma_conn **out)
{
	struct sockaddr_storage dst;
	int rc;

	if (!host || !port || !out || pdata_len > RMP_RDMA_PDATA_MAX || (pdata_len && !pdata))
		return -EINVAL;
	rc = resolve_sockaddr(host, port, &dst);
	if (rc)
		return rc;

	struct rmp_rdma_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	opts_fill(&c->opts, opts);
	uint64_t deadline = rmp_deadline_ms((uint64_t)c->opts.timeout_ms);
	rc = pthread_mutex_init(&c->lock, NULL);
	if (rc) {
		rc = -rc;
		goto out_free;
	}
	c->cm_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	c->ec = rdma_create_event_channel();
	if (!c->ec) {
		rc = neg_errno(ENODEV);
		goto out_destroy_lock;
	}
	rc = set_nonblock(c->ec->fd);
	if (rc)
		goto out_destroy_channel;
	if (rdma_create_id(c->ec, &c->id, c, RDMA_PS_TCP)) {
		rc = neg_errno(ENOMEM);
		goto out_destroy_channel;
	}
	if (rdma_resolve_addr(c->id, NULL, (struct sockaddr *)&dst, c->opts.timeout_ms)) {
		rc = neg_errno(EHOSTUNREACH);
		goto out_destroy_id;
	}
	rc = cm_wait(c->ec, RDMA_CM_EVENT_ADDR_RESOLVED, deadline, NULL);
	if (rc)
		goto out_destroy_id;
	/* At most RMP_POLL_SLICE_MS: the address is resolved, the route is
	 * local work that takes milliseconds. */
	int route_ms = rmp_ms_left(deadline);
	if (rdma_resolve_route(c->id, route_ms ? route_ms : 1)) {
		rc = neg_errno(EHOSTUNREACH);
		goto out_destroy_id;
	}
	rc = cm_wait(c->ec, RDMA_CM_EVENT_ROUTE_RESOLVED, deadline, NULL);
	if (rc)
		goto out_destroy_id;
	rc = conn_make_qp(c);
	if (rc)
		goto out_destroy_id;
	/* The local ACK timeout: how long a lost request or response stalls
	 * the QP before it retransmits. rdma_cm's own value on RoCE (from the
	 * packet lifetime) is 19 here, 2.1 s, and rxe under emulation loses
	 * reply packets of long READs: every loss at the tail of a transfer
	 * (no later response shows the gap) waited that long. Only the
	 * active side posts requests, so only its QP's value matters. */
	if (rdma_set_option(c->id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &c->opts.ack_timeout,
			    sizeof(c->opts.ack_timeout))) {
		rc = neg_errno(EINVAL);
		goto out_free_qp;
	}

	struct rdma_conn_param param = {
		.private_data = pdata,
		.private_data_len = pdata_len,
		.initiator_depth = (uint8_t)min_int(c->attr.max_qp_init_rd_atom, RD_ATOMIC_CAP),
		.responder_resources = (uint8_t)min_int(c->attr.max_qp_rd_atom, RD_ATOMIC_CAP),
		.retry_count = 7,
		.rnr_retry_count = 7,
	};
	if (rdma_connect(c->id, &param)) {
		rc = neg_errno(ECONNREFUSED);
		goto out_free_qp;
	}
	rc = cm_wait(c->ec, RDMA_CM_EVENT_ESTABLISHED, deadline, NULL);
	if (rc)
		goto out_free_qp;
	c->connected = true;
	*out = c;
	return 0;

out_free_qp:
	conn_free_qp(c);
out_destroy_id:
	rdma_destroy_id(c->id);
out_destroy_channel:
	rdma_destroy_event_channel(c->ec);
out_destroy_lock:
	pthread_mutex_destroy(&c->cm_lock);
	pthread_mutex_destroy(&c->lock);
out_free:
	free(c);
	return rc;
}

void rmp_rdma_close(rmp_rdma_conn *c)
{
	if (!c)
		return;
	/* A failed connection's peer may be dead: its answer to the
	 * disconnect request would never come, and waiting for it cost
	 * every replacement of a dead donor's connection a second. */
	bool wait = !rmp_rdma_conn_failed(c) && !c->peer_gone;
	if (c->connected && rdma_disconnect(c->id) == 0 && wait) {
		/* Wait briefly for DISCONNECTED so the peer sees a clean end;
		 * not waiting would be correct too, destroy_id tears down. */
		(void)cm_wait(c->ec, RDMA_CM_EVENT_DISCONNECTED,
			      rmp_deadline_ms((uint64_t)min_int(c->opts.timeout_ms, CLOSE_WAIT_MS)), NULL);
	}
	conn_free_qp(c);
	rdma_destroy_id(c->id);
	rdma_destroy_event_channel(c->ec);
	pthread_mutex_destroy(&c->cm_lock);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

struct ibv_pd *rmp_rdma_conn_pd(rmp_rdma_conn *c)
{
	return c->pd;
}

bool rmp_rdma_conn_failed(const rmp_rdma_conn *c)
{
	return __atomic_load_n(&c->failed, __ATOMIC_ACQUIRE);
}

const struct ibv_device_attr *rmp_rdma_conn_device(const rmp_rdma_conn *c)
{
	return &c->attr;
}

int rmp_rdma_conn_error(const rmp_rdma_conn *c)
{
	return rmp_rdma_conn_failed(c) ? __atomic_load_n(&c->fail_rc, __ATOMIC_RELAXED) : 0;
}

/* The connection is not trusted again (rc: why, the first cause wins).
 * Its QP goes to the error state at once: every WR still out completes
 * as flushed, so waiters wake, and nothing the far side sends lands in
 * our memory any more. */
static void conn_fail(struct rmp_rdma_conn *c, int rc)
{
	int none = 0;
	if (!__atomic_compare_exchange_n(&c->fail_rc, &none, rc, false, __ATOMIC_RELAXED,
					 __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&c->failed, true, __ATOMIC_RELEASE);
	if (c->id && c->id->qp) {
		struct ibv_qp_attr attr = {.qp_state = IBV_QPS_ERR};
		(void)ibv_modify_qp(c->id->qp, &attr, IBV_QP_STATE);
	}
}

static void conn_mark_failed(struct rmp_rdma_conn *c)
{
	conn_fail(c, -EIO);
}

/* The events of an established connection: DISCONNECTED (the far side
 * ended it - a process that dies has its kernel send the disconnect
 * request), DEVICE_REMOVAL, and errors fail it at once with their errno;
 * TIMEWAIT_EXIT and ADDR_CHANGE change nothing. Never blocks: it drains
 * what the non-blocking channel holds. Returns the connection's failure
 * (0: none). */
static int conn_watch_cm(struct rmp_rdma_conn *c)
{
	struct rdma_cm_event *ev;

	if (!c->connected || pthread_mutex_trylock(&c->cm_lock) != 0)
		return rmp_rdma_conn_error(c);
	while (rdma_get_cm_event(c->ec, &ev) == 0) {
		enum rdma_cm_event_type type = ev->event;
		int rc = cm_event_error(ev);
		rdma_ack_cm_event(ev);
		if (type == RDMA_CM_EVENT_TIMEWAIT_EXIT || type == RDMA_CM_EVENT_ADDR_CHANGE)
			continue;
		if (type == RDMA_CM_EVENT_DISCONNECTED)
			c->peer_gone = true;
		conn_fail(c, rc);
	}
	pthread_mutex_unlock(&c->cm_lock);
	return rmp_rdma_conn_error(c);
}

int rmp_rdma_conn_check(rmp_rdma_conn *c)
{
	return c ? conn_watch_cm(c) : -EINVAL;
}

/* Fills wr/sge for one op. -EINVAL for a malformed op. */
static int op_to_wr(const struct rmp_rdma_op *op, uint64_t wr_id, struct ibv_send_wr *wr,
		    struct ibv_sge *sge)
{
	memset(wr, 0, sizeof(*wr));
	sge->addr = (uintptr_t)op->local;
	sge->lkey = op->lkey;
	sge->length = op->len;
	wr->wr_id = wr_id;
	wr->sg_list = sge;
	wr->num_sge = 1;
	wr->send_flags = IBV_SEND_SIGNALED;
	switch (op->kind) {
	case RMP_RDMA_READ:
	case RMP_RDMA_WRITE:
		if (!op->local || op->len == 0)
			return -EINVAL;
		wr->opcode = op->kind == RMP_RDMA_READ ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE;
		wr->wr.rdma.remote_addr = op->raddr;
		wr->wr.rdma.rkey = op->rkey;
		return 0;
	case RMP_RDMA_CAS:
	case RMP_RDMA_FAA:
		/* Only 8-byte, 8-byte-aligned atomics exist (rxe rejects others
		 * with a remote error that would kill the QP): refuse early. */
		if (!op->local || (op->len != 8 && op->len != 0) || (op->raddr & 7u))
			return -EINVAL;
		sge->length = 8;
		wr->opcode = op->kind == RMP_RDMA_CAS ? IBV_WR_ATOMIC_CMP_AND_SWP
						      : IBV_WR_ATOMIC_FETCH_AND_ADD;
		wr->wr.atomic.remote_addr = op->raddr;
		wr->wr.atomic.rkey = op->rkey;
		wr->wr.atomic.compare_add = op->kind == RMP_RDMA_CAS ? op->compare : op->swap_add;
		wr->wr.atomic.swap = op->kind == RMP_RDMA_CAS ? op->swap_add : 0;
		return 0;
	default:
		return -EINVAL;
	}
}

/* Posts n <= room ops as one chain. Requires c->lock. */
static int do_post_locked(struct rmp_rdma_conn *c, const struct rmp_rdma_op *ops, unsigned n,
			  uint64_t wr_id_base)
{
	struct ibv_send_wr wrs[WC_BATCH * 4];
	struct ibv_sge sges[WC_BATCH * 4];
	unsigned done = 0;

	while (done < n) {
		unsigned chunk = n - done;
		if (chunk > sizeof(wrs) / sizeof(wrs[0]))
			chunk = sizeof(wrs) / sizeof(wrs[0]);
		for (unsigned i = 0; i < chunk; i++) {
			int rc = op_to_wr(&ops[done + i], wr_id_base + done + i, &wrs[i], &sges[i]);
			if (rc)
				return done ? -EIO : rc; /* half a batch posted: unusable */
			wrs[i].next = i + 1 < chunk ? &wrs[i + 1] : NULL;
		}
		struct ibv_send_wr *bad = NULL;
		int rc = ibv_post_send(c->id->qp, wrs, &bad);
		if (rc) {
			unsigned posted = bad ? (unsigned)(bad - wrs) : 0;
			c->outstanding += posted;
			conn_mark_failed(c);
			return -(rc > 0 ? rc : EIO);
		}
		c->outstanding += chunk;
		done += chunk;
	}
	return 0;
}

/* Takes one completion-channel event if there is one, re-arms nothing.
 * Returns 0, or a negative error. */
static int cq_take_event(struct rmp_rdma_conn *c)
{
	struct ibv_cq *ev_cq;
	void *ev_ctx;
	if (ibv_get_cq_event(c->cc, &ev_cq, &ev_ctx) == 0) {
		ibv_ack_cq_events(ev_cq, 1);
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return 0;
	return neg_errno(EIO);
}

/* Reaps completions until at least min are in (bounded by the deadline).
 * ids (may be NULL) receives up to cap wr_ids. Returns the number reaped
 * (<= max(cap, min)), or a negative error; *err_out receives the first
 * error completion as -EIO. Requires c->lock. */
static int cq_reap_locked(struct rmp_rdma_conn *c, unsigned min, unsigned max, uint64_t *ids,
			  unsigned cap, uint64_t deadline, int *err_out)
{
	struct ibv_wc wc[WC_BATCH];
	unsigned got = 0;
	enum rmp_rdma_wait mode = c->opts.wait;
	uint64_t spin_until = mode == RMP_RDMA_WAIT_ADAPTIVE ? rmp_mono_ns() + ADAPTIVE_SPIN_NS : 0;
	bool armed = false;
	unsigned spins = 0;

	while (got < max) {
		int want = (int)min_int((int)(max - got), WC_BATCH);
		int n = ibv_poll_cq(c->cq, want, wc);
		if (n < 0) {
			conn_mark_failed(c);
			return -EIO;
		}
		for (int i = 0; i < n; i++) {
			if (ids && got < cap)
				ids[got] = wc[i].wr_id;
			got++;
			c->outstanding--;
			if (wc[i].status != IBV_WC_SUCCESS) {
				conn_mark_failed(c);
				if (!*err_out)
					*err_out = -EIO;
			}
		}
		if (got >= min)
			break;
		if (n > 0) {
			armed = false;
			continue;
		}
		bool block = mode == RMP_RDMA_WAIT_EVENT ||
			     (mode == RMP_RDMA_WAIT_ADAPTIVE && rmp_mono_ns() >= spin_until);
		if (!block) {
			/* Look at the clock and the cm events (a system call)
			 * only now and then while spinning. */
			if ((++spins & 1023u) == 0) {
				int cm = conn_watch_cm(c);
				if (cm)
					return cm;
				if (rmp_mono_ms() >= deadline)
					goto timed_out;
			}
			continue;
		}
		if (!armed) {
			/* Arm, then poll again: a completion that arrived
			 * before arming raises no event. */
			if (ibv_req_notify_cq(c->cq, 0)) {
				conn_mark_failed(c);
				return -EIO;
			}
			armed = true;
			continue;
		}
		int left = rmp_ms_left(deadline);
		if (left == 0)
			goto timed_out;
		/* The connection's cm events wake the wait too: a far side
		 * that disconnects (or dies) fails it now, not at the deadline. */
		struct pollfd pfd[2] = {{.fd = c->cc->fd, .events = POLLIN},
					{.fd = c->ec->fd, .events = POLLIN}};
		int pr = poll(pfd, c->connected ? 2 : 1, left);
		if (pr < 0 && errno != EINTR)
			return neg_errno(EIO);
		if (pr > 0 && pfd[1].revents) {
			int cm = conn_watch_cm(c);
			if (cm)
				return cm;
		}
		if (pr > 0 && pfd[0].revents) {
			int rc = cq_take_event(c);
			if (rc)
				return rc;
			armed = false; /* an event disarms the CQ */
		}
	}
	return (int)got;

timed_out:
	/* WRs still out would complete later into the caller's buffers:
	 * conn_fail flushes them. */
	conn_fail(c, -ETIMEDOUT);
	return -ETIMEDOUT;
}

int rmp_rdma_exec(rmp_rdma_conn *c, struct rmp_rdma_op *ops, unsigned n)
{
	int rc = 0;

	if (!c || (n && !ops))
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	if (rmp_rdma_conn_failed(c)) {
		rc = -EIO;
		goto out_unlock;
	}
	if (c->outstanding) {
		rc = -EBUSY;
		goto out_unlock;
	}
	uint64_t deadline = rmp_deadline_ms((uint64_t)c->opts.timeout_ms);
	for (unsigned done = 0; done < n;) {
		unsigned wave = n - done;
		if (wave > c->opts.max_inflight)
			wave = c->opts.max_inflight;
		rc = do_post_locked(c, ops + done, wave, done);
		if (rc) {
			/* Drain whatever went out so nothing lands later. */
			int err = 0;
			if (c->outstanding)
				(void)cq_reap_locked(c, c->outstanding, c->outstanding, NULL, 0,
						     deadline, &err);
			goto out_unlock;
		}
		int err = 0;
		int got = cq_reap_locked(c, wave, wave, NULL, 0, deadline, &err);
		if (got < 0) {
			rc = got;
			goto out_unlock;
		}
		if (err) {
			rc = err;
			goto out_unlock;
		}
		done += wave;
	}
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rmp_rdma_post(rmp_rdma_conn *c, struct rmp_rdma_op *ops, unsigned n, uint64_t wr_id_base)
{
	int rc;

	if (!c || (n && !ops))
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	if (rmp_rdma_conn_failed(c))
		rc = -EIO;
	else if (n > c->opts.max_inflight - c->outstanding)
		rc = -EAGAIN; /* reap with rmp_rdma_poll first */
	else
		rc = do_post_locked(c, ops, n, wr_id_base);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int rmp_rdma_poll(rmp_rdma_conn *c, unsigned min, uint64_t *ids, unsigned cap)
{
	int err = 0;

	if (!c || (cap && !ids))
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	unsigned max = cap > c->outstanding ? c->outstanding : cap;
	if (min > c->outstanding) {
		pthread_mutex_unlock(&c->lock);
		return -EINVAL; /* would wait for completions that cannot come */
	}
	if (min > max)
		max = min;
	int got = cq_reap_locked(c, min, max, ids, cap, rmp_deadline_ms((uint64_t)c->opts.timeout_ms),
				 &err);
	pthread_mutex_unlock(&c->lock);
	if (got >= 0 && err)
		return err;
	return got;
}

uint64_t rmp_rdma_atomic_result(const rmp_rdma_conn *c, const void *local)
{
	uint64_t v;
	memcpy(&v, local, sizeof(v));
	return c && c->atomic_be ? be64toh(v) : v;
}

void rmp_rdma_set_atomic_be(rmp_rdma_conn *c, bool big_endian)
{
	c->atomic_be = big_endian;
}

int rmp_rdma_probe_atomic_order(rmp_rdma_conn *c, uint64_t raddr, uint32_t rkey)
{
	uint64_t *buf = c->probe_buf;

	if (raddr & 7u)
		return -EINVAL;
	for (int tries = 0; tries < PROBE_TRIES; tries++) {
		/* READ gives the word's bytes as they lie in memory; FAA of 0
		 * leaves the word alone and returns it in the device's order.
		 * A word that changes in between, or whose bytes read the same
		 * both ways, proves nothing: try again. */
		struct rmp_rdma_op ops[2] = {
			{.kind = RMP_RDMA_READ, .local = &buf[0], .lkey = c->probe_mr->lkey,
			 .len = 8, .raddr = raddr, .rkey = rkey},
			{.kind = RMP_RDMA_FAA, .local = &buf[1], .lkey = c->probe_mr->lkey,
			 .len = 8, .raddr = raddr, .rkey = rkey, .swap_add = 0},
		};
		int rc = rmp_rdma_exec(c, ops, 2);
		if (rc)
			return rc;
		uint64_t seen = buf[0], got = buf[1];
		if (seen == __builtin_bswap64(seen))
			return -EAGAIN; /* a palindrome word cannot tell */
		if (got == seen) {
			c->atomic_be = false;
			return 0;
		}
		if (got == __builtin_bswap64(seen)) {
			c->atomic_be = true;
			return 0;
		}
	}
	return -EAGAIN;
}

/* ---- passive side ---- */

/* Opens the listener's device state once the device is known. */
static int listener_open_device(struct rmp_rdma_listener *l, struct ibv_context *verbs)
{
	int rc;

	if (ibv_query_device(verbs, &l->attr))
		return neg_errno(EIO);
	l->pd = ibv_alloc_pd(verbs);
	if (!l->pd)
		return neg_errno(ENOMEM);
	l->cq = ibv_create_cq(verbs, PASSIVE_CQ_DEPTH, NULL, NULL, 0);
	if (!l->cq) {
		rc = neg_errno(ENOMEM);
		goto out_dealloc_pd;
	}
	l->verbs = verbs;
	return 0;

out_dealloc_pd:
	ibv_dealloc_pd(l->pd);
	l->pd = NULL;
	return rc;
}

int rmp_rdma_listen(const char *host, uint16_t port, const struct rmp_rdma_opts *opts,
		    rmp_rdma_accept_fn *accept, rmp_rdma_closed_fn *closed, void *arg,
		    rmp_rdma_listener **out)
{
	struct sockaddr_storage ss;
	int rc;

	if (!accept || !out)
		return -EINVAL;
	if (host) {
		rc = resolve_sockaddr(host, port, &ss);
		if (rc)
			return rc;
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		memset(&ss, 0, sizeof(ss));
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons(port);
	}
	struct rmp_rdma_listener *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	opts_fill(&l->opts, opts);
	l->accept = accept;
	l->closed = closed;
	l->arg = arg;
	l->ec = rdma_create_event_channel();
	if (!l->ec) {
		rc = neg_errno(ENODEV);
		goto out_free;
	}
	rc = set_nonblock(l->ec->fd);
	if (rc)
		goto out_destroy_channel;
	if (rdma_create_id(l->ec, &l->id, l, RDMA_PS_TCP)) {
		rc = neg_errno(ENOMEM);
		goto out_destroy_channel;
	}
	if (rdma_bind_addr(l->id, (struct sockaddr *)&ss)) {
		rc = neg_errno(EADDRNOTAVAIL);
		goto out_destroy_id;
	}
	if (l->id->verbs) {
		rc = listener_open_device(l, l->id->verbs);
		if (rc)
			goto out_destroy_id;
		if (l->attr.atomic_cap == IBV_ATOMIC_NONE && !l->opts.no_atomics) {
			rc = -EOPNOTSUPP;
			goto out_close_device;
		}
	}
	if (rdma_listen(l->id, LISTEN_BACKLOG)) {
		rc = neg_errno(EADDRINUSE);
		goto out_close_device;
	}
	*out = l;
	return 0;

out_close_device:
	if (l->cq)
		ibv_destroy_cq(l->cq);
	if (l->pd)
		ibv_dealloc_pd(l->pd);
out_destroy_id:
	rdma_destroy_id(l->id);
out_destroy_channel:
	rdma_destroy_event_channel(l->ec);
out_free:
	free(l);
	return rc;
}

/* Ends one passive connection: QP, id, list entry. Tells the owner when
 * it had accepted the connection. The id's events must all be acked. */
static void passive_drop(struct rmp_rdma_listener *l, struct passive_conn *pc, bool notify)
{
	for (struct passive_conn **pp = &l->conns; *pp; pp = &(*pp)->next) {
		if (*pp == pc) {
			*pp = pc->next;
			l->n_conns--;
			break;
		}
	}
	if (notify && l->closed)
		l->closed(l->arg, pc->tag);
	if (pc->id->qp)
		rdma_destroy_qp(pc->id);
	rdma_destroy_id(pc->id);
	free(pc);
}

/* Accepts or rejects one CONNECT_REQUEST. Acks ev (rdma_destroy_id on the
 * child would wait for that ack forever). */
static int on_connect_request(struct rmp_rdma_listener *l, struct rdma_cm_event *ev)
{
	struct rdma_cm_id *child = ev->id;
	struct rdma_conn_param req = ev->param.conn;
	uint64_t tag = 0;
	int rc;

	/* Ask the owner while the private data still exists (until the ack). */
	int verdict = l->accept(l->arg, req.private_data,
				req.private_data ? req.private_data_len : 0, &tag);
	rdma_ack_cm_event(ev);
	if (verdict)
		goto out_reject;
	if (!l->verbs) {
		rc = listener_open_device(l, child->verbs);
		if (rc)
			goto out_reject;
	}
	if (child->verbs != l->verbs)
		goto out_reject; /* our PD lives on another device */

	struct passive_conn *pc = calloc(1, sizeof(*pc));
	if (!pc)
		goto out_reject;
	pc->id = child;
	pc->tag = tag;
	child->context = pc;
	struct ibv_qp_init_attr qia = {
		.send_cq = l->cq,
		.recv_cq = l->cq,
		.cap = {.max_send_wr = 1, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
		.qp_type = IBV_QPT_RC,
	};
	if (rdma_create_qp(child, l->pd, &qia))
		goto out_free_conn;
	struct rdma_conn_param param = {
		/* What the initiator will have in flight towards us, within
		 * what the device allows: its READs and atomics need it. */
		.responder_resources = (uint8_t)min_int(req.initiator_depth,
							 min_int(l->attr.max_qp_rd_atom,
								 RD_ATOMIC_CAP)),
		.initiator_depth = (uint8_t)min_int(req.responder_resources,
						     min_int(l->attr.max_qp_init_rd_atom,
							     RD_ATOMIC_CAP)),
		.retry_count = 7,
		.rnr_retry_count = 7,
	};
	if (rdma_accept(child, &param))
		goto out_destroy_qp;
	pc->next = l->conns;
	l->conns = pc;
	l->n_conns++;
	return 0;

out_destroy_qp:
	rdma_destroy_qp(child);
out_free_conn:
	free(pc);
out_reject:
	rdma_reject(child, NULL, 0);
	rdma_destroy_id(child);
	return 0;
}

int rmp_rdma_listener_dispatch(rmp_rdma_listener *l)
{
	struct rdma_cm_event *ev;
	int handled = 0;

	for (;;) {
		if (rdma_get_cm_event(l->ec, &ev)) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return handled;
			return neg_errno(EIO);
		}
		handled++;
		if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
			on_connect_request(l, ev);
			continue;
		}
		struct passive_conn *pc = ev->id != l->id ? ev->id->context : NULL;
		enum rdma_cm_event_type type = ev->event;
		rdma_ack_cm_event(ev);
		if (!pc)
			continue; /* events of the listening id itself */
		switch (type) {
		case RDMA_CM_EVENT_ESTABLISHED:
			pc->established = true;
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
			rdma_disconnect(pc->id); /* completes the handshake */
			passive_drop(l, pc, true);
			break;
		case RDMA_CM_EVENT_REJECTED:
		case RDMA_CM_EVENT_CONNECT_ERROR:
		case RDMA_CM_EVENT_UNREACHABLE:
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			passive_drop(l, pc, true);
			break;
		default:
			break; /* TIMEWAIT_EXIT, ADDR_CHANGE: nothing to do */
		}
	}
}

void rmp_rdma_listener_close(rmp_rdma_listener *l)
{
	if (!l)
		return;
	while (l->conns) {
		struct passive_conn *pc = l->conns;
		rdma_disconnect(pc->id);
		passive_drop(l, pc, true);
	}
	rdma_destroy_id(l->id);
	if (l->cq)
		ibv_destroy_cq(l->cq);
	if (l->pd)
		ibv_dealloc_pd(l->pd);
	rdma_destroy_event_channel(l->ec);
	free(l);
}

uint16_t rmp_rdma_listener_port(const rmp_rdma_listener *l)
{
	return ntohs(rdma_get_src_port(l->id));
}

struct ibv_pd *rmp_rdma_listener_pd(rmp_rdma_listener *l)
{
	return l->pd;
}

int rmp_rdma_listener_fd(const rmp_rdma_listener *l)
{
	return l->ec->fd;
}

unsigned rmp_rdma_listener_connections(const rmp_rdma_listener *l)
{
	return l->n_conns;
}

unsigned rmp_rdma_listener_drop_tag(rmp_rdma_listener *l, uint64_t tag)
{
	unsigned n = 0;

	for (struct passive_conn *pc = l->conns, *next; pc; pc = next) {
		next = pc->next;
		if (pc->tag != tag)
			continue;
		/* DREQ to the peer, our QP to the error state; then the QP is
		 * destroyed: a packet that still arrives for it finds no QP
		 * and is dropped by the device, never executed. */
		rdma_disconnect(pc->id);
		passive_drop(l, pc, true);
		n++;
	}
	return n;
}

/* ---- registration ---- */

int rmp_rdma_reg_remote(struct ibv_pd *pd, void *addr, size_t len, struct ibv_mr **out)
{
	struct ibv_device_attr attr;

	if (!pd || !addr || !len || !out)
		return -EINVAL;
	if (ibv_query_device(pd->context, &attr))
		return neg_errno(EIO);
	if (attr.atomic_cap == IBV_ATOMIC_NONE)
		return -EOPNOTSUPP;
	if ((uint64_t)len > attr.max_mr_size)
		return -E2BIG;
	struct ibv_mr *mr = ibv_reg_mr(pd, addr, len,
				       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
					       IBV_ACCESS_REMOTE_WRITE |
					       IBV_ACCESS_REMOTE_ATOMIC);
	if (!mr)
		return neg_errno(ENOMEM);
	*out = mr;
	return 0;
}

/* ---- where this host's RDMA device listens ---- */

/* IPv4 address of netdev `ifname`, via getifaddrs. */
static int netdev_ipv4(const char *ifname, char *buf, size_t len)
{
	struct ifaddrs *ifs, *i;
	int rc = -EADDRNOTAVAIL;

	if (getifaddrs(&ifs))
		return neg_errno(EIO);
	for (i = ifs; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || strcmp(i->ifa_name, ifname))
			continue;
		const struct sockaddr_in *sin = (const struct sockaddr_in *)i->ifa_addr;
		rc = inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t)len) ? 0 : -ENOSPC;
		break;
	}
	freeifaddrs(ifs);
	return rc;
}

static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return neg_errno(ENOENT);
	char *got = fgets(buf, (int)len, f);
	fclose(f);
	if (!got)
		return -ENOENT;
	buf[strcspn(buf, "\n")] = '\0';
	return buf[0] ? 0 : -ENOENT;
}

int rmp_rdma_local_addr(char *buf, size_t len)
{
	int n, rc = -ENODEV;
	struct ibv_device **devs = ibv_get_device_list(&n);

	if (!devs)
		return -ENODEV;
	for (int d = 0; d < n && rc; d++) {
		const char *name = ibv_get_device_name(devs[d]);
		/* The netdev behind GID index i (kernel >= 4.15 exports it);
		 * RoCE v2 GIDs carry the IPv4 address, and the netdev's
		 * current address is what rdma_cm binds to. */
		for (int gid = 0; gid < 16 && rc; gid++) {
			char path[256], ifname[64];
			snprintf(path, sizeof(path),
				 "/sys/class/infiniband/%s/ports/1/gid_attrs/ndevs/%d", name, gid);
			if (read_line(path, ifname, sizeof(ifname)) == 0)
				rc = netdev_ipv4(ifname, buf, len);
		}
	}
	ibv_free_device_list(devs);
	return rc;
}
