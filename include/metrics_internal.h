/*
 * metrics_internal: the exposition helpers the parts of /metrics share
 * (src/telemetry/metrics.c renders the instance and its pools and serves
 * the endpoint; metrics_hosts.c renders the per-host series). Other
 * modules use metrics.h.
 */
#ifndef PGPULSE_METRICS_INTERNAL_H
#define PGPULSE_METRICS_INTERNAL_H

#include <stdint.h>

struct evbuffer;
struct hist_acc;

/* a label's value with \, " and newline escaped */
void metrics_put_label_value(struct evbuffer *out, const char *v);
/* a family's # HELP and # TYPE lines */
void metrics_put_header(struct evbuffer *out, const char *name, const char *type, const char *help);
/* "} value" and the line's end, after a sample's labels */
void metrics_put_sample_end(struct evbuffer *out, double value);

/*
 * The metrics_buckets bounds (seconds; at most max) and each as written in
 * the setting, so that le shows what was configured; their number.
 */
int metrics_parse_buckets(const char *list, double *bounds, char (*text)[32], int max);
/* for each bound, how many fine histogram buckets lie under it */
void metrics_bucket_limits(const double *bounds, int nbounds, uint32_t *limit);
/*
 * A histogram's _bucket, _sum and _count lines, with scratch holding
 * "<name>_bucket{<labels>" (the labels escaped once for all its lines).
 */
void metrics_put_histogram_lines(struct evbuffer *out, struct evbuffer *scratch, const char *name,
				 const struct hist_acc *a, const uint32_t *limit,
				 char (*bound_text)[32], int nbounds);

/* metrics_hosts.c: the pgpulse_host_* series, label host="name:port" */
void metrics_render_hosts(struct evbuffer *out);

#endif
