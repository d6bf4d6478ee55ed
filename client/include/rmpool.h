/*
 * rmpool.h - librmpool: use memory that donor processes on several hosts
 * give to a pool, over RDMA.
 *
 * A consumer connects to the coordinator (rmp_connect), opens a pool by
 * name (rmp_pool_open: creates it when given a capacity, attaches to it
 * when given 0), allocates blocks of the pool's address space, reads and
 * writes them, and closes the pool. The pool's memory lives in donor
 * processes on any number of hosts; one block may span several donors.
 *
 * Data path: rmp_alloc and rmp_free run a lock-free buddy allocator with
 * RDMA READ, compare-and-swap and fetch-and-add on the coordinator's
 * metadata region; rmp_read and rmp_write are RDMA READ and WRITE to the
 * donors, cut at segment boundaries. No coordinator or donor CPU takes
 * part. The RDMA connections are made on first use of a pool (metadata)
 * and of each donor. Blocks are NOT zeroed on allocation (like malloc).
 *
 * Errors. Every function that can fail returns 0 or a negative
 * errno-style code, or one of the RMP_E* codes below (also negative).
 * rmp_strerror() explains any of them. When the coordinator refuses a
 * request it sends an errno value and one line of text; the function
 * returns that errno, negated, and rmp_last_error() returns the text.
 *
 * Nothing in this library prints or exits.
 *
 * Versions and layouts (the consumer API, DESIGN.md). RMPOOL_VERSION
 * (rmpool/version.h) is the version of this header, rmp_version() that
 * of the library loaded. Every exported function carries the symbol
 * version RMPOOL_1.0 (later ones get RMPOOL_1.1 and so on), so a program
 * built against a later library refuses to start on an older one rather
 * than failing at its first call. Every struct the caller fills and
 * passes in begins with `size_t size`, which the caller sets to the
 * sizeof the struct it was compiled with (the *_INIT macros do): a later
 * library adds fields only at the end and takes the missing ones as 0
 * (their default), and an older library accepts a larger struct when the
 * fields it does not know are all 0 (else -E2BIG: an option it cannot
 * honour must not be dropped silently). A size of 0, or below the
 * first published layout, is -EINVAL: the size was not set. (Structs the
 * library fills or allocates, like rmp_status, may grow at the end
 * without that: the library owns their memory.)
 *
 * Threads. An rmp_client and its pools may be used by several threads at
 * once. Requests to the coordinator on one client are serialized (one
 * request/reply exchange at a time); a background thread per client owns
 * the socket's reading side, dispatches replies and renews the leases of
 * the client's open pools at a third of their time to live. Long calls
 * (rmp_pool_open of a new pool) therefore delay other control calls on
 * the same client, never the lease renewals.
 *
 * Timeouts. Every wait is bounded (see struct rmp_connect_opts). When a
 * request times out, the client drops its connection (a late reply could
 * otherwise be taken for the answer to the next request) and connects
 * again by itself, as below.
 *
 * Coordinator restarts. When the connection to the coordinator drops (it
 * restarts, or the network fails), the client reconnects in the
 * background (100 ms doubling to 1 s between attempts, for as long as the
 * client lives), renews its pools' leases and fetches their segment
 * tables again. Meanwhile requests, rmp_alloc and rmp_free fail at once
 * with -RMP_EAWAY (one already on the wire when the connection went ends
 * with it too, within rdma_timeout_ms); reads and writes of blocks this
 * process allocated go on (they need only the donors). Once the pool is
 * back, every call works again: nobody has to reconnect or reopen.
 */
#ifndef RMPOOL_H
#define RMPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "rmpool/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RMP_API __attribute__((visibility("default")))
#else
#define RMP_API
#endif

typedef struct rmp_client rmp_client; /* opaque: one connection to a coordinator */
typedef struct rmp_pool rmp_pool;     /* opaque: an open pool (holds a lease) */

/*
 * A pool address handle. Layout:
 *   bits 63..58  order + 1 of the block (6 bits; 0 never names a block)
 *   bits 57..0   byte offset in the pool's space
 * `a + k`, for k below the block's size, addresses byte k of the block
 * (the offset field never carries into the order field because blocks
 * are aligned to their size). rmp_free() takes only the handle of the
 * block's first byte.
 */
typedef uint64_t rmp_addr;

#define RMP_ADDR_ORDER_SHIFT 58
#define RMP_ADDR_OFFSET_MASK ((UINT64_C(1) << RMP_ADDR_ORDER_SHIFT) - 1)
#define RMP_ADDR_MAKE(order, offset) \
	(((uint64_t)(order) + 1) << RMP_ADDR_ORDER_SHIFT | ((uint64_t)(offset) & RMP_ADDR_OFFSET_MASK))
/* The block order of a handle, or -1 for 0 (no block). */
#define RMP_ADDR_ORDER(a) ((int)((uint64_t)(a) >> RMP_ADDR_ORDER_SHIFT) - 1)
#define RMP_ADDR_OFFSET(a) ((uint64_t)(a) & RMP_ADDR_OFFSET_MASK)

/* The coordinator's control port when "host" has no ":port". */
#define RMP_DEFAULT_PORT 7400

/* rmpool's own error codes (returned negated, like errno values). Their
 * values are above any errno value. */
enum {
	RMP_EAUTH = 4096,   /* the handshake failed: secrets differ */
	/* The pool's lease expired: every call on the pool fails with it
	 * (the coordinator has cut this client off at the metadata and at
	 * every donor); close the pool, and attach again from a new
	 * connection (rmp_connect): the cut-off session stays refused. */
	RMP_ELEASE = 4097,
	RMP_EREMOTE = 4098, /* the coordinator refused; rmp_last_error() says why */
	RMP_ECORRUPT = 4099, /* pool metadata fails its invariants */
	/* The coordinator is away (its connection dropped; it restarts, or
	 * the network is down) or the pool is still being re-adopted after
	 * its restart. The library reconnects by itself in the background:
	 * try again later. Reads and writes of blocks this process allocated
	 * never return it (they need only the donors). */
	RMP_EAWAY = 4100,
	/* The handle lies inside another process's small-block cache (see
	 * rmp_pool_set_small_cache): only that process can free it or
	 * check it; nothing was changed. */
	RMP_ECACHED = 4101,
	/* A donor holding (part of) the range is out of service: it died, or
	 * its connection failed and could not be made again within the
	 * bound. rmp_last_error() names the donor, its host and why. Blocks
	 * wholly on other donors are not affected; rmp_free of a block on a
	 * lost donor releases the handle. */
	RMP_EDONOR = 4102
};

/* ---- version ------------------------------------------------------- */

/* The loaded library's version, "0.1.0" (RMPOOL_VERSION of the header it
 * was built from). Static storage; never NULL. */
RMP_API const char *rmp_version(void);

/* ---- connecting ---------------------------------------------------- */

/* All times in milliseconds; 0 takes the default in brackets. Start
 * from RMP_CONNECT_OPTS_INIT (it sets size; see "Versions and layouts"
 * above), then set what you need:
 *   struct rmp_connect_opts o = RMP_CONNECT_OPTS_INIT;
 *   o.connect_timeout_ms = 3000;
 * (C++: value-initialize it, then set o.size = sizeof o.) */
struct rmp_connect_opts {
	size_t size;                   /* sizeof(struct rmp_connect_opts): the caller's layout */
	unsigned connect_timeout_ms;   /* TCP connect plus handshake [10000] */
	unsigned request_timeout_ms;   /* one request/reply exchange [10000] */
	unsigned provision_timeout_ms; /* rmp_pool_open of a new pool [300000] */
	const char *ident;             /* how the coordinator logs us; NULL: librmpool/HOST/PID */
	int wait_mode;                 /* RDMA completions: enum rmp_wait_mode [RMP_WAIT_DEFAULT] */
	unsigned rdma_timeout_ms;      /* any one RDMA wait (connect, a batch) [10000] */
	/* New fields go here, at the end (0 must mean their default). */
};

#define RMP_CONNECT_OPTS_INIT { .size = sizeof(struct rmp_connect_opts) }

/* How the data path waits for RDMA completions. Spinning is fastest on
 * a host with cores to spare; in a 1-vCPU guest it starves Soft-RoCE,
 * which runs in the same CPU's softirq: block there. */
enum rmp_wait_mode {
	RMP_WAIT_DEFAULT = 0,  /* RMPOOL_WAIT (poll|event|adaptive), else adaptive */
	RMP_WAIT_ADAPTIVE,     /* spin briefly, then block on the completion channel */
	RMP_WAIT_POLL,         /* spin on the completion queue */
	RMP_WAIT_EVENT,        /* block on the completion channel */
};

/* Connects to the coordinator at "host:port" ("host" alone: port
 * RMP_DEFAULT_PORT; "[v6addr]:port" for IPv6) and authenticates with the
 * shared secret (NULL: the RMPOOL_SECRET environment variable).
 * Errors: -EINVAL (bad address or secret), -ETIMEDOUT, -ECONNREFUSED,
 * -EHOSTUNREACH, -RMP_EAUTH (secrets differ), -EPROTO (not an rmpool
 * coordinator), -ENOMEM. Name resolution uses the system resolver and
 * its own timeouts. */
RMP_API int rmp_connect(const char *coordinator, const char *secret, rmp_client **out);
/* Same, with options (opts may be NULL: all defaults). Also -EINVAL
 * when opts->size is not set, -E2BIG when opts comes from a later
 * header and sets a field this library does not have. */
RMP_API int rmp_connect_ex(const char *coordinator, const char *secret,
			   const struct rmp_connect_opts *opts, rmp_client **out);

/* Closes every pool still open on c (their handles become invalid),
 * stops the background thread and closes the connection. NULL is a no-op. */
RMP_API void rmp_disconnect(rmp_client *c);

/* The session id the coordinator gave this client (the id its leases
 * and RDMA tokens carry). */
RMP_API uint64_t rmp_client_id(const rmp_client *c);

/* ---- provisioning progress ------------------------------------------ */

enum rmp_progress_state {
	RMP_PROGRESS_DONOR_SPAWNED = 1, /* a donor process exists (pid set) */
	RMP_PROGRESS_DONOR_FAILED = 2,  /* one could not be started (error, text) */
	RMP_PROGRESS_DONOR_EXITED = 3,  /* one is gone */
};

struct rmp_progress {
	enum rmp_progress_state state;
	uint32_t donor_id;
	uint32_t pid;    /* on its host; 0 if unknown */
	int error;       /* positive errno value, 0 if none */
	const char *text; /* what the coordinator said; never NULL */
};

/* Called while rmp_pool_open() or rmp_pool_destroy() waits, in the
 * thread that called them, once per event the coordinator relays. */
typedef void rmp_progress_fn(void *arg, const struct rmp_progress *ev);

/* Sets (fn NULL: clears) the progress callback of c. */
RMP_API void rmp_client_set_progress(rmp_client *c, rmp_progress_fn *fn, void *arg);

/* ---- pools ------------------------------------------------------------ */

/* Opens pool `name` (1 to 64 printable bytes). capacity > 0 creates it:
 * the coordinator starts donor processes on its hosts until they hold
 * `capacity` usable bytes; the pool's address space is the next power
 * of two, its tail reserved (never handed out). A pool of that name must
 * not exist yet (-EEXIST). capacity 0 attaches to an existing pool
 * (-ENOENT if there is none).
 * The pool is leased to this client: the client renews the lease in the
 * background; if renewals stop (the process hangs or the network breaks)
 * the coordinator expires the lease and takes back the client's
 * allocations. Creating waits at most provision_timeout_ms.
 * Errors: -EINVAL, -EEXIST, -ENOENT, -ENOSPC (the hosts' budgets cannot
 * hold it), -ETIMEDOUT, -ENOTCONN, or what the coordinator says. */
RMP_API int rmp_pool_open(rmp_client *c, const char *name, uint64_t capacity, rmp_pool **out);

/* Gives up the lease and frees p (even when the coordinator cannot be
 * told: the lease then expires on its own). Frees in doubt (rmp_free)
 * are settled first, waiting up to rdma_timeout_ms. Allocations still
 * live carry the closed lease's tag, which no live consumer holds: the
 * coordinator's next reclaim on the pool frees them. Free what you
 * allocated before closing; handles do not outlive their lease. */
RMP_API int rmp_pool_close(rmp_pool *p);

/* Destroys pool `name`: its donor processes terminate and its memory
 * goes back to the hosts. Waits (bounded) for the coordinator's ACK.
 * Pools of that name open on this client are not closed: close them. */
RMP_API int rmp_pool_destroy(rmp_client *c, const char *name);

/* Forgets pool `name` whose donors are gone for good (lost, see
 * rmp_status), or that could not be re-adopted after a coordinator
 * restart: its records and its metadata go; nothing is terminated.
 * -EBUSY while any of its donors is alive or may come back (destroy it
 * instead), -ENOENT when there is no such pool. */
RMP_API int rmp_pool_forget(rmp_client *c, const char *name);

struct rmp_pool_donor {
	uint32_t donor_id;
	char host[256];     /* where its rdma_cm listener is */
	uint16_t port;
	uint64_t segments;  /* segments of the pool it backs */
	uint64_t bytes;     /* segments * segment size */
};

struct rmp_pool_info {
	char name[65];
	uint32_t pool_id;
	uint64_t capacity;     /* usable bytes in service: asked for at creation, less those
				* on lost donors */
	uint64_t space;        /* 2^M: the address space */
	uint64_t backed;       /* bytes with donor memory behind them */
	uint64_t min_block;
	uint64_t segment_size;
	uint64_t segtab_version;
	uint64_t metadata_bytes; /* allocator metadata region on the coordinator */
	char coordinator_host[256]; /* its rdma_cm listener */
	uint16_t coordinator_port;
	uint64_t lease_id;
	uint32_t lease_ttl_ms;
	/* 1 once the coordinator said so, or while no grant has come for a
	 * whole lease time (renewals go on: a stalled coordinator grants again) */
	int lease_expired;
	size_t n_hosts;        /* distinct donor hosts */
	size_t n_donors;
	struct rmp_pool_donor *donors;
	/* Donors the coordinator took out of service (dead): operations
	 * touching their segments fail with -RMP_EDONOR. */
	uint32_t donors_lost;
	uint64_t lost_bytes;   /* bytes of the space on them */
	/* Frees of this process's blocks cut in the middle by an RDMA error
	 * (rmp_free returned 0: the library settles them itself, see
	 * rmp_free), since the pool was opened, and of them not settled yet. */
	uint64_t frees_in_doubt;
	uint32_t frees_unsettled;
	/* A reclaim of another consumer's memory that kept finding this
	 * pool's operations in flight asked for quiet moments (a hold: no
	 * allocation or free starts for up to 1 s, typically 150 ms): the
	 * holds received, the allocations and frees that waited in one, and
	 * the ms they waited in all. */
	uint64_t holds, hold_waits, hold_wait_ms;
};

/* What the client knows of p (from its last segment table). Free with
 * rmp_pool_info_free(). -ENOMEM. */
RMP_API int rmp_pool_info(rmp_pool *p, struct rmp_pool_info **out);
RMP_API void rmp_pool_info_free(struct rmp_pool_info *info);

/* ---- data ------------------------------------------------------------- */

/* Allocates a block of at least size bytes (a power of two, at least the
 * pool's minimum block) and returns its handle. Blocks are NOT zeroed
 * (like malloc). -EINVAL (size 0 or above the pool's usable capacity),
 * -ENOMEM (no free block that large), -EAGAIN (the memory that could
 * serve is held in passing by another client stalled in the middle of a
 * split or merge; the call does not wait for it: try again; also when
 * every engine context of this process gave its owner-record slot up
 * after RDMA errors mid-operation and the coordinator reset none within
 * rdma_timeout_ms), -RMP_EAWAY
 * (the coordinator is away or the pool is being re-adopted: try again),
 * an RDMA error (-ETIMEDOUT, -EIO, -ECONNREFUSED, -EOPNOTSUPP: a device
 * without atomics). */
RMP_API int rmp_alloc(rmp_pool *p, uint64_t size, rmp_addr *out);
/* Frees the block whose first byte is a. -EINVAL for anything else,
 * including a second free, also when another process freed it: that is
 * decided from the pool's shared metadata. Nothing changes then.
 * -RMP_EAWAY while the coordinator is away (nothing was sent): the block
 * stays allocated (and readable); free it again later. -EAGAIN as for
 * rmp_alloc (every engine context waits for the coordinator): the block
 * stays allocated.
 * A free of a block this process allocated that an RDMA error cuts in
 * the middle (the coordinator restarting, the network failing) may or
 * may not have landed, and a retry could free the block for somebody
 * who was given it since: it returns 0 and the library settles it
 * itself, exactly once - once the coordinator has reset the engine
 * context's record (its scan, within about 1 s of the metadata being
 * reachable again), the block is freed if it still carries this
 * process's tag, and left alone if the cut free had landed. Do not free
 * it again. rmp_pool_close settles what is left first (within
 * rdma_timeout_ms); a block still unsettled then carries the closed
 * lease's tag and the coordinator's next reclaim frees it.
 * rmp_pool_info counts them (frees_in_doubt, frees_unsettled). A free of
 * another process's block (a copied handle) cut in the middle returns
 * the error: it was freed (the coordinator finishes a free whose tag
 * lock landed) or it was not, and it is left to the caller. */
RMP_API int rmp_free(rmp_pool *p, rmp_addr a);
/* Copies len > 0 bytes from src to the pool at dst (= a block's handle
 * plus an offset), or from src to dst for rmp_read. The range must lie
 * inside dst's block: -EINVAL otherwise, and for NULL buffers or a handle
 * that is not a pool address (liveness is not checked: that would cost a
 * round trip per call). A range over several donors moves in parallel.
 * -EIO / -ETIMEDOUT when a donor does not answer (never wrong data):
 * -ETIMEDOUT within rdma_timeout_ms, and then at once for 1 s (the
 * donor's back-off) before the donor is tried again; -RMP_EDONOR at once
 * when a donor behind the range is out of service (its process died).
 * rmp_last_error() names the donor and its host. */
RMP_API int rmp_write(rmp_pool *p, rmp_addr dst, const void *src, uint64_t len);
RMP_API int rmp_read(rmp_pool *p, void *dst, rmp_addr src, uint64_t len);

/* ---- registered buffers (zero copy) ------------------------------------
 *
 * rmp_read/rmp_write copy through a registered bounce buffer per donor
 * connection. A registered buffer is the caller's own memory, posted from
 * and to directly: no copy. Registration is lazy: the memory is
 * registered with a donor's connection (pinned, one RDMA memory region per
 * donor connection) the first time a transfer on that donor uses it, so
 * the first transfer per donor pays for it and bad memory shows up then.
 *
 * The memory [addr, addr+len) must be readable and writable and stay
 * valid until rmp_buffer_deregister() returns (or the pool is closed,
 * which deregisters the pool's buffers and invalidates their handles).
 * A buffer belongs to the pool it was registered on.
 *
 * Threads: a buffer may be used by several threads and operations at
 * once (disjoint ranges give defined results; overlapping writes into it
 * by concurrent reads, or changes during a write, give undefined bytes,
 * never a crash). rmp_buffer_deregister() refuses (-EBUSY) while a
 * transfer still uses the buffer or an asynchronous operation on it has
 * not been reaped with rmp_op_wait(); a handle
 * that was deregistered or never registered on this pool is refused with
 * -EINVAL by every call (but as with free(), a new buffer may reuse the
 * address of an old handle). Do not call rmp_buffer_deregister() and
 * rmp_pool_close() on the same pool at the same time.
 */
typedef struct rmp_buffer rmp_buffer; /* opaque */

/* 0 and *out, -EINVAL (NULL address, len 0), -ENOMEM, or an error of the
 * pool's data path setup. */
RMP_API int rmp_buffer_register(rmp_pool *p, void *addr, size_t len, rmp_buffer **out);
/* Removes every memory region of b and frees the handle. -EINVAL (NULL,
 * not a live buffer), -EBUSY (in use: wait for its operations first). */
RMP_API int rmp_buffer_deregister(rmp_buffer *b);
/* rmp_write / rmp_read from/to bytes [off, off+len) of b. Errors as
 * rmp_write / rmp_read, and -EINVAL when off+len runs past the buffer or
 * b is not a buffer registered on p; -ENOMEM/-EFAULT/... when the memory
 * cannot be registered with a donor's connection. */
RMP_API int rmp_write_buf(rmp_pool *p, rmp_addr dst, rmp_buffer *b, size_t off, uint64_t len);
RMP_API int rmp_read_buf(rmp_pool *p, rmp_buffer *b, size_t off, rmp_addr src, uint64_t len);

/* ---- asynchronous operations -------------------------------------------
 *
 * rmp_*_async check their arguments at once (and return those errors
 * like the synchronous calls, with *op NULL), then queue the transfer and
 * return 0 with an operation handle. A few worker threads per pool
 * (started on the first asynchronous call, stopped by rmp_pool_close) run
 * queued operations, several at once: operations on different donors
 * move in parallel, operations on one donor take its connection in turn.
 * Order between operations in flight is not defined: do not let two of
 * them overlap where one writes.
 *
 * The local memory (src/dst, or the registered buffer, which stays
 * referenced: rmp_buffer_deregister says -EBUSY) must stay valid and
 * untouched until the operation is reaped by rmp_op_wait(). Every operation must be reaped with rmp_op_wait(), from any
 * one thread; rmp_op_test() may be called from any thread before that.
 * Every operation finishes in bounded time (each RDMA wait is bounded by
 * rdma_timeout_ms). rmp_pool_close() cancels queued operations, waits
 * for running ones and frees all handles: reap them before closing, and
 * never wait on an operation while its pool is being closed.
 */
typedef struct rmp_op rmp_op; /* opaque */

RMP_API int rmp_write_async(rmp_pool *p, rmp_addr dst, const void *src, uint64_t len, rmp_op **op);
RMP_API int rmp_read_async(rmp_pool *p, void *dst, rmp_addr src, uint64_t len, rmp_op **op);
RMP_API int rmp_write_buf_async(rmp_pool *p, rmp_addr dst, rmp_buffer *b, size_t off, uint64_t len,
				rmp_op **op);
RMP_API int rmp_read_buf_async(rmp_pool *p, rmp_buffer *b, size_t off, rmp_addr src, uint64_t len,
			       rmp_op **op);
/* Waits at most timeout_ms (0: do not wait) for op. When it has finished:
 * frees op and returns its result (0, or what the synchronous call would
 * have returned; rmp_last_error() then has the detail in this thread).
 * -EINPROGRESS when it has not finished in time: op stays valid, wait
 * again. -EINVAL for NULL. */
RMP_API int rmp_op_wait(rmp_op *op, unsigned timeout_ms);
/* Never blocks: -EINPROGRESS while op runs or is queued, else its result
 * (op stays valid until rmp_op_wait). */
RMP_API int rmp_op_test(rmp_op *op);

/* What this process's allocator issued on p, summed over its threads:
 * remote round trips (each one batch of RDMA work requests waited for)
 * and failed CAS (lost races), per alloc and per free. */
struct rmp_pool_stats {
	uint64_t allocs, alloc_round_trips, alloc_cas_failed, alloc_wrs;
	uint64_t frees, free_round_trips, free_cas_failed, free_wrs;
}; /* wrs: work requests (READ, CAS, FAA) issued */
RMP_API int rmp_pool_stats(rmp_pool *p, struct rmp_pool_stats *out);
/*
 * The small-block cache, off by default. With max_size > 0, allocations
 * of up to max_size bytes (at most 64 KiB) are carved, inside this
 * process, out of 1 MiB blocks claimed from the pool once: most of them,
 * and their frees, cost no round trip. Their handles work like any other
 * in this process (reads, writes, frees; a double free is -EINVAL). The
 * pool's metadata sees only the 1 MiB block, so another process cannot
 * free or check a carved handle: it gets -RMP_ECACHED (and the block
 * stays as it is). Turn it on for memory this process keeps to itself.
 * max_size 0 stops carving (blocks carved already stay valid). Held
 * blocks go back to the pool when it closes (carved handles die then).
 * The environment variable RMPOOL_SMALL_CACHE=SIZE (e.g. 32K) turns it
 * on for every pool of the process. -EINVAL for a size above 64 KiB.
 */
#define RMP_SMALL_CACHE_MAX (64u << 10)
RMP_API int rmp_pool_set_small_cache(rmp_pool *p, uint64_t max_size);
/* What the cache did. The caller sets size to sizeof(struct
 * rmp_small_cache_stats); the library fills no more than that (new
 * fields go at the end) and sets size to what it filled. */
struct rmp_small_cache_stats {
	size_t size;
	uint64_t max_size;                     /* carved sizes, 0: off */
	uint64_t carved_allocs, carved_frees;  /* served with no round trip */
	uint64_t chunks_claimed, chunks_released;
	uint64_t chunks_held, bytes_held;      /* 1 MiB blocks held now */
	uint64_t carved_live, carved_live_bytes;
};
RMP_API int rmp_pool_small_cache_stats(rmp_pool *p, struct rmp_small_cache_stats *out);

/* The donor behind segment `segment` of p (RMP_NO_DONOR: reserved tail). */
#define RMP_NO_DONOR UINT32_MAX
RMP_API int rmp_pool_segment_donor(rmp_pool *p, uint64_t segment, uint32_t *donor_id);

/* ---- checking a pool's metadata -------------------------------------- */

/* What rmp_pool_check saw. The caller sets size to sizeof(struct
 * rmp_pool_check_report) before the call; the library fills no more
 * than that many bytes (and no more than its own report has) and sets
 * size to what it filled, so a program built against this header keeps
 * working with a later library whose report has grown (new fields go at
 * the end), and the other way round. */
struct rmp_pool_check_report {
	size_t size;             /* set by the caller (see above) */
	uint64_t bytes_read;     /* the metadata region's size */
	unsigned max_order;      /* the space is 2^max_order bytes */
	unsigned min_order;      /* the smallest block is 2^min_order bytes */
	uint64_t usable;         /* bytes not reserved, from the region's header */
	uint64_t free_bytes, alloc_bytes, reserved_bytes;
	uint64_t read_ms;        /* connect and read */
	int valid;               /* 1: every invariant holds (state RMP_CHECK_VALID) */
	char error[200];         /* the first violation, what lags, or why the region could not be read */
	/* Added with the classification (the fields above are the first
	 * version's and stay where they are): */
	int state;               /* RMP_CHECK_VALID, RMP_CHECK_LAGGING or RMP_CHECK_CORRUPT */
	unsigned tries;          /* snapshots read until one was quiet (at most RMP_CHECK_TRIES) */
	unsigned busy_slots;     /* consumer contexts in an operation, or dead or abandoned in one */
	unsigned abandoned_slots; /* of them, given up by their client after an RDMA error */
	unsigned drift_counts;   /* free counts above the free blocks below them */
	uint64_t drift_total;    /* by how much, summed */
	unsigned moves;          /* splits and merges in transit */
	unsigned holes;          /* pieces of memory in no block (a split or merge in passing) */
	uint64_t hole_bytes;
	unsigned odd_tags;       /* owner tags in passing (pending, locked, left behind) */
	unsigned untagged_busy;  /* allocated blocks with no owner tag that a busy slot names */
};
/* rmp_pool_check_report.state: */
#define RMP_CHECK_VALID   0 /* every invariant holds, exactly */
#define RMP_CHECK_LAGGING 1 /* only what operations in flight, or a dead consumer not yet
			     * reclaimed, leave (busy slots, counts above their blocks, moves
			     * in transit, holes): not wrong; check again later */
#define RMP_CHECK_CORRUPT 2 /* something no operation in progress and no dead consumer leaves */
#define RMP_CHECK_TRIES   5 /* snapshots a check reads at most, 20 ms apart */

/* Connects to p's allocator metadata region over RDMA (a METADATA token
 * for this pool and client), reads all of it and walks it with the
 * buddy checker: every byte in exactly one free, allocated or reserved
 * block, no two free buddies, free counts consistent. Each snapshot is
 * the consumers' slots, the region, the slots again; it is read again
 * (up to RMP_CHECK_TRIES, 20 ms apart) until the slots agree and none is
 * busy, or two reads agree word for word, and the last one is
 * classified: r->state says valid, lagging (what operations in flight or
 * a dead consumer awaiting reclaim leave; never called corrupt) or
 * corrupt. A pool that changed under every read is lagging. timeout_ms
 * bounds each RDMA step (0: rdma_timeout_ms of the client). 0 with *r
 * filled (r->valid is 1 only for the state valid; a report of the
 * first version's size gets that version's fields); -EINVAL (NULL, or
 * r->size below the first version's report), an
 * RDMA error (-ETIMEDOUT, -ECONNREFUSED for a refused token, ...),
 * -EPROTO (not buddy metadata), -ENOSYS (built without RDMA). */
RMP_API int rmp_pool_check(rmp_pool *p, unsigned timeout_ms, struct rmp_pool_check_report *r);

/* ---- status ----------------------------------------------------------- */

/* A pool's state in rmp_status (the values are the wire's). */
enum rmp_pool_state {
	RMP_POOL_STATE_CREATING = 1,   /* its donors are being provisioned */
	RMP_POOL_STATE_READY = 2,      /* attachable */
	RMP_POOL_STATE_DESTROYING = 3, /* its donors are being terminated */
	RMP_POOL_STATE_RECOVERING = 4, /* re-adopted after a coordinator restart: waiting for its
					* donors to register again (attach: -EAGAIN meanwhile) */
	RMP_POOL_STATE_LOST = 5,       /* could not be re-adopted (note says why; attach: -EIO);
					* rmp_pool_forget() removes it */
	RMP_POOL_STATE_DEGRADED = 6,   /* attachable, but donors are lost: their segments are out
					* of service, capacity is lower by lost_bytes */
};

struct rmp_status_pool {
	char name[65];
	uint32_t pool_id;
	uint64_t capacity;
	uint64_t space;
	uint64_t free_bytes;
	uint32_t clients;
	uint32_t donors;
	uint64_t segtab_version;
	enum rmp_pool_state state;
	uint32_t donors_away; /* lost their coordinator link; still serving, expected back */
	uint32_t donors_lost; /* died, or not back in time: their segments are unbacked */
	uint64_t lost_bytes;  /* of the space, on lost donors */
	char note[201];	      /* why it is lost or degraded; "" */
};

struct rmp_status_host {
	char host[256];
	uint32_t donors;
	uint64_t budget; /* bytes the host may give */
	uint64_t used;   /* bytes its donors hold */
};

struct rmp_status {
	uint64_t uptime_ms;
	uint64_t generation;  /* the coordinator's, raised at each of its starts */
	uint64_t capacity;   /* in all pools */
	uint64_t free_bytes; /* in all pools */
	uint32_t clients;
	size_t n_pools;
	struct rmp_status_pool *pools;
	size_t n_hosts;
	struct rmp_status_host *hosts;
};

/* Asks the coordinator for its pools and hosts. Free with
 * rmp_status_free(). */
RMP_API int rmp_status(rmp_client *c, struct rmp_status **out);
RMP_API void rmp_status_free(struct rmp_status *s);

/* ---- errors ----------------------------------------------------------- */

/* Text for any code these functions return (negative or positive).
 * Never NULL; static storage; thread-safe. */
RMP_API const char *rmp_strerror(int rc);

/* The detail of the last failure this thread saw, like errno: the
 * coordinator's text for a refused request, or what went wrong locally
 * ("connect 10.0.0.1:7470: Connection refused"). c selects failures on
 * that client; NULL takes the thread's last failure whatever its client
 * (use it after rmp_connect failed). "" when there is none. */
RMP_API const char *rmp_last_error(const rmp_client *c);

#ifdef __cplusplus
}
#endif

#endif /* RMPOOL_H */
