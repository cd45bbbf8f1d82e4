/*
 * settings: a client's startup settings as one canonical, interned text
 * (see settings.h).
 *
 * The builder collects pairs as they come (later ones win, as PostgreSQL
 * applies the packet's parameters after the `options` switches), then
 * sorts them by name into the canonical text. Turning one set into another
 * on a server is a merge of two sorted lists: RESET what only the old set
 * has, set_config() what the new one sets differently. set_config(), not
 * SET, because it takes the value as raw text exactly as the startup
 * packet does (SET would read `a, b` of a list setting as one quoted name).
 */
#include "settings.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#include "intern.h"
#include "proto.h"
#include "util.h"

void settings_builder_init(struct settings_builder *b)
{
	memset(b, 0, sizeof(*b));
}

void settings_builder_free(struct settings_builder *b)
{
	for (int i = 0; i < b->count; i++) {
		free(b->items[i].name);
		free(b->items[i].value);
	}
	free(b->items);
	memset(b, 0, sizeof(*b));
}

/* letters, digits, '_', '$', '-' and '.': no quote, space or separator of the canonical text; folded to lower case */
static char *fold_name(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > SETTING_NAME_MAX || name[0] == '.' || name[n - 1] == '.' || strstr(name, ".."))
		return NULL; /* an empty part: no setting is named so, and RESET could not say it */
	char *out = xmalloc(n + 1);
	for (size_t i = 0; i <= n; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch && !isalnum(ch) && ch != '_' && ch != '.' && ch != '$' && ch != '-') {
			free(out);
			return NULL;
		}
		out[i] = (char)tolower(ch);
	}
	return out;
}

bool settings_add(struct settings_builder *b, const char *name, const char *value, char *why, size_t whylen)
{
	char *folded = fold_name(name);
	if (!folded) {
		snprintf(why, whylen, "invalid configuration parameter name \"%.64s\"", name);
		return false;
	}
	for (int i = 0; i < b->count; i++) {
		if (strcmp(b->items[i].name, folded) == 0) {
			free(folded);
			free(b->items[i].value);
			b->items[i].value = xstrdup(value);
			return true;
		}
	}
	if (b->count == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 8;
		b->items = xrealloc(b->items, (size_t)b->cap * sizeof(*b->items));
	}
	b->items[b->count].name = folded;
	b->items[b->count].value = xstrdup(value);
	b->count++;
	return true;
}

/* ---- options ---- */

/* the next white-space separated word of options, backslash escapes undone; false at the end */
static bool next_word(const char **pos, char *word, size_t cap)
{
	const char *p = *pos;
	while (*p && isspace((unsigned char)*p))
		p++;
	if (!*p)
		return false;
	size_t n = 0;
	while (*p && !isspace((unsigned char)*p)) {
		if (*p == '\\' && p[1])
			p++;
		if (n + 1 < cap)
			word[n++] = *p;
		p++;
	}
	word[n] = '\0';
	*pos = p;
	return true;
}

static bool refuse(struct settings_refusal *r, const char *sqlstate, const char *hint, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static bool refuse(struct settings_refusal *r, const char *sqlstate, const char *hint, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
	str_copy(r->sqlstate, sqlstate, sizeof(r->sqlstate));
	r->hint = hint;
	return false;
}

/* what PostgreSQL says of a word its getopt does not take */
static bool refuse_argument(struct settings_refusal *r, const char *word)
{
	return refuse(r, "42601", "Try \"postgres --help\" for more information.",
		      "invalid command-line argument for server process: %.200s", word);
}

/* "name=value" of a -c (switch "-c ") or -- (switch "--") option: one setting */
static bool take_assignment(char *text, const char *switch_text, settings_fn fn, void *arg,
			    struct settings_refusal *r)
{
	char *eq = strchr(text, '=');
	if (!eq) /* PostgreSQL's own words for a switch without a value */
		return refuse(r, "42601", NULL, "%s%.64s requires a value", switch_text, text);
	*eq = '\0';
	if (!*text) /* "-c =x": PostgreSQL looks for a parameter named "" */
		return refuse(r, "42704", NULL, "unrecognized configuration parameter \"\"");
	for (char *p = text; *p; p++)
		if (*p == '-')
			*p = '_'; /* --work-mem is work_mem, as PostgreSQL reads it */
	if (fn(text, eq + 1, arg, r->message, sizeof(r->message)))
		return true;
	str_copy(r->sqlstate, "42602", sizeof(r->sqlstate));
	r->hint = NULL;
	return false;
}

/* a switch letter of PostgreSQL's backend command line (its getopt string) */
static bool postgres_knows_switch(char letter)
{
	return letter && strchr("BbcCDdEeFfhijklNnOPprSsTtvW", letter) != NULL;
}

bool settings_parse_options(const char *options, settings_fn fn, void *arg, struct settings_refusal *r)
{
	size_t cap = strlen(options) + 1; /* no word is longer than the whole */
	char *word = xmalloc(cap);
	const char *pos = options;
	bool ok = true, switches_ended = false;
	while (ok && next_word(&pos, word, cap)) {
		if (switches_ended || word[0] != '-') {
			ok = refuse_argument(r, word); /* getopt leaves it over: PostgreSQL refuses it */
		} else if (strcmp(word, "--") == 0) {
			switches_ended = true;
		} else if (strcmp(word, "-c") == 0) {
			ok = next_word(&pos, word, cap) ? take_assignment(word, "-c ", fn, arg, r)
							: refuse_argument(r, "-c");
		} else if (strncmp(word, "-c", 2) == 0) {
			ok = take_assignment(word + 2, "-c ", fn, arg, r);
		} else if (strncmp(word, "--", 2) == 0) {
			ok = take_assignment(word + 2, "--", fn, arg, r);
		} else if (!postgres_knows_switch(word[1])) {
			ok = refuse_argument(r, word);
		} else {
			ok = refuse(r, "42601", NULL,
				    "options: \"%.64s\" is not supported by pgpulse (only -c name=value and --name=value)",
				    word);
		}
	}
	free(word);
	return ok;
}

/* ---- the canonical text ---- */

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct setting_item *)a)->name, ((const struct setting_item *)b)->name);
}

static void put_escaped(struct pktbuf *t, const char *value)
{
	for (const char *p = value; *p; p++) {
		if (*p == '\\')
			pkt_put_bytes(t, "\\\\", 2);
		else if (*p == '\n')
			pkt_put_bytes(t, "\\n", 2);
		else
			pkt_put_u8(t, (uint8_t)*p);
	}
}

const char *settings_intern(const struct settings_builder *b)
{
	if (b->count == 0)
		return NULL;
	qsort(b->items, (size_t)b->count, sizeof(*b->items), by_name);
	struct pktbuf t;
	pktbuf_init(&t);
	for (int i = 0; i < b->count; i++) {
		pkt_put_bytes(&t, b->items[i].name, strlen(b->items[i].name));
		pkt_put_u8(&t, '=');
		put_escaped(&t, b->items[i].value);
		pkt_put_u8(&t, '\n');
	}
	pkt_put_u8(&t, '\0');
	const char *set = intern_get((const char *)t.data);
	pktbuf_free(&t);
	return set;
}

/* one pair of a canonical text at *pos, decoded (name and value malloc'd); false at the end */
struct pair {
	char *name;
	char *value;
};

static void pair_free(struct pair *pr)
{
	free(pr->name);
	free(pr->value);
}

static bool next_pair(const char **pos, struct pair *out)
{
	const char *p = *pos;
	if (!p || !*p)
		return false;
	const char *eq = strchr(p, '=');
	size_t n = (size_t)(eq - p);
	out->name = xmalloc(n + 1);
	memcpy(out->name, p, n);
	out->name[n] = '\0';
	const char *v = eq + 1, *end = strchr(v, '\n');
	out->value = xmalloc((size_t)(end - v) + 1);
	size_t len = 0;
	for (const char *q = v; q < end; q++) {
		if (*q == '\\' && q + 1 < end) {
			q++;
			out->value[len++] = *q == 'n' ? '\n' : *q;
		} else {
			out->value[len++] = *q;
		}
	}
	out->value[len] = '\0';
	*pos = end + 1;
	return true;
}

void settings_each(const char *set, bool (*fn)(const char *name, const char *value, void *arg), void *arg)
{
	struct pair pr;
	const char *pos = set;
	while (next_pair(&pos, &pr)) {
		bool go_on = fn(pr.name, pr.value, arg);
		pair_free(&pr);
		if (!go_on)
			return;
	}
}

static bool add_to_builder(const char *name, const char *value, void *arg)
{
	char why[128];
	return settings_add(arg, name, value, why, sizeof(why));
}

const char *settings_with(const char *set, const char *name, const char *value)
{
	struct settings_builder b;
	char why[128];
	settings_builder_init(&b);
	settings_each(set, add_to_builder, &b);
	const char *out = settings_add(&b, name, value, why, sizeof(why)) ? settings_intern(&b) : NULL;
	settings_builder_free(&b);
	return out;
}

/*
 * RESET takes a name, not a string: each dot-separated part is quoted, so
 * that a custom name whose part is a keyword (all.x, a.select) still parses.
 * Folded names hold no quote ([a-z0-9_$.-]), and quoting keeps their case.
 */
static void put_reset(struct pktbuf *sql, const char *name)
{
	pkt_put_bytes(sql, "RESET \"", 7);
	for (const char *p = name; *p; p++) {
		if (*p == '.')
			pkt_put_bytes(sql, "\".\"", 3);
		else
			pkt_put_u8(sql, (uint8_t)*p);
	}
	pkt_put_bytes(sql, "\";", 2);
}

static void put_set_config(struct pktbuf *sql, const char *name, const char *value)
{
	pkt_put_bytes(sql, "SELECT pg_catalog.set_config(", 29);
	proto_quote_literal(sql, name);
	pkt_put_u8(sql, ',');
	proto_quote_literal(sql, value);
	pkt_put_bytes(sql, ",false);", 8);
}

/* every name of have RESET, every one of want set: for a server whose state is not known for sure */
static void sync_unsure(struct pktbuf *sql, const char *have, const char *want)
{
	struct pair pr;
	const char *pos = have;
	while (next_pair(&pos, &pr)) {
		put_reset(sql, pr.name);
		pair_free(&pr);
	}
	pos = want;
	while (next_pair(&pos, &pr)) {
		put_set_config(sql, pr.name, pr.value);
		pair_free(&pr);
	}
}

void settings_sync_sql(struct pktbuf *sql, const char *have, const char *want, bool unsure)
{
	if (unsure) {
		sync_unsure(sql, have, want);
		return;
	}
	if (have == want)
		return; /* interned: the same set */
	struct pair h, w;
	const char *hp = have, *wp = want;
	bool more_h = next_pair(&hp, &h), more_w = next_pair(&wp, &w);
	while (more_h || more_w) {
		int cmp = !more_h ? 1 : !more_w ? -1 : strcmp(h.name, w.name);
		if (cmp < 0) {
			put_reset(sql, h.name);
		} else if (cmp > 0) {
			put_set_config(sql, w.name, w.value);
		} else if (strcmp(h.value, w.value) != 0) {
			put_set_config(sql, w.name, w.value);
		}
		if (cmp <= 0) {
			pair_free(&h);
			more_h = next_pair(&hp, &h);
		}
		if (cmp >= 0) {
			pair_free(&w);
			more_w = next_pair(&wp, &w);
		}
	}
}
