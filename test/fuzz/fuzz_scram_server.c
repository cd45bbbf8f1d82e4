/*
 * fuzz_scram_server: SCRAM-SHA-256 as pgpulse's server side runs it towards
 * a client that is logging in (src/scram.c: scram_server_first, _final).
 *
 * The server nonce and the salt are fixed (the scram test hooks) and the
 * verifier is for the password "pencil" with 2 iterations, so an input can
 * carry a client-final that matches its client-first and executions stay
 * cheap. The first byte picks what the rest is:
 *
 *   0 mod 3  client-first NUL client-final, straight to the server. If the
 *            server accepts, the ClientKey it recovered from the proof must
 *            be the real one (SHA-256 leaves no other way to match
 *            StoredKey); whatever it wrote must fit the buffer.
 *   1 mod 3  a password: pgpulse's own client logs in with it. The server
 *            must accept exactly when it is "pencil", and then the client
 *            must accept the server's signature.
 *   2 mod 3  base64 (scram_b64_decode): what decodes re-encodes to
 *            something that decodes to the same bytes.
 */
#include "saslprep.h"
#include "scram.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PASSWORD "pencil"

static struct scram_secret g_secret;
static uint8_t g_client_key[SCRAM_KEY_LEN]; /* ClientKey for PASSWORD */

/* a whole exchange between our client (with password) and our server */
static bool log_in(const char *password, struct scram_server *sv, bool *client_trusts_server)
{
	struct scram_client cl = { 0 };
	char first[SCRAM_MAX_MESSAGE_LEN], reply[SCRAM_MAX_MESSAGE_LEN];
	char final[SCRAM_MAX_MESSAGE_LEN], done[SCRAM_MAX_MESSAGE_LEN], err[256];
	bool ok = scram_client_first(&cl, password, NULL, first, sizeof(first)) &&
		  scram_server_first(sv, &g_secret, first, strlen(first), reply, sizeof(reply), err,
				     sizeof(err)) &&
		  scram_client_final(&cl, reply, strlen(reply), final, sizeof(final), err, sizeof(err));
	assert(ok); /* nothing above depends on the password being right */
	bool accepted = scram_server_final(sv, final, strlen(final), done, sizeof(done), err, sizeof(err));
	*client_trusts_server = accepted && scram_client_verify(&cl, done, strlen(done), err, sizeof(err));
	scram_client_reset(&cl);
	return accepted;
}

static void setup(void)
{
	static const uint8_t salt[16] = "fuzz-salt-16byte";
	struct scram_server sv = { 0 };
	bool trusted;

	scram_test_set_nonce("fuzzNonce");
	scram_test_set_salt(salt, sizeof(salt));
	if (!scram_secret_from_password(PASSWORD, 2, &g_secret) || !log_in(PASSWORD, &sv, &trusted) ||
	    !trusted || !sv.have_client_key)
		abort();
	memcpy(g_client_key, sv.client_key, SCRAM_KEY_LEN);
	scram_server_reset(&sv);
}

static void feed_server(const char *msg, size_t len)
{
	struct scram_server sv = { 0 };
	char out[SCRAM_MAX_MESSAGE_LEN], err[256];
	const char *nul = memchr(msg, '\0', len);
	size_t first_len = nul ? (size_t)(nul - msg) : len;

	if (scram_server_first(&sv, &g_secret, msg, first_len, out, sizeof(out), err, sizeof(err))) {
		assert(strnlen(out, sizeof(out)) < sizeof(out) && strncmp(out, "r=", 2) == 0);
		if (nul) {
			const char *final = nul + 1;
			size_t final_len = len - first_len - 1;
			bool accepted = scram_server_final(&sv, final, final_len, out, sizeof(out), err,
							   sizeof(err));
			if (accepted) {
				assert(sv.have_client_key);
				assert(memcmp(sv.client_key, g_client_key, SCRAM_KEY_LEN) == 0);
				assert(strncmp(out, "v=", 2) == 0 && strlen(out) == 2 + 44);
			}
		}
	}
	scram_server_reset(&sv);
}

static void log_in_with(const char *bytes, size_t len)
{
	char password[128];
	struct scram_server sv = { 0 };
	bool trusted;

	if (len >= sizeof(password))
		len = sizeof(password) - 1;
	memcpy(password, bytes, len);
	password[len] = '\0'; /* an inner NUL just shortens it */
	bool accepted = log_in(password, &sv, &trusted);
	/* right means the same after SASLprep, as in PostgreSQL: "\u00ADpencil" is "pencil" */
	char *prepared = saslprep_password(password);
	assert(prepared);
	assert(accepted == (strcmp(prepared, PASSWORD) == 0));
	saslprep_free(prepared);
	assert(trusted == accepted);
	scram_server_reset(&sv);
}

static void base64_round_trip(const char *text, size_t len)
{
	uint8_t bytes[256], again[256];
	char encoded[4 * sizeof(bytes) / 3 + 8];

	int n = scram_b64_decode(text, len, bytes, sizeof(bytes));
	if (n < 0)
		return;
	assert((size_t)n <= len / 4 * 3);
	size_t elen = scram_b64_encode(bytes, (size_t)n, encoded, sizeof(encoded));
	assert(elen == len); /* padding is strict, so the length is too */
	assert(scram_b64_decode(encoded, elen, again, sizeof(again)) == n);
	assert(memcmp(bytes, again, (size_t)n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		setup();
		ready = true;
	}
	if (size == 0)
		return 0;
	/* a copy of exactly the message's size: no NUL after it to lean on */
	size_t len = size - 1;
	char *msg = malloc(len ? len : 1);
	memcpy(msg, data + 1, len);
	switch (data[0] % 3) {
	case 0:
		feed_server(msg, len);
		break;
	case 1:
		log_in_with(msg, len);
		break;
	default:
		base64_round_trip(msg, len);
		break;
	}
	free(msg);
	return 0;
}
