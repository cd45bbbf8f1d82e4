/*
 * series: one latency histogram over time — since start, and over sliding
 * windows of about 1, 5 and 15 minutes built from 10-second slots.
 *
 * Values go into the current slot only (one dense increment). Every 10 s
 * the slot is added to the since-start histogram and compacted into a ring
 * of the last six; every minute those six are merged into a ring of the
 * last fifteen minutes. A window is read by adding up slots:
 *
 *   1m   the current 10-second slot and the 5 before it   (50–60 s)
 *   5m   the current minute so far and the 4 before it     (4–5 min)
 *   15m  the current minute so far and the 14 before it    (14–15 min)
 *   all  everything since start
 */
#ifndef PGPULSE_SERIES_H
#define PGPULSE_SERIES_H

#include <stddef.h>
#include <stdint.h>

#include "hist.h"

#define SERIES_SLOT_USEC 10000000LL
#define SERIES_TENS 6
#define SERIES_MINUTES 15

enum series_window { WINDOW_1M = 0, WINDOW_5M, WINDOW_15M, WINDOW_ALL, WINDOW_COUNT };

struct series {
	struct hist cur;                          /* the 10-second slot being filled */
	struct hist_sparse tens[SERIES_TENS];     /* ring: finished 10-second slots */
	struct hist_sparse minutes[SERIES_MINUTES]; /* ring: finished minutes */
	int tens_head;                            /* where the next finished slot goes */
	int minutes_head;
	int tens_in_minute;                       /* finished slots since the last minute boundary */
	int64_t slot_start;                       /* monotonic usec, a multiple of SERIES_SLOT_USEC */
	struct hist_acc all;                      /* finished slots since start; add cur to read */
};

/* a series starting at time now */
void series_init(struct series *s, int64_t now);
void series_free(struct series *s);

/* one dense increment: finished slots are added to the since-start histogram when they close */
static inline void series_record(struct series *s, uint64_t v)
{
	hist_record(&s->cur, v);
}

/* close the slots that ended by now (the janitor calls this) */
void series_rotate(struct series *s, int64_t now);

/* add the window's values to acc */
void series_read(const struct series *s, enum series_window w, struct hist_acc *acc);

/* heap bytes held by the compacted slots (the struct itself aside) */
size_t series_heap_bytes(const struct series *s);

/* "1m", "5m", "15m", "all"; -1 if none of these */
int series_window_by_name(const char *name);
const char *series_window_name(enum series_window w);

#endif
