/*
 * pool: databases, users, pools, and who gets which server.
 *
 * The policy in one paragraph: a client that needs a server takes an idle
 * one (most recently used first, unless server_round_robin), else waits in
 * its pool's FIFO while a new connection opens if the pool is below its
 * size. A server that becomes free goes straight to the client that has
 * waited longest, so a hand-off costs no trip through the idle list. Before
 * a server serves a client whose session parameters differ, the
 * differences are SET on it.
 *
 * When connecting fails and the pool has no server left, every waiting
 * client gets the failure at once, and for server_login_retry new clients
 * get it too instead of waiting for a timeout.
 */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "auth_query.h"
#include "cancel.h"
#include "client.h"
#include "config.h"
#include "dns.h"
#include "fingerprint.h"
#include "log.h"
#include "health.h"
#include "hello.h"
#include "hosts.h"
#include "intern.h"
#include "prepared.h"
#include "replicas.h"
#include "server.h"
#include "settings.h"
#include "stats_log.h"
#include "telemetry.h"
#include "worker.h"

/* ---- tracked parameters ---- */

#define TRACKED(name) { name, sizeof(name) - 1 }
static const struct {
	const char *name;
	size_t len;
} tracked[TP_COUNT] = {
	TRACKED("client_encoding"), TRACKED("DateStyle"), TRACKED("TimeZone"),
	TRACKED("IntervalStyle"), TRACKED("standard_conforming_strings"), TRACKED("application_name"),
};

/*
 * The six names have six different lengths, so the length picks the one
 * candidate: a login asks this for every ParameterStatus it sends.
 */
int pool_tracked_param(const char *name)
{
	size_t len = strlen(name);
	for (int i = 0; i < TP_COUNT; i++)
		if (len == tracked[i].len)
			return strcasecmp(name, tracked[i].name) == 0 ? i : -1;
	return -1;
}

const char *pool_tracked_param_name(int idx)
{
	return (idx >= 0 && idx < TP_COUNT) ? tracked[idx].name : "";
}

void param_list_set(struct param_list *pl, const char *name, const char *value)
{
	for (int i = 0; i < pl->count; i++) {
		if (strcmp(pl->names[i], name) == 0) {
			free(pl->values[i]);
			pl->values[i] = xstrdup(value);
			return;
		}
	}
	pl->names = xrealloc(pl->names, sizeof(char *) * (size_t)(pl->count + 1));
	pl->values = xrealloc(pl->values, sizeof(char *) * (size_t)(pl->count + 1));
	pl->names[pl->count] = xstrdup(name);
	pl->values[pl->count] = xstrdup(value);
	pl->count++;
}

const char *param_list_get(const struct param_list *pl, const char *name)
{
	for (int i = 0; i < pl->count; i++)
		if (strcasecmp(pl->names[i], name) == 0)
			return pl->values[i];
	return NULL;
}

void param_list_free(struct param_list *pl)
{
	for (int i = 0; i < pl->count; i++) {
		free(pl->names[i]);
		free(pl->values[i]);
	}
	free(pl->names);
	free(pl->values);
	memset(pl, 0, sizeof(*pl));
}

/* ---- databases and users ---- */

static bool same_str(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static void set_str(char **slot, const char *value)
{
	if (same_str(*slot, value))
		return;
	free(*slot);
	*slot = xstrdup(value);
}

/* the registry's hosts of the database's host list (pool_db.host_of), taken anew */
static void db_take_hosts(struct pool_db *db)
{
	struct host *old[CFG_MAX_HOSTS];
	int old_n = db->host_n;
	memcpy(old, db->host_of, sizeof(old));
	/* the new ones first: a host both lists name keeps what is known of it */
	db->host_n = 0;
	if (db->hosts.count == 0)
		db->host_of[db->host_n++] = hosts_ref("", db->port);
	for (int i = 0; i < db->hosts.count; i++)
		db->host_of[db->host_n++] = hosts_ref(db->hosts.name[i], db->hosts.port[i]);
	for (int i = 0; i < old_n; i++)
		hosts_unref(old[i]);
}

/* bring a pool_db in line with its [databases] entry; true if where it connects changed */
static bool db_take_entry(struct pool_db *db, const struct cfg_db *e, const char *name)
{
	const char *dbname = (e->dbname && *e->dbname) ? e->dbname : name;
	bool moved = !same_str(db->host, e->host) || db->port != (e->port ? e->port : 5432) ||
		     !cfg_hosts_equal(&db->hosts, &e->hosts) || !same_str(db->dbname, dbname);
	set_str(&db->host, e->host);
	db->port = e->port ? e->port : 5432;
	if (moved) {
		cfg_hosts_free(&db->hosts);
		cfg_hosts_copy(&db->hosts, &e->hosts);
		db->host_cursor = 0;
	}
	if (moved || db->host_n == 0)
		db_take_hosts(db);
	db->load_balance_hosts = e->load_balance_hosts;
	if (db->tsa != e->target_session_attrs) {
		/* RELOAD changed it: servers on hosts that no longer fit go, as after a role change */
		for (int i = 0; i < db->host_n; i++)
			db->host_of[i]->sweep_due = true;
		db->tsa = e->target_session_attrs;
	}
	set_str(&db->dbname, dbname);
	set_str(&db->forced_user, e->user);
	set_str(&db->password, e->password);
	set_str(&db->connect_query, e->connect_query);
	set_str(&db->auth_user, e->auth_user);
	set_str(&db->auth_query, e->auth_query);
	set_str(&db->auth_dbname, e->auth_dbname);
	db->pool_size = e->pool_size;
	db->min_pool_size = e->min_pool_size;
	db->reserve_pool_size = e->reserve_pool_size;
	db->overflow_pool_size = e->overflow_pool_size;
	db->max_db_connections = e->max_db_connections;
	db->max_db_client_connections = e->max_db_client_connections;
	db->pool_mode = e->pool_mode;
	db->server_lifetime = e->server_lifetime;
	param_list_free(&db->startup);
	if (e->client_encoding)
		param_list_set(&db->startup, "client_encoding", e->client_encoding);
	if (e->datestyle)
		param_list_set(&db->startup, "DateStyle", e->datestyle);
	if (e->timezone)
		param_list_set(&db->startup, "TimeZone", e->timezone);
	if (e->application_name)
		param_list_set(&db->startup, "application_name", e->application_name);
	return moved;
}

static struct pool_db *db_new(const char *name)
{
	struct pool_db *db = xcalloc(1, sizeof(*db));
	db->name = xstrdup(name);
	db->pool_size = db->min_pool_size = db->reserve_pool_size = db->max_db_connections = -1;
	db->overflow_pool_size = db->max_db_client_connections = -1;
	db->pool_mode = -1;
	db->server_lifetime = -1;
	list_append(&worker->databases, &db->node);
	return db;
}

static struct pool_db *db_lookup(const char *name)
{
	struct list *pos;
	list_for_each(pos, &worker->databases)
	{
		struct pool_db *db = container_of(pos, struct pool_db, node);
		if (strcmp(db->name, name) == 0)
			return db;
	}
	return NULL;
}

struct pool_db *pool_lookup_db(const char *name)
{
	struct pool_db *db = db_lookup(name);
	return (db && !db->removed && !db->is_admin) ? db : NULL;
}

struct pool_db *pool_find_db(const char *name)
{
	struct pool_db *db = db_lookup(name);
	if (db)
		return db->removed ? NULL : db;
	const struct cfg_db *e = cfg_find_db(worker->cfg, name);
	if (!e)
		return NULL;
	db = db_new(name);
	db->from_fallback = strcmp(e->name, "*") == 0;
	db_take_entry(db, e, name);
	return db;
}

void pool_db_hold(struct pool_db *db)
{
	db->refs++;
}

void pool_db_release(struct pool_db *db)
{
	if (--db->refs == 0 && !db->had_login)
		worker->db_sweep_due = true; /* the reaper frees it, if it was made for this client */
}

void pool_db_free(struct pool_db *db)
{
	list_remove(&db->node);
	free(db->name);
	free(db->host);
	cfg_hosts_free(&db->hosts);
	for (int i = 0; i < db->host_n; i++)
		hosts_unref(db->host_of[i]);
	free(db->dbname);
	free(db->forced_user);
	free(db->password);
	free(db->connect_query);
	free(db->auth_user);
	free(db->auth_query);
	free(db->auth_dbname);
	param_list_free(&db->startup);
	free(db);
}

void pool_count_moved_bytes(void)
{
	struct list *pp, *pos;
	list_for_each(pp, &worker->pools)
	{
		struct pool *p = container_of(pp, struct pool, node);
		list_for_each(pos, &p->active_clients)
		{
			struct client *c = container_of(pos, struct client, node);
			if (c->state == CL_ACTIVE)
				client_count_moved_bytes(c);
		}
	}
}

void pool_free(struct pool *p)
{
	stats_log_retire(&p->stats);
	pool_close_idle_servers(p, "the database's pool is freed");
	dns_forget_waiter(worker->dns, p);
	fp_forget_pool(p);
	list_remove(&p->node);
	pool_forget_welcome(p);
	telemetry_free(p->tm);
	free(p);
}

/*
 * Which databases something still uses: a client that named it, a pool
 * with a busy server or a client, a console waiting on it, or an operator's
 * PAUSE or DISABLE (freeing would forget them). One pass over the pools and
 * consoles, so a sweep costs databases + pools, not their product.
 */
static void mark_databases_in_use(void)
{
	struct list *pos;
	list_for_each(pos, &worker->databases)
	{
		struct pool_db *db = container_of(pos, struct pool_db, node);
		db->in_use = db->refs > 0 || db->paused || db->disabled;
	}
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		if (p->server_count > list_count(&p->idle_servers) || !list_empty(&p->active_clients) ||
		    !list_empty(&p->waiting_clients))
			p->db->in_use = true;
	}
	list_for_each(pos, &worker->login_clients)
	{
		const struct client *c = container_of(pos, struct client, node);
		if (c->admin_wait_db)
			c->admin_wait_db->in_use = true;
	}
}

static void free_database(struct pool_db *db, const char *why)
{
	log_info("%s: freeing the database and its pools (%s)", db->name, why);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (p->db == db)
			pool_free(p);
	}
	pool_db_free(db);
}

void pool_free_unused_databases(int64_t now, bool only_never_used)
{
	if (only_never_used && !worker->db_sweep_due)
		return;
	worker->db_sweep_due = false;
	mark_databases_in_use();
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &worker->databases)
	{
		struct pool_db *db = container_of(pos, struct pool_db, node);
		if (db->is_admin || !(db->from_fallback || db->removed) || (only_never_used && db->had_login))
			continue;
		if (db->in_use) {
			db->unused_since = 0;
			continue;
		}
		if (!db->unused_since)
			db->unused_since = now;
		if (db->removed)
			free_database(db, "removed from the configuration");
		else if (!db->had_login)
			free_database(db, "nobody logged in to it");
		else if (now - db->unused_since >= worker->cfg->autodb_idle_timeout)
			free_database(db, "autodb_idle_timeout");
	}
}

/* the [users] entry's overrides, or "not set" everywhere */
static void user_take_entry(struct pool_user *u)
{
	const struct cfg_user *cu = cfg_find_user(worker->cfg, u->name);
	u->pool_mode = cu ? cu->pool_mode : -1;
	u->pool_size = cu ? cu->pool_size : -1;
	u->reserve_pool_size = cu ? cu->reserve_pool_size : -1;
	u->max_user_connections = cu ? cu->max_user_connections : -1;
	u->max_user_client_connections = cu ? cu->max_user_client_connections : -1;
	u->query_timeout = cu ? cu->query_timeout : -1;
	u->query_wait_timeout = cu ? cu->query_wait_timeout : -1;
	u->idle_transaction_timeout = cu ? cu->idle_transaction_timeout : -1;
	u->client_idle_timeout = cu ? cu->client_idle_timeout : -1;
	u->transaction_timeout = cu ? cu->transaction_timeout : -1;
}

struct pool_user *pool_find_user(const char *name, bool create)
{
	struct list *pos;
	list_for_each(pos, &worker->users)
	{
		struct pool_user *u = container_of(pos, struct pool_user, node);
		if (strcmp(u->name, name) == 0)
			return u;
	}
	if (!create)
		return NULL;
	struct pool_user *u = xcalloc(1, sizeof(*u));
	u->name = xstrdup(name);
	user_take_entry(u);
	list_append(&worker->users, &u->node);
	return u;
}

int64_t pool_user_setting(const struct pool_user *u, int64_t user_value, int64_t global_value)
{
	return (u && user_value >= 0) ? user_value : global_value;
}

static int resolve_pool_mode(const struct pool_db *db, const struct pool_user *u)
{
	if (u->pool_mode >= 0)
		return u->pool_mode;
	if (db->pool_mode >= 0)
		return db->pool_mode;
	return worker->cfg->pool_mode;
}

/* a walsender session is its client's for good: session mode whatever pool_mode says */
static int pool_mode_of(const struct pool *p)
{
	return p->for_replication ? POOL_SESSION : resolve_pool_mode(p->db, p->user);
}

/* tier time is judged against the sizes in force; time before a change counts at the old sizes */
static void note_sizes_for_tier_time(struct pool *p)
{
	struct pool_limits l = pool_limits_of(p);
	struct efficiency *e = &p->tm->eff;
	if (e->base == l.base && e->overflow == l.overflow)
		return;
	telemetry_level(p->tm, &e->base, l.base - e->base);
	e->overflow = l.overflow;
}

static struct pool *find_or_make_pool(struct pool_db *db, struct pool_user *user, bool for_lookups,
				      bool for_replication)
{
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (p->db == db && p->user == user && p->for_lookups == for_lookups &&
		    p->for_replication == for_replication)
			return p;
	}
	struct pool *p = xcalloc(1, sizeof(*p));
	p->db = db;
	p->user = user;
	p->for_lookups = for_lookups;
	p->for_replication = for_replication;
	list_init(&p->active_clients);
	list_init(&p->waiting_clients);
	list_init(&p->active_servers);
	list_init(&p->idle_servers);
	list_init(&p->used_servers);
	list_init(&p->new_servers);
	list_init(&p->canceling_servers);
	p->pool_mode = pool_mode_of(p);
	p->prepared_tracked = prepared_tracked_in(p->pool_mode);
	p->tm = telemetry_new(now_usec());
	note_sizes_for_tier_time(p);
	list_append(&worker->pools, &p->node);
	return p;
}

struct pool *pool_get(struct pool_db *db, struct pool_user *user)
{
	return find_or_make_pool(db, user, false, false);
}

struct pool *pool_get_for_lookups(struct pool_db *db, struct pool_user *user)
{
	return find_or_make_pool(db, user, true, false);
}

struct pool *pool_get_for_replication(struct pool_db *db, struct pool_user *user)
{
	return find_or_make_pool(db, user, false, true);
}

/* make the databases match the configuration in force (startup and reload) */
void pool_apply_config(void)
{
	const struct cfg *cfg = worker->cfg;
	static const char *const admin_names[] = { "pgpulse", "pgbouncer" };
	for (size_t i = 0; i < sizeof(admin_names) / sizeof(admin_names[0]); i++) {
		if (cfg_find_db(cfg, admin_names[i]) && strcmp(cfg_find_db(cfg, admin_names[i])->name, "*") != 0)
			continue; /* a real database of that name wins */
		struct pool_db *db = db_lookup(admin_names[i]);
		if (!db)
			db = db_new(admin_names[i]);
		db->is_admin = true;
	}
	struct list *pos;
	list_for_each(pos, &worker->databases)
	{
		struct pool_db *db = container_of(pos, struct pool_db, node);
		if (db->is_admin)
			continue;
		const struct cfg_db *e = cfg_find_db(cfg, db->name);
		if (!e) {
			db->removed = true;
			continue;
		}
		/* a RELOAD can list a database that "*" made, or leave one only "*" covers */
		db->from_fallback = strcmp(e->name, "*") == 0;
		db->removed = false;
		if (db_take_entry(db, e, db->name))
			db->generation++;
	}
	for (int i = 0; i < cfg->n_dbs; i++) {
		const struct cfg_db *e = &cfg->dbs[i];
		if (strcmp(e->name, "*") != 0 && !db_lookup(e->name))
			pool_find_db(e->name);
	}
	list_for_each(pos, &worker->users)
		user_take_entry(container_of(pos, struct pool_user, node));
	/* a database with a forced user has its pool (and min_pool_size) before any client */
	list_for_each(pos, &worker->databases)
	{
		struct pool_db *db = container_of(pos, struct pool_db, node);
		if (!db->is_admin && !db->removed && db->forced_user)
			pool_get(db, pool_find_user(db->forced_user, true));
	}
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		p->pool_mode = pool_mode_of(p);
		p->prepared_tracked = prepared_tracked_in(p->pool_mode); /* max_prepared_statements too */
		struct list *sp;
		list_for_each(sp, &p->idle_servers)
		{
			struct server *s = container_of(sp, struct server, node);
			if (s->generation != p->db->generation)
				s->close_when_released = true;
		}
		pool_fill_min(p);
	}
}

/* ---- sizes ---- */

int pool_server_count(const struct pool *p)
{
	return p->server_count;
}

static int first_set(int a, int b, int c)
{
	return a >= 0 ? a : (b >= 0 ? b : c);
}

struct pool_limits pool_limits_of(const struct pool *p)
{
	const struct cfg *cfg = worker->cfg;
	const struct pool_db *db = p->db;
	const struct pool_user *u = p->user;
	struct pool_limits l;
	l.base = first_set(u->pool_size, db->pool_size, cfg->default_pool_size);
	l.min = first_set(db->min_pool_size, -1, cfg->min_pool_size);
	l.overflow = first_set(db->overflow_pool_size, -1, cfg->overflow_pool_size);
	l.reserve = first_set(u->reserve_pool_size, db->reserve_pool_size, cfg->reserve_pool_size);
	l.max_db = first_set(db->max_db_connections, -1, cfg->max_db_connections);
	l.max_user = first_set(u->max_user_connections, -1, cfg->max_user_connections);
	if (l.min > l.base)
		l.min = l.base;
	return l;
}

int pool_effective_size(const struct pool *p)
{
	return pool_limits_of(p).base;
}

void pool_tier_use(const struct pool *p, int *overflow_in_use, int *reserve_in_use)
{
	struct pool_limits l = pool_limits_of(p);
	int beyond = pool_server_count(p) - l.base;
	if (beyond < 0)
		beyond = 0;
	*overflow_in_use = beyond < l.overflow ? beyond : l.overflow;
	*reserve_in_use = beyond - *overflow_in_use;
}

/* server connections of every pool of a database, or of a user (walsenders aside: see pool.h) */
static int db_server_total(const struct pool_db *db)
{
	int n = 0;
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (p->db == db && !p->for_replication)
			n += pool_server_count(p);
	}
	return n;
}

static int user_server_total(const struct pool_user *u)
{
	int n = 0;
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (p->user == u && !p->for_replication)
			n += pool_server_count(p);
	}
	return n;
}

/* close the longest-idle server of another pool sharing the database (or user) */
static bool close_idle_server_elsewhere(const struct pool *p, bool same_db)
{
	struct server *victim = NULL;
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		struct pool *o = container_of(pos, struct pool, node);
		if (o == p || (same_db ? o->db != p->db : o->user != p->user) || list_empty(&o->idle_servers))
			continue;
		struct server *s = container_of(list_first(&o->idle_servers), struct server, node);
		if (!victim || s->last_used < victim->last_used)
			victim = s;
	}
	if (!victim)
		return false;
	server_close(victim, same_db ? "max_db_connections: room for another pool of the database"
				     : "max_user_connections: room for another pool of the user");
	return true;
}

/*
 * Is there room under max_db_connections and max_user_connections? A client
 * that waits may take it from an idle server of another pool (evict); filling
 * min_pool_size may not, or two pools under their minimum would take turns
 * closing each other's servers.
 */
static bool room_under_caps(const struct pool *p, const struct pool_limits *l, bool evict)
{
	if (l->max_db > 0 && db_server_total(p->db) >= l->max_db && !(evict && close_idle_server_elsewhere(p, true)))
		return false;
	if (l->max_user > 0 && user_server_total(p->user) >= l->max_user &&
	    !(evict && close_idle_server_elsewhere(p, false)))
		return false;
	return true;
}

/* ---- assignment ---- */

/* give server s to client c; true when c may forward at once */
static bool hand_server_to(struct server *s, struct client *c)
{
	struct pool *p = c->pool;
	client_set_state(c, CL_ACTIVE);
	server_link(s, c);
	p->wait_timeouts = 0; /* the pool serves again */
	p->stats.server_assignments++;
	/* a walsender got the client's values in its startup packet, and takes no SET */
	char *sql = p->for_replication ? NULL : server_param_sync_sql(s, c);
	if (!sql)
		return true;
	server_run_job(s, JOB_SET_PARAMS, sql);
	free(sql);
	return false;
}

/*
 * RECONNECT, a RELOAD that moved the database, a DNS change or its removal:
 * PgBouncer's "close_needed". Not a server kept from others for its own
 * sake (a cancel not confirmed in time): that one only closes on release.
 */
static bool server_must_be_replaced(const struct server *s)
{
	return s->close_needed || s->generation != s->pool->db->generation || s->pool->db->removed;
}

/* a [databases] entry's own server_lifetime, as in PgBouncer: 0 there is "not set" */
static int64_t server_lifetime_of(const struct pool_db *db)
{
	return db->server_lifetime > 0 ? db->server_lifetime : worker->cfg->server_lifetime;
}

/* server_lifetime = 0 means PgBouncer's "use each connection once" */
static bool server_expired(const struct server *s)
{
	int64_t lifetime = server_lifetime_of(s->pool->db);
	if (s->close_when_released || server_must_be_replaced(s))
		return true;
	if (lifetime == 0)
		return s->link_time != 0; /* it has served its one client */
	return now_usec() - s->connect_start >= lifetime;
}

/* why server_expired() said so, in PgBouncer's words for the log */
static const char *expiry_reason(const struct server *s)
{
	if (server_must_be_replaced(s))
		return "database configuration changed";
	if (s->close_when_released)
		return "cancel request not settled";
	return "server lifetime over";
}

/* does the server's host suit its entry now (role, lag)? One bit: the assignment path asks it */
static inline bool server_fits(const struct server *s)
{
	return !s->host || hosts_fits(s->host, s->pool->db->tsa);
}

/*
 * The idle server a client gets: most recently used first (the others
 * grow idle and the pool shrinks). One whose host no longer suits the
 * entry (lagging, or its role changed) is passed over: only then is the
 * list walked for the next one that suits.
 */
static struct server *take_idle_server(struct pool *p)
{
	if (list_empty(&p->idle_servers))
		return NULL;
	bool oldest_first = worker->cfg->server_round_robin;
	struct list *l = oldest_first ? list_first(&p->idle_servers) : p->idle_servers.prev;
	struct server *s = container_of(l, struct server, node);
	if (server_fits(s))
		return s;
	for (l = oldest_first ? l->next : l->prev; l != &p->idle_servers; l = oldest_first ? l->next : l->prev) {
		s = container_of(l, struct server, node);
		if (server_fits(s))
			return s;
	}
	return NULL;
}

bool pool_server_needs_check(const struct server *s, int64_t now)
{
	const struct cfg *cfg = worker->cfg;
	return cfg->server_check_query && *cfg->server_check_query && cfg->server_check_delay >= 0 &&
	       now - s->last_used >= cfg->server_check_delay;
}

static bool pool_is_paused(const struct pool *p);

struct server *pool_idle_server(struct pool *p)
{
	struct server *s;
	if (pool_is_paused(p))
		return NULL;
	while ((s = take_idle_server(p)) && server_expired(s))
		server_close(s, expiry_reason(s));
	return s;
}

bool pool_paused(const struct pool *p)
{
	return pool_is_paused(p);
}

static bool pool_is_paused(const struct pool *p)
{
	return p->db->paused || worker->paused_all;
}

static void start_waiting(struct client *c, int64_t now)
{
	c->wait_start = now;
	c->wait_notified = false;
	client_set_state(c, CL_WAITING);
}

/* ---- replication: one walsender per client (see pool.for_replication) ---- */

static bool may_connect_now(const struct pool *p, int64_t now);

static bool server_opening_for(const struct pool *p, const struct client *c)
{
	struct list *pos;
	list_for_each(pos, &p->new_servers)
	{
		if (container_of(pos, struct server, node)->owner == c)
			return true;
	}
	return false;
}

/* every waiting client of a replication pool has its own connection on the way */
static void launch_replication_servers(struct pool *p)
{
	if (!may_connect_now(p, now_usec()))
		return;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->waiting_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		if (c->state == CL_WAITING && !server_opening_for(p, c) && server_connect_for(p, c))
			p->stats.servers_opened++;
	}
}

/* the replication server s logged in: link it to the client it was opened for, or close it */
static void hand_to_owner(struct server *s)
{
	struct client *c = s->owner;
	s->owner = NULL;
	if (!c || c->state != CL_WAITING) {
		server_close(s, "replication connection: its client is gone");
		return;
	}
	if (hand_server_to(s, c))
		client_linked(c);
}

void pool_replication_client_gone(struct client *c)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &c->pool->new_servers)
	{
		struct server *s = container_of(pos, struct server, node);
		if (s->owner == c) {
			s->owner = NULL;
			server_close(s, "its replication client left before it was ready");
		}
	}
}

bool pool_assign_server(struct client *c)
{
	struct pool *p = c->pool;
	int64_t now = now_usec();
	if (p->db->removed) {
		/* a running transaction was allowed to finish; nothing new starts */
		client_fatal(c, "3D000", "database \"%s\" was removed from the configuration", p->db->name);
		return false;
	}
	if (worker->shutdown == SHUTDOWN_WAIT_SERVERS) {
		/* SIGINT: what runs finishes; a client wanting more reconnects elsewhere (PgBouncer 1.23+) */
		client_fatal(c, "57P01", "pgpulse is shutting down");
		return false;
	}
	if (p->for_replication) {
		/* never an idle server: a new connection, made with the client's own startup values */
		start_waiting(c, now);
		launch_replication_servers(p);
		return false;
	}
	if (!pool_is_paused(p)) {
		struct server *s = take_idle_server(p);
		while (s && server_expired(s)) {
			/* the database moved (RELOAD) or the server is past server_lifetime */
			server_close(s, expiry_reason(s));
			s = take_idle_server(p);
		}
		if (s && !pool_server_needs_check(s, now)) {
			c->wait_start = now; /* a wait of zero, unless parameters must be SET first */
			if (!hand_server_to(s, c))
				return false;
			telemetry_record(p->tm, TK_WAIT, 0);
			c->wait_start = 0;
			return true;
		}
		if (s) {
			/* tested first; pool_server_ready hands it to the longest waiting client */
			start_waiting(c, now);
			server_run_job(s, JOB_CHECK, worker->cfg->server_check_query);
			return false;
		}
		if (pool_server_count(p) == 0 && p->last_connect_failure &&
		    now - p->last_connect_failure < worker->cfg->server_login_retry) {
			/* the server is known to be unreachable: say so now, not at query_wait_timeout */
			client_fatal(c, p->last_error_code[0] ? p->last_error_code : "08006", "%s", p->last_error);
			return false;
		}
	}
	start_waiting(c, now);
	pool_launch_if_needed(p);
	return false;
}

static struct client *first_waiting_for_server(struct pool *p)
{
	struct list *pos;
	list_for_each(pos, &p->waiting_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		if (c->state == CL_WAITING)
			return c;
	}
	return NULL;
}

void pool_server_ready(struct server *s)
{
	struct pool *p = s->pool;
	if (server_expired(s)) {
		server_close(s, expiry_reason(s));
		return;
	}
	s->job = JOB_NONE;
	if (p->for_replication) {
		hand_to_owner(s);
		return;
	}
	if (s->cancels_in_flight > 0) {
		/* a cancel still travelling could hit the next client's query: wait for it (cancel.h) */
		server_set_state(s, SV_CANCELING);
		stream_resume(&s->st);
		return;
	}
	if (!server_fits(s) && !s->host->lagging) {
		/* its host's role changed (a promotion): the entry's clients go elsewhere */
		server_close(s, "the host's role no longer fits target_session_attrs");
		return;
	}
	/* a login waits for a lookup (a lookup pool serves nothing else) */
	if (!pool_is_paused(p) && auth_query_take_server(s))
		return;
	/* a lagging host's server idles: the next probe may find it caught up */
	struct client *c = pool_is_paused(p) || !server_fits(s) ? NULL : first_waiting_for_server(p);
	if (c) {
		if (hand_server_to(s, c))
			client_linked(c);
		return;
	}
	s->client = NULL;
	s->last_used = now_usec();
	server_set_state(s, SV_IDLE);
	stream_resume(&s->st);
	worker_check_shutdown();
}

/* encode the untracked welcome values once, intern the tracked ones (see pool.h) */
static void prepare_welcome(struct pool *p)
{
	pktbuf_init(&p->welcome_msgs);
	for (int i = 0; i < p->welcome.count; i++) {
		int tp = pool_tracked_param(p->welcome.names[i]);
		if (tp >= 0)
			intern_set(&p->welcome_tracked[tp], p->welcome.values[i]);
		else
			proto_put_param_status(&p->welcome_msgs, p->welcome.names[i], p->welcome.values[i]);
	}
}

static void forget_known_settings(struct known_settings *k)
{
	intern_set(&k->settings, NULL);
	pktbuf_free(&k->reported);
}

void pool_forget_welcome(struct pool *p)
{
	param_list_free(&p->welcome);
	pktbuf_free(&p->welcome_msgs);
	for (int tp = 0; tp < TP_COUNT; tp++) {
		intern_set(&p->welcome_tracked[tp], NULL);
		for (int i = 0; i < POOL_ALIASES; i++) {
			intern_set(&p->aliases[tp][i].sent, NULL);
			intern_set(&p->aliases[tp][i].reported, NULL);
		}
	}
	for (int i = 0; i < POOL_KNOWN_SETTINGS; i++)
		forget_known_settings(&p->known_settings[i]); /* the servers may have changed: check again */
	p->have_welcome = false;
}

void pool_learn_alias(struct pool *p, int tp, const char *sent, const char *reported)
{
	if (tp < 0 || tp >= TP_COUNT || !sent || !reported || (sent == reported && sent == p->welcome_tracked[tp]))
		return;
	struct param_alias *a = p->aliases[tp];
	for (int i = 0; i < POOL_ALIASES; i++) {
		if (a[i].sent == sent) {
			if (a[i].reported != reported)
				intern_set(&a[i].reported, reported);
			return;
		}
	}
	struct param_alias *slot = &a[p->alias_next[tp]];
	p->alias_next[tp] = (uint8_t)((p->alias_next[tp] + 1) % POOL_ALIASES);
	intern_set(&slot->sent, sent);
	intern_set(&slot->reported, reported);
}

struct reported_walk {
	struct pktbuf *out;
	const struct param_list *server;
};

static bool put_one_reported(const char *name, const char *value, void *arg)
{
	(void)value;
	struct reported_walk *w = arg;
	for (int i = 0; i < w->server->count; i++) {
		if (strcasecmp(w->server->names[i], name) == 0) {
			proto_put_param_status(w->out, w->server->names[i], w->server->values[i]);
			break;
		}
	}
	return true;
}

void pool_put_reported_settings(struct pktbuf *out, const char *settings, const struct param_list *server)
{
	if (!settings || !server)
		return;
	struct reported_walk w = { out, server };
	settings_each(settings, put_one_reported, &w);
}

void pool_learn_settings(struct pool *p, const char *settings, const struct param_list *server)
{
	if (!settings)
		return;
	struct known_settings *k = (struct known_settings *)pool_known_settings(p, settings);
	if (!k) {
		k = &p->known_settings[p->known_settings_next];
		p->known_settings_next = (uint8_t)((p->known_settings_next + 1) % POOL_KNOWN_SETTINGS);
		forget_known_settings(k);
		intern_set(&k->settings, settings);
	}
	/* what the server reports for the set's own names now (learned again, it is said again) */
	pktbuf_free(&k->reported);
	pool_put_reported_settings(&k->reported, settings, server);
}

const struct known_settings *pool_known_settings(const struct pool *p, const char *settings)
{
	for (int i = 0; settings && i < POOL_KNOWN_SETTINGS; i++)
		if (p->known_settings[i].settings == settings) /* interned: same set, same pointer */
			return &p->known_settings[i];
	return NULL;
}

bool pool_knows_settings(const struct pool *p, const char *settings)
{
	return !settings || pool_known_settings(p, settings);
}

const char *pool_reported_form(const struct pool *p, int tp, const char *sent)
{
	if (sent == p->welcome_tracked[tp])
		return sent; /* what the servers report already */
	for (int i = 0; i < POOL_ALIASES; i++)
		if (p->aliases[tp][i].sent == sent)
			return p->aliases[tp][i].reported;
	return NULL;
}

void pool_server_logged_in(struct server *s)
{
	struct pool *p = s->pool;
	telemetry_record(p->tm, TK_CONNECT, now_usec() - s->connect_start);
	p->last_connect_failure = 0;
	p->last_error[0] = '\0';
	p->last_error_code[0] = '\0';
	if (!p->have_welcome && s->all_params) {
		for (int i = 0; i < s->all_params->count; i++)
			param_list_set(&p->welcome, s->all_params->names[i], s->all_params->values[i]);
		prepare_welcome(p);
		p->have_welcome = true;
	}
	/* clients that waited for the hello get it now */
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->waiting_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		if (c->state == CL_WELCOME)
			hello_send(c);
	}
}

void pool_server_failed(struct pool *p, const char *sqlstate, const char *message)
{
	p->last_connect_failure = now_usec();
	str_copy(p->last_error_code, sqlstate ? sqlstate : "08006", sizeof(p->last_error_code));
	str_copy(p->last_error, message, sizeof(p->last_error));
	log_warning("%s/%s: server login failed: %s", p->db->name, p->user->name, message);
	if (pool_server_count(p) > 0 && !p->for_replication)
		return; /* the servers still open will serve the waiting clients (a walsender serves one) */
	auth_query_pool_failed(p, p->last_error);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->waiting_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		client_fatal(c, p->last_error_code, "%s", p->last_error);
	}
}

void pool_drop_waiting_clients(const char *sqlstate, const char *message)
{
	struct list *pp, *pos, *tmp;
	list_for_each(pp, &worker->pools)
	{
		struct pool *p = container_of(pp, struct pool, node);
		list_for_each_safe(pos, tmp, &p->waiting_clients)
			client_fatal(container_of(pos, struct client, node), sqlstate, "%s", message);
	}
}

/* ---- opening connections: the tiers ---- */

enum tier { TIER_NONE, TIER_BASE, TIER_OVERFLOW, TIER_RESERVE };

/* clients that have waited reserve_pool_timeout or longer: each may get a reserve connection */
static int clients_waiting_past(const struct pool *p, int64_t limit, int64_t now)
{
	int n = 0;
	struct list *pos;
	list_for_each(pos, &p->waiting_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		if (c->state != CL_WAITING)
			continue;
		if (now - c->wait_start < limit)
			break; /* the list is in arrival order */
		n++;
	}
	return n;
}

/* which tier a new connection would come from now, if any */
static enum tier next_tier(const struct pool *p, const struct pool_limits *l, int connecting, int64_t now)
{
	int total = pool_server_count(p);
	if (total < l->base)
		return TIER_BASE;
	if (total < l->base + l->overflow)
		return TIER_OVERFLOW;
	if (total < l->base + l->overflow + l->reserve &&
	    connecting < clients_waiting_past(p, worker->cfg->reserve_pool_timeout, now))
		return TIER_RESERVE;
	return TIER_NONE;
}

bool pool_may_connect(const struct pool *p, int64_t now)
{
	return may_connect_now(p, now);
}

bool pool_has_room(const struct pool *p)
{
	struct pool_limits l = pool_limits_of(p);
	return room_under_caps(p, &l, false);
}

bool pool_is_full(const struct pool *p)
{
	struct pool_limits l = pool_limits_of(p);
	return next_tier(p, &l, list_count(&p->new_servers), now_usec()) == TIER_NONE ||
	       !room_under_caps(p, &l, true);
}

static bool may_connect_now(const struct pool *p, int64_t now)
{
	if (worker->shutdown == SHUTDOWN_NOW || pool_is_paused(p) || p->db->removed)
		return false;
	return !(p->last_connect_failure && now - p->last_connect_failure < worker->cfg->server_login_retry);
}

static bool open_connection(struct pool *p, enum tier tier)
{
	if (!server_connect(p))
		return false;
	p->stats.servers_opened++;
	if (tier == TIER_OVERFLOW)
		p->stats.overflow_opened++;
	else if (tier == TIER_RESERVE)
		p->stats.reserve_opened++;
	if (tier != TIER_BASE)
		log_info("%s/%s: opening a connection from the %s tier", p->db->name, p->user->name,
			 tier == TIER_OVERFLOW ? "overflow" : "reserve");
	return true;
}

void pool_launch_if_needed(struct pool *p)
{
	if (p->for_replication) {
		launch_replication_servers(p);
		return;
	}
	int lookups = auth_query_waiting(p);
	if (list_empty(&p->waiting_clients) && lookups == 0)
		return;
	int64_t now = now_usec();
	if (!may_connect_now(p, now))
		return;
	struct pool_limits l = pool_limits_of(p);
	int connecting = list_count(&p->new_servers);
	/* a full pool is the usual case under load: see that before walking the queue */
	if (next_tier(p, &l, connecting, now) == TIER_NONE)
		return;
	int waiting = list_count(&p->waiting_clients) + lookups;
	while (connecting < waiting) {
		enum tier tier = next_tier(p, &l, connecting, now);
		if (tier == TIER_NONE || !room_under_caps(p, &l, true))
			return;
		if (!open_connection(p, tier))
			return;
		connecting++;
	}
}

/*
 * min_pool_size holds while the pool has clients, or a forced user (whose
 * pool exists before any client), as in PgBouncer: a pool nobody uses any
 * more neither reconnects to a database nor keeps sessions open on it.
 */
static bool keeps_min_size(const struct pool *p)
{
	if (p->for_lookups || p->for_replication)
		return false; /* opened by the lookups (or the replication clients) that need them */
	return p->db->forced_user || !list_empty(&p->active_clients) || !list_empty(&p->waiting_clients);
}

/*
 * A pool that could not reach PostgreSQL and has no server left is judged
 * critical (health.c) until a server logs in. With no client asking, none
 * would ever be opened: a load balancer that took the instance out of
 * rotation on that verdict would keep it out after PostgreSQL came back.
 * So at most every PROBE_PERIOD (and never sooner than server_login_retry)
 * after the last failure, one connection is tried on nobody's behalf. It
 * logs in (the verdict clears; the server idles and goes after
 * server_idle_timeout) or fails (the verdict stands until the next try).
 *
 * Only a PostgreSQL that could not be reached or could not take a
 * connection (SQLSTATE classes 08, 53 and 57P0x: down, starting, full) is
 * tried again; a refused login (no such database, a wrong password) will
 * not mend itself, and a database made from the "*" entry exists only
 * for the clients that asked for it.
 */
#define PROBE_PERIOD (10 * 1000000LL)

static bool failure_may_pass(const char *sqlstate)
{
	return strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "53", 2) == 0 || strncmp(sqlstate, "57P0", 4) == 0;
}

static void probe_unreachable_postgres(struct pool *p, int64_t now)
{
	int64_t after = worker->cfg->server_login_retry > PROBE_PERIOD ? worker->cfg->server_login_retry : PROBE_PERIOD;
	if (!p->last_connect_failure || now - p->last_connect_failure < after || p->for_replication ||
	    p->for_lookups || pool_server_count(p) > 0 || p->db->removed || p->db->disabled || p->db->from_fallback ||
	    pool_is_paused(p) || !failure_may_pass(p->last_error_code))
		return;
	struct pool_limits l = pool_limits_of(p);
	if (room_under_caps(p, &l, false))
		open_connection(p, TIER_BASE);
}

void pool_fill_min(struct pool *p)
{
	int64_t now = now_usec();
	if (!keeps_min_size(p) || !may_connect_now(p, now))
		return;
	struct pool_limits l = pool_limits_of(p);
	while (pool_server_count(p) < l.min && room_under_caps(p, &l, false))
		if (!open_connection(p, TIER_BASE))
			return;
}

void pool_close_idle_servers(struct pool *p, const char *reason)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->idle_servers)
	{
		struct server *s = container_of(pos, struct server, node);
		server_close(s, reason);
	}
}

/* ---- housekeeping ---- */

/*
 * Shrink: beyond the base size a server goes after overflow_idle_timeout
 * idle, whichever tier opened it; within it, after server_idle_timeout,
 * down to min_pool_size. The idle list is oldest-idle first.
 */
static void close_idle_servers_past_timeouts(struct pool *p, int64_t now)
{
	const struct cfg *cfg = worker->cfg;
	struct pool_limits l = pool_limits_of(p);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->idle_servers)
	{
		struct server *s = container_of(pos, struct server, node);
		int total = pool_server_count(p);
		int64_t idle = now - s->last_used;
		if (total > l.base && idle >= cfg->overflow_idle_timeout)
			server_close(s, "overflow_idle_timeout: beyond the base pool size and idle");
		else if (cfg->server_idle_timeout > 0 && idle >= cfg->server_idle_timeout &&
			 (total > l.min || !keeps_min_size(p)))
			server_close(s, "server idle timeout");
		else if (server_expired(s))
			server_close(s, expiry_reason(s));
	}
}

/*
 * query_wait_notify: a client that has waited that long for a server is told
 * so, once per wait, with PgBouncer's NOTICE (an application that logs
 * notices learns why its query is slow). A NoticeResponse may come at any
 * time, and a waiting client is between messages: nothing is interleaved.
 */
static void tell_client_it_is_queued(struct client *c, int64_t now)
{
	int64_t after = worker->cfg->query_wait_notify;
	/* a login waits for its hello: PgBouncer says nothing before the login is done */
	if (after <= 0 || c->wait_notified || c->login_stage != LOGIN_DONE || now - c->wait_start < after)
		return;
	c->wait_notified = true;
	proto_put_notice(stream_out(&c->st), "00000",
			 "No server connection available in postgres backend, client being queued");
	stream_send_out(&c->st);
}

static void fail_clients_past_timeouts(struct pool *p, int64_t now)
{
	const struct cfg *cfg = worker->cfg;
	struct list *pos, *tmp;
	if (pool_is_paused(p))
		return; /* waiting through a PAUSE is what the operator asked for */
	list_for_each_safe(pos, tmp, &p->waiting_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		int64_t limit = pool_user_setting(c->login_user, c->login_user ? c->login_user->query_wait_timeout : -1,
						  cfg->query_wait_timeout);
		char secs[32];
		tell_client_it_is_queued(c, now);
		if (limit <= 0 || now - c->wait_start <= limit)
			continue;
		p->wait_timeout_at = now; /* health.c: the pool's clients are timing out */
		p->wait_timeouts++;
		p->stats.fail.wait_timeouts++;
		client_request_failed(c, FP_TIMEOUT);
		client_fatal(c, "08P01", "query_wait_timeout: no server connection became free within %s s",
			     usec_to_seconds_text(limit, secs, sizeof(secs)));
	}
}

static void close_servers_stuck_connecting(struct pool *p, int64_t now)
{
	const struct cfg *cfg = worker->cfg;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->new_servers)
	{
		struct server *s = container_of(pos, struct server, node);
		if (cfg->server_connect_timeout > 0 && now - s->connect_start > cfg->server_connect_timeout) {
			char msg[128], secs[32];
			snprintf(msg, sizeof(msg), "server_connect_timeout: no login within %s s",
				 usec_to_seconds_text(cfg->server_connect_timeout, secs, sizeof(secs)));
			struct client *owner = s->owner; /* a walsender's timeout is its own client's alone */
			p->stats.fail.server_connect_failures++;
			if (s->host)
				hosts_note_down(s->host, msg, now);
			server_close(s, msg);
			if (owner)
				client_fatal(owner, "08006", "%s", msg);
			else
				pool_server_failed(p, "08006", msg);
		}
	}
}

/* query_timeout: cancel first; if the server does not stop within cancel_wait_timeout, close it */
static void enforce_query_timeout(struct client *c, int64_t limit, int64_t now)
{
	struct server *s = c->server;
	char secs[32];
	if (limit <= 0 || now - c->query_start <= limit)
		return;
	usec_to_seconds_text(limit, secs, sizeof(secs));
	if (!s->cancel_sent_at) {
		client_log(c, LOG_LVL_INFO, "query_timeout (%s s): cancelling the query on S-%llu", secs,
			   (unsigned long long)s->id);
		s->cancel_sent_at = now;
		c->pool->stats.fail.query_timeouts++;
		if (s->inflight_count)
			s->inflight[s->inflight_head].timed_out = true; /* its error reply is this timeout's */
		cancel_send(s, NULL);
		return;
	}
	if (now - s->cancel_sent_at > worker->cfg->cancel_wait_timeout) {
		client_request_failed(c, FP_TIMEOUT);
		client_fatal(c, "57014", "query_timeout: the query ran longer than %s s and did not stop when cancelled",
			     secs);
	}
}

/* client_idle_timeout, idle_transaction_timeout, transaction_timeout, query_timeout */
static void close_clients_past_timeouts(struct pool *p, int64_t now)
{
	const struct cfg *cfg = worker->cfg;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->active_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		const struct pool_user *u = c->login_user;
		bool running = c->pending_syncs > 0 || c->mid_batch;
		/* a request that arrived is no idleness, also while it waits for its server's SETs */
		bool idle = !running && c->req_arrive == 0;
		bool in_xact = c->xact_status != 'I';
		int64_t idle_limit = pool_user_setting(u, u ? u->client_idle_timeout : -1, cfg->client_idle_timeout);
		int64_t itx_limit = pool_user_setting(u, u ? u->idle_transaction_timeout : -1, cfg->idle_transaction_timeout);
		int64_t tx_limit = pool_user_setting(u, u ? u->transaction_timeout : -1, cfg->transaction_timeout);
		int64_t q_limit = pool_user_setting(u, u ? u->query_timeout : -1, cfg->query_timeout);
		/* a replication stream is one command that runs as long as the client wants */
		if (c->server && running && !p->for_replication) {
			enforce_query_timeout(c, q_limit, now);
			if (c->state == CL_CLOSED)
				continue;
		}
		char secs[32];
		if (in_xact && tx_limit > 0 && c->xact_start && now - c->xact_start > tx_limit) {
			p->stats.fail.transaction_timeouts++;
			client_fatal(c, "25P04", "transaction_timeout: transaction open longer than %s s",
				     usec_to_seconds_text(tx_limit, secs, sizeof(secs)));
		} else if (idle && in_xact && itx_limit > 0 && now - c->idle_since > itx_limit) {
			p->stats.fail.idle_transaction_timeouts++;
			client_fatal(c, "25P03", "idle_transaction_timeout: idle in transaction longer than %s s",
				     usec_to_seconds_text(itx_limit, secs, sizeof(secs)));
		} else if (idle && !in_xact && idle_limit > 0 && now - c->idle_since > idle_limit) {
			p->stats.fail.client_idle_timeouts++;
			client_fatal(c, "57P05", "client_idle_timeout: idle longer than %s s",
				     usec_to_seconds_text(idle_limit, secs, sizeof(secs)));
		}
	}
}

/*
 * A walsender whose database is to be taken anew (RECONNECT, a RELOAD that
 * moved it, a DNS change) ends at once, with its client, whatever
 * server_fast_close says, as in PgBouncer: its stream is one command that
 * never ends on its own, and after a failover it would go on streaming
 * from the old server.
 */
static void end_replication_on_replaced_servers(struct pool *p)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->active_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		if (!c->server || !server_must_be_replaced(c->server))
			continue;
		client_log(c, LOG_LVL_INFO, "replication connection S-%llu closed: database configuration changed",
			   (unsigned long long)c->server->id);
		client_fatal(c, "57P01", "database configuration changed: the replication connection was closed "
					 "(RECONNECT, RELOAD or a DNS change)");
	}
}

/*
 * server_fast_close, session mode: a session whose server must be replaced
 * ends as soon as it is between transactions, rather than when its client
 * leaves — and the client goes with it, so that it notices the session is
 * gone (PgBouncer's rule). Checked on each janitor turn: an idle session
 * ends at once, one inside a transaction at the first turn after it ends.
 */
static void end_sessions_for_fast_close(struct pool *p)
{
	if (p->for_replication) {
		end_replication_on_replaced_servers(p);
		return;
	}
	if (!worker->cfg->server_fast_close || p->pool_mode != POOL_SESSION)
		return;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->active_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		bool between_xacts = c->xact_status == 'I' && c->pending_syncs == 0 && !c->mid_batch &&
				     c->req_arrive == 0;
		if (!c->server || !between_xacts || !server_must_be_replaced(c->server))
			continue;
		client_log(c, LOG_LVL_INFO, "server_fast_close: S-%llu is being replaced; closing the session",
			   (unsigned long long)c->server->id);
		client_fatal(c, "57P01",
			     "server_fast_close: the session's server connection was closed (RECONNECT, RELOAD or a DNS change)");
	}
}

/* every 10 s, on the 5-minute window; a change of status is logged */
static void evaluate_health(struct pool *p, int64_t now)
{
	/*
	 * A walsender is busy all its life and a stream is one command that
	 * lasts hours: utilization and latency thresholds would cry wolf.
	 */
	if (p->for_replication)
		return;
	if (!telemetry_enabled || now - p->health_checked_at < SERIES_SLOT_USEC)
		return;
	p->health_checked_at = now;
	struct health_verdict v;
	health_judge_pool(p, now, &v);
	enum health_status st = v.status;
	if ((int)st != p->health) {
		log_msg(st == HEALTH_OK ? LOG_LVL_INFO : LOG_LVL_WARNING, "%s/%s: health %s -> %s%s%s", p->db->name,
			p->user->name, health_status_name((enum health_status)p->health), health_status_name(st),
			v.reason[0] ? ": " : "", v.reason);
	}
	p->health = st;
	str_copy(p->health_reason, v.reason, sizeof(p->health_reason));
}

void pool_janitor(struct pool *p, int64_t now)
{
	note_sizes_for_tier_time(p);
	telemetry_rotate(p->tm, now);
	evaluate_health(p, now);
	close_clients_past_timeouts(p, now);
	end_sessions_for_fast_close(p);
	close_servers_stuck_connecting(p, now);
	fail_clients_past_timeouts(p, now);
	close_idle_servers_past_timeouts(p, now);
	replicas_pool_janitor(p);
	pool_launch_if_needed(p);
	pool_fill_min(p);
	probe_unreachable_postgres(p, now);
}
