/*
 * admin/show_sockets: PgBouncer's views of single connections — SHOW
 * CLIENTS, SERVERS, SOCKETS, ACTIVE_SOCKETS and FDS.
 *
 * CLIENTS and SERVERS share one row layout, as in PgBouncer; SOCKETS and
 * ACTIVE_SOCKETS are the same rows with the list each connection is on as
 * its state and seven columns about its receive buffer after them (read
 * from the stream, include/stream.h). Everything is read as it is at the
 * moment of the command: nothing moves while a view is written.
 */
#include "admin_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "client.h"
#include "pool.h"
#include "prepared.h"
#include "server.h"
#include "tls.h"
#include "worker.h"

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
	/* SOCKETS and ACTIVE_SOCKETS only: the receive buffer (see stream_row) */
	{ "recv_pos", OID_INT4 },
	{ "pkt_pos", OID_INT4 },
	{ "pkt_remain", OID_INT4 },
	{ "send_pos", OID_INT4 },
	{ "send_remain", OID_INT4 },
	{ "pkt_avail", OID_INT4 },
	{ "send_avail", OID_INT4 },
};
#define SOCKET_COLS       21 /* CLIENTS, SERVERS */
#define SOCKET_DEBUG_COLS NCOLS(socket_cols)

struct clock_now {
	int64_t mono, wall;
};

/*
 * PgBouncer 1.25's state words for a client in SHOW CLIENTS: a logged-in
 * client is "active" while linked to a server and "idle" otherwise; a
 * console session is never linked, so it is "idle" even while its own SHOW
 * runs (as in PgBouncer).
 */
static const char *client_state_word(const struct client *c)
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
		return c->server ? "active" : "idle";
	case CL_NEW:
	case CL_CLOSED:
		break;
	}
	return "closed";
}

/* SHOW SOCKETS' word for a client: the list PgBouncer would keep it on */
static const char *client_list_word(const struct client *c)
{
	switch (c->state) {
	case CL_LOGIN:
		return "cl_login";
	case CL_CANCEL:
		return "cl_active_cancel_req";
	case CL_WELCOME:
	case CL_WAITING:
		return "cl_waiting";
	case CL_ACTIVE:
		return "cl_active";
	case CL_NEW:
	case CL_CLOSED:
		break;
	}
	return "cl_closed";
}

/*
 * How long the client's current request has been running: since it arrived
 * while it has not yet gone to a server (waiting for one included), since it
 * was forwarded while its answer is due, 0 between requests. PgBouncer's
 * "wait" is the same age, of its query_start.
 */
static int64_t request_age(const struct client *c, int64_t now)
{
	int64_t start = 0;
	if (c->pending_syncs > 0 && c->query_start > 0)
		start = c->query_start;
	else if (c->req_arrive > 0)
		start = c->req_arrive;
	else if ((c->state == CL_WAITING || c->state == CL_WELCOME) && c->wait_start > 0)
		start = c->wait_start;
	return start > 0 && now > start ? now - start : 0;
}

/*
 * The receive buffer as PgBouncer describes its iobuf: recv_pos (bytes
 * received), pkt_pos (bytes looked at), pkt_remain (bytes of a forwarded
 * packet still to come), send_pos (bytes sent on), send_remain (always 0 in
 * PgBouncer too), pkt_avail (received, not yet looked at), send_avail
 * (looked at and forwarded, not yet sent). An idle stream holds no buffer:
 * all zero.
 */
static void stream_row(struct result *r, const struct stream *st)
{
	bool buffered = st->buf != NULL;
	row_int(r, buffered ? st->wpos : 0);
	row_int(r, buffered ? st->rpos : 0);
	row_int(r, st->fwd_left);
	row_int(r, buffered ? st->spos : 0);
	row_int(r, 0);
	row_int(r, buffered ? (long long)(st->wpos - st->rpos) : 0);
	row_int(r, buffered ? (long long)(st->rpos - st->spos) : 0);
}

/* ACTIVE_SOCKETS: a stream with bytes received and not yet sent on */
static bool stream_holds_bytes(const struct stream *st)
{
	return st->buf != NULL && st->wpos > st->spos;
}

static void client_row(struct result *r, const struct client *c, const char *state,
		       const struct clock_now *now, bool debug)
{
	char host[INET6_ADDRSTRLEN + 8], lhost[INET6_ADDRSTRLEN + 8], tls[128];
	struct sockaddr_storage local;
	int port, lport;
	bool is_unix = c->peer_addr.sa.sa_family == AF_UNIX;
	int64_t wait = request_age(c, now->mono);
	const char *app = c->params[TP_APPLICATION_NAME];

	addr_parts(&c->peer_addr.sa, host, sizeof(host), &port);
	if (port < 0)
		port = c->local_port; /* PgBouncer shows the listening port for unix clients */
	if (sock_local(c->st.fd, &local) && local.ss_family != AF_UNIX) {
		addr_parts((const struct sockaddr *)&local, lhost, sizeof(lhost), &lport);
	} else {
		str_copy(lhost, is_unix ? "unix" : "", sizeof(lhost));
	}

	row_text(r, "C");
	row_text(r, c->user);
	row_text(r, c->dbname);
	row_text(r, client_replication_name(c->replication));
	row_text(r, state);
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
	if (debug)
		stream_row(r, &c->st);
	row_end(r);
}

/*
 * PgBouncer's state words for a server. An idle server that has sat unused
 * for server_check_delay is "used": server_check_query runs on it before it
 * serves again (pool_server_needs_check). pgpulse's used_servers are
 * running pgpulse's own query (reset, parameter SETs, check): PgBouncer calls
 * that "tested".
 */
static const char *server_state_word(const struct server *s, int64_t now)
{
	switch (s->state) {
	case SV_LOGIN:
		return "new";
	case SV_IDLE:
		return pool_server_needs_check(s, now) ? "used" : "idle";
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

/* SHOW SOCKETS' word for a server: PgBouncer's list name for its state */
static const char *server_list_word(const struct server *s, int64_t now)
{
	switch (s->state) {
	case SV_LOGIN:
		return "sv_login";
	case SV_IDLE:
		return pool_server_needs_check(s, now) ? "sv_used" : "sv_idle";
	case SV_ACTIVE:
		return s->client ? "sv_active" : "sv_idle";
	case SV_USED:
		return "sv_tested";
	case SV_CANCELING:
		return "sv_being_canceled";
	case SV_NEW:
	case SV_CLOSED:
		break;
	}
	return "sv_closed";
}

static void server_row(struct result *r, const struct server *s, const char *state,
		       const struct clock_now *now, bool debug)
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
	row_text(r, state);
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
	if (debug)
		stream_row(r, &s->st);
	row_end(r);
}

/* which rows a view writes, and how it names their states */
enum socket_view { VIEW_LISTS, VIEW_SOCKETS, VIEW_ACTIVE_SOCKETS };

static void client_rows(struct result *r, const struct list *l, enum socket_view view,
			const struct clock_now *now)
{
	const struct list *pos;
	list_for_each(pos, l)
	{
		const struct client *c = container_of(pos, struct client, node);
		if (view == VIEW_LISTS)
			client_row(r, c, client_state_word(c), now, false);
		else if (view == VIEW_SOCKETS || stream_holds_bytes(&c->st))
			client_row(r, c, client_list_word(c), now, true);
	}
}

static void server_rows(struct result *r, const struct list *l, enum socket_view view,
			const struct clock_now *now)
{
	const struct list *pos;
	list_for_each(pos, l)
	{
		const struct server *s = container_of(pos, struct server, node);
		if (view == VIEW_LISTS)
			server_row(r, s, server_state_word(s, now->mono), now, false);
		else if (view == VIEW_SOCKETS || stream_holds_bytes(&s->st))
			server_row(r, s, server_list_word(s, now->mono), now, true);
	}
}

static void take_clock(struct clock_now *now)
{
	now->mono = now_usec();
	now->wall = wall_usec();
}

/* console sessions belong to no pool: they stay on login_clients once logged in */
static void console_rows(struct result *r, enum socket_view view, const struct clock_now *now)
{
	const struct list *pos;
	list_for_each(pos, &worker->login_clients)
	{
		const struct client *a = container_of(pos, struct client, node);
		if (!a->is_admin || a->state != CL_ACTIVE)
			continue;
		if (view == VIEW_LISTS)
			client_row(r, a, client_state_word(a), now, false);
		else if (view == VIEW_SOCKETS || stream_holds_bytes(&a->st))
			client_row(r, a, client_list_word(a), now, true);
	}
}

/* SOCKETS' last rows: clients still logging in (PgBouncer's login_client_list) */
static void login_rows(struct result *r, enum socket_view view, const struct clock_now *now)
{
	const struct list *pos;
	list_for_each(pos, &worker->login_clients)
	{
		const struct client *c = container_of(pos, struct client, node);
		if (c->is_admin && c->state == CL_ACTIVE)
			continue;
		if (view == VIEW_SOCKETS || stream_holds_bytes(&c->st))
			client_row(r, c, client_list_word(c), now, true);
	}
}

void admin_show_clients(struct client *c, const char *arg)
{
	struct result r;
	struct clock_now now;
	int n;
	struct pool **pools = admin_sorted_pools(&n);

	(void)arg;
	take_clock(&now);
	result_begin(&r, stream_out(&c->st), socket_cols, SOCKET_COLS);
	for (int i = 0; i < n; i++) {
		client_rows(&r, &pools[i]->active_clients, VIEW_LISTS, &now);
		client_rows(&r, &pools[i]->waiting_clients, VIEW_LISTS, &now);
	}
	console_rows(&r, VIEW_LISTS, &now);
	free(pools);
	result_end(&r);
}

static void pool_server_rows(struct result *r, const struct pool *p, enum socket_view view,
			     const struct clock_now *now)
{
	server_rows(r, &p->active_servers, view, now);
	server_rows(r, &p->idle_servers, view, now);
	server_rows(r, &p->used_servers, view, now);
	server_rows(r, &p->new_servers, view, now);
	server_rows(r, &p->canceling_servers, view, now);
}

void admin_show_servers(struct client *c, const char *arg)
{
	struct result r;
	struct clock_now now;
	int n;
	struct pool **pools = admin_sorted_pools(&n);

	(void)arg;
	take_clock(&now);
	result_begin(&r, stream_out(&c->st), socket_cols, SOCKET_COLS);
	for (int i = 0; i < n; i++)
		pool_server_rows(&r, pools[i], VIEW_LISTS, &now);
	free(pools);
	result_end(&r);
}

/* SOCKETS and ACTIVE_SOCKETS: per pool its clients then its servers, then consoles and logins */
static void show_socket_view(struct client *c, enum socket_view view)
{
	struct result r;
	struct clock_now now;
	int n;
	struct pool **pools = admin_sorted_pools(&n);

	take_clock(&now);
	result_begin(&r, stream_out(&c->st), socket_cols, SOCKET_DEBUG_COLS);
	for (int i = 0; i < n; i++) {
		client_rows(&r, &pools[i]->active_clients, view, &now);
		client_rows(&r, &pools[i]->waiting_clients, view, &now);
		pool_server_rows(&r, pools[i], view, &now);
	}
	console_rows(&r, view, &now);
	login_rows(&r, view, &now);
	free(pools);
	result_end(&r);
}

void admin_show_sockets(struct client *c, const char *arg)
{
	(void)arg;
	show_socket_view(c, VIEW_SOCKETS);
}

void admin_show_active_sockets(struct client *c, const char *arg)
{
	(void)arg;
	show_socket_view(c, VIEW_ACTIVE_SOCKETS);
}

/*
 * SHOW FDS: in PgBouncer, the sockets and their login state a new process
 * takes over in an online restart (-R). pgpulse has no online restart, so
 * there is nothing to hand over: PgBouncer's columns, no rows
 * (doc/admin.md, "Differences from PgBouncer").
 */
void admin_show_fds(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "fd", OID_INT4 },
		{ "task", OID_TEXT },
		{ "user", OID_TEXT },
		{ "database", OID_TEXT },
		{ "addr", OID_TEXT },
		{ "port", OID_INT4 },
		{ "cancel", OID_INT8 },
		{ "link", OID_INT4 },
		{ "client_encoding", OID_TEXT },
		{ "std_strings", OID_TEXT },
		{ "datestyle", OID_TEXT },
		{ "timezone", OID_TEXT },
		{ "password", OID_TEXT },
		{ "scram_client_key", OID_BYTEA },
		{ "scram_server_key", OID_BYTEA },
	};
	struct result r;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	result_end(&r);
}
