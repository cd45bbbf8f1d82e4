#!/bin/bash
# pgpulse refuses to run as root, and with -u it switches to that user first.
# Only meaningful when run by root (as CI does); skipped (77) otherwise.
set -euo pipefail
bin=${PGPULSE_BIN:-$(dirname "$0")/../pgpulse}
[ "$(id -u)" = 0 ] || { echo "root-user: not root, skipped"; exit 77; }
user=${PGPULSE_TEST_USER:-pgpulse-test}
id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"

dir=$(mktemp -d /tmp/pgpulse-root-test.XXXXXX)
chmod 0755 "$dir"
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
port=$((30000 + RANDOM % 20000))
cat >"$dir/pgpulse.ini" <<INI
[pgpulse]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
INI
chmod 0644 "$dir/pgpulse.ini"

passed=0 failed=0
check() { if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $*"; fi; }

# 1. as root without -u: refused, with a message that says what to do
set +e
out=$("$bin" "$dir/pgpulse.ini" 2>&1)
rc=$?
set -e
check test "$rc" -ne 0
check grep -q "refusing to run as root" <<<"$out"
check grep -q -- "-u" <<<"$out"

# 2. with -u: runs as that user
"$bin" -u "$user" "$dir/pgpulse.ini" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 1 250); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.02
done
owner=$(ps -o uid= -p "$pid" 2>/dev/null | tr -d ' ')
check test "$owner" = "$(id -u "$user")"
kill -INT "$pid" 2>/dev/null || true
for _ in $(seq 1 250); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
check test ! -e "/proc/$pid"
pid=

echo "root-user: $passed passed, $failed failed"
[ "$failed" = 0 ]
