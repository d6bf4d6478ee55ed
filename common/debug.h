/* debug.h - levelled assertions (RMPOOL_DEBUG, mimalloc's MI_DEBUG idea).
 *
 *   RMPOOL_DEBUG 0  no checks (release builds)
 *   RMPOOL_DEBUG 1  cheap preconditions: O(1) each, on every call (buddy
 *                   orders and alignment, pipeline depth, pool
 *                   bookkeeping). Debug builds default to this level.
 *   RMPOOL_DEBUG 2  level 1, plus expensive walks (the heap checker at a
 *                   barrier in the stress test).
 * The level is a CMake option (RMPOOL_DEBUG) that sets the macro for the
 * whole tree; code tests it with rmp_assert (level 1) and rmp_assert2
 * (level 2), or `#if RMPOOL_DEBUG >= 2` around a block.
 *
 * A failed assertion writes one line to stderr (file:line, function, the
 * expression) and aborts. It is the one exception to "the library never
 * prints or exits": state that breaks an invariant of shared metadata
 * must not be acted on, and a core dump is the most useful report.
 * The arguments are not evaluated below their level, so they may be costly but
 * must have no side effects.
 */
#ifndef RMP_DEBUG_H
#define RMP_DEBUG_H

#ifndef RMPOOL_DEBUG
#define RMPOOL_DEBUG 0
#endif

#if RMPOOL_DEBUG > 0
#include <stdio.h>
#include <stdlib.h>

__attribute__((noreturn, cold)) static inline void rmp_assert_fail(const char *expr, const char *file,
								   int line, const char *func)
{
	fprintf(stderr, "rmpool: assertion failed: %s:%d: %s: %s\n", file, line, func, expr);
	abort();
}
#define RMP_ASSERT_AT(level, e)                                                      \
	((RMPOOL_DEBUG >= (level)) && !(e) ? rmp_assert_fail(#e, __FILE__, __LINE__, __func__) \
					   : (void)0)
#else
/* sizeof: the expression is type-checked and its names count as used,
 * but nothing is evaluated. */
#define RMP_ASSERT_AT(level, e) ((void)sizeof((e) ? 1 : 0))
#endif

#define rmp_assert(e) RMP_ASSERT_AT(1, e)
#define rmp_assert2(e) RMP_ASSERT_AT(2, e)

#endif /* RMP_DEBUG_H */
