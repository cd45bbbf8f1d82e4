/*
 * admin: the admin console — the pseudo database "pgpulse" (alias
 * "pgbouncer") where admin_users and stats_users run SHOW commands and
 * control commands over the simple query protocol. Answers are ordinary
 * result sets, so psql, exporters and dashboards read them as tables.
 */
#ifndef PGPULSE_ADMIN_H
#define PGPULSE_ADMIN_H

#include <stdbool.h>

struct client;

/*
 * A console client that has this many bytes of answers unsent gets no more
 * of its pipelined commands run until they are: memory stays bounded
 * whatever it sends without reading.
 */
#define ADMIN_OUT_HIGH_WATER (64 * 1024)

/* the admin database names */
bool admin_is_admin_db(const char *dbname);

/*
 * Run one simple-protocol Query string from an admin client. The answer
 * (result sets, CommandComplete, errors, and the final ReadyForQuery) is
 * appended to the client's output buffer; the caller sends it.
 */
void admin_handle_query(struct client *c, const char *sql);

#endif
