/*
 * test_peering: the owner's peer_id sits where PgBouncer 1.21+ puts it, so
 * keys of either can be forwarded by the other; the hop budget lives in the
 * key's two low bits and a key matches whatever hops it has spent.
 */
#include "peering.h"

#include "unit.h"

/* BackendKeyData pids PgBouncer 1.25.2 handed out with peer_id 5, 256, 1 and 16383 */
static void test_owner_is_read_from_pgbouncer_pids(void)
{
	CHECK_INT_EQ(peering_key_owner(0x170500ffu, 0xe9e74d2fu), 5);
	CHECK_INT_EQ(peering_key_owner(0x2500019eu, 0x387b1507u), 256);
	CHECK_INT_EQ(peering_key_owner(0x4e0100d5u, 0xf325a167u), 1);
	CHECK_INT_EQ(peering_key_owner(0x3cff3ff4u, 0xd4077dfbu), 16383);
	/* and its keys start with the full hop budget, as ours do */
	CHECK_INT_EQ((int)peering_key_ttl(0xe9e74d2fu), 3);
}

static void test_own_pid_carries_the_id_and_stays_above_real_pids(void)
{
	static const int ids[] = { 1, 2, 255, 256, 4097, PEER_ID_MAX };
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		for (uint32_t serial = 4194305u; serial < 4194305u + 70000u; serial += 4999u) {
			uint32_t pid = 0, key = 0;
			peering_make_key(ids[i], serial, 0xfffffffcu, &pid, &key);
			CHECK(pid > 4194304u && pid <= 0x7fffffffu); /* above any real pid (PID_MAX_LIMIT), positive */
			CHECK_INT_EQ(peering_key_owner(pid, key), ids[i]);
			CHECK_INT_EQ((int)peering_key_ttl(key), 3);
		}
	}
	/* clients given keys in a row get different pids */
	uint32_t p1, p2, k;
	peering_make_key(7, 4194305u, 0, &p1, &k);
	peering_make_key(7, 4194306u, 0, &p2, &k);
	CHECK(p1 != p2);
}

/* PgBouncer's pid byte 0 is random: 0 there still names the owner in bytes 1 and 2 */
static void test_owner_is_read_from_a_pgbouncer_pid_below_any_real_pid_limit(void)
{
	CHECK_INT_EQ(peering_key_owner(0x000500ffu, 0x12345678u), 5);
	CHECK_INT_EQ(peering_key_owner(0x00ff3f00u, 0u), 16383);
}

/* the secret keeps every bit but the hop budget: 30 random bits */
static void test_the_key_keeps_thirty_random_bits(void)
{
	uint32_t pid, key;
	peering_make_key(300, 4194305u, 0xfffffffcu, &pid, &key);
	CHECK(key == 0xffffffffu);
	peering_make_key(300, 4194305u, 0x12345678u, &pid, &key);
	CHECK((key & ~PEER_KEY_TTL) == 0x12345678u);
}

static void test_each_hop_spends_one_and_the_key_still_matches(void)
{
	uint32_t pid, key;
	peering_make_key(9, 4194305u, 0xabcdef00u, &pid, &key);
	uint32_t sent = key;
	for (int hop = 3; hop > 0; hop--) {
		CHECK_INT_EQ((int)peering_key_ttl(sent), hop);
		sent = peering_key_hop(sent);
		CHECK(peering_key_matches(key, sent));
		CHECK_INT_EQ(peering_key_owner(pid, sent), 9);
	}
	CHECK_INT_EQ((int)peering_key_ttl(sent), 0);
	CHECK(!peering_key_matches(key, sent ^ 0x100u));
}

int main(void)
{
	RUN(test_owner_is_read_from_pgbouncer_pids);
	RUN(test_own_pid_carries_the_id_and_stays_above_real_pids);
	RUN(test_owner_is_read_from_a_pgbouncer_pid_below_any_real_pid_limit);
	RUN(test_the_key_keeps_thirty_random_bits);
	RUN(test_each_hop_spends_one_and_the_key_still_matches);
	return UNIT_REPORT("peering");
}
