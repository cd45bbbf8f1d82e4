#!/usr/bin/python3
"""Turn the benchmark's raw.csv into results.md and one PNG chart per workload.

bench.py calls write() at the end of a run; run by hand, this rebuilds the
report of an earlier run from its files (raw.csv and meta.json):

    contrib/bench/report.py RESULTS_DIR

Two ideas shape the figures:
- Every figure is a median over rounds with its [min-max] spread: on a
  noisy machine one run says little, the spread says how little.
- pgpulse/PgBouncer ratios are taken round by round (the two ran seconds
  apart, in the same conditions) and then summarised as a median with its
  range; "rounds" in the Targets table counts the rounds that met the goal.
"""

import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

TARGET_LABELS = {
    "direct": "direct (PostgreSQL)",
    "pgbouncer": "PgBouncer",
    "pgpulse": "pgpulse",
    "pgpulse-notel": "pgpulse, telemetry off",
}

# The goals (doc/benchmarks.md, "Targets"): (label, workload, metric,
# numerator, denominator, op, goal). Ratios are numerator/denominator per
# round.  "added_ms" (the single-client latency over direct) is judged on the
# per-round difference instead: a ratio of two differences of a few µs is
# mostly noise, and can divide by ~0.
GOALS = [
    ("select-simple: TPS", "select-simple", "tps", "pgpulse", "pgbouncer", ">=", 1.0),
    ("select-simple: CPU/xact", "select-simple", "cpu_us_per_xact", "pgpulse", "pgbouncer", "<=", 0.9),
    ("select-extended: TPS", "select-extended", "tps", "pgpulse", "pgbouncer", ">=", 1.0),
    ("select-extended: CPU/xact", "select-extended", "cpu_us_per_xact", "pgpulse", "pgbouncer", "<=", 0.9),
    ("select-prepared: TPS", "select-prepared", "tps", "pgpulse", "pgbouncer", ">=", 1.0),
    ("select-prepared: CPU/xact", "select-prepared", "cpu_us_per_xact", "pgpulse", "pgbouncer", "<=", 0.9),
    ("select-prepared-tx: TPS", "select-prepared-tx", "tps", "pgpulse", "pgbouncer", ">=", 1.0),
    ("select-prepared-tx: CPU/xact", "select-prepared-tx", "cpu_us_per_xact", "pgpulse", "pgbouncer", "<=", 0.9),
    ("select-prepared-tx: TPS vs direct", "select-prepared-tx", "tps", "pgpulse", "direct", ">=", 0.8),
    ("tpcb: TPS", "tpcb", "tps", "pgpulse", "pgbouncer", ">=", 1.0),
    ("clients-500: TPS", "clients-500", "tps", "pgpulse", "pgbouncer", ">=", 1.0),
    ("connect: TPS", "connect", "tps", "pgpulse", "pgbouncer", ">=", 1.0),
    ("connect: CPU/xact", "connect", "cpu_us_per_xact", "pgpulse", "pgbouncer", "<=", 0.9),
    ("single: latency added over direct", "single", "added_ms", "pgpulse", "pgbouncer", "<=", 0.0),
    ("idle-5000: RSS per idle client", "idle-5000", "rss_kb_per_client", "pgpulse", "pgbouncer", "<=", 1.0),
    ("idle-10000: RSS per idle client", "idle-10000", "rss_kb_per_client", "pgpulse", "pgbouncer", "<=", 1.0),
    ("telemetry on/off: TPS", "select-simple", "tps", "pgpulse", "pgpulse-notel", ">=", 0.97),
    ("telemetry on/off: CPU/xact", "select-simple", "cpu_us_per_xact", "pgpulse", "pgpulse-notel", "<=", 1.03),
]

NUMERIC = ("tps", "xacts", "mean_ms", "p99_ms", "cpu_us_per_xact", "rss_before_kb", "rss_after_kb",
           "rss_kb_per_client", "login_cpu_us_per_client", "login_seconds")


# ------------------------------------------------------------ numbers

def to_numbers(rows):
    """CSV strings to floats (None when empty), plus added_ms for 'single'."""
    out = []
    for r in rows:
        r = dict(r)
        r["round"] = int(r["round"])
        for k in NUMERIC:
            v = r.get(k, "")
            r[k] = float(v) if v not in ("", None) else None
        out.append(r)
    direct = {(r["workload"], r["round"]): r["mean_ms"] for r in out if r["target"] == "direct"}
    for r in out:
        d = direct.get((r["workload"], r["round"]))
        r["added_ms"] = (r["mean_ms"] - d) if r["mean_ms"] is not None and d is not None else None
    return out


def values(rows, workload, target, metric):
    return [r[metric] for r in rows
            if r["workload"] == workload and r["target"] == target and r[metric] is not None]


def spread(vals):
    """(median, min, max) or None."""
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def per_round_pairs(rows, workload, metric, num, den):
    """[(numerator's value, denominator's value)] for each round that has both."""
    by_round = {}
    for r in rows:
        if r["workload"] == workload and r[metric] is not None:
            by_round.setdefault(r["round"], {})[r["target"]] = r[metric]
    return [(v[num], v[den]) for _, v in sorted(by_round.items()) if num in v and den in v]


def per_round_ratios(rows, workload, metric, num, den):
    return [a / b for a, b in per_round_pairs(rows, workload, metric, num, den) if b > 0]


def fmt_num(x, digits=None):
    if x is None:
        return "—"
    if digits is None:
        digits = 0 if abs(x) >= 1000 else 1 if abs(x) >= 100 else 2 if abs(x) >= 1 else 3
    return f"{x:,.{digits}f}"


def fmt_spread(s, digits=None, with_range=True):
    if s is None:
        return "—"
    med, lo, hi = s
    if not with_range or lo == hi:
        return fmt_num(med, digits)
    return f"{fmt_num(med, digits)} [{fmt_num(lo, digits)}–{fmt_num(hi, digits)}]"


# ------------------------------------------------------------ tables

def pgbench_table(rows, wl, targets):
    single = wl == "single"
    head = ["target", "TPS", "mean latency ms", "p99 latency ms", "CPU µs/xact"]
    if single:
        head.insert(4, "added over direct ms")
    lines = [table_row(head), table_row(["---"] * len(head))]
    for t in targets:
        cells = [TARGET_LABELS.get(t, t),
                 fmt_spread(spread(values(rows, wl, t, "tps"))),
                 fmt_spread(spread(values(rows, wl, t, "mean_ms")), 3),
                 fmt_spread(spread(values(rows, wl, t, "p99_ms")), 3, with_range=False),
                 fmt_spread(spread(values(rows, wl, t, "cpu_us_per_xact")), 1)]
        if single:
            cells.insert(4, fmt_spread(spread(values(rows, wl, t, "added_ms")), 3)
                         if t != "direct" else "—")
        lines.append(table_row(cells))
    pairs = [("pgpulse", "pgbouncer", "pgpulse / PgBouncer")]
    if "pgpulse-notel" in targets:
        pairs.append(("pgpulse", "pgpulse-notel", "pgpulse telemetry on / off"))
    for num, den, label in pairs:
        if num not in targets or den not in targets:
            continue
        cells = [f"**{label}**"]
        for metric in ("tps", "mean_ms", "p99_ms", "cpu_us_per_xact"):
            cells.append(fmt_spread(spread(per_round_ratios(rows, wl, metric, num, den)), 3))
        if single:
            cells.insert(4, fmt_added_ratio(rows, wl, num, den))
        lines.append(table_row(cells))
    return lines


def fmt_added_ratio(rows, wl, num, den):
    return fmt_spread(spread(per_round_ratios(rows, wl, "added_ms", num, den)), 3)


def idle_table(rows, wl, targets):
    head = ["target", "idle clients", "RSS per client KiB", "RSS before → after MiB",
            "login CPU µs/client", "seconds to log all in"]
    lines = [table_row(head), table_row(["---"] * len(head))]
    for t in targets:
        n = values(rows, wl, t, "rss_kb_per_client")
        clients = next((r["clients"] for r in rows if r["workload"] == wl and r["target"] == t), "")
        before = spread(values(rows, wl, t, "rss_before_kb"))
        after = spread(values(rows, wl, t, "rss_after_kb"))
        mib = (f"{before[0] / 1024:.1f} → {after[0] / 1024:.1f}" if before and after else "—")
        lines.append(table_row([
            TARGET_LABELS.get(t, t), f"{int(clients):,}" if clients else "—",
            fmt_spread(spread(n), 2), mib,
            fmt_spread(spread(values(rows, wl, t, "login_cpu_us_per_client")), 1),
            fmt_spread(spread(values(rows, wl, t, "login_seconds")), 2)]))
    if "pgpulse" in targets and "pgbouncer" in targets:
        lines.append(table_row([
            "**pgpulse / PgBouncer**", "",
            fmt_spread(spread(per_round_ratios(rows, wl, "rss_kb_per_client", "pgpulse", "pgbouncer")), 3),
            "",
            fmt_spread(spread(per_round_ratios(rows, wl, "login_cpu_us_per_client", "pgpulse", "pgbouncer")), 3),
            fmt_spread(spread(per_round_ratios(rows, wl, "login_seconds", "pgpulse", "pgbouncer")), 3)]))
    return lines


def table_row(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def judge(rows, goal):
    """(measured text, goal text, verdict, rounds text) for one goal."""
    label, wl, metric, num, den, op, want = goal
    ok = (lambda x: x >= want) if op == ">=" else (lambda x: x <= want)
    goal_text = f"{op} {want:g}" + {"pgbouncer": " (pgpulse / PgBouncer)", "direct": " (pgpulse / direct)"}.get(
        den, " (on / off)")
    if metric == "added_ms":
        # per round, pgpulse's added latency minus PgBouncer's (= the
        # difference of their mean latencies: direct's cancels out)
        diffs = [(a - b) * 1000 for a, b in per_round_pairs(rows, wl, metric, num, den)]
        s = spread(diffs)
        if not s:
            return "not run", goal_text, "—", "—"
        a, b = (spread(values(rows, wl, t, metric)) for t in (num, den))
        return (f"pgpulse − PgBouncer: {s[0]:+.1f} µs [{s[1]:+.1f}, {s[2]:+.1f}] "
                f"(added over direct: pgpulse +{a[0] * 1000:.0f} µs, PgBouncer +{b[0] * 1000:.0f} µs)",
                "pgpulse's ≤ PgBouncer's", "met" if s[0] <= 0 else "**not met**",
                f"{sum(d <= 0 for d in diffs)}/{len(diffs)}")
    ratios = per_round_ratios(rows, wl, metric, num, den)
    s = spread(ratios)
    if not s:
        return "not run", goal_text, "—", "—"
    return (fmt_spread(s, 3), goal_text, "met" if ok(s[0]) else "**not met**",
            f"{sum(ok(x) for x in ratios)}/{len(ratios)}")


# ------------------------------------------------------------ markdown

def header(meta):
    lines = [
        f"Run {meta.get('date', '?')}, commit {meta.get('commit', '?')}, mode {meta.get('mode', '?')}: "
        f"{meta.get('rounds')} round(s) × {meta.get('seconds')} s per pgbench run, "
        f"order alternating between rounds, pgbench scale {meta.get('scale')}, "
        f"{meta.get('nproc')} CPUs shared by PostgreSQL, pgbench and the pooler.",
        "",
        f"- {meta.get('pgpulse')}; {meta.get('pgbouncer')}; {meta.get('postgres')}; "
        f"{meta.get('pgbench')}; Linux {meta.get('kernel')}",
        f"- load average at start {meta.get('loadavg_start')}, at end {meta.get('loadavg_end', '?')}; "
        f"whole run {meta.get('minutes', '?')} min",
        "- Figures: median over rounds [min–max]. CPU µs/xact is the pooler process's user+system "
        "time (/proc/PID/stat) over the run divided by the transactions pgbench counted; latencies "
        "come from pgbench's per-transaction log. Ratios are per round, then median [min–max].",
        "- select-prepared runs against a session-mode pool of 50 on both poolers (`bench_session`); "
        "select-prepared-tx runs the same in transaction mode (pool of 20), where the poolers carry "
        "the named statements across servers (PgBouncer from 1.21).",
        "- Both poolers reach PostgreSQL over " + (
            "its unix socket (`--server-unix`); clients reach the poolers over TCP on 127.0.0.1."
            if meta.get("server_unix") else "TCP on 127.0.0.1, as clients reach them."),
    ]
    warnings = meta.get("pgpulse_warnings")
    if warnings is not None:
        lines.append("- pgpulse's warnings about the shared ini: "
                     + ("; ".join(f"`{w}`" for w in warnings) if warnings else "none"))
    return lines


def markdown(rows, meta):
    wls = meta.get("workloads", {})
    out = ["# pgpulse vs PgBouncer vs PostgreSQL direct", ""] + header(meta) + [""]
    for name, info in wls.items():
        targets = info["targets"]
        title = f"## {name}: {info['what']}"
        if info.get("canonical") and info["clients"] != info["canonical"]:
            title += f" (reduced to {info['clients']:,} clients in {meta.get('mode')} mode)"
        out += [title, ""]
        if info.get("note"):
            out += [f"PgBouncer: {info['note']}.", ""]
        table = idle_table(rows, name, targets) if info.get("canonical") else \
            pgbench_table(rows, name, targets)
        out += table + ["", f"![{name}]({name}.png)", ""]
    out += ["## Targets", "",
            table_row(["target", "measured (median [min–max])", "goal", "verdict", "rounds meeting it"]),
            table_row(["---"] * 5)]
    for goal in GOALS:
        if goal[1] in wls:
            out.append(table_row([goal[0], *judge(rows, goal)]))
    failed = [r for r in rows if r.get("status") not in ("ok", None)]
    if failed:
        out += ["", "## Failed runs", ""]
        out += [f"- {r['workload']} round {r['round']} {r['target']}: {r['status']}" for r in failed]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------ charts

CHART_LABELS = {"direct": "direct", "pgbouncer": "PgBouncer", "pgpulse": "pgpulse",
                "pgpulse-notel": "pgpulse-notel"}
# one colour per target in every chart
CHART_COLOURS = {"direct": 0x9467BD, "pgbouncer": 0x2CA02C, "pgpulse": 0x1F77B4,
                 "pgpulse-notel": 0xAEC7E8}

CHART_PANELS = {
    "pgbench": [("tps", "TPS (higher is better)"), ("mean_ms", "mean latency, ms"),
                ("cpu_us_per_xact", "pooler CPU µs per transaction")],
    "idle": [("rss_kb_per_client", "RSS per idle client, KiB"),
             ("login_cpu_us_per_client", "pooler CPU µs per login")],
}


def chart(rows, name, info, outdir, meta, terminal):
    """One PNG per workload: a bar per target for each panel's metric, the
    median, with a min–max error bar."""
    kind = "idle" if info.get("canonical") else "pgbench"
    panels = CHART_PANELS[kind]
    if name == "single":
        panels = [("tps", "TPS"), ("added_ms", "latency added over direct, ms"),
                  ("cpu_us_per_xact", "pooler CPU µs per transaction")]
    targets = info["targets"]
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.tsv")
        with open(data, "w") as f:
            for i, t in enumerate(targets):
                cells = [CHART_LABELS.get(t, t), str(i + 1), str(CHART_COLOURS.get(t, 0x7F7F7F))]
                for metric, _ in panels:
                    s = spread(values(rows, name, t, metric))
                    cells += [f"{x:.6g}" for x in s] if s else ["NaN"] * 3
                f.write("\t".join(cells) + "\n")
        png = os.path.join(outdir, f"{name}.png")
        script = [
            f"set terminal {terminal} size {500 * len(panels)},440 font 'sans,10'",
            f"set output '{png}'",
            "set datafile separator '\\t'", "set datafile missing 'NaN'",
            "set style fill solid 0.7 border -1", "set boxwidth 0.6", "unset key",
            "set grid ytics", f"set xrange [0.4:{len(targets) + 0.6}]", "set yrange [0:*]",
            "set offsets 0, 0, graph 0.08, 0",
            "set xtics scale 0 font ',9'",
            f"set multiplot layout 1,{len(panels)} title \"{name}: median over {meta.get('rounds')} "
            f"round(s), bars = min–max\"",
        ]
        for i, (_, title) in enumerate(panels):
            col = 4 + 3 * i
            script += [f"set title '{title}'",
                       f"plot '{data}' using 2:{col}:3:xtic(1) with boxes lc rgb variable, "
                       f"'' using 2:{col}:{col + 1}:{col + 2} with yerrorbars lc rgb 'black' lw 1.5 pt 0"]
        script.append("unset multiplot")
        r = subprocess.run(["gnuplot"], input="\n".join(script) + "\n", capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(png):
            print(f"report: gnuplot failed for {name}: {r.stderr.strip()[-500:]}", file=sys.stderr)
            return None
    return png


def gnuplot_terminal():
    """pngcairo when this gnuplot has it (gnuplot-nox does), else the libgd png."""
    r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" if "pngcairo" in (r.stdout + r.stderr) else "png"


def charts(rows, meta, outdir):
    if not shutil.which("gnuplot"):
        print("report: gnuplot not found (apt-get install gnuplot-nox): no charts", file=sys.stderr)
        return []
    terminal = gnuplot_terminal()
    made = []
    for name, info in meta.get("workloads", {}).items():
        png = chart(rows, name, info, outdir, meta, terminal)
        if png:
            made.append(png)
    return made


# ------------------------------------------------------------ entry points

def write(outdir, raw_rows, meta):
    """results.md, meta.json and the charts into outdir; returns the markdown."""
    with open(os.path.join(outdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    rows = to_numbers([{k: ("" if v is None else str(v)) for k, v in r.items()} for r in raw_rows])
    charts(rows, meta, outdir)
    text = markdown(rows, meta)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(text)
    return text


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    outdir = argv[0]
    with open(os.path.join(outdir, "raw.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(outdir, "meta.json")) as f:
        meta = json.load(f)
    print(write(outdir, rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
