"""The hello and the login's edges against PostgreSQL direct (from a hostile
review of issue 17's hello): DateStyle forms, logins during PAUSE, a
backend ended under the hello's SETs, answers before a valid startup
packet, each ParameterStatus name once, cancels and queued session logins.
Each test states the PostgreSQL-direct behaviour it expects.

Not matched, and stated in doc/architecture.md: application_name in
transaction mode is reported as sent (PostgreSQL cuts it to 63 bytes and
masks non-ASCII bytes in the startup packet's value)."""

import signal
import socket
import struct

import psycopg
import pytest

from pgpulse_harness import RawConn, ServerError, cancel_request, error_fields, message, split_messages, \
    wait_eof, wait_until

USERS = {"app": "app_pw", "admin": "admin_pw"}


def make_ini(pool_mode="session", pool_size=1, extra=""):
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


def direct_datestyle(pg, sent):
    with pg.connect(dbname="appdb", user="app", autocommit=True, options=f"-c DateStyle={sent}") as conn:
        return conn.info.parameter_status("DateStyle"), conn.execute("SHOW DateStyle").fetchone()[0]


# ------------------------------------------------------------ DateStyle depends on the server's previous value

@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_datestyle_style_only_is_reported_and_applied_as_postgresql_would(pgpulse, pg, pool_mode):
    """DateStyle=SQL alone keeps the *current* field order: direct, on the
    server default (ISO, MDY), PostgreSQL reports and applies "SQL, MDY".
    Through pgpulse, on a server a previous client left with DMY order, the
    set_config() applies on top of that client's value."""
    extra = "server_reset_query =\n" if pool_mode == "session" else ""
    pp = pgpulse(make_ini(pool_mode, 1, extra), USERS)
    expected = direct_datestyle(pg, "SQL")
    assert expected == ("SQL, MDY", "SQL, MDY")
    first = RawConn(pp.port, params={"DateStyle": "ISO, DMY"})
    first.query("SELECT 1")
    first.close()
    second = RawConn(pp.port, params={"DateStyle": "SQL"})
    got = (second.params.get("DateStyle"), second.query("SHOW DateStyle")[0][0])
    second.close()
    assert got == expected


def test_datestyle_form_learned_on_one_server_does_not_leak_into_later_hellos(pgpulse, pg):
    """Transaction mode: the pool remembers "SQL" -> "SQL, DMY" from a SET on
    a server with DMY order; a later client sending DateStyle=SQL is told
    "SQL, DMY" without any server being asked, and its value becomes
    "SQL, DMY", SET so on a fresh server too (direct: "SQL, MDY")."""
    pp = pgpulse(make_ini("transaction", 1), USERS)
    first = RawConn(pp.port, params={"DateStyle": "Postgres, DMY"})
    first.query("SELECT 1")
    first.close()
    second = RawConn(pp.port, params={"DateStyle": "SQL"})
    second.close()
    # a fresh server: whatever the old one had is gone
    pg.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'")
    wait_until(lambda: not pg.backends(dbname="appdb", user="app"), what="app's backends gone")
    third = RawConn(pp.port, params={"DateStyle": "SQL"})
    reported = third.params.get("DateStyle")
    applied = third.query("SHOW DateStyle")[0][0]
    third.close()
    # direct: ("SQL, MDY", "SQL, MDY"). The alias replaced the client's own
    # value, so even the fresh server is SET to the other client's order.
    assert (reported, applied) == direct_datestyle(pg, "SQL")


# ------------------------------------------------------------ PAUSE

@pytest.mark.parametrize("pool_mode,params", [("session", {}), ("transaction", {"DateStyle": "German"})])
def test_login_during_pause_completes_as_documented(pgpulse, pool_mode, params):
    """doc/admin.md (PAUSE): "New clients can still connect and log in." In
    session mode the hello now waits for a linked server, and PAUSE gives
    none: the login hangs until RESUME (query_wait_timeout does not apply
    while paused), so a driver's connect_timeout fires."""
    pp = pgpulse(make_ini(pool_mode, 2), USERS)
    RawConn(pp.port).close()  # the pool has its welcome and a server
    admin = pp.admin()
    admin.execute("PAUSE")
    try:
        conn = RawConn(pp.port, params=params, timeout=5)
    except (socket.timeout, TimeoutError):
        pytest.fail("session login during PAUSE did not complete")
    finally:
        admin.execute("RESUME")
    conn.close()


# ------------------------------------------------------------ the session hello's SET

class UntilAuthOk(RawConn):
    """Logs in only up to AuthenticationOk: the hello is still to come."""

    def _login(self, user, password):
        while True:
            t, body = self.recv_msg()
            if t == "E":
                raise ServerError(error_fields(body))
            assert t == "R", t
            (code,) = struct.unpack_from("!I", body)
            if code == 0:
                return
            assert code == 10, code
            self._scram(password)


def pool_row(pp):
    rows = pp.admin().execute("SHOW POOLS")
    cols = [d.name for d in rows.description]
    return [dict(zip(cols, r)) for r in rows.fetchall() if r[0] == "appdb"][0]


def stopped_backend_with_a_pending_hello(pp, pg, params):
    """Session mode, pool_size 1: the pool's one backend stopped (SIGSTOP),
    and a login whose hello waits for its SETs on it."""
    first = RawConn(pp.port)
    pid = first.backend_key[0]
    first.close()
    wait_until(lambda: pool_row(pp)["sv_idle"] == 1, what="the server idle again")
    import os
    os.kill(pid, signal.SIGSTOP)
    try:
        second = UntilAuthOk(pp.port, params=params)
        wait_until(lambda: pool_row(pp)["sv_active"] == 1, what="the server linked for the hello's SET")
    except BaseException:
        os.kill(pid, signal.SIGCONT)
        raise
    return pid, second


def test_client_leaving_during_its_session_hello_set_leaves_a_usable_pool(pgpulse, pg):
    import os
    pp = pgpulse(make_ini("session", 1), USERS)
    pid, second = stopped_backend_with_a_pending_hello(pp, pg, {"DateStyle": "German"})
    second.sock.close()
    wait_until(lambda: pool_row(pp)["cl_active"] + pool_row(pp)["cl_waiting"] == 0, what="the client gone")
    os.kill(pid, signal.SIGCONT)
    third = RawConn(pp.port)
    assert third.params["DateStyle"] == "ISO, MDY"
    assert third.query("SHOW DateStyle") == [["ISO, MDY"]]
    third.close()


def test_backend_terminated_during_session_hello_set_gives_postgresqls_error(pgpulse, pg):
    """pg_terminate_backend while the hello's SETs run: PostgreSQL's 57P01
    FATAL reaches the job, not the client, and the client is told
    08006 "server connection closed unexpectedly" instead."""
    import os
    pp = pgpulse(make_ini("session", 1), USERS)
    pid, second = stopped_backend_with_a_pending_hello(pp, pg, {"DateStyle": "German"})
    with pg.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 0)", (pid,))
    os.kill(pid, signal.SIGCONT)
    msgs, tail = split_messages(second.read_to_eof())
    errors = [error_fields(body) for t, body in msgs if t == "E"]
    assert [e.get("C") for e in errors] == ["57P01"], errors


# ------------------------------------------------------------ before a valid startup packet

def startup_body(version, pairs):
    body = struct.pack("!I", version)
    for k, v in pairs:
        body += k + b"\0" + v + b"\0"
    return body


STARTUPS = {
    "protocol-2.0": lambda: struct.pack("!I", 4 + 4 + 9 + 1) + startup_body(0x00020000, [(b"user", b"app")]) + b"\0",
    "protocol-4.0": lambda: struct.pack("!I", 4 + 4 + 9 + 1) + startup_body(0x00040000, [(b"user", b"app")]) + b"\0",
    # the pairs end without the final terminator byte
    "no-final-terminator": lambda: struct.pack("!I", 4 + 4 + 9) + startup_body(0x00030000, [(b"user", b"app")]),
    "no-user": lambda: struct.pack("!I", 4 + 4 + 15 + 1) + startup_body(0x00030000, [(b"database", b"appdb")]) + b"\0",
    "short": lambda: struct.pack("!I", 6) + b"\0\3",
    "huge": lambda: struct.pack("!I", 20000) + b"\0\3\0\0",
    # sent in one go with the SSLRequest, before its answer
    "ssl-then-garbage": lambda: struct.pack("!II", 8, 80877103) + b"garbage!garbage!",
    "terminate": lambda: message("X"),
}


def first_answer(port, data):
    """What a server does with these bytes: the SSL answer byte if any, then
    'E' for an error (any protocol version), 'R' for an authentication
    request, and 'open' if it neither answered nor closed within 5 s."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    got = b""
    state = "closed"
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    except (socket.timeout, TimeoutError):
        state = "open"
    finally:
        s.close()
    out = []
    if data[4:8] == struct.pack("!I", 80877103) and got[:1] in (b"S", b"N"):
        out.append(got[:1].decode())
        got = got[1:]
    if got[:1]:
        out.append(got[:1].decode())
    return out + [state]


@pytest.mark.parametrize("case", sorted(STARTUPS))
def test_answers_before_a_valid_startup_packet_match_postgresql(pgpulse, pg, case):
    pp = pgpulse(make_ini("session", 1), USERS)
    direct = first_answer(pg.port, STARTUPS[case]())
    assert first_answer(pp.port, STARTUPS[case]()) == direct


# ------------------------------------------------------------ a session login waiting for its server

def test_session_login_waiting_for_a_full_pool_honours_query_wait_timeout(pgpulse):
    """The pool's one server is taken: the login waits in the queue, and
    query_wait_timeout ends the wait with an error rather than a hang."""
    pp = pgpulse(make_ini("session", 1, "query_wait_timeout = 1\n"), USERS)
    holder = RawConn(pp.port)
    with pytest.raises(ServerError) as err:
        RawConn(pp.port, timeout=15)
    holder.close()
    assert err.value.sqlstate == "08P01", err.value.fields
    row = pool_row(pp)
    assert (row["cl_active"], row["cl_waiting"]) == (0, 0), row


# ------------------------------------------------------------ application_name as PostgreSQL reports it

@pytest.mark.parametrize("how", ["leave", "kill", "reconnect"])
def test_session_login_queued_for_a_full_pool_ends_cleanly(pgpulse, how):
    pp = pgpulse(make_ini("session", 1), USERS)
    holder = RawConn(pp.port)
    queued = UntilAuthOk(pp.port)
    wait_until(lambda: pool_row(pp)["cl_waiting"] == 1, what="the login queued")
    if how == "leave":
        queued.sock.close()
        wait_until(lambda: pool_row(pp)["cl_waiting"] == 0, what="the queued login gone")
    elif how == "kill":
        pp.admin().execute("KILL appdb")
        msgs, _ = split_messages(queued.read_to_eof())
        assert [t for t, _ in msgs] == ["E"], msgs
        pp.admin().execute("RESUME appdb")
    else:
        pp.admin().execute("RECONNECT appdb")
    holder.close()
    if how == "reconnect":
        rest = queued.until_ready()
        assert [t for t, _ in rest][-2:] == ["K", "Z"], rest
        assert queued.query("SELECT 1") == [["1"]]
        queued.close()
    fresh = RawConn(pp.port)
    assert fresh.query("SELECT 1") == [["1"]]
    fresh.close()
    row = pool_row(pp)
    assert (row["cl_active"], row["cl_waiting"]) == (0, 0), row


# ------------------------------------------------------------ signals

@pytest.mark.parametrize("first,second", [("SUSPEND", signal.SIGINT), ("SUSPEND", signal.SIGTERM),
                                          (signal.SIGTERM, signal.SIGINT), (signal.SIGINT, signal.SIGTERM)])
def test_second_shutdown_signal_exits_at_once(pgpulse, first, second):
    pp = pgpulse(make_ini("session", 1), USERS)
    holder = RawConn(pp.port)
    queued = UntilAuthOk(pp.port)
    wait_until(lambda: pool_row(pp)["cl_waiting"] == 1, what="the login queued")
    mark = pp.log_mark()
    if first == "SUSPEND":
        pp.admin().execute("SUSPEND")
        pp.signal(second)
    else:
        pp.signal(first)
    # the first one handled before the second is sent: two alike would merge in the kernel
    pp.wait_log("shutdown requested", since=mark)
    pp.signal(second)
    pp.wait_exit(timeout=10)
    holder.sock.close()
    queued.sock.close()


# ------------------------------------------------------------ the hello's ParameterStatus list

class HelloRecorder(RawConn):
    """Records every ParameterStatus of the hello, in order, duplicates kept."""

    def _login(self, user, password):
        self.hello = []
        orig = self.recv_msg

        def recv():
            t, body = orig()
            if t == "S":
                name, value = body.split(b"\0")[:2]
                self.hello.append((name.decode(), value.decode()))
            return t, body
        self.recv_msg = recv
        try:
            super()._login(user, password)
        finally:
            self.recv_msg = orig


@pytest.mark.parametrize("params", [{}, {"options": "-c default_transaction_read_only=on"}])
def test_session_hello_says_each_parameter_once_as_postgresql_does(pgpulse, pg, params):
    pp = pgpulse(make_ini("session", 1), USERS)
    RawConn(pp.port).close()
    with HelloRecorder(pg.port, params=params) as direct:
        expected = sorted(direct.hello)
    with HelloRecorder(pp.port, params=params) as conn:
        got = sorted(conn.hello)
    assert got == expected


# ------------------------------------------------------------ the alias table's size

def test_transaction_login_with_a_value_seen_before_needs_no_server(pgpulse):
    """Five TimeZones in rotation (the pool remembers four per parameter):
    a login sending one applied before waits for a server again, here
    behind a transaction that does not end."""
    pp = pgpulse(make_ini("transaction", 1), USERS)
    zones = ["UTC", "Europe/Paris", "Asia/Tokyo", "America/New_York", "Australia/Sydney"]
    for tz in zones:
        with RawConn(pp.port, params={"TimeZone": tz}) as conn:
            assert conn.query("SHOW TimeZone") == [[tz]]
    holder = RawConn(pp.port)
    holder.query("BEGIN")
    holder.query("SELECT 1")
    try:
        conn = RawConn(pp.port, params={"TimeZone": zones[0]}, timeout=5)
    except (socket.timeout, TimeoutError):
        pytest.fail(f"login with TimeZone={zones[0]}, applied before, waited for a server")
    finally:
        holder.query("COMMIT")
        holder.close()
    conn.close()


# ------------------------------------------------------------ one error per death

@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_backend_terminated_during_copy_in_gives_one_error(pgpulse, pg, pool_mode):
    pp = pgpulse(make_ini(pool_mode, 1), USERS)
    conn = RawConn(pp.port)
    # in a transaction, so transaction mode keeps the server across the COPY
    conn.send(message("Q", b"BEGIN; CREATE TEMP TABLE t_copy (x int); COPY t_copy FROM STDIN\0"))
    while True:
        t, body = conn.recv_msg()
        if t == "G":
            break
    conn.send(message("d", b"1\n"))
    pids = [b["pid"] for b in pg.backends(dbname="appdb", user="app")]
    assert len(pids) == 1
    with pg.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
    msgs, tail = split_messages(conn.read_to_eof())
    errors = [error_fields(body) for t, body in msgs if t == "E"]
    assert [e.get("C") for e in errors] == ["57P01"], errors


def test_console_shows_a_queued_session_login_as_waiting(pgpulse):
    pp = pgpulse(make_ini("session", 1), USERS)
    holder = RawConn(pp.port)
    queued = UntilAuthOk(pp.port)
    wait_until(lambda: pool_row(pp)["cl_waiting"] == 1, what="the login queued")
    admin = pp.admin()
    clients = admin.execute("SHOW CLIENTS")
    cols = [d.name for d in clients.description]
    states = sorted(dict(zip(cols, r))["state"] for r in clients.fetchall() if r[cols.index("database")] == "appdb")
    assert states == ["active", "waiting"], states
    holder.close()
    rest = queued.until_ready()
    assert [t for t, _ in rest][-2:] == ["K", "Z"], rest
    queued.close()


def test_a_large_error_is_forwarded_whole(pgpulse):
    """Errors are now read whole before forwarding (their severity decides
    the close): a 4 MB one still arrives intact."""
    pp = pgpulse(make_ini("session", 1), USERS)
    conn = RawConn(pp.port)
    with pytest.raises(ServerError) as err:
        conn.query("DO $$ BEGIN RAISE EXCEPTION '%', repeat('x', 4000000); END $$")
    assert err.value.fields.get("M") == "x" * 4000000
    assert conn.query("SELECT 1") == [["1"]]
    conn.close()
