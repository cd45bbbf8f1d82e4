/*
 * hist: log-linear histograms (see include/hist.h for the bucket layout).
 *
 * Bucket index of v >= 64: with k = floor(log2 v), the top HIST_SUB_BITS
 * bits below the leading one pick the sub-bucket, and octave k starts at
 * index (k - HIST_SUB_BITS + 1) * HIST_SUB. Values below 64 have their own
 * buckets 0..63, which is the same formula's octave "5" laid flat.
 */
#include "hist.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

uint64_t hist_bucket_low(uint32_t idx)
{
	if (idx < HIST_SUB)
		return idx;
	unsigned k = idx / HIST_SUB + HIST_SUB_BITS - 1;
	uint64_t sub = idx % HIST_SUB;
	return (HIST_SUB + sub) << (k - HIST_SUB_BITS);
}

uint64_t hist_bucket_value(uint32_t idx)
{
	if (idx < HIST_SUB)
		return idx;
	unsigned k = idx / HIST_SUB + HIST_SUB_BITS - 1;
	uint64_t width = 1ull << (k - HIST_SUB_BITS);
	return hist_bucket_low(idx) + width / 2;
}

void hist_reset(struct hist *h)
{
	memset(h, 0, sizeof(*h));
}

void hist_sparse_from(struct hist_sparse *out, const struct hist *h)
{
	uint32_t used = 0;
	for (uint32_t i = 0; i < HIST_BUCKETS; i++)
		used += h->buckets[i] != 0;
	out->count = h->count;
	out->sum = h->sum;
	out->min = h->min;
	out->max = h->max;
	out->used = used;
	out->idx = used ? xmalloc(sizeof(uint16_t) * used) : NULL;
	out->cnt = used ? xmalloc(sizeof(uint32_t) * used) : NULL;
	for (uint32_t i = 0, j = 0; i < HIST_BUCKETS; i++) {
		if (!h->buckets[i])
			continue;
		out->idx[j] = (uint16_t)i;
		out->cnt[j] = h->buckets[i];
		j++;
	}
}

void hist_sparse_free(struct hist_sparse *s)
{
	free(s->idx);
	free(s->cnt);
	memset(s, 0, sizeof(*s));
}

size_t hist_sparse_bytes(const struct hist_sparse *s)
{
	return s->used * (sizeof(uint16_t) + sizeof(uint32_t));
}

void hist_acc_reset(struct hist_acc *a)
{
	memset(a, 0, sizeof(*a));
}

static void acc_add_summary(struct hist_acc *a, uint64_t count, uint64_t sum, uint64_t min, uint64_t max)
{
	if (!count)
		return;
	if (!a->count || min < a->min)
		a->min = min;
	if (max > a->max)
		a->max = max;
	a->count += count;
	a->sum += sum;
}

void hist_acc_add(struct hist_acc *a, const struct hist *h)
{
	if (!h->count)
		return;
	acc_add_summary(a, h->count, h->sum, h->min, h->max);
	for (uint32_t i = 0; i < HIST_BUCKETS; i++)
		a->buckets[i] += h->buckets[i];
}

void hist_acc_add_sparse(struct hist_acc *a, const struct hist_sparse *s)
{
	acc_add_summary(a, s->count, s->sum, s->min, s->max);
	for (uint32_t j = 0; j < s->used; j++)
		a->buckets[s->idx[j]] += s->cnt[j];
}

uint64_t hist_acc_quantile(const struct hist_acc *a, double q)
{
	if (!a->count)
		return 0;
	if (q >= 1.0)
		return a->max;
	/* rank of the value wanted, 1-based: ceil(q * count), at least 1 */
	uint64_t rank = (uint64_t)(q * (double)a->count);
	if ((double)rank < q * (double)a->count)
		rank++;
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
		seen += a->buckets[i];
		if (seen >= rank) {
			uint64_t v = hist_bucket_value(i);
			if (v < a->min)
				v = a->min;
			if (v > a->max)
				v = a->max;
			return v;
		}
	}
	return a->max;
}

uint64_t hist_acc_mean(const struct hist_acc *a)
{
	return a->count ? a->sum / a->count : 0;
}
