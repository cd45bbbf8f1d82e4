/*
 * test_dns: the resolver's cache rules, and c-ares driven by a real
 * libevent loop. Name servers are local sockets the test controls (a port
 * where nothing listens answers every query with "connection refused"), so
 * nothing here depends on the machine's DNS. The integration suite
 * (test_dns.py) covers answers, TTLs and round robin with a fake server.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

#define SEC 1000000LL

static void test_cache_lifetime_is_the_ttl_capped_by_dns_max_ttl(void)
{
	CHECK_INT_EQ(dns_cache_lifetime(30, 15 * SEC), 15 * SEC);
	CHECK_INT_EQ(dns_cache_lifetime(5, 15 * SEC), 5 * SEC);
	CHECK_INT_EQ(dns_cache_lifetime(3600, 3600 * SEC), 3600 * SEC);
}

static void test_cache_lifetime_is_at_least_one_second(void)
{
	/* TTL 0 (service discovery, /etc/hosts): the waiters still get the answer */
	CHECK_INT_EQ(dns_cache_lifetime(0, 15 * SEC), SEC);
	CHECK_INT_EQ(dns_cache_lifetime(-5, 15 * SEC), SEC);
	CHECK_INT_EQ(dns_cache_lifetime(30, 0), SEC);
}

/* a UDP port on 127.0.0.1 where nothing listens */
static int unused_udp_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		return 0;
	close(fd);
	return ntohs(a.sin_port);
}

struct done {
	int calls;
	bool ok;
	char error[128];
	struct event_base *base;
	struct dns_resolver *reask; /* ask again from inside the call, as a pool may */
	enum dns_result reask_result;
};

static void on_done(void *arg, const char *host, bool ok, const char *error)
{
	struct done *d = arg;
	d->calls++;
	d->ok = ok;
	snprintf(d->error, sizeof(d->error), "%s", error ? error : "");
	if (d->reask) {
		struct sockaddr_storage ss;
		socklen_t len;
		char why[128];
		d->reask_result = dns_pick_address(d->reask, host, 5432, &ss, &len, why,
						   sizeof(why), on_done, d);
		d->reask = NULL;
	}
	event_base_loopbreak(d->base);
}

static void count_entry(const struct dns_host_info *info, void *arg)
{
	int *n = arg;
	(*n)++;
	CHECK_STR_EQ(info->hostname, "db.pgpulse.test");
	CHECK_STR_EQ(info->addrs, "");
}

static void test_unreachable_name_server_fails_waiters_once_from_the_loop(void)
{
	char err[256], why[128], servers[64];
	struct event_base *base = event_base_new();
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", unused_udp_port());
	struct dns_resolver *r = dns_new(base, NULL, servers, NULL, err, sizeof(err));
	CHECK(r != NULL);
	if (!r) {
		fprintf(stderr, "%s\n", err);
		event_base_free(base);
		return;
	}
	struct done d = { .base = base };
	struct sockaddr_storage ss;
	socklen_t len;
	CHECK(dns_pick_address(r, "db.pgpulse.test", 5432, &ss, &len, why, sizeof(why), on_done,
			       &d) == DNS_PENDING);
	/* the same caller asking again is not called twice */
	CHECK(dns_pick_address(r, "db.pgpulse.test", 5432, &ss, &len, why, sizeof(why), on_done,
			       &d) == DNS_PENDING);
	CHECK_INT_EQ(d.calls, 0);
	CHECK_INT_EQ(dns_pending_count(r), 1);
	struct timeval limit = { 10, 0 };
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	CHECK_INT_EQ(d.calls, 1);
	CHECK(!d.ok);
	CHECK_STR_EQ(d.error, "Could not contact DNS servers");
	CHECK_INT_EQ(dns_pending_count(r), 0);
	int entries = 0;
	dns_for_each_host(r, count_entry, &entries);
	CHECK_INT_EQ(entries, 1);
	CHECK_INT_EQ(dns_name_count(r), 1);
	/* not a fact about the name: not cached, the next ask looks it up again */
	CHECK(dns_pick_address(r, "db.pgpulse.test", 5432, &ss, &len, why, sizeof(why), on_done,
			       &d) == DNS_PENDING);
	dns_free(r); /* with a lookup in flight: its waiter is not called */
	CHECK_INT_EQ(d.calls, 1);
	event_base_free(base);
}

/* a waiter that asks again from its call waits for the new lookup: called once per lookup */
static void test_waiter_asking_again_from_its_call_waits_for_the_next_lookup(void)
{
	char err[256], why[128], servers[64];
	struct event_base *base = event_base_new();
	snprintf(servers, sizeof(servers), "127.0.0.1:%d", unused_udp_port());
	struct dns_resolver *r = dns_new(base, NULL, servers, NULL, err, sizeof(err));
	CHECK(r != NULL);
	if (!r) {
		event_base_free(base);
		return;
	}
	struct done d = { .base = base, .reask = r };
	struct sockaddr_storage ss;
	socklen_t len;
	CHECK(dns_pick_address(r, "db.pgpulse.test", 5432, &ss, &len, why, sizeof(why), on_done,
			       &d) == DNS_PENDING);
	struct timeval limit = { 10, 0 };
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	CHECK_INT_EQ(d.calls, 1);
	CHECK(d.reask_result == DNS_PENDING);
	CHECK_INT_EQ(dns_pending_count(r), 1);
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	CHECK_INT_EQ(d.calls, 2);
	CHECK_INT_EQ(dns_pending_count(r), 0);
	dns_free(r);
	event_base_free(base);
}

static void test_bad_nameserver_list_is_refused_by_dns_new(void)
{
	char err[256];
	struct event_base *base = event_base_new();
	struct dns_resolver *r = dns_new(base, NULL, "not-an-address", NULL, err, sizeof(err));
	CHECK(r == NULL);
	CHECK(strstr(err, "dns_nameservers") != NULL);
	dns_free(r);
	event_base_free(base);
}

int main(void)
{
	log_setup(0, true);
	RUN(test_cache_lifetime_is_the_ttl_capped_by_dns_max_ttl);
	RUN(test_cache_lifetime_is_at_least_one_second);
	RUN(test_unreachable_name_server_fails_waiters_once_from_the_loop);
	RUN(test_waiter_asking_again_from_its_call_waits_for_the_next_lookup);
	RUN(test_bad_nameserver_list_is_refused_by_dns_new);
	return UNIT_REPORT("dns");
}
