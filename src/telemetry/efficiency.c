/*
 * efficiency: time-weighted pool levels in 10-second slots (see
 * include/efficiency.h). Every change is O(1): the elapsed time times the
 * old levels is added to the current slot.
 */
#include "efficiency.h"

#include <string.h>

void eff_init(struct efficiency *e, int64_t now)
{
	memset(e, 0, sizeof(*e));
	e->slot_start = now - now % SERIES_SLOT_USEC;
	e->since = now;
}

static void add_counters(struct eff_counters *dst, const struct eff_counters *src)
{
	dst->span_us += src->span_us;
	dst->open_us += src->open_us;
	dst->busy_us += src->busy_us;
	dst->saturated_us += src->saturated_us;
	dst->overflow_us += src->overflow_us;
	dst->reserve_us += src->reserve_us;
	dst->assignments += src->assignments;
	dst->reused += src->reused;
	dst->opened += src->opened;
	dst->closed += src->closed;
	for (int i = 0; i < EFF_DEMAND_LEVELS; i++)
		dst->demand_us[i] += src->demand_us[i];
}

/* time dt spent at the current levels, into one set of counters */
static void account(const struct efficiency *e, struct eff_counters *c, int64_t dt)
{
	c->span_us += dt;
	c->open_us += dt * e->open;
	c->busy_us += dt * e->busy;
	if (e->waiting > 0)
		c->saturated_us += dt;
	if (e->servers > e->base)
		c->overflow_us += dt;
	if (e->servers > e->base + e->overflow)
		c->reserve_us += dt;
	int demand = e->busy + e->waiting;
	c->demand_us[demand < EFF_DEMAND_LEVELS - 1 ? demand : EFF_DEMAND_LEVELS - 1] += dt;
}

void eff_account(struct efficiency *e, int64_t now)
{
	account(e, &e->cur, now - e->since);
	e->since = now;
}

void eff_note_assignment(struct efficiency *e, bool reused)
{
	e->cur.assignments++;
	if (reused)
		e->cur.reused++;
}

void eff_note_opened(struct efficiency *e)
{
	e->cur.opened++;
}

void eff_note_closed(struct efficiency *e)
{
	e->cur.closed++;
}

static const struct eff_counters *tens_back(const struct efficiency *e, int back)
{
	return &e->tens[(e->tens_head - 1 - back + 2 * SERIES_TENS) % SERIES_TENS];
}

static const struct eff_counters *minutes_back(const struct efficiency *e, int back)
{
	return &e->minutes[(e->minutes_head - 1 - back + 2 * SERIES_MINUTES) % SERIES_MINUTES];
}

static void close_slot(struct efficiency *e)
{
	int64_t end = e->slot_start + SERIES_SLOT_USEC;
	/* the time up to the slot's end belongs to it */
	if (e->since < end) {
		account(e, &e->cur, end - e->since);
		e->since = end;
	}
	/* the since-start counters take each finished slot */
	add_counters(&e->all, &e->cur);
	e->tens[e->tens_head] = e->cur;
	memset(&e->cur, 0, sizeof(e->cur));
	e->tens_head = (e->tens_head + 1) % SERIES_TENS;
	e->slot_start = end;
	if ((e->slot_start / SERIES_SLOT_USEC) % SERIES_TENS == 0) {
		struct eff_counters minute;
		memset(&minute, 0, sizeof(minute));
		for (int i = 0; i < SERIES_TENS; i++)
			add_counters(&minute, tens_back(e, i));
		e->minutes[e->minutes_head] = minute;
		e->minutes_head = (e->minutes_head + 1) % SERIES_MINUTES;
		e->tens_in_minute = 0;
	} else {
		e->tens_in_minute++;
	}
}

void eff_rotate(struct efficiency *e, int64_t now)
{
	int limit = SERIES_TENS * (SERIES_MINUTES + 1);
	while (now >= e->slot_start + SERIES_SLOT_USEC && limit-- > 0)
		close_slot(e);
	if (now >= e->slot_start + SERIES_SLOT_USEC) {
		e->slot_start = now - now % SERIES_SLOT_USEC;
		e->tens_in_minute = (int)((e->slot_start / SERIES_SLOT_USEC) % SERIES_TENS);
		if (e->since < e->slot_start)
			e->since = e->slot_start;
	}
}

void eff_read(struct efficiency *e, enum series_window w, int64_t now, struct eff_counters *out)
{
	eff_advance(e, now);
	memset(out, 0, sizeof(*out));
	switch (w) {
	case WINDOW_ALL:
		*out = e->all;
		add_counters(out, &e->cur);
		return;
	case WINDOW_1M:
		add_counters(out, &e->cur);
		for (int i = 0; i < SERIES_TENS - 1; i++)
			add_counters(out, tens_back(e, i));
		return;
	case WINDOW_5M:
	case WINDOW_15M: {
		int minutes = w == WINDOW_5M ? 4 : 14;
		add_counters(out, &e->cur);
		for (int i = 0; i < e->tens_in_minute; i++)
			add_counters(out, tens_back(e, i));
		for (int i = 0; i < minutes; i++)
			add_counters(out, minutes_back(e, i));
		return;
	}
	case WINDOW_COUNT:
		break;
	}
}

int eff_suggested_size(const struct eff_counters *c)
{
	if (c->span_us <= 0)
		return 0;
	/* the level at or below which the demand stayed for 99 % of the time */
	int64_t allowed_above = c->span_us / 100;
	int64_t above = c->span_us;
	for (int level = 0; level < EFF_DEMAND_LEVELS; level++) {
		above -= c->demand_us[level];
		if (above <= allowed_above)
			return level;
	}
	return EFF_DEMAND_LEVELS - 1;
}
