"""Authentication, both sides: clients logging in to pgpulse (each auth_type
against each kind of auth_file secret), pgpulse logging in to PostgreSQL
(trust, cleartext, md5, SCRAM, and SCRAM with keys taken from the client's
own login), the admin console's access rules and max_client_conn.

psycopg and psql show what an application sees; a small hand-written v3
protocol client (RawClient below) shows what they hide: the authentication
method pgpulse asks for and the SQLSTATE of a refused login (libpq reports
connection failures as text only).
"""

import base64
import hashlib
import hmac
import os
import socket
import struct

import psycopg
import pytest

from pgpulse_harness import RawConn, psql as run_psql, wait_until

# ----------------------------------------------------------------- raw protocol

AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 3, 5, 10, 11, 12
METHOD_NAMES = {AUTH_OK: "AuthenticationOk", AUTH_CLEARTEXT: "cleartext password",
                AUTH_MD5: "md5", AUTH_SASL: "SASL (SCRAM-SHA-256)"}


class PgError(Exception):
    """An ErrorResponse received by RawClient."""

    def __init__(self, fields):
        self.fields = fields
        self.sqlstate = fields.get("C")
        self.message = fields.get("M")
        super().__init__(f"{fields.get('S')} {self.sqlstate}: {self.message}")


def _error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


class RawClient:
    """A PostgreSQL v3 client over a plain socket: startup, cleartext/md5/
    SCRAM-SHA-256 login, simple queries.  `auth_codes` lists every
    authentication request received, in order."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.auth_codes = []
        self.params = {}

    def close(self):
        try:
            self.sock.sendall(b"X\0\0\0\4")
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, mtype, body=b""):
        self.sock.sendall(mtype + struct.pack("!I", len(body) + 4) + body)

    def send_startup(self, params):
        body = struct.pack("!I", 196608)
        for k, v in params.items():
            body += k.encode() + b"\0" + v.encode() + b"\0"
        body += b"\0"
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)

    def _read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed by pgpulse (have {self.buf!r})")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_msg(self):
        head = self._read_exact(5)
        length = struct.unpack("!I", head[1:])[0]
        return head[:1], self._read_exact(length - 4)

    def login(self, user, dbname, password=None, extra=None):
        """Startup and authentication up to ReadyForQuery.  Raises PgError
        with the ErrorResponse's fields if the login is refused."""
        params = {"user": user, "database": dbname}
        params.update(extra or {})
        self.send_startup(params)
        return self.login_continue(user, password)

    def login_continue(self, user, password=None):
        """The rest of login() once the startup packet is sent."""
        scram = None
        while True:
            mtype, body = self.read_msg()
            if mtype == b"E":
                raise PgError(_error_fields(body))
            if mtype == b"Z":
                return self
            if mtype == b"S":
                k, v = body.split(b"\0")[:2]
                self.params[k.decode()] = v.decode()
                continue
            if mtype != b"R":
                continue
            code = struct.unpack("!I", body[:4])[0]
            self.auth_codes.append(code)
            if code == AUTH_OK:
                continue
            if password is None:
                raise AssertionError(f"pgpulse asked for a password (auth request {code})")
            if code == AUTH_CLEARTEXT:
                self.send(b"p", password.encode() + b"\0")
            elif code == AUTH_MD5:
                inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                self.send(b"p", b"md5" + outer.encode() + b"\0")
            elif code == AUTH_SASL:
                mechs = [m for m in body[4:].split(b"\0") if m]
                assert b"SCRAM-SHA-256" in mechs, mechs
                scram = _ScramClient(password)
                first = scram.first().encode()
                self.send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
            elif code == AUTH_SASL_CONTINUE:
                self.send(b"p", scram.final(body[4:].decode()).encode())
            elif code == AUTH_SASL_FINAL:
                scram.verify(body[4:].decode())
            else:
                raise AssertionError(f"unexpected authentication request {code}")

    def query(self, sql):
        """Simple query; the rows as lists of str (None for NULL)."""
        self.send(b"Q", sql.encode() + b"\0")
        rows, error = [], None
        while True:
            mtype, body = self.read_msg()
            if mtype == b"D":
                n = struct.unpack("!H", body[:2])[0]
                pos, row = 2, []
                for _ in range(n):
                    ln = struct.unpack("!i", body[pos:pos + 4])[0]
                    pos += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(body[pos:pos + ln].decode())
                        pos += ln
                rows.append(row)
            elif mtype == b"E":
                error = PgError(_error_fields(body))
            elif mtype == b"Z":
                if error:
                    raise error
                return rows


class _ScramClient:
    """The client half of SCRAM-SHA-256 (RFC 5802/7677), no channel binding."""

    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()

    def first(self):
        self.first_bare = f"n=,r={self.nonce}"
        return "n,," + self.first_bare

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(self.nonce), "server nonce does not extend ours"
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        self.auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, self.auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify(self, server_final):
        expected = hmac.new(self.server_key, self.auth_message, "sha256").digest()
        assert server_final == "v=" + base64.b64encode(expected).decode(), \
            f"wrong server signature {server_final!r}"


def raw_login_error(port, user, dbname, password=None, extra=None):
    """The PgError of a login that must be refused (fails the test if the
    login succeeds)."""
    with RawClient(port) as c:
        with pytest.raises(PgError) as info:
            c.login(user, dbname, password, extra)
        return info.value


def scram_offer(port, user, dbname="appdb"):
    """The salt and iteration count pgpulse offers `user` in its
    server-first-message (the exchange is then abandoned)."""
    with RawClient(port) as c:
        c.send_startup({"user": user, "database": dbname})
        mtype, body = c.read_msg()
        assert (mtype, struct.unpack("!I", body[:4])[0]) == (b"R", AUTH_SASL)
        first = b"n,,n=,r=" + base64.b64encode(os.urandom(18))
        c.send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
        mtype, body = c.read_msg()
        assert (mtype, struct.unpack("!I", body[:4])[0]) == (b"R", AUTH_SASL_CONTINUE)
        attrs = dict(kv.split("=", 1) for kv in body[4:].decode().split(","))
        return attrs["s"], int(attrs["i"])


def scram_verifier(password, iterations, salt=None):
    """A verifier in pg_authid's form, computed here (PostgreSQL accepts it
    pre-hashed in ALTER ROLE ... PASSWORD)."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


# ----------------------------------------------------------------- set-up helpers

BASE_INI = """\
[databases]
{databases}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
auth_type = {auth_type}
auth_file = {auth_file}
admin_users = admin
pool_mode = transaction
default_pool_size = 2
{extra}
"""

APPDB = "appdb = host={pg_host} port={pg_port} dbname=appdb"


def ini(auth_type="scram-sha-256", databases=APPDB, extra=""):
    # {databases}/{auth_type}/{extra} are ours; the rest are harness placeholders
    return (BASE_INI.replace("{databases}", databases).replace("{auth_type}", auth_type)
            .replace("{extra}", extra))


def md5_secret(password, user):
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


@pytest.fixture(scope="module")
def app_scram_verifier(pg):
    """app's SCRAM verifier as PostgreSQL stores it."""
    (secret,), = pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    assert secret.startswith("SCRAM-SHA-256$")
    return secret


def app_secret(kind, verifier):
    return {"plaintext": "app_pw", "md5": md5_secret("app_pw", "app"), "scram": verifier}[kind]


def pg_log_shows_login(pg, mark, role, method):
    """Wait until PostgreSQL's log (log_connections) shows `role` logging in
    with `method` since `mark`."""
    wait_until(lambda: f'identity="{role}" method={method} ' in pg.log(since=mark), 5,
               f"PostgreSQL's log to show {role} authenticated with {method}")


# ----------------------------------------------------------------- client side

AUTH_TYPES = ["trust", "any", "plain", "md5", "scram-sha-256"]
SECRET_KINDS = ["plaintext", "md5", "scram"]

# What PostgreSQL itself asks a client for, by method and stored secret: md5
# with a SCRAM secret does SCRAM; scram-sha-256 with an md5 secret still
# asks for SCRAM but can never succeed.
ASKED = {(a, k): AUTH_OK for a in ("trust", "any") for k in SECRET_KINDS}
ASKED.update({("plain", k): AUTH_CLEARTEXT for k in SECRET_KINDS})
ASKED.update({("md5", "plaintext"): AUTH_MD5, ("md5", "md5"): AUTH_MD5, ("md5", "scram"): AUTH_SASL,
              ("scram-sha-256", "plaintext"): AUTH_SASL, ("scram-sha-256", "md5"): AUTH_SASL,
              ("scram-sha-256", "scram"): AUTH_SASL})
WORKING = [(a, k) for a in AUTH_TYPES for k in SECRET_KINDS if (a, k) != ("scram-sha-256", "md5")]
PASSWORD_CHECKED = [(a, k) for a, k in WORKING if a not in ("trust", "any")]


def start_client_auth(pgpulse, auth_type, kind, verifier):
    """pgpulse with app's auth_file secret of the given kind.  The server
    side logs in as app with the [databases] password, so only the client
    side varies."""
    db = "appdb = host={pg_host} port={pg_port} dbname=appdb user=app password=app_pw"
    return pgpulse(ini(auth_type, db), {"app": app_secret(kind, verifier), "admin": "admin_pw"})


@pytest.mark.parametrize("client", ["psycopg", "psql"])
@pytest.mark.parametrize("auth_type,kind", WORKING)
def test_client_logs_in_with_auth_type_and_secret_kind(pgpulse, app_scram_verifier, auth_type,
                                                       kind, client):
    pp = start_client_auth(pgpulse, auth_type, kind, app_scram_verifier)
    if client == "psycopg":
        with pp.connect(user="app", password="app_pw") as conn:
            row = conn.execute("SELECT current_user, current_database()").fetchone()
        assert row == ("app", "appdb")
    else:
        out = run_psql(pp.port, "-Atc", "SELECT current_user || '@' || current_database()",
                       user="app", password="app_pw").stdout
        assert out.strip() == "app@appdb"


@pytest.mark.parametrize("auth_type,kind", sorted(ASKED))
def test_client_is_asked_for_the_method_postgres_would_ask(pgpulse, app_scram_verifier,
                                                          auth_type, kind):
    pp = start_client_auth(pgpulse, auth_type, kind, app_scram_verifier)
    with RawClient(pp.port) as c:
        try:
            c.login("app", "appdb", "app_pw")
        except PgError:
            pass  # scram-sha-256 with an md5 secret: refused, see below
        assert c.auth_codes, "no authentication request at all"
        first = c.auth_codes[0]
        assert first == ASKED[auth_type, kind], \
            f"asked for {METHOD_NAMES.get(first, first)}, expected " \
            f"{METHOD_NAMES[ASKED[auth_type, kind]]}"


@pytest.mark.parametrize("auth_type,kind", PASSWORD_CHECKED)
def test_wrong_password_is_refused_with_28P01(pgpulse, app_scram_verifier, auth_type, kind):
    pp = start_client_auth(pgpulse, auth_type, kind, app_scram_verifier)
    err = raw_login_error(pp.port, "app", "appdb", "wrong_pw")
    assert (err.sqlstate, err.message) == ("28P01", 'password authentication failed for user "app"')
    r = run_psql(pp.port, "-Atc", "SELECT 1", user="app", password="wrong_pw", check=False)
    assert r.returncode != 0
    assert 'password authentication failed for user "app"' in r.stderr
    # the refusal did not hurt anyone else
    with pp.connect(user="app", password="app_pw") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_scram_auth_type_with_md5_secret_fails_cleanly(pgpulse):
    # PostgreSQL cannot do SCRAM from an md5 hash either: even the right
    # password is refused, as a failed password, and pgpulse says why in its log.
    db = "appdb = host={pg_host} port={pg_port} dbname=appdb user=app password=app_pw"
    pp = pgpulse(ini("scram-sha-256", db), {"app": md5_secret("app_pw", "app"),
                                            "other": "other_pw"})
    err = raw_login_error(pp.port, "app", "appdb", "app_pw")
    assert (err.sqlstate, err.message) == ("28P01", 'password authentication failed for user "app"')
    with pytest.raises(psycopg.OperationalError,
                       match='password authentication failed for user "app"'):
        pp.connect(user="app", password="app_pw")
    assert "md5" in pp.wait_log(r'.*"app".*scram-sha-256.*').group(0)
    # pgpulse goes on serving users whose secret can do SCRAM
    with pp.connect(user="other", password="other_pw") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)


@pytest.mark.parametrize("auth_type", ["plain", "md5", "scram-sha-256"])
def test_unknown_user_is_refused_like_a_wrong_password(pgpulse, auth_type):
    # No user enumeration: an unknown user is asked for the same method as a
    # known one and refused with the same error.
    pp = pgpulse(ini(auth_type), {"app": "app_pw"})
    with RawClient(pp.port) as known:
        with pytest.raises(PgError):
            known.login("app", "appdb", "wrong_pw")
    with RawClient(pp.port) as c:
        with pytest.raises(PgError) as info:
            c.login("nobody", "appdb", "some_pw")
        assert c.auth_codes[:1] == known.auth_codes[:1]
    assert (info.value.sqlstate, info.value.message) == \
        ("28P01", 'password authentication failed for user "nobody"')
    r = run_psql(pp.port, "-Atc", "SELECT 1", user="nobody", password="some_pw", check=False)
    assert r.returncode != 0
    assert 'password authentication failed for user "nobody"' in r.stderr


def test_scram_login_with_a_plaintext_password_follows_a_reload(pgpulse):
    # The verifier pgpulse derives from a plaintext auth_file password is kept
    # (every client sees the same salt) until a RELOAD changes the password.
    db = "appdb = host={pg_host} port={pg_port} dbname=appdb user=app password=app_pw"
    pp = pgpulse(ini("scram-sha-256", db), {"app": "first_pw", "other": "other_pw",
                                            "admin": "admin_pw"})
    with RawClient(pp.port) as c:
        c.login("app", "appdb", "first_pw")
    salt, iterations = scram_offer(pp.port, "app")
    assert scram_offer(pp.port, "app") == (salt, iterations)

    pp.write_config(userlist={"app": "second_pw", "other": "other_pw", "admin": "admin_pw"})
    other_salt = scram_offer(pp.port, "other")
    assert pp.command("RELOAD") == "RELOAD"
    err = raw_login_error(pp.port, "app", "appdb", "first_pw")
    assert (err.sqlstate, err.message) == ("28P01", 'password authentication failed for user "app"')
    with RawClient(pp.port) as c:
        c.login("app", "appdb", "second_pw")
        assert c.query("SELECT current_user") == [["app"]]
    assert scram_offer(pp.port, "app")[0] != salt
    # an unchanged password keeps its salt across the reload
    assert scram_offer(pp.port, "other") == other_salt


def test_forced_user_logs_in_with_its_database_password_and_a_stable_salt(pgpulse):
    # app is not in the auth_file: its SCRAM login is checked against the
    # database's password=, whose verifier is derived once.
    db = "appdb = host={pg_host} port={pg_port} dbname=appdb user=app password=app_pw"
    pp = pgpulse(ini("scram-sha-256", db), {"webuser": "web_pw"})
    salt = scram_offer(pp.port, "app")
    with RawClient(pp.port) as c:
        c.login("app", "appdb", "app_pw")
        assert c.query("SELECT current_user") == [["app"]]
    err = raw_login_error(pp.port, "app", "appdb", "wrong_pw")
    assert (err.sqlstate, err.message) == ("28P01", 'password authentication failed for user "app"')
    assert scram_offer(pp.port, "app") == salt


def test_unknown_user_is_offered_a_salt_like_a_known_one(pgpulse):
    pp = pgpulse(ini("scram-sha-256"), {"app": "app_pw"})
    known_salt, known_iterations = scram_offer(pp.port, "app")
    salt, iterations = scram_offer(pp.port, "nobody")
    assert iterations == known_iterations
    assert len(base64.b64decode(salt)) == len(base64.b64decode(known_salt))
    assert scram_offer(pp.port, "nobody") == (salt, iterations)
    assert scram_offer(pp.port, "somebody")[0] != salt


def test_unknown_user_with_trust_is_refused_with_28000(pgpulse):
    pp = pgpulse(ini("trust"), {"app": "app_pw"})
    err = raw_login_error(pp.port, "nobody", "appdb")
    assert err.sqlstate == "28000"
    assert '"nobody"' in err.message
    # a listed user needs no password at all
    with RawClient(pp.port) as c:
        c.login("app", "appdb", password=None)
        assert c.query("SELECT current_user") == [["app"]]


def test_unknown_database_is_refused_with_3D000(pgpulse):
    pp = pgpulse(ini(), {"app": "app_pw"})
    with RawClient(pp.port) as c:
        with pytest.raises(PgError) as info:
            c.login("app", "nodb", "app_pw")
        # as PostgreSQL: the database is looked at only once the password was right
        assert c.auth_codes == [AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL, AUTH_OK]
    err = info.value
    assert (err.sqlstate, err.message) == ("3D000", 'database "nodb" does not exist')
    r = run_psql(pp.port, "-Atc", "SELECT 1", dbname="nodb", check=False)
    assert r.returncode != 0 and 'database "nodb" does not exist' in r.stderr


@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5", "plain", "trust"])
def test_a_stranger_cannot_tell_which_databases_exist(pgpulse, auth_type):
    pp = pgpulse(ini(auth_type), {"app": "app_pw"})
    seen = {}
    users = [("nobody", "some_pw")] + ([("app", "wrong_pw")] if auth_type != "trust" else [])
    for dbname in ("appdb", "nodb"):
        for user, password in users:
            with RawClient(pp.port) as c:
                with pytest.raises(PgError) as info:
                    c.login(user, dbname, password if auth_type != "trust" else None)
                seen[(dbname, user)] = (c.auth_codes, info.value.sqlstate,
                                        info.value.message.replace(user, "U"))
    # what a wrong password (or an unknown user) gets does not depend on the database
    for user, _ in users:
        assert seen[("appdb", user)] == seen[("nodb", user)], seen


def test_disabled_database_is_said_after_authentication(pgpulse):
    pp = pgpulse(ini(), {"app": "app_pw", "admin": "admin_pw"})
    pp.command("DISABLE appdb")
    assert raw_login_error(pp.port, "app", "appdb", "wrong_pw").sqlstate == "28P01"
    assert raw_login_error(pp.port, "app", "appdb", "app_pw").sqlstate == "57P03"


FALLBACK = "* = host={pg_host} port={pg_port}"


def test_fallback_database_entry_lets_any_database_through(pgpulse):
    pp = pgpulse(ini(databases=FALLBACK), {"app": "app_pw"})
    for dbname in ("postgres", "appdb"):
        with pp.connect(dbname=dbname) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (dbname,)


def test_fallback_database_missing_on_server_returns_postgres_error(pgpulse, pg):
    pp = pgpulse(ini(databases=FALLBACK), {"app": "app_pw"})
    mark = pg.log_mark()
    err = raw_login_error(pp.port, "app", "nodb", "app_pw")
    assert (err.sqlstate, err.message) == ("3D000", 'database "nodb" does not exist')
    # it is PostgreSQL's answer: pgpulse let the name through and the server refused it
    wait_until(lambda: 'database "nodb" does not exist' in pg.log(since=mark), 5,
               "PostgreSQL's log to show the refused database")
    with pytest.raises(psycopg.OperationalError, match='database "nodb" does not exist'):
        pp.connect(dbname="nodb")
    with pp.connect(dbname="appdb") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# ----------------------------------------------------------------- server side

SERVER_METHODS = {"trustuser": "trust", "plainuser": "password", "md5user": "md5",
                  "app": "scram-sha-256"}
SERVER_PASSWORDS = {"plainuser": "plain_pw", "md5user": "md5_pw", "app": "app_pw"}

SERVER_LOGINS = [
    ("trustuser", "databases"),
    ("plainuser", "databases"), ("plainuser", "auth_file"),
    ("md5user", "databases"), ("md5user", "auth_file"), ("md5user", "auth_file_md5"),
    ("app", "databases"), ("app", "auth_file"),
]


@pytest.mark.parametrize("role,source", SERVER_LOGINS)
def test_pgpulse_logs_in_to_server(pgpulse, pg, role, source):
    """databases: a forced `user=` with its `password=` in [databases] (the
    client is someone else); auth_file: the client logs in as the role and
    pgpulse uses the role's auth_file secret (plain text, or md5 hash)."""
    if source == "databases":
        pw = f" password={SERVER_PASSWORDS[role]}" if role in SERVER_PASSWORDS else ""
        db = f"appdb = host={{pg_host}} port={{pg_port}} dbname=appdb user={role}{pw}"
        pp = pgpulse(ini("scram-sha-256", db), {"webuser": "web_pw"})
        client, client_pw = "webuser", "web_pw"
    else:
        secret = SERVER_PASSWORDS[role]
        if source == "auth_file_md5":
            secret = md5_secret(secret, role)
        pp = pgpulse(ini("plain"), {role: secret})
        client, client_pw = role, SERVER_PASSWORDS[role]
    mark = pg.log_mark()
    with pp.connect(user=client, password=client_pw) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    method = SERVER_METHODS[role]
    if method == "trust":
        assert "connection authenticated" not in pg.log(since=mark)
    else:
        pg_log_shows_login(pg, mark, role, method)


@pytest.mark.parametrize("role", ["plainuser", "md5user", "app"])
def test_wrong_server_password_gives_client_the_servers_error(pgpulse, role):
    # The client ("webuser", unknown to PostgreSQL) logs in to pgpulse fine;
    # the server refuses pgpulse, and its error is what the client gets.
    dbs = ("appdb = host={pg_host} port={pg_port} dbname=appdb user=app password=app_pw\n"
           f"bad = host={{pg_host}} port={{pg_port}} dbname=appdb user={role} password=wrong_pw")
    pp = pgpulse(ini("scram-sha-256", dbs), {"webuser": "web_pw"})
    err = raw_login_error(pp.port, "webuser", "bad", "web_pw")
    assert (err.sqlstate, err.message) == \
        ("28P01", f'password authentication failed for user "{role}"')
    with pytest.raises(psycopg.OperationalError,
                       match=f'password authentication failed for user "{role}"'):
        pp.connect(dbname="bad", user="webuser", password="web_pw")
    assert pp.running
    with pp.connect(dbname="appdb", user="webuser", password="web_pw") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)


def test_scram_passthrough_logs_in_with_the_clients_keys(pgpulse, pg, app_scram_verifier):
    # pgpulse knows only app's SCRAM verifier, which holds no password; the
    # keys from the client's SCRAM proof are enough to log in to PostgreSQL.
    pp = pgpulse(ini("scram-sha-256"), {"app": app_scram_verifier})
    mark = pg.log_mark()
    a = pp.connect(user="app", password="app_pw")
    # a's transaction stays open, so b needs a second server connection
    a_pid, a_user = a.execute("SELECT pg_backend_pid(), current_user").fetchone()
    b = pp.connect(user="app", password="app_pw")
    b_pid, b_user = b.execute("SELECT pg_backend_pid(), current_user").fetchone()
    assert (a_user, b_user) == ("app", "app")
    assert a_pid != b_pid
    a.rollback()
    b.rollback()
    pg_log_shows_login(pg, mark, "app", "scram-sha-256")


def test_cleartext_login_against_a_scram_verifier_gives_the_keys_for_the_server_login(
        pgpulse, pg, app_scram_verifier):
    # The password checked against the verifier yields its ClientKey: the
    # server login does SCRAM with it, though no plaintext password is stored.
    pp = pgpulse(ini("plain"), {"app": app_scram_verifier})
    mark = pg.log_mark()
    with RawClient(pp.port) as c:
        c.login("app", "appdb", "app_pw")
        assert c.auth_codes[0] == AUTH_CLEARTEXT
        assert c.query("SELECT current_user") == [["app"]]
    pg_log_shows_login(pg, mark, "app", "scram-sha-256")


def test_scram_verifier_alone_cannot_log_in_to_server_for_an_md5_client(pgpulse, app_scram_verifier):
    # An md5 client login against an md5 secret teaches pgpulse no SCRAM
    # keys; a SCRAM-only verifier cannot answer the server: the client gets
    # an error saying so instead of hanging.
    db = "appdb = host={pg_host} port={pg_port} dbname=appdb user=app"
    pp = pgpulse(ini("md5", db), {"app": md5_secret("app_pw", "app")})
    err = raw_login_error(pp.port, "app", "appdb", "app_pw")
    assert err.sqlstate == "28P01"
    assert "md5" in err.message or "SCRAM" in err.message


@pytest.fixture
def slow_role(pg):
    """A role whose verifier asks for 1,000,000 SCRAM iterations (PostgreSQL
    15 has no scram_iterations, so the verifier is computed here)."""
    pg.query("CREATE ROLE slowrole LOGIN PASSWORD '{}'".format(
        scram_verifier("slow_pw", 1000000)))
    yield "slowrole"
    pg.query("DROP ROLE slowrole")


def test_server_asking_too_many_scram_iterations_is_refused_with_the_count(pgpulse, slow_role):
    dbs = ("appdb = host={pg_host} port={pg_port} dbname=appdb user=app password=app_pw\n"
           f"slow = host={{pg_host}} port={{pg_port}} dbname=appdb user={slow_role} "
           "password=slow_pw")
    pp = pgpulse(ini("scram-sha-256", dbs), {"webuser": "web_pw"})
    err = raw_login_error(pp.port, "webuser", "slow", "web_pw")
    assert err.sqlstate == "28000"
    assert "1000000 SCRAM iterations" in err.message and "limit 100000" in err.message
    # the other pool is served as before
    with pp.connect(dbname="appdb", user="webuser", password="web_pw") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)


def test_server_logins_with_a_plaintext_password_reuse_the_derived_keys(pgpulse, pg):
    # Several server connections for one role: the keys pgpulse derives for
    # PostgreSQL's salt serve them all, and every login still succeeds.
    db = "appdb = host={pg_host} port={pg_port} dbname=appdb user=app password=app_pw"
    pp = pgpulse(ini("scram-sha-256", db), {"webuser": "web_pw"})
    mark = pg.log_mark()
    # each keeps its transaction open, so each needs a server of its own
    conns = [pp.connect(user="webuser", password="web_pw") for _ in range(2)]
    pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns}
    assert len(pids) == 2
    for c in conns:
        c.rollback()
        c.close()
    wait_until(lambda: pg.log(since=mark).count('identity="app" method=scram-sha-256') >= 2, 5,
               "PostgreSQL's log to show two SCRAM logins as app")


# ----------------------------------------------------------------- SASLprep

# PostgreSQL SASLpreps a password (RFC 4013) before deriving SCRAM keys, and
# so does libpq before its proof: U+2168 ROMAN NUMERAL NINE becomes "IX",
# U+3000 IDEOGRAPHIC SPACE a space and U+00AD SOFT HYPHEN nothing.
SASLPREP_PASSWORDS = {"roman_nine": "IX-\u2168", "wide_space": "pass\u3000word\u00ad"}


@pytest.fixture(params=sorted(SASLPREP_PASSWORDS))
def saslprep_role(request, pg):
    """(role, password, PostgreSQL's SCRAM secret) for a role whose password
    SASLprep changes, set by SQL so that PostgreSQL prepares it."""
    role, password = f"sp_{request.param}", SASLPREP_PASSWORDS[request.param]
    with pg.connect(host=pg.socket_dir, autocommit=True) as c:
        c.execute("SET password_encryption = 'scram-sha-256'")
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD " + "'" + password + "'")
    (secret,), = pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
    assert secret.startswith("SCRAM-SHA-256$")
    # PostgreSQL itself takes the password as typed
    with pg.connect(user=role, password=password, dbname="appdb") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    yield role, password, secret
    pg.query(f"DROP ROLE {role}")


def test_saslprepped_password_logs_in_from_a_plaintext_auth_file(pgpulse, pg, saslprep_role):
    # pgpulse derives the client's SCRAM verifier from the auth_file's
    # plaintext, and logs in to PostgreSQL with that plaintext: both must
    # prepare it as libpq and PostgreSQL do.
    role, password, _ = saslprep_role
    pp = pgpulse(ini("scram-sha-256"), {role: password})
    mark = pg.log_mark()
    with pp.connect(user=role, password=password) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    pg_log_shows_login(pg, mark, role, "scram-sha-256")


def test_saslprepped_database_password_logs_pgpulse_in_to_postgresql(pgpulse, pg,
                                                                     saslprep_role):
    # only pgpulse's own login prepares the password here: the client is
    # webuser, with an ASCII password, forced to the role by [databases]
    role, password, _ = saslprep_role
    db = (f"appdb = host={{pg_host}} port={{pg_port}} dbname=appdb user={role} "
          f"password='{password}'")
    pp = pgpulse(ini("scram-sha-256", db), {"webuser": "web_pw"})
    mark = pg.log_mark()
    with pp.connect(user="webuser", password="web_pw") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    pg_log_shows_login(pg, mark, role, "scram-sha-256")


def test_saslprepped_password_logs_in_against_postgresqls_scram_secret(pgpulse, saslprep_role):
    # SCRAM from the client: pgpulse checks libpq's proof against the secret
    # and logs in to PostgreSQL with the keys it recovered
    role, password, secret = saslprep_role
    pp = pgpulse(ini("scram-sha-256"), {role: secret})
    with pp.connect(user=role, password=password) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)


def test_saslprepped_cleartext_password_matches_postgresqls_scram_secret(pgpulse, pg,
                                                                          saslprep_role):
    # A cleartext login is checked against the SCRAM secret (one Hi() over
    # the prepared password); the server login uses the database's
    # password=, again prepared.
    role, password, secret = saslprep_role
    db = (f"appdb = host={{pg_host}} port={{pg_port}} dbname=appdb user={role} "
          f"password='{password}'")
    pp = pgpulse(ini("plain", db), {role: secret})
    mark = pg.log_mark()
    with pp.connect(user=role, password=password) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (role,)
    pg_log_shows_login(pg, mark, role, "scram-sha-256")
    # the prepared form is the same password; a wrong one is still wrong
    with pp.connect(user=role, password=password.replace("\u2168", "IX")
                    .replace("\u3000", " ").replace("\u00ad", "")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert raw_login_error(pp.port, role, "appdb", password + "x").sqlstate == "28P01"


# ----------------------------------------------------------------- admin console

ADMIN_USERS = {"app": "app_pw", "admin": "admin_pw", "stats": "stats_pw"}


def start_admin(pgpulse):
    return pgpulse(ini(extra="stats_users = stats"), ADMIN_USERS)


def test_admin_user_may_show_and_reload(pgpulse):
    pp = start_admin(pgpulse)
    assert pp.show("VERSION")[0]["version"].startswith("pgpulse ")
    assert any(r["key"] == "default_pool_size" and r["value"] == "2" for r in pp.show("CONFIG"))
    assert pp.command("RELOAD") == "RELOAD"


def test_stats_user_may_show_but_reload_is_refused_with_42501(pgpulse):
    pp = start_admin(pgpulse)
    conn = pp.admin(user="stats")
    assert conn.execute("SHOW VERSION").fetchone()[0].startswith("pgpulse ")
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        conn.execute("RELOAD")
    assert info.value.sqlstate == "42501"
    assert "RELOAD" in str(info.value) and "admin_users" in str(info.value)
    # the session goes on
    assert any(r[0] == "default_pool_size" for r in conn.execute("SHOW CONFIG").fetchall())


@pytest.mark.parametrize("console", ["pgpulse", "pgbouncer"])
def test_other_users_are_refused_from_admin_console(pgpulse, console):
    pp = start_admin(pgpulse)
    err = raw_login_error(pp.port, "app", console, "app_pw")
    assert err.sqlstate == "28000"
    assert '"app"' in err.message and "admin_users" in err.message
    with pytest.raises(psycopg.OperationalError, match="not allowed"):
        pp.connect(dbname=console, user="app", password="app_pw")
    # while the same user reaches its own database
    with pp.connect(user="app", password="app_pw") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# ----------------------------------------------------------------- max_client_conn

def test_max_client_conn_refuses_the_extra_client_until_one_leaves(pgpulse):
    pp = pgpulse(ini(extra="max_client_conn = 3"), {"app": "app_pw"})
    conns = [pp.connect() for _ in range(3)]
    for c in conns:
        c.execute("SELECT 1")
        c.commit()
    err = raw_login_error(pp.port, "app", "appdb", "app_pw")
    assert err.sqlstate == "53300"
    assert "max_client_conn" in err.message
    with pytest.raises(psycopg.OperationalError, match="max_client_conn"):
        pp.connect()
    for c in conns:  # the three are unaffected
        assert c.execute("SELECT 1").fetchone() == (1,)
        c.commit()
    conns[0].close()
    # pgpulse notices the departure asynchronously: retry until admitted
    fourth = wait_until(lambda: pp.connect(), 5, "a new client to be admitted",
                        ignore=(psycopg.OperationalError,))
    assert fourth.execute("SELECT 1").fetchone() == (1,)


def test_scram_iterations_is_the_count_a_client_is_asked_for_a_plaintext_secret(pgpulse):
    """scram_iterations (PgBouncer's setting): the verifier pgpulse makes from
    a plaintext auth_file password uses that count, the client's
    server-first message says so, the login succeeds; a SET of it applies to
    the next login."""
    pp = pgpulse(ini("scram-sha-256", extra="scram_iterations = 10000"),
                 {"app": "app_pw", "admin": "admin_pw"})
    with RawConn(pp.port) as c:
        assert c.scram_iterations == 10000
        assert c.query("SELECT 1") == [["1"]]
    pp.admin().execute("SET scram_iterations = 5000")
    with RawConn(pp.port) as c:
        assert c.scram_iterations == 5000
        assert c.query("SELECT 1") == [["1"]]

