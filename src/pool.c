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
#include "client.h"
#include "config.h"
#include "log.h"
#include "server.h"
#include "worker.h"

/* ---- tracked parameters ---- */

static const char *const tracked_names[TP_COUNT] = {
	"client_encoding", "DateStyle", "TimeZone", "IntervalStyle", "standard_conforming_strings", "application_name",
};

int pool_tracked_param(const char *name)
{
	for (int i = 0; i < TP_COUNT; i++)
		if (strcasecmp(name, tracked_names[i]) == 0)
			return i;
	return -1;
}

const char *pool_tracked_param_name(int idx)
{
	return (idx >= 0 && idx < TP_COUNT) ? tracked_names[idx] : "";
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

/* bring a pool_db in line with its [databases] entry; true if where it connects changed */
static bool db_take_entry(struct pool_db *db, const struct cfg_db *e, const char *name)
{
	const char *dbname = (e->dbname && *e->dbname) ? e->dbname : name;
	bool moved = !same_str(db->host, e->host) || db->port != (e->port ? e->port : 5432) ||
		     !same_str(db->dbname, dbname);
	set_str(&db->host, e->host);
	db->port = e->port ? e->port : 5432;
	set_str(&db->dbname, dbname);
	set_str(&db->forced_user, e->user);
	set_str(&db->password, e->password);
	set_str(&db->connect_query, e->connect_query);
	db->pool_size = e->pool_size;
	db->min_pool_size = e->min_pool_size;
	db->reserve_pool_size = e->reserve_pool_size;
	db->max_db_connections = e->max_db_connections;
	db->pool_mode = e->pool_mode;
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
	db->pool_mode = -1;
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
	u->pool_mode = -1;
	const struct cfg_user *cu = cfg_find_user(worker->cfg, name);
	if (cu) {
		u->pool_mode = cu->pool_mode;
		u->max_user_connections = cu->max_user_connections;
	}
	list_append(&worker->users, &u->node);
	return u;
}

static int resolve_pool_mode(const struct pool_db *db, const struct pool_user *u)
{
	const struct cfg_user *cu = cfg_find_user(worker->cfg, u->name);
	if (cu && cu->pool_mode >= 0)
		return cu->pool_mode;
	if (db->pool_mode >= 0)
		return db->pool_mode;
	return worker->cfg->pool_mode;
}

struct pool *pool_get(struct pool_db *db, struct pool_user *user)
{
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (p->db == db && p->user == user)
			return p;
	}
	struct pool *p = xcalloc(1, sizeof(*p));
	p->db = db;
	p->user = user;
	list_init(&p->active_clients);
	list_init(&p->waiting_clients);
	list_init(&p->active_servers);
	list_init(&p->idle_servers);
	list_init(&p->used_servers);
	list_init(&p->new_servers);
	p->pool_mode = resolve_pool_mode(db, user);
	list_append(&worker->pools, &p->node);
	return p;
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
		db->removed = false;
		if (db_take_entry(db, e, db->name))
			db->generation++;
	}
	for (int i = 0; i < cfg->n_dbs; i++) {
		const struct cfg_db *e = &cfg->dbs[i];
		if (strcmp(e->name, "*") != 0 && !db_lookup(e->name))
			pool_find_db(e->name);
	}
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		p->pool_mode = resolve_pool_mode(p->db, p->user);
		struct list *sp;
		list_for_each(sp, &p->idle_servers)
		{
			struct server *s = container_of(sp, struct server, node);
			if (s->generation != p->db->generation)
				s->close_when_released = true;
		}
	}
}

/* ---- sizes ---- */

int pool_server_count(const struct pool *p)
{
	return list_count(&p->active_servers) + list_count(&p->idle_servers) + list_count(&p->used_servers) +
	       list_count(&p->new_servers);
}

int pool_effective_size(const struct pool *p)
{
	const struct cfg_user *cu = cfg_find_user(worker->cfg, p->user->name);
	if (cu && cu->pool_size >= 0)
		return cu->pool_size;
	if (p->db->pool_size >= 0)
		return p->db->pool_size;
	return worker->cfg->default_pool_size;
}

/* ---- assignment ---- */

/* give server s to client c; true when c may forward at once */
static bool hand_server_to(struct server *s, struct client *c)
{
	struct pool *p = c->pool;
	list_remove(&c->node);
	c->state = CL_ACTIVE;
	list_append(&p->active_clients, &c->node);
	server_link(s, c);
	p->stats.server_assignments++;
	char *sql = server_param_sync_sql(s, c);
	if (!sql)
		return true;
	server_run_job(s, JOB_SET_PARAMS, sql);
	free(sql);
	return false;
}

static struct server *take_idle_server(struct pool *p)
{
	struct list *l = worker->cfg->server_round_robin ? list_first(&p->idle_servers) : p->idle_servers.prev;
	if (l == &p->idle_servers || !l)
		return NULL;
	return container_of(l, struct server, node);
}

static bool pool_is_paused(const struct pool *p)
{
	return p->db->paused || worker->paused_all;
}

bool pool_assign_server(struct client *c)
{
	struct pool *p = c->pool;
	if (!pool_is_paused(p)) {
		struct server *s = take_idle_server(p);
		if (s)
			return hand_server_to(s, c);
	}
	int64_t now = now_usec();
	if (!pool_is_paused(p) && pool_server_count(p) == 0 && p->last_connect_failure &&
	    now - p->last_connect_failure < worker->cfg->server_login_retry) {
		/* the server is known to be unreachable: say so now, not at query_wait_timeout */
		client_fatal(c, p->last_error_code[0] ? p->last_error_code : "08006", "%s", p->last_error);
		return false;
	}
	list_remove(&c->node);
	c->state = CL_WAITING;
	c->wait_start = now;
	list_append(&p->waiting_clients, &c->node);
	pool_launch_if_needed(p);
	return false;
}

void pool_forget_waiting(struct client *c)
{
	list_remove(&c->node);
	if (c->pool) {
		c->state = CL_ACTIVE;
		list_append(&c->pool->active_clients, &c->node);
	}
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

static bool server_expired(const struct server *s)
{
	int64_t lifetime = worker->cfg->server_lifetime;
	return s->close_when_released || s->generation != s->pool->db->generation || s->pool->db->removed ||
	       (lifetime > 0 && now_usec() - s->connect_start > lifetime);
}

void pool_server_ready(struct server *s)
{
	struct pool *p = s->pool;
	if (server_expired(s)) {
		server_close(s, "server lifetime over or database changed");
		return;
	}
	struct client *c = pool_is_paused(p) ? NULL : first_waiting_for_server(p);
	if (c) {
		if (hand_server_to(s, c))
			client_linked(c);
		return;
	}
	s->job = JOB_NONE;
	s->client = NULL;
	list_remove(&s->node);
	s->state = SV_IDLE;
	s->last_used = now_usec();
	list_append(&p->idle_servers, &s->node);
	stream_resume(&s->st);
	worker_check_shutdown();
}

void pool_server_logged_in(struct server *s)
{
	struct pool *p = s->pool;
	p->last_connect_failure = 0;
	p->last_error[0] = '\0';
	p->last_error_code[0] = '\0';
	if (!p->have_welcome && s->all_params) {
		for (int i = 0; i < s->all_params->count; i++)
			param_list_set(&p->welcome, s->all_params->names[i], s->all_params->values[i]);
		p->have_welcome = true;
	}
	/* clients that waited for the hello get it now */
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->waiting_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		if (c->state == CL_WELCOME)
			client_finish_login(c);
	}
}

void pool_server_failed(struct pool *p, const char *sqlstate, const char *message)
{
	p->last_connect_failure = now_usec();
	str_copy(p->last_error_code, sqlstate ? sqlstate : "08006", sizeof(p->last_error_code));
	str_copy(p->last_error, message, sizeof(p->last_error));
	log_warning("%s/%s: server login failed: %s", p->db->name, p->user->name, message);
	if (pool_server_count(p) > 0)
		return; /* the servers still open will serve the waiting clients */
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->waiting_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		client_fatal(c, p->last_error_code, "%s", p->last_error);
	}
}

void pool_launch_if_needed(struct pool *p)
{
	if (worker->shutdown == SHUTDOWN_NOW || pool_is_paused(p) || p->db->removed)
		return;
	int waiting = list_count(&p->waiting_clients);
	if (waiting == 0)
		return;
	int64_t now = now_usec();
	if (p->last_connect_failure && now - p->last_connect_failure < worker->cfg->server_login_retry)
		return;
	int connecting = list_count(&p->new_servers);
	int total = pool_server_count(p);
	int size = pool_effective_size(p);
	int busy = list_count(&p->active_servers) + list_count(&p->used_servers);
	(void)busy;
	while (connecting < waiting && total < size) {
		if (!server_connect(p))
			return;
		connecting++;
		total++;
	}
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

static void close_idle_servers_past_timeouts(struct pool *p, int64_t now)
{
	const struct cfg *cfg = worker->cfg;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->idle_servers)
	{
		struct server *s = container_of(pos, struct server, node);
		if (cfg->server_idle_timeout > 0 && now - s->last_used > cfg->server_idle_timeout &&
		    pool_server_count(p) > (p->db->min_pool_size >= 0 ? p->db->min_pool_size : cfg->min_pool_size))
			server_close(s, "server idle timeout");
		else if (server_expired(s))
			server_close(s, "server lifetime over or database changed");
	}
}

static void fail_clients_past_timeouts(struct pool *p, int64_t now)
{
	const struct cfg *cfg = worker->cfg;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->waiting_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		if (cfg->query_wait_timeout > 0 && now - c->wait_start > cfg->query_wait_timeout)
			client_fatal(c, "08P01", "query_wait_timeout: no server connection became free within %.3g s",
				     (double)cfg->query_wait_timeout / 1e6);
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
			char msg[128];
			snprintf(msg, sizeof(msg), "server_connect_timeout: no login within %.3g s",
				 (double)cfg->server_connect_timeout / 1e6);
			server_close(s, msg);
			pool_server_failed(p, "08006", msg);
		}
	}
}

void pool_janitor(struct pool *p, int64_t now)
{
	close_servers_stuck_connecting(p, now);
	fail_clients_past_timeouts(p, now);
	close_idle_servers_past_timeouts(p, now);
	pool_launch_if_needed(p);
}
