/* agent.c - the host agent (DESIGN.md, Process model): a long-running
 * daemon that starts donor processes on this host when the coordinator
 * asks, within the host's budget, and reaps them.
 *
 *   agent                                  coordinator
 *   (measure a donor's footprint once: run ourselves --measure-footprint)
 *   HELLO/.../AUTH_OK (role AGENT)  <-->
 *   AGENT_REGISTER {host, budget, process_limit, footprint} -->
 *                                   <--    AGENT_REGISTERED
 *                                   <--    SPAWN {request, pool, donor, len}
 *   fork+exec rmpool-donor (secret in its environment, never in argv)
 *   PROGRESS {SPAWNED, pid} or {FAILED, why with the numbers} -->
 *                                   <--    TERMINATE {request, donor}
 *   SIGTERM, SIGKILL after --term-grace, reap
 *   PROGRESS {EXITED, error when it died abnormally} -->
 *
 * Budget: a donor costs its region plus the measured footprint (the same
 * cost sizing.h's placement uses); SPAWN is refused when the live donors'
 * costs plus the new one would exceed --budget.
 *
 * Donors outlive their agent (issue 11): a donor serves a pool, not the
 * agent that started it, so losing the agent must not lose its memory.
 * The child calls setsid() before exec - a session and process group of
 * its own, so neither a signal to the agent's group nor a hangup of its
 * terminal reaches it - and gets no death signal. When the coordinator
 * connection drops the donors keep serving (each has its own connection
 * and finds its way back by itself, donor.c) and the agent reconnects
 * with exponential backoff from 1 s to --reconnect-max, jittered (the
 * agents of one restarted coordinator should not arrive together),
 * logging the loss and the return once each. SIGTERM ends the agent
 * alone: it finishes the terminations under way (bounded by
 * --term-grace) and leaves the other donors running. SIGHUP reloads the
 * log level (dn_reload).
 *
 * Under systemd (Type=notify) the agent is ready once its coordinator
 * accepted AGENT_REGISTER - only then can donors be placed on this host -
 * and STATUS= says whom it waits for meanwhile. The donors it starts do
 * not inherit $NOTIFY_SOCKET: they are not the unit's main process.
 *
 * A restarted agent adopts the donors it finds running on this host for
 * the same coordinator (adopt.h says how, and why /proc rather than the
 * coordinator): they count against its budget, and TERMINATE works on
 * them through a pidfd (pidfd_send_signal, then the pidfd turning
 * readable at the exit; Linux >= 5.3). Not our children, their exit
 * status is unknown: EXITED carries no error unless they needed SIGKILL.
 * The coordinator is not told anything new: each donor re-registers on
 * its own connection, and the coordinator hands the donors it has on
 * record for this host to the agent that registers for it (server/
 * agents.c), so the protocol is unchanged.
 *
 * Why a poll loop and not libevent: the agent watches a few fds (the
 * coordinator socket, a signalfd for SIGCHLD/SIGTERM, the pidfds of
 * adopted donors) and one timer (the nearest SIGKILL deadline), sends a
 * handful of small frames and shares its blocking-with-deadline I/O with
 * the donor role and the library (common/ctlconn.c).
 * libevent would add a dependency and buffering without removing code.
 */
#include "donor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adopt.h"
#include "clock.h"
#include "link.h"
#include "log.h"
#include "notify.h"
#include "rdma.h"
#include "wire.h"

#define BACKOFF_START_MS 1000
#define BACKOFF_JITTER_PCT 50
#define FOOTPRINT_TIMEOUT_MS 60000 /* opening the device is slow under TCG */

struct child {
	pid_t pid;
	int pidfd;	/* an adopted donor's (not our child); -1 for a child */
	bool killed;	/* SIGKILL sent */
	uint32_t donor_id;
	uint32_t pool_id;
	uint64_t request_id; /* the SPAWN's, then the TERMINATE's */
	uint64_t cost;	     /* region + footprint, counted against the budget */
	uint64_t kill_at_ms; /* SIGKILL when this passes; 0: not terminating */
	struct child *next;
};

struct agent {
	const struct dn_cfg *cfg;
	const rmp_auth_key *key;
	const char *secret;
	char self[PATH_MAX];
	char host[RMP_WIRE_HOST_MAX + 1];
	uint64_t footprint;
	uint64_t used;
	unsigned n_children;
	struct child *children;
	struct rmp_ctlconn ctl; /* set up once; reconnected after each loss */
	bool connected;
	char lost_why[600]; /* why connected went false, for the one log line */
	bool stopping;
	int sfd;
	struct pollfd *pfd; /* wait_once's, grown with the adopted donors */
	size_t pfd_cap;
};

static const char *human(uint64_t bytes, char *buf, size_t len)
{
	rmp_config_format_bytes(bytes, buf, len);
	return buf;
}

/* ---- talking to the coordinator ---- */

static void send_progress(struct agent *a, uint64_t request_id, uint32_t donor_id, uint8_t state,
			  pid_t pid, int error, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
static void send_progress(struct agent *a, uint64_t request_id, uint32_t donor_id, uint8_t state,
			  pid_t pid, int error, const char *fmt, ...)
{
	struct rmp_wire_msg m = {.type = RMP_MSG_PROGRESS};
	struct rmp_wire_progress *p = &m.u.progress;
	va_list ap;

	p->request_id = request_id;
	p->donor_id = donor_id;
	p->state = state;
	p->pid = (uint32_t)(pid > 0 ? pid : 0);
	p->error = (uint32_t)error;
	va_start(ap, fmt);
	vsnprintf(p->text, sizeof(p->text), fmt, ap);
	va_end(ap);
	/* Keep the text within what the wire allows (printable bytes). */
	for (char *s = p->text; *s; s++)
		if ((unsigned char)*s < 0x20)
			*s = ' ';
	if (state == RMP_PROGRESS_FAILED || error)
		rmp_log_warn("donor %u: %s", donor_id, p->text);
	else
		rmp_log_info("donor %u: %s", donor_id, p->text);
	if (!a->connected)
		return;
	int rc = rmp_ctlconn_send(&a->ctl, &m, rmp_deadline_ms(a->cfg->timeout_ms));
	if (rc) {
		snprintf(a->lost_why, sizeof(a->lost_why), "rmp_ctlconn_send(): PROGRESS: %s",
			 strerror(-rc));
		a->connected = false; /* the loop notices and reconnects */
	}
}

/* ---- children ---- */

static struct child *child_by_donor(struct agent *a, uint32_t donor_id)
{
	for (struct child *c = a->children; c; c = c->next)
		if (c->donor_id == donor_id)
			return c;
	return NULL;
}

static void child_remove(struct agent *a, struct child *gone)
{
	for (struct child **pp = &a->children; *pp; pp = &(*pp)->next) {
		if (*pp == gone) {
			*pp = gone->next;
			break;
		}
	}
	a->used -= gone->cost;
	a->n_children--;
	if (gone->pidfd >= 0)
		close(gone->pidfd);
	free(gone);
}

/* kill(2) for a child, pidfd_send_signal(2) for an adopted donor (its
 * pid might have been reused by now; the pidfd cannot be). 0 or -errno. */
static int signal_child(struct child *c, int sig)
{
	int rc = c->pidfd >= 0 ? pidfd_send_signal(c->pidfd, sig, NULL, 0) : kill(c->pid, sig);
	return rc ? -errno : 0;
}

/* An adopted donor's pidfd turned readable: it has exited. Not our
 * child, so its status is not ours to read. */
static void adopted_exited(struct agent *a, struct child *c)
{
	bool asked = c->kill_at_ms != 0;
	if (c->killed)
		send_progress(a, c->request_id, c->donor_id, RMP_PROGRESS_EXITED, c->pid, ETIMEDOUT,
			      "pid %ld (adopted) killed: it ignored SIGTERM for the grace period",
			      (long)c->pid);
	else
		send_progress(a, c->request_id, c->donor_id, RMP_PROGRESS_EXITED, c->pid, 0,
			      "pid %ld (adopted, not our child: exit status unknown) exited%s",
			      (long)c->pid, asked ? "" : " unasked (see the donor's log)");
	child_remove(a, c);
}

/* Reaps every child that has exited and reports it. */
static void reap(struct agent *a)
{
	int st;
	pid_t pid = 0;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		struct child *c = a->children;
		while (c && c->pid != pid)
			c = c->next;
		if (!c)
			continue; /* the footprint probe, reaped elsewhere */
		bool asked = c->kill_at_ms != 0;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
			send_progress(a, c->request_id, c->donor_id, RMP_PROGRESS_EXITED, pid, 0,
				      "pid %ld exited", (long)pid);
		else if (WIFEXITED(st))
			send_progress(a, c->request_id, c->donor_id, RMP_PROGRESS_EXITED, pid, EIO,
				      "pid %ld exited with status %d (see the donor's log)",
				      (long)pid, WEXITSTATUS(st));
		else
			send_progress(a, c->request_id, c->donor_id, RMP_PROGRESS_EXITED, pid,
				      asked && WTERMSIG(st) == SIGKILL ? ETIMEDOUT : EIO,
				      "pid %ld killed by signal %d (%s)%s", (long)pid,
				      WTERMSIG(st), strsignal(WTERMSIG(st)),
				      asked && WTERMSIG(st) == SIGKILL
					      ? ": it ignored SIGTERM for the grace period"
					      : "");
		child_remove(a, c);
	}
}

static void terminate_child(struct agent *a, struct child *c)
{
	if (c->kill_at_ms)
		return; /* already on its way */
	int rc = signal_child(c, SIGTERM);
	if (rc && rc != -ESRCH)
		rmp_log_syserr(c->pidfd >= 0 ? "pidfd_send_signal" : "kill", -rc,
			       "SIGTERM to donor %u (pid %ld)", c->donor_id, (long)c->pid);
	c->kill_at_ms = rmp_deadline_ms(a->cfg->term_grace_ms);
}

/* SIGKILLs children past their grace; returns ms to the next deadline. */
static int enforce_deadlines(struct agent *a)
{
	uint64_t now = rmp_mono_ms();
	int next = -1;

	for (struct child *c = a->children; c; c = c->next) {
		if (!c->kill_at_ms)
			continue;
		if (now >= c->kill_at_ms) {
			c->killed = true;
			if (signal_child(c, SIGKILL) == 0)
				rmp_log_warn("donor %u (pid %ld) still there after %" PRIu64
					     " ms: SIGKILL",
					     c->donor_id, (long)c->pid, a->cfg->term_grace_ms);
			/* Check again after another grace; a process in D state
			 * may take a while even for SIGKILL. */
			c->kill_at_ms = now + a->cfg->term_grace_ms;
		}
		int left = (int)(c->kill_at_ms - now);
		if (next < 0 || left < next)
			next = left;
	}
	return next;
}

/* Drains signals: SIGCHLD reaps, SIGTERM/SIGINT start the shutdown,
 * SIGHUP reloads the log level. */
static void on_signals(struct agent *a)
{
	struct signalfd_siginfo si;
	while (read(a->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP)
			dn_reload();
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			if (!a->stopping)
				rmp_notify_stopping("stopping (%s); the donors keep serving",
						    strsignal((int)si.ssi_signo));
			unsigned ending = 0;
			for (struct child *c = a->children; c; c = c->next)
				ending += c->kill_at_ms != 0;
			if (!a->stopping)
				rmp_log_info("%s: the agent leaves; its %u other donor(s) keep serving "
					     "(a restarted agent adopts them)%s",
					     strsignal((int)si.ssi_signo), a->n_children - ending,
					     ending ? ", once the terminations under way are done" : "");
			a->stopping = true;
		}
	}
	reap(a);
}

/* "host:port" as our own --coordinator flag reads it back. */
static void format_hostport(const struct rmp_config_hostport *hp, char *buf, size_t len)
{
	if (strchr(hp->host, ':'))
		snprintf(buf, len, "[%s]:%u", hp->host, (unsigned)hp->port);
	else
		snprintf(buf, len, "%s:%u", hp->host, (unsigned)hp->port);
}

/* pipe2(O_CLOEXEC) and fork; the child starts with an empty signal mask
 * (the agent's mask would survive exec). The pid (0 in the child), or
 * -errno with the pipe closed. */
static pid_t fork_piped(int pfd[2])
{
	if (pipe2(pfd, O_CLOEXEC))
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(pfd[0]);
		close(pfd[1]);
		return -e;
	}
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
	}
	return pid;
}

/* fork + exec a donor. The exec's success is known before we answer: a
 * close-on-exec pipe stays silent when exec works and carries errno when
 * it does not. */
static int spawn_donor(struct agent *a, const struct rmp_wire_spawn *s, pid_t *out, int *child_err)
{
	const struct dn_cfg *cfg = a->cfg;
	char coord[300], pool[16], donor[16], size[32], limit[32], tmo[32], grace[32];
	int pfd[2];

	format_hostport(&cfg->coordinator, coord, sizeof(coord));
	snprintf(pool, sizeof(pool), "%u", s->pool_id);
	snprintf(donor, sizeof(donor), "%u", s->donor_id);
	snprintf(size, sizeof(size), "%" PRIu64, s->region_len);
	snprintf(limit, sizeof(limit), "%" PRIu64, cfg->process_limit);
	snprintf(tmo, sizeof(tmo), "%" PRIu64 "ms", cfg->timeout_ms);
	snprintf(grace, sizeof(grace), "%" PRIu64 "ms", cfg->orphan_grace_ms);
	/* adopt.c reads this argv back after an agent restart. */
	char *argv[] = {a->self,	   "--coordinator", coord,
			"--pool-id",	   pool,	    "--donor-id",
			donor,		   "--size",	    size,
			"--process-limit", limit,	    "--timeout",
			tmo,		   "--orphan-grace", grace,
			"--log-level",	   (char *)dn_log_levels[cfg->log_level],
			cfg->rdma_addr[0] ? "--rdma-addr" : NULL, (char *)cfg->rdma_addr,
			NULL};

	pid_t pid = fork_piped(pfd);
	if (pid < 0)
		return (int)pid;
	if (pid == 0) {
		/* Child: async-signal-safe calls only until exec. A session of
		 * its own and no death signal: the donor outlives the agent. */
		int e = 0;
		if (setsid() < 0)
			e = errno;
		rmp_notify_hide(); /* the donor does not speak for our unit */
		if (!e && a->secret && setenv(RMP_AUTH_SECRET_ENV, a->secret, 1))
			e = errno;
		if (!e) {
			execv(a->self, argv);
			e = errno;
		}
		ssize_t ignored = write(pfd[1], &e, sizeof(e));
		(void)ignored;
		_exit(127);
	}
	close(pfd[1]);
	int e = 0;
	ssize_t n;
	do
		n = read(pfd[0], &e, sizeof(e)); /* returns at exec or exit */
	while (n < 0 && errno == EINTR);
	close(pfd[0]);
	*out = pid;
	*child_err = n == (ssize_t)sizeof(e) ? e : 0;
	return 0;
}

static void on_spawn(struct agent *a, const struct rmp_wire_spawn *s)
{
	const struct dn_cfg *cfg = a->cfg;
	char b1[32], b2[32], b3[32], b4[32];
	uint64_t cost = s->region_len + a->footprint;

	if (a->stopping) {
		send_progress(a, s->request_id, s->donor_id, RMP_PROGRESS_FAILED, 0, ESHUTDOWN,
			      "the agent is shutting down");
		return;
	}
	if (child_by_donor(a, s->donor_id)) {
		send_progress(a, s->request_id, s->donor_id, RMP_PROGRESS_FAILED, 0, EEXIST,
			      "donor %u already runs on this host", s->donor_id);
		return;
	}
	if (s->region_len == 0 || cost < s->region_len) {
		send_progress(a, s->request_id, s->donor_id, RMP_PROGRESS_FAILED, 0, EINVAL,
			      "region of %" PRIu64 " bytes is not a region", s->region_len);
		return;
	}
	if (cfg->process_limit && cost > cfg->process_limit) {
		send_progress(a, s->request_id, s->donor_id, RMP_PROGRESS_FAILED, 0, E2BIG,
			      "region %s + donor footprint %s exceeds the per-process limit %s",
			      human(s->region_len, b1, sizeof(b1)), human(a->footprint, b2, sizeof(b2)),
			      human(cfg->process_limit, b3, sizeof(b3)));
		return;
	}
	if (a->used + cost > cfg->budget) {
		send_progress(a, s->request_id, s->donor_id, RMP_PROGRESS_FAILED, 0, ENOSPC,
			      "over budget: region %s + footprint %s, with %s in use by %u donor(s), "
			      "exceeds this host's budget of %s",
			      human(s->region_len, b1, sizeof(b1)), human(a->footprint, b2, sizeof(b2)),
			      human(a->used, b3, sizeof(b3)), a->n_children,
			      human(cfg->budget, b4, sizeof(b4)));
		return;
	}
	struct child *c = calloc(1, sizeof(*c));
	if (!c) {
		send_progress(a, s->request_id, s->donor_id, RMP_PROGRESS_FAILED, 0, ENOMEM,
			      "out of memory in the agent");
		return;
	}
	pid_t pid = 0;
	int child_err = 0;
	int rc = spawn_donor(a, s, &pid, &child_err);
	if (rc) {
		free(c);
		send_progress(a, s->request_id, s->donor_id, RMP_PROGRESS_FAILED, 0, -rc,
			      "fork(): %s", strerror(-rc));
		return;
	}
	*c = (struct child){.pid = pid, .pidfd = -1, .donor_id = s->donor_id, .pool_id = s->pool_id,
			    .request_id = s->request_id, .cost = cost, .next = a->children};
	a->children = c;
	a->n_children++;
	a->used += cost;
	if (child_err) {
		/* It exits at once; reap() removes it and reports EXITED too,
		 * but FAILED is the answer to this request. */
		send_progress(a, s->request_id, s->donor_id, RMP_PROGRESS_FAILED, pid, child_err,
			      "execv(%s): %s", a->self, strerror(child_err));
		c->request_id = 0;
		return;
	}
	send_progress(a, s->request_id, s->donor_id, RMP_PROGRESS_SPAWNED, pid, 0,
		      "pid %ld, %s region for pool %u", (long)pid,
		      human(s->region_len, b1, sizeof(b1)), s->pool_id);
}

static void on_terminate(struct agent *a, const struct rmp_wire_terminate *t)
{
	struct child *c = child_by_donor(a, t->donor_id);
	if (!c) {
		send_progress(a, t->request_id, t->donor_id, RMP_PROGRESS_EXITED, 0, ESRCH,
			      "no donor %u on this host", t->donor_id);
		return;
	}
	c->request_id = t->request_id;
	rmp_log_info("terminating donor %u (pid %ld)", c->donor_id, (long)c->pid);
	terminate_child(a, c);
}

/* Reads and handles coordinator frames; clears a->connected on loss. */
static void on_control(struct agent *a)
{
	char err[512];
	struct rmp_wire_msg m;
	int rc = rmp_ctlconn_fill(&a->ctl);

	for (;;) {
		int got = rmp_ctlconn_pop(&a->ctl, &m, err, sizeof(err));
		if (got < 0) {
			snprintf(a->lost_why, sizeof(a->lost_why), "a bad frame: %s", err);
			a->connected = false;
			return;
		}
		if (got == 0)
			break;
		switch (m.type) {
		case RMP_MSG_SPAWN:
			on_spawn(a, &m.u.spawn);
			break;
		case RMP_MSG_TERMINATE:
			on_terminate(a, &m.u.terminate);
			break;
		case RMP_MSG_ERROR:
			rmp_log_warn("the coordinator reports: %s", m.u.error.text);
			break;
		default:
			rmp_log_debug("ignoring %s", rmp_wire_type_name(m.type));
			rmp_wire_msg_release(&m);
			break;
		}
		if (!a->connected)
			return;
	}
	if (rc) {
		snprintf(a->lost_why, sizeof(a->lost_why), "%s",
			 rc == -ECONNRESET ? "it closed the connection" : strerror(-rc));
		a->connected = false;
	}
}

/* Connect, handshake, AGENT_REGISTER, AGENT_REGISTERED. Quiet on failure
 * (run_sessions logs): why says what went wrong. */
static int register_agent(struct agent *a, char *why, size_t whylen)
{
	const struct dn_cfg *cfg = a->cfg;
	char err[512];

	int rc = dn_link_try(&a->ctl, cfg, why, whylen);
	if (rc)
		return rc;
	struct rmp_wire_msg m = {.type = RMP_MSG_AGENT_REGISTER};
	snprintf(m.u.agent_register.host, sizeof(m.u.agent_register.host), "%s", a->host);
	m.u.agent_register.budget = cfg->budget;
	m.u.agent_register.process_limit = cfg->process_limit;
	m.u.agent_register.donor_footprint = a->footprint;
	rc = rmp_ctlconn_send(&a->ctl, &m, rmp_deadline_ms(cfg->timeout_ms));
	if (rc) {
		snprintf(why, whylen, "rmp_ctlconn_send(): AGENT_REGISTER to %s: %s", a->ctl.peer,
			 strerror(-rc));
		goto out_close;
	}
	rc = rmp_ctlconn_recv(&a->ctl, &m, rmp_deadline_ms(cfg->timeout_ms), err, sizeof(err));
	if (rc) {
		snprintf(why, whylen, "waiting for AGENT_REGISTERED: %s", err);
		goto out_close;
	}
	if (m.type != RMP_MSG_AGENT_REGISTERED) {
		snprintf(why, whylen, "%s answered AGENT_REGISTER with %s%s%s", a->ctl.peer,
			 rmp_wire_type_name(m.type), m.type == RMP_MSG_ERROR ? ": " : "",
			 m.type == RMP_MSG_ERROR ? m.u.error.text : "");
		rmp_wire_msg_release(&m);
		rc = -EPROTO;
		goto out_close;
	}
	char b1[32], b2[32], b3[32], b4[32];
	rmp_log_info("agent %u for host %s at %s: budget %s, process limit %s, donor footprint %s; "
		     "%u donor(s) running, %s in use",
		     m.u.agent_registered.agent_id, a->host, a->ctl.peer,
		     human(cfg->budget, b1, sizeof(b1)), human(cfg->process_limit, b2, sizeof(b2)),
		     human(a->footprint, b3, sizeof(b3)), a->n_children,
		     human(a->used, b4, sizeof(b4)));
	/* Ready (again): the coordinator can place donors on this host. */
	rmp_notify_ready("registered with %s as host %s: budget %s, %u donor(s), %s in use",
			 a->ctl.peer, a->host, b1, a->n_children, b4);
	a->connected = true;
	return 0;

out_close:
	rmp_ctlconn_close(&a->ctl);
	return rc;
}

/* Runs `self --measure-footprint` and reads the number it prints. */
static int measure_footprint(struct agent *a)
{
	int pfd[2];
	char out[64] = "";
	size_t got = 0;
	char *argv[] = {a->self, "--measure-footprint", "--log-level", "error",
			a->cfg->rdma_addr[0] ? "--rdma-addr" : NULL, (char *)a->cfg->rdma_addr,
			NULL};

	pid_t pid = fork_piped(pfd);
	if (pid < 0)
		return (int)pid;
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		rmp_notify_hide();
		execv(a->self, argv);
		_exit(127);
	}
	close(pfd[1]);
	uint64_t deadline = rmp_deadline_ms(FOOTPRINT_TIMEOUT_MS);
	for (;;) {
		uint64_t now = rmp_mono_ms();
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		if (now >= deadline || poll(&p, 1, (int)(deadline - now)) == 0) {
			kill(pid, SIGKILL);
			break;
		}
		ssize_t n = read(pfd[0], out + got, sizeof(out) - 1 - got);
		if (n > 0 && got + (size_t)n < sizeof(out) - 1) {
			got += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	close(pfd[0]);
	int st = 0;
	waitpid(pid, &st, 0);
	out[got] = '\0';
	char *end;
	unsigned long long v = strtoull(out, &end, 10);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || end == out || v == 0) {
		rmp_log_error("%s --measure-footprint failed (status %#x, output \"%.40s\"): "
			      "is there an RDMA device (see its own error above)?",
			      a->self, (unsigned)st, out);
		return -EIO;
	}
	a->footprint = v;
	return 0;
}

/* One poll over the signalfd, the coordinator socket (when connected)
 * and the adopted donors' pidfds, then whatever came. timeout_ms as
 * poll(2)'s. */
static void wait_once(struct agent *a, int timeout_ms)
{
	size_t want = 2 + a->n_children, n = 0;
	if (want > a->pfd_cap) {
		struct pollfd *p = realloc(a->pfd, want * sizeof(*p));
		if (p) {
			a->pfd = p;
			a->pfd_cap = want;
		}
	}
	if (a->pfd_cap < 2) { /* not even that: wait on the signals alone */
		struct pollfd p = {.fd = a->sfd, .events = POLLIN};
		if (poll(&p, 1, timeout_ms) > 0)
			on_signals(a);
		return;
	}
	struct pollfd *p = a->pfd;
	p[n++] = (struct pollfd){.fd = a->sfd, .events = POLLIN};
	p[n++] = (struct pollfd){.fd = a->connected ? a->ctl.fd : -1, .events = POLLIN};
	for (struct child *c = a->children; c && n < a->pfd_cap; c = c->next)
		if (c->pidfd >= 0)
			p[n++] = (struct pollfd){.fd = c->pidfd, .events = POLLIN};
	int k = poll(p, (nfds_t)n, timeout_ms);
	if (k < 0 && errno != EINTR) {
		rmp_log_syserr("poll", errno, "agent loop");
		a->stopping = true;
	}
	if (k <= 0)
		return;
	if (p[0].revents)
		on_signals(a);
	if (p[1].revents)
		on_control(a);
	/* Neither removes an adopted donor, so the fds still name them. */
	for (size_t i = 2; i < n; i++) {
		if (!p[i].revents)
			continue;
		for (struct child *c = a->children; c; c = c->next) {
			if (c->pidfd == p[i].fd) {
				adopted_exited(a, c);
				break;
			}
		}
	}
}

/* Waits ms (or until a signal), reaping children meanwhile. */
static void pause_ms(struct agent *a, uint64_t ms)
{
	uint64_t until = rmp_deadline_ms(ms);
	int left;
	/* rmp_ms_left, not until - now: the time may pass between a check
	 * and the subtraction, and a wrapped difference is an endless poll. */
	while (!a->stopping && (left = rmp_ms_left(until)) > 0) {
		int next = enforce_deadlines(a);
		wait_once(a, next >= 0 && next < left ? next : left);
	}
}

/* At SIGTERM: the terminations under way are finished (SIGKILL after the
 * grace, then at most one more grace), so that their EXITED still
 * reaches the coordinator; every other donor stays. */
static void finish_terminations(struct agent *a)
{
	uint64_t give_up = rmp_deadline_ms(3 * a->cfg->term_grace_ms);
	for (;;) {
		bool ending = false;
		for (struct child *c = a->children; c; c = c->next)
			ending |= c->kill_at_ms != 0;
		if (!ending || rmp_mono_ms() >= give_up)
			break;
		int next = enforce_deadlines(a);
		wait_once(a, next < 0 || next > 100 ? 100 : next);
		reap(a);
	}
	for (struct child *c = a->children; c; c = c->next)
		if (c->kill_at_ms)
			rmp_log_error("donor %u (pid %ld) did not die even after SIGKILL", c->donor_id,
				      (long)c->pid);
}

/* Serves one connected session until it drops or we are stopped. */
static void serve(struct agent *a)
{
	/* A frame that came with AGENT_REGISTERED is buffered, not pollable. */
	on_control(a);
	while (a->connected && !a->stopping)
		wait_once(a, enforce_deadlines(a));
}

/* Registers and serves; after a loss registers again, pacing failed
 * attempts, until stopped. The donors are left alone throughout. A loss,
 * the first failure of a series and the return are logged; the attempts
 * between them only at debug level. */
static void run_sessions(struct agent *a)
{
	struct rmp_ctlconn_backoff bo;
	unsigned failed = 0;
	uint64_t since = rmp_mono_ms();
	char why[640];

	rmp_ctlconn_backoff_init(&bo, BACKOFF_START_MS, (uint32_t)a->cfg->reconnect_max_ms,
				 BACKOFF_JITTER_PCT, (uint64_t)getpid() << 32 ^ rmp_wall_ms());
	while (!a->stopping) {
		if (register_agent(a, why, sizeof(why))) {
			uint32_t delay = rmp_ctlconn_backoff_next(&bo);
			rmp_notify_status("waiting for the coordinator: %s", why);
			if (failed++ == 0)
				rmp_log_warn("%s; trying again with backoff up to %" PRIu64
					     " ms (further failures at debug level)",
					     why, a->cfg->reconnect_max_ms);
			else
				rmp_log_debug("attempt %u: %s; next in %" PRIu32 " ms", failed + 1,
					      why, delay);
			pause_ms(a, delay);
			continue;
		}
		if (failed)
			rmp_log_info("registered with %s after %u failed attempt(s), %" PRIu64
				     " ms",
				     a->ctl.peer, failed, rmp_mono_ms() - since);
		failed = 0;
		rmp_ctlconn_backoff_reset(&bo);
		serve(a);
		if (a->stopping)
			break;
		rmp_log_warn("lost the coordinator %s (%s): its %u donor(s) here keep serving; "
			     "reconnecting",
			     a->ctl.peer, a->lost_why, a->n_children);
		since = rmp_mono_ms();
		a->connected = false;
		rmp_ctlconn_close(&a->ctl);
	}
}

/* dn_adopt_scan's callback: one donor a previous agent started. */
static int adopt_one(void *arg, pid_t pid, int pidfd, const struct dn_adopt_args *d)
{
	struct agent *a = arg;
	char b[32];

	struct child *c = calloc(1, sizeof(*c));
	if (!c) {
		close(pidfd);
		return -ENOMEM;
	}
	*c = (struct child){.pid = pid, .pidfd = pidfd, .donor_id = d->donor_id,
			    .pool_id = d->pool_id, .cost = d->size + a->footprint,
			    .next = a->children};
	a->children = c;
	a->n_children++;
	a->used += c->cost;
	rmp_log_info("adopted donor %u of pool %u (pid %ld, %s region): it outlived the agent "
		     "that started it",
		     c->donor_id, c->pool_id, (long)pid, human(d->size, b, sizeof(b)));
	return 0;
}

/* The donors a previous agent left running, counted against the budget. */
static int adopt_running(struct agent *a)
{
	char b1[32], b2[32];

	int n = dn_adopt_scan(a->self, &a->cfg->coordinator, adopt_one, a);
	if (n < 0) {
		rmp_log_syserr("dn_adopt_scan", n, "cannot look for this host's running donors");
		return n;
	}
	if (n == 0)
		return 0;
	rmp_log_info("adopted %d running donor(s): %s of this host's budget of %s in use", n,
		     human(a->used, b1, sizeof(b1)), human(a->cfg->budget, b2, sizeof(b2)));
	if (a->used > a->cfg->budget)
		rmp_log_warn("the adopted donors use more than --budget: every SPAWN is refused "
			     "until some of them exit");
	return 0;
}

int dn_agent_run(const struct dn_cfg *cfg, const rmp_auth_key *key, const char *secret)
{
	struct agent a = {.cfg = cfg, .key = key, .secret = secret, .sfd = -1};
	sigset_t set;
	int status = 1;

	if (!cfg->process_limit) {
		fprintf(stderr, "rmpool-donor: --agent needs --process-limit BYTES\n");
		return 2;
	}
	ssize_t n = readlink("/proc/self/exe", a.self, sizeof(a.self) - 1);
	if (n <= 0) {
		rmp_log_syserr("readlink", errno, "cannot find our own executable");
		return 1;
	}
	a.self[n] = '\0';
	if (cfg->host[0])
		snprintf(a.host, sizeof(a.host), "%s", cfg->host);
	else if (cfg->rdma_addr[0])
		snprintf(a.host, sizeof(a.host), "%s", cfg->rdma_addr);
	else if (rmp_rdma_local_addr(a.host, sizeof(a.host)))
		gethostname(a.host, sizeof(a.host) - 1);
	char ident[RMP_WIRE_IDENT_MAX + 1];
	snprintf(ident, sizeof(ident), "agent@%.56s", a.host);
	if (dn_link_init(&a.ctl, cfg, key, RMP_ROLE_AGENT, ident))
		return 1;

	signal(SIGPIPE, SIG_IGN); /* a log line to a pipe nobody reads */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) ||
	    (a.sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		rmp_log_syserr("signalfd", errno, "cannot watch SIGCHLD and SIGTERM");
		return 1;
	}
	if (measure_footprint(&a))
		goto out_close_signalfd;
	char b[32];
	rmp_log_info("a donor process costs %s before its region", human(a.footprint, b, sizeof(b)));
	if (adopt_running(&a))
		goto out_close_signalfd;

	run_sessions(&a);
	finish_terminations(&a);
	if (a.connected) {
		a.connected = false;
		rmp_ctlconn_close(&a.ctl);
	}
	status = 0;

out_close_signalfd:
	while (a.children) /* forgets them: they run on */
		child_remove(&a, a.children);
	free(a.pfd);
	close(a.sfd);
	return status;
}
