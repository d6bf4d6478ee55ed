/* cutlist.c - see cutlist.h. A ring: slot `next` is overwritten when the
 * ring is full, so the oldest id is the one that goes. */
#include "cutlist.h"

#include <errno.h>
#include <stdlib.h>

void rmp_cutlist_fini(struct rmp_cutlist *l)
{
	free(l->ids);
	*l = (struct rmp_cutlist){ 0 };
}

bool rmp_cutlist_has(const struct rmp_cutlist *l, uint64_t id)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->ids[i] == id)
			return true;
	return false;
}

int rmp_cutlist_add(struct rmp_cutlist *l, uint64_t id)
{
	if (rmp_cutlist_has(l, id))
		return 0;
	if (!l->ids && !(l->ids = calloc(RMP_CUTLIST_MAX, sizeof(*l->ids))))
		return -ENOMEM;
	if (l->n == RMP_CUTLIST_MAX)
		l->evicted++;
	else
		l->n++;
	l->ids[l->next] = id;
	l->next = (l->next + 1) % RMP_CUTLIST_MAX;
	return 0;
}
