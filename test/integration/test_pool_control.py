"""Pool control against real PostgreSQL: the base/overflow/reserve tiers,
min_pool_size, the caps, server checks, the client and query timeouts,
client limits, listen_backlog, and the live control commands of the admin
console (PAUSE, RESUME, SUSPEND, DISABLE, ENABLE, RECONNECT, KILL,
KILL_CLIENT, WAIT_CLOSE, SHUTDOWN, SET, RELOAD) and signals.

The module makes two databases of its own, pctl and pctl2 (owned by app),
so that the backend counts read from pg_stat_activity see only this
module's pgpulse; every test starts with none of their backends left.
Concurrency comes from threads, each with a psycopg connection that only it
touches (and closes).  Where an SQLSTATE of a refused login matters, the
login is spoken on a raw socket against a pgpulse with auth_type = trust.
"""

import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import psycopg
import pytest

from pgpulse_harness import build_ini, TcpProxy, query_message, raw_startup, wait_until

DBS = ("pctl", "pctl2")
USERLIST = {"app": "app_pw", "md5user": "md5_pw", "admin": "admin_pw"}

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


def make_ini(dbs=None, users=None, **settings):
    """build_ini with this file's databases and settings as defaults."""
    merged = dict(BASE_SETTINGS)
    merged.update({k: str(v) for k, v in settings.items()})
    return build_ini({name: "" for name in DBS} if dbs is None else dbs, users, merged)


def start(pgpulse, dbs=None, users=None, **settings):
    return pgpulse(make_ini(dbs, users, **settings), USERLIST)


# ------------------------------------------------------------ databases of our own

@pytest.fixture(scope="module")
def dbs(pg):
    for name in DBS:
        pg.query(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        pg.query(f"CREATE DATABASE {name} OWNER app")
    yield DBS
    for name in DBS:
        pg.query(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def our_backends(pg):
    return [r for r in pg.backends() if r["datname"] in DBS]


@pytest.fixture(autouse=True)
def no_leftover_backends(pg, dbs):
    """Backends of an earlier test's pgpulse (or of a query it abandoned) do
    not count in this one."""
    pg.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
             " WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", (list(DBS),))
    wait_until(lambda: not our_backends(pg), 10, "leftover pctl backends to go")
    yield


def as_app(pg, sql, dbname="pctl"):
    """Run sql straight on PostgreSQL as app (the owner of pctl)."""
    with pg.connect(dbname=dbname, user="app", autocommit=True) as c:
        cur = c.execute(sql)
        return cur.fetchall() if cur.description is not None else None


def backend_pids(pg, dbname="pctl", user=None):
    return {r["pid"] for r in pg.backends(dbname=dbname, user=user)}


def n_backends(pg, dbname="pctl", user=None):
    return len(pg.backends(dbname=dbname, user=user))


# ------------------------------------------------------------ clients

def thread_conn(pp, dbname="pctl", user="app", autocommit=True, **kw):
    """A connection through pgpulse that the harness does not track: it
    belongs to one thread, which closes it."""
    return psycopg.connect(pp.dsn(dbname=dbname, user=user), autocommit=autocommit,
                           prepare_threshold=None, connect_timeout=10, **kw)


class Background:
    """Run fn() in a daemon thread; keep its result or exception and the
    monotonic time it finished."""

    def __init__(self, fn):
        self.result = None
        self.error = None
        self.started_at = time.monotonic()
        self.finished_at = None
        self._fn = fn
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.result = self._fn()
        except BaseException as e:  # the test reports it
            self.error = e
        finally:
            self.finished_at = time.monotonic()

    @property
    def done(self):
        return not self.thread.is_alive()

    @property
    def elapsed(self):
        return self.finished_at - self.started_at

    def join(self, timeout=15):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"background work still running after {timeout}s"
        return self

    def ok(self, timeout=15):
        self.join(timeout)
        assert self.error is None, f"background work failed: {self.error!r}"
        return self.result


def background_query(pp, sql="SELECT pg_backend_pid()", dbname="pctl", user="app"):
    """In a thread: connect (the login itself may wait for the pool's first
    server), run sql, close."""
    def run():
        with thread_conn(pp, dbname, user) as conn:
            return conn.execute(sql).fetchone()
    return Background(run)


def run_then_close(conn, sql):
    """For Background: run sql on conn, which the thread then owns and
    closes."""
    def run():
        try:
            return conn.execute(sql).fetchone()
        finally:
            conn.close()
    return run


def background_admin(pp, command):
    """In a thread: run a console command that may wait before it answers,
    on an admin connection of the thread's own; the result is the tag."""
    def run():
        with psycopg.connect(pp.dsn(dbname="pgpulse", user="admin"), autocommit=True,
                             prepare_threshold=None, cursor_factory=psycopg.ClientCursor,
                             connect_timeout=10) as conn:
            return conn.execute(command).statusmessage
    return Background(run)


def connect(pp, dbname="pctl", user="app", **kw):
    """A harness-tracked client of pgpulse (closed at teardown), to pctl by
    default, on unnamed statements."""
    kw.setdefault("prepare_threshold", None)
    return pp.connect(dbname=dbname, user=user, **kw)


def hold_transaction(pp, dbname="pctl", user="app", **kw):
    """A client inside a transaction, holding a server; returns (conn, pid)."""
    conn = connect(pp, dbname=dbname, user=user, **kw)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    return conn, pid


def pool_row(pp, database="pctl", user="app"):
    rows = [r for r in pp.show("POOLS") if r["database"] == database and r["user"] == user]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def cl_waiting(pp, database="pctl", user="app"):
    row = pool_row(pp, database, user)
    return row["cl_waiting"] if row else 0


def db_row(pp, name="pctl"):
    rows = [r for r in pp.show("DATABASES") if r["name"] == name]
    assert len(rows) == 1, rows
    return rows[0]


def clients_of(pp, user="app", database=None):
    return [r for r in pp.show("CLIENTS")
            if r["user"] == user and (database is None or r["database"] == database)]


def assert_not_done_yet(bg, what, seconds=0.5):
    # A fixed wait is only used to show that something does NOT happen.
    time.sleep(seconds)
    assert not bg.done, f"{what} finished early: result {bg.result!r}, error {bg.error!r}"


# ------------------------------------------------------------ raw protocol (trust)

def raw_login(port, user="app", database="pctl", timeout=10):
    """raw_startup() on a connection of its own, closed afterwards."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        return raw_startup(s, user, database)


def trust_settings(**settings):
    return dict(settings, auth_type="trust")


# ------------------------------------------------------------ helper servers

def close_listener(sock):
    """Close a listening socket; shutdown() first wakes a thread blocked in
    accept() on Linux."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class Blackhole:
    """A TCP port that accepts connections and never says a word: a
    PostgreSQL that hangs.  `attempts` counts the connections made to it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.conns.append(c)

    @property
    def attempts(self):
        with self._lock:
            return len(self.conns)

    def close(self):
        close_listener(self.sock)
        with self._lock:
            for c in self.conns:
                c.close()


@pytest.fixture
def blackhole():
    b = Blackhole()
    yield b
    b.close()


# ============================================================ tiers

def test_overflow_connections_open_at_once_beyond_the_base_and_show_in_sv_overflow(pgpulse, pg):
    pp = start(pgpulse, default_pool_size=1, overflow_pool_size=2, reserve_pool_size=0,
               query_wait_timeout=30)
    holders = [hold_transaction(pp) for _ in range(3)]
    # three transactions run at once on a base of one: two overflow servers
    assert len({pid for _, pid in holders}) == 3
    assert n_backends(pg) == 3
    row = pool_row(pp)
    assert (row["sv_active"], row["sv_overflow"], row["sv_reserve"]) == (3, 2, 0), row
    db = db_row(pp)
    assert (db["overflow_pool_size"], db["overflow_in_use"], db["reserve_in_use"]) == (2, 2, 0), db

    # base and overflow are used up: the fourth client queues
    fourth = background_query(pp)
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the fourth client to wait")
    assert n_backends(pg) == 3
    holders[0][0].commit()
    assert fourth.ok()[0] == holders[0][1], "the fourth client should get the released server"


def test_overflow_connections_close_after_overflow_idle_timeout_and_the_base_stays(pgpulse, pg):
    pp = start(pgpulse, dbs={"pctl": "overflow_pool_size=2", "pctl2": ""},
               default_pool_size=1, overflow_idle_timeout=1, server_idle_timeout=0)
    holders = [hold_transaction(pp) for _ in range(3)]
    assert pool_row(pp)["sv_overflow"] == 2
    for conn, _ in holders:
        conn.commit()
    released = time.monotonic()
    row = pool_row(pp)
    assert (row["sv_idle"], row["sv_overflow"]) == (3, 2), row

    wait_until(lambda: n_backends(pg) == 1, 10, "the overflow backends to close")
    elapsed = time.monotonic() - released
    assert 0.8 <= elapsed < 6, f"overflow servers closed {elapsed:.2f}s after release " \
                               "with overflow_idle_timeout = 1"
    row = pool_row(pp)
    assert (row["sv_idle"], row["sv_overflow"], row["sv_reserve"]) == (1, 0, 0), row
    kept = backend_pids(pg)
    assert kept <= {pid for _, pid in holders}

    # the base server is not on overflow's clock: it outlives another timeout
    time.sleep(1.3)
    assert backend_pids(pg) == kept


def test_reserve_server_is_granted_only_after_reserve_pool_timeout(pgpulse, pg):
    pp = start(pgpulse, default_pool_size=1, overflow_pool_size=0, reserve_pool_size=1,
               reserve_pool_timeout=1.5, query_wait_timeout=30)
    holder, holder_pid = hold_transaction(pp)

    conn = thread_conn(pp, autocommit=False)

    def wait_then_hold():
        # leaves its transaction open (and the reserve server with it)
        return conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    waiter = Background(wait_then_hold)
    try:
        wait_until(lambda: cl_waiting(pp) == 1, 10, "the second client to wait")
        row = pool_row(pp)
        assert row["sv_reserve"] == 0 and row["sv_login"] == 0, \
            f"a reserve server was opened before reserve_pool_timeout: {row}"
        assert n_backends(pg) == 1

        pid = waiter.ok()
        assert 1.4 <= waiter.elapsed < 8, \
            f"the waiting client got a server after {waiter.elapsed:.2f}s " \
            "with reserve_pool_timeout = 1.5"
        assert pid != holder_pid
        row = pool_row(pp)
        assert (row["sv_active"], row["sv_overflow"], row["sv_reserve"]) == (2, 0, 1), row
        db = db_row(pp)
        assert (db["overflow_in_use"], db["reserve_in_use"]) == (0, 1), db
        assert n_backends(pg) == 2
    finally:
        waiter.join()
        conn.close()


def test_each_waiting_client_gets_a_reserve_server_only_after_its_own_wait(pgpulse, pg):
    pp = start(pgpulse, default_pool_size=1, reserve_pool_size=2, reserve_pool_timeout=1.5,
               query_wait_timeout=30)
    holder, holder_pid = hold_transaction(pp)
    early_conn = thread_conn(pp, autocommit=False)  # keeps its server once it has one
    early = Background(lambda: early_conn.execute("SELECT pg_backend_pid()").fetchone())
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the first client to wait")
    time.sleep(1)  # the second client arrives a second after the first
    late = background_query(pp)
    # the first client's wait is over: it runs on a reserve server...
    wait_until(lambda: pool_row(pp)["sv_active"] == 2, 10, "the first client's reserve server")
    # ...while the second, which has not waited as long, still waits
    row = pool_row(pp)
    assert (row["cl_waiting"], row["sv_reserve"]) == (1, 1), row
    late_pid = late.ok()[0]
    assert 1.4 <= late.elapsed < 8, \
        f"the second client got a server after {late.elapsed:.2f}s of its own " \
        "with reserve_pool_timeout = 1.5"
    assert late_pid != holder_pid
    assert pool_row(pp)["sv_reserve"] == 2
    assert early.ok()[0] not in (holder_pid, late_pid)
    early_conn.close()
    holder.commit()


def test_reserve_servers_close_after_overflow_idle_timeout(pgpulse, pg):
    pp = start(pgpulse, default_pool_size=1, reserve_pool_size=1, reserve_pool_timeout=0,
               overflow_idle_timeout=1, server_idle_timeout=0)
    (a, pid_a), (b, pid_b) = hold_transaction(pp), hold_transaction(pp)
    assert pool_row(pp)["sv_reserve"] == 1
    a.commit()
    b.commit()
    released = time.monotonic()
    wait_until(lambda: n_backends(pg) == 1, 10, "the reserve backend to close")
    elapsed = time.monotonic() - released
    assert 0.8 <= elapsed < 6, f"the reserve server closed {elapsed:.2f}s after release " \
                               "with overflow_idle_timeout = 1"
    assert backend_pids(pg) <= {pid_a, pid_b}
    row = pool_row(pp)
    assert (row["sv_idle"], row["sv_reserve"]) == (1, 0), row


def test_min_pool_size_is_filled_at_startup_for_a_forced_user_database(pgpulse, pg):
    pp = start(pgpulse, dbs={"pctl": "user=app min_pool_size=2", "pctl2": ""},
               default_pool_size=3)
    # no client has connected: pgpulse opened them on its own
    wait_until(lambda: n_backends(pg, user="app") == 2, 10,
               "min_pool_size backends to be opened at startup")
    assert all(r["state"] == "idle" for r in pg.backends(dbname="pctl"))
    assert n_backends(pg, dbname="pctl2") == 0
    row = pool_row(pp)
    assert (row["cl_active"], row["cl_waiting"], row["sv_idle"]) == (0, 0, 2), row
    # and they serve the first client without a new connection
    conn = connect(pp, dbname="pctl", user="app", autocommit=True)
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] in backend_pids(pg)
    assert n_backends(pg) == 2


def test_server_idle_timeout_shrinks_the_pool_to_min_pool_size_and_no_further(pgpulse, pg):
    pp = start(pgpulse, default_pool_size=3, min_pool_size=1, server_idle_timeout=1)
    holders = [hold_transaction(pp) for _ in range(3)]
    for conn, _ in holders:
        conn.commit()
    released = time.monotonic()
    assert n_backends(pg) == 3

    wait_until(lambda: n_backends(pg) == 1, 10, "idle servers beyond min_pool_size to close")
    elapsed = time.monotonic() - released
    assert 0.8 <= elapsed < 6, f"closed {elapsed:.2f}s after release with server_idle_timeout = 1"
    kept = backend_pids(pg)
    assert kept <= {pid for _, pid in holders}, "the kept server should be one that was idle"
    # the last one is min_pool_size's: it outlives another idle timeout
    time.sleep(1.3)
    assert backend_pids(pg) == kept
    assert pool_row(pp)["sv_idle"] == 1


def test_database_pool_size_overrides_default_pool_size(pgpulse, pg):
    pp = start(pgpulse, dbs={"pctl": "pool_size=3", "pctl2": ""}, default_pool_size=1)
    holders = [hold_transaction(pp, user="md5user") for _ in range(3)]
    assert len({pid for _, pid in holders}) == 3
    fourth = background_query(pp, user="md5user")
    wait_until(lambda: cl_waiting(pp, user="md5user") == 1, 10, "the fourth client to wait")
    assert n_backends(pg, user="md5user") == 3
    holders[0][0].commit()
    fourth.ok()
    # the other database keeps the global size of one
    other, _ = hold_transaction(pp, dbname="pctl2", user="md5user")
    second = background_query(pp, dbname="pctl2", user="md5user")
    wait_until(lambda: cl_waiting(pp, "pctl2", "md5user") == 1, 10,
               "a second pctl2 client to wait")
    other.commit()
    second.ok()


def test_user_pool_size_beats_database_pool_size(pgpulse, pg):
    pp = start(pgpulse, dbs={"pctl": "pool_size=3", "pctl2": ""}, users={"app": "pool_size=1"},
               default_pool_size=2)
    holder, pid = hold_transaction(pp, user="app")
    second = background_query(pp, user="app")
    wait_until(lambda: cl_waiting(pp, user="app") == 1, 10, "app's second client to wait")
    assert n_backends(pg, user="app") == 1
    # md5user has no [users] entry: the database's three apply
    md5_holders = [hold_transaction(pp, user="md5user") for _ in range(3)]
    assert n_backends(pg, user="md5user") == 3
    assert cl_waiting(pp, user="app") == 1
    holder.commit()
    assert second.ok()[0] == pid
    for conn, _ in md5_holders:
        conn.commit()


def test_user_pool_mode_beats_database_pool_mode(pgpulse, pg):
    pp = start(pgpulse, dbs={"pctl": "pool_mode=session", "pctl2": ""},
               users={"app": "pool_mode=transaction"}, default_pool_size=1)
    # app: transaction pooling, two connected clients take turns on one server
    a = connect(pp, user="app", autocommit=True)
    b = connect(pp, user="app", autocommit=True)
    pid = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert b.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    assert pool_row(pp, user="app")["pool_mode"] == "transaction"
    # md5user: the database's session pooling, the first client keeps the server
    m1 = connect(pp, user="md5user", autocommit=True)
    m1.execute("SELECT 1")
    assert pool_row(pp, user="md5user")["pool_mode"] == "session"
    m2 = background_query(pp, user="md5user")
    wait_until(lambda: cl_waiting(pp, user="md5user") == 1, 10,
               "the second session-mode client to wait")
    m1.close()
    m2.ok()


# ============================================================ caps

def test_max_db_connections_caps_two_users_and_evicts_an_idle_server_of_the_other(pgpulse, pg):
    pp = start(pgpulse, dbs={"pctl": "max_db_connections=2", "pctl2": ""}, default_pool_size=2,
               server_idle_timeout=0)
    (a1, pid1), (a2, pid2) = hold_transaction(pp), hold_transaction(pp)

    other = background_query(pp, user="md5user")
    wait_until(lambda: cl_waiting(pp, user="md5user") == 1, 10, "md5user's client to wait")
    assert_not_done_yet(other, "md5user's query while the database is at its cap")
    assert n_backends(pg) == 2 and pool_row(pp, user="md5user")["sv_login"] == 0

    # app's released server is idle; the cap makes room by closing it
    a1.commit()
    md5_pid = other.ok()[0]
    wait_until(lambda: pid1 not in backend_pids(pg), 10, "app's idle backend to be closed")
    assert md5_pid not in (pid1, pid2)
    assert backend_pids(pg, user="app") == {pid2}
    assert backend_pids(pg, user="md5user") == {md5_pid}
    assert db_row(pp)["current_connections"] == 2
    a2.commit()


def test_max_user_connections_caps_one_users_pools_across_databases(pgpulse, pg):
    pp = start(pgpulse, users={"app": "max_user_connections=2"}, default_pool_size=2,
               server_idle_timeout=0)
    (a1, pid1), (a2, pid2) = hold_transaction(pp), hold_transaction(pp)

    other = background_query(pp, dbname="pctl2")
    wait_until(lambda: cl_waiting(pp, database="pctl2") == 1, 10, "app's pctl2 client to wait")
    assert_not_done_yet(other, "app's pctl2 query while app is at its cap")
    assert len([r for r in our_backends(pg) if r["usename"] == "app"]) == 2
    assert n_backends(pg, dbname="pctl2") == 0

    # md5user is not capped
    m, _ = hold_transaction(pp, user="md5user")

    a1.commit()
    pctl2_pid = other.ok()[0]
    wait_until(lambda: pid1 not in backend_pids(pg), 10, "app's idle pctl backend to be closed")
    assert backend_pids(pg, dbname="pctl2") == {pctl2_pid}
    assert backend_pids(pg, user="app") == {pid2}
    m.commit()
    a2.commit()


# ============================================================ server checks

def test_server_check_query_runs_on_a_server_idle_longer_than_server_check_delay(pgpulse, pg):
    as_app(pg, "DROP SEQUENCE IF EXISTS pctl_check; CREATE SEQUENCE pctl_check")
    pp = start(pgpulse, default_pool_size=1, server_check_delay=1,
               server_check_query="select nextval('pctl_check')")

    def checks_run():
        last, called = pg.query("SELECT last_value, is_called FROM pctl_check", dbname="pctl")[0]
        return last if called else 0

    conn = connect(pp, autocommit=True)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    assert checks_run() == 0, "a server reused at once was checked"

    time.sleep(1.5)  # the server now sits idle longer than server_check_delay
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    assert checks_run() == 1, "the server idle past server_check_delay was not checked"
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    assert checks_run() == 1


# ============================================================ timeouts

def test_query_timeout_cancels_a_long_query_and_the_client_keeps_its_connection(pgpulse, pg):
    pp = start(pgpulse, query_timeout=1)
    conn = connect(pp, autocommit=True)
    t0 = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled) as err:
        conn.execute("SELECT pg_sleep(30)")
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 6, f"the query was cancelled after {elapsed:.2f}s " \
                               "with query_timeout = 1"
    assert err.value.sqlstate == "57014"
    assert not any("pg_sleep" in (r["query"] or "") and r["state"] == "active"
                   for r in pg.backends(dbname="pctl"))
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_query_timeout_does_not_count_the_time_spent_waiting_for_a_server(pgpulse):
    pp = start(pgpulse, default_pool_size=1, query_timeout=1, query_wait_timeout=30)
    holder, _ = hold_transaction(pp)
    waiter = background_query(pp, "SELECT 'served' FROM pg_sleep(0.1)")
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the second client to wait")
    time.sleep(1.5)  # the queued client has now waited longer than query_timeout
    holder.commit()
    assert waiter.ok() == ("served",)
    assert waiter.elapsed >= 1.5


def test_query_timeout_closes_the_server_when_the_cancel_is_not_answered(pgpulse, pg):
    proxy = TcpProxy(pg.host, pg.port)
    proxy.hold_cancels = True  # a server that does not answer a cancel
    try:
        pp = start(pgpulse, dbs={"pctl": f"host=127.0.0.1 port={proxy.port} dbname=pctl"},
                   query_timeout=1, cancel_wait_timeout=1)
        bystander = connect(pp, autocommit=True)
        assert bystander.execute("SELECT 1").fetchone() == (1,)
        conn = connect(pp, autocommit=True)
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as err:
            conn.execute("SELECT pg_sleep(5)")
        elapsed = time.monotonic() - t0
        assert 1.8 <= elapsed < 8, f"the client was failed after {elapsed:.2f}s with " \
                                   "query_timeout = 1 and cancel_wait_timeout = 1"
        assert "query_timeout" in str(err.value), str(err.value)
        assert proxy.cancels_seen >= 1, "pgpulse did not try a cancel first"
        assert conn.closed or conn.broken
        wait_until(lambda: pool_row(pp)["sv_active"] == 0, 10,
                   "the server that ignored the cancel to be closed")
        assert bystander.execute("SELECT 2").fetchone() == (2,)
    finally:
        proxy.close()


def test_client_idle_timeout_of_a_user_closes_that_users_idle_client(pgpulse):
    pp = start(pgpulse, users={"app": "client_idle_timeout=1"})
    app = connect(pp, user="app", autocommit=True)
    other = connect(pp, user="md5user", autocommit=True)
    other.execute("SELECT 1")
    app.execute("SELECT 1")
    t0 = time.monotonic()
    wait_until(lambda: not clients_of(pp, "app"), 10, "app's idle client to be closed")
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed < 6, f"closed after {elapsed:.2f}s idle with client_idle_timeout = 1"
    with pytest.raises(psycopg.OperationalError):
        app.execute("SELECT 1")
    # md5user has no client_idle_timeout: still connected
    assert clients_of(pp, "md5user")
    assert other.execute("SELECT 2").fetchone() == (2,)


def test_idle_transaction_timeout_closes_the_client_and_rolls_its_transaction_back(pgpulse, pg):
    as_app(pg, "DROP TABLE IF EXISTS pctl_itx; CREATE TABLE pctl_itx (x int)")
    pp = start(pgpulse, idle_transaction_timeout=1)
    idle_in_tx = connect(pp)
    idle_in_tx.execute("INSERT INTO pctl_itx VALUES (1)")
    pid = idle_in_tx.execute("SELECT pg_backend_pid()").fetchone()[0]
    t0 = time.monotonic()
    busy = connect(pp, autocommit=True)

    wait_until(lambda: len(clients_of(pp, "app")) == 1, 10,
               "the client idle in transaction to be closed")
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed < 6, f"closed after {elapsed:.2f}s with idle_transaction_timeout = 1"
    wait_until(lambda: pid not in backend_pids(pg), 10, "its backend to go")
    assert pg.query("SELECT count(*) FROM pctl_itx", dbname="pctl") == [(0,)]
    with pytest.raises(psycopg.OperationalError):
        idle_in_tx.execute("COMMIT")
    assert busy.execute("SELECT 1").fetchone() == (1,)


def test_transaction_timeout_closes_a_busy_transaction_that_stays_open_too_long(pgpulse):
    pp = start(pgpulse, transaction_timeout=1.5, idle_transaction_timeout=0)
    in_tx = connect(pp)
    autocommit = connect(pp, autocommit=True)
    t0 = time.monotonic()
    error = None
    # both stay busy; only the open transaction outlives transaction_timeout
    while time.monotonic() - t0 < 10:
        try:
            in_tx.execute("SELECT 1")
        except psycopg.OperationalError as e:
            error = e
            break
        assert autocommit.execute("SELECT 1").fetchone() == (1,)
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    assert error is not None, "the transaction was never closed"
    assert 1.3 <= elapsed < 6, f"closed after {elapsed:.2f}s with transaction_timeout = 1.5"
    assert "transaction_timeout" in str(error), str(error)
    assert autocommit.execute("SELECT 2").fetchone() == (2,)


def test_query_wait_timeout_of_a_user_fails_its_waiting_client_and_closes_it(pgpulse):
    pp = start(pgpulse, users={"app": "query_wait_timeout=1"}, default_pool_size=1,
               query_wait_timeout=60)
    holder, _ = hold_transaction(pp)
    conn = connect(pp, autocommit=True)
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as err:
        conn.execute("SELECT 1")
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 6, f"the error came after {elapsed:.2f}s with query_wait_timeout = 1"
    assert "query_wait_timeout" in str(err.value), str(err.value)
    assert conn.closed or conn.broken
    wait_until(lambda: len(clients_of(pp, "app")) == 1, 10, "the failed client to be closed")
    holder.commit()


def test_unreachable_server_fails_clients_at_once_within_server_login_retry(pgpulse, pg,
                                                                           blackhole):
    settings = dict(server_connect_timeout=1, server_login_retry=2, query_wait_timeout=30,
                    default_pool_size=1)
    pp = start(pgpulse, **settings)
    first, second, third = (connect(pp, autocommit=True) for _ in range(3))
    assert first.execute("SELECT 1").fetchone() == (1,)

    # the database moves to a host that accepts connections and never answers
    pp.write_config(make_ini({"pctl": f"host=127.0.0.1 port={blackhole.port} dbname=pctl",
                              "pctl2": ""}, **settings))
    assert pp.command("RELOAD") == "RELOAD"

    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as err:
        first.execute("SELECT 1")
    slow = time.monotonic() - t0
    failed_at = time.monotonic()
    assert "server_connect_timeout" in str(err.value), str(err.value)
    assert 0.9 <= slow < 6, f"the first failure took {slow:.2f}s with server_connect_timeout = 1"
    assert blackhole.attempts == 1, \
        f"{blackhole.attempts} connection attempts before the first client was failed: " \
        "a failed attempt must not be retried within server_login_retry"

    # within server_login_retry: no new attempt, an error at once
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as err:
        second.execute("SELECT 1")
    fast = time.monotonic() - t0
    assert fast < 0.5, f"the second client waited {fast:.2f}s instead of failing at once"
    assert "server_connect_timeout" in str(err.value), str(err.value)
    assert blackhole.attempts == 1

    # after server_login_retry a new attempt is made (and times out again)
    time.sleep(max(0.0, failed_at + 2.3 - time.monotonic()))
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        third.execute("SELECT 1")
    again = time.monotonic() - t0
    assert 0.9 <= again < 6, f"after server_login_retry the client failed after {again:.2f}s"
    assert blackhole.attempts == 2


def test_missing_unix_socket_fails_the_client_at_once_and_pgpulse_keeps_running(pgpulse):
    # {dir} is pgpulse's own directory: no PostgreSQL socket there, as when
    # PostgreSQL is down and its socket file is gone
    pp = start(pgpulse, dbs={"pctl": "host={dir} port={pg_port} dbname=pctl", "pctl2": ""},
               query_wait_timeout=30, server_login_retry=1)
    bystander = connect(pp, dbname="pctl2", autocommit=True)
    assert bystander.execute("SELECT 1").fetchone() == (1,)
    pid = pp.pid
    for _ in range(2):  # the failed attempt, then the server_login_retry window
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as err:
            thread_conn(pp, "pctl").close()
        elapsed = time.monotonic() - t0
        assert pp.running and pp.pid == pid, "pgpulse died when the server's socket was missing"
        assert elapsed < 5, f"the error took {elapsed:.2f}s (query_wait_timeout is 30s)"
        assert re.search(r"could not connect|No such file", str(err.value)), str(err.value)
    assert bystander.execute("SELECT 2").fetchone() == (2,)


# ============================================================ client limits

def test_max_db_client_connections_refuses_the_next_client_with_53300(pgpulse):
    pp = start(pgpulse, dbs={"pctl": "max_db_client_connections=2", "pctl2": ""},
               **trust_settings())
    first = connect(pp, dbname="pctl")
    connect(pp, dbname="pctl", user="md5user")
    kind, fields = raw_login(pp.port, "app", "pctl")
    assert kind == "error", "a third client of pctl was let in"
    assert fields["C"] == "53300", fields
    assert "max_db_client_connections" in fields["M"], fields
    # another database is not affected
    assert raw_login(pp.port, "app", "pctl2")[0] == "ok"
    first.close()
    wait_until(lambda: raw_login(pp.port, "app", "pctl")[0] == "ok", 10,
               "a client of pctl to be let in after one left")


def test_max_user_client_connections_refuses_the_users_next_client_with_53300(pgpulse):
    pp = start(pgpulse, **trust_settings(max_user_client_connections=2))
    first = connect(pp, dbname="pctl", user="app")
    connect(pp, dbname="pctl2", user="app")
    kind, fields = raw_login(pp.port, "app", "pctl")
    assert kind == "error", "a third client of app was let in"
    assert fields["C"] == "53300", fields
    assert "max_user_client_connections" in fields["M"], fields
    assert raw_login(pp.port, "md5user", "pctl")[0] == "ok"
    first.close()
    wait_until(lambda: raw_login(pp.port, "app", "pctl")[0] == "ok", 10,
               "app to be let in again after one of its clients left")


def test_listen_backlog_is_the_backlog_of_the_listening_socket(pgpulse):
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("ss (iproute2) is not installed: cannot read the listen backlog")
    pp = start(pgpulse, listen_backlog=37)
    out = subprocess.run([ss, "-Hltn", f"sport = :{pp.port}"], capture_output=True, text=True,
                         check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.strip()]
    assert rows, f"ss shows no listening socket on port {pp.port}"
    # State Recv-Q Send-Q Local:Port Peer:Port; for a listener Send-Q is the backlog
    assert [(r[0], r[2], r[3]) for r in rows] == [("LISTEN", "37", f"127.0.0.1:{pp.port}")], out


# ============================================================ console commands

def test_pause_waits_for_the_running_transaction_then_holds_new_queries_until_resume(pgpulse,
                                                                                    pg):
    as_app(pg, "DROP TABLE IF EXISTS pctl_pause; CREATE TABLE pctl_pause (x int)")
    pp = start(pgpulse)
    running = connect(pp)
    running.execute("INSERT INTO pctl_pause VALUES (1)")

    pause = background_admin(pp, "PAUSE")
    assert_not_done_yet(pause, "PAUSE while a transaction runs")
    # the running transaction goes on and commits
    running.execute("INSERT INTO pctl_pause VALUES (2)")
    running.commit()
    assert pause.ok() == "PAUSE"
    assert pg.query("SELECT count(*) FROM pctl_pause", dbname="pctl") == [(2,)]
    wait_until(lambda: n_backends(pg) == 0, 10, "PAUSE to close the idle servers")

    held = background_query(pp, "SELECT 'after resume'")
    wait_until(lambda: cl_waiting(pp) == 1, 10, "a new query to wait while paused")
    assert_not_done_yet(held, "a query while paused")
    assert pp.command("RESUME") == "RESUME"
    assert held.ok() == ("after resume",)


def test_a_client_waiting_through_a_pause_is_not_failed_by_query_wait_timeout(pgpulse):
    pp = start(pgpulse, query_wait_timeout=1)
    client = thread_conn(pp)
    client.execute("SELECT 1")
    assert pp.command("PAUSE pctl") == "PAUSE"
    held = Background(run_then_close(client, "SELECT 'after resume'"))
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the query to wait while paused")
    assert_not_done_yet(held, "a query waiting through PAUSE (query_wait_timeout = 1)", 1.6)
    assert pp.command("RESUME pctl") == "RESUME"
    assert held.ok() == ("after resume",)


def test_pause_of_one_database_leaves_the_other_serving(pgpulse):
    pp = start(pgpulse)
    paused = thread_conn(pp, "pctl")
    other = connect(pp, dbname="pctl2", autocommit=True)
    paused.execute("SELECT 1")
    assert pp.command("PAUSE pctl") == "PAUSE"
    assert (db_row(pp, "pctl")["paused"], db_row(pp, "pctl2")["paused"]) == (1, 0)

    held = Background(run_then_close(paused, "SELECT 'pctl'"))
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the pctl query to wait")
    assert other.execute("SELECT 'pctl2'").fetchone() == ("pctl2",)
    assert not held.done
    assert pp.command("RESUME pctl") == "RESUME"
    assert held.ok() == ("pctl",)
    assert db_row(pp, "pctl")["paused"] == 0


def test_suspend_holds_queries_and_new_connections_until_resume(pgpulse):
    pp = start(pgpulse)
    client = thread_conn(pp)
    client.execute("SELECT 1")
    assert pp.command("SUSPEND") == "SUSPEND"

    held = Background(run_then_close(client, "SELECT 'held'"))
    newcomer = background_query(pp, "SELECT 'newcomer'")
    assert_not_done_yet(held, "a query while suspended", 0.8)
    assert not newcomer.done, f"a new connection got through while suspended: " \
                              f"{newcomer.result!r} {newcomer.error!r}"
    assert pp.command("RESUME") == "RESUME"
    assert held.ok() == ("held",)
    assert newcomer.ok() == ("newcomer",)


def test_suspend_drops_a_client_that_does_not_read_after_suspend_timeout(pgpulse, pg):
    pp = start(pgpulse, **trust_settings(suspend_timeout=1))
    bystander = connect(pp, autocommit=True)
    bystander.execute("SELECT 1")
    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.settimeout(10)
    stuck.connect(("127.0.0.1", pp.port))
    try:
        assert raw_startup(stuck, database="pctl") == ("ok", None)
        # a large result the client never reads: data stays queued in pgpulse
        stuck.sendall(query_message("SELECT repeat('x', 20000000)"))
        blocked = lambda: pg.query("SELECT count(*) FROM pg_stat_activity WHERE datname = 'pctl'"
                                   " AND wait_event = 'ClientWrite'")[0][0] == 1
        # PostgreSQL can be in ClientWrite for a moment only because pgpulse reads
        # slowly (under ASan, on a loaded machine); the test needs pgpulse itself
        # stuck with unsent bytes, which is when the wait lasts: a second, sampled.
        def blocked_for_a_second():
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if not blocked():
                    return False
                time.sleep(0.1)  # sampling a state that must hold throughout
            return True
        wait_until(blocked_for_a_second, 20, "PostgreSQL to stay blocked on writing the unread result")
        t0 = time.monotonic()
        assert pp.command("SUSPEND") == "SUSPEND"
        elapsed = time.monotonic() - t0
        assert 0.8 <= elapsed < 6, f"SUSPEND answered after {elapsed:.2f}s with " \
                                   "suspend_timeout = 1 and a client that does not read"
        # that client's connection was dropped: it reads to the end, then EOF
        stuck.settimeout(5)
        while stuck.recv(1 << 20):
            pass
    finally:
        stuck.close()
    assert pp.command("RESUME") == "RESUME"
    assert bystander.execute("SELECT 2").fetchone() == (2,)


def test_show_state_says_suspended_while_suspended(pgpulse):
    pp = start(pgpulse)
    assert pp.command("SUSPEND") == "SUSPEND"
    state = {r["key"]: r["value"] for r in pp.show("STATE")}
    pp.command("RESUME")
    assert state["suspended"] == "yes", state


def test_disable_refuses_new_clients_of_that_database_and_enable_accepts_them_again(pgpulse):
    pp = start(pgpulse)
    existing = connect(pp, dbname="pctl", autocommit=True)
    existing.execute("SELECT 1")
    assert pp.command("DISABLE pctl") == "DISABLE"
    assert (db_row(pp, "pctl")["disabled"], db_row(pp, "pctl2")["disabled"]) == (1, 0)

    with pytest.raises(psycopg.OperationalError, match="disabled"):
        thread_conn(pp, "pctl").close()
    assert existing.execute("SELECT 'still here'").fetchone() == ("still here",)
    with thread_conn(pp, "pctl2") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)

    assert pp.command("ENABLE pctl") == "ENABLE"
    assert db_row(pp, "pctl")["disabled"] == 0
    with thread_conn(pp, "pctl") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_reconnect_gives_a_new_backend_after_the_running_transaction(pgpulse, pg):
    pp = start(pgpulse, default_pool_size=1)
    conn, old_pid = hold_transaction(pp)
    assert pp.command("RECONNECT pctl") == "RECONNECT"
    # the running transaction stays on its backend
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == old_pid
    conn.commit()
    new_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    conn.commit()
    assert new_pid != old_pid
    wait_until(lambda: old_pid not in backend_pids(pg), 10, "the old backend to go")
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == new_pid


def test_kill_drops_the_databases_clients_and_servers_and_new_clients_wait_for_resume(pgpulse,
                                                                                      pg):
    pp = start(pgpulse)
    victim = connect(pp, dbname="pctl", autocommit=True)
    victim.execute("SELECT 1")
    other = connect(pp, dbname="pctl2", autocommit=True)
    other.execute("SELECT 1")
    assert pp.command("KILL pctl") == "KILL"

    with pytest.raises(psycopg.OperationalError):
        victim.execute("SELECT 1")
    wait_until(lambda: n_backends(pg, "pctl") == 0, 10, "pctl's backends to be closed")
    assert other.execute("SELECT 'pctl2'").fetchone() == ("pctl2",)

    newcomer = background_query(pp, "SELECT 'after resume'")
    wait_until(lambda: cl_waiting(pp) == 1, 10, "a new pctl client to wait")
    assert_not_done_yet(newcomer, "a new pctl client after KILL")
    assert n_backends(pg, "pctl") == 0
    assert pp.command("RESUME pctl") == "RESUME"
    assert newcomer.ok() == ("after resume",)


def test_kill_client_closes_that_client_only(pgpulse):
    pp = start(pgpulse)
    victim = connect(pp, autocommit=True, application_name="victim")
    bystander = connect(pp, autocommit=True, application_name="bystander")
    victim.execute("SELECT 1")
    [row] = [r for r in pp.show("CLIENTS") if r["application_name"] == "victim"]
    assert pp.command(f"KILL_CLIENT {row['id']}") == "KILL_CLIENT"
    with pytest.raises(psycopg.OperationalError):
        victim.execute("SELECT 1")
    assert [r["application_name"] for r in clients_of(pp, "app")] == ["bystander"]
    assert bystander.execute("SELECT 1").fetchone() == (1,)


def test_wait_close_returns_once_the_servers_of_reconnect_are_gone(pgpulse, pg):
    pp = start(pgpulse, default_pool_size=1)
    conn, old_pid = hold_transaction(pp)
    assert pp.command("RECONNECT pctl") == "RECONNECT"
    wait_close = background_admin(pp, "WAIT_CLOSE pctl")
    assert_not_done_yet(wait_close, "WAIT_CLOSE while the old server serves a transaction")
    conn.commit()
    assert wait_close.ok() == "WAIT_CLOSE"
    assert old_pid not in [s["remote_pid"] for s in pp.show("SERVERS")]
    wait_until(lambda: old_pid not in backend_pids(pg), 10, "the old backend to go")
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != old_pid


def test_shutdown_wait_for_clients_exits_when_the_last_client_leaves(pgpulse):
    pp = start(pgpulse)
    client = connect(pp, autocommit=True)
    client.execute("SELECT 1")
    console = pp.admin()
    assert console.execute("SHUTDOWN WAIT_FOR_CLIENTS").statusmessage == "SHUTDOWN"
    console.close()
    with pytest.raises(psycopg.OperationalError):
        thread_conn(pp).close()
    # the connected client is still served, and pgpulse waits for it
    assert client.execute("SELECT 'still served'").fetchone() == ("still served",)
    assert pp.running
    client.close()
    assert pp.wait_exit(10) == 0


def test_set_default_pool_size_serves_a_waiting_client_without_a_release(pgpulse, pg):
    pp = start(pgpulse, default_pool_size=1, query_wait_timeout=30)
    holder, pid = hold_transaction(pp)
    waiter = background_query(pp)
    wait_until(lambda: cl_waiting(pp) == 1, 10, "the second client to wait")
    assert pp.command("SET default_pool_size = 2") == "SET"
    # served while the holder still holds its server
    assert waiter.ok()[0] != pid
    assert {r["key"]: r["value"] for r in pp.show("CONFIG")}["default_pool_size"] == "2"
    assert n_backends(pg) == 2
    holder.commit()


def test_sigusr1_pauses_new_queries_and_sigusr2_resumes_them(pgpulse, pg):
    pp = start(pgpulse)
    client = thread_conn(pp)
    client.execute("SELECT 1")
    mark = pp.log_mark()
    pp.signal(signal.SIGUSR1)
    pp.wait_log(r"SIGUSR1", since=mark)
    held = Background(run_then_close(client, "SELECT 'resumed'"))
    wait_until(lambda: cl_waiting(pp) == 1, 10, "a query to wait while paused")
    wait_until(lambda: n_backends(pg) == 0, 10, "the paused pool's idle server to be closed")
    assert_not_done_yet(held, "a query after SIGUSR1")
    pp.signal(signal.SIGUSR2)
    assert held.ok() == ("resumed",)


def test_sigusr1_closes_the_servers_once_the_running_transaction_ends(pgpulse, pg):
    pp = start(pgpulse)
    running, _ = hold_transaction(pp)
    mark = pp.log_mark()
    pp.signal(signal.SIGUSR1)
    pp.wait_log(r"SIGUSR1", since=mark)
    # the running transaction finishes; then pgpulse lets go of PostgreSQL,
    # as after the PAUSE command
    assert running.execute("SELECT 1").fetchone() == (1,)
    running.commit()
    held = background_query(pp, "SELECT 'resumed'")
    wait_until(lambda: cl_waiting(pp) == 1, 10, "a new query to wait while paused")
    wait_until(lambda: n_backends(pg) == 0, 5,
               "the paused pool's servers to be closed once the transaction ended")
    pp.signal(signal.SIGUSR2)
    assert held.ok() == ("resumed",)


def test_reload_with_a_smaller_pool_size_lets_running_transactions_finish(pgpulse, pg):
    as_app(pg, "DROP TABLE IF EXISTS pctl_reload; CREATE TABLE pctl_reload (x int)")
    settings = dict(overflow_idle_timeout=0.5, server_idle_timeout=0, query_wait_timeout=30)
    pp = start(pgpulse, default_pool_size=2, **settings)
    a, b = connect(pp), connect(pp)
    a.execute("INSERT INTO pctl_reload VALUES (1)")
    b.execute("INSERT INTO pctl_reload VALUES (2)")
    assert n_backends(pg) == 2

    pp.write_config(make_ini(default_pool_size=1, **settings))
    assert pp.command("RELOAD") == "RELOAD"
    a.execute("INSERT INTO pctl_reload VALUES (3)")
    b.execute("INSERT INTO pctl_reload VALUES (4)")
    a.commit()
    b.commit()
    assert pg.query("SELECT count(*) FROM pctl_reload", dbname="pctl") == [(4,)]

    # afterwards the pool shrinks to the new size and serves one at a time
    wait_until(lambda: n_backends(pg) == 1, 10, "the pool to shrink to the new size")
    holder, _ = hold_transaction(pp)
    waiter = background_query(pp)
    wait_until(lambda: cl_waiting(pp) == 1, 10, "a second client to wait with a pool of one")
    holder.commit()
    waiter.ok()


def test_reload_that_removes_a_database_refuses_its_new_clients(pgpulse):
    pp = start(pgpulse, **trust_settings())
    assert raw_login(pp.port, "app", "pctl2")[0] == "ok"
    pp.write_config(make_ini({"pctl": ""}, **trust_settings()))
    assert pp.command("RELOAD") == "RELOAD"
    kind, fields = raw_login(pp.port, "app", "pctl2")
    assert kind == "error", "a client of the removed database was let in"
    assert fields["C"] == "3D000", fields
    assert "pctl2" in fields["M"], fields
    assert "pctl2" not in [r["name"] for r in pp.show("DATABASES")]
    with thread_conn(pp, "pctl") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_reload_that_changes_dbname_moves_the_next_transaction_to_the_new_database(pgpulse):
    dbs = {"moving": "dbname=pctl"}
    pp = start(pgpulse, dbs, default_pool_size=1)
    conn = connect(pp, dbname="moving")
    assert conn.execute("SELECT current_database()").fetchone() == ("pctl",)

    mark = pp.log_mark()
    pp.write_config(make_ini({"moving": "dbname=pctl2"}, default_pool_size=1))
    pp.reload()  # SIGHUP
    pp.wait_log(r"configuration reloaded", since=mark)
    # the running transaction stays where it began
    assert conn.execute("SELECT current_database()").fetchone() == ("pctl",)
    conn.commit()
    assert conn.execute("SELECT current_database()").fetchone() == ("pctl2",)
    conn.commit()


def test_show_pools_and_show_databases_end_with_pgpulse_own_columns(pgpulse):
    pp = start(pgpulse)
    connect(pp, autocommit=True).execute("SELECT 1")
    console = pp.admin()
    pools = [d.name for d in console.execute("SHOW POOLS").description]
    assert pools[-4:] == ["pool_mode", "load_balance_hosts", "sv_overflow", "sv_reserve"], pools
    databases = [d.name for d in console.execute("SHOW DATABASES").description]
    assert databases[-4:] == ["overflow_pool_size", "overflow_in_use", "reserve_in_use",
                              "target_session_attrs"], databases


# ------------------------------------------------------------ server_fast_close

def fast_close_sessions(pgpulse, pg, fast_close):
    """Session mode: `idle` between transactions and `busy` inside one when
    RECONNECT marks both servers for replacement."""
    # a third server for the client that logs in afterwards
    pp = start(pgpulse, pool_mode="session", default_pool_size=3, server_fast_close=fast_close)
    idle = connect(pp, autocommit=True)
    idle_pid = idle.execute("SELECT pg_backend_pid()").fetchone()[0]
    busy, busy_pid = hold_transaction(pp)
    assert pp.command("RECONNECT pctl") == "RECONNECT"
    return pp, idle, idle_pid, busy, busy_pid


def test_server_fast_close_ends_a_session_between_transactions_and_closes_its_client(pgpulse, pg, dbs):
    pp, idle, idle_pid, busy, busy_pid = fast_close_sessions(pgpulse, pg, 1)
    # the idle session ends at once: its backend goes, its client gets PgBouncer's reason
    wait_until(lambda: idle_pid not in backend_pids(pg), 10, "the idle session's backend to go")
    with pytest.raises(psycopg.OperationalError, match="server_fast_close"):
        idle.execute("SELECT 1")
    # the session inside a transaction keeps its server until the transaction ends
    assert busy.execute("SELECT pg_backend_pid()").fetchone()[0] == busy_pid
    busy.commit()
    wait_until(lambda: busy_pid not in backend_pids(pg), 10, "the busy session's backend to go")
    with pytest.raises(psycopg.OperationalError, match="server_fast_close"):
        busy.execute("SELECT 1")
    assert "server_fast_close: S-" in pp.log()
    # a new client is served by a new server
    assert connect(pp, autocommit=True).execute("SELECT 1").fetchone() == (1,)


def test_without_server_fast_close_a_session_keeps_its_old_server_until_the_client_leaves(pgpulse, pg, dbs):
    pp, idle, idle_pid, busy, busy_pid = fast_close_sessions(pgpulse, pg, 0)
    busy.commit()
    # janitor turns pass (200 ms each) while a new client logs in and queries
    assert connect(pp, autocommit=True).execute("SELECT 1").fetchone() == (1,)
    assert idle.execute("SELECT pg_backend_pid()").fetchone()[0] == idle_pid
    assert busy.execute("SELECT pg_backend_pid()").fetchone()[0] == busy_pid
