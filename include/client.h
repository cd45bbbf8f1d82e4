/*
 * client: one application connection — startup, authentication against the
 * auth_file, then the request loop that asks the pool for a server and
 * forwards bytes to it.
 *
 * State is one enum, and the client sits on the list that matches it
 * (worker->login_clients, or its pool's active/waiting list).
 */
#ifndef PGPULSE_CLIENT_H
#define PGPULSE_CLIENT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "fingerprint.h"
#include "log.h"
#include "scram.h"
#include "stream.h"
#include "util.h"

struct pool;
struct pool_db;
struct ps_client;
struct auth_lookup;
struct server;
struct stmt_names;

/*
 * A client's state, and the list it sits on in that state. Only
 * client_set_state() changes either, and with them every count that
 * depends on them (worker->client_count, the database's and the user's
 * client counts that max_*_client_connections check, the pool's waiting
 * level), so closing twice or counting out twice cannot happen.
 *
 *   NEW -> LOGIN -> CANCEL                (a CancelRequest being forwarded)
 *   LOGIN -> WELCOME -> ACTIVE <-> WAITING
 *   LOGIN -> ACTIVE                       (the pool had its welcome; admin)
 *   any but NEW -> CLOSED
 */
enum client_state {
	CL_NEW,      /* allocated, on no list */
	CL_LOGIN,    /* startup and authentication: worker->login_clients */
	CL_CANCEL,   /* sent a CancelRequest; closed when it was delivered: worker->login_clients */
	CL_WELCOME,  /* authenticated, waiting for the pool's first server: pool->waiting_clients */
	CL_ACTIVE,   /* logged in, linked or between transactions: pool->active_clients
			(admin consoles: worker->login_clients) */
	CL_WAITING,  /* has a request and no server: pool->waiting_clients */
	CL_CLOSED,   /* worker->dead_clients, freed on the next loop turn */
};

/*
 * The startup packet's replication= value: a walsender session (physical,
 * or logical for replication=database), which pgpulse passes through on a
 * server connection of its own (see pool.for_replication).
 */
enum client_replication { REPL_NONE = 0, REPL_PHYSICAL, REPL_LOGICAL };

enum client_auth_step { CA_NONE, CA_LOOKUP, CA_CLEARTEXT, CA_MD5, CA_SCRAM_FIRST, CA_SCRAM_FINAL };

struct client {
	struct list node;           /* the list of its state */
	enum client_state state;
	struct stream st;
	uint64_t id;

	struct pool *pool;
	struct pool_db *db;
	struct pool_user *login_user; /* the user it logged in as: its [users] overrides */
	struct server *server;      /* linked server, or NULL */

	/*
	 * Kept small: an idle client costs what this struct costs, and pgpulse
	 * promises no more per idle client than PgBouncer (doc/benchmarks.md).
	 */
	const char *user;           /* from the startup packet, interned (intern.h) */
	const char *dbname;         /* likewise */
	char addr[56];              /* "ip:port", "[ipv6]:port" or "unix(pid):port", for logs */
	union {
		struct sockaddr sa;     /* sa_family AF_UNIX alone for a unix socket */
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} peer_addr;
	int local_port;

	/* what the client asked for at startup, and ParameterStatus since */
	const char *params[6];      /* enum tracked_param; interned (intern.h) */
	const char *settings;       /* every other startup setting, and options' -c: interned set (settings.h), or NULL */
	/*
	 * Startup parameters pgpulse could not read (a malformed `options`):
	 * PostgreSQL reads them after authentication and its database check,
	 * so the refusal waits until then (login.c). malloc'd message, or NULL.
	 */
	char *settings_refusal;
	char settings_refusal_code[6];
	const char *settings_refusal_hint; /* static text, or NULL */

	struct cancel_req *cancel;  /* CL_CANCEL: the cancel it waits for */
	uint32_t cancel_pid;        /* BackendKeyData pgpulse gave it: in session mode its backend's pid */
	uint32_t cancel_key;        /* always pgpulse's own: cancels come through pgpulse */
	bool hello_after_link;      /* authenticated; the hello waits for a linked server (see enter_pool) */
	uint8_t replication;        /* enum client_replication, from the startup packet */
	bool cancel_request_read;   /* its first packet was a CancelRequest: its close is logged (log_disconnections) */
	uint8_t login_stage;        /* enum login_stage (login_stats.h): LOGIN_DONE once it ended */

	/* authentication */
	enum client_auth_step auth_step;
	char *secret;               /* copy of the auth_file (or looked-up) secret, during login */
	struct auth_lookup *lookup; /* CA_LOOKUP: the auth_query lookup it waits for */
	int auth_method;            /* enum auth_type: the exchange hba or auth_type chose */
	bool secret_looked_up;      /* c->secret came from auth_query */
	bool looked_up_role_found;  /* auth_query returned its row, with a secret or not (trust lets it in) */
	uint8_t md5_salt[4];
	struct scram_server *scram;
	bool is_admin;
	bool login_timed_out;       /* client_login_timeout ended it: the login failure's reason */
	bool admin_may_change;      /* admin_users, not just stats_users */
	int admin_wait;             /* enum control_wait: a console command not answered yet */
	struct pool_db *admin_wait_db;

	/* request tracking while linked */
	int pending_syncs;          /* requests forwarded whose ReadyForQuery is due */
	bool mid_batch;             /* extended-protocol messages forwarded since the last Sync */
	bool wait_notified;         /* query_wait_notify's NOTICE went out during this wait */
	char xact_status;           /* from the last ReadyForQuery: I, T or E */

	int64_t connect_time;       /* wall usec */
	int64_t login_start;        /* monotonic: the socket was accepted */
	uint32_t auth_began;        /* usec after login_start: the startup packet was read */
	uint32_t auth_ended;        /* ... it was authenticated */
	int64_t request_time;       /* monotonic: state change or last request */
	int64_t wait_start;         /* monotonic, when it began waiting */
	int64_t xact_start;         /* monotonic */
	int64_t query_start;        /* monotonic: the running request was forwarded */
	int64_t req_arrive;         /* monotonic: the request being read arrived, 0 if none */
	int64_t req_sent;           /* monotonic: ... its first message was forwarded */
	bool req_waited;            /* it had to wait for a server */
	uint64_t req_fp;            /* its query fingerprint, 0 until its text was seen */
	char *req_text;             /* its text for the slow-query log, when that needs a copy */
	/* names -> fingerprints of statements passed through (stmt_names.h), made at the first one */
	struct stmt_names *stmt_names;
	struct ps_client *ps;       /* named statements (src/prepared/), allocated at the first one */
	int64_t idle_since;         /* monotonic: the last ReadyForQuery it was sent */
	uint64_t bytes_in_counted;  /* stream bytes already added to the pool's stats */
	uint64_t bytes_out_counted;
	bool bytes_in_from_next;    /* login over: bytes_in_counted starts at the next packet */
};

/* fd comes non-blocking (the listener accepts with SOCK_NONBLOCK) */
void client_accept(int fd, const struct sockaddr *addr, socklen_t addrlen, int local_port, bool is_unix);

/*
 * A ReadyForQuery for one of the client's requests came from its server:
 * one request fewer is due, the transaction status is known, the bytes
 * the client moved are added to its pool's stats. With status 'I', returns
 * when the transaction that just ended started (0 if not known), and the
 * next one starts at next_arrival (a request pipelined behind this one;
 * 0: the request the client is sending, if any).
 */
/* the login is over: the byte counters start after it (hello_send) */
void client_skip_login_bytes(struct client *c);
/* the bytes it moved since last counted, into its pool's counters (SHOW STATS reads them) */
void client_count_moved_bytes(struct client *c);
int64_t client_ready_for_query(struct client *c, char status, int64_t now, int64_t next_arrival,
			       uint64_t unsent);

/* a server was linked to the client: say the login's hello if it waited for one, else forward */
void client_linked(struct client *c);

/*
 * The request the client awaits an answer to ends in an error of
 * pgpulse's (client_fatal calls it; a timeout says so first): it counts for
 * its shape as a call that failed (SHOW QUERIES), once.
 */
void client_request_failed(struct client *c, enum fp_outcome outcome);

/* send an error and close the connection (FATAL) */
void client_fatal(struct client *c, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* the same, with a HINT field, as PostgreSQL gives some of the errors pgpulse says in its place */
void client_fatal_hint(struct client *c, const char *sqlstate, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * PostgreSQL's ErrorResponse (its body) for what the client asked, sent as
 * a FATAL with all its fields (proto_put_error_as_fatal), and close.
 */
void client_fatal_server_error(struct client *c, const uint8_t *body, size_t len);

/* send an ERROR (not fatal) followed by ReadyForQuery */
void client_error(struct client *c, const char *sqlstate, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* is the client on the unix socket (no TLS there, peer credentials instead) */
bool client_is_unix(const struct client *c);

/* close now, without a message */
void client_close(struct client *c, const char *reason);

/*
 * The one transition function (see enum client_state): moves the client
 * to the list of its new state and keeps the counts that follow from it.
 * An illegal transition is a bug and aborts.
 */
void client_set_state(struct client *c, enum client_state to);

/*
 * The server linked to this client died or was closed. The client gets
 * the error, unless `quietly`: a reply was partly forwarded to it (an
 * error message in the middle of a half-sent DataRow could not be read),
 * or PostgreSQL's own FATAL was forwarded already. Then the connection
 * just closes.
 */
void client_server_lost(struct client *c, const char *sqlstate, const char *message, bool quietly);

/*
 * The cancel this client asked for ended: close it, as PostgreSQL does. The
 * log says whether it was delivered (failure NULL) or how it failed.
 */
void client_cancel_done(struct client *c, const char *failure);

/* find a client by the key it got in BackendKeyData */
struct client *client_by_cancel_key(uint32_t pid, uint32_t key);

void client_free_dead(void);

const char *client_state_name(enum client_state s);

/* "none", "physical" or "logical" (SHOW CLIENTS, SHOW SERVERS: PgBouncer's words) */
static inline const char *client_replication_name(int replication)
{
	return replication == REPL_PHYSICAL ? "physical" : replication == REPL_LOGICAL ? "logical" : "none";
}

/*
 * A log line about the client, named the way PgBouncer names it
 * ("C-12: appdb/app@127.0.0.1:5000 ...", log.h) so one grep follows it.
 */
#define client_log(c, lvl, ...) \
	log_conn((lvl), 'C', (c)->id, (c)->dbname, (c)->user, (c)->addr, __VA_ARGS__)

#endif
