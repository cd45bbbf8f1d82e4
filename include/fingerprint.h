/*
 * fingerprint: per-query-shape statistics — calls, errors, total time and
 * a latency histogram for each (pool, normalized query text), over the same
 * windows as the pool series, bounded by max_query_fingerprints.
 *
 * Memory is the point of this module's shape. A fingerprint keeps only
 * compact (sparse) slots; a dense histogram is lent to it from a shared
 * free list while it is active in the current 10-second slot, and taken
 * back (compacted) when the slot ends. So the dense memory follows the
 * number of shapes active in ten seconds, not the number known. Ring cells
 * carry the slot number they belong to, so a fingerprint that was idle
 * needs no work when time moves on. When the table is full, the least used
 * of the least recently used few is evicted.
 */
#ifndef PGPULSE_FINGERPRINT_H
#define PGPULSE_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"
#include "series.h"
#include "util.h"

struct pool;

struct fp_slot {
	int64_t epoch;       /* the 10-second slot (or minute) number it holds, -1 if none */
	uint64_t calls;
	uint64_t errors;
	uint64_t total_us;
	struct hist_sparse h;
};

struct fp_entry {
	struct list lru;           /* fp_table.lru: least recently used first */
	struct list active;        /* fp_table.active_slot while it has a dense slot */
	struct fp_entry *hnext;    /* hash chain */
	uint64_t fp;
	const struct pool *pool;
	char *text;                /* normalized */
	/* the current slot */
	struct hist *cur;          /* lent while active this slot, else NULL */
	uint64_t cur_calls, cur_errors, cur_total;
	int64_t minute_active;     /* the last minute number it was active in */
	struct fp_slot tens[SERIES_TENS];
	struct fp_slot minutes[SERIES_MINUTES];
	/* since it was created */
	uint64_t calls, errors, total_us;
	struct hist_sparse all;
	uint64_t all_min, all_max;
};

/* the fingerprints of the worker */
void fp_table_init(int64_t now);
void fp_table_free(void);

/*
 * The entry for (pool, fp), created with this text if new; NULL if
 * fingerprints are off, or if it is new and text is NULL (the caller knew
 * the fingerprint without the text: textcache.h).
 */
struct fp_entry *fp_touch(const struct pool *pool, uint64_t fp, const char *text);
struct fp_entry *fp_lookup(const struct pool *pool, uint64_t fp);

/*
 * Counts entries freed (evicted, or gone with their pool): an entry known
 * to exist while this has not changed exists still, without a lookup.
 */
uint64_t fp_generation(void);

/* are fingerprints kept now (telemetry on, max_query_fingerprints > 0) */
bool fp_enabled(void);

/*
 * The fingerprint of a query text, with the entry for (pool, it) made if
 * new (when fingerprints are kept). cached: look the text up in the text
 * cache first (textcache.h: the same text, or one that differs only in the
 * digits of number constants), and remember it there. Only when the text
 * is normalized (not found in the cache) does worker->normalized hold the
 * result. Never 0.
 */
uint64_t fp_of_text(const struct pool *pool, const char *text, size_t len, bool cached);

/* one request of that shape finished */
void fp_record(struct fp_entry *e, uint64_t duration_us, bool error);

/* close finished slots (the janitor) */
void fp_rotate(int64_t now);

/* a pool goes away: its fingerprints go with it */
void fp_forget_pool(const struct pool *pool);

/* totals of one entry over a window, with its histogram added to acc */
struct fp_window {
	uint64_t calls, errors, total_us;
};
void fp_read(const struct fp_entry *e, enum series_window w, struct fp_window *out, struct hist_acc *acc);

/* visit every entry (SHOW QUERIES); the callback must not touch the table */
void fp_for_each(void (*fn)(struct fp_entry *e, void *arg), void *arg);

int fp_count(void);
size_t fp_bytes(void);

#endif
