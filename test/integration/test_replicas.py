"""Replicas by role and lag, failover, and per-host visibility (issue 16).

A real primary and two streaming replicas made by `pg_basebackup -R`, on
loopback, each on its own port (replicas.py).  Every [databases] entry here
names the three as one host list, primary first:

    host=127.0.0.1,127.0.0.1,127.0.0.1 port=<primary>,<replica1>,<replica2>

and each test asks what a user sees: `SELECT pg_is_in_recovery(),
current_setting('port')` through pgpulse says which server a transaction
ran on; SHOW HOSTS and /metrics say what pgpulse knows of each host.

Several transactions held open at once force the pool to open that many
server connections, so the host list's round robin (restricted to the hosts
that suit the entry's target_session_attrs) shows in where they land.

The module's tests share one replica set (healed before each test: every
node running, replay resumed, both replicas streaming); the failover test
promotes a replica and has a set of its own.
"""

import http.client
import re
import threading

import psycopg
import pytest

from pgpulse_harness import free_port, port_accepts, wait_until
from replicas import (WRITES_TABLE, fresh_replica_set, pulse, replica_set,  # noqa: F401 (fixtures)
                      replica_set_module)

WHERE = "SELECT pg_is_in_recovery(), current_setting('port')::int"

BASE_SETTINGS = {
    "listen_addr": "127.0.0.1",
    "listen_port": "{port}",
    "unix_socket_dir": "{dir}",
    "auth_type": "scram-sha-256",
    "auth_file": "{auth_file}",
    "admin_users": "admin",
    "pool_mode": "transaction",
    "default_pool_size": "10",
    "replica_check_period": "1",
    # a refused connection to a stopped node must not hold the pool back for 15 s
    "server_login_retry": "0.5",
}

TSA_VALUES = ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"]

# SHOW HOSTS columns and their RowDescription type OIDs, in the spec's order
TEXT, INT4, BOOL, FLOAT8, INT8 = 25, 23, 16, 701, 20
SHOW_HOSTS_COLUMNS = [
    ("host", TEXT), ("port", INT4), ("role", TEXT), ("state", TEXT), ("read_only", BOOL),
    ("lag_ms", FLOAT8), ("lag_bytes", INT8), ("checked_ms_ago", INT8), ("role_changes", INT8),
    ("sv_active", INT4), ("sv_idle", INT4), ("sv_used", INT4), ("sv_login", INT4),
    ("databases", TEXT), ("query_count", INT8), ("query_p50_us", INT8), ("query_p95_us", INT8),
    ("query_p99_us", INT8), ("last_error", TEXT),
]


# ------------------------------------------------------------------ helpers

def ini(databases, **settings):
    merged = dict(BASE_SETTINGS)
    merged.update({k: str(v) for k, v in settings.items()})
    lines = ["[databases]"] + [f"{name} = {spec}" for name, spec in databases.items()]
    lines += ["[pgpulse]"] + [f"{k} = {v}" for k, v in merged.items()]
    return "\n".join(lines) + "\n"


def land(pp, db, k):
    """Open k clients of entry `db`, each in a transaction of its own, all
    held at once (so the pool needs k servers); return where each one ran,
    as (pg_is_in_recovery, port) pairs.  The transactions end (ROLLBACK)
    before the clients leave, so their servers stay in the pool, idle: a
    client that leaves inside a transaction takes its server with it."""
    conns, seen = [], []
    try:
        for _ in range(k):
            conn = pp.connect(dbname=db, prepare_threshold=None)
            conns.append(conn)
            seen.append(conn.execute(WHERE).fetchone())
        for conn in conns:
            conn.rollback()
        return seen
    finally:
        for conn in conns:
            conn.close()


def ports_of(seen):
    return {port for _, port in seen}


def hosts(pp):
    """SHOW HOSTS as {port: row}: every host here is 127.0.0.1."""
    rows = pp.show("HOSTS")
    assert all(r["host"] == "127.0.0.1" for r in rows), rows
    return {r["port"]: r for r in rows}


def wait_hosts(pp, condition, timeout, what):
    """Poll SHOW HOSTS until condition(rows by port) holds; return the rows.
    A timeout shows the last rows read."""
    last = {}

    def check():
        nonlocal last
        last = hosts(pp)
        return condition(last) and last
    try:
        return wait_until(check, timeout, what, interval=0.1)
    except AssertionError as e:
        rows = "\n".join(str(r) for r in last.values())
        raise AssertionError(f"{e}\nlast SHOW HOSTS:\n{rows}") from None


def database_tsa(pp, name):
    rows = [r for r in pp.show("DATABASES") if r["name"] == name]
    assert rows, f"SHOW DATABASES has no {name}"
    cols = list(rows[0])
    assert cols[-1] == "target_session_attrs", f"last column of SHOW DATABASES: {cols[-1]}"
    return rows[0]["target_session_attrs"]


def config_value(pp, key):
    rows = [r for r in pp.show("CONFIG") if r["key"] == key]
    assert rows, f"SHOW CONFIG has no {key}"
    return rows[0]["value"]


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200, body
        return body
    finally:
        conn.close()


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(body, name):
    """{frozenset(labels.items()): value} of metric `name` in an exposition."""
    out = {}
    for line in body.splitlines():
        m = SAMPLE.match(line)
        if m and m.group(1) == name:
            out[frozenset(LABEL.findall(m.group(2) or ""))] = float(m.group(3))
    return out


def host_sample(body, name, port, **labels):
    """The value of `name` for host 127.0.0.1:<port> (and `labels`), None
    when the scrape has no such sample."""
    want = {("host", f"127.0.0.1:{port}")} | set(labels.items())
    found = [v for k, v in samples(body, name).items() if want <= k]
    assert len(found) <= 1, f"{name} for {want}: {found}"
    return found[0] if found else None


def outcome_within(fn, timeout):
    """Run fn() in a thread; its result or the exception it raised.  Fails
    the test when it is still running after `timeout` s (a hang)."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except Exception as e:  # the outcome under test
            box["result"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still waiting after {timeout} s: the client hangs"
    return box["result"]


class Writer(threading.Thread):
    """A write workload through pgpulse: one client inserting a numbered row
    at a time (autocommit), reconnecting after an error.  ok: (n,
    pg_is_in_recovery, port) of each acknowledged insert; errors: (n, text)."""

    def __init__(self, dsn):
        super().__init__(daemon=True)
        self.dsn = dsn
        self.ok = []
        self.errors = []
        self.done = threading.Event()

    def run(self):
        n, conn = 0, None
        while not self.done.is_set():
            n += 1
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10,
                                           prepare_threshold=None)
                row = conn.execute(f"INSERT INTO {WRITES_TABLE} (n, pad) VALUES (%s, 'writer')"
                                   " RETURNING pg_is_in_recovery(), current_setting('port')::int",
                                   (n,)).fetchone()
                self.ok.append((n, *row))
                self.done.wait(0.01)   # pace the workload; not a wait for a condition
            except psycopg.Error as e:
                self.errors.append((n, f"{type(e).__name__}: {str(e).strip()}"))
                if conn is not None:
                    conn.close()
                    conn = None
                self.done.wait(0.05)
        if conn is not None:
            conn.close()

    def stop(self):
        self.done.set()
        self.join(30)
        assert not self.is_alive(), "the writer did not stop"


# ------------------------------------------------------- routing by role

@pytest.mark.parametrize("tsa", TSA_VALUES)
def test_each_target_session_attrs_value_routes_to_the_hosts_whose_role_fits(replica_set, pulse, tsa):
    """One entry over primary, replica1, replica2; transactions held at once
    and repeated: read-write and primary only on the primary; standby and
    read-only only on the replicas, both of them; prefer-standby on the
    replicas while they are fine; any on all three."""
    rs = replica_set
    p0, p1, p2 = rs.ports
    pp = pulse(rs, ini({"e": rs.hosts_entry(tsa)}))
    k = 6 if tsa == "any" else 4
    seen = land(pp, "e", k) + land(pp, "e", k)
    for in_recovery, port in seen:
        assert (port == p0) == (in_recovery is False), f"inconsistent answer {seen}"
    if tsa in ("read-write", "primary"):
        assert ports_of(seen) == {p0}, f"{tsa}: ran on {seen}, primary is {p0}"
    elif tsa in ("read-only", "standby"):
        assert ports_of(seen) == {p1, p2}, f"{tsa}: ran on {seen}, replicas are {p1}, {p2}"
    elif tsa == "prefer-standby":
        assert ports_of(seen) <= {p1, p2}, f"{tsa}: ran on {seen}, replicas are {p1}, {p2}"
    else:
        assert ports_of(seen) == {p0, p1, p2}, f"{tsa}: ran on {seen}, hosts are {rs.ports}"
    assert database_tsa(pp, "e") == tsa


def test_an_entry_without_target_session_attrs_shows_any_and_uses_every_host(replica_set, pulse):
    rs = replica_set
    pp = pulse(rs, ini({"e": rs.hosts_entry()}))
    assert database_tsa(pp, "e") == "any"
    assert ports_of(land(pp, "e", 6)) == set(rs.ports)


def test_prefer_standby_falls_back_to_the_primary_when_both_replicas_are_stopped_and_standby_is_not_served(
        replica_set, pulse):
    rs = replica_set
    p0, p1, p2 = rs.ports
    pp = pulse(rs, ini({"ps": rs.hosts_entry("prefer-standby"), "sb": rs.hosts_entry("standby")},
                       query_wait_timeout=2))
    assert ports_of(land(pp, "ps", 4)) <= {p1, p2}
    assert ports_of(land(pp, "sb", 2)) <= {p1, p2}
    for r in rs.replicas:
        r.stop()
    for _ in range(3):
        seen = land(pp, "ps", 3)
        assert seen == [(False, p0)] * 3, f"prefer-standby with both replicas stopped ran on {seen}"

    def standby_client():
        with pp.connect(dbname="sb", prepare_threshold=None) as conn:
            return conn.execute(WHERE).fetchone()
    got = outcome_within(standby_client, 30)
    assert isinstance(got, psycopg.OperationalError), \
        f"a standby client with both replicas stopped got {got!r}, not an error"


def test_when_both_replicas_lag_prefer_standby_uses_the_primary_and_standby_waits_for_query_wait_timeout(
        replica_set, pulse):
    rs = replica_set
    p0, p1, p2 = rs.ports
    pp = pulse(rs, ini({"ps": rs.hosts_entry("prefer-standby"), "sb": rs.hosts_entry("standby")},
                       replica_max_lag="1s", query_wait_timeout=2))
    assert ports_of(land(pp, "sb", 4)) == {p1, p2}   # servers on both, for the probe
    for r in rs.replicas:
        r.pause_replay()
    rs.write()
    wait_hosts(pp, lambda h: h[p1]["state"] == h[p2]["state"] == "lagging", 20,
               "SHOW HOSTS to show both replicas lagging")
    seen = land(pp, "ps", 3)
    assert seen == [(False, p0)] * 3, f"prefer-standby with both replicas lagging ran on {seen}"

    def standby_client():
        with pp.connect(dbname="sb", prepare_threshold=None) as conn:
            return conn.execute(WHERE).fetchone()
    got = outcome_within(standby_client, 30)
    assert isinstance(got, psycopg.OperationalError), \
        f"a standby client with both replicas lagging got {got!r}, not query_wait_timeout"
    assert "query_wait_timeout" in str(got), got


# ------------------------------------------------------------------- lag

@pytest.mark.parametrize("limit", ["time", "bytes"])
def test_a_replica_whose_replay_is_paused_gets_no_assignments_past_replica_max_lag_and_is_taken_back_after_resume(
        replica_set, pulse, limit):
    """replica1's replay paused while the primary writes: once a probe sees it
    past replica_max_lag (1 s) or replica_max_lag_bytes (64 kB), SHOW HOSTS
    says lagging and a standby entry's transactions all run on replica2;
    after pg_wal_replay_resume() it is up and used again."""
    rs = replica_set
    p0, p1, p2 = rs.ports
    replica1 = rs.replicas[0]
    lag = {"replica_max_lag": "1s"} if limit == "time" else {"replica_max_lag_bytes": "64kB"}
    pp = pulse(rs, ini({"sb": rs.hosts_entry("standby"), "rw": rs.hosts_entry("read-write")},
                       query_wait_timeout=10, **lag))
    assert ports_of(land(pp, "sb", 4)) == {p1, p2}
    assert ports_of(land(pp, "rw", 1)) == {p0}   # a server on the primary: its LSN for byte lag
    wait_hosts(pp, lambda h: all(r["checked_ms_ago"] is not None for r in h.values()), 15,
               "a probe of every host")

    replica1.pause_replay()
    if limit == "time":
        rs.write()
    else:
        rs.write(rows=2000, pad=200)   # some 500 kB of WAL
    rs.wait_replayed(replicas=[rs.replicas[1]])

    h = wait_hosts(pp, lambda h: h[p1]["state"] == "lagging" and h[p2]["state"] == "up", 20,
                   "SHOW HOSTS: replica1 lagging, replica2 up")
    if limit == "time":
        assert h[p1]["lag_ms"] is not None and h[p1]["lag_ms"] > 1000, h[p1]
    else:
        assert h[p1]["lag_bytes"] is not None and h[p1]["lag_bytes"] > 64 * 1024, h[p1]

    for _ in range(2):
        seen = land(pp, "sb", 4)
        assert seen == [(True, p2)] * 4, f"standby entry with replica1 lagging ran on {seen}"

    replica1.resume_replay()
    wait_hosts(pp, lambda h: h[p1]["state"] == "up", 20, "SHOW HOSTS: replica1 up again")
    wait_until(lambda: p1 in ports_of(land(pp, "sb", 8)), 20, "a transaction on replica1 again")


# -------------------------------------------------------------- failover

def test_after_the_primary_stops_and_a_standby_is_promoted_writes_continue_on_it_without_reload(
        fresh_replica_set, pulse):
    """The documented split (appdb read-write, appdb_ro standby) with a write
    workload through appdb; the primary stops (a client in a transaction
    there gets an error, not a hang; SHOW HOSTS says down); replica1 is
    promoted: inserts succeed again, on replica1, without RELOAD or restart;
    SHOW HOSTS shows replica1 as primary, and appdb_ro no longer uses it."""
    rs = fresh_replica_set
    p0, p1, p2 = rs.ports
    pp = pulse(rs, ini({"appdb": rs.hosts_entry("read-write"),
                        "appdb_ro": rs.hosts_entry("standby")},
                       server_connect_timeout=2, query_wait_timeout=20))
    # pgpulse has servers on both replicas and knows them as standbys
    assert ports_of(land(pp, "appdb_ro", 4)) == {p1, p2}
    writer = Writer(pp.dsn())
    writer.start()
    try:
        wait_until(lambda: len(writer.ok) >= 10 or writer.errors, 20, "10 inserts through pgpulse")
        assert not writer.errors, f"inserts failed with the primary up: {writer.errors[:3]}"
        assert {(rec, port) for _, rec, port in writer.ok} == {(False, p0)}, writer.ok

        txn = pp.connect(prepare_threshold=None)
        assert txn.execute(f"INSERT INTO {WRITES_TABLE} (n, pad) VALUES (0, 'txn')"
                           " RETURNING current_setting('port')::int").fetchone() == (p0,)
        rs.primary.stop("fast")
        got = outcome_within(lambda: txn.execute("SELECT 1").fetchone(), 30)
        assert isinstance(got, psycopg.Error), \
            f"the client in a transaction on the stopped primary got {got!r}, not an error"
        wait_hosts(pp, lambda h: h[p0]["state"] == "down", 15, "SHOW HOSTS: the old primary down")

        rs.replicas[0].promote()
        first = wait_until(lambda: next((n for n, _, port in writer.ok if port == p1), None), 30,
                           "an insert through pgpulse to land on the promoted replica1")
        wait_until(lambda: sum(1 for n, _, _ in writer.ok if n > first) >= 10, 20,
                   "10 more inserts on the new primary")
    finally:
        writer.stop()

    assert all(rec is False for _, rec, _ in writer.ok), "an insert ran on a standby?"
    assert {port for n, _, port in writer.ok if n >= first} == {p1}, writer.ok
    assert {port for _, _, port in writer.ok} == {p0, p1}, "the read-write entry used replica2"
    late_errors = [e for e in writer.errors if e[0] > first]
    assert not late_errors, f"inserts failed after the new primary took over: {late_errors[:3]}"
    on_p1 = {n for n, _, port in writer.ok if port == p1}
    stored = {r[0] for r in rs.replicas[0].query(
        f"SELECT n FROM {WRITES_TABLE} WHERE pad = 'writer'", dbname="appdb")}
    assert on_p1 <= stored, f"acknowledged inserts missing on replica1: {sorted(on_p1 - stored)[:5]}"

    h = hosts(pp)
    assert h[p1]["role"] == "primary" and h[p1]["state"] == "up", h[p1]
    assert h[p1]["role_changes"] >= 1, h[p1]
    assert h[p0]["state"] == "down", h[p0]
    assert h[p2]["role"] == "standby", h[p2]
    # appdb_ro's servers on replica1 were closed when its role changed
    for _ in range(2):
        seen = land(pp, "appdb_ro", 3)
        assert seen == [(True, p2)] * 3, f"appdb_ro after replica1's promotion ran on {seen}"


# ------------------------------------------------- SHOW HOSTS and /metrics

def test_show_hosts_and_metrics_show_each_hosts_role_state_lag_servers_and_queries(replica_set, pulse):
    rs = replica_set
    p0, p1, p2 = rs.ports
    mport = free_port()
    pp = pulse(rs, ini({"appdb": rs.hosts_entry("read-write"),
                        "appdb_ro": rs.hosts_entry("standby")}, metrics_port=mport))
    assert ports_of(land(pp, "appdb", 2)) == {p0}
    assert ports_of(land(pp, "appdb_ro", 4)) == {p1, p2}

    def probed(h):
        return (set(h) == {p0, p1, p2}
                and all(r["checked_ms_ago"] is not None for r in h.values())
                and all(h[p]["lag_ms"] is not None and h[p]["lag_bytes"] is not None
                        for p in (p1, p2)))
    h = wait_hosts(pp, probed, 15, "SHOW HOSTS: every host probed, both replicas' lag measured")

    cur = pp.admin().execute("SHOW HOSTS")
    assert [(d.name, d.type_code) for d in cur.description] == SHOW_HOSTS_COLUMNS
    assert len(cur.fetchall()) == 3

    for port, role in ((p0, "primary"), (p1, "standby"), (p2, "standby")):
        r = h[port]
        assert (r["role"], r["state"], r["read_only"]) == (role, "up", False), r
        assert r["checked_ms_ago"] >= 0 and r["role_changes"] == 0, r
        assert r["sv_active"] + r["sv_idle"] + r["sv_used"] + r["sv_login"] >= 1, r
        assert [d.strip() for d in r["databases"].split(",")] == ["appdb", "appdb_ro"], r
        assert r["query_count"] >= 1 and r["query_p50_us"] is not None, r
        assert r["query_p50_us"] <= r["query_p95_us"] <= r["query_p99_us"], r
        assert r["last_error"] == "", r
    assert h[p0]["lag_ms"] is None and h[p0]["lag_bytes"] is None, h[p0]
    for port in (p1, p2):
        assert h[port]["lag_ms"] >= 0 and h[port]["lag_bytes"] >= 0, h[port]

    body = scrape(mport)
    for port, in_recovery in ((p0, 0), (p1, 1), (p2, 1)):
        assert host_sample(body, "pgpulse_host_up", port) == 1, port
        assert host_sample(body, "pgpulse_host_in_recovery", port) == in_recovery, port
        assert host_sample(body, "pgpulse_host_lagging", port) == 0, port
        assert host_sample(body, "pgpulse_host_role_changes_total", port) == 0, port
        assert host_sample(body, "pgpulse_host_query_duration_seconds_count", port) >= 1, port
        servers = sum(host_sample(body, "pgpulse_host_servers", port, state=s) or 0
                      for s in ("active", "idle", "tested", "login"))
        assert servers >= 1, port
    assert host_sample(body, "pgpulse_host_lag_seconds", p0) is None
    assert host_sample(body, "pgpulse_host_lag_bytes", p0) is None
    for port in (p1, p2):
        assert host_sample(body, "pgpulse_host_lag_seconds", port) >= 0, port
        assert host_sample(body, "pgpulse_host_lag_bytes", port) >= 0, port


# --------------------------------------------------------------- settings

def test_an_unknown_target_session_attrs_word_is_refused_at_startup_and_on_reload(replica_set, pulse):
    rs = replica_set
    p0, _, _ = rs.ports
    bad = ini({"good": rs.hosts_entry("read-write"), "bad": rs.hosts_entry("readwrite")})
    pp = pulse(rs, bad, start=False)
    pp.start(wait=False)
    wait_until(lambda: pp.returncode is not None or port_accepts(pp.port), 10,
               "pgpulse to exit or to listen")
    assert pp.returncode is not None, \
        f"pgpulse started with target_session_attrs=readwrite\n{pp.log()}"
    assert pp.returncode != 0
    with open(pp.ini_path) as f:
        lineno = next(i for i, line in enumerate(f, 1) if line.startswith("bad ="))
    where = f'{pp.ini_path}:{lineno}: database "bad": target_session_attrs: '
    lines = [line for line in pp.log().splitlines() if where in line]
    assert lines and "readwrite" in lines[0], pp.log()

    good = ini({"good": rs.hosts_entry("read-write")})
    pp = pulse(rs, good)
    mark = pp.log_mark()
    pp.write_config(ini({"good": rs.hosts_entry("primry")}))
    pp.reload()
    pp.wait_log(r"reload failed, keeping the running configuration: .*target_session_attrs.*primry",
                since=mark)
    assert database_tsa(pp, "good") == "read-write"
    assert ports_of(land(pp, "good", 3)) == {p0}


def test_reload_changing_target_session_attrs_moves_new_connections(replica_set, pulse):
    rs = replica_set
    p0, p1, p2 = rs.ports
    pp = pulse(rs, ini({"e": rs.hosts_entry("read-write")}))
    assert ports_of(land(pp, "e", 3)) == {p0}
    pp.write_config(ini({"e": rs.hosts_entry("standby")}))
    assert pp.command("RELOAD") == "RELOAD"
    assert database_tsa(pp, "e") == "standby"
    for _ in range(2):
        seen = land(pp, "e", 4)
        assert ports_of(seen) == {p1, p2}, f"after RELOAD to standby, ran on {seen}"


def test_replica_settings_have_their_defaults_and_take_set_and_reload(replica_set, pulse):
    rs = replica_set
    settings = dict(BASE_SETTINGS)
    del settings["replica_check_period"]
    text = "[databases]\ne = " + rs.hosts_entry() + "\n[pgpulse]\n" + \
        "".join(f"{k} = {v}\n" for k, v in settings.items())
    pp = pulse(rs, text)
    assert [config_value(pp, k) for k in ("replica_check_period", "replica_max_lag",
                                          "replica_max_lag_bytes")] == ["5", "0", "0"]
    assert pp.command("SET replica_max_lag = '2500ms'") == "SET"
    assert config_value(pp, "replica_max_lag") == "2.5"
    pp.write_config(text + "replica_check_period = 2\nreplica_max_lag_bytes = 1MB\n")
    assert pp.command("RELOAD") == "RELOAD"
    assert config_value(pp, "replica_check_period") == "2"
    assert config_value(pp, "replica_max_lag_bytes") == str(1024 * 1024)
