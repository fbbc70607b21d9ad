/**
 * A fresh database per test file, cloned from a migrated template (CREATE DATABASE … TEMPLATE is a file copy, much
 * faster than migrating each time). The template is rebuilt when the migrations change.
 * Everything here runs as the owner (tracking_owner, DATABASE_URL from .stack/tools.env): it has CREATEDB, owns the
 * template and its clones; the template gets PostGIS from template1 (the superuser put it there, db/roles.sql).
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import postgres from "postgres";
import { MIGRATIONS_FOLDER, migrateDatabase } from "../../db/migrate.ts";
import { config } from "../../lib/config.ts";
import { connectDatabase, type Sql } from "../../lib/db.ts";
import { dropDatabaseWhenServicesLeft } from "../../tools/drop-database.ts";

const TEMPLATE = "tracking_test_template";

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}


function migrationsHash(): string {
  const hash = createHash("sha256");
  for (const file of readdirSync(MIGRATIONS_FOLDER).filter((f) => f.endsWith(".sql")).sort()) {
    hash.update(file).update(readFileSync(`${MIGRATIONS_FOLDER}/${file}`));
  }
  return hash.digest("hex").slice(0, 16);
}

let templateReady: Promise<void> | undefined;

async function ensureTemplate(admin: postgres.Sql): Promise<void> {
  const hash = migrationsHash();
  // Several test processes may start at once; one builds the template, the others wait on this session lock
  // (admin has a single connection, and CREATE DATABASE cannot run inside a transaction).
  await admin`select pg_advisory_lock(hashtext(${TEMPLATE}))`;
  try {
    const [row] = await admin`select shobj_description(oid, 'pg_database') as hash from pg_database
                              where datname = ${TEMPLATE}`;
    if (row?.hash === hash) return;
    if (row) await admin.unsafe(`drop database ${TEMPLATE} with (force)`);
    await admin.unsafe(`create database ${TEMPLATE}`);
    await migrateDatabase(withDatabase(config().databaseUrl, TEMPLATE));
    await admin.unsafe(`comment on database ${TEMPLATE} is '${hash}'`);
  } finally {
    await admin`select pg_advisory_unlock(hashtext(${TEMPLATE}))`;
  }
}

export interface TestDatabase {
  url: string;
  sql: Sql;
  drop(): Promise<void>;
}

export async function freshDatabase(label: string): Promise<TestDatabase> {
  const admin = postgres(withDatabase(config().databaseUrl, "postgres"), { max: 1, onnotice: () => {} });
  try {
    templateReady ??= ensureTemplate(admin);
    await templateReady;
    const name = `test_${label.replace(/\W/g, "_").toLowerCase()}_${process.pid}_${Date.now() % 1e6}`;
    await admin.unsafe(`create database ${name} template ${TEMPLATE}`);
    // A clone starts with the default database ACL (PUBLIC may connect and make temp tables), not the template's:
    // the same as migration 0009 does for the database it migrates.
    await admin.unsafe(`revoke all on database ${name} from public`);
    await admin.unsafe(`grant connect on database ${name} to tracking_api, tracking_worker, tracking_modes, tracking_upkeep`);
    await admin.unsafe(`grant temporary on database ${name} to tracking_worker`);
    const url = withDatabase(config().databaseUrl, name);
    const sql = connectDatabase(url, { max: 10, application: `test-${label}` });
    return {
      url,
      sql,
      async drop() {
        await sql.end({ timeout: 5 });
        const admin2 = postgres(withDatabase(config().databaseUrl, "postgres"), { max: 1, onnotice: () => {} });
        try {
          await dropDatabaseWhenServicesLeft(admin2, name, 90_000);
        } finally {
          await admin2.end();
        }
      },
    };
  } finally {
    // The template promise is shared; the admin connection is not needed once the clone exists.
    await templateReady?.catch(() => {});
    await admin.end();
  }
}
