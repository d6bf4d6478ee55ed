/*
 * liveset.h - the blocks this process allocated and has not freed.
 *
 * rmp_read/rmp_write must refuse a handle that is not a live block. The
 * shared metadata decides that (rmp_buddy_is_live), at the price of one
 * more round trip to the coordinator before the data moves. For the
 * blocks a process allocated itself, the process already knows: this set
 * answers in memory, and only a handle that is not in it (another
 * process's block, or a stray one) is asked of the metadata.
 *
 * An open-addressing hash set of 64-bit handles (never 0, never ~0: those
 * mark empty and deleted slots), linear probing, grown at half full. One
 * mutex: it is held for a few dozen instructions, next to operations that
 * take microseconds. Written here because none of the project's
 * dependencies (rdma-core, libevent, Criterion) offers a hash set.
 */
#ifndef RMP_LIVESET_H
#define RMP_LIVESET_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rmp_liveset {
	pthread_mutex_t lock;
	uint64_t *slots; /* 0: empty; UINT64_MAX: deleted */
	size_t cap;      /* a power of two, or 0 before the first add */
	size_t used;     /* live keys */
	size_t filled;   /* live keys + deleted slots */
};

void rmp_liveset_init(struct rmp_liveset *s);
void rmp_liveset_destroy(struct rmp_liveset *s);
/* 0, -EINVAL for 0 or ~0, -EEXIST if present, -ENOMEM. */
int rmp_liveset_add(struct rmp_liveset *s, uint64_t key);
/* true if it was there (and is now gone). */
bool rmp_liveset_remove(struct rmp_liveset *s, uint64_t key);
bool rmp_liveset_has(struct rmp_liveset *s, uint64_t key);
size_t rmp_liveset_size(struct rmp_liveset *s);

#endif /* RMP_LIVESET_H */
