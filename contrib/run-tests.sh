#!/bin/bash
# Build pgpulse and run its tests on a fresh Debian 12 machine.
#
#   contrib/run-tests.sh [configure options...]    e.g.  --enable-werror
#   contrib/run-tests.sh --deps-only               install dependencies, stop
#
# Installs the build and test dependencies with apt (through sudo when not
# root; skipped when they are all present), runs ./autogen.sh and ./configure
# when needed, `make`, then `make check`: the C unit tests and the
# integration suite (pytest against a scratch PostgreSQL; run as root, it
# runs as the unprivileged user pgpulse-test).
#
# Environment:
#   PGPULSE_BUILDDIR  build in this directory (a VPATH build) instead of the
#                     source tree
#   MAKE_JOBS         parallel make jobs (default: number of CPUs)
set -euo pipefail

srcdir=$(cd "$(dirname "$0")/.." && pwd)
jobs=${MAKE_JOBS:-$(nproc 2>/dev/null || echo 2)}

# libclang-rt-dev: clang's sanitizer runtimes and libFuzzer (make fuzz), only a
# Recommends of clang.
# prometheus: for promtool, which checks the /metrics output and the alert rules.
# pgbouncer, gnuplot-nox: the side-by-side benchmark (contrib/bench/bench.sh)
# and its smoke run in the integration suite.
# systemd, logrotate: systemd-analyze checks etc/pgpulse.service, and
# etc/pgpulse.logrotate is run for real against a test's logfile.
# pandoc, man-db: the man pages (make distcheck in .ci/run needs them; man
# checks that they render).
# openssl: the TLS tests make a throwaway certificate authority with it.
PACKAGES=(
	build-essential autoconf automake pkg-config
	libevent-dev libssl-dev libc-ares-dev libpq-dev libsystemd-dev
	postgresql postgresql-client
	python3 python3-pytest python3-psycopg
	clang libclang-rt-dev ca-certificates openssl
	prometheus
	pgbouncer gnuplot-nox
	systemd logrotate
	pandoc man-db
)

section() { printf '\n==== %s ====\n' "$*"; }

install_deps() {
	if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
		echo "not a Debian system: install the equivalents of: ${PACKAGES[*]}" >&2
		return 0
	fi
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	if [ ${#missing[@]} -eq 0 ]; then
		echo "all dependencies present"
		return 0
	fi
	echo "installing: ${missing[*]}"
	local sudo=()
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
		sudo=(sudo)
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

section "Dependencies"
install_deps
if [ "${1:-}" = --deps-only ]; then
	exit 0
fi

section "Configure"
cd "$srcdir"
if [ ! -x configure ]; then
	./autogen.sh
fi
builddir=${PGPULSE_BUILDDIR:-$srcdir}
mkdir -p "$builddir"
cd "$builddir"
if [ ! -f Makefile ] || [ $# -gt 0 ]; then
	"$srcdir/configure" "$@"
else
	echo "reusing the configured build in $builddir (pass configure options to reconfigure)"
fi

section "Build"
make -j"$jobs"

section "Test (make check)"
make -j"$jobs" check
section "All tests passed"
