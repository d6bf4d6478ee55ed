/* fuzz_wire_seeds.c - writes the seed corpus for fuzz_wire at build time:
 * one valid frame per message type, a handshake stream, and a
 * type-byte-plus-payload seed per type (the fuzzer's second view).
 * Generated from the codec itself, so seeds follow protocol changes and
 * nothing binary is committed.
 *
 * usage: fuzz_wire_seeds OUTDIR
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "wire.h"

static int write_seed(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		return -1;
	}
	size_t w = fwrite(p, 1, n, f);
	if (fclose(f) != 0 || w != n) {
		perror(path);
		return -1;
	}
	return 0;
}

static struct rmp_wire_donor_entry donors[2];
static struct rmp_wire_segment segments[4];
static struct rmp_wire_pool_status pools[1];
static struct rmp_wire_host_status hosts[2];

static void segtab(struct rmp_wire_segtab *t)
{
	t->version = 3;
	t->capacity = 3 << 12;
	t->space_log2 = 14;
	t->min_block_log2 = 10;
	t->segment_log2 = 12;
	t->meta = (struct rmp_wire_region){0x10000, 4096, 0x77};
	strcpy(t->coordinator.host, "10.0.0.1");
	t->coordinator.port = 7471;
	for (unsigned i = 0; i < 2; i++) {
		donors[i].donor_id = i + 1;
		snprintf(donors[i].endpoint.host, sizeof(donors[i].endpoint.host), "10.0.0.%u",
			 i + 2);
		donors[i].endpoint.port = 20000;
		donors[i].state = i ? RMP_DONOR_LOST : RMP_DONOR_SERVING;
	}
	for (unsigned i = 0; i < 4; i++)
		segments[i] = i < 3 ? (struct rmp_wire_segment){1 + i % 2, 0x100 + i, 0x7f00 + i}
				    : (struct rmp_wire_segment){RMP_WIRE_SEG_RESERVED, 0, 0};
	t->n_donors = 2;
	t->donors = donors;
	t->n_segments = 4;
	t->segments = segments;
}

static void fill(unsigned type, struct rmp_wire_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = (enum rmp_wire_type)type;
	switch (type) {
	case RMP_MSG_HELLO:
		m->u.hello.role = RMP_ROLE_CLIENT;
		strcpy(m->u.hello.ident, "seed");
		break;
	case RMP_MSG_ERROR:
		m->u.error.code = EACCES;
		strcpy(m->u.error.text, "authentication failed");
		break;
	case RMP_MSG_AGENT_REGISTER:
		strcpy(m->u.agent_register.host, "host-1");
		m->u.agent_register.budget = 1ull << 34;
		break;
	case RMP_MSG_SPAWN:
		m->u.spawn.segment_size = 1 << 26;
		break;
	case RMP_MSG_PROGRESS:
		m->u.progress.state = RMP_PROGRESS_SPAWNED;
		strcpy(m->u.progress.text, "ok");
		break;
	case RMP_MSG_DONOR_REGISTER:
		strcpy(m->u.donor_register.endpoint.host, "10.0.0.2");
		m->u.donor_register.endpoint.port = 20000;
		m->u.donor_register.region = (struct rmp_wire_region){0x7f00, 1 << 26, 9};
		break;
	case RMP_MSG_POOL_OPEN:
		strcpy(m->u.pool_open.name, "seed-pool");
		m->u.pool_open.capacity = 3 << 12;
		break;
	case RMP_MSG_POOL_READY:
		m->u.pool_ready.slot_base = 16;
		segtab(&m->u.pool_ready.segtab);
		break;
	case RMP_MSG_SEGTAB:
		segtab(&m->u.segtab.segtab);
		break;
	case RMP_MSG_SEGTAB_PUSH:
		strcpy(m->u.segtab_push.note, "donor 2 on 10.0.0.3 is lost");
		segtab(&m->u.segtab_push.segtab);
		break;
	case RMP_MSG_POOL_DESTROY:
		strcpy(m->u.pool_destroy.name, "seed-pool");
		break;
	case RMP_MSG_POOL_FORGET:
		strcpy(m->u.pool_forget.name, "seed-pool");
		break;
	case RMP_MSG_POOL_HOLD:
		m->u.pool_hold = (struct rmp_wire_pool_hold){ 7, 1, 150 }; /* hold_ms 1..RMP_WIRE_HOLD_MAX_MS */
		break;
	case RMP_MSG_STATUS_REPLY:
		strcpy(pools[0].name, "seed-pool");
		pools[0].state = RMP_POOL_LOST;
		strcpy(pools[0].note, "metadata object /rmpool-seed-pool is gone");
		strcpy(hosts[0].host, "host-1");
		strcpy(hosts[1].host, "host-2");
		m->u.status.n_pools = 1;
		m->u.status.pools = pools;
		m->u.status.n_hosts = 2;
		m->u.status.hosts = hosts;
		break;
	default:
		break;
	}
}

int main(int argc, char **argv)
{
	static uint8_t stream[RMP_WIRE_PREAUTH_MAX_FRAME * 4];
	size_t stream_len = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
		return 2;
	}
	for (unsigned type = 0; type < 256; type++) {
		struct rmp_wire_msg m;
		uint8_t buf[4096];
		size_t len;
		char name[64];

		if (!rmp_wire_type_name(type))
			continue;
		fill(type, &m);
		int rc = rmp_wire_encode(&m, buf, sizeof(buf), &len);
		if (rc) {
			fprintf(stderr, "encode %s: %s\n", rmp_wire_type_name(type),
				rmp_wire_strerror(rc));
			return 1;
		}
		snprintf(name, sizeof(name), "frame-%s", rmp_wire_type_name(type));
		if (write_seed(argv[1], name, buf, len))
			return 1;
		/* view 2: the type byte, then the payload */
		buf[RMP_WIRE_HDR_LEN - 1] = (uint8_t)type;
		snprintf(name, sizeof(name), "payload-%s", rmp_wire_type_name(type));
		if (write_seed(argv[1], name, buf + RMP_WIRE_HDR_LEN - 1,
			       len - RMP_WIRE_HDR_LEN + 1))
			return 1;
		if (rmp_wire_type_preauth(type) || type == RMP_MSG_POOL_OPEN) {
			fill(type, &m);
			rmp_wire_encode(&m, stream + stream_len, sizeof(stream) - stream_len, &len);
			stream_len += len;
		}
	}
	return write_seed(argv[1], "stream-handshake", stream, stream_len) ? 1 : 0;
}
