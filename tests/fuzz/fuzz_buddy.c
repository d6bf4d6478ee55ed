/* fuzz_buddy.c - libFuzzer target for the buddy classifier
 * (rmp_buddy_classify), which `rmpool pool check` runs on a region read
 * from the network.
 *
 * The input is a list of patches (2 bytes of word index, 8 bytes of
 * value) applied to a fresh region with owner records (16 KiB of 256 B
 * blocks, 8 slots; the magic word stays, as the check refuses another);
 * the classifier must return 0 with a state of the three, and an image
 * it calls valid must pass the exact walker (rmp_buddy_check) too.
 * Failures trap, and ASan/UBSan watch every read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buddy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The words in this process's memory: the engine's direct path reads them. */
static int no_exec(struct rmp_store *s, struct rmp_wop *ops, unsigned n)
{
	(void)s;
	(void)ops;
	(void)n;
	return -1;
}
static const struct rmp_store_ops no_ops = { .exec = no_exec, .post = no_exec };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rmp_buddy_geom g;
	struct rmp_buddy b;
	struct rmp_buddy_class c;
	struct rmp_buddy_report r;

	if (rmp_buddy_geom_init_records(&g, 14, 8, 8) != 0)
		__builtin_trap();
	uint64_t *w = calloc(g.total_words, sizeof(uint64_t));
	if (!w)
		return 0;
	rmp_buddy_format(w, &g, 15u << 10);
	for (size_t off = 0; off + 10 <= size; off += 10) {
		uint16_t idx;
		uint64_t v;
		memcpy(&idx, data + off, 2);
		memcpy(&v, data + off + 2, 8);
		if (idx > 0 && idx < g.total_words)
			w[idx] = v;
	}
	struct rmp_store st = { .ops = &no_ops, .chunk_words = 64, .direct = (_Atomic uint64_t *)w };
	rmp_buddy_init(&b, &g, &st);
	if (rmp_buddy_classify(&b, w, &c) != 0 || c.state > RMP_BUDDY_STATE_CORRUPT)
		__builtin_trap();
	if (c.state == RMP_BUDDY_STATE_VALID && rmp_buddy_check(&b, &r) != 0)
		__builtin_trap();
	free(w);
	return 0;
}
