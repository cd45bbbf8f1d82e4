/*
 * health: thresholds on a pool's 5-minute window (see include/health.h).
 *
 * Each check yields ok, warning or critical; the pool's status is the worst
 * of them and the reason is that check's finding, with the measured value
 * and the threshold it crossed, so an alert says what to look at.
 */
#include "health.h"

#include <stdio.h>

#include "config.h"
#include "hist.h"
#include "telemetry.h"
#include "util.h"

static const char *const status_names[] = { "ok", "warning", "critical" };

const char *health_status_name(enum health_status s)
{
	return (s >= HEALTH_OK && s <= HEALTH_CRITICAL) ? status_names[s] : "?";
}

struct finding {
	enum health_status status;
	char text[160];
};

static void judge_latency(struct finding *f, const char *what, uint64_t p95, uint64_t count, int64_t warn,
			  int64_t crit)
{
	char v[32], t[32];
	f->status = HEALTH_OK;
	if (!count)
		return;
	if (crit > 0 && (int64_t)p95 >= crit) {
		f->status = HEALTH_CRITICAL;
		snprintf(f->text, sizeof(f->text), "%s p95 %s s is at or above the critical %s s", what,
			 usec_to_seconds_text((int64_t)p95, v, sizeof(v)), usec_to_seconds_text(crit, t, sizeof(t)));
	} else if (warn > 0 && (int64_t)p95 >= warn) {
		f->status = HEALTH_WARNING;
		snprintf(f->text, sizeof(f->text), "%s p95 %s s is at or above the warning %s s", what,
			 usec_to_seconds_text((int64_t)p95, v, sizeof(v)), usec_to_seconds_text(warn, t, sizeof(t)));
	}
}

static void judge_utilization(struct finding *f, const struct eff_counters *ec, int warn, int crit)
{
	f->status = HEALTH_OK;
	if (ec->open_us <= 0)
		return;
	double util = 100.0 * (double)ec->busy_us / (double)ec->open_us;
	if (crit > 0 && util >= crit) {
		f->status = HEALTH_CRITICAL;
		snprintf(f->text, sizeof(f->text), "utilization %.1f %% is at or above the critical %d %%", util, crit);
	} else if (warn > 0 && util >= warn) {
		f->status = HEALTH_WARNING;
		snprintf(f->text, sizeof(f->text), "utilization %.1f %% is at or above the warning %d %%", util, warn);
	}
}

enum health_status health_evaluate(struct pool_telemetry *t, const struct cfg *cfg, int64_t now, char *reason,
				   size_t len)
{
	static struct hist_acc acc; /* 14 kB; one worker thread */
	struct finding f[3];
	struct eff_counters ec;

	hist_acc_reset(&acc);
	series_read(&t->kinds[TK_QUERY], WINDOW_5M, &acc);
	judge_latency(&f[0], "query", hist_acc_quantile(&acc, 0.95), acc.count, cfg->health_query_p95_warning,
		      cfg->health_query_p95_critical);
	hist_acc_reset(&acc);
	series_read(&t->kinds[TK_WAIT], WINDOW_5M, &acc);
	judge_latency(&f[1], "wait", hist_acc_quantile(&acc, 0.95), acc.count, cfg->health_wait_p95_warning,
		      cfg->health_wait_p95_critical);
	eff_read(&t->eff, WINDOW_5M, now, &ec);
	judge_utilization(&f[2], &ec, cfg->health_utilization_warning, cfg->health_utilization_critical);

	int worst = 0;
	for (int i = 1; i < 3; i++)
		if (f[i].status > f[worst].status)
			worst = i;
	if (f[worst].status == HEALTH_OK)
		snprintf(reason, len, "%s", "");
	else
		snprintf(reason, len, "%s", f[worst].text);
	return f[worst].status;
}
