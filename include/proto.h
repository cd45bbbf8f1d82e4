/*
 * proto: PostgreSQL v3 protocol messages — building them into a buffer and
 * reading fields out of received ones. No I/O here.
 *
 * A message is a type byte, a 4-byte big-endian length that counts itself
 * but not the type byte, and a body. The startup-phase packets (startup,
 * SSLRequest, CancelRequest) have no type byte.
 */
#ifndef PGPULSE_PROTO_H
#define PGPULSE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_V3 196608u             /* 3.0 */
#define PROTO_CANCEL 80877102u
#define PROTO_SSL 80877103u
#define PROTO_GSSENC 80877104u

/* authentication request codes (type 'R') */
#define AUTH_REQ_OK 0
#define AUTH_REQ_CLEARTEXT 3
#define AUTH_REQ_MD5 5
#define AUTH_REQ_SASL 10
#define AUTH_REQ_SASL_CONTINUE 11
#define AUTH_REQ_SASL_FINAL 12

/* a growable output buffer that messages are built in */
struct pktbuf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t msg_start; /* where the message being built begins */
};

void pktbuf_init(struct pktbuf *b);
void pktbuf_free(struct pktbuf *b);
void pktbuf_reset(struct pktbuf *b);
/* drop the first n bytes (they were sent) */
void pktbuf_consume(struct pktbuf *b, size_t n);

/* begin a message; type 0 means an untyped startup-phase packet */
void pkt_begin(struct pktbuf *b, uint8_t type);
void pkt_put_u8(struct pktbuf *b, uint8_t v);
void pkt_put_u16(struct pktbuf *b, uint16_t v);
void pkt_put_u32(struct pktbuf *b, uint32_t v);
void pkt_put_bytes(struct pktbuf *b, const void *p, size_t n);
void pkt_put_str(struct pktbuf *b, const char *s); /* with its NUL */
void pkt_end(struct pktbuf *b);                    /* fills in the length */

/* whole messages */
void proto_put_error(struct pktbuf *b, const char *severity, const char *sqlstate, const char *msg);
void proto_put_error_hint(struct pktbuf *b, const char *severity, const char *sqlstate, const char *msg,
			  const char *hint);
/*
 * A server's ErrorResponse (its body) as a FATAL one: every field kept but
 * the severity (S, V) and those about the query that caused it (P, p, q,
 * W). False, with nothing written, when the body is malformed.
 */
bool proto_put_error_as_fatal(struct pktbuf *b, const uint8_t *body, size_t len);
void proto_put_notice(struct pktbuf *b, const char *sqlstate, const char *msg);
void proto_put_warning(struct pktbuf *b, const char *sqlstate, const char *msg); /* a NoticeResponse of severity WARNING */
void proto_put_auth(struct pktbuf *b, uint32_t code, const void *data, size_t len);
void proto_put_param_status(struct pktbuf *b, const char *name, const char *value);
void proto_put_backend_key(struct pktbuf *b, uint32_t pid, uint32_t key);
void proto_put_ready(struct pktbuf *b, char status);
void proto_put_query(struct pktbuf *b, const char *sql);
void proto_put_command_complete(struct pktbuf *b, const char *tag);
void proto_put_empty_query(struct pktbuf *b);
/* RowDescription with n text columns */
void proto_put_row_description(struct pktbuf *b, int n, const char *const *names, const uint32_t *type_oids);
/* DataRow of n text values; NULL is SQL NULL */
void proto_put_data_row(struct pktbuf *b, int n, const char *const *values);

/* reading fields of a received message body, with bounds checks */
struct pkt_reader {
	const uint8_t *p;
	const uint8_t *end;
	bool bad; /* a read ran past the end */
};

void pkt_reader_init(struct pkt_reader *r, const void *body, size_t len);
uint8_t pkt_get_u8(struct pkt_reader *r);
uint16_t pkt_get_u16(struct pkt_reader *r);
uint32_t pkt_get_u32(struct pkt_reader *r);
/* a NUL-terminated string inside the body; NULL (and bad) when unterminated */
const char *pkt_get_str(struct pkt_reader *r);
const uint8_t *pkt_get_bytes(struct pkt_reader *r, size_t n);
size_t pkt_remaining(const struct pkt_reader *r);

static inline uint32_t proto_read_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/*
 * The body of a startup packet (after its length): the protocol version,
 * then name/value string pairs, ended by an empty name (or by the end of
 * the body). proto_startup_next yields one pair at a time, both strings
 * NUL-terminated inside the body, and false at the end; `r.bad` then tells
 * a malformed layout (a string without its NUL, no room for the version)
 * from a clean end.
 */
struct proto_startup {
	struct pkt_reader r;
	uint32_t version;
	bool terminated;            /* the empty name that ends the list was read */
};

void proto_startup_init(struct proto_startup *ps, const void *body, size_t len);
bool proto_startup_next(struct proto_startup *ps, const char **name, const char **value);

/*
 * Find field `code` (e.g. 'C' for SQLSTATE, 'M' for message, 'S' severity)
 * of an ErrorResponse/NoticeResponse body; NULL when absent or malformed.
 */
const char *proto_error_field(const uint8_t *body, size_t len, char code);

/*
 * Append s as an SQL string literal, E'...', that is safe to send whatever
 * standard_conforming_strings and client_encoding the session has: at most
 * four bytes out per byte in, no NUL appended.
 */
void proto_quote_literal(struct pktbuf *b, const char *s);

#endif
