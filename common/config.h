/* config.h - table-driven options: one table drives the config file, the
 * command-line flags, --help and validation (CONTRIBUTING.md,
 * Configuration is a table).
 *
 * A daemon describes its options once:
 *
 *   struct server_cfg { struct rmp_config_hostport listen; uint64_t lease_ms; };
 *   static const struct rmp_config_option opts[] = {
 *       RMP_OPT_HOSTPORT("listen", 'l', struct server_cfg, listen,
 *                        "0.0.0.0:7470", "control-protocol address"),
 *       RMP_OPT_DURATION("lease-timeout", 0, struct server_cfg, lease_ms,
 *                        "30s", 1000, 3600000, "how long a lease lives"),
 *   };
 *
 * and calls rmp_config_load(), which applies the defaults, then the file
 * named by --config, then the other flags (flags override the file).
 * Every value, default included, goes through the same parser and the
 * same bounds. Errors name the option, the bad value and what is
 * allowed:  --lease-timeout: "0s" is out of range [1s, 1h]
 *           /etc/rmpool/server.conf:7: lease-timeout: "0s" is out of range [1s, 1h]
 *
 * Nothing here prints except --help and --version, to the stream given.
 */
#ifndef RMP_CONFIG_H
#define RMP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum rmp_config_type {
	RMP_CONFIG_BOOL,     /* bool: true/false, yes/no, on/off, 1/0 */
	RMP_CONFIG_INT,	     /* int64_t, bounds [min, max] */
	RMP_CONFIG_SIZE,     /* uint64_t bytes: 4096, 64K, 2G, 1TiB (binary units) */
	RMP_CONFIG_DURATION, /* uint64_t milliseconds: 500ms, 30s, 5m, 1h */
	RMP_CONFIG_STRING,   /* char[N]: length within [min, max], max < N */
	RMP_CONFIG_HOSTPORT, /* struct rmp_config_hostport: host:port, [v6]:port */
	RMP_CONFIG_ENUM,     /* int: index into choices */
};

#define RMP_CONFIG_HOST_MAX 255

struct rmp_config_hostport {
	char host[RMP_CONFIG_HOST_MAX + 1];
	uint16_t port;
};

struct rmp_config_option {
	const char *name; /* flag --name, file key name (or name_with_underscores) */
	char short_name;  /* -x, or 0 */
	enum rmp_config_type type;
	size_t offset; /* of the value in the caller's struct */
	size_t size;   /* of that member: checked against the type */
	const char *def; /* default, in the option's own syntax; NULL: zero/empty */
	/* Bounds: int value, size bytes, duration ms, string length, port. */
	int64_t min, max;
	const char *const *choices; /* enum: NULL-terminated */
	const char *help;
};

#define RMP_OPT_(nm, sh, ty, st, fld, dflt, lo, hi, ch, hlp)                     \
	{ .name = (nm), .short_name = (sh), .type = (ty), .offset = offsetof(st, fld), \
	  .size = sizeof(((st *)0)->fld), .def = (dflt), .min = (lo), .max = (hi),     \
	  .choices = (ch), .help = (hlp) }
#define RMP_OPT_BOOL(nm, sh, st, fld, dflt, hlp)                                  \
	RMP_OPT_(nm, sh, RMP_CONFIG_BOOL, st, fld, dflt, 0, 1, NULL, hlp)
#define RMP_OPT_INT(nm, sh, st, fld, dflt, lo, hi, hlp)                           \
	RMP_OPT_(nm, sh, RMP_CONFIG_INT, st, fld, dflt, lo, hi, NULL, hlp)
#define RMP_OPT_SIZE(nm, sh, st, fld, dflt, lo, hi, hlp)                          \
	RMP_OPT_(nm, sh, RMP_CONFIG_SIZE, st, fld, dflt, lo, hi, NULL, hlp)
#define RMP_OPT_DURATION(nm, sh, st, fld, dflt, lo_ms, hi_ms, hlp)                \
	RMP_OPT_(nm, sh, RMP_CONFIG_DURATION, st, fld, dflt, lo_ms, hi_ms, NULL, hlp)
#define RMP_OPT_STRING(nm, sh, st, fld, dflt, minlen, hlp)                        \
	RMP_OPT_(nm, sh, RMP_CONFIG_STRING, st, fld, dflt, minlen,                \
		 (int64_t)sizeof(((st *)0)->fld) - 1, NULL, hlp)
#define RMP_OPT_HOSTPORT(nm, sh, st, fld, dflt, hlp)                              \
	RMP_OPT_(nm, sh, RMP_CONFIG_HOSTPORT, st, fld, dflt, 1, 65535, NULL, hlp)
#define RMP_OPT_ENUM(nm, sh, st, fld, dflt, ch, hlp)                              \
	RMP_OPT_(nm, sh, RMP_CONFIG_ENUM, st, fld, dflt, 0, 0, ch, hlp)

struct rmp_config_spec {
	const char *prog;    /* for --help: "rmpool-server" */
	const char *summary; /* one line under Usage */
	const struct rmp_config_option *opts;
	size_t n_opts;
};

/* rmp_config_load() returned this: --help or --version was printed to
 * `help_out`; the program exits 0. */
#define RMP_CONFIG_HELP 1

/* Defaults, then --config FILE, then flags. 0, RMP_CONFIG_HELP, or a
 * negative errno with one line in err: -EINVAL (bad value, unknown
 * option, bad table), or the errno of opening the config file.
 * Uses getopt_long, so it is not thread-safe; argv may be permuted. */
int rmp_config_load(const struct rmp_config_spec *spec, void *target, int argc, char **argv,
		    FILE *help_out, char *err, size_t errlen);

/* The steps, for callers that need them apart. */
int rmp_config_defaults(const struct rmp_config_spec *spec, void *target, char *err,
			size_t errlen);
int rmp_config_load_file(const struct rmp_config_spec *spec, void *target, const char *path,
			 char *err, size_t errlen);
/* Sets one option by name from its text; `where` prefixes errors
 * ("--" for flags, "file:12: " for files). */
int rmp_config_set(const struct rmp_config_spec *spec, void *target, const char *name,
		   const char *value, const char *where, char *err, size_t errlen);
void rmp_config_help(const struct rmp_config_spec *spec, FILE *out);
/* The option's current value in its own syntax ("30s", "64M"). */
int rmp_config_format(const struct rmp_config_option *o, const void *target, char *buf,
		      size_t len);

/* The value parsers and formatters, for other code that reads sizes and
 * durations (the CLI). Parsers return 0 or -EINVAL (syntax) / -ERANGE. */
int rmp_config_parse_size(const char *s, uint64_t *out);
int rmp_config_parse_duration(const char *s, uint64_t *ms);
int rmp_config_parse_hostport(const char *s, struct rmp_config_hostport *out);
/* Exact, in the largest unit that divides: 64M, 1536K, 1000. */
void rmp_config_format_size(uint64_t bytes, char *buf, size_t len);
/* Human, rounded to one decimal: "1.5 GiB" (for messages, not files). */
void rmp_config_format_bytes(uint64_t bytes, char *buf, size_t len);
void rmp_config_format_duration(uint64_t ms, char *buf, size_t len);

#endif /* RMP_CONFIG_H */
