/*
 * stats_log: PgBouncer's periodic statistics line. With log_stats on,
 * every stats_period pgpulse logs the averages over the period just
 * ended, summed over every pool, in PgBouncer 1.25's words:
 *
 *   stats: 12 xacts/s, 30 queries/s, 0 client parses/s, 0 server parses/s, 0 binds/s,
 *          in 2048 B/s, out 9120 B/s, xact 1530 us, query 410 us, wait 12 us
 *
 * (one line). The averages are SHOW STATS_AVERAGES's: rates per second,
 * times per transaction, per query and per server assignment; the
 * functions that compute them are here so that both use one definition.
 */
#ifndef PGPULSE_STATS_LOG_H
#define PGPULSE_STATS_LOG_H

#include <stdint.h>

struct pool_stats;

/* add st's PgBouncer counters (SHOW STATS's) into sum */
void stats_add(struct pool_stats *sum, const struct pool_stats *st);

/*
 * PgBouncer's averages from old to cur, dur usec apart: counts and bytes
 * per second, xact_time per transaction, query_time per query, wait_time
 * per server assignment. A counter that went down (its pool was made
 * anew) counts from zero. All zero when dur <= 0.
 */
void stats_average(struct pool_stats *avg, const struct pool_stats *cur, const struct pool_stats *old,
		   int64_t dur);

/* a pool is freed: its counters stay in the instance's total */
void stats_log_retire(const struct pool_stats *st);

/* from the janitor's sweep (now: monotonic usec): the line, once a stats_period has passed */
void stats_log_tick(int64_t now);

#endif
