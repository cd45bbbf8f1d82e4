/*
 * worker: everything one event loop owns — the event base, the
 * configuration in force, the pools, the clients still logging in, and the
 * connections waiting to be freed.
 *
 * Today there is one worker; keeping per-loop state here (and not in
 * scattered globals) is what lets several run later.
 */
#ifndef PGPULSE_WORKER_H
#define PGPULSE_WORKER_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "failures.h"
#include "login_stats.h"
#include "normalize.h"
#include "stream.h"
#include "util.h"

struct cfg;
struct auth_file;
struct hba;
struct dns_resolver;
struct ps_table;

enum shutdown_mode {
	SHUTDOWN_NONE = 0,
	SHUTDOWN_WAIT_SERVERS, /* SIGINT: exit once no server is linked to a client */
	SHUTDOWN_WAIT_CLIENTS, /* SIGTERM: exit once every client has left */
	SHUTDOWN_NOW,
};

struct worker {
	struct event_base *base;
	struct stream_loop streams; /* buffer cache, open streams, resume queue */
	struct cfg *cfg;            /* in force; replaced whole on reload */
	struct auth_file *auth;     /* the auth_file in force, or NULL */
	struct hba *hba;            /* auth_type = hba: the auth_hba_file's rules, else NULL */
	struct dns_resolver *dns;   /* server host names, resolved in this loop */

	struct list databases;      /* struct pool_db, by name */
	struct list users;          /* struct pool_user */
	struct list pools;          /* struct pool */
	struct list hosts;          /* struct host (hosts.h): every host an entry names, or a server still points at */
	struct list login_clients;  /* clients before they belong to a pool */
	struct list dead_clients;   /* closed, freed on the next loop turn */
	struct list dead_servers;
	struct event *reaper;       /* frees the dead */

	int client_count;           /* every client connection, admin included */
	int server_count;
	uint64_t next_conn_id;
	uint32_t next_client_pid;   /* the next BackendKeyData pid of pgpulse's own (client.c) */

	struct list cancels;        /* struct cancel_req in flight (cancel.c) */
	struct event *janitor;      /* the periodic sweep (janitor.c) */
	bool suspended;             /* SUSPEND in force (control.c) */
	bool db_sweep_due;          /* a database nobody logged in to lost its last client (pool.c) */
	int64_t suspend_started;    /* monotonic usec */
	char normalized[NORMALIZE_MAX + 8]; /* a request's normalized text (client.c) */
	struct ps_table *prepared;  /* shared prepared statements (src/prepared/), made at first use */

	enum shutdown_mode shutdown;
	bool paused_all;            /* SIGINT shutdown: no new server work */
	int64_t started_at;         /* wall clock usec */
	/* failures of clients before they had a pool (failures.h): a client-chosen name is no label */
	struct failure_counts unpooled_failures;
	uint64_t login_failures[LF_COUNT]; /* by reason, whether or not the client had a pool */
	struct login_counts logins;        /* every client's login, by stage (login_stats.h) */
};

extern struct worker *worker;

/* free dead connections once the current callbacks have unwound */
void worker_schedule_reap(void);

/* the shutdown condition may have been met: check and exit the loop */
void worker_check_shutdown(void);


/* make the running parts follow worker->cfg after it changed (reload, SET) */
void worker_apply_config(void);

/* reload the configuration file and auth_file (RELOAD, SIGHUP) */
bool worker_reload(char *err, size_t errlen);
/*
 * The hba rules cfg asks for (auth_type = hba: auth_hba_file, auth_ident_file,
 * and what a cert line needs), read and checked, not installed; *out is NULL
 * for any other auth_type. RELOAD, startup and the console's SET use it.
 */
bool worker_load_hba(const struct cfg *cfg, struct hba **out, char *err, size_t errlen);

/* begin a shutdown of the given kind (signals, SHUTDOWN) */
void worker_request_shutdown(enum shutdown_mode mode);

#endif
