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
			peering_make_key(ids[i], false, serial, 0xfffffffcu, &pid, &key);
			CHECK(pid > PEER_REAL_PID_MAX && pid <= 0x7fffffffu);
			CHECK_INT_EQ(peering_key_owner(pid, key), ids[i]);
			CHECK_INT_EQ((int)peering_key_ttl(key), 3);
		}
	}
	/* clients given keys in a row get different pids */
	uint32_t p1, p2, k;
	peering_make_key(7, false, 4194305u, 0, &p1, &k);
	peering_make_key(7, false, 4194306u, 0, &p2, &k);
	CHECK(p1 != p2);
}

static void test_session_key_carries_the_id_and_the_pid_stays_the_backends(void)
{
	static const uint32_t randoms[] = { 0, 0xffffffffu, 0x12345678u, 0x8000c000u };
	for (size_t i = 0; i < sizeof(randoms) / sizeof(randoms[0]); i++) {
		uint32_t pid = 31337, key = 0;
		peering_make_key(PEER_ID_MAX, true, 0, randoms[i], &pid, &key);
		CHECK_INT_EQ((int)pid, 31337);
		CHECK_INT_EQ(peering_key_owner(pid, key), PEER_ID_MAX);
		peering_make_key(300, true, 0, randoms[i], &pid, &key);
		CHECK_INT_EQ(peering_key_owner(pid, key), 300);
		CHECK_INT_EQ((int)peering_key_ttl(key), 3);
		/* the random bits outside the id and the hop budget are kept */
		CHECK((key & 0xff00c0fcu) == (randoms[i] & 0xff00c0fcu));
	}
}

static void test_each_hop_spends_one_and_the_key_still_matches(void)
{
	uint32_t pid, key;
	peering_make_key(9, false, 4194305u, 0xabcdef00u, &pid, &key);
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
	RUN(test_session_key_carries_the_id_and_the_pid_stays_the_backends);
	RUN(test_each_hop_spends_one_and_the_key_still_matches);
	return UNIT_REPORT("peering");
}
