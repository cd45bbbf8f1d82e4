/*
 * prepared: protocol-level named prepared statements in transaction and
 * statement mode, where a client's statements must follow it from one
 * server connection to the next.
 *
 * Three structures, and one queue:
 *
 * - The worker's table of shared statements: one entry per distinct
 *   (query text, parameter types), whoever prepared it, named on every
 *   server PGPULSE_<id>. Reference-counted by the names and servers and
 *   queued messages that use it.
 * - Each client's map: the client's statement name -> shared statement.
 *   Client names never reach a server.
 * - Each server's set: the shared statements prepared on that connection,
 *   at most max_prepared_statements, least recently used evicted with a
 *   Close whose reply pgpulse swallows.
 * - Each server's reply queue: one entry per message sent to it that has a
 *   reply, in order, saying whose reply it is (the client's, or pgpulse's
 *   own Parse/Close to swallow) and holding the replies pgpulse answers in
 *   the server's stead (ParseComplete for a statement the server already
 *   has, CloseComplete). On an ErrorResponse, PostgreSQL skips to Sync:
 *   the queue drops what it held for the skipped messages and undoes what
 *   they were going to do to the maps, so that every name maps to a
 *   statement the server really has.
 *
 * client.c and server.c call the hooks below; everything else is here.
 */
#ifndef PGPULSE_PREPARED_H
#define PGPULSE_PREPARED_H

#include <stdbool.h>
#include <stdint.h>

#include "stream.h"

struct client;
struct server;
struct pool;

/* a client's name -> shared statement map (allocated at its first named Parse) */
struct ps_client {
	struct ps_name *slots; /* open addressing, linear probing */
	uint32_t cap;          /* a power of two */
	uint32_t count;
	bool skipping;         /* an error in this batch: drop messages until Sync, as PostgreSQL does */
	bool paused;           /* waiting for the server's reply queue to shrink */
	bool unnamed_drops_all; /* the unnamed statement is DEALLOCATE ALL or DISCARD ALL ... */
	bool portal_drops_all;  /* ... and so is the unnamed portal: its Execute takes every name */
	bool held;              /* a Query whose DEALLOCATE may or may not run is out: what follows waits for its reply */
};

/* a server's prepared statements and its queue of expected replies */
struct ps_server {
	struct ps_held *slots; /* open addressing, linear probing */
	uint32_t cap;          /* a power of two */
	uint32_t count;
	uint64_t clock;        /* LRU stamps */
	struct ps_reply *q;    /* ring */
	uint32_t q_cap, q_head, q_len;
	bool copy_in;          /* a COPY FROM STDIN is running: PostgreSQL ignores Sync */
	uint32_t untracked;    /* simple Queries forwarded while the queue was empty, their Z still due */
	uint64_t evictions;
	uint64_t syncs;        /* Syncs queued: the batch a message is in */
};

/* what the request hook did with a client's packet */
enum ps_result {
	PS_FORWARD,    /* forward it as it is (its reply is queued) */
	PS_SENT,       /* rewritten into the server's out, or answered by pgpulse: consume it */
	PS_SKIPPED,    /* dropped: the batch is being skipped until Sync */
	PS_NEED_FULL,  /* as PKT_NEED_FULL */
	PS_FLUSH_FIRST, /* as PKT_FLUSH_FIRST (also while the server's out drains) */
	PS_PAUSE,      /* as PKT_PAUSE: the reply queue is full; the server side resumes it */
	PS_GONE,       /* the client was closed */
	PS_FORWARD_REST, /* as PKT_FORWARD_REST: pkt->cut set, the rewritten head is in the server's out */
};

/* are named statements tracked for this client's requests now */
bool prepared_tracking(const struct client *c);

/* a packet of a linked client whose statements are tracked */
enum ps_result prepared_on_request(struct client *c, struct pkt *pkt);

/* a reply packet from a linked server: PKT_FORWARD lets server.c go on with it */
enum pkt_action prepared_on_reply(struct server *s, struct pkt *pkt);

/* the server's forwarded replies all reached the client: answers pgpulse owes may go out */
void prepared_server_flushed(struct server *s);

/* replies are still due to or from pgpulse: the server may not be released */
bool prepared_server_busy(const struct server *s);

/* messages pgpulse wrote for the server wait in its out: send them */
void prepared_client_flushed(struct client *c);

/* pgpulse runs `sql` on the server (reset): forget what it drops */
void prepared_server_reset(struct server *s, const char *sql);

/* the connection closes: its statements and queue are let go */
void prepared_server_free(struct server *s);
void prepared_client_free(struct client *c);

/* for SHOW CLIENTS / SHOW SERVERS */
int prepared_client_count(const struct client *c);
int prepared_server_count(const struct server *s);

/* SHOW PREPARED_STATEMENTS: one call per shared statement */
struct ps_info {
	uint64_t id;
	const char *query;      /* NUL-terminated */
	int param_types;
	uint32_t clients, servers;
	uint64_t client_parses, server_parses, binds, evictions;
};
void prepared_each(void (*fn)(const struct ps_info *info, void *arg), void *arg);

/* at exit: free the table (connections are gone by then) */
void prepared_shutdown(void);

#endif
