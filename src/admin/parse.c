/*
 * admin/parse: one console query into one command.
 *
 *   command  := word [word] [';']
 *   set      := SET key ('=' | TO) value [';']
 *   word     := [A-Za-z0-9_]+ | "double-quoted, "" for a quote"
 *   value    := 'single-quoted, '' for a quote' | word | any run of non-blank, non-';'
 *
 * PgBouncer accepts the same shapes (its value must be a word or a quoted
 * string; pgpulse also takes unquoted 250ms, 1.5, /path). Keywords are
 * case-insensitive. A small hand-written scanner, so that nothing else in
 * the console parses SQL.
 */
#include "admin_parse.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static bool is_word_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_';
}

static const char *skip_blanks(const char *p)
{
	while (is_blank(*p))
		p++;
	return p;
}

/*
 * Copy one word (bare or double-quoted) at *pp into dst; advances *pp.
 * False when there is no word there or it does not fit.
 */
static bool scan_word(const char **pp, char *dst, size_t size, bool *quoted)
{
	const char *p = *pp;
	size_t n = 0;

	if (quoted)
		*quoted = false;
	if (*p == '"') {
		p++;
		for (;;) {
			if (*p == '\0')
				return false; /* unterminated */
			if (*p == '"') {
				if (p[1] != '"')
					break;
				p++; /* "" is one quote */
			}
			if (n + 1 >= size)
				return false;
			dst[n++] = *p++;
		}
		p++; /* closing quote */
		if (n == 0)
			return false; /* "" is not a name */
		if (quoted)
			*quoted = true;
	} else {
		while (is_word_char(*p)) {
			if (n + 1 >= size)
				return false;
			dst[n++] = *p++;
		}
		if (n == 0)
			return false;
	}
	dst[n] = '\0';
	*pp = p;
	return true;
}

/* a SET value: 'quoted' or a bare run of characters */
static bool scan_value(const char **pp, char *dst, size_t size)
{
	const char *p = *pp;
	size_t n = 0;

	if (*p == '\'') {
		p++;
		for (;;) {
			if (*p == '\0')
				return false;
			if (*p == '\'') {
				if (p[1] != '\'')
					break;
				p++; /* '' is one quote */
			}
			if (n + 1 >= size)
				return false;
			dst[n++] = *p++;
		}
		p++;
	} else {
		while (*p && !is_blank(*p) && *p != ';') {
			if (n + 1 >= size)
				return false;
			dst[n++] = *p++;
		}
		if (n == 0)
			return false;
	}
	dst[n] = '\0';
	*pp = p;
	return true;
}

/* the end of a command: blanks, an optional ';', blanks, the end */
static bool at_command_end(const char *p)
{
	p = skip_blanks(p);
	if (*p == ';')
		p = skip_blanks(p + 1);
	return *p == '\0';
}

void admin_parse(const char *sql, struct admin_cmd *cmd)
{
	const char *p = skip_blanks(sql);

	memset(cmd, 0, sizeof(*cmd));
	if (at_command_end(p)) {
		cmd->kind = CMD_EMPTY;
		return;
	}
	cmd->kind = CMD_BAD;
	if (!scan_word(&p, cmd->verb, sizeof(cmd->verb), NULL))
		return;

	if (strcasecmp(cmd->verb, "set") == 0) {
		p = skip_blanks(p);
		if (!scan_word(&p, cmd->key, sizeof(cmd->key), &cmd->key_quoted))
			return;
		p = skip_blanks(p);
		if (*p == '=') {
			p++;
		} else if (strncasecmp(p, "to", 2) == 0 && is_blank(p[2])) {
			p += 2;
		} else {
			return;
		}
		p = skip_blanks(p);
		if (!scan_value(&p, cmd->value, sizeof(cmd->value)))
			return;
		if (at_command_end(p))
			cmd->kind = CMD_SET;
		return;
	}

	/* a second word needs a blank (or a quote) between it and the first */
	const char *q = skip_blanks(p);
	if (q != p || *q == '"') {
		if (*q == '"' || is_word_char(*q)) {
			if (!scan_word(&q, cmd->arg, sizeof(cmd->arg), &cmd->arg_quoted))
				return;
			cmd->has_arg = true;
		}
		p = q;
	}
	q = skip_blanks(p);
	if (cmd->has_arg && q != p && is_word_char(*q)) {
		if (!scan_word(&q, cmd->arg2, sizeof(cmd->arg2), NULL))
			return;
		cmd->has_arg2 = true;
		p = q;
	}
	if (at_command_end(p))
		cmd->kind = CMD_WORDS;
}
