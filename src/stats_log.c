/*
 * stats_log: the "stats:" line every stats_period (log_stats).
 *
 * PgBouncer keeps the totals of the last period's end and logs the
 * difference, averaged, when the next one ends. So does this module: one
 * snapshot of the counters summed over every pool, taken at each period's
 * end whether or not log_stats is on (turning it on by RELOAD then gives a
 * line for a whole period, not for the time since pgpulse started).
 *
 * The sweep that calls it runs every 200 ms, so a line comes at most that
 * late; its averages use the real elapsed time, not the nominal period.
 */
#include "stats_log.h"

#include <stdbool.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "pool.h"
#include "util.h"
#include "worker.h"

static struct {
	bool started;
	int64_t at;              /* monotonic usec of the last period's end */
	struct pool_stats total; /* the counters then */
} g_last;

void stats_add(struct pool_stats *sum, const struct pool_stats *st)
{
	sum->xact_count += st->xact_count;
	sum->query_count += st->query_count;
	sum->bytes_received += st->bytes_received;
	sum->bytes_sent += st->bytes_sent;
	sum->xact_time += st->xact_time;
	sum->query_time += st->query_time;
	sum->wait_time += st->wait_time;
	sum->server_assignments += st->server_assignments;
	sum->client_parse_count += st->client_parse_count;
	sum->server_parse_count += st->server_parse_count;
	sum->bind_count += st->bind_count;
}

static uint64_t grown(uint64_t now, uint64_t then)
{
	return now >= then ? now - then : now;
}

static uint64_t per_second(uint64_t count, int64_t dur)
{
	return (uint64_t)((double)count * 1e6 / (double)dur);
}

void stats_average(struct pool_stats *avg, const struct pool_stats *cur, const struct pool_stats *old,
		   int64_t dur)
{
	memset(avg, 0, sizeof(*avg));
	if (dur <= 0)
		return;
	uint64_t xacts = grown(cur->xact_count, old->xact_count);
	uint64_t queries = grown(cur->query_count, old->query_count);
	uint64_t assigns = grown(cur->server_assignments, old->server_assignments);
	avg->server_assignments = per_second(assigns, dur);
	avg->xact_count = per_second(xacts, dur);
	avg->query_count = per_second(queries, dur);
	avg->bytes_received = per_second(grown(cur->bytes_received, old->bytes_received), dur);
	avg->bytes_sent = per_second(grown(cur->bytes_sent, old->bytes_sent), dur);
	avg->client_parse_count = per_second(grown(cur->client_parse_count, old->client_parse_count), dur);
	avg->server_parse_count = per_second(grown(cur->server_parse_count, old->server_parse_count), dur);
	avg->bind_count = per_second(grown(cur->bind_count, old->bind_count), dur);
	if (xacts > 0)
		avg->xact_time = grown(cur->xact_time, old->xact_time) / xacts;
	if (queries > 0)
		avg->query_time = grown(cur->query_time, old->query_time) / queries;
	if (assigns > 0)
		avg->wait_time = grown(cur->wait_time, old->wait_time) / assigns;
}

/* the instance's total: every pool's, and those of pools freed since (else a
 * removed database would make the total drop, and the next line count its
 * whole history as new traffic) */
static struct pool_stats g_retired; /* of the pools freed since start */

void stats_log_retire(const struct pool_stats *st)
{
	stats_add(&g_retired, st);
}

static void sum_every_pool(struct pool_stats *sum)
{
	struct list *pos;
	pool_count_moved_bytes();
	*sum = g_retired;
	list_for_each(pos, &worker->pools)
		stats_add(sum, &container_of(pos, struct pool, node)->stats);
}

static void log_averages(const struct pool_stats *a)
{
	log_info("stats: %llu xacts/s, %llu queries/s, %llu client parses/s, %llu server parses/s, %llu binds/s, "
		 "in %llu B/s, out %llu B/s, xact %llu us, query %llu us, wait %llu us",
		 (unsigned long long)a->xact_count, (unsigned long long)a->query_count,
		 (unsigned long long)a->client_parse_count, (unsigned long long)a->server_parse_count,
		 (unsigned long long)a->bind_count, (unsigned long long)a->bytes_received,
		 (unsigned long long)a->bytes_sent, (unsigned long long)a->xact_time,
		 (unsigned long long)a->query_time, (unsigned long long)a->wait_time);
}

void stats_log_tick(int64_t now)
{
	struct pool_stats total, avg;
	if (!g_last.started) {
		g_last.started = true;
		g_last.at = now;
		sum_every_pool(&g_last.total);
		return;
	}
	if (now - g_last.at < worker->cfg->stats_period)
		return;
	sum_every_pool(&total);
	if (worker->cfg->log_stats) {
		stats_average(&avg, &total, &g_last.total, now - g_last.at);
		log_averages(&avg);
	}
	g_last.at = now;
	g_last.total = total;
}
