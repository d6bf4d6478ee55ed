/* meta.c - memory the coordinator serves itself, in POSIX shared memory:
 * a pool's buddy metadata ("/rmpool-<name>") and its self-contribution
 * ("/rmpool-<name>.self").
 *
 * Shared memory rather than malloc because the objects outlive this
 * process (DESIGN.md, "Failure model"): a coordinator that restarts finds its pools'
 * metadata where it left it. The object is created O_EXCL: one left by
 * an earlier run is never silently overwritten (it may hold live
 * allocations); the error names it so an operator can remove it.
 *
 * The caller formats the metadata with plain stores before the region
 * is registered for RDMA; after registration the CPU only reads it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "srv.h"

int rmp_srv_meta_create(struct rmp_srv_region *r, const char *pool_name, const char *suffix,
			uint64_t len, char *err, size_t errlen)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t pg = page > 0 ? (uint64_t)page : 4096u;

	memset(r, 0, sizeof(*r));
	snprintf(r->shm_name, sizeof(r->shm_name), "/rmpool-%s%s", pool_name, suffix);
	len = (len + pg - 1) & ~(pg - 1);
	int fd = shm_open(r->shm_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		if (e == EEXIST)
			snprintf(err, errlen,
				 "shared-memory object %s exists (left by an earlier coordinator?); "
				 "remove /dev/shm%s to reuse the name",
				 r->shm_name, r->shm_name);
		else
			snprintf(err, errlen, "shm_open(%s): %s", r->shm_name, strerror(e));
		return -e;
	}
	int rc;
	if (ftruncate(fd, (off_t)len) < 0) {
		int e = errno;
		rc = -e;
		snprintf(err, errlen, "ftruncate(%s, %" PRIu64 "): %s", r->shm_name, len,
			 strerror(e));
		goto out_unlink;
	}
	void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		int e = errno;
		rc = -e;
		snprintf(err, errlen, "mmap(%s, %" PRIu64 "): %s", r->shm_name, len, strerror(e));
		goto out_unlink;
	}
	close(fd);
	r->mem = mem;
	r->len = len;
	return 0;

out_unlink:
	close(fd);
	shm_unlink(r->shm_name);
	r->shm_name[0] = '\0';
	return rc;
}

void rmp_srv_meta_destroy(struct rmp_srv_region *r, bool unlink_shm)
{
	if (r->mem)
		munmap(r->mem, r->len);
	if (unlink_shm && r->shm_name[0] && shm_unlink(r->shm_name) < 0)
		rmp_log_syserr("shm_unlink()", errno, "%s", r->shm_name);
	memset(r, 0, sizeof(*r));
}
