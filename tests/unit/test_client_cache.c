/* test_client_cache.c - the small-block cache (client/cache.c) against a
 * fake chunk source: a bump-and-list allocator of the pool's chunks that
 * counts claims and releases. Mixed orders carve without overlap, a
 * double free and a foreign handle are told apart, an emptied chunk goes
 * back (one spare kept), destroy gives everything back, and 4 threads
 * carving at once never hand out one byte twice (an owner array claimed
 * with CAS, as in the stress tests).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

#define MIN 12u
#define MAX 15u
#define CHUNK 20u
#define POOL_CHUNKS 64u

struct fake_src {
	pthread_mutex_t lock;
	bool used[POOL_CHUNKS];
	int claims, releases;
	int fail_claims; /* claims to refuse with -ENOMEM from now on */
};

static int fake_claim(void *arg, unsigned order, uint64_t *off)
{
	struct fake_src *s = arg;
	cr_assert_eq(order, CHUNK);
	pthread_mutex_lock(&s->lock);
	int rc = -ENOMEM;
	for (unsigned i = 0; i < POOL_CHUNKS && s->fail_claims == 0; i++) {
		if (!s->used[i]) {
			s->used[i] = true;
			*off = (uint64_t)i << CHUNK;
			s->claims++;
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int fake_release(void *arg, uint64_t off, unsigned order)
{
	struct fake_src *s = arg;
	cr_assert_eq(order, CHUNK);
	cr_assert_eq(off & ((1ull << CHUNK) - 1), 0);
	pthread_mutex_lock(&s->lock);
	cr_assert(s->used[off >> CHUNK], "chunk %llu released twice", (unsigned long long)(off >> CHUNK));
	s->used[off >> CHUNK] = false;
	s->releases++;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static struct fake_src *src_new(struct rmp_cache_source *out)
{
	struct fake_src *s = calloc(1, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	*out = (struct rmp_cache_source){ .claim = fake_claim, .release = fake_release, .arg = s };
	return s;
}

Test(client_cache, bad_orders_are_refused)
{
	struct rmp_cache_source src;
	struct fake_src *s = src_new(&src);
	struct rmp_cache c;
	uint64_t off;

	cr_assert_eq(rmp_cache_init(&c, MIN, CHUNK, CHUNK, &src), -EINVAL);
	cr_assert_eq(rmp_cache_init(&c, 16, 15, CHUNK, &src), -EINVAL);
	cr_assert_eq(rmp_cache_init(&c, MIN, MAX, CHUNK, NULL), -EINVAL);
	cr_assert_eq(rmp_cache_init(&c, MIN, MAX, CHUNK, &src), 0);
	cr_assert_eq(rmp_cache_alloc(&c, MAX + 1, &off), -EINVAL);
	cr_assert_eq(rmp_cache_alloc(&c, MIN - 1, &off), -EINVAL);
	cr_assert_eq(s->claims, 0);
	cr_assert_eq(rmp_cache_destroy(&c), 0);
	free(s);
}

Test(client_cache, carves_mixed_orders_without_overlap_and_gives_chunks_back)
{
	struct rmp_cache_source src;
	struct fake_src *s = src_new(&src);
	struct rmp_cache c;
	struct rmp_cache_counts k;
	enum { N = 600 };
	uint64_t off[N];
	unsigned ord[N];
	static uint8_t owner[POOL_CHUNKS << (CHUNK - MIN)]; /* per 4 KiB page of the pool */

	memset(owner, 0, sizeof(owner));
	cr_assert_eq(rmp_cache_init(&c, MIN, MAX, CHUNK, &src), 0);
	uint64_t bytes = 0;
	for (int i = 0; i < N; i++) {
		ord[i] = MIN + (unsigned)(i * 7 % 4);
		cr_assert_eq(rmp_cache_alloc(&c, ord[i], &off[i]), 0, "alloc %d", i);
		cr_assert_eq(off[i] & ((1ull << ord[i]) - 1), 0, "misaligned");
		for (uint64_t pg = off[i] >> MIN; pg < (off[i] + (1ull << ord[i])) >> MIN; pg++) {
			cr_assert_eq(owner[pg], 0, "page %llu handed out twice", (unsigned long long)pg);
			owner[pg] = 1;
		}
		cr_assert_eq(rmp_cache_is_live(&c, off[i], ord[i]), 1);
		bytes += 1ull << ord[i];
	}
	rmp_cache_counts(&c, &k);
	cr_assert_eq(k.carved_allocs, N);
	cr_assert_eq(k.carved_live_bytes, bytes);
	/* Chunks are claimed only as they fill: at most one more than the
	 * bytes need (a carve that did not fit the last one's holes). */
	uint64_t need = (bytes + (1ull << CHUNK) - 1) >> CHUNK;
	cr_assert(k.chunks_claimed >= need && k.chunks_claimed <= need + 1, "%llu chunks for %llu",
		  (unsigned long long)k.chunks_claimed, (unsigned long long)need);
	cr_assert_eq((int)k.chunks_claimed, s->claims);

	/* A double free, a wrong order and a foreign handle are told apart. */
	cr_assert_eq(rmp_cache_free(&c, off[0], ord[0]), 0);
	cr_assert_eq(rmp_cache_free(&c, off[0], ord[0]), -EINVAL);
	cr_assert_eq(rmp_cache_is_live(&c, off[0], ord[0]), 0);
	cr_assert_eq(rmp_cache_free(&c, off[1], ord[1] == MAX ? MIN : ord[1] + 1), -EINVAL);
	cr_assert_eq(rmp_cache_free(&c, (uint64_t)(POOL_CHUNKS - 1) << CHUNK, MIN), -ENOENT);
	cr_assert_eq(rmp_cache_is_live(&c, (uint64_t)(POOL_CHUNKS - 1) << CHUNK, MIN), -ENOENT);

	for (int i = 1; i < N; i++)
		cr_assert_eq(rmp_cache_free(&c, off[i], ord[i]), 0, "free %d", i);
	rmp_cache_counts(&c, &k);
	cr_assert_eq(k.carved_live, 0);
	cr_assert_eq(k.chunks_held, 1, "one empty chunk is kept as the spare, %llu held",
		     (unsigned long long)k.chunks_held);
	cr_assert_eq(s->releases, s->claims - 1);
	/* The spare is whole again: its largest carve fits 2^(CHUNK-MAX) times. */
	for (unsigned i = 0; i < (1u << (CHUNK - MAX)); i++)
		cr_assert_eq(rmp_cache_alloc(&c, MAX, &off[i]), 0);
	rmp_cache_counts(&c, &k);
	cr_assert_eq(k.chunks_held, 1, "the spare was not fully coalesced");
	cr_assert_eq(rmp_cache_destroy(&c), 0);
	cr_assert_eq(s->releases, s->claims, "destroy left chunks out");
	free(s);
}

Test(client_cache, a_source_out_of_memory_is_returned)
{
	struct rmp_cache_source src;
	struct fake_src *s = src_new(&src);
	struct rmp_cache c;
	uint64_t off;

	cr_assert_eq(rmp_cache_init(&c, MIN, MAX, CHUNK, &src), 0);
	s->fail_claims = 1;
	cr_assert_eq(rmp_cache_alloc(&c, MIN, &off), -ENOMEM);
	s->fail_claims = 0;
	cr_assert_eq(rmp_cache_alloc(&c, MIN, &off), 0);
	cr_assert_eq(rmp_cache_destroy(&c), 0);
	cr_assert_eq(s->claims, 1);
	cr_assert_eq(s->releases, 1);
	free(s);
}

/* ---- threads ---- */

static struct rmp_cache tc;
static _Atomic uint32_t page_owner[POOL_CHUNKS << (CHUNK - MIN)];

static void *carver(void *arg)
{
	uint32_t me = (uint32_t)(uintptr_t)arg;
	uint64_t held[64];
	unsigned ho[64], n = 0;
	uint64_t rng = me * 0x9E3779B97F4A7C15ull + 1;

	for (int step = 0; step < 20000; step++) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		if (n < 64 && (n == 0 || rng % 3 != 0)) {
			unsigned o = MIN + (unsigned)(rng >> 40) % (MAX - MIN + 1);
			uint64_t off;
			int rc = rmp_cache_alloc(&tc, o, &off);
			if (rc == -ENOMEM)
				continue;
			cr_assert_eq(rc, 0);
			for (uint64_t pg = off >> MIN; pg < (off + (1ull << o)) >> MIN; pg++) {
				uint32_t none = 0;
				cr_assert(atomic_compare_exchange_strong(&page_owner[pg], &none, me),
					  "page %llu of thread %u handed to %u", (unsigned long long)pg, none, me);
			}
			held[n] = off;
			ho[n++] = o;
		} else {
			unsigned k = (unsigned)(rng >> 33) % n;
			for (uint64_t pg = held[k] >> MIN; pg < (held[k] + (1ull << ho[k])) >> MIN; pg++)
				atomic_store(&page_owner[pg], 0);
			cr_assert_eq(rmp_cache_free(&tc, held[k], ho[k]), 0);
			held[k] = held[--n];
			ho[k] = ho[n];
		}
	}
	for (unsigned k = 0; k < n; k++) {
		for (uint64_t pg = held[k] >> MIN; pg < (held[k] + (1ull << ho[k])) >> MIN; pg++)
			atomic_store(&page_owner[pg], 0);
		cr_assert_eq(rmp_cache_free(&tc, held[k], ho[k]), 0);
	}
	return NULL;
}

Test(client_cache, four_threads_never_share_a_byte)
{
	struct rmp_cache_source src;
	struct fake_src *s = src_new(&src);
	struct rmp_cache_counts k;
	pthread_t t[4];

	cr_assert_eq(rmp_cache_init(&tc, MIN, MAX, CHUNK, &src), 0);
	for (uintptr_t i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, carver, (void *)(i + 1)), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	rmp_cache_counts(&tc, &k);
	cr_assert_eq(k.carved_live, 0);
	cr_assert_eq(k.carved_allocs, k.carved_frees);
	cr_assert_leq(k.chunks_held, 1);
	cr_assert_gt(k.carved_allocs, 10000);
	/* Nearly every alloc was served from a held chunk. */
	cr_assert_lt(k.chunks_claimed * 100, k.carved_allocs, "%llu chunks claimed for %llu allocs",
		     (unsigned long long)k.chunks_claimed, (unsigned long long)k.carved_allocs);
	cr_assert_eq(rmp_cache_destroy(&tc), 0);
	cr_assert_eq(s->releases, s->claims);
	free(s);
}
