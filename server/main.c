/* main.c - rmpool-server: options, the secret, the event loop.
 *
 * Start-up order: options (refused with the option's name, value and
 * range), the secret (file or RMPOOL_SECRET; never printed), the control
 * listener, HTTP, then the rdma_cm listener, which may be missing (see
 * rdma_listen.c). A 250 ms tick expires leases and forgets donors that
 * never reported their exit.
 *
 * SIGINT/SIGTERM stop the loop and close every connection. Pools are not
 * destroyed and donors are not terminated: the metadata lives on in
 * shared memory and the donors keep their regions (DESIGN.md 7).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "srv.h"

#define TICK_MS 250

/* Reads the secret from path into buf (NUL-terminated, trailing newlines
 * dropped). Warns when others may read the file. */
static int read_secret_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		fprintf(stderr, "rmpool-server: --secret-file: cannot open \"%s\": %s\n", path,
			strerror(e));
		return -e;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && (st.st_mode & 0077))
		fprintf(stderr,
			"rmpool-server: warning: --secret-file \"%s\" is readable by group or "
			"others (mode %03o); chmod 600 it\n",
			path, (unsigned)(st.st_mode & 0777));
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			fprintf(stderr, "rmpool-server: --secret-file: reading \"%s\": %s\n", path,
				strerror(e));
			close(fd);
			return -e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == cap - 1)
			break;
	}
	close(fd);
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	return 0;
}

static int load_key(struct rmp_srv *srv)
{
	char err[160];
	int rc;

	if (srv->cfg.secret_file[0]) {
		/* One byte over the maximum, so a too-long secret is reported
		 * as such rather than cut. */
		char *buf = calloc(1, RMP_AUTH_SECRET_MAX + 2);
		if (!buf)
			return -ENOMEM;
		rc = read_secret_file(srv->cfg.secret_file, buf, RMP_AUTH_SECRET_MAX + 2);
		if (rc == 0)
			rc = rmp_auth_key_create(buf, &srv->key, err, sizeof(err));
		memset(buf, 0, RMP_AUTH_SECRET_MAX + 2);
		free(buf);
		if (rc == -EINVAL)
			fprintf(stderr, "rmpool-server: --secret-file \"%s\": %s\n",
				srv->cfg.secret_file, err);
		return rc;
	}
	rc = rmp_auth_key_create(NULL, &srv->key, err, sizeof(err));
	if (rc)
		fprintf(stderr, "rmpool-server: %s (give --secret-file or set %s)\n", err,
			RMP_AUTH_SECRET_ENV);
	return rc;
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct rmp_srv *srv = arg;

	rmp_log_info("%s: shutting down (pools and donors stay; metadata is in shm)",
		     sig == SIGINT ? "SIGINT" : "SIGTERM");
	event_base_loopexit(srv->base, NULL);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rmp_srv *srv = arg;
	uint64_t now = rmp_srv_now_ms();

	rmp_srv_leases_tick(srv, now);
	rmp_srv_donors_reap_overdue(srv, now);
}

static void log_options(const struct rmp_srv *srv)
{
	const struct rmp_config_spec *spec = rmp_srv_options_spec();
	char line[1024];
	size_t used = 0;

	if (!rmp_log_enabled(RMP_LOG_INFO))
		return;
	for (size_t i = 0; i < spec->n_opts; i++) {
		char v[RMP_SRV_PATH_MAX + 1];
		if (rmp_config_format(&spec->opts[i], &srv->cfg, v, sizeof(v)))
			continue;
		int n = snprintf(line + used, sizeof(line) - used, "%s%s=%s", i ? " " : "",
				 spec->opts[i].name, v);
		if (n < 0 || (size_t)n >= sizeof(line) - used)
			break;
		used += (size_t)n;
	}
	rmp_log_info("options: %s", line);
}

int main(int argc, char **argv)
{
	struct rmp_srv srv = { 0 };
	char err[256];
	int status = 1;

	int rc = rmp_srv_options_load(&srv.cfg, argc, argv, stdout, err, sizeof(err));
	if (rc == RMP_CONFIG_HELP)
		return 0;
	if (rc) {
		fprintf(stderr, "rmpool-server: %s\n", err);
		return 2;
	}
	rmp_log_open("rmpool-server", (enum rmp_log_level)srv.cfg.log_level);
	if (load_key(&srv))
		return 2;
	log_options(&srv);
	signal(SIGPIPE, SIG_IGN);

	srv.start_ms = rmp_srv_now_ms();
	srv.next_session = srv.next_request = 1;
	srv.next_agent = srv.next_donor = srv.next_pool = 1;
	rmp_srv_leases_init(&srv.leases, srv.cfg.lease_ms, 1);
	srv.base = event_base_new();
	if (!srv.base) {
		rmp_log_error("event_base_new(): cannot start the event loop");
		goto out_key;
	}
	srv.sig_int = evsignal_new(srv.base, SIGINT, signal_cb, &srv);
	srv.sig_term = evsignal_new(srv.base, SIGTERM, signal_cb, &srv);
	srv.tick = event_new(srv.base, -1, EV_PERSIST, tick_cb, &srv);
	struct timeval tick = { .tv_sec = 0, .tv_usec = TICK_MS * 1000 };
	if (!srv.sig_int || !srv.sig_term || !srv.tick || evsignal_add(srv.sig_int, NULL) ||
	    evsignal_add(srv.sig_term, NULL) || event_add(srv.tick, &tick)) {
		rmp_log_error("event_new(): cannot set up signals and timers");
		goto out_events;
	}
	if (rmp_srv_conn_listen(&srv))
		goto out_events;
	if (rmp_srv_http_start(&srv))
		goto out_listen;
	rmp_srv_rdma_start(&srv);

	rmp_log_info("ready");
	if (event_base_dispatch(srv.base) < 0)
		rmp_log_error("event_base_dispatch(): the event loop failed");
	else
		status = 0;

out_listen:
	rmp_srv_conn_close_all(&srv);
	rmp_srv_pools_free_all(&srv); /* deregisters: before the listener's PD goes */
	while (srv.agents) {
		struct rmp_srv_agent *a = srv.agents;
		srv.agents = a->next;
		free(a);
	}
	rmp_srv_rdma_stop(&srv);
	rmp_srv_http_stop(&srv);
out_events:
	if (srv.tick)
		event_free(srv.tick);
	if (srv.sig_term)
		event_free(srv.sig_term);
	if (srv.sig_int)
		event_free(srv.sig_int);
	event_base_free(srv.base);
out_key:
	rmp_srv_leases_fini(&srv.leases);
	rmp_auth_key_destroy(srv.key);
	return status;
}
