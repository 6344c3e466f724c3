#!/usr/bin/env bash
# Measures iu's PostgreSQL backend against the seed design rebuilt as stored
# procedures (../shared/anchors/seed-plpgsql), side by side on one server in
# one run, and prints the ratios.
#
#   bulk:       psql bulk_n.sql (N events in one transaction through the
#               per-event function) vs `iu bulk` of N events, same two
#               8-piece templates, one in three events for the second one.
#   concurrent: run.sh (pgbench, one event per transaction, 16 clients) vs 16
#               goroutines calling Engine.Emit, one event per transaction.
#
# usage: bench/pg-vs-seed.sh [PSQL CONNECTION ARGS...]   (default: -h 127.0.0.1 -U postgres)
# env:   DB (database to use, created if missing; default iu_bench)
#        N (events per bulk; default 30000), REPS (bulk runs per side; default 3)
#        SECONDS_RUN (seconds per concurrent run; default 15)
#        ANCHOR (the seed-plpgsql folder; default ../shared/anchors/seed-plpgsql)
# The seed's run.sh sets the database's default search_path to its schema;
# iu runs in a schema of its own named in its DSN, so the two do not meet.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
anchor=${ANCHOR:-$root/../shared/anchors/seed-plpgsql}
DB=${DB:-iu_bench} N=${N:-30000} REPS=${REPS:-3} SECONDS_RUN=${SECONDS_RUN:-15}
export SECONDS_RUN
if [ $# -eq 0 ]; then set -- -h 127.0.0.1 -U postgres; fi
conn=("$@")

# The libpq URL iu takes, built from the same connection arguments.
host=127.0.0.1 port=5432 user=postgres
while [ $# -gt 0 ]; do
	case $1 in
	-h) host=$2; shift 2 ;;
	-p) port=$2; shift 2 ;;
	-U) user=$2; shift 2 ;;
	*) shift ;;
	esac
done
schema=iu_bench_$$
dsn="postgres://$user@$host:$port/$DB?sslmode=disable&search_path=$schema"

work=$(mktemp -d)
trap 'psql "${conn[@]}" -d "$DB" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "building iu"
(cd "$root" && go build -o "$work/iu" ./cmd/iu && go test -c -o "$work/postgres.test" ./postgres/)

psql "${conn[@]}" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 ||
	psql "${conn[@]}" -d postgres -qc "CREATE DATABASE $DB"
psql "${conn[@]}" -d "$DB" -q -f "$anchor/schema.sql" >/dev/null 2>&1
psql "${conn[@]}" -d "$DB" -qc "CREATE SCHEMA $schema"
export IU_DB=$dsn
"$work/iu" template publish "$root"/examples/templates/*.yaml >/dev/null
wf=tpl:wf:onboarding/v2 file=tpl:file:status-report/v2

echo "bulk: $N events in one transaction, $REPS runs per side"
: >"$work/seed.t"
: >"$work/iu.t"
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
	printf '  run %d: seed %.2f s, iu %.2f s\n' "$r" "$(tail -1 "$work/seed.t")" "$(tail -1 "$work/iu.t")"
done
seed_bulk=$(median <"$work/seed.t")
iu_bulk=$(median <"$work/iu.t")

echo "concurrent: one event per transaction, 16 callers, ${SECONDS_RUN}s per side"
seed_tps=$(CLIENTS=16 "$anchor/run.sh" "${conn[@]}" -d "$DB" | awk '/^tps/ {print $3}')
iu_tps=$(IU_TEST_POSTGRES="$dsn" "$work/postgres.test" -test.run '^$' -test.bench 'BenchmarkConcurrentEmit$' \
	-test.benchtime "${SECONDS_RUN}s" | awk '/events\/s/ { for (i = 1; i < NF; i++) if ($(i+1) == "events/s") print $i }')

echo
printf '%-44s %12s %12s %8s\n' "" "seed design" "iu" "ratio"
printf '%-44s %12.0f %12.0f %7.1fx\n' "bulk, $N events in one tx (events/s, median)" \
	"$(echo "$N / $seed_bulk" | bc -l)" "$(echo "$N / $iu_bulk" | bc -l)" "$(echo "$seed_bulk / $iu_bulk" | bc -l)"
printf '%-44s %12.0f %12.0f %7.1fx\n' "16 callers, one event per tx (events/s)" \
	"$seed_tps" "$iu_tps" "$(echo "$iu_tps / $seed_tps" | bc -l)"
echo "(targets: bulk >= 10x, concurrent >= 2x; iu bulk is the whole command: report, fresh-connection read-back and verify included)"
