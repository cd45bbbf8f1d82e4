/*
 * notify: the service manager's view of pgpulse.
 *
 * sd_notify() sends one datagram to $NOTIFY_SOCKET and does nothing when the
 * variable is unset, so the calls below cost nothing outside systemd. The
 * STATUS= line is what `systemctl status pgpulse` shows under the unit's
 * name: the figures an operator checks first, without the admin console.
 */
#include "notify.h"

#include <stdio.h>
#include <time.h>

#include "config.h"
#include "pool.h"
#include "util.h"
#include "worker.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

static void send_state(const char *state)
{
	sd_notify(0, state);
}
#else
static void send_state(const char *state)
{
	(void)state;
}
#endif

static int64_t g_last_status;

/* "STATUS=..." with clients, waiting clients and servers over every pool */
static void format_status(char *buf, size_t len)
{
	int waiting = 0, active_servers = 0, pools = 0;
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		const struct pool *p = container_of(pos, struct pool, node);
		pools++;
		waiting += list_count(&p->waiting_clients);
		active_servers += list_count(&p->active_servers);
	}
	snprintf(buf, len, "STATUS=%d clients (%d waiting), %d servers (%d active), %d pools%s",
		 worker->client_count, waiting, worker->server_count, active_servers, pools,
		 worker->shutdown != SHUTDOWN_NONE ? "; shutting down" : "");
}

static void send_with_status(const char *state)
{
	char status[256], msg[320];
	format_status(status, sizeof(status));
	snprintf(msg, sizeof(msg), "%s%s%s", state, *state ? "\n" : "", status);
	send_state(msg);
	g_last_status = now_usec();
}

void notify_ready(void)
{
	send_with_status("READY=1");
}

void notify_reloading(void)
{
	/* systemd (Type=notify-reload) matches the reload by this stamp */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	char msg[96];
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%lld",
		 (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000);
	send_state(msg);
}

void notify_stopping(void)
{
	send_with_status("STOPPING=1");
}

void notify_status_tick(int64_t now)
{
	if (now - g_last_status < NOTIFY_STATUS_EVERY_USEC)
		return;
	send_with_status("");
}
