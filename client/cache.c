/*
 * cache.c - the small-block cache (cache.h): blocks carved locally out of
 * chunks claimed from the pool.
 *
 * A chunk's heap is the buddy engine itself (common/buddy.c) on process
 * memory: the same code the pool runs on, so carving has its guarantees
 * (full coalescing, double frees refused) at local-memory cost. Chunks
 * are kept sorted by pool offset; a free finds its chunk by binary
 * search, an alloc tries the chunk that served last, then the others,
 * then claims a new one.
 *
 * Claiming and releasing go through the source without the lock held
 * (they are round trips); a thread that finds no room claims a chunk,
 * then retakes the lock and inserts it, so two threads may claim at once:
 * both chunks are kept and used.
 */
#include "cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buddy.h"
#include "store_local.h"

struct rmp_cache_chunk {
	uint64_t off;         /* in the pool */
	uint64_t live, live_bytes;
	_Atomic uint64_t *words;
	struct rmp_store_local st;
	struct rmp_buddy b;
	struct rmp_buddy_ctx ctx;
};

static void chunk_free(struct rmp_cache_chunk *ch)
{
	if (!ch)
		return;
	free(ch->words);
	free(ch);
}

static struct rmp_cache_chunk *chunk_new(const struct rmp_cache *c, uint64_t off)
{
	struct rmp_buddy_geom g;
	struct rmp_cache_chunk *ch;

	if (rmp_buddy_geom_init(&g, c->chunk_order, c->min_order) != 0)
		return NULL;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	ch->off = off;
	ch->words = calloc(g.total_words, sizeof(*ch->words));
	if (!ch->words) {
		free(ch);
		return NULL;
	}
	rmp_buddy_format((uint64_t *)ch->words, &g, 1ull << c->chunk_order);
	rmp_store_local_init(&ch->st, ch->words, g.total_words);
	rmp_buddy_init(&ch->b, &g, &ch->st.base);
	rmp_buddy_ctx_init(&ch->ctx, &ch->b, off >> c->chunk_order);
	return ch;
}

/* Requires c->lock. The index of the chunk holding off, or -1. */
static int find_locked(const struct rmp_cache *c, uint64_t off)
{
	unsigned lo = 0, hi = c->n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (c->chunks[mid]->off + (1ull << c->chunk_order) <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < c->n && c->chunks[lo]->off <= off)
		return (int)lo;
	return -1;
}

/* Requires c->lock. Inserts ch in offset order. -ENOMEM. */
static int insert_locked(struct rmp_cache *c, struct rmp_cache_chunk *ch)
{
	if (c->n == c->cap) {
		unsigned cap = c->cap ? 2 * c->cap : 8;
		struct rmp_cache_chunk **v = realloc(c->chunks, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		c->chunks = v;
		c->cap = cap;
	}
	unsigned i = 0;
	while (i < c->n && c->chunks[i]->off < ch->off)
		i++;
	memmove(&c->chunks[i + 1], &c->chunks[i], (c->n - i) * sizeof(*c->chunks));
	c->chunks[i] = ch;
	c->n++;
	c->hint = i;
	c->k.chunks_held++;
	c->k.bytes_held += 1ull << c->chunk_order;
	return 0;
}

/* Requires c->lock. Removes chunk i (its memory is the caller's). */
static struct rmp_cache_chunk *remove_locked(struct rmp_cache *c, unsigned i)
{
	struct rmp_cache_chunk *ch = c->chunks[i];

	memmove(&c->chunks[i], &c->chunks[i + 1], (c->n - i - 1) * sizeof(*c->chunks));
	c->n--;
	c->hint = 0;
	c->k.chunks_held--;
	c->k.bytes_held -= 1ull << c->chunk_order;
	return ch;
}

/* Requires c->lock. Carves from chunk i: 1 with *off, 0 when it is full. */
static int carve_locked(struct rmp_cache *c, unsigned i, unsigned order, uint64_t *off)
{
	struct rmp_cache_chunk *ch = c->chunks[i];
	uint64_t sub;

	if (rmp_buddy_alloc(&ch->b, &ch->ctx, order, &sub) != 0)
		return 0;
	ch->live++;
	ch->live_bytes += 1ull << order;
	c->k.carved_allocs++;
	c->k.carved_live++;
	c->k.carved_live_bytes += 1ull << order;
	c->hint = i;
	*off = ch->off + sub;
	return 1;
}

int rmp_cache_init(struct rmp_cache *c, unsigned min_order, unsigned max_order, unsigned chunk_order,
		   const struct rmp_cache_source *src)
{
	struct rmp_buddy_geom g;

	memset(c, 0, sizeof(*c));
	if (!src || !src->claim || !src->release || min_order > max_order || max_order >= chunk_order ||
	    rmp_buddy_geom_init(&g, chunk_order, min_order) != 0)
		return -EINVAL;
	c->min_order = min_order;
	c->max_order = max_order;
	c->chunk_order = chunk_order;
	c->src = *src;
	pthread_mutex_init(&c->lock, NULL);
	return 0;
}

int rmp_cache_destroy(struct rmp_cache *c)
{
	int first = 0;

	for (unsigned i = 0; i < c->n; i++) {
		int rc = c->src.release(c->src.arg, c->chunks[i]->off, c->chunk_order);
		if (rc && !first)
			first = rc;
		chunk_free(c->chunks[i]);
	}
	free(c->chunks);
	pthread_mutex_destroy(&c->lock);
	memset(c, 0, sizeof(*c));
	return first;
}

int rmp_cache_alloc(struct rmp_cache *c, unsigned order, uint64_t *off)
{
	if (order < c->min_order || order > c->max_order)
		return -EINVAL;
	for (;;) {
		pthread_mutex_lock(&c->lock);
		int got = c->n && carve_locked(c, c->hint < c->n ? c->hint : 0, order, off);
		for (unsigned i = 0; !got && i < c->n; i++)
			got = carve_locked(c, i, order, off);
		pthread_mutex_unlock(&c->lock);
		if (got)
			return 0;

		uint64_t at;
		int rc = c->src.claim(c->src.arg, c->chunk_order, &at);
		if (rc)
			return rc;
		struct rmp_cache_chunk *ch = chunk_new(c, at);
		pthread_mutex_lock(&c->lock);
		rc = ch ? insert_locked(c, ch) : -ENOMEM;
		if (rc == 0) {
			c->k.chunks_claimed++;
			got = carve_locked(c, c->hint, order, off);
		}
		pthread_mutex_unlock(&c->lock);
		if (rc) {
			chunk_free(ch);
			c->src.release(c->src.arg, at, c->chunk_order);
			return rc;
		}
		if (got)
			return 0;
		/* Someone else filled it meanwhile: try again. */
	}
}

/* Requires c->lock. How many chunks are empty. */
static unsigned empty_locked(const struct rmp_cache *c)
{
	unsigned n = 0;
	for (unsigned i = 0; i < c->n; i++)
		n += c->chunks[i]->live == 0;
	return n;
}

int rmp_cache_free(struct rmp_cache *c, uint64_t off, unsigned order)
{
	struct rmp_cache_chunk *gone = NULL;

	pthread_mutex_lock(&c->lock);
	int i = find_locked(c, off);
	if (i < 0) {
		pthread_mutex_unlock(&c->lock);
		return -ENOENT;
	}
	struct rmp_cache_chunk *ch = c->chunks[i];
	if (order < c->min_order || order > c->max_order ||
	    rmp_buddy_free(&ch->b, &ch->ctx, off - ch->off, order) != 0) {
		pthread_mutex_unlock(&c->lock);
		return -EINVAL;
	}
	ch->live--;
	ch->live_bytes -= 1ull << order;
	c->k.carved_frees++;
	c->k.carved_live--;
	c->k.carved_live_bytes -= 1ull << order;
	/* Keep one empty chunk as the spare; give back any other. */
	if (ch->live == 0 && empty_locked(c) > 1) {
		gone = remove_locked(c, (unsigned)i);
		c->k.chunks_released++;
	}
	pthread_mutex_unlock(&c->lock);
	if (!gone)
		return 0;
	int rc = c->src.release(c->src.arg, gone->off, c->chunk_order);
	chunk_free(gone);
	return rc;
}

int rmp_cache_is_live(struct rmp_cache *c, uint64_t off, unsigned order)
{
	pthread_mutex_lock(&c->lock);
	int i = find_locked(c, off);
	int rc = -ENOENT;
	if (i >= 0) {
		struct rmp_cache_chunk *ch = c->chunks[i];
		rc = order >= c->min_order && order <= c->max_order &&
		     rmp_buddy_is_live(&ch->b, &ch->ctx, off - ch->off, order) == 1;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void rmp_cache_counts(struct rmp_cache *c, struct rmp_cache_counts *out)
{
	pthread_mutex_lock(&c->lock);
	*out = c->k;
	pthread_mutex_unlock(&c->lock);
}
