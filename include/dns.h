/*
 * dns: server host names resolved by c-ares inside the worker's event loop,
 * and cached.
 *
 * A lookup never blocks the loop: c-ares's sockets are libevent events and
 * its retransmits run on a libevent timer. Each name has one cache entry,
 * kept for min(the answer's TTL, dns_max_ttl); a name that does not exist
 * (or has no address) is remembered as such for dns_nxdomain_ttl. The
 * addresses of a name are handed out round robin, one per new connection.
 *
 * Literal addresses and unix-socket directories are not names: callers do
 * not bring them here.
 */
#ifndef PGPULSE_DNS_H
#define PGPULSE_DNS_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct dns_resolver;

/*
 * The resolver for one event loop. resolv_conf: a resolv.conf to read
 * instead of the system's ("" or NULL: the system's); nameservers: "" or
 * NULL for those of the resolv.conf, else "addr[:port],..." to ask instead.
 * on_change(host) runs when a fresh answer for host no longer has the same
 * set of addresses as the one before. NULL (with a reason) on failure.
 */
struct dns_resolver *dns_new(struct event_base *base, const char *resolv_conf,
			     const char *nameservers, void (*on_change)(const char *host),
			     char *err, size_t errlen);

/* cancel what is in flight (waiters are not called), free everything */
void dns_free(struct dns_resolver *r);

/*
 * Called once when a lookup somebody waited for ends: ok, and the caller
 * asks dns_pick_address again (the answer is cached), or not ok, with the
 * reason (e.g. "Domain name not found").
 */
typedef void (*dns_done_fn)(void *arg, const char *host, bool ok, const char *error);

enum dns_result {
	DNS_OK,      /* *ss holds the next address of host, with port */
	DNS_PENDING, /* a lookup runs; fn(arg, ...) follows, from the event loop */
	DNS_FAILED,  /* the name does not resolve; the reason is in error */
};

/*
 * The next address of host (round robin over its addresses), from the
 * cache when the entry is fresh, else after a lookup. While a lookup is
 * pending, every (fn, arg) pair that asks is called once when it ends;
 * asking again with the same pair does not add a second call. arg must
 * stay valid until then, or until dns_free.
 *
 * ttl limits are read per answer: max_ttl caps a positive answer's TTL,
 * negative_ttl is how long "no such name" is kept (microseconds).
 */
enum dns_result dns_pick_address(struct dns_resolver *r, const char *host, int port,
				 struct sockaddr_storage *ss, socklen_t *len, char *error,
				 size_t errlen, dns_done_fn fn, void *arg);

/*
 * Look host up again, in the background, if its entry has expired (and
 * is not being looked up): nobody waits, but a changed answer is noticed
 * (on_change) while the connections made to the old one are still open.
 */
void dns_refresh(struct dns_resolver *r, const char *host);

/* the object `arg` of pending waiters is going away: they are not called */
void dns_forget_waiter(struct dns_resolver *r, void *arg);

void dns_set_ttls(struct dns_resolver *r, int64_t max_ttl, int64_t negative_ttl);

/* how long an answer with this TTL (seconds) is kept: the TTL, capped by max_ttl, at least 1 s
 * (usec) */
int64_t dns_cache_lifetime(int ttl_seconds, int64_t max_ttl);

/* addresses of host in the cache (0 if it has none) */
int dns_address_count(struct dns_resolver *r, const char *host);

/* one cache entry, as SHOW DNS_HOSTS shows it */
struct dns_host_info {
	const char *hostname;
	int64_t ttl;       /* seconds until the entry expires, 0 if expired or pending */
	const char *addrs; /* comma-separated addresses, "" for a negative or pending entry */
};

/* call fn once per cache entry; info is valid during the call only (r may be NULL: no entries) */
void dns_for_each_host(struct dns_resolver *r,
		       void (*fn)(const struct dns_host_info *info, void *arg), void *arg);

/* names in the cache, and lookups in flight (SHOW LISTS) */
int dns_name_count(const struct dns_resolver *r);
int dns_pending_count(const struct dns_resolver *r);

/*
 * dns_zone_check_period: every period (usec; 0 stops it) the SOA serial of
 * each cached name's zone (what follows its first dot) is asked for; when
 * a serial changes, that zone's names are looked up again at once.
 */
void dns_set_zone_check_period(struct dns_resolver *r, int64_t period);

/* one watched zone, as SHOW DNS_ZONES shows it */
struct dns_zone_info {
	const char *zonename;
	int64_t serial; /* the last SOA serial seen, 0 before the first answer */
	int count;      /* cached names in the zone */
};
void dns_for_each_zone(struct dns_resolver *r, void (*fn)(const struct dns_zone_info *info, void *arg),
		       void *arg);

#endif
