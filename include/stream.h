/*
 * stream: a non-blocking socket that reads PostgreSQL packets into a
 * buffer and forwards them, without copying, to a peer stream.
 *
 * The owner (client or server) decides per packet: forward it to the peer,
 * consume it, wait for the rest of it, or pause. Forwarded bytes are sent
 * straight from the receive buffer; when the peer's socket is full the
 * stream stops reading (backpressure) until the peer drains, so memory per
 * connection stays bounded whatever the size of a result. A large packet is
 * forwarded in pieces as it arrives; only consumed packets must fit whole.
 *
 * Receive buffers come from a shared free list and go back to it whenever
 * a stream has nothing buffered, so an idle connection holds no buffer.
 *
 * A stream may carry TLS: after stream_start_tls() the handshake runs on
 * the socket's events, and from then on every byte goes through the
 * session; owners see the same packets either way.
 */
#ifndef PGPULSE_STREAM_H
#define PGPULSE_STREAM_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "proto.h"
#include "util.h"

struct stream;

/*
 * What the streams of one event loop share: the event base, the cache of
 * receive buffers, the list of open streams (SUSPEND), and the queue of
 * resumes the loop runs once the current callbacks have unwound. One per
 * worker; nothing of it is a global, so several loops can run side by side.
 */
struct stream_loop {
	struct event_base *base;
	struct list streams;      /* every open stream */
	struct list resume_queue; /* streams to process next (stream_resume) */
	struct event *resume_ev;  /* runs the queue; made at the first resume */
	bool suspended;           /* SUSPEND: no stream reads */
	bool in_socket_event;     /* a stream's socket event is running: resumes wait for its end */
	uint32_t buf_size;        /* pkt_buf */
	void **free_bufs;         /* receive buffers not in use */
	int free_count, free_cap, used_count;
};

/* a packet as the owner sees it */
struct pkt {
	uint8_t type;        /* 0 for a startup-phase packet */
	uint32_t len;        /* whole packet, header included */
	const uint8_t *body; /* body start (valid when complete) */
	uint32_t body_len;
	bool complete;       /* the whole packet is in the buffer */
	uint32_t avail;      /* bytes of it in the buffer, header included */
	uint32_t cut;        /* PKT_FORWARD_REST: the leading bytes the owner consumed (<= avail) */
};

enum pkt_action {
	PKT_FORWARD,     /* send it to the peer (in pieces if large) */
	PKT_FORWARD_LAST, /* forward it, then pause (until stream_resume) */
	PKT_NEED_FULL,   /* call again once the whole packet is buffered */
	PKT_CONSUMED,    /* the owner used it; drop it (only when complete) */
	PKT_FLUSH_FIRST, /* send pending forwarded bytes, then call again */
	PKT_PAUSE,       /* stop here; the owner calls stream_resume() later */
	PKT_GONE,        /* the owner freed the stream: do not touch it */
	PKT_FORWARD_REST, /* the owner consumed the first pkt.cut bytes (and wrote their stand-in to the
			   * peer's out, which is sent first): forward the rest, in pieces if large */
};

enum stream_end { STREAM_EOF, STREAM_ERROR, STREAM_BAD_PACKET, STREAM_TOO_BIG };

/* on_tls_done's error when the peer closed the connection in the handshake (not a failure of its) */
#define TLS_CLOSED_BY_PEER "connection closed during the TLS handshake"

struct stream_ops {
	enum pkt_action (*on_packet)(struct stream *s, struct pkt *pkt);
	/* the socket ended or failed; the owner must close the stream */
	void (*on_end)(struct stream *s, enum stream_end why);
	/* everything forwarded from this stream has been sent (optional) */
	void (*on_flushed)(struct stream *s);
	/* a non-blocking connect finished (optional; err is 0 or an errno) */
	void (*on_connected)(struct stream *s, int err);
	/* the server answered an SSLRequest with this byte (after stream_request_tls) */
	void (*on_tls_answer)(struct stream *s, uint8_t answer);
	/* the TLS handshake finished: error is NULL, or why it failed (owner closes) */
	void (*on_tls_done)(struct stream *s, const char *error); /* error: NULL, or why (TLS_CLOSED_BY_PEER ...) */
};

struct stream {
	struct list all_node;       /* every open stream, for SUSPEND */
	struct list resume_node;    /* on the queue of resumes the loop runs next */
	int fd;
	struct event ev;   /* one per socket; its flags follow read_on and write_on */
	struct stream_loop *loop;
	const struct stream_ops *ops;
	void *owner;

	uint8_t *buf;      /* receive buffer, NULL while empty */
	uint32_t cap;
	uint32_t spos;     /* start of bytes forwarded but not yet sent */
	uint32_t rpos;     /* start of bytes not yet looked at */
	uint32_t wpos;     /* end of received bytes */
	uint32_t fwd_left; /* bytes of a forwarded packet still to arrive */
	uint32_t max_packet;

	struct stream *peer;       /* where forwarded bytes go */
	struct stream *blocked_src; /* a stream waiting for this socket to drain */
	struct pktbuf out;          /* messages pgpulse writes itself */
	SSL *tls;                   /* the TLS session, or NULL for plaintext */

	bool startup;       /* packets have no type byte (startup phase) */
	bool paused;        /* owner asked to stop processing */
	bool read_on;       /* ev_read is added */
	bool write_on;      /* ev_write is added */
	bool connecting;
	bool dead;          /* closed; waiting to be freed by its owner */
	bool in_process;    /* stream_process is on the stack */
	bool never_suspend; /* the admin console that must hear RESUME */
	bool tls_handshake; /* the TLS handshake owns the socket's events */
	bool tls_answer_due; /* an SSLRequest was sent: the next byte is its answer */
	bool tls_failed;    /* a fatal TLS error: no close_notify on close */
	bool tls_read_wants_write; /* a TLS read must write first: retry it when writable */
	bool resume_when_sent; /* paused until `out` is sent (stream_resume_when_sent) */
	bool sent_mid_packet;  /* the peer's socket got part of a packet and not yet the rest */

	uint64_t bytes_in;
	uint64_t bytes_out;
};

void stream_loop_init(struct stream_loop *l, struct event_base *base);
/* at exit, before the event base: the cached buffers and the resume event */
void stream_loop_free(struct stream_loop *l);

/* the loop's buffer size, from pkt_buf */
void stream_set_buffer_size(struct stream_loop *l, uint32_t size);
/* buffers currently in use / free (for SHOW MEM) */
void stream_buffer_stats(const struct stream_loop *l, int *used, int *free_count, uint32_t *size);
void stream_buffers_release(struct stream_loop *l);

void stream_init(struct stream *s, struct stream_loop *loop, int fd, const struct stream_ops *ops, void *owner);
/* connect fd (already non-blocking) to addr; ops->on_connected fires later */
bool stream_connect(struct stream *s, const void *addr, unsigned addrlen);
/* stop all events, close the socket, release buffers; owner frees memory */
void stream_close(struct stream *s);

void stream_start_reading(struct stream *s);
void stream_stop_reading(struct stream *s);

/* link forwarding: bytes that s forwards go to peer */
void stream_set_peer(struct stream *s, struct stream *peer);

/* queue a message built by pgpulse; sent before anything forwarded later */
struct pktbuf *stream_out(struct stream *s);
/* try to send the queued messages now; false if the socket failed */
bool stream_send_out(struct stream *s);
/* before a close: try once to send the queued messages, whatever happens (no callbacks) */
void stream_send_out_quietly(struct stream *s);

/* SUSPEND: stop (or restart) reading every stream but the exempt ones */
void stream_set_suspended(struct stream_loop *l, bool suspended);
/* streams holding bytes not yet written to their sockets */
int stream_pending_count(const struct stream_loop *l);
/* end every stream that still holds unwritten bytes; returns how many */
int stream_close_unflushed(struct stream_loop *l);

/*
 * TLS. stream_request_tls sends an SSLRequest and reads the one-byte
 * answer (ops->on_tls_answer) without reading past it. stream_start_tls
 * takes the session (freed with the stream) and runs the handshake;
 * ops->on_tls_done reports the end of it. Both need an empty buffer:
 * bytes that came in plaintext must never pass for encrypted ones.
 */
void stream_request_tls(struct stream *s);
void stream_start_tls(struct stream *s, SSL *ssl);

/*
 * Continue after PKT_PAUSE. Inside the stream's own callbacks this only
 * clears the pause (the running loop goes on); from anywhere else the
 * stream is queued and processed from the event loop once the current
 * callbacks have unwound, so resuming one connection never runs its
 * packets inside another connection's callback or list walk.
 */
void stream_resume(struct stream *s);

/*
 * Read now, as if the socket had just polled readable. For a connection
 * whose first bytes are almost surely there already (one accepted under
 * TCP_DEFER_ACCEPT, which the kernel hands over only once it has data),
 * this saves the trip through epoll_wait that would only report them. Call
 * it outside every stream's callbacks; the stream may be closed on return.
 */
void stream_read_now(struct stream *s);

/*
 * The owner pauses because its own queued messages (stream_out) pile up
 * unsent: resume the stream once they have all reached the socket.
 */
void stream_resume_when_sent(struct stream *s);


/*
 * The owner queued messages on the peer's `out` faster than the peer's
 * socket takes them: stop reading and judging s until that out is sent.
 * Return PKT_FLUSH_FIRST from on_packet after calling it; the packet is
 * judged again once the peer has drained.
 */
void stream_wait_for_peer_out(struct stream *s);

/* forwarded bytes waiting to be sent, or a packet partly forwarded */
bool stream_has_pending(const struct stream *s);
/* bytes received but not yet processed */
bool stream_has_unread(const struct stream *s);
/*
 * Has the peer been sent part of a forwarded packet and not its rest: then
 * a message pgpulse writes to the peer would land inside that packet.
 * Whole packets forwarded and not yet sent do not count (they can be
 * dropped cleanly).
 */
static inline bool stream_peer_mid_packet(const struct stream *s)
{
	return s->sent_mid_packet;
}

/* is a forwarded packet still arriving (mid-packet) */
static inline bool stream_mid_packet(const struct stream *s)
{
	return s->fwd_left > 0;
}

#endif
