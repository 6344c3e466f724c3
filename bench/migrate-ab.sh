#!/usr/bin/env bash
# Compares iu binaries at migrating a million instances, on equal footing:
# one store of N instances of tpl:wf:onboarding/v2 is made once, by the
# first binary (the oldest: a newer iu upgrades an older store when it
# opens it, never the other way), and each binary in turn migrates a fresh
# copy of it to v3, timed by /usr/bin/time: seconds, instances/s, peak RSS.
# The binaries take turns, ROUNDS times, so that a noisy machine spreads
# its noise over all of them.
#
# usage: bench/migrate-ab.sh sqlite|postgres OLD_IU NEW_IU [MORE_IU...]
# env:   N (instances; default 1000000), ROUNDS (default 2),
#        DIR (sqlite: where the store and its copies go; default a new
#        temporary directory)
# On PostgreSQL the store is database iu_migrate_ab and each copy
# iu_migrate_ab_run (CREATE DATABASE ... TEMPLATE), on 127.0.0.1 as
# postgres; both are dropped at the end.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

store=${1:?usage: bench/migrate-ab.sh sqlite|postgres OLD_IU NEW_IU [MORE_IU...]}
shift
[ $# -ge 2 ] || { echo "bench/migrate-ab.sh: name at least two iu binaries" >&2; exit 2; }
N=${N:-1000000}
ROUNDS=${ROUNDS:-2}
psql_() { psql -h 127.0.0.1 -U postgres -qX "$@"; }

case $store in
sqlite)
	dir=${DIR:-$(mktemp -d)}
	base=$dir/base.db
	run=$dir/run.db
	rm -f "$base"*
	base_db=$base
	fresh() { rm -f "$run" "$run-wal" "$run-shm"; cp "$base" "$run"; sync; echo "$run"; }
	cleanup() { rm -f "$base" "$base-wal" "$base-shm" "$run" "$run-wal" "$run-shm"; }
	;;
postgres)
	psql_ -c "DROP DATABASE IF EXISTS iu_migrate_ab_run" -c "DROP DATABASE IF EXISTS iu_migrate_ab" -c "CREATE DATABASE iu_migrate_ab" postgres
	base_db=$(pg_base_url iu_migrate_ab)
	fresh() {
		psql_ -c "DROP DATABASE IF EXISTS iu_migrate_ab_run" -c "CREATE DATABASE iu_migrate_ab_run TEMPLATE iu_migrate_ab" postgres
		pg_base_url iu_migrate_ab_run
	}
	cleanup() { psql_ -c "DROP DATABASE IF EXISTS iu_migrate_ab_run" -c "DROP DATABASE IF EXISTS iu_migrate_ab" postgres; }
	;;
*)
	echo "bench/migrate-ab.sh: the store is sqlite or postgres, not $store" >&2
	exit 2
	;;
esac
trap cleanup EXIT

first=$1
IU_DB=$base_db "$first" template publish "$root/examples/templates/onboarding.yaml" "$root/examples/lifecycle/onboarding-v3.yaml" >/dev/null
plan=$(mktemp)
lifecycle_plan "$plan"
lifecycle_events "$N" | IU_DB=$base_db "$first" bulk --progress none "$plan" >/dev/null
rm -f "$plan"

echo "$N instances on $store ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)): iu migrate --apply v2 -> v3, each on a fresh copy"
for round in $(seq "$ROUNDS"); do
	for bin in "$@"; do
		db=$(fresh)
		t=$(mktemp)
		IU_DB=$db /usr/bin/time -f '%e %M' -o "$t" "$bin" migrate --from tpl:wf:onboarding/v2 --to tpl:wf:onboarding/v3 --apply --progress none >/dev/null
		read -r secs kb <"$t"
		rm -f "$t"
		awk -v b="$bin" -v r="$round" -v s="$secs" -v kb="$kb" -v n="$N" \
			'BEGIN { printf "round %d  %-32s %7.1f s %10.0f instances/s %6.0f MiB peak RSS\n", r, b, s, n / s, kb / 1024 }'
	done
done
