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

static void test_literal_quoting_doubles_quotes(void)
{
	char out[32];
	CHECK(proto_quote_literal("it's", out, sizeof(out)));
	CHECK_STR_EQ(out, "'it''s'");
	CHECK(proto_quote_literal("", out, sizeof(out)));
	CHECK_STR_EQ(out, "''");
	char small[6];
	CHECK(!proto_quote_literal("abcdef", small, sizeof(small)));
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
	RUN(test_error_field_lookup_stops_at_truncation);
	RUN(test_reader_refuses_to_read_past_the_end);
	RUN(test_reader_walks_key_value_pairs);
	RUN(test_startup_walk_yields_pairs_until_the_empty_name);
	RUN(test_startup_walk_flags_a_value_without_its_nul);
	RUN(test_row_description_and_data_row_layout);
	RUN(test_consume_keeps_the_rest_in_order);
	RUN(test_literal_quoting_doubles_quotes);
	RUN(test_many_messages_grow_the_buffer);
	return UNIT_REPORT("proto");
}
