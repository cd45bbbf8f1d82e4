#!/usr/bin/env python3
"""What does authentication cost pgpulse's event loop?

Two measurements, each the CPU time pgpulse itself used (user + system, from
/proc/<pid>/stat) divided by the number of logins it served. No PostgreSQL is
needed: the script starts its own pgpulse, and for the server side it plays
PostgreSQL itself.

  client   N unauthenticated startups for a scram-sha-256 login: each sends
           only the StartupMessage, waits for AuthenticationSASL and hangs
           up. --secret picks what the auth_file holds for the user:
           plaintext (the case that used to run PBKDF2 per startup), scram
           (a verifier copied from pg_authid), unknown (no entry: the mock).
  server   N server logins: pgpulse logs in to a fake PostgreSQL that offers
           SCRAM-SHA-256 with --iterations (its salt fixed per role, as
           PostgreSQL's stored verifier is), answers one query and hangs up,
           so every query needs a new server connection.

  contrib/bench/auth-cost.py client --secret plaintext -n 5000
  contrib/bench/auth-cost.py server --iterations 4096 -n 500
  PGPULSE_BIN=/path/to/pgpulse contrib/bench/auth-cost.py ...

As root, pgpulse runs as `nobody` (-u). Prints one line: CPU per 1,000
logins and per login.
"""

import argparse
import base64
import hashlib
import hmac
import os
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(os.path.dirname(HERE))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def startup_message(user, dbname):
    body = struct.pack("!I", 196608) + b"user\0" + user.encode() + b"\0database\0" + \
        dbname.encode() + b"\0\0"
    return struct.pack("!I", len(body) + 4) + body


def msg(mtype, body=b""):
    return mtype + struct.pack("!I", len(body) + 4) + body


def read_msg(sock, buf):
    """One message from sock; buf is a bytearray of what was read ahead."""
    while True:
        if len(buf) >= 5:
            n = struct.unpack("!I", buf[1:5])[0]
            if len(buf) >= 1 + n:
                m = bytes(buf[:1 + n])
                del buf[:1 + n]
                return m[:1], m[5:]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk


class Pgpulse:
    def __init__(self, tmp, ini, userlist):
        self.tmp = tmp
        self.port = free_port()
        with open(os.path.join(tmp, "userlist.txt"), "w") as f:
            f.write(userlist)
        with open(os.path.join(tmp, "pgpulse.ini"), "w") as f:
            f.write(ini.format(port=self.port, dir=tmp))
        os.chmod(tmp, 0o755)
        binary = os.environ.get("PGPULSE_BIN", os.path.join(SRCDIR, "build", "pgpulse"))
        cmd = [binary, "-q" if not os.environ.get("AUTH_COST_VERBOSE") else "-v", os.path.join(tmp, "pgpulse.ini")]
        if os.geteuid() == 0:
            cmd[1:1] = ["-u", "nobody"]
        self.proc = subprocess.Popen(cmd)
        deadline = time.time() + 10
        while time.time() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("pgpulse did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


INI = """\
[databases]
appdb = host=127.0.0.1 port={server_port} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {{port}}
unix_socket_dir =
auth_type = {auth_type}
auth_file = {{dir}}/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 10000
server_tls_sslmode = disable
"""


def scram_verifier(password, iterations):
    """A verifier as PostgreSQL stores it in pg_authid."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def measure_client(args):
    """CPU per unauthenticated scram-sha-256 startup."""
    userlist = {"plaintext": '"bench" "bench_pw"\n',
                "scram": f'"bench" "{scram_verifier("bench_pw", 4096)}"\n',
                "unknown": '"someone_else" "pw"\n'}[args.secret]
    tmp = tempfile.mkdtemp(prefix="auth-cost-")
    pp = Pgpulse(tmp, INI.format(server_port=free_port(), auth_type="scram-sha-256"), userlist)
    try:
        hello = startup_message("bench", "appdb")
        sel = selectors.DefaultSelector()
        pending, started, done = {}, 0, 0

        def start_one():
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", pp.port))
            pending[s] = [False, bytearray()]
            sel.register(s, selectors.EVENT_WRITE)

        t0, c0 = time.time(), cpu_seconds(pp.proc.pid)
        while done < args.n:
            while started < args.n and len(pending) < args.concurrency:
                start_one()
                started += 1
            for key, ev in sel.select(5):
                s = key.fileobj
                st = pending[s]
                if ev & selectors.EVENT_WRITE and not st[0]:
                    s.sendall(hello)
                    st[0] = True
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                chunk = s.recv(4096)
                st[1] += chunk
                if not chunk or len(st[1]) >= 5:
                    if not st[1].startswith(b"R"):
                        raise RuntimeError(f"unexpected answer {bytes(st[1][:64])!r}")
                    sel.unregister(s)
                    s.close()
                    del pending[s]
                    done += 1
        cpu = cpu_seconds(pp.proc.pid) - c0
        wall = time.time() - t0
    finally:
        pp.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"client startups, secret={args.secret}: {args.n} in {wall:.2f} s; pgpulse CPU "
          f"{cpu * 1000 / args.n * 1000:.1f} ms per 1,000 startups "
          f"({cpu / args.n * 1e6:.0f} us each)")


class FakePostgres(threading.Thread):
    """Just enough of a PostgreSQL server: SCRAM-SHA-256 login with a fixed
    salt and the given iteration count, one answer to one query, then EOF."""

    def __init__(self, password, iterations):
        super().__init__(daemon=True)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.salt = b"fixed-role-salt!"
        self.iterations = iterations
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), self.salt, iterations)
        self.server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self.logins = 0

    def run(self):
        while True:
            conn, _ = self.listener.accept()
            try:
                self.serve(conn)
            except (ConnectionError, OSError):
                pass
            finally:
                conn.close()

    def serve(self, conn):
        buf = bytearray()
        while len(buf) < 4:
            buf += conn.recv(4096)
        n = struct.unpack("!I", buf[:4])[0]
        while len(buf) < n:
            buf += conn.recv(4096)
        del buf[:n]
        conn.sendall(msg(b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\0\0"))
        _, body = read_msg(conn, buf)
        first = body[body.index(b"\0") + 5:].decode()
        first_bare = first[3:]
        cnonce = dict(kv.split("=", 1) for kv in first_bare.split(","))["r"]
        server_first = f"r={cnonce}SRVNONCE,s={base64.b64encode(self.salt).decode()}," \
                       f"i={self.iterations}"
        conn.sendall(msg(b"R", struct.pack("!I", 11) + server_first.encode()))
        _, body = read_msg(conn, buf)
        final = body.decode()
        without_proof = final[:final.index(",p=")]
        auth_message = f"{first_bare},{server_first},{without_proof}".encode()
        sig = hmac.new(self.server_key, auth_message, "sha256").digest()
        conn.sendall(msg(b"R", struct.pack("!I", 12) + b"v=" + base64.b64encode(sig)) +
                     msg(b"R", struct.pack("!I", 0)) +
                     msg(b"S", b"server_version\x0015.0\0") +
                     msg(b"S", b"client_encoding\0UTF8\0") +
                     msg(b"K", struct.pack("!II", 1, 2)) + msg(b"Z", b"I"))
        self.logins += 1
        mtype, _ = read_msg(conn, buf)
        if mtype == b"Q":
            conn.sendall(msg(b"C", b"SELECT 1\0") + msg(b"Z", b"I"))
        # hang up: pgpulse sees EOF and the next query needs a new login


def measure_server(args):
    """CPU per server login with SCRAM at the given iteration count."""
    fake = FakePostgres("bench_pw", args.iterations)
    fake.start()
    tmp = tempfile.mkdtemp(prefix="auth-cost-")
    pp = Pgpulse(tmp, INI.format(server_port=fake.port, auth_type="trust"),
                 '"bench" "bench_pw"\n')
    try:
        s = socket.create_connection(("127.0.0.1", pp.port))
        buf = bytearray()
        s.sendall(startup_message("bench", "appdb"))
        c0 = cpu_seconds(pp.proc.pid)
        while True:
            mtype, body = read_msg(s, buf)
            if mtype == b"E":
                fields = dict((f[:1], f[1:]) for f in body.split(b"\0") if f)
                print(f"server login, i={args.iterations}: refused, pgpulse CPU "
                      f"{(cpu_seconds(pp.proc.pid) - c0) * 1000:.0f} ms: "
                      f"{fields.get(b'C', b'').decode()} {fields.get(b'M', b'').decode()}")
                return
            if mtype == b"Z":
                break
        t0, c0 = time.time(), cpu_seconds(pp.proc.pid)
        base, failures = fake.logins, 0
        while fake.logins - base < args.n:
            s.sendall(msg(b"Q", b"SELECT 1\0"))
            while True:
                mtype, _ = read_msg(s, buf)
                if mtype == b"E":
                    failures += 1
                if mtype == b"Z":
                    break
            # wait until pgpulse has seen the hang-up, so the next query logs in again
            time.sleep(0.002)
        cpu = cpu_seconds(pp.proc.pid) - c0
        wall = time.time() - t0
        logins = fake.logins - base
        s.close()
    finally:
        pp.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"server logins, i={args.iterations}: {logins} in {wall:.2f} s ({failures} queries "
          f"failed); pgpulse CPU {cpu * 1000 / logins:.2f} ms per login")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("client")
    c.add_argument("--secret", choices=["plaintext", "scram", "unknown"], default="plaintext")
    c.add_argument("-n", type=int, default=5000)
    c.add_argument("--concurrency", type=int, default=50)
    s = sub.add_parser("server")
    s.add_argument("--iterations", type=int, default=4096)
    s.add_argument("-n", type=int, default=300)
    args = ap.parse_args()
    (measure_client if args.mode == "client" else measure_server)(args)


if __name__ == "__main__":
    sys.exit(main())
