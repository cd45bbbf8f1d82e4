/*
 * test_normalize: SQL text normalization and fingerprints — which queries
 * come out as the same text, and that no input (cut, huge or random bytes)
 * makes the normalizer read or write out of bounds.
 *
 * Every input is copied into a heap block of exactly its length first, so
 * under AddressSanitizer a read past len is caught rather than hidden by a
 * string literal's NUL.
 */
#include "normalize.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

static char text[NORMALIZE_MAX + 4];

/* fingerprints of "" and of the pgbench -S query (see test_fingerprint_is_a_function_of_the_text) */
#define FINGERPRINT_EMPTY 0xea28c4f70197d941ull
#define FINGERPRINT_PGBENCH 0x537250f13b9ac509ull

static uint64_t normalize_bytes(const char *sql, size_t len)
{
	char *exact = malloc(len ? len : 1);
	if (!exact)
		abort();
	memcpy(exact, sql, len);
	uint64_t h = normalize_sql(exact, len, text, sizeof(text));
	free(exact);
	return h;
}

/* the normalized text of sql, valid until the next call */
static const char *norm(const char *sql)
{
	normalize_bytes(sql, strlen(sql));
	return text;
}

static uint64_t fingerprint(const char *sql)
{
	return normalize_bytes(sql, strlen(sql));
}

static void test_pg_sleep_with_different_durations_is_one_query(void)
{
	uint64_t a = fingerprint("select pg_sleep(0.002)");
	CHECK_STR_EQ(text, "select pg_sleep(?)");
	uint64_t b = fingerprint("SELECT pg_sleep( 0.1 )");
	CHECK_STR_EQ(text, "select pg_sleep(?)");
	CHECK(a == b);
}

static void test_fingerprint_is_a_function_of_the_text(void)
{
	/* equal texts, equal fingerprints, however the text came about */
	uint64_t empty = fingerprint("");
	CHECK_STR_EQ(text, "");
	CHECK(fingerprint(" \n\t ") == empty);
	CHECK(fingerprint("-- only a comment") == empty);
	char tiny[3];
	CHECK(normalize_sql("select 1", 8, tiny, sizeof(tiny)) == empty); /* no room: no text */
	uint64_t h = fingerprint("SELECT * FROM t WHERE a = 'x' -- c");
	CHECK_STR_EQ(text, "select*from t where a=?");
	CHECK(fingerprint("select*from t where a=$1") == h);

	/* texts a byte apart differ, whatever the byte and the length */
	CHECK(fingerprint("a") != empty);
	CHECK(fingerprint("select a") != fingerprint("select b"));
	CHECK(fingerprint("select a") != fingerprint("select ab"));
	CHECK(fingerprint("select aaaaaaaaaaaaaaaaaaaa") != fingerprint("select aaaaaaaaaaaaaaaaaaab"));

	/*
	 * Pinned: fingerprints from different machines are compared, so a
	 * platform (byte order, no 128-bit type) where the hash comes out
	 * otherwise, or a change to it, must not go unnoticed.
	 */
	CHECK(fingerprint("") == FINGERPRINT_EMPTY);
	CHECK(fingerprint("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;") ==
	      FINGERPRINT_PGBENCH);
}

static void test_different_queries_have_different_fingerprints(void)
{
	CHECK(fingerprint("select 1 from a") != fingerprint("select 1 from b"));
	CHECK(fingerprint("select a from t") != fingerprint("select \"A\" from t"));
	CHECK(fingerprint("select x from t where a = 1") !=
	      fingerprint("select x from t where a > 1"));
}

static void test_every_string_form_becomes_a_placeholder(void)
{
	static const char *const forms[] = {
		"'plain'", "'it''s'", "'C:\\'", "E'esc\\n'", "e'x'",       "U&'d\\0061t'",
		"u&'x'",   "B'101'",  "X'1F'",  "N'nat'",    "$$dollar$$",
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		char sql[128];
		snprintf(sql, sizeof(sql), "select x from t where a = %s and b", forms[i]);
		CHECK_STR_EQ(norm(sql), "select x from t where a=? and b");
	}
}

static void test_escaped_quote_in_e_string_does_not_end_it(void)
{
	CHECK_STR_EQ(norm("select E'it\\'s' as a"), "select ? as a");
	CHECK_STR_EQ(norm("select E'a\\\\' || b"), "select ?||b");
	CHECK_STR_EQ(norm("select e'x''y' as a"), "select ? as a");
}

static void test_dollar_quotes_with_tags_and_dollars_inside(void)
{
	CHECK_STR_EQ(norm("select $fn$ it's $ a $$ $f $fn$ as a"), "select ? as a");
	CHECK_STR_EQ(norm("select $$ costs $5 $$ as a"), "select ? as a");
	CHECK_STR_EQ(norm("do $a$ begin $b$ x $b$; end $a$;"), "do ?");
	CHECK_STR_EQ(norm("select $_1$x$_1$ as a"), "select ? as a");
	CHECK_STR_EQ(norm("select a$b$ from t"), "select a$b$ from t"); /* $ inside a word */
}

static void test_comments_are_dropped(void)
{
	CHECK_STR_EQ(norm("select /* a /* nested */ still comment */ 1"), "select ?");
	CHECK_STR_EQ(norm("select a -- the column\nfrom t -- end"), "select a from t");
	CHECK_STR_EQ(norm("select a/**/b"), "select a b");
	CHECK_STR_EQ(norm("select 4/2"), "select ?/?");
}

static void test_parameters_become_placeholders(void)
{
	CHECK_STR_EQ(norm("select * from t where id = $1 and name = $23"),
		     "select*from t where id=? and name=?");
	CHECK_STR_EQ(norm("select $1::int"), "select ?::int");
}

static void test_in_lists_of_any_length_read_the_same(void)
{
	uint64_t one = fingerprint("select * from t where id in (1)");
	CHECK_STR_EQ(text, "select*from t where id in(?)");
	uint64_t five = fingerprint("select * from t where id IN (1, 2, 3, 4, 5)");
	CHECK_STR_EQ(text, "select*from t where id in(?)");
	uint64_t params = fingerprint("select * from t where id in ($1,$2,$3)");
	CHECK(one == five);
	CHECK(one == params);
	CHECK_STR_EQ(norm("insert into t values (1, 'a', null), (2, 'b', true)"),
		     "insert into t values(?),(?)");
	CHECK_STR_EQ(norm("select f(a, 1, 2), g(3, b)"), "select f(a,?),g(?,b)");
	CHECK_STR_EQ(norm("select array[1, 2, 3]"), "select array[?]");
}

static void test_list_collapse_keeps_elements_that_are_not_constants(void)
{
	CHECK_STR_EQ(norm("select x from t where x in (1, 2-1)"),
		     "select x from t where x in(?,?-?)");
	CHECK_STR_EQ(norm("select f(1-1, 2)"), "select f(?-?,?)");
	/* a select list is not a "(...)" list: its length changes the result's shape */
	CHECK(fingerprint("select 1, 2") != fingerprint("select 1"));
}

static void test_keywords_fold_but_quoted_identifiers_keep_their_case(void)
{
	CHECK_STR_EQ(norm("SELECT \"MyCol\", Other FROM \"My \"\"Tab\"\"\" WHERE X=1"),
		     "select \"MyCol\",other from \"My \"\"Tab\"\"\" where x=?");
	CHECK_STR_EQ(norm("select U&\"d\\0061t\" from t"), "select u&\"d\\0061t\" from t");
	CHECK_STR_EQ(norm("select \"true\", true_value"), "select \"true\",true_value");
}

static void test_whitespace_folds_to_one_space_between_words_only(void)
{
	CHECK_STR_EQ(norm("  select\ta ,\n\n b  from   t  "), "select a,b from t");
	CHECK_STR_EQ(norm("select a<=b, c <> d"), "select a<=b,c<>d");
	CHECK_STR_EQ(norm("select 'x'as a"), "select ? as a");
}

static void test_one_letter_prefixes_are_still_plain_words(void)
{
	CHECK_STR_EQ(norm("select e, x, n, b, u, xmin from t"), "select e,x,n,b,u,xmin from t");
}

static void test_numbers_of_every_shape(void)
{
	static const char *const numbers[] = { "42",    "4.2",     ".5",   "5.",
					       "1e-3",  "1.5E+10", "0x1F", "0o17",
					       "0b101", "1_000",   "0",    "1_000.000_1" };
	for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
		char sql[64];
		snprintf(sql, sizeof(sql), "select a from t where x = %s", numbers[i]);
		CHECK_STR_EQ(norm(sql), "select a from t where x=?");
	}
}

static void test_booleans_and_null_are_literals(void)
{
	CHECK_STR_EQ(norm("update t set a = TRUE, b = null, c = False"),
		     "update t set a=?,b=?,c=?");
}

static void test_is_null_stays_a_test(void)
{
	CHECK_STR_EQ(norm("select a from t where b IS NULL"), "select a from t where b is null");
	CHECK_STR_EQ(norm("select a from t where b is not true"),
		     "select a from t where b is not true");
	CHECK(fingerprint("where b is null") != fingerprint("where b is not null"));
	CHECK(fingerprint("where b is null") != fingerprint("where b is true"));
	CHECK_STR_EQ(norm("select this null"), "select this ?");
}

static void test_unary_minus_is_part_of_the_literal(void)
{
	CHECK(fingerprint("select a from t where x = -1") ==
	      fingerprint("select a from t where x = 1"));
	CHECK_STR_EQ(norm("select a from t where x = -1"), "select a from t where x=?");
	CHECK_STR_EQ(norm("select a from t where x = - 1.5"), "select a from t where x=?");
	CHECK_STR_EQ(norm("select -1"), "select ?");
	CHECK_STR_EQ(norm("select a from t where x between -5 and -1"),
		     "select a from t where x between ? and ?");
	CHECK_STR_EQ(norm("select f(-1, -.5)"), "select f(?)");
	CHECK_STR_EQ(norm("-1"), "?");
}

static void test_binary_minus_stays_an_operator(void)
{
	CHECK_STR_EQ(norm("select a - 1 from t"), "select a-? from t");
	CHECK_STR_EQ(norm("select a-1, 2-1, f(x)-1, a[1]-1"), "select a-?,?-?,f(x)-?,a[?]-?");
	CHECK_STR_EQ(norm("select a - -1"), "select a-?");
	CHECK_STR_EQ(norm("select -a"), "select-a");
}

static void test_casts_keep_the_type(void)
{
	CHECK_STR_EQ(norm("select 'x'::text, 1::int"), "select ?::text,?::int");
	CHECK_STR_EQ(norm("select '{1,2}'::int[]"), "select ?::int[]");
	CHECK_STR_EQ(norm("select CAST(1 AS bigint)"), "select cast(? as bigint)");
}

static void test_typed_literals_keep_the_type_keyword(void)
{
	CHECK_STR_EQ(norm("select now() - interval '1 day'"), "select now()-interval ?");
	CHECK_STR_EQ(norm("select DATE '2020-01-01'"), "select date ?");
	CHECK_STR_EQ(norm("select timestamptz '2020-01-01 00:00'"), "select timestamptz ?");
}

static void test_statements_and_trailing_semicolons(void)
{
	CHECK_STR_EQ(norm("select 1; select 2;"), "select ?;select ?");
	CHECK_STR_EQ(norm("select 1 ;  ;\n  -- bye\n"), "select ?");
	CHECK_STR_EQ(norm("begin;;commit"), "begin;commit");
	CHECK_STR_EQ(norm("select 1;-1"), "select ?;?");
}

static void test_cut_in_the_middle_of_a_token_ends_cleanly(void)
{
	const char *sql = "select 'abcdef' from t";
	CHECK_STR_EQ((normalize_bytes(sql, 10), text), "select ?");
	CHECK_STR_EQ((normalize_bytes("select E'ab\\", 12), text), "select ?");
	CHECK_STR_EQ((normalize_bytes("select $x$ body", 15), text), "select ?");
	CHECK_STR_EQ((normalize_bytes("select $x", 9), text), "select$x");
	CHECK_STR_EQ((normalize_bytes("select 1 /* open /* c */", 24), text), "select ?");
	CHECK_STR_EQ((normalize_bytes("select \"Abc", 11), text), "select \"Abc");
	CHECK_STR_EQ((normalize_bytes("select -", 8), text), "select-");

	/* every prefix of a query that uses every token kind */
	const char *all =
		"SELECT E'a\\'b', $t$ x $t$, \"Q\"\"q\", -1.5e3, $1 /* c /* n */ */ -- x\n;";
	for (size_t n = 0; n <= strlen(all); n++) {
		normalize_bytes(all, n);
		CHECK(strlen(text) < sizeof(text));
	}
	CHECK_STR_EQ(text, "select ?,?,\"Q\"\"q\",?,?");
}

static void test_long_query_is_cut_with_an_ellipsis(void)
{
	static char sql[20000];
	size_t n = 0;
	n += (size_t)sprintf(sql + n, "select ");
	while (n < sizeof(sql) - 16)
		n += (size_t)sprintf(sql + n, "col%zu, ", n);
	uint64_t h = normalize_bytes(sql, n);
	CHECK_INT_EQ(strlen(text), NORMALIZE_MAX + 3);
	CHECK(memcmp(text + NORMALIZE_MAX, "...", 4) == 0);
	/* less of the same query is cut at the same place: the same text and fingerprint */
	static char cut_text[NORMALIZE_MAX + 4];
	memcpy(cut_text, text, sizeof(cut_text));
	CHECK(normalize_bytes(sql, n / 2) == h);
	CHECK_STR_EQ(text, cut_text);

	/* one huge quoted identifier is cut the same way */
	memset(sql, 'Q', 3000);
	sql[0] = '"';
	sql[2999] = '"';
	normalize_bytes(sql, 3000);
	CHECK_INT_EQ(strlen(text), NORMALIZE_MAX + 3);
	CHECK(text[0] == '"' && text[NORMALIZE_MAX - 1] == 'Q');
}

static void test_text_of_exactly_the_limit_is_not_cut(void)
{
	static char sql[NORMALIZE_MAX + 2];
	memset(sql, 'a', sizeof(sql));
	normalize_bytes(sql, NORMALIZE_MAX);
	CHECK_INT_EQ(strlen(text), NORMALIZE_MAX);
	normalize_bytes(sql, NORMALIZE_MAX + 1);
	CHECK_INT_EQ(strlen(text), NORMALIZE_MAX + 3);
	/* a trailing ';' past the limit is dropped, not a reason to cut */
	sql[NORMALIZE_MAX] = ';';
	normalize_bytes(sql, NORMALIZE_MAX + 1);
	CHECK_INT_EQ(strlen(text), NORMALIZE_MAX);
}

static void test_small_output_buffer_is_never_overrun(void)
{
	char small[16];
	memset(small, 'Z', sizeof(small));
	normalize_sql("select abcdefghijklmnop", 23, small, 10);
	CHECK_STR_EQ(small, "select...");
	CHECK(small[10] == 'Z');
	normalize_sql("select 1", 8, small, 3);
	CHECK_STR_EQ(small, "");
	normalize_sql(NULL, 0, small, sizeof(small));
	CHECK_STR_EQ(small, "");
}

static void test_nul_and_control_bytes_separate_tokens(void)
{
	CHECK_STR_EQ((normalize_bytes("select\0 1\x01", 10), text), "select ?");
	CHECK_STR_EQ((normalize_bytes("select \"a\0b\"", 12), text), "select \"ab\"");
	CHECK_STR_EQ(norm("select caf\xc3\xa9 from \xe6\x97\xa5"),
		     "select caf\xc3\xa9 from \xe6\x97\xa5");
}

/* xorshift64: deterministic, so a failure reproduces */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void test_random_bytes_never_crash_or_overrun(void)
{
	/* half the inputs from SQL's special characters, to reach the lexers' corners */
	static const char sqlish[] = "'\"$-/*.;:,()0123456789eExXuU&_aZ \n\\\0?";
	unsigned char buf[300];
	static char out[NORMALIZE_MAX + 4], spaced[NORMALIZE_MAX + 4], prev[NORMALIZE_MAX + 4];
	uint64_t prev_h = normalize_sql("", 0, prev, sizeof(prev));
	int bad = 0, unfair = 0;
	for (int iter = 0; iter < 100000; iter++) {
		size_t len = (size_t)(rng_next() % (sizeof(buf) + 1));
		bool sqly = iter & 1;
		for (size_t i = 0; i < len; i++) {
			uint64_t r = rng_next();
			buf[i] = sqly ? (unsigned char)sqlish[r % (sizeof(sqlish) - 1)]
				      : (unsigned char)r;
		}
		char *exact = malloc(len + 1);
		if (!exact)
			abort();
		memcpy(exact, buf, len);
		memset(out, 0x55, sizeof(out));
		uint64_t h = normalize_sql(exact, len, out, sizeof(out));
		bool terminated = memchr(out, '\0', sizeof(out)) != NULL;
		if (!terminated || strlen(out) >= sizeof(out) ||
		    normalize_sql(exact, len, out, sizeof(out)) != h)
			bad++;
		/*
		 * The fingerprint is a function of the text and tells texts
		 * apart: against the last input's, and against this input's
		 * with a space after it (mostly the same text, not always).
		 */
		exact[len] = ' ';
		uint64_t h2 = normalize_sql(exact, len + 1, spaced, sizeof(spaced));
		if ((strcmp(out, prev) == 0) != (h == prev_h) ||
		    (strcmp(out, spaced) == 0) != (h == h2))
			unfair++;
		memcpy(prev, out, strlen(out) + 1);
		prev_h = h;
		free(exact);
	}
	CHECK_INT_EQ(bad, 0);
	CHECK_INT_EQ(unfair, 0);
}

static void test_literal_keyword_at_the_limit_still_becomes_a_placeholder(void)
{
	/* TRUE does not fit before the limit, but its "?" does */
	char small[24];
	normalize_sql("update t set a = TRUE", 21, small, 20);
	CHECK_STR_EQ(small, "update t set a=?");
	normalize_sql("update t set a = TRUE", 21, small, 19);
	CHECK_STR_EQ(small, "update t set a=...");
}

static void test_rules_hold_in_long_runs_of_words(void)
{
	/*
	 * Words joined by one space or one punctuation byte are copied 16 bytes
	 * at a time on x86-64; literals, IS [NOT] tests and string prefixes
	 * still come out right across those steps, and a word longer than 16
	 * bytes may end the input.
	 */
	CHECK_STR_EQ(norm("select t.true, x.null, abcdefghijkl is not null, y is true from tbl"),
		     "select t.?,x.?,abcdefghijkl is not null,y is true from tbl");
	CHECK_STR_EQ(norm("select abcdefghijklmnop is not false, e'x' from s"),
		     "select abcdefghijklmnop is not false,? from s");
	CHECK_STR_EQ(norm("select * from a_table_name_longer_than_sixteen"),
		     "select*from a_table_name_longer_than_sixteen");
}

int main(void)
{
	RUN(test_pg_sleep_with_different_durations_is_one_query);
	RUN(test_fingerprint_is_a_function_of_the_text);
	RUN(test_different_queries_have_different_fingerprints);
	RUN(test_every_string_form_becomes_a_placeholder);
	RUN(test_escaped_quote_in_e_string_does_not_end_it);
	RUN(test_dollar_quotes_with_tags_and_dollars_inside);
	RUN(test_comments_are_dropped);
	RUN(test_parameters_become_placeholders);
	RUN(test_in_lists_of_any_length_read_the_same);
	RUN(test_list_collapse_keeps_elements_that_are_not_constants);
	RUN(test_keywords_fold_but_quoted_identifiers_keep_their_case);
	RUN(test_whitespace_folds_to_one_space_between_words_only);
	RUN(test_one_letter_prefixes_are_still_plain_words);
	RUN(test_numbers_of_every_shape);
	RUN(test_booleans_and_null_are_literals);
	RUN(test_is_null_stays_a_test);
	RUN(test_unary_minus_is_part_of_the_literal);
	RUN(test_binary_minus_stays_an_operator);
	RUN(test_casts_keep_the_type);
	RUN(test_typed_literals_keep_the_type_keyword);
	RUN(test_statements_and_trailing_semicolons);
	RUN(test_cut_in_the_middle_of_a_token_ends_cleanly);
	RUN(test_long_query_is_cut_with_an_ellipsis);
	RUN(test_text_of_exactly_the_limit_is_not_cut);
	RUN(test_small_output_buffer_is_never_overrun);
	RUN(test_nul_and_control_bytes_separate_tokens);
	RUN(test_random_bytes_never_crash_or_overrun);
	RUN(test_literal_keyword_at_the_limit_still_becomes_a_placeholder);
	RUN(test_rules_hold_in_long_runs_of_words);
	return UNIT_REPORT("normalize");
}
