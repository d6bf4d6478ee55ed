/*
 * nbdkit-rmpool.c - an nbdkit plugin whose disk is pool memory:
 *
 *   nbdkit rmpool pool=NAME size=SIZE [coordinator=HOST:PORT]
 *                 [secret-file=FILE] [chunk=SIZE] [buffers=N]
 *
 * so that unmodified programs use an rmpool pool through the kernel's
 * own NBD client (a file system on /dev/nbd0, swap), with no kernel
 * change. nbdkit brings the protocol, TLS and multi-connection; this
 * file is built on the public rmpool.h only (and common/'s secret
 * reader, as the CLI).
 *
 * The disk model:
 *   - The disk is cut into chunks (chunk=, 1 MiB by default: a power of
 *     two, at least the pool's minimum block), each one pool block,
 *     allocated on its first write (thin): a chunk never written holds
 *     no pool memory and reads as zeros. Pool blocks are not zeroed on
 *     allocation (they may hold an earlier tenant's bytes), so a chunk
 *     is zeroed over RDMA when it is allocated, before the write that
 *     needed it: sectors never written read as zeros, never as anybody
 *     else's bytes.
 *   - Trim and write-zeroes of whole chunks give them back to the pool
 *     (they read as zeros again); a partial trim changes nothing (trim
 *     is advisory), a partial write-zeroes writes zeros.
 *   - The chunks belong to the plugin, not to a connection: data
 *     survives `nbd-client -d` and a reconnect while nbdkit runs, and
 *     every connection sees every other's completed writes (multi-conn
 *     safe). When nbdkit exits the chunks are freed and the pool is
 *     closed: the disk's contents are gone (pool memory is volatile).
 *   - A write returns once its bytes are in the donors' memory, so flush
 *     has nothing to do and FUA is native; neither makes anything
 *     survive the death of a donor process or host: that needs a
 *     replicated pool.
 *   - A donor lost (dead, or out of service) fails the requests that
 *     touch its memory with EIO, never with wrong data.
 * Requests run in parallel (nbdkit's parallel thread model; librmpool is
 * thread-safe); a request of one piece (at most a chunk and a slot) is
 * done in nbdkit's thread, a longer one issues its pieces as
 * asynchronous operations and waits for all of them. The bytes move
 * through registered buffers of the plugin's own (buffers=N slots of
 * 1 MiB, registered once): copied into a slot and written from it,
 * read into it and copied out, so librmpool posts them as they are and
 * its donor lock never covers a copy.
 *
 * Swap on the disk: mlock=true locks nbdkit's memory (mlockall after the
 * fork), so that the server is never paged out to the disk it serves;
 * run it outside the memory cgroup that swaps.
 *
 * Start-up: the pool must exist (it is not created here: an unknown pool
 * is an error, and nothing is created). The configuration is checked
 * against the coordinator before nbdkit forks into the background (so a
 * wrong secret, an unknown pool or a size larger than the pool is an
 * error on nbdkit's command line), and the connection the disk uses is
 * made after the fork (librmpool runs a background thread, which a fork
 * would lose).
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rmpool.h"
#include "secret.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#define DEFAULT_COORDINATOR "127.0.0.1:7400"
#define DEFAULT_CHUNK (1u << 20)
#define MAX_CHUNK (1u << 30)
/* Chunks share STRIPES locks: a read or write of a chunk holds its
 * stripe for reading, its allocation and its release for writing. */
#define STRIPES 64u
/* Pieces of one request in flight at most (the rest wait their turn). */
#define MAX_PIECES STRIPES
/* Registered request buffers (buffers=N): N slots of SLOT_MAX bytes (or
 * of a chunk, if smaller), at most MAX_SLOTS (one bit each in a word). */
#define SLOT_MAX (1u << 20)
#define MAX_SLOTS 64u
#define DEFAULT_SLOTS 16u
/* Each operation's wait: librmpool's own RDMA bound answers first. */
#define OP_WAIT_MS 60000u

static struct {
	char *pool, *coordinator, *secret_file;
	int64_t size;
	uint64_t chunk;
	bool mlock; /* mlock=true: all of nbdkit's memory locked (swap on the disk) */
	unsigned nslots; /* buffers=N */
	uint64_t segment_size; /* the pool's: a chunk's donor, for the debug log */
	char *secret;
	/* after the fork */
	rmp_client *c;
	rmp_pool *p;
	uint64_t nchunks;
	_Atomic rmp_addr *chunks; /* 0: never written (or trimmed): zeros */
	pthread_rwlock_t stripe[STRIPES];
	bool stripes_ready;
	const uint8_t *zeros; /* a chunk of zeros */
	rmp_buffer *zeros_buf; /* d.zeros, registered */
	/* Registered slots for the requests' bytes: a piece is copied into a
	 * free slot and written from it, or read into it and copied out, so
	 * librmpool posts it with no bounce buffer of its own (whose donor
	 * lock would cover the copy as well); a piece that finds no free
	 * slot goes through librmpool's bounce buffer instead. */
	uint8_t *slots;
	rmp_buffer *slots_buf;
	uint64_t slot_bytes;
	_Atomic uint64_t slots_free; /* bit i: slot i is free */
	_Atomic uint64_t via_slot, via_bounce; /* pieces moved each way (nbdkit -v, at exit) */
} d = { .chunk = DEFAULT_CHUNK, .nslots = DEFAULT_SLOTS };

static void rmpool_unload(void)
{
	if (d.p)
		nbdkit_debug("pieces moved: %" PRIu64 " through registered buffers, %" PRIu64 " through librmpool's "
			     "bounce buffers", atomic_load(&d.via_slot), atomic_load(&d.via_bounce));
	if (d.p) {
		for (uint64_t i = 0; i < d.nchunks; i++)
			if (d.chunks[i])
				(void)rmp_free(d.p, d.chunks[i]);
		(void)rmp_pool_close(d.p);
	}
	rmp_disconnect(d.c);
	if (d.stripes_ready)
		for (unsigned i = 0; i < STRIPES; i++)
			pthread_rwlock_destroy(&d.stripe[i]);
	free((void *)d.zeros);
	free(d.slots);
	free(d.chunks);
	rmp_secret_free(d.secret);
	free(d.pool);
	free(d.coordinator);
	free(d.secret_file);
}

static int set_string(char **dst, const char *key, const char *value)
{
	if (*dst) {
		nbdkit_error("%s= given twice", key);
		return -1;
	}
	if (!*value) {
		nbdkit_error("%s= is empty", key);
		return -1;
	}
	*dst = strdup(value);
	if (!*dst) {
		nbdkit_error("%s: %m", key);
		return -1;
	}
	return 0;
}

static int rmpool_config(const char *key, const char *value)
{
	if (strcmp(key, "pool") == 0)
		return set_string(&d.pool, key, value);
	if (strcmp(key, "coordinator") == 0)
		return set_string(&d.coordinator, key, value);
	if (strcmp(key, "secret-file") == 0)
		return set_string(&d.secret_file, key, value);
	if (strcmp(key, "size") == 0) {
		if ((d.size = nbdkit_parse_size(value)) <= 0) {
			if (d.size == 0)
				nbdkit_error("size=0: the disk needs at least one byte");
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "chunk") == 0) {
		int64_t v = nbdkit_parse_size(value);
		if (v < 0)
			return -1;
		if (v < 4096 || v > MAX_CHUNK || (v & (v - 1)) != 0) {
			nbdkit_error("chunk=%s: a power of two from 4K to 1G", value);
			return -1;
		}
		d.chunk = (uint64_t)v;
		return 0;
	}
	if (strcmp(key, "buffers") == 0) {
		char *end;
		errno = 0;
		unsigned long v = strtoul(value, &end, 10);
		if (errno || end == value || *end || v > MAX_SLOTS || value[0] == '-') {
			nbdkit_error("buffers=%s: a count from 0 (no registered buffers: librmpool's bounce "
				     "buffers) to %u", value, MAX_SLOTS);
			return -1;
		}
		d.nslots = (unsigned)v;
		return 0;
	}
	if (strcmp(key, "mlock") == 0) {
		int v = nbdkit_parse_bool(value);
		if (v < 0)
			return -1;
		d.mlock = v;
		return 0;
	}
	nbdkit_error("unknown parameter '%s' (pool, size, coordinator, secret-file, chunk, buffers, mlock)", key);
	return -1;
}

#define rmpool_config_help                                                                                        \
	"pool=NAME            (required) an existing rmpool pool: the disk's memory\n"                              \
	"size=SIZE            (required) the disk's size (e.g. 256M); at most the pool's capacity\n"               \
	"coordinator=HOST:PORT the coordinator (default $RMPOOL_COORDINATOR, else " DEFAULT_COORDINATOR ")\n"      \
	"secret-file=FILE     the shared secret (default $RMPOOL_SECRET_FILE, else $RMPOOL_SECRET,\n"              \
	"                     else /etc/rmpool/secret)\n"                                                          \
	"chunk=SIZE           pool block per piece of the disk, allocated on first write (default 1M)\n"            \
	"buffers=N            registered 1M buffers for requests' bytes, 0 to 64 (default 16;\n"             \
	"                     0: every request through librmpool's bounce buffers)\n"                        \
	"mlock=true           lock all of nbdkit's memory (swap on the disk: the server must never be\n"        \
	"                     paged out itself; needs RLIMIT_MEMLOCK or CAP_IPC_LOCK)"

static int rmpool_config_complete(void)
{
	if (!d.pool || d.size <= 0) {
		nbdkit_error("pool= and size= are required (nbdkit rmpool --help)");
		return -1;
	}
	if (!d.coordinator) {
		const char *e = getenv("RMPOOL_COORDINATOR");
		if (set_string(&d.coordinator, "coordinator", e && *e ? e : DEFAULT_COORDINATOR))
			return -1;
	}
	const char *file = d.secret_file;
	if (!file) {
		const char *e = getenv("RMPOOL_SECRET_FILE");
		if (e && *e)
			file = e;
		else if (!getenv("RMPOOL_SECRET") && access("/etc/rmpool/secret", R_OK) == 0)
			file = "/etc/rmpool/secret";
	}
	if (file) {
		char err[256];
		bool loose = false;
		if (rmp_secret_read_file_dup(file, &d.secret, &loose, err, sizeof(err)) != 0) {
			nbdkit_error("%s", err);
			return -1;
		}
		if (loose)
			nbdkit_debug("secret file %s can be read by group or others (chmod 600 it)", file);
	}
	return 0;
}

/* Connects and attaches to the pool; checks the disk fits. 0 or -1 (said). */
static int attach(rmp_client **cp, rmp_pool **pp, uint64_t *min_block)
{
	int rc = rmp_connect(d.coordinator, d.secret, cp);
	if (rc) {
		nbdkit_error("coordinator %s: %s (%s)", d.coordinator, rmp_strerror(rc), rmp_last_error(NULL));
		return -1;
	}
	rc = rmp_pool_open(*cp, d.pool, 0, pp);
	if (rc) {
		nbdkit_error("pool %s: %s%s (%s)", d.pool, rmp_strerror(rc),
			     rc == -ENOENT ? ": no such pool (create it with `rmpool pool create`)" : "",
			     rmp_last_error(*cp));
		rmp_disconnect(*cp);
		*cp = NULL;
		return -1;
	}
	struct rmp_pool_info *in;
	if ((rc = rmp_pool_info(*pp, &in)) != 0) {
		nbdkit_error("pool %s: %s", d.pool, rmp_strerror(rc));
		goto fail;
	}
	uint64_t cap = in->capacity, mb = in->min_block;
	d.segment_size = in->segment_size;
	rmp_pool_info_free(in);
	uint64_t need = ((uint64_t)d.size + d.chunk - 1) / d.chunk * d.chunk;
	if (d.chunk < mb) {
		nbdkit_error("chunk=%" PRIu64 " is below pool %s's minimum block of %" PRIu64, d.chunk, d.pool, mb);
		goto fail;
	}
	if (need > cap) {
		nbdkit_error("size=%" PRId64 " (%" PRIu64 " bytes in chunks of %" PRIu64 ") is larger than pool %s's "
			     "capacity of %" PRIu64 " bytes", d.size, need, d.chunk, d.pool, cap);
		goto fail;
	}
	*min_block = mb;
	return 0;
fail:
	rmp_pool_close(*pp);
	rmp_disconnect(*cp);
	*pp = NULL;
	*cp = NULL;
	return -1;
}

/* Before the fork: the configuration against the coordinator, so that a
 * mistake is an error on the command line. */
static int rmpool_get_ready(void)
{
	rmp_client *c;
	rmp_pool *p;
	uint64_t mb;

	if (attach(&c, &p, &mb))
		return -1;
	rmp_pool_close(p);
	rmp_disconnect(c);
	return 0;
}

/* After the fork: the connection the disk uses. */
static int rmpool_after_fork(void)
{
	uint64_t mb;

	/* Swap on the disk: a page of the server paged out to the disk it
	 * serves could never come back (the kernel waits for the server,
	 * the server for the page). Locked now and for what comes. */
	if (d.mlock && mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
		nbdkit_error("mlock=true: mlockall: %m (raise RLIMIT_MEMLOCK: ulimit -l unlimited)");
		return -1;
	}
	if (attach(&d.c, &d.p, &mb))
		return -1;
	d.nchunks = ((uint64_t)d.size + d.chunk - 1) / d.chunk;
	d.chunks = calloc(d.nchunks, sizeof(*d.chunks));
	d.zeros = calloc(1, d.chunk);
	if (!d.chunks || !d.zeros) {
		nbdkit_error("out of memory for %" PRIu64 " chunks", d.nchunks);
		return -1;
	}
	int rc = rmp_buffer_register(d.p, (void *)d.zeros, d.chunk, &d.zeros_buf);
	if (rc) {
		nbdkit_error("registering %" PRIu64 " bytes of zeros: %s", d.chunk, rmp_strerror(rc));
		return -1;
	}
	d.slot_bytes = d.chunk < SLOT_MAX ? d.chunk : SLOT_MAX;
	if (d.nslots) {
		size_t bytes = (size_t)d.nslots * d.slot_bytes;
		d.slots = aligned_alloc(4096, bytes);
		if (!d.slots) {
			nbdkit_error("buffers=%u: out of memory for %zu bytes", d.nslots, bytes);
			return -1;
		}
		memset(d.slots, 0, bytes);
		if ((rc = rmp_buffer_register(d.p, d.slots, bytes, &d.slots_buf)) != 0) {
			nbdkit_error("buffers=%u: registering %zu bytes: %s", d.nslots, bytes, rmp_strerror(rc));
			return -1;
		}
		atomic_store(&d.slots_free, d.nslots == 64 ? UINT64_MAX : (UINT64_C(1) << d.nslots) - 1);
	}
	for (unsigned i = 0; i < STRIPES; i++)
		pthread_rwlock_init(&d.stripe[i], NULL);
	d.stripes_ready = true;
	nbdkit_debug("pool %s: a %" PRId64 "-byte disk in %" PRIu64 " chunks of %" PRIu64 " bytes; %u registered "
		     "buffers of %" PRIu64 " bytes", d.pool, d.size, d.nchunks, d.chunk, d.nslots, d.slot_bytes);
	return 0;
}

static void *rmpool_open(int readonly)
{
	(void)readonly;
	return &d; /* one disk for every connection */
}

static int64_t rmpool_get_size(void *h)
{
	(void)h;
	return d.size;
}

static int rmpool_can_multi_conn(void *h)
{
	(void)h;
	return 1;
}

static int rmpool_can_fua(void *h)
{
	(void)h;
	return NBDKIT_FUA_NATIVE;
}

static int rmpool_can_flush(void *h)
{
	(void)h;
	return 1;
}

static int rmpool_can_trim(void *h)
{
	(void)h;
	return 1;
}

static int rmpool_can_zero(void *h)
{
	(void)h;
	return 1;
}

/* librmpool's error as the errno nbdkit sends: a lost donor or an RDMA
 * error is EIO, no memory ENOSPC. */
static int to_errno(int rc)
{
	if (rc == -ENOMEM)
		return ENOSPC;
	if (rc == -EINVAL || rc == -E2BIG)
		return EINVAL;
	return EIO;
}

static int fail(const char *what, uint64_t off, int rc)
{
	nbdkit_error("%s at byte %" PRIu64 ": %s (%s)", what, off, rmp_strerror(rc), rmp_last_error(d.c));
	nbdkit_set_error(to_errno(rc));
	return -1;
}

static pthread_rwlock_t *stripe_of(uint64_t ci)
{
	return &d.stripe[ci % STRIPES];
}

/* Chunk ci for a write, returned with its stripe held for reading:
 * allocated and zeroed now if it never was. That takes the stripe for
 * writing, which a thread holding other stripes must not wait for (two
 * such threads would wait for each other): with `holding`, 1 says "let
 * go of yours and ask again". 0, 1, or -1 (said). */
static int chunk_for_write(uint64_t ci, rmp_addr *out, bool holding)
{
	pthread_rwlock_t *l = stripe_of(ci);
	pthread_rwlock_rdlock(l);
	rmp_addr a = atomic_load_explicit(&d.chunks[ci], memory_order_acquire);
	if (a) {
		*out = a;
		return 0;
	}
	pthread_rwlock_unlock(l);
	if (holding)
		return 1;
	pthread_rwlock_wrlock(l);
	a = atomic_load_explicit(&d.chunks[ci], memory_order_acquire);
	int rc = 0;
	if (!a) {
		rc = rmp_alloc(d.p, d.chunk, &a);
		if (rc == 0 && (rc = rmp_write_buf(d.p, a, d.zeros_buf, 0, d.chunk)) != 0) {
			(void)rmp_free(d.p, a);
			a = 0;
		}
		if (rc == 0) {
			atomic_store_explicit(&d.chunks[ci], a, memory_order_release);
			/* Where it lies (nbdkit -v): tests kill the donor of
			 * chunks they wrote (tests/rdma/nbd.sh). */
			uint32_t donor = RMP_NO_DONOR;
			uint64_t po = RMP_ADDR_OFFSET(a);
			if (d.segment_size)
				(void)rmp_pool_segment_donor(d.p, po / d.segment_size, &donor);
			nbdkit_debug("chunk %" PRIu64 " (disk bytes %" PRIu64 "..): pool offset %#" PRIx64 ", donor %" PRIu32,
				     ci, ci * d.chunk, po, donor);
		}
	}
	pthread_rwlock_unlock(l);
	if (rc)
		return fail("allocating a chunk", ci * d.chunk, rc);
	pthread_rwlock_rdlock(l); /* a trim may free it meanwhile: look again */
	a = atomic_load_explicit(&d.chunks[ci], memory_order_acquire);
	if (!a) {
		pthread_rwlock_unlock(l);
		return chunk_for_write(ci, out, false);
	}
	*out = a;
	return 0;
}

/* A free registered slot, or -1 (none free, or buffers=0). */
static int slot_take(void)
{
	uint64_t f = atomic_load_explicit(&d.slots_free, memory_order_relaxed);
	while (f) {
		int i = __builtin_ctzll(f);
		if (atomic_compare_exchange_weak_explicit(&d.slots_free, &f, f & ~(UINT64_C(1) << i),
							  memory_order_acquire, memory_order_relaxed))
			return i;
	}
	return -1;
}

static void slot_give(int i)
{
	atomic_fetch_or_explicit(&d.slots_free, UINT64_C(1) << i, memory_order_release);
}

/* A piece in flight: its operation, its chunk's stripe (held for
 * reading), where it starts on the disk, and its registered slot (-1:
 * through librmpool's bounce buffer) with the caller's bytes it holds. */
struct piece {
	rmp_op *op;
	pthread_rwlock_t *held;
	uint64_t at;
	int slot;
	uint8_t *user;
	uint64_t len;
};

/* Reads or writes [off, off + count) piece by piece (one per chunk, and
 * at most a slot's bytes each), the pieces in flight together. At most
 * MAX_PIECES (= STRIPES) pieces are in flight, in consecutive chunks, so
 * they hold distinct stripes - but for the pieces of one chunk longer
 * than a slot, which take its stripe for reading once each (glibc's
 * reader-writer locks prefer readers: a reader holding it takes it
 * again even while a writer waits). A piece that finds no free slot
 * waits for this request's oldest piece (whose slot then comes back)
 * or, with none in flight, goes through librmpool's bounce buffer:
 * a request never waits for another's slots. */
static int transfer(bool write, void *buf, uint32_t count, uint64_t off)
{
	struct piece q[MAX_PIECES];
	unsigned n = 0;
	int err = 0;
	uint8_t *b = buf;

	while (count > 0 || n > 0) {
		if (count > 0 && n < MAX_PIECES && err == 0) {
			uint64_t ci = off / d.chunk, in = off % d.chunk, len = d.chunk - in;
			if (len > count)
				len = count;
			int slot = -1;
			if (d.nslots) {
				if (len > d.slot_bytes)
					len = d.slot_bytes;
				if ((slot = slot_take()) < 0 && n > 0)
					goto reap; /* this request's own slots come back first */
			}
			rmp_addr a;
			int rc = 0;
			if (write) {
				int got = chunk_for_write(ci, &a, n > 0);
				if (got != 0 && slot >= 0)
					slot_give(slot);
				if (got == 1)
					goto reap; /* a new chunk: let go of the stripes first */
				if (got != 0) {
					err = -1;
					count = 0;
					continue;
				}
			} else {
				pthread_rwlock_rdlock(stripe_of(ci));
				a = atomic_load_explicit(&d.chunks[ci], memory_order_acquire);
				if (!a) {
					memset(b, 0, len); /* never written: zeros */
					pthread_rwlock_unlock(stripe_of(ci));
					if (slot >= 0)
						slot_give(slot);
				}
			}
			if (a && n == 0 && len == count) {
				/* The whole request in one piece (a page, a chunk):
				 * this thread does it, with no hand-off to
				 * librmpool's workers and back (two thread switches,
				 * dear on a busy host). */
				size_t so = slot >= 0 ? (size_t)slot * d.slot_bytes : 0;
				if (slot >= 0) {
					if (write) {
						memcpy(d.slots + so, b, len);
						rc = rmp_write_buf(d.p, a + in, d.slots_buf, so, len);
					} else if ((rc = rmp_read_buf(d.p, d.slots_buf, so, a + in, len)) == 0) {
						memcpy(b, d.slots + so, len);
					}
					slot_give(slot);
				} else {
					rc = write ? rmp_write(d.p, a + in, b, len) : rmp_read(d.p, b, a + in, len);
				}
				pthread_rwlock_unlock(stripe_of(ci));
				atomic_fetch_add_explicit(slot >= 0 ? &d.via_slot : &d.via_bounce, 1, memory_order_relaxed);
				if (rc)
					err = fail(write ? "write" : "read", off, rc);
			} else if (a) {
				struct piece *x = &q[n];
				x->slot = slot;
				x->user = b;
				x->len = len;
				if (slot >= 0) {
					size_t so = (size_t)slot * d.slot_bytes;
					if (write) {
						memcpy(d.slots + so, b, len);
						rc = rmp_write_buf_async(d.p, a + in, d.slots_buf, so, len, &x->op);
					} else {
						rc = rmp_read_buf_async(d.p, d.slots_buf, so, a + in, len, &x->op);
					}
				} else {
					rc = write ? rmp_write_async(d.p, a + in, b, len, &x->op)
						   : rmp_read_async(d.p, b, a + in, len, &x->op);
				}
				if (rc) {
					pthread_rwlock_unlock(stripe_of(ci));
					if (slot >= 0)
						slot_give(slot);
					err = fail(write ? "write" : "read", off, rc);
				} else {
					x->held = stripe_of(ci);
					x->at = off;
					n++;
					atomic_fetch_add_explicit(slot >= 0 ? &d.via_slot : &d.via_bounce, 1,
								  memory_order_relaxed);
				}
			}
			b += len;
			off += len;
			count -= (uint32_t)len;
			continue;
		}
reap:
		if (n == 0)
			break; /* an error stopped the issue: nothing in flight */
		/* Reap the oldest. */
		int rc = rmp_op_wait(q[0].op, OP_WAIT_MS);
		pthread_rwlock_unlock(q[0].held);
		if (rc == 0 && !write && q[0].slot >= 0)
			memcpy(q[0].user, d.slots + (size_t)q[0].slot * d.slot_bytes, q[0].len);
		if (q[0].slot >= 0)
			slot_give(q[0].slot);
		if (rc && err == 0)
			err = fail(write ? "write" : "read", q[0].at, rc);
		memmove(q, q + 1, (n - 1) * sizeof(q[0]));
		n--;
		if (err && count > 0)
			count = 0; /* the rest is not issued; what is in flight is reaped */
	}
	return err ? -1 : 0;
}

static int rmpool_pread(void *h, void *buf, uint32_t count, uint64_t off, uint32_t flags)
{
	(void)h;
	(void)flags;
	return transfer(false, buf, count, off);
}

static int rmpool_pwrite(void *h, const void *buf, uint32_t count, uint64_t off, uint32_t flags)
{
	(void)h;
	(void)flags; /* FUA: native, a write is in the donors' memory when it returns */
	return transfer(true, (void *)buf, count, off);
}

static int rmpool_flush(void *h, uint32_t flags)
{
	(void)h;
	(void)flags;
	return 0; /* every write completed in the donors' memory already */
}

/* Whole chunks of [off, off + count) go back to the pool (zeros again);
 * with zero set, the partial ends are written with zeros. */
static int release_range(uint32_t count, uint64_t off, bool zero)
{
	uint64_t end = off + count;
	while (off < end) {
		uint64_t ci = off / d.chunk, in = off % d.chunk, len = d.chunk - in;
		if (len > end - off)
			len = end - off;
		pthread_rwlock_t *l = stripe_of(ci);
		if (in == 0 && len == d.chunk) {
			pthread_rwlock_wrlock(l);
			rmp_addr a = atomic_exchange_explicit(&d.chunks[ci], 0, memory_order_acq_rel);
			pthread_rwlock_unlock(l);
			int rc = a ? rmp_free(d.p, a) : 0;
			if (rc)
				nbdkit_debug("chunk %" PRIu64 ": free: %s (left to the pool's reclaim)", ci,
					     rmp_strerror(rc));
		} else if (zero) {
			pthread_rwlock_rdlock(l);
			rmp_addr a = atomic_load_explicit(&d.chunks[ci], memory_order_acquire);
			int rc = a ? rmp_write_buf(d.p, a + in, d.zeros_buf, 0, len) : 0;
			pthread_rwlock_unlock(l);
			if (rc)
				return fail("write-zeroes", off, rc);
		}
		off += len;
	}
	return 0;
}

static int rmpool_trim(void *h, uint32_t count, uint64_t off, uint32_t flags)
{
	(void)h;
	(void)flags;
	return release_range(count, off, false);
}

static int rmpool_zero(void *h, uint32_t count, uint64_t off, uint32_t flags)
{
	(void)h;
	(void)flags; /* may_trim or not, whole chunks are released: they read as zeros */
	return release_range(count, off, true);
}

static struct nbdkit_plugin plugin = {
	.name = "rmpool",
	.longname = "rmpool: a disk of networked pool memory over RDMA",
	.version = "1",
	.description = "The disk is memory of an rmpool pool, chunks allocated on first write.",
	.unload = rmpool_unload,
	.config = rmpool_config,
	.config_complete = rmpool_config_complete,
	.config_help = rmpool_config_help,
	.get_ready = rmpool_get_ready,
	.after_fork = rmpool_after_fork,
	.open = rmpool_open,
	.get_size = rmpool_get_size,
	.can_multi_conn = rmpool_can_multi_conn,
	.can_fua = rmpool_can_fua,
	.can_flush = rmpool_can_flush,
	.can_trim = rmpool_can_trim,
	.can_zero = rmpool_can_zero,
	.pread = rmpool_pread,
	.pwrite = rmpool_pwrite,
	.flush = rmpool_flush,
	.trim = rmpool_trim,
	.zero = rmpool_zero,
	.errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)
