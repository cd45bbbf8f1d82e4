/*
 * admin/show_objects: PgBouncer's views of what the worker holds — SHOW
 * CLIENTS, SERVERS, POOLS, DATABASES, USERS, LISTS, MEM, CONFIG, VERSION,
 * STATE, PEERS, PEER_POOLS, DNS_HOSTS, HELP — and the SHOW <setting> that
 * psql and drivers send.
 *
 * Each view reads the worker's lists as they are at the moment of the
 * command (one event-loop turn: nothing moves while it is written), in
 * PgBouncer's column names and order.
 */
#include "admin_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "cancel.h"
#include "client.h"
#include "control.h"
#include "dns.h"
#include "fingerprint.h"
#include "pool.h"
#include "prepared.h"
#include "server.h"
#include "slowlog.h"
#include "telemetry.h"
#include "tls.h"
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

/* a monotonic stamp as wall-clock time */
static int64_t mono_to_wall(int64_t mono, int64_t now_mono, int64_t now_wall)
{
	return mono > 0 ? now_wall - (now_mono - mono) : 0;
}

/* "ip" and port of a socket address; "unix" (and port -1) for a unix socket */
static void addr_parts(const struct sockaddr *ss, char *host, size_t hostlen, int *port)
{
	host[0] = '\0';
	*port = 0;
	switch (ss->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)hostlen);
		*port = ntohs(in->sin_port);
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)hostlen);
		*port = ntohs(in6->sin6_port);
		break;
	}
	case AF_UNIX:
		str_copy(host, "unix", hostlen);
		*port = -1;
		break;
	default:
		break;
	}
}

static bool sock_local(int fd, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	return fd >= 0 && getsockname(fd, (struct sockaddr *)ss, &len) == 0;
}

static bool sock_peer(int fd, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	return fd >= 0 && getpeername(fd, (struct sockaddr *)ss, &len) == 0;
}

/* the pid of a unix-socket peer, 0 when unknown (PgBouncer's remote_pid) */
static int unix_peer_pid(int fd)
{
#ifdef SO_PEERCRED
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		return (int)cred.pid;
#else
	(void)fd;
#endif
	return 0;
}

/* ------------------------------------------------------------------------
 * SHOW CLIENTS, SHOW SERVERS: one row layout for both, as in PgBouncer.
 */

static const struct column socket_cols[] = {
	{ "type", OID_TEXT },
	{ "user", OID_TEXT },
	{ "database", OID_TEXT },
	{ "replication", OID_TEXT },
	{ "state", OID_TEXT },
	{ "addr", OID_TEXT },
	{ "port", OID_INT4 },
	{ "local_addr", OID_TEXT },
	{ "local_port", OID_INT4 },
	{ "connect_time", OID_TEXT },
	{ "request_time", OID_TEXT },
	{ "wait", OID_INT4 },
	{ "wait_us", OID_INT4 },
	{ "close_needed", OID_INT4 },
	{ "ptr", OID_TEXT },
	{ "link", OID_TEXT },
	{ "remote_pid", OID_INT4 },
	{ "tls", OID_TEXT },
	{ "application_name", OID_TEXT },
	{ "prepared_statements", OID_INT4 },
	/* PgBouncer 1.24 added "id" at this place; pgpulse has it already */
	{ "id", OID_INT8 },
};

struct clock_now {
	int64_t mono, wall;
};

/* PgBouncer's state words for a client */
static const char *client_state_word(const struct client *c, const struct client *asking)
{
	switch (c->state) {
	case CL_LOGIN:
		return "login";
	case CL_CANCEL:
		return "active_cancel_req"; /* PgBouncer's word for a cancel request being forwarded */
	case CL_WELCOME:
	case CL_WAITING:
		return "waiting";
	case CL_ACTIVE:
		if (c->is_admin)
			return c == asking ? "active" : "idle";
		return c->server ? "active" : "idle";
	case CL_NEW:
	case CL_CLOSED:
		break;
	}
	return "closed";
}

static void client_row(struct result *r, const struct client *c, const struct client *asking,
		       const struct clock_now *now)
{
	char host[INET6_ADDRSTRLEN + 8], lhost[INET6_ADDRSTRLEN + 8], tls[128];
	struct sockaddr_storage local;
	int port, lport;
	bool is_unix = c->peer_addr.sa.sa_family == AF_UNIX;
	int64_t wait = 0;
	const char *app = c->params[TP_APPLICATION_NAME];

	addr_parts(&c->peer_addr.sa, host, sizeof(host), &port);
	if (port < 0)
		port = c->local_port; /* PgBouncer shows the listening port for unix clients */
	if (sock_local(c->st.fd, &local) && local.ss_family != AF_UNIX) {
		addr_parts((const struct sockaddr *)&local, lhost, sizeof(lhost), &lport);
	} else {
		str_copy(lhost, is_unix ? "unix" : "", sizeof(lhost));
	}
	if ((c->state == CL_WAITING || c->state == CL_WELCOME) && c->wait_start > 0)
		wait = now->mono - c->wait_start;
	if (wait < 0)
		wait = 0;

	row_text(r, "C");
	row_text(r, c->user);
	row_text(r, c->dbname);
	row_text(r, client_replication_name(c->replication));
	row_text(r, client_state_word(c, asking));
	row_text(r, host);
	row_int(r, port);
	row_text(r, lhost);
	row_int(r, c->local_port);
	row_time(r, c->connect_time);
	row_time(r, mono_to_wall(c->request_time, now->mono, now->wall));
	row_int(r, wait / 1000000);
	row_int(r, wait % 1000000);
	row_int(r, 0); /* close_needed: not used for clients */
	row_ptr(r, c);
	row_ptr(r, c->server);
	row_int(r, is_unix ? unix_peer_pid(c->st.fd) : 0);
	tls_describe(c->st.tls, tls, sizeof(tls));
	row_text(r, tls);
	row_text(r, app ? app : "");
	row_int(r, prepared_client_count(c));
	row_uint(r, c->id);
	row_end(r);
}

/*
 * PgBouncer's state words for a server. pgpulse's used_servers are running
 * pgpulse's own query (reset, parameter SETs, check): PgBouncer calls that
 * "tested"; its "used" (idle past server_check_delay, check not yet started)
 * has no list of its own in pgpulse.
 */
static const char *server_state_word(const struct server *s)
{
	switch (s->state) {
	case SV_LOGIN:
		return "new";
	case SV_IDLE:
		return "idle";
	case SV_ACTIVE:
		return s->client ? "active" : "idle";
	case SV_USED:
		return "tested";
	case SV_CANCELING:
		return "being_canceled";
	case SV_NEW:
	case SV_CLOSED:
		break;
	}
	return "closed";
}

static void server_row(struct result *r, const struct server *s, const struct clock_now *now)
{
	const struct pool *p = s->pool;
	char host[INET6_ADDRSTRLEN + 8], lhost[INET6_ADDRSTRLEN + 8], tls[128];
	struct sockaddr_storage ss;
	int port = 0, lport = 0;
	int64_t last = s->last_used > s->link_time ? s->last_used : s->link_time;
	const char *app = NULL;

	if (sock_peer(s->st.fd, &ss)) {
		addr_parts((const struct sockaddr *)&ss, host, sizeof(host), &port);
		if (port < 0)
			port = server_port(s);
	} else {
		/* still connecting: say where to */
		const char *to = server_host(s);
		bool unix_dir = !to || to[0] == '/';
		str_copy(host, unix_dir ? "unix" : to, sizeof(host));
		port = server_port(s);
	}
	if (sock_local(s->st.fd, &ss) && ss.ss_family != AF_UNIX) {
		addr_parts((const struct sockaddr *)&ss, lhost, sizeof(lhost), &lport);
	} else {
		str_copy(lhost, ss.ss_family == AF_UNIX ? "unix" : "", sizeof(lhost));
	}
	if (s->client)
		app = s->client->params[TP_APPLICATION_NAME];

	row_text(r, "S");
	row_text(r, p->user->name);
	row_text(r, p->db->name);
	row_text(r, client_replication_name(s->replication));
	row_text(r, server_state_word(s));
	row_text(r, host);
	row_int(r, port);
	row_text(r, lhost);
	row_int(r, lport);
	row_time(r, s->connect_time);
	row_time(r, last > 0 ? mono_to_wall(last, now->mono, now->wall) : s->connect_time);
	row_int(r, 0); /* wait, wait_us: not used for servers */
	row_int(r, 0);
	row_int(r, (s->close_when_released || s->generation != p->db->generation) ? 1 : 0);
	row_ptr(r, s);
	row_ptr(r, s->client);
	row_int(r, (int32_t)s->backend_pid);
	tls_describe(s->st.tls, tls, sizeof(tls));
	row_text(r, tls);
	row_text(r, app ? app : "");
	row_int(r, prepared_server_count(s));
	row_uint(r, s->id);
	row_end(r);
}

static void client_rows(struct result *r, const struct list *l, const struct client *asking,
			const struct clock_now *now)
{
	const struct list *pos;
	list_for_each(pos, l)
	{
		client_row(r, container_of(pos, struct client, node), asking, now);
	}
}

static void server_rows(struct result *r, const struct list *l, const struct clock_now *now)
{
	const struct list *pos;
	list_for_each(pos, l)
	{
		server_row(r, container_of(pos, struct server, node), now);
	}
}

static void take_clock(struct clock_now *now)
{
	now->mono = now_usec();
	now->wall = wall_usec();
}

void admin_show_clients(struct client *c, const char *arg)
{
	struct result r;
	struct clock_now now;
	int n;
	struct pool **pools = admin_sorted_pools(&n);
	struct list *pos;

	(void)arg;
	take_clock(&now);
	result_begin(&r, stream_out(&c->st), socket_cols, NCOLS(socket_cols));
	for (int i = 0; i < n; i++) {
		client_rows(&r, &pools[i]->active_clients, c, &now);
		client_rows(&r, &pools[i]->waiting_clients, c, &now);
	}
	/* admin clients belong to no pool: they wait on login_clients once logged in */
	list_for_each(pos, &worker->login_clients)
	{
		struct client *a = container_of(pos, struct client, node);
		if (a->is_admin && a->state == CL_ACTIVE)
			client_row(&r, a, c, &now);
	}
	free(pools);
	result_end(&r);
}

void admin_show_servers(struct client *c, const char *arg)
{
	struct result r;
	struct clock_now now;
	int n;
	struct pool **pools = admin_sorted_pools(&n);

	(void)arg;
	take_clock(&now);
	result_begin(&r, stream_out(&c->st), socket_cols, NCOLS(socket_cols));
	for (int i = 0; i < n; i++) {
		server_rows(&r, &pools[i]->active_servers, &now);
		server_rows(&r, &pools[i]->idle_servers, &now);
		server_rows(&r, &pools[i]->used_servers, &now);
		server_rows(&r, &pools[i]->new_servers, &now);
		server_rows(&r, &pools[i]->canceling_servers, &now);
	}
	free(pools);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW POOLS
 */

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
		row_int(&r, list_count(&p->idle_servers));
		row_int(&r, 0); /* sv_used: see server_state_word() */
		row_int(&r, list_count(&p->used_servers));
		row_int(&r, list_count(&p->new_servers));
		row_int(&r, maxwait / 1000000);
		row_int(&r, maxwait % 1000000);
		/*
		 * auth_query's own pool and the replication pool (pool.h): their rows
		 * must not pass for the pool of the same database and user's clients
		 */
		row_text(&r, p->for_lookups ? "auth_query" : p->for_replication ? "replication" : cfg_pool_mode_name(p->pool_mode));
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
		{ "reserve_pool", OID_INT4 },
		{ "server_lifetime", OID_INT4 },
		{ "pool_mode", OID_TEXT },
		{ "max_connections", OID_INT4 },
		{ "current_connections", OID_INT4 },
		{ "paused", OID_INT4 },
		{ "disabled", OID_INT4 },
		/* pgpulse's own */
		{ "overflow_pool_size", OID_INT4 },
		{ "overflow_in_use", OID_INT4 },
		{ "reserve_in_use", OID_INT4 },
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
			row_int(&r, 0);
			row_int(&r, 0);
			row_int(&r, 0);
			row_int(&r, 0);
			row_int(&r, 0);
			row_int(&r, 0);
			row_int(&r, 0);
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
		row_int(&r, cfg->server_lifetime / 1000000);
		row_text_or_null(&r, db->pool_mode >= 0 ? cfg_pool_mode_name(db->pool_mode) : NULL);
		row_int(&r, db->max_db_connections >= 0 ? db->max_db_connections
						       : cfg->max_db_connections);
		row_int(&r, current);
		row_int(&r, db->paused || worker->paused_all ? 1 : 0);
		row_int(&r, db->disabled ? 1 : 0);
		row_int(&r, setting_or(db->overflow_pool_size, cfg->overflow_pool_size));
		row_int(&r, overflow_in_use);
		row_int(&r, reserve_in_use);
		row_end(&r);
	}
	free(dbs);
	result_end(&r);
}

static int cmp_user_ptr(const void *a, const void *b)
{
	const struct pool_user *x = *(const struct pool_user *const *)a;
	const struct pool_user *y = *(const struct pool_user *const *)b;
	return strcmp(x->name, y->name);
}

void admin_show_users(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "name", OID_TEXT },
		{ "pool_size", OID_TEXT }, /* text in PgBouncer too: empty when not set */
		{ "pool_mode", OID_TEXT },
		{ "max_user_connections", OID_INT4 },
		{ "current_connections", OID_INT4 },
	};
	const struct cfg *cfg = worker->cfg;
	struct result r;
	int count = list_count(&worker->users), n = 0;
	struct pool_user **users = xmalloc(sizeof(*users) * (size_t)(count ? count : 1));
	struct list *pos;

	(void)arg;
	list_for_each(pos, &worker->users)
	{
		users[n++] = container_of(pos, struct pool_user, node);
	}
	qsort(users, (size_t)n, sizeof(*users), cmp_user_ptr);

	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < n; i++) {
		const struct pool_user *u = users[i];
		const struct cfg_user *cu = cfg_find_user(cfg, u->name);
		int mode = cu ? cu->pool_mode : u->pool_mode;
		int max = cu && cu->max_user_connections >= 0 ? cu->max_user_connections
							     : cfg->max_user_connections;
		int current = 0;
		struct list *pp;
		list_for_each(pp, &worker->pools)
		{
			const struct pool *p = container_of(pp, struct pool, node);
			if (p->user == u)
				current += admin_servers_of_pool(p);
		}
		row_text(&r, u->name);
		if (cu && cu->pool_size >= 0)
			row_int(&r, cu->pool_size);
		else
			row_text(&r, "");
		row_text_or_null(&r, mode >= 0 ? cfg_pool_mode_name(mode) : NULL);
		row_int(&r, max);
		row_int(&r, current);
		row_end(&r);
	}
	free(users);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW LISTS, SHOW MEM
 */

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
		{ "users", list_count(&worker->users) },
		{ "peers", 0 }, /* peering: not yet */
		{ "pools", list_count(&worker->pools) },
		{ "peer_pools", 0 },
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

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
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

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
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
		"\tSHOW LISTS|MEM|STATE|PEERS|PEER_POOLS|DNS_HOSTS|PREPARED_STATEMENTS\n"
		"\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
		"\tSHOW FAILURES\n"
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
		"\tSHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]\n"
		"\tnot yet: SHOW FDS|SOCKETS|ACTIVE_SOCKETS|DNS_ZONES";
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
