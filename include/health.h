/*
 * health: what a pool's status and the instance's verdict mean, judged the
 * same way for GET /health, SHOW HEALTH, the pgpulse_pool_health gauge and
 * the status-change log (doc/telemetry.md, "Health").
 *
 * A pool is
 *   ok       nothing to do;
 *   warning  it serves, but is near a limit (capacity, waits, query p95) or
 *            some clients timed out waiting lately: its owner should look;
 *   critical it fails its clients now (PostgreSQL unreachable, clients time
 *            out waiting with no room to serve a new one, waits past the
 *            critical threshold): on-call should act.
 * Percentile checks need HEALTH_MIN_SAMPLES samples in the 5-minute
 * window: one slow query is not a trend.
 *
 * The instance serves (/health 200) unless it is shutting down or every
 * pool that has been used is failing: unreachable, or its clients time
 * out waiting with no room. A load balancer acts on that verdict alone.
 */
#ifndef PGPULSE_HEALTH_H
#define PGPULSE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pool;

enum health_status { HEALTH_OK = 0, HEALTH_WARNING, HEALTH_CRITICAL };

/* a percentile check on fewer samples than this in the window stays ok */
#define HEALTH_MIN_SAMPLES 20

struct health_verdict {
	enum health_status status;
	bool failing;      /* the pool cannot serve a new client now (implies critical) */
	char reason[160];  /* the worst finding, "" when ok */
};

void health_judge_pool(const struct pool *p, int64_t now, struct health_verdict *v);

/* whether the instance can serve a new client; reason says why not, "" when it can */
bool health_judge_instance(int64_t now, char *reason, size_t len);

/* what a pool can open at most: base + overflow + reserve, capped by max_db/max_user_connections */
int health_pool_capacity(const struct pool *p);

const char *health_status_name(enum health_status s);

struct fp_repeats;

/*
 * Advice that changes no status (SHOW HEALTH's advice column): a shape
 * flagged as an N+1 suspect (fingerprint.h) and how to fix it. A repeat is
 * how an application uses the pool, not a fault of it: nothing fails, and a
 * load balancer must not act on it.
 */
void health_repeat_advice(const char *query, const struct fp_repeats *r, char *out, size_t len);

#endif
