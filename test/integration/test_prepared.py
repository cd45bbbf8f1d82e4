"""Named prepared statements in transaction mode (issue 12): what drivers
do by default must just work when their connection's transactions run on
different server connections.

A client's statement names are its own; servers know the statements as
PGPULSE_<n>, shared by every client that prepared the same text and types.
Transaction pooling unless a test says otherwise.  Raw-protocol tests use
RawConn from the harness; the others use psycopg (default prepare_threshold
of 5), libpq's PQprepare through psycopg.pq, and pgbench -M prepared.
"""

import os
import random
import threading
import time

import psycopg
import pytest

from pgpulse_harness import (RawConn, bind_message, close_message, cstr, data_row,
                             describe_message, error_fields, execute_message, flush_message,
                             holding_server, message, message_types, parse_message, pgbench,
                             query_message, sync_message, built_with_asan, rss_kb)

USERS = {"app": "app_pw", "admin": "admin_pw"}
SYNC = sync_message()


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


@pytest.fixture
def table(pg):
    """A fresh table in appdb owned by app, dropped afterwards."""
    name = f"prep_{os.getpid()}_{random.randrange(1 << 30)}"
    pg.query(f"CREATE TABLE {name} (id int PRIMARY KEY, name text)", dbname="appdb")
    pg.query(f"ALTER TABLE {name} OWNER TO app", dbname="appdb")
    yield name
    pg.query(f"DROP TABLE IF EXISTS {name}", dbname="appdb")


def stats(pp):
    rows = pp.show("STATS")
    return next(r for r in rows if r["database"] == "appdb")


# ------------------------------------------------------------ drivers' defaults

def test_psycopg_default_prepare_threshold_from_8_threads_on_a_pool_of_2(pgpulse):
    """psycopg prepares a query after 5 executions (_pg3_0, _pg3_1, ...):
    eight connections running the same queries share two servers, and no
    execution fails with 'already exists' or 'does not exist'."""
    pp = start(pgpulse, pool_size=2)
    errors, done = [], []

    def work(n):
        try:
            with pp.connect(autocommit=True) as conn:
                for i in range(25):
                    assert conn.execute("SELECT %s::int + 1", (i,)).fetchone() == (i + 1,)
                    assert conn.execute("SELECT %s::text || 'x'", (str(n),)).fetchone() == (f"{n}x",)
                    assert conn.execute("SELECT count(*) FROM generate_series(1, %s)",
                                        (i + 1,)).fetchone() == (i + 1,)
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
    st = stats(pp)
    # 8 clients x 3 statements parsed by the clients; on the servers, once per server each
    assert int(st["total_client_parse_count"]) == 24, st
    assert int(st["total_server_parse_count"]) <= 6, st
    assert int(st["total_bind_count"]) >= 8 * 3 * 20, st


def test_libpq_prepare_is_usable_on_another_server(pgpulse):
    """PQprepare on one server, PQexecPrepared while that server is busy with
    someone else: pgpulse prepares the statement on the other one first."""
    pp = start(pgpulse, pool_size=2)
    conn = pp.connect(autocommit=True, prepare_threshold=None)
    pgc = conn.pgconn
    res = pgc.prepare(b"my_stmt", b"SELECT $1::int * 2, pg_backend_pid()")
    assert res.status == psycopg.pq.ExecStatus.COMMAND_OK, res.error_message
    res = pgc.exec_prepared(b"my_stmt", [b"21"])
    assert res.status == psycopg.pq.ExecStatus.TUPLES_OK, res.error_message
    first_pid = res.get_value(0, 1)
    # the server that has it is taken by a transaction of another client
    busy = pp.connect(prepare_threshold=None)
    busy_pid = None
    for _ in range(10):
        busy_pid = str(busy.execute("SELECT pg_backend_pid()").fetchone()[0]).encode()
        if busy_pid == first_pid:
            break
        busy.rollback()
    assert busy_pid == first_pid
    res = pgc.exec_prepared(b"my_stmt", [b"5"])
    assert res.status == psycopg.pq.ExecStatus.TUPLES_OK, res.error_message
    assert res.get_value(0, 0) == b"10"
    assert res.get_value(0, 1) != first_pid
    res = pgc.describe_prepared(b"my_stmt")
    assert res.status == psycopg.pq.ExecStatus.COMMAND_OK, res.error_message
    assert res.nparams == 1
    busy.rollback()
    busy.close()
    conn.close()


def test_pgbench_prepared_select_only_through_transaction_pool(pgpulse, pg):
    """pgbench -M prepared -S: 8 clients on 2 servers; every client parses
    its statement once, the servers parse it once each."""
    pp = start(pgpulse, pool_size=2)
    pgbench(pp.port, "-i", "-s", "1", "-q")
    r = pgbench(pp.port, "-M", "prepared", "-S", "-c", "8", "-j", "2", "-T", "3", "-n")
    assert "number of failed transactions: 0" in r.stdout or "failed" not in r.stdout, r.stdout
    assert "prepared statement" not in r.stderr, r.stderr[-2000:]
    st = stats(pp)
    assert int(st["total_client_parse_count"]) == 8, st
    assert int(st["total_server_parse_count"]) <= 2, st
    assert int(st["total_bind_count"]) > 100, st


def test_max_prepared_statements_2_evicts_under_load(pgpulse):
    """Five statements, room for two per server: servers evict the least
    recently used one (its Close's reply swallowed) and every execution
    still gets its own result."""
    pp = start(pgpulse, pool_size=2, extra="max_prepared_statements = 2")
    errors = []

    def work(n):
        try:
            with pp.connect(autocommit=True) as conn:
                for i in range(12):
                    for k in range(5):
                        got = conn.execute(f"SELECT %s::int + {k}", (i,), prepare=True).fetchone()
                        assert got == (i + k,), got
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    servers = pp.show("SERVERS")
    assert servers and all(int(s["prepared_statements"]) <= 2 for s in servers), servers
    listing = pp.show("PREPARED_STATEMENTS")
    assert sum(int(r["evictions"]) for r in listing) > 0, listing


# ------------------------------------------------------------ protocol corners

def test_duplicate_name_gets_42P05_and_the_rest_of_the_batch_is_skipped(pgpulse, table):
    """The name is the client's, whichever server it gets: a second Parse of
    it fails as on PostgreSQL, on a server that never saw the first."""
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port) as c:
        c.send(parse_message("SELECT 1", "dup"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        with holding_server(pp):
            # an insert before the error is rolled back with the batch's implicit transaction
            c.send(parse_message(f"INSERT INTO {table} VALUES (1, 'one')"), bind_message(), execute_message(),
               parse_message("SELECT 2", "dup"), bind_message(stmt="dup"), execute_message(), SYNC)
            msgs = c.until_ready()
        assert message_types(msgs) == "12CEZ", msgs
        err = error_fields(msgs[3][1])
        assert err["C"] == "42P05" and err["M"] == 'prepared statement "dup" already exists', err
        assert c.status == "I"
        assert c.query(f"SELECT count(*) FROM {table}") == [["0"]]
        # the name still means the first statement
        c.send(bind_message(stmt="dup"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "2DCZ"
        assert data_row(msgs[1][1]) == ["1"]


def test_duplicate_name_inside_a_transaction_block_aborts_it(pgpulse):
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port) as c:
        c.send(parse_message("SELECT 1", "d2"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        with holding_server(pp):
            c.send(query_message("BEGIN"))
            c.until_ready()
        c.send(parse_message("SELECT 1", "d2"), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "EZ"
        assert error_fields(msgs[0][1])["C"] == "42P05"
        assert c.status == "E"  # as PostgreSQL: the transaction is aborted
        c.send(query_message("ROLLBACK"))
        c.until_ready()
        assert c.status == "I"


def test_unknown_statement_gets_26000_for_bind_and_describe(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        c.send(parse_message("SELECT 'known'", "known"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        hold = holding_server(pp)
        hold.__enter__()
        c.send(bind_message(stmt="nope"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "EZ"
        err = error_fields(msgs[0][1])
        assert err["C"] == "26000" and err["M"] == 'prepared statement "nope" does not exist', err
        c.send(describe_message("S", "nope"), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "EZ"
        assert error_fields(msgs[0][1])["C"] == "26000"
        # Close of an unknown statement is no error, as in PostgreSQL
        c.send(close_message("S", "nope"), SYNC)
        assert message_types(c.until_ready()) == "3Z"
        # on this other server, the known name works
        c.send(bind_message(stmt="known"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "2DCZ" and data_row(msgs[1][1]) == ["known"]
        hold.__exit__(None, None, None)


def test_close_then_parse_the_same_name_again(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        c.send(parse_message("SELECT 'first'", "s"), bind_message(stmt="s"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "12DCZ"
        with holding_server(pp):
            c.send(close_message("S", "s"), SYNC)
            assert message_types(c.until_ready()) == "3Z"
        c.send(parse_message("SELECT 'second'", "s"), bind_message(stmt="s"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "12DCZ"
        assert data_row(msgs[2][1]) == ["second"]
    # the closed statement stays on the server for whoever prepares it next
    assert any(r["query"] == "SELECT 'first'" for r in pp.show("PREPARED_STATEMENTS"))


def test_deallocate_all_and_discard_all_clear_the_clients_statements(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        for command in ("DEALLOCATE ALL", "DISCARD ALL"):
            c.send(parse_message("SELECT 1", "a"), SYNC)
            assert message_types(c.until_ready()) == "1Z"
            with holding_server(pp):  # on the other server: this client's statements go all the same
                c.send(query_message(command))
                msgs = c.until_ready()
            assert message_types(msgs) == "CZ", msgs
            with holding_server(pp):
                c.send(bind_message(stmt="a"), execute_message(), SYNC)
                msgs = c.until_ready()
            assert message_types(msgs) == "EZ", (command, msgs)
            assert error_fields(msgs[0][1])["C"] == "26000"
        # and the servers prepare their statements again when asked
        c.send(parse_message("SELECT 1", "a"), bind_message(stmt="a"), execute_message(), SYNC)
        assert message_types(c.until_ready()) == "12DCZ"


def test_sql_deallocate_of_a_protocol_statement_name(pgpulse):
    """DEALLOCATE name (simple Query, or extended as psycopg sends it) of a
    name the client prepared with Parse: the name is gone, as on
    PostgreSQL, whichever server runs it."""
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        c.send(parse_message("SELECT 1", "s1"), parse_message("SELECT 2", "Mixed"), SYNC)
        assert message_types(c.until_ready()) == "11Z"
        with holding_server(pp):
            c.send(query_message("deallocate S1;"))
            msgs = c.until_ready()
            assert message_types(msgs) == "CZ" and msgs[0][1] == b"DEALLOCATE\0", msgs
            c.send(parse_message('DEALLOCATE PREPARE "Mixed"'), bind_message(), execute_message(), SYNC)
            msgs = c.until_ready()
            assert message_types(msgs) == "12CZ" and msgs[2][1] == b"DEALLOCATE\0", msgs
        for name in ("s1", "Mixed"):
            c.send(bind_message(stmt=name), execute_message(), SYNC)
            msgs = c.until_ready()
            assert message_types(msgs) == "EZ" and error_fields(msgs[0][1])["C"] == "26000", msgs
        # a name the client does not have: PostgreSQL's own answer
        c.send(query_message("DEALLOCATE nothing"))
        msgs = c.until_ready()
        assert message_types(msgs) == "EZ" and error_fields(msgs[0][1])["C"] == "26000", msgs


def test_psycopg_cache_rotation_deallocates_through_pgpulse(pgpulse):
    """psycopg keeps prepared_max statements and DEALLOCATEs the oldest: with
    a small cache and many distinct queries, that runs all the time."""
    pp = start(pgpulse, pool_size=2)
    with pp.connect(autocommit=True, application_name="rotating") as conn, \
            pp.connect(autocommit=True) as other:
        conn.prepared_max = 3
        for rep in range(4):
            for k in range(8):
                assert conn.execute(f"SELECT %s::int AS q{k}", (rep,), prepare=True).fetchone() == (rep,)
                assert other.execute("SELECT %s::int", (k,), prepare=True).fetchone() == (k,)
        # the client's map follows psycopg's cache: at most prepared_max names
        row = next(r for r in pp.show("CLIENTS") if r["application_name"] == "rotating")
        assert 1 <= int(row["prepared_statements"]) <= 3, row


def test_error_mid_pipeline_skips_to_sync_and_names_stay_true(pgpulse):
    """Pipelined batches; the second fails at its Execute: its Parse of s2
    is skipped by PostgreSQL, so s2 must not exist for the client; the third
    batch runs."""
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port) as c:
        c.send(parse_message("SELECT 10 / ($1::int + (random() * 0)::int)", "div"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        hold = holding_server(pp)
        hold.__enter__()  # the pipeline runs on the other server
        c.send(bind_message([2], stmt="div"), execute_message(), SYNC,
               bind_message([0], stmt="div"), execute_message(), parse_message("SELECT 2", "s2"),
               bind_message(stmt="s2"), execute_message(), SYNC,
               bind_message([5], stmt="div"), execute_message(), SYNC)
        first = c.until_ready()
        second = c.until_ready()
        third = c.until_ready()
        assert message_types(first) == "2DCZ" and data_row(first[1][1]) == ["5"]
        assert message_types(second) == "2EZ", second
        assert error_fields(second[1][1])["C"] == "22012"
        assert message_types(third) == "2DCZ" and data_row(third[1][1]) == ["2"]
        c.send(bind_message(stmt="s2"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "EZ" and error_fields(msgs[0][1])["C"] == "26000"
        hold.__exit__(None, None, None)


def test_answered_parse_complete_after_a_server_error_is_dropped(pgpulse):
    """The server has 'SELECT 3' already (another client prepared it), so
    pgpulse would answer this client's Parse itself; but an error earlier in
    the batch means PostgreSQL would not have sent that ParseComplete."""
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port) as a, RawConn(pp.port) as c:
        c.send(parse_message("SELECT 1 / ($1::int + (random() * 0)::int)", "bad"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        with holding_server(pp):  # both on the other server, which gets 'SELECT 3' first
            a.send(parse_message("SELECT 3", "three"), SYNC)
            assert message_types(a.until_ready()) == "1Z"
            c.send(bind_message([0], stmt="bad"), execute_message(), parse_message("SELECT 3", "mine"),
                   bind_message(stmt="mine"), execute_message(), SYNC)
            msgs = c.until_ready()
        assert message_types(msgs) == "2EZ", msgs
        c.send(describe_message("S", "mine"), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "EZ" and error_fields(msgs[0][1])["C"] == "26000"
        # the same Parse again in a clean batch: answered by pgpulse
        c.send(parse_message("SELECT 3", "mine"), flush_message())
        assert c.recv_msg() == ("1", b"")
        c.send(bind_message(stmt="mine"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "2DCZ" and data_row(msgs[1][1]) == ["3"]


def test_parse_failing_on_the_server_leaves_no_name_behind(pgpulse):
    pp = start(pgpulse)
    with RawConn(pp.port) as c:
        c.send(parse_message("SELECT 'good'", "good"), parse_message("SELEC 1", "typo"), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "1EZ" and error_fields(msgs[1][1])["C"] == "42601"
        with holding_server(pp):
            c.send(bind_message(stmt="typo"), execute_message(), SYNC)
            msgs = c.until_ready()
            assert error_fields(msgs[0][1])["C"] == "26000", msgs
            c.send(bind_message(stmt="good"), execute_message(), SYNC)
            msgs = c.until_ready()
            assert message_types(msgs) == "2DCZ" and data_row(msgs[1][1]) == ["good"]
        c.send(parse_message("SELECT 'fixed'", "typo"), bind_message(stmt="typo"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "12DCZ" and data_row(msgs[2][1]) == ["fixed"]


def test_copy_from_stdin_through_a_named_statement(pgpulse, table):
    pp = start(pgpulse, pool_size=2, extra="query_wait_timeout = 5")
    with RawConn(pp.port) as c:
        c.send(parse_message(f"COPY {table} FROM STDIN", "cp"), bind_message(stmt="cp"), execute_message(), SYNC)
        seen = []
        while not seen or seen[-1] != "G":
            seen.append(c.recv_msg()[0])
        assert seen == ["1", "2", "G"], seen
        c.send(message("d", b"1\tone\n2\ttwo\n"), message("c"), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "CZ", msgs
        assert c.query(f"SELECT count(*) FROM {table}") == [["2"]]
        # and again, on a server that must prepare it first
        with holding_server(pp):
            c.send(bind_message(stmt="cp"), execute_message(), SYNC)
            assert c.recv_msg()[0] == "2" and c.recv_msg()[0] == "G"
            c.send(message("d", b"3\tthree\n"), message("c"), SYNC)
            assert message_types(c.until_ready()) == "CZ"
        assert c.query(f"SELECT count(*) FROM {table}") == [["3"]]


def test_flush_gets_the_answered_parse_complete_without_sync(pgpulse):
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port, timeout=5) as c:
        c.send(parse_message("SELECT $1::text", "f1"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
    with RawConn(pp.port, timeout=5) as c:
        c.send(parse_message("SELECT $1::text", "f2"), flush_message())
        assert c.recv_msg() == ("1", b"")
        c.send(bind_message(["hi"], stmt="f2"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "2DCZ" and data_row(msgs[1][1]) == ["hi"]
        with holding_server(pp):
            c.send(bind_message(["there"], stmt="f2"), execute_message(), SYNC)
            msgs = c.until_ready()
            assert message_types(msgs) == "2DCZ" and data_row(msgs[1][1]) == ["there"]


def test_client_leaving_mid_batch_leaves_pgpulse_healthy(pgpulse):
    pp = start(pgpulse, pool_size=1, extra="query_wait_timeout = 5")
    with RawConn(pp.port) as d:
        d.send(parse_message("SELECT 'mine'", "mine"), SYNC)
        assert message_types(d.until_ready()) == "1Z"
        c = RawConn(pp.port)
        c.send(parse_message("SELECT pg_sleep(0.2)", "zz"), bind_message(stmt="zz"), execute_message())
        time.sleep(0.05)
        c.sock.close()  # its server is closed: it was mid-batch
        d.send(bind_message(stmt="mine"), execute_message(), SYNC)
        msgs = d.until_ready()
        assert message_types(msgs) == "2DCZ" and data_row(msgs[1][1]) == ["mine"]


def test_deep_pipeline_of_named_statements(pgpulse):
    """Seven statements prepared on one server, then 50 pipelined batches on
    the other, which may hold three: each batch's statement is prepared
    there (evicting another) ahead of its Bind."""
    pp = start(pgpulse, pool_size=2, extra="max_prepared_statements = 3")
    with RawConn(pp.port) as c:
        c.send(*[parse_message(f"SELECT {k} + $1::int", f"p{k}") for k in range(7)], SYNC)
        assert message_types(c.until_ready()) == "1111111Z"
        with holding_server(pp):
            msgs = []
            for i in range(50):
                msgs += [bind_message([i], stmt=f"p{i % 7}"), execute_message(), SYNC]
            c.send(*msgs)
            for i in range(50):
                got = c.until_ready()
                rows = [data_row(b) for t, b in got if t == "D"]
                assert rows == [[str(i % 7 + i)]], (i, got)


def test_named_statements_after_a_thousand_pipelined_unnamed_ones(pgpulse):
    """Unnamed statements go through uncounted by the reply queue's entries
    (issue 18); 1,000 of them pipelined ahead of a Parse that pgpulse
    answers itself (the server has the text), one it sends (a new text) and
    their Binds: every reply comes back in the order of the requests."""
    pp = start(pgpulse, pool_size=1)
    with RawConn(pp.port) as a, RawConn(pp.port) as c:
        a.send(parse_message("SELECT 42", "a42"), SYNC)  # the only server has the text now
        assert message_types(a.until_ready()) == "1Z"
        msgs = []
        for i in range(1000):
            msgs += [parse_message(f"SELECT {i}"), bind_message(), execute_message()]
        msgs += [parse_message("SELECT 42", "answered"), parse_message("SELECT 43", "sent"),
                 bind_message(stmt="answered"), execute_message(), bind_message(stmt="sent"),
                 execute_message(), SYNC]
        c.send(*msgs)
        got = c.until_ready()
        assert message_types(got) == "12DC" * 1000 + "11" + "2DC2DC" + "Z"
        rows = [data_row(b) for t, b in got if t == "D"]
        assert rows == [[str(i)] for i in range(1000)] + [["42"], ["43"]]
        assert int(stats(pp)["total_server_parse_count"]) == 2  # SELECT 42 and SELECT 43, once each


def test_error_in_the_middle_of_a_long_unnamed_pipeline_skips_the_named_parse_after_it(pgpulse):
    """The 151st of 300 pipelined unnamed statements fails: PostgreSQL skips
    the rest of the batch, the named Parse at its end too, so that name must
    not exist; the next batch runs."""
    pp = start(pgpulse, pool_size=1)
    with RawConn(pp.port) as c:
        msgs = []
        for i in range(300):
            msgs += [parse_message("SELECT 1/0" if i == 150 else f"SELECT {i}"), bind_message(), execute_message()]
        msgs += [parse_message("SELECT 'late'", "late"), SYNC,
                 parse_message("SELECT 'next'", "next"), bind_message(stmt="next"), execute_message(), SYNC]
        c.send(*msgs)
        first = c.until_ready()
        assert message_types(first) == "12DC" * 150 + "1EZ"  # 1/0 is folded when the Bind plans it
        assert error_fields(first[-2][1])["C"] == "22012"
        second = c.until_ready()
        assert message_types(second) == "12DCZ" and data_row(second[2][1]) == ["next"]
        c.send(bind_message(stmt="late"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "EZ" and error_fields(msgs[0][1])["C"] == "26000"


def test_copy_data_sent_with_its_copy_keeps_later_batches_in_step(pgpulse, table):
    """A client writes a COPY, its data and its end at once (without waiting
    for CopyInResponse), by simple query and by the extended protocol, then
    batches with a named statement: PostgreSQL answers the Syncs that follow
    the end of a COPY, and pgpulse must count them (after a simple query's
    COPY it dropped them, and lost step with the server)."""
    pp = start(pgpulse, pool_size=1)
    with RawConn(pp.port) as a:
        a.send(parse_message(f"SELECT count(*) FROM {table}", "a"), SYNC)  # the only server has it
        assert message_types(a.until_ready()) == "1Z"
    with RawConn(pp.port) as c:
        c.send(query_message(f"COPY {table} FROM STDIN"), message("d", b"1\tone\n"), message("c"),
               parse_message("SELECT 'plain'"), bind_message(), execute_message(), SYNC,
               parse_message(f"SELECT count(*) FROM {table}", "n"), SYNC)  # answered by pgpulse
        assert message_types(c.until_ready()) == "GCZ"
        got = c.until_ready()
        assert message_types(got) == "12DCZ" and data_row(got[2][1]) == ["plain"]
        assert message_types(c.until_ready()) == "1Z"
        c.send(parse_message(f"COPY {table} FROM STDIN"), bind_message(), execute_message(), SYNC,
               message("d", b"2\ttwo\n"), message("c"), SYNC,
               bind_message(stmt="n"), execute_message(), SYNC)
        assert message_types(c.until_ready()) == "12GCZ"
        got = c.until_ready()
        assert message_types(got) == "2DCZ" and data_row(got[1][1]) == ["2"]
    with RawConn(pp.port) as d:  # the only server went back to the pool in step
        assert d.query("SELECT 'again'") == [["again"]]


def test_statement_changing_result_type_is_prepared_again(pgpulse, pg, table):
    """A migration changes a table's columns under load: PostgreSQL answers
    'cached plan must not change result type' (0A000) to a statement
    prepared before it; pgpulse drops that statement from the server, so the
    next execution prepares it again and works (PgBouncer needs RECONNECT)."""
    pp = start(pgpulse, pool_size=2)
    pg.query(f"INSERT INTO {table} VALUES (1, 'one')", dbname="appdb")
    stop = threading.Event()
    errors, after = [], []

    def work():
        with pp.connect(autocommit=True) as conn:
            migrated_seen = False
            while not stop.is_set():
                try:
                    row = conn.execute(f"SELECT * FROM {table} WHERE id = %s", (1,), prepare=True).fetchone()
                    if len(row) == 3:
                        migrated_seen = True
                    elif migrated_seen:
                        after.append(row)
                except psycopg.errors.FeatureNotSupported as e:
                    errors.append(str(e))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    pg.query(f"ALTER TABLE {table} ADD COLUMN extra int DEFAULT 7", dbname="appdb")
    time.sleep(1.0)
    errors_at_1s = len(errors)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(10)
    # each (client, server) may see it once; then never again
    assert all("cached plan must not change result type" in e for e in errors), errors[:3]
    assert len(errors) == errors_at_1s, errors
    assert not after
    with pp.connect(autocommit=True) as conn:
        for _ in range(6):
            assert conn.execute(f"SELECT * FROM {table} WHERE id = %s", (1,),
                                prepare=True).fetchone() == (1, "one", 7)


def test_pipeline_deeper_than_the_reply_queue_holds(pgpulse):
    """6,000 Bind/Execute/Sync batches written at once (18,000 replies due):
    pgpulse stops reading the client while 16,384 are queued and goes on as
    they come back; every batch gets its own row."""
    pp = start(pgpulse, pool_size=2)
    n = 6000
    with RawConn(pp.port, timeout=60) as c:
        c.send(parse_message("SELECT $1::int", "n"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        blob = b"".join(bind_message([i], stmt="n") + execute_message() + SYNC for i in range(n))
        with holding_server(pp):  # on the server that does not have it yet
            sender = threading.Thread(target=c.send, args=(blob,))
            sender.start()
            for i in range(n):
                got = c.until_ready()
                assert message_types(got) == "2DCZ" and data_row(got[1][1]) == [str(i)], (i, got)
            sender.join(30)
        assert c.query("SELECT 'after'") == [["after"]]


def test_statement_mode_carries_named_statements(pgpulse):
    pp = start(pgpulse, pool_mode="statement", pool_size=2)
    with pp.connect(autocommit=True) as a, pp.connect(autocommit=True) as b:
        for i in range(10):
            assert a.execute("SELECT %s::int * 3", (i,), prepare=True).fetchone() == (3 * i,)
            assert b.execute("SELECT %s::int * 3", (i,), prepare=True).fetchone() == (3 * i,)
    assert int(stats(pp)["total_server_parse_count"]) <= 2


def test_bind_only_requests_count_for_their_statement_beyond_eight(pgpulse):
    """Twelve statements, each prepared once and then only bound: SHOW
    QUERIES gives each its own calls, whichever server ran them."""
    pp = start(pgpulse, pool_size=2)
    with pp.connect(autocommit=True) as conn:
        for rep in range(3):
            for k in range(12):
                assert conn.execute(f"SELECT %s::int AS c{k}", (rep,), prepare=True).fetchone() == (rep,)
    rows = {r["query"]: int(r["calls"]) for r in pp.show("QUERIES")}
    # psycopg's Parse + Sync is a request of its own, then three Bind-only ones
    for k in range(12):
        assert rows.get(f"select ?::int as c{k}") == 4, rows


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_every_execute_of_twenty_statements_counts_for_its_own_text(pgpulse, pool_mode):
    """Three clients each prepare twenty statements in one batch, then only
    Bind and Execute them, one request each: SHOW QUERIES gives every
    statement exactly its executions (the batch that prepared them counts
    for the first one). Session mode passes the names through; transaction
    mode, on a pool of two, moves them between servers."""
    clients, rounds, n = 3, 12, 20
    pp = start(pgpulse, pool_mode=pool_mode, pool_size=clients if pool_mode == "session" else 2)
    conns = [RawConn(pp.port) for _ in range(clients)]
    try:
        for c in conns:
            c.send(*[parse_message(f"SELECT $1::int AS c{k}", f"s{k}") for k in range(n)], SYNC)
            assert message_types(c.until_ready()) == "1" * n + "Z"
        for rep in range(rounds):
            for k in range(n):
                for c in conns:
                    c.send(bind_message([rep], stmt=f"s{k}"), execute_message(), SYNC)
                    got = c.until_ready()
                    assert [data_row(b) for t, b in got if t == "D"] == [[str(rep)]], got
        rows = {r["query"]: int(r["calls"]) for r in pp.show("QUERIES")}
        for k in range(n):
            want = clients * (rounds + (1 if k == 0 else 0))
            assert rows.get(f"select ?::int as c{k}") == want, (k, rows)
    finally:
        for c in conns:
            c.close()


def test_a_statement_first_prepared_in_another_pool_counts_in_this_one(pgpulse):
    """app prepares a text; md5user prepares the same text behind another
    Parse, so its request is fingerprinted by the first one: md5user's
    executions of the shared statement still count for md5user's pool."""
    pp = pgpulse(make_ini("transaction", 2), {**USERS, "md5user": "md5_pw"})
    with RawConn(pp.port) as a, RawConn(pp.port, user="md5user", password="md5_pw") as b:
        a.send(parse_message("SELECT $1::int AS shared", "s"), bind_message([1], stmt="s"),
               execute_message(), SYNC)
        assert message_types(a.until_ready()) == "12DCZ"
        b.send(parse_message("SELECT 1 AS opener", "o"), parse_message("SELECT $1::int AS shared", "s"),
               SYNC)
        assert message_types(b.until_ready()) == "11Z"
        for i in range(7):
            b.send(bind_message([i], stmt="s"), execute_message(), SYNC)
            assert [data_row(m) for t, m in b.until_ready() if t == "D"] == [[str(i)]]
    calls = {(r["user"], r["query"]): int(r["calls"]) for r in pp.show("QUERIES")}
    assert calls.get(("app", "select ?::int as shared")) == 1, calls
    assert calls.get(("md5user", "select ?::int as shared")) == 7, calls
    assert calls.get(("md5user", "select ? as opener")) == 1, calls


def test_a_statement_whose_fingerprint_was_evicted_counts_again(pgpulse):
    """max_query_fingerprints = 2: two simple queries push the prepared
    statement's entry out; its next Bind-only requests make it again from
    the statement's text and count there."""
    pp = start(pgpulse, extra="max_query_fingerprints = 2")
    with RawConn(pp.port) as c:
        c.send(parse_message("SELECT $1::int AS evicted", "s"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        c.query("SELECT 1 AS a")
        c.query("SELECT 1 AS b")
        assert "select ?::int as evicted" not in {r["query"] for r in pp.show("QUERIES")}
        for i in range(5):
            c.send(bind_message([i], stmt="s"), execute_message(), SYNC)
            assert [data_row(m) for t, m in c.until_ready() if t == "D"] == [[str(i)]]
    calls = {r["query"]: int(r["calls"]) for r in pp.show("QUERIES")}
    assert calls.get("select ?::int as evicted") == 5, calls


# ------------------------------------------------------------ visibility and modes

def test_show_commands_report_statements_and_reuse(pgpulse):
    pp = start(pgpulse, pool_size=1)
    conns = [pp.connect(autocommit=True) for _ in range(3)]
    for conn in conns:
        for _ in range(3):
            conn.execute("SELECT %s::int", (1,), prepare=True)
    listing = pp.show("PREPARED_STATEMENTS")
    row = next(r for r in listing if r["query"] == "SELECT $1::int")
    assert int(row["clients"]) == 3 and int(row["servers"]) == 1, row
    assert int(row["client_parses"]) == 3 and int(row["server_parses"]) == 1, row
    assert int(row["binds"]) == 9, row
    assert row["server_name"].startswith("PGPULSE_")
    clients = [c for c in pp.show("CLIENTS") if c["database"] == "appdb"]
    assert sorted(int(c["prepared_statements"]) for c in clients) == [1, 1, 1]
    servers = pp.show("SERVERS")
    assert [int(s["prepared_statements"]) for s in servers] == [1]
    totals = pp.show("STATS_TOTALS")
    t = next(r for r in totals if r["database"] == "appdb")
    assert int(t["client_parse_count"]) == 3 and int(t["server_parse_count"]) == 1
    assert int(t["bind_count"]) == 9
    for conn in conns:
        conn.close()


def test_session_mode_passes_names_through(pgpulse, pg):
    pp = start(pgpulse, pool_mode="session")
    with RawConn(pp.port) as c:
        c.send(parse_message("SELECT 1", "mine"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        assert c.query("SELECT name FROM pg_prepared_statements") == [["mine"]]


def test_max_prepared_statements_0_turns_tracking_off(pgpulse):
    pp = start(pgpulse, extra="max_prepared_statements = 0")
    with RawConn(pp.port) as c:
        c.send(parse_message("SELECT 1", "raw"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        # passed through: the server knows the client's own name
        assert c.query("SELECT name FROM pg_prepared_statements") == [["raw"]]


def test_simple_deallocate_answers_after_the_statements_table_was_dropped(pgpulse, pg, table):
    """DEALLOCATE s1 as a simple Query on a server that never prepared s1,
    whose table is gone: PostgreSQL direct answers DEALLOCATE; so must
    pgpulse, without hanging the client."""
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port, timeout=5) as c:
        c.send(parse_message(f"SELECT id FROM {table}", "s1"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        pg.query(f"DROP TABLE {table}", dbname="appdb")
        with holding_server(pp):
            c.send(query_message("DEALLOCATE s1"))
            msgs = c.until_ready()
            assert message_types(msgs) == "CZ" and msgs[0][1] == b"DEALLOCATE\0", msgs
        c.send(query_message("SELECT 1"))
        assert message_types(c.until_ready()) == "TDCZ"


def test_psycopg_deallocate_answers_after_the_statements_table_was_dropped(pgpulse, pg, table):
    """psycopg's DEALLOCATE (an unnamed Parse, Bind, Execute, Sync) of a
    statement whose table is gone: 1 2 C Z as PostgreSQL direct gives, not
    the old statement's error."""
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port, timeout=5) as c:
        c.send(parse_message(f"SELECT id FROM {table}", "s1"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        pg.query(f"DROP TABLE {table}", dbname="appdb")
        with holding_server(pp):
            c.send(parse_message("DEALLOCATE s1"), bind_message(), execute_message(), SYNC)
            msgs = c.until_ready()
            assert message_types(msgs) == "12CZ" and msgs[2][1] == b"DEALLOCATE\0", msgs
        c.send(bind_message(stmt="s1"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "EZ" and error_fields(msgs[0][1])["C"] == "26000", msgs


def test_simple_deallocate_in_a_failed_transaction_gets_postgresqls_error(pgpulse):
    """DEALLOCATE s1 inside an aborted transaction, on a server that never
    prepared s1: 25P02 and ReadyForQuery as PostgreSQL direct; the client's
    next Query is answered."""
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port, timeout=5) as c:
        c.send(parse_message("SELECT 'x'", "s1"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        with holding_server(pp):
            c.send(query_message("BEGIN"))
            c.until_ready()
            c.send(query_message("SELECT 1/0"))
            c.until_ready()
            c.send(query_message("DEALLOCATE s1"))
            msgs = c.until_ready()
            assert message_types(msgs) == "EZ" and error_fields(msgs[0][1])["C"] == "25P02", msgs
            assert c.status == "E"
            c.send(query_message("ROLLBACK"))
            assert message_types(c.until_ready()) == "CZ" and c.status == "I"


def test_a_deallocate_that_failed_in_a_failed_transaction_keeps_the_statement(pgpulse):
    """BEGIN; an error; DEALLOCATE s1 fails with 25P02; ROLLBACK: s1 still
    exists, as on PostgreSQL direct."""
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port, timeout=5) as c:
        c.send(parse_message("SELECT 'x'", "s1"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        for sql in ("BEGIN", "SELECT 1/0", "DEALLOCATE s1", "ROLLBACK"):
            c.send(query_message(sql))
            c.until_ready()
        c.send(bind_message(stmt="s1"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "2DCZ", msgs


def test_a_failed_parse_fails_the_same_text_in_the_next_pipelined_batch_too(pgpulse):
    """Parse s1 (a missing table), Sync, then Parse s2 of the same text, Bind,
    Execute, Sync in the same write: both batches fail with 42P01 as on
    PostgreSQL direct; pgpulse's own statement names never show."""
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port, timeout=5) as c:
        c.send(parse_message("SELECT * FROM nosuch_pipelined", "s1"), SYNC,
               parse_message("SELECT * FROM nosuch_pipelined", "s2"), bind_message(stmt="s2"), execute_message(), SYNC)
        for _ in range(2):
            msgs = c.until_ready()
            assert message_types(msgs) == "EZ", msgs
            assert error_fields(msgs[0][1])["C"] == "42P01", msgs
            assert b"PGPULSE" not in msgs[0][1], msgs
        c.send(bind_message(stmt="s2"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "EZ" and error_fields(msgs[0][1])["C"] == "26000", msgs


def test_deallocate_all_keeps_a_statement_prepared_after_it_in_the_same_pipeline(pgpulse):
    """DEALLOCATE ALL, then Parse s2, in one write: s2 is prepared after the
    DEALLOCATE ALL ran, and can be used."""
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port, timeout=5) as c:
        c.send(parse_message("SELECT 1", "a"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        c.send(query_message("DEALLOCATE ALL"), parse_message("SELECT 2", "s2"), SYNC)
        assert message_types(c.until_ready()) == "CZ"
        assert message_types(c.until_ready()) == "1Z"
        c.send(bind_message(stmt="s2"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "2DCZ", msgs
        c.send(bind_message(stmt="a"), execute_message(), SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "EZ" and error_fields(msgs[0][1])["C"] == "26000", msgs


def test_a_pipeline_of_many_closes_is_answered(pgpulse):
    """Parse, Bind, then 17,000 Closes of unknown names (each answered by
    pgpulse), then Sync, in one write: every reply comes, nothing stalls."""
    pp = start(pgpulse, pool_size=2)
    with RawConn(pp.port, timeout=10) as c:
        c.send(parse_message("SELECT 1", "one"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        n = 17000
        c.send(parse_message("SELECT 2"), bind_message(), *[close_message("S", f"nope{i}") for i in range(n)], SYNC)
        msgs = c.until_ready()
        assert message_types(msgs) == "12" + "3" * n + "Z"


def test_a_large_parameter_of_a_named_statement_is_not_held_in_memory(pgpulse, pgpulse_bin):
    """Bind of a named statement with a 48 MB parameter: the parameters are
    forwarded as they come (only the head with the name is rewritten), so
    pgpulse's memory does not grow by the size of the Bind."""
    if built_with_asan(pgpulse_bin):
        pytest.skip("RSS is not meaningful under AddressSanitizer")
    pp = start(pgpulse, pool_size=2)
    size = 48 << 20
    with RawConn(pp.port, timeout=60) as c:
        c.send(parse_message("SELECT length($1::text)", "len"), SYNC)
        assert message_types(c.until_ready()) == "1Z"
        base = rss_kb(pp.pid)
        peak = [base]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kb(pp.pid))
                time.sleep(0.002)
        t = threading.Thread(target=watch)
        t.start()
        try:
            c.send(bind_message(["x" * size], stmt="len"), execute_message(), SYNC)
            msgs = c.until_ready()
        finally:
            done.set()
            t.join()
        assert message_types(msgs) == "2DCZ", message_types(msgs)
        assert data_row(msgs[1][1]) == [str(size)], msgs[1][1][:40]
        assert peak[0] - base < (size >> 10) // 2, (base, peak[0])
