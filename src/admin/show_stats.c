/*
 * admin/show_stats: PgBouncer's traffic views — SHOW STATS, STATS_TOTALS,
 * STATS_AVERAGES and TOTALS.
 *
 * Totals are the pools' counters added up per database. Averages are per
 * second over the last stats_period, as PgBouncer computes them: two
 * snapshots of the totals a period apart, the newer one taken when a
 * command finds the window has moved on.
 */
#include "admin_internal.h"

#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "pool.h"
#include "stats_log.h"
#include "worker.h"

/* ------------------------------------------------------------------------
 * SHOW STATS, STATS_TOTALS, STATS_AVERAGES, TOTALS
 *
 * Totals are the pools' counters summed per database. Averages follow
 * PgBouncer: rates per second and times per transaction/query/assignment,
 * from a snapshot at least stats_period old to now. PgBouncer takes the
 * snapshots on a timer; here they are taken lazily when a SHOW STATS*
 * arrives and the newer snapshot is a stats_period old, so a scraper polling
 * more often than stats_period sees the same window PgBouncer's would, and
 * a long silence gives one long window. Until the first period has passed
 * the window starts when pgpulse started.
 *
 * With several workers this state moves into struct worker.
 */

struct db_totals {
	const char *name;
	struct pool_stats st;
};

struct stats_snapshot {
	int64_t at; /* monotonic usec */
	int n;
	char **names;
	struct pool_stats *st;
};

static struct {
	bool started;
	struct stats_snapshot older, newer;
} avg_window;

/* the counters per database, by name: only databases with a pool; free() the array */
static struct db_totals *totals_per_database(int *n)
{
	pool_count_moved_bytes();
	int np, nd = 0;
	struct pool **pools = admin_sorted_pools(&np);
	struct db_totals *v = xcalloc((size_t)(np ? np : 1), sizeof(*v));

	for (int i = 0; i < np; i++) {
		if (nd == 0 || strcmp(v[nd - 1].name, pools[i]->db->name) != 0)
			v[nd++].name = pools[i]->db->name;
		stats_add(&v[nd - 1].st, &pools[i]->stats);
	}
	free(pools);
	*n = nd;
	return v;
}

static void snapshot_free(struct stats_snapshot *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->names[i]);
	free(s->names);
	free(s->st);
	s->names = NULL;
	s->st = NULL;
	s->n = 0;
}

/* the averages start over, as at process start (tests; a fresh worker) */
void admin_stats_window_reset(void)
{
	snapshot_free(&avg_window.older);
	snapshot_free(&avg_window.newer);
	memset(&avg_window, 0, sizeof(avg_window));
}

/* both snapshots become usec older: a test's way of letting time pass */
void admin_stats_window_age(int64_t usec)
{
	avg_window.older.at -= usec;
	avg_window.newer.at -= usec;
}

static void snapshot_take(struct stats_snapshot *s, const struct db_totals *t, int n, int64_t at)
{
	snapshot_free(s);
	s->at = at;
	s->n = n;
	s->names = xcalloc((size_t)(n ? n : 1), sizeof(*s->names));
	s->st = xcalloc((size_t)(n ? n : 1), sizeof(*s->st));
	for (int i = 0; i < n; i++) {
		s->names[i] = xstrdup(t[i].name);
		s->st[i] = t[i].st;
	}
}

static const struct pool_stats *snapshot_find(const struct stats_snapshot *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->names[i], name) == 0)
			return &s->st[i];
	return NULL;
}

/* move the averaging window forward when the newer snapshot is a period old */
static void avg_window_advance(const struct db_totals *t, int n, int64_t now)
{
	int64_t period = worker->cfg->stats_period > 0 ? worker->cfg->stats_period : 60 * 1000000LL;

	if (!avg_window.started) {
		/* both snapshots at process start, when every counter was zero */
		int64_t since = worker->started_at > 0 ? wall_usec() - worker->started_at : 0;
		avg_window.started = true;
		avg_window.older.at = avg_window.newer.at = now - (since > 0 ? since : 0);
	}
	if (now - avg_window.newer.at < period)
		return;
	snapshot_free(&avg_window.older);
	avg_window.older = avg_window.newer;
	memset(&avg_window.newer, 0, sizeof(avg_window.newer));
	snapshot_take(&avg_window.newer, t, n, now);
}

/* a counter's growth; a counter that went down (its pool was recreated) counts from zero */
/* the counters of database `name` in the older snapshot (zero if it was not there) */
static const struct pool_stats *stats_older(const char *name)
{
	static const struct pool_stats zero;
	const struct pool_stats *old = snapshot_find(&avg_window.older, name);
	return old ? old : &zero;
}

/* the eleven figures in PgBouncer 1.21's order */
static void row_stats(struct result *r, const struct pool_stats *st)
{
	row_uint(r, st->server_assignments);
	row_uint(r, st->xact_count);
	row_uint(r, st->query_count);
	row_uint(r, st->bytes_received);
	row_uint(r, st->bytes_sent);
	row_uint(r, st->xact_time);
	row_uint(r, st->query_time);
	row_uint(r, st->wait_time);
	row_uint(r, st->client_parse_count);
	row_uint(r, st->server_parse_count);
	row_uint(r, st->bind_count);
}

enum stats_view { STATS_BOTH, STATS_TOTALS, STATS_AVERAGES };

static void show_stats_view(struct client *c, enum stats_view view)
{
	static const struct column both_cols[] = {
		{ "database", OID_TEXT },
		{ "total_server_assignment_count", OID_NUMERIC },
		{ "total_xact_count", OID_NUMERIC },
		{ "total_query_count", OID_NUMERIC },
		{ "total_received", OID_NUMERIC },
		{ "total_sent", OID_NUMERIC },
		{ "total_xact_time", OID_NUMERIC },
		{ "total_query_time", OID_NUMERIC },
		{ "total_wait_time", OID_NUMERIC },
		{ "total_client_parse_count", OID_NUMERIC },
		{ "total_server_parse_count", OID_NUMERIC },
		{ "total_bind_count", OID_NUMERIC },
		{ "avg_server_assignment_count", OID_NUMERIC },
		{ "avg_xact_count", OID_NUMERIC },
		{ "avg_query_count", OID_NUMERIC },
		{ "avg_recv", OID_NUMERIC },
		{ "avg_sent", OID_NUMERIC },
		{ "avg_xact_time", OID_NUMERIC },
		{ "avg_query_time", OID_NUMERIC },
		{ "avg_wait_time", OID_NUMERIC },
		{ "avg_client_parse_count", OID_NUMERIC },
		{ "avg_server_parse_count", OID_NUMERIC },
		{ "avg_bind_count", OID_NUMERIC },
	};
	static const struct column totals_cols[] = {
		{ "database", OID_TEXT },          { "server_assignment_count", OID_NUMERIC },
		{ "xact_count", OID_NUMERIC },     { "query_count", OID_NUMERIC },
		{ "bytes_received", OID_NUMERIC }, { "bytes_sent", OID_NUMERIC },
		{ "xact_time", OID_NUMERIC },      { "query_time", OID_NUMERIC },
		{ "wait_time", OID_NUMERIC },      { "client_parse_count", OID_NUMERIC },
		{ "server_parse_count", OID_NUMERIC }, { "bind_count", OID_NUMERIC },
	};
	/* PgBouncer 1.25's names: the parse and bind averages keep their avg_ prefix */
	static const struct column averages_cols[] = {
		{ "database", OID_TEXT },          { "server_assignment_count", OID_NUMERIC },
		{ "xact_count", OID_NUMERIC },     { "query_count", OID_NUMERIC },
		{ "bytes_received", OID_NUMERIC }, { "bytes_sent", OID_NUMERIC },
		{ "xact_time", OID_NUMERIC },      { "query_time", OID_NUMERIC },
		{ "wait_time", OID_NUMERIC },      { "avg_client_parse_count", OID_NUMERIC },
		{ "avg_server_parse_count", OID_NUMERIC }, { "avg_bind_count", OID_NUMERIC },
	};
	struct result r;
	int64_t now = now_usec();
	int n;
	struct db_totals *t = totals_per_database(&n);

	avg_window_advance(t, n, now);
	if (view == STATS_BOTH)
		result_begin(&r, stream_out(&c->st), both_cols, NCOLS(both_cols));
	else if (view == STATS_TOTALS)
		result_begin(&r, stream_out(&c->st), totals_cols, NCOLS(totals_cols));
	else
		result_begin(&r, stream_out(&c->st), averages_cols, NCOLS(averages_cols));
	for (int i = 0; i < n; i++) {
		struct pool_stats avg;
		stats_average(&avg, &t[i].st, stats_older(t[i].name), now - avg_window.older.at);
		row_text(&r, t[i].name);
		if (view != STATS_AVERAGES)
			row_stats(&r, &t[i].st);
		if (view != STATS_TOTALS)
			row_stats(&r, &avg);
		row_end(&r);
	}
	free(t);
	result_end(&r);
}

void admin_show_stats(struct client *c, const char *arg)
{
	(void)arg;
	show_stats_view(c, STATS_BOTH);
}

void admin_show_stats_totals(struct client *c, const char *arg)
{
	(void)arg;
	show_stats_view(c, STATS_TOTALS);
}

void admin_show_stats_averages(struct client *c, const char *arg)
{
	(void)arg;
	show_stats_view(c, STATS_AVERAGES);
}

/* SHOW TOTALS: SHOW STATS summed over all databases, one figure per row */
void admin_show_totals(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "name", OID_TEXT },
		{ "value", OID_NUMERIC },
	};
	struct result r;
	int64_t now = now_usec();
	int n;
	struct db_totals *t = totals_per_database(&n);
	struct pool_stats cur, old, avg;

	(void)arg;
	avg_window_advance(t, n, now);
	memset(&cur, 0, sizeof(cur));
	memset(&old, 0, sizeof(old));
	for (int i = 0; i < n; i++) {
		stats_add(&cur, &t[i].st);
		stats_add(&old, stats_older(t[i].name));
	}
	stats_average(&avg, &cur, &old, now - avg_window.older.at);

	/* PgBouncer's row names: client_bytes came from clients, server_bytes went to them */
	const struct {
		const char *name;
		uint64_t total, avg;
	} rows[] = {
		{ "server_assignment_count", cur.server_assignments, avg.server_assignments },
		{ "xact_count", cur.xact_count, avg.xact_count },
		{ "query_count", cur.query_count, avg.query_count },
		{ "client_bytes", cur.bytes_received, avg.bytes_received },
		{ "server_bytes", cur.bytes_sent, avg.bytes_sent },
		{ "xact_time", cur.xact_time, avg.xact_time },
		{ "query_time", cur.query_time, avg.query_time },
		{ "wait_time", cur.wait_time, avg.wait_time },
		/* PgBouncer's SHOW TOTALS spells these with ps_ */
		{ "ps_client_parse_count", cur.client_parse_count, avg.client_parse_count },
		{ "ps_server_parse_count", cur.server_parse_count, avg.server_parse_count },
		{ "ps_bind_count", cur.bind_count, avg.bind_count },
	};
	const size_t nrows = sizeof(rows) / sizeof(rows[0]);

	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (size_t i = 0; i < 2 * nrows; i++) {
		bool total = i < nrows;
		row_printf(&r, "%s_%s", total ? "total" : "avg", rows[i % nrows].name);
		row_uint(&r, total ? rows[i % nrows].total : rows[i % nrows].avg);
		row_end(&r);
	}
	free(t);
	result_end(&r);
}
