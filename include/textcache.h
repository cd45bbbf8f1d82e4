/*
 * textcache: the fingerprints of query texts seen lately, by text.
 *
 * Applications repeat their statements: every execution of a
 * parameterized query parses the same text, and simple queries come back
 * word for word but for their constants ("... where aid = 4711"). For
 * those, normalizing again (about 550 instructions for a short query)
 * gives the fingerprint already known; this cache gives it for a hash and
 * a compare. A text matches one remembered when the two differ at most in
 * digits that the normalizer marked free (normalize_sql_marking: the digits
 * of plain number literals), digit for digit: same length, so "id = 7" and
 * "id = 42" take a slot each. A direct-mapped table of TEXTCACHE_SLOTS
 * texts of up to TEXTCACHE_TEXT bytes (296 bytes a slot, 151,552 bytes in
 * all, allocated at the first use); a longer text is never cached, a
 * colliding one replaces the older.
 */
#ifndef PGPULSE_TEXTCACHE_H
#define PGPULSE_TEXTCACHE_H

#include <stddef.h>
#include <stdint.h>

#define TEXTCACHE_SLOTS 512
#define TEXTCACHE_TEXT  240

/* the key of a text, for textcache_remember */
uint64_t textcache_hash(const char *text, size_t len);

/*
 * The fingerprint remembered for this text (free digits aside), or 0; *key
 * gets the text's key (textcache_hash) when len <= TEXTCACHE_TEXT. One call
 * for both: every request's text comes here.
 */
uint64_t textcache_find(const char *text, size_t len, uint64_t *key);

/*
 * remember text's fingerprint (fp != 0); free_digits: the bitmap that
 * normalize_sql_marking gave for it, or NULL (only the exact text matches)
 */
void textcache_remember(uint64_t hash, const char *text, size_t len, uint64_t fp,
			const unsigned char *free_digits);

/* forget everything (the normalizer's rules changed, or a test starts over) */
void textcache_clear(void);

/* bytes the cache takes (for SHOW MEM) */
size_t textcache_bytes(void);

#endif
