/*
 * fuzz_framing: packet framing in the stream (src/stream.c: judge_packets,
 * the receive buffer's compaction and growth, forwarding to a peer),
 * driven over real sockets and a real libevent loop, as the daemon runs it.
 *
 * A stream reads from one end of a socketpair and forwards to a peer stream
 * on a second socketpair, whose far end the harness drains. The owner
 * (on_packet) answers each packet from a script taken from the input:
 * forward, forward then pause, need the whole packet, consume, flush first,
 * or pause; the harness resumes paused streams from its loop.
 *
 * Input: byte 0 = settings (startup-phase packets or typed ones, how the
 * bytes are cut into writes, max_packet 2000 or 64 kB, a slow peer reader),
 * byte 1 = script length n (1..16), then n script bytes, then the bytes a
 * client sends. The receive buffer is the smallest allowed (1 kB), so
 * compaction and growth happen on small inputs.
 * Asserts beyond "no crash":
 *   - the buffer's regions stay ordered (spos <= rpos <= wpos <= cap);
 *   - each packet the owner sees starts where the last one ended, its
 *     header and body are the client's bytes at that offset, and
 *     complete/avail/len agree;
 *   - the peer receives exactly the packets the owner forwarded, in order,
 *     byte for byte, and nothing the owner consumed (a prefix of them if
 *     the stream ended, all of them once nothing is pending).
 */
#include "stream.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

struct rig {
	struct event_base *base;
	struct stream_loop loop;
	int src[2], dst[2];
	struct stream in, out;
	const uint8_t *script;
	size_t script_len, step;
	const uint8_t *wire; /* what the client sends */
	size_t wire_len;
	size_t next_off;      /* offset in wire of the packet at rpos */
	size_t flushed_at;    /* FLUSH_FIRST or PAUSE was answered for this offset (+1) */
	uint8_t *expect;      /* what the peer should receive */
	size_t expect_len;
	bool ended;
};

static struct rig g;

static void expect_bytes(size_t off, size_t len)
{
	if (off >= g.wire_len)
		return;
	if (len > g.wire_len - off)
		len = g.wire_len - off;
	memcpy(g.expect + g.expect_len, g.wire + off, len);
	g.expect_len += len;
}

static enum pkt_action on_packet(struct stream *s, struct pkt *pkt)
{
	uint32_t hdr = s->startup ? 4 : 5;
	assert(s->spos <= s->rpos && s->rpos <= s->wpos && s->wpos <= s->cap);
	assert(pkt->len >= hdr && pkt->len - hdr == pkt->body_len);
	assert(pkt->avail <= pkt->len && pkt->complete == (pkt->avail == pkt->len));
	assert(pkt->body == s->buf + s->rpos + hdr);
	assert(pkt->avail <= s->wpos - s->rpos);
	assert(g.next_off + pkt->avail <= g.wire_len);
	assert(memcmp(s->buf + s->rpos, g.wire + g.next_off, pkt->avail) == 0);

	enum pkt_action act;
	switch (g.script[g.step++ % g.script_len] % 6) {
	case 0: act = PKT_FORWARD; break;
	case 1: act = PKT_FORWARD_LAST; break;
	case 2: act = pkt->complete ? PKT_FORWARD : PKT_NEED_FULL; break;
	case 3: act = pkt->complete ? PKT_CONSUMED : PKT_NEED_FULL; break;
	case 4: act = PKT_FLUSH_FIRST; break;
	default: act = PKT_PAUSE; break;
	}
	/* an owner answers "later" once per packet, or it would never move on */
	if (act == PKT_FLUSH_FIRST || act == PKT_PAUSE) {
		if (g.flushed_at == g.next_off + 1)
			act = PKT_FORWARD;
		else
			g.flushed_at = g.next_off + 1;
	}
	switch (act) {
	case PKT_FORWARD:
	case PKT_FORWARD_LAST:
		expect_bytes(g.next_off, pkt->len);
		/* fall through */
	case PKT_CONSUMED:
		g.next_off += pkt->len;
		break;
	default:
		break;
	}
	return act;
}

static void on_end(struct stream *s, enum stream_end why)
{
	(void)why;
	g.ended = true;
	stream_close(s);
}

static const struct stream_ops in_ops = { .on_packet = on_packet, .on_end = on_end };
static const struct stream_ops out_ops = { .on_packet = on_packet, .on_end = on_end };

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* read what reached the peer's far end; at most `limit` bytes */
static void drain(uint8_t *got, size_t *got_len, size_t cap, size_t limit)
{
	while (limit > 0) {
		uint8_t tmp[512];
		size_t want = limit < sizeof(tmp) ? limit : sizeof(tmp);
		ssize_t n = recv(g.dst[1], tmp, want, 0);
		if (n <= 0)
			return;
		assert(*got_len + (size_t)n <= cap); /* never more than was sent */
		memcpy(got + *got_len, tmp, (size_t)n);
		*got_len += (size_t)n;
		limit -= (size_t)n;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[4] = { 3, 61, 700, SIZE_MAX };
	static bool ready;
	if (!ready) {
		log_setup(0, true);
		ready = true;
	}
	if (size < 3)
		return 0;
	memset(&g, 0, sizeof(g));
	uint8_t settings = data[0];
	g.script_len = (size_t)data[1] % 16 + 1;
	if (size < 2 + g.script_len)
		return 0;
	g.script = data + 2;
	g.wire = data + 2 + g.script_len;
	g.wire_len = size - 2 - g.script_len;
	g.expect = malloc(g.wire_len + 1);
	uint8_t *got = malloc(g.wire_len + 1);
	size_t got_len = 0, sent = 0;
	size_t chunk = chunks[(settings >> 1) & 3];
	if (chunk < g.wire_len / 64)
		chunk = g.wire_len / 64; /* at most ~64 writes: large inputs stay fast */
	bool slow_reader = settings & 16;

	g.base = event_base_new();
	stream_loop_init(&g.loop, g.base);
	stream_set_buffer_size(&g.loop, 1024);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, g.src) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, g.dst) != 0)
		abort();
	int small = 1; /* the kernel rounds it up to its minimum: the peer fills early */
	setsockopt(g.dst[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	set_nonblock(g.src[0]);
	set_nonblock(g.src[1]);
	set_nonblock(g.dst[0]);
	set_nonblock(g.dst[1]);
	stream_init(&g.in, &g.loop, g.src[0], &in_ops, &g);
	stream_init(&g.out, &g.loop, g.dst[0], &out_ops, &g);
	g.in.startup = settings & 1;
	/* as the daemon sets it (max_packet_size, or the login limit): a 2 GB NEED_FULL only tests malloc */
	g.in.max_packet = settings & 8 ? 2000 : 65536;
	stream_set_peer(&g.in, &g.out);
	stream_start_reading(&g.in);

	/* until nothing moves: no byte sent, judged, received or forwarded for three rounds */
	int quiet_rounds = 0;
	for (int round = 0; round < 20000 && quiet_rounds < 3; round++) {
		size_t before = sent + got_len + g.next_off + g.in.wpos + g.in.spos + g.step;
		if (sent < g.wire_len && !g.in.dead) {
			size_t n = g.wire_len - sent < chunk ? g.wire_len - sent : chunk;
			ssize_t w = send(g.src[1], g.wire + sent, n, MSG_NOSIGNAL);
			if (w > 0)
				sent += (size_t)w;
		}
		event_base_loop(g.base, EVLOOP_NONBLOCK);
		drain(got, &got_len, g.wire_len, slow_reader ? 256 : SIZE_MAX);
		if (!g.in.dead && g.in.paused)
			stream_resume(&g.in);
		size_t after = sent + got_len + g.next_off + g.in.wpos + g.in.spos + g.step;
		quiet_rounds = after != before ? 0 : quiet_rounds + 1;
	}

	/* what arrived is what was forwarded, in order; all of it when nothing is pending */
	assert(got_len <= g.expect_len);
	assert(memcmp(got, g.expect, got_len) == 0);
	if (!g.ended && !g.in.dead && !stream_has_pending(&g.in) && !g.in.paused)
		assert(got_len == g.expect_len);

	stream_close(&g.in);
	stream_close(&g.out);
	close(g.src[1]);
	close(g.dst[1]);
	stream_loop_free(&g.loop);
	event_base_free(g.base);
	free(g.expect);
	free(got);
	return 0;
}
