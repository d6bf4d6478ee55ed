/* test_ctlconn.c - common/ctlconn.c on loopback: bounded connects (a
 * listener whose accept queue is full, one that never answers, a closed
 * port), the handshake against a fake coordinator thread (right secret,
 * wrong secret, a refused proof, a close after the proof, an oversized
 * pre-auth frame), reconnect, the event-loop reader (frames before a
 * close, the pre-auth limit and types, a frame larger than the first
 * buffer), bounded sends, and the backoff's bounds.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "clock.h"
#include "ctlconn.h"
#include "loopback.h"
#include "wire.h"

#define SECRET "a-test-secret-of-some-length"
#define OTHER_SECRET "another-secret-entirely-xyz"

/* ---- helpers ---- */

/* A loopback listener on a free port. */
static int listener(int backlog, uint16_t *port)
{
	int fd = loopback_socket(backlog, port);

	cr_assert_geq(fd, 0, "loopback_socket: %s", strerror(-fd));
	return fd;
}

static rmp_auth_key *key_of(const char *secret)
{
	rmp_auth_key *k = NULL;
	char err[128];

	cr_assert_eq(rmp_auth_key_create(secret, &k, err, sizeof(err)), 0, "%s", err);
	return k;
}

static struct rmp_ctlconn_opts opts_for(uint16_t port, const rmp_auth_key *k)
{
	return (struct rmp_ctlconn_opts){ .host = "127.0.0.1", .port = port, .key = k,
					  .role = RMP_ROLE_DONOR, .ident = "test-peer",
					  .keepalive = true };
}

/* Two adopted ends of a socketpair: a = "us", b = "the coordinator". */
static void pair(struct rmp_ctlconn *a, struct rmp_ctlconn *b)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(rmp_ctlconn_adopt(a, sv[0], "pair-a"), 0);
	cr_assert_eq(rmp_ctlconn_adopt(b, sv[1], "pair-b"), 0);
}

/* ---- a fake coordinator ---- */

enum fake_mode {
	FAKE_OK,		 /* the real handshake, then echo one frame back */
	FAKE_REFUSE_PROOF,	 /* ERROR EACCES instead of AUTH_OK */
	FAKE_CLOSE_AFTER_PROOF,	 /* hang up instead of AUTH_OK */
	FAKE_OVERSIZED_CHALLENGE /* a CHALLENGE header claiming 1 KiB */
};

struct fake {
	int lfd;
	uint16_t port;
	const char *secret;
	enum fake_mode mode;
	int sessions; /* connections to accept, one after the other */
	pthread_t thread;
};

/* The coordinator's half; returns false when the script ends here. */
static bool fake_handshake(struct fake *f, struct rmp_ctlconn *conn, uint64_t session)
{
	struct rmp_auth_handshake hs = { 0 };
	struct rmp_wire_msg in, out = { .type = RMP_MSG_CHALLENGE };
	rmp_auth_key *k = key_of(f->secret);
	char err[256];
	bool go_on = false;

	if (rmp_ctlconn_recv(conn, &in, rmp_deadline_ms(3000), err, sizeof(err)))
		goto out_key;
	cr_assert_eq(in.type, RMP_MSG_HELLO);
	cr_assert_str_eq(in.u.hello.ident, "test-peer");
	if (f->mode == FAKE_OVERSIZED_CHALLENGE) {
		/* magic, version, type, then a 1 KiB payload length */
		const uint8_t hdr[8] = { 0x52, 0x4d, RMP_WIRE_VERSION, RMP_MSG_CHALLENGE, 0, 0, 4, 0 };
		cr_assert_eq(send(conn->fd, hdr, sizeof(hdr), MSG_NOSIGNAL), 8);
		goto out_key;
	}
	cr_assert_eq(rmp_auth_coord_challenge(k, &hs, &in.u.hello, &out.u.challenge), 0);
	cr_assert_eq(rmp_ctlconn_send(conn, &out, rmp_deadline_ms(2000)), 0);
	if (rmp_ctlconn_recv(conn, &in, rmp_deadline_ms(3000), err, sizeof(err)))
		goto out_key;
	cr_assert_eq(in.type, RMP_MSG_AUTH_PROOF);
	if (f->mode == FAKE_CLOSE_AFTER_PROOF)
		goto out_key;
	if (rmp_auth_coord_verify(k, &hs, &in.u.auth_proof) || f->mode == FAKE_REFUSE_PROOF) {
		out = (struct rmp_wire_msg){ .type = RMP_MSG_ERROR };
		out.u.error.code = EACCES;
		out.u.error.ref_type = RMP_MSG_AUTH_PROOF;
		strcpy(out.u.error.text, "authentication failed");
		rmp_ctlconn_send(conn, &out, rmp_deadline_ms(2000));
		goto out_key;
	}
	out = (struct rmp_wire_msg){ .type = RMP_MSG_AUTH_OK };
	out.u.auth_ok.session_id = session;
	cr_assert_eq(rmp_ctlconn_send(conn, &out, rmp_deadline_ms(2000)), 0);
	rmp_ctlconn_set_authed(conn);
	go_on = true;
out_key:
	rmp_auth_key_destroy(k);
	return go_on;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	for (int s = 1; s <= f->sessions; s++) {
		struct rmp_ctlconn conn;
		struct rmp_wire_msg m;
		char err[256];
		int fd = accept(f->lfd, NULL, NULL);
		if (fd < 0)
			return NULL;
		cr_assert_eq(rmp_ctlconn_adopt(&conn, fd, "the peer"), 0);
		/* Echo one frame: the peer's round trip after AUTH_OK. */
		if (fake_handshake(f, &conn, 100 + (uint64_t)s) &&
		    rmp_ctlconn_recv(&conn, &m, rmp_deadline_ms(3000), err, sizeof(err)) == 0) {
			rmp_ctlconn_send(&conn, &m, rmp_deadline_ms(2000));
			rmp_wire_msg_release(&m);
		}
		rmp_ctlconn_close(&conn);
	}
	return NULL;
}

static struct fake *fake_start(const char *secret, enum fake_mode mode, int sessions)
{
	struct fake *f = calloc(1, sizeof(*f));

	f->secret = secret;
	f->mode = mode;
	f->sessions = sessions;
	f->lfd = listener(4, &f->port);
	cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
	return f;
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->lfd);
	free(f);
}

/* A fake coordinator holding fake_secret and a peer's settings for it,
 * with SECRET: what the connect and handshake tests start from. */
struct rig {
	struct fake *f;
	rmp_auth_key *k;
	struct rmp_ctlconn_opts o;
};

static void rig_start(struct rig *r, const char *fake_secret, enum fake_mode mode, int sessions)
{
	r->f = fake_start(fake_secret, mode, sessions);
	r->k = key_of(SECRET);
	r->o = opts_for(r->f->port, r->k);
}

/* Waits for the fake's sessions to end. */
static void rig_stop(struct rig *r)
{
	rmp_auth_key_destroy(r->k);
	fake_stop(r->f);
}

/* One rmp_ctlconn_open against a fake that plays mode once and ends;
 * returns what the open returned, its text in err. */
static int open_against(const char *fake_secret, enum fake_mode mode, struct rmp_ctlconn *c,
			char *err, size_t len)
{
	struct rig r;

	rig_start(&r, fake_secret, mode, 1);
	int rc = rmp_ctlconn_open(c, &r.o, rmp_deadline_ms(3000), err, len);
	rig_stop(&r);
	return rc;
}

/* One ACK there and back. */
static void round_trip(struct rmp_ctlconn *c)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_ACK };
	char err[256];

	m.u.ack.ref_type = RMP_MSG_POOL_CLOSE;
	cr_assert_eq(rmp_ctlconn_send(c, &m, rmp_deadline_ms(2000)), 0);
	memset(&m, 0, sizeof(m));
	cr_assert_eq(rmp_ctlconn_recv(c, &m, rmp_deadline_ms(3000), err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(m.type, RMP_MSG_ACK);
	cr_assert_eq(m.u.ack.ref_type, RMP_MSG_POOL_CLOSE);
}

/* ---- connect and handshake ---- */

Test(ctlconn, open_authenticates_and_exchanges_frames)
{
	struct rig r;
	struct rmp_ctlconn c;
	char err[256] = "";

	rig_start(&r, SECRET, FAKE_OK, 1);
	cr_assert_eq(rmp_ctlconn_open(&c, &r.o, rmp_deadline_ms(3000), err, sizeof(err)), 0, "%s",
		     err);
	cr_assert(c.authed);
	cr_assert_eq(c.session_id, 101);
	char peer[32];
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", (unsigned)r.f->port);
	cr_assert_str_eq(c.peer, peer);
	round_trip(&c);
	rmp_ctlconn_close(&c);
	rmp_ctlconn_close(&c); /* twice is fine */
	cr_assert_eq(c.fd, -1);
	rig_stop(&r);
}

Test(ctlconn, wrong_secret_is_the_auth_error)
{
	struct rmp_ctlconn c;
	char err[256] = "";

	int rc = open_against(OTHER_SECRET, FAKE_OK, &c, err, sizeof(err));
	cr_assert_eq(rc, -RMP_CTLCONN_EAUTH, "rc %d: %s", rc, err);
	cr_assert(strstr(err, "secret") != NULL, "%s", err);
	cr_assert_eq(c.fd, -1);
}

Test(ctlconn, refused_proof_is_the_auth_error)
{
	struct rmp_ctlconn c;
	char err[256] = "";

	int rc = open_against(SECRET, FAKE_REFUSE_PROOF, &c, err, sizeof(err));
	cr_assert_eq(rc, -RMP_CTLCONN_EAUTH, "rc %d: %s", rc, err);
	/* Either the ERROR or, if the close overtook it, the close. */
	cr_assert(strstr(err, "refused our proof: authentication failed") ||
		  strstr(err, "after our proof"), "%s", err);
}

Test(ctlconn, close_after_proof_is_the_auth_error)
{
	struct rmp_ctlconn c;
	char err[256] = "";

	int rc = open_against(SECRET, FAKE_CLOSE_AFTER_PROOF, &c, err, sizeof(err));
	cr_assert_eq(rc, -RMP_CTLCONN_EAUTH, "rc %d: %s", rc, err);
	cr_assert(strstr(err, "closed the connection after our proof"), "%s", err);
}

Test(ctlconn, oversized_preauth_frame_is_refused)
{
	struct rmp_ctlconn c;
	char err[256] = "";

	int rc = open_against(SECRET, FAKE_OVERSIZED_CHALLENGE, &c, err, sizeof(err));
	cr_assert_eq(rc, -EMSGSIZE, "rc %d: %s", rc, err);
	cr_assert(strstr(err, "256-byte frame limit"), "%s", err);
}

Test(ctlconn, connect_is_bounded_when_the_accept_queue_is_full)
{
	uint16_t port;
	int lfd = listener(0, &port);
	/* Backlog 0 holds one connection; further SYNs are dropped, so the
	 * next connect(2) stays in progress until our deadline. */
	int filler = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(connect(filler, (struct sockaddr *)&a, sizeof(a)), 0);
	rmp_auth_key *k = key_of(SECRET);
	struct rmp_ctlconn_opts o = opts_for(port, k);
	struct rmp_ctlconn c;
	char err[256] = "";

	uint64_t t0 = rmp_mono_ms();
	int rc = rmp_ctlconn_open(&c, &o, rmp_deadline_ms(300), err, sizeof(err));
	uint64_t took = rmp_mono_ms() - t0;
	cr_assert_eq(rc, -ETIMEDOUT, "rc %d: %s", rc, err);
	cr_assert(strstr(err, "connect(): coordinator 127.0.0.1:"), "%s", err);
	cr_assert(took >= 250 && took < 2000, "took %llu ms", (unsigned long long)took);
	rmp_auth_key_destroy(k);
	close(filler);
	close(lfd);
}

Test(ctlconn, handshake_is_bounded_when_the_listener_never_answers)
{
	uint16_t port;
	int lfd = listener(4, &port); /* the kernel accepts; nobody speaks */
	rmp_auth_key *k = key_of(SECRET);
	struct rmp_ctlconn_opts o = opts_for(port, k);
	struct rmp_ctlconn c;
	char err[256] = "";

	uint64_t t0 = rmp_mono_ms();
	int rc = rmp_ctlconn_open(&c, &o, rmp_deadline_ms(300), err, sizeof(err));
	uint64_t took = rmp_mono_ms() - t0;
	cr_assert_eq(rc, -ETIMEDOUT, "rc %d: %s", rc, err);
	cr_assert(strstr(err, "no answer within"), "%s", err);
	cr_assert(strstr(err, "during the handshake"), "%s", err);
	cr_assert(took >= 250 && took < 2000, "took %llu ms", (unsigned long long)took);
	rmp_auth_key_destroy(k);
	close(lfd);
}

Test(ctlconn, closed_port_is_refused)
{
	uint16_t port;
	close(listener(1, &port)); /* a port nothing listens on now */
	rmp_auth_key *k = key_of(SECRET);
	struct rmp_ctlconn_opts o = opts_for(port, k);
	struct rmp_ctlconn c;
	char err[256] = "";

	cr_assert_eq(rmp_ctlconn_open(&c, &o, rmp_deadline_ms(2000), err, sizeof(err)),
		     -ECONNREFUSED);
	cr_assert(strstr(err, "Connection refused"), "%s", err);
	rmp_auth_key_destroy(k);
}

Test(ctlconn, bad_settings_are_refused_without_io)
{
	struct rmp_ctlconn_opts o = opts_for(1, NULL);
	struct rmp_ctlconn c;
	char err[256] = "", longname[RMP_WIRE_IDENT_MAX + 2];

	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	o.ident = longname;
	cr_assert_eq(rmp_ctlconn_open(&c, &o, rmp_deadline_ms(100), err, sizeof(err)), -EINVAL);
	o.ident = "ok";
	o.host = "";
	cr_assert_eq(rmp_ctlconn_init(&c, &o), -EINVAL);
	/* An adopted connection has nothing to reconnect to. */
	struct rmp_ctlconn a, b;
	pair(&a, &b);
	cr_assert_eq(rmp_ctlconn_reconnect(&a, rmp_deadline_ms(100), err, sizeof(err)), -EINVAL);
	rmp_ctlconn_close(&a);
	rmp_ctlconn_close(&b);
}

Test(ctlconn, reconnect_redoes_connect_and_handshake)
{
	struct rig r;
	struct rmp_ctlconn c;
	struct rmp_wire_msg m;
	char err[256] = "";

	rig_start(&r, SECRET, FAKE_OK, 2);
	cr_assert_eq(rmp_ctlconn_open(&c, &r.o, rmp_deadline_ms(3000), err, sizeof(err)), 0, "%s",
		     err);
	round_trip(&c); /* the fake then hangs up */
	cr_assert_eq(rmp_ctlconn_recv(&c, &m, rmp_deadline_ms(3000), err, sizeof(err)),
		     -ECONNRESET);
	cr_assert(strstr(err, "closed the connection"), "%s", err);
	cr_assert_eq(rmp_ctlconn_reconnect(&c, rmp_deadline_ms(3000), err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(c.session_id, 102);
	round_trip(&c);
	rmp_ctlconn_close(&c);
	rig_stop(&r);
}

/* ---- the reader and the writer ---- */

Test(ctlconn, frames_before_a_close_are_read_first)
{
	struct rmp_ctlconn a, b;
	struct rmp_wire_msg m = { .type = RMP_MSG_ERROR };
	char err[256] = "";

	pair(&a, &b);
	m.u.error.code = EACCES;
	strcpy(m.u.error.text, "go away");
	cr_assert_eq(rmp_ctlconn_send(&b, &m, rmp_deadline_ms(1000)), 0);
	rmp_ctlconn_close(&b);
	/* ERROR and the close are both in: the ERROR comes out first. */
	cr_assert_eq(rmp_ctlconn_fill(&a), 0);
	cr_assert_eq(rmp_ctlconn_pop(&a, &m, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(m.type, RMP_MSG_ERROR);
	cr_assert_str_eq(m.u.error.text, "go away");
	cr_assert_eq(rmp_ctlconn_pop(&a, &m, err, sizeof(err)), 0);
	cr_assert_eq(rmp_ctlconn_fill(&a), -ECONNRESET);
	rmp_ctlconn_close(&a);
}

Test(ctlconn, preauth_reader_takes_small_handshake_frames_only)
{
	struct rmp_ctlconn a, b;
	struct rmp_wire_msg m = { .type = RMP_MSG_STATUS_REQUEST };
	char err[256] = "";

	pair(&a, &b);
	rmp_ctlconn_set_authed(&b);
	cr_assert_eq(rmp_ctlconn_send(&b, &m, rmp_deadline_ms(1000)), 0);
	cr_assert_eq(rmp_ctlconn_fill(&a), 0);
	cr_assert_eq(rmp_ctlconn_pop(&a, &m, err, sizeof(err)), -EPROTO);
	cr_assert(strstr(err, "STATUS_REQUEST before authentication"), "%s", err);
	rmp_ctlconn_close(&a);

	/* A frame over the pre-auth limit is refused from its header... */
	pair(&a, &b);
	const uint8_t hdr[8] = { 0x52, 0x4d, RMP_WIRE_VERSION, RMP_MSG_ERROR, 0, 0, 1, 0 }; /* 256 + 8 */
	cr_assert_eq(send(b.fd, hdr, sizeof(hdr), MSG_NOSIGNAL), 8);
	cr_assert_eq(rmp_ctlconn_fill(&a), 0);
	cr_assert_eq(rmp_ctlconn_pop(&a, &m, err, sizeof(err)), -EMSGSIZE);
	rmp_ctlconn_close(&a);
	rmp_ctlconn_close(&b);
}

struct sender {
	struct rmp_ctlconn *c;
	const struct rmp_wire_msg *m;
	int rc;
};

static void *send_main(void *arg)
{
	struct sender *s = arg;
	s->rc = rmp_ctlconn_send(s->c, s->m, rmp_deadline_ms(5000));
	return NULL;
}

/* A frame far larger than the first buffer and than the socket's: the
 * sender waits for room, the reader grows to it. */
Test(ctlconn, large_frames_after_authentication)
{
	struct rmp_ctlconn a, b;
	struct rmp_wire_msg m = { .type = RMP_MSG_SEGTAB }, got;
	struct rmp_wire_segtab *t = &m.u.segtab.segtab;
	char err[256] = "";
	size_t need = 0;

	pair(&a, &b);
	rmp_ctlconn_set_authed(&a);
	m.u.segtab.pool_id = 7;
	t->version = 1;
	t->space_log2 = 12 + 14;
	t->segment_log2 = 12;
	t->min_block_log2 = 12;
	strcpy(t->coordinator.host, "127.0.0.1");
	t->coordinator.port = 7400;
	t->n_segments = 1u << 14; /* 16 bytes each: a 256 KiB frame */
	t->segments = calloc(t->n_segments, sizeof(*t->segments));
	for (uint32_t i = 0; i < t->n_segments; i++)
		t->segments[i] = (struct rmp_wire_segment){ .donor_id = RMP_WIRE_SEG_RESERVED,
							    .addr = i };
	cr_assert_eq(rmp_wire_encode(&m, NULL, 0, &need), -ENOSPC);
	cr_assert_gt(need, 200000);

	struct sender snd = { .c = &b, .m = &m, .rc = 1 };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, send_main, &snd), 0);
	uint64_t deadline = rmp_deadline_ms(5000);
	int n;
	while ((n = rmp_ctlconn_pop(&a, &got, err, sizeof(err))) == 0 &&
	       rmp_mono_ms() < deadline) {
		cr_assert_eq(rmp_ctlconn_fill(&a), 0);
		usleep(500);
	}
	pthread_join(th, NULL);
	cr_assert_eq(snd.rc, 0);
	cr_assert_eq(n, 1, "%s", err);
	cr_assert_eq(got.type, RMP_MSG_SEGTAB);
	cr_assert_eq(got.u.segtab.segtab.n_segments, 1u << 14);
	cr_assert_eq(got.u.segtab.segtab.segments[12345].addr, 12345);
	cr_assert_leq(a.cap, RMP_WIRE_MAX_FRAME);
	rmp_wire_msg_release(&got);
	free(t->segments);
	rmp_ctlconn_close(&a);
	rmp_ctlconn_close(&b);
}

Test(ctlconn, send_is_bounded_when_the_peer_stops_reading)
{
	struct rmp_ctlconn a, b;
	struct rmp_wire_msg m = { .type = RMP_MSG_PROGRESS };
	int rc = 0;

	pair(&a, &b);
	m.u.progress.state = RMP_PROGRESS_SPAWNED;
	memset(m.u.progress.text, 'x', RMP_WIRE_TEXT_MAX);
	cr_assert_eq(rmp_ctlconn_send(&a, &m, rmp_deadline_ms(200)), 0);
	uint64_t t0 = rmp_mono_ms();
	/* Nobody reads b: the socket buffers fill, then a send waits. */
	for (int i = 0; i < 100000 && rc == 0; i++)
		rc = rmp_ctlconn_send(&a, &m, rmp_deadline_ms(200));
	uint64_t took = rmp_mono_ms() - t0;
	cr_assert_eq(rc, -ETIMEDOUT);
	cr_assert_lt(took, 3000, "took %llu ms", (unsigned long long)took);
	/* A peer that went away is -EPIPE, and no SIGPIPE kills us. */
	rmp_ctlconn_close(&b);
	rc = 0;
	for (int i = 0; i < 10 && rc == 0; i++)
		rc = rmp_ctlconn_send(&a, &m, rmp_deadline_ms(200));
	cr_assert(rc == -EPIPE || rc == -ECONNRESET, "rc %d", rc);
	rmp_ctlconn_close(&a);
}

/* ---- backoff ---- */

Test(ctlconn, backoff_without_jitter_doubles_up_to_the_cap)
{
	struct rmp_ctlconn_backoff b;
	const uint32_t want[] = { 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000 };

	rmp_ctlconn_backoff_init(&b, 1000, 30000, 0, 0);
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert_eq(rmp_ctlconn_backoff_next(&b), want[i], "step %u", i);
	for (int i = 0; i < 100; i++) /* no overflow past the cap */
		cr_assert_eq(rmp_ctlconn_backoff_next(&b), 30000);
	rmp_ctlconn_backoff_reset(&b);
	cr_assert_eq(rmp_ctlconn_backoff_next(&b), 1000);
	cr_assert_eq(rmp_ctlconn_backoff_next(&b), 2000);
}

Test(ctlconn, backoff_jitter_stays_within_its_bounds)
{
	struct rmp_ctlconn_backoff b;
	uint32_t lo_seen = UINT32_MAX, hi_seen = 0;

	rmp_ctlconn_backoff_init(&b, 100, 6400, 50, 12345);
	for (int round = 0; round < 200; round++) {
		uint32_t nominal = 100;
		for (int i = 0; i < 10; i++) {
			uint32_t d = rmp_ctlconn_backoff_next(&b);
			cr_assert_leq(d, nominal, "round %d step %d: %u > %u", round, i, d, nominal);
			cr_assert_geq(d, nominal / 2, "round %d step %d: %u < %u", round, i, d,
				      nominal / 2);
			cr_assert_leq(d, 6400);
			if (nominal == 6400) {
				lo_seen = d < lo_seen ? d : lo_seen;
				hi_seen = d > hi_seen ? d : hi_seen;
			}
			nominal = nominal * 2 > 6400 ? 6400 : nominal * 2;
		}
		rmp_ctlconn_backoff_reset(&b);
	}
	/* The jitter spreads: over 600 capped draws, both ends of the range. */
	cr_assert_lt(lo_seen, 3400, "lowest %u", lo_seen);
	cr_assert_gt(hi_seen, 6000, "highest %u", hi_seen);

	/* Two seeds, two sequences: peers do not retry in step. */
	struct rmp_ctlconn_backoff x, y;
	int same = 0;
	rmp_ctlconn_backoff_init(&x, 1000, 1000, 100, 1);
	rmp_ctlconn_backoff_init(&y, 1000, 1000, 100, 2);
	for (int i = 0; i < 20; i++)
		same += rmp_ctlconn_backoff_next(&x) == rmp_ctlconn_backoff_next(&y);
	cr_assert_lt(same, 5);
}

Test(ctlconn, backoff_odd_arguments)
{
	struct rmp_ctlconn_backoff b;

	rmp_ctlconn_backoff_init(&b, 0, 0, 0, 0); /* base 0 would never grow */
	cr_assert_eq(rmp_ctlconn_backoff_next(&b), 1);
	cr_assert_eq(rmp_ctlconn_backoff_next(&b), 1);
	rmp_ctlconn_backoff_init(&b, 500, 100, 0, 0); /* a cap below the base */
	cr_assert_eq(rmp_ctlconn_backoff_next(&b), 500);
	cr_assert_eq(rmp_ctlconn_backoff_next(&b), 500);
	rmp_ctlconn_backoff_init(&b, 1000, 4000, 250, 7); /* jitter over 100 % */
	for (int i = 0; i < 50; i++)
		cr_assert_leq(rmp_ctlconn_backoff_next(&b), 4000);
	rmp_ctlconn_backoff_init(&b, UINT32_MAX - 1, UINT32_MAX, 0, 0);
	cr_assert_eq(rmp_ctlconn_backoff_next(&b), UINT32_MAX - 1);
	cr_assert_eq(rmp_ctlconn_backoff_next(&b), UINT32_MAX);
	cr_assert_eq(rmp_ctlconn_backoff_next(&b), UINT32_MAX);
}
