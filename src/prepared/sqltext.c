/*
 * prepared/sqltext: the few SQL texts the prepared module must recognise
 * in a client's Query or unnamed Parse, because they change the client's
 * names or the server's statements: DEALLOCATE of one name, and
 * DEALLOCATE ALL / DISCARD ALL. Pure functions on a NUL-terminated text.
 *
 * A text is split into statements as PostgreSQL's lexer splits a simple
 * Query: on a ';' outside quotes ('...', E'...', "...", $tag$...$tag$),
 * comments (-- to the line's end, nested block comments) and parentheses
 * (CREATE RULE's actions). Statements that are only blanks do not count,
 * as PostgreSQL runs nothing for them. Nothing is parsed beyond the few
 * words of the statements looked for; standard_conforming_strings is
 * taken to be on (backslashes escape only inside E'...').
 */
#include "prepared_store.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static bool ident_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_' || ch == '$' || (unsigned char)ch >= 0x80;
}

/* past a block comment opened at p ("/" "*"), nested as PostgreSQL nests them; NULL when unterminated */
static const char *skip_block_comment(const char *p)
{
	int depth = 0;
	do {
		if (p[0] == '/' && p[1] == '*') {
			depth++;
			p += 2;
		} else if (p[0] == '*' && p[1] == '/') {
			depth--;
			p += 2;
		} else if (*p) {
			p++;
		} else {
			return NULL;
		}
	} while (depth > 0);
	return p;
}

/* past whitespace and comments; NULL at an unterminated block comment */
static const char *skip_blank(const char *p)
{
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			if (!(p = skip_block_comment(p)))
				return NULL;
		} else {
			return p;
		}
	}
}

/* the length of a dollar quote's opening tag at p ("$$", "$tag$"), 0 when p does not open one */
static size_t dollar_tag(const char *p)
{
	size_t n = 1;
	if (isdigit((unsigned char)p[1]))
		return 0; /* $1: a parameter */
	while (ident_char(p[n]) && p[n] != '$')
		n++;
	return p[n] == '$' ? n + 1 : 0;
}

/* past a quoted string, identifier or dollar-quoted text that opens at p; NULL when unterminated */
static const char *skip_quoted(const char *text, const char *p)
{
	if (*p == '$') {
		size_t n = dollar_tag(p);
		const char *close = p + n;
		while ((close = strchr(close, '$')) && strncmp(close, p, n) != 0)
			close++;
		return close ? close + n : NULL;
	}
	char q = *p;
	/* E'...' (not an identifier ending in e): backslash escapes */
	bool escapes = q == '\'' && p > text && (p[-1] == 'E' || p[-1] == 'e') && (p - 1 == text || !ident_char(p[-2]));
	for (p++; *p; p++) {
		if (escapes && *p == '\\' && p[1])
			p++;
		else if (*p == q && p[1] == q)
			p++; /* '' or "" is one quote */
		else if (*p == q)
			return p + 1;
	}
	return NULL;
}

/*
 * The next statement of `text` from *pos: [*start, *end) from its first
 * word to its ';' or the text's end, and *pos past it. False when none is
 * left (*pos is then at the text's end), or the text is one PostgreSQL's
 * lexer refuses (an unterminated quote or comment: nothing of it runs).
 */
bool ps_sql_next(const char *text, const char **pos, const char **start, const char **end)
{
	const char *p = *pos;
	for (;;) {
		if (!(p = skip_blank(p)))
			return false;
		if (*p != ';')
			break;
		p++; /* an empty statement */
	}
	if (!*p) {
		*pos = p;
		return false;
	}
	*start = p;
	int depth = 0;
	while (*p && !(*p == ';' && depth == 0)) {
		if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*')) {
			if (!(p = skip_blank(p)))
				return false;
		} else if (*p == '\'' || *p == '"' || (*p == '$' && (p == text || !ident_char(p[-1])) && dollar_tag(p))) {
			if (!(p = skip_quoted(text, p)))
				return false;
		} else if (ident_char(*p)) {
			while (ident_char(*p))
				p++; /* a$b$ is a name: no dollar quote opens inside one */
		} else {
			depth += *p == '(' ? 1 : *p == ')' && depth > 0 ? -1 : 0;
			p++;
		}
	}
	*end = p;
	*pos = *p ? p + 1 : p;
	return true;
}

/* past `word` and the blanks after it when the text at p is that keyword, NULL otherwise */
static const char *keyword(const char *p, const char *word)
{
	size_t n = strlen(word);
	if (strncasecmp(p, word, n) != 0 || ident_char(p[n]))
		return NULL;
	return skip_blank(p + n);
}

/*
 * The name a statement [start, end) of ps_sql_next's DEALLOCATEs, folded as
 * PostgreSQL folds identifiers: "DEALLOCATE [PREPARE] name". False for
 * anything else, and for DEALLOCATE ALL.
 */
bool ps_sql_deallocates(const char *start, const char *end, char *name, size_t size)
{
	const char *p = keyword(start, "DEALLOCATE");
	size_t n = 0;
	if (!p || p >= end)
		return false;
	const char *after = keyword(p, "PREPARE");
	if (after && after < end)
		p = after; /* else "prepare" is the name */
	if (*p == '"') {
		for (p++; p < end && n + 1 < size; p++) {
			if (*p == '"' && p[1] != '"')
				break;
			if (*p == '"')
				p++; /* "" is one quote */
			name[n++] = *p;
		}
		if (p >= end || *p++ != '"')
			return false;
	} else {
		for (; p < end && ident_char(*p) && n + 1 < size; p++)
			name[n++] = (char)tolower((unsigned char)*p);
		if (n == 0 || (n == 3 && strncmp(name, "all", 3) == 0))
			return false;
	}
	name[n] = '\0';
	return (p = skip_blank(p)) && p == end;
}

/* a statement [start, end) of ps_sql_next's that is DEALLOCATE [PREPARE] ALL or DISCARD ALL */
bool ps_sql_drops_all(const char *start, const char *end)
{
	const char *p = keyword(start, "DEALLOCATE");
	if (p) {
		const char *after = keyword(p, "PREPARE");
		if (after)
			p = after;
	} else {
		p = keyword(start, "DISCARD");
	}
	return p && (p = keyword(p, "ALL")) && p == end;
}

/*
 * A text of a single statement (an unnamed Parse's) that is "DEALLOCATE
 * [PREPARE] name": the name, as ps_sql_deallocates gives it.
 */
bool ps_deallocate_target(const char *sql, char *name, size_t size)
{
	const char *pos = sql, *start, *end, *more, *more_end;
	if (!ps_sql_next(sql, &pos, &start, &end) || !ps_sql_deallocates(start, end, name, size))
		return false;
	return !ps_sql_next(sql, &pos, &more, &more_end) && *pos == '\0'; /* and nothing after it */
}

/*
 * A cheap first look for a text that may run DEALLOCATE ALL or DISCARD
 * ALL: it names both words. A false positive only costs a closer look.
 */
static bool has_word_all(const char *sql)
{
	for (const char *p = sql; (p = strcasestr(p, "ALL")) != NULL; p += 3)
		if ((p == sql || !ident_char(p[-1])) && !ident_char(p[3]))
			return true;
	return false;
}

bool ps_may_drop_all(const char *sql)
{
	return has_word_all(sql) && (strcasestr(sql, "DEALLOCATE") || strcasestr(sql, "DISCARD"));
}

/*
 * A text one of whose statements is DEALLOCATE [PREPARE] ALL or DISCARD
 * ALL: the command that drops every name of the client's when it runs.
 * Alone, it runs unless the transaction is aborted; among others, whether
 * it runs depends on them (a failure before it, DISCARD ALL refused in the
 * implicit transaction): only the reply can say.
 */
bool ps_drops_all(const char *sql, bool *alone)
{
	const char *pos = sql, *start, *end;
	bool drops = false;
	unsigned statements = 0;
	for (; ps_sql_next(sql, &pos, &start, &end); statements++)
		drops = drops || ps_sql_drops_all(start, end);
	*alone = statements == 1;
	return drops && *pos == '\0'; /* the whole text lexed: else none of it runs */
}
