/* fuzz_wire.c - libFuzzer target for the control-protocol decoder.
 *
 * Three views of each input:
 *   1. a byte stream: parse frames one after another, as a connection
 *      would, with the pre-auth limit first and the full one after;
 *      every proper prefix of a found frame must read as "need more";
 *   2. first byte = message type, the rest = a payload, straight into
 *      the decoder (reaches deep fields without a valid header);
 *   3. the first 24 bytes as an rdma_cm token body.
 * Whatever decodes must encode back to the very same bytes: the decoder
 * accepts only canonical encodings (wire.c), so any difference is a bug
 * in one direction or the other. Failures trap, and ASan/UBSan watch
 * every read.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(const struct rmp_wire_msg *m, const uint8_t *frame, size_t len)
{
	size_t need = 0, got = 0;

	if (rmp_wire_encode(m, NULL, 0, &need) != -ENOSPC || need != len)
		__builtin_trap();
	uint8_t *buf = malloc(need);
	if (!buf)
		return;
	if (rmp_wire_encode(m, buf, need, &got) != 0 || got != len || memcmp(buf, frame, len))
		__builtin_trap();
	free(buf);
}

static void view_stream(const uint8_t *data, size_t size)
{
	size_t off = 0;
	size_t limit = RMP_WIRE_PREAUTH_MAX_FRAME;

	while (off < size) {
		struct rmp_wire_frame f;
		struct rmp_wire_err err;
		size_t need = 0;
		int rc = rmp_wire_frame_parse(data + off, size - off, limit, &f, &need, &err);
		if (rc < 0) {
			if (!err.text[0] || !memchr(err.text, '\0', sizeof(err.text)))
				__builtin_trap(); /* every error explains itself */
			return;
		}
		if (rc == 0) {
			if (need == 0 || need > RMP_WIRE_MAX_FRAME)
				__builtin_trap();
			return;
		}
		if ((size_t)rc != f.frame_len || f.frame_len > limit ||
		    f.payload != data + off + RMP_WIRE_HDR_LEN)
			__builtin_trap();
		/* incremental: a shorter read of the same frame asks for more */
		size_t cut = data[off + RMP_WIRE_HDR_LEN - 1] % f.frame_len;
		struct rmp_wire_frame g;
		if (rmp_wire_frame_parse(data + off, cut, limit, &g, &need, NULL) != 0 ||
		    need != (cut < RMP_WIRE_HDR_LEN ? RMP_WIRE_HDR_LEN - cut : f.frame_len - cut))
			__builtin_trap();

		struct rmp_wire_msg m;
		if (rmp_wire_decode(&f, &m, &err) == 0) {
			check_round_trip(&m, data + off, f.frame_len);
			rmp_wire_msg_release(&m);
			/* the handshake done, the peer may send big frames */
			limit = RMP_WIRE_MAX_FRAME;
		}
		off += (size_t)rc;
	}
}

static void view_payload(const uint8_t *data, size_t size)
{
	if (size < 1 || !rmp_wire_type_name(data[0]))
		return;
	struct rmp_wire_frame f = {
		.type = data[0],
		.payload_len = (uint32_t)(size - 1),
		.payload = data + 1,
		.frame_len = size - 1 + RMP_WIRE_HDR_LEN,
	};
	if (size - 1 > RMP_WIRE_MAX_FRAME - RMP_WIRE_HDR_LEN)
		return;
	struct rmp_wire_msg m;
	struct rmp_wire_err err;
	if (rmp_wire_decode(&f, &m, &err) != 0)
		return;
	size_t len = 0;
	if (rmp_wire_encode(&m, NULL, 0, &len) != -ENOSPC || len != f.frame_len)
		__builtin_trap();
	uint8_t *buf = malloc(len);
	if (buf) {
		if (rmp_wire_encode(&m, buf, len, &len) != 0 ||
		    memcmp(buf + RMP_WIRE_HDR_LEN, data + 1, size - 1) != 0 || buf[3] != data[0])
			__builtin_trap();
		free(buf);
	}
	rmp_wire_msg_release(&m);
}

static void view_token(const uint8_t *data, size_t size)
{
	struct rmp_wire_token t;
	uint8_t again[RMP_WIRE_TOKEN_BODY_LEN];

	if (size < RMP_WIRE_TOKEN_BODY_LEN || rmp_wire_token_get(data, &t) != 0)
		return;
	rmp_wire_token_put(&t, again);
	if (memcmp(again, data, sizeof(again)) != 0)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	view_stream(data, size);
	view_payload(data, size);
	view_token(data, size);
	return 0;
}
