/*
 * control: PAUSE, RESUME, SUSPEND, DISABLE, ENABLE, RECONNECT, KILL,
 * KILL_CLIENT and WAIT_CLOSE.
 *
 * Pausing never interrupts work: a paused pool hands no server to a client,
 * so running transactions finish and new ones wait. PAUSE answers when no
 * server of the paused databases serves a client any more, and then closes
 * their idle servers — after that, PostgreSQL can be restarted underneath.
 */
#include "control.h"

#include <stdio.h>
#include <string.h>

#include "auth_query.h"
#include "client.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "stream.h"
#include "worker.h"

bool control_is_suspended(void)
{
	return worker->suspended;
}

static bool pool_matches(const struct pool *p, const struct pool_db *db)
{
	return db ? p->db == db : true;
}

static int busy_servers(const struct pool_db *db)
{
	int n = 0;
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (pool_matches(p, db))
			n += list_count(&p->active_servers) + list_count(&p->used_servers) + list_count(&p->new_servers) +
			     list_count(&p->canceling_servers);
	}
	return n;
}

static void close_idle_of(const struct pool_db *db, const char *reason)
{
	struct list *pos;
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (pool_matches(p, db))
			pool_close_idle_servers(p, reason);
	}
}

static void answer(struct client *admin, const char *tag)
{
	struct pktbuf *out = stream_out(&admin->st);
	proto_put_command_complete(out, tag);
	proto_put_ready(out, 'I');
	if (stream_send_out(&admin->st))
		stream_resume(&admin->st);
}

static void wait_for(struct client *admin, enum control_wait kind, struct pool_db *db)
{
	admin->admin_wait = kind;
	admin->admin_wait_db = db;
}

/* ---- PAUSE / RESUME ---- */

static bool pause_done(const struct pool_db *db)
{
	if (busy_servers(db) > 0)
		return false;
	close_idle_of(db, "PAUSE: disconnecting from the server");
	return true;
}

bool control_pause(struct client *admin, struct pool_db *db)
{
	if (db)
		db->paused = true;
	else
		worker->paused_all = true;
	log_info("PAUSE %s: new transactions wait; running ones finish", db ? db->name : "(all databases)");
	if (pause_done(db))
		return true;
	if (admin)
		wait_for(admin, CW_PAUSE, db);
	return false;
}

/* waiting clients of a resumed pool get servers now, not at the next tick */
static void serve_waiting_clients(struct pool *p)
{
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &p->idle_servers)
	{
		if (list_empty(&p->waiting_clients) && auth_query_waiting(p) == 0)
			break;
		pool_server_ready(container_of(pos, struct server, node));
	}
	pool_launch_if_needed(p);
}

void control_resume(struct pool_db *db)
{
	if (db) {
		db->paused = false;
	} else {
		struct list *pos;
		list_for_each(pos, &worker->databases)
			container_of(pos, struct pool_db, node)->paused = false;
		if (worker->shutdown != SHUTDOWN_WAIT_SERVERS)
			worker->paused_all = false;
		if (worker->suspended) {
			worker->suspended = false;
			stream_set_suspended(&worker->streams, false);
			listener_set_accepting(true);
		}
	}
	log_info("RESUME %s", db ? db->name : "(all databases)");
	struct list *pos, *tmp;
	list_for_each_safe(pos, tmp, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (pool_matches(p, db))
			serve_waiting_clients(p);
	}
}

/* ---- SUSPEND ---- */

static bool all_flushed(void)
{
	return stream_pending_count(&worker->streams) == 0;
}

bool control_suspend(struct client *admin)
{
	if (!worker->suspended) {
		worker->suspended = true;
		worker->suspend_started = now_usec();
		/* the console that asked must still hear RESUME */
		admin->st.never_suspend = true;
		stream_set_suspended(&worker->streams, true);
		listener_set_accepting(false);
		log_info("SUSPEND: no socket is read until RESUME");
	}
	if (all_flushed())
		return true;
	wait_for(admin, CW_SUSPEND, NULL);
	return false;
}

/* ---- DISABLE / ENABLE / RECONNECT / KILL ---- */

void control_set_disabled(struct pool_db *db, bool disabled)
{
	db->disabled = disabled;
	log_info("%s %s: %s", disabled ? "DISABLE" : "ENABLE", db->name,
		 disabled ? "new client connections are refused" : "new client connections are accepted");
}

void control_reconnect(struct pool_db *db)
{
	struct list *pos, *sp;
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (!pool_matches(p, db))
			continue;
		struct list *lists[] = { &p->active_servers, &p->used_servers, &p->new_servers, &p->canceling_servers };
		for (int i = 0; i < 4; i++)
			list_for_each(sp, lists[i])
			{
				struct server *s = container_of(sp, struct server, node);
				s->close_when_released = true;
				s->close_needed = true;
			}
		pool_close_idle_servers(p, "RECONNECT");
	}
	log_info("RECONNECT %s: servers close as they are released", db ? db->name : "(all databases)");
}

void control_kill(struct pool_db *db)
{
	if (db)
		db->paused = true;
	else
		worker->paused_all = true;
	struct list *pos, *tmp, *cp, *ctmp;
	list_for_each_safe(pos, tmp, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (!pool_matches(p, db))
			continue;
		struct list *clists[] = { &p->active_clients, &p->waiting_clients };
		for (int i = 0; i < 2; i++)
			list_for_each_safe(cp, ctmp, clists[i])
				client_fatal(container_of(cp, struct client, node), "57P01",
					     "terminating connection due to administrator command (KILL)");
		struct list *slists[] = { &p->active_servers, &p->idle_servers, &p->used_servers, &p->new_servers,
					  &p->canceling_servers };
		for (int i = 0; i < 5; i++)
			list_for_each_safe(cp, ctmp, slists[i])
				server_close(container_of(cp, struct server, node), "KILL");
	}
	log_info("KILL %s: every connection closed; new clients wait until RESUME", db ? db->name : "(all databases)");
}

static struct client *find_client(uint64_t id)
{
	struct list *pos, *cp;
	list_for_each(cp, &worker->login_clients)
	{
		struct client *c = container_of(cp, struct client, node);
		if (c->id == id)
			return c;
	}
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		struct list *lists[] = { &p->active_clients, &p->waiting_clients };
		for (int i = 0; i < 2; i++)
			list_for_each(cp, lists[i])
			{
				struct client *c = container_of(cp, struct client, node);
				if (c->id == id)
					return c;
			}
	}
	return NULL;
}

bool control_kill_client(uint64_t id)
{
	struct client *c = find_client(id);
	if (!c)
		return false;
	log_info("KILL_CLIENT %llu", (unsigned long long)id);
	client_fatal(c, "57P01", "terminating connection due to administrator command (KILL_CLIENT)");
	return true;
}

/* ---- WAIT_CLOSE ---- */

static int servers_to_close(const struct pool_db *db)
{
	int n = 0;
	struct list *pos, *sp;
	list_for_each(pos, &worker->pools)
	{
		struct pool *p = container_of(pos, struct pool, node);
		if (!pool_matches(p, db))
			continue;
		struct list *lists[] = { &p->active_servers, &p->idle_servers, &p->used_servers, &p->new_servers,
					 &p->canceling_servers };
		for (int i = 0; i < 5; i++)
			list_for_each(sp, lists[i])
			{
				struct server *s = container_of(sp, struct server, node);
				if (s->close_when_released || s->generation != p->db->generation)
					n++;
			}
	}
	return n;
}

bool control_wait_close(struct client *admin, struct pool_db *db)
{
	if (servers_to_close(db) == 0)
		return true;
	wait_for(admin, CW_WAIT_CLOSE, db);
	return false;
}

/* ---- answering the waiting ---- */

static bool console_waits_for(enum control_wait kind)
{
	struct list *pos;
	list_for_each(pos, &worker->login_clients)
	{
		const struct client *c = container_of(pos, struct client, node);
		if (c->is_admin && c->admin_wait == (int)kind)
			return true;
	}
	return false;
}

/*
 * A SUSPEND that has waited suspend_timeout drops the connections still
 * holding unflushed data. That closes clients, consoles among them, so it
 * runs before control_poll walks the consoles, never inside the walk.
 */
static void drop_unflushed_past_suspend_timeout(int64_t now)
{
	if (!worker->suspended || all_flushed() || now - worker->suspend_started < worker->cfg->suspend_timeout ||
	    !console_waits_for(CW_SUSPEND))
		return;
	int dropped = stream_close_unflushed(&worker->streams);
	log_warning("SUSPEND: suspend_timeout passed; %d connection(s) with unflushed data dropped", dropped);
}

/* has a console's wait ended; closes nothing but idle servers (PAUSE), so a walk over consoles stays valid */
static bool wait_is_over(struct client *c)
{
	switch (c->admin_wait) {
	case CW_PAUSE:
		return pause_done(c->admin_wait_db);
	case CW_WAIT_CLOSE:
		return servers_to_close(c->admin_wait_db) == 0;
	case CW_SUSPEND:
		return all_flushed();
	case CW_NONE:
		break;
	}
	return true;
}

static const char *wait_tag(enum control_wait kind)
{
	switch (kind) {
	case CW_PAUSE: return "PAUSE";
	case CW_WAIT_CLOSE: return "WAIT_CLOSE";
	case CW_SUSPEND: return "SUSPEND";
	case CW_NONE: break;
	}
	return "";
}

/*
 * A paused pool serves nobody: once none of the paused database's servers
 * is busy, its idle ones are closed (so PostgreSQL can be restarted), also
 * after SIGUSR1 and for servers that finished connecting after PAUSE answered.
 */
static void close_idle_servers_of_paused_pools(void)
{
	struct list *pos;
	if (worker->shutdown != SHUTDOWN_NONE)
		return;
	list_for_each(pos, &worker->databases)
	{
		struct pool_db *db = container_of(pos, struct pool_db, node);
		if ((db->paused || worker->paused_all) && !db->is_admin && busy_servers(db) == 0)
			close_idle_of(db, "paused: disconnecting from the server");
	}
}

void control_poll(void)
{
	int64_t now = now_usec();
	struct list *pos, *tmp;
	close_idle_servers_of_paused_pools();
	drop_unflushed_past_suspend_timeout(now);
	list_for_each_safe(pos, tmp, &worker->login_clients)
	{
		struct client *c = container_of(pos, struct client, node);
		if (!c->is_admin || c->admin_wait == CW_NONE || !wait_is_over(c))
			continue;
		enum control_wait kind = c->admin_wait;
		c->admin_wait = CW_NONE;
		c->admin_wait_db = NULL;
		answer(c, wait_tag(kind));
	}
}
