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
	uint64_t timeouts;   /* of the errors: cut off by query_wait_timeout or query_timeout */
	uint64_t total_us;
	struct hist_sparse h;
};

/*
 * Executions per transaction (N+1 detection): how many transactions ran
 * the shape 1, 2, 3-4, 5-8, ... 129-256, 257+ times, over one minute (or
 * all time). Bucket b > 0 holds counts up to 2^b.
 */
#define FP_REPEAT_BUCKETS 10
#define FP_REPEAT_MINUTES 5   /* the window: this minute and the 4 before */
#define FP_REPEAT_MIN_XACTS 3 /* transactions at or above the threshold that flag a shape */

struct fp_repeats {
	int64_t minute;                     /* the minute it holds, -1 if none */
	uint32_t xacts[FP_REPEAT_BUCKETS];  /* transactions that ran the shape, by executions */
	uint32_t max;                       /* the most executions in one transaction */
	uint32_t repeat_xacts;              /* transactions that ran it >= query_repeat_threshold times */
	uint64_t repeat_shape_us;           /* in those: the time of its executions */
	uint64_t repeat_xact_us;            /* in those: their whole time */
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
	uint64_t cur_calls, cur_errors, cur_timeouts, cur_total;
	int64_t minute_active;     /* the last minute number it was active in */
	struct fp_slot tens[SERIES_TENS];
	struct fp_slot minutes[SERIES_MINUTES];
	/* since it was created */
	uint64_t calls, errors, timeouts, total_us;
	struct hist_sparse all;
	uint64_t all_min, all_max;
	/* executions per transaction: a ring of minutes, and since it was created */
	struct fp_repeats rep[FP_REPEAT_MINUTES];
	struct fp_repeats rep_all;
};

/*
 * The shapes an open transaction ran so far: a fixed array in the server
 * connection that runs it (a transaction never changes server; a client
 * struct is kept small), so counting costs no allocation. Folded into the
 * entries when the transaction ends (fp_xact_end). An entry pointer is trusted only while
 * fp_generation() is what it was when the transaction began; otherwise the
 * entry is looked up again by fingerprint.
 */
#define FP_XACT_SHAPES 8

struct fp_xact_shape {
	struct fp_entry *e;
	uint64_t fp;
	uint64_t us;     /* the time of its executions */
	uint32_t count;
};

struct fp_xact {
	struct fp_xact_shape s[FP_XACT_SHAPES];
	uint64_t generation;
	int n;
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

/* how a request ended: a timeout (query_wait_timeout, query_timeout) is an error too */
enum fp_outcome { FP_OK = 0, FP_ERROR, FP_TIMEOUT };

/* one request of that shape finished (or was cut off: duration_us is the time to its error) */
void fp_record(struct fp_entry *e, uint64_t duration_us, enum fp_outcome outcome);

/* is N+1 detection on (fingerprints kept, query_repeat_threshold > 0) */
bool fp_repeats_enabled(void);

/* a request of entry e ran duration_us in the client's open transaction */
void fp_xact_note(struct fp_xact *x, struct fp_entry *e, uint64_t duration_us);

/* the counts of a transaction of more than one request go into the entries */
void fp_xact_fold(struct fp_xact *x, const struct pool *pool, uint64_t xact_us);

/*
 * The transaction ended (xact_us long, 0 if not known). One of one request
 * (autocommit, statement mode) repeats nothing: skipped here, inline, so
 * that it costs a compare.
 */
static inline void fp_xact_end(struct fp_xact *x, const struct pool *pool, uint64_t xact_us)
{
	if (x->n > 1 || (x->n == 1 && x->s[0].count > 1))
		fp_xact_fold(x, pool, xact_us);
	x->n = 0;
}

/* the transaction was cut off (the client left or failed): its counts are dropped */
static inline void fp_xact_drop(struct fp_xact *x)
{
	x->n = 0;
}

/* executions per transaction over the last FP_REPEAT_MINUTES minutes (all: since created) */
void fp_read_repeats(const struct fp_entry *e, bool all, struct fp_repeats *out);

/* the median executions per transaction: its bucket's upper bound, never above max */
uint32_t fp_repeats_p50(const struct fp_repeats *r);

/* whether the shape is an N+1 suspect in the window (doc/telemetry.md, "Repeats") */
bool fp_repeats_flagged(const struct fp_repeats *r);

/* close finished slots (the janitor) */
void fp_rotate(int64_t now);

/* a pool goes away: its fingerprints go with it */
void fp_forget_pool(const struct pool *pool);

/* totals of one entry over a window, with its histogram added to acc */
struct fp_window {
	uint64_t calls, errors, timeouts, total_us;
};
void fp_read(const struct fp_entry *e, enum series_window w, struct fp_window *out, struct hist_acc *acc);

/* visit every entry (SHOW QUERIES); the callback must not touch the table */
void fp_for_each(void (*fn)(struct fp_entry *e, void *arg), void *arg);

int fp_count(void);
size_t fp_bytes(void);

#endif
