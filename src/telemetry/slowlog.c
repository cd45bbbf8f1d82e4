/*
 * slowlog: a ring of the latest slow requests (see include/slowlog.h).
 *
 * The ring follows slow_query_log_size as it is changed: on the next entry
 * it is rebuilt at the new size, keeping the newest entries that fit.
 */
#include "slowlog.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "util.h"
#include "worker.h"

static struct slow_entry *g_ring;
static int g_cap, g_head, g_count; /* g_head: where the next entry goes */

static void free_entry(struct slow_entry *e)
{
	free(e->query);
	e->query = NULL;
}

/* the i-th newest entry (0 = newest) */
static struct slow_entry *nth_newest(int i)
{
	return &g_ring[(g_head - 1 - i + 2 * g_cap) % g_cap];
}

static void resize(int cap)
{
	struct slow_entry *ring = cap ? xcalloc((size_t)cap, sizeof(*ring)) : NULL;
	int keep = g_count < cap ? g_count : cap;
	/* oldest kept first, so the newest ends just before head */
	for (int i = 0; i < keep; i++) {
		struct slow_entry *src = nth_newest(keep - 1 - i);
		ring[i] = *src;
		src->query = NULL;
	}
	for (int i = 0; i < g_cap; i++)
		free_entry(&g_ring[i]);
	free(g_ring);
	g_ring = ring;
	g_cap = cap;
	g_count = keep;
	g_head = cap ? keep % cap : 0;
}

void slowlog_add(const char *database, const char *user, const char *client_addr, uint64_t duration_us,
		 uint64_t wait_us, const char *query)
{
	char d[32], w[32];
	log_warning("slow query: %s/%s %s: %s s (waited %s s): %s", database, user, client_addr,
		    usec_to_seconds_text((int64_t)duration_us, d, sizeof(d)),
		    usec_to_seconds_text((int64_t)wait_us, w, sizeof(w)), query);
	int want = worker->cfg->slow_query_log_size;
	if (want != g_cap)
		resize(want);
	if (!g_cap)
		return;
	struct slow_entry *e = &g_ring[g_head];
	free_entry(e);
	e->wall_usec = wall_usec();
	str_copy(e->database, database, sizeof(e->database));
	str_copy(e->user, user, sizeof(e->user));
	str_copy(e->client_addr, client_addr, sizeof(e->client_addr));
	e->duration_us = duration_us;
	e->wait_us = wait_us;
	e->query = xstrdup(query);
	g_head = (g_head + 1) % g_cap;
	if (g_count < g_cap)
		g_count++;
}

void slowlog_for_each(void (*fn)(const struct slow_entry *e, void *arg), void *arg)
{
	for (int i = 0; i < g_count; i++)
		fn(nth_newest(i), arg);
}

size_t slowlog_bytes(void)
{
	size_t n = (size_t)g_cap * sizeof(struct slow_entry);
	for (int i = 0; i < g_count; i++)
		n += strlen(nth_newest(i)->query) + 1;
	return n;
}

void slowlog_free(void)
{
	resize(0);
}
