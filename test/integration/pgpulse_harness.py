"""pgpulse integration harness: a scratch PostgreSQL and pgpulse processes.

Two ideas make it work:
- One PostgreSQL cluster serves the whole pytest session (initdb is the slow
  part); every pgpulse a test starts is its own process with its own ini, its
  own port and its own directory, and is stopped when the test ends.
- Nothing waits blindly: readiness is polled (every 20 ms, with a deadline) and
  a timeout fails with the log that explains it.

Fixtures built on this live in conftest.py; tests import helpers from here:

    from pgpulse_harness import wait_until, psql, pg_bin, ROLE_PASSWORDS

Everything listens on 127.0.0.1 or on unix sockets in private temp dirs.
"""

import base64
import contextlib
import ctypes
import glob
import hashlib
import hmac
import json
import math
import os
import random
import re
import selectors
import resource
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest

# Roles of the scratch cluster, their passwords (None: no password) and the
# pg_hba.conf method each meets on 127.0.0.1.
ROLE_PASSWORDS = {
    "postgres": "postgres_pw",   # superuser, scram-sha-256
    "app": "app_pw",             # owns appdb, scram-sha-256
    "md5user": "md5_pw",         # password stored as md5, hba md5
    "plainuser": "plain_pw",     # hba password (cleartext on the wire)
    "trustuser": None,           # hba trust
}
ROLE_AUTH_METHODS = {
    "postgres": "scram-sha-256",
    "app": "scram-sha-256",
    "md5user": "md5",
    "plainuser": "password",
    "trustuser": "trust",
}

PG_HBA = """\
# written by the pgpulse test harness
local all all                    trust
host  all trustuser 127.0.0.1/32 trust
host  all md5user   127.0.0.1/32 md5
host  all plainuser 127.0.0.1/32 password
host  all all       127.0.0.1/32 scram-sha-256
# replication connections (test_replication.py): physical ones match only this keyword
local replication all            trust
host  replication all 127.0.0.1/32 scram-sha-256
"""

READY_TIMEOUT = 10.0     # seconds for pgpulse to accept TCP connections
STOP_TIMEOUT = 5.0       # seconds between SIGINT and SIGKILL on teardown
POLL_INTERVAL = 0.02

# The environment of whoever runs the tests must not steer libpq (PGHOST,
# PGPORT, PGSSLMODE, ~/.pgpass ...): every connection here is explicit.
# PGBOUNCER_125 (test_pgbouncer_parity.py) is the suite's own, not libpq's.
for _var in list(os.environ):
    if _var.startswith("PG") and not _var.startswith(("PGPULSE", "PGBOUNCER_")):
        del os.environ[_var]
os.environ["PGPASSFILE"] = os.path.join(tempfile.gettempdir(), "pgpulse-tests-no-pgpass")


# --------------------------------------------------------------- helpers

def not_in_effect_parameters():
    """The parameters doc/config.md lists under "Accepted but not in effect"
    (the unit test test_config_md_lists_exactly_the_parameters_not_in_effect
    holds that list to the parameter table that gives the warning)."""
    top = os.environ.get("PGPULSE_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(top, "doc", "config.md")) as f:
        text = f.read()
    section = text.split("\n## Accepted but not in effect\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `([a-z_0-9]+)`", section, re.M)


def wait_until(predicate, timeout=10.0, what=None, interval=POLL_INTERVAL, ignore=()):
    """Call predicate() every `interval` seconds until it returns something
    truthy, and return that.  After `timeout` seconds fail the test, naming
    `what` and the last value seen.  Exceptions of the types in `ignore` count
    as "not yet"; any other exception propagates at once."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except ignore as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what or getattr(predicate, '__name__', predicate)}"
                f" (last: {last!r})")
        time.sleep(interval)


_handed_out_ports = set()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now.  Chosen
    below the kernel's ephemeral range, so an outgoing connection cannot
    grab it before the process we hand it to binds it."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        if port in _handed_out_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out_ports.add(port)
        return port
    raise RuntimeError("no free TCP port found on 127.0.0.1")


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def count_tcp_sockets(pid, port, listening=False):
    """How many TCP sockets with local port `port` process `pid` itself
    holds: its listening socket(s) with listening=True, else its
    connections (those the kernel queued but pgpulse did not accept are not
    counted)."""
    return sum(1 for s in tcp_sockets(pid)
               if s["local_port"] == port and (s["state"] == "LISTEN") == listening)


def _listens_on(pid, port):
    """Whether process `pid` itself holds a TCP socket listening on `port`
    (and not some other process that took the port)."""
    return count_tcp_sockets(pid, port, listening=True) > 0


def _version_key(path):
    ver = path.split("/")[-3]
    return tuple(int(p) if p.isdigit() else 0 for p in ver.split("."))


_bindir = None


def pg_bindir():
    """PostgreSQL server binaries: $PGPULSE_PG_BINDIR, else the highest
    /usr/lib/postgresql/*/bin (Debian's layout; `pg_config --bindir` there is
    the client-only /usr/bin)."""
    global _bindir
    if _bindir:
        return _bindir
    env = os.environ.get("PGPULSE_PG_BINDIR")
    if env:
        _bindir = env
    else:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
        if found:
            _bindir = os.path.dirname(found[-1])
        else:
            try:
                out = subprocess.run(["pg_config", "--bindir"], capture_output=True,
                                     text=True, check=True).stdout.strip()
            except (OSError, subprocess.CalledProcessError):
                out = ""
            if not out or not os.path.exists(os.path.join(out, "initdb")):
                pytest.fail("PostgreSQL server binaries not found: apt-get install postgresql "
                            "(or set PGPULSE_PG_BINDIR)", pytrace=False)
            _bindir = out
    return _bindir


def pg_bin(name):
    """Path of a PostgreSQL program (psql, pgbench, pg_ctl, ...) of the same
    version as the scratch server."""
    path = os.path.join(pg_bindir(), name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found", pytrace=False)
    return path


def pgbench_path():
    return pg_bin("pgbench")


def _libpq_env(password=None, env=None):
    e = dict(os.environ)
    e.setdefault("PGSSLMODE", "disable")
    e.setdefault("PGCONNECT_TIMEOUT", "10")
    e.pop("PGPASSWORD", None)
    if env:
        e.update(env)
    if password is not None:
        e["PGPASSWORD"] = password
    return e


def psql(port, *args, user="app", dbname="appdb", password=None, host="127.0.0.1",
         input=None, check=True, timeout=60, env=None):
    """Run psql against host:port (pgpulse or PostgreSQL) and return the
    CompletedProcess (text stdout/stderr).  Password: `password`, else the
    role's known test password.  psql never prompts (-w), ignores ~/.psqlrc
    (-X) and stops at the first error.  check=True fails the test on a
    non-zero exit, showing psql's output.

        out = psql(pp.port, "-Atc", "select 1").stdout
    """
    if password is None:
        password = ROLE_PASSWORDS.get(user)
    cmd = [pg_bin("psql"), "-X", "-w", "-v", "ON_ERROR_STOP=1",
           "-h", host, "-p", str(port), "-U", user, "-d", dbname, *args]
    r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                       env=_libpq_env(password, env))
    if check and r.returncode != 0:
        raise AssertionError(f"psql exited {r.returncode}: {' '.join(cmd)}\n"
                             f"--- stdout\n{r.stdout}--- stderr\n{r.stderr}")
    return r


def pgbench(port, *args, user="app", dbname="appdb", password=None, host="127.0.0.1",
            check=True, timeout=300, env=None):
    """Run pgbench against host:port; like psql() above.

        pgbench(pp.port, "-i", "-s", "1")
        r = pgbench(pp.port, "-T", "5", "-c", "10", "-M", "simple")
    """
    if password is None:
        password = ROLE_PASSWORDS.get(user)
    cmd = [pgbench_path(), "-h", host, "-p", str(port), "-U", user, *args, dbname]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=_libpq_env(password, env))
    if check and r.returncode != 0:
        raise AssertionError(f"pgbench exited {r.returncode}: {' '.join(cmd)}\n"
                             f"--- stdout\n{r.stdout}--- stderr\n{r.stderr}")
    return r


def _tail(text, lines=200):
    parts = text.splitlines()
    if len(parts) <= lines:
        return text
    return f"[... {len(parts) - lines} lines omitted ...]\n" + "\n".join(parts[-lines:]) + "\n"


def _read(path, since=0):
    try:
        with open(path, "rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


# pgpulse processes die with the pytest process that started them, even when
# pytest itself is killed (prctl PR_SET_PDEATHSIG).
try:
    _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not glibc: teardown still stops them in the normal case
    _prctl = None


def _die_with_parent():
    if _prctl is not None:
        _prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


# ------------------------------------------------------------ PostgreSQL

class PostgreSQL:
    """A scratch PostgreSQL cluster in a private temp dir.

    Attributes: host ('127.0.0.1'), port, socket_dir, datadir, log_path,
    bindir, version (major, as int)."""

    def __init__(self, base_dir):
        self.bindir = pg_bindir()
        self.dir = tempfile.mkdtemp(prefix="pg", dir=base_dir)
        self.datadir = os.path.join(self.dir, "data")
        self.socket_dir = self.dir
        self.log_path = os.path.join(self.dir, "postgresql.log")
        self.host = "127.0.0.1"
        self.port = None
        self.version = None   # server major version, known once started
        self.stopped = True   # true after stop() until start(): see conftest

    # -- lifecycle

    def _run(self, *cmd, check=True, timeout=120):
        r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {r.returncode}\n--- stdout\n{r.stdout}"
                f"--- stderr\n{r.stderr}--- {self.log_path}\n{_tail(self.log(), 50)}")
        return r

    def init(self):
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(ROLE_PASSWORDS["postgres"] + "\n")
        self._run(os.path.join(self.bindir, "initdb"), "-D", self.datadir, "-U", "postgres",
                  "--pwfile", pwfile, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\ninclude 'pgpulse_test.conf'\n")
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write(PG_HBA)
        self.port = free_port()
        self._write_conf()

    def _write_conf(self):
        conf = f"""\
# written by the pgpulse test harness
port = {self.port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.socket_dir}'
max_connections = 200
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
lc_messages = 'C'
log_connections = on
log_disconnections = on
log_line_prefix = '%m [%p] %q%u@%d '
# replication through pgpulse (test_replication.py): set at initdb time, so no
# test pays for a restart
wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
"""
        with open(os.path.join(self.datadir, "pgpulse_test.conf"), "w") as f:
            f.write(conf)

    def start(self):
        """Start the cluster; return when it accepts connections.  A port
        somebody took meanwhile is replaced by another one."""
        for attempt in range(3):
            mark = self.log_mark()
            r = self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir,
                          "-l", self.log_path, "-w", "-t", "60", "start", check=False)
            if r.returncode == 0:
                break
            if "Address already in use" in self.log(since=mark) and attempt < 2:
                self.port = free_port()
                self._write_conf()
                continue
            raise AssertionError(f"PostgreSQL did not start\n--- pg_ctl\n{r.stdout}{r.stderr}"
                                 f"--- {self.log_path}\n{_tail(self.log(since=mark), 50)}")
        self.stopped = False
        self.wait_ready()

    def stop(self, mode="fast"):
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-m", mode,
                  "-w", "-t", "60", "stop")
        self.stopped = True

    def restart(self, mode="fast"):
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-l", self.log_path,
                  "-m", mode, "-w", "-t", "60", "restart")
        self.stopped = False
        self.wait_ready()

    def running(self):
        r = self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "status",
                      check=False)
        return r.returncode == 0

    def wait_ready(self, timeout=30):
        def ready():
            with psycopg.connect(host=self.socket_dir, port=self.port, user="postgres",
                                 dbname="postgres", connect_timeout=2):
                return True
        wait_until(ready, timeout, "PostgreSQL to accept connections", ignore=(psycopg.Error,))

    def destroy(self):
        """Stop the cluster whatever state it is in (immediate shutdown)."""
        r = self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-m",
                      "immediate", "-w", "-t", "30", "stop", check=False)
        pidfile = os.path.join(self.datadir, "postmaster.pid")
        if r.returncode != 0 and os.path.exists(pidfile):
            try:
                with open(pidfile) as f:
                    os.kill(int(f.readline()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        self.stopped = True

    def setup_roles(self):
        with self.connect(host=self.socket_dir, autocommit=True) as c:
            c.execute("ALTER ROLE postgres PASSWORD 'postgres_pw'")
            c.execute("CREATE ROLE app LOGIN PASSWORD 'app_pw'")
            c.execute("SET password_encryption = 'md5'")
            c.execute("CREATE ROLE md5user LOGIN PASSWORD 'md5_pw'")
            c.execute("RESET password_encryption")
            c.execute("CREATE ROLE plainuser LOGIN PASSWORD 'plain_pw'")
            c.execute("CREATE ROLE trustuser LOGIN")
            c.execute("CREATE DATABASE appdb OWNER app")
            self.version = int(c.execute("SHOW server_version_num").fetchone()[0]) // 10000

    # -- use

    def dsn(self, dbname="postgres", user="postgres", password=None):
        """A libpq connection string for this server over TCP."""
        if password is None:
            password = ROLE_PASSWORDS.get(user)
        s = f"host={self.host} port={self.port} dbname={dbname} user={user} sslmode=disable"
        return s + (f" password={password}" if password is not None else "")

    def connect(self, dbname="postgres", user="postgres", password=None, **kw):
        """A psycopg connection straight to PostgreSQL (not through pgpulse),
        over TCP 127.0.0.1 so that the role's hba method applies (pass
        host=pg.socket_dir for the trusted unix socket).  password defaults to
        the role's test password.  Other keywords go to psycopg.connect."""
        if password is None:
            password = ROLE_PASSWORDS.get(user)
        kw.setdefault("host", self.host)
        kw.setdefault("sslmode", "disable")
        kw.setdefault("connect_timeout", 10)
        if password is not None:
            kw["password"] = password
        return psycopg.connect(port=self.port, dbname=dbname, user=user, **kw)

    def query(self, sql, params=None, dbname="postgres"):
        """Run one statement as superuser (autocommit, unix socket).  Returns
        the rows as a list of tuples, or None for a statement without rows."""
        with psycopg.connect(host=self.socket_dir, port=self.port, user="postgres",
                             dbname=dbname, autocommit=True, connect_timeout=10) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description is not None else None

    def backends(self, dbname=None, user=None):
        """Client backends now connected to PostgreSQL (the harness's own
        query connection excluded), as dicts of pg_stat_activity columns."""
        rows = self.query(
            "SELECT pid, datname, usename, application_name, state, backend_start, query,"
            " wait_event"
            " FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
            " AND (%(db)s::text IS NULL OR datname = %(db)s)"
            " AND (%(user)s::text IS NULL OR usename = %(user)s)",
            {"db": dbname, "user": user})
        cols = ["pid", "datname", "usename", "application_name", "state", "backend_start",
                "query", "wait_event"]
        return [dict(zip(cols, r)) for r in rows]

    def log_mark(self):
        """Current end of the log; pass to log(since=...) to read what follows."""
        return _size(self.log_path)

    def log(self, since=0):
        return _read(self.log_path, since)


# ---------------------------------------------------------------- pgpulse

SANITIZER_REPORT = re.compile(
    r"^.*(==\d+==ERROR: (AddressSanitizer|LeakSanitizer)|\S+:\d+:\d+: runtime error: ).*$",
    re.MULTILINE)


def _is_plain_password(value):
    return value is not None and not (
        (value.startswith("md5") and len(value) == 35) or value.startswith("SCRAM-SHA-256$"))


def _quote_userlist(s):
    return '"' + s.replace('"', '""') + '"'


class Pgpulse:
    """One pgpulse process, with its ini, userlist and log in a private dir.

    Placeholders in ini_text (replaced literally; other braces are left
    alone): {pg_host} {pg_port} {pg_socket_dir} {port} {dir} {auth_file}
    {pidfile}.  userlist: a dict {user: password-or-hash} or the file's text;
    written to {auth_file} when given.  nofile: (soft, hard) file descriptor
    limits to start the process with.
    """

    def __init__(self, ini_text, *, base_dir, bin, pg=None, userlist=None, port=None,
                 args=(), env=None, nofile=None):
        self.bin = bin
        self.nofile = nofile  # (soft, hard) RLIMIT_NOFILE to start pgpulse with
        self.pg = pg
        self.dir = tempfile.mkdtemp(prefix="pp", dir=base_dir)
        self._port_given = port is not None
        self.port = port if port is not None else free_port()
        self.ini_path = os.path.join(self.dir, "pgpulse.ini")
        self.auth_file = os.path.join(self.dir, "userlist.txt")
        self.pidfile = os.path.join(self.dir, "pgpulse.pid")
        self.log_path = os.path.join(self.dir, "pgpulse.log")
        self.args = list(args)
        self.env = env
        self.proc = None
        self.admin_db = "pgpulse"   # database admin()/show()/command() use
        self.connect_defaults = {}  # psycopg keywords for every connect(), e.g. TLS ones
        self._conns = []
        self._admin_conns = {}
        self._userlist = {}
        self.write_config(ini_text, userlist)

    # -- configuration

    @property
    def placeholders(self):
        return {
            "pg_host": self.pg.host if self.pg else "127.0.0.1",
            "pg_port": self.pg.port if self.pg else "",
            "pg_socket_dir": self.pg.socket_dir if self.pg else "",
            "port": self.port,
            "dir": self.dir,
            "auth_file": self.auth_file,
            "pidfile": self.pidfile,
        }

    def render(self, text):
        for key, value in self.placeholders.items():
            text = text.replace("{" + key + "}", str(value))
        return text

    def write_config(self, ini_text=None, userlist=None):
        """(Re)write the ini and/or the userlist; pair with reload() or the
        admin RELOAD command to test configuration reloads."""
        if ini_text is not None:
            self._ini_template = ini_text
            with open(self.ini_path, "w") as f:
                f.write(self.render(ini_text))
        if userlist is not None:
            if isinstance(userlist, dict):
                self._userlist = dict(userlist)
                text = "".join(f"{_quote_userlist(u)} {_quote_userlist(p)}\n"
                               for u, p in userlist.items())
            else:
                text = userlist
            with open(self.auth_file, "w") as f:
                f.write(text)

    def password_for(self, user):
        """The password the harness knows for `user`: a plain entry of the
        userlist dict, else the scratch cluster's role password, else None."""
        p = self._userlist.get(user)
        if _is_plain_password(p):
            return p
        return ROLE_PASSWORDS.get(user)

    # -- process

    def start(self, wait=True, timeout=READY_TIMEOUT):
        """Start `pgpulse [args] <ini>` with stdout and stderr to log_path.
        wait=True: return once 127.0.0.1:port accepts connections; fail the
        test with the log if the process exits first or `timeout` passes."""
        assert not self.running, "pgpulse already running"
        for attempt in range(3):
            mark = self.log_mark()
            with open(self.log_path, "ab") as logf:
                self.proc = subprocess.Popen(
                    [self.bin, *self.args, self.ini_path], stdin=subprocess.DEVNULL,
                    stdout=logf, stderr=subprocess.STDOUT, cwd=self.dir,
                    env=dict(os.environ, **(self.env or {})),
                    start_new_session=True, preexec_fn=self._preexec)
            if not wait:
                return self
            try:
                self.wait_ready(timeout, since=mark)
                return self
            except _PortTaken:
                if self._port_given or attempt == 2:
                    pytest.fail(f"pgpulse could not bind port {self.port}\n"
                                f"--- {self.log_path}\n{_tail(self.log(since=mark))}",
                                pytrace=False)
                self.port = free_port()
                self.write_config(self._ini_template)
        raise AssertionError("unreachable")

    def _preexec(self):
        _die_with_parent()
        if self.nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    def wait_ready(self, timeout=READY_TIMEOUT, since=0):
        """Poll until 127.0.0.1:port accepts a connection (see start())."""
        deadline = time.monotonic() + timeout
        while True:
            if port_accepts(self.port) and _listens_on(self.proc.pid, self.port):
                return
            rc = self.proc.poll()
            if rc is not None:
                log = self.log(since)
                if "Address already in use" in log:
                    raise _PortTaken()
                pytest.fail(f"pgpulse exited with status {rc} before accepting connections on "
                            f"127.0.0.1:{self.port}\n--- {self.log_path}\n{_tail(log)}",
                            pytrace=False)
            if time.monotonic() >= deadline:
                pytest.fail(f"pgpulse did not accept connections on 127.0.0.1:{self.port} "
                            f"within {timeout:g}s\n--- {self.log_path}\n{_tail(self.log())}",
                            pytrace=False)
            time.sleep(POLL_INTERVAL)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self):
        return self.proc.poll() if self.proc else None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def rss(self):
        """Resident memory of the process in bytes (VmRSS)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS in /proc/{self.pid}/status")

    def fd_limits(self):
        """(soft, hard) "Max open files" of the running process; None for unlimited."""
        with open(f"/proc/{self.pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft, hard = line[len("Max open files"):].split()[:2]
                    return tuple(None if v == "unlimited" else int(v) for v in (soft, hard))
        raise AssertionError(f"no Max open files in /proc/{self.pid}/limits")

    def reload(self):
        """SIGHUP: reread the configuration."""
        self.signal(signal.SIGHUP)

    def wait_exit(self, timeout=10.0):
        """Wait for the process to exit; return its exit status (negative:
        killed by that signal).  Fails the test after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pgpulse (pid {self.pid}) still running after {timeout:g}s"
                                 f"\n--- {self.log_path}\n{_tail(self.log(), 50)}") from None

    def close_connections(self):
        for c in self._conns + list(self._admin_conns.values()):
            try:
                c.close()
            except Exception:
                pass
        self._conns.clear()
        self._admin_conns.clear()

    def stop(self, timeout=STOP_TIMEOUT):
        """Close the harness's connections, send SIGINT, SIGKILL after
        `timeout` seconds.  Returns the exit status; asserts nothing."""
        self.close_connections()
        if not self.running:
            return self.returncode
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    # -- logs

    def log_mark(self):
        return _size(self.log_path)

    def log(self, since=0):
        """The process's stdout+stderr so far (from byte offset `since`)."""
        return _read(self.log_path, since)

    def wait_log(self, pattern, timeout=10.0, since=0):
        """Wait until the log (from `since`) matches regex `pattern`; return
        the match."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log(since)), timeout,
                          f"pgpulse log to match {pattern!r}")

    def sanitizer_reports(self):
        """Lines of AddressSanitizer/LeakSanitizer/UBSan reports in the log."""
        return [m.group(0) for m in SANITIZER_REPORT.finditer(self.log())]

    # -- clients

    def dsn(self, dbname="appdb", user="app", password=None):
        """A libpq connection string for this pgpulse over TCP."""
        if password is None:
            password = self.password_for(user)
        s = f"host=127.0.0.1 port={self.port} dbname={dbname} user={user} sslmode=disable"
        return s + (f" password={password}" if password is not None else "")

    def connect(self, dbname="appdb", user="app", password=None, **kw):
        """A psycopg connection through pgpulse (127.0.0.1:port).  psycopg's
        defaults apply (autocommit=False; prepared statements after 5
        executions of a query: pass prepare_threshold=None to stay on
        unnamed statements).  sslmode defaults to disable; password to
        password_for(user); connect_defaults fills in keywords not given.
        Closed at teardown."""
        if password is None:
            password = self.password_for(user)
        for key, value in self.connect_defaults.items():
            kw.setdefault(key, value)
        kw.setdefault("host", "127.0.0.1")
        kw.setdefault("sslmode", "disable")
        kw.setdefault("connect_timeout", 10)
        if password is not None:
            kw["password"] = password
        conn = psycopg.connect(port=self.port, dbname=dbname, user=user, **kw)
        self._conns.append(conn)
        return conn

    def admin(self, user="admin", password=None, dbname=None, **kw):
        """A new autocommit connection to the admin console.  Its cursors
        send the simple query protocol (psycopg.ClientCursor, no automatic
        prepare), so conn.execute("SHOW POOLS") works as in psql."""
        kw.setdefault("autocommit", True)
        kw.setdefault("prepare_threshold", None)
        kw.setdefault("cursor_factory", psycopg.ClientCursor)
        return self.connect(dbname=dbname or self.admin_db, user=user, password=password, **kw)

    def _admin_conn(self, user, password):
        conn = self._admin_conns.get(user)
        if conn is None or conn.closed or conn.broken:
            conn = self.admin(user=user, password=password)
            self._admin_conns[user] = conn
        return conn

    def _admin_execute(self, sql, user, password):
        conn = self._admin_conn(user, password)
        try:
            return conn.execute(sql)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
            # pgpulse restarted under a cached connection: a fresh one, once.
            return self._admin_conn(user, password).execute(sql)

    def show(self, what, user="admin", password=None):
        """Run SHOW <what> on the admin console; rows as a list of dicts.
        Values are typed by their column type (int8 -> int, numeric ->
        Decimal, text -> str).  "POOLS" and "SHOW POOLS" both work."""
        sql = what if what.lstrip().upper().startswith("SHOW") else "SHOW " + what
        cur = self._admin_execute(sql, user, password)
        if cur.description is None:
            return []
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def command(self, sql, user="admin", password=None):
        """Run an admin command (PAUSE, RESUME, RELOAD, ...); return the
        command tag."""
        return self._admin_execute(sql, user, password).statusmessage


class _PortTaken(Exception):
    pass


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- raw protocol

PROTO_V3 = 196608


def read_message(sock, buf):
    """(type, payload, rest of buf) of the next message on sock."""
    while True:
        if len(buf) >= 5:
            length = struct.unpack("!I", buf[1:5])[0]
            if len(buf) >= 1 + length:
                return buf[:1], buf[5:1 + length], buf[1 + length:]
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {buf!r}")
        buf += chunk


def raw_startup(sock, user="app", database="appdb", params=None):
    """Log in on a raw socket to a pgpulse with auth_type = trust.  params:
    more startup parameters, {name: str or bytes}.  Returns ("ok", None)
    after ReadyForQuery, or ("error", fields) for an ErrorResponse (fields
    keyed by their one-letter codes)."""
    body = struct.pack("!I", PROTO_V3)
    for k, v in (("user", user), ("database", database), *(params or {}).items()):
        body += k.encode() + b"\0" + (v if isinstance(v, bytes) else v.encode()) + b"\0"
    body += b"\0"
    sock.sendall(struct.pack("!I", len(body) + 4) + body)
    buf = b""
    while True:
        mtype, payload, buf = read_message(sock, buf)
        if mtype == b"Z":
            return "ok", None
        if mtype == b"E":
            fields = {}
            for part in payload.split(b"\0"):
                if part:
                    fields[chr(part[0])] = part[1:].decode()
            return "error", fields


def _promql_selector(name, labels):
    def esc(v):
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return name + "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + "}"


def promql_check(promtool_path, samples, expr, expected):
    """Does Prometheus' own evaluator (promtool test rules) compute `expr`
    over scraped `samples` ([(name, {label: value}, float)], held constant for
    a few minutes) to `expected`, a list of ({label: value}, float)?  Returns
    promtool's exit status and output, which names the value it got when it
    differs: the PromQL functions are Prometheus', not re-implemented here."""
    lines = ["rule_files: []", "evaluation_interval: 1m", "tests:", "  - interval: 1m",
             "    input_series:"]
    for name, labels, v in samples:
        lines.append(f"      - series: {json.dumps(_promql_selector(name, labels))}")
        lines.append(f"        values: '{v!r}x5'")
    lines += ["    promql_expr_test:", f"      - expr: {json.dumps(expr)}", "        eval_time: 2m",
              "        exp_samples:"]
    for labels, v in expected:
        lines.append(f"          - labels: {json.dumps(_promql_selector('', labels))}")
        lines.append(f"            value: {v!r}")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "promql.test.yml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run([promtool_path, "test", "rules", path], capture_output=True, text=True,
                           timeout=60)
    return r.returncode, r.stdout + r.stderr


def build_ini(dbs, users=None, settings=None):
    """An ini file's text.  dbs: {name: "key=value ..."}: an entry that does
    not start with host= gets the scratch server's host and port first, and
    dbname = its name unless it sets one (not for "*", which passes the
    client's).  users: {name: "key=value ..."}.  settings: the [pgbouncer]
    section, as {parameter: value}."""
    lines = ["[databases]"]
    for name, extra in dbs.items():
        extra = extra or ""
        if not extra.startswith("host="):
            extra = "host={pg_host} port={pg_port} " + \
                ("" if "dbname=" in extra or name == "*" else f"dbname={name} ") + extra
        lines.append(f"{name} = {extra}".rstrip())
    if users:
        lines.append("[users]")
        lines += [f"{name} = {extra}" for name, extra in users.items()]
    lines.append("[pgbouncer]")
    lines += [f"{k} = {v}" for k, v in (settings or {}).items()]
    return "\n".join(lines) + "\n"


def query_message(sql):
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!I", len(body) + 4) + body


def message(mtype, body=b""):
    return mtype.encode() + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode()
    return fields


def data_row(body):
    (n,) = struct.unpack_from("!H", body)
    pos, values = 2, []
    for _ in range(n):
        (ln,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if ln < 0:
            values.append(None)
        else:
            values.append(body[pos:pos + ln].decode())
            pos += ln
    return values


class ServerError(Exception):
    def __init__(self, fields):
        super().__init__(f"{fields.get('C')}: {fields.get('M')}")
        self.fields = fields
        self.sqlstate = fields.get("C")


class RawConn:
    """A protocol-3 client on a bare socket: logs in (SCRAM, md5, cleartext
    or trust) and then lets the test write any messages and read replies one
    message at a time."""

    def __init__(self, port, user="app", password="app_pw", database="appdb", params=None,
                 timeout=10.0, rcvbuf=None, unix_dir=None):
        if unix_dir:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # before connect(), so the TCP window starts small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        if unix_dir:
            self.sock.connect(os.path.join(unix_dir, f".s.PGSQL.{port}"))
        else:
            self.sock.connect(("127.0.0.1", port))
        self.auth_codes = []  # every authentication request received, AuthenticationOk (0) included
        self.buf = bytearray()
        self.params = {}
        self.backend_key = None
        self.status = None
        body = struct.pack("!I", PROTO_V3)
        for k, v in {"user": user, "database": database, **(params or {})}.items():
            body += cstr(k) + cstr(v)
        body += b"\0"
        try:
            self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
            self._login(user, password)
        except BaseException:
            self.sock.close()
            raise

    def close(self):
        try:
            self.sock.sendall(message("X"))
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, *msgs):
        self.sock.sendall(b"".join(msgs))

    def _fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("pgpulse closed the connection")
        self.buf += data

    def recv_msg(self):
        while len(self.buf) < 5:
            self._fill()
        mtype = chr(self.buf[0])
        (n,) = struct.unpack_from("!I", self.buf, 1)
        while len(self.buf) < 1 + n:
            self._fill()
        body = bytes(self.buf[5:1 + n])
        del self.buf[:1 + n]
        return mtype, body

    def until_ready(self):
        """Messages up to and including the next ReadyForQuery."""
        msgs = []
        while True:
            m = self.recv_msg()
            msgs.append(m)
            if m[0] == "Z":
                self.status = m[1].decode()
                return msgs

    def query(self, sql):
        """Simple query; the rows of the last result (text), or ServerError."""
        self.send(query_message(sql))
        return self.result()

    def result(self):
        """The reply to a request already sent, up to its ReadyForQuery: the
        rows of the last result (text), or ServerError."""
        rows, err = [], None
        for t, body in self.until_ready():
            if t == "T":
                rows = []
            elif t == "D":
                rows.append(data_row(body))
            elif t == "E":
                err = ServerError(error_fields(body))
        if err:
            raise err
        return rows

    def _login(self, user, password):
        while True:
            t, body = self.recv_msg()
            if t == "R":
                (code,) = struct.unpack_from("!I", body)
                self.auth_codes.append(code)
                if code == 0:
                    continue
                if code == 3:
                    self.send(message("p", cstr(password)))
                elif code == 5:
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                    self.send(message("p", cstr("md5" + outer)))
                elif code == 10:
                    self._scram(password)
                else:
                    raise AssertionError(f"unexpected authentication request {code}")
            elif t == "S":
                name, value = body.split(b"\0")[:2]
                self.params[name.decode()] = value.decode()
            elif t == "K":
                self.backend_key = struct.unpack("!II", body)
            elif t == "Z":
                self.status = body.decode()
                return
            elif t == "E":
                raise ServerError(error_fields(body))
            elif t == "N":
                continue
            else:
                raise AssertionError(f"unexpected message {t!r} during login")

    def _scram(self, password):
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={nonce}"
        first = ("n,," + first_bare).encode()
        self.send(message("p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first))
        t, body = self.recv_msg()
        if t == "E":
            raise ServerError(error_fields(body))
        assert t == "R" and struct.unpack_from("!I", body)[0] == 11, (t, body)
        server_first = body[4:].decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(nonce)
        self.scram_iterations = int(attrs["i"])   # what pgpulse asked of this login
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        final_bare = f"c=biws,r={attrs['r']}"
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.send(message("p", f"{final_bare},p={base64.b64encode(proof).decode()}".encode()))
        t, body = self.recv_msg()
        if t == "E":
            raise ServerError(error_fields(body))
        assert t == "R" and struct.unpack_from("!I", body)[0] == 12, (t, body)
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        expected = hmac.new(server_key, auth_message, "sha256").digest()
        assert body[4:].decode() == "v=" + base64.b64encode(expected).decode()

    def stream_result(self, recv_size=1 << 20, pause=0.0, on_progress=None, row_len=None):
        """Read the reply of a simple query returning one large result
        without keeping it: returns (rows, bytes read).  Every DataRow must
        have the declared length `row_len` when given.  on_progress(total)
        is called after each recv()."""
        buf, rows, total = self.buf, 0, 0
        self.buf = bytearray()
        while True:
            pos = 0
            while len(buf) - pos >= 5:
                t = buf[pos]
                (n,) = struct.unpack_from("!I", buf, pos + 1)
                if len(buf) - pos < 1 + n:
                    break
                if t == 0x44:  # 'D'
                    rows += 1
                    if row_len is not None and n != row_len:
                        raise AssertionError(f"DataRow {rows} has length {n}, expected {row_len}")
                elif t == 0x45:  # 'E'
                    raise ServerError(error_fields(bytes(buf[pos + 5:pos + 1 + n])))
                elif t == 0x5A:  # 'Z'
                    self.status = chr(buf[pos + 5])
                    self.buf = buf[pos + 1 + n:]
                    return rows, total
                pos += 1 + n
            if pos:
                del buf[:pos]
            data = self.sock.recv(recv_size)
            if not data:
                raise EOFError(f"connection closed after {rows} rows")
            buf += data
            total += len(data)
            if on_progress:
                on_progress(total)
            if pause:
                time.sleep(pause)

    def cancel(self, port, host="127.0.0.1"):
        """Send a CancelRequest with this connection's BackendKeyData on a
        connection of its own; return that socket, still open (the caller
        may wait for pgpulse to close it, then closes it)."""
        return cancel_request(port, self.backend_key, host)

    def abort(self, reset=False):
        """Leave without Terminate: close the socket (reset=True: with an
        RST instead of a FIN, as a crashed client's kernel may)."""
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def read_to_eof(self, timeout=10.0):
        """Every byte pgpulse sends until it closes the connection (the
        unparsed buffer first).  Fails after `timeout` seconds without EOF."""
        data = bytes(self.buf)
        self.buf = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no EOF within {timeout:g}s; got {len(data)} bytes: "
                                     f"{data[:200]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except ConnectionResetError:
                return data
            except socket.timeout:
                continue
            if not chunk:
                return data
            data += chunk


CANCEL_CODE = 80877102

# Message types a PostgreSQL server (and so pgpulse) may send.
BACKEND_MESSAGE_TYPES = frozenset(b"123ACDEGHIKNRSTVWZcdnstv")


def cancel_request(port, key, host="127.0.0.1", timeout=10.0):
    """Open a connection to host:port and send a CancelRequest for `key`
    (pid, secret).  Returns the socket, still open."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(struct.pack("!IIII", 16, CANCEL_CODE, *key))
    return s


def wait_eof(sock, timeout=10.0):
    """Read from sock until the peer closes it; return what was read.  Fails
    after `timeout` seconds."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data
    except socket.timeout:
        raise AssertionError(f"the connection was not closed within {timeout:g}s") from None


def split_messages(data):
    """Split bytes a server sent into whole protocol messages: returns
    ([(type char, body), ...], the incomplete tail).  A message whose type
    is not a backend message type or whose length is below 4 is garbage:
    AssertionError, naming its offset."""
    msgs, pos = [], 0
    while len(data) - pos >= 5:
        t = data[pos]
        (n,) = struct.unpack_from("!I", data, pos + 1)
        if t not in BACKEND_MESSAGE_TYPES or n < 4 or n > 1 << 30:
            raise AssertionError(f"garbage at byte {pos}: type {bytes([t])!r}, length {n}; "
                                 f"bytes there: {bytes(data[pos:pos + 40])!r}")
        if len(data) - pos < 1 + n:
            break
        msgs.append((chr(t), bytes(data[pos + 5:pos + 1 + n])))
        pos += 1 + n
    return msgs, bytes(data[pos:])


# ---------------------------------------------------------------- sockets and CPU

_TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}


def tcp_sockets(pid=None):
    """TCP sockets on this host as dicts (local_port, remote_port, state
    name or hex code, inode); with pid, only those process `pid` holds."""
    inodes = None
    if pid is not None:
        inodes = set()
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            fds = []
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                lines = f.readlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if inodes is not None and fields[9] not in inodes:
                continue
            out.append({"local_port": int(fields[1].rsplit(":", 1)[1], 16),
                        "remote_port": int(fields[2].rsplit(":", 1)[1], 16),
                        "state": _TCP_STATES.get(fields[3], fields[3]),
                        "inode": fields[9]})
    return out


def cpu_seconds(pid):
    """User + system CPU time process `pid` has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- a TCP proxy

class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of host:port (PostgreSQL), for
    faults the real server will not produce on cue.  Point a [databases]
    entry at proxy.port.

    hold_cancels = True: a connection that opens with a CancelRequest is
    accepted and read but not passed on until release_cancels() (a cancel
    that is slow to reach PostgreSQL).  cancels_seen counts such
    connections, cancels_done those PostgreSQL then closed.

    cut_after(n): each connection open now forwards n more bytes from
    PostgreSQL, then the proxy closes both of its ends (PostgreSQL dying
    after n bytes of a reply).

    Every socket and thread is closed by close()."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.hold_cancels = False
        self.stall = False
        self.cancels_seen = 0
        self.cancels_done = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._socks = []
        self._budgets = {}   # upstream socket -> bytes left before the cut, or None
        self._threads = []
        self._closed = False
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self._spawn(self._accept_loop)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _track(self, s):
        with self._lock:
            self._socks.append(s)

    def release_cancels(self):
        self._release.set()

    def cut_after(self, nbytes):
        with self._lock:
            for up in self._budgets:
                self._budgets[up] = nbytes

    def stall_after(self, nbytes):
        """Like cut_after, but the connections stay open: PostgreSQL's
        bytes past n are held back (a reply that stops in mid-message)."""
        self.stall = True
        self.cut_after(nbytes)

    def _accept_loop(self):
        while not self._closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self._track(c)
            self._spawn(self._serve, c)

    @staticmethod
    def _recv_exact(s, n):
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _serve(self, c):
        up = None
        is_cancel = False
        try:
            first = self._recv_exact(c, 8)
            length, code = struct.unpack("!II", first)
            if length == 16 and code == CANCEL_CODE:
                is_cancel = True
                first += self._recv_exact(c, 8)
                with self._lock:
                    self.cancels_seen += 1
                if self.hold_cancels:
                    while not self._release.wait(0.1):
                        if self._closed:
                            return
            up = socket.create_connection(self.target, timeout=10)
            up.settimeout(None)
            self._track(up)
            with self._lock:
                self._budgets[up] = None
            up.sendall(first)
            sel = selectors.DefaultSelector()
            sel.register(c, selectors.EVENT_READ, up)
            sel.register(up, selectors.EVENT_READ, c)
            while not self._closed:
                for key, _ in sel.select(timeout=0.2):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    if key.fileobj is up:
                        with self._lock:
                            budget = self._budgets.get(up)
                            if budget is not None:
                                data = data[:budget]
                                self._budgets[up] = budget - len(data)
                        if data:
                            key.data.sendall(data)
                        if budget is not None and self._budgets[up] == 0:
                            if not self.stall:
                                return
                            sel.unregister(up)  # hold the rest back, keep both ends open
                    else:
                        key.data.sendall(data)
        except (OSError, EOFError, ValueError):  # ValueError: a socket close() closed meanwhile
            return
        finally:
            if is_cancel:
                with self._lock:
                    self.cancels_done += 1
            for s in (c, up):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
            with self._lock:
                self._budgets.pop(up, None)

    def close(self):
        self._closed = True
        self._release.set()
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for t in threads:
            t.join(5)


def parse_message(sql, name="", types=()):
    """Parse (extended protocol) of `sql` as statement `name`; `types`: parameter type OIDs."""
    body = (name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", len(types))
            + b"".join(struct.pack("!I", t) for t in types))
    return b"P" + struct.pack("!I", len(body) + 4) + body


def sync_message():
    return b"S" + struct.pack("!I", 4)


def bind_message(params=(), stmt="", portal=""):
    """Bind with every parameter and result in text format (None is NULL)."""
    body = cstr(portal) + cstr(stmt) + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            b = str(p).encode()
            body += struct.pack("!i", len(b)) + b
    return message("B", body + struct.pack("!H", 0))


def describe_message(kind, name=""):
    return message("D", kind.encode() + cstr(name))


def execute_message(portal="", max_rows=0):
    return message("E", cstr(portal) + struct.pack("!I", max_rows))


def close_message(kind, name=""):
    return message("C", kind.encode() + cstr(name))


def flush_message():
    return message("H")


@contextlib.contextmanager
def holding_server(pp):
    """In transaction pooling, keep the server most recently released (the
    one an idle pool hands out next) busy in a transaction of another client
    while the block runs: the next request of any other client goes to a
    different server connection."""
    holder = pp.connect(prepare_threshold=None)
    try:
        holder.execute("SELECT 1")
        yield holder
    finally:
        holder.rollback()
        holder.close()


def message_types(msgs):
    """'1' + '2' + ... for a list of (type, body) as RawConn returns them."""
    return "".join(t for t, _ in msgs)


# ---------------------------------------------------------------- memory

def rss_kb(pid):
    """Resident set size of process `pid`, in kB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def built_with_asan(path):
    """ASan's shadow memory and quarantine make RSS meaningless as a bound."""
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


# ---------------------------------------------------------------- certificates

class Certs:
    """Files of the throwaway PKI, by name: ca, other_ca (crt, key) and
    leaf certificates signed by one of them."""

    def __init__(self, directory):
        self.dir = directory

    def path(self, name):
        return os.path.join(self.dir, name)

    def _openssl(self, *args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=self.dir)
        assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"

    def make_ca(self, name, cn):
        self._openssl("req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1", "-keyout", f"{name}.key", "-out",
                      f"{name}.crt", "-days", "2", "-subj", f"/CN={cn}")
        os.chmod(self.path(f"{name}.key"), 0o600)

    def make_leaf(self, name, cn, ca="ca", san=None):
        ext = self.path(f"{name}.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
            if san:
                f.write(f"subjectAltName={san}\n")
        self._openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1", "-keyout", f"{name}.key", "-out",
                      f"{name}.csr", "-subj", f"/CN={cn}")
        self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey",
                      f"{ca}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                      "-extfile", f"{name}.ext")
        os.chmod(self.path(f"{name}.key"), 0o600)


# ------------------------------------------------- the client's own clock
#
# pgpulse sees a request arrive after the client sent it and answers before
# the client reads the answer, so no duration it reports (query, server, xact,
# wait) can exceed the client's timing of that request, however loaded the
# machine is.  Telemetry tests bound a figure from below by what the statement
# must take (a pg_sleep) and from above by this clock, never by a guessed
# allowance.

HIST_ERROR = 1.0 / 128      # the histograms' stated relative error


class ClientClock:
    """The client's own timing of each statement it runs, in microseconds.
    Threads may share one (list.append is atomic)."""

    def __init__(self):
        self.us = []

    def time(self, fn, *args, **kwargs):
        """fn(*args, **kwargs), timed; its result."""
        t0 = time.monotonic()
        result = fn(*args, **kwargs)
        self.us.append((time.monotonic() - t0) * 1e6)
        return result

    def run(self, conn, sql, *args, **kwargs):
        """conn.execute(sql, ...), timed."""
        return self.time(conn.execute, sql, *args, **kwargs)

    def ranked(self, rank):
        """The rank-th shortest (1-based) of the client's timings."""
        timings = sorted(self.us)
        assert 1 <= rank <= len(timings), (rank, len(timings))
        return timings[rank - 1]

    def quantile_bound(self, q, count):
        """The most pgpulse's q-quantile over `count` values can report: its
        rank is ceil(q * count) (hist_acc_quantile), every value it ranks is
        inside one of the client's timings, so that order statistic of the
        client's timings bounds it (plus the histogram's error)."""
        rank = max(1, math.ceil(q * count))
        return self.ranked(rank) * (1 + HIST_ERROR) + 1


QUANTILE_OF = {"p50_us": 0.5, "p90_us": 0.9, "p95_us": 0.95, "p99_us": 0.99,
               "p999_us": 0.999}


def assert_duration(row, column, true_us, clock):
    """row[column] reports a duration of at least true_us (what the statements
    must take, less the histogram error) and no more than the client timed.
    The row counts its values in `count` (SHOW LATENCY) or `calls` (SHOW
    QUERIES); the clock timed at least as many requests as the row holds, or
    the bound is not one."""
    count = row["count"] if "count" in row else row["calls"]
    lo = true_us * (1 - HIST_ERROR)
    if column == "max_us":
        hi = max(clock.us) + 1
    elif column == "total_us":
        hi = sum(clock.us) + 1
    elif column == "mean_us":
        assert count == len(clock.us), (count, len(clock.us))
        hi = sum(clock.us) / count + 1
    else:
        hi = clock.quantile_bound(QUANTILE_OF[column], count)
    value = row[column]
    assert lo <= value <= hi, \
        f"{column} = {value} us, expected {lo:.0f}..{hi:.0f} us; row: {row}; client timed {sorted(clock.us)}"


# ---------------------------------------------------------------- log lines, PgBouncer's shape

# One parser for PgBouncer's log and pgpulse's (doc/operations.md, "Log
# lines"): the line, then a connection's message within it.
LOG_LINE = re.compile(r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (?P<zone>\S+) \[(?P<pid>\d+)\] "
                      r"(?P<level>[A-Z]+) (?P<message>.*)$")
CONN_MESSAGE = re.compile(r"^(?P<kind>[CS])-(?P<id>\w+): (?P<db>[^/ ]+)/(?P<user>[^@ ]+)@(?P<host>\S+):"
                          r"(?P<port>\d+) (?P<event>.*?)(?: \(age=(?P<age>\d+)s\))?$")


def parse_log(text):
    """The lines of a PgBouncer or pgpulse log as dicts: LOG_LINE's groups,
    plus CONN_MESSAGE's when the message is about a connection."""
    out = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if not m:
            continue
        rec = m.groupdict()
        c = CONN_MESSAGE.match(rec["message"])
        if c:
            rec.update(c.groupdict())
        out.append(rec)
    return out


# ---------------------------------------------------------------- another process's socket options

_SYS_PIDFD_GETFD = 438  # Linux 5.6+, same number on every architecture


def socket_options(pid, local_port=None, remote_port=None, options=()):
    """getsockopt() on the TCP sockets process `pid` holds (a copy of each
    descriptor through pidfd_getfd, which a process may do to its own
    children and to processes of its own user), filtered by port.  options:
    (name, level, optname) triples.  Returns one {name: value} per socket.
    Skips the test where the kernel refuses pidfd_getfd."""
    libc = ctypes.CDLL(None, use_errno=True)
    wanted = {s["inode"] for s in tcp_sockets(pid)
              if (local_port is None or s["local_port"] == local_port)
              and (remote_port is None or s["remote_port"] == remote_port)}
    pidfd = os.pidfd_open(pid)
    out = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if not link.startswith("socket:[") or link[8:-1] not in wanted:
                continue
            copy = libc.syscall(_SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            if copy < 0:
                pytest.skip(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
            with socket.socket(fileno=copy) as s:
                out.append({name: s.getsockopt(level, opt) for name, level, opt in options})
    finally:
        os.close(pidfd)
    return out


# ---------------------------------------------------------------- PgBouncer, to compare with

def pgbouncer_bin():
    """PgBouncer to compare with: $PGPULSE_PGBOUNCER (the 1.25 reference, say),
    else Debian's; None if neither."""
    path = os.environ.get("PGPULSE_PGBOUNCER") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    return path if path and os.access(path, os.X_OK) else None


class PgBouncer:
    """A PgBouncer process started from the same kind of ini text as Pgpulse
    (the same placeholders), logging to its own file."""

    def __init__(self, ini_text, *, base_dir, bin, pg, userlist):
        self.bin, self.pg = bin, pg
        self.dir = tempfile.mkdtemp(prefix="pgb", dir=base_dir)
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "pgbouncer.log")
        self.auth_file = os.path.join(self.dir, "userlist.txt")
        self.ini_path = os.path.join(self.dir, "pgbouncer.ini")
        with open(self.auth_file, "w") as f:
            f.write("".join(f"{_quote_userlist(u)} {_quote_userlist(p)}\n" for u, p in userlist.items()))
        values = {"pg_host": pg.host, "pg_port": pg.port, "pg_socket_dir": pg.socket_dir,
                  "port": self.port, "dir": self.dir, "auth_file": self.auth_file,
                  "pidfile": os.path.join(self.dir, "pgbouncer.pid")}
        for key, value in values.items():
            ini_text = ini_text.replace("{" + key + "}", str(value))
        with open(self.ini_path, "w") as f:
            f.write(ini_text + f"logfile = {self.log_path}\n")
        self.proc = subprocess.Popen([bin, self.ini_path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        wait_until(lambda: port_accepts(self.port) or self.proc.poll() is not None, READY_TIMEOUT,
                   "PgBouncer to listen")
        assert self.proc.poll() is None, f"PgBouncer exited:\n{self.log()}"

    def log(self, since=0):
        return _read(self.log_path, since)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
