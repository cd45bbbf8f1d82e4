"""Failures counted and attributed (issue 14, doc/telemetry.md "Failures"):
waits cut off by query_wait_timeout in total_wait_time and the wait
histogram, timeouts, failed logins by reason, failed server connections,
and the errors clients were sent by SQLSTATE class, server-sent apart from
pgpulse-sent: on SHOW STATS, SHOW FAILURES and /metrics (checked by value
and with promtool).
"""

import socket
import struct
import subprocess
import threading

import psycopg
import pytest

from pgpulse_harness import free_port, wait_until
from test_metrics import DATABASES, parse_metrics, promtool, scrape, series, start, value


def promtool_accepts(body):
    r = subprocess.run([promtool(), "check", "metrics"], input=body, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"promtool check metrics complained (exit {r.returncode}):\n{r.stdout}{r.stderr}"


def failures(pp):
    """SHOW FAILURES as {(database, user, failure, detail): count}."""
    return {(r["database"], r["user"], r["failure"], r["detail"]): r["count"]
            for r in pp.show("FAILURES") if r["pool"] == ""}


def errors(samples, source, cls, **pool):
    found = [v for lab, v in series(samples, "pgpulse_errors_total", source=source, **{"class": cls})
             if all(lab.get(k) == v for k, v in pool.items()) and (pool or "database" not in lab)]
    return sum(found)


def login_error(pp, **kw):
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(host="127.0.0.1", port=pp.port, sslmode="disable", connect_timeout=10, **kw)
    return str(err.value)


def test_waits_cut_off_by_query_wait_timeout_are_waits_and_timeouts(pgpulse):
    """Four clients on a pool of 2: the two that time out waited the whole
    query_wait_timeout, and total_wait_time, the wait histogram and the
    timeout counter all say so."""
    pp = start(pgpulse, default_pool_size=2, query_wait_timeout=1)
    holders = [pp.connect(prepare_threshold=None) for _ in range(2)]
    for h in holders:
        h.execute("SELECT 1")  # a transaction left open holds its server
    waiters = [pp.connect(prepare_threshold=None, autocommit=True) for _ in range(2)]
    outcomes = []

    def wait_for_server(conn):
        try:
            conn.execute("SELECT 1")
            outcomes.append("ran")
        except psycopg.OperationalError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=wait_for_server, args=(w,)) for w in waiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == 2 and all("query_wait_timeout" in o for o in outcomes), outcomes
    for h in holders:
        h.commit()

    stats = {r["database"]: r for r in pp.show("STATS")}
    assert stats["appdb"]["total_wait_time"] >= 2 * 1_000_000, \
        f"two clients waited 1 s each, yet total_wait_time is {stats['appdb']['total_wait_time']} us"
    assert failures(pp)[("appdb", "app", "query_wait_timeout", "")] == 2
    body = scrape(pp)
    samples = parse_metrics(body)
    pool = {"database": "appdb", "user": "app"}
    assert value(samples, "pgpulse_pool_query_wait_timeouts_total", **pool) == 2
    assert value(samples, "pgpulse_wait_duration_seconds_count", **pool) >= 4  # 2 linked, 2 cut off
    assert value(samples, "pgpulse_wait_duration_seconds_sum", **pool) >= 2.0
    assert value(samples, "pgpulse_pool_wait_time_seconds_total", **pool) >= 2.0
    assert errors(samples, "pgpulse", "08", **pool) == 2
    promtool_accepts(body)


def test_failed_logins_are_counted_by_reason(pgpulse):
    pp = start(pgpulse)
    assert "password authentication failed" in login_error(pp, dbname="appdb", user="app", password="wrong")
    assert "does not exist" in login_error(pp, dbname="nosuchdb", user="app", password=pp.password_for("app"))
    body = scrape(pp)
    samples = parse_metrics(body)
    assert value(samples, "pgpulse_client_login_failures_total", reason="wrong_password") == 1
    assert value(samples, "pgpulse_client_login_failures_total", reason="no_database") == 1
    assert value(samples, "pgpulse_client_login_failures_total", reason="timeout") == 0
    # before a pool: no database or user label (a client-chosen name must not become one)
    assert errors(samples, "pgpulse", "28") == 1
    assert errors(samples, "pgpulse", "3D") == 1
    seen = failures(pp)
    assert seen[("", "", "client_login", "wrong_password")] == 1
    assert seen[("", "", "client_login", "no_database")] == 1
    promtool_accepts(body)


def test_a_server_that_refuses_connections_is_counted_on_its_pool(pgpulse):
    dead_port = free_port()
    dbs = dict(DATABASES, deaddb=f"host=127.0.0.1 port={dead_port} dbname=appdb")
    pp = start(pgpulse, databases=dbs, server_login_retry=1)
    login_error(pp, dbname="deaddb", user="app", password=pp.password_for("app"))
    samples = parse_metrics(scrape(pp))
    assert value(samples, "pgpulse_pool_server_connect_failures_total", database="deaddb", user="app") >= 1
    assert value(samples, "pgpulse_pool_server_login_failures_total", database="deaddb", user="app") == 0
    assert value(samples, "pgpulse_client_login_failures_total", reason="server_unavailable") == 1
    assert failures(pp)[("deaddb", "app", "server_connect", "")] >= 1


def test_query_timeout_cancel_is_counted_with_the_servers_error(pgpulse):
    pp = start(pgpulse, query_timeout=1)
    conn = pp.connect(prepare_threshold=None, autocommit=True)
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(20)")
    samples = parse_metrics(scrape(pp))
    pool = {"database": "appdb", "user": "app"}
    assert value(samples, "pgpulse_pool_query_timeouts_total", **pool) == 1
    assert errors(samples, "server", "57", **pool) == 1  # PostgreSQL's 57014, forwarded
    assert failures(pp)[("appdb", "app", "query_timeout", "")] == 1


def test_errors_are_counted_by_class_server_sent_apart_from_pgpulse_sent(pgpulse):
    pp = start(pgpulse, pool_mode="statement")
    conn = pp.connect(prepare_threshold=None, autocommit=True)
    for _ in range(3):
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
    tx = pp.connect(prepare_threshold=None, autocommit=True)
    with pytest.raises(psycopg.OperationalError, match="transaction blocks not allowed"):
        tx.execute("BEGIN")  # pgpulse's own 25001 in statement mode
    body = scrape(pp)
    samples = parse_metrics(body)
    pool = {"database": "appdb", "user": "app"}
    assert errors(samples, "server", "22", **pool) == 3
    assert errors(samples, "pgpulse", "22", **pool) == 0
    assert errors(samples, "pgpulse", "25", **pool) == 1
    assert errors(samples, "server", "25", **pool) == 0
    seen = failures(pp)
    assert seen[("appdb", "app", "server_error", "22")] == 3
    assert seen[("appdb", "app", "pgpulse_error", "25")] == 1
    promtool_accepts(body)


def pool_counter(pp, name):
    return value(parse_metrics(scrape(pp)), name, database="appdb", user="app")


@pytest.mark.parametrize("setting,failure,metric,open_transaction", [
    ("client_idle_timeout", "client_idle_timeout", "pgpulse_pool_client_idle_timeouts_total", False),
    ("idle_transaction_timeout", "idle_transaction_timeout", "pgpulse_pool_idle_transaction_timeouts_total",
     True),
])
def test_idle_timeout_closes_are_counted(pgpulse, setting, failure, metric, open_transaction):
    pp = start(pgpulse, **{setting: 1})
    conn = pp.connect(prepare_threshold=None, autocommit=not open_transaction)
    conn.execute("SELECT 1")  # then idle: in a transaction or not
    wait_until(lambda: pool_counter(pp, metric) == 1, 10, f"{setting} to close the idle client")
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    assert failures(pp)[("appdb", "app", failure, "")] == 1


def test_transaction_timeout_close_is_counted(pgpulse):
    pp = start(pgpulse, transaction_timeout=1)
    conn = pp.connect(prepare_threshold=None)
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT pg_sleep(20)")  # a transaction that outlives transaction_timeout
    wait_until(lambda: pool_counter(pp, "pgpulse_pool_transaction_timeouts_total") == 1, 10,
               "the transaction_timeout close to be counted")
    assert failures(pp)[("appdb", "app", "transaction_timeout", "")] == 1


def test_a_server_login_postgresql_refuses_is_counted_on_its_pool(pgpulse):
    # the auth_file's password lets the client in, and PostgreSQL refuses it for app
    pp = start(pgpulse, server_login_retry=1)
    pp.write_config(userlist={"app": "not_apps_real_password", "admin": "admin_pw"})
    pp.command("RELOAD")
    assert "password authentication failed" in login_error(pp, dbname="appdb", user="app",
                                                          password="not_apps_real_password")
    samples = parse_metrics(scrape(pp))
    assert value(samples, "pgpulse_pool_server_login_failures_total", database="appdb", user="app") >= 1
    assert value(samples, "pgpulse_client_login_failures_total", reason="server_unavailable") == 1
    assert value(samples, "pgpulse_client_login_failures_total", reason="wrong_password") == 0


def test_a_login_left_unfinished_is_counted_as_a_timeout(pgpulse):
    pp = start(pgpulse, client_login_timeout=1)
    sock = socket.create_connection(("127.0.0.1", pp.port), timeout=10)
    try:
        body = struct.pack("!I", 196608) + b"user\0app\0database\0appdb\0\0"
        sock.sendall(struct.pack("!I", len(body) + 4) + body)  # then never answers the password request
        wait_until(lambda: value(parse_metrics(scrape(pp)), "pgpulse_client_login_failures_total",
                                 reason="timeout") == 1, 10, "client_login_timeout to end the login")
    finally:
        sock.close()
    assert failures(pp)[("", "", "client_login", "timeout")] == 1
