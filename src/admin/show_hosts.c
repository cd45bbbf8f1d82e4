/*
 * admin/show_hosts: SHOW HOSTS — one row per PostgreSQL host the live
 * [databases] entries name (the registry of hosts.h): what pgpulse knows of
 * its role, state and replay lag, its server connections over all pools,
 * the entries that name it, and the last minute's query latency on it.
 *
 * Everything is read as it is at the moment of the command: the hosts'
 * fields as hosts.c last set them, the servers from the pools' lists (a
 * server's host is the one it connected to), the latency from host_stats'
 * `query` series. Nothing here changes any of it.
 */
#include "admin_internal.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "host_stats.h"
#include "hosts.h"
#include "pool.h"
#include "server.h"
#include "worker.h"

/* ------------------------------------------------------------------------
 * The rows: the registry's hosts that some entry names, by host and port.
 */

static int cmp_host_ptr(const void *a, const void *b)
{
	const struct host *x = *(const struct host *const *)a;
	const struct host *y = *(const struct host *const *)b;
	int d = strcmp(x->name, y->name);
	return d ? d : (x->port > y->port) - (x->port < y->port);
}

/* the hosts some database entry refers to, sorted; free() the array */
static struct host **sorted_hosts(int *n)
{
	int count = list_count(&worker->hosts), i = 0;
	struct host **v = xmalloc(sizeof(*v) * (size_t)(count ? count : 1));
	struct list *pos;

	list_for_each(pos, &worker->hosts)
	{
		struct host *h = container_of(pos, struct host, node);
		if (h->refs > 0)
			v[i++] = h;
	}
	qsort(v, (size_t)i, sizeof(*v), cmp_host_ptr);
	*n = i;
	return v;
}

/*
 * The host column: a unix socket's directory, and for "" (no host in the
 * entry) the directory server.c connects in — unix_socket_dir, else /tmp
 * (unix_socket_address there) — so that the row says where the socket is.
 */
static const char *host_shown(const struct host *h)
{
	if (h->name[0])
		return h->name;
	const char *dir = worker->cfg->unix_socket_dir;
	return dir && *dir ? dir : "/tmp";
}

/* ------------------------------------------------------------------------
 * Server connections to a host, by state as SHOW POOLS counts them
 */

struct host_servers {
	int active, idle, used, login;
};

static int servers_on(const struct list *servers, const struct host *h)
{
	int n = 0;
	const struct list *pos;
	list_for_each(pos, servers)
	{
		n += container_of(pos, struct server, node)->host == h;
	}
	return n;
}

/* sv_used: idle servers whose server_check_query is due, as in SHOW POOLS (PgBouncer's meaning) */
static int idle_servers_on(const struct list *servers, const struct host *h, int64_t now, int *due)
{
	int n = 0;
	const struct list *pos;
	list_for_each(pos, servers)
	{
		const struct server *s = container_of(pos, struct server, node);
		if (s->host != h)
			continue;
		if (pool_server_needs_check(s, now))
			(*due)++;
		else
			n++;
	}
	return n;
}

/* one walk over every pool's lists per host: the console's path, hosts are few */
static void count_host_servers(const struct host *h, int64_t now, struct host_servers *out)
{
	struct list *pos;
	memset(out, 0, sizeof(*out));
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		out->active += servers_on(&p->active_servers, h);
		out->idle += idle_servers_on(&p->idle_servers, h, now, &out->used);
		out->login += servers_on(&p->new_servers, h);
	}
}

/* ------------------------------------------------------------------------
 * The entries that name a host
 */

/* does the entry's host list name h, as the list writes it (no host at all: the default socket "")
 */
static bool db_names_host(const struct pool_db *db, const struct host *h)
{
	if (db->hosts.count == 0)
		return h->name[0] == '\0' && db->port == h->port;
	for (int i = 0; i < db->hosts.count; i++)
		if (db->hosts.port[i] == h->port && strcmp(db->hosts.name[i], h->name) == 0)
			return true;
	return false;
}

/* "a,b,c": the live entries over h, in dbs' order (by name); malloc'ed, the caller frees */
static char *databases_of(const struct host *h, struct pool_db *const *dbs, int ndbs)
{
	size_t len = 0, cap = 64;
	char *out = xmalloc(cap);

	out[0] = '\0';
	for (int i = 0; i < ndbs; i++) {
		if (dbs[i]->is_admin || !db_names_host(dbs[i], h))
			continue;
		size_t name_len = strlen(dbs[i]->name);
		if (len + name_len + 2 > cap) {
			while (len + name_len + 2 > cap)
				cap *= 2;
			out = xrealloc(out, cap);
		}
		if (len)
			out[len++] = ',';
		memcpy(out + len, dbs[i]->name, name_len + 1);
		len += name_len;
	}
	return out;
}

/* ------------------------------------------------------------------------
 * SHOW HOSTS
 */

/* the role's columns: read_only, lag_ms, lag_bytes, checked_ms_ago, role_changes */
static void role_values(struct result *r, const struct host *h, int64_t now)
{
	/* lag is a standby's: NULL while not measured, and for a primary */
	bool lag_known = h->role == HOST_ROLE_STANDBY && h->lag_checked > 0;

	row_text(r, h->read_only ? "t" : "f");
	if (lag_known && h->lag_usec >= 0)
		row_printf(r, "%.3f", (double)h->lag_usec / 1000.0);
	else
		row_text_or_null(r, NULL);
	if (lag_known && h->lag_bytes >= 0)
		row_int(r, h->lag_bytes);
	else
		row_text_or_null(r, NULL);
	if (h->lag_checked > 0)
		row_int(r, (now - h->lag_checked) / 1000);
	else
		row_text_or_null(r, NULL);
	row_uint(r, h->role_changes);
}

/* query_count and percentiles of the last minute; NULL percentiles with no query */
static void latency_values(struct result *r, const struct host *h)
{
	static struct hist_acc acc; /* 14 kB: static, the console runs on the one worker thread */

	hist_acc_reset(&acc);
	if (h->tm)
		series_read(&h->tm->query, WINDOW_1M, &acc);
	row_uint(r, acc.count);
	static const double qs[] = { 0.50, 0.95, 0.99 };
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		if (acc.count)
			row_uint(r, hist_acc_quantile(&acc, qs[i]));
		else
			row_text_or_null(r, NULL);
	}
}

void admin_show_hosts(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "host", OID_TEXT },         { "port", OID_INT4 },
		{ "role", OID_TEXT },         { "state", OID_TEXT },
		{ "read_only", OID_BOOL },    { "lag_ms", OID_FLOAT8 },
		{ "lag_bytes", OID_INT8 },    { "checked_ms_ago", OID_INT8 },
		{ "role_changes", OID_INT8 }, { "sv_active", OID_INT4 },
		{ "sv_idle", OID_INT4 },      { "sv_used", OID_INT4 },
		{ "sv_login", OID_INT4 },     { "databases", OID_TEXT },
		{ "query_count", OID_INT8 },  { "query_p50_us", OID_INT8 },
		{ "query_p95_us", OID_INT8 }, { "query_p99_us", OID_INT8 },
		{ "last_error", OID_TEXT },
	};
	struct result r;
	int64_t now = now_usec();
	int nhosts, ndbs;
	struct host **hosts = sorted_hosts(&nhosts);
	struct pool_db **dbs = admin_sorted_databases(&ndbs);

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < nhosts; i++) {
		const struct host *h = hosts[i];
		struct host_servers sv;
		/* entry names can be long: not in the row's value space */
		char *names = databases_of(h, dbs, ndbs);

		count_host_servers(h, now, &sv);
		row_text(&r, host_shown(h));
		row_int(&r, h->port);
		row_text(&r, hosts_role_name(h->role));
		row_text(&r, hosts_state_name(h));
		role_values(&r, h, now);
		row_int(&r, sv.active);
		row_int(&r, sv.idle);
		row_int(&r, sv.used);
		row_int(&r, sv.login);
		row_text(&r, names);
		latency_values(&r, h);
		row_text(&r, h->last_error);
		row_end(&r);
		free(names);
	}
	free(dbs);
	free(hosts);
	result_end(&r);
}
