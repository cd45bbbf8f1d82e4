/*
 * hello: the end of a login — ParameterStatus, BackendKeyData and
 * ReadyForQuery — and, in session mode, the server it is said on (see
 * src/hello.c).
 */
#ifndef PGPULSE_HELLO_H
#define PGPULSE_HELLO_H

#include <stdbool.h>

struct client;

/*
 * The client authenticated and has its pool: must its hello wait for a
 * linked server? Session mode always; otherwise when a tracked value it
 * sent has not been applied on a server yet. When not, its values are
 * put in PostgreSQL's form (utf8 -> UTF8) on the way.
 */
bool hello_needs_server(struct client *c);

/* ask the pool for a server; the hello follows once it is linked (hello_on_linked) */
void hello_take_server(struct client *c);

/*
 * The server the hello waited for is linked (and the client's values SET
 * on it): say the hello with its pid and values. Outside session mode the
 * server goes back to the pool at once.
 */
void hello_on_linked(struct client *c);

/*
 * Say the hello: ParameterStatus (the pool's welcome and the client's
 * tracked values), BackendKeyData, ReadyForQuery; the client is logged in.
 */
void hello_send(struct client *c);

#endif
