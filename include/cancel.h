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

#include <stdint.h>

struct server;
struct client;
struct cancel_req;

/*
 * Send a cancel for s's backend. requester: the client connection that
 * asked (closed through client_cancel_done), or NULL (query_timeout).
 * Returns NULL if no connection could even be started: then nothing waits.
 */
struct cancel_req *cancel_send(struct server *s, struct client *requester);

struct cfg_peer;
/*
 * Forward a CancelRequest (pid, key as the peer is to get them) to the
 * peer process that handed the key out; requester is closed through
 * client_cancel_done once the peer has closed the connection (it has
 * acted on it), or it could not be reached within cancel_wait_timeout.
 * NULL if it could not even be started (requester untouched).
 */
struct cancel_req *cancel_forward(const struct cfg_peer *peer, uint32_t pid, uint32_t key,
				  struct client *requester);

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

/* for SHOW PEER_POOLS: the forwards to one peer in flight */
struct cancel_peer_counts {
	int active_requests;    /* clients whose request reached the peer, waiting for its close */
	int waiting_requests;   /* clients whose request is not written yet (connecting, resolving) */
	int active_connections; /* forward connections with the request written */
	int connecting;         /* forward connections not yet written to */
};
void cancel_peer_counts(int peer_id, struct cancel_peer_counts *n);

/* cancels in flight */
int cancel_count(void);

/* at exit: drop every cancel in flight */
void cancel_free_all(void);

#endif
