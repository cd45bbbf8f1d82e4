/*
 * fuzz_prepared: the named-statement tracking of transaction mode
 * (src/prepared/) fed any sequence of client messages (Parse, Bind,
 * Describe, Close, Execute, Sync, Query, COPY ends...) and server replies,
 * in any order, with the server stream's "bytes in flight" flag flipping.
 * Stream calls are stubbed: what pgpulse sends lands in the streams' out
 * buffers, which the harness empties.
 *
 * Input: records of [flags][type][len][body], len one byte (0..255) cut to
 * what is left. flags bit 0: a client message (else a server reply);
 * bit 1: bytes in flight to the client; bits 2-3 pick
 * max_prepared_statements (1, 2, 3, 200).
 * Asserts beyond "no crash" (ASan, UBSan):
 *   - every client name maps to a statement that counts it;
 *   - a server's set never holds more than max_prepared_statements plus
 *     the statements a failed batch gave back;
 *   - once the client and the server are gone, no shared statement is
 *     left: every reference taken was dropped.
 */
#include "../../src/prepared/statements.c"
#include "../../src/prepared/protocol.c"
#include "../../src/prepared/sqltext.c"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct worker *worker;
static bool in_flight;

bool stream_has_pending(const struct stream *s)
{
	(void)s;
	return in_flight;
}

struct pktbuf *stream_out(struct stream *s)
{
	return &s->out;
}

bool stream_send_out(struct stream *s)
{
	pktbuf_reset(&s->out);
	return true;
}

void stream_resume(struct stream *s)
{
	s->paused = false;
}

void stream_wait_for_peer_out(struct stream *s)
{
	(void)s;
}

/* fingerprints: on, an entry never kept, so every Bind computes it again */
bool fp_enabled(void)
{
	return true;
}

uint64_t fp_generation(void)
{
	return 0;
}

struct fp_entry *fp_touch(const struct pool *p, uint64_t fp, const char *text)
{
	(void)p;
	(void)fp;
	(void)text;
	return NULL;
}

uint64_t fp_of_text(const struct pool *p, const char *text, size_t len, bool cached)
{
	(void)p;
	(void)cached;
	return ps_hash_bytes(text, len) | 1;
}

static void check_maps(const struct client *c, const struct server *s)
{
	for (uint32_t i = 0; c->ps && i < c->ps->cap; i++)
		if (c->ps->slots[i].name)
			assert(c->ps->slots[i].stmt->clients > 0 && c->ps->slots[i].stmt->refs > 0);
	if (s->ps)
		assert(s->ps->count <= s->ps->cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct worker w;
	static struct cfg cfg;
	static struct pool pool;
	static struct pool_db db = { .name = "appdb" };
	static struct pool_user user = { .name = "app" };
	static struct client c;
	static struct server s;
	static const int maxes[] = { 1, 2, 3, 200 };
	uint8_t msg[260];

	memset(&w, 0, sizeof(w));
	memset(&cfg, 0, sizeof(cfg));
	memset(&pool, 0, sizeof(pool));
	memset(&c, 0, sizeof(c));
	memset(&s, 0, sizeof(s));
	worker = &w;
	w.cfg = &cfg;
	cfg.max_prepared_statements = 200;
	pool.pool_mode = POOL_TRANSACTION;
	pool.db = &db;
	pool.user = &user;
	c.pool = &pool;
	c.server = &s;
	c.state = CL_ACTIVE;
	s.pool = &pool;
	s.client = &c;
	s.state = SV_ACTIVE;
	static bool quiet;
	if (!quiet) {
		quiet = true;
		log_setup(0, true); /* desync warnings would drown the fuzzer's output */
	}

	size_t pos = 0;
	while (pos + 3 <= size) {
		uint8_t flags = data[pos], type = data[pos + 1];
		size_t len = data[pos + 2];
		pos += 3;
		if (len > size - pos)
			len = size - pos;
		in_flight = flags & 2;
		cfg.max_prepared_statements = maxes[(flags >> 2) & 3];
		msg[0] = type;
		uint32_t n = (uint32_t)len + 4;
		msg[1] = (uint8_t)(n >> 24);
		msg[2] = (uint8_t)(n >> 16);
		msg[3] = (uint8_t)(n >> 8);
		msg[4] = (uint8_t)n;
		memcpy(msg + 5, data + pos, len);
		pos += len;
		struct pkt p = { .type = type, .len = n + 1, .body = msg + 5, .body_len = (uint32_t)len,
				 .complete = true, .avail = n + 1 };
		if (flags & 1)
			(void)prepared_on_request(&c, &p);
		else
			(void)prepared_on_reply(&s, &p);
		if (!in_flight)
			prepared_server_flushed(&s);
		pktbuf_reset(&s.st.out);
		pktbuf_reset(&c.st.out);
		check_maps(&c, &s);
	}
	prepared_client_free(&c);
	prepared_server_free(&s);
	assert(!w.prepared || w.prepared->count == 0);
	prepared_shutdown();
	pktbuf_free(&s.st.out);
	pktbuf_free(&c.st.out);
	return 0;
}
