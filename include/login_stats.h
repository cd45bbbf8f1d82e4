/*
 * login_stats: what happens to logins (doc/telemetry.md, "Logins") — how
 * long they take, how many are under way, and how each one ended.
 *
 * A login runs from the accept of the client's socket to the
 * ReadyForQuery of its hello, through three stages:
 *   before_startup  accepted, its startup packet not read yet (TLS included)
 *   auth            the startup packet read, authentication not done
 *                   (auth_query lookups and the password exchange)
 *   server_wait     authenticated and in its pool, the hello not said yet
 *                   (the pool's first server, or in session mode its own)
 * and ends exactly once: completed (the hello was sent), abandoned (the
 * client closed its end first) or failed (pgpulse ended it: an error, or a
 * close without a word). A CancelRequest is no login: it leaves the count
 * when it is recognised.
 *
 * The client carries its stage and three timestamps; the counts are kept
 * for the instance (worker->logins) and, from server_wait on, for the pool.
 * Recording a completed login is three histogram records in its pool.
 */
#ifndef PGPULSE_LOGIN_STATS_H
#define PGPULSE_LOGIN_STATS_H

#include <stdbool.h>
#include <stdint.h>

struct client;

enum login_stage {
	LOGIN_BEFORE_STARTUP = 0,
	LOGIN_AUTH,
	LOGIN_SERVER_WAIT,
	LOGIN_STAGES,
	LOGIN_DONE = LOGIN_STAGES, /* ended, or never a login (a cancel) */
};

/* the instance's (every stage), or a pool's (server_wait only: a login has a pool from then on) */
struct login_counts {
	int64_t in_flight[LOGIN_STAGES];
	uint64_t completed;
	uint64_t failed;
	uint64_t abandoned[LOGIN_STAGES];
};

/* "before_startup", "auth", "server_wait" */
const char *login_stage_name(enum login_stage s);

/* the sum of the in-flight (or abandoned) counts of every stage */
int64_t login_counts_in_flight(const struct login_counts *lc);
uint64_t login_counts_abandoned(const struct login_counts *lc);

/* the socket was accepted at `now`: the login begins (before anything can close it) */
void login_stats_accepted(struct client *c, int64_t now);

/* the startup packet was read: authentication begins */
void login_stats_startup_read(struct client *c);

/* the connection is a CancelRequest: no login after all */
void login_stats_not_a_login(struct client *c);

/* authentication succeeded and c->pool is set (NULL for the admin console) */
void login_stats_authenticated(struct client *c);

/* the hello's ReadyForQuery was queued at `now`: the login's three durations go to its pool */
void login_stats_completed(struct client *c, int64_t now);

/* the client closed its end (or sent Terminate) before its login finished */
void login_stats_abandoned(struct client *c);

/* the connection closes: a login not finished by now failed */
void login_stats_closed(struct client *c);

/* is the client's login still under way */
bool login_stats_unfinished(const struct client *c);

#endif
