#!/bin/sh
# Generate ./configure and Makefile.in from configure.ac and Makefile.am.
# Needs: autoconf, automake, pkg-config (for its autoconf macros).
set -eu
cd "$(dirname "$0")"

missing=
command -v autoreconf >/dev/null 2>&1 || missing="$missing autoconf"
command -v automake >/dev/null 2>&1 || missing="$missing automake"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
if [ -n "$missing" ]; then
	echo "autogen.sh: missing tools; install them with: apt-get install$missing" >&2
	exit 1
fi

autoreconf --install --force
echo "autogen.sh: done; now run ./configure && make"
