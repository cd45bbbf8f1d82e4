"""Replication connections through pgpulse (issue 17).

A client whose startup packet says replication=database (logical decoding:
pg_recvlogical, Debezium, postgres.js subscribe) or replication=true
(physical: pg_receivewal, pg_basebackup) gets a walsender of its own: a
server connection opened for it with the same replication value, linked to
it for the whole session, closed with it, never idle and never anyone
else's, in every pool_mode.

The tools are PostgreSQL's own (pg_recvlogical, pg_receivewal) pointed at
pgpulse; what they stream is checked against what was written directly on
PostgreSQL, and pg_stat_replication says which walsenders exist.  The
module makes a database of its own (repl) with one table, and drops the
slots it made.
"""

import os
import signal
import socket
import subprocess
import urllib.request

import psycopg
import pytest

from pgpulse_harness import build_ini, free_port, pg_bin, raw_startup, wait_until

DB = "repl"
PASSWORD = "postgres_pw"
USERLIST = {"postgres": PASSWORD, "app": "app_pw", "admin": "admin_pw"}
APP_NAME = "recv_through_pgpulse"


def start(pgpulse, **settings):
    merged = {
        "listen_addr": "127.0.0.1",
        "listen_port": "{port}",
        "unix_socket_dir": "{dir}",
        "auth_type": "scram-sha-256",
        "auth_file": "{auth_file}",
        "admin_users": "admin",
        "pool_mode": "session",
    }
    merged.update({k: str(v) for k, v in settings.items()})
    # libpq's physical tools (pg_receivewal, pg_basebackup) always name the database
    # "replication": that entry says which server they stream from
    return pgpulse(build_ini({DB: "", "replication": ""}, None, merged), USERLIST)


@pytest.fixture(scope="module")
def repl_db(pg):
    pg.query(f"DROP DATABASE IF EXISTS {DB}")
    pg.query(f"CREATE DATABASE {DB}")
    pg.query("CREATE TABLE t (v text)", dbname=DB)
    yield DB
    for (slot,) in pg.query("SELECT slot_name FROM pg_replication_slots"):
        pg.query("SELECT pg_drop_replication_slot(%s)", (slot,))
    pg.query(f"DROP DATABASE IF EXISTS {DB}")


@pytest.fixture
def slot(pg, repl_db, request):
    """A logical slot's name for this test (test_decoding); dropped afterwards."""
    name = "s_" + request.node.name.replace("test_", "")[:40]
    yield name
    wait_until(lambda: not pg.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active",
                                    (name,)), 10, f"slot {name} to be released")
    pg.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
             (name,))


def dsn(pp, dbname=DB, password=PASSWORD, user="postgres", **extra):
    s = f"host=127.0.0.1 port={pp.port} dbname={dbname} user={user} password={password} sslmode=disable"
    return " ".join([s] + [f"{k}={v}" for k, v in extra.items()])


def run(*cmd, timeout=60):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout}{r.stderr}"
    return r


def walsenders(pg):
    """pg_stat_replication rows: (pid, application_name)."""
    return pg.query("SELECT pid, application_name FROM pg_stat_replication")


def test_logical_slot_created_and_streamed_through_pgpulse(pgpulse, pg, slot):
    pp = start(pgpulse)
    run(pg_bin("pg_recvlogical"), "-d", dsn(pp), "-S", slot, "-P", "test_decoding", "--create-slot")
    assert pg.query("SELECT plugin, database FROM pg_replication_slots WHERE slot_name = %s",
                    (slot,)) == [("test_decoding", DB)]

    pg.query("INSERT INTO t VALUES ('written on postgresql')", dbname=DB)
    # the slot's last change (once flushed: synchronous_commit is off): pg_recvlogical
    # stops (exit 0) once it has streamed it
    (endpos,), = wait_until(lambda: pg.query("SELECT lsn::text FROM pg_logical_slot_peek_changes(%s, NULL, NULL)"
                                             " ORDER BY lsn DESC LIMIT 1", (slot,), dbname=DB),
                            10, "the insert to reach the slot")
    out = os.path.join(pp.dir, "changes.txt")
    run(pg_bin("pg_recvlogical"), "-d", dsn(pp), "-S", slot, "--start", "--no-loop", "-E", endpos, "-f", out)
    with open(out) as f:
        changes = f.read()
    assert "table public.t: INSERT: v[text]:'written on postgresql'" in changes, changes


def test_physical_stream_with_pg_receivewal(pgpulse, pg, repl_db, tmp_path):
    pp = start(pgpulse)
    pg.query("INSERT INTO t VALUES ('some wal')", dbname=DB)
    (endpos,), = pg.query("SELECT pg_current_wal_flush_lsn()::text")
    walsegsize = int(pg.query("SHOW wal_segment_size")[0][0].rstrip("MB")) * 1024 * 1024
    run(pg_bin("pg_receivewal"), "-d", dsn(pp), "-D", str(tmp_path), "--no-loop",
        "--no-sync", "-E", endpos)
    # the segment holding endpos arrived (a .partial file: the segment is not complete yet)
    files = os.listdir(tmp_path)
    assert files and all(f.endswith(".partial") for f in files), files
    assert all(os.path.getsize(tmp_path / f) == walsegsize for f in files)
    # pg_receivewal asked a physical walsender for IDENTIFY_SYSTEM and START_REPLICATION
    assert "replication connection authorized: user=postgres" in pg.log()


def test_walsender_closes_with_its_client_and_serves_nobody_else(pgpulse, pg, slot):
    pp = start(pgpulse)
    pg.query("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,), dbname=DB)
    out = os.path.join(pp.dir, "changes.txt")

    def stream():
        return subprocess.Popen([pg_bin("pg_recvlogical"), "-d", dsn(pp, application_name=APP_NAME), "-S", slot,
                                 "--start", "--no-loop", "-f", out], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    first = stream()
    try:
        pid = wait_until(lambda: [p for p, app in walsenders(pg) if app == APP_NAME], 10,
                         "pg_recvlogical's walsender")[0]
        servers = pp.show("SERVERS")
        assert [(s["replication"], s["state"], s["remote_pid"]) for s in servers] == [("logical", "active", pid)]
        clients = [c for c in pp.show("CLIENTS") if c["database"] == DB]
        assert [(c["replication"], c["state"]) for c in clients] == [("logical", "active")]
        assert clients[0]["ptr"] == servers[0]["link"]
        assert [p["pool_mode"] for p in pp.show("POOLS") if p["database"] == DB] == ["replication"]
    finally:
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=10) == 0, first.stdout.read()

    # the pair closed together: no idle walsender kept for the next client
    wait_until(lambda: not walsenders(pg), 10, "the walsender to exit")
    wait_until(lambda: not pp.show("SERVERS"), 10, "pgpulse to close the server connection")

    second = stream()
    try:
        pid2 = wait_until(lambda: [p for p, app in walsenders(pg) if app == APP_NAME], 10,
                          "the second walsender")[0]
        assert pid2 != pid
    finally:
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=10) == 0, second.stdout.read()
    wait_until(lambda: not walsenders(pg), 10, "the second walsender to exit")


def test_replication_login_with_a_wrong_password_is_refused(pgpulse, pg, repl_db):
    pp = start(pgpulse)
    mark = pg.log_mark()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn(pp, password="wrong"), replication="database", connect_timeout=10)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn(pp, dbname="replication", password="wrong"), replication="true",
                        connect_timeout=10)
    assert pp.show("SERVERS") == []
    assert "replication connection" not in pg.log(since=mark)


def test_invalid_replication_value_is_postgresqls_error(pgpulse, pg, repl_db):
    pp = start(pgpulse, auth_type="trust")
    with socket.create_connection(("127.0.0.1", pp.port), timeout=10) as sock:
        status, fields = raw_startup(sock, user="postgres", database=DB, params={"replication": "maybe"})
    assert status == "error"
    assert (fields["C"], fields["M"]) == ("22023", 'invalid value for parameter "replication": "maybe"')


def test_replication_client_in_transaction_mode_keeps_a_dedicated_walsender(pgpulse, pg, repl_db):
    metrics_port = free_port()
    pp = start(pgpulse, pool_mode="transaction", default_pool_size=1, max_db_connections=1,
               metrics_addr="127.0.0.1", metrics_port=metrics_port)
    repl = psycopg.connect(dsn(pp, application_name=APP_NAME), replication="database", autocommit=True,
                           connect_timeout=10)
    try:
        system = repl.execute("IDENTIFY_SYSTEM").fetchone()
        assert system[0] == pg.query("SELECT system_identifier::text FROM pg_control_system()")[0][0]
        # the same backend for every command, and it is the pid the client was given
        pids = {repl.execute("SELECT pg_backend_pid()").fetchone()[0] for _ in range(3)}
        assert pids == {repl.info.backend_pid}
        assert [p for p, app in walsenders(pg) if app == APP_NAME] == [repl.info.backend_pid]

        # the walsender takes no place in the transaction pool (size 1, max_db_connections 1)
        with pp.connect(dbname=DB, user="postgres", password=PASSWORD, autocommit=True) as other:
            assert other.execute("SELECT 1").fetchone() == (1,)
            assert other.info.backend_pid != repl.info.backend_pid
        modes = sorted((p["pool_mode"], p["sv_active"] + p["sv_idle"]) for p in pp.show("POOLS")
                       if p["database"] == DB)
        assert modes == [("replication", 1), ("transaction", 1)]
        # two pools of one database and user: their Prometheus series stay apart
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            series = [line.rsplit(" ", 1)[0] for line in r.read().decode().splitlines()
                      if line.startswith("pgpulse_pool_servers{") and f'database="{DB}"' in line]
        assert len(series) == len(set(series)) == 8, series
        assert any('pool="replication"' in line and 'state="active"' in line for line in series)
        assert repl.execute("SELECT pg_backend_pid()").fetchone()[0] == repl.info.backend_pid
    finally:
        repl.close()
    wait_until(lambda: not walsenders(pg), 10, "the walsender to exit with its client")


def test_pg_basebackup_through_pgpulse(pgpulse, pg, repl_db, tmp_path):
    # BASE_BACKUP's several results, and a second walsender streaming WAL beside it (-X stream)
    pp = start(pgpulse)
    target = tmp_path / "backup"
    run(pg_bin("pg_basebackup"), "-d", dsn(pp), "-D", str(target), "-X", "stream", "-c", "fast", "--no-sync",
        timeout=120)
    run(pg_bin("pg_verifybackup"), "-n", str(target))
    assert pp.log().count("closing because: replication client disconnected") == 2


def test_admin_console_takes_no_replication_connection(pgpulse, pg):
    pp = start(pgpulse, auth_type="trust")
    with socket.create_connection(("127.0.0.1", pp.port), timeout=10) as sock:
        status, fields = raw_startup(sock, user="admin", database="pgpulse", params={"replication": "database"})
    assert (status, fields["C"]) == ("error", "0A000")


def test_walsender_refused_by_postgresql_is_its_clients_error(pgpulse, pg, repl_db):
    # app has no REPLICATION attribute: PostgreSQL refuses the walsender after authenticating it.
    # Each attempt gets PostgreSQL's own error at once: a walsender's failure is its client's,
    # not a pool-wide login failure that would hold the next client for server_login_retry.
    pp = start(pgpulse)
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError, match="to start (walsender|WAL sender)"):
            psycopg.connect(dsn(pp, user="app", password="app_pw"), replication="database", connect_timeout=5)
    assert pp.show("SERVERS") == []


def test_a_logical_walsender_gets_the_clients_startup_settings(pgpulse, pg, repl_db):
    # a walsender takes no SET: options and other settings go in its startup packet
    pp = start(pgpulse)
    repl = psycopg.connect(dsn(pp, options="'-c statement_timeout=4321'"), replication="database",
                           autocommit=True, connect_timeout=10)
    try:
        assert repl.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
    finally:
        repl.close()
    wait_until(lambda: not walsenders(pg), 10, "the walsender to exit with its client")
