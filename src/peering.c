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
 * With a peer_id, session mode makes up its pids too, rather than show the
 * client its real backend's pid: the id must ride in the pid, where
 * PgBouncer peers look for it, and the secret key keeps its 30 random bits
 * (putting the id in the key of a known backend pid would leave 16, which
 * anyone who can read pg_stat_activity could try through in seconds).
 */
#include "peering.h"

static uint32_t id_bytes(int peer_id)
{
	uint32_t id = (uint32_t)peer_id & 0xffffu;
	return (id & 0xffu) << 16 | (id >> 8) << 8;
}

void peering_make_key(int peer_id, uint32_t serial, uint32_t random, uint32_t *pid, uint32_t *key)
{
	*pid = 0x40000000u | (serial & 0x3fu) << 24 | id_bytes(peer_id) | ((serial >> 6) & 0xffu);
	*key = random | PEER_KEY_TTL;
}

int peering_key_owner(uint32_t pid, uint32_t key)
{
	(void)key; /* the owner is in the pid, as PgBouncer reads it, whatever pid byte 0 holds */
	return (int)((pid >> 16 & 0xffu) | (pid >> 8 & 0xffu) << 8);
}
