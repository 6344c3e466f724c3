#!/usr/bin/env bash
# Measures iu's PostgreSQL backend against the seed design rebuilt as stored
# procedures (../shared/anchors/seed-plpgsql), side by side on one server in
# one run, and prints the ratios.
#
#   bulk:       psql bulk_n.sql (N events in ONE transaction through the
#               seed's per-event function) against iu on the same N events
#               (same ids, same type, one in three for the second template,
#               both templates 8 pieces, ONE transaction), measured twice:
#                 - the whole `iu bulk` command: process start, plan and
#                   NDJSON parsing, the report's reads before the
#                   transaction, the transaction, the read-back on a fresh
#                   connection and the verify of every instance it made;
#                 - the transaction alone (BenchmarkBulk's tx-events/s:
#                   Engine.Bulk's write transaction, events from memory),
#                   which is what bulk_n.sql times.
#   floor:      bench/floor.sql, the rows iu writes for the same N events
#               (log, instance, 8 memberships, lineage) made by ONE statement
#               in the server from generate_series: what no client of these
#               tables can beat, beside the two.
#   concurrent: run.sh (pgbench on the seed's function, 16 clients, one event
#               per transaction) against 16 goroutines calling Engine.Emit,
#               one event per transaction (BenchmarkConcurrentEmit), and
#               bench/floor1.sql: pgbench, 16 clients, one autocommitted
#               statement writing one event's rows (no client logic).
#
# Both sides run with the server's own durability settings (fsync,
# synchronous_commit), logged tables, on the same database.
#
# usage: bench/pg-vs-seed.sh [PSQL CONNECTION ARGS...]   (default: -h 127.0.0.1 -U postgres)
# env:   DB (database to use, created if missing; default iu_bench)
#        N (events per bulk; default 30000), REPS (bulk runs per side; default 3)
#        SECONDS_RUN (seconds per concurrent run; default 15)
#        ANCHOR (the seed-plpgsql folder; default ../shared/anchors/seed-plpgsql)
# The seed's run.sh sets the database's default search_path to its schema;
# iu runs in schemas of its own named in its DSN, so the two do not meet.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"
anchor=${ANCHOR:-$root/../shared/anchors/seed-plpgsql}
DB=${DB:-iu_bench} N=${N:-30000} REPS=${REPS:-3} SECONDS_RUN=${SECONDS_RUN:-15}
export SECONDS_RUN
[ -f "$anchor/bulk_n.sql" ] || { echo "no seed design at $anchor: set ANCHOR to the seed-plpgsql folder" >&2; exit 2; }
if [ $# -eq 0 ]; then set -- -h 127.0.0.1 -U postgres; fi
conn=("$@")

schema=iu_bench_$$
base=$(pg_base_url "$DB" "${conn[@]}") # the libpq URL iu takes, from the same arguments
dsn="$base&search_path=$schema"

work=$(mktemp -d)
trap 'psql "${conn[@]}" -d "$DB" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

now() { date +%s.%N; }
# metric NAME: the value before NAME in go test -bench output
metric() { awk -v m="$1" '{ for (i = 2; i <= NF; i++) if ($i == m) print $(i-1) }'; }

echo "building iu"
(cd "$root" && go build -o "$work/iu" ./cmd/iu && go test -c -o "$work/postgres.test" ./postgres/)

psql "${conn[@]}" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 ||
	psql "${conn[@]}" -d postgres -qc "CREATE DATABASE $DB"
psql "${conn[@]}" -d "$DB" -Atc "SELECT 'server: ' || version()"
psql "${conn[@]}" -d "$DB" -Atc "SELECT 'settings: ' || string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings
	WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', 'shared_buffers', 'autovacuum')"
psql "${conn[@]}" -d "$DB" -q -f "$anchor/schema.sql" >/dev/null 2>&1
psql "${conn[@]}" -d "$DB" -qc "CREATE SCHEMA $schema"
export IU_DB=$dsn
"$work/iu" template publish "$root"/examples/templates/*.yaml >/dev/null
wf=tpl:wf:onboarding/v2 file=tpl:file:status-report/v2

echo "bulk: $N events in one transaction, $REPS runs per side (seed bulk_n.sql, then iu bulk)"
: >"$work/seed.t"
: >"$work/iu.t"
: >"$work/floor.t"
for r in $(seq 1 "$REPS"); do
	run="r$$x$r"
	t0=$(now)
	psql "${conn[@]}" -d "$DB" -q -v n="$N" -v run="$run" -f "$anchor/bulk_n.sql" >/dev/null
	t1=$(now)
	echo "$t1 - $t0" | bc >>"$work/seed.t"

	seq 1 "$N" | awk -v run="$run" -v wf="$wf" -v file="$file" \
		'{ printf "{\"template\":\"%s\",\"id\":\"bulk-%s-%d\",\"type\":\"bulk.scaleout\"}\n", ($1 % 3 == 0) ? file : wf, run, $1 }' \
		>"$work/events-$r.ndjson"
	printf 'actor: bench-%s\ninstance_prefix: bench-%s\ngates:\n  iu_core.composer_enabled: true\n  iu_core.auto_instantiate_enabled: true\nevents_file: events-%s.ndjson\n' \
		"$run" "$run" "$r" >"$work/plan-$r.yaml"
	t0=$(now)
	"$work/iu" bulk --json "$work/plan-$r.yaml" >"$work/bulk-$r.json"
	t1=$(now)
	echo "$t1 - $t0" | bc >>"$work/iu.t"
	grep -q "\"ok\": $N" "$work/bulk-$r.json" || { echo "iu bulk did not instantiate $N events:" >&2; cat "$work/bulk-$r.json" >&2; exit 1; }
	grep -q "\"matches\": $N" "$work/bulk-$r.json" || { echo "iu bulk did not verify $N instances:" >&2; cat "$work/bulk-$r.json" >&2; exit 1; }
	t0=$(now)
	PGOPTIONS="-c search_path=$schema" psql "${conn[@]}" -d "$DB" -q -v n="$N" -v run="$run" -f "$here/floor.sql" >/dev/null
	t1=$(now)
	echo "$t1 - $t0" | bc >>"$work/floor.t"
	printf '  run %d: seed %.2f s, iu bulk %.2f s, floor %.2f s\n' "$r" "$(tail -1 "$work/seed.t")" "$(tail -1 "$work/iu.t")" "$(tail -1 "$work/floor.t")"
done
seed_bulk=$(median <"$work/seed.t")
iu_bulk=$(median <"$work/iu.t")
floor_bulk=$(median <"$work/floor.t")

echo "bulk, the transaction alone: BenchmarkBulk, $REPS runs of $N events in a fresh schema"
bench=$(IU_TEST_POSTGRES="$base" IU_BENCH_EVENTS="$N" "$work/postgres.test" -test.run '^$' -test.bench 'BenchmarkBulk$' \
	-test.benchtime "${REPS}x")
echo "$bench" | grep '^Benchmark' | sed 's/^/  /'
iu_tx_rate=$(echo "$bench" | metric tx-events/s)
iu_go_rate=$(echo "$bench" | metric events/s)

echo "concurrent: one event per transaction, 16 callers, ${SECONDS_RUN}s per side, $REPS runs of seed, iu and floor in turn"
: >"$work/c.seed"
: >"$work/c.iu"
: >"$work/c.floor"
: >"$work/c.ratio"
for r in $(seq 1 "$REPS"); do
	CLIENTS=16 "$anchor/run.sh" "${conn[@]}" -d "$DB" | awk '/^tps/ {print $3}' >>"$work/c.seed"
	IU_TEST_POSTGRES="$base" "$work/postgres.test" -test.run '^$' -test.bench 'BenchmarkConcurrentEmit$' \
		-test.benchtime "${SECONDS_RUN}s" | metric events/s >>"$work/c.iu"
	PGOPTIONS="-c search_path=$schema" pgbench "${conn[@]}" -n -M prepared -f "$here/floor1.sql" -c 16 -j 2 -T "$SECONDS_RUN" "$DB" 2>&1 |
		awk '/^tps/ {print $3}' >>"$work/c.floor"
	echo "$(tail -1 "$work/c.iu") / $(tail -1 "$work/c.seed")" | bc -l >>"$work/c.ratio"
	printf '  run %d: seed %.0f, iu %.0f, floor %.0f events/s; iu/seed %.1fx\n' "$r" "$(tail -1 "$work/c.seed")" \
		"$(tail -1 "$work/c.iu")" "$(tail -1 "$work/c.floor")" "$(tail -1 "$work/c.ratio")"
done
seed_tps=$(median <"$work/c.seed")
iu_tps=$(median <"$work/c.iu")
floor_tps=$(median <"$work/c.floor")

seed_rate=$(echo "$N / $seed_bulk" | bc -l)
iu_rate=$(echo "$N / $iu_bulk" | bc -l)
row() { # label seed iu target
	printf '%-52s %10.0f %10.0f %7.1fx %8s\n' "$1" "$2" "$3" "$(echo "$3 / $2" | bc -l)" "$4"
}
echo
printf '%-52s %10s %10s %8s %8s\n' "events/s (higher is better)" "seed" "iu" "iu/seed" "target"
row "bulk $N in 1 tx: whole iu bulk command (median)" "$seed_rate" "$iu_rate" ">= 10x"
row "bulk $N in 1 tx: the transaction alone" "$seed_rate" "$iu_tx_rate" ">= 10x"
row "bulk $N in 1 tx: the floor (bench/floor.sql)" "$seed_rate" "$(echo "$N / $floor_bulk" | bc -l)" ""
row "16 callers, 1 event per tx (medians)" "$seed_tps" "$iu_tps" ">= 2x"
row "16 callers, 1 event per tx: the floor (floor1.sql)" "$seed_tps" "$floor_tps" ""
printf '%-52s %30.1fx %8s\n' "16 callers: median of the runs' iu/seed ratios" "$(median <"$work/c.ratio")" ">= 2x"
# How close iu comes to the floor: a target above the floor's own ratio is
# out of reach of any client that writes these rows.
printf '%-52s %29.0f%%\n' "bulk: iu bulk command / floor" "$(echo "100 * $iu_rate * $floor_bulk / $N" | bc -l)"
printf '%-52s %29.0f%%\n' "16 callers: iu / floor" "$(echo "100 * $iu_tps / $floor_tps" | bc -l)"
echo
echo "seed bulk: psql bulk_n.sql, wall time including psql's start and connection."
echo "floor: the same rows as iu writes per event, made by one INSERT statement inside the server from"
echo "generate_series (no client, no per-event logic): no client of this schema can bulk faster."
echo "floor, one event per transaction: pgbench (16 clients) running one autocommitted statement that"
echo "writes one event's rows, with no client logic: what a client that did nothing else could reach."
printf 'iu bulk command: %s events/s is Engine.Bulk whole (no process start, no NDJSON) in BenchmarkBulk.\n' "$(printf '%.0f' "$iu_go_rate")"
