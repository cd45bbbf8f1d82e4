/*
 * auth: the auth_file (PgBouncer's userlist.txt format) and PostgreSQL's MD5
 * password hashing.
 *
 * The file is read once into a sorted array of (user, secret), so a login
 * looks its user up with one bsearch and no locking; a reload builds a new
 * array and swaps it. A secret's kind is read off its shape, the same way
 * PostgreSQL tells its stored passwords apart: "md5" + 32 lowercase hex
 * digits, or a parseable "SCRAM-SHA-256$..." verifier; anything else is a
 * plaintext password.
 *
 * A scram-sha-256 login needs a SCRAM verifier. For a plaintext password
 * deriving one costs a Hi() (PBKDF2, ~1 ms at 4,096 iterations) on the event
 * loop, which an unauthenticated startup must not be able to trigger again
 * and again: the entry keeps the verifier made on its first use, and a
 * reload hands it on to the new file while the password is the same.
 *
 * Every comparison of a secret or a response goes through
 * auth_secure_equal, which takes the same time wherever the strings differ.
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "log.h"
#include "scram.h"

#define MD5_PREFIX  "md5"
#define MD5_HEX_LEN 32

/* ---- loading ---- */

/* an entry while loading: the line number decides which duplicate wins */
struct load_entry {
	char *user;
	char *secret;
	int line;
};

struct load_state {
	const char *path;
	int line;
	struct load_entry *entries;
	int count;
	int cap;
	char *err;
	size_t errlen;
};

static bool load_error(struct load_state *ls, const char *reason)
{
	if (ls->err && ls->errlen > 0)
		snprintf(ls->err, ls->errlen, "%s:%d: %s", ls->path, ls->line, reason);
	return false;
}

static void free_secret(char *secret)
{
	if (secret) {
		OPENSSL_cleanse(secret, strlen(secret));
		free(secret);
	}
}

static void free_verifier(struct scram_secret *v)
{
	if (v) {
		OPENSSL_cleanse(v, sizeof(*v));
		free(v);
	}
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/*
 * Read a "quoted" field starting at *p (which points at the opening quote).
 * A doubled quote inside stands for one quote. On success *p is just past
 * the closing quote and *out is a fresh string.
 */
static bool read_quoted(struct load_state *ls, const char **p, const char *end, char **out)
{
	const char *s = *p + 1;
	size_t n = 0;
	char *buf = malloc((size_t)(end - s) + 1);
	if (!buf)
		return load_error(ls, "out of memory");
	for (;;) {
		if (s >= end) {
			OPENSSL_cleanse(buf, n);
			free(buf);
			return load_error(ls, "unterminated quoted field");
		}
		if (*s == '"') {
			if (s + 1 < end && s[1] == '"') {
				buf[n++] = '"';
				s += 2;
				continue;
			}
			s++;
			break;
		}
		if (*s == '\0') {
			OPENSSL_cleanse(buf, n);
			free(buf);
			return load_error(ls, "NUL byte inside quoted field");
		}
		buf[n++] = *s++;
	}
	buf[n] = '\0';
	*p = s;
	*out = buf;
	return true;
}

static bool remember_entry(struct load_state *ls, char *user, char *secret)
{
	if (ls->count == ls->cap) {
		int cap = ls->cap ? ls->cap * 2 : 16;
		struct load_entry *grown = realloc(ls->entries, (size_t)cap * sizeof(*grown));
		if (!grown)
			return load_error(ls, "out of memory");
		ls->entries = grown;
		ls->cap = cap;
	}
	ls->entries[ls->count++] = (struct load_entry){ user, secret, ls->line };
	return true;
}

/*
 * One line: blank, a comment (';' or '#'), or `"user" "secret"`. Like
 * PgBouncer, anything after the secret is ignored.
 */
static bool parse_line(struct load_state *ls, const char *p, const char *end)
{
	char *user = NULL, *secret = NULL;

	while (p < end && is_blank(*p))
		p++;
	if (p == end || *p == ';' || *p == '#')
		return true;
	if (*p != '"')
		return load_error(ls, "expected a quoted user name");
	if (!read_quoted(ls, &p, end, &user))
		return false;
	if (user[0] == '\0') {
		free(user);
		return load_error(ls, "empty user name");
	}
	while (p < end && is_blank(*p))
		p++;
	if (p == end || *p != '"') {
		free(user);
		return load_error(ls, "expected a quoted secret after the user name");
	}
	if (!read_quoted(ls, &p, end, &secret)) {
		free(user);
		return false;
	}
	if (!remember_entry(ls, user, secret)) {
		free(user);
		free_secret(secret);
		return false;
	}
	return true;
}

static bool read_lines(struct load_state *ls, FILE *f)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	bool ok = true;

	while (ok && (n = getline(&line, &cap, f)) >= 0) {
		ls->line++;
		size_t len = (size_t)n;
		if (len > 0 && line[len - 1] == '\n')
			len--;
		ok = parse_line(ls, line, line + len);
	}
	if (ok && ferror(f)) {
		int e = errno;
		ok = load_error(ls, strerror(e));
	}
	if (line) {
		OPENSSL_cleanse(line, cap);
		free(line);
	}
	return ok;
}

static int compare_load_entries(const void *a, const void *b)
{
	const struct load_entry *x = a, *y = b;
	int c = strcmp(x->user, y->user);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static void free_load_entries(struct load_state *ls)
{
	for (int i = 0; i < ls->count; i++) {
		free(ls->entries[i].user);
		free_secret(ls->entries[i].secret);
	}
	free(ls->entries);
	ls->entries = NULL;
	ls->count = 0;
}

/*
 * Sort by user and keep the last line for a user that appears twice (a later
 * line overrides an earlier one, as in PgBouncer), with a warning.
 */
static struct auth_file *build_auth_file(struct load_state *ls)
{
	struct auth_file *af = calloc(1, sizeof(*af));
	if (!af)
		return NULL;
	if (ls->count > 0) {
		af->entries = calloc((size_t)ls->count, sizeof(*af->entries));
		if (!af->entries) {
			free(af);
			return NULL;
		}
	}
	if (ls->count > 1)
		qsort(ls->entries, (size_t)ls->count, sizeof(*ls->entries), compare_load_entries);
	for (int i = 0; i < ls->count; i++) {
		struct load_entry *e = &ls->entries[i];
		if (i + 1 < ls->count && strcmp(e->user, e[1].user) == 0) {
			log_warning("%s:%d: user \"%s\" is listed again on line %d; the later line "
				    "wins",
				    ls->path, e->line, e->user, e[1].line);
			free(e->user);
			free_secret(e->secret);
			continue;
		}
		af->entries[af->count++] = (struct auth_entry){ e->user, e->secret, NULL };
	}
	/* ownership of the strings moved to af */
	free(ls->entries);
	ls->entries = NULL;
	ls->count = 0;
	return af;
}

struct auth_file *auth_file_load(const char *path, char *err, size_t errlen)
{
	struct load_state ls = { .path = path, .err = err, .errlen = errlen };
	struct auth_file *af = NULL;

	FILE *f = fopen(path, "re");
	if (!f) {
		int e = errno;
		if (err && errlen > 0)
			snprintf(err, errlen, "%s: %s", path, strerror(e));
		return NULL;
	}
	if (read_lines(&ls, f)) {
		af = build_auth_file(&ls);
		if (!af)
			load_error(&ls, "out of memory");
	}
	fclose(f);
	free_load_entries(&ls);
	return af;
}

void auth_file_free(struct auth_file *af)
{
	if (!af)
		return;
	for (int i = 0; i < af->count; i++) {
		free(af->entries[i].user);
		free_secret(af->entries[i].secret);
		free_verifier(af->entries[i].verifier);
	}
	free(af->entries);
	free(af);
}

static int compare_user_to_entry(const void *key, const void *entry)
{
	return strcmp(key, ((const struct auth_entry *)entry)->user);
}

static struct auth_entry *find_entry(const struct auth_file *af, const char *user)
{
	if (!af || !user || af->count == 0)
		return NULL;
	return bsearch(user, af->entries, (size_t)af->count, sizeof(*af->entries),
		       compare_user_to_entry);
}

const char *auth_file_lookup(const struct auth_file *af, const char *user)
{
	const struct auth_entry *e = find_entry(af, user);
	return e ? e->secret : NULL;
}

/*
 * the entry's verifier into out, made (and kept) now if this is its first
 * SCRAM login; a plaintext password's is made again when scram_iterations
 * changed since
 */
static bool entry_verifier(struct auth_entry *e, int iterations, struct scram_secret *out)
{
	if (e->verifier && (e->verifier->iterations == iterations || auth_secret_kind(e->secret) != SECRET_PLAIN)) {
		*out = *e->verifier;
		return true;
	}
	switch (auth_secret_kind(e->secret)) {
	case SECRET_SCRAM:
		if (!scram_parse_secret(e->secret, out))
			return false;
		break;
	case SECRET_PLAIN:
		if (!scram_secret_from_password(e->secret, iterations, out))
			return false;
		break;
	default:
		return false;
	}
	/* out of memory: this login still works, the next one derives again */
	free(e->verifier);
	e->verifier = malloc(sizeof(*e->verifier));
	if (e->verifier)
		*e->verifier = *out;
	return true;
}

bool auth_file_scram_verifier(struct auth_file *af, const char *user, int iterations, struct scram_secret *out)
{
	struct auth_entry *e = find_entry(af, user);
	return e && entry_verifier(e, iterations, out);
}

void auth_file_keep_verifiers(struct auth_file *fresh, const struct auth_file *old)
{
	if (!fresh || !old)
		return;
	for (int i = 0; i < old->count; i++) {
		const struct auth_entry *o = &old->entries[i];
		struct auth_entry *e = o->verifier ? find_entry(fresh, o->user) : NULL;
		if (!e || e->verifier || !auth_secure_equal(e->secret, o->secret))
			continue;
		e->verifier = malloc(sizeof(*e->verifier));
		if (e->verifier)
			*e->verifier = *o->verifier;
	}
}

/* ---- secrets ---- */

static bool is_md5_secret(const char *secret)
{
	if (strncmp(secret, MD5_PREFIX, 3) != 0 || strlen(secret) != 3 + MD5_HEX_LEN)
		return false;
	for (const char *p = secret + 3; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

enum secret_kind auth_secret_kind(const char *secret)
{
	struct scram_secret parsed;
	if (!secret)
		return SECRET_PLAIN;
	if (is_md5_secret(secret))
		return SECRET_MD5;
	/* a broken verifier is treated as a password, as PostgreSQL does */
	if (scram_parse_secret(secret, &parsed)) {
		OPENSSL_cleanse(&parsed, sizeof(parsed));
		return SECRET_SCRAM;
	}
	return SECRET_PLAIN;
}

/*
 * "md5" + hex(MD5(a || b)). When MD5 is unavailable (a FIPS provider) out
 * becomes "", which no response can equal, so logins fail closed.
 */
static void md5_hex_of(const void *a, size_t alen, const void *b, size_t blen, char out[36])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	/*
	 * Fetched once and reused (two digests a login): an implicit fetch, or a
	 * context made and freed each time, costs more than the digest itself.
	 */
	static EVP_MD *md5;
	static EVP_MD_CTX *ctx;
	if (!md5)
		md5 = EVP_MD_fetch(NULL, "MD5", NULL);
	if (md5 && !ctx)
		ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestInit_ex(ctx, md5, NULL) == 1 &&
		  EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
		  EVP_DigestFinal_ex(ctx, digest, &dlen) == 1 && dlen == MD5_HEX_LEN / 2;
	out[0] = '\0';
	if (!ok) {
		log_error("MD5 digest is not available");
		return;
	}
	memcpy(out, MD5_PREFIX, 3);
	for (unsigned int i = 0; i < dlen; i++) {
		out[3 + 2 * i] = hex[digest[i] >> 4];
		out[3 + 2 * i + 1] = hex[digest[i] & 15];
	}
	out[3 + MD5_HEX_LEN] = '\0';
}

void auth_md5_secret(const char *password, const char *user, char out[36])
{
	md5_hex_of(password, strlen(password), user, strlen(user), out);
}

void auth_md5_response(const char *md5secret, const uint8_t salt[4], char out[36])
{
	out[0] = '\0';
	if (!md5secret || !is_md5_secret(md5secret))
		return;
	md5_hex_of(md5secret + 3, MD5_HEX_LEN, salt, 4, out);
}

/*
 * The length is not hidden: the strings compared here (MD5 responses,
 * secrets) have lengths that are public or fixed by their format.
 */
bool auth_secure_equal(const char *a, const char *b)
{
	if (!a || !b)
		return false;
	size_t alen = strlen(a), blen = strlen(b);
	return alen == blen && CRYPTO_memcmp(a, b, alen) == 0;
}
