/*
 * pool: databases, users, and one pool of server connections per
 * (database, user), with the policy that assigns servers to clients.
 *
 * Every connection of a pool sits on exactly one of the pool's lists, and
 * the list is its state; pool_* functions are the only ones that move
 * connections between lists. A released server goes straight to the
 * client that has waited longest.
 */
#ifndef PGPULSE_POOL_H
#define PGPULSE_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "failures.h"
#include "proto.h"
#include "scram.h"
#include "util.h"

struct client;
struct server;
struct cfg_db;
struct pool_telemetry;

/* the parameters a client may change that pgpulse keeps in step */
enum tracked_param {
	TP_CLIENT_ENCODING = 0,
	TP_DATESTYLE,
	TP_TIMEZONE,
	TP_INTERVALSTYLE,
	TP_STANDARD_CONFORMING_STRINGS,
	TP_APPLICATION_NAME,
	TP_COUNT
};

/* per tracked parameter, the client values whose PostgreSQL form a pool remembers */
#define POOL_ALIASES 16
/* startup settings sets a pool remembers as accepted by its servers */
#define POOL_KNOWN_SETTINGS 8

/* index of a tracked parameter by its (case-insensitive) name, or -1 */
int pool_tracked_param(const char *name);
const char *pool_tracked_param_name(int idx);

/* free the pool's welcome (its ParameterStatus values and their encoded form) */
struct pool;
void pool_forget_welcome(struct pool *p);

struct param_list {
	int count;
	char **names;
	char **values;
};

void param_list_set(struct param_list *pl, const char *name, const char *value);
const char *param_list_get(const struct param_list *pl, const char *name);
void param_list_free(struct param_list *pl);

/* a [databases] entry brought to life */
struct pool_db {
	struct list node;           /* worker->databases */
	char *name;
	char *host;                 /* as configured: NULL or "/dir" (unix socket), a host, or a list */
	int port;                   /* the first host's */
	struct cfg_hosts hosts;     /* host and port, one entry per host of the list */
	int load_balance_hosts;     /* enum load_balance */
	int host_cursor;            /* the host entry the next connection takes */
	int tsa;                    /* enum target_session_attrs (hosts.h) */
	/*
	 * The registry's host of each host-list entry: host_of[i] is
	 * hosts.name[i]:hosts.port[i]; with no host list, host_of[0] is the
	 * default socket ("", port). host_n of them (0 for the console).
	 */
	struct host *host_of[CFG_MAX_HOSTS];
	int host_n;
	char *dbname;               /* the real database name on the server */
	char *forced_user;          /* NULL: the client's user */
	char *password;             /* for forced_user */
	int pool_size;
	int min_pool_size;
	int reserve_pool_size;
	int overflow_pool_size;
	int max_db_connections;
	int max_db_client_connections;
	int pool_mode;              /* -1: user's or global */
	int64_t server_lifetime;    /* usec; -1: the global server_lifetime */
	char *connect_query;
	char *auth_user;            /* this entry's auth_user, auth_query, auth_dbname (NULL: the global ones) */
	char *auth_query;
	char *auth_dbname;
	struct param_list startup;  /* client_encoding, datestyle, ... sent at connect */
	bool is_admin;              /* the admin console's pseudo database */
	bool from_fallback;         /* made from the "*" entry */
	bool removed;               /* gone from the config: refuses new clients */
	bool paused;
	bool disabled;
	int generation;             /* bumped when host/port/dbname changed */
	int client_count;           /* clients logged in to this database (the client limits) */
	/*
	 * Lifetime of a database made from "*" (or removed from the config):
	 * refs counts the clients whose startup named it, logged in or not;
	 * once none is left and its servers are idle, it is freed with its
	 * pools — at once if nobody ever logged in to it, else after
	 * autodb_idle_timeout (pool_free_unused_databases).
	 */
	int refs;
	bool had_login;             /* a client authenticated to it */
	bool in_use;                /* scratch of pool_free_unused_databases */
	int64_t unused_since;       /* monotonic usec; 0 while in use */
};

/* a user, with its [users] overrides (-1: not set), refreshed on reload */
struct pool_user {
	struct list node;           /* worker->users */
	char *name;
	int pool_mode;
	int pool_size;
	int reserve_pool_size;
	int max_user_connections;
	int max_user_client_connections;
	int64_t query_timeout;
	int64_t query_wait_timeout;
	int64_t idle_transaction_timeout;
	int64_t client_idle_timeout;
	int64_t transaction_timeout;
	int client_count;           /* clients logged in as this user */
	/* SCRAM keys learned when a client authenticated with a SCRAM secret */
	uint8_t scram_client_key[SCRAM_KEY_LEN];
	uint8_t scram_server_key[SCRAM_KEY_LEN];
	bool have_scram_keys;
	/* keys derived from the plaintext password for PostgreSQL's salt: one Hi() per role */
	struct scram_key_cache scram_cache;
	/* a database's password= checking this (forced) user's SCRAM logins, when not in the auth_file */
	struct scram_verifier_cache db_password_verifier;
	/* the secret auth_query found at this user's last login, for logging in to PostgreSQL */
	char *looked_up_secret;
};

struct pool_stats {
	uint64_t xact_count;         /* counted when they begin, as PgBouncer counts them */
	uint64_t query_count;
	uint64_t bytes_received;     /* from clients */
	uint64_t bytes_sent;         /* to clients */
	uint64_t xact_time;          /* usec */
	uint64_t query_time;
	uint64_t wait_time;
	uint64_t server_assignments;
	uint64_t servers_opened;
	uint64_t servers_closed;
	uint64_t overflow_opened;    /* connections opened beyond the base size */
	uint64_t reserve_opened;     /* ... beyond base + overflow, after reserve_pool_timeout */
	uint64_t client_parse_count; /* named Parse messages from clients (transaction, statement mode) */
	uint64_t server_parse_count; /* ... Parse messages pgpulse sent to servers for them */
	uint64_t bind_count;         /* Bind messages of named statements */
	uint64_t prepared_evictions; /* statements closed on its servers to make room (max_prepared_statements) */
	struct failure_counts fail;  /* timeouts, failed server logins, errors by class (failures.h) */
};

/* the sizes in force for a pool: overrides resolved, 0 = none */
struct pool_limits {
	int base;        /* default_pool_size (user, then database, then global) */
	int min;         /* min_pool_size */
	int overflow;    /* overflow_pool_size */
	int reserve;     /* reserve_pool_size */
	int max_db;      /* max_db_connections, 0 = unlimited */
	int max_user;    /* max_user_connections, 0 = unlimited */
};

struct pool {
	struct list node;           /* worker->pools */
	struct pool_db *db;
	struct pool_user *user;     /* the user the servers log in as */

	/* clients logged in and not waiting: linked to a server or between transactions */
	struct list active_clients;
	/* clients that need a server, longest waiting first */
	struct list waiting_clients;
	/* servers linked to a client */
	struct list active_servers;
	/* servers ready for a client */
	struct list idle_servers;
	/* servers running pgpulse's own query (reset, parameter SETs, check) */
	struct list used_servers;
	/* servers connecting or logging in */
	struct list new_servers;
	/* servers released while a cancel to their backend is still travelling: they serve nobody yet */
	struct list canceling_servers;
	/* servers on the four lists above: kept, not counted, as the assignment path asks often */
	int server_count;

	struct param_list welcome;  /* ParameterStatus values a new client is told */
	bool have_welcome;
	/*
	 * The welcome, ready to send, as a login needs it: the untracked values
	 * encoded once as ParameterStatus messages (copied into every login's
	 * output), the tracked ones interned (a client's own value wins).
	 */
	struct pktbuf welcome_msgs;
	const char *welcome_tracked[6]; /* enum tracked_param */
	uint32_t welcome_pid_hint;
	/*
	 * What PostgreSQL made of tracked values clients sent (utf8 -> UTF8),
	 * learned from the SETs that applied them: a login that sends a value
	 * seen before is told PostgreSQL's form without a trip to a server.
	 * Interned; a few per parameter, the oldest replaced.
	 */
	struct param_alias {
		const char *sent;
		const char *reported;
	} aliases[6][POOL_ALIASES];
	uint8_t alias_next[6];
	/*
	 * Startup settings sets (settings.h) a server of this pool took
	 * without an error, with the ParameterStatus messages taking them made
	 * PostgreSQL send: a login that sends one of these needs no server to
	 * check its values, and its hello says what they made PostgreSQL
	 * report. Interned; the oldest replaced.
	 */
	struct known_settings {
		const char *settings;
		struct pktbuf reported;
	} known_settings[POOL_KNOWN_SETTINGS];
	uint8_t known_settings_next;

	int64_t last_connect_failure; /* monotonic usec, 0 if the last connect worked */
	char last_error_code[6];
	char last_error[256];
	/*
	 * query_wait_timeout: when a waiting client last timed out, and how
	 * many did since a client was last given a server (health.h).
	 */
	int64_t wait_timeout_at;
	unsigned wait_timeouts;

	struct pool_stats stats;
	struct pool_telemetry *tm;  /* latency histograms */
	int health;                 /* enum health_status, as last judged */
	char health_reason[160];
	int64_t health_checked_at;
	int pool_mode;              /* resolved: db, then user, then global */
	bool prepared_tracked;      /* named statements tracked (prepared_tracked_in), with pool_mode */
	/*
	 * auth_query's own pool of (database, auth_user): its servers run
	 * lookups and nothing else, so no client's session state (a temp
	 * table named pg_authid, a search_path, an encoding) reaches a lookup.
	 */
	bool for_lookups;
	/*
	 * The replication pool of (database, user): each of its servers is a
	 * walsender opened for one replication client (server.owner), linked
	 * to it for the client's whole session and closed with it: never idle,
	 * never reset, never anyone else's. Its mode is session whatever
	 * pool_mode says, and its servers count against no pool size and no
	 * max_db/max_user_connections: like PostgreSQL, which counts
	 * walsenders in max_wal_senders, not max_connections.
	 */
	bool for_replication;
};

/* find or create (from the "*" entry) */
struct pool_db *pool_find_db(const char *name);
/* a client names the database (startup) until it closes: see pool_db.refs */
void pool_db_hold(struct pool_db *db);
void pool_db_release(struct pool_db *db);

/*
 * Free the auto-created and removed databases that nobody uses any more:
 * the janitor, and (only_never_used) the reaper after a connection closed,
 * so that a failed login leaves no database behind even for a moment.
 */
void pool_free_unused_databases(int64_t now, bool only_never_used);

/* free a pool and what it owns (its servers must be closed, its clients gone) */
void pool_free(struct pool *p);

/* free a database's own memory (it must have no pools left) */
void pool_db_free(struct pool_db *db);

/* find an existing, configured database only */
struct pool_db *pool_lookup_db(const char *name);
struct pool_user *pool_find_user(const char *name, bool create);
struct pool *pool_get(struct pool_db *db, struct pool_user *user);
/* the lookups-only pool of (db, user) (see pool.for_lookups) */
struct pool *pool_get_for_lookups(struct pool_db *db, struct pool_user *user);

/* the replication pool of (db, user) (see pool.for_replication) */
struct pool *pool_get_for_replication(struct pool_db *db, struct pool_user *user);

/*
 * A client of a replication pool left before its server was linked: the
 * connection being opened for it is closed (it would serve nobody).
 */
void pool_replication_client_gone(struct client *c);

/* create admin + configured databases from the configuration in force */
void pool_apply_config(void);

int pool_server_count(const struct pool *p);
int pool_effective_size(const struct pool *p);
struct pool_limits pool_limits_of(const struct pool *p);
/* servers open beyond the base size, split into the tiers they occupy */
void pool_tier_use(const struct pool *p, int *overflow_in_use, int *reserve_in_use);

/* a value from the client's [users] entry when set (>= 0), else the global one */
int64_t pool_user_setting(const struct pool_user *u, int64_t user_value, int64_t global_value);

/*
 * A client needs a server. Links one at once when one is idle (returns
 * true); otherwise queues the client and opens a connection if allowed.
 */
bool pool_assign_server(struct client *c);

/* PAUSE (of its database, or of all) holds the pool's servers */
bool pool_paused(const struct pool *p);

/*
 * An idle server has sat unused for server_check_delay, so server_check_query
 * runs on it before it serves again: PgBouncer's "used" state (sv_used).
 */
bool pool_server_needs_check(const struct server *s, int64_t now);

/* an idle server of p for pgpulse's own work (expired ones are closed on the way), or NULL (none, or paused) */
struct server *pool_idle_server(struct pool *p);

/* the server finished what it was doing and can serve again */
void pool_server_ready(struct server *s);

/* the server's login (and connect_query) finished: the pool learns its parameters */
void pool_server_logged_in(struct server *s);

/* a connection attempt or login failed with a PostgreSQL error (or a socket error) */
void pool_server_failed(struct pool *p, const char *sqlstate, const char *message);

/*
 * A server applied a client's value of tracked parameter tp (sent) and
 * reports it as `reported`: remember the pair. pool_reported_form gives
 * the reported form of a sent value, or NULL if no server applied it yet.
 * Both strings are interned.
 */
void pool_learn_alias(struct pool *p, int tp, const char *sent, const char *reported);

/*
 * A server of p took this startup settings set (its values PostgreSQL
 * reports are in `server`, its ParameterStatus values): logins sending it
 * need not be checked again, and their hello repeats those values.
 */
void pool_learn_settings(struct pool *p, const char *settings, const struct param_list *server);
/* ParameterStatus for each name of `settings` that `server` (a server's reported values) has */
void pool_put_reported_settings(struct pktbuf *out, const char *settings, const struct param_list *server);
/* the pool's entry for a settings set it knows, or NULL (NULL settings: nothing to know) */
const struct known_settings *pool_known_settings(const struct pool *p, const char *settings);
bool pool_knows_settings(const struct pool *p, const char *settings);
const char *pool_reported_form(const struct pool *p, int tp, const char *sent);

/* every client of every pool that waits for a server (or for its login's) gets this FATAL */
void pool_drop_waiting_clients(const char *sqlstate, const char *message);

/* open server connections when the pool is below what waiting clients need */
void pool_launch_if_needed(struct pool *p);

/* open connections up to min_pool_size, while the pool has clients or a forced user */
void pool_fill_min(struct pool *p);

/* close idle servers of a database (RECONNECT, config change) */
void pool_close_idle_servers(struct pool *p, const char *reason);

/* may the pool open a server connection now (not paused, removed, or within server_login_retry)? */
bool pool_may_connect(const struct pool *p, int64_t now);
/* is there room for one more server under max_db_connections and max_user_connections (no eviction)? */
bool pool_has_room(const struct pool *p);
/* no tier (base, overflow, reserve) nor cap leaves room for another connection now */
bool pool_is_full(const struct pool *p);

/* housekeeping: timeouts and closes; called once a second */
void pool_janitor(struct pool *p, int64_t now);

/* before the counters are read: the bytes of answers still streaming, counted as far as they went */
void pool_count_moved_bytes(void);

#endif
