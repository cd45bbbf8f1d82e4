/*
 * fuzz_saslprep: SASLprep of passwords (src/saslprep.c), which reads every
 * cleartext password a client sends (up to 64 kB) and every plaintext
 * password in the auth_file or a database's password=.
 *
 * Input: the password; bytes after a NUL are ignored (passwords are C
 * strings). It is copied into a heap block of its exact length.
 * Asserts beyond "no crash":
 *   - pure ASCII is prepared to itself (PostgreSQL's rule);
 *   - a prepared password is non-empty, well-formed UTF-8 (no surrogates,
 *     nothing past U+10FFFF) and at most 18 times longer (U+FDFA);
 *   - preparing the prepared password again refuses it or changes nothing
 *     (NFKC is idempotent, and NFKC never yields a character that the
 *     mapping step would change);
 *   - the same input is prepared the same way twice;
 *   - saslprep_password() is the prepared password, or the input itself
 *     when saslprep() refuses it.
 */
#include "saslprep.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* strict UTF-8, with no NUL inside */
static bool well_formed(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned char b = s[i];
		size_t n = b < 0x80                 ? 1
			   : b >= 0xC2 && b <= 0xDF ? 2
			   : b >= 0xE0 && b <= 0xEF ? 3
			   : b >= 0xF0 && b <= 0xF4 ? 4
						    : 0;
		if (b == 0 || n == 0 || i + n > len)
			return false;
		uint32_t cp = b & (0x7F >> (n == 1 ? 0 : n));
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		static const uint32_t least[] = { 0, 0, 0x80, 0x800, 0x10000 };
		if (cp < least[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
			return false;
		i += n;
	}
	return true;
}

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size + 1);
	memcpy(in, data, size);
	in[size] = '\0';
	size_t in_len = strlen(in);

	char *out = NULL, *again = NULL, *twice = NULL;
	enum saslprep_result r = saslprep(in, &out);
	assert(r == SASLPREP_OK || r == SASLPREP_INVALID_UTF8 || r == SASLPREP_PROHIBITED);
	assert((r == SASLPREP_OK) == (out != NULL));
	if (is_ascii(in))
		assert(r == SASLPREP_OK && strcmp(out, in) == 0);

	if (r == SASLPREP_OK && !is_ascii(in)) {
		size_t len = strlen(out);
		assert(len > 0 && len <= 18 * in_len);
		assert(well_formed((const unsigned char *)out, len));
		enum saslprep_result r2 = saslprep(out, &again);
		assert(r2 == SASLPREP_PROHIBITED || (r2 == SASLPREP_OK && strcmp(again, out) == 0));
	}

	enum saslprep_result r3 = saslprep(in, &twice);
	assert(r3 == r && (r != SASLPREP_OK || strcmp(twice, out) == 0));

	char *password = saslprep_password(in);
	assert(password && strcmp(password, r == SASLPREP_OK ? out : in) == 0);

	saslprep_free(password);
	saslprep_free(twice);
	saslprep_free(again);
	saslprep_free(out);
	free(in);
	return 0;
}
