/*
 * host_stats: query latency per PostgreSQL host (struct host, hosts.h),
 * over the same sliding windows as a pool's (series.h): SHOW HOSTS and
 * /metrics read it with a host label.
 *
 * The series is made at a host's first recorded query, so a host nobody
 * queries costs no memory; host_stats_free goes with the host. Recording
 * is inline: it runs once per request, beside the pool's own records.
 */
#ifndef PGPULSE_HOST_STATS_H
#define PGPULSE_HOST_STATS_H

#include <stdint.h>

#include "hosts.h"
#include "series.h"

struct host_telemetry {
	struct series query; /* a request reached pgpulse -> its ReadyForQuery went to the client */
};

/* h's first recorded request: its series is made, and the duration recorded */
void host_stats_start(struct host *h, uint64_t query_usec, int64_t now);

/* record one request's duration (usec) against host h */
static inline void host_stats_record(struct host *h, uint64_t query_usec, int64_t now)
{
	if (h->tm)
		series_record(&h->tm->query, query_usec);
	else
		host_stats_start(h, query_usec, now);
}

/* move h's windows on to now (the janitor's tick); nothing before its first record */
void host_stats_rotate(struct host *h, int64_t now);

void host_stats_free(struct host_telemetry *t);

#endif
