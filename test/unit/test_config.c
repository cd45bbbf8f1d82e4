/*
 * test_config: the config module as an operator meets it — ini files written
 * into a temporary directory, loaded, and the values, errors and warnings
 * checked. Warnings go through log.c to stderr; tests that check a warning
 * point stderr at a file for the duration of the load and read it back.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hosts.h"
#include "log.h"
#include "unit.h"

#define SEC INT64_C(1000000)

static char tmpdir[64];
static char written[64][256]; /* every file and directory made, removed at the end */
static int n_written;

/* write `text` to tmpdir/name; the full path goes to path */
static void write_file(const char *name, const char *text, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
	if (n_written < 64)
		snprintf(written[n_written++], sizeof(written[0]), "%s", path);
}

static void make_dir(const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	if (mkdir(path, 0700) != 0) {
		perror(path);
		exit(2);
	}
	if (n_written < 64)
		snprintf(written[n_written++], sizeof(written[0]), "%s", path);
}

static void remove_tmpdir(void)
{
	/* newest first, so files go before the directories holding them */
	for (int i = n_written - 1; i >= 0; i--)
		remove(written[i]);
	rmdir(tmpdir);
}

/* write a file and load it; err gets the error text on failure */
static struct cfg *load_text(const char *name, const char *text, char *path, size_t pathlen,
			     char *err, size_t errlen)
{
	write_file(name, text, path, pathlen);
	return cfg_load(path, err, errlen);
}

/* stderr into a file while a load runs, so its warnings can be checked */
static int saved_stderr = -1;
static char capture_path[256];

static void capture_begin(void)
{
	snprintf(capture_path, sizeof(capture_path), "%s/stderr.txt", tmpdir);
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

/* the captured text, in a static buffer */
static const char *capture_end(void)
{
	static char text[8192];
	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	FILE *f = fopen(capture_path, "r");
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
	text[n] = '\0';
	if (f)
		fclose(f);
	remove(capture_path);
	return text;
}

/* ------------------------------------------------------------------------ */

static void test_defaults_follow_pgbouncer(void)
{
	struct cfg *c = cfg_new_default();
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_INT_EQ(c->auth_type, AUTH_MD5);
	CHECK_INT_EQ(c->pool_mode, POOL_SESSION);
	CHECK_STR_EQ(c->listen_addr, "");
	CHECK_INT_EQ(c->listen_port, 6432);
	CHECK_STR_EQ(c->unix_socket_dir, "/tmp");
	CHECK_INT_EQ(c->unix_socket_mode, 0777);
	CHECK_INT_EQ(c->listen_backlog, 128);
	CHECK_INT_EQ(c->max_client_conn, 100);
	CHECK_INT_EQ(c->default_pool_size, 20);
	CHECK_INT_EQ(c->min_pool_size, 0);
	CHECK_INT_EQ(c->reserve_pool_timeout, 5 * SEC);
	CHECK_INT_EQ(c->overflow_idle_timeout, 60 * SEC);
	CHECK_INT_EQ(c->query_wait_timeout, 120 * SEC);
	CHECK_INT_EQ(c->server_lifetime, 3600 * SEC);
	CHECK_INT_EQ(c->server_idle_timeout, 600 * SEC);
	CHECK_INT_EQ(c->client_login_timeout, 60 * SEC);
	CHECK_INT_EQ(c->cancel_wait_timeout, 10 * SEC);
	CHECK_INT_EQ(c->stats_period, 60 * SEC);
	CHECK_INT_EQ(c->pkt_buf, 4096);
	CHECK_INT_EQ(c->max_packet_size, 2147483647);
	CHECK_INT_EQ(c->sbuf_loopcnt, 5);
	CHECK_INT_EQ(c->max_prepared_statements, 200);
	CHECK(c->tcp_keepalive);
	CHECK(c->log_connections && c->log_disconnections && c->log_pooler_errors && c->log_stats);
	CHECK(!c->syslog && !c->so_reuseport && !c->server_round_robin);
	CHECK_STR_EQ(c->syslog_ident, "pgpulse");
	CHECK_STR_EQ(c->syslog_facility, "daemon");
	CHECK_STR_EQ(c->server_reset_query, "DISCARD ALL");
	CHECK_STR_EQ(c->server_check_query, "select 1");
	CHECK_STR_EQ(c->track_extra_parameters, "IntervalStyle");
	CHECK_STR_EQ(c->client_tls_sslmode, "disable");
	CHECK_STR_EQ(c->server_tls_sslmode, "prefer");
	CHECK(c->auth_file != NULL && c->auth_file[0] == '\0');
	CHECK_INT_EQ(c->n_dbs, 0);
	CHECK_INT_EQ(c->n_users, 0);
	cfg_free(c);
}

static void test_empty_main_section_gives_defaults(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("empty.ini", "[pgpulse]\n", path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_STR_EQ(c->conffile, path);
	CHECK_INT_EQ(c->listen_port, 6432);
	CHECK_INT_EQ(c->auth_type, AUTH_MD5);
	CHECK_INT_EQ(c->n_files, 1);
	cfg_free(c);
}

static void test_every_value_type_is_read_from_the_file(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("types.ini",
				  "[pgpulse]\n"
				  "listen_port = 7432\n"                 /* int */
				  "so_reuseport = yes\n"                 /* bool */
				  "admin_users = alice, bob\n"           /* string */
				  "server_lifetime = 2min\n"             /* duration with unit */
				  "pkt_buf = 8kB\n"                      /* size */
				  "pool_mode = Transaction\n"            /* enum, any case */
				  "unix_socket_mode = 0770\n"            /* octal */
				  "server_tls_sslmode = VERIFY-FULL\n"   /* keyword */
				  "syslog_facility = local3\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "  load error: %s\n", err);
		return;
	}
	CHECK_INT_EQ(c->listen_port, 7432);
	CHECK(c->so_reuseport);
	CHECK_STR_EQ(c->admin_users, "alice, bob");
	CHECK_INT_EQ(c->server_lifetime, 120 * SEC);
	CHECK_INT_EQ(c->pkt_buf, 8192);
	CHECK_INT_EQ(c->pool_mode, POOL_TRANSACTION);
	CHECK_INT_EQ(c->unix_socket_mode, 0770);
	CHECK_STR_EQ(c->server_tls_sslmode, "verify-full");
	CHECK_STR_EQ(c->syslog_facility, "local3");
	cfg_free(c);
}

static void test_booleans_accept_every_spelling(void)
{
	static const char *const yes[] = { "1", "on", "ON", "true", "True", "yes", "YES" };
	static const char *const no[] = { "0", "off", "OFF", "false", "False", "no", "NO" };
	char err[256];
	struct cfg *c = cfg_new_default();

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		c->server_round_robin = false;
		CHECK(cfg_set(c, "server_round_robin", yes[i], err, sizeof(err)));
		CHECK(c->server_round_robin);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		c->server_round_robin = true;
		CHECK(cfg_set(c, "server_round_robin", no[i], err, sizeof(err)));
		CHECK(!c->server_round_robin);
	}
	CHECK(!cfg_set(c, "server_round_robin", "maybe", err, sizeof(err)));
	CHECK(strstr(err, "invalid boolean \"maybe\"") != NULL);
	cfg_free(c);
}

static void test_durations_take_units_or_plain_seconds(void)
{
	int64_t us = -1;
	CHECK(cfg_parse_duration("250ms", &us) && us == 250000);
	CHECK(cfg_parse_duration("5s", &us) && us == 5 * SEC);
	CHECK(cfg_parse_duration("2min", &us) && us == 120 * SEC);
	CHECK(cfg_parse_duration("1h", &us) && us == 3600 * SEC);
	CHECK(cfg_parse_duration("1d", &us) && us == 86400 * SEC);
	CHECK(cfg_parse_duration("10us", &us) && us == 10);
	CHECK(cfg_parse_duration("1.5", &us) && us == 1500000);
	CHECK(cfg_parse_duration("0.5", &us) && us == 500000);
	CHECK(cfg_parse_duration("0.1", &us) && us == 100000);
	CHECK(cfg_parse_duration("120", &us) && us == 120 * SEC);
	CHECK(cfg_parse_duration("0", &us) && us == 0);
	CHECK(cfg_parse_duration(" 5 s ", &us) && us == 5 * SEC);
	CHECK(cfg_parse_duration("1.5min", &us) && us == 90 * SEC);
	CHECK(cfg_parse_duration("250MS", &us) && us == 250000);

	CHECK(!cfg_parse_duration("", &us));
	CHECK(!cfg_parse_duration("abc", &us));
	CHECK(!cfg_parse_duration("5x", &us));
	CHECK(!cfg_parse_duration("-1", &us));
	CHECK(!cfg_parse_duration("1.2.3", &us));
	CHECK(!cfg_parse_duration("ms", &us));
	CHECK(!cfg_parse_duration("5 s extra", &us));
	CHECK(!cfg_parse_duration("1e3", &us));
	CHECK(!cfg_parse_duration("99999999999999999999", &us));
}

static void test_sizes_take_bytes_or_units(void)
{
	int64_t b = -1;
	CHECK(cfg_parse_size("4096", &b) && b == 4096);
	CHECK(cfg_parse_size("8kB", &b) && b == 8192);
	CHECK(cfg_parse_size("1MB", &b) && b == 1048576);
	CHECK(cfg_parse_size("1GB", &b) && b == 1073741824);
	CHECK(cfg_parse_size("2 MB", &b) && b == 2097152);
	CHECK(!cfg_parse_size("1XB", &b));
	CHECK(!cfg_parse_size("kB", &b));
	CHECK(!cfg_parse_size("-5", &b));
}

static void test_file_durations_plain_fraction_and_units(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("dur.ini",
				  "[pgpulse]\n"
				  "query_wait_timeout = 0.5\n"
				  "reserve_pool_timeout = 250ms\n"
				  "server_idle_timeout = 1.5 s\n"
				  "tcp_user_timeout = 1500\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_INT_EQ(c->query_wait_timeout, 500000);
	CHECK_INT_EQ(c->reserve_pool_timeout, 250000);
	CHECK_INT_EQ(c->server_idle_timeout, 1500000);
	/* PgBouncer's tcp_user_timeout is in milliseconds: a bare number keeps that meaning */
	CHECK_INT_EQ(c->tcp_user_timeout, 1500000);
	cfg_free(c);
}

static void test_pgbouncer_section_name_works_unchanged(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("bouncer.ini",
				  "[databases]\n"
				  "app = host=127.0.0.1 port=5433\n"
				  "\n"
				  "[pgbouncer]\n"
				  "listen_addr = *\n"
				  "auth_type = scram-sha-256\n"
				  "default_pool_size = 7\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_STR_EQ(c->listen_addr, "*");
	CHECK_INT_EQ(c->auth_type, AUTH_SCRAM);
	CHECK_INT_EQ(c->default_pool_size, 7);
	CHECK_INT_EQ(c->n_dbs, 1);
	cfg_free(c);
}

static void test_comments_blank_lines_and_crlf_are_ignored(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("comments.ini",
				  "; a comment\r\n"
				  "# another\r\n"
				  "\r\n"
				  "  [pgpulse]  \r\n"
				  "   max_client_conn   =   500   \r\n"
				  "\t; indented comment\r\n"
				  "server_reset_query = DISCARD ALL; -- not a comment\r\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_INT_EQ(c->max_client_conn, 500);
	/* like PgBouncer, ';' later in a line is part of the value */
	CHECK_STR_EQ(c->server_reset_query, "DISCARD ALL; -- not a comment");
	cfg_free(c);
}

static void test_main_section_values_are_taken_as_written(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("quotes.ini",
				  "[pgpulse]\n"
				  "server_check_query = SELECT 'x'\n"
				  "logfile =\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_STR_EQ(c->server_check_query, "SELECT 'x'");
	CHECK_STR_EQ(c->logfile, "");
	cfg_free(c);
}

static void test_include_is_relative_to_the_including_file(void)
{
	char path[256], err[512];
	make_dir("conf.d");
	write_file("conf.d/pool.ini", "max_client_conn = 321\n%include more.ini\n", path, sizeof(path));
	write_file("conf.d/more.ini", "[databases]\nfromsub = dbname=sub\n", path, sizeof(path));
	struct cfg *c = load_text("main-inc.ini",
				  "[pgpulse]\n"
				  "%include conf.d/pool.ini\n"
				  "default_pool_size = 3\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "  load error: %s\n", err);
		return;
	}
	CHECK_INT_EQ(c->max_client_conn, 321);
	/* the [databases] header inside the include did not leak back out */
	CHECK_INT_EQ(c->default_pool_size, 3);
	const struct cfg_db *db = cfg_find_db(c, "fromsub");
	CHECK(db != NULL);
	if (db) {
		CHECK_STR_EQ(db->dbname, "sub");
		CHECK(strstr(db->file, "conf.d/more.ini") != NULL);
		CHECK_INT_EQ(db->line, 2);
	}
	CHECK_INT_EQ(c->n_files, 3);
	cfg_free(c);
}

static void test_include_loop_is_an_error(void)
{
	char path[256], err[512];
	write_file("loop-b.ini", "%include loop-a.ini\n", path, sizeof(path));
	struct cfg *c = load_text("loop-a.ini", "[pgpulse]\n%include loop-b.ini\n", path, sizeof(path),
				  err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "include loop") != NULL);
	CHECK(strstr(err, "loop-b.ini:1:") != NULL);
}

static void test_include_deeper_than_ten_levels_is_an_error(void)
{
	char path[256], err[512], name[32], text[64];

	/* deep0 includes deep1 ... deep11: eleven levels of %include */
	for (int i = 0; i <= 11; i++) {
		snprintf(name, sizeof(name), "deep%d.ini", i);
		if (i < 11)
			snprintf(text, sizeof(text), "%%include deep%d.ini\n", i + 1);
		else
			snprintf(text, sizeof(text), "[pgpulse]\nmax_client_conn = 9\n");
		write_file(name, text, path, sizeof(path));
	}
	snprintf(path, sizeof(path), "%s/deep0.ini", tmpdir);
	struct cfg *c = cfg_load(path, err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "nested more than 10 levels") != NULL);

	/* ten levels are fine */
	snprintf(path, sizeof(path), "%s/deep1.ini", tmpdir);
	c = cfg_load(path, err, sizeof(err));
	CHECK(c != NULL);
	cfg_free(c);
}

static void test_include_of_missing_file_names_the_line(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("inc-missing.ini", "[pgpulse]\n%include nothere.ini\n", path, sizeof(path),
				  err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "inc-missing.ini:2: %include: cannot open") != NULL);
	CHECK(strstr(err, "nothere.ini") != NULL);
}

static void test_missing_config_file_is_an_error(void)
{
	char path[256], err[512];
	snprintf(path, sizeof(path), "%s/does-not-exist.ini", tmpdir);
	struct cfg *c = cfg_load(path, err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "does-not-exist.ini: cannot open") != NULL);
}

static void test_database_connect_string_is_parsed(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("dbs.ini",
				  "[databases]\n"
				  "app = host=db1.example.com port=5433 dbname=appdb user=appuser "
				  "password='a b\\'c' pool_size=30 min_pool_size=2 reserve_pool=4 "
				  "overflow_pool_size=5 max_db_connections=50 max_db_client_connections=400 "
				  "pool_mode=transaction connect_query='SELECT 1' client_encoding=UTF8 "
				  "datestyle=ISO timezone=UTC application_name=web auth_user=authr "
				  "auth_dbname=authdb auth_query='SELECT u, p FROM lookup($1)'\n"
				  "sock = host=/var/run/postgresql\n"
				  "plain =\n"
				  "spaced = host = 10.0.0.1   port = 6000\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "  load error: %s\n", err);
		return;
	}
	const struct cfg_db *db = cfg_find_db(c, "app");
	CHECK(db != NULL);
	if (db) {
		CHECK_STR_EQ(db->host, "db1.example.com");
		CHECK_INT_EQ(db->port, 5433);
		CHECK_STR_EQ(db->dbname, "appdb");
		CHECK_STR_EQ(db->user, "appuser");
		CHECK_STR_EQ(db->password, "a b'c");
		CHECK_INT_EQ(db->pool_size, 30);
		CHECK_INT_EQ(db->min_pool_size, 2);
		CHECK_INT_EQ(db->reserve_pool_size, 4);
		CHECK_INT_EQ(db->overflow_pool_size, 5);
		CHECK_INT_EQ(db->max_db_connections, 50);
		CHECK_INT_EQ(db->max_db_client_connections, 400);
		CHECK_INT_EQ(db->pool_mode, POOL_TRANSACTION);
		CHECK_STR_EQ(db->connect_query, "SELECT 1");
		CHECK_STR_EQ(db->client_encoding, "UTF8");
		CHECK_STR_EQ(db->datestyle, "ISO");
		CHECK_STR_EQ(db->timezone, "UTC");
		CHECK_STR_EQ(db->application_name, "web");
		CHECK_STR_EQ(db->auth_user, "authr");
		CHECK_STR_EQ(db->auth_dbname, "authdb");
		CHECK_STR_EQ(db->auth_query, "SELECT u, p FROM lookup($1)");
		CHECK_INT_EQ(db->line, 2);
		CHECK_STR_EQ(db->file, path);
	}
	db = cfg_find_db(c, "sock");
	CHECK(db && db->host && strcmp(db->host, "/var/run/postgresql") == 0);
	db = cfg_find_db(c, "plain");
	CHECK(db != NULL);
	if (db) {
		CHECK(db->host == NULL && db->dbname == NULL && db->user == NULL);
		CHECK_INT_EQ(db->port, 5432);
		CHECK_INT_EQ(db->pool_size, -1);
		CHECK_INT_EQ(db->pool_mode, -1);
	}
	db = cfg_find_db(c, "spaced");
	CHECK(db && db->host && strcmp(db->host, "10.0.0.1") == 0 && db->port == 6000);
	CHECK(cfg_find_db(c, "nosuch") == NULL);
	cfg_free(c);
}

static void test_star_entry_is_the_fallback_database(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("star.ini",
				  "[databases]\n"
				  "* = host=fallback.example.com\n"
				  "exact = host=exact.example.com\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c)
		return;
	const struct cfg_db *db = cfg_find_db(c, "anything");
	CHECK(db && strcmp(db->name, "*") == 0 && strcmp(db->host, "fallback.example.com") == 0);
	db = cfg_find_db(c, "exact");
	CHECK(db && strcmp(db->host, "exact.example.com") == 0);
	cfg_free(c);
}

static void test_quoted_database_name_may_hold_any_character(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("qname.ini",
				  "[databases]\n"
				  "\"my-db \"\"x\"\"\" = dbname=real\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c)
		return;
	const struct cfg_db *db = cfg_find_db(c, "my-db \"x\"");
	CHECK(db && strcmp(db->dbname, "real") == 0);
	cfg_free(c);
}

static void test_database_bad_value_stops_loading_with_file_and_line(void)
{
	char path[256], err[512], want[512];
	struct cfg *c = load_text("dbbad.ini",
				  "[databases]\n"
				  "ok = port=5432\n"
				  "bad = host=x pool_size=lots\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	snprintf(want, sizeof(want), "%s:3: database \"bad\": pool_size: invalid integer \"lots\"", path);
	CHECK_STR_EQ(err, want);

	c = load_text("dbport.ini", "[databases]\nx = port=70000\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "port: 70000 is out of range") != NULL);

	c = load_text("dbquote.ini", "[databases]\nx = password='open\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "unterminated quoted value") != NULL);

	c = load_text("dbmode.ini", "[databases]\nx = pool_mode=bogus\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "pool_mode: invalid value \"bogus\" (expected session, transaction or statement)") != NULL);
}

static void test_host_list_pairs_each_host_with_its_port(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("hosts.ini",
				  "[databases]\n"
				  "one = host=db1 port=6000\n"
				  "shared = host=db1,10.0.0.2,/var/run/postgresql port=6001 load_balance_hosts=disable\n"
				  "each = host='db1, db2' port=6001,6002 target_session_attrs=prefer-standby\n"
				  "sock =\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	const struct cfg_db *db = cfg_find_db(c, "one");
	CHECK(db && db->hosts.count == 1 && strcmp(db->hosts.name[0], "db1") == 0 && db->hosts.port[0] == 6000);
	CHECK(db && db->load_balance_hosts == LB_ROUND_ROBIN);
	CHECK(db && db->target_session_attrs == TSA_ANY);
	db = cfg_find_db(c, "shared");
	CHECK(db && db->hosts.count == 3 && db->load_balance_hosts == LB_DISABLE);
	if (db && db->hosts.count == 3) {
		CHECK_STR_EQ(db->hosts.name[1], "10.0.0.2");
		CHECK_STR_EQ(db->hosts.name[2], "/var/run/postgresql");
		CHECK(db->hosts.port[0] == 6001 && db->hosts.port[1] == 6001 && db->hosts.port[2] == 6001);
	}
	db = cfg_find_db(c, "each");
	CHECK(db && db->hosts.count == 2 && db->port == 6001);
	CHECK(db && db->target_session_attrs == TSA_PREFER_STANDBY);
	if (db && db->hosts.count == 2) {
		CHECK_STR_EQ(db->hosts.name[1], "db2"); /* blanks around an item are not part of it */
		CHECK(db->hosts.port[0] == 6001 && db->hosts.port[1] == 6002);
	}
	db = cfg_find_db(c, "sock");
	CHECK(db && db->hosts.count == 0 && db->port == 5432);
	cfg_free(c);
}

static void expect_database_error(const char *line, const char *want)
{
	char path[256], err[512], text[1024];
	snprintf(text, sizeof(text), "[databases]\n%s\n", line);
	struct cfg *c = load_text("hostbad.ini", text, path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	if (!strstr(err, want))
		UNIT_FAIL_("for \"%s\": error \"%s\" does not say \"%s\"", line, err, want);
}

static void test_bad_host_lists_are_config_errors(void)
{
	expect_database_error("x = host=a,,b", "database \"x\": host: \"a,,b\" has an empty host name");
	expect_database_error("x = host=a,", "has an empty host name");
	expect_database_error("x = host=,a", "has an empty host name");
	expect_database_error("x = host=h1,h2,h3,h4,h5,h6,h7,h8,h9,h10,h11,h12,h13,h14,h15,h16,h17",
			      "host: more than 16 hosts");
	expect_database_error("x = host=a,b,c port=1,2", "port: 1,2 lists 2 ports for 3 hosts");
	expect_database_error("x = host=a,b port=1,,2", "is not a port or a comma-separated list of ports");
	expect_database_error("x = host=a,b port=1,70000", "port: 70000 is out of range (1 .. 65535)");
	expect_database_error("x = port=1,2", "port: a list of ports needs a list of hosts");
	expect_database_error("x = host=a load_balance_hosts=random",
			      "load_balance_hosts: invalid value \"random\" (expected round-robin or disable)");
	expect_database_error("x = host=a,b target_session_attrs=replica",
			      "target_session_attrs: invalid value \"replica\" (expected any, read-write, read-only, "
			      "primary, standby or prefer-standby)");
}

static void test_dns_nameservers_takes_addresses_with_optional_ports(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("ns.ini", "[pgpulse]\ndns_nameservers = 10.0.0.2, 10.0.0.3:5353,[::1]:53\n", path,
				  sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (c)
		CHECK_STR_EQ(c->dns_nameservers, "10.0.0.2, 10.0.0.3:5353,[::1]:53");
	cfg_free(c);
	const char *bad[] = { "dns.example.com", "10.0.0.2:0", "10.0.0.2:99999", "[::1", "::1:53x", "10.0.0.2:" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), "[pgpulse]\ndns_nameservers = %s\n", bad[i]);
		c = load_text("nsbad.ini", text, path, sizeof(path), err, sizeof(err));
		if (c)
			UNIT_FAIL_("dns_nameservers = %s was accepted", bad[i]);
		cfg_free(c);
		CHECK(strstr(err, "is not an IP address with an optional port") != NULL);
	}
}

static void test_database_unknown_key_is_a_warning(void)
{
	char path[256], err[512], want[512];
	capture_begin();
	struct cfg *c = load_text("dbunk.ini", "[databases]\napp = host=h frobnicate=1 port=6000\n", path,
				  sizeof(path), err, sizeof(err));
	const char *log = capture_end();
	CHECK(c != NULL);
	snprintf(want, sizeof(want), "%s:2: database \"app\": unknown parameter \"frobnicate\"", path);
	CHECK(strstr(log, want) != NULL);
	const struct cfg_db *db = cfg_find_db(c, "app");
	CHECK(db && db->port == 6000);
	cfg_free(c);
}

static void test_duplicate_database_last_definition_wins(void)
{
	char path[256], err[512];
	capture_begin();
	struct cfg *c = load_text("dbdup.ini",
				  "[databases]\n"
				  "app = host=first password=one\n"
				  "other = host=o\n"
				  "app = host=second\n",
				  path, sizeof(path), err, sizeof(err));
	const char *log = capture_end();
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_INT_EQ(c->n_dbs, 2);
	const struct cfg_db *db = cfg_find_db(c, "app");
	CHECK(db && strcmp(db->host, "second") == 0 && db->password == NULL && db->line == 4);
	CHECK(strstr(log, "database \"app\" is defined again") != NULL);
	cfg_free(c);
}

static void test_users_section_sets_per_user_limits(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("users.ini",
				  "[users]\n"
				  "alice = pool_mode=transaction max_user_connections=10 pool_size=4 "
				  "reserve_pool_size=1 max_user_client_connections=99 query_timeout=30s "
				  "query_wait_timeout=500ms idle_transaction_timeout=1.5 client_idle_timeout=1h "
				  "transaction_timeout=2min\n"
				  "bob = pool_mode=statement\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "  load error: %s\n", err);
		return;
	}
	const struct cfg_user *u = cfg_find_user(c, "alice");
	CHECK(u != NULL);
	if (u) {
		CHECK_INT_EQ(u->pool_mode, POOL_TRANSACTION);
		CHECK_INT_EQ(u->max_user_connections, 10);
		CHECK_INT_EQ(u->pool_size, 4);
		CHECK_INT_EQ(u->reserve_pool_size, 1);
		CHECK_INT_EQ(u->max_user_client_connections, 99);
		CHECK_INT_EQ(u->query_timeout, 30 * SEC);
		CHECK_INT_EQ(u->query_wait_timeout, 500000);
		CHECK_INT_EQ(u->idle_transaction_timeout, 1500000);
		CHECK_INT_EQ(u->client_idle_timeout, 3600 * SEC);
		CHECK_INT_EQ(u->transaction_timeout, 120 * SEC);
		CHECK_INT_EQ(u->line, 2);
	}
	u = cfg_find_user(c, "bob");
	CHECK(u != NULL);
	if (u) {
		CHECK_INT_EQ(u->pool_mode, POOL_STATEMENT);
		CHECK_INT_EQ(u->max_user_connections, -1);
		CHECK_INT_EQ(u->query_timeout, -1);
	}
	CHECK(cfg_find_user(c, "carol") == NULL);
	cfg_free(c);

	c = load_text("userbad.ini", "[users]\nbob = query_timeout=soon\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "userbad.ini:2: user \"bob\": query_timeout: invalid duration \"soon\"") != NULL);
}

static void test_bad_value_error_names_file_line_and_parameter(void)
{
	char path[256], err[512], want[512];
	struct cfg *c = load_text("bad.ini",
				  "[pgpulse]\n"
				  "listen_port = 6432\n"
				  "default_pool_size = abc\n",
				  path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	snprintf(want, sizeof(want), "%s:3: default_pool_size: invalid integer \"abc\"", path);
	CHECK_STR_EQ(err, want);
}

static void test_out_of_range_values_are_refused(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("range1.ini", "[pgpulse]\nlisten_port = 0\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "listen_port: 0 is out of range (1 .. 65535)") != NULL);

	c = load_text("range2.ini", "[pgpulse]\nmax_client_conn = 0\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "max_client_conn: 0 is out of range") != NULL);

	c = load_text("range3.ini", "[pgpulse]\ndefault_pool_size = -1\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);

	c = load_text("range4.ini", "[pgpulse]\nunix_socket_mode = 0999\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "unix_socket_mode: invalid file mode") != NULL);

	c = load_text("range5.ini", "[pgpulse]\nlisten_port = 99999999999\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "out of range") != NULL);

	c = load_text("range6.ini", "[pgpulse]\nserver_lifetime = -5\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "server_lifetime: invalid duration \"-5\"") != NULL);
}

static void test_unknown_enum_value_is_an_error(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("enum.ini", "[pgpulse]\nauth_type = kerberos\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "auth_type: invalid value \"kerberos\" (expected trust, any, plain, md5, scram-sha-256, cert or "
			  "hba)") != NULL);

	c = load_text("enum2.ini", "[pgpulse]\nauth_type = HBA\npool_mode = STATEMENT\n", path, sizeof(path), err,
		      sizeof(err));
	CHECK(c != NULL);
	if (c) {
		CHECK_INT_EQ(c->auth_type, AUTH_HBA);
		CHECK_INT_EQ(c->pool_mode, POOL_STATEMENT);
	}
	cfg_free(c);
}

static void test_pam_and_ldap_are_refused_when_the_file_is_read(void)
{
	static const char *const methods[] = { "pam", "LDAP" };
	char path[256], err[512];
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		char text[128];
		snprintf(text, sizeof(text), "[pgpulse]\n\nauth_type = %s\n", methods[i]);
		struct cfg *c = load_text("pam.ini", text, path, sizeof(path), err, sizeof(err));
		CHECK(c == NULL);
		cfg_free(c);
		CHECK(strstr(err, "pam.ini:3: auth_type: \"") != NULL);
		CHECK(strstr(err, "\" is not supported: pgpulse has no PAM or LDAP authentication") != NULL);
	}
	/* SET on the console is refused the same way, and changes nothing */
	struct cfg *c = cfg_new_default();
	CHECK(!cfg_set(c, "auth_type", "ldap", err, sizeof(err)));
	CHECK(strstr(err, "no PAM or LDAP") != NULL);
	CHECK_INT_EQ(c->auth_type, AUTH_MD5);
	cfg_free(c);
}

/* peer_id was the last parameter accepted but not in effect: it now warns of nothing */
static void test_peer_id_is_in_effect_and_warns_of_nothing(void)
{
	char path[256], err[512];
	capture_begin();
	struct cfg *c = load_text("peers.ini",
				  "[pgpulse]\npeer_id = 5\npeer_id = 9\npool_mode = session\n"
				  "[peers]\n1 = host=/run/pgpulse/1\n9 = host=10.0.0.9 port=6433 pool_size=4\n"
				  "1 = host=/run/pgpulse/one port=7000\n",
				  path, sizeof(path), err, sizeof(err));
	const char *out = capture_end();
	CHECK(c != NULL);
	if (c) {
		CHECK_INT_EQ(c->peer_id, 9);
		CHECK_INT_EQ(c->n_peers, 2);
		const struct cfg_peer *p = cfg_find_peer(c, 1);
		CHECK(p && strcmp(p->host, "/run/pgpulse/one") == 0 && p->port == 7000);
		p = cfg_find_peer(c, 9);
		CHECK(p && strcmp(p->host, "10.0.0.9") == 0 && p->port == 6433 && p->pool_size == 4);
		CHECK(cfg_find_peer(c, 2) == NULL);
	}
	cfg_free(c);
	CHECK(strstr(out, "not in effect") == NULL);
	CHECK(strstr(out, "not supported") == NULL);
	/* the entry given twice says which one wins */
	CHECK(strstr(out, "peers.ini:8: peer 1 is defined again") != NULL);
}

/* a [peers] entry names a peer id in range and a host */
static void test_peers_entry_errors_name_the_line(void)
{
	char path[256], err[512];
	static const char *const bad[][2] = {
		{ "[peers]\n0 = host=/tmp\n", "bad.ini:2: peer \"0\": a peer id is a number from 1 to 16383" },
		{ "[peers]\n16384 = host=/tmp\n", "bad.ini:2: peer \"16384\": a peer id" },
		{ "[peers]\nx = host=/tmp\n", "bad.ini:2: peer \"x\": a peer id" },
		{ "[peers]\n3 = port=6432\n", "bad.ini:2: peer 3: host= is required" },
		{ "[peers]\n3 = host=/tmp port=0\n", "bad.ini:2: peer 3: port: " },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cfg *c = load_text("bad.ini", bad[i][0], path, sizeof(path), err, sizeof(err));
		CHECK(c == NULL);
		cfg_free(c);
		if (!strstr(err, bad[i][1]))
			UNIT_FAIL_("got \"%s\", wanted \"%s\"", err, bad[i][1]);
	}
}

static void test_unknown_parameter_is_a_warning_not_an_error(void)
{
	char path[256], err[512], want[512];
	capture_begin();
	struct cfg *c = load_text("unknown.ini",
				  "[pgpulse]\n"
				  "listen_port = 7000\n"
				  "frobnicate = 12\n"
				  "max_client_conn = 77\n",
				  path, sizeof(path), err, sizeof(err));
	const char *log = capture_end();
	CHECK(c != NULL);
	if (!c)
		return;
	snprintf(want, sizeof(want), "%s:3: unknown parameter \"frobnicate\"", path);
	CHECK(strstr(log, want) != NULL);
	CHECK(strstr(log, "WARNING") != NULL);
	CHECK_INT_EQ(c->listen_port, 7000);
	CHECK_INT_EQ(c->max_client_conn, 77);
	cfg_free(c);
}

static void test_unknown_section_is_a_warning_and_skipped(void)
{
	char path[256], err[512];
	capture_begin();
	struct cfg *c = load_text("unksect.ini",
				  "[mystery]\n"
				  "listen_port = 1\n"
				  "[pgpulse]\n"
				  "max_client_conn = 5\n",
				  path, sizeof(path), err, sizeof(err));
	const char *log = capture_end();
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK(strstr(log, "unknown section [mystery]") != NULL);
	CHECK_INT_EQ(c->listen_port, 6432);
	CHECK_INT_EQ(c->max_client_conn, 5);
	cfg_free(c);
}

static void test_line_without_equals_is_a_syntax_error(void)
{
	char path[256], err[512];
	struct cfg *c = load_text("syntax.ini", "[pgpulse]\nlisten_port 6432\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "syntax.ini:2: syntax error") != NULL);

	c = load_text("syntax2.ini", "[pgpulse\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "syntax2.ini:1: syntax error") != NULL);

	c = load_text("syntax3.ini", "%inclood x\n", path, sizeof(path), err, sizeof(err));
	CHECK(c == NULL);
	cfg_free(c);
	CHECK(strstr(err, "unknown directive") != NULL);
}

static void test_set_changes_a_reloadable_parameter(void)
{
	char err[256];
	struct cfg *c = cfg_new_default();

	CHECK(cfg_set(c, "default_pool_size", "42", err, sizeof(err)));
	CHECK_INT_EQ(c->default_pool_size, 42);
	CHECK(cfg_set(c, "query_wait_timeout", "250ms", err, sizeof(err)));
	CHECK_INT_EQ(c->query_wait_timeout, 250000);
	CHECK(cfg_set(c, "POOL_MODE", "transaction", err, sizeof(err)));
	CHECK_INT_EQ(c->pool_mode, POOL_TRANSACTION);
	CHECK(cfg_set(c, "admin_users", "root", err, sizeof(err)));
	CHECK_STR_EQ(c->admin_users, "root");

	/* a bad value leaves the old one in place */
	CHECK(!cfg_set(c, "default_pool_size", "abc", err, sizeof(err)));
	CHECK_STR_EQ(err, "default_pool_size: invalid integer \"abc\"");
	CHECK_INT_EQ(c->default_pool_size, 42);
	CHECK(!cfg_set(c, "max_client_conn", "0", err, sizeof(err)));
	CHECK_INT_EQ(c->max_client_conn, 100);
	cfg_free(c);
}

static void test_set_refuses_a_parameter_that_needs_a_restart(void)
{
	char err[256];
	struct cfg *c = cfg_new_default();

	CHECK(!cfg_set(c, "listen_port", "7000", err, sizeof(err)));
	CHECK(strstr(err, "listen_port") != NULL && strstr(err, "restart") != NULL);
	CHECK_INT_EQ(c->listen_port, 6432);
	CHECK(!cfg_set(c, "pkt_buf", "8192", err, sizeof(err)));
	CHECK(!cfg_set(c, "no_such_thing", "1", err, sizeof(err)));
	CHECK_STR_EQ(err, "unknown parameter \"no_such_thing\"");
	CHECK(!cfg_set(c, "listen_port", "7000", NULL, 0)); /* no error buffer is fine */
	cfg_free(c);
}

static void test_show_config_lists_every_row(void)
{
	struct cfg *c = cfg_new_default();
	struct cfg_param_info info;
	char prev[64] = "";
	char err[64];
	int n = cfg_param_count(), seen_lifetime = 0;

	CHECK(n >= 90);
	for (int i = 0; i < n; i++) {
		CHECK(cfg_param_get(c, i, &info));
		CHECK(info.name && info.value && info.default_value);
		/* alphabetical and unique, as PgBouncer's SHOW CONFIG */
		CHECK(strcmp(prev, info.name) < 0);
		snprintf(prev, sizeof(prev), "%s", info.name);
		/* fresh defaults: value equals default everywhere */
		CHECK_STR_EQ(info.value, info.default_value);
		if (strcmp(info.name, "server_lifetime") == 0) {
			seen_lifetime = 1;
			CHECK_STR_EQ(info.value, "3600");
			CHECK(info.reloadable);
		}
		if (strcmp(info.name, "listen_port") == 0)
			CHECK(!info.reloadable);
		if (strcmp(info.name, "unix_socket_mode") == 0)
			CHECK_STR_EQ(info.value, "0777");
		if (strcmp(info.name, "auth_type") == 0)
			CHECK_STR_EQ(info.value, "md5");
		if (strcmp(info.name, "tcp_keepalive") == 0)
			CHECK_STR_EQ(info.value, "1");
	}
	CHECK(seen_lifetime);
	CHECK(!cfg_param_get(c, n, &info));
	CHECK(!cfg_param_get(c, -1, &info));

	/* durations come back as plain seconds, fractions when needed */
	CHECK(cfg_set(c, "query_wait_timeout", "250ms", err, sizeof(err)));
	CHECK(cfg_set(c, "tcp_user_timeout", "1.5s", err, sizeof(err)));
	for (int i = 0; i < n; i++) {
		cfg_param_get(c, i, &info);
		if (strcmp(info.name, "query_wait_timeout") == 0) {
			CHECK_STR_EQ(info.value, "0.25");
			CHECK_STR_EQ(info.default_value, "120");
		}
		if (strcmp(info.name, "tcp_user_timeout") == 0)
			CHECK_STR_EQ(info.value, "1500"); /* milliseconds, like PgBouncer */
	}
	cfg_free(c);
}

struct diff_seen {
	int count;
	char names[8][64];
	bool restart_needed;
};

static void note_change(const char *name, const char *old_value, const char *new_value, bool reloadable,
			void *arg)
{
	struct diff_seen *seen = arg;
	(void)old_value;
	(void)new_value;
	if (seen->count < 8)
		snprintf(seen->names[seen->count], sizeof(seen->names[0]), "%s", name);
	seen->count++;
	if (!reloadable)
		seen->restart_needed = true;
}

static void test_reload_diff_names_changed_parameters(void)
{
	struct cfg *a = cfg_new_default(), *b = cfg_new_default();
	struct diff_seen seen = { 0 };
	char err[64];

	CHECK_INT_EQ(cfg_diff(a, b, note_change, &seen), 0);
	CHECK(cfg_set(b, "default_pool_size", "5", err, sizeof(err)));
	b->listen_port = 7000; /* as a reloaded file would */
	CHECK_INT_EQ(cfg_diff(a, b, note_change, &seen), 2);
	CHECK_STR_EQ(seen.names[0], "default_pool_size");
	CHECK_STR_EQ(seen.names[1], "listen_port");
	CHECK(seen.restart_needed);
	cfg_free(a);
	cfg_free(b);
}

static void test_list_contains_matches_whole_items(void)
{
	CHECK(cfg_list_contains("alice,bob", "bob"));
	CHECK(cfg_list_contains(" alice , bob ", "alice"));
	CHECK(cfg_list_contains("alice, bob", "bob"));
	CHECK(!cfg_list_contains("alice,bobby", "bob"));
	CHECK(!cfg_list_contains("", "bob"));
	CHECK(!cfg_list_contains(NULL, "bob"));
	CHECK(!cfg_list_contains("alice,,", "bob"));
}

static void test_enum_names_round_trip(void)
{
	CHECK_STR_EQ(cfg_pool_mode_name(POOL_SESSION), "session");
	CHECK_STR_EQ(cfg_pool_mode_name(POOL_TRANSACTION), "transaction");
	CHECK_STR_EQ(cfg_pool_mode_name(POOL_STATEMENT), "statement");
	CHECK_STR_EQ(cfg_auth_type_name(AUTH_SCRAM), "scram-sha-256");
	CHECK_STR_EQ(cfg_auth_type_name(AUTH_ANY), "any");
	CHECK_STR_EQ(cfg_auth_type_name(99), "unknown");
}

static void test_shipped_example_files_load(void)
{
	char err[512], path[4096];
	/* make check exports srcdir (and PGPULSE_SRCDIR); by hand, run from the top of the tree */
	const char *top = getenv("PGPULSE_SRCDIR");
	if (!top)
		top = getenv("srcdir");
	snprintf(path, sizeof(path), "%s/etc/pgpulse.ini", top ? top : ".");
	CHECK(access(path, R_OK) == 0);
	struct cfg *c = cfg_load(path, err, sizeof(err));
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK(c->n_dbs > 0);
	cfg_free(c);
}

/* the example's text from its [pgpulse] section on, or NULL */
static char *example_main_section(void)
{
	char path[4096];
	const char *top = getenv("PGPULSE_SRCDIR");
	if (!top)
		top = getenv("srcdir");
	snprintf(path, sizeof(path), "%s/etc/pgpulse.ini", top ? top : ".");
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char text[128 * 1024];
	text[0] = '\n'; /* every line, the first included, follows a newline */
	size_t n = fread(text + 1, 1, sizeof(text) - 2, f);
	fclose(f);
	text[n + 1] = '\0';
	char *main_section = strstr(text, "\n[pgpulse]\n");
	return main_section;
}

/*
 * etc/pgpulse.ini can never drift from the parameter table: every parameter
 * has a commented line ";name = default" in the main section (the example
 * may set a value as well, on a line of its own), and every commented
 * parameter line names a parameter that exists.
 */
static void test_example_config_lists_every_parameter_with_its_default(void)
{
	const char *text = example_main_section();
	CHECK(text != NULL);
	if (!text)
		return;
	for (int i = 0; i < cfg_param_count(); i++) {
		struct cfg_param_info p;
		if (!cfg_param_get(NULL, i, &p))
			continue;
		char line[1024];
		const char *d = p.default_value ? p.default_value : "";
		snprintf(line, sizeof(line), "\n;%s =%s%s\n", p.name, *d ? " " : "", d);
		if (!strstr(text, line))
			UNIT_FAIL_("etc/pgpulse.ini has no line \";%s =%s%s\"", p.name, *d ? " " : "", d);
	}
	for (const char *l = strstr(text, "\n;"); l; l = strstr(l + 1, "\n;")) {
		char name[128];
		size_t len = strspn(l + 2, "abcdefghijklmnopqrstuvwxyz0123456789_");
		if (len == 0 || len >= sizeof(name) || strncmp(l + 2 + len, " =", 2) != 0)
			continue; /* a comment, not a parameter line */
		memcpy(name, l + 2, len);
		name[len] = '\0';
		bool known = false;
		for (int i = 0; i < cfg_param_count() && !known; i++) {
			struct cfg_param_info p;
			known = cfg_param_get(NULL, i, &p) && strcmp(p.name, name) == 0;
		}
		if (!known)
			UNIT_FAIL_("etc/pgpulse.ini lists \"%s\", which is no parameter", name);
	}
}

/*
 * doc/config.md's list of parameters accepted but not in effect is the
 * table's: every row marked NOT_YET is a "- `name`" line of that section,
 * and every such line names a NOT_YET row. The warning comes from the same
 * rows, so the doc and what pgpulse says cannot drift.
 */
static void test_config_md_lists_exactly_the_parameters_not_in_effect(void)
{
	char path[4096];
	const char *top = getenv("PGPULSE_SRCDIR");
	if (!top)
		top = getenv("srcdir");
	snprintf(path, sizeof(path), "%s/doc/config.md", top ? top : ".");
	FILE *f = fopen(path, "r");
	CHECK(f != NULL);
	if (!f)
		return;
	static char text[256 * 1024];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	char *section = strstr(text, "\n## Accepted but not in effect\n");
	CHECK(section != NULL);
	if (!section)
		return;
	section++;
	char *end = strstr(section, "\n## ");
	if (end)
		end[1] = '\0';

	int listed = 0;
	for (const char *l = strstr(section, "\n- `"); l; l = strstr(l + 1, "\n- `")) {
		char name[128];
		size_t len = strcspn(l + 4, "`");
		if (len == 0 || len >= sizeof(name))
			continue;
		memcpy(name, l + 4, len);
		name[len] = '\0';
		bool not_yet = false;
		for (int i = 0; i < cfg_param_count(); i++) {
			struct cfg_param_info p;
			if (cfg_param_get(NULL, i, &p) && strcmp(p.name, name) == 0)
				not_yet = !p.in_effect;
		}
		if (!not_yet)
			UNIT_FAIL_("doc/config.md lists \"%s\" as not in effect; the parameter table does not", name);
		listed++;
	}
	int rows = 0;
	for (int i = 0; i < cfg_param_count(); i++) {
		struct cfg_param_info p;
		if (!cfg_param_get(NULL, i, &p) || p.in_effect)
			continue;
		rows++;
		char line[160];
		snprintf(line, sizeof(line), "\n- `%s`", p.name);
		if (!strstr(section, line))
			UNIT_FAIL_("%s is not in effect, and doc/config.md's \"Accepted but not in effect\" does not say so",
				   p.name);
	}
	/* an empty list says so in words, not by leaving the section blank */
	if (rows == 0)
		CHECK(strstr(section, "No parameter is in this list today") != NULL);
	CHECK_INT_EQ(listed, rows);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pgpulse-test-config-XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	log_setup(0, false);

	RUN(test_defaults_follow_pgbouncer);
	RUN(test_empty_main_section_gives_defaults);
	RUN(test_every_value_type_is_read_from_the_file);
	RUN(test_booleans_accept_every_spelling);
	RUN(test_durations_take_units_or_plain_seconds);
	RUN(test_sizes_take_bytes_or_units);
	RUN(test_file_durations_plain_fraction_and_units);
	RUN(test_pgbouncer_section_name_works_unchanged);
	RUN(test_comments_blank_lines_and_crlf_are_ignored);
	RUN(test_main_section_values_are_taken_as_written);
	RUN(test_include_is_relative_to_the_including_file);
	RUN(test_include_loop_is_an_error);
	RUN(test_include_deeper_than_ten_levels_is_an_error);
	RUN(test_include_of_missing_file_names_the_line);
	RUN(test_missing_config_file_is_an_error);
	RUN(test_database_connect_string_is_parsed);
	RUN(test_star_entry_is_the_fallback_database);
	RUN(test_quoted_database_name_may_hold_any_character);
	RUN(test_database_bad_value_stops_loading_with_file_and_line);
	RUN(test_host_list_pairs_each_host_with_its_port);
	RUN(test_bad_host_lists_are_config_errors);
	RUN(test_dns_nameservers_takes_addresses_with_optional_ports);
	RUN(test_database_unknown_key_is_a_warning);
	RUN(test_duplicate_database_last_definition_wins);
	RUN(test_users_section_sets_per_user_limits);
	RUN(test_bad_value_error_names_file_line_and_parameter);
	RUN(test_out_of_range_values_are_refused);
	RUN(test_unknown_enum_value_is_an_error);
	RUN(test_pam_and_ldap_are_refused_when_the_file_is_read);
	RUN(test_peer_id_is_in_effect_and_warns_of_nothing);
	RUN(test_peers_entry_errors_name_the_line);
	RUN(test_unknown_parameter_is_a_warning_not_an_error);
	RUN(test_unknown_section_is_a_warning_and_skipped);
	RUN(test_line_without_equals_is_a_syntax_error);
	RUN(test_set_changes_a_reloadable_parameter);
	RUN(test_set_refuses_a_parameter_that_needs_a_restart);
	RUN(test_show_config_lists_every_row);
	RUN(test_reload_diff_names_changed_parameters);
	RUN(test_list_contains_matches_whole_items);
	RUN(test_enum_names_round_trip);
	RUN(test_shipped_example_files_load);
	RUN(test_example_config_lists_every_parameter_with_its_default);
	RUN(test_config_md_lists_exactly_the_parameters_not_in_effect);

	remove_tmpdir();
	return UNIT_REPORT("config");
}
