#!/bin/bash
# Run the integration suite (pytest, test/integration) against a built pgpulse
# and a scratch PostgreSQL.  `make check` runs it; by hand:
#
#   test/run-integration.sh [pytest args...]      e.g.  -k reload -x
#
# Environment:
#   PGPULSE_BIN        binary under test (default: ./pgpulse next to test/)
#   PYTHON3            interpreter (default /usr/bin/python3: the python3 on
#                      PATH may lack Debian's python3-pytest/python3-psycopg)
#   PGPULSE_TEST_USER  user the suite runs as when started by root
#                      (default pgpulse-test)
#   PGPULSE_TEST_TIMEOUT  seconds before the whole suite is stopped (1800)
#   PGPULSE_KEEP_TMP   keep the temp dir (logs, data dirs) afterwards
#   PGPULSE_PGBOUNCER  the PgBouncer test_operator_logs.py compares with
#                      (default: Debian's /usr/sbin/pgbouncer, when installed)
#   PGBOUNCER_125      a PgBouncer 1.25 binary: test_pgbouncer_parity.py also
#                      compares the console with it (Debian's 1.18 always)
#   PGPULSE_TEST_LIVE  also copy pytest's output to the terminal under
#                      `make check` (on by default when CI is set)
#   PYTEST_ADDOPTS, ASAN_OPTIONS, UBSAN_OPTIONS, LSAN_OPTIONS pass through.
#
# PostgreSQL refuses to run as root.  As root, the suite therefore runs as an
# unprivileged system user (created if missing) from a copy of the test files
# and the binary staged in a temp dir that user owns: the build tree may sit
# under a path it cannot read, such as /root.
#
# Exit status follows automake: 0 pass, 1 fail, 77 skip (dependencies
# missing; a failure instead when CI is set), 99 hard error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/.." && pwd)
PYTHON3=${PYTHON3:-/usr/bin/python3}
bin=${PGPULSE_BIN:-$srcdir/pgpulse}
test_user=${PGPULSE_TEST_USER:-pgpulse-test}
limit=${PGPULSE_TEST_TIMEOUT:-1800}

say() { echo "run-integration: $*" >&2; }

missing() {
	say "$*"
	if [ -n "${CI:-}" ]; then
		say "CI is set: a missing dependency is an error"
		exit 99
	fi
	say "skipping the integration suite"
	exit 77
}

# -- prerequisites
[ -x "$PYTHON3" ] || missing "$PYTHON3 not found: apt-get install python3"
"$PYTHON3" -c 'import pytest' 2>/dev/null ||
	missing "pytest not importable by $PYTHON3: apt-get install python3-pytest"
"$PYTHON3" -c 'import psycopg' 2>/dev/null ||
	missing "psycopg 3 not importable by $PYTHON3: apt-get install python3-psycopg"
if [ -z "${PGPULSE_PG_BINDIR:-}" ] && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
	missing "PostgreSQL server binaries not found: apt-get install postgresql (or set PGPULSE_PG_BINDIR)"
fi
if [ ! -x "$bin" ]; then
	say "warning: $bin not found or not executable; tests that start pgpulse will fail"
fi

# -- a temp dir for everything; as root, owned by the test user
work=$(mktemp -d "${TMPDIR:-/tmp}/pgpulse-test.XXXXXX")

cleanup() {
	local rc=$? pidfile pid
	# pytest stops PostgreSQL itself; if pytest was killed, pg_ctl's
	# daemonized postmasters are still up: stop those (and only those).
	while IFS= read -r pidfile; do
		pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
		if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then
			say "stopping leftover PostgreSQL (pid $pid)"
			kill -QUIT "$pid" 2>/dev/null || true
			sleep 1
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done < <(find "$work" -name postmaster.pid 2>/dev/null)
	if [ -n "${PGPULSE_KEEP_TMP:-}" ]; then
		say "kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pytest_args=(-q -rfEs -p no:cacheprovider -o faulthandler_timeout=300)
env_vars=(PYTHONDONTWRITEBYTECODE=1 PGPULSE_TEST_TMPDIR="$work/tmp")
mkdir "$work/tmp"

if [ "$(id -u)" = 0 ]; then
	if ! id -u "$test_user" >/dev/null 2>&1; then
		say "creating system user $test_user"
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$test_user"
	fi
	# Stage what the tests read: the suite, the sources of example configs
	# and docs they may check, and the binary.
	stage=$work/src
	mkdir -p "$stage/test"
	cp -R "$srcdir/test/integration" "$stage/test/"
	for d in etc doc include contrib; do
		if [ -d "$srcdir/$d" ]; then cp -R "$srcdir/$d" "$stage/"; fi
	done
	if [ -e "$bin" ]; then
		mkdir -p "$work/bin"
		cp "$bin" "$work/bin/pgpulse"
		bin=$work/bin/pgpulse
	fi
	chown -R "$test_user:" "$work"
	chmod 0700 "$work"
	cd "$work"
	env_vars+=(HOME="$work" TMPDIR="$work/tmp" LANG=C.UTF-8
		PATH=/usr/local/bin:/usr/bin:/bin PGPULSE_SRCDIR="$stage" PGPULSE_BIN="$bin")
	for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS PYTEST_ADDOPTS CI TERM \
		PGPULSE_PG_BINDIR PGPULSE_KEEP_TMP PGPULSE_PGBOUNCER PGBOUNCER_125; do
		if [ -n "${!v:-}" ]; then env_vars+=("$v=${!v}"); fi
	done
	say "running as $test_user in $work"
	cmd=(runuser -u "$test_user" -- env -i "${env_vars[@]}"
		timeout --kill-after=30 "$limit"
		"$PYTHON3" -m pytest "${pytest_args[@]}" "$stage/test/integration" "$@")
else
	env_vars+=(PGPULSE_SRCDIR="$srcdir" PGPULSE_BIN="$bin")
	cmd=(env "${env_vars[@]}" timeout --kill-after=30 "$limit"
		"$PYTHON3" -m pytest "${pytest_args[@]}" "$srcdir/test/integration" "$@")
fi

# Under `make check` the output goes to test/run-integration.log; fd 9 is the
# terminal (AM_TESTS_FD_REDIRECT), for live progress in CI.
set +e
if { [ -n "${CI:-}" ] || [ -n "${PGPULSE_TEST_LIVE:-}" ]; } && { true >&9; } 2>/dev/null; then
	# Not `tee /dev/fd/9`: reopening fd 9 by path would truncate a file it
	# points to (make check >ci.log).  cat writes to the inherited fd itself.
	"${cmd[@]}" 2>&1 | tee >(cat >&9)
	rc=${PIPESTATUS[0]}
else
	"${cmd[@]}"
	rc=$?
fi
set -e
if [ "$rc" = 124 ]; then
	say "the suite did not finish within ${limit}s (PGPULSE_TEST_TIMEOUT)"
fi
exit "$rc"
