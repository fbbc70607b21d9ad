// The scheduled upkeep on the real scheduler (pg_cron in the stack's server, migration 0024, db/roles.sql): what a
// database registers, who the jobs run as and what that role may do, and who may register. Each probe is a job the
// scheduler itself runs as tracking_upkeep (that role has no password and only the server's OS user may connect as it,
// over the socket, so a test cannot log in as it); the test waits
// for each job's first run to end (pg_cron starts jobs on the minute).
import { afterAll, beforeAll, expect, test } from "bun:test";
import postgres from "postgres";
import { registerUpkeepJobs } from "../../db/upkeep-jobs.ts";
import { sqlState } from "../../lib/db.ts";
import { serviceUrl } from "../../tools/service-url.ts";
import { waitFor } from "../api/support/wait.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;
let scheduler: postgres.Sql; // the owner's session in the `postgres` database, where pg_cron lives
let database: string;

beforeAll(async () => {
  db = await freshDatabase("upkeep_jobs");
  database = new URL(db.url).pathname.slice(1);
  scheduler = postgres(Object.assign(new URL(db.url), { pathname: "/postgres" }).toString(), { max: 1, onnotice: () => {} });
});
afterAll(async () => {
  await scheduler?.end();
  await db?.drop(); // unregisters the database's jobs first (tools/drop-database.ts)
});

const schedule = (jobs: { name: string; schedule: string; command: string }[]) =>
  scheduler<{ job: string; schedule: string; command: string }[]>`
    select job, schedule, command from schedule_upkeep(${database}, ${scheduler.json(jobs)})`;

test("a database registers the jobs its migrations list, under its own name; an empty list removes them", async () => {
  const listed = await db.sql<{ name: string; schedule: string; command: string }[]>`select * from upkeep_jobs()`;
  expect(listed.map((j) => j.name).sort()).toEqual(["sweep_offline_drivers", "trail_compaction", "trail_partitions"]);
  const registered = await registerUpkeepJobs(db.url);
  expect(registered).toEqual(
    [...listed].sort((a, b) => a.name.localeCompare(b.name)).map((j) => ({ job: `${database}:${j.name}`, schedule: j.schedule, command: j.command })),
  );
  expect([...(await schedule([]))]).toEqual([]);
});

// Each probe: a command the scheduler runs as tracking_upkeep, and how its run must end. The three jobs' own work
// (with short loops) succeeds; anything else the role was not granted is refused.
const PROBES = [
  { name: "sweep", command: "CALL sweep_offline_drivers_for(interval '0 seconds')", ends: "succeeded" },
  { name: "compaction", command: "CALL trail_compaction_tick(interval '1 second')", ends: "succeeded" },
  { name: "partitions", command: "SELECT trail_partitions_job()", ends: "succeeded" },
  { name: "heartbeats", command: "SELECT * FROM upkeep_heartbeats()", ends: "permission denied" },
  { name: "apply", command: "SELECT * FROM apply_position_batch()", ends: "permission denied" },
  { name: "orders", command: "UPDATE orders SET status = 'delivered'", ends: "permission denied" },
  { name: "driver names", command: "SELECT name FROM drivers", ends: "permission denied" },
  { name: "raw trail", command: "DELETE FROM position_trail", ends: "permission denied" },
  { name: "retention", command: "SELECT drop_old_trail_partitions(-1)", ends: "permission denied" },
  { name: "settings", command: "UPDATE tracking_settings SET trail_retention_days = 0", ends: "permission denied" },
  { name: "DDL", command: "CREATE TABLE upkeep_probe (id int)", ends: "permission denied" },
] as const;

test("the jobs run as tracking_upkeep, which may do the upkeep and nothing else", async () => {
  // A driver silent for 2 minutes while another was heard just now: the sweep job takes it offline.
  const [silent] = await db.sql<{ id: string }[]>`insert into drivers (name) values ('silent') returning id`;
  const [heard] = await db.sql<{ id: string }[]>`insert into drivers (name) values ('heard') returning id`;
  await db.sql`
    insert into driver_state (driver_id, status, received_at, position_at, status_since)
    values (${silent!.id}, 'available', now() - interval '2 minutes', now() - interval '2 minutes', now() - interval '1 hour'),
           (${heard!.id}, 'available', now(), now(), now() - interval '1 hour')`;
  const since = new Date();
  // Beside the probes, a job that runs on (as a compaction tick or the sweep loop does for up to a minute): the
  // empty list that unregisters the database must end it, or the owner's DROP DATABASE cannot (42501).
  const long = { name: "long", schedule: "* * * * *", command: "SELECT pg_sleep(600)" };
  await schedule([...PROBES.map((p) => ({ name: p.name, schedule: "* * * * *", command: p.command })), long]);
  const runs = async () =>
    scheduler<{ job: string; username: string; status: string; message: string | null }[]>`
      select job, username, status, message from upkeep_runs(${database}, ${since}) where status in ('succeeded', 'failed')`;
  const upkeepSessions = async () =>
    (await db.sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity where datname = ${database} and usename = 'tracking_upkeep'`)[0]!.n;
  // A run starts on the next minute (up to 60 s away), and each probe ends within seconds.
  await waitFor(
    "a finished run of every probe, and the long job running",
    async () => new Set((await runs()).map((r) => r.job)).size === PROBES.length && (await upkeepSessions()) > 0,
    150_000,
  );
  const first = new Map<string, { username: string; status: string; message: string | null }>();
  for (const r of await runs()) if (!first.has(r.job)) first.set(r.job, r);
  await schedule([]); // no second round, and the long run ends
  await waitFor("the long run ended by unregistering", async () => (await upkeepSessions()) === 0, 30_000);
  expect(first.has(`${database}:long`)).toBe(false);
  for (const p of PROBES) {
    const run = first.get(`${database}:${p.name}`)!;
    expect({ probe: p.name, username: run.username }).toEqual({ probe: p.name, username: "tracking_upkeep" });
    const ended = run.status === "succeeded" ? "succeeded" : /permission denied/.test(run.message ?? "") ? "permission denied" : run.message;
    expect({ probe: p.name, ended }).toEqual({ probe: p.name, ended: p.ends });
  }
  const [state] = await db.sql<{ status: string }[]>`select status::text from driver_state where driver_id = ${silent!.id}`;
  expect(state!.status).toBe("offline");
  // Each job stamped its heartbeat (0025).
  const beats = await db.sql<{ job: string }[]>`select job from upkeep_heartbeats()`;
  expect(beats.map((b) => b.job)).toEqual(["sweep_offline_drivers", "trail_compaction", "trail_partitions"]);
}, 180_000);

test("only the owner registers, only for a database it owns, only a list of jobs", async () => {
  const refusal = async (run: () => Promise<unknown>) => {
    try {
      await run();
      return "allowed";
    } catch (error) {
      return sqlState(error) ?? String(error);
    }
  };
  expect(await refusal(() => scheduler`select * from schedule_upkeep('postgres', '[]'::jsonb)`)).toBe("42501");
  expect(await refusal(() => scheduler`select * from schedule_upkeep(${database}, '{}'::jsonb)`)).toBe("22023");
  // The owner may not touch pg_cron itself.
  expect(await refusal(() => scheduler`select cron.schedule_in_database('x', '* * * * *', 'select 1', ${database}, 'postgres')`)).toBe("42501");
  for (const role of ["tracking_api", "tracking_worker", "tracking_modes"] as const) {
    const as = postgres(Object.assign(new URL(serviceUrl(db.url, role)), { pathname: "/postgres" }).toString(), { max: 1, onnotice: () => {} });
    try {
      expect({ role, register: await refusal(() => as`select * from schedule_upkeep(${database}, '[]'::jsonb)`) }).toEqual({ role, register: "42501" });
      expect({ role, runs: await refusal(() => as`select * from upkeep_runs(${database}, now())`) }).toEqual({ role, runs: "42501" });
    } finally {
      await as.end();
    }
  }
});
