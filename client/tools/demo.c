/*
 * demo.c - rmpool-demo: the main job in one program.
 *
 *   rmpool-demo [--coordinator HOST:PORT] [--pool NAME] [--size SIZE]
 *               [--as-limit BYTES] [--block SIZE] [--chunk SIZE]
 *               [--small N] [--secret-file FILE]
 *
 * A consumer that may itself map at most --as-limit bytes (RLIMIT_AS, set
 * before anything else) creates a pool of --size bytes made of donor
 * processes on the coordinator's hosts, allocates ONE block larger than
 * any donor's region and larger than its own address-space limit, writes
 * a pattern across all of it chunk by chunk, reads every byte back and
 * compares, prints the figures (donors, hosts, bytes, throughput, round
 * trips per allocation), frees the block and destroys the pool.
 *
 * run() takes these steps in order, one function each (demo_limit,
 * demo_create, demo_alloc, demo_write_read, demo_free, demo_destroy);
 * what a step measures stays in struct demo for the summary.
 *
 * Coordinator: --coordinator, else $RMPOOL_COORDINATOR, else
 * 127.0.0.1:7400. Secret: --secret-file, else $RMPOOL_SECRET_FILE, else
 * $RMPOOL_SECRET (the file read by common/secret.c: one trailing newline
 * trimmed, a warning when others may read it). Exit status 0 when every
 * byte came back right, 1 on any failure (the pool is still destroyed
 * when it was created), 2 on bad arguments.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "rmpool.h"
#include "secret.h"

#define EXIT_USAGE 2
#define MIB (1024.0 * 1024.0)

struct demo {
	const char *coordinator;
	const char *pool;
	const char *secret_file;
	uint64_t size;
	uint64_t as_limit;
	uint64_t block; /* 0: pick */
	uint64_t chunk;
	unsigned small;

	rmp_client *c;
	rmp_pool *p;
	bool created;
	char *secret;

	/* what the steps found and measured, for the ones after them */
	struct rmp_pool_info *in;
	uint64_t max_region;      /* the largest donor region */
	rmp_addr a;               /* the big block */
	uint64_t big, big_off;    /* its size and pool offset */
	unsigned donors, hosts;   /* behind it */
	uint64_t big_alloc_rt;    /* round trips of its rmp_alloc */
	struct rmp_pool_stats st; /* after it was allocated */
	double t_write, t_read;   /* seconds */
	unsigned small_n;
	double small_alloc_rt;
};

static const char *human(uint64_t bytes, char *buf, size_t len)
{
	rmp_config_format_bytes(bytes, buf, len);
	return buf;
}

/* Seconds since t0_ns (rmp_mono_ns). */
static double s_since(uint64_t t0_ns)
{
	return (double)(rmp_mono_ns() - t0_ns) / 1e9;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "rmpool-demo: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try 'rmpool-demo --help')\n");
	return EXIT_USAGE;
}

/* Prints what failed, with the library's explanation and detail. */
static int failed(const struct demo *d, const char *what, int rc)
{
	const char *detail = rmp_last_error(d->c);
	if (!*detail)
		detail = rmp_last_error(NULL);
	fflush(stdout);
	fprintf(stderr, "rmpool-demo: FAILED: %s: %s%s%s\n", what, rmp_strerror(rc), *detail ? ": " : "",
		detail);
	return 1;
}

static void help(FILE *f)
{
	fprintf(f,
		"Usage: rmpool-demo [OPTION]...\n"
		"Use more memory than this process may hold: create a pool of donor memory on\n"
		"several hosts, allocate one block larger than any donor region and larger than\n"
		"this process's own address-space limit, write it, read it back, verify every\n"
		"byte, print the figures, free it and destroy the pool.\n"
		"\n"
		"  -C, --coordinator HOST:PORT  the coordinator (else $RMPOOL_COORDINATOR,\n"
		"                               else 127.0.0.1:%u)\n"
		"  -p, --pool NAME              pool to create and destroy (default: demo)\n"
		"  -s, --size SIZE              the pool's usable capacity (default: 256M)\n"
		"  -l, --as-limit BYTES         this process's RLIMIT_AS, set first (default: 48M)\n"
		"  -b, --block SIZE             the block to allocate (default: the power of two\n"
		"                               above twice the largest donor region and above\n"
		"                               --as-limit, at most the pool's capacity)\n"
		"  -k, --chunk SIZE             bytes per rmp_write/rmp_read (default: 4M)\n"
		"  -n, --small N                small blocks allocated afterwards to measure round\n"
		"                               trips per allocation (default: 32; 0: none)\n"
		"  -S, --secret-file FILE       the shared secret (else $RMPOOL_SECRET_FILE, else\n"
		"                               $RMPOOL_SECRET)\n"
		"  -h, --help                   this help\n"
		"      --version                print the version and exit\n"
		"SIZE takes K, M, G suffixes (powers of 1024). Data-path waits follow\n"
		"$RMPOOL_WAIT (poll|event|adaptive): use event in 1-vCPU guests.\n",
		RMP_DEFAULT_PORT);
}

/* The secret in path (common/secret.h), with a warning when group or
 * others may read the file. */
static int load_secret(struct demo *d, const char *path)
{
	char err[256];
	bool loose = false;

	if (rmp_secret_read_file_dup(path, &d->secret, &loose, err, sizeof(err)) != 0) {
		fprintf(stderr, "rmpool-demo: %s\n", err);
		return 1;
	}
	if (loose)
		fprintf(stderr, "rmpool-demo: warning: secret file %s can be read by group or others (chmod 600 it)\n",
			path);
	return 0;
}

static int parse_size_opt(const char *opt, const char *s, uint64_t *out)
{
	if (rmp_config_parse_size(s, out))
		return usage_error("--%s: '%s' is not a size (like 64M, 1G, 4096)", opt, s);
	return 0;
}

static int parse_args(struct demo *d, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "coordinator", required_argument, NULL, 'C' }, { "pool", required_argument, NULL, 'p' },
		{ "size", required_argument, NULL, 's' },	 { "as-limit", required_argument, NULL, 'l' },
		{ "block", required_argument, NULL, 'b' },	 { "chunk", required_argument, NULL, 'k' },
		{ "small", required_argument, NULL, 'n' },	 { "secret-file", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },		 { "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, rc;
	char *end;
	unsigned long v;

	while ((ch = getopt_long(argc, argv, "C:p:s:l:b:k:n:S:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'C': d->coordinator = optarg; break;
		case 'p': d->pool = optarg; break;
		case 's': if ((rc = parse_size_opt("size", optarg, &d->size))) return rc; break;
		case 'l': if ((rc = parse_size_opt("as-limit", optarg, &d->as_limit))) return rc; break;
		case 'b': if ((rc = parse_size_opt("block", optarg, &d->block))) return rc; break;
		case 'k': if ((rc = parse_size_opt("chunk", optarg, &d->chunk))) return rc; break;
		case 'n':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || v > 100000)
				return usage_error("--small: '%s' is not a count from 0 to 100000", optarg);
			d->small = (unsigned)v;
			break;
		case 'S': d->secret_file = optarg; break;
		case 'h': help(stdout); exit(0);
		case 'V': printf("rmpool-demo (rmpool) %s\n", rmp_version()); exit(0);
		default: return usage_error("bad option");
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!d->size)
		return usage_error("--size must be above 0");
	if (d->as_limit < (8u << 20))
		return usage_error("--as-limit below 8M leaves no room for the program itself");
	if (d->chunk < 4096 || d->chunk > (256u << 20) || d->chunk % 8)
		return usage_error("--chunk must be a multiple of 8 from 4K to 256M");
	if (!d->coordinator || !*d->coordinator)
		d->coordinator = getenv("RMPOOL_COORDINATOR");
	if (!d->coordinator || !*d->coordinator)
		d->coordinator = "127.0.0.1:7400";
	if (!d->secret_file || !*d->secret_file)
		d->secret_file = getenv("RMPOOL_SECRET_FILE");
	if (d->secret_file && *d->secret_file && load_secret(d, d->secret_file))
		return 1;
	return 0;
}

/* The pattern: each 8-byte word is a mix of its offset in the block, so a
 * word written to or read from the wrong place never matches. */
static inline uint64_t pattern_word(uint64_t off)
{
	uint64_t x = off + 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

static void fill(uint64_t *buf, uint64_t at, size_t n)
{
	for (size_t i = 0; i < n / 8; i++)
		buf[i] = pattern_word(at + 8 * i);
}

/* First offset in [0, n) where buf differs from the pattern at `at`, or n. */
static size_t check_chunk(const uint64_t *buf, uint64_t at, size_t n)
{
	for (size_t i = 0; i < n / 8; i++)
		if (buf[i] != pattern_word(at + 8 * i)) {
			uint64_t want = pattern_word(at + 8 * i), got = buf[i];
			size_t b = 0;
			while (((want >> (8 * b)) & 0xff) == ((got >> (8 * b)) & 0xff))
				b++;
			return 8 * i + b;
		}
	return n;
}

static void on_progress(void *arg, const struct rmp_progress *ev)
{
	unsigned *spawned = arg;

	if (ev->state == RMP_PROGRESS_DONOR_SPAWNED)
		++*spawned;
	if (*ev->text && ev->state != RMP_PROGRESS_DONOR_FAILED)
		say("    %s\n", ev->text);
	else if (ev->state == RMP_PROGRESS_DONOR_SPAWNED)
		say("    donor %u started (pid %u)\n", ev->donor_id, ev->pid);
	else if (ev->state == RMP_PROGRESS_DONOR_FAILED)
		say("    donor %u could not start: %s%s%s\n", ev->donor_id,
		    ev->error ? rmp_strerror(-ev->error) : "error", *ev->text ? ": " : "", ev->text);
	else if (ev->state == RMP_PROGRESS_DONOR_EXITED)
		say("    donor %u exited\n", ev->donor_id);
}

/* VmPeak of this process (bytes), 0 if unknown. */
static uint64_t vm_peak(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPeak: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

struct placement {
	unsigned donors, hosts;
};

/* How many donors and hosts back [off, off + len). */
static int placement_of(rmp_pool *p, const struct rmp_pool_info *in, uint64_t off, uint64_t len,
			struct placement *out)
{
	bool donor_seen[in->n_donors ? in->n_donors : 1];
	bool host_seen[in->n_donors ? in->n_donors : 1];
	memset(donor_seen, 0, sizeof(donor_seen));
	memset(host_seen, 0, sizeof(host_seen));
	*out = (struct placement){ 0, 0 };
	for (uint64_t s = off / in->segment_size; s < (off + len + in->segment_size - 1) / in->segment_size; s++) {
		uint32_t id;
		int rc = rmp_pool_segment_donor(p, s, &id);
		if (rc)
			return rc;
		for (size_t i = 0; i < in->n_donors; i++) {
			if (in->donors[i].donor_id != id || donor_seen[i])
				continue;
			donor_seen[i] = true;
			out->donors++;
			/* a host counts once: the first donor of it that we meet */
			size_t h = 0;
			while (h < i && strcmp(in->donors[h].host, in->donors[i].host))
				h++;
			if (!host_seen[h]) {
				host_seen[h] = true;
				out->hosts++;
			}
		}
	}
	return 0;
}

/* Close and destroy the pool if we made it; quiet, best effort (after a failure). */
static void cleanup(struct demo *d)
{
	rmp_pool_info_free(d->in);
	d->in = NULL;
	if (d->p) {
		rmp_pool_close(d->p);
		d->p = NULL;
	}
	if (d->created && d->c) {
		fprintf(stderr, "rmpool-demo: destroying pool %s after the failure\n", d->pool);
		int rc = rmp_pool_destroy(d->c, d->pool);
		if (rc)
			fprintf(stderr, "rmpool-demo: destroying pool %s: %s\n", d->pool, rmp_strerror(rc));
		d->created = false;
	}
	rmp_disconnect(d->c);
	d->c = NULL;
}

/* 1. The limit, before anything maps memory for the connection. */
static int demo_limit(struct demo *d)
{
	struct rlimit rl = { .rlim_cur = d->as_limit, .rlim_max = d->as_limit };
	char b1[32];

	if (setrlimit(RLIMIT_AS, &rl)) {
		fprintf(stderr, "rmpool-demo: FAILED: setrlimit(RLIMIT_AS, %" PRIu64 "): %s\n", d->as_limit,
			strerror(errno));
		return 1;
	}
	say("rmpool demo: one block of memory larger than this process may map, from donors on\n"
	    "several hosts, over RDMA.\n\n");
	say("This process (pid %ld) limits its own address space to %s (RLIMIT_AS).\n", (long)getpid(),
	    human(d->as_limit, b1, sizeof(b1)));
	return 0;
}

/* 2. Connect and create the pool; say where its donors run. */
static int demo_create(struct demo *d)
{
	char b1[32], b2[32], b3[32];
	int rc;

	say("Connecting to the coordinator at %s ...\n", d->coordinator);
	rc = rmp_connect(d->coordinator, d->secret, &d->c);
	if (rc)
		return failed(d, "connect", rc);
	unsigned spawned = 0;
	rmp_client_set_progress(d->c, on_progress, &spawned);
	say("Creating pool \"%s\" of %s (the coordinator's agents start donor processes):\n", d->pool,
	    human(d->size, b1, sizeof(b1)));
	uint64_t t0 = rmp_mono_ns();
	rc = rmp_pool_open(d->c, d->pool, d->size, &d->p);
	if (rc)
		return failed(d, "create the pool", rc);
	d->created = true;
	double t_prov = s_since(t0);
	rmp_client_set_progress(d->c, NULL, NULL);

	rc = rmp_pool_info(d->p, &d->in);
	if (rc)
		return failed(d, "pool info", rc);
	const struct rmp_pool_info *in = d->in;
	for (size_t i = 0; i < in->n_donors; i++)
		if (in->donors[i].bytes > d->max_region)
			d->max_region = in->donors[i].bytes;
	say("Pool \"%s\" ready in %.1f s: %s usable (address space %s, segments of %s),\n"
	    "%zu donor process%s on %zu host%s:\n",
	    in->name, t_prov, human(in->capacity, b1, sizeof(b1)), human(in->space, b2, sizeof(b2)),
	    human(in->segment_size, b3, sizeof(b3)), in->n_donors, in->n_donors == 1 ? "" : "es", in->n_hosts,
	    in->n_hosts == 1 ? "" : "s");
	for (size_t i = 0; i < in->n_donors; i++)
		say("    donor %-3u on %-16s %s\n", in->donors[i].donor_id, in->donors[i].host,
		    human(in->donors[i].bytes, b1, sizeof(b1)));
	return 0;
}

/* The block to ask for: --block, else the power of two the pool would
 * hand out above twice the largest donor region and above our own limit
 * (at most the capacity). */
static uint64_t block_wanted(const struct demo *d)
{
	uint64_t want = d->block;

	if (!want) {
		uint64_t need = 2 * d->max_region > d->as_limit ? 2 * d->max_region : d->as_limit;
		want = 1;
		while (want <= need && want < d->in->capacity)
			want <<= 1;
		if (want > d->in->capacity)
			want = d->in->capacity;
	}
	return want;
}

/* 3. The block: larger than any donor region and than our own limit. */
static int demo_alloc(struct demo *d)
{
	char b1[32], b2[32], b3[32];
	uint64_t want = block_wanted(d);
	int rc;

	say("\nAllocating one block of %s", human(want, b1, sizeof(b1)));
	if (want > d->max_region && want > d->as_limit)
		say(": more than the largest donor region (%s)\nand more than this process's own limit (%s).\n",
		    human(d->max_region, b2, sizeof(b2)), human(d->as_limit, b3, sizeof(b3)));
	else
		say(" (note: NOT larger than both the largest donor region, %s, and this process's limit, %s).\n",
		    human(d->max_region, b2, sizeof(b2)), human(d->as_limit, b3, sizeof(b3)));
	void *local = malloc(want);
	if (local) {
		say("    (malloc(%s) in this process succeeds: the limit does not bind here)\n",
		    human(want, b1, sizeof(b1)));
		free(local);
	} else {
		say("    malloc(%s) here fails (%s); rmp_alloc from the pool:\n", human(want, b1, sizeof(b1)),
		    strerror(errno));
	}

	struct rmp_pool_stats st0;
	if ((rc = rmp_pool_stats(d->p, &st0)))
		return failed(d, "pool stats", rc);
	rc = rmp_alloc(d->p, want, &d->a);
	if (rc)
		return failed(d, "allocate the block", rc);
	if ((rc = rmp_pool_stats(d->p, &d->st)))
		return failed(d, "pool stats", rc);
	d->big_alloc_rt = d->st.alloc_round_trips - st0.alloc_round_trips;
	d->big = UINT64_C(1) << RMP_ADDR_ORDER(d->a);
	d->big_off = RMP_ADDR_OFFSET(d->a);
	struct placement pl;
	if ((rc = placement_of(d->p, d->in, d->big_off, d->big, &pl)))
		return failed(d, "find the block's donors", rc);
	d->donors = pl.donors;
	d->hosts = pl.hosts;
	say("    got %s at pool offset %s in %" PRIu64 " round trip%s;\n"
	    "    it lies on %u donor%s on %u host%s.\n",
	    human(d->big, b1, sizeof(b1)), human(d->big_off, b2, sizeof(b2)), d->big_alloc_rt,
	    d->big_alloc_rt == 1 ? "" : "s", pl.donors, pl.donors == 1 ? "" : "s", pl.hosts,
	    pl.hosts == 1 ? "" : "s");
	return 0;
}

/* One pass over the block, chunk by chunk: write the pattern, or read
 * and compare (buf: chunk bytes). */
static int pass(struct demo *d, uint64_t *buf, size_t chunk, bool is_write)
{
	int rc;

	for (uint64_t at = 0; at < d->big; at += chunk) {
		size_t n = d->big - at < chunk ? (size_t)(d->big - at) : chunk;
		if (is_write)
			fill(buf, at, n);
		else
			memset(buf, 0, n);
		rc = is_write ? rmp_write(d->p, d->a + at, buf, n) : rmp_read(d->p, buf, d->a + at, n);
		if (rc) {
			char what[96];
			snprintf(what, sizeof(what), "%s at block offset %" PRIu64, is_write ? "write" : "read", at);
			return failed(d, what, rc);
		}
		size_t bad = is_write ? n : check_chunk(buf, at, n);
		if (bad < n) {
			fflush(stdout);
			fprintf(stderr, "rmpool-demo: FAILED: byte %" PRIu64 " of the block read back wrong\n", at + bad);
			return 1;
		}
	}
	return 0;
}

/* 4. Write, read back, verify: one chunk in local memory at a time. */
static int demo_write_read(struct demo *d)
{
	char b1[32], b2[32];
	size_t chunk = (size_t)(d->chunk < d->big ? d->chunk : d->big);
	uint64_t *buf = malloc(chunk);
	int rc;

	if (!buf) {
		fprintf(stderr, "rmpool-demo: FAILED: a %zu-byte buffer: out of memory\n", chunk);
		return 1;
	}
	say("\nWriting a pattern over all %s (%s per rmp_write) ...\n", human(d->big, b1, sizeof(b1)),
	    human(chunk, b2, sizeof(b2)));
	uint64_t t0 = rmp_mono_ns();
	if ((rc = pass(d, buf, chunk, true)) != 0)
		goto out_free;
	d->t_write = s_since(t0);
	say("    wrote %s in %.2f s: %.1f MiB/s\n", human(d->big, b1, sizeof(b1)), d->t_write,
	    (double)d->big / MIB / d->t_write);
	say("Reading it back and comparing every byte ...\n");
	t0 = rmp_mono_ns();
	if ((rc = pass(d, buf, chunk, false)) != 0)
		goto out_free;
	d->t_read = s_since(t0);
	say("    read and verified %s in %.2f s: %.1f MiB/s; all %" PRIu64 " bytes match.\n",
	    human(d->big, b1, sizeof(b1)), d->t_read, (double)d->big / MIB / d->t_read, d->big);
out_free:
	free(buf);
	return rc;
}

/* 5b. --small minimum blocks allocated, then freed: the typical round
 * trips per operation. from: the stats before. */
static int demo_small(struct demo *d, const struct rmp_pool_stats *from)
{
	char b1[32];
	struct rmp_pool_stats st3, st4;
	int rc = 0;
	rmp_addr *blocks = calloc(d->small, sizeof(*blocks));

	if (!blocks) {
		fprintf(stderr, "rmpool-demo: FAILED: out of memory\n");
		return 1;
	}
	say("\nAllocating and freeing %u small blocks of %s (round trips per operation) ...\n", d->small,
	    human(d->in->min_block, b1, sizeof(b1)));
	for (unsigned i = 0; i < d->small && !rc; i++)
		if (!(rc = rmp_alloc(d->p, d->in->min_block, &blocks[i])))
			d->small_n++;
	if ((rc = rmp_pool_stats(d->p, &st3))) {
		free(blocks);
		return failed(d, "pool stats", rc);
	}
	d->small_alloc_rt = (double)(st3.alloc_round_trips - from->alloc_round_trips) / (d->small_n ? d->small_n : 1);
	for (unsigned i = 0; i < d->small_n && !rc; i++)
		rc = rmp_free(d->p, blocks[i]);
	free(blocks);
	if (rc)
		return failed(d, "free a small block", rc);
	if (d->small_n < d->small)
		return failed(d, "allocate a small block", rc);
	if ((rc = rmp_pool_stats(d->p, &st4)))
		return failed(d, "pool stats", rc);
	double small_free_rt = (double)(st4.free_round_trips - st3.free_round_trips) / d->small_n;
	say("    %.2f round trips per alloc, %.2f per free (%" PRIu64 " lost CAS races)\n", d->small_alloc_rt,
	    small_free_rt,
	    st4.alloc_cas_failed - from->alloc_cas_failed + st4.free_cas_failed - from->free_cas_failed);
	return 0;
}

/* 5. Free the block; small allocations for the typical round trips. */
static int demo_free(struct demo *d)
{
	struct rmp_pool_stats st2;
	int rc = rmp_free(d->p, d->a);

	if (rc)
		return failed(d, "free the block", rc);
	if ((rc = rmp_pool_stats(d->p, &st2)))
		return failed(d, "pool stats", rc);
	uint64_t big_free_rt = st2.free_round_trips - d->st.free_round_trips;
	say("    freed the block in %" PRIu64 " round trip%s.\n", big_free_rt, big_free_rt == 1 ? "" : "s");
	return d->small ? demo_small(d, &st2) : 0;
}

/* 6. Close and destroy (the donors terminate); the summary. */
static int demo_destroy(struct demo *d)
{
	char b1[32], b2[32];
	uint64_t peak = vm_peak();
	size_t n_donors = d->in->n_donors, n_hosts = d->in->n_hosts;
	int rc;

	rmp_pool_info_free(d->in);
	d->in = NULL;
	rc = rmp_pool_close(d->p);
	d->p = NULL;
	if (rc)
		return failed(d, "close the pool", rc);
	say("\nDestroying pool \"%s\" (its donor processes exit, the hosts get their memory back) ...\n",
	    d->pool);
	uint64_t t0 = rmp_mono_ns();
	rc = rmp_pool_destroy(d->c, d->pool);
	d->created = false;
	if (rc)
		return failed(d, "destroy the pool", rc);
	say("    done in %.1f s.\n", s_since(t0));
	if (peak)
		say("This process's peak address space: %s of its %s limit.\n", human(peak, b1, sizeof(b1)),
		    human(d->as_limit, b2, sizeof(b2)));
	rmp_disconnect(d->c);
	d->c = NULL;

	say("\nOK: one block of %s on %u of %zu donors and %u of %zu hosts, used by a process\n"
	    "limited to %s: written at %.1f MiB/s, read back and verified at %.1f MiB/s;\n"
	    "allocated in %" PRIu64 " round trip%s",
	    human(d->big, b1, sizeof(b1)), d->donors, n_donors, d->hosts, n_hosts,
	    human(d->as_limit, b2, sizeof(b2)), (double)d->big / MIB / d->t_write,
	    (double)d->big / MIB / d->t_read, d->big_alloc_rt, d->big_alloc_rt == 1 ? "" : "s");
	if (d->small_n)
		say(" (small blocks: %.2f on average).\n", d->small_alloc_rt);
	else
		say(".\n");
	return 0;
}

static int run(struct demo *d)
{
	int rc;

	if ((rc = demo_limit(d)) != 0 || (rc = demo_create(d)) != 0 || (rc = demo_alloc(d)) != 0 ||
	    (rc = demo_write_read(d)) != 0 || (rc = demo_free(d)) != 0)
		return rc;
	return demo_destroy(d);
}

int main(int argc, char **argv)
{
	struct demo d = {
		.pool = "demo",
		.size = UINT64_C(256) << 20,
		.as_limit = UINT64_C(48) << 20,
		.chunk = 4u << 20, /* per-operation cost dominates below a few MiB under Soft-RoCE */
		.small = 32,
	};
	int rc = parse_args(&d, argc, argv);
	if (rc)
		return rc;
	rc = run(&d);
	if (rc)
		cleanup(&d);
	rmp_secret_free(d.secret);
	return rc;
}
