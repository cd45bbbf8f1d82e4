/*
 * config: the ini file, its one table of parameters, and the values in force.
 *
 * A configuration is parsed into a fresh `struct cfg`; nothing global changes
 * until the whole file (with its %include files) parsed cleanly, so a RELOAD
 * with a bad file leaves the running configuration untouched. Every main
 * section parameter is a row of one table (name, type, default, unit,
 * reloadable, check) that drives the parser, SHOW CONFIG and validation.
 */
#ifndef PGPULSE_CONFIG_H
#define PGPULSE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pool_mode { POOL_SESSION = 0, POOL_TRANSACTION, POOL_STATEMENT };

enum auth_type {
	AUTH_TRUST = 0,
	AUTH_ANY,   /* like trust, and the user name is not checked either */
	AUTH_PLAIN, /* cleartext password exchange */
	AUTH_MD5,   /* md5, or SCRAM when the stored secret is SCRAM */
	AUTH_SCRAM, /* scram-sha-256 */
	AUTH_CERT,
	AUTH_HBA,
};

/* how a database with several hosts picks one for a new server connection */
enum load_balance { LB_ROUND_ROBIN = 0, LB_DISABLE };

/*
 * A [databases] host= value split into its hosts (host=a,b,c), each with
 * its port (port=5432 for all, or port=5432,5433,5434 one per host). Each
 * host is a name, an IP address, or a unix-socket directory ('/...').
 */
#define CFG_MAX_HOSTS 16
struct cfg_hosts {
	int count;                    /* 0: the default unix socket */
	char *name[CFG_MAX_HOSTS];
	int port[CFG_MAX_HOSTS];
};

/*
 * Split a host list and its ports into `out` (which the caller frees with
 * cfg_hosts_free). port_list NULL: every host has `port`. false with a
 * reason: an empty host, more than CFG_MAX_HOSTS hosts, a bad port, or a
 * port list whose length is neither 1 nor the number of hosts. host NULL or
 * "" means the default unix socket (count 0).
 */
bool cfg_hosts_parse(const char *host, const char *port_list, int port, struct cfg_hosts *out, char *why,
		     size_t whylen);
void cfg_hosts_copy(struct cfg_hosts *dst, const struct cfg_hosts *src);
bool cfg_hosts_equal(const struct cfg_hosts *a, const struct cfg_hosts *b);
void cfg_hosts_free(struct cfg_hosts *h);

/* one [databases] entry; "*" is the fallback entry */
struct cfg_db {
	char *name;
	char *host;      /* as written: NULL (default unix socket), or one host or a comma list */
	int port;        /* the first port; default 5432 */
	char *port_list; /* port= as written when it is a list, else NULL */
	struct cfg_hosts hosts;  /* host and port, split */
	int load_balance_hosts;  /* enum load_balance */
	int target_session_attrs; /* enum target_session_attrs (hosts.h); TSA_ANY when absent */
	char *dbname;    /* NULL: same as name */
	char *user;      /* forced user, or NULL */
	char *password;  /* password for the forced user, or NULL */
	char *auth_user;         /* NULL: the global auth_user, auth_query, auth_dbname */
	char *auth_query;
	char *auth_dbname;
	int pool_size;           /* -1: not set, use default_pool_size */
	int min_pool_size;       /* -1: not set */
	int reserve_pool_size;   /* -1: not set */
	int overflow_pool_size;  /* -1: not set */
	int max_db_connections;  /* -1: not set */
	int max_db_client_connections; /* -1: not set */
	int pool_mode;           /* -1: not set, else enum pool_mode */
	int64_t server_lifetime; /* usec; -1: not set (the global one) */
	char *connect_query;
	char *client_encoding;
	char *datestyle;
	char *timezone;
	char *application_name;
	const char *file; /* where it was defined, for messages */
	int line;
};

/*
 * one [peers] entry: another pgpulse (or PgBouncer) process that hands out
 * cancel keys carrying `id`; a CancelRequest for one of them goes there
 */
struct cfg_peer {
	int id;          /* 1 .. 16383 */
	char *host;      /* a unix socket directory (starts with '/'), an address or a name */
	int port;        /* default 6432 */
	int pool_size;   /* -1: not set; accepted for PgBouncer's files, no limit applied */
	const char *file; /* where it was defined, for messages */
	int line;
};

/* one [users] entry */
struct cfg_user {
	char *name;
	int pool_mode;            /* -1: not set */
	int pool_size;            /* -1: not set */
	int reserve_pool_size;    /* -1: not set */
	int max_user_connections; /* -1: not set */
	int max_user_client_connections; /* -1: not set */
	int64_t query_timeout;            /* usec, -1: not set */
	int64_t query_wait_timeout;       /* usec, -1: not set */
	int64_t idle_transaction_timeout; /* usec, -1: not set */
	int64_t client_idle_timeout;      /* usec, -1: not set */
	const char *file;
	int line;
	int64_t transaction_timeout;      /* usec, -1: not set (PgBouncer 1.24 per-user key) */
};

/*
 * The values of the main section. Durations are microseconds (int64_t),
 * sizes bytes; string lists (admin_users, ...) stay as written, comma
 * separated, and are queried with cfg_list_contains().
 * String parameters are never NULL in a configuration made by cfg_load() or
 * cfg_new_default(): "not set" is the empty string, so test with `s[0]`.
 */
struct cfg {
	/* where it came from */
	char *conffile;

	/* general */
	char *logfile;
	char *pidfile;
	char *listen_addr;      /* "" or NULL: no TCP; "*": all addresses; comma list */
	int listen_port;        /* 6432 */
	int listen_backlog;     /* 128 */
	char *unix_socket_dir;  /* "/tmp"; "" disables */
	int unix_socket_mode;   /* 0777 */
	char *unix_socket_group;
	char *user;             /* user to switch to (like -u) */
	bool so_reuseport;

	/* authentication */
	int auth_type;          /* enum auth_type, default md5 */
	char *auth_file;
	char *auth_hba_file;
	char *auth_ident_file;
	char *auth_dbname;
	char *auth_user;
	char *auth_query;
	int64_t auth_cache_lifetime; /* usec a secret auth_query found is reused for */
	char *admin_users;
	char *stats_users;

	/* pooling */
	int pool_mode;          /* enum pool_mode, default session */
	int max_client_conn;    /* 100 */
	int default_pool_size;  /* 20 */
	int min_pool_size;      /* 0 */
	int reserve_pool_size;  /* 0 */
	int64_t reserve_pool_timeout; /* 5 s */
	int overflow_pool_size; /* 0 */
	int64_t overflow_idle_timeout; /* 60 s */
	int max_db_connections; /* 0 = unlimited */
	int max_user_connections;
	int max_db_client_connections;
	int max_user_client_connections;
	bool server_round_robin;
	char *ignore_startup_parameters;
	char *track_extra_parameters;
	bool disable_pqexec;
	bool application_name_add_host;
	int max_prepared_statements;

	/* logging */
	bool syslog;
	char *syslog_ident;     /* "pgpulse" */
	char *syslog_facility;  /* "daemon" */
	bool log_connections;
	bool log_disconnections;
	bool log_pooler_errors;
	bool log_stats;
	int64_t stats_period;   /* 60 s */
	int verbose;

	/* server connections */
	char *server_reset_query;       /* "DISCARD ALL" */
	bool server_reset_query_always;
	int64_t server_check_delay;     /* 30 s */
	char *server_check_query;       /* "select 1" */
	bool server_fast_close;
	int64_t server_lifetime;        /* 3600 s */
	int64_t server_idle_timeout;    /* 600 s */
	int64_t server_connect_timeout; /* 15 s */
	int64_t server_login_retry;     /* 15 s */
	int64_t replica_check_period;   /* 5 s; 0: roles from logins and ParameterStatus only, no lag */
	int64_t replica_max_lag;        /* usec; 0: no limit */
	int64_t replica_max_lag_bytes;  /* 0: no limit */

	/* clients */
	int64_t client_login_timeout;   /* 60 s */
	int64_t client_idle_timeout;    /* 0 */
	int64_t query_timeout;          /* 0 */
	int64_t query_wait_timeout;     /* 120 s */
	int64_t query_wait_notify;      /* 5 s; 0: never */
	int scram_iterations;           /* 4096: for verifiers pgpulse derives from a plaintext password */
	int64_t cancel_wait_timeout;    /* 10 s */
	int64_t idle_transaction_timeout; /* 0 */
	int64_t transaction_timeout;    /* 0 */
	int64_t suspend_timeout;        /* 10 s */
	int64_t autodb_idle_timeout;    /* 3600 s */

	/* dns */
	int64_t dns_max_ttl;            /* 15 s */
	int64_t dns_nxdomain_ttl;       /* 15 s */
	int64_t dns_zone_check_period;  /* 0 */
	char *resolv_conf;
	char *dns_nameservers;          /* "": those of resolv.conf; else addr[:port],... */

	/* network tuning */
	int64_t pkt_buf;                /* 4096 */
	int64_t max_packet_size;        /* 2147483647 */
	int sbuf_loopcnt;               /* 5 */
	int64_t tcp_socket_buffer;      /* 0 */
	int tcp_defer_accept;
	bool tcp_keepalive;             /* true */
	int tcp_keepcnt;
	int tcp_keepidle;
	int tcp_keepintvl;
	int64_t tcp_user_timeout;

	/* tls (later issue; accepted now so PgBouncer files parse) */
	char *client_tls_sslmode;
	char *client_tls_key_file;
	char *client_tls_cert_file;
	char *client_tls_ca_file;
	char *client_tls_protocols;
	char *client_tls_ciphers;
	char *client_tls13_ciphers;  /* "": OpenSSL's TLS 1.3 suites */
	char *client_tls_ecdhcurve;
	char *client_tls_dheparams;
	char *server_tls_sslmode;
	char *server_tls_ca_file;
	char *server_tls_cert_file;
	char *server_tls_key_file;
	char *server_tls_protocols;
	char *server_tls_ciphers;
	char *server_tls13_ciphers;

	/* pgpulse's own */
	bool telemetry;                 /* record latency histograms (on) */
	/* health thresholds on the 5-minute window; 0 turns a check off */
	int64_t health_query_p95_warning;   /* 0.5 s */
	int64_t health_query_p95_critical;  /* 2 s */
	int64_t health_wait_p95_warning;    /* 50 ms */
	int64_t health_wait_p95_critical;   /* 500 ms */
	int health_utilization_warning;     /* 80 % */
	int health_utilization_critical;    /* 95 % */
	int max_query_fingerprints;         /* 5000; 0 turns fingerprints off */
	int query_repeat_threshold;         /* 10: executions of one shape in one transaction that count as a repeat; 0 off */
	int64_t slow_query_threshold;       /* 0 = no slow-query log */
	int slow_query_log_size;            /* 100 */
	char *slow_query_log_text;          /* "normalized" or "full" */
	char *metrics_addr;                 /* 127.0.0.1 */
	int metrics_port;                   /* 0 = no metrics endpoint */
	int metrics_max_connections;        /* HTTP connections open at once; more wait in the kernel's queue */
	char *metrics_buckets;              /* histogram bounds in seconds, comma separated */
	bool metrics_summaries;             /* export the SHOW LATENCY windows as summaries too */
	char *service_name;
	char *job_name;
	int peer_id;

	/* sections */
	struct cfg_db *dbs;     /* array in file order; fallback "*" included */
	int n_dbs;
	struct cfg_user *users;
	int n_users;
	struct cfg_peer *peers; /* [peers], in file order */
	int n_peers;

	/* every file read (main file first, then %include files), owned here;
	 * cfg_db.file and cfg_user.file point at these strings */
	char **files;
	int n_files;

	/* where each main-section parameter was last set, indexed like the
	 * parameter table: file points into files; NULL for a default or SET */
	struct cfg_origin {
		const char *file;
		int line;
	} *origins;
};

/* one row of the parameter table, as SHOW CONFIG reports it */
struct cfg_param_info {
	const char *name;
	const char *value;    /* current value, formatted (valid until the next call) */
	const char *default_value;
	bool reloadable;
	bool in_effect; /* false: accepted so PgBouncer files load; loading a file that sets it warns */
};

/*
 * Parse `path` into a new configuration. On failure returns NULL and writes
 * "file:line: parameter: reason" into err. Warnings (unknown parameters,
 * unknown [databases] keys) go to the log with file:line.
 */
struct cfg *cfg_load(const char *path, char *err, size_t errlen);

/* a configuration with every default, no databases: for tests and tools */
struct cfg *cfg_new_default(void);

void cfg_free(struct cfg *c);

/* the [databases] entry for `name`, else the "*" entry, else NULL */
const struct cfg_db *cfg_find_db(const struct cfg *c, const char *name);

/* the [peers] entry for `id`, or NULL */
const struct cfg_peer *cfg_find_peer(const struct cfg *c, int id);

/* the [users] entry for `name`, or NULL */
const struct cfg_user *cfg_find_user(const struct cfg *c, const char *name);

/* is `name` an element of a comma-separated list (spaces around items ignored) */
bool cfg_list_contains(const char *list, const char *name);
/* the same, ignoring case: for PostgreSQL's setting names */
bool cfg_list_contains_name(const char *list, const char *name);

/* parse "250ms", "5s", "2min", "1h", "1.5" (seconds), "0" into microseconds */
bool cfg_parse_duration(const char *text, int64_t *usec);

/* parse "4096", "8kB", "1MB", "1GB" into bytes */
bool cfg_parse_size(const char *text, int64_t *bytes);

/*
 * Change one reloadable parameter in `c` (SET from the admin console).
 * Returns false with a reason in err when the name is unknown, the value is
 * bad, or the parameter needs a restart.
 */
bool cfg_set(struct cfg *c, const char *name, const char *value, char *err, size_t errlen);

/* the file and line that set parameter `name`; false when the value is a default or came from SET */
bool cfg_param_origin(const struct cfg *c, const char *name, const char **file, int *line);

/* number of parameters in the table, and the i-th one's description */
int cfg_param_count(void);
bool cfg_param_get(const struct cfg *c, int i, struct cfg_param_info *out);

/*
 * Compare the main-section parameters of two configurations (RELOAD): calls
 * `changed` once per parameter whose value differs, with both values
 * formatted as SHOW CONFIG shows them. A change with reloadable == false only
 * takes effect after a restart; the caller decides what to log.
 * Returns the number of changed parameters.
 */
int cfg_diff(const struct cfg *old, const struct cfg *next,
	     void (*changed)(const char *name, const char *old_value, const char *new_value,
			     bool reloadable, void *arg),
	     void *arg);

/* text names of enums */
const char *cfg_pool_mode_name(int mode);
const char *cfg_auth_type_name(int type);

#endif
