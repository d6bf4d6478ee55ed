/*
 * pool.c - opening, closing and destroying pools (the control half).
 *
 * rmp_pool_open sends POOL_OPEN and waits, bounded, for POOL_READY or
 * ERROR; the coordinator meanwhile relays each donor's PROGRESS, which
 * reaches the caller's progress callback (client.c runs it in the
 * caller's thread). POOL_READY carries the pool's segment table and a
 * lease; the pool then joins the client's list and the I/O thread renews
 * its lease at ttl/3 until rmp_pool_close.
 *
 * The segment table is kept as the coordinator sent it (owned arrays);
 * rmp_pool_info derives the per-donor view from it: a donor's share is
 * the number of segments that name it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "data.h"

static int check_name(const rmp_client *c, const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > RMP_WIRE_NAME_MAX)
		return rmp_client_fail(c, -EINVAL, "pool name must be 1 to %u bytes",
				       RMP_WIRE_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch <= 0x20 || ch >= 0x7f)
			return rmp_client_fail(c, -EINVAL,
					       "pool name \"%.64s\": only printable ASCII, no spaces",
					       name);
	}
	return 0;
}

void rmp_pool_free(rmp_pool *p)
{
	if (!p)
		return;
	rmp_data_close(p);
	pthread_mutex_destroy(&p->data_lock);
	free(p->segtab.donors);
	free(p->segtab.segments);
	free(p);
}

rmp_pool *rmp_pool_from_ready(rmp_client *c, const char *name, struct rmp_wire_pool_ready *ready)
{
	rmp_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->c = c;
	pthread_mutex_init(&p->data_lock, NULL);
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->pool_id = ready->pool_id;
	p->segtab = ready->segtab; /* takes over the arrays */
	ready->segtab.donors = NULL;
	ready->segtab.n_donors = 0;
	ready->segtab.segments = NULL;
	ready->segtab.n_segments = 0;
	p->lease_id = ready->lease_id;
	p->slot_base = ready->slot_base;
	p->ttl_ms = ready->lease_ms;
	uint64_t now = rmp_mono_ms();
	rmp_pool_granted_locked(p, now); /* not on c->pools yet: no lock needed */
	p->next_renew_ms = now + p->ttl_ms / 3;
	return p;
}

int rmp_pool_open(rmp_client *c, const char *name, uint64_t capacity, rmp_pool **out)
{
	struct rmp_wire_msg req = { .type = RMP_MSG_POOL_OPEN };
	int rc;

	if (!c || !out)
		return -EINVAL;
	*out = NULL;
	rc = check_name(c, name);
	if (rc)
		return rc;
	strcpy(req.u.pool_open.name, name);
	req.u.pool_open.capacity = capacity;
	req.u.pool_open.min_block = 0;

	unsigned timeout = capacity ? c->opts.provision_timeout_ms : c->opts.request_timeout_ms;
	rc = rmp_client_call_open(c, &req, timeout, out);
	if (rc == 0)
		rmp_client_wake(c); /* its first renewal is due at ttl/3 */
	return rc;
}

int rmp_pool_close(rmp_pool *p)
{
	static const uint8_t want[] = { RMP_MSG_ACK };
	struct rmp_wire_msg req = { .type = RMP_MSG_POOL_CLOSE }, rep;
	int rc;

	if (!p)
		return -EINVAL;
	rmp_client *c = p->c;
	/* Frees cut in the middle, settled while the lease still holds (the
	 * coordinator's scan resets an abandoned slot within about 1 s). */
	(void)rmp_data_settle(p, c->opts.rdma_timeout_ms ? c->opts.rdma_timeout_ms : 10000);
	/* Out of the renewal list first: no LEASE_RENEW after the close. */
	rmp_client_remove_pool(c, p);
	req.u.pool_close.pool_id = p->pool_id;
	req.u.pool_close.lease_id = p->lease_id;
	rc = rmp_client_call(c, &req, want, 1, false, c->opts.request_timeout_ms, &rep);
	if (rc == 0)
		rmp_wire_msg_release(&rep);
	/* Unknown lease: it had expired already, which is what close wants.
	 * The coordinator away: the lease ends by itself when it is not
	 * renewed (the pool is off the renewal list already). */
	if (rc == -ENOENT || rc == -ETIMEDOUT || rc == -ENOTCONN || rc == -RMP_EAWAY)
		rc = 0;
	rmp_pool_free(p);
	return rc;
}

/* POOL_DESTROY and POOL_FORGET: a pool's name in, an ACK back. Destroying
 * terminates donors, which takes as long as the slowest one exits: it
 * relays their PROGRESS and allows the provisioning bound, not a plain
 * request's. */
static int call_by_name(rmp_client *c, enum rmp_wire_type type, const char *name)
{
	static const uint8_t want[] = { RMP_MSG_ACK };
	struct rmp_wire_msg req = { .type = type }, rep;
	bool destroy = type == RMP_MSG_POOL_DESTROY;
	int rc;

	if (!c)
		return -EINVAL;
	rc = check_name(c, name);
	if (rc)
		return rc;
	strcpy(destroy ? req.u.pool_destroy.name : req.u.pool_forget.name, name);
	rc = rmp_client_call(c, &req, want, 1, destroy,
			     destroy ? c->opts.provision_timeout_ms : c->opts.request_timeout_ms, &rep);
	if (rc == 0)
		rmp_wire_msg_release(&rep);
	return rc;
}

int rmp_pool_destroy(rmp_client *c, const char *name)
{
	return call_by_name(c, RMP_MSG_POOL_DESTROY, name);
}

int rmp_pool_forget(rmp_client *c, const char *name)
{
	return call_by_name(c, RMP_MSG_POOL_FORGET, name);
}

/* ---- rmp_pool_info ---- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int rmp_pool_info(rmp_pool *p, struct rmp_pool_info **out)
{
	const struct rmp_wire_segtab *t;
	struct rmp_pool_info *in;
	uint64_t seg;

	if (!p || !out)
		return -EINVAL;
	*out = NULL;
	t = &p->segtab;
	seg = 1ull << t->segment_log2;
	in = calloc(1, sizeof(*in));
	if (!in)
		return -ENOMEM;
	in->donors = calloc(t->n_donors ? t->n_donors : 1, sizeof(*in->donors));
	uint32_t *hostidx = calloc(t->n_donors ? t->n_donors : 1, sizeof(uint32_t));
	if (!in->donors || !hostidx) {
		free(hostidx);
		rmp_pool_info_free(in);
		return -ENOMEM;
	}
	rmp_client *c = p->c;
	/* The I/O thread updates the table's version, metadata key and
	 * endpoint after a reconnect, and its capacity and donor states when
	 * a donor is lost (client.c): read them under its lock. */
	pthread_mutex_lock(&c->lock);
	snprintf(in->name, sizeof(in->name), "%s", p->name);
	in->pool_id = p->pool_id;
	in->capacity = t->capacity;
	in->space = 1ull << t->space_log2;
	in->min_block = 1ull << t->min_block_log2;
	in->segment_size = seg;
	in->segtab_version = t->version;
	in->metadata_bytes = t->meta.len;
	snprintf(in->coordinator_host, sizeof(in->coordinator_host), "%s", t->coordinator.host);
	in->coordinator_port = t->coordinator.port;
	in->n_donors = t->n_donors;
	for (uint32_t i = 0; i < t->n_donors; i++) {
		struct rmp_pool_donor *d = &in->donors[i];
		d->donor_id = t->donors[i].donor_id;
		snprintf(d->host, sizeof(d->host), "%s", t->donors[i].endpoint.host);
		d->port = t->donors[i].endpoint.port;
	}
	/* Count each donor's segments. Tables are small (<= 32768 entries,
	 * <= 1024 donors): a linear match per segment is fine. */
	for (uint32_t s = 0; s < t->n_segments; s++) {
		if (t->segments[s].donor_id == RMP_WIRE_SEG_RESERVED)
			continue;
		in->backed += seg;
		for (uint32_t i = 0; i < t->n_donors; i++) {
			if (in->donors[i].donor_id == t->segments[s].donor_id) {
				in->donors[i].segments++;
				in->donors[i].bytes += seg;
				if (t->donors[i].state == RMP_DONOR_LOST)
					in->lost_bytes += seg;
				break;
			}
		}
	}
	for (uint32_t i = 0; i < t->n_donors; i++)
		in->donors_lost += t->donors[i].state == RMP_DONOR_LOST;
	/* Distinct hosts: give each host name an index, sort, count changes. */
	for (uint32_t i = 0; i < t->n_donors; i++) {
		uint32_t j = 0;
		while (j < i && strcmp(in->donors[j].host, in->donors[i].host) != 0)
			j++;
		hostidx[i] = j;
	}
	qsort(hostidx, t->n_donors, sizeof(uint32_t), cmp_u32);
	for (uint32_t i = 0; i < t->n_donors; i++)
		if (i == 0 || hostidx[i] != hostidx[i - 1])
			in->n_hosts++;
	free(hostidx);

	in->lease_id = p->lease_id;
	in->lease_ttl_ms = p->ttl_ms;
	in->lease_expired = p->expired || p->unconfirmed;
	pthread_mutex_unlock(&c->lock);
	in->holds = atomic_load_explicit(&p->holds, memory_order_relaxed);
	in->hold_waits = atomic_load_explicit(&p->hold_waits, memory_order_relaxed);
	in->hold_wait_ms = atomic_load_explicit(&p->hold_wait_ms, memory_order_relaxed);
	pthread_mutex_lock(&p->data_lock);
	if (p->data) {
		struct rmp_shard_stats st;
		rmp_shards_stats(&p->data->sh, &st);
		in->frees_in_doubt = st.doubts;
		in->frees_unsettled = (uint32_t)st.unsettled;
	}
	pthread_mutex_unlock(&p->data_lock);
	*out = in;
	return 0;
}

void rmp_pool_meta_get(rmp_pool *p, struct rmp_wire_region *meta, struct rmp_wire_endpoint *coord,
		       uint64_t *epoch)
{
	pthread_mutex_lock(&p->c->lock);
	*meta = p->segtab.meta;
	*coord = p->segtab.coordinator;
	*epoch = atomic_load_explicit(&p->meta_epoch, memory_order_acquire);
	pthread_mutex_unlock(&p->c->lock);
}

void rmp_pool_info_free(struct rmp_pool_info *info)
{
	if (!info)
		return;
	free(info->donors);
	free(info);
}
