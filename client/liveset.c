/*
 * liveset.c - the blocks this process allocated and has not freed (see
 * liveset.h).
 */
#include "liveset.h"

#include <errno.h>
#include <stdlib.h>

#define EMPTY   0ull
#define DELETED UINT64_MAX
#define MIN_CAP 64u

/* A 64-bit mix (the murmur3 finalizer): handles are offsets with the
 * order on top, so their low bits are mostly zero. */
static size_t slot_of(uint64_t k, size_t cap)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ull;
	k ^= k >> 33;
	return (size_t)k & (cap - 1);
}

void rmp_liveset_init(struct rmp_liveset *s)
{
	pthread_mutex_init(&s->lock, NULL);
	s->slots = NULL;
	s->cap = s->used = s->filled = 0;
}

void rmp_liveset_destroy(struct rmp_liveset *s)
{
	free(s->slots);
	s->slots = NULL;
	s->cap = s->used = s->filled = 0;
	pthread_mutex_destroy(&s->lock);
}

/* The slot holding key, or SIZE_MAX. Lock held. */
static size_t find(const struct rmp_liveset *s, uint64_t key)
{
	if (s->cap == 0)
		return SIZE_MAX;
	for (size_t i = slot_of(key, s->cap), n = 0; n < s->cap; i = (i + 1) & (s->cap - 1), n++) {
		if (s->slots[i] == key)
			return i;
		if (s->slots[i] == EMPTY)
			return SIZE_MAX;
	}
	return SIZE_MAX;
}

/* Rehash into cap slots (drops the deleted marks). Lock held. */
static int rehash(struct rmp_liveset *s, size_t cap)
{
	uint64_t *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (size_t k = 0; k < s->cap; k++) {
		uint64_t key = s->slots[k];
		if (key == EMPTY || key == DELETED)
			continue;
		size_t i = slot_of(key, cap);
		while (slots[i] != EMPTY)
			i = (i + 1) & (cap - 1);
		slots[i] = key;
	}
	free(s->slots);
	s->slots = slots;
	s->cap = cap;
	s->filled = s->used;
	return 0;
}

int rmp_liveset_add(struct rmp_liveset *s, uint64_t key)
{
	int rc = 0;

	if (key == EMPTY || key == DELETED)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (find(s, key) != SIZE_MAX) {
		rc = -EEXIST;
		goto out;
	}
	if (2 * (s->filled + 1) > s->cap) {
		size_t cap = s->cap ? s->cap : MIN_CAP;
		while (4 * (s->used + 1) > cap) /* a quarter full after growing */
			cap *= 2;
		if ((rc = rehash(s, cap)) != 0)
			goto out;
	}
	size_t i = slot_of(key, s->cap);
	while (s->slots[i] != EMPTY && s->slots[i] != DELETED)
		i = (i + 1) & (s->cap - 1);
	if (s->slots[i] == EMPTY)
		s->filled++;
	s->slots[i] = key;
	s->used++;
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

bool rmp_liveset_remove(struct rmp_liveset *s, uint64_t key)
{
	if (key == EMPTY || key == DELETED)
		return false;
	pthread_mutex_lock(&s->lock);
	size_t i = find(s, key);
	if (i != SIZE_MAX) {
		s->slots[i] = DELETED;
		s->used--;
	}
	pthread_mutex_unlock(&s->lock);
	return i != SIZE_MAX;
}

bool rmp_liveset_has(struct rmp_liveset *s, uint64_t key)
{
	if (key == EMPTY || key == DELETED)
		return false;
	pthread_mutex_lock(&s->lock);
	bool has = find(s, key) != SIZE_MAX;
	pthread_mutex_unlock(&s->lock);
	return has;
}

size_t rmp_liveset_size(struct rmp_liveset *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->used;
	pthread_mutex_unlock(&s->lock);
	return n;
}
