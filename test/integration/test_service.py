"""pgpulse tells its service manager what it is doing.

systemd starts a Type=notify service with NOTIFY_SOCKET naming a datagram
socket, and waits for READY=1 before it counts the service as started;
`systemctl reload` waits for RELOADING=1 and READY=1, `systemctl status`
shows the STATUS= line. Here the test itself plays systemd: it binds the
socket, starts pgpulse with NOTIFY_SOCKET pointing at it, and reads what
arrives (doc/operations.md).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg
import pytest

from pgpulse_harness import _libpq_env, free_port, pgbench_path, port_accepts, query_message, \
    raw_startup, read_message, wait_until

USERS = {"app": "app_pw", "admin": "admin_pw"}

CONFIG = """\
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


def built_with_libsystemd(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libsystemd" in out


@pytest.fixture
def service_manager(pgpulse_bin):
    """A fake systemd: the NOTIFY_SOCKET it listens on."""
    if not built_with_libsystemd(pgpulse_bin):
        if os.environ.get("CI"):
            pytest.fail("CI builds pgpulse with libsystemd (libsystemd-dev); this one is not", pytrace=False)
        pytest.skip("pgpulse was built without libsystemd: it sends no notifications")
    # a short directory: a unix socket path has at most 107 bytes
    directory = tempfile.mkdtemp(prefix="notify.")
    path = os.path.join(directory, "sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


def next_message(sock, wanted, timeout=10):
    """The first datagram (as a dict of its KEY=value lines) that has key `wanted`."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted} from pgpulse within {timeout} s"
        sock.settimeout(left)
        fields = dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines() if "=" in line)
        if wanted in fields:
            return fields


def test_ready_is_sent_once_pgpulse_listens_and_carries_a_status(pgpulse, service_manager):
    sock, path = service_manager
    pp = pgpulse(CONFIG, USERS, env={"NOTIFY_SOCKET": path}, wait=False)
    ready = next_message(sock, "READY")
    assert ready["READY"] == "1"
    # a service that says it is ready must already accept connections
    assert port_accepts(pp.port)
    assert re.match(r"\d+ clients \(\d+ waiting\), \d+ servers \(\d+ active\), \d+ pools$",
                    ready["STATUS"]), ready


def test_reload_is_bracketed_by_reloading_and_ready(pgpulse, service_manager):
    sock, path = service_manager
    pp = pgpulse(CONFIG, USERS, env={"NOTIFY_SOCKET": path}, wait=False)
    next_message(sock, "READY")
    before = time.clock_gettime(time.CLOCK_MONOTONIC)
    pp.proc.send_signal(signal.SIGHUP)
    reloading = next_message(sock, "RELOADING")
    # systemd's notify-reload matches the reload by this CLOCK_MONOTONIC stamp
    stamp = int(reloading["MONOTONIC_USEC"]) / 1e6
    assert before <= stamp <= time.clock_gettime(time.CLOCK_MONOTONIC)
    assert next_message(sock, "READY")["READY"] == "1"
    # RELOAD from the console says the same
    pp.command("RELOAD")
    next_message(sock, "RELOADING")
    next_message(sock, "READY")


def test_a_failed_reload_still_ends_with_ready(pgpulse, service_manager):
    sock, path = service_manager
    pp = pgpulse(CONFIG, USERS, env={"NOTIFY_SOCKET": path}, wait=False)
    next_message(sock, "READY")
    with open(pp.ini_path, "a") as f:
        f.write("max_client_conn = lots\n")
    pp.proc.send_signal(signal.SIGHUP)
    next_message(sock, "RELOADING")
    assert next_message(sock, "READY")["READY"] == "1"  # still serving, with the old config
    with pp.connect(user="app", dbname="appdb") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.slow
def test_status_line_follows_the_clients(pgpulse, service_manager):
    sock, path = service_manager
    pp = pgpulse(CONFIG, USERS, env={"NOTIFY_SOCKET": path}, wait=False)
    next_message(sock, "READY")
    with pp.connect(user="app", dbname="appdb") as conn:
        conn.execute("SELECT 1")
        # refreshed every 5 s by the janitor
        deadline = time.monotonic() + 15
        while True:
            status = next_message(sock, "STATUS", timeout=15)["STATUS"]
            if status.startswith("1 clients"):
                break
            assert time.monotonic() < deadline, status
    assert re.search(r"\d+ servers", status)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_sends_stopping(pgpulse, service_manager, how):
    sock, path = service_manager
    pp = pgpulse(CONFIG, USERS, env={"NOTIFY_SOCKET": path}, wait=False)
    next_message(sock, "READY")
    pp.proc.send_signal(how)
    stopping = next_message(sock, "STOPPING")
    assert stopping["STOPPING"] == "1"
    assert stopping["STATUS"].endswith("; shutting down"), stopping
    assert pp.proc.wait(10) == 0


def systemd_tool(name):
    found = shutil.which(name)
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"{name} missing (apt-get install systemd)", pytrace=False)
        pytest.skip(f"{name} not installed")
    return found


def shipped(name):
    srcdir = os.environ.get("PGPULSE_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(srcdir, "etc", name)) as f:
        return f.read()


def test_the_shipped_unit_files_pass_systemd_analyze_verify(pgpulse_bin, tmp_path):
    analyze = systemd_tool("systemd-analyze")
    unit = shipped("pgpulse.service")
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    # verify checks that ExecStart's program exists: point it at the one under test
    unit = unit.replace("/usr/local/bin/pgpulse", os.path.abspath(pgpulse_bin))
    (tmp_path / "pgpulse.service").write_text(unit)
    (tmp_path / "pgpulse.socket").write_text(shipped("pgpulse.socket"))
    r = subprocess.run([analyze, "verify", str(tmp_path / "pgpulse.socket"), str(tmp_path / "pgpulse.service")],
                       capture_output=True, text=True, cwd=tmp_path)
    complaints = [ln for ln in (r.stdout + r.stderr).splitlines() if "pgpulse." in ln]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr


def test_the_shipped_template_unit_for_peers_passes_systemd_analyze_verify(pgpulse_bin, tmp_path):
    """etc/pgpulse@.service (doc/operations.md "Several processes on one port")."""
    analyze = systemd_tool("systemd-analyze")
    unit = shipped("pgpulse@.service")
    assert "peer_id = %i" in unit and "RuntimeDirectory=pgpulse/%i" in unit
    (tmp_path / "pgpulse@.service").write_text(unit.replace("/usr/local/bin/pgpulse", os.path.abspath(pgpulse_bin)))
    r = subprocess.run([analyze, "verify", str(tmp_path / "pgpulse@.service")],
                       capture_output=True, text=True, cwd=tmp_path)
    complaints = [ln for ln in (r.stdout + r.stderr).splitlines() if "pgpulse@" in ln]
    assert r.returncode == 0 and not complaints, r.stdout + r.stderr


def test_socket_activation_serves_on_the_passed_sockets_and_opens_none_of_its_own(
        pgpulse, pgpulse_bin):
    activate = systemd_tool("systemd-socket-activate")
    port, own_port = free_port(), free_port()
    # the ini names another port and its own unix dir: the passed sockets replace both
    pp = pgpulse(CONFIG.replace("listen_port = {port}", f"listen_port = {own_port}"), USERS, start=False)
    sockdir = tempfile.mkdtemp(prefix="act.")
    unix_path = os.path.join(sockdir, f".s.PGSQL.{port}")
    # it listens, and execs pgpulse (same pid) at the first connection, handing over both sockets
    proc = subprocess.Popen([activate, "-l", f"127.0.0.1:{port}", "-l", unix_path, pgpulse_bin, pp.ini_path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=pp.dir)
    try:
        wait_until(lambda: port_accepts(port), 10, "systemd-socket-activate to listen")
        for host in ("127.0.0.1", sockdir):
            with psycopg.connect(host=host, port=port, user="app", password=USERS["app"], dbname="appdb",
                                 connect_timeout=10, sslmode="disable") as conn:
                assert conn.execute("SELECT 42").fetchone() == (42,)
        assert not port_accepts(own_port)
        assert not os.path.exists(os.path.join(pp.dir, f".s.PGSQL.{own_port}"))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out
        assert "passed by the service manager" in out, out
        assert os.path.exists(unix_path)  # systemd's file: pgpulse does not remove it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(sockdir, ignore_errors=True)


def logrotate_binary():
    found = shutil.which("logrotate", path="/usr/sbin:/usr/bin:/sbin")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("logrotate missing (apt-get install logrotate)", pytrace=False)
        pytest.skip("logrotate not installed")
    return found


def test_logrotate_with_the_shipped_config_moves_the_log_and_pgpulse_writes_a_fresh_one(
        pgpulse, tmp_path):
    logrotate = logrotate_binary()
    pp = pgpulse(CONFIG.replace("[pgbouncer]\n", "[pgbouncer]\nlogfile = {dir}/service.log\n"
                                "log_connections = 1\n"), USERS)
    log = os.path.join(pp.dir, "service.log")  # not pgpulse.log: the harness keeps stderr there
    with pp.connect(user="app", dbname="appdb") as conn:
        conn.execute("SELECT 1")
    assert "login ok" in open(log).read()

    srcdir = os.environ.get("PGPULSE_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(srcdir, "etc", "pgpulse.logrotate")) as f:
        conf = f.read()
    # the shipped file, pointed at this test's log and process: no root here to
    # chown the new file or to reach systemd
    conf = conf.replace("/var/log/pgpulse/pgpulse.log", log)
    conf = conf.replace("create 0640 pgpulse pgpulse", "create 0640")
    conf = re.sub(r"(?m)^(\s*)systemctl reload .*$", rf"\1kill -HUP {pp.proc.pid}", conf)
    (tmp_path / "pgpulse.logrotate").write_text(conf)
    r = subprocess.run([logrotate, "--force", "--state", str(tmp_path / "state"),
                        str(tmp_path / "pgpulse.logrotate")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

    rotated = log + ".1"
    assert "login ok" in open(rotated).read()
    deadline = time.monotonic() + 10
    while "configuration reloaded" not in open(log).read():
        assert time.monotonic() < deadline, "pgpulse did not reopen its logfile after SIGHUP"
        time.sleep(0.05)
    before = open(rotated).read()
    with pp.connect(user="app", dbname="appdb") as conn:
        conn.execute("SELECT 1")
    deadline = time.monotonic() + 10
    while "login ok" not in open(log).read():
        assert time.monotonic() < deadline, "new lines did not reach the fresh logfile"
        time.sleep(0.05)
    assert open(rotated).read() == before  # the rotated file gets nothing more


def test_a_client_connecting_as_sigterm_arrives_is_still_served(pgpulse):
    # connected (accepted, or queued by the kernel) but not yet logged in: a
    # WAIT_FOR_CLIENTS shutdown waits for it like any other client. A client
    # that has sent nothing is pgpulse's only without tcp_defer_accept (with
    # it, the kernel keeps it until its first bytes: doc/operations.md)
    pp = pgpulse(CONFIG.replace("scram-sha-256", "trust") + "tcp_defer_accept = 0\n", USERS)
    with socket.create_connection(("127.0.0.1", pp.port), timeout=10) as s:
        pp.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: not port_accepts(pp.port), 10, "pgpulse to stop listening")
        assert raw_startup(s, user="app", database="appdb") == ("ok", None)
        s.sendall(query_message("SELECT 41 + 1"))
        buf, rows = b"", []
        while True:
            mtype, payload, buf = read_message(s, buf)
            if mtype == b"D":
                rows.append(payload[6:].decode())
            if mtype == b"Z":
                break
        assert rows == ["42"]
        s.sendall(b"X\0\0\0\4")
    assert pp.proc.wait(10) == 0  # and then it is gone: its last client left


@pytest.mark.slow
def test_rolling_restart_on_a_shared_port_fails_no_transaction(pgpulse, pgbench):
    """doc/operations.md: start the new pgpulse on the same port (so_reuseport),
    then SIGTERM the old one; pgbench -C runs across it without an error."""
    # each instance needs its own unix socket: these two use TCP alone
    text = CONFIG.replace("unix_socket_dir = {dir}\n", "unix_socket_dir =\n") + "so_reuseport = 1\n"
    old = pgpulse(text, USERS)
    pgbench(old.port, "-i", "-q", "-s", "1")
    load = subprocess.Popen(
        [pgbench_path(), "-h", "127.0.0.1", "-p", str(old.port), "-U", "app", "-n", "-S", "-C",
         "-c", "4", "-j", "2", "-T", "6", "appdb"],
        env=_libpq_env(password=USERS["app"]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        wait_until(lambda: stat_total(old, "total_xact_count") > 100, 10, "the old pgpulse to carry load")
        new = pgpulse(text, USERS, port=old.port)  # returns once it listens too
        old.close_connections()  # SIGTERM waits for every client, the test's console session too
        old.proc.send_signal(signal.SIGTERM)
        assert old.proc.wait(30) == 0, old.log()
        out, _ = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
    assert load.returncode == 0, out
    assert re.search(r"number of failed transactions: 0\b", out), out
    assert "error" not in out.lower(), out
    # the old one is gone; the new one served the rest
    assert stat_total(new, "total_xact_count") > 0


def stat_total(pp, column):
    return sum(int(r[column]) for r in pp.show("STATS"))
