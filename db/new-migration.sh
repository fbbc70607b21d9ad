#!/usr/bin/env bash
# Generates the next migration from db/schema.ts (or, with --custom, an empty one for functions and triggers).
# drizzle-kit quotes type names it does not know, and it knows geometry but not geography: unquote those.
set -euo pipefail
cd "$(dirname "$0")/.."
# The migrations so far are final once another follows them (test/db/seal-migrations.test.ts).
bun db/seal-migrations.ts
drizzle-kit generate "$@"
sed -i 's/"geography(Point, 4326)"/geography(Point, 4326)/g' db/migrations/*.sql
