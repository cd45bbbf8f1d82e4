"""Startup settings against a direct PostgreSQL login, case by case (from a
hostile review of the first commit): custom names that are keywords, long
options naming tracked parameters, reported values in the hello whatever
the server already had, parameters only a backend's start takes, PAUSE,
reset queries of any spelling, ignore_startup_parameters and tracking.

What a pooled session cannot match (a client's own RESET returns to the
server's default, not its startup value; in transaction mode a client's
own SET or RESET stays on the server for the next client, settings
included) is stated in doc/config.md, Startup parameters."""

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


def test_a_custom_setting_named_with_a_reserved_word_does_not_break_other_clients(pgpulse, pg):
    """PostgreSQL accepts all.x as a custom setting at login; pgpulse later
    sends `RESET all.x;` (the name spliced unquoted), a syntax error that
    kills the next client linked to that server."""
    params = {"all.x": "1"}
    with RawConn(pg.port, params=params) as direct:
        assert direct.query("SELECT current_setting('all.x')") == [["1"]]
    pp = pgpulse(ini("transaction"), USERS)
    with RawConn(pp.port, params=params) as a:
        assert a.query("SELECT current_setting('all.x')") == [["1"]]
        with RawConn(pp.port) as b:  # no settings: its link RESETs all.x
            assert b.query("SELECT 1") == [["1"]]


def test_hello_reports_a_setting_the_server_already_had(pgpulse, pg):
    """B's set differs from A's only in work_mem: the sync sends only
    work_mem, PostgreSQL reports nothing for default_transaction_read_only,
    and B's hello (and every later login with B's set) says off."""
    a_params = {"default_transaction_read_only": "on"}
    b_params = {"default_transaction_read_only": "on", "work_mem": "5MB"}
    with RawConn(pg.port, params=b_params) as direct:
        assert direct.params["default_transaction_read_only"] == "on"
    pp = pgpulse(ini("transaction"), USERS)
    with RawConn(pp.port, params=a_params) as a:
        assert a.params["default_transaction_read_only"] == "on"
        with RawConn(pp.port, params=b_params) as b:
            assert b.query("SHOW default_transaction_read_only") == [["on"]]
            assert b.params["default_transaction_read_only"] == "on"


def test_long_option_of_a_tracked_parameter_is_tracked(pgpulse, pg):
    """--application-name=x is application_name to PostgreSQL (it reads '-'
    as '_'); pgpulse checks the tracked name before folding, so it becomes
    an untracked setting: the hello and later clients disagree."""
    params = {"options": "--application-name=fromopts"}
    with RawConn(pg.port, params=params) as direct:
        assert direct.params["application_name"] == "fromopts"
    pp = pgpulse(ini("transaction"), USERS)
    with RawConn(pp.port, params=params) as raw:
        assert raw.query("SHOW application_name") == [["fromopts"]]
        assert raw.params.get("application_name") == "fromopts"
    with RawConn(pp.port, params={"application_name": "plain"}) as other:
        assert other.query("SHOW application_name") == [["plain"]]


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_backend_only_parameter_is_a_clear_login_error(pgpulse, mode):
    pp = pgpulse(ini(mode), USERS)
    with pytest.raises(ServerError) as e:
        RawConn(pp.port, params={"ignore_system_indexes": "on"}, timeout=5)
    assert e.value.fields.get("S") == "FATAL"
    with RawConn(pp.port) as ok:
        assert ok.query("SELECT 1") == [["1"]]


def test_a_set_relearned_outside_a_hello_keeps_what_postgresql_reported(pgpulse, pg):
    """A's set is evicted from the pool's 8 known sets; A's next query
    re-learns it through an ordinary link, whose c->hello_extra is NULL, so
    the pool now believes the set made PostgreSQL report nothing and the
    next login with it is told default_transaction_read_only=off."""
    params = {"default_transaction_read_only": "on"}
    with RawConn(pg.port, params=params) as direct:
        assert direct.params["default_transaction_read_only"] == "on"
    pp = pgpulse(ini("transaction"), USERS)
    with RawConn(pp.port, params=params) as a:
        assert a.params["default_transaction_read_only"] == "on"
        for i in range(8):  # eight other sets push A's out
            with RawConn(pp.port, params={"work_mem": f"{i + 1}MB"}) as other:
                assert other.query("SELECT 1") == [["1"]]
        assert a.query("SHOW default_transaction_read_only") == [["on"]]  # re-learned here
        with RawConn(pp.port, params=params) as c:
            assert c.query("SHOW default_transaction_read_only") == [["on"]]
            assert c.params["default_transaction_read_only"] == "on"


def _login(port, params, name):
    try:
        with RawConn(port, params=params, timeout=5) as raw:
            if name is None:
                return ("ok", raw.query("SELECT 1")[0][0])
            return ("ok", raw.query(f"SHOW {name}")[0][0], raw.params.get(name))
    except ServerError as e:
        return ("error", e.value.sqlstate if hasattr(e, "value") else e.sqlstate, e.fields.get("M"))


@pytest.mark.parametrize("params,name", [
    ({"transaction_isolation": "serializable"}, "transaction_isolation"),
    ({"transaction_read_only": "on"}, "transaction_read_only"),
    ({"session_authorization": "app"}, "session_authorization"),
    ({"log_statement": "all"}, "log_statement"),
    ({"options": "-c client_encoding=LATIN1"}, "client_encoding"),
    ({"options": "-c DateStyle=German"}, "DateStyle"),
    ({"options": "--client-encoding=LATIN1"}, "client_encoding"),
    ({"options": "-c search_path=a\\,b"}, "search_path"),
    ({"options": "-c work_mem=5MB", "work_mem": "6MB"}, "work_mem"),
    ({"shared_buffers": "1MB"}, "shared_buffers"),
    ({"Work_Mem": "6MB"}, "work_mem"),
    ({"work-mem": "6MB"}, "work_mem"),
    ({"app." + "x" * 70: "1"}, None),
])
@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_login_matches_a_direct_login(pgpulse, pg, mode, params, name):
    pp = pgpulse(ini(mode), USERS)
    assert _login(pp.port, params, name) == _login(pg.port, params, name)


def test_login_with_new_settings_during_pause(pgpulse):
    pp = pgpulse(ini("transaction"), USERS)
    with RawConn(pp.port) as warm:
        warm.query("SELECT 1")
    pp.command("PAUSE")
    try:
        with RawConn(pp.port, timeout=5) as plain:
            assert plain.params
        with RawConn(pp.port, params={"work_mem": "9MB"}, timeout=5) as raw:
            assert raw.params
    finally:
        pp.command("RESUME")


def test_a_reset_query_spelled_differently_still_forgets_the_settings(pgpulse):
    """resets_every_setting() looks for the substrings "discard all" /
    "reset all": `DISCARD  ALL` (two spaces) clears the server but
    s->settings still names A's set, so B (same set) gets no set_config."""
    pp = pgpulse(ini("session", server_reset_query="DISCARD  ALL"), USERS)
    params = {"statement_timeout": "1111"}
    with RawConn(pp.port, params=params) as a:
        assert a.query("SHOW statement_timeout") == [["1111ms"]]
    with RawConn(pp.port, params=params) as b:
        assert b.query("SHOW statement_timeout") == [["1111ms"]]


def test_admin_console_ignores_settings_and_a_replication_login_gets_postgresqls_answer(pgpulse):
    pp = pgpulse(ini("transaction"), USERS)
    with RawConn(pp.port, user="admin", password="admin_pw", database="pgpulse",
                 params={"options": "-c work_mem=5MB", "statement_timeout": "abc"}) as adm:
        assert adm.params is not None
    # app has no REPLICATION attribute: PostgreSQL itself refuses its walsender
    with pytest.raises(ServerError) as e:
        RawConn(pp.port, params={"replication": "database", "work_mem": "5MB"})
    assert e.value.sqlstate == "42501"


def test_ignore_startup_parameters_does_not_drop_a_tracked_parameter(pgpulse):
    """Before 301e467 (and in PgBouncer) a tracked parameter is tracked
    whatever ignore_startup_parameters says; take_setting() now checks the
    ignore list first and drops it."""
    pp = pgpulse(ini("transaction", ignore_startup_parameters="application_name,extra_float_digits"), USERS)
    with RawConn(pp.port, params={"application_name": "mine"}) as raw:
        assert raw.query("SHOW application_name") == [["mine"]]


