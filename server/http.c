/* http.c - the HTTP endpoint (libevent evhttp): GET /metrics in the
 * Prometheus text format, GET /healthz (200 "ok", or 503 and the reason
 * while a needed listener is down: health.c). Read-only and unauthenticated,
 * which is why it binds to loopback unless configured otherwise.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "log.h"
#include "srv.h"

static bool only_get(struct evhttp_request *req)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)
		return true;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
	evhttp_send_error(req, 405, "Method Not Allowed");
	return false;
}

static void metrics_cb(struct evhttp_request *req, void *arg)
{
	struct rmp_srv *srv = arg;
	struct rmp_srv_metrics m;
	char small[4096];

	if (!only_get(req))
		return;
	rmp_srv_metrics_snapshot(srv, &m);
	size_t len = rmp_srv_metrics_format(&m, small, sizeof(small));
	char *text = small;
	if (len >= sizeof(small)) {
		text = malloc(len + 1);
		if (!text) {
			rmp_srv_metrics_snapshot_free(&m);
			evhttp_send_error(req, 500, "out of memory");
			return;
		}
		rmp_srv_metrics_format(&m, text, len + 1);
	}
	rmp_srv_metrics_snapshot_free(&m);
	struct evbuffer *body = evbuffer_new();
	if (body)
		evbuffer_add(body, text, len);
	if (text != small)
		free(text);
	if (!body) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, 200, "OK", body);
	evbuffer_free(body);
}

/* 200 "ok", or 503 with the reason (health.c: a needed listener is down). */
static void healthz_cb(struct evhttp_request *req, void *arg)
{
	struct rmp_srv *srv = arg;
	char why[512];

	if (!only_get(req))
		return;
	bool ok = rmp_srv_health(srv, why, sizeof(why));
	struct evbuffer *body = evbuffer_new();
	if (!body) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add_printf(body, "%s\n", why);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
	evhttp_send_reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", body);
	evbuffer_free(body);
}

static void other_cb(struct evhttp_request *req, void *arg)
{
	evhttp_send_error(req, 404, "try /metrics or /healthz");
}

int rmp_srv_http_start(struct rmp_srv *srv)
{
	if (srv->cfg.http_port == 0) {
		rmp_log_info("HTTP endpoint off (http-port 0)");
		return 0;
	}
	srv->http = evhttp_new(srv->base);
	if (!srv->http) {
		rmp_log_error("evhttp_new(): out of memory");
		return -ENOMEM;
	}
	/* Scrapers are trusted and small: bound what one request may cost. */
	evhttp_set_max_headers_size(srv->http, 8192);
	evhttp_set_max_body_size(srv->http, 4096);
	evhttp_set_timeout(srv->http, 10);
	evhttp_set_cb(srv->http, "/metrics", metrics_cb, srv);
	evhttp_set_cb(srv->http, "/healthz", healthz_cb, srv);
	evhttp_set_gencb(srv->http, other_cb, srv);
	if (evhttp_bind_socket(srv->http, srv->cfg.http_addr, (uint16_t)srv->cfg.http_port)) {
		int err = errno;
		rmp_log_syserr("bind()", err, "HTTP endpoint on %s:%d", srv->cfg.http_addr,
			       (int)srv->cfg.http_port);
		evhttp_free(srv->http);
		srv->http = NULL;
		return -(err ? err : EADDRINUSE);
	}
	rmp_log_info("metrics on http://%s:%d/metrics", srv->cfg.http_addr, (int)srv->cfg.http_port);
	return 0;
}

void rmp_srv_http_stop(struct rmp_srv *srv)
{
	if (srv->http) {
		evhttp_free(srv->http);
		srv->http = NULL;
	}
}
