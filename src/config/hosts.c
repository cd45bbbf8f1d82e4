/*
 * config/hosts: host lists, host=a,b,c with port=p or port=p1,p2,p3 (a
 * [databases] entry), split into a struct cfg_hosts of names paired with
 * ports, and copied, compared and freed whole for the pools.
 *
 * One port serves every host, or there is one per host in order; any other
 * count is refused, naming both counts, rather than guessed at. Each port is
 * read by the same parse_port that checks a port= key (config/load.c).
 */
#include "config_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ------------------------------------------------------------------------
 * Host lists: host=a,b,c with port=p or port=p1,p2,p3
 * ------------------------------------------------------------------------ */

/* the next comma-separated item of list, blanks around it trimmed; NULL at the end */
static const char *next_item(const char **list, size_t *len)
{
	const char *p = *list, *end;
	if (!p)
		return NULL;
	while (*p == ' ' || *p == '\t')
		p++;
	end = p + strcspn(p, ",");
	*list = *end ? end + 1 : NULL;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*len = (size_t)(end - p);
	return p;
}

static bool split_host_names(const char *host, struct cfg_hosts *out, char *why, size_t whylen)
{
	const char *list = host, *item;
	size_t len;
	while ((item = next_item(&list, &len))) {
		if (len == 0) {
			snprintf(why, whylen, "host: \"%s\" has an empty host name", host);
			return false;
		}
		if (out->count == CFG_MAX_HOSTS) {
			snprintf(why, whylen, "host: more than %d hosts", CFG_MAX_HOSTS);
			return false;
		}
		if (!(out->name[out->count] = strndup(item, len))) {
			snprintf(why, whylen, "out of memory");
			return false;
		}
		out->count++;
	}
	return true;
}

static bool pair_ports(const char *port, struct cfg_hosts *out, char *why, size_t whylen)
{
	const char *list = port, *item;
	char text[32];
	size_t len;
	int n = 0, ports[CFG_MAX_HOSTS + 1];

	while ((item = next_item(&list, &len))) {
		if (n == CFG_MAX_HOSTS + 1 || len == 0 || len >= sizeof(text))
			break;
		memcpy(text, item, len);
		text[len] = '\0';
		if (!parse_port(text, &ports[n], why, whylen))
			return false;
		n++;
	}
	if (n != 1 && n != out->count) {
		snprintf(why, whylen, "port: %s lists %d ports for %d hosts (give one port for all, or one per host)",
			 port, n, out->count);
		return false;
	}
	for (int i = 0; i < out->count; i++)
		out->port[i] = ports[n == 1 ? 0 : i];
	return true;
}

bool cfg_hosts_parse(const char *host, const char *port_list, int port, struct cfg_hosts *out, char *why,
		     size_t whylen)
{
	memset(out, 0, sizeof(*out));
	if (!host || !*host)
		return true;
	if (!split_host_names(host, out, why, whylen) || (port_list && !pair_ports(port_list, out, why, whylen))) {
		cfg_hosts_free(out);
		return false;
	}
	if (!port_list)
		for (int i = 0; i < out->count; i++)
			out->port[i] = port;
	return true;
}

void cfg_hosts_copy(struct cfg_hosts *dst, const struct cfg_hosts *src)
{
	memset(dst, 0, sizeof(*dst));
	for (int i = 0; i < src->count; i++) {
		dst->name[i] = xstrdup(src->name[i]);
		dst->port[i] = src->port[i];
	}
	dst->count = src->count;
}

bool cfg_hosts_equal(const struct cfg_hosts *a, const struct cfg_hosts *b)
{
	if (a->count != b->count)
		return false;
	for (int i = 0; i < a->count; i++)
		if (strcmp(a->name[i], b->name[i]) != 0 || a->port[i] != b->port[i])
			return false;
	return true;
}

void cfg_hosts_free(struct cfg_hosts *h)
{
	for (int i = 0; i < h->count; i++)
		free(h->name[i]);
	memset(h, 0, sizeof(*h));
}
