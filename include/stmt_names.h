/*
 * stmt_names: a client's named prepared statements -> their query
 * fingerprints, where the statements pass through to the server under the
 * client's own names (session mode, or max_prepared_statements = 0), so
 * that a request that only Binds a name counts for the statement's text.
 * In transaction and statement mode the prepared module's map does this
 * (the fingerprint is kept with the shared statement, prepared.h).
 *
 * An open-addressing table of the names themselves (no hash stands in for
 * a name, so the mapping is exact), allocated at the client's first named
 * Parse. A Parse adds or overwrites a name, a Close forgets it; a Bind only
 * looks up and stamps. Bounded: at most STMT_NAMES_MAX names; past that,
 * the least recently used name is forgotten to make room (drivers that
 * drop statements with SQL DEALLOCATE leave names behind that are never
 * used again: those go first).
 */
#ifndef PGPULSE_STMT_NAMES_H
#define PGPULSE_STMT_NAMES_H

#include <stddef.h>
#include <stdint.h>

#define STMT_NAMES_MAX 1000

struct stmt_names;

/* name (len bytes, no NUL needed) now means the statement of fingerprint fp; *m made at first use
 */
void stmt_names_remember(struct stmt_names **m, const char *name, size_t len, uint64_t fp);

/* the fingerprint of name, 0 if not known (m may be NULL); stamps it as used */
uint64_t stmt_names_find(struct stmt_names *m, const char *name, size_t len);

/* a Close of name (m may be NULL) */
void stmt_names_forget(struct stmt_names *m, const char *name, size_t len);

size_t stmt_names_count(const struct stmt_names *m);

/* bytes it holds, names included (the unit test checks the bound) */
size_t stmt_names_bytes(const struct stmt_names *m);

void stmt_names_free(struct stmt_names *m);

#endif
