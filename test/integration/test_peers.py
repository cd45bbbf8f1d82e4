"""Peering (doc/config.md peer_id and [peers]; doc/operations.md "Several
processes on one port"): several pgpulse processes on one so_reuseport
port, each with its own peer_id and the same [peers] section, behave as
one pooler for cancel requests. A CancelRequest comes on a new connection
that the kernel may hand to any of them; the key names the process that
gave it out, and the one that got the request forwards it there."""

import os
import re
import shlex
import socket
import struct
import subprocess
import threading

import psycopg
import pytest

from fakedns import FakeDNS
from pgpulse_harness import PROTO_V3, free_port, port_accepts, query_message, read_message, wait_until

CANCEL_CODE = 80877102
USERS = {"app": "app_pw", "admin": "admin_pw"}
SLEEP = "SELECT pg_sleep(30)"

CONFIG = """\
[databases]
appdb = host={pg_host} port={pg_port} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
auth_type = trust
auth_file = {auth_file}
admin_users = admin
pool_mode = %(mode)s
default_pool_size = 20
so_reuseport = 1
peer_id = %(peer_id)d
[peers]
%(peers)s
"""


def peers_section(group):
    return "\n".join(f"{i + 1} = host={pp.dir} port={pp.port}" for i, pp in enumerate(group))


def start_group(pgpulse, n, mode="transaction", with_peers=True):
    """n processes on one port, peer_id 1..n, each with its own unix socket
    directory, all with the same [peers] section (or an empty one)."""
    group = []
    for i in range(n):
        group.append(pgpulse("", USERS, port=group[0].port if group else None, args=("-v",),
                             start=False))
    for i, pp in enumerate(group):
        pp.write_config(CONFIG % {"mode": mode, "peer_id": i + 1,
                                  "peers": peers_section(group) if with_peers else ""})
    for pp in group:
        pp.start()
    return group


def unix_socket(pp):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(os.path.join(pp.dir, f".s.PGSQL.{pp.port}"))
    return s


def login_for_key(sock, user="app", database="appdb"):
    """Log in (trust) on a raw socket; the BackendKeyData's (pid, key)."""
    body = struct.pack("!I", PROTO_V3) + f"user\0{user}\0database\0{database}\0\0".encode()
    sock.sendall(struct.pack("!I", len(body) + 4) + body)
    buf, key = b"", None
    while True:
        mtype, payload, buf = read_message(sock, buf)
        assert mtype != b"E", payload
        if mtype == b"K":
            key = struct.unpack("!II", payload)
        if mtype == b"Z":
            assert key is not None
            return key


def send_cancel(sock, pid, key):
    """A CancelRequest; returns once the process has closed the connection
    (as libpq's PQcancel waits for it)."""
    sock.sendall(struct.pack("!IIII", 16, CANCEL_CODE, pid, key))
    while sock.recv(64):
        pass
    sock.close()


def sleeping_backends(pg):
    return pg.query("SELECT count(*) FROM pg_stat_activity WHERE query = %s AND state = 'active'",
                    (SLEEP,))[0][0]


def error_code(sock):
    buf = b""
    while True:
        mtype, payload, buf = read_message(sock, buf)
        if mtype == b"E":
            fields = {chr(p[0]): p[1:].decode() for p in payload.split(b"\0") if p}
            return fields["C"]
        if mtype == b"Z":
            return None


def forwards(group):
    return sum(pp.log().count("cancel request on its way to peer") for pp in group)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_every_libpq_cancel_takes_effect_whichever_process_it_lands_on(pgpulse, pg, n, mode):
    group = start_group(pgpulse, n, mode)
    # The kernel spreads connections over the processes: a batch of 12 has
    # all its cancels land on their owners once in 3**-11 or 2**-11 batches.
    # Such a batch proves nothing about forwarding, so another one runs.
    for _ in range(3):
        cancel_a_batch(group, pg)
        if forwards(group) > 0:
            break
    assert forwards(group) > 0


def cancel_a_batch(group, pg):
    """12 sleeping queries, each cancelled with libpq's cancel: every one ends 57014."""
    conns = [group[0].connect(autocommit=True) for _ in range(12)]
    results = [None] * len(conns)

    def run(i):
        try:
            conns[i].execute(SLEEP)
            results[i] = "finished"
        except psycopg.errors.QueryCanceled:
            results[i] = "57014"
        except Exception as e:  # noqa: BLE001 - any other end is a failure to report
            results[i] = repr(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(conns))]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: sleeping_backends(pg) == len(conns), 15, "every query to be running")
        for c in conns:
            c.cancel()  # libpq: a new TCP connection to the shared port
    finally:
        for t in threads:
            t.join(40)
        for c in conns:
            c.close()
    assert results == ["57014"] * len(conns)


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_cancel_sent_to_another_process_socket_is_forwarded_to_the_owner(pgpulse, pg, mode):
    a, b, c = start_group(pgpulse, 3, mode)
    for via in (b, c):
        s = unix_socket(a)
        pid, key = login_for_key(s)
        # with a peer_id every pid is pgpulse's own, session mode's too: it carries the id
        assert pid > 4194304 and (pid >> 16 & 0xff) == 1
        assert pg.query("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))[0][0] == 0
        s.sendall(query_message(SLEEP))
        wait_until(lambda: sleeping_backends(pg) == 1, 15, "the query to be running")
        send_cancel(unix_socket(via), pid, key)
        assert error_code(s) == "57014"
        s.close()
        wait_until(lambda: sleeping_backends(pg) == 0, 15, "the backend to be idle")
    assert "cancel request on its way to peer 1" in b.log()
    assert "cancel request on its way to peer 1" in c.log()


def test_a_peers_section_in_a_circle_is_cut_by_the_hop_limit(pgpulse):
    """A key of peer 2, whose [peers] entry points back at this process:
    forwarded three times, then dropped; the cancel connection is closed."""
    pp = pgpulse("", USERS, args=("-v",), start=False)
    pp.write_config(CONFIG % {"mode": "transaction", "peer_id": 1,
                              "peers": f"2 = host={pp.dir} port={pp.port}"})
    pp.start()
    pid = 0x40000000 | (2 << 16) | 0x55  # peer 2 in PgBouncer's layout
    send_cancel(unix_socket(pp), pid, 0x12345677)
    pp.wait_log("cancel request for peer 2 dropped: it was forwarded too often")
    assert pp.log().count("cancel request on its way to peer 2") == 3
    with pp.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cancel_for_an_unknown_peer_is_dropped(pgpulse, pg):
    a, b = start_group(pgpulse, 2)
    s = unix_socket(a)
    pid, key = login_for_key(s)
    s.sendall(query_message(SLEEP))
    wait_until(lambda: sleeping_backends(pg) == 1, 15, "the query to be running")
    stranger = (pid & 0xff0000ff) | (77 << 16)
    send_cancel(unix_socket(b), stranger, key)
    b.wait_log("cancel request for unknown peer 77 dropped")
    assert sleeping_backends(pg) == 1
    send_cancel(unix_socket(b), pid, key)
    assert error_code(s) == "57014"


def test_peers_section_is_read_again_at_reload(pgpulse, pg):
    a, b = start_group(pgpulse, 2, with_peers=False)
    s = unix_socket(a)
    pid, key = login_for_key(s)
    s.sendall(query_message(SLEEP))
    wait_until(lambda: sleeping_backends(pg) == 1, 15, "the query to be running")
    send_cancel(unix_socket(b), pid, key)
    b.wait_log("cancel request for unknown peer 1 dropped")
    assert sleeping_backends(pg) == 1

    for i, pp in enumerate((a, b)):
        mark = pp.log_mark()
        pp.write_config(CONFIG % {"mode": "transaction", "peer_id": i + 1, "peers": peers_section((a, b))})
        pp.reload()
        pp.wait_log("configuration reloaded", since=mark)
    send_cancel(unix_socket(b), pid, key)
    assert error_code(s) == "57014"


SHARED = """\
[databases]
appdb = host={pg_host} port={pg_port} dbname=appdb
[pgpulse]
listen_addr = 127.0.0.1
listen_port = {port}
auth_type = trust
auth_file = {auth_file}
so_reuseport = 1
[peers]
1 = host=%(run)s/1 port={port}
2 = host=%(run)s/2 port={port}
"""


def template_exec_start_pre(instance, etc_ini, run_dir, metrics_base):
    """etc/pgpulse@.service's ExecStartPre for one instance, with the
    specifiers systemd expands (%i, %%, $$) expanded, and its /etc, /run
    and metrics port base pointed at the test's."""
    srcdir = os.environ.get("PGPULSE_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(srcdir, "etc", "pgpulse@.service")) as f:
        line = next(ln for ln in f if ln.startswith("ExecStartPre="))
    cmd = line.split("=", 1)[1].strip()
    # left to right, as systemd reads specifiers: "%%i" is "%i", not "%" and an instance
    cmd = re.sub(r"%(.)", lambda m: {"%": "%", "i": str(instance)}[m.group(1)], cmd).replace("$$", "$")
    cmd = cmd.replace("/etc/pgpulse/pgpulse.ini", etc_ini).replace("/run/pgpulse", run_dir)
    cmd = cmd.replace("9190", str(metrics_base))
    return shlex.split(cmd)


def free_port_run(n):
    """a port p with p+1 .. p+n free too"""
    while True:
        base = free_port()
        try:
            socks = []
            for i in range(1, n + 1):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()


def test_template_unit_instances_are_peers_on_one_port(pgpulse, pg):
    """Two instances as etc/pgpulse@.service makes them: the instance name
    is the peer_id, each has its own unix socket and metrics port; a cancel
    sent to one for the other's client takes effect."""
    a = pgpulse("", USERS, args=("-v",), start=False)
    b = pgpulse("", USERS, port=a.port, args=("-v",), start=False)
    run = os.path.join(a.dir, "run")
    etc_ini = os.path.join(a.dir, "shared.ini")
    with open(etc_ini, "w") as f:
        f.write(a.render(SHARED % {"run": run}))
    metrics = free_port_run(2)
    for i, pp in ((1, a), (2, b)):
        os.makedirs(os.path.join(run, str(i)))
        subprocess.run(template_exec_start_pre(i, etc_ini, run, metrics), check=True)
        pp.ini_path = os.path.join(run, str(i), "pgpulse.ini")
        pp.dir = os.path.join(run, str(i))  # where unix_socket() looks for the socket
        pp.start()
    for i in (1, 2):
        assert port_accepts(metrics + i)
    s = unix_socket(a)
    pid, key = login_for_key(s)
    s.sendall(query_message(SLEEP))
    wait_until(lambda: sleeping_backends(pg) == 1, 15, "the query to be running")
    send_cancel(unix_socket(b), pid, key)
    assert error_code(s) == "57014"
    assert "cancel request on its way to peer 1" in b.log()


def test_forward_carries_one_hop_less_and_holds_the_client_until_the_peer_closes(pgpulse):
    """The peer gets the same CancelRequest with one hop of the key's budget
    spent; the client's cancel connection stays open until the peer has
    closed (libpq's PQcancel waits for that), and SHOW PEER_POOLS shows the
    forward meanwhile."""
    peer = socket.socket()
    peer.bind(("127.0.0.1", 0))
    peer.listen(4)
    peer.settimeout(10)
    pp = pgpulse("", USERS, args=("-v",), start=False)
    pp.write_config(CONFIG % {"mode": "transaction", "peer_id": 1,
                              "peers": f"1 = host={pp.dir} port={pp.port}\n"
                                       f"2 = host=127.0.0.1 port={peer.getsockname()[1]}"})
    pp.start()
    assert [(r["peer_id"], r["host"], r["port"]) for r in pp.show("PEERS")] == \
        [(1, pp.dir, pp.port), (2, "127.0.0.1", peer.getsockname()[1])]
    pid = 0x41000000 | (2 << 16) | 0x34  # a key of peer 2 (its third byte is the id's high bits)
    client = unix_socket(pp)
    client.sendall(struct.pack("!IIII", 16, CANCEL_CODE, pid, 0xabcdef03))
    conn, _ = peer.accept()
    got = b""
    while len(got) < 16:
        got += conn.recv(16 - len(got))
    assert struct.unpack("!IIII", got) == (16, CANCEL_CODE, pid, 0xabcdef02)

    def peer_pool():
        return next(r for r in pp.show("PEER_POOLS") if r["peer_id"] == 2)
    wait_until(lambda: peer_pool()["sv_active_cancel"] == 1, 10, "the forward to show")
    assert peer_pool()["cl_active_cancel_req"] == 1
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(1)  # still open: the peer has not closed yet
    conn.close()
    client.settimeout(10)
    assert client.recv(1) == b""  # closed once the peer closed
    wait_until(lambda: peer_pool()["sv_active_cancel"] == 0, 10, "the forward to end")
    peer.close()


@pytest.fixture
def dns():
    server = FakeDNS()
    yield server
    server.close()


def test_peer_host_name_is_looked_up_and_a_name_that_does_not_resolve_drops_the_cancel(pgpulse, dns):
    """A [peers] host given by name: the forward waits for the lookup (the
    loop does not), then goes to the address; a name that does not exist
    drops the request and closes the client's cancel connection."""
    peer = socket.socket()
    peer.bind(("127.0.0.1", 0))
    peer.listen(4)
    peer.settimeout(10)
    dns.set("peer2.test", ["127.0.0.1"], delay=0.3)
    dns.set_nxdomain("peer3.test")
    pp = pgpulse("", USERS, args=("-v",), start=False)
    pp.write_config(CONFIG % {"mode": "transaction", "peer_id": 1,
                              "peers": f"2 = host=peer2.test port={peer.getsockname()[1]}\n"
                                       f"3 = host=peer3.test port={peer.getsockname()[1]}"}
                    + f"[pgpulse]\ndns_nameservers = {dns.nameserver}\nresolv_conf = {{dir}}/resolv.conf\n")
    with open(os.path.join(pp.dir, "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\n")  # replaced by dns_nameservers
    pp.start()

    pid = 0x41000000 | (2 << 16) | 0x34
    client = unix_socket(pp)
    client.sendall(struct.pack("!IIII", 16, CANCEL_CODE, pid, 0x11111113))
    # the console answers meanwhile: a lookup does not hold the loop
    assert any(r["peer_id"] == 2 for r in pp.show("PEER_POOLS"))
    conn, _ = peer.accept()
    got = b""
    while len(got) < 16:
        got += conn.recv(16 - len(got))
    assert struct.unpack("!IIII", got) == (16, CANCEL_CODE, pid, 0x11111112)
    conn.close()
    assert client.recv(1) == b""

    pid3 = 0x41000000 | (3 << 16) | 0x34
    client = unix_socket(pp)
    client.sendall(struct.pack("!IIII", 16, CANCEL_CODE, pid3, 0x11111113))
    assert client.recv(1) == b""
    pp.wait_log(r'cancel request for peer 3: host "peer3.test" did not resolve')
    assert dns.queries("peer2.test") >= 1


def test_a_peer_that_cannot_be_reached_or_never_answers_releases_the_client(pgpulse):
    """Every way a forward can fail ends it and closes the client's cancel
    connection: no socket in the peer's directory, a TCP port nobody
    listens on, and a peer that takes the request and never closes (cut
    at cancel_wait_timeout)."""
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(4)  # the kernel completes the handshake; nobody reads or closes
    closed_port = free_port()
    pp = pgpulse("", USERS, args=("-v",), start=False)
    empty_dir = os.path.join(pp.dir, "nobody")
    os.makedirs(empty_dir)
    pp.write_config(CONFIG % {"mode": "transaction", "peer_id": 1,
                              "peers": f"2 = host={empty_dir} port={pp.port}\n"
                                       f"3 = host=127.0.0.1 port={closed_port}\n"
                                       f"4 = host=127.0.0.1 port={mute.getsockname()[1]}"}
                    + "[pgpulse]\ncancel_wait_timeout = 1\n")
    pp.start()
    for peer_id in (2, 3, 4):
        client = unix_socket(pp)
        client.sendall(struct.pack("!IIII", 16, CANCEL_CODE, 0x41000034 | (peer_id << 16), 0x11111113))
        assert client.recv(1) == b"", peer_id
        client.close()
    pp.wait_log("cancel request forwarded to peer 4 not settled within cancel_wait_timeout")
    wait_until(lambda: all(r["sv_active_cancel"] == 0 and r["sv_login"] == 0 for r in pp.show("PEER_POOLS")),
               10, "every forward to end")
    with pp.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    mute.close()
