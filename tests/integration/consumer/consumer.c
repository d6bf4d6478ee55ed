/* SPDX-License-Identifier: Apache-2.0 */
/*
 * consumer.c - a program outside the tree, built against an installed
 * rmpool (tests/integration/install_consumer.sh builds it four ways:
 * pkg-config and CMake, shared and static). It uses only the installed
 * headers and checks what needs no coordinator: the loaded library's
 * version against the header's, error texts, the size rule of the
 * caller-filled struct, and the in-process heap. Prints what it saw;
 * exits 1 at the first thing that is not as documented.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rmpool.h>
#include <rmpool/heap.h>

static int failed(const char *what)
{
	fprintf(stderr, "consumer: FAILED: %s\n", what);
	return 1;
}

int main(void)
{
	printf("consumer: header %s (%d), library %s\n", RMPOOL_VERSION, RMPOOL_VERSION_NUMBER,
	       rmp_version());
	if (strcmp(rmp_version(), RMPOOL_VERSION) != 0)
		return failed("rmp_version() is not the header's RMPOOL_VERSION");

	printf("consumer: rmp_strerror(-RMP_EAUTH) = \"%s\"\n", rmp_strerror(-RMP_EAUTH));
	if (!strstr(rmp_strerror(-RMP_EAUTH), "secret"))
		return failed("rmp_strerror(-RMP_EAUTH) does not speak of the secret");

	/* A struct whose size was not set is refused before any network. */
	struct rmp_connect_opts unset;
	memset(&unset, 0, sizeof(unset));
	rmp_client *c = NULL;
	int rc = rmp_connect_ex("127.0.0.1:1", "a-secret-long-enough-for-rmpool", &unset, &c);
	printf("consumer: rmp_connect_ex(size 0) = %d (%s)\n", rc, rmp_last_error(NULL));
	if (rc != -EINVAL || c)
		return failed("opts without a size were not refused with -EINVAL");
	struct rmp_connect_opts o = RMP_CONNECT_OPTS_INIT;
	if (o.size != sizeof(o))
		return failed("RMP_CONNECT_OPTS_INIT does not set the size");

	rmp_heap *h;
	char err[200];
	uint64_t free_bytes = 0;
	if (rmp_heap_create(1 << 20, 64, &h) != 0)
		return failed("rmp_heap_create");
	void *p = rmp_heap_alloc(h, 1000);
	if (!p || rmp_heap_block_size(h, p) != 1024)
		return failed("rmp_heap_alloc(1000) is not a 1 KiB block");
	memset(p, 0xa5, 1000);
	if (rmp_heap_free(h, p) != 0 || rmp_heap_free(h, p) != -EINVAL)
		return failed("rmp_heap_free: first 0, a second -EINVAL");
	if (rmp_heap_check(h, err, sizeof(err), &free_bytes) != 0 ||
	    free_bytes != rmp_heap_capacity(h))
		return failed("rmp_heap_check after free");
	printf("consumer: heap of %llu bytes: alloc 1000 -> 1024-byte block, free, check ok\n",
	       (unsigned long long)rmp_heap_capacity(h));
	rmp_heap_destroy(h);
	printf("consumer: ok\n");
	return 0;
}
