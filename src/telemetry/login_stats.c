/*
 * login_stats: a login's stage and how it ended (see include/login_stats.h).
 *
 * A login moves through its stages with one call per event, and every call
 * moves it out of the in-flight count of the stage it was in: so each login
 * is in flight in exactly one stage until it ends, and ends exactly once
 * (LOGIN_DONE makes every later call a no-op). The pool's counts follow the
 * instance's from the moment the login has a pool, server_wait.
 */
#include "login_stats.h"

#include "client.h"
#include "pool.h"
#include "telemetry.h"
#include "util.h"
#include "worker.h"

const char *login_stage_name(enum login_stage s)
{
	static const char *const names[LOGIN_STAGES] = { "before_startup", "auth", "server_wait" };
	return s >= 0 && s < LOGIN_STAGES ? names[s] : "?";
}

int64_t login_counts_in_flight(const struct login_counts *lc)
{
	int64_t n = 0;
	for (int s = 0; s < LOGIN_STAGES; s++)
		n += lc->in_flight[s];
	return n;
}

uint64_t login_counts_abandoned(const struct login_counts *lc)
{
	uint64_t n = 0;
	for (int s = 0; s < LOGIN_STAGES; s++)
		n += lc->abandoned[s];
	return n;
}

/* the pool's counts, for a login that has one (server_wait) */
static struct login_counts *pool_counts(const struct client *c)
{
	return c->login_stage == LOGIN_SERVER_WAIT && c->pool ? &c->pool->tm->logins : NULL;
}

static void enter_stage(struct client *c, enum login_stage to)
{
	struct login_counts *pc = pool_counts(c);
	worker->logins.in_flight[c->login_stage]--;
	if (pc)
		pc->in_flight[c->login_stage]--;
	c->login_stage = (uint8_t)to;
	if (to == LOGIN_DONE)
		return;
	worker->logins.in_flight[to]++;
	pc = pool_counts(c);
	if (pc)
		pc->in_flight[to]++;
}

/* usec since the login began, as an offset that saturates after 71 minutes */
static uint32_t usec_into_login(const struct client *c, int64_t now)
{
	int64_t d = now - c->login_start;
	return d <= 0 ? 0 : d >= (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

bool login_stats_unfinished(const struct client *c)
{
	return c->login_stage != LOGIN_DONE;
}

void login_stats_accepted(struct client *c, int64_t now)
{
	c->login_start = now;
	c->login_stage = LOGIN_BEFORE_STARTUP;
	worker->logins.in_flight[LOGIN_BEFORE_STARTUP]++;
}

void login_stats_startup_read(struct client *c)
{
	if (c->login_stage != LOGIN_BEFORE_STARTUP)
		return;
	c->auth_began = usec_into_login(c, now_usec());
	enter_stage(c, LOGIN_AUTH);
}

void login_stats_not_a_login(struct client *c)
{
	if (c->login_stage == LOGIN_DONE)
		return;
	enter_stage(c, LOGIN_DONE);
}

void login_stats_authenticated(struct client *c)
{
	if (c->login_stage != LOGIN_AUTH)
		return;
	c->auth_ended = usec_into_login(c, now_usec());
	enter_stage(c, LOGIN_SERVER_WAIT);
}

void login_stats_completed(struct client *c, int64_t now)
{
	if (c->login_stage != LOGIN_SERVER_WAIT)
		return;
	struct login_counts *pc = pool_counts(c);
	int64_t total = now - c->login_start;
	worker->logins.completed++;
	if (pc) {
		pc->completed++;
		telemetry_record(c->pool->tm, TK_LOGIN, total);
		telemetry_record(c->pool->tm, TK_LOGIN_AUTH,
				 (int64_t)c->auth_ended - (int64_t)c->auth_began);
		telemetry_record(c->pool->tm, TK_LOGIN_WAIT, total - (int64_t)c->auth_ended);
	}
	enter_stage(c, LOGIN_DONE);
}

static void end_unfinished(struct client *c, bool by_client)
{
	if (c->login_stage == LOGIN_DONE)
		return;
	struct login_counts *pc = pool_counts(c);
	if (by_client) {
		worker->logins.abandoned[c->login_stage]++;
		if (pc)
			pc->abandoned[c->login_stage]++;
	} else {
		worker->logins.failed++;
		if (pc)
			pc->failed++;
	}
	enter_stage(c, LOGIN_DONE);
}

void login_stats_abandoned(struct client *c)
{
	end_unfinished(c, true);
}

void login_stats_closed(struct client *c)
{
	end_unfinished(c, false);
}
