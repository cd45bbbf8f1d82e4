/*
 * test_hosts: which host suits which target_session_attrs, the pick of a
 * host for a new connection (round-robin order, fallbacks, hosts of
 * unknown or stale role, down and lagging hosts), the lag verdict, and
 * the registry's sharing of one host between entries.
 */
#include "hosts.h"

#include "unit.h"
#include "worker.h"

static struct worker test_worker;
struct worker *worker = &test_worker;

#define SEC INT64_C(1000000)
#define NOW (1000 * SEC)
#define STALE (5 * SEC)

static const struct hosts_lag_limits no_limits = { 0, 0 };

static void make(struct host *h, enum host_role role)
{
	static char name[] = "h";
	hosts_init(h, name, 5432);
	if (role != HOST_ROLE_UNKNOWN)
		hosts_note_role(h, role, NOW);
}

static void test_tsa_words_round_trip(void)
{
	static const char *const words[] = { "any", "read-write", "read-only", "primary", "standby", "prefer-standby" };
	for (int i = 0; i < 6; i++) {
		enum target_session_attrs t;
		CHECK(hosts_tsa_parse(words[i], &t));
		CHECK_INT_EQ(t, i);
		CHECK_STR_EQ(hosts_tsa_name(t), words[i]);
	}
	enum target_session_attrs t = TSA_STANDBY;
	CHECK(!hosts_tsa_parse("readwrite", &t));
	CHECK(!hosts_tsa_parse("", &t));
	CHECK_INT_EQ(t, TSA_STANDBY); /* untouched */
}

static void test_fit_follows_libpq(void)
{
	struct host p, s, ro, u;
	make(&p, HOST_ROLE_PRIMARY);
	make(&s, HOST_ROLE_STANDBY);
	make(&ro, HOST_ROLE_PRIMARY);
	hosts_note_read_only(&ro, true);
	make(&u, HOST_ROLE_UNKNOWN);

	CHECK(hosts_suits(&p, TSA_ANY) && hosts_suits(&s, TSA_ANY) && hosts_suits(&u, TSA_ANY));
	CHECK(hosts_suits(&p, TSA_READ_WRITE) && !hosts_suits(&s, TSA_READ_WRITE) && !hosts_suits(&ro, TSA_READ_WRITE));
	CHECK(!hosts_suits(&p, TSA_READ_ONLY) && hosts_suits(&s, TSA_READ_ONLY) && hosts_suits(&ro, TSA_READ_ONLY));
	CHECK(hosts_suits(&p, TSA_PRIMARY) && hosts_suits(&ro, TSA_PRIMARY) && !hosts_suits(&s, TSA_PRIMARY));
	CHECK(hosts_suits(&s, TSA_STANDBY) && !hosts_suits(&p, TSA_STANDBY));
	CHECK(hosts_suits(&s, TSA_PREFER_STANDBY) && hosts_suits(&p, TSA_PREFER_STANDBY));
	for (int t = TSA_READ_WRITE; t <= TSA_PREFER_STANDBY; t++)
		CHECK(!hosts_suits(&u, (enum target_session_attrs)t));
	/* the hot path's bit agrees with the function everywhere */
	const struct host *all[] = { &p, &s, &ro, &u };
	for (int i = 0; i < 4; i++)
		for (int t = 0; t <= TSA_PREFER_STANDBY; t++)
			CHECK_INT_EQ(hosts_fits(all[i], t), hosts_suits(all[i], (enum target_session_attrs)t));
}

static void test_a_lagging_standby_suits_nobody_until_it_catches_up(void)
{
	struct host p, s;
	list_init(&worker->hosts);
	make(&p, HOST_ROLE_PRIMARY);
	make(&s, HOST_ROLE_STANDBY);
	list_append(&worker->hosts, &p.node);
	list_append(&worker->hosts, &s.node);
	struct hosts_lag_limits lim = { 2 * SEC, 1000 };
	hosts_note_probe(&p, false, 0x100000, -1, lim, NOW);
	hosts_note_probe(&s, true, 0x100000 - 500, 1 * SEC, lim, NOW);
	CHECK(!s.lagging);
	CHECK_INT_EQ(s.lag_bytes, 500);
	hosts_note_probe(&s, true, 0x100000 - 500, 3 * SEC, lim, NOW); /* time */
	CHECK(s.lagging);
	CHECK(!hosts_fits(&s, TSA_ANY) && !hosts_fits(&s, TSA_STANDBY) && !hosts_fits(&s, TSA_PREFER_STANDBY));
	CHECK_STR_EQ(hosts_state_name(&s), "lagging");
	hosts_note_probe(&s, true, 0x100000 - 5000, 0, lim, NOW); /* bytes */
	CHECK(s.lagging);
	CHECK_INT_EQ(s.lag_bytes, 5000);
	hosts_note_probe(&s, true, 0x100000, 0, lim, NOW);
	CHECK(!s.lagging);
	CHECK(hosts_fits(&s, TSA_STANDBY));
	/* no limit: never lagging */
	hosts_note_probe(&s, true, 1, 3600 * SEC, no_limits, NOW);
	CHECK(!s.lagging);
	/* a limit set later judges the last reading */
	hosts_apply_limits(lim);
	CHECK(s.lagging);
	/* a primary's reading is no lag */
	CHECK_INT_EQ(p.lag_usec, -1);
	CHECK_INT_EQ(p.lag_bytes, -1);
	list_init(&worker->hosts);
}

static void test_a_promotion_is_a_role_change(void)
{
	struct host s;
	make(&s, HOST_ROLE_UNKNOWN);
	CHECK(!hosts_note_role(&s, HOST_ROLE_STANDBY, NOW)); /* learned, not changed */
	CHECK_INT_EQ(s.role_changes, 0);
	CHECK(!s.sweep_due);
	CHECK(!hosts_note_role(&s, HOST_ROLE_STANDBY, NOW + SEC));
	CHECK_INT_EQ(s.role_checked, NOW + SEC);
	CHECK(hosts_note_role(&s, HOST_ROLE_PRIMARY, NOW + 2 * SEC));
	CHECK_INT_EQ(s.role_changes, 1);
	CHECK(s.sweep_due);
	CHECK(hosts_fits(&s, TSA_READ_WRITE) && !hosts_fits(&s, TSA_STANDBY));
}

static void test_lsn_text(void)
{
	uint64_t lsn = 0;
	CHECK(hosts_parse_lsn("16/B374D848", &lsn));
	CHECK(lsn == ((UINT64_C(0x16) << 32) | UINT64_C(0xB374D848)));
	CHECK(hosts_parse_lsn("0/0", &lsn) && lsn == 0);
	CHECK(!hosts_parse_lsn("16B374D848", &lsn));
	CHECK(!hosts_parse_lsn("/1", &lsn));
	CHECK(!hosts_parse_lsn("1/", &lsn));
	CHECK(!hosts_parse_lsn("1/2x", &lsn));
	CHECK(!hosts_parse_lsn("", &lsn));
}

/* a DataRow body of n text columns (NULL: SQL NULL) into buf; its length */
static size_t data_row(uint8_t *buf, int n, const char *const *cols)
{
	size_t len = 0;
	buf[len++] = (uint8_t)(n >> 8);
	buf[len++] = (uint8_t)n;
	for (int i = 0; i < n; i++) {
		uint32_t l = cols[i] ? (uint32_t)strlen(cols[i]) : UINT32_MAX;
		for (int b = 3; b >= 0; b--)
			buf[len++] = (uint8_t)(l >> (8 * b));
		if (cols[i]) {
			memcpy(buf + len, cols[i], l);
			len += l;
		}
	}
	return len;
}

static void test_the_probe_row_is_read_and_a_bad_one_refused(void)
{
	struct host p, s;
	list_init(&worker->hosts);
	make(&p, HOST_ROLE_UNKNOWN);
	make(&s, HOST_ROLE_UNKNOWN);
	list_append(&worker->hosts, &p.node);
	list_append(&worker->hosts, &s.node);
	struct hosts_lag_limits lim = { 5 * SEC, 0 };
	uint8_t buf[256];
	const char *primary[] = { "f", "0/3000100", NULL, "off" };
	CHECK(hosts_note_probe_row(&p, buf, data_row(buf, 4, primary), lim, NOW));
	CHECK_INT_EQ(p.role, HOST_ROLE_PRIMARY);
	CHECK(p.wal_lsn == 0x3000100);
	CHECK_INT_EQ(p.lag_checked, NOW);
	const char *standby[] = { "t", "0/3000000", "7.25", "on" };
	CHECK(hosts_note_probe_row(&s, buf, data_row(buf, 4, standby), lim, NOW));
	CHECK_INT_EQ(s.role, HOST_ROLE_STANDBY);
	CHECK_INT_EQ(s.lag_usec, 7250000);
	CHECK_INT_EQ(s.lag_bytes, 0x100);
	CHECK(s.read_only && s.lagging);
	/* malformed: nothing learned */
	const char *bad_lsn[] = { "t", "3000000", "0", "on" };
	const char *bad_lag[] = { "t", "0/3000000", "soon", "on" };
	const char *no_role[] = { NULL, "0/3000000", "0", "on" };
	CHECK(!hosts_note_probe_row(&s, buf, data_row(buf, 4, bad_lsn), lim, NOW + SEC));
	CHECK(!hosts_note_probe_row(&s, buf, data_row(buf, 4, bad_lag), lim, NOW + SEC));
	CHECK(!hosts_note_probe_row(&s, buf, data_row(buf, 4, no_role), lim, NOW + SEC));
	CHECK(!hosts_note_probe_row(&s, buf, data_row(buf, 3, standby), lim, NOW + SEC));
	size_t len = data_row(buf, 4, standby);
	CHECK(!hosts_note_probe_row(&s, buf, len - 1, lim, NOW + SEC)); /* cut short */
	CHECK_INT_EQ(s.lag_checked, NOW);
	CHECK_INT_EQ(s.lag_usec, 7250000);
	list_init(&worker->hosts);
}

static void test_pick_goes_by_role_in_order_from_the_cursor(void)
{
	struct host a, b, c;
	make(&a, HOST_ROLE_PRIMARY);
	make(&b, HOST_ROLE_STANDBY);
	make(&c, HOST_ROLE_STANDBY);
	struct host *hs[] = { &a, &b, &c };
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_READ_WRITE, 0, NOW, STALE), 0);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_READ_WRITE, 2, NOW, STALE), 0);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_STANDBY, 0, NOW, STALE), 1);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_STANDBY, 2, NOW, STALE), 2);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_ANY, 1, NOW, STALE), 1);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_PREFER_STANDBY, 0, NOW, STALE), 1);
	/* standbys lagging: prefer-standby falls back to the primary, standby has nowhere to go */
	struct hosts_lag_limits lim = { SEC, 0 };
	hosts_note_probe(&b, true, 0, 10 * SEC, lim, NOW);
	hosts_note_probe(&c, true, 0, 10 * SEC, lim, NOW);
	CHECK(b.lagging && c.lagging);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_PREFER_STANDBY, 1, NOW, STALE), 0);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_STANDBY, 0, NOW, STALE), -1);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_ANY, 1, NOW, STALE), 0); /* no new connection to a lagging host */
}

static void test_pick_tries_unknown_and_stale_roles_only_when_none_suits(void)
{
	struct host a, b;
	make(&a, HOST_ROLE_STANDBY);
	make(&b, HOST_ROLE_UNKNOWN);
	struct host *hs[] = { &a, &b };
	/* nothing known to be a primary: the unknown host is tried */
	CHECK_INT_EQ(hosts_pick(hs, 2, TSA_READ_WRITE, 0, NOW, STALE), 1);
	/* it logs in as a standby too: nothing to try until a role goes stale */
	hosts_note_role(&b, HOST_ROLE_STANDBY, NOW);
	CHECK_INT_EQ(hosts_pick(hs, 2, TSA_READ_WRITE, 0, NOW, STALE), -1);
	CHECK_INT_EQ(hosts_pick(hs, 2, TSA_READ_WRITE, 0, NOW + STALE - 1, STALE), -1);
	CHECK_INT_EQ(hosts_pick(hs, 2, TSA_READ_WRITE, 1, NOW + STALE, STALE), 1);
	/* a suitable host known: the stale one waits */
	struct host p;
	make(&p, HOST_ROLE_PRIMARY);
	p.role_checked = NOW + STALE;
	struct host *hs3[] = { &a, &b, &p };
	CHECK_INT_EQ(hosts_pick(hs3, 3, TSA_READ_WRITE, 0, NOW + STALE, STALE), 2);
	/* prefer-standby: a host of unknown role is tried before the primary */
	struct host u;
	make(&u, HOST_ROLE_UNKNOWN);
	struct host *pu[] = { &p, &u };
	CHECK_INT_EQ(hosts_pick(pu, 2, TSA_PREFER_STANDBY, 0, NOW, STALE), 1);
}

static void test_pick_gives_a_never_seen_host_its_turn_with_the_suitable_ones(void)
{
	struct host p, r1, r2;
	make(&p, HOST_ROLE_PRIMARY);
	make(&r1, HOST_ROLE_STANDBY);
	make(&r2, HOST_ROLE_UNKNOWN);
	struct host *hs[] = { &p, &r1, &r2 };
	/* the first standby serves: the second, never reached, is still tried in its turn */
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_STANDBY, 2, NOW, STALE), 2);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_PREFER_STANDBY, 2, NOW, STALE), 2);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_READ_WRITE, 2, NOW, STALE), 2);
	/* once known, it is passed over where it does not suit */
	hosts_note_role(&r2, HOST_ROLE_STANDBY, NOW);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_READ_WRITE, 2, NOW, STALE), 0);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_STANDBY, 2, NOW, STALE), 2);
}

static void test_byte_lag_is_measured_within_the_standbys_cluster(void)
{
	struct host p, other, s;
	list_init(&worker->hosts);
	make(&p, HOST_ROLE_PRIMARY);
	make(&other, HOST_ROLE_PRIMARY);
	make(&s, HOST_ROLE_STANDBY);
	p.cluster = s.cluster = 1;
	other.cluster = 2; /* another entry's, unrelated, far ahead */
	list_append(&worker->hosts, &p.node);
	list_append(&worker->hosts, &other.node);
	list_append(&worker->hosts, &s.node);
	struct hosts_lag_limits lim = { 0, 1000 };
	hosts_note_probe(&other, false, 0x90000000, -1, lim, NOW);
	hosts_note_probe(&p, false, 0x100000, -1, lim, NOW);
	hosts_note_probe(&s, true, 0x100000 - 10, 0, lim, NOW);
	CHECK_INT_EQ(s.lag_bytes, 10);
	CHECK(!s.lagging);
	/* its own primary down (a failover): its last LSN is no measure */
	hosts_note_down(&p, "connection refused", NOW);
	hosts_note_probe(&s, true, 0x100000 - 10, 0, lim, NOW);
	CHECK_INT_EQ(s.lag_bytes, -1);
	list_init(&worker->hosts);
}

static void test_a_refused_host_is_not_tried_again_until_its_role_is_stale(void)
{
	struct host p, r1, r2;
	make(&p, HOST_ROLE_PRIMARY);
	make(&r1, HOST_ROLE_UNKNOWN);
	make(&r2, HOST_ROLE_UNKNOWN);
	struct host *hs[] = { &p, &r1, &r2 };
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_PREFER_STANDBY, 1, NOW, STALE), 1);
	/* both replicas refuse the login (pg_hba.conf): prefer-standby falls back to the primary */
	hosts_note_refused(&r1, "pg_hba.conf rejects connection", NOW);
	hosts_note_refused(&r2, "pg_hba.conf rejects connection", NOW);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_PREFER_STANDBY, 1, NOW, STALE), 0);
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_STANDBY, 1, NOW, STALE), -1);
	CHECK(hosts_refused_lately(&r1, NOW + STALE - 1, STALE));
	/* a role's staleness later, they are tried again; a login that succeeds forgets the refusal */
	CHECK_INT_EQ(hosts_pick(hs, 3, TSA_PREFER_STANDBY, 1, NOW + STALE, STALE), 1);
	hosts_note_up(&r1);
	CHECK(!hosts_refused_lately(&r1, NOW, STALE));
}

static void test_pick_passes_over_down_hosts_unless_nothing_else(void)
{
	struct host a, b;
	make(&a, HOST_ROLE_PRIMARY);
	make(&b, HOST_ROLE_PRIMARY);
	struct host *hs[] = { &a, &b };
	hosts_note_down(&a, "connection refused", NOW);
	CHECK_STR_EQ(hosts_state_name(&a), "down");
	CHECK_STR_EQ(a.last_error, "connection refused");
	CHECK_INT_EQ(hosts_pick(hs, 2, TSA_ANY, 0, NOW, STALE), 1);
	hosts_note_down(&b, "timeout", NOW);
	CHECK_INT_EQ(hosts_pick(hs, 2, TSA_ANY, 0, NOW, STALE), 0); /* trying is how it is found back */
	hosts_note_up(&a);
	CHECK_STR_EQ(hosts_state_name(&a), "up");
	CHECK_STR_EQ(a.last_error, "");
	CHECK_INT_EQ(hosts_pick(hs, 2, TSA_ANY, 1, NOW, STALE), 0);
	CHECK_INT_EQ(hosts_pick(hs, 0, TSA_ANY, 0, NOW, STALE), -1);
}

static void test_registry_shares_one_host_and_frees_it_last(void)
{
	list_init(&worker->hosts);
	struct host *a = hosts_ref("db1", 5432);
	struct host *b = hosts_ref("DB1", 5432);
	struct host *c = hosts_ref("db1", 5433);
	CHECK(a == b);
	CHECK(a != c);
	CHECK_INT_EQ(a->refs, 2);
	CHECK_INT_EQ(list_count(&worker->hosts), 2);
	char label[64];
	CHECK_STR_EQ(hosts_label(c, label, sizeof(label)), "db1:5433");
	hosts_unref(b);
	hosts_pin(a); /* a server still points at it */
	hosts_unref(a);
	CHECK_INT_EQ(list_count(&worker->hosts), 2);
	hosts_unpin(a);
	CHECK_INT_EQ(list_count(&worker->hosts), 1);
	hosts_unref(c);
	CHECK(list_empty(&worker->hosts));
}

int main(void)
{
	list_init(&worker->hosts);
	RUN(test_tsa_words_round_trip);
	RUN(test_fit_follows_libpq);
	RUN(test_a_lagging_standby_suits_nobody_until_it_catches_up);
	RUN(test_a_promotion_is_a_role_change);
	RUN(test_lsn_text);
	RUN(test_the_probe_row_is_read_and_a_bad_one_refused);
	RUN(test_pick_goes_by_role_in_order_from_the_cursor);
	RUN(test_pick_tries_unknown_and_stale_roles_only_when_none_suits);
	RUN(test_pick_gives_a_never_seen_host_its_turn_with_the_suitable_ones);
	RUN(test_byte_lag_is_measured_within_the_standbys_cluster);
	RUN(test_a_refused_host_is_not_tried_again_until_its_role_is_stale);
	RUN(test_pick_passes_over_down_hosts_unless_nothing_else);
	RUN(test_registry_shares_one_host_and_frees_it_last);
	return UNIT_REPORT("hosts");
}
