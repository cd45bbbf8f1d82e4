/*
 * test_util: socket addresses print as PostgreSQL's logs and SHOW CLIENTS
 * show them, and the login-time random bytes are never handed out twice.
 */
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "unit.h"

static const char *ipv4_text(const char *ip, int port, char *buf, size_t len)
{
	struct sockaddr_in in;
	memset(&in, 0, sizeof(in));
	in.sin_family = AF_INET;
	in.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, ip, &in.sin_addr);
	return addr_to_str(&in, buf, len);
}

static void test_ipv4_addresses_print_as_dotted_quad_and_port(void)
{
	char buf[64];
	CHECK_STR_EQ(ipv4_text("127.0.0.1", 54321, buf, sizeof(buf)), "127.0.0.1:54321");
	CHECK_STR_EQ(ipv4_text("0.0.0.0", 0, buf, sizeof(buf)), "0.0.0.0:0");
	CHECK_STR_EQ(ipv4_text("255.255.255.255", 65535, buf, sizeof(buf)), "255.255.255.255:65535");
	CHECK_STR_EQ(ipv4_text("10.20.30.4", 6432, buf, sizeof(buf)), "10.20.30.4:6432");
}

static void test_a_short_buffer_gets_a_cut_terminated_address(void)
{
	char buf[8];
	CHECK_STR_EQ(ipv4_text("192.168.100.200", 5432, buf, sizeof(buf)), "192.168");
}

static void test_ipv6_and_unix_addresses(void)
{
	char buf[64];
	struct sockaddr_in6 in6;
	memset(&in6, 0, sizeof(in6));
	in6.sin6_family = AF_INET6;
	in6.sin6_port = htons(6432);
	inet_pton(AF_INET6, "::1", &in6.sin6_addr);
	CHECK_STR_EQ(addr_to_str(&in6, buf, sizeof(buf)), "[::1]:6432");
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	CHECK_STR_EQ(addr_to_str(&un, buf, sizeof(buf)), "unix");
}

static void test_random_bytes_do_not_repeat_across_pool_refills(void)
{
	/* 3,000 draws of 8 bytes cross many 1 kB refills; no two may be equal */
	enum { N = 3000 };
	static uint64_t seen[N];
	int repeats = 0;
	for (int i = 0; i < N; i++) {
		random_bytes(&seen[i], sizeof(seen[i]));
		for (int j = 0; j < i; j++)
			repeats += seen[j] == seen[i];
	}
	CHECK(repeats == 0);
}

static void test_a_utf8_prefix_never_ends_inside_a_character(void)
{
	/* "xé€😀": 1 + 2 + 3 + 4 bytes */
	const char *t = "x\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	size_t want[] = { 0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 10 };
	for (size_t max = 0; max < sizeof(want) / sizeof(want[0]); max++)
		CHECK_INT_EQ(utf8_prefix_len(t, max), want[max]);
	/* a text stored already cut loses its half character, whatever max */
	CHECK_INT_EQ(utf8_prefix_len("ab\xe2\x82", 100), 2);
	CHECK_INT_EQ(utf8_prefix_len("plain ascii", 5), 5);
}

int main(void)
{
	RUN(test_ipv4_addresses_print_as_dotted_quad_and_port);
	RUN(test_a_short_buffer_gets_a_cut_terminated_address);
	RUN(test_ipv6_and_unix_addresses);
	RUN(test_random_bytes_do_not_repeat_across_pool_refills);
	RUN(test_a_utf8_prefix_never_ends_inside_a_character);
	return UNIT_REPORT("util");
}
