/*
 * hosts: the registry of PostgreSQL hosts the [databases] entries name,
 * what is known of each (role, read-only, down, lag), and the pick of a
 * host for a new server connection by target_session_attrs.
 *
 * Nothing here touches a pool or a server: pool.c and server.c tell a
 * host what they learned (hosts_note_*), and read the verdict from
 * suits_mask, which every note keeps current so the assignment path
 * tests one bit.
 */
#include "hosts.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "host_stats.h"
#include "log.h"
#include "proto.h"
#include "worker.h"

/* libpq's words, by enum target_session_attrs */
static const char *const tsa_names[] = {
	[TSA_ANY] = "any",
	[TSA_READ_WRITE] = "read-write",
	[TSA_READ_ONLY] = "read-only",
	[TSA_PRIMARY] = "primary",
	[TSA_STANDBY] = "standby",
	[TSA_PREFER_STANDBY] = "prefer-standby",
};
#define TSA_COUNT ((int)(sizeof(tsa_names) / sizeof(tsa_names[0])))

bool hosts_tsa_parse(const char *word, enum target_session_attrs *out)
{
	for (int i = 0; i < TSA_COUNT; i++) {
		if (strcmp(word, tsa_names[i]) == 0) {
			*out = (enum target_session_attrs)i;
			return true;
		}
	}
	return false;
}

const char *hosts_tsa_name(enum target_session_attrs tsa)
{
	return (int)tsa >= 0 && (int)tsa < TSA_COUNT ? tsa_names[tsa] : "any";
}

const char *hosts_role_name(enum host_role role)
{
	switch (role) {
	case HOST_ROLE_PRIMARY: return "primary";
	case HOST_ROLE_STANDBY: return "standby";
	case HOST_ROLE_UNKNOWN: break;
	}
	return "unknown";
}

const char *hosts_state_name(const struct host *h)
{
	if (h->down)
		return "down";
	if (h->lagging)
		return "lagging";
	if (h->role == HOST_ROLE_UNKNOWN)
		return "unknown";
	return "up";
}

const char *hosts_label(const struct host *h, char *buf, size_t len)
{
	snprintf(buf, len, "%s:%d", h->name, h->port);
	return buf;
}

bool hosts_suits(const struct host *h, enum target_session_attrs tsa)
{
	if (h->role == HOST_ROLE_STANDBY && h->lagging)
		return false;
	switch (tsa) {
	case TSA_ANY:
		return true;
	case TSA_READ_WRITE:
		return h->role == HOST_ROLE_PRIMARY && !h->read_only;
	case TSA_READ_ONLY:
		return h->role == HOST_ROLE_STANDBY || (h->role == HOST_ROLE_PRIMARY && h->read_only);
	case TSA_PRIMARY:
		return h->role == HOST_ROLE_PRIMARY;
	case TSA_STANDBY:
		return h->role == HOST_ROLE_STANDBY;
	case TSA_PREFER_STANDBY:
		return h->role != HOST_ROLE_UNKNOWN;
	}
	return false;
}

static void refresh_mask(struct host *h)
{
	uint8_t mask = 0;
	for (int i = 0; i < TSA_COUNT; i++)
		if (hosts_suits(h, (enum target_session_attrs)i))
			mask |= (uint8_t)(1u << i);
	h->suits_mask = mask;
}

/* ---- the registry ---- */

void hosts_init(struct host *h, char *name, int port)
{
	memset(h, 0, sizeof(*h));
	list_init(&h->node);
	h->name = name;
	h->port = port;
	h->lag_usec = -1;
	h->lag_bytes = -1;
	refresh_mask(h);
}

struct host *hosts_ref(const char *name, int port)
{
	struct list *pos;
	list_for_each(pos, &worker->hosts)
	{
		struct host *h = container_of(pos, struct host, node);
		if (h->port == port && strcasecmp(h->name, name) == 0) {
			h->refs++;
			return h;
		}
	}
	struct host *h = xmalloc(sizeof(*h));
	hosts_init(h, xstrdup(name), port);
	h->refs = 1;
	list_append(&worker->hosts, &h->node);
	return h;
}

static void free_if_unused(struct host *h)
{
	if (h->refs > 0 || h->pins > 0)
		return;
	list_remove(&h->node);
	host_stats_free(h->tm);
	free(h->name);
	free(h);
}

void hosts_unref(struct host *h)
{
	if (!h)
		return;
	h->refs--;
	free_if_unused(h);
}

void hosts_pin(struct host *h)
{
	h->pins++;
}

void hosts_unpin(struct host *h)
{
	if (!h)
		return;
	h->pins--;
	free_if_unused(h);
}

/* ---- what servers learn ---- */

bool hosts_note_role(struct host *h, enum host_role role, int64_t now)
{
	enum host_role before = h->role;
	h->role_checked = now;
	if (role == before)
		return false;
	h->role = role;
	if (role != HOST_ROLE_STANDBY) {
		h->lagging = false; /* a promoted standby's lag verdict is moot */
		h->lag_usec = -1;
		h->lag_bytes = -1;
	}
	refresh_mask(h);
	if (before == HOST_ROLE_UNKNOWN)
		return false;
	h->role_changes++;
	h->sweep_due = true;
	log_info("host %s:%d: role changed from %s to %s", h->name, h->port, hosts_role_name(before),
		 hosts_role_name(role));
	return true;
}

void hosts_note_read_only(struct host *h, bool read_only)
{
	if (h->read_only == read_only)
		return;
	h->read_only = read_only;
	refresh_mask(h);
	if (h->role != HOST_ROLE_UNKNOWN)
		h->sweep_due = true; /* read-write entries no longer suit it, or read-only ones now do not */
}

void hosts_note_down(struct host *h, const char *why, int64_t now)
{
	if (!h->down)
		h->down_since = now;
	h->down = true;
	str_copy(h->last_error, why, sizeof(h->last_error));
}

void hosts_note_up(struct host *h)
{
	h->down = false;
	h->down_since = 0;
	h->refused_at = 0;
	h->last_error[0] = '\0';
}

void hosts_note_refused(struct host *h, const char *why, int64_t now)
{
	h->refused_at = now;
	str_copy(h->last_error, why, sizeof(h->last_error));
}

bool hosts_refused_lately(const struct host *h, int64_t now, int64_t within)
{
	return h->refused_at && now - h->refused_at < within;
}

/* ---- lag ---- */

bool hosts_parse_lsn(const char *text, uint64_t *lsn)
{
	char *end;
	if (!text || !*text)
		return false;
	unsigned long long hi = strtoull(text, &end, 16);
	if (end == text || *end != '/')
		return false;
	const char *lo_text = end + 1;
	unsigned long long lo = strtoull(lo_text, &end, 16);
	if (end == lo_text || *end || hi > UINT32_MAX || lo > UINT32_MAX)
		return false;
	*lsn = ((uint64_t)hi << 32) | (uint64_t)lo;
	return true;
}

/*
 * The newest LSN a primary of standby's cluster reported at its last
 * probe, 0 if none: another cluster's LSNs mean nothing to it, nor does a
 * down primary's (after a failover the new one writes on a new timeline).
 */
static uint64_t newest_primary_lsn(const struct host *standby)
{
	uint64_t newest = 0;
	struct list *pos;
	list_for_each(pos, &worker->hosts)
	{
		const struct host *h = container_of(pos, struct host, node);
		if (h->role == HOST_ROLE_PRIMARY && !h->down && h->cluster == standby->cluster && h->wal_lsn > newest)
			newest = h->wal_lsn;
	}
	return newest;
}

static void judge_lag(struct host *h, struct hosts_lag_limits lim)
{
	bool lagging = h->role == HOST_ROLE_STANDBY &&
		       ((lim.max_lag_usec > 0 && h->lag_usec > lim.max_lag_usec) ||
			(lim.max_lag_bytes > 0 && h->lag_bytes > lim.max_lag_bytes));
	if (lagging == h->lagging)
		return;
	h->lagging = lagging;
	refresh_mask(h);
	log_info("host %s:%d: %s (lag %" PRId64 " ms, %" PRId64 " bytes)", h->name, h->port,
		 lagging ? "lagging: no new assignments until it catches up" : "caught up", h->lag_usec / 1000,
		 h->lag_bytes);
}

void hosts_note_probe(struct host *h, bool in_recovery, uint64_t lsn, int64_t lag_usec, struct hosts_lag_limits lim,
		      int64_t now)
{
	hosts_note_role(h, in_recovery ? HOST_ROLE_STANDBY : HOST_ROLE_PRIMARY, now);
	h->lag_checked = now;
	h->wal_lsn = lsn;
	if (!in_recovery) {
		h->lag_usec = -1;
		h->lag_bytes = -1;
		return;
	}
	h->lag_usec = lag_usec;
	uint64_t primary = newest_primary_lsn(h);
	h->lag_bytes = primary && lsn ? (primary > lsn ? (int64_t)(primary - lsn) : 0) : -1;
	judge_lag(h, lim);
}

void hosts_apply_limits(struct hosts_lag_limits lim)
{
	struct list *pos;
	list_for_each(pos, &worker->hosts)
		judge_lag(container_of(pos, struct host, node), lim);
}

/* the next column of a DataRow as a C string in buf ("" and *null for NULL); false if malformed */
static bool next_column(struct pkt_reader *r, char *buf, size_t len, bool *null)
{
	int32_t n = (int32_t)pkt_get_u32(r);
	buf[0] = '\0';
	*null = n < 0;
	if (r->bad)
		return false;
	if (n < 0)
		return true;
	const uint8_t *bytes = (size_t)n < len ? pkt_get_bytes(r, (size_t)n) : NULL;
	if (!bytes)
		return false;
	memcpy(buf, bytes, (size_t)n);
	buf[n] = '\0';
	return true;
}

bool hosts_note_probe_row(struct host *h, const uint8_t *body, size_t len, struct hosts_lag_limits lim, int64_t now)
{
	char rec[8], lsn_text[40], lag_text[64], ro[8];
	bool rec_null, lsn_null, lag_null, ro_null;
	uint64_t lsn = 0;
	struct pkt_reader r;
	pkt_reader_init(&r, body, len);
	if (pkt_get_u16(&r) != 4 || !next_column(&r, rec, sizeof(rec), &rec_null) ||
	    !next_column(&r, lsn_text, sizeof(lsn_text), &lsn_null) ||
	    !next_column(&r, lag_text, sizeof(lag_text), &lag_null) || !next_column(&r, ro, sizeof(ro), &ro_null) ||
	    rec_null)
		return false;
	if (!lsn_null && !hosts_parse_lsn(lsn_text, &lsn))
		return false;
	int64_t lag_usec = -1;
	if (!lag_null) {
		char *end;
		double secs = strtod(lag_text, &end);
		if (end == lag_text || *end)
			return false;
		lag_usec = secs <= 0 ? 0 : (int64_t)(secs * 1e6);
	}
	hosts_note_probe(h, rec[0] == 't', lsn, lag_usec, lim, now);
	if (!ro_null)
		hosts_note_read_only(h, strcmp(ro, "on") == 0);
	return true;
}

/* ---- the pick ---- */

enum pick_pass { PASS_STANDBY_FIRST, PASS_SUITS, PASS_TRY_UNKNOWN };

static bool role_unsure(const struct host *h, int64_t now, int64_t stale_after)
{
	return h->role == HOST_ROLE_UNKNOWN || now - h->role_checked >= stale_after;
}

/*
 * A host no login has reached yet takes its turn with the hosts that suit:
 * its login tells whether it suits too, and the load spreads over every
 * host that does (a second standby is found while the first one serves).
 */
static bool never_seen(const struct host *h, int64_t now, int64_t stale_after)
{
	return h->role == HOST_ROLE_UNKNOWN && !h->lagging && !hosts_refused_lately(h, now, stale_after);
}

static bool passes(const struct host *h, enum target_session_attrs tsa, enum pick_pass pass, int64_t now,
		   int64_t stale_after)
{
	switch (pass) {
	case PASS_STANDBY_FIRST:
		return (h->role == HOST_ROLE_STANDBY && hosts_suits(h, tsa)) || never_seen(h, now, stale_after);
	case PASS_SUITS:
		return hosts_suits(h, tsa) || never_seen(h, now, stale_after);
	case PASS_TRY_UNKNOWN:
		return !h->lagging && role_unsure(h, now, stale_after) && !hosts_refused_lately(h, now, stale_after);
	}
	return false;
}

static int pick_in_pass(struct host *const *hosts, int n, enum target_session_attrs tsa, int start,
			enum pick_pass pass, bool want_down, int64_t now, int64_t stale_after)
{
	for (int k = 0; k < n; k++) {
		int i = (start + k) % n;
		const struct host *h = hosts[i];
		if (h->down == want_down && passes(h, tsa, pass, now, stale_after))
			return i;
	}
	return -1;
}

int hosts_pick(struct host *const *hosts, int n, enum target_session_attrs tsa, int start, int64_t now,
	       int64_t stale_after)
{
	/* prefer-standby: a host of unknown role may be the standby it prefers, so it is tried before a primary */
	static const enum pick_pass standby_first[] = { PASS_STANDBY_FIRST, PASS_TRY_UNKNOWN, PASS_SUITS };
	static const enum pick_pass plain[] = { PASS_SUITS, PASS_TRY_UNKNOWN };
	const enum pick_pass *order = tsa == TSA_PREFER_STANDBY ? standby_first : plain;
	int passes_n = tsa == TSA_PREFER_STANDBY ? 3 : 2;
	if (n <= 0)
		return -1;
	start = start < 0 ? 0 : start % n;
	for (int down = 0; down <= 1; down++)
		for (int k = 0; k < passes_n; k++) {
			int i = pick_in_pass(hosts, n, tsa, start, order[k], down, now, stale_after);
			if (i >= 0)
				return i;
		}
	return -1;
}
