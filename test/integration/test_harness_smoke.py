"""The harness itself: the scratch PostgreSQL has the roles, databases and
authentication methods the rest of the suite relies on.  Needs no pgpulse."""

import psycopg
import pytest

from pgpulse_harness import ROLE_AUTH_METHODS, ROLE_PASSWORDS, Pgpulse, free_port, pg_bin, \
    port_accepts, wait_until


@pytest.mark.parametrize("role", sorted(ROLE_PASSWORDS))
def test_each_role_logs_in_over_tcp_with_its_auth_method(pg, role):
    mark = pg.log_mark()
    with pg.connect(dbname="appdb", user=role) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == \
            (role, "appdb")
    method = ROLE_AUTH_METHODS[role]
    if method == "trust":
        pg_log = pg.log(since=mark)
        assert f"user={role}" in pg_log and "connection authenticated" not in pg_log
    else:
        # log_connections: "connection authenticated: identity="app" method=md5 (...)"
        wait_until(lambda: f'identity="{role}" method={method} ' in pg.log(since=mark), 5,
                   f"the server log to show {role} authenticated with {method}")


@pytest.mark.parametrize("role", [r for r, p in sorted(ROLE_PASSWORDS.items()) if p])
def test_wrong_password_is_refused(pg, role):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg.connect(dbname="appdb", user=role, password="wrong")


def test_md5user_password_is_stored_as_md5_and_others_as_scram(pg):
    stored = dict(pg.query("SELECT rolname, rolpassword FROM pg_authid"
                           " WHERE rolname IN ('app', 'md5user', 'plainuser', 'trustuser')"))
    assert stored["md5user"].startswith("md5")
    assert stored["app"].startswith("SCRAM-SHA-256$")
    assert stored["plainuser"].startswith("SCRAM-SHA-256$")
    assert stored["trustuser"] is None


def test_appdb_is_owned_by_app_and_app_can_create_tables(pg):
    assert pg.query("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'appdb'") \
        == [("app",)]
    with pg.connect(dbname="appdb", user="app") as conn:
        conn.execute("CREATE TEMP TABLE t (x int)")


def test_unix_socket_is_trusted(pg):
    with pg.connect(dbname="postgres", user="app", password="", host=pg.socket_dir) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_server_listens_on_loopback_only(pg):
    assert pg.query("SHOW listen_addresses") == [("127.0.0.1",)]
    assert int(pg.query("SHOW max_connections")[0][0]) == 200


def test_psql_helper_logs_in_with_the_role_password(pg, psql):
    out = psql(pg.port, "-Atc", "SELECT current_user", user="md5user").stdout
    assert out.strip() == "md5user"
    r = psql(pg.port, "-Atc", "SELECT 1", user="app", password="wrong", check=False)
    assert r.returncode != 0 and "password authentication failed" in r.stderr


def test_pgbench_is_available(pg):
    assert pg_bin("pgbench").endswith("/pgbench")


def test_restart_keeps_the_cluster_usable(pg):
    before = pg.query("SELECT pg_postmaster_start_time()")[0][0]
    pg.restart()
    after = pg.query("SELECT pg_postmaster_start_time()")[0][0]
    assert after > before
    with pg.connect(dbname="appdb", user="app") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_stop_makes_the_server_unreachable(pg):
    pg.stop()
    assert not port_accepts(pg.port)
    # left stopped on purpose: the harness starts it again for the next test


def test_server_is_running_again_after_a_test_stopped_it(pg):
    assert pg.query("SELECT 1") == [(1,)]


def test_backends_lists_direct_connections(pg):
    with pg.connect(dbname="appdb", user="app", application_name="smoke-backends"):
        rows = pg.backends(dbname="appdb", user="app")
        assert any(r["application_name"] == "smoke-backends" for r in rows)


def test_admin_helpers_use_the_simple_query_protocol(pg, session_dir):
    # Aimed at PostgreSQL instead of pgpulse: two statements in one query are
    # accepted only by the simple protocol, which the admin console needs.
    p = Pgpulse("", base_dir=session_dir, bin="/bin/false", pg=pg, port=pg.port)
    p.admin_db = "postgres"
    try:
        rows = p.show("SHOW server_version; SELECT 1", user="postgres")
        assert rows and "server_version" in rows[0]
        assert p.command("SET application_name = 'x'", user="postgres") == "SET"
    finally:
        p.stop()


def test_pgpulse_placeholders_are_filled(pg, session_dir):
    p = Pgpulse("[databases]\nappdb = host={pg_host} port={pg_port}\n[pgpulse]\n"
                "listen_port = {port}\nauth_file = {auth_file}\nunix_socket_dir = {dir}\n"
                "x = {not_a_placeholder}\n",
                base_dir=session_dir, bin="/bin/false", pg=pg,
                userlist={"app": "app_pw", "admin": 'ad"min'})
    ini = open(p.ini_path).read()
    assert f"appdb = host=127.0.0.1 port={pg.port}\n" in ini
    assert f"listen_port = {p.port}\n" in ini
    assert f"auth_file = {p.dir}/userlist.txt\n" in ini
    assert "{not_a_placeholder}" in ini
    assert open(p.auth_file).read() == '"app" "app_pw"\n"admin" "ad""min"\n'
    assert p.password_for("admin") == 'ad"min' and p.password_for("md5user") == "md5_pw"


def test_wait_until_names_what_it_waited_for():
    with pytest.raises(AssertionError, match="waiting for the impossible"):
        wait_until(lambda: False, 0.1, "the impossible")
    assert wait_until(lambda: 42, 1, "an answer") == 42


def test_free_port_is_unused():
    a, b = free_port(), free_port()
    assert a != b and not port_accepts(a)
