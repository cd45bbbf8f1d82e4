/*
 * test_stream: the forwarding engine on real sockets (socketpairs) and a
 * real libevent loop — packets cross intact whatever their size, a full
 * peer stops the reader (bounded memory), consumed packets are cut out of
 * a forwarded run, and malformed lengths end the stream.
 */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

/* the stream under test reads from src_pair[0]; its peer writes to dst_pair[0] */
struct rig {
	struct event_base *base;
	struct stream_loop loop;
	int src_pair[2];
	int dst_pair[2];
	struct stream in;
	struct stream out;
	enum pkt_action (*judge)(struct pkt *pkt);
	int ended;
	enum stream_end why;
	int consumed;
	int flushed;
	uint32_t max_cap_seen;
};

static struct rig *g_rig;

static enum pkt_action on_packet(struct stream *s, struct pkt *pkt)
{
	if (s->cap > g_rig->max_cap_seen)
		g_rig->max_cap_seen = s->cap;
	return g_rig->judge(pkt);
}

static void on_end(struct stream *s, enum stream_end why)
{
	g_rig->ended++;
	g_rig->why = why;
	stream_close(s);
}

static void on_flushed(struct stream *s)
{
	(void)s;
	g_rig->flushed++;
}

static const struct stream_ops in_ops = { .on_packet = on_packet, .on_end = on_end, .on_flushed = on_flushed };
static const struct stream_ops out_ops = { .on_packet = on_packet, .on_end = on_end };

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void rig_open_sized(struct rig *r, enum pkt_action (*judge)(struct pkt *), uint32_t buf_size)
{
	memset(r, 0, sizeof(*r));
	g_rig = r;
	r->judge = judge;
	r->base = event_base_new();
	stream_loop_init(&r->loop, r->base);
	stream_set_buffer_size(&r->loop, buf_size);
	socketpair(AF_UNIX, SOCK_STREAM, 0, r->src_pair);
	socketpair(AF_UNIX, SOCK_STREAM, 0, r->dst_pair);
	set_nonblock(r->src_pair[0]);
	set_nonblock(r->dst_pair[0]);
	stream_init(&r->in, &r->loop, r->src_pair[0], &in_ops, r);
	stream_init(&r->out, &r->loop, r->dst_pair[0], &out_ops, r);
	stream_set_peer(&r->in, &r->out);
	stream_start_reading(&r->in);
}

static void rig_open(struct rig *r, enum pkt_action (*judge)(struct pkt *))
{
	rig_open_sized(r, judge, 8192);
}

static void rig_close(struct rig *r)
{
	stream_close(&r->in);
	stream_close(&r->out);
	close(r->src_pair[1]);
	close(r->dst_pair[1]);
	stream_loop_free(&r->loop);
	event_base_free(r->base);
}

static void spin(struct rig *r, int rounds)
{
	for (int i = 0; i < rounds; i++)
		event_base_loop(r->base, EVLOOP_NONBLOCK);
}

static void append_message(uint8_t **buf, size_t *len, uint8_t type, size_t body_len, uint8_t fill)
{
	/* grow by doubling: the buffer's capacity is the power of two at or above its length */
	size_t need = *len + 5 + body_len, cap = 64, old_cap = 64;
	while (cap < need)
		cap *= 2;
	while (old_cap < *len)
		old_cap *= 2;
	if (!*buf || cap != old_cap)
		*buf = realloc(*buf, cap);
	uint8_t *p = *buf + *len;
	p[0] = type;
	uint32_t l = (uint32_t)(body_len + 4);
	p[1] = (uint8_t)(l >> 24);
	p[2] = (uint8_t)(l >> 16);
	p[3] = (uint8_t)(l >> 8);
	p[4] = (uint8_t)l;
	memset(p + 5, fill, body_len);
	*len += 5 + body_len;
}

/* write everything to fd while spinning the loop and draining the far end */
static size_t pump(struct rig *r, const uint8_t *data, size_t len, uint8_t *got, size_t got_cap)
{
	size_t sent = 0, received = 0;
	set_nonblock(r->src_pair[1]);
	set_nonblock(r->dst_pair[1]);
	for (int idle = 0; idle < 40;) {
		bool progress = false;
		if (sent < len) {
			ssize_t n = write(r->src_pair[1], data + sent, len - sent);
			if (n > 0) {
				sent += (size_t)n;
				progress = true;
			}
		}
		spin(r, 2);
		ssize_t n = read(r->dst_pair[1], got + received, got_cap - received);
		if (n > 0) {
			received += (size_t)n;
			progress = true;
		}
		if (sent == len && !progress)
			idle++;
		else if (!progress)
			idle++;
		else
			idle = 0;
	}
	return received;
}

static enum pkt_action forward_all(struct pkt *pkt)
{
	(void)pkt;
	return PKT_FORWARD;
}

static void test_small_packets_arrive_intact_and_in_order(void)
{
	struct rig r;
	rig_open(&r, forward_all);
	uint8_t *msg = NULL;
	size_t len = 0;
	for (int i = 0; i < 2000; i++)
		append_message(&msg, &len, 'D', (size_t)(i % 50), (uint8_t)i);
	uint8_t *got = malloc(len + 16);
	size_t n = pump(&r, msg, len, got, len + 16);
	CHECK_INT_EQ(n, len);
	CHECK(memcmp(got, msg, len) == 0);
	CHECK_INT_EQ(r.ended, 0);
	free(got);
	free(msg);
	rig_close(&r);
}

static void test_packet_larger_than_buffer_is_forwarded_in_pieces(void)
{
	struct rig r;
	rig_open_sized(&r, forward_all, 4096);
	uint8_t *msg = NULL;
	size_t len = 0;
	append_message(&msg, &len, 'D', 3u << 20, 0xab);
	append_message(&msg, &len, 'Z', 1, 'I');
	uint8_t *got = malloc(len + 16);
	size_t n = pump(&r, msg, len, got, len + 16);
	CHECK_INT_EQ(n, len);
	CHECK(memcmp(got, msg, len) == 0);
	CHECK(r.max_cap_seen <= 4096); /* never buffered whole */
	free(got);
	free(msg);
	rig_close(&r);
}

static void test_full_peer_stops_the_reader(void)
{
	struct rig r;
	rig_open_sized(&r, forward_all, 4096);
	uint8_t *msg = NULL;
	size_t len = 0;
	for (int i = 0; i < 4000; i++)
		append_message(&msg, &len, 'D', 1000, (uint8_t)i);
	set_nonblock(r.src_pair[1]);
	size_t sent = 0;
	for (int i = 0; i < 2000 && sent < len; i++) {
		ssize_t n = write(r.src_pair[1], msg + sent, len - sent);
		if (n > 0)
			sent += (size_t)n;
		spin(&r, 1);
	}
	/* nobody reads the far end: the writer must be stuck well short of 4 MB */
	CHECK(sent < len);
	CHECK(r.in.cap <= 4096);
	CHECK(!r.in.read_on);
	CHECK(r.out.blocked_src == &r.in);
	/* once the far end drains, everything arrives */
	uint8_t *got = malloc(len + 16);
	size_t received = 0;
	set_nonblock(r.dst_pair[1]);
	for (int idle = 0; idle < 40;) {
		bool progress = false;
		if (sent < len) {
			ssize_t n = write(r.src_pair[1], msg + sent, len - sent);
			if (n > 0) {
				sent += (size_t)n;
				progress = true;
			}
		}
		spin(&r, 2);
		ssize_t n = read(r.dst_pair[1], got + received, len + 16 - received);
		if (n > 0) {
			received += (size_t)n;
			progress = true;
		}
		idle = progress ? 0 : idle + 1;
	}
	CHECK_INT_EQ(received, len);
	CHECK(memcmp(got, msg, len) == 0);
	free(got);
	free(msg);
	rig_close(&r);
}

static enum pkt_action consume_x_forward_rest(struct pkt *pkt)
{
	if (pkt->type != 'X')
		return PKT_FORWARD;
	if (!pkt->complete)
		return PKT_NEED_FULL;
	g_rig->consumed++;
	return PKT_CONSUMED;
}

static void test_consumed_packet_is_cut_out_of_a_forwarded_run(void)
{
	struct rig r;
	rig_open(&r, consume_x_forward_rest);
	uint8_t *msg = NULL, *want = NULL;
	size_t len = 0, want_len = 0;
	append_message(&msg, &len, 'A', 10, 1);
	append_message(&want, &want_len, 'A', 10, 1);
	append_message(&msg, &len, 'X', 20, 2);
	append_message(&msg, &len, 'B', 30, 3);
	append_message(&want, &want_len, 'B', 30, 3);
	uint8_t got[256];
	size_t n = pump(&r, msg, len, got, sizeof(got));
	CHECK_INT_EQ(r.consumed, 1);
	CHECK_INT_EQ(n, want_len);
	CHECK(memcmp(got, want, want_len) == 0);
	free(msg);
	free(want);
	rig_close(&r);
}

/* 'X': its header and 3 body bytes are replaced by a 'Y' header in the peer's out; the rest is forwarded */
static enum pkt_action rewrite_x_head(struct pkt *pkt)
{
	if (pkt->type != 'X')
		return PKT_FORWARD;
	if (stream_has_pending(&g_rig->in))
		return PKT_FLUSH_FIRST;
	g_rig->consumed++;
	struct pktbuf *out = stream_out(&g_rig->out);
	pkt_put_u8(out, 'Y');
	pkt_put_u32(out, pkt->len - 1 - 3);
	pkt->cut = 5 + 3;
	return PKT_FORWARD_REST;
}

static void test_rewritten_head_of_a_large_packet_goes_first_and_the_rest_is_forwarded(void)
{
	struct rig r;
	rig_open_sized(&r, rewrite_x_head, 4096);
	uint8_t *msg = NULL, *want = NULL;
	size_t len = 0, want_len = 0, body = 1u << 20;
	append_message(&msg, &len, 'A', 10, 1);
	append_message(&want, &want_len, 'A', 10, 1);
	append_message(&msg, &len, 'X', body, 0x77);
	memset(msg + len - body, 0x11, 3);
	append_message(&want, &want_len, 'Y', body - 3, 0x77);
	append_message(&msg, &len, 'B', 30, 3);
	append_message(&want, &want_len, 'B', 30, 3);
	uint8_t *got = malloc(want_len + 16);
	size_t n = pump(&r, msg, len, got, want_len + 16);
	CHECK_INT_EQ(r.consumed, 1);
	CHECK_INT_EQ(n, want_len);
	CHECK(memcmp(got, want, want_len) == 0);
	CHECK(r.max_cap_seen <= 4096); /* never buffered whole */
	free(got);
	free(msg);
	free(want);
	rig_close(&r);
}

static enum pkt_action need_full_then_consume(struct pkt *pkt)
{
	if (!pkt->complete)
		return PKT_NEED_FULL;
	g_rig->consumed++;
	/* the whole body is there to read */
	for (uint32_t i = 0; i < pkt->body_len; i++)
		if (pkt->body[i] != 0x5a)
			return PKT_CONSUMED;
	g_rig->flushed += 1000;
	return PKT_CONSUMED;
}

static void test_packet_needed_whole_grows_the_buffer_once(void)
{
	struct rig r;
	rig_open_sized(&r, need_full_then_consume, 4096);
	uint8_t *msg = NULL;
	size_t len = 0;
	append_message(&msg, &len, 'Q', 100000, 0x5a);
	append_message(&msg, &len, 'Q', 10, 0x5a);
	uint8_t got[16];
	pump(&r, msg, len, got, sizeof(got));
	CHECK_INT_EQ(r.consumed, 2);
	CHECK(r.flushed >= 2000);
	CHECK(r.in.buf == NULL); /* nothing buffered: the buffer went back */
	free(msg);
	rig_close(&r);
}

static void test_impossible_length_ends_the_stream(void)
{
	struct rig r;
	rig_open(&r, forward_all);
	static const uint8_t bad[] = { 'Q', 0, 0, 0, 2 };
	uint8_t got[16];
	pump(&r, bad, sizeof(bad), got, sizeof(got));
	CHECK_INT_EQ(r.ended, 1);
	CHECK_INT_EQ(r.why, STREAM_BAD_PACKET);
	rig_close(&r);
}

static void test_length_over_the_limit_ends_the_stream(void)
{
	struct rig r;
	rig_open(&r, forward_all);
	r.in.max_packet = 1000;
	static const uint8_t big[] = { 'Q', 0x7f, 0xff, 0xff, 0xff };
	uint8_t got[16];
	pump(&r, big, sizeof(big), got, sizeof(got));
	CHECK_INT_EQ(r.ended, 1);
	CHECK_INT_EQ(r.why, STREAM_TOO_BIG);
	rig_close(&r);
}

static void test_eof_is_reported(void)
{
	struct rig r;
	rig_open(&r, forward_all);
	close(r.src_pair[1]);
	r.src_pair[1] = socket(AF_UNIX, SOCK_STREAM, 0); /* something for rig_close to close */
	spin(&r, 5);
	CHECK_INT_EQ(r.ended, 1);
	CHECK_INT_EQ(r.why, STREAM_EOF);
	rig_close(&r);
}

int main(void)
{
	RUN(test_small_packets_arrive_intact_and_in_order);
	RUN(test_packet_larger_than_buffer_is_forwarded_in_pieces);
	RUN(test_full_peer_stops_the_reader);
	RUN(test_consumed_packet_is_cut_out_of_a_forwarded_run);
	RUN(test_rewritten_head_of_a_large_packet_goes_first_and_the_rest_is_forwarded);
	RUN(test_packet_needed_whole_grows_the_buffer_once);
	RUN(test_impossible_length_ends_the_stream);
	RUN(test_length_over_the_limit_ends_the_stream);
	RUN(test_eof_is_reported);
	return UNIT_REPORT("stream");
}
