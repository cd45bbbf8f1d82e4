/*
 * fuzz_scram_client: SCRAM-SHA-256 as pgpulse's client side runs it towards
 * PostgreSQL (src/scram.c: scram_client_final reads server-first,
 * scram_client_verify reads server-final).
 *
 * Input: one mode byte, then server-first NUL server-final. The client nonce
 * is fixed ("fuzzNonce"), so an input can extend it the way a server must.
 * An even mode byte logs in with keys (as after a client's own SCRAM login:
 * no Hi() at all); an odd one with the password "pencil", unless the input
 * asks for more than 64 iterations (then keys again: a slow input is no
 * finding, SCRAM_MAX_ITERATIONS is the daemon's bound for that).
 * Asserts beyond "no crash":
 *   - client-final fits its buffer and reads "c=biws,r=<the server's nonce>,p=...";
 *   - server-final is accepted only when its v= is HMAC(ServerKey, AuthMessage),
 *     recomputed here with OpenSSL from the messages themselves (keys mode);
 *   - a server-final is accepted at most once per exchange.
 */
#include "scram.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static const uint8_t g_client_key[SCRAM_KEY_LEN] = "fuzz client key, 32 bytes long!";
static const uint8_t g_server_key[SCRAM_KEY_LEN] = "fuzz server key, 32 bytes long!";

/* would the password path run Hi() with a count above 64? */
static bool asks_many_iterations(const char *msg, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++) {
		if (msg[i] != 'i' || msg[i + 1] != '=')
			continue;
		unsigned long v = 0;
		for (size_t k = i + 2; k < len && msg[k] >= '0' && msg[k] <= '9'; k++)
			if ((v = v * 10 + (unsigned long)(msg[k] - '0')) > 64)
				return true;
	}
	return false;
}

/* the v= a server knowing g_server_key sends for this exchange */
static void expected_signature(const char *first_bare, const char *server_first, size_t sf_len,
			       const char *final, uint8_t out[SCRAM_KEY_LEN])
{
	size_t cfwp = (size_t)(strstr(final, ",p=") - final);
	size_t fb = strlen(first_bare), n = fb + 1 + sf_len + 1 + cfwp, got = 0;
	char *auth = malloc(n);
	memcpy(auth, first_bare, fb);
	auth[fb] = ',';
	memcpy(auth + fb + 1, server_first, sf_len);
	auth[fb + 1 + sf_len] = ',';
	memcpy(auth + fb + 2 + sf_len, final, cfwp);
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, g_server_key, SCRAM_KEY_LEN,
		       (const unsigned char *)auth, n, out, SCRAM_KEY_LEN, &got) ||
	    got != SCRAM_KEY_LEN)
		abort();
	free(auth);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct scram_client cl = { 0 };
	char first[SCRAM_MAX_MESSAGE_LEN], final[SCRAM_MAX_MESSAGE_LEN], err[256];

	if (!ready) {
		scram_test_set_nonce("fuzzNonce");
		ready = true;
	}
	if (size == 0)
		return 0;
	size_t len = size - 1;
	char *msg = malloc(len ? len : 1); /* exactly the input: no NUL after it */
	memcpy(msg, data + 1, len);
	const char *nul = memchr(msg, '\0', len);
	size_t sf_len = nul ? (size_t)(nul - msg) : len;

	bool with_keys = data[0] % 2 == 0 || asks_many_iterations(msg, sf_len);
	bool started = with_keys ? scram_client_first_keys(&cl, g_client_key, g_server_key, first, sizeof(first))
				 : scram_client_first(&cl, "pencil", NULL, first, sizeof(first));
	assert(started && strcmp(first, "n,,n=,r=fuzzNonce") == 0);

	if (scram_client_final(&cl, msg, sf_len, final, sizeof(final), err, sizeof(err))) {
		size_t flen = strnlen(final, sizeof(final));
		assert(flen < sizeof(final));
		assert(strncmp(final, "c=biws,r=fuzzNonce", 18) == 0);
		const char *proof = strstr(final, ",p=");
		assert(proof && strlen(proof) == 3 + 44);
		if (nul) {
			const char *sfinal = nul + 1;
			size_t sfinal_len = len - sf_len - 1;
			bool trusted = scram_client_verify(&cl, sfinal, sfinal_len, err, sizeof(err));
			if (trusted && with_keys) {
				uint8_t want[SCRAM_KEY_LEN], got[SCRAM_KEY_LEN];
				expected_signature(first + 3, msg, sf_len, final, want);
				assert(sfinal_len >= 2 + 44 && strncmp(sfinal, "v=", 2) == 0);
				assert(scram_b64_decode(sfinal + 2, 44, got, sizeof(got)) == SCRAM_KEY_LEN);
				assert(memcmp(got, want, SCRAM_KEY_LEN) == 0);
			}
			assert(!scram_client_verify(&cl, sfinal, sfinal_len, err, sizeof(err)));
		}
	}
	scram_client_reset(&cl);
	free(msg);
	return 0;
}
