/*
 * login: authenticating a client and putting it in its pool (see
 * src/login.c). client.c reads the startup packet and hands over.
 */
#ifndef PGPULSE_LOGIN_H
#define PGPULSE_LOGIN_H

#include <stdbool.h>

#include "stream.h"

struct client;

/* the admin console: admin_users, stats_users, or the OS user pgpulse runs as; false after the error */
bool login_admin_allowed(struct client *c);

/* client_tls_sslmode = require or stricter refuses plaintext TCP; false after the error */
bool login_meets_tls_requirement(struct client *c);

/* start authenticating (the startup packet was read, c->db found or NULL for a missing one) */
void login_authenticate(struct client *c);

/* a password message ('p') during login */
enum pkt_action login_on_password(struct client *c, struct pkt *pkt);

/*
 * The auth_query lookup the client waited for is over: secret is the
 * user's (NULL: no such user, or no valid password), role_found whether
 * the query returned the role's row at all (trust needs only that), or
 * error says why the lookup failed. The login goes on (or fails) from here.
 */
void login_lookup_done(struct client *c, const char *secret, bool role_found, const char *error);

#endif
