"""prometheus-community's pgbouncer_exporter, pointed at pgpulse's console.

What the exporter's collector asks (read from its collector.go, as of its
0.10 releases) and what it needs of each answer, checked here the way its
Go code would take them (lib/pq over the simple query protocol, as a
stats_users member):

- it connects and runs SHOW STATS;
- SHOW VERSION: exactly one column, named `version`;
- SHOW LISTS: exactly two columns, each row's second a number;
- SHOW CONFIG: three or four columns; the values of max_client_conn and
  max_user_connections numbers;
- SHOW DATABASES, STATS_TOTALS, POOLS: its label columns of a type it can
  make a label of (text or an integer; NULL is ""), and every column it
  exports a number (text it parses, an integer, a numeric) or NULL, never a
  boolean or a word.

A column it reads that is missing only loses that one metric (as with
PgBouncer versions without it); the test lists them so a rename shows.
"""

import psycopg
from psycopg import pq

from pgpulse_harness import build_ini

USERS = {"app": "app_pw", "admin": "admin_pw", "stats": "stats_pw"}

# the exporter's columns, by SHOW command: (labels, exported numbers)
EXPORTED = {
    "DATABASES": (["name", "host", "port", "database", "force_user", "pool_mode"],
                  ["pool_size", "reserve_pool", "max_connections", "current_connections",
                   "paused", "disabled"]),
    "STATS_TOTALS": (["database"],
                     ["query_count", "query_time", "bytes_received", "requests", "bytes_sent",
                      "wait_time", "xact_count", "xact_time", "client_parse_count",
                      "server_parse_count", "bind_count"]),
    "POOLS": (["database", "user"],
              ["cl_active", "cl_active_cancel_req", "cl_waiting", "cl_waiting_cancel_req",
               "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used",
               "sv_tested", "sv_login", "maxwait"]),
}
# what PgBouncer 1.25 itself no longer has (renamed, or never in STATS_TOTALS)
ABSENT_IN_PGBOUNCER_125 = {("DATABASES", "reserve_pool"), ("STATS_TOTALS", "requests")}

INT_OIDS = {20, 21, 23}
TEXT_OIDS = {25, 1043, 19}
NUMERIC_OID = 1700


def ini():
    base = {"listen_addr": "127.0.0.1", "listen_port": "{port}", "unix_socket_dir": "{dir}",
            "auth_file": "{auth_file}", "auth_type": "scram-sha-256", "admin_users": "admin",
            "stats_users": "stats", "pool_mode": "transaction"}
    return build_ini({"appdb": ""}, settings=base)


def simple(conn, sql):
    """(column names, type OIDs, rows of text or None) of one simple Query."""
    res = conn.pgconn.exec_(sql.encode())
    assert res.status == pq.ExecStatus.TUPLES_OK, res.error_message
    names = [res.fname(i).decode() for i in range(res.nfields)]
    oids = [res.ftype(i) for i in range(res.nfields)]
    rows = [[None if res.get_value(r, c) is None else res.get_value(r, c).decode()
             for c in range(res.nfields)] for r in range(res.ntuples)]
    return names, oids, rows


def is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def exporter_connection(pp):
    conn = psycopg.connect(host="127.0.0.1", port=pp.port, dbname="pgbouncer", user="stats",
                           password="stats_pw", sslmode="disable", autocommit=True)
    simple(conn, "SHOW STATS;")   # the exporter's ping
    return conn


def test_every_query_of_pgbouncer_exporter_is_answered_in_a_shape_it_reads(pgpulse):
    pp = pgpulse(ini(), USERS)
    with pp.connect(autocommit=True) as app:
        app.execute("SELECT 1")
    with exporter_connection(pp) as conn:
        names, _, rows = simple(conn, "SHOW VERSION;")
        assert names == ["version"] and len(rows) == 1 and rows[0][0], (names, rows)

        names, _, rows = simple(conn, "SHOW LISTS;")
        assert len(names) == 2, names
        assert rows and all(is_number(v) for _, v in rows), rows

        names, _, rows = simple(conn, "SHOW CONFIG;")
        assert len(names) in (3, 4), names
        config = {r[0]: r[1] for r in rows}
        for key in ("max_client_conn", "max_user_connections"):
            assert is_number(config[key]), (key, config[key])

        for command, (labels, numbers) in EXPORTED.items():
            names, oids, rows = simple(conn, f"SHOW {command};")
            assert rows, command
            oid_of = dict(zip(names, oids))
            for col in labels:
                assert col in oid_of, (command, col)
                assert oid_of[col] in TEXT_OIDS | INT_OIDS, (command, col, oid_of[col])
            for col in numbers:
                if col not in oid_of:
                    assert (command, col) in ABSENT_IN_PGBOUNCER_125, (command, col, names)
                    continue
                assert oid_of[col] in INT_OIDS | {NUMERIC_OID} | TEXT_OIDS, (command, col, oid_of[col])
                i = names.index(col)
                for row in rows:
                    assert row[i] is None or is_number(row[i]), (command, col, row[i])
