/*
 * swap_touch.c - a working set larger than its memory cgroup, for
 * tests/rdma/nbd.sh's swap part (issue 17): maps MIB MiB of anonymous
 * memory, writes every 4 KiB page with a pattern of its own (its index
 * and the pass), then PASSES times reads every page back, checks it and
 * writes it with the next pass's pattern, front to back. With a
 * memory.max below MIB the pages must go out to swap and come back.
 * Prints the time and the pages checked; exit 0 only when every page
 * held what was written (1: a page differs, 2: usage or memory).
 *
 *   swap_touch MIB PASSES
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096u

static uint64_t word_of(uint64_t page, uint64_t pass, uint64_t k)
{
	uint64_t x = (page << 20) ^ (pass << 52) ^ k;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static void fill(uint64_t *p, uint64_t page, uint64_t pass)
{
	for (uint64_t k = 0; k < PAGE / 8; k += 64) /* one word per cache line: cheap, every page touched */
		p[k] = word_of(page, pass, k);
}

static int check(const uint64_t *p, uint64_t page, uint64_t pass)
{
	for (uint64_t k = 0; k < PAGE / 8; k += 64)
		if (p[k] != word_of(page, pass, k))
			return 0;
	return 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: swap_touch MIB PASSES\n");
		return 2;
	}
	uint64_t mib = strtoull(argv[1], NULL, 0), passes = strtoull(argv[2], NULL, 0);
	if (mib == 0 || mib > 65536 || passes == 0 || passes > 100) {
		fprintf(stderr, "swap_touch: MIB 1..65536, PASSES 1..100\n");
		return 2;
	}
	uint64_t pages = mib << 20 >> 12;
	uint8_t *m = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		perror("swap_touch: mmap");
		return 2;
	}
	double t0 = now_s();
	for (uint64_t i = 0; i < pages; i++)
		fill((uint64_t *)(m + i * PAGE), i, 0);
	uint64_t bad = 0;
	for (uint64_t pass = 0; pass < passes; pass++)
		for (uint64_t i = 0; i < pages; i++) {
			uint64_t *p = (uint64_t *)(m + i * PAGE);
			if (!check(p, i, pass) && bad++ < 5)
				fprintf(stderr, "swap_touch: page %" PRIu64 " differs in pass %" PRIu64 "\n", i, pass);
			fill(p, i, pass + 1);
		}
	printf("swap_touch: %" PRIu64 " MiB, %" PRIu64 " pages x %" PRIu64 " passes checked in %.1f s, %" PRIu64
	       " differ\n", mib, pages, passes, now_s() - t0, bad);
	return bad ? 1 : 0;
}
