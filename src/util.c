/*
 * util: allocation that never returns NULL, string and random helpers.
 *
 * Running out of memory in a pooler has no graceful recovery that keeps
 * every invariant, so allocation failure aborts with a log line.
 */
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "log.h"

static void *check_alloc(void *p)
{
	if (!p) {
		log_error("out of memory");
		abort();
	}
	return p;
}

void *xmalloc(size_t n)
{
	return check_alloc(malloc(n ? n : 1));
}

void *xcalloc(size_t n, size_t size)
{
	return check_alloc(calloc(n ? n : 1, size ? size : 1));
}

void *xrealloc(void *p, size_t n)
{
	return check_alloc(realloc(p, n ? n : 1));
}

char *xstrdup(const char *s)
{
	return s ? check_alloc(strdup(s)) : NULL;
}

size_t str_copy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);
	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

/*
 * Every login takes 12 random bytes (an MD5 salt, the BackendKeyData pid and
 * key). One RAND_bytes call costs about 6,000 instructions whatever its size
 * (OpenSSL 3 looks up and locks its DRBG each time), so the bytes are drawn
 * from the DRBG a pool at a time and handed out in order; each byte is handed
 * out once. Nothing draws before the event loop runs (logins do), so the
 * fork that daemonizes never copies a filled pool into two processes.
 */
#define RANDOM_POOL_SIZE 1024

static unsigned char random_pool[RANDOM_POOL_SIZE];
static size_t random_pool_left;

static void random_fill(void *buf, size_t len)
{
	if (RAND_bytes(buf, (int)len) != 1) {
		log_error("RAND_bytes failed");
		abort();
	}
}

void random_bytes(void *buf, size_t len)
{
	if (len > RANDOM_POOL_SIZE / 4) {
		random_fill(buf, len);
		return;
	}
	if (random_pool_left < len) {
		random_fill(random_pool, RANDOM_POOL_SIZE);
		random_pool_left = RANDOM_POOL_SIZE;
	}
	unsigned char *take = random_pool + RANDOM_POOL_SIZE - random_pool_left;
	memcpy(buf, take, len);
	OPENSSL_cleanse(take, len);
	random_pool_left -= len;
}

const char *usec_to_seconds_text(int64_t usec, char *buf, size_t len)
{
	snprintf(buf, len, "%lld.%06lld", (long long)(usec / 1000000), (long long)(usec % 1000000));
	/* trim trailing zeros, and the point when nothing follows it */
	char *end = buf + strlen(buf) - 1;
	while (end > buf && *end == '0')
		*end-- = '\0';
	if (*end == '.')
		*end = '\0';
	return buf;
}

/* append the decimal digits of v at p; returns the end */
static char *put_decimal(char *p, unsigned v)
{
	char digits[10];
	int n = 0;
	do
		digits[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	while (n > 0)
		*p++ = digits[--n];
	return p;
}

/* "a.b.c.d:port" by hand: inet_ntop and snprintf cost 2,500 instructions a login */
static void ipv4_to_str(const struct sockaddr_in *in, char *buf, size_t len)
{
	char text[sizeof("255.255.255.255:65535")];
	const uint8_t *a = (const uint8_t *)&in->sin_addr;
	char *p = text;
	for (int i = 0; i < 4; i++) {
		p = put_decimal(p, a[i]);
		*p++ = i < 3 ? '.' : ':';
	}
	p = put_decimal(p, ntohs(in->sin_port));
	*p = '\0';
	str_copy(buf, text, len);
}

const char *addr_to_str(const void *sockaddr, char *buf, size_t len)
{
	const struct sockaddr *sa = sockaddr;
	char ip[INET6_ADDRSTRLEN];
	switch (sa->sa_family) {
	case AF_INET:
		ipv4_to_str(sockaddr, buf, len);
		break;
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = sockaddr;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%d", ip, ntohs(in6->sin6_port));
		break;
	}
	case AF_UNIX:
		snprintf(buf, len, "unix");
		break;
	default:
		snprintf(buf, len, "unknown");
	}
	return buf;
}

/* the bytes a UTF-8 sequence takes, from its lead byte (1 for a stray byte) */
static size_t utf8_sequence_len(unsigned char lead)
{
	if (lead >= 0xf0 && lead < 0xf8)
		return 4;
	if (lead >= 0xe0)
		return lead < 0xf0 ? 3 : 1;
	if (lead >= 0xc0)
		return 2;
	return 1;
}

size_t utf8_prefix_len(const char *s, size_t max)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = 0;
	while (n < max && u[n])
		n++;
	/* the lead byte of the last character: at most three continuation bytes back */
	size_t lead = n;
	for (int back = 0; back < 4 && lead > 0; back++) {
		lead--;
		if ((u[lead] & 0xc0) != 0x80)
			break;
	}
	if (lead < n && (u[lead] & 0xc0) == 0xc0 && lead + utf8_sequence_len(u[lead]) > n)
		return lead;
	return n;
}
