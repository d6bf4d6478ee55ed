/* test_auth.c - the handshake succeeds only when both sides hold the same
 * secret, fails on any tampered byte, refuses replays and reflections;
 * tokens verify only for their target, before expiry, untampered.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

#define SECRET "correct horse battery staple"

static rmp_auth_key *key(const char *secret)
{
	rmp_auth_key *k = NULL;
	char err[128];
	cr_assert_eq(rmp_auth_key_create(secret, &k, err, sizeof(err)), 0, "%s", err);
	return k;
}

struct run {
	struct rmp_auth_handshake peer, coord;
	struct rmp_wire_hello hello;
	struct rmp_wire_challenge chal;
	struct rmp_wire_auth_proof proof;
};

/* The whole exchange; returns the first failure. */
static int handshake(const rmp_auth_key *peer_key, const rmp_auth_key *coord_key, struct run *r)
{
	int rc;

	memset(r, 0, sizeof(*r));
	rc = rmp_auth_peer_hello(&r->peer, RMP_ROLE_CLIENT, "bench@host-1", &r->hello);
	if (rc)
		return rc;
	rc = rmp_auth_coord_challenge(coord_key, &r->coord, &r->hello, &r->chal);
	if (rc)
		return rc;
	rc = rmp_auth_peer_prove(peer_key, &r->peer, &r->chal, &r->proof);
	if (rc)
		return rc;
	return rmp_auth_coord_verify(coord_key, &r->coord, &r->proof);
}

Test(auth, same_secret_succeeds)
{
	rmp_auth_key *k = key(SECRET);
	struct run r;

	cr_assert_eq(handshake(k, k, &r), 0);
	cr_assert_eq(r.peer.state, RMP_AUTH_DONE);
	cr_assert_eq(r.coord.state, RMP_AUTH_DONE);
	cr_assert_str_eq(r.coord.ident, "bench@host-1");
	rmp_auth_key_destroy(k);
}

Test(auth, peer_detects_impostor_coordinator)
{
	rmp_auth_key *good = key(SECRET), *bad = key(SECRET "!");
	struct run r;

	/* the coordinator's proof fails first: the peer never sends its own */
	cr_assert_eq(handshake(good, bad, &r), -EACCES);
	cr_assert_eq(r.peer.state, RMP_AUTH_FAILED);
	uint8_t zero[RMP_WIRE_MAC_LEN] = {0};
	cr_assert(memcmp(r.proof.proof, zero, sizeof(zero)) == 0);
	rmp_auth_key_destroy(good);
	rmp_auth_key_destroy(bad);
}

Test(auth, coordinator_rejects_peer_without_secret)
{
	rmp_auth_key *good = key(SECRET);
	struct run r;

	cr_assert_eq(handshake(good, good, &r), 0);
	/* a peer that forwards the challenge but cannot compute the proof */
	struct rmp_auth_handshake coord = {0};
	struct rmp_wire_challenge chal;
	cr_assert_eq(rmp_auth_coord_challenge(good, &coord, &r.hello, &chal), 0);
	struct rmp_wire_auth_proof guess;
	memset(&guess, 0, sizeof(guess));
	cr_assert_eq(rmp_auth_coord_verify(good, &coord, &guess), -EACCES);
	cr_assert_eq(coord.state, RMP_AUTH_FAILED);
	/* one attempt per connection, even with the right proof afterwards */
	cr_assert_eq(rmp_auth_coord_verify(good, &coord, &r.proof), -EINVAL);
	rmp_auth_key_destroy(good);
}

Test(auth, any_tampered_byte_fails)
{
	rmp_auth_key *k = key(SECRET);

	for (size_t i = 0; i < RMP_WIRE_MAC_LEN; i++) {
		struct run r;
		memset(&r, 0, sizeof(r));
		cr_assert_eq(rmp_auth_peer_hello(&r.peer, RMP_ROLE_AGENT, "agent", &r.hello), 0);
		cr_assert_eq(rmp_auth_coord_challenge(k, &r.coord, &r.hello, &r.chal), 0);
		struct rmp_wire_challenge bad = r.chal;
		bad.proof[i] ^= 0x01;
		struct rmp_auth_handshake peer_copy = r.peer;
		cr_assert_eq(rmp_auth_peer_prove(k, &peer_copy, &bad, &r.proof), -EACCES);
		bad = r.chal;
		bad.nonce[i] ^= 0x80; /* a changed nonce breaks the proof too */
		peer_copy = r.peer;
		cr_assert_eq(rmp_auth_peer_prove(k, &peer_copy, &bad, &r.proof), -EACCES);
		cr_assert_eq(rmp_auth_peer_prove(k, &r.peer, &r.chal, &r.proof), 0);
		r.proof.proof[i] ^= 0x40;
		cr_assert_eq(rmp_auth_coord_verify(k, &r.coord, &r.proof), -EACCES);
	}
	rmp_auth_key_destroy(k);
}

/* What the peer said it was is covered: a man in the middle cannot turn a
 * client's HELLO into an agent's. */
Test(auth, role_and_ident_are_bound)
{
	rmp_auth_key *k = key(SECRET);
	struct run r;
	memset(&r, 0, sizeof(r));

	cr_assert_eq(rmp_auth_peer_hello(&r.peer, RMP_ROLE_CLIENT, "alice", &r.hello), 0);
	struct rmp_wire_hello forged = r.hello;
	forged.role = RMP_ROLE_AGENT;
	cr_assert_eq(rmp_auth_coord_challenge(k, &r.coord, &forged, &r.chal), 0);
	cr_assert_eq(rmp_auth_peer_prove(k, &r.peer, &r.chal, &r.proof), -EACCES);

	memset(&r, 0, sizeof(r));
	cr_assert_eq(rmp_auth_peer_hello(&r.peer, RMP_ROLE_CLIENT, "alice", &r.hello), 0);
	forged = r.hello;
	strcpy(forged.ident, "mallory");
	cr_assert_eq(rmp_auth_coord_challenge(k, &r.coord, &forged, &r.chal), 0);
	cr_assert_eq(rmp_auth_peer_prove(k, &r.peer, &r.chal, &r.proof), -EACCES);
	rmp_auth_key_destroy(k);
}

/* A recorded HELLO and AUTH_PROOF replayed on a new connection: the new
 * coordinator nonce makes the old proof worthless. */
Test(auth, replay_fails)
{
	rmp_auth_key *k = key(SECRET);
	struct run r;

	cr_assert_eq(handshake(k, k, &r), 0);
	struct rmp_auth_handshake coord2 = {0};
	struct rmp_wire_challenge chal2;
	cr_assert_eq(rmp_auth_coord_challenge(k, &coord2, &r.hello, &chal2), 0);
	cr_assert(memcmp(chal2.nonce, r.chal.nonce, RMP_WIRE_NONCE_LEN) != 0);
	cr_assert_eq(rmp_auth_coord_verify(k, &coord2, &r.proof), -EACCES);
	rmp_auth_key_destroy(k);
}

/* The coordinator's own proof sent back as the peer's proof fails: the
 * two directions use different labels. */
Test(auth, reflection_fails)
{
	rmp_auth_key *k = key(SECRET);
	struct run r;
	memset(&r, 0, sizeof(r));

	cr_assert_eq(rmp_auth_peer_hello(&r.peer, RMP_ROLE_CLIENT, "x", &r.hello), 0);
	cr_assert_eq(rmp_auth_coord_challenge(k, &r.coord, &r.hello, &r.chal), 0);
	struct rmp_wire_auth_proof reflected;
	memcpy(reflected.proof, r.chal.proof, RMP_WIRE_MAC_LEN);
	cr_assert_eq(rmp_auth_coord_verify(k, &r.coord, &reflected), -EACCES);
	rmp_auth_key_destroy(k);
}

Test(auth, nonces_are_fresh)
{
	struct rmp_auth_handshake a, b;
	struct rmp_wire_hello ha, hb;

	cr_assert_eq(rmp_auth_peer_hello(&a, RMP_ROLE_DONOR, "d", &ha), 0);
	cr_assert_eq(rmp_auth_peer_hello(&b, RMP_ROLE_DONOR, "d", &hb), 0);
	cr_assert(memcmp(ha.nonce, hb.nonce, RMP_WIRE_NONCE_LEN) != 0);
}

Test(auth, out_of_order_calls)
{
	rmp_auth_key *k = key(SECRET);
	struct rmp_auth_handshake hs = {0};
	struct rmp_wire_challenge chal;
	struct rmp_wire_auth_proof proof;
	struct rmp_wire_hello hello;

	memset(&chal, 0, sizeof(chal));
	memset(&proof, 0, sizeof(proof));
	cr_assert_eq(rmp_auth_peer_prove(k, &hs, &chal, &proof), -EINVAL, "no HELLO sent");
	cr_assert_eq(rmp_auth_coord_verify(k, &hs, &proof), -EINVAL, "no challenge sent");
	cr_assert_eq(rmp_auth_peer_hello(&hs, (enum rmp_wire_role)0, "x", &hello), -EINVAL);
	char longname[RMP_WIRE_IDENT_MAX + 2];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	cr_assert_eq(rmp_auth_peer_hello(&hs, RMP_ROLE_CLIENT, longname, &hello), -EINVAL);
	rmp_auth_key_destroy(k);
}

Test(auth, secret_rules)
{
	rmp_auth_key *k = NULL;
	char err[160];

	cr_assert_eq(rmp_auth_key_create("short", &k, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "5 bytes"), "%s", err);
	cr_assert(strstr(err, "[16, 1024]"), "%s", err);
	cr_assert_null(strstr(err, "short"), "the secret must not be echoed: %s", err);
	cr_assert_eq(rmp_auth_key_create("", &k, err, sizeof(err)), -EINVAL);
	char *huge = malloc(RMP_AUTH_SECRET_MAX + 2);
	memset(huge, 's', RMP_AUTH_SECRET_MAX + 1);
	huge[RMP_AUTH_SECRET_MAX + 1] = '\0';
	cr_assert_eq(rmp_auth_key_create(huge, &k, err, sizeof(err)), -EINVAL);
	huge[RMP_AUTH_SECRET_MAX] = '\0';
	cr_assert_eq(rmp_auth_key_create(huge, &k, err, sizeof(err)), 0);
	rmp_auth_key_destroy(k);
	free(huge);

	unsetenv(RMP_AUTH_SECRET_ENV);
	cr_assert_eq(rmp_auth_key_create(NULL, &k, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, RMP_AUTH_SECRET_ENV), "%s", err);
	setenv(RMP_AUTH_SECRET_ENV, "tiny", 1);
	cr_assert_eq(rmp_auth_key_create(NULL, &k, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, RMP_AUTH_SECRET_ENV), "%s", err);
	setenv(RMP_AUTH_SECRET_ENV, SECRET, 1);
	cr_assert_eq(rmp_auth_key_create(NULL, &k, err, sizeof(err)), 0);
	/* the env key and the literal key agree */
	rmp_auth_key *lit = key(SECRET);
	struct run r;
	cr_assert_eq(handshake(k, lit, &r), 0);
	rmp_auth_key_destroy(lit);
	rmp_auth_key_destroy(k);
	rmp_auth_key_destroy(NULL);
}

static const struct rmp_wire_token tok = {
	.kind = RMP_TOKEN_DONOR,
	.target_id = 17,
	.client_id = 0xc0ffee,
	.expires_ms = 1000000,
};

Test(auth, token_fits_private_data)
{
	/* RC connect requests carry 56 bytes of private data */
	cr_assert_leq(RMP_AUTH_TOKEN_LEN, 56);
}

Test(auth, token_round_trip)
{
	rmp_auth_key *k = key(SECRET);
	uint8_t pd[56] = {0}; /* padded, as InfiniBand delivers it */
	struct rmp_wire_token got;

	cr_assert_eq(rmp_auth_token_make(k, &tok, pd), 0);
	cr_assert_eq(rmp_auth_token_verify(k, pd, sizeof(pd), RMP_TOKEN_DONOR, 17, 999999, &got), 0);
	cr_assert_eq(got.client_id, 0xc0ffee);
	cr_assert_eq(rmp_auth_token_verify(k, pd, RMP_AUTH_TOKEN_LEN, RMP_TOKEN_DONOR, 17, 0, NULL),
		     0);
	rmp_auth_key_destroy(k);
}

Test(auth, token_rejections)
{
	rmp_auth_key *k = key(SECRET), *other = key(SECRET "x");
	uint8_t pd[RMP_AUTH_TOKEN_LEN];

	cr_assert_eq(rmp_auth_token_make(k, &tok, pd), 0);
	/* short private data */
	cr_assert_eq(rmp_auth_token_verify(k, pd, RMP_AUTH_TOKEN_LEN - 1, RMP_TOKEN_DONOR, 17, 0,
					   NULL),
		     -EBADMSG);
	cr_assert_eq(rmp_auth_token_verify(k, NULL, 0, RMP_TOKEN_DONOR, 17, 0, NULL), -EBADMSG);
	/* for another donor, or for the coordinator */
	cr_assert_eq(rmp_auth_token_verify(k, pd, sizeof(pd), RMP_TOKEN_DONOR, 18, 0, NULL),
		     -EACCES);
	cr_assert_eq(rmp_auth_token_verify(k, pd, sizeof(pd), RMP_TOKEN_METADATA, 17, 0, NULL),
		     -EACCES);
	/* expired: at and after expires_ms */
	cr_assert_eq(rmp_auth_token_verify(k, pd, sizeof(pd), RMP_TOKEN_DONOR, 17, 1000000, NULL),
		     -EKEYEXPIRED);
	/* another secret */
	cr_assert_eq(rmp_auth_token_verify(other, pd, sizeof(pd), RMP_TOKEN_DONOR, 17, 0, NULL),
		     -EACCES);
	/* every byte matters: body bits that still parse fail the MAC */
	for (size_t i = 0; i < RMP_AUTH_TOKEN_LEN; i++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			uint8_t bad[RMP_AUTH_TOKEN_LEN];
			memcpy(bad, pd, sizeof(bad));
			bad[i] ^= (uint8_t)(1u << bit);
			int rc = rmp_auth_token_verify(k, bad, sizeof(bad), RMP_TOKEN_DONOR, 17, 0,
						       NULL);
			cr_assert(rc == -EACCES || rc == -EBADMSG, "byte %zu bit %u: %d", i, bit,
				  rc);
		}
	}
	struct rmp_wire_token bad_kind = tok;
	bad_kind.kind = 9;
	cr_assert_eq(rmp_auth_token_make(k, &bad_kind, pd), -EINVAL);
	rmp_auth_key_destroy(k);
	rmp_auth_key_destroy(other);
}

Test(auth, generation_fencing)
{
	cr_assert_not(rmp_auth_generation_older(5, 5));
	cr_assert_not(rmp_auth_generation_older(6, 5), "a newer coordinator's token is accepted");
	cr_assert(rmp_auth_generation_older(4, 5));
	cr_assert(rmp_auth_generation_older(0xffff, 0x10000), "wraps: 65535 is older than 65536");
	cr_assert_not(rmp_auth_generation_older(0, 0xffff), "wraps: 65536 is newer than 65535");
}
