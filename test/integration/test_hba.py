"""auth_type = hba (doc/config.md): the auth_hba_file in pg_hba.conf syntax,
auth_ident_file maps for peer and cert, peer authentication on the unix
socket, and the admin console for the operating-system user pgpulse runs
as.

RawConn shows what an application does not see: which authentication
request pgpulse sends (auth_codes) and the SQLSTATE of a refused login.
Every pgpulse here runs as the same operating-system user as the tests.
"""

import os
import pwd
import shutil

import psycopg
import pytest

from pgpulse_harness import Certs, RawConn, ServerError, wait_until

USERS = {"app": "app_pw", "admin": "admin_pw", "plainuser": "plain_pw"}
AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL = 0, 3, 5, 10
OS_USER = pwd.getpwuid(os.geteuid()).pw_name

HBA_INI = """\
[databases]
appdb = host={pg_host} port={pg_port} dbname=appdb
app = host={pg_host} port={pg_port} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
auth_type = hba
auth_hba_file = {dir}/hba.conf
auth_ident_file = {dir}/ident.conf
auth_file = {auth_file}
admin_users = admin
pool_mode = transaction
default_pool_size = 2
"""


def write(pp, name, text):
    with open(os.path.join(pp.dir, name), "w") as f:
        f.write(text)


def start_hba(pgpulse, hba, ident="", ini=HBA_INI, files=None):
    """A pgpulse with auth_type = hba and these rules (and ident maps)."""
    pp = pgpulse(ini, USERS, start=False)
    write(pp, "hba.conf", hba)
    write(pp, "ident.conf", ident)
    for name, text in (files or {}).items():
        write(pp, name, text)
    pp.start()
    return pp


def login(pp, user="app", database="appdb", password=None, unix=False):
    """Log in with RawConn; the authentication requests pgpulse sent."""
    with RawConn(pp.port, user=user, database=database, password=password or USERS.get(user, ""),
                 unix_dir=pp.dir if unix else None) as conn:
        assert conn.query("SELECT 1") == [["1"]]
        return conn.auth_codes


def refusal(pp, user="app", database="appdb", unix=False):
    """The error a login that must fail gets."""
    with pytest.raises(ServerError) as e:
        login(pp, user, database, unix=unix)
    return e.value


# ---------------------------------------------------------------- methods

@pytest.mark.parametrize("method,asked", [
    ("trust", [AUTH_OK]),
    ("password", [AUTH_CLEARTEXT, AUTH_OK]),
    ("md5", [AUTH_MD5, AUTH_OK]),
    ("scram-sha-256", [AUTH_SASL, AUTH_OK]),  # RawConn answers SASLContinue/Final inside
])
def test_the_matching_line_chooses_the_method(pgpulse, method, asked):
    pp = start_hba(pgpulse, f"host all app 127.0.0.1/32 {method}\n")
    assert login(pp) == asked


def test_a_wrong_password_fails_under_an_hba_md5_line(pgpulse):
    pp = start_hba(pgpulse, "host all app 127.0.0.1/32 md5\n")
    with pytest.raises(ServerError) as e:
        login(pp, password="wrong")
    assert e.value.sqlstate == "28P01"


def test_reject_line_refuses_with_postgresql_wording(pgpulse):
    pp = start_hba(pgpulse, "host all app 127.0.0.1/32 reject\nhost all all all trust\n")
    err = refusal(pp)
    assert err.sqlstate == "28000"
    assert err.fields["M"] == ('pg_hba.conf rejects connection for host "127.0.0.1", user "app", '
                               'database "appdb", no encryption')


def test_no_matching_line_is_refused_with_postgresql_wording(pgpulse):
    pp = start_hba(pgpulse, "host appdb plainuser 127.0.0.1/32 trust\n")
    err = refusal(pp)
    assert err.sqlstate == "28000"
    assert err.fields["M"] == ('no pg_hba.conf entry for host "127.0.0.1", user "app", '
                               'database "appdb", no encryption')
    err = refusal(pp, unix=True)
    assert err.fields["M"] == ('no pg_hba.conf entry for host "[local]", user "app", '
                               'database "appdb", no encryption')


# ---------------------------------------------------------------- matching

def test_local_and_host_lines_are_told_apart(pgpulse):
    pp = start_hba(pgpulse, "local all app password\nhost all app all reject\n")
    assert login(pp, unix=True) == [AUTH_CLEARTEXT, AUTH_OK]
    assert "rejects" in refusal(pp).fields["M"]


def test_address_matches_by_cidr_and_by_mask(pgpulse):
    pp = start_hba(pgpulse, "host all app 127.0.0.2/32 reject\n"
                            "host all app 10.0.0.0/8 reject\n"
                            "host all app 127.0.0.0 255.255.255.0 password\n"
                            "host all plainuser 10.0.0.0 255.0.0.0 trust\n")
    assert login(pp) == [AUTH_CLEARTEXT, AUTH_OK]
    assert "no pg_hba.conf entry" in refusal(pp, user="plainuser").fields["M"]


def test_an_ipv6_client_is_matched_by_an_ipv6_line(pgpulse):
    ini = HBA_INI.replace("listen_addr = 127.0.0.1", "listen_addr = ::1, 127.0.0.1")
    pp = start_hba(pgpulse, "host all all ::1/128 password\nhost all all 0.0.0.0/0 reject\n", ini=ini)
    with pp.connect(host="::1") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    err = refusal(pp)
    assert err.fields["M"].startswith('pg_hba.conf rejects connection for host "127.0.0.1"')


def test_sameuser_quoted_names_and_at_file(pgpulse):
    pp = start_hba(pgpulse,
                   "host sameuser all 127.0.0.1/32 trust\n"
                   'host "appdb" @team.txt 127.0.0.1/32 password\n'
                   "host all all all reject\n",
                   files={"team.txt": "# who may log in with a password\nnobody, app\n"})
    assert login(pp, database="app") == [AUTH_OK]          # database named like the user
    assert login(pp, database="appdb") == [AUTH_CLEARTEXT, AUTH_OK]
    assert "rejects" in refusal(pp, user="plainuser").fields["M"]


def test_the_admin_console_follows_the_rules_too(pgpulse):
    pp = start_hba(pgpulse, "host pgpulse,pgbouncer admin 127.0.0.1/32 md5\nlocal all all reject\n")
    assert pp.show("VERSION")
    err = refusal(pp, user="admin", database="pgpulse", unix=True)
    assert err.fields["M"].startswith("pg_hba.conf rejects connection for host \"[local]\", user \"admin\"")


# ---------------------------------------------------------------- reload

def test_reload_with_a_broken_file_keeps_the_old_rules_and_names_the_line(pgpulse):
    admin = "host pgpulse admin 127.0.0.1/32 md5\n"
    pp = start_hba(pgpulse, admin + "host all app 127.0.0.1/32 trust\n")
    assert login(pp) == [AUTH_OK]
    mark = pp.log_mark()
    write(pp, "hba.conf", admin + "host all app 127.0.0.1/32 reject\nhost all all all bogus\n")
    pp.reload()  # SIGHUP
    pp.wait_log(r"hba\.conf:3: invalid authentication method \"bogus\"", since=mark)
    assert login(pp) == [AUTH_OK]
    # a good file takes effect on the next RELOAD
    write(pp, "hba.conf", admin + "host all app 127.0.0.1/32 password\n")
    assert pp.command("RELOAD") == "RELOAD"
    assert login(pp) == [AUTH_CLEARTEXT, AUTH_OK]


def test_console_set_of_auth_type_hba_or_its_files_loads_the_rules_or_is_refused(pgpulse):
    """SET on the console reads the rules as RELOAD would: they take effect
    at once, and a file that does not load (or is missing) refuses the SET
    and keeps the rules in force, instead of an empty rule set that refuses
    every login."""
    admin = "host pgpulse admin 127.0.0.1/32 md5\n"
    pp = pgpulse(HBA_INI.replace("auth_type = hba", "auth_type = md5"), USERS, start=False)
    write(pp, "hba.conf", admin + "host all app 127.0.0.1/32 password\n")
    write(pp, "broken.conf", admin + "host all app 127.0.0.1/32 bogus\n")
    write(pp, "ident.conf", "")
    pp.start()
    assert login(pp) == [AUTH_MD5, AUTH_OK]
    conn = pp.admin()
    conn.execute("SET auth_type = 'hba'")
    assert login(pp) == [AUTH_CLEARTEXT, AUTH_OK]
    broken = os.path.join(pp.dir, "broken.conf")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        conn.execute(f"SET auth_hba_file = '{broken}'")
    assert f'{broken}:2: invalid authentication method "bogus"' in str(e.value)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        conn.execute("SET auth_hba_file = ''")
    assert "auth_type = hba needs auth_hba_file" in str(e.value)
    assert conn.execute("SHOW CONFIG").fetchall()  # the console still answers
    assert login(pp) == [AUTH_CLEARTEXT, AUTH_OK]
    # a good file takes effect at once
    write(pp, "other.conf", admin + "host all app 127.0.0.1/32 trust\n")
    conn.execute(f"SET auth_hba_file = '{os.path.join(pp.dir, 'other.conf')}'")
    assert login(pp) == [AUTH_OK]


def test_a_broken_file_stops_startup_with_file_and_line(pgpulse):
    pp = pgpulse(HBA_INI, USERS, start=False)
    write(pp, "hba.conf", "local all all trust\nhostgssenc all all all trust\n")
    write(pp, "ident.conf", "")
    pp.start(wait=False)
    assert pp.wait_exit() != 0
    assert "hba.conf:2: connection type \"hostgssenc\" is not supported" in pp.log()


def test_a_cert_line_without_client_tls_stops_startup_naming_the_line(pgpulse):
    pp = pgpulse(HBA_INI, USERS, start=False)
    write(pp, "hba.conf", "local all all trust\nhostssl all all all cert\n")
    write(pp, "ident.conf", "")
    pp.start(wait=False)
    assert pp.wait_exit() != 0
    assert "hba.conf:2: cert needs client TLS (client_tls_sslmode) and client_tls_ca_file" in pp.log()


def test_reload_adding_a_cert_line_without_a_ca_keeps_the_old_rules(pgpulse):
    pp = start_hba(pgpulse, "host all all 127.0.0.1/32 password\n")
    mark = pp.log_mark()
    write(pp, "hba.conf", "host all all 127.0.0.1/32 password\nhostssl all all all cert\n")
    pp.reload()
    pp.wait_log(r"reload failed, keeping the running configuration: .*hba\.conf:2: cert needs client TLS",
                since=mark)
    assert login(pp) == [AUTH_CLEARTEXT, AUTH_OK]


# ---------------------------------------------------------------- peer

def test_peer_with_an_ident_map_lets_the_os_user_in_as_a_role(pgpulse):
    pp = start_hba(pgpulse, "local all app peer map=os\n", ident=f"os {OS_USER} app\n")
    assert login(pp, unix=True, password="not used") == [AUTH_OK]


def test_peer_without_a_map_needs_the_os_user_name(pgpulse):
    pp = start_hba(pgpulse, "local all app peer\n")
    err = refusal(pp, unix=True)
    assert err.sqlstate == "28000"
    assert err.fields["M"] == 'peer authentication failed for user "app"'


def test_peer_with_a_regex_map(pgpulse):
    pp = start_hba(pgpulse, "local all app peer map=os\n",
                   ident=f"os /^{OS_USER[:3]}(.*)$ nobody\\1\nos /^{OS_USER}$ app\n")
    assert login(pp, unix=True) == [AUTH_OK]


# ---------------------------------------------------------------- admin console, own user

def test_the_os_user_pgpulse_runs_as_opens_the_console_over_unix_without_a_password(pgpulse):
    ini = HBA_INI.replace("auth_type = hba", "auth_type = md5")
    pp = pgpulse(ini, USERS)
    with RawConn(pp.port, user="pgbouncer", database="pgbouncer", password="", unix_dir=pp.dir) as conn:
        assert conn.auth_codes == [AUTH_OK]
        assert conn.query("SHOW VERSION")
    # over TCP the name pgbouncer is nobody special
    with pytest.raises(ServerError) as e:
        RawConn(pp.port, user="pgbouncer", database="pgbouncer", password="")
    assert e.value.sqlstate == "28000"


# ---------------------------------------------------------------- TLS: hostssl, hostnossl, cert

@pytest.fixture(scope="module")
def hba_certs(session_dir):
    if not shutil.which("openssl"):
        pytest.fail("the openssl command is needed to make test certificates", pytrace=False)
    directory = os.path.join(session_dir, "hba_pki")
    os.makedirs(directory, exist_ok=True)
    c = Certs(directory)
    c.make_ca("ca", "pgpulse hba test CA")
    c.make_leaf("pgpulse", "localhost", san="DNS:localhost,IP:127.0.0.1")
    c.make_leaf("client_mapped", "app.example")
    c.make_leaf("client_stranger", "someone.else")
    return c


def start_hba_tls(pgpulse, certs, hba, ident=""):
    ini = HBA_INI + (f"client_tls_sslmode = prefer\n"
                     f"client_tls_cert_file = {certs.path('pgpulse.crt')}\n"
                     f"client_tls_key_file = {certs.path('pgpulse.key')}\n"
                     f"client_tls_ca_file = {certs.path('ca.crt')}\n")
    return start_hba(pgpulse, hba, ident, ini=ini)


def tls_kw(certs, client=None):
    kw = {"sslmode": "verify-ca", "sslrootcert": certs.path("ca.crt")}
    if client:
        kw.update(sslcert=certs.path(f"{client}.crt"), sslkey=certs.path(f"{client}.key"))
    return kw


def test_hostssl_and_hostnossl_follow_the_session(pgpulse, hba_certs):
    pp = start_hba_tls(pgpulse, hba_certs, "hostssl all app all password\nhostnossl all app all reject\n")
    with pp.connect(**tls_kw(hba_certs)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(sslmode="disable")
    assert "rejects connection" in str(e.value) and "no encryption" in str(e.value)


def test_no_entry_over_tls_says_ssl_encryption(pgpulse, hba_certs):
    pp = start_hba_tls(pgpulse, hba_certs, "hostnossl all app all password\n")
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(**tls_kw(hba_certs))
    assert ('no pg_hba.conf entry for host "127.0.0.1", user "app", database "appdb", SSL encryption'
            in str(e.value))


def test_cert_without_a_map_wants_the_common_name_to_be_the_user(pgpulse, hba_certs):
    hba_certs.make_leaf("client_app", "app")
    pp = start_hba_tls(pgpulse, hba_certs, "hostssl all app all cert\n")
    with pp.connect(password="", **tls_kw(hba_certs, "client_app")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(password="", **tls_kw(hba_certs, "client_mapped"))  # CN app.example
    assert 'certificate authentication failed for user "app"' in str(e.value)


def test_cert_map_under_client_tls_sslmode_verify_full(pgpulse, hba_certs):
    # verify-full is verify-ca (as in PgBouncer): the map decides, the CN need not be the user
    ini = HBA_INI + (f"client_tls_sslmode = verify-full\n"
                     f"client_tls_cert_file = {hba_certs.path('pgpulse.crt')}\n"
                     f"client_tls_key_file = {hba_certs.path('pgpulse.key')}\n"
                     f"client_tls_ca_file = {hba_certs.path('ca.crt')}\n")
    pp = start_hba(pgpulse, "hostssl all app all cert map=certs\nlocal all all trust\n",
                   ident="certs /^(.*)\\.example$ \\1\n", ini=ini)
    with pp.connect(password="", **tls_kw(hba_certs, "client_mapped")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(password="", **tls_kw(hba_certs, "client_stranger"))
    assert 'certificate authentication failed for user "app"' in str(e.value)


def test_cert_with_an_ident_map(pgpulse, hba_certs):
    pp = start_hba_tls(pgpulse, hba_certs, "hostssl all app all cert map=certs\n",
                       ident="certs /^(.*)\\.example$ \\1\n")
    with pp.connect(password="", **tls_kw(hba_certs, "client_mapped")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(password="", **tls_kw(hba_certs, "client_stranger"))
    assert 'certificate authentication failed for user "app"' in str(e.value)
    with pytest.raises(psycopg.OperationalError) as e:
        pp.connect(password="", **tls_kw(hba_certs))
    assert "connection requires a valid client certificate" in str(e.value)
