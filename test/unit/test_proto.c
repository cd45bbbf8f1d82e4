/*
 * test_proto: building PostgreSQL messages and reading them back, with the
 * bounds checks that keep malformed input from reading past a packet.
 */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

#include "unit.h"

static void test_message_length_counts_itself_not_the_type_byte(void)
{
	struct pktbuf b;
	pktbuf_init(&b);
	proto_put_ready(&b, 'I');
	CHECK_INT_EQ(b.len, 6);
	CHECK_INT_EQ(b.data[0], 'Z');
	CHECK_INT_EQ(proto_read_u32(b.data + 1), 5);
	CHECK_INT_EQ(b.data[5], 'I');
	pktbuf_free(&b);
}

static void test_startup_packet_has_no_type_byte(void)
{
	struct pktbuf b;
	pktbuf_init(&b);
	pkt_begin(&b, 0);
	pkt_put_u32(&b, PROTO_V3);
	pkt_put_str(&b, "user");
	pkt_put_str(&b, "app");
	pkt_put_u8(&b, 0);
	pkt_end(&b);
	CHECK_INT_EQ(proto_read_u32(b.data), b.len);
	CHECK_INT_EQ(proto_read_u32(b.data + 4), PROTO_V3);
	CHECK(memcmp(b.data + 8, "user\0app\0\0", 10) == 0);
	pktbuf_free(&b);
}

static void test_error_response_fields_can_be_found(void)
{
	struct pktbuf b;
	pktbuf_init(&b);
	proto_put_error(&b, "FATAL", "53300", "too many clients");
	CHECK_INT_EQ(b.data[0], 'E');
	const uint8_t *body = b.data + 5;
	size_t len = b.len - 5;
	CHECK_STR_EQ(proto_error_field(body, len, 'C'), "53300");
	CHECK_STR_EQ(proto_error_field(body, len, 'M'), "too many clients");
	CHECK_STR_EQ(proto_error_field(body, len, 'S'), "FATAL");
	CHECK(proto_error_field(body, len, 'D') == NULL);
	pktbuf_free(&b);
}

static void test_error_field_lookup_stops_at_truncation(void)
{
	static const uint8_t truncated[] = { 'C', '5', '3', '3' }; /* no NUL */
	CHECK(proto_error_field(truncated, sizeof(truncated), 'C') == NULL);
	CHECK(proto_error_field(truncated, 0, 'C') == NULL);
}

static void test_server_error_made_fatal_keeps_its_fields_but_the_querys(void)
{
	static const uint8_t body[] = "SERROR\0VERROR\0C22023\0Minvalid value\0HValid units: kB\0"
				      "P8\0Wset_config\0Fguc.c\0L7422\0Rparse\0";
	struct pktbuf b;
	pktbuf_init(&b);
	CHECK(proto_put_error_as_fatal(&b, body, sizeof(body)));
	const uint8_t *out = b.data + 5;
	size_t len = b.len - 5;
	CHECK_INT_EQ(b.data[0], 'E');
	CHECK_STR_EQ(proto_error_field(out, len, 'S'), "FATAL");
	CHECK_STR_EQ(proto_error_field(out, len, 'V'), "FATAL");
	CHECK_STR_EQ(proto_error_field(out, len, 'C'), "22023");
	CHECK_STR_EQ(proto_error_field(out, len, 'H'), "Valid units: kB");
	CHECK_STR_EQ(proto_error_field(out, len, 'R'), "parse");
	CHECK(proto_error_field(out, len, 'P') == NULL); /* about pgpulse's SET, not the client's login */
	CHECK(proto_error_field(out, len, 'W') == NULL);
	pktbuf_free(&b);
}

static void test_malformed_server_error_writes_nothing(void)
{
	static const uint8_t body[] = { 'C', '2', '2' }; /* no NUL */
	struct pktbuf b;
	pktbuf_init(&b);
	CHECK(!proto_put_error_as_fatal(&b, body, sizeof(body)));
	CHECK_INT_EQ(b.len, 0);
	pktbuf_free(&b);
}

static void test_reader_refuses_to_read_past_the_end(void)
{
	static const uint8_t body[] = { 0, 0, 0, 7, 'a', 'b' };
	struct pkt_reader r;
	pkt_reader_init(&r, body, sizeof(body));
	CHECK_INT_EQ(pkt_get_u32(&r), 7);
	CHECK(!r.bad);
	CHECK(pkt_get_str(&r) == NULL); /* "ab" is not terminated */
	CHECK(r.bad);
	CHECK_INT_EQ(pkt_get_u32(&r), 0);
	CHECK(pkt_get_bytes(&r, 1) == NULL);
}

static void test_reader_walks_key_value_pairs(void)
{
	static const uint8_t body[] = "user\0app\0database\0appdb\0";
	struct pkt_reader r;
	pkt_reader_init(&r, body, sizeof(body));
	CHECK_STR_EQ(pkt_get_str(&r), "user");
	CHECK_STR_EQ(pkt_get_str(&r), "app");
	CHECK_STR_EQ(pkt_get_str(&r), "database");
	CHECK_STR_EQ(pkt_get_str(&r), "appdb");
	CHECK_STR_EQ(pkt_get_str(&r), "");
	CHECK_INT_EQ(pkt_remaining(&r), 0);
	CHECK(!r.bad);
}

static void test_startup_walk_yields_pairs_until_the_empty_name(void)
{
	/* version 3.0, two pairs, the terminator, and bytes after it that are never read */
	static const uint8_t body[] = "\x00\x03\x00\x00user\0app\0database\0appdb\0\0junk";
	struct proto_startup ps;
	const char *name, *value;
	proto_startup_init(&ps, body, sizeof(body) - 1);
	CHECK_INT_EQ(ps.version, PROTO_V3);
	CHECK(proto_startup_next(&ps, &name, &value));
	CHECK_STR_EQ(name, "user");
	CHECK_STR_EQ(value, "app");
	CHECK(proto_startup_next(&ps, &name, &value));
	CHECK_STR_EQ(name, "database");
	CHECK_STR_EQ(value, "appdb");
	CHECK(!proto_startup_next(&ps, &name, &value));
	CHECK(!ps.r.bad);
}

static void test_startup_walk_flags_a_value_without_its_nul(void)
{
	static const uint8_t body[] = { 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 'p', 'p' };
	struct proto_startup ps;
	const char *name, *value;
	proto_startup_init(&ps, body, sizeof(body));
	CHECK(!proto_startup_next(&ps, &name, &value));
	CHECK(ps.r.bad);

	proto_startup_init(&ps, body, 2); /* no room for the version */
	CHECK(!proto_startup_next(&ps, &name, &value));
	CHECK(ps.r.bad);
}

static void test_row_description_and_data_row_layout(void)
{
	struct pktbuf b;
	pktbuf_init(&b);
	const char *names[] = { "a", "bb" };
	proto_put_row_description(&b, 2, names, NULL);
	/* 'T' len(4) n(2) + per column: name + 18 bytes */
	CHECK_INT_EQ(b.len, 1 + 4 + 2 + (2 + 18) + (3 + 18));
	size_t row_start = b.len;
	const char *values[] = { "x", NULL };
	proto_put_data_row(&b, 2, values);
	const uint8_t *d = b.data + row_start;
	CHECK_INT_EQ(d[0], 'D');
	CHECK_INT_EQ(proto_read_u32(d + 1), 4 + 2 + 4 + 1 + 4);
	CHECK_INT_EQ(proto_read_u32(d + 7), 1);
	CHECK_INT_EQ(d[11], 'x');
	CHECK_INT_EQ(proto_read_u32(d + 12), 0xffffffffu);
	pktbuf_free(&b);
}

static void test_consume_keeps_the_rest_in_order(void)
{
	struct pktbuf b;
	pktbuf_init(&b);
	proto_put_ready(&b, 'I');
	proto_put_ready(&b, 'T');
	pktbuf_consume(&b, 6);
	CHECK_INT_EQ(b.len, 6);
	CHECK_INT_EQ(b.data[5], 'T');
	pktbuf_consume(&b, 100);
	CHECK_INT_EQ(b.len, 0);
	pktbuf_free(&b);
}

/* the literal proto_quote_literal writes for s, as a C string (freed by the caller) */
static char *quoted(const char *s)
{
	struct pktbuf b;
	pktbuf_init(&b);
	proto_quote_literal(&b, s);
	pkt_put_u8(&b, 0);
	return (char *)b.data;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Read an escape-string literal back as PostgreSQL's lexer does ('' and the
 * backslash escapes it has), into out; the length read, or -1 when the
 * literal ends early, has a lone quote inside, or text follows it.
 */
static int read_escape_literal(const char *lit, char *out)
{
	const char *p = lit;
	int n = 0;
	if (p[0] != 'E' || p[1] != '\'')
		return -1;
	for (p += 2;; p++) {
		if (*p == '\0')
			return -1; /* unterminated */
		if (*p == '\'') {
			if (p[1] != '\'')
				return p[1] == '\0' ? n : -1;
			out[n++] = *++p;
		} else if (*p == '\\') {
			p++;
			if (*p == 'x' && hex_digit(p[1]) >= 0 && hex_digit(p[2]) >= 0) {
				out[n++] = (char)(hex_digit(p[1]) * 16 + hex_digit(p[2]));
				p += 2;
			} else if (*p == '\\' || *p == '\'') {
				out[n++] = *p;
			} else {
				return -1; /* an escape we never write */
			}
		} else {
			out[n++] = *p;
		}
	}
}

static void test_literal_doubles_quotes_and_backslashes(void)
{
	char *q = quoted("it's");
	CHECK_STR_EQ(q, "E'it''s'");
	free(q);
	q = quoted("");
	CHECK_STR_EQ(q, "E''");
	free(q);
	q = quoted("C:\\temp\\new");
	CHECK_STR_EQ(q, "E'C:\\\\temp\\\\new'");
	free(q);
	q = quoted("ends in \\");
	CHECK_STR_EQ(q, "E'ends in \\\\'");
	free(q);
	/* the attack that worked while a server had standard_conforming_strings = off */
	q = quoted("x\\'; CREATE TABLE pwned(i int); --");
	CHECK_STR_EQ(q, "E'x\\\\''; CREATE TABLE pwned(i int); --'");
	free(q);
}

static void test_literal_is_printable_ascii_whatever_the_bytes(void)
{
	char *q = quoted("tab\there\x01\x7f\xe9\x95\\");
	/* 0x95 0x5c is one character in SJIS: the backslash must not follow it raw */
	CHECK_STR_EQ(q, "E'tab\\x09here\\x01\\x7f\\xe9\\x95\\\\'");
	free(q);
}

static void test_literal_reads_back_byte_exact(void)
{
	char in[300], back[300];
	unsigned seed = 12345;
	for (int round = 0; round < 2000; round++) {
		int len = (int)(seed % 64);
		for (int i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			unsigned r = (seed >> 16) & 0x7fff;
			/* quotes, backslashes, 'x' and hex digits are the interesting ones */
			static const char pick[] = "'\\x0aF ";
			in[i] = r % 2 ? pick[(r >> 1) % 7] : (char)(1 + (r >> 1) % 255);
		}
		in[len] = '\0';
		char *q = quoted(in);
		for (const char *p = q; *p; p++)
			CHECK(*p >= 0x20 && *p <= 0x7e);
		int n = read_escape_literal(q, back);
		CHECK_INT_EQ(n, len);
		CHECK(n == len && memcmp(back, in, (size_t)len) == 0);
		free(q);
	}
}

static void test_literal_grows_with_its_value(void)
{
	char in[2001];
	memset(in, '\\', 2000);
	in[2000] = '\0';
	char *q = quoted(in);
	CHECK_INT_EQ(strlen(q), 3 + 4000);
	free(q);
}

static void test_many_messages_grow_the_buffer(void)
{
	struct pktbuf b;
	pktbuf_init(&b);
	for (int i = 0; i < 10000; i++)
		proto_put_command_complete(&b, "SELECT 1");
	CHECK_INT_EQ(b.len, 10000u * (1 + 4 + 9));
	CHECK_INT_EQ(b.data[(b.len - 14)], 'C');
	pktbuf_free(&b);
}

int main(void)
{
	RUN(test_message_length_counts_itself_not_the_type_byte);
	RUN(test_startup_packet_has_no_type_byte);
	RUN(test_error_response_fields_can_be_found);
	RUN(test_server_error_made_fatal_keeps_its_fields_but_the_querys);
	RUN(test_malformed_server_error_writes_nothing);
	RUN(test_error_field_lookup_stops_at_truncation);
	RUN(test_reader_refuses_to_read_past_the_end);
	RUN(test_reader_walks_key_value_pairs);
	RUN(test_startup_walk_yields_pairs_until_the_empty_name);
	RUN(test_startup_walk_flags_a_value_without_its_nul);
	RUN(test_row_description_and_data_row_layout);
	RUN(test_consume_keeps_the_rest_in_order);
	RUN(test_literal_doubles_quotes_and_backslashes);
	RUN(test_literal_is_printable_ascii_whatever_the_bytes);
	RUN(test_literal_reads_back_byte_exact);
	RUN(test_literal_grows_with_its_value);
	RUN(test_many_messages_grow_the_buffer);
	return UNIT_REPORT("proto");
}
