"""Pooling behaviour, and how pgpulse behaves when clients or PostgreSQL
misbehave.

Every test starts its own pgpulse in front of the session's scratch
PostgreSQL.  Concurrency comes from threads, each with a psycopg connection
of its own that only that thread touches (and closes); raw-protocol tests
speak the wire protocol with `socket` and `struct`.
"""

import os
import re
import socket
import struct
import threading
import time

import psycopg
import pytest

from pgpulse_harness import wait_until

USERLIST = {"app": "app_pw", "admin": "admin_pw"}

BASE_SETTINGS = {
    "listen_addr": "127.0.0.1",
    "listen_port": "{port}",
    "unix_socket_dir": "{dir}",
    "auth_type": "scram-sha-256",
    "auth_file": "{auth_file}",
    "admin_users": "admin",
    "pool_mode": "transaction",
    "default_pool_size": "2",
}


def make_ini(**settings):
    merged = dict(BASE_SETTINGS)
    merged.update({k: str(v) for k, v in settings.items()})
    lines = ["[databases]", "appdb = host={pg_host} port={pg_port} dbname=appdb", "[pgbouncer]"]
    lines += [f"{k} = {v}" for k, v in merged.items()]
    return "\n".join(lines) + "\n"


def start(pgpulse, **settings):
    return pgpulse(make_ini(**settings), USERLIST)


def thread_conn(pp, autocommit=True):
    """A connection through pgpulse that the harness does not track: it
    belongs to one thread, which closes it (closing a psycopg connection
    from another thread while a query runs on it is not safe)."""
    return psycopg.connect(pp.dsn(), autocommit=autocommit, prepare_threshold=None,
                           connect_timeout=10)


class Background:
    """Run fn() in a daemon thread; keep its result or exception and when it
    finished."""

    def __init__(self, fn):
        self.result = None
        self.error = None
        self.finished_at = None
        self._fn = fn
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.result = self._fn()
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.finished_at = time.monotonic()

    @property
    def done(self):
        return not self.thread.is_alive()

    def join(self, timeout=15):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"background query still running after {timeout}s"
        return self


def query_then_close(conn, sql, on_done=None):
    """For Background: run sql on conn (owned by the thread), close conn."""
    def run():
        try:
            row = conn.execute(sql).fetchone()
            if on_done:
                on_done()
            return row
        finally:
            conn.close()
    return run


def close_abruptly(conn):
    """Take the TCP connection down without a Terminate message."""
    s = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        s.shutdown(socket.SHUT_RDWR)
    finally:
        s.close()


def pool_row(pp, database="appdb", user="app"):
    rows = [r for r in pp.show("POOLS") if r["database"] == database and r["user"] == user]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def cl_waiting(pp):
    row = pool_row(pp)
    return row["cl_waiting"] if row else 0


def backend_pids(pg):
    return {r["pid"] for r in pg.backends(dbname="appdb", user="app")}


def no_app_backends(pg):
    """No appdb/app backends are left (from an earlier test's pgpulse)."""
    wait_until(lambda: not pg.backends(dbname="appdb", user="app"), 10,
               "PostgreSQL to drop appdb/app backends left by earlier tests")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/<pid>/status")


# ------------------------------------------------------------ raw protocol

PROTO_V3 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


def startup_packet(user="app", database="appdb", version=PROTO_V3):
    body = struct.pack("!I", version)
    for k, v in (("user", user), ("database", database)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def query_message(sql):
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(body) + 4) + body


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


class RawClient:
    """A bare socket speaking the v3 protocol.  read_message() returns
    (type, body), or None once the peer closed the connection."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout

    def send(self, data):
        self.sock.sendall(data)

    def _recv_exact(self, n):
        data = b""
        while len(data) < n:
            try:
                chunk = self.sock.recv(n - len(data))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            data += chunk
        return data

    def read_byte(self):
        return self._recv_exact(1)

    def read_message(self):
        head = self._recv_exact(5)
        if head is None:
            return None
        (length,) = struct.unpack("!I", head[1:])
        body = self._recv_exact(length - 4)
        if body is None:
            return None
        return chr(head[0]), body

    def read_until_ready(self):
        msgs = []
        while True:
            m = self.read_message()
            assert m is not None, f"connection closed before ReadyForQuery; got {msgs!r}"
            msgs.append(m)
            if m[0] == "Z":
                return msgs

    def read_until_closed(self):
        """Every message up to the close; fails if the connection stays open
        past the socket timeout."""
        msgs = []
        while True:
            try:
                m = self.read_message()
            except socket.timeout:
                raise AssertionError(f"connection still open after {self.timeout}s; "
                                     f"got {msgs!r}") from None
            if m is None:
                return msgs
            msgs.append(m)

    def login(self, user="app", database="appdb"):
        """Startup against a trust-auth pgpulse; returns the messages."""
        self.send(startup_packet(user, database))
        msgs = self.read_until_ready()
        assert ("R", struct.pack("!I", 0)) in msgs, msgs
        return msgs

    def query(self, sql):
        self.send(query_message(sql))
        return self.read_until_ready()

    def close(self):
        self.sock.close()


@pytest.fixture
def raw():
    """Factory of RawClient sockets, all closed at the end of the test."""
    made = []

    def factory(port, timeout=10.0):
        c = RawClient(port, timeout)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


def data_rows(msgs):
    """DataRow values (text format) of a simple-protocol reply."""
    rows = []
    for t, body in msgs:
        if t != "D":
            continue
        (n,) = struct.unpack("!H", body[:2])
        pos, row = 2, []
        for _ in range(n):
            (ln,) = struct.unpack("!i", body[pos:pos + 4])
            pos += 4
            if ln < 0:
                row.append(None)
            else:
                row.append(body[pos:pos + ln].decode())
                pos += ln
        rows.append(tuple(row))
    return rows


def errors_in(msgs):
    return [error_fields(body) for t, body in msgs if t == "E"]


def trust_pgpulse(pgpulse, **settings):
    """A pgpulse whose clients need no password (raw-protocol tests); it
    still logs in to PostgreSQL with app's password from the auth_file."""
    return start(pgpulse, auth_type="trust", **settings)


def assert_bystander_works(pp, bystander, pid_before):
    assert pp.running and pp.pid == pid_before, "pgpulse is not running any more"
    assert bystander.execute("SELECT 41 + 1").fetchone() == (42,)


# ------------------------------------------------------------ multiplexing

def test_twenty_clients_share_two_server_connections_in_transaction_mode(pgpulse, pg):
    no_app_backends(pg)
    pp = start(pgpulse, default_pool_size=2)
    conns = [thread_conn(pp, autocommit=False) for _ in range(20)]
    seen_pids = set()
    lock = threading.Lock()

    def transactions(conn):
        def run():
            try:
                done = 0
                for i in range(5):
                    pid = conn.execute("SELECT pg_backend_pid() FROM pg_sleep(0.01)").fetchone()[0]
                    assert conn.execute("SELECT %s::int + 1", (i,)).fetchone() == (i + 1,)
                    conn.commit()
                    with lock:
                        seen_pids.add(pid)
                    done += 1
                return done
            finally:
                conn.close()
        return run

    workers = [Background(transactions(c)) for c in conns]
    most = 0
    while not all(w.done for w in workers):
        most = max(most, len(pg.backends(dbname="appdb", user="app")))
        time.sleep(0.02)
    for w in workers:
        w.join()
        assert w.error is None, f"a client failed: {w.error!r}"
        assert w.result == 5
    assert 1 <= most <= 2, f"pg_stat_activity showed {most} backends for a pool of 2"
    assert 1 <= len(seen_pids) <= 2, f"clients saw backends {sorted(seen_pids)}"


def test_consecutive_transactions_of_different_clients_use_the_same_backend(pgpulse, pg):
    no_app_backends(pg)
    pp = start(pgpulse, default_pool_size=1)
    a = pp.connect(autocommit=True, prepare_threshold=None)
    b = pp.connect(autocommit=True, prepare_threshold=None)
    pid_a = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    pid_b = b.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert pid_a == pid_b
    # both clients are still connected, to one backend
    assert backend_pids(pg) == {pid_a}
    assert a.execute("SELECT pg_backend_pid()").fetchone()[0] == pid_a


def test_released_server_goes_to_the_longest_waiting_client(pgpulse):
    pp = start(pgpulse, default_pool_size=1)
    holder = pp.connect(prepare_threshold=None)
    holder.execute("SELECT 1")  # the only server is now inside holder's transaction

    order = []
    lock = threading.Lock()

    def finished(name):
        def note():
            with lock:
                order.append(name)
        return note

    b_conn, c_conn = thread_conn(pp), thread_conn(pp)
    b = Background(query_then_close(b_conn, "SELECT 'B' FROM pg_sleep(0.2)", finished("B")))
    wait_until(lambda: cl_waiting(pp) == 1, 10, "B to wait for the server")
    c = Background(query_then_close(c_conn, "SELECT 'C' FROM pg_sleep(0.2)", finished("C")))
    wait_until(lambda: cl_waiting(pp) == 2, 10, "B and C to wait for the server")
    holder.commit()
    b.join()
    c.join()
    assert b.error is None and c.error is None, (b.error, c.error)
    assert (b.result, c.result) == (("B",), ("C",))
    assert order == ["B", "C"]


def test_waiting_client_that_leaves_is_skipped_when_the_server_frees_up(pgpulse):
    pp = start(pgpulse, default_pool_size=1)
    holder = pp.connect(prepare_threshold=None)
    backend = holder.execute("SELECT pg_backend_pid()").fetchone()[0]

    leaver_conn, next_conn = thread_conn(pp), thread_conn(pp)
    leaver = Background(query_then_close(leaver_conn, "SELECT 'leaver'"))
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the first client to wait")
    nxt = Background(query_then_close(next_conn, "SELECT pg_backend_pid()"))
    wait_until(lambda: cl_waiting(pp) == 2, 10, "both clients to wait")

    close_abruptly(leaver_conn)
    leaver.join()
    wait_until(lambda: cl_waiting(pp) == 1, 10, "pgpulse to notice the waiting client left")
    holder.commit()
    nxt.join()
    assert nxt.error is None, repr(nxt.error)
    assert nxt.result == (backend,)
    assert holder.execute("SELECT 1").fetchone() == (1,)


# ------------------------------------------------------------ session mode

def test_session_mode_keeps_one_backend_per_client_and_makes_others_wait(pgpulse):
    pp = start(pgpulse, pool_mode="session", default_pool_size=1)
    first = pp.connect(prepare_threshold=None)
    pid = first.execute("SELECT pg_backend_pid()").fetchone()[0]
    first.commit()

    def second_client():
        # the login itself waits: its BackendKeyData names the backend it will get
        conn = thread_conn(pp)
        assert conn.info.backend_pid == pid
        return query_then_close(conn, "SELECT pg_backend_pid()")()
    second = Background(second_client)
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the second client to wait for the server")

    # between its transactions the first client keeps its backend
    for _ in range(3):
        assert first.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        first.commit()
    assert not second.done and cl_waiting(pp) == 1, "the second client got a server too early"

    first.close()
    second.join()
    assert second.error is None, repr(second.error)
    assert second.result == (pid,)


# ------------------------------------------------------------ query_wait_timeout

def test_query_wait_timeout_fails_a_waiting_client_and_spares_the_holder(pgpulse):
    pp = start(pgpulse, default_pool_size=1, query_wait_timeout=1)
    holder = pp.connect(prepare_threshold=None)
    pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]

    conn = thread_conn(pp)
    t0 = time.monotonic()
    waiter = Background(query_then_close(conn, "SELECT 1")).join(10)
    elapsed = waiter.finished_at - t0
    assert isinstance(waiter.error, psycopg.OperationalError), \
        f"the waiting query ended with {waiter.error!r}, result {waiter.result!r}"
    assert 0.8 <= elapsed < 6, f"the error came after {elapsed:.2f}s with query_wait_timeout = 1"
    assert "query_wait_timeout" in str(waiter.error)

    assert holder.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    holder.commit()
    assert holder.execute("SELECT 2").fetchone() == (2,)
    holder.commit()


# ------------------------------------------------------------ query_wait_notify

QUEUED_NOTICE = "No server connection available in postgres backend, client being queued"


def wait_behind_a_held_server(pp, holder, while_waiting):
    """A second client's query waits behind `holder`'s transaction; while it
    waits, while_waiting(notices) runs; then the holder commits and the
    waiter gets the server. The notices the waiter received."""
    conn = thread_conn(pp)
    notices = []
    conn.add_notice_handler(lambda d: notices.append((d.severity, d.sqlstate, d.message_primary)))
    waiter = Background(query_then_close(conn, "SELECT 1"))
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the second client to wait")
    while_waiting(notices)
    holder.commit()
    waiter.join(10)
    assert waiter.error is None and waiter.result == (1,), (waiter.error, waiter.result)
    return notices


def test_query_wait_notify_tells_a_waiting_client_once_that_it_is_queued(pgpulse):
    pp = start(pgpulse, default_pool_size=1, query_wait_notify=1)
    holder = pp.connect(prepare_threshold=None)
    holder.execute("SELECT 1")

    def wait_for_the_notice_then_longer(notices):
        wait_until(lambda: notices, 10, "the waiting client's notice")
        # the scenario: the wait goes on past query_wait_notify once more
        # (five janitor turns), and brings no second notice
        time.sleep(1.0)
    notices = wait_behind_a_held_server(pp, holder, wait_for_the_notice_then_longer)
    assert notices == [("NOTICE", "00000", QUEUED_NOTICE)], notices


def test_a_wait_shorter_than_query_wait_notify_brings_no_notice(pgpulse):
    pp = start(pgpulse, default_pool_size=1)   # query_wait_notify = 5 s
    holder = pp.connect(prepare_threshold=None)
    holder.execute("SELECT 1")
    # the scenario: the server stays taken 0.3 s (janitor turns, far from 5 s)
    assert wait_behind_a_held_server(pp, holder, lambda notices: time.sleep(0.3)) == []


# ------------------------------------------------------------ a client leaving mid-transaction

@pytest.mark.parametrize("how", ["socket-closed", "terminate-message"])
def test_client_leaving_mid_transaction_rolls_back_and_its_server_is_not_reused(pgpulse, pg, how):
    pp = start(pgpulse, default_pool_size=1)
    setup = pp.connect(autocommit=True, prepare_threshold=None)
    setup.execute("DROP TABLE IF EXISTS pooling_left_open")
    setup.execute("CREATE TABLE pooling_left_open (x int)")

    a = pp.connect(prepare_threshold=None)
    a.execute("INSERT INTO pooling_left_open VALUES (1)")
    pid = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert [r["state"] for r in pg.backends() if r["pid"] == pid] == ["idle in transaction"]
    if how == "socket-closed":
        close_abruptly(a)
    else:
        a.close()  # libpq sends Terminate; no COMMIT was sent

    wait_until(lambda: pid not in backend_pids(pg), 10,
               f"the backend {pid} that was inside the transaction to be closed")
    b = pp.connect(autocommit=True, prepare_threshold=None)
    row = b.execute("SELECT pg_backend_pid(), txid_current_if_assigned() IS NULL,"
                    " now() = statement_timestamp(),"
                    " (SELECT count(*) FROM pooling_left_open)").fetchone()
    assert row[0] != pid
    assert row[1:] == (True, True, 0), \
        "the new client's server was inside a transaction or the insert survived"
    setup.execute("DROP TABLE pooling_left_open")


# ------------------------------------------------------------ PostgreSQL failures

def test_postgres_restart_fails_the_running_query_and_pgpulse_recovers(pgpulse, pg):
    pp = start(pgpulse, default_pool_size=4, server_login_retry=0.5)
    idle_clients = [pp.connect(autocommit=True, prepare_threshold=None) for _ in range(2)]
    for c in idle_clients:
        assert c.execute("SELECT 1").fetchone() == (1,)
    pid = pp.pid

    running = Background(query_then_close(thread_conn(pp), "SELECT pg_sleep(60)"))
    wait_until(lambda: any(r["state"] == "active" and "pg_sleep(60)" in (r["query"] or "")
                           for r in pg.backends(dbname="appdb", user="app")),
               10, "the long query to run on PostgreSQL")

    pg.restart("fast")
    running.join(15)
    assert isinstance(running.error, psycopg.OperationalError), \
        f"the running query ended with {running.error!r}, result {running.result!r}"
    assert pp.running and pp.pid == pid, "pgpulse did not survive the PostgreSQL restart"

    def fresh_query():
        with psycopg.connect(pp.dsn(), connect_timeout=5, autocommit=True) as c:
            return c.execute("SELECT 'back'").fetchone() == ("back",)
    wait_until(fresh_query, 15, "a new client's query to succeed after the restart",
               interval=0.2, ignore=(psycopg.OperationalError,))
    # clients that sat idle (no server in transaction mode) carry on
    for c in idle_clients:
        assert c.execute("SELECT 2").fetchone() == (2,)


def test_server_killed_while_idle_leaves_the_pool_and_next_query_works(pgpulse, pg):
    pp = start(pgpulse, default_pool_size=1)
    client = pp.connect(autocommit=True, prepare_threshold=None)
    pid = client.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert [s["remote_pid"] for s in pp.show("SERVERS")] == [pid]

    assert pg.query("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    wait_until(lambda: pid not in [s["remote_pid"] for s in pp.show("SERVERS")], 10,
               "pgpulse to drop the terminated server from its pool")

    new_pid = client.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert new_pid != pid


def test_postgres_down_fails_queries_fast_and_pgpulse_recovers_after_start(pgpulse, pg):
    pp = start(pgpulse, query_wait_timeout=30, server_login_retry=1)
    client = pp.connect(autocommit=True, prepare_threshold=None)
    assert client.execute("SELECT 1").fetchone() == (1,)

    pg.stop()
    wait_until(lambda: not pp.show("SERVERS"), 10,
               "pgpulse to notice that its server connection is gone")

    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as err:
        client.execute("SELECT 1")
    elapsed = time.monotonic() - t0
    assert elapsed < 10, f"the error took {elapsed:.1f}s (query_wait_timeout is 30s)"
    assert re.search(r"could not connect|connection refused", str(err.value), re.I), str(err.value)

    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        with psycopg.connect(pp.dsn(), connect_timeout=20, autocommit=True) as c:
            c.execute("SELECT 1")
    assert time.monotonic() - t0 < 10
    assert pp.running

    pg.start()

    def fresh_query():
        with psycopg.connect(pp.dsn(), connect_timeout=5, autocommit=True) as c:
            return c.execute("SELECT 'up'").fetchone() == ("up",)
    wait_until(fresh_query, 15, "queries to work again once PostgreSQL is up",
               interval=0.2, ignore=(psycopg.OperationalError,))


# ------------------------------------------------------------ bad clients

def test_startup_packet_of_an_unknown_protocol_gets_an_error_and_a_close(pgpulse, raw):
    pp = trust_pgpulse(pgpulse)
    bystander = pp.connect(autocommit=True, prepare_threshold=None)
    assert bystander.execute("SELECT 1").fetchone() == (1,)
    pid = pp.pid

    bad = raw(pp.port, timeout=5)
    bad.send(b"\x00\x00\x00\x10\xde\xad\xbe\xef\x01\x02\x03\x04\x05\x06\x07\x08")
    msgs = bad.read_until_closed()
    assert [t for t, _ in msgs] == ["E"], msgs
    assert errors_in(msgs)[0]["S"] == "FATAL"
    assert_bystander_works(pp, bystander, pid)


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"\x00\x00\x00\x02\x00\x00",
], ids=["http-request", "length-too-small"])
def test_garbage_startup_length_is_closed_without_a_word(pgpulse, raw, garbage):
    """As PostgreSQL: a length no startup packet can have is logged, not answered."""
    pp = trust_pgpulse(pgpulse)
    bystander = pp.connect(autocommit=True, prepare_threshold=None)
    assert bystander.execute("SELECT 1").fetchone() == (1,)
    pid = pp.pid

    bad = raw(pp.port, timeout=5)
    bad.send(garbage)
    assert bad.read_until_closed() == []
    assert_bystander_works(pp, bystander, pid)


@pytest.mark.parametrize("stage", ["startup-packet", "password-message"])
def test_huge_length_prefix_is_refused_without_memory_growth(pgpulse, raw, stage):
    pp = start(pgpulse)
    bystander = pp.connect(autocommit=True, prepare_threshold=None)
    assert bystander.execute("SELECT 1").fetchone() == (1,)
    pid = pp.pid
    before = rss_kb(pid)

    bad = raw(pp.port, timeout=5)
    if stage == "startup-packet":
        header = struct.pack("!II", 0x7fffffff, PROTO_V3)
    else:
        bad.send(startup_packet())
        t, body = bad.read_message()
        assert t == "R" and body[:4] == struct.pack("!I", 10), "expected AuthenticationSASL"
        header = b"p" + struct.pack("!I", 0x7fffffff)
    try:
        # the announced packet, and far more data than any sane login needs
        bad.send(header + b"x" * (32 << 20))
    except OSError:
        pass  # pgpulse may close before all of it is sent: that is the point
    growth = rss_kb(pid) - before
    assert growth < 16 * 1024, f"pgpulse's RSS grew by {growth} kB for one unauthenticated client"
    msgs = bad.read_until_closed()
    if stage == "startup-packet":
        assert msgs == [], msgs  # an impossible startup length is not answered, as in PostgreSQL
    else:
        errs = errors_in(msgs)
        assert errs and errs[-1]["S"] == "FATAL", msgs
    assert_bystander_works(pp, bystander, pid)


def test_unfinished_startup_packet_is_closed_after_client_login_timeout(pgpulse, raw):
    pp = trust_pgpulse(pgpulse, client_login_timeout=1)
    bystander = pp.connect(autocommit=True, prepare_threshold=None)
    assert bystander.execute("SELECT 1").fetchone() == (1,)
    pid = pp.pid

    bad = raw(pp.port, timeout=5)
    t0 = time.monotonic()
    bad.send(struct.pack("!I", 80))  # announces 80 bytes, sends none of them
    msgs = bad.read_until_closed()
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed < 5, f"closed after {elapsed:.2f}s with client_login_timeout = 1"
    assert all(t == "E" for t, _ in msgs), msgs
    assert_bystander_works(pp, bystander, pid)


@pytest.mark.parametrize("garbage", [
    b"\x01" + struct.pack("!I", 8) + b"\xff\xfe\xfd\xfc",
    b"Q" + struct.pack("!I", 2),
], ids=["unknown-message-type", "length-too-small"])
def test_invalid_message_after_login_closes_only_that_connection(pgpulse, raw, garbage):
    pp = trust_pgpulse(pgpulse)
    bystander = pp.connect(autocommit=True, prepare_threshold=None)
    assert bystander.execute("SELECT 1").fetchone() == (1,)
    pid = pp.pid

    bad = raw(pp.port, timeout=10)
    bad.login()
    assert data_rows(bad.query("SELECT 7")) == [("7",)]
    bad.send(garbage)
    msgs = bad.read_until_closed()
    assert errors_in(msgs), f"no ErrorResponse before the close: {msgs!r}"
    assert_bystander_works(pp, bystander, pid)


@pytest.mark.parametrize("code", [SSL_REQUEST, GSSENC_REQUEST], ids=["SSLRequest", "GSSENCRequest"])
def test_encryption_request_is_refused_and_plain_startup_follows(pgpulse, raw, code):
    pp = trust_pgpulse(pgpulse)
    c = raw(pp.port)
    c.send(struct.pack("!II", 8, code))
    assert c.read_byte() == b"N"
    c.login()
    assert data_rows(c.query("SELECT current_user, current_database()")) == [("app", "appdb")]


def test_protocol_2_startup_gets_an_error_and_a_close(pgpulse, raw):
    pp = trust_pgpulse(pgpulse)
    c = raw(pp.port, timeout=5)
    # the 2.0 startup packet: length, version, database[64] user[32] options[64]
    # unused[64] tty[64]
    body = struct.pack("!I", 2 << 16) + b"appdb".ljust(64, b"\0") + b"app".ljust(32, b"\0") + \
        b"\0" * (64 + 64 + 64)
    c.send(struct.pack("!I", len(body) + 4) + body)
    assert c.read_byte() == b"E"
    rest = b""
    while True:
        try:
            chunk = c.sock.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        rest += chunk
    assert b"protocol" in rest.lower(), rest
    assert pp.running


def test_query_over_max_packet_size_closes_that_connection_only(pgpulse):
    pp = start(pgpulse, max_packet_size="64kB")
    bystander = pp.connect(autocommit=True, prepare_threshold=None)
    assert bystander.execute("SELECT 1").fetchone() == (1,)
    big = pp.connect(autocommit=True, prepare_threshold=None)
    assert big.execute("SELECT 1").fetchone() == (1,)

    with pytest.raises(psycopg.OperationalError) as err:
        big.execute("SELECT length('" + "x" * 100_000 + "')")
    assert re.search(r"max_packet_size|packet too large", str(err.value)), str(err.value)
    assert big.closed or big.broken

    assert bystander.execute("SELECT length('" + "y" * 30_000 + "')").fetchone() == (30_000,)
    other = pp.connect(autocommit=True, prepare_threshold=None)
    assert other.execute("SELECT 3").fetchone() == (3,)


# ------------------------------------------------------------ idle and lifetime closes

def test_server_idle_timeout_closes_an_idle_server_and_next_query_opens_one(pgpulse, pg):
    pp = start(pgpulse, server_idle_timeout=1)
    client = pp.connect(autocommit=True, prepare_threshold=None)
    pid = client.execute("SELECT pg_backend_pid()").fetchone()[0]
    t0 = time.monotonic()
    wait_until(lambda: pid not in backend_pids(pg), 5,
               "the idle server's backend to leave pg_stat_activity")
    assert time.monotonic() - t0 >= 0.5, "the server was closed long before server_idle_timeout"
    new_pid = client.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert new_pid != pid and new_pid in backend_pids(pg)


def test_server_lifetime_replaces_a_busy_server_connection(pgpulse):
    # server_idle_timeout = 0: only the lifetime can close the server here
    pp = start(pgpulse, default_pool_size=1, server_lifetime=1, server_idle_timeout=0)
    client = pp.connect(autocommit=True, prepare_threshold=None)
    t0 = time.monotonic()
    first = client.execute("SELECT pg_backend_pid()").fetchone()[0]

    def replaced():
        return client.execute("SELECT pg_backend_pid()").fetchone()[0] != first
    wait_until(replaced, 6, "the server to be replaced after server_lifetime", interval=0.05)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.9, f"replaced after {elapsed:.2f}s, before server_lifetime = 1"


def test_a_database_entry_s_own_server_lifetime_wins_over_the_global_one(pgpulse):
    """[databases] server_lifetime (PgBouncer 1.24+): `short` replaces its
    server after 1 s; `long`, on the global 3600 s, keeps its server through
    the same time."""
    ini = make_ini(default_pool_size=1, server_lifetime=3600, server_idle_timeout=0).replace(
        "[databases]\n",
        "[databases]\n"
        "short = host={pg_host} port={pg_port} dbname=appdb server_lifetime=1\n"
        "long = host={pg_host} port={pg_port} dbname=appdb\n")
    pp = pgpulse(ini, USERLIST)
    short = pp.connect(dbname="short", autocommit=True, prepare_threshold=None)
    long_ = pp.connect(dbname="long", autocommit=True, prepare_threshold=None)
    t0 = time.monotonic()
    short_first = short.execute("SELECT pg_backend_pid()").fetchone()[0]
    long_first = long_.execute("SELECT pg_backend_pid()").fetchone()[0]

    def short_replaced():
        return short.execute("SELECT pg_backend_pid()").fetchone()[0] != short_first
    wait_until(short_replaced, 6, "short's server to be replaced after its server_lifetime = 1",
               interval=0.05)
    assert time.monotonic() - t0 >= 0.9, "replaced before server_lifetime = 1"
    # as long as short's took, and then some: long's server is the same one
    assert long_.execute("SELECT pg_backend_pid()").fetchone()[0] == long_first


# ------------------------------------------------------------ admin console view

def test_show_pools_counts_active_idle_and_waiting(pgpulse):
    pp = start(pgpulse, default_pool_size=2)
    a = pp.connect(prepare_threshold=None)
    b = pp.connect(prepare_threshold=None)
    # two transactions at once open both servers; both then go idle
    a.execute("SELECT 1")
    b.execute("SELECT 1")
    a.commit()
    b.commit()
    row = pool_row(pp)
    assert (row["cl_active"], row["cl_waiting"], row["sv_active"], row["sv_idle"]) == (2, 0, 0, 2)

    a.execute("SELECT 1")
    row = pool_row(pp)
    assert (row["cl_active"], row["cl_waiting"], row["sv_active"], row["sv_idle"]) == (2, 0, 1, 1)

    b.execute("SELECT 1")
    waiter = Background(query_then_close(thread_conn(pp), "SELECT 'w'"))
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the third client to wait")
    row = pool_row(pp)
    assert (row["cl_active"], row["cl_waiting"], row["sv_active"], row["sv_idle"]) == (2, 1, 2, 0)
    assert row["pool_mode"] == "transaction"

    b.commit()
    waiter.join()
    assert waiter.result == ("w",), repr(waiter.error)
    a.commit()
    wait_until(lambda: pool_row(pp)["sv_idle"] == 2, 5, "both servers to be idle again")
    row = pool_row(pp)
    assert (row["cl_active"], row["cl_waiting"], row["sv_active"]) == (2, 0, 0)


def test_show_clients_and_servers_list_who_is_linked_to_whom(pgpulse):
    pp = start(pgpulse, default_pool_size=1)
    holder = pp.connect(prepare_threshold=None, application_name="holder")
    idle = pp.connect(autocommit=True, prepare_threshold=None, application_name="idler")
    assert idle.execute("SELECT 1").fetchone() == (1,)
    backend = holder.execute("SELECT pg_backend_pid()").fetchone()[0]
    waiter = Background(query_then_close(thread_conn(pp), "SELECT 1"))
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the third client to wait")

    clients = [c for c in pp.show("CLIENTS") if c["database"] == "appdb"]
    servers = pp.show("SERVERS")
    assert sorted(c["state"] for c in clients) == ["active", "idle", "waiting"]
    assert {c["user"] for c in clients} == {"app"}
    by_app = {c["application_name"]: c for c in clients}
    assert by_app["holder"]["state"] == "active" and by_app["idler"]["state"] == "idle"

    assert len(servers) == 1
    (server,) = servers
    assert (server["user"], server["database"], server["state"]) == ("app", "appdb", "active")
    assert server["remote_pid"] == backend
    assert server["link"] == by_app["holder"]["ptr"] and by_app["holder"]["link"] == server["ptr"]
    assert not by_app["idler"]["link"]

    holder.commit()
    waiter.join()
    assert waiter.error is None, repr(waiter.error)


# ------------------------------------------------------------ pgbench

@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_pgbench_through_transaction_pooling_has_no_failed_transactions(pgpulse, pgbench, protocol):
    pp = start(pgpulse, default_pool_size=2)
    pgbench(pp.port, "-i", "-q", "-s", "1")
    r = pgbench(pp.port, "-c", "10", "-j", "2", "-T", "3", "-M", protocol, "-n")
    processed = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
    assert processed and int(processed.group(1)) > 0, r.stdout
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    assert failed is None or int(failed.group(1)) == 0, r.stdout
    assert "error" not in r.stderr.lower(), r.stderr
