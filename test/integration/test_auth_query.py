"""auth_user / auth_query / auth_dbname: users that exist only in
PostgreSQL's pg_authid log in through pgpulse, the secret looked up over a
server connection made as auth_user.

The roles made here live only in the scratch cluster (their names start
with aq_); none is in the auth_file, which holds only the auth_user and the
console's admin.  What PostgreSQL itself saw (which role logged in with
which method, which statements auth_user ran) is read from its log.
"""

import os
import re

import psycopg
import pytest

from pgpulse_harness import build_ini, wait_until
from test_auth import PgError, RawClient, raw_login_error
from test_config import line_of, run_bin

AUTH_USERS = {"postgres": "postgres_pw", "admin": "admin_pw"}


def ini(settings=None, dbs=None):
    base = {"listen_addr": "127.0.0.1", "listen_port": "{port}", "unix_socket_dir": "{dir}",
            "auth_file": "{auth_file}", "auth_type": "scram-sha-256", "admin_users": "admin",
            "pool_mode": "transaction", "default_pool_size": "4", "auth_user": "postgres"}
    base.update(settings or {})
    return build_ini(dbs or {"appdb": ""}, settings={k: v for k, v in base.items() if v is not None})


@pytest.fixture
def role(pg):
    """role(name, password, *, md5=False, valid_until=None): a login role
    only PostgreSQL knows, dropped after the test."""
    made = []

    def make(name, password, md5=False, valid_until=None):
        with pg.connect(host=pg.socket_dir, autocommit=True) as c:
            c.execute(f"DROP ROLE IF EXISTS {name}")
            if md5:
                c.execute("SET password_encryption = 'md5'")
            until = f" VALID UNTIL '{valid_until}'" if valid_until else ""
            c.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'{until}")
        made.append(name)
        return name

    yield make
    with pg.connect(host=pg.socket_dir, autocommit=True) as c:
        # connections through pgpulse may still hold the role: end them first
        for name in made:
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
            wait_until(lambda: not c.execute("SELECT 1 FROM pg_stat_activity WHERE usename = %s",
                                             (name,)).fetchall(), 10, f"{name}'s sessions to end")
            c.execute(f"DROP ROLE IF EXISTS {name}")


def whoami(pp, user, password, dbname="appdb"):
    with pp.connect(dbname=dbname, user=user, password=password, autocommit=True) as conn:
        return conn.execute("SELECT current_user").fetchone()[0]


def lookups_in_pg_log(pg, since, role_name):
    """auth_query executions PostgreSQL logged (log_statement = all is set on
    the auth role) since `since`."""
    return len(re.findall(rf"{role_name}@\S+ LOG:  execute <unnamed>: ", pg.log(since=since)))


@pytest.fixture
def logged_auth_role(pg):
    """An unprivileged auth_user, as production setups make it: it may only
    call a SECURITY DEFINER lookup function, and PostgreSQL logs every
    statement it runs (so a test can count lookups)."""
    with pg.connect(host=pg.socket_dir, autocommit=True) as c:
        c.execute("DROP ROLE IF EXISTS aq_auth")
        c.execute("CREATE ROLE aq_auth LOGIN PASSWORD 'aq_auth_pw'")
        c.execute("ALTER ROLE aq_auth SET log_statement = 'all'")
    with pg.connect(host=pg.socket_dir, dbname="appdb", autocommit=True) as c:
        c.execute("""CREATE OR REPLACE FUNCTION public.aq_lookup(i_user text,
                         OUT uname text, OUT phash text) RETURNS record
                     LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
                     $$ SELECT rolname::text, CASE WHEN rolvaliduntil < now() THEN NULL
                                                   ELSE rolpassword END
                        FROM pg_authid WHERE rolname = i_user AND rolcanlogin $$""")
        c.execute("REVOKE ALL ON FUNCTION public.aq_lookup(text) FROM PUBLIC")
        c.execute("GRANT EXECUTE ON FUNCTION public.aq_lookup(text) TO aq_auth")
    yield "aq_auth"
    with pg.connect(host=pg.socket_dir, dbname="appdb", autocommit=True) as c:
        c.execute("DROP FUNCTION IF EXISTS public.aq_lookup(text)")
    with pg.connect(host=pg.socket_dir, autocommit=True) as c:
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'aq_auth'")
        wait_until(lambda: not c.execute("SELECT 1 FROM pg_stat_activity WHERE usename = 'aq_auth'")
                   .fetchall(), 10, "aq_auth's sessions to end")
        c.execute("DROP ROLE IF EXISTS aq_auth")


LOOKUP_FN = "SELECT uname, phash FROM public.aq_lookup($1)"


# ----------------------------------------------------------------- logging in


def test_scram_role_only_in_pg_authid_logs_in_and_reaches_postgres_with_its_own_keys(pgpulse, pg, role):
    name = role("aq_scram", "scram_secret_pw")
    pp = pgpulse(ini(), AUTH_USERS)
    mark = pg.log_mark()
    assert whoami(pp, name, "scram_secret_pw") == name
    # pgpulse knows no password for it: PostgreSQL accepted the keys the client proved
    wait_until(lambda: f'identity="{name}" method=scram-sha-256' in pg.log(since=mark), 5,
               "PostgreSQL's log to show the role's SCRAM login")


def test_md5_role_only_in_pg_authid_logs_in_with_md5(pgpulse, pg):
    # md5user's password is stored as md5 and PostgreSQL's hba asks md5 for it
    pp = pgpulse(ini({"auth_type": "md5"}), AUTH_USERS)
    mark = pg.log_mark()
    with RawClient(pp.port) as c:
        c.login("md5user", "appdb", "md5_pw")
        assert c.auth_codes[0] == 5  # the md5 exchange, against the looked-up hash
        assert c.query("SELECT current_user") == [["md5user"]]
    wait_until(lambda: 'identity="md5user" method=md5' in pg.log(since=mark), 5,
               "PostgreSQL's log to show md5user's md5 login")


@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5", "plain"])
def test_missing_user_expired_password_and_wrong_password_look_the_same(pgpulse, role, auth_type):
    role("aq_known", "right_pw")
    role("aq_expired", "right_pw", valid_until="2000-01-01")
    pp = pgpulse(ini({"auth_type": auth_type}), AUTH_USERS)
    refusals = {}
    for user, password in [("aq_known", "wrong_pw"), ("aq_expired", "right_pw"), ("aq_nobody", "right_pw")]:
        with RawClient(pp.port) as c:
            with pytest.raises(PgError) as info:
                c.login(user, "appdb", password)
            refusals[user] = (c.auth_codes, info.value.sqlstate, info.value.message.replace(user, "U"))
    assert refusals["aq_known"][1] == "28P01"
    assert refusals["aq_known"] == refusals["aq_expired"] == refusals["aq_nobody"], refusals
    # and the right password does log in: the refusals above were not for want of a lookup
    with RawClient(pp.port) as c:
        c.login("aq_known", "appdb", "right_pw")
        assert c.query("SELECT current_user") == [["aq_known"]]


def test_an_empty_secret_is_a_role_without_a_password_not_a_failed_lookup(pgpulse, pg, role):
    # a query that writes "no password" as '' (COALESCE, a users table):
    # PostgreSQL stores PASSWORD '' as no password, and the client must not
    # tell such a role from a missing one or a wrong password
    role("aq_known", "right_pw")
    with pg.connect(host=pg.socket_dir, autocommit=True) as c:
        c.execute("DROP ROLE IF EXISTS aq_nopw")
        c.execute("CREATE ROLE aq_nopw LOGIN")
    try:
        query = "SELECT rolname, COALESCE(rolpassword, '') FROM pg_authid WHERE rolname = $1"
        pp = pgpulse(ini({"auth_query": query}), AUTH_USERS)
        refusals = {}
        for user, password in [("aq_known", "wrong_pw"), ("aq_nopw", ""), ("aq_nopw", "x"), ("aq_nobody", "x")]:
            with RawClient(pp.port) as c:
                with pytest.raises(PgError) as info:
                    c.login(user, "appdb", password)
                refusals[user, password] = (tuple(c.auth_codes), info.value.sqlstate, info.value.message.replace(user, "U"))
        assert len(set(refusals.values())) == 1, refusals
        assert refusals["aq_known", "wrong_pw"][1] == "28P01"
        assert "auth_query" not in pp.log()
    finally:
        with pg.connect(host=pg.socket_dir, autocommit=True) as c:
            c.execute("DROP ROLE IF EXISTS aq_nopw")


@pytest.mark.parametrize("how", ["auth_type", "hba"])
def test_trust_lets_in_a_looked_up_role_without_a_password_and_refuses_a_missing_one(pgpulse, how):
    # trustuser has no password and PostgreSQL's own hba trusts it: a PgBouncer
    # file with trust and auth_query logs it in; a role that does not exist is
    # refused with PostgreSQL's trust wording
    settings = {"auth_type": "trust"} if how == "auth_type" else \
        {"auth_type": "hba", "auth_hba_file": "{dir}/hba.conf"}
    pp = pgpulse(ini(settings), AUTH_USERS, start=False)
    with open(os.path.join(pp.dir, "hba.conf"), "w") as f:
        f.write("host all all 127.0.0.1/32 trust\n")
    pp.start()
    with RawClient(pp.port) as c:
        c.login("trustuser", "appdb")
        assert c.query("SELECT current_user") == [["trustuser"]]
    err = raw_login_error(pp.port, "aq_nobody", "appdb")
    assert (err.sqlstate, err.message) == ("28000", 'role "aq_nobody" does not exist')


def test_password_change_takes_effect_at_the_next_login_after_a_refusal(pgpulse, pg, role):
    name = role("aq_change", "old_pw")
    pp = pgpulse(ini(), AUTH_USERS)
    assert whoami(pp, name, "old_pw") == name
    pg.query(f"ALTER ROLE {name} PASSWORD 'new_pw'")
    # the secret found a moment ago is still trusted (auth_cache_lifetime): the old password works ...
    assert whoami(pp, name, "old_pw") == name
    # ... and the first refusal drops it, so the new password works at the next attempt
    assert raw_login_error(pp.port, name, "appdb", "new_pw").sqlstate == "28P01"
    assert whoami(pp, name, "new_pw") == name
    assert raw_login_error(pp.port, name, "appdb", "old_pw").sqlstate == "28P01"


def test_without_the_cache_a_password_change_takes_effect_at_once(pgpulse, pg, role):
    name = role("aq_nocache", "old_pw")
    pp = pgpulse(ini({"auth_cache_lifetime": "0"}), AUTH_USERS)
    assert whoami(pp, name, "old_pw") == name
    pg.query(f"ALTER ROLE {name} PASSWORD 'new_pw'")
    assert whoami(pp, name, "new_pw") == name
    assert raw_login_error(pp.port, name, "appdb", "old_pw").sqlstate == "28P01"


def test_reload_forgets_looked_up_secrets(pgpulse, pg, role):
    name = role("aq_reload", "old_pw")
    pp = pgpulse(ini(), AUTH_USERS)
    assert whoami(pp, name, "old_pw") == name
    pg.query(f"ALTER ROLE {name} PASSWORD 'new_pw'")
    pp.command("RELOAD")
    assert whoami(pp, name, "new_pw") == name


def test_auth_file_users_are_not_looked_up(pgpulse, pg, logged_auth_role):
    pp = pgpulse(ini({"auth_user": logged_auth_role, "auth_query": LOOKUP_FN}),
                 {"aq_auth": "aq_auth_pw", "admin": "admin_pw", "app": "app_pw"})
    mark = pg.log_mark()
    assert whoami(pp, "app", "app_pw") == "app"
    assert lookups_in_pg_log(pg, mark, logged_auth_role) == 0


# ----------------------------------------------------------------- where the lookup runs


def test_per_database_auth_user_and_auth_query(pgpulse, pg, role, logged_auth_role):
    name = role("aq_perdb", "perdb_pw")
    dbs = {"appdb": f"auth_user={logged_auth_role} auth_query='{LOOKUP_FN}'", "plaindb": "dbname=appdb"}
    pp = pgpulse(ini({"auth_user": None}, dbs), {"aq_auth": "aq_auth_pw", "admin": "admin_pw"})
    mark = pg.log_mark()
    assert whoami(pp, name, "perdb_pw", dbname="appdb") == name
    wait_until(lambda: lookups_in_pg_log(pg, mark, logged_auth_role) == 1, 5,
               "PostgreSQL's log to show the lookup made as aq_auth")
    # a database without auth_user (and no global one) knows only the auth_file
    err = raw_login_error(pp.port, name, "plaindb", "perdb_pw")
    assert err.sqlstate == "28P01"


def test_auth_query_or_auth_dbname_with_no_auth_user_to_run_it_is_a_warning(pgpulse, logged_auth_role):
    """No silent skip: without an auth_user (the entry's own or the global
    one) nothing is ever looked up, so an auth_query or auth_dbname written
    there is named at start and at each reload. One that some database's
    auth_user does use says nothing."""
    dbs = {"appdb": f"auth_user={logged_auth_role} auth_query='{LOOKUP_FN}'",
           "orphan": "dbname=appdb auth_query='SELECT 1' auth_dbname=appdb"}
    pp = pgpulse(ini({"auth_user": None, "auth_dbname": "appdb"}, dbs),
                 {"aq_auth": "aq_auth_pw", "admin": "admin_pw"})
    orphan = line_of(pp.ini_path, "orphan =")
    expected = [f"{pp.ini_path}:{orphan}: database \"orphan\": {key} is not in effect: no auth_user "
                "(in this entry or global) runs it" for key in ("auth_query", "auth_dbname")]
    for how in ("start", "RELOAD"):
        mark = pp.log_mark()
        if how == "RELOAD":
            assert pp.command("RELOAD") == "RELOAD"
            pp.wait_log(re.escape(f"configuration reloaded from {pp.ini_path}"), since=mark)
            mark_start = mark
        else:
            mark_start = 0
        for line in expected:
            pp.wait_log(re.escape(line), since=mark_start)
        # the global auth_dbname serves appdb's auth_user: in effect, no word about it
        assert "auth_dbname is not in effect" not in pp.log(since=mark_start).replace(expected[1], "")
        assert "appdb\": auth_query" not in pp.log(since=mark_start)
    # the [databases] keys themselves are known (PgBouncer's per-database auth_user & co.)
    assert "unknown parameter" not in pp.log()
    # with no auth_user anywhere, the global ones are named too
    pp2 = pgpulse(ini({"auth_user": None, "auth_dbname": "appdb", "auth_query": LOOKUP_FN}),
                  {"admin": "admin_pw"})
    for key in ("auth_query", "auth_dbname"):
        pp2.wait_log(re.escape(f"{pp2.ini_path}:{line_of(pp2.ini_path, key + ' =')}: {key} is not in effect: "
                               "no auth_user (global or in a [databases] entry) runs it"))


def test_auth_dbname_runs_the_lookup_in_that_database(pgpulse, pg, role):
    name = role("aq_authdb", "authdb_pw")
    dbs = {"appdb": "", "lookupdb": "dbname=postgres"}
    pp = pgpulse(ini({"auth_dbname": "lookupdb"}, dbs), AUTH_USERS)
    assert whoami(pp, name, "authdb_pw") == name
    pools = {(p["database"], p["user"]) for p in pp.show("POOLS")}
    assert ("lookupdb", "postgres") in pools
    assert ("appdb", "postgres") not in pools


@pytest.mark.parametrize("where", ["global", "database"])
@pytest.mark.parametrize("name", ["pgbouncer", "pgpulse"])
def test_auth_dbname_naming_the_admin_console_stops_startup(pgpulse, pgpulse_bin, where, name):
    # as in PgBouncer: the console has no server to run a lookup on, so such a
    # file is refused at start, not by every login that needs a lookup
    if where == "global":
        text, says = ini({"auth_dbname": name}), "auth_dbname"
    else:
        text, says = ini(dbs={"appdb": f"auth_dbname={name}"}), 'database "appdb": auth_dbname'
    pp = pgpulse(text, AUTH_USERS, start=False)
    r = run_bin(pgpulse_bin, pp.ini_path)
    assert r.returncode == 1, r.stderr
    line = line_of(pp.ini_path, "auth_dbname =" if where == "global" else "appdb =")
    assert (f'{pp.ini_path}:{line}: {says}: "{name}" is the admin console, which cannot run auth_query'
            in r.stderr), r.stderr


def test_a_failing_auth_query_is_a_clear_error_and_a_log_line(pgpulse, role):
    name = role("aq_badquery", "pw")
    pp = pgpulse(ini({"auth_query": "SELECT no_such_column FROM pg_authid WHERE rolname = $1"}), AUTH_USERS)
    mark = pp.log_mark()
    err = raw_login_error(pp.port, name, "appdb", "pw")
    assert err.sqlstate == "28000"
    assert "auth_query" in err.message
    pp.wait_log(r'auth_query for user "aq_badquery" failed: column "no_such_column" does not exist', since=mark)


def test_auth_user_that_cannot_log_in_fails_the_login_clearly(pgpulse, role):
    name = role("aq_nologin", "pw")
    pp = pgpulse(ini(), {"postgres": "wrong_pw", "admin": "admin_pw"})
    mark = pp.log_mark()
    err = raw_login_error(pp.port, name, "appdb", "pw")
    assert err.sqlstate == "28000" and "auth_query" in err.message
    pp.wait_log(r'auth_query for user "aq_nologin" failed: could not log in as auth_user', since=mark)


def test_user_name_reaches_the_query_as_a_value_not_as_sql(pgpulse, pg, logged_auth_role):
    pp = pgpulse(ini({"auth_user": logged_auth_role, "auth_query": LOOKUP_FN}),
                 {"aq_auth": "aq_auth_pw", "admin": "admin_pw"})
    mark = pg.log_mark()
    err = raw_login_error(pp.port, "x' OR rolname = 'postgres", "appdb", "postgres_pw")
    assert err.sqlstate == "28P01"
    # PostgreSQL ran the query once, with the whole name as its parameter
    wait_until(lambda: "parameters: $1 = 'x'' OR rolname = ''postgres'" in pg.log(since=mark), 5,
               "PostgreSQL's log to show the name passed as a parameter")
    assert lookups_in_pg_log(pg, mark, logged_auth_role) == 1


def test_hba_password_lines_look_users_up_too(pgpulse, role):
    name = role("aq_hba", "hba_pw")
    pp = pgpulse(ini({"auth_type": "hba", "auth_hba_file": "{dir}/hba.conf"}), AUTH_USERS, start=False)
    with open(os.path.join(pp.dir, "hba.conf"), "w") as f:
        f.write("host all all 127.0.0.1/32 scram-sha-256\n")
    pp.start()
    assert whoami(pp, name, "hba_pw") == name
    assert raw_login_error(pp.port, name, "appdb", "wrong_pw").sqlstate == "28P01"


# ----------------------------------------------------------------- many at once


def test_login_storm_for_one_user_makes_one_lookup(pgpulse, pg, role, logged_auth_role):
    name = role("aq_storm", "storm_pw")
    pp = pgpulse(ini({"auth_user": logged_auth_role, "auth_query": LOOKUP_FN, "max_client_conn": "600"}),
                 {"aq_auth": "aq_auth_pw", "admin": "admin_pw"}, nofile=(2048, 2048))
    mark = pg.log_mark()
    clients = [RawClient(pp.port) for _ in range(500)]
    try:
        # every startup is in before any password is answered: they all log in "at once"
        for c in clients:
            c.send_startup({"user": name, "database": "appdb"})
        for c in clients:
            c.login_continue(name, "storm_pw")
    finally:
        for c in clients:
            c.close()
    assert lookups_in_pg_log(pg, mark, logged_auth_role) == 1


def test_a_hanging_lookup_blocks_neither_other_logins_nor_other_lookups(pgpulse, pg, role):
    role("aq_hangs", "pw")
    quick = role("aq_quick", "quick_pw")
    # aq_hangs' lookup sleeps in PostgreSQL; everyone else's answers at once
    query = ("SELECT rolname, rolpassword FROM pg_authid, "
             "pg_sleep(CASE WHEN $1 = 'aq_hangs' THEN 600 ELSE 0 END) WHERE rolname = $1")
    pp = pgpulse(ini({"auth_query": query}), dict(AUTH_USERS, app="app_pw"))
    hung = RawClient(pp.port)
    try:
        hung.send_startup({"user": "aq_hangs", "database": "appdb"})
        wait_until(lambda: pg.query("SELECT 1 FROM pg_stat_activity WHERE state = 'active' "
                                    "AND query LIKE '%pg_sleep(CASE%'"), 10, "the hanging lookup to run")
        # while it hangs: an auth_file user, another looked-up user and the console are served
        assert whoami(pp, "app", "app_pw") == "app"
        assert whoami(pp, quick, "quick_pw") == quick
        assert any(p["user"] == "postgres" for p in pp.show("POOLS"))
    finally:
        hung.close()
        pg.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(CASE%' "
                 "AND pid <> pg_backend_pid()")


def test_a_lookup_postgres_never_answers_gives_its_server_back(pgpulse, role):
    name = role("aq_hung", "pw")
    slow = "SELECT rolname, rolpassword FROM pg_authid, pg_sleep(600) WHERE rolname = $1"
    pp = pgpulse(ini({"auth_query": slow, "client_login_timeout": "1"}), AUTH_USERS)
    err = raw_login_error(pp.port, name, "appdb", "pw")
    assert err.sqlstate == "08P01" and "client_login_timeout" in err.message
    # the server that ran the lookup is closed, not left busy for good
    pp.wait_log(r"closing because: auth_query did not finish within client_login_timeout")
    wait_until(lambda: not [s for s in pp.show("SERVERS") if s["user"] == "postgres"], 5,
               "the lookup's server to be gone")
