/*
 * prepared: named prepared statements that follow their client from one
 * server connection to the next (transaction and statement mode).
 *
 * A client's Parse "s1" is remembered in the client's map as a shared
 * statement, which servers know as PGPULSE_<id>; the Parse goes to the
 * server only if that server does not have the statement yet (else
 * pgpulse answers ParseComplete itself). Bind and Describe of "s1" are
 * rewritten to PGPULSE_<id>, after pgpulse has prepared it on the server
 * when the server lacks it. A client's Close is answered by pgpulse: the
 * statement stays on the servers for whoever uses it next.
 *
 * The one idea that keeps this correct is the server's reply queue: every
 * message sent to a server that will be answered has an entry, in order,
 * and so does every answer pgpulse owes the client in the server's stead.
 * Replies are matched to entries as they come; answers go out when their
 * turn comes, and never ahead of server bytes still in flight to the
 * client. Maps change when a message is sent (the next message of a
 * pipeline needs the change), so when PostgreSQL skips messages after an
 * error, the queue undoes the changes of the skipped ones, newest first.
 *
 * Errors pgpulse owes the client mid-batch (a duplicate name, an unknown
 * one) are made real on the server: pgpulse sends a Describe of a
 * statement that never exists and puts the client's error in place of the
 * server's. So PostgreSQL enters its skip-to-Sync state and rolls back
 * the implicit transaction exactly as it would have for the client.
 */
#include "prepared.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "textcache.h"
#include "util.h"
#include "worker.h"

#define PS_NAME_PREFIX "PGPULSE_"
#define PS_PROBE_NAME "PGPULSE_NONE"       /* never prepared: describing it fails with 26000 */
#define PS_OUT_HIGH_WATER (64 * 1024)      /* rewritten messages waiting for the server's socket */
#define PS_QUEUE_MAX 16384                 /* replies expected from one server at a time */
#define PS_CLIENT_MIN_NAMES 1000           /* names one client may keep, at least */
#define PS_CLIENT_FACTOR 4                 /* ... or this many times max_prepared_statements */
#define PS_DEALLOCATE_MAX 300              /* longest "DEALLOCATE name" worth reading whole */

/* one distinct (query text, parameter types); servers know it as PGPULSE_<id> */
struct ps_stmt {
	struct ps_stmt *next; /* hash chain */
	uint64_t hash;
	uint64_t id;
	uint64_t fp;          /* telemetry fingerprint of the text, 0 if not known */
	uint32_t refs;        /* client names + servers holding it + queue entries */
	uint32_t clients;     /* client names that map to it */
	uint32_t servers;     /* server connections that have it */
	uint64_t client_parses, server_parses, binds, evictions;
	uint32_t blob_len;    /* the Parse body after the name: text, NUL, types */
	uint16_t ntypes;
	uint8_t blob[];
};

struct ps_table {
	struct ps_stmt **buckets;
	uint32_t nbuckets; /* a power of two */
	uint32_t count;
	uint64_t next_id;
};

struct ps_name {
	char *name; /* NULL: a free slot */
	uint32_t hash;
	struct ps_stmt *stmt;
};

struct ps_held {
	struct ps_stmt *stmt; /* NULL: a free slot */
	uint64_t last_use;
	bool stale;           /* its plan no longer fits the table: prepare it again before use */
};

enum ps_kind {
	RQ_PARSE,
	RQ_BIND,
	RQ_DESCRIBE_STMT,
	RQ_DESCRIBE_PORTAL,
	RQ_EXECUTE,
	RQ_CLOSE,
	RQ_SYNC,
	RQ_QUERY,          /* Query or FunctionCall: everything up to ReadyForQuery */
	RQ_FAIL,           /* a Describe of PS_PROBE_NAME: its error is replaced by `text` */
	RQ_COPY_END,       /* the client ended a COPY: no reply; bounds the Syncs COPY made ignored */
	SY_PARSE_COMPLETE, /* answered by pgpulse when its turn comes */
	SY_CLOSE_COMPLETE,
};

struct ps_reply {
	uint8_t kind;
	bool swallow;         /* pgpulse's own Parse or Close: the reply is not the client's */
	bool restore;         /* pgpulse's Close of a statement the server had: skipped, it still has it */
	struct ps_stmt *stmt; /* a reference, or NULL */
	char *text;           /* the client's name (to undo), or RQ_FAIL's SQLSTATE and message */
};

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

static uint64_t hash_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static struct ps_stmt *stmt_find(const uint8_t *blob, uint32_t len, uint64_t h)
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

static struct ps_stmt *stmt_create(const uint8_t *blob, uint32_t len, uint64_t h, uint16_t ntypes)
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

static void stmt_hold(struct ps_stmt *st)
{
	if (st)
		st->refs++;
}

static void stmt_drop(struct ps_stmt *st)
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

static void put_server_name(struct pktbuf *b, const struct ps_stmt *st)
{
	char name[40];
	snprintf(name, sizeof(name), PS_NAME_PREFIX "%llu", (unsigned long long)st->id);
	pkt_put_str(b, name);
}

/* ---- a client's names ---- */

static uint32_t name_hash(const char *s)
{
	uint32_t h = (uint32_t)hash_bytes(s, strlen(s));
	return h ? h : 1;
}

static struct ps_client *client_map(struct client *c)
{
	if (!c->ps)
		c->ps = xcalloc(1, sizeof(*c->ps));
	return c->ps;
}

static struct ps_name *name_find(const struct ps_client *m, const char *name)
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
static void name_add(struct client *c, const char *name, struct ps_stmt *st)
{
	struct ps_client *m = client_map(c);
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
	stmt_hold(st);
	st->clients++;
}

/* linear probing: close the gap so that later entries stay reachable */
static void name_delete_slot(struct ps_client *m, uint32_t i)
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
	stmt_drop(st);
}

/* remove name; only when it maps to only_if, if that is given */
static void name_remove(struct ps_client *m, const char *name, const struct ps_stmt *only_if)
{
	struct ps_name *n = name_find(m, name);
	if (n && (!only_if || n->stmt == only_if))
		name_delete_slot(m, (uint32_t)(n - m->slots));
}

static void names_clear(struct ps_client *m)
{
	for (uint32_t i = 0; m && i < m->cap; i++) {
		if (m->slots[i].name) {
			free(m->slots[i].name);
			m->slots[i].name = NULL;
			m->slots[i].stmt->clients--;
			stmt_drop(m->slots[i].stmt);
		}
	}
	if (m)
		m->count = 0;
}

static uint32_t client_name_limit(void)
{
	uint64_t n = (uint64_t)worker->cfg->max_prepared_statements * PS_CLIENT_FACTOR;
	return n < PS_CLIENT_MIN_NAMES ? PS_CLIENT_MIN_NAMES : (uint32_t)(n > 1000000 ? 1000000 : n);
}

/* ---- a server's statements ---- */

static struct ps_server *server_ps(struct server *s)
{
	if (!s->ps)
		s->ps = xcalloc(1, sizeof(*s->ps));
	return s->ps;
}

static uint32_t held_home(const struct ps_stmt *st, uint32_t mask)
{
	return (uint32_t)((st->id * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static struct ps_held *held_find(const struct ps_server *sp, const struct ps_stmt *st)
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

static void held_add(struct ps_server *sp, struct ps_stmt *st)
{
	if (held_find(sp, st))
		return;
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
	held_insert(sp, (struct ps_held){ st, ++sp->clock, false });
	stmt_hold(st);
	st->servers++;
}

static void held_remove(struct ps_server *sp, struct ps_stmt *st)
{
	struct ps_held *h = held_find(sp, st);
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
	stmt_drop(st);
}

static void held_clear(struct ps_server *sp)
{
	for (uint32_t i = 0; i < sp->cap; i++) {
		struct ps_stmt *st = sp->slots[i].stmt;
		if (st) {
			sp->slots[i].stmt = NULL;
			st->servers--;
			stmt_drop(st);
		}
	}
	sp->count = 0;
}

/* eviction is rare (a miss with a full set, which costs a round trip anyway): a scan will do */
static struct ps_stmt *held_lru(const struct ps_server *sp)
{
	const struct ps_held *best = NULL;
	for (uint32_t i = 0; i < sp->cap; i++)
		if (sp->slots[i].stmt && (!best || sp->slots[i].last_use < best->last_use))
			best = &sp->slots[i];
	return best ? best->stmt : NULL;
}

/* ---- the reply queue ---- */

static struct ps_reply *q_at(const struct ps_server *sp, uint32_t i)
{
	return &sp->q[(sp->q_head + i) & (sp->q_cap - 1)];
}

static struct ps_reply *q_push(struct ps_server *sp, enum ps_kind kind, bool swallow, struct ps_stmt *st,
			       char *text)
{
	if (sp->q_len == sp->q_cap) {
		uint32_t cap = sp->q_cap ? sp->q_cap * 2 : 16;
		struct ps_reply *q = xcalloc(cap, sizeof(*q));
		for (uint32_t i = 0; i < sp->q_len; i++)
			q[i] = *q_at(sp, i);
		free(sp->q);
		sp->q = q;
		sp->q_cap = cap;
		sp->q_head = 0;
	}
	struct ps_reply *e = q_at(sp, sp->q_len++);
	*e = (struct ps_reply){ (uint8_t)kind, swallow, false, st, text };
	stmt_hold(st);
	return e;
}

static void reply_free(struct ps_reply *e)
{
	stmt_drop(e->stmt);
	free(e->text);
	e->stmt = NULL;
	e->text = NULL;
}

/* the head's reply is complete; a client held back by a long queue may go on */
static void q_pop(struct server *s)
{
	struct ps_server *sp = s->ps;
	reply_free(q_at(sp, 0));
	sp->q_head = (sp->q_head + 1) & (sp->q_cap - 1);
	sp->q_len--;
	while (sp->q_len && q_at(sp, 0)->kind == RQ_COPY_END) {
		sp->q_head = (sp->q_head + 1) & (sp->q_cap - 1);
		sp->q_len--;
	}
	struct client *c = s->client;
	if (c && c->ps && c->ps->paused && sp->q_len <= PS_QUEUE_MAX / 2) {
		c->ps->paused = false;
		stream_resume(&c->st);
	}
}

/* drop entry i from the middle (a Sync that PostgreSQL ignored during COPY) */
static void q_remove_at(struct ps_server *sp, uint32_t i)
{
	reply_free(q_at(sp, i));
	for (; i + 1 < sp->q_len; i++)
		*q_at(sp, i) = *q_at(sp, i + 1);
	sp->q_len--;
}

static bool is_answer(const struct ps_reply *e)
{
	return e->kind == SY_PARSE_COMPLETE || e->kind == SY_CLOSE_COMPLETE;
}

static bool head_is_answer(const struct ps_server *sp)
{
	return sp->q_len && is_answer(q_at(sp, 0));
}

/*
 * The answers pgpulse owes at the head of the queue go to the client. Only
 * when the server's stream has nothing in flight to the client: the client's
 * `out` is sent before forwarded bytes. False when a connection closed.
 */
static bool emit_answers(struct server *s)
{
	struct ps_server *sp = s->ps;
	struct client *c = s->client;
	bool wrote = false;
	while (head_is_answer(sp)) {
		pkt_begin(stream_out(&c->st), q_at(sp, 0)->kind == SY_PARSE_COMPLETE ? '1' : '3');
		pkt_end(stream_out(&c->st));
		q_pop(s);
		wrote = true;
	}
	if (!wrote)
		return true;
	stream_send_out(&c->st);
	return s->state != SV_CLOSED && c->state != CL_CLOSED;
}

/* ---- undoing what skipped messages were going to do ---- */

static void undo(struct server *s, const struct ps_reply *e)
{
	struct ps_server *sp = s->ps;
	struct ps_client *m = s->client ? s->client->ps : NULL;
	switch (e->kind) {
	case RQ_PARSE:
		if (e->stmt)
			held_remove(sp, e->stmt);
		if (e->text && m)
			name_remove(m, e->text, e->stmt);
		break;
	case RQ_CLOSE:
		if (e->restore)
			held_add(sp, e->stmt);
		break;
	case SY_PARSE_COMPLETE:
		if (e->text && m)
			name_remove(m, e->text, e->stmt);
		break;
	case SY_CLOSE_COMPLETE:
		if (e->text && e->stmt && s->client && !name_find(m, e->text))
			name_add(s->client, e->text, e->stmt);
		break;
	default:
		break;
	}
}

/*
 * The head failed: PostgreSQL skips everything up to the next Sync. Undo
 * the head and the skipped entries, newest first, and drop them. With no
 * Sync queued yet, the client's next messages are skipped here too.
 */
static void skip_to_sync(struct server *s)
{
	struct ps_server *sp = s->ps;
	uint32_t n = 0;
	while (n < sp->q_len && q_at(sp, n)->kind != RQ_SYNC)
		n++;
	for (uint32_t i = n; i-- > 0;)
		undo(s, q_at(sp, i));
	for (uint32_t i = 0; i < n; i++) {
		reply_free(q_at(sp, 0));
		sp->q_head = (sp->q_head + 1) & (sp->q_cap - 1);
		sp->q_len--;
	}
	if (!sp->q_len && s->client)
		client_map(s->client)->skipping = true;
	if (s->client && s->client->ps && s->client->ps->paused && sp->q_len <= PS_QUEUE_MAX / 2) {
		s->client->ps->paused = false;
		stream_resume(&s->client->st);
	}
}

/* ---- requests ---- */

bool prepared_tracking(const struct client *c)
{
	if (!c->pool || c->pool->pool_mode == POOL_SESSION)
		return false;
	if (worker->cfg->max_prepared_statements > 0)
		return true;
	/* turned off by a RELOAD: finish what is queued consistently */
	return c->server && c->server->ps && c->server->ps->q_len > 0;
}

static enum ps_result queue_forward(struct server *s, enum ps_kind kind)
{
	q_push(server_ps(s), kind, false, NULL, NULL);
	return PS_FORWARD;
}

/*
 * pgpulse is about to write into the server's out: what the client stream
 * forwarded must reach the server first, and the out must not grow without
 * bound while the server does not read.
 */
static enum ps_result make_room(struct client *c, struct server *s)
{
	if (stream_has_pending(&c->st))
		return PS_FLUSH_FIRST;
	if (s->st.out.len >= PS_OUT_HIGH_WATER) {
		stream_wait_for_peer_out(&c->st);
		return PS_FLUSH_FIRST;
	}
	return PS_SENT;
}

static void put_close(struct pktbuf *out, const struct ps_stmt *st)
{
	pkt_begin(out, 'C');
	pkt_put_u8(out, 'S');
	put_server_name(out, st);
	pkt_end(out);
}

static bool evict_one(struct server *s)
{
	struct ps_server *sp = s->ps;
	struct ps_stmt *victim = held_lru(sp);
	if (!victim)
		return false;
	put_close(stream_out(&s->st), victim);
	q_push(sp, RQ_CLOSE, true, victim, NULL)->restore = true;
	victim->evictions++;
	sp->evictions++;
	held_remove(sp, victim);
	return true;
}

/*
 * Prepare st on the server, the least recently used statement going when the
 * set is full. A Close goes first, always: it drops a stale copy, and it
 * makes the Parse safe even if the server's statements drifted from the set
 * (a DEALLOCATE that failed in an aborted transaction); closing a statement
 * that does not exist is no error, and the few bytes ride in the same write.
 * client_name: the client's own Parse (its ParseComplete is the client's);
 * NULL: pgpulse's (swallowed).
 */
static void prepare_on_server(struct client *c, struct server *s, struct ps_stmt *st, const char *client_name)
{
	struct ps_server *sp = s->ps;
	struct pktbuf *out = stream_out(&s->st);
	bool had_it = held_find(sp, st) != NULL; /* stale */
	put_close(out, st);
	q_push(sp, RQ_CLOSE, true, st, NULL)->restore = had_it;
	held_remove(sp, st);
	uint32_t max = worker->cfg->max_prepared_statements > 0 ? (uint32_t)worker->cfg->max_prepared_statements : 1;
	while (sp->count >= max && evict_one(s))
		;
	pkt_begin(out, 'P');
	put_server_name(out, st);
	pkt_put_bytes(out, st->blob, st->blob_len);
	pkt_end(out);
	q_push(sp, RQ_PARSE, client_name == NULL, st, client_name ? xstrdup(client_name) : NULL);
	held_add(sp, st);
	st->server_parses++;
	c->pool->stats.server_parse_count++;
}

/* make sure the server has st, fresh, before a message that uses it */
static void ensure_on_server(struct client *c, struct server *s, struct ps_stmt *st)
{
	struct ps_held *h = held_find(s->ps, st);
	if (h && !h->stale) {
		h->last_use = ++s->ps->clock;
		return;
	}
	prepare_on_server(c, s, st, NULL);
}

/*
 * An error pgpulse owes the client in the middle of a batch: a Describe of
 * a statement that does not exist makes PostgreSQL fail there too (and
 * skip to Sync, and roll back), and its error is replaced by this one.
 */
static enum ps_result fail_request(struct client *c, struct server *s, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static enum ps_result fail_request(struct client *c, struct server *s, const char *sqlstate, const char *fmt, ...)
{
	enum ps_result r = make_room(c, s);
	if (r != PS_SENT)
		return r;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	size_t n = strlen(msg);
	char *text = xmalloc(5 + n + 1);
	memcpy(text, sqlstate, 5);
	memcpy(text + 5, msg, n + 1);
	struct pktbuf *out = stream_out(&s->st);
	pkt_begin(out, 'D');
	pkt_put_u8(out, 'S');
	pkt_put_str(out, PS_PROBE_NAME);
	pkt_end(out);
	q_push(server_ps(s), RQ_FAIL, false, NULL, text);
	client_map(c)->skipping = true;
	return PS_SKIPPED;
}

/* an answer pgpulse gives in the server's stead; it goes out at once when its turn has come */
static enum ps_result answer(struct client *c, struct server *s, enum ps_kind kind, struct ps_stmt *st,
			     const char *name)
{
	struct ps_server *sp = server_ps(s);
	q_push(sp, kind, false, st, name ? xstrdup(name) : NULL);
	if (sp->q_len == 1 && !stream_has_pending(&s->st) && !emit_answers(s))
		return PS_GONE;
	return c->state == CL_CLOSED ? PS_GONE : PS_SENT;
}

/* the first string of an incomplete packet, if it has arrived whole */
static const char *visible_str(const struct pkt *pkt, const uint8_t *from)
{
	size_t have = pkt->avail > 5 ? pkt->avail - 5 : 0;
	size_t off = (size_t)(from - pkt->body);
	if (off >= have)
		return NULL;
	return memchr(from, 0, have - off) ? (const char *)from : NULL;
}

static uint64_t text_fingerprint(const struct ps_stmt *st)
{
	size_t len = strlen((const char *)st->blob);
	return textcache_find(textcache_hash((const char *)st->blob, len), (const char *)st->blob, len);
}

/*
 * The statement name of "DEALLOCATE [PREPARE] name" (the whole text, an
 * optional ';'), folded as PostgreSQL folds identifiers; false for anything
 * else, and for DEALLOCATE ALL.
 */
static bool deallocate_target(const char *sql, char *name, size_t size)
{
	const char *p = sql;
	size_t n = 0;
	while (isspace((unsigned char)*p))
		p++;
	if (strncasecmp(p, "DEALLOCATE", 10) != 0 || !isspace((unsigned char)p[10]))
		return false;
	for (p += 10; isspace((unsigned char)*p); p++)
		;
	if (strncasecmp(p, "PREPARE", 7) == 0 && isspace((unsigned char)p[7]))
		for (p += 7; isspace((unsigned char)*p); p++)
			;
	if (*p == '"') {
		for (p++; *p && n + 1 < size; p++) {
			if (*p == '"' && p[1] != '"')
				break;
			if (*p == '"')
				p++; /* "" is one quote */
			name[n++] = *p;
		}
		if (*p++ != '"')
			return false;
	} else {
		for (; (isalnum((unsigned char)*p) || *p == '_' || *p == '$' || (unsigned char)*p >= 0x80) && n + 1 < size; p++)
			name[n++] = (char)tolower((unsigned char)*p);
		if (n == 0 || (n == 3 && strncmp(name, "all", 3) == 0))
			return false;
	}
	name[n] = '\0';
	while (isspace((unsigned char)*p))
		p++;
	if (*p == ';')
		for (p++; isspace((unsigned char)*p); p++)
			;
	return *p == '\0';
}

/*
 * SQL DEALLOCATE of a name the client prepared with Parse (psycopg drops
 * statements from its cache that way): the client forgets the name, and
 * the statement runs as DEALLOCATE PGPULSE_<n>, prepared first if this
 * server lacks it, so that it succeeds with the tag the client expects.
 * NULL when the text is not that; then it goes as it is.
 */
static struct ps_name *deallocate_of_client_name(struct client *c, const char *sql)
{
	char name[256];
	return deallocate_target(sql, name, sizeof(name)) ? name_find(c->ps, name) : NULL;
}

static enum ps_result rewrite_deallocate(struct client *c, struct server *s, struct ps_name *n, bool as_query)
{
	enum ps_result room = make_room(c, s);
	if (room != PS_SENT)
		return room;
	struct ps_stmt *st = n->stmt;
	char sql[64];
	snprintf(sql, sizeof(sql), "DEALLOCATE \"" PS_NAME_PREFIX "%llu\"", (unsigned long long)st->id);
	ensure_on_server(c, s, st);
	struct pktbuf *out = stream_out(&s->st);
	if (as_query) {
		proto_put_query(out, sql);
	} else {
		pkt_begin(out, 'P');
		pkt_put_str(out, "");
		pkt_put_str(out, sql);
		pkt_put_u16(out, 0);
		pkt_end(out);
	}
	q_push(s->ps, as_query ? RQ_QUERY : RQ_PARSE, false, NULL, NULL);
	held_remove(s->ps, st); /* the server drops it (a failure is harmless: see prepare_on_server) */
	name_delete_slot(c->ps, (uint32_t)(n - c->ps->slots));
	return PS_SENT;
}

/* a simple Query: DEALLOCATE of a client's name is rewritten, anything else goes as it is */
static enum ps_result on_query(struct client *c, struct server *s, struct pkt *pkt)
{
	if (pkt->type == 'Q' && c->ps && c->ps->count && pkt->len <= PS_DEALLOCATE_MAX) {
		if (!pkt->complete)
			return PS_NEED_FULL;
		if (pkt->body_len && pkt->body[pkt->body_len - 1] == '\0') {
			struct ps_name *n = deallocate_of_client_name(c, (const char *)pkt->body);
			if (n)
				return rewrite_deallocate(c, s, n, true);
		}
	}
	return queue_forward(s, RQ_QUERY);
}

/* the unnamed statement goes as it is, unless it is a DEALLOCATE of a client's name */
static enum ps_result on_unnamed_parse(struct client *c, struct server *s, struct pkt *pkt)
{
	if (c->ps && c->ps->count && pkt->len <= PS_DEALLOCATE_MAX) {
		if (!pkt->complete)
			return PS_NEED_FULL;
		struct pkt_reader r;
		pkt_reader_init(&r, pkt->body, pkt->body_len);
		(void)pkt_get_str(&r);
		const char *sql = pkt_get_str(&r);
		uint16_t ntypes = pkt_get_u16(&r);
		struct ps_name *n = (!r.bad && ntypes == 0) ? deallocate_of_client_name(c, sql) : NULL;
		if (n)
			return rewrite_deallocate(c, s, n, false);
	}
	return queue_forward(s, RQ_PARSE);
}

static enum ps_result on_parse(struct client *c, struct server *s, struct pkt *pkt)
{
	const char *name = visible_str(pkt, pkt->body);
	if (name && !*name)
		return on_unnamed_parse(c, s, pkt);
	if (!pkt->complete)
		return PS_NEED_FULL;
	struct pkt_reader r;
	pkt_reader_init(&r, pkt->body, pkt->body_len);
	name = pkt_get_str(&r);
	const uint8_t *blob = r.p;
	const char *query = pkt_get_str(&r);
	uint16_t ntypes = pkt_get_u16(&r);
	(void)pkt_get_bytes(&r, (size_t)ntypes * 4);
	(void)query;
	if (r.bad || pkt_remaining(&r) != 0)
		return queue_forward(s, RQ_PARSE); /* malformed: PostgreSQL says so */
	if (name_find(c->ps, name))
		return fail_request(c, s, "42P05", "prepared statement \"%s\" already exists", name);
	if (c->ps && c->ps->count >= client_name_limit())
		return fail_request(c, s, "53400",
				    "too many prepared statements on this connection (%u; the limit follows max_prepared_statements)",
				    c->ps->count);
	uint32_t len = (uint32_t)(r.end - blob);
	uint64_t h = hash_bytes(blob, len);
	struct ps_stmt *st = stmt_find(blob, len, h);
	struct ps_server *sp = server_ps(s);
	struct ps_held *held = st ? held_find(sp, st) : NULL;
	bool send = !held || held->stale;
	if (send) {
		enum ps_result room = make_room(c, s);
		if (room != PS_SENT)
			return room;
	}
	if (!st)
		st = stmt_create(blob, len, h, ntypes);
	if (!st->fp)
		st->fp = text_fingerprint(st);
	name_add(c, name, st);
	st->client_parses++;
	c->pool->stats.client_parse_count++;
	if (send) {
		prepare_on_server(c, s, st, name);
		return PS_SENT;
	}
	held->last_use = ++sp->clock;
	return answer(c, s, SY_PARSE_COMPLETE, st, name);
}

static enum ps_result on_bind(struct client *c, struct server *s, struct pkt *pkt)
{
	const char *portal = visible_str(pkt, pkt->body);
	const char *stmt = portal ? visible_str(pkt, (const uint8_t *)portal + strlen(portal) + 1) : NULL;
	if (stmt && !*stmt)
		return queue_forward(s, RQ_BIND);
	if (!pkt->complete)
		return PS_NEED_FULL;
	struct pkt_reader r;
	pkt_reader_init(&r, pkt->body, pkt->body_len);
	portal = pkt_get_str(&r);
	stmt = pkt_get_str(&r);
	if (r.bad)
		return queue_forward(s, RQ_BIND);
	struct ps_name *n = name_find(c->ps, stmt);
	if (!n)
		return fail_request(c, s, "26000", "prepared statement \"%s\" does not exist", stmt);
	enum ps_result room = make_room(c, s);
	if (room != PS_SENT)
		return room;
	struct ps_stmt *st = n->stmt;
	ensure_on_server(c, s, st);
	struct pktbuf *out = stream_out(&s->st);
	pkt_begin(out, 'B');
	pkt_put_str(out, portal);
	put_server_name(out, st);
	pkt_put_bytes(out, r.p, pkt_remaining(&r));
	pkt_end(out);
	q_push(s->ps, RQ_BIND, false, st, NULL);
	st->binds++;
	c->pool->stats.bind_count++;
	if (!c->req_fp)
		c->req_fp = st->fp; /* a request that only Binds counts for the statement's text */
	return PS_SENT;
}

static enum ps_result on_describe(struct client *c, struct server *s, struct pkt *pkt)
{
	if (!pkt->complete)
		return PS_NEED_FULL;
	struct pkt_reader r;
	pkt_reader_init(&r, pkt->body, pkt->body_len);
	uint8_t kind = pkt_get_u8(&r);
	const char *name = pkt_get_str(&r);
	if (r.bad || kind != 'S')
		return queue_forward(s, RQ_DESCRIBE_PORTAL);
	if (!*name)
		return queue_forward(s, RQ_DESCRIBE_STMT);
	struct ps_name *n = name_find(c->ps, name);
	if (!n)
		return fail_request(c, s, "26000", "prepared statement \"%s\" does not exist", name);
	enum ps_result room = make_room(c, s);
	if (room != PS_SENT)
		return room;
	ensure_on_server(c, s, n->stmt);
	struct pktbuf *out = stream_out(&s->st);
	pkt_begin(out, 'D');
	pkt_put_u8(out, 'S');
	put_server_name(out, n->stmt);
	pkt_end(out);
	q_push(s->ps, RQ_DESCRIBE_STMT, false, n->stmt, NULL);
	return PS_SENT;
}

/* Close of a named statement: the client forgets it; the servers keep it for whoever comes next */
static enum ps_result on_close(struct client *c, struct server *s, struct pkt *pkt)
{
	if (!pkt->complete)
		return PS_NEED_FULL;
	struct pkt_reader r;
	pkt_reader_init(&r, pkt->body, pkt->body_len);
	uint8_t kind = pkt_get_u8(&r);
	const char *name = pkt_get_str(&r);
	if (r.bad || kind != 'S' || !*name)
		return queue_forward(s, RQ_CLOSE);
	struct ps_name *n = name_find(c->ps, name);
	if (!n) /* closing a statement that does not exist is no error in PostgreSQL */
		return answer(c, s, SY_CLOSE_COMPLETE, NULL, NULL);
	struct ps_stmt *st = n->stmt;
	stmt_hold(st);
	name_delete_slot(c->ps, (uint32_t)(n - c->ps->slots));
	enum ps_result res = answer(c, s, SY_CLOSE_COMPLETE, st, name);
	stmt_drop(st);
	return res;
}

/* the client ended its COPY data; Syncs sent before that are ignored by PostgreSQL */
static enum ps_result on_copy_end(struct server *s)
{
	struct ps_server *sp = server_ps(s);
	if (sp->copy_in)
		sp->copy_in = false;
	else if (sp->q_len)
		q_push(sp, RQ_COPY_END, false, NULL, NULL);
	return PS_FORWARD;
}

enum ps_result prepared_on_request(struct client *c, struct pkt *pkt)
{
	struct server *s = c->server;
	struct ps_server *sp = server_ps(s);
	if (sp->q_len >= PS_QUEUE_MAX) {
		client_map(c)->paused = true; /* q_pop resumes it */
		return PS_PAUSE;
	}
	if (c->ps && c->ps->skipping) {
		if (pkt->type != 'S')
			return pkt->complete ? PS_SKIPPED : PS_NEED_FULL;
		c->ps->skipping = false;
	}
	switch (pkt->type) {
	case 'P':
		return on_parse(c, s, pkt);
	case 'B':
		return on_bind(c, s, pkt);
	case 'D':
		return on_describe(c, s, pkt);
	case 'C':
		return on_close(c, s, pkt);
	case 'E':
		return queue_forward(s, RQ_EXECUTE);
	case 'S':
		return sp->copy_in ? PS_FORWARD : queue_forward(s, RQ_SYNC);
	case 'Q':
	case 'F':
		return on_query(c, s, pkt);
	case 'c':
	case 'f':
		return on_copy_end(s);
	default:
		return PS_FORWARD; /* Flush, CopyData: no reply of their own */
	}
}

void prepared_client_flushed(struct client *c)
{
	struct server *s = c->server;
	if (s && s->ps && s->st.out.len > 0)
		stream_send_out(&s->st);
}

/* ---- replies ---- */

/* log lines name the server as server.c's do */
#define PS_LOG(lvl, s, fmt, ...)                                                                         \
	log_msg(lvl, "S-%llu %s/%s %s: " fmt, (unsigned long long)(s)->id, (s)->pool->db->name,         \
		(s)->pool->user->name, (s)->addr, __VA_ARGS__)

static void note_desync(struct server *s, uint8_t type)
{
	PS_LOG(LOG_LVL_WARNING, s, "reply '%c' does not match the request queue; forwarded as it is", type);
}

/* the reply that completes the head, when the head is of kind `kind` */
static enum pkt_action complete_head(struct server *s, enum ps_kind kind, uint8_t type)
{
	struct ps_reply *e = q_at(s->ps, 0);
	if (e->kind != kind) {
		note_desync(s, type);
		return PKT_FORWARD;
	}
	bool swallow = e->swallow;
	q_pop(s);
	return swallow ? PKT_CONSUMED : PKT_FORWARD;
}

static bool is_cached_plan_error(const struct pkt *pkt)
{
	const char *code = proto_error_field(pkt->body, pkt->body_len, 'C');
	const char *msg = proto_error_field(pkt->body, pkt->body_len, 'M');
	return code && msg && strcmp(code, "0A000") == 0 && strstr(msg, "cached plan must not change result type");
}

static enum pkt_action on_error(struct server *s, struct pkt *pkt)
{
	struct ps_server *sp = s->ps;
	struct ps_reply *e = q_at(sp, 0);
	if (e->kind == RQ_QUERY || e->kind == RQ_SYNC)
		return PKT_FORWARD; /* a simple query's, or the commit at Sync: ReadyForQuery follows */
	bool replace = false;
	if (e->kind == RQ_FAIL) {
		const char *code = proto_error_field(pkt->body, pkt->body_len, 'C');
		replace = code && strcmp(code, "26000") == 0 && e->text;
		if (replace && stream_has_pending(&s->st))
			return PKT_FLUSH_FIRST;
		if (replace) {
			char sqlstate[6];
			memcpy(sqlstate, e->text, 5);
			sqlstate[5] = '\0';
			proto_put_error(stream_out(&s->client->st), "ERROR", sqlstate, e->text + 5);
		}
	}
	if (e->stmt && (e->kind == RQ_BIND || e->kind == RQ_DESCRIBE_STMT) && is_cached_plan_error(pkt)) {
		/* ALTER TABLE changed the result: prepare it afresh next time it is used here */
		struct ps_held *h = held_find(sp, e->stmt);
		if (h)
			h->stale = true;
		PS_LOG(LOG_LVL_INFO, s, "%s%llu changed result type; it is prepared again on next use", PS_NAME_PREFIX,
		       (unsigned long long)e->stmt->id);
	}
	sp->copy_in = false;
	skip_to_sync(s);
	if (!replace)
		return PKT_FORWARD;
	s->reply_error = true;
	stream_send_out(&s->client->st);
	return s->state == SV_CLOSED ? PKT_GONE : PKT_CONSUMED;
}

/* DEALLOCATE ALL and DISCARD ALL drop every statement of the session */
static void note_command_tag(struct server *s, const struct pkt *pkt)
{
	const char *tag = (const char *)pkt->body;
	if (pkt->body_len == 0 || pkt->body[pkt->body_len - 1] != '\0')
		return;
	if (strcmp(tag, "DEALLOCATE ALL") != 0 && strcmp(tag, "DISCARD ALL") != 0)
		return;
	held_clear(s->ps);
	if (s->client && s->client->ps)
		names_clear(s->client->ps);
}

/* COPY FROM STDIN began: Syncs the client sent since are ignored by PostgreSQL */
static void on_copy_in(struct server *s)
{
	struct ps_server *sp = s->ps;
	uint32_t i = 1;
	while (i < sp->q_len && q_at(sp, i)->kind != RQ_COPY_END) {
		if (q_at(sp, i)->kind == RQ_SYNC)
			q_remove_at(sp, i);
		else
			i++;
	}
	if (i >= sp->q_len)
		sp->copy_in = true;
}

/* replies whose whole body is read, or that move the queue: judged only when complete */
static bool needs_whole(uint8_t type)
{
	return strchr("EZC123tTnIs", type) != NULL;
}

enum pkt_action prepared_on_reply(struct server *s, struct pkt *pkt)
{
	struct ps_server *sp = s->ps;
	if (!sp || !sp->q_len || !s->client)
		return PKT_FORWARD;
	if (!pkt->complete && needs_whole(pkt->type))
		return PKT_NEED_FULL;
	if (head_is_answer(sp)) {
		if (stream_has_pending(&s->st))
			return PKT_FLUSH_FIRST;
		if (!emit_answers(s))
			return PKT_GONE;
		if (!sp->q_len)
			return PKT_FORWARD;
	}
	struct ps_reply *e = q_at(sp, 0);
	switch (pkt->type) {
	case 'E':
		return on_error(s, pkt);
	case 'Z':
		sp->copy_in = false;
		if (e->kind == RQ_SYNC || e->kind == RQ_QUERY)
			q_pop(s);
		else
			note_desync(s, pkt->type);
		return PKT_FORWARD;
	case '1':
		return complete_head(s, RQ_PARSE, pkt->type);
	case '2':
		return complete_head(s, RQ_BIND, pkt->type);
	case '3':
		return complete_head(s, RQ_CLOSE, pkt->type);
	case 't':
		return PKT_FORWARD; /* Describe statement: its RowDescription or NoData ends it */
	case 'T':
	case 'n':
		if (e->kind == RQ_DESCRIBE_STMT || e->kind == RQ_DESCRIBE_PORTAL)
			q_pop(s);
		return PKT_FORWARD;
	case 'C':
		note_command_tag(s, pkt);
		if (e->kind == RQ_EXECUTE)
			q_pop(s);
		return PKT_FORWARD;
	case 'I':
	case 's':
		if (e->kind == RQ_EXECUTE)
			q_pop(s);
		return PKT_FORWARD;
	case 'G':
		on_copy_in(s);
		return PKT_FORWARD;
	default:
		return PKT_FORWARD; /* rows, copy data, notices, notifications, parameters */
	}
}

void prepared_server_flushed(struct server *s)
{
	if (s->ps && s->client && head_is_answer(s->ps) && !stream_has_pending(&s->st))
		emit_answers(s);
}

bool prepared_server_busy(const struct server *s)
{
	return s->ps && s->ps->q_len > 0;
}

void prepared_server_reset(struct server *s, const char *sql)
{
	if (s->ps && sql && (strcasestr(sql, "DISCARD ALL") || strcasestr(sql, "DEALLOCATE ALL")))
		held_clear(s->ps);
}

void prepared_server_free(struct server *s)
{
	struct ps_server *sp = s->ps;
	if (!sp)
		return;
	while (sp->q_len) {
		reply_free(q_at(sp, 0));
		sp->q_head = (sp->q_head + 1) & (sp->q_cap - 1);
		sp->q_len--;
	}
	held_clear(sp);
	free(sp->slots);
	free(sp->q);
	free(sp);
	s->ps = NULL;
}

void prepared_client_free(struct client *c)
{
	if (!c->ps)
		return;
	names_clear(c->ps);
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
