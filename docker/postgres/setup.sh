#!/bin/sh
# The one-shot `db-setup` service: bin/stack's postgres_up after the server answers. Roles and their passwords
# (db/roles.sql; a changed secret is applied here), the project's database owned by tracking_owner, PostGIS in it.
# Idempotent: run at every `docker compose up`. The migrations then run as the owner (the `migrate` service).
set -eu
export PGHOST="${PGHOST:-postgres}" PGUSER=postgres PGPASSWORD="$PG_SUPERUSER_PASSWORD"
db=food_delivery
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# roles.sql reads PG_OWNER_PASSWORD, PG_API_PASSWORD, PG_WORKER_PASSWORD and PG_MODES_PASSWORD with \getenv.
psql_admin -d postgres -f "${ROLES_SQL:-/opt/project/roles.sql}" >/dev/null
if [ "$(psql_admin -d postgres -tAc "select 1 from pg_database where datname = '$db'")" != 1 ]; then
  psql_admin -d postgres -c "create database $db owner tracking_owner"
fi
PGOPTIONS="-c client_min_messages=warning" psql_admin -d "$db" -c "create extension if not exists postgis"
echo "db-setup: roles and database $db ready"
