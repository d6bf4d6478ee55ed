/* bench.h - `rmpool bench` (bench.c), called by the CLI's dispatcher. */
#ifndef RMP_CLI_BENCH_H
#define RMP_CLI_BENCH_H

#include "rmpool.h"

/* argv[0] is "bench". Returns the process exit status. */
int rmpool_bench(const char *coordinator, const char *secret, const struct rmp_connect_opts *opts, int argc,
		 char **argv);

#endif
