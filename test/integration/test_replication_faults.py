"""Replication connections against hostile clients and faults (from a hostile
review of the pass-through): settings that try to change the walsender's
user or database, PAUSE, a refused walsender and the database's hosts,
cancel, a server or KILL ending a stream, a client leaving while its
walsender logs in, CopyDone, large CopyData, a client that stops reading,
the extended protocol.  Each checks the PostgreSQL-direct behaviour."""

import socket
import struct
import threading

import psycopg
import pytest

from pgpulse_harness import RawConn, ServerError, build_ini, cstr, error_fields, message, query_message, wait_until

DB = "repl"
PASSWORD = "postgres_pw"
USERLIST = {"postgres": PASSWORD, "app": "app_pw", "admin": "admin_pw"}


@pytest.fixture(scope="module")
def repl_db(pg):
    pg.query(f"DROP DATABASE IF EXISTS {DB}")
    pg.query(f"CREATE DATABASE {DB}")
    yield DB
    pg.query(f"DROP DATABASE IF EXISTS {DB}")


def settings(**extra):
    s = {
        "listen_addr": "127.0.0.1",
        "listen_port": "{port}",
        "unix_socket_dir": "{dir}",
        "auth_type": "scram-sha-256",
        "auth_file": "{auth_file}",
        "admin_users": "admin",
        "pool_mode": "session",
    }
    s.update({k: str(v) for k, v in extra.items()})
    return s


def dsn(pp, user="postgres", password=PASSWORD, dbname=DB):
    return f"host=127.0.0.1 port={pp.port} dbname={dbname} user={user} password={password} sslmode=disable"


def identify_dbname(conn):
    # IDENTIFY_SYSTEM's fourth column: the walsender's database (NULL for a physical one)
    return conn.execute("IDENTIFY_SYSTEM").fetchone()[3]


def test_replication_options_cannot_move_walsender_to_another_database(pgpulse, pg, repl_db):
    """`options=-c database=postgres` reaches the walsender's startup packet as a
    top-level database= pair (settings_each in put_owner_startup), and
    PostgreSQL takes the last one: the client streams from a database its
    [databases] entry does not name.  Directly, PostgreSQL refuses the option."""
    pp = pgpulse(build_ini({DB: ""}, None, settings()), USERLIST)
    with pytest.raises(psycopg.Error):
        psycopg.connect(pg.dsn(dbname=DB, password=PASSWORD), replication="database",
                        options="-c database=postgres", connect_timeout=10).close()
    try:
        conn = psycopg.connect(dsn(pp), replication="database", options="-c database=postgres",
                               autocommit=True, connect_timeout=10)
    except psycopg.Error:
        return  # refused, as PostgreSQL does
    with conn:
        assert identify_dbname(conn) == DB


def test_replication_options_cannot_change_walsender_user(pgpulse, pg, repl_db):
    """`options=-c user=postgres` becomes a second user= pair in the walsender's
    startup packet: authenticated to pgpulse as app, the client runs as the
    superuser (the pooler reaches PostgreSQL over its trusted unix socket)."""
    ini = build_ini({DB: f"host={{pg_socket_dir}} port={{pg_port}} dbname={DB}"}, None, settings())
    pp = pgpulse(ini, USERLIST)
    try:
        conn = psycopg.connect(dsn(pp, user="app", password="app_pw"), replication="database",
                               options="-c user=postgres", autocommit=True, connect_timeout=10)
    except psycopg.Error:
        return
    with conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "app"


def physical(port):
    return RawConn(port, user="postgres", password=PASSWORD, database="replication",
                   params={"replication": "true"})


def start_stream(conn):
    """START_REPLICATION from the current flush position: the CopyBothResponse."""
    (_, _, lsn, _), = conn.query("IDENTIFY_SYSTEM")
    conn.send(query_message(f"START_REPLICATION PHYSICAL {lsn}"))
    t, _ = conn.recv_msg()
    assert t == "W", t


def messages_after_cancel(conn, port):
    """Cancel the stream; the message types up to the next ReadyForQuery (or EOF)."""
    conn.cancel(port)
    types = []
    try:
        while True:
            t, body = conn.recv_msg()
            if t == "E":
                types.append(("E", error_fields(body)["C"]))
            elif t in "cCZ":
                types.append(t)
            if t == "Z":
                return types
    except EOFError:
        types.append("EOF")
        return types


def test_replication_cancel_of_a_stream_acts_as_on_postgresql(pgpulse, pg, repl_db):
    pp = pgpulse(build_ini({DB: "", "replication": ""}, None, settings()), USERLIST)
    with physical(pg.port) as direct:
        start_stream(direct)
        want = messages_after_cancel(direct, pg.port)
    with physical(pp.port) as through:
        start_stream(through)
        got = messages_after_cancel(through, pp.port)
    assert got == want


def test_replication_server_dies_mid_stream(pgpulse, pg, repl_db):
    """pg_terminate_backend on the walsender: the client is told, the pair is gone."""
    pp = pgpulse(build_ini({DB: "", "replication": ""}, None, settings()), USERLIST)
    conn = physical(pp.port)
    try:
        start_stream(conn)
        wait_until(lambda: pg.query("SELECT pg_terminate_backend(pid) FROM pg_stat_replication"), 10,
                   "the walsender to be terminated")
        with pytest.raises((EOFError, OSError)):
            while True:
                conn.recv_msg()
    finally:
        conn.sock.close()
    wait_until(lambda: not pp.show("SERVERS") and not [c for c in pp.show("CLIENTS") if c["database"] == "replication"], 10,
               "the pair to be gone")
    # and a new client gets a new walsender
    with physical(pp.port) as again:
        assert again.query("IDENTIFY_SYSTEM")


def test_replication_kill_closes_stream_and_walsender(pgpulse, pg, repl_db):
    pp = pgpulse(build_ini({DB: "", "replication": ""}, None, settings()), USERLIST)
    conn = physical(pp.port)
    try:
        start_stream(conn)
        pp.command("KILL replication")
        with pytest.raises((EOFError, OSError)):
            while True:
                conn.recv_msg()
    finally:
        conn.sock.close()
    wait_until(lambda: not pg.query("SELECT 1 FROM pg_stat_replication"), 10, "the walsender to exit")
    assert pp.show("SERVERS") == []


def test_replication_client_leaving_while_its_walsender_logs_in(pgpulse, pg, repl_db):
    """The server never answers its startup packet; the client gives up: the
    connection opened for it is closed, not kept for someone else."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(4)
    port = hole.getsockname()[1]
    try:
        ini = build_ini({DB: f"host=127.0.0.1 port={port} dbname={DB}"}, None,
                        settings(auth_type="trust", server_connect_timeout=60))
        pp = pgpulse(ini, USERLIST)
        sock = socket.create_connection(("127.0.0.1", pp.port), timeout=10)
        body = struct.pack("!I", 196608) + cstr("user") + cstr("postgres") + cstr("database") + cstr(DB) + \
            cstr("replication") + cstr("database") + b"\0"
        sock.sendall(struct.pack("!I", len(body) + 4) + body)
        hole.settimeout(10)
        srv, _ = hole.accept()
        srv.settimeout(10)
        assert srv.recv(8192)  # pgpulse's startup packet for the walsender
        wait_until(lambda: [p for p in pp.show("POOLS") if p["database"] == DB and p["cl_waiting"] == 1], 10,
                   "the client to wait for its walsender")
        sock.close()
        assert srv.recv(8192) == b""  # closed with its client
        srv.close()
        wait_until(lambda: pp.show("SERVERS") == [] and not [c for c in pp.show("CLIENTS") if c["database"] == DB], 10, "nothing left")
        pools = [p for p in pp.show("POOLS") if p["database"] == DB]
        assert all(p["cl_waiting"] == 0 and p["sv_login"] == 0 for p in pools), pools
    finally:
        hole.close()


def test_replication_pause_holds_then_resume_connects(pgpulse, pg, repl_db):
    pp = pgpulse(build_ini({DB: "", "replication": ""}, None, settings()), USERLIST)
    pp.command(f"PAUSE {DB}")
    result = {}

    def connect():
        try:
            with psycopg.connect(dsn(pp), replication="database", autocommit=True, connect_timeout=20) as c:
                result["db"] = identify_dbname(c)
        except Exception as e:  # noqa: BLE001 (reported by the assert below)
            result["error"] = e

    t = threading.Thread(target=connect)
    t.start()
    try:
        wait_until(lambda: [p for p in pp.show("POOLS") if p["database"] == DB and p["cl_waiting"] == 1], 10,
                   "the replication client to wait while paused")
        assert not pg.query("SELECT 1 FROM pg_stat_replication")
        pp.command(f"RESUME {DB}")
    finally:
        t.join(30)
    assert result == {"db": DB}


def until_ready_types(conn):
    types = []
    while True:
        t, body = conn.recv_msg()
        types.append(("E", error_fields(body)["C"]) if t == "E" else t)
        if t == "Z":
            return [x for x in types if x != "d"]


def copydone_then_query(port):
    with physical(port) as conn:
        start_stream(conn)
        conn.send(message("c"))
        first = until_ready_types(conn)
        return first, len(conn.query("IDENTIFY_SYSTEM"))


def test_replication_client_copydone_ends_stream_as_on_postgresql(pgpulse, pg, repl_db):
    pp = pgpulse(build_ini({DB: "", "replication": ""}, None, settings()), USERLIST)
    assert copydone_then_query(pp.port) == copydone_then_query(pg.port)
    clients = [c for c in pp.show("CLIENTS") if c["database"] == "replication"]
    assert clients == []


def big_copydata(port):
    with physical(port) as conn:
        start_stream(conn)
        conn.send(message("d", b"r" + b"\0" * (4 << 20)), message("c"))
        try:
            return until_ready_types(conn)
        except EOFError:
            return "EOF"


def test_replication_large_client_copydata_as_on_postgresql(pgpulse, pg, repl_db):
    pp = pgpulse(build_ini({DB: "", "replication": ""}, None, settings()), USERLIST)
    assert big_copydata(pp.port) == big_copydata(pg.port)


def test_replication_stream_to_a_client_that_stops_reading_is_bounded(pgpulse, pg, repl_db):
    pp = pgpulse(build_ini({DB: "", "replication": ""}, None, settings()), USERLIST)
    conn = RawConn(pp.port, user="postgres", password=PASSWORD, database="replication",
                   params={"replication": "true"}, rcvbuf=4096)
    try:
        start_stream(conn)
        before = pp.rss()
        pg.query("CREATE TABLE IF NOT EXISTS big (v text)", dbname=DB)
        pg.query("INSERT INTO big SELECT repeat(md5(g::text), 32) FROM generate_series(1, 150000) g",
                 dbname=DB)
        pg.query("SELECT pg_switch_wal()")
        # the walsender has sent what fits in the socket buffers and waits
        sent = lambda: pg.query("SELECT (sent_lsn - pg_current_wal_flush_lsn()) FROM pg_stat_replication")
        wait_until(lambda: pg.query("SELECT state FROM pg_stat_replication") == [("streaming",)], 10, "streaming")
        grown = pp.rss() - before
        assert grown < 32 << 20, (grown, sent())
    finally:
        conn.sock.close()
        pg.query("DROP TABLE IF EXISTS big", dbname=DB)


def extended_twice(port):
    """A named Parse/Bind/Execute of a replication command, twice, then a simple query."""
    out = []
    with RawConn(port, user="postgres", password=PASSWORD, database=DB, params={"replication": "database"}) as conn:
        for _ in range(2):
            conn.send(message("P", cstr("s1") + cstr("IDENTIFY_SYSTEM") + struct.pack("!H", 0)),
                      message("B", cstr("") + cstr("s1") + struct.pack("!HHH", 0, 0, 0)),
                      message("E", cstr("") + struct.pack("!I", 0)), message("S"))
            out.append(until_ready_types(conn))
        out.append(len(conn.query("IDENTIFY_SYSTEM")))
    return out


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_replication_extended_protocol_as_on_postgresql(pgpulse, pg, repl_db, mode):
    pp = pgpulse(build_ini({DB: ""}, None, settings(pool_mode=mode, max_prepared_statements=10)), USERLIST)
    assert extended_twice(pp.port) == extended_twice(pg.port)


def test_replication_refused_walsender_does_not_move_the_database_to_its_next_host(pgpulse, pg, repl_db):
    """load_balance_hosts = disable stays on the first host until a connection to it
    fails.  A walsender PostgreSQL refuses because of what its client sent (here a
    setting it does not know, from the client's options) is that client's failure,
    not the host's: yet server_close() calls note_host_failed() for it, and every
    pool of the database moves to the next host."""
    entry = f"host={{pg_socket_dir}},127.0.0.1 port={{pg_port}} dbname={DB} load_balance_hosts=disable"
    pp = pgpulse(build_ini({DB: entry}, None, settings()), USERLIST)

    def client_addr():
        with psycopg.connect(dsn(pp), connect_timeout=10) as c:
            return c.execute("SELECT inet_client_addr()::text").fetchone()[0]

    assert client_addr() is None  # the first host: the unix socket
    with pytest.raises(psycopg.OperationalError, match="unrecognized configuration parameter"):
        psycopg.connect(dsn(pp), replication="database", options="-c no_such_setting=1", connect_timeout=10)
    pp.command("RECONNECT")  # the ordinary pool's next connection picks its host again
    wait_until(lambda: not [s for s in pp.show("SERVERS") if s["database"] == DB], 10, "the old servers to close")
    assert client_addr() is None


def test_replication_uppercase_user_key_cannot_change_walsender_user(pgpulse, pg, repl_db):
    """The same through a top-level startup key: `USER` is not `user` to pgpulse
    (strcmp), becomes the setting `user` (settings_add folds case), and lands in
    the walsender's startup packet after the real user=."""
    ini = build_ini({DB: f"host={{pg_socket_dir}} port={{pg_port}} dbname={DB}"}, None, settings())
    pp = pgpulse(ini, USERLIST)
    try:
        conn = RawConn(pp.port, user="app", password="app_pw", database=DB,
                       params={"replication": "database", "USER": "postgres"})
    except ServerError:
        return
    with conn:
        assert conn.query("SELECT current_user") == [["app"]]
