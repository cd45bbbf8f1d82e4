"""What an operator coming from PgBouncer reads and sets: connection log
lines in PgBouncer's shape (one parser for both logs), the periodic
"stats:" line (log_stats, stats_period), application_name_add_host, and
the TCP settings (tcp_keepalive and its timings, tcp_user_timeout,
tcp_socket_buffer, tcp_defer_accept) on the sockets themselves."""

import os
import re
import socket
import struct
import threading

import psycopg
import pytest

from pgpulse_harness import (PgBouncer, parse_log, pgbouncer_bin,
                             socket_options, tcp_sockets, wait_until)

USERS = {"app": "app_pw", "admin": "admin_pw"}

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
pool_mode = session
log_connections = 1
log_disconnections = 1
"""

TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)


def local_port(conn):
    """The client's own port of a psycopg connection."""
    with socket.socket(fileno=os.dup(conn.pgconn.socket)) as s:
        return s.getsockname()[1]


def conn_records(log, **match):
    return [r for r in parse_log(log) if "kind" in r and all(r.get(k) == v for k, v in match.items())]


def login_workload(port):
    """A login and a logout, a wrong password, a database that does not exist."""
    dsn = f"host=127.0.0.1 port={port} user=app sslmode=disable connect_timeout=10"
    with psycopg.connect(dsn + " dbname=appdb password=app_pw") as conn:
        conn.execute("SELECT 1")
        client_port = local_port(conn)
    for bad in (" dbname=appdb password=wrong", " dbname=nodb password=app_pw"):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn + bad)
    return client_port


# ------------------------------------------------------------ connection log lines

def test_a_client_and_its_server_are_followed_through_the_log_in_pgbouncer_shape(pgpulse, pg):
    pp = pgpulse(INI, USERS)
    client_port = login_workload(pp.port)
    pp.wait_log(r"closing because: database \"nodb\" does not exist \(age=\d+s\)")
    lines = parse_log(pp.log())
    assert lines and all(r["pid"] == str(pp.pid) for r in lines), pp.log()

    mine = conn_records(pp.log(), kind="C", port=str(client_port))
    events = [r["event"] for r in mine]
    assert events[0] == "login attempt: db=appdb user=app tls=no replication=no", events
    assert events[-1] == "closing because: client close request", events
    assert {(r["db"], r["user"], r["host"], r["id"]) for r in mine} == \
        {("appdb", "app", "127.0.0.1", mine[0]["id"])}
    assert mine[-1]["age"] is not None

    server = conn_records(pp.log(), kind="S", db="appdb", user="app")
    assert server and server[0]["host"] == pg.host and server[0]["port"] == str(pg.port)
    assert server[0]["event"].startswith("new connection to server (from 127.0.0.1:"), server

    failed = [r["event"] for r in conn_records(pp.log(), kind="C") if r["port"] != str(client_port)]
    assert "closing because: password authentication failed for user \"app\"" in failed, failed
    assert "login attempt: db=nodb user=app tls=no replication=no" in failed, failed


def test_a_unix_socket_client_is_named_by_its_pid_and_the_port(pgpulse):
    pp = pgpulse(INI, USERS)
    with psycopg.connect(host=pp.dir, port=pp.port, dbname="appdb", user="app", password="app_pw") as conn:
        conn.execute("SELECT 1")
    pp.wait_log(r"closing because: client close request")
    attempts = conn_records(pp.log(), kind="C", event="login attempt: db=appdb user=app tls=no replication=no")
    assert [(r["host"], r["port"]) for r in attempts] == [(f"unix({os.getpid()})", str(pp.port))], pp.log()


def test_a_connection_that_never_sends_a_startup_packet_is_not_a_disconnection(pgpulse):
    pp = pgpulse(INI, USERS)
    socket.create_connection(("127.0.0.1", pp.port)).close()  # a port probe
    with psycopg.connect(pp.dsn()) as conn:
        conn.execute("SELECT 1")
    pp.wait_log(r"closing because: client close request")
    closes = [r for r in parse_log(pp.log()) if "closing because" in r["message"]]
    assert [r["kind"] for r in closes] == ["C"], pp.log()


def shared_event(rec):
    """The part of a connection's event both poolers write (PgBouncer 1.25 and
    pgpulse add replication=, 1.18 does not; pgpulse also says "login ok"),
    or None."""
    event = rec["event"].split(" replication=")[0]
    if event.startswith("new connection to server (from "):
        return "new connection to server"
    if event.startswith("login attempt: ") or event == "closing because: client close request":
        return event
    return None


def test_cancel_requests_are_logged_as_pgbouncer_logs_them(pgpulse, pg):
    pp = pgpulse(INI, USERS)
    with pp.connect(autocommit=True) as conn:
        def sleep():
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(30)")
        worker = threading.Thread(target=sleep)
        worker.start()
        wait_until(lambda: [b for b in pg.backends(dbname="appdb") if b["query"] == "SELECT pg_sleep(30)"
                            and b["state"] == "active"], 10, "the query to run")
        conn.cancel()
        worker.join(10)
        assert not worker.is_alive()
    with socket.create_connection(("127.0.0.1", pp.port)) as s:  # a key nobody was given
        s.sendall(struct.pack("!IIII", 16, 80877102, 1, 2))
        assert s.recv(1) == b""
    pp.wait_log(r"closing because: failed cancel request")
    events = [r["event"] for r in conn_records(pp.log(), kind="C", db="(nodb)", user="(nouser)")]
    assert events == ["closing because: successfully sent cancel request",
                      "closing because: failed cancel request"], pp.log()


@pytest.mark.skipif(pgbouncer_bin() is None, reason="no PgBouncer to compare with (apt-get install pgbouncer)")
def test_one_parser_reads_the_same_facts_from_pgbouncer_and_pgpulse(pgpulse, pg, session_dir):
    facts = {}
    ini = INI + "stats_period = 1\n"
    pb = PgBouncer(ini, base_dir=session_dir, bin=pgbouncer_bin(), pg=pg, userlist=USERS)
    pp = pgpulse(ini, USERS)
    try:
        for name, proc in (("pgbouncer", pb), ("pgpulse", pp)):
            port = login_workload(proc.port)
            wait_until(lambda: "no such database" in proc.log() or "\"nodb\" does not exist" in proc.log(),
                       10, f"{name} to log the refused database")
            wait_until(lambda: len(conn_records(proc.log(), kind="C", port=str(port))) >= 2, 10,
                       f"{name} to log the client's close")
            mine = [r for r in conn_records(proc.log(), kind="C", port=str(port)) if shared_event(r)]
            server = conn_records(proc.log(), kind="S")
            facts[name] = {
                "client": [(r["db"], r["user"], r["host"], shared_event(r)) for r in mine],
                "close age": mine[-1]["age"] is not None,
                "server": {(r["db"], r["user"], r["host"], r["port"], shared_event(r)) for r in server
                           if shared_event(r)},
                "attempts": sorted(shared_event(r) for r in conn_records(proc.log(), kind="C")
                                   if r["event"].startswith("login attempt")),
            }
            stats = wait_until(lambda: [r for r in parse_log(proc.log()) if r["message"].startswith("stats: ")],
                               10, f"{name}'s stats line")
            # 1.25's line is pgpulse's; before 1.21 PgBouncer had no parse and bind figures
            facts[name]["stats"] = bool(re.match(STATS, stats[0]["message"])) or \
                "client parses/s" not in stats[0]["message"]
    finally:
        pb.stop()
    assert facts["pgpulse"] == facts["pgbouncer"], facts


# ------------------------------------------------------------ log_stats

STATS = (r"stats: (?P<xacts>\d+) xacts/s, (?P<queries>\d+) queries/s, (?P<cparse>\d+) client parses/s, "
         r"(?P<sparse>\d+) server parses/s, (?P<binds>\d+) binds/s, in (?P<inb>\d+) B/s, out (?P<outb>\d+) B/s, "
         r"xact (?P<xact>\d+) us, query (?P<query>\d+) us, wait (?P<wait>\d+) us$")


def test_log_stats_writes_pgbouncers_stats_line_every_stats_period(pgpulse):
    pp = pgpulse(INI + "stats_period = 1\n", USERS)
    rx = re.compile(STATS, re.M)
    with psycopg.connect(pp.dsn(), autocommit=True) as conn:
        # queries until a period's line has seen them
        def counted():
            conn.execute("SELECT 1")
            return [m for m in rx.finditer(pp.log()) if int(m["queries"]) > 0]
        busy = wait_until(counted, 20, "a stats line that counts the queries")
    m = busy[0]
    assert int(m["xacts"]) > 0 and int(m["inb"]) > 0 and int(m["outb"]) > 0, m.group(0)
    lines = [r for r in parse_log(pp.log()) if r["message"].startswith("stats: ")]
    assert all(r["level"] == "LOG" and rx.match(r["message"]) for r in lines), lines
    assert all(r["pid"] == str(pp.pid) for r in lines)


def test_log_stats_off_writes_no_stats_line(pgpulse):
    # the janitor closes the idle server 2 s on: 2 stats periods have passed by then
    pp = pgpulse(INI + "stats_period = 1\nlog_stats = 0\nserver_idle_timeout = 2\n", USERS)
    with psycopg.connect(pp.dsn()) as conn:
        conn.execute("SELECT 1")
    pp.wait_log(r"S-\d+: appdb/app@\S+ closing because: server idle timeout", timeout=20)
    assert "stats: " not in pp.log()
    # and on again by RELOAD
    mark = pp.log_mark()
    assert pp.command("SET log_stats = 1") == "SET"
    pp.wait_log(STATS.replace("$", ""), since=mark)


# ------------------------------------------------------------ application_name_add_host

def backend_application_name(conn):
    return conn.execute("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()[0]


def test_application_name_add_host_appends_the_client_address_as_pgbouncer_does(pgpulse):
    pp = pgpulse(INI, USERS)
    with pp.connect(application_name="billing", autocommit=True) as conn:
        assert backend_application_name(conn) == "billing"  # off by default
    assert pp.command("SET application_name_add_host = 1") == "SET"
    with pp.connect(application_name="billing", autocommit=True) as conn:
        assert backend_application_name(conn) == f"billing - 127.0.0.1:{local_port(conn)}"
        conn.execute("SET application_name = 'batch'")  # the client's own SET is left as it is
        assert backend_application_name(conn) == "batch"
    with pp.connect(autocommit=True) as conn:
        assert backend_application_name(conn) == f"app - 127.0.0.1:{local_port(conn)}"


# ------------------------------------------------------------ TCP settings

TCP_OPTIONS = (
    ("keepalive", socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    ("keepidle", socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    ("keepintvl", socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    ("keepcnt", socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    ("user_timeout", socket.IPPROTO_TCP, TCP_USER_TIMEOUT),
    ("sndbuf", socket.SOL_SOCKET, socket.SO_SNDBUF),
    ("rcvbuf", socket.SOL_SOCKET, socket.SO_RCVBUF),
)

TCP_SETTINGS = """\
tcp_keepalive = 1
tcp_keepidle = 77
tcp_keepintvl = 9
tcp_keepcnt = 4
tcp_user_timeout = 12345
tcp_socket_buffer = 65536
"""


def test_tcp_settings_are_on_the_client_and_the_server_sockets(pgpulse, pg):
    pp = pgpulse(INI + TCP_SETTINGS, USERS)
    with pp.connect() as conn:
        conn.execute("SELECT 1")
        client_side = socket_options(pp.pid, local_port=pp.port, remote_port=local_port(conn), options=TCP_OPTIONS)
        server_side = socket_options(pp.pid, remote_port=pg.port, options=TCP_OPTIONS)
    # Linux doubles a buffer size set by setsockopt for its bookkeeping: it reads back twice as large
    want = {"keepalive": 1, "keepidle": 77, "keepintvl": 9, "keepcnt": 4, "user_timeout": 12345,
            "sndbuf": 2 * 65536, "rcvbuf": 2 * 65536}
    assert client_side == [want] and server_side == [want], (client_side, server_side)


def test_reloaded_tcp_keepalive_settings_apply_to_new_connections(pgpulse):
    pp = pgpulse(INI + TCP_SETTINGS, USERS)

    def new_connection_options():
        with pp.connect() as conn:
            return socket_options(pp.pid, local_port=pp.port, remote_port=local_port(conn),
                                  options=TCP_OPTIONS[:2])
    assert pp.command("SET tcp_keepidle = 33") == "SET"
    assert new_connection_options() == [{"keepalive": 1, "keepidle": 33}]
    assert pp.command("SET tcp_keepalive = 0") == "SET"
    with open("/proc/sys/net/ipv4/tcp_keepalive_time") as f:
        system_idle = int(f.read())
    # off: no keepalive, and its timings are left as the system has them
    assert new_connection_options() == [{"keepalive": 0, "keepidle": system_idle}]


def _syn_recv(server_port, client_port):
    # the kernel's own view (/proc/net/tcp): state 03 is SYN_RECV
    return [s for s in tcp_sockets() if s["local_port"] == server_port and s["remote_port"] == client_port
            and s["state"] == "03"]


def test_tcp_defer_accept_keeps_a_silent_connection_from_pgpulse_until_it_speaks(pgpulse):
    pp = pgpulse(INI + "tcp_defer_accept = 30\n", USERS)
    with socket.create_connection(("127.0.0.1", pp.port)) as s:
        client_port = s.getsockname()[1]
        wait_until(lambda: _syn_recv(pp.port, client_port), 5, "the kernel to hold the silent connection")
        assert not [x for x in tcp_sockets(pp.pid) if x["remote_port"] == client_port]
        s.sendall(struct.pack("!II", 8, 80877103))  # SSLRequest: now pgpulse accepts it and answers
        assert s.recv(1) == b"N"
    # turned off by RELOAD/SET: the listen socket hands a silent connection over at once
    assert pp.command("SET tcp_defer_accept = 0") == "SET"
    with socket.create_connection(("127.0.0.1", pp.port)) as s:
        client_port = s.getsockname()[1]
        wait_until(lambda: [x for x in tcp_sockets(pp.pid) if x["remote_port"] == client_port
                            and x["state"] == "ESTABLISHED"], 5, "pgpulse to accept the connection")
