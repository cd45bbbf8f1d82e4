"""Login telemetry (issue 14, doc/telemetry.md "Logins"): how long logins
take, how many are under way, and how each one ended, on SHOW LOGINS,
SHOW LATENCY and /metrics.

Definitions under test (include/login_stats.h):
    login        the client's socket is accepted -> its hello's ReadyForQuery
    login_auth   its startup packet is read -> it is authenticated
    login_wait   it is authenticated -> its hello's ReadyForQuery
    stages       before_startup, auth, server_wait: a login is in flight in
                 one of them until it ends, once: completed, failed (pgpulse
                 ended it) or abandoned (the client closed first)

Counts are checked exactly. A duration is bounded below by what the login
must take (an auth_query that sleeps in PostgreSQL, a server held by
another client for a time the test measures) and above by the client's own
timing of its connect (pgpulse_harness.ClientClock).
"""

import select
import socket
import struct
import threading
import time

import psycopg
from psycopg import pq
import pytest

from pgpulse_harness import ClientClock, assert_duration, build_ini, wait_until
from test_auth import AUTH_SASL, AUTH_SASL_CONTINUE, RawClient
from test_auth_query import AUTH_USERS, ini as auth_query_ini, role  # noqa: F401 (fixture)
from test_failures import promtool_accepts
from test_metrics import DATABASES, parse_metrics, scrape, series, start, value

# heldb: appdb again, in session mode with one server, which a test can hold
HELD_DATABASES = dict(DATABASES, heldb="host={pg_host} port={pg_port} dbname=appdb pool_mode=session pool_size=1")
STAGES = ["before_startup", "auth", "server_wait"]
PHASES = {"total": "login", "auth": "login_auth", "server_wait": "login_wait"}


def logins(pp):
    """SHOW LOGINS as {(database, user, pool): row}; the instance's row is (None, None, None)."""
    rows = pp.show("LOGINS")
    out = {(r["database"], r["user"], r["pool"]): r for r in rows}
    assert len(out) == len(rows), rows
    return out


def instance(pp):
    return logins(pp)[(None, None, None)]


def pool_logins(pp, database, user="app"):
    return logins(pp).get((database, user, ""))


def in_flight_by_stage(row):
    return tuple(row[f"in_flight_{s}"] for s in STAGES)


def latency_all(pp, database, kind, user="app"):
    rows = [r for r in pp.show("LATENCY all") if (r["database"], r["user"], r["kind"]) == (database, user, kind)]
    assert len(rows) == 1, rows
    return rows[0]


def login_until(pp, reached, dbname="heldb", user="app"):
    """A libpq connection started without blocking and driven until
    reached() (pgpulse's view of it) holds; returned unfinished, so the
    caller can give up on it (finish(): libpq closes the socket without a
    Terminate, as a client whose connect timed out does)."""
    conninfo = pp.dsn(dbname=dbname, user=user) + " connect_timeout=30"
    pgc = pq.PGconn.connect_start(conninfo.encode())
    status = pq.PollingStatus.WRITING
    try:
        deadline = time.monotonic() + 10
        while not reached():
            assert time.monotonic() < deadline, "the login never reached the expected stage"
            if status == pq.PollingStatus.READING:
                select.select([pgc.socket], [], [], 0.05)
            elif status == pq.PollingStatus.WRITING:
                select.select([], [pgc.socket], [], 0.05)
            status = pgc.connect_poll()
            assert status not in (pq.PollingStatus.FAILED, pq.PollingStatus.OK), \
                (status, pgc.error_message)
    except BaseException:
        pgc.finish()
        raise
    return pgc


def in_scram(pp, past_first_message=False):
    """A client that sent its startup packet and stops in the middle of
    SCRAM: after pgpulse's SASL request, or after its server-first message."""
    c = RawClient(pp.port)
    c.send_startup({"user": "app", "database": "appdb"})
    mtype, body = c.read_msg()
    assert mtype == b"R" and struct.unpack("!I", body[:4])[0] == AUTH_SASL, (mtype, body)
    if past_first_message:
        first = b"n,,n=,r=loginstormnonce0123456789"
        c.send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
        mtype, body = c.read_msg()
        assert mtype == b"R" and struct.unpack("!I", body[:4])[0] == AUTH_SASL_CONTINUE, (mtype, body)
    return c


def leave(sock):
    """Close without a Terminate, as a client that gave up does."""
    sock.close()


def storm(pp, n, threads=6):
    """n logins through psycopg (each runs a query and leaves), from several threads at once."""
    errors = []

    def work(k):
        try:
            for _ in range(k):
                with psycopg.connect(pp.dsn(), autocommit=True, connect_timeout=10) as c:
                    c.execute("SELECT 1")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    share = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
    ts = [threading.Thread(target=work, args=(k,)) for k in share]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[:3]


def test_login_storm_counts_each_login_once_as_completed_failed_or_abandoned_by_stage(pgpulse):
    """30 logins, a refused one, and eight that the client abandons: four
    bare connections that never send a startup packet, three in the middle
    of SCRAM, one that gives up waiting for a session server another client
    holds. One login in each stage is in flight at once, then none; SHOW
    LOGINS, SHOW LATENCY and /metrics count every login exactly once."""
    pp = start(pgpulse, databases=HELD_DATABASES)
    # the harness's readiness probes are bare connections too: count from after them
    wait_until(lambda: instance(pp)["in_flight"] == 0, 10, "the readiness probes to end")
    before = instance(pp)

    storm(pp, 30)
    holder = pp.connect(dbname="heldb", autocommit=True)
    holder.execute("SELECT 1")  # the session pool's one server is its own now

    # one login held in each stage at once
    bare = socket.create_connection(("127.0.0.1", pp.port), timeout=10)
    scram = in_scram(pp)
    waiter = login_until(pp, lambda: (pool_logins(pp, "heldb") or {}).get("in_flight_server_wait") == 1)
    wait_until(lambda: in_flight_by_stage(instance(pp)) == (1, 1, 1), 10, "one login in each stage")
    row = instance(pp)
    assert row["in_flight"] == 3, row
    samples = parse_metrics(scrape(pp))
    for stage in STAGES:
        assert value(samples, "pgpulse_logins_in_flight", stage=stage) == 1, stage
    assert pool_logins(pp, "heldb")["in_flight"] == 1

    # they give up, and more of their kind
    waiter.finish()
    leave(bare)
    leave(scram.sock)
    for _ in range(3):
        leave(socket.create_connection(("127.0.0.1", pp.port), timeout=10))
    for past_first in (False, True):
        leave(in_scram(pp, past_first).sock)
    # a refused login is a failure, not an abandon
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pp.dsn(password="wrong"), connect_timeout=10)

    def delta():
        now = instance(pp)
        return {k: now[k] - before[k] for k in ("completed", "failed", "abandoned_before_startup",
                                                  "abandoned_auth", "abandoned_server_wait")}
    expected = {"completed": 31, "failed": 1, "abandoned_before_startup": 4, "abandoned_auth": 3,
                "abandoned_server_wait": 1}
    wait_until(lambda: delta() == expected, 10, f"the logins to end as {expected}")
    row = instance(pp)
    assert row["in_flight"] == 0 and in_flight_by_stage(row) == (0, 0, 0), row
    assert row["abandoned"] - before["abandoned"] == 8, row

    appdb, heldb = pool_logins(pp, "appdb"), pool_logins(pp, "heldb")
    assert (appdb["completed"], appdb["failed"], appdb["abandoned"], appdb["in_flight"]) == (30, 0, 0, 0), appdb
    assert (heldb["completed"], heldb["abandoned_server_wait"], heldb["in_flight"]) == (1, 1, 0), heldb
    # durations of completed logins only: the abandoned waiter has none
    for kind in PHASES.values():
        assert latency_all(pp, "appdb", kind)["count"] == 30, kind
        assert latency_all(pp, "heldb", kind)["count"] == 1, kind

    body = scrape(pp)
    samples = parse_metrics(body)
    for stage in STAGES:
        assert value(samples, "pgpulse_logins_in_flight", stage=stage) == 0, stage
        assert value(samples, "pgpulse_logins_abandoned_total", stage=stage) == \
            before[f"abandoned_{stage}"] + expected[f"abandoned_{stage}"], stage
    assert value(samples, "pgpulse_logins_completed_total") == before["completed"] + 31
    assert value(samples, "pgpulse_logins_failed_total") == before["failed"] + 1
    assert value(samples, "pgpulse_client_login_failures_total", reason="wrong_password") == 1
    hist = "pgpulse_login_duration_seconds"
    for database, n in (("appdb", 30), ("heldb", 1)):
        sums = {}
        for phase in PHASES:
            labels = {"database": database, "user": "app", "phase": phase}
            assert value(samples, hist + "_count", **labels) == n, labels
            assert value(samples, hist + "_bucket", le="+Inf", **labels) == n, labels
            sums[phase] = value(samples, hist + "_sum", **labels)
        # the parts are disjoint spans inside the whole (the sums are printed to the microsecond)
        assert sums["auth"] + sums["server_wait"] <= sums["total"] + 2e-6, (database, sums)
    # no window summaries for the login kinds: the histogram is their one export
    assert not [lab for lab, _ in series(samples, "pgpulse_latency_seconds") if lab["kind"].startswith("login")]
    promtool_accepts(body)


def test_login_wait_behind_a_held_session_server_is_at_least_the_hold(pgpulse):
    """In session mode with one server, held by another client, a login
    waits for the server after it authenticated: its server_wait (and its
    total) is at least the time the test held the server after seeing the
    login wait, and at most what the client timed for its connect."""
    pp = start(pgpulse, databases=HELD_DATABASES)
    clock = ClientClock()
    holder = clock.time(pp.connect, dbname="heldb", autocommit=True)
    holder.execute("SELECT 1")
    waiter = []
    t = threading.Thread(target=lambda: waiter.append(
        clock.time(psycopg.connect, pp.dsn(dbname="heldb"), autocommit=True, connect_timeout=30)))
    t.start()
    try:
        wait_until(lambda: (pool_logins(pp, "heldb") or {}).get("in_flight_server_wait") == 1, 10,
                   "the login to wait for the held server")
        seen_waiting = time.monotonic()
        # hold the server a known time longer
        wait_until(lambda: time.monotonic() - seen_waiting >= 0.3, 5, "0.3 s of holding")
        held_us = (time.monotonic() - seen_waiting) * 1e6
    finally:
        holder.close()
        t.join(30)
    assert waiter, "the waiting login did not complete"
    waiter[0].close()
    for kind in ("login_wait", "login"):
        row = latency_all(pp, "heldb", kind)
        assert row["count"] == 2, row
        assert_duration(row, "max_us", held_us, clock)
    assert pool_logins(pp, "heldb")["completed"] == 2


def test_session_login_failed_by_query_wait_timeout_is_a_failed_login_of_its_pool(pgpulse):
    """A session-mode login whose server never comes (query_wait_timeout)
    was refused by pgpulse: a failed login of its pool, a client login
    failure (server_unavailable), not an abandon."""
    pp = start(pgpulse, databases=HELD_DATABASES, query_wait_timeout=1)
    holder = pp.connect(dbname="heldb", autocommit=True)
    holder.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
        psycopg.connect(pp.dsn(dbname="heldb"), connect_timeout=30)
    heldb = pool_logins(pp, "heldb")
    assert (heldb["completed"], heldb["failed"], heldb["abandoned"], heldb["in_flight"]) == (1, 1, 0, 0), heldb
    samples = parse_metrics(scrape(pp))
    assert value(samples, "pgpulse_client_login_failures_total", reason="server_unavailable") == 1
    assert value(samples, "pgpulse_logins_abandoned_total", stage="server_wait") == 0


def test_login_auth_includes_a_slow_auth_query_lookup(pgpulse, role):
    """A user found through auth_query: the lookup (a query that sleeps
    0.2 s in PostgreSQL) is part of authentication, so login_auth and the
    login's total are at least 0.2 s, and at most the client's timing of its
    connect."""
    role("aq_login_slow", "slow_pw")
    slow = "SELECT rolname, rolpassword FROM pg_authid, pg_sleep(0.2) WHERE rolname = $1"
    pp = pgpulse(auth_query_ini({"auth_query": slow}), AUTH_USERS)
    clock = ClientClock()
    conn = clock.time(pp.connect, user="aq_login_slow", password="slow_pw", autocommit=True)
    conn.execute("SELECT 1")
    for kind in ("login_auth", "login"):
        row = latency_all(pp, "appdb", kind, user="aq_login_slow")
        assert row["count"] == 1, row
        for column in ("max_us", "mean_us"):
            assert_duration(row, column, 200_000, clock)
    auth = latency_all(pp, "appdb", "login_auth", user="aq_login_slow")
    total = latency_all(pp, "appdb", "login", user="aq_login_slow")
    wait = latency_all(pp, "appdb", "login_wait", user="aq_login_slow")
    assert auth["mean_us"] + wait["mean_us"] <= total["mean_us"], (auth, wait, total)


def test_show_logins_columns_and_rows(pgpulse):
    """The instance's row first (NULL database, user and pool), then one row
    per pool by database and user; the documented columns in order."""
    pp = start(pgpulse, databases=HELD_DATABASES)
    pp.connect(dbname="otherdb", autocommit=True).execute("SELECT 1")
    pp.connect(autocommit=True).execute("SELECT 1")
    cur = pp.admin().execute("SHOW LOGINS")
    assert [d.name for d in cur.description] == [
        "database", "user", "pool", "in_flight", "completed", "failed", "abandoned",
        "in_flight_before_startup", "in_flight_auth", "in_flight_server_wait",
        "abandoned_before_startup", "abandoned_auth", "abandoned_server_wait"]
    rows = cur.fetchall()
    assert [r[:3] for r in rows] == [(None, None, None), ("appdb", "app", ""), ("otherdb", "app", "")], rows
    assert [r[4] for r in rows[1:]] == [1, 1], rows
