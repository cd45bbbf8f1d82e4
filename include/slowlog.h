/*
 * slowlog: the last slow_query_log_size requests that took at least
 * slow_query_threshold, newest first, for SHOW SLOW (each also goes to the
 * log as it happens).
 */
#ifndef PGPULSE_SLOWLOG_H
#define PGPULSE_SLOWLOG_H

#include <stddef.h>
#include <stdint.h>

struct slow_entry {
	int64_t wall_usec;
	char database[64];
	char user[64];
	char client_addr[64];
	uint64_t duration_us;
	uint64_t wait_us;
	char *query;
};

void slowlog_add(const char *database, const char *user, const char *client_addr, uint64_t duration_us,
		 uint64_t wait_us, const char *query);

/* newest first */
void slowlog_for_each(void (*fn)(const struct slow_entry *e, void *arg), void *arg);

size_t slowlog_bytes(void);
void slowlog_free(void);

#endif
