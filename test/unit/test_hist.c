/*
 * test_hist: the histograms report percentiles within their stated relative
 * error of the exact ones (computed by sorting) on uniform, log-normal and
 * bimodal samples, and the sliding windows forget what is older than them.
 */
#include "hist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "series.h"
#include "unit.h"

static struct hist g_hist;
static struct hist_acc g_acc;

/* deterministic: the same samples every run */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform01(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double)(rng_state >> 11) / (double)(1ull << 53);
}

static double normal01(void)
{
	double u1 = uniform01(), u2 = uniform01();
	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* the exact q-quantile: the smallest value with at least q of the sample at or below it */
static uint64_t exact_quantile(const uint64_t *sorted, size_t n, double q)
{
	size_t rank = (size_t)ceil(q * (double)n);
	if (rank < 1)
		rank = 1;
	return sorted[rank - 1];
}

static void check_quantiles(uint64_t *values, size_t n)
{
	static const double qs[] = { 0.5, 0.9, 0.95, 0.99, 0.999, 1.0 };
	hist_reset(&g_hist);
	for (size_t i = 0; i < n; i++)
		hist_record(&g_hist, values[i]);
	hist_acc_reset(&g_acc);
	hist_acc_add(&g_acc, &g_hist);
	qsort(values, n, sizeof(values[0]), cmp_u64);
	CHECK_INT_EQ(g_acc.count, n);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		uint64_t exact = exact_quantile(values, n, qs[i]);
		uint64_t got = hist_acc_quantile(&g_acc, qs[i]);
		double err = exact ? fabs((double)got - (double)exact) / (double)exact : (double)got;
		if (err > 0.01)
			UNIT_FAIL_("q=%g: got %llu, exact %llu (error %.4f > 1%%)", qs[i], (unsigned long long)got,
				   (unsigned long long)exact, err);
	}
}

#define N 200000
static uint64_t sample[N];

static void test_uniform_sample_percentiles_within_one_percent(void)
{
	for (size_t i = 0; i < N; i++)
		sample[i] = 100 + (uint64_t)(uniform01() * 50000.0);
	check_quantiles(sample, N);
}

static void test_lognormal_sample_percentiles_within_one_percent(void)
{
	/* median ~2 ms, long right tail */
	for (size_t i = 0; i < N; i++)
		sample[i] = (uint64_t)exp(log(2000.0) + 1.2 * normal01());
	check_quantiles(sample, N);
}

static void test_bimodal_sample_percentiles_within_one_percent(void)
{
	/* 90 % fast index lookups around 300 us, 10 % slow reports around 800 ms */
	for (size_t i = 0; i < N; i++) {
		double center = uniform01() < 0.9 ? 300.0 : 800000.0;
		double v = center * (1.0 + 0.1 * normal01());
		sample[i] = v < 1 ? 1 : (uint64_t)v;
	}
	check_quantiles(sample, N);
}

static void test_every_bucket_reports_within_the_stated_error(void)
{
	double worst = 0;
	for (uint64_t v = 1; v < (1ull << 32); v = v + 1 + v / 997) {
		uint64_t r = hist_bucket_value(hist_bucket_of(v));
		double err = fabs((double)r - (double)v) / (double)v;
		if (err > worst)
			worst = err;
	}
	CHECK(worst <= HIST_RELATIVE_ERROR);
	CHECK(hist_bucket_of(0) == 0);
	CHECK(hist_bucket_of(63) == 63);
	CHECK(hist_bucket_of(127) == 127); /* exact up to 127 */
	CHECK(hist_bucket_of(1ull << 40) == HIST_BUCKETS - 1);
	CHECK(hist_bucket_of(UINT64_MAX) == HIST_BUCKETS - 1);
}

/* the bucket of v is the one whose range holds it, at every octave's edges too */
static void test_each_value_falls_in_the_bucket_whose_range_holds_it(void)
{
	int wrong = 0;
	for (unsigned k = 0; k < 33; k++) {
		uint64_t edge = 1ull << k;
		uint64_t probes[] = { edge - 1, edge, edge + 1, edge + edge / 3, edge * 2 - 1 };
		for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
			uint64_t v = probes[i];
			uint32_t b = hist_bucket_of(v);
			bool last = b == HIST_BUCKETS - 1;
			wrong += !(hist_bucket_low(b) <= v && (last || v < hist_bucket_low(b + 1)));
		}
	}
	CHECK(wrong == 0);
	CHECK(hist_bucket_of((1ull << 32) - 1) == HIST_BUCKETS - 1); /* octave 31 ends the table */
}

static void test_huge_values_keep_the_true_max(void)
{
	hist_reset(&g_hist);
	hist_record(&g_hist, 5);
	hist_record(&g_hist, 1ull << 40);
	hist_acc_reset(&g_acc);
	hist_acc_add(&g_acc, &g_hist);
	CHECK_INT_EQ(hist_acc_quantile(&g_acc, 1.0), 1ull << 40);
	CHECK_INT_EQ(hist_acc_quantile(&g_acc, 0.5), 5);
	CHECK_INT_EQ(g_acc.min, 5);
}

static void test_empty_histogram_reports_zero(void)
{
	hist_acc_reset(&g_acc);
	CHECK_INT_EQ(hist_acc_quantile(&g_acc, 0.99), 0);
	CHECK_INT_EQ(hist_acc_mean(&g_acc), 0);
}

static void test_sparse_copy_adds_up_like_the_dense_one(void)
{
	struct hist_sparse sp;
	struct hist_acc dense;
	hist_reset(&g_hist);
	for (int i = 0; i < 10000; i++)
		hist_record(&g_hist, (uint64_t)(10 + i * 37 % 90000));
	hist_sparse_from(&sp, &g_hist);
	hist_acc_reset(&g_acc);
	hist_acc_add_sparse(&g_acc, &sp);
	hist_acc_reset(&dense);
	hist_acc_add(&dense, &g_hist);
	CHECK(memcmp(&g_acc, &dense, sizeof(dense)) == 0);
	CHECK(sp.used < HIST_BUCKETS);
	hist_sparse_free(&sp);
}

/* ---- windows ---- */

static struct series g_series;
static const int64_t T0 = 1000LL * SERIES_SLOT_USEC; /* on a minute boundary: 1000 is not, 1002 is */

static uint64_t window_count(enum series_window w)
{
	hist_acc_reset(&g_acc);
	series_read(&g_series, w, &g_acc);
	return g_acc.count;
}

static void test_one_minute_window_forgets_values_after_a_minute(void)
{
	int64_t t = 1002LL * SERIES_SLOT_USEC; /* 1002 * 10 s is a whole minute */
	series_init(&g_series, t);
	series_record(&g_series, 1000);
	CHECK_INT_EQ(window_count(WINDOW_1M), 1);
	for (int i = 1; i <= 5; i++) {
		series_rotate(&g_series, t + i * SERIES_SLOT_USEC);
		CHECK_INT_EQ(window_count(WINDOW_1M), 1); /* still within 50–60 s */
	}
	series_rotate(&g_series, t + 6 * SERIES_SLOT_USEC);
	CHECK_INT_EQ(window_count(WINDOW_1M), 0);
	CHECK_INT_EQ(window_count(WINDOW_5M), 1);
	CHECK_INT_EQ(window_count(WINDOW_ALL), 1);
	series_free(&g_series);
}

static void test_five_and_fifteen_minute_windows_age_out_in_turn(void)
{
	int64_t t = 1002LL * SERIES_SLOT_USEC;
	series_init(&g_series, t);
	series_record(&g_series, 1000);
	series_record(&g_series, 3000);
	/* 5 minutes later the value has left the 5-minute window, not the 15-minute one */
	series_rotate(&g_series, t + 30 * SERIES_SLOT_USEC);
	CHECK_INT_EQ(window_count(WINDOW_5M), 0);
	CHECK_INT_EQ(window_count(WINDOW_15M), 2);
	hist_acc_reset(&g_acc);
	series_read(&g_series, WINDOW_15M, &g_acc);
	CHECK_INT_EQ(g_acc.min, 1000);
	CHECK_INT_EQ(g_acc.max, 3000);
	series_rotate(&g_series, t + 90 * SERIES_SLOT_USEC);
	CHECK_INT_EQ(window_count(WINDOW_15M), 0);
	CHECK_INT_EQ(window_count(WINDOW_ALL), 2);
	series_free(&g_series);
}

static void test_values_in_consecutive_slots_all_count(void)
{
	int64_t t = T0;
	series_init(&g_series, t);
	for (int i = 0; i < 30; i++) {
		series_record(&g_series, (uint64_t)(100 + i));
		series_rotate(&g_series, t + (i + 1) * SERIES_SLOT_USEC);
	}
	/* 30 slots = 5 minutes of one value each */
	CHECK_INT_EQ(window_count(WINDOW_1M), 5);
	uint64_t five = window_count(WINDOW_5M);
	CHECK(five >= 24 && five <= 30);
	CHECK_INT_EQ(window_count(WINDOW_15M), 30);
	CHECK_INT_EQ(window_count(WINDOW_ALL), 30);
	series_free(&g_series);
}

static void test_a_long_silence_empties_the_windows(void)
{
	int64_t t = T0;
	series_init(&g_series, t);
	series_record(&g_series, 7);
	series_rotate(&g_series, t + 3600LL * 1000000);
	CHECK_INT_EQ(window_count(WINDOW_15M), 0);
	CHECK_INT_EQ(window_count(WINDOW_ALL), 1);
	series_record(&g_series, 9);
	CHECK_INT_EQ(window_count(WINDOW_1M), 1);
	series_free(&g_series);
}

static void test_window_names(void)
{
	CHECK_INT_EQ(series_window_by_name("1m"), WINDOW_1M);
	CHECK_INT_EQ(series_window_by_name("15M"), WINDOW_15M);
	CHECK_INT_EQ(series_window_by_name("all"), WINDOW_ALL);
	CHECK_INT_EQ(series_window_by_name("2m"), -1);
}

int main(void)
{
	RUN(test_every_bucket_reports_within_the_stated_error);
	RUN(test_uniform_sample_percentiles_within_one_percent);
	RUN(test_lognormal_sample_percentiles_within_one_percent);
	RUN(test_bimodal_sample_percentiles_within_one_percent);
	RUN(test_each_value_falls_in_the_bucket_whose_range_holds_it);
	RUN(test_huge_values_keep_the_true_max);
	RUN(test_empty_histogram_reports_zero);
	RUN(test_sparse_copy_adds_up_like_the_dense_one);
	RUN(test_one_minute_window_forgets_values_after_a_minute);
	RUN(test_five_and_fifteen_minute_windows_age_out_in_turn);
	RUN(test_values_in_consecutive_slots_all_count);
	RUN(test_a_long_silence_empties_the_windows);
	RUN(test_window_names);
	return UNIT_REPORT("hist");
}
