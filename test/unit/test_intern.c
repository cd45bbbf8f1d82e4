/*
 * test_intern: equal strings share one copy, so a client's and a server's
 * parameter values compare by pointer; the copy lives exactly as long as
 * its holders, however many distinct strings come and go.
 */
#include "intern.h"

#include <stdio.h>
#include <string.h>

#include "unit.h"

static void test_equal_text_gives_the_same_pointer(void)
{
	char a[] = "UTF8", b[] = "UTF8";
	const char *x = intern_get(a);
	const char *y = intern_get(b);
	CHECK(x == y);
	CHECK(x != a && x != b);
	CHECK_STR_EQ(x, "UTF8");
	const char *lower = intern_get("utf8");
	CHECK(lower != x); /* compared as bytes, as strcmp would */
	intern_drop(lower);
	intern_drop(x);
	intern_drop(y);
}

static void test_last_drop_frees_and_the_next_get_makes_a_fresh_copy(void)
{
	size_t n0, bytes0, n1, bytes1;
	intern_stats(&n0, &bytes0);
	const char *x = intern_get("Europe/Berlin");
	const char *held = intern_hold(x);
	intern_stats(&n1, &bytes1);
	CHECK(n1 == n0 + 1);
	intern_drop(x);
	intern_stats(&n1, &bytes1);
	CHECK(n1 == n0 + 1); /* still held once */
	intern_drop(held);
	intern_stats(&n1, &bytes1);
	CHECK(n1 == n0);
}

static void test_set_replaces_and_survives_setting_its_own_value(void)
{
	size_t n0, bytes0, n1, bytes1;
	intern_stats(&n0, &bytes0);
	const char *slot = NULL;
	intern_set(&slot, "ISO, MDY");
	CHECK_STR_EQ(slot, "ISO, MDY");
	intern_set(&slot, slot); /* the value is the old text itself */
	CHECK_STR_EQ(slot, "ISO, MDY");
	intern_set(&slot, "German");
	CHECK_STR_EQ(slot, "German");
	intern_set(&slot, NULL);
	CHECK(slot == NULL);
	intern_stats(&n1, &bytes1);
	CHECK(n1 == n0);
}

static void test_many_distinct_strings_grow_the_table_and_all_come_back(void)
{
	enum { N = 5000 };
	static const char *held[N];
	char buf[32];
	size_t n0, bytes0, n1, bytes1;
	intern_stats(&n0, &bytes0);
	for (int i = 0; i < N; i++) {
		snprintf(buf, sizeof(buf), "app-%d", i);
		held[i] = intern_get(buf);
	}
	intern_stats(&n1, &bytes1);
	CHECK(n1 == n0 + N);
	int found = 0;
	for (int i = 0; i < N; i++) {
		snprintf(buf, sizeof(buf), "app-%d", i);
		const char *again = intern_get(buf);
		found += again == held[i];
		intern_drop(again);
	}
	CHECK(found == N);
	for (int i = 0; i < N; i++)
		intern_drop(held[i]);
	intern_stats(&n1, &bytes1);
	CHECK(n1 == n0);
}

static void test_empty_string_and_null(void)
{
	CHECK(intern_get(NULL) == NULL);
	intern_drop(NULL);
	const char *e = intern_get("");
	CHECK(e && e[0] == '\0');
	CHECK(intern_get("") == e);
	intern_drop(e);
	intern_drop(e);
}

int main(void)
{
	RUN(test_equal_text_gives_the_same_pointer);
	RUN(test_last_drop_frees_and_the_next_get_makes_a_fresh_copy);
	RUN(test_set_replaces_and_survives_setting_its_own_value);
	RUN(test_many_distinct_strings_grow_the_table_and_all_come_back);
	RUN(test_empty_string_and_null);
	return UNIT_REPORT("intern");
}
