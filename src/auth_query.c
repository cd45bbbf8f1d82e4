/*
 * auth_query: secrets of users missing from the auth_file, looked up in
 * PostgreSQL (see auth_query.h for the contract).
 *
 * A lookup lives from the first client that needs it until its answer is
 * given: queued on its pool (a lookups-only pool, pool.for_lookups:
 * pool_launch_if_needed counts a queued lookup like a waiting client,
 * pool_server_ready offers it the next free server), then running on one
 * server as that server's job. Clients that wait for it point at it
 * (c->lookup) and are found again by a walk of the login list, so a lookup
 * holds no pointers to clients that could dangle.
 *
 * Answers are given, and lookups freed, only from one deferred callback
 * (answer_ready_lookups): a lookup may end deep inside a server close or a
 * failed connect (pool_server_failed), with callers up the stack still
 * walking lists or holding the lookup, so nothing frees one there.
 *
 * Found secrets go to a small cache keyed by (auth database, auth_user,
 * auth_query, user). Only real roles with a secret are cached — an unknown
 * name is never kept — and the cache is bounded (AUTH_CACHE_MAX, oldest
 * first out).
 */
#include "auth_query.h"

#include <event2/event.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "config.h"
#include "log.h"
#include "login.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "stream.h"
#include "util.h"
#include "worker.h"

/* secrets kept at once: more than a cluster has roles that log in through one pooler */
#define AUTH_CACHE_MAX 4096
/* the longest secret accepted from auth_query (a SCRAM secret is about 130 bytes) */
#define AUTH_SECRET_MAX 1024

struct auth_lookup {
	struct list node;       /* aq.lookups: every lookup queued, running or answered, oldest first */
	struct pool *pool;      /* the lookups-only pool of (auth database, auth_user) */
	char *user;
	char *query;            /* auth_query in force when it started */
	int waiters;            /* clients waiting for the answer */
	struct server *server;  /* running on, or NULL while queued (or once done) */
	int64_t queued_at;      /* monotonic usec */
	int64_t started;        /* monotonic usec it began running */
	bool done;              /* the answer is known: answer_ready_lookups gives it */
	int prelude;            /* results of pgpulse's own statements to skip before the lookup's */
	/* the answer */
	int rows;
	bool have_secret;
	char *secret;
	bool failed;
	char error[256];
};

struct auth_cached {
	struct list node;       /* aq.cache, oldest first */
	char *db, *auth_user, *query, *user, *secret;
	int64_t found_at;       /* monotonic usec */
};

static struct {
	struct list lookups;
	struct list cache;
	int cached;
	struct event *answer_ev; /* runs answer_ready_lookups on the next loop turn */
	bool ready;
} aq;

static void answer_ready_lookups(evutil_socket_t fd, short what, void *arg);

static void aq_init(void)
{
	if (aq.ready)
		return;
	list_init(&aq.lookups);
	list_init(&aq.cache);
	aq.answer_ev = event_new(worker->base, -1, 0, answer_ready_lookups, NULL);
	if (!aq.answer_ev)
		abort(); /* as every failed allocation does (util.c) */
	aq.ready = true;
}

static void schedule_answers(void)
{
	event_active(aq.answer_ev, EV_TIMEOUT, 0);
}

/* ---- settings: a [databases] entry's own, else the global ones ---- */

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

/*
 * db is NULL when the client named a database that does not exist: the
 * login still runs to its end (client.c says 3D000 only after it), and the
 * user can be looked up only where a global auth_dbname says.
 */
const char *auth_query_user_for(const struct pool_db *db)
{
	if (!db)
		return nonempty(worker->cfg->auth_dbname) ? nonempty(worker->cfg->auth_user) : NULL;
	if (db->is_admin)
		return NULL; /* the console's users are in the auth_file, as in PgBouncer */
	const char *u = nonempty(db->auth_user);
	return u ? u : nonempty(worker->cfg->auth_user);
}

static const char *query_for(const struct pool_db *db)
{
	const char *q = db ? nonempty(db->auth_query) : NULL;
	return q ? q : worker->cfg->auth_query;
}

/* the database the lookup runs in: auth_dbname, else the one the client asked for */
static const char *dbname_for(const struct pool_db *db)
{
	const char *d = db ? nonempty(db->auth_dbname) : NULL;
	if (!d)
		d = nonempty(worker->cfg->auth_dbname);
	return d ? d : db ? db->name : "";
}

/* ---- the cache ---- */

static void forget_secret(char *secret)
{
	if (secret)
		OPENSSL_cleanse(secret, strlen(secret));
	free(secret);
}

static void cached_free(struct auth_cached *e)
{
	list_remove(&e->node);
	free(e->db);
	free(e->auth_user);
	free(e->query);
	free(e->user);
	forget_secret(e->secret);
	free(e);
	aq.cached--;
}

static struct auth_cached *cache_find(const char *db, const char *auth_user, const char *query, const char *user)
{
	struct list *pos;
	list_for_each(pos, &aq.cache)
	{
		struct auth_cached *e = container_of(pos, struct auth_cached, node);
		if (strcmp(e->user, user) == 0 && strcmp(e->auth_user, auth_user) == 0 && strcmp(e->db, db) == 0 &&
		    strcmp(e->query, query) == 0)
			return e;
	}
	return NULL;
}

static void cache_put(const struct auth_lookup *lk)
{
	const char *db = lk->pool->db->name, *auth_user = lk->pool->user->name;
	struct auth_cached *e = cache_find(db, auth_user, lk->query, lk->user);
	if (e)
		cached_free(e);
	if (worker->cfg->auth_cache_lifetime <= 0)
		return;
	if (aq.cached >= AUTH_CACHE_MAX)
		cached_free(container_of(list_first(&aq.cache), struct auth_cached, node));
	e = xcalloc(1, sizeof(*e));
	e->db = xstrdup(db);
	e->auth_user = xstrdup(auth_user);
	e->query = xstrdup(lk->query);
	e->user = xstrdup(lk->user);
	e->secret = xstrdup(lk->secret);
	e->found_at = now_usec();
	list_append(&aq.cache, &e->node);
	aq.cached++;
}

void auth_query_drop_cached(const struct client *c)
{
	aq_init();
	const char *auth_user = auth_query_user_for(c->db);
	if (!auth_user)
		return;
	struct auth_cached *e = cache_find(dbname_for(c->db), auth_user, query_for(c->db), c->user);
	if (e)
		cached_free(e);
}

void auth_query_clear_cache(void)
{
	aq_init();
	while (!list_empty(&aq.cache))
		cached_free(container_of(list_first(&aq.cache), struct auth_cached, node));
}


/* ---- lookups ---- */

static void lookup_free(struct auth_lookup *lk)
{
	list_remove(&lk->node);
	pool_db_release(lk->pool->db);
	free(lk->user);
	free(lk->query);
	forget_secret(lk->secret);
	free(lk);
}

/* the answer is known (or nobody waits any more): given on the next loop turn */
static void lookup_done(struct auth_lookup *lk)
{
	lk->done = true;
	schedule_answers();
}

static struct auth_lookup *lookup_find(const struct pool *p, const char *user, const char *query)
{
	struct list *pos;
	list_for_each(pos, &aq.lookups)
	{
		struct auth_lookup *lk = container_of(pos, struct auth_lookup, node);
		if (lk->pool == p && !lk->done && strcmp(lk->user, user) == 0 && strcmp(lk->query, query) == 0)
			return lk;
	}
	return NULL;
}

static bool is_queued(const struct auth_lookup *lk)
{
	return !lk->server && !lk->done;
}

int auth_query_waiting(const struct pool *p)
{
	if (!aq.ready)
		return 0;
	int n = 0;
	struct list *pos;
	list_for_each(pos, &aq.lookups)
	{
		struct auth_lookup *lk = container_of(pos, struct auth_lookup, node);
		n += lk->pool == p && is_queued(lk) && lk->waiters > 0;
	}
	return n;
}

static void put_statement(struct pktbuf *out, const char *sql, const char *param)
{
	pkt_begin(out, 'P');
	pkt_put_str(out, "");
	pkt_put_str(out, sql);
	pkt_put_u16(out, 0);
	pkt_end(out);
	pkt_begin(out, 'B');
	pkt_put_str(out, "");
	pkt_put_str(out, "");
	pkt_put_u16(out, 0);
	pkt_put_u16(out, param ? 1 : 0);
	if (param) {
		pkt_put_u32(out, (uint32_t)strlen(param));
		pkt_put_bytes(out, param, strlen(param));
	}
	pkt_put_u16(out, 0);
	pkt_end(out);
	pkt_begin(out, 'E');
	pkt_put_str(out, "");
	pkt_put_u32(out, 0);
	pkt_end(out);
}

/*
 * PostgreSQL compares the startup packet's user name with rolname byte for
 * byte; the name sent as a parameter is converted from client_encoding to
 * the server's. A server whose client_encoding differs from its
 * server_encoding (a [databases] client_encoding, a postgresql.conf
 * default) first gets the two aligned, so that the bytes arrive unchanged.
 */
static bool needs_encoding_aligned(const struct server *s, char *enc, size_t len)
{
	const char *server_enc = s->all_params ? param_list_get(s->all_params, "server_encoding") : NULL;
	const char *client_enc = s->params[TP_CLIENT_ENCODING];
	if (!server_enc || !client_enc || strcasecmp(server_enc, client_enc) == 0)
		return false;
	for (const char *p = server_enc; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_')
			return false; /* not an encoding name PostgreSQL reports: leave it alone */
	str_copy(enc, server_enc, len);
	return true;
}

/*
 * Parse, Bind (the user name as the one text parameter), Execute, Sync:
 * the name reaches PostgreSQL as a value, so no name can change the query.
 */
static void put_lookup_messages(struct server *s, struct auth_lookup *lk)
{
	struct pktbuf *out = stream_out(&s->st);
	char enc[64], sql[96];
	lk->prelude = 0;
	if (needs_encoding_aligned(s, enc, sizeof(enc))) {
		snprintf(sql, sizeof(sql), "SET client_encoding TO '%s'", enc);
		put_statement(out, sql, NULL);
		lk->prelude = 1;
	}
	put_statement(out, lk->query, lk->user);
	pkt_begin(out, 'S');
	pkt_end(out);
}

static void run_on(struct auth_lookup *lk, struct server *s)
{
	lk->server = s;
	lk->started = now_usec();
	s->lookup = lk;
	log_debug("%s/%s: auth_query for user \"%s\" on S-%llu", lk->pool->db->name, lk->pool->user->name, lk->user,
		  (unsigned long long)s->id);
	put_lookup_messages(s, lk);
	server_start_job(s, JOB_AUTH_QUERY);
}

static void fail_lookup(struct auth_lookup *lk, const char *fmt, const char *detail)
{
	if (lk->failed)
		return; /* the first reason is the one to tell */
	lk->failed = true;
	snprintf(lk->error, sizeof(lk->error), fmt, detail);
}

/* every client waiting for lk gets its answer */
static void answer_waiters(struct auth_lookup *lk)
{
	if (lk->failed) {
		lk->have_secret = false;
		log_warning("%s/%s: auth_query for user \"%s\" failed: %s", lk->pool->db->name, lk->pool->user->name,
			    lk->user, lk->error);
	} else if (lk->have_secret) {
		cache_put(lk);
	}
	const char *secret = lk->have_secret ? lk->secret : NULL;
	bool found = !lk->failed && lk->rows == 1; /* a role without a secret is still a role (trust) */
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &worker->login_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		if (c->lookup != lk)
			continue;
		c->lookup = NULL;
		lk->waiters--;
		login_lookup_done(c, secret, found, lk->failed ? lk->error : NULL);
	}
}

/* the next lookup that can be answered or let go; NULL when none */
static struct auth_lookup *next_finished(void)
{
	struct list *pos;
	list_for_each(pos, &aq.lookups)
	{
		struct auth_lookup *lk = container_of(pos, struct auth_lookup, node);
		if (lk->done || (is_queued(lk) && lk->waiters == 0))
			return lk;
	}
	return NULL;
}

/*
 * The one place lookups end. Answering a client can close it, start its
 * pool or fail it, all of which may touch other lookups: take one at a
 * time and look again from the start.
 */
static void answer_ready_lookups(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	struct auth_lookup *lk;
	while ((lk = next_finished())) {
		list_remove(&lk->node); /* off the list while its waiters run: nothing finds it again */
		if (lk->done)
			answer_waiters(lk);
		lookup_free(lk);
	}
}

static struct auth_lookup *lookup_new(struct pool *p, const char *user, const char *query)
{
	struct auth_lookup *lk = xcalloc(1, sizeof(*lk));
	lk->pool = p;
	lk->user = xstrdup(user);
	lk->query = xstrdup(query);
	lk->queued_at = now_usec();
	pool_db_hold(p->db);
	p->db->had_login = true; /* an auto-database that lookups use stays for autodb_idle_timeout */
	list_append(&aq.lookups, &lk->node);
	return lk;
}

/* on an idle server now, or queued for the next (the pool may open one) */
static void lookup_begin(struct auth_lookup *lk)
{
	struct server *s = pool_idle_server(lk->pool);
	if (lk->done)
		return; /* closing an expired server on the way failed the pool: answered soon */
	if (s)
		run_on(lk, s);
	else
		pool_launch_if_needed(lk->pool);
}

/*
 * A lookup PostgreSQL does not answer (a lock on pg_authid, a hung
 * function) would hold its server for good, and one whose pool can never
 * get a server (its database removed by a RELOAD, the pool full of hung
 * lookups) would wait for good: past client_login_timeout (60 s when that
 * is off) nobody waits for them any more. Closing the server fails a
 * running one; a queued one fails here.
 */
static void end_lookups_past_timeout(int64_t now)
{
	int64_t limit = worker->cfg->client_login_timeout > 0 ? worker->cfg->client_login_timeout : 60 * 1000000LL;
	struct list *pos;
	list_for_each(pos, &aq.lookups)
	{
		struct auth_lookup *lk = container_of(pos, struct auth_lookup, node);
		if (lk->server && now - lk->started > limit) {
			server_close(lk->server, "auth_query did not finish within client_login_timeout");
		} else if (is_queued(lk) && (lk->pool->db->removed || now - lk->queued_at > limit)) {
			fail_lookup(lk, "%s", lk->pool->db->removed ? "the auth database was removed by a RELOAD"
								  : "no server connection for the lookup in time");
			lookup_done(lk);
		}
	}
}

void auth_query_expire(int64_t now)
{
	aq_init();
	end_lookups_past_timeout(now);
	int64_t lifetime = worker->cfg->auth_cache_lifetime;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &aq.cache)
	{
		struct auth_cached *e = container_of(pos, struct auth_cached, node);
		if (lifetime > 0 && now - e->found_at < lifetime)
			break; /* oldest first: the rest are younger */
		cached_free(e);
	}
}

bool auth_query_find(struct client *c, const char **secret)
{
	aq_init();
	const char *auth_user = auth_query_user_for(c->db);
	const char *dbname = dbname_for(c->db);
	const char *query = query_for(c->db);
	struct auth_cached *e = cache_find(dbname, auth_user, query, c->user);
	if (e && now_usec() - e->found_at < worker->cfg->auth_cache_lifetime) {
		*secret = e->secret;
		return true;
	}
	struct pool_db *db = pool_find_db(dbname);
	if (!db || db->is_admin || db->removed) {
		client_log(c, LOG_LVL_WARNING, "auth_dbname \"%s\" is not a database in [databases]", dbname);
		client_fatal(c, "28000", "authentication failed for user \"%s\": the auth_query lookup failed",
			     c->user);
		return false;
	}
	struct pool *p = pool_get_for_lookups(db, pool_find_user(auth_user, true));
	int64_t now = now_usec();
	if (pool_server_count(p) == 0 && p->last_connect_failure &&
	    now - p->last_connect_failure < worker->cfg->server_login_retry) {
		client_log(c, LOG_LVL_WARNING, "auth_query cannot run: %s/%s: %s", db->name, auth_user, p->last_error);
		client_fatal(c, "28000", "authentication failed for user \"%s\": the auth_query lookup failed",
			     c->user);
		return false;
	}
	struct auth_lookup *lk = lookup_find(p, c->user, query);
	bool fresh = !lk;
	if (fresh)
		lk = lookup_new(p, c->user, query);
	lk->waiters++;
	c->lookup = lk;
	if (fresh)
		lookup_begin(lk);
	return false;
}

void auth_query_forget_client(struct client *c)
{
	struct auth_lookup *lk = c->lookup;
	if (!lk)
		return;
	c->lookup = NULL;
	if (--lk->waiters == 0 && is_queued(lk))
		schedule_answers(); /* nobody wants it and it holds no server: let it go */
}

bool auth_query_take_server(struct server *s)
{
	if (!aq.ready || !s->pool->for_lookups)
		return false;
	struct list *pos;
	list_for_each(pos, &aq.lookups)
	{
		struct auth_lookup *lk = container_of(pos, struct auth_lookup, node);
		if (lk->pool == s->pool && is_queued(lk) && lk->waiters > 0) {
			run_on(lk, s);
			return true;
		}
	}
	return false;
}

void auth_query_pool_failed(struct pool *p, const char *message)
{
	if (!aq.ready)
		return;
	struct list *pos;
	list_for_each(pos, &aq.lookups)
	{
		struct auth_lookup *lk = container_of(pos, struct auth_lookup, node);
		if (lk->pool != p || !is_queued(lk))
			continue;
		fail_lookup(lk, "could not log in as auth_user: %s", message);
		lookup_done(lk);
	}
}

/* DataRow: (user name, secret); the secret may be NULL (no valid password) */
static void take_row(struct auth_lookup *lk, const struct pkt *pkt)
{
	struct pkt_reader r;
	pkt_reader_init(&r, pkt->body, pkt->body_len);
	uint16_t cols = pkt_get_u16(&r);
	if (++lk->rows > 1) {
		fail_lookup(lk, "auth_query returned more than one row%s", "");
		return;
	}
	if (r.bad || cols != 2) {
		fail_lookup(lk, "auth_query must return two columns (user name, password)%s", "");
		return;
	}
	uint32_t len = pkt_get_u32(&r);
	if (len != 0xffffffffu)
		pkt_get_bytes(&r, len);
	len = pkt_get_u32(&r);
	if (r.bad) {
		fail_lookup(lk, "malformed DataRow from auth_query%s", "");
		return;
	}
	/*
	 * NULL (no password, or rolvaliduntil in the past) and '' (a query's
	 * COALESCE, a users table; PostgreSQL stores PASSWORD '' as no
	 * password) are a role without a secret: the login fails as a wrong
	 * password would, not as a broken lookup, which would tell such a role
	 * from a missing one.
	 */
	if (len == 0xffffffffu || len == 0)
		return;
	const uint8_t *data = pkt_get_bytes(&r, len);
	if (r.bad || len > AUTH_SECRET_MAX || memchr(data, '\0', len)) {
		fail_lookup(lk, "auth_query returned an unusable password value%s", "");
		return;
	}
	lk->secret = xmalloc(len + 1);
	memcpy(lk->secret, data, len);
	lk->secret[len] = '\0';
	lk->have_secret = true;
}

void auth_query_on_reply(struct server *s, const struct pkt *pkt)
{
	struct auth_lookup *lk = s->lookup;
	if (!lk || lk->failed)
		return;
	if (lk->prelude > 0 && pkt->type != 'E') {
		if (pkt->type == 'C')
			lk->prelude--; /* the end of pgpulse's own statement: the lookup's results follow */
		return;
	}
	switch (pkt->type) {
	case 'D':
		take_row(lk, pkt);
		break;
	case 'E': {
		const char *msg = proto_error_field(pkt->body, pkt->body_len, 'M');
		fail_lookup(lk, "%s", msg ? msg : "error without a message");
		break;
	}
	default:
		break; /* ParseComplete, BindComplete, CommandComplete, notices */
	}
}

void auth_query_finished(struct server *s, bool lost)
{
	struct auth_lookup *lk = s->lookup;
	if (!lk)
		return;
	s->lookup = NULL;
	lk->server = NULL;
	if (lost)
		fail_lookup(lk, "the server connection closed during the lookup%s", "");
	lookup_done(lk);
}

void auth_query_shutdown(void)
{
	if (!aq.ready)
		return;
	auth_query_clear_cache();
	while (!list_empty(&aq.lookups))
		lookup_free(container_of(list_first(&aq.lookups), struct auth_lookup, node));
	event_free(aq.answer_ev);
	aq.ready = false;
}
