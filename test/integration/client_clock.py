"""The client's own clock: the upper bound of every duration pgpulse reports.

pgpulse sees a request arrive after the client sent it and answers before the
client reads the answer, so no duration it reports (query, server, xact,
wait) can exceed the client's timing of that request, however loaded the
machine is.  Tests bound telemetry from below by what the statement must take
(a pg_sleep) and from above by this clock, never by a guessed allowance.
"""

import math
import time

HIST_ERROR = 1.0 / 128      # the histograms' stated relative error


class ClientClock:
    """The client's own timing of each statement it runs, in microseconds.
    Threads may share one (list.append is atomic)."""

    def __init__(self):
        self.us = []

    def time(self, fn, *args, **kwargs):
        """fn(*args, **kwargs), timed; its result."""
        t0 = time.monotonic()
        result = fn(*args, **kwargs)
        self.us.append((time.monotonic() - t0) * 1e6)
        return result

    def run(self, conn, sql, *args, **kwargs):
        """conn.execute(sql, ...), timed."""
        return self.time(conn.execute, sql, *args, **kwargs)

    def ranked(self, rank):
        """The rank-th shortest (1-based) of the client's timings."""
        timings = sorted(self.us)
        assert 1 <= rank <= len(timings), (rank, len(timings))
        return timings[rank - 1]

    def quantile_bound(self, q, count):
        """The most pgpulse's q-quantile over `count` values can report: its
        rank is ceil(q * count) (hist_acc_quantile), every value it ranks is
        inside one of the client's timings, so that order statistic of the
        client's timings bounds it (plus the histogram's error)."""
        rank = max(1, math.ceil(q * count))
        return self.ranked(rank) * (1 + HIST_ERROR) + 1


QUANTILE_OF = {"p50_us": 0.5, "p90_us": 0.9, "p95_us": 0.95, "p99_us": 0.99,
               "p999_us": 0.999}


def assert_near(row, column, true_us, clock):
    """row[column] reports a duration of at least true_us (what the statements
    must take, less the histogram error) and no more than the client timed.
    The row counts its values in `count` (SHOW LATENCY) or `calls` (SHOW
    QUERIES); the clock timed at least as many requests as the row holds, or
    the bound is not one."""
    count = row["count"] if "count" in row else row["calls"]
    lo = true_us * (1 - HIST_ERROR)
    if column == "max_us":
        hi = max(clock.us) + 1
    elif column == "total_us":
        hi = sum(clock.us) + 1
    elif column == "mean_us":
        assert count == len(clock.us), (count, len(clock.us))
        hi = sum(clock.us) / count + 1
    else:
        hi = clock.quantile_bound(QUANTILE_OF[column], count)
    value = row[column]
    assert lo <= value <= hi, \
        f"{column} = {value} us, expected {lo:.0f}..{hi:.0f} us; row: {row}; client timed {sorted(clock.us)}"
