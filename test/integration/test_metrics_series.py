"""What /metrics costs and what Prometheus makes of it (issue 14,
doc/telemetry.md "Series per pool"): the default bucket bounds make
histogram_quantile agree with SHOW LATENCY down to a wait of 0, the
SHOW LATENCY summaries are exported only with metrics_summaries = on, and
the number of series a pool adds is the one the documentation states.
PromQL is evaluated by promtool (Debian package prometheus), never
re-implemented here.
"""

import os
import re

import pytest

from pgpulse_harness import promql_check, wait_until
from test_metrics import (DATABASES, parse_metrics, promtool, run, scrape, series, srcdir, start,
                          make_ini)

# The figures doc/telemetry.md states ("Series per pool"); a change that
# adds or removes series changes both.
SERIES_PER_POOL = {"off": 226, "on": 331}
INSTANCE_SERIES = 22
# per PostgreSQL host (label host), whatever the pools over it; and the
# families a host has only once its role is known / its lag measured
SERIES_PER_HOST = 29
HOST_FAMILIES_WHEN_KNOWN = ("pgpulse_host_in_recovery", "pgpulse_host_lag_seconds", "pgpulse_host_lag_bytes")

# appdb's pool exists from the start (a forced user), with a server
# connected before any client asks: no client ever waits for one.
FORCED_USER_DB = {"appdb": DATABASES["appdb"] + " user=app"}


def pool_series(samples, database, user):
    return [(n, lab) for n, lab, _ in samples
            if lab.get("database") == database and lab.get("user") == user]


def families(found):
    counts = {}
    for name, _ in found:
        counts[name] = counts.get(name, 0) + 1
    return counts


def instance_series(samples):
    return [(n, lab) for n, lab, _ in samples
            if "database" not in lab and "user" not in lab and "host" not in lab]


def host_series(samples):
    return [(n, lab) for n, lab, _ in samples if "host" in lab]


def expected_host_series(found):
    """SERIES_PER_HOST per host, and one per sample of the families that
    come with a known role or a measured lag (their own rule is checked
    where roles are: here the host is what the login made it)."""
    hosts = {lab["host"] for _, lab in found}
    optional = [n for n, _ in found if n in HOST_FAMILIES_WHEN_KNOWN]
    return len(hosts) * SERIES_PER_HOST + len(optional)


def idle_servers(pp, database="appdb"):
    return sum(r["sv_idle"] for r in pp.show("POOLS") if r["database"] == database)


def wait_row(pp, database="appdb"):
    rows = [r for r in pp.show("LATENCY")
            if r["database"] == database and r["kind"] == "wait" and r["window"] == "1m"]
    return rows[0] if rows else None


# ------------------------------------------------------- zero waits are 0

def test_pool_whose_every_wait_is_zero_has_a_zero_wait_p95_in_prometheus(pgpulse):
    tool = promtool()
    pp = start(pgpulse, databases=FORCED_USER_DB, min_pool_size=1)
    wait_until(lambda: idle_servers(pp) >= 1, what="appdb's min_pool_size server")
    run(pp, "select 1", 20)
    samples = parse_metrics(scrape(pp))
    name = "pgpulse_wait_duration_seconds_bucket"
    buckets = [(n, lab, v) for n, lab, v in samples
               if n == name and lab.get("database") == "appdb"]
    assert buckets[-1][2] >= 20, buckets          # the waits were recorded
    row = wait_row(pp)
    assert row and row["count"] >= 20 and row["p95_us"] == 0 and row["max_us"] == 0, row   # as SHOW LATENCY says
    for q in ("0.5", "0.95", "0.99"):
        rc, out = promql_check(tool, buckets, f"histogram_quantile({q}, {name})",
                               [({"database": "appdb", "user": "app"}, 0.0)])
        assert rc == 0, f"histogram_quantile({q}) of waits that were all 0:\n{out}"


# ------------------------------------------------------ series per pool

def scrape_after_traffic(pgpulse, pools, summaries):
    pp = start(pgpulse, metrics_summaries=summaries)
    for dbname in pools:
        run(pp, "select 1", 3, dbname=dbname)
    return pp, parse_metrics(scrape(pp))


@pytest.mark.parametrize("summaries", ["off", "on"])
@pytest.mark.parametrize("pools", [["appdb"], ["appdb", "otherdb"]], ids=["1-pool", "2-pools"])
def test_series_per_pool_are_the_number_the_documentation_states(pgpulse, summaries, pools):
    pp, samples = scrape_after_traffic(pgpulse, pools, summaries)
    for dbname in pools:
        got = pool_series(samples, dbname, "app")
        assert len(got) == SERIES_PER_POOL[summaries], \
            f"{dbname}: {len(got)} series, by family: {families(got)}"
    assert len(instance_series(samples)) == INSTANCE_SERIES, families(instance_series(samples))
    hosts = host_series(samples)
    assert {lab["host"] for _, lab in hosts} == {f"{pp.pg.host}:{pp.pg.port}"}, families(hosts)
    assert len(hosts) == expected_host_series(hosts), families(hosts)
    assert len(samples) == INSTANCE_SERIES + len(pools) * SERIES_PER_POOL[summaries] + len(hosts)


def test_metrics_summaries_on_by_reload_exports_the_show_latency_windows(pgpulse):
    pp = start(pgpulse)
    config = {r["key"]: r for r in pp.show("CONFIG")}
    assert config["metrics_summaries"]["value"] == "0"
    assert config["metrics_summaries"]["changeable"] == "yes"
    run(pp, "select 1", 5)
    assert not series(parse_metrics(scrape(pp)), "pgpulse_latency_seconds")
    pp.write_config(make_ini(metrics_port=pp.metrics_port, metrics_summaries="on"))
    assert pp.command("RELOAD") == "RELOAD"
    assert {r["key"]: r for r in pp.show("CONFIG")}["metrics_summaries"]["value"] == "1"
    samples = parse_metrics(scrape(pp))
    for window in ("1m", "5m", "15m"):
        latency = {r["kind"]: r for r in pp.show(f"LATENCY {window}") if r["database"] == "appdb"}
        for kind in ("query", "xact", "wait", "server", "connect"):
            got = series(samples, "pgpulse_latency_seconds", database="appdb", user="app",
                         kind=kind, window=window, quantile="0.95")
            assert len(got) == 1, (kind, window)
            want = latency[kind]["p95_us"]
            assert got[0][1] * 1e6 == pytest.approx(want, abs=0.5), (kind, window)


def test_documentation_states_the_counted_series():
    with open(os.path.join(srcdir(), "doc", "telemetry.md")) as f:
        doc = f.read()
    section = doc[doc.index("### Series per pool"):]
    section = section[:section.index("\n## ")] if "\n## " in section else section
    totals = dict(re.findall(r"\| \*\*`metrics_summaries = (\w+)`[^|]*\*\* \| \*\*(\d+)\*\* \|", section))
    assert {k: int(v) for k, v in totals.items()} == SERIES_PER_POOL, totals
    assert f"{INSTANCE_SERIES} series per instance" in section
    assert f"{SERIES_PER_HOST} series\nper PostgreSQL host" in section
    assert f"{SERIES_PER_HOST + 1} once its role is known" in section
    assert f"{SERIES_PER_HOST + 3} for a standby whose lag was measured" in section
    for setting, per_pool in SERIES_PER_POOL.items():
        assert f"{INSTANCE_SERIES + 1000 * per_pool:,}" in section, setting
