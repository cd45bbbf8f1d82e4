/*
 * admin_internal: the contract between the parts of the admin console
 * (src/admin/) and nobody else's; other modules use admin.h.
 *
 *   console.c         the command tables and dispatch (admin_handle_query)
 *   parse.c           one query into one command (admin_parse.h)
 *   result.c          writing a result set or an error
 *   show_sockets.c    PgBouncer's views of single connections: CLIENTS,
 *                     SERVERS, SOCKETS, ACTIVE_SOCKETS, FDS
 *   show_objects.c    PgBouncer's views of what the worker holds: POOLS,
 *                     DATABASES, USERS, LISTS, MEM, CONFIG, DNS_ZONES, ...
 *   show_stats.c      PgBouncer's traffic views: STATS, STATS_TOTALS,
 *                     STATS_AVERAGES, TOTALS
 *   show_telemetry.c  pgpulse's own views: LATENCY, EFFICIENCY, HEALTH,
 *                     QUERIES, SLOW, PREPARED_STATEMENTS, FAILURES
 *   show_hosts.c      pgpulse's view of the PostgreSQL hosts: HOSTS
 *   commands.c        control verbs (PAUSE, RELOAD, KILL, ...) and SET
 *
 * Every SHOW is a table of columns written next to the code that fills its
 * rows, in PgBouncer's names and order, so that exporters written for
 * PgBouncer read pgpulse unchanged; pgpulse's own columns only ever go after
 * PgBouncer's.
 */
#ifndef PGPULSE_ADMIN_INTERNAL_H
#define PGPULSE_ADMIN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "admin_parse.h"

struct client;
struct pktbuf;
struct pool;
struct pool_db;

/* type OIDs used in RowDescription, as PgBouncer uses them */
#define OID_BOOL    16u /* text "t" or "f" */
#define OID_BYTEA   17u
#define OID_INT8    20u
#define OID_INT4    23u
#define OID_FLOAT8  701u
#define OID_TEXT    25u
#define OID_NUMERIC 1700u

#define SQLSTATE_SYNTAX    "42601"
#define SQLSTATE_PRIVILEGE "42501"
#define SQLSTATE_NOT_YET   "0A000"

/* ---- result.c: a result set ---- */

struct column {
	const char *name;
	uint32_t type;
};

#define MAX_COLUMNS 32
#define VALUE_SPACE 2048 /* formatted numbers and timestamps of one row */
#define NCOLS(cols) ((int)(sizeof(cols) / sizeof((cols)[0])))

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

/* RowDescription of cols; then row_* values, row_end per row, result_end */
void result_begin(struct result *r, struct pktbuf *out, const struct column *cols, int ncols);
void row_text(struct result *r, const char *v);     /* v must outlive row_end */
void row_text_or_null(struct result *r, const char *v);
void row_printf(struct result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void row_int(struct result *r, long long v);
void row_uint(struct result *r, unsigned long long v);
void row_time(struct result *r, int64_t wall);      /* wall-clock usec, as PgBouncer prints it */
void row_ptr(struct result *r, const void *p);
void row_end(struct result *r);
/* CommandComplete "SHOW" and ReadyForQuery */
void result_end(struct result *r);
/* CommandComplete tag and ReadyForQuery: a command's whole answer */
void command_done(struct pktbuf *out, const char *tag);
/* ErrorResponse with sqlstate, then ReadyForQuery */
void admin_error(struct client *c, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- show_objects.c: lookups the views share ---- */

/* the worker's pools / databases sorted by name (malloc'ed; the caller frees) */
struct pool **admin_sorted_pools(int *n);
struct pool_db **admin_sorted_databases(int *n);
int admin_servers_of_pool(const struct pool *p);

/* ---- the views and verbs, one function per console command ---- */

typedef void (*admin_fn)(struct client *c, const char *arg);

void admin_show_clients(struct client *c, const char *arg);
void admin_show_servers(struct client *c, const char *arg);
void admin_show_sockets(struct client *c, const char *arg);
void admin_show_active_sockets(struct client *c, const char *arg);
void admin_show_fds(struct client *c, const char *arg);
void admin_show_pools(struct client *c, const char *arg);
void admin_show_databases(struct client *c, const char *arg);
void admin_show_users(struct client *c, const char *arg);
void admin_show_lists(struct client *c, const char *arg);
void admin_show_mem(struct client *c, const char *arg);
void admin_show_config(struct client *c, const char *arg);
void admin_show_version(struct client *c, const char *arg);
void admin_show_state(struct client *c, const char *arg);
void admin_show_peers(struct client *c, const char *arg);
void admin_show_dns_hosts(struct client *c, const char *arg);
void admin_show_dns_zones(struct client *c, const char *arg);
void admin_show_peer_pools(struct client *c, const char *arg);
void admin_show_help(struct client *c, const char *arg);
/* SHOW <name> of a setting psql or a driver asks about (SHOW server_version) */
int admin_fake_param_index(const char *name);
void admin_show_fake_param(struct client *c, int idx);

void admin_show_stats(struct client *c, const char *arg);
void admin_show_stats_totals(struct client *c, const char *arg);
void admin_show_stats_averages(struct client *c, const char *arg);
void admin_show_totals(struct client *c, const char *arg);
/* STATS_AVERAGES' window: start it over; make its snapshots usec older */
void admin_stats_window_reset(void);
void admin_stats_window_age(int64_t usec);

void admin_show_latency(struct client *c, const char *arg);
void admin_show_efficiency(struct client *c, const char *arg);
void admin_show_health(struct client *c, const char *arg);
void admin_show_queries(struct client *c, const char *arg);
void admin_show_repeats(struct client *c, const char *arg);
void admin_show_slow(struct client *c, const char *arg);
void admin_show_prepared_statements(struct client *c, const char *arg);
void admin_show_failures(struct client *c, const char *arg);
void admin_show_logins(struct client *c, const char *arg);
void admin_show_hosts(struct client *c, const char *arg);

void admin_cmd_reload(struct client *c, const char *arg);
void admin_cmd_shutdown(struct client *c, const char *arg);
void admin_cmd_pause(struct client *c, const char *arg);
void admin_cmd_resume(struct client *c, const char *arg);
void admin_cmd_suspend(struct client *c, const char *arg);
void admin_cmd_disable(struct client *c, const char *arg);
void admin_cmd_enable(struct client *c, const char *arg);
void admin_cmd_reconnect(struct client *c, const char *arg);
void admin_cmd_kill(struct client *c, const char *arg);
void admin_cmd_kill_client(struct client *c, const char *arg);
void admin_cmd_wait_close(struct client *c, const char *arg);
/* a command PgBouncer has and pgpulse does not: 0A000 naming it */
void admin_cmd_not_yet(struct client *c, const char *arg);
void admin_cmd_set(struct client *c, const struct admin_cmd *cmd);

#endif
