/*
 * settings: the run-time settings a client asks for in its startup packet
 * (any parameter PostgreSQL accepts there, and the -c / -- switches of its
 * `options` parameter), kept as one canonical, interned text per distinct
 * set, so that "does this server already have this client's settings" is
 * a pointer compare and clients that all send the same values cost one
 * copy and no SET at all.
 *
 * The canonical text is the pairs sorted by name, each "name=value\n" with
 * the value's backslashes and newlines escaped (\\ and \n): names are
 * lower-case GUC names (letters, digits, '_', '$', '-', '.'), so the text
 * is unambiguous and two sets are equal exactly when their texts are.
 */
#ifndef PGPULSE_SETTINGS_H
#define PGPULSE_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

struct pktbuf;

/* the longest setting name accepted (PostgreSQL has no limit; the startup packet's 10,000 bytes bound it) */
#define SETTING_NAME_MAX 1024

/* a set being collected from one startup packet: later values of a name win */
struct settings_builder {
	struct setting_item {
		char *name;
		char *value;
	} *items;
	int count, cap;
};

void settings_builder_init(struct settings_builder *b);
void settings_builder_free(struct settings_builder *b);

/*
 * Add name=value. The name is folded to lower case (PostgreSQL's names are
 * case-insensitive). False (with why) for a name no setting can have
 * (empty, too long, other characters than letters, digits, '_', '$', '-'
 * and '.'); one PostgreSQL does not know is refused by PostgreSQL itself.
 */
bool settings_add(struct settings_builder *b, const char *name, const char *value, char *why, size_t whylen);

/*
 * PostgreSQL's `options` startup parameter: words split on white space,
 * a backslash taking the next character literally; `-c name=value`,
 * `-cname=value` and `--name=value` each set one parameter (through fn,
 * the name's '-' read as '_' as PostgreSQL reads --work-mem), and a bare
 * `--` ends the switches, as getopt's end of options. Refusals carry
 * PostgreSQL's own code, words and hint where PostgreSQL would refuse too
 * (a word after `--`, `-c` without its argument, an unknown switch, an
 * empty name); a switch PostgreSQL knows and pgpulse cannot give a pooled
 * session (-B, -F, ...) is refused naming it.
 */
struct settings_refusal {
	char sqlstate[6];
	const char *hint; /* static text, or NULL */
	char message[256];
};
typedef bool (*settings_fn)(const char *name, const char *value, void *arg, char *why, size_t whylen);
bool settings_parse_options(const char *options, settings_fn fn, void *arg, struct settings_refusal *refusal);

/* the canonical text of the set, interned (intern.h), or NULL for an empty set */
const char *settings_intern(const struct settings_builder *b);

/*
 * The SQL that turns a server whose settings are `have` into one with
 * `want` (either may be NULL: none): RESET for what only `have` sets,
 * set_config for what `want` sets differently. With `unsure` (something
 * may have reset the server since), every name of `have` is RESET and
 * every one of `want` set. Appended to sql (no terminator).
 */
void settings_sync_sql(struct pktbuf *sql, const char *have, const char *want, bool unsure);

/*
 * set with name=value added, or its value replaced: the canonical text of
 * the result, interned and held once by the caller (NULL only when name
 * cannot be a setting's, with set unchanged).
 */
const char *settings_with(const char *set, const char *name, const char *value);

/* call fn for each pair of a canonical text, decoded; stops when fn returns false */
void settings_each(const char *set, bool (*fn)(const char *name, const char *value, void *arg), void *arg);

#endif
