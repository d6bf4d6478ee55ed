/*
 * data.c - the data half of librmpool: alloc, free, read and write over
 * one-sided RDMA.
 *
 * NOT IMPLEMENTED YET. The next step (the data path issue) connects to
 * the pool's metadata region and to each donor with rdma_cm, drives the
 * buddy engine on the RDMA word store (common/store_rdma.c) and splits
 * reads and writes at segment boundaries. Until then each entry point
 * checks its arguments and returns -ENOSYS, so that no caller can
 * mistake a stub for a working pool.
 */
#include <errno.h>

#include "client_internal.h"

static int not_yet(rmp_pool *p, const char *what)
{
	return rmp_client_fail(p ? p->c : NULL, -ENOSYS,
			       "%s: the RDMA data path is not implemented yet", what);
}

int rmp_alloc(rmp_pool *p, uint64_t size, rmp_addr *out)
{
	if (!p || !out || size == 0)
		return -EINVAL;
	*out = 0;
	return not_yet(p, "rmp_alloc");
}

int rmp_free(rmp_pool *p, rmp_addr a)
{
	if (!p || a == 0)
		return -EINVAL;
	return not_yet(p, "rmp_free");
}

int rmp_write(rmp_pool *p, rmp_addr dst, const void *src, uint64_t len)
{
	if (!p || dst == 0 || (!src && len))
		return -EINVAL;
	return not_yet(p, "rmp_write");
}

int rmp_read(rmp_pool *p, void *dst, rmp_addr src, uint64_t len)
{
	if (!p || src == 0 || (!dst && len))
		return -EINVAL;
	return not_yet(p, "rmp_read");
}
