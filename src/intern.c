/*
 * intern: a chained hash table of reference-counted strings.
 *
 * The caller sees only the text; the entry that owns it sits just before it
 * in the same allocation, so intern_drop() finds its entry without a
 * lookup. The table doubles when it holds more strings than buckets and
 * never shrinks: its size follows the peak number of distinct values, which
 * is small next to the connections that share them.
 */
#include "intern.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct intern_entry {
	struct intern_entry *next; /* same bucket */
	uint32_t hash;
	uint32_t refs;
	size_t len;
	char text[];
};

static struct intern_entry **g_buckets;
static size_t g_nbuckets; /* a power of two, or 0 before the first string */
static size_t g_count;
static size_t g_bytes;

static uint32_t hash_of(const char *s, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a: the strings are short */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

static struct intern_entry *entry_of(const char *text)
{
	return (struct intern_entry *)(void *)(text - offsetof(struct intern_entry, text));
}

static void grow_table(void)
{
	size_t n = g_nbuckets ? g_nbuckets * 2 : 64;
	struct intern_entry **b = xcalloc(n, sizeof(*b));
	for (size_t i = 0; i < g_nbuckets; i++) {
		struct intern_entry *e = g_buckets[i];
		while (e) {
			struct intern_entry *next = e->next;
			size_t slot = e->hash & (n - 1);
			e->next = b[slot];
			b[slot] = e;
			e = next;
		}
	}
	free(g_buckets);
	g_buckets = b;
	g_nbuckets = n;
}

const char *intern_get(const char *s)
{
	if (!s)
		return NULL;
	size_t len = strlen(s);
	uint32_t h = hash_of(s, len);
	if (g_nbuckets) {
		for (struct intern_entry *e = g_buckets[h & (g_nbuckets - 1)]; e; e = e->next) {
			if (e->hash == h && e->len == len && memcmp(e->text, s, len) == 0) {
				e->refs++;
				return e->text;
			}
		}
	}
	if (g_count >= g_nbuckets)
		grow_table();
	struct intern_entry *e = xmalloc(sizeof(*e) + len + 1);
	e->hash = h;
	e->refs = 1;
	e->len = len;
	memcpy(e->text, s, len + 1);
	size_t slot = h & (g_nbuckets - 1);
	e->next = g_buckets[slot];
	g_buckets[slot] = e;
	g_count++;
	g_bytes += sizeof(*e) + len + 1;
	return e->text;
}

const char *intern_hold(const char *interned)
{
	if (interned)
		entry_of(interned)->refs++;
	return interned;
}

void intern_drop(const char *interned)
{
	if (!interned)
		return;
	struct intern_entry *e = entry_of(interned);
	if (--e->refs > 0)
		return;
	struct intern_entry **link = &g_buckets[e->hash & (g_nbuckets - 1)];
	while (*link != e)
		link = &(*link)->next;
	*link = e->next;
	g_count--;
	g_bytes -= sizeof(*e) + e->len + 1;
	free(e);
}

void intern_set(const char **slot, const char *value)
{
	const char *old = *slot;
	*slot = intern_get(value);
	intern_drop(old); /* after: value may be old's own text */
}

void intern_stats(size_t *count, size_t *bytes)
{
	*count = g_count;
	*bytes = g_bytes + g_nbuckets * sizeof(*g_buckets);
}
