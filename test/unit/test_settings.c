/*
 * test_settings: a client's startup settings become one canonical text, so
 * equal sets (in any order, any case) are one interned pointer; `options`
 * is split as PostgreSQL splits it; and the SQL that moves a server from
 * one set to another touches exactly the settings that differ.
 */
#include "settings.h"

#include <stdio.h>
#include <string.h>

#include "intern.h"
#include "proto.h"
#include "unit.h"

static bool add_to_builder(const char *name, const char *value, void *arg, char *why, size_t whylen)
{
	return settings_add(arg, name, value, why, whylen);
}

static const char *set_of(const char *const *pairs)
{
	struct settings_builder b;
	char why[256];
	settings_builder_init(&b);
	for (; pairs[0]; pairs += 2)
		CHECK(settings_add(&b, pairs[0], pairs[1], why, sizeof(why)));
	const char *s = settings_intern(&b);
	settings_builder_free(&b);
	return s;
}

static void test_equal_sets_in_any_order_and_case_are_one_pointer(void)
{
	const char *a = set_of((const char *const[]){ "statement_timeout", "5s", "Work_Mem", "64MB", NULL });
	const char *b = set_of((const char *const[]){ "work_mem", "64MB", "STATEMENT_TIMEOUT", "5s", NULL });
	CHECK(a == b);
	CHECK_STR_EQ(a, "statement_timeout=5s\nwork_mem=64MB\n");
	const char *c = set_of((const char *const[]){ "statement_timeout", "6s", "work_mem", "64MB", NULL });
	CHECK(c != a);
	CHECK(set_of((const char *const[]){ NULL }) == NULL);
	intern_drop(a);
	intern_drop(b);
	intern_drop(c);
}

static void test_a_later_value_of_a_name_wins(void)
{
	const char *s = set_of((const char *const[]){ "search_path", "a", "SEARCH_PATH", "b, c", NULL });
	CHECK_STR_EQ(s, "search_path=b, c\n");
	intern_drop(s);
}

static void test_names_postgresql_could_not_have_are_refused(void)
{
	struct settings_builder b;
	char why[256];
	settings_builder_init(&b);
	CHECK(!settings_add(&b, "", "x", why, sizeof(why)));
	CHECK(!settings_add(&b, "a b", "x", why, sizeof(why)));
	CHECK(!settings_add(&b, "x;drop", "x", why, sizeof(why)));
	CHECK(!settings_add(&b, "a\"b", "x", why, sizeof(why)));
	CHECK(!settings_add(&b, ".s", "x", why, sizeof(why)));
	CHECK(!settings_add(&b, "a..b", "x", why, sizeof(why)));
	CHECK(!settings_add(&b, "a.", "x", why, sizeof(why)));
	CHECK(strstr(why, "invalid configuration parameter name") != NULL);
	static char long_name[SETTING_NAME_MAX + 2];
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	CHECK(!settings_add(&b, long_name, "x", why, sizeof(why)));
	long_name[100] = '\0'; /* longer than NAMEDATALEN: PostgreSQL takes such custom names */
	CHECK(settings_add(&b, long_name, "x", why, sizeof(why)));
	CHECK(settings_add(&b, "my.custom_var", "x", why, sizeof(why)));
	/* a packet key keeps its '-' (PostgreSQL then refuses work-mem itself) */
	CHECK(settings_add(&b, "work-mem", "x", why, sizeof(why)));
	settings_builder_free(&b);
}

static const char *options_set(const char *options, char *why, size_t whylen)
{
	struct settings_builder b;
	settings_builder_init(&b);
	const char *s = NULL;
	struct settings_refusal r;
	if (settings_parse_options(options, add_to_builder, &b, &r)) {
		s = settings_intern(&b);
	} else {
		s = intern_get("(refused)");
		snprintf(why, whylen, "%.5s %.190s%s%.48s", r.sqlstate, r.message, r.hint ? " HINT " : "", r.hint ? r.hint : "");
	}
	settings_builder_free(&b);
	return s;
}

static void test_options_are_split_as_postgresql_splits_them(void)
{
	char why[256];
	const char *s = options_set("  -c statement_timeout=5s  -cwork_mem=1MB --lock-timeout=2s ", why, sizeof(why));
	CHECK_STR_EQ(s, "lock_timeout=2s\nstatement_timeout=5s\nwork_mem=1MB\n");
	intern_drop(s);
	/* a backslash keeps a space (or itself) inside a word */
	s = options_set("-c search_path=a,\\ b -c application_name=x\\\\y", why, sizeof(why));
	CHECK_STR_EQ(s, "application_name=x\\\\y\nsearch_path=a, b\n");
	intern_drop(s);
	s = options_set("", why, sizeof(why));
	CHECK(s == NULL);
}

static void test_options_other_than_c_and_long_ones_are_refused_by_name(void)
{
	char why[256];
	const char *s = options_set("-B 100", why, sizeof(why));
	CHECK_STR_EQ(s, "(refused)");
	CHECK(strstr(why, "\"-B\"") != NULL);
	intern_drop(s);
	s = options_set("-c work_mem", why, sizeof(why));
	CHECK_STR_EQ(why, "42601 -c work_mem requires a value");
	intern_drop(s);
}

/* where PostgreSQL's getopt refuses too, its words, code and hint */
static void test_options_postgresql_refuses_get_its_own_words(void)
{
	char why[256];
	const char *s = options_set("-c", why, sizeof(why));
	CHECK_STR_EQ(s, "(refused)");
	CHECK_STR_EQ(why, "42601 invalid command-line argument for server process: -c HINT Try \"postgres --help\" for "
			  "more information.");
	intern_drop(s);
	s = options_set("-x", why, sizeof(why));
	CHECK_STR_EQ(why, "42601 invalid command-line argument for server process: -x HINT Try \"postgres --help\" for "
			  "more information.");
	intern_drop(s);
	s = options_set("-c work_mem=1MB -- -c work_mem=2MB", why, sizeof(why));
	CHECK_STR_EQ(why, "42601 invalid command-line argument for server process: -c HINT Try \"postgres --help\" for "
			  "more information.");
	intern_drop(s);
	s = options_set("-c =x", why, sizeof(why));
	CHECK_STR_EQ(why, "42704 unrecognized configuration parameter \"\"");
	intern_drop(s);
	s = options_set("-c bad!name=1", why, sizeof(why));
	CHECK(strncmp(why, "42602 invalid configuration parameter name", 42) == 0);
	intern_drop(s);
}

/* a bare "--" ends the switches, as getopt's end of options */
static void test_a_bare_double_dash_ends_the_switches(void)
{
	char why[256];
	const char *s = options_set("--", why, sizeof(why));
	CHECK(s == NULL);
	s = options_set(" -c work_mem=64MB -- ", why, sizeof(why));
	CHECK_STR_EQ(s, "work_mem=64MB\n");
	intern_drop(s);
}

static const char *sync_sql(const char *have, const char *want)
{
	static char out[1024];
	struct pktbuf sql;
	pktbuf_init(&sql);
	settings_sync_sql(&sql, have, want, false);
	snprintf(out, sizeof(out), "%.*s", (int)sql.len, (const char *)sql.data);
	pktbuf_free(&sql);
	return out;
}

static void test_sync_touches_exactly_what_differs(void)
{
	const char *a = set_of((const char *const[]){ "statement_timeout", "5s", "work_mem", "64MB", NULL });
	const char *b = set_of((const char *const[]){ "lock_timeout", "1s", "work_mem", "64MB", NULL });
	const char *c = set_of((const char *const[]){ "lock_timeout", "1s", "work_mem", "it's\n", NULL });
	CHECK_STR_EQ(sync_sql(a, a), "");
	CHECK_STR_EQ(sync_sql(a, b),
		     "SELECT pg_catalog.set_config(E'lock_timeout',E'1s',false);RESET \"statement_timeout\";");
	CHECK_STR_EQ(sync_sql(b, c), "SELECT pg_catalog.set_config(E'work_mem',E'it''s\\x0a',false);");
	CHECK_STR_EQ(sync_sql(NULL, a),
		     "SELECT pg_catalog.set_config(E'statement_timeout',E'5s',false);"
		     "SELECT pg_catalog.set_config(E'work_mem',E'64MB',false);");
	CHECK_STR_EQ(sync_sql(a, NULL), "RESET \"statement_timeout\";RESET \"work_mem\";");
	intern_drop(a);
	intern_drop(b);
	intern_drop(c);
}

static void test_reset_quotes_each_part_of_a_custom_name(void)
{
	const char *a = set_of((const char *const[]){ "all.x", "1", NULL });
	CHECK_STR_EQ(sync_sql(a, NULL), "RESET \"all\".\"x\";");
	intern_drop(a);
}

static void test_an_unsure_server_gets_every_name_reset_and_set(void)
{
	const char *a = set_of((const char *const[]){ "statement_timeout", "5s", NULL });
	struct pktbuf sql;
	pktbuf_init(&sql);
	settings_sync_sql(&sql, a, a, true);
	char out[256];
	snprintf(out, sizeof(out), "%.*s", (int)sql.len, (const char *)sql.data);
	CHECK_STR_EQ(out, "RESET \"statement_timeout\";SELECT pg_catalog.set_config(E'statement_timeout',E'5s',false);");
	pktbuf_free(&sql);
	intern_drop(a);
}

static bool collect(const char *name, const char *value, void *arg)
{
	char *out = arg;
	size_t n = strlen(out);
	snprintf(out + n, 256 - n, "[%s|%s]", name, value);
	return true;
}

static void test_each_decodes_what_intern_encoded(void)
{
	const char *s = set_of((const char *const[]){ "b", "x\\y\nz", "a", "", NULL });
	char out[256] = "";
	settings_each(s, collect, out);
	CHECK_STR_EQ(out, "[a|][b|x\\y\nz]");
	intern_drop(s);
}

int main(void)
{
	RUN(test_equal_sets_in_any_order_and_case_are_one_pointer);
	RUN(test_a_later_value_of_a_name_wins);
	RUN(test_names_postgresql_could_not_have_are_refused);
	RUN(test_options_are_split_as_postgresql_splits_them);
	RUN(test_options_other_than_c_and_long_ones_are_refused_by_name);
	RUN(test_options_postgresql_refuses_get_its_own_words);
	RUN(test_a_bare_double_dash_ends_the_switches);
	RUN(test_sync_touches_exactly_what_differs);
	RUN(test_each_decodes_what_intern_encoded);
	RUN(test_reset_quotes_each_part_of_a_custom_name);
	RUN(test_an_unsure_server_gets_every_name_reset_and_set);
	return UNIT_REPORT("settings");
}
