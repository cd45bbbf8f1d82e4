/*
 * admin/show_objects: PgBouncer's views of what the worker holds — SHOW
 * POOLS, DATABASES, USERS, LISTS, MEM, CONFIG, VERSION, STATE, PEERS,
 * PEER_POOLS, DNS_HOSTS, DNS_ZONES, HELP — and the SHOW <setting> that psql
 * and drivers send. The views of single connections are in show_sockets.c.
 *
 * Each view reads the worker's lists as they are at the moment of the
 * command (one event-loop turn: nothing moves while it is written), in
 * PgBouncer's column names and order.
 */
#include "admin_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "cancel.h"
#include "client.h"
#include "control.h"
#include "dns.h"
#include "fingerprint.h"
#include "hosts.h"
#include "pool.h"
#include "server.h"
#include "slowlog.h"
#include "telemetry.h"
#include "textcache.h"
#include "worker.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

/* ------------------------------------------------------------------------
 * What the worker holds, gathered in the order SHOW prints it.
 */

static int cmp_db_ptr(const void *a, const void *b)
{
	const struct pool_db *x = *(const struct pool_db *const *)a;
	const struct pool_db *y = *(const struct pool_db *const *)b;
	return strcmp(x->name, y->name);
}

static int cmp_pool_ptr(const void *a, const void *b)
{
	const struct pool *x = *(const struct pool *const *)a;
	const struct pool *y = *(const struct pool *const *)b;
	int d = strcmp(x->db->name, y->db->name);
	return d ? d : strcmp(x->user->name, y->user->name);
}

/* the pools, by database then user (PgBouncer's order); free() the array */
struct pool **admin_sorted_pools(int *n)
{
	int count = list_count(&worker->pools), i = 0;
	struct pool **v = xmalloc(sizeof(*v) * (size_t)(count ? count : 1));
	struct list *pos;

	list_for_each(pos, &worker->pools)
	{
		v[i++] = container_of(pos, struct pool, node);
	}
	qsort(v, (size_t)count, sizeof(*v), cmp_pool_ptr);
	*n = count;
	return v;
}

/* the databases still in the configuration, by name; free() the array */
struct pool_db **admin_sorted_databases(int *n)
{
	int count = list_count(&worker->databases), i = 0;
	struct pool_db **v = xmalloc(sizeof(*v) * (size_t)(count ? count : 1));
	struct list *pos;

	list_for_each(pos, &worker->databases)
	{
		struct pool_db *db = container_of(pos, struct pool_db, node);
		if (!db->removed)
			v[i++] = db;
	}
	qsort(v, (size_t)i, sizeof(*v), cmp_db_ptr);
	*n = i;
	return v;
}

int admin_servers_of_pool(const struct pool *p)
{
	return list_count(&p->active_servers) + list_count(&p->idle_servers) + list_count(&p->used_servers) +
	       list_count(&p->new_servers) + list_count(&p->canceling_servers);
}

/* ------------------------------------------------------------------------
 * SHOW POOLS
 */

/* idle servers that server_check_query must test before they serve: PgBouncer's sv_used */
static int idle_servers_needing_check(const struct pool *p, int64_t now)
{
	int n = 0;
	const struct list *pos;
	list_for_each(pos, &p->idle_servers)
	{
		if (pool_server_needs_check(container_of(pos, struct server, node), now))
			n++;
	}
	return n;
}

/* load_balance_hosts as PgBouncer shows it: only for an entry with a list of hosts */
static const char *load_balance_word(const struct pool_db *db)
{
	if (!db->host || !strchr(db->host, ','))
		return NULL;
	return db->load_balance_hosts == LB_DISABLE ? "disable" : "round-robin";
}

void admin_show_pools(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "database", OID_TEXT },
		{ "user", OID_TEXT },
		{ "cl_active", OID_INT4 },
		{ "cl_waiting", OID_INT4 },
		{ "cl_active_cancel_req", OID_INT4 },
		{ "cl_waiting_cancel_req", OID_INT4 },
		{ "sv_active", OID_INT4 },
		{ "sv_active_cancel", OID_INT4 },
		{ "sv_being_canceled", OID_INT4 },
		{ "sv_idle", OID_INT4 },
		{ "sv_used", OID_INT4 },
		{ "sv_tested", OID_INT4 },
		{ "sv_login", OID_INT4 },
		{ "maxwait", OID_INT4 },
		{ "maxwait_us", OID_INT4 },
		{ "pool_mode", OID_TEXT },
		{ "load_balance_hosts", OID_TEXT },
		/* pgpulse's own: servers open beyond the base size, by the tier they occupy */
		{ "sv_overflow", OID_INT4 },
		{ "sv_reserve", OID_INT4 },
	};
	struct result r;
	int64_t now = now_usec();
	int n;
	struct pool **pools = admin_sorted_pools(&n);

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < n; i++) {
		const struct pool *p = pools[i];
		const struct list *first = list_first(&p->waiting_clients);
		int64_t maxwait = 0;
		if (first) {
			const struct client *w = container_of(first, struct client, node);
			if (w->wait_start > 0 && now > w->wait_start)
				maxwait = now - w->wait_start;
		}
		row_text(&r, p->db->name);
		row_text(&r, p->user->name);
		/* cl_active: PgBouncer counts linked and idle clients alike */
		row_int(&r, list_count(&p->active_clients));
		row_int(&r, list_count(&p->waiting_clients));
		int cancel_clients, cancel_conns;
		cancel_pool_counts(p, &cancel_clients, &cancel_conns);
		row_int(&r, cancel_clients); /* cl_active_cancel_req: waiting for their cancel to land */
		row_int(&r, 0);              /* cl_waiting_cancel_req: pgpulse forwards a cancel at once */
		row_int(&r, list_count(&p->active_servers));
		row_int(&r, cancel_conns);   /* sv_active_cancel: cancel connections in flight */
		row_int(&r, list_count(&p->canceling_servers));
		int used = idle_servers_needing_check(p, now);
		row_int(&r, list_count(&p->idle_servers) - used);
		row_int(&r, used);
		row_int(&r, list_count(&p->used_servers)); /* sv_tested: running pgpulse's own query */
		row_int(&r, list_count(&p->new_servers));
		row_int(&r, maxwait / 1000000);
		row_int(&r, maxwait % 1000000);
		/*
		 * auth_query's own pool and the replication pool (pool.h): their rows
		 * must not pass for the pool of the same database and user's clients
		 */
		row_text(&r, p->for_lookups ? "auth_query" : p->for_replication ? "replication" : cfg_pool_mode_name(p->pool_mode));
		row_text_or_null(&r, load_balance_word(p->db));
		int overflow_in_use, reserve_in_use;
		pool_tier_use(p, &overflow_in_use, &reserve_in_use);
		row_int(&r, overflow_in_use);
		row_int(&r, reserve_in_use);
		row_end(&r);
	}
	free(pools);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW DATABASES, SHOW USERS
 */

static int setting_or(int value, int fallback)
{
	return value >= 0 ? value : fallback;
}

/*
 * Console sessions logged in to database dbname (NULL: any) as user (NULL:
 * any). pgpulse keeps them out of the client counts its limits compare;
 * PgBouncer's current_client_connections counts them, so the views add them.
 */
static int console_sessions(const char *dbname, const char *user)
{
	int n = 0;
	const struct list *pos;
	list_for_each(pos, &worker->login_clients)
	{
		const struct client *a = container_of(pos, struct client, node);
		if (a->is_admin && a->state == CL_ACTIVE && (!dbname || strcmp(a->dbname, dbname) == 0) &&
		    (!user || strcmp(a->user, user) == 0))
			n++;
	}
	return n;
}

void admin_show_databases(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "name", OID_TEXT },
		{ "host", OID_TEXT },
		{ "port", OID_INT4 },
		{ "database", OID_TEXT },
		{ "force_user", OID_TEXT },
		{ "pool_size", OID_INT4 },
		{ "min_pool_size", OID_INT4 },
		{ "reserve_pool_size", OID_INT4 },
		{ "server_lifetime", OID_INT4 },
		{ "pool_mode", OID_TEXT },
		{ "load_balance_hosts", OID_TEXT },
		{ "max_connections", OID_INT4 },
		{ "current_connections", OID_INT4 },
		{ "max_client_connections", OID_INT4 },
		{ "current_client_connections", OID_INT4 },
		{ "paused", OID_INT4 },
		{ "disabled", OID_INT4 },
		/* pgpulse's own */
		{ "overflow_pool_size", OID_INT4 },
		{ "overflow_in_use", OID_INT4 },
		{ "reserve_in_use", OID_INT4 },
		{ "target_session_attrs", OID_TEXT },
	};
	const struct cfg *cfg = worker->cfg;
	struct result r;
	int n;
	struct pool_db **dbs = admin_sorted_databases(&n);

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < n; i++) {
		const struct pool_db *db = dbs[i];
		int current = 0, overflow_in_use = 0, reserve_in_use = 0;
		struct list *pos;
		list_for_each(pos, &worker->pools)
		{
			const struct pool *p = container_of(pos, struct pool, node);
			if (p->db != db)
				continue;
			int o, rs;
			current += admin_servers_of_pool(p);
			pool_tier_use(p, &o, &rs);
			overflow_in_use += o;
			reserve_in_use += rs;
		}
		if (db->is_admin) {
			/* the console: no server behind it (PgBouncer shows its own port) */
			row_text(&r, db->name);
			row_text_or_null(&r, NULL);
			row_int(&r, cfg->listen_port);
			row_text(&r, db->name);
			row_text_or_null(&r, NULL);
			row_int(&r, 0);
			row_int(&r, 0);
			row_int(&r, 0);
			row_int(&r, cfg->server_lifetime / 1000000);
			row_text(&r, "statement");
			row_text_or_null(&r, NULL); /* load_balance_hosts */
			row_int(&r, 0);
			row_int(&r, 0);
			row_int(&r, 0);
			row_int(&r, console_sessions(db->name, NULL));
			for (int k = 0; k < 5; k++)
				row_int(&r, 0); /* paused, disabled, and pgpulse's three */
			row_text_or_null(&r, NULL); /* target_session_attrs: no server to choose */
			row_end(&r);
			continue;
		}
		row_text(&r, db->name);
		row_text_or_null(&r, db->host);
		row_int(&r, db->port);
		row_text_or_null(&r, db->dbname ? db->dbname : db->name);
		row_text_or_null(&r, db->forced_user);
		row_int(&r, setting_or(db->pool_size, cfg->default_pool_size));
		row_int(&r, setting_or(db->min_pool_size, cfg->min_pool_size));
		row_int(&r, setting_or(db->reserve_pool_size, cfg->reserve_pool_size));
		/* the entry's own, as PgBouncer shows it; 0 there is "not set" */
		row_int(&r, (db->server_lifetime > 0 ? db->server_lifetime : cfg->server_lifetime) / 1000000);
		row_text_or_null(&r, db->pool_mode >= 0 ? cfg_pool_mode_name(db->pool_mode) : NULL);
		row_text_or_null(&r, load_balance_word(db));
		row_int(&r, db->max_db_connections >= 0 ? db->max_db_connections
						       : cfg->max_db_connections);
		row_int(&r, current);
		row_int(&r, db->max_db_client_connections >= 0 ? db->max_db_client_connections
							      : cfg->max_db_client_connections);
		row_int(&r, db->client_count);
		row_int(&r, db->paused || worker->paused_all ? 1 : 0);
		row_int(&r, db->disabled ? 1 : 0);
		row_int(&r, setting_or(db->overflow_pool_size, cfg->overflow_pool_size));
		row_int(&r, overflow_in_use);
		row_int(&r, reserve_in_use);
		row_text(&r, hosts_tsa_name((enum target_session_attrs)db->tsa));
		row_end(&r);
	}
	free(dbs);
	result_end(&r);
}

static int cmp_name_ptr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Every user PgBouncer would list, by name, each once: the auth_file's,
 * the [users] section's, those seen at a login (auth_query's included), and
 * the console's own "pgbouncer". The names stay owned by their lists; free()
 * the array.
 */
static const char **known_user_names(int *n)
{
	const struct cfg *cfg = worker->cfg;
	const struct auth_file *af = worker->auth;
	int cap = list_count(&worker->users) + cfg->n_users + (af ? af->count : 0) + 1, k = 0;
	const char **names = xmalloc(sizeof(*names) * (size_t)cap);
	const struct list *pos;

	list_for_each(pos, &worker->users)
		names[k++] = container_of(pos, struct pool_user, node)->name;
	for (int i = 0; i < cfg->n_users; i++)
		names[k++] = cfg->users[i].name;
	for (int i = 0; af && i < af->count; i++)
		names[k++] = af->entries[i].user;
	names[k++] = "pgbouncer";
	qsort(names, (size_t)k, sizeof(*names), cmp_name_ptr);
	int out = 0;
	for (int i = 0; i < k; i++)
		if (out == 0 || strcmp(names[out - 1], names[i]) != 0)
			names[out++] = names[i];
	*n = out;
	return names;
}

static const struct pool_user *seen_user(const char *name)
{
	const struct list *pos;
	list_for_each(pos, &worker->users)
	{
		const struct pool_user *u = container_of(pos, struct pool_user, node);
		if (strcmp(u->name, name) == 0)
			return u;
	}
	return NULL;
}

/* a per-user size as PgBouncer shows it: text, empty when the user does not set it */
static void row_user_size(struct result *r, int value)
{
	if (value >= 0)
		row_int(r, value);
	else
		row_text(r, "");
}

void admin_show_users(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "name", OID_TEXT },
		{ "pool_size", OID_TEXT }, /* text in PgBouncer too: empty when not set */
		{ "reserve_pool_size", OID_TEXT },
		{ "pool_mode", OID_TEXT },
		{ "max_user_connections", OID_INT4 },
		{ "current_connections", OID_INT4 },
		{ "max_user_client_connections", OID_INT4 },
		{ "current_client_connections", OID_INT4 },
	};
	const struct cfg *cfg = worker->cfg;
	struct result r;
	int n;
	const char **names = known_user_names(&n);

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < n; i++) {
		const struct pool_user *u = seen_user(names[i]);
		const struct cfg_user *cu = cfg_find_user(cfg, names[i]);
		int mode = cu ? cu->pool_mode : u ? u->pool_mode : -1;
		int max = cu && cu->max_user_connections >= 0 ? cu->max_user_connections
							     : cfg->max_user_connections;
		int max_clients = cu && cu->max_user_client_connections >= 0 ? cu->max_user_client_connections
									    : cfg->max_user_client_connections;
		int current = 0;
		const struct list *pp;
		list_for_each(pp, &worker->pools)
		{
			const struct pool *p = container_of(pp, struct pool, node);
			if (u && p->user == u)
				current += admin_servers_of_pool(p);
		}
		row_text(&r, names[i]);
		row_user_size(&r, cu ? cu->pool_size : -1);
		row_user_size(&r, cu ? cu->reserve_pool_size : -1);
		row_text_or_null(&r, mode >= 0 ? cfg_pool_mode_name(mode) : NULL);
		row_int(&r, max);
		row_int(&r, current);
		row_int(&r, max_clients);
		row_int(&r, (u ? u->client_count : 0) + console_sessions(NULL, names[i]));
		row_end(&r);
	}
	free(names);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW LISTS, SHOW MEM
 */

/* the users SHOW USERS lists */
static int known_user_count(void)
{
	int n;
	free(known_user_names(&n));
	return n;
}

static int count_login_clients(void)
{
	int n = 0;
	struct list *pos;
	list_for_each(pos, &worker->login_clients)
	{
		const struct client *c = container_of(pos, struct client, node);
		if (c->state == CL_LOGIN)
			n++;
	}
	return n;
}

/* what the lists hold: every open client connection (consoles and cancel requests included) */
static int count_open_clients(void)
{
	int n = list_count(&worker->login_clients);
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		n += list_count(&p->active_clients) + list_count(&p->waiting_clients);
	}
	return n;
}

static int count_open_servers(void)
{
	int n = 0;
	struct list *pos;
	list_for_each(pos, &worker->pools)
		n += admin_servers_of_pool(container_of(pos, struct pool, node));
	return n;
}

void admin_show_lists(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "list", OID_TEXT },
		{ "items", OID_INT4 },
	};
	const struct {
		const char *name;
		int items;
	} lists[] = {
		{ "databases", list_count(&worker->databases) },
		{ "users", known_user_count() },
		{ "peers", worker->cfg->n_peers },
		{ "pools", list_count(&worker->pools) },
		{ "peer_pools", worker->cfg->n_peers },
		/* pgpulse frees connection memory instead of keeping it on free lists */
		{ "free_clients", 0 },
		{ "used_clients", count_open_clients() },
		{ "login_clients", count_login_clients() },
		{ "free_servers", 0 },
		{ "used_servers", count_open_servers() },
		{ "dns_names", dns_name_count(worker->dns) },
		{ "dns_zones", 0 }, /* no zone serial checks (dns_zone_check_period) */
		{ "dns_queries", dns_pending_count(worker->dns) },
		{ "dns_pending", 0 }, /* PgBouncer's is unused too */
	};
	struct result r;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		row_text(&r, lists[i].name);
		row_int(&r, lists[i].items);
		row_end(&r);
	}
	result_end(&r);
}

/* bytes of messages pgpulse queued itself (errors, admin answers) on one stream */
static size_t out_buffer_bytes(const struct stream *st)
{
	return st->out.cap;
}

void admin_show_mem(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "name", OID_TEXT }, { "size", OID_INT4 },     { "used", OID_INT4 },
		{ "free", OID_INT4 }, { "memtotal", OID_INT8 },
	};
	struct result r;
	int bufs_used = 0, bufs_free = 0;
	uint32_t buf_size = 0;
	long long out_bytes = 0, out_count = 0;
	struct list *pos, *q;

	(void)arg;
	stream_buffer_stats(&worker->streams, &bufs_used, &bufs_free, &buf_size);

	/* the out buffers of every connection pgpulse can see */
	list_for_each(pos, &worker->login_clients)
	{
		const struct client *cl = container_of(pos, struct client, node);
		out_bytes += (long long)out_buffer_bytes(&cl->st);
		out_count += cl->st.out.cap > 0;
	}
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		const struct list *client_lists[] = { &p->active_clients, &p->waiting_clients };
		const struct list *server_lists[] = { &p->active_servers, &p->idle_servers, &p->used_servers,
						      &p->new_servers, &p->canceling_servers };
		for (size_t i = 0; i < 2; i++)
			list_for_each(q, client_lists[i])
			{
				const struct client *cl = container_of(q, struct client, node);
				out_bytes += (long long)out_buffer_bytes(&cl->st);
				out_count += cl->st.out.cap > 0;
			}
		for (size_t i = 0; i < 5; i++)
			list_for_each(q, server_lists[i])
			{
				const struct server *s = container_of(q, struct server, node);
				out_bytes += (long long)out_buffer_bytes(&s->st);
				out_count += s->st.out.cap > 0;
			}
	}

	const struct {
		const char *name;
		long long size, used, free;
	} rows[] = {
		{ "user_cache", sizeof(struct pool_user), list_count(&worker->users), 0 },
		{ "db_cache", sizeof(struct pool_db), list_count(&worker->databases), 0 },
		{ "pool_cache", sizeof(struct pool), list_count(&worker->pools), 0 },
		{ "server_cache", sizeof(struct server), worker->server_count, 0 },
		{ "client_cache", sizeof(struct client), worker->client_count, 0 },
		/* receive buffers: shared, taken only while a stream has bytes buffered */
		{ "iobuf_cache", buf_size, bufs_used, bufs_free },
	};

	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		row_text(&r, rows[i].name);
		row_int(&r, rows[i].size);
		row_int(&r, rows[i].used);
		row_int(&r, rows[i].free);
		row_int(&r, rows[i].size * (rows[i].used + rows[i].free));
		row_end(&r);
	}
	/* pgpulse's own: queued outgoing messages; size varies, so it is 0 */
	row_text(&r, "outbuf");
	row_int(&r, 0);
	row_int(&r, out_count);
	row_int(&r, 0);
	row_int(&r, out_bytes);
	row_end(&r);
	/* pgpulse's own: latency histograms and efficiency counters, one set per pool */
	long long tm_bytes = 0;
	list_for_each(pos, &worker->pools)
		tm_bytes += (long long)telemetry_bytes(container_of(pos, struct pool, node)->tm);
	row_text(&r, "telemetry");
	row_int(&r, (long long)sizeof(struct pool_telemetry));
	row_int(&r, list_count(&worker->pools));
	row_int(&r, 0);
	row_int(&r, tm_bytes);
	row_end(&r);
	row_text(&r, "fingerprints");
	row_int(&r, (long long)sizeof(struct fp_entry));
	row_int(&r, fp_count());
	row_int(&r, 0);
	row_int(&r, (long long)fp_bytes());
	row_end(&r);
	row_text(&r, "slow_log");
	row_int(&r, (long long)sizeof(struct slow_entry));
	row_int(&r, worker->cfg->slow_query_log_size);
	row_int(&r, 0);
	row_int(&r, (long long)slowlog_bytes());
	row_end(&r);
	/* exact query texts whose fingerprint is known: allocated at the first query */
	long long tc_bytes = (long long)textcache_bytes();
	row_text(&r, "textcache");
	row_int(&r, tc_bytes / TEXTCACHE_SLOTS);
	row_int(&r, tc_bytes ? TEXTCACHE_SLOTS : 0);
	row_int(&r, 0);
	row_int(&r, tc_bytes);
	row_end(&r);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW CONFIG, VERSION, STATE, PEERS, PEER_POOLS, HELP
 */

static int cmp_param_name(const void *a, const void *b)
{
	struct cfg_param_info x, y;
	cfg_param_get(NULL, *(const int *)a, &x);
	cfg_param_get(NULL, *(const int *)b, &y);
	return strcmp(x.name, y.name);
}

void admin_show_config(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "key", OID_TEXT },
		{ "value", OID_TEXT },
		{ "default", OID_TEXT },
		{ "changeable", OID_TEXT },
	};
	struct result r;
	int n = cfg_param_count();
	int *order = xmalloc(sizeof(*order) * (size_t)(n > 0 ? n : 1));

	(void)arg;
	for (int i = 0; i < n; i++)
		order[i] = i;
	qsort(order, (size_t)n, sizeof(*order), cmp_param_name); /* PgBouncer's list is by name */

	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < n; i++) {
		struct cfg_param_info info;
		if (!cfg_param_get(worker->cfg, order[i], &info))
			continue;
		/* value and default live in config's buffers until the next call: the row ends
		 * first */
		row_text(&r, info.name);
		row_text(&r, info.value);
		row_text(&r, info.default_value);
		row_text(&r, info.reloadable ? "yes" : "no");
		row_end(&r);
	}
	free(order);
	result_end(&r);
}

void admin_show_version(struct client *c, const char *arg)
{
	static const struct column cols[] = { { "version", OID_TEXT } };
	struct result r;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	row_text(&r, "pgpulse " PACKAGE_VERSION);
	row_end(&r);
	result_end(&r);
}

void admin_show_state(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "key", OID_TEXT },
		{ "value", OID_TEXT },
	};
	struct result r;
	bool paused = worker->paused_all;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	row_text(&r, "active");
	row_text(&r, paused ? "no" : "yes");
	row_end(&r);
	row_text(&r, "paused");
	row_text(&r, paused ? "yes" : "no");
	row_end(&r);
	row_text(&r, "suspended");
	row_text(&r, control_is_suspended() ? "yes" : "no");
	row_end(&r);
	result_end(&r);
}

/* peering is not there yet: PgBouncer's columns, no rows (as with no [peers]) */
void admin_show_peers(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "peer_id", OID_INT4 },
		{ "host", OID_TEXT },
		{ "port", OID_INT4 },
		{ "pool_size", OID_INT4 },
	};
	struct result r;
	const struct cfg *cfg = worker->cfg;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < cfg->n_peers; i++) {
		const struct cfg_peer *p = &cfg->peers[i];
		row_int(&r, p->id);
		row_text(&r, p->host);
		row_int(&r, p->port);
		/* as PgBouncer shows it; pgpulse does not limit forwards by it (doc/pgbouncer.md) */
		row_int(&r, p->pool_size >= 0 ? p->pool_size : cfg->default_pool_size);
		row_end(&r);
	}
	result_end(&r);
}

static void dns_host_row(const struct dns_host_info *info, void *arg)
{
	struct result *r = arg;
	row_text(r, info->hostname);
	row_int(r, info->ttl);
	row_text(r, info->addrs);
	row_end(r);
}

/* PgBouncer's columns: the cache of server host names */
void admin_show_dns_hosts(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "hostname", OID_TEXT },
		{ "ttl", OID_INT8 },
		{ "addrs", OID_TEXT },
	};
	struct result r;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	dns_for_each_host(worker->dns, dns_host_row, &r);
	result_end(&r);
}

static void dns_zone_row(const struct dns_zone_info *info, void *arg)
{
	struct result *r = arg;
	row_text(r, info->zonename);
	row_int(r, info->serial);
	row_int(r, info->count);
	row_end(r);
}

/* PgBouncer's columns: the zones dns_zone_check_period watches (none while it is 0) */
void admin_show_dns_zones(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "zonename", OID_TEXT },
		{ "serial", OID_INT8 },
		{ "count", OID_INT4 },
	};
	struct result r;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	dns_for_each_zone(worker->dns, dns_zone_row, &r);
	result_end(&r);
}

void admin_show_peer_pools(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "peer_id", OID_INT4 },
		{ "cl_active_cancel_req", OID_INT4 },
		{ "cl_waiting_cancel_req", OID_INT4 },
		{ "sv_active_cancel", OID_INT4 },
		{ "sv_login", OID_INT4 },
	};
	struct result r;
	const struct cfg *cfg = worker->cfg;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < cfg->n_peers; i++) {
		struct cancel_peer_counts n;
		cancel_peer_counts(cfg->peers[i].id, &n);
		row_int(&r, cfg->peers[i].id);
		row_int(&r, n.active_requests);
		row_int(&r, n.waiting_requests);
		row_int(&r, n.active_connections);
		row_int(&r, n.connecting);
		row_end(&r);
	}
	result_end(&r);
}

/* a NoticeResponse with a DETAIL field (proto_put_notice has none) */
static void put_notice_with_detail(struct pktbuf *out, const char *msg, const char *detail)
{
	pkt_begin(out, 'N');
	pkt_put_u8(out, 'S');
	pkt_put_str(out, "NOTICE");
	pkt_put_u8(out, 'V');
	pkt_put_str(out, "NOTICE");
	pkt_put_u8(out, 'C');
	pkt_put_str(out, "00000");
	pkt_put_u8(out, 'M');
	pkt_put_str(out, msg);
	pkt_put_u8(out, 'D');
	pkt_put_str(out, detail);
	pkt_put_u8(out, 0);
	pkt_end(out);
}

void admin_show_help(struct client *c, const char *arg)
{
	static const char detail[] =
		"\n"
		"\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
		"\tSHOW LISTS|MEM|STATE|PEERS|PEER_POOLS|DNS_HOSTS|DNS_ZONES|PREPARED_STATEMENTS\n"
		"\tSHOW SOCKETS|ACTIVE_SOCKETS|FDS\n"
		"\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
		"\tSHOW FAILURES|LOGINS|HOSTS\n"
		"\tSHOW LATENCY|EFFICIENCY [1m|5m|15m|all]\n"
		"\tSHOW QUERIES [1m|5m|15m|all]\n"
		"\tSHOW REPEATS [5m|all]\n"
		"\tSHOW HEALTH|SLOW\n"
		"\tSET key = arg\n"
		"\tRELOAD\n"
		"\tPAUSE [<db>]\n"
		"\tRESUME [<db>]\n"
		"\tDISABLE <db>\n"
		"\tENABLE <db>\n"
		"\tRECONNECT [<db>]\n"
		"\tKILL [<db>]\n"
		"\tKILL_CLIENT <id>\n"
		"\tSUSPEND\n"
		"\tWAIT_CLOSE [<db>]\n"
		"\tSHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]";
	struct pktbuf *out = stream_out(&c->st);

	(void)arg;
	put_notice_with_detail(out, "Console usage", detail);
	command_done(out, "SHOW");
}

/*
 * Some drivers ask for (or set) these on any connection; PgBouncer answers
 * with fixed values rather than an error, and so does pgpulse.
 */
static const char *const fake_params[][2] = {
	{ "client_encoding", "UTF8" },
	{ "default_transaction_isolation", "read committed" },
	{ "standard_conforming_strings", "on" },
	{ "datestyle", "ISO" },
	{ "timezone", "GMT" },
	{ "extra_float_digits", "2" },
};

/* the row of fake_params for `name`, or -1 */
int admin_fake_param_index(const char *name)
{
	for (size_t i = 0; i < sizeof(fake_params) / sizeof(fake_params[0]); i++)
		if (strcasecmp(name, fake_params[i][0]) == 0)
			return (int)i;
	return -1;
}

void admin_show_fake_param(struct client *c, int idx)
{
	struct column col = { fake_params[idx][0], OID_TEXT };
	struct result r;

	result_begin(&r, stream_out(&c->st), &col, 1);
	row_text(&r, fake_params[idx][1]);
	row_end(&r);
	result_end(&r);
}
