/*
 * telemetry: per-pool latency series (see include/telemetry.h).
 */
#include "telemetry.h"

#include <stdlib.h>

#include "util.h"

bool telemetry_enabled = true;
int64_t telemetry_held_now;

static const char *const kind_names[TK_COUNT] = { "query",   "xact",  "wait",       "server",
						  "connect", "login", "login_auth", "login_wait" };

const char *telemetry_kind_name(enum telemetry_kind k)
{
	return (k >= 0 && k < TK_COUNT) ? kind_names[k] : "?";
}

struct pool_telemetry *telemetry_new(int64_t now)
{
	struct pool_telemetry *t = xmalloc(sizeof(*t));
	for (int k = 0; k < TK_COUNT; k++)
		series_init(&t->kinds[k], now);
	eff_init(&t->eff, now);
	t->logins = (struct login_counts){ 0 };
	return t;
}

void telemetry_free(struct pool_telemetry *t)
{
	if (!t)
		return;
	for (int k = 0; k < TK_COUNT; k++)
		series_free(&t->kinds[k]);
	free(t);
}

void telemetry_restart_clock(struct pool_telemetry *t, int64_t now)
{
	t->eff.since = now;
}

void telemetry_rotate(struct pool_telemetry *t, int64_t now)
{
	for (int k = 0; k < TK_COUNT; k++)
		series_rotate(&t->kinds[k], now);
	if (telemetry_enabled)
		eff_rotate(&t->eff, now);
}

size_t telemetry_bytes(const struct pool_telemetry *t)
{
	size_t n = sizeof(*t);
	for (int k = 0; k < TK_COUNT; k++)
		n += series_heap_bytes(&t->kinds[k]);
	return n;
}
