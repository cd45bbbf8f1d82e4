/*
 * janitor: periodic housekeeping on a libevent timer.
 *
 * Timeouts are checked by a sweep rather than a timer per connection: a
 * second's resolution is what PgBouncer's operators expect, and a sweep
 * costs nothing on the per-query path.
 */
#include "janitor.h"

#include <event2/event.h>

#include "auth_query.h"
#include "client.h"
#include "config.h"
#include "control.h"
#include "fingerprint.h"
#include "notify.h"
#include "pool.h"
#include "replicas.h"
#include "server.h"
#include "stats_log.h"
#include "util.h"
#include "worker.h"

static void close_clients_past_login_timeout(int64_t now)
{
	int64_t limit = worker->cfg->client_login_timeout;
	if (limit <= 0)
		return;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &worker->login_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		char secs[32];
		if (c->state != CL_LOGIN || now - c->request_time <= limit)
			continue;
		c->login_timed_out = true;
		client_fatal(c, "08P01", "client_login_timeout: login not finished within %s s",
			     usec_to_seconds_text(limit, secs, sizeof(secs)));
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	int64_t now = now_usec();
	if (control_is_suspended()) {
		/* nothing moves while suspended: no timeout fires, no connection opens */
		control_poll();
		return;
	}
	close_clients_past_login_timeout(now);
	auth_query_expire(now);
	server_refresh_host_names();
	replicas_tick(now);
	fp_rotate(now);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &worker->pools)
	{
		pool_janitor(container_of(pos, struct pool, node), now);
	}
	pool_free_unused_databases(now, false);
	stats_log_tick(now);
	control_poll();
	notify_status_tick(now);
	worker_check_shutdown();
}

void janitor_start(void)
{
	struct timeval tv = { 0, 200000 };
	worker->janitor = event_new(worker->base, -1, EV_PERSIST, on_tick, NULL);
	event_add(worker->janitor, &tv);
}

void janitor_stop(void)
{
	if (worker->janitor)
		event_free(worker->janitor);
	worker->janitor = NULL;
}
