"""The admin console read side by side with PgBouncer's: one ini, one
PostgreSQL, one small workload through each pooler, then every SHOW command
PgBouncer has.  pgpulse's columns start with PgBouncer's, in PgBouncer's
order (pgpulse's own ones come after), and the figures the workload fixes
(counts, states, pool sizes, buffer positions) are the same.

PgBouncer is Debian's (/usr/sbin/pgbouncer, 1.18, a test dependency) and,
when PGBOUNCER_125 names its binary, PgBouncer 1.25 too: the reference for
meanings and column order.  What pgpulse deliberately shows otherwise is in
doc/pgbouncer.md (the console's part).
"""

import os
import shutil

import pytest

from pgpulse_harness import Pgpulse, wait_until

USERS = {"app": "app_pw", "admin": "admin_pw", "stats": "stats_pw"}

INI = """\
[databases]
appdb = host={pg_host} port={pg_port} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {dir}
auth_type = scram-sha-256
auth_file = {auth_file}
admin_users = admin
stats_users = stats
pool_mode = transaction
default_pool_size = 2
"""

COMMANDS = ["STATS", "STATS_TOTALS", "STATS_AVERAGES", "TOTALS", "POOLS", "DATABASES", "USERS",
            "CLIENTS", "SERVERS", "LISTS", "MEM", "CONFIG", "FDS", "SOCKETS", "ACTIVE_SOCKETS",
            "DNS_HOSTS", "DNS_ZONES", "STATE", "VERSION", "PEERS", "PEER_POOLS"]


def pgbouncer_binaries():
    """(label, path) of the PgBouncers to compare with: Debian's always, 1.25 when given."""
    found = [("1.18", shutil.which("pgbouncer", path="/usr/sbin:/usr/bin"))]
    if os.environ.get("PGBOUNCER_125"):
        found.append(("1.25", os.environ["PGBOUNCER_125"]))
    return found


@pytest.fixture(params=pgbouncer_binaries(), ids=lambda b: b[0])
def pgbouncer(request, pg, session_dir):
    label, path = request.param
    if label == "1.25" and not os.access(path or "", os.X_OK):
        pytest.fail(f"PGBOUNCER_125={path} is not an executable", pytrace=False)
    assert path, "pgbouncer not installed: apt-get install pgbouncer (contrib/run-tests.sh does)"
    pb = Pgpulse(INI, base_dir=session_dir, bin=path, pg=pg, userlist=USERS)
    pb.admin_db = "pgbouncer"
    pb.label = label
    pb.start()
    yield pb
    pb.stop()


def run_workload(pooler):
    """One client ran three queries and sits between transactions; another
    is inside a transaction, so it holds the pool's one server."""
    idle = pooler.connect(autocommit=True, prepare_threshold=None)
    for _ in range(3):
        assert idle.execute("select current_database()").fetchone() == ("appdb",)
    busy = pooler.connect(prepare_threshold=None)
    busy.execute("select 1").fetchone()
    return idle, busy


def views(pooler):
    """{command: (column names, rows as dicts)} of every SHOW the pooler answers."""
    out = {}
    conn = pooler.admin(dbname="pgbouncer")
    for cmd in COMMANDS:
        try:
            cur = conn.execute("SHOW " + cmd)
        except Exception:  # a command this PgBouncer release does not have
            continue
        names = [d.name for d in cur.description]
        out[cmd] = (names, [dict(zip(names, row)) for row in cur.fetchall()])
    conn.close()
    return out


def row_of(view, **match):
    rows = [r for r in view[1] if all(r[k] == v for k, v in match.items())]
    assert len(rows) == 1, (match, view[1])
    return rows[0]


def both_views(pgpulse, pgbouncer):
    pp = pgpulse(INI, USERS)
    run_workload(pgbouncer)
    run_workload(pp)
    return views(pp), views(pgbouncer)


# the one column 1.25 renamed since 1.18
RENAMED_SINCE_118 = {"reserve_pool": "reserve_pool_size"}


def in_order(names, within):
    """Are names all in within, in the same relative order?"""
    it = iter(within)
    return all(n in it for n in names)


def test_every_show_starts_with_pgbouncers_columns_in_its_order(pgpulse, pgbouncer):
    """1.25's columns are exactly where 1.25 has them; 1.18's (which 1.25
    extended) are all there, in 1.18's order."""
    ours, theirs = both_views(pgpulse, pgbouncer)
    assert len(theirs) >= 17, sorted(theirs)
    for cmd, (names, _) in theirs.items():
        assert cmd in ours, f"SHOW {cmd}: PgBouncer {pgbouncer.label} has it, pgpulse does not"
        if pgbouncer.label == "1.18":
            names = [RENAMED_SINCE_118.get(n, n) for n in names]
            assert in_order(names, ours[cmd][0]), (cmd, ours[cmd][0], names)
        else:
            assert ours[cmd][0][:len(names)] == names, (cmd, ours[cmd][0], names)


def test_pool_database_and_user_figures_match_pgbouncers(pgpulse, pgbouncer):
    ours, theirs = both_views(pgpulse, pgbouncer)
    pool_cols = ["cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_tested",
                 "sv_login", "pool_mode"]
    pools = [v for v in (ours, theirs)]
    a, b = (row_of(v["POOLS"], database="appdb", user="app") for v in pools)
    assert {k: a[k] for k in pool_cols} == {k: b[k] for k in pool_cols}
    assert (a["cl_active"], a["sv_active"]) == (2, 1)

    db_cols = [c for c in theirs["DATABASES"][0] if c in ours["DATABASES"][0] and c != "port"]
    a, b = (row_of(v["DATABASES"], name="appdb") for v in (ours, theirs))
    assert {k: a[k] for k in db_cols} == {k: b[k] for k in db_cols}
    assert (a["current_connections"], a["pool_size"]) == (1, 2)

    # every auth_file user and the console's own, with the same counts
    user_cols = theirs["USERS"][0]
    assert [{k: r[k] for k in user_cols} for r in ours["USERS"][1]] == theirs["USERS"][1]
    assert [r["name"] for r in ours["USERS"][1]] == ["admin", "app", "pgbouncer", "stats"]

    their_lists = {r["list"] for r in theirs["LISTS"][1]}
    for name in ("users", "used_clients", "used_servers", "login_clients", "peers", "peer_pools",
                 "dns_names", "dns_zones", "dns_queries", "dns_pending"):
        if name in their_lists:
            assert row_of(ours["LISTS"], list=name)["items"] == \
                row_of(theirs["LISTS"], list=name)["items"], name

    # the workload's transactions (the open one counted: they count when they begin), its
    # queries and their bytes (the login's left out), and in 1.25 its server assignments
    wanted = ["xact_count", "query_count", "bytes_received", "bytes_sent"] + \
        (["server_assignment_count"] if "server_assignment_count" in theirs["STATS_TOTALS"][0]
         else [])
    a, b = (row_of(v["STATS_TOTALS"], database="appdb") for v in (ours, theirs))
    assert {k: a[k] for k in wanted} == {k: b[k] for k in wanted}


def connection_states(view, newer):
    """(type, user, database[, state]) of each row, sorted: 1.18 had older
    state words for clients, so its states are compared for servers only."""
    keep = []
    for r in view[1]:
        key = (r["type"], r["user"], r["database"])
        if newer or r["type"] == "S" or r["state"].startswith(("cl_", "sv_")):
            key += (r["state"],)
        keep.append(key)
    return sorted(keep)


def test_connections_and_their_buffers_match_pgbouncers(pgpulse, pgbouncer):
    ours, theirs = both_views(pgpulse, pgbouncer)
    newer = pgbouncer.label != "1.18"
    for cmd in ("CLIENTS", "SERVERS", "SOCKETS", "ACTIVE_SOCKETS"):
        assert connection_states(ours[cmd], newer) == connection_states(theirs[cmd], newer), cmd
    # idle connections hold no bytes; the console's own query is in its buffer, unread by then
    buffer_cols = ["recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail",
                   "send_avail"]
    for cmd in ("SOCKETS", "ACTIVE_SOCKETS"):
        for v in (ours, theirs):
            v[cmd][1].sort(key=lambda r: (r["type"], r["user"], r["state"]))
        assert [[r[c] for c in buffer_cols] for r in ours[cmd][1]] == \
            [[r[c] for c in buffer_cols] for r in theirs[cmd][1]], cmd
    assert row_of(ours["ACTIVE_SOCKETS"], user="admin")["recv_pos"] == len("SHOW ACTIVE_SOCKETS") + 6
    if newer:
        assert ours["STATE"][1] == theirs["STATE"][1]


def test_idle_server_past_server_check_delay_is_used_in_both(pgpulse, pgbouncer, pg, session_dir):
    """server_check_delay = 0: an idle server must pass server_check_query
    before it serves again, so both count it under sv_used, not sv_idle."""
    ini = INI + "server_check_delay = 0\nserver_check_query = select 1\n"
    pgbouncer.stop()
    pb = Pgpulse(ini, base_dir=session_dir, bin=pgbouncer.bin, pg=pg, userlist=USERS)
    pb.admin_db = "pgbouncer"
    pb.start()
    pp = pgpulse(ini, USERS)
    try:
        for pooler in (pp, pb):
            pooler.connect(autocommit=True, prepare_threshold=None).execute("select 1")

            def pool():
                return row_of(("", pooler.show("POOLS")), database="appdb", user="app")
            wait_until(lambda: pool()["sv_used"] == 1, what=f"{pooler.bin}: sv_used = 1")
            assert pool()["sv_idle"] == 0
            servers = pooler.show("SERVERS")
            assert [r["state"] for r in servers] == ["used"]
    finally:
        pb.stop()


def test_load_balance_hosts_shows_as_in_pgbouncer_125(pgpulse, pgbouncer, pg, session_dir):
    """A database with a list of hosts shows its load_balance_hosts in SHOW
    DATABASES and SHOW POOLS; one with a single host shows NULL (1.18 has
    neither the column nor host lists)."""
    if pgbouncer.label == "1.18":
        pytest.skip("PgBouncer 1.18 has no load_balance_hosts")
    ini = INI.replace("appdb = host={pg_host} port={pg_port} dbname=appdb",
                      "appdb = host={pg_host},localhost port={pg_port} dbname=appdb\n"
                      "lbdb = host={pg_host},localhost port={pg_port} dbname=appdb"
                      " load_balance_hosts=disable\n"
                      "onedb = host={pg_host} port={pg_port} dbname=appdb")
    pgbouncer.stop()
    pb = Pgpulse(ini, base_dir=session_dir, bin=pgbouncer.bin, pg=pg, userlist=USERS)
    pb.admin_db = "pgbouncer"
    pb.start()
    pp = pgpulse(ini, USERS)
    try:
        shown = []
        for pooler in (pp, pb):
            pooler.connect(autocommit=True, prepare_threshold=None).execute("select 1")
            dbs = {r["name"]: r["load_balance_hosts"] for r in pooler.show("DATABASES")
                   if r["name"] in ("appdb", "lbdb", "onedb")}
            pools = [(r["database"], r["load_balance_hosts"]) for r in pooler.show("POOLS")
                     if r["database"] == "appdb"]
            shown.append((dbs, pools))
        assert shown[0] == shown[1]
        assert shown[0] == ({"appdb": "round-robin", "lbdb": "disable", "onedb": None},
                            [("appdb", "round-robin")])
    finally:
        pb.stop()
