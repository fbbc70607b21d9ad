/**
 * The API's dispatch as it runs beside ingest (issue 16's ingest-side cost), in a process of its own so its CPU is
 * counted apart: the in-memory index of available drivers re-read every DISPATCH_INDEX_REFRESH_MS, within
 * DISPATCH_INDEX_READ_PERCENT of the time (on a worker thread, as in the API), and, with --orders-per-s N, N orders
 * a second placed at random restaurants, confirmed and assigned by the API's own orders service (the index's
 * proposals through the dispatcher's batches; T1409 falls back to 0011's exact search). Started by
 * `bench:e2e --dispatch-orders-per-s N` against its scratch database; prints one JSON line of counts on SIGTERM,
 * then exits.
 *
 *   bun bench/dispatch/beside-ingest.ts --database-url URL [--orders-per-s 20]
 */
import { parseArgs } from "node:util";
import { FALLBACK_REACH_M } from "../../api/modules/orders/assignment.ts";
import { createDispatcher } from "../../api/modules/orders/dispatcher.ts";
import { createDriverIndex, readerInWorker } from "../../api/modules/orders/driver-index.ts";
import { ordersService } from "../../api/modules/orders/service.ts";
import { config } from "../../lib/config.ts";
import { connectDatabase } from "../../lib/db.ts";
import { createRng } from "../../lib/random.ts";

const { values: args } = parseArgs({
  options: {
    "database-url": { type: "string" },
    "orders-per-s": { type: "string", default: "0" },
  },
});
const url = args["database-url"];
if (!url) throw new Error("--database-url is required");
const ORDERS_PER_S = Number(args["orders-per-s"]);
if (!(ORDERS_PER_S >= 0)) throw new Error(`--orders-per-s: ${args["orders-per-s"]} is not a rate`);

const settings = config();
const sql = connectDatabase(url, { max: 8, application: "bench-dispatch-beside-ingest" });
const reads = { ok: 0, failed: 0, drivers: 0 };
const reader = readerInWorker(url);
const index = createDriverIndex({
  read: () => reader.read().then((snapshot) => {
    reads.ok++;
    reads.drivers = snapshot.count;
    return snapshot;
  }),
  close: reader.close,
}, {
  refreshMs: settings.dispatchIndexRefreshMs,
  readShare: settings.dispatchIndexReadPercent / 100,
  candidates: settings.dispatchCandidates,
  maxDistanceKm: FALLBACK_REACH_M / 1000,
  onError: () => reads.failed++,
});
const service = ordersService(sql, undefined, {
  index,
  dispatcher: createDispatcher(sql, { inFlight: settings.dispatchBatchesInFlight }),
});
const restaurants = await sql<{ id: string }[]>`select id from restaurants order by id`;
const [customer] = await sql<{ id: string }[]>`select id from customers order by id limit 1`;
const rng = createRng(16, "beside-ingest");
const orders: { placed: number; assigned: number; refused: number; firstRefusal?: string } = {
  placed: 0, assigned: 0, refused: 0,
};

await index.refresh();
index.start();

async function placeAndAssign() {
  const r = rng.pick(restaurants);
  const [order] = await sql<{ id: string }[]>`
    insert into orders (customer_id, restaurant_id, delivery_location, status, confirmed_at)
    values (${customer!.id}, ${r.id}, (select location from restaurants where id = ${r.id}), 'confirmed', now())
    returning id`;
  orders.placed++;
  await service.assign(order!.id); // NO_DRIVER_AVAILABLE and any other refusal are counted by the caller
  orders.assigned++;
}

const inFlight = new Set<Promise<void>>();
let ticker: ReturnType<typeof setInterval> | undefined;
if (ORDERS_PER_S > 0) {
  const started = performance.now();
  let due = 0;
  ticker = setInterval(() => {
    const target = Math.floor(((performance.now() - started) / 1000) * ORDERS_PER_S);
    for (; due < target; due++) {
      const p = placeAndAssign()
        .catch((error: unknown) => {
          orders.refused++;
          orders.firstRefusal ??= error instanceof Error ? error.message : String(error);
        })
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
  }, 50);
}

console.log(JSON.stringify({ ready: true, drivers: reads.drivers }));
process.once("SIGTERM", async () => {
  clearInterval(ticker);
  await Promise.all(inFlight);
  index.close();
  const s = index.stats();
  console.log(JSON.stringify({ reads, lastReadMs: s.lastReadMs, orders }));
  await sql.end({ timeout: 5 });
  process.exit(0);
});
