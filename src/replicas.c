/*
 * replicas: the janitor's turn for the hosts (hosts.h) — what follows
 * from what the servers learned about roles and lag.
 *
 * A role change (a promotion) closes the servers of entries the host no
 * longer suits; each host with servers is probed every
 * replica_check_period on one of its idle servers (JOB_PROBE); a pool
 * whose clients wait sheds idle servers on lagging hosts to make room;
 * prefer-standby leaves the primary once a standby suits again. All of it
 * runs on the janitor's tick: the assignment path only tests a host's
 * suits_mask (pool.c).
 */
#include "replicas.h"

#include "config.h"
#include "host_stats.h"
#include "hosts.h"
#include "pool.h"
#include "server.h"
#include "util.h"
#include "worker.h"

static bool server_fits(const struct server *s)
{
	return !s->host || hosts_fits(s->host, s->pool->db->tsa);
}

/*
 * A host's role changed: servers of entries it no longer suits go, idle
 * ones now and linked ones when released; a lagging host's are kept for
 * its next probe. Rare (a promotion), so a walk over every pool is fine.
 */
static void close_servers_of_changed_host(struct host *h)
{
	struct list *pp, *pos, *tmp;
	list_for_each(pp, &worker->pools)
	{
		struct pool *p = container_of(pp, struct pool, node);
		if (p->db->is_admin || hosts_fits(h, p->db->tsa) || h->lagging)
			continue;
		struct list *busy[] = { &p->active_servers, &p->used_servers, &p->canceling_servers };
		for (size_t i = 0; i < sizeof(busy) / sizeof(busy[0]); i++)
			list_for_each(pos, busy[i])
			{
				struct server *s = container_of(pos, struct server, node);
				if (s->host == h)
					s->close_when_released = true;
			}
		list_for_each_safe(pos, tmp, &p->idle_servers)
		{
			struct server *s = container_of(pos, struct server, node);
			if (s->host == h)
				server_close(s, "the host's role changed: it no longer fits target_session_attrs");
		}
	}
}

/*
 * An idle server on h of a pool that may run pgpulse's own query now, or
 * NULL: the most recently used first, the one a client would get next, so
 * the probe does not wake a server that is idling towards its timeout.
 */
static struct server *idle_server_on(const struct host *h)
{
	struct list *pp, *pos;
	list_for_each(pp, &worker->pools)
	{
		struct pool *p = container_of(pp, struct pool, node);
		if (pool_paused(p) || p->for_replication)
			continue;
		for (pos = p->idle_servers.prev; pos != &p->idle_servers; pos = pos->prev) {
			struct server *s = container_of(pos, struct server, node);
			if (s->host == h && !s->close_when_released)
				return s;
		}
	}
	return NULL;
}

/* a lagging host with no server left: one is opened, by a pool of an entry that names it, for its probe */
static void open_server_for_probe(struct host *h, int64_t now)
{
	struct list *pp;
	if (h->probe_opened && now - h->probe_opened < worker->cfg->replica_check_period)
		return;
	list_for_each(pp, &worker->pools)
	{
		struct pool *p = container_of(pp, struct pool, node);
		if (p->for_replication || p->for_lookups || !pool_may_connect(p, now))
			continue;
		for (int i = 0; i < p->db->host_n; i++) {
			if (p->db->host_of[i] != h || !pool_has_room(p))
				continue;
			h->probe_opened = now;
			if (server_connect_to_host(p, i))
				p->stats.servers_opened++;
			return;
		}
	}
}

/* the cluster of every host named with h by some entry becomes h's */
static void join_cluster(const struct host *h, int from)
{
	struct list *pos;
	list_for_each(pos, &worker->hosts)
	{
		struct host *o = container_of(pos, struct host, node);
		if (o->cluster == from)
			o->cluster = h->cluster;
	}
}

/*
 * From the entries, each tick: hosts one entry names together are one
 * cluster (a primary and its standbys; byte lag is measured within it),
 * and a host is watched (probed) when an entry naming it picks hosts by
 * role: a single host with target_session_attrs = any is never probed,
 * as it was before replicas existed.
 */
static void mark_clusters_and_watched_hosts(void)
{
	int next = 0;
	struct list *pos;
	list_for_each(pos, &worker->hosts)
	{
		struct host *h = container_of(pos, struct host, node);
		h->cluster = ++next;
		h->watched = false;
	}
	list_for_each(pos, &worker->databases)
	{
		struct pool_db *db = container_of(pos, struct pool_db, node);
		if (db->is_admin || db->host_n == 0)
			continue;
		bool by_role = db->tsa != TSA_ANY || db->host_n > 1;
		for (int i = 0; i < db->host_n; i++) {
			if (db->host_of[i]->cluster != db->host_of[0]->cluster)
				join_cluster(db->host_of[0], db->host_of[i]->cluster);
			if (by_role)
				db->host_of[i]->watched = true;
		}
	}
}

/*
 * Every replica_check_period, each host with a server gets one probe, on
 * an idle server of any pool (none idle: the next tick looks again).
 */
static void probe_host_if_due(struct host *h, int64_t now)
{
	int64_t period = worker->cfg->replica_check_period;
	if (!h->watched || period <= 0 || h->probing || now - h->lag_checked < period)
		return;
	if (h->servers == 0) {
		if (h->lagging)
			open_server_for_probe(h, now);
		return;
	}
	struct server *s = idle_server_on(h);
	if (!s)
		return;
	h->probing = true;
	server_run_job(s, JOB_PROBE, SERVER_PROBE_SQL);
}

/*
 * Clients wait and the pool's idle servers are on hosts that do not suit
 * it now (lagging): those beyond the last one on their host go, making
 * room for connections to hosts that do. The last on its host stays for
 * the next probe, unless the pool is full: then it goes too, and the
 * probe opens a connection of its own (open_server_for_probe).
 */
static void close_unfit_idle_servers(struct pool *p)
{
	if (list_empty(&p->waiting_clients) || p->for_replication)
		return;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->idle_servers)
	{
		struct server *s = container_of(pos, struct server, node);
		if (!server_fits(s) && (s->host->servers > 1 || pool_is_full(p)))
			server_close(s, "its host lags: room for a server on a host that suits");
	}
}

/*
 * prefer-standby fell back to the primary while no standby fit; once one
 * does again, the idle servers on primaries go, so that new transactions
 * return to the standby rather than stay on the most recently used server.
 */
static void close_fallback_servers(struct pool *p)
{
	const struct pool_db *db = p->db;
	if (db->tsa != TSA_PREFER_STANDBY || list_empty(&p->idle_servers))
		return;
	bool standby_fits = false;
	for (int i = 0; i < db->host_n && !standby_fits; i++) {
		const struct host *h = db->host_of[i];
		standby_fits = h->role == HOST_ROLE_STANDBY && !h->down && hosts_fits(h, TSA_PREFER_STANDBY);
	}
	if (!standby_fits)
		return;
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->idle_servers)
	{
		struct server *s = container_of(pos, struct server, node);
		if (s->host && s->host->role == HOST_ROLE_PRIMARY)
			server_close(s, "prefer-standby: a standby fits again");
	}
}

void replicas_tick(int64_t now)
{
	const struct cfg *cfg = worker->cfg;
	/* no probe, no lag: a verdict from before replica_check_period = 0 does not stand */
	struct hosts_lag_limits lim = { 0, 0 };
	if (cfg->replica_check_period > 0)
		lim = (struct hosts_lag_limits){ cfg->replica_max_lag, cfg->replica_max_lag_bytes };
	mark_clusters_and_watched_hosts();
	hosts_apply_limits(lim);
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &worker->hosts)
	{
		struct host *h = container_of(pos, struct host, node);
		host_stats_rotate(h, now);
		if (h->sweep_due) {
			h->sweep_due = false;
			close_servers_of_changed_host(h);
		}
		probe_host_if_due(h, now);
	}
}

void replicas_pool_janitor(struct pool *p)
{
	close_unfit_idle_servers(p);
	close_fallback_servers(p);
}
