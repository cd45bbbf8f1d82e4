"""TLS on both sides of pgpulse (doc/config.md, "TLS").

The test makes its own throwaway certificate authority with the openssl
command: a CA that signs pgpulse's certificate, PostgreSQL's and a client's,
and a second CA that nobody trusts. Client-side tests run psql and psycopg
with libpq's sslmode against pgpulse; server-side tests run a second
PostgreSQL with ssl = on, listening on localhost, whose certificate names
only "localhost", and look at pg_stat_ssl to see what pgpulse's server
connections carry.
"""

import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading

import psycopg
import pytest

from pgpulse_harness import Certs, PostgreSQL, parse_log, query_message, raw_startup, read_message, wait_until

USERS = {"app": "app_pw", "admin": "admin_pw", "md5user": "md5_pw"}

SSL_REQUEST = struct.pack("!II", 8, 80877103)


# ---------------------------------------------------------------- certificates

@pytest.fixture(scope="module")
def certs(session_dir):
    if not shutil.which("openssl"):
        pytest.fail("the openssl command is needed to make test certificates (apt-get install openssl)",
                    pytrace=False)
    directory = os.path.join(session_dir, "pki")
    os.makedirs(directory, exist_ok=True)
    c = Certs(directory)
    c.make_ca("ca", "pgpulse test CA")
    c.make_ca("other_ca", "untrusted test CA")
    # what pgpulse shows its clients: reachable as localhost or 127.0.0.1
    c.make_leaf("pgpulse", "localhost", san="DNS:localhost,IP:127.0.0.1")
    c.make_leaf("pgpulse_new", "pgpulse reloaded", san="DNS:localhost,IP:127.0.0.1")
    # PostgreSQL's: the name localhost only, so verify-full to 127.0.0.1 must fail
    c.make_leaf("postgres", "localhost", san="DNS:localhost")
    c.make_leaf("client_app", "app")
    c.make_leaf("client_rogue", "app", ca="other_ca")
    c.make_leaf("client_certuser", "certuser")
    return c


# ---------------------------------------------------------------- PostgreSQL with TLS

class TlsPostgreSQL(PostgreSQL):
    """A scratch cluster with ssl = on, on localhost (every loopback address
    the name has), that accepts role certuser by client certificate."""

    def __init__(self, base_dir, certs):
        super().__init__(base_dir)
        self.certs = certs

    def _write_conf(self):
        super()._write_conf()
        for name in ("postgres.crt", "postgres.key", "ca.crt"):
            shutil.copy(self.certs.path(name), os.path.join(self.datadir, name))
        os.chmod(os.path.join(self.datadir, "postgres.key"), 0o600)
        with open(os.path.join(self.datadir, "pgpulse_test.conf"), "a") as f:
            f.write("listen_addresses = 'localhost'\n"
                    "ssl = on\n"
                    "ssl_cert_file = 'postgres.crt'\n"
                    "ssl_key_file = 'postgres.key'\n"
                    "ssl_ca_file = 'ca.crt'\n")
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\n"
                    "hostssl all certuser all cert\n"
                    "host all all all scram-sha-256\n")


@pytest.fixture(scope="module")
def tls_pg(session_dir, certs):
    server = TlsPostgreSQL(session_dir, certs)
    try:
        server.init()
        server.start()
        server.setup_roles()
        server.query("CREATE ROLE certuser LOGIN")
        server.query("GRANT CONNECT ON DATABASE appdb TO certuser")
        yield server
    finally:
        server.destroy()


# ---------------------------------------------------------------- configurations

MAIN_SECTION = """\
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {{port}}
unix_socket_dir = {{dir}}
auth_type = scram-sha-256
auth_file = {{auth_file}}
admin_users = admin
pool_mode = {pool_mode}
"""


def client_tls_ini(certs, sslmode="require", extra=""):
    return f"""\
[databases]
appdb = host={{pg_host}} port={{pg_port}} dbname=appdb
{MAIN_SECTION.format(pool_mode="transaction")}\
client_tls_sslmode = {sslmode}
client_tls_cert_file = {{dir}}/server.crt
client_tls_key_file = {{dir}}/server.key
client_tls_ca_file = {certs.path("ca.crt")}
{extra}
"""


def install_cert(pp, certs, name):
    """Copy a key pair to where client_tls_ini points pgpulse."""
    shutil.copy(certs.path(f"{name}.crt"), os.path.join(pp.dir, "server.crt"))
    shutil.copy(certs.path(f"{name}.key"), os.path.join(pp.dir, "server.key"))


def start_client_tls(pgpulse, certs, **kw):
    """A pgpulse with client TLS; its admin console helpers speak verify-full."""
    pp = pgpulse(client_tls_ini(certs, **kw), USERS, start=False)
    install_cert(pp, certs, "pgpulse")
    pp.connect_defaults = libpq_tls(certs, "verify-full")
    pp.start()
    return pp


def server_tls_ini(pg, host, sslmode, extra=""):
    return f"""\
[databases]
appdb = host={host} port={pg.port} dbname=appdb
certdb = host={host} port={pg.port} dbname=appdb user=certuser
{MAIN_SECTION.format(pool_mode="session")}\
server_tls_sslmode = {sslmode}
{extra}
"""



def libpq_tls(certs, sslmode, rootcert="ca.crt", **extra):
    kw = {"sslmode": sslmode, "sslrootcert": certs.path(rootcert)}
    kw.update(extra)
    return kw


def peer_certificate_cn(port):
    """The common name on the certificate pgpulse presents to a new client."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(sock) as tls:
            der = tls.getpeercert(binary_form=True)
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                          input=der, capture_output=True, check=True).stdout.decode()
    return text.split("CN", 1)[1].lstrip(" =").strip()


# ---------------------------------------------------------------- client side

def test_psql_verify_full_through_pgpulse(pgpulse, psql, certs):
    pp = start_client_tls(pgpulse, certs)
    env = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": certs.path("ca.crt")}
    out = psql(pp.port, "-Atc", "select 'through pgpulse'", env=env).stdout
    assert out.strip() == "through pgpulse"
    # by name too: the certificate carries both
    out = psql(pp.port, "-Atc", "select 2", host="localhost", env=env).stdout
    assert out.strip() == "2"


def test_show_clients_names_the_tls_version(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs)
    conn = pp.connect()
    assert conn.pgconn.ssl_in_use
    conn.execute("select 1")
    rows = pp.show("CLIENTS")
    assert len(rows) == 2  # the application and the admin console
    assert all(r["tls"].startswith("TLSv1.3/TLS_") for r in rows), rows
    # a unix-socket client has none
    with pp.connect(host=pp.dir, sslmode="disable"):
        unix = [r for r in pp.show("CLIENTS") if r["addr"] == "unix"]
        assert len(unix) == 1 and unix[0]["tls"] == ""


def test_login_attempt_log_line_names_the_tls_protocol_as_pgbouncer_does(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs)
    with pp.connect() as conn:
        conn.execute("select 1")
    attempts = [r["event"] for r in parse_log(pp.log()) if r.get("event", "").startswith("login attempt: db=appdb")]
    assert len(attempts) == 1 and \
        re.fullmatch(r"login attempt: db=appdb user=app tls=TLSv1\.3/TLS_\w+ replication=no", attempts[0]), attempts


def test_require_refuses_plaintext_over_tcp_but_not_unix(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(sslmode="disable")
    assert "SSL required" in str(e.value)
    # unix sockets carry no TLS in PostgreSQL either: they stay open
    with pp.connect(host=pp.dir, sslmode="disable") as conn:
        assert conn.execute("select 3").fetchone() == (3,)


def test_plaintext_refusal_has_sqlstate_28000(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs)
    with socket.create_connection(("127.0.0.1", pp.port), timeout=10) as sock:
        status, fields = raw_startup(sock)
    assert status == "error"
    assert fields["C"] == "28000"
    assert "SSL required" in fields["M"]


def test_channel_binding_required_by_the_client_logs_in_as_with_postgresql(pgpulse, certs):
    """libpq's channel_binding=require: SCRAM-SHA-256-PLUS bound to the
    certificate pgpulse showed, which libpq checks in the server's proof."""
    pp = start_client_tls(pgpulse, certs)
    with pp.connect(**libpq_tls(certs, "verify-full", channel_binding="require")) as bound:
        assert bound.pgconn.ssl_in_use
        assert bound.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pp.connect(password="wrong", **libpq_tls(certs, "verify-full", channel_binding="require"))


def test_prefer_accepts_both(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs, sslmode="prefer")
    with pp.connect(sslmode="disable") as plain:
        assert not plain.pgconn.ssl_in_use
        plain.execute("select 1")
    with pp.connect(**libpq_tls(certs, "verify-ca")) as enc:
        assert enc.pgconn.ssl_in_use
        enc.execute("select 1")


def test_disable_answers_no_to_ssl_request(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs, sslmode="disable")
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(sslmode="require")
    assert "does not support SSL" in str(e.value)
    with pp.connect(sslmode="prefer") as conn:
        assert not conn.pgconn.ssl_in_use


def test_client_refuses_a_pgpulse_certificate_from_an_unknown_ca(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(**libpq_tls(certs, "verify-ca", rootcert="other_ca.crt"))
    assert "certificate verify failed" in str(e.value)
    # and pgpulse is still serving
    with pp.connect(**libpq_tls(certs, "verify-ca")) as conn:
        conn.execute("select 1")


def test_large_results_both_ways(pgpulse, certs):
    """Rows bigger than a TLS record and than pgpulse's buffer, in both
    directions: what the session decrypted but the buffer could not take
    must still arrive."""
    pp = start_client_tls(pgpulse, certs)
    conn = pp.connect(**libpq_tls(certs, "verify-full"), autocommit=True)
    big = "x" * 300000 + "end"
    assert conn.execute("select %s::text", (big,)).fetchone()[0] == big
    rows = conn.execute("select g, md5(g::text) from generate_series(1, 50000) g").fetchall()
    assert len(rows) == 50000 and rows[-1][0] == 50000
    with conn.cursor() as cur:
        with cur.copy("copy (select repeat('y', 1000) from generate_series(1, 2000)) to stdout") as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
    assert data.count(b"\n") == 2000


def test_handshake_does_not_stall_other_clients(pgpulse, certs):
    """A client that asks for TLS and then says nothing holds its own
    handshake only: others log in and run queries meanwhile."""
    pp = start_client_tls(pgpulse, certs)
    silent = socket.create_connection(("127.0.0.1", pp.port), timeout=10)
    try:
        silent.sendall(SSL_REQUEST)
        assert silent.recv(1) == b"S"
        # half a ClientHello: a TLS record header that promises more
        silent.sendall(b"\x16\x03\x01\x02\x00\x01")
        for _ in range(3):
            with pp.connect(**libpq_tls(certs, "verify-full")) as conn:
                assert conn.execute("select 4").fetchone() == (4,)
        # the silent client is still connected, waiting for its handshake
        silent.settimeout(0.2)
        with pytest.raises(socket.timeout):
            silent.recv(1)
    finally:
        silent.close()


def test_unencrypted_bytes_after_ssl_request_are_refused(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs)
    with socket.create_connection(("127.0.0.1", pp.port), timeout=10) as sock:
        # the request and a plaintext startup packet in one segment
        body = struct.pack("!I", 196608) + b"user\0app\0database\0appdb\0\0"
        sock.sendall(SSL_REQUEST + struct.pack("!I", len(body) + 4) + body)
        mtype, payload, _ = read_message(sock, b"")
    assert mtype == b"E"
    assert b"unencrypted data after SSL request" in payload
    assert b"C08P01" in payload


def test_reload_swaps_the_certificate_and_keeps_connections(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs)
    before = pp.connect(**libpq_tls(certs, "verify-full"), autocommit=True)
    before.execute("select 1")
    assert peer_certificate_cn(pp.port) == "localhost"

    install_cert(pp, certs, "pgpulse_new")
    pp.command("RELOAD")
    assert peer_certificate_cn(pp.port) == "pgpulse reloaded"
    # the session made with the old certificate goes on
    assert before.execute("select 5").fetchone() == (5,)
    with pp.connect(**libpq_tls(certs, "verify-full")) as after:
        after.execute("select 1")


def test_reload_with_a_broken_certificate_keeps_the_old_one(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs)
    with open(os.path.join(pp.dir, "server.crt"), "w") as f:
        f.write("not a certificate\n")
    mark = pp.log_mark()
    with pytest.raises(psycopg.Error) as e:
        pp.command("RELOAD")
    assert "client_tls_cert_file" in str(e.value)
    pp.wait_log("reload failed, keeping the running configuration", since=mark)
    assert peer_certificate_cn(pp.port) == "localhost"
    with pp.connect(**libpq_tls(certs, "verify-full")) as conn:
        conn.execute("select 1")


def test_missing_key_file_stops_startup(pgpulse, certs):
    pp = pgpulse(client_tls_ini(certs), USERS, start=False)  # no server.crt/key copied
    pp.start(wait=False)
    assert pp.wait_exit() == 1
    assert "client_tls_cert_file" in pp.log()
    assert "No such file" in pp.log()


def test_protocols_pin_the_version(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs, extra="client_tls_protocols = tlsv1.2")
    pp.connect().execute("select 1")
    tls = [r["tls"] for r in pp.show("CLIENTS")]
    assert tls and all(t.startswith("TLSv1.2/") for t in tls), tls


def test_client_tls13_ciphers_picks_the_suite(pgpulse, certs):
    """client_tls13_ciphers (PgBouncer's): a TLS 1.3 client gets the one
    suite allowed, not OpenSSL's first choice (TLS_AES_256_GCM_SHA384)."""
    pp = start_client_tls(pgpulse, certs, extra="client_tls13_ciphers = TLS_CHACHA20_POLY1305_SHA256")
    pp.connect().execute("select 1")
    tls = [r["tls"] for r in pp.show("CLIENTS")]
    assert tls and all(t == "TLSv1.3/TLS_CHACHA20_POLY1305_SHA256" for t in tls), tls


def test_an_unknown_tls13_suite_stops_startup_naming_the_setting(pgpulse, certs):
    pp = pgpulse(client_tls_ini(certs, extra="client_tls13_ciphers = TLS_NO_SUCH_SUITE"), USERS,
                 start=False)
    install_cert(pp, certs, "pgpulse")
    pp.start(wait=False)
    assert pp.wait_exit() == 1
    assert "client_tls13_ciphers" in pp.log()


def test_set_of_a_tls_parameter_is_checked(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs)
    with pytest.raises(psycopg.Error) as e:
        pp.command("SET client_tls_protocols = 'sslv2'")
    assert "unknown protocol" in str(e.value)
    config = {r["key"]: r["value"] for r in pp.show("CONFIG")}
    assert config["client_tls_protocols"] == "secure"
    # a good value takes effect for the next client
    pp.command("SET client_tls_protocols = 'tlsv1.2'")
    with pp.connect() as conn:
        conn.execute("select 1")
        assert [r["tls"] for r in pp.show("CLIENTS") if r["tls"].startswith("TLSv1.2/")]


def test_client_verify_full_wants_a_valid_certificate_not_one_naming_the_user(pgpulse, certs):
    # PgBouncer's client verify-full is verify-ca: a PgBouncer file with it
    # and password logins keeps working when the certificate names a host
    pp = start_client_tls(pgpulse, certs, sslmode="verify-full")
    with pp.connect(user="md5user", **libpq_tls(certs, "verify-full", **client_cert(certs, "client_app"))) as conn:
        assert conn.execute("select current_user").fetchone() == ("md5user",)
    with pytest.raises(psycopg.OperationalError):
        pp.connect(user="md5user", **libpq_tls(certs, "verify-full"))  # no certificate at all


# ---------------------------------------------------------------- auth_type = cert

def cert_ini(certs):
    return client_tls_ini(certs, sslmode="require").replace("auth_type = scram-sha-256",
                                                            "auth_type = cert")


def start_cert_auth(pgpulse, certs):
    pp = pgpulse(cert_ini(certs), USERS, start=False)
    install_cert(pp, certs, "pgpulse")
    pp.connect_defaults = libpq_tls(certs, "verify-full")
    pp.start()
    return pp


def client_cert(certs, name):
    return {"sslcert": certs.path(f"{name}.crt"), "sslkey": certs.path(f"{name}.key")}


def test_cert_auth_logs_in_the_common_name(pgpulse, certs):
    pp = start_cert_auth(pgpulse, certs)
    with pp.connect(password="", **libpq_tls(certs, "verify-full", **client_cert(certs, "client_app"))) as conn:
        assert conn.execute("select current_user").fetchone() == ("app",)


def test_cert_auth_refuses_other_users_and_missing_certificates(pgpulse, certs):
    pp = start_cert_auth(pgpulse, certs)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(user="md5user", password="",
                   **libpq_tls(certs, "verify-full", **client_cert(certs, "client_app")))
    assert 'certificate authentication failed for user "md5user"' in str(e.value)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(password="", **libpq_tls(certs, "verify-full"))
    assert "requires a valid client certificate" in str(e.value)


def test_cert_from_an_unknown_ca_is_refused_in_the_handshake(pgpulse, certs):
    pp = start_cert_auth(pgpulse, certs)
    mark = pp.log_mark()
    with pytest.raises(psycopg.OperationalError):
        pp.connect(password="", **libpq_tls(certs, "verify-full", **client_cert(certs, "client_rogue")))
    pp.wait_log("TLS handshake failed", since=mark)


# ---------------------------------------------------------------- server side

def server_backend_ssl(conn, tls_pg):
    """pg_stat_ssl's row for the backend behind a session-mode connection."""
    pid = conn.execute("select pg_backend_pid()").fetchone()[0]
    rows = tls_pg.query("select ssl, version from pg_stat_ssl where pid = %s", (pid,))
    assert rows, f"no pg_stat_ssl row for backend {pid}"
    return rows[0]


def test_server_connections_are_encrypted_with_verify_full(pgpulse, tls_pg, certs):
    extra = f"server_tls_ca_file = {certs.path('ca.crt')}"
    pp = pgpulse(server_tls_ini(tls_pg, "localhost", "verify-full", extra), USERS)
    conn = pp.connect()
    on, version = server_backend_ssl(conn, tls_pg)
    assert on is True and version.startswith("TLSv1.")
    servers = [r for r in pp.show("SERVERS") if r["database"] == "appdb"]
    assert servers and all(r["tls"].startswith(version + "/") for r in servers), servers


def test_server_tls13_ciphers_picks_the_suite_pgpulse_offers_postgresql(pgpulse, tls_pg, certs):
    extra = "server_tls13_ciphers = TLS_AES_128_GCM_SHA256"
    pp = pgpulse(server_tls_ini(tls_pg, "localhost", "require", extra), USERS)
    conn = pp.connect()
    pid = conn.execute("select pg_backend_pid()").fetchone()[0]
    rows = tls_pg.query("select version, cipher from pg_stat_ssl where pid = %s", (pid,))
    assert rows == [("TLSv1.3", "TLS_AES_128_GCM_SHA256")], rows


def test_verify_full_checks_the_host_name(pgpulse, tls_pg, certs):
    """PostgreSQL's certificate names localhost, not 127.0.0.1: verify-ca
    accepts it there, verify-full does not."""
    extra = f"server_tls_ca_file = {certs.path('ca.crt')}"
    pp = pgpulse(server_tls_ini(tls_pg, "127.0.0.1", "verify-full", extra), USERS)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect()
    assert "mismatch" in str(e.value).lower() or "verif" in str(e.value).lower(), str(e.value)
    assert "TLS handshake with server" in pp.log()

    pp2 = pgpulse(server_tls_ini(tls_pg, "127.0.0.1", "verify-ca", extra), USERS)
    with pp2.connect() as conn:
        assert server_backend_ssl(conn, tls_pg)[0] is True


def test_a_wrong_server_ca_is_refused(pgpulse, tls_pg, certs):
    extra = f"server_tls_ca_file = {certs.path('other_ca.crt')}"
    pp = pgpulse(server_tls_ini(tls_pg, "localhost", "verify-ca", extra), USERS)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect()
    assert "certificate verification failed" in str(e.value)


def test_require_fails_against_a_server_without_tls(pgpulse, pg, certs):
    pp = pgpulse(server_tls_ini(pg, "127.0.0.1", "require"), USERS)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect()
    assert "server does not support TLS" in str(e.value)


def test_prefer_falls_back_to_plaintext(pgpulse, pg, certs):
    pp = pgpulse(server_tls_ini(pg, "127.0.0.1", "prefer"), USERS)
    with pp.connect() as conn:
        conn.execute("select 1")
    servers = [r for r in pp.show("SERVERS") if r["database"] == "appdb"]
    assert servers and all(r["tls"] == "" for r in servers)


def test_server_client_certificate_logs_in(pgpulse, tls_pg, certs):
    """server_tls_cert_file: PostgreSQL's hba says cert for certuser."""
    extra = (f"server_tls_ca_file = {certs.path('ca.crt')}\n"
             f"server_tls_cert_file = {certs.path('client_certuser.crt')}\n"
             f"server_tls_key_file = {certs.path('client_certuser.key')}\n")
    pp = pgpulse(server_tls_ini(tls_pg, "localhost", "verify-full", extra), USERS)
    with pp.connect(dbname="certdb") as conn:
        assert conn.execute("select current_user").fetchone() == ("certuser",)


def test_tls_both_sides_under_load(pgpulse, tls_pg, certs, pgbench):
    """Transaction pooling with TLS on both sides: pgbench sees no error and
    three server connections carry 8 clients."""
    ini = server_tls_ini(tls_pg, "localhost", "verify-full", f"""\
server_tls_ca_file = {certs.path('ca.crt')}
default_pool_size = 3
client_tls_sslmode = require
client_tls_cert_file = {{dir}}/server.crt
client_tls_key_file = {{dir}}/server.key
""").replace("pool_mode = session", "pool_mode = transaction")
    pp = pgpulse(ini, USERS, start=False)
    install_cert(pp, certs, "pgpulse")
    pp.connect_defaults = libpq_tls(certs, "verify-full")
    pp.start()
    script = os.path.join(pp.dir, "bench.sql")
    with open(script, "w") as f:
        f.write("select g, md5(g::text) from generate_series(1, 200) g;\n")
    r = pgbench(pp.port, "-n", "-c", "8", "-t", "200", "-f", script, check=False,
                env={"PGSSLMODE": "verify-full", "PGSSLROOTCERT": certs.path("ca.crt")})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "number of failed transactions: 0" in r.stdout or "failed" not in r.stdout
    servers = [s for s in pp.show("SERVERS") if s["database"] == "appdb"]
    assert 1 <= len(servers) <= 3 and all(s["tls"] for s in servers), servers


def test_a_stalled_handshake_ends_at_client_login_timeout(pgpulse, certs):
    pp = start_client_tls(pgpulse, certs, extra="client_login_timeout = 1")
    with socket.create_connection(("127.0.0.1", pp.port), timeout=15) as silent:
        silent.sendall(SSL_REQUEST)
        assert silent.recv(1) == b"S"
        silent.sendall(b"\x16\x03\x01\x02\x00\x01")   # a ClientHello that never comes whole
        # pgpulse closes it (a plaintext error would be garbage inside a handshake)
        assert silent.recv(4096) == b""
    with pp.connect() as conn:
        conn.execute("select 1")


def test_suspend_and_resume_leave_a_handshake_alone(pgpulse, certs):
    """SUSPEND stops reading every client; RESUME must not forget the ones
    that were in the middle of a TLS handshake."""
    pp = start_client_tls(pgpulse, certs)
    admin = pp.admin()
    with socket.create_connection(("127.0.0.1", pp.port), timeout=10) as sock:
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"
        admin.execute("SUSPEND")
        admin.execute("RESUME")
        ctx = ssl.create_default_context(cafile=certs.path("ca.crt"))
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.3"
