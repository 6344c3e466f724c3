#!/usr/bin/env bash
# The JetStream intake's crash test, as a user would run it: a real
# nats-server (Debian's) and real iu serve --nats workers on one PostgreSQL
# database. It publishes N events (a share DUP of them repeats of earlier
# ones, INVALID of them invalid) and, for the whole consumption, SIGKILLs a
# random worker every 1-3 s and starts it again. With --restart-nats it also
# SIGKILLs nats-server itself mid-run and starts it again on the same store.
# Afterwards it requires:
#
#   every valid event has exactly one instance (0 lost, 0 duplicated),
#   exactly the INVALID invalid events are in the dead-letter stream,
#   iu verify: 0 diverges, 0 orphans.
#
# usage: bench/nats-crash.sh [--restart-nats] [PSQL CONNECTION ARGS...]   (default: -h 127.0.0.1 -U postgres)
# env:   N (default 30000), DUP (0.3), INVALID (50), WORKERS (3), ACK_WAIT
#        (how long JetStream waits for a killed worker's messages; default 5s),
#        PORT (nats-server's port; default 14223: never the default 4222,
#        where another server may run), DB (scratch database, created if
#        missing; default iu_nats_crash), KEEP=1 keeps the work directory.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
restart_nats=0
if [ "${1:-}" = "--restart-nats" ]; then restart_nats=1; shift; fi
N=${N:-30000} DUP=${DUP:-0.3} INVALID=${INVALID:-50} WORKERS=${WORKERS:-3} ACK_WAIT=${ACK_WAIT:-5s}
PORT=${PORT:-14223} DB=${DB:-iu_nats_crash}
if [ $# -eq 0 ]; then set -- -h 127.0.0.1 -U postgres; fi
conn=("$@")
schema=iu_nats_crash_$$
url=nats://127.0.0.1:$PORT
mport=$((PORT + 1000)) # nats-server's monitoring port

for tool in nats-server jq; do
	if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
		echo "installing $tool"
		apt-get update -qq && apt-get install -y -qq "$tool" >/dev/null
	fi
done
natsd=$(command -v nats-server || echo /usr/sbin/nats-server)

work=$(mktemp -d)
natspid=
killer=
# Worker I's process id is in $work/worker-I.pid: the killer, a subshell,
# starts workers again and the main shell must find them.
worker_pids() { cat "$work"/worker-*.pid 2>/dev/null || true; }
# alive PID: the process runs (a zombie, killed and not yet reaped, does not).
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${st:0:1}" != Z ]; }
cleanup() {
	[ -n "$killer" ] && kill "$killer" 2>/dev/null
	for p in $(worker_pids); do kill -9 "$p" 2>/dev/null; done
	[ -n "$natspid" ] && kill "$natspid" 2>/dev/null && wait "$natspid" 2>/dev/null
	psql "${conn[@]}" -d "$DB" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
	if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "building iu"
(cd "$root" && go build -o "$work/iu" ./cmd/iu)
iu=$work/iu

start_nats() {
	"$natsd" -js -a 127.0.0.1 -p "$PORT" -m "$mport" -sd "$work/js" >>"$work/nats.log" 2>&1 &
	natspid=$!
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$mport/healthz" >/dev/null && return; sleep 0.1; done
	echo "nats-server did not start:" >&2; cat "$work/nats.log" >&2; exit 1
}
start_nats
echo "nats-server $("$natsd" --version | awk '{print $2}') on $url, store $work/js"

psql "${conn[@]}" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 ||
	psql "${conn[@]}" -d postgres -qc "CREATE DATABASE $DB"
psql "${conn[@]}" -d "$DB" -qc "CREATE SCHEMA $schema"
export IU_DB="$(pg_base_url "$DB" "${conn[@]}")&search_path=$schema"
"$iu" template publish "$root"/examples/templates/*.yaml >/dev/null
"$iu" gate set composer_enabled=true auto_instantiate_enabled=true >/dev/null

# start_worker I starts worker I (HTTP on its own port), logging to its file.
start_worker() {
	local i=$1
	# In a subshell, so that the worker is no child of this shell: bash
	# would report each SIGKILL ("Killed") and keep zombies.
	(
		"$iu" serve --addr "127.0.0.1:$((18300 + i))" --nats "$url" --nats-ack-wait "$ACK_WAIT" \
			--admin-token-file "$work/admin.token" --log-level warn >>"$work/worker-$i.log" 2>&1 &
		echo $! >"$work/worker-$i.pid"
	)
}
for i in $(seq 0 $((WORKERS - 1))); do start_worker "$i"; done
# The first worker creates the streams and the consumer; wait for them.
for _ in $(seq 100); do curl -sf "http://127.0.0.1:18300/readyz" >/dev/null && break; sleep 0.1; done

# consumer_state prints "PENDING ACK_PENDING" of the durable consumer, from
# nats-server's monitoring endpoint.
consumer_state() {
	curl -sf "http://127.0.0.1:$mport/jsz?consumers=true" |
		jq -r '[.account_details[].stream_detail[]? | select(.name == "IU_EVENTS") | .consumer_detail[]? | select(.name == "iu")][0] | "\(.num_pending) \(.num_ack_pending)"' 2>/dev/null || echo "? ?"
}

killer_loop() {
	local n=0
	while :; do
		sleep "$(awk -v r="$RANDOM" 'BEGIN {printf "%.2f", 1 + 2 * r / 32767}')"
		local i=$((RANDOM % WORKERS)) p
		p=$(cat "$work/worker-$i.pid")
		kill -9 "$p" 2>/dev/null || true
		while alive "$p"; do sleep 0.05; done
		n=$((n + 1))
		echo "$n" >"$work/kills"
		start_worker "$i"
	done
}
killer_loop &
killer=$!

echo "publishing $N events ($DUP duplicates, $INVALID invalid) while a worker is SIGKILLed every 1-3 s"
start=$(date +%s.%N)
"$iu" bench --nats "$url" -n "$N" --dup "$DUP" --invalid "$INVALID" --progress none --json >"$work/bench.json"
jq -r '"  published \(.events) (\(.distinct_events) distinct valid, \(.invalid_events) invalid): \(.publish_events_per_second | floor) events/s"' "$work/bench.json"
distinct=$(jq .distinct_events "$work/bench.json")

restarted=no
drained=0
while :; do
	read -r pending ackp < <(consumer_state)
	if [ "$restart_nats" = 1 ] && [ "$restarted" = no ] && [ "$pending" != "?" ] && [ "$pending" -lt $((N / 2)) ]; then
		echo "  SIGKILL nats-server with $pending pending, $ackp unacknowledged; starting it again"
		kill -9 "$natspid"; wait "$natspid" 2>/dev/null || true
		sleep 1
		start_nats
		restarted=yes
	fi
	if [ "$pending" = 0 ] && [ "$ackp" = 0 ]; then
		drained=$((drained + 1))
		[ "$drained" -ge 3 ] && break
	else
		drained=0
	fi
	sleep 0.5
done
end=$(date +%s.%N)
kill "$killer"; wait "$killer" 2>/dev/null || true
killer=
sleep 0.2 # a worker the killer was starting writes its pid file
kills=$(cat "$work/kills" 2>/dev/null || echo 0)
for p in $(worker_pids); do kill -TERM "$p" 2>/dev/null || true; done
for p in $(worker_pids); do while alive "$p"; do sleep 0.05; done; done
rm -f "$work"/worker-*.pid
printf '  drained in %.1f s with %d worker SIGKILLs%s\n' "$(echo "$end - $start" | bc -l)" "$kills" \
	"$([ "$restart_nats" = 1 ] && echo ", nats-server SIGKILLed and restarted: $restarted")"

q() { psql "${conn[@]}" -d "$DB" -Atc "SET search_path = $schema; $1" | tail -n 1; }
instances=$(q "SELECT count(*) FROM iu_collection_template_instance_lineage")
events=$(q "SELECT count(DISTINCT event_id) FROM iu_collection_template_instance_lineage")
logrows=$(q "SELECT count(*) FROM iu_auto_instantiate_event_log")
"$iu" verify --json >"$work/verify.json" || true
diverges=$(jq .diverges "$work/verify.json")
orphans=$(jq '[.orphans[]] | add' "$work/verify.json")
"$iu" dead list --nats "$url" --json >"$work/dead.json"
dead=$(jq length "$work/dead.json")
dead_invalid=$(jq '[.[] | select(.reason == "invalid" and (.event_id | test("-invalid-")))] | length' "$work/dead.json")
dead_ids=$(jq '[.[].event_id] | unique | length' "$work/dead.json")

echo
printf '%-44s %8s %8s\n' "" "got" "want"
printf '%-44s %8s %8s\n' "instances" "$instances" "$distinct"
printf '%-44s %8s %8s\n' "distinct events with an instance" "$events" "$distinct"
printf '%-44s %8s %8s\n' "event-log rows" "$logrows" "$distinct"
printf '%-44s %8s %8s\n' "lost (valid events without an instance)" "$((distinct - events))" 0
printf '%-44s %8s %8s\n' "duplicated (instances beyond one per event)" "$((instances - events))" 0
printf '%-44s %8s %8s\n' "dead letters" "$dead" "$INVALID"
printf '%-44s %8s %8s\n' "  of them the invalid events, once each" "$dead_ids/$dead_invalid" "$INVALID/$INVALID"
printf '%-44s %8s %8s\n' "iu verify: diverges" "$diverges" 0
printf '%-44s %8s %8s\n' "iu verify: orphans" "$orphans" 0
echo "(worker SIGKILLs: $kills; load average: $(cut -d' ' -f1-3 /proc/loadavg))"
if [ "$instances" = "$distinct" ] && [ "$events" = "$distinct" ] && [ "$logrows" = "$distinct" ] &&
	[ "$dead" = "$INVALID" ] && [ "$dead_invalid" = "$INVALID" ] && [ "$dead_ids" = "$INVALID" ] &&
	[ "$diverges" = 0 ] && [ "$orphans" = 0 ]; then
	echo "PASS"
else
	echo "FAIL"; KEEP=1; exit 1
fi
