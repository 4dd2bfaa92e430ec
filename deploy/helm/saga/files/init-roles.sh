#!/bin/sh
# The saga's database roles, made once, when the postgres image initialises
# an empty data directory (it runs /docker-entrypoint-initdb.d/*.sh as the
# image's superuser, POSTGRES_USER, against POSTGRES_DB). Used by the compose
# file (deploy/compose/compose.yaml) and by this chart's Postgres.
#
#   SAGA_OWNER_ROLE   LOGIN, owns POSTGRES_DB (and so its schema public):
#                     the service and its migrations connect as it.
#   SAGA_RELAY_ROLE   LOGIN REPLICATION, nothing else yet: the outbox's
#                     owner grants it SELECT on the outbox after the
#                     migrations (`cdc-relay role create --role ...`, run
#                     as the owner, only grants to a role that has LOGIN
#                     REPLICATION already).
#
# The passwords come from the files SAGA_OWNER_PASSWORD_FILE and
# SAGA_RELAY_PASSWORD_FILE (secrets), never from the environment. Nothing
# connects as the superuser after this.
set -eu

for v in POSTGRES_USER POSTGRES_DB SAGA_OWNER_ROLE SAGA_OWNER_PASSWORD_FILE SAGA_RELAY_ROLE SAGA_RELAY_PASSWORD_FILE; do
	eval "val=\${$v:-}"
	if [ -z "$val" ]; then
		echo "init-roles: $v is not set" >&2
		exit 1
	fi
done
if [ "$SAGA_OWNER_ROLE" = "$POSTGRES_USER" ] || [ "$SAGA_RELAY_ROLE" = "$POSTGRES_USER" ] || [ "$SAGA_OWNER_ROLE" = "$SAGA_RELAY_ROLE" ]; then
	echo "init-roles: POSTGRES_USER ($POSTGRES_USER), SAGA_OWNER_ROLE ($SAGA_OWNER_ROLE) and SAGA_RELAY_ROLE ($SAGA_RELAY_ROLE) must be three roles" >&2
	exit 1
fi
for f in "$SAGA_OWNER_PASSWORD_FILE" "$SAGA_RELAY_PASSWORD_FILE"; do
	if [ ! -s "$f" ]; then
		echo "init-roles: $f is empty or missing" >&2
		exit 1
	fi
done

# The passwords never reach a command line (ps would show it): psql reads
# each file itself (\set with a backquoted cat), and its :'value' quotes
# it as a literal, as :"name" quotes an identifier. A failed statement is
# not logged with its text (log_min_error_statement), so neither is a
# password.
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
	--set db="$POSTGRES_DB" --set owner="$SAGA_OWNER_ROLE" --set relay="$SAGA_RELAY_ROLE" <<'SQL'
\set owner_password `cat "$SAGA_OWNER_PASSWORD_FILE"`
\set relay_password `cat "$SAGA_RELAY_PASSWORD_FILE"`
SET log_min_error_statement = panic;
SET password_encryption = 'scram-sha-256';
CREATE ROLE :"owner" LOGIN PASSWORD :'owner_password';
ALTER DATABASE :"db" OWNER TO :"owner";
CREATE ROLE :"relay" LOGIN REPLICATION PASSWORD :'relay_password';
SQL
echo "init-roles: made $SAGA_OWNER_ROLE (owner of $POSTGRES_DB) and $SAGA_RELAY_ROLE (LOGIN REPLICATION)"
