/*
 * normalize: SQL text -> query fingerprint, without a parser.
 *
 * The text of a Query or Parse message is lexed once, left to right, and
 * rewritten so that queries differing only in their constants, spacing,
 * keyword case or comments read the same:
 *
 *   SELECT pg_sleep( 0.1 )   -- slow          ->  select pg_sleep(?)
 *   select * from t where id in (1, 2, 3)     ->  select*from t where id in(?)
 *
 * Literals (numbers, every string form including dollar quotes, TRUE, FALSE,
 * NULL — but not after IS [NOT], where they are tests) and $n parameters
 * become "?", a unary minus included; unquoted words are lowercased (ASCII);
 * "quoted identifiers" stay as written; comments and trailing ';' go; a space
 * is kept only between two word-like tokens; a parenthesized or bracketed
 * list of constants "(?,?,?)" reads "(?)". The fingerprint is a 64-bit hash
 * of the normalized text (a wyhash-style multiply-fold, the same on every
 * platform), so two queries share a fingerprint exactly when their normalized
 * texts are equal (barring a 64-bit collision). It is not stored anywhere and
 * may differ between versions.
 *
 * It runs on every query on the hot path: one pass, no allocation, the
 * caller owns both buffers.
 */
#ifndef PGPULSE_NORMALIZE_H
#define PGPULSE_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>

#define NORMALIZE_MAX 1024 /* normalized text is cut at this many bytes (then "...") */

/*
 * Normalize SQL text: `in` is NOT NUL-terminated (len bytes; it may be a prefix of a longer
 * query — handle a cut in the middle of a string, comment or token gracefully). Writes a
 * NUL-terminated normalized text into out (outlen >= NORMALIZE_MAX + 4) and returns its
 * 64-bit fingerprint (a hash of the normalized text, see above). Never reads past len,
 * never allocates, O(len). Bytes of out after the text's NUL are scratch.
 *
 * A smaller out is tolerated: the text is then cut earlier (at outlen - 4 bytes, or
 * empty when outlen < 4), never overflowing it. Arbitrary bytes are accepted; the
 * output never contains a NUL before its end.
 */
uint64_t normalize_sql(const char *in, size_t len, char *out, size_t outlen);

/*
 * As normalize_sql, and also tell which digits of the input may change
 * without changing the text (and so the fingerprint): those of the number
 * literals that are plain runs of digits ("id = 42", "limit 10"), but not of
 * identifiers ("t1", "\"a1\""), parameters, strings, comments, or numbers
 * such as 4.2, 1e5, 0x1f. Bit i of free_digits (i % 8 of byte i / 8, the
 * caller's, zeroed, (len + 7) / 8 bytes) is set for each such byte in[i].
 * Any text that differs from in only in those bytes, each still a digit,
 * normalizes to the same text (the text cache relies on it: textcache.h).
 * Only for len <= NORMALIZE_MARK_MAX and outlen >= NORMALIZE_MAX + 4;
 * otherwise nothing is marked.
 */
#define NORMALIZE_MARK_MAX (NORMALIZE_MAX / 2)
uint64_t normalize_sql_marking(const char *in, size_t len, char *out, size_t outlen,
			       unsigned char *free_digits);

#endif
