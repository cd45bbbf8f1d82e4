"""The admin console answers the simple query protocol only, and stays well
behaved with clients that pipeline: every extended-protocol batch gets its
own error and ReadyForQuery, and a client that sends thousands of commands
without reading its answers does not make pgpulse's memory grow with them.

Raw sockets (auth_type = trust) so that the tests control exactly what is
sent and when it is read.
"""

import socket
import struct
import time

from pgpulse_harness import (built_with_asan, error_fields, parse_message, query_message,
                             raw_startup, read_message, rss_kb, sync_message, wait_until)

USERS = {"app": "app_pw", "admin": "admin_pw"}

INI = """\
[databases]
appdb = host={pg_host} port={pg_port} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
auth_type = trust
auth_file = {auth_file}
admin_users = admin
"""


def console(pp, timeout=30, rcvbuf=None):
    """A raw socket logged in to the admin console (closed by the caller)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", pp.port))
        assert raw_startup(s, user="admin", database="pgpulse") == ("ok", None)
    except BaseException:
        s.close()
        raise
    return s


def read_until_ready(sock, buf):
    """Messages up to and including the next ReadyForQuery: ([(type, payload)], rest)."""
    msgs = []
    while True:
        mtype, payload, buf = read_message(sock, buf)
        msgs.append((mtype, payload))
        if mtype == b"Z":
            return msgs, buf


def test_each_extended_protocol_batch_on_the_console_gets_its_own_error(pgpulse):
    pp = pgpulse(INI, USERS)
    with console(pp) as s:
        buf = b""
        for batch in range(3):
            s.sendall(parse_message("SHOW POOLS") + sync_message())
            msgs, buf = read_until_ready(s, buf)
            assert [t for t, _ in msgs] == [b"E", b"Z"], f"batch {batch}: {msgs!r}"
            assert error_fields(msgs[0][1])["C"] == "0A000"
        # the simple protocol still works afterwards
        s.sendall(query_message("SHOW VERSION"))
        msgs, buf = read_until_ready(s, buf)
        assert b"E" not in [t for t, _ in msgs]


def test_pipelined_extended_batches_on_the_console_each_get_error_then_ready(pgpulse):
    pp = pgpulse(INI, USERS)
    with console(pp) as s:
        batch = parse_message("SHOW POOLS") + parse_message("SHOW USERS") + sync_message()
        s.sendall(batch * 3 + query_message("SHOW VERSION"))
        buf, types = b"", []
        for _ in range(4):
            msgs, buf = read_until_ready(s, buf)
            types.append("".join(t.decode() for t, _ in msgs))
        assert types[:3] == ["EZ", "EZ", "EZ"]
        assert types[3] == "TDCZ"


def answer_size(sock, sql):
    """Bytes of the whole answer to one simple query, ReadyForQuery included."""
    sock.sendall(query_message(sql))
    msgs, rest = read_until_ready(sock, b"")
    assert rest == b""
    assert b"E" not in [t for t, _ in msgs]
    return sum(5 + len(p) for _, p in msgs)


def test_console_client_pipelining_without_reading_keeps_pgpulse_memory_bounded(pgpulse,
                                                                                 pgpulse_bin):
    pp = pgpulse(INI, USERS)
    commands = 20000
    bound_kb = 16 * 1024  # what pgpulse may hold for it: its own buffers are far smaller
    with console(pp, timeout=60, rcvbuf=65536) as s:
        one = answer_size(s, "SHOW CONFIG")
        # had pgpulse gone on answering, the answers would pile up in its memory
        assert one * commands > 3 * bound_kb * 1024
        base = rss_kb(pp.pid)
        s.sendall(query_message("SHOW CONFIG") * commands)
        with pp.admin() as watcher:
            def answers_wait_in_pgpulse():
                rows = watcher.execute("SHOW MEM").fetchall()
                return [r for r in rows if r[0] == "outbuf" and r[4] > 0]
            # pgpulse answers until the client's socket is full, then holds the
            # rest of an answer in its own buffer
            wait_until(answers_wait_in_pgpulse, 20, "the console's answers to wait in pgpulse")
        # proving a negative, so a fixed window: an unbounded pgpulse produces
        # the remaining answers (and its memory for them) well within it
        peak = base
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            peak = max(peak, rss_kb(pp.pid))
            time.sleep(0.05)
        # then every answer arrives, in order, once the client reads
        want = one * commands
        got = bytearray()
        next_sample = 0
        while len(got) < want:
            chunk = s.recv(1 << 20)
            assert chunk, f"pgpulse closed the console after {len(got)} of {want} bytes"
            got += chunk
            if len(got) >= next_sample:  # an unbounded pgpulse may still be answering
                peak = max(peak, rss_kb(pp.pid))
                next_sample = len(got) + (4 << 20)
        peak = max(peak, rss_kb(pp.pid))
        assert len(got) == want
        types, pos = [], 0
        while pos < len(got):
            (length,) = struct.unpack_from("!I", got, pos + 1)
            types.append(got[pos])
            pos += 1 + length
        assert types.count(ord("Z")) == commands
        assert ord("E") not in types
        # and the console still answers
        assert answer_size(s, "SHOW CONFIG") == one
    if not built_with_asan(pgpulse_bin):
        growth_mb = (peak - base) / 1024
        assert growth_mb < bound_kb / 1024, \
            f"pgpulse's RSS grew by {growth_mb:.0f} MB for {commands} unread console answers"
