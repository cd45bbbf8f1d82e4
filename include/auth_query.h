/*
 * auth_query: the secret of a user who is not in the auth_file, looked up
 * in PostgreSQL by running auth_query over a server connection logged in
 * as auth_user (PgBouncer's auth_user / auth_query / auth_dbname).
 *
 * A lookup is a pool customer: it waits in the lookups-only pool of
 * (auth database, auth_user) (pool.for_lookups: no client's session state
 * can reach it) for an idle server, runs one extended-protocol query on it
 * (the user name is a parameter, never spliced into the text) and gives
 * the server back. The login stays asynchronous: the client
 * waits in CL_LOGIN and is resumed with login_lookup_done().
 *
 * Two things keep a login storm cheap:
 * - one lookup per (auth pool, user) in flight: every client that logs in
 *   as that user while it runs waits for the same answer;
 * - a secret found is kept for auth_cache_lifetime, and dropped at once
 *   when a password check against it fails, so that after ALTER ROLE ...
 *   PASSWORD the next attempt looks the user up again.
 * A missing user, a NULL secret (expired) and a wrong password end the
 * same way for the client: 28P01 after a full exchange.
 */
#ifndef PGPULSE_AUTH_QUERY_H
#define PGPULSE_AUTH_QUERY_H

#include <stdbool.h>
#include <stdint.h>

struct client;
struct server;
struct pool;
struct pool_db;
struct pkt;

/* the auth_user that looks up the users of db missing from the auth_file, or NULL (none) */
const char *auth_query_user_for(const struct pool_db *db);

/*
 * The client's user is not in the auth_file: answer it from the cache, or
 * start (or join) a lookup. Returns true when the answer is already known
 * (*secret set, NULL for no such user, the string owned by the cache: copy
 * it) and false when the client now waits for login_lookup_done() or was
 * closed (c->state tells).
 */
bool auth_query_find(struct client *c, const char **secret);

/* a client waiting for a lookup closes */
void auth_query_forget_client(struct client *c);

/* a password check against a looked-up secret failed: the next login looks again */
void auth_query_drop_cached(const struct client *c);

/* RELOAD: forget every looked-up secret (auth_user or auth_query may have changed) */
void auth_query_clear_cache(void);

/* janitor: drop secrets past auth_cache_lifetime, close lookups past client_login_timeout */
void auth_query_expire(int64_t now);

/* lookups of p waiting for a server (pool_launch_if_needed counts them as waiting clients) */
int auth_query_waiting(const struct pool *p);

/* a server of p is ready: true if a lookup now runs on it */
bool auth_query_take_server(struct server *s);

/* p cannot log in to its server: its waiting lookups fail with message */
void auth_query_pool_failed(struct pool *p, const char *message);

/* a reply to the lookup running on s (server.c, job JOB_AUTH_QUERY) */
void auth_query_on_reply(struct server *s, const struct pkt *pkt);

/* the lookup on s got its ReadyForQuery, or s closed under it (lost) */
void auth_query_finished(struct server *s, bool lost);

/* at exit */
void auth_query_shutdown(void);

#endif
