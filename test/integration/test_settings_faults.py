"""PgBouncer settings under hostile review (server_lifetime per database,
server_fast_close, query_wait_notify, the TLS 1.3 suites, RECONNECT of a
walsender): each test names a behaviour a user would notice, as PgBouncer
1.25 (or pgpulse's own doc/config.md) states it; each failed when found.

Every test starts its own pgpulse in front of the session's scratch
PostgreSQL (database appdb, user app).
"""

import socket
import struct

import psycopg
import pytest

from pgpulse_harness import build_ini, read_message, wait_until
from test_tls import USERS as TLS_USERS, certs, client_tls_ini, install_cert  # noqa: F401 (certs: fixture)

USERLIST = {"app": "app_pw", "admin": "admin_pw"}

BASE = {
    "listen_addr": "127.0.0.1",
    "listen_port": "{port}",
    "unix_socket_dir": "{dir}",
    "auth_type": "scram-sha-256",
    "auth_file": "{auth_file}",
    "admin_users": "admin",
    "pool_mode": "transaction",
    "default_pool_size": "2",
}


def ini(dbs=None, **settings):
    merged = dict(BASE)
    merged.update({k: str(v) for k, v in settings.items()})
    return build_ini(dbs or {"appdb": ""}, None, merged)


def start(pgpulse, dbs=None, **settings):
    return pgpulse(ini(dbs, **settings), USERLIST)


def backend_pids(pg):
    return {r["pid"] for r in pg.backends(dbname="appdb", user="app")}


# ------------------------------------------------------------ [databases] server_lifetime

def test_show_databases_shows_the_database_entry_own_server_lifetime(pgpulse):
    """PgBouncer 1.24+: SHOW DATABASES' server_lifetime column is the
    entry's own server_lifetime when it sets one (the one in effect for its
    servers), the global one otherwise."""
    pp = start(pgpulse, {"appdb": "server_lifetime=120", "other": "dbname=appdb"}, server_lifetime=3600)
    rows = {r["name"]: r["server_lifetime"] for r in pp.show("DATABASES")}
    assert rows["other"] == 3600, rows
    assert rows["appdb"] == 120, rows


def test_a_database_entry_server_lifetime_of_zero_falls_back_to_the_global_one(pgpulse):
    """PgBouncer 1.25.2 reads a [databases] server_lifetime = 0 as not set:
    the global server_lifetime (here 3600 s) applies, SHOW DATABASES shows
    it, and a server connection serves transaction after transaction. (The
    global server_lifetime = 0 is the one that means "use each once".)"""
    pp = start(pgpulse, {"appdb": "server_lifetime=0"}, server_lifetime=3600, default_pool_size=1)
    conn = pp.connect(autocommit=True, prepare_threshold=None)
    pids = [conn.execute("SELECT pg_backend_pid()").fetchone()[0] for _ in range(3)]
    assert len(set(pids)) == 1, f"a new server connection for each transaction: {pids}"
    rows = {r["name"]: r["server_lifetime"] for r in pp.show("DATABASES")}
    assert rows["appdb"] == 3600, rows


# ------------------------------------------------------------ server_fast_close

def test_server_fast_close_ends_the_session_of_a_database_a_reload_removed(pgpulse, pg):
    """doc/config.md: in session mode a RELOAD that removed a database ends
    its sessions between transactions (server_fast_close), the client
    closed with 57P01."""
    dbs = {"appdb": "", "gone": "dbname=appdb"}
    pp = start(pgpulse, dbs, pool_mode="session", server_fast_close=1)
    conn = pp.connect(dbname="gone", autocommit=True, prepare_threshold=None)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    pp.write_config(ini({"appdb": ""}, pool_mode="session", server_fast_close=1))
    pp.reload()
    wait_until(lambda: "gone" not in {r["name"] for r in pp.show("DATABASES")}, 10, "the RELOAD")
    wait_until(lambda: pid not in backend_pids(pg), 10, "the removed database's session to end")
    with pytest.raises(psycopg.OperationalError, match="server_fast_close"):
        conn.execute("SELECT 1")


# ------------------------------------------------------------ query_wait_notify

def raw_login_start(port, user="app", database="appdb"):
    """A raw socket that has sent its StartupMessage (auth_type = trust)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", database)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    return s


def test_query_wait_notify_says_nothing_before_the_login_hello(pgpulse):
    """PgBouncer sends the queued NOTICE only to a client whose login is
    over (welcome_sent): a session-mode client still waiting at login for
    a server gets no NoticeResponse between AuthenticationOk and its
    ParameterStatus/ReadyForQuery."""
    pp = start(pgpulse, pool_mode="session", default_pool_size=1, query_wait_notify=1, auth_type="trust")
    holder = pp.connect(autocommit=True, prepare_threshold=None)
    holder.execute("SELECT 1")
    s = raw_login_start(pp.port)
    buf = b""
    mtype, payload, buf = read_message(s, buf)
    assert mtype == b"R", (mtype, payload)          # AuthenticationOk
    # the login waits at least two query_wait_notify periods for the held server

    def waited_two_seconds():
        rows = [r for r in pp.show("POOLS") if r["database"] == "appdb"]
        return rows and rows[0]["cl_waiting"] == 1 and rows[0]["maxwait"] >= 2
    wait_until(waited_two_seconds, 15, "the login to wait 2 s")
    holder.close()
    seen = []
    while True:
        mtype, payload, buf = read_message(s, buf)
        seen.append((mtype, payload))
        if mtype == b"Z":
            break
    s.close()
    notices = [p for t, p in seen if t == b"N"]
    assert notices == [], f"NoticeResponse before ReadyForQuery in the login: {notices}"


# ------------------------------------------------------------ client_tls13_ciphers

def test_a_tls13_suite_list_with_an_unknown_name_stops_the_start(pgpulse, certs):  # noqa: F811
    """doc/config.md: "A name OpenSSL does not know stops the start". A
    typo next to a valid suite is no exception: the list is not the one
    the operator wrote."""
    extra = "client_tls13_ciphers = TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA385"
    pp = pgpulse(client_tls_ini(certs, extra=extra), TLS_USERS, start=False)
    install_cert(pp, certs, "pgpulse")
    pp.start(wait=False)
    assert pp.wait_exit() == 1, "pgpulse started with an unknown TLS 1.3 suite in client_tls13_ciphers"
    assert "client_tls13_ciphers" in pp.log()


# ------------------------------------------------------------ track_extra_parameters

def interval_style(conn):
    return conn.execute("SHOW IntervalStyle").fetchone()[0]


def test_tracked_interval_style_follows_its_client_and_only_it(pgpulse):
    pp = start(pgpulse, default_pool_size=1)
    a = pp.connect(autocommit=True, prepare_threshold=None)
    b = pp.connect(autocommit=True, prepare_threshold=None)
    a.execute("SET IntervalStyle = iso_8601")
    assert interval_style(b) == "postgres"
    assert interval_style(a) == "iso_8601"
    assert interval_style(b) == "postgres"


def test_a_rolled_back_set_of_a_tracked_parameter_does_not_follow_the_client(pgpulse):
    pp = start(pgpulse, default_pool_size=1)
    a = pp.connect(autocommit=True, prepare_threshold=None)
    b = pp.connect(autocommit=True, prepare_threshold=None)
    a.execute("BEGIN")
    a.execute("SET IntervalStyle = iso_8601")
    a.execute("ROLLBACK")
    assert interval_style(b) == "postgres"
    assert interval_style(a) == "postgres"


def test_set_local_of_a_tracked_parameter_ends_with_its_transaction(pgpulse):
    pp = start(pgpulse, default_pool_size=1)
    a = pp.connect(autocommit=True, prepare_threshold=None)
    b = pp.connect(autocommit=True, prepare_threshold=None)
    a.execute("BEGIN")
    a.execute("SET LOCAL IntervalStyle = iso_8601")
    a.execute("COMMIT")
    assert interval_style(b) == "postgres"
    assert interval_style(a) == "postgres"


def test_a_tracked_parameter_set_in_a_session_does_not_reach_the_next_session(pgpulse):
    pp = start(pgpulse, pool_mode="session", default_pool_size=1)
    a = pp.connect(autocommit=True, prepare_threshold=None)
    a.execute("SET IntervalStyle = iso_8601")
    a.close()
    b = pp.connect(autocommit=True, prepare_threshold=None)
    assert interval_style(b) == "postgres"


def test_discard_all_by_the_client_puts_a_tracked_parameter_back(pgpulse):
    pp = start(pgpulse, default_pool_size=1)
    a = pp.connect(autocommit=True, prepare_threshold=None)
    b = pp.connect(autocommit=True, prepare_threshold=None)
    a.execute("SET IntervalStyle = iso_8601")
    a.execute("DISCARD ALL")
    assert interval_style(b) == "postgres"
    assert interval_style(a) == "postgres"


def test_default_transaction_read_only_follows_its_client(pgpulse):
    pp = start(pgpulse, default_pool_size=1, track_extra_parameters="IntervalStyle, default_transaction_read_only")
    a = pp.connect(autocommit=True, prepare_threshold=None)
    b = pp.connect(autocommit=True, prepare_threshold=None)
    a.execute("SET default_transaction_read_only = on")
    assert b.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
    assert a.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"


# ------------------------------------------------------------ replication and RECONNECT

def test_reconnect_ends_a_walsender_session_as_pgbouncer_does(pgpulse, pg):
    """PgBouncer 1.25 closes a replication server that must be replaced
    (RECONNECT, a RELOAD that moved its database) at once, whatever
    server_fast_close says: a walsender session may last for ever, so
    waiting for its end would keep it on the old server for ever."""
    import os
    import signal
    import subprocess
    from pgpulse_harness import pg_bin
    slot = "s_review_reconnect"
    pg.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
             (slot,))
    pg.query("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,), dbname="appdb")
    users = {"postgres": "postgres_pw", "app": "app_pw", "admin": "admin_pw"}
    pp = pgpulse(ini(pool_mode="session", server_fast_close=1), users)
    dsn = f"host=127.0.0.1 port={pp.port} dbname=appdb user=postgres password=postgres_pw " \
          "sslmode=disable application_name=review_recv"
    recv = subprocess.Popen([pg_bin("pg_recvlogical"), "-d", dsn, "-S", slot, "--start", "--no-loop",
                             "-f", os.path.join(pp.dir, "changes.txt")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def walsender_pids():
        return [p for p, app in pg.query("SELECT pid, application_name FROM pg_stat_replication")
                if app == "review_recv"]
    try:
        pid = wait_until(walsender_pids, 10, "pg_recvlogical's walsender")[0]
        assert pp.command("RECONNECT appdb") == "RECONNECT"
        wait_until(lambda: pid not in walsender_pids(), 10, "the walsender to be closed after RECONNECT")
    finally:
        if recv.poll() is None:
            recv.send_signal(signal.SIGINT)
        recv.wait(timeout=10)
        wait_until(lambda: not walsender_pids(), 10, "the walsender to exit")
        pg.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                 (slot,))


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_a_tracked_parameter_in_the_startup_packet_is_in_effect(pgpulse, mode):
    """track_extra_parameters = IntervalStyle (the default): PgBouncer takes
    IntervalStyle as a startup parameter and the session has it."""
    from pgpulse_harness import data_row, query_message
    pp = start(pgpulse, auth_type="trust", pool_mode=mode)
    s = socket.create_connection(("127.0.0.1", pp.port), timeout=10)
    body = struct.pack("!I", 196608)
    for k, v in (("user", "app"), ("database", "appdb"), ("IntervalStyle", "iso_8601")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    buf, seen = b"", []
    while True:
        mtype, payload, buf = read_message(s, buf)
        seen.append((mtype, payload))
        if mtype in (b"Z", b"E"):
            break
    assert mtype == b"Z", seen[-1]
    reported = [p for t, p in seen if t == b"S" and p.startswith(b"IntervalStyle\0")]
    assert reported == [b"IntervalStyle\0iso_8601\0"], reported
    s.sendall(query_message("SHOW IntervalStyle"))
    rows = []
    while True:
        mtype, payload, buf = read_message(s, buf)
        if mtype == b"D":
            rows.append(data_row(payload))
        if mtype == b"Z":
            break
    s.close()
    assert rows == [["iso_8601"]], rows


# ------------------------------------------------------------ server_fast_close and a slow cancel

class CancelSwallowingRelay:
    """127.0.0.1:<port> relaying to PostgreSQL, except that a CancelRequest
    is read and held: the connection is never closed, never forwarded (a
    PostgreSQL slow to confirm a cancel)."""

    def __init__(self, target_port):
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.target = ("127.0.0.1", target_port)
        self.held = []
        self.cancels = 0
        self._threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self._threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        first = b""
        while len(first) < 8:
            chunk = c.recv(8 - len(first))
            if not chunk:
                c.close()
                return
            first += chunk
        length, code = struct.unpack("!II", first)
        if length == 16 and code == 80877102:
            self.cancels += 1
            self.held.append(c)
            return
        s = socket.create_connection(self.target)
        s.sendall(first)
        for a, b in ((c, s), (s, c)):
            self._threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def test_server_fast_close_does_not_end_a_session_for_a_slow_cancel(pgpulse, pg):
    """server_fast_close is about servers a configuration change replaces
    (PgBouncer's close_needed: RECONNECT, RELOAD, DNS). A cancel PostgreSQL
    has not confirmed within cancel_wait_timeout is none of these: the
    session goes on, and its next query is served."""
    import threading
    relay = CancelSwallowingRelay(pg.port)
    try:
        dbs = {"appdb": f"host=127.0.0.1 port={relay.port} dbname=appdb"}
        pp = start(pgpulse, dbs, pool_mode="session", server_fast_close=1, cancel_wait_timeout=1)
        conn = pp.connect(autocommit=True, prepare_threshold=None)
        conn.execute("SELECT 1")
        threading.Timer(0.5, conn.cancel).start()
        # the cancel never reaches PostgreSQL: the sleep runs to its end
        assert conn.execute("SELECT 'done' FROM pg_sleep(2.5)").fetchone() == ("done",)
        assert relay.cancels == 1
        pp.wait_log("cancel request not settled within cancel_wait_timeout")
        try:    # janitor turns pass with the session idle
            pp.wait_log("server_fast_close: S-", timeout=2)
        except AssertionError:
            pass
        assert conn.execute("SELECT 2").fetchone() == (2,)
    finally:
        relay.close()
