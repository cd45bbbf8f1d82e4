/*
 * health: a pool's status and the instance's verdict (see include/health.h).
 *
 * Each check yields a finding; the pool's status is the worst of them and
 * the reason is that finding, with the measured value and the threshold it
 * crossed, so an alert says what to look at. The checks run in the order
 * of how directly they hurt clients, and the first of the worst wins.
 */
#include "health.h"

#include <stdarg.h>
#include <stdio.h>

#include "config.h"
#include "client.h"
#include "fingerprint.h"
#include "hist.h"
#include "pool.h"
#include "telemetry.h"
#include "util.h"
#include "worker.h"

/* how long clients timing out waiting keep a pool at warning (the window health judges) */
#define HEALTH_WINDOW_USEC (300 * INT64_C(1000000))

static const char *const status_names[] = { "ok", "warning", "critical" };

const char *health_status_name(enum health_status s)
{
	return (s >= HEALTH_OK && s <= HEALTH_CRITICAL) ? status_names[s] : "?";
}

static void note(struct health_verdict *v, enum health_status st, bool failing, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void note(struct health_verdict *v, enum health_status st, bool failing, const char *fmt, ...)
{
	if (st <= v->status)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
	v->status = st;
	v->failing = failing;
}

int health_pool_capacity(const struct pool *p)
{
	struct pool_limits l = pool_limits_of(p);
	int cap = l.base + l.overflow + l.reserve;
	/* a pool can never hold more than its database's or its user's share allows */
	if (l.max_db > 0 && l.max_db < cap)
		cap = l.max_db;
	if (l.max_user > 0 && l.max_user < cap)
		cap = l.max_user;
	return cap;
}

/* PostgreSQL refused or could not be reached, and no server is left open to serve */
static void judge_reachable(const struct pool *p, struct health_verdict *v)
{
	if (pool_server_count(p) > 0 || !p->last_connect_failure)
		return;
	note(v, HEALTH_CRITICAL, true, "cannot log in to PostgreSQL: %s",
	     p->last_error[0] ? p->last_error : "connection failed");
}

/*
 * Clients timed out waiting (query_wait_timeout). Critical, and failing,
 * while none has been served since and a new client would wait too (no
 * idle server, no room to open one); otherwise a warning for the window.
 */
static void judge_wait_timeouts(const struct pool *p, int64_t now, int capacity, struct health_verdict *v)
{
	if (!p->wait_timeout_at || now - p->wait_timeout_at >= HEALTH_WINDOW_USEC)
		return;
	char ago[32];
	usec_to_seconds_text(now - p->wait_timeout_at, ago, sizeof(ago));
	bool no_room = list_empty(&p->idle_servers) && pool_server_count(p) >= capacity;
	if (p->wait_timeouts > 0 && no_room)
		note(v, HEALTH_CRITICAL, true,
		     "%u clients timed out waiting (query_wait_timeout), none served since, all %d connections busy",
		     p->wait_timeouts, capacity);
	else
		note(v, HEALTH_WARNING, false, "a client timed out waiting (query_wait_timeout) %s s ago", ago);
}

/* clients waiting now with every connection the pool may open in use */
static void judge_waiting(const struct pool *p, int64_t now, int capacity, struct health_verdict *v)
{
	if (list_empty(&p->waiting_clients) || pool_paused(p) || pool_server_count(p) < capacity)
		return;
	const struct cfg *cfg = worker->cfg;
	int64_t since = container_of(p->waiting_clients.next, struct client, node)->wait_start;
	int64_t waited = since > 0 && now > since ? now - since : 0;
	int n = list_count(&p->waiting_clients);
	char w[32], t[32];
	usec_to_seconds_text(waited, w, sizeof(w));
	if (cfg->health_wait_p95_critical > 0 && waited >= cfg->health_wait_p95_critical)
		note(v, HEALTH_CRITICAL, false, "%d clients waiting at capacity %d, the longest %s s (critical %s s)", n,
		     capacity, w, usec_to_seconds_text(cfg->health_wait_p95_critical, t, sizeof(t)));
	else
		note(v, HEALTH_WARNING, false, "%d clients waiting at capacity %d, the longest %s s", n, capacity, w);
}

static void judge_latency(struct health_verdict *v, const char *what, uint64_t p95, uint64_t count, int64_t warn,
			  int64_t crit)
{
	char val[32], t[32];
	if (count < HEALTH_MIN_SAMPLES)
		return;
	usec_to_seconds_text((int64_t)p95, val, sizeof(val));
	if (crit > 0 && (int64_t)p95 >= crit)
		note(v, HEALTH_CRITICAL, false, "%s p95 %s s is at or above the critical %s s", what, val,
		     usec_to_seconds_text(crit, t, sizeof(t)));
	else if (warn > 0 && (int64_t)p95 >= warn)
		note(v, HEALTH_WARNING, false, "%s p95 %s s is at or above the warning %s s", what, val,
		     usec_to_seconds_text(warn, t, sizeof(t)));
}

/*
 * Busy server time over what the capacity could have given in the window.
 * A full pool with nobody waiting hurts no client yet: critical needs
 * clients waiting too.
 */
static void judge_utilization(const struct pool *p, int64_t now, int capacity, struct health_verdict *v)
{
	const struct cfg *cfg = worker->cfg;
	struct eff_counters ec;
	eff_read(&p->tm->eff, WINDOW_5M, now, &ec);
	if (ec.span_us <= 0 || capacity <= 0)
		return;
	double util = 100.0 * (double)ec.busy_us / ((double)ec.span_us * capacity);
	int crit = cfg->health_utilization_critical, warn = cfg->health_utilization_warning;
	if (crit > 0 && util >= crit && !list_empty(&p->waiting_clients))
		note(v, HEALTH_CRITICAL, false,
		     "utilization %.1f %% of capacity %d is at or above the critical %d %% with clients waiting", util,
		     capacity, crit);
	else if (warn > 0 && util >= warn)
		note(v, HEALTH_WARNING, false, "utilization %.1f %% of capacity %d is at or above the warning %d %%",
		     util, capacity, warn);
}

static void judge_percentiles(const struct pool *p, struct health_verdict *v)
{
	static struct hist_acc acc; /* 14 kB; one worker thread */
	const struct cfg *cfg = worker->cfg;
	hist_acc_reset(&acc);
	series_read(&p->tm->kinds[TK_WAIT], WINDOW_5M, &acc);
	judge_latency(v, "wait", hist_acc_quantile(&acc, 0.95), acc.count, cfg->health_wait_p95_warning,
		      cfg->health_wait_p95_critical);
	hist_acc_reset(&acc);
	series_read(&p->tm->kinds[TK_QUERY], WINDOW_5M, &acc);
	judge_latency(v, "query", hist_acc_quantile(&acc, 0.95), acc.count, cfg->health_query_p95_warning,
		      cfg->health_query_p95_critical);
}

void health_judge_pool(const struct pool *p, int64_t now, struct health_verdict *v)
{
	v->status = HEALTH_OK;
	v->failing = false;
	v->reason[0] = '\0';
	judge_reachable(p, v);
	/*
	 * A walsender is busy all its life and a stream is one command that
	 * lasts hours: capacity, wait and latency checks would cry wolf.
	 */
	if (p->for_replication)
		return;
	int capacity = health_pool_capacity(p);
	judge_wait_timeouts(p, now, capacity, v);
	judge_waiting(p, now, capacity, v);
	if (!p->tm)
		return;
	judge_utilization(p, now, capacity, v);
	judge_percentiles(p, v);
}

/* the pools a client can be served by: not the console's, not auth_query's own, not walsenders' */
static bool serves_clients(const struct pool *p)
{
	return !p->db->is_admin && !p->for_lookups && !p->for_replication;
}

bool health_judge_instance(int64_t now, char *reason, size_t len)
{
	if (worker->shutdown != SHUTDOWN_NONE) {
		snprintf(reason, len, "%s", "shutting down");
		return false;
	}
	struct health_verdict v, first_failing;
	int pools = 0, failing = 0;
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		if (!serves_clients(p))
			continue;
		pools++;
		health_judge_pool(p, now, &v);
		if (v.failing && failing++ == 0)
			first_failing = v;
	}
	if (pools > 0 && failing == pools) {
		snprintf(reason, len, "every pool is failing (%d), the first: %s", failing, first_failing.reason);
		return false;
	}
	snprintf(reason, len, "%s", "");
	return true;
}

void health_repeat_advice(const char *query, const struct fp_repeats *r, char *out, size_t len)
{
	double share = r->repeat_xact_us ? 100.0 * (double)r->repeat_shape_us / (double)r->repeat_xact_us : 0.0;
	snprintf(out, len,
		 "N+1 suspect: \"%.*s\" ran up to %u times in one transaction (%u transactions in %d min, %.0f %% "
		 "of their time): batch it or join (SHOW REPEATS)",
		 (int)utf8_prefix_len(query, 60), query, r->max, r->repeat_xacts, FP_REPEAT_MINUTES, share > 100.0 ? 100.0 : share);
}
