/* SPDX-License-Identifier: Apache-2.0 */
/*
 * data_util.h - what the consumer programs of tests/rdma (pool_data.c,
 * restart_data.c) share: the clock, the call that must succeed, attaching
 * to a pool, the byte patterns blocks are written with, and which hosts
 * lie behind a block.
 *
 *   du_now_s(), du_now_ms()   monotonic clock
 *   du_require_ok(rc, what)   dies with the code and the library's detail
 *   du_open_pool(name, &cl)   connects (RMPOOL_COORDINATOR, RMPOOL_SECRET)
 *                             and attaches; du_close_pool undoes both
 *   du_fill(buf, n, seed)     n bytes of the pattern of seed (xorshift64:
 *                             two seeds' patterns differ in nearly every
 *                             byte, so a misplaced or stale block shows)
 *   du_block_hosts(...)       adds the hosts of the donors behind block a
 *                             to a set of host names; says which they are
 * Failures die through check.h's check_die ("NAME: FAILED: why", exit 1).
 * Header-only, like check.h: each test program is one translation unit.
 */
#ifndef RMP_TESTS_RDMA_DATA_UTIL_H
#define RMP_TESTS_RDMA_DATA_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "rmpool.h"

#define DU_UNUSED __attribute__((unused))

enum { DU_HOST_LEN = 256, DU_MAX_HOSTS = 16 };

DU_UNUSED static double du_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

DU_UNUSED static uint64_t du_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* An API call that must succeed: its code and the library's detail. */
DU_UNUSED static void du_require_ok(int rc, const char *what)
{
	if (rc)
		check_die("%s: %s (%s)", what, rmp_strerror(rc), rmp_last_error(NULL));
}

DU_UNUSED static rmp_pool *du_open_pool(const char *name, rmp_client **cl)
{
	const char *coord = getenv("RMPOOL_COORDINATOR");
	rmp_pool *p;

	if (!coord)
		check_die("RMPOOL_COORDINATOR is not set");
	du_require_ok(rmp_connect(coord, NULL, cl), "rmp_connect");
	du_require_ok(rmp_pool_open(*cl, name, 0, &p), "rmp_pool_open (attach)");
	return p;
}

DU_UNUSED static void du_close_pool(rmp_pool *p, rmp_client *cl)
{
	du_require_ok(rmp_pool_close(p), "rmp_pool_close");
	rmp_disconnect(cl);
}

DU_UNUSED static void du_fill(uint8_t *b, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

	if (x == 0) /* xorshift's one fixed point: all zeros */
		x = 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		b[i] = (uint8_t)x;
	}
}

/* Adds the hosts behind block a (of pool p, whose info is in) to
 * hosts[0..*nh), at most DU_MAX_HOSTS of them; returns how many hosts the
 * block lies on, their indices in hosts[] in mine[] (DU_MAX_HOSTS of
 * room; NULL: not wanted). A segment's donor comes from the pool's segment table
 * (rmp_pool_segment_donor), its host from the pool's donor list. */
DU_UNUSED static unsigned du_block_hosts(rmp_pool *p, const struct rmp_pool_info *in, rmp_addr a,
					 char (*hosts)[DU_HOST_LEN], unsigned *nh, unsigned *mine)
{
	uint64_t off = RMP_ADDR_OFFSET(a), len = 1ull << RMP_ADDR_ORDER(a);
	unsigned own[DU_MAX_HOSTS], n_mine = 0;

	if (!mine)
		mine = own;

	for (uint64_t s = off / in->segment_size; s * in->segment_size < off + len; s++) {
		uint32_t did;
		du_require_ok(rmp_pool_segment_donor(p, s, &did), "rmp_pool_segment_donor");
		for (size_t i = 0; i < in->n_donors; i++) {
			if (in->donors[i].donor_id != did)
				continue;
			unsigned k, m;
			for (k = 0; k < *nh && strcmp(hosts[k], in->donors[i].host); k++)
				;
			if (k == *nh) {
				if (*nh == DU_MAX_HOSTS)
					check_die("more than %d hosts behind one pool", DU_MAX_HOSTS);
				snprintf(hosts[(*nh)++], DU_HOST_LEN, "%s", in->donors[i].host);
			}
			for (m = 0; m < n_mine && mine[m] != k; m++)
				;
			if (m == n_mine)
				mine[n_mine++] = k;
		}
	}
	return n_mine;
}

#endif
