/*
 * test_textcache: a statement seen before gets back the fingerprint that
 * normalizing it gave, only for exactly the same text.
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

static uint64_t find(const char *text, size_t len)
{
	return textcache_find(textcache_hash(text, len), text, len);
}

static void remember(const char *text, size_t len, uint64_t fp)
{
	textcache_remember(textcache_hash(text, len), text, len, fp);
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

static void test_only_the_exact_text_matches(void)
{
	textcache_clear();
	const char *a = "select 1 from t where id = 41";
	remember(a, strlen(a), normalized_fp(a));
	CHECK(find("select 1 from t where id = 42", strlen(a)) == 0); /* same length */
	CHECK(find(a, strlen(a) - 1) == 0);                            /* a prefix */
	CHECK(find("SELECT 1 FROM t WHERE id = 41", strlen(a)) == 0); /* same shape */
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
	RUN(test_only_the_exact_text_matches);
	RUN(test_long_texts_are_not_cached);
	RUN(test_many_statements_each_hit_or_miss_never_mismatch);
	return UNIT_REPORT("textcache");
}
