/**
 * `bun run bench:db`: applies the same positions three ways on the same data, in a scratch database:
 *   (a) naive — one UPDATE + one INSERT per message, each awaited (the original design);
 *   (b) pipelined — the same statements, sent without waiting for each answer;
 *   (c) batch — COPY into staging + the set-based apply procedure (all logic on), at 1K/10K/50K per batch, with one
 *       fix per driver per batch (the worst case: every position moves a different driver) and with four (phones
 *       batching 4 fixes per message);
 *   (d) the same on two connections, each batch split by driver as Kafka partitions split drivers between workers.
 * `--implausible 0.01` makes 1% of the fixes jump 55 km (refused as impossible_speed), so their drivers take the
 * fix-by-fix walk of migration 0008 instead of its one-window check.
 * Prints a table and writes JSON under bench/results/. Not a test: nothing here asserts a speed.
 */
import { parseArgs } from "node:util";
import { connectDatabase, type Sql } from "../lib/db.ts";
import { cellOf } from "../lib/h3.ts";
import { applyPositionBatch } from "../workers/apply-batch.ts";
import type { StagedPosition } from "../workers/decode-batch.ts";
import { createScratchDatabase } from "../tools/scratch-database.ts";

const { values: args } = parseArgs({
  options: {
    drivers: { type: "string", default: "100000" },
    naive: { type: "string", default: "5000" },
    positions: { type: "string", default: "200000" },
    // Share of fixes that jump 55 km (refused as impossible_speed): their drivers take the fix-by-fix walk of 0008.
    implausible: { type: "string", default: "0" },
  },
});
const DRIVERS = Number(args.drivers);
const NAIVE_N = Number(args.naive);
const BATCH_TOTAL = Number(args.positions);
const IMPLAUSIBLE = Number(args.implausible);

const scratch = await createScratchDatabase(`bench_db_${Date.now()}`);
const url = scratch.url;
const sql = connectDatabase(url, { max: 4 });

console.error(`seeding ${DRIVERS} drivers…`);
await sql`insert into drivers (name) select 'bench ' || g from generate_series(1, ${DRIVERS}) g`;
await sql`insert into driver_state (driver_id) select id from drivers`;
// 20% of drivers carry a live order, so geofence and ETA work is part of every batch.
await sql`insert into customers (name, location) values ('bench', 'SRID=4326;POINT(-73.99 40.73)')`;
await sql`insert into restaurants (name, location, h3) values ('bench', 'SRID=4326;POINT(-73.98 40.75)', 1)`;
const driverIds = (await sql<{ id: string }[]>`select id from drivers order by id`).map((r) => r.id);
const withOrders = driverIds.filter((_, i) => i % 5 === 0);
await sql`
  insert into orders (customer_id, restaurant_id, delivery_location, status, driver_id)
  select (select id from customers), (select id from restaurants), 'SRID=4326;POINT(-73.99 40.73)', 'assigned', d
  from unnest(${withOrders}::uuid[]) d`;
await sql`update driver_state ds set status = 'assigned', current_order_id = o.id, position_at = now() - interval '1 hour'
          from orders o where o.driver_id = ds.driver_id`;
await sql`vacuum analyze`;

// Each driver moves like a driver: a few tens of metres per report from where it was (so its H3 cell mostly stays
// the same, as at 4 s intervals on a real street), not a jump across the city.
const where = driverIds.map(() => ({ lat: 40.70 + Math.random() * 0.1, lon: -74.02 + Math.random() * 0.1 }));
let clock = Date.now() - 3_000_000;
/** `perDriver` consecutive fixes of each driver: 1 is the worst case (every position moves a different driver); 4 is
 * what phones batching 4 fixes per message deliver, so a batch moves a quarter as many drivers. */
function positions(n: number, perDriver = 1): StagedPosition[] {
  const out: StagedPosition[] = [];
  for (let i = 0; i < n; i++) {
    const d = Math.floor(i / perDriver) % DRIVERS;
    const here = where[d]!;
    here.lat += (Math.random() - 0.5) * 0.0004;
    here.lon += (Math.random() - 0.5) * 0.0004;
    // A jump is this fix alone: the driver's next fix is back where it really is.
    const jump = IMPLAUSIBLE > 0 && Math.random() < IMPLAUSIBLE ? 0.5 : 0;
    const lat = here.lat + jump;
    const lon = here.lon;
    clock += 1;
    out.push({
      seq: i, driverId: driverIds[d]!, recordedMs: clock, lat, lon, h3: cellOf(lat, lon, 9),
      speedKmh: 25, headingDeg: 90, accuracyM: 5, batteryPct: 80, receivedMs: clock, message: i,
    });
  }
  return out;
}

async function naive(db: Sql, rows: StagedPosition[], pipelined: boolean) {
  const one = (p: StagedPosition) =>
    db.begin(async (tx) => {
      await tx`update driver_state set lat = ${p.lat}, lon = ${p.lon}, h3 = ${p.h3},
               position = st_setsrid(st_makepoint(${p.lon}, ${p.lat}), 4326)::geography,
               position_at = ${new Date(p.recordedMs)}, updated_at = now()
               where driver_id = ${p.driverId}`;
      await tx`insert into position_trail (driver_id, recorded_at, lat, lon, h3)
               values (${p.driverId}, ${new Date(p.recordedMs)}, ${p.lat}, ${p.lon}, ${p.h3})
               on conflict do nothing`;
    });
  if (!pipelined) for (const p of rows) await one(p);
  else await Promise.all(rows.map(one));
}

const results: { method: string; batch: number; positions: number; seconds: number; perSecond: number }[] = [];
async function measure(method: string, batch: number, n: number, run: () => Promise<unknown>) {
  const t = performance.now();
  await run();
  const seconds = (performance.now() - t) / 1000;
  results.push({ method, batch, positions: n, seconds: +seconds.toFixed(3), perSecond: Math.round(n / seconds) });
  console.error(`${method} batch=${batch}: ${Math.round(n / seconds)} positions/s`);
}

// Warm-up, not measured: every driver reports once, so driver_state rows hold a position (as in a running system,
// where a driver's first position ever is a one-off) and each method below updates rows of their final size.
for (let i = 0; i < DRIVERS; i += 50_000) {
  await applyPositionBatch(sql, positions(Math.min(50_000, DRIVERS - i)).map((p, seq) => ({ ...p, seq })));
}
await sql`vacuum analyze`;

const naiveRows = positions(NAIVE_N);
await measure("a naive (awaited UPDATE+INSERT)", 1, NAIVE_N, () => naive(sql, naiveRows, false));
const pipelinedRows = positions(NAIVE_N);
const pipelinedSql = connectDatabase(url, { max: 4 });
await measure("b naive pipelined (4 connections)", 1, NAIVE_N, () => naive(pipelinedSql, pipelinedRows, true));
await pipelinedSql.end();
for (const perDriver of [1, 4]) {
  for (const size of [1_000, 10_000, 50_000]) {
    const all = positions(BATCH_TOTAL, perDriver);
    await measure(`c COPY + apply, ${perDriver} fix/driver`, size, BATCH_TOTAL, async () => {
      for (let i = 0; i < all.length; i += size) {
        await applyPositionBatch(sql, all.slice(i, i + size).map((p, seq) => ({ ...p, seq })));
      }
    });
  }
}

// The same, two workers' worth: each batch split by driver (as Kafka partitions split drivers between workers) and
// the halves applied concurrently on two connections, so both cores run the procedure.
const parallelSql = connectDatabase(url, { max: 2 });
for (const [perDriver, size] of [[1, 10_000], [1, 50_000], [4, 50_000]] as const) {
  const all = positions(BATCH_TOTAL, perDriver);
  const half = (rows: StagedPosition[], h: number) =>
    rows.filter((p) => p.driverId.charCodeAt(35) % 2 === h).map((p, seq) => ({ ...p, seq }));
  await measure(`d COPY + apply, 2 conn, ${perDriver} fix/driver`, size, BATCH_TOTAL, async () => {
    for (let i = 0; i < all.length; i += size) {
      const slice = all.slice(i, i + size);
      await Promise.all([applyPositionBatch(parallelSql, half(slice, 0)), applyPositionBatch(parallelSql, half(slice, 1))]);
    }
  });
}
await parallelSql.end();

const naiveRate = results[0]!.perSecond;
console.log("\nmethod                               batch    positions   seconds   positions/s   × naive");
for (const r of results) {
  console.log(
    `${r.method.padEnd(36)} ${String(r.batch).padStart(6)} ${String(r.positions).padStart(12)} ${r.seconds
      .toFixed(2)
      .padStart(9)} ${String(r.perSecond).padStart(13)} ${(r.perSecond / naiveRate).toFixed(1).padStart(9)}`,
  );
}
const file = `bench/results/db-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
await Bun.write(file, JSON.stringify({ drivers: DRIVERS, driversWithOrders: withOrders.length, implausible: IMPLAUSIBLE, results }, null, 2));
console.log(`\nwritten ${file}`);
await sql.end();
// FORCE needs the right to end other sessions (an autovacuum worker may be in there), which the tools' identity may
// lack since the service roles (0009): then a plain DROP, once this run's own connections are gone.
await scratch.drop();
