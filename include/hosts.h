/*
 * hosts: what pgpulse knows of each PostgreSQL server its [databases]
 * entries name — its role (primary or standby), whether it answers, how far
 * a standby's replay is behind — and, from that, which host a database's
 * new server connection goes to by its target_session_attrs.
 *
 * A host is a (name, port) pair as the host lists write it; two entries
 * over the same hosts (appdb read-write, appdb_ro prefer-standby) share
 * one struct host, so what one entry's servers learn serves the other.
 *
 * Roles are learned at every server login (PostgreSQL 14+ reports
 * in_hot_standby and default_transaction_read_only; an older server is
 * asked) and from the ParameterStatus a running server sends when they
 * change, and re-checked with lag by a probe every replica_check_period.
 */
#ifndef PGPULSE_HOSTS_H
#define PGPULSE_HOSTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct pool_db;
struct host_telemetry;

/* libpq's target_session_attrs values, in libpq's spelling */
enum target_session_attrs {
	TSA_ANY = 0,
	TSA_READ_WRITE,
	TSA_READ_ONLY,
	TSA_PRIMARY,
	TSA_STANDBY,
	TSA_PREFER_STANDBY,
};

enum host_role {
	HOST_ROLE_UNKNOWN = 0, /* never logged in to, or too long ago */
	HOST_ROLE_PRIMARY,     /* not in recovery */
	HOST_ROLE_STANDBY,     /* in recovery (hot standby) */
};

struct host {
	struct list node;      /* worker->hosts */
	char *name;            /* as the host list writes it: a name, an address, "/dir"; "" the default socket */
	int port;
	int refs;              /* database entries whose host list names it */

	enum host_role role;
	bool read_only;        /* default_transaction_read_only = on, as PostgreSQL reported it */
	int64_t role_checked;  /* monotonic usec of the last reading of the role; 0: never */
	uint64_t role_changes; /* times the role read differed from the one before (a promotion) */

	bool down;             /* the last connection attempt to it failed, and none succeeded since */
	int64_t down_since;    /* monotonic usec, while down */
	char last_error[128];  /* why the last attempt failed, "" if none */

	/* replay lag of a standby at the last probe; -1: not measured (or a primary) */
	int64_t lag_usec;
	int64_t lag_bytes;
	int64_t lag_checked;   /* monotonic usec of the last probe; 0: never */
	bool lagging;          /* past replica_max_lag or replica_max_lag_bytes at the last probe */
	uint64_t wal_lsn;      /* the last probe's LSN: a primary's current, a standby's replayed; 0 unknown */

	struct host_telemetry *tm; /* per-host query latency (telemetry/host_stats.c); NULL until first used */
};

/* the host (name, port) from the registry, made on first use; hosts_unref when done */
struct host *hosts_ref(const char *name, int port);
void hosts_unref(struct host *h);

/* parse/print target_session_attrs; false for a word libpq does not know */
bool hosts_tsa_parse(const char *word, enum target_session_attrs *out);
const char *hosts_tsa_name(enum target_session_attrs tsa);

const char *hosts_role_name(enum host_role role); /* "unknown", "primary", "standby" */
/* one word for SHOW HOSTS: "up", "down", "lagging", "unknown" */
const char *hosts_state_name(const struct host *h);

/* "name:port" ("/dir:port" for a unix socket) into buf: the host label of SHOW HOSTS and /metrics */
const char *hosts_label(const struct host *h, char *buf, size_t len);

/*
 * Does a server on h suit a database with target_session_attrs tsa, by
 * what is known now: the role fits (unknown fits only TSA_ANY), and a
 * standby is not lagging. prefer-standby is suited by either role; the
 * preference is hosts_pick's.
 */
bool hosts_suits(const struct host *h, enum target_session_attrs tsa);

#endif
