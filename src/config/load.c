/*
 * config/load: reading the ini file into a struct cfg: lines, sections,
 * %include, and the [databases] / [users] entries with their connect-string
 * syntax. Main-section lines go to the table of config/params.c.
 *
 * A load fills a brand-new struct cfg and hands it out only when the whole
 * file (and everything it %includes) parsed; on any error it is freed, so a
 * bad RELOAD can never leave a half-applied configuration behind.
 * [databases] and [users] keys get the table treatment of the main section
 * on a smaller scale: each key is a row naming its kind and its field.
 */
#include "config_internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "hosts.h"
#include "log.h"

#define MAX_INCLUDE_DEPTH 10

/* ------------------------------------------------------------------------
 * [databases] and [users] keys: the same idea on a smaller scale
 * ------------------------------------------------------------------------ */

static const struct word load_balance_words[] = {
	{ "round-robin", LB_ROUND_ROBIN },
	{ "disable", LB_DISABLE },
	{ NULL, 0 },
};

/* libpq's target_session_attrs, spelled as libpq spells them (hosts.h has the same list) */
static const struct word tsa_words[] = {
	{ "any", TSA_ANY },
	{ "read-write", TSA_READ_WRITE },
	{ "read-only", TSA_READ_ONLY },
	{ "primary", TSA_PRIMARY },
	{ "standby", TSA_STANDBY },
	{ "prefer-standby", TSA_PREFER_STANDBY },
	{ NULL, 0 },
};

enum entry_kind {
	EK_STRING,    /* char *, NULL when absent */
	EK_PORT,      /* int 1..65535 */
	EK_PORTS,     /* a port, or a comma list of ports: the first in the int, the list kept as text */
	EK_LOAD_BALANCE, /* int, enum load_balance */
	EK_TSA,       /* int, enum target_session_attrs */
	EK_COUNT,     /* int >= 0 */
	EK_POOL_MODE, /* int, enum pool_mode */
	EK_DURATION,  /* int64_t usec; bare numbers are seconds */
};

struct entry_key {
	const char *name;
	enum entry_kind kind;
	size_t offset;
};

#define DB_AT(field, ctype) \
	(offsetof(struct cfg_db, field) + 0 * sizeof(_Generic(((struct cfg_db *)0)->field, ctype: 1)))
#define USER_AT(field, ctype) \
	(offsetof(struct cfg_user, field) + 0 * sizeof(_Generic(((struct cfg_user *)0)->field, ctype: 1)))

static const struct entry_key db_keys[] = {
	{ "host", EK_STRING, DB_AT(host, char *) },
	{ "port", EK_PORTS, DB_AT(port, int) },
	{ "load_balance_hosts", EK_LOAD_BALANCE, DB_AT(load_balance_hosts, int) },
	{ "target_session_attrs", EK_TSA, DB_AT(target_session_attrs, int) },
	{ "dbname", EK_STRING, DB_AT(dbname, char *) },
	{ "user", EK_STRING, DB_AT(user, char *) },
	{ "password", EK_STRING, DB_AT(password, char *) },
	{ "auth_user", EK_STRING, DB_AT(auth_user, char *) },
	{ "auth_query", EK_STRING, DB_AT(auth_query, char *) },
	{ "auth_dbname", EK_STRING, DB_AT(auth_dbname, char *) },
	{ "pool_size", EK_COUNT, DB_AT(pool_size, int) },
	{ "min_pool_size", EK_COUNT, DB_AT(min_pool_size, int) },
	{ "reserve_pool", EK_COUNT, DB_AT(reserve_pool_size, int) }, /* PgBouncer's older name */
	{ "reserve_pool_size", EK_COUNT, DB_AT(reserve_pool_size, int) },
	{ "overflow_pool_size", EK_COUNT, DB_AT(overflow_pool_size, int) },
	{ "max_db_connections", EK_COUNT, DB_AT(max_db_connections, int) },
	{ "max_db_client_connections", EK_COUNT, DB_AT(max_db_client_connections, int) },
	{ "pool_mode", EK_POOL_MODE, DB_AT(pool_mode, int) },
	{ "server_lifetime", EK_DURATION, DB_AT(server_lifetime, int64_t) },
	{ "connect_query", EK_STRING, DB_AT(connect_query, char *) },
	{ "client_encoding", EK_STRING, DB_AT(client_encoding, char *) },
	{ "datestyle", EK_STRING, DB_AT(datestyle, char *) },
	{ "timezone", EK_STRING, DB_AT(timezone, char *) },
	{ "application_name", EK_STRING, DB_AT(application_name, char *) },
	{ NULL, EK_STRING, 0 },
};

static const struct entry_key user_keys[] = {
	{ "pool_mode", EK_POOL_MODE, USER_AT(pool_mode, int) },
	{ "pool_size", EK_COUNT, USER_AT(pool_size, int) },
	{ "reserve_pool", EK_COUNT, USER_AT(reserve_pool_size, int) },
	{ "reserve_pool_size", EK_COUNT, USER_AT(reserve_pool_size, int) },
	{ "max_user_connections", EK_COUNT, USER_AT(max_user_connections, int) },
	{ "max_user_client_connections", EK_COUNT, USER_AT(max_user_client_connections, int) },
	{ "query_timeout", EK_DURATION, USER_AT(query_timeout, int64_t) },
	{ "query_wait_timeout", EK_DURATION, USER_AT(query_wait_timeout, int64_t) },
	{ "idle_transaction_timeout", EK_DURATION, USER_AT(idle_transaction_timeout, int64_t) },
	{ "transaction_timeout", EK_DURATION, USER_AT(transaction_timeout, int64_t) },
	{ "client_idle_timeout", EK_DURATION, USER_AT(client_idle_timeout, int64_t) },
	{ NULL, EK_STRING, 0 },
};

static const struct entry_key *entry_key_find(const struct entry_key *keys, const char *name)
{
	for (; keys->name; keys++)
		if (strcmp(keys->name, name) == 0)
			return keys;
	return NULL;
}

/* one port of a port= list: 1 .. 65535 */
bool parse_port(const char *text, int *port, char *why, size_t whylen)
{
	int64_t num;
	if (!parse_int(text, &num, why, whylen))
		return false;
	if (num < 1 || num > 65535) {
		snprintf(why, whylen, "%" PRId64 " is out of range (1 .. 65535)", num);
		return false;
	}
	*port = (int)num;
	return true;
}

/*
 * port=5432 or port=5432,5433: every port is checked here; the first goes
 * into cfg_db.port and a list is kept as written for cfg_hosts_parse, which
 * pairs it with the hosts once both keys are known.
 */
static bool assign_port_list(void *entry, const struct entry_key *k, const char *text, char *why, size_t whylen)
{
	struct cfg_db *db = entry;
	char item[32];
	const char *p = text;
	int first = 0, port;

	for (int i = 0;; i++) {
		size_t len = strcspn(p, ",");
		if (len == 0 || len >= sizeof(item)) {
			snprintf(why, whylen, "\"%s\" is not a port or a comma-separated list of ports", text);
			return false;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		if (!parse_port(item, &port, why, whylen))
			return false;
		if (i == 0)
			first = port;
		if (!p[len])
			break;
		p += len + 1;
	}
	*(int *)((char *)entry + k->offset) = first;
	free(db->port_list);
	db->port_list = strchr(text, ',') ? strdup(text) : NULL;
	if (strchr(text, ',') && !db->port_list) {
		snprintf(why, whylen, "out of memory");
		return false;
	}
	return true;
}

/* parse text into the field of `entry` (a struct cfg_db or cfg_user) that k names */
static bool entry_assign(void *entry, const struct entry_key *k, const char *text, char *why, size_t whylen)
{
	void *f = (char *)entry + k->offset;
	int64_t num;
	const struct word *w;
	char *copy;

	switch (k->kind) {
	case EK_STRING:
		if (!(copy = strdup(text))) {
			snprintf(why, whylen, "out of memory");
			return false;
		}
		free(*(char **)f);
		*(char **)f = copy;
		return true;
	case EK_PORT:
	case EK_COUNT:
		if (!parse_int(text, &num, why, whylen))
			return false;
		if (k->kind == EK_PORT ? num < 1 || num > 65535 : num < 0) {
			snprintf(why, whylen, "%" PRId64 " is out of range (%s)", num,
				 k->kind == EK_PORT ? "1 .. 65535" : "0 or more");
			return false;
		}
		*(int *)f = (int)num;
		return true;
	case EK_PORTS:
		return assign_port_list(entry, k, text, why, whylen);
	case EK_LOAD_BALANCE:
		if (!(w = word_by_name(load_balance_words, text))) {
			explain_words(load_balance_words, text, why, whylen);
			return false;
		}
		*(int *)f = w->value;
		return true;
	case EK_TSA:
		if (!(w = word_by_name(tsa_words, text))) {
			explain_words(tsa_words, text, why, whylen);
			return false;
		}
		*(int *)f = w->value;
		return true;
	case EK_POOL_MODE:
		if (!(w = word_by_name(pool_mode_words, text))) {
			explain_words(pool_mode_words, text, why, whylen);
			return false;
		}
		*(int *)f = w->value;
		return true;
	case EK_DURATION:
		if (!cfg_parse_duration(text, &num)) {
			snprintf(why, whylen, "invalid duration \"%s\" (use a number of seconds, or a number with us, ms, s, min, h or d)", text);
			return false;
		}
		*(int64_t *)f = num;
		return true;
	}
	return false;
}

static void db_init(struct cfg_db *db)
{
	memset(db, 0, sizeof(*db));
	db->port = 5432;
	db->pool_size = -1;
	db->min_pool_size = -1;
	db->reserve_pool_size = -1;
	db->overflow_pool_size = -1;
	db->max_db_connections = -1;
	db->max_db_client_connections = -1;
	db->pool_mode = -1;
	db->server_lifetime = -1;
}

static void db_free_fields(struct cfg_db *db)
{
	free(db->name);
	free(db->port_list);
	db->port_list = NULL;
	cfg_hosts_free(&db->hosts);
	for (const struct entry_key *k = db_keys; k->name; k++)
		if (k->kind == EK_STRING) {
			char **s = (char **)((char *)db + k->offset);
			free(*s);
			*s = NULL;
		}
}

static void user_init(struct cfg_user *u)
{
	memset(u, 0, sizeof(*u));
	u->pool_mode = -1;
	u->pool_size = -1;
	u->reserve_pool_size = -1;
	u->max_user_connections = -1;
	u->max_user_client_connections = -1;
	u->query_timeout = -1;
	u->query_wait_timeout = -1;
	u->idle_transaction_timeout = -1;
	u->client_idle_timeout = -1;
	u->transaction_timeout = -1;
}

/*
 * Take the next key=value pair off a connect string, in place: key and value
 * are NUL-terminated inside the buffer and a 'single quoted' value loses its
 * quotes and backslash escapes. The unquoted text is never longer than the
 * quoted text, so it is written over it. Returns 1 for a pair, 0 at the end,
 * -1 with a reason in why.
 */
static int connstr_next_pair(char **pos, char **key, char **value, char *why, size_t whylen)
{
	char *p = *pos, *key_end;

	while (isspace((unsigned char)*p))
		p++;
	if (!*p) {
		*pos = p;
		return 0;
	}
	*key = p;
	while (isalnum((unsigned char)*p) || *p == '_')
		p++;
	key_end = p;
	while (isspace((unsigned char)*p))
		p++;
	if (key_end == *key || *p != '=') {
		snprintf(why, whylen, "syntax error at \"%.30s\" (expected key=value)", *key);
		return -1;
	}
	p++;
	*key_end = '\0'; /* after stepping over '=', which key_end may point at */
	while (isspace((unsigned char)*p))
		p++;

	if (*p == '\'') {
		char *out = p;
		*value = out;
		for (p++;; p++) {
			if (*p == '\0') {
				snprintf(why, whylen, "%s: unterminated quoted value", *key);
				return -1;
			}
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '\'')
				break;
			*out++ = *p;
		}
		p++;
		if (*p && !isspace((unsigned char)*p)) {
			snprintf(why, whylen, "%s: expected a space after the closing quote", *key);
			return -1;
		}
		*out = '\0';
	} else {
		*value = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		if (*p)
			*p++ = '\0';
	}
	*pos = p;
	return 1;
}

/* ------------------------------------------------------------------------
 * The loader: files, lines, sections, %include
 * ------------------------------------------------------------------------ */

enum section { SECTION_NONE, SECTION_MAIN, SECTION_DATABASES, SECTION_USERS, SECTION_PEERS, SECTION_IGNORED };

struct loader {
	struct cfg *cfg;
	char *err;
	size_t errlen;
	/* files being read right now, outermost first: how include loops are caught */
	int depth;
	dev_t open_dev[MAX_INCLUDE_DEPTH + 1];
	ino_t open_ino[MAX_INCLUDE_DEPTH + 1];
};

/* where a line came from; file points into cfg->files */
struct where {
	const char *file;
	int line;
};

static bool fail(struct loader *ld, const struct where *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* record "file:line: message" as the load error; always returns false */
static bool fail(struct loader *ld, const struct where *at, const char *fmt, ...)
{
	va_list ap;
	size_t used = 0;

	if (!ld->err || ld->errlen == 0)
		return false;
	if (at)
		used = (size_t)snprintf(ld->err, ld->errlen, "%s:%d: ", at->file, at->line);
	if (used < ld->errlen) {
		va_start(ap, fmt);
		vsnprintf(ld->err + used, ld->errlen - used, fmt, ap);
		va_end(ap);
	}
	return false;
}

/* keep a copy of a file name for the life of the cfg, so entries can point at it */
static const char *remember_file(struct cfg *c, const char *path)
{
	char **grown, *copy;

	for (int i = 0; i < c->n_files; i++)
		if (strcmp(c->files[i], path) == 0)
			return c->files[i];
	if (!(copy = strdup(path)))
		return NULL;
	grown = realloc(c->files, sizeof(*grown) * (size_t)(c->n_files + 1));
	if (!grown) {
		free(copy);
		return NULL;
	}
	c->files = grown;
	c->files[c->n_files++] = copy;
	return copy;
}

static bool load_main_param(struct loader *ld, const struct where *at, const char *key, const char *value)
{
	const struct param *p = param_find(key);
	char why[512];

	if (!p) {
		log_warning("%s:%d: unknown parameter \"%s\"", at->file, at->line, key);
		return true;
	}
	if (!param_assign(ld->cfg, p, value, why, sizeof(why)))
		return fail(ld, at, "%s: %s", param_name(p), why);
	ld->cfg->origins[param_index(p)] = (struct cfg_origin){ at->file, at->line };
	return true;
}

/* the admin console's names; a [databases] entry may not shadow them */
static bool is_admin_db_name(const char *name)
{
	return strcmp(name, "pgpulse") == 0 || strcmp(name, "pgbouncer") == 0;
}

static bool add_database(struct loader *ld, const struct where *at, struct cfg_db *db)
{
	struct cfg *c = ld->cfg;
	struct cfg_db *grown;

	for (int i = 0; i < c->n_dbs; i++) {
		if (strcmp(c->dbs[i].name, db->name) == 0) {
			log_warning("%s:%d: database \"%s\" is defined again; this definition replaces the one at %s:%d",
				    at->file, at->line, db->name, c->dbs[i].file, c->dbs[i].line);
			db_free_fields(&c->dbs[i]);
			c->dbs[i] = *db;
			return true;
		}
	}
	grown = realloc(c->dbs, sizeof(*grown) * (size_t)(c->n_dbs + 1));
	if (!grown) {
		db_free_fields(db);
		return fail(ld, at, "out of memory");
	}
	c->dbs = grown;
	c->dbs[c->n_dbs++] = *db;
	return true;
}

static bool load_database(struct loader *ld, const struct where *at, const char *name, char *connstr)
{
	struct cfg_db db;
	char why[512], *pos = connstr, *key, *value;
	int more;

	if (is_admin_db_name(name)) {
		log_warning("%s:%d: database name \"%s\" is reserved for the admin console; entry ignored",
			    at->file, at->line, name);
		return true;
	}
	db_init(&db);
	db.file = at->file;
	db.line = at->line;
	if (!(db.name = strdup(name)))
		return fail(ld, at, "out of memory");

	while ((more = connstr_next_pair(&pos, &key, &value, why, sizeof(why))) > 0) {
		const struct entry_key *k = entry_key_find(db_keys, key);
		if (!k) {
			log_warning("%s:%d: database \"%s\": unknown parameter \"%s\"", at->file, at->line, name, key);
			continue;
		}
		if (!entry_assign(&db, k, value, why, sizeof(why))) {
			db_free_fields(&db);
			return fail(ld, at, "database \"%s\": %s: %s", name, k->name, why);
		}
	}
	if (more < 0) {
		db_free_fields(&db);
		return fail(ld, at, "database \"%s\": %s", name, why);
	}
	if (!cfg_check_auth_dbname(db.auth_dbname, why, sizeof(why))) {
		db_free_fields(&db);
		return fail(ld, at, "database \"%s\": auth_dbname: %s", name, why);
	}
	/* host= with nothing means the default unix socket, as if absent */
	if (db.host && !db.host[0]) {
		free(db.host);
		db.host = NULL;
	}
	if (!cfg_hosts_parse(db.host, db.port_list, db.port, &db.hosts, why, sizeof(why))) {
		db_free_fields(&db);
		return fail(ld, at, "database \"%s\": %s", name, why);
	}
	if (db.hosts.count == 0 && db.port_list) {
		db_free_fields(&db);
		return fail(ld, at, "database \"%s\": port: a list of ports needs a list of hosts", name);
	}
	return add_database(ld, at, &db);
}

static bool load_user(struct loader *ld, const struct where *at, const char *name, char *settings)
{
	struct cfg *c = ld->cfg;
	struct cfg_user u, *grown;
	char why[512], *pos = settings, *key, *value;
	int more;

	user_init(&u);
	u.file = at->file;
	u.line = at->line;
	while ((more = connstr_next_pair(&pos, &key, &value, why, sizeof(why))) > 0) {
		const struct entry_key *k = entry_key_find(user_keys, key);
		if (!k) {
			log_warning("%s:%d: user \"%s\": unknown parameter \"%s\"", at->file, at->line, name, key);
			continue;
		}
		if (!entry_assign(&u, k, value, why, sizeof(why)))
			return fail(ld, at, "user \"%s\": %s: %s", name, k->name, why);
	}
	if (more < 0)
		return fail(ld, at, "user \"%s\": %s", name, why);
	if (!(u.name = strdup(name)))
		return fail(ld, at, "out of memory");

	for (int i = 0; i < c->n_users; i++) {
		if (strcmp(c->users[i].name, name) == 0) {
			log_warning("%s:%d: user \"%s\" is defined again; this definition replaces the one at %s:%d",
				    at->file, at->line, name, c->users[i].file, c->users[i].line);
			free(c->users[i].name);
			c->users[i] = u;
			return true;
		}
	}
	grown = realloc(c->users, sizeof(*grown) * (size_t)(c->n_users + 1));
	if (!grown) {
		free(u.name);
		return fail(ld, at, "out of memory");
	}
	c->users = grown;
	c->users[c->n_users++] = u;
	return true;
}

/*
 * `<peer_id> = host=... port=... [pool_size=...]`, as PgBouncer writes it.
 * Every process of a group can share one [peers] section: the entry for
 * the process's own peer_id is simply never used.
 */
static bool load_peer(struct loader *ld, const struct where *at, const char *name, char *settings)
{
	struct cfg *c = ld->cfg;
	struct cfg_peer p = { .port = 6432, .pool_size = -1, .file = at->file, .line = at->line };
	char why[512], *pos = settings, *key, *value;
	int64_t id;
	int more;

	if (!parse_int(name, &id, why, sizeof(why)) || id < 1 || id > 16383)
		return fail(ld, at, "peer \"%s\": a peer id is a number from 1 to 16383", name);
	p.id = (int)id;
	while ((more = connstr_next_pair(&pos, &key, &value, why, sizeof(why))) > 0) {
		if (strcmp(key, "host") == 0) {
			free(p.host);
			if (!(p.host = strdup(value)))
				return fail(ld, at, "out of memory");
		} else if (strcmp(key, "port") == 0) {
			if (!parse_port(value, &p.port, why, sizeof(why))) {
				free(p.host);
				return fail(ld, at, "peer %d: port: %s", p.id, why);
			}
		} else if (strcmp(key, "pool_size") == 0) {
			int64_t n;
			if (!parse_int(value, &n, why, sizeof(why)) || n < 0 || n > INT_MAX) {
				free(p.host);
				return fail(ld, at, "peer %d: pool_size: not a count", p.id);
			}
			p.pool_size = (int)n;
		} else {
			log_warning("%s:%d: peer %d: unknown parameter \"%s\"", at->file, at->line, p.id, key);
		}
	}
	if (more < 0 || !p.host || !p.host[0]) {
		free(p.host);
		return fail(ld, at, "peer %d: %s", p.id, more < 0 ? why : "host= is required");
	}
	for (int i = 0; i < c->n_peers; i++) {
		if (c->peers[i].id == p.id) {
			log_warning("%s:%d: peer %d is defined again; this definition replaces the one at %s:%d",
				    at->file, at->line, p.id, c->peers[i].file, c->peers[i].line);
			free(c->peers[i].host);
			c->peers[i] = p;
			return true;
		}
	}
	struct cfg_peer *grown = realloc(c->peers, sizeof(*grown) * (size_t)(c->n_peers + 1));
	if (!grown) {
		free(p.host);
		return fail(ld, at, "out of memory");
	}
	c->peers = grown;
	c->peers[c->n_peers++] = p;
	return true;
}

static bool load_section_header(struct loader *ld, const struct where *at, char *line, enum section *section)
{
	size_t len = strlen(line);
	char *name;

	if (line[len - 1] != ']')
		return fail(ld, at, "syntax error: a section header must end with ']'");
	line[len - 1] = '\0';
	name = trim(line + 1);

	if (strcasecmp(name, "pgpulse") == 0 || strcasecmp(name, "pgbouncer") == 0) {
		*section = SECTION_MAIN;
	} else if (strcasecmp(name, "databases") == 0) {
		*section = SECTION_DATABASES;
	} else if (strcasecmp(name, "users") == 0) {
		*section = SECTION_USERS;
	} else if (strcasecmp(name, "peers") == 0) {
		*section = SECTION_PEERS;
	} else {
		log_warning("%s:%d: unknown section [%s]; its entries are ignored", at->file, at->line, name);
		*section = SECTION_IGNORED;
	}
	return true;
}

/*
 * Split "key = value" at the first '='. A key may be "double quoted" (SQL
 * identifier style, "" for a quote) so a database or user name can hold any
 * character. Both sides come back trimmed.
 */
static bool split_assignment(char *line, char **key, char **value)
{
	char *eq;

	if (*line == '"') {
		char *out = line, *p = line + 1;
		for (;; p++) {
			if (*p == '\0')
				return false;
			if (*p == '"' && p[1] == '"')
				p++;
			else if (*p == '"')
				break;
			*out++ = *p;
		}
		for (p++; isspace((unsigned char)*p); p++)
			;
		if (*p != '=' || out == line)
			return false;
		*out = '\0'; /* out < p: the quotes alone make the text shorter */
		*key = line;
		*value = trim(p + 1);
		return true;
	}
	eq = strchr(line, '=');
	if (!eq)
		return false;
	*eq = '\0';
	*key = trim(line);
	*value = trim(eq + 1);
	return **key != '\0';
}

static bool load_file(struct loader *ld, const char *path, const struct where *from, enum section section);

/* "%include name": name is relative to the directory of the including file */
static bool load_include(struct loader *ld, const struct where *at, char *line, enum section section)
{
	char *name, *path;
	const char *slash;
	bool ok;

	if (strncmp(line, "%include", 8) != 0 || (line[8] && !isspace((unsigned char)line[8])))
		return fail(ld, at, "unknown directive \"%s\"", line);
	name = trim(line + 8);
	if (!*name)
		return fail(ld, at, "%%include: file name missing");
	if (ld->depth > MAX_INCLUDE_DEPTH)
		return fail(ld, at, "%%include: nested more than %d levels deep", MAX_INCLUDE_DEPTH);

	slash = strrchr(at->file, '/');
	if (name[0] == '/' || !slash) {
		path = strdup(name);
	} else {
		size_t dirlen = (size_t)(slash - at->file) + 1;
		path = malloc(dirlen + strlen(name) + 1);
		if (path) {
			memcpy(path, at->file, dirlen);
			strcpy(path + dirlen, name);
		}
	}
	if (!path)
		return fail(ld, at, "out of memory");
	ok = load_file(ld, path, at, section);
	free(path);
	return ok;
}

static bool load_line(struct loader *ld, const struct where *at, char *raw, enum section *section)
{
	char *line, *key, *value;

	/* an editor's UTF-8 byte order mark is not part of the first key */
	if (at->line == 1 && strncmp(raw, "\xEF\xBB\xBF", 3) == 0)
		raw += 3;
	line = trim(raw);
	if (!*line || *line == ';' || *line == '#')
		return true;
	if (*line == '[')
		return load_section_header(ld, at, line, section);
	if (*line == '%')
		return load_include(ld, at, line, *section);
	if (!split_assignment(line, &key, &value))
		return fail(ld, at, "syntax error: expected \"name = value\", \"[section]\" or \"%%include file\"");

	switch (*section) {
	case SECTION_MAIN:
		return load_main_param(ld, at, key, value);
	case SECTION_DATABASES:
		return load_database(ld, at, key, value);
	case SECTION_USERS:
		return load_user(ld, at, key, value);
	case SECTION_PEERS:
		return load_peer(ld, at, key, value);
	case SECTION_NONE:
		log_warning("%s:%d: \"%s\" is outside of any section; ignored", at->file, at->line, key);
		return true;
	case SECTION_IGNORED:
		return true;
	}
	return true;
}

/*
 * Read one file. `section` is passed by value: an included file starts in
 * the section of its %include line, and a section header inside it does not
 * change the section of the file that included it.
 */
static bool load_file(struct loader *ld, const char *path, const struct where *from, enum section section)
{
	struct where at = { NULL, 0 };
	struct stat st;
	FILE *f;
	char *buf = NULL;
	size_t cap = 0;
	bool ok = true;

	if (!(f = fopen(path, "r"))) {
		int e = errno;
		if (from)
			return fail(ld, from, "%%include: cannot open \"%s\": %s", path, strerror(e));
		return fail(ld, NULL, "%s: cannot open: %s", path, strerror(e));
	}
	if (fstat(fileno(f), &st) != 0) {
		int e = errno;
		fclose(f);
		return fail(ld, from, "%s: cannot stat: %s", path, strerror(e));
	}
	for (int i = 0; i < ld->depth; i++) {
		if (ld->open_dev[i] == st.st_dev && ld->open_ino[i] == st.st_ino) {
			fclose(f);
			return fail(ld, from, "%%include: \"%s\" is already being read (include loop)", path);
		}
	}
	if (!(at.file = remember_file(ld->cfg, path))) {
		fclose(f);
		return fail(ld, from, "out of memory");
	}
	ld->open_dev[ld->depth] = st.st_dev;
	ld->open_ino[ld->depth] = st.st_ino;
	ld->depth++;

	while (ok && getline(&buf, &cap, f) >= 0) {
		at.line++;
		ok = load_line(ld, &at, buf, &section);
	}
	if (ok && ferror(f))
		ok = fail(ld, &at, "read error: %s", strerror(errno));

	ld->depth--;
	free(buf);
	fclose(f);
	return ok;
}

/* ------------------------------------------------------------------------
 * Public face
 * ------------------------------------------------------------------------ */

/*
 * No silent skip for auth_query and auth_dbname either: they act only
 * through an auth_user, the entry's own or the global one, so one written
 * where no auth_user can ever run it is named (at start and each RELOAD).
 * The global ones serve every entry that has an auth_user of its own.
 */
static void warn_lookups_without_auth_user(const struct cfg *c)
{
	static const char *const keys[] = { "auth_query", "auth_dbname" };
	bool global_user = c->auth_user && *c->auth_user, any_user = global_user;
	for (int i = 0; i < c->n_dbs; i++) {
		const struct cfg_db *db = &c->dbs[i];
		if (db->auth_user && *db->auth_user) {
			any_user = true;
			continue;
		}
		if (global_user)
			continue;
		const char *set[] = { db->auth_query, db->auth_dbname };
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (set[k] && *set[k])
				log_warning("%s:%d: database \"%s\": %s is not in effect: no auth_user (in this entry or "
					    "global) runs it",
					    db->file, db->line, db->name, keys[k]);
	}
	if (any_user)
		return;
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		const char *file;
		int line;
		if (cfg_param_origin(c, keys[k], &file, &line))
			log_warning("%s:%d: %s is not in effect: no auth_user (global or in a [databases] entry) runs it",
				    file, line, keys[k]);
	}
}

struct cfg *cfg_load(const char *path, char *err, size_t errlen)
{
	struct loader ld = { .err = err, .errlen = errlen };
	char why[256] = "";

	if (err && errlen)
		err[0] = '\0';
	if (!path || !*path) {
		fail(&ld, NULL, "no configuration file given");
		return NULL;
	}
	if (!(ld.cfg = cfg_new_default())) {
		fail(&ld, NULL, "out of memory");
		return NULL;
	}
	/* conffile is where the next RELOAD reads from; the file may override it */
	if (!param_assign(ld.cfg, param_find("conffile"), path, why, sizeof(why)) ||
	    !load_file(&ld, path, NULL, SECTION_NONE)) {
		if (why[0] && err && errlen && !err[0])
			snprintf(err, errlen, "%s", why);
		cfg_free(ld.cfg);
		return NULL;
	}
	warn_not_in_effect(ld.cfg);
	warn_lookups_without_auth_user(ld.cfg);
	return ld.cfg;
}

void cfg_free(struct cfg *c)
{
	if (!c)
		return;
	param_free_strings(c);
	for (int i = 0; i < c->n_dbs; i++)
		db_free_fields(&c->dbs[i]);
	free(c->dbs);
	for (int i = 0; i < c->n_users; i++)
		free(c->users[i].name);
	free(c->users);
	for (int i = 0; i < c->n_peers; i++)
		free(c->peers[i].host);
	free(c->peers);
	for (int i = 0; i < c->n_files; i++)
		free(c->files[i]);
	free(c->files);
	free(c->origins);
	free(c);
}

const struct cfg_db *cfg_find_db(const struct cfg *c, const char *name)
{
	const struct cfg_db *fallback = NULL;

	if (!c || !name)
		return NULL;
	for (int i = 0; i < c->n_dbs; i++) {
		if (strcmp(c->dbs[i].name, name) == 0)
			return &c->dbs[i];
		if (strcmp(c->dbs[i].name, "*") == 0)
			fallback = &c->dbs[i];
	}
	return fallback;
}

const struct cfg_peer *cfg_find_peer(const struct cfg *c, int id)
{
	for (int i = 0; c && i < c->n_peers; i++)
		if (c->peers[i].id == id)
			return &c->peers[i];
	return NULL;
}

const struct cfg_user *cfg_find_user(const struct cfg *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (int i = 0; i < c->n_users; i++)
		if (strcmp(c->users[i].name, name) == 0)
			return &c->users[i];
	return NULL;
}

/* one comma-separated item of list at *pos (blanks trimmed); false at the end */
static bool next_list_item(const char **pos, const char **start, size_t *len)
{
	const char *list = *pos;
	while (*list == ' ' || *list == '\t' || *list == ',')
		list++;
	if (!*list)
		return false;
	const char *s = list;
	while (*list && *list != ',')
		list++;
	const char *end = list;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*start = s;
	*len = (size_t)(end - s);
	*pos = list;
	return true;
}

bool cfg_list_contains_name(const char *list, const char *name)
{
	const char *item;
	size_t len;
	if (!list || !name)
		return false;
	size_t name_len = strlen(name);
	while (next_list_item(&list, &item, &len))
		if (len == name_len && strncasecmp(item, name, len) == 0)
			return true;
	return false;
}

bool cfg_list_contains(const char *list, const char *name)
{
	size_t name_len;

	if (!list || !name)
		return false;
	name_len = strlen(name);
	while (*list) {
		const char *start, *end;
		while (*list == ' ' || *list == '\t')
			list++;
		start = list;
		while (*list && *list != ',')
			list++;
		end = list;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if ((size_t)(end - start) == name_len && strncmp(start, name, name_len) == 0)
			return true;
		if (*list == ',')
			list++;
	}
	return false;
}
