/*
 * scram: SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, for
 * clients logging into pgpulse and for pgpulse logging into PostgreSQL.
 *
 * The idea: both sides build the same AuthMessage
 *     client-first-bare "," server-first "," client-final-without-proof
 * and prove what they know with HMACs over it. A verifier keeps only
 * StoredKey = H(ClientKey) and ServerKey; the client's proof is
 * ClientKey XOR HMAC(StoredKey, AuthMessage), so the server recovers
 * ClientKey from it and checks its hash. That recovered ClientKey is what
 * lets pgpulse log into PostgreSQL afterwards without ever knowing the
 * password (scram_client_first_keys).
 *
 * Hi() (PBKDF2) is the one costly step, and it runs on the event loop: it
 * is capped at SCRAM_MAX_ITERATIONS, the keys pgpulse derives to log in to
 * PostgreSQL are kept in a scram_key_cache (a role's salt never changes
 * between connections), and a mock verifier needs none.
 *
 * Every message is untrusted network data: its length comes from the caller
 * (no NUL terminator is assumed), attributes are read in the order the RFC
 * fixes through one bounded cursor, and nothing is copied without a bound.
 *
 * SASLprep: every plaintext password becomes keys in salt_password(), which
 * hashes what saslprep_password() makes of it: the SASLprepped password, or
 * its raw bytes when it is not UTF-8 or SASLprep refuses it, which is what
 * PostgreSQL and libpq hash. Caches remember the password as given; the
 * same password always prepares the same way.
 */
#include "scram.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "saslprep.h"

#define SECRET_PREFIX      "SCRAM-SHA-256$"
#define NONCE_RANDOM_BYTES 18 /* 24 base64 characters, as PostgreSQL uses */
#define SALT_RANDOM_BYTES  16
#define MAX_SALT_LEN       ((int)sizeof(((struct scram_secret *)0)->salt))
/* the combined nonce a server may send us; PostgreSQL's is 48 characters */
#define MAX_COMBINED_NONCE 255
/* base64 of SHA-256 output: 44 characters */
#define KEY_B64_LEN (4 * ((SCRAM_KEY_LEN + 2) / 3))

/* ---- test hooks ---- */

static char test_nonce[128];
static uint8_t test_salt[64];
static size_t test_salt_len;
static char test_client_user[128];
static unsigned long hi_calls;

void scram_test_set_nonce(const char *nonce)
{
	test_nonce[0] = '\0';
	if (nonce)
		snprintf(test_nonce, sizeof(test_nonce), "%s", nonce);
}

void scram_test_set_salt(const uint8_t *salt, size_t len)
{
	test_salt_len = 0;
	if (salt && len > 0 && len <= sizeof(test_salt)) {
		memcpy(test_salt, salt, len);
		test_salt_len = len;
	}
}

void scram_test_set_client_user(const char *user)
{
	test_client_user[0] = '\0';
	if (user)
		snprintf(test_client_user, sizeof(test_client_user), "%s", user);
}

unsigned long scram_test_hi_calls(void)
{
	return hi_calls;
}

/* ---- small helpers ---- */

static bool fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* write the reason into err (when the caller gave one) and return false */
static bool fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return false;
}

static char *copy_bytes(const char *p, size_t len)
{
	char *s = malloc(len + 1);
	if (s) {
		memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

/* printable ASCII except ',', the RFC's "printable" production */
static bool nonce_is_printable(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch < 0x21 || ch > 0x7e || ch == ',')
			return false;
	}
	return true;
}

/*
 * A NUL byte would silently shorten the copies we keep as C strings and
 * make both sides hash different AuthMessages, so reject it up front.
 */
static bool message_is_sane(const char *msg, size_t len, char *err, size_t errlen)
{
	if (!msg || len == 0)
		return fail(err, errlen, "empty SCRAM message");
	if (len > SCRAM_MAX_MESSAGE_LEN)
		return fail(err, errlen, "SCRAM message too long (%zu bytes)", len);
	if (memchr(msg, '\0', len))
		return fail(err, errlen, "SCRAM message contains a NUL byte");
	return true;
}

/* decimal 1..INT_MAX, digits only */
static bool parse_positive_int(const char *p, size_t len, int *out)
{
	long long v = 0;
	if (len == 0 || len > 10)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	if (v <= 0 || v > INT_MAX)
		return false;
	*out = (int)v;
	return true;
}

/* ---- attribute cursor: "a=value,b=value,..." without NUL termination ---- */

struct cursor {
	const char *p;
	const char *end;
};

static bool cursor_at_end(const struct cursor *c)
{
	return c->p >= c->end;
}

/* true when the next attribute is named `name` */
static bool cursor_peek_attr(const struct cursor *c, char name)
{
	return c->end - c->p >= 2 && c->p[0] == name && c->p[1] == '=';
}

static bool cursor_take_comma(struct cursor *c)
{
	if (cursor_at_end(c) || *c->p != ',')
		return false;
	c->p++;
	return true;
}

/* read "name=value", leaving the cursor on the ',' after it or at the end */
static bool cursor_read_attr(struct cursor *c, char name, const char **val, size_t *vlen)
{
	if (!cursor_peek_attr(c, name))
		return false;
	c->p += 2;
	const char *comma = memchr(c->p, ',', (size_t)(c->end - c->p));
	const char *stop = comma ? comma : c->end;
	*val = c->p;
	*vlen = (size_t)(stop - c->p);
	c->p = stop;
	return true;
}

/* an extension attribute: one ASCII letter, '=', anything up to ',' */
static bool cursor_skip_any_attr(struct cursor *c)
{
	const char *val;
	size_t vlen;
	if (c->end - c->p < 2)
		return false;
	char name = c->p[0];
	if (!((name >= 'a' && name <= 'z') || (name >= 'A' && name <= 'Z')))
		return false;
	return cursor_read_attr(c, name, &val, &vlen);
}

/* optional trailing extensions: ("," attr)* to the end */
static bool cursor_skip_extensions(struct cursor *c)
{
	while (!cursor_at_end(c))
		if (!cursor_take_comma(c) || !cursor_skip_any_attr(c))
			return false;
	return true;
}

/* ---- base64 ---- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t scram_b64_encode(const uint8_t *in, size_t len, char *out, size_t outlen)
{
	if (len > (SIZE_MAX / 4 - 1) * 3)
		return 0;
	size_t need = 4 * ((len + 2) / 3);
	if (!out || outlen < need + 1) {
		if (out && outlen > 0)
			out[0] = '\0';
		return 0;
	}
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

int scram_b64_decode(const char *in, size_t len, uint8_t *out, size_t outlen)
{
	if (len % 4 != 0 || len / 4 * 3 > INT_MAX)
		return -1;
	if (len == 0)
		return 0;
	size_t pad = in[len - 1] == '=' ? (in[len - 2] == '=' ? 2 : 1) : 0;
	size_t n = len / 4 * 3 - pad;
	if (n > outlen)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		uint32_t v = 0;
		for (size_t k = 0; k < 4; k++) {
			/* '=' may only fill the final pad positions of the last group */
			bool pad_slot = last && k >= 4 - pad;
			int d = pad_slot ? (in[i + k] == '=' ? 0 : -1) : b64_value(in[i + k]);
			if (d < 0)
				return -1;
			v = v << 6 | (uint32_t)d;
		}
		out[o++] = (uint8_t)(v >> 16);
		if (o < n)
			out[o++] = (uint8_t)(v >> 8);
		if (o < n)
			out[o++] = (uint8_t)v;
	}
	return (int)n;
}

/* ---- the cryptographic primitives, all SHA-256 ---- */

static bool sha256(const uint8_t *data, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int outlen = 0;
	return EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) == 1 &&
	       outlen == SCRAM_KEY_LEN;
}

struct span {
	const void *p;
	size_t len;
};

/* HMAC-SHA-256 over the concatenation of parts, so AuthMessage is never copied */
static bool hmac_sha256(const uint8_t *key, size_t keylen, const struct span *parts, size_t nparts,
			uint8_t out[SCRAM_KEY_LEN])
{
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};
	/* fetched once: a fetch per HMAC costs more than the HMAC (several a login) */
	static EVP_MAC *mac;
	if (!mac)
		mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	size_t outlen = 0;
	bool ok = ctx && EVP_MAC_init(ctx, key, keylen, params) == 1;
	for (size_t i = 0; ok && i < nparts; i++)
		ok = EVP_MAC_update(ctx, parts[i].p, parts[i].len) == 1;
	ok = ok && EVP_MAC_final(ctx, out, &outlen, SCRAM_KEY_LEN) == 1 && outlen == SCRAM_KEY_LEN;
	EVP_MAC_CTX_free(ctx);
	return ok;
}

static bool hmac_sha256_text(const uint8_t key[SCRAM_KEY_LEN], const char *text,
			     uint8_t out[SCRAM_KEY_LEN])
{
	struct span part = { text, strlen(text) };
	return hmac_sha256(key, SCRAM_KEY_LEN, &part, 1, out);
}

/*
 * HMAC(key, AuthMessage). The three pieces are exactly the bytes each side
 * sent, joined with commas.
 */
static bool sign_auth_message(const uint8_t key[SCRAM_KEY_LEN], const char *client_first_bare,
			      const char *server_first, size_t server_first_len,
			      const char *client_final_without_proof, size_t cfwp_len,
			      uint8_t out[SCRAM_KEY_LEN])
{
	struct span parts[] = {
		{ client_first_bare, strlen(client_first_bare) },
		{ ",", 1 },
		{ server_first, server_first_len },
		{ ",", 1 },
		{ client_final_without_proof, cfwp_len },
	};
	return hmac_sha256(key, SCRAM_KEY_LEN, parts, sizeof(parts) / sizeof(parts[0]), out);
}

/*
 * SaltedPassword = Hi(SASLprep(password), salt, i), i.e. PBKDF2 with
 * HMAC-SHA-256 over the prepared password (or the raw one, as PostgreSQL
 * falls back to it)
 */
static bool salt_password(const char *password, const uint8_t *salt, int salt_len, int iterations,
			  uint8_t out[SCRAM_KEY_LEN])
{
	if (iterations <= 0 || iterations > SCRAM_MAX_ITERATIONS)
		return false;
	char *prepared = saslprep_password(password);
	if (!prepared)
		return false;
	size_t pwlen = strlen(prepared);
	bool ok = pwlen <= INT_MAX;
	if (ok) {
		hi_calls++;
		ok = PKCS5_PBKDF2_HMAC(prepared, (int)pwlen, salt, salt_len, iterations, EVP_sha256(),
				       SCRAM_KEY_LEN, out) == 1;
	}
	saslprep_free(prepared);
	return ok;
}

/* ClientKey and ServerKey from SaltedPassword */
static bool derive_keys(const uint8_t salted[SCRAM_KEY_LEN], uint8_t client_key[SCRAM_KEY_LEN],
			uint8_t server_key[SCRAM_KEY_LEN])
{
	return hmac_sha256_text(salted, "Client Key", client_key) &&
	       hmac_sha256_text(salted, "Server Key", server_key);
}

static bool make_nonce(char *out, size_t outlen)
{
	uint8_t raw[NONCE_RANDOM_BYTES];
	if (test_nonce[0]) {
		if (strlen(test_nonce) >= outlen)
			return false;
		strcpy(out, test_nonce);
		return true;
	}
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return false;
	return scram_b64_encode(raw, sizeof(raw), out, outlen) > 0;
}

static bool make_salt(uint8_t *salt, int *salt_len)
{
	if (test_salt_len > 0) {
		memcpy(salt, test_salt, test_salt_len);
		*salt_len = (int)test_salt_len;
		return true;
	}
	*salt_len = SALT_RANDOM_BYTES;
	return RAND_bytes(salt, SALT_RANDOM_BYTES) == 1;
}

/*
 * A per-process random key: mock salts differ between installations, and
 * the key cache remembers passwords by a keyed hash that says nothing
 * outside this process.
 */
static uint8_t process_key[SCRAM_KEY_LEN];
static bool process_key_ok;
static pthread_once_t process_key_once = PTHREAD_ONCE_INIT;

static void make_process_key(void)
{
	process_key_ok = RAND_bytes(process_key, sizeof(process_key)) == 1;
}

/* HMAC(process key, purpose NUL text): one purpose's hashes say nothing of another's */
static bool keyed_hash(const char *purpose, const char *text, uint8_t out[SCRAM_KEY_LEN])
{
	struct span parts[] = {
		{ purpose, strlen(purpose) + 1 },
		{ text, strlen(text) },
	};
	pthread_once(&process_key_once, make_process_key);
	return process_key_ok && hmac_sha256(process_key, sizeof(process_key), parts, 2, out);
}

/* ---- verifiers ---- */

bool scram_parse_secret(const char *text, struct scram_secret *out)
{
	struct scram_secret s;
	size_t prefix = strlen(SECRET_PREFIX);
	if (!text || strncmp(text, SECRET_PREFIX, prefix) != 0)
		return false;
	memset(&s, 0, sizeof(s));

	/* <iter>:<salt>$<StoredKey>:<ServerKey> */
	const char *iter = text + prefix;
	const char *colon1 = strchr(iter, ':');
	const char *dollar = colon1 ? strchr(colon1 + 1, '$') : NULL;
	const char *colon2 = dollar ? strchr(dollar + 1, ':') : NULL;
	if (!colon2)
		return false;
	const char *server = colon2 + 1;
	size_t server_len = strlen(server);

	bool ok = parse_positive_int(iter, (size_t)(colon1 - iter), &s.iterations);
	if (ok) {
		s.salt_len = scram_b64_decode(colon1 + 1, (size_t)(dollar - colon1 - 1), s.salt,
					      sizeof(s.salt));
		ok = s.salt_len > 0;
	}
	ok = ok && scram_b64_decode(dollar + 1, (size_t)(colon2 - dollar - 1), s.stored_key,
				    SCRAM_KEY_LEN) == SCRAM_KEY_LEN;
	ok = ok &&
	     scram_b64_decode(server, server_len, s.server_key, SCRAM_KEY_LEN) == SCRAM_KEY_LEN;
	if (ok)
		*out = s;
	OPENSSL_cleanse(&s, sizeof(s));
	return ok;
}

bool scram_secret_from_password(const char *password, int iterations, struct scram_secret *out)
{
	struct scram_secret s;
	uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	if (!password || iterations <= 0 || iterations > SCRAM_MAX_ITERATIONS)
		return false;
	memset(&s, 0, sizeof(s));
	s.iterations = iterations;
	bool ok = make_salt(s.salt, &s.salt_len) &&
		  salt_password(password, s.salt, s.salt_len, iterations, salted) &&
		  derive_keys(salted, client_key, s.server_key) &&
		  sha256(client_key, SCRAM_KEY_LEN, s.stored_key);
	if (ok)
		*out = s;
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(&s, sizeof(s));
	return ok;
}

bool scram_verifier_for_password(struct scram_verifier_cache *cache, const char *password, int iterations,
				 struct scram_secret *out)
{
	uint8_t tag[SCRAM_KEY_LEN];
	if (!password || !keyed_hash("verifier password", password, tag))
		return false;
	bool same = cache->valid && cache->secret.iterations == iterations &&
		    CRYPTO_memcmp(cache->password_tag, tag, SCRAM_KEY_LEN) == 0;
	if (!same) {
		OPENSSL_cleanse(cache, sizeof(*cache));
		memset(cache, 0, sizeof(*cache));
		if (scram_secret_from_password(password, iterations, &cache->secret)) {
			memcpy(cache->password_tag, tag, SCRAM_KEY_LEN);
			cache->valid = true;
		}
	}
	OPENSSL_cleanse(tag, sizeof(tag));
	if (!cache->valid)
		return false;
	*out = cache->secret;
	return true;
}

bool scram_password_keys(const struct scram_secret *secret, const char *password, uint8_t client_key[SCRAM_KEY_LEN])
{
	uint8_t salted[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
	uint8_t stored[SCRAM_KEY_LEN];
	if (!secret || !password || secret->salt_len <= 0 || secret->salt_len > MAX_SALT_LEN)
		return false;
	bool ok = salt_password(password, secret->salt, secret->salt_len, secret->iterations,
				salted) &&
		  derive_keys(salted, client_key, server_key) &&
		  sha256(client_key, SCRAM_KEY_LEN, stored);
	/* both keys, as PostgreSQL checks them: a forged verifier cannot half-match */
	ok = ok && (CRYPTO_memcmp(stored, secret->stored_key, SCRAM_KEY_LEN) |
		    CRYPTO_memcmp(server_key, secret->server_key, SCRAM_KEY_LEN)) == 0;
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(server_key, sizeof(server_key));
	OPENSSL_cleanse(stored, sizeof(stored));
	if (!ok)
		OPENSSL_cleanse(client_key, SCRAM_KEY_LEN);
	return ok;
}

bool scram_password_matches(const struct scram_secret *secret, const char *password)
{
	uint8_t client_key[SCRAM_KEY_LEN];
	bool ok = scram_password_keys(secret, password, client_key);
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return ok;
}

bool scram_secret_mock(const char *user, struct scram_secret *out)
{
	struct scram_secret s;
	uint8_t digest[SCRAM_KEY_LEN];
	memset(&s, 0, sizeof(s));
	/* what scram_secret_from_password makes for a known user's plaintext */
	s.iterations = SCRAM_DEFAULT_ITERATIONS;
	s.salt_len = SALT_RANDOM_BYTES;
	/*
	 * Keys that are hashes under the process key, not of any password: a
	 * proof would need a preimage of StoredKey, so none can match, whatever
	 * the client knows.
	 */
	const char *name = user ? user : "";
	bool ok = keyed_hash("mock salt", name, digest) &&
		  keyed_hash("mock StoredKey", name, s.stored_key) &&
		  keyed_hash("mock ServerKey", name, s.server_key);
	if (ok) {
		memcpy(s.salt, digest, SALT_RANDOM_BYTES);
		*out = s;
	}
	return ok;
}

/* ---- server side ---- */

void scram_server_reset(struct scram_server *st)
{
	free(st->client_first_bare);
	free(st->server_first);
	OPENSSL_cleanse(st, sizeof(*st));
	memset(st, 0, sizeof(*st));
}

void scram_server_bind(struct scram_server *st, const uint8_t *data, size_t len, bool plus)
{
	st->cbind_len = len <= sizeof(st->cbind_data) ? len : 0;
	if (st->cbind_len && data != st->cbind_data)
		memcpy(st->cbind_data, data, st->cbind_len);
	st->cbind_plus = plus && st->cbind_len > 0;
}

/*
 * gs2-header = cbind-flag "," [authzid] ","
 * "p=tls-server-end-point" only when the client chose SCRAM-SHA-256-PLUS
 * (offered over TLS); "y" (the client could bind but thinks we cannot) only
 * when PLUS was not offered (scram_server_bind).
 */
static bool read_gs2_header(const struct scram_server *st, struct cursor *c, char *flag, char *err,
			    size_t errlen)
{
	if (cursor_peek_attr(c, 'p')) {
		const char *type;
		size_t type_len;
		if (!st->cbind_plus)
			return fail(err, errlen, "SCRAM-SHA-256 chosen, but the message has channel binding data");
		cursor_read_attr(c, 'p', &type, &type_len);
		if (type_len != strlen("tls-server-end-point") || memcmp(type, "tls-server-end-point", type_len) != 0)
			return fail(err, errlen, "unsupported SCRAM channel-binding type");
		*flag = 'p';
	} else if (st->cbind_plus) {
		return fail(err, errlen, "SCRAM-SHA-256-PLUS chosen, but the message has no channel binding data");
	} else if (!cursor_at_end(c) && *c->p == 'y' && st->cbind_len > 0) {
		return fail(err, errlen, "SCRAM channel binding negotiation error: the client thinks we cannot bind");
	} else if (cursor_at_end(c) || (*c->p != 'n' && *c->p != 'y')) {
		return fail(err, errlen, "malformed SCRAM message: bad channel binding flag");
	} else {
		*flag = *c->p++;
	}
	if (!cursor_take_comma(c))
		return fail(err, errlen, "malformed SCRAM message: bad gs2 header");
	if (cursor_peek_attr(c, 'a'))
		return fail(err, errlen, "SCRAM authorization identity is not supported");
	if (!cursor_take_comma(c))
		return fail(err, errlen, "malformed SCRAM message: bad gs2 header");
	return true;
}

bool scram_server_first(struct scram_server *st, const struct scram_secret *secret,
			const char *client_first, size_t len, char *out, size_t outlen, char *err,
			size_t errlen)
{
	struct cursor c = { client_first, client_first + len };
	const char *user, *cnonce;
	size_t user_len, cnonce_len;
	char flag = 0, snonce[sizeof(st->nonce)], salt_b64[4 * (MAX_SALT_LEN + 2) / 3 + 1];

	/* the reset keeps what scram_server_bind said about the TLS session */
	uint8_t cbind_data[sizeof(st->cbind_data)];
	size_t cbind_len = st->cbind_len;
	bool cbind_plus = st->cbind_plus;
	memcpy(cbind_data, st->cbind_data, sizeof(cbind_data));
	scram_server_reset(st);
	memcpy(st->cbind_data, cbind_data, sizeof(cbind_data));
	st->cbind_len = cbind_len;
	st->cbind_plus = cbind_plus;
	if (!secret || secret->salt_len <= 0 || secret->salt_len > MAX_SALT_LEN ||
	    secret->iterations <= 0)
		return fail(err, errlen, "no usable SCRAM secret");
	if (!message_is_sane(client_first, len, err, errlen) ||
	    !read_gs2_header(st, &c, &flag, err, errlen))
		return false;

	/* client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions] */
	const char *bare = c.p;
	if (cursor_peek_attr(&c, 'm'))
		return fail(err, errlen, "SCRAM mandatory extensions are not supported");
	/* PostgreSQL takes the user from the startup packet; n= is ignored */
	if (!cursor_read_attr(&c, 'n', &user, &user_len) || !cursor_take_comma(&c))
		return fail(err, errlen, "malformed SCRAM message: expected user name");
	if (!cursor_read_attr(&c, 'r', &cnonce, &cnonce_len))
		return fail(err, errlen, "malformed SCRAM message: expected nonce");
	if (cnonce_len == 0 || !nonce_is_printable(cnonce, cnonce_len))
		return fail(err, errlen, "malformed SCRAM message: invalid nonce");
	if (!cursor_skip_extensions(&c))
		return fail(err, errlen, "malformed SCRAM message: garbage after nonce");

	if (!make_nonce(snonce, sizeof(snonce)))
		return fail(err, errlen, "could not generate SCRAM nonce");
	size_t snonce_len = strlen(snonce);
	if (cnonce_len + snonce_len >= sizeof(st->nonce))
		return fail(err, errlen, "SCRAM client nonce too long");
	memcpy(st->nonce, cnonce, cnonce_len);
	memcpy(st->nonce + cnonce_len, snonce, snonce_len + 1);

	scram_b64_encode(secret->salt, (size_t)secret->salt_len, salt_b64, sizeof(salt_b64));
	int n = snprintf(out, outlen, "r=%s,s=%s,i=%d", st->nonce, salt_b64, secret->iterations);
	if (n < 0 || (size_t)n >= outlen) {
		scram_server_reset(st);
		return fail(err, errlen, "SCRAM output buffer too small");
	}
	st->client_first_bare = copy_bytes(bare, (size_t)(c.end - bare));
	st->server_first = copy_bytes(out, (size_t)n);
	if (!st->client_first_bare || !st->server_first) {
		scram_server_reset(st);
		return fail(err, errlen, "out of memory");
	}
	st->secret = *secret;
	st->cbind_flag = flag;
	return true;
}

/*
 * client-final-message = channel-binding "," nonce ["," extensions] "," proof
 * On success *proof_at points at the ',' before "p=", which is where
 * client-final-without-proof ends.
 */
static bool read_client_final(struct scram_server *st, struct cursor *c, const char **proof_at,
			      uint8_t proof[SCRAM_KEY_LEN], char *err, size_t errlen)
{
	const char *val;
	size_t vlen;
	static const char plus_header[] = "p=tls-server-end-point,,";
	uint8_t cbind[sizeof(plus_header) + sizeof(st->cbind_data)], expected[sizeof(cbind)];
	size_t expected_len;

	if (st->cbind_flag == 'p') {
		/* the gs2 header, then the binding data: the hash of the certificate we showed */
		expected_len = strlen(plus_header);
		memcpy(expected, plus_header, expected_len);
		memcpy(expected + expected_len, st->cbind_data, st->cbind_len);
		expected_len += st->cbind_len;
	} else {
		expected_len = 3;
		memcpy(expected, (const uint8_t[3]){ (uint8_t)st->cbind_flag, ',', ',' }, 3);
	}
	if (!cursor_read_attr(c, 'c', &val, &vlen))
		return fail(err, errlen, "malformed SCRAM message: expected channel binding");
	/* c= repeats the gs2 header the client sent in client-first */
	if (scram_b64_decode(val, vlen, cbind, sizeof(cbind)) != (int)expected_len ||
	    memcmp(cbind, expected, expected_len) != 0)
		return fail(err, errlen, "SCRAM channel binding check failed");
	if (!cursor_take_comma(c) || !cursor_read_attr(c, 'r', &val, &vlen))
		return fail(err, errlen, "malformed SCRAM message: expected nonce");
	/* the nonce is public; a plain comparison is fine */
	if (vlen != strlen(st->nonce) || memcmp(val, st->nonce, vlen) != 0)
		return fail(err, errlen, "SCRAM nonce does not match");
	for (;;) {
		const char *comma = c->p;
		if (!cursor_take_comma(c))
			return fail(err, errlen, "malformed SCRAM message: expected proof");
		if (cursor_peek_attr(c, 'p')) {
			*proof_at = comma;
			break;
		}
		if (!cursor_skip_any_attr(c))
			return fail(err, errlen, "malformed SCRAM message: bad attribute");
	}
	if (!cursor_read_attr(c, 'p', &val, &vlen) || !cursor_at_end(c))
		return fail(err, errlen, "malformed SCRAM message: garbage after proof");
	if (scram_b64_decode(val, vlen, proof, SCRAM_KEY_LEN) != SCRAM_KEY_LEN)
		return fail(err, errlen, "malformed SCRAM message: invalid proof");
	return true;
}

/* recover ClientKey from the proof and check it against StoredKey */
static bool check_proof(struct scram_server *st, const char *msg, size_t cfwp_len,
			const uint8_t proof[SCRAM_KEY_LEN], char *out, size_t outlen, char *err,
			size_t errlen)
{
	uint8_t signature[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	bool ok = false;

	if (!sign_auth_message(st->secret.stored_key, st->client_first_bare, st->server_first,
			       strlen(st->server_first), msg, cfwp_len, signature)) {
		fail(err, errlen, "SCRAM computation failed");
		goto done;
	}
	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ signature[i];
	if (!sha256(client_key, SCRAM_KEY_LEN, stored)) {
		fail(err, errlen, "SCRAM computation failed");
		goto done;
	}
	if (CRYPTO_memcmp(stored, st->secret.stored_key, SCRAM_KEY_LEN) != 0) {
		fail(err, errlen, "SCRAM proof does not match (wrong password)");
		goto done;
	}
	if (!sign_auth_message(st->secret.server_key, st->client_first_bare, st->server_first,
			       strlen(st->server_first), msg, cfwp_len, signature)) {
		fail(err, errlen, "SCRAM computation failed");
		goto done;
	}
	if (outlen < 3 + KEY_B64_LEN) {
		fail(err, errlen, "SCRAM output buffer too small");
		goto done;
	}
	memcpy(out, "v=", 2);
	scram_b64_encode(signature, SCRAM_KEY_LEN, out + 2, outlen - 2);
	memcpy(st->client_key, client_key, SCRAM_KEY_LEN);
	st->have_client_key = true;
	ok = true;
done:
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(signature, sizeof(signature));
	return ok;
}

bool scram_server_final(struct scram_server *st, const char *client_final, size_t len, char *out,
			size_t outlen, char *err, size_t errlen)
{
	struct cursor c = { client_final, client_final + len };
	const char *proof_at = NULL;
	uint8_t proof[SCRAM_KEY_LEN];
	bool ok;

	if (!st->client_first_bare || !st->server_first)
		return fail(err, errlen, "SCRAM exchange not started");
	ok = message_is_sane(client_final, len, err, errlen) &&
	     read_client_final(st, &c, &proof_at, proof, err, errlen) &&
	     check_proof(st, client_final, (size_t)(proof_at - client_final), proof, out, outlen,
			 err, errlen);

	/* SCRAM allows one attempt: whatever happened, the exchange is over */
	free(st->client_first_bare);
	free(st->server_first);
	st->client_first_bare = NULL;
	st->server_first = NULL;
	return ok;
}

/* ---- client side ---- */

void scram_client_reset(struct scram_client *st)
{
	if (st->password) {
		OPENSSL_cleanse(st->password, strlen(st->password));
		free(st->password);
	}
	free(st->client_first_bare);
	free(st->server_first);
	OPENSSL_cleanse(st, sizeof(*st));
	memset(st, 0, sizeof(*st));
}

/* saslname escaping: ',' and '=' become "=2C" and "=3D" */
static bool escape_saslname(const char *name, char *out, size_t outlen)
{
	size_t o = 0;
	for (const char *p = name; *p; p++) {
		const char *rep = *p == ',' ? "=2C" : *p == '=' ? "=3D" : NULL;
		size_t n = rep ? 3 : 1;
		if (o + n >= outlen)
			return false;
		if (rep)
			memcpy(out + o, rep, 3);
		else
			out[o] = *p;
		o += n;
	}
	out[o] = '\0';
	return true;
}

/* client-first-message: no channel binding, empty user (PostgreSQL ignores it) */
static bool begin_client_exchange(struct scram_client *st, char *out, size_t outlen)
{
	char user[3 * sizeof(test_client_user)];
	if (!escape_saslname(test_client_user, user, sizeof(user)) ||
	    !make_nonce(st->client_nonce, sizeof(st->client_nonce)))
		return false;
	int n = snprintf(out, outlen, "n,,n=%s,r=%s", user, st->client_nonce);
	if (n < 0 || (size_t)n >= outlen)
		return false;
	st->client_first_bare = copy_bytes(out + 3, (size_t)n - 3);
	return st->client_first_bare != NULL;
}

bool scram_client_first(struct scram_client *st, const char *password,
			struct scram_key_cache *cache, char *out, size_t outlen)
{
	scram_client_reset(st);
	if (!password)
		return false;
	st->cache = cache;
	st->password = copy_bytes(password, strlen(password));
	if (st->password && begin_client_exchange(st, out, outlen))
		return true;
	scram_client_reset(st);
	return false;
}

bool scram_client_first_keys(struct scram_client *st, const uint8_t client_key[SCRAM_KEY_LEN],
			     const uint8_t server_key[SCRAM_KEY_LEN], char *out, size_t outlen)
{
	scram_client_reset(st);
	memcpy(st->client_key, client_key, SCRAM_KEY_LEN);
	memcpy(st->server_key, server_key, SCRAM_KEY_LEN);
	st->have_keys = true;
	if (begin_client_exchange(st, out, outlen))
		return true;
	scram_client_reset(st);
	return false;
}

struct server_first_fields {
	const char *nonce;
	size_t nonce_len;
	uint8_t salt[MAX_SALT_LEN];
	int salt_len;
	int iterations;
};

/* server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions] */
static bool read_server_first(const struct scram_client *st, struct cursor *c,
			      struct server_first_fields *f, char *err, size_t errlen)
{
	const char *val;
	size_t vlen, cnonce_len = strlen(st->client_nonce);

	if (cursor_peek_attr(c, 'm'))
		return fail(err, errlen, "SCRAM mandatory extensions are not supported");
	if (!cursor_read_attr(c, 'r', &f->nonce, &f->nonce_len))
		return fail(err, errlen, "malformed SCRAM message: expected nonce");
	/* the server must extend our nonce, not replace or merely echo it */
	if (f->nonce_len <= cnonce_len || f->nonce_len > MAX_COMBINED_NONCE ||
	    memcmp(f->nonce, st->client_nonce, cnonce_len) != 0 ||
	    !nonce_is_printable(f->nonce, f->nonce_len))
		return fail(err, errlen, "SCRAM server nonce is invalid");
	if (!cursor_take_comma(c) || !cursor_read_attr(c, 's', &val, &vlen))
		return fail(err, errlen, "malformed SCRAM message: expected salt");
	f->salt_len = scram_b64_decode(val, vlen, f->salt, sizeof(f->salt));
	if (f->salt_len <= 0)
		return fail(err, errlen, "malformed SCRAM message: invalid salt");
	if (!cursor_take_comma(c) || !cursor_read_attr(c, 'i', &val, &vlen))
		return fail(err, errlen, "malformed SCRAM message: expected iteration count");
	if (!parse_positive_int(val, vlen, &f->iterations))
		return fail(err, errlen, "malformed SCRAM message: invalid iteration count");
	if (!cursor_skip_extensions(c))
		return fail(err, errlen, "malformed SCRAM message: garbage after iteration count");
	return true;
}

/* ---- the key cache ---- */

void scram_key_cache_clear(struct scram_key_cache *cache)
{
	OPENSSL_cleanse(cache, sizeof(*cache));
	memset(cache, 0, sizeof(*cache));
}

static bool slot_holds(const struct scram_cached_keys *k, const uint8_t tag[SCRAM_KEY_LEN],
		       const struct server_first_fields *f)
{
	/* salt and count are public; the tag stands for the password */
	return k->salt_len == f->salt_len && k->iterations == f->iterations &&
	       memcmp(k->salt, f->salt, (size_t)f->salt_len) == 0 &&
	       CRYPTO_memcmp(k->password_tag, tag, SCRAM_KEY_LEN) == 0;
}

static struct scram_cached_keys *cache_find(struct scram_key_cache *cache,
					     const uint8_t tag[SCRAM_KEY_LEN],
					     const struct server_first_fields *f)
{
	for (int i = 0; i < SCRAM_KEY_CACHE_SLOTS; i++)
		if (slot_holds(&cache->slot[i], tag, f))
			return &cache->slot[i];
	return NULL;
}

/* an unused slot, or else the least recently used one */
static struct scram_cached_keys *cache_victim(struct scram_key_cache *cache)
{
	struct scram_cached_keys *victim = &cache->slot[0];
	for (int i = 0; i < SCRAM_KEY_CACHE_SLOTS; i++) {
		struct scram_cached_keys *k = &cache->slot[i];
		if (k->salt_len == 0)
			return k;
		if (k->last_used < victim->last_used)
			victim = k;
	}
	return victim;
}

static void cache_store(struct scram_key_cache *cache, const uint8_t tag[SCRAM_KEY_LEN],
			const struct server_first_fields *f, const uint8_t client_key[SCRAM_KEY_LEN],
			const uint8_t server_key[SCRAM_KEY_LEN])
{
	struct scram_cached_keys *k = cache_victim(cache);
	OPENSSL_cleanse(k, sizeof(*k));
	memcpy(k->password_tag, tag, SCRAM_KEY_LEN);
	memcpy(k->salt, f->salt, (size_t)f->salt_len);
	k->salt_len = f->salt_len;
	k->iterations = f->iterations;
	memcpy(k->client_key, client_key, SCRAM_KEY_LEN);
	memcpy(k->server_key, server_key, SCRAM_KEY_LEN);
	k->last_used = ++cache->uses;
}

/*
 * ClientKey/ServerKey: as given, from the cache, or from the password via
 * Hi() (then cached). The iteration limit is checked before the cache: a
 * count we refuse never reaches it.
 */
static bool client_keys(struct scram_client *st, const struct server_first_fields *f,
			uint8_t client_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN],
			char *err, size_t errlen)
{
	uint8_t salted[SCRAM_KEY_LEN], tag[SCRAM_KEY_LEN];
	if (st->have_keys) {
		memcpy(client_key, st->client_key, SCRAM_KEY_LEN);
		memcpy(server_key, st->server_key, SCRAM_KEY_LEN);
		return true;
	}
	if (f->iterations > SCRAM_MAX_ITERATIONS)
		return fail(err, errlen,
			    "server asks for %d SCRAM iterations, more than pgpulse computes "
			    "(limit %d)",
			    f->iterations, SCRAM_MAX_ITERATIONS);
	if (!st->password)
		return fail(err, errlen, "SCRAM computation failed");
	bool cacheable = st->cache && keyed_hash("password", st->password, tag);
	struct scram_cached_keys *hit = cacheable ? cache_find(st->cache, tag, f) : NULL;
	if (hit) {
		memcpy(client_key, hit->client_key, SCRAM_KEY_LEN);
		memcpy(server_key, hit->server_key, SCRAM_KEY_LEN);
		hit->last_used = ++st->cache->uses;
		OPENSSL_cleanse(tag, sizeof(tag));
		return true;
	}
	bool ok = salt_password(st->password, f->salt, f->salt_len, f->iterations, salted) &&
		  derive_keys(salted, client_key, server_key);
	if (ok && cacheable)
		cache_store(st->cache, tag, f, client_key, server_key);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(tag, sizeof(tag));
	return ok || fail(err, errlen, "SCRAM computation failed");
}

bool scram_client_final(struct scram_client *st, const char *server_first, size_t len, char *out,
			size_t outlen, char *err, size_t errlen)
{
	struct cursor c = { server_first, server_first + len };
	struct server_first_fields f;
	uint8_t client_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	uint8_t signature[SCRAM_KEY_LEN], server_signature[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	char proof_b64[KEY_B64_LEN + 1];
	bool ok = false;

	if (!st->client_first_bare || st->server_first)
		return fail(err, errlen, "SCRAM exchange not at the server-first step");
	if (!message_is_sane(server_first, len, err, errlen) ||
	    !read_server_first(st, &c, &f, err, errlen) ||
	    !client_keys(st, &f, client_key, server_key, err, errlen))
		return false;

	/* we sent gs2 header "n,,", whose base64 is "biws" */
	int cfwp_len = snprintf(out, outlen, "c=biws,r=%.*s", (int)f.nonce_len, f.nonce);
	if (cfwp_len < 0 || (size_t)cfwp_len + 3 + KEY_B64_LEN >= outlen) {
		fail(err, errlen, "SCRAM output buffer too small");
		goto done;
	}
	if (!sha256(client_key, SCRAM_KEY_LEN, stored) ||
	    !sign_auth_message(stored, st->client_first_bare, server_first, len, out,
			       (size_t)cfwp_len, signature) ||
	    !sign_auth_message(server_key, st->client_first_bare, server_first, len, out,
			       (size_t)cfwp_len, server_signature)) {
		fail(err, errlen, "SCRAM computation failed");
		goto done;
	}
	scram_b64_encode(server_signature, SCRAM_KEY_LEN, st->expected_server_signature,
			 sizeof(st->expected_server_signature));
	memcpy(st->salted_server_key, server_key, SCRAM_KEY_LEN);

	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = client_key[i] ^ signature[i];
	scram_b64_encode(proof, SCRAM_KEY_LEN, proof_b64, sizeof(proof_b64));
	snprintf(out + cfwp_len, outlen - (size_t)cfwp_len, ",p=%s", proof_b64);

	st->server_first = copy_bytes(server_first, len);
	if (!st->server_first) {
		fail(err, errlen, "out of memory");
		goto done;
	}
	ok = true;
done:
	if (!ok)
		st->expected_server_signature[0] = '\0';
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(server_key, sizeof(server_key));
	OPENSSL_cleanse(stored, sizeof(stored));
	return ok;
}

bool scram_client_verify(struct scram_client *st, const char *server_final, size_t len, char *err,
			 size_t errlen)
{
	struct cursor c = { server_final, server_final + len };
	const char *val;
	size_t vlen;
	uint8_t got[SCRAM_KEY_LEN], want[SCRAM_KEY_LEN];

	if (!st->server_first || !st->expected_server_signature[0])
		return fail(err, errlen, "SCRAM exchange not at the server-final step");
	if (!message_is_sane(server_final, len, err, errlen))
		return false;
	if (cursor_read_attr(&c, 'e', &val, &vlen)) {
		/* the peer's words end up in our log: keep them short and printable */
		char reason[101];
		size_t n = vlen < sizeof(reason) - 1 ? vlen : sizeof(reason) - 1;
		for (size_t i = 0; i < n; i++)
			reason[i] = (val[i] >= 0x20 && val[i] < 0x7f) ? val[i] : '?';
		reason[n] = '\0';
		return fail(err, errlen, "SCRAM server error: %s", reason);
	}
	if (!cursor_read_attr(&c, 'v', &val, &vlen) || !cursor_skip_extensions(&c))
		return fail(err, errlen, "malformed SCRAM message: expected server signature");
	if (scram_b64_decode(val, vlen, got, sizeof(got)) != SCRAM_KEY_LEN)
		return fail(err, errlen, "malformed SCRAM message: invalid server signature");
	scram_b64_decode(st->expected_server_signature, strlen(st->expected_server_signature), want,
			 sizeof(want));
	/* one verification per exchange */
	st->expected_server_signature[0] = '\0';
	if (CRYPTO_memcmp(got, want, SCRAM_KEY_LEN) != 0)
		return fail(err, errlen, "SCRAM server signature does not match");
	return true;
}
