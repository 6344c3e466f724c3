#!/usr/bin/env bash
# Measures iu serve with iu bench, server and load generator on this machine,
# on SQLite and on PostgreSQL, and the seed design's per-event rate
# (../shared/anchors/seed-plpgsql/run.sh, pgbench, one event per
# transaction) on the same PostgreSQL server in the same run, and prints the
# figures against the targets:
#
#   SQLite:      >= 5,000 events/s at 64 connections, p99 <= 50 ms
#   PostgreSQL:  >= 3x the seed design's per-event rate (16 clients)
#
# usage: bench/serve-vs-seed.sh [PSQL CONNECTION ARGS...]   (default: -h 127.0.0.1 -U postgres)
# env:   DB (scratch database, created if missing; default iu_bench_seed; never
#        use one that tests are using), N (events per iu bench run; default
#        50000), C (connections; default 64), CLIENTS (seed clients; default
#        16), SECONDS_RUN (seconds of the seed's run; default 15), MODE
#        (binary or structured; default binary), REPS (runs per side, the
#        median is reported; default 3), ANCHOR (the seed-plpgsql folder),
#        SERVE_ARGS (more iu serve flags, e.g. "--batch-workers 1"),
#        SQLITE (0 skips the SQLite runs).
# The seed's run follows each PostgreSQL run, and the ratio reported is the
# median of the runs' ratios. Each iu run starts a server on a new, empty
# store (a new file, a new schema), as run.sh recreates the seed's schema for
# each of its runs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
anchor=${ANCHOR:-$root/../shared/anchors/seed-plpgsql}
DB=${DB:-iu_bench_seed} N=${N:-50000} C=${C:-64} CLIENTS=${CLIENTS:-16} MODE=${MODE:-binary} REPS=${REPS:-3}
export SECONDS_RUN=${SECONDS_RUN:-15}
if [ $# -eq 0 ]; then set -- -h 127.0.0.1 -U postgres; fi
conn=("$@")
schema=iu_serve_bench_$$ # one per run: $schema_1, $schema_2, ...
base=$(pg_base_url "$DB" "${conn[@]}")

work=$(mktemp -d)
server=
cleanup() {
	[ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
	for r in $(seq 1 "$REPS"); do
		psql "${conn[@]}" -d "$DB" -qc "DROP SCHEMA IF EXISTS ${schema}_$r CASCADE" >/dev/null 2>&1 || true
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
port_free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 18$((RANDOM % 900 + 100)); }

# serve_bench NAME RUN DB: starts iu serve on DB (a new, empty store, as the
# seed's run.sh starts each run on a new schema), publishes the example
# templates, opens the gates, runs iu bench once and stops the server.
serve_bench() {
	local name=$1 r=$2 db=$3 p
	p=$(port_free)
	IU_DB=$db "$iu" template publish "$root"/examples/templates/*.yaml >/dev/null
	IU_DB=$db "$iu" gate set composer_enabled=true auto_instantiate_enabled=true >/dev/null
	IU_DB=$db "$iu" serve --addr "127.0.0.1:$p" --log-level warn ${SERVE_ARGS:-} --admin-token-file "$work/$name-$r.token" >"$work/$name.log" 2>&1 &
	server=$!
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/healthz" >/dev/null && break; sleep 0.1; done
	IU_SERVER=http://127.0.0.1:$p IU_TOKEN_FILE=$work/$name-$r.token "$iu" bench -n "$N" -c "$C" --mode "$MODE" --progress none --json >"$work/$name-$r.json"
	field events_per_second <"$work/$name-$r.json" >>"$work/$name.eps"
	field p99 <"$work/$name-$r.json" >>"$work/$name.p99"
	printf '  %s run %d: %.0f events/s, p50 %s ms, p99 %s ms\n' "$name" "$r" "$(tail -1 "$work/$name.eps")" \
		"$(field p50 <"$work/$name-$r.json")" "$(tail -1 "$work/$name.p99")"
	kill "$server"
	wait "$server" || { echo "iu serve did not stop cleanly:" >&2; cat "$work/$name.log" >&2; exit 1; }
	server=
}

: >"$work/sqlite.eps"
: >"$work/sqlite.p99"
if [ "${SQLITE:-1}" != 0 ]; then
	echo "iu serve on SQLite: $REPS x iu bench -n $N -c $C --mode $MODE, each on a new store"
	for r in $(seq 1 "$REPS"); do
		serve_bench sqlite "$r" "$work/iu-$r.db"
	done
fi
# The seed runs right after each PostgreSQL run, so that the two sides of
# each ratio see the machine in the same state: on a shared virtual machine
# the seed's own rate moved by half from one minute to the next.
: >"$work/seed.tps"
: >"$work/ratio"
seed_run() {
	local tps
	tps=$(CLIENTS=$CLIENTS "$anchor/run.sh" "${conn[@]}" -d "$DB" | awk '/^tps/ {print $3}')
	echo "$tps" >>"$work/seed.tps"
	echo "$(tail -1 "$work/postgres.eps") / $tps" | bc -l >>"$work/ratio"
	printf '  seed run.sh, %d clients, %ss: %.0f events/s; ratio %.1fx\n' "$CLIENTS" "$SECONDS_RUN" "$tps" "$(tail -1 "$work/ratio")"
}
echo "iu serve on PostgreSQL: $REPS x iu bench -n $N -c $C --mode $MODE, each on a new schema and followed by the seed design (run.sh, $CLIENTS clients, ${SECONDS_RUN}s)"
for r in $(seq 1 "$REPS"); do
	psql "${conn[@]}" -d "$DB" -qc "CREATE SCHEMA ${schema}_$r"
	serve_bench postgres "$r" "$base&search_path=${schema}_$r"
	seed_run
	psql "${conn[@]}" -d "$DB" -qc "DROP SCHEMA ${schema}_$r CASCADE" >/dev/null 2>&1
done
seed_tps=$(median <"$work/seed.tps")

sq=$(median <"$work/sqlite.eps") sq99=$(median <"$work/sqlite.p99")
pg=$(median <"$work/postgres.eps") pg99=$(median <"$work/postgres.p99")
echo
printf '%-46s %12s %10s %12s\n' "" "events/s" "p99 ms" "target"
[ ! -s "$work/sqlite.eps" ] || printf '%-46s %12.0f %10s %12s\n' "iu serve, SQLite, $C connections (median)" "$sq" "$sq99" ">= 5000, p99 <= 50"
printf '%-46s %12.0f %10s %12s\n' "iu serve, PostgreSQL, $C connections (median)" "$pg" "$pg99" ""
printf '%-46s %12.0f %10s %12s\n' "seed design, pgbench, $CLIENTS clients (median)" "$seed_tps" "" ""
printf '%-46s %11.1fx %10s %12s\n' "PostgreSQL ratio, iu serve / seed (median of runs)" "$(median <"$work/ratio")" "" ">= 3x"
echo "(load average: $(cut -d' ' -f1-3 /proc/loadavg); server, load generator and PostgreSQL share this machine)"
