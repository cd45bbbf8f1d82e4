#!/usr/bin/python3
"""Side-by-side benchmark: PostgreSQL direct, PgBouncer and pgpulse (issue 5).

The orchestrator behind contrib/bench/bench.sh (which installs, builds, raises
the open-file limit and, as root, runs this as an unprivileged user).  It
starts a scratch PostgreSQL, then PgBouncer and pgpulse from ONE ini text
(same pools, same md5 auth), and runs each workload against every target in
turn, alternating the order between rounds (A B C, then C B A, ...), so slow
drift on a noisy machine hits every target alike.  Per run it records TPS,
mean and p99 latency (from pgbench's per-transaction log), and the pooler's
CPU time per transaction (utime+stime from /proc/PID/stat); the idle-client
workloads record the pooler's RSS growth per logged-in idle client.  Rows go
to raw.csv as they are measured; report.py turns them into results.md and
one PNG chart per workload.

    bench.py --pgpulse BIN --workdir DIR --results DIR [--quick|--smoke]
             [--rounds N] [--seconds S] [--workloads a,b,...]

Only the Python standard library; everything listens on 127.0.0.1 or on unix
sockets in the work dir.  Nothing waits blindly: readiness is polled with a
deadline, and a failure names its step and shows the relevant log's tail.
"""

import argparse
import csv
import ctypes
import datetime
import glob
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgwire  # noqa: E402
import report  # noqa: E402

USER = PASSWORD = DBNAME = "bench"
SESSION_DB = "bench_session"   # the same database through a session-mode pool

POOLERS = ("pgbouncer", "pgpulse")
TARGETS = ("direct",) + POOLERS
NOTEL = "pgpulse-notel"        # pgpulse with telemetry = 0, select-simple only

# What a run does per mode: rounds, seconds per pgbench run, the pgbench
# scale, warm-up seconds, and the idle-client counts.  The default takes an
# even number of rounds, so each target runs first as often as last; four
# rounds of 4 s say more about the noise than three of 5 s, in the same time.
MODES = {
    "default": dict(rounds=4, seconds=4, scale=10, warmup=2, idle={5000: 5000, 10000: 10000}),
    "quick": dict(rounds=1, seconds=2, scale=10, warmup=1, idle={5000: 1000, 10000: 2000}),
    # smoke: a count of transactions, not a duration: on a loaded machine
    # (make check under ASan) a second can pass before 500 clients have even
    # connected, and a run with no transaction, or too few for one 10 ms CPU
    # tick, would fail the smoke test; 3,000 per run, split over the clients
    "smoke": dict(rounds=1, seconds=1, scale=1, warmup=1, idle={5000: 200, 10000: 400},
                  transactions=3000),
}

POLL = 0.02
READY_TIMEOUT = 20.0     # seconds for a pooler to accept TCP connections
STOP_TIMEOUT = 10.0      # seconds between the stop signal and SIGKILL
PGBENCH_GRACE = 180      # seconds a pgbench run may take beyond -T


class Workload:
    """One named workload: a pgbench command line, or N idle clients."""

    def __init__(self, name, what, *, pgbench=None, idle=None, dbname=DBNAME,
                 targets=TARGETS, env=None, pgbouncer_since=None):
        self.name = name
        self.what = what
        self.pgbench = pgbench      # pgbench options, without -T, -h, -p, -U, dbname
        self.idle = idle            # canonical idle-client count (before --quick/--smoke)
        self.clients = idle
        self.dbname = dbname        # database name on the poolers
        self.targets = targets
        self.env = env or {}        # pgbench environment on top of the defaults
        self.pgbouncer_since = pgbouncer_since  # (major, minor): older PgBouncers cannot run it
        self.note = None            # why a target was left out

    @property
    def is_idle(self):
        return self.idle is not None

    def pgbench_clients(self):
        return int(self.pgbench[self.pgbench.index("-c") + 1])


WORKLOADS = [
    Workload("select-simple", "pgbench -S, simple protocol, 50 clients, pool of 20",
             pgbench=["-S", "-M", "simple", "-c", "50", "-j", "2"],
             targets=TARGETS + (NOTEL,)),
    Workload("select-extended", "pgbench -S, extended protocol, 50 clients, pool of 20",
             pgbench=["-S", "-M", "extended", "-c", "50", "-j", "2"]),
    Workload("select-prepared", "pgbench -S, prepared protocol, 50 clients, session pool of 50",
             pgbench=["-S", "-M", "prepared", "-c", "50", "-j", "2"], dbname=SESSION_DB),
    # issue 12: the drivers' named statements in transaction mode; PgBouncer
    # runs them from 1.21 on (max_prepared_statements): an older one (Debian
    # 12's 1.18) is left out of this workload, PGBOUNCER= selects a newer one
    Workload("select-prepared-tx", "pgbench -S, prepared protocol, 50 clients, transaction pool of 20",
             pgbench=["-S", "-M", "prepared", "-c", "50", "-j", "2"], pgbouncer_since=(1, 21)),
    Workload("tpcb", "pgbench TPC-B-like (default script), 20 clients, pool of 20",
             pgbench=["-c", "20", "-j", "2"]),
    Workload("connect", "pgbench -S -C (a new connection per transaction), 20 clients",
             pgbench=["-S", "-C", "-c", "20", "-j", "2"]),
    Workload("single", "pgbench -S, one client: latency added over direct",
             pgbench=["-S", "-c", "1", "-j", "1"]),
    Workload("clients-500", "pgbench -S, 500 clients, pool of 20",
             pgbench=["-S", "-c", "500", "-j", "2"]),
    # TLS from the clients to the pooler (the scratch PostgreSQL has none, so
    # there is no direct row): what encryption costs each pooler per query,
    # and per connection with a handshake each
    Workload("select-tls", "pgbench -S, simple protocol, 50 clients over TLS, pool of 20",
             pgbench=["-S", "-M", "simple", "-c", "50", "-j", "2"], targets=POOLERS,
             env={"PGSSLMODE": "require"}),
    Workload("connect-tls", "pgbench -S -C over TLS: a handshake per transaction, 20 clients",
             pgbench=["-S", "-C", "-c", "20", "-j", "2"], targets=POOLERS,
             env={"PGSSLMODE": "require"}),
    Workload("idle-5000", "5,000 logged-in idle clients: pooler memory per client",
             idle=5000, targets=POOLERS),
    Workload("idle-10000", "10,000 logged-in idle clients: pooler memory per client",
             idle=10000, targets=POOLERS),
]

# One ini text for both poolers.  @PG_PORT@ and @AUTH_FILE@ are filled in
# once; @LISTEN_PORT@, @SOCKET_DIR@, @PIDFILE@ and @LOGFILE@ per process.
# The [pgbouncer] section must stay last: pgpulse-notel appends a line to it.
POOLER_INI = """\
;; contrib/bench: the same text configures PgBouncer and pgpulse
[databases]
bench = host=127.0.0.1 port=@PG_PORT@ dbname=bench
;; -M prepared needs a session pool: neither pooler tracks protocol-level
;; prepared statements across servers in transaction mode (doc/benchmarks.md)
bench_session = host=127.0.0.1 port=@PG_PORT@ dbname=bench pool_mode=session pool_size=50

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = @LISTEN_PORT@
unix_socket_dir = @SOCKET_DIR@
pidfile = @PIDFILE@
logfile = @LOGFILE@
auth_type = md5
auth_file = @AUTH_FILE@
admin_users = bench
pool_mode = transaction
default_pool_size = 20
max_client_conn = 11000
max_db_connections = 0
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
ignore_startup_parameters = extra_float_digits
;; TLS for clients that ask (the *-tls workloads); the others stay plaintext
client_tls_sslmode = prefer
client_tls_cert_file = @TLS_CERT@
client_tls_key_file = @TLS_KEY@
"""

RAW_FIELDS = ["workload", "round", "position", "target", "clients", "seconds", "tps", "xacts",
              "mean_ms", "p99_ms", "cpu_us_per_xact", "rss_before_kb", "rss_after_kb",
              "rss_kb_per_client", "login_cpu_us_per_client", "login_seconds", "status"]


# ------------------------------------------------------------- failures

class StepFailed(Exception):
    """A step that cannot go on: says which step, why, and the logs that explain it."""

    def __init__(self, step, why, logs=()):
        super().__init__(f"{step}: {why}")
        self.step = step
        self.why = why
        self.logs = list(logs)

    def explain(self):
        parts = [f"bench: FAILED at step '{self.step}': {self.why}"]
        for path in self.logs:
            parts.append(f"--- last lines of {path}\n{tail(path)}")
        return "\n".join(parts)


def tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]) or "(empty)\n"
    except OSError as e:
        return f"(cannot read: {e})\n"


def say(msg):
    print(f"bench: {msg}", flush=True)


def run_step(step, cmd, *, logs=(), timeout=600, **kw):
    """Run a command to completion; on failure raise StepFailed with its output."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise StepFailed(step, f"{cmd[0]} did not finish within {timeout}s", logs) from None
    if r.returncode != 0:
        out = (r.stdout + r.stderr).strip().splitlines()[-15:]
        raise StepFailed(step, f"{' '.join(cmd)} exited {r.returncode}:\n" + "\n".join(out), logs)
    return r


# ------------------------------------------------------------ /proc, ports

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_us(pid):
    """User + system CPU time of a process (all threads), in microseconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the ")" of comm, field 3 (state) is fields[0]: utime is 14, stime 15
    return (int(fields[11]) + int(fields[12])) * 1_000_000 // CLK_TCK


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


_ports_given = set()


def free_port():
    """A free port below the ephemeral range, so thousands of outgoing
    connections cannot take it before the process we hand it to binds it."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if port in _ports_given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise StepFailed("choose a port", "no free TCP port on 127.0.0.1")


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    """Children of a bench killed with SIGKILL do not outlive it."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


# ------------------------------------------------------------ PostgreSQL

def pg_bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(re.sub(r"\D", "", d.split("/")[-2]) or 0))
    bindir = os.environ.get("PGPULSE_PG_BINDIR") or (dirs[-1] if dirs else "")
    if not os.access(os.path.join(bindir, "initdb"), os.X_OK):
        raise StepFailed("find PostgreSQL", "no initdb under /usr/lib/postgresql/*/bin "
                         "(apt-get install postgresql, or set PGPULSE_PG_BINDIR)")
    return bindir


class PostgreSQL:
    """The scratch cluster: initdb'd in the work dir, stopped at the end."""

    def __init__(self, workdir, bindir):
        self.bindir = bindir
        self.datadir = os.path.join(workdir, "pg")
        self.socket_dir = workdir
        self.log_path = os.path.join(workdir, "postgresql.log")
        self.port = None
        self.started = False

    def bin(self, name):
        return os.path.join(self.bindir, name)

    def init(self):
        run_step("initdb", [self.bin("initdb"), "-D", self.datadir, "-U", "postgres", "-A", "trust",
                            "-E", "UTF8", "--locale=C", "--no-sync"])
        self.port = free_port()
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write(f"""
# contrib/bench: a throwaway cluster, tuned for throughput, not durability.
# 800 connections: 500 direct pgbench clients while the poolers' pools
# (20 + 50 session each, three poolers) stay open.
port = {self.port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.socket_dir}'
max_connections = 800
fsync = off
synchronous_commit = off
full_page_writes = off
lc_messages = 'C'
""")
        # the poolers log in once per server connection; client-side auth
        # (md5, identical for both poolers) is where they compete
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")

    def start(self):
        self.started = True
        run_step("start PostgreSQL", [self.bin("pg_ctl"), "-D", self.datadir, "-l", self.log_path,
                                      "-w", "-t", "120", "start"],
                 logs=[self.log_path], start_new_session=True, stdin=subprocess.DEVNULL)

    def psql(self, sql, dbname="postgres", user="postgres"):
        return run_step(f"psql: {sql}", [self.bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                                         "-h", self.socket_dir, "-p", str(self.port), "-U", user,
                                         "-d", dbname, "-c", sql],
                        logs=[self.log_path]).stdout.strip()

    def create_bench_db(self, scale):
        self.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        self.psql(f"CREATE DATABASE {DBNAME} OWNER {USER}")
        run_step(f"pgbench -i -s {scale}",
                 [self.bin("pgbench"), "-i", "-q", "-s", str(scale), "-h", self.socket_dir,
                  "-p", str(self.port), "-U", USER, DBNAME], logs=[self.log_path])

    def stop(self):
        if not self.started:
            return
        r = subprocess.run([self.bin("pg_ctl"), "-D", self.datadir, "-m", "fast", "-w", "-t", "30",
                            "stop"], capture_output=True, text=True)
        if r.returncode != 0 and os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            subprocess.run([self.bin("pg_ctl"), "-D", self.datadir, "-m", "immediate", "-w",
                            "-t", "30", "stop"], capture_output=True)
        self.started = False


# ------------------------------------------------------------- poolers

class Pooler:
    """One PgBouncer or pgpulse process, in the foreground, from the shared
    ini text with its own port, pidfile, logfile and unix socket."""

    def __init__(self, name, kind, binary, ini_text, workdir):
        self.name = name
        self.kind = kind
        self.binary = binary
        self.dir = os.path.join(workdir, name)
        self.socket_dir = workdir    # short: sockets are named after the port anyway
        os.makedirs(self.dir, exist_ok=True)
        self.ini_path = os.path.join(self.dir, "pooler.ini")
        self.log_path = os.path.join(self.dir, f"{kind}.log")
        self.out_path = os.path.join(self.dir, "stdout-stderr.log")
        self.ini_text = ini_text
        self.quiet = True           # pgpulse -q: only errors to stderr
        self.port = None
        self.proc = None

    def _write_ini(self):
        text = (self.ini_text.replace("@LISTEN_PORT@", str(self.port))
                .replace("@SOCKET_DIR@", self.socket_dir)
                .replace("@PIDFILE@", os.path.join(self.dir, f"{self.kind}.pid"))
                .replace("@LOGFILE@", self.log_path))
        with open(self.ini_path, "w") as f:
            f.write(text)

    def command(self):
        if self.kind == "pgbouncer":
            return [self.binary, self.ini_path]          # foreground: no -d
        return [self.binary, "-q", self.ini_path] if self.quiet else [self.binary, self.ini_path]

    def start(self):
        self.port = free_port()
        self._write_ini()
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_ready()
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while not port_accepts(self.port):
            if self.proc.poll() is not None:
                raise StepFailed(f"start {self.name}", f"exited with status {self.proc.returncode} "
                                 f"before accepting connections on 127.0.0.1:{self.port}",
                                 self.logs())
            if time.monotonic() > deadline:
                raise StepFailed(f"start {self.name}", f"no TCP connection to 127.0.0.1:{self.port} "
                                 f"within {READY_TIMEOUT:g}s", self.logs())
            time.sleep(POLL)

    def logs(self):
        return [p for p in (self.log_path, self.out_path) if os.path.exists(p)]

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGINT (safe shutdown in both: exit once no server is in use), SIGKILL after a while."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not exit {STOP_TIMEOUT:g}s after SIGINT: SIGKILL")
            self.proc.kill()
            self.proc.wait()

    def warnings(self):
        """WARNING lines on the pooler's stderr (how it judged the ini)."""
        with open(self.out_path, errors="replace") as f:
            return [ln.rstrip() for ln in f if re.search(r"\bWARNING\b", ln)]


# ------------------------------------------------------- pgbench results

def parse_pgbench_output(text):
    """TPS and transactions processed from pgbench's summary."""
    tps = re.search(r"^tps = ([0-9.]+)", text, re.M)
    xacts = re.search(r"^number of transactions actually processed: (\d+)", text, re.M)
    if not tps or not xacts:
        return None, None
    return float(tps.group(1)), int(xacts.group(1))


def parse_xact_logs(prefix):
    """Mean and p99 latency (ms) and the count from pgbench's per-transaction
    logs (one file per thread: PREFIX.PID[.N]; field 3 is the latency in
    microseconds).  The files are deleted: at high TPS they are large."""
    lat = []
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    lat.append(int(fields[2]))
        os.unlink(path)
    if not lat:
        return 0, None, None
    lat.sort()
    p99 = lat[max(0, math.ceil(0.99 * len(lat)) - 1)]
    return len(lat), sum(lat) / len(lat) / 1000.0, p99 / 1000.0


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def fmt(x, digits=2):
    return "" if x is None else f"{x:.{digits}f}"


def warm_up_pairs(workloads):
    """(target, database) for each pool the pgbench workloads will use."""
    pairs = []
    for wl in workloads:
        for target in wl.targets if not wl.is_idle else ():
            pair = (target, DBNAME if target == "direct" else wl.dbname)
            if pair not in pairs:
                pairs.append(pair)
    return pairs


# ------------------------------------------------------------- the bench

class Bench:
    """One run: the scratch PostgreSQL, the long-running poolers, the rows
    measured so far (also appended to raw.csv as they come)."""

    def __init__(self, opts, plan):
        self.opts = opts
        self.plan = plan
        self.workdir = opts.workdir
        self.results = opts.results
        self.logdir = os.path.join(self.workdir, "xact-logs")
        self.pg = PostgreSQL(self.workdir, pg_bindir())
        self.poolers = {}          # long-running: pgbouncer, pgpulse, pgpulse-notel
        self.extra = []            # short-lived idle-workload instances
        self.ini_text = None
        self.ini_warnings = []
        self.failures = []
        self.rows = []
        self.raw_path = os.path.join(self.results, "raw.csv")
        self.pgenv = self._pgbench_env()

    @staticmethod
    def _pgbench_env():
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGPASSWORD=PASSWORD, PGSSLMODE="disable", PGGSSENCMODE="disable",
                   PGCONNECT_TIMEOUT="30")
        return env

    # -- setup

    def setup(self):
        if len(self.workdir) + len("/.s.PGSQL.65535.lock") > 107:
            raise StepFailed("check the work dir", f"{self.workdir} is too long a path for unix "
                             "sockets (108 bytes at most): point TMPDIR at a shorter directory")
        os.makedirs(self.logdir, exist_ok=True)
        os.makedirs(self.results, exist_ok=True)
        with open(self.raw_path, "w", newline="") as f:
            csv.writer(f).writerow(RAW_FIELDS)
        say(f"PostgreSQL: initdb, start, pgbench -i -s {self.plan['scale']}")
        self.pg.init()
        self.pg.start()
        self.pg.create_bench_db(self.plan["scale"])
        self.ini_text = self._pooler_ini()
        self.ini_warnings = self.check_ini_with_pgpulse()
        for name in self._pooler_names():
            self.poolers[name] = self._new_pooler(name).start()
            say(f"{name} listening on 127.0.0.1:{self.poolers[name].port} (pid {self.poolers[name].pid})")

    def _pooler_ini(self):
        auth_file = os.path.join(self.workdir, "userlist.txt")
        with open(auth_file, "w") as f:
            f.write(f'"{USER}" "{PASSWORD}"\n')
        cert, key = self._make_tls_certificate()
        text = POOLER_INI.replace("@PG_PORT@", str(self.pg.port)).replace("@AUTH_FILE@", auth_file)
        text = text.replace("@TLS_CERT@", cert).replace("@TLS_KEY@", key)
        if self.opts.server_unix:
            # host= a directory: libpq's convention, which both poolers follow
            text = text.replace("host=127.0.0.1 port=", f"host={self.pg.socket_dir} port=")
        with open(os.path.join(self.results, "pooler.ini"), "w") as f:
            f.write(text)
        return text

    def _make_tls_certificate(self):
        """A self-signed P-256 certificate both poolers present (the clients
        use sslmode=require: encryption without verification)."""
        cert = os.path.join(self.workdir, "pooler.crt")
        key = os.path.join(self.workdir, "pooler.key")
        run_step("make a TLS certificate",
                 ["openssl", "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
                  "ec_paramgen_curve:prime256v1", "-keyout", key, "-out", cert, "-days", "2",
                  "-subj", "/CN=localhost"])
        os.chmod(key, 0o600)
        return cert, key

    def check_ini_with_pgpulse(self):
        """Start pgpulse once without -q on the shared ini and keep what it
        warns about: -q would hide warnings from loading the configuration
        (they are printed before the logfile is opened)."""
        p = self._new_pooler("pgpulse", suffix="-inicheck")
        p.quiet = False
        self.extra.append(p)
        try:
            p.start()
        finally:
            p.stop()
        return p.warnings()

    def _pooler_names(self):
        """The long-running poolers the pgbench workloads need (idle
        workloads start their own, fresh ones)."""
        names = {t for wl in self.plan["workloads"] if not wl.is_idle for t in wl.targets}
        return [n for n in ("pgbouncer", "pgpulse", NOTEL) if n in names]

    def _new_pooler(self, name, suffix=""):
        if name == "pgbouncer":
            return Pooler(name + suffix, "pgbouncer", self.opts.pgbouncer, self.ini_text, self.workdir)
        text = self.ini_text
        if name == NOTEL:
            text += "telemetry = 0\n"     # lands in [pgbouncer], the last section
        return Pooler(name + suffix, "pgpulse", self.opts.pgpulse, text, self.workdir)

    def endpoint(self, target, wl):
        if target == "direct":
            return self.pg.port, DBNAME
        return self.poolers[target].port, wl.dbname

    # -- running

    def warm_up(self):
        """Open every pool once (and touch the data) before anything is measured."""
        secs = self.plan["warmup"]
        for target, db in warm_up_pairs(self.plan["workloads"]):
            pooler = self.poolers.get(target)
            port = pooler.port if pooler else self.pg.port
            run_step(f"warm up {target} ({db})",
                     [self.pg.bin("pgbench"), "-n", "-S", "-c", "50", "-j", "2", "-T", str(secs),
                      "-h", "127.0.0.1", "-p", str(port), "-U", USER, db],
                     env=self.pgenv, logs=[self.pg.log_path] + (pooler.logs() if pooler else []),
                     timeout=secs + PGBENCH_GRACE)

    def run(self):
        self.warm_up()
        for wl in self.plan["workloads"]:
            say(f"== {wl.name}: {wl.what}")
            for rnd in range(1, self.plan["rounds"] + 1):
                order = list(wl.targets) if rnd % 2 else list(reversed(wl.targets))
                for pos, target in enumerate(order, 1):
                    if wl.is_idle:
                        row = self.measure_idle(wl, target)
                    else:
                        row = self.measure_pgbench(wl, target, rnd)
                    row.update(workload=wl.name, round=rnd, position=pos, target=target)
                    self.record(row)

    def record(self, row):
        self.rows.append(row)
        with open(self.raw_path, "a", newline="") as f:
            csv.DictWriter(f, RAW_FIELDS).writerow({k: row.get(k, "") for k in RAW_FIELDS})
        if row["status"] != "ok":
            self.failures.append(row)
        if row.get("tps"):
            say(f"  round {row['round']} {row['target']:<14} tps {row['tps']:>10}  mean {row['mean_ms']:>7} ms"
                f"  p99 {row['p99_ms']:>7} ms  cpu/xact {row.get('cpu_us_per_xact') or '-':>7} us")
        elif row.get("rss_kb_per_client"):
            say(f"  round {row['round']} {row['target']:<14} {row['clients']} idle clients: "
                f"{row['rss_kb_per_client']} KiB/client, login cpu {row['login_cpu_us_per_client']} us/client,"
                f" {row['login_seconds']} s to log in")
        else:
            say(f"  round {row['round']} {row['target']:<14} FAILED: {row['status']}")

    def measure_pgbench(self, wl, target, rnd):
        port, dbname = self.endpoint(target, wl)
        secs = self.plan["seconds"]
        prefix = os.path.join(self.logdir, f"{wl.name}.{rnd}.{target}")
        total = self.plan.get("transactions")
        length = ["-t", str(max(1, total // wl.pgbench_clients()))] if total else ["-T", str(secs)]
        cmd = [self.pg.bin("pgbench"), "-n", "-h", "127.0.0.1", "-p", str(port), "-U", USER,
               *length, "-l", f"--log-prefix={prefix}", *wl.pgbench, dbname]
        pooler = self.poolers.get(target)
        row = dict(clients=wl.pgbench_clients(), seconds=secs)
        cpu0 = cpu_us(pooler.pid) if pooler else None
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, env=dict(self.pgenv, **wl.env),
                               cwd=self.logdir, timeout=secs + PGBENCH_GRACE)
            out, rc = r.stdout + r.stderr, r.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = f"{e.stdout or ''}{e.stderr or ''}timed out", "timeout"
        cpu1 = cpu_us(pooler.pid) if pooler else None
        tps, xacts = parse_pgbench_output(out)
        logged, mean_ms, p99_ms = parse_xact_logs(prefix)
        if rc != 0 or not xacts:
            return dict(row, status=self._pgbench_failure(wl, target, cmd, rc, out, pooler))
        row.update(tps=fmt(tps, 1), xacts=xacts, mean_ms=fmt(mean_ms, 4), p99_ms=fmt(p99_ms, 3),
                   status="ok")
        if pooler:
            row["cpu_us_per_xact"] = fmt((cpu1 - cpu0) / xacts, 2)
        return row

    def _pgbench_failure(self, wl, target, cmd, rc, out, pooler):
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower() or "abort" in ln.lower()]
        say(f"FAILED at step '{wl.name} against {target}': pgbench exited {rc}\n  {' '.join(cmd)}\n"
            + "\n".join("  | " + ln for ln in lines[-12:]))
        for path in (pooler.logs() if pooler else [self.pg.log_path]):
            say(f"--- last lines of {path}\n{tail(path, 15)}")
        return f"pgbench exited {rc}: {(errors or lines or ['no output'])[-1][:200]}"

    def measure_idle(self, wl, target):
        """A fresh pooler (allocators keep freed memory, so a second round on
        the same process would measure reuse, not cost): log one client in
        (the pooler connects to PostgreSQL, learns its parameters), then read
        VmRSS, open N idle clients, read VmRSS again."""
        n = wl.clients
        pooler = self._new_pooler(target, suffix=f"-idle{len(self.extra)}")
        self.extra.append(pooler)
        row = dict(clients=n, seconds="")
        socks = []
        try:
            pooler.start()
            login = dict(user=USER, password=PASSWORD, dbname=wl.dbname)
            pgwire.close_clients(pgwire.open_idle_clients(pooler.port, 1, **login))
            rss0, cpu0, t0 = rss_kb(pooler.pid), cpu_us(pooler.pid), time.monotonic()
            socks = pgwire.open_idle_clients(pooler.port, n, **login, timeout=60 + n / 50)
            t1, cpu1, rss1 = time.monotonic(), cpu_us(pooler.pid), rss_kb(pooler.pid)
            row.update(rss_before_kb=rss0, rss_after_kb=rss1,
                       rss_kb_per_client=fmt((rss1 - rss0) / n, 2),
                       login_cpu_us_per_client=fmt((cpu1 - cpu0) / n, 1),
                       login_seconds=fmt(t1 - t0, 2), status="ok")
        except (pgwire.LoginError, OSError, StepFailed) as e:
            say(f"FAILED at step '{wl.name} against {target}': {e}")
            for path in pooler.logs():
                say(f"--- last lines of {path}\n{tail(path, 15)}")
            row["status"] = f"failed: {str(e)[:200]}"
        finally:
            pgwire.close_clients(socks)
            pooler.stop()
        return row

    # -- the end

    def teardown(self):
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        for p in list(self.poolers.values()) + self.extra:
            p.stop()
        self.pg.stop()
        self._keep_logs()

    def _keep_logs(self):
        """Pooler and PostgreSQL logs go along with the results, for the curious."""
        dest = os.path.join(self.results, "logs")
        os.makedirs(dest, exist_ok=True)
        for p in list(self.poolers.values()) + self.extra:
            for path in p.logs():
                if os.path.getsize(path) > 0:
                    shutil.copy(path, os.path.join(dest, f"{p.name}.{os.path.basename(path)}"))
        if os.path.exists(self.pg.log_path):
            shutil.copy(self.pg.log_path, os.path.join(dest, "postgresql.log"))


# ----------------------------------------------------------- the plan

def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode.add_argument("--smoke", action="store_const", dest="mode", const="smoke")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--workloads", help="comma-separated: " + ",".join(w.name for w in WORKLOADS))
    ap.add_argument("--pgpulse", required=True, help="the pgpulse binary")
    ap.add_argument("--pgbouncer", default=shutil.which("pgbouncer", path="/usr/sbin:/usr/bin:/sbin:/bin"))
    ap.add_argument("--workdir", required=True, help="an empty dir for data, sockets and logs")
    ap.add_argument("--results", required=True, help="where raw.csv, results.md and charts go")
    ap.add_argument("--server-unix", action="store_true",
                    help="the poolers reach PostgreSQL over its unix socket instead of TCP")
    ap.add_argument("--commit", default="unknown", help="the source's git commit, for the report")
    ap.add_argument("--started", type=float, help="epoch seconds bench.sh started (for the total time)")
    opts = ap.parse_args(argv)
    opts.mode = opts.mode or "default"
    return opts


def make_plan(opts):
    base = MODES[opts.mode]
    plan = dict(mode=opts.mode, rounds=opts.rounds or base["rounds"],
                seconds=opts.seconds or base["seconds"], scale=base["scale"],
                warmup=min(base["warmup"], opts.seconds or base["warmup"]),
                transactions=None if opts.seconds else base.get("transactions"))
    names = [w.name for w in WORKLOADS]
    wanted = opts.workloads.split(",") if opts.workloads else names
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise StepFailed("read options", f"unknown workload(s) {', '.join(unknown)}; "
                         f"known: {', '.join(names)}")
    if plan["rounds"] < 1 or plan["seconds"] < 1:
        raise StepFailed("read options", "--rounds and --seconds must be at least 1")
    plan["workloads"] = [w for w in WORKLOADS if w.name in wanted]
    leave_out_old_pgbouncer(plan["workloads"], opts.pgbouncer)
    for w in plan["workloads"]:
        if w.is_idle:
            w.clients = base["idle"][w.idle]
    return plan


def pgbouncer_version(path):
    """(major, minor) of the PgBouncer binary, or None if it does not say."""
    m = re.search(r"(\d+)\.(\d+)", tool_version([path, "-V"]) if path else "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def leave_out_old_pgbouncer(workloads, path):
    """A workload PgBouncer runs only from some version on loses its PgBouncer
    target (and says why) when the one selected is older."""
    version = None
    for w in workloads:
        if not w.pgbouncer_since or "pgbouncer" not in w.targets:
            continue
        version = version or pgbouncer_version(path)
        if version and version >= w.pgbouncer_since:
            continue
        w.targets = tuple(t for t in w.targets if t != "pgbouncer")
        have = ".".join(map(str, version)) if version else "of unknown version"
        w.note = (f"PgBouncer {have} cannot run it (needs {'.'.join(map(str, w.pgbouncer_since))}+; "
                  f"select one with PGBOUNCER=): left out")


def ensure_fd_limit(plan):
    """Raise the soft open-file limit to the hard one; stop if the hard one is not
    enough for the largest idle workload (the pooler and this process each
    hold one descriptor per client) or for 500 pgbench clients."""
    need = 1024
    for w in plan["workloads"]:
        need = max(need, (w.clients + 500) if w.is_idle else w.pgbench_clients() + 200)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        big = max(w.clients for w in plan["workloads"] if w.is_idle) if any(
            w.is_idle for w in plan["workloads"]) else 0
        raise StepFailed("raise the open-file limit",
                         f"the hard limit is {hard} open files, the chosen workloads need {need} "
                         f"({big} idle clients). Run bench.sh as root (it raises the limit), raise "
                         "`ulimit -Hn`, or leave out the idle workloads (--workloads ...)")
    # always the hard limit, so both poolers run with the same one whatever
    # the workloads (a PAM session, e.g. runuser's, may reset the soft limit)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Rough seconds beyond -T per run (pgbench starting, log parsing) and for
# setup, measured on a 2-core machine; only for the estimate printed at start.
OVERHEAD = {"clients-500": 1.0}
SETUP_SECONDS = {"default": 15, "quick": 15, "smoke": 8}


def estimate_seconds(plan):
    total = SETUP_SECONDS[plan["mode"]]
    total += plan["warmup"] * len(warm_up_pairs(plan["workloads"]))
    for w in plan["workloads"]:
        runs = plan["rounds"] * len(w.targets)
        if w.is_idle:
            total += runs * (0.5 + w.clients / 8000)
        else:
            total += runs * (plan["seconds"] + OVERHEAD.get(w.name, 0.3))
    return total


def tool_version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def describe_run(opts, plan, bench):
    bindir = bench.pg.bindir
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        commit=opts.commit, mode=plan["mode"], rounds=plan["rounds"], seconds=plan["seconds"],
        scale=plan["scale"], nproc=os.cpu_count(),
        pgpulse=tool_version([opts.pgpulse, "-V"]),
        pgbouncer=tool_version([opts.pgbouncer, "-V"]),
        postgres=tool_version([os.path.join(bindir, "postgres"), "-V"]),
        pgbench=tool_version([os.path.join(bindir, "pgbench"), "-V"]),
        kernel=platform.release(), loadavg_start=loadavg(), server_unix=opts.server_unix,
        workloads={w.name: dict(what=w.what, clients=w.clients, canonical=w.idle,
                                targets=list(w.targets), note=w.note) for w in plan["workloads"]},
    )


def check_tools(opts):
    for what, path in (("pgpulse", opts.pgpulse), ("pgbouncer", opts.pgbouncer)):
        if not path or not os.access(path, os.X_OK):
            raise StepFailed("find tools", f"{what} not found at {path!r} "
                             f"({'build it or set PGPULSE_BIN' if what == 'pgpulse' else 'apt-get install pgbouncer'})")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum, frame):
    # the first signal unwinds (finally: teardown); teardown ignores the rest,
    # so a Ctrl-C that also reaches bench.sh cannot cut the cleanup short
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def catch_stop_signals():
    """SIGINT, SIGTERM, SIGHUP: stop what was started, then exit.  SIGINT too,
    explicitly: a background job of a non-interactive shell starts with it
    ignored."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)


def main(argv):
    started = time.time()
    catch_stop_signals()
    bench = None
    try:
        opts = parse_args(argv)
        plan = make_plan(opts)
        check_tools(opts)
        ensure_fd_limit(plan)
        est = estimate_seconds(plan)
        say(f"mode {plan['mode']}: {plural(plan['rounds'], 'round')} of {plan['seconds']} s, "
            f"workloads {','.join(w.name for w in plan['workloads'])}; "
            f"estimated {est / 60:.1f} min")
        bench = Bench(opts, plan)
        meta = describe_run(opts, plan, bench)
        try:
            bench.setup()
            meta["pgpulse_warnings"] = bench.ini_warnings
            bench.run()
        finally:
            bench.teardown()
        meta["loadavg_end"] = loadavg()
        meta["minutes"] = round((time.time() - (opts.started or started)) / 60, 1)
        text = report.write(opts.results, bench.rows, meta)
        print("\n" + text, flush=True)
    except StepFailed as e:
        print(e.explain(), file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt as e:
        print(f"bench: interrupted ({e or 'Ctrl-C'}); everything it started is stopped",
              file=sys.stderr, flush=True)
        return 130
    if bench.failures:
        say(f"{len(bench.failures)} run(s) failed; see status in raw.csv and the messages above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
