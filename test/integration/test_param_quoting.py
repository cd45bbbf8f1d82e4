"""A client's startup parameters reach its server byte for byte, and never as
SQL: pgpulse applies them with its own SET, which must mean the same whatever
an earlier client left on that server connection.

The trap: a client in transaction mode runs `SET standard_conforming_strings
= off` and leaves; the pool's one server keeps that setting, and the next
client's application_name is SET on it.  With backslashes read as escapes,
a quoting that only doubles quotes lets `\\'` end the literal early.
"""

import socket
import uuid

import psycopg
import pytest

from pgpulse_harness import query_message, raw_startup, read_message

USERS = {"app": "app_pw"}

INI = """\
[databases]
appdb = host={pg_host} port={pg_port} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
auth_type = scram-sha-256
auth_file = {auth_file}
pool_mode = transaction
default_pool_size = 1
"""

# PostgreSQL keeps NAMEDATALEN - 1 bytes of an application_name
APP_NAME_MAX = 63


def leave_server_with_backslash_escapes(pp):
    """A client sets standard_conforming_strings = off and goes: the pool's
    one server now reads '\\' in a plain literal as an escape."""
    with pp.connect(autocommit=True, prepare_threshold=None) as c:
        c.execute("SET standard_conforming_strings = off")
        assert c.execute("SHOW standard_conforming_strings").fetchone() == ("off",)
    assert len(pp.pg.backends(dbname="appdb", user="app")) == 1


def app_name_seen(pp, pg, value):
    """Connect with application_name = value on the server left with
    standard_conforming_strings off; return (SHOW application_name through
    pgpulse, pg_stat_activity's application_name, the client's
    standard_conforming_strings)."""
    with pp.connect(autocommit=True, prepare_threshold=None, application_name=value) as c:
        shown = c.execute("SHOW application_name").fetchone()[0]
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        scs = c.execute("SHOW standard_conforming_strings").fetchone()[0]
        (stat,) = pg.query("SELECT application_name FROM pg_stat_activity WHERE pid = %s", (pid,))
    return shown, stat[0], scs


@pytest.fixture
def pwned_table(pg):
    """A table name the injection would create; dropped afterwards in case it did."""
    name = "pwned_" + uuid.uuid4().hex[:8]
    yield name
    pg.query(f"DROP TABLE IF EXISTS {name}", dbname="appdb")


def test_application_name_with_a_backslash_quote_does_not_run_as_sql(pgpulse, pg, pwned_table):
    pp = pgpulse(INI, USERS)
    leave_server_with_backslash_escapes(pp)
    value = f"x\\'; CREATE TABLE {pwned_table}(i int); --"
    try:
        shown, stat, _ = app_name_seen(pp, pg, value)
    except psycopg.Error as e:
        shown = stat = f"client failed: {e}"
    created = pg.query("SELECT to_regclass(%s) IS NOT NULL", (pwned_table,), dbname="appdb")[0][0]
    assert not created, "the application_name ran as SQL inside pgpulse's SET"
    assert shown == value
    assert stat == value


@pytest.mark.parametrize("value", [
    "C:\\temp\\new",
    "ends in a backslash \\",
    "it's quoted",
    "\\\\server\\share 'x' \\' \\\\'",
], ids=["windows_path", "trailing_backslash", "quote", "mixed"])
def test_application_name_with_backslashes_and_quotes_arrives_byte_exact(pgpulse, pg, value):
    pp = pgpulse(INI, USERS)
    leave_server_with_backslash_escapes(pp)
    shown, stat, scs = app_name_seen(pp, pg, value)
    assert shown == value
    assert stat == value
    assert scs == "on", "the client's own standard_conforming_strings was not restored"


def test_a_2000_byte_application_name_is_applied_as_postgresql_applies_it(pgpulse, pg):
    # PostgreSQL keeps NAMEDATALEN - 1 bytes of an application_name, from a
    # startup packet or a SET alike; pgpulse must hand it all the 2,000.
    value = ("ab\\c'd" * 400)[:2000]
    with pg.connect(dbname="appdb", user="app", autocommit=True, application_name=value) as direct:
        expected = direct.execute("SHOW application_name").fetchone()[0]
    assert expected == value[:APP_NAME_MAX]
    pp = pgpulse(INI, USERS)
    leave_server_with_backslash_escapes(pp)
    shown, stat, _ = app_name_seen(pp, pg, value)
    assert shown == expected
    assert stat == expected


def test_application_name_bytes_cannot_hide_a_quote_from_a_server_left_in_sjis(pgpulse, pg,
                                                                               pwned_table):
    # In SJIS, 0x95 0x5c is one character: a SET carrying those bytes raw
    # would let the 0x95 swallow the backslash that escapes the next one.
    # pgpulse writes such bytes as \xHH, so the SET is plain ASCII.
    pp = pgpulse(INI.replace("scram-sha-256", "trust"), USERS)
    with pp.connect(autocommit=True, prepare_threshold=None, client_encoding="SJIS") as c:
        assert c.execute("SHOW client_encoding").fetchone() == ("SJIS",)
    value = b"\x95\\'; CREATE TABLE " + pwned_table.encode() + b"(i int); --"
    with socket.create_connection(("127.0.0.1", pp.port), timeout=10) as s:
        assert raw_startup(s, params={"application_name": value}) == ("ok", None)
        s.sendall(query_message("SELECT 1"))
        buf, types = b"", []
        try:
            while b"Z" not in types:
                mtype, _, buf = read_message(s, buf)
                types.append(mtype)
        except AssertionError:
            pass  # not UTF-8: PostgreSQL refuses the SET, and the client is closed after the error
    created = pg.query("SELECT to_regclass(%s) IS NOT NULL", (pwned_table,), dbname="appdb")[0][0]
    assert not created, "the application_name ran as SQL inside pgpulse's SET"
    # and the pool goes on serving
    with pp.connect(autocommit=True, prepare_threshold=None) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
