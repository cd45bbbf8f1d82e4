/*
 * test_prepared: the named-statement maps and the reply queue without
 * sockets. The files of src/prepared/ are included to reach their
 * static parts; the stream calls they make are stubbed, so what pgpulse
 * "sent" is read back from the streams' out buffers.
 */
#include "../../src/prepared/statements.c"
#include "../../src/prepared/protocol.c"
#include "../../src/prepared/sqltext.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* ---- stubs: no sockets ---- */

struct worker *worker;
static bool pending; /* what stream_has_pending answers */

bool stream_has_pending(const struct stream *s)
{
	(void)s;
	return pending;
}

struct pktbuf *stream_out(struct stream *s)
{
	return &s->out;
}

bool stream_send_out(struct stream *s)
{
	(void)s;
	return true;
}

void stream_resume(struct stream *s)
{
	s->paused = false;
}

void stream_wait_for_peer_out(struct stream *s)
{
	(void)s;
}

/* fingerprints: off (the telemetry side is tested elsewhere) */
bool fp_enabled(void)
{
	return false;
}

uint64_t fp_generation(void)
{
	return 0;
}

struct fp_entry *fp_touch(const struct pool *p, uint64_t fp, const char *text)
{
	(void)p;
	(void)fp;
	(void)text;
	return NULL;
}

uint64_t fp_of_text(const struct pool *p, const char *text, size_t len, bool cached)
{
	(void)p;
	(void)cached;
	return ps_hash_bytes(text, len) | 1;
}

/* ---- a client linked to a server ---- */

static struct worker w;
static struct cfg cfg;
static struct pool pool;
static struct pool_db db = { .name = "appdb" };
static struct pool_user user = { .name = "app" };
static struct client cl;
static struct server sv;

static void setup(int max_prepared)
{
	worker = &w;
	prepared_client_free(&cl);
	prepared_server_free(&sv);
	prepared_shutdown();
	memset(&w, 0, sizeof(w));
	memset(&cfg, 0, sizeof(cfg));
	memset(&pool, 0, sizeof(pool));
	pktbuf_free(&cl.st.out);
	pktbuf_free(&sv.st.out);
	memset(&cl, 0, sizeof(cl));
	memset(&sv, 0, sizeof(sv));
	worker = &w;
	w.cfg = &cfg;
	cfg.max_prepared_statements = max_prepared;
	pool.pool_mode = POOL_TRANSACTION;
	pool.db = &db;
	pool.user = &user;
	cl.pool = &pool;
	cl.server = &sv;
	cl.state = CL_ACTIVE;
	sv.pool = &pool;
	sv.client = &cl;
	sv.state = SV_ACTIVE;
	pending = false;
}

/* one message as the stream would show it */
static struct pkt packet(uint8_t type, const void *body, size_t len, uint8_t *store)
{
	store[0] = type;
	uint32_t n = (uint32_t)len + 4;
	store[1] = (uint8_t)(n >> 24);
	store[2] = (uint8_t)(n >> 16);
	store[3] = (uint8_t)(n >> 8);
	store[4] = (uint8_t)n;
	memcpy(store + 5, body, len);
	return (struct pkt){ .type = type, .len = n + 1, .body = store + 5, .body_len = (uint32_t)len,
			     .complete = true, .avail = n + 1 };
}

static uint8_t buf[4096];

static enum ps_result request(uint8_t type, const void *body, size_t len)
{
	struct pkt p = packet(type, body, len, buf);
	return prepared_on_request(&cl, &p);
}

static enum pkt_action reply(uint8_t type, const void *body, size_t len)
{
	struct pkt p = packet(type, body, len, buf);
	return prepared_on_reply(&sv, &p);
}

static size_t parse_body(uint8_t *b, const char *name, const char *sql)
{
	size_t n = 0;
	memcpy(b + n, name, strlen(name) + 1);
	n += strlen(name) + 1;
	memcpy(b + n, sql, strlen(sql) + 1);
	n += strlen(sql) + 1;
	b[n++] = 0;
	b[n++] = 0;
	return n;
}

static size_t bind_body(uint8_t *b, const char *stmt)
{
	size_t n = 0;
	b[n++] = 0; /* unnamed portal */
	memcpy(b + n, stmt, strlen(stmt) + 1);
	n += strlen(stmt) + 1;
	memset(b + n, 0, 6); /* no formats, no parameters, no result formats */
	return n + 6;
}

/* the message types in a buffer, and drop them */
static void types_of(struct pktbuf *out, char *types, size_t size)
{
	size_t pos = 0, k = 0;
	while (pos + 5 <= out->len && k + 1 < size) {
		types[k++] = (char)out->data[pos];
		pos += 1 + proto_read_u32(out->data + pos + 1);
	}
	types[k] = '\0';
	pktbuf_reset(out);
}

static bool out_has(const struct pktbuf *out, const char *s)
{
	return out->len && memmem(out->data, out->len, s, strlen(s)) != NULL;
}

/* ---- tests ---- */

static void test_deallocate_target_folds_like_postgresql(void)
{
	char name[64];
	CHECK(ps_deallocate_target("DEALLOCATE _pg3_0", name, sizeof(name)));
	CHECK_STR_EQ(name, "_pg3_0");
	CHECK(ps_deallocate_target("  deallocate prepare  S1 ; ", name, sizeof(name)));
	CHECK_STR_EQ(name, "s1");
	CHECK(ps_deallocate_target("DEALLOCATE \"Mi\"\"xed\"", name, sizeof(name)));
	CHECK_STR_EQ(name, "Mi\"xed");
	CHECK(!ps_deallocate_target("DEALLOCATE ALL", name, sizeof(name)));
	CHECK(ps_deallocate_target("DEALLOCATE \"all\"", name, sizeof(name)));
	CHECK(!ps_deallocate_target("DEALLOCATE a; SELECT 1", name, sizeof(name)));
	CHECK(!ps_deallocate_target("DEALLOCATE \"open", name, sizeof(name)));
	CHECK(!ps_deallocate_target("DEALLOCATEx", name, sizeof(name)));
	CHECK(!ps_deallocate_target("SELECT 1", name, sizeof(name)));
	/* comments are blanks; an unnamed Parse's text is one statement */
	CHECK(ps_deallocate_target("/* sqlcommenter */ DEALLOCATE s1 -- psycopg", name, sizeof(name)));
	CHECK_STR_EQ(name, "s1");
	CHECK(ps_deallocate_target("DEALLOCATE/**/\"S 1\";;", name, sizeof(name)));
	CHECK_STR_EQ(name, "S 1");
	CHECK(ps_deallocate_target("DEALLOCATE prepare", name, sizeof(name)));
	CHECK_STR_EQ(name, "prepare");
	CHECK(!ps_deallocate_target("DEALLOCATE a; /* open", name, sizeof(name)));
}

/* the statements of a simple Query, as PostgreSQL runs them */
static void test_query_statements_split_like_postgresql(void)
{
	const char *sql = "-- lead\nSELECT ';', \"a;\" ; ;/* x; */ DEALLOCATE s1 -- c\n; SELECT $t$;$t$";
	const char *pos = sql, *start, *end;
	char name[64];
	CHECK(ps_sql_next(sql, &pos, &start, &end));
	CHECK(strncmp(start, "SELECT ';', \"a;\" ", (size_t)(end - start)) == 0);
	CHECK(!ps_sql_deallocates(start, end, name, sizeof(name)));
	CHECK(ps_sql_next(sql, &pos, &start, &end));
	CHECK(ps_sql_deallocates(start, end, name, sizeof(name)));
	CHECK_STR_EQ(name, "s1");
	CHECK(*end == ';');
	CHECK(ps_sql_next(sql, &pos, &start, &end));
	CHECK_STR_EQ(start, "SELECT $t$;$t$");
	CHECK(*end == '\0');
	CHECK(!ps_sql_next(sql, &pos, &start, &end));
	CHECK(*pos == '\0');
	pos = "  -- nothing\n ; ";
	CHECK(!ps_sql_next(pos, &pos, &start, &end));
}

static void test_drop_all_texts_are_recognised(void)
{
	bool alone;
	CHECK(ps_drops_all("DEALLOCATE ALL", &alone) && alone);
	CHECK(ps_drops_all("  deallocate prepare all ;  ", &alone));
	CHECK(ps_drops_all("discard\tALL;", &alone));
	CHECK(!ps_drops_all("DEALLOCATE all_stmts", &alone));
	CHECK(!ps_drops_all("DEALLOCATE \"ALL\"", &alone));
	CHECK(!ps_drops_all("DISCARD PLANS", &alone));
	CHECK(!ps_drops_all("DISCARDALL", &alone));
	/* in any statement of a text, after comments, around empty statements */
	CHECK(ps_drops_all("DEALLOCATE ALL; SELECT 1", &alone) && !alone);
	CHECK(ps_drops_all("SELECT 1; DEALLOCATE ALL", &alone) && !alone);
	CHECK(ps_drops_all("/* reset */ DEALLOCATE ALL", &alone) && alone);
	CHECK(ps_drops_all("/* a /* nested */ one */DEALLOCATE/**/ALL", &alone));
	CHECK(ps_drops_all("DEALLOCATE ALL;;", &alone) && alone);
	CHECK(ps_drops_all("-- x\nDISCARD ALL -- y", &alone) && alone);
	CHECK(ps_drops_all("SELECT 'a;b', $$;$$, $q$ $$; $q$, E'\\';', \"x;\"; DEALLOCATE ALL", &alone));
	/* never inside quotes, comments or another statement */
	CHECK(!ps_drops_all("SELECT 'x; DEALLOCATE ALL'", &alone));
	CHECK(!ps_drops_all("SELECT $f$; DEALLOCATE ALL; $f$", &alone));
	CHECK(!ps_drops_all("SELECT E'\\'; DEALLOCATE ALL'", &alone));
	CHECK(!ps_drops_all("SELECT 1 -- ; DEALLOCATE ALL", &alone));
	CHECK(!ps_drops_all("SELECT 1 /* ; /* */ DEALLOCATE ALL */", &alone));
	CHECK(!ps_drops_all("-- DEALLOCATE ALL", &alone));
	CHECK(!ps_drops_all("SELECT 'DISCARD ALL'", &alone));
	CHECK(!ps_drops_all("CREATE RULE r AS ON INSERT TO t DO (SELECT 1; DEALLOCATE ALL)", &alone));
	/* a text PostgreSQL's lexer refuses runs nothing */
	CHECK(!ps_drops_all("DEALLOCATE ALL; SELECT 'open", &alone));
	CHECK(!ps_drops_all("DEALLOCATE ALL; /* open", &alone));
	/* $1 is a parameter, a$b$ a name: neither opens a dollar quote */
	CHECK(ps_drops_all("SELECT $1; DEALLOCATE ALL", &alone));
	CHECK(ps_drops_all("SELECT a$b$; DEALLOCATE ALL", &alone));
	/* the loose test may say yes to more (other statements around it), never no to one of these */
	CHECK(ps_may_drop_all("SELECT 1; deallocate all"));
	CHECK(!ps_may_drop_all("DEALLOCATE all_stmts"));
	CHECK(!ps_may_drop_all("SELECT 1 UNION SELECT 2"));
	CHECK(!ps_may_drop_all("DEALLOCATE s1"));
	CHECK(!ps_may_drop_all("DEALLOCATE _pg3_0; SELECT 'small'"));
	CHECK(ps_may_drop_all("/* x */ DEALLOCATE\nALL"));
}

static void test_names_survive_deletes_in_collision_chains(void)
{
	char name[32];
	setup(200);
	uint8_t blob[] = "SELECT 1\0\0";
	struct ps_stmt *st = ps_stmt_create(blob, sizeof(blob) - 1, 1, 0);
	ps_stmt_hold(st);
	for (int i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		ps_name_add(&cl, name, st);
	}
	for (int i = 0; i < 500; i += 2) {
		snprintf(name, sizeof(name), "n%d", i);
		ps_name_remove(cl.ps, name, NULL);
	}
	CHECK_INT_EQ(cl.ps->count, 250);
	CHECK_INT_EQ(st->clients, 250);
	for (int i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		CHECK((ps_name_find(cl.ps, name) != NULL) == (i % 2 == 1));
	}
	prepared_client_free(&cl);
	CHECK_INT_EQ(st->refs, 1);
	ps_stmt_drop(st);
}

static void test_server_set_evicts_the_least_recently_used(void)
{
	setup(2);
	uint8_t b[256];
	char types[32];
	const char *sql[] = { "SELECT 1", "SELECT 2", "SELECT 3" };
	for (int i = 0; i < 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "s%d", i);
		CHECK_INT_EQ(request('P', b, parse_body(b, name, sql[i])), PS_SENT);
	}
	/* each Parse preceded by its Close; the third evicts PGPULSE_1 */
	types_of(&sv.st.out, types, sizeof(types));
	CHECK_STR_EQ(types, "CPCPCCP");
	CHECK_INT_EQ(sv.ps->count, 2);
	CHECK_INT_EQ(sv.ps->evictions, 1);
	/* s0 is used again: prepared again, evicting the least recently used (PGPULSE_2) */
	CHECK_INT_EQ(request('B', b, bind_body(b, "s0")), PS_SENT);
	CHECK(out_has(&sv.st.out, "PGPULSE_2"));
	types_of(&sv.st.out, types, sizeof(types));
	CHECK_STR_EQ(types, "CCPB");
}

static void test_same_text_from_another_client_is_answered_by_pgpulse(void)
{
	setup(200);
	uint8_t b[256];
	char types[16];
	CHECK_INT_EQ(request('P', b, parse_body(b, "a", "SELECT 42")), PS_SENT);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(reply('3', "", 0), PKT_CONSUMED); /* pgpulse's Close */
	CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);  /* the client's ParseComplete */
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK(!prepared_server_busy(&sv));
	pktbuf_reset(&sv.st.out);
	/* a second name for the same statement: nothing goes to the server */
	CHECK_INT_EQ(request('P', b, parse_body(b, "b", "SELECT 42")), PS_SENT);
	CHECK_INT_EQ(sv.st.out.len, 0);
	types_of(&cl.st.out, types, sizeof(types));
	CHECK_STR_EQ(types, "1");
	CHECK_INT_EQ(pool.stats.client_parse_count, 2);
	CHECK_INT_EQ(pool.stats.server_parse_count, 1);
}

static void test_error_undoes_what_the_skipped_messages_did(void)
{
	setup(200);
	uint8_t b[256];
	char types[16];
	/* Parse x (sent), Bind x, Parse y of the same text (answered later), Sync */
	CHECK_INT_EQ(request('P', b, parse_body(b, "x", "SELECT 7")), PS_SENT);
	CHECK_INT_EQ(request('B', b, bind_body(b, "x")), PS_SENT);
	CHECK_INT_EQ(request('P', b, parse_body(b, "y", "SELECT 7")), PS_SENT);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(cl.ps->count, 2);
	CHECK_INT_EQ(reply('3', "", 0), PKT_CONSUMED);
	/* the Parse fails on the server */
	uint8_t err[] = "SERROR\0C42601\0Msyntax error\0";
	CHECK_INT_EQ(reply('E', err, sizeof(err)), PKT_FORWARD);
	/* neither name exists, the server has nothing, the answered ParseComplete is gone */
	CHECK_INT_EQ(cl.ps->count, 0);
	CHECK_INT_EQ(sv.ps->count, 0);
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	types_of(&cl.st.out, types, sizeof(types));
	CHECK_STR_EQ(types, "");
	CHECK(!prepared_server_busy(&sv));
}

static void test_unknown_name_is_made_a_real_error_and_replaced(void)
{
	setup(200);
	uint8_t b[256];
	char types[16];
	CHECK_INT_EQ(request('B', b, bind_body(b, "ghost")), PS_SKIPPED);
	CHECK(out_has(&sv.st.out, PS_PROBE_NAME));
	CHECK_INT_EQ(request('E', "\0\0\0\0", 5), PS_SKIPPED); /* skipped until Sync */
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	uint8_t err[] = "SERROR\0C26000\0Mprepared statement \"PGPULSE_NONE\" does not exist\0";
	CHECK_INT_EQ(reply('E', err, sizeof(err)), PKT_CONSUMED);
	CHECK(out_has(&cl.st.out, "prepared statement \"ghost\" does not exist"));
	types_of(&cl.st.out, types, sizeof(types));
	CHECK_STR_EQ(types, "E");
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK(!prepared_server_busy(&sv));
}

static void test_answers_wait_for_bytes_in_flight_to_the_client(void)
{
	setup(200);
	uint8_t b[256];
	char types[16];
	CHECK_INT_EQ(request('P', b, parse_body(b, "a", "SELECT 5")), PS_SENT);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	reply('3', "", 0);
	reply('1', "", 0);
	reply('Z', "I", 1);
	pending = true; /* the server stream still has bytes for the client */
	CHECK_INT_EQ(request('C', "Sa", 3), PS_SENT);
	CHECK_INT_EQ(cl.st.out.len, 0);
	prepared_server_flushed(&sv); /* still pending: nothing */
	CHECK_INT_EQ(cl.st.out.len, 0);
	pending = false;
	prepared_server_flushed(&sv);
	types_of(&cl.st.out, types, sizeof(types));
	CHECK_STR_EQ(types, "3");
	/* the statement stays on the server for whoever comes next */
	CHECK_INT_EQ(sv.ps->count, 1);
	CHECK_INT_EQ(cl.ps->count, 0);
}

/* the unnamed Parse, Bind and Execute of one query, as drivers send them */
static void unnamed_query(const char *sql)
{
	uint8_t b[256];
	CHECK_INT_EQ(request('P', b, parse_body(b, "", sql)), PS_FORWARD);
	CHECK_INT_EQ(request('B', b, bind_body(b, "")), PS_FORWARD);
	CHECK_INT_EQ(request('E', "\0\0\0\0", 5), PS_FORWARD);
}

static const uint8_t select_tag[] = "SELECT 1";

/* "a" prepared and confirmed on the server, so that the same text under another name is answered by pgpulse */
static void server_has_select_42(void)
{
	uint8_t b[256];
	CHECK_INT_EQ(request('P', b, parse_body(b, "a", "SELECT 42")), PS_SENT);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(reply('3', "", 0), PKT_CONSUMED);
	CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	pktbuf_reset(&sv.st.out);
	pktbuf_reset(&cl.st.out);
}

static void test_answered_parse_waits_for_a_thousand_unnamed_replies_before_it(void)
{
	setup(200);
	uint8_t b[256];
	char types[16];
	server_has_select_42();
	for (int i = 0; i < 1000; i++)
		unnamed_query("SELECT 1");
	CHECK_INT_EQ(request('P', b, parse_body(b, "b", "SELECT 42")), PS_SENT);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(sv.st.out.len, 0); /* nothing of pgpulse's own went to the server */
	CHECK(sv.ps->q_len <= 2);          /* the unnamed messages took no entries */
	for (int i = 0; i < 1000; i++) {
		CHECK_INT_EQ(cl.st.out.len, 0); /* the answer never overtakes the server's replies */
		CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);
		CHECK_INT_EQ(reply('2', "", 0), PKT_FORWARD);
		CHECK_INT_EQ(reply('D', "\0\1\0\0\0\1" "1", 7), PKT_FORWARD);
		CHECK_INT_EQ(reply('C', select_tag, sizeof(select_tag)), PKT_FORWARD);
	}
	CHECK_INT_EQ(cl.st.out.len, 0);
	prepared_server_flushed(&sv); /* the 1000th CommandComplete reached the client: now */
	types_of(&cl.st.out, types, sizeof(types));
	CHECK_STR_EQ(types, "1");
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK(!prepared_server_busy(&sv));
	CHECK(ps_name_find(cl.ps, "b") != NULL);
}

static void test_injected_parse_after_a_thousand_unnamed_parses_is_swallowed_in_its_place(void)
{
	setup(200);
	uint8_t b[256];
	server_has_select_42();
	/* the server forgets it (another client's DISCARD ALL would do that): the next Bind prepares it */
	ps_held_clear(sv.ps);
	for (int i = 0; i < 1000; i++)
		CHECK_INT_EQ(request('P', b, parse_body(b, "", "SELECT 1")), PS_FORWARD);
	CHECK_INT_EQ(request('B', b, bind_body(b, "a")), PS_SENT);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	for (int i = 0; i < 1000; i++)
		CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD); /* the client's */
	CHECK_INT_EQ(reply('3', "", 0), PKT_CONSUMED);        /* pgpulse's Close */
	CHECK_INT_EQ(reply('1', "", 0), PKT_CONSUMED);        /* pgpulse's Parse */
	CHECK_INT_EQ(reply('2', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK(!prepared_server_busy(&sv));
	CHECK(ps_held_find(sv.ps, ps_name_find(cl.ps, "a")->stmt) != NULL);
}

static void test_error_in_the_middle_of_unnamed_messages_undoes_the_named_parse_after_it(void)
{
	setup(200);
	uint8_t b[256];
	unnamed_query("SELECT 1");
	unnamed_query("SELECT 1/0");
	unnamed_query("SELECT 2");
	CHECK_INT_EQ(request('P', b, parse_body(b, "x", "SELECT 7")), PS_SENT);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	unnamed_query("SELECT 3"); /* the next batch runs */
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(cl.ps->count, 1);
	CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('2', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('C', select_tag, sizeof(select_tag)), PKT_FORWARD);
	CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('2', "", 0), PKT_FORWARD);
	uint8_t err[] = "SERROR\0C22012\0Mdivision by zero\0";
	CHECK_INT_EQ(reply('E', err, sizeof(err)), PKT_FORWARD);
	/* PostgreSQL skipped the rest of the batch, x's Close and Parse too */
	CHECK_INT_EQ(cl.ps->count, 0);
	CHECK_INT_EQ(sv.ps->count, 0);
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('2', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('C', select_tag, sizeof(select_tag)), PKT_FORWARD);
	CHECK(prepared_server_busy(&sv));
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK(!prepared_server_busy(&sv));
}

static void test_error_before_any_sync_skips_the_clients_next_named_messages(void)
{
	setup(200);
	uint8_t b[256];
	server_has_select_42();
	unnamed_query("SELECT 1/0");
	CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('2', "", 0), PKT_FORWARD);
	uint8_t err[] = "SERROR\0C22012\0Mdivision by zero\0";
	CHECK_INT_EQ(reply('E', err, sizeof(err)), PKT_FORWARD);
	/* what the client sends until its Sync is skipped, as PostgreSQL would: no Bind rewritten, no name made */
	CHECK_INT_EQ(request('B', b, bind_body(b, "a")), PS_SKIPPED);
	CHECK_INT_EQ(request('P', b, parse_body(b, "y", "SELECT 42")), PS_SKIPPED);
	CHECK_INT_EQ(sv.st.out.len, 0);
	CHECK_INT_EQ(cl.st.out.len, 0);
	CHECK(ps_name_find(cl.ps, "y") == NULL);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK(!prepared_server_busy(&sv));
	/* and the next batch is served again */
	unnamed_query("SELECT 1");
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK(prepared_server_busy(&sv));
}

static void test_copy_end_sent_ahead_of_copy_in_response_drops_the_ignored_sync(void)
{
	setup(200);
	uint8_t b[256];
	/* libpq's COPY through the extended protocol: P B E S, then the data, CopyDone and a Sync */
	unnamed_query("COPY t FROM STDIN");
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(request('d', "1\n", 2), PS_FORWARD);
	CHECK_INT_EQ(request('c', "", 0), PS_FORWARD);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('2', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('G', "\0\0\0", 3), PKT_FORWARD); /* the first Sync came during COPY: ignored */
	uint8_t tag[] = "COPY 1";
	CHECK_INT_EQ(reply('C', tag, sizeof(tag)), PKT_FORWARD);
	CHECK_INT_EQ(sv.ps->q_len, 1); /* the second Sync alone */
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK(!prepared_server_busy(&sv));
	/* the same, with the CopyInResponse first */
	unnamed_query("COPY t FROM STDIN");
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('2', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('G', "\0\0\0", 3), PKT_FORWARD);
	CHECK(sv.ps->copy_in);
	CHECK_INT_EQ(request('d', "1\n", 2), PS_FORWARD);
	CHECK_INT_EQ(request('c', "", 0), PS_FORWARD);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(reply('C', tag, sizeof(tag)), PKT_FORWARD);
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK(!prepared_server_busy(&sv));
	(void)b;
}

static void test_simple_query_ahead_of_unnamed_messages_keeps_its_place(void)
{
	setup(200);
	uint8_t b[256];
	char types[16];
	server_has_select_42();
	/* a simple Query let through untracked, then unnamed messages, then an answered Parse */
	CHECK_INT_EQ(request('Q', "SELECT 1", 9), PS_FORWARD);
	unnamed_query("SELECT 2");
	CHECK_INT_EQ(request('P', b, parse_body(b, "b", "SELECT 42")), PS_SENT);
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	/* the Query's replies: its CommandComplete and ReadyForQuery count for no unnamed message */
	CHECK_INT_EQ(reply('T', "\0\0", 2), PKT_FORWARD);
	CHECK_INT_EQ(reply('C', select_tag, sizeof(select_tag)), PKT_FORWARD);
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	prepared_server_flushed(&sv);
	CHECK_INT_EQ(cl.st.out.len, 0);
	CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('2', "", 0), PKT_FORWARD);
	prepared_server_flushed(&sv);
	CHECK_INT_EQ(cl.st.out.len, 0);
	CHECK_INT_EQ(reply('C', select_tag, sizeof(select_tag)), PKT_FORWARD);
	prepared_server_flushed(&sv);
	types_of(&cl.st.out, types, sizeof(types));
	CHECK_STR_EQ(types, "1");
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK(!prepared_server_busy(&sv));
}

static void test_copy_data_pipelined_behind_a_simple_query_keeps_the_syncs_after_it(void)
{
	setup(200);
	uint8_t b[256];
	uint8_t tag[] = "COPY 1";
	/* psql-like: the COPY, its data and its end in one write, then an extended batch */
	CHECK_INT_EQ(request('Q', "COPY t FROM STDIN", 18), PS_FORWARD);
	CHECK_INT_EQ(request('d', "1\n", 2), PS_FORWARD);
	CHECK_INT_EQ(request('c', "", 0), PS_FORWARD);
	unnamed_query("SELECT 1");
	CHECK_INT_EQ(request('S', "", 0), PS_FORWARD);
	CHECK_INT_EQ(reply('G', "\0\0\0", 3), PKT_FORWARD);
	CHECK(!sv.ps->copy_in); /* the COPY already ended: the Sync after it is PostgreSQL's to answer */
	CHECK_INT_EQ(reply('C', tag, sizeof(tag)), PKT_FORWARD);
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK_INT_EQ(reply('1', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('2', "", 0), PKT_FORWARD);
	CHECK_INT_EQ(reply('C', select_tag, sizeof(select_tag)), PKT_FORWARD);
	CHECK(prepared_server_busy(&sv));
	CHECK_INT_EQ(reply('Z', "I", 1), PKT_FORWARD);
	CHECK(!prepared_server_busy(&sv)); /* the server can go back to the pool */
	(void)b;
}

int main(void)
{
	RUN(test_deallocate_target_folds_like_postgresql);
	RUN(test_query_statements_split_like_postgresql);
	RUN(test_drop_all_texts_are_recognised);
	RUN(test_names_survive_deletes_in_collision_chains);
	RUN(test_server_set_evicts_the_least_recently_used);
	RUN(test_same_text_from_another_client_is_answered_by_pgpulse);
	RUN(test_error_undoes_what_the_skipped_messages_did);
	RUN(test_unknown_name_is_made_a_real_error_and_replaced);
	RUN(test_answers_wait_for_bytes_in_flight_to_the_client);
	RUN(test_answered_parse_waits_for_a_thousand_unnamed_replies_before_it);
	RUN(test_injected_parse_after_a_thousand_unnamed_parses_is_swallowed_in_its_place);
	RUN(test_error_in_the_middle_of_unnamed_messages_undoes_the_named_parse_after_it);
	RUN(test_error_before_any_sync_skips_the_clients_next_named_messages);
	RUN(test_copy_end_sent_ahead_of_copy_in_response_drops_the_ignored_sync);
	RUN(test_simple_query_ahead_of_unnamed_messages_keeps_its_place);
	RUN(test_copy_data_pipelined_behind_a_simple_query_keeps_the_syncs_after_it);
	setup(0);
	prepared_client_free(&cl);
	prepared_server_free(&sv);
	prepared_shutdown();
	pktbuf_free(&cl.st.out);
	pktbuf_free(&sv.st.out);
	return UNIT_REPORT("prepared");
}
