/* main.c - rmpool-server: options, the secret, the state, the event loop.
 *
 * Start-up order: options (refused with the option's name, value and
 * range), the secret (file or RMPOOL_SECRET; never printed; a file that
 * group or others may read is used with a warning), the state store
 * (--state-dir: refused, exit 1, when it is held by another coordinator,
 * damaged, foreign, newer, or not writable; its generation is raised) and
 * what it records (recover.c), the control listener, HTTP, the rdma_cm
 * listener, which may be missing (see rdma_listen.c), then the recorded
 * pools are re-adopted - all before the event loop serves anyone. A
 * 250 ms tick expires leases, marks donors that did not come back lost
 * and forgets donors that never reported their exit.
 *
 * SIGINT/SIGTERM stop the loop and close every connection, like a crash:
 * pools are not destroyed, donors are not terminated and the state keeps
 * every record; the metadata lives on in shared memory and the donors
 * keep their regions, and the next start takes them back (DESIGN.md,
 * "Failure model").
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "clock.h"
#include "log.h"
#include "secret.h"
#include "srv.h"

#define TICK_MS 250

/* The shared secret: --secret-file (common/secret.h: one trailing
 * newline trimmed, length bounds, buffers wiped), else RMPOOL_SECRET.
 * Failures go to stderr, like every start-up refusal. */
static int load_key(struct rmp_srv *srv)
{
	const char *path = srv->cfg.secret_file;
	char err[256];
	int rc;

	if (path[0]) {
		char *secret;
		bool loose;
		rc = rmp_secret_read_file_dup(path, &secret, &loose, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "rmpool-server: --secret-file: %s\n", err);
			return rc;
		}
		if (loose)
			rmp_log_warn("--secret-file \"%s\" is readable by group or others; chmod 600 it",
				     path);
		rc = rmp_auth_key_create(secret, &srv->key, err, sizeof(err));
		rmp_secret_free(secret);
		if (rc)
			fprintf(stderr, "rmpool-server: --secret-file \"%s\": %s\n", path, err);
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

	rmp_log_info("%s: shutting down; pools, donors and the state stay (metadata in shm, "
		     "records in %s): the next start takes them back",
		     sig == SIGINT ? "SIGINT" : "SIGTERM", rmp_state_path(srv->state));
	event_base_loopexit(srv->base, NULL);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rmp_srv *srv = arg;
	uint64_t now = rmp_mono_ms();

	rmp_srv_leases_tick(srv, now);
	rmp_srv_donors_tick(srv, now);
	rmp_srv_donors_reap_overdue(srv, now);
	/* A recovering pool whose record could not be written last time. */
	for (struct rmp_srv_pool *p = srv->pools; p; p = p->next)
		rmp_srv_pool_check_recovered(p);
}

/* The state store and what it records; refusals go to stderr, exit 1. */
static int open_state(struct rmp_srv *srv)
{
	char err[600];

	int rc = rmp_state_open_sqlite(srv->cfg.state_dir, &srv->state, &srv->generation, err,
				       sizeof(err));
	if (rc) {
		fprintf(stderr, "rmpool-server: --state-dir: %s\n", err);
		return rc;
	}
	rc = rmp_srv_recover_load(srv, err, sizeof(err));
	if (rc)
		fprintf(stderr, "rmpool-server: --state-dir %s: %s\n", srv->cfg.state_dir, err);
	return rc;
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

	srv.start_ms = rmp_mono_ms();
	srv.next_session = srv.next_request = 1;
	srv.next_agent = srv.next_donor = srv.next_pool = 1;
	rmp_srv_leases_init(&srv.leases, srv.cfg.lease_ms, 1);
	if (open_state(&srv))
		goto out_state;
	srv.base = event_base_new();
	if (!srv.base) {
		rmp_log_error("event_base_new(): cannot start the event loop");
		goto out_state;
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
	rmp_srv_recover_adopt(&srv);

	rmp_log_info("ready (generation %" PRIu64 ")", srv.generation);
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
out_state:
	if (!srv.base) /* nothing above ran: the records loaded are freed here */
		rmp_srv_pools_free_all(&srv);
	rmp_state_close(srv.state);
	rmp_srv_leases_fini(&srv.leases);
	rmp_auth_key_destroy(srv.key);
	return status;
}
