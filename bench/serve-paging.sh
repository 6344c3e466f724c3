#!/usr/bin/env bash
# The memory of iu serve while a client pages through every instance of a
# large store: N instances (a million by default) made by one bulk run on
# SQLite, then iu serve on the store and iu --server ... instances
# --limit 0 --json, which reads every page (1,000 rows each, a keyset
# cursor) and prints them. It prints the time, the JSON's size, the
# client's peak RSS and the server's resident size before and its peak
# (VmHWM) after. Bar: the server's peak under 100 MB.
#
# usage: bench/serve-paging.sh [DIR]   (default DIR: a new temporary one; a
#        store already in DIR/paging.db is used as it is)
# env:   N (instances; default 1000000), IU (the iu binary; default: built
#        from this tree), PORT (default 18181)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
N=${N:-1000000} PORT=${PORT:-18181}
if [ -z "${IU:-}" ]; then
	IU=$(mktemp -d)/iu
	(cd "$root" && go build -o "$IU" ./cmd/iu)
fi
dir=${1:-$(mktemp -d)}
mkdir -p "$dir"
db=$dir/paging.db
export IU_DB=$db
if [ ! -f "$db" ]; then
	cat >"$dir/plan.yaml" <<'YAML'
actor: pager
instance_prefix: pg
gates: {iu_core.composer_enabled: true, iu_core.auto_instantiate_enabled: true}
events_file: "-"
YAML
	"$IU" template publish "$root/examples/templates/onboarding.yaml" >/dev/null
	awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
		printf "{\"template\":\"tpl:wf:onboarding/v2\",\"id\":\"pg-%d\",\"type\":\"hr.hired\",\"subject\":\"Hire %d\",\"data\":{\"manager\":\"M\",\"team\":\"T\"}}\n", i, i }' |
		"$IU" bulk --progress none "$dir/plan.yaml" >/dev/null
fi
token=$("$IU" --json token create --scope read --name "pager-$$" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
"$IU" serve --addr "127.0.0.1:$PORT" --admin-token-file "$dir/admin.token" --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
t=$(mktemp)
bytes=$(/usr/bin/time -f '%e %M' -o "$t" "$IU" --server "http://127.0.0.1:$PORT" --token "$token" --json instances --limit 0 | wc -c)
read -r secs client_kb <"$t"
rm -f "$t"
peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo "paged through $("$IU" --json stats | grep -o '"instance_count": *[0-9]*' | grep -o '[0-9]*$' | paste -sd+ | bc) instances in $secs s: $((bytes / 1000000)) MB of JSON; client peak RSS $((client_kb / 1024)) MiB"
echo "iu serve: $((before / 1024)) MiB resident before, $((peak / 1024)) MiB peak (VmHWM) after (bar: under 100 MB)"
