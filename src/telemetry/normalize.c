/*
 * normalize: SQL text -> normalized text and fingerprint (see include/normalize.h).
 *
 * One pass over the input: the first byte of each token picks its lexer from
 * a 256-entry table (token_start), and the lexers scan with a second table of
 * character classes (char_class). Each lexer skips its token and hands the
 * writer one of four kinds of output: a word, a quoted identifier, a "?" or
 * an operator character. All the output rules live in the writer:
 *
 *   - a space goes between two word-like tokens (word, "quoted", ?) and
 *     nowhere else, so the input's spacing never matters;
 *   - a list element that is a lone "?" after another lone "?" is taken
 *     back when it ends, so "(?,?,?)" reads "(?)";
 *   - a ";" is held back until another token follows, so trailing ones vanish;
 *   - a byte that would go past the limit sets `full`, which stops the lexing;
 *     the text then ends in "...".
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

/* ---- character tables ---------------------------------------------------- */

/* which lexer a token starting with this byte goes to */
enum token_start {
	SP, /* whitespace; also control bytes (NUL included), which PostgreSQL would reject */
	WD, /* word: letter, _, or any byte >= 0x80 (part of a multibyte character) */
	NM, /* number */
	SQ, /* ' string */
	DQ, /* " quoted identifier */
	DL, /* $: parameter, dollar quote, or a lone $ */
	MN, /* -: comment, unary minus of a number, or operator */
	SL, /* /: comment or operator */
	DT, /* .: a number (.5) or punctuation */
	SC, /* ; */
	OP, /* any other operator or punctuation character */
};

static const unsigned char token_start[256] = {
	/* 0x00 */ SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP,
	/* 0x10 */ SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP, SP,
	/* 0x20 */ SP, OP, DQ, OP, DL, OP, OP, SQ, OP, OP, OP, OP, OP, MN, DT, SL,
	/* 0x30 */ NM, NM, NM, NM, NM, NM, NM, NM, NM, NM, OP, SC, OP, OP, OP, OP,
	/* 0x40 */ OP, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD,
	/* 0x50 */ WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, WD, OP, OP, OP, OP, WD,
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

/* what a byte may continue */
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

static inline unsigned char ascii_lower(unsigned char c)
{
	return (unsigned)(c - 'A') < 26 ? (unsigned char)(c | 0x20) : c;
}

/* skip bytes of a class; the workhorse of every lexer below */
static inline cursor skip_class(cursor p, cursor end, unsigned char class)
{
	while (p < end && (char_class[*p] & class))
		p++;
	return p;
}

/* ---- the writer ----------------------------------------------------------- */

/* the kind of the last token written: decides spacing and what a '-' means */
enum out_kind { OUT_START, OUT_WORD, OUT_QUOTED, OUT_PLACEHOLDER, OUT_PUNCT };

struct norm_out {
	unsigned char *buf;
	size_t len;
	size_t limit;      /* bytes of text allowed before the "..." */
	size_t last_start; /* where the last token's text begins in buf */
	enum out_kind last;
	bool semicolon_held; /* a ';' was seen and nothing after it yet */
	bool full;           /* a byte did not fit: stop lexing, end with "..." */
};

static inline bool kind_is_wordish(enum out_kind k)
{
	return k == OUT_WORD || k == OUT_QUOTED || k == OUT_PLACEHOLDER;
}

static inline void put_byte(struct norm_out *o, unsigned char c)
{
	if (o->len < o->limit)
		o->buf[o->len++] = c;
	else
		o->full = true;
}

static void release_held_semicolon(struct norm_out *o)
{
	if (!o->semicolon_held)
		return;
	o->semicolon_held = false;
	put_byte(o, ';');
	o->last = OUT_PUNCT;
}

/* everything every token does before its own bytes: the held ';', then the one space */
static void begin_token(struct norm_out *o, enum out_kind kind)
{
	release_held_semicolon(o);
	if (kind_is_wordish(kind) && kind_is_wordish(o->last))
		put_byte(o, ' ');
	o->last_start = o->len;
	o->last = kind;
}

static void write_placeholder(struct norm_out *o)
{
	begin_token(o, OUT_PLACEHOLDER);
	put_byte(o, '?');
}

/*
 * Called as a list element ends (at ',', ')' or ']'): when that element and
 * the one before it are each a lone "?", as in "(?,?", the second goes, so a
 * list of any number of constants reads "(?)". Deciding at the element's end
 * rather than its start keeps "(1, 2-1)" from losing its "2".
 */
static void drop_repeated_list_placeholder(struct norm_out *o)
{
	if (o->last != OUT_PLACEHOLDER || o->len < 4)
		return;
	const unsigned char *t = o->buf + o->len - 4;
	if (t[1] != '?' || t[2] != ',' || t[3] != '?')
		return;
	if (t[0] == '(' || t[0] == '[' || t[0] == ',')
		o->len -= 2;
}

/*
 * The copies below work on locals rather than o->buf[o->len++]: a store
 * through an unsigned char pointer may alias anything, so the compiler would
 * otherwise reload o->len and o->buf after every byte.
 */
static void write_lowercased_word(struct norm_out *o, cursor p, size_t n)
{
	begin_token(o, OUT_WORD);
	size_t room = o->limit - o->len;
	size_t k = n < room ? n : room;
	unsigned char *d = o->buf + o->len;
	for (size_t i = 0; i < k; i++)
		d[i] = ascii_lower(p[i]);
	o->len += k;
	if (k < n)
		o->full = true;
}

/* verbatim, but without NUL bytes: the output must stay one C string */
static void copy_verbatim(struct norm_out *o, cursor p, cursor end)
{
	unsigned char *d = o->buf + o->len, *stop = o->buf + o->limit;
	for (; p < end; p++) {
		if (!*p)
			continue;
		if (d == stop) {
			o->full = true;
			break;
		}
		*d++ = *p;
	}
	o->len = (size_t)(d - o->buf);
}

static void write_punct(struct norm_out *o, unsigned char c)
{
	release_held_semicolon(o);
	if (c == ',' || c == ')' || c == ']')
		drop_repeated_list_placeholder(o);
	begin_token(o, OUT_PUNCT);
	put_byte(o, c);
}

/* the last token written is exactly this (lowercase) word */
static bool last_word_is(const struct norm_out *o, const char *word)
{
	size_t n = strlen(word);
	return o->last == OUT_WORD && o->len - o->last_start == n &&
	       memcmp(o->buf + o->last_start, word, n) == 0;
}

/* the output ends with these words, not merely with their last letters */
static bool output_ends_with_words(const struct norm_out *o, const char *words)
{
	size_t n = strlen(words);
	if (o->last != OUT_WORD || o->len < n || memcmp(o->buf + o->len - n, words, n) != 0)
		return false;
	return o->len == n || !(char_class[o->buf[o->len - n - 1]] & IN_WORD);
}

/*
 * After these keywords an expression starts, so a '-' there negates what
 * follows (`select -1`, `where -1 < x`, `between -5 and -1`); after any other
 * word (a column, a function name) it subtracts.
 */
static bool last_word_expects_operand(const struct norm_out *o)
{
	static const char *const keywords[] = {
		"select", "where", "and",    "or",      "not",     "when",
		"then",   "else",  "case",   "between", "like",    "ilike",
		"having", "limit", "offset", "return",  "default", "to",
	};
	for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (last_word_is(o, keywords[i]))
			return true;
	return false;
}

/* is a '-' here the sign of what follows rather than a subtraction? */
static bool minus_would_be_unary(const struct norm_out *o)
{
	if (o->semicolon_held)
		return true;
	switch (o->last) {
	case OUT_START:
		return true;
	case OUT_PUNCT: {
		unsigned char c = o->len ? o->buf[o->len - 1] : ';';
		return c != ')' && c != ']'; /* those close an operand */
	}
	case OUT_WORD:
		return last_word_expects_operand(o);
	default:
		return false;
	}
}

/* ---- lexers: each takes the cursor at its token and returns the cursor after it ---- */

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
	/* "1..2" is not a fraction: the dots belong to whatever comes next */
	if (p < end && *p == '.' && !(p + 1 < end && p[1] == '.'))
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

/* p is after the opening quote; '' is a quote inside. Unterminated: to the end. */
static cursor skip_quoted(cursor p, cursor end, unsigned char quote)
{
	for (;;) {
		p = memchr(p, quote, (size_t)(end - p));
		if (!p)
			return end;
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

/* $1 (a parameter), $$...$$ / $tag$...$tag$ (a string), or a lone $ */
static cursor lex_dollar(cursor p, cursor end, struct norm_out *o)
{
	cursor q = p + 1;
	if (q < end && is_digit(*q)) {
		write_placeholder(o);
		while (q < end && is_digit(*q))
			q++;
		return q;
	}
	cursor tag = q;
	if (q < end && token_start[*q] == WD)
		q = skip_class(q + 1, end, IN_TAG);
	if (q < end && *q == '$') {
		write_placeholder(o);
		return skip_dollar_body(q + 1, end, tag, (size_t)(q - tag));
	}
	write_punct(o, '$');
	return p + 1;
}

static bool word_is_literal_keyword(cursor p, size_t n)
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

/*
 * `x IS NULL`, `x IS NOT TRUE` are tests, not constants: folding them to
 * `is ?` would merge queries that plan differently (and an IS NULL is never
 * parameterized anyway), so after IS [NOT] the keyword stays.
 */
static bool literal_keyword_is_a_test(const struct norm_out *o)
{
	return !o->semicolon_held && (last_word_is(o, "is") || output_ends_with_words(o, "is not"));
}

/*
 * A word, or a string with a one-letter prefix: E'..' (backslash escapes),
 * B'..', X'..', N'..', U&'..'; U&"..." is a quoted identifier.
 */
static cursor lex_word(cursor p, cursor end, struct norm_out *o)
{
	if (end - p > 1) {
		unsigned char c = p[0] | 0x20;
		if (p[1] == '\'' && (c == 'e' || c == 'b' || c == 'x' || c == 'n')) {
			write_placeholder(o);
			return c == 'e' ? skip_escaped_string(p + 2, end)
					: skip_quoted(p + 2, end, '\'');
		}
		if (c == 'u' && p[1] == '&' && end - p > 2) {
			if (p[2] == '\'') {
				write_placeholder(o);
				return skip_quoted(p + 3, end, '\'');
			}
			if (p[2] == '"') {
				cursor q = skip_quoted(p + 3, end, '"');
				begin_token(o, OUT_QUOTED);
				put_byte(o, 'u');
				copy_verbatim(o, p + 1, q);
				return q;
			}
		}
	}
	cursor w = skip_class(p + 1, end, IN_WORD);
	size_t n = (size_t)(w - p);
	if (word_is_literal_keyword(p, n) && !literal_keyword_is_a_test(o))
		write_placeholder(o);
	else
		write_lowercased_word(o, p, n);
	return w;
}

/* '-': a comment, the sign of a number (folded into its "?"), or an operator */
static cursor lex_minus(cursor p, cursor end, struct norm_out *o)
{
	if (p + 1 < end && p[1] == '-')
		return skip_line_comment(p + 2, end);
	if (minus_would_be_unary(o)) {
		cursor q = p + 1;
		while (q < end && token_start[*q] == SP)
			q++;
		if (number_starts_at(q, end)) {
			write_placeholder(o);
			return skip_number(q, end);
		}
	}
	write_punct(o, '-');
	return p + 1;
}

static cursor lex_token(cursor p, cursor end, struct norm_out *o)
{
	switch (token_start[*p]) {
	case SP:
		do
			p++;
		while (p < end && token_start[*p] == SP);
		return p;
	case WD:
		return lex_word(p, end, o);
	case NM:
		write_placeholder(o);
		return skip_number(p, end);
	case SQ:
		write_placeholder(o);
		return skip_quoted(p + 1, end, '\'');
	case DQ: {
		cursor q = skip_quoted(p + 1, end, '"');
		begin_token(o, OUT_QUOTED);
		copy_verbatim(o, p, q);
		return q;
	}
	case DL:
		return lex_dollar(p, end, o);
	case MN:
		return lex_minus(p, end, o);
	case SL:
		if (p + 1 < end && p[1] == '*')
			return skip_block_comment(p + 2, end);
		write_punct(o, '/');
		return p + 1;
	case DT:
		if (number_starts_at(p, end)) {
			write_placeholder(o);
			return skip_number(p, end);
		}
		write_punct(o, '.');
		return p + 1;
	case SC:
		/* held, not written: only a following token makes it not trailing */
		o->semicolon_held = true;
		return p + 1;
	default:
		write_punct(o, *p);
		return p + 1;
	}
}

/* ---- entry point ---------------------------------------------------------- */

static uint64_t fnv1a64(const unsigned char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

uint64_t normalize_sql(const char *in, size_t len, char *out, size_t outlen)
{
	if (outlen < 4) {
		if (outlen)
			out[0] = '\0';
		return fnv1a64(NULL, 0);
	}
	struct norm_out o = {
		.buf = (unsigned char *)out,
		.limit = outlen >= NORMALIZE_MAX + 4 ? NORMALIZE_MAX : outlen - 4,
		.last = OUT_START,
	};
	cursor p = (cursor)in;
	cursor end = len ? p + len : p; /* no arithmetic on a NULL in with len 0 */
	while (p < end && !o.full)
		p = lex_token(p, end, &o);
	if (o.full) {
		memcpy(o.buf + o.len, "...", 3);
		o.len += 3;
	}
	o.buf[o.len] = '\0';
	return fnv1a64(o.buf, o.len);
}
