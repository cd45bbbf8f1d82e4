/*
 * proto: building and reading PostgreSQL v3 messages.
 *
 * Messages are built in place: pkt_begin() reserves the length field and
 * pkt_end() fills it once the body is known, so no message is ever copied.
 */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void pktbuf_init(struct pktbuf *b)
{
	b->data = NULL;
	b->len = b->cap = b->msg_start = 0;
}

void pktbuf_free(struct pktbuf *b)
{
	free(b->data);
	pktbuf_init(b);
}

void pktbuf_reset(struct pktbuf *b)
{
	b->len = b->msg_start = 0;
}

void pktbuf_consume(struct pktbuf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

static void pktbuf_reserve(struct pktbuf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void pkt_begin(struct pktbuf *b, uint8_t type)
{
	pktbuf_reserve(b, 5);
	if (type)
		b->data[b->len++] = type;
	b->msg_start = b->len;
	b->len += 4;
}

void pkt_put_u8(struct pktbuf *b, uint8_t v)
{
	pktbuf_reserve(b, 1);
	b->data[b->len++] = v;
}

void pkt_put_u16(struct pktbuf *b, uint16_t v)
{
	pktbuf_reserve(b, 2);
	b->data[b->len++] = (uint8_t)(v >> 8);
	b->data[b->len++] = (uint8_t)v;
}

void pkt_put_u32(struct pktbuf *b, uint32_t v)
{
	pktbuf_reserve(b, 4);
	b->data[b->len++] = (uint8_t)(v >> 24);
	b->data[b->len++] = (uint8_t)(v >> 16);
	b->data[b->len++] = (uint8_t)(v >> 8);
	b->data[b->len++] = (uint8_t)v;
}

void pkt_put_bytes(struct pktbuf *b, const void *p, size_t n)
{
	pktbuf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

void pkt_put_str(struct pktbuf *b, const char *s)
{
	pkt_put_bytes(b, s, strlen(s) + 1);
}

void pkt_end(struct pktbuf *b)
{
	uint32_t len = (uint32_t)(b->len - b->msg_start);
	uint8_t *p = b->data + b->msg_start;
	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
}

static void put_error_fields(struct pktbuf *b, uint8_t type, const char *severity, const char *sqlstate,
			     const char *msg, const char *hint)
{
	pkt_begin(b, type);
	pkt_put_u8(b, 'S');
	pkt_put_str(b, severity);
	pkt_put_u8(b, 'V');
	pkt_put_str(b, severity);
	pkt_put_u8(b, 'C');
	pkt_put_str(b, sqlstate);
	pkt_put_u8(b, 'M');
	pkt_put_str(b, msg);
	if (hint) {
		pkt_put_u8(b, 'H');
		pkt_put_str(b, hint);
	}
	pkt_put_u8(b, 0);
	pkt_end(b);
}

void proto_put_error(struct pktbuf *b, const char *severity, const char *sqlstate, const char *msg)
{
	put_error_fields(b, 'E', severity, sqlstate, msg, NULL);
}

void proto_put_error_hint(struct pktbuf *b, const char *severity, const char *sqlstate, const char *msg,
			  const char *hint)
{
	put_error_fields(b, 'E', severity, sqlstate, msg, hint);
}

bool proto_put_error_as_fatal(struct pktbuf *b, const uint8_t *body, size_t len)
{
	struct pkt_reader r;
	size_t start = b->len;
	pkt_reader_init(&r, body, len);
	pkt_begin(b, 'E');
	for (;;) {
		uint8_t code = pkt_remaining(&r) > 0 ? pkt_get_u8(&r) : 0;
		if (code == 0)
			break;
		const char *v = pkt_get_str(&r);
		if (!v) {
			b->len = start; /* malformed: nothing written */
			return false;
		}
		/* position, internal query and context are about the query that ran the SET */
		if (code == 'P' || code == 'p' || code == 'q' || code == 'W')
			continue;
		pkt_put_u8(b, code);
		pkt_put_str(b, code == 'S' || code == 'V' ? "FATAL" : v);
	}
	pkt_put_u8(b, 0);
	pkt_end(b);
	return true;
}

void proto_put_notice(struct pktbuf *b, const char *sqlstate, const char *msg)
{
	put_error_fields(b, 'N', "NOTICE", sqlstate, msg, NULL);
}

void proto_put_warning(struct pktbuf *b, const char *sqlstate, const char *msg)
{
	put_error_fields(b, 'N', "WARNING", sqlstate, msg, NULL);
}

void proto_put_auth(struct pktbuf *b, uint32_t code, const void *data, size_t len)
{
	pkt_begin(b, 'R');
	pkt_put_u32(b, code);
	pkt_put_bytes(b, data, len);
	pkt_end(b);
}

void proto_put_param_status(struct pktbuf *b, const char *name, const char *value)
{
	pkt_begin(b, 'S');
	pkt_put_str(b, name);
	pkt_put_str(b, value);
	pkt_end(b);
}

void proto_put_backend_key(struct pktbuf *b, uint32_t pid, uint32_t key)
{
	pkt_begin(b, 'K');
	pkt_put_u32(b, pid);
	pkt_put_u32(b, key);
	pkt_end(b);
}

void proto_put_ready(struct pktbuf *b, char status)
{
	pkt_begin(b, 'Z');
	pkt_put_u8(b, (uint8_t)status);
	pkt_end(b);
}

void proto_put_query(struct pktbuf *b, const char *sql)
{
	pkt_begin(b, 'Q');
	pkt_put_str(b, sql);
	pkt_end(b);
}

void proto_put_command_complete(struct pktbuf *b, const char *tag)
{
	pkt_begin(b, 'C');
	pkt_put_str(b, tag);
	pkt_end(b);
}

void proto_put_empty_query(struct pktbuf *b)
{
	pkt_begin(b, 'I');
	pkt_end(b);
}

void proto_put_row_description(struct pktbuf *b, int n, const char *const *names, const uint32_t *type_oids)
{
	pkt_begin(b, 'T');
	pkt_put_u16(b, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		pkt_put_str(b, names[i]);
		pkt_put_u32(b, 0);  /* table oid */
		pkt_put_u16(b, 0);  /* column number */
		pkt_put_u32(b, type_oids ? type_oids[i] : 25); /* text */
		pkt_put_u16(b, 0xffff); /* varlena size -1 */
		pkt_put_u32(b, 0xffffffffu); /* typmod -1 */
		pkt_put_u16(b, 0);  /* text format */
	}
	pkt_end(b);
}

void proto_put_data_row(struct pktbuf *b, int n, const char *const *values)
{
	pkt_begin(b, 'D');
	pkt_put_u16(b, (uint16_t)n);
	for (int i = 0; i < n; i++) {
		if (!values[i]) {
			pkt_put_u32(b, 0xffffffffu);
			continue;
		}
		size_t len = strlen(values[i]);
		pkt_put_u32(b, (uint32_t)len);
		pkt_put_bytes(b, values[i], len);
	}
	pkt_end(b);
}

void pkt_reader_init(struct pkt_reader *r, const void *body, size_t len)
{
	r->p = body;
	r->end = r->p + len;
	r->bad = false;
}

size_t pkt_remaining(const struct pkt_reader *r)
{
	return (size_t)(r->end - r->p);
}

const uint8_t *pkt_get_bytes(struct pkt_reader *r, size_t n)
{
	if (r->bad || pkt_remaining(r) < n) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	return p;
}

uint8_t pkt_get_u8(struct pkt_reader *r)
{
	const uint8_t *p = pkt_get_bytes(r, 1);
	return p ? p[0] : 0;
}

uint16_t pkt_get_u16(struct pkt_reader *r)
{
	const uint8_t *p = pkt_get_bytes(r, 2);
	return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

uint32_t pkt_get_u32(struct pkt_reader *r)
{
	const uint8_t *p = pkt_get_bytes(r, 4);
	return p ? proto_read_u32(p) : 0;
}

const char *pkt_get_str(struct pkt_reader *r)
{
	if (r->bad)
		return NULL;
	const uint8_t *nul = memchr(r->p, 0, pkt_remaining(r));
	if (!nul) {
		r->bad = true;
		return NULL;
	}
	const char *s = (const char *)r->p;
	r->p = nul + 1;
	return s;
}

void proto_startup_init(struct proto_startup *ps, const void *body, size_t len)
{
	pkt_reader_init(&ps->r, body, len);
	ps->version = pkt_get_u32(&ps->r);
	ps->terminated = false;
}

bool proto_startup_next(struct proto_startup *ps, const char **name, const char **value)
{
	if (pkt_remaining(&ps->r) == 0)
		return false;
	const char *key = pkt_get_str(&ps->r);
	if (key && !*key)
		ps->terminated = true;
	if (!key || !*key)
		return false;
	const char *val = pkt_get_str(&ps->r);
	if (!val)
		return false;
	*name = key;
	*value = val;
	return true;
}

const char *proto_error_field(const uint8_t *body, size_t len, char code)
{
	struct pkt_reader r;
	pkt_reader_init(&r, body, len);
	while (pkt_remaining(&r) > 0) {
		uint8_t c = pkt_get_u8(&r);
		if (c == 0)
			return NULL;
		const char *v = pkt_get_str(&r);
		if (!v)
			return NULL;
		if (c == (uint8_t)code)
			return v;
	}
	return NULL;
}

/*
 * An escape-string literal means the same to PostgreSQL whatever the
 * session's standard_conforming_strings, and text made only of printable
 * ASCII reads the same in every client_encoding (in SJIS or GBK, a byte
 * above 0x7f can swallow the backslash that follows it). So quotes and
 * backslashes are doubled, and every other byte outside 0x20..0x7e is
 * written as \xHH: the server rebuilds the exact bytes.
 */
void proto_quote_literal(struct pktbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	pkt_put_bytes(b, "E'", 2);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\'' || *p == '\\') {
			uint8_t twice[2] = { *p, *p };
			pkt_put_bytes(b, twice, 2);
		} else if (*p < 0x20 || *p > 0x7e) {
			uint8_t esc[4] = { '\\', 'x', (uint8_t)hex[*p >> 4],
					   (uint8_t)hex[*p & 15] };
			pkt_put_bytes(b, esc, 4);
		} else {
			pkt_put_u8(b, *p);
		}
	}
	pkt_put_u8(b, '\'');
}
