/*
 * peering: where the owner's peer_id sits in a cancel key.
 *
 * A pid pgpulse makes up (transaction and statement mode, the console)
 * carries the id as PgBouncer puts it, so the two can share a [peers]
 * section: byte 1 of the pid (counting from the most significant) holds
 * the id's low 8 bits, byte 2 the high ones. Byte 0 is at least 0x40, so
 * the pid is positive and above any real process id; bytes 0 and 3 hold
 * a serial. The secret key is random but for its two low bits, the hop
 * budget.
 *
 * In session mode the pid is the client's real backend's (so
 * pg_stat_activity and pg_terminate_backend line up), and the same two
 * bytes of the secret key hold the id instead, 14 bits of it; that leaves
 * 16 random bits of secret in such a key. Which layout a request uses is
 * read from the pid: a real one is never above PEER_REAL_PID_MAX.
 */
#include "peering.h"

static uint32_t id_bytes(int peer_id)
{
	uint32_t id = (uint32_t)peer_id & 0xffffu;
	return (id & 0xffu) << 16 | (id >> 8) << 8;
}

void peering_make_key(int peer_id, bool pid_is_backend, uint32_t serial, uint32_t random,
		      uint32_t *pid, uint32_t *key)
{
	if (pid_is_backend) {
		/* keep the random bits of bytes 0 and 3 and the two high bits of byte 2 */
		*key = (random & 0xff00c0fcu) | id_bytes(peer_id & PEER_ID_MAX) | PEER_KEY_TTL;
		return;
	}
	*pid = 0x40000000u | (serial & 0x3fu) << 24 | id_bytes(peer_id) | ((serial >> 6) & 0xffu);
	*key = random | PEER_KEY_TTL;
}

int peering_key_owner(uint32_t pid, uint32_t key)
{
	if (pid > PEER_REAL_PID_MAX)
		return (int)((pid >> 16 & 0xffu) | (pid >> 8 & 0xffu) << 8);
	return (int)((key >> 16 & 0xffu) | (key >> 8 & 0x3fu) << 8);
}
