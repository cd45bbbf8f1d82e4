/*
 * admin: the admin console — SHOW commands and control commands typed into
 * psql connected to the pseudo database "pgpulse" (or "pgbouncer").
 *
 * Two ideas shape the file:
 *
 * - A query is one command: a word, an optional second word, an optional
 *   ';' (or SET key = value). A small hand-written scanner turns it into a
 *   struct admin_cmd; one table then says, per command, which function runs
 *   it and whether a stats_users member may run it. Nothing else parses SQL.
 *
 * - Every SHOW is a table of columns (name and type) written next to the
 *   code that fills its rows, in PgBouncer 1.23's names and order, so that
 *   exporters written for PgBouncer read pgpulse unchanged. pgpulse's own
 *   columns only ever go after PgBouncer's. Values are built as text by the
 *   result_* helpers, which also check that each row has as many values as
 *   the header has columns.
 *
 * The answer to a query (rows, CommandComplete or ErrorResponse, then
 * ReadyForQuery) is appended to the client's output buffer; the caller
 * sends it.
 */
#include "admin.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "cancel.h"
#include "client.h"
#include "config.h"
#include "control.h"
#include "dns.h"
#include "efficiency.h"
#include "failures.h"
#include "fingerprint.h"
#include "health.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"
#include "server.h"
#include "series.h"
#include "slowlog.h"
#include "stream.h"
#include "telemetry.h"
#include "tls.h"
#include "textcache.h"
#include "util.h"
#include "worker.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

/* type OIDs used in RowDescription, as PgBouncer uses them */
#define OID_INT8    20u
#define OID_INT4    23u
#define OID_TEXT    25u
#define OID_NUMERIC 1700u

#define SQLSTATE_SYNTAX    "42601"
#define SQLSTATE_PRIVILEGE "42501"
#define SQLSTATE_NOT_YET   "0A000"

bool admin_is_admin_db(const char *dbname)
{
	return dbname && (strcmp(dbname, "pgpulse") == 0 || strcmp(dbname, "pgbouncer") == 0);
}

/* ------------------------------------------------------------------------
 * Result sets: a header of columns, rows of text values, a command tag.
 */

struct column {
	const char *name;
	uint32_t type;
};

#define MAX_COLUMNS 32
#define VALUE_SPACE 2048 /* formatted numbers and timestamps of one row */

struct result {
	struct pktbuf *out;
	const struct column *cols;
	int ncols;
	int nvals; /* values given for the row being built */
	const char *vals[MAX_COLUMNS];
	char space[VALUE_SPACE];
	size_t used;
	int rows;
};

static void result_begin(struct result *r, struct pktbuf *out, const struct column *cols, int ncols)
{
	const char *names[MAX_COLUMNS];
	uint32_t types[MAX_COLUMNS];

	memset(r, 0, sizeof(*r));
	r->out = out;
	r->cols = cols;
	r->ncols = ncols < MAX_COLUMNS ? ncols : MAX_COLUMNS;
	for (int i = 0; i < r->ncols; i++) {
		names[i] = cols[i].name;
		types[i] = cols[i].type;
	}
	proto_put_row_description(out, r->ncols, names, types);
}

static void row_value(struct result *r, const char *v)
{
	if (r->nvals < r->ncols)
		r->vals[r->nvals] = v;
	r->nvals++;
}

/* a value formatted into the row's own space (valid until row_end) */
static void row_printf(struct result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void row_printf(struct result *r, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof(r->space) - r->used;
	char *dst = r->space + r->used;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(dst, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room) {
		/* cannot happen with the short values we format; say so rather than truncate */
		row_value(r, "?");
		return;
	}
	r->used += (size_t)n + 1;
	row_value(r, dst);
}

static void row_text(struct result *r, const char *v)
{
	row_value(r, v ? v : "");
}

/* SQL NULL when v is NULL */
static void row_text_or_null(struct result *r, const char *v)
{
	row_value(r, v);
}

static void row_int(struct result *r, long long v)
{
	row_printf(r, "%lld", v);
}

static void row_uint(struct result *r, unsigned long long v)
{
	row_printf(r, "%llu", v);
}

/* a wall-clock time in usec, the way PgBouncer prints it: "2024-07-03 12:00:00 UTC" */
static void row_time(struct result *r, int64_t wall)
{
	char buf[64];
	time_t t = (time_t)(wall / 1000000);
	struct tm tm;

	if (wall <= 0 || !localtime_r(&t, &tm) ||
	    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S %Z", &tm) == 0) {
		row_value(r, NULL);
		return;
	}
	row_printf(r, "%s", buf);
}

static void row_ptr(struct result *r, const void *p)
{
	if (p)
		row_printf(r, "%p", p);
	else
		row_text(r, "");
}

static void row_end(struct result *r)
{
	if (r->nvals != r->ncols) {
		/* a programming error in this file: keep the protocol valid, and say where */
		log_error("admin: a row of %d values for %d columns (first column \"%s\")",
			  r->nvals, r->ncols, r->ncols ? r->cols[0].name : "");
		for (int i = r->nvals; i < r->ncols; i++)
			r->vals[i] = NULL;
	}
	proto_put_data_row(r->out, r->ncols, r->vals);
	r->nvals = 0;
	r->used = 0;
	r->rows++;
}

static void command_done(struct pktbuf *out, const char *tag)
{
	proto_put_command_complete(out, tag);
	proto_put_ready(out, 'I');
}

static void result_end(struct result *r)
{
	command_done(r->out, "SHOW");
}

#define NCOLS(cols) ((int)(sizeof(cols) / sizeof((cols)[0])))

/* ------------------------------------------------------------------------
 * Errors: the one way this file answers a command with an ERROR.
 */

static void admin_error(struct client *c, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void admin_error(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	struct pktbuf *out = stream_out(&c->st);

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_debug("C-%llu %s/%s %s: admin: %s", (unsigned long long)c->id, c->dbname, c->user,
		  c->addr, msg);
	proto_put_error(out, "ERROR", sqlstate, msg);
	proto_put_ready(out, 'I');
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

/* ------------------------------------------------------------------------
 * Parsing: one command per query.
 *
 *   command  := word [word] [';']
 *   set      := SET key ('=' | TO) value [';']
 *   word     := [A-Za-z0-9_]+ | "double-quoted, "" for a quote"
 *   value    := 'single-quoted, '' for a quote' | word | any run of non-blank, non-';'
 *
 * PgBouncer accepts the same shapes (its value must be a word or a quoted
 * string; pgpulse also takes unquoted 250ms, 1.5, /path). Keywords are
 * case-insensitive.
 */

enum cmd_kind { CMD_EMPTY, CMD_WORDS, CMD_SET, CMD_BAD };

struct admin_cmd {
	enum cmd_kind kind;
	char verb[64]; /* first word, as written */
	char arg[256]; /* second word, as written (unquoted); "" when absent */
	bool has_arg;
	char arg2[64]; /* third word (SHOW LATENCY 5m); "" when absent */
	bool has_arg2;
	bool arg_quoted;
	char key[64];     /* SET */
	char value[1024]; /* SET, unquoted */
	bool key_quoted;
};

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static bool is_word_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_';
}

static const char *skip_blanks(const char *p)
{
	while (is_blank(*p))
		p++;
	return p;
}

/*
 * Copy one word (bare or double-quoted) at *pp into dst; advances *pp.
 * False when there is no word there or it does not fit.
 */
static bool scan_word(const char **pp, char *dst, size_t size, bool *quoted)
{
	const char *p = *pp;
	size_t n = 0;

	if (quoted)
		*quoted = false;
	if (*p == '"') {
		p++;
		for (;;) {
			if (*p == '\0')
				return false; /* unterminated */
			if (*p == '"') {
				if (p[1] != '"')
					break;
				p++; /* "" is one quote */
			}
			if (n + 1 >= size)
				return false;
			dst[n++] = *p++;
		}
		p++; /* closing quote */
		if (n == 0)
			return false; /* "" is not a name */
		if (quoted)
			*quoted = true;
	} else {
		while (is_word_char(*p)) {
			if (n + 1 >= size)
				return false;
			dst[n++] = *p++;
		}
		if (n == 0)
			return false;
	}
	dst[n] = '\0';
	*pp = p;
	return true;
}

/* a SET value: 'quoted' or a bare run of characters */
static bool scan_value(const char **pp, char *dst, size_t size)
{
	const char *p = *pp;
	size_t n = 0;

	if (*p == '\'') {
		p++;
		for (;;) {
			if (*p == '\0')
				return false;
			if (*p == '\'') {
				if (p[1] != '\'')
					break;
				p++; /* '' is one quote */
			}
			if (n + 1 >= size)
				return false;
			dst[n++] = *p++;
		}
		p++;
	} else {
		while (*p && !is_blank(*p) && *p != ';') {
			if (n + 1 >= size)
				return false;
			dst[n++] = *p++;
		}
		if (n == 0)
			return false;
	}
	dst[n] = '\0';
	*pp = p;
	return true;
}

/* the end of a command: blanks, an optional ';', blanks, the end */
static bool at_command_end(const char *p)
{
	p = skip_blanks(p);
	if (*p == ';')
		p = skip_blanks(p + 1);
	return *p == '\0';
}

static void admin_parse(const char *sql, struct admin_cmd *cmd)
{
	const char *p = skip_blanks(sql);

	memset(cmd, 0, sizeof(*cmd));
	if (at_command_end(p)) {
		cmd->kind = CMD_EMPTY;
		return;
	}
	cmd->kind = CMD_BAD;
	if (!scan_word(&p, cmd->verb, sizeof(cmd->verb), NULL))
		return;

	if (strcasecmp(cmd->verb, "set") == 0) {
		p = skip_blanks(p);
		if (!scan_word(&p, cmd->key, sizeof(cmd->key), &cmd->key_quoted))
			return;
		p = skip_blanks(p);
		if (*p == '=') {
			p++;
		} else if (strncasecmp(p, "to", 2) == 0 && is_blank(p[2])) {
			p += 2;
		} else {
			return;
		}
		p = skip_blanks(p);
		if (!scan_value(&p, cmd->value, sizeof(cmd->value)))
			return;
		if (at_command_end(p))
			cmd->kind = CMD_SET;
		return;
	}

	/* a second word needs a blank (or a quote) between it and the first */
	const char *q = skip_blanks(p);
	if (q != p || *q == '"') {
		if (*q == '"' || is_word_char(*q)) {
			if (!scan_word(&q, cmd->arg, sizeof(cmd->arg), &cmd->arg_quoted))
				return;
			cmd->has_arg = true;
		}
		p = q;
	}
	q = skip_blanks(p);
	if (cmd->has_arg && q != p && is_word_char(*q)) {
		if (!scan_word(&q, cmd->arg2, sizeof(cmd->arg2), NULL))
			return;
		cmd->has_arg2 = true;
		p = q;
	}
	if (at_command_end(p))
		cmd->kind = CMD_WORDS;
}

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
static struct pool **sorted_pools(int *n)
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
static struct pool_db **sorted_databases(int *n)
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

static int servers_of_pool(const struct pool *p)
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

static void show_clients(struct client *c, const char *arg)
{
	struct result r;
	struct clock_now now;
	int n;
	struct pool **pools = sorted_pools(&n);
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

static void show_servers(struct client *c, const char *arg)
{
	struct result r;
	struct clock_now now;
	int n;
	struct pool **pools = sorted_pools(&n);

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

static void show_pools(struct client *c, const char *arg)
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
	struct pool **pools = sorted_pools(&n);

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

static void show_databases(struct client *c, const char *arg)
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
	struct pool_db **dbs = sorted_databases(&n);

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
			current += servers_of_pool(p);
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

static void show_users(struct client *c, const char *arg)
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
				current += servers_of_pool(p);
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
 * SHOW STATS, STATS_TOTALS, STATS_AVERAGES, TOTALS
 *
 * Totals are the pools' counters summed per database. Averages follow
 * PgBouncer: rates per second and times per transaction/query/assignment,
 * from a snapshot at least stats_period old to now. PgBouncer takes the
 * snapshots on a timer; here they are taken lazily when a SHOW STATS*
 * arrives and the newer snapshot is a stats_period old, so a scraper polling
 * more often than stats_period sees the same window PgBouncer's would, and
 * a long silence gives one long window. Until the first period has passed
 * the window starts when pgpulse started.
 *
 * With several workers this state moves into struct worker.
 */

struct db_totals {
	const char *name;
	struct pool_stats st;
};

struct stats_snapshot {
	int64_t at; /* monotonic usec */
	int n;
	char **names;
	struct pool_stats *st;
};

static struct {
	bool started;
	struct stats_snapshot older, newer;
} avg_window;

static void stats_add(struct pool_stats *sum, const struct pool_stats *st)
{
	sum->xact_count += st->xact_count;
	sum->query_count += st->query_count;
	sum->bytes_received += st->bytes_received;
	sum->bytes_sent += st->bytes_sent;
	sum->xact_time += st->xact_time;
	sum->query_time += st->query_time;
	sum->wait_time += st->wait_time;
	sum->server_assignments += st->server_assignments;
	sum->client_parse_count += st->client_parse_count;
	sum->server_parse_count += st->server_parse_count;
	sum->bind_count += st->bind_count;
}

/* the counters per database, by name: only databases with a pool; free() the array */
static struct db_totals *totals_per_database(int *n)
{
	int np, nd = 0;
	struct pool **pools = sorted_pools(&np);
	struct db_totals *v = xcalloc((size_t)(np ? np : 1), sizeof(*v));

	for (int i = 0; i < np; i++) {
		if (nd == 0 || strcmp(v[nd - 1].name, pools[i]->db->name) != 0)
			v[nd++].name = pools[i]->db->name;
		stats_add(&v[nd - 1].st, &pools[i]->stats);
	}
	free(pools);
	*n = nd;
	return v;
}

static void snapshot_free(struct stats_snapshot *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->names[i]);
	free(s->names);
	free(s->st);
	s->names = NULL;
	s->st = NULL;
	s->n = 0;
}

static void snapshot_take(struct stats_snapshot *s, const struct db_totals *t, int n, int64_t at)
{
	snapshot_free(s);
	s->at = at;
	s->n = n;
	s->names = xcalloc((size_t)(n ? n : 1), sizeof(*s->names));
	s->st = xcalloc((size_t)(n ? n : 1), sizeof(*s->st));
	for (int i = 0; i < n; i++) {
		s->names[i] = xstrdup(t[i].name);
		s->st[i] = t[i].st;
	}
}

static const struct pool_stats *snapshot_find(const struct stats_snapshot *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->names[i], name) == 0)
			return &s->st[i];
	return NULL;
}

/* move the averaging window forward when the newer snapshot is a period old */
static void avg_window_advance(const struct db_totals *t, int n, int64_t now)
{
	int64_t period = worker->cfg->stats_period > 0 ? worker->cfg->stats_period : 60 * 1000000LL;

	if (!avg_window.started) {
		/* both snapshots at process start, when every counter was zero */
		int64_t since = worker->started_at > 0 ? wall_usec() - worker->started_at : 0;
		avg_window.started = true;
		avg_window.older.at = avg_window.newer.at = now - (since > 0 ? since : 0);
	}
	if (now - avg_window.newer.at < period)
		return;
	snapshot_free(&avg_window.older);
	avg_window.older = avg_window.newer;
	memset(&avg_window.newer, 0, sizeof(avg_window.newer));
	snapshot_take(&avg_window.newer, t, n, now);
}

/* a counter's growth; a counter that went down (its pool was recreated) counts from zero */
static uint64_t grown(uint64_t now, uint64_t then)
{
	return now >= then ? now - then : now;
}

/* the counters of database `name` in the older snapshot (zero if it was not there) */
static const struct pool_stats *stats_older(const char *name)
{
	static const struct pool_stats zero;
	const struct pool_stats *old = snapshot_find(&avg_window.older, name);
	return old ? old : &zero;
}

static uint64_t per_second(uint64_t count, int64_t dur)
{
	return (uint64_t)((double)count * 1e6 / (double)dur);
}

/* PgBouncer's averages: rates per second, and usec per transaction, query, assignment */
static void stats_average(struct pool_stats *avg, const struct pool_stats *cur,
			  const struct pool_stats *old, int64_t dur)
{
	memset(avg, 0, sizeof(*avg));
	if (dur <= 0)
		return;
	uint64_t xacts = grown(cur->xact_count, old->xact_count);
	uint64_t queries = grown(cur->query_count, old->query_count);
	uint64_t assigns = grown(cur->server_assignments, old->server_assignments);
	avg->server_assignments = per_second(assigns, dur);
	avg->xact_count = per_second(xacts, dur);
	avg->query_count = per_second(queries, dur);
	avg->bytes_received = per_second(grown(cur->bytes_received, old->bytes_received), dur);
	avg->bytes_sent = per_second(grown(cur->bytes_sent, old->bytes_sent), dur);
	avg->client_parse_count = per_second(grown(cur->client_parse_count, old->client_parse_count), dur);
	avg->server_parse_count = per_second(grown(cur->server_parse_count, old->server_parse_count), dur);
	avg->bind_count = per_second(grown(cur->bind_count, old->bind_count), dur);
	if (xacts > 0)
		avg->xact_time = grown(cur->xact_time, old->xact_time) / xacts;
	if (queries > 0)
		avg->query_time = grown(cur->query_time, old->query_time) / queries;
	if (assigns > 0)
		avg->wait_time = grown(cur->wait_time, old->wait_time) / assigns;
}

/* the eleven figures in PgBouncer 1.21's order */
static void row_stats(struct result *r, const struct pool_stats *st)
{
	row_uint(r, st->server_assignments);
	row_uint(r, st->xact_count);
	row_uint(r, st->query_count);
	row_uint(r, st->bytes_received);
	row_uint(r, st->bytes_sent);
	row_uint(r, st->xact_time);
	row_uint(r, st->query_time);
	row_uint(r, st->wait_time);
	row_uint(r, st->client_parse_count);
	row_uint(r, st->server_parse_count);
	row_uint(r, st->bind_count);
}

enum stats_view { STATS_BOTH, STATS_TOTALS, STATS_AVERAGES };

static void show_stats_view(struct client *c, enum stats_view view)
{
	static const struct column both_cols[] = {
		{ "database", OID_TEXT },
		{ "total_server_assignment_count", OID_NUMERIC },
		{ "total_xact_count", OID_NUMERIC },
		{ "total_query_count", OID_NUMERIC },
		{ "total_received", OID_NUMERIC },
		{ "total_sent", OID_NUMERIC },
		{ "total_xact_time", OID_NUMERIC },
		{ "total_query_time", OID_NUMERIC },
		{ "total_wait_time", OID_NUMERIC },
		{ "total_client_parse_count", OID_NUMERIC },
		{ "total_server_parse_count", OID_NUMERIC },
		{ "total_bind_count", OID_NUMERIC },
		{ "avg_server_assignment_count", OID_NUMERIC },
		{ "avg_xact_count", OID_NUMERIC },
		{ "avg_query_count", OID_NUMERIC },
		{ "avg_recv", OID_NUMERIC },
		{ "avg_sent", OID_NUMERIC },
		{ "avg_xact_time", OID_NUMERIC },
		{ "avg_query_time", OID_NUMERIC },
		{ "avg_wait_time", OID_NUMERIC },
		{ "avg_client_parse_count", OID_NUMERIC },
		{ "avg_server_parse_count", OID_NUMERIC },
		{ "avg_bind_count", OID_NUMERIC },
	};
	/* STATS_TOTALS and STATS_AVERAGES share these names */
	static const struct column one_cols[] = {
		{ "database", OID_TEXT },          { "server_assignment_count", OID_NUMERIC },
		{ "xact_count", OID_NUMERIC },     { "query_count", OID_NUMERIC },
		{ "bytes_received", OID_NUMERIC }, { "bytes_sent", OID_NUMERIC },
		{ "xact_time", OID_NUMERIC },      { "query_time", OID_NUMERIC },
		{ "wait_time", OID_NUMERIC },      { "client_parse_count", OID_NUMERIC },
		{ "server_parse_count", OID_NUMERIC }, { "bind_count", OID_NUMERIC },
	};
	struct result r;
	int64_t now = now_usec();
	int n;
	struct db_totals *t = totals_per_database(&n);

	avg_window_advance(t, n, now);
	if (view == STATS_BOTH)
		result_begin(&r, stream_out(&c->st), both_cols, NCOLS(both_cols));
	else
		result_begin(&r, stream_out(&c->st), one_cols, NCOLS(one_cols));
	for (int i = 0; i < n; i++) {
		struct pool_stats avg;
		stats_average(&avg, &t[i].st, stats_older(t[i].name), now - avg_window.older.at);
		row_text(&r, t[i].name);
		if (view != STATS_AVERAGES)
			row_stats(&r, &t[i].st);
		if (view != STATS_TOTALS)
			row_stats(&r, &avg);
		row_end(&r);
	}
	free(t);
	result_end(&r);
}

static void show_stats(struct client *c, const char *arg)
{
	(void)arg;
	show_stats_view(c, STATS_BOTH);
}

static void show_stats_totals(struct client *c, const char *arg)
{
	(void)arg;
	show_stats_view(c, STATS_TOTALS);
}

static void show_stats_averages(struct client *c, const char *arg)
{
	(void)arg;
	show_stats_view(c, STATS_AVERAGES);
}

/* SHOW TOTALS: SHOW STATS summed over all databases, one figure per row */
static void show_totals(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "name", OID_TEXT },
		{ "value", OID_NUMERIC },
	};
	struct result r;
	int64_t now = now_usec();
	int n;
	struct db_totals *t = totals_per_database(&n);
	struct pool_stats cur, old, avg;

	(void)arg;
	avg_window_advance(t, n, now);
	memset(&cur, 0, sizeof(cur));
	memset(&old, 0, sizeof(old));
	for (int i = 0; i < n; i++) {
		stats_add(&cur, &t[i].st);
		stats_add(&old, stats_older(t[i].name));
	}
	stats_average(&avg, &cur, &old, now - avg_window.older.at);

	/* PgBouncer's row names: client_bytes came from clients, server_bytes went to them */
	const struct {
		const char *name;
		uint64_t total, avg;
	} rows[] = {
		{ "server_assignment_count", cur.server_assignments, avg.server_assignments },
		{ "xact_count", cur.xact_count, avg.xact_count },
		{ "query_count", cur.query_count, avg.query_count },
		{ "client_bytes", cur.bytes_received, avg.bytes_received },
		{ "server_bytes", cur.bytes_sent, avg.bytes_sent },
		{ "xact_time", cur.xact_time, avg.xact_time },
		{ "query_time", cur.query_time, avg.query_time },
		{ "wait_time", cur.wait_time, avg.wait_time },
		/* PgBouncer's SHOW TOTALS spells these with ps_ */
		{ "ps_client_parse_count", cur.client_parse_count, avg.client_parse_count },
		{ "ps_server_parse_count", cur.server_parse_count, avg.server_parse_count },
		{ "ps_bind_count", cur.bind_count, avg.bind_count },
	};
	const size_t nrows = sizeof(rows) / sizeof(rows[0]);

	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (size_t i = 0; i < 2 * nrows; i++) {
		bool total = i < nrows;
		row_printf(&r, "%s_%s", total ? "total" : "avg", rows[i % nrows].name);
		row_uint(&r, total ? rows[i % nrows].total : rows[i % nrows].avg);
		row_end(&r);
	}
	free(t);
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
		n += servers_of_pool(container_of(pos, struct pool, node));
	return n;
}

static void show_lists(struct client *c, const char *arg)
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

static void show_mem(struct client *c, const char *arg)
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

static void show_config(struct client *c, const char *arg)
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

static void show_version(struct client *c, const char *arg)
{
	static const struct column cols[] = { { "version", OID_TEXT } };
	struct result r;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	row_text(&r, "pgpulse " PACKAGE_VERSION);
	row_end(&r);
	result_end(&r);
}

static void show_state(struct client *c, const char *arg)
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
static void show_peers(struct client *c, const char *arg)
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
static void show_dns_hosts(struct client *c, const char *arg)
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

static void show_peer_pools(struct client *c, const char *arg)
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

static void show_help(struct client *c, const char *arg)
{
	static const char detail[] =
		"\n"
		"\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
		"\tSHOW LISTS|MEM|STATE|PEERS|PEER_POOLS|DNS_HOSTS|PREPARED_STATEMENTS\n"
		"\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
		"\tSHOW FAILURES\n"
		"\tSHOW LATENCY|EFFICIENCY [1m|5m|15m|all]\n"
		"\tSHOW QUERIES [1m|5m|15m|all]\n"
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
static int fake_param_index(const char *name)
{
	for (size_t i = 0; i < sizeof(fake_params) / sizeof(fake_params[0]); i++)
		if (strcasecmp(name, fake_params[i][0]) == 0)
			return (int)i;
	return -1;
}

static void show_fake_param(struct client *c, int idx)
{
	struct column col = { fake_params[idx][0], OID_TEXT };
	struct result r;

	result_begin(&r, stream_out(&c->st), &col, 1);
	row_text(&r, fake_params[idx][1]);
	row_end(&r);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * Control commands
 */

static void log_admin_action(const struct client *c, const char *what)
{
	log_info("C-%llu %s/%s %s: admin: %s", (unsigned long long)c->id, c->dbname, c->user,
		 c->addr, what);
}

static void cmd_reload(struct client *c, const char *arg)
{
	char err[512] = "";

	(void)arg;
	log_admin_action(c, "RELOAD");
	if (!worker_reload(err, sizeof(err))) {
		admin_error(c, "F0000", "RELOAD failed: %s", err[0] ? err : "see the log");
		return;
	}
	command_done(stream_out(&c->st), "RELOAD");
}

static void cmd_shutdown(struct client *c, const char *arg)
{
	enum shutdown_mode mode = SHUTDOWN_NOW;

	if (arg[0] && strcasecmp(arg, "wait_for_servers") == 0) {
		mode = SHUTDOWN_WAIT_SERVERS;
	} else if (arg[0] && strcasecmp(arg, "wait_for_clients") == 0) {
		mode = SHUTDOWN_WAIT_CLIENTS;
	} else if (arg[0]) {
		admin_error(c, SQLSTATE_SYNTAX,
			    "invalid SHUTDOWN mode '%s': use WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS",
			    arg);
		return;
	}
	log_admin_action(c, arg[0] ? "SHUTDOWN (waiting)" : "SHUTDOWN");
	/* the answer is queued first: the caller sends it before the loop can stop */
	command_done(stream_out(&c->st), "SHUTDOWN");
	worker_request_shutdown(mode);
}

/* the database a control command names; NULL with no argument (every database) */
static bool control_target(struct client *c, const char *arg, struct pool_db **db)
{
	*db = NULL;
	if (!arg[0])
		return true;
	*db = pool_lookup_db(arg);
	if (!*db) {
		admin_error(c, "3D000", "database \"%s\" does not exist", arg);
		return false;
	}
	return true;
}

static void log_control(struct client *c, const char *verb, const char *arg)
{
	char what[320];
	snprintf(what, sizeof(what), "%s%s%s", verb, arg[0] ? " " : "", arg);
	log_admin_action(c, what);
}

static void cmd_pause(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "PAUSE", arg);
	/* answered now, or by control_poll once no server serves a client */
	if (control_pause(c, db))
		command_done(stream_out(&c->st), "PAUSE");
}

static void cmd_resume(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "RESUME", arg);
	control_resume(db);
	command_done(stream_out(&c->st), "RESUME");
}

static void cmd_suspend(struct client *c, const char *arg)
{
	log_control(c, "SUSPEND", arg);
	if (control_suspend(c))
		command_done(stream_out(&c->st), "SUSPEND");
}

static void cmd_disable(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "DISABLE", arg);
	control_set_disabled(db, true);
	command_done(stream_out(&c->st), "DISABLE");
}

static void cmd_enable(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "ENABLE", arg);
	control_set_disabled(db, false);
	command_done(stream_out(&c->st), "ENABLE");
}

static void cmd_reconnect(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "RECONNECT", arg);
	control_reconnect(db);
	command_done(stream_out(&c->st), "RECONNECT");
}

static void cmd_kill(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "KILL", arg);
	control_kill(db);
	command_done(stream_out(&c->st), "KILL");
}

static void cmd_kill_client(struct client *c, const char *arg)
{
	char *end = NULL;
	unsigned long long id = strtoull(arg, &end, 10);
	if (!end || *end || end == arg) {
		admin_error(c, SQLSTATE_SYNTAX, "KILL_CLIENT takes a client id (the id column of SHOW CLIENTS)");
		return;
	}
	if (id == c->id) {
		admin_error(c, "22023", "KILL_CLIENT: that is this connection");
		return;
	}
	log_control(c, "KILL_CLIENT", arg);
	if (!control_kill_client(id)) {
		admin_error(c, "22023", "no client with id %llu", id);
		return;
	}
	command_done(stream_out(&c->st), "KILL_CLIENT");
}

static void cmd_wait_close(struct client *c, const char *arg)
{
	struct pool_db *db;
	if (!control_target(c, arg, &db))
		return;
	log_control(c, "WAIT_CLOSE", arg);
	if (control_wait_close(c, db))
		command_done(stream_out(&c->st), "WAIT_CLOSE");
}

/* a PgBouncer command pgpulse does not have yet (the dispatcher names it in the error) */
static void cmd_not_yet(struct client *c, const char *arg)
{
	(void)arg;
	admin_error(c, SQLSTATE_NOT_YET, "not supported yet");
}

/* the index of a parameter in the table, or -1 */
static int param_index(const char *name)
{
	for (int i = 0; i < cfg_param_count(); i++) {
		struct cfg_param_info info;
		if (cfg_param_get(NULL, i, &info) && strcmp(info.name, name) == 0)
			return i;
	}
	return -1;
}

static bool affects_tls(const char *key)
{
	return strncmp(key, "client_tls", 10) == 0 || strncmp(key, "server_tls", 10) == 0 ||
	       strcmp(key, "auth_type") == 0;
}

/* the TLS contexts from the configuration as it now is; false (nothing changed) if unusable */
static bool rebuild_tls(char *err, size_t errlen)
{
	struct tls_config *tc = tls_config_build(worker->cfg, err, errlen);
	if (!tc)
		return false;
	tls_config_install(tc);
	return true;
}

/* no silent skip on the console either: the same words as the warning a file gets */
static void warn_set_not_in_effect(struct client *c, const char *key)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "%s is accepted but not in effect in this release: pgpulse ignores it", key);
	log_warning("C-%llu %s: SET %s", (unsigned long long)c->id, c->user, msg);
	proto_put_warning(stream_out(&c->st), "01000", msg);
}

static void cmd_set(struct client *c, const struct admin_cmd *cmd)
{
	char key[sizeof(cmd->key)];
	char err[512] = "";
	char what[sizeof(cmd->key) + sizeof(cmd->value) + 16];

	if (fake_param_index(cmd->key) >= 0) {
		/* even stats users, as in PgBouncer: drivers send these on connect */
		struct pktbuf *out = stream_out(&c->st);
		proto_put_notice(out, "00000", "SET ignored");
		command_done(out, "SET");
		return;
	}
	if (!c->admin_may_change) {
		admin_error(c, SQLSTATE_PRIVILEGE, "admin access needed: SET is for admin_users");
		return;
	}
	str_copy(key, cmd->key, sizeof(key));
	if (!cmd->key_quoted)
		for (char *k = key; *k; k++)
			*k = (char)tolower((unsigned char)*k);

	int idx = param_index(key);
	if (idx < 0) {
		admin_error(c, "42704", "unrecognized configuration parameter \"%s\"", key);
		return;
	}
	struct cfg_param_info info;
	char old[1024];
	str_copy(old, cfg_param_get(worker->cfg, idx, &info) && info.value ? info.value : "", sizeof(old));
	if (!cfg_set(worker->cfg, key, cmd->value, err, sizeof(err))) {
		bool restart = cfg_param_get(NULL, idx, &info) && !info.reloadable;
		admin_error(c, restart ? "55P02" : "22023", "%s", err[0] ? err : "SET failed");
		return;
	}
	if (affects_tls(key) && !rebuild_tls(err, sizeof(err))) {
		char ignored[256];
		cfg_set(worker->cfg, key, old, ignored, sizeof(ignored));
		admin_error(c, "22023", "%s", err);
		return;
	}
	snprintf(what, sizeof(what), "SET %s = %s", key, cmd->value);
	log_admin_action(c, what);
	worker_apply_config(); /* pool modes, sizes and logging follow at once */
	if (cfg_param_get(NULL, idx, &info) && !info.in_effect)
		warn_set_not_in_effect(c, key);
	command_done(stream_out(&c->st), "SET");
}

/* ------------------------------------------------------------------------
 * SHOW LATENCY: percentiles of the five kinds of duration, per pool and in total
 */

static bool window_arg(struct client *c, const char *arg, enum series_window dflt, enum series_window *w)
{
	if (!arg[0]) {
		*w = dflt;
		return true;
	}
	int found = series_window_by_name(arg);
	if (found < 0) {
		admin_error(c, "22023", "unknown window \"%s\": use 1m, 5m, 15m or all", arg);
		return false;
	}
	*w = (enum series_window)found;
	return true;
}

static void latency_row(struct result *r, const char *db, const char *user, enum telemetry_kind k,
			enum series_window w, const struct hist_acc *acc)
{
	row_text(r, db);
	row_text(r, user);
	row_text(r, telemetry_kind_name(k));
	row_text(r, series_window_name(w));
	row_uint(r, acc->count);
	row_uint(r, hist_acc_mean(acc));
	row_uint(r, hist_acc_quantile(acc, 0.50));
	row_uint(r, hist_acc_quantile(acc, 0.90));
	row_uint(r, hist_acc_quantile(acc, 0.95));
	row_uint(r, hist_acc_quantile(acc, 0.99));
	row_uint(r, hist_acc_quantile(acc, 0.999));
	row_uint(r, acc->max);
	row_end(r);
}

static void show_latency(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "database", OID_TEXT }, { "user", OID_TEXT },   { "kind", OID_TEXT },   { "window", OID_TEXT },
		{ "count", OID_INT8 },    { "mean_us", OID_INT8 }, { "p50_us", OID_INT8 }, { "p90_us", OID_INT8 },
		{ "p95_us", OID_INT8 },   { "p99_us", OID_INT8 },  { "p999_us", OID_INT8 }, { "max_us", OID_INT8 },
	};
	/* 14 kB each: static, the console runs on the one worker thread */
	static struct hist_acc acc, total[TK_COUNT];
	enum series_window w;
	struct result r;
	int n;

	if (!window_arg(c, arg, WINDOW_1M, &w))
		return;
	struct pool **pools = sorted_pools(&n);
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int k = 0; k < TK_COUNT; k++)
		hist_acc_reset(&total[k]);
	for (int i = 0; i < n; i++) {
		const struct pool *p = pools[i];
		for (int k = 0; k < TK_COUNT; k++) {
			hist_acc_reset(&acc);
			series_read(&p->tm->kinds[k], w, &acc);
			series_read(&p->tm->kinds[k], w, &total[k]);
			latency_row(&r, p->db->name, p->user->name, (enum telemetry_kind)k, w, &acc);
		}
	}
	/* the whole instance: database and user "*" */
	for (int k = 0; k < TK_COUNT; k++)
		latency_row(&r, "*", "*", (enum telemetry_kind)k, w, &total[k]);
	free(pools);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW EFFICIENCY: how well each pool's servers were used
 */

static double pct(int64_t part, int64_t whole)
{
	return whole > 0 ? 100.0 * (double)part / (double)whole : 0.0;
}

static void show_efficiency(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "database", OID_TEXT },         { "user", OID_TEXT },
		{ "window", OID_TEXT },           { "pool_size", OID_INT4 },
		{ "utilization_pct", OID_NUMERIC }, { "reuse_pct", OID_NUMERIC },
		{ "saturation_pct", OID_NUMERIC }, { "wait_p95_us", OID_INT8 },
		{ "overflow_pct", OID_NUMERIC },  { "reserve_pct", OID_NUMERIC },
		{ "servers_opened", OID_INT8 },   { "servers_closed", OID_INT8 },
		{ "suggested_pool_size", OID_INT4 },
	};
	static struct hist_acc wait;
	struct eff_counters ec;
	enum series_window w;
	struct result r;
	int n;
	int64_t now = now_usec();

	if (!window_arg(c, arg, WINDOW_1M, &w))
		return;
	struct pool **pools = sorted_pools(&n);
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < n; i++) {
		struct pool *p = pools[i];
		eff_read(&p->tm->eff, w, now, &ec);
		hist_acc_reset(&wait);
		series_read(&p->tm->kinds[TK_WAIT], w, &wait);
		row_text(&r, p->db->name);
		row_text(&r, p->user->name);
		row_text(&r, series_window_name(w));
		row_int(&r, pool_effective_size(p));
		row_printf(&r, "%.1f", pct(ec.busy_us, ec.open_us));
		row_printf(&r, "%.1f", pct((int64_t)ec.reused, (int64_t)ec.assignments));
		row_printf(&r, "%.1f", pct(ec.saturated_us, ec.span_us));
		row_uint(&r, hist_acc_quantile(&wait, 0.95));
		row_printf(&r, "%.1f", pct(ec.overflow_us, ec.span_us));
		row_printf(&r, "%.1f", pct(ec.reserve_us, ec.span_us));
		row_uint(&r, ec.opened);
		row_uint(&r, ec.closed);
		row_int(&r, eff_suggested_size(&ec));
		row_end(&r);
	}
	free(pools);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW HEALTH: the instance's verdict (the row with no database: what
 * GET /health answers), then each pool judged now on its 5-minute window
 */

static void show_health(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "database", OID_TEXT }, { "user", OID_TEXT }, { "status", OID_TEXT }, { "reason", OID_TEXT },
	};
	struct result r;
	struct health_verdict v;
	int n;
	int64_t now = now_usec();
	char why[256];

	(void)arg;
	bool serving = health_judge_instance(now, why, sizeof(why));
	struct pool **pools = sorted_pools(&n);
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	row_text_or_null(&r, NULL);
	row_text_or_null(&r, NULL);
	row_text(&r, serving ? "ok" : "unavailable");
	row_text(&r, why);
	row_end(&r);
	for (int i = 0; i < n; i++) {
		struct pool *p = pools[i];
		health_judge_pool(p, now, &v);
		row_text(&r, p->db->name);
		row_text(&r, p->user->name);
		row_text(&r, health_status_name(v.status));
		row_text(&r, v.reason);
		row_end(&r);
	}
	free(pools);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW QUERIES: per query shape, heaviest first; SHOW SLOW: the slow-query log
 */

struct query_row {
	struct fp_entry *e;
	struct fp_window w;
	uint64_t p50, p95, p99, max;
};

struct query_rows {
	struct query_row *rows;
	int n, cap;
	enum series_window window;
};

static void collect_query_row(struct fp_entry *e, void *arg)
{
	static struct hist_acc acc; /* 14 kB, one worker thread */
	struct query_rows *qr = arg;
	struct query_row row;
	hist_acc_reset(&acc);
	row.e = e;
	fp_read(e, qr->window, &row.w, &acc);
	if (!row.w.calls)
		return;
	row.p50 = hist_acc_quantile(&acc, 0.50);
	row.p95 = hist_acc_quantile(&acc, 0.95);
	row.p99 = hist_acc_quantile(&acc, 0.99);
	row.max = acc.max;
	if (qr->n == qr->cap) {
		qr->cap = qr->cap ? qr->cap * 2 : 64;
		qr->rows = xrealloc(qr->rows, sizeof(*qr->rows) * (size_t)qr->cap);
	}
	qr->rows[qr->n++] = row;
}

static int cmp_query_total_desc(const void *a, const void *b)
{
	const struct query_row *x = a, *y = b;
	if (x->w.total_us != y->w.total_us)
		return x->w.total_us < y->w.total_us ? 1 : -1;
	return x->e->fp < y->e->fp ? -1 : x->e->fp > y->e->fp;
}

static void show_queries(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "fingerprint", OID_TEXT }, { "database", OID_TEXT }, { "user", OID_TEXT },  { "query", OID_TEXT },
		{ "calls", OID_INT8 },       { "errors", OID_INT8 },   { "total_us", OID_INT8 }, { "mean_us", OID_INT8 },
		{ "p50_us", OID_INT8 },      { "p95_us", OID_INT8 },   { "p99_us", OID_INT8 },  { "max_us", OID_INT8 },
	};
	struct query_rows qr = { NULL, 0, 0, WINDOW_ALL };
	enum series_window w;
	struct result r;

	if (!window_arg(c, arg, WINDOW_ALL, &w))
		return;
	qr.window = w;
	fp_for_each(collect_query_row, &qr);
	if (qr.n > 1)
		qsort(qr.rows, (size_t)qr.n, sizeof(*qr.rows), cmp_query_total_desc);
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < qr.n; i++) {
		const struct query_row *q = &qr.rows[i];
		row_printf(&r, "%016llx", (unsigned long long)q->e->fp);
		row_text(&r, q->e->pool->db->name);
		row_text(&r, q->e->pool->user->name);
		row_printf(&r, "%.500s", q->e->text);
		row_uint(&r, q->w.calls);
		row_uint(&r, q->w.errors);
		row_uint(&r, q->w.total_us);
		row_uint(&r, q->w.calls ? q->w.total_us / q->w.calls : 0);
		row_uint(&r, q->p50);
		row_uint(&r, q->p95);
		row_uint(&r, q->p99);
		row_uint(&r, q->max);
		row_end(&r);
	}
	free(qr.rows);
	result_end(&r);
}

static void slow_row(const struct slow_entry *e, void *arg)
{
	struct result *r = arg;
	row_time(r, e->wall_usec);
	row_text(r, e->database);
	row_text(r, e->user);
	row_text(r, e->client_addr);
	row_uint(r, e->duration_us);
	row_uint(r, e->wait_us);
	row_printf(r, "%.1000s", e->query);
	row_end(r);
}

static void show_slow(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "time", OID_TEXT },        { "database", OID_TEXT }, { "user", OID_TEXT }, { "client_addr", OID_TEXT },
		{ "duration_us", OID_INT8 }, { "wait_us", OID_INT8 },  { "query", OID_TEXT },
	};
	struct result r;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	slowlog_for_each(slow_row, &r);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * Dispatch
 */

typedef void (*admin_fn)(struct client *c, const char *arg);

struct show_entry {
	const char *subject;
	admin_fn fn;
	bool takes_arg; /* a third word: SHOW LATENCY 5m */
};

/* SHOW PREPARED_STATEMENTS: the shared statements, their reuse and evictions */
static void prepared_row(const struct ps_info *info, void *arg)
{
	struct result *r = arg;
	row_uint(r, info->id);
	row_printf(r, "PGPULSE_%llu", (unsigned long long)info->id);
	row_text(r, info->query);
	row_int(r, info->param_types);
	row_uint(r, info->clients);
	row_uint(r, info->servers);
	row_uint(r, info->client_parses);
	row_uint(r, info->server_parses);
	row_uint(r, info->binds);
	row_uint(r, info->evictions);
	row_end(r);
}

static void show_prepared_statements(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "id", OID_INT8 },           { "server_name", OID_TEXT },   { "query", OID_TEXT },
		{ "param_types", OID_INT4 },  { "clients", OID_INT8 },       { "servers", OID_INT8 },
		{ "client_parses", OID_INT8 }, { "server_parses", OID_INT8 }, { "binds", OID_INT8 },
		{ "evictions", OID_INT8 },
	};
	struct result r;
	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	prepared_each(prepared_row, &r);
	result_end(&r);
}

/* ---- SHOW FAILURES: what went wrong, one row per nonzero counter (doc/admin.md) ---- */

struct failure_rows {
	struct result *r;
	const char *db, *user, *pool;
};

static void failure_row(const struct failure_rows *f, const char *failure, const char *detail, uint64_t count)
{
	if (!count)
		return;
	row_text(f->r, f->db);
	row_text(f->r, f->user);
	row_text(f->r, f->pool);
	row_text(f->r, failure);
	row_text(f->r, detail);
	row_uint(f->r, count);
	row_end(f->r);
}

static void failure_rows_of(const struct failure_rows *f, const struct failure_counts *fc)
{
	failure_row(f, "query_wait_timeout", "", fc->wait_timeouts);
	failure_row(f, "query_timeout", "", fc->query_timeouts);
	failure_row(f, "client_idle_timeout", "", fc->client_idle_timeouts);
	failure_row(f, "idle_transaction_timeout", "", fc->idle_transaction_timeouts);
	failure_row(f, "transaction_timeout", "", fc->transaction_timeouts);
	failure_row(f, "server_connect", "", fc->server_connect_failures);
	failure_row(f, "server_login", "", fc->server_login_failures);
	for (int k = 0; k < ERR_CLASS_COUNT; k++)
		failure_row(f, "server_error", failure_error_class_name(k), fc->server_errors[k]);
	for (int k = 0; k < ERR_CLASS_COUNT; k++)
		failure_row(f, "pgpulse_error", failure_error_class_name(k), fc->pooler_errors[k]);
}

static void show_failures(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "database", OID_TEXT }, { "user", OID_TEXT },   { "pool", OID_TEXT },
		{ "failure", OID_TEXT },  { "detail", OID_TEXT }, { "count", OID_INT8 },
	};
	struct result r;
	struct list *pos;
	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		struct failure_rows f = { &r, p->db->name, p->user->name,
					  p->for_replication ? "replication" : p->for_lookups ? "auth_query" : "" };
		failure_rows_of(&f, &p->stats.fail);
	}
	/* clients that failed before they had a pool, and every failed login: no database or user */
	struct failure_rows f = { &r, "", "", "" };
	failure_rows_of(&f, &worker->unpooled_failures);
	for (int i = 0; i < LF_COUNT; i++)
		failure_row(&f, "client_login", failure_login_reason_name((enum login_failure)i), worker->login_failures[i]);
	result_end(&r);
}

static const struct show_entry show_table[] = {
	{ "latency", show_latency, true },
	{ "efficiency", show_efficiency, true },
	{ "health", show_health, false },
	{ "failures", show_failures, false },
	{ "queries", show_queries, true },
	{ "slow", show_slow, false },
	{ "help", show_help, false },
	{ "version", show_version, false },
	{ "config", show_config, false },
	{ "databases", show_databases, false },
	{ "pools", show_pools, false },
	{ "clients", show_clients, false },
	{ "servers", show_servers, false },
	{ "users", show_users, false },
	{ "stats", show_stats, false },
	{ "stats_totals", show_stats_totals, false },
	{ "stats_averages", show_stats_averages, false },
	{ "totals", show_totals, false },
	{ "lists", show_lists, false },
	{ "mem", show_mem, false },
	{ "state", show_state, false },
	{ "peers", show_peers, false },
	{ "peer_pools", show_peer_pools, false },
	{ "dns_hosts", show_dns_hosts, false },
	{ "prepared_statements", show_prepared_statements, false },
	/* PgBouncer has these; pgpulse not yet */
	{ "fds", cmd_not_yet, false },
	{ "sockets", cmd_not_yet, false },
	{ "active_sockets", cmd_not_yet, false },
	{ "dns_zones", cmd_not_yet, false },
};

enum arg_rule { ARG_NONE, ARG_OPTIONAL, ARG_REQUIRED };

struct command_entry {
	const char *verb;
	admin_fn fn;
	enum arg_rule arg;
};

/* everything but SHOW and SET; all need admin_users */
static const struct command_entry command_table[] = {
	{ "reload", cmd_reload, ARG_NONE },
	{ "shutdown", cmd_shutdown, ARG_OPTIONAL },
	{ "pause", cmd_pause, ARG_OPTIONAL },
	{ "resume", cmd_resume, ARG_OPTIONAL },
	{ "suspend", cmd_suspend, ARG_NONE },
	{ "disable", cmd_disable, ARG_REQUIRED },
	{ "enable", cmd_enable, ARG_REQUIRED },
	{ "reconnect", cmd_reconnect, ARG_OPTIONAL },
	{ "kill", cmd_kill, ARG_OPTIONAL },
	{ "kill_client", cmd_kill_client, ARG_REQUIRED },
	{ "wait_close", cmd_wait_close, ARG_OPTIONAL },
};

static void upper_copy(char *dst, size_t size, const char *src)
{
	size_t k;
	for (k = 0; src[k] && k + 1 < size; k++)
		dst[k] = (char)toupper((unsigned char)src[k]);
	dst[k] = '\0';
}

static void syntax_error(struct client *c, const char *sql)
{
	/* PgBouncer's wording, so that people's searches find the answer */
	admin_error(c, SQLSTATE_SYNTAX, "invalid command '%.200s', use SHOW HELP;", sql);
}

static void run_show(struct client *c, const struct admin_cmd *cmd, const char *sql)
{
	if (!cmd->has_arg) {
		syntax_error(c, sql);
		return;
	}
	for (size_t i = 0; i < sizeof(show_table) / sizeof(show_table[0]); i++) {
		if (strcasecmp(cmd->arg, show_table[i].subject) == 0) {
			if (show_table[i].fn == cmd_not_yet) {
				char name[64];
				upper_copy(name, sizeof(name), show_table[i].subject);
				admin_error(c, SQLSTATE_NOT_YET, "SHOW %s is not supported yet",
					    name);
				return;
			}
			if (cmd->has_arg2 && !show_table[i].takes_arg) {
				syntax_error(c, sql);
				return;
			}
			show_table[i].fn(c, cmd->has_arg2 ? cmd->arg2 : "");
			return;
		}
	}
	int fake = fake_param_index(cmd->arg);
	if (fake >= 0) {
		show_fake_param(c, fake);
		return;
	}
	syntax_error(c, sql);
}

static void run_command(struct client *c, const struct admin_cmd *cmd, const char *sql)
{
	if (cmd->has_arg2) {
		syntax_error(c, sql);
		return;
	}
	for (size_t i = 0; i < sizeof(command_table) / sizeof(command_table[0]); i++) {
		const struct command_entry *e = &command_table[i];
		if (strcasecmp(cmd->verb, e->verb) != 0)
			continue;
		if ((e->arg == ARG_NONE && cmd->has_arg) ||
		    (e->arg == ARG_REQUIRED && !cmd->has_arg)) {
			syntax_error(c, sql);
			return;
		}
		char name[64];
		upper_copy(name, sizeof(name), e->verb);
		if (!c->admin_may_change) {
			log_warning("C-%llu %s/%s %s: admin: %s refused: not in admin_users",
				    (unsigned long long)c->id, c->dbname, c->user, c->addr, name);
			admin_error(c, SQLSTATE_PRIVILEGE,
				    "admin access needed: %s is for admin_users", name);
			return;
		}
		if (e->fn == cmd_not_yet) {
			admin_error(c, SQLSTATE_NOT_YET, "%s is not supported yet", name);
			return;
		}
		e->fn(c, cmd->has_arg ? cmd->arg : "");
		return;
	}
	syntax_error(c, sql);
}

void admin_handle_query(struct client *c, const char *sql)
{
	struct admin_cmd cmd;

	admin_parse(sql, &cmd);
	switch (cmd.kind) {
	case CMD_EMPTY: {
		struct pktbuf *out = stream_out(&c->st);
		proto_put_empty_query(out);
		proto_put_ready(out, 'I');
		return;
	}
	case CMD_BAD:
		syntax_error(c, sql);
		return;
	case CMD_SET:
		cmd_set(c, &cmd);
		return;
	case CMD_WORDS:
		if (strcasecmp(cmd.verb, "show") == 0)
			run_show(c, &cmd, sql);
		else
			run_command(c, &cmd, sql);
		return;
	}
}
