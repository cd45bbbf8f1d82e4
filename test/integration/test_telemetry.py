"""Latency telemetry: SHOW LATENCY against real traffic through pgpulse.

Definitions under test (microseconds, CLOCK_MONOTONIC; include/telemetry.h):
    wait     a client needs a server -> a server is linked to it (0 when one is free)
    query    a request (Query, extended batch ending in Sync, FunctionCall)
             arrives -> its ReadyForQuery goes back; includes wait
    server   the request is written to the server -> its ReadyForQuery arrives
    xact     a transaction's first request arrives -> the ReadyForQuery 'I' ending it
    connect  a server connection attempt starts -> it is ready for queries
    login, login_auth, login_wait    see test_login_telemetry.py

Percentiles come from histograms with at most 1/128 relative error (bucket
midpoints clamped to the true min/max); count, mean and max are exact.

Durations are made with pg_sleep, so every expected value has a hard lower
bound (the sleep).  The upper bound is what the client itself timed: pgpulse
sees a request arrive after the client sent it and answers before the client
reads the answer, so no duration pgpulse reports can exceed the client's own
clock for it, however loaded the machine is.  Concurrency comes from threads,
each with a psycopg connection of its own that only it touches.
"""

import select
import threading
import time

import psycopg
from psycopg import pq
import pytest

from pgpulse_harness import HIST_ERROR, ClientClock, assert_duration, wait_until

USERLIST = {"app": "app_pw", "admin": "admin_pw", "stats": "stats_pw"}

BASE_SETTINGS = {
    "listen_addr": "127.0.0.1",
    "listen_port": "{port}",
    "unix_socket_dir": "{dir}",
    "auth_type": "scram-sha-256",
    "auth_file": "{auth_file}",
    "admin_users": "admin",
    "stats_users": "stats",
    "pool_mode": "transaction",
    "default_pool_size": "2",
}

APPDB = "appdb = host={pg_host} port={pg_port} dbname=appdb"

# the kinds in SHOW LATENCY's order: the login ones (test_login_telemetry.py) came last
KINDS = ["query", "xact", "wait", "server", "connect", "login", "login_auth", "login_wait"]
COLUMNS = ["database", "user", "kind", "window", "count", "mean_us", "p50_us", "p90_us",
           "p95_us", "p99_us", "p999_us", "max_us"]
QUANTILES = ["p50_us", "p90_us", "p95_us", "p99_us", "p999_us"]


def make_ini(databases=(APPDB,), **settings):
    merged = dict(BASE_SETTINGS)
    merged.update({k: str(v) for k, v in settings.items()})
    lines = ["[databases]", *databases, "[pgbouncer]"]
    lines += [f"{k} = {v}" for k, v in merged.items()]
    return "\n".join(lines) + "\n"


def start(pgpulse, databases=(APPDB,), **settings):
    return pgpulse(make_ini(databases, **settings), USERLIST)


def thread_conn(pp, dbname="appdb"):
    """An autocommit connection for one thread (which closes it)."""
    return psycopg.connect(pp.dsn(dbname=dbname), autocommit=True, prepare_threshold=None,
                           connect_timeout=10)


def latency(pp, window=None, user="admin"):
    """SHOW LATENCY [window] as {(database, user, kind): row}."""
    rows = pp.show("LATENCY" + (f" {window}" if window else ""), user=user)
    out = {(r["database"], r["user"], r["kind"]): r for r in rows}
    assert len(out) == len(rows), f"duplicate (database, user, kind) rows: {rows}"
    return out


def pool_latency(pp, kind, database="appdb", user="app", window=None):
    rows = latency(pp, window)
    key = (database, user, kind)
    assert key in rows, f"no SHOW LATENCY row for {key}: {sorted(rows)}"
    return rows[key]


def pool_row(pp, database="appdb", user="app"):
    rows = [r for r in pp.show("POOLS") if r["database"] == database and r["user"] == user]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def run_pipeline(conn, sql, n, sync_each=True, timeout=10.0):
    """Send n executions of sql (extended protocol) in libpq pipeline mode
    without waiting for any reply: one Sync after each (sync_each) or one
    Sync after them all.  Then read every result; return the number of Syncs
    answered (one ReadyForQuery each)."""
    pgc = conn.pgconn
    pgc.enter_pipeline_mode()
    syncs = 0
    for _ in range(n):
        pgc.send_query_params(sql, None)
        if sync_each:
            pgc.pipeline_sync()
            syncs += 1
    if not sync_each:
        pgc.pipeline_sync()
        syncs = 1
    deadline = time.monotonic() + timeout
    while pgc.flush():
        assert time.monotonic() < deadline, "pipeline not sent in time"
        select.select([], [pgc.socket], [], 0.1)
    answered = 0
    errors = []
    while answered < syncs:
        while pgc.is_busy():
            assert time.monotonic() < deadline, \
                f"only {answered} of {syncs} pipeline syncs answered within {timeout}s"
            select.select([pgc.socket], [], [], 0.1)
            pgc.consume_input()
        res = pgc.get_result()
        if res is None:
            continue
        if res.status == pq.ExecStatus.PIPELINE_SYNC:
            answered += 1
        elif res.status != pq.ExecStatus.TUPLES_OK:
            errors.append(res.error_message.decode(errors="replace"))
    pgc.exit_pipeline_mode()
    assert not errors, errors
    return answered


class Worker(threading.Thread):
    """Run fn(conn) on a connection of the thread's own; keep the error."""

    def __init__(self, pp, fn, dbname="appdb"):
        super().__init__(daemon=True)
        self.pp, self.fn, self.dbname = pp, fn, dbname
        self.error = None
        self.start()

    def run(self):
        try:
            with thread_conn(self.pp, self.dbname) as conn:
                self.fn(conn)
        except BaseException as e:  # reported by finish()
            self.error = e

    def finish(self, timeout=20):
        self.join(timeout)
        assert not self.is_alive(), f"worker still running after {timeout}s"
        if self.error:
            raise self.error


# ----------------------------------------------------------------- tests


def test_percentiles_of_a_known_mix_of_query_times(pgpulse):
    """40 queries of 10 ms and 10 of 100 ms over 4 clients, with 4 servers
    open beforehand: p50 is ~10 ms, p90 and up ~100 ms, the mean is the
    mix's mean, every query is a transaction, and nobody waited."""
    pp = start(pgpulse, default_pool_size=4, min_pool_size=4)
    # the pool exists once a client logged in; min_pool_size then fills it
    with pp.connect(autocommit=True):
        wait_until(lambda: (pool_row(pp) or {}).get("sv_idle") == 4, 10,
                   "min_pool_size to open 4 idle servers")
    before = latency(pp)
    assert before[("appdb", "app", "query")]["count"] == 0, before

    long_per_client = [3, 3, 2, 2]
    clock = ClientClock()

    def client(n_long):
        def fn(conn):
            for _ in range(10):
                clock.run(conn, "SELECT pg_sleep(0.01)")
            for _ in range(n_long):
                clock.run(conn, "SELECT pg_sleep(0.1)")
        return fn

    workers = [Worker(pp, client(n)) for n in long_per_client]
    for w in workers:
        w.finish()

    rows = latency(pp)
    for kind in ("query", "server", "xact"):
        row = rows[("appdb", "app", kind)]
        assert row["window"] == "1m", row
        assert row["count"] == 50, row
        assert_duration(row, "p50_us", 10_000, clock)
        for q in ("p90_us", "p95_us", "p99_us", "p999_us"):
            assert_duration(row, q, 100_000, clock)
        assert_duration(row, "max_us", 100_000, clock)
        # (40 * 10 ms + 10 * 100 ms) / 50 = 28 ms
        assert_duration(row, "mean_us", 28_000, clock)
    # the server's part of a query cannot exceed the whole of it
    assert rows[("appdb", "app", "server")]["mean_us"] <= rows[("appdb", "app", "query")]["mean_us"]
    wait = rows[("appdb", "app", "wait")]
    assert wait["count"] == 50, wait          # each transaction needed a server
    # an idle server was there every time: a wait would have lasted a query (>= 10 ms)
    assert wait["p99_us"] < 1000 and wait["max_us"] < 1000, wait
    connect = rows[("appdb", "app", "connect")]
    assert connect["count"] == 4, connect


def test_waiting_for_a_server_is_wait_and_query_time_but_not_server_time(pgpulse):
    """Pool size 1: one client holds the server in a transaction for 0.5 s
    while another client's query waits.  The wait shows as >= 0.5 s, the
    waiting query's duration includes it, and no server duration does."""
    pp = start(pgpulse, default_pool_size=1)
    holder = pp.connect(autocommit=True)
    holder.execute("BEGIN")
    holder.execute("SELECT 1")

    waiter = Worker(pp, lambda conn: conn.execute("SELECT 1"))
    wait_until(lambda: (pool_row(pp) or {}).get("cl_waiting") == 1, 10,
               "the second client to wait for the only server")
    # The scenario itself: the server stays taken for 0.5 s while the
    # second client is known to be waiting (not a wait for something to happen).
    time.sleep(0.5)
    holder.execute("COMMIT")
    waiter.finish()

    rows = latency(pp)
    wait = rows[("appdb", "app", "wait")]
    query = rows[("appdb", "app", "query")]
    server = rows[("appdb", "app", "server")]
    # two transactions needed a server: the holder's (free at once), the waiter's
    assert wait["count"] == 2, wait
    assert 500_000 <= wait["max_us"] < 5_000_000, wait
    # the waiting query's duration includes its wait
    assert query["count"] == 4, query          # BEGIN, SELECT 1, COMMIT; SELECT 1
    assert query["max_us"] >= wait["max_us"], (query, wait)
    # ... while the server never spent that time on any request
    assert server["count"] == 4, server
    assert server["max_us"] < wait["max_us"], (server, wait)
    assert server["max_us"] < query["max_us"], (server, query)


def test_wait_includes_opening_a_new_server(pgpulse):
    """Pool size 2, one server open and taken: the next client's query waits
    while a second server connects, and that connection is ready only after
    its connect_query (pg_sleep(0.2)) -- so the wait is at least 0.2 s."""
    db = APPDB + " connect_query='SELECT pg_sleep(0.2)'"
    pp = start(pgpulse, databases=(db,), default_pool_size=2)
    holder = pp.connect(autocommit=True)
    holder.execute("BEGIN")
    # one client has needed one server so far
    servers = [r for r in pp.show("SERVERS") if r["database"] == "appdb"]
    assert len(servers) == 1, f"more servers than clients needed: {servers}"
    other = pp.connect(autocommit=True)
    assert other.execute("SELECT 1").fetchone() == (1,)
    holder.execute("COMMIT")

    rows = latency(pp)
    connect = rows[("appdb", "app", "connect")]
    wait = rows[("appdb", "app", "wait")]
    query = rows[("appdb", "app", "query")]
    assert connect["count"] == 2, connect
    assert connect["p50_us"] >= 200_000 * (1 - HIST_ERROR), connect   # the smaller of two
    assert wait["count"] == 2, wait            # the holder's BEGIN (free at once), the other's
    assert 200_000 <= wait["max_us"] < 5_000_000, wait
    assert query["max_us"] >= wait["max_us"], (query, wait)
    assert rows[("appdb", "app", "server")]["max_us"] < 200_000, rows[("appdb", "app", "server")]


def test_wait_includes_time_held_by_pause(pgpulse):
    """A query sent while the database is PAUSEd waits until RESUME: its
    wait is at least the 0.3 s the pause was held after it arrived."""
    pp = start(pgpulse)
    conn = pp.connect(autocommit=True)
    assert pp.command("PAUSE appdb") == "PAUSE"
    waiter = Worker(pp, lambda c: c.execute("SELECT 1"))
    wait_until(lambda: (pool_row(pp) or {}).get("cl_waiting") == 1, 10,
               "the query to wait behind PAUSE")
    # the scenario: the pause lasts 0.3 s after the query is known to wait
    time.sleep(0.3)
    assert pp.command("RESUME appdb") == "RESUME"
    waiter.finish()
    conn.execute("SELECT 2")

    rows = latency(pp)
    wait = rows[("appdb", "app", "wait")]
    assert wait["count"] == 2, wait
    assert 300_000 <= wait["max_us"] < 5_000_000, wait
    assert rows[("appdb", "app", "query")]["max_us"] >= wait["max_us"]


def test_pipelined_requests_are_each_timed_to_their_own_ready_for_query(pgpulse):
    """Ten pipelined requests of pg_sleep(0.005), each with its own Sync,
    all sent before the first reply: ten requests are counted, none shorter
    than its sleep, and the later ones include the time they queued behind
    the earlier ones (the last finishes after all ten sleeps)."""
    pp = start(pgpulse)
    n, sleep_us = 10, 5000
    conn = pp.connect(autocommit=True, prepare_threshold=None)
    assert run_pipeline(conn, b"SELECT pg_sleep(0.005)", n) == n

    rows = latency(pp)
    for kind in ("query", "server"):
        row = rows[("appdb", "app", kind)]
        assert row["count"] == n, row
        assert row["p50_us"] >= sleep_us * (1 - HIST_ERROR), row
        # request i arrived with the others and was answered after i+1 sleeps:
        # one sleep's slack for the requests arriving a little apart
        assert row["max_us"] >= (n - 1) * sleep_us, row
        assert row["mean_us"] >= ((n + 1) / 2 - 1) * sleep_us, row
        assert row["max_us"] < 5_000_000, row


def test_pipelined_autocommit_requests_are_each_a_transaction(pgpulse):
    """Ten pipelined autocommit requests, each with its own Sync, are ten
    transactions (each Sync gets a ReadyForQuery 'I', as SHOW STATS counts
    them), each timed from its own request's arrival."""
    pp = start(pgpulse)
    n, sleep_us = 10, 5000
    conn = pp.connect(autocommit=True, prepare_threshold=None)
    assert run_pipeline(conn, b"SELECT pg_sleep(0.005)", n) == n

    stats = [r for r in pp.show("STATS") if r["database"] == "appdb"]
    assert stats and stats[0]["total_xact_count"] == n, stats
    xact = pool_latency(pp, "xact")
    assert xact["count"] == n, xact
    assert xact["p50_us"] >= sleep_us * (1 - HIST_ERROR), xact
    assert xact["max_us"] >= (n - 1) * sleep_us, xact


def test_extended_protocol_request_counts_once_per_sync(pgpulse):
    """psycopg with parameters sends Parse/Bind/Describe/Execute/Sync per
    execute: seven executes are seven requests, not one per message."""
    pp = start(pgpulse)
    conn = pp.connect(autocommit=True, prepare_threshold=None)
    for i in range(7):
        assert conn.execute("SELECT %s::int", (i,)).fetchone() == (i,)

    rows = latency(pp)
    for kind in ("query", "server", "xact"):
        assert rows[("appdb", "app", kind)]["count"] == 7, rows[("appdb", "app", kind)]


def test_executes_batched_before_one_sync_count_as_one_request(pgpulse):
    """Six Parse/Bind/Execute groups followed by a single Sync get a single
    ReadyForQuery: one request, lasting all six sleeps."""
    pp = start(pgpulse)
    conn = pp.connect(autocommit=True, prepare_threshold=None)
    assert run_pipeline(conn, b"SELECT pg_sleep(0.01)", 6, sync_each=False) == 1

    rows = latency(pp)
    for kind in ("query", "server", "xact"):
        row = rows[("appdb", "app", kind)]
        assert row["count"] == 1, row
        assert 60_000 <= row["max_us"] < 5_000_000, row


def test_explicit_transaction_is_one_xact_spanning_its_statements(pgpulse):
    """BEGIN; three pg_sleep(0.02); COMMIT: five queries, one transaction of
    at least 60 ms, which lasts at least as long as its queries together."""
    pp = start(pgpulse)
    conn = pp.connect(autocommit=True)
    conn.execute("BEGIN")
    for _ in range(3):
        conn.execute("SELECT pg_sleep(0.02)")
    conn.execute("COMMIT")

    rows = latency(pp)
    query = rows[("appdb", "app", "query")]
    xact = rows[("appdb", "app", "xact")]
    wait = rows[("appdb", "app", "wait")]
    assert query["count"] == 5, query
    assert xact["count"] == 1, xact
    assert 60_000 <= xact["max_us"] < 5_000_000, xact
    # one value: every percentile is that value
    assert all(xact[q] == xact["max_us"] for q in QUANTILES), xact
    assert xact["mean_us"] == xact["max_us"], xact
    # the five queries ran one after another inside the transaction
    assert xact["max_us"] >= query["mean_us"] * query["count"] - query["count"], (xact, query)
    # the client needed a server once, for the whole transaction
    assert wait["count"] == 1, wait


def test_rolled_back_failed_transaction_is_one_xact(pgpulse):
    """A transaction that fails and is rolled back is still one transaction,
    from BEGIN to the ROLLBACK that ends it."""
    pp = start(pgpulse)
    conn = pp.connect(autocommit=True)
    conn.execute("BEGIN")
    conn.execute("SELECT pg_sleep(0.03)")
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("SELECT 1/0")
    conn.execute("ROLLBACK")

    rows = latency(pp)
    query = rows[("appdb", "app", "query")]
    xact = rows[("appdb", "app", "xact")]
    assert query["count"] == 4, query
    assert xact["count"] == 1, xact
    assert 30_000 <= xact["max_us"] < 5_000_000, xact


def test_connect_count_matches_the_server_connections_opened(pgpulse, pg):
    """Two clients hold a transaction each, so the pool opens two servers:
    two connects are counted, each took some time, and none can have
    taken longer than pgpulse has been running."""
    started = time.monotonic()
    pp = start(pgpulse, default_pool_size=2)
    first = pp.connect(autocommit=True)
    second = pp.connect(autocommit=True)
    first.execute("BEGIN")
    second.execute("BEGIN")
    elapsed_us = (time.monotonic() - started) * 1e6

    servers = [r for r in pp.show("SERVERS") if r["database"] == "appdb" and r["user"] == "app"]
    assert len(servers) == 2, servers
    ports = {r["local_port"] for r in servers}
    seen = pg.query("SELECT client_port FROM pg_stat_activity WHERE datname = 'appdb'"
                    " AND usename = 'app' AND client_port = ANY(%s)", (list(ports),))
    assert {r[0] for r in seen} == ports, (seen, servers)

    connect = pool_latency(pp, "connect")
    assert connect["count"] == 2, connect
    # of two values p50 is the smaller one: both connects took time
    assert connect["p50_us"] > 0, connect
    assert connect["max_us"] < elapsed_us, (connect, elapsed_us)
    first.execute("COMMIT")
    second.execute("COMMIT")


def test_connect_time_includes_connect_query(pgpulse):
    """A server is ready only after the database's connect_query: with
    connect_query = pg_sleep(0.2) the connect takes at least 0.2 s."""
    db = APPDB + " connect_query='SELECT pg_sleep(0.2)'"
    pp = start(pgpulse, databases=(db,))
    conn = pp.connect(autocommit=True)
    assert conn.execute("SELECT 1").fetchone() == (1,)

    rows = latency(pp)
    connect = rows[("appdb", "app", "connect")]
    assert connect["count"] == 1, connect
    assert 200_000 <= connect["max_us"] < 5_000_000, connect
    # pgpulse's own connect_query is not a client's request
    assert rows[("appdb", "app", "query")]["count"] == 1, rows[("appdb", "app", "query")]


def test_session_mode_client_needs_a_server_once(pgpulse):
    """In session mode the client keeps its server: four queries are four
    requests and four transactions, but only one wait for a server."""
    pp = start(pgpulse, pool_mode="session")
    conn = pp.connect(autocommit=True)
    for _ in range(4):
        conn.execute("SELECT 1")

    rows = latency(pp)
    assert rows[("appdb", "app", "query")]["count"] == 4, rows[("appdb", "app", "query")]
    assert rows[("appdb", "app", "xact")]["count"] == 4, rows[("appdb", "app", "xact")]
    assert rows[("appdb", "app", "wait")]["count"] == 1, rows[("appdb", "app", "wait")]


def test_query_larger_than_the_buffers_counts_once(pgpulse):
    """A 1 MB query passes through in pieces; it is still one request."""
    pp = start(pgpulse)
    conn = pp.connect(autocommit=True)
    text = "x" * (1 << 20)
    assert conn.execute(f"SELECT length('{text}')").fetchone() == (1 << 20,)

    rows = latency(pp)
    for kind in ("query", "server", "xact"):
        assert rows[("appdb", "app", kind)]["count"] == 1, rows[("appdb", "app", kind)]


def test_every_window_shows_traffic_of_the_last_seconds(pgpulse):
    """Traffic seconds old is in every window: SHOW LATENCY (default 1m),
    1m, 5m, 15m and all agree on it, each row naming its window.  Reading
    the console does not count as traffic."""
    pp = start(pgpulse)
    conn = pp.connect(autocommit=True)
    conn.execute("SELECT pg_sleep(0.02)")
    conn.execute("SELECT 1")
    conn.execute("SELECT 2")

    views = {}
    for window in (None, "1m", "5m", "15m", "all", "ALL"):
        rows = latency(pp, window)
        name = (window or "1m").lower()
        assert {r["window"] for r in rows.values()} == {name}, (window, rows)
        views[window] = rows
    for key in views["all"]:
        want = {c: views["all"][key][c] for c in COLUMNS[4:]}
        for window, rows in views.items():
            got = {c: rows[key][c] for c in COLUMNS[4:]}
            assert got == want, f"{key}: window {window} {got} != all {want}"
    assert views["all"][("appdb", "app", "query")]["count"] == 3, views["all"]


def test_unknown_latency_window_is_refused_with_22023(pgpulse):
    pp = start(pgpulse)
    with pytest.raises(psycopg.Error) as err:
        pp.show("LATENCY 2m")
    assert err.value.sqlstate == "22023", err.value
    assert "2m" in str(err.value), err.value
    # the console goes on working
    assert latency(pp, "all")[("*", "*", "query")]["count"] == 0


def test_total_rows_merge_the_pools(pgpulse):
    """Two pools (two databases): the '*' rows count everything, keep the
    larger max, and take percentiles over the merged values, not per pool:
    2 queries of 50 ms in one pool and 3 short ones in the other give a
    short p50 and a 50 ms p90 in total."""
    otherdb = "otherdb = host={pg_host} port={pg_port} dbname=postgres"
    pp = start(pgpulse, databases=(APPDB, otherdb))
    clock = ClientClock()
    slow = pp.connect(autocommit=True)
    for _ in range(2):
        clock.run(slow, "SELECT pg_sleep(0.05)")
    fast = pp.connect(dbname="otherdb", autocommit=True)
    for _ in range(3):
        clock.run(fast, "SELECT 1")

    rows = latency(pp)
    for kind in KINDS:
        a = rows[("appdb", "app", kind)]
        b = rows[("otherdb", "app", kind)]
        t = rows[("*", "*", kind)]
        assert t["count"] == a["count"] + b["count"], (kind, a, b, t)
        assert t["max_us"] == max(a["max_us"], b["max_us"]), (kind, a, b, t)
        if t["count"]:
            # mean_us is truncated: each pool's sum is in [mean*n, (mean+1)*n)
            lo = (a["mean_us"] * a["count"] + b["mean_us"] * b["count"]) // t["count"]
            hi = ((a["mean_us"] + 1) * a["count"] + b["mean_us"] * b["count"]
                  + b["count"]) // t["count"]
            assert lo <= t["mean_us"] <= hi, (kind, a, b, t)
    assert rows[("appdb", "app", "connect")]["count"] == 1
    assert rows[("otherdb", "app", "connect")]["count"] == 1
    query = rows[("*", "*", "query")]
    assert query["count"] == 5, query
    # 3rd of 5: a short one, at most the 3rd shortest the clients timed
    assert query["p50_us"] <= clock.quantile_bound(0.5, 5), (query, clock.us)
    assert_duration(query, "p90_us", 50_000, clock)                 # 5th of 5: a slow one


def test_telemetry_off_records_nothing_while_traffic_flows(pgpulse):
    pp = start(pgpulse, telemetry=0)
    conn = pp.connect(autocommit=True)
    conn.execute("BEGIN")
    assert conn.execute("SELECT pg_sleep(0.01), 42").fetchone()[1] == 42
    conn.execute("COMMIT")
    assert conn.execute("SELECT %s::int", (7,)).fetchone() == (7,)

    for window in ("1m", "all"):
        rows = latency(pp, window)
        assert ("appdb", "app", "query") in rows, rows
        for key, row in rows.items():
            assert all(row[c] == 0 for c in COLUMNS[4:]), (window, key, row)


def test_telemetry_turned_on_by_reload_counts_from_then_on(pgpulse):
    pp = start(pgpulse, telemetry=0)
    conn = pp.connect(autocommit=True)
    conn.execute("SELECT 1")
    pp.write_config(make_ini(telemetry=1))
    assert pp.command("RELOAD") == "RELOAD"   # applied before it answers
    conn.execute("SELECT 2")
    conn.execute("SELECT 3")

    query = pool_latency(pp, "query", window="all")
    assert query["count"] == 2, query


def test_show_latency_columns_and_row_order(pgpulse):
    """The columns in the documented order; per pool (by database, then
    user) one row per kind in the order query, xact, wait, server, connect,
    login, login_auth, login_wait; then the same eight for the total ('*',
    '*')."""
    otherdb = "otherdb = host={pg_host} port={pg_port} dbname=postgres"
    pp = start(pgpulse, databases=(APPDB, otherdb))
    pp.connect(dbname="otherdb", autocommit=True).execute("SELECT 1")
    pp.connect(autocommit=True).execute("SELECT 1")

    cur = pp.admin().execute("SHOW LATENCY")
    assert [d.name for d in cur.description] == COLUMNS
    rows = cur.fetchall()
    keys = [tuple(r[:3]) for r in rows]
    assert keys == [("appdb", "app", k) for k in KINDS] + \
        [("otherdb", "app", k) for k in KINDS] + [("*", "*", k) for k in KINDS], keys
    for r in rows:
        assert all(isinstance(v, int) for v in r[4:]), r


def test_stats_user_can_show_latency(pgpulse):
    pp = start(pgpulse)
    pp.connect(autocommit=True).execute("SELECT 1")
    seen_by_stats = latency(pp, "all", user="stats")
    seen_by_admin = latency(pp, "all")
    assert seen_by_stats[("appdb", "app", "query")]["count"] == 1, seen_by_stats
    assert seen_by_stats == seen_by_admin
