/*
 * normalize: SQL text -> normalized text and fingerprint (see include/normalize.h).
 *
 * This runs on every query, so it is written for instruction count (measured
 * with callgrind): one pass, all state in locals so that it stays in
 * registers, and as little work per byte and per token as the rules allow.
 *
 * The lexer (lex) dispatches on the first byte of each token through a
 * 256-entry table (token_start). Words, the bulk of any query, are copied
 * lowercased while their end is found: one lookup per byte in word_lower, or
 * on x86-64 sixteen bytes per SSE2 load (word_run), where a run of words
 * joined by one space or one punctuation byte (`select a from t`, `t.col`)
 * costs little more than its loads. The forms that begin like a word
 * (E'..', U&"..", TRUE, FALSE, NULL) are recognized once the word is
 * written, and patched, so plain words pay almost nothing for them. Every
 * other token is skipped (space, comments) or becomes one byte: "?" for a
 * literal, or the punctuation itself. The output rules:
 *
 *   - a space goes between two word-like tokens (word, "quoted", ?) and
 *     nowhere else, so the input's spacing never matters;
 *   - a list element that is a lone "?" after another lone "?" is taken
 *     back when it ends, so "(?,?,?)" reads "(?)";
 *   - a ";" is held back until another token follows, so trailing ones vanish;
 *   - a byte that would go past the limit stops the lexing; the text then
 *     ends in "...".
 *
 * Checking the limit costs on every byte written, so lex comes in two
 * instances: for input short enough that the text cannot reach the limit
 * (every query but long ones) nothing written is checked (see lex).
 *
 * The fingerprint is hashed over the finished text, 16 bytes per step
 * (hash_text).
 *
 * Lexing follows PostgreSQL's rules closely enough to find token boundaries
 * (string and comment ends above all) but never decides whether the SQL is
 * valid: garbage in gives some text out, never a crash or a read past len.
 * It assumes standard_conforming_strings = on (the default since 9.1): in a
 * plain '...' a backslash is an ordinary character.
 */
#include "normalize.h"

#include <stdbool.h>
#include <string.h>

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

#if defined(__SSE2__) && defined(__GNUC__)
/* x86-64 always has SSE2: words and strings are scanned 16 bytes at a time */
#define NORMALIZE_SSE2 1
#include <emmintrin.h>
#endif

/* ---- character tables ---------------------------------------------------- */

/* what a token starting with this byte is */
enum token_start {
	SP, /* whitespace; also control bytes (NUL included), which PostgreSQL would reject */
	WD, /* word: letter, _, or any byte >= 0x80 (part of a multibyte character) */
	NM, /* number */
	SQ, /* ' string */
	DQ, /* " quoted identifier */
	DL, /* $: parameter, dollar quote, or a lone $ */
	MN, /* -: comment, unary minus of a number, or operator */
	SL, /* /: comment or operator */
	SC, /* ; */
	/* from here on, after a word: plain punctuation when a word follows */
	DT, /* .: a number (.5) or punctuation */
	LE, /* , ) ]: punctuation that ends a list element (see the list rule) */
	OP, /* any other operator or punctuation character */
};
#define OP_LIKE DT

static const unsigned char token_start[256] = {
	/* 0x00 */ SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP,
	/* 0x10 */ SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP,
	/* 0x20 */ SP, OP, DQ, OP, DL, OP, OP, SQ, OP, LE, OP, OP, LE, MN, DT, SL,
	/* 0x30 */ NM, NM, NM, NM, NM, NM, NM, NM, NM, NM, OP, SC, OP, OP, OP, OP,
	/* 0x40 */ OP, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
	/* 0x50 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, OP, OP, LE, OP, WD,
	/* 0x60 */ OP, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
	/* 0x70 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, OP, OP, OP, OP, SP,
	/* 0x80 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
	/* 0x90 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
	/* 0xa0 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
	/* 0xb0 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
	/* 0xc0 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
	/* 0xd0 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
	/* 0xe0 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
	/* 0xf0 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
};

/*
 * A byte inside an unquoted word (letters, digits, _, $, bytes >= 0x80) maps
 * to itself lowercased (ASCII only), any other byte to 0: the word copy
 * needs one lookup per byte for both its end test and its output. No word
 * byte is 0 (NUL separates tokens).
 */
static const unsigned char word_lower[256] = {
	/* 0x00 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x10 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x20 */ 0, 0, 0, 0, '$', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x30 */ '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 0, 0, 0, 0, 0, 0,
	/* 0x40 */ 0, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	/* 0x50 */ 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 0, 0, 0, 0, '_',
	/* 0x60 */ 0, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	/* 0x70 */ 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 0, 0, 0, 0, 0,
	/* 0x80 */ 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87,
	/* 0x88 */ 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f,
	/* 0x90 */ 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97,
	/* 0x98 */ 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f,
	/* 0xa0 */ 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
	/* 0xa8 */ 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
	/* 0xb0 */ 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7,
	/* 0xb8 */ 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
	/* 0xc0 */ 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
	/* 0xc8 */ 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
	/* 0xd0 */ 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7,
	/* 0xd8 */ 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf,
	/* 0xe0 */ 0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
	/* 0xe8 */ 0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef,
	/* 0xf0 */ 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7,
	/* 0xf8 */ 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
};

/* what a byte may continue, for the scanners other than the word copy */
enum {
	IN_WORD = 1,   /* an unquoted word: letters, digits, _, $, bytes >= 0x80 */
	IN_TAG = 2,    /* a dollar-quote tag: as a word, but no $ */
	IN_NUMBER = 4, /* a decimal number: digits and _ (PostgreSQL 16) */
	IN_HEX = 8,    /* a 0x/0o/0b number: hex digits and _ */
};

#define NO 0
#define LT (IN_WORD | IN_TAG)                      /* letter, byte >= 0x80 */
#define HX (IN_WORD | IN_TAG | IN_HEX)             /* a-f, A-F */
#define DG (IN_WORD | IN_TAG | IN_NUMBER | IN_HEX) /* 0-9 */
#define US (IN_WORD | IN_TAG | IN_NUMBER | IN_HEX) /* _ */
#define DS IN_WORD                                 /* $ */

static const unsigned char char_class[256] = {
	/* 0x00 */ NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO,
	/* 0x10 */ NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO,
	/* 0x20 */ NO, NO, NO, NO, DS, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO,
	/* 0x30 */ DG, DG, DG, DG, DG, DG, DG, DG, DG, DG, NO, NO, NO, NO, NO, NO,
	/* 0x40 */ NO, HX, HX, HX, HX, HX, HX, LT, LT, LT, LT, LT, LT, LT, LT, LT,
	/* 0x50 */ LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, NO, NO, NO, NO, US,
	/* 0x60 */ NO, HX, HX, HX, HX, HX, HX, LT, LT, LT, LT, LT, LT, LT, LT, LT,
	/* 0x70 */ LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, NO, NO, NO, NO, NO,
	/* 0x80 */ LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT,
	/* 0x90 */ LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT,
	/* 0xa0 */ LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT,
	/* 0xb0 */ LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT,
	/* 0xc0 */ LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT,
	/* 0xd0 */ LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT,
	/* 0xe0 */ LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT,
	/* 0xf0 */ LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT, LT,
};

#undef NO
#undef LT
#undef HX
#undef DG
#undef US
#undef DS

typedef const unsigned char *cursor;

static inline bool is_digit(unsigned char c)
{
	return (unsigned)(c - '0') < 10;
}

/* skip bytes of a class */
static inline cursor skip_class(cursor p, cursor end, unsigned char class)
{
	while (p < end && (char_class[*p] & class))
		p++;
	return p;
}

/* ---- scanners: each takes the cursor in its token and returns the cursor after it ---- */

static bool number_starts_at(cursor p, cursor end)
{
	return p < end && (is_digit(*p) || (*p == '.' && p + 1 < end && is_digit(p[1])));
}

/*
 * 42, 4.2, .42, 42., 4.2e-1, 1_000, 0x1F, 0o17, 0b101. What follows a number
 * without a space (`1abc`) lexes as a word, as PostgreSQL before 16 did.
 */
static cursor skip_number(cursor p, cursor end)
{
	if (*p == '0' && end - p > 2) {
		unsigned char radix = p[1] | 0x20;
		if ((radix == 'x' || radix == 'o' || radix == 'b') && (char_class[p[2]] & IN_HEX))
			return skip_class(p + 2, end, IN_HEX);
	}
	p = skip_class(p, end, IN_NUMBER);
	if (p == end)
		return p;
	/* "1..2" is not a fraction: the dots belong to whatever comes next */
	if (*p == '.' && !(p + 1 < end && p[1] == '.'))
		p = skip_class(p + 1, end, IN_NUMBER);
	if (p < end && (*p | 0x20) == 'e') {
		cursor q = p + 1;
		if (q < end && (*q == '+' || *q == '-'))
			q++;
		if (q < end && is_digit(*q))
			p = skip_class(q, end, IN_NUMBER);
	}
	return p;
}

/*
 * p is after the opening quote; '' is a quote inside. Unterminated: to the
 * end. Strings in queries are mostly short: 16 bytes compared at once find
 * most of them without a call.
 */
static ALWAYS_INLINE cursor skip_quoted(cursor p, cursor end, unsigned char quote)
{
	for (;;) {
#ifdef NORMALIZE_SSE2
		if (end - p >= 16) {
			__m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
			unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8((char)quote)));
			if (!m) {
				p += 16;
				continue;
			}
			p += __builtin_ctz(m);
		} else
#endif
		{
			p = memchr(p, quote, (size_t)(end - p));
			if (!p)
				return end;
		}
		if (p + 1 < end && p[1] == quote)
			p += 2;
		else
			return p + 1;
	}
}

/* E'...': as skip_quoted, and a backslash escapes the next byte (\' is a quote inside) */
static cursor skip_escaped_string(cursor p, cursor end)
{
	while (p < end) {
		if (*p == '\\') {
			p = p + 1 < end ? p + 2 : end;
		} else if (*p == '\'') {
			if (p + 1 < end && p[1] == '\'')
				p += 2;
			else
				return p + 1;
		} else {
			p++;
		}
	}
	return end;
}

static cursor skip_line_comment(cursor p, cursor end)
{
	while (p < end && *p != '\n' && *p != '\r')
		p++;
	return p;
}

/* p is after the opening slash-star; comments nest. Unterminated: to the end. */
static cursor skip_block_comment(cursor p, cursor end)
{
	size_t depth = 1;
	while (p + 1 < end) {
		if (p[0] == '*' && p[1] == '/') {
			p += 2;
			if (--depth == 0)
				return p;
		} else if (p[0] == '/' && p[1] == '*') {
			p += 2;
			depth++;
		} else {
			p++;
		}
	}
	return end;
}

/*
 * p is after the opening $tag$: find the closing one. Linear even for long
 * tags: the comparison at a '$' stops at the first mismatch, and the bytes it
 * matched are tag bytes, never '$', so the next search starts beyond them and
 * no byte is compared twice.
 */
static cursor skip_dollar_body(cursor p, cursor end, cursor tag, size_t taglen)
{
	while ((p = memchr(p, '$', (size_t)(end - p))) != NULL) {
		if ((size_t)(end - p) < taglen + 2)
			return end;
		size_t i = 0;
		while (i < taglen && p[1 + i] == tag[i])
			i++;
		if (i == taglen && p[1 + taglen] == '$')
			return p + taglen + 2;
		p += 1 + i;
	}
	return end;
}

/*
 * p is at a '$' that is not a parameter ($1): the cursor after the opening
 * $tag$ of a dollar-quoted string ($$ included), or NULL when this is a lone $.
 * *tag_len gets the tag's length; the tag itself starts at p + 1.
 */
static cursor dollar_quote_open(cursor p, cursor end, size_t *tag_len)
{
	cursor q = p + 1;
	if (q < end && token_start[*q] == WD)
		q = skip_class(q + 1, end, IN_TAG);
	if (q < end && *q == '$') {
		*tag_len = (size_t)(q - (p + 1));
		return q + 1;
	}
	return NULL;
}

/* after a run of digits, the bytes that may continue a number: . _ e E */
static const bool number_may_go_on[256] = { ['.'] = true, ['_'] = true, ['e'] = true, ['E'] = true };

/* ---- the writer's state, and questions about the output so far --------- */

/*
 * The kind of the last token written: decides spacing and what a '-' means.
 * A ';' held back is a kind of its own: while one is held nothing asks what
 * came before it, since whatever follows writes it first. The word-like kinds
 * come first, so that "is word-like" is one comparison.
 */
enum out_kind {
	OUT_WORD,
	OUT_QUOTED,
	OUT_PLACEHOLDER, /* the last word-like kind */
	OUT_START,
	OUT_PUNCT,
	OUT_SEMICOLON, /* a ';' was seen and nothing after it yet */
};

static inline bool is_wordish(enum out_kind k)
{
	return k <= OUT_PLACEHOLDER;
}

/*
 * After these keywords an expression starts, so a '-' there negates what
 * follows (`select -1`, `where -1 < x`, `between -5 and -1`); after any other
 * word (a column, a function name) it subtracts. w..e is the last word written.
 */
static bool word_expects_operand(const unsigned char *w, const unsigned char *e)
{
	static const char *const keywords[] = {
		"select", "where", "and",    "or",      "not",     "when",
		"then",   "else",  "case",   "between", "like",    "ilike",
		"having", "limit", "offset", "return",  "default", "to",
	};
	size_t n = (size_t)(e - w);
	for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (strlen(keywords[i]) == n && memcmp(w, keywords[i], n) == 0)
			return true;
	return false;
}

/*
 * Is a '-' here the sign of what follows rather than a subtraction? The output
 * is buf..d, its last token of kind `last`, starting at tok when a word.
 */
static bool minus_would_be_unary(const unsigned char *buf, const unsigned char *d,
				 const unsigned char *tok, enum out_kind last)
{
	switch (last) {
	case OUT_START:
	case OUT_SEMICOLON:
		return true;
	case OUT_PUNCT: {
		unsigned char c = d > buf ? d[-1] : ';';
		return c != ')' && c != ']'; /* those close an operand */
	}
	case OUT_WORD:
		return word_expects_operand(tok, d);
	default:
		return false;
	}
}

static bool is_literal_keyword(cursor p, size_t n)
{
	/* within a word, c | 0x20 folds only ASCII letters onto themselves */
	if (n == 4)
		return ((p[0] | 0x20) == 't' && (p[1] | 0x20) == 'r' && (p[2] | 0x20) == 'u' &&
			(p[3] | 0x20) == 'e') ||
		       ((p[0] | 0x20) == 'n' && (p[1] | 0x20) == 'u' && (p[2] | 0x20) == 'l' &&
			(p[3] | 0x20) == 'l');
	if (n == 5)
		return (p[0] | 0x20) == 'f' && (p[1] | 0x20) == 'a' && (p[2] | 0x20) == 'l' &&
		       (p[3] | 0x20) == 's' && (p[4] | 0x20) == 'e';
	return false;
}

/* the same for a word already written, hence lowercased */
static inline bool is_literal_word(const unsigned char *w, size_t n)
{
	if (n == 4)
		return memcmp(w, "true", 4) == 0 || memcmp(w, "null", 4) == 0;
	return n == 5 && memcmp(w, "false", 5) == 0;
}

/*
 * `x IS NULL`, `x IS NOT TRUE` are tests, not constants: folding them to
 * `is ?` would merge queries that plan differently (and an IS NULL is never
 * parameterized anyway), so after IS [NOT] the keyword stays. Asked once the
 * keyword has been written at w; the token before it was of kind `before`,
 * and when that was a word it starts at tok and the space at w - 1 ends it.
 */
static bool keyword_is_a_test(const unsigned char *buf, const unsigned char *w,
			      const unsigned char *tok, enum out_kind before)
{
	if (before != OUT_WORD)
		return false;
	const unsigned char *e = w - 1; /* the end of the output before the keyword */
	if (e - tok == 2 && tok[0] == 'i' && tok[1] == 's')
		return true;
	/* ends with the words "is not", not merely with their last letters */
	return e - buf >= 6 && memcmp(e - 6, "is not", 6) == 0 &&
	       (e - buf == 6 || !(char_class[e[-7]] & IN_WORD));
}

/* ---- the fingerprint ------------------------------------------------------ */

/*
 * A 64-bit hash of the finished text, 16 bytes per step, in the manner of
 * wyhash: a step multiplies two 64-bit words into 128 bits and folds the
 * halves together (mum), the first word xored with a constant, the second
 * with the state so far; a last mum takes in the length. A product is zero
 * only when a factor is, and a zero would lose the state: but the low byte of
 * every first factor is a byte of the text, never NUL, xored with K1's zero
 * low byte, and the second is zero only where eight bytes of text equal the
 * state, which only a text built to collide gets (FNV-1a, the hash before
 * this one, was as easy to collide on purpose).
 *
 * Little-endian loads spelled out byte by byte (compilers fuse them into one
 * load) and a portable product where there is no 128-bit type keep the value
 * the same on every platform, so fingerprints from different machines compare.
 */
#define K0 0xa0761d6478bd642full
#define K1 0xe7037ed1a0b42800ull /* its low byte is zero, see above */
#define K2 0x8ebc6af09c88c6e3ull

static inline uint64_t load64(const unsigned char *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	       (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
	       (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static inline uint64_t load32(const unsigned char *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

/* the 128-bit product of a and b, its two halves xored */
static inline uint64_t mum(uint64_t a, uint64_t b)
{
#ifdef __SIZEOF_INT128__
	unsigned __int128 r = (unsigned __int128)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
	uint64_t ah = a >> 32, al = (uint32_t)a, bh = b >> 32, bl = (uint32_t)b;
	uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
	uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
	uint64_t lo = (mid << 32) | (uint32_t)ll;
	uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
	return lo ^ hi;
#endif
}

static inline uint64_t hash_text(const unsigned char *s, size_t n)
{
	uint64_t h = K0, a, b;
	if (n > 16) {
		const unsigned char *last = s + n - 16;
		for (; s < last; s += 16)
			h = mum(load64(s) ^ K1, load64(s + 8) ^ h);
		/* the last 16 bytes, overlapping the previous step's when n % 16 != 0 */
		a = load64(last);
		b = load64(last + 8);
	} else if (n >= 8) {
		/* the first and the last 8 bytes: together they cover all n */
		a = load64(s);
		b = load64(s + n - 8);
	} else if (n >= 4) {
		a = load32(s);
		b = load32(s + n - 4);
	} else if (n > 0) {
		/* the first, middle and last byte: together they cover all n */
		a = (uint64_t)s[0] | (uint64_t)s[n / 2] << 8 | (uint64_t)s[n - 1] << 16;
		b = 0;
	} else {
		a = b = 0;
	}
	return mum(K2 ^ n, mum(a ^ K1, b ^ h));
}

/* ---- copying words ------------------------------------------------------ */

/*
 * Copy the word at p to d lowercased and return its length, with no bounds
 * checked: the caller knows that a byte not in a word ends it within the
 * input, and that the room is there. Unrolled by four, as words are short:
 * the loop then costs little beyond one lookup, test and store per byte.
 */
static inline size_t copy_word(cursor p, unsigned char *d)
{
	size_t n = 0;
	unsigned char l;
	for (;; n += 4) {
		if (!(l = word_lower[p[n]]))
			return n;
		d[n] = l;
		if (!(l = word_lower[p[n + 1]]))
			return n + 1;
		d[n + 1] = l;
		if (!(l = word_lower[p[n + 2]]))
			return n + 2;
		d[n + 2] = l;
		if (!(l = word_lower[p[n + 3]]))
			return n + 3;
		d[n + 3] = l;
	}
}

#ifdef NORMALIZE_SSE2
/*
 * Sixteen bytes at once: store p[0..16) at d with A-Z lowercased, and return
 * a mask with bit i set when p[i] can be in a word (letter, digit, _, $, byte
 * >= 0x80: exactly where word_lower is not 0). A word's length is then a
 * count of trailing ones, and the words after it in these 16 bytes are
 * already classified and copied. The compares are signed: bytes >= 0x80 are
 * negative, below every range here.
 */
static inline unsigned lower16(cursor p, unsigned char *d)
{
	const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
	/*
	 * lo <= c < lo + n as one signed compare: c + (0x80 - lo) wraps the
	 * range onto the n smallest signed values.
	 */
#define IN_RANGE(v, lo, n) \
	_mm_cmplt_epi8(_mm_add_epi8((v), _mm_set1_epi8((char)(0x80 - (lo)))), \
		       _mm_set1_epi8((char)(0x80 + (n))))
	const __m128i space = _mm_set1_epi8(0x20);
	const __m128i letter = IN_RANGE(_mm_or_si128(x, space), 'a', 26); /* A-Z folded on a-z */
	const __m128i digit = IN_RANGE(x, '0', 10);
#undef IN_RANGE
	const __m128i other = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('_')),
					   _mm_cmpeq_epi8(x, _mm_set1_epi8('$')));
	/* a letter or'ed with 0x20 is lowercase */
	_mm_storeu_si128((__m128i *)(void *)d, _mm_or_si128(x, _mm_and_si128(letter, space)));
	const __m128i word = _mm_or_si128(_mm_or_si128(letter, digit), other);
	/* bytes >= 0x80 have their top bit set, which is all movemask looks at */
	return (unsigned)(_mm_movemask_epi8(word) | _mm_movemask_epi8(x));
}

/*
 * Words, the fast way (SSE2, and an output that cannot reach the limit): p is
 * at a word with at least 16 bytes of input from it, d where it goes (its
 * space written). The word is copied, and so are the words after it
 * for as long as each follows the last through one space or one punctuation
 * byte (`a b`, `t.col`, `f(x`): then the output mirrors the input, so one
 * load classifies and copies several words, and a word's end is a count of
 * ones. It stops at the end of a word that may be special (a literal or a
 * string prefix: left to lex), or that no such word follows, and returns
 * where that word starts in the output, with p and d after it; *tok and
 * *before become, as in lex, the word before it and the kind of token.
 */
static ALWAYS_INLINE unsigned char *word_run(cursor *pp, unsigned char **dp, cursor end,
					     unsigned char **tokp, enum out_kind *beforep)
{
	/* the 16 input bytes at cp, copied to cd; m marks their word bytes */
	cursor cp = *pp;
	unsigned char *const first = *dp;
	unsigned char *cd = first, *w = cd, *tok = *tokp;
	unsigned m = lower16(cp, cd), i = 0, e, n;
	for (;;) {
		/* a word starts at offset i, at w in the output: it ends at e */
		e = i + (unsigned)__builtin_ctz(~(m >> i));
		n = e - i;
		if (e == 16) {
			/* it goes on past these 16 bytes: on to the next 16 */
			do {
				cp += 16;
				cd += 16;
				if (end - cp < 16) {
					/* near the end of the input, which may end the word: bytewise */
					unsigned char l;
					for (e = 0; e < (unsigned)(end - cp) && (l = word_lower[cp[e]]); e++)
						cd[e] = l;
					goto out;
				}
				m = lower16(cp, cd);
				e = (unsigned)__builtin_ctz(~m);
			} while (e == 16);
			n = (unsigned)(cd + e - w);
		}
		/* what follows: the byte at e, then at e + 1 the next word's first */
		if (e == 15 && end - cp < 32)
			goto out; /* past the input, or too near its end for 16 more */
		unsigned char c = cp[e];
		if ((n | 1) == 5 ? is_literal_word(w, n) : n == 1 && (c == '\'' || c == '&'))
			goto out;
		if (token_start[cp[e + 1]] != WD || (c != ' ' && token_start[c] < OP_LIKE))
			goto out;
		tok = w;
		i = e + 1;
		if (i == 16) {
			cp += 16;
			cd += 16;
			m = lower16(cp, cd);
			i = 0;
		}
		w = cd + i;
	}
out:
	*pp = cp + e;
	*dp = cd + e;
	if (w != first) {
		/* not the run's first word: what came before it is in the run */
		*tokp = tok;
		*beforep = w[-1] == ' ' ? OUT_WORD : OUT_PUNCT;
	}
	return w;
}
#endif

/* ---- digits free to change (normalize_sql_marking) ----------------------- */

/*
 * The number literal p..q (its "?" written) is a plain run of digits with a
 * byte before it (if any) and after it (if any) that is neither in a word
 * nor a '.': then any other digits of the same length in its place lex the
 * same way. The lexer's state where the run starts depends on the bytes
 * before it only, and from a digit it scans to the first byte that is not a
 * digit, '_' (none here), '.' or an exponent or radix letter (words, so none
 * here either): the same token, the same "?", and from the same next byte on,
 * the same everything after. Mark its bytes.
 */
static void mark_free_digits(unsigned char *marks, cursor start, cursor p, cursor q, cursor end)
{
	if ((p > start && (word_lower[p[-1]] || p[-1] == '.')) ||
	    (q < end && (word_lower[*q] || *q == '.')))
		return;
	for (cursor r = p; r < q; r++)
		if (!is_digit(*r))
			return;
	for (size_t i = (size_t)(p - start); i < (size_t)(q - start); i++)
		marks[i / 8] |= (unsigned char)(1u << (i % 8));
}

/* ---- the lexer ----------------------------------------------------------- */

/*
 * The writer's state lives in lex's locals: d (the next output byte), last
 * (the kind of the last token) and tok (where the last word starts). A store
 * through an unsigned char pointer may alias anything, so were they fields
 * behind a pointer the compiler would reload them after every byte written.
 *
 * These macros are the writer; `goto full` is a byte that did not fit.
 */
#define PUT(c)                                     \
	do {                                       \
		if (bounded && d == stop)          \
			goto full;                 \
		*d++ = (unsigned char)(c);         \
	} while (0)

/* what every token does before its own bytes: a held ';', or the one space */
#define BEGIN_TOKEN(kind)                                          \
	do {                                                       \
		if (is_wordish(kind) && is_wordish(last))          \
			PUT(' ');                                  \
		else if (last == OUT_SEMICOLON)                    \
			PUT(';');                                  \
		last = (kind);                                     \
	} while (0)

#define PLACEHOLDER()                          \
	do {                                   \
		BEGIN_TOKEN(OUT_PLACEHOLDER);  \
		PUT('?');                      \
	} while (0)

#define PUNCT(c)                          \
	do {                              \
		BEGIN_TOKEN(OUT_PUNCT);   \
		PUT(c);                   \
	} while (0)

/* one space after a token is common and decides nothing: no dispatch for it */
#define SKIP_A_SPACE()                          \
	do {                                    \
		if (p < end && *p == ' ')       \
			p++;                    \
	} while (0)

/*
 * Normalize p..end into buf (at most up to stop); returns the end of the text
 * written, and sets *cut when a byte did not fit.
 *
 * With `bounded` false nothing written is checked against stop: the caller
 * knows there is room. Every token writes at most twice the bytes it takes
 * from the input: a word of n bytes writes n and maybe a space before it, a
 * literal of at least one byte a "?" and maybe a space, a quoted identifier
 * itself and maybe a space, a ';' one byte (when what follows releases it),
 * anything else one byte or nothing. So from len <= limit / 2 bytes of input
 * the text never reaches the limit. word_run's 16-byte stores go further
 * than the text, but not past it by much: one is made only with 16 input
 * bytes left, so it ends at most 2 * (len - 16) + 1 + 16 bytes in. As
 * `bounded` is a constant where lex is inlined, the unchecked instance
 * carries no trace of the checks, and the code is written once.
 */
static ALWAYS_INLINE unsigned char *lex(cursor p, cursor end, unsigned char *const buf,
					unsigned char *const stop, const bool bounded, bool *cut,
					unsigned char *const free_digits)
{
	const cursor start = p;
	unsigned char *d = buf;
	unsigned char *tok = buf; /* read only when last == OUT_WORD */
	enum out_kind last = OUT_START;

	/*
	 * The last byte of the input that cannot be in a word (p itself when
	 * there is none, and no word starts before it then). A word, or a
	 * number, that starts before it stops at it at the latest: scanning
	 * those needs no check against the input's end.
	 */
	cursor safe_end = end;
	while (safe_end > p && word_lower[safe_end[-1]])
		safe_end--;
	if (safe_end > p)
		safe_end--;

	while (p < end) {
		unsigned char kind = token_start[*p];
		if (kind == WD) {
			/*
			 * TRUE/FALSE/NULL after IS [NOT] need to know what came before
			 * the word, so that is remembered before the word is written.
			 */
			enum out_kind before = last;
			BEGIN_TOKEN(OUT_WORD);
			for (;;) {
				unsigned char *w;
				size_t n;
#ifdef NORMALIZE_SSE2
				if (!bounded && p < safe_end && end - p >= 16) {
					w = word_run(&p, &d, end, &tok, &before);
					n = (size_t)(d - w);
					goto copied;
				}
#endif
				w = d;
				if (!bounded && p < safe_end) {
					n = copy_word(p, d);
				} else {
					/* at most k bytes: what is left of the input, and of the room */
					size_t room = (size_t)(stop - d), k = (size_t)(end - p);
					unsigned char l;
					if (bounded && room < k)
						k = room;
					for (n = 0; n < k && (l = word_lower[p[n]]) != 0; n++)
						d[n] = l;
					if (bounded && n == room && n < (size_t)(end - p) && word_lower[p[n]]) {
						/* the word goes on past the limit, where the text ends... */
						size_t whole = (size_t)(skip_class(p + n, end, IN_WORD) - p);
						/* ...unless it is a literal, whose "?" may still fit */
						if (room == 0 || !is_literal_keyword(p, whole) ||
						    keyword_is_a_test(buf, w, tok, before)) {
							d += n;
							goto full;
						}
						p += whole;
						*d++ = '?';
						last = OUT_PLACEHOLDER;
						break;
					}
				}
				d += n;
				p += n;
#ifdef NORMALIZE_SSE2
			copied:
#endif
				if (n <= 5) {
					if (n == 1 && p < end && (*p == '\'' || *p == '&')) {
						/*
						 * A one-letter word before a quote: E'..' (backslash
						 * escapes), B'..', X'..', N'..', U&'..' are strings,
						 * U&"..." an identifier. Each begins like a word, so
						 * the letter just written is where it goes.
						 */
						unsigned char c = w[0];
						tok = w; /* unless replaced, a plain word */
						if (*p == '\'' &&
						    (c == 'e' || c == 'b' || c == 'x' || c == 'n')) {
							w[0] = '?';
							last = OUT_PLACEHOLDER;
							p = c == 'e' ? skip_escaped_string(p + 1, end)
								     : skip_quoted(p + 1, end, '\'');
						} else if (c == 'u' && *p == '&' && end - p > 1 &&
							   p[1] == '\'') {
							w[0] = '?';
							last = OUT_PLACEHOLDER;
							p = skip_quoted(p + 2, end, '\'');
						} else if (c == 'u' && *p == '&' && end - p > 1 &&
							   p[1] == '"') {
							/* u, then &"..." as written, without NUL bytes */
							cursor q = skip_quoted(p + 2, end, '"');
							last = OUT_QUOTED;
							for (; p < q; p++)
								if (*p)
									PUT(*p);
						}
						break;
					}
					if (is_literal_word(w, n) && !keyword_is_a_test(buf, w, tok, before)) {
						d = w;
						*d++ = '?';
						last = OUT_PLACEHOLDER;
						break;
					}
				}
				tok = w;
				/*
				 * Word, one space, word is the commonest run in SQL: go
				 * straight on to the next word rather than through the
				 * dispatch twice, and skip a single space whatever follows.
				 * (Before safe_end, p[1] exists.)
				 */
				if (p >= safe_end)
					break;
				unsigned char c = *p;
				if (c == ' ') {
					if (token_start[*++p] != WD)
						break;
					PUT(' ');
					before = OUT_WORD;
					continue;
				}
				/*
				 * So is word, punctuation, word (`t.col`, `f(x`, `a, b`): after
				 * a word these bytes are plain punctuation, and when a word
				 * follows ('.' then starts no number) it goes the same way.
				 */
				if (token_start[c] < OP_LIKE)
					break;
				cursor q = p + 1;
				if (*q == ' ' && q < safe_end)
					q++;
				if (token_start[*q] != WD)
					break;
				PUT(c);
				p = q;
				before = OUT_PUNCT;
			}
			continue;
		}
		if (kind == SP) {
			p++;
			continue;
		}
		switch (kind) {
		case NM: {
			PLACEHOLDER();
			/* most numbers are plain integers: skip those here, the rest in skip_number */
			cursor q = p + 1;
			if (!bounded && p < safe_end) {
				while (char_class[*q] & IN_NUMBER) /* stops at safe_end at the latest */
					q++;
			} else {
				while (q < end && is_digit(*q))
					q++;
			}
			if (*p == '0' || (q < end && number_may_go_on[*q]))
				q = skip_number(p, end);
			if (free_digits)
				mark_free_digits(free_digits, start, p, q, end);
			p = q;
			SKIP_A_SPACE();
			break;
		}

		case SQ:
			PLACEHOLDER();
			p = skip_quoted(p + 1, end, '\'');
			SKIP_A_SPACE();
			break;

		case DQ: {
			/* as written, without NUL bytes: the output must stay one C string */
			cursor q = skip_quoted(p + 1, end, '"');
			BEGIN_TOKEN(OUT_QUOTED);
			for (; p < q; p++)
				if (*p)
					PUT(*p);
			break;
		}

		case DL: {
			/* $1 (a parameter), $$...$$ / $tag$...$tag$ (a string), or a lone $ */
			size_t tag_len;
			cursor body;
			if (p + 1 < end && is_digit(p[1])) {
				PLACEHOLDER();
				p += 2;
				while (p < end && is_digit(*p))
					p++;
			} else if ((body = dollar_quote_open(p, end, &tag_len)) != NULL) {
				PLACEHOLDER();
				p = skip_dollar_body(body, end, p + 1, tag_len);
			} else {
				PUNCT('$');
				p++;
			}
			break;
		}

		case MN:
			/* a comment, the sign of a number (folded into its "?"), or an operator */
			if (p + 1 < end && p[1] == '-') {
				p = skip_line_comment(p + 2, end);
				break;
			}
			if (minus_would_be_unary(buf, d, tok, last)) {
				cursor q = p + 1;
				while (q < end && token_start[*q] == SP)
					q++;
				if (number_starts_at(q, end)) {
					PLACEHOLDER();
					p = skip_number(q, end);
					if (free_digits)
						mark_free_digits(free_digits, start, q, p, end);
					break;
				}
			}
			PUNCT('-');
			p++;
			break;

		case SL:
			if (p + 1 < end && p[1] == '*') {
				p = skip_block_comment(p + 2, end);
				break;
			}
			PUNCT('/');
			p++;
			break;

		case DT:
			if (p + 1 < end && is_digit(p[1])) {
				PLACEHOLDER();
				p = skip_number(p, end);
				break;
			}
			PUNCT('.');
			p++;
			break;

		case SC:
			/* held, not written: only a following token makes it not trailing */
			last = OUT_SEMICOLON;
			p++;
			break;

		case LE:
			/*
			 * A list element ends. When it and the one before it are each a
			 * lone "?", as in "(?,?", the second goes, so a list of any number
			 * of constants reads "(?)". Deciding at the element's end rather
			 * than its start keeps "(1, 2-1)" from losing its "2".
			 */
			if (last == OUT_PLACEHOLDER && d - buf >= 4 && d[-1] == '?' && d[-2] == ',' &&
			    d[-3] == '?' && (d[-4] == '(' || d[-4] == '[' || d[-4] == ','))
				d -= 2;
			PUNCT(*p);
			p++;
			SKIP_A_SPACE();
			break;

		default: /* OP */
			PUNCT(*p);
			p++;
			SKIP_A_SPACE();
			break;
		}
	}
	return d;

full:
	*cut = true;
	return d;
}

/* ---- entry point ---------------------------------------------------------- */

uint64_t normalize_sql(const char *in, size_t len, char *out, size_t outlen)
{
	unsigned char *const buf = (unsigned char *)out;
	unsigned char *d = buf;
	if (outlen >= 4) {
		size_t limit = outlen >= NORMALIZE_MAX + 4 ? NORMALIZE_MAX : outlen - 4;
		cursor p = (cursor)in;
		cursor end = len ? p + len : p; /* no arithmetic on a NULL in with len 0 */
		bool cut = false;
		if (len <= limit / 2)
			d = lex(p, end, buf, buf + limit, false, &cut, NULL);
		else
			d = lex(p, end, buf, buf + limit, true, &cut, NULL);
		if (cut) {
			memcpy(d, "...", 3);
			d += 3;
		}
		*d = '\0';
	} else if (outlen) {
		*d = '\0';
	}
	return hash_text(buf, (size_t)(d - buf));
}

uint64_t normalize_sql_marking(const char *in, size_t len, char *out, size_t outlen,
			       unsigned char *free_digits)
{
	if (len > NORMALIZE_MARK_MAX || outlen < NORMALIZE_MAX + 4)
		return normalize_sql(in, len, out, outlen);
	unsigned char *const buf = (unsigned char *)out;
	bool cut = false;
	cursor p = (cursor)in, end = len ? p + len : p;
	/* short enough that the text cannot reach the limit: the unchecked instance */
	unsigned char *d = lex(p, end, buf, buf + NORMALIZE_MAX, false, &cut, free_digits);
	*d = '\0';
	return hash_text(buf, (size_t)(d - buf));
}
