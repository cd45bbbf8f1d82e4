/*
 * dns: c-ares bound to the event loop, and a small cache of host names.
 *
 * c-ares tells us which of its sockets it wants to read or write through
 * the sock_state callback: each such socket gets one libevent event, and
 * when it fires we hand the socket back with ares_process_fd(). Timeouts
 * and retransmits are c-ares's too; after every call into c-ares one timer
 * is set to what ares_timeout() asks for.
 *
 * The cache is one entry per name, never freed before dns_free (there are
 * as many as distinct server host names in the configuration). An entry is
 * fresh, pending (a lookup in flight, with the callers that wait for it),
 * or stale; a stale entry is looked up again when somebody asks for it.
 * Waiters are called from the loop only, never from inside
 * dns_pick_address(), so a caller is never re-entered.
 *
 * Zones (dns_zone_check_period, PgBouncer's): every cached name's zone is
 * what follows its first dot. Each period the SOA serial of every zone is
 * asked for; when a zone's serial moves, its names are looked up again at
 * once, whatever their TTL, so a changed address is noticed (on_change)
 * as soon as the zone says something changed.
 */
#include "dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

/* addresses kept per name: enough for any sane DNS round robin */
#define DNS_MAX_ADDRS 16

enum entry_state {
	ENTRY_EMPTY,   /* made, never answered */
	ENTRY_PENDING, /* a lookup is in flight */
	ENTRY_READY,   /* addresses, valid until expires */
	ENTRY_FAILED,  /* no address: remembered until expires (negative caching) */
};

struct dns_waiter {
	struct list node; /* dns_entry->waiters */
	dns_done_fn fn;
	void *arg;
};

struct dns_entry {
	struct list node; /* dns_resolver->entries */
	struct dns_resolver *r;
	char *name;
	enum entry_state state;
	int64_t expires; /* monotonic usec */
	/* the last good answer; kept while a new lookup runs or after a failure */
	struct sockaddr_storage addr[DNS_MAX_ADDRS];
	int n_addrs;
	bool have_answer;
	unsigned next;       /* round robin: the address the next connection takes */
	struct list waiters; /* struct dns_waiter, while pending */
	char error[96];      /* why the last lookup failed */
};

/* a zone whose SOA serial is watched: the names that end in it are looked up when it moves */
struct dns_zone {
	struct list node; /* dns_resolver->zones */
	struct dns_resolver *r;
	char *name;
	uint32_t serial;
	bool have_serial;
	bool pending; /* an SOA query is in flight */
};

/* one c-ares socket and the event that watches it */
struct dns_sock {
	struct dns_sock *next;
	ares_socket_t fd;
	struct event *ev;
};

struct dns_resolver {
	struct event_base *base;
	ares_channel channel;
	struct event *timer;
	struct dns_sock *socks;
	struct list entries;
	struct list zones;         /* struct dns_zone, made as names are cached */
	struct event *zone_timer;  /* every dns_zone_check_period, when set */
	int64_t zone_check_period; /* usec; 0: zones are not watched */
	int pending;
	int64_t max_ttl;
	int64_t negative_ttl;
	void (*on_change)(const char *host);
};

/* ---- c-ares on libevent ---- */

static void schedule_timeout(struct dns_resolver *r)
{
	struct timeval tv, *next = ares_timeout(r->channel, NULL, &tv);
	if (next)
		evtimer_add(r->timer, next);
	else
		evtimer_del(r->timer);
}

static void on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	ares_process_fd(r->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	schedule_timeout(r);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	(void)fd;
	(void)what;
	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	schedule_timeout(r);
}

static struct dns_sock **find_sock(struct dns_resolver *r, ares_socket_t fd)
{
	struct dns_sock **pp = &r->socks;
	while (*pp && (*pp)->fd != fd)
		pp = &(*pp)->next;
	return pp;
}

/* c-ares opened, closed, or changed its interest in one of its sockets */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct dns_sock **pp = find_sock(r, fd), *s = *pp;
	if (s) {
		event_free(s->ev);
		if (!readable && !writable) {
			*pp = s->next;
			free(s);
			return;
		}
	} else {
		if (!readable && !writable)
			return;
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		s->next = r->socks;
		r->socks = s;
	}
	short what = (short)(EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
	s->ev = event_new(r->base, fd, what, on_socket_ready, r);
	event_add(s->ev, NULL);
}

struct dns_resolver *dns_new(struct event_base *base, const char *resolv_conf,
			     const char *nameservers, void (*on_change)(const char *host),
			     char *err, size_t errlen)
{
	struct ares_options opts;
	int mask = ARES_OPT_SOCK_STATE_CB, rc;

	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		snprintf(err, errlen, "could not start the resolver: %s", ares_strerror(rc));
		return NULL;
	}
	struct dns_resolver *r = xcalloc(1, sizeof(*r));
	r->base = base;
	r->on_change = on_change;
	r->max_ttl = r->negative_ttl = 15 * 1000000LL;
	list_init(&r->entries);
	list_init(&r->zones);
	memset(&opts, 0, sizeof(opts));
	opts.sock_state_cb = on_sock_state;
	opts.sock_state_cb_data = r;
	if (resolv_conf && *resolv_conf) {
		opts.resolvconf_path = (char *)resolv_conf; /* c-ares copies it */
		mask |= ARES_OPT_RESOLVCONF;
	}
	if ((rc = ares_init_options(&r->channel, &opts, mask)) != ARES_SUCCESS) {
		snprintf(err, errlen, "could not start the resolver%s%s: %s",
			 mask & ARES_OPT_RESOLVCONF ? " with " : "",
			 mask & ARES_OPT_RESOLVCONF ? resolv_conf : "", ares_strerror(rc));
		free(r);
		ares_library_cleanup();
		return NULL;
	}
	if (nameservers && *nameservers &&
	    (rc = ares_set_servers_ports_csv(r->channel, nameservers)) != ARES_SUCCESS) {
		snprintf(err, errlen, "dns_nameservers: c-ares refuses \"%s\": %s", nameservers,
			 ares_strerror(rc));
		ares_destroy(r->channel);
		free(r);
		ares_library_cleanup();
		return NULL;
	}
	r->timer = evtimer_new(base, on_timeout, r);
	return r;
}

void dns_free(struct dns_resolver *r)
{
	if (!r)
		return;
	/* lookups in flight end here with ARES_EDESTRUCTION; their waiters are not called */
	ares_destroy(r->channel);
	while (r->socks) {
		struct dns_sock *s = r->socks;
		r->socks = s->next;
		event_free(s->ev);
		free(s);
	}
	struct list *pos, *tmp, *wp, *wtmp;
	list_for_each_safe(pos, tmp, &r->entries)
	{
		struct dns_entry *e = container_of(pos, struct dns_entry, node);
		list_for_each_safe(wp, wtmp, &e->waiters)
			free(container_of(wp, struct dns_waiter, node));
		free(e->name);
		free(e);
	}
	list_for_each_safe(pos, tmp, &r->zones)
	{
		struct dns_zone *z = container_of(pos, struct dns_zone, node);
		free(z->name);
		free(z);
	}
	if (r->zone_timer)
		event_free(r->zone_timer);
	event_free(r->timer);
	free(r);
	ares_library_cleanup();
}

void dns_forget_waiter(struct dns_resolver *r, void *arg)
{
	struct list *pos, *wp, *wtmp;
	if (!r)
		return;
	list_for_each(pos, &r->entries)
	{
		struct dns_entry *e = container_of(pos, struct dns_entry, node);
		list_for_each_safe(wp, wtmp, &e->waiters)
		{
			struct dns_waiter *w = container_of(wp, struct dns_waiter, node);
			if (w->arg == arg) {
				list_remove(&w->node);
				free(w);
			}
		}
	}
}

void dns_set_ttls(struct dns_resolver *r, int64_t max_ttl, int64_t negative_ttl)
{
	r->max_ttl = max_ttl;
	r->negative_ttl = negative_ttl;
}

/* ---- the cache ---- */

/*
 * The floor of one second is what makes a TTL of 0 (common in service
 * discovery, and what /etc/hosts answers carry) usable: the callers that
 * waited for the answer take their addresses from the cache afterwards.
 */
int64_t dns_cache_lifetime(int ttl_seconds, int64_t max_ttl)
{
	int64_t life = (int64_t)(ttl_seconds > 0 ? ttl_seconds : 0) * 1000000;
	if (life > max_ttl)
		life = max_ttl;
	return life < 1000000 ? 1000000 : life;
}

static struct dns_entry *find_entry(struct dns_resolver *r, const char *name)
{
	struct list *pos;
	list_for_each(pos, &r->entries)
	{
		struct dns_entry *e = container_of(pos, struct dns_entry, node);
		if (strcasecmp(e->name, name) == 0)
			return e;
	}
	struct dns_entry *e = xcalloc(1, sizeof(*e));
	e->r = r;
	e->name = xstrdup(name);
	list_init(&e->waiters);
	list_append(&r->entries, &e->node);
	return e;
}

static bool address_in(const struct sockaddr_storage *a, const struct sockaddr_storage *set, int n)
{
	for (int i = 0; i < n; i++) {
		if (a->ss_family != set[i].ss_family)
			continue;
		if (a->ss_family == AF_INET &&
		    ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
			    ((const struct sockaddr_in *)&set[i])->sin_addr.s_addr)
			return true;
		if (a->ss_family == AF_INET6 &&
		    memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			   &((const struct sockaddr_in6 *)&set[i])->sin6_addr,
			   sizeof(struct in6_addr)) == 0)
			return true;
	}
	return false;
}

/* the same addresses, in any order: DNS servers rotate their answers */
static bool same_address_set(const struct sockaddr_storage *a, int na,
			     const struct sockaddr_storage *b, int nb)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (!address_in(&a[i], b, nb))
			return false;
	return true;
}

/* copy the IPv4 and IPv6 addresses of an answer; returns how many, *ttl the smallest TTL */
static int take_addresses(const struct ares_addrinfo *res, struct sockaddr_storage *out, int *ttl)
{
	int n = 0;
	*ttl = 0;
	for (const struct ares_addrinfo_node *node = res ? res->nodes : NULL;
	     node && n < DNS_MAX_ADDRS; node = node->ai_next) {
		if ((node->ai_family != AF_INET && node->ai_family != AF_INET6) ||
		    node->ai_addrlen > sizeof(struct sockaddr_storage))
			continue;
		if (address_in((const struct sockaddr_storage *)node->ai_addr, out, n))
			continue; /* one per address, whatever the socket types c-ares listed */
		memset(&out[n], 0, sizeof(out[n]));
		memcpy(&out[n], node->ai_addr, node->ai_addrlen);
		if (n == 0 || node->ai_ttl < *ttl)
			*ttl = node->ai_ttl;
		n++;
	}
	return n;
}

static void note_answer(struct dns_entry *e, const struct sockaddr_storage *addrs, int n, int ttl)
{
	struct dns_resolver *r = e->r;
	bool changed = e->have_answer && !same_address_set(addrs, n, e->addr, e->n_addrs);
	memcpy(e->addr, addrs, sizeof(*addrs) * (size_t)n);
	if (changed || !e->have_answer)
		e->next = 0;
	e->n_addrs = n;
	e->have_answer = true;
	e->state = ENTRY_READY;
	e->expires = now_usec() + dns_cache_lifetime(ttl, r->max_ttl);
	log_debug("dns: %s has %d address%s, kept %d s", e->name, n, n == 1 ? "" : "es",
		  (int)((e->expires - now_usec() + 500000) / 1000000));
	if (changed) {
		log_info("dns: the addresses of %s changed; server connections to the old ones "
			 "close as they are released",
			 e->name);
		if (r->on_change)
			r->on_change(e->name);
	}
}

/* "no such name" and "no address" are facts about the name: those are cached */
static void note_failure(struct dns_entry *e, int status)
{
	bool negative =
		status == ARES_ENOTFOUND || status == ARES_ENODATA || status == ARES_SUCCESS;
	str_copy(e->error,
		 status == ARES_SUCCESS ? "no IPv4 or IPv6 address" : ares_strerror(status),
		 sizeof(e->error));
	e->state = ENTRY_FAILED;
	e->expires = now_usec() + (negative ? e->r->negative_ttl : 0);
	log_warning("dns: could not resolve %s: %s", e->name, e->error);
}

/*
 * The waiters of this lookup are taken off the entry first: a waiter may
 * ask again (an uncached failure starts a new lookup), and whoever asks
 * during the calls waits for that new lookup, not for this one.
 */
static void notify_waiters(struct dns_entry *e)
{
	bool ok = e->state == ENTRY_READY;
	char error[sizeof(e->error)];
	struct list done, *first;
	str_copy(error, e->error, sizeof(error));
	list_init(&done);
	while ((first = list_first(&e->waiters))) {
		list_remove(first);
		list_append(&done, first);
	}
	while ((first = list_first(&done))) {
		struct dns_waiter *w = container_of(first, struct dns_waiter, node);
		list_remove(&w->node);
		dns_done_fn fn = w->fn;
		void *arg = w->arg;
		free(w);
		fn(arg, e->name, ok, ok ? NULL : error);
	}
}

static void on_lookup_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct dns_entry *e = arg;
	(void)timeouts;
	if (status == ARES_EDESTRUCTION) {
		if (res)
			ares_freeaddrinfo(res);
		return; /* dns_free: the entries go with the resolver */
	}
	e->r->pending--;
	struct sockaddr_storage addrs[DNS_MAX_ADDRS];
	int ttl, n = status == ARES_SUCCESS ? take_addresses(res, addrs, &ttl) : 0;
	if (res)
		ares_freeaddrinfo(res);
	if (n > 0)
		note_answer(e, addrs, n, ttl);
	else
		note_failure(e, status);
	notify_waiters(e);
}

static void start_lookup(struct dns_entry *e)
{
	struct dns_resolver *r = e->r;
	/* NOSORT: keep the DNS server's order, and no probing connects to sort by */
	struct ares_addrinfo_hints hints = { .ai_flags = ARES_AI_NOSORT,
					     .ai_family = AF_UNSPEC,
					     .ai_socktype = SOCK_STREAM };
	e->state = ENTRY_PENDING;
	r->pending++;
	log_debug("dns: looking up %s", e->name);
	/* may answer at once (e.g. from /etc/hosts): then the entry is no longer pending on return
	 */
	ares_getaddrinfo(r->channel, e->name, NULL, &hints, on_lookup_done, e);
	schedule_timeout(r);
}

static void add_waiter(struct dns_entry *e, dns_done_fn fn, void *arg)
{
	struct list *pos;
	list_for_each(pos, &e->waiters)
	{
		struct dns_waiter *w = container_of(pos, struct dns_waiter, node);
		if (w->fn == fn && w->arg == arg)
			return;
	}
	struct dns_waiter *w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	list_append(&e->waiters, &w->node);
}

static void set_port(struct sockaddr_storage *ss, socklen_t *len, int port)
{
	if (ss->ss_family == AF_INET) {
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
		*len = sizeof(struct sockaddr_in);
	} else {
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
		*len = sizeof(struct sockaddr_in6);
	}
}

enum dns_result dns_pick_address(struct dns_resolver *r, const char *host, int port,
				 struct sockaddr_storage *ss, socklen_t *len, char *error,
				 size_t errlen, dns_done_fn fn, void *arg)
{
	struct dns_entry *e = find_entry(r, host);
	bool fresh = now_usec() < e->expires;
	if (e->state != ENTRY_PENDING &&
	    !((e->state == ENTRY_READY || e->state == ENTRY_FAILED) && fresh))
		start_lookup(e);
	switch (e->state) {
	case ENTRY_READY:
		*ss = e->addr[e->next % (unsigned)e->n_addrs];
		e->next = (e->next + 1) % (unsigned)e->n_addrs;
		set_port(ss, len, port);
		return DNS_OK;
	case ENTRY_FAILED:
		str_copy(error, e->error, errlen);
		return DNS_FAILED;
	default:
		add_waiter(e, fn, arg);
		return DNS_PENDING;
	}
}

void dns_refresh(struct dns_resolver *r, const char *host)
{
	struct dns_entry *e = find_entry(r, host);
	if (e->state != ENTRY_PENDING && now_usec() >= e->expires)
		start_lookup(e);
}

/* ---- reporting ---- */

static void format_addresses(const struct dns_entry *e, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < e->n_addrs && used + INET6_ADDRSTRLEN + 2 < len; i++) {
		const void *a =
			e->addr[i].ss_family == AF_INET
				? (const void *)&((const struct sockaddr_in *)&e->addr[i])->sin_addr
				: (const void *)&((const struct sockaddr_in6 *)&e->addr[i])
					  ->sin6_addr;
		if (i)
			buf[used++] = ',';
		if (!inet_ntop(e->addr[i].ss_family, a, buf + used, (socklen_t)(len - used)))
			break;
		used += strlen(buf + used);
	}
}

void dns_for_each_host(struct dns_resolver *r,
		       void (*fn)(const struct dns_host_info *info, void *arg), void *arg)
{
	char addrs[DNS_MAX_ADDRS * (INET6_ADDRSTRLEN + 1) + 1];
	int64_t now = now_usec();
	struct list *pos;
	if (!r)
		return;
	list_for_each(pos, &r->entries)
	{
		const struct dns_entry *e = container_of(pos, struct dns_entry, node);
		bool ready = e->state == ENTRY_READY;
		struct dns_host_info info = {
			.hostname = e->name,
			.ttl = (e->state != ENTRY_PENDING && e->expires > now)
				       ? (e->expires - now + 999999) / 1000000
				       : 0,
			.addrs = addrs,
		};
		if (ready)
			format_addresses(e, addrs, sizeof(addrs));
		else
			addrs[0] = '\0';
		fn(&info, arg);
	}
}

int dns_address_count(struct dns_resolver *r, const char *host)
{
	struct dns_entry *e = find_entry(r, host);
	return e->state == ENTRY_READY ? e->n_addrs : 0;
}

int dns_name_count(const struct dns_resolver *r)
{
	return r ? list_count(&r->entries) : 0;
}

int dns_pending_count(const struct dns_resolver *r)
{
	return r ? r->pending : 0;
}

/* ---- zones: dns_zone_check_period ---- */

/* the zone of a name: what follows its first dot; NULL for a name with none */
static const char *zone_of(const char *name)
{
	const char *dot = strchr(name, '.');
	return dot && dot[1] ? dot + 1 : NULL;
}

static struct dns_zone *zone_find(struct dns_resolver *r, const char *name, bool make)
{
	struct list *pos;
	list_for_each(pos, &r->zones)
	{
		struct dns_zone *z = container_of(pos, struct dns_zone, node);
		if (strcasecmp(z->name, name) == 0)
			return z;
	}
	if (!make)
		return NULL;
	struct dns_zone *z = xcalloc(1, sizeof(*z));
	z->r = r;
	z->name = xstrdup(name);
	list_append(&r->zones, &z->node);
	return z;
}

/* the zone's serial moved: every name in it is looked up now, fresh or not */
static void look_up_zone_again(struct dns_zone *z)
{
	struct list *pos;
	list_for_each(pos, &z->r->entries)
	{
		struct dns_entry *e = container_of(pos, struct dns_entry, node);
		const char *zone = zone_of(e->name);
		if (!zone || strcasecmp(zone, z->name) != 0 || e->state == ENTRY_PENDING)
			continue;
		e->expires = 0;
		start_lookup(e);
	}
}

static void on_soa_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_zone *z = arg;
	struct ares_soa_reply *soa = NULL;
	(void)timeouts;
	if (status == ARES_EDESTRUCTION)
		return; /* dns_free: z is going */
	z->pending = false;
	if (status != ARES_SUCCESS || ares_parse_soa_reply(abuf, alen, &soa) != ARES_SUCCESS) {
		log_debug("dns: no SOA for zone %s: %s", z->name, ares_strerror(status));
		return;
	}
	uint32_t serial = soa->serial;
	ares_free_data(soa);
	bool moved = z->have_serial && serial != z->serial;
	if (moved)
		log_info("dns: zone %s serial changed %u -> %u: looking up its names again", z->name,
			 (unsigned)z->serial, (unsigned)serial);
	z->serial = serial;
	z->have_serial = true;
	if (moved)
		look_up_zone_again(z);
}

/* one round: a zone for every cached name, and an SOA query for every zone */
static void check_zones(struct dns_resolver *r)
{
	struct list *pos;
	list_for_each(pos, &r->entries)
	{
		const char *zone = zone_of(container_of(pos, struct dns_entry, node)->name);
		if (zone)
			zone_find(r, zone, true);
	}
	list_for_each(pos, &r->zones)
	{
		struct dns_zone *z = container_of(pos, struct dns_zone, node);
		if (z->pending)
			continue;
		z->pending = true;
		ares_query(r->channel, z->name, ns_c_in, ns_t_soa, on_soa_answer, z);
	}
	schedule_timeout(r);
}

static void on_zone_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	check_zones(arg);
}

void dns_set_zone_check_period(struct dns_resolver *r, int64_t period)
{
	if (!r || period == r->zone_check_period)
		return;
	r->zone_check_period = period;
	if (r->zone_timer) {
		event_free(r->zone_timer);
		r->zone_timer = NULL;
	}
	if (period <= 0)
		return;
	r->zone_timer = event_new(r->base, -1, EV_PERSIST, on_zone_timer, r);
	struct timeval tv = { (time_t)(period / 1000000), (suseconds_t)(period % 1000000) };
	event_add(r->zone_timer, &tv);
}

void dns_for_each_zone(struct dns_resolver *r, void (*fn)(const struct dns_zone_info *info, void *arg),
		       void *arg)
{
	struct list *pos, *ep;
	if (!r)
		return;
	list_for_each(pos, &r->zones)
	{
		const struct dns_zone *z = container_of(pos, struct dns_zone, node);
		int names = 0;
		list_for_each(ep, &r->entries)
		{
			const char *zone = zone_of(container_of(ep, struct dns_entry, node)->name);
			if (zone && strcasecmp(zone, z->name) == 0)
				names++;
		}
		struct dns_zone_info info = { .zonename = z->name,
					      .serial = z->have_serial ? (int64_t)z->serial : 0,
					      .count = names };
		fn(&info, arg);
	}
}
