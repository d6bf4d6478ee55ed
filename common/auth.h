/* auth.h - shared-secret authentication: the control-protocol handshake
 * and the token rdma_cm connections carry in their private data.
 *
 * Handshake (wire.c shows the frames; both sides hold the same secret):
 *
 *   peer                                   coordinator
 *   rmp_auth_peer_hello()      HELLO  --->
 *                                          rmp_auth_coord_challenge()
 *                          <--- CHALLENGE
 *   rmp_auth_peer_prove()  AUTH_PROOF --->  (-EACCES: the coordinator
 *                                            does not hold the secret)
 *                                          rmp_auth_coord_verify()
 *                          <--- AUTH_OK or ERROR + close
 *
 * Mutual: each side proves knowledge of the secret over a nonce the
 * other side chose, so neither a recorded proof nor a proof made for
 * another connection is accepted. See auth.c for what is MACed.
 */
#ifndef RMP_AUTH_H
#define RMP_AUTH_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "wire.h"

/* Shorter secrets are guessable offline from one recorded handshake. */
#define RMP_AUTH_SECRET_MIN 16u
#define RMP_AUTH_SECRET_MAX 1024u
#define RMP_AUTH_SECRET_ENV "RMPOOL_SECRET"

/* Token = body (wire.h) + MAC truncated to 24 bytes = 48 bytes, within the
 * 56 bytes of private data an RC connect request carries. 192 bits of MAC
 * is far beyond what an online forger can try before the token expires. */
#define RMP_AUTH_TOKEN_MAC_LEN 24u
#define RMP_AUTH_TOKEN_LEN (RMP_WIRE_TOKEN_BODY_LEN + RMP_AUTH_TOKEN_MAC_LEN)

/* The secret, in locked memory that is wiped on destroy. Opaque. */
typedef struct rmp_auth_key rmp_auth_key;

/* secret NULL: read RMPOOL_SECRET. -EINVAL when it is missing, shorter
 * than RMP_AUTH_SECRET_MIN or longer than RMP_AUTH_SECRET_MAX (err says
 * which, never the secret); -ENOMEM; -EIO if libsodium cannot start. */
int rmp_auth_key_create(const char *secret, rmp_auth_key **out, char *err, size_t errlen);
void rmp_auth_key_destroy(rmp_auth_key *k);

enum rmp_auth_state {
	RMP_AUTH_IDLE = 0,
	RMP_AUTH_HELLO_SENT,	/* peer: waiting for CHALLENGE */
	RMP_AUTH_CHALLENGED,	/* coordinator: waiting for AUTH_PROOF */
	RMP_AUTH_DONE,		/* both proofs checked (coordinator), or ours sent */
	RMP_AUTH_FAILED,	/* terminal: close the connection */
};

/* One per connection, zero-initialised; holds no secret. */
struct rmp_auth_handshake {
	enum rmp_auth_state state;
	uint8_t role;
	uint8_t peer_nonce[RMP_WIRE_NONCE_LEN];
	uint8_t coord_nonce[RMP_WIRE_NONCE_LEN];
	char ident[RMP_WIRE_IDENT_MAX + 1];
};

/* Peer side. Fills HELLO with a fresh nonce. -EINVAL: bad role/ident. */
int rmp_auth_peer_hello(struct rmp_auth_handshake *hs, enum rmp_wire_role role,
			const char *ident, struct rmp_wire_hello *out);
/* Checks the coordinator's proof, then fills AUTH_PROOF. -EACCES when
 * the proof is wrong; -EINVAL when called out of order. */
int rmp_auth_peer_prove(const rmp_auth_key *k, struct rmp_auth_handshake *hs,
			const struct rmp_wire_challenge *in, struct rmp_wire_auth_proof *out);

/* Coordinator side. Answers HELLO with a fresh nonce and its own proof. */
int rmp_auth_coord_challenge(const rmp_auth_key *k, struct rmp_auth_handshake *hs,
			     const struct rmp_wire_hello *in, struct rmp_wire_challenge *out);
/* 0 when the peer proved it holds the secret; -EACCES otherwise. */
int rmp_auth_coord_verify(const rmp_auth_key *k, struct rmp_auth_handshake *hs,
			  const struct rmp_wire_auth_proof *in);

/* Whether a token's generation (its low 16 bits) is older than the
 * generation a peer knows: a token minted under a coordinator that has
 * since restarted is refused with it. Compared modulo 2^16, so the
 * generation may wrap (a coordinator restarting 32768 times while a
 * token lives would be needed to fool it). */
static inline bool rmp_auth_generation_older(uint16_t token_gen, uint64_t known)
{
	return (int16_t)(uint16_t)(token_gen - (uint16_t)known) < 0;
}

/* rdma_cm private data. make fills exactly RMP_AUTH_TOKEN_LEN bytes. */
int rmp_auth_token_make(const rmp_auth_key *k, const struct rmp_wire_token *t,
			uint8_t out[RMP_AUTH_TOKEN_LEN]);
/* Checks a token received as private data. len may exceed the token
 * (InfiniBand pads private data to its full size); the rest is ignored.
 * 0 and *out on success; -EBADMSG (short or malformed), -EACCES (wrong
 * MAC, kind or target), -EKEYEXPIRED (expires_ms <= now_ms). */
int rmp_auth_token_verify(const rmp_auth_key *k, const void *pd, size_t len,
			  enum rmp_wire_token_kind kind, uint32_t target_id, uint64_t now_ms,
			  struct rmp_wire_token *out);

#endif /* RMP_AUTH_H */
