/* donor.c - a donor process (DESIGN.md, Where the ideas come from, and
 * Process model): the memory it gives lives here, and it does nothing
 * else than keep it registered until told to go.
 *
 * Sequence (each step fails with the numbers an operator needs):
 *   1. RLIMIT_AS := --process-limit, soft and hard, before anything is
 *      allocated: the process can never hold more than the per-process
 *      maximum the coordinator planned with (nor raise it again).
 *   2. listen on the RDMA device's address, port 0: this opens the device
 *      and makes the PD and CQ, the donor's own footprint (what
 *      --measure-footprint prints).
 *   3. check footprint + --size against the limit, mmap the region
 *      (MAP_POPULATE: the pages exist before anyone is told about them)
 *      and register it for remote read, write and atomics.
 *   4. coordinator: handshake (role DONOR), DONOR_REGISTER {ids, pid,
 *      region, endpoint}, wait for DONOR_ACCEPTED (bounded).
 *   5. sleep in poll() on the coordinator socket, the rdma_cm channel and
 *      a signalfd. Connect requests are accepted only with a DONOR token
 *      for this donor id (rmp_auth_token_verify); TERMINATE, the
 *      coordinator closing the connection, SIGTERM or SIGINT end it.
 *   6. deregister (consumers' operations now fail, they never read freed
 *      memory), disconnect consumers, unmap, exit 0.
 * The sleep has no timeout on purpose (a donor lives as long as its pool);
 * TCP keepalive on the coordinator socket bounds how long a vanished
 * coordinator goes unnoticed.
 */
#include "donor.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "clock.h"
#include "link.h"
#include "log.h"
#include "rdma.h"
#include "wire.h"

struct donor {
	const struct dn_cfg *cfg;
	const rmp_auth_key *key;
	uint32_t donor_id; /* tokens must name it; the coordinator may assign it */
	char addr[64];
	rmp_rdma_listener *listener;
	void *region;
	size_t len;
	struct ibv_mr *mr;
	struct rmp_ctlconn ctl;
	bool have_ctl;
	int sfd;
};

uint64_t dn_vmsize(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t kib = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %" SCNu64 " kB", &kib) == 1)
			break;
	fclose(f);
	return kib * 1024;
}

static const char *human(uint64_t bytes, char *buf, size_t len)
{
	rmp_config_format_bytes(bytes, buf, len);
	return buf;
}

/* rdma_cm accept callback: a consumer must show a token for this donor. */
static int accept_consumer(void *arg, const void *pdata, uint8_t len, uint64_t *tag)
{
	struct donor *d = arg;
	struct rmp_wire_token tok;

	if (!d->key) {
		rmp_log_warn("refused an RDMA connection: no secret to check its token with");
		return -EACCES;
	}
	int rc = rmp_auth_token_verify(d->key, pdata, len, RMP_TOKEN_DONOR, d->donor_id,
				       rmp_wall_ms(), &tok);
	if (rc) {
		rmp_log_warn("refused an RDMA connection to donor %u: token %s", d->donor_id,
			     rc == -EKEYEXPIRED ? "expired"
			     : rc == -EACCES	? "not valid for this donor (MAC, kind or target)"
						: "malformed or missing");
		return rc;
	}
	*tag = tok.client_id;
	rmp_log_info("consumer %" PRIu64 " connected over RDMA", tok.client_id);
	return 0;
}

static void consumer_closed(void *arg, uint64_t tag)
{
	(void)arg;
	rmp_log_info("consumer %" PRIu64 " disconnected", tag);
}

/* Step 1. *limit gets the limit in force (RLIM_INFINITY: none). */
static int apply_rlimit(const struct dn_cfg *cfg, rlim_t *limit)
{
	struct rlimit rl;
	char a[32], b[32];

	if (getrlimit(RLIMIT_AS, &rl)) {
		rmp_log_syserr("getrlimit", errno, "cannot read RLIMIT_AS");
		return -errno;
	}
	if (!cfg->process_limit) {
		*limit = rl.rlim_cur;
		return 0;
	}
	if (rl.rlim_max != RLIM_INFINITY && cfg->process_limit > rl.rlim_max) {
		rmp_log_error("--process-limit %s (%" PRIu64 ") is above this process's hard "
			      "RLIMIT_AS %s (%" PRIu64 "), which cannot be raised",
			      human(cfg->process_limit, a, sizeof(a)), cfg->process_limit,
			      human(rl.rlim_max, b, sizeof(b)), (uint64_t)rl.rlim_max);
		return -EPERM;
	}
	rl.rlim_cur = rl.rlim_max = cfg->process_limit;
	if (setrlimit(RLIMIT_AS, &rl)) {
		int e = errno;
		rmp_log_syserr("setrlimit", e, "cannot set RLIMIT_AS to %" PRIu64,
			       cfg->process_limit);
		return -e;
	}
	*limit = cfg->process_limit;
	return 0;
}

static int find_addr(const struct dn_cfg *cfg, char *buf, size_t len)
{
	if (cfg->rdma_addr[0]) {
		snprintf(buf, len, "%s", cfg->rdma_addr);
		return 0;
	}
	int rc = rmp_rdma_local_addr(buf, len);
	if (rc)
		rmp_log_syserr("rmp_rdma_local_addr", rc,
			       "no RDMA device with an IPv4 address on this host (give --rdma-addr)");
	return rc;
}

static int open_listener(struct donor *d)
{
	struct rmp_rdma_opts o = {.timeout_ms = (int)d->cfg->timeout_ms};
	int rc = find_addr(d->cfg, d->addr, sizeof(d->addr));
	if (rc)
		return rc;
	rc = rmp_rdma_listen(d->addr, 0, &o, accept_consumer, consumer_closed, d, &d->listener);
	if (rc)
		rmp_log_syserr("rmp_rdma_listen", rc, "cannot listen on %s", d->addr);
	return rc;
}

int dn_measure_footprint(const struct dn_cfg *cfg)
{
	struct donor d = {.cfg = cfg};
	if (open_listener(&d))
		return 1;
	printf("%" PRIu64 "\n", dn_vmsize());
	fflush(stdout);
	rmp_rdma_listener_close(d.listener);
	return 0;
}

/* Step 3. */
static int map_region(struct donor *d, rlim_t limit)
{
	const struct dn_cfg *cfg = d->cfg;
	char a[32], b[32], c[32];
	uint64_t foot = dn_vmsize();

	if (limit != RLIM_INFINITY && (cfg->size >= limit || foot + cfg->size > limit)) {
		rmp_log_error("--size %s (%" PRIu64 " bytes) does not fit under --process-limit %s "
			      "(%" PRIu64 " bytes, RLIMIT_AS): the donor's own footprint is "
			      "already %s (%" PRIu64 " bytes)",
			      human(cfg->size, a, sizeof(a)), cfg->size,
			      human((uint64_t)limit, b, sizeof(b)), (uint64_t)limit,
			      human(foot, c, sizeof(c)), foot);
		return -ENOMEM;
	}
	d->len = (size_t)cfg->size;
	d->region = mmap(NULL, d->len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (d->region == MAP_FAILED) {
		int e = errno;
		d->region = NULL;
		rmp_log_syserr("mmap", e, "cannot map the %" PRIu64 "-byte region (RLIMIT_AS %s)",
			       cfg->size,
			       limit == RLIM_INFINITY ? "unlimited" : human(limit, a, sizeof(a)));
		return -e;
	}
	int rc = rmp_rdma_reg_remote(rmp_rdma_listener_pd(d->listener), d->region, d->len,
				     &d->mr);
	if (rc) {
		rmp_log_syserr("rmp_rdma_reg_remote", rc,
			       "cannot register the %" PRIu64 "-byte region for remote access "
			       "(is `ulimit -l` unlimited?)",
			       cfg->size);
		munmap(d->region, d->len);
		d->region = NULL;
		return rc;
	}
	return 0;
}

/* Step 4. */
static int hand_over(struct donor *d)
{
	const struct dn_cfg *cfg = d->cfg;
	char err[512], ident[RMP_WIRE_IDENT_MAX + 1];

	snprintf(ident, sizeof(ident), "donor-%ld@%.40s", (long)getpid(), d->addr);
	int rc = dn_link_init(&d->ctl, cfg, d->key, RMP_ROLE_DONOR, ident);
	if (rc)
		return rc;
	rc = dn_link_connect(&d->ctl, cfg);
	if (rc)
		return rc;
	d->have_ctl = true;

	struct rmp_wire_msg m = {.type = RMP_MSG_DONOR_REGISTER};
	struct rmp_wire_donor_register *r = &m.u.donor_register;
	r->donor_id = (uint32_t)cfg->donor_id;
	r->pool_id = (uint32_t)cfg->pool_id;
	r->pid = (uint32_t)getpid();
	r->region.addr = (uint64_t)(uintptr_t)d->region;
	r->region.len = d->len;
	r->region.rkey = d->mr->rkey;
	snprintf(r->endpoint.host, sizeof(r->endpoint.host), "%s", d->addr);
	r->endpoint.port = rmp_rdma_listener_port(d->listener);
	rc = rmp_ctlconn_send(&d->ctl, &m, rmp_deadline_ms(cfg->timeout_ms));
	if (rc) {
		rmp_log_syserr("rmp_ctlconn_send", rc, "DONOR_REGISTER to %s", d->ctl.peer);
		return rc;
	}
	rc = rmp_ctlconn_recv(&d->ctl, &m, rmp_deadline_ms(cfg->timeout_ms), err, sizeof(err));
	if (rc) {
		rmp_log_error("waiting for DONOR_ACCEPTED: %s", err);
		return rc;
	}
	if (m.type == RMP_MSG_ERROR) {
		rmp_log_error("the coordinator refused this donor: %s (%s)", m.u.error.text,
			      strerror((int)m.u.error.code));
		return m.u.error.code ? -(int)m.u.error.code : -EPROTO;
	}
	if (m.type != RMP_MSG_DONOR_ACCEPTED) {
		rmp_log_error("%s: expected DONOR_ACCEPTED, got %s", d->ctl.peer,
			      rmp_wire_type_name(m.type));
		rmp_wire_msg_release(&m);
		return -EPROTO;
	}
	d->donor_id = m.u.donor_accepted.donor_id;
	rmp_log_info("donor %u of pool %u: %" PRIu64 " bytes at pool address %" PRIu64
		     ", rdma_cm %s:%u",
		     d->donor_id, m.u.donor_accepted.pool_id, (uint64_t)d->len,
		     m.u.donor_accepted.base, d->addr, rmp_rdma_listener_port(d->listener));
	return 0;
}

/* Handles what the coordinator sent. 1: time to go; 0: keep sleeping. */
static int on_control(struct donor *d)
{
	char err[512];
	struct rmp_wire_msg m;
	int rc = rmp_ctlconn_fill(&d->ctl);

	for (;;) {
		int got = rmp_ctlconn_pop(&d->ctl, &m, err, sizeof(err));
		if (got < 0) {
			rmp_log_error("bad frame from the coordinator, leaving: %s", err);
			return 1;
		}
		if (got == 0)
			break;
		switch (m.type) {
		case RMP_MSG_TERMINATE:
			if (m.u.terminate.donor_id && m.u.terminate.donor_id != d->donor_id) {
				rmp_log_warn("TERMINATE for donor %u, we are donor %u: ignored",
					     m.u.terminate.donor_id, d->donor_id);
				break;
			}
			rmp_log_info("the coordinator terminates this donor");
			return 1;
		case RMP_MSG_ERROR:
			rmp_log_warn("the coordinator reports: %s", m.u.error.text);
			break;
		default:
			rmp_log_debug("ignoring %s from the coordinator", rmp_wire_type_name(m.type));
			rmp_wire_msg_release(&m);
			break;
		}
	}
	if (rc) {
		if (rc == -ECONNRESET)
			rmp_log_info("the coordinator closed the connection: leaving");
		else
			rmp_log_syserr("recv", rc, "coordinator connection lost, leaving");
		return 1;
	}
	return 0;
}

/* Step 5. */
static int sleep_until_done(struct donor *d)
{
	for (;;) {
		struct pollfd pfd[3] = {
			{.fd = d->sfd, .events = POLLIN},
			{.fd = rmp_rdma_listener_fd(d->listener), .events = POLLIN},
			{.fd = d->have_ctl ? d->ctl.fd : -1, .events = POLLIN},
		};
		int n = poll(pfd, 3, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rmp_log_syserr("poll", errno, "donor loop");
			return 1;
		}
		if (pfd[0].revents) {
			struct signalfd_siginfo si;
			if (read(d->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				rmp_log_info("%s: leaving", strsignal((int)si.ssi_signo));
				return 0;
			}
		}
		if (pfd[1].revents) {
			int rc = rmp_rdma_listener_dispatch(d->listener);
			if (rc < 0)
				rmp_log_syserr("rmp_rdma_listener_dispatch", rc, "rdma_cm events");
		}
		if (pfd[2].revents && on_control(d))
			return 0;
	}
}

int dn_donor_run(const struct dn_cfg *cfg, const rmp_auth_key *key)
{
	struct donor d = {.cfg = cfg, .key = key, .donor_id = (uint32_t)cfg->donor_id, .sfd = -1};
	rlim_t limit = RLIM_INFINITY;
	int status = 1;
	sigset_t set;

	/* Signals become fd events; blocked before anything can arrive. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) || (d.sfd = signalfd(-1, &set, SFD_CLOEXEC)) < 0) {
		rmp_log_syserr("signalfd", errno, "cannot watch SIGTERM");
		return 1;
	}
	if (apply_rlimit(cfg, &limit))
		goto out_close_signalfd;
	if (open_listener(&d))
		goto out_close_signalfd;
	if (map_region(&d, limit))
		goto out_close_listener;

	if (cfg->no_coordinator) {
		/* Tests: everything a coordinator would be told, on one line. */
		printf("READY %s %u %" PRIu64 " %u %" PRIu64 " %ld\n", d.addr,
		       rmp_rdma_listener_port(d.listener), (uint64_t)(uintptr_t)d.region,
		       d.mr->rkey, (uint64_t)d.len, (long)getpid());
		fflush(stdout);
	} else if (hand_over(&d)) {
		goto out_dereg;
	}
	status = sleep_until_done(&d);

out_dereg:
	ibv_dereg_mr(d.mr);
	munmap(d.region, d.len);
	if (d.have_ctl)
		rmp_ctlconn_close(&d.ctl);
out_close_listener:
	rmp_rdma_listener_close(d.listener);
out_close_signalfd:
	close(d.sfd);
	return status;
}
