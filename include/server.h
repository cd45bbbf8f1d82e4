/*
 * server: one connection from pgpulse to PostgreSQL — connect, startup,
 * authentication (cleartext, md5, SCRAM-SHA-256), the parameters it
 * reports, and the reply stream while it is linked to a client.
 */
#ifndef PGPULSE_SERVER_H
#define PGPULSE_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "fingerprint.h"
#include "scram.h"
#include "stream.h"
#include "util.h"

struct pool;
struct client;
struct ps_server;
struct auth_lookup;
struct host;

/*
 * A server's state, and the pool list it sits on in that state. Only
 * server_set_state() changes either, with the counts that follow (the
 * pool's and the worker's server counts, the telemetry levels of open
 * servers).
 *
 *   NEW -> LOGIN -> IDLE <-> ACTIVE <-> USED
 *   ACTIVE, USED -> CANCELING -> IDLE, ACTIVE, USED
 *   any but NEW -> CLOSED
 */
enum server_state {
	SV_NEW,       /* allocated, on no list */
	SV_LOGIN,     /* connecting and logging in (and connect_query): pool->new_servers */
	SV_IDLE,      /* ready: pool->idle_servers */
	SV_ACTIVE,    /* linked to a client: pool->active_servers */
	SV_USED,      /* running pgpulse's own query: pool->used_servers */
	SV_CANCELING, /* released with a cancel still on its way: pool->canceling_servers */
	SV_CLOSED,    /* worker->dead_servers */
};

/*
 * JOB_PROBE's one query (PostgreSQL 10+): in recovery or not; its LSN
 * (a primary's current, a standby's replayed) as text; a standby's replay
 * lag in seconds, 0 when all it received is replayed (NULL for a
 * primary); default_transaction_read_only as the session would reset to
 * it, whatever a client SET on this connection.
 */
#define SERVER_PROBE_SQL \
	"SELECT pg_catalog.pg_is_in_recovery(), " \
	"CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() " \
	"ELSE pg_catalog.pg_current_wal_lsn() END::text, " \
	"CASE WHEN NOT pg_catalog.pg_is_in_recovery() THEN NULL " \
	"WHEN pg_catalog.pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_catalog.pg_last_wal_replay_lsn() THEN 0 " \
	"ELSE extract(epoch FROM pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()) END::float8, " \
	"(SELECT CASE WHEN source IN ('user', 'database', 'database user', 'client', 'session') THEN NULL " \
	"ELSE reset_val END FROM pg_catalog.pg_settings WHERE name = 'default_transaction_read_only')"

/* why pgpulse is running its own query on the server */
enum server_job { JOB_NONE, JOB_CONNECT_QUERY, JOB_RESET, JOB_SET_PARAMS, JOB_CHECK, JOB_AUTH_QUERY, JOB_PROBE };

/*
 * Requests in flight on a server, oldest first, so that each ReadyForQuery
 * closes the request that caused it. A pipeline deeper than the ring is
 * measured for the requests that fit; the sequence numbers keep the rest
 * from being matched to the wrong reply.
 */
#define SERVER_INFLIGHT 64
struct request_stamp {
	int64_t arrive;  /* the request's first byte reached pgpulse */
	int64_t sent;    /* ... was forwarded to the server */
	uint64_t fp;     /* its query fingerprint, 0 if none */
	char *text;      /* its text as sent, for slow_query_log_text = full; or NULL */
	uint32_t seq;
	bool by_sync;    /* an extended-protocol batch ended by Sync (not Query or FunctionCall) */
	bool timed_out;  /* query_timeout cancelled it: an error reply is a timeout of its shape */
};

struct server {
	struct list node;
	enum server_state state;
	struct stream st;
	uint64_t id;
	struct pool *pool;
	struct client *client;      /* linked client, or the one waiting for JOB_SET_PARAMS */
	/*
	 * A replication pool's server: the client it is being opened for, until
	 * it is linked to it (NULL once that client left). Its startup packet
	 * carries that client's replication= and startup values.
	 */
	struct client *owner;
	uint8_t replication;        /* enum client_replication: what kind of walsender it is (REPL_NONE: none) */

	uint32_t backend_pid;       /* BackendKeyData from PostgreSQL */
	uint32_t backend_key;
	const char *params[6];      /* enum tracked_param, as PostgreSQL reported them; interned */
	const char *settings;       /* the clients' startup settings applied on it (settings.h), or NULL */
	bool settings_unsure;       /* a reset query ran since: they may be gone (settings_sync_sql) */
	uint8_t *job_error;         /* the first ErrorResponse (body) of the client's SETs, for that client; */
	size_t job_error_len;       /* malloc'd, freed at the next job or with the server */
	struct param_list *all_params; /* every ParameterStatus at login */

	char xact_status;           /* I, T, E */
	enum server_job job;
	bool job_failed;
	bool release_pending;       /* release once the reply is flushed to the client */
	bool close_when_released;   /* any reason: it serves nobody once released */
	bool close_needed;          /* RECONNECT: its database's settings are to be taken anew (server_fast_close) */
	bool ready;                 /* logged in */
	int cancels_in_flight;      /* cancel connections to its backend not yet closed by PostgreSQL */
	int generation;             /* the database's generation at connect */
	int host_index;             /* which entry of the database's host list it went to */
	struct host *host;          /* the host it connected to (hosts.h), pinned until the server is freed */
	bool role_reported;         /* PostgreSQL reported in_hot_standby at its login (14+) */
	int spare_tries;            /* other addresses of its host name to try if the connect fails */
	struct sockaddr_storage peer_addr; /* where it connected (cancel requests go there too) */
	socklen_t peer_addr_len;

	struct scram_client *scram;
	int64_t connect_time;       /* wall usec */
	int64_t connect_start;      /* monotonic */
	int64_t last_used;          /* monotonic: when it last went idle */
	int64_t link_time;          /* monotonic: when it was linked */
	int64_t cancel_sent_at;     /* monotonic: query_timeout sent a cancel, 0 if not */
	struct request_stamp inflight[SERVER_INFLIGHT];
	/* the shapes its open transaction ran (N+1 detection; emptied when a client is linked) */
	struct fp_xact xact_shapes;
	uint32_t inflight_head;     /* index of the oldest */
	uint32_t inflight_count;
	uint32_t seq_sent;          /* requests forwarded */
	uint32_t seq_done;          /* ReadyForQuery received */
	bool reply_error;           /* an ErrorResponse came for the oldest request in flight */
	/*
	 * COPY FROM STDIN started by an extended-protocol batch whose Sync was
	 * already sent: PostgreSQL ignores a Sync that arrives in copy-in mode, so
	 * the client's next Sync (after CopyDone or CopyFail) takes its place.
	 */
	bool copy_sync_ignored;
	bool fatal_forwarded;       /* PostgreSQL's FATAL went to the client: its close needs no other error */
	uint32_t last_cancel_key;   /* the key of the last session-mode client given this backend's pid */
	struct ps_server *ps;       /* prepared statements and expected replies (src/prepared/) */
	struct auth_lookup *lookup; /* JOB_AUTH_QUERY: the lookup it runs (auth_query.c) */
	char addr[64];
};

/* the one transition function (see enum server_state); an illegal one aborts */
void server_set_state(struct server *s, enum server_state to);

/* open a new connection for the pool; it reports back through pool_* */
struct server *server_connect(struct pool *p);
/* ... to entry host_index of its database's host list, whatever the pick would say (a lag probe's) */
struct server *server_connect_to_host(struct pool *p, int host_index);

/*
 * host as a [databases] entry writes it — a unix socket directory (NULL:
 * the default one) or a literal IP address — with port, as a socket
 * address; false for a name, which needs the resolver, or a path too long.
 */
bool server_address_without_lookup(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len);

/*
 * Open a walsender connection for replication client c (p is a replication
 * pool): a failure is c's alone, told to it with client_fatal.
 */
struct server *server_connect_for(struct pool *p, struct client *c);

/*
 * The entry of the database's host list this connection went to: a name,
 * an address or a unix-socket directory (NULL: the default socket). The
 * name is what TLS sends as SNI and what verify-full checks.
 */
const char *server_host(const struct server *s);
int server_port(const struct server *s);

/*
 * The addresses of host name `host` changed (dns): the server connections
 * of every database that uses it close as they are released, as after a
 * RELOAD that changed host=.
 */
void server_host_moved(const char *host);

/*
 * Names of databases that have server connections are looked up again
 * when their cache entry expires, without waiting for a new connection to
 * need them: that is how an address change is noticed by a pool that only
 * reuses the connections it has. Called by the janitor.
 */
void server_refresh_host_names(void);

/* link to a client: replies are forwarded to it */
void server_link(struct server *s, struct client *c);
/* unlink from the client (who keeps no reference) */
void server_unlink(struct server *s);

/*
 * The linked client is done with the server between transactions: unlink
 * it and give it back to the pool (after server_reset_query when
 * server_reset_query_always says so).
 */
void server_release(struct server *s);

/* run pgpulse's own query; pool_server_ready() follows when it is done */
void server_run_job(struct server *s, enum server_job job, const char *sql);
/* the job's messages are in the server's out already: mark the job and send them */
void server_start_job(struct server *s, enum server_job job);

/* the SETs needed to make this server's parameters match the client's; NULL if none */
char *server_param_sync_sql(const struct server *s, const struct client *c);

/* a request (Query, FunctionCall, or a batch ending in Sync) went to the server */
void server_request_sent(struct server *s, int64_t arrive, int64_t sent, uint64_t fp, char *text, bool by_sync);

/* close the connection (sends Terminate when it is healthy) */
void server_close(struct server *s, const char *reason);

/* a cancel connection to this server's backend was closed by PostgreSQL (or gave up) */
void server_cancel_finished(struct server *s, bool delivered);

void server_free_dead(void);

const char *server_state_name(enum server_state s);

#endif
