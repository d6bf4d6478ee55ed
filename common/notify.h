/* SPDX-License-Identifier: Apache-2.0 */
/* notify.h - the daemons' side of systemd's service protocol: readiness
 * and status (sd_notify(3), Type=notify units).
 *
 * rmpool-server and rmpool-donor (donor and agent) link this; librmpool
 * does not (a library never talks to the init system on its own).
 * Without $NOTIFY_SOCKET - not started by systemd, or a child that was
 * not meant to speak for the unit - every call is a cheap no-op, so
 * callers never test for systemd themselves.
 *
 * What each daemon means by ready (DESIGN.md, "Running under systemd"):
 * the coordinator once its control port accepts, its HTTP port answers
 * and its rdma_cm listener is bound, from inside the running event loop;
 * a host agent once its coordinator accepted AGENT_REGISTER; a standalone
 * donor once its coordinator accepted its region. STATUS= says what it is
 * doing or waiting for, in one line (systemctl status shows it).
 */
#ifndef RMP_NOTIFY_H
#define RMP_NOTIFY_H

#include <stdbool.h>

/* The environment variable systemd names its socket in; a daemon removes
 * it from the environment of the processes it starts (rmp_notify_hide). */
#define RMP_NOTIFY_SOCKET_ENV "NOTIFY_SOCKET"

/* READY=1 with STATUS=<text>. */
void rmp_notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* STATUS=<text> alone. */
void rmp_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* RELOADING=1 (SIGHUP taken), then rmp_notify_ready() when done. */
void rmp_notify_reloading(void);
/* STOPPING=1 with STATUS=<text>. */
void rmp_notify_stopping(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* In a child between fork and exec (single-threaded parent): the child
 * is not the unit's main process and must not speak for it. */
void rmp_notify_hide(void);

#endif /* RMP_NOTIFY_H */
