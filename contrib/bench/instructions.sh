#!/bin/bash
# User-space instructions per transaction of pgpulse and PgBouncer, counted by
# callgrind: the steady figure on a noisy machine (doc/benchmarks.md, "Where
# the time goes").
#
#   contrib/bench/instructions.sh [pgbench options...]
#
# e.g.  contrib/bench/instructions.sh -S -c 50            (the default)
#       contrib/bench/instructions.sh -S -M extended -c 50
#       contrib/bench/instructions.sh -S -C -c 4          (a login per transaction)
#
# Each pooler runs under valgrind --tool=callgrind twice, for SHORT and then
# LONG transactions per client (defaults 100 and 300; with -C 50 and 150);
# the difference of the two totals over the difference in transactions is
# the cost of one transaction, start-up and shut-down cancelled out. Both
# poolers read one ini (transaction pooling, pool of 20, md5 logins) in front
# of a scratch PostgreSQL. Only user space is counted: the kernel's share
# (most of a pooler's CPU time) is what perf shows.
#
# COUNT=syscalls counts system calls and context switches per transaction
# instead (the same difference of two runs, each pooler running natively
# under `perf stat` with the syscalls tracepoints: needs root or a
# perf_event_paranoid of -1): how often each pooler goes round its event
# loop and sleeps, which instructions do not show; and task-clock, the
# pooler's CPU time in µs per transaction (timing: noisy on a busy machine).
# SERVER_UNIX=1 has the poolers reach PostgreSQL over its unix socket.
# COUNT=sched: scheduling delays of each pooler (perf sched) and, for
# pgpulse, the phases of a request by its own telemetry (see sched_run).
#
# Environment: PGPULSE_BIN (default build-bench/pgpulse, ./pgpulse or
# build/pgpulse), PGBOUNCER (a PgBouncer binary, e.g. the 1.25 build in
# shared/anchors; default the one on PATH), TARGETS (default "pgpulse
# pgbouncer"), SHORT, LONG, POOL_MODE (default transaction; session as
# bench.sh's select-prepared), POOL_SIZE (default 20),
# TELEMETRY (0 turns pgpulse's telemetry off), KEEP (a directory: the
# callgrind files are copied there, to read per function with
# callgrind_annotate; with --dump-instr=yes, as CALLGRIND_ARGS may add, per
# instruction). As root, everything runs as the
# user pgpulse-test. Needs valgrind, PostgreSQL, pgbench and PgBouncer (apt).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
srcdir=$(cd "$here/../.." && pwd)
[ $# -gt 0 ] || set -- -S -c 50
args=("$@")
clients=1
connect_each=
for ((i = 0; i < ${#args[@]}; i++)); do
	case "${args[i]}" in
	-c) clients=${args[i + 1]} ;;
	-c*) clients=${args[i]#-c} ;;
	-C) connect_each=1 ;;
	esac
done
short=${SHORT:-$([ -n "$connect_each" ] && echo 50 || echo 100)}
long=${LONG:-$((short * 3))}
targets=${TARGETS:-pgpulse pgbouncer}

bin=${PGPULSE_BIN:-}
if [ -z "$bin" ]; then
	for c in "$srcdir/build-bench/pgpulse" "$srcdir/pgpulse" "$srcdir/build/pgpulse"; do
		[ -x "$c" ] && { bin=$c; break; }
	done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "no pgpulse binary (build one, or set PGPULSE_BIN)" >&2; exit 1; }
for tool in valgrind callgrind_annotate pgbench pgbouncer; do
	command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
		{ echo "$tool not found: apt-get install valgrind postgresql pgbouncer" >&2; exit 1; }
done
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || { echo "PostgreSQL server binaries not found" >&2; exit 1; }

run_user=$(id -un)
if [ "$(id -u)" = 0 ]; then
	run_user=pgpulse-test
	id -u "$run_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$run_user"
fi
as_user() { if [ "$(id -u)" = 0 ]; then setpriv --reuid="$run_user" --regid="$run_user" --init-groups -- "$@"; else "$@"; fi; }

dir=$(mktemp -d /tmp/pgpulse-instr.XXXXXX)
chmod 0755 "$dir"
cp "$bin" "$dir/pgpulse"
if [ -n "${PGBOUNCER:-}" ]; then
	cp "$PGBOUNCER" "$dir/pgbouncer"
else
	cp "$(command -v pgbouncer || echo /usr/sbin/pgbouncer)" "$dir/pgbouncer"
fi
pooler_pid=
cleanup() {
	[ -n "$pooler_pid" ] && kill -KILL "$pooler_pid" 2>/dev/null || true
	as_user "$pgbin/pg_ctl" -D "$dir/pg" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pgport=$(free_port)
port=$(free_port)
[ "$(id -u)" = 0 ] && chown -R "$run_user:" "$dir"
as_user "$pgbin/initdb" -D "$dir/pg" -U postgres -A trust >/dev/null
as_user "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
	-o "-p $pgport -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" start >/dev/null
as_user "$pgbin/createdb" -h "$dir" -p "$pgport" -U postgres bench
as_user "$pgbin/pgbench" -h "$dir" -p "$pgport" -U postgres -i -s 1 -q bench >/dev/null 2>&1

echo '"postgres" "bench"' >"$dir/userlist.txt"
cat >"$dir/pooler.ini" <<EOF
[databases]
bench = host=$([ -n "${SERVER_UNIX:-}" ] && echo "$dir" || echo 127.0.0.1) port=$pgport dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = md5
auth_file = $dir/userlist.txt
pool_mode = ${POOL_MODE:-transaction}
default_pool_size = ${POOL_SIZE:-20}
max_client_conn = 1000
log_connections = 0
log_disconnections = 0
logfile = $dir/pooler.log
EOF
[ "${TELEMETRY:-1}" = 0 ] && echo "telemetry = 0" >>"$dir/pooler.ini"
[ "$(id -u)" = 0 ] && chown -R "$run_user:" "$dir"

# total user-space instructions of one pooler run of n transactions per client
count_run() {
	local target=$1 n=$2 out=$dir/callgrind.$1.$2 cmd
	case "$target" in
	pgpulse) cmd=("$dir/pgpulse" -q "$dir/pooler.ini") ;;
	pgbouncer) cmd=("$dir/pgbouncer" "$dir/pooler.ini") ;;
	esac
	local vg=(valgrind --tool=callgrind ${CALLGRIND_ARGS:-} --callgrind-out-file="$out" "${cmd[@]}")
	# exec all the way down, so that $! is valgrind (the pooler) itself
	if [ "$(id -u)" = 0 ]; then
		(exec setpriv --reuid="$run_user" --regid="$run_user" --init-groups -- "${vg[@]}") >"$dir/valgrind.log" 2>&1 &
	else
		(exec "${vg[@]}") >"$dir/valgrind.log" 2>&1 &
	fi
	pooler_pid=$!
	local deadline=$((SECONDS + 60))
	until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || { tail -n 20 "$dir/valgrind.log" >&2; exit 1; }
		sleep 0.1
	done
	PGPASSWORD=bench "$pgbin/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -t "$n" "${args[@]}" bench \
		>"$dir/pgbench.log" 2>&1 || { tail -n 20 "$dir/pgbench.log" >&2; exit 1; }
	# SIGINT: both poolers exit once no client is connected, and callgrind
	# writes its totals
	kill -INT "$pooler_pid"
	wait "$pooler_pid" || true
	pooler_pid=
	[ -n "${KEEP:-}" ] && cp "$out" "$KEEP/"
	callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }'
}

# system calls and context switches of one native pooler run of n
# transactions per client, as "event count" lines
SYSCALLS="sendto recvfrom read write epoll_wait epoll_ctl accept accept4 connect close setsockopt getsockopt"
count_syscalls() {
	local target=$1 n=$2 out=$dir/perf.$1.$2 cmd events=task-clock,context-switches
	case "$target" in
	pgpulse) cmd=("$dir/pgpulse" -q "$dir/pooler.ini") ;;
	pgbouncer) cmd=("$dir/pgbouncer" "$dir/pooler.ini") ;;
	esac
	for e in $SYSCALLS; do events="$events,syscalls:sys_enter_$e"; done
	if [ "$(id -u)" = 0 ]; then cmd=(setpriv --reuid="$run_user" --regid="$run_user" --init-groups -- "${cmd[@]}"); fi
	(exec perf stat -x, -e "$events" -o "$out" -- "${cmd[@]}") >"$dir/perf.log" 2>&1 &
	pooler_pid=$!
	local deadline=$((SECONDS + 60))
	until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || { tail -n 20 "$dir/perf.log" >&2; exit 1; }
		sleep 0.05
	done
	PGPASSWORD=bench "$pgbin/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -t "$n" "${args[@]}" bench \
		>"$dir/pgbench.log" 2>&1 || { tail -n 20 "$dir/pgbench.log" >&2; exit 1; }
	pkill -INT -u "$run_user" -f "^$dir/pgp?[a-z]* " || true
	wait "$pooler_pid" || true
	pooler_pid=
	awk -F, '$3 != "" && $1 ~ /^[0-9.]+$/ { e = $3; sub(/^syscalls:sys_enter_/, "", e); print e, $1 }' "$out"
}

# COUNT=sched: where a transaction's time goes at equal CPU. Each pooler
# runs natively for LONG transactions per client while `perf sched record`
# watches the machine; `perf sched latency` gives the pooler's wake-ups
# (switches), how long each waited for a CPU once woken (average, maximum)
# and its run time. For pgpulse, the phases of a request as its telemetry
# saw them (SHOW LATENCY: wait for a server, server round trip, the whole
# request) beside what pgbench saw, so what the pooler adds is split into
# its own processing and the kernel's path to and from the client.
sched_run() {
	local target=$1 n=$2 cmd
	case "$target" in
	pgpulse) cmd=("$dir/pgpulse" -q "$dir/pooler.ini") ;;
	pgbouncer) cmd=("$dir/pgbouncer" "$dir/pooler.ini") ;;
	esac
	if [ "$(id -u)" = 0 ]; then cmd=(setpriv --reuid="$run_user" --regid="$run_user" --init-groups -- "${cmd[@]}"); fi
	("${cmd[@]}") >"$dir/pooler.out" 2>&1 &
	pooler_pid=$!
	local deadline=$((SECONDS + 60))
	until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || { tail -n 20 "$dir/pooler.out" >&2; exit 1; }
		sleep 0.05
	done
	perf sched record -a -o "$dir/sched.$target" >/dev/null 2>&1 &
	local perf_pid=$!
	sleep 0.5
	(cd "$dir" && PGPASSWORD=bench "$pgbin/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -t "$n" -l \
		--log-prefix="$dir/xact.$target" "${args[@]}" bench >"$dir/pgbench.$target" 2>&1) ||
		{ tail -n 20 "$dir/pgbench.$target" >&2; exit 1; }
	kill -INT "$perf_pid"
	wait "$perf_pid" || true
	if [ "$target" = pgpulse ]; then
		PGPASSWORD=bench "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d pgpulse -At -F ' ' \
			-c "SHOW LATENCY" >"$dir/latency" 2>&1 || true
	fi
	pkill -INT -u "$run_user" -f "^$dir/pgp?[a-z]* " || true
	wait "$pooler_pid" || true
	pooler_pid=
	local comm=$target
	perf sched latency -i "$dir/sched.$target" 2>/dev/null |
		awk -v c="$comm" -F'|' '$1 ~ c":" { gsub(/ +/, " "); print }' | head -n 1
}

if [ "${COUNT:-instructions}" = sched ]; then
	command -v perf >/dev/null || { echo "perf not found: apt-get install linux-perf" >&2; exit 1; }
	echo "admin_users = postgres" >>"$dir/pooler.ini"
	printf '| pooler | task: run time ms, switches, average delay ms, maximum delay ms |\n| --- | --- |\n'
	for t in $targets; do
		printf '| %s | %s |\n' "$t" "$(sched_run "$t" "$long")"
	done
	for t in $targets; do
		cat "$dir"/xact."$t"* | awk -v t="$t" '{ print $3 }' | sort -n |
			awk -v t="$t" '{ v[NR] = $1 } END { printf "%s: pgbench latency p50 %d us, p99 %d us over %d transactions\n", t, v[int(NR * 0.5)], v[int(NR * 0.99)], NR }'
	done
	if [ -s "$dir/latency" ]; then
		echo "pgpulse SHOW LATENCY (kind window count mean p50 p90 p95 p99 ... in us), last minute:"
		awk '$1 == "bench" && ($3 == "query" || $3 == "server" || $3 == "wait") { print "  " $3 ": mean " $6 ", p50 " $7 ", p99 " $10 }' "$dir/latency"
	fi
	echo "(pgbench ${args[*]} -t $long; perf sched over each run)"
	exit 0
fi

if [ "${COUNT:-instructions}" = syscalls ]; then
	per=$((  (long - short) * clients ))
	header="| per transaction |" rule="| --- |"
	for t in $targets; do
		count_syscalls "$t" "$short" >"$dir/a.$t"
		count_syscalls "$t" "$long" >"$dir/b.$t"
		label=$t
		[ "$t" = pgbouncer ] && label="PgBouncer $("$dir/pgbouncer" -V 2>/dev/null | sed -n '1s/^[^0-9]*\([0-9][0-9.]*\).*/\1/p')"
		header="$header $label |" rule="$rule --- |"
	done
	echo "$header"
	echo "$rule"
	for e in task-clock context-switches $SYSCALLS; do
		row="| $e |"
		for t in $targets; do
			row="$row $(awk -v e="$e" -v per="$per" '
				FILENAME ~ /\/a\./ && $1 == e { a = $2 } FILENAME ~ /\/b\./ && $1 == e { b = $2 }
				END { v = (b - a) / per; if (e == "task-clock") v *= 1000
				      if (v < 0.005 && v > -0.005) v = 0; printf "%.2f", v }' "$dir/a.$t" "$dir/b.$t") |"
		done
		echo "$row"
	done
	echo "(pgbench ${args[*]}; perf stat, difference of $long and $short transactions per client)"
	exit 0
fi

printf '| pooler | instructions per transaction |\n| --- | --- |\n'
for t in $targets; do
	a=$(count_run "$t" "$short")
	b=$(count_run "$t" "$long")
	label=$t
	[ "$t" = pgbouncer ] && label="PgBouncer $("$dir/pgbouncer" -V 2>/dev/null | sed -n '1s/^[^0-9]*\([0-9][0-9.]*\).*/\1/p')"
	printf '| %s | %s |\n' "$label" "$(( (b - a) / ((long - short) * clients) ))"
done
echo "(pgbench ${args[*]}; callgrind, difference of $long and $short transactions per client)"
