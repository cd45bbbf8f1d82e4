/*
 * cancel: a CancelRequest's trip to PostgreSQL, on a connection of its own.
 *
 * Each cancel is one small object with one event: first it waits to write
 * the 16-byte CancelRequest (the connect finishes on the same event), then
 * it waits for PostgreSQL to close the connection, which the postmaster
 * does once it has signalled the backend. That close settles the cancel:
 * the server it was for may serve again, and the client that asked is
 * closed. A cancel that was never sent settles too (no signal can come);
 * one that was sent but not closed within cancel_wait_timeout does not,
 * and its server is closed when released rather than risk a late signal.
 *
 * With peering, the same object carries a CancelRequest whose key belongs
 * to another process of the group to that process (cancel_forward): it
 * has no server, and the peer's close — made once its own cancel has
 * landed, or at once if it had nothing to cancel — settles it the same way.
 */
#include "cancel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "dns.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "util.h"
#include "worker.h"

/* the least time a cancel connection gets, whatever cancel_wait_timeout says */
#define CANCEL_MIN_WAIT 1000000

struct cancel_req {
	struct list node;        /* worker->cancels */
	struct event ev;
	int fd;
	uint8_t msg[16];
	uint8_t sent;            /* bytes of msg written so far */
	int64_t deadline;        /* monotonic usec */
	struct server *server;   /* NULL once the server closed */
	struct pool *pool;       /* the server's, for SHOW POOLS; NULL with it */
	struct client *requester; /* NULL for query_timeout, or once it left */
	uint64_t server_id;      /* for logs */
	int peer_id;             /* a forward to this peer; 0 for a cancel to PostgreSQL */
	bool armed;              /* ev is assigned */
	bool resolving;          /* a forward waiting for its peer's host name (dns.c holds cr) */
	char host[256];          /* the peer's, while resolving: the cfg may be reloaded meanwhile */
	int port;
};

/* the one outcome the requester's log line calls a success, as PgBouncer's does */
static const char DELIVERED[] = "delivered";

static void finish(struct cancel_req *cr, bool settled, const char *how)
{
	if (cr->peer_id)
		log_debug("cancel request forwarded to peer %d: %s", cr->peer_id, how);
	else
		log_debug("cancel for S-%llu: %s", (unsigned long long)cr->server_id, how);
	if (cr->armed)
		event_del(&cr->ev);
	if (cr->resolving)
		dns_forget_waiter(worker->dns, cr);
	if (cr->fd >= 0)
		close(cr->fd);
	list_remove(&cr->node);
	struct server *s = cr->server;
	struct client *c = cr->requester;
	free(cr);
	if (c)
		client_cancel_done(c, how == DELIVERED ? NULL : how);
	if (s)
		server_cancel_finished(s, settled);
}

/* the time left before the deadline, for event_add */
static struct timeval *time_left(const struct cancel_req *cr, struct timeval *tv)
{
	int64_t left = cr->deadline - now_usec();
	if (left < 1000)
		left = 1000;
	tv->tv_sec = (time_t)(left / 1000000);
	tv->tv_usec = (suseconds_t)(left % 1000000);
	return tv;
}

static void on_cancel_event(evutil_socket_t fd, short what, void *arg);

static void wait_for(struct cancel_req *cr, short what)
{
	struct timeval tv;
	if (cr->armed)
		event_del(&cr->ev);
	event_assign(&cr->ev, worker->base, cr->fd, (short)(what | EV_PERSIST), on_cancel_event, cr);
	cr->armed = true;
	event_add(&cr->ev, time_left(cr, &tv));
}

static void write_request(struct cancel_req *cr)
{
	ssize_t n = send(cr->fd, cr->msg + cr->sent, sizeof(cr->msg) - cr->sent, MSG_NOSIGNAL);
	if (n > 0) {
		cr->sent = (uint8_t)(cr->sent + n);
		if (cr->sent == sizeof(cr->msg))
			wait_for(cr, EV_READ); /* now for PostgreSQL's close */
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	/* nothing reached the backend if nothing was written; a part of 16 bytes is no request either */
	finish(cr, true, "could not be sent");
}

static void on_cancel_event(evutil_socket_t fd, short what, void *arg)
{
	struct cancel_req *cr = arg;
	if (what & EV_TIMEOUT) {
		if (cr->peer_id)
			log_warning("cancel request forwarded to peer %d not settled within cancel_wait_timeout",
				    cr->peer_id);
		else
			log_warning("S-%llu: cancel request not settled within cancel_wait_timeout",
				    (unsigned long long)cr->server_id);
		finish(cr, cr->sent == 0, "timed out");
		return;
	}
	if (cr->sent < sizeof(cr->msg)) {
		write_request(cr);
		return;
	}
	uint8_t buf[64];
	ssize_t n = recv(fd, buf, sizeof(buf), 0);
	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
		return; /* PostgreSQL answers a cancel with nothing but the close */
	finish(cr, true, DELIVERED);
}

struct cancel_req *cancel_send(struct server *s, struct client *requester)
{
	/* to the address this server connected to: no lookup, and the right host of a list */
	int fd = socket(s->peer_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	if (connect(fd, (const struct sockaddr *)&s->peer_addr, s->peer_addr_len) < 0 && errno != EINPROGRESS) {
		log_debug("S-%llu: cancel connection failed: %s", (unsigned long long)s->id, strerror(errno));
		close(fd);
		return NULL;
	}
	struct cancel_req *cr = xcalloc(1, sizeof(*cr));
	cr->fd = fd;
	cr->server = s;
	cr->pool = s->pool;
	cr->requester = requester;
	cr->server_id = s->id;
	uint32_t words[4] = { htonl(16), htonl(PROTO_CANCEL), htonl(s->backend_pid), htonl(s->backend_key) };
	memcpy(cr->msg, words, sizeof(words));
	/* never unbounded: a cancel connection nobody closes would hold its server for ever */
	int64_t limit = worker->cfg->cancel_wait_timeout;
	cr->deadline = now_usec() + (limit > CANCEL_MIN_WAIT ? limit : CANCEL_MIN_WAIT);
	list_append(&worker->cancels, &cr->node);
	wait_for(cr, EV_WRITE);
	s->cancels_in_flight++;
	log_debug("S-%llu: cancel request on its way to backend %u", (unsigned long long)s->id, s->backend_pid);
	return cr;
}

/* a non-blocking connection to the address, or -1 */
static int open_connection(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)ss, len) < 0 && errno != EINPROGRESS) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* the forward's peer address is known: connect and wait to write */
static bool forward_connect(struct cancel_req *cr, const struct sockaddr_storage *ss, socklen_t len)
{
	cr->fd = open_connection(ss, len);
	if (cr->fd < 0) {
		log_debug("cancel request for peer %d: could not connect to %s:%d: %s", cr->peer_id, cr->host,
			  cr->port, strerror(errno));
		return false;
	}
	wait_for(cr, EV_WRITE);
	return true;
}

static void on_peer_resolved(void *arg, const char *host, bool ok, const char *error)
{
	struct cancel_req *cr = arg;
	struct sockaddr_storage ss;
	socklen_t len;
	char why[128];
	(void)host;
	cr->resolving = false;
	if (!ok) {
		log_debug("cancel request for peer %d: host \"%s\" did not resolve: %s", cr->peer_id, cr->host,
			  error);
		finish(cr, true, "not sent");
		return;
	}
	memset(&ss, 0, sizeof(ss));
	switch (dns_pick_address(worker->dns, cr->host, cr->port, &ss, &len, why, sizeof(why), on_peer_resolved, cr)) {
	case DNS_OK:
		if (!forward_connect(cr, &ss, len))
			finish(cr, true, "not sent");
		return;
	case DNS_PENDING:
		cr->resolving = true; /* looked up again already: wait for that one */
		return;
	case DNS_FAILED:
		break;
	}
	log_debug("cancel request for peer %d: host \"%s\" did not resolve: %s", cr->peer_id, cr->host, why);
	finish(cr, true, "not sent");
}

struct cancel_req *cancel_forward(const struct cfg_peer *peer, uint32_t pid, uint32_t key,
				  struct client *requester)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char why[128];
	if (strlen(peer->host) >= sizeof(((struct cancel_req *)0)->host))
		return NULL;
	struct cancel_req *cr = xcalloc(1, sizeof(*cr));
	cr->fd = -1;
	cr->requester = requester;
	cr->peer_id = peer->id;
	cr->port = peer->port;
	strcpy(cr->host, peer->host);
	uint32_t words[4] = { htonl(16), htonl(PROTO_CANCEL), htonl(pid), htonl(key) };
	memcpy(cr->msg, words, sizeof(words));
	int64_t limit = worker->cfg->cancel_wait_timeout;
	cr->deadline = now_usec() + (limit > CANCEL_MIN_WAIT ? limit : CANCEL_MIN_WAIT);
	list_append(&worker->cancels, &cr->node);

	bool started;
	if (server_address_without_lookup(cr->host, cr->port, &ss, &len)) {
		started = forward_connect(cr, &ss, len);
	} else {
		switch (dns_pick_address(worker->dns, cr->host, cr->port, &ss, &len, why, sizeof(why), on_peer_resolved,
					 cr)) {
		case DNS_OK:
			started = forward_connect(cr, &ss, len);
			break;
		case DNS_PENDING: {
			/* only the deadline until the answer comes */
			struct timeval tv;
			cr->resolving = true;
			event_assign(&cr->ev, worker->base, -1, 0, on_cancel_event, cr);
			cr->armed = true;
			event_add(&cr->ev, time_left(cr, &tv));
			started = true;
			break;
		}
		default:
			log_debug("cancel request for peer %d: host \"%s\" did not resolve: %s", cr->peer_id, cr->host,
				  why);
			started = false;
		}
	}
	if (!started) {
		cr->requester = NULL; /* the caller closes it */
		finish(cr, true, "not sent");
		return NULL;
	}
	log_debug("cancel request on its way to peer %d (%s:%d)", cr->peer_id, cr->host, cr->port);
	return cr;
}

void cancel_forget_server(struct server *s)
{
	struct list *pos;
	list_for_each(pos, &worker->cancels)
	{
		struct cancel_req *cr = container_of(pos, struct cancel_req, node);
		if (cr->server == s) {
			cr->server = NULL;
			cr->pool = NULL;
		}
	}
}

void cancel_forget_requester(struct cancel_req *cr)
{
	cr->requester = NULL;
}

void cancel_pool_counts(const struct pool *p, int *requesters, int *connections)
{
	*requesters = *connections = 0;
	struct list *pos;
	list_for_each(pos, &worker->cancels)
	{
		const struct cancel_req *cr = container_of(pos, struct cancel_req, node);
		if (cr->pool != p)
			continue;
		(*connections)++;
		if (cr->requester)
			(*requesters)++;
	}
}

void cancel_peer_counts(int peer_id, struct cancel_peer_counts *n)
{
	*n = (struct cancel_peer_counts){ 0 };
	struct list *pos;
	list_for_each(pos, &worker->cancels)
	{
		const struct cancel_req *cr = container_of(pos, struct cancel_req, node);
		if (cr->peer_id != peer_id || peer_id == 0)
			continue;
		bool sent = cr->sent == sizeof(cr->msg);
		if (cr->requester)
			(*(sent ? &n->active_requests : &n->waiting_requests))++;
		(*(sent ? &n->active_connections : &n->connecting))++;
	}
}

int cancel_count(void)
{
	return list_count(&worker->cancels);
}

void cancel_free_all(void)
{
	while (!list_empty(&worker->cancels)) {
		struct cancel_req *cr = container_of(list_first(&worker->cancels), struct cancel_req, node);
		cr->requester = NULL;
		cr->server = NULL;
		finish(cr, true, "pgpulse is exiting");
	}
}
