/* sizing.c - see sizing.h. Every product and sum is checked: capacities
 * near 2^63 are legal input, and a wrapped donor count would provision
 * nothing while reporting success.
 */
#include "sizing.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "config.h"


static bool is_pow2(uint64_t x)
{
	return x && (x & (x - 1)) == 0;
}

static unsigned log2_exact(uint64_t pow2)
{
	return (unsigned)__builtin_ctzll(pow2);
}

uint64_t rmp_srv_sizing_pow2_ceil(uint64_t x)
{
	if (x == 0 || x > (UINT64_C(1) << 63))
		return 0;
	if (x == 1)
		return 1;
	return UINT64_C(1) << (64 - __builtin_clzll(x - 1));
}

int rmp_srv_sizing_count(const struct rmp_srv_sizing_req *req, struct rmp_srv_sizing *out,
		    char *err, size_t errlen)
{
	char a[32], b[32], c[32];
	uint64_t seg = req->segment_size;

	if (req->capacity == 0) {
		rmp_errf(err, errlen, "capacity 0: a pool needs at least one byte");
		return -EINVAL;
	}
	if (!is_pow2(seg)) {
		rmp_errf(err, errlen, "segment size %" PRIu64 " is not a power of two", seg);
		return -EINVAL;
	}
	uint64_t room = req->process_limit > req->donor_footprint
				? req->process_limit - req->donor_footprint
				: 0;
	/* Down, not up: a region one byte over the limit fails its mmap. */
	uint64_t region = room & ~(seg - 1);
	if (region == 0) {
		rmp_config_format_bytes(req->process_limit, a, sizeof(a));
		rmp_config_format_bytes(req->donor_footprint, b, sizeof(b));
		rmp_config_format_bytes(seg, c, sizeof(c));
		rmp_errf(err, errlen,
		     "per-process limit %s minus donor footprint %s leaves less than one %s "
		     "segment",
		     a, b, c);
		return -ENOSPC;
	}
	uint64_t own = req->coordinator_share & ~(seg - 1);
	uint64_t rest = req->capacity > own ? req->capacity - own : 0;
	/* ceil(rest / region) without the rest + region - 1 overflow */
	uint64_t donors = rest / region + (rest % region != 0);
	uint64_t provided;
	if (__builtin_mul_overflow(donors, region, &provided) ||
	    __builtin_add_overflow(provided, own, &provided)) {
		rmp_errf(err, errlen,
		     "capacity %" PRIu64 " needs %" PRIu64 " donors of %" PRIu64
		     " bytes: more than 64 bits can count",
		     req->capacity, donors, region);
		return -EOVERFLOW;
	}
	if (donors > RMP_SRV_SIZING_MAX_DONORS) {
		rmp_config_format_bytes(region, a, sizeof(a));
		rmp_errf(err, errlen,
		     "capacity %" PRIu64 " needs %" PRIu64 " donors of %s; at most %u are "
		     "allowed",
		     req->capacity, donors, a, RMP_SRV_SIZING_MAX_DONORS);
		return -E2BIG;
	}
	out->region_len = region;
	out->segments_per_donor = region / seg;
	out->coordinator_len = own;
	out->donors = donors;
	out->provided = provided;
	return 0;
}

int rmp_srv_sizing_place(uint64_t donors, uint64_t donor_cost, struct rmp_srv_sizing_host *hosts,
			 size_t n_hosts, char *err, size_t errlen)
{
	char a[32], b[32];

	if (donor_cost == 0 || n_hosts == 0) {
		rmp_errf(err, errlen, "%s", n_hosts ? "donor cost 0" : "no hosts to place donors on");
		return -EINVAL;
	}
	/* Fit first, from the budgets alone, so a failure says how far off
	 * the request is rather than where the greedy loop stopped. */
	uint64_t fit = 0;
	for (size_t i = 0; i < n_hosts; i++) {
		hosts[i].placed = 0;
		uint64_t n = hosts[i].budget / donor_cost;
		fit = fit + n < fit ? UINT64_MAX : fit + n;
	}
	if (fit < donors) {
		char detail[256] = "";
		size_t used = 0;
		for (size_t i = 0; i < n_hosts && used < sizeof(detail); i++) {
			int n = snprintf(detail + used, sizeof(detail) - used, "%s%s: %" PRIu64,
					 i ? ", " : "", hosts[i].name ? hosts[i].name : "?",
					 hosts[i].budget / donor_cost);
			if (n < 0)
				break;
			used += (size_t)n;
		}
		rmp_config_format_bytes(donor_cost, a, sizeof(a));
		uint64_t possible;
		if (__builtin_mul_overflow(fit, donor_cost, &possible))
			possible = UINT64_MAX;
		rmp_config_format_bytes(possible, b, sizeof(b));
		rmp_errf(err, errlen,
		     "cannot place %" PRIu64 " donors of %s: the hosts' budgets take %" PRIu64
		     " (%s), %s in all",
		     donors, a, fit, detail, b);
		return -ENOSPC;
	}
	if (donors > RMP_SRV_SIZING_MAX_DONORS) {
		rmp_errf(err, errlen, "cannot place %" PRIu64 " donors: at most %u", donors,
		     RMP_SRV_SIZING_MAX_DONORS);
		return -E2BIG;
	}
	/* Greedy: each donor to the host with the most budget left. Donors
	 * are bounded above, so donors * hosts steps stay small. */
	uint64_t left_to_place = donors;
	while (left_to_place > 0) {
		size_t best = n_hosts;
		uint64_t best_left = 0;
		for (size_t i = 0; i < n_hosts; i++) {
			uint64_t left = hosts[i].budget - hosts[i].placed * donor_cost;
			if (left >= donor_cost && (best == n_hosts || left > best_left)) {
				best = i;
				best_left = left;
			}
		}
		if (best == n_hosts)
			return -ENOSPC; /* unreachable: fit >= donors */
		hosts[best].placed++;
		left_to_place--;
	}
	return 0;
}

int rmp_srv_sizing_geometry(uint64_t capacity, uint64_t segment_size, uint64_t provided,
			struct rmp_srv_geometry *out, char *err, size_t errlen)
{
	if (capacity == 0) {
		rmp_errf(err, errlen, "capacity 0: a pool needs at least one byte");
		return -EINVAL;
	}
	if (!is_pow2(segment_size)) {
		rmp_errf(err, errlen, "segment size %" PRIu64 " is not a power of two", segment_size);
		return -EINVAL;
	}
	uint64_t space = rmp_srv_sizing_pow2_ceil(capacity);
	if (space == 0) {
		rmp_errf(err, errlen,
		     "capacity %" PRIu64 " needs a space above 2^63 bytes; the most is 2^63",
		     capacity);
		return -EOVERFLOW;
	}
	if (space < segment_size)
		space = segment_size;
	uint64_t seg_mask = segment_size - 1;
	if (provided == 0) {
		/* capacity <= space, and space is a multiple of segment_size, so
		 * rounding up cannot pass space (or overflow). */
		provided = capacity + (segment_size - 1 - ((capacity - 1) & seg_mask));
	}
	out->space_log2 = log2_exact(space);
	out->segment_log2 = log2_exact(segment_size);
	out->space = space;
	out->segments = space >> out->segment_log2;
	/* A donor region that ends mid-segment backs only the whole ones. */
	uint64_t backed = provided >> out->segment_log2;
	out->backed = backed < out->segments ? backed : out->segments;
	out->reserved = out->segments - out->backed;
	out->reserved_base = out->backed << out->segment_log2;
	return 0;
}
