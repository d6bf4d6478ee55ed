/* away.h - a donor's time away from a coordinator: when to try the way
 * back, and when to give up (the orphan grace).
 *
 * A donor that was accepted once and then lost its control connection
 * keeps serving its region and tries to register again: the first
 * attempt one backoff step after the loss, then paced by
 * rmp_ctlconn_backoff (100 ms doubling to 2 s, 50% jitter, so that the
 * donors of one restarted coordinator do not all come back in the same
 * millisecond). An attempt that fails (nobody listens, an older
 * generation, a refusal) schedules the next. If no coordinator has
 * accepted the donor for grace_ms since the loss, it is an orphan: it
 * frees its memory and exits (donor.c). Being accepted ends the time
 * away and resets the pacing.
 *
 * Pure: the caller passes the time (rmp_mono_ms()); nothing here sleeps,
 * reads a clock or does I/O, so tests/unit/test_donor_core.c can walk it
 * through hours in microseconds.
 */
#ifndef RMP_DONOR_AWAY_H
#define RMP_DONOR_AWAY_H

#include <stdbool.h>
#include <stdint.h>

#include "ctlconn.h"

#define DN_AWAY_BASE_MS 100u
#define DN_AWAY_MAX_MS 2000u
#define DN_AWAY_JITTER_PCT 50u

struct dn_away {
	struct rmp_ctlconn_backoff bo;
	uint64_t grace_ms;
	bool away;	      /* between a loss and the next acceptance */
	uint64_t since_ms;    /* when the connection was lost */
	uint64_t next_try_ms; /* the next attempt is due then */
	unsigned attempts;    /* failed attempts since the loss */
};

/* Not away. seed varies the jitter between processes. */
void dn_away_init(struct dn_away *w, uint64_t grace_ms, uint64_t seed);
/* The connection was lost at now_ms (a no-op while already away: the
 * grace runs from the first loss). */
void dn_away_lost(struct dn_away *w, uint64_t now_ms);
/* An attempt that ended at now_ms failed: the next one is paced. */
void dn_away_failed(struct dn_away *w, uint64_t now_ms);
/* A coordinator accepted us: no longer away, pacing from the start. */
void dn_away_back(struct dn_away *w);
/* Away, and the next attempt is due. */
bool dn_away_due(const struct dn_away *w, uint64_t now_ms);
/* Away for grace_ms or more. */
bool dn_away_orphaned(const struct dn_away *w, uint64_t now_ms);
/* How long since the loss (0 while not away). */
uint64_t dn_away_for_ms(const struct dn_away *w, uint64_t now_ms);
/* A poll(2) timeout: -1 while not away, else the ms until the next
 * deadline - the orphan grace's end, and the next attempt unless one is
 * running (attempting) - at least 0. */
int dn_away_poll_ms(const struct dn_away *w, uint64_t now_ms, bool attempting);

#endif /* RMP_DONOR_AWAY_H */
