"""The operator's monitoring in contrib/ (issue 14): the alert rules'
unit tests (contrib/prometheus/pgpulse-rules.test.yml) pass Prometheus' own
evaluator, and the Grafana dashboard has the failure panels and the Logins
row, each on metrics pgpulse exports. The dashboard's overall shape, and
that every name it uses is exported, are checked in test_metrics.py.
"""

import os
import re
import subprocess

from test_metrics import load_dashboard, promtool, srcdir

RULE_TESTS = os.path.join("contrib", "prometheus", "pgpulse-rules.test.yml")


def test_alert_rules_pass_their_promtool_unit_tests():
    path = os.path.join(srcdir(), RULE_TESTS)
    assert os.path.isfile(path), f"{path} is missing"
    r = subprocess.run([promtool(), "test", "rules", path], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def rule_tests_cover():
    with open(os.path.join(srcdir(), RULE_TESTS)) as f:
        return set(re.findall(r"alertname: (\w+)", f.read()))


def test_rule_unit_tests_cover_the_wait_pool_and_failure_alerts():
    assert {"PgpulseWaitP95High", "PgpulsePoolUtilizationHigh", "PgpulsePoolSaturated",
            "PgpulseQueryWaitTimeouts", "PgpulseServerUnreachable",
            "PgpulseLoginFailures"} <= rule_tests_cover()


def rows(dash):
    """{row title: [panels below it, up to the next row]} of a dashboard
    whose rows are not collapsed (panels in y order)."""
    out, current = {}, None
    for p in sorted(dash["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if p["type"] == "row":
            current = out.setdefault(p["title"], [])
        elif current is not None:
            current.append(p)
    return out


def exprs(panel):
    return [t["expr"] for t in panel.get("targets", []) if t.get("expr")]


def panel_matching(panels, pattern):
    rx = re.compile(pattern)
    found = [p for p in panels if any(rx.search(e) for e in exprs(p))]
    assert found, f"no panel with a query matching {pattern}: " \
                  f"{[(p['title'], exprs(p)) for p in panels]}"
    return found[0]


def test_dashboard_failures_row_shows_errors_logins_timeouts_and_server_failures():
    failures = rows(load_dashboard())["Failures"]
    errors = panel_matching(failures, r"sum by \(source, class\) \(rate\(pgpulse_errors_total")
    assert "{{source}}" in errors["targets"][0]["legendFormat"]
    panel_matching(failures, r"sum by \(reason\) \(rate\(pgpulse_client_login_failures_total")
    timeouts = panel_matching(failures, r"pgpulse_pool_query_wait_timeouts_total")
    for t in ("query_wait", "query", "client_idle", "idle_transaction", "transaction"):
        assert any(re.search(rf"\bpgpulse_pool_{t}_timeouts_total\{{", e) for e in exprs(timeouts)), t
    assert all("by (database, user)" in e for e in exprs(timeouts)), "timeouts are per pool"
    server = panel_matching(failures, r"pgpulse_pool_server_connect_failures_total")
    assert any("pgpulse_pool_server_login_failures_total" in e for e in exprs(server))


def test_dashboard_logins_row_shows_login_time_by_phase_in_flight_and_abandoned():
    logins = rows(load_dashboard())["Logins"]
    total = panel_matching(logins, r'phase="total"')
    for q in ("0.5", "0.95", "0.99"):
        assert any(e.startswith(f"histogram_quantile({q}, ") and "pgpulse_login_duration_seconds_bucket"
                   in e for e in exprs(total)), q
    panel_matching(logins, r"histogram_quantile\(0\.95, sum by \(le, phase\) "
                           r"\(rate\(pgpulse_login_duration_seconds_bucket")
    panel_matching(logins, r"sum by \(stage\) \(pgpulse_logins_in_flight\)")
    panel_matching(logins, r"sum by \(stage\) \(rate\(pgpulse_logins_abandoned_total")
    assert all(p["fieldConfig"]["defaults"]["unit"] == "s" for p in logins
               if any("login_duration" in e for e in exprs(p)))

