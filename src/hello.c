/*
 * hello: what an authenticated client is told before its first request —
 * AuthenticationOk is out already; then ParameterStatus, BackendKeyData
 * and ReadyForQuery — and which server that comes from.
 *
 * In session mode the client owns a server for its whole session, so the
 * hello waits until one is linked (and the client's startup values SET on
 * it): the pid is that backend's and the values are that server's. In the
 * other modes the hello comes from the pool's welcome, with the client's
 * own tracked values in the form PostgreSQL reports them; the pool learns
 * those forms from the SETs that applied them, and only a value no server
 * has applied yet makes the login borrow a server for its SET.
 */
#include "hello.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "config.h"
#include "intern.h"
#include "log.h"
#include "login_stats.h"
#include "peering.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "stream.h"
#include "util.h"
#include "worker.h"

#define ADMIN_QUERY_MAX_LEN 65536 /* console commands are short */

/*
 * Pids pgpulse hands out itself (transaction and statement mode, the
 * console) lie above any process id Linux can give (PID_MAX_LIMIT, 2^22)
 * and below 2^31, so they are positive int4 values and
 * pg_terminate_backend() on one can never hit a real backend. They count
 * up, so no two live clients share one.
 */
#define OWN_PID_FIRST 4194305u
#define OWN_PID_LAST 0x7fffffffu

static uint32_t next_own_pid(void)
{
	uint32_t pid = worker->next_client_pid;
	if (pid < OWN_PID_FIRST || pid > OWN_PID_LAST)
		pid = OWN_PID_FIRST;
	worker->next_client_pid = pid + 1;
	return pid;
}

/*
 * BackendKeyData: in session mode the pid of the client's backend; the
 * key is pgpulse's own, so cancels still come through pgpulse. Clients
 * that follow each other on one backend share its pid, never their key:
 * a late cancel of the one that left cannot match the next. With peer_id
 * set, the key also names this process (peering.h), so a cancel that
 * lands on another process of the group finds its way back.
 */
static void choose_backend_key(struct client *c)
{
	struct server *s = c->server;
	int peer_id = worker->cfg->peer_id;
	/* with a peer_id the pid carries it (peering.h): session mode makes one up too */
	bool backend_pid = !peer_id && s && !c->is_admin && c->pool->pool_mode == POOL_SESSION &&
			   s->backend_pid > 0 && s->backend_pid <= OWN_PID_LAST;
	c->cancel_pid = backend_pid ? s->backend_pid : next_own_pid();
	do {
		random_bytes(&c->cancel_key, sizeof(c->cancel_key));
		if (peer_id)
			peering_make_key(peer_id, c->cancel_pid, c->cancel_key, &c->cancel_pid, &c->cancel_key);
	} while (backend_pid && c->cancel_key == s->last_cancel_key);
	if (backend_pid)
		s->last_cancel_key = c->cancel_key;
}

/* does a run of ParameterStatus messages name this parameter */
static bool reports_name(const struct pktbuf *reported, const char *name)
{
	size_t at = 0;
	while (at + 5 <= reported->len) {
		uint32_t len = proto_read_u32(reported->data + at + 1);
		const char *n = (const char *)reported->data + at + 5;
		if (strcasecmp(n, name) == 0)
			return true;
		at += 1 + (size_t)len;
	}
	return false;
}

/*
 * The pool's welcome (its untracked values, encoded once), with what the
 * client's own settings make PostgreSQL report in place of the welcome's
 * value of the same name — each name once, as PostgreSQL says it. The
 * values come from the client's server when one is linked, else from what
 * the pool learned when a server took the same set.
 */
static void put_welcome_and_settings(struct pktbuf *out, const struct client *c, const struct pool *p)
{
	struct pktbuf reported;
	pktbuf_init(&reported);
	const struct known_settings *known = pool_known_settings(p, c->settings);
	if (c->server)
		pool_put_reported_settings(&reported, c->settings, c->server->all_params);
	else if (known && known->reported.len > 0)
		pkt_put_bytes(&reported, known->reported.data, known->reported.len);
	if (reported.len == 0) {
		if (p->welcome_msgs.len > 0)
			pkt_put_bytes(out, p->welcome_msgs.data, p->welcome_msgs.len);
		return;
	}
	for (int i = 0; i < p->welcome.count; i++) {
		const char *name = p->welcome.names[i];
		if (pool_tracked_param(name) < 0 && !reports_name(&reported, name))
			proto_put_param_status(out, name, p->welcome.values[i]);
	}
	pkt_put_bytes(out, reported.data, reported.len);
	pktbuf_free(&reported);
}

void hello_send(struct client *c)
{
	struct pktbuf *out = stream_out(&c->st);
	if (c->is_admin) {
		static const char *const admin_params[][2] = {
			{ "server_version", "15.0 (pgpulse)" }, { "server_encoding", "UTF8" },
			{ "client_encoding", "UTF8" }, { "DateStyle", "ISO, MDY" }, { "TimeZone", "UTC" },
			{ "integer_datetimes", "on" }, { "standard_conforming_strings", "on" },
			{ "IntervalStyle", "postgres" },
		};
		for (size_t i = 0; i < sizeof(admin_params) / sizeof(admin_params[0]); i++) {
			const char *name = admin_params[i][0];
			int tp = pool_tracked_param(name);
			const char *v = (tp >= 0 && c->params[tp]) ? c->params[tp] : admin_params[i][1];
			proto_put_param_status(out, name, v);
		}
	} else {
		const struct pool *p = c->pool;
		put_welcome_and_settings(out, c, p);
		/* then the tracked values, the client's own first */
		for (int tp = 0; tp < TP_COUNT; tp++) {
			if (!c->params[tp] && p->welcome_tracked[tp])
				c->params[tp] = intern_hold(p->welcome_tracked[tp]);
			if (c->params[tp])
				proto_put_param_status(out, pool_tracked_param_name(tp), c->params[tp]);
		}
	}
	choose_backend_key(c);
	proto_put_backend_key(out, c->cancel_pid, c->cancel_key);
	proto_put_ready(out, 'I');
	int64_t now = now_usec();
	login_stats_completed(c, now);

	int64_t max_packet = c->is_admin ? ADMIN_QUERY_MAX_LEN : worker->cfg->max_packet_size;
	c->st.max_packet = (uint32_t)(max_packet > 0x7fffffff ? 0x7fffffff : max_packet);
	client_set_state(c, CL_ACTIVE);
	client_skip_login_bytes(c);
	c->request_time = now;
	c->idle_since = now;
	if (worker->cfg->log_connections)
		client_log(c, LOG_LVL_INFO, "login ok");
	if (stream_send_out(&c->st))
		stream_resume(&c->st);
}

/*
 * Tracked values the client sent, in the form PostgreSQL reports them
 * (UTF8 for utf8), as the pool learned them from earlier SETs; false if
 * one has not been applied on a server yet. application_name is reported
 * as sent (PostgreSQL only cuts it to 63 bytes and masks non-ASCII ones).
 */
static bool take_reported_forms(struct client *c)
{
	const struct pool *p = c->pool;
	for (int tp = 0; tp < TP_COUNT; tp++) {
		if (!c->params[tp] || tp == TP_APPLICATION_NAME)
			continue;
		const char *reported = p->have_welcome ? pool_reported_form(p, tp, c->params[tp]) : NULL;
		if (!reported)
			return false;
		if (reported != c->params[tp])
			intern_set(&c->params[tp], reported);
	}
	return true;
}

/*
 * Some hellos are said with a server linked. In session mode the client
 * owns one for its whole session: linked first, its BackendKeyData carries
 * that backend's pid (so pg_backend_pid(), NOTIFY's pid and
 * pg_terminate_backend agree with the driver) and its ParameterStatus
 * values are that server's. In the other modes only a value PostgreSQL has
 * not yet shown the pool its form of needs a server: SET there first.
 */
bool hello_needs_server(struct client *c)
{
	bool forms_known = take_reported_forms(c);
	/*
	 * During PAUSE a client still logs in (doc/admin.md): its hello comes
	 * from the welcome (its own pid, its values as sent), and its values
	 * are SET, or refused, when its first query gets a server.
	 */
	if (pool_paused(c->pool) && !c->pool->for_replication)
		return false; /* a replication client's hello needs its own walsender: it waits for RESUME */
	/* settings no server of the pool has taken yet are checked at login, as PostgreSQL checks them */
	return c->pool->pool_mode == POOL_SESSION || !forms_known || !pool_knows_settings(c->pool, c->settings);
}

void hello_take_server(struct client *c)
{
	c->hello_after_link = true;
	c->idle_since = now_usec();
	client_set_state(c, CL_ACTIVE);
	if (!stream_send_out(&c->st) || c->state == CL_CLOSED) /* AuthenticationOk: the wait may be long */
		return;
	if (pool_assign_server(c))
		client_linked(c);
}

void hello_on_linked(struct client *c)
{
	struct server *s = c->server;
	c->hello_after_link = false;
	if (c->pool->pool_mode == POOL_SESSION) {
		for (int tp = 0; tp < TP_COUNT; tp++)
			if (s->params[tp])
				intern_set(&c->params[tp], s->params[tp]);
	}
	hello_send(c);
	/* outside session mode the server was only borrowed for the SETs */
	if (c->state != CL_CLOSED && c->server && c->pool->pool_mode != POOL_SESSION)
		server_release(c->server);
}

