#!/bin/sh
# Run once by the image's entrypoint after initdb (/docker-entrypoint-initdb.d): pg_cron's scheduler connects over
# the local socket as the server's OS user, which pg_hba lets in there as the jobs' roles only (peer, map "upkeep"),
# matched before the SCRAM lines. The same as bin/stack's postgres_scheduler_settings (docs/upkeep.md).
set -eu
{ echo "local all postgres,tracking_upkeep peer map=upkeep"; cat "$PGDATA/pg_hba.conf"; } >"$PGDATA/pg_hba.conf.new"
mv "$PGDATA/pg_hba.conf.new" "$PGDATA/pg_hba.conf"
printf 'upkeep postgres postgres\nupkeep postgres tracking_upkeep\n' >>"$PGDATA/pg_ident.conf"
