/*
 * host_stats: query latency per PostgreSQL host (struct host, hosts.h),
 * over the same sliding windows as a pool's (series.h): SHOW HOSTS and
 * /metrics read it with a host label.
 *
 * The series is made at a host's first recorded query, so a host nobody
 * queries costs no memory; host_stats_free goes with the host.
 */
#ifndef PGPULSE_HOST_STATS_H
#define PGPULSE_HOST_STATS_H

#include <stdint.h>

#include "series.h"

struct host;

struct host_telemetry {
	struct series query;  /* a request reached pgpulse -> its ReadyForQuery went to the client */
	struct series server; /* the request was written to the server -> its ReadyForQuery arrived */
};

/* record one request's two durations (usec) against host h */
void host_stats_record(struct host *h, uint64_t query_usec, uint64_t server_usec, int64_t now);

/* move h's windows on to now (the janitor's tick); nothing before its first record */
void host_stats_rotate(struct host *h, int64_t now);

void host_stats_free(struct host_telemetry *t);

#endif
