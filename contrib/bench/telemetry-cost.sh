#!/bin/bash
# What does recording telemetry cost? pgbench select-only through one
# pgpulse, alternating telemetry on and off (SET telemetry over the admin
# console) for several rounds in the same run, and reporting for each mode
# the median TPS and pgpulse CPU microseconds per transaction (user+system
# from /proc/<pid>/stat), and the on/off ratios.
#
#   contrib/bench/telemetry-cost.sh [rounds] [seconds-per-run] [clients]
#
# Defaults: 6 rounds of 10 s at 20 clients on a pool of 10; PROTOCOL=extended
# in the environment runs pgbench -M extended instead of the simple
# protocol. Needs a built
# ./pgpulse (or PGPULSE_BIN), PostgreSQL's server binaries and pgbench. As
# root, PostgreSQL and pgpulse run as the user pgpulse-test.
set -euo pipefail

rounds=${1:-6}
secs=${2:-10}
clients=${3:-20}
protocol=${PROTOCOL:-simple}
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

as_user "$pgbin/initdb" -D "$dir/pg" -U postgres -A trust >/dev/null
as_user "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
	-o "-p $pgport -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" start >/dev/null
as_user "$pgbin/createdb" -h "$dir" -p "$pgport" -U postgres bench
as_user "$pgbin/pgbench" -h "$dir" -p "$pgport" -U postgres -i -s 10 -q bench >/dev/null 2>&1

cat >"$dir/pgpulse.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$pgport dbname=bench
[pgpulse]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
admin_users = postgres
pool_mode = transaction
default_pool_size = 10
max_client_conn = 500
log_connections = 0
log_disconnections = 0
EOF
[ "$(id -u)" = 0 ] && chown "$run_user:" "$dir/pgpulse.ini"
as_user "$dir/pgpulse" -q "$dir/pgpulse.ini" >"$dir/pgpulse.log" 2>&1 &
for _ in $(seq 1 250); do
	pp_pid=$(pgrep -u "$run_user" -f "pgpulse -q $dir/pgpulse.ini" | head -n 1 || true)
	[ -n "$pp_pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.02
done
[ -n "$pp_pid" ] || { cat "$dir/pgpulse.log"; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pp_pid/stat"; }
hz=$(getconf CLK_TCK)
admin() { psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d pgpulse -c "$1" >/dev/null; }

# warm up: open the pool's connections
"$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -S -T 2 -c "$clients" -j 2 bench >/dev/null 2>&1

results=$dir/results.txt
: >"$results"
for r in $(seq 1 "$rounds"); do
	# alternate the order between rounds: on/off, then off/on
	if [ $((r % 2)) = 1 ]; then order="on off"; else order="off on"; fi
	for mode in $order; do
		if [ "$mode" = on ]; then admin "SET telemetry = 1"; else admin "SET telemetry = 0"; fi
		t0=$(cpu_ticks)
		out=$("$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -S -M "$protocol" -T "$secs" -c "$clients" -j 2 bench 2>&1)
		t1=$(cpu_ticks)
		tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | tail -n 1)
		xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
		cpu_us=$(( (t1 - t0) * 1000000 / hz ))
		per=$(awk -v c="$cpu_us" -v x="$xacts" 'BEGIN { printf "%.2f", c / x }')
		echo "$mode $tps $per" >>"$results"
		printf 'round %d %-3s tps %10.1f  cpu/xact %6s us\n' "$r" "$mode" "$tps" "$per"
	done
done

if [ -n "${PROFILE:-}" ]; then
	# One more telemetry-on run of the same load, sampled by perf's cpu-clock
	# (a timer: it needs no hardware counters, which VMs often lack) at
	# 10 kHz in pgpulse's process, user space and kernel alike. The share of
	# samples whose source file is telemetry's own is the share of pgpulse's
	# CPU time that telemetry spends, measured within one run, so the
	# machine's run-to-run noise does not enter it.
	admin "SET telemetry = 1"
	perf record -q -e cpu-clock -F 10000 -p "$pp_pid" -o "$dir/perf.data" 2>"$dir/perf.log" &
	perf_pid=$!
	sleep 0.5
	"$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -S -M "$protocol" -T "$secs" -c "$clients" -j 2 bench >/dev/null 2>&1
	kill -INT "$perf_pid"
	wait "$perf_pid" || true
	perf report -i "$dir/perf.data" --stdio --no-children --sort srcfile -F overhead,srcfile 2>/dev/null |
		awk -v telemetry="${TELEMETRY_FILES:-^(efficiency|failures|fingerprint|health|hist|login_stats|normalize|series|slowlog|stmt_names|telemetry|textcache)\\.[ch]\$|^emmintrin\\.h\$}" '
			/^#/ || NF < 1 { next }
			{ pct = $1; sub(/%/, "", pct); total += pct
			  if ($2 ~ telemetry) { tel += pct; lines = lines sprintf("|   %s | %.2f %% |\n", $2, pct) } }
			END {
				printf "\n| pgpulse CPU samples (perf cpu-clock, one telemetry-on run) | share |\n| --- | --- |\n"
				printf "%s", lines
				printf "| in telemetry source files | %.2f %% |\n| all (kernel and user space) | %.2f %% |\n", tel, total
			}'
fi

median() { sort -n | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2] + a[NR/2+1]) / 2 }'; }
tps_on=$(awk '$1=="on"{print $2}' "$results" | median)
tps_off=$(awk '$1=="off"{print $2}' "$results" | median)
cpu_on=$(awk '$1=="on"{print $3}' "$results" | median)
cpu_off=$(awk '$1=="off"{print $3}' "$results" | median)
echo
echo "| telemetry | median TPS | median pgpulse CPU per transaction |"
echo "| --- | --- | --- |"
echo "| on | $tps_on | $cpu_on us |"
echo "| off | $tps_off | $cpu_off us |"
awk -v a="$tps_on" -v b="$tps_off" -v c="$cpu_on" -v d="$cpu_off" \
	'BEGIN { printf "| on/off | %.3f | %.3f |\n", a / b, c / d }'
echo "($rounds rounds of ${secs} s, $clients clients, pool of 10, pgbench -S -M $protocol, alternating order)"
