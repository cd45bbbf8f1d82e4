/*
 * metrics_hosts: the per-host series of /metrics — SHOW HOSTS' figures for
 * each PostgreSQL host the [databases] entries name, with the label
 * host="name:port" (hosts_label).
 *
 * A host's series sit beside the pools' rather than multiplying them: its
 * servers are counted over every pool, its latency histogram holds every
 * pool's requests that its servers served (host_stats), so a few series
 * per host are the whole cost (doc/telemetry.md "Series per host").
 */
#include "metrics_internal.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "hist.h"
#include "host_stats.h"
#include "hosts.h"
#include "pool.h"
#include "series.h"
#include "server.h"
#include "util.h"
#include "worker.h"

/* the hosts SHOW HOSTS lists: some database entry refers to them */
static bool host_listed(const struct host *h)
{
	return h->refs > 0;
}

static void put_host_labels(struct evbuffer *out, const struct host *h)
{
	char label[512];
	evbuffer_add(out, "host=\"", 6);
	metrics_put_label_value(out, hosts_label(h, label, sizeof(label)));
	evbuffer_add(out, "\"", 1);
}

static void put_host_sample(struct evbuffer *out, const char *name, const struct host *h,
			    const char *extra, double value)
{
	evbuffer_add_printf(out, "%s{", name);
	put_host_labels(out, h);
	if (extra)
		evbuffer_add_printf(out, ",%s", extra);
	metrics_put_sample_end(out, value);
}

static int servers_on_host(const struct list *servers, const struct host *h)
{
	int n = 0;
	const struct list *pos;
	list_for_each(pos, servers)
	{
		n += container_of(pos, struct server, node)->host == h;
	}
	return n;
}

/* the host's servers on one list of every pool (pool_servers' states); hosts are few */
static int host_servers(const struct host *h, size_t list_offset)
{
	int n = 0;
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		n += servers_on_host((const struct list *)((const char *)p + list_offset), h);
	}
	return n;
}

/* a standby's lag as read by the last probe; none for a primary or before it was measured */
static bool host_lag_known(const struct host *h)
{
	return h->role == HOST_ROLE_STANDBY && h->lag_checked > 0;
}

/* one family's value for a host; false: the host has no sample of it now */
typedef bool (*host_reading)(const struct host *h, double *v);

static bool read_up(const struct host *h, double *v)
{
	*v = h->down ? 0 : 1;
	return true;
}

static bool read_in_recovery(const struct host *h, double *v)
{
	*v = h->role == HOST_ROLE_STANDBY;
	return h->role != HOST_ROLE_UNKNOWN;
}

static bool read_lagging(const struct host *h, double *v)
{
	*v = h->lagging;
	return true;
}

static bool read_lag_seconds(const struct host *h, double *v)
{
	*v = (double)h->lag_usec / 1e6;
	return host_lag_known(h) && h->lag_usec >= 0;
}

static bool read_lag_bytes(const struct host *h, double *v)
{
	*v = (double)h->lag_bytes;
	return host_lag_known(h) && h->lag_bytes >= 0;
}

static bool read_role_changes(const struct host *h, double *v)
{
	*v = (double)h->role_changes;
	return true;
}

static const struct {
	const char *name;
	const char *type;
	const char *help;
	host_reading read;
} readings[] = {
	{ "pgpulse_host_up", "gauge",
	  "0 while the host is down (its last connection attempt failed, none succeeded since), "
	  "else 1.",
	  read_up },
	{ "pgpulse_host_in_recovery", "gauge",
	  "1 for a standby, 0 for a primary; absent while the host's role is unknown.",
	  read_in_recovery },
	{ "pgpulse_host_lagging", "gauge",
	  "1 while a standby is past replica_max_lag or replica_max_lag_bytes: it gets no new "
	  "work.",
	  read_lagging },
	{ "pgpulse_host_lag_seconds", "gauge",
	  "A standby's replay lag at the last probe; absent for a primary and while not measured.",
	  read_lag_seconds },
	{ "pgpulse_host_lag_bytes", "gauge",
	  "Bytes of WAL a standby's replay is behind the newest primary position; absent likewise.",
	  read_lag_bytes },
	{ "pgpulse_host_role_changes_total", "counter",
	  "Times the host's role read differed from the one before (a promotion).",
	  read_role_changes },
};

static void render_readings(struct evbuffer *out)
{
	struct list *pos;
	double v;
	for (size_t i = 0; i < sizeof(readings) / sizeof(readings[0]); i++) {
		metrics_put_header(out, readings[i].name, readings[i].type, readings[i].help);
		list_for_each(pos, &worker->hosts)
		{
			const struct host *h = container_of(pos, struct host, node);
			if (host_listed(h) && readings[i].read(h, &v))
				put_host_sample(out, readings[i].name, h, NULL, v);
		}
	}
}

static void render_servers(struct evbuffer *out)
{
	static const struct {
		const char *label;
		size_t offset;
	} states[] = {
		{ "state=\"active\"", offsetof(struct pool, active_servers) },
		{ "state=\"idle\"", offsetof(struct pool, idle_servers) },
		{ "state=\"tested\"", offsetof(struct pool, used_servers) },
		{ "state=\"login\"", offsetof(struct pool, new_servers) },
	};
	struct list *pos;
	metrics_put_header(out, "pgpulse_host_servers", "gauge",
			   "Server connections to the host over every pool, by state (as "
			   "pgpulse_pool_servers).");
	list_for_each(pos, &worker->hosts)
	{
		const struct host *h = container_of(pos, struct host, node);
		if (!host_listed(h))
			continue;
		for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
			put_host_sample(out, "pgpulse_host_servers", h, states[i].label,
					host_servers(h, states[i].offset));
	}
}

static void render_histogram(struct evbuffer *out)
{
	static struct hist_acc acc; /* 14 kB, one worker thread */
	const char *name = "pgpulse_host_query_duration_seconds";
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
			   "pgpulse_query_duration_seconds of the requests served on the host's "
			   "servers, every pool's.");
	list_for_each(pos, &worker->hosts)
	{
		const struct host *h = container_of(pos, struct host, node);
		if (!host_listed(h))
			continue;
		hist_acc_reset(&acc);
		if (h->tm) /* made at the host's first request: none yet, an empty histogram */
			series_read(&h->tm->query, WINDOW_ALL, &acc);
		evbuffer_drain(scratch, evbuffer_get_length(scratch));
		evbuffer_add_printf(scratch, "%s_bucket{", name);
		put_host_labels(scratch, h);
		metrics_put_histogram_lines(out, scratch, name, &acc, limit, bound_text, nbounds);
	}
	evbuffer_free(scratch);
}

void metrics_render_hosts(struct evbuffer *out)
{
	render_readings(out);
	render_servers(out);
	render_histogram(out);
}
