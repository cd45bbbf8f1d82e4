/*
 * prepared_store: the statements side of the prepared module (src/prepared/),
 * shared by its protocol side and its tests; nothing else includes it.
 *
 * The worker's table of shared statements, each client's names and each
 * server's set, with the references that keep a statement alive: a client
 * name, a server that has it, a queued message that uses it.
 */
#ifndef PGPULSE_PREPARED_STORE_H
#define PGPULSE_PREPARED_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "prepared.h"
#include "proto.h"

struct client;
struct server;

#define PS_NAME_PREFIX "PGPULSE_"
#define PS_CLIENT_MIN_NAMES 1000 /* names one client may keep, at least */
#define PS_CLIENT_FACTOR 4       /* ... or this many times max_prepared_statements */

/* one distinct (query text, parameter types); servers know it as PGPULSE_<id> */
struct ps_stmt {
	struct ps_stmt *next; /* hash chain */
	uint64_t hash;
	uint64_t id;
	uint64_t fp;          /* telemetry fingerprint of the text, 0 if not known */
	const struct pool *fp_pool; /* ... whose entry for fp existed at fp_generation() == fp_gen */
	uint64_t fp_gen;
	uint32_t refs;        /* client names + servers holding it + queue entries */
	uint32_t clients;     /* client names that map to it */
	uint32_t servers;     /* server connections that have it */
	uint64_t client_parses, server_parses, binds, evictions;
	uint32_t blob_len;    /* the Parse body after the name: text, NUL, types */
	uint16_t ntypes;
	uint8_t blob[];
};

struct ps_table {
	struct ps_stmt **buckets;
	uint32_t nbuckets; /* a power of two */
	uint32_t count;
	uint64_t next_id;
};

struct ps_name {
	char *name; /* NULL: a free slot */
	uint32_t hash;
	struct ps_stmt *stmt;
};

struct ps_held {
	struct ps_stmt *stmt; /* NULL: a free slot */
	uint64_t last_use;
	bool stale;           /* its plan no longer fits the table: prepare it again before use */
	uint64_t pending;     /* its Parse awaits ParseComplete: the batch (ps_server.syncs + 1) it was
			       * sent in, which may use it; a later batch prepares it again; 0: confirmed */
};

/* shared statements: a new one has no reference; hold it at once */
uint64_t ps_hash_bytes(const void *p, size_t n);
struct ps_stmt *ps_stmt_find(const uint8_t *blob, uint32_t len, uint64_t h);
struct ps_stmt *ps_stmt_create(const uint8_t *blob, uint32_t len, uint64_t h, uint16_t ntypes);
void ps_stmt_hold(struct ps_stmt *st);           /* NULL is allowed */
void ps_stmt_drop(struct ps_stmt *st);           /* freed with its last reference */
void ps_put_server_name(struct pktbuf *b, const struct ps_stmt *st); /* PGPULSE_<id>, with its NUL */

/* a client's names; each holds a reference */
struct ps_client *ps_client_map(struct client *c); /* made at first use */
struct ps_name *ps_name_find(const struct ps_client *m, const char *name); /* m may be NULL */
void ps_name_add(struct client *c, const char *name, struct ps_stmt *st);
void ps_name_delete_slot(struct ps_client *m, uint32_t i);
/* remove name; only when it maps to only_if, if that is given */
void ps_name_remove(struct ps_client *m, const char *name, const struct ps_stmt *only_if);
void ps_names_clear(struct ps_client *m);
uint32_t ps_client_name_limit(void);

/* a server's statements; each holds a reference */
struct ps_server *ps_server_of(struct server *s); /* made at first use */
struct ps_held *ps_held_find(const struct ps_server *sp, const struct ps_stmt *st);
struct ps_held *ps_held_add(struct ps_server *sp, struct ps_stmt *st); /* confirmed, unless told */
void ps_held_remove(struct ps_server *sp, struct ps_stmt *st);
void ps_held_clear(struct ps_server *sp);
struct ps_stmt *ps_held_lru(const struct ps_server *sp);

/* SQL texts that change names or statements (sqltext.c); comments and blanks skipped as PostgreSQL does */
/* a text's statements, split on ';' as a simple Query's: false at the end or at an unterminated quote/comment */
bool ps_sql_next(const char *text, const char **pos, const char **start, const char **end);
/* a statement DEALLOCATE [PREPARE] name: name folded as PostgreSQL folds identifiers; not for ALL */
bool ps_sql_deallocates(const char *start, const char *end, char *name, size_t size);
bool ps_sql_drops_all(const char *start, const char *end); /* DEALLOCATE [PREPARE] ALL or DISCARD ALL */
bool ps_deallocate_target(const char *sql, char *name, size_t size); /* a text that is only such a DEALLOCATE */
bool ps_may_drop_all(const char *sql); /* names DEALLOCATE or DISCARD, and ALL: perhaps */
/* one of its statements is DEALLOCATE ALL or DISCARD ALL; *alone: the only one */
bool ps_drops_all(const char *sql, bool *alone);

#endif
