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
 * The recorded pools are re-adopted once the rdma_cm listener is bound,
 * which may be later (rdma_listen.c retries it). systemd hears READY=1
 * from the running loop once every needed listener answers (health.c).
 *
 * SIGHUP reloads: the command line and the --config file are read again
 * (flags still override the file) and the options that can change while
 * running - RELOADABLE below - take effect; any other changed option is
 * logged as needing a restart; a file that does not parse changes
 * nothing. Each reload is logged. SIGHUP never stops the coordinator.
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
#include "notify.h"
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

/* Options read at each use (or each new connection), so a reload can
 * change them; the others are fixed at start. */
static const char *const RELOADABLE[] = { "log-level",	       "max-connections",
					  "handshake-timeout", "provision-timeout",
					  "terminate-timeout", "donor-return-timeout" };

static bool reloadable(const char *name)
{
	for (size_t i = 0; i < sizeof(RELOADABLE) / sizeof(RELOADABLE[0]); i++)
		if (strcmp(RELOADABLE[i], name) == 0)
			return true;
	return false;
}

/* Appends "name old -> new" to a list line (cut when full: it is a log). */
static void list_change(char *line, size_t cap, const char *name, const char *from,
			const char *to)
{
	size_t used = strlen(line);
	int n = snprintf(line + used, cap - used, "%s%s %.200s -> %.200s", used ? ", " : "", name,
			 from, to);
	if (n < 0)
		line[used] = '\0';
}

/* SIGHUP: the options read again and the reloadable ones applied. */
static void reload(struct rmp_srv *srv)
{
	static struct rmp_srv_cfg fresh; /* static: large, and the loop is one thread */
	const struct rmp_config_spec *spec = rmp_srv_options_spec();
	char err[512], applied[1024] = "", fixed[1024] = "";

	if (srv->ready_sent)
		rmp_notify_reloading();
	int rc = rmp_srv_options_load(&fresh, srv->argc, srv->argv, NULL, err, sizeof(err));
	if (rc) {
		rmp_log_error("SIGHUP: the configuration does not load, nothing changed: %s", err);
		snprintf(applied, sizeof(applied), "nothing (the configuration does not load)");
	}
	for (size_t i = 0; !rc && i < spec->n_opts; i++) {
		const struct rmp_config_option *o = &spec->opts[i];
		char was[RMP_SRV_PATH_MAX + 1], now[RMP_SRV_PATH_MAX + 1];
		if (rmp_config_format(o, &srv->cfg, was, sizeof(was)) ||
		    rmp_config_format(o, &fresh, now, sizeof(now)) || strcmp(was, now) == 0)
			continue;
		if (!reloadable(o->name)) {
			list_change(fixed, sizeof(fixed), o->name, was, now);
			continue;
		}
		memcpy((char *)&srv->cfg + o->offset, (const char *)&fresh + o->offset, o->size);
		list_change(applied, sizeof(applied), o->name, was, now);
	}
	if (!rc) {
		rmp_log_set_level((enum rmp_log_level)srv->cfg.log_level);
		/* At warning, so that it shows whatever the new level is. */
		rmp_log_warn("SIGHUP: configuration reloaded; applied: %s",
			     applied[0] ? applied : "no change");
		if (fixed[0])
			rmp_log_warn("SIGHUP: changed but fixed until the next start: %s", fixed);
	}
	if (srv->ready_sent)
		rmp_notify_ready("serving; reloaded at SIGHUP: %s", applied[0] ? applied : "no change");
}

static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
	reload(arg);
}

/* The first callback of the running loop: from here on a connection to
 * the listeners is served, so readiness may be told (health.c). */
static void loop_started_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rmp_srv *srv = arg;

	srv->loop_running = true;
	rmp_srv_health_update(srv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct rmp_srv *srv = arg;

	rmp_notify_stopping("stopping (%s); pools and donors stay for the next start",
			    sig == SIGINT ? "SIGINT" : "SIGTERM");
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
	rmp_srv_cuts_tick(srv, now);
	rmp_srv_reclaims_tick(srv, now);
	rmp_srv_self_tick(srv, now);
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
	srv.argc = argc;
	srv.argv = argv;
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
	srv.sig_hup = evsignal_new(srv.base, SIGHUP, hup_cb, &srv);
	srv.tick = event_new(srv.base, -1, EV_PERSIST, tick_cb, &srv);
	struct timeval tick = { .tv_sec = 0, .tv_usec = TICK_MS * 1000 };
	if (!srv.sig_int || !srv.sig_term || !srv.sig_hup || !srv.tick ||
	    evsignal_add(srv.sig_int, NULL) || evsignal_add(srv.sig_term, NULL) ||
	    evsignal_add(srv.sig_hup, NULL) || event_add(srv.tick, &tick)) {
		rmp_log_error("event_new(): cannot set up signals and timers");
		goto out_events;
	}
	if (rmp_srv_conn_listen(&srv))
		goto out_events;
	if (rmp_srv_http_start(&srv))
		goto out_listen;
	if (rmp_srv_self_start(&srv))
		rmp_log_warn("the loopback engine did not start: lost donors' segments will not be "
			     "retired in the allocator");
	rmp_srv_rdma_start(&srv);
	/* Recorded pools are checked now; those that need the listener's
	 * protection domain and find none wait for the retry that binds it
	 * (rmp_srv_rdma_up). */
	rmp_srv_recover_adopt(&srv);
	srv.adopted = srv.rdma || !srv.rdma_retry;
	const struct timeval now = { 0, 0 };
	if (event_base_once(srv.base, -1, EV_TIMEOUT, loop_started_cb, &srv, &now)) {
		rmp_log_error("event_base_once(): cannot schedule the readiness check");
		goto out_listen;
	}

	rmp_log_info("serving (generation %" PRIu64 ")", srv.generation);
	if (event_base_dispatch(srv.base) < 0)
		rmp_log_error("event_base_dispatch(): the event loop failed");
	else
		status = 0;

out_listen:
	rmp_srv_conn_close_all(&srv);
	rmp_srv_self_stop(&srv); /* its connection goes before the pools' registrations */
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
	if (srv.sig_hup)
		event_free(srv.sig_hup);
	if (srv.sig_term)
		event_free(srv.sig_term);
	if (srv.sig_int)
		event_free(srv.sig_int);
	event_base_free(srv.base);
out_state:
	if (!srv.base) /* nothing above ran: the records loaded are freed here */
		rmp_srv_pools_free_all(&srv);
	rmp_state_close(srv.state);
	rmp_srv_cuts_free(&srv);
	rmp_srv_reclaims_free(&srv);
	rmp_srv_leases_fini(&srv.leases);
	rmp_auth_key_destroy(srv.key);
	return status;
}
