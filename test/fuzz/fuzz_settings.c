/*
 * fuzz_settings: a client's `options` startup parameter, which a stranger
 * writes (src/settings.c: settings_parse_options, then the canonical set).
 *
 * Input: the options text (cut at its first NUL, as a startup packet would).
 * Asserts beyond "no crash":
 *   - a set that parsed round-trips: decoding its canonical text and
 *     building again gives the same interned pointer;
 *   - every decoded name is a folded GUC name ([a-z0-9_.$], 1..63 bytes);
 *   - moving a server from the set to itself needs no SQL, from nothing to
 *     the set exactly one well-formed set_config per name (no value can end
 *     its quoted literal early), and from the set to nothing one
 *     well-formed RESET of quoted name parts per name.
 */
#include "settings.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "proto.h"

static bool add(const char *name, const char *value, void *arg, char *why, size_t whylen)
{
	return settings_add(arg, name, value, why, whylen);
}

struct again {
	struct settings_builder b;
	int names;
};

static bool re_add(const char *name, const char *value, void *arg)
{
	struct again *a = arg;
	size_t n = strlen(name);
	assert(n >= 1 && n <= SETTING_NAME_MAX);
	for (size_t i = 0; i < n; i++)
		assert((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_' ||
		       name[i] == '.' || name[i] == '$' || name[i] == '-');
	char why[256];
	bool ok = settings_add(&a->b, name, value, why, sizeof(why));
	assert(ok);
	a->names++;
	return true;
}

/* skip one E'...' literal at *p (quotes doubled inside); false if there is none */
static bool skip_literal(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *q = *p;
	if (end - q < 2 || q[0] != 'E' || q[1] != '\'')
		return false;
	for (q += 2; q < end; q++) {
		if (*q != '\'')
			continue;
		if (q + 1 < end && q[1] == '\'') {
			q++;
			continue;
		}
		*p = q + 1;
		return true;
	}
	return false;
}

static bool skip_text(const uint8_t **p, const uint8_t *end, const char *text)
{
	size_t n = strlen(text);
	if ((size_t)(end - *p) < n || memcmp(*p, text, n) != 0)
		return false;
	*p += n;
	return true;
}

/* RESET "a"."b"; ... exactly: quoted parts without quotes inside; the count of them */
static int reset_statements(const uint8_t *p, size_t len)
{
	if (len == 0)
		return 0;
	const uint8_t *end = p + len;
	int n = 0;
	while (p < end) {
		bool ok = skip_text(&p, end, "RESET \"");
		assert(ok);
		for (;;) {
			const uint8_t *q = memchr(p, '"', (size_t)(end - p));
			assert(q && q > p);
			p = q + 1;
			if (skip_text(&p, end, ".\""))
				continue;
			ok = skip_text(&p, end, ";");
			assert(ok);
			break;
		}
		n++;
	}
	return n;
}

/*
 * The SQL is exactly a run of "SELECT pg_catalog.set_config(<lit>,<lit>,false);":
 * whatever a value holds, it cannot end its literal early. The count of them.
 */
static int set_config_statements(const uint8_t *p, size_t len)
{
	if (len == 0)
		return 0; /* p may be NULL: an empty buffer holds nothing */
	const uint8_t *end = p + len;
	int n = 0;
	while (p < end) {
		bool ok = skip_text(&p, end, "SELECT pg_catalog.set_config(") && skip_literal(&p, end) &&
			  skip_text(&p, end, ",") && skip_literal(&p, end) && skip_text(&p, end, ",false);");
		assert(ok);
		n++;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	struct settings_builder b;
	struct settings_refusal refusal;
	settings_builder_init(&b);
	if (settings_parse_options(text, add, &b, &refusal)) {
		const char *set = settings_intern(&b);
		struct again a = { .names = 0 };
		settings_builder_init(&a.b);
		settings_each(set, re_add, &a);
		const char *again = settings_intern(&a.b);
		assert(again == set);
		assert(a.names == b.count);
		struct pktbuf sql;
		pktbuf_init(&sql);
		settings_sync_sql(&sql, set, set, false);
		assert(sql.len == 0);
		settings_sync_sql(&sql, NULL, set, false);
		assert(set_config_statements(sql.data, sql.len) == a.names);
		pktbuf_free(&sql);
		pktbuf_init(&sql);
		settings_sync_sql(&sql, set, NULL, false);
		assert(reset_statements(sql.data, sql.len) == a.names);
		pktbuf_free(&sql);
		intern_drop(again);
		intern_drop(set);
		settings_builder_free(&a.b);
	} else {
		/* a refusal is said to the client: a SQLSTATE and words, always */
		assert(strlen(refusal.sqlstate) == 5 && refusal.message[0]);
	}
	settings_builder_free(&b);
	free(text);
	return 0;
}
