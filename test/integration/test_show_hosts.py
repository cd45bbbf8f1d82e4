"""SHOW HOSTS and the pgpulse_host_* series of /metrics (issue 16,
doc/admin.md "SHOW HOSTS", doc/telemetry.md "Per-host series").

One scratch PostgreSQL reached two ways makes two hosts: `hostsdb` lists
its unix-socket directory and 127.0.0.1 (round-robin), `hostsdb_tcp` only
127.0.0.1. What is checked here is what the view computes from the hosts
and servers: its columns, the servers counted per host, the entries that
name a host, the query counts and percentiles, and the same figures on
/metrics with a host label. Roles, lag and failover are test_replicas*.py's.
"""

import subprocess

import psycopg

from pgpulse_harness import wait_until
from test_metrics import DEFAULT_BUCKETS, parse_metrics, promtool, scrape, series, start, value

DATABASES = {
    "hostsdb": "host={pg_socket_dir},127.0.0.1 port={pg_port} dbname=appdb load_balance_hosts=round-robin",
    "hostsdb_tcp": "host=127.0.0.1 port={pg_port} dbname=appdb",
}

# SHOW HOSTS' columns and their RowDescription type OIDs, in order
COLUMNS = [
    ("host", 25), ("port", 23), ("role", 25), ("state", 25), ("read_only", 16),
    ("lag_ms", 701), ("lag_bytes", 20), ("checked_ms_ago", 20), ("role_changes", 20),
    ("sv_active", 23), ("sv_idle", 23), ("sv_used", 23), ("sv_login", 23),
    ("databases", 25), ("query_count", 20), ("query_p50_us", 20), ("query_p95_us", 20),
    ("query_p99_us", 20), ("last_error", 25),
]


def hosts_by_name(pp):
    return {r["host"]: r for r in pp.show("HOSTS")}


def label(pp, host):
    return f"{host}:{pp.pg.port}"


def client(pp, dbname="hostsdb"):
    return psycopg.connect(pp.dsn(dbname=dbname), autocommit=False, prepare_threshold=None,
                           connect_timeout=10)


def active_servers(pp):
    return {host: row["sv_active"] for host, row in hosts_by_name(pp).items()}


def hold_transactions_on_both_hosts(pp):
    """Clients each in an open transaction, one more until both hosts of
    hostsdb have one (round-robin takes them in turn). Returns the first
    client on each host, every client, and how many are on each host."""
    wanted = {pp.pg.socket_dir, "127.0.0.1"}
    first, held, count = {}, [], {}
    while set(first) != wanted:
        assert len(held) < 4, f"4 servers and not both hosts: {pp.show('HOSTS')}"
        before = active_servers(pp)
        conn = client(pp)
        held.append(conn)
        conn.execute("SELECT 1")
        after = active_servers(pp)
        grew = [h for h in after if after[h] == before.get(h, 0) + 1]
        assert len(grew) == 1 and sum(after.values()) == len(held), (before, after)
        first.setdefault(grew[0], conn)
        count[grew[0]] = count.get(grew[0], 0) + 1
    return first, held, count


def test_show_hosts_has_a_row_per_host_with_its_servers_and_entries(pgpulse):
    pp = start(pgpulse, databases=DATABASES)
    console = pp.admin()
    by_host, held, count = hold_transactions_on_both_hosts(pp)
    try:
        cur = console.execute("SHOW HOSTS")
        assert [(d.name, d.type_code) for d in cur.description] == COLUMNS
        rows = {r["host"]: r for r in pp.show("HOSTS")}
        assert sorted(rows) == sorted([pp.pg.socket_dir, "127.0.0.1"]), rows
        for host, row in rows.items():
            assert row["port"] == pp.pg.port
            # a server per open transaction, active, counted over every pool
            assert (row["sv_active"], row["sv_idle"], row["sv_used"], row["sv_login"]) == \
                (count[host], 0, 0, 0), row
            assert row["last_error"] == "", row
        # the entries that name each host, by name
        assert rows["127.0.0.1"]["databases"] == "hostsdb,hostsdb_tcp"
        assert rows[pp.pg.socket_dir]["databases"] == "hostsdb"
        for conn in held:
            conn.commit()
        # released: the same servers are idle, none active
        wait_until(lambda: {h: (r["sv_active"], r["sv_idle"]) for h, r in hosts_by_name(pp).items()}
                   == {h: (0, n) for h, n in count.items()},
                   what="every server idle after the commits")
    finally:
        for conn in held:
            conn.close()


def test_show_hosts_counts_the_queries_each_host_served(pgpulse):
    pp = start(pgpulse, databases=DATABASES)
    by_host, held, _ = hold_transactions_on_both_hosts(pp)
    try:
        before = hosts_by_name(pp)
        sock, tcp = pp.pg.socket_dir, "127.0.0.1"
        # a transaction's statements all run on its server: 7 more on the socket host only
        for _ in range(7):
            by_host[sock].execute("SELECT 1")
        after = hosts_by_name(pp)
        assert after[sock]["query_count"] == before[sock]["query_count"] + 7, (before, after)
        assert after[tcp]["query_count"] == before[tcp]["query_count"], (before, after)
        for row in after.values():
            assert row["query_count"] > 0
            assert 0 < row["query_p50_us"] <= row["query_p95_us"] <= row["query_p99_us"], row
    finally:
        for conn in held:
            conn.close()


def test_metrics_have_the_host_series_with_a_host_label(pgpulse):
    tool = promtool()
    pp = start(pgpulse, databases=DATABASES)
    by_host, held, count = hold_transactions_on_both_hosts(pp)
    try:
        for _ in range(3):
            by_host["127.0.0.1"].execute("SELECT 1")
        body = scrape(pp)
        rows = hosts_by_name(pp)
    finally:
        for conn in held:
            conn.close()
    samples = parse_metrics(body)
    for host in (pp.pg.socket_dir, "127.0.0.1"):
        h = label(pp, host)
        assert value(samples, "pgpulse_host_up", host=h) == 1
        assert value(samples, "pgpulse_host_lagging", host=h) == 0
        assert value(samples, "pgpulse_host_role_changes_total", host=h) == rows[host]["role_changes"]
        assert value(samples, "pgpulse_host_servers", host=h, state="active") == count[host]
        assert value(samples, "pgpulse_host_servers", host=h, state="idle") == 0
        # the histogram has pgpulse_query_duration_seconds' bounds, and every request the host served
        bucket = series(samples, "pgpulse_host_query_duration_seconds_bucket", host=h)
        assert [lab["le"] for lab, _ in bucket] == DEFAULT_BUCKETS + ["+Inf"]
        total = value(samples, "pgpulse_host_query_duration_seconds_count", host=h)
        assert bucket[-1][1] == total >= rows[host]["query_count"] > 0
    # the hosts' requests are the pools' requests, each once
    pools = sum(v for _, v in series(samples, "pgpulse_query_duration_seconds_count"))
    hosts = sum(v for _, v in series(samples, "pgpulse_host_query_duration_seconds_count"))
    assert hosts == pools
    r = subprocess.run([tool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"promtool check metrics complained (exit {r.returncode}):\n{r.stdout}{r.stderr}"


def test_show_databases_ends_with_each_entry_target_session_attrs(pgpulse):
    pp = start(pgpulse, databases=DATABASES)
    cur = pp.admin().execute("SHOW DATABASES")
    assert (cur.description[-1].name, cur.description[-1].type_code) == ("target_session_attrs", 25)
    rows = {r["name"]: r["target_session_attrs"] for r in pp.show("DATABASES")}
    # an entry without the key: libpq's default; the console has no server to choose
    assert rows == {"hostsdb": "any", "hostsdb_tcp": "any", "pgpulse": None, "pgbouncer": None}, rows
