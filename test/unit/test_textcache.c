/*
 * test_textcache: a statement seen before gets back the fingerprint that
 * normalizing it gave, for the same text or one that differs only in the
 * digits of its number constants, and never for another.
 */
#include "textcache.h"

#include <stdio.h>
#include <string.h>

#include "normalize.h"
#include "unit.h"

static uint64_t normalized_fp(const char *sql)
{
	static char out[NORMALIZE_MAX + 8];
	return normalize_sql(sql, strlen(sql), out, sizeof(out));
}

/* remember sql as the daemon does: with the digits the normalizer marked free */
static uint64_t remember_normalized(const char *sql)
{
	static char out[NORMALIZE_MAX + 8];
	unsigned char free_digits[TEXTCACHE_TEXT / 8] = { 0 };
	size_t len = strlen(sql);
	uint64_t fp = normalize_sql_marking(sql, len, out, sizeof(out), free_digits);
	textcache_remember(textcache_hash(sql, len), sql, len, fp, free_digits);
	return fp;
}

static uint64_t find(const char *text, size_t len)
{
	uint64_t key;
	return textcache_find(text, len, &key);
}

static void remember(const char *text, size_t len, uint64_t fp)
{
	textcache_remember(textcache_hash(text, len), text, len, fp, NULL);
}

static void test_a_repeated_statement_gets_its_fingerprint_back(void)
{
	textcache_clear();
	const char *sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
	CHECK(find(sql, strlen(sql)) == 0);
	uint64_t fp = normalized_fp(sql);
	remember(sql, strlen(sql), fp);
	char copy[128];
	snprintf(copy, sizeof(copy), "%s", sql); /* another buffer, same bytes */
	CHECK(find(copy, strlen(copy)) == fp);
}

static void test_without_free_digits_only_the_exact_text_matches(void)
{
	textcache_clear();
	const char *a = "select 1 from t where id = 41";
	remember(a, strlen(a), normalized_fp(a));
	CHECK(find("select 1 from t where id = 42", strlen(a)) == 0); /* same length */
	CHECK(find(a, strlen(a) - 1) == 0);                            /* a prefix */
	CHECK(find("SELECT 1 FROM t WHERE id = 41", strlen(a)) == 0); /* same shape */
}

static void test_a_query_with_other_constants_gets_its_fingerprint(void)
{
	textcache_clear();
	const char *sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 41672;";
	uint64_t fp = remember_normalized(sql);
	const char *other = "SELECT abalance FROM pgbench_accounts WHERE aid = 90210;";
	CHECK(fp == normalized_fp(other));
	CHECK(find(other, strlen(other)) == fp);
	fp = remember_normalized("update t set a = -5, b = 17 where id in (1, 2, 3) limit 10");
	other = "update t set a = -7, b = 99 where id in (4, 0, 9) limit 20";
	CHECK(find(other, strlen(other)) == fp);
}

static void test_digits_that_are_not_constants_must_match(void)
{
	textcache_clear();
	const char *cases[][2] = {
		/* identifiers */
		{ "select * from t1 where id = 5", "select * from t2 where id = 5" },
		{ "select \"c1\" from t where id = 5", "select \"c2\" from t where id = 5" },
		/* hex (the x), a fraction, parameters, a digit that became a letter */
		{ "select 0x1f from t where id = 5", "select 0x2f from t where id = 5" },
		{ "select 4.2 from t where id = 5", "select 4.3 from t where id = 5" },
		{ "select $1 from t where id = $2", "select $3 from t where id = $2" },
		{ "select 5 from t where id = 5 ", "select 5 from t where id = a " },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *a = cases[i][0], *b = cases[i][1];
		CHECK(strlen(a) == strlen(b));
		uint64_t fp = remember_normalized(a);
		uint64_t got = find(b, strlen(b));
		CHECK(got == 0 || (got == fp && fp == normalized_fp(b)));
		if (normalized_fp(b) != fp)
			CHECK(got == 0);
	}
	/* those that normalize differently: never found */
	CHECK((remember_normalized(cases[0][0]), find(cases[0][1], strlen(cases[0][1]))) == 0);
	CHECK((remember_normalized(cases[1][0]), find(cases[1][1], strlen(cases[1][1]))) == 0);
	CHECK((remember_normalized(cases[5][0]), find(cases[5][1], strlen(cases[5][1]))) == 0);
}

static void test_long_texts_are_not_cached(void)
{
	textcache_clear();
	char sql[TEXTCACHE_TEXT + 40];
	memset(sql, 'x', sizeof(sql) - 1);
	sql[sizeof(sql) - 1] = '\0';
	remember(sql, strlen(sql), 7);
	CHECK(find(sql, strlen(sql)) == 0);
	CHECK(textcache_bytes() == 0); /* nothing stored, nothing allocated */
}

static void test_many_statements_each_hit_or_miss_never_mismatch(void)
{
	textcache_clear();
	enum { N = 3 * TEXTCACHE_SLOTS };
	char sql[64];
	for (int i = 0; i < N; i++) {
		snprintf(sql, sizeof(sql), "select * from t%d where a = $1", i);
		remember(sql, strlen(sql), normalized_fp(sql));
	}
	int hits = 0, wrong = 0;
	for (int i = 0; i < N; i++) {
		snprintf(sql, sizeof(sql), "select * from t%d where a = $1", i);
		uint64_t fp = find(sql, strlen(sql));
		hits += fp != 0;
		wrong += fp != 0 && fp != normalized_fp(sql);
	}
	CHECK(wrong == 0);
	CHECK(hits > 0 && hits <= TEXTCACHE_SLOTS); /* colliding texts replaced older ones */
	CHECK(textcache_bytes() > 0);
	textcache_clear();
	CHECK(textcache_bytes() == 0);
}

int main(void)
{
	RUN(test_a_repeated_statement_gets_its_fingerprint_back);
	RUN(test_without_free_digits_only_the_exact_text_matches);
	RUN(test_a_query_with_other_constants_gets_its_fingerprint);
	RUN(test_digits_that_are_not_constants_must_match);
	RUN(test_long_texts_are_not_cached);
	RUN(test_many_statements_each_hit_or_miss_never_mismatch);
	return UNIT_REPORT("textcache");
}
