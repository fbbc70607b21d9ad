/**
 * Registers a database's scheduled upkeep with the server's scheduler (pg_cron): the jobs its migrations list
 * (upkeep_jobs(), migration 0024) are given to schedule_upkeep in the `postgres` database (db/roles.sql), which runs
 * them in that database as tracking_upkeep, replaces what was registered before and drops the jobs of databases
 * that are gone. Run by `bin/stack up` after the migrations (`bun run db:upkeep-jobs`), and by benchmarks for their
 * scratch databases. Connects as the database's owner, whose URL it is given.
 */
import postgres from "postgres";
import { config } from "../lib/config.ts";

export interface UpkeepJob {
  job: string;
  schedule: string;
  command: string;
}

const databaseOf = (url: string) => decodeURIComponent(new URL(url).pathname.slice(1));
const schedulerUrl = (url: string) => Object.assign(new URL(url), { pathname: "/postgres" }).toString();

async function withConnection<T>(url: string, run: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await run(sql);
  } finally {
    await sql.end();
  }
}

/**
 * Hands pg_cron `jobs` for the database at `databaseUrl`; returns what is registered. (Dropping a database
 * unregisters it with an empty list: tools/drop-database.ts.)
 */
async function schedule(databaseUrl: string, jobs: { name: string; schedule: string; command: string }[]): Promise<UpkeepJob[]> {
  return withConnection(schedulerUrl(databaseUrl), (sql) =>
    sql<UpkeepJob[]>`select job, schedule, command from schedule_upkeep(${databaseOf(databaseUrl)}, ${sql.json(jobs)})`);
}

/** Registers the jobs the database's own upkeep_jobs() lists; returns them as pg_cron holds them. */
export async function registerUpkeepJobs(databaseUrl: string): Promise<UpkeepJob[]> {
  const jobs = await withConnection(databaseUrl, (sql) =>
    sql<{ name: string; schedule: string; command: string }[]>`select name, schedule, command from upkeep_jobs()`);
  return schedule(databaseUrl, [...jobs]);
}

if (import.meta.main) {
  const url = config().databaseUrl;
  const jobs = await registerUpkeepJobs(url);
  for (const j of jobs) console.log(`scheduled ${j.job} (${j.schedule}): ${j.command}`);
}
