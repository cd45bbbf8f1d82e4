/*
 * host_stats: per-host query latency series (see include/host_stats.h).
 */
#include "host_stats.h"

#include <stdlib.h>

#include "util.h"

void host_stats_start(struct host *h, uint64_t query_usec, int64_t now)
{
	h->tm = xmalloc(sizeof(*h->tm));
	series_init(&h->tm->query, now);
	series_record(&h->tm->query, query_usec);
}

void host_stats_rotate(struct host *h, int64_t now)
{
	if (h->tm)
		series_rotate(&h->tm->query, now);
}

void host_stats_free(struct host_telemetry *t)
{
	if (!t)
		return;
	series_free(&t->query);
	free(t);
}
