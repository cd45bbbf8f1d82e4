#!/bin/bash
# Can Prometheus scrape pgpulse every 15 s when it has 1,000 pools? One
# pgpulse with [databases] entries db0001..dbNNNN (a forced user each, so
# every pool exists from the start), a few requests through every pool so
# that each histogram and window has values, then repeated GET /metrics with
# metrics_summaries off and on (SET over the admin console). Reports, for
# each setting: the body's size in bytes, its sample lines, the scrape's
# wall time as the scraper sees it (median and max), and pgpulse's CPU per
# scrape (user+system from /proc/<pid>/stat): the time its event loop is
# busy rendering, during which clients are not served.
#
#   contrib/bench/metrics-size.sh [pools] [scrapes]
#
# Defaults: 1000 pools, 20 scrapes per setting. Needs a built ./pgpulse (or
# PGPULSE_BIN), PostgreSQL's server binaries and psql. As root, PostgreSQL
# and pgpulse run as the user pgpulse-test. The figures are in
# doc/telemetry.md ("Series per pool").
set -euo pipefail

pools=${1:-1000}
scrapes=${2:-20}
here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
bin=${PGPULSE_BIN:-$srcdir/pgpulse}
[ -x "$bin" ] || { echo "no pgpulse binary at $bin (build first, or set PGPULSE_BIN)" >&2; exit 1; }
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || { echo "PostgreSQL server binaries not found" >&2; exit 1; }

run_user=$(id -un)
if [ "$(id -u)" = 0 ]; then
	run_user=pgpulse-test
	id -u "$run_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$run_user"
fi
as_user() { if [ "$(id -u)" = 0 ]; then runuser -u "$run_user" -- "$@"; else "$@"; fi; }

dir=$(mktemp -d /tmp/pgpulse-bench.XXXXXX)
chmod 0755 "$dir"
cp "$bin" "$dir/pgpulse"
[ "$(id -u)" = 0 ] && chown -R "$run_user:" "$dir"
cd "$dir"
pp_pid=
cleanup() {
	[ -n "$pp_pid" ] && kill -INT "$pp_pid" 2>/dev/null || true
	as_user "$pgbin/pg_ctl" -D "$dir/pg" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pgport=$(free_port)
port=$(free_port)
mport=$(free_port)

as_user "$pgbin/initdb" -D "$dir/pg" -U postgres -A trust >/dev/null
as_user "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
	-o "-p $pgport -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" start >/dev/null

# max_user_connections keeps PostgreSQL at 20 backends: a pool that needs a
# server closes an idle one of another pool
{
	echo "[databases]"
	for i in $(seq -f %04g 1 "$pools"); do
		echo "db$i = host=127.0.0.1 port=$pgport dbname=postgres user=postgres"
	done
	cat <<EOF
[pgpulse]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
admin_users = postgres
pool_mode = transaction
default_pool_size = 2
max_user_connections = 20
max_client_conn = 500
log_connections = 0
log_disconnections = 0
metrics_port = $mport
EOF
} >"$dir/pgpulse.ini"
[ "$(id -u)" = 0 ] && chown "$run_user:" "$dir/pgpulse.ini"
as_user "$dir/pgpulse" -q "$dir/pgpulse.ini" >"$dir/pgpulse.log" 2>&1 &
for _ in $(seq 1 500); do
	pp_pid=$(pgrep -u "$run_user" -f "pgpulse -q $dir/pgpulse.ini" | head -n 1 || true)
	[ -n "$pp_pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.02
done
[ -n "$pp_pid" ] || { cat "$dir/pgpulse.log"; exit 1; }

admin() { psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d pgpulse -c "$1" >/dev/null; }

echo "traffic: 3 requests through each of $pools pools"
for i in $(seq -f %04g 1 "$pools"); do
	psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d "db$i" -c "select 1" -c "select 1" -c "select 1" >/dev/null
done

# GET /metrics `scrapes` times; pgpulse's CPU ticks around them
measure() {
	python3 - "$mport" "$pp_pid" "$scrapes" "$1" <<'PY'
import os, statistics, sys, time, urllib.request
port, pid, n, setting = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
def ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
hz = os.sysconf("SC_CLK_TCK")
walls, sizes, lines = [], set(), set()
t0 = ticks()
for _ in range(n):
    start = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        body = r.read()
    walls.append(time.perf_counter() - start)
    sizes.add(len(body))
    lines.add(sum(1 for l in body.split(b"\n") if l and not l.startswith(b"#")))
cpu_ms = (ticks() - t0) * 1000 / hz / n
print(f"| {setting} | {max(sizes):,} | {max(lines):,} | {statistics.median(walls) * 1000:.0f} ms "
      f"| {max(walls) * 1000:.0f} ms | {cpu_ms:.0f} ms |")
PY
}

echo
echo "| metrics_summaries | body bytes | samples | scrape median | scrape max | pgpulse CPU per scrape |"
echo "| --- | --- | --- | --- | --- | --- |"
admin "SET metrics_summaries = 0"
measure off
admin "SET metrics_summaries = 1"
measure on
echo "($pools pools, $scrapes scrapes per setting, $(nproc) cores)"
