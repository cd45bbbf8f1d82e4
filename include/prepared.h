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
 * The messages a client's unnamed traffic is made of (unnamed Parse, Bind,
 * Describe, Execute, Close) go as they are and have exactly one reply that
 * ends them, known by its type alone: they get no entry, only a count in
 * front of the next one (ps_reply.before, or ps_server.tail_plain behind
 * the newest). So a message of that kind costs an increment on its way in
 * and a decrement on its reply's, done by the two inline checks at the end
 * of this file before any call; the hooks run only for what they decline.
 *
 * client.c and server.c call the hooks below; everything else is here.
 */
#ifndef PGPULSE_PREPARED_H
#define PGPULSE_PREPARED_H

#include <stdbool.h>
#include <stdint.h>

/* the inline checks at the end read the connections and the settings: their definitions */
#include "client.h"
#include "config.h"
#include "pool.h"
#include "server.h"
#include "stream.h"
#include "worker.h"

/* a client's name -> shared statement map (allocated at its first named Parse) */
struct ps_client {
	struct ps_name *slots; /* open addressing, linear probing */
	uint32_t cap;          /* a power of two */
	uint32_t count;
	bool skipping;         /* an error in this batch: drop messages until Sync, as PostgreSQL does */
	bool unnamed_drops_all; /* the unnamed statement is DEALLOCATE ALL or DISCARD ALL ... */
	bool portal_drops_all;  /* ... and so is the unnamed portal: its Execute takes every name */
	bool held;              /* a Query whose DEALLOCATE may or may not run is out: what follows waits for its reply */
};

#define PS_QUEUE_MAX 16384 /* entries in one server's reply queue; a client that would go past waits */

/*
 * One entry of a server's reply queue. Its kinds and layout are here, not
 * in src/prepared/, only for the inline checks at the end of this file.
 */
enum ps_kind {
	RQ_PARSE,
	RQ_BIND,           /* of a named statement (an unnamed one is only counted, as are Describe of a
			    * portal, Execute, Close of a portal or the unnamed statement) */
	RQ_DESCRIBE_STMT,
	RQ_EXECUTE,        /* of the unnamed portal of a DEALLOCATE ALL or DISCARD ALL (the others are
			    * only counted): it holds the names it took (saved) */
	RQ_CLOSE,
	RQ_SYNC,
	RQ_QUERY,          /* Query or FunctionCall: everything up to ReadyForQuery */
	RQ_FAIL,           /* a Describe of PS_PROBE_NAME: its error is replaced by `text` */
	RQ_COPY_END,       /* the client ended a COPY: no reply; bounds the Syncs COPY made ignored; it
			    * goes once the messages before it are answered */
	SY_PARSE_COMPLETE, /* answered by pgpulse when its turn comes */
	SY_CLOSE_COMPLETE,
};

struct ps_reply {
	uint8_t kind;         /* enum ps_kind */
	bool swallow;         /* pgpulse's own Parse or Close: the reply is not the client's; RQ_QUERY:
			       * its first CommandComplete is not */
	bool restore;         /* pgpulse's Close of a statement the server had: skipped, it still has it;
			       * a client's DEALLOCATE (RQ_QUERY, RQ_PARSE): failed or skipped, the
			       * client keeps the name `text` of `stmt` */
	bool held;            /* RQ_QUERY: the client waits for its reply (ps_client.held) */
	uint32_t before;      /* messages forwarded as they are, sent just before this one and not yet
			       * answered: their replies come first, one each */
	struct ps_stmt *stmt; /* a reference, or NULL */
	char *text;           /* the client's name (to undo), or RQ_FAIL's SQLSTATE and message */
	struct ps_client *saved; /* a client's DEALLOCATE ALL or DISCARD ALL: the names it took, back unless it runs */
	uint32_t stmts_before;   /* RQ_QUERY with text: the client's statements before its DEALLOCATE */
	uint32_t name_hash;      /* RQ_BIND, RQ_DESCRIBE_STMT: the hash of the client's name for stmt, which
				  * its errors and notices may name (on_error, 'N') */
};

/* a server's prepared statements and its queue of expected replies */
struct ps_server {
	struct ps_held *slots; /* open addressing, linear probing */
	uint32_t cap;          /* a power of two */
	uint32_t count;
	uint64_t clock;        /* LRU stamps */
	struct ps_reply *q;    /* ring; q_head < q_cap always */
	uint32_t q_cap, q_head, q_len;
	uint32_t tail_plain;   /* messages forwarded as they are after the newest entry (all of them, with
			       * the queue empty), not yet answered: the next entry's `before` */
	uint32_t answers;      /* entries that are answers pgpulse owes the client */
	bool copy_in;          /* a COPY FROM STDIN is running: PostgreSQL ignores Sync */
	bool client_paused;    /* the linked client waits for the queue to shrink to PS_QUEUE_MAX / 2 */
	uint32_t untracked;    /* simple Queries forwarded while nothing was in flight, their Z still due;
			       * their replies come before everything else */
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
static inline bool prepared_tracking(const struct client *c);

/*
 * ... in a pool of this mode, by the settings in force: pool.c keeps the
 * answer in pool->prepared_tracked, set with pool_mode (at creation and
 * reload), so that the per-packet check reads one field.
 */
static inline bool prepared_tracked_in(int pool_mode);

/* a packet of a linked client whose statements are tracked */
enum ps_result prepared_on_request(struct client *c, struct pkt *pkt);

/* a reply packet from a linked server: PKT_FORWARD lets server.c go on with it */
enum pkt_action prepared_on_reply(struct server *s, struct pkt *pkt);

/* the server's forwarded replies all reached the client: answers pgpulse owes may go out */
void prepared_server_flushed(struct server *s);

/* replies are still due to or from pgpulse: the server may not be released */
static inline bool prepared_server_busy(const struct server *s);

/* answers pgpulse owes are queued: prepared_server_flushed may have work */
static inline bool prepared_owes_answers(const struct server *s);

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

static inline bool prepared_tracked_in(int pool_mode)
{
	return pool_mode != POOL_SESSION && worker->cfg->max_prepared_statements > 0;
}

static inline bool prepared_tracking(const struct client *c)
{
	if (!c->pool)
		return false;
	if (c->pool->prepared_tracked)
		return true;
	if (c->pool->pool_mode == POOL_SESSION)
		return false;
	/* turned off by a RELOAD: finish what is queued consistently */
	return c->server && c->server->ps && (c->server->ps->q_len > 0 || c->server->ps->tail_plain > 0);
}

static inline bool prepared_server_busy(const struct server *s)
{
	const struct ps_server *sp = s->ps;
	return sp && (sp->q_len | sp->untracked | sp->tail_plain) != 0;
}

static inline bool prepared_owes_answers(const struct server *s)
{
	return s->ps && s->ps->answers;
}

/*
 * The per-message fast paths, tried by client.c and server.c before the
 * hooks (which try them first too, so calling a hook alone is the same).
 * True: the message is one that goes as it is and was counted, nothing else
 * to do. False: nothing was changed, the hook decides.
 */

/* a request packet of a linked client whose statements are tracked */
static inline bool prepared_request_passes(struct client *c, const struct pkt *pkt)
{
	struct ps_server *sp = c->server->ps;
	const struct ps_client *cp = c->ps;
	if (!sp || (cp && (cp->skipping | cp->held)))
		return false;
	const uint8_t *b = pkt->body;
	switch (pkt->type) {
	case 'E': /* not of a DEALLOCATE ALL's portal: that one takes the names (on_execute) */
		if (cp && cp->portal_drops_all)
			return false;
		break;
	case 'B': /* unnamed portal, unnamed statement, neither a DEALLOCATE ALL (on_bind) */
		if (pkt->avail < 7 || b[0] || b[1] || (cp && (cp->unnamed_drops_all | cp->portal_drops_all)))
			return false;
		break;
	case 'P':
		/* the unnamed statement, with no name it could DEALLOCATE and no statement a DEALLOCATE
		 * ALL could drop (on_unnamed_parse reads those) */
		if (pkt->avail < 6 || b[0] || sp->count || (cp && (cp->count || cp->unnamed_drops_all)))
			return false;
		break;
	case 'D':
	case 'C': /* of a portal, or of the unnamed statement */
		if (!pkt->complete || pkt->body_len < 2 || (b[0] == 'S' && b[1]))
			return false;
		break;
	case 'Q': /* nothing pgpulse counts in flight, no name it could DEALLOCATE, no statement to drop */
		if (sp->q_len || sp->tail_plain || sp->count || (cp && cp->count))
			return false;
		sp->untracked++;
		return true;
	case 'S': {
		/* an entry of its own, the messages counted since the last one in front; it needs no call
		 * when there is room, no untracked Query to queue first and no COPY ignoring it */
		if (sp->q_len >= sp->q_cap || sp->q_len >= PS_QUEUE_MAX || sp->untracked || sp->copy_in)
			return false;
		struct ps_reply *e = &sp->q[(sp->q_head + sp->q_len++) & (sp->q_cap - 1)];
		*e = (struct ps_reply){ .kind = RQ_SYNC, .before = sp->tail_plain };
		sp->tail_plain = 0;
		sp->syncs++;
		return true;
	}
	case 'H':
	case 'd': /* Flush, CopyData: no reply of their own */
		return true;
	default:
		return false;
	}
	sp->tail_plain++;
	return true;
}

/* a reply packet of a linked server */
static inline bool prepared_reply_passes(struct server *s, const struct pkt *pkt)
{
	struct ps_server *sp = s->ps;
	if (!sp)
		return true;
	uint8_t t = pkt->type;
	switch (t) {
	case 'C':
		/* the tags of DEALLOCATE ALL and DISCARD ALL (15 and 12 bytes) drop statements: the hook reads them */
		if (pkt->body_len == 15 || pkt->body_len == 12)
			return false;
		break;
	case '1':
	case '2':
	case '3':
	case 'T':
	case 'n':
	case 'I':
	case 's':
		break; /* each ends one message of a batch */
	case 'Z': {
		if (!pkt->complete)
			return false;
		if (!sp->q_len) {
			/* ends a simple Query let through untracked */
			if (!sp->untracked)
				return false;
			sp->untracked--;
			return true;
		}
		/* ends a Sync of nothing but counted messages: it holds nothing, popped here unless
		 * the hook has more to do (a COPY end after it, a client waiting for room) */
		const struct ps_reply *head = &sp->q[sp->q_head];
		if (head->kind != RQ_SYNC || head->before || sp->client_paused ||
		    (sp->q_len > 1 && sp->q[(sp->q_head + 1) & (sp->q_cap - 1)].kind == RQ_COPY_END))
			return false;
		sp->q_head = (sp->q_head + 1) & (sp->q_cap - 1);
		sp->q_len--;
		sp->copy_in = false;
		return true;
	}
	case 'E':
	case 'G':
		return !sp->q_len && sp->untracked; /* a simple Query's, let through untracked */
	case 'N':
		/* a notice of the head entry's own may name its statement as pgpulse prepared it: the hook
		 * gives the client its name (one of a counted message's, or with no statement, goes as it is) */
		if (sp->answers)
			return false;
		return !sp->q_len || sp->q[sp->q_head].before || !sp->q[sp->q_head].stmt;
	default:
		return !sp->answers; /* rows, notices...: unless answers pgpulse owes may be due first */
	}
	if (!pkt->complete)
		return false;
	if (!sp->q_len) {
		/* a simple Query's, let through untracked (they come first), or nothing pgpulse counts */
		if (!sp->untracked && sp->tail_plain)
			sp->tail_plain--;
		return true;
	}
	struct ps_reply *head = &sp->q[sp->q_head];
	if (!head->before || head->kind == RQ_COPY_END)
		return false; /* the head entry's own reply, or a COPY end the hook lets go */
	head->before--;
	return true;
}

#endif
