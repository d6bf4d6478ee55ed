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
 *     process limit in a session of its own, and serves its region over
 *     RDMA to a DONOR token;
 *   - a SPAWN past the budget -> PROGRESS FAILED (ENOSPC) with numbers;
 *   - TERMINATE -> the donor exits, its connection closes, PROGRESS
 *     EXITED without error, the process is gone;
 *   - the agent's coordinator connection dropping -> its donor keeps
 *     serving, the agent comes back (reconnect, AGENT_REGISTER again);
 *   - the donor's own connection dropping (a coordinator restart) -> it
 *     keeps serving RDMA while away and presents the same DONOR_REGISTER
 *     again (timed); a coordinator of an older generation is refused
 *     (closed before DONOR_REGISTER); after a newer one accepted it, a
 *     token of the older generation is refused and one of the newer works;
 *     the loss and the return are logged once each;
 *   - SIGKILL of the agent (its pid only) -> the donor keeps serving and
 *     keeps its connection; a restarted agent adopts it (counts it: a
 *     SPAWN that would fit an empty budget is refused naming 1 donor in
 *     use) and terminates it through its pidfd (PROGRESS EXITED);
 *   - the agent's $NOTIFY_SOCKET is not passed on to its donors; SIGHUP
 *     to the agent and to a donor reloads (logged) and kills neither;
 *   - SIGTERM to the agent -> exit 0, its donor keeps running;
 *   - a standalone donor with --orphan-grace 3s re-registers with the id
 *     it was given, is refused, then finds nobody: it exits with status 3
 *     (orphaned) about 3 s after the loss, saying why.
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
#include <sys/prctl.h>
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
#define GRACE_S 3 /* the standalone donor's --orphan-grace */

static rmp_auth_key *key;
static const char *donor_bin, *log_path;
static char coord[32];
static uint64_t generation = 5; /* what AUTH_OK says */

static pid_t agent_pid;
static pid_t donors[8]; /* every donor pid seen, killed at the end */
static int n_donors;
static bool reached_end; /* a PASS needs the whole script to have run */

static void finish(void)
{
	if (!reached_end && !check_failures())
		check_count();
	if (agent_pid > 0) {
		kill(agent_pid, SIGKILL);
		waitpid(agent_pid, NULL, 0);
	}
	for (int i = 0; i < n_donors; i++)
		if (donors[i] > 0 && kill(donors[i], SIGKILL) == 0)
			waitpid(donors[i], NULL, 0);
	printf("%s: %d failure(s)\n", check_failures() ? "FAIL" : "PASS", check_failures());
	exit(check_failures() ? 1 : 0);
}

static void seen_donor(pid_t pid)
{
	if (n_donors < (int)(sizeof(donors) / sizeof(donors[0])))
		donors[n_donors++] = pid;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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
	m.u.auth_ok.generation = generation;
	if (send_msg(c, &m))
		return -EPIPE;
	c->authed = true;
	printf("handshake with %s (role %u, generation %" PRIu64 ")\n", hello.ident, hello.role,
	       generation);
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

static void send_terminate(struct conn *a, uint64_t request, uint32_t donor)
{
	struct rmp_wire_msg m = {.type = RMP_MSG_TERMINATE};
	m.u.terminate = (struct rmp_wire_terminate){.request_id = request, .donor_id = donor};
	REQUIRE(send_msg(a, &m) == 0, "TERMINATE not sent");
}

/* A donor's connection: handshake, DONOR_REGISTER. */
static struct rmp_wire_donor_register donor_hello(int lfd, struct conn *d, const char *who)
{
	struct rmp_wire_msg m;
	REQUIRE(accept_conn(lfd, d, WAIT_MS) == 0, "%s did not connect", who);
	REQUIRE(handshake(d) == RMP_ROLE_DONOR, "%s: donor handshake failed", who);
	REQUIRE(recv_msg(d, &m, WAIT_MS) == 0 && m.type == RMP_MSG_DONOR_REGISTER,
		"%s: no DONOR_REGISTER", who);
	struct rmp_wire_donor_register r = m.u.donor_register;
	printf("DONOR_REGISTER donor %u pool %u pid %u region %#" PRIx64 "+%" PRIu64
	       " rkey %u at %s:%u\n",
	       r.donor_id, r.pool_id, r.pid, r.region.addr, r.region.len, r.region.rkey,
	       r.endpoint.host, r.endpoint.port);
	return r;
}

static void donor_accept(struct conn *d, uint32_t donor, uint32_t pool)
{
	struct rmp_wire_msg m = {.type = RMP_MSG_DONOR_ACCEPTED};
	m.u.donor_accepted = (struct rmp_wire_donor_accepted){.donor_id = donor, .pool_id = pool};
	REQUIRE(send_msg(d, &m) == 0, "DONOR_ACCEPTED not sent");
}

/* A spawned donor's own connection: handshake, DONOR_REGISTER, ACCEPTED. */
static struct rmp_wire_donor_register donor_handshake(int lfd, struct conn *d, uint32_t donor,
						      pid_t pid)
{
	struct rmp_wire_donor_register r = donor_hello(lfd, d, "a spawned donor");
	CHECK(r.donor_id == donor && r.pool_id == 1 && r.pid == (uint32_t)pid &&
		      r.region.len == REGION && r.endpoint.port != 0,
	      "DONOR_REGISTER does not match the SPAWN");
	donor_accept(d, donor, 1);
	return r;
}

static bool same_register(const struct rmp_wire_donor_register *a,
			  const struct rmp_wire_donor_register *b)
{
	return a->donor_id == b->donor_id && a->pool_id == b->pool_id && a->pid == b->pid &&
	       a->region.addr == b->region.addr && a->region.len == b->region.len &&
	       a->region.rkey == b->region.rkey && a->endpoint.port == b->endpoint.port &&
	       strcmp(a->endpoint.host, b->endpoint.host) == 0;
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

/* Gone: reaped here (we are the subreaper of the agent's orphans) or
 * no longer there. */
static bool gone_within(pid_t pid, int ms)
{
	for (int i = 0; i < ms / 50; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid || (kill(pid, 0) && errno == ESRCH))
			return true;
		usleep(50000);
	}
	return false;
}

/* Running: not reaped here just now (waitpid answers only for our own
 * children: the agent's are not), there, and not a zombie. */
static bool alive(pid_t pid)
{
	char path[64], buf[256];
	if (waitpid(pid, NULL, WNOHANG) == pid || kill(pid, 0) != 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = '\0';
	const char *paren = strrchr(buf, ')'); /* "pid (comm) S ..." */
	return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

/* Lines of the shared log that hold s. */
static int log_count(const char *s)
{
	char line[2048];
	int n = 0;
	FILE *f = log_path ? fopen(log_path, "r") : NULL;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, s) != NULL;
	fclose(f);
	return n;
}

/* Waits until n lines of the log hold s. */
static bool wait_log(const char *s, int n, int ms)
{
	for (int i = 0; i < ms / 20; i++) {
		if (log_count(s) >= n)
			return true;
		usleep(20000);
	}
	return false;
}

/* RDMA write + read at the end of a donor's region with a token of
 * generation gen. 0, or the error of the connect or the operations. */
static int try_region(const struct rmp_wire_donor_register *r, uint16_t gen)
{
	struct rmp_wire_token t = {.kind = RMP_TOKEN_DONOR, .target_id = r->donor_id,
				   .client_id = 9, .generation = gen};
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	t.expires_ms = (uint64_t)ts.tv_sec * 1000 + 60000;
	uint8_t tok[RMP_AUTH_TOKEN_LEN];
	REQUIRE(rmp_auth_token_make(key, &t, tok) == 0, "token");
	struct rmp_rdma_opts o = {.timeout_ms = 5000, .wait = RMP_RDMA_WAIT_EVENT};
	rmp_rdma_conn *c;
	int rc = rmp_rdma_connect(r->endpoint.host, r->endpoint.port, tok, sizeof(tok), &o, &c);
	if (rc)
		return rc;
	static uint8_t buf[8192];
	struct ibv_mr *mr = ibv_reg_mr(rmp_rdma_conn_pd(c), buf, sizeof(buf), IBV_ACCESS_LOCAL_WRITE);
	REQUIRE(mr != NULL, "ibv_reg_mr");
	memset(buf, 0xa0 + (r->donor_id & 0xf), 4096);
	struct rmp_rdma_op ops[2] = {
		{.kind = RMP_RDMA_WRITE, .local = buf, .lkey = mr->lkey, .len = 4096,
		 .raddr = r->region.addr + r->region.len - 4096, .rkey = r->region.rkey},
		{.kind = RMP_RDMA_READ, .local = buf + 4096, .lkey = mr->lkey, .len = 4096,
		 .raddr = r->region.addr + r->region.len - 4096, .rkey = r->region.rkey},
	};
	rc = rmp_rdma_exec(c, ops, 2);
	if (rc == 0 && memcmp(buf, buf + 4096, 4096) != 0)
		rc = -EIO;
	ibv_dereg_mr(mr);
	rmp_rdma_close(c);
	return rc;
}

static void use_region(const struct rmp_wire_donor_register *r, const char *when)
{
	int rc = try_region(r, (uint16_t)generation);
	CHECK(rc == 0, "donor %u, %s: RDMA write+read: %s", r->donor_id, when, strerror(-rc));
	if (rc == 0)
		printf("RDMA write+read on donor %u (%s): ok\n", r->donor_id, when);
}

static pid_t start_agent(void)
{
	char limit[32], budget[32];
	snprintf(limit, sizeof(limit), "%llu", PROCESS_LIMIT);
	snprintf(budget, sizeof(budget), "%llu", BUDGET);
	pid_t pid = fork();
	if (pid == 0) {
		/* As under systemd (nobody listens: sd_notify fails quietly);
		 * the donors it starts must not inherit it. */
		setenv("NOTIFY_SOCKET", "/nonexistent/rmpool-notify", 1);
		execl(donor_bin, donor_bin, "--agent", "--coordinator", coord, "--budget", budget,
		      "--process-limit", limit, "--term-grace", "3s", "--reconnect-max", "2s",
		      "--log-level", "debug", (char *)NULL);
		_exit(127);
	}
	REQUIRE(pid > 0, "fork");
	return pid;
}

/* ---- the script, step by step ---- */

static int lfd;
static struct conn *a; /* the agent's connection */
static uint64_t footprint;

static void step_register(void)
{
	struct rmp_wire_agent_register reg = agent_handshake(lfd, a);
	printf("AGENT_REGISTER host %s budget %" PRIu64 " limit %" PRIu64 " footprint %" PRIu64 "\n",
	       reg.host, reg.budget, reg.process_limit, reg.donor_footprint);
	CHECK(reg.budget == BUDGET && reg.process_limit == PROCESS_LIMIT, "budget/limit differ");
	CHECK(reg.donor_footprint > (1u << 20) && reg.donor_footprint < PROCESS_LIMIT,
	      "footprint %" PRIu64 " is implausible", reg.donor_footprint);
	CHECK(reg.host[0] != '\0', "no host name");
	footprint = reg.donor_footprint;
}

/* Spawn donor 5, use it, refuse one past the budget, terminate 5. */
static void step_spawn_and_terminate(void)
{
	struct conn *d5 = calloc(1, sizeof(*d5));
	struct rmp_wire_msg m;

	send_spawn(a, 1, 5, REGION);
	struct rmp_wire_progress p = expect_progress(a, 1);
	REQUIRE(p.state == RMP_PROGRESS_SPAWNED && p.pid > 0, "donor 5 not spawned");
	pid_t pid5 = (pid_t)p.pid;
	seen_donor(pid5);
	struct rmp_wire_donor_register r5 = donor_handshake(lfd, d5, 5, pid5);
	CHECK(limit_of(pid5) == PROCESS_LIMIT, "donor 5 runs with RLIMIT_AS %" PRIu64,
	      limit_of(pid5));
	CHECK(getsid(pid5) == pid5 && getpgid(pid5) == pid5 && getpgid(pid5) != getpgid(agent_pid),
	      "donor 5 is not in a session of its own (sid %ld, pgid %ld, agent's pgid %ld)",
	      (long)getsid(pid5), (long)getpgid(pid5), (long)getpgid(agent_pid));
	use_region(&r5, "spawned");

	send_spawn(a, 2, 6, BUDGET);
	p = expect_progress(a, 2);
	CHECK(p.state == RMP_PROGRESS_FAILED && p.error == ENOSPC && strstr(p.text, "budget"),
	      "over-budget SPAWN: state %u error %u \"%s\"", p.state, p.error, p.text);

	send_terminate(a, 3, 5);
	p = expect_progress(a, 3);
	CHECK(p.state == RMP_PROGRESS_EXITED && p.donor_id == 5 && p.error == 0,
	      "TERMINATE: state %u error %u \"%s\"", p.state, p.error, p.text);
	CHECK(recv_msg(d5, &m, WAIT_MS) == -ECONNRESET, "donor 5's connection stayed open");
	CHECK(gone_within(pid5, 5000), "donor 5 (pid %ld) still exists", (long)pid5);
	close(d5->fd);
	free(d5);
}

/* The agent's link drops: donor 7 must stay, the agent must come back. */
static struct rmp_wire_donor_register step_agent_link_drop(struct conn *d7, pid_t *pid7)
{
	struct rmp_wire_msg m;

	send_spawn(a, 4, 7, REGION);
	struct rmp_wire_progress p = expect_progress(a, 4);
	REQUIRE(p.state == RMP_PROGRESS_SPAWNED, "donor 7 not spawned");
	*pid7 = (pid_t)p.pid;
	seen_donor(*pid7);
	struct rmp_wire_donor_register r7 = donor_handshake(lfd, d7, 7, *pid7);
	close(a->fd);
	printf("closed the agent's connection\n");
	CHECK(recv_msg(d7, &m, 2000) == -ETIMEDOUT, "donor 7's connection did not stay open");
	CHECK(alive(*pid7), "donor 7 (pid %ld) did not outlive the agent's link", (long)*pid7);
	use_region(&r7, "its agent's link down");
	struct rmp_wire_agent_register reg = agent_handshake(lfd, a);
	printf("the agent came back: AGENT_REGISTER host %s\n", reg.host);
	return r7;
}

/* Donor 7's own connection drops (its coordinator restarted): it serves
 * on, and comes back with the same DONOR_REGISTER; then once more, past
 * a coordinator of an older generation, to a newer one. */
static void step_donor_link_drop(struct conn *d7, const struct rmp_wire_donor_register *r7)
{
	struct rmp_wire_msg m;

	close(d7->fd);
	uint64_t t0 = now_ms();
	use_region(r7, "its coordinator away");
	struct rmp_wire_donor_register again = donor_hello(lfd, d7, "donor 7 (back)");
	uint64_t back_ms = now_ms() - t0;
	CHECK(same_register(&again, r7), "donor 7 came back with another DONOR_REGISTER");
	donor_accept(d7, 7, 1);
	printf("FIGURE donor re-registered %" PRIu64 " ms after its coordinator connection "
	       "closed (one RDMA write+read meanwhile)\n",
	       back_ms);

	close(d7->fd);
	generation = 4; /* a coordinator older than the one it knows */
	REQUIRE(accept_conn(lfd, d7, WAIT_MS) == 0, "donor 7 did not try again");
	REQUIRE(handshake(d7) == RMP_ROLE_DONOR, "donor 7: handshake failed");
	CHECK(recv_msg(d7, &m, WAIT_MS) == -ECONNRESET,
	      "donor 7 did not refuse a coordinator of an older generation");
	close(d7->fd);
	generation = 6;
	again = donor_hello(lfd, d7, "donor 7 (past the stale one)");
	CHECK(same_register(&again, r7), "donor 7 came back with another DONOR_REGISTER");
	donor_accept(d7, 7, 1);
	CHECK(wait_log("donor 7 of pool 1 registered again", 2, 10000),
	      "donor 7 does not say it is back");
	int rc = try_region(r7, 5);
	CHECK(rc != 0, "donor 7 accepted a token of generation 5 after seeing 6");
	use_region(r7, "generation 6");
	CHECK(log_count("donor 7 keeps serving its region") == 2,
	      "the losses are not logged once each: %d lines",
	      log_count("donor 7 keeps serving its region"));
	CHECK(log_count("donor 7 of pool 1 registered again") == 2,
	      "the returns are not logged once each: %d lines",
	      log_count("donor 7 of pool 1 registered again"));
	CHECK(log_count("older than generation 5") == 1, "the stale coordinator is not logged");
	CHECK(log_count("token is of coordinator generation 5") == 1,
	      "the stale token is not logged");
}

/* SIGKILL of the agent alone: donor 7 serves on; a new agent adopts it,
 * counts it, and terminates it. */
static void step_agent_killed(struct conn *d7, const struct rmp_wire_donor_register *r7,
			      pid_t pid7)
{
	struct rmp_wire_msg m;

	kill(agent_pid, SIGKILL);
	waitpid(agent_pid, NULL, 0);
	printf("SIGKILLed the agent (pid %ld)\n", (long)agent_pid);
	CHECK(recv_msg(d7, &m, 2000) == -ETIMEDOUT, "donor 7's connection closed with its agent");
	CHECK(alive(pid7), "donor 7 (pid %ld) died with its agent", (long)pid7);
	use_region(r7, "its agent killed");
	agent_pid = start_agent();
	close(a->fd);
	memset(a, 0, sizeof(*a));
	step_register();
	use_region(r7, "a new agent");
	CHECK(log_count("adopted donor 7 of pool 1") == 1, "the new agent did not adopt donor 7");
	/* Fits an empty budget exactly; not with donor 7 counted. */
	send_spawn(a, 10, 8, BUDGET - footprint);
	struct rmp_wire_progress p = expect_progress(a, 10);
	CHECK(p.state == RMP_PROGRESS_FAILED && p.error == ENOSPC &&
		      strstr(p.text, "in use by 1 donor(s)"),
	      "the new agent does not count donor 7: state %u error %u \"%s\"", p.state, p.error,
	      p.text);
	send_terminate(a, 11, 7);
	p = expect_progress(a, 11);
	CHECK(p.state == RMP_PROGRESS_EXITED && p.donor_id == 7 && p.error == 0 &&
		      strstr(p.text, "adopted"),
	      "TERMINATE of an adopted donor: state %u error %u \"%s\"", p.state, p.error, p.text);
	CHECK(recv_msg(d7, &m, WAIT_MS) == -ECONNRESET, "donor 7's connection stayed open");
	CHECK(gone_within(pid7, 5000), "donor 7 (pid %ld) still exists", (long)pid7);
}

/* Whether /proc/PID/environ holds a NAME=... entry. */
static bool env_has(pid_t pid, const char *name)
{
	char path[64], buf[65536];
	snprintf(path, sizeof(path), "/proc/%ld/environ", (long)pid);
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	size_t len = strlen(name);
	buf[n] = '\0';
	for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
		if (strncmp(buf + i, name, len) == 0 && buf[i + len] == '=')
			return true;
	}
	return false;
}

/* SIGHUP reloads and kills neither the agent nor its donor; then SIGTERM:
 * the agent leaves cleanly, its donor 9 stays. */
static void step_agent_sigterm(void)
{
	struct conn *d9 = calloc(1, sizeof(*d9));
	struct rmp_wire_msg m;

	send_spawn(a, 12, 9, REGION);
	struct rmp_wire_progress p = expect_progress(a, 12);
	REQUIRE(p.state == RMP_PROGRESS_SPAWNED, "donor 9 not spawned");
	pid_t pid9 = (pid_t)p.pid;
	seen_donor(pid9);
	struct rmp_wire_donor_register r9 = donor_handshake(lfd, d9, 9, pid9);
	CHECK(env_has(agent_pid, "NOTIFY_SOCKET") && !env_has(pid9, "NOTIFY_SOCKET"),
	      "NOTIFY_SOCKET: the agent's %s, donor 9's %s (want the agent's only)",
	      env_has(agent_pid, "NOTIFY_SOCKET") ? "set" : "unset",
	      env_has(pid9, "NOTIFY_SOCKET") ? "set" : "unset");
	kill(agent_pid, SIGHUP);
	kill(pid9, SIGHUP);
	CHECK(wait_log("SIGHUP: configuration reloaded; log-level debug -> debug", 2, 10000),
	      "SIGHUP: %d reload line(s) from the agent and donor 9, want 2",
	      log_count("SIGHUP: configuration reloaded"));
	CHECK(alive(agent_pid) && alive(pid9), "SIGHUP killed the agent (%s) or donor 9 (%s)",
	      alive(agent_pid) ? "alive" : "gone", alive(pid9) ? "alive" : "gone");
	use_region(&r9, "after SIGHUP");
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
	CHECK(log_count("other donor(s) keep serving") >= 1, "the agent's SIGTERM line is missing");
	CHECK(alive(pid9), "donor 9 died with its agent's SIGTERM");
	use_region(&r9, "its agent gone");
	kill(pid9, SIGTERM);
	CHECK(waitpid(pid9, &st, 0) == pid9 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "donor 9 after SIGTERM: status %#x", (unsigned)st);
	close(d9->fd);
	free(d9);
}

/* A standalone donor, --orphan-grace 3s, on a listener of its own. */
static void step_orphan(void)
{
	struct conn *d = calloc(1, sizeof(*d));
	struct rmp_wire_msg m;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	int l2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE(l2 >= 0 && bind(l2, (struct sockaddr *)&sin, sizeof(sin)) == 0 && listen(l2, 4) == 0 &&
			getsockname(l2, (struct sockaddr *)&sin, &sl) == 0,
		"second listener");
	char c2[32], grace[16];
	snprintf(c2, sizeof(c2), "127.0.0.1:%u", ntohs(sin.sin_port));
	snprintf(grace, sizeof(grace), "%ds", GRACE_S);
	pid_t pid = fork();
	if (pid == 0) {
		execl(donor_bin, donor_bin, "--coordinator", c2, "--size", "16M", "--orphan-grace",
		      grace, (char *)NULL);
		_exit(127);
	}
	seen_donor(pid);
	struct rmp_wire_donor_register r = donor_hello(l2, d, "the standalone donor");
	CHECK(r.donor_id == 0 && r.pool_id == 0, "a standalone donor registers as {0, 0}");
	donor_accept(d, 21, 0);
	close(d->fd);
	uint64_t t0 = now_ms();
	r = donor_hello(l2, d, "the standalone donor (back)");
	CHECK(r.donor_id == 21 && r.pool_id == 0 && r.pid == (uint32_t)pid,
	      "the standalone donor came back as {%u, %u}, not with the id it was given",
	      r.donor_id, r.pool_id);
	m.type = RMP_MSG_ERROR;
	m.u.error = (struct rmp_wire_error){.code = ENOENT, .ref_type = RMP_MSG_DONOR_REGISTER};
	snprintf(m.u.error.text, sizeof(m.u.error.text), "no donor 21 on record");
	REQUIRE(send_msg(d, &m) == 0, "ERROR not sent");
	CHECK(recv_msg(d, &m, WAIT_MS) == -ECONNRESET, "the refused donor kept the connection");
	close(d->fd);
	close(l2); /* nobody listens any more */
	int st = 0;
	pid_t w = 0;
	while (w == 0 && now_ms() - t0 < (GRACE_S + 20) * 1000u) {
		w = waitpid(pid, &st, WNOHANG);
		if (w == 0)
			usleep(20000);
	}
	uint64_t took = now_ms() - t0;
	CHECK(w == pid && WIFEXITED(st) && WEXITSTATUS(st) == 3,
	      "the orphan: waitpid %ld status %#x after %" PRIu64 " ms", (long)w, (unsigned)st,
	      took);
	CHECK(took + 100 >= GRACE_S * 1000u && took < GRACE_S * 1000u + 3000,
	      "the orphan left %" PRIu64 " ms after the loss, grace %d s", took, GRACE_S);
	CHECK(log_count("orphaned: no coordinator has accepted donor 21") == 1,
	      "the orphan does not say why it left");
	CHECK(log_count("no donor 21 on record") == 1, "the refusal is not logged once");
	printf("FIGURE orphan (--orphan-grace %ds) exited %" PRIu64 " ms after its loss\n",
	       GRACE_S, took);
	free(d);
}

int main(int argc, char **argv)
{
	char err[160];
	setvbuf(stdout, NULL, _IOLBF, 0);
	check_init(NULL, finish, 0); /* a failed REQUIRE ends the script there */
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: donor_agent PATH/TO/rmpool-donor [LOG]\n");
		return 2;
	}
	donor_bin = argv[1];
	log_path = argc > 2 ? argv[2] : NULL;
	if (rmp_auth_key_create(NULL, &key, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* The agent's orphans (its donors, once it is killed) come to us. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 8) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl)) {
		perror("listen");
		return 2;
	}
	snprintf(coord, sizeof(coord), "127.0.0.1:%u", ntohs(sin.sin_port));
	agent_pid = start_agent();
	a = calloc(1, sizeof(*a));
	struct conn *d7 = calloc(1, sizeof(*d7));

	step_register();
	step_spawn_and_terminate();
	pid_t pid7;
	struct rmp_wire_donor_register r7 = step_agent_link_drop(d7, &pid7);
	step_donor_link_drop(d7, &r7);
	step_agent_killed(d7, &r7, pid7);
	step_agent_sigterm();
	step_orphan();

	close(lfd);
	rmp_auth_key_destroy(key);
	reached_end = true;
	finish();
	return 0;
}
