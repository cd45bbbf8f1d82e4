"""Review of replicas by role and lag (issue 16): failures a production
user hits, each shown by a test that fails on hosts-merge.

Reuses replicas.py's primary + 2 streaming replicas and test_replicas.py's
helpers.  Each test says what a user sees and why it is wrong.
"""

import os
import socket
import struct
import threading

import psycopg
import pytest

from pgpulse_harness import free_port, wait_until
from replicas import (USERLIST, pulse, replica_set,  # noqa: F401 (fixtures)
                      replica_set_module)
from test_replicas import WHERE, hosts, ini, outcome_within, wait_hosts

READER = "review3_reader"
READER_PW = "reader_pw"


def ensure_read_only_role(primary):
    """A login role whose sessions are read-only by default (ALTER ROLE ...
    SET default_transaction_read_only): a common way to give a reporting
    user a read-only view of the primary."""
    with primary.connect(autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone():
            c.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PW}'")
        c.execute(f"ALTER ROLE {READER} SET default_transaction_read_only = on")
        c.execute(f"GRANT CONNECT ON DATABASE appdb TO {READER}")


def served(pp, db, user="app"):
    """One client's transaction through pgpulse: (in_recovery, port), or the
    exception the client got."""
    def run():
        with pp.connect(dbname=db, user=user, prepare_threshold=None) as c:
            return c.execute(WHERE).fetchone()
    return outcome_within(run, 20)


# ---------------------------------------------------------------- findings

def test_one_users_read_only_default_takes_the_primary_from_every_user(replica_set, pulse):
    """A role with `ALTER ROLE ... SET default_transaction_read_only = on`
    (a reporting user) logs in to the primary: PostgreSQL reports
    default_transaction_read_only = on for *that session*, and pgpulse
    takes it as the host's (hosts_note_read_only from the login's
    ParameterStatus and from the probe's pg_settings.reset_val, which is the
    session's, role settings included).  The primary is then "read-only"
    for every entry: the read-write entry's idle servers are swept and its
    other users' clients wait and fail with query_wait_timeout while the
    primary is up and writable for them.  libpq's read-write test is per
    session: it could reject the reporting user's own connection, never
    another user's.

    replica_check_period = 0 (no probe) and a long server_login_retry keep
    the poisoned verdict from being re-read during the test, so app's client
    fails with query_wait_timeout.  With a periodic check it is a stall
    rather than an error (seen with replica_check_period = 2: app's idle
    server closed as "no longer fits", app's next client served only after
    ~2.6 s, when the verdict went stale): up to 2 x replica_check_period
    (10 s by default) for every login of the reporting user."""
    rs = replica_set
    ensure_read_only_role(rs.primary)
    rs.wait_replayed()
    userlist = dict(USERLIST, **{READER: READER_PW})
    pp = pulse(rs, ini({"appdb": rs.hosts_entry("read-write")},
                       replica_check_period="0", server_login_retry="30", query_wait_timeout="3"),
               userlist=userlist)

    before = served(pp, "appdb")
    assert before == (False, rs.primary.port), f"app's first transaction: {before}"

    # the reporting user's client: whatever it gets (libpq would refuse its
    # read-only session for read-write), it must not change what app gets
    served(pp, "appdb", user=READER)

    primary_row = hosts(pp)[rs.primary.port]
    after = served(pp, "appdb")
    assert after == (False, rs.primary.port), (
        f"app (a read-write user) after {READER} (default_transaction_read_only=on by ALTER ROLE) "
        f"logged in: got {after!r} instead of being served by the primary; "
        f"SHOW HOSTS primary row then: read_only={primary_row['read_only']} state={primary_row['state']}")


def test_byte_lag_is_measured_against_another_clusters_primary(replica_set, pg, pulse):
    """One pgpulse in front of two independent clusters (an everyday setup:
    one pooler per application host, several databases).  Byte lag is
    "the newest LSN read from a primary host (any entry) minus the
    standby's replay LSN", so LSNs of unrelated clusters are compared: a
    busier unrelated primary makes this set's fully caught-up standbys
    "lagging" by replica_max_lag_bytes, and the standby entry's clients
    wait and fail although both replicas have replayed everything."""
    rs = replica_set
    # the unrelated cluster (the harness's scratch one) well ahead in WAL
    # position: a few segment switches, each after a write
    target = rs.primary.value("SELECT pg_current_wal_lsn()::text")
    with pg.connect(dbname="appdb", user="postgres", autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS review3_wal (n int)")

        def far_ahead():
            c.execute("INSERT INTO review3_wal VALUES (1)")
            c.execute("SELECT pg_switch_wal()")
            return c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn) > 64 * 1024 * 1024",
                             (target,)).fetchone()[0]
        wait_until(far_ahead, 30, "the unrelated cluster to be 64 MB ahead in WAL position", interval=0)
        c.execute("DROP TABLE review3_wal")  # the WAL position stays: the session's cluster left as found
    rs.write()
    rs.wait_replayed()

    databases = {
        "appdb_ro": rs.hosts_entry("standby"),
        # picks by role, so its host is probed (a plain single-host entry is never probed)
        "otherdb": f"host=127.0.0.1 port={pg.port} dbname=appdb target_session_attrs=read-write",
    }
    pp = pulse(rs, ini(databases, replica_check_period="0.5", replica_max_lag_bytes="1048576",
                       query_wait_timeout="3"))

    assert served(pp, "appdb_ro")[0] is True, "a standby serves appdb_ro at first"
    other = served(pp, "otherdb")  # otherdb's server stays idle: its host gets probed
    assert not isinstance(other, Exception), other

    # a replica probed after the unrelated primary was (the one appdb_ro used)
    def probed_after_other(rows):
        o = rows.get(pg.port)
        if not o or o["checked_ms_ago"] is None:
            return False
        return any(rows[r.port]["checked_ms_ago"] is not None
                   and rows[r.port]["checked_ms_ago"] < o["checked_ms_ago"] for r in rs.replicas)
    rows = wait_hosts(pp, probed_after_other, 20, "a replica probed after the unrelated primary")

    rs.wait_replayed()
    for r in rs.replicas:
        row = rows[r.port]
        if row["checked_ms_ago"] is None:
            continue  # never connected: nothing measured
        assert row["state"] != "lagging", (
            f"{r.name} (replayed all of its own primary's WAL) is {row['state']} with "
            f"lag_bytes={row['lag_bytes']}: measured against the unrelated cluster on port {pg.port}")
    got = served(pp, "appdb_ro")
    assert not isinstance(got, Exception) and got[0] is True, f"appdb_ro (standby) client: {got!r}"


def test_a_full_pool_whose_server_is_on_a_lagging_standby_still_serves_from_the_other(replica_set, pulse):
    """A standby entry whose pool is at its cap (pool_size = 1 here; the
    same with any cap once every server sits on one replica) and whose
    servers are all on a replica that starts lagging: pgpulse keeps "each
    host's last" idle server for the next probe (close_unfit_idle_servers
    closes only servers beyond one per host), so the pool has no room to
    connect to the other replica, which is caught up and suits.  The
    clients wait and fail with query_wait_timeout while a suitable host
    exists, for as long as the replica lags.  The spec asks that clients
    be "served by the other suitable hosts, or wait" — here they can be
    served; the probe's server need not be taken from a full pool (another
    pool's, or the probe's own connection, as open_server_for_probe
    already does when the host has none)."""
    rs = replica_set
    pp = pulse(rs, ini({"sb": rs.hosts_entry("standby", extra="pool_size=1")},
                       replica_max_lag="1s", replica_check_period="0.5", query_wait_timeout="4"))
    first = served(pp, "sb")
    assert not isinstance(first, Exception) and first[0] is True, f"first standby client: {first!r}"
    lagger = rs.node_by_port(first[1])
    other = next(r for r in rs.replicas if r is not lagger)

    lagger.pause_replay()
    rs.write()
    rs.wait_replayed(replicas=[other])
    wait_hosts(pp, lambda h: h[lagger.port]["state"] == "lagging", 20,
               f"SHOW HOSTS: {lagger.name} lagging")

    got = served(pp, "sb")
    rows = hosts(pp)
    assert got == (True, other.port), (
        f"standby client with {lagger.name} lagging and {other.name} caught up: got {got!r}; "
        f"SHOW HOSTS {lagger.name}: state={rows[lagger.port]['state']} sv_idle={rows[lagger.port]['sv_idle']}, "
        f"{other.name}: state={rows[other.port]['state']} sv_idle={rows[other.port]['sv_idle']}")


def reject_app_on(node):
    """pg_hba.conf is not replicated: a replica whose pg_hba.conf lacks the
    application's line (here: rejects it) is an everyday misconfiguration.
    Returns the undo."""
    path = os.path.join(node.datadir, "pg_hba.conf")
    with open(path) as f:
        original = f.read()
    with open(path, "w") as f:
        f.write("host all app 127.0.0.1/32 reject\n" + original)
    node.query("SELECT pg_reload_conf()")

    def undo():
        with open(path, "w") as f:
            f.write(original)
        node.query("SELECT pg_reload_conf()")
    return undo


def test_prefer_standby_falls_back_to_the_primary_when_no_standby_takes_the_login(replica_set, pulse):
    """prefer-standby, libpq's meaning: a standby if one can be connected
    to, else the primary.  Both replicas refuse the application's login
    (pg_hba.conf, not replicated, rejects it): no login ever reaches them,
    so their role stays unknown, standby_may_exist() stays true, and every
    login to the primary is closed as "wrong role" — the entry never falls
    back, and its clients fail although the primary takes them."""
    rs = replica_set
    undos = [reject_app_on(r) for r in rs.replicas]
    try:
        # what PostgreSQL says to the application directly: rejected
        for r in rs.replicas:
            with pytest.raises(psycopg.OperationalError, match="pg_hba.conf rejects"):
                psycopg.connect(host="127.0.0.1", port=r.port, dbname="appdb", user="app",
                                password="app_pw", connect_timeout=5).close()
        pp = pulse(rs, ini({"ro": rs.hosts_entry("prefer-standby")}, query_wait_timeout="4"))
        # a client may get a replica's refusal (server_login_retry = 0.5 s
        # paces the pool's attempts); within a few seconds one must be served
        last = {}

        def on_primary():
            last["got"] = served(pp, "ro")
            return last["got"] == (False, rs.primary.port)
        try:
            wait_until(on_primary, 8, "a prefer-standby client served by the primary", interval=0.2)
        except AssertionError:
            pass
        got = last["got"]
        rows = hosts(pp)
        assert got == (False, rs.primary.port), (
            f"prefer-standby with both replicas refusing the login: for 8 s every client got, the last {got!r}, "
            f"not the primary; SHOW HOSTS roles: "
            f"{ {n.name: (rows[n.port]['role'], rows[n.port]['state']) for n in rs.nodes} }")
    finally:
        for undo in undos:
            undo()


class SlowStartingServer(threading.Thread):
    """A PostgreSQL look-alike on loopback that takes one connection, reads
    its startup packet (answering 'N' to an SSLRequest), waits for `go`,
    then refuses the login as a server still starting up does (FATAL
    57P03) and closes."""

    def __init__(self):
        super().__init__(daemon=True)
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(4)
        self.started = threading.Event()   # a startup packet has arrived
        self.go = threading.Event()

    @staticmethod
    def _read(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def run(self):
        self.sock.settimeout(30)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            try:
                while True:
                    n, code = struct.unpack("!ii", self._read(conn, 8))
                    self._read(conn, n - 8)
                    if code == 80877103:      # SSLRequest
                        conn.sendall(b"N")
                        continue
                    break
                self.started.set()
                self.go.wait(30)
                fields = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
                conn.sendall(b"E" + struct.pack("!i", 4 + len(fields)) + fields)
            except (OSError, EOFError):
                pass

    def close(self):
        self.go.set()
        self.sock.close()


def test_a_login_failing_after_reload_reorders_the_host_list_marks_the_right_host_down(replica_set, pulse):
    """RELOAD reorders an entry's host list (or replaces a host) while a
    connection to one of its hosts is logging in.  When that login fails
    (here: the host answers 57P03, "starting up"), server.c marks down the
    host at the server's *index* in the entry's new list
    (note_host_down(p->db, s->host_index)), not the host it connected to
    (s->host): SHOW HOSTS and pgpulse_host_up say the healthy primary is
    down with the other host's error, and the host that failed stays up.
    A monitoring alert on pgpulse_host_up fires for the wrong server."""
    rs = replica_set
    fake = SlowStartingServer()
    fake.start()
    try:
        p0 = rs.primary.port
        entry = "host=127.0.0.1,127.0.0.1 port={},{} dbname=appdb"
        pp = pulse(rs, ini({"two": entry.format(fake.port, p0)}, query_wait_timeout="10"))
        box = {}
        client = threading.Thread(target=lambda: box.update(got=served(pp, "two")), daemon=True)
        client.start()
        assert fake.started.wait(10), "pgpulse's first connection of entry two went to the first host"

        pp.write_config(ini({"two": entry.format(p0, fake.port)}, query_wait_timeout="10"))
        mark = pp.log_mark()
        pp.reload()
        wait_until(lambda: set(hosts(pp)) == {p0, fake.port}
                   and hosts(pp)[p0]["databases"] == "two" and "reload" in pp.log(mark).lower(),
                   10, "the RELOAD taken")
        fake.go.set()
        client.join(30)
        rows = wait_hosts(pp, lambda h: h[fake.port]["state"] == "down" or h[p0]["state"] == "down", 10,
                          "the failed login noted on a host")
        assert rows[p0]["state"] != "down" and rows[fake.port]["state"] == "down", (
            f"the login to port {fake.port} failed (57P03); SHOW HOSTS says: primary {p0}: "
            f"state={rows[p0]['state']} last_error={rows[p0]['last_error']!r}; "
            f"{fake.port}: state={rows[fake.port]['state']} last_error={rows[fake.port]['last_error']!r}")
    finally:
        fake.close()


def test_read_write_entry_stops_using_a_primary_made_read_only_by_alter_system(replica_set, pulse):
    """ALTER SYSTEM SET default_transaction_read_only = on + pg_reload_conf()
    on the primary (a common way to fence a primary before a planned
    switchover): a read-write entry whose servers are already open must stop
    handing out read-only sessions, and its clients wait for a writable host
    (query_wait_timeout) instead of every write failing.  The probe reads
    the server's own default (a session's report may be one role's
    ALTER ROLE ... SET, see the test above), so this needs
    replica_check_period > 0; with 0, doc/operations.md says it is not
    noticed."""
    rs = replica_set
    pp = pulse(rs, ini({"rw": rs.hosts_entry("read-write")}, replica_check_period="1",
                       query_wait_timeout="2"))
    sql = "SELECT current_setting('transaction_read_only'), current_setting('port')::int"

    def one():
        def run():
            with pp.connect(dbname="rw", prepare_threshold=None) as c:
                return c.execute(sql).fetchone()
        return outcome_within(run, 20)
    assert one() == ("off", rs.primary.port)
    try:
        rs.primary.query("ALTER SYSTEM SET default_transaction_read_only = on")
        rs.primary.query("SELECT pg_reload_conf()")
        wait_until(lambda: rs.primary.value("SHOW default_transaction_read_only") == "on", 10,
                   "the primary's sessions read-only by default")
        last = {}

        def not_read_only():
            last["got"] = one()
            return isinstance(last["got"], Exception) or last["got"][0] == "off"
        try:
            wait_until(not_read_only, 8, "the read-write entry to stop using the read-only primary",
                       interval=0.2)
        except AssertionError:
            pass
        got = last["got"]
        assert isinstance(got, Exception) or got[0] == "off", (
            f"read-write entry, 8 s after the primary became read-only by default: a client's "
            f"transaction ran with transaction_read_only={got[0]} on port {got[1]}; SHOW HOSTS primary "
            f"read_only={hosts(pp)[rs.primary.port]['read_only']}")
    finally:
        rs.primary.query("ALTER SYSTEM RESET default_transaction_read_only")
        rs.primary.query("SELECT pg_reload_conf()")
        wait_until(lambda: rs.primary.value("SHOW default_transaction_read_only") == "off", 10,
                   "the primary writable again")
