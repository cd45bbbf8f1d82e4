"""N+1 detection: how many times a query shape runs within one transaction
(doc/telemetry.md, "Repeats"; SHOW REPEATS in doc/admin.md).

    SHOW REPEATS [5m|all]  per (pool, fingerprint) that ran more than once in
                           some transaction of the window: transactions that
                           ran it, those that ran it at least
                           query_repeat_threshold times, the median and the
                           most executions per transaction, the share of those
                           transactions' time it took, flagged (at least 3
                           such transactions)

The classic ORM loop is one parent query, then one child query per parent
row, all in one transaction. Transactions are opened with BEGIN and closed
with COMMIT as simple Query messages, so the counts are exact: BEGIN and
COMMIT are shapes of their own that run once per transaction.
"""

import psycopg
import pytest

from test_metrics import parse_metrics, scrape, start, value

REPEAT_COLUMNS = ["fingerprint", "database", "user", "query", "window", "xacts", "repeat_xacts",
                  "p50_per_xact", "max_per_xact", "xact_time_pct", "flagged"]

PARENT = "select 'parent' as parent"
CHILD_SHAPE = "select ? as child_id"


def simple(conn, sql):
    res = conn.pgconn.exec_(sql.encode())
    assert res.status in (psycopg.pq.ExecStatus.TUPLES_OK, psycopg.pq.ExecStatus.COMMAND_OK), \
        res.error_message.decode(errors="replace")


def orm_loop(conn, children, transactions):
    """One parent query, then `children` child queries of one shape, in each
    of `transactions` transactions."""
    for _ in range(transactions):
        simple(conn, "BEGIN")
        simple(conn, PARENT)
        for i in range(children):
            simple(conn, f"select {i} as child_id")
        simple(conn, "COMMIT")


def repeats(pp, window=None):
    cur = pp.admin().execute("SHOW REPEATS" + (f" {window}" if window else ""))
    assert [d.name for d in cur.description] == REPEAT_COLUMNS
    return [dict(zip(REPEAT_COLUMNS, r)) for r in cur.fetchall()]


def repeat_row(pp, query, window=None):
    rows = [r for r in repeats(pp, window) if r["query"] == query]
    assert len(rows) == 1, f"expected one SHOW REPEATS row for {query!r}: {repeats(pp, window)}"
    return rows[0]


def app_conn(pp):
    return pp.connect(autocommit=True, prepare_threshold=None)


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_orm_loop_of_fifty_child_queries_per_transaction_is_flagged(pgpulse, pool_mode):
    pp = start(pgpulse, pool_mode=pool_mode)
    orm_loop(app_conn(pp), children=50, transactions=3)

    row = repeat_row(pp, CHILD_SHAPE)
    assert (row["database"], row["user"], row["window"]) == ("appdb", "app", "5m"), row
    assert (row["xacts"], row["repeat_xacts"], row["p50_per_xact"], row["max_per_xact"]) == (3, 3, 50, 50), row
    assert row["flagged"] is True, row
    assert 0 < row["xact_time_pct"] <= 100, row
    # the parent, BEGIN and COMMIT ran once per transaction: no repeat to show
    assert [r["query"] for r in repeats(pp)] == [CHILD_SHAPE], repeats(pp)
    # the all-time window says the same
    assert repeat_row(pp, CHILD_SHAPE, "all")["max_per_xact"] == 50


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_orm_loop_of_prepared_statements_is_flagged(pgpulse, pool_mode):
    """The same loop as a driver runs it: the extended protocol with named
    prepared statements (each execution a Bind of a statement prepared
    once), in transactions the driver opens and commits."""
    pp = start(pgpulse, pool_mode=pool_mode)
    conn = pp.connect(prepare_threshold=0)
    for _ in range(3):
        conn.execute(PARENT)
        for i in range(50):
            conn.execute("select %s::int as child_id", (i,))
        conn.commit()
    rows = [r for r in repeats(pp) if "child_id" in r["query"]]
    assert len(rows) == 1, repeats(pp)
    row = rows[0]
    # the first transaction also prepared the statement: a request of that shape of its own
    # (Parse, Describe, Sync), so 51 round trips there
    assert (row["xacts"], row["repeat_xacts"], row["max_per_xact"], row["flagged"]) == (3, 3, 51, True), row


def test_flagged_shape_is_advice_on_show_health_without_changing_the_status(pgpulse):
    pp = start(pgpulse)
    orm_loop(app_conn(pp), children=50, transactions=3)
    rows = [r for r in pp.show("HEALTH") if r["database"] == "appdb" and r["user"] == "app"]
    assert len(rows) == 1, rows
    assert rows[0]["status"] == "ok", rows
    assert rows[0]["advice"].startswith(f'N+1 suspect: "{CHILD_SHAPE}" ran up to 50 times in one transaction'), rows


def test_flagged_shape_is_on_metrics_with_its_most_repeats(pgpulse):
    pp = start(pgpulse)
    orm_loop(app_conn(pp), children=50, transactions=3)
    fp = repeat_row(pp, CHILD_SHAPE)["fingerprint"]
    samples = parse_metrics(scrape(pp))
    pool = {"database": "appdb", "user": "app"}
    assert value(samples, "pgpulse_query_repeats_flagged", **pool) == 1
    assert value(samples, "pgpulse_query_repeats_max", fingerprint=fp, **pool) == 50


def test_normal_transactions_of_different_statements_are_not_flagged(pgpulse):
    pp = start(pgpulse)
    conn = app_conn(pp)
    for _ in range(5):
        simple(conn, "BEGIN")
        simple(conn, "select 1 as a")
        simple(conn, "select 2 as b")
        simple(conn, "select 3 as c")
        simple(conn, "COMMIT")
    assert repeats(pp) == []
    assert value(parse_metrics(scrape(pp)), "pgpulse_query_repeats_flagged", database="appdb", user="app") == 0


def test_the_same_fifty_queries_in_fifty_autocommit_transactions_are_not_repeats(pgpulse):
    pp = start(pgpulse)
    conn = app_conn(pp)
    for _ in range(3):
        simple(conn, PARENT)
        for i in range(50):
            simple(conn, f"select {i} as child_id")
    assert repeats(pp) == []
    assert [r["calls"] for r in pp.show("QUERIES") if r["query"] == CHILD_SHAPE] == [150]


def test_loops_in_fewer_than_three_transactions_are_shown_but_not_flagged(pgpulse):
    pp = start(pgpulse)
    orm_loop(app_conn(pp), children=50, transactions=2)
    row = repeat_row(pp, CHILD_SHAPE)
    assert (row["xacts"], row["repeat_xacts"], row["max_per_xact"], row["flagged"]) == (2, 2, 50, False), row


@pytest.mark.parametrize("children, flagged", [(9, False), (10, True)])
def test_query_repeat_threshold_is_the_count_that_makes_a_repeat(pgpulse, children, flagged):
    pp = start(pgpulse, query_repeat_threshold=10)
    orm_loop(app_conn(pp), children=children, transactions=3)
    row = repeat_row(pp, CHILD_SHAPE)
    assert (row["xacts"], row["max_per_xact"], row["p50_per_xact"]) == (3, children, children), row
    assert (row["repeat_xacts"], row["flagged"]) == ((3, True) if flagged else (0, False)), row


def test_a_mixed_distribution_has_its_median_and_its_max(pgpulse):
    """Transactions that ran the child 2, 2, 2, 60 and 60 times: the median
    is 2 and the most 60; the two long loops are the repeats."""
    pp = start(pgpulse)
    conn = app_conn(pp)
    for n in (2, 2, 2, 60, 60):
        orm_loop(conn, children=n, transactions=1)
    row = repeat_row(pp, CHILD_SHAPE)
    assert (row["xacts"], row["repeat_xacts"], row["p50_per_xact"], row["max_per_xact"]) == (5, 2, 2, 60), row
    assert row["flagged"] is False, row


def test_query_repeat_threshold_zero_turns_detection_off(pgpulse):
    pp = start(pgpulse, query_repeat_threshold=0)
    orm_loop(app_conn(pp), children=50, transactions=3)
    assert repeats(pp) == []
    assert [r["calls"] for r in pp.show("QUERIES") if r["query"] == CHILD_SHAPE] == [150]


def test_query_repeat_threshold_of_one_is_refused_naming_the_setting(pgpulse):
    pp = start(pgpulse)
    with pytest.raises(psycopg.Error, match="query_repeat_threshold"):
        pp.command("SET query_repeat_threshold = 1")
    pp.command("SET query_repeat_threshold = 20")
    assert [r["value"] for r in pp.show("CONFIG") if r["key"] == "query_repeat_threshold"] == ["20"]
