/*
 * unit.h: the few macros every C unit test in test/unit uses.
 *
 * A test is a `static void test_something(void)` calling CHECK*; a failed
 * check prints file:line and what it saw, and the test goes on. RUN(test)
 * counts the test as passed when none of its checks failed. main ends with
 * `return UNIT_REPORT("config");`, which prints `config: 37 passed, 0 failed`
 * and yields the exit status (non-zero when anything failed).
 */
#ifndef PGPULSE_TEST_UNIT_H
#define PGPULSE_TEST_UNIT_H

#include <stdio.h>
#include <string.h>

static struct {
	int passed, failed;   /* tests */
	int checks_failed;    /* checks, across all tests */
	const char *current;  /* name of the running test */
} unit_run;

#define UNIT_FAIL_(...)                                                              \
	do {                                                                         \
		unit_run.checks_failed++;                                            \
		fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__,                   \
			unit_run.current ? unit_run.current : "?");                 \
		fprintf(stderr, __VA_ARGS__);                                        \
		fputc('\n', stderr);                                                 \
	} while (0)

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (!(cond))                                                         \
			UNIT_FAIL_("CHECK(%s) failed", #cond);                       \
	} while (0)

#define CHECK_STR_EQ(got, want)                                                      \
	do {                                                                         \
		const char *got_ = (got), *want_ = (want);                           \
		if (!got_ || !want_ || strcmp(got_, want_) != 0)                     \
			UNIT_FAIL_("%s is \"%s\", expected \"%s\"", #got,             \
				   got_ ? got_ : "(null)", want_ ? want_ : "(null)");  \
	} while (0)

#define CHECK_INT_EQ(got, want)                                                      \
	do {                                                                         \
		long long got_ = (long long)(got), want_ = (long long)(want);        \
		if (got_ != want_)                                                   \
			UNIT_FAIL_("%s is %lld, expected %lld", #got, got_, want_);  \
	} while (0)

#define RUN(test)                                                                    \
	do {                                                                         \
		int before_ = unit_run.checks_failed;                                \
		unit_run.current = #test;                                            \
		test();                                                              \
		if (unit_run.checks_failed == before_)                               \
			unit_run.passed++;                                           \
		else                                                                 \
			unit_run.failed++;                                           \
		unit_run.current = NULL;                                             \
	} while (0)

#define UNIT_REPORT(suite)                                                           \
	(printf("%s: %d passed, %d failed\n", (suite), unit_run.passed, unit_run.failed), \
	 unit_run.failed ? 1 : 0)

#endif
