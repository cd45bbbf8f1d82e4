"""A primary and two streaming replicas on loopback, for the tests of
replicas by role and lag, failover and SHOW HOSTS (test_replicas.py, issue 16).

    ReplicaSet   the three clusters: .primary, .replicas = [replica1, replica2],
                 .nodes (the three, in that order), .ports
    replica_set        fixture, module scope: one set for the tests that leave
                       roles alone; every test gets it healed (all three
                       running, replay resumed, both replicas streaming)
    fresh_replica_set  fixture, function scope: a set of its own, for a test
                       that changes roles (promotion)
    pulse              factory fixture: pulse(cluster, ini_text, userlist=USERLIST,
                       start=True) -> Pgpulse, stopped at the end of the test

The primary is made by initdb (the harness's scratch cluster, with
wal_level = replica and hot_standby), the replicas by `pg_basebackup -R`
from it over its unix socket, each on its own port, cluster_name naming it
(so pg_stat_replication's application_name says which replica streams).
Nothing waits blindly: streaming and replay are polled with deadlines.

Every node is stopped (immediate) at the end whatever happened; if pytest
itself is killed, test/run-integration.sh stops the postmasters it finds
under its temp dir, these included.
"""

import os
import tempfile
import time

import pytest

from pgpulse_harness import Pgpulse, PostgreSQL, _tail, free_port, remove_tree, wait_until

USERLIST = {"app": "app_pw", "admin": "admin_pw"}

# the table the tests write to, in appdb, owned by app
WRITES_TABLE = "pulse_writes"


class Node(PostgreSQL):
    """One cluster of the set: the harness's PostgreSQL with a configuration
    made for streaming replication and a short test."""

    def __init__(self, base_dir, name):
        super().__init__(base_dir)
        self.name = name

    def _write_conf(self):
        # Same values on every node: a hot standby refuses to start with
        # max_connections, max_wal_senders ... below its primary's.
        conf = f"""\
# written by test/integration/replicas.py
port = {self.port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.socket_dir}'
cluster_name = '{self.name}'
max_connections = 100
shared_buffers = 16MB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
checkpoint_timeout = 30min
max_wal_size = 256MB
lc_messages = 'C'
log_connections = on
log_disconnections = on
log_line_prefix = '%m [%p] %q%u@%d '
wal_level = replica
max_wal_senders = 6
wal_keep_size = 64MB
hot_standby = on
wal_receiver_status_interval = 1s
"""
        with open(os.path.join(self.datadir, "pgpulse_test.conf"), "w") as f:
            f.write(conf)

    def init_from(self, primary):
        """Make this node a streaming replica of `primary`: pg_basebackup -R
        (standby.signal, primary_conninfo to the primary's unix socket, where
        pg_hba trusts replication connections), then a port of its own."""
        self._run(os.path.join(self.bindir, "pg_basebackup"), "-D", self.datadir,
                  "-h", primary.socket_dir, "-p", str(primary.port), "-U", "postgres",
                  "-R", "-X", "stream", "-c", "fast", "--no-sync")
        self.version = primary.version
        self.port = free_port()
        self._write_conf()   # replaces the primary's copy (its port)

    def promote(self):
        self._run(os.path.join(self.bindir, "pg_ctl"), "-D", self.datadir, "-w", "-t", "60",
                  "promote")

    def pause_replay(self):
        """pg_wal_replay_pause(), and wait until replay has paused (not only
        been asked to: PostgreSQL 14+ tells the two apart)."""
        self.query("SELECT pg_wal_replay_pause()")
        if self.version >= 14:
            wait_until(lambda: self.value("SELECT pg_get_wal_replay_pause_state()") == "paused",
                       10, f"{self.name}'s replay to pause")

    def resume_replay(self):
        self.query("SELECT pg_wal_replay_resume()")

    def value(self, sql, params=None, dbname="postgres"):
        return self.query(sql, params, dbname)[0][0]


class ReplicaSet:
    """A primary and two streaming replicas (see the module docstring)."""

    def __init__(self, base_dir):
        self.dir = tempfile.mkdtemp(prefix="rs", dir=base_dir)
        self.primary = Node(self.dir, "primary")
        self.replicas = [Node(self.dir, "replica1"), Node(self.dir, "replica2")]
        self.nodes = [self.primary] + self.replicas
        self.setup_seconds = None

    @property
    def ports(self):
        return [n.port for n in self.nodes]

    def hosts_entry(self, tsa=None, dbname="appdb", extra=""):
        """A [databases] value over the three nodes, in the order primary,
        replica1, replica2 (one port per host)."""
        s = (f"host=127.0.0.1,127.0.0.1,127.0.0.1 port={','.join(map(str, self.ports))} "
             f"dbname={dbname}")
        if tsa is not None:
            s += f" target_session_attrs={tsa}"
        return (s + " " + extra).rstrip()

    def node_by_port(self, port):
        return next(n for n in self.nodes if n.port == port)

    # -- lifecycle

    def start(self):
        t0 = time.monotonic()
        p = self.primary
        p.init()
        p.start()
        p.setup_roles()
        with p.connect(dbname="appdb", user="app", autocommit=True) as c:
            c.execute(f"CREATE TABLE {WRITES_TABLE} (n int, pad text)")
        for r in self.replicas:
            r.init_from(p)
            r.start()
        self.wait_streaming()
        self.setup_seconds = time.monotonic() - t0

    def destroy(self, remove=False):
        for n in self.nodes:
            if os.path.exists(n.datadir):
                n.destroy()
        if remove and not os.environ.get("PGPULSE_KEEP_TMP"):
            remove_tree(self.dir)

    def logs(self, lines=40):
        return "".join(f"--- {n.name} {n.log_path}\n{_tail(n.log(), lines)}" for n in self.nodes)

    def _wait(self, predicate, timeout, what):
        try:
            return wait_until(predicate, timeout, what, interval=0.05)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None

    def wait_streaming(self, timeout=30):
        """Both replicas are in recovery, their walreceivers stream from the
        primary (pg_stat_replication on the primary names them, state
        streaming), and they have replayed a commit written now."""
        names = {r.name for r in self.replicas}

        def streaming():
            rows = self.primary.query("SELECT application_name FROM pg_stat_replication"
                                      " WHERE state = 'streaming'")
            return names <= {r[0] for r in rows} and rows

        self._wait(streaming, timeout, f"pg_stat_replication on the primary to show {sorted(names)}")
        for r in self.replicas:
            assert r.value("SELECT pg_is_in_recovery()") is True, f"{r.name} is not in recovery"
            self._wait(lambda: r.value("SELECT status FROM pg_stat_wal_receiver") == "streaming",
                       timeout, f"{r.name}'s walreceiver to stream")
        # A commit replayed since each replica started: until then
        # pg_last_xact_replay_timestamp() is NULL, and a standby's time lag
        # (now() minus it) cannot be measured.
        self.write()
        self.wait_replayed(timeout=timeout)

    def wait_replayed(self, replicas=None, timeout=30):
        """Every replica (of `replicas`) has replayed the primary's WAL up to
        its current position."""
        lsn = self.primary.value("SELECT pg_current_wal_lsn()::text")
        for r in replicas or self.replicas:
            self._wait(lambda: r.value("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0",
                                       (lsn,)),
                       timeout, f"{r.name} to replay up to {lsn}")

    def heal(self):
        """Undo what a test of the module-scoped set may have left: a stopped
        node started, a paused replay resumed; then wait for streaming."""
        for n in self.nodes:
            if not n.running():
                n.start()
        for r in self.replicas:
            if r.value("SELECT pg_is_wal_replay_paused()"):
                r.resume_replay()
        self.wait_streaming()

    # -- writes

    def write(self, rows=1, pad=0):
        """Insert `rows` rows (each with `pad` bytes of filler) on the primary."""
        with self.primary.connect(dbname="appdb", user="app", autocommit=True) as c:
            c.execute(f"INSERT INTO {WRITES_TABLE} SELECT g, repeat('x', %s)"
                      " FROM generate_series(1, %s) g", (pad, rows))


@pytest.fixture(scope="module")
def replica_set_module(session_dir):
    rs = ReplicaSet(session_dir)
    try:
        rs.start()
        print(f"\nreplica set (primary + 2 streaming replicas) ready in {rs.setup_seconds:.1f} s")
        yield rs
    finally:
        rs.destroy(remove=True)


@pytest.fixture
def replica_set(replica_set_module):
    replica_set_module.heal()
    return replica_set_module


@pytest.fixture
def fresh_replica_set(session_dir):
    rs = ReplicaSet(session_dir)
    try:
        rs.start()
        yield rs
    finally:
        rs.destroy(remove=True)


@pytest.fixture
def pulse(request, pgpulse_bin, session_dir):
    """Factory: pulse(cluster, ini_text, userlist=USERLIST, start=True) ->
    Pgpulse with {pg_host}/{pg_port} naming the cluster's primary.  Every
    instance is stopped at the end of the test; sanitizer reports in its log
    fail the test (as conftest's pgpulse fixture, which needs the session's
    scratch cluster that these tests do not use)."""
    started = []
    request.node._pgpulse_instances = started   # conftest adds their logs to a failure

    def factory(cluster, ini_text, userlist=None, start=True):
        p = Pgpulse(ini_text, base_dir=session_dir, bin=pgpulse_bin, pg=cluster.primary,
                    userlist=USERLIST if userlist is None else userlist)
        started.append(p)
        if start:
            p.start()
        return p

    yield factory

    problems = []
    for p in started:
        p.stop()
        reports = p.sanitizer_reports()
        if reports:
            problems.append(f"--- {p.log_path}\n" + "\n".join(reports))
    if problems:
        pytest.fail("sanitizer errors in pgpulse:\n" + "\n".join(problems), pytrace=False)
