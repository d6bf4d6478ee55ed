/*
 * rdma.h - rdma_cm and verbs, wrapped once for every part of rmpool:
 * connection setup with a token in the private data, memory registration,
 * and posting one-sided operations (READ, WRITE, CAS, FAA) in batches and
 * waiting for them with a timeout, by polling or on a completion channel.
 *
 * Active side (librmpool, the CLI, tests): rmp_rdma_connect() resolves,
 * connects with private data and returns a connected RC queue pair with
 * its own PD, CQ and completion channel. Passive side (donors, the
 * coordinator): rmp_rdma_listen() binds and listens; its PD is where the
 * served regions are registered; the caller watches rmp_rdma_listener_fd()
 * (poll or libevent) and calls rmp_rdma_listener_dispatch(), which verifies
 * each connect request's private data through a callback and accepts or
 * rejects it. Passive QPs only respond: they post nothing.
 *
 * Every wait is bounded by opts.timeout_ms (address and route resolution,
 * connection establishment, completions): nothing blocks forever. Errors
 * are negative errno values: -ETIMEDOUT, -ECONNREFUSED (rejected by the
 * listener, e.g. a bad token), -ESRCH (nobody listens on that port: the
 * process that did is gone), -EHOSTUNREACH, -EOPNOTSUPP (no atomics on
 * this device), -EIO (a work completion with an error status), and on an
 * established connection -ECONNRESET (the far side disconnected: a
 * process that dies has its kernel do that) or -ENODEV (the device went).
 * A connection that saw any of them is unusable from then on
 * (rmp_rdma_conn_failed(), rmp_rdma_conn_error() says why).
 *
 * An established connection's rdma_cm events are watched by every wait
 * on it: a disconnect fails the connection at once and wakes its waiter
 * (its QP is moved to the error state, so the WRs still out flush),
 * instead of letting it run into the timeout. rmp_rdma_conn_check() looks
 * at them between operations (one system call, never blocks).
 *
 * Atomics: the 8-byte result of CAS/FAA lands in memory in the byte order
 * the device chose; rmp_rdma_atomic_result() is the one place that turns
 * it into a host value (some mlx5 parts return it big-endian).
 */
#ifndef RMP_RDMA_H
#define RMP_RDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <infiniband/verbs.h>

#define RMP_RDMA_PDATA_MAX 56u /* RC connect private data, rdma_cm over IB/RoCE */
#define RMP_RDMA_ACK_TIMEOUT_DEFAULT 14u /* 4.096 us * 2^14 = 67 ms */

enum rmp_rdma_wait {
	RMP_RDMA_WAIT_POLL = 0,  /* spin on the CQ (lowest latency, burns a CPU) */
	RMP_RDMA_WAIT_EVENT,     /* block on the completion channel */
	RMP_RDMA_WAIT_ADAPTIVE,  /* spin briefly, then block (default) */
};

struct rmp_rdma_opts {
	int timeout_ms;          /* every wait; 0: 5000 */
	enum rmp_rdma_wait wait;
	uint32_t max_inflight;   /* send queue depth; 0: 64 */
	/* Local ACK timeout of the QP (active side), the exponent n of
	 * 4.096 us * 2^n: how long the initiator waits for a missing response
	 * before it retransmits. 0: RMP_RDMA_ACK_TIMEOUT_DEFAULT (67 ms;
	 * rdma_cm's own choice on RoCE was 19, 2.1 s per lost tail packet).
	 * With retry_count 7 a hardware QP gives up after 8 timeouts without
	 * progress (0.5 s at 14); rxe reads 7 as "retry forever". Either way
	 * timeout_ms bounds every wait. */
	uint8_t ack_timeout;
	/* Every rmpool connection carries atomics (allocator metadata,
	 * user-level remote atomics), so connect and listen refuse a device
	 * whose atomic_cap is IBV_ATOMIC_NONE with -EOPNOTSUPP. Set this to
	 * accept such a device for READ/WRITE only. */
	bool no_atomics;
};

/* --- active side ---------------------------------------------------------- */

typedef struct rmp_rdma_conn rmp_rdma_conn; /* opaque */

int rmp_rdma_connect(const char *host, uint16_t port, const void *pdata, uint8_t pdata_len,
		     const struct rmp_rdma_opts *opts, rmp_rdma_conn **out);
void rmp_rdma_close(rmp_rdma_conn *c);
struct ibv_pd *rmp_rdma_conn_pd(rmp_rdma_conn *c);
bool rmp_rdma_conn_failed(const rmp_rdma_conn *c);
/* Why the connection failed (the first cause: -ETIMEDOUT, -ECONNRESET,
 * -EIO, ...), 0 while it has not. */
int rmp_rdma_conn_error(const rmp_rdma_conn *c);
/* Takes the rdma_cm events that arrived since (a disconnect fails the
 * connection) and returns rmp_rdma_conn_error(). Never blocks. */
int rmp_rdma_conn_check(rmp_rdma_conn *c);
/* Device attributes of the connection's device (atomic_cap etc.). */
const struct ibv_device_attr *rmp_rdma_conn_device(const rmp_rdma_conn *c);

enum rmp_rdma_op_kind {
	RMP_RDMA_READ = 1,  /* local[0..len) = remote[raddr..+len) */
	RMP_RDMA_WRITE,     /* remote[raddr..+len) = local[0..len) */
	RMP_RDMA_CAS,       /* 8 bytes at raddr; old value to local (8 bytes) */
	RMP_RDMA_FAA,       /* 8 bytes at raddr; old value to local (8 bytes) */
};

struct rmp_rdma_op {
	uint8_t kind;       /* enum rmp_rdma_op_kind */
	void *local;        /* in a region registered on this connection's PD */
	uint32_t lkey;
	uint32_t len;       /* READ/WRITE; 8 for atomics */
	uint64_t raddr;
	uint32_t rkey;
	uint64_t compare;   /* CAS */
	uint64_t swap_add;  /* CAS: new value; FAA: addend */
};

/* Post n operations (split into waves of max_inflight if needed) and wait
 * for all their completions. 0, or the first error. Thread-safe: calls
 * from several threads on one connection are serialized internally. */
int rmp_rdma_exec(rmp_rdma_conn *c, struct rmp_rdma_op *ops, unsigned n);

/* Post without waiting; rmp_rdma_poll() reaps. For pipelined callers. */
int rmp_rdma_post(rmp_rdma_conn *c, struct rmp_rdma_op *ops, unsigned n, uint64_t wr_id_base);
/* Wait for at least min completions (bounded); ids of completed wr_ids
 * to ids (cap entries). Returns the count or a negative error. */
int rmp_rdma_poll(rmp_rdma_conn *c, unsigned min, uint64_t *ids, unsigned cap);

/* The host value of an atomic's result as the device wrote it. */
uint64_t rmp_rdma_atomic_result(const rmp_rdma_conn *c, const void *local);
/* The byte order rmp_rdma_atomic_result() assumes: host order after
 * connect (rxe, most HCAs); set it when the device is known to differ. */
void rmp_rdma_set_atomic_be(rmp_rdma_conn *c, bool big_endian);
/* Measures it: READs the 8-byte-aligned remote word at raddr, then FAA 0
 * on it (which leaves it unchanged) and compares the bytes. 0 with the
 * flag set; -EAGAIN when the word cannot tell (its bytes read the same
 * both ways, or it kept changing); other errors as rmp_rdma_exec(). */
int rmp_rdma_probe_atomic_order(rmp_rdma_conn *c, uint64_t raddr, uint32_t rkey);

/* --- passive side --------------------------------------------------------- */

typedef struct rmp_rdma_listener rmp_rdma_listener; /* opaque */

/* Decide on a connect request from its private data. Return 0 to accept
 * (and *tag is kept with the connection), or a negative errno to reject;
 * the listener logs nothing itself, so log the reason here. */
typedef int rmp_rdma_accept_fn(void *arg, const void *pdata, uint8_t len, uint64_t *tag);
/* Told when an accepted connection ends (disconnect or error). */
typedef void rmp_rdma_closed_fn(void *arg, uint64_t tag);

/* Bind to host (an address of an RDMA device's netdev; NULL: any) and
 * port (0: an ephemeral port, see rmp_rdma_listener_port()). */
int rmp_rdma_listen(const char *host, uint16_t port, const struct rmp_rdma_opts *opts,
		    rmp_rdma_accept_fn *accept, rmp_rdma_closed_fn *closed, void *arg,
		    rmp_rdma_listener **out);
void rmp_rdma_listener_close(rmp_rdma_listener *l);
uint16_t rmp_rdma_listener_port(const rmp_rdma_listener *l);
/* PD for the regions this listener serves. Only valid when bound to a
 * specific address (the device is known then); -ENODEV style NULL else. */
struct ibv_pd *rmp_rdma_listener_pd(rmp_rdma_listener *l);
/* fd to watch for readability; then call dispatch (never blocks). */
int rmp_rdma_listener_fd(const rmp_rdma_listener *l);
int rmp_rdma_listener_dispatch(rmp_rdma_listener *l);
unsigned rmp_rdma_listener_connections(const rmp_rdma_listener *l);
/* Cut-off: disconnects every connection whose accept callback gave it
 * `tag` and destroys its QP and id now (closed is told of each), so that
 * nothing its peer still posts is executed here. Returns how many. */
unsigned rmp_rdma_listener_drop_tag(rmp_rdma_listener *l, uint64_t tag);

/* Register len bytes at addr on pd for local write and remote read, write
 * and atomics. -EOPNOTSUPP if the device has no atomics (atomic_cap). */
int rmp_rdma_reg_remote(struct ibv_pd *pd, void *addr, size_t len, struct ibv_mr **out);

/* The first RDMA device's netdev IPv4 address (e.g. rxe0 on eth0), for
 * a process that must tell others where to connect. -ENODEV if none. */
int rmp_rdma_local_addr(char *buf, size_t len);

#endif /* RMP_RDMA_H */
