/*
 * hba: the auth_hba_file and auth_ident_file, parsed once into rules.
 *
 * Both files share one tokenizer, written from PostgreSQL's description of
 * the format: a line is fields separated by blanks, a field is a list of
 * tokens separated by commas, `#` starts a comment, a backslash at the end
 * of a line continues it, and double quotes make a token literal (a quoted
 * "all" is a database named all; "" inside quotes is one quote). A token
 * @file in a database or user field is replaced by the tokens of that file
 * (relative to the including file's directory).
 *
 * Everything is checked at load time, so matching a login is a walk over
 * an array of small structs: string compares and an address mask.
 */
#include "hba.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define HBA_INCLUDE_DEPTH 10
#define HBA_LINE_MAX 65536

enum conn_type { CONN_LOCAL, CONN_HOST, CONN_HOSTSSL, CONN_HOSTNOSSL };
enum name_kind { NAME_LITERAL, NAME_ALL, NAME_SAMEUSER, NAME_REPLICATION };

struct tok {
	char *s;
	bool quoted;
};

struct toklist {
	struct tok *v;
	int n, cap;
};

struct hba_name {
	enum name_kind kind;
	char *name;
};

struct hba_rule {
	enum conn_type conn;
	struct hba_name *dbs, *users;
	int ndbs, nusers;
	bool any_addr;
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16], mask[16];
	enum hba_method method;
	char *map;
	const char *file; /* the struct hba's copy of the path */
	int line;
};

struct ident_rule {
	char *map;
	char *system_user; /* literal, or the pattern after the '/' */
	bool is_regex;
	regex_t re;
	char *db_user;
	bool db_all;
};

struct hba {
	struct hba_rule *rules;
	int nrules;
	struct ident_rule *idents;
	int nidents;
	char *path; /* rules point at it */
};

/* ------------------------------------------------------------ errors */

struct where {
	const char *file;
	int line;
	char *err;
	size_t errlen;
};

static bool fail(const struct where *at, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(const struct where *at, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (at->line > 0)
		snprintf(at->err, at->errlen, "%s:%d: %s", at->file, at->line, why);
	else
		snprintf(at->err, at->errlen, "%s: %s", at->file, why);
	return false;
}

/* ------------------------------------------------------------ tokens */

static void toklist_add(struct toklist *l, const char *s, size_t len, bool quoted)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4;
		l->v = xrealloc(l->v, (size_t)l->cap * sizeof(*l->v));
	}
	char *copy = xmalloc(len + 1);
	memcpy(copy, s, len);
	copy[len] = '\0';
	l->v[l->n].s = copy;
	l->v[l->n].quoted = quoted;
	l->n++;
}

static void toklist_clear(struct toklist *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i].s);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/*
 * One token at *p into buf: quoted parts copied literally ("" is a quote),
 * unquoted parts end at a blank, a comma or '#'. False with a reason on an
 * unterminated quote.
 */
static bool read_token(const char **p, char *buf, size_t buflen, size_t *len, bool *quoted, const char **why)
{
	const char *s = *p;
	size_t n = 0;
	bool in_quote = false;
	*quoted = false;
	for (;; s++) {
		char ch = *s;
		if (ch == '\0') {
			if (in_quote) {
				*why = "unterminated quoted string";
				return false;
			}
			break;
		}
		if (in_quote) {
			if (ch == '"') {
				if (s[1] == '"') {
					s++;
				} else {
					in_quote = false;
					continue;
				}
			}
		} else if (ch == '"') {
			in_quote = true;
			*quoted = true;
			continue;
		} else if (is_blank(ch) || ch == ',' || ch == '#') {
			break;
		}
		if (n + 1 >= buflen) {
			*why = "token too long";
			return false;
		}
		buf[n++] = ch;
	}
	buf[n] = '\0';
	*len = n;
	*p = s;
	return true;
}

/*
 * Split one logical line into fields, each a list of tokens. *nfields is
 * 0 for a blank or comment line.
 */
static bool split_line(const char *line, struct toklist *fields, int maxfields, int *nfields, const struct where *at)
{
	static char buf[HBA_LINE_MAX];
	const char *p = line;
	*nfields = 0;
	for (;;) {
		while (is_blank(*p))
			p++;
		if (*p == '\0' || *p == '#')
			return true;
		if (*nfields == maxfields)
			return fail(at, "too many fields");
		struct toklist *f = &fields[(*nfields)++];
		for (;;) {
			size_t len;
			bool quoted;
			const char *why = NULL;
			if (!read_token(&p, buf, sizeof(buf), &len, &quoted, &why))
				return fail(at, "%s", why);
			if (len == 0 && !quoted)
				return fail(at, "empty item in a comma-separated list");
			toklist_add(f, buf, len, quoted);
			if (*p != ',')
				break;
			p++;
			while (*p == ' ' || *p == '\t')
				p++;
		}
	}
}

/*
 * Read a file into logical lines: a backslash before the newline joins the
 * next line. Calls fn for each with its first physical line number.
 */
typedef bool (*line_fn)(void *ctx, const char *line, const struct where *at);

static bool for_each_line(const char *path, line_fn fn, void *ctx, char *err, size_t errlen)
{
	struct where at = { path, 0, err, errlen };
	FILE *f = fopen(path, "r");
	if (!f)
		return fail(&at, "could not open: %s", strerror(errno));
	/* static: an @file read from inside fn reuses them, and the caller needs neither afterwards */
	static char logical[HBA_LINE_MAX];
	static char phys[HBA_LINE_MAX];
	size_t used = 0;
	int lineno = 0, start = 0;
	bool ok = true;
	while (ok && fgets(phys, sizeof(phys), f)) {
		lineno++;
		size_t len = strlen(phys);
		if (len == sizeof(phys) - 1 && phys[len - 1] != '\n') {
			at.line = lineno;
			ok = fail(&at, "line too long");
			break;
		}
		while (len > 0 && (phys[len - 1] == '\n' || phys[len - 1] == '\r'))
			phys[--len] = '\0';
		if (used == 0)
			start = lineno;
		bool continued = len > 0 && phys[len - 1] == '\\';
		if (continued)
			phys[--len] = '\0';
		if (used + len + 1 >= sizeof(logical)) {
			at.line = lineno;
			ok = fail(&at, "line too long");
			break;
		}
		memcpy(logical + used, phys, len);
		used += len;
		logical[used] = '\0';
		if (continued)
			continue;
		at.line = start;
		ok = fn(ctx, logical, &at);
		used = 0;
	}
	if (ok && used > 0) {
		at.line = start;
		ok = fn(ctx, logical, &at);
	}
	fclose(f);
	return ok;
}

/* ------------------------------------------------------------ @file includes */

static bool expand_list(const struct toklist *in, struct toklist *out, const char *base, int depth,
			const struct where *at);

static void include_path(const char *base, const char *name, char *out, size_t len)
{
	const char *slash = strrchr(base, '/');
	if (name[0] == '/' || !slash)
		snprintf(out, len, "%s", name);
	else
		snprintf(out, len, "%.*s/%s", (int)(slash - base), base, name);
}

struct include_line_ctx {
	struct toklist *out;
	const char *path;
	int depth;
};

static bool include_line(void *vctx, const char *line, const struct where *at)
{
	struct include_line_ctx *ctx = vctx;
	struct toklist fields[64];
	memset(fields, 0, sizeof(fields));
	int n;
	bool ok = split_line(line, fields, 64, &n, at);
	for (int i = 0; ok && i < n; i++)
		ok = expand_list(&fields[i], ctx->out, ctx->path, ctx->depth, at);
	for (int i = 0; i < 64; i++)
		toklist_clear(&fields[i]);
	return ok;
}

/* copy in to out, replacing each unquoted @file by that file's tokens */
static bool expand_list(const struct toklist *in, struct toklist *out, const char *base, int depth,
			const struct where *at)
{
	for (int i = 0; i < in->n; i++) {
		const struct tok *t = &in->v[i];
		if (t->quoted || t->s[0] != '@') {
			toklist_add(out, t->s, strlen(t->s), t->quoted);
			continue;
		}
		if (!t->s[1])
			return fail(at, "\"@\" names no file");
		if (depth >= HBA_INCLUDE_DEPTH)
			return fail(at, "@%s: files included more than %d deep", t->s + 1, HBA_INCLUDE_DEPTH);
		char path[4096];
		include_path(base, t->s + 1, path, sizeof(path));
		struct include_line_ctx ctx = { out, path, depth + 1 };
		if (!for_each_line(path, include_line, &ctx, at->err, at->errlen)) {
			/* the included file's own file:line, and where it was named */
			char inner[512];
			snprintf(inner, sizeof(inner), "%s", at->err);
			return fail(at, "in @%s: %s", t->s + 1, inner);
		}
	}
	return true;
}

/* ------------------------------------------------------------ hba lines */

static bool parse_names(const struct toklist *l, bool is_db, struct hba_name **out, int *nout, const struct where *at)
{
	*out = xcalloc((size_t)l->n, sizeof(**out));
	*nout = l->n;
	for (int i = 0; i < l->n; i++) {
		const struct tok *t = &l->v[i];
		struct hba_name *nm = &(*out)[i];
		nm->kind = NAME_LITERAL;
		if (!t->quoted) {
			if (strcmp(t->s, "all") == 0) {
				nm->kind = NAME_ALL;
				continue;
			}
			if (is_db && strcmp(t->s, "sameuser") == 0) {
				nm->kind = NAME_SAMEUSER;
				continue;
			}
			if (is_db && strcmp(t->s, "replication") == 0) {
				nm->kind = NAME_REPLICATION;
				continue;
			}
			if (is_db && (strcmp(t->s, "samerole") == 0 || strcmp(t->s, "samegroup") == 0))
				return fail(at, "database keyword \"%s\" is not supported (pgpulse knows no role membership)",
					    t->s);
			if (!is_db && t->s[0] == '+')
				return fail(at, "group membership \"%s\" is not supported (pgpulse knows no roles)", t->s);
			if (t->s[0] == '/')
				return fail(at, "regular expression \"%s\" is not supported in the %s field", t->s,
					    is_db ? "database" : "user");
		}
		nm->name = xstrdup(t->s);
	}
	return true;
}

static bool parse_ip(const char *s, int *family, uint8_t out[16])
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, s, &a4) == 1) {
		*family = AF_INET;
		memset(out, 0, 16);
		memcpy(out, &a4, 4);
		return true;
	}
	if (inet_pton(AF_INET6, s, &a6) == 1) {
		*family = AF_INET6;
		memcpy(out, &a6, 16);
		return true;
	}
	return false;
}

static void prefix_mask(int bits, uint8_t mask[16])
{
	memset(mask, 0, 16);
	for (int i = 0; i < 16 && bits > 0; i++, bits -= 8)
		mask[i] = bits >= 8 ? 0xff : (uint8_t)(0xff << (8 - bits));
}

/* the address field (and the mask field after it when there is no /bits); *used: fields taken */
static bool parse_address(struct hba_rule *r, const struct toklist *f, int nleft, int *used, const struct where *at)
{
	*used = 1;
	if (f[0].n != 1)
		return fail(at, "multiple values specified for host address");
	const struct tok *t = &f[0].v[0];
	if (!t->quoted && strcmp(t->s, "all") == 0) {
		r->any_addr = true;
		return true;
	}
	if (!t->quoted && (strcmp(t->s, "samehost") == 0 || strcmp(t->s, "samenet") == 0))
		return fail(at, "address keyword \"%s\" is not supported", t->s);
	char text[256];
	snprintf(text, sizeof(text), "%s", t->s);
	char *slash = strchr(text, '/');
	if (slash)
		*slash = '\0';
	if (!parse_ip(text, &r->family, r->addr)) {
		if (slash)
			return fail(at, "invalid IP address \"%s\"", text);
		return fail(at, "host name \"%s\" is not supported: write an IP address with a mask or CIDR length",
			    t->s);
	}
	int maxbits = r->family == AF_INET ? 32 : 128;
	if (slash) {
		char *end;
		errno = 0;
		long bits = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || errno || bits < 0 || bits > maxbits)
			return fail(at, "invalid CIDR mask in address \"%s\"", t->s);
		prefix_mask((int)bits, r->mask);
		return true;
	}
	if (nleft < 2)
		return fail(at, "end-of-line before netmask specification");
	if (f[1].n != 1)
		return fail(at, "multiple values specified for netmask");
	int mfamily;
	if (!parse_ip(f[1].v[0].s, &mfamily, r->mask))
		return fail(at, "invalid IP mask \"%s\"", f[1].v[0].s);
	if (mfamily != r->family)
		return fail(at, "IP address and mask do not match");
	*used = 2;
	return true;
}

static const struct {
	const char *name;
	enum hba_method method;
} method_words[] = {
	{ "trust", HBA_TRUST }, { "reject", HBA_REJECT }, { "md5", HBA_MD5 }, { "password", HBA_PASSWORD },
	{ "scram-sha-256", HBA_SCRAM }, { "cert", HBA_CERT }, { "peer", HBA_PEER },
};

const char *hba_method_name(enum hba_method m)
{
	for (size_t i = 0; i < sizeof(method_words) / sizeof(method_words[0]); i++)
		if (method_words[i].method == m)
			return method_words[i].name;
	return "unknown";
}

static bool parse_method(struct hba_rule *r, const struct toklist *f, int nopts, const struct where *at)
{
	if (f[0].n != 1)
		return fail(at, "multiple values specified for authentication method");
	const char *m = f[0].v[0].s;
	bool found = false;
	for (size_t i = 0; i < sizeof(method_words) / sizeof(method_words[0]); i++) {
		if (strcmp(m, method_words[i].name) == 0) {
			r->method = method_words[i].method;
			found = true;
		}
	}
	if (!found) {
		static const char *const known[] = { "ident", "gss", "sspi", "ldap", "radius", "pam", "bsd", "oauth" };
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (strcmp(m, known[i]) == 0)
				return fail(at, "authentication method \"%s\" is not supported by pgpulse", m);
		return fail(at, "invalid authentication method \"%s\"", m);
	}
	if (r->method == HBA_PEER && r->conn != CONN_LOCAL)
		return fail(at, "peer authentication is only supported on local sockets");
	if (r->method == HBA_CERT && r->conn != CONN_HOSTSSL)
		return fail(at, "cert authentication is only supported on hostssl connections");
	for (int i = 1; i <= nopts; i++) {
		for (int j = 0; j < f[i].n; j++) {
			const char *opt = f[i].v[j].s;
			const char *eq = strchr(opt, '=');
			if (!eq || eq == opt)
				return fail(at, "authentication option not in name=value format: %s", opt);
			size_t klen = (size_t)(eq - opt);
			if (klen == 3 && strncmp(opt, "map", 3) == 0) {
				if (r->method != HBA_PEER && r->method != HBA_CERT)
					return fail(at, "option map is only valid for methods peer and cert");
				if (!eq[1])
					return fail(at, "option map has no value");
				free(r->map);
				r->map = xstrdup(eq + 1);
			} else if (klen == 10 && strncmp(opt, "clientcert", 10) == 0 && r->method == HBA_CERT &&
				   strcmp(eq + 1, "verify-full") == 0) {
				/* what cert means anyway */
			} else {
				return fail(at, "authentication option \"%.*s\" is not supported", (int)klen, opt);
			}
		}
	}
	return true;
}

struct hba_build {
	struct hba *hba;
	int cap;
	const char *path;
};

static void rule_free(struct hba_rule *r)
{
	for (int i = 0; i < r->ndbs; i++)
		free(r->dbs[i].name);
	for (int i = 0; i < r->nusers; i++)
		free(r->users[i].name);
	free(r->dbs);
	free(r->users);
	free(r->map);
}

#define HBA_MAX_FIELDS 32

static bool parse_rule_fields(struct hba_rule *r, struct toklist *f, int n, const char *path, const struct where *at)
{
	if (f[0].n != 1)
		return fail(at, "multiple values specified for connection type");
	const char *type = f[0].v[0].s;
	if (strcmp(type, "local") == 0)
		r->conn = CONN_LOCAL;
	else if (strcmp(type, "host") == 0)
		r->conn = CONN_HOST;
	else if (strcmp(type, "hostssl") == 0)
		r->conn = CONN_HOSTSSL;
	else if (strcmp(type, "hostnossl") == 0)
		r->conn = CONN_HOSTNOSSL;
	else if (strcmp(type, "hostgssenc") == 0 || strcmp(type, "hostnogssenc") == 0)
		return fail(at, "connection type \"%s\" is not supported (pgpulse has no GSSAPI encryption)", type);
	else if (strncmp(type, "include", 7) == 0)
		return fail(at, "\"%s\" is not supported: use @file lists", type);
	else
		return fail(at, "invalid connection type \"%s\"", type);

	if (n < 2)
		return fail(at, "end-of-line before database specification");
	struct toklist names = { 0 };
	bool ok = expand_list(&f[1], &names, path, 0, at) && parse_names(&names, true, &r->dbs, &r->ndbs, at);
	toklist_clear(&names);
	if (!ok)
		return false;
	if (n < 3)
		return fail(at, "end-of-line before role specification");
	ok = expand_list(&f[2], &names, path, 0, at) && parse_names(&names, false, &r->users, &r->nusers, at);
	toklist_clear(&names);
	if (!ok)
		return false;
	int next = 3;
	if (r->conn != CONN_LOCAL) {
		if (n < 4)
			return fail(at, "end-of-line before IP address specification");
		int used;
		if (!parse_address(r, &f[3], n - 3, &used, at))
			return false;
		next += used;
	}
	if (n <= next)
		return fail(at, "end-of-line before authentication method");
	return parse_method(r, &f[next], n - next - 1, at);
}

static bool hba_line(void *vctx, const char *line, const struct where *at)
{
	struct hba_build *b = vctx;
	struct toklist f[HBA_MAX_FIELDS];
	memset(f, 0, sizeof(f));
	int n;
	bool ok = split_line(line, f, HBA_MAX_FIELDS, &n, at);
	if (ok && n > 0) {
		struct hba_rule r;
		memset(&r, 0, sizeof(r));
		ok = parse_rule_fields(&r, f, n, b->path, at);
		if (ok) {
			struct hba *h = b->hba;
			if (h->nrules == b->cap) {
				b->cap = b->cap ? b->cap * 2 : 16;
				h->rules = xrealloc(h->rules, (size_t)b->cap * sizeof(*h->rules));
			}
			r.file = h->path;
			r.line = at->line;
			h->rules[h->nrules++] = r;
		} else {
			rule_free(&r);
		}
	}
	for (int i = 0; i < HBA_MAX_FIELDS; i++)
		toklist_clear(&f[i]);
	return ok;
}

/* ------------------------------------------------------------ ident lines */

struct ident_build {
	struct hba *hba;
	int cap;
};


/*
 * glibc's regcomp expands a bounded repetition into copies of its atom, and
 * nested or stacked quantifiers multiply its work: "((a{100}){100}){100}" or
 * "a++++...+" takes gigabytes. An ident map needs nothing of the kind, so a
 * short expression with a few quantifiers and small bounds is allowed, and
 * anything more is refused at load (fuzz_hba_file found both).
 */
#define REGEX_MAX_LEN 256
#define REGEX_MAX_QUANTIFIERS 16
#define REGEX_MAX_BOUND 16

static bool regex_cost_bounded(const char *re)
{
	int quantifiers = 0;
	if (strlen(re) > REGEX_MAX_LEN)
		return false;
	for (const char *p = re; *p; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p == '*' || *p == '+' || *p == '?') {
			if (++quantifiers > REGEX_MAX_QUANTIFIERS)
				return false;
			continue;
		}
		if (*p != '{')
			continue;
		if (++quantifiers > REGEX_MAX_QUANTIFIERS)
			return false;
		for (p++; *p && *p != '}'; p++) {
			if (*p >= '0' && *p <= '9' && strtol(p, NULL, 10) > REGEX_MAX_BOUND)
				return false;
			while (p[1] >= '0' && p[1] <= '9')
				p++;
		}
		if (!*p)
			break;
	}
	return true;
}

static bool ident_line(void *vctx, const char *line, const struct where *at)
{
	struct ident_build *b = vctx;
	struct toklist f[4];
	memset(f, 0, sizeof(f));
	int n;
	bool ok = split_line(line, f, 4, &n, at);
	struct ident_rule r;
	memset(&r, 0, sizeof(r));
	if (!ok || n == 0)
		goto out;
	if (n != 3) {
		ok = fail(at, n < 3 ? "missing entry at end of line" : "extra fields at end of line");
		goto out;
	}
	for (int i = 0; i < 3; i++) {
		if (f[i].n != 1) {
			ok = fail(at, "lists are not allowed in an ident map line");
			goto out;
		}
	}
	r.map = xstrdup(f[0].v[0].s);
	const struct tok *sys = &f[1].v[0], *dbu = &f[2].v[0];
	if (sys->s[0] == '/') {
		r.is_regex = true;
		r.system_user = xstrdup(sys->s + 1);
		if (!regex_cost_bounded(r.system_user)) {
			ok = fail(at, "regular expression \"%.40s\" is too costly to compile: at most %d "
				      "characters and %d quantifiers, bounds at most {%d}",
				  r.system_user, REGEX_MAX_LEN, REGEX_MAX_QUANTIFIERS, REGEX_MAX_BOUND);
			goto out;
		}
		int rc = regcomp(&r.re, r.system_user, REG_EXTENDED);
		if (rc != 0) {
			char why[256];
			regerror(rc, &r.re, why, sizeof(why));
			r.is_regex = false; /* nothing to regfree */
			ok = fail(at, "invalid regular expression \"%s\": %s", r.system_user, why);
			goto out;
		}
	} else {
		r.system_user = xstrdup(sys->s);
	}
	if (!dbu->quoted && strcmp(dbu->s, "all") == 0) {
		r.db_all = true;
	} else if (!dbu->quoted && dbu->s[0] == '+') {
		ok = fail(at, "group membership \"%s\" is not supported (pgpulse knows no roles)", dbu->s);
		goto out;
	} else if (!dbu->quoted && dbu->s[0] == '/') {
		ok = fail(at, "a regular expression for the database user (\"%s\") is not supported", dbu->s);
		goto out;
	}
	r.db_user = xstrdup(dbu->s);
	if (strstr(r.db_user, "\\1") && (!r.is_regex || r.re.re_nsub < 1)) {
		ok = fail(at, "\"%s\" uses \\1 but \"%s\" has no parenthesized subexpression", r.db_user, sys->s);
		goto out;
	}
	{
		struct hba *h = b->hba;
		if (h->nidents == b->cap) {
			b->cap = b->cap ? b->cap * 2 : 16;
			h->idents = xrealloc(h->idents, (size_t)b->cap * sizeof(*h->idents));
		}
		h->idents[h->nidents++] = r;
		memset(&r, 0, sizeof(r));
	}
out:
	if (r.is_regex)
		regfree(&r.re);
	free(r.map);
	free(r.system_user);
	free(r.db_user);
	for (int i = 0; i < 4; i++)
		toklist_clear(&f[i]);
	return ok;
}

/* ------------------------------------------------------------ load, free */

void hba_free(struct hba *hba)
{
	if (!hba)
		return;
	for (int i = 0; i < hba->nrules; i++)
		rule_free(&hba->rules[i]);
	for (int i = 0; i < hba->nidents; i++) {
		struct ident_rule *r = &hba->idents[i];
		if (r->is_regex)
			regfree(&r->re);
		free(r->map);
		free(r->system_user);
		free(r->db_user);
	}
	free(hba->rules);
	free(hba->idents);
	free(hba->path);
	free(hba);
}

static bool map_defined(const struct hba *hba, const char *map)
{
	for (int i = 0; i < hba->nidents; i++)
		if (strcmp(hba->idents[i].map, map) == 0)
			return true;
	return false;
}

struct hba *hba_load(const char *hba_path, const char *ident_path, char *err, size_t errlen)
{
	struct hba *hba = xcalloc(1, sizeof(*hba));
	hba->path = xstrdup(hba_path);
	if (ident_path && *ident_path) {
		struct ident_build ib = { hba, 0 };
		if (!for_each_line(ident_path, ident_line, &ib, err, errlen))
			goto fail;
	}
	struct hba_build b = { hba, 0, hba->path };
	if (!for_each_line(hba_path, hba_line, &b, err, errlen))
		goto fail;
	for (int i = 0; i < hba->nrules; i++) {
		const struct hba_rule *r = &hba->rules[i];
		if (r->map && !map_defined(hba, r->map)) {
			struct where at = { r->file, r->line, err, errlen };
			if (ident_path && *ident_path)
				fail(&at, "ident map \"%s\" is not defined in %s", r->map, ident_path);
			else
				fail(&at, "ident map \"%s\" is named but auth_ident_file is not set", r->map);
			goto fail;
		}
	}
	return hba;
fail:
	hba_free(hba);
	return NULL;
}

/* ------------------------------------------------------------ matching */

static bool name_matches(const struct hba_name *names, int n, const char *value, const char *user)
{
	for (int i = 0; i < n; i++) {
		switch (names[i].kind) {
		case NAME_ALL:
			return true;
		case NAME_SAMEUSER:
			if (strcmp(value, user) == 0)
				return true;
			break;
		case NAME_REPLICATION: /* physical replication connections only: see db_matches */
			break;
		case NAME_LITERAL:
			if (strcmp(names[i].name, value) == 0)
				return true;
			break;
		}
	}
	return false;
}

/* the client's address in the rule's family; an IPv4-mapped IPv6 address counts as IPv4 */
static bool address_matches(const struct hba_rule *r, const struct sockaddr *sa)
{
	uint8_t a[16];
	int family;
	if (r->any_addr)
		return true;
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		family = AF_INET;
		memcpy(a, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *in6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(in6)) {
			family = AF_INET;
			memcpy(a, in6->s6_addr + 12, 4);
		} else {
			family = AF_INET6;
			memcpy(a, in6->s6_addr, 16);
		}
	} else {
		return false;
	}
	if (family != r->family)
		return false;
	int len = family == AF_INET ? 4 : 16;
	for (int i = 0; i < len; i++)
		if ((a[i] & r->mask[i]) != (r->addr[i] & r->mask[i]))
			return false;
	return true;
}

static bool conn_matches(enum conn_type t, const struct hba_client *cl)
{
	switch (t) {
	case CONN_LOCAL: return cl->is_unix;
	case CONN_HOST: return !cl->is_unix;
	case CONN_HOSTSSL: return !cl->is_unix && cl->tls;
	case CONN_HOSTNOSSL: return !cl->is_unix && !cl->tls;
	}
	return false;
}

bool hba_first_rule_with(const struct hba *hba, enum hba_method method, const char **file, int *line)
{
	for (int i = 0; hba && i < hba->nrules; i++) {
		if (hba->rules[i].method == method) {
			*file = hba->rules[i].file;
			*line = hba->rules[i].line;
			return true;
		}
	}
	return false;
}

/* a physical replication connection names no database: the keyword replication alone matches it */
static bool db_matches(const struct hba_rule *r, const struct hba_client *cl)
{
	if (!cl->physical_replication)
		return name_matches(r->dbs, r->ndbs, cl->dbname, cl->user);
	for (int i = 0; i < r->ndbs; i++)
		if (r->dbs[i].kind == NAME_REPLICATION)
			return true;
	return false;
}

bool hba_match(const struct hba *hba, const struct hba_client *cl, struct hba_verdict *out)
{
	for (int i = 0; hba && i < hba->nrules; i++) {
		const struct hba_rule *r = &hba->rules[i];
		if (!conn_matches(r->conn, cl))
			continue;
		if (!db_matches(r, cl))
			continue;
		if (!name_matches(r->users, r->nusers, cl->user, cl->user))
			continue;
		if (r->conn != CONN_LOCAL && !address_matches(r, cl->addr))
			continue;
		out->method = r->method;
		out->map = r->map;
		out->file = r->file;
		out->line = r->line;
		return true;
	}
	return false;
}

/* db_user after replacing \1 with the first subexpression of the system user's match */
static bool substituted_equals(const char *pattern, const char *sub, size_t sublen, const char *db_user)
{
	const char *hole = strstr(pattern, "\\1");
	if (!hole)
		return strcmp(pattern, db_user) == 0;
	size_t pre = (size_t)(hole - pattern);
	if (strncmp(pattern, db_user, pre) != 0)
		return false;
	db_user += pre;
	if (strncmp(db_user, sub, sublen) != 0)
		return false;
	return strcmp(hole + 2, db_user + sublen) == 0;
}

bool hba_ident_allows(const struct hba *hba, const char *map, const char *system_user, const char *db_user)
{
	for (int i = 0; hba && i < hba->nidents; i++) {
		const struct ident_rule *r = &hba->idents[i];
		if (strcmp(r->map, map) != 0)
			continue;
		if (!r->is_regex) {
			if (strcmp(r->system_user, system_user) == 0 && (r->db_all || strcmp(r->db_user, db_user) == 0))
				return true;
			continue;
		}
		regmatch_t m[2];
		if (regexec(&r->re, system_user, 2, m, 0) != 0)
			continue;
		if (r->db_all)
			return true;
		const char *sub = "";
		size_t sublen = 0;
		if (r->re.re_nsub >= 1 && m[1].rm_so >= 0) {
			sub = system_user + m[1].rm_so;
			sublen = (size_t)(m[1].rm_eo - m[1].rm_so);
		}
		if (substituted_equals(r->db_user, sub, sublen, db_user))
			return true;
	}
	return false;
}

const char *hba_host_text(const struct hba_client *cl, char *buf, size_t len)
{
	if (cl->is_unix || !cl->addr) {
		snprintf(buf, len, "[local]");
		return buf;
	}
	char ip[INET6_ADDRSTRLEN] = "unknown";
	if (cl->addr->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)cl->addr)->sin_addr, ip, sizeof(ip));
	else if (cl->addr->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)cl->addr)->sin6_addr, ip, sizeof(ip));
	snprintf(buf, len, "%s", ip);
	return buf;
}
