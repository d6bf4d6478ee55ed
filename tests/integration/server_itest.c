/* server_itest.c - rmpool-server over loopback TCP, no RDMA needed.
 *
 *   server_itest SERVER_BINARY CASE
 *
 * Each case starts its own server (ephemeral ports, a test secret, a
 * state directory of its own, stderr to a log file that is printed when
 * the case fails), talks to it like a peer would, with the real codec
 * (common/wire) and handshake (common/auth), and stops it with SIGTERM,
 * which must exit 0. The point of most cases: one bad peer loses its
 * connection, and the next good peer is served as if nothing happened.
 * The state cases write a state directory with the server's own store
 * (server/state.c) before a start, to see what a restarted coordinator
 * makes of pools, donors and leases on record - all but the RDMA
 * registration, which needs a device (tests/rdma/restart.sh).
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
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>

#include <sqlite3.h>

#include "adopt.h"
#include "auth.h"
#include "buddy.h"
#include "check.h"
#include "loopback.h"
#include "rmpool/version.h"
#include "state.h"
#include "wire.h"

#define SECRET "integration-test-secret-0123456789"
#define IO_TIMEOUT_MS 5000

static const char *server_bin;
static const char *cli_bin; /* the rmpool CLI, for the cases that run it */
static char log_path[256];
static pid_t server_pid;
static int ctl_port, http_port;
static char state_dir[256]; /* this case's --state-dir, made on first use */
static uint64_t last_generation; /* from the last handshake's AUTH_OK */
static uint64_t last_session;
/* What start_server gives the server: a --log-level flag (NULL: none,
 * the config file's level counts) and $NOTIFY_SOCKET (NULL: unset). */
static const char *start_log_level = "debug";
static const char *notify_path;
static bool start_waits = true; /* for the control port to accept */
/* An address no host has (TEST-NET-1, RFC 5737): the rdma_cm listener
 * can never bind it, whatever RDMA devices this host has. */
#define NO_SUCH_RDMA_ADDR "192.0.2.1"

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

/* How many lines of the server's log contain needle. */
static int log_count(const char *needle)
{
	FILE *f = fopen(log_path, "r");
	char line[2048];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
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
	uint16_t port = 0;
	int fd = loopback_socket(-1, &port);

	REQUIRE(fd >= 0, "loopback_socket: %s", strerror(-fd));
	close(fd);
	return port;
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

/* Runs argv[0] (the server binary, or rmpool) to completion; its stdout
 * and stderr go to out (cap bytes). Returns the exit status. */
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
		execv(argv[0], argv);
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

/* Runs a program to completion (no $RMPOOL_SECRET, no $RMPOOL_SECRET_FILE);
 * its stdout and stderr go to out. Returns the exit status. */
static int run_prog(char *const argv[], char *out, size_t cap)
{
	int pfd[2];

	REQUIRE(pipe(pfd) == 0, "pipe");
	pid_t pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		unsetenv(RMP_AUTH_SECRET_ENV);
		unsetenv("RMPOOL_SECRET_FILE");
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t used = 0;
	ssize_t n;
	while (used < cap - 1 && (n = read(pfd[0], out + used, cap - 1 - used)) > 0)
		used += (size_t)n;
	out[used] = '\0';
	close(pfd[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* This case's state directory, made (empty) on first use in the working
 * directory; removed when the case passes. */
static const char *the_state_dir(void)
{
	if (!state_dir[0]) {
		snprintf(state_dir, sizeof(state_dir), "server_itest.%d.state.XXXXXX", (int)getpid());
		REQUIRE(mkdtemp(state_dir), "mkdtemp: %s", strerror(errno));
	}
	return state_dir;
}

static void remove_state_dir(void)
{
	char cmd[300];

	if (!state_dir[0] || getenv("ITEST_KEEP_LOG"))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", state_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: cannot remove %s\n", state_dir);
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
	if (start_log_level) {
		argv[n++] = "--log-level";
		argv[n++] = start_log_level;
	}
	argv[n++] = "--state-dir";
	argv[n++] = the_state_dir();
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
		if (notify_path)
			setenv("NOTIFY_SOCKET", notify_path, 1);
		else
			unsetenv("NOTIFY_SOCKET");
		execv(server_bin, (char *const *)argv);
		_exit(127);
	}
	if (!start_waits)
		return;
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

/* Waits for the server to exit 0 (SIGTERM sent); its log goes when it did. */
static void wait_server_exit(void)
{
	int st;

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

static void stop_server(void)
{
	REQUIRE(kill(server_pid, SIGTERM) == 0, "kill");
	wait_server_exit();
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
	if (r.type == RMP_MSG_AUTH_OK) {
		last_generation = r.u.auth_ok.generation;
		last_session = r.u.auth_ok.session_id;
		return r.u.auth_ok.session_id;
	}
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
			       "--config",	   "default:",		 "--state-dir",
			       "/var/lib/rmpool",  "--donor-return-timeout", "30s" };
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
	/* ...and hangs up, as librmpool and the daemons do: a failure the
	 * operator sees (warning, with the peer) and the metric counts. */
	uint64_t until = now_ms() + 5000;
	while (metric("rmpool_auth_failures_total") == 0) {
		REQUIRE(now_ms() < until, "a peer hanging up after the challenge was not counted");
		usleep(20000);
	}
	REQUIRE(metric("rmpool_auth_failures_total") == 1, "counted %" PRIu64 " times",
		metric("rmpool_auth_failures_total"));
	REQUIRE(log_count("WARN: client 127.0.0.1:") == 1 &&
			log_count("(\"itest\"): authentication failed: it hung up after the challenge") == 1,
		"no warning naming the peer for the hang-up");
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
	REQUIRE(metric("rmpool_auth_failures_total") == 2, "the wrong proof not counted: %" PRIu64,
		metric("rmpool_auth_failures_total"));
	REQUIRE(log_count("authentication failed: wrong proof") == 1, "no warning for the wrong proof");
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

	start_server("--rdma-addr", NO_SUCH_RDMA_ADDR, NULL);
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

	/* The rdma_cm listener cannot bind NO_SUCH_RDMA_ADDR: unhealthy, and why. */
	REQUIRE(http_get("/healthz", body, sizeof(body)) == 503, "GET /healthz: %s", body);
	REQUIRE(strstr(body, "the rdma_cm listener is down") && strstr(body, NO_SUCH_RDMA_ADDR) &&
			strstr(body, "retrying"),
		"/healthz body \"%s\"", body);
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
	/* The agent's figures, relayed per host; the build's version. */
	const char *series[] = {
		"\nrmpool_build_info{version=\"" RMPOOL_VERSION "\"} 1\n",
		"\nrmpool_host_agent{host=\"itest-host\"} 1\n",
		"\nrmpool_host_budget_bytes{host=\"itest-host\"} 536870912\n",
		"\nrmpool_host_process_limit_bytes{host=\"itest-host\"} 67108864\n",
		"\nrmpool_host_donor_footprint_bytes{host=\"itest-host\"} 8388608\n",
		"\nrmpool_host_donors{host=\"itest-host\"} 0\n",
	};
	for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++)
		REQUIRE(strstr(body, series[i]), "/metrics lacks %s", series[i] + 1);
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

/* ---- the state directory ---- */

/* How run_on_state runs the server: as root; as uid 65534 (a directory
 * it may not write); as root in a mount namespace of its own where the
 * directory is a read-only bind mount (root writes anything else: the
 * read-only filesystem is what stops it then). */
enum run_as { AS_ROOT, AS_NOBODY, ON_READ_ONLY_MOUNT };

/* The child's side of ON_READ_ONLY_MOUNT; 0 or errno. The root is made
 * private first, or the bind mount would show in the parent's namespace
 * (a shared root, as systemd makes it) and outlive the test. */
static int read_only_mount(const char *dir)
{
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount(dir, dir, NULL, MS_BIND, NULL) != 0 ||
	    mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0)
		return errno;
	return 0;
}

/* Runs the server to its exit on dir, with its output in out. Returns
 * its exit status; 126 when the child could not become what how asks. */
static int run_on_state(const char *dir, enum run_as how, char *out, size_t cap)
{
	char listen[64];
	int pfd[2];

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
	char *argv[] = { (char *)server_bin, "--listen", listen, "--http-port", "0",
			 "--state-dir", (char *)dir, NULL };
	REQUIRE(pipe(pfd) == 0, "pipe");
	pid_t pid = fork();
	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		setenv(RMP_AUTH_SECRET_ENV, SECRET, 1);
		if (how == AS_NOBODY && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(126);
		int e = how == ON_READ_ONLY_MOUNT ? read_only_mount(dir) : 0;
		if (e) {
			printf("cannot make %s a read-only mount: %s\n", dir, strerror(e));
			_exit(126);
		}
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

/* The whole of a file (NULL, *len 0 when there is none). */
static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;

	*len = 0;
	if (!f)
		return NULL;
	REQUIRE(fseek(f, 0, SEEK_END) == 0, "fseek %s", path);
	long size = ftell(f);
	REQUIRE(size >= 0 && fseek(f, 0, SEEK_SET) == 0, "ftell %s", path);
	buf = malloc((size_t)size + 1);
	REQUIRE(buf && fread(buf, 1, (size_t)size, f) == (size_t)size, "read %s", path);
	fclose(f);
	*len = (size_t)size;
	return buf;
}

/* The state files of dir as they are: state.db and its WAL. */
struct state_files {
	uint8_t *db, *wal;
	size_t db_len, wal_len;
	bool had_db, had_wal;
};

static void state_files_read(const char *dir, struct state_files *f)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/state.db", dir);
	f->db = slurp(path, &f->db_len);
	f->had_db = access(path, F_OK) == 0;
	snprintf(path, sizeof(path), "%s/state.db-wal", dir);
	f->wal = slurp(path, &f->wal_len);
	f->had_wal = access(path, F_OK) == 0;
}

static bool same_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The server on dir must exit 1 with one line that names names (the
 * file, or the directory) and says mention, and leave state.db (and its
 * WAL, if there is one) byte for byte as they were. */
static void expect_state_refused(const char *dir, enum run_as how, const char *names,
				 const char *mention)
{
	char out[4096];
	struct state_files before, after;

	state_files_read(dir, &before);
	int st = run_on_state(dir, how, out, sizeof(out));
	REQUIRE(st != 126, "cannot run the server as this case needs (run as root): %s", out);
	REQUIRE(st == 1, "state %s: exit status %d, want 1 (output: %s)", dir, st, out);
	const char *line = strstr(out, "rmpool-server: --state-dir");
	REQUIRE(line, "state %s: no refusal line: %s", dir, out);
	size_t n = strcspn(line, "\n");
	char one[1024];
	snprintf(one, sizeof(one), "%.*s", (int)n, line);
	REQUIRE(strstr(one, names) && strstr(one, mention),
		"state %s: the refusal line does not name %s and say \"%s\": %s", dir, names, mention,
		one);
	state_files_read(dir, &after);
	REQUIRE(after.had_db == before.had_db &&
			same_bytes(after.db, after.db_len, before.db, before.db_len),
		"state %s: state.db was changed by the refusal (%zu bytes before, %zu after)", dir,
		before.db_len, after.db_len);
	/* SQLite's opening of a WAL file makes an empty WAL beside it if
	 * there was none: an empty one holds nothing. */
	REQUIRE(same_bytes(after.wal, after.wal_len, before.wal, before.wal_len) &&
			(after.had_wal == before.had_wal || after.wal_len == 0),
		"state %s: state.db-wal was changed by the refusal (%zu bytes before, %zu after)", dir,
		before.wal_len, after.wal_len);
	free(before.db), free(before.wal), free(after.db), free(after.wal);
	fprintf(stderr, "refused as it should: %s\n", one);
}

static void make_dir(char *dir, size_t cap, const char *what)
{
	snprintf(dir, cap, "server_itest.%d.%s.XXXXXX", (int)getpid(), what);
	REQUIRE(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static void write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	REQUIRE(f && fwrite(buf, 1, len, f) == len && fclose(f) == 0, "cannot write %s", path);
}

static uint64_t status_generation(int fd)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_STATUS_REQUEST }, r;

	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_STATUS_REPLY, "got %s", rmp_wire_type_name(r.type));
	uint64_t g = r.u.status.generation;
	rmp_wire_msg_release(&r);
	return g;
}

/* Generations rise across restarts and reach every peer (AUTH_OK, status,
 * metrics); session ids never repeat; a second coordinator on the same
 * directory is refused and names the first one's pid. */
static void case_state_dir(void)
{
	char out[4096];

	start_server(NULL);
	int fd = client();
	uint64_t g1 = last_generation, s1 = last_session;
	REQUIRE(g1 >= 1, "AUTH_OK generation %" PRIu64 ", want >= 1", g1);
	REQUIRE(status_generation(fd) == g1, "status and AUTH_OK disagree on the generation");
	REQUIRE(metric("rmpool_generation") == g1, "rmpool_generation %" PRIu64, metric("rmpool_generation"));
	int st = run_on_state(state_dir, AS_ROOT, out, sizeof(out));
	char holder[64];
	snprintf(holder, sizeof(holder), "(pid %d)", (int)server_pid);
	REQUIRE(st == 1 && strstr(out, "held by another rmpool-server") && strstr(out, holder),
		"a second coordinator on %s: status %d, output: %s", state_dir, st, out);
	close(fd);
	stop_server();
	start_server(NULL);
	fd = client();
	REQUIRE(last_generation == g1 + 1, "generation %" PRIu64 " after a restart, before %" PRIu64,
		last_generation, g1);
	REQUIRE(last_session > s1, "session id %" PRIu64 " after a restart, %" PRIu64 " before",
		last_session, s1);
	close(fd);
	stop_server();
}

/* A good state directory with a few pools on record (so that state.db
 * spans several pages), closed: the WAL is folded into state.db. */
static void make_good_state(char *dir, size_t cap, const char *what, char *db, size_t dbcap)
{
	struct rmp_state *st;
	uint64_t g;
	char err[512];

	make_dir(dir, cap, what);
	snprintf(db, dbcap, "%s/state.db", dir);
	REQUIRE(rmp_state_open_sqlite(dir, &st, &g, err, sizeof(err)) == 0, "%s", err);
	REQUIRE(rmp_state_begin(st) == 0, "%s", rmp_state_error(st));
	for (uint32_t id = 1; id <= 60; id++) {
		struct rmp_state_pool p = { .id = id, .state = 1, .capacity = 1u << 20,
					    .space_log2 = 20, .segment_log2 = 16,
					    .min_block_log2 = 12 };
		snprintf(p.name, sizeof(p.name), "pool-%u", id);
		snprintf(p.meta_shm, sizeof(p.meta_shm), "/rmpool-pool-%u", id);
		REQUIRE(rmp_state_pool_put(st, &p) == 0, "%s", rmp_state_error(st));
	}
	REQUIRE(rmp_state_commit(st) == 0, "%s", rmp_state_error(st));
	rmp_state_close(st);
}

static void sql(const char *db_path, const char *statements)
{
	sqlite3 *db;

	REQUIRE(sqlite3_open(db_path, &db) == SQLITE_OK, "sqlite3_open(%s)", db_path);
	REQUIRE(sqlite3_exec(db, statements, NULL, NULL, NULL) == SQLITE_OK, "%s: %s", statements,
		sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* A newer rmpool-server's change that is still in the WAL: a process
 * that commits it and dies before its connection closes (no checkpoint). */
static void commit_and_die(const char *db_path, const char *statements)
{
	pid_t pid = fork();

	REQUIRE(pid >= 0, "fork");
	if (pid == 0) {
		sqlite3 *db;
		if (sqlite3_open(db_path, &db) != SQLITE_OK ||
		    sqlite3_exec(db, statements, NULL, NULL, NULL) != SQLITE_OK)
			_exit(1);
		_exit(0);
	}
	int st;
	REQUIRE(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		"the writer of %s failed", db_path);
}

/* Bad state is refused before anything else starts (no RDMA device is
 * needed to see it): exit 1, one line naming the file (or directory) and
 * the reason, and the files left byte for byte as they were. */
static void case_state_refused(void)
{
	char dir[128], path[192];
	size_t len;

	make_dir(dir, sizeof(dir), "garbage");
	snprintf(path, sizeof(path), "%s/state.db", dir);
	static const char junk[] = "this is not a database at all, just some bytes to refuse.....";
	write_file(path, junk, sizeof(junk));
	expect_state_refused(dir, AS_ROOT, path, "not an rmpool state file");

	make_dir(dir, sizeof(dir), "empty");
	snprintf(path, sizeof(path), "%s/state.db", dir);
	write_file(path, "", 0);
	expect_state_refused(dir, AS_ROOT, path, "empty");

	/* Truncated: cut mid-page, and one byte short (which SQLite alone
	 * would read as a zero and then write over: a silent repair). */
	make_good_state(dir, sizeof(dir), "truncated", path, sizeof(path));
	uint8_t *whole = slurp(path, &len);
	REQUIRE(len > 3 * 4096, "state.db is %zu bytes, want several pages", len);
	write_file(path, whole, len / 2 + 1000);
	expect_state_refused(dir, AS_ROOT, path, "is truncated");
	write_file(path, whole, len - 1);
	expect_state_refused(dir, AS_ROOT, path, "is truncated");
	free(whole);

	make_dir(dir, sizeof(dir), "foreign");
	snprintf(path, sizeof(path), "%s/state.db", dir);
	sql(path, "CREATE TABLE t(x); INSERT INTO t VALUES(1);");
	expect_state_refused(dir, AS_ROOT, path, "another program (application_id 0,");
	make_dir(dir, sizeof(dir), "foreign");
	snprintf(path, sizeof(path), "%s/state.db", dir);
	sql(path, "PRAGMA application_id = 305419896; CREATE TABLE pools(x);");
	expect_state_refused(dir, AS_ROOT, path, "another program (application_id 0x12345678,");
	/* Our stamp, not our tables: nothing is created over it. */
	make_dir(dir, sizeof(dir), "foreign");
	snprintf(path, sizeof(path), "%s/state.db", dir);
	char stamp[128];
	snprintf(stamp, sizeof(stamp), "PRAGMA application_id = %d; PRAGMA user_version = %d; "
		 "CREATE TABLE t(x);", RMP_STATE_APP_ID, RMP_STATE_SCHEMA_VERSION);
	sql(path, stamp);
	expect_state_refused(dir, AS_ROOT, path, "not its schema (no table counters)");

	make_good_state(dir, sizeof(dir), "newer", path, sizeof(path));
	sql(path, "PRAGMA user_version = 99;");
	expect_state_refused(dir, AS_ROOT, path, "schema version 99, newer");
	/* The same, with the newer version in a WAL that nobody folded into
	 * state.db: the refusal must not fold it in either. */
	make_good_state(dir, sizeof(dir), "newer", path, sizeof(path));
	commit_and_die(path, "PRAGMA user_version = 99;");
	char wal[200];
	snprintf(wal, sizeof(wal), "%s-wal", path);
	struct stat sb;
	REQUIRE(stat(wal, &sb) == 0 && sb.st_size > 0, "no WAL beside %s", path);
	expect_state_refused(dir, AS_ROOT, path, "schema version 99, newer");

	/* A directory it cannot write: as a user the directory's mode stops,
	 * and as root on a read-only mount (a good state inside, which stays
	 * as it was: the generation is not raised). */
	make_dir(dir, sizeof(dir), "readonly");
	REQUIRE(chmod(dir, 0755) == 0, "chmod");
	expect_state_refused(dir, AS_NOBODY, dir, "not writable: Permission denied");
	make_good_state(dir, sizeof(dir), "readonly", path, sizeof(path));
	expect_state_refused(dir, ON_READ_ONLY_MOUNT, dir, "not writable: Read-only file system");
	if (!getenv("ITEST_KEEP_LOG"))
		REQUIRE(system("rm -rf server_itest.*.garbage.* server_itest.*.empty.* "
			       "server_itest.*.truncated.* server_itest.*.foreign.* "
			       "server_itest.*.newer.* server_itest.*.readonly.*") == 0, "cleanup");
}

/* ---- pools, donors and leases on record ---- */

#define REC_DONOR_ADDR UINT64_C(0x7f0000000000)
#define REC_SEG (UINT64_C(4) << 20)

static char shm_old[64], shm_new[64], shm_gone[64], pool_gone[40], pool_old[40];

static void put_pool(struct rmp_state *st, uint32_t id, uint32_t state, const char *name,
		     const char *shm, bool with_table)
{
	struct rmp_wire_segment segs[2] = { { 11, 7, REC_DONOR_ADDR },
					    { RMP_WIRE_SEG_RESERVED, 0, 0 } };
	struct rmp_wire_donor_entry dn[1] = { { .donor_id = 11, .endpoint = { "127.0.0.1", 9999 } } };
	struct rmp_wire_segtab t = { .version = 1, .capacity = REC_SEG, .space_log2 = 23,
				     .min_block_log2 = 12, .segment_log2 = 22,
				     .meta = { 0x1000, 4096, 5 },
				     .coordinator = { "127.0.0.1", 7402 },
				     .n_donors = 1, .donors = dn, .n_segments = 2, .segments = segs };
	struct rmp_state_pool p = { .id = id, .state = state, .capacity = REC_SEG, .space_log2 = 23,
				    .segment_log2 = 22, .min_block_log2 = 12, .meta_len = 4096,
				    .segtab_version = 1 };
	uint8_t *blob = NULL;

	snprintf(p.name, sizeof(p.name), "%s", name);
	snprintf(p.meta_shm, sizeof(p.meta_shm), "%s", shm);
	if (with_table) {
		REQUIRE(rmp_srv_adopt_segtab_encode(id, &t, &blob, &p.segtab_len) == 0, "encode");
		p.segtab = blob;
	}
	REQUIRE(rmp_state_pool_put(st, &p) == 0, "%s", rmp_state_error(st));
	free(blob);
}

/* Three pools on record: one whose shm object is gone (a host reboot),
 * one whose object is buddy metadata of another layout version, one that
 * was being created; a registered donor, a spawned one, two leases. */
static void craft_state(const char *dir)
{
	struct rmp_state *st;
	uint64_t g;
	char err[512];

	snprintf(shm_gone, sizeof(shm_gone), "/rmpool-itest-gone-%d", (int)getpid());
	snprintf(shm_old, sizeof(shm_old), "/rmpool-itest-old-%d", (int)getpid());
	snprintf(shm_new, sizeof(shm_new), "/rmpool-itest-new-%d", (int)getpid());
	snprintf(pool_gone, sizeof(pool_gone), "itest-gone-%d", (int)getpid());
	snprintf(pool_old, sizeof(pool_old), "itest-old-%d", (int)getpid());
	REQUIRE(rmp_state_open_sqlite(dir, &st, &g, err, sizeof(err)) == 0, "%s", err);
	REQUIRE(rmp_state_begin(st) == 0, "%s", rmp_state_error(st));
	put_pool(st, 3, 1 /* ready */, pool_gone, shm_gone, true);
	put_pool(st, 4, 1 /* ready */, pool_old, shm_old, true);
	put_pool(st, 5, 0 /* being created */, "itest-new", shm_new, false);
	struct rmp_state_donor d = { .id = 11, .pool_id = 3, .state = 2, .pid = 4242,
				     .host = "itest-host",
				     .region = { REC_DONOR_ADDR, REC_SEG, 7 },
				     .endpoint = { "127.0.0.1", 9999 }, .cost = REC_SEG + 4096 };
	REQUIRE(rmp_state_donor_put(st, &d) == 0, "%s", rmp_state_error(st));
	d = (struct rmp_state_donor){ .id = 12, .pool_id = 5, .state = 1, .pid = 4343,
				      .host = "itest-host" };
	REQUIRE(rmp_state_donor_put(st, &d) == 0, "%s", rmp_state_error(st));
	struct rmp_state_lease l = { .id = 5, .pool_id = 3, .session = 3, .expires_wall_ms = 1 };
	REQUIRE(rmp_state_lease_put(st, &l) == 0, "%s", rmp_state_error(st));
	l = (struct rmp_state_lease){ .id = 6, .pool_id = 5, .session = 3, .expires_wall_ms = 1 };
	REQUIRE(rmp_state_lease_put(st, &l) == 0, "%s", rmp_state_error(st));
	REQUIRE(rmp_state_counter_set(st, RMP_STATE_NEXT_POOL, 6) == 0 &&
			rmp_state_counter_set(st, RMP_STATE_NEXT_DONOR, 100) == 0 &&
			rmp_state_counter_set(st, RMP_STATE_NEXT_SESSION, 500) == 0 &&
			rmp_state_counter_set(st, RMP_STATE_NEXT_LEASE, 7) == 0,
		"%s", rmp_state_error(st));
	REQUIRE(rmp_state_commit(st) == 0, "%s", rmp_state_error(st));
	rmp_state_close(st);

	/* The objects: another layout version's header, and a fresh one. */
	uint64_t hdr[512] = { RMP_BUDDY_MAGIC << 16 | 99 };
	const char *names[] = { shm_old, shm_new };
	for (int i = 0; i < 2; i++) {
		int fd = shm_open(names[i], O_RDWR | O_CREAT | O_EXCL, 0600);
		REQUIRE(fd >= 0, "shm_open(%s): %s", names[i], strerror(errno));
		REQUIRE(write(fd, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr), "write %s", names[i]);
		close(fd);
		hdr[0] = 0;
	}
}

static bool shm_exists(const char *name)
{
	int fd = shm_open(name, O_RDONLY, 0);
	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

/* The pool named name in a fresh status, copied to *out; false if none. */
static bool pool_status(int fd, const char *name, struct rmp_wire_pool_status *out, uint32_t *n)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_STATUS_REQUEST }, r;
	bool found = false;

	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_STATUS_REPLY, "got %s", rmp_wire_type_name(r.type));
	for (uint32_t i = 0; i < r.u.status.n_pools; i++) {
		if (strcmp(r.u.status.pools[i].name, name) == 0) {
			*out = r.u.status.pools[i];
			found = true;
		}
	}
	if (n)
		*n = r.u.status.n_pools;
	rmp_wire_msg_release(&r);
	return found;
}

static void expect_error(int fd, const struct rmp_wire_msg *req, uint32_t code, const char *text)
{
	struct rmp_wire_msg r;

	send_msg(fd, req);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_ERROR, "%s: got %s", rmp_wire_type_name(req->type),
		rmp_wire_type_name(r.type));
	REQUIRE(r.u.error.code == code && strstr(r.u.error.text, text),
		"%s: error %u \"%s\", want %u with \"%s\"", rmp_wire_type_name(req->type),
		r.u.error.code, r.u.error.text, code, text);
}

static void forget(int fd, const char *name, uint32_t refused_with)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_POOL_FORGET }, r;

	snprintf(m.u.pool_forget.name, sizeof(m.u.pool_forget.name), "%s", name);
	if (refused_with) {
		expect_error(fd, &m, refused_with, name);
		return;
	}
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_ACK && r.u.ack.ref_type == RMP_MSG_POOL_FORGET,
		"forget %s: got %s", name, rmp_wire_type_name(r.type));
}

static void donor_register(int fd, uint32_t id, uint32_t pool, uint32_t pid, uint32_t rkey)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_DONOR_REGISTER };

	m.u.donor_register = (struct rmp_wire_donor_register){
		.donor_id = id, .pool_id = pool, .pid = pid,
		.region = { REC_DONOR_ADDR, REC_SEG, rkey }, .endpoint = { "127.0.0.1", 9999 } };
	send_msg(fd, &m);
}

/* The recorded donors come back: the wrong process is refused, the right
 * one taken back; one of a pool that was being created is told to exit. */
static void recorded_donors(int *d1)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_DONOR_REGISTER }, r;

	*d1 = connect_ctl();
	REQUIRE(handshake(*d1, RMP_ROLE_DONOR, SECRET, NULL), "donor auth");
	donor_register(*d1, 11, 3, 4242, 8);
	recv_msg(*d1, &r);
	REQUIRE(r.type == RMP_MSG_ERROR && r.u.error.code == EINVAL &&
			strstr(r.u.error.text, "not taken back"),
		"a donor with another rkey: %s \"%s\"", rmp_wire_type_name(r.type), r.u.error.text);
	donor_register(*d1, 11, 3, 4242, 7);
	recv_msg(*d1, &r);
	REQUIRE(r.type == RMP_MSG_DONOR_ACCEPTED && r.u.donor_accepted.donor_id == 11 &&
			r.u.donor_accepted.pool_id == 3,
		"the recorded donor: got %s", rmp_wire_type_name(r.type));
	int d2 = connect_ctl();
	REQUIRE(handshake(d2, RMP_ROLE_DONOR, SECRET, NULL), "donor auth");
	donor_register(d2, 12, 5, 4343, 1);
	recv_msg(d2, &r);
	REQUIRE(r.type == RMP_MSG_DONOR_ACCEPTED, "donor 12: got %s", rmp_wire_type_name(r.type));
	recv_msg(d2, &r);
	REQUIRE(r.type == RMP_MSG_TERMINATE && r.u.terminate.donor_id == 12,
		"donor 12 of a pool that was being created: got %s", rmp_wire_type_name(r.type));
	close(d2);
	/* A new standalone donor gets an id past every one on record. */
	int d3 = connect_ctl();
	REQUIRE(handshake(d3, RMP_ROLE_DONOR, SECRET, NULL), "donor auth");
	m.u.donor_register = (struct rmp_wire_donor_register){
		.pid = 77, .region = { REC_DONOR_ADDR, REC_SEG, 9 }, .endpoint = { "127.0.0.1", 9998 } };
	send_msg(d3, &m);
	recv_msg(d3, &r);
	REQUIRE(r.type == RMP_MSG_DONOR_ACCEPTED && r.u.donor_accepted.donor_id >= 100,
		"a new standalone donor: %s, id %u", rmp_wire_type_name(r.type),
		r.u.donor_accepted.donor_id);
	close(d3);
}

static void case_recorded(void)
{
	struct rmp_wire_pool_status ps;
	struct rmp_wire_msg m;
	int d1;

	craft_state(the_state_dir());
	start_server("--donor-return-timeout", "2s", NULL);
	int fd = client();
	REQUIRE(last_generation == 2 && last_session >= 500, "generation %" PRIu64 ", session %" PRIu64,
		last_generation, last_session);
	REQUIRE(pool_status(fd, pool_gone, &ps, NULL) && ps.state == RMP_POOL_LOST &&
			strstr(ps.note, "is gone") && ps.donors_away == 1 && ps.clients == 1,
		"pool %s: state %u, away %u, clients %u, note \"%s\"", pool_gone, ps.state,
		ps.donors_away, ps.clients, ps.note);
	REQUIRE(pool_status(fd, pool_old, &ps, NULL) && ps.state == RMP_POOL_LOST &&
			strstr(ps.note, "layout version 99"),
		"pool %s: state %u, note \"%s\"", pool_old, ps.state, ps.note);
	REQUIRE(!pool_status(fd, "itest-new", &ps, NULL), "a pool that was being created is listed");
	REQUIRE(!shm_exists(shm_new) && shm_exists(shm_old), "shm: %s %s, %s %s", shm_new,
		shm_exists(shm_new) ? "stayed" : "gone", shm_old, shm_exists(shm_old) ? "stayed" : "gone");
	REQUIRE(metric("rmpool_pools_lost") == 2, "rmpool_pools_lost");
	/* Per pool and per donor: the lost pool, its donor away on its host. */
	char body[16384], want[256];
	REQUIRE(http_get("/metrics", body, sizeof(body)) == 200, "GET /metrics");
	snprintf(want, sizeof(want), "\nrmpool_pool_info{pool=\"%s\",id=\"", pool_gone);
	const char *line = strstr(body, want);
	char sample[256] = "";
	if (line)
		sscanf(line + 1, "%255[^\n]", sample);
	REQUIRE(strstr(sample, "\",state=\"lost\"} 1"), "/metrics: \"%s\", want %s...state=\"lost\"} 1",
		sample, want + 1);
	snprintf(want, sizeof(want), ",pool=\"%s\",host=\"", pool_gone);
	REQUIRE(strstr(body, want) && strstr(body, "\",state=\"away\"} "),
		"/metrics lacks the lost pool's donor away");

	m = (struct rmp_wire_msg){ .type = RMP_MSG_POOL_OPEN };
	snprintf(m.u.pool_open.name, sizeof(m.u.pool_open.name), "%s", pool_gone);
	expect_error(fd, &m, EIO, "is lost");
	/* Reasons too long for the hint beside them in a wire text: whole,
	 * without a hint cut short. */
	struct rmp_wire_msg r;
	static const char *const ends[] = { "cannot be recovered", "(run the rmpool-server that made it)" };
	for (int i = 0; i < 2; i++) {
		snprintf(m.u.pool_open.name, sizeof(m.u.pool_open.name), "%s", i ? pool_old : pool_gone);
		send_msg(fd, &m);
		recv_msg(fd, &r);
		size_t tl = strlen(r.u.error.text), el = strlen(ends[i]);
		REQUIRE(r.type == RMP_MSG_ERROR && tl > el && strcmp(r.u.error.text + tl - el, ends[i]) == 0,
			"attach to %s: \"%s\" does not end with its reason's end", m.u.pool_open.name,
			r.u.error.text);
	}
	m = (struct rmp_wire_msg){ .type = RMP_MSG_LEASE_RENEW };
	m.u.lease_renew.lease_id = 6;
	expect_error(fd, &m, ENOENT, "lease 6");
	m.u.lease_renew.lease_id = 5;
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_LEASE_GRANT, "the recorded lease: %s", rmp_wire_type_name(r.type));

	recorded_donors(&d1);
	REQUIRE(pool_status(fd, pool_gone, &ps, NULL) && ps.donors_away == 0, "away %u", ps.donors_away);
	forget(fd, pool_gone, EBUSY);
	close(d1); /* away, then lost after 2 s */
	uint64_t until = now_ms() + 10000;
	while (pool_status(fd, pool_gone, &ps, NULL) && ps.donors_lost == 0) {
		REQUIRE(now_ms() < until, "donor 11 not marked lost within 10 s");
		usleep(100000);
	}
	REQUIRE(ps.lost_bytes == REC_SEG, "lost bytes %" PRIu64, ps.lost_bytes);
	forget(fd, pool_gone, 0);
	close(fd);
	stop_server();

	/* All of it was on record: the lost pool is still lost, the forgotten one gone. */
	start_server(NULL);
	fd = client();
	uint32_t n;
	REQUIRE(last_generation == 3, "generation %" PRIu64, last_generation);
	REQUIRE(!pool_status(fd, pool_gone, &ps, &n) && n == 1, "%u pools after forget", n);
	REQUIRE(pool_status(fd, pool_old, &ps, NULL) && ps.state == RMP_POOL_LOST, "state %u", ps.state);
	forget(fd, pool_old, 0);
	REQUIRE(!shm_exists(shm_old), "forget left %s", shm_old);
	close(fd);
	stop_server();
}

/* ---- donor death (DESIGN.md, "Donor death") ---- */

#define DL_POOL 7
#define DL_LIVE 21 /* donor that comes back */
#define DL_DEAD 22 /* donor that never does */

/* A ready pool on record, 8 MiB in two 4 MiB segments on donors 21 and
 * 22, with sound metadata in shm (so that it waits, recovering, for the
 * rdma_cm listener that never binds here instead of being lost). */
static void craft_two_donor_pool(const char *dir, const char *name, char *shm, size_t shmcap)
{
	struct rmp_buddy_geom g;
	struct rmp_state *st;
	uint64_t gen;
	char err[512];

	REQUIRE(rmp_buddy_geom_init(&g, 23, 12) == 0, "geometry");
	snprintf(shm, shmcap, "/rmpool-itest-dl-%d", (int)getpid());
	uint64_t len = g.total_words * sizeof(uint64_t);
	uint64_t *words = calloc(g.total_words, sizeof(uint64_t));
	REQUIRE(words, "calloc");
	rmp_buddy_format(words, &g, 2 * REC_SEG);
	int fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0600);
	REQUIRE(fd >= 0, "shm_open(%s): %s", shm, strerror(errno));
	REQUIRE(write(fd, words, len) == (ssize_t)len, "write %s", shm);
	close(fd);
	free(words);

	struct rmp_wire_segment segs[2] = { { DL_LIVE, 7, REC_DONOR_ADDR }, { DL_DEAD, 8, REC_DONOR_ADDR } };
	struct rmp_wire_donor_entry dn[2] = { { .donor_id = DL_LIVE, .endpoint = { "127.0.0.1", 9999 } },
					      { .donor_id = DL_DEAD, .endpoint = { "127.0.0.1", 9998 } } };
	struct rmp_wire_segtab t = { .version = 1, .capacity = 2 * REC_SEG, .space_log2 = 23,
				     .min_block_log2 = 12, .segment_log2 = 22,
				     .meta = { 0x1000, len, 5 }, .coordinator = { "127.0.0.1", 7402 },
				     .n_donors = 2, .donors = dn, .n_segments = 2, .segments = segs };
	struct rmp_state_pool p = { .id = DL_POOL, .state = 1 /* ready */, .capacity = 2 * REC_SEG,
				    .space_log2 = 23, .segment_log2 = 22, .min_block_log2 = 12,
				    .meta_len = len, .segtab_version = 1 };
	snprintf(p.name, sizeof(p.name), "%s", name);
	snprintf(p.meta_shm, sizeof(p.meta_shm), "%s", shm);
	uint8_t *blob = NULL;
	REQUIRE(rmp_srv_adopt_segtab_encode(DL_POOL, &t, &blob, &p.segtab_len) == 0, "encode");
	p.segtab = blob;
	REQUIRE(rmp_state_open_sqlite(dir, &st, &gen, err, sizeof(err)) == 0, "%s", err);
	REQUIRE(rmp_state_begin(st) == 0, "%s", rmp_state_error(st));
	REQUIRE(rmp_state_pool_put(st, &p) == 0, "%s", rmp_state_error(st));
	for (uint32_t i = 0; i < 2; i++) {
		struct rmp_state_donor d = { .id = dn[i].donor_id, .pool_id = DL_POOL, .state = 2,
					     .pid = 5000 + i, .host = "itest-host",
					     .region = { REC_DONOR_ADDR, REC_SEG, 7 + i },
					     .endpoint = dn[i].endpoint, .base = i * REC_SEG,
					     .cost = REC_SEG + 4096 };
		REQUIRE(rmp_state_donor_put(st, &d) == 0, "%s", rmp_state_error(st));
	}
	REQUIRE(rmp_state_counter_set(st, RMP_STATE_NEXT_POOL, 8) == 0 &&
			rmp_state_counter_set(st, RMP_STATE_NEXT_DONOR, 100) == 0,
		"%s", rmp_state_error(st));
	REQUIRE(rmp_state_commit(st) == 0, "%s", rmp_state_error(st));
	rmp_state_close(st);
	free(blob);
}

static int dl_register(uint32_t id, uint32_t pid, uint32_t rkey, uint16_t port, struct rmp_wire_msg *r)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_DONOR_REGISTER };
	int fd = connect_ctl();

	REQUIRE(handshake(fd, RMP_ROLE_DONOR, SECRET, NULL), "donor auth");
	m.u.donor_register = (struct rmp_wire_donor_register){
		.donor_id = id, .pool_id = DL_POOL, .pid = pid,
		.region = { REC_DONOR_ADDR, REC_SEG, rkey }, .endpoint = { "127.0.0.1", port } };
	send_msg(fd, &m);
	recv_msg(fd, r);
	return fd;
}

/* A donor of a pool past creation does not come back in time: it is
 * lost, and its segments leave service - a new table version with its
 * entry lost, the capacity in service down by its bytes, both on record:
 * after a restart it is lost at once (not away again) and refused when
 * it registers. (Pushing to consumers and retiring in the metadata need
 * a ready pool, which needs RDMA: rdma_donor_death.) */
static void case_donor_lost(void)
{
	struct rmp_wire_pool_status ps;
	struct rmp_wire_msg r;
	char name[40], shm[64];

	snprintf(name, sizeof(name), "itest-dl-%d", (int)getpid());
	craft_two_donor_pool(the_state_dir(), name, shm, sizeof(shm));
	start_server("--rdma-addr", NO_SUCH_RDMA_ADDR, "--donor-return-timeout", "1s", NULL);
	int fd = client();
	REQUIRE(pool_status(fd, name, &ps, NULL) && ps.state == RMP_POOL_RECOVERING &&
			ps.donors_away == 2 && ps.segtab_version == 1 && ps.capacity == 2 * REC_SEG,
		"pool %s: state %u, away %u, version %" PRIu64 ", capacity %" PRIu64, name, ps.state,
		ps.donors_away, ps.segtab_version, ps.capacity);
	int d1 = dl_register(DL_LIVE, 5000, 7, 9999, &r);
	REQUIRE(r.type == RMP_MSG_DONOR_ACCEPTED, "donor %u: got %s \"%s\"", DL_LIVE,
		rmp_wire_type_name(r.type), r.type == RMP_MSG_ERROR ? r.u.error.text : "");
	uint64_t until = now_ms() + 10000;
	while (pool_status(fd, name, &ps, NULL) && ps.donors_lost == 0) {
		REQUIRE(now_ms() < until, "donor %u not marked lost within 10 s", DL_DEAD);
		usleep(50000);
	}
	REQUIRE(ps.donors_away == 0 && ps.donors_lost == 1 && ps.segtab_version == 2 &&
			ps.capacity == REC_SEG && ps.lost_bytes == REC_SEG,
		"after the loss: away %u, lost %u, version %" PRIu64 ", capacity %" PRIu64
		", lost bytes %" PRIu64,
		ps.donors_away, ps.donors_lost, ps.segtab_version, ps.capacity, ps.lost_bytes);
	REQUIRE(metric("rmpool_donors_retired_total") == 1, "rmpool_donors_retired_total");
	close(d1);
	close(fd);
	stop_server();

	start_server("--rdma-addr", NO_SUCH_RDMA_ADDR, "--donor-return-timeout", "30s", NULL);
	fd = client();
	REQUIRE(pool_status(fd, name, &ps, NULL) && ps.donors_away == 1 && ps.donors_lost == 1 &&
			ps.segtab_version == 2 && ps.capacity == REC_SEG,
		"after a restart: away %u, lost %u, version %" PRIu64 ", capacity %" PRIu64,
		ps.donors_away, ps.donors_lost, ps.segtab_version, ps.capacity);
	int d2 = dl_register(DL_DEAD, 5001, 8, 9998, &r);
	REQUIRE(r.type == RMP_MSG_ERROR && r.u.error.code == ESTALE &&
			strstr(r.u.error.text, "not taken back"),
		"the lost donor registering again: %s \"%s\"", rmp_wire_type_name(r.type),
		r.type == RMP_MSG_ERROR ? r.u.error.text : "");
	close(d2);
	d1 = dl_register(DL_LIVE, 5000, 7, 9999, &r);
	REQUIRE(r.type == RMP_MSG_DONOR_ACCEPTED, "donor %u after the restart: got %s", DL_LIVE,
		rmp_wire_type_name(r.type));
	close(d1);
	close(fd);
	stop_server();
	shm_unlink(shm);
}

/* ---- the cut-off of an expired consumer ---- */

static void log_expect(const char *needle);

/* One pool on record (its metadata object gone, so it is lost; that
 * does not matter to a cut), its donor 11, and two leases of clients 3
 * and 4 that expire one lease period after the start. */
static void craft_cut_state(const char *dir)
{
	struct rmp_state *st;
	uint64_t g;
	char err[512];

	snprintf(shm_gone, sizeof(shm_gone), "/rmpool-itest-cut-%d", (int)getpid());
	snprintf(pool_gone, sizeof(pool_gone), "itest-cut-%d", (int)getpid());
	REQUIRE(rmp_state_open_sqlite(dir, &st, &g, err, sizeof(err)) == 0, "%s", err);
	REQUIRE(rmp_state_begin(st) == 0, "%s", rmp_state_error(st));
	put_pool(st, 3, 1 /* ready */, pool_gone, shm_gone, true);
	struct rmp_state_donor d = { .id = 11, .pool_id = 3, .state = 2, .pid = 4242,
				     .host = "itest-host",
				     .region = { REC_DONOR_ADDR, REC_SEG, 7 },
				     .endpoint = { "127.0.0.1", 9999 }, .cost = REC_SEG + 4096 };
	REQUIRE(rmp_state_donor_put(st, &d) == 0, "%s", rmp_state_error(st));
	struct rmp_state_lease l = { .id = 5, .pool_id = 3, .session = 3, .expires_wall_ms = 1 };
	REQUIRE(rmp_state_lease_put(st, &l) == 0, "%s", rmp_state_error(st));
	l = (struct rmp_state_lease){ .id = 6, .pool_id = 3, .session = 4, .expires_wall_ms = 1 };
	REQUIRE(rmp_state_lease_put(st, &l) == 0, "%s", rmp_state_error(st));
	REQUIRE(rmp_state_counter_set(st, RMP_STATE_NEXT_POOL, 4) == 0 &&
			rmp_state_counter_set(st, RMP_STATE_NEXT_DONOR, 100) == 0 &&
			rmp_state_counter_set(st, RMP_STATE_NEXT_SESSION, 500) == 0 &&
			rmp_state_counter_set(st, RMP_STATE_NEXT_LEASE, 7) == 0,
		"%s", rmp_state_error(st));
	REQUIRE(rmp_state_commit(st) == 0, "%s", rmp_state_error(st));
	rmp_state_close(st);
}

/* Two leases expire: each client is cut off, the pool's donor is told
 * (CLIENT_CUT, after it registered again: it was away at the start). It
 * acknowledges the cut of client 3 - that cut is complete - and not the
 * one of client 4: after the bound it is marked lost, which completes
 * that cut too. Both are logged and counted; a stray ACK changes
 * nothing. */
static void case_cut(void)
{
	struct rmp_wire_msg m, r;
	bool seen[2] = { false, false };
	int d1;

	craft_cut_state(the_state_dir());
	start_server("--lease-timeout", "1s", NULL);
	d1 = connect_ctl();
	REQUIRE(handshake(d1, RMP_ROLE_DONOR, SECRET, NULL), "donor auth");
	donor_register(d1, 11, 3, 4242, 7);
	recv_msg(d1, &r);
	REQUIRE(r.type == RMP_MSG_DONOR_ACCEPTED && r.u.donor_accepted.donor_id == 11,
		"the recorded donor: got %s", rmp_wire_type_name(r.type));
	uint64_t t0 = now_ms();
	for (int i = 0; i < 2; i++) {
		recv_msg(d1, &r);
		REQUIRE(r.type == RMP_MSG_CLIENT_CUT && r.u.client_cut.pool_id == 3 &&
				(r.u.client_cut.client_id == 3 || r.u.client_cut.client_id == 4),
			"cut %d: got %s (pool %u, client %llu)", i, rmp_wire_type_name(r.type),
			r.u.client_cut.pool_id, (unsigned long long)r.u.client_cut.client_id);
		REQUIRE(!seen[r.u.client_cut.client_id - 3], "client %llu cut twice",
			(unsigned long long)r.u.client_cut.client_id);
		seen[r.u.client_cut.client_id - 3] = true;
	}
	log_expect("lease 5 of client 3 on pool");
	REQUIRE(log_count("cut complete") == 0, "a cut completed before its donor acknowledged");
	/* A stray ACK (a client never cut) first: nothing completes. */
	m = (struct rmp_wire_msg){ .type = RMP_MSG_CLIENT_CUT_ACK };
	m.u.client_cut_ack = (struct rmp_wire_client_cut_ack){ 3, 11, 77, 0 };
	send_msg(d1, &m);
	m.u.client_cut_ack = (struct rmp_wire_client_cut_ack){ 3, 11, 3, 2 };
	send_msg(d1, &m);
	log_expect("lease 5 of client 3 on pool");
	log_expect("cut complete");
	REQUIRE(log_count("client 3 on pool") && log_count("2 connection(s) torn down; donors: 1 acknowledged, 0 lost"),
		"the cut of client 3 is not logged as acknowledged");
	REQUIRE(log_count("cut complete") == 1, "%d cuts complete, want 1", log_count("cut complete"));
	REQUIRE(metric("rmpool_clients_cut_total") == 1, "rmpool_clients_cut_total");
	/* Client 4's cut: unanswered, the donor is lost after 5 s. */
	uint64_t until = now_ms() + 10000;
	while (log_count("cut complete") < 2) {
		REQUIRE(now_ms() < until, "the unanswered cut did not complete within 10 s");
		usleep(50000);
	}
	uint64_t took = now_ms() - t0;
	REQUIRE(took >= 4500, "the unanswered cut completed after %llu ms, before its 5 s bound",
		(unsigned long long)took);
	REQUIRE(log_count("did not acknowledge the cut-off of client 4 within 5000 ms") == 1,
		"the silent donor is not marked lost for it");
	REQUIRE(log_count("0 acknowledged, 1 lost"), "the second cut is not logged with the lost donor");
	REQUIRE(metric("rmpool_clients_cut_total") == 2, "rmpool_clients_cut_total");
	printf("cut: client 3 acknowledged; client 4 complete %llu ms after the donor registered (bound 5 s)\n",
	       (unsigned long long)took);
	close(d1);
	stop_server();
}

/* A coordinator stalled past the lease time (SIGSTOP) expires nobody
 * whose renewal waited in its socket meanwhile: the lease is extended by
 * the stall and the late renewal granted, not refused - nor its client
 * cut off. */
static void case_stall(void)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_LEASE_RENEW }, r;

	craft_cut_state(the_state_dir());
	start_server("--lease-timeout", "2s", NULL);
	int fd = client();
	m.u.lease_renew.lease_id = 5;
	send_msg(fd, &m);
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_LEASE_GRANT, "the first renewal: %s", rmp_wire_type_name(r.type));
	REQUIRE(kill(server_pid, SIGSTOP) == 0, "SIGSTOP: %s", strerror(errno));
	usleep(3000 * 1000); /* past the 2 s lease */
	send_msg(fd, &m);
	REQUIRE(kill(server_pid, SIGCONT) == 0, "SIGCONT: %s", strerror(errno));
	recv_msg(fd, &r);
	REQUIRE(r.type == RMP_MSG_LEASE_GRANT, "the renewal sent during the stall: %s \"%s\"",
		rmp_wire_type_name(r.type), r.type == RMP_MSG_ERROR ? r.u.error.text : "");
	log_expect("the coordinator did not run for");
	REQUIRE(log_count("lease 5 of session 3") == 0, "lease 5 expired across the stall");
	close(fd);
	stop_server();
}

/* ---- systemd: readiness (sd_notify) and SIGHUP ---- */

/* A datagram socket where the server's sd_notify() messages arrive. */
static int notify_open(char *path, size_t cap)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	REQUIRE(fd >= 0, "socket(AF_UNIX)");
	snprintf(path, cap, "/tmp/server_itest.notify.%d", (int)getpid());
	unlink(path);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind %s: %s", path, strerror(errno));
	return fd;
}

/* The next message within timeout_ms into msg; false when none came. */
static bool notify_recv(int fd, char *msg, size_t cap, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, timeout_ms) <= 0)
		return false;
	ssize_t n = recv(fd, msg, cap - 1, 0);
	REQUIRE(n >= 0, "recv: %s", strerror(errno));
	msg[n] = '\0';
	return true;
}

/* Messages until one contains want (each must keep the server alive). */
static void notify_expect(int fd, const char *want, char *msg, size_t cap)
{
	uint64_t until = now_ms() + 10000;
	int st;

	for (;;) {
		REQUIRE(waitpid(server_pid, &st, WNOHANG) == 0, "the server exited");
		REQUIRE(now_ms() < until, "no \"%s\" from the server within 10 s", want);
		if (notify_recv(fd, msg, cap, 100) && strstr(msg, want))
			return;
	}
}

static void case_notify(void)
{
	char path[108], msg[1024], body[4096];
	int nfd = notify_open(path, sizeof(path));

	/* Without the rdma_cm listener it needs: STATUS= says why, never READY=1. */
	notify_path = path;
	start_server("--rdma-addr", NO_SUCH_RDMA_ADDR, NULL);
	notify_expect(nfd, "STATUS=waiting: the rdma_cm listener is down", msg, sizeof(msg));
	REQUIRE(!strstr(msg, "READY=1"), "READY while the listener is down: %s", msg);
	uint64_t until = now_ms() + 1500;
	while (now_ms() < until)
		if (notify_recv(nfd, msg, sizeof(msg), 100))
			REQUIRE(!strstr(msg, "READY=1"), "READY while the listener is down: %s", msg);
	REQUIRE(http_get("/healthz", body, sizeof(body)) == 503, "/healthz: %s", body);
	stop_server();

	/* Not needed (require-rdma false): READY=1 once the listeners answer.
	 * No waiting for the control port here: READY must come first, and
	 * then both ports must answer at the first try. */
	start_waits = false;
	start_server("--rdma-addr", NO_SUCH_RDMA_ADDR, "--require-rdma=false", NULL);
	start_waits = true;
	notify_expect(nfd, "READY=1", msg, sizeof(msg));
	REQUIRE(strstr(msg, "STATUS=serving: control 127.0.0.1:"), "READY without STATUS: %s", msg);
	int fd = try_connect(ctl_port);
	REQUIRE(fd >= 0, "READY sent, but the control port refuses: %s", strerror(errno));
	close(fd);
	REQUIRE(http_get("/healthz", body, sizeof(body)) == 200 && strcmp(body, "ok\n") == 0,
		"READY sent, but /healthz says: %s", body);
	good_client_served();
	/* A reload: RELOADING=1, then READY=1 again. */
	REQUIRE(kill(server_pid, SIGHUP) == 0, "kill -HUP");
	notify_expect(nfd, "RELOADING=1", msg, sizeof(msg));
	notify_expect(nfd, "READY=1", msg, sizeof(msg));
	REQUIRE(strstr(msg, "reloaded at SIGHUP"), "after the reload: %s", msg);
	REQUIRE(kill(server_pid, SIGTERM) == 0, "kill -TERM");
	notify_expect(nfd, "STOPPING=1", msg, sizeof(msg));
	wait_server_exit(); /* a second SIGTERM could find the loop gone */
	notify_path = NULL;
	close(nfd);
	unlink(path);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	REQUIRE(f && fputs(text, f) >= 0 && fclose(f) == 0, "write %s", path);
}

/* Waits for a line in the log while the server keeps running. */
static void log_expect(const char *needle)
{
	uint64_t until = now_ms() + 10000;
	int st;

	while (log_count(needle) == 0) {
		REQUIRE(waitpid(server_pid, &st, WNOHANG) == 0, "the server exited (status 0x%x)", st);
		REQUIRE(now_ms() < until, "no log line \"%s\" within 10 s", needle);
		usleep(20000);
	}
}

static void case_sighup(void)
{
	char conf[64];

	snprintf(conf, sizeof(conf), "server_itest.%d.conf", (int)getpid());
	write_text(conf, "log-level = warn\n");
	start_log_level = NULL; /* the file's level counts */
	start_server("--config", conf, "--require-rdma=false", NULL);
	good_client_served();
	REQUIRE(log_count(" INFO: ") == 0 && log_count(" DEBUG: ") == 0, "info lines at warn");

	/* Two reloadable changes, one that needs a restart. */
	write_text(conf, "log-level = debug\nhandshake-timeout = 2s\nsegment-size = 8M\n");
	REQUIRE(kill(server_pid, SIGHUP) == 0, "kill -HUP");
	log_expect("WARN: SIGHUP: configuration reloaded; applied: handshake-timeout 5s -> 2s, "
		   "log-level warn -> debug");
	log_expect("WARN: SIGHUP: changed but fixed until the next start: segment-size 4M -> 8M");
	good_client_served();
	log_expect(" DEBUG: ");
	REQUIRE(log_count(" INFO: ") > 0, "no info line at debug");

	/* A file that does not parse changes nothing, and kills nothing. */
	write_text(conf, "log-level = loud\n");
	REQUIRE(kill(server_pid, SIGHUP) == 0, "kill -HUP");
	log_expect("ERROR: SIGHUP: the configuration does not load, nothing changed:");
	int before = log_count(" DEBUG: ");
	good_client_served();
	REQUIRE(log_count(" DEBUG: ") > before, "the level changed after a bad reload");
	stop_server(); /* still running, and exits 0 */
	start_log_level = "debug";
	unlink(conf);
}

/* The daemons and the CLI read one secret file format (common/secret.c):
 * the server started on a file as the units' config names it - a line
 * with its newline, mode 0600 - and `rmpool --secret-file` on the same
 * file is served; a file with another secret is refused. */
static void case_cli_secret(void)
{
	char file[64], other[64], listen[64], out[4096];

	REQUIRE(cli_bin, "usage: server_itest SERVER cli_secret CLI");
	snprintf(file, sizeof(file), "server_itest.%d.secret", (int)getpid());
	snprintf(other, sizeof(other), "server_itest.%d.other", (int)getpid());
	umask(077);
	write_text(file, "a-secret-as-base64-of-32-bytes-0123456789AB=\n");
	write_text(other, "another-secret-of-the-same-sort-0123456789=\n");
	start_server("--secret-file", file, "--require-rdma=false", NULL);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", ctl_port);
	char *const ok[] = { (char *)cli_bin, "--coordinator", listen, "--secret-file", file,
			     "status", "--json", NULL };
	int st = run_prog(ok, out, sizeof(out));
	REQUIRE(st == 0 && strstr(out, "\"generation\""), "rmpool status with the daemon's file: %d %s",
		st, out);
	char *const bad[] = { (char *)cli_bin, "--coordinator", listen, "--secret-file", other,
			      "status", NULL };
	st = run_prog(bad, out, sizeof(out));
	REQUIRE(st == 1 && strstr(out, "authentication failed"), "another secret: %d %s", st, out);
	REQUIRE(metric("rmpool_auth_failures_total") == 1, "the CLI's failure counted once");
	stop_server();
	unlink(file);
	unlink(other);
}

/* rmpool --coordinator (this server) ARGS... (NULL-ended), with the
 * secret in the environment; its stdout and stderr in out. Returns its
 * exit status. */
static int cli(char *out, size_t cap, ...)
{
	char *argv[16], addr[32];
	int n = 0;
	va_list ap;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ctl_port);
	argv[n++] = (char *)cli_bin;
	argv[n++] = "--coordinator";
	argv[n++] = addr;
	va_start(ap, cap);
	for (char *a; n < 15 && (a = va_arg(ap, char *)) != NULL;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	return run_to_exit(argv, true, out, cap);
}

/* rmpool against a coordinator with craft_state's lost pools: its exit
 * status and its words when a command works, when the coordinator
 * refuses it, for a usage error and for --help. */
static void case_cli(void)
{
	char out[4096], want[160];
	int st;

	REQUIRE(cli_bin, "usage: server_itest SERVER cli CLI");
	craft_state(the_state_dir());
	start_server(NULL);
	st = cli(out, sizeof(out), "status", NULL);
	REQUIRE(st == 0 && strstr(out, pool_old) && strstr(out, "lost"), "status (%d): %s", st, out);
	st = cli(out, sizeof(out), "pool", "info", pool_old, NULL);
	snprintf(want, sizeof(want), "rmpool: pool info %s: ", pool_old);
	REQUIRE(st == 1 && strncmp(out, want, strlen(want)) == 0 && strstr(out, "lost"),
		"pool info of a lost pool (%d): %s", st, out);
	st = cli(out, sizeof(out), "pool", "forget", pool_old, NULL);
	snprintf(want, sizeof(want), "pool %s forgotten\n", pool_old);
	REQUIRE(st == 0 && strcmp(out, want) == 0, "pool forget (%d): %s", st, out);
	st = cli(out, sizeof(out), "pool", "forget", pool_old, NULL);
	snprintf(want, sizeof(want), "rmpool: pool forget %s: no pool named %s", pool_old, pool_old);
	REQUIRE(st == 1 && strncmp(out, want, strlen(want)) == 0, "pool forget again (%d): %s", st,
		out);
	st = cli(out, sizeof(out), "pool", "destroy", pool_gone, NULL);
	snprintf(want, sizeof(want), "pool %s destroyed in ", pool_gone);
	REQUIRE(st == 0 && strncmp(out, want, strlen(want)) == 0, "pool destroy (%d): %s", st, out);
	st = cli(out, sizeof(out), "pool", "destroy", NULL);
	REQUIRE(st == 2 && strstr(out, "rmpool: pool destroy: want NAME"), "no NAME (%d): %s", st,
		out);
	st = cli(out, sizeof(out), "pool", "forget", "--help", NULL);
	REQUIRE(st == 0 && strncmp(out, "Usage: rmpool pool forget NAME\n", 31) == 0,
		"--help (%d): %s", st, out);
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
		{ "state_dir", case_state_dir },
		{ "state_refused", case_state_refused },
		{ "recorded", case_recorded },
		{ "donor_lost", case_donor_lost },
		{ "cut", case_cut },
		{ "stall", case_stall },
		{ "notify", case_notify },
		{ "sighup", case_sighup },
		{ "cli_secret", case_cli_secret },
		{ "cli", case_cli },
	};

	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: %s SERVER_BINARY CASE [CLI_BINARY]\n", argv[0]);
		return 2;
	}
	server_bin = argv[1];
	cli_bin = argc == 4 ? argv[3] : NULL;
	/* "file:line: cond", then "FAIL: why"; the server's log after it */
	check_init(NULL, kill_server_dump_log, CHECK_COND_LINE);
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strcmp(argv[2], cases[i].name) == 0) {
			cases[i].fn();
			remove_state_dir();
			printf("ok: %s\n", cases[i].name);
			return 0;
		}
	}
	fprintf(stderr, "unknown case %s\n", argv[2]);
	return 2;
}
