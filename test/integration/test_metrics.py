"""The Prometheus endpoint (metrics_addr/metrics_port): GET /metrics and
GET /health against real traffic through pgpulse, and the alert rules and
Grafana dashboard in contrib/ that are built on its series.

What a scrape must hold (src/telemetry/metrics.c, doc/telemetry.md):
    pgpulse_{query,transaction,wait,server,connect}_duration_seconds
        histograms since start, cumulative _bucket{le} at metrics_buckets,
        labels database, user; a value counts under le when its fine
        bucket's midpoint is at or below the bound (so within 0.8 %)
    pgpulse_latency_seconds      per-instance window summaries (SHOW LATENCY),
                                 with metrics_summaries = on
    pgpulse_pool_* gauges and counters    SHOW POOLS and SHOW STATS values
    pgpulse_pool_*_ratio{window}, pgpulse_pool_suggested_size{window}
                                 SHOW EFFICIENCY
    pgpulse_pool_health          0 ok, 1 warning, 2 critical (SHOW HEALTH)
    pgpulse_pool_{client_parses,server_parses,binds,prepared_evictions}_total,
    pgpulse_prepared_statement{s,_client_names,_server_copies}
                                 SHOW STATS and SHOW PREPARED_STATEMENTS

promtool (Debian package prometheus) checks the exposition format and the
rules; without it the tests that need it are skipped, or fail when CI is set.
Concurrency comes from threads, each with a psycopg connection that only it
touches.
"""

import http.client
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest

from pgpulse_harness import RawConn, count_tcp_sockets, error_fields, free_port, query_message, wait_until

USERLIST = {"app": "app_pw", "admin": "admin_pw", "md5user": "md5_pw"}

BASE_SETTINGS = {
    "listen_addr": "127.0.0.1",
    "listen_port": "{port}",
    "unix_socket_dir": "{dir}",
    "auth_type": "scram-sha-256",
    "auth_file": "{auth_file}",
    "admin_users": "admin",
    "pool_mode": "transaction",
    "default_pool_size": "2",
}

# Two databases (otherdb is the cluster's postgres database, which app may
# connect to); with md5user on appdb that makes three pools.
DATABASES = {
    "appdb": "host={pg_host} port={pg_port} dbname=appdb",
    "otherdb": "host={pg_host} port={pg_port} dbname=postgres",
}

HISTOGRAMS = {
    # SHOW LATENCY kind -> exported histogram
    "query": "pgpulse_query_duration_seconds",
    "xact": "pgpulse_transaction_duration_seconds",
    "wait": "pgpulse_wait_duration_seconds",
    "server": "pgpulse_server_duration_seconds",
    "connect": "pgpulse_connect_duration_seconds",
}
DEFAULT_BUCKETS = ["0", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                   "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30"]
EFFICIENCY_RATIOS = ["pgpulse_pool_utilization_ratio", "pgpulse_pool_reuse_ratio",
                     "pgpulse_pool_saturation_ratio", "pgpulse_pool_overflow_ratio",
                     "pgpulse_pool_reserve_ratio"]
WINDOWS = ["1m", "5m", "15m"]
HEALTH_LEVELS = {"ok": 0, "warning": 1, "critical": 2}


# ------------------------------------------------------------------ helpers

def make_ini(databases=None, **settings):
    merged = dict(BASE_SETTINGS)
    merged.update({k: str(v) for k, v in settings.items()})
    lines = ["[databases]"]
    lines += [f"{name} = {spec}" for name, spec in (databases or DATABASES).items()]
    lines.append("[pgbouncer]")
    lines += [f"{k} = {v}" for k, v in merged.items()]
    return "\n".join(lines) + "\n"


def start(pgpulse, databases=None, metrics=True, nofile=None, **settings):
    """A pgpulse with the metrics endpoint on a port of its own (pp.metrics_port)."""
    mport = free_port() if metrics else 0
    settings.setdefault("metrics_port", mport)
    pp = pgpulse(make_ini(databases, **settings), USERLIST, nofile=nofile)
    pp.metrics_port = mport
    return pp


def http_request(port, method="GET", path="/metrics", body=None):
    """(status, content-type, body text) of one request to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read().decode()
    finally:
        conn.close()


def scrape(pp):
    status, ctype, body = http_request(pp.metrics_port)
    assert status == 200, body
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    return body


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def _unescape(v):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def parse_metrics(text):
    """The samples of an exposition as a list of (name, {label: value}, float)."""
    samples = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = {}
        raw = m.group(2) or ""
        pos = 0
        while pos < len(raw):
            lm = LABEL.match(raw, pos)
            assert lm, f"bad labels in {line!r}"
            labels[lm.group(1)] = _unescape(lm.group(2))
            pos = lm.end()
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def series(samples, name, **labels):
    """The samples of metric `name` whose labels include `labels`."""
    return [(lab, v) for n, lab, v in samples
            if n == name and all(lab.get(k) == str(x) for k, x in labels.items())]


def value(samples, name, **labels):
    """The one sample of `name` with exactly these labels (plus any not given
    only if a single sample matches)."""
    found = series(samples, name, **labels)
    assert len(found) == 1, f"{name}{labels}: expected one sample, found {found}"
    return found[0][1]


def pools_of(samples):
    return sorted({(lab["database"], lab["user"]) for _, lab, _ in samples
                   if "database" in lab and "user" in lab})


def buckets(samples, hist, database, user):
    """[(le text, cumulative count)] of one pool's histogram, in exposition order."""
    return [(lab["le"], v) for lab, v in series(samples, hist + "_bucket", database=database,
                                                user=user)]


def run(pp, sql, n=1, dbname="appdb", user="app"):
    """n autocommit statements on one connection through pgpulse."""
    with psycopg.connect(host="127.0.0.1", port=pp.port, dbname=dbname, user=user,
                         password=pp.password_for(user), sslmode="disable", autocommit=True,
                         prepare_threshold=None, connect_timeout=10) as c:
        for _ in range(n):
            c.execute(sql)


def promtool():
    path = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK)
                                        else None)
    if path is None:
        reason = "promtool not found: apt-get install prometheus (it ships /usr/bin/promtool)"
        if os.environ.get("CI"):
            pytest.fail(reason + " -- CI is set, so this is an error", pytrace=False)
        pytest.skip(reason)
    return path


def srcdir():
    """The source tree (run-integration.sh stages contrib/ there as root)."""
    return os.environ.get("PGPULSE_SRCDIR") or os.path.normpath(
        os.path.join(os.path.dirname(__file__), "..", ".."))


RULES = os.path.join("contrib", "prometheus", "pgpulse-rules.yml")
DASHBOARD = os.path.join("contrib", "grafana", "pgpulse-dashboard.json")


def rules_path():
    path = os.path.join(srcdir(), RULES)
    assert os.path.isfile(path), f"{path} is missing"
    return path


def tcp_listen_ports(pid):
    """The TCP ports process `pid` itself listens on (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and fields[9] in inodes:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def traffic_on_three_pools(pp):
    """Known traffic: appdb/app 3 requests, appdb/md5user 4, otherdb/app 2."""
    run(pp, "select 1", 3)
    run(pp, "select 1", 4, user="md5user")
    run(pp, "select 1", 2, dbname="otherdb")


# ----------------------------------------------------------- /metrics format

def test_metrics_after_traffic_on_several_pools_pass_promtool_check(pgpulse):
    tool = promtool()
    pp = start(pgpulse, metrics_summaries="on")
    traffic_on_three_pools(pp)
    run(pp, "select pg_sleep(0.01)", 2)
    body = scrape(pp)
    assert pools_of(parse_metrics(body)) == [("appdb", "app"), ("appdb", "md5user"),
                                              ("otherdb", "app")]
    r = subprocess.run([tool, "check", "metrics"], input=body, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"promtool check metrics complained (exit {r.returncode}):\n{r.stdout}{r.stderr}"


def test_every_sample_belongs_to_a_family_of_the_documented_type(pgpulse):
    pp = start(pgpulse, metrics_summaries="on")
    traffic_on_three_pools(pp)
    body = scrape(pp)
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.MULTILINE))
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count"),
                "counter": ("",), "gauge": ("",)}
    for name, _, _ in parse_metrics(body):
        assert any(name == fam + sfx for fam, t in types.items() for sfx in suffixes[t]), \
            f"{name} has no # TYPE line"
    for kind, hist in HISTOGRAMS.items():
        assert types.get(hist) == "histogram", kind
    assert types["pgpulse_latency_seconds"] == "summary"
    assert types["pgpulse_pool_queries_total"] == "counter"
    assert types["pgpulse_pool_health"] == "gauge"
    assert types["pgpulse_up"] == "gauge"


def test_prepared_statement_counts_equal_show_stats_and_show_prepared_statements(pgpulse):
    """Six psycopg clients run four prepared statements each in transaction
    mode on a pool of two that keeps two statements per server, so
    statements move and are evicted: /metrics says what the console says."""
    tool = promtool()
    pp = start(pgpulse, default_pool_size=2, max_prepared_statements=2)
    conns = [psycopg.connect(pp.dsn(), autocommit=True) for _ in range(6)]
    errors = []

    def work(conn):
        try:
            for i in range(8):
                for k in range(4):
                    assert conn.execute(f"SELECT %s::int + {k}", (i,), prepare=True).fetchone() == (i + k,)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    try:
        # the clients stay connected: every statement they used is still listed
        stats = next(r for r in pp.show("STATS") if r["database"] == "appdb")
        listing = pp.show("PREPARED_STATEMENTS")
        body = scrape(pp)
    finally:
        for c in conns:
            c.close()
    samples = parse_metrics(body)
    pool = {"database": "appdb", "user": "app"}
    assert value(samples, "pgpulse_pool_client_parses_total", **pool) == \
        int(stats["total_client_parse_count"]) == 6 * 4
    assert value(samples, "pgpulse_pool_server_parses_total", **pool) == \
        int(stats["total_server_parse_count"])
    assert value(samples, "pgpulse_pool_binds_total", **pool) == int(stats["total_bind_count"]) == 6 * 8 * 4
    evictions = sum(int(r["evictions"]) for r in listing)
    assert evictions > 0, listing
    assert value(samples, "pgpulse_pool_prepared_evictions_total", **pool) == evictions
    assert value(samples, "pgpulse_prepared_statements") == len(listing) == 4
    assert value(samples, "pgpulse_prepared_statement_client_names") == \
        sum(int(r["clients"]) for r in listing) == 6 * 4
    assert value(samples, "pgpulse_prepared_statement_server_copies") == \
        sum(int(r["servers"]) for r in listing)
    r = subprocess.run([tool, "check", "metrics"], input=body, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        f"promtool check metrics complained (exit {r.returncode}):\n{r.stdout}{r.stderr}"


# ------------------------------------------------------------------ histograms

def test_histograms_are_cumulative_and_agree_with_show_latency(pgpulse):
    pp = start(pgpulse, default_pool_size=1)
    # appdb/app has one server.  A transaction (BEGIN, 2 statements, COMMIT)
    # holds it while a second client queues behind it with 5 requests, so
    # there are real waits, and xact differs from query.  Then otherdb/app.
    holder = pp.connect(prepare_threshold=None)
    holder.execute("select 1")
    holder.execute("select 2")
    waiter = threading.Thread(target=run, args=(pp, "select pg_sleep(0.005)", 5))
    waiter.start()
    try:
        wait_until(lambda: pp.show("POOLS")[0]["cl_waiting"] == 1, what="a client waiting")
    finally:
        holder.commit()
        waiter.join(30)
    assert not waiter.is_alive()
    run(pp, "select 1", 2, dbname="otherdb")

    samples = parse_metrics(scrape(pp))
    latency = {(r["database"], r["user"], r["kind"]): r for r in pp.show("LATENCY all")}
    assert pools_of(samples) == [("appdb", "app"), ("otherdb", "app")]
    assert latency[("appdb", "app", "wait")]["max_us"] > 0
    for database, user in pools_of(samples):
        for kind, hist in HISTOGRAMS.items():
            where = f"{hist} {database}/{user}"
            bs = buckets(samples, hist, database, user)
            assert [le for le, _ in bs] == DEFAULT_BUCKETS + ["+Inf"], where
            counts = [v for _, v in bs]
            assert counts == sorted(counts), f"{where}: buckets decrease: {bs}"
            count = value(samples, hist + "_count", database=database, user=user)
            total = value(samples, hist + "_sum", database=database, user=user)
            assert counts[-1] == count, f"{where}: +Inf bucket {counts[-1]} != _count {count}"
            row = latency[(database, user, kind)]
            assert count == row["count"], f"{where}: _count {count}, SHOW LATENCY {row}"
            # mean_us is the exact sum divided by the count, truncated
            sum_us = round(total * 1e6)
            assert row["mean_us"] * count <= sum_us < (row["mean_us"] + 1) * max(count, 1), \
                f"{where}: _sum {total} s vs mean {row['mean_us']} us x {count}"
            # every value is at most max_us: the bounds above it (plus the
            # midpoint tolerance) hold everything
            for le, v in bs[:-1]:
                if float(le) * 1e6 >= row["max_us"] * (1 + 1 / 64):
                    assert v == count, f"{where}: le={le} above max_us {row['max_us']}: {v}"
    # BEGIN + 2 + COMMIT in one transaction, and 5 autocommit requests
    assert value(samples, "pgpulse_query_duration_seconds_count", database="appdb", user="app") == 9
    assert value(samples, "pgpulse_transaction_duration_seconds_count", database="appdb",
                 user="app") == 6


def test_known_mix_of_query_times_lands_in_the_right_buckets(pgpulse):
    pp = start(pgpulse)
    # pg_sleep(0.01) takes at least 10 ms, so no such query can count under
    # le=0.01 (its fine bucket's midpoint is above 10 ms); 15 ms of headroom
    # below 0.025.  pg_sleep(0.2) is well inside 0.1 < t <= 0.25.
    run(pp, "select pg_sleep(0.01)", 20)
    run(pp, "select pg_sleep(0.2)", 5)
    samples = parse_metrics(scrape(pp))
    got = dict(buckets(samples, "pgpulse_query_duration_seconds", "appdb", "app"))
    expected = {le: (0 if float(le) <= 0.01 else 20 if float(le) < 0.2 else 25)
                for le in DEFAULT_BUCKETS}
    expected["+Inf"] = 25
    assert got == expected
    total = value(samples, "pgpulse_query_duration_seconds_sum", database="appdb", user="app")
    assert 20 * 0.01 + 5 * 0.2 <= total < 20 * 0.01 + 5 * 0.2 + 25 * 0.03


def test_metrics_buckets_setting_sets_the_le_bounds(pgpulse):
    pp = start(pgpulse, metrics_buckets="0.001,0.1,1")
    run(pp, "select pg_sleep(0.01)", 2)
    samples = parse_metrics(scrape(pp))
    for hist in HISTOGRAMS.values():
        les = [le for le, _ in buckets(samples, hist, "appdb", "app")]
        assert les == ["0.001", "0.1", "1", "+Inf"], hist
    got = dict(buckets(samples, "pgpulse_query_duration_seconds", "appdb", "app"))
    assert got == {"0.001": 0, "0.1": 2, "1": 2, "+Inf": 2}


@pytest.mark.parametrize("bad", ["1,0.5", "abc", "0.1,0.1", "0,0", "-0.001,1", "-0,1"])
def test_bad_metrics_buckets_stops_startup_naming_file_and_line(pgpulse, bad):
    ini = make_ini(metrics_port=free_port(), metrics_buckets=bad)
    line = ini.splitlines().index(f"metrics_buckets = {bad}") + 1
    pp = pgpulse(ini, USERLIST, wait=False)
    rc = pp.wait_exit(10)
    assert rc != 0
    log = pp.log()
    assert re.search(rf"{re.escape(pp.ini_path)}:{line}:.*metrics_buckets", log), log
    assert "metrics on" not in log


def test_metrics_buckets_changed_by_reload_apply_to_the_next_scrape(pgpulse):
    pp = start(pgpulse)
    run(pp, "select pg_sleep(0.01)", 2)
    les = [le for le, _ in buckets(parse_metrics(scrape(pp)), "pgpulse_query_duration_seconds",
                                   "appdb", "app")]
    assert les == DEFAULT_BUCKETS + ["+Inf"]
    pp.write_config(make_ini(metrics_port=pp.metrics_port, metrics_buckets="0.005,0.02"))
    assert pp.command("RELOAD") == "RELOAD"
    got = dict(buckets(parse_metrics(scrape(pp)), "pgpulse_query_duration_seconds", "appdb", "app"))
    # the same recorded values, cut at the new bounds
    assert got == {"0.005": 0, "0.02": 2, "+Inf": 2}


def test_bad_metrics_buckets_on_reload_keeps_the_running_bounds(pgpulse):
    pp = start(pgpulse, metrics_buckets="0.001,0.1,1")
    run(pp, "select 1")
    ini = make_ini(metrics_port=pp.metrics_port, metrics_buckets="1,0.5")
    line = ini.splitlines().index("metrics_buckets = 1,0.5") + 1
    pp.write_config(ini)
    with pytest.raises(psycopg.Error) as e:
        pp.command("RELOAD")
    assert e.value.sqlstate == "F0000"
    assert re.search(rf"{re.escape(pp.ini_path)}:{line}: metrics_buckets", str(e.value)), str(e.value)
    les = [le for le, _ in buckets(parse_metrics(scrape(pp)), "pgpulse_query_duration_seconds",
                                   "appdb", "app")]
    assert les == ["0.001", "0.1", "1", "+Inf"]


def test_odd_database_names_are_escaped_in_labels_and_json(pgpulse):
    tool = promtool()
    odd = 'we"ird\\db'        # we"ird\db: a quote and a backslash
    quoted = '"' + odd.replace('"', '""') + '"'
    pp = start(pgpulse, databases={quoted: DATABASES["appdb"]})
    run(pp, "select 1", 2, dbname=odd)
    body = scrape(pp)
    assert 'database="we\\"ird\\\\db"' in body
    samples = parse_metrics(body)
    assert pools_of(samples) == [(odd, "app")]
    assert value(samples, "pgpulse_pool_queries_total", database=odd, user="app") == 2
    r = subprocess.run([tool, "check", "metrics"], input=body, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    status, _, text = http_request(pp.metrics_port, path="/health")
    assert status == 200
    assert [(p["database"], p["user"]) for p in json.loads(text)["pools"]] == [(odd, "app")]


# ---------------------------------------------- SHOW POOLS / SHOW STATS values

def test_pool_gauges_match_show_pools_with_clients_holding_and_waiting(pgpulse):
    pp = start(pgpulse, databases={
        "appdb": DATABASES["appdb"],
        "otherdb": DATABASES["otherdb"] + " pool_size=1",
    })
    # appdb/app: two servers, one held in a transaction, one idle
    holder = pp.connect(prepare_threshold=None)
    other = pp.connect(prepare_threshold=None)
    holder.execute("select 1")
    other.execute("select 1")
    other.commit()
    # otherdb/app (one server): held, and a second client queued behind it
    blocker = pp.connect(dbname="otherdb", prepare_threshold=None)
    blocker.execute("select 1")
    waiter_conn = pp.connect(dbname="otherdb", autocommit=True, prepare_threshold=None)
    waiter = threading.Thread(target=lambda: waiter_conn.execute("select 1"))
    waiter.start()
    try:
        wait_until(lambda: [p for p in pp.show("POOLS")
                            if p["database"] == "otherdb" and p["cl_waiting"] == 1],
                   what="a client waiting on otherdb")
        before = {(p["database"], p["user"]): p for p in pp.show("POOLS")}
        samples = parse_metrics(scrape(pp))
        after = {(p["database"], p["user"]): p for p in pp.show("POOLS")}
    finally:
        blocker.commit()
        waiter.join(10)
        holder.commit()
    assert not waiter.is_alive()
    assert sorted(before) == pools_of(samples)
    expected = {("appdb", "app"): dict(active=1, idle=1, cl_waiting=0),
                ("otherdb", "app"): dict(active=1, idle=0, cl_waiting=1)}
    for (database, user), row in before.items():
        lab = dict(database=database, user=user)
        where = f"{database}/{user}"
        assert value(samples, "pgpulse_pool_servers", state="active", **lab) == row["sv_active"] \
            == expected[(database, user)]["active"], where
        assert value(samples, "pgpulse_pool_servers", state="idle", **lab) == row["sv_idle"] \
            == expected[(database, user)]["idle"], where
        assert value(samples, "pgpulse_pool_servers", state="login", **lab) == row["sv_login"], where
        assert value(samples, "pgpulse_pool_servers", state="tested", **lab) == row["sv_tested"], where
        assert value(samples, "pgpulse_pool_clients", state="active", **lab) == row["cl_active"], where
        assert value(samples, "pgpulse_pool_clients", state="waiting", **lab) == row["cl_waiting"] \
            == expected[(database, user)]["cl_waiting"], where
        assert value(samples, "pgpulse_pool_size", **lab) == (1 if database == "otherdb" else 2)
        maxwait = value(samples, "pgpulse_pool_maxwait_seconds", **lab)
        first = row["maxwait"] + row["maxwait_us"] / 1e6
        last = after[(database, user)]["maxwait"] + after[(database, user)]["maxwait_us"] / 1e6
        assert first - 1e-6 <= maxwait <= last + 1e-6, f"{where}: {first} <= {maxwait} <= {last}"
    assert value(samples, "pgpulse_pool_maxwait_seconds", database="otherdb", user="app") > 0


def test_pool_counters_match_show_stats_totals_per_database(pgpulse):
    pp = start(pgpulse)
    traffic_on_three_pools(pp)
    with psycopg.connect(pp.dsn(), prepare_threshold=None, connect_timeout=10) as c:
        c.execute("select 1")
        c.execute("select 2")
        c.commit()
    totals = {r["database"]: r for r in pp.show("STATS_TOTALS")}
    samples = parse_metrics(scrape(pp))
    # per pool, what the clients did (psycopg sends BEGIN and COMMIT too)
    assert value(samples, "pgpulse_pool_queries_total", database="appdb", user="app") == 3 + 4
    assert value(samples, "pgpulse_pool_transactions_total", database="appdb", user="app") == 3 + 1
    assert value(samples, "pgpulse_pool_queries_total", database="appdb", user="md5user") == 4
    assert value(samples, "pgpulse_pool_queries_total", database="otherdb", user="app") == 2
    # per database, summed over users, what SHOW STATS_TOTALS says
    columns = {
        "pgpulse_pool_queries_total": ("query_count", 1),
        "pgpulse_pool_transactions_total": ("xact_count", 1),
        "pgpulse_pool_server_assignments_total": ("server_assignment_count", 1),
        "pgpulse_pool_received_bytes_total": ("bytes_received", 1),
        "pgpulse_pool_sent_bytes_total": ("bytes_sent", 1),
        "pgpulse_pool_query_time_seconds_total": ("query_time", 1e6),
        "pgpulse_pool_transaction_time_seconds_total": ("xact_time", 1e6),
        "pgpulse_pool_wait_time_seconds_total": ("wait_time", 1e6),
    }
    assert sorted(totals) == ["appdb", "otherdb"]
    for database, row in totals.items():
        for metric, (column, scale) in columns.items():
            got = sum(v for _, v in series(samples, metric, database=database))
            assert round(got * scale) == int(row[column]), \
                f"{metric} summed over {database}'s users: {got}, STATS_TOTALS {column} {row[column]}"


# ------------------------------------------------------- efficiency and health

def test_efficiency_gauges_for_each_window_agree_with_show_efficiency(pgpulse):
    pp = start(pgpulse)
    traffic_on_three_pools(pp)
    run(pp, "select pg_sleep(0.02)", 3)
    # The pools are idle now: utilization and saturation can only fall as
    # open time grows, reuse stays, suggested size can only fall; so the
    # scrape lies between a SHOW EFFICIENCY before and one after it.
    before = {(r["database"], r["user"]): r for r in pp.show("EFFICIENCY 5m")}
    samples = parse_metrics(scrape(pp))
    after = {(r["database"], r["user"]): r for r in pp.show("EFFICIENCY 5m")}
    pools = pools_of(samples)
    assert pools == sorted(before)
    for database, user in pools:
        lab = dict(database=database, user=user)
        for name in EFFICIENCY_RATIOS + ["pgpulse_pool_suggested_size"]:
            windows = [w["window"] for w, _ in series(samples, name, **lab)]
            assert windows == WINDOWS, f"{name} {database}/{user}: {windows}"
            for w in WINDOWS:
                v = value(samples, name, window=w, **lab)
                if name.endswith("_ratio"):
                    assert 0.0 <= v <= 1.0, f"{name}{{window={w}}} {database}/{user} = {v}"
                else:
                    assert v == int(v) and v >= 0
        b, a = before[(database, user)], after[(database, user)]
        pct = 0.05 + 1e-9   # SHOW EFFICIENCY rounds to 0.1 %
        for name, column in [("pgpulse_pool_utilization_ratio", "utilization_pct"),
                             ("pgpulse_pool_saturation_ratio", "saturation_pct"),
                             ("pgpulse_pool_reuse_ratio", "reuse_pct")]:
            v = 100 * value(samples, name, window="5m", **lab)
            assert float(a[column]) - pct <= v <= float(b[column]) + pct, \
                f"{name} {database}/{user}: {v} % not within SHOW EFFICIENCY {a[column]}..{b[column]}"
        v = value(samples, "pgpulse_pool_suggested_size", window="5m", **lab)
        assert a["suggested_pool_size"] <= v <= b["suggested_pool_size"]
    # appdb/app's 6 requests ran on one server: 5 of 6 assignments reused it
    assert value(samples, "pgpulse_pool_reuse_ratio", window="1m", database="appdb",
                 user="app") == pytest.approx(5 / 6)


def test_pool_within_its_base_size_shows_no_overflow_or_reserve_time(pgpulse):
    pp = start(pgpulse, default_pool_size=2)
    run(pp, "select 1", 3)
    rows = pp.show("POOLS")
    assert [(r["sv_idle"], r["sv_overflow"], r["sv_reserve"]) for r in rows] == [(1, 0, 0)]
    samples = parse_metrics(scrape(pp))
    for name in ("pgpulse_pool_overflow_ratio", "pgpulse_pool_reserve_ratio"):
        got = {lab["window"]: v for lab, v in series(samples, name, database="appdb", user="app")}
        assert got == {w: 0 for w in WINDOWS}, \
            f"{name}: one server open, base size 2, no overflow or reserve tier: {got}"


def test_overflow_tier_use_shows_in_overflow_metrics(pgpulse):
    pp = start(pgpulse, default_pool_size=1, overflow_pool_size=1)
    holder = pp.connect(prepare_threshold=None)
    holder.execute("select 1")              # the base server, held
    run(pp, "select 1", 2)                  # needs the overflow server
    try:
        rows = pp.show("POOLS")
        assert [(r["sv_active"], r["sv_idle"], r["sv_overflow"]) for r in rows] == [(1, 1, 1)]
        samples = parse_metrics(scrape(pp))
    finally:
        holder.commit()
    lab = dict(database="appdb", user="app")
    assert value(samples, "pgpulse_pool_overflow_opened_total", **lab) == 1
    assert value(samples, "pgpulse_pool_reserve_opened_total", **lab) == 0
    assert value(samples, "pgpulse_pool_servers_opened_total", **lab) == 2
    for w in WINDOWS:
        assert 0 < value(samples, "pgpulse_pool_overflow_ratio", window=w, **lab) <= 1, w


def health_mix(pgpulse):
    """Three pools of one database under warning 10 ms / critical 40 ms on
    query p95 (utilization checks off): crit runs 50 ms queries, warn 15 ms
    ones, ok trivial ones, 20 of each (the samples a percentile needs)."""
    dbs = {name: DATABASES["appdb"] for name in ("crit", "warn", "ok")}
    pp = start(pgpulse, databases=dbs, health_query_p95_warning="10ms",
               health_query_p95_critical="40ms", health_utilization_warning=0,
               health_utilization_critical=0)
    run(pp, "select pg_sleep(0.05)", 20, dbname="crit")
    run(pp, "select pg_sleep(0.015)", 20, dbname="warn")
    run(pp, "select 1", 20, dbname="ok")
    return pp


def test_pool_health_gauge_matches_show_health(pgpulse):
    pp = health_mix(pgpulse)
    # the row with no database is the instance's verdict (GET /health's)
    shown = {r["database"]: r for r in pp.show("HEALTH") if r["database"] is not None}
    samples = parse_metrics(scrape(pp))
    got = {lab["database"]: v for lab, v in series(samples, "pgpulse_pool_health")}
    assert got == {db: HEALTH_LEVELS[r["status"]] for db, r in shown.items()}
    assert got == {"crit": 2, "warn": 1, "ok": 0}


# --------------------------------------------------------------------- /health

def test_health_endpoint_is_200_ok_for_pools_within_default_thresholds(pgpulse):
    pp = start(pgpulse)
    traffic_on_three_pools(pp)
    # A pool a few milliseconds old may still have spent most of its short
    # life busy (utilization warning at 80 %); wait until idle time dominates.
    wait_until(lambda: all(float(r["utilization_pct"]) < 50 for r in pp.show("EFFICIENCY 5m")),
               what="utilization below 50 %")
    status, ctype, body = http_request(pp.metrics_port, path="/health")
    assert ctype.startswith("application/json"), ctype
    doc = json.loads(body)
    assert status == 200, body
    assert (doc["status"], doc["reason"]) == ("ok", "")
    assert sorted((p["database"], p["user"], p["status"], p["reason"]) for p in doc["pools"]) == [
        ("appdb", "app", "ok", ""), ("appdb", "md5user", "ok", ""), ("otherdb", "app", "ok", "")]


def test_health_endpoint_shows_a_critical_query_p95_but_stays_200(pgpulse):
    # slow queries are the application's to fix: a load balancer taking the
    # instance out would not make them faster
    pp = start(pgpulse, health_query_p95_critical="10ms", health_utilization_warning=0,
               health_utilization_critical=0)
    run(pp, "select pg_sleep(0.05)", 20)
    run(pp, "select 1", 3, dbname="otherdb")
    status, ctype, body = http_request(pp.metrics_port, path="/health")
    doc = json.loads(body)
    assert status == 200, body
    assert ctype.startswith("application/json"), ctype
    assert doc["status"] == "ok"
    pools = {(p["database"], p["user"]): p for p in doc["pools"]}
    assert sorted(pools) == [("appdb", "app"), ("otherdb", "app")]
    crit = pools[("appdb", "app")]
    assert crit["status"] == "critical"
    assert re.fullmatch(r"query p95 0\.\d+ s is at or above the critical 0\.01 s", crit["reason"]), crit
    assert pools[("otherdb", "app")]["status"] == "ok"
    assert pools[("otherdb", "app")]["reason"] == ""
    shown = {(r["database"], r["user"]): r for r in pp.show("HEALTH")}
    assert shown[("appdb", "app")]["status"] == "critical"
    assert shown[("appdb", "app")]["reason"] == crit["reason"]
    assert (shown[(None, None)]["status"], shown[(None, None)]["reason"]) == ("ok", "")


def test_health_warning_alone_keeps_200(pgpulse):
    pp = start(pgpulse, health_query_p95_warning="10ms", health_utilization_warning=0,
               health_utilization_critical=0)
    run(pp, "select pg_sleep(0.05)", 20)
    status, _, body = http_request(pp.metrics_port, path="/health")
    doc = json.loads(body)
    assert (status, doc["status"]) == (200, "ok"), body
    assert [p["status"] for p in doc["pools"]] == ["warning"]


def health_now(pp):
    """(HTTP status, the /health document, its pools by (database, user),
    SHOW HEALTH's rows by (database, user), the instance's keyed (None, None))."""
    status, _, body = http_request(pp.metrics_port, path="/health")
    doc = json.loads(body)
    pools = {(p["database"], p["user"]): p for p in doc["pools"]}
    return status, doc, pools


def show_health(pp):
    return {(r["database"], r["user"]): r for r in pp.show("HEALTH")}


def assert_serving_and_ok(pp):
    status, doc, pools = health_now(pp)
    assert status == 200, doc
    assert (pools[("appdb", "app")]["status"], pools[("appdb", "app")]["reason"]) == ("ok", ""), doc
    assert (doc["status"], doc.get("reason")) == ("ok", ""), doc


def test_single_slow_query_on_an_idle_large_pool_never_fails_health(pgpulse):
    # The case under the default thresholds: pool size 80, one
    # server open, nobody waiting, one query longer than the query p95
    # critical threshold (2 s). The query must really last 3 s, or "after"
    # would not be after a query past that threshold.
    pp = start(pgpulse, default_pool_size=80)
    run(pp, "select 1")
    with RawConn(pp.port) as slow:
        slow.send(query_message("select pg_sleep(3)"))
        wait_until(lambda: [r["sv_active"] for r in pp.show("POOLS")] == [1], 10,
                   "the slow query to hold its server")
        # judged again and again for as long as the query runs
        checks = 0
        while not select.select([slow.sock], [], [], 0.1)[0]:
            assert_serving_and_ok(pp)
            checks += 1
        assert checks > 0
        assert slow.result() == [[""]]
    assert_serving_and_ok(pp)
    row = show_health(pp)[("appdb", "app")]
    assert (row["status"], row["reason"]) == ("ok", ""), row


def errors_until_closed(conn):
    """The ErrorResponse messages a connection got before pgpulse closed it."""
    errors = []
    try:
        while True:
            t, body = conn.recv_msg()
            if t == "E":
                errors.append(error_fields(body))
    except (EOFError, ConnectionError):
        return errors


def test_wait_timeout_storm_makes_the_pool_critical(pgpulse):
    # Two clients hold both servers of a pool of 2 in open transactions; two
    # more wait and time out (query_wait_timeout 1 s).
    pp = start(pgpulse, default_pool_size=2, query_wait_timeout=1)
    holders = [pp.connect(prepare_threshold=None) for _ in range(2)]
    for h in holders:
        h.execute("select 1")  # a transaction begun: the server stays linked
    waiters = [RawConn(pp.port) for _ in range(2)]
    try:
        for w in waiters:
            w.send(query_message("select 1"))
        for w in waiters:
            assert [e.get("M", "").split(":")[0] for e in errors_until_closed(w)] == \
                ["query_wait_timeout"]
    finally:
        for w in waiters:
            w.close()

    # the only pool fails every client that needs a server: out of rotation
    status, doc, pools = health_now(pp)
    crit = pools[("appdb", "app")]
    assert crit["status"] == "critical", doc
    assert re.fullmatch(r"2 clients timed out waiting \(query_wait_timeout\), none served since, "
                        r"all 2 connections busy", crit["reason"]), crit
    assert (status, doc["status"]) == (503, "unavailable"), doc
    assert doc["reason"] == "every pool is failing (1), the first: " + crit["reason"], doc
    shown = show_health(pp)
    assert (shown[(None, None)]["status"], shown[(None, None)]["reason"]) == ("unavailable", doc["reason"])
    assert (shown[("appdb", "app")]["status"], shown[("appdb", "app")]["reason"]) == ("critical", crit["reason"])

    # another pool serves: the instance can serve a new client, appdb stays critical
    run(pp, "select 1", dbname="otherdb")
    status, doc, pools = health_now(pp)
    assert (status, doc["status"], pools[("appdb", "app")]["status"]) == (200, "ok", "critical"), doc

    # appdb serves again: what remains is a warning for the window
    for h in holders:
        h.commit()
    run(pp, "select 1")
    status, doc, pools = health_now(pp)
    assert status == 200, doc
    assert pools[("appdb", "app")]["status"] == "warning", doc
    assert re.fullmatch(r"a client timed out waiting \(query_wait_timeout\) [\d.]+ s ago",
                        pools[("appdb", "app")]["reason"]), doc


def test_health_is_503_during_a_safe_shutdown(pgpulse):
    # four servers open, one of them held: the pool itself is far from any threshold
    pp = start(pgpulse, default_pool_size=4)
    clients = [pp.connect(prepare_threshold=None) for _ in range(4)]
    for c in clients:
        c.execute("select 1")  # each in a transaction, on a server of its own
    holder = clients.pop()
    for c in clients:
        c.commit()
    holder.execute("select 1")  # a transaction open: SIGINT waits for its server
    assert health_now(pp)[0] == 200
    pp.signal(signal.SIGINT)
    wait_until(lambda: health_now(pp)[0] == 503, 10, "/health to answer 503 after SIGINT")
    status, doc, pools = health_now(pp)
    assert (doc["status"], doc["reason"]) == ("unavailable", "shutting down"), doc
    assert pools[("appdb", "app")]["status"] == "ok", doc  # the pools themselves are fine
    assert pp.running
    holder.rollback()
    pp.wait_exit()


def test_health_is_503_when_postgres_is_down_for_every_pool(pgpulse, pg):
    pp = start(pgpulse)
    run(pp, "select 1")
    run(pp, "select 1", dbname="otherdb")
    pg.stop()  # the autouse fixture starts it again for the next test
    wait_until(lambda: not pp.show("SERVERS"), 10, "pgpulse to notice its servers are gone")
    for db in ("appdb", "otherdb"):
        with pytest.raises(psycopg.OperationalError):
            run(pp, "select 1", dbname=db)
    status, doc, pools = health_now(pp)
    assert (status, doc["status"]) == (503, "unavailable"), doc
    assert doc["reason"].startswith("every pool is failing (2), the first: cannot log in to PostgreSQL: "), doc
    for key in (("appdb", "app"), ("otherdb", "app")):
        assert pools[key]["status"] == "critical", doc
        assert pools[key]["reason"].startswith("cannot log in to PostgreSQL: "), doc
    shown = show_health(pp)
    assert (shown[(None, None)]["status"], shown[(None, None)]["reason"]) == ("unavailable", doc["reason"])


def test_health_recovers_when_postgres_is_back_though_no_client_comes(pgpulse, pg):
    """/health 503 takes the instance out of a load balancer's rotation, so
    no client comes to open a server: pgpulse itself tries one connection
    per failing pool every 10 s (PROBE_PERIOD), sees PostgreSQL back, and
    /health answers 200 again."""
    pp = start(pgpulse, server_login_retry=1)
    run(pp, "select 1")
    run(pp, "select 1", dbname="otherdb")
    pg.stop()  # the autouse fixture starts it again for the next test
    wait_until(lambda: not pp.show("SERVERS"), 10, "pgpulse to notice its servers are gone")
    for db in ("appdb", "otherdb"):
        with pytest.raises(psycopg.OperationalError):
            run(pp, "select 1", dbname=db)
    assert health_now(pp)[0] == 503
    pg.start()
    # each pool tries on its own (10 s after its own last failure): the
    # instance answers 200 with the first, every pool is ok after the last
    wait_until(lambda: health_now(pp)[0] == 200, 30, "/health to answer 200 with PostgreSQL back")
    wait_until(lambda: all(p["status"] == "ok" for p in health_now(pp)[2].values()), 30,
               "every pool to be ok again")


def test_health_is_200_when_one_pool_of_two_cannot_reach_postgres(pgpulse):
    dbs = dict(DATABASES, broken=f"host=127.0.0.1 port={free_port()} dbname=appdb")
    pp = start(pgpulse, databases=dbs)
    run(pp, "select 1")
    with pytest.raises(psycopg.OperationalError):
        run(pp, "select 1", dbname="broken")
    status, doc, pools = health_now(pp)
    assert pools[("broken", "app")]["status"] == "critical", doc
    assert pools[("broken", "app")]["reason"].startswith("cannot log in to PostgreSQL: "), doc
    assert pools[("appdb", "app")]["status"] == "ok", doc
    assert (status, doc["status"], doc["reason"]) == (200, "ok", ""), doc
    shown = show_health(pp)
    assert shown[("broken", "app")]["reason"] == pools[("broken", "app")]["reason"]
    assert (shown[(None, None)]["status"], shown[(None, None)]["reason"]) == ("ok", "")


def test_unknown_path_answers_404(pgpulse):
    pp = start(pgpulse)
    for path in ("/", "/metricsx", "/health/extra", "/favicon.ico"):
        status, _, body = http_request(pp.metrics_port, path=path)
        assert status == 404, f"{path}: {status} {body}"
    assert pp.running


def test_post_answers_405(pgpulse):
    pp = start(pgpulse)
    for path in ("/metrics", "/health"):
        status, _, body = http_request(pp.metrics_port, "POST", path, body="x=1")
        assert status == 405, f"POST {path}: {status} {body}"
    status, _, _ = http_request(pp.metrics_port, path="/metrics")
    assert status == 200


def test_head_answers_like_get_without_a_body(pgpulse):
    # HTTP requires GET and HEAD of every server; load balancers often
    # check health with HEAD.
    pp = start(pgpulse)
    run(pp, "select 1")
    for path in ("/health", "/metrics"):
        get_status, get_type, _ = http_request(pp.metrics_port, "GET", path)
        status, ctype, body = http_request(pp.metrics_port, "HEAD", path)
        assert (status, ctype, body) == (get_status, get_type, ""), f"HEAD {path}"


def test_metrics_port_zero_opens_no_endpoint(pgpulse):
    pp = start(pgpulse, metrics=False)          # metrics_port = 0
    run(pp, "select 1")
    assert "metrics on" not in pp.log()
    assert tcp_listen_ports(pp.pid) == {pp.port}


def test_metrics_endpoint_is_announced_and_listens_on_its_port(pgpulse):
    pp = start(pgpulse)
    assert re.search(rf"metrics on http://127\.0\.0\.1:{pp.metrics_port}/metrics", pp.log())
    assert tcp_listen_ports(pp.pid) == {pp.port, pp.metrics_port}


def test_metrics_port_in_use_stops_startup_with_a_message(pgpulse):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        mport = taken.getsockname()[1]
        pp = pgpulse(make_ini(metrics_port=mport), USERLIST, wait=False)
        rc = pp.wait_exit(10)
    assert rc != 0
    assert re.search(rf"could not listen for metrics on 127\.0\.0\.1:{mport}", pp.log()), pp.log()


# ------------------------------------------- limits: what a peer may cost pgpulse

MB = 1024 * 1024


def send_oversized(port, head, filler=b"a", total=100 * MB):
    """Send `head`, then up to `total` bytes of filler, to the metrics port;
    stop when pgpulse stops taking them (it answered and closed, or stopped
    reading). Returns the status line pgpulse answered, None when it closed
    the connection without one, "no answer" when it kept it open."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        chunk = filler * (256 * 1024 // len(filler))
        try:
            s.sendall(head)
            sent = 0
            while sent < total:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        try:
            s.settimeout(10)
            reply = s.recv(4096)
        except ConnectionResetError:
            return None
        except socket.timeout:
            return "no answer"
    return reply.split(b"\r\n", 1)[0].decode() or None


def assert_refused(status_line, what):
    assert status_line is None or re.match(r"HTTP/1\.[01] 4\d\d ", status_line), \
        f"{what}: pgpulse answered {status_line!r}"


CHUNKED_POST = b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
OVERSIZED_BODIES = {
    # what is sent before the 100 MB, and what the 100 MB are made of
    "POST with Content-Length": (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                                 % (100 * MB), b"a"),
    "GET with Content-Length": (b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                                % (100 * MB), b"a"),
    "POST chunked": (CHUNKED_POST + b"%x\r\n" % (100 * MB), b"a"),
    "POST chunked, endless chunk size": (CHUNKED_POST, b"f"),
}


@pytest.mark.parametrize("kind", list(OVERSIZED_BODIES))
def test_100_mb_request_body_is_refused_without_growing_memory(pgpulse, kind):
    # it was buffered whole: 512 MB took pgpulse from 8 MB to 540 MB, for good
    pp = start(pgpulse)
    before = pp.rss()
    head, filler = OVERSIZED_BODIES[kind]
    status = send_oversized(pp.metrics_port, head, filler)
    grown = pp.rss() - before
    assert grown < 50 * MB, f"{kind}: pgpulse grew by {grown / MB:.0f} MB"
    assert_refused(status, kind)
    assert http_request(pp.metrics_port)[0] == 200


@pytest.mark.parametrize("where", ["header", "request line"])
def test_100_mb_of_headers_is_refused_without_growing_memory(pgpulse, where):
    pp = start(pgpulse)
    before = pp.rss()
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: " if where == "header" else b"GET /"
    status = send_oversized(pp.metrics_port, head)
    grown = pp.rss() - before
    assert grown < 50 * MB, f"{where}: pgpulse grew by {grown / MB:.0f} MB"
    assert_refused(status, where)
    assert http_request(pp.metrics_port)[0] == 200


def open_idle_sockets(port, n):
    """n connections to 127.0.0.1:port that send nothing (connects beyond the
    listen queue stay pending; that is fine)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def test_idle_http_connections_do_not_stop_pooler_logins(pgpulse):
    # 1,100 idle HTTP connections used up 1,024 descriptors and logins timed
    # out; here pgpulse gets 128 descriptors and 200 idle HTTP connections
    pp = start(pgpulse, nofile=(128, 128))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 400:
        pytest.skip(f"the test needs 400 descriptors of its own, has {soft}")
    socks = open_idle_sockets(pp.metrics_port, 200)
    try:
        # the default metrics_max_connections
        wait_until(lambda: count_tcp_sockets(pp.pid, pp.metrics_port) >= 16, 5,
                   "pgpulse to accept HTTP connections")
        with psycopg.connect(pp.dsn(), connect_timeout=5) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert count_tcp_sockets(pp.pid, pp.metrics_port) == 16
    finally:
        for s in socks:
            s.close()


def test_connection_cap_frees_its_slots_however_connections_end(pgpulse):
    # refused, reset mid-request, served, timed out: each closed connection
    # gives its slot back, or the endpoint would stop accepting for good
    pp = start(pgpulse, metrics_max_connections=2)
    for _ in range(5):
        for kind in ("POST with Content-Length", "POST chunked, endless chunk size"):
            assert_refused(send_oversized(pp.metrics_port, *OVERSIZED_BODIES[kind]), kind)
        assert_refused(send_oversized(pp.metrics_port, b"GET /", total=MB), "request line")
        with socket.create_connection(("127.0.0.1", pp.metrics_port)) as s:
            s.sendall(b"GET /metr")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        assert http_request(pp.metrics_port)[0] == 200
    for s in open_idle_sockets(pp.metrics_port, 6):
        s.close()
    wait_until(lambda: http_request(pp.metrics_port, path="/health")[0] == 200, 15,
               "a request to be served after idle connections closed", ignore=(OSError,))


@pytest.mark.slow
def test_idle_http_connection_is_closed_by_pgpulse(pgpulse):
    pp = start(pgpulse)
    with socket.create_connection(("127.0.0.1", pp.metrics_port)) as s:
        s.settimeout(20)
        started = time.monotonic()
        assert s.recv(1) == b""  # pgpulse closed it
        assert time.monotonic() - started < 15


# ----------------------------------------------------------------- alert rules

def test_alert_rules_pass_promtool_check_rules():
    tool = promtool()
    r = subprocess.run([tool, "check", "rules", rules_path()], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def promtool_test_rules(tool, tests_yaml):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "pgpulse-rules.test.yml")
        with open(path, "w") as f:
            f.write(tests_yaml.replace("@RULES@", json.dumps(rules_path())))
        r = subprocess.run([tool, "test", "rules", path], capture_output=True, text=True,
                           timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def bucket_series(instance, database, counts):
    """input_series lines: per le, a counter growing by counts[le] a minute."""
    return "".join(
        f"      - series: 'pgpulse_query_duration_seconds_bucket{{instance=\"{instance}\","
        f"job=\"pgpulse\",database=\"{database}\",user=\"app\",le=\"{le}\"}}'\n"
        f"        values: '0+{per_minute}x40'\n"
        for le, per_minute in counts.items())


QUERY_P95_TEST = """\
rule_files:
  - @RULES@
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
""" + (
    # appdb/app, spread over two instances that must be added up: each
    # minute 90 of 100 requests at or below 0.5 s and all at or below 1 s,
    # so p95 = 0.5 + (95-90)/10 * 0.5 = 0.75 s (> 0.5 s, < 2 s)
    bucket_series("a:9127", "appdb", {"0.25": 45, "0.5": 45, "1": 50, "+Inf": 50})
    + bucket_series("b:9127", "appdb", {"0.25": 45, "0.5": 45, "1": 50, "+Inf": 50})
    # otherdb/app: 90 at or below 0.25 s, 96 at or below 0.5 s, so
    # p95 = 0.25 + (95-90)/6 * 0.25 = 0.458 s: just under the threshold
    + bucket_series("a:9127", "otherdb", {"0.25": 90, "0.5": 96, "1": 100, "+Inf": 100})
    # backup/app: a burst of slow requests in minutes 1-3 only (p95 0.75 s
    # for a few minutes, then no traffic): shorter than `for`
    + "      - series: 'pgpulse_query_duration_seconds_bucket{instance=\"a:9127\",job=\"pgpulse\","
      "database=\"backup\",user=\"app\",le=\"0.5\"}'\n"
      "        values: '0 90 180 270 270x36'\n"
      "      - series: 'pgpulse_query_duration_seconds_bucket{instance=\"a:9127\",job=\"pgpulse\","
      "database=\"backup\",user=\"app\",le=\"1\"}'\n"
      "        values: '0 100 200 300 300x36'\n"
      "      - series: 'pgpulse_query_duration_seconds_bucket{instance=\"a:9127\",job=\"pgpulse\","
      "database=\"backup\",user=\"app\",le=\"+Inf\"}'\n"
      "        values: '0 100 200 300 300x36'\n"
) + """\
    alert_rule_test:
      # pending, not firing, before `for: 10m` has passed
      - alertname: PgpulseQueryP95High
        eval_time: 8m
        exp_alerts: []
      - alertname: PgpulseQueryP95High
        eval_time: 20m
        exp_alerts:
          - exp_labels:
              severity: warning
              database: appdb
              user: app
            exp_annotations:
              summary: "pgpulse: query p95 of appdb/app is 750ms"
              description: "The 95th percentile of query time through pgpulse (waiting for a server included) for database appdb, user app has been above 500ms for 10 minutes. Compare with the server time (pgpulse_server_duration_seconds) to tell slow queries from queueing in the pool."
      # 0.75 s is below the critical 2 s
      - alertname: PgpulseQueryP95Critical
        eval_time: 20m
        exp_alerts: []
"""


def test_query_p95_alert_fires_above_the_threshold_and_not_below():
    promtool_test_rules(promtool(), QUERY_P95_TEST)


HEALTH_AND_DOWN_TEST = """\
rule_files:
  - @RULES@
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'pgpulse_pool_health{instance="a:9127",job="pgpulse",database="appdb",user="app"}'
        values: '2x40'
      - series: 'pgpulse_pool_health{instance="a:9127",job="pgpulse",database="otherdb",user="app"}'
        values: '1x40'
      - series: 'pgpulse_pool_health{instance="a:9127",job="pgpulse",database="quiet",user="app"}'
        values: '0x40'
      - series: 'pgpulse_up{instance="a:9127",job="pgpulse"}'
        values: '1x40'
      - series: 'up{instance="a:9127",job="pgpulse"}'
        values: '1x40'
      - series: 'up{instance="b:9127",job="pgpulse"}'
        values: '1 1 1 0x37'
    alert_rule_test:
      - alertname: PgpulsePoolHealthCritical
        eval_time: 3m
        exp_alerts: []
      - alertname: PgpulsePoolHealthCritical
        eval_time: 10m
        exp_alerts:
          - exp_labels:
              severity: critical
              instance: a:9127
              job: pgpulse
              database: appdb
              user: app
            exp_annotations:
              summary: "pgpulse: pool appdb/app is critical"
              description: "pgpulse on a:9127 judges pool appdb/app critical on its 5-minute window. GET /health or SHOW HEALTH gives the reason."
      - alertname: PgpulsePoolHealthWarning
        eval_time: 10m
        exp_alerts: []
      - alertname: PgpulsePoolHealthWarning
        eval_time: 20m
        exp_alerts:
          - exp_labels:
              severity: warning
              instance: a:9127
              job: pgpulse
              database: otherdb
              user: app
            exp_annotations:
              summary: "pgpulse: pool otherdb/app is in warning"
              description: "pgpulse on a:9127 has judged pool otherdb/app warning for 15 minutes. GET /health or SHOW HEALTH gives the reason."
      - alertname: PgpulseDown
        eval_time: 4m
        exp_alerts: []
      - alertname: PgpulseDown
        eval_time: 10m
        exp_alerts:
          - exp_labels:
              severity: critical
              instance: b:9127
              job: pgpulse
            exp_annotations:
              summary: "pgpulse is down or not scraped"
              description: "pgpulse b:9127 has not answered a scrape for 2 minutes, or no pgpulse is scraped at all (pgpulse_up absent). Clients of a stopped pgpulse cannot reach PostgreSQL."
  # no pgpulse scraped at all
  - interval: 1m
    input_series:
      - series: 'up{instance="db1:9100",job="node"}'
        values: '1x10'
    alert_rule_test:
      - alertname: PgpulseDown
        eval_time: 5m
        exp_alerts:
          - exp_labels:
              severity: critical
            exp_annotations:
              summary: "pgpulse is down or not scraped"
              description: "pgpulse has not answered a scrape for 2 minutes, or no pgpulse is scraped at all (pgpulse_up absent). Clients of a stopped pgpulse cannot reach PostgreSQL."
"""


def test_health_and_down_alerts_fire_for_the_right_pools_and_instances():
    promtool_test_rules(promtool(), HEALTH_AND_DOWN_TEST)


# ------------------------------------------------- every name used is exported

PROMQL_METRIC = re.compile(r"\b(pgpulse_[a-zA-Z0-9_:]*)")

def exported_names(pgpulse):
    """Sample and family names of a real scrape after traffic (every family
    has samples then), the optional summaries included."""
    pp = start(pgpulse, metrics_summaries="on")
    traffic_on_three_pools(pp)
    body = scrape(pp)
    return {name for name, _, _ in parse_metrics(body)} | set(
        re.findall(r"^# TYPE (\S+) ", body, re.MULTILINE))


def test_alert_rules_only_use_exported_metrics(pgpulse):
    with open(rules_path()) as f:
        text = f.read()
    # every pgpulse_ name in the file: expressions, and annotations that
    # point the reader at a metric
    assert len(re.findall(r"^\s*expr:", text, re.MULTILINE)) >= 8
    used = set(PROMQL_METRIC.findall(text))
    assert {"pgpulse_query_duration_seconds_bucket", "pgpulse_pool_health"} <= used, used
    missing = used - exported_names(pgpulse)
    assert not missing, f"rules use metrics a scrape does not have: {sorted(missing)}"


def load_dashboard():
    path = os.path.join(srcdir(), DASHBOARD)
    assert os.path.isfile(path), f"{path} is missing"
    with open(path) as f:
        return json.load(f)


def all_panels(dash):
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))      # panels inside a collapsed row
    return out


def dashboard_exprs(dash):
    exprs = [t["expr"] for p in all_panels(dash) for t in p.get("targets", []) if t.get("expr")]
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and q:
            exprs.append(q)
    return exprs


def test_dashboard_has_percentile_wait_utilization_and_tier_panels():
    dash = load_dashboard()
    assert isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36
    assert dash.get("title") and dash.get("uid")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("database", "user"):
        q = variables[name]["query"]
        q = q["query"] if isinstance(q, dict) else q
        assert q.startswith("label_values(") and q.rstrip(")").endswith(name), (name, q)
    panels = [p for p in all_panels(dash) if p.get("type") != "row"]
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in panels:
        assert p.get("title") and p.get("gridPos") and p.get("targets"), p.get("title")
        assert p["datasource"]["uid"] == "${datasource}", p["title"]

    def panels_with(pattern):
        rx = re.compile(pattern)
        return [p["title"] for p in panels
                if any(rx.search(t.get("expr", "")) for t in p["targets"])]

    hq = r"histogram_quantile\(\s*0?\.{q}\s*,.*rate\(pgpulse_query_duration_seconds_bucket"
    percentile_panels = panels_with(hq.format(q="95"))
    assert percentile_panels, "no p95 panel over the query histogram"
    for q in ("5", "99"):
        assert set(panels_with(hq.format(q=q))) & set(percentile_panels), f"p{q} beside p95"
    assert panels_with(r"histogram_quantile\(\s*0?\.95\s*,\s*sum by \(le, instance\)"), "p95 per instance"
    assert panels_with(r"histogram_quantile\(\s*0?\.95\s*,.*pgpulse_wait_duration_seconds_bucket")
    assert panels_with(r"pgpulse_server_duration_seconds")
    assert panels_with(r"pgpulse_pool_utilization_ratio")
    assert panels_with(r"pgpulse_pool_saturation_ratio")
    tiers = set(panels_with(r"pgpulse_pool_overflow_ratio")) & set(panels_with(r"pgpulse_pool_reserve_ratio"))
    assert tiers, "overflow and reserve ratios in one panel"
    assert panels_with(r"rate\(pgpulse_pool_overflow_opened_total")
    assert panels_with(r"pgpulse_pool_clients\{[^}]*\}|pgpulse_pool_clients\b")
    assert panels_with(r"pgpulse_pool_servers\b")
    assert panels_with(r"pgpulse_pool_health")
    assert set(panels_with(r"pgpulse_pool_suggested_size")) & set(panels_with(r"pgpulse_pool_size\b"))


def test_dashboard_queries_only_use_exported_metrics(pgpulse):
    dash = load_dashboard()
    exprs = dashboard_exprs(dash)
    assert exprs
    for e in exprs:
        assert PROMQL_METRIC.search(e), f"query without a pgpulse metric: {e}"
    used = {m for e in exprs for m in PROMQL_METRIC.findall(e)}
    missing = used - exported_names(pgpulse)
    assert not missing, f"dashboard uses metrics a scrape does not have: {sorted(missing)}"
