/* test_server_state.c - server/state.c: what is written survives a reopen,
 * the generation rises at every open, a second opener is refused with the
 * holder's pid, and every bad state file is refused and left unchanged. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "state.h"

static char dir[64];
static char db[128];

static void setup(void)
{
	strcpy(dir, "/tmp/rmp-state-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/state.db", dir);
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(state, .init = setup, .fini = teardown);

static struct rmp_state *open_ok(uint64_t *gen)
{
	struct rmp_state *st = NULL;
	char err[512];
	int rc = rmp_state_open_sqlite(dir, &st, gen, err, sizeof(err));
	cr_assert_eq(rc, 0, "open: %s", err);
	return st;
}

static int open_fails(char *err, size_t errlen)
{
	struct rmp_state *st = NULL;
	uint64_t gen = 0;
	int rc = rmp_state_open_sqlite(dir, &st, &gen, err, errlen);
	cr_assert_null(st);
	cr_assert_neq(rc, 0);
	return rc;
}

static void put_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static uint8_t *read_file(const char *path, size_t *len)
{
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0);
	uint8_t *b = malloc((size_t)sb.st_size + 1);
	int fd = open(path, O_RDONLY);
	cr_assert_eq(read(fd, b, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*len = (size_t)sb.st_size;
	return b;
}

struct seen {
	unsigned pools, donors, leases;
	struct rmp_state_pool pool;
	uint8_t segtab[16];
	struct rmp_state_donor donor;
	struct rmp_state_lease lease;
};

static int see_pool(void *arg, const struct rmp_state_pool *p)
{
	struct seen *s = arg;
	s->pools++;
	s->pool = *p;
	cr_assert_eq(p->segtab_len, 5);
	memcpy(s->segtab, p->segtab, p->segtab_len);
	s->pool.segtab = NULL;
	return 0;
}

static int see_donor(void *arg, const struct rmp_state_donor *d)
{
	struct seen *s = arg;
	s->donors++;
	s->donor = *d;
	return 0;
}

static int see_lease(void *arg, const struct rmp_state_lease *l)
{
	struct seen *s = arg;
	s->leases++;
	s->lease = *l;
	return 0;
}

Test(state, written_state_survives_a_reopen_and_the_generation_rises)
{
	uint64_t g1 = 0, g2 = 0;
	struct rmp_state *st = open_ok(&g1);
	cr_assert_eq(g1, 1);
	uint8_t blob[5] = { 1, 2, 3, 0, 0xff };
	struct rmp_state_pool p = { .id = 7, .state = 1, .capacity = 224ull << 20, .space_log2 = 28,
				    .segment_log2 = 22, .min_block_log2 = 12, .meta_len = 36864,
				    .segtab_version = 3, .segtab = blob, .segtab_len = sizeof(blob) };
	strcpy(p.name, "big");
	strcpy(p.meta_shm, "/rmpool-big");
	struct rmp_state_donor d = { .id = 9, .pool_id = 7, .state = 2, .pid = 4242,
				     .region = { .addr = 0xffff800012345000ull, .len = 56ull << 20,
						 .rkey = 0xdeadbeef },
				     .base = 64ull << 20, .cost = 61ull << 20 };
	strcpy(d.host, "198.18.0.2");
	strcpy(d.endpoint.host, "198.18.0.2");
	d.endpoint.port = 40001;
	struct rmp_state_lease l = { .id = 11, .pool_id = 7, .session = 1ull << 40,
				     .expires_wall_ms = 1800000000000ull, .slot_base = 1008,
				     .reclaim = true };
	cr_assert_eq(rmp_state_begin(st), 0);
	cr_assert_eq(rmp_state_pool_put(st, &p), 0);
	cr_assert_eq(rmp_state_donor_put(st, &d), 0);
	cr_assert_eq(rmp_state_lease_put(st, &l), 0);
	cr_assert_eq(rmp_state_counter_set(st, RMP_STATE_NEXT_DONOR, 10), 0);
	cr_assert_eq(rmp_state_commit(st), 0);
	/* A change rolled back leaves nothing. */
	cr_assert_eq(rmp_state_begin(st), 0);
	cr_assert_eq(rmp_state_pool_delete(st, 7), 0);
	rmp_state_rollback(st);
	rmp_state_close(st);

	st = open_ok(&g2);
	cr_assert_eq(g2, g1 + 1, "the generation rises at every open");
	struct seen s = { 0 };
	cr_assert_eq(rmp_state_pools_each(st, see_pool, &s), 0);
	cr_assert_eq(rmp_state_donors_each(st, see_donor, &s), 0);
	cr_assert_eq(rmp_state_leases_each(st, see_lease, &s), 0);
	cr_assert_eq(s.pools, 1);
	cr_assert_str_eq(s.pool.name, "big");
	cr_assert_str_eq(s.pool.meta_shm, "/rmpool-big");
	cr_assert_eq(s.pool.capacity, 224ull << 20);
	cr_assert_eq(s.pool.segtab_version, 3);
	cr_assert_arr_eq(s.segtab, blob, sizeof(blob));
	cr_assert_eq(s.donors, 1);
	cr_assert_eq(s.donor.region.addr, 0xffff800012345000ull, "64-bit values kept bit for bit");
	cr_assert_eq(s.donor.region.rkey, 0xdeadbeef);
	cr_assert_eq(s.donor.endpoint.port, 40001);
	cr_assert_eq(s.donor.pid, 4242);
	cr_assert_eq(s.leases, 1);
	cr_assert_eq(s.lease.session, 1ull << 40);
	cr_assert_eq(s.lease.slot_base, 1008);
	cr_assert(s.lease.reclaim);
	uint64_t v = 0;
	cr_assert_eq(rmp_state_counter_get(st, RMP_STATE_NEXT_DONOR, &v), 0);
	cr_assert_eq(v, 10);
	cr_assert_eq(rmp_state_counter_get(st, RMP_STATE_NEXT_POOL, &v), 0);
	cr_assert_eq(v, 0, "a counter never set reads 0");
	cr_assert_eq(rmp_state_begin(st), 0);
	cr_assert_eq(rmp_state_donor_delete(st, 9), 0);
	cr_assert_eq(rmp_state_commit(st), 0);
	s = (struct seen){ 0 };
	cr_assert_eq(rmp_state_donors_each(st, see_donor, &s), 0);
	cr_assert_eq(s.donors, 0);
	rmp_state_close(st);
}

Test(state, a_second_coordinator_is_refused_with_the_holders_pid)
{
	uint64_t g;
	struct rmp_state *st = open_ok(&g);
	char err[512], want[64];
	cr_assert_eq(open_fails(err, sizeof(err)), -EBUSY);
	snprintf(want, sizeof(want), "pid %ld", (long)getpid());
	cr_assert(strstr(err, want), "%s", err);
	rmp_state_close(st);
	/* Released on close (and by the kernel when the holder dies). */
	st = open_ok(&g);
	cr_assert_eq(g, 2);
	rmp_state_close(st);
}

Test(state, bad_state_files_are_refused_and_left_unchanged)
{
	static const struct {
		const char *what, *data;
		size_t len;
		int rc;
		const char *says;
	} cases[] = {
		{ "empty", "", 0, -EPROTO, "empty" },
		{ "garbage", "this is not a database at all, not even close....", 50, -EPROTO,
		  "not an rmpool state file" },
	};
	char err[512];

	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		put_file(db, cases[i].data, cases[i].len);
		cr_expect_eq(open_fails(err, sizeof(err)), cases[i].rc, "%s: %s", cases[i].what, err);
		cr_expect(strstr(err, cases[i].says), "%s: %s", cases[i].what, err);
		size_t len;
		uint8_t *after = read_file(db, &len);
		cr_expect_eq(len, cases[i].len, "%s: the file was changed", cases[i].what);
		cr_expect(len == 0 || memcmp(after, cases[i].data, len) == 0, "%s: changed", cases[i].what);
		free(after);
	}
}

Test(state, a_truncated_state_file_is_refused)
{
	uint64_t g;
	struct rmp_state *st = open_ok(&g);
	struct rmp_state_pool p = { .id = 1, .space_log2 = 20, .segment_log2 = 16, .min_block_log2 = 12 };
	strcpy(p.name, "p");
	cr_assert_eq(rmp_state_begin(st), 0);
	for (unsigned i = 1; i <= 200; i++) {
		p.id = i;
		snprintf(p.name, sizeof(p.name), "pool-%u", i);
		cr_assert_eq(rmp_state_pool_put(st, &p), 0);
	}
	cr_assert_eq(rmp_state_commit(st), 0);
	rmp_state_close(st); /* the last close checkpoints the WAL into state.db */
	size_t len;
	uint8_t *whole = read_file(db, &len);
	cr_assert_gt(len, 8192);
	/* Cut mid-page; at a page boundary; one byte short (SQLite would
	 * read the missing byte as zero and pass quick_check: only the
	 * size says it); inside the header. */
	const size_t cuts[] = { len / 2 + 100, len - 4096, len - 1, 60 };
	char err[512];
	for (unsigned i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		put_file(db, whole, cuts[i]);
		int rc = open_fails(err, sizeof(err));
		cr_expect_eq(rc, -EPROTO, "cut to %zu of %zu bytes: %s", cuts[i], len, err);
		cr_expect(strstr(err, "truncated"), "cut to %zu of %zu bytes: %s", cuts[i], len, err);
		size_t after_len;
		uint8_t *after = read_file(db, &after_len);
		cr_expect(after_len == cuts[i] && memcmp(after, whole, cuts[i]) == 0,
			  "cut to %zu bytes: the file was changed (%zu bytes now)", cuts[i], after_len);
		free(after);
	}
	put_file(db, whole, len);
	free(whole);
	rmp_state_close(open_ok(&g)); /* the whole file again: it opens */
}

Test(state, another_programs_sqlite_file_and_a_newer_schema_are_refused)
{
	char err[512];
	uint64_t g;

	rmp_state_close(open_ok(&g));
	/* Rewrite the header fields of a good file: application_id is the 4
	 * bytes at offset 68 of a SQLite file, user_version those at 60
	 * (big-endian). */
	size_t len;
	uint8_t *b = read_file(db, &len);
	cr_assert_eq(b[68] << 24 | b[69] << 16 | b[70] << 8 | b[71], RMP_STATE_APP_ID);
	b[68] = 0x12, b[69] = 0x34, b[70] = 0x56, b[71] = 0x78;
	put_file(db, b, len);
	cr_expect_eq(open_fails(err, sizeof(err)), -EPROTO, "%s", err);
	cr_expect(strstr(err, "another program"), "%s", err);
	b[68] = 0x52, b[69] = 0x4d, b[70] = 0x50, b[71] = 0x4c; /* ours again */
	b[60] = 0, b[61] = 0, b[62] = 0, b[63] = RMP_STATE_SCHEMA_VERSION + 1;
	put_file(db, b, len);
	cr_expect_eq(open_fails(err, sizeof(err)), -EPROTONOSUPPORT, "%s", err);
	cr_expect(strstr(err, "newer"), "%s", err);
	b[63] = RMP_STATE_SCHEMA_VERSION;
	put_file(db, b, len);
	rmp_state_close(open_ok(&g));
	cr_expect_eq(g, 2, "the restored file opens, and the refusals did not raise the generation");
	free(b);
}

/* A file of schema version 1 (before leases had owner-record slots),
 * written here as that version's coordinator wrote it: it opens, is
 * upgraded in place (user_version 2), its lease reads back with no slots
 * and not reclaim-pending, and the new columns then hold what is put. */
Test(state, a_schema_1_file_is_upgraded_and_its_leases_gain_the_columns)
{
	static const char v1[] =
		"PRAGMA application_id = 1380798540; PRAGMA user_version = 1;"
		"CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
		"CREATE TABLE pools(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
		" state INTEGER NOT NULL, capacity INTEGER NOT NULL, space_log2 INTEGER NOT NULL,"
		" segment_log2 INTEGER NOT NULL, min_block_log2 INTEGER NOT NULL, meta_shm TEXT NOT NULL,"
		" meta_len INTEGER NOT NULL, self_donor_id INTEGER NOT NULL, self_shm TEXT NOT NULL,"
		" self_len INTEGER NOT NULL, segtab_version INTEGER NOT NULL, segtab BLOB, lost TEXT NOT NULL);"
		"CREATE TABLE donors(id INTEGER PRIMARY KEY, pool_id INTEGER NOT NULL, state INTEGER NOT NULL,"
		" pid INTEGER NOT NULL, standalone INTEGER NOT NULL, host TEXT NOT NULL,"
		" region_addr INTEGER NOT NULL, region_len INTEGER NOT NULL, rkey INTEGER NOT NULL,"
		" ep_host TEXT NOT NULL, ep_port INTEGER NOT NULL, base INTEGER NOT NULL,"
		" cost INTEGER NOT NULL, offered INTEGER NOT NULL);"
		"CREATE TABLE leases(id INTEGER PRIMARY KEY, pool_id INTEGER NOT NULL,"
		" session INTEGER NOT NULL, expires_wall_ms INTEGER NOT NULL);"
		"INSERT INTO leases VALUES(21, 3, 77, 1800000000000);"
		"INSERT INTO counters VALUES('generation', 4);";
	sqlite3 *h;
	uint64_t g = 0;

	cr_assert_eq(RMP_STATE_APP_ID, 1380798540);
	cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(h, v1, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
	sqlite3_close(h);
	struct rmp_state *st = open_ok(&g);
	cr_assert_eq(g, 5, "the old file's state is kept");
	struct seen s = { 0 };
	cr_assert_eq(rmp_state_leases_each(st, see_lease, &s), 0);
	cr_assert_eq(s.leases, 1);
	cr_assert_eq(s.lease.id, 21);
	cr_assert_eq(s.lease.session, 77);
	cr_assert_eq(s.lease.slot_base, UINT32_MAX, "a version-1 lease has no slots");
	cr_assert(!s.lease.reclaim);
	s.lease.slot_base = 32;
	s.lease.reclaim = true;
	cr_assert_eq(rmp_state_begin(st), 0);
	cr_assert_eq(rmp_state_lease_put(st, &s.lease), 0);
	cr_assert_eq(rmp_state_commit(st), 0);
	rmp_state_close(st);
	size_t len;
	uint8_t *b = read_file(db, &len);
	cr_assert_eq(b[60] << 24 | b[61] << 16 | b[62] << 8 | b[63], RMP_STATE_SCHEMA_VERSION,
		     "stamped with the new version");
	free(b);
	st = open_ok(&g);
	s = (struct seen){ 0 };
	cr_assert_eq(rmp_state_leases_each(st, see_lease, &s), 0);
	cr_assert_eq(s.leases, 1);
	cr_assert_eq(s.lease.slot_base, 32);
	cr_assert(s.lease.reclaim);
	rmp_state_close(st);
}

Test(state, a_directory_it_cannot_write_is_refused)
{
	char err[512];
	int fds[2];

	cr_assert_eq(chmod(dir, 0700), 0);
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = fork();
	if (pid == 0) {
		/* As an unprivileged user (root would write anyway). */
		close(fds[0]);
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(3);
		struct rmp_state *st = NULL;
		uint64_t g;
		int rc = rmp_state_open_sqlite(dir, &st, &g, err, sizeof(err));
		ssize_t w = write(fds[1], err, strlen(err) + 1);
		(void)w;
		_exit(rc == -EACCES ? 0 : 1);
	}
	close(fds[1]);
	char got[512] = "";
	ssize_t n = read(fds[0], got, sizeof(got) - 1);
	got[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_neq(WEXITSTATUS(status), 3, "cannot drop privileges to test this");
	cr_expect_eq(WEXITSTATUS(status), 0, "child: %s", got);
	cr_expect(strstr(got, "not writable"), "%s", got);
	struct stat sb;
	cr_expect_neq(stat(db, &sb), 0, "nothing was created");
}
