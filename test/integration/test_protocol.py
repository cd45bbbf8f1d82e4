"""Everything an application driver sends passes through pgpulse: the simple
and extended query protocols, pipelining, COPY, notifications, the
FunctionCall message, large and slowly read results, session parameters,
cancel requests, and what each pool mode means for them.

Transaction pooling unless a test says otherwise.  Raw-protocol tests use
RawConn (pgpulse_harness: a minimal protocol-3 client over a plain socket,
with SCRAM); the others use psycopg like an application would.
"""

import hashlib
import os
import random
import select
import socket
import struct
import threading
import time

import psycopg
import psycopg.errors
import pytest

from pgpulse_harness import RawConn, built_with_asan, cstr, data_row, error_fields, message, rss_kb, \
    wait_until

USERS = {"app": "app_pw", "admin": "admin_pw"}


def make_ini(pool_mode="transaction", pool_size=2, extra=""):
    return f"""\
[databases]
appdb = host={{pg_host}} port={{pg_port}} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {{port}}
unix_socket_dir = {{dir}}
auth_type = scram-sha-256
auth_file = {{auth_file}}
admin_users = admin
pool_mode = {pool_mode}
default_pool_size = {pool_size}
{extra}
"""


def start(pgpulse, pool_mode="transaction", pool_size=2, extra=""):
    return pgpulse(make_ini(pool_mode, pool_size, extra), USERS)


def connect(pp, **kw):
    """An application connection through pgpulse that stays on unnamed
    statements (named ones are not tracked across servers in transaction
    mode)."""
    kw.setdefault("prepare_threshold", None)
    return pp.connect(**kw)


# ------------------------------------------------------------ raw protocol

CANCEL_CODE = 80877102
INT4_OID = 23


def Query(sql):
    return message("Q", cstr(sql))


def Parse(sql, name="", types=()):
    return message("P", cstr(name) + cstr(sql) + struct.pack("!H", len(types))
                   + b"".join(struct.pack("!I", t) for t in types))


def Bind(params=(), stmt="", portal=""):
    """All parameters and results in text format."""
    body = cstr(portal) + cstr(stmt) + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            b = str(p).encode()
            body += struct.pack("!i", len(b)) + b
    return message("B", body + struct.pack("!H", 0))


def Describe(kind, name=""):
    return message("D", kind.encode() + cstr(name))


def Execute(portal="", max_rows=0):
    return message("E", cstr(portal) + struct.pack("!I", max_rows))


def Close(kind, name=""):
    return message("C", kind.encode() + cstr(name))


def FunctionCall(oid, args):
    """Binary arguments, binary result."""
    body = struct.pack("!IHHH", oid, 1, 1, len(args))
    for a in args:
        body += struct.pack("!i", len(a)) + a
    return message("F", body + struct.pack("!H", 1))


SYNC = message("S")
FLUSH = message("H")


def types_of(msgs):
    return "".join(t for t, _ in msgs)


# ------------------------------------------------------------ helpers

def app_backend_running(pg, fragment):
    """The app backend now running a query that contains `fragment`."""
    for r in pg.backends(dbname="appdb", user="app"):
        if r["state"] == "active" and fragment in (r["query"] or ""):
            return r
    return None


def wait_event_of(pg, pid):
    rows = pg.query("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,))
    return rows[0][0] if rows else None


@pytest.fixture
def table(pg):
    """A fresh table in appdb owned by app, dropped afterwards."""
    name = f"proto_{os.getpid()}_{random.randrange(1 << 30)}"
    pg.query(f"CREATE TABLE {name} (id int PRIMARY KEY, name text)", dbname="appdb")
    pg.query(f"ALTER TABLE {name} OWNER TO app", dbname="appdb")
    yield name
    pg.query(f"DROP TABLE IF EXISTS {name}", dbname="appdb")


# ------------------------------------------------------------ simple query

def test_simple_query_returns_rows_and_command_tag(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        c.send(Query("SELECT 41 + 1 AS answer, 'text' AS word"))
        msgs = c.until_ready()
    assert types_of(msgs) == "TDCZ"
    assert b"answer\0" in msgs[0][1] and b"word\0" in msgs[0][1]
    assert data_row(msgs[1][1]) == ["42", "text"]
    assert msgs[2][1] == b"SELECT 1\0"
    assert msgs[3][1] == b"I"


def test_multi_statement_simple_query_returns_each_result(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        c.send(Query("SELECT 1 AS a; SELECT 'two' AS b, 3 AS c; "
                     "SELECT g FROM generate_series(1, 3) g"))
        msgs = c.until_ready()
    assert types_of(msgs) == "TDC" "TDC" "TDDDC" "Z"
    rows = [data_row(b) for t, b in msgs if t == "D"]
    assert rows == [["1"], ["two", "3"], ["1"], ["2"], ["3"]]
    tags = [b for t, b in msgs if t == "C"]
    assert tags == [b"SELECT 1\0", b"SELECT 1\0", b"SELECT 3\0"]


def test_empty_query_gets_empty_query_response(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        c.send(Query(""))
        assert types_of(c.until_ready()) == "IZ"
        # and the connection goes on normally
        assert c.query("SELECT 'after'") == [["after"]]


def test_notice_raised_in_do_block_reaches_the_client(pgpulse):
    pp = start(pgpulse)
    conn = connect(pp, autocommit=True)
    notices = []
    conn.add_notice_handler(lambda d: notices.append((d.severity, d.message_primary)))
    conn.execute("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql %', 7; END $$")
    assert notices == [("NOTICE", "hello from plpgsql 7")]


def test_error_in_transaction_then_rollback_leaves_connection_usable(pgpulse):
    pp = start(pgpulse)
    conn = connect(pp)
    conn.execute("SELECT 1")
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("SELECT 1 / 0")
    # still inside the failed transaction: the server says so
    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        conn.execute("SELECT 2")
    conn.rollback()
    assert conn.execute("SELECT 'works again'").fetchone() == ("works again",)
    conn.commit()


def test_failed_transaction_keeps_its_server_until_rollback(pgpulse):
    pp = start(pgpulse, pool_size=1)
    a = connect(pp)
    b = connect(pp, autocommit=True)
    with pytest.raises(psycopg.errors.DivisionByZero):
        a.execute("SELECT 1 / 0")
    done = threading.Event()
    result = []

    def other_client():
        try:
            result.append(b.execute("SELECT 'b got a clean server'").fetchone()[0])
        except Exception as e:  # reported by the assertion below
            result.append(e)
        done.set()

    t = threading.Thread(target=other_client)
    t.start()
    try:
        # proving a negative: the only server is in A's failed transaction,
        # so B must still be waiting after a while
        assert not done.wait(0.5), f"B was served during A's failed transaction: {result}"
        a.rollback()
        assert done.wait(10), "B never got the server after A's rollback"
    finally:
        a.rollback()
        t.join(15)
    assert result == ["b got a clean server"]


# ------------------------------------------------------------ extended protocol

def test_extended_query_parameters_round_trip(pgpulse):
    pp = start(pgpulse)
    conn = connect(pp, autocommit=True)
    big = "ä" * 300_000  # a Bind message of ~600 kB, larger than any buffer
    row = conn.execute(
        "SELECT %s::int + %s::int, %s::text, %s::text IS NULL, %s::bytea, length(%s::text),"
        " md5(%s::text)",
        (40, 2, "héllo wörld", None, b"\x00\x01\xff", big, big)).fetchone()
    assert row == (42, "héllo wörld", True, b"\x00\x01\xff", 300_000,
                   hashlib.md5(big.encode()).hexdigest())
    # binary parameters and results too
    cur = conn.cursor(binary=True)
    assert cur.execute("SELECT %b::int8 * 2, %b::text", (2**40, "bin")).fetchone() == \
        (2**41, "bin")


def test_psycopg_pipeline_of_200_queries_returns_each_result_in_order(pgpulse):
    pp = start(pgpulse)
    conn = connect(pp, autocommit=True)
    with conn.pipeline():
        cursors = [conn.execute("SELECT %s::int * 10, repeat('p', %s::int)", (i, i))
                   for i in range(200)]
    assert [c.fetchone() for c in cursors] == [(i * 10, "p" * i) for i in range(200)]
    assert conn.execute("SELECT 'after the pipeline'").fetchone() == ("after the pipeline",)


def test_raw_pipeline_of_200_syncs_in_one_write_gets_200_ready_for_query(pgpulse):
    pp = start(pgpulse)
    n = 200
    with RawConn(pp.port) as c:
        c.send(*(Parse("SELECT $1::int + 1000") + Bind([i]) + Execute() + SYNC
                 for i in range(n)))
        values = []
        for i in range(n):
            msgs = c.until_ready()
            assert types_of(msgs) == "12DCZ", f"reply to Sync {i}: {msgs}"
            values.append(data_row(msgs[2][1])[0])
        assert values == [str(i + 1000) for i in range(n)]
        assert c.query("SELECT 'still in step'") == [["still in step"]]


def test_two_clients_pipelining_through_one_server_each_get_their_own_results(pgpulse):
    # pool size 1: the server must go back and forth between the two clients
    # only between transactions, never inside one client's batch
    pp = start(pgpulse, pool_size=1)
    n = 200
    conns = [RawConn(pp.port), RawConn(pp.port)]
    try:
        for k, c in enumerate(conns):
            c.send(*(Parse("SELECT $1::text, count(*) FROM generate_series(1, 10)")
                     + Bind([f"client{k}-{i}"]) + Execute() + SYNC for i in range(n)))
        results = {0: [], 1: []}
        errors = []

        def read(k):
            try:
                for _ in range(n):
                    msgs = conns[k].until_ready()
                    row = data_row(msgs[2][1]) if types_of(msgs) == "12DCZ" else msgs
                    results[k].append((types_of(msgs), row))
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=read, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        for k in (0, 1):
            assert results[k] == [("12DCZ", [f"client{k}-{i}", "10"]) for i in range(n)]
    finally:
        for c in conns:
            c.close()


def test_describe_statement_and_portal_return_their_descriptions(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        c.send(Parse("SELECT $1::int AS n, 'x'::text AS t", name="s1"),
               Describe("S", "s1"),
               Bind([5], stmt="s1", portal="p1"),
               Describe("P", "p1"),
               Execute("p1"),
               SYNC)
        msgs = c.until_ready()
    assert types_of(msgs) == "1tT2TDCZ"
    # ParameterDescription: one parameter, int4
    assert msgs[1][1] == struct.pack("!HI", 1, INT4_OID)
    # both RowDescriptions: columns n (int4) and t (text)
    for rd in (msgs[2][1], msgs[4][1]):
        (ncols,) = struct.unpack_from("!H", rd)
        assert ncols == 2
        assert rd.startswith(struct.pack("!H", 2) + b"n\0")
        assert b"\0t\0" in rd
        first_type = struct.unpack_from("!I", rd, 2 + 2 + 4 + 2)[0]
        assert first_type == INT4_OID
    assert data_row(msgs[5][1]) == ["5", "x"]


def test_flush_delivers_parse_complete_before_sync(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port, timeout=5) as c:
        c.send(Parse("SELECT $1::text || '!'"), FLUSH)
        # no Sync sent yet: ParseComplete must arrive on the Flush alone
        assert c.recv_msg() == ("1", b"")
        c.send(Bind(["hi"]), Execute(), SYNC)
        msgs = c.until_ready()
    assert types_of(msgs) == "2DCZ"
    assert data_row(msgs[1][1]) == ["hi!"]


def test_closed_statement_is_gone_and_the_error_does_not_break_the_connection(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        c.send(Parse("SELECT 1", name="s_close"),
               Close("S", "s_close"),
               Bind(stmt="s_close"),
               Execute(),
               SYNC)
        msgs = c.until_ready()
        assert types_of(msgs) == "13EZ"
        err = error_fields(msgs[2][1])
        assert err["C"] == "26000" and "s_close" in err["M"]
        assert msgs[3][1] == b"I"
        # closing a portal: CloseComplete too
        c.send(Parse("SELECT 2"), Bind(portal="p"), Close("P", "p"), SYNC)
        assert types_of(c.until_ready()) == "123Z"
        assert c.query("SELECT 'usable'") == [["usable"]]


def test_function_call_message_gets_function_call_response(pgpulse, pg):
    pp = start(pgpulse)
    int4pl = int(pg.query("SELECT 'int4pl'::regproc::oid")[0][0])
    with RawConn(pp.port) as c:
        c.send(FunctionCall(int4pl, [struct.pack("!i", 40), struct.pack("!i", 2)]))
        msgs = c.until_ready()
        assert types_of(msgs) == "VZ"
        assert msgs[0][1] == struct.pack("!i", 4) + struct.pack("!i", 42)
        assert msgs[1][1] == b"I"
        assert c.query("SELECT 'after the call'") == [["after the call"]]


# ------------------------------------------------------------ COPY

def test_copy_from_stdin_loads_every_row(pgpulse, pg, table):
    pp = start(pgpulse)
    conn = connect(pp)
    n = 20_000
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} (id, name) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((i, f"row {i} " + "y" * (i % 50)))
    conn.commit()
    assert pg.query(f"SELECT count(*), sum(id), sum(length(name)) FROM {table}", dbname="appdb") \
        == [(n, n * (n - 1) // 2, sum(len(f"row {i} ") + i % 50 for i in range(n)))]


def test_extended_copy_with_early_sync_releases_its_server(pgpulse, pg, table):
    # libpq's PQexecParams sends Parse/Bind/Execute/Sync at once; PostgreSQL
    # ignores that Sync in copy-in mode and answers the one after CopyDone.
    # pgpulse must count one request, or the server is never released.
    # without the fix the other client would wait for the server: fail in 5 s, not 120
    pp = start(pgpulse, pool_size=1, extra="query_wait_timeout = 5")
    with RawConn(pp.port) as c:
        c.send(Parse(f"COPY {table} FROM STDIN") + Bind() + Execute() + SYNC)
        seen = []
        while not seen or seen[-1] != "G":
            mtype, _ = c.recv_msg()
            seen.append(mtype)
        assert seen == ["1", "2", "G"], seen
        c.send(message("d", b"1\tone\n2\ttwo\n") + message("c") + SYNC)
        msgs = c.until_ready()
        assert types_of(msgs) == "CZ", msgs
        assert c.status == "I"
        # the only server is free again: another client is served while this one stays
        other = connect(pp, autocommit=True)
        try:
            assert other.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
        finally:
            other.close()
        assert c.query("SELECT 'still in step'") == [["still in step"]]


def test_copy_to_stdout_returns_every_row(pgpulse):
    pp = start(pgpulse)
    conn = connect(pp)
    n = 50_000
    with conn.cursor() as cur:
        with cur.copy(f"COPY (SELECT g, repeat('z', g % 100) FROM generate_series(1, {n}) g)"
                      " TO STDOUT") as copy:
            rows = list(copy.rows())
    conn.commit()
    assert len(rows) == n
    assert rows[0] == ("1", "z") and rows[-1] == (str(n), "z" * (n % 100))
    assert all(r == (str(i), "z" * (i % 100)) for i, r in enumerate(rows, 1))


def test_copy_from_with_a_bad_row_fails_and_connection_recovers(pgpulse, pg, table):
    pp = start(pgpulse)
    conn = connect(pp)
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} (id, name) FROM STDIN") as copy:
                copy.write(b"1\tfine\nnot_a_number\tbad\n")
                # the server has failed by now; the rest must still be
                # swallowed without confusing anyone
                for i in range(2, 5000):
                    copy.write_row((i, "after the bad row"))
    conn.rollback()
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} (id, name) FROM STDIN") as copy:
            for i in range(100):
                copy.write_row((i, "good"))
    conn.commit()
    assert pg.query(f"SELECT count(*) FROM {table}", dbname="appdb") == [(100,)]


def test_copy_aborted_by_the_client_rolls_back_and_connection_stays_usable(pgpulse, pg, table):
    pp = start(pgpulse)
    conn = connect(pp)

    class Abort(Exception):
        pass

    # psycopg sends CopyFail and reports the server's answer to it
    with pytest.raises(psycopg.errors.QueryCanceled, match="COPY from stdin failed") as ei:
        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} (id, name) FROM STDIN") as copy:
                for i in range(1000):
                    copy.write_row((i, "never committed"))
                raise Abort("changed my mind")
    assert "changed my mind" in str(ei.value)
    conn.rollback()
    assert conn.execute("SELECT 'usable'").fetchone() == ("usable",)
    conn.commit()
    assert pg.query(f"SELECT count(*) FROM {table}", dbname="appdb") == [(0,)]


# ------------------------------------------------------------ notifications

def test_notify_reaches_a_listener_in_session_mode(pgpulse):
    pp = start(pgpulse, pool_mode="session")
    listener = connect(pp, autocommit=True)
    notifier = connect(pp, autocommit=True)
    listener.execute("LISTEN proto_channel")
    notifier_pid = notifier.execute("SELECT pg_backend_pid()").fetchone()[0]
    notifier.execute("NOTIFY proto_channel, 'payload 1'")

    # the listener sends nothing: the notification must arrive on its own
    pgconn = listener.pgconn

    def notified():
        ready, _, _ = select.select([pgconn.socket], [], [], 0)
        if ready:
            pgconn.consume_input()
        return pgconn.notifies()

    n = wait_until(notified, 10, "the NOTIFY to reach the listener")
    assert (n.relname, n.extra, n.be_pid) == (b"proto_channel", b"payload 1", notifier_pid)


# ------------------------------------------------------------ large results

def test_large_result_streams_through_with_bounded_memory(pgpulse, pgpulse_bin):
    pp = start(pgpulse)
    rows_wanted = 200_000   # 200 MB of 'x'
    with RawConn(pp.port) as c:
        assert c.query("SELECT 1") == [["1"]]
        base = rss_kb(pp.pid)
        peak = [base]
        next_sample = [0]

        def sample(total):
            if total >= next_sample[0]:
                peak[0] = max(peak[0], rss_kb(pp.pid))
                next_sample[0] = total + (1 << 20)

        c.send(Query(f"SELECT repeat('x', 1000) FROM generate_series(1, {rows_wanted})"))
        # DataRow: length 4 + column count 2 + value length 4 + 1000
        rows, total = c.stream_result(on_progress=sample, row_len=4 + 2 + 4 + 1000)
        peak[0] = max(peak[0], rss_kb(pp.pid))
        assert rows == rows_wanted
        assert total > rows_wanted * 1000
        assert c.status == "I"
        assert c.query("SELECT 'after'") == [["after"]]
    if not built_with_asan(pgpulse_bin):
        growth_mb = (peak[0] - base) / 1024
        assert growth_mb < 64, f"pgpulse's RSS grew by {growth_mb:.0f} MB for a 200 MB result"


def test_slow_reader_of_a_large_result_keeps_pgpulse_memory_bounded(pgpulse, pg, pgpulse_bin):
    pp = start(pgpulse, pool_size=1)
    rows_wanted = 100_000   # 100 MB
    with RawConn(pp.port, rcvbuf=16384, timeout=30) as c:
        backend_pid = int(c.query("SELECT pg_backend_pid()")[0][0])
        base = rss_kb(pp.pid)
        peak = [base]
        total = [0]

        def sample(_=None):
            peak[0] = max(peak[0], rss_kb(pp.pid))

        def read_slowly(nbytes):
            """4 kB at a time with pauses, into c.buf (counted later)."""
            goal = total[0] + nbytes
            while total[0] < goal:
                data = c.sock.recv(4096)
                assert data, "pgpulse closed the connection"
                c.buf += data
                total[0] += len(data)
                sample()
                time.sleep(0.002)

        c.send(Query(f"SELECT repeat('s', 1000) FROM generate_series(1, {rows_wanted})"))
        read_slowly(1 << 20)
        # the client now reads nothing: the backpressure must reach PostgreSQL
        wait_until(lambda: wait_event_of(pg, backend_pid) == "ClientWrite", 10,
                   "PostgreSQL to block writing the result (pgpulse stopped reading it)")
        # proving a negative: had pgpulse kept reading, PostgreSQL would
        # finish the 100 MB well within this pause
        time.sleep(0.5)
        sample()
        row = pg.query("SELECT state, wait_event FROM pg_stat_activity WHERE pid = %s",
                       (backend_pid,))
        assert row == [("active", "ClientWrite")], \
            "the query ran on while the client read nothing: pgpulse buffered the result"
        read_slowly(1 << 20)
        # then the rest as fast as possible (stream_result also counts the
        # rows already in c.buf)
        rows, _ = c.stream_result(on_progress=sample, row_len=4 + 2 + 4 + 1000)
        assert rows == rows_wanted
        assert c.query("SELECT 'after'") == [["after"]]
    if not built_with_asan(pgpulse_bin):
        growth_mb = (peak[0] - base) / 1024
        assert growth_mb < 64, f"pgpulse's RSS grew by {growth_mb:.0f} MB behind a slow reader"


# ------------------------------------------------------------ session parameters

def test_login_parameter_status_matches_a_direct_connection(pgpulse, pg):
    pp = start(pgpulse)
    names = ["server_version", "server_encoding", "client_encoding", "DateStyle", "TimeZone",
             "integer_datetimes", "standard_conforming_strings", "IntervalStyle"]
    with pg.connect(dbname="appdb", user="app") as direct:
        expected = {n: direct.info.parameter_status(n) for n in names}
    assert expected["server_version"] == pg.query("SHOW server_version")[0][0]
    conn = connect(pp)
    assert {n: conn.info.parameter_status(n) for n in names} == expected


def test_client_encoding_asked_at_startup_is_reported_and_used(pgpulse):
    pp = start(pgpulse)
    conn = connect(pp, client_encoding="LATIN1")
    assert conn.info.parameter_status("client_encoding") == "LATIN1"
    assert conn.execute("SHOW client_encoding").fetchone() == ("LATIN1",)
    assert conn.execute("SELECT 'é'::text, length('é')").fetchone() == ("é", 1)
    # another client on the same (single) server keeps the database's encoding
    other = connect(pp)
    assert other.execute("SHOW client_encoding").fetchone() == ("UTF8",)
    assert conn.execute("SHOW client_encoding").fetchone() == ("LATIN1",)


def test_startup_parameters_follow_each_client_onto_a_shared_server(pgpulse):
    pp = start(pgpulse, pool_size=1)
    wanted = {
        "alpha": {"application_name": "alpha", "TimeZone": "Asia/Tokyo", "DateStyle": "SQL, DMY"},
        "beta": {"application_name": "beta", "TimeZone": "America/Sao_Paulo",
                 "DateStyle": "German, DMY"},
    }
    conns = {k: RawConn(pp.port, params=v) for k, v in wanted.items()}
    try:
        for k, c in conns.items():
            # told at login as asked
            assert {p: c.params.get(p) for p in wanted[k]} == wanted[k]
        pids = set()
        for k in ["alpha", "beta", "alpha", "beta", "alpha"]:
            c = conns[k]
            ((pid, app), ) = c.query("SELECT pg_backend_pid(), current_setting('application_name')")
            assert app == wanted[k]["application_name"]
            assert c.query("SHOW timezone") == [[wanted[k]["TimeZone"]]]
            assert c.query("SHOW datestyle") == [[wanted[k]["DateStyle"]]]
            pids.add(pid)
        assert len(pids) == 1, "both clients should have shared the pool's one server"
    finally:
        for c in conns.values():
            c.close()


def test_client_set_application_name_survives_another_client_on_its_server(pgpulse):
    pp = start(pgpulse, pool_size=1)
    a = connect(pp, autocommit=True, application_name="alpha")
    b = connect(pp, autocommit=True, application_name="beta")
    a.execute("SET application_name = 'renamed by a'")
    assert a.info.parameter_status("application_name") == "renamed by a"
    pid_b, app_b = b.execute("SELECT pg_backend_pid(), current_setting('application_name')") \
        .fetchone()
    assert app_b == "beta"
    pid_a, app_a = a.execute("SELECT pg_backend_pid(), current_setting('application_name')") \
        .fetchone()
    assert app_a == "renamed by a"
    assert pid_a == pid_b, "both clients should have shared the pool's one server"
    assert b.execute("SHOW application_name").fetchone() == ("beta",)


# ------------------------------------------------------------ cancel

def test_cancel_stops_a_long_query_quickly_and_connection_stays_usable(pgpulse, pg):
    pp = start(pgpulse)
    conn = connect(pp, autocommit=True)
    problems = []

    def cancel_when_running():
        try:
            wait_until(lambda: app_backend_running(pg, "pg_sleep(30)"), 10,
                       "the pg_sleep to run on the server")
            conn.cancel()
        except Exception as e:
            problems.append(e)

    t = threading.Thread(target=cancel_when_running)
    t.start()
    started = time.monotonic()
    try:
        with pytest.raises(psycopg.errors.QueryCanceled) as ei:
            conn.execute("SELECT pg_sleep(30)")
    finally:
        t.join(15)
    elapsed = time.monotonic() - started
    assert not problems
    assert ei.value.sqlstate == "57014"
    assert elapsed < 10, f"the cancel took {elapsed:.1f} s"
    assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)


def test_cancel_request_with_unknown_key_is_dropped_without_harm(pgpulse, pg):
    pp = start(pgpulse)
    conn = connect(pp, autocommit=True)
    # pgpulse's own process id for this client (libpq shows it signed)...
    fake_pid = conn.info.backend_pid & 0xFFFFFFFF
    result = []

    def run():
        t0 = time.monotonic()
        try:
            result.append(conn.execute("SELECT pg_sleep(1), 'slept'").fetchone()[1])
        except Exception as e:
            result.append(e)
        result.append(time.monotonic() - t0)

    t = threading.Thread(target=run)
    t.start()
    try:
        wait_until(lambda: app_backend_running(pg, "pg_sleep(1)"), 10,
                   "the pg_sleep to run on the server")
        with socket.create_connection(("127.0.0.1", pp.port), timeout=5) as s:
            # ...with a wrong secret
            s.sendall(struct.pack("!IIII", 16, CANCEL_CODE, fake_pid, random.getrandbits(32)))
            # the protocol: no answer, the connection is just closed
            assert s.recv(100) == b""
    finally:
        t.join(15)
    assert result[0] == "slept", f"the query was disturbed: {result[0]!r}"
    assert result[1] >= 0.9
    assert conn.execute("SELECT 'fine'").fetchone() == ("fine",)


# ------------------------------------------------------------ pool modes

def test_statement_mode_serves_single_statements(pgpulse, pg, table):
    pp = start(pgpulse, pool_mode="statement", pool_size=1)
    a = connect(pp, autocommit=True)
    b = connect(pp, autocommit=True)
    for i in range(10):
        c = a if i % 2 == 0 else b
        c.execute(f"INSERT INTO {table} VALUES (%s, %s)", (i, "a" if c is a else "b"))
        assert c.execute(f"SELECT count(*) FROM {table}").fetchone() == (i + 1,)
    assert pg.query(f"SELECT string_agg(name, '' ORDER BY id) FROM {table}", dbname="appdb") \
        == [("ababababab",)]


def test_statement_mode_refuses_a_transaction_block(pgpulse):
    pp = start(pgpulse, pool_mode="statement")
    conn = connect(pp, autocommit=True)
    with pytest.raises(psycopg.Error) as ei:
        conn.execute("BEGIN")
        conn.execute("SELECT 1")
    e = ei.value
    assert e.sqlstate == "25001" or \
        "transaction blocks not allowed in statement pooling mode" in str(e), repr(e)
    # the pooler itself is fine: a new client is served
    other = connect(pp, autocommit=True)
    assert other.execute("SELECT 'next client'").fetchone() == ("next client",)


def test_session_mode_reset_query_hides_previous_clients_state(pgpulse, pg):
    pp = start(pgpulse, pool_mode="session", pool_size=1)
    default_work_mem = pg.query("SHOW work_mem")[0][0]
    first = connect(pp, autocommit=True)
    pid1 = first.execute("SELECT pg_backend_pid()").fetchone()[0]
    first.execute("CREATE TEMP TABLE left_behind (x int)")
    first.execute("SET work_mem = '7MB'")
    first.execute("PREPARE left_plan AS SELECT 1")
    assert first.execute("SHOW work_mem").fetchone() == ("7MB",)
    first.close()

    second = connect(pp, autocommit=True)
    pid2, temp_table, work_mem, plans = second.execute(
        "SELECT pg_backend_pid(), to_regclass('pg_temp.left_behind'),"
        " current_setting('work_mem'), (SELECT count(*) FROM pg_prepared_statements)").fetchone()
    assert pid2 == pid1, "the second client should have got the first one's server"
    assert temp_table is None
    assert work_mem == default_work_mem
    assert plans == 0


# ------------------------------------------------------------ disable_pqexec

def test_disable_pqexec_refuses_a_simple_query_and_serves_the_extended_protocol(pgpulse):
    """disable_pqexec = 1: the extended protocol works; a Query message (one
    that could carry `; DROP TABLE ...`) gets PgBouncer's FATAL 08P01
    'PQexec disallowed' and the connection closes; the admin console, which
    speaks only the simple protocol, still answers."""
    pp = start(pgpulse, extra="disable_pqexec = 1")
    with RawConn(pp.port) as c:
        c.send(Parse("SELECT $1::int + 1"), Bind([41]), Execute(), SYNC)
        msgs = c.until_ready()
        assert [data_row(b) for t, b in msgs if t == "D"] == [["42"]], msgs
        c.send(Query("SELECT 1; SELECT 2"))
        t, body = c.recv_msg()
        assert t == "E", (t, body)
        fields = error_fields(body)
        assert (fields["S"], fields["C"], fields["M"]) == ("FATAL", "08P01", "PQexec disallowed"), fields
        c.sock.settimeout(10)
        assert c.sock.recv(1) == b"", "the connection stays open after PQexec disallowed"
    assert "client used 'Q' packet type" in pp.log()
    # the console is no pooled client: SHOW works
    assert pp.show("VERSION")


def test_without_disable_pqexec_a_simple_query_is_served(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        assert c.query("SELECT 1; SELECT 2") == [["2"]]
