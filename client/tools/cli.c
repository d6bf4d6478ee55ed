/*
 * cli.c - `rmpool`, the operator's command-line tool, built on librmpool's
 * public API (rmpool.h) alone.
 *
 *   rmpool [--coordinator HOST:PORT] [--secret-file F] COMMAND ...
 *     pool create NAME SIZE     provision a pool (progress as donors spawn)
 *     pool destroy NAME         terminate its donors
 *     pool forget NAME          drop a pool whose donors are gone (lost)
 *     pool check NAME           read its metadata over RDMA and walk it
 *     pool info NAME            segment table: donors, hosts, regions
 *     status [--json]           pools, hosts, capacity, free bytes, clients
 *     bench NAME                latency, bandwidth and round trips (bench.c)
 * A hidden command for the integration tests (not in --help):
 *     lease-hold NAME           attach and hold the lease until a signal
 * (The provisioning test's forged-token probe of the metadata endpoint
 * is a test program, tests/rdma/probe_metadata.c: it needs the library's
 * internals, which an operator's tool does not reach.)
 *
 * The commands are one table (commands[]): name, handler, synopsis,
 * summary and help text. It drives the dispatch, the command list of
 * --help and each command's --help; a row without a summary is hidden.
 * The commands that take one NAME share one front end, one_name(): their
 * options, --help, the NAME, then the connection (and the pool).
 *
 * Exit status: 0 ok, 1 failure (one line on stderr), 2 usage; pool check
 * says 3 for a pool that lags (EXIT_LAGGING).
 * The coordinator comes from --coordinator, else $RMPOOL_COORDINATOR, else
 * 127.0.0.1:7400; the secret from --secret-file, else $RMPOOL_SECRET_FILE,
 * else $RMPOOL_SECRET (read by the library), else the daemons' own secret
 * file (RMPOOL_DEFAULT_SECRET_FILE, SYSCONFDIR/rmpool/secret, which the
 * units' config examples name) when this user may read it - one format
 * for every program, common/secret.c.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#include "clock.h"
#include "config.h"
#include "rmpool.h"
#include "secret.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_LAGGING 3 /* pool check: not wrong, but lagging (operations in flight, a dead consumer) */

#define DEFAULT_COORDINATOR "127.0.0.1:7400"

struct cli {
	const char *coordinator;
	char *secret; /* NULL: $RMPOOL_SECRET */
	struct rmp_connect_opts opts;
	unsigned rdma_timeout_ms;
};

static const char *prog = "rmpool";

/* ---- output helpers ---- */

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", prog, line);
	return EXIT_FAIL;
}

/* One line for a library failure: the detail if there is one, and the code's text. */
static int fail_rc(const char *what, int rc, const rmp_client *c)
{
	const char *detail = rmp_last_error(c);
	if (!*detail)
		return fail("%s: %s", what, rmp_strerror(rc));
	if (strstr(detail, rmp_strerror(rc)))
		return fail("%s: %s", what, detail);
	return fail("%s: %s (%s)", what, detail, rmp_strerror(rc));
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s (try '%s --help')\n", prog, line, prog);
	return EXIT_USAGE;
}

static const char *human(uint64_t bytes, char *buf, size_t len)
{
	rmp_config_format_bytes(bytes, buf, len);
	return buf;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* ---- the command table ---- */

struct cli_cmd;
/* argv[0] is the command's name; returns the exit status. */
typedef int cli_handler(struct cli *cli, const struct cli_cmd *self, int argc, char **argv);

struct cli_cmd {
	const char *group;   /* "pool" for `pool NAME ...`; NULL: a top-level command */
	const char *name;
	cli_handler *run;
	const char *args;    /* after the name in the command list */
	const char *summary; /* the command list's text ('\n': a continuation line); NULL: hidden */
	const char *usage;   /* its --help: the synopsis after the program's name ... */
	const char *help;    /* ... and the text below it (NULL: the command prints its own) */
};

static cli_handler cmd_pool_create, cmd_pool_destroy, cmd_pool_forget, cmd_pool_check, cmd_pool_info,
	cmd_status, cmd_bench, cmd_help, cmd_lease_hold;

static const struct cli_cmd commands[] = {
	{ "pool", "create", cmd_pool_create, "NAME SIZE", "provision a pool of SIZE usable bytes (3G, 512M)",
	  "pool create [--timeout DURATION] [--json] NAME SIZE",
	  "Create pool NAME of SIZE usable bytes (binary units: 224M, 3G, 1T). The\n"
	  "coordinator starts donor processes on its hosts' agents, each holding at\n"
	  "most its host's per-process limit, until they add up to SIZE; one line is\n"
	  "printed per donor as it starts. The pool's address space is the next power\n"
	  "of two, its tail reserved. Prints donors, hosts, capacity and the time taken.\n"
	  "The pool lives until 'pool destroy'.\n"
	  "\n"
	  "  --timeout DURATION   how long provisioning may take (default 5m)\n"
	  "  --json               print the result as JSON (progress goes to stderr)\n" },
	{ "pool", "destroy", cmd_pool_destroy, "NAME", "destroy a pool; its donor processes terminate",
	  "pool destroy [--timeout DURATION] NAME",
	  "Destroy pool NAME: its donor processes terminate and their memory returns\n"
	  "to the hosts. Waits for the coordinator to confirm (default bound 5m).\n" },
	{ "pool", "forget", cmd_pool_forget, "NAME",
	  "forget a pool whose donors are gone for good (lost,\nor not re-adopted after a restart; see status)",
	  "pool forget NAME",
	  "Forget pool NAME, whose donors are gone for good: its donors are lost, or\n"
	  "the coordinator could not re-adopt it after a restart ('rmpool status'\n"
	  "says which, and why). Its records and its metadata are removed; nothing is\n"
	  "terminated. Refused while any of its donors is alive or may come back:\n"
	  "destroy the pool instead.\n" },
	{ "pool", "check", cmd_pool_check, "NAME",
	  "read the pool's allocator metadata over RDMA and\ncheck its invariants; prints free bytes",
	  "pool check [--json] [--rdma-timeout DURATION] NAME",
	  "Attach to pool NAME, connect to its allocator metadata region over RDMA\n"
	  "(rdma_cm, with a token signed by the shared secret), read all of it and\n"
	  "walk it: every byte in exactly one free, allocated or reserved block, no\n"
	  "two free buddies, free counts consistent. Prints free, allocated and\n"
	  "reserved bytes. Each snapshot reads the consumers' slots before and after\n"
	  "the region; it is read again (up to 5 times, 20 ms apart) until no\n"
	  "operation is in flight or two reads agree. Then the metadata is valid;\n"
	  "lagging: only what operations in flight or a dead consumer that the\n"
	  "coordinator has not yet reclaimed leave (busy slots, free counts above\n"
	  "their blocks, moves in transit, memory in passing): not wrong, run again;\n"
	  "or corrupt: what no operation leaves (a block inside another, a count\n"
	  "below its blocks, two free buddies, ...).\n"
	  "\n"
	  "Exit status: 0 valid, 1 corrupt (or the check failed), 2 usage error,\n"
	  "3 lagging.\n"
	  "\n"
	  "  --json                  machine-readable result\n"
	  "  --rdma-timeout DURATION bound for each RDMA step (default 10s)\n" },
	{ "pool", "info", cmd_pool_info, "NAME", "the pool's donors, hosts and regions", "pool info [--json] NAME",
	  "Attach to pool NAME and print its geometry and segment table: each donor's\n"
	  "host, rdma_cm port and the bytes of the pool it backs.\n" },
	{ NULL, "status", cmd_status, "[--json]", "pools, donors per host, capacity, free bytes, clients",
	  "status [--json]",
	  "Ask the coordinator for its pools (capacity, space, free bytes, donors,\n"
	  "clients) and hosts (donors, bytes used, budget).\n"
	  "\n"
	  "  --json   machine-readable output\n" },
	{ NULL, "bench", cmd_bench, "NAME",
	  "64 B read/write latency, alloc+free latency and round\ntrips, 1 MiB bandwidth, from this host (--help)",
	  NULL, NULL /* bench.c has its own --help */ },
	{ NULL, "help", cmd_help, NULL, NULL, NULL, NULL },
	/* lease-hold NAME [SECONDS]: the provisioning test's consumer that
	 * stops renewing (it SIGSTOPs it). */
	{ NULL, "lease-hold", cmd_lease_hold, "NAME [SECONDS]", NULL, NULL, NULL },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ---- help ---- */

/* Column of the command list's summaries (after two spaces of indent). */
#define SUMMARY_COL 24

static void print_summary(FILE *f, const struct cli_cmd *c)
{
	char head[64];

	snprintf(head, sizeof(head), "%s%s%s%s%s", c->group ? c->group : "", c->group ? " " : "", c->name,
		 c->args ? " " : "", c->args ? c->args : "");
	fprintf(f, "  %-*s", SUMMARY_COL - 1, head);
	for (const char *line = c->summary; line;) {
		const char *nl = strchr(line, '\n');
		int n = nl ? (int)(nl - line) : (int)strlen(line);
		fprintf(f, " %.*s\n", n, line);
		line = nl ? nl + 1 : NULL;
		if (line)
			fprintf(f, "  %-*s", SUMMARY_COL - 1, "");
	}
}

static void help_main(FILE *f)
{
	fprintf(f,
		"Usage: %s [OPTIONS] COMMAND [ARGS]\n"
		"\n"
		"Operate an rmpool coordinator: create, check and destroy pools of memory\n"
		"that donor processes on several hosts give over RDMA.\n"
		"\n"
		"Commands:\n",
		prog);
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (commands[i].summary)
			print_summary(f, &commands[i]);
	fprintf(f,
		"\n"
		"Options:\n"
		"  -c, --coordinator HOST:PORT  coordinator control address\n"
		"                               (default $RMPOOL_COORDINATOR, else %s)\n"
		"  -s, --secret-file FILE       file holding the shared secret\n"
		"                               (default $RMPOOL_SECRET_FILE, else $RMPOOL_SECRET,\n"
		"                               else " RMPOOL_DEFAULT_SECRET_FILE " if readable)\n"
		"  -t, --timeout DURATION       bound for connecting and for each request (10s)\n"
		"  -h, --help                   this text; COMMAND --help for a command's\n"
		"      --version                print the version and exit\n"
		"\n"
		"Exit status: 0 success, 1 failure (one line on stderr), 2 usage error;\n"
		"pool check: 3 when the metadata lags (see pool check --help).\n",
		DEFAULT_COORDINATOR);
}

static int print_cmd_help(FILE *f, const struct cli_cmd *c)
{
	fprintf(f, "Usage: %s %s\n\n%s", prog, c->usage, c->help);
	return EXIT_OK;
}

/* ---- connecting ---- */

static int cli_connect(struct cli *cli, rmp_client **c)
{
	int rc = rmp_connect_ex(cli->coordinator, cli->secret, &cli->opts, c);
	if (rc) {
		return fail_rc("connect", rc, NULL);
	}
	return EXIT_OK;
}

/* getopt_long over a command's own arguments (argv[0] is the command). */
struct cmd_opts {
	bool json;
	bool help;
	uint64_t timeout_ms;
	uint64_t rdma_timeout_ms;
};

enum { OPT_JSON = 1000, OPT_TIMEOUT, OPT_RDMA_TIMEOUT };

/* The options a command takes besides --help (parse_cmd_opts' allow). */
enum { ALLOW_TIMEOUT = 1 << 0, ALLOW_JSON = 1 << 1, ALLOW_RDMA_TIMEOUT = 1 << 2 };

static int parse_cmd_opts(int argc, char **argv, struct cmd_opts *o, unsigned allow)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "rdma-timeout", required_argument, NULL, OPT_RDMA_TIMEOUT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 0; /* glibc: restart the scan with a fresh argv */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
		switch (ch) {
		case 'h':
			o->help = true;
			break;
		case OPT_JSON:
			if (!(allow & ALLOW_JSON))
				return usage_error("%s: --json is not an option here", argv[0]);
			o->json = true;
			break;
		case OPT_TIMEOUT:
		case OPT_RDMA_TIMEOUT: {
			uint64_t ms;
			if (!(allow & (ch == OPT_TIMEOUT ? ALLOW_TIMEOUT : ALLOW_RDMA_TIMEOUT)))
				return usage_error("%s: %s is not an option here", argv[0],
						   argv[optind - 1]);
			if (rmp_config_parse_duration(optarg, &ms) || ms == 0 || ms > 86400000u)
				return usage_error("%s: bad duration \"%s\" (e.g. 30s, 5m)", argv[0],
						   optarg);
			if (ch == OPT_TIMEOUT)
				o->timeout_ms = ms;
			else
				o->rdma_timeout_ms = ms;
			break;
		}
		default:
			return usage_error("%s: unknown option '%s'", argv[0], argv[optind - 1]);
		}
	}
	return EXIT_OK;
}

/* ---- the commands that take one NAME ---- */

/* A command's words as the user typed them: "pool destroy", "status". */
static const char *cmd_words(const struct cli_cmd *self, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", self->group ? self->group : "", self->group ? " " : "",
		 self->name);
	return buf;
}

/* fail_rc for a command on pool name: "pool destroy NAME: ...". */
static int fail_cmd(const struct cli_cmd *self, const char *name, int rc, const rmp_client *c)
{
	char words[64], what[128];

	snprintf(what, sizeof(what), "%s %s", cmd_words(self, words, sizeof(words)), name);
	return fail_rc(what, rc, c);
}

/* Connects and attaches to pool name (opens it with no capacity). */
static int attach(struct cli *cli, const struct cli_cmd *self, const char *name, rmp_client **c,
		  rmp_pool **p)
{
	int ex = cli_connect(cli, c);
	if (ex)
		return ex;
	int rc = rmp_pool_open(*c, name, 0, p);
	if (rc) {
		ex = fail_cmd(self, name, rc, *c);
		rmp_disconnect(*c);
		*c = NULL;
	}
	return ex;
}

/* The front end of the commands that take one NAME (pool destroy, forget,
 * check, info): the options in allow, --help, exactly one NAME; then a
 * --timeout bounds the command's long wait (provisioning's bound), and it
 * connects and, if p is not NULL, attaches to the pool. True: go on, with
 * *name and *c (and *p) set and *ex = EXIT_OK; false: return *ex now (the
 * help printed, or a usage error or failure reported). */
static bool one_name(struct cli *cli, const struct cli_cmd *self, int argc, char **argv,
		     unsigned allow, struct cmd_opts *o, const char **name, rmp_client **c,
		     rmp_pool **p, int *ex)
{
	char words[64];

	*ex = parse_cmd_opts(argc, argv, o, allow);
	if (*ex)
		return false;
	if (o->help) {
		*ex = print_cmd_help(stdout, self);
		return false;
	}
	if (argc - optind != 1) {
		*ex = usage_error("%s: want NAME", cmd_words(self, words, sizeof(words)));
		return false;
	}
	*name = argv[optind];
	if (o->timeout_ms)
		cli->opts.provision_timeout_ms = (unsigned)o->timeout_ms;
	*ex = p ? attach(cli, self, *name, c, p) : cli_connect(cli, c);
	return *ex == EXIT_OK;
}

/* ---- pool create ---- */

static void on_progress(void *arg, const struct rmp_progress *ev)
{
	FILE *f = arg;

	/* The coordinator's text says what happened, host included; our own
	 * words only when it sent none. */
	if (*ev->text && ev->state != RMP_PROGRESS_DONOR_FAILED)
		fprintf(f, "  %s\n", ev->text);
	else if (ev->state == RMP_PROGRESS_DONOR_SPAWNED)
		fprintf(f, "  donor %u started (pid %u)\n", ev->donor_id, ev->pid);
	else if (ev->state == RMP_PROGRESS_DONOR_FAILED)
		fprintf(f, "  donor %u failed: %s%s%s\n", ev->donor_id,
			ev->error ? rmp_strerror(ev->error) : "error", *ev->text ? ": " : "", ev->text);
	else if (ev->state == RMP_PROGRESS_DONOR_EXITED)
		fprintf(f, "  donor %u exited\n", ev->donor_id);
	else
		fprintf(f, "  donor %u: state %d\n", ev->donor_id, (int)ev->state);
	fflush(f);
}

static void print_donors(FILE *f, const struct rmp_pool_info *in)
{
	char b[32];

	fprintf(f, "  %-6s %-24s %-6s %-9s %s\n", "DONOR", "HOST", "PORT", "SEGMENTS", "REGION");
	for (size_t i = 0; i < in->n_donors; i++) {
		const struct rmp_pool_donor *d = &in->donors[i];
		fprintf(f, "  %-6u %-24s %-6u %-9" PRIu64 " %s (%" PRIu64 " bytes)\n", d->donor_id,
			d->host, (unsigned)d->port, d->segments, human(d->bytes, b, sizeof(b)),
			d->bytes);
	}
}

static void json_pool_info(FILE *f, const struct rmp_pool_info *in, const char *indent)
{
	fprintf(f, "{\n%s  \"name\": ", indent);
	json_str(f, in->name);
	fprintf(f,
		",\n%s  \"pool_id\": %u,\n%s  \"capacity\": %" PRIu64 ",\n%s  \"space\": %" PRIu64
		",\n%s  \"backed\": %" PRIu64 ",\n%s  \"min_block\": %" PRIu64
		",\n%s  \"segment_size\": %" PRIu64 ",\n%s  \"segtab_version\": %" PRIu64
		",\n%s  \"metadata_bytes\": %" PRIu64 ",\n",
		indent, in->pool_id, indent, in->capacity, indent, in->space, indent, in->backed,
		indent, in->min_block, indent, in->segment_size, indent, in->segtab_version, indent,
		in->metadata_bytes);
	fprintf(f, "%s  \"coordinator\": {\"host\": ", indent);
	json_str(f, in->coordinator_host);
	fprintf(f, ", \"port\": %u},\n", (unsigned)in->coordinator_port);
	fprintf(f, "%s  \"lease\": {\"id\": %" PRIu64 ", \"ttl_ms\": %u, \"expired\": %s},\n", indent,
		in->lease_id, in->lease_ttl_ms, in->lease_expired ? "true" : "false");
	fprintf(f, "%s  \"donors_lost\": %u,\n%s  \"lost_bytes\": %" PRIu64 ",\n", indent,
		in->donors_lost, indent, in->lost_bytes);
	fprintf(f, "%s  \"hosts\": %zu,\n%s  \"donors\": [", indent, in->n_hosts, indent);
	for (size_t i = 0; i < in->n_donors; i++) {
		const struct rmp_pool_donor *d = &in->donors[i];
		fprintf(f, "%s\n%s    {\"id\": %u, \"host\": ", i ? "," : "", indent, d->donor_id);
		json_str(f, d->host);
		fprintf(f, ", \"port\": %u, \"segments\": %" PRIu64 ", \"bytes\": %" PRIu64 "}",
			(unsigned)d->port, d->segments, d->bytes);
	}
	if (in->n_donors)
		fprintf(f, "\n%s  ", indent);
	fprintf(f, "]\n%s}", indent);
}

static int cmd_pool_create(struct cli *cli, const struct cli_cmd *self, int argc, char **argv)
{
	struct cmd_opts o = { 0 };
	struct rmp_pool_info *in = NULL;
	rmp_client *c = NULL;
	rmp_pool *p = NULL;
	uint64_t size;
	char b1[32], b2[32];
	int rc, ex = parse_cmd_opts(argc, argv, &o, ALLOW_TIMEOUT | ALLOW_JSON);

	if (ex)
		return ex;
	if (o.help)
		return print_cmd_help(stdout, self);
	if (argc - optind != 2)
		return usage_error("pool create: want NAME SIZE");
	const char *name = argv[optind], *sz = argv[optind + 1];
	rc = rmp_config_parse_size(sz, &size);
	if (rc || size == 0)
		return usage_error("pool create: bad size \"%s\" (e.g. 512M, 3G)", sz);
	if (o.timeout_ms)
		cli->opts.provision_timeout_ms = (unsigned)o.timeout_ms;

	ex = cli_connect(cli, &c);
	if (ex)
		return ex;
	FILE *pf = o.json ? stderr : stdout;
	fprintf(pf, "creating pool %s of %s on %s\n", name, human(size, b1, sizeof(b1)),
		cli->coordinator);
	fflush(pf);
	rmp_client_set_progress(c, on_progress, pf);
	uint64_t t0 = rmp_mono_ms();
	rc = rmp_pool_open(c, name, size, &p);
	uint64_t took = rmp_mono_ms() - t0;
	if (rc) {
		ex = fail_cmd(self, name, rc, c);
		goto out_disconnect;
	}
	rc = rmp_pool_info(p, &in);
	if (rc) {
		ex = fail("pool create %s: %s", name, rmp_strerror(rc));
		goto out_close;
	}
	if (o.json) {
		printf("{\n  \"provision_ms\": %" PRIu64 ",\n  \"pool\": ", took);
		json_pool_info(stdout, in, "  ");
		printf("\n}\n");
	} else {
		printf("pool %s ready in %" PRIu64 ".%01" PRIu64 " s: %s usable, %s space, "
		       "%zu donor%s on %zu host%s\n",
		       name, took / 1000, took % 1000 / 100, human(in->capacity, b1, sizeof(b1)),
		       human(in->space, b2, sizeof(b2)), in->n_donors, in->n_donors == 1 ? "" : "s",
		       in->n_hosts, in->n_hosts == 1 ? "" : "s");
		print_donors(stdout, in);
	}
	ex = EXIT_OK;
	rmp_pool_info_free(in);
out_close:
	rmp_pool_close(p);
out_disconnect:
	rmp_disconnect(c);
	return ex;
}

/* ---- pool destroy ---- */

static int cmd_pool_destroy(struct cli *cli, const struct cli_cmd *self, int argc, char **argv)
{
	struct cmd_opts o = { 0 };
	rmp_client *c = NULL;
	const char *name;
	int rc, ex;

	if (!one_name(cli, self, argc, argv, ALLOW_TIMEOUT, &o, &name, &c, NULL, &ex))
		return ex;
	rmp_client_set_progress(c, on_progress, stdout);
	uint64_t t0 = rmp_mono_ms();
	rc = rmp_pool_destroy(c, name);
	if (rc) {
		ex = fail_cmd(self, name, rc, c);
	} else {
		uint64_t took = rmp_mono_ms() - t0;
		printf("pool %s destroyed in %" PRIu64 ".%01" PRIu64 " s\n", name, took / 1000,
		       took % 1000 / 100);
	}
	rmp_disconnect(c);
	return ex;
}

/* ---- pool forget ---- */

static int cmd_pool_forget(struct cli *cli, const struct cli_cmd *self, int argc, char **argv)
{
	struct cmd_opts o = { 0 };
	rmp_client *c = NULL;
	const char *name;
	int rc, ex;

	if (!one_name(cli, self, argc, argv, 0, &o, &name, &c, NULL, &ex))
		return ex;
	rc = rmp_pool_forget(c, name);
	if (rc) {
		ex = fail_cmd(self, name, rc, c);
	} else {
		printf("pool %s forgotten\n", name);
	}
	rmp_disconnect(c);
	return ex;
}

/* ---- pool check ---- */

static int cmd_pool_check(struct cli *cli, const struct cli_cmd *self, int argc, char **argv)
{
	struct cmd_opts o = { 0 };
	struct rmp_pool_check_report r = { .size = sizeof(r) };
	struct rmp_pool_info *in = NULL;
	rmp_client *c;
	rmp_pool *p;
	char b1[32], b2[32], b3[32];
	const char *name;
	int rc, ex;

	if (!one_name(cli, self, argc, argv, ALLOW_JSON | ALLOW_RDMA_TIMEOUT, &o, &name, &c, &p,
		      &ex))
		return ex;
	rc = rmp_pool_info(p, &in);
	if (rc) {
		ex = fail("pool check %s: %s", name, rmp_strerror(rc));
		goto out;
	}
	rc = rmp_pool_check(p, o.rdma_timeout_ms ? (unsigned)o.rdma_timeout_ms : cli->rdma_timeout_ms,
			    &r);
	if (rc) {
		ex = fail_cmd(self, name, rc, c);
		goto out;
	}
	static const char *const states[] = { "valid", "lagging", "corrupt" };
	const char *state = r.state >= 0 && r.state <= RMP_CHECK_CORRUPT ? states[r.state] : "corrupt";
	if (o.json) {
		printf("{\n  \"pool\": ");
		json_str(stdout, name);
		printf(",\n  \"pool_id\": %u,\n  \"capacity\": %" PRIu64 ",\n  \"space\": %" PRIu64
		       ",\n  \"metadata_bytes\": %" PRIu64 ",\n  \"read_ms\": %" PRIu64
		       ",\n  \"max_order\": %u,\n  \"min_order\": %u,\n  \"usable\": %" PRIu64
		       ",\n  \"free_bytes\": %" PRIu64 ",\n  \"alloc_bytes\": %" PRIu64
		       ",\n  \"reserved_bytes\": %" PRIu64 ",\n  \"valid\": %s,\n  \"state\": \"%s\""
		       ",\n  \"tries\": %u,\n  \"busy_slots\": %u,\n  \"abandoned_slots\": %u"
		       ",\n  \"drift_counts\": %u,\n  \"drift_total\": %" PRIu64 ",\n  \"moves\": %u"
		       ",\n  \"holes\": %u,\n  \"hole_bytes\": %" PRIu64 ",\n  \"odd_tags\": %u"
		       ",\n  \"untagged_busy\": %u,\n  \"error\": ",
		       in->pool_id, in->capacity, in->space, r.bytes_read, r.read_ms, r.max_order,
		       r.min_order, r.usable, r.free_bytes, r.alloc_bytes, r.reserved_bytes,
		       r.valid ? "true" : "false", state, r.tries, r.busy_slots, r.abandoned_slots,
		       r.drift_counts, r.drift_total, r.moves, r.holes, r.hole_bytes, r.odd_tags, r.untagged_busy);
		json_str(stdout, r.error);
		printf("\n}\n");
	} else {
		printf("pool %s: %s of allocator metadata read over RDMA from %s:%u in %" PRIu64
		       " ms (%u snapshot%s)\n",
		       name, human(r.bytes_read, b1, sizeof(b1)), in->coordinator_host,
		       (unsigned)in->coordinator_port, r.read_ms, r.tries, r.tries == 1 ? "" : "s");
		printf("  space 2^%u bytes (%s), min block 2^%u, usable %s\n", r.max_order,
		       human(in->space, b1, sizeof(b1)), r.min_order, human(r.usable, b2, sizeof(b2)));
		printf("  free %s (%" PRIu64 " bytes), allocated %s, reserved %s\n",
		       human(r.free_bytes, b1, sizeof(b1)), r.free_bytes,
		       human(r.alloc_bytes, b2, sizeof(b2)), human(r.reserved_bytes, b3, sizeof(b3)));
		printf("  capacity %s (%" PRIu64 " bytes)\n", human(in->capacity, b1, sizeof(b1)),
		       in->capacity);
		if (r.state == RMP_CHECK_VALID)
			printf("  invariants: OK\n");
		else if (r.state == RMP_CHECK_LAGGING)
			printf("  invariants: OK, lagging: %s (operations in flight or a dead consumer not yet "
			       "reclaimed; run again)\n", r.error);
		else
			printf("  invariants: VIOLATED (corrupt): %s\n", r.error);
	}
	if (r.state == RMP_CHECK_VALID) {
		ex = EXIT_OK;
	} else if (r.state == RMP_CHECK_LAGGING) {
		fprintf(stderr, "%s: pool check %s: lagging: %s\n", prog, name, r.error);
		ex = EXIT_LAGGING;
	} else {
		ex = fail("pool check %s: metadata corrupt: %s", name, r.error);
	}
out:
	rmp_pool_info_free(in);
	rmp_pool_close(p);
	rmp_disconnect(c);
	return ex;
}

/* ---- pool info ---- */

static int cmd_pool_info(struct cli *cli, const struct cli_cmd *self, int argc, char **argv)
{
	struct cmd_opts o = { 0 };
	struct rmp_pool_info *in = NULL;
	rmp_client *c;
	rmp_pool *p;
	char b1[32], b2[32], b3[32];
	const char *name;
	int rc, ex;

	if (!one_name(cli, self, argc, argv, ALLOW_JSON, &o, &name, &c, &p, &ex))
		return ex;
	rc = rmp_pool_info(p, &in);
	if (rc) {
		ex = fail("pool info %s: %s", name, rmp_strerror(rc));
	} else if (o.json) {
		json_pool_info(stdout, in, "");
		printf("\n");
	} else {
		printf("pool %s (id %u): %s usable, %s space, %s backed, segments of %s\n", name,
		       in->pool_id, human(in->capacity, b1, sizeof(b1)), human(in->space, b2, sizeof(b2)),
		       human(in->backed, b3, sizeof(b3)), human(in->segment_size, b1, sizeof(b1)));
		printf("  metadata %s on %s:%u, segment table version %" PRIu64 "\n",
		       human(in->metadata_bytes, b1, sizeof(b1)), in->coordinator_host,
		       (unsigned)in->coordinator_port, in->segtab_version);
		printf("  %zu donor%s on %zu host%s\n", in->n_donors, in->n_donors == 1 ? "" : "s",
		       in->n_hosts, in->n_hosts == 1 ? "" : "s");
		if (in->donors_lost)
			printf("  degraded: %u donor%s lost, %s of the space out of service\n",
			       in->donors_lost, in->donors_lost == 1 ? "" : "s",
			       human(in->lost_bytes, b1, sizeof(b1)));
		print_donors(stdout, in);
	}
	rmp_pool_info_free(in);
	rmp_pool_close(p);
	rmp_disconnect(c);
	return ex;
}

/* ---- status ---- */

static void print_uptime(uint64_t ms, char *buf, size_t len)
{
	uint64_t s = ms / 1000;
	if (s >= 86400)
		snprintf(buf, len, "%" PRIu64 "d %" PRIu64 "h", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, len, "%" PRIu64 "h %" PRIu64 "m", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%" PRIu64 "m %" PRIu64 "s", s / 60, s % 60);
}

static const char *pool_state_name(enum rmp_pool_state st)
{
	switch (st) {
	case RMP_POOL_STATE_CREATING:
		return "creating";
	case RMP_POOL_STATE_READY:
		return "ready";
	case RMP_POOL_STATE_DESTROYING:
		return "destroying";
	case RMP_POOL_STATE_RECOVERING:
		return "recovering";
	case RMP_POOL_STATE_LOST:
		return "lost";
	case RMP_POOL_STATE_DEGRADED:
		return "degraded";
	}
	return "unknown";
}

static int cmd_status(struct cli *cli, const struct cli_cmd *self, int argc, char **argv)
{
	struct cmd_opts o = { 0 };
	struct rmp_status *s;
	rmp_client *c;
	char b1[32], b2[32], b3[32];
	int rc, ex = parse_cmd_opts(argc, argv, &o, ALLOW_JSON);

	if (ex)
		return ex;
	if (o.help)
		return print_cmd_help(stdout, self);
	if (argc - optind != 0)
		return usage_error("status: unexpected argument '%s'", argv[optind]);
	ex = cli_connect(cli, &c);
	if (ex)
		return ex;
	rc = rmp_status(c, &s);
	if (rc) {
		ex = fail_rc("status", rc, c);
		rmp_disconnect(c);
		return ex;
	}
	if (o.json) {
		printf("{\n  \"coordinator\": ");
		json_str(stdout, cli->coordinator);
		printf(",\n  \"client_version\": ");
		json_str(stdout, rmp_version());
		printf(",\n  \"uptime_ms\": %" PRIu64 ",\n  \"generation\": %" PRIu64
		       ",\n  \"capacity\": %" PRIu64 ",\n  \"free_bytes\": %" PRIu64
		       ",\n  \"clients\": %u,\n  \"pools\": [",
		       s->uptime_ms, s->generation, s->capacity, s->free_bytes, s->clients);
		for (size_t i = 0; i < s->n_pools; i++) {
			const struct rmp_status_pool *p = &s->pools[i];
			printf("%s\n    {\"name\": ", i ? "," : "");
			json_str(stdout, p->name);
			printf(", \"id\": %u, \"capacity\": %" PRIu64 ", \"space\": %" PRIu64
			       ", \"free_bytes\": %" PRIu64 ", \"clients\": %u, \"donors\": %u"
			       ", \"segtab_version\": %" PRIu64 ", \"state\": \"%s\""
			       ", \"donors_away\": %u, \"donors_lost\": %u, \"lost_bytes\": %" PRIu64
			       ", \"note\": ",
			       p->pool_id, p->capacity, p->space, p->free_bytes, p->clients, p->donors,
			       p->segtab_version, pool_state_name(p->state), p->donors_away,
			       p->donors_lost, p->lost_bytes);
			json_str(stdout, p->note);
			printf("}");
		}
		printf("%s],\n  \"hosts\": [", s->n_pools ? "\n  " : "");
		for (size_t i = 0; i < s->n_hosts; i++) {
			const struct rmp_status_host *h = &s->hosts[i];
			printf("%s\n    {\"host\": ", i ? "," : "");
			json_str(stdout, h->host);
			printf(", \"donors\": %u, \"used\": %" PRIu64 ", \"budget\": %" PRIu64 "}",
			       h->donors, h->used, h->budget);
		}
		printf("%s]\n}\n", s->n_hosts ? "\n  " : "");
	} else {
		print_uptime(s->uptime_ms, b1, sizeof(b1));
		printf("coordinator %s: up %s (generation %" PRIu64 "), %u client%s, %zu pool%s, "
		       "%zu host%s\n",
		       cli->coordinator, b1, s->generation, s->clients, s->clients == 1 ? "" : "s",
		       s->n_pools, s->n_pools == 1 ? "" : "s", s->n_hosts, s->n_hosts == 1 ? "" : "s");
		printf("capacity %s, free %s\n", human(s->capacity, b1, sizeof(b1)),
		       human(s->free_bytes, b2, sizeof(b2)));
		if (s->n_pools) {
			printf("\n%-20s %5s %12s %12s %12s %7s %8s %8s %-10s\n", "POOL", "ID",
			       "CAPACITY", "SPACE", "FREE", "DONORS", "CLIENTS", "VERSION", "STATE");
			for (size_t i = 0; i < s->n_pools; i++) {
				const struct rmp_status_pool *p = &s->pools[i];
				printf("%-20s %5u %12s %12s %12s %7u %8u %8" PRIu64 " %-10s\n", p->name,
				       p->pool_id, human(p->capacity, b1, sizeof(b1)),
				       human(p->space, b2, sizeof(b2)), human(p->free_bytes, b3, sizeof(b3)),
				       p->donors, p->clients, p->segtab_version,
				       pool_state_name(p->state));
				if (p->note[0])
					printf("  %s: %s\n", p->name, p->note);
			}
		}
		if (s->n_hosts) {
			printf("\n%-24s %7s %12s %12s\n", "HOST", "DONORS", "USED", "BUDGET");
			for (size_t i = 0; i < s->n_hosts; i++) {
				const struct rmp_status_host *h = &s->hosts[i];
				printf("%-24s %7u %12s %12s\n", h->host, h->donors,
				       human(h->used, b1, sizeof(b1)), human(h->budget, b2, sizeof(b2)));
			}
		}
	}
	rmp_status_free(s);
	rmp_disconnect(c);
	return EXIT_OK;
}

/* ---- hidden test commands ---- */

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* lease-hold NAME [SECONDS]: attach, print the lease, hold it until a
 * signal (or SECONDS), reporting when it expires. The provisioning test
 * SIGSTOPs it to play a consumer that hangs and stops renewing. */
static int cmd_lease_hold(struct cli *cli, const struct cli_cmd *self, int argc, char **argv)
{
	struct rmp_pool_info *in = NULL;
	rmp_client *c;
	rmp_pool *p;

	if (argc < 2 || argc > 3)
		return usage_error("lease-hold: want NAME [SECONDS]");
	long secs = argc == 3 ? strtol(argv[2], NULL, 10) : 3600;
	int ex = attach(cli, self, argv[1], &c, &p);
	if (ex)
		return ex;
	struct sigaction sa = { .sa_handler = on_stop };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (rmp_pool_info(p, &in) == 0) {
		printf("lease %" PRIu64 " ttl_ms %u client %" PRIu64 " pid %ld\n", in->lease_id,
		       in->lease_ttl_ms, rmp_client_id(c), (long)getpid());
		rmp_pool_info_free(in);
	}
	fflush(stdout);
	bool said = false;
	for (long i = 0; i < secs * 10 && !stop_flag; i++) {
		usleep(100000);
		if (!said && rmp_pool_info(p, &in) == 0) {
			if (in->lease_expired) {
				printf("lease %" PRIu64 " expired\n", in->lease_id);
				fflush(stdout);
				said = true;
			}
			rmp_pool_info_free(in);
		}
	}
	rmp_pool_close(p);
	rmp_disconnect(c);
	return said ? 3 : EXIT_OK;
}

/* ---- the other rows of the table ---- */

static int cmd_bench(struct cli *cli, const struct cli_cmd *self, int argc, char **argv)
{
	(void)self;
	return rmpool_bench(cli->coordinator, cli->secret, &cli->opts, argc, argv);
}

static int cmd_help(struct cli *cli, const struct cli_cmd *self, int argc, char **argv)
{
	(void)cli;
	(void)self;
	(void)argc;
	(void)argv;
	help_main(stdout);
	return EXIT_OK;
}

/* ---- main ---- */

static const struct cli_cmd *find_cmd(const char *group, const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++) {
		const struct cli_cmd *c = &commands[i];
		if ((group ? c->group && !strcmp(c->group, group) : !c->group) && !strcmp(c->name, name))
			return c;
	}
	return NULL;
}

static bool is_group(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (commands[i].group && !strcmp(commands[i].group, name))
			return true;
	return false;
}

/* argv[0] is the command (or its group, "pool"). */
static int dispatch(struct cli *cli, int argc, char **argv)
{
	const char *group = NULL;

	if (is_group(argv[0])) {
		if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
			help_main(argc < 2 ? stderr : stdout);
			return argc < 2 ? EXIT_USAGE : EXIT_OK;
		}
		group = argv[0];
		argc--;
		argv++;
	}
	const struct cli_cmd *c = find_cmd(group, argv[0]);
	if (!c)
		return group ? usage_error("unknown %s command '%s'", group, argv[0])
			     : usage_error("unknown command '%s'", argv[0]);
	return c->run(cli, c, argc, argv);
}

/* The secret from --secret-file or $RMPOOL_SECRET_FILE (common/secret.h:
 * one trailing newline trimmed, length bounds, a warning when others may
 * read it). */
static int load_secret(struct cli *cli, const char *path)
{
	char err[256];
	bool loose = false;

	if (rmp_secret_read_file_dup(path, &cli->secret, &loose, err, sizeof(err)) != 0)
		return fail("%s", err);
	if (loose)
		fprintf(stderr, "%s: warning: secret file %s can be read by group or others (chmod 600 it)\n", prog,
			path);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "coordinator", required_argument, NULL, 'c' },
		{ "secret-file", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli cli = { .opts = RMP_CONNECT_OPTS_INIT, .rdma_timeout_ms = 10000 };
	const char *secret_file = getenv("RMPOOL_SECRET_FILE");
	int ch, ex;

	cli.coordinator = getenv("RMPOOL_COORDINATOR");
	if (!cli.coordinator || !*cli.coordinator)
		cli.coordinator = DEFAULT_COORDINATOR;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+c:s:t:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cli.coordinator = optarg;
			break;
		case 's':
			secret_file = optarg;
			break;
		case 't': {
			uint64_t ms;
			if (rmp_config_parse_duration(optarg, &ms) || ms == 0 || ms > 3600000u)
				return usage_error("--timeout: bad duration \"%s\" (e.g. 10s)", optarg);
			cli.opts.connect_timeout_ms = cli.opts.request_timeout_ms = (unsigned)ms;
			cli.rdma_timeout_ms = (unsigned)ms;
			break;
		}
		case 'h':
			help_main(stdout);
			return EXIT_OK;
		case 'V':
			/* The GNU form (help2man reads it); the library is linked in. */
			printf("%s (rmpool) %s\n", prog, rmp_version());
			return EXIT_OK;
		case '?':
			if (optopt)
				return usage_error("option -%c needs a value or is unknown", optopt);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc) {
		help_main(stderr);
		return EXIT_USAGE;
	}
	/* The daemons' file, as an operator on their host would pass it. */
	if ((!secret_file || !*secret_file) && !getenv("RMPOOL_SECRET") &&
	    access(RMPOOL_DEFAULT_SECRET_FILE, R_OK) == 0)
		secret_file = RMPOOL_DEFAULT_SECRET_FILE;
	if (secret_file && *secret_file) {
		ex = load_secret(&cli, secret_file);
		if (ex)
			return ex;
	}
	ex = dispatch(&cli, argc - optind, argv + optind);
	rmp_secret_free(cli.secret);
	return ex;
}
