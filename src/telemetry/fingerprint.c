/*
 * fingerprint: statistics per (pool, query shape) with bounded memory
 * (see include/fingerprint.h for the shape of the data).
 *
 * The table is one per worker (a file-level static until there are several
 * workers). Slot numbers count 10-second slots of the monotonic clock; a
 * ring cell holds the slot (or minute) number it was written for, and a
 * reader takes only the cells whose number falls in its window.
 */
#include "fingerprint.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "normalize.h"
#include "telemetry.h"
#include "textcache.h"
#include "worker.h"

#define FP_BUCKETS 16384 /* hash chains; a power of two */
#define FP_EVICT_SAMPLE 16

static struct {
	struct fp_entry **buckets;
	int count;
	struct list lru;          /* least recently used first */
	struct list active_slot;  /* entries holding a dense slot */
	struct hist **spare;      /* dense slots not lent out */
	int nspare, capspare, dense_total;
	int64_t slot_no;          /* the current 10-second slot */
	uint64_t generation;      /* entries freed so far (fp_generation) */
	/*
	 * The entry found last: a request's entry is looked up when it arrives
	 * and again when it completes, and a busy pool repeats a few shapes, so
	 * this often saves walking a chain. Never a freed entry.
	 */
	struct fp_entry *last;
} T;

static uint32_t bucket_of(const struct pool *pool, uint64_t fp)
{
	uint64_t h = fp ^ ((uint64_t)(uintptr_t)pool * 0x9e3779b97f4a7c15ull);
	h ^= h >> 29;
	return (uint32_t)(h & (FP_BUCKETS - 1));
}

static void clear_repeats(struct fp_repeats *r, int64_t minute)
{
	memset(r, 0, sizeof(*r));
	r->minute = minute;
}

static void clear_slot(struct fp_slot *s)
{
	hist_sparse_free(&s->h);
	memset(s, 0, sizeof(*s));
	s->epoch = -1;
}

void fp_table_init(int64_t now)
{
	memset(&T, 0, sizeof(T));
	T.buckets = xcalloc(FP_BUCKETS, sizeof(*T.buckets));
	list_init(&T.lru);
	list_init(&T.active_slot);
	T.slot_no = now / SERIES_SLOT_USEC;
}

/* ---- dense slots, lent while active ---- */

static struct hist *borrow_dense(void)
{
	struct hist *h;
	if (T.nspare > 0) {
		h = T.spare[--T.nspare];
	} else {
		/* the number of shapes active at once grew: the one allocation here */
		h = xmalloc(sizeof(*h));
		T.dense_total++;
	}
	hist_reset(h);
	return h;
}

static void give_back_dense(struct hist *h)
{
	if (T.nspare == T.capspare) {
		T.capspare = T.capspare ? T.capspare * 2 : 64;
		T.spare = xrealloc(T.spare, sizeof(*T.spare) * (size_t)T.capspare);
	}
	T.spare[T.nspare++] = h;
}

/* ---- entries ---- */

static void free_entry(struct fp_entry *e)
{
	T.generation++;
	if (T.last == e)
		T.last = NULL;
	if (e->cur)
		give_back_dense(e->cur);
	list_remove(&e->active);
	list_remove(&e->lru);
	for (int i = 0; i < SERIES_TENS; i++)
		hist_sparse_free(&e->tens[i].h);
	for (int i = 0; i < SERIES_MINUTES; i++)
		hist_sparse_free(&e->minutes[i].h);
	hist_sparse_free(&e->all);
	free(e->text);
	free(e);
}

static void unchain(struct fp_entry *e)
{
	struct fp_entry **pp = &T.buckets[bucket_of(e->pool, e->fp)];
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
}

/* the least used of the few least recently used */
static void evict_one(void)
{
	struct fp_entry *victim = NULL;
	int seen = 0;
	struct list *pos;
	list_for_each(pos, &T.lru)
	{
		struct fp_entry *e = container_of(pos, struct fp_entry, lru);
		if (!victim || e->calls < victim->calls)
			victim = e;
		if (++seen == FP_EVICT_SAMPLE)
			break;
	}
	if (!victim)
		return;
	unchain(victim);
	free_entry(victim);
	T.count--;
}

struct fp_entry *fp_lookup(const struct pool *pool, uint64_t fp)
{
	if (!T.buckets || worker->cfg->max_query_fingerprints <= 0)
		return NULL;
	struct fp_entry *e = T.last;
	if (e && e->fp == fp && e->pool == pool)
		return e;
	for (e = T.buckets[bucket_of(pool, fp)]; e; e = e->hnext)
		if (e->fp == fp && e->pool == pool)
			return T.last = e;
	return NULL;
}

struct fp_entry *fp_touch(const struct pool *pool, uint64_t fp, const char *text)
{
	int max = worker->cfg->max_query_fingerprints;
	if (!T.buckets || max <= 0)
		return NULL;
	struct fp_entry *e = fp_lookup(pool, fp);
	if (e) {
		if (T.lru.prev != &e->lru) { /* not the most recently used already */
			list_remove(&e->lru);
			list_append(&T.lru, &e->lru);
		}
		return e;
	}
	if (!text)
		return NULL;
	while (T.count >= max)
		evict_one();
	e = xcalloc(1, sizeof(*e));
	e->fp = fp;
	e->pool = pool;
	e->text = xstrdup(text);
	e->minute_active = -1;
	for (int i = 0; i < SERIES_TENS; i++)
		e->tens[i].epoch = -1;
	for (int i = 0; i < SERIES_MINUTES; i++)
		e->minutes[i].epoch = -1;
	for (int i = 0; i < FP_REPEAT_MINUTES; i++)
		e->rep[i].minute = -1;
	list_init(&e->active);
	list_append(&T.lru, &e->lru);
	uint32_t b = bucket_of(pool, fp);
	e->hnext = T.buckets[b];
	T.buckets[b] = e;
	T.count++;
	return e;
}

uint64_t fp_generation(void)
{
	return T.generation;
}

bool fp_enabled(void)
{
	return telemetry_enabled && worker->cfg->max_query_fingerprints > 0;
}

/* the text cache did not know the text (key: its textcache_hash), or not for this pool */
static __attribute__((noinline)) uint64_t
normalize_and_remember(const struct pool *pool, const char *text, size_t len, uint64_t key)
{
	unsigned char free_digits[TEXTCACHE_TEXT / 8] = { 0 };
	char *out = worker->normalized;
	uint64_t fp = normalize_sql_marking(text, len, out, sizeof(worker->normalized), free_digits);
	fp = fp ? fp : 1;
	fp_touch(pool, fp, worker->normalized);
	textcache_remember(key, text, len, fp, free_digits);
	return fp;
}

uint64_t fp_of_text(const struct pool *pool, const char *text, size_t len, bool cached)
{
	if (cached && len <= TEXTCACHE_TEXT) {
		uint64_t key;
		uint64_t fp = textcache_find(text, len, &key);
		if (fp && fp_touch(pool, fp, NULL))
			return fp;
		/* new here, or its entry was evicted: the entry needs the normalized text */
		return normalize_and_remember(pool, text, len, key);
	}
	uint64_t fp = normalize_sql(text, len, worker->normalized, sizeof(worker->normalized));
	fp = fp ? fp : 1;
	fp_touch(pool, fp, worker->normalized);
	return fp;
}

void fp_record(struct fp_entry *e, uint64_t duration_us, enum fp_outcome outcome)
{
	if (!e->cur) {
		e->cur = borrow_dense();
		list_append(&T.active_slot, &e->active);
	}
	hist_record(e->cur, duration_us);
	e->cur_calls++;
	e->cur_total += duration_us;
	e->calls++;
	e->total_us += duration_us;
	if (!e->calls || duration_us < e->all_min || e->calls == 1)
		e->all_min = duration_us;
	if (duration_us > e->all_max)
		e->all_max = duration_us;
	if (outcome != FP_OK) {
		e->cur_errors++;
		e->errors++;
	}
	if (outcome == FP_TIMEOUT) {
		e->cur_timeouts++;
		e->timeouts++;
	}
	e->minute_active = T.slot_no / SERIES_TENS;
}

/* ---- executions per transaction (N+1) ---- */

bool fp_repeats_enabled(void)
{
	return fp_enabled() && worker->cfg->query_repeat_threshold > 0;
}

void fp_xact_note(struct fp_xact *x, struct fp_entry *e, uint64_t duration_us)
{
	if (x->n == 0)
		x->generation = T.generation;
	for (int i = 0; i < x->n; i++) {
		struct fp_xact_shape *s = &x->s[i];
		/* the fingerprint too: a freed entry's memory may hold another shape now */
		if (s->e == e && s->fp == e->fp) {
			s->count++;
			s->us += duration_us;
			return;
		}
	}
	if (x->n == FP_XACT_SHAPES)
		return; /* a transaction of many shapes: the first ones are followed (doc/telemetry.md) */
	x->s[x->n++] = (struct fp_xact_shape){ e, e->fp, duration_us, 1 };
}

static int repeat_bucket(uint32_t count)
{
	int b = 0;
	for (uint32_t n = count > 0 ? count - 1 : 0; n; n >>= 1)
		b++;
	return b < FP_REPEAT_BUCKETS ? b : FP_REPEAT_BUCKETS - 1;
}

static void add_repeats(struct fp_repeats *r, const struct fp_xact_shape *s, uint64_t xact_us, uint32_t threshold)
{
	r->xacts[repeat_bucket(s->count)]++;
	if (s->count > r->max)
		r->max = s->count;
	if (s->count < threshold || s->count < 2)
		return;
	r->repeat_xacts++;
	if (xact_us) {
		r->repeat_shape_us += s->us;
		r->repeat_xact_us += xact_us;
	}
}

void fp_xact_fold(struct fp_xact *x, const struct pool *pool, uint64_t xact_us)
{
	int n = x->n;
	x->n = 0;
	if (!fp_repeats_enabled())
		return;
	bool trusted = x->generation == T.generation;
	uint32_t threshold = (uint32_t)worker->cfg->query_repeat_threshold;
	int64_t minute = T.slot_no / SERIES_TENS;
	for (int i = 0; i < n; i++) {
		const struct fp_xact_shape *s = &x->s[i];
		struct fp_entry *e = trusted ? s->e : fp_lookup(pool, s->fp);
		if (!e)
			continue;
		struct fp_repeats *cell = &e->rep[minute % FP_REPEAT_MINUTES];
		if (cell->minute != minute)
			clear_repeats(cell, minute);
		add_repeats(cell, s, xact_us, threshold);
		add_repeats(&e->rep_all, s, xact_us, threshold);
	}
}

static void sum_repeats(struct fp_repeats *out, const struct fp_repeats *r)
{
	for (int b = 0; b < FP_REPEAT_BUCKETS; b++)
		out->xacts[b] += r->xacts[b];
	if (r->max > out->max)
		out->max = r->max;
	out->repeat_xacts += r->repeat_xacts;
	out->repeat_shape_us += r->repeat_shape_us;
	out->repeat_xact_us += r->repeat_xact_us;
}

void fp_read_repeats(const struct fp_entry *e, bool all, struct fp_repeats *out)
{
	int64_t minute = T.slot_no / SERIES_TENS;
	clear_repeats(out, all ? -1 : minute);
	if (all) {
		sum_repeats(out, &e->rep_all);
		return;
	}
	for (int i = 0; i < FP_REPEAT_MINUTES; i++)
		if (e->rep[i].minute >= 0 && e->rep[i].minute > minute - FP_REPEAT_MINUTES)
			sum_repeats(out, &e->rep[i]);
}

uint32_t fp_repeats_p50(const struct fp_repeats *r)
{
	uint64_t total = 0, seen = 0;
	for (int b = 0; b < FP_REPEAT_BUCKETS; b++)
		total += r->xacts[b];
	if (!total)
		return 0;
	for (int b = 0; b < FP_REPEAT_BUCKETS; b++) {
		seen += r->xacts[b];
		if (2 * seen >= total) {
			uint32_t upper = b == FP_REPEAT_BUCKETS - 1 ? r->max : (uint32_t)1 << b;
			return upper < r->max ? upper : r->max;
		}
	}
	return r->max;
}

bool fp_repeats_flagged(const struct fp_repeats *r)
{
	return worker->cfg->query_repeat_threshold > 0 && r->repeat_xacts >= FP_REPEAT_MIN_XACTS;
}

/* ---- time ---- */

/* all-time histogram += the finished slot: a merge of two ascending lists */
static void merge_into_all(struct fp_entry *e, const struct hist_sparse *slot)
{
	struct hist_sparse *a = &e->all;
	uint32_t n = 0, i = 0, j = 0;
	uint32_t cap = a->used + slot->used;
	uint16_t *idx = cap ? xmalloc(sizeof(uint16_t) * cap) : NULL;
	uint32_t *cnt = cap ? xmalloc(sizeof(uint32_t) * cap) : NULL;
	while (i < a->used || j < slot->used) {
		if (j >= slot->used || (i < a->used && a->idx[i] < slot->idx[j])) {
			idx[n] = a->idx[i];
			cnt[n++] = a->cnt[i++];
		} else if (i >= a->used || slot->idx[j] < a->idx[i]) {
			idx[n] = slot->idx[j];
			cnt[n++] = slot->cnt[j++];
		} else {
			uint64_t sum = (uint64_t)a->cnt[i] + slot->cnt[j];
			idx[n] = a->idx[i];
			cnt[n++] = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
			i++;
			j++;
		}
	}
	uint64_t count = a->count + slot->count, sum = a->sum + slot->sum;
	hist_sparse_free(a);
	a->idx = idx;
	a->cnt = cnt;
	a->used = n;
	a->count = count;
	a->sum = sum;
}

static void close_entry_slot(struct fp_entry *e, int64_t slot_no)
{
	struct fp_slot *cell = &e->tens[slot_no % SERIES_TENS];
	clear_slot(cell);
	cell->epoch = slot_no;
	cell->calls = e->cur_calls;
	cell->errors = e->cur_errors;
	cell->timeouts = e->cur_timeouts;
	cell->total_us = e->cur_total;
	hist_sparse_from(&cell->h, e->cur);
	merge_into_all(e, &cell->h);
	give_back_dense(e->cur);
	e->cur = NULL;
	e->cur_calls = e->cur_errors = e->cur_timeouts = e->cur_total = 0;
	list_remove(&e->active);
}

/* the minute that just ended, from the entry's ten-second cells of it */
static void close_entry_minute(struct fp_entry *e, int64_t minute)
{
	static struct hist scratch; /* 7 kB, one worker thread */
	struct hist_acc acc;
	struct fp_slot *cell = &e->minutes[minute % SERIES_MINUTES];
	clear_slot(cell);
	cell->epoch = minute;
	hist_acc_reset(&acc);
	for (int i = 0; i < SERIES_TENS; i++) {
		const struct fp_slot *t = &e->tens[i];
		if (t->epoch / SERIES_TENS != minute || t->epoch < 0)
			continue;
		cell->calls += t->calls;
		cell->errors += t->errors;
		cell->timeouts += t->timeouts;
		cell->total_us += t->total_us;
		hist_acc_add_sparse(&acc, &t->h);
	}
	hist_reset(&scratch);
	scratch.count = acc.count;
	scratch.sum = acc.sum;
	scratch.min = acc.min;
	scratch.max = acc.max;
	for (uint32_t i = 0; i < HIST_BUCKETS; i++)
		scratch.buckets[i] = acc.buckets[i] > UINT32_MAX ? UINT32_MAX : (uint32_t)acc.buckets[i];
	hist_sparse_from(&cell->h, &scratch);
}

static void close_slot(void)
{
	struct list *pos, *tmp;
	int64_t closing = T.slot_no;
	list_for_each_safe(pos, tmp, &T.active_slot)
		close_entry_slot(container_of(pos, struct fp_entry, active), closing);
	T.slot_no++;
	if (T.slot_no % SERIES_TENS != 0)
		return;
	/* a minute ended: entries active in it get their minute cell */
	int64_t minute = closing / SERIES_TENS;
	list_for_each(pos, &T.lru)
	{
		struct fp_entry *e = container_of(pos, struct fp_entry, lru);
		if (e->minute_active == minute)
			close_entry_minute(e, minute);
	}
}

void fp_rotate(int64_t now)
{
	if (!T.buckets)
		return;
	/* max_query_fingerprints lowered (or 0) by RELOAD or SET: trim now, not at the next new shape */
	int max = worker->cfg->max_query_fingerprints;
	while (T.count > (max > 0 ? max : 0) && !list_empty(&T.lru))
		evict_one();
	int64_t target = now / SERIES_SLOT_USEC;
	if (target - T.slot_no > SERIES_TENS * (SERIES_MINUTES + 1)) {
		/* a long silence: close the open slot, then jump; old cells age out by number */
		close_slot();
		T.slot_no = target;
		return;
	}
	while (T.slot_no < target)
		close_slot();
}

/* ---- reading ---- */

static void add_cell(const struct fp_slot *s, struct fp_window *out, struct hist_acc *acc)
{
	out->calls += s->calls;
	out->errors += s->errors;
	out->timeouts += s->timeouts;
	out->total_us += s->total_us;
	hist_acc_add_sparse(acc, &s->h);
}

void fp_read(const struct fp_entry *e, enum series_window w, struct fp_window *out, struct hist_acc *acc)
{
	int64_t slot = T.slot_no, minute = slot / SERIES_TENS;
	memset(out, 0, sizeof(*out));
	if (w == WINDOW_ALL) {
		out->calls = e->calls;
		out->errors = e->errors;
		out->timeouts = e->timeouts;
		out->total_us = e->total_us;
		hist_acc_add_sparse(acc, &e->all);
		if (e->cur)
			hist_acc_add(acc, e->cur);
		/* the sparse all-time list lost min/max: put the exact ones back */
		if (acc->count) {
			acc->min = e->all_min;
			acc->max = e->all_max;
		}
		return;
	}
	out->calls = e->cur_calls;
	out->errors = e->cur_errors;
	out->timeouts = e->cur_timeouts;
	out->total_us = e->cur_total;
	if (e->cur)
		hist_acc_add(acc, e->cur);
	int64_t tens_from = w == WINDOW_1M ? slot - (SERIES_TENS - 1) : minute * SERIES_TENS;
	for (int i = 0; i < SERIES_TENS; i++) {
		const struct fp_slot *t = &e->tens[i];
		if (t->epoch >= tens_from && t->epoch < slot)
			add_cell(t, out, acc);
	}
	if (w == WINDOW_1M)
		return;
	int64_t minutes_from = minute - (w == WINDOW_5M ? 4 : 14);
	for (int i = 0; i < SERIES_MINUTES; i++) {
		const struct fp_slot *m = &e->minutes[i];
		if (m->epoch >= minutes_from && m->epoch < minute)
			add_cell(m, out, acc);
	}
}

void fp_for_each(void (*fn)(struct fp_entry *e, void *arg), void *arg)
{
	struct list *pos;
	if (!T.buckets)
		return;
	list_for_each(pos, &T.lru)
		fn(container_of(pos, struct fp_entry, lru), arg);
}

int fp_count(void)
{
	return T.count;
}

size_t fp_bytes(void)
{
	if (!T.buckets)
		return 0;
	size_t n = (size_t)FP_BUCKETS * sizeof(*T.buckets) + (size_t)T.dense_total * sizeof(struct hist);
	struct list *pos;
	list_for_each(pos, &T.lru)
	{
		const struct fp_entry *e = container_of(pos, struct fp_entry, lru);
		n += sizeof(*e) + strlen(e->text) + 1 + hist_sparse_bytes(&e->all);
		for (int i = 0; i < SERIES_TENS; i++)
			n += hist_sparse_bytes(&e->tens[i].h);
		for (int i = 0; i < SERIES_MINUTES; i++)
			n += hist_sparse_bytes(&e->minutes[i].h);
	}
	return n;
}

void fp_forget_pool(const struct pool *pool)
{
	struct list *pos, *tmp;
	if (!T.buckets)
		return;
	list_for_each_safe(pos, tmp, &T.lru)
	{
		struct fp_entry *e = container_of(pos, struct fp_entry, lru);
		if (e->pool != pool)
			continue;
		unchain(e);
		free_entry(e);
		T.count--;
	}
}

void fp_table_free(void)
{
	struct list *pos, *tmp;
	if (!T.buckets)
		return;
	list_for_each_safe(pos, tmp, &T.lru)
		free_entry(container_of(pos, struct fp_entry, lru));
	for (int i = 0; i < T.nspare; i++)
		free(T.spare[i]);
	free(T.spare);
	free(T.buckets);
	memset(&T, 0, sizeof(T));
}
