"""Review of peering (eb22b5f) against what doc/config.md promises:
"as PgBouncer 1.21+ lays it out (so a mixed group of pgpulse and PgBouncer
processes can forward to each other)". These tests put pgpulse and
PgBouncer 1.25 in one group and send a libpq-style cancel to the process
that did NOT hand out the key; the query must end 57014 either way.

Needs PgBouncer 1.25: $PGBOUNCER_125, else the shared anchor binary."""

import os
import socket
import struct

import pytest

from pgpulse_harness import PgBouncer, query_message, read_message, wait_until
from test_peers import (CANCEL_CODE, SLEEP, USERS, error_code, login_for_key, send_cancel,
                        sleeping_backends, unix_socket)

ANCHOR = "/work/shared/anchors/pgbouncer-1.25.2"


def pgbouncer_125():
    path = os.environ.get("PGBOUNCER_125") or ANCHOR
    return path if os.access(path, os.X_OK) else None


needs_125 = pytest.mark.skipif(pgbouncer_125() is None, reason="no PgBouncer 1.25 (set PGBOUNCER_125)")

PGPULSE_INI = """\
[databases]
appdb = host={pg_host} port={pg_port} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
auth_type = trust
auth_file = {auth_file}
pool_mode = %(mode)s
default_pool_size = 20
peer_id = 1
[peers]
2 = host=%(pgb_dir)s port=%(pgb_port)d
"""

PGBOUNCER_INI = """\
[databases]
appdb = host={pg_host} port={pg_port} dbname=appdb
[peers]
1 = host=%(pp_dir)s port=%(pp_port)d
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
pidfile = {pidfile}
auth_type = trust
auth_file = {auth_file}
pool_mode = %(mode)s
default_pool_size = 20
peer_id = 2
"""  # [pgbouncer] last: the harness appends logfile =


def mixed_group(pgpulse, pg, session_dir, mode):
    """pgpulse peer 1 and PgBouncer 1.25 peer 2, each naming the other in [peers]."""
    pp = pgpulse("", USERS, args=("-v",), start=False)
    pb = PgBouncer(PGBOUNCER_INI % {"mode": mode, "pp_dir": pp.dir, "pp_port": pp.port},
                   base_dir=session_dir, bin=pgbouncer_125(), pg=pg, userlist=USERS)
    pp.write_config(PGPULSE_INI % {"mode": mode, "pgb_dir": pb.dir, "pgb_port": pb.port})
    pp.start()
    return pp, pb


def cancelled(s):
    """did the query on s end 57014 (the cancel has landed when send_cancel returns)"""
    s.settimeout(10)
    try:
        return error_code(s) == "57014"
    except TimeoutError:
        return False  # the query is still sleeping: the cancel was lost


def pgb_socket(pb):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(os.path.join(pb.dir, f".s.PGSQL.{pb.port}"))
    return s


@needs_125
def test_session_mode_key_of_pgpulse_is_forwarded_by_a_pgbouncer_peer(pgpulse, pg, session_dir):
    """A session-mode client of pgpulse; its cancel lands on the PgBouncer
    of the group. PgBouncer reads the owner from the pid's bytes, where
    pgpulse left the real backend pid: the cancel must still take effect."""
    pp, pb = mixed_group(pgpulse, pg, session_dir, "session")
    try:
        s = unix_socket(pp)
        pid, key = login_for_key(s)
        s.sendall(query_message(SLEEP))
        wait_until(lambda: sleeping_backends(pg) == 1, 15, "the query to be running")
        send_cancel(pgb_socket(pb), pid, key)
        assert cancelled(s), "the cancel was lost:\n" + pb.log()
        s.close()
    finally:
        pb.stop()


@needs_125
def test_every_pgbouncer_key_is_forwarded_by_pgpulse(pgpulse, pg, session_dir):
    """PgBouncer's pid is random but for the peer id bytes; one in 256 has
    a first byte of 0, so it is not above 4194304. pgpulse then reads the
    owner from the secret key instead and drops or misroutes the cancel."""
    pp, pb = mixed_group(pgpulse, pg, session_dir, "transaction")
    try:
        s = pid = key = None
        for _ in range(4000):  # one in 256 on average; 4000 misses once in ~6e6
            s = pgb_socket(pb)
            pid, key = login_for_key(s)
            assert (pid >> 16) & 0xff == 2, hex(pid)  # PgBouncer's layout: byte 1 is the id
            if pid <= 4194304:
                break
            s.close()
        else:
            pytest.fail("no PgBouncer key with a small pid in 4000 logins")
        s.sendall(query_message(SLEEP))
        wait_until(lambda: sleeping_backends(pg) == 1, 15, "the query to be running")
        send_cancel(unix_socket(pp), pid, key)
        assert cancelled(s), "the cancel was lost:\n" + pp.log()
        s.close()
    finally:
        pb.stop()


@needs_125
def test_ordinary_pgbouncer_key_is_forwarded_by_pgpulse(pgpulse, pg, session_dir):
    """Control: the common case of the test above works on main."""
    pp, pb = mixed_group(pgpulse, pg, session_dir, "transaction")
    try:
        while True:
            s = pgb_socket(pb)
            pid, key = login_for_key(s)
            if pid > 4194304:
                break
            s.close()
        s.sendall(query_message(SLEEP))
        wait_until(lambda: sleeping_backends(pg) == 1, 15, "the query to be running")
        send_cancel(unix_socket(pp), pid, key)
        assert cancelled(s), "the cancel was lost:\n" + pp.log()
        s.close()
    finally:
        pb.stop()


SESSION_INI = """\
[databases]
appdb = host={pg_host} port={pg_port} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
auth_type = trust
auth_file = {auth_file}
pool_mode = session
default_pool_size = 20
peer_id = 1
"""


def test_session_mode_key_cannot_be_guessed_by_someone_who_knows_the_pid(pgpulse, pg):
    """Session mode with peer_id: the pid is the real backend's, which
    pg_stat_activity shows to every database user, and the id and hop bits
    of the key are known; 16 random bits are left (32 without peering,
    46 in PgBouncer's 8-byte layout). A stranger trying every 16-bit value
    (65536 cancel connections, seconds) must not cancel the query."""
    pp = pgpulse(SESSION_INI, USERS, args=("-q",))
    victim = unix_socket(pp)
    pid, _ = login_for_key(victim)
    victim.sendall(query_message(SLEEP))
    wait_until(lambda: sleeping_backends(pg) == 1, 15, "the query to be running")
    # the pid is pgpulse's own, not the backend pid pg_stat_activity shows to
    # every user; the stranger here is granted it anyway, and guesses the 16
    # bits a key with the id in it would have left
    assert pg.query("SELECT pid FROM pg_stat_activity WHERE query = %s", (SLEEP,))[0][0] != pid
    known = (1 << 16) | 3  # peer_id 1 in byte 2 (low 8 bits), nothing in byte 1's low 6 bits, full hops
    path = os.path.join(pp.dir, f".s.PGSQL.{pp.port}")
    for guess in range(1 << 16):
        b3, hi2, lo6 = guess >> 8, (guess >> 6) & 3, guess & 0x3f
        key = b3 << 24 | hi2 << 14 | lo6 << 2 | known
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(struct.pack("!IIII", 16, CANCEL_CODE, pid, key))
        while s.recv(64):
            pass
        s.close()
    assert not cancelled(victim), "a guessed key cancelled another client's query"


def test_a_forward_that_failed_is_not_logged_as_a_cancel_sent(pgpulse):
    """An operator reading the log must not be told a cancel went out when
    the forward never reached its peer: a TCP port nobody listens on, and a
    peer that never closes (cut at cancel_wait_timeout)."""
    from pgpulse_harness import free_port
    from test_peers import CONFIG
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(4)
    pp = pgpulse("", USERS, args=("-v",), start=False)
    pp.write_config(CONFIG % {"mode": "transaction", "peer_id": 1,
                              "peers": f"3 = host=127.0.0.1 port={free_port()}\n"
                                       f"4 = host=127.0.0.1 port={mute.getsockname()[1]}"}
                    + "[pgpulse]\ncancel_wait_timeout = 1\n")
    pp.start()
    for peer_id in (3, 4):
        client = unix_socket(pp)
        client.sendall(struct.pack("!IIII", 16, CANCEL_CODE, 0x41000034 | (peer_id << 16), 0x11111113))
        assert client.recv(1) == b"", peer_id
        client.close()
    pp.wait_log("cancel request forwarded to peer 4 not settled within cancel_wait_timeout")
    pp.wait_log("cancel request forwarded to peer 3: ")
    mute.close()
    assert "successfully sent cancel request" not in pp.log(), pp.log()
