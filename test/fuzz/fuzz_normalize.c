/*
 * fuzz_normalize: the SQL normalizer (src/telemetry/normalize.c), which
 * reads the text of every Query and Parse message a client sends.
 *
 * Input: SQL text, not NUL-terminated; the first byte also picks the size
 * of a second, small output buffer. Every buffer is heap-allocated to its
 * exact size, so ASan sees any read past len or write past outlen.
 * Asserts beyond "no crash":
 *   - the text fits its buffer: at most NORMALIZE_MAX bytes plus "...";
 *   - normalizing the same input again gives the same text and fingerprint;
 *   - the same text always has the same fingerprint (a small buffer that
 *     cuts nothing yields the very text and fingerprint of the big one);
 *   - with a small buffer the text ends before outlen (empty below 4);
 *   - normalize_sql_marking gives the same text, and the input with every
 *     digit it marked free replaced by another digit (picked from the input
 *     itself) normalizes to that text again: what the text cache relies on;
 *   - the text cache (src/telemetry/textcache.c) then finds that varied
 *     input under the fingerprint, and never finds it once a byte that is
 *     not a free digit differs (it must then be normalized again).
 */
#include "normalize.h"
#include "textcache.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t big = NORMALIZE_MAX + 4;
	size_t small = size ? data[0] % 72 : 0;
	char *in = malloc(size ? size : 1);
	char *out = malloc(big), *again = malloc(big), *cut = malloc(small ? small : 1);

	if (size)
		memcpy(in, data, size);
	uint64_t fp = normalize_sql(in, size, out, big);
	size_t len = strlen(out);
	assert(len <= NORMALIZE_MAX + 3);

	uint64_t fp2 = normalize_sql(in, size, again, big);
	assert(fp2 == fp && strcmp(again, out) == 0);

	uint64_t fp3 = normalize_sql(in, size, cut, small);
	if (small > 0) {
		size_t clen = strnlen(cut, small);
		assert(clen < small);
		if (small < 4)
			assert(clen == 0);
		/*
		 * A list "(?,?" is written and then taken back to "(?", so the
		 * text may touch the limit before it shrinks: leave room for that.
		 */
		if ((small >= 12 && len + 8 <= small - 4) || (small >= 4 && len == 0)) {
			assert(strcmp(cut, out) == 0);
			assert(fp3 == fp);
		}
		if (strcmp(cut, out) == 0)
			assert(fp3 == fp);
	}
	if (size <= NORMALIZE_MARK_MAX) {
		unsigned char *marks = calloc(1, size / 8 + 1);
		char *marked = malloc(big), *varied = malloc(size ? size : 1);
		uint64_t fp4 = normalize_sql_marking(in, size, marked, big, marks);
		assert(fp4 == fp && strcmp(marked, out) == 0);
		if (size)
			memcpy(varied, in, size);
		for (size_t i = 0; i < size; i++) {
			if (!(marks[i / 8] >> (i % 8) & 1))
				continue;
			assert(in[i] >= '0' && in[i] <= '9');
			varied[i] = (char)('0' + (in[i] - '0' + 1 + data[(i * 7) % size] % 9) % 10);
		}
		uint64_t fp5 = normalize_sql(varied, size, again, big);
		assert(fp5 == fp && strcmp(again, out) == 0);
		if (size <= TEXTCACHE_TEXT && fp) {
			uint64_t key;
			textcache_clear(); /* only this input's entry: a hit below is its */
			textcache_remember(textcache_hash(in, size), in, size, fp, marks);
			assert(textcache_find(varied, size, &key) == fp);
			/* a byte that is not a free digit changed: no hit */
			size_t at = size ? data[0] % size : 0;
			if (size && !(marks[at / 8] >> (at % 8) & 1)) {
				varied[at] ^= 0x40;
				assert(textcache_find(varied, size, &key) == 0);
			}
		}
		free(marks);
		free(marked);
		free(varied);
	}
	free(in);
	free(out);
	free(again);
	free(cut);
	return 0;
}
