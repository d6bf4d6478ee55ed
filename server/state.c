/* state.c - the coordinator's durable state in SQLite (interface and
 * guarantees: state.h).
 *
 * Opening, in order, each step refusing with its own message:
 *   1. the directory exists (made 0700 if not) and is writable;
 *   2. STATE_DIR/lock: flock(LOCK_EX|LOCK_NB); on EWOULDBLOCK the pid the
 *      holder wrote there is named; on success our pid is written;
 *   3. state.db: an existing file must be non-empty, whole (a SQLite
 *      file is a whole number of pages, as many as its header says when
 *      no WAL holds more), a SQLite database that passes quick_check,
 *      with our application_id, our tables and a schema version we
 *      read; a missing file gets the schema, in one transaction;
 *   4. the generation is raised (its own transaction).
 * A refused file is left as it was, byte for byte: the checks only read,
 * and the connection does not checkpoint a WAL into the file when it
 * closes until they have passed.
 * The lock is held for the life of the process: a second coordinator on
 * the same directory cannot start (step 2), and a kernel releases the
 * lock when the holder dies, however it dies.
 *
 * Durability: journal_mode=WAL with synchronous=FULL, so a transaction is
 * on disk when COMMIT returns; the caller acknowledges only then.
 * Unsigned 64-bit values are stored bit for bit in SQLite's signed
 * INTEGER (addresses, keys, lengths).
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "debug.h"

struct rmp_state {
	const struct rmp_state_ops *ops;
	sqlite3 *db;
	int lock_fd;
	char path[512];
	char error[512];
	int found_version; /* an existing file's schema, before migrate() */
};

static const char *const counter_names[RMP_STATE_N_COUNTERS] = {
	[RMP_STATE_GENERATION] = "generation",	 [RMP_STATE_NEXT_POOL] = "next_pool",
	[RMP_STATE_NEXT_DONOR] = "next_donor",	 [RMP_STATE_NEXT_AGENT] = "next_agent",
	[RMP_STATE_NEXT_SESSION] = "next_session", [RMP_STATE_NEXT_LEASE] = "next_lease",
};

/* Schema version 1, then the steps to each later version: a change of
 * it raises RMP_STATE_SCHEMA_VERSION and adds a step to migrate_steps
 * (a new file runs them all): old files are upgraded, newer ones
 * refused. */
static const char schema_v1[] =
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
	" session INTEGER NOT NULL, expires_wall_ms INTEGER NOT NULL);";
/* Version 1 -> 2: a lease's owner-record slots (-1: none, as every
 * lease of a version-1 file) and its reclaim-pending mark. */
static const char schema_v2_step[] =
	"ALTER TABLE leases ADD COLUMN slot_base INTEGER NOT NULL DEFAULT -1;"
	"ALTER TABLE leases ADD COLUMN reclaim INTEGER NOT NULL DEFAULT 0;";
/* migrate_steps[v - 1] takes a file of version v to v + 1. */
static const char *const migrate_steps[] = { schema_v2_step };
_Static_assert(sizeof(migrate_steps) / sizeof(migrate_steps[0]) == RMP_STATE_SCHEMA_VERSION - 1,
	       "one migration step per schema version after the first");

__attribute__((format(printf, 3, 4))) static int fail(struct rmp_state *st, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->error, sizeof(st->error), fmt, ap);
	va_end(ap);
	return rc;
}

static int db_fail(struct rmp_state *st, const char *what)
{
	int code = sqlite3_errcode(st->db);
	int rc = code == SQLITE_READONLY ? -EROFS
		 : code == SQLITE_FULL	 ? -ENOSPC
		 : code == SQLITE_NOTADB || code == SQLITE_CORRUPT ? -EPROTO
		 : code == SQLITE_BUSY || code == SQLITE_LOCKED	 ? -EBUSY
								 : -EIO;
	return fail(st, rc, "state %s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

static int exec_sql(struct rmp_state *st, const char *sql, const char *what)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(st, what);
	return 0;
}

/* One prepared statement, run to completion (writes). Binds are done by
 * the caller between prepare and run. */
static int prepare(struct rmp_state *st, const char *sql, sqlite3_stmt **out)
{
	if (sqlite3_prepare_v2(st->db, sql, -1, out, NULL) != SQLITE_OK)
		return db_fail(st, "prepare");
	return 0;
}

static int run_done(struct rmp_state *st, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : db_fail(st, what);
	sqlite3_finalize(s);
	return rc;
}

static int64_t i64(uint64_t v) { return (int64_t)v; }

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
	snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

/* ---- the backend's operations ---- */

static int sq_begin(struct rmp_state *st)
{
	return exec_sql(st, "BEGIN IMMEDIATE", "begin a transaction");
}

static int sq_commit(struct rmp_state *st)
{
	return exec_sql(st, "COMMIT", "commit");
}

static void sq_rollback(struct rmp_state *st)
{
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

static int sq_counter_get(struct rmp_state *st, enum rmp_state_counter c, uint64_t *v)
{
	sqlite3_stmt *s;
	int rc = prepare(st, "SELECT value FROM counters WHERE name = ?1", &s);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, counter_names[c], -1, SQLITE_STATIC);
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW)
		*v = (uint64_t)sqlite3_column_int64(s, 0);
	else if (step == SQLITE_DONE)
		*v = 0;
	else
		rc = db_fail(st, "read a counter");
	sqlite3_finalize(s);
	return rc;
}

static int sq_counter_set(struct rmp_state *st, enum rmp_state_counter c, uint64_t v)
{
	sqlite3_stmt *s;
	int rc = prepare(st, "INSERT INTO counters(name, value) VALUES(?1, ?2)"
			     " ON CONFLICT(name) DO UPDATE SET value = excluded.value", &s);

	if (rc)
		return rc;
	sqlite3_bind_text(s, 1, counter_names[c], -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, i64(v));
	return run_done(st, s, "write a counter");
}

static int sq_pool_put(struct rmp_state *st, const struct rmp_state_pool *p)
{
	sqlite3_stmt *s;
	int rc = prepare(st,
			 "INSERT OR REPLACE INTO pools(id, name, state, capacity, space_log2, segment_log2,"
			 " min_block_log2, meta_shm, meta_len, self_donor_id, self_shm, self_len,"
			 " segtab_version, segtab, lost)"
			 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
			 &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, p->id);
	sqlite3_bind_text(s, 2, p->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, p->state);
	sqlite3_bind_int64(s, 4, i64(p->capacity));
	sqlite3_bind_int(s, 5, p->space_log2);
	sqlite3_bind_int(s, 6, p->segment_log2);
	sqlite3_bind_int(s, 7, p->min_block_log2);
	sqlite3_bind_text(s, 8, p->meta_shm, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 9, i64(p->meta_len));
	sqlite3_bind_int64(s, 10, p->self_donor_id);
	sqlite3_bind_text(s, 11, p->self_shm, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 12, i64(p->self_len));
	sqlite3_bind_int64(s, 13, i64(p->segtab_version));
	if (p->segtab && p->segtab_len)
		sqlite3_bind_blob(s, 14, p->segtab, (int)p->segtab_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 14);
	sqlite3_bind_text(s, 15, p->lost, -1, SQLITE_STATIC);
	return run_done(st, s, "write a pool");
}

static int delete_id(struct rmp_state *st, const char *sql, uint64_t id, const char *what)
{
	sqlite3_stmt *s;
	int rc = prepare(st, sql, &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, i64(id));
	return run_done(st, s, what);
}

static int sq_pool_delete(struct rmp_state *st, uint32_t id)
{
	return delete_id(st, "DELETE FROM pools WHERE id = ?1", id, "delete a pool");
}

static void pool_from_row(sqlite3_stmt *s, struct rmp_state_pool *p)
{
	memset(p, 0, sizeof(*p));
	p->id = (uint32_t)sqlite3_column_int64(s, 0);
	copy_text(p->name, sizeof(p->name), sqlite3_column_text(s, 1));
	p->state = (uint32_t)sqlite3_column_int64(s, 2);
	p->capacity = (uint64_t)sqlite3_column_int64(s, 3);
	p->space_log2 = (uint8_t)sqlite3_column_int(s, 4);
	p->segment_log2 = (uint8_t)sqlite3_column_int(s, 5);
	p->min_block_log2 = (uint8_t)sqlite3_column_int(s, 6);
	copy_text(p->meta_shm, sizeof(p->meta_shm), sqlite3_column_text(s, 7));
	p->meta_len = (uint64_t)sqlite3_column_int64(s, 8);
	p->self_donor_id = (uint32_t)sqlite3_column_int64(s, 9);
	copy_text(p->self_shm, sizeof(p->self_shm), sqlite3_column_text(s, 10));
	p->self_len = (uint64_t)sqlite3_column_int64(s, 11);
	p->segtab_version = (uint64_t)sqlite3_column_int64(s, 12);
	/* Valid until the next step: the callback copies what it keeps. */
	p->segtab = (uint8_t *)sqlite3_column_blob(s, 13);
	p->segtab_len = (size_t)sqlite3_column_bytes(s, 13);
	copy_text(p->lost, sizeof(p->lost), sqlite3_column_text(s, 14));
}

static int sq_pools_each(struct rmp_state *st, rmp_state_pool_fn *fn, void *arg)
{
	sqlite3_stmt *s;
	struct rmp_state_pool p;
	int rc = prepare(st,
			 "SELECT id, name, state, capacity, space_log2, segment_log2, min_block_log2,"
			 " meta_shm, meta_len, self_donor_id, self_shm, self_len, segtab_version, segtab,"
			 " lost FROM pools ORDER BY id",
			 &s);
	int step;

	if (rc)
		return rc;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		pool_from_row(s, &p);
		if ((rc = fn(arg, &p)) != 0)
			break;
	}
	if (!rc && step != SQLITE_DONE)
		rc = db_fail(st, "read the pools");
	sqlite3_finalize(s);
	return rc;
}

static int sq_donor_put(struct rmp_state *st, const struct rmp_state_donor *d)
{
	sqlite3_stmt *s;
	int rc = prepare(st,
			 "INSERT OR REPLACE INTO donors(id, pool_id, state, pid, standalone, host,"
			 " region_addr, region_len, rkey, ep_host, ep_port, base, cost, offered)"
			 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
			 &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, d->id);
	sqlite3_bind_int64(s, 2, d->pool_id);
	sqlite3_bind_int64(s, 3, d->state);
	sqlite3_bind_int64(s, 4, d->pid);
	sqlite3_bind_int(s, 5, d->standalone);
	sqlite3_bind_text(s, 6, d->host, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, i64(d->region.addr));
	sqlite3_bind_int64(s, 8, i64(d->region.len));
	sqlite3_bind_int64(s, 9, d->region.rkey);
	sqlite3_bind_text(s, 10, d->endpoint.host, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 11, d->endpoint.port);
	sqlite3_bind_int64(s, 12, i64(d->base));
	sqlite3_bind_int64(s, 13, i64(d->cost));
	sqlite3_bind_int64(s, 14, i64(d->offered));
	return run_done(st, s, "write a donor");
}

static int sq_donor_delete(struct rmp_state *st, uint32_t id)
{
	return delete_id(st, "DELETE FROM donors WHERE id = ?1", id, "delete a donor");
}

static int sq_donors_each(struct rmp_state *st, rmp_state_donor_fn *fn, void *arg)
{
	sqlite3_stmt *s;
	struct rmp_state_donor d;
	int rc = prepare(st,
			 "SELECT id, pool_id, state, pid, standalone, host, region_addr, region_len, rkey,"
			 " ep_host, ep_port, base, cost, offered FROM donors ORDER BY id",
			 &s);
	int step;

	if (rc)
		return rc;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&d, 0, sizeof(d));
		d.id = (uint32_t)sqlite3_column_int64(s, 0);
		d.pool_id = (uint32_t)sqlite3_column_int64(s, 1);
		d.state = (uint32_t)sqlite3_column_int64(s, 2);
		d.pid = (uint32_t)sqlite3_column_int64(s, 3);
		d.standalone = sqlite3_column_int(s, 4) != 0;
		copy_text(d.host, sizeof(d.host), sqlite3_column_text(s, 5));
		d.region.addr = (uint64_t)sqlite3_column_int64(s, 6);
		d.region.len = (uint64_t)sqlite3_column_int64(s, 7);
		d.region.rkey = (uint32_t)sqlite3_column_int64(s, 8);
		copy_text(d.endpoint.host, sizeof(d.endpoint.host), sqlite3_column_text(s, 9));
		d.endpoint.port = (uint16_t)sqlite3_column_int(s, 10);
		d.base = (uint64_t)sqlite3_column_int64(s, 11);
		d.cost = (uint64_t)sqlite3_column_int64(s, 12);
		d.offered = (uint64_t)sqlite3_column_int64(s, 13);
		if ((rc = fn(arg, &d)) != 0)
			break;
	}
	if (!rc && step != SQLITE_DONE)
		rc = db_fail(st, "read the donors");
	sqlite3_finalize(s);
	return rc;
}

static int sq_lease_put(struct rmp_state *st, const struct rmp_state_lease *l)
{
	sqlite3_stmt *s;
	int rc = prepare(st, "INSERT OR REPLACE INTO leases(id, pool_id, session, expires_wall_ms,"
			     " slot_base, reclaim) VALUES(?1, ?2, ?3, ?4, ?5, ?6)", &s);

	if (rc)
		return rc;
	sqlite3_bind_int64(s, 1, i64(l->id));
	sqlite3_bind_int64(s, 2, l->pool_id);
	sqlite3_bind_int64(s, 3, i64(l->session));
	sqlite3_bind_int64(s, 4, i64(l->expires_wall_ms));
	sqlite3_bind_int64(s, 5, l->slot_base == UINT32_MAX ? -1 : (int64_t)l->slot_base);
	sqlite3_bind_int64(s, 6, l->reclaim);
	return run_done(st, s, "write a lease");
}

static int sq_lease_delete(struct rmp_state *st, uint64_t id)
{
	return delete_id(st, "DELETE FROM leases WHERE id = ?1", id, "delete a lease");
}

static int sq_leases_each(struct rmp_state *st, rmp_state_lease_fn *fn, void *arg)
{
	sqlite3_stmt *s;
	struct rmp_state_lease l;
	int rc = prepare(st, "SELECT id, pool_id, session, expires_wall_ms, slot_base, reclaim"
			     " FROM leases ORDER BY id", &s);
	int step;

	if (rc)
		return rc;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		l.id = (uint64_t)sqlite3_column_int64(s, 0);
		l.pool_id = (uint32_t)sqlite3_column_int64(s, 1);
		l.session = (uint64_t)sqlite3_column_int64(s, 2);
		l.expires_wall_ms = (uint64_t)sqlite3_column_int64(s, 3);
		int64_t base = sqlite3_column_int64(s, 4);
		l.slot_base = base < 0 || base >= UINT32_MAX ? UINT32_MAX : (uint32_t)base;
		l.reclaim = sqlite3_column_int64(s, 5) != 0;
		if ((rc = fn(arg, &l)) != 0)
			break;
	}
	if (!rc && step != SQLITE_DONE)
		rc = db_fail(st, "read the leases");
	sqlite3_finalize(s);
	return rc;
}

static void sq_close(struct rmp_state *st)
{
	if (st->db)
		sqlite3_close(st->db);
	if (st->lock_fd >= 0)
		close(st->lock_fd); /* releases the flock */
	free(st);
}

static const struct rmp_state_ops sqlite_ops = {
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.counter_get = sq_counter_get,
	.counter_set = sq_counter_set,
	.pool_put = sq_pool_put,
	.pool_delete = sq_pool_delete,
	.pools_each = sq_pools_each,
	.donor_put = sq_donor_put,
	.donor_delete = sq_donor_delete,
	.donors_each = sq_donors_each,
	.lease_put = sq_lease_put,
	.lease_delete = sq_lease_delete,
	.leases_each = sq_leases_each,
	.close = sq_close,
};

/* ---- opening ---- */

/* Step 1 and 2: the directory, and its lock. */
static int take_lock(struct rmp_state *st, const char *dir)
{
	char lock[600], holder[32] = "";

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return fail(st, -errno, "state directory %s: cannot create it: %s", dir, strerror(errno));
	if (access(dir, W_OK | X_OK) != 0) {
		int e = errno == EROFS ? EROFS : EACCES;
		return fail(st, -e, "state directory %s is not writable: %s", dir, strerror(errno));
	}
	snprintf(lock, sizeof(lock), "%s/lock", dir);
	st->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->lock_fd < 0)
		return fail(st, -errno, "state directory %s: cannot open %s: %s", dir, lock, strerror(errno));
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		ssize_t n = pread(st->lock_fd, holder, sizeof(holder) - 1, 0);
		holder[n > 0 ? n : 0] = '\0';
		holder[strcspn(holder, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			return fail(st, -EBUSY, "state directory %s is held by another rmpool-server (pid %s)",
				    dir, *holder ? holder : "unknown");
		return fail(st, -e, "state directory %s: flock(%s): %s", dir, lock, strerror(e));
	}
	char pid[32];
	int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(st->lock_fd, 0) != 0 || pwrite(st->lock_fd, pid, (size_t)len, 0) != len)
		return fail(st, -errno, "state directory %s: cannot write %s: %s", dir, lock, strerror(errno));
	return 0;
}

static uint32_t be32(const unsigned char *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Step 3, before SQLite opens it: a SQLite file cut short (a copy that
 * stopped, a full disk) is refused as what it is. SQLite itself reads
 * the pages past the end as zeros, which quick_check may not notice
 * (the cut-off end of a page holds cells), and its next write would
 * extend the file - a silent repair. SQLite writes whole pages only, and
 * the header's page count is exact (valid while the change counter at
 * 24 equals the version-valid-for number at 92) unless a WAL holds newer
 * pages. A file that is not SQLite is left to SQLite to refuse. */
static int check_whole(struct rmp_state *st, off_t size)
{
	unsigned char h[100];
	char wal[sizeof(st->path) + 8];
	struct stat wb;
	int fd = open(st->path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return fail(st, -errno, "state %s: cannot open it: %s", st->path, strerror(errno));
	ssize_t n = pread(fd, h, sizeof(h), 0);
	close(fd);
	if (n < 16 || memcmp(h, "SQLite format 3", 16) != 0)
		return 0;
	if (n < (ssize_t)sizeof(h))
		return fail(st, -EPROTO, "state %s is truncated (%lld bytes, shorter than a SQLite header); it "
				      "was not changed: restore it, or move it away to start with no pools",
			    st->path, (long long)size);
	uint32_t page = (uint32_t)h[16] << 8 | h[17];
	if (page == 1)
		page = 65536;
	if (page < 512 || (page & (page - 1)))
		return 0; /* not a header SQLite wrote: quick_check will say */
	uint32_t pages = be32(h + 28);
	snprintf(wal, sizeof(wal), "%s-wal", st->path);
	bool wal_has_pages = stat(wal, &wb) == 0 && wb.st_size > 0;
	bool count_valid = pages && be32(h + 24) == be32(h + 92) && !wal_has_pages;
	if (size % page || (count_valid && (uint64_t)size < (uint64_t)pages * page))
		return fail(st, -EPROTO, "state %s is truncated (%lld bytes; its header says %" PRIu32
				      " pages of %" PRIu32 " bytes); it was not changed: restore it, or move "
				      "it away to start with no pools",
			    st->path, (long long)size, pages, page);
	return 0;
}

/* Our application_id and a version, but are our tables there? (A file
 * stamped by hand, or a schema step that never ran.) */
static int check_tables(struct rmp_state *st)
{
	static const char *const tables[] = { "counters", "pools", "donors", "leases" };
	sqlite3_stmt *s;

	if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
			       -1, &s, NULL) != SQLITE_OK)
		return db_fail(st, "read the schema");
	int rc = 0;
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]) && !rc; i++) {
		sqlite3_bind_text(s, 1, tables[i], -1, SQLITE_STATIC);
		int step = sqlite3_step(s);
		if (step == SQLITE_DONE)
			rc = fail(st, -EPROTO, "state %s has rmpool's application_id but not its schema (no "
					    "table %s); it was not changed",
				  st->path, tables[i]);
		else if (step != SQLITE_ROW)
			rc = db_fail(st, "read the schema");
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	return rc;
}

/* Step 3 for an existing file: ours, whole, of a schema we read. */
static int check_existing(struct rmp_state *st)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(st->db, "PRAGMA quick_check", -1, &s, NULL) != SQLITE_OK) {
		if (sqlite3_errcode(st->db) == SQLITE_CORRUPT)
			return fail(st, -EPROTO, "state %s is damaged (%s); it was not changed: restore it, or "
					      "move it away to start with no pools",
				    st->path, sqlite3_errmsg(st->db));
		return fail(st, -EPROTO, "state %s is not an rmpool state file: %s", st->path,
			    sqlite3_errmsg(st->db));
	}
	int step = sqlite3_step(s);
	const unsigned char *verdict = step == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
	rc = verdict && strcmp((const char *)verdict, "ok") == 0
		     ? 0
		     : fail(st, -EPROTO, "state %s is damaged (%s); it was not changed: restore it, or move it "
				     "away to start with no pools",
			    st->path, verdict ? (const char *)verdict : sqlite3_errmsg(st->db));
	sqlite3_finalize(s);
	if (rc)
		return rc;
	int app = 0, version = 0;
	if (sqlite3_prepare_v2(st->db, "PRAGMA application_id", -1, &s, NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			app = sqlite3_column_int(s, 0);
		sqlite3_finalize(s);
	}
	if (app != RMP_STATE_APP_ID)
		return fail(st, -EPROTO, "state %s is a SQLite file of another program (application_id %#x, "
				      "rmpool's is %#x); it was not changed",
			    st->path, (unsigned)app, (unsigned)RMP_STATE_APP_ID);
	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			version = sqlite3_column_int(s, 0);
		sqlite3_finalize(s);
	}
	if (version > RMP_STATE_SCHEMA_VERSION)
		return fail(st, -EPROTONOSUPPORT, "state %s has schema version %d, newer than this rmpool-server "
					       "reads (%d): run the newer version",
			    st->path, version, RMP_STATE_SCHEMA_VERSION);
	if (version < 1)
		return fail(st, -EPROTO, "state %s has no schema version", st->path);
	st->found_version = version;
	return check_tables(st);
}

/* The steps from version `from` to RMP_STATE_SCHEMA_VERSION, and the
 * new version stamp, in one transaction: a crash or a failed step
 * leaves the file at `from`, as it was. */
static int migrate(struct rmp_state *st, int from)
{
	char pragma[48];
	int rc;

	if (from >= RMP_STATE_SCHEMA_VERSION)
		return 0;
	if ((rc = sq_begin(st)) != 0)
		return rc;
	for (int v = from; v < RMP_STATE_SCHEMA_VERSION && !rc; v++)
		rc = exec_sql(st, migrate_steps[v - 1], "upgrade the schema");
	snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d;", RMP_STATE_SCHEMA_VERSION);
	if (!rc)
		rc = exec_sql(st, pragma, "stamp the upgraded schema");
	if (rc) {
		sq_rollback(st);
		return rc;
	}
	return sq_commit(st);
}

static int create_schema(struct rmp_state *st)
{
	char pragma[96];
	int rc;

	if ((rc = sq_begin(st)) != 0)
		return rc;
	snprintf(pragma, sizeof(pragma), "PRAGMA application_id = %d; PRAGMA user_version = %d;",
		 RMP_STATE_APP_ID, RMP_STATE_SCHEMA_VERSION);
	rc = exec_sql(st, schema_v1, "create the schema");
	for (int v = 1; v < RMP_STATE_SCHEMA_VERSION && !rc; v++)
		rc = exec_sql(st, migrate_steps[v - 1], "create the schema");
	if (rc || (rc = exec_sql(st, pragma, "stamp the schema")) != 0) {
		sq_rollback(st);
		return rc;
	}
	return sq_commit(st);
}

static int bump_generation(struct rmp_state *st, uint64_t *generation)
{
	uint64_t g = 0;
	int rc = sq_begin(st);

	if (rc)
		return rc;
	if ((rc = sq_counter_get(st, RMP_STATE_GENERATION, &g)) != 0 ||
	    (rc = sq_counter_set(st, RMP_STATE_GENERATION, g + 1)) != 0) {
		sq_rollback(st);
		return rc;
	}
	if ((rc = sq_commit(st)) != 0)
		return rc;
	*generation = g + 1;
	return 0;
}

static int open_db(struct rmp_state *st, const char *dir)
{
	struct stat sb;
	bool existed = stat(st->path, &sb) == 0;

	if (existed && !S_ISREG(sb.st_mode))
		return fail(st, -EPROTO, "state %s is not a regular file", st->path);
	if (existed && sb.st_size == 0)
		return fail(st, -EPROTO, "state %s is empty (truncated?); it was not changed: restore it, or "
				      "remove it to start with no pools",
			    st->path);
	int rc = existed ? check_whole(st, sb.st_size) : 0;
	if (rc)
		return rc;
	if (sqlite3_open_v2(st->path, &st->db, SQLITE_OPEN_READWRITE | (existed ? 0 : SQLITE_OPEN_CREATE),
			    NULL) != SQLITE_OK)
		return db_fail(st, "open");
	sqlite3_busy_timeout(st->db, 5000); /* bounded: nobody else should hold it */
	/* A refused file keeps its WAL beside it, not folded into it. */
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	rc = existed ? check_existing(st) : 0;
	if (rc)
		return rc;
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, NULL);
	/* WAL: a reader never blocks the writer; FULL: COMMIT is durable. */
	if ((rc = exec_sql(st, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
			   "set the journal mode")) != 0)
		return rc;
	(void)dir;
	return existed ? migrate(st, st->found_version) : create_schema(st);
}

int rmp_state_open_sqlite(const char *dir, struct rmp_state **out, uint64_t *generation, char *err,
			  size_t errlen)
{
	struct rmp_state *st = calloc(1, sizeof(*st));
	int rc;

	*out = NULL;
	if (!st) {
		snprintf(err, errlen, "state: out of memory");
		return -ENOMEM;
	}
	st->ops = &sqlite_ops;
	st->lock_fd = -1;
	snprintf(st->path, sizeof(st->path), "%s/state.db", dir);
	if ((rc = take_lock(st, dir)) != 0 || (rc = open_db(st, dir)) != 0 ||
	    (rc = bump_generation(st, generation)) != 0) {
		snprintf(err, errlen, "%s", st->error);
		sq_close(st);
		return rc;
	}
	*out = st;
	return 0;
}

/* ---- the interface ---- */

const char *rmp_state_error(const struct rmp_state *st) { return st->error; }
const char *rmp_state_path(const struct rmp_state *st) { return st->path; }

int rmp_state_begin(struct rmp_state *st) { return st->ops->begin(st); }
int rmp_state_commit(struct rmp_state *st) { return st->ops->commit(st); }
void rmp_state_rollback(struct rmp_state *st) { st->ops->rollback(st); }

int rmp_state_counter_get(struct rmp_state *st, enum rmp_state_counter c, uint64_t *v)
{
	rmp_assert(c < RMP_STATE_N_COUNTERS);
	return st->ops->counter_get(st, c, v);
}

int rmp_state_counter_set(struct rmp_state *st, enum rmp_state_counter c, uint64_t v)
{
	rmp_assert(c < RMP_STATE_N_COUNTERS);
	return st->ops->counter_set(st, c, v);
}

int rmp_state_pool_put(struct rmp_state *st, const struct rmp_state_pool *p)
{
	rmp_assert(p->id != 0 && p->name[0]);
	return st->ops->pool_put(st, p);
}

int rmp_state_pool_delete(struct rmp_state *st, uint32_t id) { return st->ops->pool_delete(st, id); }

int rmp_state_pools_each(struct rmp_state *st, rmp_state_pool_fn *fn, void *arg)
{
	return st->ops->pools_each(st, fn, arg);
}

int rmp_state_donor_put(struct rmp_state *st, const struct rmp_state_donor *d)
{
	rmp_assert(d->id != 0);
	return st->ops->donor_put(st, d);
}

int rmp_state_donor_delete(struct rmp_state *st, uint32_t id) { return st->ops->donor_delete(st, id); }

int rmp_state_donors_each(struct rmp_state *st, rmp_state_donor_fn *fn, void *arg)
{
	return st->ops->donors_each(st, fn, arg);
}

int rmp_state_lease_put(struct rmp_state *st, const struct rmp_state_lease *l)
{
	return st->ops->lease_put(st, l);
}

int rmp_state_lease_delete(struct rmp_state *st, uint64_t id) { return st->ops->lease_delete(st, id); }

int rmp_state_leases_each(struct rmp_state *st, rmp_state_lease_fn *fn, void *arg)
{
	return st->ops->leases_each(st, fn, arg);
}

void rmp_state_close(struct rmp_state *st)
{
	if (st)
		st->ops->close(st);
}
