/* config.c - see config.h.
 *
 * Every path that sets a value (default text, file line, flag) ends in
 * opt_apply(), which parses the text by type and checks the bounds;
 * nothing else writes into the caller's struct. The getopt_long table is
 * built from the option rows at each call: row i has val OPT_VAL_BASE + i,
 * above every char, so short names and rows cannot collide.
 */
#include "config.h"
#include "log.h"
#include "rmpool/version.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OPT_VAL_BASE 0x100
#define OPT_VAL_CONFIG (OPT_VAL_BASE - 1)
#define OPT_VAL_HELP (OPT_VAL_BASE - 2)
#define OPT_VAL_VERSION (OPT_VAL_BASE - 3)

/* Longest value quoted in an error message: enough to recognise it. */
#define QUOTE_MAX 64


/* ---- value syntax ---- */

/* Digits only: strtoull alone would take "-1", " 5" and "0x10". */
static int parse_u64_prefix(const char *s, uint64_t *v, const char **end)
{
	uint64_t x = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -ERANGE;
		x = x * 10 + d;
	}
	*v = x;
	*end = p;
	return 0;
}

int rmp_config_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGTPE";
	uint64_t v;
	const char *p;
	unsigned shift = 0;

	int rc = parse_u64_prefix(s, &v, &p);
	if (rc)
		return rc;
	if (*p) {
		const char *u = strchr(units, toupper((unsigned char)*p));
		if (u) {
			shift = 10u * (unsigned)(u - units + 1);
			p++;
			if (*p == 'i' || *p == 'I')
				p++;
		}
		if (*p == 'B' || *p == 'b')
			p++;
		/* "64i" or "iB" alone are typos, not units */
		if (*p || (!u && p[-1] != 'B' && p[-1] != 'b'))
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

int rmp_config_parse_duration(const char *s, uint64_t *ms)
{
	static const struct {
		const char *name;
		uint64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
	uint64_t v;
	const char *p;

	int rc = parse_u64_prefix(s, &v, &p);
	if (rc)
		return rc;
	/* A bare number is refused: "30" could be seconds or milliseconds,
	 * and guessing wrong is a 1000x mistake. */
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].name) == 0) {
			if (v > UINT64_MAX / units[i].ms)
				return -ERANGE;
			*ms = v * units[i].ms;
			return 0;
		}
	}
	return -EINVAL;
}

int rmp_config_parse_hostport(const char *s, struct rmp_config_hostport *out)
{
	const char *host = s, *host_end, *colon;
	uint64_t port;
	const char *end;

	if (*s == '[') {
		/* [v6addr]:port */
		host = s + 1;
		host_end = strchr(host, ']');
		if (!host_end || host_end[1] != ':')
			return -EINVAL;
		colon = host_end + 1;
	} else {
		colon = strrchr(s, ':');
		/* a second colon means an unbracketed IPv6 address: ambiguous */
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL;
		host_end = colon;
	}
	size_t hlen = (size_t)(host_end - host);
	if (hlen == 0 || hlen > RMP_CONFIG_HOST_MAX)
		return -EINVAL;
	int rc = parse_u64_prefix(colon + 1, &port, &end);
	if (rc || *end)
		return -EINVAL;
	if (port == 0 || port > 65535)
		return -ERANGE;
	memcpy(out->host, host, hlen);
	out->host[hlen] = '\0';
	out->port = (uint16_t)port;
	return 0;
}

void rmp_config_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	int i = -1;

	while (bytes && i < 5 && (bytes & 1023) == 0) {
		bytes >>= 10;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%" PRIu64, bytes);
	else
		snprintf(buf, len, "%" PRIu64 "%c", bytes, units[i]);
}

void rmp_config_format_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	unsigned i = 0;
	double v = (double)bytes;

	while (v >= 1024.0 && i < 6) {
		v /= 1024.0;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%" PRIu64 " B", bytes);
	else
		snprintf(buf, len, "%.1f %s", v, units[i]);
}

void rmp_config_format_duration(uint64_t ms, char *buf, size_t len)
{
	if (ms == 0)
		snprintf(buf, len, "0s");
	else if (ms % 86400000 == 0)
		snprintf(buf, len, "%" PRIu64 "d", ms / 86400000);
	else if (ms % 3600000 == 0)
		snprintf(buf, len, "%" PRIu64 "h", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, len, "%" PRIu64 "m", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "ms", ms);
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- one option ---- */

static void *opt_ptr(const struct rmp_config_option *o, void *target)
{
	return (char *)target + o->offset;
}

/* The bound in the option's own syntax, for "[1s, 1h]". */
static void format_bound(const struct rmp_config_option *o, int64_t v, char *buf, size_t len)
{
	switch (o->type) {
	case RMP_CONFIG_SIZE:
		rmp_config_format_size((uint64_t)v, buf, len);
		break;
	case RMP_CONFIG_DURATION:
		rmp_config_format_duration((uint64_t)v, buf, len);
		break;
	default:
		snprintf(buf, len, "%" PRId64, v);
		break;
	}
}

static int range_error(const struct rmp_config_option *o, const char *where, const char *value,
		       char *err, size_t errlen)
{
	char lo[32], hi[32];

	format_bound(o, o->min, lo, sizeof(lo));
	format_bound(o, o->max, hi, sizeof(hi));
	rmp_errf(err, errlen, "%s%s: \"%.*s\" is out of range [%s, %s]", where, o->name, QUOTE_MAX,
	     value, lo, hi);
	return -EINVAL;
}

static int syntax_error(const struct rmp_config_option *o, const char *where, const char *value,
			const char *expect, char *err, size_t errlen)
{
	rmp_errf(err, errlen, "%s%s: \"%.*s\" is not %s", where, o->name, QUOTE_MAX, value, expect);
	return -EINVAL;
}

/* The member size the table row must declare for each type. */
static size_t type_size(enum rmp_config_type t)
{
	switch (t) {
	case RMP_CONFIG_BOOL:
		return sizeof(bool);
	case RMP_CONFIG_INT:
		return sizeof(int64_t);
	case RMP_CONFIG_SIZE:
	case RMP_CONFIG_DURATION:
		return sizeof(uint64_t);
	case RMP_CONFIG_HOSTPORT:
		return sizeof(struct rmp_config_hostport);
	case RMP_CONFIG_ENUM:
		return sizeof(int);
	case RMP_CONFIG_STRING:
		return 0; /* any; bounded by max below */
	}
	return 0;
}

/* Parses value per o's type, checks bounds, stores. The only writer. */
static int opt_apply(const struct rmp_config_option *o, void *target, const char *value,
		     const char *where, char *err, size_t errlen)
{
	void *p = opt_ptr(o, target);
	int rc;

	switch (o->type) {
	case RMP_CONFIG_BOOL: {
		bool b;
		if (parse_bool(value, &b))
			return syntax_error(o, where, value,
					    "a boolean (true/false, yes/no, on/off, 1/0)", err,
					    errlen);
		*(bool *)p = b;
		return 0;
	}
	case RMP_CONFIG_INT: {
		const char *s = value;
		uint64_t mag;
		const char *end;
		bool neg = *s == '-';
		if (neg)
			s++;
		rc = parse_u64_prefix(s, &mag, &end);
		if (rc == -EINVAL || (!rc && *end))
			return syntax_error(o, where, value, "an integer", err, errlen);
		if (rc || mag > (uint64_t)INT64_MAX + neg)
			return range_error(o, where, value, err, errlen);
		int64_t v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
		if (v < o->min || v > o->max)
			return range_error(o, where, value, err, errlen);
		*(int64_t *)p = v;
		return 0;
	}
	case RMP_CONFIG_SIZE:
	case RMP_CONFIG_DURATION: {
		uint64_t v;
		bool size = o->type == RMP_CONFIG_SIZE;
		rc = size ? rmp_config_parse_size(value, &v) : rmp_config_parse_duration(value, &v);
		if (rc == -EINVAL)
			return syntax_error(o, where, value,
					    size ? "a size (a number with an optional K, M, G, "
						   "T, P or E suffix)"
						 : "a duration (a number followed by ms, s, m, "
						   "h or d)",
					    err, errlen);
		if (rc || v < (uint64_t)o->min || v > (uint64_t)o->max)
			return range_error(o, where, value, err, errlen);
		*(uint64_t *)p = v;
		return 0;
	}
	case RMP_CONFIG_STRING: {
		size_t len = strlen(value);
		if ((int64_t)len < o->min || (int64_t)len > o->max) {
			rmp_errf(err, errlen, "%s%s: \"%.*s%s\" is %zu bytes long; allowed [%" PRId64
			     ", %" PRId64 "]",
			     where, o->name, QUOTE_MAX, value, len > QUOTE_MAX ? "..." : "", len,
			     o->min, o->max);
			return -EINVAL;
		}
		memcpy(p, value, len + 1);
		return 0;
	}
	case RMP_CONFIG_HOSTPORT: {
		struct rmp_config_hostport hp;
		rc = rmp_config_parse_hostport(value, &hp);
		if (rc == -EINVAL)
			return syntax_error(o, where, value, "host:port (IPv6: [addr]:port)", err,
					    errlen);
		if (rc || hp.port < o->min || hp.port > o->max) {
			rmp_errf(err, errlen, "%s%s: \"%.*s\": port is out of range [%" PRId64
			     ", %" PRId64 "]",
			     where, o->name, QUOTE_MAX, value, o->min, o->max);
			return -EINVAL;
		}
		*(struct rmp_config_hostport *)p = hp;
		return 0;
	}
	case RMP_CONFIG_ENUM: {
		char list[256] = "";
		size_t used = 0;
		for (int i = 0; o->choices && o->choices[i]; i++) {
			if (strcasecmp(value, o->choices[i]) == 0) {
				*(int *)p = i;
				return 0;
			}
			int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
					 o->choices[i]);
			if (n > 0 && (size_t)n < sizeof(list) - used)
				used += (size_t)n;
		}
		rmp_errf(err, errlen, "%s%s: \"%.*s\" is not one of %s", where, o->name, QUOTE_MAX,
		     value, list);
		return -EINVAL;
	}
	}
	return -EINVAL;
}

int rmp_config_format(const struct rmp_config_option *o, const void *target, char *buf,
		      size_t len)
{
	const void *p = (const char *)target + o->offset;

	switch (o->type) {
	case RMP_CONFIG_BOOL:
		snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false");
		return 0;
	case RMP_CONFIG_INT:
		snprintf(buf, len, "%" PRId64, *(const int64_t *)p);
		return 0;
	case RMP_CONFIG_SIZE:
		rmp_config_format_size(*(const uint64_t *)p, buf, len);
		return 0;
	case RMP_CONFIG_DURATION:
		rmp_config_format_duration(*(const uint64_t *)p, buf, len);
		return 0;
	case RMP_CONFIG_STRING:
		snprintf(buf, len, "%s", (const char *)p);
		return 0;
	case RMP_CONFIG_HOSTPORT: {
		const struct rmp_config_hostport *hp = p;
		bool v6 = strchr(hp->host, ':') != NULL;
		snprintf(buf, len, "%s%s%s:%u", v6 ? "[" : "", hp->host, v6 ? "]" : "",
			 hp->port);
		return 0;
	}
	case RMP_CONFIG_ENUM:
		snprintf(buf, len, "%s", o->choices[*(const int *)p]);
		return 0;
	}
	return -EINVAL;
}

/* Catches table mistakes (wrong member type, no choices) at start-up; a
 * unit test runs every daemon's table through this. */
static int check_table(const struct rmp_config_spec *spec, char *err, size_t errlen)
{
	for (size_t i = 0; i < spec->n_opts; i++) {
		const struct rmp_config_option *o = &spec->opts[i];
		size_t want = type_size(o->type);
		if (!o->name || !*o->name || !o->help || (want && o->size != want) ||
		    (o->type == RMP_CONFIG_STRING && (o->max < o->min || o->max < 0 ||
						      (uint64_t)o->max >= o->size)) ||
		    (o->type == RMP_CONFIG_ENUM && (!o->choices || !o->choices[0])) ||
		    o->min > o->max) {
			rmp_errf(err, errlen, "option table row %zu (%s) is inconsistent", i,
			     o->name ? o->name : "?");
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(spec->opts[j].name, o->name) == 0 ||
			    (o->short_name && spec->opts[j].short_name == o->short_name)) {
				rmp_errf(err, errlen, "option table: %s defined twice", o->name);
				return -EINVAL;
			}
		}
		if (strcmp(o->name, "config") == 0 || strcmp(o->name, "help") == 0 ||
		    strcmp(o->name, "version") == 0 || o->short_name == 'c' || o->short_name == 'h') {
			rmp_errf(err, errlen, "option table: %s clashes with --config/--help/--version",
			     o->name);
			return -EINVAL;
		}
	}
	return 0;
}

int rmp_config_defaults(const struct rmp_config_spec *spec, void *target, char *err,
			size_t errlen)
{
	int rc = check_table(spec, err, errlen);
	if (rc)
		return rc;
	for (size_t i = 0; i < spec->n_opts; i++) {
		const struct rmp_config_option *o = &spec->opts[i];
		if (!o->def) {
			memset(opt_ptr(o, target), 0, o->size);
			continue;
		}
		rc = opt_apply(o, target, o->def, "default for --", err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

/* Finds a row by name; '_' in file keys stands for '-'. */
static const struct rmp_config_option *find_opt(const struct rmp_config_spec *spec,
						const char *name, size_t len)
{
	for (size_t i = 0; i < spec->n_opts; i++) {
		const char *n = spec->opts[i].name;
		if (strlen(n) != len)
			continue;
		size_t k = 0;
		while (k < len && (name[k] == n[k] || (name[k] == '_' && n[k] == '-')))
			k++;
		if (k == len)
			return &spec->opts[i];
	}
	return NULL;
}

int rmp_config_set(const struct rmp_config_spec *spec, void *target, const char *name,
		   const char *value, const char *where, char *err, size_t errlen)
{
	const struct rmp_config_option *o = find_opt(spec, name, strlen(name));
	if (!o) {
		rmp_errf(err, errlen, "%sunknown option \"%.*s\"", where, QUOTE_MAX, name);
		return -EINVAL;
	}
	return opt_apply(o, target, value, where, err, errlen);
}

/* ---- the file ---- */

static char *trim(char *s, char *end)
{
	while (s < end && isspace((unsigned char)*s))
		s++;
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	*end = '\0';
	return s;
}

/* One "key = value" line, comments already allowed for. */
static int file_line(const struct rmp_config_spec *spec, void *target, char *line,
		     const char *where, char *err, size_t errlen)
{
	char *eq = strchr(line, '=');
	char *p, *value;

	if (!eq) {
		rmp_errf(err, errlen, "%sexpected \"key = value\", got \"%.*s\"", where, QUOTE_MAX,
		     trim(line, line + strlen(line)));
		return -EINVAL;
	}
	char *key = trim(line, eq);
	p = eq + 1;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '"') {
		/* Quotes keep '#' and edge spaces in a string; no escapes. */
		value = p + 1;
		char *close = strchr(value, '"');
		if (!close) {
			rmp_errf(err, errlen, "%s%s: unterminated quote", where, key);
			return -EINVAL;
		}
		*close = '\0';
		for (p = close + 1; isspace((unsigned char)*p); p++)
			;
		if (*p && *p != '#') {
			rmp_errf(err, errlen, "%s%s: text after the closing quote", where, key);
			return -EINVAL;
		}
	} else {
		/* '#' starts a comment at the start of the value or after a
		 * space; "a#b" stays a value. */
		char *hash = p;
		while ((hash = strchr(hash, '#')) && hash != p && !isspace((unsigned char)hash[-1]))
			hash++;
		value = trim(p, hash ? hash : p + strlen(p));
	}
	if (!*key) {
		rmp_errf(err, errlen, "%smissing key before '='", where);
		return -EINVAL;
	}
	const struct rmp_config_option *o = find_opt(spec, key, strlen(key));
	if (!o) {
		rmp_errf(err, errlen, "%sunknown option \"%.*s\"", where, QUOTE_MAX, key);
		return -EINVAL;
	}
	return opt_apply(o, target, value, where, err, errlen);
}

int rmp_config_load_file(const struct rmp_config_spec *spec, void *target, const char *path,
			 char *err, size_t errlen)
{
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int rc = 0;

	FILE *f = fopen(path, "r");
	if (!f) {
		rc = -errno;
		rmp_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return rc;
	}
	while (getline(&line, &cap, f) >= 0) {
		char where[512];
		lineno++;
		char *s = line;
		while (isspace((unsigned char)*s))
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		snprintf(where, sizeof(where), "%s:%u: ", path, lineno);
		rc = file_line(spec, target, s, where, err, errlen);
		if (rc)
			goto out_close;
	}
	if (ferror(f)) {
		rc = -EIO;
		rmp_errf(err, errlen, "%s:%u: read error", path, lineno);
	}
out_close:
	free(line);
	fclose(f);
	return rc;
}

/* ---- flags ---- */

static const char *type_metavar(const struct rmp_config_option *o)
{
	switch (o->type) {
	case RMP_CONFIG_BOOL:
		return "[=BOOL]";
	case RMP_CONFIG_INT:
		return "=N";
	case RMP_CONFIG_SIZE:
		return "=SIZE";
	case RMP_CONFIG_DURATION:
		return "=DURATION";
	case RMP_CONFIG_STRING:
		return "=TEXT";
	case RMP_CONFIG_HOSTPORT:
		return "=HOST:PORT";
	case RMP_CONFIG_ENUM:
		return "=WORD";
	}
	return "";
}

struct flag_tables {
	struct option *longopts;
	char *shortopts;
};

static void flag_tables_free(struct flag_tables *t)
{
	free(t->longopts);
	free(t->shortopts);
}

static int flag_tables_build(const struct rmp_config_spec *spec, struct flag_tables *t)
{
	size_t n = spec->n_opts;

	t->longopts = calloc(n + 4, sizeof(*t->longopts));
	/* ':' first: report a missing argument as ':' rather than '?'. */
	t->shortopts = calloc(1 + 3 * n + 5, 1);
	if (!t->longopts || !t->shortopts) {
		flag_tables_free(t);
		return -ENOMEM;
	}
	char *s = t->shortopts;
	*s++ = ':';
	for (size_t i = 0; i < n; i++) {
		const struct rmp_config_option *o = &spec->opts[i];
		bool is_bool = o->type == RMP_CONFIG_BOOL;
		t->longopts[i] = (struct option){o->name, is_bool ? optional_argument
								 : required_argument,
						 NULL, OPT_VAL_BASE + (int)i};
		if (o->short_name) {
			*s++ = o->short_name;
			*s++ = ':';
			if (is_bool)
				*s++ = ':';
		}
	}
	t->longopts[n] = (struct option){"config", required_argument, NULL, OPT_VAL_CONFIG};
	t->longopts[n + 1] = (struct option){"help", no_argument, NULL, OPT_VAL_HELP};
	t->longopts[n + 2] = (struct option){"version", no_argument, NULL, OPT_VAL_VERSION};
	memcpy(s, "c:h", 4);
	return 0;
}

/* Maps a getopt result to a row index, OPT_VAL_CONFIG, OPT_VAL_HELP,
 * OPT_VAL_VERSION. */
static int flag_row(const struct rmp_config_spec *spec, int c)
{
	if (c == OPT_VAL_CONFIG || c == OPT_VAL_HELP || c == OPT_VAL_VERSION)
		return c;
	if (c == 'c')
		return OPT_VAL_CONFIG;
	if (c == 'h')
		return OPT_VAL_HELP;
	if (c >= OPT_VAL_BASE)
		return c - OPT_VAL_BASE;
	for (size_t i = 0; i < spec->n_opts; i++)
		if (spec->opts[i].short_name && spec->opts[i].short_name == c)
			return (int)i;
	return -1;
}

/* One pass over argv. With apply false it only finds --config, --help
 * and --version (and reports syntax errors); with apply true it sets
 * values. */
static int flags_pass(const struct rmp_config_spec *spec, void *target, int argc, char **argv,
		      bool apply, const char **config, bool *help, bool *version, char *err,
		      size_t errlen)
{
	struct flag_tables t = {0};
	int rc = flag_tables_build(spec, &t);
	if (rc) {
		rmp_errf(err, errlen, "out of memory building the option table");
		return rc;
	}
	opterr = 0;
	optind = 0; /* glibc: 0 also resets its internal state between passes */
	int c;
	while ((c = getopt_long(argc, argv, t.shortopts, t.longopts, NULL)) != -1) {
		const char *arg = argv[optind - 1];
		if (c == '?') {
			if (optopt && optopt < OPT_VAL_BASE - 2)
				rmp_errf(err, errlen, "unknown option '-%c' (see --help)", optopt);
			else if (optopt >= OPT_VAL_BASE || optopt == OPT_VAL_HELP ||
				 optopt == OPT_VAL_VERSION)
				rmp_errf(err, errlen, "%s takes no value (see --help)", arg);
			else
				rmp_errf(err, errlen, "unknown or ambiguous option '%.*s' (see --help)",
				     QUOTE_MAX, arg);
			rc = -EINVAL;
			goto out_free_tables;
		}
		if (c == ':') {
			int row = flag_row(spec, optopt);
			rmp_errf(err, errlen, "--%s needs a value (see --help)",
			     row == OPT_VAL_CONFIG ? "config"
			     : row >= 0	  ? spec->opts[row].name
					  : "?");
			rc = -EINVAL;
			goto out_free_tables;
		}
		int row = flag_row(spec, c);
		if (row == OPT_VAL_CONFIG) {
			*config = optarg;
		} else if (row == OPT_VAL_HELP) {
			*help = true;
		} else if (row == OPT_VAL_VERSION) {
			*version = true;
		} else if (row >= 0 && apply) {
			const struct rmp_config_option *o = &spec->opts[row];
			/* A bare boolean flag means true. */
			const char *v = optarg ? optarg : "true";
			rc = opt_apply(o, target, v, "--", err, errlen);
			if (rc)
				goto out_free_tables;
		}
	}
	if (optind < argc) {
		rmp_errf(err, errlen, "unexpected argument \"%.*s\" (see --help)", QUOTE_MAX,
		     argv[optind]);
		rc = -EINVAL;
	}
out_free_tables:
	flag_tables_free(&t);
	return rc;
}

int rmp_config_load(const struct rmp_config_spec *spec, void *target, int argc, char **argv,
		    FILE *help_out, char *err, size_t errlen)
{
	const char *config = NULL;
	bool help = false, version = false;

	int rc = rmp_config_defaults(spec, target, err, errlen);
	if (rc)
		return rc;
	/* First pass: --config and --help only, so the file goes in before
	 * the flags that override it, whatever their order on the line. */
	rc = flags_pass(spec, target, argc, argv, false, &config, &help, &version, err, errlen);
	if (rc)
		return rc;
	if (help) {
		rmp_config_help(spec, help_out ? help_out : stdout);
		return RMP_CONFIG_HELP;
	}
	if (version) {
		/* The GNU form, which help2man reads for the man pages. */
		fprintf(help_out ? help_out : stdout, "%s (rmpool) %s\n",
			spec->prog ? spec->prog : "rmpool", RMPOOL_VERSION);
		return RMP_CONFIG_HELP;
	}
	if (config) {
		rc = rmp_config_load_file(spec, target, config, err, errlen);
		if (rc)
			return rc;
	}
	return flags_pass(spec, target, argc, argv, true, &config, &help, &version, err, errlen);
}

/* ---- --help ---- */

static void help_row(FILE *out, char short_name, const char *name, const char *metavar,
		     const char *help, const char *extra)
{
	char left[96];

	if (short_name)
		snprintf(left, sizeof(left), "  -%c, --%s%s", short_name, name, metavar);
	else
		snprintf(left, sizeof(left), "      --%s%s", name, metavar);
	/* Long option names push the help onto its own line, aligned. */
	if (strlen(left) < 32)
		fprintf(out, "%-32s%s%s\n", left, help, extra);
	else
		fprintf(out, "%s\n%32s%s%s\n", left, "", help, extra);
}

void rmp_config_help(const struct rmp_config_spec *spec, FILE *out)
{
	fprintf(out, "Usage: %s [OPTION]...\n", spec->prog ? spec->prog : "rmpool");
	if (spec->summary)
		fprintf(out, "%s\n", spec->summary);
	fprintf(out, "\n");
	help_row(out, 'c', "config", "=FILE",
		 "read options from FILE (\"key = value\" lines); flags override it", "");
	help_row(out, 'h', "help", "", "show this help and exit", "");
	help_row(out, 0, "version", "", "show the version and exit", "");
	for (size_t i = 0; i < spec->n_opts; i++) {
		const struct rmp_config_option *o = &spec->opts[i];
		char extra[256], lo[32], hi[32], list[160] = "";
		const char *def = o->def ? o->def : "none";

		switch (o->type) {
		case RMP_CONFIG_INT:
		case RMP_CONFIG_SIZE:
		case RMP_CONFIG_DURATION:
			format_bound(o, o->min, lo, sizeof(lo));
			format_bound(o, o->max, hi, sizeof(hi));
			snprintf(extra, sizeof(extra), " (default: %s; range [%s, %s])", def, lo,
				 hi);
			break;
		case RMP_CONFIG_ENUM: {
			size_t used = 0;
			for (int k = 0; o->choices[k]; k++) {
				int n = snprintf(list + used, sizeof(list) - used, "%s%s",
						 k ? ", " : "", o->choices[k]);
				if (n > 0 && (size_t)n < sizeof(list) - used)
					used += (size_t)n;
			}
			snprintf(extra, sizeof(extra), " (default: %s; one of %s)", def, list);
			break;
		}
		default:
			snprintf(extra, sizeof(extra), " (default: %s)", *def ? def : "\"\"");
			break;
		}
		help_row(out, o->short_name, o->name, type_metavar(o), o->help, extra);
	}
}
