/*
 * health: a pool's status — ok, warning or critical — judged on its
 * 5-minute window against thresholds for the query p95, the wait p95 and
 * the utilization of its servers. The reason names the worst finding.
 */
#ifndef PGPULSE_HEALTH_H
#define PGPULSE_HEALTH_H

#include <stddef.h>
#include <stdint.h>

struct pool_telemetry;
struct cfg;

enum health_status { HEALTH_OK = 0, HEALTH_WARNING, HEALTH_CRITICAL };

enum health_status health_evaluate(struct pool_telemetry *t, const struct cfg *cfg, int64_t now, char *reason,
				   size_t len);

const char *health_status_name(enum health_status s);

#endif
