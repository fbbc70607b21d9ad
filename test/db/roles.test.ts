// Least privilege on the real cluster (db/roles.sql, migration 0009): each service role may do exactly what its code
// calls. One row per (role, action): allowed, or refused with SQLSTATE 42501 (insufficient_privilege).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connectDatabase, type Sql, sqlState } from "../../lib/db.ts";
import { trackingService } from "../../api/modules/tracking/service.ts";
import { serviceUrl, type ServiceRole } from "../../tools/service-url.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { applyPositions } from "../support/positions.ts";

let db: TestDatabase;
const as: Partial<Record<ServiceRole, Sql>> = {};
let ids: { customer: string; restaurant: string; driver: string; order: string };

beforeAll(async () => {
  db = await freshDatabase("roles");
  for (const role of ["tracking_api", "tracking_worker", "tracking_modes"] as const) {
    as[role] = connectDatabase(serviceUrl(db.url, role), { max: 2, application: `test-${role}` });
  }
  // Seeded by the owner, as db/generate.ts does.
  const [customer] = await db.sql<{ id: string }[]>`
    insert into customers (name, location) values ('c', 'SRID=4326;POINT(-73.99 40.73)') returning id`;
  const [restaurant] = await db.sql<{ id: string }[]>`
    insert into restaurants (name, location, h3) values ('r', 'SRID=4326;POINT(-73.98 40.75)', 1) returning id`;
  const [driver] = await db.sql<{ id: string }[]>`insert into drivers (name) values ('d') returning id`;
  await db.sql`insert into driver_state (driver_id) values (${driver!.id})`;
  const [order] = await db.sql<{ id: string }[]>`
    insert into orders (customer_id, restaurant_id, delivery_location)
    values (${customer!.id}, ${restaurant!.id}, 'SRID=4326;POINT(-73.99 40.73)') returning id`;
  ids = { customer: customer!.id, restaurant: restaurant!.id, driver: driver!.id, order: order!.id };
});

afterAll(async () => {
  await Promise.all(Object.values(as).map((sql) => sql.end({ timeout: 5 })));
  await db?.drop();
});

// Each action runs in a transaction that is rolled back, so the rows are independent of each other's effects.
type Action = (sql: Sql) => Promise<unknown>;
const ROLLBACK = new Error("rollback");
async function attempt(role: ServiceRole, action: Action): Promise<"allowed" | string> {
  try {
    await as[role]!.begin(async (tx) => {
      await action(tx as unknown as Sql);
      throw ROLLBACK;
    });
  } catch (error) {
    if (error === ROLLBACK) return "allowed";
    return sqlState(error) ?? String(error);
  }
  return "allowed";
}

const REFUSED = "42501";
const newOrder: Action = (sql) => sql`
  insert into orders (customer_id, restaurant_id, delivery_location, items)
  select ${ids.customer}, r.id, st_setsrid(st_makepoint(-73.99, 40.73), 4326)::geography, '[]'::jsonb
  from restaurants r where r.id = ${ids.restaurant}
  returning *`;

// expected: "allowed", or the SQLSTATE the statement fails with.
const CASES: { role: ServiceRole; action: string; run: Action; expected: string }[] = [
  // The API: its own statements are allowed.
  { role: "tracking_api", action: "GET /track's query", run: (sql) => trackingService(sql).track(ids.order), expected: "allowed" },
  { role: "tracking_api", action: "POST /orders' insert … returning *", run: newOrder, expected: "allowed" },
  { role: "tracking_api", action: "order_transition (confirm)", run: (sql) => sql`select * from order_transition(${ids.order}, 'confirm')`, expected: "allowed" },
  {
    role: "tracking_api",
    action: "assign_nearest_driver (none free: T1409, not a privilege error)",
    run: async (sql) => {
      await sql`select order_transition(${ids.order}, 'confirm')`;
      return sql`select * from assign_nearest_driver(${ids.order}, ${sql.array(["1"])}::bigint[])`;
    },
    expected: "T1409",
  },
  { role: "tracking_api", action: "the dispatch index's read (available_drivers, 0017)", run: (sql) => sql`select count(*) from available_drivers()`, expected: "allowed" },
  { role: "tracking_api", action: "assign_batch (0017), an empty batch", run: (sql) => sql`select * from assign_batch('{}'::uuid[], '{}'::uuid[], '{}'::int[])`, expected: "allowed" },
  { role: "tracking_api", action: "nearest_among (0017: the owner's, not the API's)", run: (sql) => sql`select * from nearest_among('SRID=4326;POINT(-73.99 40.73)'::geography, '{}'::uuid[])`, expected: "42501" },
  { role: "tracking_api", action: "GET /drivers/{id}'s read", run: (sql) => sql`select d.name, ds.status from drivers d left join driver_state ds on ds.driver_id = d.id`, expected: "allowed" },
  { role: "tracking_api", action: "LISTEN order_tracking", run: (sql) => sql`listen order_tracking`, expected: "allowed" },
  // The API: everything else is refused.
  { role: "tracking_api", action: "UPDATE driver_state", run: (sql) => sql`update driver_state set status = 'available'`, expected: REFUSED },
  { role: "tracking_api", action: "UPDATE orders (status)", run: (sql) => sql`update orders set status = 'delivered'`, expected: REFUSED },
  { role: "tracking_api", action: "DELETE orders", run: (sql) => sql`delete from orders`, expected: REFUSED },
  { role: "tracking_api", action: "TRUNCATE orders", run: (sql) => sql`truncate orders`, expected: REFUSED },
  { role: "tracking_api", action: "INSERT orders with its status", run: (sql) => sql`insert into orders (customer_id, restaurant_id, delivery_location, status) values (${ids.customer}, ${ids.restaurant}, 'SRID=4326;POINT(-73.99 40.73)', 'delivered')`, expected: REFUSED },
  { role: "tracking_api", action: "SELECT customers", run: (sql) => sql`select name, location from customers`, expected: REFUSED },
  { role: "tracking_api", action: "SELECT position_trail", run: (sql) => sql`select * from position_trail limit 1`, expected: REFUSED },
  { role: "tracking_api", action: "UPDATE tracking_settings", run: (sql) => sql`update tracking_settings set offline_after_s = 1`, expected: REFUSED },
  { role: "tracking_api", action: "CREATE TABLE", run: (sql) => sql`create table api_probe (id int)`, expected: REFUSED },
  { role: "tracking_api", action: "CREATE TEMP TABLE", run: (sql) => sql`create temp table api_probe (id int)`, expected: REFUSED },
  { role: "tracking_api", action: "apply_position_batch()", run: (sql) => sql`select * from apply_position_batch()`, expected: REFUSED },
  { role: "tracking_api", action: "sweep_offline_drivers()", run: (sql) => sql`select sweep_offline_drivers()`, expected: REFUSED },
  { role: "tracking_api", action: "driver_transition()", run: (sql) => sql`select driver_transition(${ids.driver}, 'online')`, expected: REFUSED },
  { role: "tracking_api", action: "drop_old_trail_partitions()", run: (sql) => sql`select drop_old_trail_partitions(0)`, expected: REFUSED },
  { role: "tracking_api", action: "trail_upkeep()", run: (sql) => sql`select trail_upkeep()`, expected: REFUSED },
  // The worker: its own statements are allowed (the COPY + apply path is tested whole below).
  { role: "tracking_worker", action: "open_position_staging() + COPY's target", run: (sql) => sql`select open_position_staging()`.then(() => sql`insert into position_staging (seq, driver_id, recorded_at, lat, lon, h3) values (0, ${ids.driver}, now(), 40.7, -73.9, 1)`), expected: "allowed" },
  { role: "tracking_worker", action: "UPDATE tracking_settings (offline_after_s)", run: (sql) => sql`update tracking_settings set offline_after_s = 60 where id = 1`, expected: "allowed" },
  { role: "tracking_worker", action: "assign_batch (0017)", run: (sql) => sql`select * from assign_batch('{}'::uuid[], '{}'::uuid[], '{}'::int[])`, expected: "42501" },
  // The scheduled upkeep runs in the database as tracking_upkeep (0024; its own rows: test/db/upkeep-jobs.test.ts).
  { role: "tracking_worker", action: "sweep_offline_drivers() (0024: the database's job)", run: (sql) => sql`select sweep_offline_drivers()`, expected: REFUSED },
  { role: "tracking_worker", action: "trail_upkeep() (0024: the database's job)", run: (sql) => sql`select trail_upkeep()`, expected: REFUSED },
  { role: "tracking_worker", action: "CALL trail_compaction_tick() (0024)", run: (sql) => sql`call trail_compaction_tick('1 second')`, expected: REFUSED },
  { role: "tracking_worker", action: "report_ingest_lag() (0024)", run: (sql) => sql`select report_ingest_lag('w', 5)`, expected: "allowed" },
  { role: "tracking_worker", action: "UPDATE tracking_settings (trail compaction, 0024)", run: (sql) => sql`update tracking_settings set trail_compaction_spread_s = 2400, trail_compaction_drivers_per_step = 200, trail_compaction_yield_lag = 10000 where id = 1`, expected: "allowed" },
  { role: "tracking_worker", action: "UPDATE tracking_settings (compaction cadence)", run: (sql) => sql`update tracking_settings set trail_compaction_every_s = 0`, expected: REFUSED },
  { role: "tracking_worker", action: "UPDATE trail_compaction_pass", run: (sql) => sql`update trail_compaction_pass set started_at = null`, expected: REFUSED },
  { role: "tracking_api", action: "report_ingest_lag()", run: (sql) => sql`select report_ingest_lag('w', 5)`, expected: REFUSED },
  // The jobs' heartbeats (0025): the worker exports their ages; only the jobs stamp.
  { role: "tracking_worker", action: "upkeep_heartbeats() (0025)", run: (sql) => sql`select * from upkeep_heartbeats()`, expected: "allowed" },
  { role: "tracking_worker", action: "stamp_upkeep() (0025)", run: (sql) => sql`select stamp_upkeep('sweep_offline_drivers')`, expected: REFUSED },
  { role: "tracking_worker", action: "trail_partitions_job() (0025)", run: (sql) => sql`select trail_partitions_job()`, expected: REFUSED },
  { role: "tracking_api", action: "upkeep_heartbeats()", run: (sql) => sql`select * from upkeep_heartbeats()`, expected: REFUSED },
  { role: "tracking_api", action: "ingest_lag_now()", run: (sql) => sql`select ingest_lag_now()`, expected: REFUSED },
  // The apply's hop check with scalar limits (0023): the worker may run it (so the apply inlines it), the API not.
  { role: "tracking_worker", action: "position_hop_too_fast() (0023)", run: (sql) => sql`select position_hop_too_fast(40.7, -74, now(), 40.71, -74, now(), 500, 70)`, expected: "allowed" },
  { role: "tracking_api", action: "position_hop_too_fast() (0023)", run: (sql) => sql`select position_hop_too_fast(40.7, -74, now(), 40.71, -74, now(), 500, 70)`, expected: REFUSED },
  // The compact trail (0014): the worker compacts through the function only.
  { role: "tracking_worker", action: "compact_trail_step() (0024: the database's job)", run: (sql) => sql`select * from compact_trail_step(null, 10)`, expected: REFUSED },
  { role: "tracking_worker", action: "SELECT position_trail_compact", run: (sql) => sql`select * from position_trail_compact limit 1`, expected: REFUSED },
  { role: "tracking_worker", action: "DELETE position_trail_compact", run: (sql) => sql`delete from position_trail_compact`, expected: REFUSED },
  { role: "tracking_worker", action: "drop_old_compact_trail_partitions(-1)", run: (sql) => sql`select drop_old_compact_trail_partitions(-1)`, expected: REFUSED },
  { role: "tracking_api", action: "driver_path()", run: (sql) => sql`select * from driver_path(${ids.driver}, now() - interval '1 hour', now())`, expected: REFUSED },
  // Upkeep with a retention the worker could choose (0010): -1 would drop every partition, today's too.
  { role: "tracking_worker", action: "drop_old_trail_partitions(-1)", run: (sql) => sql`select drop_old_trail_partitions(-1)`, expected: REFUSED },
  // The worker: everything else is refused.
  { role: "tracking_worker", action: "INSERT orders", run: newOrder, expected: REFUSED },
  { role: "tracking_worker", action: "UPDATE orders", run: (sql) => sql`update orders set status = 'delivered'`, expected: REFUSED },
  { role: "tracking_worker", action: "DELETE driver_state", run: (sql) => sql`delete from driver_state`, expected: REFUSED },
  { role: "tracking_worker", action: "UPDATE tracking_settings (retention)", run: (sql) => sql`update tracking_settings set trail_retention_days = 0`, expected: REFUSED },
  { role: "tracking_worker", action: "SELECT customers (addresses)", run: (sql) => sql`select name, location from customers`, expected: REFUSED },
  { role: "tracking_worker", action: "SELECT drivers (names)", run: (sql) => sql`select name from drivers`, expected: REFUSED },
  { role: "tracking_worker", action: "DROP TABLE position_trail", run: (sql) => sql`drop table position_trail`, expected: REFUSED },
  { role: "tracking_worker", action: "DROP a trail partition", run: async (sql) => { const [p] = await sql<{ name: string }[]>`select inhrelid::regclass::text as name from pg_inherits where inhparent = 'position_trail'::regclass limit 1`; return sql.unsafe(`drop table ${p!.name}`); }, expected: REFUSED },
  { role: "tracking_worker", action: "CREATE TABLE", run: (sql) => sql`create table worker_probe (id int)`, expected: REFUSED },
  { role: "tracking_worker", action: "order_transition()", run: (sql) => sql`select order_transition(${ids.order}, 'confirm')`, expected: REFUSED },
  { role: "tracking_worker", action: "assign_nearest_driver()", run: (sql) => sql`select assign_nearest_driver(${ids.order}, null)`, expected: REFUSED },
  { role: "tracking_worker", action: "driver_modes_to_publish()", run: (sql) => sql`select * from driver_modes_to_publish(null, 10)`, expected: REFUSED },
  { role: "tracking_api", action: "record_driver_modes_published()", run: (sql) => sql`select record_driver_modes_published('{}', '{}', '{}')`, expected: REFUSED },
  // The mode publisher (migration 0013): its three functions and LISTEN.
  { role: "tracking_modes", action: "LISTEN driver_mode", run: (sql) => sql`listen driver_mode`, expected: "allowed" },
  { role: "tracking_modes", action: "driver_mode_notice_status()", run: (sql) => sql`select * from driver_mode_notice_status()`, expected: "allowed" },
  { role: "tracking_modes", action: "driver_modes_to_publish()", run: (sql) => sql`select * from driver_modes_to_publish(null, 10)`, expected: "allowed" },
  { role: "tracking_modes", action: "record_driver_modes_published()", run: (sql) => sql`select record_driver_modes_published(${[ids.driver]}::uuid[], '{idle}', '{available}')`, expected: "allowed" },
  // The mode publisher: everything else is refused.
  { role: "tracking_modes", action: "SELECT driver_state", run: (sql) => sql`select status from driver_state`, expected: REFUSED },
  { role: "tracking_modes", action: "SELECT drivers (names)", run: (sql) => sql`select name from drivers`, expected: REFUSED },
  { role: "tracking_modes", action: "SELECT driver_mode_published", run: (sql) => sql`select * from driver_mode_published`, expected: REFUSED },
  { role: "tracking_modes", action: "UPDATE driver_mode_published", run: (sql) => sql`update driver_mode_published set mode = 'off'`, expected: REFUSED },
  { role: "tracking_modes", action: "UPDATE driver_reporting_modes", run: (sql) => sql`update driver_reporting_modes set mode = 'off'`, expected: REFUSED },
  { role: "tracking_modes", action: "reporting_mode()", run: (sql) => sql`select reporting_mode('available')`, expected: REFUSED },
  { role: "tracking_modes", action: "nextval(driver_mode_notices_skipped)", run: (sql) => sql`select nextval('driver_mode_notices_skipped')`, expected: REFUSED },
  { role: "tracking_modes", action: "driver_transition()", run: (sql) => sql`select driver_transition(${ids.driver}, 'online')`, expected: REFUSED },
  { role: "tracking_modes", action: "order_transition()", run: (sql) => sql`select order_transition(${ids.order}, 'confirm')`, expected: REFUSED },
  { role: "tracking_modes", action: "apply_position_batch()", run: (sql) => sql`select * from apply_position_batch()`, expected: REFUSED },
  { role: "tracking_modes", action: "sweep_offline_drivers()", run: (sql) => sql`select sweep_offline_drivers()`, expected: REFUSED },
  { role: "tracking_modes", action: "CREATE TABLE", run: (sql) => sql`create table modes_probe (id int)`, expected: REFUSED },
  { role: "tracking_modes", action: "CREATE TEMP TABLE", run: (sql) => sql`create temp table modes_probe (id int)`, expected: REFUSED },
];

describe("role x action", () => {
  test.each(CASES.map((c) => [c.role, c.action, c] as const))("%s: %s", async (_role, _action, c) => {
    expect(await attempt(c.role, c.run)).toBe(c.expected);
  });
});

test("the worker's real COPY + apply_position_batch runs as tracking_worker", async () => {
  const result = await applyPositions(as.tracking_worker!, [
    { driverId: ids.driver, lat: 40.7501, lon: -73.9901 },
    { driverId: "00000000-0000-4000-8000-000000000000", lat: 40.75, lon: -73.99 },
  ]);
  expect(result.applied).toBe(1);
  expect(result.unknown_driver).toBe(1);
  const [state] = await db.sql<{ lat: number }[]>`select lat from driver_state where driver_id = ${ids.driver}`;
  expect(state!.lat).toBeCloseTo(40.7501, 6);
});

test("each service role has its time limits, and its backend stops once its client is gone", async () => {
  const gone = { client_connection_check_interval: "2000" };
  const expected = { tracking_api: { statement_timeout: "5000", lock_timeout: "2000", ...gone },
    tracking_worker: { statement_timeout: "60000", lock_timeout: "20000", ...gone },
    tracking_modes: { statement_timeout: "10000", lock_timeout: "5000", ...gone } };
  for (const role of ["tracking_api", "tracking_worker", "tracking_modes"] as const) {
    const rows = await as[role]!<{ name: string; setting: string }[]>`
      select name, setting from pg_settings
      where name in ('statement_timeout', 'lock_timeout', 'client_connection_check_interval')`;
    expect(Object.fromEntries(rows.map((r) => [r.name, r.setting]))).toEqual(expected[role]);
  }
});

test("the superuser is postgres alone; no service role may manage roles or databases", async () => {
  const supers = await db.sql<{ rolname: string }[]>`select rolname from pg_roles where rolsuper order by 1`;
  expect(supers.map((r) => r.rolname)).toEqual(["postgres"]);
  const roles = await db.sql`
    select rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls from pg_roles
    where rolname like 'tracking\\_%' order by rolname`;
  expect(roles.map((r) => ({ ...r }))).toEqual([
    { rolname: "tracking_api", rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false },
    { rolname: "tracking_modes", rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false },
    { rolname: "tracking_owner", rolsuper: false, rolcreaterole: false, rolcreatedb: true, rolbypassrls: false },
    { rolname: "tracking_upkeep", rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false },
    { rolname: "tracking_worker", rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false },
  ]);
});

test("the owner owns every object of the schema, and the service roles own none", async () => {
  // Session temp tables (the worker's staging copy) live in pg_temp_* schemas and are left out.
  const owners = await db.sql<{ owner: string; n: number }[]>`
    select pg_get_userbyid(owner) as owner, count(*)::int as n from (
      select c.relowner as owner from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname in ('public', 'drizzle') and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
        and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')
      union all
      select p.proowner from pg_proc p where p.pronamespace = 'public'::regnamespace
        and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
    ) o group by 1 order by 1`;
  expect(owners.map((o) => o.owner)).toEqual(["tracking_owner"]);
  const [database] = await db.sql<{ owner: string }[]>`
    select pg_get_userbyid(datdba) as owner from pg_database where datname = current_database()`;
  expect(database!.owner).toBe("tracking_owner");
});

test("no function of ours is executable by PUBLIC", async () => {
  const open = await db.sql<{ fn: string }[]>`
    select p.oid::regprocedure::text as fn from pg_proc p
    where p.pronamespace = 'public'::regnamespace
      and not exists (select from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
      and has_function_privilege('public', p.oid, 'execute')`;
  expect(open.map((r) => r.fn)).toEqual([]);
});

test("a function a later migration creates is closed to PUBLIC too (default privileges)", async () => {
  await db.sql`create function later_probe() returns int language sql as 'select 1'`;
  const [row] = await db.sql<{ open: boolean }[]>`
    select has_function_privilege('public', 'later_probe()', 'execute') as open`;
  await db.sql`drop function later_probe()`;
  expect(row!.open).toBe(false);
});
