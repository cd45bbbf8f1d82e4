/*
 * textcache: a direct-mapped table from query text to fingerprint.
 *
 * The slot is picked by a 64-bit hash of the text with every digit read as
 * '0', eight bytes at a time (the caller hashes once for the lookup and the
 * store that follows a miss), so texts that differ only in the digits of
 * their constants land on one slot. A hit is confirmed by comparing the
 * whole text with the one stored, where only the bytes the normalizer
 * marked free (normalize_sql_marking) may differ, and only digit for
 * digit: a hash collision costs a normalization, never a wrong fingerprint.
 * The table is allocated at the first use, so a pooler with telemetry off
 * never holds it.
 */
#include "textcache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#if defined(__SSE2__) && defined(__GNUC__)
/* x86-64 always has SSE2: texts are hashed and compared 16 bytes at a time */
#define TEXTCACHE_SSE2 1
#include <emmintrin.h>
#endif

struct textcache_slot {
	uint64_t hash;
	uint64_t fp; /* 0: empty */
	uint16_t len;
	/* bit i: text[i] may be any digit (two bytes spare: a 16-byte step reads three) */
	unsigned char free_digits[TEXTCACHE_TEXT / 8 + 2];
	char text[TEXTCACHE_TEXT];
};

static struct textcache_slot *g_slots;

#define BYTES(b) (0x0101010101010101ull * (b))

/*
 * Bit 7 of each byte of x that is an ASCII digit: x ^ '0' puts a digit's
 * byte in 0..9; adding 0x76 to its low seven bits carries into bit 7 from 10
 * up, and a byte that had bit 7 already is no digit either. No carry
 * crosses a byte, so each byte is tested alone.
 */
static inline uint64_t digit_bytes(uint64_t x)
{
	uint64_t t = x ^ BYTES('0');
	return ((((t & BYTES(0x7f)) + BYTES(0x76)) | t) & BYTES(0x80)) ^ BYTES(0x80);
}

/* the eight bytes with every digit made '0' ('1'..'9' lose their low nibble) */
static inline uint64_t digits_as_zero(uint64_t x)
{
	return x & ~((digit_bytes(x) >> 7) * 0x0f);
}

static inline uint64_t load8(const char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* two 64-bit words folded into one through their 128-bit product */
static inline uint64_t fold(uint64_t a, uint64_t b)
{
#ifdef __SIZEOF_INT128__
	unsigned __int128 r = (unsigned __int128)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
	uint64_t h = a * b;
	return h ^ (h >> 29) ^ (a >> 32) * (b >> 32);
#endif
}

#ifdef TEXTCACHE_SSE2
/* a 16-byte mask of the ASCII digits (compares are signed: bytes >= 0x80 are below '0') */
static inline __m128i digits16(__m128i x)
{
	return _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8('0' - 1)),
			     _mm_cmplt_epi8(x, _mm_set1_epi8('9' + 1)));
}

static inline __m128i load16(const char *p)
{
	return _mm_loadu_si128((const __m128i *)(const void *)p);
}

/* the two halves of the 16 bytes at p, every digit made '0' */
static inline uint64_t fold16(const char *p, uint64_t h, uint64_t k)
{
	__m128i x = load16(p);
	x = _mm_andnot_si128(_mm_and_si128(digits16(x), _mm_set1_epi8(0x0f)), x);
	uint64_t a = (uint64_t)_mm_cvtsi128_si64(x);
	uint64_t b = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x));
	return fold(a ^ k, b ^ h);
}
#endif

/*
 * A slot index, not a fingerprint: a hit is confirmed by the whole text.
 * Sixteen bytes a step (the last step overlapping the one before).
 */
static inline uint64_t hash_text(const char *text, size_t len)
{
	const uint64_t k1 = 0x9e3779b97f4a7c15ull, k2 = 0xe7037ed1a0b42807ull;
	uint64_t h = len * k1, a, b;
	if (len >= 16) {
		const char *last = text + len - 16;
#ifdef TEXTCACHE_SSE2
		for (; text < last; text += 16)
			h = fold16(text, h, k2);
		return fold16(last, h ^ k1, k2);
#else
		for (; text < last; text += 16)
			h = fold(digits_as_zero(load8(text)) ^ k2,
				 digits_as_zero(load8(text + 8)) ^ h);
		a = load8(last);
		b = load8(last + 8);
#endif
	} else if (len >= 8) {
		a = load8(text);
		b = load8(text + len - 8);
	} else {
		a = b = 0;
		for (size_t j = 0; j < len; j++)
			a = a << 8 | (uint8_t)text[j];
	}
	return fold(digits_as_zero(a) ^ k2, digits_as_zero(b) ^ h ^ k1);
}

/* bit 7 of byte j set where bit j of a bitmap byte is: spread[free] */
static uint64_t spread[256];

static void spread_init(void)
{
	for (unsigned v = 0; v < 256; v++)
		for (unsigned j = 0; j < 8; j++)
			if (v >> j & 1)
				spread[v] |= 0x80ull << (8 * j);
}

/* bit 7 of each byte of x that is not zero */
static inline uint64_t nonzero_bytes(uint64_t x)
{
	return (((x & BYTES(0x7f)) + BYTES(0x7f)) | x) & BYTES(0x80);
}

/*
 * text equals the slot's, but for free digits that are still digits. Eight
 * bytes at a time (little-endian: byte j of a word is text[i + j], bit j of
 * its bitmap byte); the last word overlaps the one before, and its bitmap
 * is shifted to match.
 */
static bool same_but_free_digits(const struct textcache_slot *s, const char *text, size_t len)
{
#ifdef TEXTCACHE_SSE2
	if (len >= 16) {
		/* as below, sixteen bytes a step: bit j of a mask is byte i + j */
		for (size_t i = 0;; i += 16) {
			if (i + 16 > len)
				i = len - 16;
			__m128i a = load16(s->text + i), b = load16(text + i);
			unsigned differ = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(a, b)) ^ 0xffff;
			if (differ) {
				const unsigned char *f = &s->free_digits[i / 8];
				unsigned three = f[0] | (unsigned)f[1] << 8 | (unsigned)f[2] << 16;
				unsigned free = three >> (i % 8);
				if (differ & ~(free & (unsigned)_mm_movemask_epi8(digits16(b))))
					return false;
			}
			if (i + 16 >= len)
				return true;
		}
	}
#endif
	if (len < 8) {
		for (size_t j = 0; j < len; j++)
			if (s->text[j] != text[j] &&
			    !((s->free_digits[0] >> j & 1) && (unsigned)(text[j] - '0') < 10))
				return false;
		return true;
	}
	size_t i = 0;
	for (;; i += 8) {
		if (i + 8 > len)
			i = len - 8;
		uint64_t a = load8(s->text + i), b = load8(text + i);
		if (a != b) {
			unsigned free = s->free_digits[i / 8];
			if (i % 8)
				free = (free | (unsigned)s->free_digits[i / 8 + 1] << 8) >> (i % 8);
			uint64_t allowed = spread[free & 0xff] & digit_bytes(b);
			if (nonzero_bytes(a ^ b) & ~allowed)
				return false;
		}
		if (i + 8 >= len)
			return true;
	}
}
uint64_t textcache_hash(const char *text, size_t len)
{
	return hash_text(text, len);
}

uint64_t textcache_find(const char *text, size_t len, uint64_t *key)
{
	if (len > TEXTCACHE_TEXT)
		return 0;
	uint64_t hash = *key = hash_text(text, len);
	if (!g_slots)
		return 0;
	const struct textcache_slot *s = &g_slots[hash % TEXTCACHE_SLOTS];
	if (s->fp && s->hash == hash && s->len == len && same_but_free_digits(s, text, len))
		return s->fp;
	return 0;
}

void textcache_remember(uint64_t hash, const char *text, size_t len, uint64_t fp,
			const unsigned char *free_digits)
{
	if (len > TEXTCACHE_TEXT || fp == 0)
		return;
	if (!g_slots) {
		g_slots = xcalloc(TEXTCACHE_SLOTS, sizeof(*g_slots));
		if (!spread[1])
			spread_init();
	}
	struct textcache_slot *s = &g_slots[hash % TEXTCACHE_SLOTS];
	s->hash = hash;
	s->fp = fp;
	s->len = (uint16_t)len;
	memcpy(s->text, text, len);
	memset(s->free_digits, 0, sizeof(s->free_digits));
	if (free_digits)
		memcpy(s->free_digits, free_digits, (len + 7) / 8);
}

void textcache_clear(void)
{
	free(g_slots);
	g_slots = NULL;
}

size_t textcache_bytes(void)
{
	return g_slots ? TEXTCACHE_SLOTS * sizeof(*g_slots) : 0;
}
