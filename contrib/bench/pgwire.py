"""Idle PostgreSQL clients for the benchmark's memory-per-client workloads.

Opens thousands of logged-in client connections to a pooler and keeps them
open, with nothing but the Python standard library: each connection speaks
just enough of the PostgreSQL v3 protocol to log in (StartupMessage, the
answer to AuthenticationMD5Password or AuthenticationCleartextPassword, then
reading until ReadyForQuery) and then sits idle.

Two ideas make 10,000 logins finish in seconds:
- One thread drives every connection through a selector (epoll on Linux):
  each connection is a small state machine fed by whatever bytes arrived.
- At most `in_flight` logins are in progress at once, so the pooler's listen
  backlog (128 by default, in PgBouncer and pgpulse) never overflows; an
  overflowing backlog would cost a one-second SYN retransmit per client.

    socks = open_idle_clients(port, n, user="bench", password="bench", dbname="bench")
    ...   # measure the pooler
    close_clients(socks)
"""

import errno
import hashlib
import selectors
import socket
import struct
import time

PROTOCOL_V3 = 196608

AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5


class LoginError(Exception):
    """A login failed: refused by the server, timed out, or the socket broke."""


def startup_message(user, dbname):
    body = struct.pack("!I", PROTOCOL_V3)
    for key, value in (("user", user), ("database", dbname)):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def password_message(text):
    body = text.encode() + b"\0"
    return b"p" + struct.pack("!I", len(body) + 4) + body


def md5_password(user, password, salt):
    """PostgreSQL's md5 answer: 'md5' + md5(md5(password + user) + salt)."""
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def error_text(body):
    """The severity, SQLSTATE and message fields of an ErrorResponse body."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('S', 'ERROR')} {fields.get('C', '?????')}: {fields.get('M', '')}"


class _Login:
    """One connection on its way to ReadyForQuery."""

    def __init__(self, sock, user, password, dbname):
        self.sock = sock
        self.user = user
        self.password = password
        self.out = startup_message(user, dbname)
        self.inbuf = b""
        self.ready = False

    def on_writable(self):
        """Connected (or failed to): send what is pending."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise LoginError(f"connect: {errno.errorcode.get(err, err)}")
        self._flush()

    def _flush(self):
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except BlockingIOError:
                return
            self.out = self.out[sent:]

    def wants_write(self):
        return bool(self.out)

    def on_readable(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            raise LoginError(f"recv: {e}") from e
        if not data:
            raise LoginError("the server closed the connection during login")
        self.inbuf += data
        self._parse()

    def _parse(self):
        while len(self.inbuf) >= 5:
            kind = self.inbuf[0:1]
            length = struct.unpack("!I", self.inbuf[1:5])[0]
            if len(self.inbuf) < 1 + length:
                return
            body = self.inbuf[5:1 + length]
            self.inbuf = self.inbuf[1 + length:]
            self._handle(kind, body)

    def _handle(self, kind, body):
        if kind == b"R":
            self._authenticate(struct.unpack("!I", body[:4])[0], body[4:])
        elif kind == b"E":
            raise LoginError(error_text(body))
        elif kind == b"Z":
            self.ready = True
        # S (ParameterStatus), K (BackendKeyData), N (notice): nothing to do

    def _authenticate(self, code, rest):
        if code == AUTH_OK:
            return
        if code == AUTH_MD5:
            self.out += password_message(md5_password(self.user, self.password, rest[:4]))
        elif code == AUTH_CLEARTEXT:
            self.out += password_message(self.password)
        else:
            raise LoginError(f"authentication method {code} is not supported by this client "
                             "(use auth_type = md5 or plain)")
        self._flush()


def _new_login(sel, host, port, user, password, dbname):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    rc = sock.connect_ex((host, port))
    if rc not in (0, errno.EINPROGRESS):
        sock.close()
        raise LoginError(f"connect to {host}:{port}: {errno.errorcode.get(rc, rc)}")
    login = _Login(sock, user, password, dbname)
    sel.register(sock, selectors.EVENT_WRITE, login)
    return login


def open_idle_clients(port, n, *, user, password, dbname, host="127.0.0.1", in_flight=100,
                      timeout=120.0):
    """Log n clients in and return their open sockets, all idle after
    ReadyForQuery.  Raises LoginError (with the count done so far) on the
    first failed login or when `timeout` seconds pass; sockets opened so far
    are closed then."""
    sel = selectors.DefaultSelector()
    done, started = [], 0
    deadline = time.monotonic() + timeout
    try:
        while len(done) < n:
            while started < n and len(sel.get_map()) < in_flight:
                _new_login(sel, host, port, user, password, dbname)
                started += 1
            if time.monotonic() > deadline:
                raise LoginError(f"timed out after {timeout:g}s: {len(done)} of {n} clients logged in")
            for key, events in sel.select(timeout=0.5):
                login = key.data
                try:
                    if events & selectors.EVENT_WRITE:
                        login.on_writable()
                    if events & selectors.EVENT_READ:
                        login.on_readable()
                except LoginError as e:
                    raise LoginError(f"client {len(done) + 1} of {n}: {e}") from None
                if login.ready:
                    sel.unregister(login.sock)
                    done.append(login.sock)
                else:
                    sel.modify(login.sock, selectors.EVENT_WRITE if login.wants_write()
                               else selectors.EVENT_READ, login)
        return done
    except BaseException:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        close_clients(done)
        raise
    finally:
        sel.close()


def close_clients(socks):
    """Say goodbye (Terminate) and close; errors on a dead socket do not matter."""
    terminate = b"X" + struct.pack("!I", 4)
    for s in socks:
        try:
            s.send(terminate)
        except OSError:
            pass
        s.close()
    socks.clear()
