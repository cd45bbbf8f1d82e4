"""Startup settings: any run-time parameter a client sends in its startup
packet, and the -c / -- switches of `options` (libpq's PGOPTIONS), reach
whichever server the client gets, in session and transaction mode; a bad
one is refused at login with PostgreSQL's own error; clients that send the
same values cost no SET after the first.

What PostgreSQL itself says is read from a direct connection to the
scratch cluster, so each comparison is against the real thing.
"""

import re

import psycopg
import pytest

from pgpulse_harness import RawConn, ServerError, build_ini

USERS = {"app": "app_pw", "admin": "admin_pw"}


def ini(mode="transaction", **settings):
    base = {"listen_addr": "127.0.0.1", "listen_port": "{port}", "unix_socket_dir": "{dir}",
            "auth_file": "{auth_file}", "auth_type": "scram-sha-256", "admin_users": "admin",
            "pool_mode": mode, "default_pool_size": "1"}
    base.update(settings)
    return build_ini({"appdb": ""}, settings=base)


def show(conn, name):
    return conn.execute(f"SHOW {name}").fetchone()[0]


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_options_and_startup_settings_reach_the_server(pgpulse, mode):
    pp = pgpulse(ini(mode), USERS)
    with pp.connect(options="-c statement_timeout=1234 --lock-timeout=2s -c search_path=public,\\ pg_catalog",
                    autocommit=True) as conn:
        assert show(conn, "statement_timeout") == "1234ms"
        assert show(conn, "lock_timeout") == "2s"
        assert show(conn, "search_path") == "public, pg_catalog"
    with RawConn(pp.port, params={"work_mem": "7MB", "my.custom_var": "hello"}) as raw:
        assert raw.query("SHOW work_mem") == [["7MB"]]
        assert raw.query("SELECT current_setting('my.custom_var')") == [["hello"]]


def test_clients_sharing_one_server_each_see_their_own_settings(pgpulse):
    pp = pgpulse(ini("transaction"), USERS)  # one server for everybody
    a = pp.connect(options="-c statement_timeout=1111", autocommit=True)
    b = pp.connect(options="-c statement_timeout=2222 -c work_mem=3MB", autocommit=True)
    plain = pp.connect(autocommit=True)
    for _ in range(3):
        assert show(a, "statement_timeout") == "1111ms"
        assert show(b, "statement_timeout") == "2222ms"
        assert show(b, "work_mem") == "3MB"
        # a client that asked for nothing gets the server's defaults back (RESET)
        assert show(plain, "statement_timeout") == "0"
        assert show(plain, "work_mem") == "4MB"
        assert show(a, "work_mem") == "4MB"
    backends = {r["database"]: r for r in pp.show("SERVERS")}
    assert len([r for r in pp.show("SERVERS") if r["database"] == "appdb"]) == 1, backends


@pytest.mark.parametrize("params", [
    {"statement_timeout": "abc"},
    {"no_such_parameter": "1"},
    {"options": "-c work_mem=-5"},
    {"options": "-c lock_timeout"},
], ids=["invalid-value", "unknown-parameter", "invalid-in-options", "option-without-value"])
@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_a_bad_setting_is_refused_at_login_as_postgresql_refuses_it(pgpulse, pg, mode, params):
    pp = pgpulse(ini(mode), USERS)
    with pytest.raises(ServerError) as direct:
        RawConn(pg.port, params=params)
    with pytest.raises(ServerError) as pooled:
        RawConn(pp.port, params=params)
    d, p = direct.value.fields, pooled.value.fields
    assert (p.get("C"), p.get("M")) == (d.get("C"), d.get("M"))
    assert p.get("S") == "FATAL"
    # the refusal is per login: the same values sent right again are refused again, others log in
    with pytest.raises(ServerError):
        RawConn(pp.port, params=params)
    with RawConn(pp.port) as ok:
        assert ok.query("SELECT 1") == [["1"]]


def test_option_switches_other_than_c_are_refused_naming_the_switch(pgpulse):
    pp = pgpulse(ini(), USERS)
    with pytest.raises(ServerError) as e:
        RawConn(pp.port, params={"options": "-B 100"})
    assert e.value.sqlstate == "42601"
    assert '"-B"' in e.value.fields["M"]


def test_ignore_startup_parameters_still_drops_what_it_names(pgpulse):
    pp = pgpulse(ini(ignore_startup_parameters="extra_float_digits,options"), USERS)
    with RawConn(pp.port, params={"extra_float_digits": "2", "options": "-c work_mem=9MB"}) as raw:
        assert raw.query("SHOW extra_float_digits") == [["1"]]
        assert raw.query("SHOW work_mem") == [["4MB"]]


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_a_reported_setting_is_in_the_hello_as_postgresql_reports_it(pgpulse, pg, mode):
    pp = pgpulse(ini(mode), USERS)
    params = {"default_transaction_read_only": "on"}
    with RawConn(pg.port, params=params) as direct:
        expected = direct.params["default_transaction_read_only"]
    assert expected == "on"
    for _ in range(2):  # the second login is answered from what the pool learned
        with RawConn(pp.port, params=params) as raw:
            assert raw.params["default_transaction_read_only"] == expected
            assert raw.query("SHOW default_transaction_read_only") == [["on"]]


@pytest.fixture
def logged_role(pg):
    """A role whose statements PostgreSQL logs (log_statement = all), so a
    test can count the SETs pgpulse sends for it."""
    with pg.connect(host=pg.socket_dir, autocommit=True) as c:
        c.execute("DROP ROLE IF EXISTS st_logged")
        c.execute("CREATE ROLE st_logged LOGIN PASSWORD 'st_pw'")
        c.execute("ALTER ROLE st_logged SET log_statement = 'all'")
    yield "st_logged"
    with pg.connect(host=pg.socket_dir, autocommit=True) as c:
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'st_logged'")
        c.execute("DROP ROLE IF EXISTS st_logged")


def test_many_clients_with_the_same_settings_cost_one_set_per_server(pgpulse, pg, logged_role):
    pp = pgpulse(ini("transaction", default_pool_size="2"), {**USERS, logged_role: "st_pw"})
    mark = pg.log_mark()
    conns = [pp.connect(user=logged_role, options="-c statement_timeout=5s", autocommit=True)
             for _ in range(12)]
    for _ in range(3):
        for conn in conns:
            assert show(conn, "statement_timeout") == "5s"
    sets = re.findall(r"st_logged@\S+ LOG:  statement: .*set_config", pg.log(since=mark))
    servers = len([r for r in pp.show("SERVERS") if r["user"] == logged_role])
    assert 1 <= len(sets) <= servers, sets
    for conn in conns:
        conn.close()


def test_track_extra_parameters_follows_a_reported_setting_a_client_sets(pgpulse):
    """track_extra_parameters = default_transaction_read_only (a parameter
    PostgreSQL reports): one server for two clients in transaction mode. A's
    SET follows A to every transaction and never leaks to B, whose
    transactions on the same server see the default."""
    pp = pgpulse(ini("transaction", track_extra_parameters="default_transaction_read_only"), USERS)
    a = pp.connect(autocommit=True)
    b = pp.connect(autocommit=True)
    a.execute("SET default_transaction_read_only = on")
    for _ in range(3):
        assert show(b, "default_transaction_read_only") == "off"
        assert show(a, "default_transaction_read_only") == "on"
    a.execute("SET default_transaction_read_only = off")
    assert show(a, "default_transaction_read_only") == "off"
    assert len([r for r in pp.show("SERVERS") if r["database"] == "appdb"]) == 1


def test_track_extra_parameters_refuses_a_read_only_parameter(pgpulse):
    pp = pgpulse(ini("transaction"), USERS)
    with pytest.raises(psycopg.Error, match="server_version is read-only"):
        pp.command("SET track_extra_parameters = 'IntervalStyle, server_version'")
