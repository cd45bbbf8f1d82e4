/*
 * test_stmt_names: a pass-through client's statement names -> fingerprints
 * (src/telemetry/stmt_names.c): exact for every name it holds, bounded,
 * the least recently used name forgotten first.
 */
#include "stmt_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

static void put(struct stmt_names **m, const char *name, uint64_t fp)
{
	stmt_names_remember(m, name, strlen(name), fp);
}

static uint64_t get(struct stmt_names *m, const char *name)
{
	return stmt_names_find(m, name, strlen(name));
}

static void test_every_name_of_many_keeps_its_own_fingerprint(void)
{
	struct stmt_names *m = NULL;
	char name[32];
	CHECK(get(m, "s0") == 0);
	for (int i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "_pg3_%d", i);
		put(&m, name, 1000 + (uint64_t)i);
	}
	CHECK(stmt_names_count(m) == 500);
	int wrong = 0;
	for (int i = 0; i < 500; i++) {
		snprintf(name, sizeof(name), "_pg3_%d", i);
		wrong += get(m, name) != 1000 + (uint64_t)i;
	}
	CHECK(wrong == 0);
	CHECK(get(m, "_pg3_500") == 0);
	CHECK(get(m, "_pg3_") == 0);
	stmt_names_free(m);
}

static void test_parse_again_replaces_and_close_forgets(void)
{
	struct stmt_names *m = NULL;
	put(&m, "s1", 11);
	put(&m, "s2", 22);
	put(&m, "s1", 33);
	CHECK(get(m, "s1") == 33);
	CHECK(stmt_names_count(m) == 2);
	stmt_names_forget(m, "s1", 2);
	CHECK(get(m, "s1") == 0);
	CHECK(get(m, "s2") == 22);
	stmt_names_forget(m, "nope", 4);
	CHECK(stmt_names_count(m) == 1);
	stmt_names_free(m);
}

/* deletes shift entries back: every survivor stays reachable, whatever chains they were on */
static void test_names_survive_many_forgets(void)
{
	struct stmt_names *m = NULL;
	char name[32];
	for (int i = 0; i < 600; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		put(&m, name, (uint64_t)i + 1);
	}
	for (int i = 0; i < 600; i += 3) {
		snprintf(name, sizeof(name), "n%d", i);
		stmt_names_forget(m, name, strlen(name));
	}
	int wrong = 0;
	for (int i = 0; i < 600; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		wrong += get(m, name) != (i % 3 ? (uint64_t)i + 1 : 0);
	}
	CHECK(wrong == 0);
	CHECK(stmt_names_count(m) == 400);
	stmt_names_free(m);
}

static void test_bounded_and_the_least_recently_used_goes_first(void)
{
	struct stmt_names *m = NULL;
	char name[32];
	for (int i = 0; i < STMT_NAMES_MAX; i++) {
		snprintf(name, sizeof(name), "old%d", i);
		put(&m, name, (uint64_t)i + 1);
	}
	CHECK(get(m, "old0") == 1); /* used lately: old1 is now the least recently used */
	size_t full = stmt_names_bytes(m);
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "new%d", i);
		put(&m, name, 5000 + (uint64_t)i);
	}
	CHECK(stmt_names_count(m) == STMT_NAMES_MAX);
	CHECK(get(m, "old0") == 1);
	for (int i = 1; i <= 10; i++) {
		snprintf(name, sizeof(name), "old%d", i);
		CHECK(get(m, name) == 0);
	}
	CHECK(get(m, "old11") == 12);
	CHECK(get(m, "new9") == 5009);
	CHECK(stmt_names_bytes(m) <= full + 10);
	CHECK(stmt_names_bytes(m) < 100 * 1024);
	stmt_names_free(m);
}

static void test_a_name_past_256_bytes_is_not_kept(void)
{
	struct stmt_names *m = NULL;
	char name[300];
	memset(name, 'x', sizeof(name));
	stmt_names_remember(&m, name, 256, 7);
	stmt_names_remember(&m, name, 257, 8);
	CHECK(stmt_names_find(m, name, 256) == 7);
	CHECK(stmt_names_find(m, name, 257) == 0);
	CHECK(stmt_names_count(m) == 1);
	stmt_names_free(m);
}

int main(void)
{
	RUN(test_every_name_of_many_keeps_its_own_fingerprint);
	RUN(test_parse_again_replaces_and_close_forgets);
	RUN(test_names_survive_many_forgets);
	RUN(test_bounded_and_the_least_recently_used_goes_first);
	RUN(test_a_name_past_256_bytes_is_not_kept);
	return UNIT_REPORT("stmt_names");
}
