/*
 * telemetry: what pgpulse measures about the traffic it carries — latency
 * histograms per pool for eight kinds of duration, over sliding windows.
 *
 * Durations are microseconds on CLOCK_MONOTONIC:
 *   wait     a client needs a server         -> a server is linked to it
 *   query    a request arrives from a client -> its ReadyForQuery is sent on
 *   server   the request is written to the server -> its ReadyForQuery arrives
 *   xact     a transaction's first request arrives -> the ReadyForQuery 'I' that ends it
 *   connect  a server connection attempt starts -> it is ready for queries
 *   login       the client's socket is accepted -> its hello's ReadyForQuery (login_stats.h)
 *   login_auth  its startup packet is read -> it is authenticated
 *   login_wait  it is authenticated -> its hello's ReadyForQuery
 * Totals are not recorded separately: they are the sum of the pools,
 * added up when read, so recording costs one series per event.
 */
#ifndef PGPULSE_TELEMETRY_H
#define PGPULSE_TELEMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "efficiency.h"
#include "login_stats.h"
#include "series.h"
#include "util.h"

/* new kinds go last: SHOW LATENCY lists them in this order */
enum telemetry_kind {
	TK_QUERY = 0,
	TK_XACT,
	TK_WAIT,
	TK_SERVER,
	TK_CONNECT,
	TK_LOGIN,
	TK_LOGIN_AUTH,
	TK_LOGIN_WAIT,
	TK_COUNT
};

struct pool_telemetry {
	struct series kinds[TK_COUNT];
	struct efficiency eff;
	struct login_counts logins; /* its clients' logins from server_wait on (login_stats.h) */
};

struct pool_telemetry *telemetry_new(int64_t now);
void telemetry_free(struct pool_telemetry *t);

/* is recording on (the `telemetry` setting) */
extern bool telemetry_enabled;

/*
 * The time of the events of one chain of work that happens at one instant
 * (a server released and handed to the client that waited for it), when the
 * chain's start has read the clock for all of them (telemetry_hold_clock);
 * 0: none is held, the clock is read. A clock reading costs about 50 ns here,
 * as much as a histogram record or two.
 */
extern int64_t telemetry_held_now;

static inline int64_t telemetry_now(void)
{
	return telemetry_held_now ? telemetry_held_now : now_usec();
}

/* hold the clock at now for what follows; returns what to restore afterwards */
static inline int64_t telemetry_hold_clock(int64_t now)
{
	int64_t before = telemetry_held_now;
	telemetry_held_now = now;
	return before;
}

static inline void telemetry_record(struct pool_telemetry *t, enum telemetry_kind k, int64_t usec)
{
	if (telemetry_enabled && t)
		series_record(&t->kinds[k], usec > 0 ? (uint64_t)usec : 0);
}

/*
 * A pool level changed (servers, open, busy, waiting): the time at the old
 * level is accounted first. Levels are kept even with recording off, so
 * they are right when it is turned back on.
 */
static inline void telemetry_level(struct pool_telemetry *t, int *level, int delta)
{
	if (telemetry_enabled)
		eff_advance(&t->eff, telemetry_now());
	*level += delta;
}

/* the same, when the caller has read the clock already */
static inline void telemetry_level_at(struct pool_telemetry *t, int *level, int delta, int64_t now)
{
	if (telemetry_enabled)
		eff_advance(&t->eff, now);
	*level += delta;
}

/* recording was turned back on: the time while it was off is not counted */
void telemetry_restart_clock(struct pool_telemetry *t, int64_t now);

/* close finished slots of every series (the janitor, every sweep) */
void telemetry_rotate(struct pool_telemetry *t, int64_t now);

/* bytes held: the fixed part and the compacted slots */
size_t telemetry_bytes(const struct pool_telemetry *t);

const char *telemetry_kind_name(enum telemetry_kind k);

#endif
