/*
 * auth: the auth_file, and MD5 password hashing as PostgreSQL does it.
 *
 * The auth_file holds one `"user" "secret"` pair a line; a secret is a
 * plaintext password, an MD5 hash ("md5" + 32 hex digits) or a SCRAM secret
 * ("SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>"). Which one it is
 * decides which exchanges it can serve.
 *
 * A scram-sha-256 login needs a verifier; for a plaintext password one is
 * derived on the entry's first such login and kept with the entry, so Hi()
 * runs once per password, not once per startup, and every client is shown
 * the same salt (as PostgreSQL's stored verifier would).
 */
#ifndef PGPULSE_AUTH_H
#define PGPULSE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum secret_kind { SECRET_PLAIN = 0, SECRET_MD5, SECRET_SCRAM };

struct scram_secret;

struct auth_entry {
	char *user;
	char *secret;
	struct scram_secret *verifier; /* for SCRAM logins: NULL until first needed */
};

struct auth_file {
	struct auth_entry *entries; /* sorted by user for lookup */
	int count;
};

/*
 * Load an auth_file. Returns NULL with "file:line: reason" in err on a
 * malformed line or an unreadable file. Comment lines start with ';' or '#'.
 * Inside quotes, a doubled quote ("") stands for one quote.
 */
struct auth_file *auth_file_load(const char *path, char *err, size_t errlen);
void auth_file_free(struct auth_file *af);

/* the secret stored for user, or NULL */
const char *auth_file_lookup(const struct auth_file *af, const char *user);

/*
 * The verifier a scram-sha-256 login as user is checked against: the
 * entry's SCRAM secret parsed, or for a plaintext password the verifier
 * derived from it (iterations, a random salt) on the first call and kept
 * with the entry (derived again when iterations changed). False (out untouched) when the user has no
 * entry, or an md5 secret, which cannot serve SCRAM.
 */
bool auth_file_scram_verifier(struct auth_file *af, const char *user, int iterations, struct scram_secret *out);

/*
 * Before fresh replaces old (a RELOAD): entries whose user and secret are
 * unchanged keep the verifier derived for them, with its salt; a changed
 * password gets a new one on its next login.
 */
void auth_file_keep_verifiers(struct auth_file *fresh, const struct auth_file *old);

enum secret_kind auth_secret_kind(const char *secret);

/* "md5" + hex(md5(password || user)): 35 characters plus NUL */
void auth_md5_secret(const char *password, const char *user, char out[36]);

/* the MD5 exchange's answer: "md5" + hex(md5(md5secret_hex || salt)) */
void auth_md5_response(const char *md5secret, const uint8_t salt[4], char out[36]);

/* constant-time comparison of two NUL-terminated strings */
bool auth_secure_equal(const char *a, const char *b);

#endif
