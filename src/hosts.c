/*
 * hosts: SCAFFOLD for hosts-show's branch only, dropped at merge (hosts-core
 * writes the real module). The registry and the names SHOW HOSTS and
 * /metrics print; no roles, no probe, no picking.
 */
#include "hosts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host_stats.h"
#include "worker.h"

struct host *hosts_ref(const char *name, int port)
{
	struct list *pos;
	if (!name)
		name = "";
	list_for_each(pos, &worker->hosts)
	{
		struct host *h = container_of(pos, struct host, node);
		if (h->port == port && strcmp(h->name, name) == 0) {
			h->refs++;
			return h;
		}
	}
	struct host *h = xcalloc(1, sizeof(*h));
	h->name = xstrdup(name);
	h->port = port;
	h->refs = 1;
	h->lag_usec = -1;
	h->lag_bytes = -1;
	list_append(&worker->hosts, &h->node);
	return h;
}

void hosts_unref(struct host *h)
{
	if (!h || --h->refs > 0)
		return;
	list_remove(&h->node);
	host_stats_free(h->tm);
	free(h->name);
	free(h);
}

static const char *const tsa_names[] = {
	[TSA_ANY] = "any",         [TSA_READ_WRITE] = "read-write", [TSA_READ_ONLY] = "read-only",
	[TSA_PRIMARY] = "primary", [TSA_STANDBY] = "standby",       [TSA_PREFER_STANDBY] = "prefer-standby",
};

bool hosts_tsa_parse(const char *word, enum target_session_attrs *out)
{
	for (size_t i = 0; i < sizeof(tsa_names) / sizeof(tsa_names[0]); i++) {
		if (strcmp(word, tsa_names[i]) == 0) {
			*out = (enum target_session_attrs)i;
			return true;
		}
	}
	return false;
}

const char *hosts_tsa_name(enum target_session_attrs tsa)
{
	return (unsigned)tsa < sizeof(tsa_names) / sizeof(tsa_names[0]) ? tsa_names[tsa] : "any";
}

const char *hosts_role_name(enum host_role role)
{
	switch (role) {
	case HOST_ROLE_PRIMARY:
		return "primary";
	case HOST_ROLE_STANDBY:
		return "standby";
	case HOST_ROLE_UNKNOWN:
		break;
	}
	return "unknown";
}

const char *hosts_state_name(const struct host *h)
{
	if (h->down)
		return "down";
	if (h->lagging)
		return "lagging";
	return h->role == HOST_ROLE_UNKNOWN ? "unknown" : "up";
}

const char *hosts_label(const struct host *h, char *buf, size_t len)
{
	snprintf(buf, len, "%s:%d", h->name, h->port);
	return buf;
}

bool hosts_suits(const struct host *h, enum target_session_attrs tsa)
{
	(void)h;
	(void)tsa;
	return true;
}
