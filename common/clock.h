/* clock.h - the one home of time for the daemons and the library.
 *
 * Two clocks, two uses, never mixed:
 *   rmp_mono_ms/us/ns  CLOCK_MONOTONIC: deadlines, timeouts, durations.
 *                      It never jumps when an operator or NTP sets the
 *                      time, so a bounded wait stays bounded.
 *   rmp_wall_ms        CLOCK_REALTIME: what is shown to people or stored
 *                      (lease expiry in status output, log stamps). Never
 *                      for a deadline.
 * And the deadline arithmetic every bounded wait uses (poll(2) takes an
 * int of milliseconds; rmp_ms_left caps what it hands out so a far
 * deadline is re-checked rather than overflowing).
 */
#ifndef RMP_CLOCK_H
#define RMP_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t rmp_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t rmp_mono_ns(void) { return rmp_clock_ns(CLOCK_MONOTONIC); }
static inline uint64_t rmp_mono_us(void) { return rmp_mono_ns() / 1000u; }
static inline uint64_t rmp_mono_ms(void) { return rmp_mono_ns() / 1000000u; }
static inline uint64_t rmp_wall_ms(void) { return rmp_clock_ns(CLOCK_REALTIME) / 1000000u; }

/* Longest single poll(2) wait handed out; the caller loops to its deadline. */
#define RMP_POLL_SLICE_MS 60000

/* Milliseconds until an absolute monotonic deadline (rmp_mono_ms()):
 * 0 once it has passed, at most RMP_POLL_SLICE_MS. */
static inline int rmp_ms_left(uint64_t deadline_ms)
{
	uint64_t now = rmp_mono_ms();

	if (now >= deadline_ms)
		return 0;
	uint64_t d = deadline_ms - now;
	return d > RMP_POLL_SLICE_MS ? RMP_POLL_SLICE_MS : (int)d;
}

/* The absolute deadline timeout_ms from now. */
static inline uint64_t rmp_deadline_ms(uint64_t timeout_ms) { return rmp_mono_ms() + timeout_ms; }

#endif /* RMP_CLOCK_H */
