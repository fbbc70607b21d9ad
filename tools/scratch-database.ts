/**
 * A database of its own for one benchmark run, migrated, beside the stack's (the demo data is never touched), and
 * dropped afterwards. Benchmarks create it as the stack's owner (lib/stack-env.ts's DATABASE_URL).
 */
import postgres from "postgres";
import { migrateDatabase } from "../db/migrate.ts";
import { config } from "../lib/config.ts";
import { dropDatabaseWhenServicesLeft } from "./drop-database.ts";

export interface ScratchDatabase {
  name: string;
  /** The scratch database's URL, with the stack's owner login. */
  url: string;
  drop(): Promise<void>;
}

const withDatabase = (name: string) => Object.assign(new URL(config().databaseUrl), { pathname: `/${name}` }).toString();

async function asAdmin<T>(run: (admin: postgres.Sql) => Promise<T>): Promise<T> {
  const admin = postgres(withDatabase("postgres"), { max: 1, onnotice: () => {} });
  try {
    return await run(admin);
  } finally {
    await admin.end();
  }
}

export async function createScratchDatabase(name: string): Promise<ScratchDatabase> {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`database name ${name}: lower-case letters, digits and _`);
  await asAdmin((admin) => admin.unsafe(`create database ${name}`));
  const url = withDatabase(name);
  await migrateDatabase(url);
  return {
    name,
    url,
    drop: () => asAdmin((admin) => dropDatabaseWhenServicesLeft(admin, name)),
  };
}
