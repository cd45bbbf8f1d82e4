/*
 * stmt_names: a pass-through client's statement names -> fingerprints
 * (see include/stmt_names.h for why and when).
 *
 * Open addressing with linear probing, kept at most half full; a delete
 * shifts later entries back, so no tombstones pile up and a lookup stops
 * at the first free slot. Eviction scans for the oldest stamp: it happens
 * only on a Parse of a new name with the table full, which costs the
 * client a round trip to the server anyway.
 */
#include "stmt_names.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define STMT_NAME_MAX_LEN 256 /* a longer name is not remembered: its Binds go unattributed */

struct stmt_name {
	char *name; /* NULL: a free slot; len bytes, not NUL-terminated */
	uint32_t len;
	uint32_t hash;
	uint64_t fp;
	uint64_t last_use;
};

struct stmt_names {
	struct stmt_name *slots;
	uint32_t cap; /* a power of two */
	uint32_t count;
	uint64_t clock;
	size_t name_bytes;
};

static uint32_t hash_name(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

static struct stmt_name *find_slot(const struct stmt_names *m, const char *name, size_t len,
				   uint32_t h)
{
	uint32_t mask = m->cap - 1;
	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		struct stmt_name *n = &m->slots[i];
		if (!n->name)
			return n;
		if (n->hash == h && n->len == len && memcmp(n->name, name, len) == 0)
			return n;
	}
}

static void grow(struct stmt_names *m)
{
	struct stmt_name *old = m->slots;
	uint32_t old_cap = m->cap;
	m->cap = m->cap ? m->cap * 2 : 16;
	m->slots = xcalloc(m->cap, sizeof(*m->slots));
	for (uint32_t i = 0; i < old_cap; i++)
		if (old[i].name)
			*find_slot(m, old[i].name, old[i].len, old[i].hash) = old[i];
	free(old);
}

static void delete_slot(struct stmt_names *m, struct stmt_name *n)
{
	uint32_t mask = m->cap - 1, i = (uint32_t)(n - m->slots);
	m->name_bytes -= n->len;
	free(n->name);
	n->name = NULL;
	m->count--;
	for (uint32_t j = (i + 1) & mask; m->slots[j].name; j = (j + 1) & mask) {
		uint32_t home = m->slots[j].hash & mask;
		bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
		if (movable) {
			m->slots[i] = m->slots[j];
			m->slots[j].name = NULL;
			i = j;
		}
	}
}

static void evict_least_recently_used(struct stmt_names *m)
{
	struct stmt_name *oldest = NULL;
	for (uint32_t i = 0; i < m->cap; i++)
		if (m->slots[i].name && (!oldest || m->slots[i].last_use < oldest->last_use))
			oldest = &m->slots[i];
	if (oldest)
		delete_slot(m, oldest);
}

void stmt_names_remember(struct stmt_names **mp, const char *name, size_t len, uint64_t fp)
{
	if (len > STMT_NAME_MAX_LEN)
		return;
	if (!*mp)
		*mp = xcalloc(1, sizeof(**mp));
	struct stmt_names *m = *mp;
	uint32_t h = hash_name(name, len);
	if (m->cap) {
		struct stmt_name *n = find_slot(m, name, len, h);
		if (n->name) {
			/* prepared again after a Close or DEALLOCATE pgpulse did not see: the
			 * newest text wins */
			n->fp = fp;
			n->last_use = ++m->clock;
			return;
		}
	}
	if (m->count >= STMT_NAMES_MAX)
		evict_least_recently_used(m);
	if ((m->count + 1) * 2 > m->cap)
		grow(m);
	struct stmt_name *n = find_slot(m, name, len, h);
	n->name = xmalloc(len ? len : 1);
	memcpy(n->name, name, len);
	n->len = (uint32_t)len;
	n->hash = h;
	n->fp = fp;
	n->last_use = ++m->clock;
	m->count++;
	m->name_bytes += len;
}

uint64_t stmt_names_find(struct stmt_names *m, const char *name, size_t len)
{
	if (!m || !m->count)
		return 0;
	struct stmt_name *n = find_slot(m, name, len, hash_name(name, len));
	if (!n->name)
		return 0;
	n->last_use = ++m->clock;
	return n->fp;
}

void stmt_names_forget(struct stmt_names *m, const char *name, size_t len)
{
	if (!m || !m->count)
		return;
	struct stmt_name *n = find_slot(m, name, len, hash_name(name, len));
	if (n->name)
		delete_slot(m, n);
}

size_t stmt_names_count(const struct stmt_names *m)
{
	return m ? m->count : 0;
}

size_t stmt_names_bytes(const struct stmt_names *m)
{
	return m ? sizeof(*m) + (size_t)m->cap * sizeof(*m->slots) + m->name_bytes : 0;
}

void stmt_names_free(struct stmt_names *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->cap; i++)
		free(m->slots[i].name);
	free(m->slots);
	free(m);
}
