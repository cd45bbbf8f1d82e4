"""auth_query under faults and hostile clients: lookups that end inside a
server close or a failed connect, a RELOAD that removes the auth database,
clients of auth_user that leave session state behind, non-ASCII names,
per-database queries sharing an auth database, shutdown with lookups in
flight.  Found by a hostile review of the first auth_query commit; each
test failed there (the use-after-free ones under AddressSanitizer, which the
suite's sanitizer run reports at teardown).

Not tested as faults, because PostgreSQL behaves the same way: a role whose
VALID UNTIL has passed is offered what a missing role is offered (the mock
salt, and SCRAM under auth_type = md5), as with PostgreSQL's default
password_encryption."""

import os
import time

import pytest

from pgpulse_harness import build_ini, wait_until
from test_auth import PgError, RawClient, raw_login_error
from test_auth_query import AUTH_USERS, LOOKUP_FN, ini, logged_auth_role, role  # noqa: F401 (fixtures)


def _active_backends(pg, needle):
    with pg.connect(host=pg.socket_dir, autocommit=True) as c:
        return c.execute("SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
                         (f"%{needle}%",)).fetchall()


# ------------------------------------------------------------------ use after free


def test_lookups_ending_inside_a_server_close_are_each_answered_once(pgpulse, pg, role):
    """The janitor closes a lookup's server past client_login_timeout; the
    close opens a replacement connection whose connect fails at once (a unix
    socket that is gone), which fails the pool's queued lookups too, all
    inside the janitor's walk of the lookups: each is answered once, on the
    next loop turn, and nothing is freed under a walk."""
    role("aq_uaf_a", "pw")
    role("aq_uaf_b", "pw")
    slow = "SELECT rolname, rolpassword FROM pg_authid, pg_sleep(600) WHERE rolname = $1"
    settings = {"auth_query": slow, "default_pool_size": "1", "client_login_timeout": "0",
                "log_connections": "1"}
    pp = pgpulse(ini(settings), AUTH_USERS)
    a = RawClient(pp.port)
    b = None
    try:
        a.send_startup({"user": "aq_uaf_a", "database": "appdb"})
        # lookup A runs on the pool's only server and hangs
        wait_until(lambda: _active_backends(pg, "pg_sleep(600)"), 10, "lookup A to run in PostgreSQL")
        started = time.monotonic()
        wait_until(lambda: time.monotonic() - started > 1.5, 5, "lookup A to be older than 1 s")
        mark = pp.log_mark()
        b = RawClient(pp.port)  # its client_login_timeout counts from here
        b.send_startup({"user": "aq_uaf_b", "database": "appdb"})
        # lookup B is queued behind it (same pool, no second server)
        pp.wait_log(r"login attempt: db=appdb user=aq_uaf_b ", since=mark)
        # RELOAD: lookups now time out after 1 s (A's has, B's client is younger),
        # and the database moved to a unix socket that does not exist: the
        # connection opened for B fails inside connect()
        dead = os.path.join(pp.dir, "no-such-socket-dir")
        settings["client_login_timeout"] = "1"
        pp.write_config(ini(settings, {"appdb": f"host={dead} port=5432 dbname=appdb"}))
        pp.reload()
        pp.wait_log(r"auth_query did not finish within client_login_timeout", since=mark)
        with pytest.raises((PgError, ConnectionError, OSError)):
            b.login_continue("aq_uaf_b", "pw")
    finally:
        a.close()
        if b:
            b.close()
        for (pid,) in _active_backends(pg, "pg_sleep(600)"):
            pg.query(f"SELECT pg_terminate_backend({pid})")
    # a sanitizer report (use after free) fails the test at teardown
    assert pp.running, "pgpulse died:\n" + pp.log()[-3000:]


# ------------------------------------------------------------------ session state and encodings


@pytest.mark.parametrize("auth_query", [None, LOOKUP_FN], ids=["default_query", "documented_definer_function"])
def test_a_client_of_auth_user_cannot_shadow_pg_authid_for_a_lookup(pgpulse, pg, role, logged_auth_role,
                                                                         auth_query):
    """A TEMP table named pg_authid is searched before pg_catalog when
    search_path does not name pg_temp. Were lookups run on servers that
    clients logging in as auth_user share, such a client could make the next
    lookup read its table and log in as anyone: lookups have a pool of their
    own (pool.for_lookups) that no client ever gets a server from."""
    victim = role("aq_victim", "victim_pw")
    pp = pgpulse(ini({"auth_user": logged_auth_role, "default_pool_size": "1", "auth_query": auth_query}),
                 {"aq_auth": "aq_auth_pw", "admin": "admin_pw"})
    # the victim's own connection: its pool now has a server logged in as it.
    # (The default auth_query needs pg_authid, which aq_auth may not read: so the
    # victim's first login goes through a temporarily privileged aq_auth.)
    pg.query("ALTER ROLE aq_auth SUPERUSER")
    with RawClient(pp.port) as v:
        v.login(victim, "appdb", "victim_pw")
        assert v.query("SELECT current_user") == [[victim]]
    pg.query("ALTER ROLE aq_auth NOSUPERUSER")
    # the attacker knows only auth_user's password; aq_auth is unprivileged now
    with RawClient(pp.port) as a:
        a.login("aq_auth", "appdb", "aq_auth_pw")
        a.query("CREATE TEMP TABLE pg_authid AS SELECT 'aq_victim'::name AS rolname, "
                "'attacker_pw'::text AS rolpassword, NULL::timestamptz AS rolvaliduntil, "
                "true AS rolcanlogin")
    # a wrong password drops the victim's cached secret: the next login looks it up again
    assert raw_login_error(pp.port, victim, "appdb", "nope").sqlstate == "28P01"
    # the lookup runs on aq_auth's only server, the one with the temp table
    with RawClient(pp.port) as c:
        try:
            c.login(victim, "appdb", "attacker_pw")
        except PgError:
            return  # refused: not vulnerable
        who = c.query("SELECT current_user, session_user")
    pytest.fail(f"logged in as {victim} with the attacker's password; the session is {who}")


def test_non_ascii_user_names_are_looked_up_byte_for_byte(pgpulse, pg, role):
    """PostgreSQL compares the startup packet's user name with rolname byte
    for byte; a name sent as a parameter in another client_encoding would
    be re-encoded and not found. Here a LATIN1 client of auth_user's own
    pool leaves that encoding behind on its servers, and the role's owner
    must still get in with the right password."""
    name = role('"aq_jürgen"', "pw").strip('"')
    pp = pgpulse(ini({"default_pool_size": "1", "auth_cache_lifetime": "0"}), AUTH_USERS)
    with RawClient(pp.port) as c:  # control: on a fresh server the name is found
        c.login(name, "appdb", "pw")
    # a client of the auth pool (auth_user is postgres here) that uses LATIN1
    with RawClient(pp.port) as c:
        c.login("postgres", "appdb", "postgres_pw", extra={"client_encoding": "LATIN1"})
        assert c.query("SHOW client_encoding") == [["LATIN1"]]
    with RawClient(pp.port) as c:
        try:
            c.login(name, "appdb", "pw")
        except PgError as e:
            pytest.fail(f"{name} refused with the right password: {e.sqlstate} {e.message}")
        assert c.query("SELECT current_user") == [[name]]


def test_a_lookup_begun_while_its_pool_fails_is_answered_not_lost(pgpulse, role):
    """Beginning a lookup closes an expired idle server; its replacement's
    connect fails at once and fails the pool, lookup included, while the
    lookup is being begun: it is answered (an error), not lost or used after
    being freed. The idle server is expired by a RELOAD that moves the
    database to a unix socket that does not exist; the janitor would close
    it within 200 ms, so the login is tried right after the reload, a few
    times."""
    name = role("aq_uaf_begin", "pw")
    good = ini({"auth_cache_lifetime": "0", "log_connections": "1"})
    pp = pgpulse(good, AUTH_USERS)
    dead = os.path.join(pp.dir, "no-such-socket-dir")
    bad = ini({"auth_cache_lifetime": "0", "log_connections": "1"},
              {"appdb": f"host={dead} port=5432 dbname=appdb"})
    for _ in range(10):
        pp.write_config(good)
        mark = pp.log_mark()
        pp.reload()
        pp.wait_log(r"configuration reloaded", since=mark)
        # a lookup leaves an idle server of (appdb, postgres) behind (once the
        # last failure is past server_login_retry; until then it is refused at once)
        with RawClient(pp.port) as c:
            try:
                c.login(name, "appdb", "pw")
            except PgError as e:
                assert e.sqlstate == "28000"
        with RawClient(pp.port) as c:
            pp.write_config(bad)
            mark = pp.log_mark()
            pp.reload()
            pp.wait_log(r"configuration reloaded", since=mark)
            with pytest.raises((PgError, ConnectionError, OSError)):
                c.login(name, "appdb", "pw")
        if "AddressSanitizer" in pp.log():
            break
    # a sanitizer report (use after free) fails the test at teardown


def test_shutdown_and_clients_leaving_while_lookups_run_or_wait(pgpulse, pg, role):
    """A client that leaves while its lookup runs,
    another whose lookup is queued, then SIGINT with a lookup running: no
    sanitizer report, no leak."""
    role("aq_sd_a", "pw")
    role("aq_sd_b", "pw")
    role("aq_sd_c", "pw")
    slow = "SELECT rolname, rolpassword FROM pg_authid, pg_sleep(600) WHERE rolname = $1"
    pp = pgpulse(ini({"auth_query": slow, "default_pool_size": "1", "log_connections": "1"}), AUTH_USERS)
    try:
        a = RawClient(pp.port)
        a.send_startup({"user": "aq_sd_a", "database": "appdb"})
        wait_until(lambda: _active_backends(pg, "pg_sleep(600)"), 10, "lookup A to run")
        mark = pp.log_mark()
        b = RawClient(pp.port)
        b.send_startup({"user": "aq_sd_b", "database": "appdb"})
        pp.wait_log(r"login attempt: db=appdb user=aq_sd_b ", since=mark)
        b.close()  # queued lookup loses its only waiter
        a.close()  # running lookup loses its only waiter
        c = RawClient(pp.port)
        c.send_startup({"user": "aq_sd_c", "database": "appdb"})
        pp.wait_log(r"login attempt: db=appdb user=aq_sd_c ", since=mark)
        pp.stop()
        c.close()
    finally:
        for (pid,) in _active_backends(pg, "pg_sleep(600)"):
            pg.query(f"SELECT pg_terminate_backend({pid})")
    assert "AddressSanitizer" not in pp.log() and "LeakSanitizer" not in pp.log(), pp.log()[-4000:]


def test_a_queued_lookup_of_a_removed_auth_database_fails(pgpulse, pg, role):
    """A lookup queued on the auth pool when RELOAD removes the auth
    database can never get a server: it fails (the janitor sees the removal),
    so the login ends with an error even with client_login_timeout = 0."""
    role("aq_rm_a", "pw")
    role("aq_rm_b", "pw")
    slowish = "SELECT rolname, rolpassword FROM pg_authid, pg_sleep(2) WHERE rolname = $1"
    settings = {"auth_query": slowish, "default_pool_size": "1", "client_login_timeout": "0",
                "auth_dbname": "lookupdb", "log_connections": "1"}
    pp = pgpulse(ini(settings, {"appdb": "", "lookupdb": "dbname=postgres"}), AUTH_USERS)
    a = RawClient(pp.port)
    b = None
    try:
        a.send_startup({"user": "aq_rm_a", "database": "appdb"})
        wait_until(lambda: _active_backends(pg, "pg_sleep(2)"), 10, "lookup A to run")
        mark = pp.log_mark()
        b = RawClient(pp.port, timeout=15)
        b.send_startup({"user": "aq_rm_b", "database": "appdb"})
        pp.wait_log(r"login attempt: db=appdb user=aq_rm_b ", since=mark)
        pp.write_config(ini(settings, {"appdb": ""}))
        pp.reload()
        pp.wait_log(r"configuration reloaded", since=mark)
        # A's lookup ends within 2 s; B must then be told something
        try:
            b.login_continue("aq_rm_b", "pw")
        except PgError:
            pass
        except (TimeoutError, OSError) as e:
            pytest.fail(f"B's login still hangs 15 s after the auth database was removed ({e!r})")
    finally:
        a.close()
        if b:
            b.close()


def test_each_databases_auth_query_has_its_own_answers(pgpulse, role):
    """Two databases that look users up in the same auth_dbname with
    different auth_query must not share answers (cache or in-flight
    lookup): `restricted` lets nobody in (its auth_query finds no row), and
    a user who just logged in to appdb must still be refused there."""
    name = role("aq_shared", "pw")
    dbs = {"appdb": "", "lookupdb": "dbname=postgres",
           "restricted": "dbname=appdb auth_query='SELECT rolname, rolpassword FROM pg_authid WHERE false AND rolname = $1'"}
    pp = pgpulse(ini({"auth_dbname": "lookupdb"}, dbs), AUTH_USERS)
    # control: on its own, `restricted` refuses the user
    assert raw_login_error(pp.port, name, "restricted", "pw").sqlstate == "28P01"
    with RawClient(pp.port) as c:
        c.login(name, "appdb", "pw")
    with RawClient(pp.port) as c:
        try:
            c.login(name, "restricted", "pw")
        except PgError:
            return
    pytest.fail("logged in to `restricted`, whose auth_query knows nobody, with appdb's cached secret")
