/*
 * series: sliding windows from 10-second slots (see include/series.h).
 *
 * Compacting a finished slot into the sparse form is the only allocation,
 * and it happens in the janitor, never while a value is recorded.
 */
#include "series.h"

#include <string.h>
#include <strings.h>

static const char *const window_names[WINDOW_COUNT] = { "1m", "5m", "15m", "all" };

int series_window_by_name(const char *name)
{
	for (int i = 0; i < WINDOW_COUNT; i++)
		if (strcasecmp(name, window_names[i]) == 0)
			return i;
	return -1;
}

const char *series_window_name(enum series_window w)
{
	return (w >= 0 && w < WINDOW_COUNT) ? window_names[w] : "?";
}

void series_init(struct series *s, int64_t now)
{
	memset(s, 0, sizeof(*s));
	s->slot_start = now - now % SERIES_SLOT_USEC;
}

void series_free(struct series *s)
{
	for (int i = 0; i < SERIES_TENS; i++)
		hist_sparse_free(&s->tens[i]);
	for (int i = 0; i < SERIES_MINUTES; i++)
		hist_sparse_free(&s->minutes[i]);
}

/* the slot `back` places before the newest finished one (0 = newest) */
static const struct hist_sparse *tens_back(const struct series *s, int back)
{
	return &s->tens[(s->tens_head - 1 - back + 2 * SERIES_TENS) % SERIES_TENS];
}

static const struct hist_sparse *minutes_back(const struct series *s, int back)
{
	return &s->minutes[(s->minutes_head - 1 - back + 2 * SERIES_MINUTES) % SERIES_MINUTES];
}

/* the six finished 10-second slots make a finished minute */
static void close_minute(struct series *s)
{
	static struct hist scratch; /* 7 kB: kept off the stack; one worker thread */
	struct hist_acc acc;
	hist_reset(&scratch);
	hist_acc_reset(&acc);
	for (int i = 0; i < SERIES_TENS; i++)
		hist_acc_add_sparse(&acc, tens_back(s, i));
	scratch.count = acc.count;
	scratch.sum = acc.sum;
	scratch.min = acc.min;
	scratch.max = acc.max;
	for (uint32_t i = 0; i < HIST_BUCKETS; i++)
		scratch.buckets[i] = acc.buckets[i] > UINT32_MAX ? UINT32_MAX : (uint32_t)acc.buckets[i];
	struct hist_sparse *slot = &s->minutes[s->minutes_head];
	hist_sparse_free(slot);
	hist_sparse_from(slot, &scratch);
	s->minutes_head = (s->minutes_head + 1) % SERIES_MINUTES;
}

static void close_slot(struct series *s)
{
	hist_acc_add(&s->all, &s->cur);
	struct hist_sparse *slot = &s->tens[s->tens_head];
	hist_sparse_free(slot);
	hist_sparse_from(slot, &s->cur);
	hist_reset(&s->cur);
	s->tens_head = (s->tens_head + 1) % SERIES_TENS;
	s->slot_start += SERIES_SLOT_USEC;
	/* minutes are aligned to the clock too: 6 slots from a multiple of 60 s */
	if ((s->slot_start / SERIES_SLOT_USEC) % SERIES_TENS == 0) {
		close_minute(s);
		s->tens_in_minute = 0;
	} else {
		s->tens_in_minute++;
	}
}

void series_rotate(struct series *s, int64_t now)
{
	/* after a long pause (no janitor ran), at most a full history of empty slots */
	int limit = SERIES_TENS * (SERIES_MINUTES + 1);
	while (now >= s->slot_start + SERIES_SLOT_USEC && limit-- > 0)
		close_slot(s);
	if (now >= s->slot_start + SERIES_SLOT_USEC) {
		/* a jump over a long stall: the rings are empty, the minute starts where the clock is */
		s->slot_start = now - now % SERIES_SLOT_USEC;
		s->tens_in_minute = (int)((s->slot_start / SERIES_SLOT_USEC) % SERIES_TENS);
	}
}

void series_read(const struct series *s, enum series_window w, struct hist_acc *acc)
{
	switch (w) {
	case WINDOW_ALL: {
		hist_acc_add(acc, &s->cur);
		if (!s->all.count)
			return;
		if (!acc->count || s->all.min < acc->min)
			acc->min = s->all.min;
		if (s->all.max > acc->max)
			acc->max = s->all.max;
		acc->count += s->all.count;
		acc->sum += s->all.sum;
		for (uint32_t i = 0; i < HIST_BUCKETS; i++)
			acc->buckets[i] += s->all.buckets[i];
		return;
	}
	case WINDOW_1M:
		hist_acc_add(acc, &s->cur);
		for (int i = 0; i < SERIES_TENS - 1; i++)
			hist_acc_add_sparse(acc, tens_back(s, i));
		return;
	case WINDOW_5M:
	case WINDOW_15M: {
		int minutes = w == WINDOW_5M ? 4 : 14;
		hist_acc_add(acc, &s->cur);
		for (int i = 0; i < s->tens_in_minute; i++)
			hist_acc_add_sparse(acc, tens_back(s, i));
		for (int i = 0; i < minutes; i++)
			hist_acc_add_sparse(acc, minutes_back(s, i));
		return;
	}
	case WINDOW_COUNT:
		break;
	}
}

size_t series_heap_bytes(const struct series *s)
{
	size_t n = 0;
	for (int i = 0; i < SERIES_TENS; i++)
		n += hist_sparse_bytes(&s->tens[i]);
	for (int i = 0; i < SERIES_MINUTES; i++)
		n += hist_sparse_bytes(&s->minutes[i]);
	return n;
}
