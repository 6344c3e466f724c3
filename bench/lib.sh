# What the bench scripts share; they source it.

# pg_base_url DB [PSQL CONNECTION ARGS...] prints the libpq URL iu takes for
# database DB on the server and user that psql's -h, -p and -U name
# (127.0.0.1, 5432 and postgres when not given).
pg_base_url() {
	local db=$1 host=127.0.0.1 port=5432 user=postgres
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		-h) host=$2; shift 2 ;;
		-p) port=$2; shift 2 ;;
		-U) user=$2; shift 2 ;;
		*) shift ;;
		esac
	done
	echo "postgres://$user@$host:$port/$db?sslmode=disable"
}

# median prints the median of the numbers on standard input.
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# lifecycle_plan FILE writes the bulk plan of the lifecycle benchmarks (actor
# lifecycle, prefix lc, both gates on, events on standard input), and
# lifecycle_events N prints N events for tpl:wf:onboarding/v2, one a line.
lifecycle_plan() {
	cat >"$1" <<'YAML'
actor: lifecycle
instance_prefix: lc
gates: {iu_core.composer_enabled: true, iu_core.auto_instantiate_enabled: true}
events_file: "-"
YAML
}
lifecycle_events() {
	awk -v n="$1" 'BEGIN {
		for (i = 0; i < n; i++)
			printf "{\"template\":\"tpl:wf:onboarding/v2\",\"id\":\"lc-%d\",\"type\":\"hr.hired\",\"subject\":\"Hire %d\",\"data\":{\"manager\":\"M\",\"team\":\"T\",\"start_date\":\"2026-01-05\"}}\n", i, i
	}'
}
