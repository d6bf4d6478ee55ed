/* test_server_leases.c - server/leases.c: deadlines, renewal, expiry
 * (exactly at the deadline, not before), late renewals refused, owners
 * forgotten on disconnect, pools dropped, ids never reused, slot groups
 * picked lowest first until none is free.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "leases.h"

struct seen {
	uint64_t ids[16];
	size_t n;
};

static void record(void *arg, const struct rmp_srv_lease *l)
{
	struct seen *s = arg;
	s->ids[s->n++] = l->id;
}

/* The metadata listener's question: does this client hold a live lease
 * on this pool? Not another pool's, not another client's, not one past
 * its deadline (reaped or not), not a released one. */
Test(server_leases, held_by_client_and_pool_until_the_deadline)
{
	struct rmp_srv_leases t;
	uint64_t a, b;
	int owner;

	rmp_srv_leases_init(&t, 10000, 1);
	cr_assert(!rmp_srv_leases_held(&t, 1, 100, 0));
	cr_assert_eq(rmp_srv_leases_grant(&t, 1, 100, RMP_SRV_NO_SLOT, &owner, 0, &a), 0);
	cr_assert_eq(rmp_srv_leases_grant(&t, 2, 101, RMP_SRV_NO_SLOT, &owner, 0, &b), 0);
	cr_assert(rmp_srv_leases_held(&t, 1, 100, 9999));
	cr_assert(!rmp_srv_leases_held(&t, 2, 100, 0), "another pool's lease");
	cr_assert(!rmp_srv_leases_held(&t, 1, 101, 0), "another client's lease");
	cr_assert(!rmp_srv_leases_held(&t, 1, 100, 10000), "held at its deadline");
	cr_assert_eq(rmp_srv_leases_renew(&t, b, &owner, 5000), 0);
	cr_assert(rmp_srv_leases_held(&t, 2, 101, 14999));
	cr_assert_eq(rmp_srv_leases_release(&t, b), 0);
	cr_assert(!rmp_srv_leases_held(&t, 2, 101, 6000), "a released lease");
	rmp_srv_leases_fini(&t);
}

/* A stalled coordinator moves every deadline by the stall. */
Test(server_leases, shift_moves_every_deadline)
{
	struct rmp_srv_leases t;
	struct seen s = { 0 };
	uint64_t a, b;
	int owner;

	rmp_srv_leases_init(&t, 10000, 1);
	cr_assert_eq(rmp_srv_leases_grant(&t, 1, 100, RMP_SRV_NO_SLOT, &owner, 0, &a), 0);
	cr_assert_eq(rmp_srv_leases_grant(&t, 1, 101, RMP_SRV_NO_SLOT, &owner, 2000, &b), 0);
	rmp_srv_leases_shift(&t, 15000);
	cr_assert_eq(rmp_srv_leases_expire(&t, 24999, record, &s), 0);
	cr_assert_eq(rmp_srv_leases_renew(&t, b, &owner, 26000), 0, "a renewal within the shifted lease");
	cr_assert_eq(rmp_srv_leases_expire(&t, 25000, record, &s), 1);
	cr_assert_eq(s.ids[0], a);
	rmp_srv_leases_shift(&t, UINT64_MAX);
	cr_assert_eq(rmp_srv_leases_next_deadline(&t), UINT64_MAX);
	rmp_srv_leases_fini(&t);
}

Test(server_leases, deadline_saturates)
{
	cr_assert_eq(rmp_srv_lease_deadline(1000, 10000), 11000);
	cr_assert_eq(rmp_srv_lease_deadline(UINT64_MAX - 5, 10), UINT64_MAX);
}

Test(server_leases, expiry_at_the_deadline)
{
	struct rmp_srv_leases t;
	struct seen s = { 0 };
	uint64_t a, b;
	int owner;

	rmp_srv_leases_init(&t, 10000, 1);
	cr_assert_eq(rmp_srv_leases_grant(&t, 1, 100, RMP_SRV_NO_SLOT, &owner, 0, &a), 0);
	cr_assert_eq(rmp_srv_leases_grant(&t, 1, 101, RMP_SRV_NO_SLOT, &owner, 5000, &b), 0);
	cr_assert_neq(a, b);
	cr_assert_eq(rmp_srv_leases_next_deadline(&t), 10000);
	cr_assert_eq(rmp_srv_leases_expire(&t, 9999, record, &s), 0);
	cr_assert_eq(rmp_srv_leases_expire(&t, 10000, record, &s), 1);
	cr_assert_eq(s.ids[0], a);
	cr_assert_null(rmp_srv_leases_find(&t, a));
	cr_assert_not_null(rmp_srv_leases_find(&t, b));
	cr_assert_eq(rmp_srv_leases_next_deadline(&t), 15000);
	rmp_srv_leases_fini(&t);
}

Test(server_leases, renewal_pushes_the_deadline)
{
	struct rmp_srv_leases t;
	uint64_t a;
	int o1, o2;

	rmp_srv_leases_init(&t, 10000, 1);
	cr_assert_eq(rmp_srv_leases_grant(&t, 3, 7, RMP_SRV_NO_SLOT, &o1, 0, &a), 0);
	cr_assert_eq(rmp_srv_leases_renew(&t, a, &o2, 9000), 0);
	cr_assert_eq(rmp_srv_leases_find(&t, a)->deadline_ms, 19000);
	cr_assert_eq(rmp_srv_leases_find(&t, a)->owner, &o2);
	cr_assert_eq(rmp_srv_leases_expire(&t, 18999, NULL, NULL), 0);
	/* Late: refused, left for the reaper (which counts it). */
	cr_assert_eq(rmp_srv_leases_renew(&t, a, &o2, 19000), -ETIMEDOUT);
	cr_assert_eq(rmp_srv_leases_expire(&t, 19000, NULL, NULL), 1);
	cr_assert_eq(rmp_srv_leases_renew(&t, a, &o2, 19001), -ENOENT);
	rmp_srv_leases_fini(&t);
}

Test(server_leases, release_owner_and_pools)
{
	struct rmp_srv_leases t;
	uint64_t id[6];
	int o1, o2;

	rmp_srv_leases_init(&t, 1000, 1);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(rmp_srv_leases_grant(&t, (uint32_t)(i % 2), (uint64_t)i, RMP_SRV_NO_SLOT,
						  i < 3 ? (void *)&o1 : (void *)&o2, 0, &id[i]),
			     0);
	cr_assert_eq(rmp_srv_leases_count_pool(&t, 0), 3);
	cr_assert_eq(rmp_srv_leases_release(&t, id[0]), 0);
	cr_assert_eq(rmp_srv_leases_release(&t, id[0]), -ENOENT);
	cr_assert_eq(rmp_srv_leases_count_pool(&t, 0), 2);
	rmp_srv_leases_forget_owner(&t, &o1);
	cr_assert_null(rmp_srv_leases_find(&t, id[1])->owner);
	cr_assert_eq(rmp_srv_leases_find(&t, id[4])->owner, &o2);
	rmp_srv_leases_drop_pool(&t, 1);
	cr_assert_eq(t.n, 2);
	cr_assert_eq(rmp_srv_leases_count_pool(&t, 1), 0);
	/* Ids keep growing after removals. */
	uint64_t next;
	cr_assert_eq(rmp_srv_leases_grant(&t, 0, 9, RMP_SRV_NO_SLOT, NULL, 0, &next), 0);
	cr_assert_gt(next, id[5]);
	rmp_srv_leases_fini(&t);
}

Test(server_leases, many_expire_in_one_pass)
{
	struct rmp_srv_leases t;
	struct seen s = { 0 };
	uint64_t id;

	rmp_srv_leases_init(&t, 100, 1);
	for (int i = 0; i < 12; i++)
		cr_assert_eq(rmp_srv_leases_grant(&t, 1, 1, RMP_SRV_NO_SLOT, NULL, (uint64_t)(i % 3) * 100, &id), 0);
	cr_assert_eq(rmp_srv_leases_expire(&t, 200, record, &s), 8);
	cr_assert_eq(s.n, 8);
	cr_assert_eq(t.n, 4);
	cr_assert_eq(rmp_srv_leases_next_deadline(&t), 300);
	rmp_srv_leases_fini(&t);
	cr_assert_eq(rmp_srv_leases_next_deadline(&t), UINT64_MAX);
}

Test(server_leases, restored_leases_keep_their_ids_and_ids_never_repeat)
{
	struct rmp_srv_leases t;
	int o;
	uint64_t id;

	rmp_srv_leases_init(&t, 100, 1);
	cr_assert_eq(rmp_srv_leases_restore(&t, 40, 3, 7, 16, 500), 0);
	cr_assert_eq(rmp_srv_leases_restore(&t, 12, 3, 8, 16, 450), 0);
	cr_assert_eq(rmp_srv_leases_restore(&t, 40, 3, 7, 16, 500), -EEXIST);
	cr_assert_eq(rmp_srv_leases_restore(&t, 0, 3, 7, 16, 500), -EEXIST);
	const struct rmp_srv_lease *l = rmp_srv_leases_find(&t, 40);
	cr_assert_not_null(l);
	cr_assert_eq(l->pool_id, 3);
	cr_assert_eq(l->client_id, 7);
	cr_assert_eq(l->slot_base, 16, "its owner-record slots come back with it");
	cr_assert_null(l->owner, "no owner until it is renewed");
	cr_assert_eq(rmp_srv_leases_grant(&t, 3, 9, RMP_SRV_NO_SLOT, NULL, 0, &id), 0);
	cr_assert_eq(id, 41, "a new lease takes an id past every restored one");
	/* A renewal by its holder's new connection takes it over. */
	cr_assert_eq(rmp_srv_leases_renew(&t, 12, &o, 400), 0);
	cr_assert_eq(rmp_srv_leases_find(&t, 12)->owner, &o);
	cr_assert_eq(rmp_srv_leases_find(&t, 12)->deadline_ms, 500);
	rmp_srv_leases_fini(&t);
}

/* Slot groups: each lease of a pool owns one; the lowest free one is
 * picked; a pool whose groups are all taken has none (-EBUSY); a lease
 * without slots or of another pool takes none; a released lease's group
 * is free again. */
Test(server_leases, slot_groups_are_picked_lowest_first_until_none_is_free)
{
	struct rmp_srv_leases t;
	uint8_t used[4];
	uint32_t base = 0;
	uint64_t id[4], other;

	rmp_srv_leases_init(&t, 100, 1);
	for (unsigned i = 0; i < 4; i++) {
		memset(used, 0, sizeof(used));
		rmp_srv_leases_slots_used(&t, 5, used, 4);
		cr_assert_eq(rmp_srv_slot_group_pick(used, 4, &base), 0);
		cr_assert_eq(base, i * RMP_SRV_LEASE_SLOTS);
		cr_assert_eq(rmp_srv_leases_grant(&t, 5, i, base, NULL, 0, &id[i]), 0);
	}
	cr_assert_eq(rmp_srv_leases_grant(&t, 6, 9, 0, NULL, 0, &other), 0);
	cr_assert_eq(rmp_srv_leases_grant(&t, 5, 9, RMP_SRV_NO_SLOT, NULL, 0, &other), 0);
	memset(used, 0, sizeof(used));
	rmp_srv_leases_slots_used(&t, 5, used, 4);
	cr_assert_eq(rmp_srv_slot_group_pick(used, 4, &base), -EBUSY, "every group taken");
	cr_assert_eq(rmp_srv_leases_release(&t, id[2]), 0);
	memset(used, 0, sizeof(used));
	rmp_srv_leases_slots_used(&t, 5, used, 4);
	cr_assert_eq(rmp_srv_slot_group_pick(used, 4, &base), 0);
	cr_assert_eq(base, 2 * RMP_SRV_LEASE_SLOTS, "the released lease's group");
	/* a group past the pool's count (a smaller region) is ignored */
	memset(used, 0, sizeof(used));
	rmp_srv_leases_slots_used(&t, 5, used, 2);
	cr_assert_eq(used[0] + used[1], 2);
	cr_assert_eq(used[2] + used[3], 0);
	rmp_srv_leases_fini(&t);
}
