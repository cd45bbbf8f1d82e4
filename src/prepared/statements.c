/*
 * prepared/statements: what the prepared module remembers — one shared
 * statement per distinct (query text, parameter types) in the worker's
 * table, each client's names for them, each server's set of those it has
 * prepared (with the stamps that pick the least recently used).
 *
 * Both maps are open-addressing tables with linear probing; a delete
 * shifts later entries back so that no tombstones pile up. A statement
 * lives while anything refers to it: a client name, a server, a queued
 * message (src/prepared/protocol.c).
 */
#include "prepared_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "config.h"
#include "server.h"
#include "util.h"
#include "worker.h"

/* ---- the shared statements ---- */

static struct ps_table *table(void)
{
	if (!worker->prepared) {
		worker->prepared = xcalloc(1, sizeof(struct ps_table));
		worker->prepared->nbuckets = 64;
		worker->prepared->buckets = xcalloc(64, sizeof(struct ps_stmt *));
	}
	return worker->prepared;
}

uint64_t ps_hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

struct ps_stmt *ps_stmt_find(const uint8_t *blob, uint32_t len, uint64_t h)
{
	struct ps_table *t = table();
	for (struct ps_stmt *st = t->buckets[h & (t->nbuckets - 1)]; st; st = st->next)
		if (st->hash == h && st->blob_len == len && memcmp(st->blob, blob, len) == 0)
			return st;
	return NULL;
}

static void table_grow(struct ps_table *t)
{
	uint32_t n = t->nbuckets * 2;
	struct ps_stmt **b = xcalloc(n, sizeof(*b));
	for (uint32_t i = 0; i < t->nbuckets; i++) {
		struct ps_stmt *st = t->buckets[i], *next;
		for (; st; st = next) {
			next = st->next;
			st->next = b[st->hash & (n - 1)];
			b[st->hash & (n - 1)] = st;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

struct ps_stmt *ps_stmt_create(const uint8_t *blob, uint32_t len, uint64_t h, uint16_t ntypes)
{
	struct ps_table *t = table();
	if (t->count >= t->nbuckets)
		table_grow(t);
	struct ps_stmt *st = xcalloc(1, sizeof(*st) + len);
	st->hash = h;
	st->id = ++t->next_id;
	st->blob_len = len;
	st->ntypes = ntypes;
	memcpy(st->blob, blob, len);
	st->next = t->buckets[h & (t->nbuckets - 1)];
	t->buckets[h & (t->nbuckets - 1)] = st;
	t->count++;
	return st;
}

void ps_stmt_hold(struct ps_stmt *st)
{
	if (st)
		st->refs++;
}

void ps_stmt_drop(struct ps_stmt *st)
{
	if (!st || --st->refs > 0)
		return;
	struct ps_table *t = table();
	struct ps_stmt **pp = &t->buckets[st->hash & (t->nbuckets - 1)];
	while (*pp && *pp != st)
		pp = &(*pp)->next;
	if (*pp)
		*pp = st->next;
	t->count--;
	free(st);
}

void ps_put_server_name(struct pktbuf *b, const struct ps_stmt *st)
{
	char name[40];
	snprintf(name, sizeof(name), PS_NAME_PREFIX "%llu", (unsigned long long)st->id);
	pkt_put_str(b, name);
}

/* ---- a client's names ---- */

static uint32_t name_hash(const char *s)
{
	uint32_t h = (uint32_t)ps_hash_bytes(s, strlen(s));
	return h ? h : 1;
}

struct ps_client *ps_client_map(struct client *c)
{
	if (!c->ps)
		c->ps = xcalloc(1, sizeof(*c->ps));
	return c->ps;
}

struct ps_name *ps_name_find(const struct ps_client *m, const char *name)
{
	if (!m || !m->count)
		return NULL;
	uint32_t h = name_hash(name), mask = m->cap - 1;
	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		struct ps_name *n = &m->slots[i];
		if (!n->name)
			return NULL;
		if (n->hash == h && strcmp(n->name, name) == 0)
			return n;
	}
}

static void name_insert(struct ps_client *m, char *name, uint32_t h, struct ps_stmt *st)
{
	uint32_t mask = m->cap - 1, i = h & mask;
	while (m->slots[i].name)
		i = (i + 1) & mask;
	m->slots[i] = (struct ps_name){ name, h, st };
	m->count++;
}

/* the map takes a reference on st */
void ps_name_add(struct client *c, const char *name, struct ps_stmt *st)
{
	struct ps_client *m = ps_client_map(c);
	if ((m->count + 1) * 2 > m->cap) {
		struct ps_name *old = m->slots;
		uint32_t old_cap = m->cap;
		m->cap = m->cap ? m->cap * 2 : 16;
		m->slots = xcalloc(m->cap, sizeof(*m->slots));
		m->count = 0;
		for (uint32_t i = 0; i < old_cap; i++)
			if (old[i].name)
				name_insert(m, old[i].name, old[i].hash, old[i].stmt);
		free(old);
	}
	name_insert(m, xstrdup(name), name_hash(name), st);
	ps_stmt_hold(st);
	st->clients++;
}

/* linear probing: close the gap so that later entries stay reachable */
void ps_name_delete_slot(struct ps_client *m, uint32_t i)
{
	uint32_t mask = m->cap - 1;
	struct ps_stmt *st = m->slots[i].stmt;
	free(m->slots[i].name);
	m->slots[i].name = NULL;
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
	st->clients--;
	ps_stmt_drop(st);
}

/* remove name; only when it maps to only_if, if that is given */
void ps_name_remove(struct ps_client *m, const char *name, const struct ps_stmt *only_if)
{
	struct ps_name *n = ps_name_find(m, name);
	if (n && (!only_if || n->stmt == only_if))
		ps_name_delete_slot(m, (uint32_t)(n - m->slots));
}

void ps_names_clear(struct ps_client *m)
{
	for (uint32_t i = 0; m && i < m->cap; i++) {
		if (m->slots[i].name) {
			free(m->slots[i].name);
			m->slots[i].name = NULL;
			m->slots[i].stmt->clients--;
			ps_stmt_drop(m->slots[i].stmt);
		}
	}
	if (m)
		m->count = 0;
}

uint32_t ps_client_name_limit(void)
{
	uint64_t n = (uint64_t)worker->cfg->max_prepared_statements * PS_CLIENT_FACTOR;
	return n < PS_CLIENT_MIN_NAMES ? PS_CLIENT_MIN_NAMES : (uint32_t)(n > 1000000 ? 1000000 : n);
}

/* ---- a server's statements ---- */

struct ps_server *ps_server_of(struct server *s)
{
	if (!s->ps)
		s->ps = xcalloc(1, sizeof(*s->ps));
	return s->ps;
}

static uint32_t held_home(const struct ps_stmt *st, uint32_t mask)
{
	return (uint32_t)((st->id * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

struct ps_held *ps_held_find(const struct ps_server *sp, const struct ps_stmt *st)
{
	if (!sp->count)
		return NULL;
	uint32_t mask = sp->cap - 1;
	for (uint32_t i = held_home(st, mask);; i = (i + 1) & mask) {
		if (!sp->slots[i].stmt)
			return NULL;
		if (sp->slots[i].stmt == st)
			return &sp->slots[i];
	}
}

static void held_insert(struct ps_server *sp, struct ps_held h)
{
	uint32_t mask = sp->cap - 1, i = held_home(h.stmt, mask);
	while (sp->slots[i].stmt)
		i = (i + 1) & mask;
	sp->slots[i] = h;
	sp->count++;
}

struct ps_held *ps_held_add(struct ps_server *sp, struct ps_stmt *st)
{
	struct ps_held *h = ps_held_find(sp, st);
	if (h)
		return h;
	if ((sp->count + 1) * 2 > sp->cap) {
		struct ps_held *old = sp->slots;
		uint32_t old_cap = sp->cap;
		sp->cap = sp->cap ? sp->cap * 2 : 16;
		sp->slots = xcalloc(sp->cap, sizeof(*sp->slots));
		sp->count = 0;
		for (uint32_t i = 0; i < old_cap; i++)
			if (old[i].stmt)
				held_insert(sp, old[i]);
		free(old);
	}
	held_insert(sp, (struct ps_held){ st, ++sp->clock, false, 0 });
	ps_stmt_hold(st);
	st->servers++;
	return ps_held_find(sp, st);
}

void ps_held_remove(struct ps_server *sp, struct ps_stmt *st)
{
	struct ps_held *h = ps_held_find(sp, st);
	if (!h)
		return;
	uint32_t mask = sp->cap - 1, i = (uint32_t)(h - sp->slots);
	sp->slots[i].stmt = NULL;
	sp->count--;
	for (uint32_t j = (i + 1) & mask; sp->slots[j].stmt; j = (j + 1) & mask) {
		uint32_t home = held_home(sp->slots[j].stmt, mask);
		bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
		if (movable) {
			sp->slots[i] = sp->slots[j];
			sp->slots[j].stmt = NULL;
			i = j;
		}
	}
	st->servers--;
	ps_stmt_drop(st);
}

void ps_held_clear(struct ps_server *sp)
{
	for (uint32_t i = 0; i < sp->cap; i++) {
		struct ps_stmt *st = sp->slots[i].stmt;
		if (st) {
			sp->slots[i].stmt = NULL;
			st->servers--;
			ps_stmt_drop(st);
		}
	}
	sp->count = 0;
}

/* eviction is rare (a miss with a full set, which costs a round trip anyway): a scan will do */
struct ps_stmt *ps_held_lru(const struct ps_server *sp)
{
	const struct ps_held *best = NULL;
	for (uint32_t i = 0; i < sp->cap; i++)
		if (sp->slots[i].stmt && (!best || sp->slots[i].last_use < best->last_use))
			best = &sp->slots[i];
	return best ? best->stmt : NULL;
}

/* ---- the module's face: counts, the listing, exit ---- */

void prepared_client_free(struct client *c)
{
	if (!c->ps)
		return;
	ps_names_clear(c->ps);
	free(c->ps->slots);
	free(c->ps);
	c->ps = NULL;
}

int prepared_client_count(const struct client *c)
{
	return c->ps ? (int)c->ps->count : 0;
}

int prepared_server_count(const struct server *s)
{
	return s->ps ? (int)s->ps->count : 0;
}

void prepared_each(void (*fn)(const struct ps_info *info, void *arg), void *arg)
{
	struct ps_table *t = worker->prepared;
	for (uint32_t i = 0; t && i < t->nbuckets; i++) {
		for (const struct ps_stmt *st = t->buckets[i]; st; st = st->next) {
			struct ps_info info = {
				.id = st->id,
				.query = (const char *)st->blob,
				.param_types = st->ntypes,
				.clients = st->clients,
				.servers = st->servers,
				.client_parses = st->client_parses,
				.server_parses = st->server_parses,
				.binds = st->binds,
				.evictions = st->evictions,
			};
			fn(&info, arg);
		}
	}
}

void prepared_shutdown(void)
{
	struct ps_table *t = worker->prepared;
	if (!t)
		return;
	for (uint32_t i = 0; i < t->nbuckets; i++) {
		struct ps_stmt *st = t->buckets[i], *next;
		for (; st; st = next) {
			next = st->next;
			free(st);
		}
	}
	free(t->buckets);
	free(t);
	worker->prepared = NULL;
}
