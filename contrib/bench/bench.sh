#!/bin/bash
# Side by side: PostgreSQL direct, PgBouncer and pgpulse under the same
# pgbench workloads, interleaved round by round (issue 5; doc/benchmarks.md).
#
#   contrib/bench/bench.sh [--quick|--smoke] [--rounds N] [--seconds S]
#                          [--workloads a,b,...] [--out DIR]
#                          [--no-install] [--no-build] [--server-unix]
#
# One command on a fresh Debian 12 machine: installs what it needs
# (contrib/run-tests.sh --deps-only: PostgreSQL, PgBouncer, gnuplot, the build
# dependencies; with sudo when not root), builds pgpulse with configure's
# defaults in build-bench/, raises the open-file limit, and runs the
# orchestrator, bench.py, which starts a scratch PostgreSQL, PgBouncer and
# pgpulse from one ini text and writes raw.csv, results.md and a PNG chart per
# workload to the results dir (default contrib/bench/results/<UTC time>/),
# then prints results.md.
#
# Default: every workload, 4 rounds of 4 s, under 10 minutes on 2 cores.
# --quick: 1 round of 2 s, 1,000/2,000 idle clients, under 2 minutes.
# --server-unix: both poolers reach PostgreSQL over its unix socket (the
#          cheaper path when they share its machine) instead of TCP.
# --smoke: 1 round of 3,000 transactions per run, 200/400 idle clients: checks
#          the harness works
#          (make check runs it: test/integration/test_bench_smoke.py).
#
# Environment:
#   PGPULSE_BIN       measure this binary (no build)
#   PGBOUNCER         compare with this PgBouncer binary (default: the one on
#                     PATH; 1.21+ also runs select-prepared-tx)
#   PGPULSE_BUILDDIR  build here instead of build-bench/ (a VPATH build)
#   PGPULSE_BENCH_USER  the user everything runs as when started by root
#                     (default pgpulse-test; PostgreSQL refuses root)
#   ASAN_OPTIONS, UBSAN_OPTIONS, LSAN_OPTIONS pass through to pgpulse.
#
# Everything listens on 127.0.0.1 (and unix sockets in a private temp dir);
# every process started is stopped on exit, Ctrl-C and errors included.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
run_user=${PGPULSE_BENCH_USER:-pgpulse-test}
t_start=$SECONDS
step=start

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit "${1:-0}"; }
say() { echo "bench.sh: $*" >&2; }
begin() { step=$1; printf '\n==== %s\n' "$1" >&2; }
die() { say "FAILED at step '$step': $*"; exit 1; }

# ------------------------------------------------------------------ options
py_args=()
out=
install=1
build=1
while [ $# -gt 0 ]; do
	case "$1" in
	--quick | --smoke) py_args+=("$1") ;;
	--rounds | --seconds | --workloads)
		[ $# -ge 2 ] || die "$1 needs a value"
		py_args+=("$1" "$2")
		shift
		;;
	--out)
		[ $# -ge 2 ] || die "--out needs a directory"
		out=$2
		shift
		;;
	--no-install) install= ;;
	--server-unix) py_args+=("$1") ;;
	--no-build) build= ;;
	-h | --help) usage 0 ;;
	*) say "unknown option: $1"; usage 2 >&2 ;;
	esac
	shift
done

if [ -z "$out" ]; then
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	if [ -w "$here" ]; then out=$here/results/$stamp; else out=$PWD/pgpulse-bench-results/$stamp; fi
fi
case "$out" in /*) ;; *) out=$PWD/$out ;; esac

# ------------------------------------------------------------------ steps
install_deps() {
	begin "install dependencies"
	# run-tests.sh's PACKAGES include postgresql, pgbouncer and gnuplot-nox
	"$srcdir/contrib/run-tests.sh" --deps-only
}

# Build the daemon alone with configure's defaults (-O2, no sanitizers) in a
# build dir of our own, so a build/ someone else is rebuilding is untouched.
build_pgpulse() {
	begin "build pgpulse"
	local builddir=${PGPULSE_BUILDDIR:-$srcdir/build-bench} log
	if [ -f "$srcdir/config.status" ] && [ -z "${PGPULSE_BUILDDIR:-}" ]; then
		builddir=$srcdir # configured in place: a VPATH build is refused there
	fi
	mkdir -p "$builddir"
	log=$builddir/bench-build.log
	: >"$log"
	if [ ! -x "$srcdir/configure" ]; then
		(cd "$srcdir" && ./autogen.sh) >>"$log" 2>&1 || { tail -n 30 "$log" >&2; die "autogen.sh failed (log: $log)"; }
	fi
	if [ ! -f "$builddir/Makefile" ]; then
		(cd "$builddir" && "$srcdir/configure" -q) >>"$log" 2>&1 ||
			{ tail -n 30 "$log" >&2; die "configure failed (log: $log)"; }
	fi
	make -C "$builddir" -j"$(nproc 2>/dev/null || echo 2)" pgpulse >>"$log" 2>&1 ||
		{ tail -n 30 "$log" >&2; die "make failed (log: $log)"; }
	bin=$builddir/pgpulse
	say "built $bin"
}

find_binary() {
	begin "find the pgpulse binary"
	local c
	for c in "${PGPULSE_BUILDDIR:-$srcdir/build-bench}/pgpulse" "$srcdir/pgpulse" "$srcdir/build/pgpulse"; do
		if [ -e "$c" ]; then bin=$c; return; fi
	done
	die "no pgpulse binary found (build one, drop --no-build, or set PGPULSE_BIN)"
}

# Someone may be relinking the binary right now: wait (bounded) until it
# exists and runs.
wait_for_binary() {
	local deadline=$((SECONDS + 60))
	until [ -x "$1" ] && "$1" -V >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || die "$1 is missing or does not run \`$1 -V\` (waited 60 s)"
		[ $SECONDS -gt $((deadline - 60)) ] || say "waiting for $1 (being rebuilt?)"
		sleep 0.5
	done
}

raise_fd_limit() {
	begin "raise the open-file limit"
	# root may raise the hard limit; bench.py raises its soft limit to the
	# hard one and says clearly if that is too low for the idle workloads
	if [ "$(id -u)" = 0 ]; then ulimit -Hn 65536 2>/dev/null || true; fi
	ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
	say "open files: soft $(ulimit -Sn), hard $(ulimit -Hn)"
}

commit_id() {
	local c
	c=$(git -C "$srcdir" rev-parse --short=12 HEAD 2>/dev/null) || { echo unknown; return; }
	git -C "$srcdir" diff --quiet HEAD 2>/dev/null || c="$c (with uncommitted changes)"
	echo "$c"
}

# -------------------------------------------------------- cleanup on exit
work=
cleanup() {
	local rc=$? f pid
	trap - EXIT INT TERM
	if [ -n "$work" ] && [ -d "$work" ]; then
		# bench.py stops what it started; this catches what a SIGKILL left
		while IFS= read -r f; do
			pid=$(head -n 1 "$f" 2>/dev/null || true)
			if [[ "$pid" =~ ^[0-9]+$ ]]; then
				case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
				postgres | pgbouncer | pgpulse)
					say "stopping leftover $(cat "/proc/$pid/comm" 2>/dev/null) (pid $pid)"
					kill -QUIT "$pid" 2>/dev/null || true
					sleep 1
					kill -KILL "$pid" 2>/dev/null || true
					;;
				esac
			fi
		done < <(find "$work" -name '*.pid' 2>/dev/null) # postmaster.pid too
		if [ "$(wc -l <"$work/results/raw.csv" 2>/dev/null || echo 0)" -gt 1 ]; then # measured something
			mkdir -p "$out" && cp -R "$work/results/." "$out/" && say "results in $out"
		fi
		rm -rf "$work"
	fi
	if [ "$rc" != 0 ]; then say "exit status $rc (step '$step')"; fi
	say "total time $(((SECONDS - t_start) / 60))m$(((SECONDS - t_start) % 60))s"
	exit "$rc"
}
# Ctrl-C or a CI timeout (SIGTERM) reaches bench.py through here: it stops
# what it started, then this script's EXIT trap removes the work dir.
child=
forward_and_exit() {
	if [ -n "$child" ]; then
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	exit "$1"
}
trap cleanup EXIT
trap 'forward_and_exit 130' INT
trap 'forward_and_exit 143' TERM

# ------------------------------------------------------------------ main
if [ -n "$install" ]; then install_deps; fi
if [ -n "${PGPULSE_BIN:-}" ]; then
	bin=$PGPULSE_BIN
elif [ -n "$build" ]; then
	build_pgpulse
else
	find_binary
fi
wait_for_binary "$bin"
raise_fd_limit

begin "stage the work dir"
work=$(mktemp -d "${TMPDIR:-/tmp}/pgpulse-bench.XXXXXX")
mkdir "$work/bin" "$work/bench" "$work/results"
cp "$bin" "$work/bin/pgpulse"
cp "$here/bench.py" "$here/report.py" "$here/pgwire.py" "$work/bench/"
# PGBOUNCER=/path/to/pgbouncer: that PgBouncer instead of the one on PATH
# (1.21+ also runs select-prepared-tx); staged like pgpulse, so the bench
# user can run it wherever it lies
if [ -n "${PGBOUNCER:-}" ]; then
	cp "$PGBOUNCER" "$work/bin/pgbouncer"
	py_args+=(--pgbouncer "$work/bin/pgbouncer")
fi
py=(/usr/bin/python3 "$work/bench/bench.py"
	--pgpulse "$work/bin/pgpulse" --workdir "$work" --results "$work/results"
	--commit "$(commit_id)" --started "$(date +%s)" "${py_args[@]}")
env_vars=(PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin TMPDIR="$work")
for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS PGPULSE_PG_BINDIR; do
	if [ -n "${!v:-}" ]; then env_vars+=("$v=${!v}"); fi
done
if [ "$(id -u)" = 0 ]; then
	if ! id -u "$run_user" >/dev/null 2>&1; then
		say "creating system user $run_user"
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin "$run_user"
	fi
	chown -R "$run_user:" "$work"
	chmod 0700 "$work"
	# setpriv, not runuser: no PAM session resetting the open-file limit, and
	# no watching parent that SIGKILLs bench.py 2 s into its cleanup
	cmd=(setpriv --reuid="$run_user" --regid="$run_user" --init-groups --
		env -i HOME="$work" "${env_vars[@]}" "${py[@]}")
else
	cmd=(env HOME="${HOME:-$work}" "${env_vars[@]}" "${py[@]}")
fi

as_whom=$(id -un)
if [ "$(id -u)" = 0 ]; then as_whom=$run_user; fi
begin "benchmark (as $as_whom)"
# in the background and waited for, so a signal to this script is handled
# at once (a trap would otherwise wait for the foreground command to end)
"${cmd[@]}" &
child=$!
rc=0
wait "$child" || rc=$?
child=
[ "$rc" = 0 ] || step="benchmark (bench.py exited $rc; its messages are above)"
exit "$rc"
