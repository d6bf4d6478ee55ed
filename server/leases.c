/* leases.c - see leases.h. Removal swaps the last entry in: order in
 * the array means nothing. */
#include "leases.h"

#include <errno.h>
#include <stdlib.h>

void rmp_srv_leases_init(struct rmp_srv_leases *t, uint64_t ttl_ms, uint64_t first_id)
{
	*t = (struct rmp_srv_leases){ .ttl_ms = ttl_ms, .next_id = first_id ? first_id : 1 };
}

void rmp_srv_leases_fini(struct rmp_srv_leases *t)
{
	free(t->v);
	*t = (struct rmp_srv_leases){ 0 };
}

uint64_t rmp_srv_lease_deadline(uint64_t now_ms, uint64_t ttl_ms)
{
	return now_ms > UINT64_MAX - ttl_ms ? UINT64_MAX : now_ms + ttl_ms;
}

static int reserve_one(struct rmp_srv_leases *t)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		struct rmp_srv_lease *v = realloc(t->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	return 0;
}

int rmp_srv_leases_restore(struct rmp_srv_leases *t, uint64_t id, uint32_t pool_id,
			   uint64_t client_id, uint32_t slot_base, uint64_t deadline_ms)
{
	if (id == 0 || rmp_srv_leases_find(t, id))
		return -EEXIST;
	if (reserve_one(t))
		return -ENOMEM;
	t->v[t->n++] = (struct rmp_srv_lease){ .id = id,
					       .pool_id = pool_id,
					       .client_id = client_id,
					       .deadline_ms = deadline_ms,
					       .slot_base = slot_base };
	if (t->next_id <= id)
		t->next_id = id + 1;
	return 0;
}

int rmp_srv_leases_grant(struct rmp_srv_leases *t, uint32_t pool_id, uint64_t client_id,
			 uint32_t slot_base, void *owner, uint64_t now_ms, uint64_t *id)
{
	if (reserve_one(t))
		return -ENOMEM;
	struct rmp_srv_lease *l = &t->v[t->n++];
	*l = (struct rmp_srv_lease){ .id = t->next_id++,
				     .pool_id = pool_id,
				     .client_id = client_id,
				     .owner = owner,
				     .slot_base = slot_base,
				     .deadline_ms = rmp_srv_lease_deadline(now_ms, t->ttl_ms) };
	*id = l->id;
	return 0;
}

struct rmp_srv_lease *rmp_srv_leases_find(struct rmp_srv_leases *t, uint64_t id)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].id == id)
			return &t->v[i];
	return NULL;
}

int rmp_srv_leases_renew(struct rmp_srv_leases *t, uint64_t id, void *owner, uint64_t now_ms)
{
	struct rmp_srv_lease *l = rmp_srv_leases_find(t, id);

	if (!l)
		return -ENOENT;
	if (l->deadline_ms <= now_ms)
		return -ETIMEDOUT;
	l->deadline_ms = rmp_srv_lease_deadline(now_ms, t->ttl_ms);
	l->owner = owner;
	return 0;
}

static void remove_at(struct rmp_srv_leases *t, size_t i)
{
	t->v[i] = t->v[--t->n];
}

int rmp_srv_leases_release(struct rmp_srv_leases *t, uint64_t id)
{
	for (size_t i = 0; i < t->n; i++) {
		if (t->v[i].id == id) {
			remove_at(t, i);
			return 0;
		}
	}
	return -ENOENT;
}

size_t rmp_srv_leases_expire(struct rmp_srv_leases *t, uint64_t now_ms, rmp_srv_lease_fn *fn,
			     void *arg)
{
	size_t n = 0;

	for (size_t i = 0; i < t->n;) {
		if (t->v[i].deadline_ms <= now_ms) {
			struct rmp_srv_lease gone = t->v[i];
			remove_at(t, i); /* before fn: fn may grant or release */
			if (fn)
				fn(arg, &gone);
			n++;
		} else {
			i++;
		}
	}
	return n;
}

uint64_t rmp_srv_leases_next_deadline(const struct rmp_srv_leases *t)
{
	uint64_t d = UINT64_MAX;

	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].deadline_ms < d)
			d = t->v[i].deadline_ms;
	return d;
}

void rmp_srv_leases_shift(struct rmp_srv_leases *t, uint64_t ms)
{
	for (size_t i = 0; i < t->n; i++)
		t->v[i].deadline_ms = t->v[i].deadline_ms > UINT64_MAX - ms ? UINT64_MAX
									     : t->v[i].deadline_ms + ms;
}

void rmp_srv_leases_forget_owner(struct rmp_srv_leases *t, const void *owner)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].owner == owner)
			t->v[i].owner = NULL;
}

bool rmp_srv_leases_held(const struct rmp_srv_leases *t, uint32_t pool_id, uint64_t client_id,
			 uint64_t now_ms)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].pool_id == pool_id && t->v[i].client_id == client_id &&
		    t->v[i].deadline_ms > now_ms)
			return true;
	return false;
}

uint32_t rmp_srv_leases_count_pool(const struct rmp_srv_leases *t, uint32_t pool_id)
{
	uint32_t n = 0;

	for (size_t i = 0; i < t->n; i++)
		n += t->v[i].pool_id == pool_id;
	return n;
}

void rmp_srv_leases_slots_used(const struct rmp_srv_leases *t, uint32_t pool_id, uint8_t *used,
			       uint32_t groups)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct rmp_srv_lease *l = &t->v[i];
		if (l->pool_id == pool_id && l->slot_base != RMP_SRV_NO_SLOT &&
		    l->slot_base / RMP_SRV_LEASE_SLOTS < groups)
			used[l->slot_base / RMP_SRV_LEASE_SLOTS] = 1;
	}
}

int rmp_srv_slot_group_pick(const uint8_t *used, uint32_t groups, uint32_t *base)
{
	for (uint32_t g = 0; g < groups; g++) {
		if (!used[g]) {
			*base = g * RMP_SRV_LEASE_SLOTS;
			return 0;
		}
	}
	return -EBUSY;
}

void rmp_srv_leases_drop_pool(struct rmp_srv_leases *t, uint32_t pool_id)
{
	for (size_t i = 0; i < t->n;) {
		if (t->v[i].pool_id == pool_id)
			remove_at(t, i);
		else
			i++;
	}
}
