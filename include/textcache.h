/*
 * textcache: the fingerprints of query texts seen lately, by exact text.
 *
 * Applications repeat their statements word for word: every execution of
 * a parameterized query parses the same text, and the same simple queries
 * come back. For those, normalizing again (about 600 instructions for a
 * short query) gives the fingerprint already known; this cache gives it for
 * a hash and a compare. A direct-mapped table of TEXTCACHE_SLOTS texts of
 * up to TEXTCACHE_TEXT bytes; a longer text is never cached, a colliding
 * one replaces the older.
 */
#ifndef PGPULSE_TEXTCACHE_H
#define PGPULSE_TEXTCACHE_H

#include <stddef.h>
#include <stdint.h>

#define TEXTCACHE_SLOTS 512
#define TEXTCACHE_TEXT  240

/* the key of a text, for the two calls below */
uint64_t textcache_hash(const char *text, size_t len);

/* the fingerprint remembered for exactly this text, or 0 */
uint64_t textcache_find(uint64_t hash, const char *text, size_t len);

/* remember text's fingerprint (fp != 0) */
void textcache_remember(uint64_t hash, const char *text, size_t len, uint64_t fp);

/* forget everything (the normalizer's rules changed, or a test starts over) */
void textcache_clear(void);

/* bytes the cache takes (for SHOW MEM) */
size_t textcache_bytes(void);

#endif
