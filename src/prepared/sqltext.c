/*
 * prepared/sqltext: the few SQL texts the prepared module must recognise
 * in a client's Query or unnamed Parse, because they change the client's
 * names or the server's statements: DEALLOCATE of one name, and
 * DEALLOCATE ALL / DISCARD ALL. Pure functions on a NUL-terminated text;
 * no statement is parsed beyond these few words.
 */
#include "prepared_store.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/*
 * The statement name of "DEALLOCATE [PREPARE] name" (the whole text, an
 * optional ';'), folded as PostgreSQL folds identifiers; false for anything
 * else, and for DEALLOCATE ALL.
 */
bool ps_deallocate_target(const char *sql, char *name, size_t size)
{
	const char *p = sql;
	size_t n = 0;
	while (isspace((unsigned char)*p))
		p++;
	if (strncasecmp(p, "DEALLOCATE", 10) != 0 || !isspace((unsigned char)p[10]))
		return false;
	for (p += 10; isspace((unsigned char)*p); p++)
		;
	if (strncasecmp(p, "PREPARE", 7) == 0 && isspace((unsigned char)p[7]))
		for (p += 7; isspace((unsigned char)*p); p++)
			;
	if (*p == '"') {
		for (p++; *p && n + 1 < size; p++) {
			if (*p == '"' && p[1] != '"')
				break;
			if (*p == '"')
				p++; /* "" is one quote */
			name[n++] = *p;
		}
		if (*p++ != '"')
			return false;
	} else {
		for (; (isalnum((unsigned char)*p) || *p == '_' || *p == '$' || (unsigned char)*p >= 0x80) && n + 1 < size; p++)
			name[n++] = (char)tolower((unsigned char)*p);
		if (n == 0 || (n == 3 && strncmp(name, "all", 3) == 0))
			return false;
	}
	name[n] = '\0';
	while (isspace((unsigned char)*p))
		p++;
	if (*p == ';')
		for (p++; isspace((unsigned char)*p); p++)
			;
	return *p == '\0';
}

/*
 * A text that may run DEALLOCATE ALL or DISCARD ALL, among other
 * statements or in any spelling: it names both words. A false positive
 * only costs the server's statements prepared again.
 */
static bool ident_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '_' || ch == '$' || (unsigned char)ch >= 0x80;
}

/* ALL as a word of its own (DEALLOCATE has "all" inside) */
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
 * Exactly DEALLOCATE [PREPARE] ALL or DISCARD ALL, alone (an optional ';'):
 * the command that drops every name of the client's when it runs.
 */
bool ps_drops_all_exactly(const char *sql)
{
	const char *p = sql;
	while (isspace((unsigned char)*p))
		p++;
	static const char *const words[][3] = { { "DEALLOCATE", "ALL", NULL },
						{ "DEALLOCATE", "PREPARE", "ALL" },
						{ "DISCARD", "ALL", NULL } };
	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
		const char *q = p;
		size_t k = 0;
		for (; k < 3 && words[w][k]; k++) {
			size_t n = strlen(words[w][k]);
			if (strncasecmp(q, words[w][k], n) != 0 || (isalnum((unsigned char)q[n]) || q[n] == '_'))
				break;
			for (q += n; isspace((unsigned char)*q); q++)
				;
		}
		if (k < 3 && words[w][k])
			continue;
		if (*q == ';')
			for (q++; isspace((unsigned char)*q); q++)
				;
		if (*q == '\0')
			return true;
	}
	return false;
}
