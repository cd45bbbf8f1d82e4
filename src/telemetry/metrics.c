/*
 * metrics: Prometheus text exposition of everything pgpulse measures.
 *
 * Latency histograms are exported as cumulative `_bucket` series with fixed
 * bounds (metrics_buckets), so the series of several pgpulse instances add
 * up and `histogram_quantile()` works across a fleet. A value is counted
 * under `le` when its fine bucket's midpoint is at or below the bound, so a
 * bound is honoured to within the fine histogram's 0.8 %; values below 64 us
 * are exact, so a bound of 0 holds exactly the zero waits (a server was
 * free) and histogram_quantile answers 0 for them, as SHOW LATENCY does.
 * With metrics_summaries on, per-instance quantiles also give the exact
 * windows of SHOW LATENCY; off by default, as they are 105 of a pool's
 * series and add nothing a fleet can sum (doc/telemetry.md counts them).
 *
 * The endpoint shares the pooler's process, so nothing a peer sends may cost
 * it unbounded memory or file descriptors: requests are cut at
 * METRICS_MAX_HEADERS / METRICS_MAX_BODY (answered 413 and closed), a
 * connection idle for METRICS_TIMEOUT_SECS is closed (or, if it stopped
 * being read because it holds METRICS_READ_HIGH_WATER unparsed bytes, within
 * a second), and at most
 * metrics_max_connections are open at once. libevent 2.1 has no connection
 * cap, so we count: every connection's bufferevent is made by our bevcb,
 * and once evhttp has wrapped it we hang a close callback on its
 * evhttp_connection. At the cap the listener stops accepting; further
 * connections wait in the kernel's queue, holding no descriptor of ours.
 *
 * The per-host series (pgpulse_host_*) are rendered by metrics_hosts.c with
 * the helpers metrics_internal.h shares.
 */
#include "metrics.h"
#include "metrics_internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "config.h"
#include "efficiency.h"
#include "failures.h"
#include "fingerprint.h"
#include "health.h"
#include "hist.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "series.h"
#include "telemetry.h"
#include "util.h"
#include "worker.h"

/* requests are GET and HEAD: headers fit in 8 kB, and a body is never needed */
#define METRICS_MAX_HEADERS 8192
#define METRICS_MAX_BODY 4096
/* a read or write that makes no progress for this long closes the connection */
#define METRICS_TIMEOUT_SECS 10
/* what one connection may hold unparsed (a line without its end, say): reading stops there */
#define METRICS_READ_HIGH_WATER 65536

static struct evhttp *g_http;
static struct evhttp_bound_socket *g_bound; /* NULL while evhttp_free runs */

/*
 * One HTTP connection, counted from the moment its bufferevent is made.
 * `fresh`: made in this loop turn, evhttp's connection not yet known; we hold
 * a reference on the bufferevent so it outlives evhttp dropping it meanwhile.
 * `open`: adopted, a close callback on its evhttp_connection.
 */
struct http_conn {
	struct list node;
	struct bufferevent *bev;           /* fresh only */
	struct evhttp_connection *evcon;   /* open only */
};

static struct list g_fresh = { &g_fresh, &g_fresh };
static struct list g_open = { &g_open, &g_open };
static int g_conn_count;       /* fresh + open: descriptors the endpoint holds */
static int g_conn_max;
static bool g_accept_paused;
static struct event *g_adopt;  /* made active when a connection is fresh */
static struct event *g_sweep;  /* every second while connections are open */
static const struct timeval one_second = { 1, 0 };
static int64_t g_full_logged;  /* when the cap was last reported */

/* ---- helpers ---- */

/* a label value with \, " and newline escaped; plain runs in one add (~160 labels a pool) */
void metrics_put_label_value(struct evbuffer *out, const char *v)
{
	for (;;) {
		size_t plain = strcspn(v, "\\\"\n");
		evbuffer_add(out, v, plain);
		v += plain;
		if (!*v)
			return;
		evbuffer_add(out, *v == '\n' ? "\\n" : *v == '"' ? "\\\"" : "\\\\", 2);
		v++;
	}
}

static void put_pool_labels(struct evbuffer *out, const struct pool *p)
{
	evbuffer_add(out, "database=\"", 10);
	metrics_put_label_value(out, p->db->name);
	evbuffer_add(out, "\",user=\"", 8);
	metrics_put_label_value(out, p->user->name);
	evbuffer_add(out, "\"", 1);
	/* the same database and user's replication pool: its series must not collide with theirs */
	if (p->for_replication)
		evbuffer_add(out, ",pool=\"replication\"", 19);
	else if (p->for_lookups) /* auth_query's own: the same database and auth_user as its clients' pool */
		evbuffer_add(out, ",pool=\"auth_query\"", 18);
}

void metrics_put_header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* "} value" and the line's end, after a sample's labels */
void metrics_put_sample_end(struct evbuffer *out, double value)
{
	if (value != value)
		evbuffer_add(out, "} NaN\n", 6);
	else if (fabs(value) < 1e15 && value == (double)(long long)value)
		evbuffer_add_printf(out, "} %lld\n", (long long)value); /* as %.17g writes it, without its cost */
	else
		evbuffer_add_printf(out, "} %.17g\n", value);
}

/* one sample of a per-pool metric, with an optional extra label */
static void put_pool_sample(struct evbuffer *out, const char *name, const struct pool *p, const char *extra,
			    double value)
{
	evbuffer_add_printf(out, "%s{", name);
	put_pool_labels(out, p);
	if (extra)
		evbuffer_add_printf(out, ",%s", extra);
	metrics_put_sample_end(out, value);
}

/* the bounds, and each as written in the setting (so le shows exactly what was configured) */
int metrics_parse_buckets(const char *list, double *bounds, char (*text)[32], int max)
{
	int n = 0;
	const char *p = list ? list : "";
	while (*p && n < max) {
		char *end;
		double b = strtod(p, &end);
		if (end == p)
			break;
		bounds[n] = b;
		size_t len = (size_t)(end - p);
		snprintf(text[n], sizeof(text[n]), "%.*s", (int)(len < 31 ? len : 31), p);
		n++;
		p = end;
		while (*p == ' ' || *p == ',')
			p++;
	}
	return n;
}

/* ---- histograms ---- */

static const struct {
	enum telemetry_kind kind;
	const char *name;
	const char *help;
} histograms[] = {
	{ TK_QUERY, "pgpulse_query_duration_seconds",
	  "Time from a request's arrival to its ReadyForQuery being forwarded to the client, waiting included." },
	{ TK_XACT, "pgpulse_transaction_duration_seconds",
	  "Time from a transaction's first request arriving to the ReadyForQuery that ends it." },
	{ TK_WAIT, "pgpulse_wait_duration_seconds", "Time a client waited for a server connection." },
	{ TK_SERVER, "pgpulse_server_duration_seconds",
	  "Time from a request being written to the server to the server's ReadyForQuery." },
	{ TK_CONNECT, "pgpulse_connect_duration_seconds",
	  "Time from starting a server connection to it being ready for queries." },
};

/*
 * For each bound, how many fine buckets lie under it: the fine buckets'
 * values increase, so "under the bound" is a prefix. Computed once a scrape
 * rather than for each of its 5 histograms per pool.
 */
void metrics_bucket_limits(const double *bounds, int nbounds, uint32_t *limit)
{
	uint32_t idx = 0;
	for (int i = 0; i < nbounds; i++) {
		double bound_us = bounds[i] * 1e6;
		while (idx < HIST_BUCKETS && (double)hist_bucket_value(idx) <= bound_us)
			idx++;
		limit[i] = idx;
	}
}

/* one sample: name and labels (prefix, up to where le or the value follows) and an integer */
static void put_count(struct evbuffer *out, const char *prefix, size_t prefix_len, const char *le,
		      unsigned long long count)
{
	char tail[64];
	evbuffer_add(out, prefix, prefix_len);
	int n = le ? snprintf(tail, sizeof(tail), ",le=\"%s\"} %llu\n", le, count)
		   : snprintf(tail, sizeof(tail), "} %llu\n", count);
	evbuffer_add(out, tail, (size_t)n < sizeof(tail) ? (size_t)n : sizeof(tail) - 1);
}

/*
 * A histogram's lines, from `scratch` holding "<name>_bucket{<labels>" (its
 * labels escaped once, since this is most of a scrape's lines: 110 of a
 * pool's 159): each line is three adds.
 */
void metrics_put_histogram_lines(struct evbuffer *out, struct evbuffer *scratch, const char *name,
				const struct hist_acc *a, const uint32_t *limit, char (*bound_text)[32], int nbounds)
{
	size_t len = evbuffer_get_length(scratch);
	const char *prefix = (const char *)evbuffer_pullup(scratch, -1);
	if (!prefix)
		return;
	uint64_t cumulative = 0;
	uint32_t idx = 0;
	for (int i = 0; i < nbounds; i++) {
		while (idx < limit[i])
			cumulative += a->buckets[idx++];
		put_count(out, prefix, len, bound_text[i], (unsigned long long)cumulative);
	}
	put_count(out, prefix, len, "+Inf", (unsigned long long)a->count);
	/* the labels alone: the prefix past "<name>_bucket" */
	size_t name_len = strlen(name) + strlen("_bucket");
	evbuffer_add_printf(out, "%s_sum", name);
	evbuffer_add(out, prefix + name_len, len - name_len);
	evbuffer_add_printf(out, "} %.6f\n", (double)a->sum / 1e6);
	evbuffer_add_printf(out, "%s_count", name);
	put_count(out, prefix + name_len, len - name_len, NULL, (unsigned long long)a->count);
}

/* a pool's histogram, with an optional label="value" after the pool's */
static void put_histogram(struct evbuffer *out, struct evbuffer *scratch, const char *name,
			  const struct pool *p, const char *extra, const struct hist_acc *a, const uint32_t *limit,
			  char (*bound_text)[32], int nbounds)
{
	evbuffer_drain(scratch, evbuffer_get_length(scratch));
	evbuffer_add_printf(scratch, "%s_bucket{", name);
	put_pool_labels(scratch, p);
	if (extra)
		evbuffer_add_printf(scratch, ",%s", extra);
	metrics_put_histogram_lines(out, scratch, name, a, limit, bound_text, nbounds);
}

static void render_histograms(struct evbuffer *out)
{
	static struct hist_acc acc; /* 14 kB, one worker thread */
	double bounds[64];
	char bound_text[64][32];
	uint32_t limit[64];
	int nbounds = metrics_parse_buckets(worker->cfg->metrics_buckets, bounds, bound_text, 64);
	struct evbuffer *scratch = evbuffer_new();
	struct list *pos;
	if (!scratch)
		return;
	metrics_bucket_limits(bounds, nbounds, limit);
	for (size_t k = 0; k < sizeof(histograms) / sizeof(histograms[0]); k++) {
		metrics_put_header(out, histograms[k].name, "histogram", histograms[k].help);
		list_for_each(pos, &worker->pools)
		{
			const struct pool *p = container_of(pos, struct pool, node);
			hist_acc_reset(&acc);
			series_read(&p->tm->kinds[histograms[k].kind], WINDOW_ALL, &acc);
			put_histogram(out, scratch, histograms[k].name, p, NULL, &acc, limit, bound_text, nbounds);
		}
	}
	evbuffer_free(scratch);
}

/*
 * Logins: one histogram with a label for the phase, so that the parts sit
 * beside their total. auth_query's own pool has no client logins: no series.
 */
static void render_login_histograms(struct evbuffer *out)
{
	static struct hist_acc acc; /* 14 kB, one worker thread */
	static const struct {
		enum telemetry_kind kind;
		const char *label;
	} phases[] = {
		{ TK_LOGIN, "phase=\"total\"" },
		{ TK_LOGIN_AUTH, "phase=\"auth\"" },
		{ TK_LOGIN_WAIT, "phase=\"server_wait\"" },
	};
	const char *name = "pgpulse_login_duration_seconds";
	double bounds[64];
	char bound_text[64][32];
	uint32_t limit[64];
	int nbounds = metrics_parse_buckets(worker->cfg->metrics_buckets, bounds, bound_text, 64);
	struct evbuffer *scratch = evbuffer_new();
	struct list *pos;
	if (!scratch)
		return;
	metrics_bucket_limits(bounds, nbounds, limit);
	metrics_put_header(out, name, "histogram",
			   "Client logins that completed: phase total from the accept of the socket to the "
			   "hello's ReadyForQuery, auth from the startup packet to authenticated, "
			   "server_wait from authenticated to the ReadyForQuery.");
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		if (p->for_lookups)
			continue;
		for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
			hist_acc_reset(&acc);
			series_read(&p->tm->kinds[phases[i].kind], WINDOW_ALL, &acc);
			put_histogram(out, scratch, name, p, phases[i].label, &acc, limit, bound_text, nbounds);
		}
	}
	evbuffer_free(scratch);
}

/*
 * The windows of SHOW LATENCY as a summary: quantile series plus _sum and
 * _count of the window. Per instance: quantiles do not add up across a
 * fleet, the _bucket histograms above do.
 */
static void render_quantiles(struct evbuffer *out)
{
	static struct hist_acc acc;
	static const double qs[] = { 0.5, 0.9, 0.95, 0.99, 0.999 };
	static const enum series_window windows[] = { WINDOW_1M, WINDOW_5M, WINDOW_15M };
	const char *name = "pgpulse_latency_seconds";
	struct list *pos;
	char labels[96];
	metrics_put_header(out, name, "summary",
			   "Latency percentiles of this instance over a sliding window, by kind (as SHOW LATENCY).");
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		/* login kinds: pgpulse_login_duration_seconds only (63 series a pool fewer) */
		for (int k = 0; k < TK_LOGIN; k++) {
			for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
				hist_acc_reset(&acc);
				series_read(&p->tm->kinds[k], windows[w], &acc);
				for (size_t q = 0; q < sizeof(qs) / sizeof(qs[0]); q++) {
					snprintf(labels, sizeof(labels), "kind=\"%s\",window=\"%s\",quantile=\"%g\"",
						 telemetry_kind_name((enum telemetry_kind)k),
						 series_window_name(windows[w]), qs[q]);
					/* an empty window has no quantile: NaN, as client libraries report it */
					put_pool_sample(out, name, p, labels,
							acc.count ? (double)hist_acc_quantile(&acc, qs[q]) / 1e6 : NAN);
				}
				/* a summary's _sum and _count only grow: they are since start, like the histograms' */
				const struct series *all = &p->tm->kinds[k];
				snprintf(labels, sizeof(labels), "kind=\"%s\",window=\"%s\"",
					 telemetry_kind_name((enum telemetry_kind)k), series_window_name(windows[w]));
				put_pool_sample(out, "pgpulse_latency_seconds_sum", p, labels,
						(double)(all->all.sum + all->cur.sum) / 1e6);
				put_pool_sample(out, "pgpulse_latency_seconds_count", p, labels,
						(double)(all->all.count + all->cur.count));
			}
		}
	}
}

/* ---- pools: SHOW POOLS and SHOW STATS values ---- */

static void render_pool_levels(struct evbuffer *out)
{
	struct list *pos;
	int64_t now = now_usec();
	metrics_put_header(out, "pgpulse_pool_clients", "gauge", "Client connections of the pool, by state.");
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		put_pool_sample(out, "pgpulse_pool_clients", p, "state=\"active\"", list_count(&p->active_clients));
		put_pool_sample(out, "pgpulse_pool_clients", p, "state=\"waiting\"", list_count(&p->waiting_clients));
	}
	metrics_put_header(out, "pgpulse_pool_servers", "gauge", "Server connections of the pool, by state.");
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		put_pool_sample(out, "pgpulse_pool_servers", p, "state=\"active\"", list_count(&p->active_servers));
		put_pool_sample(out, "pgpulse_pool_servers", p, "state=\"idle\"", list_count(&p->idle_servers));
		/* servers running pgpulse's own query: PgBouncer's "tested" (SHOW POOLS sv_tested) */
		put_pool_sample(out, "pgpulse_pool_servers", p, "state=\"tested\"", list_count(&p->used_servers));
		put_pool_sample(out, "pgpulse_pool_servers", p, "state=\"login\"", list_count(&p->new_servers));
	}
	metrics_put_header(out, "pgpulse_pool_maxwait_seconds", "gauge", "How long the oldest waiting client has waited.");
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		double wait = 0;
		struct list *first = list_first(&p->waiting_clients);
		if (first) {
			int64_t since = container_of(first, struct client, node)->wait_start;
			if (since > 0 && now > since)
				wait = (double)(now - since) / 1e6;
		}
		put_pool_sample(out, "pgpulse_pool_maxwait_seconds", p, NULL, wait);
	}
	metrics_put_header(out, "pgpulse_pool_size", "gauge", "The base pool size in force.");
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		put_pool_sample(out, "pgpulse_pool_size", p, NULL, pool_effective_size(p));
	}
}

static const struct {
	const char *name;
	const char *help;
	size_t offset;
	double scale;
} stats_counters[] = {
	{ "pgpulse_pool_transactions_total", "Transactions begun (SHOW STATS total_xact_count).", offsetof(struct pool_stats, xact_count), 1 },
	{ "pgpulse_pool_queries_total", "Requests begun (SHOW STATS total_query_count).", offsetof(struct pool_stats, query_count), 1 },
	{ "pgpulse_pool_received_bytes_total", "Bytes received from clients.",
	  offsetof(struct pool_stats, bytes_received), 1 },
	{ "pgpulse_pool_sent_bytes_total", "Bytes sent to clients.", offsetof(struct pool_stats, bytes_sent), 1 },
	{ "pgpulse_pool_transaction_time_seconds_total", "Time spent in transactions.",
	  offsetof(struct pool_stats, xact_time), 1e-6 },
	{ "pgpulse_pool_query_time_seconds_total", "Time spent in requests.", offsetof(struct pool_stats, query_time),
	  1e-6 },
	{ "pgpulse_pool_wait_time_seconds_total", "Time clients spent waiting for a server.",
	  offsetof(struct pool_stats, wait_time), 1e-6 },
	{ "pgpulse_pool_server_assignments_total", "Times a server was linked to a client.",
	  offsetof(struct pool_stats, server_assignments), 1 },
	{ "pgpulse_pool_servers_opened_total", "Server connection attempts started.",
	  offsetof(struct pool_stats, servers_opened), 1 },
	{ "pgpulse_pool_overflow_opened_total", "Connections opened from the overflow tier.",
	  offsetof(struct pool_stats, overflow_opened), 1 },
	{ "pgpulse_pool_reserve_opened_total", "Connections opened from the reserve tier.",
	  offsetof(struct pool_stats, reserve_opened), 1 },
	/* named prepared statements in transaction and statement mode (SHOW STATS, SHOW PREPARED_STATEMENTS) */
	{ "pgpulse_pool_client_parses_total", "Named Parse messages from clients.",
	  offsetof(struct pool_stats, client_parse_count), 1 },
	{ "pgpulse_pool_server_parses_total", "Parse messages pgpulse sent to servers for clients' named statements.",
	  offsetof(struct pool_stats, server_parse_count), 1 },
	{ "pgpulse_pool_binds_total", "Bind messages of clients' named statements.",
	  offsetof(struct pool_stats, bind_count), 1 },
	{ "pgpulse_pool_prepared_evictions_total",
	  "Prepared statements closed on a server to keep it within max_prepared_statements.",
	  offsetof(struct pool_stats, prepared_evictions), 1 },
	/* failures (failures.h); errors by class and login failures are rendered apart */
	{ "pgpulse_pool_query_wait_timeouts_total", "Clients failed by query_wait_timeout.",
	  offsetof(struct pool_stats, fail.wait_timeouts), 1 },
	{ "pgpulse_pool_query_timeouts_total", "Queries cancelled by query_timeout.",
	  offsetof(struct pool_stats, fail.query_timeouts), 1 },
	{ "pgpulse_pool_client_idle_timeouts_total", "Clients closed by client_idle_timeout.",
	  offsetof(struct pool_stats, fail.client_idle_timeouts), 1 },
	{ "pgpulse_pool_idle_transaction_timeouts_total", "Clients closed by idle_transaction_timeout.",
	  offsetof(struct pool_stats, fail.idle_transaction_timeouts), 1 },
	{ "pgpulse_pool_transaction_timeouts_total", "Clients closed by transaction_timeout.",
	  offsetof(struct pool_stats, fail.transaction_timeouts), 1 },
	{ "pgpulse_pool_server_connect_failures_total",
	  "Server connection attempts that failed before login (refused, unreachable, DNS, server_connect_timeout).",
	  offsetof(struct pool_stats, fail.server_connect_failures), 1 },
	{ "pgpulse_pool_server_login_failures_total", "Server logins PostgreSQL or pgpulse's authentication refused.",
	  offsetof(struct pool_stats, fail.server_login_failures), 1 },
};

static void render_pool_counters(struct evbuffer *out)
{
	struct list *pos;
	pool_count_moved_bytes();
	for (size_t i = 0; i < sizeof(stats_counters) / sizeof(stats_counters[0]); i++) {
		metrics_put_header(out, stats_counters[i].name, "counter", stats_counters[i].help);
		list_for_each(pos, &worker->pools)
		{
			const struct pool *p = container_of(pos, struct pool, node);
			uint64_t v;
			memcpy(&v, (const char *)&p->stats + stats_counters[i].offset, sizeof(v));
			put_pool_sample(out, stats_counters[i].name, p, NULL, (double)v * stats_counters[i].scale);
		}
	}
}

/* ---- failures: errors by SQLSTATE class, login failures by reason ---- */

/* one source's nonzero classes: a series appears with its first error, so a pool costs none until then */
static void put_error_classes(struct evbuffer *out, const struct pool *p, const char *source, const uint64_t *counts)
{
	for (int k = 0; k < ERR_CLASS_COUNT; k++) {
		if (!counts[k])
			continue;
		evbuffer_add_printf(out, "pgpulse_errors_total{");
		if (p) {
			put_pool_labels(out, p);
			evbuffer_add(out, ",", 1);
		}
		evbuffer_add_printf(out, "source=\"%s\",class=\"%s\"} %llu\n", source, failure_error_class_name(k),
				    (unsigned long long)counts[k]);
	}
}

static void render_failures(struct evbuffer *out)
{
	struct list *pos;
	metrics_put_header(out, "pgpulse_errors_total", "counter",
			   "Errors sent to clients by SQLSTATE class: source server (forwarded from PostgreSQL) or pgpulse "
			   "(its own); without database and user for clients that had no pool yet.");
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		put_error_classes(out, p, "server", p->stats.fail.server_errors);
		put_error_classes(out, p, "pgpulse", p->stats.fail.pooler_errors);
	}
	put_error_classes(out, NULL, "pgpulse", worker->unpooled_failures.pooler_errors);
	metrics_put_header(out, "pgpulse_client_login_failures_total", "counter", "Client logins that failed, by reason.");
	for (int r = 0; r < LF_COUNT; r++)
		evbuffer_add_printf(out, "pgpulse_client_login_failures_total{reason=\"%s\"} %llu\n",
				    failure_login_reason_name((enum login_failure)r),
				    (unsigned long long)worker->login_failures[r]);
}

/* ---- logins: SHOW LOGINS, the instance's row (login_stats.h) ---- */

static void render_logins(struct evbuffer *out)
{
	const struct login_counts *lc = &worker->logins;
	metrics_put_header(out, "pgpulse_logins_in_flight", "gauge",
			   "Client connections accepted whose login has not ended, by the stage it is in.");
	for (int s = 0; s < LOGIN_STAGES; s++)
		evbuffer_add_printf(out, "pgpulse_logins_in_flight{stage=\"%s\"} %lld\n",
				    login_stage_name((enum login_stage)s),
				    (long long)lc->in_flight[s]);
	metrics_put_header(out, "pgpulse_logins_abandoned_total", "counter",
			   "Client logins the client gave up on (closed its connection) before they ended, "
			   "by stage.");
	for (int s = 0; s < LOGIN_STAGES; s++)
		evbuffer_add_printf(out, "pgpulse_logins_abandoned_total{stage=\"%s\"} %llu\n",
				    login_stage_name((enum login_stage)s),
				    (unsigned long long)lc->abandoned[s]);
	metrics_put_header(out, "pgpulse_logins_completed_total", "counter",
			   "Client logins that ended in the hello's ReadyForQuery, the admin console's "
			   "included.");
	evbuffer_add_printf(out, "pgpulse_logins_completed_total %llu\n",
			    (unsigned long long)lc->completed);
	metrics_put_header(out, "pgpulse_logins_failed_total", "counter",
			   "Client logins pgpulse ended: with an error "
			   "(pgpulse_client_login_failures_total) or without a word.");
	evbuffer_add_printf(out, "pgpulse_logins_failed_total %llu\n",
			    (unsigned long long)lc->failed);
}

/*
 * ---- per query shape: a bounded few (doc/telemetry.md) ----
 * A series per fingerprint would multiply by max_query_fingerprints, so
 * only the METRICS_TOP_QUERIES shapes with the most errors, and as many N+1
 * suspects (worst first), get series; the rest are on SHOW QUERIES and
 * SHOW REPEATS.
 */
#define METRICS_TOP_QUERIES 10

struct top_queries {
	const struct fp_entry *errors[METRICS_TOP_QUERIES];   /* most errors first */
	int n_errors;
	struct flagged_shape {
		const struct fp_entry *e;
		struct fp_repeats r;
	} *flagged;                                           /* every N+1 suspect, worst first */
	int n_flagged, cap_flagged;
};

static void keep_top_errors(struct top_queries *t, const struct fp_entry *e)
{
	if (!e->errors)
		return;
	int i = t->n_errors < METRICS_TOP_QUERIES ? t->n_errors++ : METRICS_TOP_QUERIES;
	if (i == METRICS_TOP_QUERIES && e->errors <= t->errors[i - 1]->errors)
		return;
	if (i == METRICS_TOP_QUERIES)
		i--;
	while (i > 0 && t->errors[i - 1]->errors < e->errors) {
		t->errors[i] = t->errors[i - 1];
		i--;
	}
	t->errors[i] = e;
}

static void gather_query_shape(struct fp_entry *e, void *arg)
{
	struct top_queries *t = arg;
	keep_top_errors(t, e);
	struct fp_repeats r;
	fp_read_repeats(e, false, &r);
	if (!fp_repeats_flagged(&r))
		return;
	if (t->n_flagged == t->cap_flagged) {
		t->cap_flagged = t->cap_flagged ? t->cap_flagged * 2 : 16;
		t->flagged = xrealloc(t->flagged, sizeof(*t->flagged) * (size_t)t->cap_flagged);
	}
	t->flagged[t->n_flagged].e = e;
	t->flagged[t->n_flagged++].r = r;
}

static int cmp_flagged_worst_first(const void *a, const void *b)
{
	const struct flagged_shape *x = a, *y = b;
	if (x->r.repeat_xacts != y->r.repeat_xacts)
		return x->r.repeat_xacts < y->r.repeat_xacts ? 1 : -1;
	if (x->r.max != y->r.max)
		return x->r.max < y->r.max ? 1 : -1;
	return x->e->fp < y->e->fp ? -1 : x->e->fp > y->e->fp;
}

static void put_shape_sample(struct evbuffer *out, const char *name, const struct fp_entry *e, uint64_t value)
{
	char fp[40];
	snprintf(fp, sizeof(fp), "fingerprint=\"%016llx\"", (unsigned long long)e->fp);
	put_pool_sample(out, name, e->pool, fp, (double)value);
}

static void render_query_shapes(struct evbuffer *out)
{
	struct top_queries t;
	struct list *pos;
	memset(&t, 0, sizeof(t));
	fp_for_each(gather_query_shape, &t);
	if (t.n_flagged > 1)
		qsort(t.flagged, (size_t)t.n_flagged, sizeof(*t.flagged), cmp_flagged_worst_first);
	metrics_put_header(out, "pgpulse_query_errors_total", "counter",
			   "Requests of the shape that ended in an error (server's or pgpulse's); the 10 shapes with the most.");
	for (int i = 0; i < t.n_errors; i++)
		put_shape_sample(out, "pgpulse_query_errors_total", t.errors[i], t.errors[i]->errors);
	metrics_put_header(out, "pgpulse_query_timeouts_total", "counter",
			   "Of those errors, requests cut off by query_wait_timeout or query_timeout; the same 10 shapes.");
	for (int i = 0; i < t.n_errors; i++)
		put_shape_sample(out, "pgpulse_query_timeouts_total", t.errors[i], t.errors[i]->timeouts);
	metrics_put_header(out, "pgpulse_query_repeats_flagged", "gauge",
			   "Query shapes flagged as N+1 suspects over the last 5 minutes (SHOW REPEATS).");
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		int n = 0;
		for (int i = 0; i < t.n_flagged; i++)
			n += t.flagged[i].e->pool == p;
		put_pool_sample(out, "pgpulse_query_repeats_flagged", p, NULL, n);
	}
	metrics_put_header(out, "pgpulse_query_repeats_max", "gauge",
			   "Most executions of a flagged shape in one transaction over the last 5 minutes; the 10 worst.");
	for (int i = 0; i < t.n_flagged && i < METRICS_TOP_QUERIES; i++)
		put_shape_sample(out, "pgpulse_query_repeats_max", t.flagged[i].e, t.flagged[i].r.max);
	free(t.flagged);
}

/* ---- the shared prepared statements: SHOW PREPARED_STATEMENTS, summed ---- */

struct prepared_sums {
	uint64_t statements, client_names, server_copies;
};

static void add_statement(const struct ps_info *info, void *arg)
{
	struct prepared_sums *sum = arg;
	sum->statements++;
	sum->client_names += info->clients;
	sum->server_copies += info->servers;
}

/*
 * Totals, not a series per statement: a statement's only natural label is
 * its text, which would make the scrape grow with every query an
 * application prepares. Per-statement figures stay in the console.
 */
static void render_prepared(struct evbuffer *out)
{
	struct prepared_sums sum = { 0, 0, 0 };
	prepared_each(add_statement, &sum);
	metrics_put_header(out, "pgpulse_prepared_statements", "gauge",
			   "Distinct named prepared statements (text and parameter types) pgpulse keeps.");
	evbuffer_add_printf(out, "pgpulse_prepared_statements %llu\n", (unsigned long long)sum.statements);
	metrics_put_header(out, "pgpulse_prepared_statement_client_names", "gauge",
			   "Client statement names mapped to those statements.");
	evbuffer_add_printf(out, "pgpulse_prepared_statement_client_names %llu\n",
			    (unsigned long long)sum.client_names);
	metrics_put_header(out, "pgpulse_prepared_statement_server_copies", "gauge",
			   "Those statements prepared on server connections, one per statement and server.");
	evbuffer_add_printf(out, "pgpulse_prepared_statement_server_copies %llu\n",
			    (unsigned long long)sum.server_copies);
}

/* ---- efficiency and health ---- */

static double ratio(int64_t part, int64_t whole)
{
	return whole > 0 ? (double)part / (double)whole : 0.0;
}

static const enum series_window eff_windows[] = { WINDOW_1M, WINDOW_5M, WINDOW_15M };
#define EFF_WINDOWS (sizeof(eff_windows) / sizeof(eff_windows[0]))
static const struct {
	const char *name;
	const char *help;
} eff_gauges[] = {
	{ "pgpulse_pool_utilization_ratio", "Busy server time over open server time." },
	{ "pgpulse_pool_reuse_ratio", "Share of assignments served by an already used connection." },
	{ "pgpulse_pool_saturation_ratio", "Share of the time with a client waiting." },
	{ "pgpulse_pool_overflow_ratio", "Share of the time with overflow connections open." },
	{ "pgpulse_pool_reserve_ratio", "Share of the time with reserve connections open." },
	{ "pgpulse_pool_suggested_size", "Pool size that covered the demand 99% of the window's time." },
};
#define EFF_GAUGES (sizeof(eff_gauges) / sizeof(eff_gauges[0]))

/* a pool's gauges in each window: a window is summed once for all six */
static void eff_values(struct pool *p, int64_t now, double v[EFF_GAUGES][EFF_WINDOWS])
{
	for (size_t w = 0; w < EFF_WINDOWS; w++) {
		struct eff_counters ec;
		eff_read(&p->tm->eff, eff_windows[w], now, &ec);
		v[0][w] = ratio(ec.busy_us, ec.open_us);
		v[1][w] = ratio((int64_t)ec.reused, (int64_t)ec.assignments);
		v[2][w] = ratio(ec.saturated_us, ec.span_us);
		v[3][w] = ratio(ec.overflow_us, ec.span_us);
		v[4][w] = ratio(ec.reserve_us, ec.span_us);
		v[5][w] = eff_suggested_size(&ec);
	}
}

/*
 * A family's samples must be together, gauge by gauge, but reading a
 * window is the costly part (1,000 pools: most of a scrape's time when
 * each gauge read it again), so every pool's values are read first. Short
 * of memory, each gauge reads them again.
 */
static void render_efficiency(struct evbuffer *out)
{
	struct list *pos;
	char extra[32];
	int64_t now = now_usec();
	size_t npools = (size_t)list_count(&worker->pools);
	double (*all)[EFF_GAUGES][EFF_WINDOWS] = npools ? calloc(npools, sizeof(*all)) : NULL;
	double one[EFF_GAUGES][EFF_WINDOWS];
	size_t i = 0;
	if (all) {
		list_for_each(pos, &worker->pools)
			eff_values(container_of(pos, struct pool, node), now, all[i++]);
	}
	for (size_t g = 0; g < EFF_GAUGES; g++) {
		metrics_put_header(out, eff_gauges[g].name, "gauge", eff_gauges[g].help);
		i = 0;
		list_for_each(pos, &worker->pools)
		{
			struct pool *p = container_of(pos, struct pool, node);
			double (*v)[EFF_WINDOWS] = all ? all[i++] : one;
			if (!all)
				eff_values(p, now, one);
			for (size_t w = 0; w < EFF_WINDOWS; w++) {
				snprintf(extra, sizeof(extra), "window=\"%s\"", series_window_name(eff_windows[w]));
				put_pool_sample(out, eff_gauges[g].name, p, extra, v[g][w]);
			}
		}
	}
	free(all);
}

static void render_health_gauge(struct evbuffer *out)
{
	struct list *pos;
	struct health_verdict v;
	int64_t now = now_usec();
	metrics_put_header(out, "pgpulse_pool_health", "gauge", "Pool health on the 5-minute window: 0 ok, 1 warning, 2 critical.");
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		health_judge_pool(p, now, &v);
		put_pool_sample(out, "pgpulse_pool_health", p, NULL, v.status);
	}
}

static void render_instance(struct evbuffer *out)
{
	metrics_put_header(out, "pgpulse_up", "gauge", "1 while pgpulse serves.");
	evbuffer_add_printf(out, "pgpulse_up 1\n");
	metrics_put_header(out, "pgpulse_client_connections", "gauge", "Client connections, admin console included.");
	evbuffer_add_printf(out, "pgpulse_client_connections %d\n", worker->client_count);
	metrics_put_header(out, "pgpulse_server_connections", "gauge", "Server connections.");
	evbuffer_add_printf(out, "pgpulse_server_connections %d\n", worker->server_count);
	metrics_put_header(out, "pgpulse_start_time_seconds", "gauge", "When pgpulse started, in seconds since the epoch.");
	evbuffer_add_printf(out, "pgpulse_start_time_seconds %.3f\n", (double)worker->started_at / 1e6);
}

void metrics_render(struct evbuffer *out)
{
	render_instance(out);
	render_pool_levels(out);
	render_pool_counters(out);
	render_failures(out);
	render_query_shapes(out);
	render_prepared(out);
	render_logins(out);
	render_histograms(out);
	render_login_histograms(out);
	if (worker->cfg->metrics_summaries)
		render_quantiles(out);
	render_efficiency(out);
	render_health_gauge(out);
	metrics_render_hosts(out);
}

/* ---- /health ---- */

static void put_json_string(struct evbuffer *out, const char *s)
{
	evbuffer_add(out, "\"", 1);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			evbuffer_add_printf(out, "\\%c", ch);
		else if (ch < 0x20)
			evbuffer_add_printf(out, "\\u%04x", ch);
		else
			evbuffer_add(out, s, 1);
	}
	evbuffer_add(out, "\"", 1);
}

bool metrics_render_health(struct evbuffer *out)
{
	struct list *pos;
	struct health_verdict v;
	char why[256];
	int64_t now = now_usec();
	bool serving = health_judge_instance(now, why, sizeof(why));
	bool first = true;
	evbuffer_add_printf(out, "{\"status\":\"%s\",\"reason\":", serving ? "ok" : "unavailable");
	put_json_string(out, why);
	evbuffer_add_printf(out, ",\"pools\":[");
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		health_judge_pool(p, now, &v);
		evbuffer_add_printf(out, "%s{\"database\":", first ? "" : ",");
		put_json_string(out, p->db->name);
		evbuffer_add_printf(out, ",\"user\":");
		put_json_string(out, p->user->name);
		evbuffer_add_printf(out, ",\"status\":\"%s\",\"reason\":", health_status_name(v.status));
		put_json_string(out, v.reason);
		evbuffer_add_printf(out, "}");
		first = false;
	}
	evbuffer_add_printf(out, "]}\n");
	return serving;
}

/* ---- the endpoint ---- */

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type, struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
	evhttp_send_reply(req, code, reason, body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	(void)arg;
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *body = evbuffer_new();
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	/* HEAD is GET without the body (libevent leaves it out): load balancers probe with it */
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evbuffer_add_printf(body, "only GET\n");
		reply(req, 405, "Method Not Allowed", "text/plain", body);
	} else if (strcmp(uri, "/metrics") == 0 || strncmp(uri, "/metrics?", 9) == 0) {
		metrics_render(body);
		reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
	} else if (strcmp(uri, "/health") == 0) {
		bool ok = metrics_render_health(body);
		reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "application/json", body);
	} else {
		evbuffer_add_printf(body, "not found: try /metrics or /health\n");
		reply(req, 404, "Not Found", "text/plain", body);
	}
	evbuffer_free(body);
}

/* ---- connection accounting ---- */

static void set_accepting(bool on)
{
	if (!g_bound || on == !g_accept_paused)
		return;
	struct evconnlistener *lev = evhttp_bound_socket_get_listener(g_bound);
	if (on) {
		evconnlistener_enable(lev);
	} else {
		evconnlistener_disable(lev);
		int64_t now = now_usec();
		if (!g_full_logged || now - g_full_logged >= 60 * INT64_C(1000000)) {
			log_warning("metrics: %d HTTP connections open (metrics_max_connections): "
				    "new ones wait until one closes",
				    g_conn_count);
			g_full_logged = now;
		}
	}
	g_accept_paused = !on;
}

static void conn_gone(struct http_conn *c)
{
	list_remove(&c->node);
	free(c);
	g_conn_count--;
	if (g_conn_count < g_conn_max)
		set_accepting(true);
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	conn_gone(arg);
}

/*
 * evhttp made its connection around each fresh bufferevent in the same
 * accept callback, and set the bufferevent's callbacks with that
 * connection as their argument; a bufferevent whose callbacks are gone was
 * freed by evhttp already (bufferevent_free clears them), and our
 * reference is all that is left of it.
 */
static void adopt_fresh(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &g_fresh)
	{
		struct http_conn *c = container_of(pos, struct http_conn, node);
		struct bufferevent *bev = c->bev;
		bufferevent_event_cb eventcb = NULL;
		void *cbarg = NULL;
		bufferevent_getcb(bev, NULL, NULL, &eventcb, &cbarg);
		c->bev = NULL;
		if (eventcb && cbarg) {
			list_remove(&c->node);
			list_append(&g_open, &c->node);
			c->evcon = cbarg;
			evhttp_connection_set_closecb(c->evcon, on_conn_close, c);
		} else {
			conn_gone(c);
		}
		bufferevent_decref(bev); /* closes the socket if evhttp is done with it */
	}
}

/*
 * A connection that filled METRICS_READ_HIGH_WATER with bytes evhttp cannot
 * parse yet (a chunk-size line without its end: the one line evhttp 2.1 does
 * not bound) is no longer read, and a connection not being read has no read
 * timeout either: without this sweep it would hold its slot for good.
 */
static void sweep_stalled(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &g_open)
	{
		struct http_conn *c = container_of(pos, struct http_conn, node);
		struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
		if (evbuffer_get_length(bufferevent_get_input(bev)) < METRICS_READ_HIGH_WATER)
			continue;
		evhttp_connection_set_closecb(c->evcon, NULL, NULL);
		evhttp_connection_free(c->evcon);
		conn_gone(c);
	}
	if (g_conn_count > 0)
		evtimer_add(g_sweep, &one_second);
}

static struct bufferevent *make_conn_bev(struct event_base *base, void *arg)
{
	(void)arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	struct http_conn *c = bev ? malloc(sizeof(*c)) : NULL;
	if (!c)
		return bev; /* out of memory: served uncounted, or dropped by evhttp */
	bufferevent_setwatermark(bev, EV_READ, 0, METRICS_READ_HIGH_WATER);
	bufferevent_incref(bev);
	c->bev = bev;
	list_append(&g_fresh, &c->node);
	event_active(g_adopt, 0, 0);
	if (!evtimer_pending(g_sweep, NULL))
		evtimer_add(g_sweep, &one_second);
	if (++g_conn_count >= g_conn_max)
		set_accepting(false);
	return bev;
}

bool metrics_start(char *err, size_t errlen)
{
	const struct cfg *cfg = worker->cfg;
	if (cfg->metrics_port <= 0)
		return true;
	g_http = evhttp_new(worker->base);
	if (!g_http) {
		snprintf(err, errlen, "could not create the metrics HTTP server");
		return false;
	}
	/* POST is let through to be answered 405 (it is a known method, just not
	 * one these resources take); its body, like any, stops at METRICS_MAX_BODY */
	evhttp_set_allowed_methods(g_http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	evhttp_set_max_headers_size(g_http, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(g_http, METRICS_MAX_BODY);
	evhttp_set_timeout(g_http, METRICS_TIMEOUT_SECS);
	evhttp_set_bevcb(g_http, make_conn_bev, NULL);
	evhttp_set_gencb(g_http, on_request, NULL);
	g_adopt = event_new(worker->base, -1, 0, adopt_fresh, NULL);
	g_sweep = evtimer_new(worker->base, sweep_stalled, NULL);
	g_conn_max = cfg->metrics_max_connections;
	const char *addr = cfg->metrics_addr && *cfg->metrics_addr ? cfg->metrics_addr : "127.0.0.1";
	if (g_adopt && g_sweep)
		g_bound = evhttp_bind_socket_with_handle(g_http, addr, (uint16_t)cfg->metrics_port);
	if (!g_bound) {
		snprintf(err, errlen, "could not listen for metrics on %s:%d", addr, cfg->metrics_port);
		metrics_stop();
		return false;
	}
	log_info("metrics on http://%s:%d/metrics (at most %d connections)", addr, cfg->metrics_port, g_conn_max);
	return true;
}

void metrics_stop(void)
{
	g_bound = NULL; /* evhttp_free frees the listener before the connections it closes */
	if (g_http)
		evhttp_free(g_http);
	g_http = NULL;
	adopt_fresh(-1, 0, NULL); /* fresh ones evhttp has just freed */
	if (g_adopt)
		event_free(g_adopt);
	g_adopt = NULL;
	if (g_sweep)
		event_free(g_sweep);
	g_sweep = NULL;
	g_accept_paused = false;
}
