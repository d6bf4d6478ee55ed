/* adopt.c - see adopt.h. */
#include "adopt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buddy.h"
#include "debug.h"

int rmp_srv_adopt_check_meta(const uint64_t *words, uint64_t len_bytes,
			     const struct rmp_srv_adopt_expect *want, char *err, size_t errlen)
{
	const char *name = want->shm_name;
	struct rmp_buddy_geom g;
	unsigned version = 0;
	uint64_t usable = 0;

	if (len_bytes < RMP_BUDDY_HDR_WORDS * sizeof(uint64_t)) {
		snprintf(err, errlen, "metadata object %s is %" PRIu64 " bytes, shorter than the header",
			 name, len_bytes);
		return -EPROTO;
	}
	int rc = rmp_buddy_header_version(words, &version);
	if (rc == -EPROTONOSUPPORT) {
		snprintf(err, errlen,
			 "metadata object %s has layout version %u; this rmpool-server reads version %u "
			 "(run the rmpool-server that made it)",
			 name, version, RMP_BUDDY_VERSION);
		return rc;
	}
	if (rc) {
		snprintf(err, errlen, "metadata object %s holds no buddy metadata (magic word %#" PRIx64 ")",
			 name, words[0]);
		return -EPROTO;
	}
	if (rmp_buddy_geom_from_header(&g, words, &usable) != 0) {
		snprintf(err, errlen, "metadata object %s: its header's geometry does not hold together", name);
		return -EPROTO;
	}
	if (g.max_order != want->space_log2 || g.min_order != want->min_block_log2) {
		snprintf(err, errlen,
			 "metadata object %s describes a space of 2^%u bytes in blocks of 2^%u; the "
			 "record says 2^%u and 2^%u",
			 name, g.max_order, g.min_order, want->space_log2, want->min_block_log2);
		return -EPROTO;
	}
	uint64_t minb = UINT64_C(1) << want->min_block_log2;
	uint64_t want_usable = (want->capacity + minb - 1) & ~(minb - 1);
	if (usable != want_usable) {
		snprintf(err, errlen,
			 "metadata object %s has %" PRIu64 " usable bytes; the record says %" PRIu64, name,
			 usable, want_usable);
		return -EPROTO;
	}
	if (g.total_words > len_bytes / sizeof(uint64_t)) {
		snprintf(err, errlen,
			 "metadata object %s is %" PRIu64 " bytes; its header needs %" PRIu64, name,
			 len_bytes, g.total_words * (uint64_t)sizeof(uint64_t));
		return -EPROTO;
	}
	return 0;
}

int rmp_srv_adopt_segtab_encode(uint32_t pool_id, const struct rmp_wire_segtab *t, uint8_t **out,
				size_t *len)
{
	struct rmp_wire_msg m = { .type = RMP_MSG_SEGTAB };
	size_t need = 0;

	*out = NULL;
	m.u.segtab.pool_id = pool_id;
	m.u.segtab.segtab = *t;
	int rc = rmp_wire_encode(&m, NULL, 0, &need);
	if (rc != -ENOSPC)
		return rc ? rc : -EINVAL;
	uint8_t *buf = malloc(need);
	if (!buf)
		return -ENOMEM;
	rc = rmp_wire_encode(&m, buf, need, len);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

int rmp_srv_adopt_segtab_decode(const uint8_t *blob, size_t len, uint32_t pool_id,
				struct rmp_wire_segtab *t, char *err, size_t errlen)
{
	struct rmp_wire_msg m;
	struct rmp_wire_err werr = { { 0 } };

	memset(t, 0, sizeof(*t));
	if (!blob || len == 0) {
		snprintf(err, errlen, "no segment table was recorded");
		return -EPROTO;
	}
	int rc = rmp_wire_decode_record(blob, len, &m, &werr);
	if (rc) {
		snprintf(err, errlen, "the recorded segment table does not decode: %s", werr.text);
		return -EPROTO;
	}
	if (m.type != RMP_MSG_SEGTAB || m.u.segtab.pool_id != pool_id) {
		snprintf(err, errlen, "the recorded segment table is a %s for pool %" PRIu32,
			 rmp_wire_type_name(m.type), m.type == RMP_MSG_SEGTAB ? m.u.segtab.pool_id : 0);
		rmp_wire_msg_release(&m);
		return -EPROTO;
	}
	*t = m.u.segtab.segtab; /* the arrays move to the caller */
	return 0;
}

int rmp_srv_adopt_segtab_patch(struct rmp_wire_segtab *t, const struct rmp_srv_adopt_patch *pt,
			       char *err, size_t errlen)
{
	rmp_assert(t->segment_log2 < 64);
	uint64_t seg = UINT64_C(1) << t->segment_log2;

	t->meta = pt->meta;
	t->coordinator = pt->coordinator;
	if (pt->self_donor_id) {
		for (uint32_t i = 0; i < t->n_donors; i++)
			if (t->donors[i].donor_id == pt->self_donor_id)
				t->donors[i].endpoint = pt->coordinator;
		/* The layout puts the coordinator's share at pool address 0. */
		for (uint32_t j = 0; j < t->n_segments; j++) {
			struct rmp_wire_segment *s = &t->segments[j];
			if (s->donor_id != pt->self_donor_id)
				continue;
			if ((uint64_t)j >= pt->self.len / seg) {
				snprintf(err, errlen,
					 "segment %" PRIu32 " is the coordinator's, past its %" PRIu64
					 "-byte share",
					 j, pt->self.len);
				return -EPROTO;
			}
			s->rkey = pt->self.rkey;
			s->addr = pt->self.addr + (uint64_t)j * seg;
		}
	}
	t->version++;
	return 0;
}

uint64_t rmp_srv_adopt_donor_bytes(const struct rmp_wire_segtab *t, uint32_t donor_id)
{
	uint64_t n = 0;

	for (uint32_t j = 0; j < t->n_segments; j++)
		n += t->segments[j].donor_id == donor_id;
	return n << t->segment_log2;
}

int rmp_srv_adopt_donor_check(uint32_t donor_id, const struct rmp_srv_adopt_donor *rec,
			      const struct rmp_srv_adopt_donor *got, char *err, size_t errlen)
{
	if (got->pid != rec->pid) {
		snprintf(err, errlen, "donor %" PRIu32 " was pid %" PRIu32 ", this is pid %" PRIu32,
			 donor_id, rec->pid, got->pid);
		return -EINVAL;
	}
	if (got->region.addr != rec->region.addr || got->region.len != rec->region.len ||
	    got->region.rkey != rec->region.rkey) {
		snprintf(err, errlen,
			 "donor %" PRIu32 " had region {0x%" PRIx64 ", %" PRIu64 " bytes, rkey %#" PRIx32
			 "}, it presents {0x%" PRIx64 ", %" PRIu64 ", %#" PRIx32 "}",
			 donor_id, rec->region.addr, rec->region.len, rec->region.rkey, got->region.addr,
			 got->region.len, got->region.rkey);
		return -EINVAL;
	}
	if (strcmp(got->endpoint.host, rec->endpoint.host) != 0 ||
	    got->endpoint.port != rec->endpoint.port) {
		snprintf(err, errlen, "donor %" PRIu32 " served rdma on %s:%u, it presents %s:%u", donor_id,
			 rec->endpoint.host, rec->endpoint.port, got->endpoint.host, got->endpoint.port);
		return -EINVAL;
	}
	return 0;
}

uint64_t rmp_srv_adopt_lease_deadline(uint64_t recorded_wall_ms, uint64_t now_wall_ms,
				      uint64_t now_mono_ms, uint64_t period_ms)
{
	uint64_t left = recorded_wall_ms > now_wall_ms ? recorded_wall_ms - now_wall_ms : 0;

	if (left < period_ms)
		left = period_ms;
	return now_mono_ms > UINT64_MAX - left ? UINT64_MAX : now_mono_ms + left;
}
