/*
 * peering: cancel keys that say which process of a group handed them out.
 *
 * Several pgpulse (or PgBouncer) processes behind one address — one
 * so_reuseport port, or a load balancer — each get a peer_id. A client's
 * CancelRequest comes on a new connection that may land on any of them,
 * so the key itself names its owner, laid out as PgBouncer 1.21+ does,
 * and a process that is not the owner forwards the request to it (the
 * [peers] section says where). The two low bits of the secret key are a
 * hop budget, 3 in a fresh key and one less after each forward, so a
 * [peers] section that points in a circle cannot bounce a request for ever.
 *
 * Pure arithmetic on the two 32-bit words of BackendKeyData; no I/O.
 */
#ifndef PGPULSE_PEERING_H
#define PGPULSE_PEERING_H

#include <stdbool.h>
#include <stdint.h>

#define PEER_ID_MAX  16383
#define PEER_KEY_TTL 3u /* the hop budget of a fresh key: the key's two low bits */

/*
 * Stamp peer_id and a full hop budget into a key pgpulse hands out: *pid is
 * made here from `serial` (which tells apart clients given keys in a row),
 * *key from `random`, fresh random bits.
 */
void peering_make_key(int peer_id, uint32_t serial, uint32_t random, uint32_t *pid, uint32_t *key);

/* the peer_id a CancelRequest's pid and key name */
int peering_key_owner(uint32_t pid, uint32_t key);

/* the hops a request may still make */
static inline unsigned peering_key_ttl(uint32_t key)
{
	return key & PEER_KEY_TTL;
}

/* the key as the next hop gets it: one hop fewer (ttl must be > 0) */
static inline uint32_t peering_key_hop(uint32_t key)
{
	return key - 1;
}

/* does a presented key (hops spent or not) match one handed out with peering on */
static inline bool peering_key_matches(uint32_t handed, uint32_t presented)
{
	return (handed | PEER_KEY_TTL) == (presented | PEER_KEY_TTL);
}

#endif
