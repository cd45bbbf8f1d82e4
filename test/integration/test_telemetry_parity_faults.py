"""Login telemetry, query shapes, SHOW STATS byte counters, the stats: line
and log lines under hostile review: each test is a defect an operator or an
application would notice, found by review and fixed (a forged log line, bytes
of a streaming answer, a half UTF-8 character in SHOW HEALTH, phantom
traffic after a database is removed, a TLS login the client left)."""

import re
import socket

from pgpulse_harness import LOG_LINE, wait_until
from test_auth import RawClient
from test_login_telemetry import instance
from test_metrics import start
from test_operator_logs import INI, STATS, USERS
from test_query_repeats import app_conn, simple
from test_tls import SSL_REQUEST, certs, start_client_tls  # noqa: F401 (fixture)


# ------------------------------------------------------------ log lines

def test_a_user_name_with_a_newline_cannot_forge_a_log_line(pgpulse):
    """A stranger chooses the user and database names of a startup packet,
    and pgpulse logs them (login attempt, closing because) before any
    authentication. A newline in one must not start a line of its own that
    reads as another process's or another connection's (PgBouncer 1.25
    indents what follows such a newline with a tab): no line of the log
    has a prefix pgpulse did not write."""
    pp = pgpulse(INI, USERS)
    mark = pp.log_mark()
    forged = "x\n2026-12-07 00:00:00.000 UTC [1] LOG C-0x1: appdb/admin@127.0.0.1:1 login ok"
    c = RawClient(pp.port)
    c.send_startup({"user": forged, "database": "appdb"})
    try:
        c.read_msg()
    except (ConnectionError, OSError):
        pass
    c.sock.close()
    pp.wait_log(r"closing because", since=mark)
    lines = pp.log(since=mark).splitlines()
    forged = [line for line in lines if LOG_LINE.match(line) and LOG_LINE.match(line)["pid"] != str(pp.pid)]
    assert not forged, lines


# ------------------------------------------------------------ the stats line

def test_stats_line_shows_no_phantom_traffic_after_a_database_is_removed(pgpulse):
    """The stats line averages what happened in the last period. A
    database removed by RELOAD takes its counters with it: the lines after
    it (or autodb_idle_timeout frees it), in periods where no client did
    anything, must say 0 queries/s, not the whole history of the databases
    that remain (here "200 xacts/s, 200 queries/s": appdb's 200 queries of
    long ago)."""
    dbs = "[databases]\nappdb = host={pg_host} port={pg_port} dbname=appdb\n" \
          "busydb = host={pg_host} port={pg_port} dbname=appdb\n"
    body = INI.split("[pgbouncer]\n", 1)[1]
    pp = pgpulse(dbs + "[pgbouncer]\n" + body + "stats_period = 1\n", USERS)
    rx = re.compile(STATS, re.M)
    for db, n in (("appdb", 200), ("busydb", 400)):
        with pp.connect(dbname=db, autocommit=True) as conn:
            for _ in range(n):
                conn.execute("SELECT 1")
    # a line whose period saw no traffic: the totals are settled
    mark = pp.log_mark()
    wait_until(lambda: [m for m in rx.finditer(pp.log(since=mark)) if int(m["queries"]) == 0], 20,
               "a quiet stats line")
    pp.write_config(dbs.replace("busydb = host={pg_host} port={pg_port} dbname=appdb\n", "")
                    + "[pgbouncer]\n" + body + "stats_period = 1\n", USERS)
    pp.reload()
    wait_until(lambda: "busydb" not in {r["database"] for r in pp.show("STATS")}, 10, "busydb to go")
    after = pp.log_mark()
    lines = wait_until(lambda: (lambda ms: ms if len(ms) >= 2 else None)(list(rx.finditer(pp.log(since=after)))),
                       20, "two stats lines after the reload")
    assert all(int(m["queries"]) == 0 and int(m["xacts"]) == 0 for m in lines), [m.group(0) for m in lines]


# ------------------------------------------------------------ login telemetry

def test_a_client_that_leaves_before_its_tls_handshake_abandoned_its_login(pgpulse, certs):
    """A client (a load balancer's TLS check, an application whose connect
    timed out) asks for TLS, gets pgpulse's 'S' and closes before the
    handshake: the client closed its end (EOF) before its startup packet,
    which doc/telemetry.md counts as an abandoned before_startup login, like
    a plain TCP check that connects and closes. SHOW LOGINS counts a login
    pgpulse failed instead."""
    pp = start_client_tls(pgpulse, certs)
    wait_until(lambda: instance(pp)["in_flight"] == 0, 10, "the readiness probes to end")
    before = instance(pp)
    with socket.create_connection(("127.0.0.1", pp.port), timeout=10) as sock:
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"

    def ended():
        now = instance(pp)
        return {k: now[k] - before[k] for k in ("failed", "abandoned_before_startup", "in_flight")}
    wait_until(lambda: ended()["in_flight"] == 0 and ended()["failed"] + ended()["abandoned_before_startup"] == 1,
               10, "the login to end")
    assert ended() == {"failed": 0, "abandoned_before_startup": 1, "in_flight": 0}, ended()


# ------------------------------------------------------------ N+1 advice

def test_show_health_advice_on_a_non_ascii_query_is_valid_utf8(pgpulse):
    """An ORM loop whose query names a column in a non-ASCII word (French
    column names are common): SHOW HEALTH's advice quotes the shape's first
    60 bytes. The admin console says client_encoding UTF8, so the advice must
    be valid UTF-8 for a driver to read the row; a cut in the middle of a
    character makes SHOW HEALTH unreadable to psycopg (and to
    pgbouncer_exporter-style scrapers) for the whole pool list."""
    pp = start(pgpulse)
    conn = app_conn(pp)
    # normalized: "select ? as x" (13 bytes), then 2-byte characters: the 60th byte is half of one
    column = "x" + "é" * 30
    for _ in range(3):
        simple(conn, "BEGIN")
        for i in range(20):
            simple(conn, f"select {i} as {column}")
        simple(conn, "COMMIT")
    rows = [r for r in pp.show("HEALTH") if r["database"] == "appdb" and r["user"] == "app"]
    assert len(rows) == 1 and rows[0]["advice"].startswith('N+1 suspect: "select ? as xé'), rows


# ------------------------------------------------------------ byte counters

STREAMING_ANSWER = ("select repeat('x', 100000) from generate_series(1, 3) "
                    "union all select pg_advisory_lock(4242)::text")


def test_bytes_of_an_answer_still_streaming_count_in_total_sent_as_in_pgbouncer(pgpulse, pg):
    """A client reads a large answer that PostgreSQL is still producing (its
    last row waits for a lock the test holds), then is killed before the
    answer ends. PgBouncer 1.25 counts total_sent as bytes reach the client
    (300,065 here, during the answer and after the kill); SHOW STATS must
    show the 200 kB this client has received, and keep them once it is
    gone. pgpulse counts an answer only at its ReadyForQuery: 0, forever."""
    pp = pgpulse(INI, USERS)
    holder = pg.connect(dbname="appdb", autocommit=True)
    holder.execute("select pg_advisory_lock(4242)")
    try:
        c = RawClient(pp.port).login("app", "appdb", "app_pw")
        c.send(b"Q", STREAMING_ANSWER.encode() + b"\0")
        received = 0
        while received < 2:  # two 100 kB rows are in the client's hands
            mtype, _ = c.read_msg()
            received += mtype == b"D"

        def total_sent():
            rows = [r for r in pp.show("STATS") if r["database"] == "appdb"]
            return int(rows[0]["total_sent"]) if rows else 0
        wait_until(lambda: total_sent() >= 200_000, 10, "total_sent to count the rows the client has")
        c.sock.close()  # killed mid-answer
        wait_until(lambda: not [r for r in pp.show("CLIENTS") if r["database"] == "appdb"], 10,
                   "the client to be gone")
        assert total_sent() >= 200_000
    finally:
        holder.close()
