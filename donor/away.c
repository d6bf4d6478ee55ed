/* away.c - a donor's time away from a coordinator (interface and
 * design: away.h). The only arithmetic that needs care is the poll
 * timeout: deadlines may already be past (then 0, never a negative
 * number that poll(2) would read as "forever"), and a grace of hours
 * must not overflow an int (clamped).
 */
#include "away.h"

#include <limits.h>

void dn_away_init(struct dn_away *w, uint64_t grace_ms, uint64_t seed)
{
	*w = (struct dn_away){.grace_ms = grace_ms};
	rmp_ctlconn_backoff_init(&w->bo, DN_AWAY_BASE_MS, DN_AWAY_MAX_MS, DN_AWAY_JITTER_PCT,
				 seed);
}

void dn_away_lost(struct dn_away *w, uint64_t now_ms)
{
	if (w->away)
		return;
	w->away = true;
	w->since_ms = now_ms;
	w->attempts = 0;
	rmp_ctlconn_backoff_reset(&w->bo);
	/* Not at once: a coordinator that just died refuses, and one that
	 * closed us on purpose is not helped by an instant return. */
	w->next_try_ms = now_ms + rmp_ctlconn_backoff_next(&w->bo);
}

void dn_away_failed(struct dn_away *w, uint64_t now_ms)
{
	w->attempts++;
	w->next_try_ms = now_ms + rmp_ctlconn_backoff_next(&w->bo);
}

void dn_away_back(struct dn_away *w)
{
	w->away = false;
	w->attempts = 0;
	rmp_ctlconn_backoff_reset(&w->bo);
}

bool dn_away_due(const struct dn_away *w, uint64_t now_ms)
{
	return w->away && now_ms >= w->next_try_ms;
}

bool dn_away_orphaned(const struct dn_away *w, uint64_t now_ms)
{
	return w->away && now_ms - w->since_ms >= w->grace_ms;
}

uint64_t dn_away_for_ms(const struct dn_away *w, uint64_t now_ms)
{
	return w->away && now_ms > w->since_ms ? now_ms - w->since_ms : 0;
}

static uint64_t until(uint64_t deadline, uint64_t now)
{
	return deadline > now ? deadline - now : 0;
}

int dn_away_poll_ms(const struct dn_away *w, uint64_t now_ms, bool attempting)
{
	if (!w->away)
		return -1;
	uint64_t left = until(w->since_ms + w->grace_ms, now_ms);
	if (!attempting && until(w->next_try_ms, now_ms) < left)
		left = until(w->next_try_ms, now_ms);
	return left > INT_MAX ? INT_MAX : (int)left;
}
