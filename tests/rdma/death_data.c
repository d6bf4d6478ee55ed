/* SPDX-License-Identifier: Apache-2.0 */
/*
 * death_data.c - a consumer that holds blocks on a donor while that donor
 * is killed, for tests/rdma/donor_death.sh.
 *
 *   death_data NAME DIR VICTIM_HOST
 *
 * Coordinator from RMPOOL_COORDINATOR, secret from RMPOOL_SECRET. Steps,
 * each one checked (exit 1 on the first failure, saying why):
 *   1. attaches to pool NAME; the victim is the donor on VICTIM_HOST (it
 *      must be the only one there); allocates 4 MiB blocks (one segment
 *      each) until HOLD of them lie on the victim and HOLD on other donors
 *      (rmp_pool_segment_donor says where), frees the others, writes each
 *      block kept with a pattern of its own handle and reads it back;
 *   2. writes DIR/ready ("victim D version V"), then polls rmp_pool_info
 *      every millisecond until the segment table's version moves (at most
 *      POLL_MAX_MS); writes DIR/seen at once (its mtime, on the host's
 *      clock, is what the driver sets against the kill's);
 *   3. the new table: capacity down by the victim's bytes, 1 donor lost,
 *      lost_bytes = the victim's bytes;
 *   4. a read and a write of a block on the victim fail with -RMP_EDONOR,
 *      the detail naming the donor and its host, each within
 *      FAIL_FAST_MS (no network wait); the blocks on other donors read
 *      back byte for byte;
 *   5. allocations of 4 MiB until -ENOMEM: none lies on the victim, and
 *      their number is exactly what the capacity left holds besides the
 *      blocks kept on other donors;
 *   6. a block on the victim is freed (0), its handle is released: a
 *      second free and a read of it are -EINVAL;
 *   7. everything freed, the blocks on other donors read once more first.
 * Prints one line of figures: "death_data: figures ..." with the time from
 * step 2's start to the new version, the failed read's and write's times,
 * the blocks allocated in step 5.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "data_util.h"
#include "rmpool.h"

#define BLOCK (4ull << 20)
#define HOLD 2u
#define MAX_BLOCKS 256u
#define POLL_MAX_MS 60000u
#define FAIL_FAST_MS 100u /* an answer without the network: far below any RDMA wait */

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Whether any segment of block a lies on donor `victim`. */
static bool on_donor(rmp_pool *p, const struct rmp_pool_info *in, rmp_addr a, uint32_t victim)
{
	uint64_t off = RMP_ADDR_OFFSET(a), len = 1ull << RMP_ADDR_ORDER(a);

	for (uint64_t s = off / in->segment_size; s * in->segment_size < off + len; s++) {
		uint32_t did;
		du_require_ok(rmp_pool_segment_donor(p, s, &did), "rmp_pool_segment_donor");
		if (did == victim)
			return true;
	}
	return false;
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512], tmp[520];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
		check_die("cannot write %s", path);
}

static void put_block(rmp_pool *p, rmp_addr a, uint8_t *buf)
{
	du_fill(buf, BLOCK, a);
	du_require_ok(rmp_write(p, a, buf, BLOCK), "rmp_write");
}

static void check_block(rmp_pool *p, rmp_addr a, uint8_t *want, uint8_t *got)
{
	du_fill(want, BLOCK, a);
	du_require_ok(rmp_read(p, got, a, BLOCK), "rmp_read of a block on a live donor");
	if (memcmp(want, got, BLOCK) != 0) {
		size_t bad = 0;
		for (size_t i = 0; i < BLOCK; i++)
			bad += want[i] != got[i];
		check_die("block %#" PRIx64 " on a live donor: %zu wrong byte(s)", (uint64_t)a, bad);
	}
}

/* Step 1: HOLD blocks on the victim, HOLD elsewhere; the rest freed. */
static void gather(rmp_pool *p, const struct rmp_pool_info *in, uint32_t victim, rmp_addr *vb,
		   rmp_addr *lb)
{
	rmp_addr extra[MAX_BLOCKS];
	unsigned nv = 0, nl = 0, ne = 0;

	while (nv < HOLD || nl < HOLD) {
		rmp_addr a;
		int rc = rmp_alloc(p, BLOCK, &a);
		if (rc)
			check_die("rmp_alloc before the kill, with %u block(s) on the victim and %u elsewhere: %s (%s)",
				  nv, nl, rmp_strerror(rc), rmp_last_error(NULL));
		if (on_donor(p, in, a, victim) && nv < HOLD)
			vb[nv++] = a;
		else if (!on_donor(p, in, a, victim) && nl < HOLD)
			lb[nl++] = a;
		else if (ne < MAX_BLOCKS)
			extra[ne++] = a;
		else
			check_die("%u blocks and still not %u on each side", MAX_BLOCKS, HOLD);
	}
	for (unsigned i = 0; i < ne; i++)
		du_require_ok(rmp_free(p, extra[i]), "rmp_free of a spare block");
}

/* Step 4: a transfer on the victim fails typed and at once. */
static uint64_t expect_edonor(rmp_pool *p, rmp_addr a, uint8_t *buf, bool is_read, uint32_t victim,
			      const char *host)
{
	uint64_t t0 = du_now_ms();
	int rc = is_read ? rmp_read(p, buf, a, BLOCK) : rmp_write(p, a, buf, BLOCK);
	uint64_t took = du_now_ms() - t0;
	char want[64];

	snprintf(want, sizeof(want), "donor %" PRIu32 " at %s", victim, host);
	if (rc != -RMP_EDONOR)
		check_die("rmp_%s of a block on the dead donor: %s (%s), want RMP_EDONOR", is_read ? "read" : "write",
			  rmp_strerror(rc), rmp_last_error(NULL));
	if (!strstr(rmp_last_error(NULL), want))
		check_die("the detail \"%s\" does not name %s", rmp_last_error(NULL), want);
	if (took > FAIL_FAST_MS)
		check_die("rmp_%s on the dead donor took %" PRIu64 " ms, want at most %u", is_read ? "read" : "write",
			  took, FAIL_FAST_MS);
	return took;
}

int main(int argc, char **argv)
{
	check_init("death_data", NULL, 0);
	if (argc != 4)
		check_die("usage: death_data NAME DIR VICTIM_HOST");
	const char *name = argv[1], *dir = argv[2], *vhost = argv[3];
	rmp_client *cl;
	rmp_pool *p = du_open_pool(name, &cl);
	struct rmp_pool_info *in, *now;
	uint8_t *buf = malloc(BLOCK), *buf2 = malloc(BLOCK);
	char text[256];

	if (!buf || !buf2)
		check_die("out of memory");
	du_require_ok(rmp_pool_info(p, &in), "rmp_pool_info");
	uint32_t victim = RMP_NO_DONOR;
	uint64_t vbytes = 0;
	for (size_t i = 0; i < in->n_donors; i++) {
		if (strcmp(in->donors[i].host, vhost) != 0)
			continue;
		if (victim != RMP_NO_DONOR)
			check_die("two donors on %s: %" PRIu32 " and %" PRIu32, vhost, victim, in->donors[i].donor_id);
		victim = in->donors[i].donor_id;
		vbytes = in->donors[i].bytes;
	}
	if (victim == RMP_NO_DONOR || in->donors_lost != 0)
		check_die("no donor on %s, or %u lost already", vhost, in->donors_lost);
	if (in->segment_size != BLOCK)
		check_die("segments of %" PRIu64 " bytes, this test wants %llu", in->segment_size, BLOCK);

	/* 1. blocks on both sides, written and read back */
	rmp_addr vb[HOLD], lb[HOLD];
	gather(p, in, victim, vb, lb);
	for (unsigned i = 0; i < HOLD; i++) {
		put_block(p, vb[i], buf);
		put_block(p, lb[i], buf);
		check_block(p, lb[i], buf, buf2);
	}
	printf("death_data: victim donor %" PRIu32 " on %s (%" PRIu64 " bytes); blocks on it:", victim, vhost,
	       vbytes);
	for (unsigned i = 0; i < HOLD; i++)
		printf(" %#" PRIx64, (uint64_t)vb[i]);
	printf("; on other donors:");
	for (unsigned i = 0; i < HOLD; i++)
		printf(" %#" PRIx64, (uint64_t)lb[i]);
	printf("; segment table version %" PRIu64 ", capacity %" PRIu64 "\n", in->segtab_version, in->capacity);
	fflush(stdout);

	/* 2. the kill happens now; wait for the new table */
	snprintf(text, sizeof(text), "victim %" PRIu32 " version %" PRIu64 "\n", victim, in->segtab_version);
	write_file(dir, "ready", text);
	uint64_t t0 = du_now_ms(), seen_wall = 0, polls = 0;
	for (;;) {
		du_require_ok(rmp_pool_info(p, &now), "rmp_pool_info");
		polls++;
		if (now->segtab_version != in->segtab_version) {
			seen_wall = wall_ms();
			break;
		}
		rmp_pool_info_free(now);
		if (du_now_ms() - t0 > POLL_MAX_MS)
			check_die("no new segment table within %u ms of the ready file", POLL_MAX_MS);
		usleep(1000);
	}
	uint64_t waited = du_now_ms() - t0;
	snprintf(text, sizeof(text), "seen_wall_ms %" PRIu64 " version %" PRIu64 "\n", seen_wall,
		 now->segtab_version);
	write_file(dir, "seen", text);

	/* 3. the new table */
	if (now->segtab_version != in->segtab_version + 1 || now->donors_lost != 1 || now->lost_bytes != vbytes ||
	    now->capacity != in->capacity - vbytes)
		check_die("the new table: version %" PRIu64 " (was %" PRIu64 "), %u donor(s) lost, %" PRIu64
			  " lost bytes (want %" PRIu64 "), capacity %" PRIu64 " (want %" PRIu64 ")",
			  now->segtab_version, in->segtab_version, now->donors_lost, now->lost_bytes, vbytes,
			  now->capacity, in->capacity - vbytes);
	printf("death_data: segment table version %" PRIu64 " seen %" PRIu64 " ms after the ready file (%" PRIu64
	       " polls): capacity %" PRIu64 ", %u donor lost, %" PRIu64 " bytes out of service\n",
	       now->segtab_version, waited, polls, now->capacity, now->donors_lost, now->lost_bytes);

	/* 4. the dead donor fails at once and typed; the others serve */
	uint64_t read_ms = expect_edonor(p, vb[0], buf, true, victim, vhost);
	uint64_t write_ms = expect_edonor(p, vb[1], buf, false, victim, vhost);
	printf("death_data: on the dead donor: rmp_read -RMP_EDONOR in %" PRIu64 " ms, rmp_write in %" PRIu64
	       " ms: %s\n",
	       read_ms, write_ms, rmp_last_error(NULL));
	for (unsigned i = 0; i < HOLD; i++)
		check_block(p, lb[i], buf, buf2);

	/* 5. the capacity left, and none of it on the victim */
	uint64_t want_new = now->capacity / BLOCK - HOLD, got_new = 0, eagain = 0;
	rmp_addr *fresh = calloc(MAX_BLOCKS, sizeof(*fresh));
	if (!fresh)
		check_die("out of memory");
	for (;;) {
		rmp_addr a;
		int rc = rmp_alloc(p, BLOCK, &a);
		if (rc == -EAGAIN && eagain++ < 100) {
			usleep(10000);
			continue;
		}
		if (rc == -ENOMEM)
			break;
		du_require_ok(rc, "rmp_alloc after the loss");
		if (on_donor(p, now, a, victim))
			check_die("rmp_alloc after the loss put block %#" PRIx64 " on the dead donor %" PRIu32, (uint64_t)a,
				  victim);
		if (got_new == MAX_BLOCKS)
			check_die("more than %u blocks after the loss", MAX_BLOCKS);
		fresh[got_new++] = a;
	}
	if (got_new != want_new)
		check_die("%" PRIu64 " blocks of 4 MiB allocated after the loss, want %" PRIu64
			  " (the capacity left, %" PRIu64 ", less the %u held)",
			  got_new, want_new, now->capacity, HOLD);
	printf("death_data: %" PRIu64 " blocks of 4 MiB allocated up to the capacity left, 0 on the dead donor\n",
	       got_new);

	/* 6. a block on the dead donor freed: its handle is released */
	du_require_ok(rmp_free(p, vb[0]), "rmp_free of a block on the dead donor");
	int rc = rmp_free(p, vb[0]);
	if (rc != -EINVAL)
		check_die("a second rmp_free of a block on the dead donor: %s, want EINVAL", rmp_strerror(rc));
	rc = rmp_read(p, buf, vb[0], BLOCK);
	if (rc != -EINVAL)
		check_die("rmp_read of a freed block on the dead donor: %s, want EINVAL", rmp_strerror(rc));
	printf("death_data: block %#" PRIx64 " on the dead donor freed, its handle released (a second free "
	       "and a read: EINVAL)\n",
	       (uint64_t)vb[0]);

	/* 7. all the rest freed */
	for (unsigned i = 0; i < HOLD; i++)
		check_block(p, lb[i], buf, buf2);
	for (uint64_t i = 0; i < got_new; i++)
		du_require_ok(rmp_free(p, fresh[i]), "rmp_free of a new block");
	for (unsigned i = 0; i < HOLD; i++)
		du_require_ok(rmp_free(p, lb[i]), "rmp_free of a block on a live donor");
	for (unsigned i = 1; i < HOLD; i++)
		du_require_ok(rmp_free(p, vb[i]), "rmp_free of a block on the dead donor");
	printf("death_data: figures version_seen_ms %" PRIu64 " read_edonor_ms %" PRIu64 " write_edonor_ms %" PRIu64
	       " allocated_after %" PRIu64 "\n",
	       waited, read_ms, write_ms, got_new);
	rmp_pool_info_free(now);
	rmp_pool_info_free(in);
	free(fresh);
	free(buf);
	free(buf2);
	du_close_pool(p, cl);
	return check_failures() ? 1 : 0;
}
