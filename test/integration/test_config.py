"""Configuration, end to end, on the real binary: PgBouncer ini files,
%include, errors and warnings with file:line, units, the command line
(-V, -h, -d, root refusal), RELOAD/SIGHUP, ignore_startup_parameters and
the shutdown signals."""

import os
import re
import resource
import signal
import socket
import struct
import subprocess
import threading
import time

import psycopg
import pytest

from pgpulse_harness import not_in_effect_parameters, port_accepts, wait_until

USERS = {"app": "app_pw", "admin": "admin_pw"}

MINIMAL = """\
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


def config_value(pp, key):
    rows = [r for r in pp.show("CONFIG") if r["key"] == key]
    assert rows, f"SHOW CONFIG has no {key}"
    return rows[0]["value"]


def line_of(path, text):
    """1-based number of the line of file `path` that starts with `text`."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.startswith(text):
                return n
    raise AssertionError(f"{text!r} not in {path}")


def run_bin(pgpulse_bin, *args, timeout=10):
    """Run the binary in the foreground and wait for it; for runs that must
    end by themselves (-V, -h, a bad configuration).  A run that does not end
    within `timeout` is killed and fails the test."""
    return subprocess.run([pgpulse_bin, *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


# ------------------------------------------------- a minimal raw protocol client

class LoginRefused(Exception):
    def __init__(self, fields):
        self.sqlstate, self.message = fields.get("C"), fields.get("M")
        super().__init__(f"{self.sqlstate}: {self.message}")


def raw_trust_session(port, params, query="SELECT 1"):
    """Log in with the given startup parameters where no password is asked
    (auth_type trust), run `query`, return its first column values.
    Raises LoginRefused with the ErrorResponse's SQLSTATE and message."""
    body = struct.pack("!I", 196608)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack("!I", len(body) + 4) + body)
        buf = b""

        def read_msg():
            nonlocal buf
            while len(buf) < 5 or len(buf) < 1 + struct.unpack("!I", buf[1:5])[0]:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed by pgpulse, unread {buf!r}")
                buf += chunk
            n = 1 + struct.unpack("!I", buf[1:5])[0]
            msg, buf = buf[:n], buf[n:]
            return msg[:1], msg[5:]

        def fields(b):
            return {chr(p[0]): p[1:].decode() for p in b.split(b"\0") if p}

        sent_query = False
        values = []
        while True:
            mtype, b = read_msg()
            if mtype == b"E":
                raise LoginRefused(fields(b))
            if mtype == b"R":
                assert struct.unpack("!I", b[:4])[0] == 0, "asked for a password"
            elif mtype == b"D":
                ln = struct.unpack("!i", b[2:6])[0]
                values.append(b[6:6 + ln].decode())
            elif mtype == b"Z":
                if sent_query:
                    s.sendall(b"X\0\0\0\4")
                    return values
                s.sendall(b"Q" + struct.pack("!I", len(query) + 5) + query.encode() + b"\0")
                sent_query = True


# ------------------------------------------------------------ PgBouncer files

PGBOUNCER_INI = """\
;; pgbouncer.ini as a PgBouncer user has it
[{section}]
;;; where to listen
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
;;; who may log in
auth_type = md5
auth_file = {auth_file}
admin_users = admin
stats_users = stats, monitor
;;; pooling
pool_mode = transaction
max_client_conn = 50
default_pool_size = 3
min_pool_size = 0
reserve_pool_size = 1
reserve_pool_timeout = 3
max_db_connections = 0
server_reset_query = DISCARD ALL
server_check_query = select 1
server_check_delay = 30
server_lifetime = 3600
server_idle_timeout = 600
server_connect_timeout = 15
server_login_retry = 15
client_login_timeout = 60
query_wait_timeout = 30
ignore_startup_parameters = extra_float_digits
;;; logging and process
log_connections = 1
log_disconnections = 1
log_pooler_errors = 1
stats_period = 60
pkt_buf = 4096
tcp_keepalive = 1
pidfile = {pidfile}

%include {dir}/databases.ini
"""


@pytest.mark.parametrize("section", ["pgbouncer", "pgpulse"])
def test_pgbouncer_ini_with_included_databases_works_unchanged(pgpulse, section):
    pp = pgpulse(PGBOUNCER_INI.replace("{section}", section), USERS, start=False)
    with open(os.path.join(pp.dir, "databases.ini"), "w") as f:
        f.write(f"[databases]\nmydb = host={pp.pg.host} port={pp.pg.port} dbname=appdb\n")
    pp.start()
    log = pp.log()
    assert "WARNING" not in log and "unknown" not in log, log
    with pp.connect(dbname="mydb") as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("appdb",)
    assert {r["key"]: r["value"] for r in pp.show("CONFIG")
            if r["key"] in ("auth_type", "pool_mode", "max_client_conn", "default_pool_size",
                            "query_wait_timeout", "ignore_startup_parameters")} == {
        "auth_type": "md5", "pool_mode": "transaction", "max_client_conn": "50",
        "default_pool_size": "3", "query_wait_timeout": "30",
        "ignore_startup_parameters": "extra_float_digits"}
    assert [(r["name"], r["database"]) for r in pp.show("DATABASES") if r["name"] == "mydb"] \
        == [("mydb", "appdb")]
    with open(pp.pidfile) as f:
        assert int(f.read().strip()) == pp.pid


def test_relative_include_is_relative_to_the_including_file(pgpulse):
    # pgpulse runs in {dir}; conf.d/databases.ini includes "more.ini", which
    # exists only in conf.d: read relative to the working directory, it
    # would be missing and pgpulse would not start.
    pp = pgpulse(MINIMAL.replace("[databases]\n", "[databases]\n%include conf.d/databases.ini\n"),
                 USERS, start=False)
    confd = os.path.join(pp.dir, "conf.d")
    os.mkdir(confd)
    with open(os.path.join(confd, "databases.ini"), "w") as f:
        f.write("%include more.ini\n")
    with open(os.path.join(confd, "more.ini"), "w") as f:
        f.write(f"other = host={pp.pg.host} port={pp.pg.port} dbname=postgres\n")
    pp.start()
    with pp.connect(dbname="other") as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("postgres",)


# ---------------------------------------------------------- errors and warnings

BAD_VALUES = [
    # (line to add to the main section, or a [databases] line, what stderr must say)
    ("default_pool_size = abc", 'default_pool_size: invalid integer "abc"'),
    ("auth_type = radius", 'auth_type: invalid value "radius"'),
    ("listen_backlog = 0", "listen_backlog: "),
    ("query_wait_timeout = -5", "query_wait_timeout: "),
    ("query_wait_timeout = 5 fortnights", "query_wait_timeout: "),
    ("bad = host=127.0.0.1 port=70000", 'database "bad": port: '),
    ("scram_iterations = 100001", "scram_iterations: 100001 is out of range (1 .. 100000)"),
]


@pytest.mark.parametrize("line,says", BAD_VALUES, ids=[b[0].split(" =")[0] + "-" + str(i)
                                                       for i, b in enumerate(BAD_VALUES)])
def test_bad_value_stops_startup_naming_file_line_and_parameter(pgpulse, pgpulse_bin, line, says):
    if line.startswith("bad ="):
        text = MINIMAL.replace("[pgbouncer]\n", line + "\n[pgbouncer]\n")
    else:
        text = MINIMAL + line + "\n"
    pp = pgpulse(text, USERS, start=False)
    r = run_bin(pgpulse_bin, pp.ini_path)
    assert r.returncode != 0
    where = f"{pp.ini_path}:{line_of(pp.ini_path, line)}: "
    assert where + says in r.stderr, r.stderr


def test_bad_value_in_included_file_names_that_file_and_line(pgpulse, pgpulse_bin):
    pp = pgpulse(MINIMAL + "%include {dir}/tuning.ini\n", USERS, start=False)
    tuning = os.path.join(pp.dir, "tuning.ini")
    with open(tuning, "w") as f:
        f.write("; tuning\nmax_client_conn = 100\nmin_pool_size = lots\n")
    r = run_bin(pgpulse_bin, pp.ini_path)
    assert r.returncode != 0
    assert f'{tuning}:3: min_pool_size: invalid integer "lots"' in r.stderr, r.stderr


@pytest.mark.parametrize("where", ["main", "databases"])
def test_unknown_parameter_is_a_warning_and_pgpulse_starts(pgpulse, where):
    if where == "main":
        text, line, says = MINIMAL + "frobnicate_level = 3\n", "frobnicate_level", \
            'unknown parameter "frobnicate_level"'
    else:
        text = MINIMAL.replace("dbname=appdb\n", "dbname=appdb frobnicate_level=3\n")
        line, says = "appdb =", 'database "appdb": unknown parameter "frobnicate_level"'
    pp = pgpulse(text, USERS)
    assert f"{pp.ini_path}:{line_of(pp.ini_path, line)}: {says}" in pp.log()
    with pp.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# values PgBouncer files write for the parameters that are not in effect (a
# parameter missing here is written empty, its default)
DEFAULTS_AS_WRITTEN = {
    "application_name_add_host": "0", "disable_pqexec": "0", "dns_zone_check_period": "0",
    "job_name": "pgpulse", "log_stats": "1", "max_prepared_statements": "0", "peer_id": "0",
    "sbuf_loopcnt": "5", "server_fast_close": "0", "service_name": "pgpulse",
    "tcp_defer_accept": "1", "tcp_keepcnt": "0", "tcp_keepidle": "0", "tcp_keepintvl": "0",
    "tcp_socket_buffer": "0", "tcp_user_timeout": "0", "track_extra_parameters": "IntervalStyle",
}


def _not_in_effect_warning(pp, name):
    return re.escape(f"{pp.ini_path}:{line_of(pp.ini_path, name + ' =')}: {name} is accepted but not "
                     "in effect in this release")


def test_no_parameter_is_accepted_without_effect_and_peer_id_warns_of_nothing(pgpulse):
    """doc/config.md's "Accepted but not in effect" list is empty: peer_id,
    the last one, is in effect (peering). A PgBouncer file that writes it
    gets no such warning, at start or at a reload."""
    assert not_in_effect_parameters() == []
    pp = pgpulse(MINIMAL + "peer_id = 0\n", USERS)
    for how in ("RELOAD", "SIGHUP"):
        mark = pp.log_mark()
        if how == "RELOAD":
            assert pp.command("RELOAD") == "RELOAD"
        else:
            pp.reload()
        pp.wait_log(re.escape(f"configuration reloaded from {pp.ini_path}"), since=mark)
    assert "not in effect" not in pp.log()
    with pp.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_console_set_of_a_parameter_not_in_effect_never_passes_in_silence(pgpulse):
    """Each parameter not in effect, SET on the console: either refused (it
    needs a restart, as peer_id does) or accepted with a WARNING naming it;
    never a plain SET. A parameter in effect says nothing more."""
    pp = pgpulse(MINIMAL, USERS)
    conn = pp.admin()
    notices = []
    conn.add_notice_handler(lambda d: notices.append((d.severity, d.sqlstate, d.message_primary)))
    # peer_id, in effect now, is refused while running: the keys handed out carry it
    with pytest.raises(psycopg.errors.CantChangeRuntimeParam, match="peer_id: cannot be changed while running"):
        conn.execute("SET peer_id = '3'")
    names = not_in_effect_parameters()
    for name in names:
        value = DEFAULTS_AS_WRITTEN.get(name, "")
        del notices[:]
        try:
            conn.execute(f"SET {name} = '{value}'")
        except psycopg.errors.CantChangeRuntimeParam as e:
            assert f"{name}: cannot be changed while running" in str(e)
            continue
        assert notices == [("WARNING", "01000",
                            f"{name} is accepted but not in effect in this release: pgpulse ignores it")]
    del notices[:]
    conn.execute("SET default_pool_size = 7")
    assert notices == []


def test_a_file_that_sets_no_such_parameter_gets_no_such_warning(pgpulse):
    pp = pgpulse(MINIMAL, USERS)
    mark = pp.log_mark()
    assert pp.command("RELOAD") == "RELOAD"
    assert "not in effect" not in pp.log()
    assert "not in effect" not in pp.log(since=mark)


@pytest.mark.parametrize("method", ["pam", "ldap"])
def test_pam_and_ldap_stop_startup_naming_the_setting(pgpulse, pgpulse_bin, method):
    pp = pgpulse(MINIMAL.replace("auth_type = scram-sha-256", f"auth_type = {method}"), USERS, start=False)
    r = run_bin(pgpulse_bin, pp.ini_path)
    assert r.returncode == 1, r.stderr
    line = line_of(pp.ini_path, "auth_type")
    assert (f'{pp.ini_path}:{line}: auth_type: "{method}" is not supported: pgpulse has no PAM or LDAP '
            "authentication") in r.stderr, r.stderr


@pytest.mark.parametrize("method", ["pam", "ldap"])
def test_reload_to_pam_or_ldap_is_refused_and_logins_go_on(pgpulse, method):
    pp = pgpulse(MINIMAL, USERS)
    mark = pp.log_mark()
    pp.write_config(MINIMAL.replace("auth_type = scram-sha-256", f"auth_type = {method}"))
    pp.reload()
    pp.wait_log(re.escape(f'reload failed, keeping the running configuration: {pp.ini_path}:'
                          f'{line_of(pp.ini_path, "auth_type")}: auth_type: "{method}" is not supported'),
                since=mark)
    assert pp.running
    assert config_value(pp, "auth_type") == "scram-sha-256"
    with pp.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_user_that_is_the_running_user_is_accepted(pgpulse):
    import pwd
    me = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        pytest.skip("as root, user = root is refused; test/root-user.sh covers the switch")
    pp = pgpulse(MINIMAL + f"user = {me}\n", USERS)
    with pp.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_user_that_does_not_exist_stops_startup(pgpulse, pgpulse_bin):
    pp = pgpulse(MINIMAL + "user = no_such_user_pgpulse\n", USERS, start=False)
    r = run_bin(pgpulse_bin, pp.ini_path)
    assert r.returncode == 1, r.stderr
    line = line_of(pp.ini_path, "user =")
    assert f'{pp.ini_path}:{line}: user: user "no_such_user_pgpulse" does not exist' in r.stderr, r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may switch to any user")
def test_user_another_unprivileged_user_cannot_become_is_refused(pgpulse, pgpulse_bin):
    pp = pgpulse(MINIMAL + "user = root\n", USERS, start=False)
    r = run_bin(pgpulse_bin, pp.ini_path)
    assert r.returncode == 1, r.stderr
    assert 'user: cannot switch to user "root": pgpulse runs as' in r.stderr, r.stderr
    assert "not as root" in r.stderr, r.stderr


def test_quiet_mode_still_writes_config_warnings_to_the_logfile(pgpulse):
    # the config names the logfile: its own warnings come before the file is open
    text = MINIMAL + "frobnicate_level = 3\nlogfile = {dir}/quiet.log\n"
    pp = pgpulse(text, USERS, args=("-q",))
    with pp.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    says = f'{pp.ini_path}:{line_of(pp.ini_path, "frobnicate_level")}: unknown parameter "frobnicate_level"'
    logged = open(os.path.join(pp.dir, "quiet.log")).read()
    assert says in logged, logged
    assert logged.index(says) < logged.index("started"), logged  # in the order it happened
    assert says not in pp.log()  # -q: nothing but errors on stderr


def test_quiet_mode_stays_quiet_after_a_reload(pgpulse):
    text = MINIMAL + "logfile = {dir}/quiet.log\n"
    pp = pgpulse(text, USERS, args=("-q",))
    pp.proc.send_signal(signal.SIGHUP)
    logfile = os.path.join(pp.dir, "quiet.log")
    wait_until(lambda: "configuration reloaded" in open(logfile).read(), 10, "the reload to be logged")
    pp.command("RELOAD")
    wait_until(lambda: open(logfile).read().count("configuration reloaded") == 2, 10, "the second reload")
    assert "configuration reloaded" not in pp.log()  # -q still holds for stderr


UNITS = [
    ("query_wait_timeout", "1500ms", "1.5"),
    ("server_idle_timeout", "2min", "120"),
    ("server_lifetime", "1.5 h", "5400"),
    ("client_login_timeout", "250000us", "0.25"),
    ("server_connect_timeout", "7", "7"),
    ("tcp_user_timeout", "30s", "30000"),
    ("tcp_user_timeout", "1500", "1500"),
    ("max_packet_size", "1MB", "1048576"),
]


@pytest.mark.parametrize("key,written,shown", UNITS,
                         ids=[f"{k}={w}" for k, w, _ in UNITS])
def test_units_are_understood_and_show_config_prints_plain_numbers(pgpulse, key, written, shown):
    pp = pgpulse(MINIMAL + f"{key} = {written}\n", USERS)
    assert config_value(pp, key) == shown


def test_query_wait_timeout_in_milliseconds_takes_effect(pgpulse):
    pp = pgpulse(MINIMAL.replace("default_pool_size = 2", "default_pool_size = 1")
                 + "query_wait_timeout = 1500ms\n", USERS)
    holder = pp.connect()
    holder.execute("SELECT 1")  # an open transaction keeps the only server
    waiter = pp.connect()
    start = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
        waiter.execute("SELECT 1")
    elapsed = time.monotonic() - start
    assert 1.4 <= elapsed < 5, f"the wait ended after {elapsed:.2f}s, expected about 1.5s"
    holder.rollback()


# ------------------------------------------------------------------ command line

def test_dash_V_prints_the_version(pgpulse_bin):
    for opt in ("-V", "--version"):
        r = run_bin(pgpulse_bin, opt)
        assert r.returncode == 0
        assert re.fullmatch(r"pgpulse \d+\.\d+\.\d+\S*\n", r.stdout), r.stdout


def test_dash_h_prints_usage(pgpulse_bin):
    r = run_bin(pgpulse_bin, "-h")
    assert r.returncode == 0
    assert "Usage: pgpulse" in r.stdout
    for opt in ("-d", "-u", "-V", "-q", "-v"):
        assert opt in r.stdout


def test_no_config_file_argument_prints_usage_and_fails(pgpulse_bin):
    r = run_bin(pgpulse_bin)
    assert r.returncode != 0
    assert "Usage: pgpulse" in r.stderr


def test_missing_config_file_is_a_clear_error(pgpulse_bin, session_dir):
    missing = os.path.join(session_dir, "no-such-dir", "pgpulse.ini")
    r = run_bin(pgpulse_bin, missing)
    assert r.returncode != 0
    assert missing in r.stderr and "No such file or directory" in r.stderr, r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only testable when the suite runs as root")
def test_refuses_to_run_as_root_without_dash_u(pgpulse, pgpulse_bin):
    pp = pgpulse(MINIMAL, USERS, start=False)
    r = run_bin(pgpulse_bin, pp.ini_path)
    assert r.returncode != 0
    assert "root" in r.stderr and "-u" in r.stderr


def _process_state(pid):
    """The state letter of /proc/pid/stat, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _is_our_daemon(pid, pgpulse_bin):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode() == pgpulse_bin
    except OSError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_daemon_mode_detaches_and_writes_the_pidfile(pgpulse, pgpulse_bin, stop_signal):
    text = MINIMAL + "logfile = {dir}/daemon.log\npidfile = {pidfile}\n"
    pp = pgpulse(text, USERS, args=("-d",), start=False)
    pp.start(wait=False)
    assert pp.proc.wait(10) == 0, pp.log()  # the launcher returns at once
    pid = None
    try:
        pid = wait_until(lambda: os.path.exists(pp.pidfile) and
                         int(open(pp.pidfile).read().strip() or 0), 10,
                         "the pidfile to hold a pid")
        assert pid != pp.proc.pid
        assert _is_our_daemon(pid, pgpulse_bin)
        assert os.getsid(pid) != os.getsid(0), "the daemon is still in our session"
        assert os.path.realpath(f"/proc/{pid}/fd/0") == "/dev/null"
        wait_until(lambda: port_accepts(pp.port), 10, "the daemon to accept connections")
        with pp.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert "started" in open(os.path.join(pp.dir, "daemon.log")).read()
        os.kill(pid, stop_signal)
        wait_until(lambda: _process_state(pid) in (None, "Z"), 10, "the daemon to exit")
        assert not os.path.exists(pp.pidfile)
    finally:
        if pid and _process_state(pid) not in (None, "Z") and _is_our_daemon(pid, pgpulse_bin):
            os.kill(pid, signal.SIGKILL)


def test_daemon_mode_without_logfile_is_refused(pgpulse, pgpulse_bin):
    pp = pgpulse(MINIMAL + "pidfile = {pidfile}\n", USERS, start=False)
    r = run_bin(pgpulse_bin, "-d", pp.ini_path)
    assert r.returncode != 0
    assert "logfile" in r.stderr
    assert not os.path.exists(pp.pidfile)


def _kill_daemon_of(pp, pgpulse_bin):
    """Stop, by its pidfile, a daemon that a run with -d left behind."""
    pid = wait_until(lambda: os.path.exists(pp.pidfile) and
                     int(open(pp.pidfile).read().strip() or 0), 10, "the daemon's pidfile")
    if _is_our_daemon(pid, pgpulse_bin):
        os.kill(pid, signal.SIGKILL)


def test_unopenable_logfile_stops_startup_before_daemonizing(pgpulse, pgpulse_bin):
    # PgBouncer refuses too: a daemon that cannot log runs blind
    logfile = "{dir}/no-such-dir/pgpulse.log"
    pp = pgpulse(MINIMAL + f"logfile = {logfile}\npidfile = {{pidfile}}\n", USERS, start=False)
    logfile = pp.render(logfile)
    r = run_bin(pgpulse_bin, "-d", pp.ini_path)
    if r.returncode == 0:
        _kill_daemon_of(pp, pgpulse_bin)
    assert r.returncode != 0, "pgpulse started without a logfile it could open"
    assert f'cannot open logfile "{logfile}": No such file or directory' in r.stderr, r.stderr
    assert not port_accepts(pp.port)


def test_missing_auth_file_stops_startup_naming_the_config_line_and_path(pgpulse, pgpulse_bin):
    pp = pgpulse(MINIMAL.replace("auth_file = {auth_file}", "auth_file = {dir}/missing.txt"),
                 USERS, start=False)
    r = run_bin(pgpulse_bin, pp.ini_path)
    assert r.returncode != 0
    line = line_of(pp.ini_path, "auth_file")
    says = f"{pp.ini_path}:{line}: auth_file: {pp.dir}/missing.txt: No such file or directory"
    assert says in r.stderr, r.stderr


# ---------------------------------------------------------------------- reload

@pytest.mark.parametrize("how", ["RELOAD", "SIGHUP"])
def test_reload_points_a_database_at_its_new_dbname(pgpulse, how):
    pp = pgpulse(MINIMAL, USERS)
    conn = pp.connect()
    assert conn.execute("SELECT current_database()").fetchone() == ("appdb",)
    conn.commit()  # its server is idle in the pool now
    pp.write_config(MINIMAL.replace("dbname=appdb", "dbname=postgres"))
    if how == "RELOAD":
        assert pp.command("RELOAD") == "RELOAD"
    else:
        mark = pp.log_mark()
        pp.reload()
        pp.wait_log(re.escape(f"configuration reloaded from {pp.ini_path}"), since=mark)
    # the next transaction, of the same client and of a new one, runs on the new database
    assert conn.execute("SELECT current_database()").fetchone() == ("postgres",)
    conn.commit()
    with pp.connect() as fresh:
        assert fresh.execute("SELECT current_database()").fetchone() == ("postgres",)


def test_sighup_applies_a_new_default_pool_size_each_time(pgpulse):
    pp = pgpulse(MINIMAL, USERS)
    assert config_value(pp, "default_pool_size") == "2"
    for size in ("7", "5"):
        mark = pp.log_mark()
        pp.write_config(MINIMAL.replace("default_pool_size = 2", f"default_pool_size = {size}"))
        pp.reload()
        # the log says which file was read
        pp.wait_log(re.escape(f"configuration reloaded from {pp.ini_path}\n"), since=mark)
        assert config_value(pp, "default_pool_size") == size


BROKEN = MINIMAL.replace("default_pool_size = 2", "default_pool_size = 9\nmax_client_conn = many")


def test_sighup_with_a_broken_file_keeps_the_running_config(pgpulse):
    pp = pgpulse(MINIMAL, USERS)
    mark = pp.log_mark()
    pp.write_config(BROKEN)
    pp.reload()
    line = line_of(pp.ini_path, "max_client_conn")
    pp.wait_log(re.escape(f'{pp.ini_path}:{line}: max_client_conn: invalid integer "many"'),
                since=mark)
    assert pp.running
    # nothing of the file applied, not even its valid lines
    assert config_value(pp, "default_pool_size") == "2"
    assert config_value(pp, "max_client_conn") == "100"
    with pp.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_admin_reload_with_a_broken_file_fails_with_F0000(pgpulse):
    pp = pgpulse(MINIMAL, USERS)
    pp.write_config(BROKEN)
    admin = pp.admin()
    with pytest.raises(psycopg.Error) as info:
        admin.execute("RELOAD")
    assert info.value.sqlstate == "F0000"
    line = line_of(pp.ini_path, "max_client_conn")
    assert f'RELOAD failed: {pp.ini_path}:{line}: max_client_conn: invalid integer "many"' \
        in str(info.value)
    assert config_value(pp, "default_pool_size") == "2"


def test_reload_with_an_unopenable_logfile_keeps_the_old_one(pgpulse):
    # a running service does not die, nor go blind, on a RELOAD: the error
    # lands in the file in use, and the next RELOAD tries the new path again
    old_log = "{dir}/old.log"
    pp = pgpulse(MINIMAL + f"logfile = {old_log}\n", USERS)
    old_log = pp.render(old_log)
    new_dir = os.path.join(pp.dir, "logs")
    new_log = os.path.join(new_dir, "new.log")
    pp.write_config(MINIMAL + f"logfile = {new_log}\n")
    mark = os.path.getsize(old_log)
    pp.reload()
    wait_until(lambda: "configuration reloaded" in open(old_log).read()[mark:], 10,
               "the reload to be logged in the old logfile")
    logged = open(old_log).read()[mark:]
    assert f'cannot open logfile "{new_log}": No such file or directory' in logged, logged
    assert pp.running
    assert config_value(pp, "logfile") == old_log
    with pp.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    os.mkdir(new_dir)
    pp.reload()
    wait_until(lambda: os.path.exists(new_log) and "configuration reloaded" in open(new_log).read(),
               10, "the next reload to switch to the new logfile")
    assert config_value(pp, "logfile") == new_log


# ------------------------------------------------------ file descriptor limit

def _needs_hard_fd_limit(n):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n:
        pytest.skip(f"the test needs a hard descriptor limit of {n}, has {hard}")


def test_soft_fd_limit_is_raised_for_a_large_max_client_conn(pgpulse):
    # a soft limit of 1,024 (the usual default) refused logins long before max_client_conn
    _needs_hard_fd_limit(8192)
    pp = pgpulse(MINIMAL + "max_client_conn = 3000\n", USERS, nofile=(256, 8192))
    soft, hard = pp.fd_limits()
    assert 3000 < soft <= 8192 and hard == 8192, (soft, hard)
    assert "raised the file descriptor limit from 256" in pp.log()
    with pp.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_hard_fd_limit_below_max_client_conn_is_a_warning(pgpulse):
    pp = pgpulse(MINIMAL + "max_client_conn = 3000\n", USERS, nofile=(256, 512))
    assert pp.fd_limits() == (512, 512)  # as far as it goes
    assert re.search(r"WARNING the file descriptor limit \(hard 512\) is below the \d+ that "
                     r"max_client_conn = 3000", pp.log()), pp.log()


def test_reload_with_a_larger_max_client_conn_raises_the_soft_fd_limit(pgpulse):
    _needs_hard_fd_limit(8192)
    pp = pgpulse(MINIMAL, USERS, nofile=(256, 8192))
    assert pp.fd_limits() == (256, 8192)  # 100 clients and a pool of 2 fit
    pp.write_config(MINIMAL + "max_client_conn = 5000\n")
    pp.reload()
    wait_until(lambda: pp.fd_limits()[0] > 5000, 10, "the soft limit to follow max_client_conn")


# ---------------------------------------------------- ignore_startup_parameters

TRUST = MINIMAL.replace("auth_type = scram-sha-256", "auth_type = trust")


@pytest.mark.parametrize("param,value,name,shown", [("options", "-c statement_timeout=5s", "statement_timeout", "5s"),
                                                    ("extra_float_digits", "2", "extra_float_digits", "2")])
def test_unlisted_startup_parameter_reaches_the_server(pgpulse, param, value, name, shown):
    pp = pgpulse(TRUST, USERS)
    assert raw_trust_session(pp.port, {"user": "app", "database": "appdb", param: value},
                             f"SHOW {name}") == [shown]


def test_listed_startup_parameters_are_accepted_and_ignored(pgpulse):
    pp = pgpulse(TRUST + "ignore_startup_parameters = extra_float_digits, options\n", USERS)
    assert raw_trust_session(pp.port, {"user": "app", "database": "appdb",
                                       "extra_float_digits": "2"},
                             "SELECT 'ok'") == ["ok"]
    with pp.connect(options="-c statement_timeout=5s") as conn:
        # accepted, and not passed on to the server
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)


# --------------------------------------------------------------------- signals

def _run_in_thread(fn):
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as e:  # reported by the caller
            result["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, result


def test_sigint_lets_the_running_transaction_finish_then_exits(pgpulse, pg):
    pp = pgpulse(MINIMAL, USERS)
    conn = pp.connect(application_name="sigint-xact")
    conn.execute("CREATE TEMP TABLE t (x int)")  # a transaction is open from here
    t, result = _run_in_thread(
        lambda: conn.execute("INSERT INTO t SELECT 1 FROM pg_sleep(1)").rowcount)
    wait_until(lambda: any("pg_sleep" in (b["query"] or "") and b["state"] == "active"
                           for b in pg.backends(dbname="appdb")), 5, "the pg_sleep to run")
    pp.signal(signal.SIGINT)
    wait_until(lambda: not port_accepts(pp.port), 5, "pgpulse to stop accepting connections")
    t.join(10)
    assert "error" not in result, result
    assert result["value"] == 1
    # still inside the transaction: more statements and the COMMIT go through
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
    conn.commit()
    assert pp.wait_exit(10) == 0


def test_sigterm_stops_listening_and_exits_when_the_last_client_leaves(pgpulse):
    pp = pgpulse(MINIMAL, USERS)
    conn = pp.connect()
    conn.execute("SELECT 1")
    conn.commit()
    pp.signal(signal.SIGTERM)
    wait_until(lambda: not port_accepts(pp.port), 5, "pgpulse to stop accepting connections")
    with pytest.raises(psycopg.OperationalError):
        pp.connect(connect_timeout=3)
    # the connected client is still served, transaction after transaction
    for i in range(3):
        assert conn.execute("SELECT %s::int", (i,)).fetchone() == (i,)
        conn.commit()
    assert pp.running
    conn.close()
    assert pp.wait_exit(10) == 0


def test_second_sigterm_exits_at_once(pgpulse):
    pp = pgpulse(MINIMAL, USERS)
    conn = pp.connect()
    conn.execute("SELECT 1")
    conn.commit()
    pp.signal(signal.SIGTERM)
    wait_until(lambda: not port_accepts(pp.port), 5, "the first SIGTERM to take effect")
    pp.signal(signal.SIGTERM)
    assert pp.wait_exit(5) == 0
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")


def test_sigquit_exits_at_once(pgpulse):
    pp = pgpulse(MINIMAL, USERS)
    conn = pp.connect()
    conn.execute("SELECT 1")  # inside a transaction: SIGINT would wait for it
    pp.signal(signal.SIGQUIT)
    assert pp.wait_exit(5) == 0
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")


def test_admin_shutdown_exits(pgpulse):
    pp = pgpulse(MINIMAL, USERS)
    client = pp.connect()
    client.execute("SELECT 1")
    admin = pp.admin()
    try:
        assert admin.execute("SHUTDOWN").statusmessage == "SHUTDOWN"
    except psycopg.OperationalError:
        pass  # the connection may close before the tag is read
    assert pp.wait_exit(5) == 0
    with pytest.raises(psycopg.OperationalError):
        client.execute("SELECT 1")
