#!/usr/bin/env bash
# Measures what is done to instances after they are made, at scale, on one
# store: N instances of tpl:wf:onboarding/v2 made by one bulk run, then
#
#   verify:    iu verify of every instance (digests, shared graphs, orphans);
#   migrate:   iu migrate --apply of all N from v2 to v3 (one step added),
#              in batches, then verify again;
#   rollback:  iu rollback --apply of the actor that made them, one
#              transaction.
#
# Each is one process, timed by /usr/bin/time: seconds, instances/s and
# peak RSS. With OLD=path/to/iu, migrate and verify are run by that binary
# too, on the same instances (migrated back and forth), for a ratio; an
# older iu refuses a store of a newer schema version, so across versions
# compare with bench/migrate-ab.sh instead.
#
# usage: bench/lifecycle.sh sqlite [DIR]         (default DIR: a new temporary one)
#        bench/lifecycle.sh postgres [DB]        (default DB: iu_lifecycle, dropped and
#                                                created on 127.0.0.1 as postgres)
# env:   N (instances; default 1000000), IU (the iu binary; default: built
#        from this tree), OLD (an older iu binary to compare with)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib.sh"

store=${1:?usage: bench/lifecycle.sh sqlite|postgres [DIR|DB]}
N=${N:-1000000}
if [ -z "${IU:-}" ]; then
	IU=$(mktemp -d)/iu
	(cd "$root" && go build -o "$IU" ./cmd/iu)
fi

case $store in
sqlite)
	dir=${2:-$(mktemp -d)}
	db=$dir/lifecycle.db
	rm -f "$db" "$db-wal" "$db-shm"
	;;
postgres)
	name=${2:-iu_lifecycle}
	psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" postgres
	db=$(pg_base_url "$name")
	;;
*)
	echo "bench/lifecycle.sh: the store is sqlite or postgres, not $store" >&2
	exit 2
	;;
esac

export IU_DB=$db
"$IU" template publish "$root/examples/templates/onboarding.yaml" "$root/examples/lifecycle/onboarding-v3.yaml" >/dev/null

# timed LABEL CMD...: runs CMD, prints LABEL, seconds, instances/s and peak
# RSS in MiB.
timed() {
	local label=$1 t
	shift
	t=$(mktemp)
	/usr/bin/time -f '%e %M' -o "$t" "$@" >/dev/null
	read -r secs kb <"$t"
	rm -f "$t"
	awk -v l="$label" -v s="$secs" -v kb="$kb" -v n="$N" \
		'BEGIN { printf "%-28s %8.1f s %10.0f instances/s %8.0f MiB peak RSS\n", l, s, n / s, kb / 1024 }'
}

echo "$N instances on $store ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
plan=$(mktemp)
lifecycle_plan "$plan"
lifecycle_events "$N" | timed "bulk (made)" "$IU" bulk --progress none "$plan"
rm -f "$plan"

run() { # run BINARY-LABEL BINARY
	local label=$1 bin=$2
	timed "verify ($label)" "$bin" verify
	timed "migrate v2->v3 ($label)" "$bin" migrate --from tpl:wf:onboarding/v2 --to tpl:wf:onboarding/v3 --apply --progress none
	timed "verify after ($label)" "$bin" verify
	# Back, for the next binary (and to leave the instances on v2).
	"$bin" migrate --from tpl:wf:onboarding/v3 --to tpl:wf:onboarding/v2 --apply --progress none >/dev/null
}
if [ -n "${OLD:-}" ]; then
	run old "$OLD"
fi
run new "$IU"
timed "rollback --apply" "$IU" rollback --actor lifecycle --apply
