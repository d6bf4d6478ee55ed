/* state.h - the coordinator's durable state: what must survive a restart
 * of rmpool-server (DESIGN.md, "Failure model").
 *
 * What is written down, before the coordinator acknowledges it:
 *   pools    name, id, geometry, the metadata object's shm name and size,
 *            the segment table (encoded by the wire codec, which owns all
 *            byte order) and its version, its state, why it was lost;
 *   donors   id, pool, host, pid, region {addr, len, rkey}, endpoint,
 *            base in the pool, cost charged to its host, standalone offer;
 *   leases   id, pool, session, expiry (wall clock: it must mean the same
 *            after a restart), its owner-record slots, whether it expired
 *            and waits for its reclaim;
 *   counters the next pool, donor, agent, session and lease ids, and the
 *            generation, raised at every start.
 *
 * A small interface (struct rmp_state_ops) stands between the coordinator
 * and the store so that another backend (etcd, for a standby coordinator
 * on another host) can come later; the one backend today is SQLite in
 * STATE_DIR/state.db: WAL, synchronous=FULL, one transaction per change
 * (rmp_state_begin/commit around the writes of one change), a schema
 * version in PRAGMA user_version and the file's owner in application_id.
 * A file of an older schema is upgraded in place at open, in one
 * transaction (state.c, migrate).
 *
 * Refused, never silently replaced (the file left byte for byte as it
 * was): a file that is not SQLite or is damaged (quick_check), an
 * existing empty or truncated file (a size that is not the whole pages
 * its header counts), a SQLite file of another program (application_id)
 * or with rmpool's stamp but not its tables, a newer schema, a state
 * directory that cannot be written, and a directory already held by a
 * live coordinator (an flock on STATE_DIR/lock; the holder's pid is
 * named). A new state file is made only where none existed.
 */
#ifndef RMP_SRV_STATE_H
#define RMP_SRV_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* 2: leases have slot_base and reclaim (migrated from 1 at open). */
#define RMP_STATE_SCHEMA_VERSION 2
#define RMP_STATE_APP_ID 0x524d504c /* "RMPL" */
#define RMP_STATE_SHM_MAX 80

struct rmp_state;

struct rmp_state_pool {
	uint32_t id;
	char name[RMP_WIRE_NAME_MAX + 1];
	uint32_t state; /* the coordinator's enum; 0..n */
	uint64_t capacity;
	uint8_t space_log2, segment_log2, min_block_log2;
	char meta_shm[RMP_STATE_SHM_MAX]; /* the metadata object, "" if none */
	uint64_t meta_len;
	uint32_t self_donor_id; /* 0: no self-contribution */
	char self_shm[RMP_STATE_SHM_MAX];
	uint64_t self_len;
	uint64_t segtab_version;
	uint8_t *segtab; /* encoded segment table (rmp_wire), may be NULL */
	size_t segtab_len;
	char lost[RMP_WIRE_TEXT_MAX + 1]; /* why the pool is lost; "" if it is not */
};

struct rmp_state_donor {
	uint32_t id;
	uint32_t pool_id; /* 0: a standalone donor in no pool */
	uint32_t state;
	uint32_t pid;
	bool standalone;
	char host[RMP_WIRE_HOST_MAX + 1];
	struct rmp_wire_region region;
	struct rmp_wire_endpoint endpoint;
	uint64_t base, cost, offered;
};

struct rmp_state_lease {
	uint64_t id;
	uint32_t pool_id;
	uint64_t session;
	uint64_t expires_wall_ms;
	/* Its owner-record slots (UINT32_MAX: none; a lease recorded by
	 * schema 1 has none) and whether it expired and waits for its
	 * reclaim: its row stays, and its slots stay taken, until then. */
	uint32_t slot_base;
	bool reclaim;
};

/* Named counters (ids handed out, the generation). */
enum rmp_state_counter {
	RMP_STATE_GENERATION,
	RMP_STATE_NEXT_POOL,
	RMP_STATE_NEXT_DONOR,
	RMP_STATE_NEXT_AGENT,
	RMP_STATE_NEXT_SESSION,
	RMP_STATE_NEXT_LEASE,
	RMP_STATE_N_COUNTERS,
};

typedef int rmp_state_pool_fn(void *arg, const struct rmp_state_pool *p);
typedef int rmp_state_donor_fn(void *arg, const struct rmp_state_donor *d);
typedef int rmp_state_lease_fn(void *arg, const struct rmp_state_lease *l);

/* What a backend provides. Every call returns 0 or a negative errno and
 * leaves one line in the store's error text (rmp_state_error). */
struct rmp_state_ops {
	int (*begin)(struct rmp_state *st);
	int (*commit)(struct rmp_state *st);
	void (*rollback)(struct rmp_state *st);
	int (*counter_get)(struct rmp_state *st, enum rmp_state_counter c, uint64_t *v);
	int (*counter_set)(struct rmp_state *st, enum rmp_state_counter c, uint64_t v);
	int (*pool_put)(struct rmp_state *st, const struct rmp_state_pool *p);
	int (*pool_delete)(struct rmp_state *st, uint32_t id);
	int (*pools_each)(struct rmp_state *st, rmp_state_pool_fn *fn, void *arg);
	int (*donor_put)(struct rmp_state *st, const struct rmp_state_donor *d);
	int (*donor_delete)(struct rmp_state *st, uint32_t id);
	int (*donors_each)(struct rmp_state *st, rmp_state_donor_fn *fn, void *arg);
	int (*lease_put)(struct rmp_state *st, const struct rmp_state_lease *l);
	int (*lease_delete)(struct rmp_state *st, uint64_t id);
	int (*leases_each)(struct rmp_state *st, rmp_state_lease_fn *fn, void *arg);
	void (*close)(struct rmp_state *st);
};

/* Opens (or, where no state file exists, creates) the SQLite store in
 * dir, takes the directory's lock, checks the schema, and raises the
 * generation by one in its own transaction (*generation: the new one).
 * 0, or a negative errno with the reason in err: -EBUSY (held by another
 * coordinator: its pid is named), -EROFS/-EACCES (cannot write dir),
 * -EPROTO (not an rmpool state file, or damaged, or empty),
 * -EPROTONOSUPPORT (a newer schema). */
int rmp_state_open_sqlite(const char *dir, struct rmp_state **out, uint64_t *generation, char *err,
			  size_t errlen);

/* The last failure's text. */
const char *rmp_state_error(const struct rmp_state *st);
const char *rmp_state_path(const struct rmp_state *st);

/* The calls, through the backend's ops. */
int rmp_state_begin(struct rmp_state *st);
int rmp_state_commit(struct rmp_state *st);
void rmp_state_rollback(struct rmp_state *st);
int rmp_state_counter_get(struct rmp_state *st, enum rmp_state_counter c, uint64_t *v);
int rmp_state_counter_set(struct rmp_state *st, enum rmp_state_counter c, uint64_t v);
int rmp_state_pool_put(struct rmp_state *st, const struct rmp_state_pool *p);
int rmp_state_pool_delete(struct rmp_state *st, uint32_t id);
int rmp_state_pools_each(struct rmp_state *st, rmp_state_pool_fn *fn, void *arg);
int rmp_state_donor_put(struct rmp_state *st, const struct rmp_state_donor *d);
int rmp_state_donor_delete(struct rmp_state *st, uint32_t id);
int rmp_state_donors_each(struct rmp_state *st, rmp_state_donor_fn *fn, void *arg);
int rmp_state_lease_put(struct rmp_state *st, const struct rmp_state_lease *l);
int rmp_state_lease_delete(struct rmp_state *st, uint64_t id);
int rmp_state_leases_each(struct rmp_state *st, rmp_state_lease_fn *fn, void *arg);
/* Releases the lock and the store (NULL is fine). */
void rmp_state_close(struct rmp_state *st);

#endif /* RMP_SRV_STATE_H */
