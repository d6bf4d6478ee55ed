/* meta.c - memory the coordinator serves itself, in POSIX shared memory:
 * a pool's buddy metadata ("/rmpool-<name>") and its self-contribution
 * ("/rmpool-<name>.self").
 *
 * Shared memory rather than malloc because the objects outlive this
 * process (DESIGN.md, "Failure model"): a coordinator that restarts finds
 * its pools' metadata where it left it and maps it again
 * (rmp_srv_meta_open: an existing object only, of the recorded size, never
 * created, so a wiped /dev/shm shows as a missing object and is never
 * papered over by an empty one). A new object is created O_EXCL: one left
 * by an earlier run is never silently overwritten (it may hold live
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

int rmp_srv_meta_open(struct rmp_srv_region *r, const char *shm_name, uint64_t len, char *err,
		      size_t errlen)
{
	struct stat sb;

	memset(r, 0, sizeof(*r));
	snprintf(r->shm_name, sizeof(r->shm_name), "%s", shm_name);
	int fd = shm_open(shm_name, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			snprintf(err, errlen,
				 "shared-memory object %s is gone (the host rebooted, or /dev/shm was "
				 "wiped): the pool's allocations cannot be recovered",
				 shm_name);
		else
			snprintf(err, errlen, "shm_open(%s): %s", shm_name, strerror(e));
		r->shm_name[0] = '\0';
		return -e;
	}
	int rc = 0;
	if (fstat(fd, &sb) != 0) {
		rc = -errno;
		snprintf(err, errlen, "fstat(%s): %s", shm_name, strerror(-rc));
	} else if ((uint64_t)sb.st_size != len) {
		rc = -EPROTO;
		snprintf(err, errlen,
			 "shared-memory object %s is %" PRIu64 " bytes; the record says %" PRIu64,
			 shm_name, (uint64_t)sb.st_size, len);
	}
	void *mem = rc ? MAP_FAILED : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (!rc && mem == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "mmap(%s, %" PRIu64 "): %s", shm_name, len, strerror(-rc));
	}
	close(fd);
	if (rc) {
		r->shm_name[0] = '\0';
		return rc;
	}
	r->mem = mem;
	r->len = len;
	return 0;
}

void rmp_srv_meta_unlink(const char *shm_name)
{
	if (shm_name[0] && shm_unlink(shm_name) < 0 && errno != ENOENT)
		rmp_log_syserr("shm_unlink()", errno, "%s", shm_name);
}

void rmp_srv_meta_destroy(struct rmp_srv_region *r, bool unlink_shm)
{
	if (r->mem)
		munmap(r->mem, r->len);
	if (unlink_shm && r->shm_name[0] && shm_unlink(r->shm_name) < 0)
		rmp_log_syserr("shm_unlink()", errno, "%s", r->shm_name);
	memset(r, 0, sizeof(*r));
}
