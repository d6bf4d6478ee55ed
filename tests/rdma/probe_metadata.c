/*
 * probe_metadata.c - the provisioning test's probe of a pool's metadata
 * endpoint (tests/rdma/provision.sh): an rdma_cm connect with a token
 * that must be refused.
 *
 *   probe_metadata COORDINATOR SECRET_FILE NAME MODE
 *     MODE  none          no private data
 *           garbage       random bytes
 *           wrong-pool    well signed, for another pool
 *           expired       well signed, expired a second ago
 *           wrong-secret  signed with another secret
 *           old-generation  well signed, under the coordinator generation
 *                         before this one (as a client that has not
 *                         reconnected since a restart would mint it)
 * Exit 0 when the coordinator refused the connection (one line on
 * stdout says how), 1 when it accepted it or the probe could not run
 * (tests/check.h: one "probe_metadata: FAILED: ..." line), 2 for bad
 * usage.
 *
 * It forges tokens, so it needs librmpool's internals (the pool id, the
 * client's key, a connect with arbitrary private data): a test may reach
 * them, the operator's CLI may not (it was `rmpool probe-metadata`).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "check.h"
#include "client_internal.h"
#include "clock.h"
#include "secret.h"

#define RDMA_TIMEOUT_MS 10000u

static void require_ok(int rc, const char *what, const rmp_client *c)
{
	if (rc)
		check_die("%s: %s%s%s", what, rmp_strerror(rc), *rmp_last_error(c) ? ": " : "", rmp_last_error(c));
}

/* The token of mode in tok (len: its length, 0 for none). 0, -EINVAL
 * for an unknown mode, or an error of the token's making. */
static int forge(const char *mode, const rmp_pool *p, const rmp_client *c, uint8_t *tok, uint8_t *len)
{
	uint64_t now_ms = rmp_wall_ms();
	struct rmp_wire_token t = { .kind = RMP_TOKEN_METADATA, .target_id = p->pool_id,
				    .client_id = rmp_client_id(c), .expires_ms = now_ms + 60000,
				    .generation = (uint16_t)c->ctl.generation };
	const rmp_auth_key *key = rmp_client_key(c);

	*len = RMP_AUTH_TOKEN_LEN;
	if (strcmp(mode, "none") == 0) {
		*len = 0;
		return 0;
	}
	if (strcmp(mode, "garbage") == 0) {
		for (size_t i = 0; i < RMP_AUTH_TOKEN_LEN; i++)
			tok[i] = (uint8_t)(rand() ^ (int)i);
		return 0;
	}
	if (strcmp(mode, "wrong-pool") == 0) {
		t.target_id = p->pool_id + 1000;
		return rmp_auth_token_make(key, &t, tok);
	}
	if (strcmp(mode, "expired") == 0) {
		t.expires_ms = now_ms - 1000;
		return rmp_auth_token_make(key, &t, tok);
	}
	if (strcmp(mode, "old-generation") == 0) {
		t.generation = (uint16_t)(c->ctl.generation - 1);
		return rmp_auth_token_make(key, &t, tok);
	}
	if (strcmp(mode, "wrong-secret") == 0) {
		rmp_auth_key *other = NULL;
		char err[128];
		int rc = rmp_auth_key_create("not-the-secret-of-this-cluster", &other, err, sizeof(err));
		if (!rc)
			rc = rmp_auth_token_make(other, &t, tok);
		rmp_auth_key_destroy(other);
		return rc;
	}
	return -EINVAL;
}

int main(int argc, char **argv)
{
	uint8_t tok[RMP_AUTH_TOKEN_LEN];
	uint8_t len;
	char *secret = NULL, err[256];
	rmp_client *c;
	rmp_pool *p;

	if (argc != 5) {
		fprintf(stderr, "usage: probe_metadata COORDINATOR SECRET_FILE NAME "
				"none|garbage|wrong-pool|expired|wrong-secret|old-generation\n");
		return 2;
	}
	check_init("probe_metadata", NULL, 0);
	const char *coord = argv[1], *name = argv[3], *mode = argv[4];
	if (rmp_secret_read_file_dup(argv[2], &secret, NULL, err, sizeof(err)) != 0)
		check_die("%s", err);
	int rc = rmp_connect(coord, secret, &c);
	rmp_secret_free(secret);
	require_ok(rc, "connect", NULL);
	require_ok(rmp_pool_open(c, name, 0, &p), "attach", c);
	rc = forge(mode, p, c, tok, &len);
	if (rc == -EINVAL) {
		fprintf(stderr, "probe_metadata: MODE is none, garbage, wrong-pool, expired or wrong-secret\n");
		return 2;
	}
	require_ok(rc, "cannot make the token", c);
	rc = rmp_meta_try_connect(p, len ? tok : NULL, len, RDMA_TIMEOUT_MS);
	if (rc == 0)
		check_fail("%s: the coordinator ACCEPTED a connection with token '%s'", name, mode);
	else
		printf("probe-metadata %s %s: refused (%s)\n", name, mode, rmp_strerror(rc));
	rmp_pool_close(p);
	rmp_disconnect(c);
	return check_failures() ? 1 : 0;
}
