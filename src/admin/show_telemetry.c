/*
 * admin/show_telemetry: pgpulse's own views — SHOW LATENCY, EFFICIENCY,
 * HEALTH, QUERIES, REPEATS, SLOW, PREPARED_STATEMENTS, FAILURES and LOGINS.
 *
 * They read the telemetry modules (src/telemetry/) and never change them:
 * a view is a snapshot of histograms and counters taken in one event-loop
 * turn, per pool and, where it says so, in total ("*" rows).
 */
#include "admin_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "fingerprint.h"
#include "health.h"
#include "pool.h"
#include "prepared.h"
#include "slowlog.h"
#include "telemetry.h"
#include "worker.h"

/* ------------------------------------------------------------------------
 * SHOW LATENCY: percentiles of the kinds of duration, per pool and in total
 */

static bool window_arg(struct client *c, const char *arg, enum series_window dflt, enum series_window *w)
{
	if (!arg[0]) {
		*w = dflt;
		return true;
	}
	int found = series_window_by_name(arg);
	if (found < 0) {
		admin_error(c, "22023", "unknown window \"%s\": use 1m, 5m, 15m or all", arg);
		return false;
	}
	*w = (enum series_window)found;
	return true;
}

static void latency_row(struct result *r, const char *db, const char *user, enum telemetry_kind k,
			enum series_window w, const struct hist_acc *acc)
{
	row_text(r, db);
	row_text(r, user);
	row_text(r, telemetry_kind_name(k));
	row_text(r, series_window_name(w));
	row_uint(r, acc->count);
	row_uint(r, hist_acc_mean(acc));
	row_uint(r, hist_acc_quantile(acc, 0.50));
	row_uint(r, hist_acc_quantile(acc, 0.90));
	row_uint(r, hist_acc_quantile(acc, 0.95));
	row_uint(r, hist_acc_quantile(acc, 0.99));
	row_uint(r, hist_acc_quantile(acc, 0.999));
	row_uint(r, acc->max);
	row_end(r);
}

void admin_show_latency(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "database", OID_TEXT }, { "user", OID_TEXT },   { "kind", OID_TEXT },   { "window", OID_TEXT },
		{ "count", OID_INT8 },    { "mean_us", OID_INT8 }, { "p50_us", OID_INT8 }, { "p90_us", OID_INT8 },
		{ "p95_us", OID_INT8 },   { "p99_us", OID_INT8 },  { "p999_us", OID_INT8 }, { "max_us", OID_INT8 },
	};
	/* 14 kB each: static, the console runs on the one worker thread */
	static struct hist_acc acc, total[TK_COUNT];
	enum series_window w;
	struct result r;
	int n;

	if (!window_arg(c, arg, WINDOW_1M, &w))
		return;
	struct pool **pools = admin_sorted_pools(&n);
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int k = 0; k < TK_COUNT; k++)
		hist_acc_reset(&total[k]);
	for (int i = 0; i < n; i++) {
		const struct pool *p = pools[i];
		for (int k = 0; k < TK_COUNT; k++) {
			hist_acc_reset(&acc);
			series_read(&p->tm->kinds[k], w, &acc);
			series_read(&p->tm->kinds[k], w, &total[k]);
			latency_row(&r, p->db->name, p->user->name, (enum telemetry_kind)k, w, &acc);
		}
	}
	/* the whole instance: database and user "*" */
	for (int k = 0; k < TK_COUNT; k++)
		latency_row(&r, "*", "*", (enum telemetry_kind)k, w, &total[k]);
	free(pools);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW EFFICIENCY: how well each pool's servers were used
 */

static double pct(int64_t part, int64_t whole)
{
	return whole > 0 ? 100.0 * (double)part / (double)whole : 0.0;
}

void admin_show_efficiency(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "database", OID_TEXT },         { "user", OID_TEXT },
		{ "window", OID_TEXT },           { "pool_size", OID_INT4 },
		{ "utilization_pct", OID_NUMERIC }, { "reuse_pct", OID_NUMERIC },
		{ "saturation_pct", OID_NUMERIC }, { "wait_p95_us", OID_INT8 },
		{ "overflow_pct", OID_NUMERIC },  { "reserve_pct", OID_NUMERIC },
		{ "servers_opened", OID_INT8 },   { "servers_closed", OID_INT8 },
		{ "suggested_pool_size", OID_INT4 },
	};
	static struct hist_acc wait;
	struct eff_counters ec;
	enum series_window w;
	struct result r;
	int n;
	int64_t now = now_usec();

	if (!window_arg(c, arg, WINDOW_1M, &w))
		return;
	struct pool **pools = admin_sorted_pools(&n);
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < n; i++) {
		struct pool *p = pools[i];
		eff_read(&p->tm->eff, w, now, &ec);
		hist_acc_reset(&wait);
		series_read(&p->tm->kinds[TK_WAIT], w, &wait);
		row_text(&r, p->db->name);
		row_text(&r, p->user->name);
		row_text(&r, series_window_name(w));
		row_int(&r, pool_effective_size(p));
		row_printf(&r, "%.1f", pct(ec.busy_us, ec.open_us));
		row_printf(&r, "%.1f", pct((int64_t)ec.reused, (int64_t)ec.assignments));
		row_printf(&r, "%.1f", pct(ec.saturated_us, ec.span_us));
		row_uint(&r, hist_acc_quantile(&wait, 0.95));
		row_printf(&r, "%.1f", pct(ec.overflow_us, ec.span_us));
		row_printf(&r, "%.1f", pct(ec.reserve_us, ec.span_us));
		row_uint(&r, ec.opened);
		row_uint(&r, ec.closed);
		row_int(&r, eff_suggested_size(&ec));
		row_end(&r);
	}
	free(pools);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW REPEATS: shapes run more than once in one transaction (N+1 suspects)
 */

struct repeat_row {
	const struct fp_entry *e;
	struct fp_repeats r;
	bool flagged;
};

struct repeat_rows {
	struct repeat_row *rows;
	int n, cap;
	bool all;           /* the window: since created, or the last FP_REPEAT_MINUTES minutes */
	bool flagged_only;
};

static void collect_repeat_row(struct fp_entry *e, void *arg)
{
	struct repeat_rows *rr = arg;
	struct repeat_row row = { e, { 0 }, false };
	fp_read_repeats(e, rr->all, &row.r);
	if (row.r.max < 2)
		return; /* never more than once in a transaction: no repeat to show */
	row.flagged = fp_repeats_flagged(&row.r);
	if (rr->flagged_only && !row.flagged)
		return;
	if (rr->n == rr->cap) {
		rr->cap = rr->cap ? rr->cap * 2 : 16;
		rr->rows = xrealloc(rr->rows, sizeof(*rr->rows) * (size_t)rr->cap);
	}
	rr->rows[rr->n++] = row;
}

/* flagged first, then the most transactions at or above the threshold, then the highest count */
static int cmp_repeat_worst_first(const void *a, const void *b)
{
	const struct repeat_row *x = a, *y = b;
	if (x->flagged != y->flagged)
		return x->flagged ? -1 : 1;
	if (x->r.repeat_xacts != y->r.repeat_xacts)
		return x->r.repeat_xacts < y->r.repeat_xacts ? 1 : -1;
	if (x->r.max != y->r.max)
		return x->r.max < y->r.max ? 1 : -1;
	return x->e->fp < y->e->fp ? -1 : x->e->fp > y->e->fp;
}

static void collect_repeats(struct repeat_rows *rr, bool all, bool flagged_only)
{
	memset(rr, 0, sizeof(*rr));
	rr->all = all;
	rr->flagged_only = flagged_only;
	fp_for_each(collect_repeat_row, rr);
	if (rr->n > 1)
		qsort(rr->rows, (size_t)rr->n, sizeof(*rr->rows), cmp_repeat_worst_first);
}

/* the share of their transactions' time that a shape's executions took, at most 100 (pipelining overlaps) */
static double repeat_time_pct(const struct fp_repeats *r)
{
	double v = pct((int64_t)r->repeat_shape_us, (int64_t)r->repeat_xact_us);
	return v > 100.0 ? 100.0 : v;
}

void admin_show_repeats(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "fingerprint", OID_TEXT },   { "database", OID_TEXT },       { "user", OID_TEXT },
		{ "query", OID_TEXT },         { "window", OID_TEXT },         { "xacts", OID_INT8 },
		{ "repeat_xacts", OID_INT8 },  { "p50_per_xact", OID_INT8 },   { "max_per_xact", OID_INT8 },
		{ "xact_time_pct", OID_NUMERIC }, { "flagged", OID_BOOL },
	};
	struct repeat_rows rr;
	struct result r;
	bool all = false;

	if (arg[0] && strcasecmp(arg, "all") != 0 && strcasecmp(arg, "5m") != 0) {
		admin_error(c, "22023", "unknown window \"%s\": use 5m or all", arg);
		return;
	}
	all = arg[0] && strcasecmp(arg, "all") == 0;
	collect_repeats(&rr, all, false);
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < rr.n; i++) {
		const struct repeat_row *q = &rr.rows[i];
		uint64_t xacts = 0;
		for (int b = 0; b < FP_REPEAT_BUCKETS; b++)
			xacts += q->r.xacts[b];
		row_printf(&r, "%016llx", (unsigned long long)q->e->fp);
		row_text(&r, q->e->pool->db->name);
		row_text(&r, q->e->pool->user->name);
		row_printf(&r, "%.*s", (int)utf8_prefix_len(q->e->text, 500), q->e->text);
		row_text(&r, all ? "all" : "5m");
		row_uint(&r, xacts);
		row_uint(&r, q->r.repeat_xacts);
		row_uint(&r, fp_repeats_p50(&q->r));
		row_uint(&r, q->r.max);
		row_printf(&r, "%.1f", repeat_time_pct(&q->r));
		row_text(&r, q->flagged ? "t" : "f");
		row_end(&r);
	}
	free(rr.rows);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW HEALTH: the instance's verdict (the row with no database: what
 * GET /health answers), then each pool judged now on its 5-minute window
 */

void admin_show_health(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "database", OID_TEXT }, { "user", OID_TEXT }, { "status", OID_TEXT }, { "reason", OID_TEXT },
		{ "advice", OID_TEXT },
	};
	struct result r;
	struct health_verdict v;
	struct repeat_rows suspects;
	int n;
	int64_t now = now_usec();
	char why[256], advice[256];

	(void)arg;
	bool serving = health_judge_instance(now, why, sizeof(why));
	struct pool **pools = admin_sorted_pools(&n);
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	row_text_or_null(&r, NULL);
	row_text_or_null(&r, NULL);
	row_text(&r, serving ? "ok" : "unavailable");
	row_text(&r, why);
	row_text(&r, "");
	row_end(&r);
	/* the N+1 suspects, worst first: a pool's advice names its worst */
	collect_repeats(&suspects, false, true);
	for (int i = 0; i < n; i++) {
		struct pool *p = pools[i];
		health_judge_pool(p, now, &v);
		advice[0] = '\0';
		for (int k = 0; k < suspects.n; k++) {
			if (suspects.rows[k].e->pool == p) {
				health_repeat_advice(suspects.rows[k].e->text, &suspects.rows[k].r, advice, sizeof(advice));
				break;
			}
		}
		row_text(&r, p->db->name);
		row_text(&r, p->user->name);
		row_text(&r, health_status_name(v.status));
		row_text(&r, v.reason);
		row_text(&r, advice);
		row_end(&r);
	}
	free(suspects.rows);
	free(pools);
	result_end(&r);
}

/* ------------------------------------------------------------------------
 * SHOW QUERIES: per query shape, heaviest first; SHOW SLOW: the slow-query log
 */

struct query_row {
	struct fp_entry *e;
	struct fp_window w;
	uint64_t p50, p95, p99, max;
};

struct query_rows {
	struct query_row *rows;
	int n, cap;
	enum series_window window;
};

static void collect_query_row(struct fp_entry *e, void *arg)
{
	static struct hist_acc acc; /* 14 kB, one worker thread */
	struct query_rows *qr = arg;
	struct query_row row;
	hist_acc_reset(&acc);
	row.e = e;
	fp_read(e, qr->window, &row.w, &acc);
	if (!row.w.calls)
		return;
	row.p50 = hist_acc_quantile(&acc, 0.50);
	row.p95 = hist_acc_quantile(&acc, 0.95);
	row.p99 = hist_acc_quantile(&acc, 0.99);
	row.max = acc.max;
	if (qr->n == qr->cap) {
		qr->cap = qr->cap ? qr->cap * 2 : 64;
		qr->rows = xrealloc(qr->rows, sizeof(*qr->rows) * (size_t)qr->cap);
	}
	qr->rows[qr->n++] = row;
}

static int cmp_query_total_desc(const void *a, const void *b)
{
	const struct query_row *x = a, *y = b;
	if (x->w.total_us != y->w.total_us)
		return x->w.total_us < y->w.total_us ? 1 : -1;
	return x->e->fp < y->e->fp ? -1 : x->e->fp > y->e->fp;
}

void admin_show_queries(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "fingerprint", OID_TEXT }, { "database", OID_TEXT }, { "user", OID_TEXT },  { "query", OID_TEXT },
		{ "calls", OID_INT8 },       { "errors", OID_INT8 },   { "total_us", OID_INT8 }, { "mean_us", OID_INT8 },
		{ "p50_us", OID_INT8 },      { "p95_us", OID_INT8 },   { "p99_us", OID_INT8 },  { "max_us", OID_INT8 },
		{ "timeouts", OID_INT8 },
	};
	struct query_rows qr = { NULL, 0, 0, WINDOW_ALL };
	enum series_window w;
	struct result r;

	if (!window_arg(c, arg, WINDOW_ALL, &w))
		return;
	qr.window = w;
	fp_for_each(collect_query_row, &qr);
	if (qr.n > 1)
		qsort(qr.rows, (size_t)qr.n, sizeof(*qr.rows), cmp_query_total_desc);
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	for (int i = 0; i < qr.n; i++) {
		const struct query_row *q = &qr.rows[i];
		row_printf(&r, "%016llx", (unsigned long long)q->e->fp);
		row_text(&r, q->e->pool->db->name);
		row_text(&r, q->e->pool->user->name);
		row_printf(&r, "%.*s", (int)utf8_prefix_len(q->e->text, 500), q->e->text);
		row_uint(&r, q->w.calls);
		row_uint(&r, q->w.errors);
		row_uint(&r, q->w.total_us);
		row_uint(&r, q->w.calls ? q->w.total_us / q->w.calls : 0);
		row_uint(&r, q->p50);
		row_uint(&r, q->p95);
		row_uint(&r, q->p99);
		row_uint(&r, q->max);
		row_uint(&r, q->w.timeouts);
		row_end(&r);
	}
	free(qr.rows);
	result_end(&r);
}

static void slow_row(const struct slow_entry *e, void *arg)
{
	struct result *r = arg;
	row_time(r, e->wall_usec);
	row_text(r, e->database);
	row_text(r, e->user);
	row_text(r, e->client_addr);
	row_uint(r, e->duration_us);
	row_uint(r, e->wait_us);
	row_printf(r, "%.*s", (int)utf8_prefix_len(e->query, 1000), e->query);
	row_end(r);
}

void admin_show_slow(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "time", OID_TEXT },        { "database", OID_TEXT }, { "user", OID_TEXT }, { "client_addr", OID_TEXT },
		{ "duration_us", OID_INT8 }, { "wait_us", OID_INT8 },  { "query", OID_TEXT },
	};
	struct result r;

	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	slowlog_for_each(slow_row, &r);
	result_end(&r);
}

/* SHOW PREPARED_STATEMENTS: the shared statements, their reuse and evictions */
static void prepared_row(const struct ps_info *info, void *arg)
{
	struct result *r = arg;
	row_uint(r, info->id);
	row_printf(r, "PGPULSE_%llu", (unsigned long long)info->id);
	row_text(r, info->query);
	row_int(r, info->param_types);
	row_uint(r, info->clients);
	row_uint(r, info->servers);
	row_uint(r, info->client_parses);
	row_uint(r, info->server_parses);
	row_uint(r, info->binds);
	row_uint(r, info->evictions);
	row_end(r);
}

void admin_show_prepared_statements(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "id", OID_INT8 },           { "server_name", OID_TEXT },   { "query", OID_TEXT },
		{ "param_types", OID_INT4 },  { "clients", OID_INT8 },       { "servers", OID_INT8 },
		{ "client_parses", OID_INT8 }, { "server_parses", OID_INT8 }, { "binds", OID_INT8 },
		{ "evictions", OID_INT8 },
	};
	struct result r;
	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	prepared_each(prepared_row, &r);
	result_end(&r);
}

/* ---- SHOW FAILURES: what went wrong, one row per nonzero counter (doc/admin.md) ---- */

struct failure_rows {
	struct result *r;
	const char *db, *user, *pool;
};

static void failure_row(const struct failure_rows *f, const char *failure, const char *detail, uint64_t count)
{
	if (!count)
		return;
	row_text(f->r, f->db);
	row_text(f->r, f->user);
	row_text(f->r, f->pool);
	row_text(f->r, failure);
	row_text(f->r, detail);
	row_uint(f->r, count);
	row_end(f->r);
}

static void failure_rows_of(const struct failure_rows *f, const struct failure_counts *fc)
{
	failure_row(f, "query_wait_timeout", "", fc->wait_timeouts);
	failure_row(f, "query_timeout", "", fc->query_timeouts);
	failure_row(f, "client_idle_timeout", "", fc->client_idle_timeouts);
	failure_row(f, "idle_transaction_timeout", "", fc->idle_transaction_timeouts);
	failure_row(f, "transaction_timeout", "", fc->transaction_timeouts);
	failure_row(f, "server_connect", "", fc->server_connect_failures);
	failure_row(f, "server_login", "", fc->server_login_failures);
	for (int k = 0; k < ERR_CLASS_COUNT; k++)
		failure_row(f, "server_error", failure_error_class_name(k), fc->server_errors[k]);
	for (int k = 0; k < ERR_CLASS_COUNT; k++)
		failure_row(f, "pgpulse_error", failure_error_class_name(k), fc->pooler_errors[k]);
}

void admin_show_failures(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "database", OID_TEXT }, { "user", OID_TEXT },   { "pool", OID_TEXT },
		{ "failure", OID_TEXT },  { "detail", OID_TEXT }, { "count", OID_INT8 },
	};
	struct result r;
	struct list *pos;
	(void)arg;
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		struct failure_rows f = { &r, p->db->name, p->user->name,
					  p->for_replication ? "replication" : p->for_lookups ? "auth_query" : "" };
		failure_rows_of(&f, &p->stats.fail);
	}
	/* clients that failed before they had a pool, and every failed login: no database or user */
	struct failure_rows f = { &r, "", "", "" };
	failure_rows_of(&f, &worker->unpooled_failures);
	for (int i = 0; i < LF_COUNT; i++)
		failure_row(&f, "client_login", failure_login_reason_name((enum login_failure)i), worker->login_failures[i]);
	result_end(&r);
}

/* ---- SHOW LOGINS: logins under way and how they ended (doc/admin.md) ---- */

static void login_row(struct result *r, const char *db, const char *user, const char *pool,
		      const struct login_counts *lc)
{
	row_text_or_null(r, db);
	row_text_or_null(r, user);
	row_text_or_null(r, pool);
	row_int(r, login_counts_in_flight(lc));
	row_uint(r, lc->completed);
	row_uint(r, lc->failed);
	row_uint(r, login_counts_abandoned(lc));
	for (int s = 0; s < LOGIN_STAGES; s++)
		row_int(r, lc->in_flight[s]);
	for (int s = 0; s < LOGIN_STAGES; s++)
		row_uint(r, lc->abandoned[s]);
	row_end(r);
}

void admin_show_logins(struct client *c, const char *arg)
{
	static const struct column cols[] = {
		{ "database", OID_TEXT },
		{ "user", OID_TEXT },
		{ "pool", OID_TEXT },
		{ "in_flight", OID_INT8 },
		{ "completed", OID_INT8 },
		{ "failed", OID_INT8 },
		{ "abandoned", OID_INT8 },
		{ "in_flight_before_startup", OID_INT8 },
		{ "in_flight_auth", OID_INT8 },
		{ "in_flight_server_wait", OID_INT8 },
		{ "abandoned_before_startup", OID_INT8 },
		{ "abandoned_auth", OID_INT8 },
		{ "abandoned_server_wait", OID_INT8 },
	};
	struct result r;
	int n;
	(void)arg;
	struct pool **pools = admin_sorted_pools(&n);
	result_begin(&r, stream_out(&c->st), cols, NCOLS(cols));
	/* the instance first: every login, the console's and those that never had a pool too */
	login_row(&r, NULL, NULL, NULL, &worker->logins);
	for (int i = 0; i < n; i++) {
		const struct pool *p = pools[i];
		if (p->for_lookups)
			continue; /* auth_query's own connections: no client logs in to it */
		login_row(&r, p->db->name, p->user->name, p->for_replication ? "replication" : "",
			  &p->tm->logins);
	}
	free(pools);
	result_end(&r);
}
