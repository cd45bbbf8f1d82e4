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

	/* added by the behaviour (hosts.c, pool.c, server.c); readers may use them too */
	uint8_t suits_mask;    /* bit (1 << tsa) set when hosts_suits(h, tsa): the hot path's test */
	int servers;           /* server connections to it now, any pool, any state but closed */
	int pins;              /* server connections pointing at it until freed: it outlives its entries while they do */
	bool probing;          /* a probe query is running on one of its servers */
	int64_t probe_opened;  /* monotonic usec a connection was last opened for its probe (lagging, no server) */
	bool sweep_due;        /* role, read-only or an entry's tsa changed: the janitor closes servers it does not suit */
	int64_t refused_at;    /* monotonic usec a login was last refused (pg_hba.conf, a password); 0: none since one succeeded */
	/*
	 * Set by the janitor from the entries (replicas.c): hosts one entry
	 * names together are one cluster, whose primary's LSN a standby's byte
	 * lag is measured against; a host is watched (probed every
	 * replica_check_period) when an entry naming it picks by role.
	 */
	int cluster;
	bool watched;
};

/* a host of unknown role, on no list, nothing measured (hosts_ref's start; name is the host's) */
void hosts_init(struct host *h, char *name, int port);

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

/* the hot path's form of hosts_suits, from the mask kept current by the hosts_note_* below */
static inline bool hosts_fits(const struct host *h, int tsa)
{
	return (h->suits_mask >> tsa) & 1u;
}

/* a server connection points at h from its connect until it is freed */
void hosts_pin(struct host *h);
void hosts_unpin(struct host *h);

/*
 * What a server learned of its host: its role (in_hot_standby, or the
 * probe's pg_is_in_recovery), whether it is read-only by default, that a
 * connection to it failed (down, with why) or logged in (up). now is
 * monotonic usec. hosts_note_role returns true when the role differs
 * from the one known before (a promotion): role_changes counts it, and
 * sweep_due asks the janitor to close servers it no longer suits.
 */
bool hosts_note_role(struct host *h, enum host_role role, int64_t now);
void hosts_note_read_only(struct host *h, bool read_only);
void hosts_note_down(struct host *h, const char *why, int64_t now);
void hosts_note_up(struct host *h);
/* a login to h was refused (not a connection failure): the pool's user may not log in there */
void hosts_note_refused(struct host *h, const char *why, int64_t now);
/* refused within the last `within` usec, and no login succeeded since */
bool hosts_refused_lately(const struct host *h, int64_t now, int64_t within);

/* the lag limits in force (replica_max_lag usec, replica_max_lag_bytes; 0: none) */
struct hosts_lag_limits {
	int64_t max_lag_usec;
	int64_t max_lag_bytes;
};

/*
 * One probe's answer: in recovery or not, its LSN (a primary's current,
 * a standby's replayed; 0 unknown), a standby's time lag (usec, -1 not
 * known). The byte lag is measured against the newest LSN any primary
 * of the registry reported; the verdict (lagging) against the limits.
 */
void hosts_note_probe(struct host *h, bool in_recovery, uint64_t lsn, int64_t lag_usec, struct hosts_lag_limits lim,
		      int64_t now);
/*
 * The body of a DataRow of the probe query (SERVER_PROBE_SQL, server.h):
 * in recovery ("t"/"f"), LSN as text, lag in seconds (NULL for a
 * primary), default_transaction_read_only ("on"/"off"); h learns them
 * (hosts_note_probe). false, and nothing learned, for a row of another
 * shape.
 */
bool hosts_note_probe_row(struct host *h, const uint8_t *body, size_t len, struct hosts_lag_limits lim, int64_t now);

/* the limits changed (RELOAD, SET): the verdicts are taken again from the last readings */
void hosts_apply_limits(struct hosts_lag_limits lim);

/* "16/B374D848" -> the LSN; false if it is not one */
bool hosts_parse_lsn(const char *text, uint64_t *lsn);

/*
 * Which of a database's n hosts its next server connection goes to, or -1
 * when none may be tried now (the clients wait). In order from `start`
 * (round-robin's cursor): a host that suits tsa, or that no login has
 * reached yet (its login tells), and is not down. Else a host whose role
 * was last read more than stale_after ago; never a lagging one.
 * prefer-standby: a suitable standby or a never-reached host, then a
 * stale one, then the primary. Else, a down
 * host by the same rules: with nothing better, trying it is how pgpulse
 * learns it is back (server_login_retry paces the pool's attempts).
 */
int hosts_pick(struct host *const *hosts, int n, enum target_session_attrs tsa, int start, int64_t now,
	       int64_t stale_after);

#endif
