/*
 * prepared/protocol: named prepared statements that follow their client
 * from one server connection to the next (transaction and statement mode):
 * the hooks client.c and server.c call, rewriting, answering, the reply
 * queue. What is remembered lives in prepared/statements.c.
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
 * Messages that go as they are (unnamed statements, portals, Execute) get
 * no entry: each has one reply that ends it, known by its type, so they
 * are only counted in front of the next entry (before), and an error among
 * them is the error of the first one still counted.
 *
 * Errors pgpulse owes the client mid-batch (a duplicate name, an unknown
 * one) are made real on the server: pgpulse sends a Describe of a
 * statement that never exists and puts the client's error in place of the
 * server's. So PostgreSQL enters its skip-to-Sync state and rolls back
 * the implicit transaction exactly as it would have for the client.
 */
#include "prepared.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "config.h"
#include "fingerprint.h"
#include "log.h"
#include "pool.h"
#include "prepared_store.h"
#include "proto.h"
#include "server.h"
#include "util.h"
#include "worker.h"

#define PS_PROBE_NAME "PGPULSE_NONE"       /* never prepared: describing it fails with 26000 */
#define PS_OUT_HIGH_WATER (64 * 1024)      /* rewritten messages waiting for the server's socket */
#define PS_DEALLOCATE_MAX 300              /* longest "DEALLOCATE name" worth reading whole */
#define PS_DEALLOCATE_Q PS_NAME_PREFIX "DQ" /* the stand-in a client's simple-Query DEALLOCATE runs on */
#define PS_DEALLOCATE_P PS_NAME_PREFIX "DP" /* ... and its extended-protocol DEALLOCATE */
#define PS_DUPLICATE_PROBE PS_NAME_PREFIX "DUP" /* a duplicate name's text, parsed for PostgreSQL's errors */

/* ---- the reply queue ---- */

static struct ps_reply *q_at(const struct ps_server *sp, uint32_t i)
{
	return &sp->q[(sp->q_head + i) & (sp->q_cap - 1)];
}

static void q_grow(struct ps_server *sp)
{
	uint32_t cap = sp->q_cap ? sp->q_cap * 2 : 16;
	struct ps_reply *q = xcalloc(cap, sizeof(*q));
	for (uint32_t i = 0; i < sp->q_len; i++)
		q[i] = *q_at(sp, i);
	free(sp->q);
	sp->q = q;
	sp->q_cap = cap;
	sp->q_head = 0;
}

static bool is_answer(const struct ps_reply *e)
{
	return e->kind == SY_PARSE_COMPLETE || e->kind == SY_CLOSE_COMPLETE;
}

static struct ps_reply *q_push(struct ps_server *sp, enum ps_kind kind, bool swallow, struct ps_stmt *st,
			       char *text)
{
	/* simple Queries let through untracked come first: their replies end before this one's */
	while (sp->untracked) {
		if (sp->q_len == sp->q_cap)
			q_grow(sp);
		*q_at(sp, sp->q_len++) = (struct ps_reply){ .kind = RQ_QUERY };
		sp->untracked--;
	}
	if (sp->q_len == sp->q_cap)
		q_grow(sp);
	struct ps_reply *e = q_at(sp, sp->q_len++);
	/* the messages counted since the newest entry are answered before this one */
	*e = (struct ps_reply){
		.kind = (uint8_t)kind, .swallow = swallow, .before = sp->tail_plain, .stmt = st, .text = text
	};
	sp->tail_plain = 0;
	if (is_answer(e))
		sp->answers++;
	if (st)
		ps_stmt_hold(st);
	return e;
}

/* names a DEALLOCATE ALL took, once it has run */
static void saved_free(struct ps_client *saved)
{
	ps_names_clear(saved);
	free(saved->slots);
	free(saved);
}

static void reply_free(struct ps_server *sp, struct ps_reply *e)
{
	if (is_answer(e))
		sp->answers--;
	if (e->stmt) {
		ps_stmt_drop(e->stmt);
		e->stmt = NULL;
	}
	if (e->text) {
		free(e->text);
		e->text = NULL;
	}
	if (e->saved) {
		saved_free(e->saved);
		e->saved = NULL;
	}
}

/*
 * The queue shrank: a client held back by its length may go on, unless it
 * waits for a held Query's ReadyForQuery too (ps_client.held).
 */
static void resume_client(struct server *s)
{
	struct ps_server *sp = s->ps;
	const struct ps_client *m = s->client ? s->client->ps : NULL;
	if (sp->client_paused && sp->q_len <= PS_QUEUE_MAX / 2 && !(m && m->held)) {
		sp->client_paused = false;
		if (s->client)
			stream_resume(&s->client->st);
	}
}

/*
 * After the head's reply, or a counted one: the end of a COPY has no reply,
 * it goes as soon as what was sent before it is answered. So no COPY_END
 * with nothing before it is ever left at the head (prepared_reply_passes
 * counts on it).
 */
static void settle_head(struct server *s)
{
	struct ps_server *sp = s->ps;
	while (sp->q_len && q_at(sp, 0)->kind == RQ_COPY_END && !q_at(sp, 0)->before) {
		sp->q_head = (sp->q_head + 1) & (sp->q_cap - 1);
		sp->q_len--;
	}
	resume_client(s);
}

/* the head's reply is complete */
static void q_pop(struct server *s)
{
	struct ps_server *sp = s->ps;
	reply_free(sp, q_at(sp, 0));
	sp->q_head = (sp->q_head + 1) & (sp->q_cap - 1);
	sp->q_len--;
	settle_head(s);
}

/* drop entry i from the middle (a Sync that PostgreSQL ignored during COPY) */
static void q_remove_at(struct ps_server *sp, uint32_t i)
{
	uint32_t before = q_at(sp, i)->before; /* still due, now in front of what follows */
	reply_free(sp, q_at(sp, i));
	for (uint32_t j = i; j + 1 < sp->q_len; j++)
		*q_at(sp, j) = *q_at(sp, j + 1);
	sp->q_len--;
	if (i < sp->q_len)
		q_at(sp, i)->before += before;
	else
		sp->tail_plain += before;
}

/* an answer pgpulse owes is next: nothing of the server's comes before it */
static bool head_is_answer(const struct ps_server *sp)
{
	return sp->q_len && !q_at(sp, 0)->before && is_answer(q_at(sp, 0));
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

/* a client's DEALLOCATE failed or was skipped: the name is the client's again */
static void restore_name(struct server *s, struct ps_reply *e)
{
	if (s->client && e->text && e->stmt && !ps_name_find(s->client->ps, e->text))
		ps_name_add(s->client, e->text, e->stmt);
}

/*
 * A client's DEALLOCATE ALL or DISCARD ALL failed or was skipped: the names
 * it took are the client's again, over what messages sent behind it made
 * of them (those failed too, or were skipped: newest are undone first).
 */
static void names_restore(struct server *s, struct ps_reply *e)
{
	struct ps_client *saved = e->saved;
	e->saved = NULL;
	for (uint32_t i = 0; s->client && i < saved->cap; i++) {
		if (!saved->slots[i].name)
			continue;
		ps_name_remove(s->client->ps, saved->slots[i].name, NULL);
		ps_name_add(s->client, saved->slots[i].name, saved->slots[i].stmt);
	}
	saved_free(saved);
}

static void undo(struct server *s, struct ps_reply *e)
{
	if (e->saved)
		names_restore(s, e);
	struct ps_server *sp = s->ps;
	struct ps_client *m = s->client ? s->client->ps : NULL;
	switch (e->kind) {
	case RQ_QUERY:
		if (e->restore)
			restore_name(s, e);
		if (e->held && m)
			m->held = false; /* skipped after an error: its ReadyForQuery will not come */
		break;
	case RQ_PARSE:
		if (e->restore) {
			restore_name(s, e);
			break;
		}
		if (e->stmt)
			ps_held_remove(sp, e->stmt);
		if (e->text && m)
			ps_name_remove(m, e->text, e->stmt);
		break;
	case RQ_CLOSE:
		if (e->restore)
			ps_held_add(sp, e->stmt);
		break;
	case SY_PARSE_COMPLETE:
		if (e->text && m)
			ps_name_remove(m, e->text, e->stmt);
		break;
	case SY_CLOSE_COMPLETE:
		if (e->text && e->stmt && s->client && !ps_name_find(m, e->text))
			ps_name_add(s->client, e->text, e->stmt);
		break;
	default:
		break;
	}
}

/*
 * The first message still due failed (one only counted, or the head's):
 * PostgreSQL skips everything up to the next Sync. Undo the skipped
 * entries, newest first, and drop them, and the counts of the messages
 * that went as they are. With no Sync queued yet, the client's next
 * messages are skipped here too.
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
		reply_free(sp, q_at(sp, 0));
		sp->q_head = (sp->q_head + 1) & (sp->q_cap - 1);
		sp->q_len--;
	}
	if (sp->q_len)
		q_at(sp, 0)->before = 0;
	else
		sp->tail_plain = 0;
	if (!sp->q_len && s->client)
		ps_client_map(s->client)->skipping = true;
	resume_client(s);
}

/* ---- requests ---- */

/* a message that goes as it is, with one reply that ends it: counted, no entry */
static enum ps_result forward_plain(struct server *s)
{
	ps_server_of(s)->tail_plain++;
	return PS_FORWARD;
}

static enum ps_result queue_forward(struct server *s, enum ps_kind kind)
{
	q_push(ps_server_of(s), kind, false, NULL, NULL);
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
	ps_put_server_name(out, st);
	pkt_end(out);
}

static bool evict_one(struct server *s)
{
	struct ps_server *sp = s->ps;
	struct ps_stmt *victim = ps_held_lru(sp);
	if (!victim)
		return false;
	put_close(stream_out(&s->st), victim);
	q_push(sp, RQ_CLOSE, true, victim, NULL)->restore = true;
	victim->evictions++;
	sp->evictions++;
	s->pool->stats.prepared_evictions++;
	ps_held_remove(sp, victim);
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
	bool had_it = ps_held_find(sp, st) != NULL; /* stale */
	put_close(out, st);
	q_push(sp, RQ_CLOSE, true, st, NULL)->restore = had_it;
	ps_held_remove(sp, st);
	uint32_t max = worker->cfg->max_prepared_statements > 0 ? (uint32_t)worker->cfg->max_prepared_statements : 1;
	while (sp->count >= max && evict_one(s))
		;
	pkt_begin(out, 'P');
	ps_put_server_name(out, st);
	pkt_put_bytes(out, st->blob, st->blob_len);
	pkt_end(out);
	q_push(sp, RQ_PARSE, client_name == NULL, st, client_name ? xstrdup(client_name) : NULL);
	ps_held_add(sp, st)->pending = sp->syncs + 1;
	st->server_parses++;
	c->pool->stats.server_parse_count++;
}

/*
 * The server has it, fresh, for a message of the batch being sent: a
 * statement whose Parse is still unanswered may fail, and PostgreSQL skips
 * only to the Sync of that Parse's batch; a later batch prepares it again.
 */
static bool held_usable(const struct ps_server *sp, const struct ps_held *h)
{
	return h && !h->stale && (!h->pending || h->pending == sp->syncs + 1);
}

/* make sure the server has st, fresh, before a message that uses it */
static void ensure_on_server(struct client *c, struct server *s, struct ps_stmt *st)
{
	struct ps_held *h = ps_held_find(s->ps, st);
	if (held_usable(s->ps, h)) {
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

static void put_fail(struct client *c, struct server *s, const char *sqlstate, const char *msg)
{
	size_t n = strlen(msg);
	char *text = xmalloc(5 + n + 1);
	memcpy(text, sqlstate, 5);
	memcpy(text + 5, msg, n + 1);
	struct pktbuf *out = stream_out(&s->st);
	pkt_begin(out, 'D');
	pkt_put_u8(out, 'S');
	pkt_put_str(out, PS_PROBE_NAME);
	pkt_end(out);
	q_push(ps_server_of(s), RQ_FAIL, false, NULL, text);
	ps_client_map(c)->skipping = true;
}

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
	put_fail(c, s, sqlstate, msg);
	return PS_SKIPPED;
}

static void put_close_named(struct pktbuf *out, const char *name)
{
	pkt_begin(out, 'C');
	pkt_put_u8(out, 'S');
	pkt_put_str(out, name);
	pkt_end(out);
}

/*
 * A Parse of a name the client already has. PostgreSQL stores the name
 * last: a text that does not parse, a missing table, an aborted
 * transaction (25P02) are reported before 42P05. So the text is prepared
 * on the server under a probe name first, its errors are PostgreSQL's
 * own, and only when it parses does the client get 42P05.
 */
static enum ps_result fail_duplicate(struct client *c, struct server *s, const uint8_t *blob, uint32_t len,
				     const char *name)
{
	enum ps_result r = make_room(c, s);
	if (r != PS_SENT)
		return r;
	struct ps_server *sp = ps_server_of(s);
	struct pktbuf *out = stream_out(&s->st);
	put_close_named(out, PS_DUPLICATE_PROBE); /* no error when absent */
	q_push(sp, RQ_CLOSE, true, NULL, NULL);
	pkt_begin(out, 'P');
	pkt_put_str(out, PS_DUPLICATE_PROBE);
	pkt_put_bytes(out, blob, len);
	pkt_end(out);
	q_push(sp, RQ_PARSE, true, NULL, NULL);
	put_close_named(out, PS_DUPLICATE_PROBE);
	q_push(sp, RQ_CLOSE, true, NULL, NULL);
	char msg[512];
	snprintf(msg, sizeof(msg), "prepared statement \"%s\" already exists", name);
	put_fail(c, s, "42P05", msg);
	return PS_SKIPPED;
}

/* an answer pgpulse gives in the server's stead; it goes out at once when its turn has come */
static enum ps_result answer(struct client *c, struct server *s, enum ps_kind kind, struct ps_stmt *st,
			     const char *name)
{
	struct ps_server *sp = ps_server_of(s);
	q_push(sp, kind, false, st, name ? xstrdup(name) : NULL);
	if (sp->q_len == 1 && !q_at(sp, 0)->before && !stream_has_pending(&s->st) && !emit_answers(s))
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

/*
 * The fingerprint a request that Binds st counts for, in this client's pool.
 * Computed once per statement, when its text is first seen with
 * fingerprints on. The pool's entry for it must exist for the request to be
 * counted: made again from the text when it is new to this pool or was
 * evicted. The common case, the same pool as last time and no entry freed
 * since, costs no lookup at all (this runs for every Bind-only request).
 */
static uint64_t statement_fingerprint(const struct client *c, struct ps_stmt *st)
{
	if (!fp_enabled())
		return 0;
	uint64_t gen = fp_generation();
	if (st->fp && st->fp_pool == c->pool && st->fp_gen == gen)
		return st->fp;
	if (!st->fp || !fp_touch(c->pool, st->fp, NULL)) {
		st->fp = fp_of_text(c->pool, (const char *)st->blob, strlen((const char *)st->blob), true);
		gen = fp_generation(); /* making the entry may have evicted another */
	}
	st->fp_pool = c->pool;
	st->fp_gen = gen;
	return st->fp;
}

/*
 * SQL DEALLOCATE of a name the client prepared with Parse (psycopg drops
 * statements from its cache that way). NULL when the text is not that;
 * then it goes as it is.
 */
static struct ps_name *deallocate_of_client_name(struct client *c, const char *sql)
{
	char name[256];
	return ps_deallocate_target(sql, name, sizeof(name)) ? ps_name_find(c->ps, name) : NULL;
}

/*
 * The same in a simple Query, alone or among other statements: the first
 * statement that DEALLOCATEs a client's name, its bounds in the text, and
 * how many statements come before it. A second one goes as it is.
 */
struct query_text {
	const char *sql, *start, *end; /* the client's text, and the DEALLOCATE statement in it */
	uint32_t before;               /* statements before that one */
	bool alone;                    /* none before or after it */
};

static struct ps_name *query_deallocate(struct client *c, struct query_text *q)
{
	char name[256];
	const char *pos = q->sql, *more, *more_end;
	q->before = 0;
	if (!strcasestr(q->sql, "DEALLOCATE"))
		return NULL;
	while (ps_sql_next(q->sql, &pos, &q->start, &q->end)) {
		struct ps_name *n =
			ps_sql_deallocates(q->start, q->end, name, sizeof(name)) ? ps_name_find(c->ps, name) : NULL;
		if (n) {
			q->alone = q->before == 0 && !ps_sql_next(q->sql, &pos, &more, &more_end) && *pos == '\0';
			return n;
		}
		q->before++;
	}
	return NULL;
}

/*
 * The client's names leave when its DEALLOCATE ALL or DISCARD ALL is sent,
 * so that a Parse pipelined behind it may reuse a name, as on PostgreSQL;
 * they are kept with the command's queue entry until it has run.
 */
static struct ps_client *names_detach(struct client *c)
{
	struct ps_client *m = c->ps;
	if (!m || !m->count)
		return NULL;
	struct ps_client *saved = xcalloc(1, sizeof(*saved));
	saved->slots = m->slots;
	saved->cap = m->cap;
	saved->count = m->count;
	m->slots = NULL;
	m->cap = 0;
	m->count = 0;
	return saved;
}

/*
 * The client forgets the name; the statement stays on the servers for
 * whoever uses it next, as after a Close. What runs on the server is a
 * DEALLOCATE of a stand-in prepared just before it, from "SELECT", which
 * cannot fail but in an aborted transaction, where PostgreSQL fails the
 * client's DEALLOCATE with the same 25P02: so the reply is PostgreSQL's
 * own, with its tag and transaction status, whatever became of the
 * statement's tables. Only simple-protocol messages go in front of a
 * simple Query: an extended one that failed would make PostgreSQL drop
 * the Query while it skips to Sync.
 */
static enum ps_result rewrite_deallocate(struct client *c, struct server *s, struct ps_name *n,
					 const struct query_text *q)
{
	enum ps_result room = make_room(c, s);
	if (room != PS_SENT)
		return room;
	struct ps_server *sp = ps_server_of(s);
	struct pktbuf *out = stream_out(&s->st);
	if (q) {
		/*
		 * The client's text, its DEALLOCATE replaced by the stand-in's
		 * PREPARE and DEALLOCATE, next to each other in one implicit
		 * transaction: the stand-in never outlives it; its PREPARE's tag,
		 * after `before` of the client's, is swallowed.
		 */
		char text[PS_DEALLOCATE_MAX + 128];
		snprintf(text, sizeof(text), "%.*sPREPARE \"" PS_DEALLOCATE_Q "\" AS SELECT; DEALLOCATE \"" PS_DEALLOCATE_Q "\"%s",
			 (int)(q->start - q->sql), q->sql, q->end);
		proto_put_query(out, text);
		struct ps_reply *e = q_push(sp, RQ_QUERY, true, n->stmt, xstrdup(n->name));
		e->stmts_before = q->before;
		if (!q->alone) {
			/*
			 * Whether it runs, the statements around it decide (one
			 * before it may fail, one after it may not parse): the name
			 * goes when its tag comes, and what the client sent after the
			 * Query waits until then (prepared_on_request).
			 */
			e->held = c->ps->held = true;
			return PS_SENT;
		}
		e->restore = true;
	} else {
		/* a stand-in left by a Parse never executed is closed first (no error when absent) */
		put_close_named(out, PS_DEALLOCATE_P);
		q_push(sp, RQ_CLOSE, true, NULL, NULL);
		pkt_begin(out, 'P');
		pkt_put_str(out, PS_DEALLOCATE_P);
		pkt_put_str(out, "SELECT");
		pkt_put_u16(out, 0);
		pkt_end(out);
		q_push(sp, RQ_PARSE, true, NULL, NULL);
		pkt_begin(out, 'P');
		pkt_put_str(out, "");
		pkt_put_str(out, "DEALLOCATE \"" PS_DEALLOCATE_P "\"");
		pkt_put_u16(out, 0);
		pkt_end(out);
		q_push(sp, RQ_PARSE, false, n->stmt, xstrdup(n->name))->restore = true;
	}
	ps_name_delete_slot(c->ps, (uint32_t)(n - c->ps->slots));
	return PS_SENT;
}

/* a simple Query: DEALLOCATE of a client's name is rewritten, anything else goes as it is */
static enum ps_result on_query(struct client *c, struct server *s, struct pkt *pkt)
{
	if (pkt->type == 'Q' && c->ps && c->ps->count && pkt->len <= PS_DEALLOCATE_MAX) {
		if (!pkt->complete)
			return PS_NEED_FULL;
		if (pkt->body_len && pkt->body[pkt->body_len - 1] == '\0') {
			struct query_text q = { .sql = (const char *)pkt->body };
			struct ps_name *n = query_deallocate(c, &q);
			if (n)
				return rewrite_deallocate(c, s, n, &q);
		}
	}
	return queue_forward(s, RQ_QUERY);
}

/*
 * A short simple Query, when the server has statements: one that may drop
 * them all empties the server's set now, for the messages pipelined behind
 * it (ps_may_drop_all). *drops: one of its statements is DEALLOCATE ALL or
 * DISCARD ALL; *alone: the only one. False: read it whole first.
 */
static bool query_checked(struct client *c, struct server *s, struct pkt *pkt, bool *drops, bool *alone)
{
	struct ps_server *sp = s->ps;
	*drops = false;
	if (!(sp->count || (c->ps && c->ps->count)) || pkt->len > PS_DEALLOCATE_MAX)
		return true;
	if (!pkt->complete)
		return false;
	if (pkt->body_len && pkt->body[pkt->body_len - 1] == '\0' && ps_may_drop_all((const char *)pkt->body)) {
		ps_held_clear(sp);
		*drops = ps_drops_all((const char *)pkt->body, alone);
	}
	return true;
}

/*
 * The unnamed statement goes as it is, unless it is a DEALLOCATE of a
 * client's name. One that is DEALLOCATE ALL or DISCARD ALL is noted: its
 * Execute is where the statements go (on_execute).
 */
static enum ps_result on_unnamed_parse(struct client *c, struct server *s, struct pkt *pkt)
{
	struct ps_server *sp = ps_server_of(s);
	if (c->ps)
		c->ps->unnamed_drops_all = false;
	if (((c->ps && c->ps->count) || sp->count) && pkt->len <= PS_DEALLOCATE_MAX) {
		if (!pkt->complete)
			return PS_NEED_FULL;
		struct pkt_reader r;
		pkt_reader_init(&r, pkt->body, pkt->body_len);
		(void)pkt_get_str(&r);
		const char *sql = pkt_get_str(&r);
		uint16_t ntypes = pkt_get_u16(&r);
		struct ps_name *n = (!r.bad && ntypes == 0) ? deallocate_of_client_name(c, sql) : NULL;
		bool alone;
		if (n)
			return rewrite_deallocate(c, s, n, NULL);
		if (!r.bad && ps_may_drop_all(sql) && ps_drops_all(sql, &alone) && alone)
			ps_client_map(c)->unnamed_drops_all = true;
	}
	return forward_plain(s);
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
		return forward_plain(s); /* malformed: PostgreSQL says so */
	if (ps_name_find(c->ps, name))
		return fail_duplicate(c, s, blob, (uint32_t)(r.end - blob), name);
	if (c->ps && c->ps->count >= ps_client_name_limit())
		return fail_request(c, s, "53400",
				    "too many prepared statements on this connection (%u; the limit follows max_prepared_statements)",
				    c->ps->count);
	uint32_t len = (uint32_t)(r.end - blob);
	uint64_t h = ps_hash_bytes(blob, len);
	struct ps_stmt *st = ps_stmt_find(blob, len, h);
	struct ps_server *sp = ps_server_of(s);
	struct ps_held *held = st ? ps_held_find(sp, st) : NULL;
	bool send = !held_usable(sp, held);
	if (send) {
		enum ps_result room = make_room(c, s);
		if (room != PS_SENT)
			return room;
	}
	if (!st)
		st = ps_stmt_create(blob, len, h, ntypes);
	if (!st->fp && fp_enabled())
		statement_fingerprint(c, st); /* now, while its text is in the cache (client.c just saw it) */
	ps_name_add(c, name, st);
	st->client_parses++;
	c->pool->stats.client_parse_count++;
	if (send) {
		prepare_on_server(c, s, st, name);
		return PS_SENT;
	}
	held->last_use = ++sp->clock;
	return answer(c, s, SY_PARSE_COMPLETE, st, name);
}

/*
 * A named Bind that has not arrived whole (large parameters): only its head,
 * up to the statement name, is rewritten; the parameters are forwarded as
 * they come, never held in memory whole. An unknown name is read whole and
 * fails as usual.
 */
static __attribute__((noinline)) enum ps_result on_big_bind(struct client *c, struct server *s, struct pkt *pkt, const char *portal,
				  const char *stmt)
{
	struct ps_name *n = ps_name_find(c->ps, stmt);
	if (!n)
		return PS_NEED_FULL;
	enum ps_result room = make_room(c, s);
	if (room != PS_SENT)
		return room;
	struct ps_stmt *st = n->stmt;
	ensure_on_server(c, s, st);
	uint32_t cut = (uint32_t)((const uint8_t *)stmt + strlen(stmt) + 1 - pkt->body) + 5;
	struct pktbuf *out = stream_out(&s->st);
	pkt_begin(out, 'B');
	pkt_put_str(out, portal);
	ps_put_server_name(out, st);
	uint32_t len = (uint32_t)(out->len - out->msg_start) + (pkt->len - cut);
	uint8_t *p = out->data + out->msg_start;
	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	q_push(s->ps, RQ_BIND, false, st, NULL)->name_hash = n->hash;
	st->binds++;
	c->pool->stats.bind_count++;
	if (!c->req_fp)
		c->req_fp = statement_fingerprint(c, st);
	pkt->cut = cut;
	return PS_FORWARD_REST;
}

static enum ps_result on_bind(struct client *c, struct server *s, struct pkt *pkt)
{
	const char *portal = visible_str(pkt, pkt->body);
	const char *stmt = portal ? visible_str(pkt, (const uint8_t *)portal + strlen(portal) + 1) : NULL;
	if (c->ps && portal && !*portal)
		c->ps->portal_drops_all = false; /* the unnamed portal is about to be replaced */
	if (stmt && !*stmt) {
		if (c->ps)
			c->ps->portal_drops_all = c->ps->unnamed_drops_all && !*portal;
		return forward_plain(s);
	}
	if (!pkt->complete)
		return stmt ? on_big_bind(c, s, pkt, portal, stmt) : PS_NEED_FULL;
	struct pkt_reader r;
	pkt_reader_init(&r, pkt->body, pkt->body_len);
	portal = pkt_get_str(&r);
	stmt = pkt_get_str(&r);
	if (r.bad)
		return forward_plain(s);
	struct ps_name *n = ps_name_find(c->ps, stmt);
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
	ps_put_server_name(out, st);
	pkt_put_bytes(out, r.p, pkt_remaining(&r));
	pkt_end(out);
	q_push(s->ps, RQ_BIND, false, st, NULL)->name_hash = n->hash;
	st->binds++;
	c->pool->stats.bind_count++;
	if (!c->req_fp)
		c->req_fp = statement_fingerprint(c, st); /* a request that only Binds counts for the statement's text */
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
		return forward_plain(s);
	if (!*name)
		return forward_plain(s);
	struct ps_name *n = ps_name_find(c->ps, name);
	if (!n)
		return fail_request(c, s, "26000", "prepared statement \"%s\" does not exist", name);
	enum ps_result room = make_room(c, s);
	if (room != PS_SENT)
		return room;
	ensure_on_server(c, s, n->stmt);
	struct pktbuf *out = stream_out(&s->st);
	pkt_begin(out, 'D');
	pkt_put_u8(out, 'S');
	ps_put_server_name(out, n->stmt);
	pkt_end(out);
	q_push(s->ps, RQ_DESCRIBE_STMT, false, n->stmt, NULL)->name_hash = n->hash;
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
		return forward_plain(s);
	struct ps_name *n = ps_name_find(c->ps, name);
	if (!n) /* closing a statement that does not exist is no error in PostgreSQL */
		return answer(c, s, SY_CLOSE_COMPLETE, NULL, NULL);
	struct ps_stmt *st = n->stmt;
	ps_stmt_hold(st);
	ps_name_delete_slot(c->ps, (uint32_t)(n - c->ps->slots));
	enum ps_result res = answer(c, s, SY_CLOSE_COMPLETE, st, name);
	ps_stmt_drop(st);
	return res;
}

/*
 * Execute of the unnamed portal of a DEALLOCATE ALL or DISCARD ALL: from
 * here on in the pipeline, the server has none of its statements and the
 * client none of its names (as query_checked for a simple Query).
 */
static enum ps_result on_execute(struct client *c, struct server *s, struct pkt *pkt)
{
	if (!c->ps || !c->ps->portal_drops_all)
		return forward_plain(s);
	if (!pkt->complete)
		return PS_NEED_FULL;
	struct ps_server *sp = ps_server_of(s);
	if (pkt->body_len && pkt->body[0] == '\0') {
		c->ps->portal_drops_all = false;
		ps_held_clear(sp);
		q_push(sp, RQ_EXECUTE, false, NULL, NULL)->saved = names_detach(c);
		return PS_FORWARD;
	}
	return forward_plain(s);
}

/*
 * The client ended its COPY data; Syncs sent before that are ignored by
 * PostgreSQL. Ended before its CopyInResponse came (data pipelined behind
 * the COPY), the end is queued behind whatever is in flight, a simple Query
 * let through untracked too, so that on_copy_in knows where the Syncs that
 * COPY made ignored stop.
 */
static enum ps_result on_copy_end(struct server *s)
{
	struct ps_server *sp = ps_server_of(s);
	if (sp->copy_in)
		sp->copy_in = false;
	else if (sp->q_len || sp->tail_plain || sp->untracked)
		q_push(sp, RQ_COPY_END, false, NULL, NULL);
	return PS_FORWARD;
}

enum ps_result prepared_on_request(struct client *c, struct pkt *pkt)
{
	struct server *s = c->server;
	struct ps_server *sp = ps_server_of(s);
	if (prepared_request_passes(c, pkt))
		return PS_FORWARD; /* counted: it needs no entry, however long the queue */
	if (sp->q_len >= PS_QUEUE_MAX) {
		/*
		 * The server may hold its replies until a Sync or Flush that the
		 * client has yet to send, while answers pgpulse owes wait behind
		 * them: ask for them with a Flush (it has no reply), or the queue
		 * might never shrink. It goes out after the bytes forwarded so far
		 * (client_on_flushed).
		 */
		if (stream_has_pending(&c->st))
			return PS_FLUSH_FIRST;
		pkt_begin(stream_out(&s->st), 'H');
		pkt_end(stream_out(&s->st));
		sp->client_paused = true; /* resume_client resumes it */
		return PS_PAUSE;
	}
	if (c->ps && c->ps->held) {
		/* a Query whose DEALLOCATE may or may not run: what comes after it waits for its reply */
		if (stream_has_pending(&c->st))
			return PS_FLUSH_FIRST;
		sp->client_paused = true; /* resume_client resumes it once the Query's ReadyForQuery came */
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
		return on_execute(c, s, pkt);
	case 'S':
		if (sp->copy_in)
			return PS_FORWARD;
		sp->syncs++;
		return queue_forward(s, RQ_SYNC);
	case 'Q': {
		bool drops_all, alone;
		if (!query_checked(c, s, pkt, &drops_all, &alone))
			return PS_NEED_FULL;
		if (drops_all && c->ps && c->ps->count) {
			struct ps_reply *e = q_push(sp, RQ_QUERY, false, NULL, NULL);
			if (alone)
				e->saved = names_detach(c);
			else /* among other statements it may not run: its tag says (note_command_tag) */
				e->held = c->ps->held = true;
			return PS_FORWARD;
		}
		if (sp->q_len == 0 && sp->tail_plain == 0 && !(c->ps && c->ps->count)) {
			/*
			 * Nothing in flight and no name of the client's it could
			 * deallocate: its reply needs no tracking, only counting, so
			 * that a later queued entry knows this Query's Z comes first
			 * (prepared_request_passes does the same).
			 */
			sp->untracked++;
			return PS_FORWARD;
		}
		return on_query(c, s, pkt);
	}
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
#define PS_LOG(lvl, s, ...) \
	log_conn((lvl), 'S', (s)->id, (s)->pool->db->name, (s)->pool->user->name, (s)->addr, __VA_ARGS__)

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

/* a name the client has for st (an error path: a scan will do) */
static const char *client_name_of(const struct client *c, const struct ps_stmt *st)
{
	const struct ps_client *m = c->ps;
	for (uint32_t i = 0; m && i < m->cap; i++)
		if (m->slots[i].name && m->slots[i].stmt == st)
			return m->slots[i].name;
	return NULL;
}

/*
 * The client's name the head request used for its statement: the one with
 * its hash (a client may have two names for one text), else any.
 */
static const char *name_of_head(const struct client *c, const struct ps_reply *e)
{
	if (e->kind == RQ_PARSE)
		return e->text;
	const struct ps_client *m = c->ps;
	for (uint32_t i = 0; m && i < m->cap; i++)
		if (m->slots[i].name && m->slots[i].stmt == e->stmt && m->slots[i].hash == e->name_hash)
			return m->slots[i].name;
	return client_name_of(c, e->stmt);
}

/*
 * PostgreSQL's error or notice for a request that named a statement names
 * the one pgpulse prepared ("PGPULSE_7"): the client reads the name it
 * used, in every field (message, detail, hint, context), and nothing else
 * changes. Only the quoted name is replaced, as PostgreSQL quotes it, so
 * PGPULSE_7 is never found inside PGPULSE_71. False when the reply does not
 * name it (most errors): then it goes as it is.
 */
/* a reply of the head request's that may name its statement (put_renamed) */
static bool names_statement(const struct ps_reply *e)
{
	return e->stmt && (e->kind == RQ_BIND || e->kind == RQ_DESCRIBE_STMT || (e->kind == RQ_PARSE && e->text));
}

static size_t quoted_server_name(const struct ps_reply *e, char *buf, size_t size)
{
	return (size_t)snprintf(buf, size, "\"%s%llu\"", PS_NAME_PREFIX, (unsigned long long)e->stmt->id);
}

static bool mentions_server_name(const struct pkt *pkt, const struct ps_reply *e)
{
	char server[48];
	if (!names_statement(e))
		return false;
	size_t sn = quoted_server_name(e, server, sizeof(server));
	return memmem(pkt->body, pkt->body_len, server, sn) != NULL;
}

static bool put_renamed(struct server *s, const struct pkt *pkt, const struct ps_reply *e)
{
	char server[48];
	size_t sn = quoted_server_name(e, server, sizeof(server));
	const uint8_t *p = pkt->body, *end = pkt->body + pkt->body_len;
	const uint8_t *hit = memmem(p, pkt->body_len, server, sn);
	const char *name = hit ? name_of_head(s->client, e) : NULL;
	if (!name)
		return false;
	struct pktbuf *out = stream_out(&s->client->st);
	pkt_begin(out, pkt->type);
	for (; hit; hit = memmem(p, (size_t)(end - p), server, sn)) {
		pkt_put_bytes(out, p, (size_t)(hit - p));
		pkt_put_bytes(out, "\"", 1);
		pkt_put_bytes(out, name, strlen(name));
		pkt_put_bytes(out, "\"", 1);
		p = hit + sn; /* the quoted name has no NUL: it never spans two fields */
	}
	pkt_put_bytes(out, p, (size_t)(end - p));
	pkt_end(out);
	return true;
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
	if (e->kind == RQ_QUERY || e->kind == RQ_SYNC) {
		if (e->restore) { /* a client's DEALLOCATE failed (aborted transaction) */
			restore_name(s, e);
			e->restore = false;
		}
		if (e->saved) /* ... or its DEALLOCATE ALL */
			names_restore(s, e);
		return PKT_FORWARD;
	} /* a simple query's, or the commit at Sync: ReadyForQuery follows */
	bool replace = false;
	const char *code = proto_error_field(pkt->body, pkt->body_len, 'C');
	bool missing = code && strcmp(code, "26000") == 0;
	if (e->kind == RQ_FAIL) {
		replace = missing && e->text;
		if (replace && stream_has_pending(&s->st))
			return PKT_FLUSH_FIRST;
		if (replace) {
			char sqlstate[6];
			memcpy(sqlstate, e->text, 5);
			sqlstate[5] = '\0';
			proto_put_error(stream_out(&s->client->st), "ERROR", sqlstate, e->text + 5);
		}
	} else if (missing && e->stmt && (e->kind == RQ_BIND || e->kind == RQ_DESCRIBE_STMT)) {
		/*
		 * The server lost a statement pgpulse believed it had (a DEALLOCATE
		 * ALL pgpulse could not see, inside a function or a long text): it
		 * is prepared again on next use, and the client reads its own name.
		 */
		if (stream_has_pending(&s->st))
			return PKT_FLUSH_FIRST;
		ps_held_remove(sp, e->stmt);
		PS_LOG(LOG_LVL_WARNING, s, "%s%llu was dropped behind pgpulse's back; it is prepared again on next use",
		       PS_NAME_PREFIX, (unsigned long long)e->stmt->id);
		char msg[512];
		const char *name = client_name_of(s->client, e->stmt);
		if (name)
			snprintf(msg, sizeof(msg), "prepared statement \"%s\" does not exist", name);
		else
			snprintf(msg, sizeof(msg), "prepared statement does not exist");
		proto_put_error(stream_out(&s->client->st), "ERROR", "26000", msg);
		replace = true;
	} else if (mentions_server_name(pkt, e)) {
		if (stream_has_pending(&s->st))
			return PKT_FLUSH_FIRST; /* before put_renamed writes: it is called again */
		replace = put_renamed(s, pkt, e);
	}
	if (e->stmt && (e->kind == RQ_BIND || e->kind == RQ_DESCRIBE_STMT) && is_cached_plan_error(pkt)) {
		/* ALTER TABLE changed the result: prepare it afresh next time it is used here */
		struct ps_held *h = ps_held_find(sp, e->stmt);
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

/*
 * DEALLOCATE ALL and DISCARD ALL drop every statement of the session that
 * exists when they run. What was sent after them (a Parse pipelined behind
 * the command) is still queued from entry `first` on (the head is the
 * command when it is a Query; an Execute is only counted): replay it, in
 * order.
 */
static void note_command_tag(struct server *s, const struct pkt *pkt, uint32_t first)
{
	const char *tag = (const char *)pkt->body;
	if (pkt->body_len == 0 || pkt->body[pkt->body_len - 1] != '\0')
		return;
	if (strcmp(tag, "DEALLOCATE ALL") != 0 && strcmp(tag, "DISCARD ALL") != 0)
		return;
	struct ps_server *sp = s->ps;
	struct client *c = s->client;
	struct ps_reply *head = first == 1 ? q_at(sp, 0) : NULL;
	if (first == 1 && head->saved) { /* the head's own tag: it ran, the names it took stay gone */
		saved_free(head->saved);
		head->saved = NULL;
	}
	ps_held_clear(sp);
	if (c && c->ps)
		ps_names_clear(c->ps);
	for (uint32_t i = first; i < sp->q_len; i++) {
		struct ps_reply *e = q_at(sp, i);
		bool name_goes = e->restore && (e->kind == RQ_PARSE || e->kind == RQ_QUERY); /* a DEALLOCATE */
		if (e->kind == RQ_PARSE && e->stmt && !e->restore)
			ps_held_add(sp, e->stmt)->pending = UINT64_MAX; /* usable once its ParseComplete comes */
		else if (e->kind == RQ_CLOSE && e->stmt)
			ps_held_remove(sp, e->stmt); /* an eviction, or the Close before a Parse */
		if (!c || !e->text || !e->stmt)
			continue;
		if (name_goes || e->kind == SY_CLOSE_COMPLETE)
			ps_name_remove(c->ps, e->text, NULL);
		else if ((e->kind == RQ_PARSE || e->kind == SY_PARSE_COMPLETE) && !ps_name_find(c->ps, e->text))
			ps_name_add(c, e->text, e->stmt);
	}
}

/*
 * COPY FROM STDIN began: Syncs the client sent since are ignored by
 * PostgreSQL. They are queued from entry `first` on (the head is the
 * COPY when it is a Query; an Execute is only counted).
 */
static void on_copy_in(struct server *s, uint32_t first)
{
	struct ps_server *sp = s->ps;
	uint32_t i = first;
	while (i < sp->q_len && q_at(sp, i)->kind != RQ_COPY_END) {
		if (q_at(sp, i)->kind == RQ_SYNC)
			q_remove_at(sp, i);
		else
			i++;
	}
	if (i >= sp->q_len)
		sp->copy_in = true;
	resume_client(s);
}

/* replies whose whole body is read, or that move the queue: judged only when complete */
static bool needs_whole(uint8_t type)
{
	switch (type) {
	case 'E': case 'Z': case 'C': case '1': case '2': case '3': case 't': case 'T': case 'n': case 'I':
	case 's':
		return true;
	default:
		return false;
	}
}

/*
 * A reply while nothing is queued: a simple Query let through untracked.
 * Its ReadyForQuery ends it; its DISCARD ALL or DEALLOCATE ALL still empties
 * the server's statements.
 */
static enum pkt_action on_untracked_reply(struct server *s, struct pkt *pkt)
{
	struct ps_server *sp = s->ps;
	if (pkt->type == 'Z' && sp->untracked) {
		if (!pkt->complete)
			return PKT_NEED_FULL;
		sp->untracked--;
	} else if (pkt->type == 'C' && sp->count) {
		if (!pkt->complete)
			return PKT_NEED_FULL;
		note_command_tag(s, pkt, 0);
	}
	return PKT_FORWARD;
}

/*
 * A reply to the first message still due, one that went as it is (only
 * counted in *ahead): prepared_reply_passes counts the common ones; here
 * are the rest.
 */
static enum pkt_action on_plain_reply(struct server *s, struct pkt *pkt, uint32_t *ahead)
{
	struct ps_server *sp = s->ps;
	switch (pkt->type) {
	case 'E':
		sp->copy_in = false;
		skip_to_sync(s);
		return PKT_FORWARD;
	case 'Z':
		sp->copy_in = false;
		note_desync(s, pkt->type);
		return PKT_FORWARD;
	case 'C':
		if (sp->count || (s->client->ps && s->client->ps->count))
			note_command_tag(s, pkt, 0); /* only statements there are can be dropped */
		(*ahead)--;
		settle_head(s);
		return PKT_FORWARD;
	case '1':
	case '2':
	case '3':
	case 'T':
	case 'n':
	case 'I':
	case 's':
		(*ahead)--;
		settle_head(s);
		return PKT_FORWARD;
	case 'G':
		on_copy_in(s, 0);
		return PKT_FORWARD;
	default:
		return PKT_FORWARD;
	}
}

enum pkt_action prepared_on_reply(struct server *s, struct pkt *pkt)
{
	struct ps_server *sp = s->ps;
	if (!sp || !s->client)
		return PKT_FORWARD;
	if (prepared_reply_passes(s, pkt))
		return PKT_FORWARD;
	if (!sp->q_len && (sp->untracked || !sp->tail_plain))
		return on_untracked_reply(s, pkt);
	if (!pkt->complete && needs_whole(pkt->type))
		return PKT_NEED_FULL;
	if (head_is_answer(sp)) {
		if (stream_has_pending(&s->st))
			return PKT_FLUSH_FIRST;
		if (!emit_answers(s))
			return PKT_GONE;
		if (!sp->q_len && !sp->tail_plain)
			return PKT_FORWARD;
	}
	uint32_t *ahead = sp->q_len ? &q_at(sp, 0)->before : &sp->tail_plain;
	if (*ahead)
		return on_plain_reply(s, pkt, ahead);
	struct ps_reply *e = q_at(sp, 0);
	switch (pkt->type) {
	case 'E':
		return on_error(s, pkt);
	case 'Z':
		sp->copy_in = false;
		if (e->kind == RQ_QUERY && (e->restore || e->saved))
			undo(s, e); /* its DEALLOCATE did not run, and nothing failed: a statement split unlike PostgreSQL's */
		if (e->kind == RQ_QUERY && e->held && s->client->ps)
			s->client->ps->held = false; /* q_pop resumes the client (resume_client) */
		if (e->kind == RQ_SYNC || e->kind == RQ_QUERY)
			q_pop(s);
		else
			note_desync(s, pkt->type);
		return PKT_FORWARD;
	case '1':
		if (e->stmt && e->kind == RQ_PARSE && !e->restore) { /* the server has it now */
			struct ps_held *h = ps_held_find(sp, e->stmt);
			if (h)
				h->pending = 0;
		}
		return complete_head(s, RQ_PARSE, pkt->type);
	case '2':
		return complete_head(s, RQ_BIND, pkt->type);
	case '3':
		return complete_head(s, RQ_CLOSE, pkt->type);
	case 't':
		return PKT_FORWARD; /* Describe statement: its RowDescription or NoData ends it */
	case 'T':
	case 'n':
		if (e->kind == RQ_DESCRIBE_STMT)
			q_pop(s);
		return PKT_FORWARD;
	case 'C':
		if (e->kind == RQ_QUERY && e->text) { /* a client's DEALLOCATE, rewritten (rewrite_deallocate) */
			if (e->stmts_before) {
				e->stmts_before--; /* a statement of the client's before it */
			} else if (e->swallow) {
				e->swallow = false; /* the stand-in's PREPARE */
				return PKT_CONSUMED;
			} else { /* it ran: the name is gone, whatever fails after it */
				if (!e->restore && s->client->ps)
					ps_name_remove(s->client->ps, e->text, e->stmt); /* held: it goes now */
				e->restore = false;
				free(e->text);
				e->text = NULL;
			}
		} else if (e->swallow) {
			e->swallow = false;
			return PKT_CONSUMED;
		}
		if (sp->count || (s->client->ps && s->client->ps->count) || e->saved)
			note_command_tag(s, pkt, 1); /* only statements there are can be dropped */
		if (e->kind == RQ_EXECUTE)
			q_pop(s); /* a DEALLOCATE ALL's: the names it took go for good */
		return PKT_FORWARD;
	case 'I':
	case 's':
		if (e->kind == RQ_EXECUTE)
			q_pop(s);
		return PKT_FORWARD;
	case 'G':
		on_copy_in(s, 1);
		return PKT_FORWARD;
	case 'N':
		if (!names_statement(e))
			return PKT_FORWARD;
		if (!pkt->complete)
			return PKT_NEED_FULL;
		if (!mentions_server_name(pkt, e))
			return PKT_FORWARD;
		if (stream_has_pending(&s->st))
			return PKT_FLUSH_FIRST;
		if (!put_renamed(s, pkt, e))
			return PKT_FORWARD;
		stream_send_out(&s->client->st);
		return s->state == SV_CLOSED ? PKT_GONE : PKT_CONSUMED;
	default:
		return PKT_FORWARD; /* rows, copy data, notices, notifications, parameters */
	}
}

void prepared_server_flushed(struct server *s)
{
	struct ps_server *sp = s->ps;
	if (!sp || !s->client)
		return;
	if (head_is_answer(sp) && !stream_has_pending(&s->st))
		emit_answers(s);
}

void prepared_server_reset(struct server *s, const char *sql)
{
	if (s->ps && sql && (strcasestr(sql, "DISCARD ALL") || strcasestr(sql, "DEALLOCATE ALL")))
		ps_held_clear(s->ps);
}

void prepared_server_free(struct server *s)
{
	struct ps_server *sp = s->ps;
	if (!sp)
		return;
	if (s->client && s->client->ps)
		s->client->ps->held = false; /* the reply it waited for will not come */
	while (sp->q_len) {
		reply_free(sp, q_at(sp, 0));
		sp->q_head = (sp->q_head + 1) & (sp->q_cap - 1);
		sp->q_len--;
	}
	ps_held_clear(sp);
	free(sp->slots);
	free(sp->q);
	free(sp);
	s->ps = NULL;
}
