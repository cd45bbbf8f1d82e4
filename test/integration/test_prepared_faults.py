"""Named prepared statements in transaction mode, the corners where a
client can tell pgpulse from PostgreSQL (issue 12): each scenario runs the
same messages on a direct connection and through pgpulse, where every step
goes to a server other than the previous step's, and the replies must be
the same message for message (type, SQLSTATE and wording of errors).
"""

import contextlib

import pytest

from pgpulse_harness import (RawConn, bind_message, close_message, describe_message, error_fields,
                             execute_message, holding_server, parse_message, query_message,
                             sync_message)

USERS = {"app": "app_pw", "admin": "admin_pw"}
SYNC = sync_message()

INI = """\
[databases]
appdb = host={pg_host} port={pg_port} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
auth_type = scram-sha-256
auth_file = {auth_file}
admin_users = admin
pool_mode = transaction
default_pool_size = 2
"""


def replies(msgs):
    """What a client sees: message types, errors as (SQLSTATE, message)."""
    out = []
    for t, body in msgs:
        if t == "E":
            f = error_fields(body)
            out.append(("E", f.get("C"), f.get("M")))
        elif t == "N":
            continue
        else:
            out.append((t, body))
    return out


def run(conn, steps, moving=None):
    """steps: (messages, number of ReadyForQuery to wait for); moving: a
    pgpulse, whose every other step then runs with the last server held."""
    seen = []
    for i, (msgs, readies) in enumerate(steps):
        hold = holding_server(moving) if moving and i % 2 else contextlib.nullcontext()
        with hold:
            conn.send(*msgs)
            for _ in range(readies):
                got = conn.until_ready()
                seen.append((replies(got), conn.status))
    return seen


def same_as_direct(pg, pgpulse, steps, moving=True):
    """moving=False: every step on the server of the one before (the idle
    pool hands out the server released last)."""
    with RawConn(pg.port, timeout=5) as direct:
        want = run(direct, steps)
    pp = pgpulse(INI, USERS)
    with RawConn(pp.port, timeout=5) as c:
        got = run(c, steps, moving=pp if moving else None)
    for step in got:
        for r in step[0]:
            assert "PGPULSE" not in repr(r), r
    assert got == want
    return got


def prepared(name, sql="SELECT 1"):
    return ([parse_message(sql, name), SYNC], 1)


def q(sql):
    return ([query_message(sql)], 1)


ABORT = [q("BEGIN"), q("SELECT 1/0")]


def test_duplicate_name_in_an_aborted_transaction_gets_25P02(pg, pgpulse):
    same_as_direct(pg, pgpulse, [prepared("s1"), *ABORT,
                                 ([parse_message("SELECT 1", "s1"), SYNC], 1), q("ROLLBACK")])


def test_unknown_name_in_an_aborted_transaction(pg, pgpulse):
    same_as_direct(pg, pgpulse, [prepared("s1"), *ABORT,
                                 ([bind_message(stmt="nope"), execute_message(), SYNC], 1),
                                 ([describe_message("S", "nope"), SYNC], 1),
                                 ([bind_message(stmt="s1"), execute_message(), SYNC], 1),
                                 ([describe_message("S", "s1"), SYNC], 1),
                                 ([close_message("S", "s1"), SYNC], 1),
                                 q("ROLLBACK"),
                                 ([bind_message(stmt="s1"), execute_message(), SYNC], 1)])


def test_duplicate_name_with_a_syntax_error_gets_the_syntax_error(pg, pgpulse):
    same_as_direct(pg, pgpulse, [prepared("s1"), ([parse_message("SELEC 1", "s1"), SYNC], 1),
                                 ([parse_message("SELECT * FROM nosuch_dup", "s1"), SYNC], 1),
                                 ([parse_message("SELECT 1; SELECT 2", "s1"), SYNC], 1),
                                 ([parse_message("SELECT 2", "s1"), SYNC], 1)])


@pytest.mark.parametrize("drop", ["extended", "simple"])
def test_pipelined_deallocate_all_then_a_statement_prepared_before_it(pg, pgpulse, drop):
    """The server has 'SELECT 7' (s1), so pgpulse would answer the Parse of
    s2 itself; but the DEALLOCATE ALL in front of it drops it on the
    server: s2 is prepared there again, and its Bind works, as direct."""
    if drop == "extended":
        dealloc = [parse_message("DEALLOCATE ALL"), bind_message(), execute_message()]
    else:
        dealloc = [query_message("DEALLOCATE ALL")]
    steps = [prepared("s1", "SELECT 7"),
             (dealloc + [parse_message("SELECT 7", "s2"), bind_message(stmt="s2"), execute_message(), SYNC],
              1 if drop == "extended" else 2),
             ([bind_message(stmt="s2"), execute_message(), SYNC], 1),
             ([bind_message(stmt="s1"), execute_message(), SYNC], 1)]
    same_as_direct(pg, pgpulse, steps, moving=False)


def test_a_statement_dropped_where_pgpulse_cannot_see_is_named_as_the_client_named_it(pgpulse):
    """A DEALLOCATE ALL pgpulse does not read (a simple Query longer than
    it inspects): the Bind behind it fails, but with the client's name and
    never PGPULSE_<n>, and the statement is prepared again on next use."""
    pp = pgpulse(INI, USERS)
    long_dealloc = "/* " + "x" * 400 + " */ DEALLOCATE ALL"
    with RawConn(pp.port, timeout=5) as c:
        c.send(parse_message("SELECT 7", "s1"), SYNC)
        c.until_ready()
        c.send(query_message(long_dealloc), parse_message("SELECT 7", "s2"), bind_message(stmt="s2"),
               execute_message(), SYNC)
        assert replies(c.until_ready()) == [("C", b"DEALLOCATE ALL\0"), ("Z", b"I")]
        got = replies(c.until_ready())
        assert got == [("1", b""), ("E", "26000", 'prepared statement "s2" does not exist'), ("Z", b"I")], got
        c.send(bind_message(stmt="s2"), execute_message(), SYNC)
        got = replies(c.until_ready())
        assert got == [("2", b""), ("D", b"\0\x01\0\0\0\x017"), ("C", b"SELECT 1\0"), ("Z", b"I")], got


def test_pipelined_deallocate_all_frees_the_name_for_a_parse_behind_it(pg, pgpulse):
    steps = [prepared("s1", "SELECT 7"),
             ([query_message("DEALLOCATE ALL"), parse_message("SELECT 8", "s1"), bind_message(stmt="s1"),
               execute_message(), SYNC], 2),
             ([bind_message(stmt="s1"), execute_message(), SYNC], 1),
             ([parse_message("DEALLOCATE ALL"), bind_message(), execute_message(),
               parse_message("SELECT 9", "s1"), bind_message(stmt="s1"), execute_message(), SYNC], 1),
             ([bind_message(stmt="s1"), execute_message(), SYNC], 1)]
    same_as_direct(pg, pgpulse, steps)


def test_discard_all_pipelined_behind_a_query(pg, pgpulse):
    steps = [prepared("s1", "SELECT 7"),
             ([query_message("DISCARD ALL"), parse_message("SELECT 7", "s1"), bind_message(stmt="s1"),
               execute_message(), SYNC], 2),
             ([bind_message(stmt="s1"), execute_message(), SYNC], 1)]
    same_as_direct(pg, pgpulse, steps)


@pytest.mark.parametrize("drop", ["DEALLOCATE ALL", "DISCARD ALL"])
def test_a_drop_all_that_fails_in_an_aborted_transaction_keeps_the_names(pg, pgpulse, drop):
    """DEALLOCATE ALL (or DISCARD ALL) fails with 25P02, and the Parse of
    the same name pipelined behind it fails too: after ROLLBACK, the name
    still means the first statement, as on PostgreSQL direct."""
    steps = [prepared("s1", "SELECT 7"), *ABORT,
             ([query_message(drop), parse_message("SELECT 8", "s1"), bind_message(stmt="s1"),
               execute_message(), SYNC], 2),
             ([parse_message(drop), bind_message(), execute_message(), parse_message("SELECT 9", "s1"), SYNC], 1),
             q("ROLLBACK"),
             ([bind_message(stmt="s1"), execute_message(), SYNC], 1)]
    same_as_direct(pg, pgpulse, steps)


def test_discard_all_refused_in_a_transaction_block_keeps_the_names(pg, pgpulse):
    steps = [prepared("s1", "SELECT 7"), q("BEGIN"), q("DISCARD ALL"), q("ROLLBACK"),
             ([bind_message(stmt="s1"), execute_message(), SYNC], 1)]
    same_as_direct(pg, pgpulse, steps)


def test_close_and_parse_again_behind_a_pipelined_deallocate_all(pg, pgpulse):
    """Names change in pipeline order: Parse s1, DEALLOCATE ALL, Parse s1
    again, Close s1, Parse s1 a third time, all in one write."""
    steps = [([parse_message("SELECT 1", "s1"), SYNC, query_message("DEALLOCATE ALL"),
               parse_message("SELECT 2", "s1"), close_message("S", "s1"), parse_message("SELECT 3", "s1"),
               bind_message(stmt="s1"), execute_message(), SYNC], 3),
             ([bind_message(stmt="s1"), execute_message(), SYNC], 1)]
    same_as_direct(pg, pgpulse, steps)


@pytest.mark.parametrize("where", ["direct", "pgpulse"])
def test_psycopg_threads_with_pipelines_and_failing_statements(pg, pgpulse, where):
    """psycopg 3 defaults, 8 connections on a pool of 2: pipelines, and a
    prepared query that fails at its execution: no prepared-statement
    error, as direct. (A pipeline whose middle query fails, or a DEALLOCATE
    ALL run with execute(), leaves this psycopg's own cache wrong even
    direct, so they are not part of this; the raw-protocol tests above
    cover them.)"""
    import threading
    import psycopg

    dsn = pg.dsn("appdb", "app", "app_pw") if where == "direct" else pgpulse(INI, USERS).dsn()
    errors, done = [], []

    def work(n):
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for i in range(30):
                    with conn.pipeline():
                        a = conn.execute("SELECT %s::int * 2", (i,))
                        b = conn.execute("SELECT %s::int * 3", (i,))
                    assert a.fetchone() == (i * 2,) and b.fetchone() == (i * 3,)
                    with pytest.raises(psycopg.errors.DivisionByZero):
                        conn.execute("SELECT 1 / %s::int", (0,))
                    assert conn.execute("SELECT %s::text || 'y'", (str(n),)).fetchone() == (f"{n}y",)
            done.append(n)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(done) == 8


def test_names_go_at_the_execute_of_an_extended_drop_all(pg, pgpulse):
    """DEALLOCATE ALL parsed but never executed leaves the names; DISCARD
    ALL refused at its Execute inside a pipeline (after another Execute)
    leaves them too; executed, it takes them, for the Parse behind it."""
    steps = [prepared("s1", "SELECT 7"),
             ([parse_message("DEALLOCATE ALL"), SYNC], 1),
             ([bind_message(stmt="s1"), execute_message(), SYNC], 1),
             ([parse_message("SELECT 1"), bind_message(), execute_message(),
               parse_message("DISCARD ALL"), bind_message(), execute_message(), SYNC], 1),
             ([bind_message(stmt="s1"), execute_message(), SYNC], 1),
             ([parse_message("DEALLOCATE ALL"), bind_message(), parse_message("SELECT 8", "s1"), SYNC], 1),
             ([parse_message("DEALLOCATE ALL"), bind_message(), execute_message(),
               parse_message("SELECT 8", "s1"), bind_message(stmt="s1"), execute_message(), SYNC], 1),
             ([bind_message(stmt="s1"), execute_message(), SYNC], 1)]
    same_as_direct(pg, pgpulse, steps)


@pytest.mark.parametrize("drop", ["extended", "simple"])
def test_a_drop_all_from_a_client_with_no_names_drops_the_servers_statements(pgpulse, drop):
    """One server: client a prepares 'SELECT 7' there and lets it go; client
    b, which has no names of its own (its unnamed traffic is only counted),
    runs DEALLOCATE ALL with a Parse of the same text pipelined behind it.
    The server has no statement left, so that Parse must go to it, and its
    Bind work; and a's next Bind prepares 'SELECT 7' again."""
    pp = pgpulse(INI.replace("default_pool_size = 2", "default_pool_size = 1"), USERS)
    row = ("D", b"\0\x01\0\0\0\x017")
    with RawConn(pp.port, timeout=5) as a, RawConn(pp.port, timeout=5) as b:
        a.send(parse_message("SELECT 7", "s1"), bind_message(stmt="s1"), execute_message(), SYNC)
        assert replies(a.until_ready())[-2:] == [("C", b"SELECT 1\0"), ("Z", b"I")]
        if drop == "extended":
            dealloc = [parse_message("DEALLOCATE ALL"), bind_message(), execute_message()]
        else:
            dealloc = [query_message("DEALLOCATE ALL")]
        b.send(*dealloc, parse_message("SELECT 7", "s2"), bind_message(stmt="s2"), execute_message(), SYNC)
        got = replies(b.until_ready())
        if drop == "simple":
            assert got == [("C", b"DEALLOCATE ALL\0"), ("Z", b"I")], got
            got = replies(b.until_ready())
        else:
            assert got[:3] == [("1", b""), ("2", b""), ("C", b"DEALLOCATE ALL\0")], got
            got = got[3:]
        assert got == [("1", b""), ("2", b""), row, ("C", b"SELECT 1\0"), ("Z", b"I")], got
        a.send(bind_message(stmt="s1"), execute_message(), SYNC)
        got = replies(a.until_ready())
        assert got == [("2", b""), row, ("C", b"SELECT 1\0"), ("Z", b"I")], got


def test_deallocate_of_one_name_leaves_the_servers_other_statements_prepared(pgpulse):
    """psycopg's cache rotation (DEALLOCATE _pg3_n) and a DEALLOCATE of a
    name pgpulse does not know must not make the server prepare its other
    statements again: only DEALLOCATE ALL and DISCARD ALL do."""
    pp = pgpulse(INI.replace("default_pool_size = 2", "default_pool_size = 1"), USERS)
    with RawConn(pp.port, timeout=5) as c:
        c.send(parse_message("SELECT 1", "s1"), parse_message("SELECT 2", "s2"), SYNC)
        c.until_ready()
        for sql in ("DEALLOCATE s1", "DEALLOCATE nosuch_all"):
            c.send(query_message(sql), bind_message(stmt="s2"), execute_message(), SYNC)
            c.until_ready()
            assert replies(c.until_ready())[0] == ("2", b"")
    stats = next(r for r in pp.show("STATS") if r["database"] == "appdb")
    assert int(stats["total_server_parse_count"]) == 2, stats
