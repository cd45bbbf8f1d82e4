/*
 * test_saslprep: SASLprep of passwords — the examples of RFC 4013 section 3,
 * NFKC (Hangul, reordering of combining marks, compositions that are
 * blocked or excluded), PostgreSQL's choices (ASCII untouched, checks
 * before normalization, empty refused) and the fallback to the raw bytes.
 *
 * Expected NFKC forms were computed with Python's unicodedata.normalize.
 */
#include "saslprep.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* saslprep(in) succeeds and gives want */
static bool prepares_to(const char *in, const char *want)
{
	char *out = (char *)1;
	enum saslprep_result r = saslprep(in, &out);
	bool ok = r == SASLPREP_OK && out && strcmp(out, want) == 0;
	if (!ok)
		fprintf(stderr, "  saslprep(\"%s\"): result %d, \"%s\", expected \"%s\"\n", in,
			(int)r, r == SASLPREP_OK && out ? out : "(none)", want);
	saslprep_free(r == SASLPREP_OK ? out : NULL);
	return ok;
}

/* saslprep(in) fails with want, leaves *out NULL, and the password is used raw */
static bool refused_with(const char *in, enum saslprep_result want)
{
	char *out = (char *)1;
	enum saslprep_result r = saslprep(in, &out);
	char *raw = saslprep_password(in);
	bool ok = r == want && out == NULL && raw && strcmp(raw, in) == 0;
	if (!ok)
		fprintf(stderr, "  saslprep(\"%s\"): result %d, expected %d\n", in, (int)r,
			(int)want);
	saslprep_free(raw);
	return ok;
}

static void test_rfc4013_examples(void)
{
	/* <U+00AD> is mapped to nothing */
	CHECK(prepares_to("I\u00ADX", "IX"));
	CHECK(prepares_to("user", "user"));
	/* case is preserved */
	CHECK(prepares_to("USER", "USER"));
	/* U+00AA FEMININE ORDINAL INDICATOR: NFKC to "a" */
	CHECK(prepares_to("\u00AA", "a"));
	/* U+2168 ROMAN NUMERAL NINE: NFKC to "IX" */
	CHECK(prepares_to("\u2168", "IX"));
	/* U+0007 is prohibited: PostgreSQL passes pure ASCII through untouched,
	   so alone it is "prepared" to itself; among non-ASCII it is refused */
	CHECK(prepares_to("\x07", "\x07"));
	CHECK(refused_with("\xc3\xa9\x07", SASLPREP_PROHIBITED));
	/* U+0627 ARABIC LETTER ALEF then "1": a RandALCat string must end with one */
	CHECK(refused_with("\u06271", SASLPREP_PROHIBITED));
}

static void test_the_issue_password_prepares_like_postgresql(void)
{
	CHECK(prepares_to("IX-\u2168", "IX-IX"));
}

static void test_non_ascii_spaces_become_space(void)
{
	/* U+3000 IDEOGRAPHIC SPACE, U+00A0 NO-BREAK SPACE, U+2003 EM SPACE */
	CHECK(prepares_to("a\u3000b", "a b"));
	CHECK(prepares_to("a\u00A0b\u2003c", "a b c"));
	/* U+200B is in both C.1.2 and B.1: PostgreSQL maps it to SPACE */
	CHECK(prepares_to("a\u200Bb", "a b"));
	/* mapped to nothing: U+200D, U+FEFF, variation selector U+FE0F */
	CHECK(prepares_to("a\u200Db\uFEFFc\uFE0F", "abc"));
}

static void test_hangul_is_composed_and_decomposed(void)
{
	/* conjoining jamo L V T compose into U+AC01 */
	CHECK(prepares_to("\u1100\u1161\u11A8", "\uAC01"));
	/* LV syllable U+AC00 + T */
	CHECK(prepares_to("\uAC00\u11A8", "\uAC01"));
	/* a precomposed syllable survives decomposition and recomposition */
	CHECK(prepares_to("\uD7A3", "\uD7A3"));
	/* U+3131 HANGUL LETTER KIYEOK (compatibility jamo): NFKC to U+1100 */
	CHECK(prepares_to("\u3131", "\u1100"));
}

static void test_combining_marks_are_reordered_then_composed(void)
{
	/* e + circumflex (230) + dot below (220), either order: U+1EC7 */
	CHECK(prepares_to("e\u0302\u0323", "\u1EC7"));
	CHECK(prepares_to("e\u0323\u0302", "\u1EC7"));
	/* U+1E9B U+0323: the long s with dot becomes U+1E69 under compatibility */
	CHECK(prepares_to("\u1E9B\u0323", "\u1E69"));
	/* a second acute is blocked by the first (same class) */
	CHECK(prepares_to("a\u0301\u0301", "\u00E1\u0301"));
	/* a combining mark with no starter before it stays first */
	CHECK(prepares_to("\u0301e", "\u0301e"));
}

static void test_long_run_of_marks_is_sorted_stably(void)
{
	/* q then 10 x (acute 230, dot below 220, grave below 220, circumflex 230):
	   the 220s come first, each class keeps its order */
	char in[1 + 10 * 8 + 1], want[sizeof(in)];
	char *p = in, *w = want;
	*p++ = 'q';
	*w++ = 'q';
	for (int i = 0; i < 10; i++) {
		memcpy(p, "\u0301\u0323\u0316\u0302", 8);
		p += 8;
	}
	for (int i = 0; i < 10; i++, w += 4)
		memcpy(w, "\u0323\u0316", 4);
	for (int i = 0; i < 10; i++, w += 4)
		memcpy(w, "\u0301\u0302", 4);
	*p = *w = '\0';
	CHECK(prepares_to(in, want));
}

static void test_compatibility_and_singleton_decompositions(void)
{
	/* U+0958 DEVANAGARI LETTER QA is excluded from recomposition */
	CHECK(prepares_to("\u0958", "\u0915\u093C"));
	/* U+212B ANGSTROM SIGN: singleton to U+00C5 */
	CHECK(prepares_to("\u212B", "\u00C5"));
	/* U+FB01 LATIN SMALL LIGATURE FI */
	CHECK(prepares_to("\uFB01", "fi"));
	/* U+FDFA, the longest decomposition (18 code points, Arabic: bidi holds) */
	CHECK(prepares_to("\uFDFA", "\u0635\u0644\u0649 \u0627\u0644\u0644\u0647 "
				    "\u0639\u0644\u064A\u0647 \u0648\u0633\u0644\u0645"));
}

static void test_bidi_rule(void)
{
	/* RandALCat first and last, no LCat: fine */
	CHECK(prepares_to("\u06271\u0628", "\u06271\u0628"));
	/* an LCat character among RandALCat ones */
	CHECK(refused_with("\u0627a\u0628", SASLPREP_PROHIBITED));
	/* starting with a digit */
	CHECK(refused_with("1\u0627", SASLPREP_PROHIBITED));
}

static void test_prohibited_and_unassigned_are_refused(void)
{
	/* U+E000 private use, U+FFFE non-character, U+0085 control, U+E0041 tag */
	CHECK(refused_with("a\uE000", SASLPREP_PROHIBITED));
	CHECK(refused_with("a\uFFFE", SASLPREP_PROHIBITED));
	CHECK(refused_with("a\xc2\x85", SASLPREP_PROHIBITED));
	CHECK(refused_with("a\U000E0041", SASLPREP_PROHIBITED));
	/* unassigned in Unicode 3.2: U+0221, U+1F600 (an emoji) */
	CHECK(refused_with("\u0221", SASLPREP_PROHIBITED));
	CHECK(refused_with("pw\U0001F600", SASLPREP_PROHIBITED));
	/* only characters that map to nothing: PostgreSQL refuses the empty result */
	CHECK(refused_with("\u00AD", SASLPREP_PROHIBITED));
}

static void test_invalid_utf8_is_used_raw(void)
{
	CHECK(refused_with("\xc3\x28", SASLPREP_INVALID_UTF8));         /* bad continuation */
	CHECK(refused_with("\xc0\xaf", SASLPREP_INVALID_UTF8));         /* overlong '/' */
	CHECK(refused_with("\xe0\x80\xaf", SASLPREP_INVALID_UTF8));     /* overlong, 3 bytes */
	CHECK(refused_with("\xed\xa0\x80", SASLPREP_INVALID_UTF8));     /* surrogate U+D800 */
	CHECK(refused_with("\xf4\x90\x80\x80", SASLPREP_INVALID_UTF8)); /* past U+10FFFF */
	CHECK(refused_with("ab\xe2\x82", SASLPREP_INVALID_UTF8));       /* cut short */
	CHECK(refused_with("p\xe4ssw\xf6rd", SASLPREP_INVALID_UTF8));   /* Latin-1 */
	CHECK(refused_with("\xff", SASLPREP_INVALID_UTF8));
}

static void test_password_rule_prepares_when_it_can(void)
{
	char *p = saslprep_password("IX-\u2168");
	CHECK_STR_EQ(p, "IX-IX");
	saslprep_free(p);
	p = saslprep_password("");
	CHECK_STR_EQ(p, "");
	saslprep_free(p);
	CHECK(strlen(saslprep_unicode_version()) >= 5);
}

int main(void)
{
	RUN(test_rfc4013_examples);
	RUN(test_the_issue_password_prepares_like_postgresql);
	RUN(test_non_ascii_spaces_become_space);
	RUN(test_hangul_is_composed_and_decomposed);
	RUN(test_combining_marks_are_reordered_then_composed);
	RUN(test_long_run_of_marks_is_sorted_stably);
	RUN(test_compatibility_and_singleton_decompositions);
	RUN(test_bidi_rule);
	RUN(test_prohibited_and_unassigned_are_refused);
	RUN(test_invalid_utf8_is_used_raw);
	RUN(test_password_rule_prepares_when_it_can);
	return UNIT_REPORT("saslprep");
}
