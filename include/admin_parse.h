/*
 * admin_parse: one admin console query into one command (src/admin/parse.c).
 * The console and its unit test use it; nothing else parses console SQL.
 */
#ifndef PGPULSE_ADMIN_PARSE_H
#define PGPULSE_ADMIN_PARSE_H

#include <stdbool.h>

enum cmd_kind { CMD_EMPTY, CMD_WORDS, CMD_SET, CMD_BAD };

struct admin_cmd {
	enum cmd_kind kind;
	char verb[64]; /* first word, as written */
	char arg[256]; /* second word, as written (unquoted); "" when absent */
	bool has_arg;
	char arg2[64]; /* third word (SHOW LATENCY 5m); "" when absent */
	bool has_arg2;
	bool arg_quoted;
	char key[64];     /* SET */
	char value[1024]; /* SET, unquoted */
	bool key_quoted;
};

/* CMD_BAD for anything that is not one command; never reads past sql's end */
void admin_parse(const char *sql, struct admin_cmd *cmd);

#endif
