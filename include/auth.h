/*
 * auth: the auth_file, and MD5 password hashing as PostgreSQL does it.
 *
 * The auth_file holds one `"user" "secret"` pair a line; a secret is a
 * plaintext password, an MD5 hash ("md5" + 32 hex digits) or a SCRAM secret
 * ("SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>"). Which one it is
 * decides which exchanges it can serve.
 */
#ifndef PGPULSE_AUTH_H
#define PGPULSE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum secret_kind { SECRET_PLAIN = 0, SECRET_MD5, SECRET_SCRAM };

struct auth_entry {
	char *user;
	char *secret;
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

enum secret_kind auth_secret_kind(const char *secret);

/* "md5" + hex(md5(password || user)): 35 characters plus NUL */
void auth_md5_secret(const char *password, const char *user, char out[36]);

/* the MD5 exchange's answer: "md5" + hex(md5(md5secret_hex || salt)) */
void auth_md5_response(const char *md5secret, const uint8_t salt[4], char out[36]);

/* constant-time comparison of two NUL-terminated strings */
bool auth_secure_equal(const char *a, const char *b);

#endif
