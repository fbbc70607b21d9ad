/**
 * `bun run bench:dispatch-plans`: what assign_batch costs per order by batch size, with the plans PL/pgSQL picks by
 * itself (custom plans for the first calls, then whichever looks cheaper: `plan_cache_mode = auto`, as before 0020)
 * against generic plans from the first call (`force_generic_plan`, 0020). One connection, sequential calls, in a
 * scratch database of 100,000 available drivers; each order's candidates proposed by the API's index. The variants
 * alternate within each round; per order: the call's wall time seen by the client, divided by the batch's orders.
 * Prints a table (min / median / max over --rounds), writes JSON under bench/results/. Not a test.
 */
import { parseArgs } from "node:util";
import { arrayLiteral } from "../../api/modules/orders/assignment.ts";
import { createDriverIndex, readerInWorker } from "../../api/modules/orders/driver-index.ts";
import { connectDatabase } from "../../lib/db.ts";
import { createScratchDatabase } from "../../tools/scratch-database.ts";
import { resultStem } from "../support/plot.ts";
import { spread } from "../support/spread.ts";
import { availableFleet, resetOrders } from "./fleet.ts";

const { values: args } = parseArgs({
  options: {
    drivers: { type: "string", default: "100000" },
    rounds: { type: "string", default: "3" },
    orders: { type: "string", default: "1536" },
    sizes: { type: "string", default: "1,8,32,128" },
  },
});
const ROUNDS = Number(args.rounds);
const ORDERS = Number(args.orders);
const SIZES = args.sizes!.split(",").map(Number);
const VARIANTS = { "auto (before 0020)": "auto", "generic (0020)": "force_generic_plan" } as const;

const scratch = await createScratchDatabase(`bench_dispatch_plans_${Date.now()}`);
const sql = connectDatabase(scratch.url, { max: 1, application: "bench-dispatch-plans" });
const reader = readerInWorker(scratch.url);
const index = createDriverIndex({ read: () => reader.read(), close: reader.close }, { refreshMs: 2_000, candidates: 8, maxDistanceKm: 15 });

/** ms per order of ORDERS orders assigned in batches of `size`. */
async function perOrder(size: number, round: number, restaurants: { id: string; lat: number; lon: number }[], customer: string) {
  await index.refresh();
  const at = Array.from({ length: ORDERS }, (_, i) => restaurants[(i * 7 + round) % restaurants.length]!);
  const placed = await sql<{ id: string }[]>`
    insert into orders (customer_id, restaurant_id, delivery_location, status, confirmed_at)
    select ${customer}, r, (select location from restaurants where id = r), 'confirmed', now()
    from unnest(${at.map((r) => r.id)}::uuid[]) with ordinality x(r, i) order by i returning id`;
  let took = 0;
  let assigned = 0;
  for (let i = 0; i < ORDERS; i += size) {
    const batch = placed.slice(i, i + size).map((o, k) => ({ id: o.id, proposed: index.propose(at[i + k]!.lat, at[i + k]!.lon) ?? [] }));
    const started = performance.now();
    const rows = await sql<{ driver_id: string | null }[]>`
      select driver_id from assign_batch(${arrayLiteral(batch.map((b) => b.id))}::uuid[],
        ${arrayLiteral(batch.flatMap((b) => b.proposed))}::uuid[],
        ${arrayLiteral(batch.flatMap((b, k) => b.proposed.map(() => k + 1)))}::int[])`;
    took += performance.now() - started;
    for (const r of rows) if (r.driver_id) (assigned++, index.claimed(r.driver_id));
  }
  await resetOrders(sql);
  return { ms: took / ORDERS, assigned };
}

try {
  console.error(`generating ${args.drivers} drivers in ${scratch.name}…`);
  await availableFleet(sql, Number(args.drivers));
  const restaurants = await sql<{ id: string; lat: number; lon: number }[]>`
    select id, st_y(location::geometry) as lat, st_x(location::geometry) as lon from restaurants order by id`;
  const [customer] = await sql<{ id: string }[]>`select id from customers order by id limit 1`;
  const runs: Record<string, Record<string, number[]>> = {};
  let unassigned = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    for (const size of SIZES) {
      for (const [variant, mode] of Object.entries(VARIANTS)) {
        await sql.unsafe(`alter function assign_batch(uuid[], uuid[], int[]) set plan_cache_mode = ${mode}`);
        const r = await perOrder(size, round, restaurants, customer!.id);
        unassigned += ORDERS - r.assigned;
        ((runs[variant] ??= {})[size] ??= []).push(r.ms);
      }
    }
    console.error(`round ${round}/${ROUNDS} done`);
  }
  const stat = (xs: number[]) => { const s = spread(xs); return { min: +s.min.toFixed(3), median: +s.median.toFixed(3), max: +s.max.toFixed(3) }; };
  console.log(`\nassign_batch, ms per order, one connection, ${ORDERS} orders per measurement, min / median / max of ${ROUNDS} rounds`);
  console.log(`${"batch".padStart(6)} ${Object.keys(VARIANTS).map((v) => v.padStart(26)).join("")}`);
  for (const size of SIZES) {
    console.log(`${String(size).padStart(6)} ${Object.keys(VARIANTS).map((v) => { const s = stat(runs[v]![size]!); return `${s.min} / ${s.median} / ${s.max}`.padStart(26); }).join("")}`);
  }
  const stem = resultStem("dispatch-plans");
  const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim();
  await Bun.write(`${stem}.json`, JSON.stringify({
    parameters: { drivers: Number(args.drivers), rounds: ROUNDS, orders: ORDERS, sizes: SIZES, candidates: 8 },
    machine: { cpus: navigator.hardwareConcurrency, commit },
    unassigned,
    results: Object.entries(runs).flatMap(([variant, bySize]) =>
      Object.entries(bySize).map(([size, ms]) => ({ variant, batch: Number(size), msPerOrder: ms, ...stat(ms) }))),
  }, null, 2));
  console.log(`\nwritten ${stem}.json`);
} finally {
  reader.close();
  await sql.end({ timeout: 5 });
  await scratch.drop();
}
