/* test_client_control.c - librmpool's control half against a scripted
 * fake coordinator on loopback TCP (a thread speaking the real wire codec
 * and the real handshake): connect and authenticate, wrong secrets, pool
 * open with progress relayed, lease renewal and expiry, refused requests
 * with their text, bounded waits, a coordinator sending garbage, destroy,
 * status; a coordinator that goes and comes back (the client rides
 * through: -RMP_EAWAY meanwhile, the lease renewed by its old id, the
 * table fetched again, an older generation refused); plus rmp_strerror
 * and the data-path stubs. The fake speaks
 * through common/ctlconn.h too (an adopted, accepted socket).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "client_internal.h"
#include "clock.h"
#include "ctlconn.h"
#include "loopback.h"
#include "rmpool.h"

#define SECRET "a-test-secret-of-some-length"
#define OTHER_SECRET "another-secret-entirely-xyz"

struct fake;
typedef void script_fn(struct fake *f, struct rmp_ctlconn *conn);

struct fake {
	int lfd;
	uint16_t port;
	const char *secret;
	script_fn *script;
	pthread_t thread;
	char addr[64];
	/* what the script saw / counts */
	_Atomic int renewals;
	_Atomic int closes;
	_Atomic int done;
	int auth_rc;
	uint64_t arg; /* script parameter */
	/* coordinator restarts: connections accepted in turn, the one being
	 * served, the generation each announces, the gap before the next */
	int n_conns;
	int conn_index;
	uint64_t gen[4];
	unsigned gap_ms;
	_Atomic int kill;        /* the test asks the fake to drop the connection */
	_Atomic int fetches;     /* SEGTAB_FETCH seen (after a restart) */
	_Atomic int old_renewals;/* LEASE_RENEW of lease 42 after a restart */
	_Atomic uint64_t back_ms;/* when the second connection was authenticated */
	_Atomic int hung_up;     /* the client closed the second connection */
};

static int recv_msg(struct rmp_ctlconn *conn, struct rmp_wire_msg *m, unsigned ms)
{
	char err[256];
	return rmp_ctlconn_recv(conn, m, rmp_deadline_ms(ms), err, sizeof(err));
}

static void send_msg(struct rmp_ctlconn *conn, const struct rmp_wire_msg *m)
{
	cr_assert_eq(rmp_ctlconn_send(conn, m, rmp_deadline_ms(2000)), 0);
}

/* The coordinator side of the handshake. 0, or why it refused. */
static int coord_handshake(struct fake *f, struct rmp_ctlconn *conn)
{
	struct rmp_auth_handshake hs = { 0 };
	struct rmp_wire_msg in, out = { 0 };
	rmp_auth_key *k = NULL;
	char err[128];
	int rc;

	cr_assert_eq(rmp_auth_key_create(f->secret, &k, err, sizeof(err)), 0);
	rc = recv_msg(conn, &in, 3000);
	if (rc)
		goto out;
	cr_assert_eq(in.type, RMP_MSG_HELLO);
	out.type = RMP_MSG_CHALLENGE;
	cr_assert_eq(rmp_auth_coord_challenge(k, &hs, &in.u.hello, &out.u.challenge), 0);
	send_msg(conn, &out);
	rc = recv_msg(conn, &in, 3000);
	if (rc)
		goto out;
	cr_assert_eq(in.type, RMP_MSG_AUTH_PROOF);
	rc = rmp_auth_coord_verify(k, &hs, &in.u.auth_proof);
	if (rc) {
		out = (struct rmp_wire_msg){ .type = RMP_MSG_ERROR };
		out.u.error.code = EACCES;
		out.u.error.ref_type = RMP_MSG_AUTH_PROOF;
		strcpy(out.u.error.text, "authentication failed");
		send_msg(conn, &out);
		goto out;
	}
	out = (struct rmp_wire_msg){ .type = RMP_MSG_AUTH_OK };
	out.u.auth_ok.session_id = 77 + (uint64_t)f->conn_index;
	out.u.auth_ok.generation = f->gen[f->conn_index];
	send_msg(conn, &out);
	rmp_ctlconn_set_authed(conn);
out:
	rmp_auth_key_destroy(k);
	return rc;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int n = f->n_conns ? f->n_conns : 1;

	for (f->conn_index = 0; f->conn_index < n; f->conn_index++) {
		struct rmp_ctlconn conn;
		if (f->conn_index > 0 && f->gap_ms)
			usleep(f->gap_ms * 1000u);
		/* Bounded: a client that never comes back fails the test, it
		 * does not hang it. */
		struct pollfd pfd = { .fd = f->lfd, .events = POLLIN };
		if (poll(&pfd, 1, 10000) != 1)
			break;
		int fd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK);
		if (fd < 0)
			break;
		cr_assert_eq(rmp_ctlconn_adopt(&conn, fd, "the client"), 0);
		f->auth_rc = coord_handshake(f, &conn);
		if (f->conn_index > 0)
			atomic_store(&f->back_ms, rmp_mono_ms());
		if (f->auth_rc == 0 && f->script)
			f->script(f, &conn);
		rmp_ctlconn_close(&conn);
	}
	atomic_store(&f->done, 1);
	return NULL;
}

/* A fake listening on loopback, its thread not started yet: set what
 * else it needs, then fake_run (the thread reads its settings at once). */
static struct fake *fake_new(const char *secret, script_fn *script, uint64_t arg)
{
	struct fake *f = calloc(1, sizeof(*f));

	f->secret = secret;
	f->script = script;
	f->arg = arg;
	f->lfd = loopback_socket(4, &f->port);
	cr_assert_geq(f->lfd, 0, "loopback_socket: %s", strerror(-f->lfd));
	snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%u", (unsigned)f->port);
	return f;
}

static struct fake *fake_run(struct fake *f)
{
	cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
	return f;
}

static struct fake *fake_start(const char *secret, script_fn *script, uint64_t arg)
{
	return fake_run(fake_new(secret, script, arg));
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->lfd);
	free(f);
}

static const struct rmp_connect_opts fast = {
	.size = sizeof(struct rmp_connect_opts),
	.connect_timeout_ms = 3000, .request_timeout_ms = 1500, .provision_timeout_ms = 3000,
	.ident = "test-client",
};

/* Serves requests until the client hangs up; answers per message type. */
static void serve(struct fake *f, struct rmp_ctlconn *conn);

static void fill_segtab(struct rmp_wire_segtab *t)
{
	/* 16 MiB space of 4 MiB segments: donors 1 and 2 on two hosts, one
	 * reserved segment. */
	memset(t, 0, sizeof(*t));
	t->version = 3;
	t->capacity = 12u << 20;
	t->space_log2 = 24;
	t->min_block_log2 = 12;
	t->segment_log2 = 22;
	t->meta = (struct rmp_wire_region){ .addr = 0x1000, .len = 4096, .rkey = 9 };
	strcpy(t->coordinator.host, "198.18.0.1");
	t->coordinator.port = 7402;
	t->n_donors = 2;
	t->donors = calloc(2, sizeof(*t->donors));
	t->donors[0].donor_id = 1;
	strcpy(t->donors[0].endpoint.host, "198.18.0.2");
	t->donors[0].endpoint.port = 7500;
	t->donors[1].donor_id = 2;
	strcpy(t->donors[1].endpoint.host, "198.18.0.3");
	t->donors[1].endpoint.port = 7501;
	t->n_segments = 4;
	t->segments = calloc(4, sizeof(*t->segments));
	t->segments[0] = (struct rmp_wire_segment){ .donor_id = 1, .rkey = 1, .addr = 0x10000 };
	t->segments[1] = (struct rmp_wire_segment){ .donor_id = 1, .rkey = 1, .addr = 0x410000 };
	t->segments[2] = (struct rmp_wire_segment){ .donor_id = 2, .rkey = 2, .addr = 0x10000 };
	t->segments[3] = (struct rmp_wire_segment){ .donor_id = RMP_WIRE_SEG_RESERVED };
}

enum { MODE_NORMAL = 0, MODE_SILENT_STATUS = 1, MODE_GARBAGE = 2, MODE_EXPIRE = 3, MODE_REFUSE = 4,
       MODE_PUSH = 5, MODE_NO_GRANT = 6 /* renewals go unanswered */ };

/* MODE_PUSH: after POOL_READY, the pushes a donor's death makes - and
 * some the client must ignore: another pool's, an older version, then
 * the real one (version 4: donor 2 lost, 8 MiB in service), then one
 * whose donor list differs (the pool must be expired: reopen it). */
static void send_pushes(struct rmp_ctlconn *conn)
{
	struct rmp_wire_msg out = { .type = RMP_MSG_SEGTAB_PUSH };
	struct rmp_wire_segtab *t = &out.u.segtab_push.segtab;

	fill_segtab(t);
	t->donors[0].state = RMP_DONOR_LOST; /* ignored: another pool */
	out.u.segtab_push.pool_id = 6;
	t->version = 9;
	send_msg(conn, &out);
	out.u.segtab_push.pool_id = 5;
	t->version = 2; /* ignored: older than the pool's 3 */
	send_msg(conn, &out);
	t->donors[0].state = RMP_DONOR_SERVING;
	t->donors[1].state = RMP_DONOR_LOST;
	t->capacity = 8u << 20;
	t->version = 4;
	strcpy(out.u.segtab_push.note, "donor 2 on 198.18.0.3 is lost: the donor process exited");
	send_msg(conn, &out);
	free(t->donors);
	free(t->segments);
}

static void send_other_donors(struct rmp_ctlconn *conn)
{
	struct rmp_wire_msg out = { .type = RMP_MSG_SEGTAB_PUSH };
	struct rmp_wire_segtab *t = &out.u.segtab_push.segtab;

	fill_segtab(t);
	out.u.segtab_push.pool_id = 5;
	t->version = 5;
	t->donors[1].donor_id = 3;
	send_msg(conn, &out);
	free(t->donors);
	free(t->segments);
}

static void serve(struct fake *f, struct rmp_ctlconn *conn)
{
	for (;;) {
		struct rmp_wire_msg in, out = { 0 };
		if (recv_msg(conn, &in, 5000))
			return;
		switch (in.type) {
		case RMP_MSG_STATUS_REQUEST:
			if (f->arg == MODE_SILENT_STATUS)
				break; /* never answer */
			if (f->arg == MODE_GARBAGE) {
				static const char junk[] = "this is not an rmpool frame at all";
				cr_assert_eq(send(conn->fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
				break;
			}
			out.type = RMP_MSG_STATUS_REPLY;
			out.u.status.uptime_ms = 65000;
			out.u.status.capacity = 12u << 20;
			out.u.status.free_bytes = 12u << 20;
			out.u.status.clients = 1;
			out.u.status.n_pools = 1;
			out.u.status.pools = calloc(1, sizeof(*out.u.status.pools));
			strcpy(out.u.status.pools[0].name, "p");
			out.u.status.pools[0].pool_id = 5;
			out.u.status.pools[0].donors = 2;
			out.u.status.pools[0].state = RMP_POOL_RECOVERING;
			out.u.status.pools[0].donors_away = 1;
			strcpy(out.u.status.pools[0].note, "1 donor(s) away");
			out.u.status.generation = 9;
			out.u.status.n_hosts = 2;
			out.u.status.hosts = calloc(2, sizeof(*out.u.status.hosts));
			strcpy(out.u.status.hosts[0].host, "198.18.0.2");
			out.u.status.hosts[0].donors = 1;
			strcpy(out.u.status.hosts[1].host, "198.18.0.3");
			out.u.status.hosts[1].donors = 1;
			send_msg(conn, &out);
			free(out.u.status.pools);
			free(out.u.status.hosts);
			break;
		case RMP_MSG_POOL_OPEN:
			if (f->arg == MODE_REFUSE) {
				out.type = RMP_MSG_ERROR;
				out.u.error.code = ENOSPC;
				out.u.error.ref_type = RMP_MSG_POOL_OPEN;
				strcpy(out.u.error.text, "hosts can give 96 MiB, asked 224 MiB");
				send_msg(conn, &out);
				break;
			}
			/* A stray ACK for another request must not end the open. */
			out.type = RMP_MSG_ACK;
			out.u.ack.ref_type = RMP_MSG_POOL_DESTROY;
			send_msg(conn, &out);
			for (uint32_t d = 1; d <= 2; d++) {
				out = (struct rmp_wire_msg){ .type = RMP_MSG_PROGRESS };
				out.u.progress.donor_id = d;
				out.u.progress.state = RMP_PROGRESS_SPAWNED;
				out.u.progress.pid = 1000 + d;
				snprintf(out.u.progress.text, sizeof(out.u.progress.text), "on host %u", d + 1);
				send_msg(conn, &out);
			}
			out = (struct rmp_wire_msg){ .type = RMP_MSG_POOL_READY };
			out.u.pool_ready.pool_id = 5;
			out.u.pool_ready.lease_id = 42;
			out.u.pool_ready.lease_ms = f->arg == MODE_EXPIRE ? 60000 : 300;
			fill_segtab(&out.u.pool_ready.segtab);
			send_msg(conn, &out);
			free(out.u.pool_ready.segtab.donors);
			free(out.u.pool_ready.segtab.segments);
			if (f->arg == MODE_PUSH)
				send_pushes(conn);
			if (f->arg == MODE_EXPIRE) {
				out = (struct rmp_wire_msg){ .type = RMP_MSG_LEASE_EXPIRED };
				out.u.lease_expired.lease_id = 42;
				out.u.lease_expired.pool_id = 5;
				send_msg(conn, &out);
			}
			break;
		case RMP_MSG_LEASE_RENEW:
			cr_assert_eq(in.u.lease_renew.lease_id, 42);
			atomic_fetch_add(&f->renewals, 1);
			if (f->arg == MODE_NO_GRANT)
				break;
			out.type = RMP_MSG_LEASE_GRANT;
			out.u.lease_grant.lease_id = 42;
			out.u.lease_grant.ttl_ms = 300;
			send_msg(conn, &out);
			break;
		case RMP_MSG_SEGTAB_FETCH:
			/* MODE_PUSH: the test asks for the push of another layout */
			send_other_donors(conn);
			break;
		case RMP_MSG_POOL_CLOSE:
			cr_assert_eq(in.u.pool_close.lease_id, 42);
			atomic_fetch_add(&f->closes, 1);
			out.type = RMP_MSG_ACK;
			out.u.ack.ref_type = RMP_MSG_POOL_CLOSE;
			send_msg(conn, &out);
			break;
		case RMP_MSG_POOL_DESTROY:
		case RMP_MSG_POOL_FORGET: {
			const char *name = in.type == RMP_MSG_POOL_DESTROY ? in.u.pool_destroy.name
									   : in.u.pool_forget.name;
			/* Destroying terminates a donor, forgetting nothing. */
			if (in.type == RMP_MSG_POOL_DESTROY) {
				out.type = RMP_MSG_PROGRESS;
				out.u.progress.donor_id = 1;
				out.u.progress.state = RMP_PROGRESS_EXITED;
				send_msg(conn, &out);
				out = (struct rmp_wire_msg){ 0 };
			}
			if (strcmp(name, "missing")) {
				cr_assert_str_eq(name, "p");
				out.type = RMP_MSG_ACK;
				out.u.ack.ref_type = in.type;
			} else {
				out.type = RMP_MSG_ERROR;
				out.u.error.code = ENOENT;
				out.u.error.ref_type = in.type;
				strcpy(out.u.error.text, "no pool named missing");
			}
			send_msg(conn, &out);
			break;
		}
		default:
			break;
		}
		rmp_wire_msg_release(&in);
	}
}

Test(client_control, connect_and_status)
{
	struct fake *f = fake_start(SECRET, serve, MODE_NORMAL);
	rmp_client *c = NULL;
	struct rmp_status *s = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0, "%s", rmp_last_error(NULL));
	cr_assert_eq(rmp_client_id(c), 77);
	cr_assert_eq(rmp_status(c, &s), 0, "%s", rmp_last_error(c));
	cr_assert_eq(s->uptime_ms, 65000);
	cr_assert_eq(s->n_pools, 1);
	cr_assert_str_eq(s->pools[0].name, "p");
	cr_assert_eq(s->pools[0].state, RMP_POOL_STATE_RECOVERING);
	cr_assert_eq(s->pools[0].donors_away, 1);
	cr_assert_str_eq(s->pools[0].note, "1 donor(s) away");
	cr_assert_eq(s->generation, 9);
	cr_assert_eq(s->n_hosts, 2);
	cr_assert_str_eq(s->hosts[1].host, "198.18.0.3");
	rmp_status_free(s);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, secret_from_environment)
{
	struct fake *f = fake_start(SECRET, serve, MODE_NORMAL);
	rmp_client *c = NULL;

	setenv("RMPOOL_SECRET", SECRET, 1);
	cr_assert_eq(rmp_connect_ex(f->addr, NULL, &fast, &c), 0, "%s", rmp_last_error(NULL));
	unsetenv("RMPOOL_SECRET");
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, wrong_secret_is_refused)
{
	struct fake *f = fake_start(OTHER_SECRET, serve, MODE_NORMAL);
	rmp_client *c = NULL;

	int rc = rmp_connect_ex(f->addr, SECRET, &fast, &c);
	cr_assert_eq(rc, -RMP_EAUTH, "rc %d: %s", rc, rmp_last_error(NULL));
	cr_assert_null(c);
	cr_assert(strstr(rmp_last_error(NULL), "secret") != NULL, "%s", rmp_last_error(NULL));
	cr_assert(strstr(rmp_strerror(rc), "secret") != NULL);
	fake_stop(f);
}

Test(client_control, bad_arguments)
{
	rmp_client *c = NULL;

	cr_assert_eq(rmp_connect("127.0.0.1:7400", "short", &c), -EINVAL);
	cr_assert_eq(rmp_connect("no:port:here", SECRET, &c), -EINVAL);
	cr_assert_eq(rmp_connect("host:99999", SECRET, &c), -EINVAL);
	cr_assert_eq(rmp_connect("127.0.0.1:7400", SECRET, NULL), -EINVAL);
}

/* The caller-filled struct's size (rmpool.h, "Versions and layouts"). */
Test(client_control, connect_opts_size)
{
	struct fake *f = fake_start(SECRET, serve, MODE_NORMAL);
	struct rmp_connect_opts unset = { .connect_timeout_ms = 3000 };
	struct rmp_connect_opts init = RMP_CONNECT_OPTS_INIT;
	/* A caller compiled against a later header: our layout, then a field
	 * we do not have. */
	struct {
		struct rmp_connect_opts o;
		uint64_t later_field;
	} later = { .o = fast, .later_field = 0 };
	rmp_client *c = NULL;

	cr_assert_eq(init.size, sizeof(struct rmp_connect_opts));
	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &unset, &c), -EINVAL);
	cr_assert_null(c);
	cr_assert(strstr(rmp_last_error(NULL), "RMP_CONNECT_OPTS_INIT") != NULL, "%s",
		  rmp_last_error(NULL));
	later.o.size = sizeof(later);
	later.later_field = 1;
	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &later.o, &c), -E2BIG);
	cr_assert_null(c);
	/* The same, the field left 0 (its default): accepted. */
	later.later_field = 0;
	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &later.o, &c), 0, "%s", rmp_last_error(NULL));
	cr_assert_eq(rmp_client_id(c), 77);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, version)
{
	cr_assert_str_eq(rmp_version(), RMPOOL_VERSION);
	char want[32];
	snprintf(want, sizeof(want), "%d.%d.%d", RMPOOL_VERSION_MAJOR, RMPOOL_VERSION_MINOR,
		 RMPOOL_VERSION_PATCH);
	cr_assert_str_eq(RMPOOL_VERSION, want);
}

Test(client_control, connection_refused)
{
	/* A port nothing listens on: bind, learn it, close. */
	uint16_t port;
	int fd = loopback_socket(-1, &port);
	cr_assert_geq(fd, 0, "loopback_socket: %s", strerror(-fd));
	close(fd);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)port);
	rmp_client *c = NULL;
	cr_assert_eq(rmp_connect_ex(addr, SECRET, &fast, &c), -ECONNREFUSED);
}

Test(client_control, silent_coordinator_times_out_handshake)
{
	/* Listens but never accepts or answers: the handshake is bounded. */
	uint16_t port;
	int lfd = loopback_socket(4, &port);
	cr_assert_geq(lfd, 0, "loopback_socket: %s", strerror(-lfd));
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)port);
	struct rmp_connect_opts o = fast;
	o.connect_timeout_ms = 300;
	rmp_client *c = NULL;
	uint64_t t0 = rmp_mono_ms();
	cr_assert_eq(rmp_connect_ex(addr, SECRET, &o, &c), -ETIMEDOUT);
	uint64_t took = rmp_mono_ms() - t0;
	cr_assert(took >= 250 && took < 2000, "took %llu ms", (unsigned long long)took);
	close(lfd);
}

struct progress_log {
	int n;
	uint32_t pids[8];
	char text[8][64];
};

static void log_progress(void *arg, const struct rmp_progress *ev)
{
	struct progress_log *l = arg;
	if (l->n < 8) {
		l->pids[l->n] = ev->pid;
		snprintf(l->text[l->n], sizeof(l->text[0]), "%s", ev->text);
	}
	l->n++;
}

Test(client_control, pool_open_relays_progress_and_renews_lease)
{
	struct fake *f = fake_start(SECRET, serve, MODE_NORMAL);
	struct progress_log log = { 0 };
	struct rmp_pool_info *in = NULL;
	rmp_client *c = NULL;
	rmp_pool *p = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	rmp_client_set_progress(c, log_progress, &log);
	cr_assert_eq(rmp_pool_open(c, "p", 12u << 20, &p), 0, "%s", rmp_last_error(c));
	cr_assert_eq(log.n, 2);
	cr_assert_eq(log.pids[0], 1001);
	cr_assert_str_eq(log.text[1], "on host 3");

	cr_assert_eq(rmp_pool_info(p, &in), 0);
	cr_assert_eq(in->pool_id, 5);
	cr_assert_eq(in->space, 16u << 20);
	cr_assert_eq(in->backed, 12u << 20);
	cr_assert_eq(in->n_donors, 2);
	cr_assert_eq(in->n_hosts, 2);
	cr_assert_eq(in->donors[0].bytes, 8u << 20);
	cr_assert_eq(in->donors[1].segments, 1);
	cr_assert_eq(in->lease_id, 42);
	rmp_pool_info_free(in);

	/* ttl 300 ms: renewals every 100 ms; wait about 700 ms. */
	usleep(700 * 1000);
	int n = atomic_load(&f->renewals);
	cr_assert(n >= 4, "only %d renewals in 700 ms", n);
	cr_assert_eq(rmp_pool_info(p, &in), 0);
	cr_assert_eq(in->lease_expired, 0);
	rmp_pool_info_free(in);

	cr_assert_eq(rmp_pool_close(p), 0);
	usleep(400 * 1000);
	int after = atomic_load(&f->renewals);
	cr_assert_leq(after - n, 6); /* stopped renewing once closed (a few may be in flight) */
	rmp_disconnect(c);
	cr_assert_eq(atomic_load(&f->closes), 1);
	fake_stop(f);
}

Test(client_control, lease_expired_by_coordinator)
{
	struct fake *f = fake_start(SECRET, serve, MODE_EXPIRE);
	struct rmp_pool_info *in = NULL;
	rmp_client *c = NULL;
	rmp_pool *p = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	cr_assert_eq(rmp_pool_open(c, "p", 0, &p), 0, "%s", rmp_last_error(c));
	int expired = 0;
	for (int i = 0; i < 100 && !expired; i++) {
		cr_assert_eq(rmp_pool_info(p, &in), 0);
		expired = in->lease_expired;
		rmp_pool_info_free(in);
		usleep(10000);
	}
	cr_assert(expired);
	/* Every call on the pool now fails typed, before any network. */
	rmp_addr a = 0;
	char buf[16] = { 0 };
	cr_assert_eq(rmp_alloc(p, 4096, &a), -RMP_ELEASE, "%s", rmp_last_error(c));
	cr_assert(strstr(rmp_last_error(c), "expired lease 42"), "%s", rmp_last_error(c));
	cr_assert_eq(rmp_write(p, RMP_ADDR_MAKE(12, 0), buf, sizeof(buf)), -RMP_ELEASE);
	cr_assert_eq(rmp_read(p, buf, RMP_ADDR_MAKE(12, 0), sizeof(buf)), -RMP_ELEASE);
	cr_assert_eq(rmp_free(p, RMP_ADDR_MAKE(12, 0)), -RMP_ELEASE);
	rmp_disconnect(c); /* closes p */
	fake_stop(f);
}

/* A donor's death as the client hears of it: the pushed table's version,
 * capacity and lost donor show in rmp_pool_info within a second; pushes
 * of another pool, or older, change nothing; a push listing other donors
 * expires the pool. */
Test(client_control, segtab_push_takes_a_donor_out)
{
	struct fake *f = fake_start(SECRET, serve, MODE_PUSH);
	struct rmp_pool_info *in = NULL;
	rmp_client *c = NULL;
	rmp_pool *p = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	uint64_t t0 = rmp_mono_ms();
	cr_assert_eq(rmp_pool_open(c, "p", 0, &p), 0, "%s", rmp_last_error(c));
	uint64_t version = 0;
	while (version != 4 && rmp_mono_ms() - t0 < 1000) {
		cr_assert_eq(rmp_pool_info(p, &in), 0);
		version = in->segtab_version;
		cr_assert(version == 3 || version == 4, "version %llu", (unsigned long long)version);
		if (version == 3) {
			cr_assert_eq(in->donors_lost, 0);
			cr_assert_eq(in->capacity, 12u << 20);
		}
		rmp_pool_info_free(in);
		usleep(1000);
	}
	cr_assert_eq(version, 4, "the push did not arrive within 1 s");
	cr_assert_eq(rmp_pool_info(p, &in), 0);
	cr_assert_eq(in->capacity, 8u << 20);
	cr_assert_eq(in->donors_lost, 1);
	cr_assert_eq(in->lost_bytes, 4u << 20);
	cr_assert_eq(in->n_donors, 2);
	cr_assert_eq(in->donors[1].donor_id, 2);
	cr_assert_eq(in->lease_expired, 0);
	rmp_pool_info_free(in);
	uint32_t donor = 0;
	cr_assert_eq(rmp_pool_segment_donor(p, 2, &donor), 0);
	cr_assert_eq(donor, 2, "the segments keep naming their donor");

	/* Ask for the push of another layout (the fake answers a fetch with it). */
	struct rmp_wire_msg m = { .type = RMP_MSG_SEGTAB_FETCH };
	m.u.segtab_fetch.pool_id = 5;
	cr_assert_eq(rmp_client_send(c, &m), 0);
	int expired = 0;
	for (int i = 0; i < 100 && !expired; i++) {
		cr_assert_eq(rmp_pool_info(p, &in), 0);
		expired = in->lease_expired;
		cr_assert_eq(in->segtab_version, 4);
		rmp_pool_info_free(in);
		usleep(10000);
	}
	cr_assert(expired, "a table of other donors did not expire the pool");
	rmp_disconnect(c);
	fake_stop(f);
}

/* No grant comes back: once the time to live has passed, the pool says
 * so (rmp_pool_info), and a call that then fails - here its metadata
 * endpoint cannot be reached - is typed -RMP_ELEASE: the failure is
 * taken for the far side's cut-off. */
Test(client_control, lease_unconfirmed_fails_calls)
{
	struct fake *f = fake_start(SECRET, serve, MODE_NO_GRANT);
	rmp_client *c = NULL;
	rmp_pool *p = NULL;
	rmp_addr a = 0;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	cr_assert_eq(rmp_pool_open(c, "p", 0, &p), 0, "%s", rmp_last_error(c));
	usleep(450 * 1000); /* ttl 300 ms */
	cr_assert_eq(rmp_alloc(p, 4096, &a), -RMP_ELEASE, "%s", rmp_last_error(c));
	cr_assert(strstr(rmp_last_error(c), "not confirmed for 300 ms"), "%s", rmp_last_error(c));
	struct rmp_pool_info *in = NULL;
	cr_assert_eq(rmp_pool_info(p, &in), 0);
	cr_assert_eq(in->lease_expired, 1);
	rmp_pool_info_free(in);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, refused_open_keeps_the_coordinators_text)
{
	struct fake *f = fake_start(SECRET, serve, MODE_REFUSE);
	rmp_client *c = NULL;
	rmp_pool *p = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	cr_assert_eq(rmp_pool_open(c, "big", 224u << 20, &p), -ENOSPC);
	cr_assert_null(p);
	cr_assert_str_eq(rmp_last_error(c), "hosts can give 96 MiB, asked 224 MiB");
	/* The connection survives a refusal. */
	struct rmp_status *s = NULL;
	cr_assert_eq(rmp_status(c, &s), 0);
	rmp_status_free(s);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, bad_pool_names_are_refused_locally)
{
	struct fake *f = fake_start(SECRET, serve, MODE_NORMAL);
	rmp_client *c = NULL;
	rmp_pool *p = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	cr_assert_eq(rmp_pool_open(c, "", 1, &p), -EINVAL);
	cr_assert_eq(rmp_pool_open(c, "has space", 1, &p), -EINVAL);
	cr_assert_eq(rmp_pool_open(c, "tab\there", 1, &p), -EINVAL);
	char longname[80];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[79] = '\0';
	cr_assert_eq(rmp_pool_destroy(c, longname), -EINVAL);
	/* ... and the connection is still fine. */
	struct rmp_status *s = NULL;
	cr_assert_eq(rmp_status(c, &s), 0);
	rmp_status_free(s);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, unanswered_request_is_bounded_and_drops_the_connection)
{
	struct fake *f = fake_start(SECRET, serve, MODE_SILENT_STATUS);
	struct rmp_connect_opts o = fast;
	struct rmp_status *s = NULL;
	rmp_client *c = NULL;

	o.request_timeout_ms = 300;
	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &o, &c), 0);
	uint64_t t0 = rmp_mono_ms();
	cr_assert_eq(rmp_status(c, &s), -ETIMEDOUT);
	uint64_t took = rmp_mono_ms() - t0;
	cr_assert(took >= 250 && took < 2000, "took %llu ms", (unsigned long long)took);
	/* The connection was dropped (a late reply must not answer the next
	 * request); the client reconnects in the background, and meanwhile
	 * says so at once. */
	t0 = rmp_mono_ms();
	cr_assert_eq(rmp_status(c, &s), -RMP_EAWAY);
	cr_assert_lt(rmp_mono_ms() - t0, 100);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, garbage_from_the_coordinator_drops_the_connection)
{
	struct fake *f = fake_start(SECRET, serve, MODE_GARBAGE);
	struct rmp_status *s = NULL;
	rmp_client *c = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	/* The answer never comes: the connection goes, the client is away. */
	cr_assert_eq(rmp_status(c, &s), -RMP_EAWAY);
	cr_assert(strstr(rmp_last_error(c), "lost before the answer"), "%s", rmp_last_error(c));
	cr_assert_eq(rmp_status(c, &s), -RMP_EAWAY);
	cr_assert(strstr(rmp_last_error(c), "is away"), "%s", rmp_last_error(c));
	rmp_disconnect(c);
	fake_stop(f);
}

/* A request by pool name (destroy, forget) waits for its ACK, relays the
 * PROGRESS the coordinator sends (destroy's one, forget's none), returns
 * the coordinator's error and refuses an empty name before it sends. */
static void check_name_request(int (*call)(rmp_client *, const char *), int progress)
{
	struct fake *f = fake_start(SECRET, serve, MODE_NORMAL);
	struct progress_log log = { 0 };
	rmp_client *c = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	rmp_client_set_progress(c, log_progress, &log);
	cr_assert_eq(call(c, "p"), 0, "%s", rmp_last_error(c));
	cr_assert_eq(log.n, progress, "%d PROGRESS relayed, want %d", log.n, progress);
	cr_assert_eq(call(c, "missing"), -ENOENT);
	cr_assert_str_eq(rmp_last_error(c), "no pool named missing");
	cr_assert_eq(call(c, ""), -EINVAL);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, destroy_waits_for_its_ack)
{
	check_name_request(rmp_pool_destroy, 1);
}

Test(client_control, forget_waits_for_its_ack)
{
	check_name_request(rmp_pool_forget, 0);
}

/* This host has no RDMA device and the fake coordinator no metadata
 * region: the data path must fail cleanly, with a reason, and refuse
 * bad arguments before it tries the network. */
Test(client_control, data_path_fails_cleanly_without_rdma)
{
	struct fake *f = fake_start(SECRET, serve, MODE_NORMAL);
	rmp_client *c = NULL;
	rmp_pool *p = NULL;
	rmp_addr a = 1;
	char buf[8] = { 0 };

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	cr_assert_eq(rmp_pool_open(c, "p", 0, &p), 0);
	cr_assert_eq(rmp_alloc(p, 0, &a), -EINVAL);
	cr_assert_eq(a, 0);
	cr_assert_eq(rmp_write(p, RMP_ADDR_MAKE(12, 0), NULL, 8), -EINVAL);
	cr_assert_eq(rmp_write(p, RMP_ADDR_MAKE(12, 0), buf, 0), -EINVAL);
	cr_assert_eq(rmp_read(p, NULL, RMP_ADDR_MAKE(12, 0), 8), -EINVAL);
	cr_assert_eq(rmp_free(p, 0), -EINVAL);
	a = 1;
	int rc = rmp_alloc(p, 4096, &a);
	cr_assert_lt(rc, 0, "an allocation without an RDMA device succeeded");
	cr_assert_neq(rc, -ENOSYS);
	cr_assert_eq(a, 0);
	cr_assert_neq(rmp_last_error(c)[0], '\0', "no reason given for %d", rc);
	cr_assert_lt(rmp_read(p, buf, RMP_ADDR_MAKE(12, 0), 8), 0);
	cr_assert_eq(rmp_pool_close(p), 0);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, addr_layout)
{
	rmp_addr a = RMP_ADDR_MAKE(12, 0x5000);
	cr_assert_eq(a >> 58, 13);
	cr_assert_eq(RMP_ADDR_ORDER(a), 12);
	cr_assert_eq(RMP_ADDR_OFFSET(a + 7), 0x5007);
	cr_assert_eq(RMP_ADDR_ORDER(a + 7), 12);
	cr_assert_eq(RMP_ADDR_ORDER(0), -1);
}

Test(client_control, strerror_covers_every_code)
{
	cr_assert_str_eq(rmp_strerror(0), "success");
	cr_assert(strstr(rmp_strerror(-RMP_ELEASE), "lease") != NULL);
	cr_assert(strstr(rmp_strerror(-RMP_ECORRUPT), "invariants") != NULL);
	cr_assert(strstr(rmp_strerror(-RMP_EREMOTE), "refused") != NULL);
	cr_assert_str_eq(rmp_strerror(-ENOENT), "No such file or directory");
	cr_assert_str_eq(rmp_strerror(ENOENT), "No such file or directory");
	cr_assert_str_eq(rmp_strerror(-999999), "unknown error");
}

/* ---- a coordinator that goes and comes back ---- */

enum { RESTART_OK = 0, RESTART_LOST = 1, RESTART_LEASE_GONE = 2 };

static void send_status(struct rmp_ctlconn *conn, uint64_t gen)
{
	struct rmp_wire_msg out = { .type = RMP_MSG_STATUS_REPLY };
	out.u.status.generation = gen;
	send_msg(conn, &out);
}

/* Connection 0: opens pool 5 (lease 42, table version 3, metadata key 9),
 * grants renewals, and hangs up when the test sets f->kill. Connection 1
 * (the restarted coordinator): renewals of lease 42 granted (or refused:
 * RESTART_LEASE_GONE); the first SEGTAB_FETCH answered "still being
 * re-adopted" (EAGAIN), the next with version 4 and key 10 (or, with
 * RESTART_LOST, the pool is lost: EIO). */
static void serve_restart(struct fake *f, struct rmp_ctlconn *conn)
{
	for (;;) {
		struct rmp_wire_msg in, out = { 0 };
		if (f->conn_index == 0 && atomic_load(&f->kill))
			return;
		int rc = recv_msg(conn, &in, 50);
		if (rc == -ETIMEDOUT)
			continue;
		if (rc) {
			if (f->conn_index > 0)
				atomic_store(&f->hung_up, 1);
			return;
		}
		switch (in.type) {
		case RMP_MSG_STATUS_REQUEST:
			send_status(conn, f->gen[f->conn_index]);
			break;
		case RMP_MSG_POOL_OPEN:
			out.type = RMP_MSG_POOL_READY;
			out.u.pool_ready.pool_id = 5;
			out.u.pool_ready.lease_id = 42;
			out.u.pool_ready.lease_ms = 600;
			fill_segtab(&out.u.pool_ready.segtab);
			send_msg(conn, &out);
			free(out.u.pool_ready.segtab.donors);
			free(out.u.pool_ready.segtab.segments);
			break;
		case RMP_MSG_LEASE_RENEW:
			cr_assert_eq(in.u.lease_renew.lease_id, 42);
			if (f->conn_index > 0)
				atomic_fetch_add(&f->old_renewals, 1);
			if (f->conn_index > 0 && f->arg == RESTART_LEASE_GONE) {
				out.type = RMP_MSG_ERROR;
				out.u.error.code = ENOENT;
				out.u.error.ref_type = RMP_MSG_LEASE_RENEW;
				strcpy(out.u.error.text, "lease 42 is unknown or closed");
			} else {
				out.type = RMP_MSG_LEASE_GRANT;
				out.u.lease_grant.lease_id = 42;
				out.u.lease_grant.ttl_ms = 600;
			}
			send_msg(conn, &out);
			break;
		case RMP_MSG_SEGTAB_FETCH:
			cr_assert_eq(in.u.segtab_fetch.pool_id, 5);
			if (atomic_fetch_add(&f->fetches, 1) == 0 || f->arg == RESTART_LOST) {
				out.type = RMP_MSG_ERROR;
				out.u.error.code = f->arg == RESTART_LOST && atomic_load(&f->fetches) > 1 ? EIO : EAGAIN;
				out.u.error.ref_type = RMP_MSG_SEGTAB_FETCH;
				strcpy(out.u.error.text, out.u.error.code == EIO ? "pool p is lost: its shared memory is gone"
										 : "pool p is being re-adopted");
				send_msg(conn, &out);
				break;
			}
			out.type = RMP_MSG_SEGTAB;
			out.u.segtab.pool_id = 5;
			fill_segtab(&out.u.segtab.segtab);
			out.u.segtab.segtab.version = 4;
			out.u.segtab.segtab.meta.rkey = 10;
			send_msg(conn, &out);
			free(out.u.segtab.segtab.donors);
			free(out.u.segtab.segtab.segments);
			break;
		case RMP_MSG_POOL_CLOSE:
			out.type = RMP_MSG_ACK;
			out.u.ack.ref_type = RMP_MSG_POOL_CLOSE;
			send_msg(conn, &out);
			break;
		default:
			break;
		}
		rmp_wire_msg_release(&in);
	}
}

static struct fake *restart_fake(uint64_t mode, uint64_t gen0, uint64_t gen1)
{
	struct fake *f = fake_new(SECRET, serve_restart, mode);
	f->n_conns = 2;
	f->gen[0] = gen0;
	f->gen[1] = gen1;
	f->gap_ms = 400;
	return fake_run(f);
}

/* Polls pool info until pred holds, 15 s at most (a loaded machine: the
 * reconnect itself takes well under a second). */
static bool wait_info(rmp_pool *p, bool (*pred)(const struct rmp_pool_info *), struct rmp_pool_info *last)
{
	for (int i = 0; i < 1500; i++) {
		struct rmp_pool_info *in = NULL;
		cr_assert_eq(rmp_pool_info(p, &in), 0);
		*last = *in;
		last->donors = NULL;
		bool ok = pred(in);
		rmp_pool_info_free(in);
		if (ok)
			return true;
		usleep(10000);
	}
	return false;
}

static bool at_version_4(const struct rmp_pool_info *in)
{
	return in->segtab_version == 4;
}

static bool expired(const struct rmp_pool_info *in)
{
	return in->lease_expired != 0;
}

Test(client_control, coordinator_restart_is_ridden_through)
{
	struct fake *f = restart_fake(RESTART_OK, 5, 6);
	struct rmp_status *s = NULL;
	struct rmp_pool_info last;
	rmp_client *c = NULL;
	rmp_pool *p = NULL;
	rmp_addr a = 0;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0, "%s", rmp_last_error(NULL));
	cr_assert_eq(rmp_pool_open(c, "p", 0, &p), 0, "%s", rmp_last_error(c));
	cr_assert_eq(atomic_load(&p->meta_epoch), 0);

	atomic_store(&f->kill, 1); /* the coordinator goes */
	int rc = 0;
	for (int i = 0; i < 200 && rc != -RMP_EAWAY; i++) {
		rc = rmp_status(c, &s);
		if (rc == 0)
			rmp_status_free(s);
		usleep(5000);
	}
	cr_assert_eq(rc, -RMP_EAWAY, "the client never noticed the coordinator go (%d)", rc);
	/* Away: every request, and alloc/free, fails at once. */
	uint64_t t0 = rmp_mono_ms();
	cr_assert_eq(rmp_status(c, &s), -RMP_EAWAY);
	rmp_pool *q = NULL;
	cr_assert_eq(rmp_pool_open(c, "q", 0, &q), -RMP_EAWAY);
	cr_assert_null(q);
	cr_assert_eq(rmp_alloc(p, 4096, &a), -RMP_EAWAY, "%s", rmp_last_error(c));
	cr_assert_eq(rmp_free(p, RMP_ADDR_MAKE(12, 0)), -RMP_EAWAY, "%s", rmp_last_error(c));
	cr_assert_lt(rmp_mono_ms() - t0, 200, "calls while away took %llu ms",
		     (unsigned long long)(rmp_mono_ms() - t0));
	cr_assert(strstr(rmp_last_error(c), "is away"), "%s", rmp_last_error(c));

	/* Back (after 400 ms, longer than the 600 ms lease's renewal pace):
	 * the lease is renewed by its old id, the table fetched again (once
	 * refused while the pool is re-adopted), and the client works. */
	cr_assert(wait_info(p, at_version_4, &last), "the table was never fetched again (version %llu)",
		  (unsigned long long)last.segtab_version);
	uint64_t back = atomic_load(&f->back_ms);
	cr_assert_neq(back, 0);
	cr_assert_eq(rmp_status(c, &s), 0, "%s", rmp_last_error(c));
	cr_assert_eq(s->generation, 6);
	rmp_status_free(s);
	cr_assert_geq(atomic_load(&f->old_renewals), 1);
	cr_assert_geq(atomic_load(&f->fetches), 2);
	cr_assert_eq(atomic_load(&p->meta_epoch), 1);
	cr_assert_not(atomic_load(&p->resyncing));
	cr_assert_eq(p->segtab.meta.rkey, 10);
	cr_assert_eq(atomic_load(&c->generation), 6);
	cr_assert_eq(c->reconnects, 1);
	/* The lease lived through an outage longer than its renewal pace. */
	usleep(700000);
	struct rmp_pool_info *in = NULL;
	cr_assert_eq(rmp_pool_info(p, &in), 0);
	cr_assert_eq(in->lease_expired, 0);
	rmp_pool_info_free(in);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, pool_lost_in_the_restart_expires_it)
{
	struct fake *f = restart_fake(RESTART_LOST, 5, 6);
	struct rmp_pool_info last;
	rmp_client *c = NULL;
	rmp_pool *p = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	cr_assert_eq(rmp_pool_open(c, "p", 0, &p), 0, "%s", rmp_last_error(c));
	atomic_store(&f->kill, 1);
	cr_assert(wait_info(p, expired, &last), "a pool the coordinator lost was never marked expired");
	pthread_mutex_lock(&c->lock);
	cr_assert(strstr(p->expired_text, "shared memory is gone"), "%s", p->expired_text);
	cr_assert_not(p->resync);
	pthread_mutex_unlock(&c->lock);
	cr_assert_eq(atomic_load(&p->meta_epoch), 0);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, lease_refused_after_the_restart_expires_it)
{
	struct fake *f = restart_fake(RESTART_LEASE_GONE, 5, 6);
	struct rmp_pool_info last;
	rmp_client *c = NULL;
	rmp_pool *p = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	cr_assert_eq(rmp_pool_open(c, "p", 0, &p), 0, "%s", rmp_last_error(c));
	atomic_store(&f->kill, 1);
	cr_assert(wait_info(p, expired, &last), "a lease the restarted coordinator refused was kept");
	pthread_mutex_lock(&c->lock);
	cr_assert(strstr(p->expired_text, "unknown or closed"), "%s", p->expired_text);
	pthread_mutex_unlock(&c->lock);
	rmp_disconnect(c);
	fake_stop(f);
}

Test(client_control, older_generation_coordinator_is_refused)
{
	struct fake *f = restart_fake(RESTART_OK, 5, 4);
	struct rmp_status *s = NULL;
	rmp_client *c = NULL;
	rmp_pool *p = NULL;

	cr_assert_eq(rmp_connect_ex(f->addr, SECRET, &fast, &c), 0);
	cr_assert_eq(rmp_pool_open(c, "p", 0, &p), 0, "%s", rmp_last_error(c));
	atomic_store(&f->kill, 1);
	/* The second coordinator authenticates but is older: the client hangs
	 * up on it and stays away. */
	for (int i = 0; i < 500 && !atomic_load(&f->hung_up); i++)
		usleep(10000);
	cr_assert(atomic_load(&f->hung_up), "the client kept a coordinator of an older generation");
	cr_assert_eq(atomic_load(&f->old_renewals), 0);
	cr_assert_eq(rmp_status(c, &s), -RMP_EAWAY);
	cr_assert(strstr(rmp_last_error(c), "older than 5"), "%s", rmp_last_error(c));
	rmp_disconnect(c);
	fake_stop(f);
}
