#!/bin/bash
# pgpulse refuses to run as root, and with -u it switches to that user first;
# user = in the file switches once the sockets are bound; peer authentication
# tells OS users apart on the unix socket; syslog = 1 sends its lines to /dev/log.
# Only meaningful when run by root (as CI does); skipped (77) otherwise.
set -euo pipefail
bin=${PGPULSE_BIN:-$(dirname "$0")/../pgpulse}
[ "$(id -u)" = 0 ] || { echo "root-user: not root, skipped"; exit 77; }
user=${PGPULSE_TEST_USER:-pgpulse-test}
id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"

dir=$(mktemp -d /tmp/pgpulse-root-test.XXXXXX)
chmod 0755 "$dir"
pid= listener=
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	if [ -n "$listener" ]; then
		kill "$listener" 2>/dev/null
		rm -f /dev/log
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
# a port the kernel says is free: a random one in the ephemeral range could be
# some outgoing connection's (seen: "Address already in use")
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
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

# 3. user = in the file (PgBouncer's setting): started as root, pgpulse binds,
# then runs as that user and its groups, and serves a login
sed -e "s/^auth_type = trust\$/auth_type = trust\nadmin_users = $user\nuser = $user\npidfile = \/run\/pgpulse-root-test-$port.pid/" \
	"$dir/pgpulse.ini" >"$dir/user.ini"
chmod 0644 "$dir/user.ini"
"$bin" "$dir/user.ini" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 1 250); do
	grep -q "switched to user" "$dir/log" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.02
done
uid=$(id -u "$user") gid=$(id -g "$user")
check grep -q "^Uid:[[:space:]]*$uid[[:space:]]*$uid[[:space:]]*$uid[[:space:]]*$uid\$" "/proc/$pid/status"
check grep -q "^Gid:[[:space:]]*$gid[[:space:]]*$gid[[:space:]]*$gid[[:space:]]*$gid\$" "/proc/$pid/status"
check test "$(grep '^Groups:' "/proc/$pid/status" | wc -w)" -ge 1
check sh -c "! grep -q '^Groups:.*\b0\b' /proc/$pid/status"
# a login: the admin console answers SHOW VERSION (auth_type trust, no server needed)
login() {
	/usr/bin/python3 - "$port" "$user" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
body = struct.pack("!I", 196608) + b"user\0" + sys.argv[2].encode() + b"\0database\0pgpulse\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
buf = b""
while b"Z\0\0\0\x05" not in buf:
    chunk = s.recv(65536)
    if not chunk:
        sys.exit(1)
    buf += chunk
sys.exit(0 if buf[:1] == b"R" and b"E" not in buf[:1] else 1)
PY
}
check login
check test -O "/run/pgpulse-root-test-$port.pid" -o "$(stat -c %u "/run/pgpulse-root-test-$port.pid")" = "$uid"
kill -INT "$pid" 2>/dev/null || true
for _ in $(seq 1 250); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
check test ! -e "/proc/$pid"
pid=
rm -f "/run/pgpulse-root-test-$port.pid"

# a user that does not exist: refused before anything is opened, naming the line
sed -e 's/^auth_type = trust$/auth_type = trust\nuser = pgpulse-no-such-user/' "$dir/pgpulse.ini" >"$dir/nouser.ini"
set +e
out=$("$bin" "$dir/nouser.ini" 2>&1)
rc=$?
set -e
check test "$rc" = 1
check grep -q "nouser.ini:[0-9]*: user: user \"pgpulse-no-such-user\" does not exist" <<<"$out"

# 5. unix_socket_group: the socket file belongs to that group (given before
# the switch to user), with unix_socket_mode; a group that does not exist
# stops the start, naming the setting
sockgroup=daemon
sed -e "s/^unix_socket_dir =\$/unix_socket_dir = ${dir//\//\\/}\nunix_socket_mode = 0770\nunix_socket_group = $sockgroup\nuser = $user/" \
	"$dir/pgpulse.ini" >"$dir/group.ini"
chmod 0644 "$dir/group.ini"
"$bin" "$dir/group.ini" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 1 250); do
	grep -q "switched to user" "$dir/log" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.02
done
check test "$(stat -c '%G %A' "$dir/.s.PGSQL.$port" 2>&1)" = "$sockgroup srwxrwx---"
kill -INT "$pid" 2>/dev/null || true
for _ in $(seq 1 250); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
pid=
sed -e "s/^unix_socket_group = $sockgroup\$/unix_socket_group = pgpulse-no-such-group/" "$dir/group.ini" >"$dir/nogroup.ini"
set +e
out=$("$bin" "$dir/nogroup.ini" 2>&1)
rc=$?
set -e
check test "$rc" -ne 0
check grep -q 'unix_socket_group: no group "pgpulse-no-such-group"' <<<"$out"
check test ! -e "$dir/.s.PGSQL.$port"

# 6. peer authentication (auth_type = hba) over the unix socket, each client
# a different OS user: the kernel's SO_PEERCRED names it, an ident map lets
# nobody in as "admin" and no one else; the OS user pgpulse runs as (after
# user =) opens the console as "pgbouncer" without a password, another OS
# user does not
cat >"$dir/hba.conf" <<HBA
local pgbouncer pgbouncer peer
local pgbouncer admin peer map=m
HBA
printf 'm nobody admin\n' >"$dir/ident.conf"
chmod 0644 "$dir/hba.conf" "$dir/ident.conf"
sed -e "s/^unix_socket_dir =\$/unix_socket_dir = ${dir//\//\\/}\nunix_socket_mode = 0777\nuser = $user\nadmin_users = admin\nauth_hba_file = ${dir//\//\\/}\/hba.conf\nauth_ident_file = ${dir//\//\\/}\/ident.conf/" \
	-e 's/^auth_type = trust$/auth_type = hba/' "$dir/pgpulse.ini" >"$dir/peer.ini"
chmod 0644 "$dir/peer.ini"
"$bin" "$dir/peer.ini" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 1 250); do
	grep -q "switched to user" "$dir/log" 2>/dev/null && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.02
done
# as OS user $1, log in over the unix socket as role $2 to the console; prints
# the refusal's SQLSTATE and message, or "ok" after SHOW VERSION answers
peer_login() {
	setpriv --reuid="$1" --regid="$(id -g "$1")" --init-groups /usr/bin/python3 - "$dir/.s.PGSQL.$port" "$2" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
body = struct.pack("!I", 196608) + b"user\0" + sys.argv[2].encode() + b"\0database\0pgbouncer\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
buf = b""
def msg():
    global buf
    while len(buf) < 5 or len(buf) < 1 + struct.unpack("!I", buf[1:5])[0]:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("closed")
        buf += chunk
    n = 1 + struct.unpack("!I", buf[1:5])[0]
    m, buf = buf[:n], buf[n:]
    return m[:1], m[5:]
while True:
    t, b = msg()
    if t == b"E":
        f = dict((x[:1], x[1:].decode()) for x in b.split(b"\0") if x)
        print(f[b"C"], f[b"M"])
        sys.exit(0)
    if t == b"R" and struct.unpack("!I", b[:4])[0] != 0:
        print("asked for a password")
        sys.exit(0)
    if t == b"Z":
        break
q = b"SHOW VERSION\0"
s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
while msg()[0] != b"Z":
    pass
print("ok")
PY
}
check test "$(peer_login nobody admin)" = "ok"
check test "$(peer_login "$user" admin)" = '28000 peer authentication failed for user "admin"'
check test "$(peer_login "$user" pgbouncer)" = "ok"
# (the console's user check comes first, as in PgBouncer)
check test "$(peer_login nobody pgbouncer)" = '28000 not allowed: "pgbouncer" is not in admin_users or stats_users'
kill -INT "$pid" 2>/dev/null || true
for _ in $(seq 1 250); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
pid=

# 4. syslog = 1: the lines reach /dev/log with syslog_ident and the facility's
# priority. Only where nothing owns /dev/log (a container): the test plays the
# syslog daemon there, and leaves a real one alone.
if [ ! -e /dev/log ] && [ -x /usr/bin/python3 ]; then
	/usr/bin/python3 - "$dir/syslog.txt" <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
os.chmod("/dev/log", 0o666)
s.settimeout(20)
with open(sys.argv[1], "ab", buffering=0) as f:
    try:
        while True:
            f.write(s.recv(65536) + b"\n")
    except socket.timeout:
        pass
PY
	listener=$!
	for _ in $(seq 1 250); do [ -S /dev/log ] && break; sleep 0.02; done
	sed -e 's/^auth_type = trust$/auth_type = trust\nsyslog = 1\nsyslog_ident = pgpulse-root-test\nsyslog_facility = local3/' \
		"$dir/pgpulse.ini" >"$dir/syslog.ini"
	chmod 0644 "$dir/syslog.ini"
	"$bin" -u "$user" -q "$dir/syslog.ini" >"$dir/log" 2>&1 &
	pid=$!
	for _ in $(seq 1 250); do grep -q "started" "$dir/syslog.txt" 2>/dev/null && break; sleep 0.02; done
	kill -INT "$pid" 2>/dev/null || true
	for _ in $(seq 1 250); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
	pid=
	for _ in $(seq 1 250); do grep -q "stopped" "$dir/syslog.txt" 2>/dev/null && break; sleep 0.02; done
	kill "$listener" 2>/dev/null || true
	wait "$listener" 2>/dev/null || true
	listener=
	rm -f /dev/log
	# <158>: facility local3 (19) * 8 + info (6)
	check grep -q "^<158>.*pgpulse-root-test\[[0-9]*\]: .*pgpulse .* started" "$dir/syslog.txt"
	check grep -q "pgpulse-root-test\[[0-9]*\]: .*pgpulse stopped" "$dir/syslog.txt"
else
	echo "root-user: /dev/log exists (a syslog daemon owns it): syslog check skipped"
fi

echo "root-user: $passed passed, $failed failed"
[ "$failed" = 0 ]
