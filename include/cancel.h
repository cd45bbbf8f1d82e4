/*
 * cancel: a CancelRequest's trip to PostgreSQL, on a connection of its own.
 *
 * PostgreSQL's postmaster signals the backend and then closes the cancel
 * connection, so the close is the moment the cancel has landed. Until
 * then the server whose query is being cancelled serves nobody
 * (SV_CANCELING once released): a cancel that arrives late can never hit
 * the next client's query. The client that sent the CancelRequest, if any,
 * is closed at that moment too, as PostgreSQL closes it.
 */
#ifndef PGPULSE_CANCEL_H
#define PGPULSE_CANCEL_H

struct server;
struct client;
struct cancel_req;

/*
 * Send a cancel for s's backend. requester: the client connection that
 * asked (closed through client_cancel_done), or NULL (query_timeout).
 * Returns NULL if no connection could even be started: then nothing waits.
 */
struct cancel_req *cancel_send(struct server *s, struct client *requester);

/* the server is closing: its cancels go on, but report to nobody */
void cancel_forget_server(struct server *s);

/* the requesting client left before the cancel was delivered */
void cancel_forget_requester(struct cancel_req *cr);

struct pool;
/*
 * For SHOW POOLS: cancel connections in flight to the pool's servers
 * (sv_active_cancel), and how many of them a client is waiting on
 * (cl_active_cancel_req).
 */
void cancel_pool_counts(const struct pool *p, int *requesters, int *connections);

/* cancels in flight */
int cancel_count(void);

/* at exit: drop every cancel in flight */
void cancel_free_all(void);

#endif
