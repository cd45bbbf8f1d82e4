"""Replicas by role and lag, and failover (issue 16), on a primary and one
streaming replica of this file's own (pg_basebackup -R), both on loopback:
each target_session_attrs goes to the host whose role fits it, a replica
whose replay is paused is dropped past replica_max_lag and taken back once
it catches up, and a promoted standby takes the read-write entry's
connections without RELOAD or restart.

The pair is the module's, not the session's PostgreSQL: the last test
promotes the replica.
"""

import os
import subprocess
import tempfile

import psycopg
import pytest

from pgpulse_harness import free_port, pg_bin, remove_tree, wait_until

USERS = {"app": "app_pw", "admin": "admin_pw"}

HBA = """\
local all all trust
host all all 127.0.0.1/32 trust
local replication all trust
host replication all 127.0.0.1/32 trust
"""


class Node:
    """One PostgreSQL of the pair: its data dir, port and pg_ctl."""

    def __init__(self, base, name):
        self.dir = os.path.join(base, name)
        self.datadir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgresql.log")
        self.port = free_port()
        os.makedirs(self.dir)

    def conf(self):
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                    "max_wal_senders = 5\nhot_standby = on\nwal_level = replica\n"
                    "lc_messages = 'C'\n")

    def ctl(self, *args):
        subprocess.run([pg_bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "60", *args],
                       check=True, capture_output=True, timeout=90)

    def start(self):
        self.ctl("-l", self.log_path, "start")

    def sql(self, query, dbname="appdb"):
        with psycopg.connect(host=self.dir, port=self.port, user="postgres", dbname=dbname,
                             autocommit=True, connect_timeout=10) as c:
            cur = c.execute(query)
            return cur.fetchall() if cur.description is not None else None

    def destroy(self):
        subprocess.run([pg_bin("pg_ctl"), "-D", self.datadir, "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pair(session_dir):
    base = tempfile.mkdtemp(prefix="hc", dir=session_dir)
    primary, replica = Node(base, "p"), Node(base, "r")
    try:
        subprocess.run([pg_bin("initdb"), "-D", primary.datadir, "-U", "postgres", "-A", "trust",
                        "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, capture_output=True, timeout=120)
        primary.conf()
        with open(os.path.join(primary.datadir, "pg_hba.conf"), "w") as f:
            f.write(HBA)
        primary.start()
        primary.sql("CREATE ROLE app LOGIN", dbname="postgres")
        primary.sql("CREATE DATABASE appdb OWNER app", dbname="postgres")
        primary.sql("CREATE TABLE t (x int)")
        primary.sql("GRANT ALL ON t TO app")
        subprocess.run([pg_bin("pg_basebackup"), "-D", replica.datadir, "-R", "-X", "stream",
                        "-c", "fast", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"],
                       check=True, capture_output=True, timeout=120)
        replica.conf()
        replica.start()
        wait_until(lambda: replica.sql("SELECT pg_is_in_recovery()")[0][0] is True, 30,
                   "the replica to run in recovery")
        # a transaction replayed: the replica's time lag is measured from its timestamp
        primary.sql("INSERT INTO t VALUES (0)")
        wait_until(lambda: replica.sql("SELECT count(*) FROM t")[0][0] == 1, 30,
                   "the replica to replay a transaction")
        yield primary, replica
    finally:
        replica.destroy()
        primary.destroy()
        remove_tree(base)


def config(primary, replica, extra=""):
    # the replica first: a read-write entry must pass it over
    hosts = f"host=127.0.0.1,127.0.0.1 port={replica.port},{primary.port} dbname=appdb"
    return f"""\
[databases]
rw = {hosts} target_session_attrs=read-write
prim = {hosts} target_session_attrs=primary
ro = {hosts} target_session_attrs=read-only
sb = {hosts} target_session_attrs=standby
pref = {hosts} target_session_attrs=prefer-standby
anyhost = {hosts}
[pgpulse]
listen_addr = 127.0.0.1
listen_port = {{port}}
unix_socket_dir = {{dir}}
auth_type = trust
auth_file = {{auth_file}}
admin_users = admin
pool_mode = transaction
default_pool_size = 4
server_login_retry = 1
replica_check_period = 1
{extra}"""


def where(pp, dbname):
    """(in recovery, server port) of the host a transaction of dbname ran on."""
    with pp.connect(dbname=dbname, autocommit=True) as c:
        return tuple(c.execute("SELECT pg_is_in_recovery(), inet_server_port()").fetchone())


def test_each_target_session_attrs_goes_to_the_host_that_fits(pgpulse, pair):
    primary, replica = pair
    pp = pgpulse(config(primary, replica), USERS)
    for _ in range(3):
        assert where(pp, "rw") == (False, primary.port)
        assert where(pp, "prim") == (False, primary.port)
        assert where(pp, "ro") == (True, replica.port)
        assert where(pp, "sb") == (True, replica.port)
        assert where(pp, "pref") == (True, replica.port)
    # any: round robin over both
    seen = set()
    with pp.connect(dbname="anyhost") as a, pp.connect(dbname="anyhost") as b:
        for c in (a, b):
            c.execute("BEGIN")
            seen.add(c.execute("SELECT inet_server_port()").fetchone()[0])
    assert seen == {primary.port, replica.port}
    # the standby's login for rw was closed without counting as a failure
    assert "does not fit target_session_attrs=read-write" in pp.log()
    assert "server login failed" not in pp.log()


def test_reload_of_target_session_attrs_and_a_refused_word(pgpulse, pair):
    primary, replica = pair
    pp = pgpulse(config(primary, replica), USERS)
    # any: with two sessions open, one server on each host
    with pp.connect(dbname="anyhost") as a, pp.connect(dbname="anyhost") as b:
        for c in (a, b):
            c.execute("BEGIN")
            c.execute("SELECT 1")
    assert sorted(int(r["port"]) for r in pp.show("SERVERS") if r["database"] == "anyhost") == \
        sorted([primary.port, replica.port])
    text = config(primary, replica).replace(
        f"anyhost = host=127.0.0.1,127.0.0.1 port={replica.port},{primary.port} dbname=appdb",
        f"anyhost = host=127.0.0.1,127.0.0.1 port={replica.port},{primary.port} dbname=appdb "
        "target_session_attrs=standby")
    pp.write_config(text)
    pp.reload()
    # the idle server on the primary goes; every transaction now runs on the replica
    wait_until(lambda: [int(r["port"]) for r in pp.show("SERVERS") if r["database"] == "anyhost"]
               == [replica.port], 10, "anyhost's server on the primary to close")
    for _ in range(4):
        assert where(pp, "anyhost") == (True, replica.port)
    # a word libpq does not know: the RELOAD is refused, naming the key, and the old one stays
    pp.write_config(text.replace("target_session_attrs=standby", "target_session_attrs=replica"))
    with pytest.raises(psycopg.Error) as e:
        pp.command("RELOAD")
    assert "target_session_attrs" in str(e.value)
    assert where(pp, "anyhost") == (True, replica.port)


def test_a_paused_replica_is_dropped_past_replica_max_lag_and_taken_back(pgpulse, pair):
    primary, replica = pair
    pp = pgpulse(config(primary, replica, "replica_max_lag = 1\nquery_wait_timeout = 3\n"), USERS)
    assert where(pp, "sb") == (True, replica.port)
    assert where(pp, "pref") == (True, replica.port)
    replica.sql("SELECT pg_wal_replay_pause()")
    try:
        # a write the replica receives and does not replay: its lag grows from now on
        primary.sql("INSERT INTO t VALUES (1)")
        wait_until(lambda: where(pp, "pref") == (False, primary.port), 20,
                   "prefer-standby to fall back to the primary")
        assert "lagging: no new assignments" in pp.log()
        # standby has nowhere to go: it waits, and query_wait_timeout ends the wait
        with pytest.raises(psycopg.Error) as e:
            where(pp, "sb")
        assert "query_wait_timeout" in str(e.value)
    finally:
        replica.sql("SELECT pg_wal_replay_resume()")
    wait_until(lambda: where(pp, "sb") == (True, replica.port), 20,
               "the caught-up replica to serve standby again", ignore=(psycopg.Error,))
    wait_until(lambda: where(pp, "pref") == (True, replica.port), 20,
               "prefer-standby to return to the replica")
    assert "caught up" in pp.log()


def test_a_promoted_standby_takes_the_read_write_entry(pgpulse, pair):
    primary, replica = pair
    pp = pgpulse(config(primary, replica), USERS)
    assert where(pp, "rw") == (False, primary.port)
    assert where(pp, "sb") == (True, replica.port)
    primary.ctl("-m", "fast", "stop")
    replica.ctl("promote")
    # no RELOAD, no restart: the promotion is learned and read-write follows it
    wait_until(lambda: where(pp, "rw") == (False, replica.port), 30,
               "read-write to reach the promoted standby", ignore=(psycopg.Error,))
    with pp.connect(dbname="rw", autocommit=True) as c:
        c.execute("INSERT INTO t VALUES (2)")
    assert "role changed from standby to primary" in pp.log()
    # the standby entry's servers on the promoted host were closed: it fits no longer
    wait_until(lambda: not [r for r in pp.show("SERVERS")
                            if r["database"] == "sb" and int(r["port"]) == replica.port], 10,
               "the standby entry's servers on the new primary to close")
