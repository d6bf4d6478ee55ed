/* test_config.c - one table drives defaults, the file, flags and --help;
 * every rejection names the option, the value and what is allowed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "rmpool/version.h"

struct cfg {
	struct rmp_config_hostport listen;
	uint64_t lease_ms;
	uint64_t segment;
	int64_t workers;
	bool daemon;
	char name[16];
	int level;
};

static const char *const levels[] = {"error", "warn", "info", "debug", NULL};

static const struct rmp_config_option opts[] = {
	RMP_OPT_HOSTPORT("listen", 'l', struct cfg, listen, "0.0.0.0:7470",
			 "control-protocol address"),
	RMP_OPT_DURATION("lease-timeout", 0, struct cfg, lease_ms, "30s", 1000, 3600000,
			 "how long a consumer's lease lives without renewal"),
	RMP_OPT_SIZE("segment-size", 's', struct cfg, segment, "64M", 4096, INT64_C(1) << 40,
		     "pool segment size"),
	RMP_OPT_INT("workers", 'w', struct cfg, workers, "4", 1, 64, "worker threads"),
	RMP_OPT_BOOL("daemon", 'd', struct cfg, daemon, "false", "detach from the terminal"),
	RMP_OPT_STRING("name", 0, struct cfg, name, "rmpool", 1, "instance name"),
	RMP_OPT_ENUM("log-level", 0, struct cfg, level, "info", levels, "log threshold"),
};

static const struct rmp_config_spec spec = {
	.prog = "rmpool-server",
	.summary = "The rmpool coordinator.",
	.opts = opts,
	.n_opts = sizeof(opts) / sizeof(opts[0]),
};

static char err[512];

static int load(struct cfg *c, int argc, char **argv)
{
	err[0] = '\0';
	return rmp_config_load(&spec, c, argc, argv, NULL, err, sizeof(err));
}

/* load() with argv built from a NULL-terminated list of flags. */
static int loadv(struct cfg *c, ...)
{
	char *av[16] = {"rmpool-server"};
	int ac = 1;
	va_list ap;

	va_start(ap, c);
	for (char *a; (a = va_arg(ap, char *)) && ac < 15;)
		av[ac++] = a;
	va_end(ap);
	av[ac] = NULL;
	return load(c, ac, av);
}
#define LOAD(c, ...) loadv((c), __VA_ARGS__, (char *)NULL)

static char *write_file(const char *text)
{
	static char path[64];
	strcpy(path, "/tmp/rmp_test_config_XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

Test(config, defaults)
{
	struct cfg c;
	char *av[] = {"rmpool-server", NULL};

	memset(&c, 0xff, sizeof(c));
	cr_assert_eq(load(&c, 1, av), 0, "%s", err);
	cr_assert_str_eq(c.listen.host, "0.0.0.0");
	cr_assert_eq(c.listen.port, 7470);
	cr_assert_eq(c.lease_ms, 30000);
	cr_assert_eq(c.segment, 64u << 20);
	cr_assert_eq(c.workers, 4);
	cr_assert_eq(c.daemon, false);
	cr_assert_str_eq(c.name, "rmpool");
	cr_assert_eq(c.level, 2);
	/* formatting the defaults gives the table's text back */
	for (size_t i = 0; i < spec.n_opts; i++) {
		char buf[300];
		cr_assert_eq(rmp_config_format(&opts[i], &c, buf, sizeof(buf)), 0);
		cr_assert_str_eq(buf, opts[i].def, "%s", opts[i].name);
	}
}

Test(config, flags)
{
	struct cfg c;

	cr_assert_eq(LOAD(&c, "--lease-timeout=5m", "-w", "8", "--daemon", "-l", "[::1]:9000",
			  "--name", "alpha", "--log-level=DEBUG", "-s", "1G"),
		     0, "%s", err);
	cr_assert_eq(c.lease_ms, 300000);
	cr_assert_eq(c.workers, 8);
	cr_assert(c.daemon);
	cr_assert_str_eq(c.listen.host, "::1");
	cr_assert_eq(c.listen.port, 9000);
	cr_assert_str_eq(c.name, "alpha");
	cr_assert_eq(c.level, 3);
	cr_assert_eq(c.segment, 1u << 30);
	char buf[300];
	rmp_config_format(&opts[0], &c, buf, sizeof(buf));
	cr_assert_str_eq(buf, "[::1]:9000");

	cr_assert_eq(LOAD(&c, "--daemon=no", "-dyes"), 0, "%s", err);
	cr_assert(c.daemon, "the later flag wins");
	cr_assert_eq(LOAD(&c, "--daemon=off"), 0, "%s", err);
	cr_assert(!c.daemon);
	/* getopt_long takes unambiguous prefixes */
	cr_assert_eq(LOAD(&c, "--work=2"), 0, "%s", err);
	cr_assert_eq(c.workers, 2);
}

struct reject_case {
	const char *arg;
	const char *message; /* the whole error line */
};

Test(config, flag_rejections)
{
	static const struct reject_case cases[] = {
		{"--lease-timeout=0s", "--lease-timeout: \"0s\" is out of range [1s, 1h]"},
		{"--lease-timeout=2h", "--lease-timeout: \"2h\" is out of range [1s, 1h]"},
		{"--lease-timeout=30",
		 "--lease-timeout: \"30\" is not a duration (a number followed by ms, s, m, h or "
		 "d)"},
		{"--workers=0", "--workers: \"0\" is out of range [1, 64]"},
		{"--workers=-3", "--workers: \"-3\" is out of range [1, 64]"},
		{"--workers=99999999999999999999", "--workers: \"99999999999999999999\" is out of "
						   "range [1, 64]"},
		{"--workers=4x", "--workers: \"4x\" is not an integer"},
		{"--workers=", "--workers: \"\" is not an integer"},
		{"--segment-size=1K", "--segment-size: \"1K\" is out of range [4K, 1T]"},
		{"--segment-size=2T", "--segment-size: \"2T\" is out of range [4K, 1T]"},
		{"--segment-size=32E", "--segment-size: \"32E\" is out of range [4K, 1T]"},
		{"--segment-size=1.5G",
		 "--segment-size: \"1.5G\" is not a size (a number with an optional K, M, G, T, P "
		 "or E suffix)"},
		{"--daemon=maybe",
		 "--daemon: \"maybe\" is not a boolean (true/false, yes/no, on/off, 1/0)"},
		{"--listen=localhost",
		 "--listen: \"localhost\" is not host:port (IPv6: [addr]:port)"},
		{"--listen=::1:80", "--listen: \"::1:80\" is not host:port (IPv6: [addr]:port)"},
		{"--listen=:80", "--listen: \":80\" is not host:port (IPv6: [addr]:port)"},
		{"--listen=h:0", "--listen: \"h:0\": port is out of range [1, 65535]"},
		{"--listen=h:65536", "--listen: \"h:65536\": port is out of range [1, 65535]"},
		{"--name=", "--name: \"\" is 0 bytes long; allowed [1, 15]"},
		{"--name=sixteen-chars-xx", "--name: \"sixteen-chars-xx\" is 16 bytes long; allowed "
					    "[1, 15]"},
		{"--log-level=loud", "--log-level: \"loud\" is not one of error, warn, info, debug"},
		{"--nope", "unknown or ambiguous option '--nope' (see --help)"},
		{"-x", "unknown option '-x' (see --help)"},
		{"--workers", "--workers needs a value (see --help)"},
		{"--config", "--config needs a value (see --help)"},
		{"--help=1", "--help=1 takes no value (see --help)"},
		{"stray", "unexpected argument \"stray\" (see --help)"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cfg c;
		cr_assert_eq(LOAD(&c, (char *)cases[i].arg), -EINVAL, "%s", cases[i].arg);
		cr_assert_str_eq(err, cases[i].message);
	}
}

Test(config, file_then_flags)
{
	char *path = write_file("# rmpool-server test config\n"
				"\n"
				"   listen = 10.0.0.1:7000   # control port\n"
				"lease_timeout=10s\n"
				"\tworkers = 3\n"
				"name = \"a#b c\"\n"
				"daemon = yes\n"
				"segment-size = 128MiB\n");
	struct cfg c;

	cr_assert_eq(LOAD(&c, "--config", path), 0, "%s", err);
	cr_assert_str_eq(c.listen.host, "10.0.0.1");
	cr_assert_eq(c.listen.port, 7000);
	cr_assert_eq(c.lease_ms, 10000);
	cr_assert_eq(c.workers, 3);
	cr_assert_str_eq(c.name, "a#b c");
	cr_assert(c.daemon);
	cr_assert_eq(c.segment, 128u << 20);

	/* flags override the file whatever their order on the command line */
	cr_assert_eq(LOAD(&c, "--workers=9", "-c", path, "--daemon=false"), 0, "%s", err);
	cr_assert_eq(c.workers, 9);
	cr_assert(!c.daemon);
	cr_assert_eq(c.lease_ms, 10000, "the file still applies");
	unlink(path);
}

Test(config, file_rejections)
{
	static const struct {
		const char *text;
		const char *message; /* after "path:" */
	} cases[] = {
		{"workers = 2\n\nlease-timeout = 0s\n",
		 ":3: lease-timeout: \"0s\" is out of range [1s, 1h]"},
		{"# c\nbogus = 1\n", ":2: unknown option \"bogus\""},
		{"workers\n", ":1: expected \"key = value\", got \"workers\""},
		{"name = \"open\n", ":1: name: unterminated quote"},
		{"name = \"x\" y\n", ":1: name: text after the closing quote"},
		{" = 5\n", ":1: missing key before '='"},
		{"config = /etc/x\n", ":1: unknown option \"config\""},
		{"workers = 5 # ok\nworkers = 65\n", ":2: workers: \"65\" is out of range [1, 64]"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *path = write_file(cases[i].text);
		char want[600];
		struct cfg c;
		snprintf(want, sizeof(want), "%s%s", path, cases[i].message);
		cr_assert_eq(LOAD(&c, "--config", path), -EINVAL, "%s", cases[i].text);
		cr_assert_str_eq(err, want);
		unlink(path);
	}
	struct cfg c;
	cr_assert_eq(LOAD(&c, "--config=/nonexistent/rmpool.conf"), -ENOENT);
	cr_assert_str_eq(err, "/nonexistent/rmpool.conf: cannot open: No such file or directory");
}

Test(config, version)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	struct cfg c;
	char *av[] = {"rmpool-server", "--workers=0", "--version", NULL};

	/* Like --help: printed, nothing else checked, exit 0. */
	cr_assert_eq(rmp_config_load(&spec, &c, 3, av, out, err, sizeof(err)), RMP_CONFIG_HELP,
		     "%s", err);
	fclose(out);
	cr_assert_str_eq(text, "rmpool-server (rmpool) " RMPOOL_VERSION "\n");
	free(text);
}

Test(config, help)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	struct cfg c;
	char *av[] = {"rmpool-server", "--workers=0", "--help", NULL};

	/* --help wins over a bad value elsewhere: the user asked for help */
	cr_assert_eq(rmp_config_load(&spec, &c, 3, av, out, err, sizeof(err)), RMP_CONFIG_HELP,
		     "%s", err);
	fclose(out);
	static const char *const want[] = {
		"Usage: rmpool-server [OPTION]...\nThe rmpool coordinator.\n",
		"  -c, --config=FILE",
		"  -h, --help",
		"  -l, --listen=HOST:PORT        control-protocol address (default: 0.0.0.0:7470)",
		("      --lease-timeout=DURATION  how long a consumer's lease lives without renewal "
		 "(default: 30s; range [1s, 1h])"),
		"  -s, --segment-size=SIZE       pool segment size (default: 64M; range [4K, 1T])",
		"  -w, --workers=N               worker threads (default: 4; range [1, 64])",
		"  -d, --daemon[=BOOL]",
		"(default: info; one of error, warn, info, debug)",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert(strstr(text, want[i]), "missing \"%s\" in:\n%s", want[i], text);
	free(text);
}

Test(config, bad_tables)
{
	struct cfg c;
	struct bad {
		int64_t n;
		int64_t m;
	} b;
	const struct rmp_config_option wrong_member[] = {
		RMP_OPT_SIZE("n", 0, struct cfg, daemon, "1", 0, 10, "bool is not uint64_t"),
	};
	const struct rmp_config_option dup[] = {
		RMP_OPT_INT("n", 0, struct bad, n, "1", 0, 10, "a"),
		RMP_OPT_INT("n", 0, struct bad, m, "1", 0, 10, "b"),
	};
	const struct rmp_config_option clash[] = {
		RMP_OPT_INT("hosts", 'h', struct bad, n, "1", 0, 10, "-h is --help"),
	};
	const struct rmp_config_option bad_default[] = {
		RMP_OPT_INT("n", 0, struct bad, n, "11", 0, 10, "default out of range"),
	};
	struct rmp_config_spec s = {.prog = "t"};

	s.opts = wrong_member;
	s.n_opts = 1;
	cr_assert_eq(rmp_config_defaults(&s, &c, err, sizeof(err)), -EINVAL);
	s.opts = dup;
	s.n_opts = 2;
	cr_assert_eq(rmp_config_defaults(&s, &b, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "twice"), "%s", err);
	s.opts = clash;
	s.n_opts = 1;
	cr_assert_eq(rmp_config_defaults(&s, &b, err, sizeof(err)), -EINVAL);
	s.opts = bad_default;
	cr_assert_eq(rmp_config_defaults(&s, &b, err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "default for --n: \"11\" is out of range [0, 10]");
}

Test(config, set_by_name)
{
	struct cfg c;
	cr_assert_eq(rmp_config_defaults(&spec, &c, err, sizeof(err)), 0);
	cr_assert_eq(rmp_config_set(&spec, &c, "lease_timeout", "1h", "", err, sizeof(err)), 0);
	cr_assert_eq(c.lease_ms, 3600000);
	cr_assert_eq(rmp_config_set(&spec, &c, "nope", "1", "env: ", err, sizeof(err)), -EINVAL);
	cr_assert_str_eq(err, "env: unknown option \"nope\"");
}

Test(config, size_syntax)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t v;
	} cases[] = {
		{"0", 0, 0},
		{"4096", 0, 4096},
		{"64K", 0, 64 << 10},
		{"64k", 0, 64 << 10},
		{"64KiB", 0, 64 << 10},
		{"64kb", 0, 64 << 10},
		{"64B", 0, 64},
		{"3M", 0, 3u << 20},
		{"1G", 0, 1u << 30},
		{"2T", 0, 2ull << 40},
		{"1P", 0, 1ull << 50},
		{"15E", 0, 15ull << 60},
		{"18446744073709551615", 0, UINT64_MAX},
		{"16E", -ERANGE, 0},
		{"18446744073709551616", -ERANGE, 0},
		{"99999999999999999999999K", -ERANGE, 0},
		{"", -EINVAL, 0},
		{"K", -EINVAL, 0},
		{"-1", -EINVAL, 0},
		{"+1", -EINVAL, 0},
		{" 1", -EINVAL, 0},
		{"1 ", -EINVAL, 0},
		{"0x10", -EINVAL, 0},
		{"1.5G", -EINVAL, 0},
		{"64i", -EINVAL, 0},
		{"64iB", -EINVAL, 0},
		{"64KK", -EINVAL, 0},
		{"64Q", -EINVAL, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		cr_assert_eq(rmp_config_parse_size(cases[i].s, &v), cases[i].rc, "\"%s\"",
			     cases[i].s);
		if (cases[i].rc == 0)
			cr_assert_eq(v, cases[i].v, "\"%s\"", cases[i].s);
	}
}

Test(config, duration_syntax)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t ms;
	} cases[] = {
		{"0s", 0, 0},	    {"500ms", 0, 500},	     {"30s", 0, 30000},
		{"5m", 0, 300000},  {"1h", 0, 3600000},	     {"2d", 0, 172800000},
		{"30", -EINVAL, 0}, {"s", -EINVAL, 0},	     {"1.5s", -EINVAL, 0},
		{"10us", -EINVAL, 0}, {"5 s", -EINVAL, 0},   {"5S", -EINVAL, 0},
		{"18446744073709551615s", -ERANGE, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		cr_assert_eq(rmp_config_parse_duration(cases[i].s, &v), cases[i].rc, "\"%s\"",
			     cases[i].s);
		if (cases[i].rc == 0)
			cr_assert_eq(v, cases[i].ms, "\"%s\"", cases[i].s);
	}
}

Test(config, formatting)
{
	char b[32];
	rmp_config_format_size(0, b, sizeof(b));
	cr_assert_str_eq(b, "0");
	rmp_config_format_size(1000, b, sizeof(b));
	cr_assert_str_eq(b, "1000");
	rmp_config_format_size(1536 << 10, b, sizeof(b));
	cr_assert_str_eq(b, "1536K");
	rmp_config_format_size(UINT64_C(1) << 63, b, sizeof(b));
	cr_assert_str_eq(b, "8E");
	rmp_config_format_bytes(1536ull << 20, b, sizeof(b));
	cr_assert_str_eq(b, "1.5 GiB");
	rmp_config_format_bytes(100, b, sizeof(b));
	cr_assert_str_eq(b, "100 B");
	rmp_config_format_duration(90000, b, sizeof(b));
	cr_assert_str_eq(b, "90s");
	rmp_config_format_duration(1500, b, sizeof(b));
	cr_assert_str_eq(b, "1500ms");
	rmp_config_format_duration(7200000, b, sizeof(b));
	cr_assert_str_eq(b, "2h");
}
