/*
 * intern: one shared, reference-counted copy of each short string that many
 * connections hold at once — startup parameter values, user and database
 * names. Ten thousand clients that connect with the same client_encoding
 * hold one copy of it, and two interned strings are equal exactly when
 * their pointers are, so comparing a client's parameters with a server's
 * is a pointer compare.
 *
 * Every intern_get() or intern_hold() is paired with one intern_drop(); the
 * copy is freed with its last holder. Interned text is never written to.
 */
#ifndef PGPULSE_INTERN_H
#define PGPULSE_INTERN_H

#include <stddef.h>

/* the shared copy of s (NULL for NULL), held once more by the caller */
const char *intern_get(const char *s);

/* hold an already interned string once more; returns it */
const char *intern_hold(const char *interned);

/* let go of one hold (NULL is ignored) */
void intern_drop(const char *interned);

/* replace *slot's string with the shared copy of value (NULL clears it) */
void intern_set(const char **slot, const char *value);

/* distinct strings held, and the bytes they take (for SHOW MEM) */
void intern_stats(size_t *count, size_t *bytes);

#endif
