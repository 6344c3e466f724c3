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
