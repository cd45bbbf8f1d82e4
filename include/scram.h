/*
 * scram: SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, both as
 * the server (towards clients) and as the client (towards PostgreSQL).
 *
 * Pure computation: messages in, messages out, no I/O. PostgreSQL's flavor:
 * the user name in client-first is ignored (sent empty), channel binding is
 * not used ("n,,"), and a plaintext password is SASLprepped before it becomes
 * keys, falling back to its raw bytes as PostgreSQL does (saslprep.h).
 */
#ifndef PGPULSE_SCRAM_H
#define PGPULSE_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32
#define SCRAM_DEFAULT_ITERATIONS 4096

/*
 * Hi() with more iterations than this is refused: Hi() runs on the event
 * loop, and 100,000 iterations already hold it for ~35 ms (1,000,000: ~0.35 s,
 * stalling every client). A PostgreSQL server asking for more gets a login
 * error naming the count; a stored verifier with more cannot check a
 * cleartext password. Exchanges that need no Hi() on our side (the server
 * side, scram_client_first_keys) accept any count.
 */
#define SCRAM_MAX_ITERATIONS 100000

/*
 * Longest SCRAM message accepted from a peer. Every message this module
 * writes is shorter, so an out buffer of this size always suffices.
 */
#define SCRAM_MAX_MESSAGE_LEN 2048

/* a parsed verifier: what a server needs to check a client */
struct scram_secret {
	int iterations;
	uint8_t salt[64];
	int salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/* parse "SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>" */
bool scram_parse_secret(const char *text, struct scram_secret *out);

/*
 * derive a verifier from a plaintext password with a fresh random salt;
 * iterations must be 1..SCRAM_MAX_ITERATIONS. Costs one Hi(): callers on
 * the login path keep the result (auth_file_scram_verifier)
 */
bool scram_secret_from_password(const char *password, int iterations, struct scram_secret *out);

/*
 * A verifier derived from one plaintext password, kept for the next login
 * while the password stays the same (it is remembered as a keyed hash, not
 * kept). Zeroed memory is empty. For passwords outside the auth_file (a
 * database's password= for its forced user); auth_file entries keep theirs.
 */
struct scram_verifier_cache {
	uint8_t password_tag[SCRAM_KEY_LEN];
	struct scram_secret secret;
	bool valid;
};

/* the cached verifier for password, derived (one Hi()) when it changed */
bool scram_verifier_for_password(struct scram_verifier_cache *cache, const char *password, int iterations,
				 struct scram_secret *out);

/*
 * does a plaintext password (cleartext auth) match a verifier? Costs one
 * Hi(); false when the verifier asks for more than SCRAM_MAX_ITERATIONS
 */
bool scram_password_matches(const struct scram_secret *secret, const char *password);
/*
 * The same check, and on a match the ClientKey the password gives for this
 * verifier: with it (and the verifier's ServerKey) pgpulse can log in to a
 * PostgreSQL that stores the same verifier, for a client that sent its
 * password in cleartext.
 */
bool scram_password_keys(const struct scram_secret *secret, const char *password, uint8_t client_key[SCRAM_KEY_LEN]);

/*
 * A stand-in verifier for a user that does not exist (or has no usable
 * secret): the exchange runs to the end and fails like a wrong password, and
 * the salt is stable per user name, so probing cannot tell unknown users
 * from known ones (PostgreSQL does the same). Its salt length and iteration
 * count are those of a derived verifier; it costs three HMACs (keys that are
 * hashes under a per-process key, so no proof can match), never a Hi().
 */
bool scram_secret_mock(const char *user, struct scram_secret *out);

/*
 * The state structs below must start zeroed (calloc, = {0}) or reset; the
 * *_first functions reset them again, and *_reset frees what they hold.
 */

/* ---- server side: pgpulse authenticating a client ---- */

struct scram_server {
	struct scram_secret secret;
	char *client_first_bare;
	char *server_first;
	char nonce[128];   /* client nonce + server nonce */
	uint8_t client_key[SCRAM_KEY_LEN]; /* recovered from the proof after success */
	bool have_client_key;
	char cbind_flag;   /* 'n', 'y' or 'p' from the gs2 header; c= must echo it */
	/*
	 * Channel binding (SCRAM-SHA-256-PLUS), set by scram_server_bind before
	 * scram_server_first, which keeps it: the tls-server-end-point data of
	 * the client's TLS session (cbind_len 0: plaintext, PLUS not offered)
	 * and whether the client chose PLUS.
	 */
	uint8_t cbind_data[64];
	size_t cbind_len;
	bool cbind_plus;
};

/*
 * Before scram_server_first: the TLS session's tls-server-end-point data
 * (len 0 for none) and whether the client chose SCRAM-SHA-256-PLUS. The
 * checks follow PostgreSQL: PLUS needs p=tls-server-end-point, plain SCRAM
 * refuses binding data, and a client saying 'y' (it could bind but thinks
 * we cannot) is refused when PLUS was offered: someone removed it.
 */
void scram_server_bind(struct scram_server *st, const uint8_t *data, size_t len, bool plus);

/*
 * Start with the client's SASLInitialResponse data (client-first-message).
 * On success writes the server-first-message (NUL-terminated) into out.
 * Returns false with a reason in err for a malformed message.
 */
bool scram_server_first(struct scram_server *st, const struct scram_secret *secret,
			const char *client_first, size_t len, char *out, size_t outlen,
			char *err, size_t errlen);

/*
 * Check the client-final-message. On success writes the server-final-message
 * ("v=...") into out. Returns false for a bad proof or a malformed message.
 */
bool scram_server_final(struct scram_server *st, const char *client_final, size_t len,
			char *out, size_t outlen, char *err, size_t errlen);

void scram_server_reset(struct scram_server *st);

/* ---- client side: pgpulse authenticating to PostgreSQL ---- */

/*
 * ClientKey and ServerKey already derived from a password, for the next
 * login with the same password, salt and iteration count. PostgreSQL sends
 * the role's stored salt and count on every connection, so one Hi() serves
 * every connection a pool opens. The password itself is not kept, only a
 * keyed hash of it (per-process random key) to tell whether it changed. A
 * few slots, for a role whose servers (hosts) hold different verifiers;
 * the least recently used is replaced. Zeroed memory is an empty cache.
 */
#define SCRAM_KEY_CACHE_SLOTS 2

struct scram_cached_keys {
	uint8_t password_tag[SCRAM_KEY_LEN];
	uint8_t salt[64];
	int salt_len;               /* 0: slot unused */
	int iterations;
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
	uint64_t last_used;
};

struct scram_key_cache {
	struct scram_cached_keys slot[SCRAM_KEY_CACHE_SLOTS];
	uint64_t uses;              /* the clock for last_used */
};

/* forget every slot (wiping the keys) */
void scram_key_cache_clear(struct scram_key_cache *cache);

struct scram_client {
	char *password;          /* plaintext, or NULL when client_key is used */
	struct scram_key_cache *cache; /* the caller's, or NULL: Hi() every time */
	uint8_t client_key[SCRAM_KEY_LEN]; /* when the password is not known */
	uint8_t server_key[SCRAM_KEY_LEN];
	bool have_keys;
	char client_nonce[64];
	char *client_first_bare;
	char *server_first;
	uint8_t salted_server_key[SCRAM_KEY_LEN];
	char expected_server_signature[64];
};

/*
 * begin with a plaintext password; writes client-first-message into out.
 * cache (may be NULL) is consulted and filled when the server's salt and
 * iteration count are known; it must outlive the exchange.
 */
bool scram_client_first(struct scram_client *st, const char *password,
			struct scram_key_cache *cache, char *out, size_t outlen);

/*
 * begin with keys instead of a password (a client that authenticated to
 * pgpulse with SCRAM gave us its ClientKey; ServerKey is from the auth_file)
 */
bool scram_client_first_keys(struct scram_client *st, const uint8_t client_key[SCRAM_KEY_LEN],
			     const uint8_t server_key[SCRAM_KEY_LEN], char *out, size_t outlen);

/* process server-first-message, write client-final-message into out */
bool scram_client_final(struct scram_client *st, const char *server_first, size_t len,
			char *out, size_t outlen, char *err, size_t errlen);

/* verify server-final-message ("v=..."); false on a wrong signature or "e=..." */
bool scram_client_verify(struct scram_client *st, const char *server_final, size_t len,
			 char *err, size_t errlen);

void scram_client_reset(struct scram_client *st);

/*
 * base64 helpers (standard alphabet, with padding). encode NUL-terminates and
 * returns the length written, or 0 when out is too small. decode is strict
 * (no whitespace, padding only at the end) and returns the number of bytes,
 * or -1 for bad input or when out is too small.
 */
size_t scram_b64_encode(const uint8_t *in, size_t len, char *out, size_t outlen);
int scram_b64_decode(const char *in, size_t len, uint8_t *out, size_t outlen);

/*
 * ---- for tests only: make the exchange reproducible ----
 * While set, every nonce this module generates (client or server side) is
 * this string, every fresh salt is these bytes, and the client sends this
 * user name in client-first instead of an empty one. NULL restores normal
 * behaviour. Never called by the daemon.
 */
void scram_test_set_nonce(const char *nonce);
void scram_test_set_salt(const uint8_t *salt, size_t len);
void scram_test_set_client_user(const char *user);
/* how many times Hi() (PBKDF2) has run in this process */
unsigned long scram_test_hi_calls(void);

#endif
