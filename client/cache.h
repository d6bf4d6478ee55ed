/*
 * cache.h - librmpool's small-block cache (not installed): small
 * allocations carved, in this process, out of larger blocks ("chunks")
 * claimed from the pool once, so that most small allocations and frees
 * cost no round trip.
 *
 * Each chunk is a 2^chunk_order-byte block of the pool, allocated with
 * the shared engine like any other; inside it, a buddy heap of the
 * process's own (common/buddy.c on process memory, store_local.c) hands
 * out blocks of 2^min_order to 2^max_order bytes. The pool's metadata
 * sees only the chunk: a carved block's liveness is known to this
 * process alone. What that means for the guarantees (DESIGN.md, "The
 * small-block cache"): this process frees, checks and double-free-
 * detects its carved blocks locally; another process gets a typed error
 * (-RMP_ECACHED) for a free or a checked transfer of a handle inside a
 * live chunk, never a wrong answer.
 *
 * Chunks come from and go back to a source (data.c: the remote engine;
 * the unit test: a fake), called without the cache's lock. An empty
 * chunk goes back at once unless it is the only spare: one empty chunk
 * is kept, so an alloc/free loop at the boundary does not claim and
 * release a chunk each time.
 *
 * Thread-safe: one mutex covers the chunk list and the chunks' heaps
 * (a carve is a few local word operations).
 */
#ifndef RMP_CLIENT_CACHE_H
#define RMP_CLIENT_CACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct rmp_cache_source {
	/* A block of 2^order bytes of the pool: 0 and its offset, or -errno
	 * (-ENOMEM: none free). */
	int (*claim)(void *arg, unsigned order, uint64_t *off);
	/* Gives it back. */
	int (*release)(void *arg, uint64_t off, unsigned order);
	void *arg;
};

struct rmp_cache_counts {
	uint64_t carved_allocs, carved_frees; /* served without a round trip */
	uint64_t chunks_claimed, chunks_released;
	uint64_t chunks_held, bytes_held;     /* now */
	uint64_t carved_live, carved_live_bytes;
};

struct rmp_cache_chunk;

struct rmp_cache {
	pthread_mutex_t lock;
	unsigned min_order, max_order, chunk_order;
	struct rmp_cache_source src;
	struct rmp_cache_chunk **chunks; /* sorted by offset */
	unsigned n, cap;
	unsigned hint;                   /* the chunk that served last */
	struct rmp_cache_counts k;
};

/* Carves blocks of 2^min_order .. 2^max_order bytes out of chunks of
 * 2^chunk_order (max_order < chunk_order). -EINVAL for orders that do not
 * fit, -ENOMEM. */
int rmp_cache_init(struct rmp_cache *c, unsigned min_order, unsigned max_order, unsigned chunk_order,
		   const struct rmp_cache_source *src);
/* Gives every chunk back (live carved blocks die with them) and frees c.
 * Returns the first release error, if any. */
int rmp_cache_destroy(struct rmp_cache *c);

/* A block of 2^order bytes (min_order <= order <= max_order): 0 and its
 * pool offset; a chunk is claimed first when none has room (the source's
 * error, e.g. -ENOMEM, is returned as is). */
int rmp_cache_alloc(struct rmp_cache *c, unsigned order, uint64_t *off);
/* Frees a carved block. -ENOENT: off lies in none of this cache's chunks
 * (not ours: the caller frees it in the pool); -EINVAL: it does, but is
 * not a live carved block of that order (a double free, a wrong handle);
 * or the source's error when an emptied chunk could not go back (the
 * block is free anyway). */
int rmp_cache_free(struct rmp_cache *c, uint64_t off, unsigned order);
/* Whether the block of 2^order bytes at off is a live carved block: 1, 0;
 * -ENOENT when off lies in none of this cache's chunks. */
int rmp_cache_is_live(struct rmp_cache *c, uint64_t off, unsigned order);
void rmp_cache_counts(struct rmp_cache *c, struct rmp_cache_counts *out);

#endif /* RMP_CLIENT_CACHE_H */
