/*
 * hist: log-linear latency histograms with a bounded relative error.
 *
 * A value v (microseconds) falls in octave k = floor(log2 v); each octave
 * is cut into 64 equal sub-buckets, so a bucket's width is at most 1/64 of
 * the values in it and reporting its midpoint errs by at most 1/128 (0.8 %)
 * of the true value. Values below 64 are counted exactly. Finding a bucket
 * is a count-leading-zeros and two shifts: recording is O(1) and never
 * allocates.
 *
 * Three shapes of the same buckets:
 *   struct hist        dense, 32-bit counts: the slot being recorded into
 *   struct hist_sparse the non-empty buckets of a finished slot, compact
 *   struct hist_acc    dense, 64-bit counts: a sum of slots, to read from
 */
#ifndef PGPULSE_HIST_H
#define PGPULSE_HIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_OCTAVE 32 /* values from 2^32 us (71 minutes) up share the last bucket */
/* octaves 6..31 plus the exact block 0..63 */
#define HIST_BUCKETS ((HIST_MAX_OCTAVE - HIST_SUB_BITS + 1) * HIST_SUB)

/* the relative error of a reported percentile, at most */
#define HIST_RELATIVE_ERROR (1.0 / (2.0 * HIST_SUB))

struct hist {
	uint64_t count;
	uint64_t sum;
	uint64_t min;
	uint64_t max;
	uint32_t buckets[HIST_BUCKETS];
};

struct hist_sparse {
	uint64_t count;
	uint64_t sum;
	uint64_t min;
	uint64_t max;
	uint32_t used;      /* entries in idx/cnt */
	uint16_t *idx;      /* bucket indexes, ascending */
	uint32_t *cnt;
};

struct hist_acc {
	uint64_t count;
	uint64_t sum;
	uint64_t min;
	uint64_t max;
	uint64_t buckets[HIST_BUCKETS];
};

/*
 * The bucket a value falls in. With k = floor(log2 v) >= HIST_SUB_BITS, the
 * value shifted right by k - HIST_SUB_BITS is the leading one and the
 * sub-bucket (HIST_SUB + sub), so adding (k - HIST_SUB_BITS) * HIST_SUB
 * gives octave k's start, (k - HIST_SUB_BITS + 1) * HIST_SUB, plus sub. Inline:
 * every recorded value comes here.
 */
static inline uint32_t hist_bucket_of(uint64_t v)
{
	if (v < HIST_SUB)
		return (uint32_t)v;
	unsigned shift = 63u - (unsigned)__builtin_clzll(v) - HIST_SUB_BITS;
	if (shift >= HIST_MAX_OCTAVE - HIST_SUB_BITS)
		return HIST_BUCKETS - 1;
	return (uint32_t)(v >> shift) + (shift << HIST_SUB_BITS);
}

/* the value a bucket reports */
uint64_t hist_bucket_low(uint32_t idx);
uint64_t hist_bucket_value(uint32_t idx);

void hist_reset(struct hist *h);

static inline void hist_record(struct hist *h, uint64_t v)
{
	h->buckets[hist_bucket_of(v)]++;
	h->count++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
	if (v < h->min || h->count == 1)
		h->min = v;
}

/* a finished slot, kept compact; frees nothing of h */
void hist_sparse_from(struct hist_sparse *out, const struct hist *h);
void hist_sparse_free(struct hist_sparse *s);
size_t hist_sparse_bytes(const struct hist_sparse *s);

void hist_acc_reset(struct hist_acc *a);
void hist_acc_add(struct hist_acc *a, const struct hist *h);
void hist_acc_add_sparse(struct hist_acc *a, const struct hist_sparse *s);

/*
 * The q-quantile (0 < q <= 1) as PostgreSQL's percentile_disc would pick
 * it: the smallest recorded value with at least q of the values at or
 * below it — reported as its bucket's midpoint, clamped to [min, max].
 * 0 when empty.
 */
uint64_t hist_acc_quantile(const struct hist_acc *a, double q);
uint64_t hist_acc_mean(const struct hist_acc *a);

#endif
