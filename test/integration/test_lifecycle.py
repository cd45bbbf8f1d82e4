"""Trustworthy under faults (issue 11): clients that leave at awkward
moments, cancels that reach PostgreSQL late, a PostgreSQL that dies in the
middle of a result, console commands pipelined behind PAUSE, databases
made by the `*` fallback, and a randomized run of hundreds of client
lifecycles with PostgreSQL restarted underneath.

What a test checks is what an operator would notice: the counts of SHOW
LISTS / SHOW CLIENTS / SHOW POOLS against the connections that really
exist (the kernel's socket table, pg_stat_activity), the limits, the
messages a client receives byte for byte, and when pgpulse exits.

Most tests speak the protocol on raw sockets (RawConn, pgpulse_harness)
against a pgpulse with auth_type = trust, so that a client can leave
between any two messages.  Faults PostgreSQL does not produce on cue (a
cancel that is slow to arrive, a connection cut in the middle of a
DataRow) come from TcpProxy, a proxy the test puts in front of
PostgreSQL.  The module makes a database of its own, lifecycle (owned by
app), so that the backends it counts are its own.
"""

import os
import random
import re
import signal
import socket
import struct
import threading
import time

import psycopg
import pytest

from pgpulse_harness import build_ini, RawConn, ServerError, TcpProxy, cpu_seconds, error_fields, \
    message, query_message, split_messages, tcp_sockets, wait_eof, wait_until

DB = "lifecycle"
USERLIST = {"app": "app_pw", "md5user": "md5_pw", "admin": "admin_pw"}

BASE_SETTINGS = {
    "listen_addr": "127.0.0.1",
    "listen_port": "{port}",
    "unix_socket_dir": "{dir}",
    "auth_type": "trust",
    "auth_file": "{auth_file}",
    "admin_users": "admin",
    "pool_mode": "transaction",
    "default_pool_size": "2",
}


def make_ini(dbs=None, users=None, **settings):
    """build_ini with this file's databases and settings as defaults."""
    merged = dict(BASE_SETTINGS)
    merged.update({k: str(v) for k, v in settings.items()})
    return build_ini({DB: ""} if dbs is None else dbs, users, merged)


def start(pgpulse, dbs=None, users=None, **settings):
    return pgpulse(make_ini(dbs, users, **settings), USERLIST)


def via(proxy):
    """A [databases] entry for DB through `proxy`."""
    return {DB: f"host=127.0.0.1 port={proxy.port} dbname={DB}"}


# ------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def lifecycle_db(pg):
    pg.query(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.query(f"CREATE DATABASE {DB} OWNER app")
    yield DB
    pg.query(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


@pytest.fixture(autouse=True)
def no_leftover_backends(pg, lifecycle_db):
    pg.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
             " WHERE datname = %s AND pid <> pg_backend_pid()", (DB,))
    wait_until(lambda: not pg.backends(dbname=DB), 10, "leftover lifecycle backends to go")
    yield


@pytest.fixture
def proxy(pg):
    p = TcpProxy(pg.host, pg.port)
    yield p
    p.close()


@pytest.fixture
def raw():
    """raw(port, **kw) -> RawConn, closed (abruptly) at teardown if the test
    did not."""
    conns = []

    def open_(port, **kw):
        kw.setdefault("database", DB)
        c = RawConn(port, **kw)
        conns.append(c)
        return c

    yield open_
    for c in conns:
        try:
            c.sock.close()
        except OSError:
            pass


# ------------------------------------------------------------ helpers

def lists(pp):
    return {r["list"]: r["items"] for r in pp.show("LISTS")}


def pool_rows(pp, database=DB):
    return [r for r in pp.show("POOLS") if r["database"] == database]


def client_id(pp, conn):
    """SHOW CLIENTS id of a raw connection, found by its port."""
    port = conn.sock.getsockname()[1]
    rows = [r for r in pp.show("CLIENTS") if r["port"] == port]
    assert len(rows) == 1, f"no single SHOW CLIENTS row for port {port}: {rows}"
    return rows[0]["id"]


def pgpulse_sockets(pp, state=None, local_port=None, remote_port=None):
    return [s for s in tcp_sockets(pp.pid)
            if (state is None or s["state"] == state)
            and (local_port is None or s["local_port"] == local_port)
            and (remote_port is None or s["remote_port"] == remote_port)]


def client_sockets_settled(pp):
    """pgpulse has closed every client connection whose client left (none
    of its client sockets sits in CLOSE_WAIT)."""
    return not pgpulse_sockets(pp, "CLOSE_WAIT", local_port=pp.port)


def in_transaction_backends(pg):
    return [b for b in pg.backends(dbname=DB) if b["state"] != "idle"]


def leave_inside_transactions(pp, n=10):
    """n clients each log in, run BEGIN and close the socket without a
    word: each leaves while its server is in a transaction."""
    for _ in range(n):
        c = RawConn(pp.port, database=DB)
        c.query("BEGIN")
        c.abort()


def wait_churn_settled(pp, pg):
    """pgpulse has dealt with every client that left: their sockets are
    closed and no backend is left in a transaction."""
    wait_until(lambda: client_sockets_settled(pp), 10, "pgpulse to close the departed clients")
    wait_until(lambda: not in_transaction_backends(pg), 10,
               "the departed clients' transactions to end on PostgreSQL")


def login(port, **kw):
    """("ok", RawConn) or ("error", sqlstate) for a raw login."""
    kw.setdefault("database", DB)
    try:
        return "ok", RawConn(port, **kw)
    except ServerError as e:
        return "error", e.sqlstate


def assert_refused(port, sqlstate="53300", **kw):
    outcome, value = login(port, **kw)
    if outcome == "ok":
        value.close()
    assert (outcome, value) == ("error", sqlstate), \
        f"a login over the limit should get {sqlstate}; got {outcome} {value!r}"


def fill_up(port, n, **kw):
    """n logins that must all succeed; returns the connections."""
    conns = []
    for i in range(n):
        outcome, value = login(port, **kw)
        assert outcome == "ok", f"login {i + 1} of {n} allowed was refused with {value}"
        conns.append(value)
    return conns


def assert_still_running(pp, seconds=1.0, what="pgpulse"):
    # A fixed wait only shows that something does NOT happen.
    time.sleep(seconds)
    assert pp.running, f"{what} exited (status {pp.returncode}) with a client still connected" \
                       f"\n{pp.log()[-2000:]}"


def poll_for(predicate, seconds):
    """Whether predicate() becomes true within `seconds`; unlike wait_until
    not failing.  Gives a known bug its window; never used as the
    synchronization a test relies on."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def wait_for_value(fn, expected, timeout, what):
    """Poll fn() until it returns `expected`; fail naming the last value."""
    last = []

    def check():
        last[:] = [fn()]
        return last[0] == expected
    try:
        wait_until(check, timeout, what)
    except AssertionError:
        raise AssertionError(f"{what}: expected {expected!r}, still {last[0]!r} after "
                             f"{timeout:g}s") from None


def messages_of(data):
    msgs, tail = split_messages(data)
    return msgs, tail


def errors_in(msgs):
    return [error_fields(body) for t, body in msgs if t == "E"]


# ============================================================ clients that leave

def test_clients_that_leave_inside_transactions_are_counted_out_once_in_show_lists(pgpulse, pg, raw):
    pp = start(pgpulse)
    stay = raw(pp.port)
    stay.query("SELECT 1")
    leave_inside_transactions(pp, 10)
    wait_churn_settled(pp, pg)

    expected = 2  # the client that stayed and the console asking
    rows = pp.show("CLIENTS")
    assert len(rows) == expected, rows
    counts = lists(pp)
    assert (counts["used_clients"], counts["login_clients"]) == (expected, 0), \
        f"SHOW LISTS after 10 clients left inside a transaction: {counts}; " \
        f"connected are the console and one client"
    assert sum(r["cl_active"] + r["cl_waiting"] for r in pool_rows(pp)) == 1, pool_rows(pp)
    assert stay.query("SELECT 'still here'") == [["still here"]]


def test_max_client_conn_still_holds_after_clients_left_inside_transactions(pgpulse, pg):
    pp = start(pgpulse, max_client_conn=5)
    pp.show("LISTS")  # the console is one of the five
    leave_inside_transactions(pp, 10)
    wait_churn_settled(pp, pg)
    held = fill_up(pp.port, 4)
    try:
        assert_refused(pp.port)
    finally:
        for c in held:
            c.close()


@pytest.mark.parametrize("limit", ["max_user_client_connections", "max_db_client_connections"])
def test_per_user_and_per_database_client_caps_still_hold_after_clients_left(pgpulse, pg, limit):
    pp = start(pgpulse, **{limit: 2})
    leave_inside_transactions(pp, 10)
    wait_churn_settled(pp, pg)
    held = fill_up(pp.port, 2)
    try:
        assert_refused(pp.port)
    finally:
        for c in held:
            c.close()


def test_sigterm_after_clients_left_inside_transactions_waits_for_the_client_still_connected(pgpulse,
                                                                                     pg, raw):
    pp = start(pgpulse)
    leave_inside_transactions(pp, 10)
    wait_churn_settled(pp, pg)
    stay = raw(pp.port)
    stay.query("SELECT 1")
    pp.close_connections()
    wait_until(lambda: client_sockets_settled(pp), 10, "pgpulse to close the console")

    pp.signal(signal.SIGTERM)
    assert_still_running(pp, 1.0, "pgpulse, after SIGTERM,")
    assert stay.query("SELECT 'served after SIGTERM'") == [["served after SIGTERM"]]
    stay.close()
    assert pp.wait_exit(10) == 0


@pytest.mark.parametrize("pipelined", [False, True], ids=["after-begin", "with-begin"])
def test_terminate_inside_a_transaction_gets_no_error_message(pgpulse, raw, pipelined):
    pp = start(pgpulse)
    c = raw(pp.port)
    if pipelined:
        c.send(query_message("BEGIN") + message("X"))
    else:
        c.query("BEGIN")
        c.send(message("X"))
    msgs, tail = messages_of(c.read_to_eof())
    assert not errors_in(msgs), f"a client that said Terminate was sent {errors_in(msgs)}"
    assert [t for t, _ in msgs] in ([], ["C", "Z"]), msgs
    assert tail == b""


def test_idle_transaction_timeout_sends_exactly_one_fatal_then_closes(pgpulse, raw):
    pp = start(pgpulse, idle_transaction_timeout=1)
    c = raw(pp.port)
    c.query("BEGIN")
    msgs, tail = messages_of(c.read_to_eof(timeout=15))
    errors = errors_in(msgs)
    assert [e.get("C") for e in errors] == ["25P03"], \
        f"expected one FATAL 25P03 before EOF, got {errors}"
    assert errors[0].get("S") == "FATAL", errors
    assert [t for t, _ in msgs] == ["E"], msgs
    assert tail == b""


# ============================================================ late cancels

LOCK_KEY = 741100


def lock_waiters(pg):
    return [b for b in pg.backends(dbname=DB)
            if b["state"] == "active" and "pg_advisory_xact_lock" in (b["query"] or "")]


def running(pg, fragment):
    return [b for b in pg.backends(dbname=DB)
            if b["state"] == "active" and fragment in (b["query"] or "")]


def run_late_cancel_scenario(pp, pg, proxy, raw, send_cancel, b_sql, requester=True):
    """Client A's query waits on a lock; a cancel for it is sent (by
    send_cancel(a), or by pgpulse itself) and held in the proxy; B queues
    behind A on the pool's single server; A's query then finishes normally,
    and only after that does the cancel reach PostgreSQL.  Returns
    (B's messages, the cancel socket or None)."""
    a, b = raw(pp.port), raw(pp.port)
    a.query("SELECT 1")
    b.query("SELECT 1")
    proxy.hold_cancels = True
    with pg.connect(dbname=DB, autocommit=True) as locker:
        locker.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        a.send(query_message(f"SELECT pg_advisory_xact_lock({LOCK_KEY}), 'a done'"))
        wait_until(lambda: lock_waiters(pg), 10, "A's query to wait on the lock")
        canceller = send_cancel(a)
        wait_until(lambda: proxy.cancels_seen == 1, 10, "the cancel to leave pgpulse")
        row = pool_rows(pp)[0]
        assert (row["cl_active_cancel_req"], row["sv_active_cancel"]) == (int(requester), 1), row
        b.send(query_message(b_sql))
        wait_until(lambda: sum(r["cl_waiting"] for r in pool_rows(pp)) == 1, 10,
                   "B to wait for the server A uses")
        locker.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    a_msgs = a.until_ready()
    assert [t for t, _ in a_msgs if t in "DE"] in (["D"], ["E"]), a_msgs
    # A's server waits for the cancel in flight: SHOW POOLS and SHOW SERVERS say so
    wait_until(lambda: pool_rows(pp)[0]["sv_being_canceled"] == 1, 10, "A's server to wait for its cancel")
    assert [r["state"] for r in pp.show("SERVERS") if r["database"] == DB] == ["being_canceled"]
    # With the bug, B gets A's server at once and is running when the cancel
    # lands; give it that chance before the cancel goes on to PostgreSQL.
    poll_for(lambda: running(pg, "pg_sleep"), 1.5)
    proxy.release_cancels()
    b_msgs = b.until_ready()
    return b_msgs, canceller


def test_a_late_cancel_does_not_cancel_the_next_clients_query(pgpulse, pg, proxy, raw):
    pp = start(pgpulse, dbs=via(proxy), default_pool_size=1, cancel_wait_timeout=30)
    b_msgs, canceller = run_late_cancel_scenario(
        pp, pg, proxy, raw, lambda a: a.cancel(pp.port), "SELECT pg_sleep(1), 'b done'")
    try:
        assert not errors_in(b_msgs), \
            f"B's query failed: A's cancel, delivered after A's query ended, hit B: " \
            f"{errors_in(b_msgs)}"
        assert [t for t, _ in b_msgs] == ["T", "D", "C", "Z"], b_msgs
        # the client that sent the cancel sees it closed once it is done
        wait_eof(canceller, 10)
    finally:
        canceller.close()


def test_a_late_query_timeout_cancel_does_not_cancel_the_next_clients_query(pgpulse, pg, proxy,
                                                                           raw):
    pp = start(pgpulse, dbs=via(proxy), default_pool_size=1, query_timeout=1,
               cancel_wait_timeout=30)
    # pgpulse sends this cancel itself, once A's query has run for a second
    b_msgs, _ = run_late_cancel_scenario(pp, pg, proxy, raw, lambda a: None,
                                         "SELECT pg_sleep(0.6), 'b done'", requester=False)
    assert not errors_in(b_msgs), \
        f"B's query failed: the query_timeout cancel of A's query, delivered after it " \
        f"ended, hit B: {errors_in(b_msgs)}"
    assert [t for t, _ in b_msgs] == ["T", "D", "C", "Z"], b_msgs


# ============================================================ console pipelines

def test_kill_client_pipelined_behind_pause_does_not_stop_the_event_loop(pgpulse, pg, raw):
    pp = start(pgpulse, default_pool_size=1)
    holder = raw(pp.port)
    holder.query("BEGIN")
    holder.query("SELECT 1")  # holds the only server: PAUSE will wait
    before = raw(pp.port, user="admin", database="pgpulse")
    pauser = raw(pp.port, user="admin", database="pgpulse")
    after = [raw(pp.port, user="admin", database="pgpulse") for _ in range(3)]
    victims = [before] + after[:2]
    ids = [client_id(pp, c) for c in victims]
    pauser.send(query_message("PAUSE")
                + b"".join(query_message(f"KILL_CLIENT {i}") for i in ids))
    wait_until(lambda: [r for r in pp.show("DATABASES") if r["name"] == DB][0]["paused"], 10,
               "PAUSE to begin")
    holder.query("COMMIT")  # PAUSE answers now, and the KILL_CLIENTs run behind it

    tags = []
    try:
        for _ in range(1 + len(ids)):
            tags += [body.rstrip(b"\0").decode() for t, body in pauser.until_ready()
                     if t == "C"]
    except (OSError, EOFError) as e:
        pytest.fail(f"the console got {tags} then {e!r}")
    assert tags == ["PAUSE"] + ["KILL_CLIENT"] * len(ids), tags
    for c in victims:
        wait_eof(c.sock, 10)

    # pgpulse still answers: a new console logs in and is served
    try:
        with RawConn(pp.port, user="admin", database="pgpulse", timeout=5) as console:
            assert console.query("RESUME") == []
    except (OSError, EOFError) as e:
        state = f"running, {cpu_seconds(pp.pid):.1f}s of CPU so far" if pp.running \
            else f"exited with status {pp.returncode}"
        pytest.fail(f"pgpulse no longer serves a new login after the pipelined "
                    f"KILL_CLIENT: {e!r} (pgpulse {state})")
    # and does not spin
    t0 = cpu_seconds(pp.pid)
    time.sleep(2)  # letting time pass: CPU used while idle
    used = cpu_seconds(pp.pid) - t0
    assert used < 0.5, f"pgpulse used {used:.2f}s of CPU in 2s while idle"
    assert holder.query("SELECT 'after resume'") == [["after resume"]]
    for c in after[2:]:
        assert c.query("SHOW VERSION")


# ============================================================ PostgreSQL dies mid-result

ROW_LEN = 100000
ROW_DESC_LEN = 1 + 4 + 2 + len("repeat\0") + 18           # 'T' with one column
DATA_ROW = b"D" + struct.pack("!IHi", 4 + 2 + 4 + ROW_LEN, 1, ROW_LEN) + b"x" * ROW_LEN
BIG_QUERY = f"SELECT repeat('x', {ROW_LEN}) FROM generate_series(1, 200)"


def read_cut_result(pp, proxy, raw, cut_at):
    c = raw(pp.port)
    c.query("SELECT 1")  # the server is linked and idle: nothing else comes from it
    proxy.cut_after(cut_at)
    c.send(query_message(BIG_QUERY))
    return messages_of(c.read_to_eof(timeout=20))


def assert_whole_rows(msgs, tail):
    assert msgs and msgs[0][0] == "T", msgs[:1]
    for i, (t, body) in enumerate(msgs[1:], 1):
        if t == "E":
            assert i == len(msgs) - 1, f"messages after the ErrorResponse: {msgs[i + 1:][:3]}"
            break
        assert t == "D" and b"D" + struct.pack("!I", len(body) + 4) + body == DATA_ROW, \
            f"message {i} is not the expected DataRow: {t!r}, {len(body)} bytes, " \
            f"{body[:40]!r}...{body[-80:]!r}"
    assert DATA_ROW.startswith(tail), \
        f"the bytes after the last whole message are not the start of a DataRow: " \
        f"{len(tail)} bytes ending {tail[-120:]!r}"


def test_postgresql_dying_mid_datarow_closes_the_client_without_a_garbled_message(pgpulse,
                                                                                   proxy, raw):
    pp = start(pgpulse, dbs=via(proxy))
    cut_at = ROW_DESC_LEN + len(DATA_ROW) + 50000  # in the middle of the second row
    msgs, tail = read_cut_result(pp, proxy, raw, cut_at)
    assert_whole_rows(msgs, tail)
    assert tail, "the client got the half row's first bytes, then EOF"
    assert not errors_in(msgs), errors_in(msgs)


def test_postgresql_dying_between_rows_sends_the_client_a_readable_error(pgpulse, proxy, raw):
    pp = start(pgpulse, dbs=via(proxy))
    msgs, tail = read_cut_result(pp, proxy, raw, ROW_DESC_LEN + len(DATA_ROW))
    assert_whole_rows(msgs, tail)
    assert tail == b""
    assert [t for t, _ in msgs] == ["T", "D", "E"], [t for t, _ in msgs]
    assert errors_in(msgs)[0]["C"].startswith("08"), errors_in(msgs)


# ============================================================ the * fallback

FALLBACK = {"*": ""}


def test_failed_logins_through_the_fallback_leave_no_databases_behind(pgpulse):
    pp = start(pgpulse, dbs=FALLBACK, auth_type="scram-sha-256")
    names = [f"lifecycle_nosuch_{i}" for i in range(50)]
    for name in names:
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(pp.dsn(dbname=name, password="wrong"), connect_timeout=10).close()
    left = [r["name"] for r in pp.show("DATABASES") if r["name"].startswith("lifecycle_nosuch")]
    assert not left, f"{len(left)} databases of failed logins in SHOW DATABASES: {left[:5]}..."
    pools = [r for r in pp.show("POOLS") if r["database"].startswith("lifecycle_nosuch")]
    assert not pools, f"{len(pools)} pools of failed logins in SHOW POOLS"


def test_a_fallback_database_goes_away_after_autodb_idle_timeout(pgpulse, pg, raw):
    pp = start(pgpulse, dbs=FALLBACK, autodb_idle_timeout=1)
    c = raw(pp.port)
    assert c.query("SELECT current_database()") == [[DB]]
    assert DB in [r["name"] for r in pp.show("DATABASES")]
    c.close()
    wait_until(lambda: DB not in [r["name"] for r in pp.show("DATABASES")], 10,
               "the unused fallback database to leave SHOW DATABASES")
    assert not pool_rows(pp), pool_rows(pp)
    wait_until(lambda: not pg.backends(dbname=DB), 10, "its server connections to close")
    # and it comes back when asked for
    c = raw(pp.port)
    assert c.query("SELECT 1") == [["1"]]


def test_one_visit_to_template1_through_the_fallback_does_not_block_create_database(pgpulse, pg,
                                                                                    raw):
    pp = start(pgpulse, dbs=FALLBACK, min_pool_size=2, autodb_idle_timeout=1)
    c = raw(pp.port, database="template1")
    assert c.query("SELECT 1") == [["1"]]
    c.close()
    wait_until(lambda: not pg.backends(dbname="template1"), 10,
               "pgpulse's sessions on template1 to end after its client left")
    pg.query("DROP DATABASE IF EXISTS lifecycle_copy")
    try:
        pg.query("CREATE DATABASE lifecycle_copy TEMPLATE template1")
    finally:
        pg.query("DROP DATABASE IF EXISTS lifecycle_copy")
    assert pp.running


def test_a_mistyped_database_name_does_not_start_endless_server_logins(pgpulse, pg, raw):
    pp = start(pgpulse, dbs=FALLBACK, min_pool_size=2, server_login_retry=0.5)
    name = "lifecycle_mistyped"
    mark = pg.log_mark()
    outcome, value = login(pp.port, database=name)
    assert (outcome, value) == ("error", "3D000"), (outcome, value)
    failed = re.compile(rf'database "{name}" does not exist')

    def attempts():
        return len(failed.findall(pg.log(since=mark)))

    seen = attempts()
    time.sleep(3)  # letting time pass: six server_login_retry periods
    later = attempts()
    assert later - seen <= 1, \
        f"pgpulse went on logging in to the missing database: {later - seen} more failed " \
        f"attempts in 3 s after the client's login failed (server_login_retry = 0.5)"


# ============================================================ random lifecycles

CHAOS_LIFECYCLES = 300
CHAOS_WORKERS = 8
CHAOS_MAX_CLIENT_CONN = 40
CHAOS_KEEP = 6


class Chaos:
    """Hundreds of clients, each through one randomly chosen lifecycle, from
    a few worker threads; records what happened to each."""

    KINDS = ("leave_after_login", "leave_after_begin", "leave_during_begin", "leave_mid_query",
             "terminate_in_transaction", "cancel_then_leave", "cancel_then_read", "pipeline",
             "plain", "keep")

    def __init__(self, pp, seed):
        self.pp = pp
        self.seed = seed
        self.kept = []
        self.outcomes = {}
        self.hangs = []
        self.violations = []
        self.done = 0
        self.lock = threading.Lock()

    def note(self, what):
        with self.lock:
            self.outcomes[what] = self.outcomes.get(what, 0) + 1
            self.done += 1

    def run_one(self, rng):
        kind = rng.choice(self.KINDS)
        try:
            c = RawConn(self.pp.port, database=DB, timeout=20)
        except ServerError as e:
            return self.note(f"login refused {e.sqlstate}")
        try:
            self.lifecycle(kind, c, rng)
            self.note(kind)
        except socket.timeout as e:
            with self.lock:
                self.hangs.append((kind, repr(e)))
            self.note(f"{kind}: timeout")
            c.sock.close()
        except (ServerError, OSError, EOFError, AssertionError) as e:
            # PostgreSQL restarted underneath, or a cancel landed: fine
            self.note(f"{kind}: {type(e).__name__}")
            c.sock.close()

    def lifecycle(self, kind, c, rng):
        port = self.pp.port
        if kind == "leave_after_login":
            c.abort(reset=rng.random() < 0.5)
        elif kind == "leave_after_begin":
            c.query("BEGIN")
            c.abort(reset=rng.random() < 0.5)
        elif kind == "leave_during_begin":
            c.send(query_message("BEGIN"))
            c.abort()
        elif kind == "leave_mid_query":
            c.send(query_message(f"SELECT pg_sleep({rng.uniform(0.05, 0.3):.2f})"))
            time.sleep(rng.uniform(0, 0.1))
            c.abort(reset=rng.random() < 0.3)
        elif kind == "terminate_in_transaction":
            c.query("BEGIN")
            c.query("SELECT 1")
            c.send(message("X"))
            msgs, _ = split_messages(c.read_to_eof(20))
            c.sock.close()
            # PostgreSQL's own FATAL (the chaos terminates backends) can cross the
            # Terminate on the wire; pgpulse's own errors (no source file) must not
            own = [e for e in errors_in(msgs) if "F" not in e]
            if own:
                with self.lock:
                    self.violations.append(("error after Terminate", own))
        elif kind in ("cancel_then_leave", "cancel_then_read"):
            c.send(query_message("SELECT pg_sleep(0.5)"))
            time.sleep(rng.uniform(0.0, 0.2))
            s = c.cancel(port)
            try:
                if rng.random() < 0.5:
                    wait_eof(s, 20)
            finally:
                s.close()
            if kind == "cancel_then_read":
                c.until_ready()
                c.close()
            else:
                c.abort()
        elif kind == "pipeline":
            n = rng.randint(2, 6)
            c.send(b"".join(query_message(f"SELECT {i}") for i in range(n)))
            for _ in range(n):
                c.until_ready()
            if rng.random() < 0.5:
                c.close()
            else:
                c.abort()
        elif kind == "plain":
            c.query("SELECT 1")
            c.close()
        elif kind == "keep":
            c.query("SELECT 1")
            with self.lock:
                if len(self.kept) < CHAOS_KEEP:
                    self.kept.append(c)
                    return
            c.close()

    def worker(self, index, count):
        rng = random.Random(self.seed * 1000 + index)
        for _ in range(count):
            self.run_one(rng)


@pytest.fixture
def chaos_seed():
    seed = int(os.environ.get("PGPULSE_CHAOS_SEED") or random.randrange(1 << 31))
    print(f"\nchaos seed {seed} (PGPULSE_CHAOS_SEED={seed} replays the choices)")
    return seed


@pytest.mark.slow
def test_random_client_lifecycles_leave_counts_limits_and_shutdown_true(pgpulse, pg,
                                                                       chaos_seed):
    pp = start(pgpulse, default_pool_size=3, max_client_conn=CHAOS_MAX_CLIENT_CONN,
               query_wait_timeout=20, cancel_wait_timeout=5, server_login_retry=0.2)
    chaos = Chaos(pp, chaos_seed)
    per_worker = CHAOS_LIFECYCLES // CHAOS_WORKERS
    threads = [threading.Thread(target=chaos.worker, args=(i, per_worker), daemon=True)
               for i in range(CHAOS_WORKERS)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: chaos.done >= per_worker * CHAOS_WORKERS // 2, 60,
                   "half the lifecycles to finish")
        pg.restart()  # PostgreSQL goes away underneath, once
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "lifecycles still running after 60 s"
        print(f"outcomes: {dict(sorted(chaos.outcomes.items()))}")
        assert not chaos.hangs, f"clients that got no answer within 20 s: {chaos.hangs[:5]}"

        kept = chaos.kept
        for c in kept:  # they outlived the restart: still served
            assert c.query("SELECT 1") == [["1"]]
        expected = len(kept) + 1  # and the console that asks

        # the counts pgpulse shows match the connections that exist
        pp.show("VERSION")  # the console is open before sockets are counted
        wait_until(lambda: client_sockets_settled(pp), 10, "pgpulse to close departed clients")
        established = len(pgpulse_sockets(pp, "ESTABLISHED", local_port=pp.port))
        assert established == expected, f"{established} client sockets, {expected} clients"
        wait_for_value(lambda: lists(pp)["used_clients"], expected, 5,
                       f"SHOW LISTS used_clients with {expected} client sockets open")
        assert lists(pp)["login_clients"] == 0
        assert len(pp.show("CLIENTS")) == expected
        pools = pool_rows(pp)
        assert sum(r["cl_active"] + r["cl_waiting"] for r in pools) == len(kept), pools

        def servers():
            return {"SHOW SERVERS rows": len(pp.show("SERVERS")),
                    "SHOW LISTS used_servers": lists(pp)["used_servers"],
                    "PostgreSQL backends": len(pg.backends(dbname=DB))}
        socks = len(pgpulse_sockets(pp, "ESTABLISHED", remote_port=pg.port))
        wait_for_value(servers, dict.fromkeys(servers(), socks), 10,
                       f"server counts with {socks} connections from pgpulse to PostgreSQL")

        # max_client_conn still holds
        extra = fill_up(pp.port, CHAOS_MAX_CLIENT_CONN - expected)
        try:
            assert_refused(pp.port)
        finally:
            for c in extra:
                c.close()

        # SIGTERM waits for the last client
        last, others = kept[0] if kept else RawConn(pp.port, database=DB), kept[1:]
        for c in others:
            c.close()
        pp.close_connections()
        wait_until(lambda: client_sockets_settled(pp), 10, "pgpulse to close the others")
        pp.signal(signal.SIGTERM)
        assert_still_running(pp, 1.0, "pgpulse, after SIGTERM,")
        assert last.query("SELECT 'last'") == [["last"]]
        last.close()
        assert pp.wait_exit(10) == 0
        assert not chaos.violations, chaos.violations[:5]
    finally:
        for t in threads:
            t.join(30)
        for c in chaos.kept:
            c.sock.close()


# ============================================================ found in review

def test_kill_client_in_the_middle_of_a_large_row_closes_without_a_garbled_message(pgpulse,
                                                                                    proxy, raw):
    pp = start(pgpulse, dbs=via(proxy))
    c = raw(pp.port)
    assert c.query("SELECT 1") == [["1"]]
    victim = client_id(pp, c)
    # PostgreSQL's reply stops half way through the second row, and the
    # client has read all pgpulse forwarded: its socket has room for an error
    proxy.stall_after(ROW_DESC_LEN + len(DATA_ROW) + 50000)
    c.send(query_message(BIG_QUERY))
    got = bytearray()
    while len(got) < ROW_DESC_LEN + len(DATA_ROW) + 50000:
        got += c.sock.recv(1 << 16)
    pp.command(f"KILL_CLIENT {victim}")
    msgs, tail = messages_of(bytes(got) + c.read_to_eof(timeout=20))
    assert_whole_rows(msgs, tail)
    assert not errors_in(msgs), errors_in(msgs)


def test_suspend_timeout_dropping_a_console_behind_the_waiting_one_keeps_pgpulse_serving(pgpulse,
                                                                                          raw):
    pp = start(pgpulse, suspend_timeout=1)
    suspender = raw(pp.port, user="admin", database="pgpulse")
    stuck = raw(pp.port, user="admin", database="pgpulse", rcvbuf=65536)
    stuck.send(query_message("SHOW CONFIG") * 5000)  # and never reads the answers

    def answers_wait_in_pgpulse():
        return [r for r in pp.show("MEM") if r["name"] == "outbuf" and r["memtotal"] > 0]
    wait_until(answers_wait_in_pgpulse, 20, "the stuck console's answers to wait in pgpulse")
    # SUSPEND waits for them, then drops the stuck console at suspend_timeout
    suspender.send(query_message("SUSPEND"))
    tags = [body.rstrip(b"\0").decode() for t, body in suspender.until_ready() if t == "C"]
    assert tags == ["SUSPEND"], tags
    wait_eof(stuck.sock, 10)
    assert suspender.query("RESUME") == []
    # pgpulse still logs clients in, and is not spinning
    with RawConn(pp.port, database=DB, timeout=5) as c:
        assert c.query("SELECT 2") == [["2"]]
    t0 = cpu_seconds(pp.pid)
    time.sleep(2)  # letting time pass: CPU used while idle
    used = cpu_seconds(pp.pid) - t0
    assert used < 0.5, f"pgpulse used {used:.2f}s of CPU in 2s while idle"


def test_a_cancel_nobody_closes_frees_its_server_even_with_cancel_wait_timeout_0(pgpulse, pg,
                                                                                 proxy, raw):
    pp = start(pgpulse, dbs=via(proxy), default_pool_size=1, cancel_wait_timeout=0)
    a = raw(pp.port)
    a.query("SELECT 1")
    proxy.hold_cancels = True  # the cancel reaches a proxy that never passes it on nor closes
    a.send(query_message("SELECT pg_sleep(0.5), 'a done'"))
    wait_until(lambda: running(pg, "pg_sleep"), 10, "A's query to run")
    canceller = a.cancel(pp.port)
    try:
        wait_until(lambda: proxy.cancels_seen == 1, 10, "the cancel to leave pgpulse")
        assert [t for t, _ in a.until_ready() if t in "DE"] == ["D"]
        # the server waits for the cancel, but not for ever: B is served
        b = raw(pp.port)
        assert b.query("SELECT 'b done'") == [["b done"]]
        wait_eof(canceller, 10)
    finally:
        canceller.close()
        proxy.release_cancels()


def test_a_database_listed_after_the_fallback_made_it_stays_configured(pgpulse, pg, raw):
    ini = make_ini(FALLBACK, autodb_idle_timeout=1)
    pp = pgpulse(ini, USERLIST)
    c = raw(pp.port)
    assert c.query("SELECT 1") == [["1"]]
    c.close()
    # the operator lists it, with a pool kept open for it
    pp.write_config(make_ini({"*": "", DB: "min_pool_size=1 user=app"}, autodb_idle_timeout=1))
    pp.reload()
    wait_until(lambda: len(pg.backends(dbname=DB)) == 1, 10, "the listed database's min_pool_size")
    # autodb_idle_timeout no longer applies to it
    poll_for(lambda: DB not in [r["name"] for r in pp.show("DATABASES")], 3)
    assert DB in [r["name"] for r in pp.show("DATABASES")]
    assert len(pg.backends(dbname=DB)) == 1
