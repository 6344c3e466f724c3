#!/usr/bin/env bash
# End-to-end events/s through NATS JetStream with 1, 2 and 3 iu serve --nats
# workers on one PostgreSQL database, beside iu bench over HTTP against one
# iu serve on the same database server, in one run on this machine, and the
# ratios. Target: one worker's JetStream rate >= 80% of the HTTP rate.
#
# Each side starts on a new, empty schema (and the JetStream runs on a new
# nats-server store). The JetStream rate is iu bench --nats --wait: from the
# first publish until the consumer has nothing pending or unacknowledged;
# the workers consume while the events are being published.
#
# usage: bench/nats-vs-http.sh [PSQL CONNECTION ARGS...]   (default: -h 127.0.0.1 -U postgres)
# env:   N (events per run; default 30000), C (HTTP connections; default 64),
#        DUP (duplicate ratio, both sides; default 0.1), WORKERS (the worker
#        counts to run; default "1 2 3"), REPS (runs per side, the median is
#        reported; default 1), PORT (nats-server's port; default 14233, never
#        the default 4222), DB (scratch database, created if missing; default
#        iu_bench_nats).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
N=${N:-30000} C=${C:-64} DUP=${DUP:-0.1} WORKERS=${WORKERS:-"1 2 3"} REPS=${REPS:-1}
PORT=${PORT:-14233} DB=${DB:-iu_bench_nats}
if [ $# -eq 0 ]; then set -- -h 127.0.0.1 -U postgres; fi
conn=("$@")
base=$(pg_base_url "$DB" "${conn[@]}")
url=nats://127.0.0.1:$PORT

if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
	echo "installing nats-server"
	apt-get update -qq && apt-get install -y -qq nats-server >/dev/null
fi
natsd=$(command -v nats-server || echo /usr/sbin/nats-server)

work=$(mktemp -d)
pids=()
schemas=()
cleanup() {
	for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	for s in "${schemas[@]:-}"; do
		[ -n "$s" ] && psql "${conn[@]}" -d "$DB" -qc "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1
	done
	rm -rf "$work"
}
trap cleanup EXIT

echo "building iu"
(cd "$root" && go build -o "$work/iu" ./cmd/iu)
iu=$work/iu
psql "${conn[@]}" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 ||
	psql "${conn[@]}" -d postgres -qc "CREATE DATABASE $DB"

field() { sed -n "s/.*\"$1\": \([0-9.e+]*\).*/\1/p" | head -1; }

# new_store NAME: a new schema with the templates published and the gates
# open; prints its DSN.
new_store() {
	local s=iu_nats_bench_$$_$1
	psql "${conn[@]}" -d "$DB" -qc "CREATE SCHEMA $s"
	schemas+=("$s")
	local dsn="$base&search_path=$s"
	IU_DB=$dsn "$iu" template publish "$root"/examples/templates/*.yaml >/dev/null
	IU_DB=$dsn "$iu" gate set composer_enabled=true auto_instantiate_enabled=true >/dev/null
	echo "$dsn"
}

wait_ready() {
	for _ in $(seq 200); do curl -sf "http://$1/readyz" >/dev/null && return; sleep 0.05; done
	echo "iu serve on $1 did not get ready" >&2; exit 1
}

stop_all() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}

# http_run R: one iu serve, iu bench over HTTP.
http_run() {
	local dsn
	dsn=$(new_store "http_$1")
	IU_DB=$dsn "$iu" serve --addr 127.0.0.1:18400 --log-level warn --admin-token-file "$work/http-$1.token" >"$work/http-$1.log" 2>&1 &
	pids+=($!)
	wait_ready 127.0.0.1:18400
	IU_SERVER=http://127.0.0.1:18400 IU_TOKEN_FILE=$work/http-$1.token "$iu" bench -n "$N" -c "$C" --dup "$DUP" --progress none --json >"$work/http-$1.json"
	stop_all
	field events_per_second <"$work/http-$1.json" | tee -a "$work/http.eps"
}

# nats_run W R: a new nats-server store, W workers, iu bench --nats --wait.
nats_run() {
	local w=$1 dsn i
	dsn=$(new_store "nats${w}_$2")
	"$natsd" -js -a 127.0.0.1 -p "$PORT" -sd "$work/js-$w-$2" >"$work/nats-$w-$2.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.05; done
	for i in $(seq 1 "$w"); do
		IU_DB=$dsn "$iu" serve --addr "127.0.0.1:$((18400 + i))" --nats "$url" --log-level warn \
			--admin-token-file "$work/nats-$w-$2.token" >"$work/nats-$w-$2-$i.log" 2>&1 &
		pids+=($!)
		wait_ready "127.0.0.1:$((18400 + i))"
	done
	"$iu" bench --nats "$url" -n "$N" --dup "$DUP" --wait --progress none --json >"$work/nats-$w-$2.json"
	stop_all
	# Drained must mean committed: one instance per distinct event.
	local want got
	want=$(field distinct_events <"$work/nats-$w-$2.json")
	got=$(IU_DB=$dsn "$iu" --json verify | field total)
	if [ "$got" != "$want" ]; then
		echo "JetStream run with $w worker(s): $got instances, want $want" >&2; exit 1
	fi
	field events_per_second <"$work/nats-$w-$2.json" | tee -a "$work/nats-$w.eps"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$REPS"); do
	printf '  run %d: HTTP, %d connections: ' "$r" "$C"
	http_run "$r" | xargs printf '%.0f events/s\n'
	for w in $WORKERS; do
		printf '  run %d: JetStream, %d worker(s): ' "$r" "$w"
		nats_run "$w" "$r" | xargs printf '%.0f events/s end to end\n'
	done
done

h=$(median <"$work/http.eps")
echo
printf '%-44s %12s %14s\n' "" "events/s" "share of HTTP"
printf '%-44s %12.0f %14s\n' "iu bench over HTTP, $C connections" "$h" "100%"
for w in $WORKERS; do
	v=$(median <"$work/nats-$w.eps")
	printf '%-44s %12.0f %13.0f%%\n' "JetStream end to end, $w worker(s)" "$v" "$(echo "100 * $v / $h" | bc -l)"
done
echo "(target: 1 worker >= 80% of HTTP; $N events per run, $DUP duplicates, PostgreSQL, everything on this machine;"
echo " load average after: $(cut -d' ' -f1-3 /proc/loadavg))"
