/* donor_agent - the host agent and its donors against a scripted fake
 * coordinator, on one Soft-RoCE host (driver: donor_agent.sh).
 *
 *   donor_agent PATH/TO/rmpool-donor
 *
 * Speaks the coordinator's half of the control protocol (wire.h, auth.h)
 * on 127.0.0.1, starts `rmpool-donor --agent` against itself and checks:
 *   - AGENT_REGISTER carries the budget, the process limit, a measured
 *     footprint and a host name;
 *   - SPAWN -> PROGRESS SPAWNED {pid}; that donor connects on its own,
 *     registers {ids, pid, region, endpoint}, runs under RLIMIT_AS = the
 *     process limit, and serves its region over RDMA to a DONOR token;
 *   - a SPAWN past the budget -> PROGRESS FAILED (ENOSPC) with numbers;
 *   - TERMINATE -> the donor exits, its connection closes, PROGRESS
 *     EXITED without error, the process is gone;
 *   - the coordinator connection dropping -> the agent terminates its
 *     donors and comes back (reconnect, AGENT_REGISTER again);
 *   - SIGTERM to the agent -> exit 0, no donor left behind.
 * This is not the coordinator (server/): it checks the agent's side only.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "check.h"
#include "rdma.h"
#include "wire.h"

#define WAIT_MS 60000 /* donors start slowly under TCG (MAP_POPULATE, reg_mr) */
#define PROCESS_LIMIT (256ull << 20)
#define BUDGET (96ull << 20)
#define REGION (16ull << 20)

static rmp_auth_key *key;

static pid_t agent_pid;
static bool reached_end; /* a PASS needs the whole script to have run */

static void finish(void)
{
	if (!reached_end && !check_failures())
		check_count();
	if (agent_pid > 0) {
		kill(agent_pid, SIGKILL);
		waitpid(agent_pid, NULL, 0);
	}
	printf("%s: %d failure(s)\n", check_failures() ? "FAIL" : "PASS", check_failures());
	exit(check_failures() ? 1 : 0);
}

struct conn {
	int fd;
	bool authed;
	uint8_t buf[1 << 16];
	size_t len;
};

static int send_msg(struct conn *c, const struct rmp_wire_msg *m)
{
	uint8_t out[4096];
	size_t len;
	if (rmp_wire_encode(m, out, sizeof(out), &len))
		return -EINVAL;
	return send(c->fd, out, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -EPIPE;
}

/* 0 and *m; -ETIMEDOUT; -ECONNRESET when the peer closed. */
static int recv_msg(struct conn *c, struct rmp_wire_msg *m, int timeout_ms)
{
	for (;;) {
		struct rmp_wire_frame f;
		struct rmp_wire_err err;
		int rc = rmp_wire_frame_parse(c->buf, c->len, sizeof(c->buf), &f, NULL, &err);
		if (rc > 0) {
			rc = rmp_wire_decode(&f, m, &err);
			memmove(c->buf, c->buf + f.frame_len, c->len - f.frame_len);
			c->len -= f.frame_len;
			if (rc)
				fprintf(stderr, "decode: %s\n", err.text);
			return rc;
		}
		if (rc < 0) {
			fprintf(stderr, "frame: %s\n", err.text);
			return rc;
		}
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		if (poll(&p, 1, timeout_ms) <= 0)
			return -ETIMEDOUT;
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n <= 0)
			return -ECONNRESET;
		c->len += (size_t)n;
	}
}

static int accept_conn(int lfd, struct conn *c, int timeout_ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, timeout_ms) <= 0)
		return -ETIMEDOUT;
	memset(c, 0, sizeof(*c));
	c->fd = accept(lfd, NULL, NULL);
	return c->fd < 0 ? -errno : 0;
}

/* The coordinator's half of the handshake; returns the peer's role. */
static int handshake(struct conn *c)
{
	struct rmp_auth_handshake hs = {0};
	struct rmp_wire_msg m;
	int rc = recv_msg(c, &m, WAIT_MS);
	if (rc || m.type != RMP_MSG_HELLO)
		return -EPROTO;
	struct rmp_wire_hello hello = m.u.hello;
	m.type = RMP_MSG_CHALLENGE;
	if (rmp_auth_coord_challenge(key, &hs, &hello, &m.u.challenge) || send_msg(c, &m))
		return -EPROTO;
	rc = recv_msg(c, &m, WAIT_MS);
	if (rc || m.type != RMP_MSG_AUTH_PROOF || rmp_auth_coord_verify(key, &hs, &m.u.auth_proof))
		return -EACCES;
	m.type = RMP_MSG_AUTH_OK;
	m.u.auth_ok.session_id = 1000 + (uint64_t)c->fd;
	if (send_msg(c, &m))
		return -EPIPE;
	c->authed = true;
	printf("handshake with %s (role %u)\n", hello.ident, hello.role);
	return hello.role;
}

static struct rmp_wire_agent_register agent_handshake(int lfd, struct conn *a)
{
	struct rmp_wire_msg m;
	REQUIRE(accept_conn(lfd, a, WAIT_MS) == 0, "the agent did not connect");
	REQUIRE(handshake(a) == RMP_ROLE_AGENT, "agent handshake failed");
	REQUIRE(recv_msg(a, &m, WAIT_MS) == 0 && m.type == RMP_MSG_AGENT_REGISTER,
		"no AGENT_REGISTER");
	struct rmp_wire_agent_register reg = m.u.agent_register;
	m.type = RMP_MSG_AGENT_REGISTERED;
	m.u.agent_registered.agent_id = 1;
	REQUIRE(send_msg(a, &m) == 0, "AGENT_REGISTERED not sent");
	return reg;
}

static struct rmp_wire_progress expect_progress(struct conn *a, uint64_t request)
{
	struct rmp_wire_msg m;
	int rc = recv_msg(a, &m, WAIT_MS);
	REQUIRE(rc == 0 && m.type == RMP_MSG_PROGRESS, "no PROGRESS for request %" PRIu64 " (%d)",
		request, rc);
	printf("PROGRESS request %" PRIu64 " donor %u state %u pid %u error %u: %s\n",
	       m.u.progress.request_id, m.u.progress.donor_id, m.u.progress.state,
	       m.u.progress.pid, m.u.progress.error, m.u.progress.text);
	CHECK(m.u.progress.request_id == request, "PROGRESS for request %" PRIu64 ", want %" PRIu64,
	      m.u.progress.request_id, request);
	return m.u.progress;
}

static void send_spawn(struct conn *a, uint64_t request, uint32_t donor, uint64_t len)
{
	struct rmp_wire_msg m = {.type = RMP_MSG_SPAWN};
	m.u.spawn = (struct rmp_wire_spawn){.request_id = request, .pool_id = 1, .donor_id = donor,
					    .region_len = len, .segment_size = 1u << 20};
	REQUIRE(send_msg(a, &m) == 0, "SPAWN not sent");
}

/* A spawned donor's own connection: handshake, DONOR_REGISTER, ACCEPTED. */
static struct rmp_wire_donor_register donor_handshake(int lfd, struct conn *d, uint32_t donor,
						      pid_t pid)
{
	struct rmp_wire_msg m;
	REQUIRE(accept_conn(lfd, d, WAIT_MS) == 0, "donor %u did not connect", donor);
	REQUIRE(handshake(d) == RMP_ROLE_DONOR, "donor handshake failed");
	REQUIRE(recv_msg(d, &m, WAIT_MS) == 0 && m.type == RMP_MSG_DONOR_REGISTER,
		"no DONOR_REGISTER");
	struct rmp_wire_donor_register r = m.u.donor_register;
	printf("DONOR_REGISTER donor %u pool %u pid %u region %#" PRIx64 "+%" PRIu64
	       " rkey %u at %s:%u\n",
	       r.donor_id, r.pool_id, r.pid, r.region.addr, r.region.len, r.region.rkey,
	       r.endpoint.host, r.endpoint.port);
	CHECK(r.donor_id == donor && r.pool_id == 1 && r.pid == (uint32_t)pid &&
		      r.region.len == REGION && r.endpoint.port != 0,
	      "DONOR_REGISTER does not match the SPAWN");
	m.type = RMP_MSG_DONOR_ACCEPTED;
	m.u.donor_accepted = (struct rmp_wire_donor_accepted){.donor_id = donor, .pool_id = 1};
	REQUIRE(send_msg(d, &m) == 0, "DONOR_ACCEPTED not sent");
	return r;
}

static uint64_t limit_of(pid_t pid)
{
	char path[64], line[256];
	uint64_t soft = 0;
	snprintf(path, sizeof(path), "/proc/%ld/limits", (long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Max address space %" SCNu64, &soft) == 1)
			break;
	fclose(f);
	return soft;
}

static bool gone_within(pid_t pid, int ms)
{
	for (int i = 0; i < ms / 50; i++) {
		if (kill(pid, 0) && errno == ESRCH)
			return true;
		usleep(50000);
	}
	return false;
}

static void use_region(const struct rmp_wire_donor_register *r)
{
	struct rmp_wire_token t = {.kind = RMP_TOKEN_DONOR, .target_id = r->donor_id,
				   .client_id = 9};
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	t.expires_ms = (uint64_t)ts.tv_sec * 1000 + 60000;
	uint8_t tok[RMP_AUTH_TOKEN_LEN];
	REQUIRE(rmp_auth_token_make(key, &t, tok) == 0, "token");
	struct rmp_rdma_opts o = {.timeout_ms = 5000, .wait = RMP_RDMA_WAIT_EVENT};
	rmp_rdma_conn *c;
	int rc = rmp_rdma_connect(r->endpoint.host, r->endpoint.port, tok, sizeof(tok), &o, &c);
	CHECK(rc == 0, "RDMA connect to the donor: %s", strerror(-rc));
	if (rc)
		return;
	static uint8_t buf[8192];
	struct ibv_mr *mr = ibv_reg_mr(rmp_rdma_conn_pd(c), buf, sizeof(buf), IBV_ACCESS_LOCAL_WRITE);
	CHECK(mr != NULL, "ibv_reg_mr");
	if (mr) {
		memset(buf, 0xab, 4096);
		struct rmp_rdma_op ops[2] = {
			{.kind = RMP_RDMA_WRITE, .local = buf, .lkey = mr->lkey, .len = 4096,
			 .raddr = r->region.addr + r->region.len - 4096, .rkey = r->region.rkey},
			{.kind = RMP_RDMA_READ, .local = buf + 4096, .lkey = mr->lkey, .len = 4096,
			 .raddr = r->region.addr + r->region.len - 4096, .rkey = r->region.rkey},
		};
		rc = rmp_rdma_exec(c, ops, 2);
		CHECK(rc == 0 && memcmp(buf, buf + 4096, 4096) == 0, "donor region: rc %d", rc);
		ibv_dereg_mr(mr);
	}
	rmp_rdma_close(c);
	printf("RDMA write+read on donor %u: ok\n", r->donor_id);
}

int main(int argc, char **argv)
{
	char err[160];
	setvbuf(stdout, NULL, _IOLBF, 0);
	check_init(NULL, finish, 0); /* a failed REQUIRE ends the script there */
	if (argc != 2) {
		fprintf(stderr, "usage: donor_agent PATH/TO/rmpool-donor\n");
		return 2;
	}
	if (rmp_auth_key_create(NULL, &key, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 8) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl)) {
		perror("listen");
		return 2;
	}
	char coord[32], limit[32], budget[32];
	snprintf(coord, sizeof(coord), "127.0.0.1:%u", ntohs(sin.sin_port));
	snprintf(limit, sizeof(limit), "%llu", PROCESS_LIMIT);
	snprintf(budget, sizeof(budget), "%llu", BUDGET);
	agent_pid = fork();
	if (agent_pid == 0) {
		execl(argv[1], argv[1], "--agent", "--coordinator", coord, "--budget", budget,
		      "--process-limit", limit, "--term-grace", "3s", "--reconnect-max", "2s",
		      "--log-level", "debug", (char *)NULL);
		_exit(127);
	}

	/* Registration. */
	struct conn *a = calloc(1, sizeof(*a)), *d5 = calloc(1, sizeof(*d5)),
		    *d7 = calloc(1, sizeof(*d7));
	struct rmp_wire_agent_register reg = agent_handshake(lfd, a);
	printf("AGENT_REGISTER host %s budget %" PRIu64 " limit %" PRIu64 " footprint %" PRIu64 "\n",
	       reg.host, reg.budget, reg.process_limit, reg.donor_footprint);
	CHECK(reg.budget == BUDGET && reg.process_limit == PROCESS_LIMIT, "budget/limit differ");
	CHECK(reg.donor_footprint > (1u << 20) && reg.donor_footprint < PROCESS_LIMIT,
	      "footprint %" PRIu64 " is implausible", reg.donor_footprint);
	CHECK(reg.host[0] != '\0', "no host name");

	/* Spawn donor 5; it registers; its limit; its memory over RDMA. */
	send_spawn(a, 1, 5, REGION);
	struct rmp_wire_progress p = expect_progress(a, 1);
	REQUIRE(p.state == RMP_PROGRESS_SPAWNED && p.pid > 0, "donor 5 not spawned");
	pid_t pid5 = (pid_t)p.pid;
	struct rmp_wire_donor_register r5 = donor_handshake(lfd, d5, 5, pid5);
	CHECK(limit_of(pid5) == PROCESS_LIMIT, "donor 5 runs with RLIMIT_AS %" PRIu64,
	      limit_of(pid5));
	use_region(&r5);

	/* Past the budget: refused with the numbers. */
	send_spawn(a, 2, 6, BUDGET);
	p = expect_progress(a, 2);
	CHECK(p.state == RMP_PROGRESS_FAILED && p.error == ENOSPC && strstr(p.text, "budget"),
	      "over-budget SPAWN: state %u error %u \"%s\"", p.state, p.error, p.text);

	/* TERMINATE: the donor leaves, closes, is reported and reaped. */
	struct rmp_wire_msg m = {.type = RMP_MSG_TERMINATE};
	m.u.terminate = (struct rmp_wire_terminate){.request_id = 3, .donor_id = 5};
	REQUIRE(send_msg(a, &m) == 0, "TERMINATE not sent");
	p = expect_progress(a, 3);
	CHECK(p.state == RMP_PROGRESS_EXITED && p.donor_id == 5 && p.error == 0,
	      "TERMINATE: state %u error %u \"%s\"", p.state, p.error, p.text);
	CHECK(recv_msg(d5, &m, WAIT_MS) == -ECONNRESET, "donor 5's connection stayed open");
	CHECK(gone_within(pid5, 5000), "donor 5 (pid %ld) still exists", (long)pid5);

	/* Coordinator loss: donor 7 must go, the agent must come back. */
	send_spawn(a, 4, 7, REGION);
	p = expect_progress(a, 4);
	REQUIRE(p.state == RMP_PROGRESS_SPAWNED, "donor 7 not spawned");
	pid_t pid7 = (pid_t)p.pid;
	(void)donor_handshake(lfd, d7, 7, pid7);
	close(a->fd);
	printf("closed the agent's connection\n");
	CHECK(recv_msg(d7, &m, WAIT_MS) == -ECONNRESET, "donor 7 outlived the agent's link");
	CHECK(gone_within(pid7, 10000), "donor 7 (pid %ld) still exists", (long)pid7);
	memset(a, 0, sizeof(*a));
	reg = agent_handshake(lfd, a);
	printf("the agent came back: AGENT_REGISTER host %s\n", reg.host);

	/* SIGTERM: the agent leaves cleanly. */
	kill(agent_pid, SIGTERM);
	int st = 0;
	pid_t w = 0;
	for (int i = 0; i < 200 && w == 0; i++) {
		w = waitpid(agent_pid, &st, WNOHANG);
		if (w == 0)
			usleep(50000);
	}
	CHECK(w == agent_pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "agent after SIGTERM: waitpid %ld status %#x", (long)w, (unsigned)st);
	if (w == agent_pid)
		agent_pid = 0;
	CHECK(recv_msg(a, &m, 5000) == -ECONNRESET, "the agent's connection stayed open");
	close(lfd);
	rmp_auth_key_destroy(key);
	reached_end = true;
	finish();
	return 0;
}
