#!/bin/bash
# test/fuzz/run.sh [seconds-per-target] [target...]
#
# Runs each libFuzzer harness built by `make fuzz` for a bounded time over a
# copy of its seed corpus (test/fuzz/corpus/<name>; the repository is never
# written to), then prints how many inputs each executed. Exits non-zero if
# any harness crashed, leaked, hung or failed an assertion; its output and
# the input that did it stay in the work directory, whose path is printed.
#
# Run it from the build directory that `make fuzz` built in, or point
# PGPULSE_BUILDDIR at it. Targets default to every fuzz_* harness there.
# Extra libFuzzer flags can be given in FUZZ_FLAGS (e.g. FUZZ_FLAGS=-jobs=2).
set -euo pipefail

seconds=${1:-20}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
builddir=${PGPULSE_BUILDDIR:-$PWD}
bindir=$builddir/test/fuzz

case "$seconds" in
'' | *[!0-9]*) echo "usage: $0 [seconds-per-target] [target...]" >&2; exit 2 ;;
esac

if [ $# -gt 0 ]; then
	targets=("$@")
else
	targets=()
	for corpus in "$here"/corpus/*/; do
		targets+=("$(basename "$corpus")")
	done
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pgpulse-fuzz-run.XXXXXX")
# the ini and auth_file harnesses write each input to a file: tmpfs is ~5x faster
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	scratch=$(mktemp -d /dev/shm/pgpulse-fuzz-run.XXXXXX)
else
	scratch=$work/scratch
	mkdir "$scratch"
fi
trap 'rm -rf "$scratch"' EXIT
export PGPULSE_FUZZ_TMPDIR=$scratch
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# per-target limits: the framing harness needs inputs larger than its 1 kB
# receive buffer and the peer's socket buffer to reach growth and backpressure
extra_flags() {
	case "$1" in
	framing) echo "-max_len=24576" ;;
	config) echo "-max_len=16384" ;;
	*) echo "-max_len=4096" ;;
	esac
}

failed=()
printf '%-14s %12s %8s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
	bin=$bindir/fuzz_$t
	if [ ! -x "$bin" ]; then
		echo "$bin is missing: run 'make fuzz' in a build directory configured with CC=clang" >&2
		exit 2
	fi
	mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
	cp "$here/corpus/$t"/* "$work/$t/corpus/"
	log=$work/$t/fuzz.log
	set +e
	# shellcheck disable=SC2046,SC2086  # flag lists split on purpose
	(cd "$work/$t" && "$bin" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
		-artifact_prefix="$work/$t/artifacts/" $(extra_flags "$t") ${FUZZ_FLAGS:-} corpus) >"$log" 2>&1
	rc=$?
	set -e
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	if [ $rc -eq 0 ] && [ -n "$execs" ]; then
		result=ok
	else
		result="FAILED (exit $rc): $log"
		failed+=("$t")
	fi
	printf '%-14s %12s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$result"
done

if [ ${#failed[@]} -gt 0 ]; then
	echo
	for t in "${failed[@]}"; do
		echo "===== $t: the end of $work/$t/fuzz.log"
		tail -n 40 "$work/$t/fuzz.log"
		ls -l "$work/$t/artifacts"
	done
	echo "fuzzing failed: ${failed[*]} (inputs and logs kept in $work)" >&2
	exit 1
fi
rm -rf "$work"
