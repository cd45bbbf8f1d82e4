/*
 * test_admin_parse: the admin console as psql (or an exporter) meets it —
 * commands parsed, and the answers decoded back into messages, columns and
 * rows and checked against what PgBouncer 1.23 would send.
 *
 * The test links the console (src/admin/) and reaches its parts through
 * admin_internal.h,
 * and it builds a small worker by hand (pools, clients, servers on their
 * lists) instead of running the event loop. The few functions of other
 * modules that the console calls and that need a running daemon are stubbed
 * below; config, proto, log and util are the real ones.
 */
#include "admin.h"
#include "admin_internal.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "cancel.h"
#include "client.h"
#include "config.h"
#include "control.h"
#include "host_stats.h"
#include "hosts.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"
#include "server.h"
#include "stream.h"
#include "telemetry.h"
#include "unit.h"
#include "util.h"
#include "worker.h"

/* ---- stubs for the parts of the daemon this test does not run ---- */

struct worker *worker;

static bool reload_should_fail;
static int reload_calls;
static enum shutdown_mode shutdown_asked = SHUTDOWN_NONE;

bool worker_reload(char *err, size_t errlen)
{
	reload_calls++;
	if (reload_should_fail) {
		snprintf(err, errlen, "pgpulse.ini:3: listen_port: not a number");
		return false;
	}
	return true;
}

/* the hba rules a SET would read: none here (the tests do not set auth_type = hba) */
bool worker_load_hba(const struct cfg *cfg, struct hba **out, char *err, size_t errlen)
{
	(void)cfg;
	(void)err;
	(void)errlen;
	*out = NULL;
	return true;
}

static int apply_calls;

void worker_apply_config(void)
{
	apply_calls++;
}

bool control_is_suspended(void)
{
	return false;
}

void worker_request_shutdown(enum shutdown_mode mode)
{
	shutdown_asked = mode;
}

struct pktbuf *stream_out(struct stream *s)
{
	return &s->out;
}

void cancel_pool_counts(const struct pool *p, int *requesters, int *connections)
{
	(void)p;
	*requesters = *connections = 0;
}

void cancel_peer_counts(int peer_id, struct cancel_peer_counts *n)
{
	(void)peer_id;
	*n = (struct cancel_peer_counts){ 0 };
}

/* control: record what the console asked for */
static struct {
	int calls;
	char verb[32];
	const struct pool_db *db;
	uint64_t client_id;
	bool answer_now;
} ctl;

static void ctl_note(const char *verb, const struct pool_db *db)
{
	ctl.calls++;
	snprintf(ctl.verb, sizeof(ctl.verb), "%s", verb);
	ctl.db = db;
}

bool control_pause(struct client *admin, struct pool_db *db)
{
	(void)admin;
	ctl_note("pause", db);
	return ctl.answer_now;
}

void control_resume(struct pool_db *db)
{
	ctl_note("resume", db);
}

bool control_suspend(struct client *admin)
{
	(void)admin;
	ctl_note("suspend", NULL);
	return ctl.answer_now;
}

void control_set_disabled(struct pool_db *db, bool disabled)
{
	ctl_note(disabled ? "disable" : "enable", db);
}

void control_reconnect(struct pool_db *db)
{
	ctl_note("reconnect", db);
}

void control_kill(struct pool_db *db)
{
	ctl_note("kill", db);
}

bool control_kill_client(uint64_t id)
{
	ctl_note("kill_client", NULL);
	ctl.client_id = id;
	return id == 12;
}

bool control_wait_close(struct client *admin, struct pool_db *db)
{
	(void)admin;
	ctl_note("wait_close", db);
	return ctl.answer_now;
}

int pool_effective_size(const struct pool *p)
{
	(void)p;
	return 20;
}

/* the real split lives in pool.c; here: two beyond a base of 2, one of them overflow */
void pool_tier_use(const struct pool *p, int *overflow_in_use, int *reserve_in_use)
{
	(void)p;
	*overflow_in_use = 1;
	*reserve_in_use = 1;
}

/* SHOW HEALTH judges capacity (health.c): the sizes above, no connection caps */
struct pool_limits pool_limits_of(const struct pool *p)
{
	(void)p;
	return (struct pool_limits){ .base = 20, .min = 0, .overflow = 1, .reserve = 1, .max_db = 0, .max_user = 0 };
}

/* no client streams an answer here: the counters are what the test set */
void pool_count_moved_bytes(void)
{
}

int pool_server_count(const struct pool *p)
{
	return p->server_count;
}

/* as in pool.c: idle past server_check_delay, with a check query to run */
bool pool_server_needs_check(const struct server *s, int64_t now)
{
	const struct cfg *cfg = worker->cfg;
	return cfg->server_check_query && *cfg->server_check_query && cfg->server_check_delay >= 0 &&
	       now - s->last_used >= cfg->server_check_delay;
}

bool pool_paused(const struct pool *p)
{
	return p->db->paused || worker->paused_all;
}

struct pool_db *pool_lookup_db(const char *name)
{
	struct list *pos;
	list_for_each(pos, &worker->databases)
	{
		struct pool_db *db = container_of(pos, struct pool_db, node);
		if (!db->is_admin && strcmp(db->name, name) == 0)
			return db;
	}
	return NULL;
}

/* where a connection still being opened goes (SHOW SERVERS): the databases here have one host */
const char *server_host(const struct server *s)
{
	return s->pool->db->host;
}

int server_port(const struct server *s)
{
	return s->pool->db->port;
}

/* hosts.c is not linked (its registry follows the running pools): its names, as hosts.h gives them */
const char *hosts_tsa_name(enum target_session_attrs tsa)
{
	static const char *const names[] = { "any", "read-write", "read-only", "primary", "standby", "prefer-standby" };
	return (unsigned)tsa < sizeof(names) / sizeof(names[0]) ? names[tsa] : "any";
}

const char *hosts_role_name(enum host_role role)
{
	return role == HOST_ROLE_PRIMARY ? "primary" : role == HOST_ROLE_STANDBY ? "standby" : "unknown";
}

const char *hosts_state_name(const struct host *h)
{
	return h->down ? "down" : h->lagging ? "lagging" : h->role == HOST_ROLE_UNKNOWN ? "unknown" : "up";
}

void stream_buffer_stats(const struct stream_loop *l, int *used, int *free_count, uint32_t *size)
{
	(void)l;
	*used = 3;
	*free_count = 5;
	*size = 4096;
}

/* prepared.c is not linked: one client with statements, none on servers */
int prepared_client_count(const struct client *c)
{
	return c->id == 4 ? 2 : 0;
}

int prepared_server_count(const struct server *s)
{
	(void)s;
	return 0;
}

void prepared_each(void (*fn)(const struct ps_info *info, void *arg), void *arg)
{
	struct ps_info info = { .id = 7, .query = "SELECT $1", .param_types = 1, .clients = 2, .servers = 1,
				.client_parses = 2, .server_parses = 1, .binds = 10 };
	fn(&info, arg);
}

/* ---- decoding what the console wrote ---- */

#define MAX_MSGS 512

struct msg {
	char type;
	const uint8_t *body;
	uint32_t len;
};

struct answer {
	int n;
	struct msg m[MAX_MSGS];
	/* from the RowDescription */
	int ncols;
	char cols[MAX_COLUMNS][64];
	uint32_t types[MAX_COLUMNS];
	/* DataRows, values as strings ("<null>" for NULL) */
	int nrows;
	char rows[64][MAX_COLUMNS][128];
	char tag[64];
	char sqlstate[8];
	char error[512];
	char notice[512];
	char notice_detail[1024];
	char ready;
	bool empty_query;
};

static void decode_fields(const uint8_t *body, uint32_t len, char *state, char *msg, size_t msglen,
			  char *detail, size_t detlen)
{
	const char *s = proto_error_field(body, len, 'C');
	const char *m = proto_error_field(body, len, 'M');
	const char *d = proto_error_field(body, len, 'D');
	if (state)
		snprintf(state, 8, "%s", s ? s : "");
	if (msg)
		snprintf(msg, msglen, "%s", m ? m : "");
	if (detail)
		snprintf(detail, detlen, "%s", d ? d : "");
}

static void decode(struct pktbuf *out, struct answer *a)
{
	size_t pos = 0;

	memset(a, 0, sizeof(*a));
	while (pos + 5 <= out->len && a->n < MAX_MSGS) {
		struct msg *m = &a->m[a->n++];
		m->type = (char)out->data[pos];
		uint32_t len = proto_read_u32(out->data + pos + 1);
		m->body = out->data + pos + 5;
		m->len = len - 4;
		pos += 1 + len;

		struct pkt_reader r;
		pkt_reader_init(&r, m->body, m->len);
		switch (m->type) {
		case 'T':
			a->ncols = pkt_get_u16(&r);
			for (int i = 0; i < a->ncols && i < MAX_COLUMNS; i++) {
				const char *name = pkt_get_str(&r);
				snprintf(a->cols[i], sizeof(a->cols[i]), "%s", name ? name : "?");
				pkt_get_u32(&r);
				pkt_get_u16(&r);
				a->types[i] = pkt_get_u32(&r);
				pkt_get_u16(&r);
				pkt_get_u32(&r);
				pkt_get_u16(&r);
			}
			break;
		case 'D': {
			int n = pkt_get_u16(&r);
			for (int i = 0; i < n && a->nrows < 64; i++) {
				uint32_t vlen = pkt_get_u32(&r);
				char *dst = a->rows[a->nrows][i < MAX_COLUMNS ? i : 0];
				if (vlen == 0xffffffffu) {
					snprintf(dst, 128, "<null>");
					continue;
				}
				const uint8_t *v = pkt_get_bytes(&r, vlen);
				snprintf(dst, 128, "%.*s", (int)(vlen < 127 ? vlen : 127),
					 v ? (const char *)v : "");
			}
			a->nrows++;
			break;
		}
		case 'C':
			snprintf(a->tag, sizeof(a->tag), "%s", (const char *)m->body);
			break;
		case 'E':
			decode_fields(m->body, m->len, a->sqlstate, a->error, sizeof(a->error),
				      NULL, 0);
			break;
		case 'N':
			decode_fields(m->body, m->len, NULL, a->notice, sizeof(a->notice),
				      a->notice_detail, sizeof(a->notice_detail));
			break;
		case 'Z':
			a->ready = (char)m->body[0];
			break;
		case 'I':
			a->empty_query = true;
			break;
		}
	}
	CHECK(pos == out->len); /* every byte is part of a whole message */
}

/* column index by name, -1 if absent */
static int col(const struct answer *a, const char *name)
{
	for (int i = 0; i < a->ncols; i++)
		if (strcmp(a->cols[i], name) == 0)
			return i;
	return -1;
}

/* the value of column `name` in the row whose first column is `key` */
static const char *cell(const struct answer *a, const char *key, const char *name)
{
	int c = col(a, name);
	if (c < 0)
		return "<no such column>";
	for (int i = 0; i < a->nrows; i++)
		if (strcmp(a->rows[i][0], key) == 0)
			return a->rows[i][c];
	return "<no such row>";
}

static void check_columns(const struct answer *a, const char *const *want, int n)
{
	CHECK_INT_EQ(a->ncols, n);
	for (int i = 0; i < n && i < a->ncols; i++)
		CHECK_STR_EQ(a->cols[i], want[i]);
}

/* ---- a small worker: one database, one user, a few connections ---- */

static struct worker w;
static struct pool_db db_app, db_admin;
static struct pool_user user_alice;
static struct pool pool_app;
static struct client admin_cl, stats_cl, cl_linked, cl_idle, cl_waiting, cl_login;
static struct server sv_active, sv_idle1, sv_idle2, sv_used, sv_new;

static void init_client(struct client *c, uint64_t id, const char *user, const char *dbname,
			enum client_state st)
{
	pktbuf_free(&c->st.out);
	memset(c, 0, sizeof(*c));
	list_init(&c->node);
	c->id = id;
	c->st.fd = -1;
	c->state = st;
	c->user = user; /* the daemon interns these; the console only reads them */
	c->dbname = dbname;
	snprintf(c->addr, sizeof(c->addr), "10.0.0.5:5000");
	struct sockaddr_in *in = (struct sockaddr_in *)&c->peer_addr;
	in->sin_family = AF_INET;
	in->sin_port = htons(5000 + (int)id);
	inet_pton(AF_INET, "10.0.0.5", &in->sin_addr);
	c->local_port = 6432;
	c->connect_time = wall_usec() - 60 * 1000000LL;
	c->request_time = now_usec() - 1000000LL;
}

static void init_server(struct server *s, uint64_t id, enum server_state st, struct list *on)
{
	memset(s, 0, sizeof(*s));
	list_init(&s->node);
	s->id = id;
	s->st.fd = -1;
	s->state = st;
	s->pool = &pool_app;
	s->backend_pid = 4000 + (uint32_t)id;
	s->connect_time = wall_usec() - 30 * 1000000LL;
	list_append(on, &s->node);
}

static void setup(void)
{
	static struct cfg *cfg;

	if (!cfg)
		cfg = cfg_new_default();
	cfg->default_pool_size = 20;
	cfg->listen_port = 6432;
	free(cfg->admin_users);
	cfg->admin_users = xstrdup("admin");

	memset(&w, 0, sizeof(w));
	worker = &w;
	w.cfg = cfg;
	list_init(&w.databases);
	list_init(&w.users);
	list_init(&w.pools);
	list_init(&w.hosts);
	list_init(&w.login_clients);
	list_init(&w.dead_clients);
	list_init(&w.dead_servers);
	w.started_at = wall_usec() - 10 * 1000000LL; /* up for 10 s */
	admin_stats_window_reset();

	memset(&db_app, 0, sizeof(db_app));
	db_app.name = "app";
	db_app.host = "127.0.0.1";
	db_app.port = 5432;
	db_app.dbname = "appdb";
	db_app.pool_size = -1;
	db_app.min_pool_size = 2;
	db_app.reserve_pool_size = -1;
	db_app.max_db_connections = -1;
	db_app.pool_mode = POOL_TRANSACTION;
	list_append(&w.databases, &db_app.node);

	memset(&db_admin, 0, sizeof(db_admin));
	db_admin.name = "pgbouncer";
	db_admin.is_admin = true;
	db_admin.pool_size = db_admin.min_pool_size = db_admin.reserve_pool_size = -1;
	db_admin.pool_mode = -1;
	list_append(&w.databases, &db_admin.node);

	memset(&user_alice, 0, sizeof(user_alice));
	user_alice.name = "alice";
	user_alice.pool_mode = -1;
	list_append(&w.users, &user_alice.node);

	memset(&pool_app, 0, sizeof(pool_app));
	pool_app.db = &db_app;
	pool_app.user = &user_alice;
	pool_app.pool_mode = POOL_TRANSACTION;
	list_init(&pool_app.active_clients);
	list_init(&pool_app.waiting_clients);
	list_init(&pool_app.active_servers);
	list_init(&pool_app.idle_servers);
	list_init(&pool_app.used_servers);
	list_init(&pool_app.new_servers);
	list_init(&pool_app.canceling_servers);
	static struct pool_telemetry *tm;
	telemetry_free(tm);
	tm = telemetry_new(now_usec());
	pool_app.tm = tm;
	list_append(&w.pools, &pool_app.node);

	init_client(&admin_cl, 1, "admin", "pgbouncer", CL_ACTIVE);
	admin_cl.is_admin = true;
	admin_cl.admin_may_change = true;
	list_append(&w.login_clients, &admin_cl.node);

	init_client(&stats_cl, 2, "watcher", "pgbouncer", CL_ACTIVE);
	stats_cl.is_admin = true;
	list_append(&w.login_clients, &stats_cl.node);

	init_client(&cl_login, 3, "bob", "app", CL_LOGIN);
	list_append(&w.login_clients, &cl_login.node);

	init_client(&cl_linked, 4, "alice", "app", CL_ACTIVE);
	cl_linked.pool = &pool_app;
	cl_linked.params[TP_APPLICATION_NAME] = "billing";
	list_append(&pool_app.active_clients, &cl_linked.node);

	init_client(&cl_idle, 5, "alice", "app", CL_ACTIVE);
	cl_idle.pool = &pool_app;
	list_append(&pool_app.active_clients, &cl_idle.node);

	init_client(&cl_waiting, 6, "alice", "app", CL_WAITING);
	cl_waiting.pool = &pool_app;
	cl_waiting.wait_start = now_usec() - 2500000; /* 2.5 s */
	list_append(&pool_app.waiting_clients, &cl_waiting.node);

	init_server(&sv_active, 10, SV_ACTIVE, &pool_app.active_servers);
	init_server(&sv_idle1, 11, SV_IDLE, &pool_app.idle_servers);
	init_server(&sv_idle2, 12, SV_IDLE, &pool_app.idle_servers);
	init_server(&sv_used, 13, SV_USED, &pool_app.used_servers);
	init_server(&sv_new, 14, SV_LOGIN, &pool_app.new_servers);
	sv_active.client = &cl_linked;
	cl_linked.server = &sv_active;
	sv_idle2.close_when_released = true;
	/* idle 40 s, past server_check_delay (30 s): server_check_query must test it first */
	sv_idle1.last_used = now_usec() - 40 * 1000000LL;
	sv_idle2.last_used = now_usec();

	w.client_count = 6;
	w.server_count = 5;

	pool_app.stats.xact_count = 100;
	pool_app.stats.query_count = 300;
	pool_app.stats.bytes_received = 10000;
	pool_app.stats.bytes_sent = 50000;
	pool_app.stats.xact_time = 100 * 2000;
	pool_app.stats.query_time = 300 * 500;
	pool_app.stats.wait_time = 40 * 250;
	pool_app.stats.server_assignments = 40;
	pool_app.stats.client_parse_count = 30;
	pool_app.stats.server_parse_count = 4;
	pool_app.stats.bind_count = 300;

	reload_should_fail = false;
	reload_calls = 0;
	shutdown_asked = SHUTDOWN_NONE;
}

/* run one query as client c and decode the answer */
static void ask(struct client *c, const char *sql, struct answer *a)
{
	pktbuf_reset(&c->st.out);
	admin_handle_query(c, sql);
	decode(&c->st.out, a);
	CHECK(a->ready == 'I'); /* every answer ends with ReadyForQuery */
}

static struct answer a; /* big: keep it off the stack */

/* an integer column that is within 1 of want (rates are truncated, and time passes) */
#define CHECK_ABOUT(got, want)                                                               \
	do {                                                                                 \
		long got_ = atol(got);                                                       \
		if (got_ < (want)-1 || got_ > (want))                                        \
			UNIT_FAIL_("%s is %s, expected about %ld", #got, got, (long)(want)); \
	} while (0)

/* ---- the parser ---- */

static void test_command_words_are_split_and_semicolon_is_optional(void)
{
	struct admin_cmd cmd;

	admin_parse("SHOW POOLS", &cmd);
	CHECK_INT_EQ(cmd.kind, CMD_WORDS);
	CHECK_STR_EQ(cmd.verb, "SHOW");
	CHECK_STR_EQ(cmd.arg, "POOLS");

	admin_parse("  show\tstats_totals ;  \n", &cmd);
	CHECK_INT_EQ(cmd.kind, CMD_WORDS);
	CHECK_STR_EQ(cmd.arg, "stats_totals");

	admin_parse("RELOAD;", &cmd);
	CHECK_INT_EQ(cmd.kind, CMD_WORDS);
	CHECK_STR_EQ(cmd.verb, "RELOAD");
	CHECK(!cmd.has_arg);

	admin_parse("pause \"my db\"", &cmd);
	CHECK_INT_EQ(cmd.kind, CMD_WORDS);
	CHECK_STR_EQ(cmd.arg, "my db");
	CHECK(cmd.arg_quoted);
}

static void test_blank_query_is_empty(void)
{
	struct admin_cmd cmd;

	admin_parse("", &cmd);
	CHECK_INT_EQ(cmd.kind, CMD_EMPTY);
	admin_parse("  ;  ", &cmd);
	CHECK_INT_EQ(cmd.kind, CMD_EMPTY);
}

static void test_garbled_commands_are_refused(void)
{
	static const char *const bad[] = {
		"SHOW POOLS; SHOW STATS", /* one command per query, as in PgBouncer */
		"SHOW LATENCY 5m extra", /* at most three words */
		"SHOW (POOLS)",
		"SET",
		"SET a",
		"SET a = ",
		"SET a = 'unterminated",
		"SET a = 1 2",
		"pause \"unterminated",
		"\"\"",
	};
	struct admin_cmd cmd;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		admin_parse(bad[i], &cmd);
		if (cmd.kind != CMD_BAD)
			UNIT_FAIL_("\"%s\" parsed as kind %d, expected CMD_BAD", bad[i],
				   (int)cmd.kind);
	}
}

static void test_set_takes_equals_or_to_and_quoted_values(void)
{
	struct admin_cmd cmd;

	admin_parse("SET default_pool_size = 30", &cmd);
	CHECK_INT_EQ(cmd.kind, CMD_SET);
	CHECK_STR_EQ(cmd.key, "default_pool_size");
	CHECK_STR_EQ(cmd.value, "30");

	admin_parse("set server_check_query TO 'select ''x''';", &cmd);
	CHECK_INT_EQ(cmd.kind, CMD_SET);
	CHECK_STR_EQ(cmd.key, "server_check_query");
	CHECK_STR_EQ(cmd.value, "select 'x'");

	admin_parse("SET query_wait_timeout=250ms", &cmd);
	CHECK_INT_EQ(cmd.kind, CMD_SET);
	CHECK_STR_EQ(cmd.value, "250ms");

	admin_parse("SET server_reset_query = ''", &cmd);
	CHECK_INT_EQ(cmd.kind, CMD_SET);
	CHECK_STR_EQ(cmd.value, "");
}

/* ---- answers ---- */

static void test_show_pools_has_pgbouncer_columns_and_counts(void)
{
	static const char *const want[] = {
		"database",
		"user",
		"cl_active",
		"cl_waiting",
		"cl_active_cancel_req",
		"cl_waiting_cancel_req",
		"sv_active",
		"sv_active_cancel",
		"sv_being_canceled",
		"sv_idle",
		"sv_used",
		"sv_tested",
		"sv_login",
		"maxwait",
		"maxwait_us",
		"pool_mode",
		"load_balance_hosts",
		"sv_overflow",
		"sv_reserve",
	};
	setup();
	ask(&admin_cl, "SHOW POOLS;", &a);
	check_columns(&a, want, 19);
	CHECK_INT_EQ(a.types[col(&a, "cl_active")], OID_INT4);
	CHECK_INT_EQ(a.nrows, 1);
	CHECK_STR_EQ(cell(&a, "app", "user"), "alice");
	CHECK_STR_EQ(cell(&a, "app", "cl_active"), "2");
	CHECK_STR_EQ(cell(&a, "app", "cl_waiting"), "1");
	CHECK_STR_EQ(cell(&a, "app", "sv_active"), "1");
	/* of the two idle servers, one sat past server_check_delay */
	CHECK_STR_EQ(cell(&a, "app", "sv_idle"), "1");
	CHECK_STR_EQ(cell(&a, "app", "sv_used"), "1");
	CHECK_STR_EQ(cell(&a, "app", "load_balance_hosts"), "<null>"); /* one host */
	CHECK_STR_EQ(cell(&a, "app", "sv_tested"), "1");
	CHECK_STR_EQ(cell(&a, "app", "sv_login"), "1");
	CHECK_STR_EQ(cell(&a, "app", "maxwait"), "2");
	CHECK(atoi(cell(&a, "app", "maxwait_us")) >= 500000);
	CHECK_STR_EQ(cell(&a, "app", "pool_mode"), "transaction");
	CHECK_STR_EQ(cell(&a, "app", "sv_overflow"), "1");
	CHECK_STR_EQ(cell(&a, "app", "sv_reserve"), "1");
	CHECK_STR_EQ(a.tag, "SHOW");
}

static void test_show_clients_lists_pool_and_admin_clients_not_logins(void)
{
	static const char *const want[] = {
		"type",
		"user",
		"database",
		"replication",
		"state",
		"addr",
		"port",
		"local_addr",
		"local_port",
		"connect_time",
		"request_time",
		"wait",
		"wait_us",
		"close_needed",
		"ptr",
		"link",
		"remote_pid",
		"tls",
		"application_name",
		"prepared_statements",
		"id",
	};
	char ptr[32];

	setup();
	ask(&stats_cl, "show clients", &a);
	check_columns(&a, want, 21);
	CHECK_INT_EQ(a.nrows, 5); /* 3 in the pool, 2 admin; the logging-in bob is not shown */
	/* rows in order: active list, waiting list, then admin clients */
	CHECK_STR_EQ(a.rows[0][col(&a, "state")], "active");
	CHECK_STR_EQ(a.rows[0][col(&a, "application_name")], "billing");
	snprintf(ptr, sizeof(ptr), "%p", (void *)&sv_active);
	CHECK_STR_EQ(a.rows[0][col(&a, "link")], ptr);
	CHECK_STR_EQ(a.rows[0][col(&a, "addr")], "10.0.0.5");
	CHECK_STR_EQ(a.rows[0][col(&a, "port")], "5004");
	CHECK_STR_EQ(a.rows[0][col(&a, "id")], "4");
	CHECK_STR_EQ(a.rows[0][col(&a, "prepared_statements")], "2");
	CHECK_STR_EQ(a.rows[0][col(&a, "replication")], "none");
	CHECK_STR_EQ(a.rows[1][col(&a, "state")], "idle");
	CHECK_STR_EQ(a.rows[1][col(&a, "link")], "");
	CHECK_STR_EQ(a.rows[2][col(&a, "state")], "waiting");
	CHECK_STR_EQ(a.rows[2][col(&a, "wait")], "2");
	CHECK_STR_EQ(a.rows[1][col(&a, "wait")], "0");
	CHECK_STR_EQ(a.rows[3][col(&a, "user")], "admin");
	CHECK_STR_EQ(a.rows[3][col(&a, "state")], "idle");
	CHECK_STR_EQ(a.rows[4][col(&a, "user")], "watcher");
	CHECK_STR_EQ(a.rows[4][col(&a, "state")], "idle"); /* the one asking: no server, as in PgBouncer */
	/* 'YYYY-MM-DD HH:MM:SS TZ' */
	const char *t = a.rows[0][col(&a, "connect_time")];
	CHECK(strlen(t) >= 20 && t[4] == '-' && t[10] == ' ' && t[13] == ':');
}

static void test_show_servers_uses_pgbouncer_state_words(void)
{
	setup();
	ask(&admin_cl, "SHOW SERVERS", &a);
	CHECK_INT_EQ(a.ncols, 21);
	CHECK_INT_EQ(a.nrows, 5);
	CHECK_STR_EQ(a.rows[0][col(&a, "state")], "active");
	CHECK_STR_EQ(a.rows[0][col(&a, "application_name")], "billing");
	CHECK_STR_EQ(a.rows[0][col(&a, "remote_pid")], "4010");
	CHECK_STR_EQ(a.rows[1][col(&a, "state")], "used"); /* idle past server_check_delay */
	CHECK_STR_EQ(a.rows[2][col(&a, "state")], "idle");
	CHECK_STR_EQ(a.rows[1][col(&a, "close_needed")], "0");
	CHECK_STR_EQ(a.rows[2][col(&a, "close_needed")], "1");
	CHECK_STR_EQ(a.rows[3][col(&a, "state")], "tested");
	CHECK_STR_EQ(a.rows[4][col(&a, "state")], "new");
	CHECK_STR_EQ(a.rows[4][col(&a, "addr")], "127.0.0.1");
	CHECK_STR_EQ(a.rows[4][col(&a, "port")], "5432");
	CHECK_STR_EQ(a.rows[0][col(&a, "user")], "alice");
	CHECK_STR_EQ(a.rows[0][col(&a, "database")], "app");
}

static void test_show_databases_resolves_defaults(void)
{
	static const char *const want[] = {
		"name",
		"host",
		"port",
		"database",
		"force_user",
		"pool_size",
		"min_pool_size",
		"reserve_pool_size",
		"server_lifetime",
		"pool_mode",
		"load_balance_hosts",
		"max_connections",
		"current_connections",
		"max_client_connections",
		"current_client_connections",
		"paused",
		"disabled",
		"overflow_pool_size",
		"overflow_in_use",
		"reserve_in_use",
		"target_session_attrs",
	};
	setup();
	db_app.client_count = 3;
	db_app.tsa = TSA_PREFER_STANDBY;
	ask(&admin_cl, "SHOW DATABASES", &a);
	check_columns(&a, want, 21);
	CHECK_INT_EQ(a.nrows, 2);
	CHECK_STR_EQ(a.rows[0][0], "app"); /* by name */
	CHECK_STR_EQ(cell(&a, "app", "database"), "appdb");
	CHECK_STR_EQ(cell(&a, "app", "force_user"), "<null>");
	CHECK_STR_EQ(cell(&a, "app", "pool_size"), "20");
	CHECK_STR_EQ(cell(&a, "app", "min_pool_size"), "2");
	CHECK_STR_EQ(cell(&a, "app", "server_lifetime"), "3600");
	CHECK_STR_EQ(cell(&a, "app", "pool_mode"), "transaction");
	CHECK_STR_EQ(cell(&a, "app", "current_connections"), "5");
	CHECK_STR_EQ(cell(&a, "app", "current_client_connections"), "3");
	CHECK_STR_EQ(cell(&a, "app", "load_balance_hosts"), "<null>");
	CHECK_STR_EQ(cell(&a, "app", "target_session_attrs"), "prefer-standby");
	CHECK_STR_EQ(cell(&a, "pgbouncer", "target_session_attrs"), "<null>");
	/* the console's sessions are its clients */
	CHECK_STR_EQ(cell(&a, "pgbouncer", "current_client_connections"), "2");
	CHECK_STR_EQ(cell(&a, "pgbouncer", "host"), "<null>");
	CHECK_STR_EQ(cell(&a, "pgbouncer", "port"), "6432");
}

/*
 * SHOW HOSTS reads what hosts.c keeps of each host and counts the servers
 * that connected to it: a primary with queries, a lagging standby nobody
 * queried, a host no entry names (listed while referred to), and one no
 * longer referred to (not listed).
 */
static void test_show_hosts_reads_each_host_and_counts_its_servers(void)
{
	static const char *const want[] = {
		"host",         "port",         "role",         "state",        "read_only",
		"lag_ms",       "lag_bytes",    "checked_ms_ago", "role_changes", "sv_active",
		"sv_idle",      "sv_used",      "sv_login",     "databases",    "query_count",
		"query_p50_us", "query_p95_us", "query_p99_us", "last_error",
	};
	static const uint32_t types[] = {
		OID_TEXT, OID_INT4, OID_TEXT, OID_TEXT, OID_BOOL, OID_FLOAT8, OID_INT8, OID_INT8, OID_INT8, OID_INT4,
		OID_INT4, OID_INT4, OID_INT4, OID_TEXT, OID_INT8, OID_INT8,   OID_INT8, OID_INT8, OID_TEXT,
	};
	static struct host primary, standby, other, gone;
	static struct host_telemetry tm;
	static struct pool_db db_ro;
	int64_t now = now_usec();

	setup(); /* server_check_query and server_check_delay (30 s) as by default */
	db_app.hosts.count = 2;
	db_app.hosts.name[0] = (char *)"127.0.0.1";
	db_app.hosts.port[0] = 5432;
	db_app.hosts.name[1] = (char *)"replica";
	db_app.hosts.port[1] = 5433;
	memset(&db_ro, 0, sizeof(db_ro));
	db_ro.name = "app_ro";
	db_ro.hosts.count = 1;
	db_ro.hosts.name[0] = (char *)"replica";
	db_ro.hosts.port[0] = 5433;
	list_append(&w.databases, &db_ro.node);

	struct host *all[] = { &primary, &standby, &other, &gone };
	const char *names[] = { "127.0.0.1", "replica", "other", "gone" };
	for (int i = 0; i < 4; i++) {
		memset(all[i], 0, sizeof(*all[i]));
		all[i]->name = (char *)names[i];
		all[i]->port = i == 1 ? 5433 : 5432;
		all[i]->refs = i == 3 ? 0 : 1;
		all[i]->lag_usec = all[i]->lag_bytes = -1;
		list_append(&w.hosts, &all[i]->node);
	}
	primary.role = HOST_ROLE_PRIMARY;
	primary.role_checked = primary.lag_checked = now - 2000000; /* probed 2 s ago */
	primary.role_changes = 1;
	series_init(&tm.query, now);
	for (int i = 0; i < 100; i++)
		series_record(&tm.query, 40); /* under 64 us: exact */
	primary.tm = &tm;
	standby.role = HOST_ROLE_STANDBY;
	standby.read_only = true;
	standby.lag_usec = 1500;
	standby.lag_bytes = 8192;
	standby.lag_checked = now - 1000000;
	standby.lagging = true;
	str_copy(standby.last_error, "connection refused", sizeof(standby.last_error));

	sv_active.host = &primary;
	sv_idle1.host = &primary;  /* idle 40 s: its check is due, sv_used */
	sv_idle2.host = &standby;
	sv_used.host = &standby;   /* running pgpulse's own query: in none of the four */
	sv_new.host = &standby;

	ask(&stats_cl, "SHOW HOSTS", &a);
	check_columns(&a, want, 19);
	for (int i = 0; i < 19 && i < a.ncols; i++)
		CHECK_INT_EQ(a.types[i], types[i]);
	CHECK_INT_EQ(a.nrows, 3); /* "gone" has no entry referring to it */
	CHECK_STR_EQ(a.rows[0][0], "127.0.0.1"); /* by host name */
	CHECK_STR_EQ(a.rows[1][0], "other");
	CHECK_STR_EQ(a.rows[2][0], "replica");

	CHECK_STR_EQ(cell(&a, "127.0.0.1", "port"), "5432");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "role"), "primary");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "state"), "up");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "read_only"), "f");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "lag_ms"), "<null>"); /* a primary has none */
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "lag_bytes"), "<null>");
	long ago = atol(cell(&a, "127.0.0.1", "checked_ms_ago"));
	CHECK(ago >= 2000 && ago < 2500);
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "role_changes"), "1");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "sv_active"), "1");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "sv_idle"), "0");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "sv_used"), "1");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "sv_login"), "0");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "databases"), "app");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "query_count"), "100");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "query_p50_us"), "40");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "query_p99_us"), "40");
	CHECK_STR_EQ(cell(&a, "127.0.0.1", "last_error"), "");

	CHECK_STR_EQ(cell(&a, "replica", "port"), "5433");
	CHECK_STR_EQ(cell(&a, "replica", "role"), "standby");
	CHECK_STR_EQ(cell(&a, "replica", "state"), "lagging");
	CHECK_STR_EQ(cell(&a, "replica", "read_only"), "t");
	CHECK_STR_EQ(cell(&a, "replica", "lag_ms"), "1.500");
	CHECK_STR_EQ(cell(&a, "replica", "lag_bytes"), "8192");
	CHECK_STR_EQ(cell(&a, "replica", "sv_active"), "0");
	CHECK_STR_EQ(cell(&a, "replica", "sv_idle"), "1");
	CHECK_STR_EQ(cell(&a, "replica", "sv_used"), "0");
	CHECK_STR_EQ(cell(&a, "replica", "sv_login"), "1");
	CHECK_STR_EQ(cell(&a, "replica", "databases"), "app,app_ro");
	CHECK_STR_EQ(cell(&a, "replica", "query_count"), "0"); /* never queried: no series yet */
	CHECK_STR_EQ(cell(&a, "replica", "query_p50_us"), "<null>");
	CHECK_STR_EQ(cell(&a, "replica", "query_p95_us"), "<null>");
	CHECK_STR_EQ(cell(&a, "replica", "last_error"), "connection refused");

	CHECK_STR_EQ(cell(&a, "other", "role"), "unknown");
	CHECK_STR_EQ(cell(&a, "other", "state"), "unknown");
	CHECK_STR_EQ(cell(&a, "other", "checked_ms_ago"), "<null>"); /* never probed */
	CHECK_STR_EQ(cell(&a, "other", "databases"), "");
	CHECK_STR_EQ(cell(&a, "other", "sv_active"), "0");

	/* a trailing word is refused, as for the other views without a window */
	ask(&stats_cl, "SHOW HOSTS 1m", &a);
	CHECK_STR_EQ(a.sqlstate, SQLSTATE_SYNTAX);

	series_free(&tm.query); /* the servers and the worker's lists are made anew by setup() */
}

static void test_show_users_lists_every_auth_file_user_in_pgbouncer_columns(void)
{
	static const char *const want[] = { "name", "pool_size", "reserve_pool_size", "pool_mode",
					    "max_user_connections", "current_connections",
					    "max_user_client_connections", "current_client_connections" };
	struct auth_entry entries[] = { { .user = "admin" }, { .user = "alice" }, { .user = "carol" } };
	struct auth_file af = { entries, 3 };

	setup();
	w.auth = &af;
	user_alice.client_count = 3;
	ask(&admin_cl, "SHOW USERS", &a);
	w.auth = NULL;
	check_columns(&a, want, 8);
	/* carol never logged in; pgbouncer is the console's own user */
	CHECK_INT_EQ(a.nrows, 4);
	CHECK_STR_EQ(a.rows[0][0], "admin");
	CHECK_STR_EQ(a.rows[1][0], "alice");
	CHECK_STR_EQ(a.rows[2][0], "carol");
	CHECK_STR_EQ(a.rows[3][0], "pgbouncer");
	CHECK_STR_EQ(cell(&a, "alice", "pool_size"), "");
	CHECK_STR_EQ(cell(&a, "alice", "reserve_pool_size"), "");
	CHECK_STR_EQ(cell(&a, "alice", "pool_mode"), "<null>");
	CHECK_STR_EQ(cell(&a, "alice", "current_connections"), "5");
	CHECK_STR_EQ(cell(&a, "alice", "current_client_connections"), "3");
	CHECK_STR_EQ(cell(&a, "admin", "current_client_connections"), "1"); /* its console session */
	CHECK_STR_EQ(cell(&a, "carol", "current_connections"), "0");
	CHECK_STR_EQ(cell(&a, "carol", "current_client_connections"), "0");
}

static void test_show_stats_totals_and_averages_since_start(void)
{
	static const char *const want[] = {
		"database",         "total_server_assignment_count",
		"total_xact_count", "total_query_count",
		"total_received",   "total_sent",
		"total_xact_time",  "total_query_time",
		"total_wait_time",  "total_client_parse_count",
		"total_server_parse_count", "total_bind_count",
		"avg_server_assignment_count",
		"avg_xact_count",   "avg_query_count",
		"avg_recv",         "avg_sent",
		"avg_xact_time",    "avg_query_time",
		"avg_wait_time",    "avg_client_parse_count",
		"avg_server_parse_count", "avg_bind_count",
	};
	setup();
	ask(&admin_cl, "SHOW STATS", &a);
	check_columns(&a, want, 23);
	CHECK_INT_EQ(a.types[1], OID_NUMERIC);
	CHECK_INT_EQ(a.nrows, 1);
	CHECK_STR_EQ(cell(&a, "app", "total_xact_count"), "100");
	CHECK_STR_EQ(cell(&a, "app", "total_received"), "10000");
	CHECK_STR_EQ(cell(&a, "app", "total_server_assignment_count"), "40");
	/* up 10 s, and stats_period (60 s) has not passed: averages since start */
	CHECK_ABOUT(cell(&a, "app", "avg_xact_count"), 10);
	CHECK_ABOUT(cell(&a, "app", "avg_query_count"), 30);
	CHECK_ABOUT(cell(&a, "app", "avg_recv"), 1000);
	CHECK_STR_EQ(cell(&a, "app", "avg_xact_time"), "2000");
	CHECK_STR_EQ(cell(&a, "app", "avg_query_time"), "500");
	CHECK_STR_EQ(cell(&a, "app", "avg_wait_time"), "250");

	CHECK_STR_EQ(cell(&a, "app", "total_client_parse_count"), "30");
	CHECK_STR_EQ(cell(&a, "app", "total_server_parse_count"), "4");
	CHECK_STR_EQ(cell(&a, "app", "total_bind_count"), "300");
	CHECK_ABOUT(cell(&a, "app", "avg_bind_count"), 30);

	ask(&admin_cl, "SHOW STATS_TOTALS", &a);
	CHECK_INT_EQ(a.ncols, 12);
	CHECK_STR_EQ(a.cols[9], "client_parse_count");
	CHECK_STR_EQ(a.cols[11], "bind_count");
	CHECK_STR_EQ(cell(&a, "app", "server_parse_count"), "4");
	CHECK_STR_EQ(a.cols[1], "server_assignment_count");
	CHECK_STR_EQ(a.cols[4], "bytes_received");
	CHECK_STR_EQ(cell(&a, "app", "xact_count"), "100");

	ask(&admin_cl, "SHOW STATS_AVERAGES", &a);
	CHECK_INT_EQ(a.ncols, 12);
	/* PgBouncer 1.25's names: the parse and bind averages keep their avg_ prefix */
	CHECK_STR_EQ(a.cols[8], "wait_time");
	CHECK_STR_EQ(a.cols[9], "avg_client_parse_count");
	CHECK_STR_EQ(a.cols[10], "avg_server_parse_count");
	CHECK_STR_EQ(a.cols[11], "avg_bind_count");
	CHECK_ABOUT(cell(&a, "app", "xact_count"), 10);

	ask(&admin_cl, "SHOW PREPARED_STATEMENTS", &a);
	CHECK_INT_EQ(a.nrows, 1);
	CHECK_STR_EQ(a.rows[0][col(&a, "server_name")], "PGPULSE_7");
	CHECK_STR_EQ(a.rows[0][col(&a, "query")], "SELECT $1");
	CHECK_STR_EQ(a.rows[0][col(&a, "binds")], "10");

	ask(&admin_cl, "SHOW TOTALS", &a);
	CHECK_STR_EQ(cell(&a, "total_ps_bind_count", "value"), "300");
	CHECK_STR_EQ(cell(&a, "total_xact_count", "value"), "100");
	CHECK_STR_EQ(cell(&a, "total_client_bytes", "value"), "10000");
	CHECK_ABOUT(cell(&a, "avg_query_count", "value"), 30);
}

static void test_stats_window_moves_after_stats_period(void)
{
	setup();
	w.started_at = wall_usec() - 120 * 1000000LL; /* up 2 min, period 60 s */
	ask(&admin_cl, "SHOW STATS", &a);
	CHECK_STR_EQ(cell(&a, "app", "avg_xact_count"), "0"); /* 100 xacts / 120 s */
	/* the window now starts at process start and the newer snapshot is now */
	pool_app.stats.xact_count += 600;
	admin_stats_window_age(60 * 1000000LL);
	ask(&admin_cl, "SHOW STATS", &a);
	/* rotated: older = the snapshot of 60 s ago (100 xacts): 600 more in 60 s */
	CHECK_ABOUT(cell(&a, "app", "avg_xact_count"), 10);
	admin_stats_window_reset();
}

static void test_show_lists_rows(void)
{
	setup();
	ask(&admin_cl, "SHOW LISTS", &a);
	CHECK_INT_EQ(a.ncols, 2);
	CHECK_STR_EQ(a.cols[0], "list");
	CHECK_STR_EQ(a.cols[1], "items");
	CHECK_INT_EQ(a.nrows, 14);
	CHECK_STR_EQ(cell(&a, "databases", "items"), "2");
	CHECK_STR_EQ(cell(&a, "pools", "items"), "1");
	CHECK_STR_EQ(cell(&a, "login_clients", "items"), "1");
	CHECK_STR_EQ(cell(&a, "used_clients", "items"), "6");
	CHECK_STR_EQ(cell(&a, "used_servers", "items"), "5");
	CHECK_STR_EQ(cell(&a, "dns_pending", "items"), "0");
}

static void test_show_mem_reports_buffers(void)
{
	static const char *const want[] = { "name", "size", "used", "free", "memtotal" };
	setup();
	ask(&admin_cl, "SHOW MEM", &a);
	check_columns(&a, want, 5);
	CHECK_STR_EQ(cell(&a, "iobuf_cache", "size"), "4096");
	CHECK_STR_EQ(cell(&a, "iobuf_cache", "used"), "3");
	CHECK_STR_EQ(cell(&a, "iobuf_cache", "free"), "5");
	CHECK_STR_EQ(cell(&a, "iobuf_cache", "memtotal"), "32768");
	CHECK_STR_EQ(cell(&a, "client_cache", "used"), "6");
	/* the telemetry of the one pool: at least its fixed part */
	CHECK_STR_EQ(cell(&a, "telemetry", "used"), "1");
	CHECK(atol(cell(&a, "telemetry", "memtotal")) >= (long)sizeof(struct pool_telemetry));
}

static void test_show_config_lists_parameters_by_name(void)
{
	static const char *const want[] = { "key", "value", "default", "changeable" };
	setup();
	ask(&stats_cl, "SHOW CONFIG", &a);
	check_columns(&a, want, 4);
	CHECK(a.nrows > 20 || a.nrows == 64); /* the decoder keeps 64 rows */
	CHECK(strcmp(a.rows[0][0], a.rows[1][0]) < 0);
}

static void test_show_version_and_help(void)
{
	setup();
	ask(&admin_cl, "SHOW VERSION", &a);
	CHECK_INT_EQ(a.ncols, 1);
	CHECK_STR_EQ(a.cols[0], "version");
	CHECK(strncmp(a.rows[0][0], "pgpulse ", 8) == 0);

	ask(&admin_cl, "show help", &a);
	CHECK_STR_EQ(a.notice, "Console usage");
	CHECK(strstr(a.notice_detail, "SHOW HELP|CONFIG") != NULL);
	CHECK_STR_EQ(a.tag, "SHOW");
	CHECK_INT_EQ(a.ncols, 0);
}

static void test_unknown_command_is_a_syntax_error(void)
{
	setup();
	ask(&admin_cl, "SELECT 1", &a);
	CHECK_STR_EQ(a.sqlstate, "42601");
	CHECK_STR_EQ(a.error, "invalid command 'SELECT 1', use SHOW HELP;");
	ask(&admin_cl, "SHOW NONSENSE", &a);
	CHECK_STR_EQ(a.sqlstate, "42601");
	ask(&admin_cl, "RELOAD now", &a);
	CHECK_STR_EQ(a.sqlstate, "42601");
	ask(&admin_cl, "SHOW", &a);
	CHECK_STR_EQ(a.sqlstate, "42601");
}

static void test_empty_query_gets_empty_query_response(void)
{
	setup();
	ask(&admin_cl, "", &a);
	CHECK(a.empty_query);
	CHECK_INT_EQ(a.n, 2);
}

static void test_stats_user_may_show_but_not_change(void)
{
	setup();
	ask(&stats_cl, "SHOW POOLS", &a);
	CHECK_STR_EQ(a.sqlstate, "");
	ask(&stats_cl, "RELOAD", &a);
	CHECK_STR_EQ(a.sqlstate, "42501");
	CHECK_INT_EQ(reload_calls, 0);
	ask(&stats_cl, "SHUTDOWN", &a);
	CHECK_STR_EQ(a.sqlstate, "42501");
	CHECK_INT_EQ(shutdown_asked, SHUTDOWN_NONE);
	ask(&stats_cl, "SET default_pool_size = 5", &a);
	CHECK_STR_EQ(a.sqlstate, "42501");
	CHECK_INT_EQ(w.cfg->default_pool_size, 20);
	ask(&stats_cl, "PAUSE", &a);
	CHECK_STR_EQ(a.sqlstate, "42501");
}

static void test_control_commands_reach_the_named_database(void)
{
	setup();
	memset(&ctl, 0, sizeof(ctl));
	ctl.answer_now = true;
	ask(&admin_cl, "PAUSE app", &a);
	CHECK_STR_EQ(a.tag, "PAUSE");
	CHECK_STR_EQ(ctl.verb, "pause");
	CHECK(ctl.db == &db_app);
	ask(&admin_cl, "resume", &a);
	CHECK_STR_EQ(a.tag, "RESUME");
	CHECK(ctl.db == NULL); /* every database */
	ask(&admin_cl, "DISABLE app", &a);
	CHECK_STR_EQ(a.tag, "DISABLE");
	CHECK_STR_EQ(ctl.verb, "disable");
	ask(&admin_cl, "RECONNECT", &a);
	CHECK_STR_EQ(ctl.verb, "reconnect");
	ask(&admin_cl, "KILL app", &a);
	CHECK_STR_EQ(a.tag, "KILL");
	CHECK(ctl.db == &db_app);
	ask(&admin_cl, "KILL_CLIENT 12", &a);
	CHECK_STR_EQ(a.tag, "KILL_CLIENT");
	CHECK_INT_EQ(ctl.client_id, 12);
}

static void test_control_commands_refuse_unknown_targets(void)
{
	setup();
	memset(&ctl, 0, sizeof(ctl));
	ask(&admin_cl, "PAUSE nosuchdb", &a);
	CHECK_STR_EQ(a.sqlstate, "3D000");
	CHECK_INT_EQ(ctl.calls, 0);
	ask(&admin_cl, "KILL_CLIENT 99", &a);
	CHECK_STR_EQ(a.sqlstate, "22023");
	ask(&admin_cl, "KILL_CLIENT abc", &a);
	CHECK_STR_EQ(a.sqlstate, "42601");
	ask(&admin_cl, "DISABLE", &a); /* needs a database */
	CHECK_STR_EQ(a.sqlstate, "42601");
}

static void test_waiting_command_writes_no_answer_yet(void)
{
	setup();
	memset(&ctl, 0, sizeof(ctl));
	ctl.answer_now = false;
	pktbuf_reset(&admin_cl.st.out);
	admin_handle_query(&admin_cl, "PAUSE");
	CHECK_STR_EQ(ctl.verb, "pause");
	/* no CommandComplete, no ReadyForQuery: control_poll answers later */
	CHECK_INT_EQ(admin_cl.st.out.len, 0);
}

static void test_show_latency_reports_percentiles_per_pool_and_in_total(void)
{
	static const char *const want[] = { "database", "user", "kind", "window", "count", "mean_us",
					    "p50_us", "p90_us", "p95_us", "p99_us", "p999_us", "max_us" };
	setup();
	/* 90 queries of 1000 us and 10 of 50000 us */
	for (int i = 0; i < 90; i++)
		telemetry_record(pool_app.tm, TK_QUERY, 1000);
	for (int i = 0; i < 10; i++)
		telemetry_record(pool_app.tm, TK_QUERY, 50000);
	ask(&admin_cl, "SHOW LATENCY", &a);
	CHECK_STR_EQ(a.sqlstate, "");
	check_columns(&a, want, 12);
	CHECK_INT_EQ(a.nrows, 2 * TK_COUNT); /* one pool and the total, five kinds each */
	CHECK_STR_EQ(a.rows[0][0], "app");
	CHECK_STR_EQ(a.rows[0][2], "query");
	CHECK_STR_EQ(a.rows[0][3], "1m");
	CHECK_STR_EQ(a.rows[0][4], "100");
	long p50 = atol(a.rows[0][6]); /* within the histogram's 1 % */
	CHECK(p50 >= 990 && p50 <= 1010);
	CHECK_STR_EQ(a.rows[0][11], "50000"); /* max is exact */
	long p95 = atol(a.rows[0][8]);
	CHECK(p95 >= 49500 && p95 <= 50500);
	CHECK_STR_EQ(a.rows[TK_COUNT][0], "*");
	CHECK_STR_EQ(a.rows[TK_COUNT][4], "100");
	ask(&admin_cl, "SHOW LATENCY all", &a);
	CHECK_STR_EQ(a.rows[0][3], "all");
	ask(&admin_cl, "SHOW LATENCY 2h", &a);
	CHECK_STR_EQ(a.sqlstate, "22023");
	ask(&admin_cl, "SHOW POOLS 5m", &a); /* only SHOW LATENCY takes a window */
	CHECK_STR_EQ(a.sqlstate, "42601");
	ask(&admin_cl, "SHOW POOLS extra", &a);
	CHECK_STR_EQ(a.sqlstate, "42601");
	ask(&admin_cl, "RELOAD now", &a);
	CHECK_STR_EQ(a.sqlstate, "42601");
}

static void test_set_changes_the_running_configuration(void)
{
	setup();
	apply_calls = 0;
	ask(&admin_cl, "SET default_pool_size = 33", &a);
	CHECK_STR_EQ(a.sqlstate, "");
	CHECK_STR_EQ(a.tag, "SET");
	CHECK_INT_EQ(w.cfg->default_pool_size, 33);
	CHECK_INT_EQ(apply_calls, 1); /* the pools follow at once */

	ask(&admin_cl, "SET server_check_query = 'select 2'", &a);
	CHECK_STR_EQ(a.tag, "SET");
	CHECK_STR_EQ(w.cfg->server_check_query, "select 2");

	ask(&admin_cl, "SET no_such_thing = 1", &a);
	CHECK_STR_EQ(a.sqlstate, "42704");
	ask(&admin_cl, "SET default_pool_size = lots", &a);
	CHECK_STR_EQ(a.sqlstate, "22023");
	ask(&admin_cl, "SET listen_port = 7000", &a);
	CHECK_STR_EQ(a.sqlstate, "55P02");

	/* what drivers send on connect is acknowledged and ignored, even for stats users */
	ask(&stats_cl, "SET extra_float_digits = 3", &a);
	CHECK_STR_EQ(a.tag, "SET");
	CHECK_STR_EQ(a.notice, "SET ignored");
	ask(&stats_cl, "SHOW client_encoding", &a);
	CHECK_STR_EQ(a.cols[0], "client_encoding");
	CHECK_STR_EQ(a.rows[0][0], "UTF8");
}

static void test_reload_and_shutdown(void)
{
	setup();
	ask(&admin_cl, "RELOAD;", &a);
	CHECK_STR_EQ(a.tag, "RELOAD");
	CHECK_INT_EQ(reload_calls, 1);

	reload_should_fail = true;
	ask(&admin_cl, "RELOAD", &a);
	CHECK_STR_EQ(a.sqlstate, "F0000");
	CHECK(strstr(a.error, "listen_port: not a number") != NULL);

	ask(&admin_cl, "SHUTDOWN WAIT_FOR_CLIENTS", &a);
	CHECK_STR_EQ(a.tag, "SHUTDOWN");
	CHECK_INT_EQ(shutdown_asked, SHUTDOWN_WAIT_CLIENTS);
	ask(&admin_cl, "shutdown wait_for_servers", &a);
	CHECK_INT_EQ(shutdown_asked, SHUTDOWN_WAIT_SERVERS);
	ask(&admin_cl, "SHUTDOWN", &a);
	CHECK_INT_EQ(shutdown_asked, SHUTDOWN_NOW);
	ask(&admin_cl, "SHUTDOWN later", &a);
	CHECK_STR_EQ(a.sqlstate, "42601");
}

static void test_admin_db_names(void)
{
	CHECK(admin_is_admin_db("pgpulse"));
	CHECK(admin_is_admin_db("pgbouncer"));
	CHECK(!admin_is_admin_db("PgBouncer"));
	CHECK(!admin_is_admin_db("app"));
	CHECK(!admin_is_admin_db(NULL));
}

static void test_show_clients_wait_is_the_age_of_the_running_request(void)
{
	setup();
	/* cl_linked's query went to its server 1.5 s ago and has not been answered */
	cl_linked.pending_syncs = 1;
	cl_linked.query_start = now_usec() - 1500000;
	ask(&admin_cl, "SHOW CLIENTS", &a);
	CHECK_STR_EQ(a.rows[0][col(&a, "wait")], "1");
	CHECK(atoi(a.rows[0][col(&a, "wait_us")]) >= 500000);
	CHECK_STR_EQ(a.rows[1][col(&a, "wait")], "0"); /* between requests */
	CHECK_STR_EQ(a.rows[1][col(&a, "wait_us")], "0");
	CHECK_STR_EQ(a.rows[2][col(&a, "wait")], "2"); /* waiting for a server 2.5 s */
}

static void test_show_sockets_lists_every_connection_with_its_buffer(void)
{
	static const char *const tail[] = { "recv_pos", "pkt_pos", "pkt_remain", "send_pos",
					    "send_remain", "pkt_avail", "send_avail" };
	static uint8_t bytes[64];

	setup();
	/* the console's own query (25 bytes) is in its buffer while it is answered */
	admin_cl.st.buf = bytes;
	admin_cl.st.wpos = 25;
	/* a result partly forwarded: 100 bytes in, 60 looked at and forwarded, 20 sent */
	sv_active.st.buf = bytes;
	sv_active.st.wpos = 100;
	sv_active.st.rpos = 60;
	sv_active.st.spos = 20;
	sv_active.st.fwd_left = 300;
	ask(&admin_cl, "SHOW SOCKETS", &a);
	CHECK_INT_EQ(a.ncols, 28);
	CHECK_STR_EQ(a.cols[20], "id");
	for (int i = 0; i < 7; i++)
		CHECK_STR_EQ(a.cols[21 + i], tail[i]);
	/* 3 pool clients, 5 servers, 2 consoles, 1 login */
	CHECK_INT_EQ(a.nrows, 11);
	CHECK_STR_EQ(a.rows[0][col(&a, "state")], "cl_active");
	CHECK_STR_EQ(a.rows[1][col(&a, "state")], "cl_active");
	CHECK_STR_EQ(a.rows[2][col(&a, "state")], "cl_waiting");
	CHECK_STR_EQ(a.rows[3][col(&a, "state")], "sv_active");
	CHECK_STR_EQ(a.rows[4][col(&a, "state")], "sv_used");
	CHECK_STR_EQ(a.rows[5][col(&a, "state")], "sv_idle");
	CHECK_STR_EQ(a.rows[6][col(&a, "state")], "sv_tested");
	CHECK_STR_EQ(a.rows[7][col(&a, "state")], "sv_login");
	CHECK_STR_EQ(a.rows[8][col(&a, "user")], "admin");
	CHECK_STR_EQ(a.rows[8][col(&a, "state")], "cl_active");
	CHECK_STR_EQ(a.rows[10][col(&a, "state")], "cl_login");
	CHECK_STR_EQ(a.rows[3][col(&a, "recv_pos")], "100");
	CHECK_STR_EQ(a.rows[3][col(&a, "pkt_pos")], "60");
	CHECK_STR_EQ(a.rows[3][col(&a, "pkt_remain")], "300");
	CHECK_STR_EQ(a.rows[3][col(&a, "send_pos")], "20");
	CHECK_STR_EQ(a.rows[3][col(&a, "pkt_avail")], "40");
	CHECK_STR_EQ(a.rows[3][col(&a, "send_avail")], "40");
	CHECK_STR_EQ(a.rows[5][col(&a, "recv_pos")], "0"); /* idle: no buffer */

	/* ACTIVE_SOCKETS: only the connections holding bytes */
	ask(&admin_cl, "SHOW ACTIVE_SOCKETS", &a);
	CHECK_INT_EQ(a.ncols, 28);
	CHECK_INT_EQ(a.nrows, 2);
	CHECK_STR_EQ(a.rows[0][col(&a, "type")], "S");
	CHECK_STR_EQ(a.rows[0][col(&a, "state")], "sv_active");
	CHECK_STR_EQ(a.rows[1][col(&a, "user")], "admin");
	CHECK_STR_EQ(a.rows[1][col(&a, "recv_pos")], "25");
	CHECK_STR_EQ(a.rows[1][col(&a, "pkt_avail")], "25");
	admin_cl.st.buf = NULL;
	sv_active.st.buf = NULL;
}

static void test_show_fds_and_dns_zones_have_pgbouncer_columns_and_no_rows(void)
{
	static const char *const fds[] = { "fd", "task", "user", "database", "addr", "port", "cancel",
					   "link", "client_encoding", "std_strings", "datestyle",
					   "timezone", "password", "scram_client_key", "scram_server_key" };
	static const char *const zones[] = { "zonename", "serial", "count" };

	setup();
	ask(&admin_cl, "SHOW FDS", &a);
	check_columns(&a, fds, 15);
	CHECK_INT_EQ(a.types[col(&a, "cancel")], OID_INT8);
	CHECK_INT_EQ(a.types[col(&a, "scram_client_key")], OID_BYTEA);
	CHECK_INT_EQ(a.nrows, 0); /* no online restart: nothing to hand over */
	CHECK_STR_EQ(a.tag, "SHOW");
	ask(&admin_cl, "SHOW DNS_ZONES", &a);
	check_columns(&a, zones, 3);
	CHECK_INT_EQ(a.types[1], OID_INT8);
	CHECK_INT_EQ(a.nrows, 0);
}

int main(void)
{
	log_setup(0, true);
	setenv("TZ", "UTC", 1);
	tzset();

	RUN(test_command_words_are_split_and_semicolon_is_optional);
	RUN(test_blank_query_is_empty);
	RUN(test_garbled_commands_are_refused);
	RUN(test_set_takes_equals_or_to_and_quoted_values);
	RUN(test_show_pools_has_pgbouncer_columns_and_counts);
	RUN(test_show_clients_lists_pool_and_admin_clients_not_logins);
	RUN(test_show_servers_uses_pgbouncer_state_words);
	RUN(test_show_clients_wait_is_the_age_of_the_running_request);
	RUN(test_show_sockets_lists_every_connection_with_its_buffer);
	RUN(test_show_fds_and_dns_zones_have_pgbouncer_columns_and_no_rows);
	RUN(test_show_databases_resolves_defaults);
	RUN(test_show_hosts_reads_each_host_and_counts_its_servers);
	RUN(test_show_users_lists_every_auth_file_user_in_pgbouncer_columns);
	RUN(test_show_stats_totals_and_averages_since_start);
	RUN(test_stats_window_moves_after_stats_period);
	RUN(test_show_lists_rows);
	RUN(test_show_mem_reports_buffers);
	RUN(test_show_config_lists_parameters_by_name);
	RUN(test_show_version_and_help);
	RUN(test_unknown_command_is_a_syntax_error);
	RUN(test_empty_query_gets_empty_query_response);
	RUN(test_stats_user_may_show_but_not_change);
	RUN(test_show_latency_reports_percentiles_per_pool_and_in_total);
	RUN(test_control_commands_reach_the_named_database);
	RUN(test_control_commands_refuse_unknown_targets);
	RUN(test_waiting_command_writes_no_answer_yet);
	RUN(test_set_changes_the_running_configuration);
	RUN(test_reload_and_shutdown);
	RUN(test_admin_db_names);
	return UNIT_REPORT("admin");
}
