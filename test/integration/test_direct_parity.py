"""What a driver sees through pgpulse matches what PostgreSQL direct would
show it: the backend pid in BackendKeyData, one error when PostgreSQL ends
a session, ParameterStatus values in PostgreSQL's own form, a silent close
before a startup packet, the answers to a startup packet (NegotiateProtocolVersion,
errors with their hints, nothing about options before authentication), a
session's traffic message for message; and signals as PgBouncer 1.25
documents them. The differences that remain are listed, with their reasons,
in doc/architecture.md (Session mode: what a driver can still tell apart).

Session mode unless a test says otherwise; raw-protocol tests use RawConn
(pgpulse_harness), the others psycopg.
"""

import signal
import socket
import struct
import threading

import psycopg
import psycopg.errors
import pytest

from pgpulse_harness import RawConn, ServerError, bind_message, cancel_request, close_message, cstr, describe_message, \
    error_fields, execute_message, message, parse_message, port_accepts, query_message, split_messages, \
    sync_message, wait_eof, wait_until

USERS = {"app": "app_pw", "admin": "admin_pw"}

# the first pid a pgpulse of its own hands out: above Linux's PID_MAX_LIMIT (2^22)
OWN_PID_FIRST = 4194305


def make_ini(pool_mode="session", pool_size=2):
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
"""


def start(pgpulse, pool_mode="session", pool_size=2):
    return pgpulse(make_ini(pool_mode, pool_size), USERS)


def terminate(pg, pid):
    """pg_terminate_backend(pid) on a direct connection; its boolean."""
    with pg.connect(dbname="postgres", autocommit=True) as admin:
        return admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def errors_until_eof(conn):
    """The ErrorResponses pgpulse sends until it closes the connection."""
    msgs, tail = split_messages(conn.read_to_eof())
    assert tail == b"", tail
    return [error_fields(body) for t, body in msgs if t == "E"]


# ------------------------------------------------------------ BackendKeyData pid

def test_session_mode_pid_is_the_backend_pid(pgpulse):
    pp = start(pgpulse)
    conn = pp.connect(autocommit=True)
    pid = conn.info.backend_pid
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    notes = []
    conn.add_notify_handler(notes.append)
    conn.execute("LISTEN parity")
    conn.execute("NOTIFY parity, 'hello'")  # delivered with the command's own reply
    assert [(n.channel, n.payload, n.pid) for n in notes] == [("parity", "hello", pid)]


def terminated_session_error(conn, pg):
    """pg_terminate_backend on the pid the driver knows, then a query: what
    the driver raises."""
    conn.execute("SELECT 1")
    assert terminate(pg, conn.info.backend_pid) is True
    with pytest.raises(psycopg.Error) as err:
        conn.execute("SELECT 1")
    return type(err.value), err.value.sqlstate, str(err.value)


def test_session_mode_pg_terminate_backend_on_the_drivers_pid_looks_as_with_postgresql(pgpulse, pg):
    pp = start(pgpulse)
    direct = terminated_session_error(pg.connect(dbname="appdb", user="app", autocommit=True), pg)
    assert "terminating connection due to administrator command" in direct[2]
    assert terminated_session_error(pp.connect(autocommit=True), pg) == direct


@pytest.mark.parametrize("pool_mode", ["transaction", "statement"])
def test_pooled_modes_pid_is_a_positive_int4_that_names_no_backend(pgpulse, pg, pool_mode):
    pp = start(pgpulse, pool_mode)
    pids = set()
    for _ in range(24):  # a random 32-bit pid would be >= 2^31 in half of them
        conn = pp.connect(autocommit=True)
        pids.add(conn.info.backend_pid)
        conn.close()
    assert len(pids) == 24, pids
    assert all(OWN_PID_FIRST <= p < 2 ** 31 for p in pids), sorted(pids)
    with pg.connect(dbname="postgres", autocommit=True) as admin:
        # a warning (no such backend), never an error or someone else's session
        assert admin.execute("SELECT pg_terminate_backend(%s)", (min(pids),)).fetchone()[0] is False


def test_cancel_key_of_a_client_that_left_does_not_cancel_the_next_on_its_backend(pgpulse, pg):
    pp = start(pgpulse, pool_size=1)
    first = RawConn(pp.port)
    first.query("SELECT 1")
    old_key = first.backend_key
    first.close()
    second = RawConn(pp.port)
    assert second.backend_key[0] == old_key[0]  # the same backend, so the same pid
    assert second.backend_key[1] != old_key[1]
    second.send(message("Q", b"SELECT pg_sleep(0.5), 'not cancelled'\0"))
    wait_eof(cancel_request(pp.port, old_key))  # answered by a close, as always
    rows = second.result()
    assert rows == [["", "not cancelled"]], rows
    second.send(message("Q", b"SELECT pg_sleep(30)\0"))
    wait_until(lambda: any("pg_sleep(30)" in (b["query"] or "") and b["state"] == "active"
                           for b in pg.backends(dbname="appdb")), 5, "the sleep to run")
    wait_eof(cancel_request(pp.port, second.backend_key))
    with pytest.raises(ServerError) as err:
        second.result()
    assert err.value.sqlstate == "57014", err.value
    second.close()


# ------------------------------------------------------------ one error per death

@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_pg_terminate_backend_gives_the_client_one_error(pgpulse, pg, pool_mode):
    pp = start(pgpulse, pool_mode)
    conn = RawConn(pp.port)
    conn.query("BEGIN")  # in transaction mode too, the server stays this client's
    (pid,) = conn.query("SELECT pg_backend_pid()")[0]
    assert terminate(pg, int(pid)) is True
    errors = errors_until_eof(conn)
    assert [e["C"] for e in errors] == ["57P01"], errors
    assert errors[0]["V"] == "FATAL"


# ------------------------------------------------------------ ParameterStatus

SENT = {"client_encoding": "utf8", "DateStyle": "iso", "TimeZone": "utc",
        "IntervalStyle": "POSTGRES", "standard_conforming_strings": "true"}


def reported_direct(pg):
    """What PostgreSQL itself reports for SENT."""
    conn = RawConn(pg.port, database="appdb", params=SENT)
    conn.close()
    return {k: conn.params[k] for k in SENT}


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_parameter_status_values_are_postgresqls_forms(pgpulse, pg, pool_mode):
    direct = reported_direct(pg)
    assert direct["client_encoding"] == "UTF8"
    pp = start(pgpulse, pool_mode)
    for _ in range(2):  # the second login is told the learned forms without a server
        conn = RawConn(pp.port, params=SENT)
        assert {k: conn.params[k] for k in SENT} == direct
        assert conn.query("SHOW client_encoding") == [["UTF8"]]
        conn.close()


# ------------------------------------------------------------ before the startup packet

def answer_before_startup(port, first_bytes, leave=True):
    """Send first_bytes on a fresh connection (then leave, if asked): all
    that comes back before the close."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(first_bytes)
    if leave:
        s.shutdown(socket.SHUT_WR)
    try:
        return wait_eof(s)
    finally:
        s.close()


@pytest.mark.parametrize("first_bytes", [message("X"), b"\x00\x00"], ids=["Terminate", "two-bytes"])
def test_leaving_before_a_startup_packet_is_closed_silently(pgpulse, pg, first_bytes):
    pp = start(pgpulse)
    assert answer_before_startup(pg.port, first_bytes) == b""  # PostgreSQL direct
    assert answer_before_startup(pp.port, first_bytes) == b""
    assert RawConn(pp.port).query("SELECT 1") == [["1"]]


def test_startup_packet_shorter_than_a_protocol_version_is_closed_silently(pgpulse, pg):
    pp = start(pgpulse)
    short = struct.pack("!I", 6) + b"\x00\x03"
    assert answer_before_startup(pg.port, short, leave=False) == b""  # PostgreSQL direct
    assert answer_before_startup(pp.port, short, leave=False) == b""


# ------------------------------------------------------------ a session's traffic

def q(sql):
    return query_message(sql)


def function_call(oid, *args):
    """FunctionCall (the fast path libpq's lo_* functions use), text arguments and result."""
    body = struct.pack("!IHH", oid, 0, len(args))
    for a in args:
        body += struct.pack("!i", len(a)) + a
    return message("F", body + struct.pack("!H", 0))


LO_OPEN, LOREAD = 952, 954  # pg_proc oids of lo_open(oid, int) and loread(int, int), fixed since PostgreSQL 7

# Each scenario is sent whole (pipelined) and its replies compared message
# by message with PostgreSQL direct's: errors with every field, notices,
# notifications, COPY, portals, ParameterStatus after SET/RESET/DISCARD.
SESSION_TRAFFIC = {
    "errors": [q("SELECT 1/0"), q("SELEC 1"), q("SELECT * FROM nosuch"), q("SELECT 'x'::int"),
               q("BEGIN"), q("SELECT 1/0"), q("SELECT 1"), q("ROLLBACK"), q("")],
    "notices": [q("DO $$BEGIN RAISE NOTICE 'n %', 1; RAISE WARNING 'w' USING HINT = 'h'; END$$"),
                q("DROP TABLE IF EXISTS nosuch_t"), q("SET client_min_messages = debug1"),
                q("SELECT 1"), q("RESET client_min_messages")],
    "listen-notify": [q("LISTEN ch"), q("NOTIFY ch, 'p'"), q("SELECT pg_notify('ch', 'q')"), q("UNLISTEN *")],
    "copy-out": [q("COPY (SELECT g, 'x' FROM generate_series(1,3) g) TO STDOUT"),
                 q("COPY (SELECT 1) TO STDOUT (FORMAT binary)")],
    "copy-in": [q("CREATE TEMP TABLE t(a int, b text)"), q("COPY t FROM STDIN"),
                message("d", b"1\tx\n2\ty\n"), message("c"),
                q("COPY t FROM STDIN"), message("d", b"3\tz\n"), message("f", cstr("client gave up")),
                q("COPY t FROM STDIN"), message("d", b"bad\n"), message("c"),
                q("SELECT count(*) FROM t")],
    "set-reset-discard": [q("SET application_name = 'probe'"), q("SET TimeZone = 'Europe/Paris'"),
                          q("SET DateStyle = 'SQL, DMY'"), q("SET client_encoding = 'latin1'"),
                          q("SELECT 'é'"), q("SET IntervalStyle = iso_8601"),
                          q("SET standard_conforming_strings = off"), q("RESET ALL"),
                          q("SET search_path = x"), q("DISCARD ALL"), q("SHOW search_path"),
                          q("SET default_transaction_read_only = on"),
                          q("RESET default_transaction_read_only")],
    "extended": [parse_message("SELECT $1::int + 1", "s1"), describe_message("S", "s1"),
                 bind_message(["41"], "s1", "p1"), describe_message("P", "p1"), execute_message("p1"),
                 sync_message(),
                 parse_message("SELECT generate_series(1,5)"), bind_message(), execute_message("", 2),
                 execute_message("", 2), sync_message(),
                 parse_message("SELECT 1/0"), bind_message(), execute_message(), parse_message("SELECT 2"),
                 sync_message(), message("H"), parse_message("bogus"), sync_message(),
                 close_message("S", "s1"), sync_message()],
    "large-objects": [q("SELECT lo_from_bytea(4242, 'abc')"), q("SELECT lo_get(4242)"),
                      q("BEGIN"), q("SELECT lo_open(4242, 262144)"), q("SELECT loread(0, 10)"),
                      function_call(LO_OPEN, b"4242", b"262144"), function_call(LOREAD, b"1", b"2"),
                      function_call(LO_OPEN, b"x", b"1"), q("ROLLBACK"), q("SELECT lo_unlink(4242)")],
    "multi-statement": [q("SELECT 1; SELECT 1/0; SELECT 2"), q("BEGIN; SELECT 1; COMMIT; SELECT 3")],
}


def session_transcript(port, requests):
    """Every message the requests get back, up to the last ReadyForQuery;
    a notification's pid as whether it is the session's own."""
    conn = RawConn(port)
    conn.send(*requests)
    got = []
    for _ in range(sum(1 for m in requests if m[:1] in (b"Q", b"S", b"F"))):
        got += conn.until_ready()
    conn.close()
    return [(t, (b"own" if struct.unpack_from("!I", body)[0] == conn.backend_key[0] else b"other") + body[4:])
            if t == "A" else (t, body) for t, body in got]


@pytest.mark.parametrize("scenario", sorted(SESSION_TRAFFIC))
def test_session_traffic_gets_the_replies_postgresql_direct_sends(pgpulse, pg, scenario):
    pp = start(pgpulse)
    direct = session_transcript(pg.port, SESSION_TRAFFIC[scenario])
    assert session_transcript(pp.port, SESSION_TRAFFIC[scenario]) == direct


# ------------------------------------------------------------ the startup packet's answers

def startup_answer(port, version, params):
    """Send a startup packet of protocol `version`; the messages that come
    back up to the first authentication request or error, each error as
    its fields without the source location (F, L, R: PostgreSQL's own
    file and line, which pgpulse answering in its place does not have)."""
    body = struct.pack("!I", version) + b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\0"
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        msgs, buf = [], b""
        while not msgs or msgs[-1][0] not in "RE":
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got, buf = split_messages(buf + chunk)
            msgs += got
    finally:
        s.close()
    return [(t, {k: v for k, v in error_fields(b).items() if k not in "FLR"} if t == "E" else b)
            for t, b in msgs]


LOGIN = {"user": "app", "database": "appdb"}


@pytest.mark.parametrize("version,params", [
    (0x30002, LOGIN),                                              # libpq 18's max_protocol_version=3.2
    (0x30000, {**LOGIN, "_pq_.foo": "1", "_pq_.bar": "x"}),        # protocol options nobody knows
    (0x30005, {**LOGIN, "_pq_.foo": "1"}),
    (0x30002, {"database": "appdb"}),                              # told before the missing user
    (0x30000, {"user": "app", "database": "nosuchdb", "_pq_.foo": "1"}),
    (0x30002, {**LOGIN, "replication": "bogus"}),                  # refused before it, with the hint
    (0x40000, LOGIN),
], ids=["3.2", "_pq_", "3.5-_pq_", "no-user", "no-db", "replication-bogus", "4.0"])
def test_startup_packet_is_answered_as_postgresql_answers_it(pgpulse, pg, version, params):
    pp = start(pgpulse)
    direct = startup_answer(pg.port, version, params)
    assert direct[-1][0] in "RE", direct
    assert startup_answer(pp.port, version, params) == direct


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
@pytest.mark.parametrize("params", [
    {"default_transaction_isolation": "bogus"}, {"work_mem": "1GBx"},
    {"options": "-c lock_timeout=soon"}, {"nosuch_setting": "1"}],
    ids=["enum-hint", "unit-hint", "options", "unknown"])
def test_an_invalid_startup_setting_gets_postgresqls_whole_error(pgpulse, pg, params, pool_mode):
    pp = start(pgpulse, pool_mode)
    with pytest.raises(ServerError) as direct:
        RawConn(pg.port, params=params)
    with pytest.raises(ServerError) as pooled:
        RawConn(pp.port, params=params)
    assert pooled.value.fields == direct.value.fields  # hint, source location and all


@pytest.mark.parametrize("login", [
    {"password": "wrong_pw"}, {"database": "nosuchdb"}, {"user": "nobody", "password": "x"}],
    ids=["wrong-password", "no-database", "no-role"])
@pytest.mark.parametrize("options", ["-c search_path", "-c =x", "--", "-c"])
def test_malformed_options_are_said_only_after_authentication_and_the_database(pgpulse, pg, login,
                                                                                options):
    """PostgreSQL reads `options` once the password and the database are
    checked: a stranger with a broken PGOPTIONS is told its password is
    wrong, not how its options are broken."""
    pp = start(pgpulse)
    with pytest.raises(ServerError) as direct:
        RawConn(pg.port, params={"options": options}, **login)
    assert direct.value.sqlstate in ("28P01", "3D000"), direct.value.fields
    with pytest.raises(ServerError) as pooled:
        RawConn(pp.port, params={"options": options}, **login)
    assert pooled.value.sqlstate == direct.value.sqlstate, pooled.value.fields
    assert pooled.value.fields["M"] == direct.value.fields["M"]


# ------------------------------------------------------------ signals

def in_transaction(pp):
    conn = pp.connect()
    conn.execute("SELECT 1")  # a transaction stays open: a safe shutdown waits for it
    return conn


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
@pytest.mark.parametrize("first,second", [
    (signal.SIGINT, signal.SIGINT), (signal.SIGINT, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)],
    ids=["SIGINT-SIGINT", "SIGINT-SIGTERM", "SIGTERM-SIGINT"])
def test_a_second_shutdown_signal_exits_at_once(pgpulse, first, second, pool_mode):
    pp = start(pgpulse, pool_mode)
    conn = in_transaction(pp)
    mark = pp.log_mark()
    pp.signal(first)
    wait_until(lambda: not port_accepts(pp.port), 5, "the first signal to take effect")
    pp.wait_log(r"shutdown requested: waiting", since=mark)
    assert pp.running
    pp.signal(second)
    assert pp.wait_exit(5) == 0
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")


def test_sigint_sends_away_clients_waiting_for_a_server(pgpulse):
    pp = start(pgpulse, "transaction", pool_size=1)
    holder = in_transaction(pp)
    waiter = RawConn(pp.port)
    waiter.send(message("Q", b"SELECT 1\0"))
    wait_until(lambda: pp.show("POOLS")[0]["cl_waiting"] == 1, 5, "the second client to wait")
    pp.signal(signal.SIGINT)
    errors = errors_until_eof(waiter)
    assert [e["C"] for e in errors] == ["57P01"], errors
    # the running transaction is not disturbed, and ends the shutdown
    assert holder.execute("SELECT 2").fetchone() == (2,)
    holder.commit()
    assert pp.wait_exit(10) == 0


def test_sigint_sends_away_a_session_login_waiting_for_its_server(pgpulse):
    pp = start(pgpulse, "session", pool_size=1)
    holder = in_transaction(pp)
    result = {}

    def login():
        try:
            RawConn(pp.port).close()
        except ServerError as e:
            result["error"] = e
    t = threading.Thread(target=login, daemon=True)
    t.start()
    wait_until(lambda: pp.show("POOLS")[0]["cl_waiting"] == 1, 5, "the second login to wait")
    pp.signal(signal.SIGINT)
    t.join(10)
    assert not t.is_alive(), "the waiting login was not sent away"
    assert result["error"].sqlstate == "57P01", result
    # the session that has its server goes on; its leaving ends the shutdown
    assert holder.execute("SELECT 2").fetchone() == (2,)
    holder.commit()
    assert pp.running
    holder.close()
    assert pp.wait_exit(10) == 0
