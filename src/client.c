/*
 * client: one application connection, from accept to close.
 *
 * Login: the startup packet (answering SSLRequest with 'S' and a TLS
 * handshake when client TLS is on, GSSENCRequest with 'N', routing
 * CancelRequest), then authentication (src/login.c), then
 * AuthenticationOk and the hello
 * (ParameterStatus, BackendKeyData, ReadyForQuery: src/hello.c), said
 * once the pool knows what its servers report — in session mode, once the
 * client's own server is linked. Before a valid startup packet nothing
 * is answered: a client that leaves, or sends what cannot be one, is
 * closed without a word, as PostgreSQL does.
 *
 * Requests: a client without a server pauses its stream at the first byte
 * of a request and asks the pool for one; once linked, packets are
 * forwarded as they arrive. The client counts the requests whose
 * ReadyForQuery is still due (pending_syncs), which is how the server side
 * knows a transaction really ended and the server may go to someone else.
 */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin.h"
#include "auth_query.h"
#include "cancel.h"
#include "config.h"
#include "failures.h"
#include "intern.h"
#include "fingerprint.h"
#include "hello.h"
#include "log.h"
#include "login.h"
#include "login_stats.h"
#include "normalize.h"
#include "peering.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"
#include "scram.h"
#include "server.h"
#include "settings.h"
#include "sockopt.h"
#include "stmt_names.h"
#include "telemetry.h"
#include "tls.h"
#include "worker.h"

#define STARTUP_MAX_LEN (4 + 10000) /* the length word, then PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
#define LOGIN_MAX_LEN 65536       /* PostgreSQL's own bound on authentication messages */

static enum pkt_action client_on_packet(struct stream *st, struct pkt *pkt);
static void client_on_end(struct stream *st, enum stream_end why);
static void client_on_flushed(struct stream *st);
static void client_on_tls_done(struct stream *st, const char *error);

static const struct stream_ops client_ops = {
	.on_packet = client_on_packet,
	.on_end = client_on_end,
	.on_flushed = client_on_flushed,
	.on_tls_done = client_on_tls_done,
};

bool client_is_unix(const struct client *c)
{
	return c->peer_addr.sa.sa_family == AF_UNIX;
}

const char *client_state_name(enum client_state s)
{
	switch (s) {
	case CL_NEW: return "new";
	case CL_CANCEL: return "cancel";
	case CL_LOGIN: return "login";
	case CL_WELCOME: return "login";
	case CL_ACTIVE: return "active";
	case CL_WAITING: return "waiting";
	case CL_CLOSED: return "closed";
	}
	return "unknown";
}

/* "unix(<pid>):<port>" as PgBouncer logs a unix-socket client: the peer's pid, the socket's port */
static void name_unix_peer(struct client *c, int fd, int port)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		snprintf(c->addr, sizeof(c->addr), "unix(%d):%d", (int)cred.pid, port);
	else
		snprintf(c->addr, sizeof(c->addr), "unix:%d", port);
}

void client_accept(int fd, const struct sockaddr *addr, socklen_t addrlen, int local_port, bool is_unix)
{
	struct client *c = xcalloc(1, sizeof(*c));
	if (!is_unix)
		sockopt_tune_connection(fd, worker->cfg);
	c->id = ++worker->next_conn_id;
	c->state = CL_NEW;
	list_init(&c->node);
	c->user = intern_get("");
	c->dbname = intern_get("");
	if (is_unix)
		c->peer_addr.sa.sa_family = AF_UNIX;
	else if (addrlen <= sizeof(c->peer_addr))
		memcpy(&c->peer_addr, addr, addrlen);
	c->local_port = local_port;
	if (is_unix)
		name_unix_peer(c, fd, local_port);
	else
		addr_to_str(addr, c->addr, sizeof(c->addr));
	c->connect_time = wall_usec();
	c->request_time = now_usec();
	c->xact_status = 'I';
	stream_init(&c->st, &worker->streams, fd, &client_ops, c);
	c->st.startup = true;
	c->st.max_packet = STARTUP_MAX_LEN;
	login_stats_accepted(c, c->request_time);
	client_set_state(c, CL_LOGIN);

	if (worker->client_count > worker->cfg->max_client_conn) {
		client_fatal(c, "53300", "no more connections allowed (max_client_conn = %d)",
			     worker->cfg->max_client_conn);
		return;
	}
	client_log(c, LOG_LVL_DEBUG, "new connection");
	stream_start_reading(&c->st);
	/* under TCP_DEFER_ACCEPT the kernel woke us for the startup packet: take it now */
	if (!is_unix && worker->cfg->tcp_defer_accept > 0)
		stream_read_now(&c->st);
}

/* ---- errors ---- */

/*
 * Every error pgpulse sends is counted by class, on the client's pool or,
 * before it has one, on the instance; an error that ends a login is also
 * a login failure, by reason.
 */
static void count_error(struct client *c, const char *sqlstate)
{
	struct failure_counts *fc = c->pool ? &c->pool->stats.fail : &worker->unpooled_failures;
	fc->pooler_errors[failure_error_class(sqlstate)]++;
	if (login_stats_unfinished(c)) { /* in session mode too, whose hello waits as CL_WAITING */
		enum login_failure why = failure_login_reason(sqlstate);
		if (c->login_timed_out)
			why = LF_TIMEOUT;
		else if (c->pool) /* authenticated: what failed is its server, whatever the code */
			why = LF_SERVER;
		worker->login_failures[why]++;
	}
}

static void queue_error(struct client *c, const char *severity, const char *sqlstate, const char *msg)
{
	count_error(c, sqlstate);
	proto_put_error(stream_out(&c->st), severity, sqlstate, msg);
	if (worker->cfg->log_pooler_errors)
		client_log(c, LOG_LVL_WARNING, "pooler error: %s", msg);
}

/*
 * Part of a server message may already be on its way to the client (a
 * large DataRow): an error written now would land inside it, where no
 * client can read it.
 */
static bool output_mid_message(const struct client *c)
{
	return c->server && stream_peer_mid_packet(&c->server->st);
}

void client_request_failed(struct client *c, enum fp_outcome outcome)
{
	struct server *s = c->server;
	/* a request sent is answered before one still being read: the oldest in flight is the one cut off */
	struct request_stamp *st = s && s->client == c && s->inflight_count ? &s->inflight[s->inflight_head] : NULL;
	uint64_t fp = st ? st->fp : c->req_fp;
	int64_t arrive = st ? st->arrive : c->req_arrive;
	if (st)
		st->fp = 0; /* counted once: the server goes with the client */
	else
		c->req_fp = 0;
	if (!fp || !c->pool || !telemetry_enabled)
		return;
	struct fp_entry *e = fp_lookup(c->pool, fp);
	int64_t now = now_usec();
	if (e)
		fp_record(e, arrive && now > arrive ? (uint64_t)(now - arrive) : 0, outcome);
}

/*
 * The error that ends a client: pgpulse's own words (sqlstate, msg and a
 * hint or NULL), or, given server_body, the ErrorResponse PostgreSQL sent
 * for what the client asked (sqlstate and msg are then its C and M).
 */
static void fatal_and_close(struct client *c, const char *sqlstate, const char *msg, const char *hint,
			    const uint8_t *server_body, size_t server_len)
{
	if (c->state == CL_CLOSED)
		return;
	client_request_failed(c, FP_ERROR);
	if (output_mid_message(c)) {
		count_error(c, sqlstate); /* sent or not, it is pgpulse's error */
		client_log(c, LOG_LVL_INFO, "pooler error: %s (in the middle of a reply: closing without a message)",
			   msg);
		client_close(c, msg);
		return;
	}
	if (server_body || hint) {
		count_error(c, sqlstate);
		if (!server_body || !proto_put_error_as_fatal(stream_out(&c->st), server_body, server_len))
			proto_put_error_hint(stream_out(&c->st), "FATAL", sqlstate, msg, hint);
		if (worker->cfg->log_pooler_errors)
			client_log(c, LOG_LVL_WARNING, "pooler error: %s", msg);
	} else {
		queue_error(c, "FATAL", sqlstate, msg);
	}
	stream_send_out(&c->st);
	client_close(c, msg);
}

/* the error is also the reason the log gives for the close, as in PgBouncer */
static void fatal_formatted(struct client *c, const char *sqlstate, const char *hint, const char *fmt, va_list ap)
{
	char msg[1024];
	if (c->state == CL_CLOSED)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	fatal_and_close(c, sqlstate, msg, hint, NULL, 0);
}

void client_fatal(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fatal_formatted(c, sqlstate, NULL, fmt, ap);
	va_end(ap);
}

void client_fatal_hint(struct client *c, const char *sqlstate, const char *hint, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fatal_formatted(c, sqlstate, hint, fmt, ap);
	va_end(ap);
}

void client_fatal_server_error(struct client *c, const uint8_t *body, size_t len)
{
	const char *code = proto_error_field(body, len, 'C');
	const char *msg = proto_error_field(body, len, 'M');
	fatal_and_close(c, code && strlen(code) == 5 ? code : "08006", msg ? msg : "server error", NULL, body, len);
}

void client_error(struct client *c, const char *sqlstate, const char *fmt, ...)
{
	va_list ap;
	char msg[1024];
	if (c->state == CL_CLOSED)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	queue_error(c, "ERROR", sqlstate, msg);
	proto_put_ready(stream_out(&c->st), c->xact_status ? c->xact_status : 'I');
	stream_send_out(&c->st);
}

/* ---- the lifecycle ---- */

#define CL_BIT(st) (1u << (st))

/* states whose clients count toward max_db/max_user_client_connections */
#define CL_LOGGED_IN (CL_BIT(CL_WELCOME) | CL_BIT(CL_ACTIVE) | CL_BIT(CL_WAITING))

/* for each state, the states a client may enter it from (enum client_state) */
static const unsigned allowed_from[] = {
	[CL_NEW] = 0,
	[CL_LOGIN] = CL_BIT(CL_NEW),
	[CL_CANCEL] = CL_BIT(CL_LOGIN),
	[CL_WELCOME] = CL_BIT(CL_LOGIN),
	[CL_ACTIVE] = CL_BIT(CL_LOGIN) | CL_BIT(CL_WELCOME) | CL_BIT(CL_WAITING),
	[CL_WAITING] = CL_BIT(CL_ACTIVE),
	[CL_CLOSED] = ~0u & ~CL_BIT(CL_NEW) & ~CL_BIT(CL_CLOSED),
};

static struct list *list_of_state(struct client *c, enum client_state st)
{
	switch (st) {
	case CL_LOGIN:
	case CL_CANCEL:
		return &worker->login_clients;
	case CL_WELCOME:
	case CL_WAITING:
		return &c->pool->waiting_clients;
	case CL_ACTIVE:
		return c->pool ? &c->pool->active_clients : &worker->login_clients; /* consoles have no pool */
	case CL_CLOSED:
		return &worker->dead_clients;
	case CL_NEW:
		break;
	}
	return NULL;
}

/* the database's and user's client counts: what the client limits compare */
static void count_logged_in(struct client *c, int delta)
{
	c->db->client_count += delta;
	if (!c->is_admin)
		c->login_user->client_count += delta; /* console sessions are not the user's clients */
}

void client_set_state(struct client *c, enum client_state to)
{
	enum client_state from = c->state;
	if (from == to)
		return;
	if (!(allowed_from[to] & CL_BIT(from))) {
		client_log(c, LOG_LVL_ERROR, "illegal state change %s -> %s", client_state_name(from),
			   client_state_name(to));
		abort();
	}
	list_remove(&c->node);
	if (from == CL_WAITING)
		telemetry_level(c->pool->tm, &c->pool->tm->eff.waiting, -1);
	bool was_in = CL_LOGGED_IN & CL_BIT(from), now_in = CL_LOGGED_IN & CL_BIT(to);
	if (was_in != now_in)
		count_logged_in(c, now_in ? +1 : -1);
	if (from == CL_NEW)
		worker->client_count++;
	if (to == CL_CLOSED)
		worker->client_count--;
	c->state = to;
	if (to == CL_WAITING) {
		/* the wait began when start_waiting stamped it: no second clock reading */
		int64_t since = c->wait_start ? c->wait_start : now_usec();
		telemetry_level_at(c->pool->tm, &c->pool->tm->eff.waiting, +1, since);
	}
	list_append(list_of_state(c, to), &c->node);
}

/* may the server linked to this leaving client serve someone else */
static bool server_is_clean_after(const struct client *c, const struct server *s)
{
	return s->xact_status == 'I' && s->job == JOB_NONE && c->pending_syncs <= 0 && !c->mid_batch &&
	       !stream_has_pending(&c->st) && !stream_has_pending(&s->st) && !stream_has_unread(&s->st) &&
	       !prepared_server_busy(s);
}

static void release_server_of_leaving_client(struct server *s, bool clean)
{
	if (s->pool->for_replication) {
		/* a walsender is its client's alone: the pair closes together */
		server_close(s, "replication client disconnected");
		return;
	}
	if (!clean) {
		/* closing the connection makes PostgreSQL roll the transaction back */
		server_close(s, "client disconnect while server was not ready");
		return;
	}
	server_unlink(s);
	const char *reset = worker->cfg->server_reset_query;
	bool want_reset = reset && *reset &&
			  (s->pool->pool_mode == POOL_SESSION || worker->cfg->server_reset_query_always);
	if (want_reset)
		server_run_job(s, JOB_RESET, reset);
	else
		pool_server_ready(s);
}

/*
 * The client is CL_CLOSED before anything else happens, so whatever its
 * server's close calls back (client_server_lost, client_fatal) finds it
 * closed and does nothing: no second count-out, no stray message.
 */
/*
 * A wait ends when a server is linked, or when the client leaves without
 * one (query_wait_timeout, the server unreachable, the client gave up):
 * either way it waited, and total_wait_time and the wait histogram say so.
 */
static void record_wait(struct client *c)
{
	if (!c->wait_start || !c->pool)
		return;
	/* it ended as the server was linked: at the time held for that, if one is */
	int64_t waited = telemetry_now() - c->wait_start;
	if (waited < 0)
		waited = 0; /* a wait stamped after the time held began */
	c->pool->stats.wait_time += (uint64_t)waited;
	telemetry_record(c->pool->tm, TK_WAIT, waited);
	c->wait_start = 0;
}

/*
 * "closing because: <reason> (age=<s>s)", PgBouncer's words. As in
 * PgBouncer, log_disconnections leaves out a connection that never sent a
 * startup packet (a port probe, a load balancer's check): debug only.
 */
static void log_close_reason(const struct client *c, const char *reason)
{
	bool said_hello = c->user[0] || c->cancel_request_read;
	long long age = (wall_usec() - c->connect_time) / 1000000;
	client_log(c, worker->cfg->log_disconnections && said_hello ? LOG_LVL_INFO : LOG_LVL_DEBUG,
		   "closing because: %s (age=%llds)", reason, age > 0 ? age : 0);
}

void client_close(struct client *c, const char *reason)
{
	if (c->state == CL_CLOSED)
		return;
	login_stats_closed(c); /* unless the client left first (login_stats_abandoned) */
	log_close_reason(c, reason);
	if (c->state == CL_ACTIVE)
		client_count_moved_bytes(c);
	struct server *s = c->server;
	bool clean = s && server_is_clean_after(c, s);
	/* only a client still waiting: wait_start may outlive a wait that ended otherwise (the hello) */
	if (c->state == CL_WAITING || c->state == CL_WELCOME)
		record_wait(c);
	client_set_state(c, CL_CLOSED);
	auth_query_forget_client(c);
	if (c->cancel)
		cancel_forget_requester(c->cancel);
	c->cancel = NULL;
	if (s)
		release_server_of_leaving_client(s, clean);
	else if (c->pool && c->pool->for_replication)
		pool_replication_client_gone(c); /* the connection being opened for it serves nobody else */
	c->server = NULL;
	stream_close(&c->st);
	if (c->db)
		pool_db_release(c->db);
	worker_schedule_reap();
}

void client_free_dead(void)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &worker->dead_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		list_remove(&c->node);
		for (int i = 0; i < TP_COUNT; i++)
			intern_drop(c->params[i]);
		intern_drop(c->user);
		intern_drop(c->dbname);
		intern_drop(c->settings);
		free(c->settings_refusal);
		stmt_names_free(c->stmt_names);
		prepared_client_free(c);
		free(c->secret);
		free(c->req_text);
		if (c->scram) {
			scram_server_reset(c->scram);
			free(c->scram);
		}
		free(c);
	}
}

void client_server_lost(struct client *c, const char *sqlstate, const char *message, bool quietly)
{
	if (c->state == CL_CLOSED)
		return;
	c->server = NULL;
	if (quietly)
		client_close(c, message);
	else
		client_fatal(c, sqlstate, "%s", message);
}

void client_cancel_done(struct client *c, const char *failure)
{
	char reason[96];
	c->cancel = NULL;
	if (!failure) {
		client_close(c, "successfully sent cancel request");
		return;
	}
	snprintf(reason, sizeof(reason), "cancel request %s", failure);
	client_close(c, reason);
}

static void client_on_end(struct stream *st, enum stream_end why)
{
	struct client *c = st->owner;
	switch (why) {
	case STREAM_EOF:
		login_stats_abandoned(c);
		client_close(c, "client unexpected eof");
		break;
	case STREAM_ERROR:
		login_stats_abandoned(c);
		client_close(c, "socket error");
		break;
	case STREAM_BAD_PACKET:
		if (c->st.startup)
			client_close(c, "invalid length of startup packet");
		else
			client_fatal(c, "08P01", "invalid packet length");
		break;
	case STREAM_TOO_BIG:
		/*
		 * Before a valid startup packet there is nobody to talk to: a
		 * Terminate ('X' reads as a huge length) or a stray byte stream is
		 * closed without a word, as PostgreSQL does.
		 */
		if (c->st.startup)
			client_close(c, "invalid length of startup packet");
		else if (c->state == CL_LOGIN)
			client_fatal(c, "08P01", "authentication packet too large");
		else
			client_fatal(c, "08P01", "packet too large (max_packet_size = %u bytes)", c->st.max_packet);
		break;
	}
}

/* ---- cancel ---- */

struct client *client_by_cancel_key(uint32_t pid, uint32_t key)
{
	struct list *pp, *cp;
	bool peering = worker->cfg->peer_id != 0; /* keys carry hops spent in their low bits */
	if (pid == 0)
		return NULL; /* the pid of a client whose hello is not said yet */
	list_for_each(pp, &worker->pools)
	{
		struct pool *p = container_of(pp, struct pool, node);
		struct list *lists[] = { &p->active_clients, &p->waiting_clients };
		for (int i = 0; i < 2; i++) {
			list_for_each(cp, lists[i])
			{
				struct client *c = container_of(cp, struct client, node);
				if (c->cancel_pid == pid &&
				    (peering ? peering_key_matches(c->cancel_key, key) : c->cancel_key == key))
					return c;
			}
		}
	}
	return NULL;
}

/*
 * With peer_id set, a key another process of the group handed out goes on
 * to that process, one hop of the key's budget spent; a key of an unknown
 * peer, or one out of hops (a [peers] section that points in a circle),
 * is dropped as a key that matches nothing is.
 */
static enum pkt_action forward_cancel_request(struct client *c, int owner, uint32_t pid, uint32_t key)
{
	const struct cfg_peer *peer = cfg_find_peer(worker->cfg, owner);
	if (!peer) {
		client_log(c, LOG_LVL_DEBUG, "cancel request for unknown peer %d dropped", owner);
	} else if (peering_key_ttl(key) == 0) {
		client_log(c, LOG_LVL_DEBUG, "cancel request for peer %d dropped: it was forwarded too often", owner);
	} else {
		c->cancel = cancel_forward(peer, pid, peering_key_hop(key), c);
		if (c->cancel) {
			client_set_state(c, CL_CANCEL);
			return PKT_CONSUMED;
		}
	}
	client_close(c, "failed cancel request");
	return PKT_GONE;
}

/*
 * A CancelRequest is matched to the client that got the key; if that client
 * has a query running, the cancel goes on to its server and this connection
 * stays open until PostgreSQL has taken it (libpq's PQcancel waits for the
 * close, and learns then that the signal went out). Otherwise it is closed
 * at once: the protocol gives a cancel connection no answer.
 */
static enum pkt_action handle_cancel_request(struct client *c, const struct pkt *pkt)
{
	struct pkt_reader r;
	login_stats_not_a_login(c);
	pkt_reader_init(&r, pkt->body, pkt->body_len);
	(void)pkt_get_u32(&r); /* the cancel code */
	uint32_t pid = pkt_get_u32(&r);
	uint32_t key = pkt_get_u32(&r);
	if (!r.bad) {
		int owner = peering_key_owner(pid, key);
		if (worker->cfg->peer_id && owner != worker->cfg->peer_id)
			return forward_cancel_request(c, owner, pid, key);
		struct client *target = client_by_cancel_key(pid, key);
		/* only a request of the client's own: not pgpulse's parameter SETs that come before it */
		if (target && target->server && target->server->state == SV_ACTIVE && target->server->job == JOB_NONE) {
			c->cancel = cancel_send(target->server, c);
			if (c->cancel) {
				client_set_state(c, CL_CANCEL);
				return PKT_CONSUMED;
			}
		} else {
			client_log(c, LOG_LVL_DEBUG, "cancel request for no running query dropped");
		}
	}
	client_close(c, "failed cancel request");
	return PKT_GONE;
}

/* ---- login ---- */

static bool startup_param_ignored(const char *name)
{
	return cfg_list_contains(worker->cfg->ignore_startup_parameters, name);
}


/* a user or database name, cut to NAMEDATALEN - 1 bytes as PostgreSQL does */
static void set_name(const char **slot, const char *val)
{
	char name[64];
	str_copy(name, val, sizeof(name));
	intern_set(slot, name);
}

/* where a startup packet's settings go while it is read */
struct startup_reading {
	struct client *c;
	struct settings_builder settings;
};

/*
 * One setting the client asked for: a tracked parameter (kept in step on
 * every server, the hello says it; never ignored, as before and as in
 * PgBouncer), or one more of its settings set (SET on its servers as
 * needed: settings.h), which ignore_startup_parameters may drop.
 */
static bool take_setting(const char *name, const char *value, void *arg, char *why, size_t whylen)
{
	struct startup_reading *rd = arg;
	int tp = pool_tracked_param(name);
	if (tp >= 0) {
		intern_set(&rd->c->params[tp], value);
		return true;
	}
	if (startup_param_ignored(name))
		return true;
	return settings_add(&rd->settings, name, value, why, whylen);
}

/* a key PostgreSQL reads itself rather than as a setting */
static bool is_protocol_key(const char *key)
{
	return strcmp(key, "user") == 0 || strcmp(key, "database") == 0 || strcmp(key, "options") == 0 ||
	       strcmp(key, "replication") == 0 || strncmp(key, "_pq_.", 5) == 0;
}

/* remembered, not said: a stranger is told to authenticate first (see struct client) */
static void refuse_settings_after_login(struct client *c, const struct settings_refusal *r)
{
	str_copy(c->settings_refusal_code, r->sqlstate, sizeof(c->settings_refusal_code));
	c->settings_refusal = xstrdup(r->message);
	c->settings_refusal_hint = r->hint;
}

/*
 * `options` first, then the packet's own settings, which win over it, as
 * in PostgreSQL. Protocol options (_pq_.*) are not settings: PostgreSQL
 * ignores the ones it does not know, and pgpulse knows none.
 */
static bool read_settings(struct startup_reading *rd, const struct pkt *pkt)
{
	struct client *c = rd->c;
	struct proto_startup ps;
	const char *key, *val;
	struct settings_refusal r;
	proto_startup_init(&ps, pkt->body, pkt->body_len);
	while (proto_startup_next(&ps, &key, &val)) {
		if (strcmp(key, "options") != 0 || startup_param_ignored(key))
			continue;
		if (!settings_parse_options(val, take_setting, rd, &r)) {
			refuse_settings_after_login(c, &r);
			return false;
		}
	}
	proto_startup_init(&ps, pkt->body, pkt->body_len);
	while (proto_startup_next(&ps, &key, &val)) {
		if (is_protocol_key(key))
			continue;
		if (!take_setting(key, val, rd, r.message, sizeof(r.message))) {
			str_copy(r.sqlstate, "42602", sizeof(r.sqlstate));
			r.hint = NULL;
			refuse_settings_after_login(c, &r);
			return false;
		}
	}
	return true;
}

/*
 * PostgreSQL's boolean words, as its parse_bool reads them: any
 * case-insensitive prefix of true, false, yes, no (on and off need two
 * letters), or 1 and 0.
 */
static bool parse_pg_bool(const char *v, bool *out)
{
	static const struct {
		const char *word;
		size_t min;
		bool value;
	} words[] = {
		{ "true", 1, true }, { "false", 1, false }, { "yes", 1, true }, { "no", 1, false },
		{ "on", 2, true },   { "off", 2, false },   { "1", 1, true },   { "0", 1, false },
	};
	size_t n = strlen(v);
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (n >= words[i].min && n <= strlen(words[i].word) && strncasecmp(v, words[i].word, n) == 0) {
			*out = words[i].value;
			return true;
		}
	}
	return false;
}

/*
 * replication=: "database" asks for a logical walsender, a true boolean for
 * a physical one, a false one for an ordinary session; anything else is
 * PostgreSQL's own refusal. False after sending it.
 */
static bool take_replication(struct client *c, const char *val)
{
	bool physical;
	if (strcmp(val, "database") == 0) {
		c->replication = REPL_LOGICAL;
		return true;
	}
	if (parse_pg_bool(val, &physical)) {
		c->replication = physical ? REPL_PHYSICAL : REPL_NONE;
		return true;
	}
	client_fatal_hint(c, "22023", "Valid values are: \"false\", 0, \"true\", 1, \"database\".",
			  "invalid value for parameter \"replication\": \"%s\"", val);
	return false;
}

/*
 * application_name_add_host, PgBouncer's way: "<name> - <address>:<port>",
 * "app" standing for a name the client did not send, and a unix-socket
 * client's address "unix(<pid>@<host>)". Only the startup value: a later
 * SET application_name is the client's own.
 */
static void add_host_to_application_name(struct client *c)
{
	char named[400], where[300];
	const char *app = c->params[TP_APPLICATION_NAME] ? c->params[TP_APPLICATION_NAME] : "app";
	int pid, port;
	char host[256];
	if (client_is_unix(c) && sscanf(c->addr, "unix(%d):%d", &pid, &port) == 2 &&
	    gethostname(host, sizeof(host)) == 0) {
		host[sizeof(host) - 1] = '\0';
		snprintf(where, sizeof(where), "unix(%d@%s):%d", pid, host, port);
	} else {
		str_copy(where, c->addr, sizeof(where));
	}
	snprintf(named, sizeof(named), "%s - %s", app, where);
	intern_set(&c->params[TP_APPLICATION_NAME], named);
}

/*
 * NegotiateProtocolVersion, when PostgreSQL would send it: the client asked
 * for a minor version above 3.0, or for protocol options (_pq_.*), none of
 * which pgpulse knows. It names 3.0 and those options, so a client that
 * asked for 3.2 (libpq 18's max_protocol_version) knows it speaks 3.0.
 */
static void negotiate_protocol_version(struct client *c, const struct pkt *pkt)
{
	struct proto_startup ps;
	const char *key, *val;
	uint32_t unknown = 0;
	proto_startup_init(&ps, pkt->body, pkt->body_len);
	while (proto_startup_next(&ps, &key, &val))
		unknown += strncmp(key, "_pq_.", 5) == 0;
	if ((ps.version & 0xffff) == 0 && unknown == 0)
		return;
	struct pktbuf *out = stream_out(&c->st);
	pkt_begin(out, 'v');
	pkt_put_u32(out, PROTO_V3);
	pkt_put_u32(out, unknown);
	proto_startup_init(&ps, pkt->body, pkt->body_len);
	while (proto_startup_next(&ps, &key, &val))
		if (strncmp(key, "_pq_.", 5) == 0)
			pkt_put_str(out, key);
	pkt_end(out);
}

/* read the startup packet's key/value pairs; false after sending an error */
static bool read_startup_params(struct client *c, const struct pkt *pkt)
{
	struct proto_startup ps;
	proto_startup_init(&ps, pkt->body, pkt->body_len);
	const char *dbname = NULL, *key, *val;
	while (proto_startup_next(&ps, &key, &val)) {
		if (strcmp(key, "user") == 0) {
			set_name(&c->user, val);
		} else if (strcmp(key, "database") == 0) {
			dbname = val;
			set_name(&c->dbname, val);
		} else if (strcmp(key, "replication") == 0) {
			if (!take_replication(c, val))
				return false;
		}
	}
	if (ps.r.bad || !ps.terminated || pkt_remaining(&ps.r) != 0) {
		/* PostgreSQL wants the empty name as the packet's last byte */
		client_fatal(c, "08P01", "invalid startup packet layout: expected terminator as last byte");
		return false;
	}
	negotiate_protocol_version(c, pkt);
	if (!c->user[0]) {
		client_fatal(c, "28000", "no PostgreSQL user name specified in startup packet");
		return false;
	}
	if (!dbname || !*dbname)
		intern_set(&c->dbname, c->user);
	struct startup_reading rd = { .c = c };
	settings_builder_init(&rd.settings);
	if (read_settings(&rd, pkt))
		c->settings = settings_intern(&rd.settings);
	settings_builder_free(&rd.settings);
	if (worker->cfg->application_name_add_host)
		add_host_to_application_name(c);
	return true;
}

/* PgBouncer 1.25's line: "login attempt: db=appdb user=app tls=no replication=no" */
static void log_login_attempt(const struct client *c)
{
	char tls[128] = "no";
	if (c->st.tls)
		tls_describe(c->st.tls, tls, sizeof(tls));
	client_log(c, LOG_LVL_INFO, "login attempt: db=%s user=%s tls=%s replication=%s", c->dbname, c->user, tls,
		   c->replication == REPL_NONE ? "no" : c->replication == REPL_LOGICAL ? "database" : "yes");
}

static void process_startup(struct client *c, const struct pkt *pkt)
{
	if (!read_startup_params(c, pkt))
		return;
	c->st.startup = false;
	login_stats_startup_read(c);
	/* until it has logged in, a client gets no more buffer than a password needs */
	c->st.max_packet = LOGIN_MAX_LEN;
	/*
	 * A client accepted before the listeners closed is one of the clients
	 * a WAIT_FOR_CLIENTS shutdown (SIGTERM) waits for: it logs in and is
	 * served, or a rolling restart would fail the connections that were
	 * mid-login when the old process was told to go.
	 */
	if (worker->shutdown != SHUTDOWN_NONE && worker->shutdown != SHUTDOWN_WAIT_CLIENTS) {
		client_fatal(c, "57P03", "pgpulse is shutting down");
		return;
	}
	/*
	 * A database that does not exist (or is disabled) is said only after
	 * authentication, as PostgreSQL does: before it, a stranger learns
	 * nothing about which databases exist (enter_pool).
	 */
	struct pool_db *db = pool_find_db(c->dbname);
	c->db = db;
	if (db)
		pool_db_hold(db);
	if (db && db->is_admin) {
		c->is_admin = true;
		intern_set(&c->settings, NULL); /* the console has no server to SET them on */
		if (!login_admin_allowed(c))
			return;
	}
	if (worker->cfg->log_connections)
		log_login_attempt(c);
	if (!login_meets_tls_requirement(c))
		return;
	login_authenticate(c);
}

/*
 * SSLRequest: 'S' and a handshake when client TLS is on, else 'N' (the
 * client goes on in plaintext, or gives up if it insists on TLS).
 */
static enum pkt_action answer_ssl_request(struct client *c, const struct pkt *pkt)
{
	if (c->st.tls) {
		client_fatal(c, "08P01", "SSLRequest received inside a TLS session");
		return PKT_GONE;
	}
	/*
	 * Bytes sent after the request but before its answer were chosen
	 * without knowing it (and, before a handshake, would be read as if
	 * encrypted: a man in the middle could inject them): refuse, after 'N'
	 * too, as PostgreSQL does.
	 */
	bool data_after = pkt->avail != c->st.wpos - c->st.rpos;
	if (!tls_client_enabled() || client_is_unix(c)) {
		pkt_put_u8(stream_out(&c->st), 'N');
		if (data_after) {
			client_fatal(c, "08P01", "received unencrypted data after SSL request");
			return PKT_GONE;
		}
		stream_send_out(&c->st);
		return PKT_CONSUMED;
	}
	if (data_after) {
		client_fatal(c, "08P01", "received unencrypted data after SSL request");
		return PKT_GONE;
	}
	SSL *ssl = tls_accept_session(c->st.fd);
	if (!ssl) {
		client_fatal(c, "08006", "could not start a TLS session");
		return PKT_GONE;
	}
	pkt_put_u8(stream_out(&c->st), 'S');
	if (!stream_send_out(&c->st) || c->st.out.len > 0) {
		/* one byte into a fresh socket does not block; if it did, give up cleanly */
		SSL_free(ssl);
		if (c->state != CL_CLOSED)
			client_close(c, "could not answer the SSL request");
		return PKT_GONE;
	}
	stream_start_tls(&c->st, ssl);
	return c->state == CL_CLOSED ? PKT_GONE : PKT_CONSUMED;
}

static void client_on_tls_done(struct stream *st, const char *error)
{
	struct client *c = st->owner;
	if (error) {
		client_log(c, LOG_LVL_INFO, "TLS handshake failed: %s", error);
		if (strcmp(error, TLS_CLOSED_BY_PEER) == 0)
			login_stats_abandoned(c); /* the client left: its login was given up, not refused */
		client_close(c, "TLS handshake failed");
		return;
	}
	client_log(c, LOG_LVL_DEBUG, "TLS handshake done");
	stream_start_reading(st);
}

static enum pkt_action handle_startup_packet(struct client *c, struct pkt *pkt)
{
	if (!pkt->complete)
		return PKT_NEED_FULL;
	if (pkt->len < 8) {
		client_close(c, "invalid length of startup packet"); /* PostgreSQL answers nothing either */
		return PKT_GONE;
	}
	uint32_t code = proto_read_u32(pkt->body);
	if (code == PROTO_SSL)
		return answer_ssl_request(c, pkt);
	if (code == PROTO_GSSENC) {
		/* no GSSAPI: 'N' tells the client to go on without it (bytes sent ahead: as after an SSLRequest) */
		pkt_put_u8(stream_out(&c->st), 'N');
		if (pkt->avail != c->st.wpos - c->st.rpos) {
			client_fatal(c, "08P01", "received unencrypted data after GSSAPI encryption request");
			return PKT_GONE;
		}
		stream_send_out(&c->st);
		return PKT_CONSUMED;
	}
	if (code == PROTO_CANCEL && pkt->len == 16) {
		c->cancel_request_read = true;
		return handle_cancel_request(c, pkt);
	}
	if ((code >> 16) != 3) {
		client_fatal(c, "0A000", "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0", code >> 16,
			     code & 0xffff);
		return PKT_GONE;
	}
	process_startup(c, pkt);
	return c->state == CL_CLOSED ? PKT_GONE : PKT_CONSUMED;
}

/* ---- requests ---- */

static enum pkt_action handle_admin_packet(struct client *c, struct pkt *pkt)
{
	if (c->admin_wait)
		return PKT_PAUSE; /* the previous command is not answered yet */
	if (c->st.out.len >= ADMIN_OUT_HIGH_WATER) {
		/* the client is not reading its answers: take no more commands until they are sent */
		stream_resume_when_sent(&c->st);
		return PKT_PAUSE;
	}
	switch (pkt->type) {
	case 'X':
		client_close(c, "client close request");
		return PKT_GONE;
	case 'Q':
		if (!pkt->complete)
			return PKT_NEED_FULL;
		if (pkt->body_len == 0 || pkt->body[pkt->body_len - 1] != '\0') {
			client_fatal(c, "08P01", "malformed Query message");
			return PKT_GONE;
		}
		admin_handle_query(c, (const char *)pkt->body);
		stream_send_out(&c->st);
		return c->state == CL_CLOSED ? PKT_GONE : PKT_CONSUMED;
	case 'S':
		if (!pkt->complete)
			return PKT_NEED_FULL;
		c->mid_batch = false; /* the next batch gets its own error */
		proto_put_ready(stream_out(&c->st), 'I');
		stream_send_out(&c->st);
		return PKT_CONSUMED;
	default:
		if (!pkt->complete)
			return PKT_NEED_FULL;
		if (!c->mid_batch) {
			/* one error per batch; the rest is skipped until Sync */
			proto_put_error(stream_out(&c->st), "ERROR", "0A000",
					"the admin console supports only the simple query protocol");
			stream_send_out(&c->st);
			c->mid_batch = true;
		}
		return PKT_CONSUMED;
	}
}

/* does this message start (or belong to) a request that ends in a ReadyForQuery */
static bool is_request_message(uint8_t type)
{
	switch (type) {
	case 'Q': case 'F': case 'S': case 'P': case 'B': case 'E': case 'D': case 'C':
		return true;
	default:
		return false; /* Flush, CopyData, CopyDone, CopyFail: no reply of their own */
	}
}

/* ---- query text: fingerprints and the slow-query log ---- */

static bool wants_query_text(void)
{
	const struct cfg *cfg = worker->cfg;
	return telemetry_enabled && (cfg->max_query_fingerprints > 0 || cfg->slow_query_threshold > 0);
}

/* the length of the NUL-terminated string at p, or n when there is no NUL within n */
static size_t bounded_strlen(const uint8_t *p, size_t n)
{
	const uint8_t *nul = memchr(p, 0, n);
	return nul ? (size_t)(nul - p) : n;
}

/*
 * The text cache serves both Parse texts (sent again word for word on every
 * execution) and simple Queries (the same words, other constants).
 */
static void fingerprint_request(struct client *c, const char *text, size_t len)
{
	const struct cfg *cfg = worker->cfg;
	bool slow_log = cfg->slow_query_threshold > 0;
	bool full_text = slow_log && strcmp(cfg->slow_query_log_text, "full") == 0;
	/* the slow-query log may need the normalized text itself: only then always normalize */
	bool use_cache = !(slow_log && !full_text && cfg->max_query_fingerprints <= 0);
	c->req_fp = fp_of_text(c->pool, text, len, use_cache);
	if (!slow_log)
		return;
	free(c->req_text);
	c->req_text = NULL;
	if (full_text)
		c->req_text = strndup(text, len < NORMALIZE_MAX ? len : NORMALIZE_MAX);
	else if (cfg->max_query_fingerprints <= 0)
		c->req_text = xstrdup(worker->normalized); /* no fingerprint entry to take it from */
}

/*
 * A named Parse where statements pass through to the server (session mode,
 * or tracking off): the name now means this text. Its fingerprint is the
 * request's when the Parse opened the request, else its own.
 */
static void remember_statement(struct client *c, const uint8_t *name, size_t name_len, const char *text,
			       size_t len, bool opened_request)
{
	uint64_t fp = opened_request ? c->req_fp : fp_of_text(c->pool, text, len, true);
	stmt_names_remember(&c->stmt_names, (const char *)name, name_len, fp);
}

/*
 * Query and Parse carry the request's text, Bind names a prepared
 * statement, Close may forget one. A packet that fits the receive buffer is
 * read whole; a longer one is fingerprinted by the part that has arrived.
 * Where named statements are tracked (prepared.h), the prepared module
 * gives a Bind its statement's fingerprint; elsewhere the client's own
 * map of names (stmt_names.h) does.
 */
/* inlined into both callers: every request comes here, and a call would cost it (doc/telemetry.md, "Cost") */
static inline __attribute__((always_inline)) enum pkt_action capture_request_text(struct client *c, struct pkt *pkt)
{
	if (c->req_fp && pkt->type != 'P' && pkt->type != 'C')
		return PKT_FORWARD;
	if (!pkt->complete && pkt->len <= c->st.cap && pkt->type != 'B')
		return PKT_NEED_FULL;
	const uint8_t *body = pkt->body;
	size_t have = pkt->avail > 5 ? pkt->avail - 5 : 0;
	if (pkt->type == 'Q') {
		fingerprint_request(c, (const char *)body, bounded_strlen(body, have));
	} else if (pkt->type == 'P') {
		size_t name_len = bounded_strlen(body, have);
		if (name_len >= have)
			return PKT_FORWARD;
		const uint8_t *query = body + name_len + 1;
		size_t len = bounded_strlen(query, have - name_len - 1);
		bool opens = !c->req_fp;
		if (opens)
			fingerprint_request(c, (const char *)query, len);
		if (name_len > 0 && fp_enabled() && !prepared_tracking(c))
			remember_statement(c, body, name_len, (const char *)query, len, opens);
	} else if (pkt->type == 'B') {
		size_t portal_len = bounded_strlen(body, have);
		if (portal_len >= have || prepared_tracking(c))
			return PKT_FORWARD;
		const uint8_t *stmt = body + portal_len + 1;
		size_t stmt_len = bounded_strlen(stmt, have - portal_len - 1);
		if (stmt_len > 0)
			c->req_fp = stmt_names_find(c->stmt_names, (const char *)stmt, stmt_len);
	} else if (pkt->type == 'C' && have > 1 && body[0] == 'S' && !prepared_tracking(c)) {
		size_t name_len = bounded_strlen(body + 1, have - 1);
		if (name_len < have - 1)
			stmt_names_forget(c->stmt_names, (const char *)body + 1, name_len);
	}
	return PKT_FORWARD;
}

/* bookkeeping of a request packet that is about to go to the server */
static void note_forwarded_request(struct client *c, uint8_t type)
{
	if (!is_request_message(type))
		return;
	if (!c->req_sent) {
		/* a request that did not wait is forwarded the moment it arrived */
		c->req_sent = c->req_waited ? now_usec() : c->req_arrive;
		c->query_start = c->req_sent;
	}
	if (type == 'S' && c->server->copy_sync_ignored) {
		/* this Sync stands in for the one PostgreSQL ignored during COPY: same request */
		c->server->copy_sync_ignored = false;
		c->mid_batch = false;
		free(c->req_text);
		c->req_text = NULL;
		c->req_fp = 0;
		c->req_arrive = c->req_sent = 0;
		c->req_waited = false;
		return;
	}
	if (type == 'Q' || type == 'F' || type == 'S') {
		c->pending_syncs++;
		c->mid_batch = false;
		server_request_sent(c->server, c->req_arrive, c->req_sent, c->req_fp, c->req_text, type == 'S');
		c->req_text = NULL; /* the server's stamp owns it now */
		c->req_fp = 0;
		c->req_arrive = c->req_sent = 0;
		c->req_waited = false;
	} else {
		c->mid_batch = true;
	}
}

/*
 * The first message of a request stamps its arrival (and a transaction's
 * start). Requests and transactions are counted here, when they begin, as
 * PgBouncer counts its query_count and xact_count; their times are added
 * when they end.
 */
static void note_request_arrival(struct client *c, uint8_t type)
{
	if (c->req_arrive || !is_request_message(type))
		return;
	c->req_arrive = now_usec();
	c->request_time = c->req_arrive;
	c->pool->stats.query_count++;
	if (c->xact_status == 'I' && !c->xact_start) {
		c->xact_start = c->req_arrive;
		c->pool->stats.xact_count++;
	}
}

/* replication commands (IDENTIFY_SYSTEM, START_REPLICATION ...) are no statements to fingerprint */
static inline __attribute__((always_inline)) bool wants_query_text_of(const struct client *c, uint8_t type)
{
	return (type == 'Q' || type == 'P' || type == 'B' || (type == 'C' && c->stmt_names)) && !c->replication &&
	       c->pool && wants_query_text();
}

/*
 * A request that must wait for a server has its text read now: one that
 * query_wait_timeout cuts off is an error of its shape too. The paused
 * packet comes again (capture_request_text skips what it has); a request
 * that did not wait is read on its way to the server, as before.
 */
static __attribute__((noinline)) enum pkt_action pause_reading_the_text(struct client *c, struct pkt *pkt)
{
	if (wants_query_text_of(c, pkt->type) && capture_request_text(c, pkt) == PKT_NEED_FULL)
		return PKT_NEED_FULL;
	return PKT_PAUSE;
}

static enum pkt_action client_on_packet(struct stream *st, struct pkt *pkt)
{
	struct client *c = st->owner;
	if (c->state == CL_LOGIN)
		return st->startup ? handle_startup_packet(c, pkt) : login_on_password(c, pkt);
	if (c->state == CL_CANCEL) {
		client_close(c, "data after a cancel request");
		return PKT_GONE;
	}
	if (c->is_admin)
		return handle_admin_packet(c, pkt);
	if (pkt->type == 'X') {
		login_stats_abandoned(c); /* a client that gave up waiting for its hello */
		client_close(c, "client close request");
		return PKT_GONE;
	}
	if (pkt->type == 'Q' && worker->cfg->disable_pqexec && !c->replication) {
		/* PgBouncer's rule and words: one Query may carry several statements,
		 * the shape SQL injection needs; such a client is not served */
		client_log(c, LOG_LVL_WARNING, "client used 'Q' packet type (disable_pqexec)");
		client_fatal(c, "08P01", "PQexec disallowed");
		return PKT_GONE;
	}
	if (c->bytes_in_from_next) {
		/* the first packet after the login: what came before it was the login's */
		c->bytes_in_from_next = false;
		c->bytes_in_counted = st->bytes_in - (st->buf ? st->wpos - st->rpos : 0);
	}
	note_request_arrival(c, pkt->type);
	if (c->state == CL_WELCOME || c->state == CL_WAITING)
		return pause_reading_the_text(c, pkt);
	if (!c->server && !pool_assign_server(c)) {
		c->req_waited = true;
		return c->state == CL_CLOSED ? PKT_GONE : pause_reading_the_text(c, pkt);
	}
	if (c->server->job != JOB_NONE) {
		c->req_waited = true;
		return pause_reading_the_text(c, pkt);
	}
	if (wants_query_text_of(c, pkt->type) && capture_request_text(c, pkt) == PKT_NEED_FULL)
		return PKT_NEED_FULL;
	if (prepared_tracking(c) && !prepared_request_passes(c, pkt)) {
		/* named statements: rewritten, answered or skipped by src/prepared/ */
		enum ps_result r = prepared_on_request(c, pkt);
		switch (r) {
		case PS_FORWARD:
			break;
		case PS_SENT:
		case PS_FORWARD_REST: /* a large named Bind: its head rewritten, the rest forwarded */
			note_forwarded_request(c, pkt->type);
			return r == PS_SENT ? PKT_CONSUMED : PKT_FORWARD_REST;
		case PS_SKIPPED:
			c->mid_batch = true;
			return PKT_CONSUMED;
		case PS_NEED_FULL:
			return PKT_NEED_FULL;
		case PS_FLUSH_FIRST:
			return PKT_FLUSH_FIRST;
		case PS_PAUSE:
			return PKT_PAUSE;
		case PS_GONE:
			return PKT_GONE;
		}
	}
	note_forwarded_request(c, pkt->type);
	return PKT_FORWARD;
}

static void client_on_flushed(struct stream *st)
{
	struct client *c = st->owner;
	if (c->server)
		prepared_client_flushed(c); /* messages src/prepared/ wrote for the server */
}

/*
 * The byte counters (SHOW STATS total_received / total_sent) count what
 * clients and servers say to each other after the login, as PgBouncer's
 * do: the startup packet, the authentication exchange and the welcome
 * (ParameterStatus, BackendKeyData, the first ReadyForQuery) are left out.
 * Everything sent or queued so far is the login's; what the client sent is
 * known to end only where its next packet begins.
 */
void client_skip_login_bytes(struct client *c)
{
	c->bytes_out_counted = c->st.bytes_out + c->st.out.len;
	c->bytes_in_from_next = true;
}

/*
 * unsent: bytes of the answer the server stream has forwarded (this
 * ReadyForQuery included) that have not reached the client's socket yet;
 * they belong to this request, so they are counted now, not at the next.
 */
/*
 * The bytes moved so far, into the pool's counters: an answer still
 * streaming counts as far as it reached the client, as in PgBouncer, and
 * a client that goes mid-answer keeps what it was sent. The rest is
 * counted at the ReadyForQuery.
 */
void client_count_moved_bytes(struct client *c)
{
	if (!c->pool || c->is_admin)
		return;
	struct pool_stats *stats = &c->pool->stats;
	if (!c->bytes_in_from_next && c->st.bytes_in > c->bytes_in_counted) {
		stats->bytes_received += c->st.bytes_in - c->bytes_in_counted;
		c->bytes_in_counted = c->st.bytes_in;
	}
	if (c->st.bytes_out > c->bytes_out_counted) {
		stats->bytes_sent += c->st.bytes_out - c->bytes_out_counted;
		c->bytes_out_counted = c->st.bytes_out;
	}
}

int64_t client_ready_for_query(struct client *c, char status, int64_t now, int64_t next_arrival,
			       uint64_t unsent)
{
	struct pool_stats *stats = &c->pool->stats;
	int64_t ended = 0;
	uint64_t out = c->st.bytes_out + c->st.out.len + unsent;
	c->xact_status = status;
	if (c->pending_syncs > 0)
		c->pending_syncs--;
	c->idle_since = now;
	if (!c->bytes_in_from_next) {
		stats->bytes_received += c->st.bytes_in - c->bytes_in_counted;
		c->bytes_in_counted = c->st.bytes_in;
	}
	if (out > c->bytes_out_counted) {
		stats->bytes_sent += out - c->bytes_out_counted;
		c->bytes_out_counted = out;
	}
	if (status == 'I') {
		ended = c->xact_start;
		/* a request that came in behind this transaction begins the next one */
		c->xact_start = next_arrival ? next_arrival : c->req_arrive;
		if (c->xact_start)
			stats->xact_count++;
	}
	return ended;
}

void client_linked(struct client *c)
{
	record_wait(c);
	if (c->hello_after_link) {
		hello_on_linked(c);
		return;
	}
	stream_resume(&c->st);
}
