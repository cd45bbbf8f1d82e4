/*
 * metrics: the Prometheus endpoint — GET /metrics in the text exposition
 * format and GET /health as JSON — served by libevent's HTTP server on the
 * worker's own event loop (metrics_addr:metrics_port; port 0 = off).
 */
#ifndef PGPULSE_METRICS_H
#define PGPULSE_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;

/* open the endpoint if metrics_port is set; false (with a reason) if it cannot listen */
bool metrics_start(char *err, size_t errlen);
void metrics_stop(void);

/* the bodies, for the endpoint and for tests */
void metrics_render(struct evbuffer *out);
/* returns whether the instance can serve a new client (200), see health.h */
bool metrics_render_health(struct evbuffer *out);

#endif
