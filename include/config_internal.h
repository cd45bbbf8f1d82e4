/*
 * config_internal: the contract between the parts of the config module
 * (src/config/params.c, load.c, hosts.c) and nobody else's: no other module
 * and no test includes it; they use config.h.
 *
 * params.c owns the table of main-section parameters; load.c reaches a row
 * only through the opaque `struct param` and the functions below, and shares
 * params.c's small text parsers so that a value reads the same in the main
 * section as in a [databases] or [users] entry.
 */
#ifndef PGPULSE_CONFIG_INTERNAL_H
#define PGPULSE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* ---- params.c: the table ---- */

/* one row of the table of main-section parameters */
struct param;

/* the row named `name` (any case), or NULL */
const struct param *param_find(const char *name);
/* the row's name as the table spells it */
const char *param_name(const struct param *p);
/* the row's slot in cfg->origins */
int param_index(const struct param *p);
/* parse, check and store one value; c is untouched on failure, why says why */
bool param_assign(struct cfg *c, const struct param *p, const char *text, char *why, size_t whylen);
/* free the strings c holds for the table's rows (cfg_free does the rest) */
void param_free_strings(struct cfg *c);
/* log each parameter the file set that pgpulse accepts but does not act on */
void warn_not_in_effect(const struct cfg *c);
/* auth_dbname's value, global or a [databases] entry's: false (why says why) for the console */
bool cfg_check_auth_dbname(const char *name, char *why, size_t whylen);

/* ---- params.c: words and values, shared with the [databases]/[users] keys ---- */

/* one word of a fixed list and the number it stands for; a list ends with a NULL name */
struct word {
	const char *name;
	int value;
};

extern const struct word pool_mode_words[];

/* s without its leading and trailing blanks, cut in place */
char *trim(char *s);
/* the word spelled `name` (any case), or NULL */
const struct word *word_by_name(const struct word *words, const char *name);
/* why = "invalid value "text" (expected a, b or c)" */
void explain_words(const struct word *words, const char *text, char *why, size_t whylen);
/* a decimal int, blanks around it allowed and nothing else */
bool parse_int(const char *text, int64_t *out, char *why, size_t whylen);

/* ---- load.c ---- */

/* one port of a port= list: 1 .. 65535 */
bool parse_port(const char *text, int *port, char *why, size_t whylen);

#endif
