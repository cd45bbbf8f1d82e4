"""Hostile logins of the kinds PgBouncer 1.26.1 fixed (CVE-2026-107348,
-107349, -107350), tried against pgpulse: each gets a clean refusal, and
pgpulse keeps serving everyone else.

- a second StartupMessage sent in the middle of a SCRAM exchange, to a
  database that does not exist, must not log anybody in;
- a startup `options` with an empty option name (`-c=`, `--=`) must not
  make pgpulse spin;
- a packet header that declares a length above 2^31 must not make pgpulse
  hang or allocate it.
"""

import base64
import os
import socket
import struct

import pytest

from pgpulse_harness import PROTO_V3, RawConn, ServerError, cstr, error_fields, message

USERS = {"app": "app_pw", "admin": "admin_pw", "boss": "boss_pw"}


def ini(extra=""):
    return f"""\
[databases]
appdb = host={{pg_host}} port={{pg_port}} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {{port}}
unix_socket_dir = {{dir}}
auth_type = scram-sha-256
auth_file = {{auth_file}}
admin_users = admin
pool_mode = transaction
ignore_startup_parameters = extra_float_digits
{extra}
"""


def startup_packet(user, database, params=None):
    body = struct.pack("!I", PROTO_V3)
    for k, v in (("user", user), ("database", database), *(params or {}).items()):
        body += cstr(k) + cstr(v)
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def read_message(sock, buf):
    """(type as str, body, rest of buf) of the next message; type None when
    the connection closed (or was reset) first."""
    while True:
        if len(buf) >= 5:
            (length,) = struct.unpack("!I", buf[1:5])
            if len(buf) >= 1 + length:
                return chr(buf[0]), buf[5:1 + length], buf[1 + length:]
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return None, b"", buf
        buf += chunk


def connect(pp):
    s = socket.create_connection(("127.0.0.1", pp.port), timeout=10)
    return s


def read_until_closed_or_error(sock, buf=b""):
    """Messages until an ErrorResponse or the connection closes; returns
    (types seen, the error's fields or None, whether it closed)."""
    seen = []
    while True:
        mtype, body, buf = read_message(sock, buf)
        if mtype is None:
            return seen, None, True
        seen.append(mtype)
        if mtype == "E":
            return seen, error_fields(body), False


def still_serves(pp):
    with pp.connect(autocommit=True, prepare_threshold=None) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def test_a_second_startup_message_during_scram_logs_nobody_in(pgpulse):
    pp = pgpulse(ini(), USERS)
    for database in ("no_such_db", "appdb"):
        with connect(pp) as s:
            s.sendall(startup_packet("app", database))
            mtype, body, buf = read_message(s, b"")
            assert mtype == "R" and struct.unpack_from("!I", body)[0] == 10, (mtype, body)
            nonce = base64.b64encode(os.urandom(18)).decode()
            first = f"n,,n=,r={nonce}".encode()
            s.sendall(message("p", cstr("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first))
            mtype, body, buf = read_message(s, buf)
            assert mtype == "R" and struct.unpack_from("!I", body)[0] == 11, (mtype, body)
            # instead of the client-final message: a StartupMessage for another user
            s.sendall(startup_packet("admin", "pgbouncer"))
            seen, err, closed = read_until_closed_or_error(s, buf)
            assert "Z" not in seen and "R" not in seen, seen
            assert err is None or err["S"] == "FATAL", err
            if err:
                assert err["C"] in ("08P01", "28000", "28P01", "3D000"), err
    assert still_serves(pp)


def test_an_empty_option_name_in_startup_options_is_refused_not_spun_on(pgpulse):
    pp = pgpulse(ini(), USERS)
    for options in ("-c=", "--=", "-c =x", "-c=x", "--=1 -c="):
        # refused once authenticated (PostgreSQL reads options then), with a clear error
        with pytest.raises(ServerError) as err:
            RawConn(pp.port, params={"options": options})
        assert err.value.fields["S"] == "FATAL", (options, err.value.fields)
        assert err.value.sqlstate in ("08P01", "22023", "42601", "42704"), (options, err.value.fields)
    assert still_serves(pp)


def test_a_packet_length_above_2_to_the_31_is_refused_at_once(pgpulse):
    pp = pgpulse(ini(), USERS)
    # in place of a StartupMessage
    with connect(pp) as s:
        s.sendall(struct.pack("!I", 0x80000001) + struct.pack("!I", PROTO_V3))
        seen, err, closed = read_until_closed_or_error(s)
        assert closed or (err and err["S"] == "FATAL"), (seen, err)
    # after login, as a message header
    with pp.connect(autocommit=True, prepare_threshold=None) as conn:
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            sock.settimeout(10)
            sock.sendall(b"Q" + struct.pack("!I", 0xFFFFFFF0))
            seen, err, closed = read_until_closed_or_error(sock)
            assert closed or (err and err["S"] == "FATAL"), (seen, err)
        finally:
            sock.close()
    assert still_serves(pp)
