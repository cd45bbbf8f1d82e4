/*
 * efficiency: how well a pool's server connections are used, over the same
 * windows as the latency series (1m, 5m, 15m, all).
 *
 * The pool reports every change of three levels — servers open, servers
 * linked to a client (busy), clients waiting — and the time spent at each
 * level is integrated exactly, event by event, into 10-second slots:
 *   utilization   busy time / open time
 *   saturation    share of the time with at least one client waiting
 *   overflow, reserve   share of the time with servers open beyond the
 *                 base size (resp. beyond base + overflow)
 *   demand        time spent at each level of busy + waiting: the
 *                 concurrency the load asked for, from which the suggested
 *                 pool size is read
 * plus counts of assignments (and how many reused an open server) and of
 * servers opened and closed.
 */
#ifndef PGPULSE_EFFICIENCY_H
#define PGPULSE_EFFICIENCY_H

#include <stdint.h>

#include "series.h"

#define EFF_DEMAND_LEVELS 65 /* demand 0..63, and 64 or more */

struct eff_counters {
	int64_t span_us;       /* time covered */
	int64_t open_us;       /* sum over time of servers open */
	int64_t busy_us;       /* ... of servers linked to a client */
	int64_t saturated_us;  /* time with a client waiting */
	int64_t overflow_us;   /* time with servers beyond the base size */
	int64_t reserve_us;    /* time with servers beyond base + overflow */
	uint64_t assignments;
	uint64_t reused;       /* assignments of a server that had served before */
	uint64_t opened;
	uint64_t closed;
	int64_t demand_us[EFF_DEMAND_LEVELS];
};

struct efficiency {
	struct eff_counters cur;
	struct eff_counters tens[SERIES_TENS];
	struct eff_counters minutes[SERIES_MINUTES];
	struct eff_counters all;   /* finished slots since start; add cur to read */
	int tens_head, minutes_head, tens_in_minute;
	int64_t slot_start;
	/* the levels in force since `since` */
	int64_t since;
	int open, busy, waiting, servers;
	int base, overflow; /* sizes in force, for tier time */
};

void eff_init(struct efficiency *e, int64_t now);

/* account the time since the last change at the old levels; call before changing a level */
void eff_account(struct efficiency *e, int64_t now);
static inline void eff_advance(struct efficiency *e, int64_t now)
{
	/* a change in the microsecond of the last (a wait ending, a server linked) adds nothing */
	if (now > e->since)
		eff_account(e, now);
}

static inline void eff_change(struct efficiency *e, int64_t now, int *level, int delta)
{
	eff_advance(e, now);
	*level += delta;
}

void eff_note_assignment(struct efficiency *e, bool reused);
void eff_note_opened(struct efficiency *e);
void eff_note_closed(struct efficiency *e);

void eff_rotate(struct efficiency *e, int64_t now);

/* the window's counters (the current slot's time counted up to now) */
void eff_read(struct efficiency *e, enum series_window w, int64_t now, struct eff_counters *out);

/* the smallest pool size that covered the demand 99 % of the window's time */
int eff_suggested_size(const struct eff_counters *c);

#endif
