/*
 * saslprep: SASLprep (RFC 4013, the stringprep profile of RFC 3454) as
 * PostgreSQL applies it to passwords before SCRAM.
 *
 * PostgreSQL prepares a password when it stores a SCRAM secret and when it
 * checks one, and libpq prepares it before computing a proof; when the
 * password is not UTF-8 or SASLprep refuses it, all of them use the raw
 * bytes instead. saslprep_password() is that rule; saslprep() says why.
 *
 * PostgreSQL's own choices, kept here so the keys come out the same:
 *   - pure ASCII is returned unchanged (even with control characters);
 *   - unassigned code points (Unicode 3.2, table A.1) are refused;
 *   - the prohibited-output and bidirectional checks look at the string
 *     after mapping and before NFKC normalization;
 *   - a string that maps to nothing (e.g. only U+00AD) is refused.
 */
#ifndef PGPULSE_SASLPREP_H
#define PGPULSE_SASLPREP_H

enum saslprep_result {
	SASLPREP_OK,
	SASLPREP_INVALID_UTF8, /* not well-formed UTF-8 */
	SASLPREP_PROHIBITED,   /* prohibited or unassigned character, bidi rule, or empty */
	SASLPREP_NO_MEMORY,
};

/*
 * Prepare the NUL-terminated in. On SASLPREP_OK *out is a new UTF-8 string
 * (free it with saslprep_free); otherwise *out is NULL.
 */
enum saslprep_result saslprep(const char *in, char **out);

/*
 * The bytes PostgreSQL derives SCRAM keys from: the prepared password, or a
 * copy of the password itself when saslprep() refuses it. NULL only when
 * out of memory. Free with saslprep_free.
 */
char *saslprep_password(const char *password);

/* wipe (it held a password) and free; NULL is fine */
void saslprep_free(char *s);

/* the Unicode version of the normalization data, e.g. "15.0.0" */
const char *saslprep_unicode_version(void);

#endif
