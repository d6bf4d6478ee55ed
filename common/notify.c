/* SPDX-License-Identifier: Apache-2.0 */
/* notify.c - see notify.h. A thin layer over libsystemd's sd_notify():
 * the text is formatted here into a bounded buffer (STATUS= lines are
 * meant to be short), control characters become spaces so that a reason
 * taken from elsewhere cannot add assignments of its own, and failures
 * are ignored: the protocol is advisory and a daemon must serve on even
 * if its manager cannot be told.
 */
#include "notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-daemon.h>

#define STATUS_MAX 400

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
	(void)sd_notifyf(0, "%sSTATUS=%s", head, status);
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
	if (getenv(RMP_NOTIFY_SOCKET_ENV))
		(void)sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");
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
