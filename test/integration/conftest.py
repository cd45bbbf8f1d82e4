"""Fixtures of the pgpulse integration suite (the machinery is in
pgpulse_harness.py).

    pg          session: the scratch PostgreSQL (pgpulse_harness.PostgreSQL)
    pgpulse     factory: pgpulse(ini_text, userlist=None, **kw) -> Pgpulse, started
    pgpulse_bin session: path of the binary under test ($PGPULSE_BIN)
    psql        the pgpulse_harness.psql function
    pgbench     the pgpulse_harness.pgbench function
    session_dir session: the private temp dir everything lives in

When a test fails, the report carries the log of each pgpulse it started and
PostgreSQL's log lines written during the test.  A test that stops PostgreSQL
need not restart it: the next test finds it running again.
"""

import os
import signal
import tempfile

import pytest

from pgpulse_harness import Pgpulse, PostgreSQL, _tail, pgbench as _pgbench, psql as _psql, \
    remove_tree

_session = {"pg": None}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes more than a few seconds")

    # A CI timeout sends SIGTERM: unwind like Ctrl-C, so fixtures stop
    # PostgreSQL and pgpulse instead of leaving them behind.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def session_dir():
    """Private temp dir for the session: short paths (unix sockets have a
    108-byte limit), under $PGPULSE_TEST_TMPDIR when set.  Removed at the end
    unless PGPULSE_KEEP_TMP is set."""
    d = tempfile.mkdtemp(prefix="pgpulse-it-", dir=os.environ.get("PGPULSE_TEST_TMPDIR") or None)
    yield d
    if os.environ.get("PGPULSE_KEEP_TMP"):
        print(f"\nkept test files in {d}")
    else:
        remove_tree(d)


@pytest.fixture(scope="session")
def pg(session_dir):
    """The scratch PostgreSQL: one cluster for the whole session, stopped
    (immediate) at the end whatever happened."""
    server = PostgreSQL(session_dir)
    _session["pg"] = server
    try:
        server.init()
        server.start()
        server.setup_roles()
        yield server
    finally:
        _session["pg"] = None
        server.destroy()


@pytest.fixture(scope="session")
def pgpulse_bin():
    path = os.environ.get("PGPULSE_BIN") or os.path.normpath(
        os.path.join(os.path.dirname(__file__), "..", "..", "pgpulse"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"pgpulse binary not found at {path}: build it (make) or set PGPULSE_BIN",
                    pytrace=False)
    return path


@pytest.fixture
def pgpulse(request, pg, pgpulse_bin, session_dir):
    """Factory: pgpulse(ini_text, userlist=None, *, port=None, args=(),
    env=None, nofile=None, start=True, wait=True) -> Pgpulse.

    Every instance is stopped at the end of the test (SIGINT, SIGKILL after
    5 s); its exit status is not checked, but sanitizer reports in its log
    fail the test."""
    started = []
    request.node._pgpulse_instances = started

    def factory(ini_text, userlist=None, *, port=None, args=(), env=None, nofile=None,
                start=True, wait=True):
        p = Pgpulse(ini_text, base_dir=session_dir, bin=pgpulse_bin, pg=pg,
                    userlist=userlist, port=port, args=args, env=env, nofile=nofile)
        started.append(p)
        if start:
            p.start(wait=wait)
        return p

    yield factory

    problems = []
    for p in started:
        p.stop()
        reports = p.sanitizer_reports()
        if reports:
            problems.append(f"--- {p.log_path} (whole log in the report below)\n"
                            + "\n".join(reports))
    if problems:
        pytest.fail("sanitizer errors in pgpulse:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def psql():
    """psql(port, *args, user='app', dbname='appdb', password=None, ...)"""
    return _psql


@pytest.fixture
def pgbench():
    """pgbench(port, *args, user='app', dbname='appdb', password=None, ...)"""
    return _pgbench


@pytest.fixture(autouse=True)
def _pg_between_tests(request):
    server = _session["pg"]
    request.node._pg_log_mark = server.log_mark() if server else 0
    yield
    server = _session["pg"]
    if server is not None and server.stopped:
        server.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for p in getattr(item, "_pgpulse_instances", ()):
        rep.sections.append((f"pgpulse log {p.log_path}", _tail(p.log(), 200)))
    server = _session["pg"]
    if server is not None and "pg" in item.fixturenames and rep.when == "call":
        mark = getattr(item, "_pg_log_mark", 0)
        rep.sections.append((f"PostgreSQL log during the test {server.log_path}",
                             _tail(server.log(since=mark), 100)))
