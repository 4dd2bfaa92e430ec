#!/usr/bin/env bash
# ensure-services.sh makes sure this Debian machine (no Docker needed) runs what
# the tests and the local runner need (docs/contracts.md, "Where Postgres and
# RabbitMQ come from"):
#
#   - PostgreSQL from Debian's packages on 127.0.0.1:5432, trust auth for user
#     postgres over TCP (normal and replication connections), wal_level=logical,
#     track_commit_timestamp=on (replay orders rows by commit time),
#     max_replication_slots >= 64 and max_wal_senders >= 64 (tests run many
#     slots in parallel, one per test database);
#   - RabbitMQ from Debian's packages on 127.0.0.1:5672, user guest/guest.
#
# It installs the packages when missing, starts what is stopped, and changes
# settings only when they are wrong, so running it twice is cheap. Installing,
# starting and reconfiguring need root; a check of services that are already
# right does not.
#
# stdout carries only two export lines, everything else goes to stderr:
#
#   eval "$(bash deploy/local/ensure-services.sh)"
#
# Environment (optional): ENSURE_SERVICES_TIMEOUT, seconds to wait for each
# server to answer (default 90).
set -euo pipefail

readonly PG_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
readonly AMQP_URL='amqp://guest:guest@127.0.0.1:5672/'
readonly TIMEOUT="${ENSURE_SERVICES_TIMEOUT:-90}"
readonly HBA_MARKER='# added by deploy/local/ensure-services.sh: trust for tests on loopback'

# Replication slots and WAL senders the tests need at least; the relay, its
# standby and every parallel test hold one each.
readonly MIN_SLOTS=64
readonly MIN_WAL_SENDERS=64

log() { printf 'ensure-services: %s\n' "$*" >&2; }
die() { printf 'ensure-services: error: %s\n' "$*" >&2; exit 1; }

need_root() {
	[[ "$(id -u)" -eq 0 ]] || die "$1 needs root; run: sudo bash deploy/local/ensure-services.sh"
}

apt_updated=false
apt_install() {
	need_root "installing $*"
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand (this script supports Debian)"
	if [[ "$apt_updated" == false ]]; then
		log "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
		apt_updated=true
	fi
	log "apt-get install $*"
	# Package scripts may try to start the service through an init system that
	# does not run here (containers); this script starts the servers itself.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

# ---------------------------------------------------------------- PostgreSQL

pg_version() {
	# The highest installed major version that has a cluster config; the
	# names are plain version numbers, so ls is safe here.
	# shellcheck disable=SC2012
	ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1
}

# psql over TCP as postgres, the way the tests connect.
pg_tcp() { psql -X -q -w -h 127.0.0.1 -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 -At "$@" </dev/null; }

# psql over the Unix socket as the postgres OS user (peer auth on a fresh
# Debian install), used to read the configuration before TCP trust works.
pg_local() { runuser -u postgres -- psql -X -q -w -d postgres -v ON_ERROR_STOP=1 -At "$@" </dev/null; }

pg_wait_ready() {
	local deadline=$((SECONDS + TIMEOUT))
	until pg_isready -q -h 127.0.0.1 -p 5432 -t 2; do
		((SECONDS < deadline)) || die "PostgreSQL on 127.0.0.1:5432 did not answer within ${TIMEOUT}s; see /var/log/postgresql/postgresql-$1-main.log"
		sleep 0.5
	done
}

# pg_ctlcluster status needs to read the data directory (root or postgres);
# an answer on the port will do for other users.
pg_running() {
	pg_ctlcluster "$1" main status >/dev/null 2>&1 || pg_isready -q -h 127.0.0.1 -p 5432 -t 2
}

pg_restart() {
	need_root "restarting PostgreSQL"
	log "restarting PostgreSQL $1/main ($2)"
	pg_ctlcluster --skip-systemctl-redirect "$1" main restart >&2 || die "pg_ctlcluster $1 main restart failed; see /var/log/postgresql/postgresql-$1-main.log"
	pg_wait_ready "$1"
}

# pg_tcp_ok: an ordinary and a logical replication connection both succeed
# without a password (the relay connects with replication=database).
pg_tcp_ok() {
	PGCONNECT_TIMEOUT=5 pg_tcp -c 'SELECT 1' >/dev/null 2>&1 &&
		PGCONNECT_TIMEOUT=5 psql -X -q -w -At "host=127.0.0.1 port=5432 user=postgres dbname=postgres replication=database" \
			-c 'IDENTIFY_SYSTEM' </dev/null >/dev/null 2>&1
}

pg_ensure_trust() {
	local ver=$1 hba
	pg_tcp_ok && return 0
	need_root "configuring pg_hba.conf"
	hba=$(pg_local -c 'SHOW hba_file' 2>/dev/null) || hba="/etc/postgresql/$ver/main/pg_hba.conf"
	[[ -f "$hba" ]] || die "pg_hba.conf not found at $hba"
	if grep -qF "$HBA_MARKER" "$hba"; then
		die "psql -h 127.0.0.1 -U postgres fails although $hba already has this script's trust lines; check the server log /var/log/postgresql/postgresql-$ver-main.log"
	fi
	log "adding loopback trust lines at the top of $hba"
	# pg_hba.conf is read top down and the first matching line wins, so the
	# trust lines go first, before Debian's peer and scram-sha-256 lines.
	local tmp
	tmp=$(mktemp "$hba.XXXXXX")
	{
		printf '%s\n' "$HBA_MARKER"
		printf '%s\n' 'host    all          all  127.0.0.1/32  trust'
		printf '%s\n' 'host    all          all  ::1/128       trust'
		printf '%s\n' 'host    replication  all  127.0.0.1/32  trust'
		printf '%s\n' 'host    replication  all  ::1/128       trust'
		printf '\n'
		cat "$hba"
	} >"$tmp"
	chown --reference="$hba" "$tmp"
	chmod --reference="$hba" "$tmp"
	mv "$tmp" "$hba"
	pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >&2 || die "pg_ctlcluster $ver main reload failed"
	local deadline=$((SECONDS + 10))
	until pg_tcp_ok; do
		((SECONDS < deadline)) || die "psql -h 127.0.0.1 -U postgres still fails after adding trust lines to $hba; check listen_addresses and the server log"
		sleep 0.5
	done
}

pg_ensure_settings() {
	local ver=$1 wal slots senders commit_ts changed=()
	wal=$(pg_tcp -c 'SHOW wal_level') || die "SHOW wal_level failed"
	commit_ts=$(pg_tcp -c 'SHOW track_commit_timestamp') || die "SHOW track_commit_timestamp failed"
	slots=$(pg_tcp -c 'SHOW max_replication_slots') || die "SHOW max_replication_slots failed"
	senders=$(pg_tcp -c 'SHOW max_wal_senders') || die "SHOW max_wal_senders failed"
	if [[ "$wal" != logical ]]; then
		need_root "setting wal_level"
		pg_tcp -c 'ALTER SYSTEM SET wal_level = logical' || die "ALTER SYSTEM SET wal_level failed"
		changed+=("wal_level $wal -> logical")
	fi
	# The repair path (cdc-relay replay) selects and orders rows by commit time.
	if [[ "$commit_ts" != on ]]; then
		need_root "turning on track_commit_timestamp"
		pg_tcp -c 'ALTER SYSTEM SET track_commit_timestamp = on' || die "ALTER SYSTEM SET track_commit_timestamp failed"
		changed+=("track_commit_timestamp $commit_ts -> on")
	fi
	if ((slots < MIN_SLOTS)); then
		need_root "raising max_replication_slots"
		pg_tcp -c "ALTER SYSTEM SET max_replication_slots = $MIN_SLOTS" || die "ALTER SYSTEM SET max_replication_slots failed"
		changed+=("max_replication_slots $slots -> $MIN_SLOTS")
	fi
	if ((senders < MIN_WAL_SENDERS)); then
		need_root "raising max_wal_senders"
		pg_tcp -c "ALTER SYSTEM SET max_wal_senders = $MIN_WAL_SENDERS" || die "ALTER SYSTEM SET max_wal_senders failed"
		changed+=("max_wal_senders $senders -> $MIN_WAL_SENDERS")
	fi
	((${#changed[@]} == 0)) && return 0
	# All of them take effect only at server start.
	local IFS=','
	pg_restart "$ver" "${changed[*]}"
	wal=$(pg_tcp -c 'SHOW wal_level')
	[[ "$wal" == logical ]] || die "wal_level is still $wal after a restart; is it set in a file included after postgresql.auto.conf?"
}

ensure_postgres() {
	if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z "$(pg_version)" ]]; then
		apt_install postgresql
	fi
	command -v pg_ctlcluster >/dev/null 2>&1 || die "pg_ctlcluster not found after installing postgresql"
	local ver
	ver=$(pg_version)
	if [[ -z "$ver" || ! -d "/etc/postgresql/$ver/main" ]]; then
		need_root "creating the PostgreSQL cluster"
		# shellcheck disable=SC2012
		ver=${ver:-$(ls /usr/lib/postgresql | sort -V | tail -n 1)}
		[[ -n "$ver" ]] || die "no PostgreSQL server found in /usr/lib/postgresql"
		log "creating cluster $ver/main"
		pg_createcluster "$ver" main >&2 || die "pg_createcluster $ver main failed"
	fi
	if ! pg_running "$ver"; then
		need_root "starting PostgreSQL"
		log "starting PostgreSQL $ver/main"
		pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 ||
			die "pg_ctlcluster $ver main start failed; see /var/log/postgresql/postgresql-$ver-main.log"
	fi
	pg_wait_ready "$ver"
	pg_ensure_trust "$ver"
	pg_ensure_settings "$ver"
	log "PostgreSQL $ver/main ready on 127.0.0.1:5432 (wal_level=logical)"
}

# ------------------------------------------------------------------ RabbitMQ

amqp_port_open() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null; }

rabbit_running() {
	if [[ "$(id -u)" -eq 0 ]]; then
		timeout 30 rabbitmqctl -q status >/dev/null 2>&1
	else
		# rabbitmqctl needs the server's Erlang cookie, which only root and
		# rabbitmq can read; the AMQP port is the next best sign.
		amqp_port_open
	fi
}

ensure_rabbitmq() {
	if ! command -v rabbitmq-server >/dev/null 2>&1; then
		apt_install rabbitmq-server
	fi
	if ! rabbit_running; then
		need_root "starting RabbitMQ"
		log "starting RabbitMQ"
		rabbitmq-server -detached >&2 || die "rabbitmq-server -detached failed; see /var/log/rabbitmq/"
		local deadline=$((SECONDS + TIMEOUT))
		until timeout 20 rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; do
			((SECONDS < deadline)) || die "RabbitMQ did not start within ${TIMEOUT}s; see /var/log/rabbitmq/"
			sleep 1
		done
	fi
	local deadline=$((SECONDS + 30))
	until amqp_port_open; do
		((SECONDS < deadline)) || die "RabbitMQ runs but nothing listens on 127.0.0.1:5672; check listeners.tcp in /etc/rabbitmq/rabbitmq.conf"
		sleep 0.5
	done
	# guest may connect from loopback only, which is all the tests do; check
	# that the user still exists with its default password.
	if [[ "$(id -u)" -eq 0 ]] && ! timeout 30 rabbitmqctl -q authenticate_user guest guest >/dev/null 2>&1; then
		die "RabbitMQ rejects guest/guest; restore it: rabbitmqctl add_user guest guest && rabbitmqctl set_user_tags guest administrator && rabbitmqctl set_permissions -p / guest '.*' '.*' '.*'"
	fi
	# The management UI on :15672, as README.md gives it. Enabling a
	# plugin on a running node needs no restart; failing to is not fatal.
	if [[ "$(id -u)" -eq 0 ]] && ! grep -qs rabbitmq_management /etc/rabbitmq/enabled_plugins; then
		timeout 60 rabbitmq-plugins enable --online rabbitmq_management >&2 ||
			log "could not enable rabbitmq_management; the UI on :15672 is off (rabbitmq-plugins enable rabbitmq_management)"
	fi
	log "RabbitMQ ready on 127.0.0.1:5672 (guest/guest)"
}

ensure_postgres
ensure_rabbitmq

# Single quotes: the URLs hold '?', '&' and '=' but never a quote.
printf "export SAGA_TEST_PG_URL='%s'\n" "$PG_URL"
printf "export SAGA_TEST_AMQP_URL='%s'\n" "$AMQP_URL"
