/* server_itest.c - rmpool-server over loopback TCP, no RDMA needed.
 *
 *   server_itest SERVER_BINARY CASE
 *
 * Each case starts its own server (ephemeral ports, a test secret,
 * stderr to a log file that is printed when the case fails), talks to it
 * like a peer would, with the real codec (common/wire) and handshake
 * (common/auth), and stops it with SIGTERM, which must exit 0. The
 * point of most cases: one bad peer loses its connection, and the next
 * good peer is served as if nothing happened.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "check.h"
#include "wire.h"

#define SECRET "integration-test-secret-0123456789"
#define IO_TIMEOUT_MS 5000

static const char *server_bin;
static char log_path[256];
static pid_t server_pid;
static int ctl_port, http_port;

static void dump_log(void)
{
	FILE *f = fopen(log_path, "r");
	char line[512];

	if (!f)
		return;
	fprintf(stderr, "---- server log (%s) ----\n", log_path);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fprintf(stderr, "---- end of server log ----\n");
	fclose(f);
}

/* check.h's fatal hook: the server goes, and its log tells why. */
static void kill_server_dump_log(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		dump_log();
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	REQUIRE(fd >= 0, "socket");
	REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind");
	REQUIRE(getsockname(fd, (struct sockaddr *)&a, &len) == 0, "getsockname");
	close(fd);
	return ntohs(a.sin_port);
}

static int try_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int connect_ctl(void)
{
	int fd = try_connect(ctl_port);
	REQUIRE(fd >= 0, "connect to the server: %s", strerror(errno));
	return fd;
}

/* Runs the server binary to completion with the given arguments; its
 * stdout and stderr go to out (cap bytes). Returns the exit status. */
static int run_to_exit(char *const argv[], bool with_secret, char *out, size_t cap)
{
	int pfd[2];

	REQUIRE(pipe(pfd) == 0, "pipe");
	pid_t pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		if (with_secret)
			setenv(RMP_AUTH_SECRET_ENV, SECRET, 1);
		else
			unsetenv(RMP_AUTH_SECRET_ENV);
		execv(server_bin, argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t used = 0;
	ssize_t n;
	while ((n = read(pfd[0], out + used, cap - 1 - used)) > 0)
		used += (size_t)n;
	out[used] = '\0';
	close(pfd[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Starts the server with ephemeral ports and extra arguments (NULL-ended). */
static void start_server(const char *extra, ...)
{
	const char *argv[64];
	char listen[64], http[16];
	int n = 0;
	va_list ap;

	ctl_port = free_port();
	/* Each probe binds port 0 and closes it: two probes may get the same
	 * port back from the kernel. */
	do
		http_port = free_port();
	while (http_port == ctl_port);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", ctl_port);
	snprintf(http, sizeof(http), "%d", http_port);
	snprintf(log_path, sizeof(log_path), "server_itest.%d.log", (int)getpid());
	argv[n++] = server_bin;
	argv[n++] = "--listen";
	argv[n++] = listen;
	argv[n++] = "--http-port";
	argv[n++] = http;
	argv[n++] = "--log-level";
	argv[n++] = "debug";
	va_start(ap, extra);
	for (const char *a = extra; a && n < 62; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;

	server_pid = fork();
	REQUIRE(server_pid >= 0, "fork");
	if (server_pid == 0) {
		int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		setenv(RMP_AUTH_SECRET_ENV, SECRET, 1);
		execv(server_bin, (char *const *)argv);
		_exit(127);
	}
	uint64_t until = now_ms() + 10000;
	for (;;) {
		int fd = try_connect(ctl_port);
		if (fd >= 0) {
			close(fd);
			break;
		}
		int st;
		REQUIRE(waitpid(server_pid, &st, WNOHANG) == 0, "the server exited at start-up");
		REQUIRE(now_ms() < until, "the server did not listen within 10 s");
		usleep(20000);
	}
}

static void stop_server(void)
{
	int st;

	REQUIRE(kill(server_pid, SIGTERM) == 0, "kill");
	uint64_t until = now_ms() + 10000;
	while (waitpid(server_pid, &st, WNOHANG) == 0) {
		REQUIRE(now_ms() < until, "the server did not stop within 10 s of SIGTERM");
		usleep(20000);
	}
	server_pid = 0;
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		dump_log();
		check_die("the server did not exit 0 on SIGTERM (status 0x%x)", st);
	}
	if (!getenv("ITEST_KEEP_LOG"))
		unlink(log_path);
}

/* ---- frames ---- */

static void send_bytes(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		REQUIRE(n > 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

static void send_msg(int fd, const struct rmp_wire_msg *m)
{
	size_t len = 0;

	REQUIRE(rmp_wire_encode(m, NULL, 0, &len) == -ENOSPC, "size query");
	uint8_t *buf = malloc(len);
	REQUIRE(buf && rmp_wire_encode(m, buf, len, &len) == 0, "encode");
	send_bytes(fd, buf, len);
	free(buf);
}

/* Reads exactly len bytes; returns how many arrived before EOF/timeout. */
static size_t read_full(int fd, void *buf, size_t len, int timeout_ms)
{
	uint8_t *p = buf;
	size_t got = 0;
	uint64_t until = now_ms() + (uint64_t)timeout_ms;

	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = (int64_t)(until - now_ms());
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		ssize_t n = recv(fd, p + got, len - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static void recv_msg(int fd, struct rmp_wire_msg *m)
{
	uint8_t hdr[RMP_WIRE_HDR_LEN];
	struct rmp_wire_err err = { { 0 } };

	REQUIRE(read_full(fd, hdr, sizeof(hdr), IO_TIMEOUT_MS) == sizeof(hdr),
	      "no reply header within %d ms", IO_TIMEOUT_MS);
	uint32_t plen = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 | (uint32_t)hdr[6] << 8 |
			hdr[7];
	REQUIRE(plen <= RMP_WIRE_MAX_FRAME, "reply too long");
	uint8_t *buf = malloc(sizeof(hdr) + plen);
	REQUIRE(buf, "malloc");
	memcpy(buf, hdr, sizeof(hdr));
	REQUIRE(read_full(fd, buf + sizeof(hdr), plen, IO_TIMEOUT_MS) == plen, "short reply");
	int rc = rmp_wire_decode_buf(buf, sizeof(hdr) + plen, RMP_WIRE_MAX_FRAME, m, &err);
	REQUIRE(rc == 0, "cannot decode the reply: %s", err.text);
	free(buf);
}

/* True when the server closed the connection within the timeout; the
 * bytes it sent first (if any) go to *got. */
static bool closed_by_server(int fd, size_t *got)
{
	uint8_t buf[512];
	uint64_t until = now_ms() + IO_TIMEOUT_MS;

	*got = 0;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = (int64_t)(until - now_ms());
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			return false;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false;
		*got += (size_t)n;
	}
}

/* The whole handshake. secret NULL: send a forged proof. Returns the
 * session id, or 0 when the server refused (its ERROR in *refusal). */
static uint64_t handshake(int fd, uint8_t role, const char *secret, struct rmp_wire_msg *refusal)
{
	struct rmp_auth_handshake hs = { 0 };
	struct rmp_wire_msg m = { .type = RMP_MSG_HELLO }, r;
	rmp_auth_key *k = NULL;
	char err[128];

	REQUIRE(rmp_auth_peer_hello(&hs, role, "itest", &m.u.hello) == 0, "hello");
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_CHALLENGE, "expected CHALLENGE, got %s",
	      rmp_wire_type_name(r.type));
	m = (struct rmp_wire_msg){ .type = RMP_MSG_AUTH_PROOF };
	if (secret) {
		REQUIRE(rmp_auth_key_create(secret, &k, err, sizeof(err)) == 0, "%s", err);
		int rc = rmp_auth_peer_prove(k, &hs, &r.u.challenge, &m.u.auth_proof);
		rmp_auth_key_destroy(k);
		REQUIRE(rc == 0, "the server's proof does not verify with our secret");
	} else {
		memset(m.u.auth_proof.proof, 0x5a, sizeof(m.u.auth_proof.proof));
	}
	send_msg(fd, &m);
	recv_msg(fd, &r);
	if (r.type == RMP_MSG_AUTH_OK)
		return r.u.auth_ok.session_id;
	REQUIRE(r.type == RMP_MSG_ERROR, "expected AUTH_OK or ERROR, got %s",
	      rmp_wire_type_name(r.type));
	if (refusal)
		*refusal = r;
	return 0;
}

static int client(void)
{
	int fd = connect_ctl();
	REQUIRE(handshake(fd, RMP_ROLE_CLIENT, SECRET, NULL) != 0, "authentication refused");
	return fd;
}

static void check_status(int fd, uint32_t pools, uint32_t hosts)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_STATUS_REQUEST }, r;

	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_STATUS_REPLY, "expected STATUS_REPLY, got %s",
	      rmp_wire_type_name(r.type));
	REQUIRE(r.u.status.n_pools == pools, "pools %u", r.u.status.n_pools);
	REQUIRE(r.u.status.n_hosts == hosts, "hosts %u", r.u.status.n_hosts);
	REQUIRE(r.u.status.clients >= 1, "clients %u", r.u.status.clients);
	rmp_wire_msg_release(&r);
}

/* A good client is served after whatever happened before. */
static void good_client_served(void)
{
	int fd = client();
	check_status(fd, 0, 0);
	close(fd);
}

/* ---- HTTP ---- */

static int http_get(const char *path, char *body, size_t cap)
{
	int fd = try_connect(http_port);
	char req[256], resp[16384];

	REQUIRE(fd >= 0, "connect to the HTTP port");
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
	send_bytes(fd, req, strlen(req));
	size_t got = read_full(fd, resp, sizeof(resp) - 1, IO_TIMEOUT_MS);
	close(fd);
	resp[got] = '\0';
	int status = 0;
	REQUIRE(sscanf(resp, "HTTP/1.%*d %d", &status) == 1, "no HTTP status line");
	const char *b = strstr(resp, "\r\n\r\n");
	snprintf(body, cap, "%s", b ? b + 4 : "");
	return status;
}

static uint64_t metric(const char *name)
{
	char body[16384], key[128];

	REQUIRE(http_get("/metrics", body, sizeof(body)) == 200, "GET /metrics");
	snprintf(key, sizeof(key), "\n%s ", name);
	const char *p = strstr(body, key);
	REQUIRE(p, "metric %s missing", name);
	return strtoull(p + strlen(key), NULL, 10);
}

/* ---- cases ---- */

static void case_help(void)
{
	char out[16384];
	char *argv[] = { (char *)server_bin, "--help", NULL };

	REQUIRE(run_to_exit(argv, false, out, sizeof(out)) == 0, "--help exits 0");
	const char *want[] = { "--listen",	   "0.0.0.0:7400",	 "--secret-file",
			       "--http-addr",	   "127.0.0.1",		 "--http-port",
			       "7401",		   "--rdma-addr",	 "--rdma-port",
			       "7402",		   "--segment-size",	 "4M",
			       "--min-block",	   "4K",		 "--self-contribution",
			       "--lease-timeout",  "10s",		 "--provision-timeout",
			       "--handshake-timeout", "--terminate-timeout", "--log-level",
			       "--config",	   "default:" };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		REQUIRE(strstr(out, want[i]), "--help does not mention %s:\n%s", want[i], out);
}

static void expect_refused(const char *name, const char *value, const char *mention)
{
	char out[4096];
	char *argv[] = { (char *)server_bin, (char *)name, (char *)value, NULL };

	int st = run_to_exit(argv, true, out, sizeof(out));
	REQUIRE(st == 2, "%s %s: exit status %d, want 2 (output: %s)", name, value, st, out);
	REQUIRE(strstr(out, mention), "%s %s: the message does not name %s: %s", name, value,
	      mention, out);
	REQUIRE(strstr(out, SECRET) == NULL, "the secret was printed");
}

static void case_bad_flags(void)
{
	expect_refused("--lease-timeout", "0s", "lease-timeout");
	expect_refused("--segment-size", "5M", "segment-size");
	expect_refused("--min-block", "8M", "min-block");
	expect_refused("--http-port", "70000", "http-port");
	expect_refused("--listen", "nowhere", "listen");
	expect_refused("--log-level", "loud", "log-level");
	expect_refused("--no-such-option", "1", "no-such-option");

	/* The config file goes through the same table. */
	char path[64], out[4096];
	snprintf(path, sizeof(path), "server_itest.%d.conf", (int)getpid());
	FILE *f = fopen(path, "w");
	REQUIRE(f, "cannot write %s", path);
	fprintf(f, "# test\nlisten = 127.0.0.1:7400\nprovision-timeout = 0s\n");
	fclose(f);
	char *argv[] = { (char *)server_bin, "--config", path, NULL };
	int st = run_to_exit(argv, true, out, sizeof(out));
	unlink(path);
	REQUIRE(st == 2 && strstr(out, "provision-timeout") && strstr(out, ":3"),
	      "config file error (status %d): %s", st, out);

	/* No secret at all, and a secret that is too short. */
	char *bare[] = { (char *)server_bin, "--listen", "127.0.0.1:1", NULL };
	st = run_to_exit(bare, false, out, sizeof(out));
	REQUIRE(st == 2 && strstr(out, RMP_AUTH_SECRET_ENV), "no secret (status %d): %s", st, out);
	snprintf(path, sizeof(path), "server_itest.%d.secret", (int)getpid());
	f = fopen(path, "w");
	REQUIRE(f, "cannot write %s", path);
	fprintf(f, "short\n");
	fclose(f);
	chmod(path, 0600);
	char *shortsec[] = { (char *)server_bin, "--secret-file", path, NULL };
	st = run_to_exit(shortsec, false, out, sizeof(out));
	unlink(path);
	REQUIRE(st == 2 && strstr(out, "secret-file") && !strstr(out, "short\n"),
	      "short secret (status %d): %s", st, out);
}

static void case_garbage(void)
{
	size_t got;

	start_server(NULL);
	int fd = connect_ctl();
	const char junk[] = "GET / HTTP/1.0\r\n\r\n";
	send_bytes(fd, junk, sizeof(junk) - 1);
	REQUIRE(closed_by_server(fd, &got), "garbage did not close the connection");
	REQUIRE(got == 0, "the server answered garbage with %zu bytes", got);
	close(fd);
	good_client_served();
	REQUIRE(metric("rmpool_frames_rejected_total") >= 1, "rejected frame not counted");
	stop_server();
}

static void put_header(uint8_t *h, uint8_t type, uint32_t len)
{
	h[0] = 'R';
	h[1] = 'M';
	h[2] = RMP_WIRE_VERSION;
	h[3] = type;
	h[4] = (uint8_t)(len >> 24);
	h[5] = (uint8_t)(len >> 16);
	h[6] = (uint8_t)(len >> 8);
	h[7] = (uint8_t)len;
}

static void case_oversize(void)
{
	uint8_t h[RMP_WIRE_HDR_LEN];
	size_t got;

	start_server(NULL);
	/* Before authentication: anything over 256 bytes, refused from the
	 * header alone (we never send the payload). */
	int fd = connect_ctl();
	put_header(h, RMP_MSG_HELLO, 4096);
	send_bytes(fd, h, sizeof(h));
	REQUIRE(closed_by_server(fd, &got), "an oversized HELLO did not close the connection");
	close(fd);
	/* After authentication: over the 1 MiB frame limit. */
	fd = client();
	put_header(h, RMP_MSG_STATUS_REQUEST, RMP_WIRE_MAX_FRAME);
	send_bytes(fd, h, sizeof(h));
	REQUIRE(closed_by_server(fd, &got), "an oversized frame did not close the connection");
	close(fd);
	good_client_served();
	REQUIRE(metric("rmpool_frames_rejected_total") >= 2, "oversized frames not counted");
	stop_server();
}

static void case_truncated(void)
{
	struct rmp_auth_handshake hs = { 0 };
	struct rmp_wire_msg m = { .type = RMP_MSG_HELLO };
	uint8_t buf[256];
	size_t len = 0, got;

	start_server(NULL);
	REQUIRE(rmp_auth_peer_hello(&hs, RMP_ROLE_CLIENT, "itest", &m.u.hello) == 0, "hello");
	REQUIRE(rmp_wire_encode(&m, buf, sizeof(buf), &len) == 0, "encode");
	int fd = connect_ctl();
	send_bytes(fd, buf, len / 2);
	shutdown(fd, SHUT_WR);
	REQUIRE(closed_by_server(fd, &got), "a truncated frame did not close the connection");
	REQUIRE(got == 0, "the server answered a truncated frame");
	close(fd);
	/* A payload that is cut short inside the frame (length says more
	 * fields than there are): malformed, refused. */
	fd = connect_ctl();
	put_header(buf, RMP_MSG_HELLO, 3);
	buf[8] = RMP_ROLE_CLIENT;
	buf[9] = 0;
	buf[10] = 0;
	send_bytes(fd, buf, 11);
	REQUIRE(closed_by_server(fd, &got), "a malformed HELLO did not close the connection");
	close(fd);
	good_client_served();
	REQUIRE(metric("rmpool_frames_rejected_total") >= 2, "truncated frames not counted");
	stop_server();
}

static void case_wrong_secret(void)
{
	struct rmp_wire_msg refusal;
	struct rmp_auth_handshake hs = { 0 };
	struct rmp_wire_msg m = { .type = RMP_MSG_HELLO }, r;
	rmp_auth_key *k = NULL;
	char err[128];
	size_t got;

	start_server(NULL);
	/* A peer with another secret finds out from the server's proof... */
	int fd = connect_ctl();
	REQUIRE(rmp_auth_peer_hello(&hs, RMP_ROLE_CLIENT, "itest", &m.u.hello) == 0, "hello");
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_CHALLENGE, "expected CHALLENGE");
	REQUIRE(rmp_auth_key_create("some-other-secret-of-length", &k, err, sizeof(err)) == 0, "%s",
	      err);
	REQUIRE(rmp_auth_peer_prove(k, &hs, &r.u.challenge, &m.u.auth_proof) == -EACCES,
	      "a wrong secret verified the server's proof");
	rmp_auth_key_destroy(k);
	close(fd);
	/* ...and a proof it makes up anyway is refused, with nothing in the
	 * refusal but "authentication failed". */
	fd = connect_ctl();
	REQUIRE(handshake(fd, RMP_ROLE_CLIENT, NULL, &refusal) == 0, "a forged proof was accepted");
	REQUIRE(refusal.u.error.code == EACCES, "code %u", refusal.u.error.code);
	REQUIRE(strcmp(refusal.u.error.text, "authentication failed") == 0, "refusal text \"%s\"",
	      refusal.u.error.text);
	REQUIRE(closed_by_server(fd, &got), "the connection stayed open after a failed proof");
	REQUIRE(got == 0, "the server sent %zu more bytes after refusing", got);
	close(fd);
	good_client_served();
	REQUIRE(metric("rmpool_auth_failures_total") >= 1, "auth failure not counted");
	stop_server();
}

static void case_preauth(void)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_STATUS_REQUEST };
	size_t got;

	start_server("--handshake-timeout", "300ms", NULL);
	/* STATUS (or a pool request) before the handshake: no reply at all. */
	int fd = connect_ctl();
	send_msg(fd, &m);
	REQUIRE(closed_by_server(fd, &got), "STATUS before auth did not close the connection");
	REQUIRE(got == 0, "the server answered an unauthenticated STATUS with %zu bytes", got);
	close(fd);
	fd = connect_ctl();
	m = (struct rmp_wire_msg){ .type = RMP_MSG_POOL_DESTROY };
	snprintf(m.u.pool_destroy.name, sizeof(m.u.pool_destroy.name), "anything");
	send_msg(fd, &m);
	REQUIRE(closed_by_server(fd, &got), "POOL_DESTROY before auth did not close");
	REQUIRE(got == 0, "the server answered an unauthenticated POOL_DESTROY");
	close(fd);
	/* Handshake timeout: a silent peer is dropped. */
	fd = connect_ctl();
	uint64_t t0 = now_ms();
	REQUIRE(closed_by_server(fd, &got), "a silent peer was not dropped");
	REQUIRE(now_ms() - t0 < 3000, "dropped after %" PRIu64 " ms, want ~300",
	      now_ms() - t0);
	close(fd);
	good_client_served();
	REQUIRE(metric("rmpool_auth_failures_total") >= 3, "unauthenticated frames not counted");
	stop_server();
}

static void case_status_and_http(void)
{
	char body[16384];

	start_server(NULL);
	int fd = client();
	check_status(fd, 0, 0);
	/* An agent registers; STATUS shows its host. */
	int ag = connect_ctl();
	REQUIRE(handshake(ag, RMP_ROLE_AGENT, SECRET, NULL), "agent auth");
	struct rmp_wire_msg m = { .type = RMP_MSG_AGENT_REGISTER }, r;
	snprintf(m.u.agent_register.host, sizeof(m.u.agent_register.host), "itest-host");
	m.u.agent_register.budget = UINT64_C(512) << 20;
	m.u.agent_register.process_limit = UINT64_C(64) << 20;
	m.u.agent_register.donor_footprint = UINT64_C(8) << 20;
	send_msg(ag, &m);
	recv_msg(ag, &r);
	REQUIRE(r.type == RMP_MSG_AGENT_REGISTERED, "got %s", rmp_wire_type_name(r.type));
	/* A client may not register as an agent. */
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_ERROR && r.u.error.code == EPERM, "role not enforced");
	check_status(fd, 0, 1);
	REQUIRE(metric("rmpool_agents") == 1, "agents gauge");

	REQUIRE(http_get("/healthz", body, sizeof(body)) == 200, "GET /healthz");
	REQUIRE(strncmp(body, "ok", 2) == 0, "/healthz body \"%s\"", body);
	REQUIRE(http_get("/metrics", body, sizeof(body)) == 200, "GET /metrics");
	const char *names[] = { "rmpool_pools",
				"rmpool_capacity_bytes",
				"rmpool_free_bytes",
				"rmpool_donors",
				"rmpool_clients",
				"rmpool_frames_rejected_total",
				"rmpool_auth_failures_total",
				"rmpool_leases_expired_total" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char help[96], type[96];
		snprintf(help, sizeof(help), "# HELP %s ", names[i]);
		snprintf(type, sizeof(type), "# TYPE %s ", names[i]);
		REQUIRE(strstr(body, help) && strstr(body, type), "%s lacks HELP/TYPE", names[i]);
	}
	REQUIRE(http_get("/nothing", body, sizeof(body)) == 404, "unknown path");
	REQUIRE(metric("rmpool_clients") == 1, "clients gauge");
	close(ag);
	close(fd);
	stop_server();
}

static bool host_has_rdma(void)
{
	FILE *p = popen("ls /sys/class/infiniband 2>/dev/null", "r");
	char line[64];
	bool any = p && fgets(line, sizeof(line), p);

	if (p)
		pclose(p);
	return any;
}

static void case_pool_open(void)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_POOL_OPEN }, r;

	start_server("--rdma-port", "0", NULL);
	int fd = client();
	snprintf(m.u.pool_open.name, sizeof(m.u.pool_open.name), "itest");
	m.u.pool_open.capacity = UINT64_C(64) << 20;
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_ERROR, "POOL_OPEN got %s", rmp_wire_type_name(r.type));
	REQUIRE(r.u.error.ref_type == RMP_MSG_POOL_OPEN, "ref_type %u", r.u.error.ref_type);
	fprintf(stderr, "POOL_OPEN refused: %s\n", r.u.error.text);
	if (!host_has_rdma()) {
		REQUIRE(r.u.error.code == ENODEV, "code %u", r.u.error.code);
		REQUIRE(strstr(r.u.error.text, "RDMA"), "unclear refusal: %s", r.u.error.text);
	}
	/* Attach to a pool that does not exist; a bad name; destroy of nothing. */
	m.u.pool_open.capacity = 0;
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_ERROR && r.u.error.code == ENOENT, "attach to nothing");
	snprintf(m.u.pool_open.name, sizeof(m.u.pool_open.name), "../etc");
	m.u.pool_open.capacity = 4096;
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_ERROR && r.u.error.code == EINVAL, "bad name accepted");
	m = (struct rmp_wire_msg){ .type = RMP_MSG_POOL_DESTROY };
	snprintf(m.u.pool_destroy.name, sizeof(m.u.pool_destroy.name), "itest");
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_ERROR && r.u.error.code == ENOENT, "destroy of nothing");
	m = (struct rmp_wire_msg){ .type = RMP_MSG_LEASE_RENEW };
	m.u.lease_renew.lease_id = 42;
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_ERROR && r.u.error.code == ENOENT, "renew of nothing");
	/* The connection still works after all those refusals. */
	check_status(fd, 0, 0);
	close(fd);
	stop_server();
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{ "help", case_help },
		{ "bad_flags", case_bad_flags },
		{ "garbage", case_garbage },
		{ "oversize", case_oversize },
		{ "truncated", case_truncated },
		{ "wrong_secret", case_wrong_secret },
		{ "preauth", case_preauth },
		{ "status_http", case_status_and_http },
		{ "pool_open", case_pool_open },
	};

	if (argc != 3) {
		fprintf(stderr, "usage: %s SERVER_BINARY CASE\n", argv[0]);
		return 2;
	}
	server_bin = argv[1];
	/* "file:line: cond", then "FAIL: why"; the server's log after it */
	check_init(NULL, kill_server_dump_log, CHECK_COND_LINE);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strcmp(argv[2], cases[i].name) == 0) {
			cases[i].fn();
			printf("ok: %s\n", cases[i].name);
			return 0;
		}
	}
	fprintf(stderr, "unknown case %s\n", argv[2]);
	return 2;
}
