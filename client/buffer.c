/*
 * buffer.c - registered buffers (rmp_buffer_register, rmp_*_buf): the
 * caller's memory is posted from and to directly, no bounce copy.
 *
 * Each donor connection has its own PD, so a buffer holds one MR per
 * donor slot, made the first time a transfer on that donor uses the
 * buffer, under the donor's lock (mrs[i] is only touched under donor i's
 * lock). When a donor's connection is replaced, the MRs on its old PD
 * are dropped first (rmp_buffer_drop_donor_locked).
 *
 * Live buffers are kept on one process-wide list (buf_lock): a handle is
 * checked against it before use, so a stale or foreign handle is refused
 * with -EINVAL instead of being dereferenced, and each use holds a
 * reference (refs) so that deregistration of a buffer in use fails with
 * -EBUSY. Lock order: donor locks (slot order), then buf_lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "data.h"

struct rmp_buffer {
	struct rmp_buffer *next; /* on buffers, under buf_lock */
	rmp_pool *p;
	uint8_t *addr;
	size_t len;
	unsigned refs;       /* transfers using it, under buf_lock */
	bool dead;           /* being deregistered, under buf_lock */
	unsigned ndonors;
	struct ibv_mr **mrs; /* per donor slot; mrs[i] under donor i's lock */
};

static pthread_mutex_t buf_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rmp_buffer *buffers;

void rmp_buffer_put(rmp_buffer *b)
{
	pthread_mutex_lock(&buf_lock);
	b->refs--;
	pthread_mutex_unlock(&buf_lock);
}

int rmp_buffer_mr_locked(rmp_pool *p, struct rmp_data_donor *dn, unsigned slot, rmp_buffer *b,
			 uint32_t *lkey)
{
	if (!b->mrs[slot]) {
		errno = 0;
		b->mrs[slot] = ibv_reg_mr(rmp_rdma_conn_pd(dn->conn), b->addr, b->len, IBV_ACCESS_LOCAL_WRITE);
		if (!b->mrs[slot]) {
			int rc = errno ? -errno : -ENOMEM;
			return rmp_client_fail(p->c, rc, "registering the buffer of %zu bytes at %p for donor %u: %s",
					       b->len, (void *)b->addr, dn->donor_id, rmp_strerror(rc));
		}
	}
	*lkey = b->mrs[slot]->lkey;
	return 0;
}

void rmp_buffer_drop_donor_locked(rmp_pool *p, unsigned slot)
{
	pthread_mutex_lock(&buf_lock);
	for (struct rmp_buffer *b = buffers; b; b = b->next)
		if (b->p == p && slot < b->ndonors && b->mrs[slot]) {
			ibv_dereg_mr(b->mrs[slot]);
			b->mrs[slot] = NULL;
		}
	pthread_mutex_unlock(&buf_lock);
}

void rmp_buffer_drop_pool(rmp_pool *p)
{
	pthread_mutex_lock(&buf_lock);
	for (struct rmp_buffer **pp = &buffers; *pp;) {
		struct rmp_buffer *b = *pp;
		if (b->p != p) {
			pp = &b->next;
			continue;
		}
		*pp = b->next;
		for (unsigned i = 0; i < b->ndonors; i++)
			if (b->mrs[i])
				ibv_dereg_mr(b->mrs[i]);
		free(b->mrs);
		free(b);
	}
	pthread_mutex_unlock(&buf_lock);
}

int rmp_buffer_register(rmp_pool *p, void *addr, size_t len, rmp_buffer **out)
{
	struct rmp_data *d;
	int rc;

	if (!out)
		return rmp_data_bad_arg(p, "rmp_buffer_register: NULL result pointer");
	*out = NULL;
	if (!p)
		return rmp_data_bad_arg(p, "rmp_buffer_register: NULL pool");
	if (!addr || len == 0)
		return rmp_client_fail(p->c, -EINVAL, "rmp_buffer_register: %s", addr ? "zero length" : "NULL address");
	if ((rc = rmp_data_of(p, &d)) != 0)
		return rc;
	struct rmp_buffer *b = calloc(1, sizeof(*b));
	if (!b || !(b->mrs = calloc(d->ndonors ? d->ndonors : 1, sizeof(*b->mrs)))) {
		free(b);
		return -ENOMEM;
	}
	b->p = p;
	b->addr = addr;
	b->len = len;
	b->ndonors = d->ndonors;
	pthread_mutex_lock(&buf_lock);
	b->next = buffers;
	buffers = b;
	pthread_mutex_unlock(&buf_lock);
	*out = b;
	return 0;
}

int rmp_buffer_deregister(rmp_buffer *b)
{
	struct rmp_buffer **pp;

	if (!b)
		return rmp_data_bad_arg(NULL, "rmp_buffer_deregister: NULL buffer");
	pthread_mutex_lock(&buf_lock);
	for (pp = &buffers; *pp && *pp != b; pp = &(*pp)->next)
		;
	if (!*pp || b->dead) {
		pthread_mutex_unlock(&buf_lock);
		return rmp_data_bad_arg(NULL, "rmp_buffer_deregister: not a registered buffer (deregistered, or its pool closed)");
	}
	if (b->refs) {
		pthread_mutex_unlock(&buf_lock);
		return rmp_client_fail(b->p->c, -EBUSY, "rmp_buffer_deregister: %u operation(s) still use the buffer",
				       b->refs);
	}
	b->dead = true; /* no new user from here on */
	pthread_mutex_unlock(&buf_lock);
	struct rmp_data *d = b->p->data;
	for (unsigned i = 0; i < b->ndonors; i++) {
		pthread_mutex_lock(&d->donors[i].lock);
		if (b->mrs[i])
			ibv_dereg_mr(b->mrs[i]);
		b->mrs[i] = NULL;
		pthread_mutex_unlock(&d->donors[i].lock);
	}
	pthread_mutex_lock(&buf_lock);
	for (pp = &buffers; *pp && *pp != b; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = b->next;
	pthread_mutex_unlock(&buf_lock);
	free(b->mrs);
	free(b);
	return 0;
}

int rmp_buffer_prepare(rmp_pool *p, struct rmp_data *d, rmp_buffer *b, size_t boff, rmp_addr a,
		       uint64_t len, const char *what, uint64_t *off, uint8_t **local)
{
	int found = 0;
	int rc;

	pthread_mutex_lock(&buf_lock);
	for (struct rmp_buffer *x = buffers; x; x = x->next)
		if (x == b) {
			found = x->p == p && !x->dead;
			break;
		}
	if (found && (boff > b->len || len > b->len - boff)) {
		pthread_mutex_unlock(&buf_lock);
		return rmp_client_fail(p->c, -EINVAL, "%s: %llu bytes from offset %zu run past the %zu-byte buffer", what,
				       (unsigned long long)len, boff, b->len);
	}
	if (found)
		b->refs++;
	pthread_mutex_unlock(&buf_lock);
	if (!found)
		return rmp_client_fail(p->c, -EINVAL, "%s: %s", what,
				       b ? "not a buffer registered on this pool (deregistered?)" : "NULL buffer");
	*local = b->addr + boff;
	if ((rc = rmp_data_range_check(p, d, a, *local, len, what, off)) != 0)
		rmp_buffer_put(b);
	return rc;
}

int rmp_write_buf(rmp_pool *p, rmp_addr dst, rmp_buffer *b, size_t off, uint64_t len)
{
	struct rmp_data *d;
	uint64_t poff;
	uint8_t *local;
	int rc;

	if ((rc = rmp_data_of(p, &d)) != 0 ||
	    (rc = rmp_buffer_prepare(p, d, b, off, dst, len, "rmp_write_buf", &poff, &local)) != 0)
		return rc;
	rc = rmp_transfer(p, d, poff, local, b, len, false);
	rmp_buffer_put(b);
	return rc;
}

int rmp_read_buf(rmp_pool *p, rmp_buffer *b, size_t off, rmp_addr src, uint64_t len)
{
	struct rmp_data *d;
	uint64_t poff;
	uint8_t *local;
	int rc;

	if ((rc = rmp_data_of(p, &d)) != 0 ||
	    (rc = rmp_buffer_prepare(p, d, b, off, src, len, "rmp_read_buf", &poff, &local)) != 0)
		return rc;
	rc = rmp_transfer(p, d, poff, local, b, len, true);
	rmp_buffer_put(b);
	return rc;
}
