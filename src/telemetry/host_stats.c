/*
 * host_stats: per-host query latency series (see include/host_stats.h).
 */
#include "host_stats.h"

#include <stdlib.h>

#include "hosts.h"
#include "util.h"

static struct host_telemetry *host_stats_of(struct host *h, int64_t now)
{
	if (!h->tm) {
		h->tm = xmalloc(sizeof(*h->tm));
		series_init(&h->tm->query, now);
		series_init(&h->tm->server, now);
	}
	return h->tm;
}

void host_stats_record(struct host *h, uint64_t query_usec, uint64_t server_usec, int64_t now)
{
	struct host_telemetry *t = host_stats_of(h, now);
	series_record(&t->query, query_usec);
	series_record(&t->server, server_usec);
}

void host_stats_rotate(struct host *h, int64_t now)
{
	if (!h->tm)
		return;
	series_rotate(&h->tm->query, now);
	series_rotate(&h->tm->server, now);
}

void host_stats_free(struct host_telemetry *t)
{
	if (!t)
		return;
	series_free(&t->query);
	series_free(&t->server);
	free(t);
}
