/* test_cutlist.c - common/cutlist.c: the ids refused after a cut-off. An
 * id added is refused, others are not, adding again changes nothing, and
 * a full ring drops exactly its oldest entry. */
#include <criterion/criterion.h>

#include "cutlist.h"

Test(cutlist, empty_refuses_nobody)
{
	struct rmp_cutlist l = { 0 };
	cr_assert(!rmp_cutlist_has(&l, 0));
	cr_assert(!rmp_cutlist_has(&l, 7));
	rmp_cutlist_fini(&l);
}

Test(cutlist, added_ids_are_refused_others_not)
{
	struct rmp_cutlist l = { 0 };
	cr_assert_eq(rmp_cutlist_add(&l, 501), 0);
	cr_assert_eq(rmp_cutlist_add(&l, 77), 0);
	cr_assert_eq(rmp_cutlist_add(&l, 501), 0); /* again: no second entry */
	cr_assert_eq(l.n, 2);
	cr_assert(rmp_cutlist_has(&l, 501));
	cr_assert(rmp_cutlist_has(&l, 77));
	cr_assert(!rmp_cutlist_has(&l, 502));
	cr_assert(!rmp_cutlist_has(&l, 0));
	rmp_cutlist_fini(&l);
	cr_assert(!rmp_cutlist_has(&l, 501));
}

Test(cutlist, full_ring_drops_the_oldest_only)
{
	struct rmp_cutlist l = { 0 };
	for (uint64_t id = 1; id <= RMP_CUTLIST_MAX; id++)
		cr_assert_eq(rmp_cutlist_add(&l, id), 0);
	cr_assert_eq(l.n, RMP_CUTLIST_MAX);
	cr_assert_eq(l.evicted, 0);
	cr_assert_eq(rmp_cutlist_add(&l, RMP_CUTLIST_MAX + 1), 0);
	cr_assert_eq(l.evicted, 1);
	cr_assert(!rmp_cutlist_has(&l, 1), "the oldest id stays after the ring filled");
	for (uint64_t id = 2; id <= RMP_CUTLIST_MAX + 1; id++)
		cr_assert(rmp_cutlist_has(&l, id), "id %llu lost", (unsigned long long)id);
	cr_assert_eq(rmp_cutlist_add(&l, RMP_CUTLIST_MAX + 2), 0);
	cr_assert(!rmp_cutlist_has(&l, 2) && rmp_cutlist_has(&l, 3));
	rmp_cutlist_fini(&l);
}
