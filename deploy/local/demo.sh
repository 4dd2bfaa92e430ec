#!/usr/bin/env bash
# demo.sh runs the whole saga system as plain processes on a Debian machine
# without Docker (docs/contracts.md, "Where Postgres and RabbitMQ come from"
# and "The newcomer's two commands"; `make demo` calls it when no Docker
# engine answers):
#
#   bash deploy/local/demo.sh up       start what does not run (all of it the first time), print the URLs
#   bash deploy/local/demo.sh restart NAME   restart one process (order, relay-stock, gateway, ...)
#   bash deploy/local/demo.sh down     stop it all (Postgres and RabbitMQ keep running)
#   bash deploy/local/demo.sh status   what runs, and whether it is ready
#   bash deploy/local/demo.sh purge    down, then drop the demo's databases and slots
#   bash deploy/local/demo.sh logs     follow every log
#   bash deploy/local/demo.sh env      the resolved settings, as export lines
#
# `up` runs deploy/local/ensure-services.sh (Postgres with wal_level=logical
# and RabbitMQ from Debian's packages, installed and started when missing;
# that needs root once), creates the databases <name>_order, <name>_stock and
# <name>_payment, builds the binaries, applies the migrations, and starts:
#
#   order :8000, stock :8001, payment :8002        the services
#   relay-order :9401, relay-stock :9402, relay-payment :9403
#                                                  one cdc-relay per database, slot <name>_<service>
#   gateway :8080                                  /order /stock /payment, like the demo's Kong,
#                                                  /relays/<service>/status, and the dashboard
#                                                  at /dashboard/ (/ redirects to it)
#
# Everything lives in the state directory (.demo/ by default): bin/ the
# binaries, run/ the pid files, log/ one log per process. `down` stops the
# processes and drops nothing: the databases and replication slots stay, so
# the next `up` resumes where this one stopped. A slot kept while its relay is
# down retains WAL on the server; `purge` drops them.
#
# Environment (all optional):
#   SAGA_DEMO_DIR        state directory (default <repo>/.demo)
#   SAGA_DEMO_NAME       prefix of databases and slots (default saga); any
#                        other name also gives the demo its own exchange
#                        (<name>) and queues (<name>.order.v1, ...), so that
#                        it shares a broker with nothing
#   SAGA_DEMO_HOST       address the processes listen on (default 127.0.0.1;
#                        0.0.0.0 to reach the demo from other machines); the
#                        health checks and the gateway connect to it too
#   SAGA_DEMO_PORT_OFFSET  added to every port above (default 0), to run a
#                        second demo beside the first
#   SAGA_DEMO_AMQP_URL_<PROCESS>  the broker URL of one process (PROCESS in
#                        upper case, - as _: SAGA_DEMO_AMQP_URL_RELAY_STOCK),
#                        such as a proxy a fault test cuts
#   SAGA_DEMO_PG_URL     a Postgres server URL (wal_level=logical, a role that
#                        may create databases and replication slots) and
#   SAGA_DEMO_AMQP_URL   a RabbitMQ URL; with both set, ensure-services.sh is
#                        not run
#   SAGA_DEMO_JAEGER_URL  Jaeger's UI (served under /jaeger: its
#                        query.base-path), which the gateway then serves at
#                        /jaeger and the dashboard's timeline links; the
#                        services and relays export their spans where the
#                        standard OTEL_EXPORTER_OTLP_ENDPOINT says (they
#                        inherit this environment), e.g.
#                        OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
#   GO                   the go command (default go)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${SAGA_DEMO_DIR:-$ROOT/.demo}
NAME=${SAGA_DEMO_NAME:-saga}
HOST=${SAGA_DEMO_HOST:-127.0.0.1}
GO=${GO:-go}
BIN=$STATE/bin
RUN=$STATE/run
LOG=$STATE/log
SECRETS=$STATE/secrets

readonly SERVICES=(order stock payment)
# Every port of the demo, in one place.
OFFSET=${SAGA_DEMO_PORT_OFFSET:-0}
if ! [[ "$OFFSET" =~ ^[0-9]{1,5}$ ]] || ((10#$OFFSET >= 50000)); then
	echo "demo: SAGA_DEMO_PORT_OFFSET=$OFFSET: want a whole number below 50000" >&2
	exit 2
fi
OFFSET=$((10#$OFFSET)) # "010" is 10, not octal 8
declare -A PORT=(
	[order]=$((8000 + OFFSET)) [stock]=$((8001 + OFFSET)) [payment]=$((8002 + OFFSET))
	[relay-order]=$((9401 + OFFSET)) [relay-stock]=$((9402 + OFFSET)) [relay-payment]=$((9403 + OFFSET))
	[gateway]=$((8080 + OFFSET))
)
# Where the health checks and the gateway reach the processes: the address
# they listen on, or loopback when they listen on every address.
case "$HOST" in
0.0.0.0 | "::" | "[::]") CONNECT_HOST=127.0.0.1 ;;
*) CONNECT_HOST=$HOST ;;
esac
[[ "$CONNECT_HOST" == *:* ]] && CONNECT_HOST="[$CONNECT_HOST]"
# What the printed URLs name: localhost where the demo is on loopback or
# every address.
case "$CONNECT_HOST" in
127.0.0.1) DISPLAY_HOST=localhost ;;
*) DISPLAY_HOST=$CONNECT_HOST ;;
esac
# Start order; down goes the other way round (gateway first, relays last, so
# that the relays carry what the services wrote before they stopped).
readonly PROCESSES=(order stock payment relay-order relay-stock relay-payment gateway)

# The contract's names on the default demo; a named demo gets its own.
if [[ "$NAME" == saga ]]; then
	EXCHANGE=saga
	QUEUE_PREFIX=
else
	EXCHANGE=$NAME
	QUEUE_PREFIX=$NAME.
fi
[[ "$NAME" =~ ^[a-z][a-z0-9_]{0,40}$ ]] || { echo "demo: SAGA_DEMO_NAME=$NAME: want lower-case letters, digits and _ (a Postgres and slot name)" >&2; exit 2; }

log() { printf 'demo: %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# db_url BASE DB: BASE with its database replaced by DB.
db_url() {
	local base=$1 db=$2 query=
	if [[ "$base" == *\?* ]]; then query=${base#*\?}; base=${base%%\?*}; fi
	local rest=${base#*://}
	if [[ "$rest" == */* ]]; then base=${base%/*}; fi
	printf '%s/%s%s' "$base" "$db" "${query:+?$query}"
}

resolve_servers() {
	if [[ -n "${SAGA_DEMO_PG_URL:-}" && -n "${SAGA_DEMO_AMQP_URL:-}" ]]; then
		PG_URL=$SAGA_DEMO_PG_URL
		AMQP_URL=$SAGA_DEMO_AMQP_URL
		return
	fi
	log "checking Postgres and RabbitMQ (deploy/local/ensure-services.sh)"
	local exports
	exports=$(bash "$ROOT/deploy/local/ensure-services.sh" </dev/null) || die "deploy/local/ensure-services.sh failed (see above)"
	eval "$exports"
	PG_URL=${SAGA_DEMO_PG_URL:-$SAGA_TEST_PG_URL}
	AMQP_URL=${SAGA_DEMO_AMQP_URL:-$SAGA_TEST_AMQP_URL}
}

pidfile() { printf '%s/%s.pid' "$RUN" "$1"; }

# running NAME: its pid file names a live process started from our bin/.
running() {
	local f pid exe
	f=$(pidfile "$1")
	[[ -f "$f" ]] || return 1
	pid=$(<"$f")
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	# A pid reused by another program is not ours.
	[[ "$exe" == "$BIN/"* ]]
}

port_of() { printf '%s' "${PORT[$1]}"; }

# url_of NAME: where NAME answers; display_url NAME: the same for people.
url_of() { printf 'http://%s:%s' "$CONNECT_HOST" "$(port_of "$1")"; }
display_url() { printf 'http://%s:%s' "$DISPLAY_HOST" "$(port_of "$1")"; }

health_url() {
	case $1 in
	gateway) printf '%s/relays/' "$(url_of gateway)" ;;
	*) printf '%s/readyz' "$(url_of "$1")" ;;
	esac
}

port_busy() { timeout 2 bash -c "exec 3<>/dev/tcp/${CONNECT_HOST//[\[\]]/}/$1" 2>/dev/null; }

# check_ports NAME...: the ports of processes about to start are free.
check_ports() {
	local p port busy=()
	for p in "$@"; do
		port=$(port_of "$p")
		port_busy "$port" && busy+=("$port ($p)")
	done
	((${#busy[@]} == 0)) && return 0
	local all=() q
	for q in "${PROCESSES[@]}"; do all+=("$(port_of "$q")"); done
	die "ports in use by another program: ${busy[*]}; the demo needs ${all[*]} (find the owner: ss -ltnp; SAGA_DEMO_PORT_OFFSET moves them all)"
}

# amqp_url_of NAME: the broker URL of process NAME.
amqp_url_of() {
	local var=SAGA_DEMO_AMQP_URL_${1^^}
	var=${var//-/_}
	printf '%s' "${!var:-$AMQP_URL}"
}

psql_at() { psql -X -q -w -v ON_ERROR_STOP=1 -At "$@" </dev/null; }

# The roles (docs/security.md): each service connects as the owner of its
# database, an ordinary role; each relay as a role with LOGIN REPLICATION
# and SELECT on its outbox, made by `cdc-relay role create`. Only this
# script's set-up uses PG_URL's (superuser) role. Their passwords live in
# $SECRETS (0600), and the processes read their URLs from files there
# (DATABASE_URL_FILE, CDC_RELAY_DATABASE_URL_FILE), never from the
# environment.
service_role() { printf '%s_%s' "$NAME" "$1"; }
relay_role() { printf '%s_relay_%s' "$NAME" "$1"; }

# password_of ROLE: the role's password, made once.
password_of() {
	local f=$SECRETS/$1.password
	if [[ ! -s "$f" ]]; then
		(umask 077 && od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$f")
	fi
	cat "$f"
}

# as_role URL ROLE: URL with ROLE and its password as the user (a user or
# password in the query string, which would override them, is dropped).
as_role() {
	local url=$1 role=$2 scheme rest query=
	scheme=${url%%://*}
	rest=${url#*://}
	[[ "${rest%%/*}" == *@* ]] && rest=${rest#*@}
	if [[ "$rest" == *\?* ]]; then
		query=$(printf '%s' "${rest#*\?}" | tr '&' '\n' | grep -v -E '^(user|password)=' | paste -sd '&' || true)
		rest=${rest%%\?*}
	fi
	printf '%s://%s:%s@%s%s' "$scheme" "$role" "$(password_of "$role")" "$rest" "${query:+?$query}"
}

# url_file NAME URL: write URL to $SECRETS/NAME.url (0600) and print the path.
url_file() {
	local f=$SECRETS/$1.url
	(umask 077 && printf '%s\n' "$2" >"$f")
	printf '%s' "$f"
}

create_databases() {
	command -v psql >/dev/null 2>&1 || die "psql not found (Debian: apt-get install postgresql-client)"
	mkdir -p "$SECRETS"
	chmod 700 "$SECRETS"
	local svc db role owner
	for svc in "${SERVICES[@]}"; do
		db=${NAME}_$svc
		role=$(service_role "$svc")
		if [[ -z "$(psql_at "$PG_URL" -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" ]]; then
			log "creating role $role (the owner of $db)"
			psql_at "$PG_URL" -c "CREATE ROLE \"$role\" LOGIN" || die "CREATE ROLE $role failed"
		fi
		# On standard input, not the command line, which ps shows.
		printf 'ALTER ROLE "%s" WITH LOGIN NOSUPERUSER PASSWORD '"'"'%s'"'"'\n' "$role" "$(password_of "$role")" |
			psql -X -q -w -v ON_ERROR_STOP=1 -At "$PG_URL" >/dev/null || die "ALTER ROLE $role failed"
		owner=$(psql_at "$PG_URL" -c "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$db'")
		if [[ -z "$owner" ]]; then
			log "creating database $db"
			psql_at "$PG_URL" -c "CREATE DATABASE \"$db\" OWNER \"$role\"" || die "CREATE DATABASE $db failed"
		elif [[ "$owner" != "$role" ]]; then
			# A database of an earlier demo, made as the superuser: hand it
			# and what its migrations made over to the service's role.
			log "handing database $db (owned by $owner) over to $role"
			psql_at "$(db_url "$PG_URL" "$db")" -c "ALTER DATABASE \"$db\" OWNER TO \"$role\"" \
				-c "DO \$\$ DECLARE r record; BEGIN
					FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
						WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v') AND pg_get_userbyid(c.relowner) <> '$role'
						AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')) LOOP
						EXECUTE format('ALTER %s %s OWNER TO %I', CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, r.name, '$role');
					END LOOP;
					FOR r IN SELECT pubname FROM pg_publication WHERE pg_get_userbyid(pubowner) <> '$role' LOOP
						EXECUTE format('ALTER PUBLICATION %I OWNER TO %I', r.pubname, '$role');
					END LOOP;
				END \$\$" >/dev/null || die "could not hand $db over to $role"
		fi
	done
}

# grant_relays makes each relay's role, once its outbox exists.
grant_relays() {
	local svc role
	for svc in "${SERVICES[@]}"; do
		role=$(relay_role "$svc")
		password_of "$role" >/dev/null
		CDC_RELAY_DATABASE_URL=$(db_url "$PG_URL" "${NAME}_$svc") "$BIN/cdc-relay" role create --role "$role" \
			--password-file "$SECRETS/$role.password" >>"$LOG/relay-$svc-role.log" 2>&1 ||
			die "cdc-relay role create --role $role failed; see $LOG/relay-$svc-role.log"
	done
}

# binaries_built reports whether every process's binary is in $BIN.
binaries_built() {
	local p cmd
	[[ -x "$BIN/healthprobe" ]] || return 1
	for p in "${PROCESSES[@]}"; do
		mapfile -t cmd < <(cmd_of "$p")
		[[ -x "${cmd[0]}" ]] || return 1
	done
}

build() {
	log "building binaries into $BIN"
	mkdir -p "$BIN"
	(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$BIN/" \
		./services/order/cmd/order ./services/stock/cmd/stock ./services/payment/cmd/payment \
		./cdc-relay/cmd/cdc-relay ./deploy/gateway/cmd/gateway ./deploy/healthprobe) ||
		die "go build failed"
}

# service_env SVC: the environment of service SVC (and of its migrate step).
service_env() {
	local svc=$1
	printf '%s\n' \
		"DATABASE_URL_FILE=$(url_file "$svc" "$(as_role "$(db_url "$PG_URL" "${NAME}_$svc")" "$(service_role "$svc")")")" \
		"AMQP_URL=$(amqp_url_of "$svc")" \
		"HTTP_ADDR=$HOST:$(port_of "$svc")" \
		"SAGA_EXCHANGE=$EXCHANGE" \
		"SAGA_QUEUE_PREFIX=$QUEUE_PREFIX" \
		"LOG_FORMAT=json"
}

relay_env() {
	local svc=$1
	printf '%s\n' \
		"CDC_RELAY_DATABASE_URL_FILE=$(url_file "relay-$svc" "$(as_role "$(db_url "$PG_URL" "${NAME}_$svc")" "$(relay_role "$svc")")")" \
		"CDC_RELAY_AMQP_URL=$(amqp_url_of "relay-$svc")" \
		"CDC_RELAY_SLOT=${NAME}_$svc" \
		"CDC_RELAY_EXCHANGE=$EXCHANGE" \
		"CDC_RELAY_HTTP_ADDR=$HOST:$(port_of "relay-$svc")" \
		"CDC_RELAY_LOG_FORMAT=json"
}

gateway_env() {
	printf '%s\n' \
		"GATEWAY_ADDR=$HOST:$(port_of gateway)" \
		"GATEWAY_ROUTES=order=$(url_of order),stock=$(url_of stock),payment=$(url_of payment)" \
		"GATEWAY_RELAYS=order=$(url_of relay-order),stock=$(url_of relay-stock),payment=$(url_of relay-payment)" \
		"GATEWAY_JAEGER=${SAGA_DEMO_JAEGER_URL:-}"
}

# env_of NAME: the environment lines of a process.
env_of() {
	case $1 in
	relay-*) relay_env "${1#relay-}" ;;
	gateway) gateway_env ;;
	*) service_env "$1" ;;
	esac
}

cmd_of() {
	case $1 in
	relay-*) printf '%s\n' "$BIN/cdc-relay" run ;;
	*) printf '%s\n' "$BIN/$1" ;;
	esac
}

migrate() {
	local svc env
	for svc in "${SERVICES[@]}"; do
		mapfile -t env < <(service_env "$svc")
		log "migrating ${NAME}_$svc"
		env "${env[@]}" "$BIN/$svc" migrate >>"$LOG/$svc-migrate.log" 2>&1 ||
			die "migrations of ${NAME}_$svc failed; see $LOG/$svc-migrate.log"
	done
}

# start NAME: run it in the background in its own session (so that a
# Ctrl-C in the terminal that ran `make demo` does not reach it), with its
# pid in run/ and its output in log/.
start() {
	local name=$1 env cmd
	running "$name" && return 0
	mapfile -t env < <(env_of "$name")
	mapfile -t cmd < <(cmd_of "$name")
	printf '\n--- %s: starting %s\n' "$(date -Is)" "$name" >>"$LOG/$name.log"
	# setsid execs in place here: a background job of a script is not a
	# process group leader, so $! is the program's own pid.
	setsid env "${env[@]}" "${cmd[@]}" >>"$LOG/$name.log" 2>&1 </dev/null &
	echo $! >"$(pidfile "$name")"
}

wait_ready() {
	local name
	for name in "$@"; do
		if ! "$BIN/healthprobe" -wait 60s "$(health_url "$name")" 2>"$STATE/probe.err"; then
			log "$name did not become ready within 60s: $(tail -n 1 "$STATE/probe.err")"
			log "last lines of $LOG/$name.log:"
			tail -n 15 "$LOG/$name.log" >&2 || true
			return 1
		fi
	done
}

print_urls() {
	local gw
	gw=$(display_url gateway)
	cat <<EOF

The saga demo runs (state in $STATE, logs in $LOG).

  Dashboard          $gw/
  API (gateway)      $gw
    orders           $gw/order/api/v1/orders/
    stocks           $gw/stock/api/v1/stocks/
    reservations     $gw/stock/api/v1/reservations/
    payments         $gw/payment/api/v1/payments/
    relay status     $gw/relays/order/status  (also stock, payment)
  Services           $(display_url order)  $(display_url stock)  $(display_url payment)
  Relays (metrics)   $(display_url relay-order)/metrics  :$(port_of relay-stock)  :$(port_of relay-payment)
  Postgres           $(db_url "$PG_URL" "${NAME}_order") (and ${NAME}_stock, ${NAME}_payment)
  RabbitMQ           ${AMQP_URL/\/\/guest:guest@/\/\/guest:***@} (guest/guest; exchange $EXCHANGE)

Try:
  curl -s -X POST $gw/order/api/v1/orders/ -H 'Content-Type: application/json' \\
       -d '{"customer_id": 1, "product_id": 1, "amount": 1, "quantity": 1}'
  curl -s $gw/order/api/v1/orders/

Stop with: make demo-down
EOF
}

# up starts what does not run, in order, and leaves what runs alone (as
# `docker compose up` does): the first time all of it; after a crash, the
# process that died.
up() {
	mkdir -p "$BIN" "$RUN" "$LOG"
	local p missing=()
	for p in "${PROCESSES[@]}"; do running "$p" || missing+=("$p"); done
	if ((${#missing[@]} == 0)); then
		log "already running"
		resolve_servers
		print_urls
		return 0
	fi
	((${#missing[@]} < ${#PROCESSES[@]})) && log "starting what does not run: ${missing[*]}"
	check_ports "${missing[@]}"
	resolve_servers
	create_databases
	# Built when everything starts; a process started again after a crash
	# runs the binaries the others run (as compose reuses its images), so an
	# edit of the source meanwhile cannot break or change it.
	if ((${#missing[@]} == ${#PROCESSES[@]})) || ! binaries_built; then
		build
	fi
	migrate
	grant_relays
	# The services first: they declare the exchange and all queues, so the
	# relays' mandatory publishes are routable from their first message.
	local group started
	for group in "order stock payment" "relay-order relay-stock relay-payment" "gateway"; do
		started=()
		for p in $group; do
			running "$p" && continue
			start "$p"
			started+=("$p")
		done
		((${#started[@]} == 0)) && continue
		wait_ready "${started[@]}" || die "${started[*]} did not become ready (the processes that run were left alone; make demo-down stops them)"
	done
	print_urls
}

# restart NAME stops one process (SIGTERM, so it drains) and starts it again.
restart() {
	local name=$1 p known=0
	for p in "${PROCESSES[@]}"; do [[ "$p" == "$name" ]] && known=1; done
	((known)) || die "restart: no process $name (one of: ${PROCESSES[*]})"
	mkdir -p "$BIN" "$RUN" "$LOG"
	stop_one "$name"
	resolve_servers
	binaries_built || build
	check_ports "$name"
	start "$name"
	wait_ready "$name" || die "$name did not become ready"
	log "restarted $name"
}

stop_one() {
	local name=$1 f pid
	f=$(pidfile "$name")
	if ! running "$name"; then
		rm -f "$f"
		return 0
	fi
	pid=$(<"$f")
	kill -TERM "$pid" 2>/dev/null || true
	local deadline=$((SECONDS + 30))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			log "$name (pid $pid) still runs 30s after SIGTERM: killing it"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.2
	done
	rm -f "$f"
	log "stopped $name"
}

down() {
	[[ -d "$RUN" ]] || { log "nothing runs (no $RUN)"; return 0; }
	local i
	for ((i = ${#PROCESSES[@]} - 1; i >= 0; i--)); do
		stop_one "${PROCESSES[i]}"
	done
}

purge() {
	down
	resolve_servers
	local svc db
	for svc in "${SERVICES[@]}"; do
		db=${NAME}_$svc
		psql_at "$PG_URL" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$db' AND NOT active" >/dev/null ||
			log "could not drop slot $db"
		psql_at "$PG_URL" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || log "could not drop database $db"
		psql_at "$PG_URL" -c "DROP ROLE IF EXISTS \"$(relay_role "$svc")\"" -c "DROP ROLE IF EXISTS \"$(service_role "$svc")\"" ||
			log "could not drop the roles of $db"
		log "dropped slot, database and roles of $db"
	done
	rm -rf "$SECRETS"
	log "RabbitMQ keeps exchange $EXCHANGE and the queues ${QUEUE_PREFIX}order.v1, ${QUEUE_PREFIX}stock.v1, ${QUEUE_PREFIX}payment.v1 (and DLQ.*)"
}

status() {
	local p state rc=0
	for p in "${PROCESSES[@]}"; do
		if running "$p"; then
			if [[ -x "$BIN/healthprobe" ]] && "$BIN/healthprobe" "$(health_url "$p")" 2>/dev/null; then
				state="ready"
			else
				state="running, not ready"
				rc=1
			fi
			printf '%-14s pid %-8s :%-5s %s\n' "$p" "$(<"$(pidfile "$p")")" "$(port_of "$p")" "$state"
		else
			printf '%-14s %-12s :%-5s stopped\n' "$p" "" "$(port_of "$p")"
			rc=1
		fi
	done
	return $rc
}

case "${1:-}" in
up) up ;;
restart)
	[[ $# == 2 ]] || { echo "usage: bash deploy/local/demo.sh restart NAME" >&2; exit 2; }
	restart "$2"
	;;
down) down ;;
purge) purge ;;
status) status ;;
logs) exec tail -n 20 -F "$LOG"/*.log ;;
env)
	resolve_servers
	printf "export SAGA_DEMO_PG_URL='%s'\n" "$PG_URL"
	printf "export SAGA_DEMO_AMQP_URL='%s'\n" "$AMQP_URL"
	printf "export SAGA_DEMO_NAME='%s'\n" "$NAME"
	printf "export SAGA_DEMO_DIR='%s'\n" "$STATE"
	;;
*)
	echo "usage: bash deploy/local/demo.sh up|restart NAME|down|status|purge|logs|env" >&2
	exit 2
	;;
esac
