/*
 * server: one connection from pgpulse to PostgreSQL.
 *
 * A server logs in (startup, then whichever password exchange PostgreSQL
 * asks for), records the ParameterStatus values and BackendKeyData it is
 * given, and then alternates between serving a client and running
 * pgpulse's own short queries (connect_query, reset, parameter SETs).
 *
 * While linked, every reply packet is forwarded; only ReadyForQuery and
 * ParameterStatus are read. ReadyForQuery 'I' with no request still due
 * ends the transaction: the packet is forwarded last, and once it has
 * reached the client the server is released to the pool.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth.h"
#include "auth_query.h"
#include "cancel.h"
#include "client.h"
#include "config.h"
#include "dns.h"
#include "failures.h"
#include "host_stats.h"
#include "intern.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "fingerprint.h"
#include "hosts.h"
#include "proto.h"
#include "settings.h"
#include "sockopt.h"
#include "slowlog.h"
#include "telemetry.h"
#include "tls.h"
#include "worker.h"

static enum pkt_action server_on_packet(struct stream *st, struct pkt *pkt);
static void server_on_end(struct stream *st, enum stream_end why);
static void server_on_flushed(struct stream *st);
static void server_on_connected(struct stream *st, int err);
static void server_on_tls_answer(struct stream *st, uint8_t answer);
static void server_on_tls_done(struct stream *st, const char *error);

static const struct stream_ops server_ops = {
	.on_packet = server_on_packet,
	.on_end = server_on_end,
	.on_flushed = server_on_flushed,
	.on_connected = server_on_connected,
	.on_tls_answer = server_on_tls_answer,
	.on_tls_done = server_on_tls_done,
};

const char *server_state_name(enum server_state s)
{
	switch (s) {
	case SV_NEW: return "new";
	case SV_CANCELING: return "canceling";
	case SV_LOGIN: return "login";
	case SV_IDLE: return "idle";
	case SV_ACTIVE: return "active";
	case SV_USED: return "used";
	case SV_CLOSED: return "closed";
	}
	return "unknown";
}

/* "S-12: appdb/app@127.0.0.1:5432 ...": PgBouncer's shape (log.h) */
#define SV_LOG(s, lvl, ...) \
	log_conn((lvl), 'S', (s)->id, (s)->pool->db->name, (s)->pool->user->name, (s)->addr, __VA_ARGS__)

/* ---- address ---- */

/*
 * Where a new connection goes. A database has one host or a list of them
 * (host=a,b); load_balance_hosts picks the entry: round-robin takes the
 * next one each time, disable stays on one until a connection to it fails
 * (see note_host_failed). A unix-socket directory or a literal address is
 * used as it is; a name goes through the dns module, which may have to ask
 * first: then no connection is made now, and on_host_resolved() brings the
 * pool back once the answer is in.
 */
enum addr_result { ADDR_OK, ADDR_PENDING, ADDR_FAILED };

static bool is_unix_dir(const char *host)
{
	return !host || !*host || host[0] == '/';
}

/*
 * How long a host's role, read at a login or by a probe, is taken as
 * known: a host known not to suit an entry is tried again (its login
 * tells) after this, not before, so a wrong role costs one connection
 * per period rather than a reconnect loop. Two periods: a host with
 * servers is probed every period, give or take a janitor tick and a busy
 * server, and its reading must not go stale between two probes.
 */
static int64_t role_stale_after(void)
{
	const struct cfg *cfg = worker->cfg;
	return cfg->replica_check_period > 0 ? 2 * cfg->replica_check_period : cfg->server_login_retry;
}

/*
 * Host entry of the next connection (the database's default unix socket
 * when it has no host list), or -1 when no host may be tried now: none
 * suits its target_session_attrs and none of unknown role is left to try
 * (the clients wait). Among the hosts that may be tried, hosts_pick goes
 * in order from the cursor; round-robin moves the cursor past the one
 * taken, disable keeps it there.
 */
static int pick_host(struct pool_db *db)
{
	if (db->host_n <= 1 && db->tsa == TSA_ANY && !(db->host_n == 1 && db->host_of[0]->lagging))
		return 0;
	int i = hosts_pick(db->host_of, db->host_n, (enum target_session_attrs)db->tsa, db->host_cursor, now_usec(),
			   role_stale_after());
	if (i < 0)
		return -1;
	db->host_cursor = db->load_balance_hosts == LB_ROUND_ROBIN ? (i + 1) % db->host_n : i;
	return i;
}

static struct host *host_of_entry(const struct pool_db *db, int hi)
{
	return hi >= 0 && hi < db->host_n ? db->host_of[hi] : NULL;
}

/* a connection to the host failed (not a refused login): it is down until one logs in */
static void note_host_down(const struct pool_db *db, int hi, const char *why)
{
	struct host *h = host_of_entry(db, hi);
	if (h)
		hosts_note_down(h, why, now_usec());
}

/* load_balance_hosts = disable: a failed connection moves the database on to its next host */
static void note_host_failed(struct pool_db *db, int host_index)
{
	if (db->load_balance_hosts == LB_DISABLE && db->hosts.count > 1 && db->host_cursor == host_index)
		db->host_cursor = (host_index + 1) % db->hosts.count;
}

static bool unix_socket_address(const char *dir, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	if (!dir || !*dir)
		dir = worker->cfg->unix_socket_dir && *worker->cfg->unix_socket_dir ? worker->cfg->unix_socket_dir : "/tmp";
	struct sockaddr_un *un = (struct sockaddr_un *)ss;
	un->sun_family = AF_UNIX;
	int n = snprintf(un->sun_path, sizeof(un->sun_path), "%s/.s.PGSQL.%d", dir, port);
	if (n < 0 || (size_t)n >= sizeof(un->sun_path))
		return false;
	*len = sizeof(*un);
	return true;
}

static bool literal_address(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return true;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return true;
	}
	return false;
}

bool server_address_without_lookup(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (is_unix_dir(host))
		return unix_socket_address(host, port, ss, len);
	return literal_address(host, port, ss, len);
}

/* a name for the resolver: not a unix-socket directory, not an IP address */
static bool is_host_name(const char *host)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	return !is_unix_dir(host) && !literal_address(host, 0, &ss, &len);
}

static void on_host_resolved(void *arg, const char *host, bool ok, const char *error);

/* the address of host entry hi of the pool's database; msg says why on ADDR_FAILED */
static enum addr_result server_address(struct pool *p, int hi, struct sockaddr_storage *ss, socklen_t *len,
				       char *msg, size_t msglen)
{
	const struct pool_db *db = p->db;
	const char *host = db->hosts.count ? db->hosts.name[hi] : NULL;
	int port = db->hosts.count ? db->hosts.port[hi] : db->port;
	memset(ss, 0, sizeof(*ss));
	if (is_unix_dir(host)) {
		if (unix_socket_address(host, port, ss, len))
			return ADDR_OK;
		snprintf(msg, msglen, "unix socket path for server \"%s\" is too long", host ? host : "(default)");
		return ADDR_FAILED;
	}
	if (literal_address(host, port, ss, len))
		return ADDR_OK;
	char why[128];
	switch (dns_pick_address(worker->dns, host, port, ss, len, why, sizeof(why), on_host_resolved, p)) {
	case DNS_OK:
		return ADDR_OK;
	case DNS_PENDING:
		return ADDR_PENDING;
	case DNS_FAILED:
		break;
	}
	snprintf(msg, msglen, "could not resolve host \"%s\": %s", host, why);
	return ADDR_FAILED;
}

static int host_index_of(const struct pool_db *db, const char *host)
{
	for (int i = 0; i < db->hosts.count; i++)
		if (strcasecmp(db->hosts.name[i], host) == 0)
			return i;
	return -1;
}

/* a lookup this pool waited for ended: connect now, or tell the waiting clients */
static void on_host_resolved(void *arg, const char *host, bool ok, const char *error)
{
	struct pool *p = arg;
	if (ok) {
		pool_launch_if_needed(p);
		pool_fill_min(p);
		return;
	}
	int hi = host_index_of(p->db, host);
	if (hi < 0)
		return; /* the database moved to other hosts (RELOAD) meanwhile */
	char msg[300];
	snprintf(msg, sizeof(msg), "could not resolve host \"%s\": %s", host, error);
	note_host_failed(p->db, hi);
	note_host_down(p->db, hi, msg);
	p->stats.fail.server_connect_failures++;
	pool_server_failed(p, "08001", msg);
}

void server_refresh_host_names(void)
{
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		if (p->server_count == 0)
			continue;
		for (int i = 0; i < p->db->hosts.count; i++)
			if (is_host_name(p->db->hosts.name[i]))
				dns_refresh(worker->dns, p->db->hosts.name[i]);
	}
}

void server_host_moved(const char *host)
{
	struct list *pos;
	list_for_each(pos, &worker->databases)
	{
		struct pool_db *db = container_of(pos, struct pool_db, node);
		if (!db->is_admin && host_index_of(db, host) >= 0)
			db->generation++; /* as a RELOAD that changed host= does: see server_expired() */
	}
}

/* ---- the lifecycle: one place changes a server's state, list and counts ---- */

#define SV_BIT(st) (1u << (st))
#define SV_SERVING (SV_BIT(SV_IDLE) | SV_BIT(SV_ACTIVE) | SV_BIT(SV_USED) | SV_BIT(SV_CANCELING))

/* for each state, the states a server may enter it from (enum server_state) */
static const unsigned allowed_from[] = {
	[SV_NEW] = 0,
	[SV_LOGIN] = SV_BIT(SV_NEW),
	[SV_IDLE] = SV_BIT(SV_LOGIN) | SV_SERVING,
	[SV_ACTIVE] = SV_BIT(SV_LOGIN) | SV_SERVING,
	[SV_USED] = SV_BIT(SV_LOGIN) | SV_SERVING,
	[SV_CANCELING] = SV_BIT(SV_ACTIVE) | SV_BIT(SV_USED), /* released with a cancel on its way */
	[SV_CLOSED] = SV_BIT(SV_LOGIN) | SV_SERVING,
};

static struct list *list_of_state(struct server *s, enum server_state st)
{
	struct pool *p = s->pool;
	switch (st) {
	case SV_LOGIN: return &p->new_servers;
	case SV_IDLE: return &p->idle_servers;
	case SV_ACTIVE: return &p->active_servers;
	case SV_USED: return &p->used_servers;
	case SV_CANCELING: return &p->canceling_servers;
	case SV_CLOSED: return &worker->dead_servers;
	case SV_NEW: break;
	}
	return NULL;
}

/*
 * Counts: a server counts in its pool and the worker from NEW until
 * CLOSED; it counts as open (telemetry) from when it leaves LOGIN.
 */
void server_set_state(struct server *s, enum server_state to)
{
	enum server_state from = s->state;
	struct pool *p = s->pool;
	if (from == to)
		return;
	if (!(allowed_from[to] & SV_BIT(from))) {
		SV_LOG(s, LOG_LVL_ERROR, "illegal state change %s -> %s", server_state_name(from),
		       server_state_name(to));
		abort();
	}
	list_remove(&s->node);
	if (from == SV_NEW) {
		if (s->host)
			s->host->servers++;
		p->server_count++;
		worker->server_count++;
		telemetry_level(p->tm, &p->tm->eff.servers, +1);
		eff_note_opened(&p->tm->eff);
	} else if (from == SV_LOGIN) {
		telemetry_level(p->tm, &p->tm->eff.open, +1);
	}
	if (to == SV_CLOSED) {
		if (s->host)
			s->host->servers--;
		p->server_count--;
		worker->server_count--;
		telemetry_level(p->tm, &p->tm->eff.servers, -1);
		if (from != SV_LOGIN)
			telemetry_level(p->tm, &p->tm->eff.open, -1);
		eff_note_closed(&p->tm->eff);
	}
	s->state = to;
	list_append(list_of_state(s, to), &s->node);
}

/* ---- connect ---- */

/*
 * A host name with several addresses is one server to the operator: when
 * the TCP connect to one of them fails (a dead replica, IPv6 without a
 * route), the next one is tried before the pool hears of a failure, as
 * libpq does. spare_tries: how many more addresses may be tried after this
 * one; -1 for a first attempt (the chosen name's address count - 1).
 */
static struct server *connect_next(struct pool *p, int spare_tries, struct client *owner, int want_host);

/*
 * A connection opened for one replication client failed: that client is
 * told, and nobody else (the pool's other clients have their own).
 */
static void report_failure(struct pool *p, struct client *owner, const char *sqlstate, const char *msg)
{
	if (owner)
		client_fatal(owner, sqlstate, "%s", msg);
	else
		pool_server_failed(p, sqlstate, msg);
}

/*
 * An entry with a target_session_attrs goes on to a next host that may be
 * tried (not known to be down), as libpq does, before its clients hear of
 * a failure. A plain host list (any) fails the attempt as PgBouncer does
 * and moves on at the next one (load_balance_hosts).
 */
static bool connect_another_host(struct pool *p)
{
	struct pool_db *db = p->db;
	if (db->tsa == TSA_ANY || db->host_n < 2 || worker->shutdown != SHUTDOWN_NONE)
		return false;
	int hi = hosts_pick(db->host_of, db->host_n, (enum target_session_attrs)db->tsa, db->host_cursor,
			    now_usec(), role_stale_after());
	if (hi < 0 || db->host_of[hi]->down)
		return false;
	log_info("%s/%s: trying host %s:%d next", db->name, p->user->name, db->host_of[hi]->name,
		 db->host_of[hi]->port);
	connect_next(p, -1, NULL, hi); /* it reports its own failure, or waits for a lookup */
	return true;
}

static void connect_failed(struct server *s, const char *msg)
{
	struct pool *p = s->pool;
	struct client *owner = s->owner;
	int spare = s->spare_tries;
	p->stats.fail.server_connect_failures++; /* every address tried counts */
	if (s->host) /* the host it went to: a RELOAD may have reordered the entry's list since */
		hosts_note_down(s->host, msg, now_usec());
	server_close(s, msg);
	if (spare > 0 && worker->shutdown == SHUTDOWN_NONE) {
		log_info("%s/%s: %s; trying the next address", p->db->name, p->user->name, msg);
		connect_next(p, spare - 1, owner, -1); /* it reports its own failure, or waits for a lookup */
		return;
	}
	if (!owner && connect_another_host(p))
		return;
	report_failure(p, owner, "08006", msg);
}

static struct server *connect_next(struct pool *p, int spare_tries, struct client *owner, int want_host)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char desc[64], msg[300];
	int hi = want_host >= 0 ? want_host : pick_host(p->db);
	if (hi < 0)
		return NULL; /* no host suits the entry now: the clients wait (query_wait_timeout) */
	switch (server_address(p, hi, &ss, &len, msg, sizeof(msg))) {
	case ADDR_OK:
		break;
	case ADDR_PENDING:
		return NULL; /* on_host_resolved() calls the pool back */
	case ADDR_FAILED:
		note_host_failed(p->db, hi);
		note_host_down(p->db, hi, msg);
		p->stats.fail.server_connect_failures++;
		report_failure(p, owner, "08001", msg);
		return NULL;
	}
	if (spare_tries < 0) {
		const char *host = p->db->hosts.count ? p->db->hosts.name[hi] : NULL;
		spare_tries = is_host_name(host) ? dns_address_count(worker->dns, host) - 1 : 0;
	}
	if (ss.ss_family == AF_UNIX)
		snprintf(desc, sizeof(desc), "unix:%d", p->db->hosts.count ? p->db->hosts.port[hi] : p->db->port);
	else
		addr_to_str(&ss, desc, sizeof(desc));
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		p->stats.fail.server_connect_failures++;
		report_failure(p, owner, "08001", "could not create a socket for the server connection");
		return NULL;
	}
	if (ss.ss_family != AF_UNIX)
		sockopt_tune_connection(fd, worker->cfg);
	struct server *s = xcalloc(1, sizeof(*s));
	s->id = ++worker->next_conn_id;
	s->pool = p;
	s->owner = owner;
	s->replication = owner ? owner->replication : 0;
	s->xact_status = 'I';
	s->generation = p->db->generation;
	s->host_index = hi;
	s->host = host_of_entry(p->db, hi);
	if (s->host)
		hosts_pin(s->host);
	s->spare_tries = spare_tries;
	s->peer_addr = ss;
	s->peer_addr_len = len;
	str_copy(s->addr, desc, sizeof(s->addr));
	list_init(&s->node);
	stream_init(&s->st, &worker->streams, fd, &server_ops, s);
	s->connect_time = wall_usec();
	s->connect_start = now_usec();
	server_set_state(s, SV_LOGIN);
	SV_LOG(s, LOG_LVL_DEBUG, "connecting");
	if (!stream_connect(&s->st, &ss, len)) {
		snprintf(msg, sizeof(msg), "could not connect to server %s: %s", desc, strerror(errno));
		connect_failed(s, msg);
		return NULL;
	}
	return s;
}

struct server *server_connect(struct pool *p)
{
	return connect_next(p, -1, NULL, -1);
}

struct server *server_connect_to_host(struct pool *p, int host_index)
{
	return connect_next(p, -1, NULL, host_index);
}

struct server *server_connect_for(struct pool *p, struct client *c)
{
	return connect_next(p, -1, c, -1);
}

/*
 * A walsender takes no SET (a physical one no SQL at all): the owner's
 * replication= and startup values go in the startup packet, and the
 * database's own values only where the client sent none.
 */
/* one "-c name=value" of an options string, spaces and backslashes escaped as PostgreSQL splits it */
static bool put_option_switch(const char *name, const char *value, void *arg)
{
	struct pktbuf *opts = arg;
	if (opts->len > 0)
		pkt_put_u8(opts, ' ');
	pkt_put_bytes(opts, "-c ", 3);
	for (const char *p = name; *p; p++)
		pkt_put_u8(opts, (uint8_t)*p); /* folded: [a-z0-9_.$-] */
	pkt_put_u8(opts, '=');
	for (const char *p = value; *p; p++) {
		if (*p == ' ' || *p == '\\' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
			pkt_put_u8(opts, '\\');
		pkt_put_u8(opts, (uint8_t)*p);
	}
	return true;
}

/*
 * The client's settings, as the walsender's `options`: never as startup
 * keys of their own, where a setting named user, database or replication
 * would be read as the login itself (PostgreSQL takes the last pair of a
 * name). Inside options PostgreSQL reads each as a setting, and refuses
 * those names as it would from the client directly.
 */
static void put_settings_as_options(struct pktbuf *out, const struct client *c)
{
	if (!c->settings)
		return;
	struct pktbuf opts;
	pktbuf_init(&opts);
	settings_each(c->settings, put_option_switch, &opts);
	pkt_put_u8(&opts, '\0');
	pkt_put_str(out, "options");
	pkt_put_str(out, (const char *)opts.data);
	pktbuf_free(&opts);
}

static void put_owner_startup(struct pktbuf *out, const struct client *c)
{
	pkt_put_str(out, "replication");
	pkt_put_str(out, c->replication == REPL_LOGICAL ? "database" : "true");
	for (int tp = 0; tp < TP_COUNT; tp++) {
		if (c->params[tp]) {
			pkt_put_str(out, pool_tracked_param_name(tp));
			pkt_put_str(out, c->params[tp]);
		}
	}
	put_settings_as_options(out, c); /* its other settings and options' -c too */
}

static bool owner_sent(const struct client *c, const char *name)
{
	int tp = pool_tracked_param(name);
	return c && tp >= 0 && c->params[tp];
}

static void send_startup(struct server *s)
{
	struct pool_db *db = s->pool->db;
	struct pktbuf *out = stream_out(&s->st);
	pkt_begin(out, 0);
	pkt_put_u32(out, PROTO_V3);
	pkt_put_str(out, "user");
	pkt_put_str(out, s->pool->user->name);
	pkt_put_str(out, "database");
	pkt_put_str(out, db->dbname);
	if (s->owner)
		put_owner_startup(out, s->owner);
	for (int i = 0; i < db->startup.count; i++) {
		if (owner_sent(s->owner, db->startup.names[i]))
			continue;
		pkt_put_str(out, db->startup.names[i]);
		pkt_put_str(out, db->startup.values[i]);
	}
	pkt_put_u8(out, 0);
	pkt_end(out);
	stream_send_out(&s->st);
}

static void begin_startup(struct server *s)
{
	send_startup(s);
	if (s->state != SV_CLOSED)
		stream_start_reading(&s->st);
}

static void login_failed(struct server *s, const char *sqlstate, const char *msg);

const char *server_host(const struct server *s)
{
	const struct pool_db *db = s->pool->db;
	if (db->hosts.count == 0)
		return NULL; /* the default unix socket */
	return db->hosts.name[s->host_index < db->hosts.count ? s->host_index : 0];
}

int server_port(const struct server *s)
{
	const struct pool_db *db = s->pool->db;
	if (db->hosts.count == 0)
		return db->port;
	return db->hosts.port[s->host_index < db->hosts.count ? s->host_index : 0];
}

/*
 * server_tls_sslmode: prefer and stricter ask for TLS over TCP; allow and
 * disable go plaintext (allow would need a second connection to retry
 * with TLS, which a pooler gains nothing from). Unix sockets never carry
 * TLS, as in libpq.
 */
static bool server_wants_tls(const struct server *s)
{
	const char *host = server_host(s);
	return tls_server_mode() >= TLS_PREFER && host && host[0] && host[0] != '/';
}

static void server_on_connected(struct stream *st, int err)
{
	struct server *s = st->owner;
	if (err) {
		char msg[300];
		snprintf(msg, sizeof(msg), "could not connect to server %s: %s", s->addr, strerror(err));
		connect_failed(s, msg);
		return;
	}
	if (server_wants_tls(s))
		stream_request_tls(st);
	else
		begin_startup(s);
}

static void server_on_tls_answer(struct stream *st, uint8_t answer)
{
	struct server *s = st->owner;
	if (answer == 'S') {
		SSL *ssl = tls_connect_session(st->fd, server_host(s));
		if (!ssl) {
			login_failed(s, "08006", "could not start a TLS session with the server");
			return;
		}
		stream_start_tls(st, ssl);
		return;
	}
	if (answer == 'N' && tls_server_mode() < TLS_REQUIRE) {
		SV_LOG(s, LOG_LVL_DEBUG, "server offers no TLS: going on in plaintext");
		begin_startup(s);
		return;
	}
	login_failed(s, "08006",
		     answer == 'N' ? "server does not support TLS, and server_tls_sslmode requires it"
				   : "server gave an invalid answer to the TLS request");
}

static void server_on_tls_done(struct stream *st, const char *error)
{
	struct server *s = st->owner;
	if (error) {
		char msg[400];
		snprintf(msg, sizeof(msg), "TLS handshake with server %s failed: %s", s->addr, error);
		login_failed(s, "08006", msg);
		return;
	}
	SV_LOG(s, LOG_LVL_DEBUG, "TLS handshake done");
	begin_startup(s);
}

/* ---- login ---- */

/* the password (or secret) pgpulse logs in with */
static const char *login_secret(const struct server *s)
{
	const struct pool_db *db = s->pool->db;
	const struct pool_user *u = s->pool->user;
	/* a database's password= is its forced user's; an auth_user pool on it logs in with its own */
	if (db->password && (!db->forced_user || strcmp(db->forced_user, u->name) == 0))
		return db->password;
	const char *secret = worker->auth ? auth_file_lookup(worker->auth, u->name) : NULL;
	return secret ? secret : u->looked_up_secret;
}

static void send_password_message(struct server *s, const void *data, size_t len)
{
	struct pktbuf *out = stream_out(&s->st);
	pkt_begin(out, 'p');
	pkt_put_bytes(out, data, len);
	pkt_end(out);
	stream_send_out(&s->st);
}

static void login_failed(struct server *s, const char *sqlstate, const char *msg)
{
	struct pool *p = s->pool;
	struct client *owner = s->owner;
	char text[512];
	snprintf(text, sizeof(text), "%s", msg);
	p->stats.fail.server_login_failures++;
	/*
	 * It could not be reached or take a connection (08, 57P0x: down,
	 * starting, shutting down); any other refusal (pg_hba.conf, a password)
	 * is the host's answer to this pool's user, which it will give again.
	 */
	if (s->host && (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57P0", 4) == 0))
		hosts_note_down(s->host, text, now_usec());
	else if (s->host)
		hosts_note_refused(s->host, text, now_usec());
	server_close(s, text);
	report_failure(p, owner, sqlstate, text);
}

static bool answer_cleartext(struct server *s)
{
	const char *secret = login_secret(s);
	if (!secret || auth_secret_kind(secret) != SECRET_PLAIN) {
		login_failed(s, "28P01", "server asks for a cleartext password, and no plaintext password is configured");
		return false;
	}
	send_password_message(s, secret, strlen(secret) + 1);
	return true;
}

static bool answer_md5(struct server *s, const uint8_t *salt)
{
	const char *secret = login_secret(s);
	char md5[36], resp[36];
	if (!secret || auth_secret_kind(secret) == SECRET_SCRAM) {
		login_failed(s, "28P01", "server asks for an md5 password, and no plaintext or md5 password is configured");
		return false;
	}
	if (auth_secret_kind(secret) == SECRET_MD5)
		str_copy(md5, secret, sizeof(md5));
	else
		auth_md5_secret(secret, s->pool->user->name, md5);
	auth_md5_response(md5, salt, resp);
	send_password_message(s, resp, strlen(resp) + 1);
	return true;
}

static bool answer_sasl_start(struct server *s, const struct pkt *pkt)
{
	bool offered = false;
	struct pkt_reader r;
	pkt_reader_init(&r, pkt->body + 4, pkt->body_len - 4);
	for (const char *m; (m = pkt_get_str(&r)) && *m;)
		if (strcmp(m, "SCRAM-SHA-256") == 0)
			offered = true;
	if (!offered) {
		login_failed(s, "28000", "server offers no SASL mechanism pgpulse supports");
		return false;
	}
	const char *secret = login_secret(s);
	struct pool_user *u = s->pool->user;
	char first[256];
	s->scram = xcalloc(1, sizeof(*s->scram));
	bool ok;
	if (secret && auth_secret_kind(secret) == SECRET_PLAIN)
		ok = scram_client_first(s->scram, secret, &u->scram_cache, first, sizeof(first));
	else if (u->have_scram_keys)
		ok = scram_client_first_keys(s->scram, u->scram_client_key, u->scram_server_key, first, sizeof(first));
	else {
		login_failed(s, "28P01",
			     "server asks for SCRAM, and no plaintext password (or SCRAM keys from a client login) is known");
		return false;
	}
	if (!ok) {
		login_failed(s, "28000", "could not start SCRAM authentication");
		return false;
	}
	struct pktbuf *out = stream_out(&s->st);
	pkt_begin(out, 'p');
	pkt_put_str(out, "SCRAM-SHA-256");
	pkt_put_u32(out, (uint32_t)strlen(first));
	pkt_put_bytes(out, first, strlen(first));
	pkt_end(out);
	stream_send_out(&s->st);
	return true;
}

static bool answer_sasl_continue(struct server *s, const struct pkt *pkt)
{
	char final[512], err[256];
	if (!s->scram || !scram_client_final(s->scram, (const char *)pkt->body + 4, pkt->body_len - 4, final,
					       sizeof(final), err, sizeof(err))) {
		char msg[300];
		snprintf(msg, sizeof(msg), "SCRAM exchange with server failed: %s", s->scram ? err : "out of order");
		login_failed(s, "28000", msg);
		return false;
	}
	send_password_message(s, final, strlen(final));
	return true;
}

static bool check_sasl_final(struct server *s, const struct pkt *pkt)
{
	char err[256];
	if (!s->scram || !scram_client_verify(s->scram, (const char *)pkt->body + 4, pkt->body_len - 4, err,
					       sizeof(err))) {
		char msg[300];
		snprintf(msg, sizeof(msg), "server's SCRAM signature is wrong: %s", s->scram ? err : "out of order");
		login_failed(s, "28000", msg);
		return false;
	}
	return true;
}

static bool handle_auth_request(struct server *s, const struct pkt *pkt)
{
	if (pkt->body_len < 4) {
		login_failed(s, "08P01", "malformed authentication request from server");
		return false;
	}
	uint32_t code = proto_read_u32(pkt->body);
	switch (code) {
	case AUTH_REQ_OK:
		return true;
	case AUTH_REQ_CLEARTEXT:
		return answer_cleartext(s);
	case AUTH_REQ_MD5:
		if (pkt->body_len < 8) {
			login_failed(s, "08P01", "malformed md5 request from server");
			return false;
		}
		return answer_md5(s, pkt->body + 4);
	case AUTH_REQ_SASL:
		return answer_sasl_start(s, pkt);
	case AUTH_REQ_SASL_CONTINUE:
		return answer_sasl_continue(s, pkt);
	case AUTH_REQ_SASL_FINAL:
		return check_sasl_final(s, pkt);
	default: {
		char msg[128];
		snprintf(msg, sizeof(msg), "server asks for an authentication method pgpulse does not support (%u)", code);
		login_failed(s, "28000", msg);
		return false;
	}
	}
}

/* record a ParameterStatus; the linked client (if any) learns it too */
/*
 * track_extra_parameters: a value PostgreSQL reports while a client is
 * linked (the client SET it) joins the client's settings, so the next
 * server it gets is given the same value; this server has it already.
 * Only reported parameters can be followed (GUC_REPORT ones, and those an
 * extension reports), as in PgBouncer.
 */
static void follow_client_setting(struct server *s, const char *name, const char *value)
{
	struct client *c = s->client;
	const char *set = settings_with(c->settings, name, value);
	if (!set)
		return;
	intern_set(&c->settings, set);
	intern_set(&s->settings, set);
	intern_drop(set);
}

/*
 * in_hot_standby (PostgreSQL 14+) says the host's role at every login and
 * again when it changes (a promotion); default_transaction_read_only is
 * taken at login only, before any client could SET it on the session.
 */
static void note_host_role_parameter(struct server *s, const char *name, const char *value)
{
	if (!s->host)
		return;
	if (strcmp(name, "in_hot_standby") == 0) {
		s->role_reported = true;
		hosts_note_role(s->host, strcmp(value, "on") == 0 ? HOST_ROLE_STANDBY : HOST_ROLE_PRIMARY, now_usec());
	}
	/*
	 * default_transaction_read_only is not read here: a session reports
	 * its own value, which ALTER ROLE or ALTER DATABASE may set for one
	 * user alone. The probe reads the server's own (hosts.h).
	 */
}

static void note_parameter(struct server *s, const struct pkt *pkt)
{
	struct pkt_reader r;
	pkt_reader_init(&r, pkt->body, pkt->body_len);
	const char *name = pkt_get_str(&r);
	const char *value = pkt_get_str(&r);
	if (!name || !value)
		return;
	note_host_role_parameter(s, name, value);
	/* every value PostgreSQL reported, kept current: a hello may have to repeat one (settings) */
	if (!s->all_params)
		s->all_params = xcalloc(1, sizeof(*s->all_params));
	param_list_set(s->all_params, name, value);
	int tp = pool_tracked_param(name);
	if (tp < 0) {
		if (s->client && s->job == JOB_NONE && cfg_list_contains_name(worker->cfg->track_extra_parameters, name))
			follow_client_setting(s, name, value);
		return;
	}
	intern_set(&s->params[tp], value);
	if (!s->client)
		return;
	if (s->job == JOB_SET_PARAMS) {
		/* what PostgreSQL made of the client's value; the client takes it when the SETs are done */
		pool_learn_alias(s->pool, tp, s->client->params[tp], s->params[tp]);
		return;
	}
	intern_set(&s->client->params[tp], s->params[tp]);
}

/*
 * The client's SETs went through: from now on its values are the server's
 * (UTF8 where it sent utf8), so the next server that already has them
 * needs no SET, and its next hello says what PostgreSQL would. A value
 * PostgreSQL did not report again was already in that form.
 */
static void adopt_applied_values(struct server *s, struct client *c)
{
	for (int tp = 0; tp < TP_COUNT; tp++) {
		const char *sent = c->params[tp], *applied = s->params[tp];
		if (!sent || !applied || sent == applied)
			continue;
		pool_learn_alias(s->pool, tp, sent, applied);
		intern_set(&c->params[tp], applied);
	}
}

/* PgBouncer's line: "new connection to server (from <pgpulse's address:port>)" */
static void log_new_connection(const struct server *s)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	char from[64] = "unix";
	if (s->peer_addr.ss_family != AF_UNIX && getsockname(s->st.fd, (struct sockaddr *)&local, &len) == 0)
		addr_to_str(&local, from, sizeof(from));
	SV_LOG(s, worker->cfg->log_connections ? LOG_LVL_INFO : LOG_LVL_DEBUG, "new connection to server (from %s)",
	       from);
}

/* the entry needs to know the role of the host its servers go to */
static bool entry_needs_role(const struct pool_db *db)
{
	return db->tsa != TSA_ANY || db->host_n > 1;
}

/*
 * prefer-standby, as libpq: a primary is the fallback only once no host of
 * the entry may still be a standby that fits (one that is, or one no login
 * has reached yet, and that answers).
 */
static bool standby_may_exist(const struct pool_db *db)
{
	int64_t now = now_usec();
	for (int i = 0; i < db->host_n; i++) {
		const struct host *h = db->host_of[i];
		if (h->down || h->lagging || hosts_refused_lately(h, now, role_stale_after()))
			continue;
		if (h->role == HOST_ROLE_UNKNOWN || (h->role == HOST_ROLE_STANDBY && hosts_fits(h, TSA_PREFER_STANDBY)))
			return true;
	}
	return false;
}

/*
 * The login's host does not fit the entry (a standby for read-write, a
 * primary for standby): the connection closes at once, as libpq moves on
 * to the next host, and is no failure of the host. A lagging host is not
 * of the wrong role: a connection opened there serves the probe.
 */
static bool logged_in_to_wrong_role(const struct server *s)
{
	const struct host *h = s->host;
	if (!h || h->role == HOST_ROLE_UNKNOWN || h->lagging)
		return false;
	if (!hosts_fits(h, s->pool->db->tsa))
		return true;
	return h->role == HOST_ROLE_PRIMARY && s->pool->db->tsa == TSA_PREFER_STANDBY && standby_may_exist(s->pool->db);
}

static void login_continue(struct server *s)
{
	struct pool *p = s->pool;
	if (logged_in_to_wrong_role(s)) {
		char why[160];
		snprintf(why, sizeof(why), "host's role (%s%s) does not fit target_session_attrs=%s",
			 hosts_role_name(s->host->role), s->host->read_only ? ", read-only" : "",
			 hosts_tsa_name((enum target_session_attrs)p->db->tsa));
		server_close(s, why);
		pool_launch_if_needed(p); /* the next host, if one may be tried */
		return;
	}
	const char *cq = s->pool->db->connect_query;
	if (cq && *cq && !s->pool->for_replication) { /* a physical walsender runs no SQL */
		server_run_job(s, JOB_CONNECT_QUERY, cq);
		return;
	}
	pool_server_logged_in(s);
	if (s->state != SV_CLOSED)
		pool_server_ready(s);
}

static void login_done(struct server *s)
{
	s->ready = true;
	if (s->scram) {
		scram_client_reset(s->scram);
		free(s->scram);
		s->scram = NULL;
	}
	log_new_connection(s);
	if (s->host)
		hosts_note_up(s->host);
	if (!s->role_reported && s->host && entry_needs_role(s->pool->db) && !s->pool->for_replication) {
		/* PostgreSQL < 14 does not say: asked before the server serves anyone */
		server_run_job(s, JOB_PROBE, SERVER_PROBE_SQL);
		return;
	}
	login_continue(s);
}

static enum pkt_action handle_login_packet(struct server *s, struct pkt *pkt)
{
	if (!pkt->complete)
		return PKT_NEED_FULL;
	switch (pkt->type) {
	case 'R':
		handle_auth_request(s, pkt);
		break;
	case 'S':
		note_parameter(s, pkt);
		break;
	case 'K':
		if (pkt->body_len >= 8) {
			s->backend_pid = proto_read_u32(pkt->body);
			s->backend_key = proto_read_u32(pkt->body + 4);
		}
		break;
	case 'E': {
		const char *code = proto_error_field(pkt->body, pkt->body_len, 'C');
		const char *msg = proto_error_field(pkt->body, pkt->body_len, 'M');
		login_failed(s, code ? code : "08006", msg ? msg : "server refused the login");
		break;
	}
	case 'N':
	case 'v': /* NegotiateProtocolVersion: we asked for nothing optional */
		break;
	case 'Z':
		login_done(s);
		break;
	default:
		login_failed(s, "08P01", "unexpected message from server during login");
		break;
	}
	return s->state == SV_CLOSED ? PKT_GONE : PKT_CONSUMED;
}

/* ---- pgpulse's own queries ---- */

void server_run_job(struct server *s, enum server_job job, const char *sql)
{
	if (job == JOB_RESET && s->cancels_in_flight > 0) {
		/* the cancel could land on the reset query: a new connection is cheaper than the doubt */
		server_close(s, "released with a cancel on its way: closed rather than reset");
		return;
	}
	if (job == JOB_RESET) {
		prepared_server_reset(s, sql);
		/*
		 * Whatever the reset query is (DISCARD ALL, a function, a
		 * comment), it may have put the settings back or not: the next
		 * client's sync RESETs and sets them all rather than guess.
		 */
		if (s->settings)
			s->settings_unsure = true;
	}
	proto_put_query(stream_out(&s->st), sql);
	server_start_job(s, job);
}

void server_start_job(struct server *s, enum server_job job)
{
	s->job = job;
	s->job_failed = false;
	free(s->job_error);
	s->job_error = NULL;
	s->job_error_len = 0;
	/*
	 * A connect_query, or a role probe of a login, is part of logging
	 * in: the server still counts as connecting. The parameter SETs run
	 * for the linked client (active); anything else runs on an unlinked
	 * server (used).
	 */
	bool part_of_login = job == JOB_CONNECT_QUERY || (job == JOB_PROBE && s->state == SV_LOGIN);
	if (!s->client && !part_of_login)
		server_set_state(s, SV_USED);
	if (stream_send_out(&s->st))
		stream_resume(&s->st);
}

/* a role and lag probe ended: of a login (PostgreSQL < 14), or of an idle server */
static void finish_probe(struct server *s)
{
	if (s->host)
		s->host->probing = false;
	if (s->state == SV_LOGIN) {
		if (s->job_failed)
			login_failed(s, "08006", "could not read the server's role (pg_is_in_recovery)");
		else
			login_continue(s);
		return;
	}
	if (s->job_failed) {
		server_close(s, "the role and lag probe failed");
		return;
	}
	/* pgpulse's own query is no use: server_idle_timeout counts from the last client's */
	int64_t idle_since = s->last_used;
	pool_server_ready(s);
	if (s->state == SV_IDLE)
		s->last_used = idle_since;
}

static void finish_job(struct server *s)
{
	enum server_job job = s->job;
	s->job = JOB_NONE;
	if (job == JOB_PROBE) {
		finish_probe(s);
		return;
	}
	if (job == JOB_AUTH_QUERY) {
		/* the answer first: it detaches the lookup, so the server is free for the next one */
		auth_query_finished(s, false);
		if (s->state == SV_CLOSED)
			return;
		if (s->job_failed)
			server_close(s, "auth_query left a transaction open");
		else
			pool_server_ready(s);
		return;
	}
	if (s->job_failed) {
		if (job == JOB_SET_PARAMS && s->client) {
			/*
			 * PostgreSQL's own error, as a direct login with the same
			 * startup parameters would get it; the client's close takes
			 * the server with it (its SETs may be half applied).
			 */
			if (s->job_error)
				client_fatal_server_error(s->client, s->job_error, s->job_error_len);
			else
				client_fatal(s->client, "22023", "could not set the client's startup parameters on the server");
			return;
		}
		if (job == JOB_CONNECT_QUERY) {
			struct pool *p = s->pool;
			server_close(s, "connect_query failed");
			pool_server_failed(p, "08006", "connect_query failed on the server");
			return;
		}
		server_close(s, "reset or check query failed");
		return;
	}
	switch (job) {
	case JOB_CONNECT_QUERY:
		pool_server_logged_in(s);
		if (s->state != SV_CLOSED)
			pool_server_ready(s);
		break;
	case JOB_SET_PARAMS:
		if (s->client) {
			adopt_applied_values(s, s->client);
			intern_set(&s->settings, s->client->settings);
			s->settings_unsure = false;
			pool_learn_settings(s->pool, s->settings, s->all_params);
			client_linked(s->client);
		}
		break;
	default:
		pool_server_ready(s);
		break;
	}
}

/* an ErrorResponse on its way to the client, by its SQLSTATE's class (read only here: errors are rare) */
static void count_server_error(const struct server *s, const struct pkt *pkt)
{
	const char *code = proto_error_field(pkt->body, pkt->body_len, 'C');
	s->pool->stats.fail.server_errors[failure_error_class(code)]++;
}

/* FATAL or PANIC: PostgreSQL closes the connection after this error */
static bool error_ends_session(const struct pkt *pkt)
{
	/* V (unlocalized, 9.6+) first; S may be translated */
	const char *sev = proto_error_field(pkt->body, pkt->body_len, 'V');
	if (!sev)
		sev = proto_error_field(pkt->body, pkt->body_len, 'S');
	return sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
}

/* the probe's row: what it says of the server's host, against the lag limits in force */
static bool note_probe_row(struct server *s, const struct pkt *pkt)
{
	const struct cfg *cfg = worker->cfg;
	struct hosts_lag_limits lim = { cfg->replica_max_lag, cfg->replica_max_lag_bytes };
	return s->host && hosts_note_probe_row(s->host, pkt->body, pkt->body_len, lim, now_usec());
}

static enum pkt_action handle_job_packet(struct server *s, struct pkt *pkt)
{
	if (!pkt->complete)
		return PKT_NEED_FULL;
	if (s->job == JOB_AUTH_QUERY && pkt->type != 'Z' && pkt->type != 'S') {
		auth_query_on_reply(s, pkt); /* its errors are the lookup's, not the server's */
		return PKT_CONSUMED;
	}
	switch (pkt->type) {
	case 'E': {
		const char *msg = proto_error_field(pkt->body, pkt->body_len, 'M');
		SV_LOG(s, LOG_LVL_WARNING, "pgpulse's own query failed: %s", msg ? msg : "?");
		if (!s->job_failed && s->job == JOB_SET_PARAMS) {
			/* kept whole (errors are rare): a direct login would have had every field of it */
			s->job_error = malloc(pkt->body_len);
			if (s->job_error) {
				memcpy(s->job_error, pkt->body, pkt->body_len);
				s->job_error_len = pkt->body_len;
			}
		}
		s->job_failed = true;
		if (s->job == JOB_SET_PARAMS && s->client && error_ends_session(pkt)) {
			/* PostgreSQL ends the session under the client's SETs (pg_terminate_backend): its words */
			client_fatal_server_error(s->client, pkt->body, pkt->body_len);
			return s->state == SV_CLOSED ? PKT_GONE : PKT_CONSUMED;
		}
		break;
	}
	case 'S':
		note_parameter(s, pkt);
		break;
	case 'D':
		if (s->job == JOB_PROBE && !s->job_failed && !note_probe_row(s, pkt))
			s->job_failed = true;
		break;
	case 'Z':
		s->xact_status = pkt->body_len ? (char)pkt->body[0] : 'I';
		if (s->xact_status != 'I')
			s->job_failed = true;
		finish_job(s);
		return s->state == SV_CLOSED ? PKT_GONE : PKT_CONSUMED;
	default:
		break;
	}
	return PKT_CONSUMED;
}

/*
 * One query of SETs, sized to its values: nothing is left out for being long.
 * The values need no cap here, they are bounded where they come in (the
 * 10,000-byte startup packet, or a ParameterStatus PostgreSQL sent, itself
 * under its 1 GB limit; a SET it then cannot take fails the server, and its
 * client gets 08006). proto_quote_literal makes each value one literal
 * whatever standard_conforming_strings or client_encoding an earlier client
 * left on this server; the names are our own constants.
 */
char *server_param_sync_sql(const struct server *s, const struct client *c)
{
	struct pktbuf sql;
	pktbuf_init(&sql);
	for (int i = 0; i < TP_COUNT; i++) {
		const char *want = c->params[i];
		if (!want || want == s->params[i]) /* interned: equal text, same pointer */
			continue;
		const char *name = pool_tracked_param_name(i);
		/*
		 * A DateStyle that names only the style or only the order keeps
		 * the other part from the server's current value; a direct
		 * login starts from the default. Back to it first, so the result
		 * (and the form the pool learns for the value) is PostgreSQL's.
		 */
		if (i == TP_DATESTYLE)
			pkt_put_bytes(&sql, "RESET DateStyle;", 16);
		pkt_put_bytes(&sql, "SET ", 4);
		pkt_put_bytes(&sql, name, strlen(name));
		pkt_put_bytes(&sql, " = ", 3);
		proto_quote_literal(&sql, want);
		pkt_put_u8(&sql, ';');
	}
	settings_sync_sql(&sql, s->settings, c->settings, s->settings_unsure); /* nothing for the same set */
	if (sql.len == 0)
		return NULL;
	pkt_put_u8(&sql, '\0');
	return (char *)sql.data; /* the caller frees it */
}

/* ---- linked ---- */

static bool should_release(const struct server *s, const struct client *c, char status)
{
	if (c->pending_syncs > 0 || c->mid_batch || stream_mid_packet(&c->st) || stream_has_pending(&c->st) ||
	    prepared_server_busy(s))
		return false;
	int mode = s->pool->pool_mode;
	if (mode == POOL_STATEMENT)
		return true;
	return mode == POOL_TRANSACTION && status == 'I';
}

/* text: owned by the stamp from now on (freed when the request completes or the server goes) */
void server_request_sent(struct server *s, int64_t arrive, int64_t sent, uint64_t fp, char *text, bool by_sync)
{
	uint32_t seq = s->seq_sent++;
	if (s->inflight_count == SERVER_INFLIGHT) {
		free(text); /* deeper than the ring: this one goes unmeasured */
		return;
	}
	struct request_stamp *st = &s->inflight[(s->inflight_head + s->inflight_count) % SERVER_INFLIGHT];
	st->arrive = arrive;
	st->sent = sent;
	st->fp = fp;
	st->text = text;
	st->seq = seq;
	st->by_sync = by_sync;
	st->timed_out = false;
	s->inflight_count++;
}

static void note_slow_request(const struct server *s, const struct request_stamp *st, const struct fp_entry *e,
			      int64_t query)
{
	const struct client *c = s->client;
	const char *text = st->text ? st->text : e ? e->text : "(query text not known)";
	slowlog_add(s->pool->db->name, s->pool->user->name, c ? c->addr : "", (uint64_t)query,
		    (uint64_t)(st->sent - st->arrive), text);
}

/* a ReadyForQuery: the oldest request in flight is done */
static void close_request(struct server *s, int64_t now)
{
	uint32_t seq = s->seq_done++;
	bool error = s->reply_error;
	s->reply_error = false;
	if (!s->inflight_count)
		return;
	struct request_stamp *st = &s->inflight[s->inflight_head];
	if (st->seq != seq)
		return; /* that request did not fit in the ring */
	s->inflight_head = (s->inflight_head + 1) % SERVER_INFLIGHT;
	s->inflight_count--;
	struct pool *p = s->pool;
	int64_t query = now - st->arrive;
	p->stats.query_time += (uint64_t)query;
	if (telemetry_enabled) {
		series_record(&p->tm->kinds[TK_QUERY], (uint64_t)query);
		series_record(&p->tm->kinds[TK_SERVER], (uint64_t)(now - st->sent));
		if (s->host) /* the query duration by the host that served it (SHOW HOSTS) */
			host_stats_record(s->host, (uint64_t)query, now);
		struct fp_entry *e = st->fp ? fp_lookup(p, st->fp) : NULL;
		if (e) {
			fp_record(e, (uint64_t)query, !error ? FP_OK : st->timed_out ? FP_TIMEOUT : FP_ERROR);
			if (worker->cfg->query_repeat_threshold > 0) /* e: fingerprints are on */
				fp_xact_note(&s->xact_shapes, e, (uint64_t)query);
		}
		int64_t slow = worker->cfg->slow_query_threshold;
		if (slow > 0 && query >= slow)
			note_slow_request(s, st, e, query);
	}
	free(st->text);
	st->text = NULL;
}

static enum pkt_action handle_ready_for_query(struct server *s, struct pkt *pkt)
{
	struct client *c = s->client;
	char status = pkt->body_len ? (char)pkt->body[0] : 'I';
	struct pool *p = s->pool;
	int64_t now = now_usec();
	s->xact_status = status;
	close_request(s, now);
	/* with requests pipelined behind this one, the next transaction began when the oldest arrived */
	int64_t next_arrival = s->inflight_count ? s->inflight[s->inflight_head].arrive : 0;
	/* bytes of the answer still on their way to the client: forwarded and unsent, and this message */
	uint64_t unsent = (uint64_t)(s->st.buf ? s->st.rpos - s->st.spos : 0) + pkt->len;
	int64_t xact_start = client_ready_for_query(c, status, now, next_arrival, unsent);
	if (c->pending_syncs == 0)
		s->cancel_sent_at = 0;
	if (status == 'I') {
		int64_t xact = xact_start ? now - xact_start : 0;
		if (xact_start) {
			p->stats.xact_time += (uint64_t)xact;
			telemetry_record(p->tm, TK_XACT, xact);
		}
		fp_xact_end(&s->xact_shapes, p, (uint64_t)xact);
	}
	if (!should_release(s, c, status))
		return PKT_FORWARD;
	if (p->pool_mode == POOL_STATEMENT && status != 'I') {
		/* closing the client closes the server too: it is inside a transaction */
		client_fatal(c, "25001", "transaction blocks not allowed in statement pooling mode");
		return PKT_GONE;
	}
	s->release_pending = true;
	return PKT_FORWARD_LAST;
}


static enum pkt_action handle_linked_packet(struct server *s, struct pkt *pkt)
{
	/* an error is read whole (they are small): its severity says whether the session ends */
	if (pkt->type == 'E' && !pkt->complete)
		return PKT_NEED_FULL;
	/* named statements: pgpulse's own replies swallowed, its answers put in place */
	if (!prepared_reply_passes(s, pkt)) {
		enum pkt_action act = prepared_on_reply(s, pkt);
		if (act != PKT_FORWARD)
			return act;
	}
	switch (pkt->type) {
	case 'E':
		s->reply_error = true;
		count_server_error(s, pkt);
		if (error_ends_session(pkt))
			s->fatal_forwarded = true;
		return PKT_FORWARD;
	case 'G':
		/* CopyInResponse to a batch whose Sync is already on its way: that Sync goes unanswered */
		if (s->inflight_count && s->inflight[s->inflight_head].by_sync)
			s->copy_sync_ignored = true;
		return PKT_FORWARD;
	case 'Z':
		if (!pkt->complete)
			return PKT_NEED_FULL;
		return handle_ready_for_query(s, pkt);
	case 'S':
		if (!pkt->complete)
			return PKT_NEED_FULL;
		note_parameter(s, pkt);
		return PKT_FORWARD;
	default:
		return PKT_FORWARD;
	}
}

/* an idle server should be silent; a few asynchronous messages are harmless */
static enum pkt_action handle_idle_packet(struct server *s, struct pkt *pkt)
{
	if (!pkt->complete)
		return PKT_NEED_FULL;
	switch (pkt->type) {
	case 'S':
		note_parameter(s, pkt);
		return PKT_CONSUMED;
	case 'N':
	case 'A':
		return PKT_CONSUMED;
	case 'E': {
		const char *msg = proto_error_field(pkt->body, pkt->body_len, 'M');
		char text[300];
		snprintf(text, sizeof(text), "server sent an error while idle: %s", msg ? msg : "?");
		server_close(s, text);
		return PKT_GONE;
	}
	default:
		server_close(s, "unexpected message from an idle server");
		return PKT_GONE;
	}
}

static enum pkt_action server_on_packet(struct stream *st, struct pkt *pkt)
{
	struct server *s = st->owner;
	if (s->job != JOB_NONE)
		return handle_job_packet(s, pkt);
	if (s->state == SV_LOGIN)
		return handle_login_packet(s, pkt);
	if (s->state == SV_ACTIVE && s->client)
		return handle_linked_packet(s, pkt);
	return handle_idle_packet(s, pkt);
}

static void server_on_flushed(struct stream *st)
{
	struct server *s = st->owner;
	if (prepared_owes_answers(s))
		prepared_server_flushed(s); /* answers pgpulse owes after what was just forwarded */
	if (s->state == SV_CLOSED || !s->release_pending)
		return;
	s->release_pending = false;
	struct client *c = s->client;
	if (c && !should_release(s, c, s->xact_status)) {
		/*
		 * While the ReadyForQuery waited for the client's socket, the client
		 * sent another request to this server: it stays linked for the reply.
		 */
		stream_resume(&s->st);
		return;
	}
	/* the release, and the hand-over to a waiting client it may make, happen at one time */
	int64_t held = telemetry_hold_clock(now_usec());
	server_release(s);
	telemetry_held_now = held;
}

void server_release(struct server *s)
{
	server_unlink(s);
	const char *reset = worker->cfg->server_reset_query;
	if (worker->cfg->server_reset_query_always && reset && *reset)
		server_run_job(s, JOB_RESET, reset); /* every release, in every mode */
	else
		pool_server_ready(s);
}

static void server_on_end(struct stream *st, enum stream_end why)
{
	struct server *s = st->owner;
	const char *reason = why == STREAM_EOF ? "server closed the connection"
			     : why == STREAM_ERROR ? "server socket error"
						   : "server sent a malformed packet";
	if (s->state == SV_LOGIN) {
		login_failed(s, "08006", reason);
		return;
	}
	server_close(s, reason);
}

/* ---- link, close, cancel ---- */

void server_link(struct server *s, struct client *c)
{
	struct efficiency *e = &s->pool->tm->eff;
	int64_t now = telemetry_now(); /* one clock reading for both */
	eff_note_assignment(e, s->link_time != 0);
	telemetry_level_at(s->pool->tm, &e->busy, +1, now);
	s->client = c;
	c->server = s;
	fp_xact_drop(&s->xact_shapes); /* what a client that left mid-transaction ran is no one's */
	s->link_time = now;
	server_set_state(s, SV_ACTIVE);
	stream_set_peer(&s->st, &c->st);
	stream_set_peer(&c->st, &s->st);
	stream_resume(&s->st);
}

void server_unlink(struct server *s)
{
	struct client *c = s->client;
	if (c) {
		telemetry_level(s->pool->tm, &s->pool->tm->eff.busy, -1);
		c->server = NULL;
		if (c->st.peer == &s->st)
			stream_set_peer(&c->st, NULL);
	}
	s->client = NULL;
	stream_set_peer(&s->st, NULL);
}

void server_close(struct server *s, const char *reason)
{
	if (s->state == SV_CLOSED)
		return;
	struct pool *p = s->pool;
	struct client *c = s->client;
	bool was_logging_in = s->state == SV_LOGIN;
	/* a reply partly forwarded: the client's socket is mid-message */
	bool client_mid_packet = c && stream_peer_mid_packet(&s->st);
	long long age = (wall_usec() - s->connect_time) / 1000000;
	SV_LOG(s, (worker->cfg->log_disconnections && s->ready) ? LOG_LVL_INFO : LOG_LVL_DEBUG,
	       "closing because: %s (age=%llds)", reason, age > 0 ? age : 0);
	/* the request in flight ends in an error, PostgreSQL's FATAL or pgpulse's below: its shape's */
	if (c && c->state != CL_CLOSED && (!client_mid_packet || s->fatal_forwarded))
		client_request_failed(c, FP_ERROR);
	server_unlink(s);
	if (s->ready && s->state == SV_IDLE) {
		/* a polite goodbye; best effort, the socket is non-blocking */
		struct pktbuf *out = stream_out(&s->st);
		pkt_begin(out, 'X');
		pkt_end(out);
		stream_send_out_quietly(&s->st);
	}
	server_set_state(s, SV_CLOSED);
	if (s->job == JOB_PROBE && s->host)
		s->host->probing = false; /* the next tick may probe on another server */
	if (s->cancels_in_flight)
		cancel_forget_server(s);
	if (s->lookup)
		auth_query_finished(s, true);
	stream_close(&s->st);
	worker_schedule_reap();
	/*
	 * PostgreSQL's own FATAL (pg_terminate_backend, a shutdown) already
	 * told the client why: one error per death, as with PostgreSQL direct.
	 */
	if (c)
		client_server_lost(c, "08006", "server connection closed unexpectedly",
				   client_mid_packet || s->fatal_forwarded);
	/*
	 * A connection that failed to log in is reported by pool_server_failed(),
	 * which decides about retries: launching another here would double every
	 * failed attempt.
	 */
	if (!was_logging_in)
		pool_launch_if_needed(p);
	else if (worker->shutdown == SHUTDOWN_NONE && !p->for_replication)
		/*
		 * Not a walsender: what refuses one (a role without REPLICATION, a
		 * setting its client sent, max_wal_senders) is that client's, and
		 * must not move every pool of the database to its next host.
		 */
		note_host_failed(p->db, s->host_index);
	worker_check_shutdown();
}

void server_free_dead(void)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &worker->dead_servers)
	{
		struct server *s = container_of(pos, struct server, node);
		list_remove(&s->node);
		hosts_unpin(s->host);
		for (int i = 0; i < TP_COUNT; i++)
			intern_drop(s->params[i]);
		intern_drop(s->settings);
		free(s->job_error);
		if (s->all_params) {
			param_list_free(s->all_params);
			free(s->all_params);
		}
		if (s->scram) {
			scram_client_reset(s->scram);
			free(s->scram);
		}
		for (uint32_t i = 0; i < s->inflight_count; i++)
			free(s->inflight[(s->inflight_head + i) % SERVER_INFLIGHT].text);
		prepared_server_free(s);
		free(s);
	}
}

void server_cancel_finished(struct server *s, bool settled)
{
	s->cancels_in_flight--;
	if (!settled)
		s->close_when_released = true; /* a signal may still be on its way: nobody else gets it */
	if (s->cancels_in_flight == 0 && s->state == SV_CANCELING)
		pool_server_ready(s);
}
