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
};

static void finish(struct cancel_req *cr, bool settled, const char *how)
{
	log_debug("cancel for S-%llu: %s", (unsigned long long)cr->server_id, how);
	event_del(&cr->ev);
	close(cr->fd);
	list_remove(&cr->node);
	struct server *s = cr->server;
	struct client *c = cr->requester;
	free(cr);
	if (c)
		client_cancel_done(c);
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
	event_del(&cr->ev);
	event_assign(&cr->ev, worker->base, cr->fd, (short)(what | EV_PERSIST), on_cancel_event, cr);
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
	finish(cr, true, "delivered");
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
	event_assign(&cr->ev, worker->base, fd, EV_WRITE | EV_PERSIST, on_cancel_event, cr);
	struct timeval tv;
	event_add(&cr->ev, time_left(cr, &tv));
	s->cancels_in_flight++;
	log_debug("S-%llu: cancel request on its way to backend %u", (unsigned long long)s->id, s->backend_pid);
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
