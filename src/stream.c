/*
 * stream: packet-aware, zero-copy forwarding between two sockets.
 *
 * The receive buffer holds three regions:
 *
 *   [0, spos)      free (already sent or consumed)
 *   [spos, rpos)   forwarded to the peer but not yet written to its socket
 *   [rpos, wpos)   received, not yet looked at
 *
 * Packets are judged one at a time at rpos. Forwarding a packet only moves
 * rpos; the bytes are written to the peer in one send() after the whole
 * batch is judged, so a burst of small packets costs one system call. If
 * the peer's socket is full, this stream stops reading and the peer's write
 * event resumes it: that is the backpressure that bounds memory.
 *
 * Objects are never freed under a running callback: stream_close() only
 * marks the stream dead and owners free it later, so every loop re-checks
 * `dead` after calling out.
 *
 * TLS changes only the two I/O calls (io_send, io_recv) and adds the
 * handshake, which owns the socket's events until it is done. A TLS read
 * can leave decrypted bytes inside the session when the buffer was full;
 * the socket will not signal them, so stream_start_reading re-fires the
 * read event itself while the session holds any.
 */
#include "stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "log.h"
#include "tls.h"
#include "util.h"

/* ---- buffer cache: idle connections hold no buffer ---- */

void stream_loop_init(struct stream_loop *l, struct event_base *base)
{
	memset(l, 0, sizeof(*l));
	l->base = base;
	l->buf_size = 8192;
	list_init(&l->streams);
	list_init(&l->resume_queue);
}

void stream_set_buffer_size(struct stream_loop *l, uint32_t size)
{
	if (size < 1024)
		size = 1024;
	if (size != l->buf_size) {
		stream_buffers_release(l);
		l->buf_size = size;
	}
}

void stream_buffer_stats(const struct stream_loop *l, int *used, int *free_count, uint32_t *size)
{
	*used = l->used_count;
	*free_count = l->free_count;
	*size = l->buf_size;
}

void stream_buffers_release(struct stream_loop *l)
{
	for (int i = 0; i < l->free_count; i++)
		free(l->free_bufs[i]);
	l->free_count = 0;
	free(l->free_bufs);
	l->free_bufs = NULL;
	l->free_cap = 0;
}

static void buffer_attach(struct stream *s)
{
	struct stream_loop *l = s->loop;
	if (l->free_count > 0)
		s->buf = l->free_bufs[--l->free_count];
	else
		s->buf = xmalloc(l->buf_size);
	s->cap = l->buf_size;
	s->spos = s->rpos = s->wpos = 0;
	l->used_count++;
}

/* oversized buffers (grown for one large packet) are not cached */
static void buffer_recycle(struct stream_loop *l, uint8_t *buf, uint32_t cap)
{
	if (cap == l->buf_size && l->free_count < 1024) {
		if (l->free_count == l->free_cap) {
			l->free_cap = l->free_cap ? l->free_cap * 2 : 64;
			l->free_bufs = xrealloc(l->free_bufs, sizeof(void *) * (size_t)l->free_cap);
		}
		l->free_bufs[l->free_count++] = buf;
	} else {
		free(buf);
	}
}

static void buffer_detach(struct stream *s)
{
	if (!s->buf)
		return;
	s->loop->used_count--;
	buffer_recycle(s->loop, s->buf, s->cap);
	s->buf = NULL;
	s->cap = s->spos = s->rpos = s->wpos = 0;
}

/* move pending and unread bytes to the front, making room to read */
static void buffer_compact(struct stream *s)
{
	if (s->spos == 0)
		return;
	uint32_t keep = s->wpos - s->spos;
	if (keep)
		memmove(s->buf, s->buf + s->spos, keep);
	s->rpos -= s->spos;
	s->wpos = keep;
	s->spos = 0;
}

/* make the buffer hold at least `need` bytes from spos on */
static bool buffer_grow(struct stream *s, uint32_t need)
{
	buffer_compact(s);
	if (need <= s->cap)
		return true;
	if (need > s->max_packet + 16u)
		return false;
	uint8_t *nb = xmalloc(need);
	memcpy(nb, s->buf, s->wpos);
	buffer_recycle(s->loop, s->buf, s->cap);
	s->buf = nb;
	s->cap = need;
	return true;
}

/* ---- events ---- */

static void on_socket_event(evutil_socket_t fd, short what, void *arg);
static void on_read_event(struct stream *s);
static void on_write_event(struct stream *s);
static void stream_process(struct stream *s);
static void tls_free_session(struct stream *s);
static void refire_for_decrypted_bytes(struct stream *s);
static void run_resumes(struct stream_loop *l);

void stream_init(struct stream *s, struct stream_loop *loop, int fd, const struct stream_ops *ops, void *owner)
{
	memset(s, 0, sizeof(*s));
	list_append(&loop->streams, &s->all_node);
	list_init(&s->resume_node);
	s->fd = fd;
	s->ops = ops;
	s->owner = owner;
	s->max_packet = 0x7fffffff;
	pktbuf_init(&s->out);
	s->loop = loop;
}

/*
 * One struct event (128 bytes) per socket rather than one per direction:
 * it is most of what an idle client costs. Interest changes are rare in
 * steady traffic (writes wait only when a peer is full), so re-assigning
 * the event's flags then is cheap.
 */
static void set_interest(struct stream *s, bool read, bool write)
{
	if (read == s->read_on && write == s->write_on)
		return;
	if (s->read_on || s->write_on)
		event_del(&s->ev);
	s->read_on = read;
	s->write_on = write;
	if (!read && !write)
		return;
	short what = (short)((read ? EV_READ : 0) | (write ? EV_WRITE : 0) | EV_PERSIST);
	event_assign(&s->ev, s->loop->base, s->fd, what, on_socket_event, s);
	event_add(&s->ev, NULL);
	/* event_del dropped a read re-fired for decrypted bytes, if one was queued */
	if (read && s->tls)
		refire_for_decrypted_bytes(s);
}

/* decrypted bytes wait inside the session: the socket will not signal them */
static void refire_for_decrypted_bytes(struct stream *s)
{
	if (!s->tls_handshake && SSL_pending(s->tls) > 0)
		event_active(&s->ev, EV_READ, 1);
}

void stream_start_reading(struct stream *s)
{
	if (s->read_on) { /* the usual case, once per batch of packets: keep it short */
		if (s->tls)
			refire_for_decrypted_bytes(s);
		return;
	}
	if ((s->loop->suspended && !s->never_suspend) || s->dead || s->connecting || s->tls_handshake ||
	    s->tls_answer_due)
		return;
	set_interest(s, true, s->write_on); /* re-fires for decrypted bytes itself */
}

void stream_stop_reading(struct stream *s)
{
	if (s->read_on)
		set_interest(s, false, s->write_on);
}

static void write_wanted(struct stream *s, bool on)
{
	if (s->tls_handshake)
		return; /* the handshake chooses the events it waits for */
	if (on && !s->write_on && !s->dead)
		set_interest(s, s->read_on, true);
	else if (!on && s->write_on)
		set_interest(s, s->read_on, false);
}

bool stream_connect(struct stream *s, const void *addr, unsigned addrlen)
{
	int rc = connect(s->fd, addr, addrlen);
	if (rc < 0 && errno != EINPROGRESS)
		return false;
	s->connecting = true;
	write_wanted(s, true);
	return true;
}

void stream_close(struct stream *s)
{
	if (s->dead)
		return;
	s->dead = true;
	list_remove(&s->all_node);
	list_remove(&s->resume_node);
	/* directly: the handshake's guard in write_wanted must not keep an event on a closed fd */
	set_interest(s, false, false);
	tls_free_session(s);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (s->peer && s->peer->blocked_src == s)
		s->peer->blocked_src = NULL;
	if (s->blocked_src) {
		/* whoever waited on us can no longer send; let it drop its bytes */
		struct stream *src = s->blocked_src;
		s->blocked_src = NULL;
		if (src->peer == s)
			src->peer = NULL;
		src->spos = src->rpos;
	}
	s->peer = NULL;
	buffer_detach(s);
	pktbuf_free(&s->out);
}

static void tls_free_session(struct stream *s)
{
	if (!s->tls)
		return;
	/* close_notify, best effort: the socket is non-blocking and about to close */
	if (!s->tls_failed && !s->tls_handshake) {
		ERR_clear_error();
		SSL_shutdown(s->tls);
	}
	ERR_clear_error();
	SSL_free(s->tls);
	s->tls = NULL;
}

void stream_set_peer(struct stream *s, struct stream *peer)
{
	s->peer = peer;
}

struct pktbuf *stream_out(struct stream *s)
{
	return &s->out;
}

bool stream_has_pending(const struct stream *s)
{
	return s->spos < s->rpos || s->fwd_left > 0;
}

bool stream_has_unread(const struct stream *s)
{
	return s->rpos < s->wpos;
}

/* ---- socket I/O, plaintext or TLS: send()/recv() results and errno ---- */

/*
 * A TLS call that moved no data, as send()/recv() would have said it.
 * With renegotiation off a write never waits for a read; a read can wait
 * for a write, though, when TLS 1.3 answers a KeyUpdate into a full
 * socket: the read is then retried on the write event (read_wants_write).
 */
static ssize_t tls_io_result(struct stream *s, int rc, bool reading)
{
	int saved = errno;
	switch (SSL_get_error(s->tls, rc)) {
	case SSL_ERROR_WANT_WRITE:
		if (reading) {
			s->tls_read_wants_write = true;
			write_wanted(s, true);
		}
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0; /* close_notify: the peer ended the session */
	case SSL_ERROR_SYSCALL:
		s->tls_failed = true;
		ERR_clear_error();
		errno = saved ? saved : ECONNRESET;
		return -1;
	default: {
		char why[256];
		s->tls_failed = true;
		tls_last_error(why, sizeof(why));
		log_debug("TLS error on fd %d: %s", s->fd, why);
		errno = EPROTO;
		return -1;
	}
	}
}

static ssize_t tls_send(struct stream *s, const void *buf, size_t len)
{
	size_t done = 0;
	ERR_clear_error();
	errno = 0;
	int rc = SSL_write_ex(s->tls, buf, len, &done);
	return rc == 1 ? (ssize_t)done : tls_io_result(s, rc, false);
}

static ssize_t tls_recv(struct stream *s, void *buf, size_t len)
{
	size_t got = 0;
	ERR_clear_error();
	errno = 0;
	int rc = SSL_read_ex(s->tls, buf, len, &got);
	return rc == 1 ? (ssize_t)got : tls_io_result(s, rc, true);
}

/* plaintext inline: the hot path pays one test for TLS */
static inline ssize_t io_send(struct stream *s, const void *buf, size_t len)
{
	return s->tls ? tls_send(s, buf, len) : send(s->fd, buf, len, MSG_NOSIGNAL);
}

static inline ssize_t io_recv(struct stream *s, void *buf, size_t len)
{
	return s->tls ? tls_recv(s, buf, len) : recv(s->fd, buf, len, 0);
}

/* send the socket's own queued messages; false when the socket failed */
static bool send_out_bytes(struct stream *s)
{
	while (s->out.len > 0) {
		ssize_t n = io_send(s, s->out.data, s->out.len);
		if (n > 0) {
			s->bytes_out += (uint64_t)n;
			pktbuf_consume(&s->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			write_wanted(s, true);
			return true;
		}
		return false;
	}
	/* an idle connection keeps no buffer: messages pgpulse writes itself are rare */
	pktbuf_free(&s->out);
	return true;
}

bool stream_send_out(struct stream *s)
{
	if (s->dead)
		return false;
	if (s->tls_handshake)
		return true; /* nothing may be written into a handshake; the messages wait */
	if (!send_out_bytes(s)) {
		s->ops->on_end(s, STREAM_ERROR);
		return false;
	}
	return true;
}

void stream_send_out_quietly(struct stream *s)
{
	if (!s->dead && !s->tls_handshake && s->out.len > 0)
		(void)send_out_bytes(s);
}

/*
 * Write [spos, rpos) to the peer. Returns true when all of it went out;
 * false when the peer is full (this stream then waits for it) or gone.
 */
static bool flush_forwarded(struct stream *s)
{
	struct stream *dst = s->peer;
	uint32_t start = s->spos;
	if (s->spos == s->rpos)
		return true;
	if (!dst || dst->dead) {
		s->spos = s->rpos; /* nobody to send to: the bytes are dropped */
		return true;
	}
	if (dst->out.len > 0) {
		if (!send_out_bytes(dst)) {
			dst->ops->on_end(dst, STREAM_ERROR);
			s->spos = s->rpos;
			return !s->dead;
		}
		if (dst->out.len > 0)
			goto blocked;
	}
	while (s->spos < s->rpos) {
		ssize_t n = io_send(dst, s->buf + s->spos, s->rpos - s->spos);
		if (n > 0) {
			s->spos += (uint32_t)n;
			dst->bytes_out += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			goto blocked;
		/* the peer's socket failed: it ends; what we held for it is moot */
		s->spos = s->rpos;
		dst->ops->on_end(dst, STREAM_ERROR);
		return !s->dead;
	}
	/* all sent: the peer is inside a packet only if its rest is still to arrive */
	s->sent_mid_packet = s->fwd_left > 0;
	return true;
blocked:
	if (s->spos != start)
		s->sent_mid_packet = true; /* a short write may have stopped inside a packet */
	dst->blocked_src = s;
	write_wanted(dst, true);
	stream_stop_reading(s);
	return false;
}

static bool is_blocked(const struct stream *s)
{
	return s->peer && s->peer->blocked_src == s;
}

/* read whatever the socket has, into the buffer; false when it ended */
static bool read_socket(struct stream *s)
{
	if (!s->buf)
		buffer_attach(s);
	if (s->wpos == s->cap)
		buffer_compact(s);
	if (s->wpos == s->cap)
		return true; /* full of a packet being waited for: grown elsewhere */
	for (;;) {
		ssize_t n = io_recv(s, s->buf + s->wpos, s->cap - s->wpos);
		if (n > 0) {
			s->wpos += (uint32_t)n;
			s->bytes_in += (uint64_t)n;
			/* a TLS read returns one record at most: take the rest of what it decrypted */
			if (s->tls && s->wpos < s->cap && SSL_pending(s->tls) > 0)
				continue;
			return true;
		}
		if (n == 0) {
			s->ops->on_end(s, STREAM_EOF);
			return false;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return true;
		s->ops->on_end(s, STREAM_ERROR);
		return false;
	}
}

/* the owner consumed the packet's first pkt->cut bytes: drop them, forward the rest (rare: kept apart) */
static __attribute__((noinline)) void forward_rest(struct stream *s, const struct pkt *pkt)
{
	uint32_t cut = pkt->cut <= pkt->avail ? pkt->cut : pkt->avail;
	if (s->spos == s->rpos) {
		s->rpos += cut;
		s->spos = s->rpos;
	} else {
		memmove(s->buf + s->rpos, s->buf + s->rpos + cut, s->wpos - s->rpos - cut);
		s->wpos -= cut;
	}
	uint32_t have = s->wpos - s->rpos, rest = pkt->len - cut;
	uint32_t take = have < rest ? have : rest;
	s->rpos += take;
	s->fwd_left = rest - take;
}

/* judge packets at rpos until the data runs out or the owner stops us */
static void judge_packets(struct stream *s)
{
	while (!s->dead && !s->paused && !is_blocked(s)) {
		uint32_t avail = s->wpos - s->rpos;
		if (s->fwd_left > 0) {
			uint32_t take = avail < s->fwd_left ? avail : s->fwd_left;
			s->rpos += take;
			s->fwd_left -= take;
			if (s->fwd_left > 0)
				return;
			continue;
		}
		uint32_t hdr = s->startup ? 4 : 5;
		if (avail < hdr)
			return;
		const uint8_t *p = s->buf + s->rpos;
		struct pkt pkt;
		uint32_t declared;
		if (s->startup) {
			pkt.type = 0;
			declared = proto_read_u32(p);
			pkt.len = declared;
		} else {
			pkt.type = p[0];
			declared = proto_read_u32(p + 1);
			pkt.len = declared + 1;
		}
		if (declared < 4 || declared > s->max_packet) {
			s->ops->on_end(s, declared < 4 ? STREAM_BAD_PACKET : STREAM_TOO_BIG);
			return;
		}
		pkt.complete = avail >= pkt.len; /* pkt.cut is read only after PKT_FORWARD_REST, which sets it */
		pkt.avail = pkt.complete ? pkt.len : avail;
		pkt.body = p + hdr;
		pkt.body_len = pkt.len - hdr;

		enum pkt_action act = s->ops->on_packet(s, &pkt);
		if (s->dead)
			return;
		switch (act) {
		case PKT_FORWARD:
		case PKT_FORWARD_LAST: {
			uint32_t take = avail < pkt.len ? avail : pkt.len;
			s->rpos += take;
			s->fwd_left = pkt.len - take;
			if (act == PKT_FORWARD_LAST) {
				s->paused = true;
				return;
			}
			break;
		}
		case PKT_NEED_FULL:
			if (pkt.complete) {
				log_error("stream: owner asked for a complete packet again");
				s->ops->on_end(s, STREAM_BAD_PACKET);
				return;
			}
			if ((s->rpos - s->spos) + pkt.len > s->cap) {
				if (!buffer_grow(s, (s->rpos - s->spos) + pkt.len)) {
					s->ops->on_end(s, STREAM_TOO_BIG);
					return;
				}
			}
			return;
		case PKT_CONSUMED:
			if (s->spos == s->rpos) {
				s->rpos += pkt.len;
				s->spos = s->rpos;
			} else {
				/* cut the packet out so the forwarded run stays contiguous */
				memmove(s->buf + s->rpos, s->buf + s->rpos + pkt.len, s->wpos - s->rpos - pkt.len);
				s->wpos -= pkt.len;
			}
			break;
		case PKT_FLUSH_FIRST:
			if (!flush_forwarded(s))
				return;
			break;
		case PKT_PAUSE:
			s->paused = true;
			return;
		case PKT_GONE:
			return;
		case PKT_FORWARD_REST:
			forward_rest(s, &pkt);
			break;
		}
	}
}

static void stream_process(struct stream *s)
{
	if (s->in_process || s->dead)
		return;
	s->in_process = true;
	for (;;) {
		judge_packets(s);
		if (s->dead || !flush_forwarded(s) || s->dead)
			break; /* when the peer was full, its write event brings us back */
		if (s->spos != s->rpos || !s->ops->on_flushed)
			break;
		bool was_paused = s->paused;
		s->ops->on_flushed(s);
		/* the owner may have resumed us in on_flushed: judge what is left */
		if (s->dead || !was_paused || s->paused)
			break;
	}
	s->in_process = false;
	if (s->dead)
		return;
	if (s->spos == s->rpos) {
		if (s->rpos == s->wpos)
			buffer_detach(s);
		else if (s->wpos == s->cap)
			buffer_compact(s);
	}
	if (is_blocked(s))
		return;
	if (s->paused && s->buf && s->wpos == s->cap)
		stream_stop_reading(s); /* nowhere to put more until resumed */
	else
		stream_start_reading(s);
}

static bool is_blocked(const struct stream *s);

void stream_set_suspended(struct stream_loop *l, bool suspended)
{
	struct list *pos;
	l->suspended = suspended;
	list_for_each(pos, &l->streams)
	{
		struct stream *s = container_of(pos, struct stream, all_node);
		/* a handshake or an SSLRequest answer carries no client data: let it finish */
		if (s->never_suspend || s->tls_handshake || s->tls_answer_due)
			continue;
		if (suspended)
			stream_stop_reading(s);
		else if (!is_blocked(s))
			stream_start_reading(s);
	}
}

static bool holds_unwritten(const struct stream *s)
{
	return !s->never_suspend && (s->spos < s->rpos || s->out.len > 0);
}

int stream_pending_count(const struct stream_loop *l)
{
	int n = 0;
	struct list *pos;
	list_for_each(pos, &l->streams)
		n += holds_unwritten(container_of(pos, struct stream, all_node));
	return n;
}

int stream_close_unflushed(struct stream_loop *l)
{
	int n = 0;
	/* closing one stream may close its peer too: rescan after each */
	for (bool again = true; again;) {
		again = false;
		struct list *pos;
		list_for_each(pos, &l->streams)
		{
			struct stream *s = container_of(pos, struct stream, all_node);
			if (holds_unwritten(s)) {
				n++;
				s->ops->on_end(s, STREAM_ERROR);
				again = true;
				break;
			}
		}
	}
	return n;
}

/* ---- resumes, run from the loop ---- */

static void run_resumes(struct stream_loop *l)
{
	while (!list_empty(&l->resume_queue)) {
		struct stream *s = container_of(list_first(&l->resume_queue), struct stream, resume_node);
		list_remove(&s->resume_node);
		stream_process(s);
	}
}

static void run_queued_resumes(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	run_resumes(arg);
}

void stream_resume(struct stream *s)
{
	if (s->dead)
		return;
	s->paused = false;
	if (s->in_process || list_linked(&s->resume_node))
		return; /* the running loop, or the queued run, sees it */
	struct stream_loop *l = s->loop;
	list_append(&l->resume_queue, &s->resume_node);
	if (l->in_socket_event)
		return; /* on_socket_event runs the queue when the event's work is done */
	if (!l->resume_ev)
		l->resume_ev = event_new(l->base, -1, 0, run_queued_resumes, l);
	event_active(l->resume_ev, 0, 0);
}

void stream_resume_when_sent(struct stream *s)
{
	/* the write event comes even when `out` has emptied meanwhile */
	s->resume_when_sent = true;
	write_wanted(s, true);
}

void stream_wait_for_peer_out(struct stream *s)
{
	struct stream *dst = s->peer;
	if (!dst || dst->dead)
		return;
	/* the peer's write event flushes its out, then resumes us as any blocked source */
	dst->blocked_src = s;
	write_wanted(dst, true);
	stream_stop_reading(s);
}

void stream_loop_free(struct stream_loop *l)
{
	stream_buffers_release(l);
	if (l->resume_ev)
		event_free(l->resume_ev);
	l->resume_ev = NULL;
}

/* ---- TLS: the SSLRequest answer and the handshake ---- */

void stream_request_tls(struct stream *s)
{
	struct pktbuf *out = stream_out(s);
	pkt_begin(out, 0);
	pkt_put_u32(out, PROTO_SSL);
	pkt_end(out);
	if (!stream_send_out(s))
		return;
	s->tls_answer_due = true;
	set_interest(s, true, s->write_on);
}

/* one byte, and not one more: what follows 'S' is the server's handshake */
static void read_tls_answer(struct stream *s)
{
	uint8_t answer;
	for (;;) {
		ssize_t n = recv(s->fd, &answer, 1, 0);
		if (n == 1)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		s->ops->on_end(s, n == 0 ? STREAM_EOF : STREAM_ERROR);
		return;
	}
	s->tls_answer_due = false;
	set_interest(s, false, s->write_on);
	s->ops->on_tls_answer(s, answer);
}

static void handshake_failure(struct stream *s, int ssl_error, char *why, size_t len)
{
	/* an unchecked certificate (prefer, require) has a verify result too: not the cause */
	long verify = (SSL_get_verify_mode(s->tls) & SSL_VERIFY_PEER) ? SSL_get_verify_result(s->tls) : X509_V_OK;
	if (verify != X509_V_OK) {
		snprintf(why, len, "certificate verification failed: %s", X509_verify_cert_error_string(verify));
		ERR_clear_error();
	} else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) {
		snprintf(why, len, "%s", TLS_CLOSED_BY_PEER);
		ERR_clear_error();
	} else {
		tls_last_error(why, len);
	}
}

static void drive_handshake(struct stream *s)
{
	ERR_clear_error();
	int rc = SSL_do_handshake(s->tls);
	if (rc == 1) {
		s->tls_handshake = false;
		set_interest(s, false, false);
		s->ops->on_tls_done(s, NULL);
		return;
	}
	int e = SSL_get_error(s->tls, rc);
	if (e == SSL_ERROR_WANT_READ) {
		set_interest(s, true, false);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		set_interest(s, false, true);
		return;
	}
	char why[300];
	handshake_failure(s, e, why, sizeof(why));
	s->tls_failed = true;
	s->ops->on_tls_done(s, why);
}

void stream_start_tls(struct stream *s, SSL *ssl)
{
	s->tls = ssl;
	s->tls_handshake = true;
	drive_handshake(s);
}

/* the TLS states that take the socket's event; true when it was handled */
static bool tls_takes_event(struct stream *s, short *what)
{
	if (s->tls_handshake) {
		drive_handshake(s);
		return true;
	}
	if (s->tls_answer_due && (*what & EV_READ)) {
		read_tls_answer(s);
		return true;
	}
	if ((*what & EV_WRITE) && s->tls_read_wants_write) {
		s->tls_read_wants_write = false;
		*what |= EV_READ; /* the writable socket is what the read waited for */
	}
	return false;
}

/* a writable socket first: draining it may let this stream read again */
static void handle_socket_event(struct stream *s, short what)
{
	/* a handshake sets s->tls, an SSLRequest answer comes before it */
	if ((s->tls || s->tls_answer_due) && tls_takes_event(s, &what))
		return;
	if (what & EV_WRITE) {
		on_write_event(s);
		if (s->dead)
			return;
	}
	if ((what & EV_READ) && s->read_on)
		on_read_event(s);
}

/*
 * Resumes asked for during a socket's event run when the event's work is
 * done, before control returns to libevent: the callbacks that asked have
 * unwound, and the hand-off to a waiting client costs no trip through the
 * loop's active queue.
 */
static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct stream *s = arg;
	struct stream_loop *l = s->loop;
	(void)fd;
	l->in_socket_event = true;
	handle_socket_event(s, what);
	l->in_socket_event = false;
	run_resumes(l);
}

void stream_read_now(struct stream *s)
{
	if (s->read_on && !s->dead)
		on_socket_event(s->fd, EV_READ, s);
}

static void on_read_event(struct stream *s)
{
	if (s->paused && s->buf && s->wpos == s->cap) {
		stream_stop_reading(s);
		return;
	}
	if (!read_socket(s))
		return;
	if (s->paused) {
		/* keep the bytes; the owner resumes us. An EOF shows up on the next read. */
		if (s->wpos == s->cap)
			stream_stop_reading(s);
		return;
	}
	stream_process(s);
}

static void finish_connect(struct stream *s)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	s->connecting = false;
	write_wanted(s, false);
	if (s->ops->on_connected)
		s->ops->on_connected(s, err);
}

static void on_write_event(struct stream *s)
{
	if (s->connecting) {
		finish_connect(s);
		return;
	}
	if (!send_out_bytes(s)) {
		s->ops->on_end(s, STREAM_ERROR);
		return;
	}
	if (s->out.len > 0)
		return;
	if (s->resume_when_sent) {
		s->resume_when_sent = false;
		stream_resume(s);
	}
	struct stream *src = s->blocked_src;
	if (!src) {
		write_wanted(s, false);
		return;
	}
	s->blocked_src = NULL;
	if (!flush_forwarded(src))
		return; /* still full: flush_forwarded re-registered us */
	write_wanted(s, false);
	if (src->dead)
		return;
	stream_process(src);
}
