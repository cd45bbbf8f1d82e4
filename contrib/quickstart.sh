#!/bin/bash
# pgpulse in one command, on a fresh Debian 12 machine:
#
#   contrib/quickstart.sh
#
# Installs the dependencies (sudo when not root), builds pgpulse, starts a
# scratch PostgreSQL on a free port in a temp dir (role `app`, database
# `appdb`), starts pgpulse on 127.0.0.1:6432 in transaction pooling mode
# with Prometheus /metrics and /health on 127.0.0.1:9930, prints how to
# connect, runs a short pgbench through it, and stays up until Ctrl-C, which
# stops both and removes the temp dir. When 6432 or 9930 is taken (Debian's
# pgbouncer package starts its service on 6432), a free port is used
# instead, and the script says so.
#
# PostgreSQL will not run as root: as root, everything runs as the user who
# invoked sudo, or else as the system user pgpulse-test (created if missing).
#
# Environment: PGPULSE_PORT (default 6432) and PGPULSE_METRICS_PORT (default
# 9930): a port given this way must be free; PGPULSE_KEEP_TMP=1 keeps the
# temp dir (logs, data) after exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/.." && pwd)
port=${PGPULSE_PORT:-6432}
metrics_port=${PGPULSE_METRICS_PORT:-9930}

section() { printf '\n==== %s ====\n' "$*"; }
die() { echo "quickstart: $*" >&2; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# the body of an HTTP GET on 127.0.0.1 (bash's /dev/tcp: no curl needed)
http_body() { # http_body <port> <path>
	local reply
	reply=$(exec 3<>"/dev/tcp/127.0.0.1/$1" &&
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 && cat <&3) || return 1
	printf '%s' "${reply#*$'\r\n\r\n'}"
}

free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 12000))
		if ! port_in_use "$p"; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

random_password() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

# ---------------------------------------------------------------- build

"$here/run-tests.sh" --deps-only

section "Build"
cd "$srcdir"
[ -x configure ] || ./autogen.sh
[ -f Makefile ] || ./configure
make -j"$(nproc 2>/dev/null || echo 2)"
[ -x "$srcdir/pgpulse" ] || die "build did not produce $srcdir/pgpulse"

# A port asked for by name must be free; a default that is taken gives way
# to a free port, and the user is told which.
pick_port() { # pick_port <what> <port> <env var>
	if ! port_in_use "$2"; then
		echo "$2"
	elif [ -n "${!3:-}" ]; then
		die "$1 port $2 ($3) is already in use; set $3 to another port"
	else
		local p
		p=$(free_port)
		echo "quickstart: $1 port $2 is already in use (a PgBouncer?); using $p instead" >&2
		echo "$p"
	fi
}
port=$(pick_port "listen" "$port" PGPULSE_PORT)
metrics_port=$(pick_port "metrics" "$metrics_port" PGPULSE_METRICS_PORT)

# ------------------------------------------------------------ who runs it

run_user=$(id -un)
if [ "$(id -u)" = 0 ]; then
	if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
		run_user=$SUDO_USER
	else
		run_user=pgpulse-test
		if ! id -u "$run_user" >/dev/null 2>&1; then
			useradd --system --user-group --no-create-home --home-dir /nonexistent \
				--shell /usr/sbin/nologin "$run_user"
		fi
	fi
fi
as_user() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$run_user" -- "$@"
	else
		"$@"
	fi
}

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] || die "PostgreSQL server binaries not found: apt-get install postgresql"

dir=$(mktemp -d /tmp/pgpulse-quickstart.XXXXXX)
chmod 0755 "$dir"
# The build tree may be unreadable by run_user (e.g. under /root): copy the binary.
cp "$srcdir/pgpulse" "$dir/pgpulse"
if [ "$(id -u)" = 0 ]; then chown -R "$run_user:" "$dir"; fi
cd "$dir"   # a cwd that run_user can enter

pgdata=$dir/pgdata
pgpid=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	section "Stopping"
	if [ -n "${pgpid:-}" ] && kill -0 "$pgpid" 2>/dev/null; then
		kill -INT "$pgpid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$pgpid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pgpid" 2>/dev/null || true
		echo "pgpulse stopped"
	fi
	if [ -f "$pgdata/postmaster.pid" ]; then
		as_user "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
		echo "PostgreSQL stopped"
	fi
	if [ -n "${PGPULSE_KEEP_TMP:-}" ]; then
		echo "kept $dir"
	else
		rm -rf "$dir"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------- PostgreSQL

section "Scratch PostgreSQL (as $run_user)"
pgport=$(free_port)
app_pw=$(random_password)
admin_pw=$(random_password)

as_user "$pgbin/initdb" -D "$pgdata" -U postgres -A trust --auth-host=scram-sha-256 \
	-E UTF8 --locale=C >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log"; die "initdb failed"; }
as_user tee -a "$pgdata/postgresql.conf" >/dev/null <<EOF
port = $pgport
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 100
EOF
as_user "$pgbin/pg_ctl" -D "$pgdata" -l "$dir/postgresql.log" -w start >/dev/null ||
	{ tail -n 30 "$dir/postgresql.log"; die "PostgreSQL did not start"; }
as_user "$pgbin/psql" -X -q -h "$dir" -p "$pgport" -U postgres -d postgres -v ON_ERROR_STOP=1 \
	-c "CREATE ROLE app LOGIN PASSWORD '$app_pw'" \
	-c "CREATE DATABASE appdb OWNER app"
echo "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport, data in $pgdata"

# -------------------------------------------------------------- pgpulse

section "pgpulse on 127.0.0.1:$port"
as_user tee "$dir/userlist.txt" >/dev/null <<EOF
"app" "$app_pw"
"admin" "$admin_pw"
EOF
chmod 0600 "$dir/userlist.txt"
as_user tee "$dir/pgpulse.ini" >/dev/null <<EOF
;; written by contrib/quickstart.sh
[databases]
appdb = host=127.0.0.1 port=$pgport dbname=appdb

[pgpulse]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
admin_users = admin
stats_users = admin
pool_mode = transaction
default_pool_size = 20
max_client_conn = 200
;; Prometheus /metrics and the load balancer's /health (doc/telemetry.md)
metrics_addr = 127.0.0.1
metrics_port = $metrics_port
EOF

as_user sh -c 'echo $$ > "$1"; exec "$2" "$3" >>"$4" 2>&1' sh \
	"$dir/pgpulse.run.pid" "$dir/pgpulse" "$dir/pgpulse.ini" "$dir/pgpulse.log" &
bgpid=$!
for _ in $(seq 1 500); do
	[ -s "$dir/pgpulse.run.pid" ] && port_in_use "$port" && break
	kill -0 "$bgpid" 2>/dev/null || break
	sleep 0.02
done
pgpid=$(cat "$dir/pgpulse.run.pid" 2>/dev/null || true)
if ! port_in_use "$port"; then
	tail -n 40 "$dir/pgpulse.log" >&2 || true
	die "pgpulse did not start (log above, config in $dir/pgpulse.ini)"
fi

cat <<EOF
pgpulse is up (pid $pgpid); config $dir/pgpulse.ini, log $dir/pgpulse.log

Point an application at it:
    psql "host=127.0.0.1 port=$port dbname=appdb user=app password=$app_pw"

Admin console:
    PGPASSWORD=$admin_pw psql -h 127.0.0.1 -p $port -U admin pgpulse
    (then: SHOW POOLS; SHOW LATENCY; SHOW QUERIES; SHOW EFFICIENCY; SHOW HELP;)

Prometheus and health checks:
    curl http://127.0.0.1:$metrics_port/metrics
    curl http://127.0.0.1:$metrics_port/health
EOF

# -------------------------------------------------------------- pgbench

section "pgbench through pgpulse"
export PGPASSWORD=$app_pw PGSSLMODE=disable
if "$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U app -i -s 1 -q appdb; then
	"$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U app -T 5 -c 10 -j 2 -P 1 appdb ||
		echo "quickstart: pgbench run failed (pgpulse log: $dir/pgpulse.log)" >&2
else
	echo "quickstart: pgbench -i failed (pgpulse log: $dir/pgpulse.log)" >&2
fi
unset PGPASSWORD

section "What pgpulse saw"
# SHOW QUERIES carries whole statements: they wrap within their column, to
# the terminal's width but no narrower than the ~115 characters its numeric
# columns take (psql cannot wrap a table narrower than those)
width=$(tput cols 2>/dev/null || echo 120)
[ "$width" -ge 130 ] 2>/dev/null || width=130
for cmd in "SHOW POOLS" "SHOW LATENCY" "SHOW QUERIES"; do
	echo "pgpulse=# $cmd;"
	PGPASSWORD=$admin_pw "$pgbin/psql" -X -h 127.0.0.1 -p "$port" -U admin -d pgpulse \
		-P format=wrapped -P columns="$width" -c "$cmd" 2>&1 || true
done
echo "GET http://127.0.0.1:$metrics_port/health"
http_body "$metrics_port" /health || echo "quickstart: /health did not answer" >&2
echo

section "Running; press Ctrl-C to stop and clean up"
wait "$bgpid" || true
echo "pgpulse exited on its own; last log lines:" >&2
tail -n 20 "$dir/pgpulse.log" >&2 || true
exit 1
