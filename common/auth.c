/* auth.c - HMAC-SHA256 (libsodium) proofs over per-connection nonces.
 *
 * With K the shared secret, Nc the peer's nonce and Ns the coordinator's:
 *   proof_s = HMAC(K, "rmpool-v1 coord" | role | Nc | Ns | len(ident) ident)
 *   proof_c = HMAC(K, "rmpool-v1 peer"  | role | Nc | Ns | len(ident) ident)
 * The labels differ, so a proof can never be reflected back to the side
 * that made it; both nonces are in both proofs, so a proof is worth
 * something only on the connection it was made for (a replay against a
 * fresh Ns fails). The coordinator proves first, so a peer never sends
 * a proof to an impostor; the coordinator's proof is over a nonce the
 * peer chose, which gives an impostor nothing it can reuse.
 * Proofs are compared in constant time (crypto_verify_32).
 *
 * Token: body (wire.c encodes it) | first 24 bytes of
 *   HMAC(K, "rmpool-v1 token" | body).
 * Anyone holding the secret can make one; the accepting side checks the
 * MAC, that the token is for it (kind, target) and that it has not
 * expired.
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

struct rmp_auth_key {
	size_t len;
	uint8_t bytes[]; /* sodium_malloc'ed: locked, guard pages, wiped on free */
};

static const char label_coord[] = "rmpool-v1 coord";
static const char label_peer[] = "rmpool-v1 peer";
static const char label_token[] = "rmpool-v1 token";

int rmp_auth_key_create(const char *secret, rmp_auth_key **out, char *err, size_t errlen)
{
	const char *src = secret ? "secret" : RMP_AUTH_SECRET_ENV;

	if (!secret)
		secret = getenv(RMP_AUTH_SECRET_ENV);
	if (!secret) {
		if (err && errlen)
			snprintf(err, errlen, "no secret given and %s is not set",
				 RMP_AUTH_SECRET_ENV);
		return -EINVAL;
	}
	size_t len = strnlen(secret, RMP_AUTH_SECRET_MAX + 1);
	if (len < RMP_AUTH_SECRET_MIN || len > RMP_AUTH_SECRET_MAX) {
		if (err && errlen)
			snprintf(err, errlen, "%s is %s%zu bytes long; allowed [%u, %u]", src,
				 len > RMP_AUTH_SECRET_MAX ? "over " : "",
				 len > RMP_AUTH_SECRET_MAX ? (size_t)RMP_AUTH_SECRET_MAX : len,
				 RMP_AUTH_SECRET_MIN, RMP_AUTH_SECRET_MAX);
		return -EINVAL;
	}
	/* Idempotent and thread-safe; called here rather than at load time. */
	if (sodium_init() < 0) {
		if (err && errlen)
			snprintf(err, errlen, "sodium_init(): libsodium cannot start");
		return -EIO;
	}
	/* sodium_malloc ends the block at a guard page, so it is aligned only
	 * when its size is a multiple of the alignment: round up. */
	size_t align = _Alignof(rmp_auth_key);
	rmp_auth_key *k = sodium_malloc((sizeof(*k) + len + align - 1) & ~(align - 1));
	if (!k)
		return -ENOMEM;
	k->len = len;
	memcpy(k->bytes, secret, len);
	*out = k;
	return 0;
}

void rmp_auth_key_destroy(rmp_auth_key *k)
{
	sodium_free(k); /* wipes, and accepts NULL */
}

/* HMAC over the handshake transcript with the given label. */
static void transcript_mac(const rmp_auth_key *k, const char *label,
			   const struct rmp_auth_handshake *hs, uint8_t mac[RMP_WIRE_MAC_LEN])
{
	crypto_auth_hmacsha256_state st;
	size_t ident_len = strnlen(hs->ident, RMP_WIRE_IDENT_MAX);
	uint8_t lenbyte = (uint8_t)ident_len; /* IDENT_MAX < 256 */

	/* The _init form takes keys of any length (longer ones are hashed
	 * first, as HMAC specifies), so the operator's secret is the key. */
	crypto_auth_hmacsha256_init(&st, k->bytes, k->len);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label) + 1);
	crypto_auth_hmacsha256_update(&st, &hs->role, 1);
	crypto_auth_hmacsha256_update(&st, hs->peer_nonce, sizeof(hs->peer_nonce));
	crypto_auth_hmacsha256_update(&st, hs->coord_nonce, sizeof(hs->coord_nonce));
	crypto_auth_hmacsha256_update(&st, &lenbyte, 1);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)hs->ident, ident_len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
}

int rmp_auth_peer_hello(struct rmp_auth_handshake *hs, enum rmp_wire_role role,
			const char *ident, struct rmp_wire_hello *out)
{
	if (role < RMP_ROLE_CLIENT || role > RMP_ROLE_AGENT || !ident ||
	    strnlen(ident, RMP_WIRE_IDENT_MAX + 1) > RMP_WIRE_IDENT_MAX)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	memset(hs, 0, sizeof(*hs));
	hs->role = (uint8_t)role;
	snprintf(hs->ident, sizeof(hs->ident), "%s", ident);
	randombytes_buf(hs->peer_nonce, sizeof(hs->peer_nonce));
	hs->state = RMP_AUTH_HELLO_SENT;

	memset(out, 0, sizeof(*out));
	out->role = hs->role;
	memcpy(out->nonce, hs->peer_nonce, sizeof(out->nonce));
	memcpy(out->ident, hs->ident, sizeof(out->ident));
	return 0;
}

int rmp_auth_coord_challenge(const rmp_auth_key *k, struct rmp_auth_handshake *hs,
			     const struct rmp_wire_hello *in, struct rmp_wire_challenge *out)
{
	if (hs->state != RMP_AUTH_IDLE)
		return -EINVAL;
	if (in->role < RMP_ROLE_CLIENT || in->role > RMP_ROLE_AGENT ||
	    strnlen(in->ident, sizeof(in->ident)) > RMP_WIRE_IDENT_MAX) {
		hs->state = RMP_AUTH_FAILED;
		return -EINVAL;
	}
	hs->role = in->role;
	memcpy(hs->peer_nonce, in->nonce, sizeof(hs->peer_nonce));
	snprintf(hs->ident, sizeof(hs->ident), "%s", in->ident);
	randombytes_buf(hs->coord_nonce, sizeof(hs->coord_nonce));
	memcpy(out->nonce, hs->coord_nonce, sizeof(out->nonce));
	transcript_mac(k, label_coord, hs, out->proof);
	hs->state = RMP_AUTH_CHALLENGED;
	return 0;
}

int rmp_auth_peer_prove(const rmp_auth_key *k, struct rmp_auth_handshake *hs,
			const struct rmp_wire_challenge *in, struct rmp_wire_auth_proof *out)
{
	uint8_t want[RMP_WIRE_MAC_LEN];

	if (hs->state != RMP_AUTH_HELLO_SENT)
		return -EINVAL;
	memcpy(hs->coord_nonce, in->nonce, sizeof(hs->coord_nonce));
	transcript_mac(k, label_coord, hs, want);
	int bad = crypto_verify_32(want, in->proof);
	sodium_memzero(want, sizeof(want));
	if (bad) {
		hs->state = RMP_AUTH_FAILED;
		return -EACCES;
	}
	transcript_mac(k, label_peer, hs, out->proof);
	hs->state = RMP_AUTH_DONE;
	return 0;
}

int rmp_auth_coord_verify(const rmp_auth_key *k, struct rmp_auth_handshake *hs,
			  const struct rmp_wire_auth_proof *in)
{
	uint8_t want[RMP_WIRE_MAC_LEN];

	if (hs->state != RMP_AUTH_CHALLENGED) {
		hs->state = RMP_AUTH_FAILED;
		return -EINVAL;
	}
	transcript_mac(k, label_peer, hs, want);
	int bad = crypto_verify_32(want, in->proof);
	sodium_memzero(want, sizeof(want));
	/* One attempt per connection: a failed proof ends the handshake. */
	hs->state = bad ? RMP_AUTH_FAILED : RMP_AUTH_DONE;
	return bad ? -EACCES : 0;
}

static void token_mac(const rmp_auth_key *k, const uint8_t body[RMP_WIRE_TOKEN_BODY_LEN],
		      uint8_t mac[crypto_auth_hmacsha256_BYTES])
{
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, k->bytes, k->len);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)label_token, sizeof(label_token));
	crypto_auth_hmacsha256_update(&st, body, RMP_WIRE_TOKEN_BODY_LEN);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
}

int rmp_auth_token_make(const rmp_auth_key *k, const struct rmp_wire_token *t,
			uint8_t out[RMP_AUTH_TOKEN_LEN])
{
	uint8_t mac[crypto_auth_hmacsha256_BYTES];

	if (t->kind != RMP_TOKEN_METADATA && t->kind != RMP_TOKEN_DONOR)
		return -EINVAL;
	rmp_wire_token_put(t, out);
	token_mac(k, out, mac);
	memcpy(out + RMP_WIRE_TOKEN_BODY_LEN, mac, RMP_AUTH_TOKEN_MAC_LEN);
	return 0;
}

int rmp_auth_token_verify(const rmp_auth_key *k, const void *pd, size_t len,
			  enum rmp_wire_token_kind kind, uint32_t target_id, uint64_t now_ms,
			  struct rmp_wire_token *out)
{
	const uint8_t *b = pd;
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	struct rmp_wire_token t;

	if (!pd || len < RMP_AUTH_TOKEN_LEN || rmp_wire_token_get(b, &t) < 0)
		return -EBADMSG;
	/* The MAC first: nothing in an unauthenticated body is worth acting
	 * on, not even to say which field was wrong. */
	token_mac(k, b, mac);
	int bad = sodium_memcmp(mac, b + RMP_WIRE_TOKEN_BODY_LEN, RMP_AUTH_TOKEN_MAC_LEN);
	sodium_memzero(mac, sizeof(mac));
	if (bad)
		return -EACCES;
	if (t.kind != kind || t.target_id != target_id)
		return -EACCES;
	if (t.expires_ms <= now_ms)
		return -EKEYEXPIRED;
	if (out)
		*out = t;
	return 0;
}
