/*
 * textcache: a direct-mapped table from exact query text to fingerprint.
 *
 * The slot is picked by a 64-bit hash of the text, read eight bytes at a
 * time (the caller hashes once for the lookup and the store that follows a
 * miss); a hit is confirmed by comparing the whole text, so a hash collision
 * costs a normalization, never a wrong fingerprint. The table is allocated
 * at the first use, so a pooler with telemetry off never holds it.
 */
#include "textcache.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct textcache_slot {
	uint64_t hash;
	uint64_t fp; /* 0: empty */
	uint16_t len;
	char text[TEXTCACHE_TEXT];
};

static struct textcache_slot *g_slots;

/* a slot index, not a fingerprint: a hit is confirmed by the whole text */
uint64_t textcache_hash(const char *text, size_t len)
{
	const uint64_t k = 0x9e3779b97f4a7c15ull;
	uint64_t h = len * k, v;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		memcpy(&v, text + i, 8);
		h = (h ^ v) * k;
		h ^= h >> 29;
	}
	if (i < len) {
		if (len >= 8) {
			memcpy(&v, text + len - 8, 8); /* the last eight bytes, overlapping */
		} else {
			v = 0;
			for (size_t j = 0; j < len; j++)
				v = v << 8 | (uint8_t)text[j];
		}
		h = (h ^ v) * k;
		h ^= h >> 29;
	}
	return h;
}

uint64_t textcache_find(uint64_t hash, const char *text, size_t len)
{
	if (!g_slots || len > TEXTCACHE_TEXT)
		return 0;
	const struct textcache_slot *s = &g_slots[hash % TEXTCACHE_SLOTS];
	if (s->fp && s->hash == hash && s->len == len && memcmp(s->text, text, len) == 0)
		return s->fp;
	return 0;
}

void textcache_remember(uint64_t hash, const char *text, size_t len, uint64_t fp)
{
	if (len > TEXTCACHE_TEXT || fp == 0)
		return;
	if (!g_slots)
		g_slots = xcalloc(TEXTCACHE_SLOTS, sizeof(*g_slots));
	struct textcache_slot *s = &g_slots[hash % TEXTCACHE_SLOTS];
	s->hash = hash;
	s->fp = fp;
	s->len = (uint16_t)len;
	memcpy(s->text, text, len);
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
