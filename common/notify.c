/* SPDX-License-Identifier: Apache-2.0 */
/* notify.c - see notify.h. A thin layer over libsystemd's sd_notify():
 * the text is formatted here into a bounded buffer (STATUS= lines are
 * meant to be short), control characters become spaces so that a reason
 * taken from elsewhere cannot add assignments of its own, and failures
 * are ignored: the protocol is advisory and a daemon must serve on even
 * if its manager cannot be told.
 *
 * libsystemd is loaded with dlopen(3) on the first notification, and only
 * when $NOTIFY_SOCKET is set (a process systemd started as Type=notify).
 * Why not link it: rmpool-donor is one binary for the host agent and for
 * every donor process, and a donor's address space is what it gives
 * (RLIMIT_AS is its unit of donation): libsystemd and the libraries it
 * pulls in (lzma, zstd, lz4, gcrypt, cap) cost each donor 3.4 MiB of
 * mappings it never uses (5.2 -> 8.6 MiB footprint, measured in
 * rdma_restart). Donors never see $NOTIFY_SOCKET (the agent hides it),
 * so they never load it. The header still comes from libsystemd-dev: the
 * prototype is libsystemd's own.
 */
#include "notify.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-daemon.h>

#define STATUS_MAX 400

static __typeof__(sd_notify) *notify_fn;
static pthread_once_t notify_once = PTHREAD_ONCE_INIT;

static void notify_load(void)
{
	void *h = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
	if (h)
		notify_fn = (__typeof__(sd_notify) *)dlsym(h, "sd_notify");
	if (!notify_fn)
		fprintf(stderr, "rmpool: $NOTIFY_SOCKET is set but libsystemd.so.0 cannot be loaded (%s): "
			"systemd will not hear that this daemon is ready\n", dlerror());
}

/* sd_notify through the loaded library; nothing when not under systemd. */
static void send_text(const char *text)
{
	if (!getenv(RMP_NOTIFY_SOCKET_ENV))
		return;
	pthread_once(&notify_once, notify_load);
	if (notify_fn)
		(void)notify_fn(0, text);
}

static void send_with_status(const char *head, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void send_with_status(const char *head, const char *fmt, va_list ap)
{
	char status[STATUS_MAX];

	if (!getenv(RMP_NOTIFY_SOCKET_ENV))
		return;
	vsnprintf(status, sizeof(status), fmt, ap);
	for (char *c = status; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
	char text[STATUS_MAX + 64];
	snprintf(text, sizeof(text), "%sSTATUS=%s", head, status);
	send_text(text);
}

void rmp_notify_ready(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_with_status("READY=1\n", fmt, ap);
	va_end(ap);
}

void rmp_notify_status(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_with_status("", fmt, ap);
	va_end(ap);
}

void rmp_notify_reloading(void)
{
	send_text("RELOADING=1\nSTATUS=reloading the configuration");
}

void rmp_notify_stopping(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_with_status("STOPPING=1\n", fmt, ap);
	va_end(ap);
}

void rmp_notify_hide(void)
{
	unsetenv(RMP_NOTIFY_SOCKET_ENV);
}
