/**
 * `bun run bench:dispatch`: the nearest-available-driver search of 0005 (k = 5 rings, sort by distance) against 0011's
 * (best-first over H3 cells with distance bounds), on 100,000 generated drivers in a scratch database, with all of
 * them available and with 20%:
 *   - exactness: for each of 1,000 random points, the driver found (widening as the API does) is the one an
 *     exhaustive scan of every available driver finds, nearest by `<->` (sphere distance), ties to the smaller id;
 *   - sequential latency of one search, p50 / p99, measured by the client (one round trip included; the round trip
 *     of `select 1` is measured alongside, as the floor);
 *   - throughput of searches with 16 concurrent callers;
 *   - end-to-end assignments/s with 16 concurrent callers: confirmed orders at generated restaurants, each assigned
 *     by assign_nearest_driver (lock, re-check, order transition), as the API calls it; checked afterwards: no
 *     driver holds two orders, no order two drivers; and, as the floor the search leaves, order_transition (0003)
 *     with the driver given ("transition only").
 *   - 0017's way, as the API runs it by default: its in-memory index of available drivers (re-read every 2 s,
 *     running during the run) proposes the nearest 8, the database ranks them (nearest_among) — exactness against
 *     the same exhaustive scan, latency, searches/s; and the index's own answer alone (its nearest proposal, in
 *     memory, before the database's re-check: exactness and latency) — and assigns through the API's dispatcher
 *     (batches, 2 in flight; T1409 falls back to 0011's search), with 16 and with 64 concurrent callers; and the
 *     index's feed: one read's wall time, the API's CPU and the database backend's CPU (from /proc), per read.
 * Every speed figure is min / median / max of --runs runs. The ingest side: 0011 adds nothing to driver_state (no
 * index, column or trigger) and leaves apply_position_batch as it was; the run records both, for the result file.
 * Prints a table, writes JSON and an SVG plot under bench/results/. Not a test: nothing here asserts a speed.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  areaArguments,
  arrayLiteral,
  assignInWideningAreas,
  bigintArray,
  FALLBACK_REACH_M,
  type SearchArea,
  SEARCH_RINGS,
  searchAreaCache,
  searchAreas,
} from "../api/modules/orders/assignment.ts";
import { assignProposed, createDispatcher, type DispatchDeps } from "../api/modules/orders/dispatcher.ts";
import { createDriverIndex, type DriverIndex, readerInWorker } from "../api/modules/orders/driver-index.ts";
import { generateData } from "../db/generate.ts";
import { cityByName, type LatLon, randomPoint } from "../lib/cities.ts";
import { config } from "../lib/config.ts";
import { connectDatabase, type Sql } from "../lib/db.ts";
import { cellOf, cellsAround } from "../lib/h3.ts";
import { createRng } from "../lib/random.ts";
import { type PlotSpec, resultStem, writePlot } from "./support/plot.ts";
import { createScratchDatabase } from "../tools/scratch-database.ts";

const { values: args } = parseArgs({
  options: {
    drivers: { type: "string", default: "100000" },
    restaurants: { type: "string", default: "2000" },
    points: { type: "string", default: "1000" },
    runs: { type: "string", default: "3" },
    concurrency: { type: "string", default: "16" },
    /** The second, larger number of callers for 0017's assignments (the dispatcher batches what waits). */
    "wide-concurrency": { type: "string", default: "64" },
    // Searches per throughput measurement, and orders per assignment measurement (the old way is ~100x slower).
    "new-queries": { type: "string", default: "8000" },
    "old-queries": { type: "string", default: "800" },
    "new-orders": { type: "string", default: "4000" },
    "old-orders": { type: "string", default: "400" },
    seed: { type: "string", default: "16" },
    /** The index's proposals per order and the dispatcher's batches at once; default: the API's (lib/config.ts). */
    candidates: { type: "string", default: String(config().dispatchCandidates) },
    "in-flight": { type: "string", default: String(config().dispatchBatchesInFlight) },
  },
});
const CANDIDATES = Number(args.candidates);
const IN_FLIGHT = Number(args["in-flight"]);
const DRIVERS = Number(args.drivers);
const POINTS = Number(args.points);
const RUNS = Number(args.runs);
const CONCURRENCY = Number(args.concurrency);
const WIDE_CONCURRENCY = Number(args["wide-concurrency"]);
const INDEX_METHOD = "index (0017)";
/** The index's own answer, in the API's memory: its nearest proposal, before the database's re-check. */
const MEMORY_METHOD = "index in memory";
const SEED = Number(args.seed);
const MIXES = [
  { name: "all available", share: 1 },
  { name: "20% available", share: 0.2 },
] as const;
const OLD_RINGS = [5, 15] as const; // 0005's areas, as the API passed them before 0011
const RESOLUTION = config().h3Resolution;
const city = cityByName("nyc");

// A scratch database, as bench/db.ts: the demo data is never touched.
const scratch = await createScratchDatabase(`bench_dispatch_${Date.now()}`);
const dbName = scratch.name;
const sql = connectDatabase(scratch.url, { max: Math.max(CONCURRENCY, WIDE_CONCURRENCY), application: "bench-dispatch" });
// Finds the index reader's backend (application api-dispatch-index), whose CPU /proc tells.
const indexSql = connectDatabase(scratch.url, { max: 1, application: "bench-dispatch-feed" });

interface Point extends LatLon {
  oldCells: bigint[];
  areas: (SearchArea | null)[];
}
interface Row {
  mix: string;
  method: "old (0005)" | "new (0011)" | "select 1" | "transition only" | typeof INDEX_METHOD | typeof MEMORY_METHOD;
  metric: "p50 ms" | "p99 ms" | "searches/s" | "assignments/s" | "assignments/s, wide" | "feed read ms" |
    "feed API CPU ms" | "feed PG CPU ms";
  runs: number[];
}

async function main() {
  console.error(`generating ${DRIVERS} drivers and ${args.restaurants} restaurants in ${dbName}…`);
  await generateData(sql, {
    drivers: DRIVERS, restaurants: Number(args.restaurants), customers: 100, orders: 0, mode: "truncate",
    seed: SEED, city, online: true, progress: false,
  });
  // Every driver fresh for the whole run: generated drivers have no received_at, and the search skips stale ones.
  await sql`update tracking_settings set offline_after_s = 86400 where id = 1`;
  await sql`update driver_state set received_at = now()`;
  const [customer] = await sql<{ id: string }[]>`select id from customers limit 1`;
  const restaurants = await sql<{ id: string; lat: number; lon: number }[]>`
    select id, st_y(location::geometry) as lat, st_x(location::geometry) as lon from restaurants order by id`;

  const rng = createRng(SEED, "dispatch-points");
  const jsStarted = performance.now();
  const points: Point[] = Array.from({ length: POINTS }, () => {
    const p = randomPoint(city, rng);
    return { ...p, oldCells: cellsAround(cellOf(p.lat, p.lon, RESOLUTION), OLD_RINGS[0]), areas: searchAreas(p.lat, p.lon, RESOLUTION) };
  });
  const jsMsPerPoint = (performance.now() - jsStarted) / POINTS;

  const rows: Row[] = [];
  const record = (mix: string, method: Row["method"], metric: Row["metric"], value: number) => {
    let row = rows.find((r) => r.mix === mix && r.method === method && r.metric === metric);
    if (!row) rows.push((row = { mix, method, metric, runs: [] }));
    row.runs.push(value);
  };
  const exactness: Record<string, { points: number; same: number; found: number; byArea: Record<string, number> }> = {};
  const invariants: Record<string, { orders: number; assigned: number; sharedDrivers: number; doubleOrders: number }[]> = {};
  /** Per index-assignment phase: what else happened meanwhile (docs/dispatch.md reads a slow run with these). */
  const conditions: Record<string, unknown>[] = [];

  for (const mix of MIXES) {
    await setMix(mix.share);
    exactness[mix.name] = await checkExactness(points);
    console.error(`${mix.name}: ${exactness[mix.name]!.same}/${POINTS} points give the exhaustive scan's driver`);
    const areasAround = searchAreaCache(RESOLUTION);
    for (const r of restaurants) for (const area of areasAround(r.lat, r.lon).slice(0, 1)) area(); // the API's warm cache
    // As the API runs it: read, decoded and indexed on a worker thread with its own connection.
    const index = createDriverIndex(readerInWorker(scratch.url), {
      refreshMs: 2_000, candidates: CANDIDATES, maxDistanceKm: FALLBACK_REACH_M / 1000,
    });
    await index.refresh();
    const indexExactness = await checkIndexExactness(points, index);
    exactness[`${mix.name}, ${INDEX_METHOD}`] = indexExactness.checked;
    exactness[`${mix.name}, ${MEMORY_METHOD}`] = indexExactness.inMemory;
    console.error(`${mix.name}: ${indexExactness.checked.same}/${POINTS} points: the index's proposals give the exhaustive scan's driver; its own nearest: ${indexExactness.inMemory.same}/${POINTS}`);
    for (let run = 1; run <= RUNS; run++) {
      const feed = await measureFeed(index);
      record(mix.name, INDEX_METHOD, "feed read ms", feed.wall);
      record(mix.name, INDEX_METHOD, "feed API CPU ms", feed.api);
      record(mix.name, INDEX_METHOD, "feed PG CPU ms", feed.pg);
      index.start();
      {
        await indexSearch(points[0]!, index);
        const latencies: number[] = [];
        for (const p of points) {
          const t = performance.now();
          await indexSearch(p, index);
          latencies.push(performance.now() - t);
        }
        latencies.sort((a, b) => a - b);
        record(mix.name, INDEX_METHOD, "p50 ms", percentile(latencies, 0.5));
        record(mix.name, INDEX_METHOD, "p99 ms", percentile(latencies, 0.99));
        record(mix.name, INDEX_METHOD, "searches/s", await throughput(Number(args["new-queries"]), (i) => indexSearch(points[i % POINTS]!, index)));
        // The search alone, as the API answers it before the database re-checks: the same points, back to back,
        // the index re-reading every 2 s meanwhile (its reads on a worker thread, as in the API).
        const inMemory: number[] = [];
        for (const p of points) {
          const t = performance.now();
          index.propose(p.lat, p.lon);
          inMemory.push(performance.now() - t);
        }
        inMemory.sort((a, b) => a - b);
        record(mix.name, MEMORY_METHOD, "p50 ms", percentile(inMemory, 0.5));
        record(mix.name, MEMORY_METHOD, "p99 ms", percentile(inMemory, 0.99));
        for (const [metric, callers] of [["assignments/s", CONCURRENCY], ["assignments/s, wide", WIDE_CONCURRENCY]] as const) {
          const n = Number(args["new-orders"]);
          const orders = await placeOrders(n, customer!.id, restaurants, run);
          await index.refresh();
          const dispatcher = createDispatcher(sql, { inFlight: IN_FLIGHT });
          const before = await serverCounters();
          fallbacks = 0;
          const rate = await throughput(n, (i) => indexAssign(orders[i]!, { index, dispatcher }, areasAround), callers);
          record(mix.name, INDEX_METHOD, metric, rate);
          conditions.push({ mix: mix.name, run, callers, assignmentsPerS: Math.round(rate), fallbacks,
                            batches: dispatcher.stats().batches, lockedRetries: dispatcher.stats().lockedRetries,
                            ...counterDelta(before, await serverCounters()) });
          (invariants[mix.name] ??= []).push(await checkAndReset(n));
        }
      }
      index.stop();
      const floor: number[] = [];
      for (let i = 0; i < POINTS; i++) {
        const t = performance.now();
        await sql`select 1`;
        floor.push(performance.now() - t);
      }
      floor.sort((a, b) => a - b);
      record(mix.name, "select 1", "p50 ms", percentile(floor, 0.5));
      record(mix.name, "select 1", "p99 ms", percentile(floor, 0.99));
      for (const [method, search] of [["old (0005)", oldSearch], ["new (0011)", newSearch]] as const) {
        await search(points[0]!); // plans cached, as in a running API
        const latencies: number[] = [];
        for (const p of points) {
          const t = performance.now();
          await search(p);
          latencies.push(performance.now() - t);
        }
        latencies.sort((a, b) => a - b);
        record(mix.name, method, "p50 ms", percentile(latencies, 0.5));
        record(mix.name, method, "p99 ms", percentile(latencies, 0.99));
        const n = Number(method === "old (0005)" ? args["old-queries"] : args["new-queries"]);
        record(mix.name, method, "searches/s", await throughput(n, (i) => search(points[i % POINTS]!)));
      }
      for (const method of ["old (0005)", "new (0011)"] as const) {
        const n = Number(method === "old (0005)" ? args["old-orders"] : args["new-orders"]);
        const orders = await placeOrders(n, customer!.id, restaurants, run);
        const assign = method === "old (0005)" ? oldAssign : (o: Order) => newAssign(o, areasAround);
        record(mix.name, method, "assignments/s", await throughput(n, (i) => assign(orders[i]!)));
        (invariants[mix.name] ??= []).push(await checkAndReset(n));
      }
      {
        // The floor the search leaves: 0003's order_transition with the driver given (no search), as many orders.
        const n = Number(args["new-orders"]);
        const orders = await placeOrders(n, customer!.id, restaurants, run);
        const free = await sql<{ driver_id: string }[]>`
          select driver_id from driver_state where status = 'available' and current_order_id is null
          order by driver_id limit ${n}`;
        record(mix.name, "transition only", "assignments/s", await throughput(Math.min(n, free.length), (i) =>
          sql`select id from order_transition(${orders[i]!.id}, 'assign', ${free[i]!.driver_id})`));
        await checkAndReset(n);
      }
      console.error(`${mix.name}: run ${run}/${RUNS} done; index assignments: ${conditions.filter((c) => c.mix === mix.name && c.run === run).map((c) => JSON.stringify(c)).join(" ")}`);
    }
    index.close();
  }

  const ingest = await ingestSide();
  printTable(rows, jsMsPerPoint);
  const stem = resultStem("dispatch");
  const [machine] = await sql<{ version: string }[]>`select version()`;
  const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim();
  await Bun.write(`${stem}.json`, JSON.stringify({
    parameters: { drivers: DRIVERS, restaurants: Number(args.restaurants), points: POINTS, runs: RUNS,
                  concurrency: CONCURRENCY, wideConcurrency: WIDE_CONCURRENCY, indexRefreshMs: 2_000, candidates: CANDIDATES, inFlight: IN_FLIGHT, resolution: RESOLUTION, seed: SEED, mixes: MIXES,
                  queries: { old: Number(args["old-queries"]), new: Number(args["new-queries"]) },
                  orders: { old: Number(args["old-orders"]), new: Number(args["new-orders"]) } },
    machine: { postgres: machine?.version, cpus: navigator.hardwareConcurrency, commit },
    jsSearchAreaMsPerPoint: +jsMsPerPoint.toFixed(3),
    exactness, invariants, conditions, ingest,
    results: rows.map((r) => ({ ...r, ...summary(r.runs) })),
  }, null, 2));
  await writePlot(`${stem}.svg`, plotSpec(rows));
  console.log(`\nwritten ${stem}.json and ${stem}.svg`);
}

/** `share` of the drivers available (a fixed pseudo-random subset), the rest offline; statistics refreshed. */
async function setMix(share: number) {
  await sql`update driver_state set current_order_id = null,
              status = case when ('x' || substr(md5(driver_id::text), 1, 6))::bit(24)::int < ${Math.round(share * 2 ** 24)}
                            then 'available' else 'offline' end::driver_status`;
  await sql`vacuum analyze driver_state`;
}

const geography = (p: LatLon) => sql`st_setsrid(st_makepoint(${p.lon}, ${p.lat}), 4326)::geography`;
const fresh = sql`now() - make_interval(secs => (select offline_after_s from tracking_settings where id = 1))`;

/** 0005's candidate query, verbatim but for the parameters: k = 5 rings, every candidate sorted by distance. */
async function oldSearch(p: Point): Promise<string | undefined> {
  const rows = await sql<{ driver_id: string }[]>`
    select ds.driver_id from driver_state ds
    where ds.status = 'available' and ds.current_order_id is null and ds.received_at > ${fresh}
      and ds.h3 = any (${bigintArray(sql, p.oldCells)})
    order by ds.position <-> ${geography(p)} limit 20`;
  return rows[0]?.driver_id;
}

/** 0011's search, widening as the API does. */
async function newSearch(p: Point): Promise<{ driver_id: string; area: number } | undefined> {
  for (const [i, area] of p.areas.entries()) {
    const [row] = await sql<{ driver_id: string }[]>`
      select driver_id from nearest_available_driver(${geography(p)}, ${areaArguments(sql, area)})`;
    if (row) return { driver_id: row.driver_id, area: i };
  }
  return undefined;
}

/**
 * The exhaustive answer, computed here rather than by 1,000 scans of 100,000 rows: every available, free, fresh
 * driver's great-circle distance from the point (PostgreSQL's sphere), and the drivers within a micrometre-per-metre
 * of the nearest ranked by PostgreSQL itself (`<->`, then id), so near-ties are broken exactly as the search does.
 */
async function exhaustiveNearest(points: Point[]): Promise<(string | undefined)[]> {
  const drivers = await sql<{ driver_id: string; lat: number; lon: number }[]>`
    select driver_id, lat, lon from driver_state
    where status = 'available' and current_order_id is null and received_at > ${fresh}`;
  const toRad = Math.PI / 180;
  const lat = Float64Array.from(drivers, (d) => d.lat * toRad);
  const lon = Float64Array.from(drivers, (d) => d.lon * toRad);
  const cosLat = lat.map(Math.cos);
  const answers: (string | undefined)[] = [];
  for (const p of points) {
    const pLat = p.lat * toRad;
    const pLon = p.lon * toRad;
    const pCos = Math.cos(pLat);
    // Haversine's h grows with the distance: rank on h, convert the best to metres once.
    const h = new Float64Array(drivers.length);
    let best = Infinity;
    for (let i = 0; i < drivers.length; i++) {
      h[i] = Math.sin((lat[i]! - pLat) / 2) ** 2 + pCos * cosLat[i]! * Math.sin((lon[i]! - pLon) / 2) ** 2;
      if (h[i]! < best) best = h[i]!;
    }
    const metres = (x: number) => 2 * 6_371_008.7714 * Math.asin(Math.sqrt(x));
    const bestM = metres(best);
    const near: string[] = [];
    for (let i = 0; i < drivers.length; i++) if (metres(h[i]!) <= bestM * (1 + 1e-6) + 1e-6) near.push(drivers[i]!.driver_id);
    if (near.length <= 1) {
      answers.push(near[0]);
      continue;
    }
    const [tie] = await sql<{ driver_id: string }[]>`
      select driver_id from driver_state where driver_id = any (${`{${near.join(",")}}`}::uuid[])
      order by position <-> ${geography(p)}, driver_id limit 1`;
    answers.push(tie?.driver_id);
  }
  return answers;
}

async function checkExactness(points: Point[]) {
  const truth = await exhaustiveNearest(points);
  let same = 0;
  let found = 0;
  const byArea: Record<string, number> = {};
  for (const [i, p] of points.entries()) {
    const got = await newSearch(p);
    if (got) {
      found++;
      const label = got.area < p.areas.length - 1 ? `rings ${SEARCH_RINGS[got.area]}` : "exhaustive";
      byArea[label] = (byArea[label] ?? 0) + 1;
    }
    if (got?.driver_id === truth[i]) same++;
  }
  return { points: points.length, same, found, byArea };
}

/** Operations per second with `callers` (CONCURRENCY) callers taking the next index until n are done. */
async function throughput(n: number, op: (i: number) => Promise<unknown>, callers = CONCURRENCY): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: callers }, async () => {
    for (let i = next++; i < n; i = next++) await op(i);
  }));
  return n / ((performance.now() - started) / 1000);
}

interface Order {
  id: string;
  lat: number;
  lon: number;
}

/** n confirmed orders, each at a random generated restaurant. */
async function placeOrders(n: number, customerId: string, restaurants: { id: string; lat: number; lon: number }[], run: number) {
  const rng = createRng(SEED + run, "dispatch-orders");
  const at = Array.from({ length: n }, () => rng.pick(restaurants));
  const byId = new Map(restaurants.map((r) => [r.id, r]));
  const placed = await sql<{ id: string; restaurant_id: string }[]>`
    insert into orders (customer_id, restaurant_id, delivery_location, status, confirmed_at)
    select ${customerId}, r, (select location from restaurants where id = r), 'confirmed', now()
    from unnest(${at.map((r) => r.id)}::uuid[]) with ordinality as x(r, i) order by i
    returning id, restaurant_id`;
  return placed.map((o) => ({ id: o.id, lat: byId.get(o.restaurant_id)!.lat, lon: byId.get(o.restaurant_id)!.lon }));
}

/** The API before 0011: k = 5, then 15 rings, then every driver within 15 km, each its own statement. */
async function oldAssign(order: Order) {
  const cell = cellOf(order.lat, order.lon, RESOLUTION);
  const areas = [...OLD_RINGS.map((k) => cellsAround(cell, k)), null];
  return assignInWideningAreas(areas, (cells) =>
    sql`select id from assign_nearest_driver(${order.id}, ${cells === null ? null : bigintArray(sql, cells)})`);
}

/** The API now: 0011's assignment over the cached areas around the restaurant. */
async function newAssign(order: Order, areasAround: ReturnType<typeof searchAreaCache>) {
  return assignInWideningAreas(areasAround(order.lat, order.lon), (area) =>
    sql`select id from assign_nearest_driver(${order.id}, ${areaArguments(sql, area)})`);
}

/** 0017's search as the API runs it: the index's 8 nearest, ranked by the database on their current rows. */
const indexSearch = (p: LatLon, index: DriverIndex) => rankProposed(p, index.propose(p.lat, p.lon));

/** The database's pick among the index's proposals: nearest_among on their current rows. */
async function rankProposed(p: LatLon, proposed: string[] | undefined): Promise<string | undefined> {
  if (!proposed || proposed.length === 0) return undefined;
  const [row] = await sql<{ driver_id: string }[]>`
    select driver_id from nearest_among(${geography(p)}, ${arrayLiteral(proposed)}::uuid[])`;
  return row?.driver_id;
}

async function checkIndexExactness(points: Point[], index: DriverIndex) {
  const truth = await exhaustiveNearest(points);
  await index.refresh(); // the truth takes seconds: a snapshot older than three refreshes would propose nothing
  const checked = { points: points.length, same: 0, found: 0, byArea: {} };
  const inMemory = { points: points.length, same: 0, found: 0, byArea: {} };
  for (const [i, p] of points.entries()) {
    const proposed = index.propose(p.lat, p.lon);
    if (proposed?.[0]) inMemory.found++;
    if (proposed?.[0] === truth[i]) inMemory.same++;
    const got = await rankProposed(p, proposed);
    if (got) checked.found++;
    if (got === truth[i]) checked.same++;
  }
  return { checked, inMemory };
}

/** Orders of the current index-assignment phase that fell back to 0011's search (the index's proposals all taken). */
let fallbacks = 0;

/** 0017's assignment as the API's service runs it: propose, batch, fall back to 0011's search on T1409. */
async function indexAssign(order: Order, dispatch: DispatchDeps, areasAround: ReturnType<typeof searchAreaCache>) {
  const driver = await assignProposed(dispatch, order.id, order.lat, order.lon);
  if (driver) return driver;
  fallbacks++;
  return newAssign(order, areasAround);
}

/**
 * What the server did besides the phase measured, to explain a slow run: checkpoints, autovacuum and autoanalyze runs
 * on the tables an assignment writes, WAL written (statistics as the cumulative views report them).
 */
async function serverCounters() {
  const [row] = await sql<{ checkpoints: number; autovacuums: number; autoanalyzes: number; walBytes: number }[]>`
    select (select checkpoints_timed + checkpoints_req from pg_stat_bgwriter)::int as checkpoints,
           (select sum(autovacuum_count) from pg_stat_user_tables
             where relname in ('driver_state', 'orders', 'state_history'))::int as autovacuums,
           (select sum(autoanalyze_count) from pg_stat_user_tables
             where relname in ('driver_state', 'orders', 'state_history'))::int as autoanalyzes,
           (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8 as "walBytes"`;
  return row!;
}

function counterDelta(a: Awaited<ReturnType<typeof serverCounters>>, b: Awaited<ReturnType<typeof serverCounters>>) {
  return { checkpoints: b.checkpoints - a.checkpoints, autovacuums: b.autovacuums - a.autovacuums,
           autoanalyzes: b.autoanalyzes - a.autoanalyzes, walMB: +((b.walBytes - a.walBytes) / 2 ** 20).toFixed(1) };
}

/**
 * One read of the index's feed: wall time, this process's CPU (every thread: the reader thread decodes and builds),
 * and the reader's database backend's CPU (/proc, in ticks).
 */
async function measureFeed(index: DriverIndex) {
  await index.refresh(); // its connection exists from the first read on
  const [backend] = await indexSql<{ pid: number }[]>`
    select pid from pg_stat_activity where application_name = 'api-dispatch-index' and datname = current_database()`;
  const ticks = () => {
    const fields = readFileSync(`/proc/${backend!.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return Number(fields[11]) + Number(fields[12]); // utime + stime, after the command name
  };
  const tick = 1000 / 100; // ms per clock tick (CLK_TCK is 100 on Linux)
  const pgBefore = ticks();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const reads = 5;
  for (let i = 0; i < reads; i++) await index.refresh();
  const wall = (performance.now() - started) / reads;
  const cpu = process.cpuUsage(cpuBefore);
  return { wall, api: (cpu.user + cpu.system) / 1000 / reads, pg: ((ticks() - pgBefore) * tick) / reads };
}

/** The invariants after a burst of concurrent assignments, then every order gone and its driver available again. */
async function checkAndReset(orders: number) {
  const [check] = await sql<{ assigned: number; shared: number; double: number }[]>`
    select (select count(*) from orders where status = 'assigned')::int as assigned,
           (select count(*) from (select driver_id from orders where status = 'assigned'
                                  group by driver_id having count(*) > 1) x)::int as shared,
           (select count(*) from (select current_order_id from driver_state where current_order_id is not null
                                  group by current_order_id having count(*) > 1) x)::int as double`;
  await sql`update driver_state set status = 'available', current_order_id = null where current_order_id is not null`;
  await sql`delete from orders`;
  await sql`delete from state_history`;
  return { orders, assigned: check!.assigned, sharedDrivers: check!.shared, doubleOrders: check!.double };
}

/** What 0011 changed on the ingest side: the indexes and triggers of driver_state and the apply function's text. */
async function ingestSide() {
  const [row] = await sql<{ indexes: string[]; triggers: string[]; apply_md5: string; apply_mentions_0011: boolean }[]>`
    select (select array_agg(indexdef order by indexname) from pg_indexes where tablename = 'driver_state') as indexes,
           (select coalesce(array_agg(tgname::text), '{}') from pg_trigger
             where tgrelid = 'driver_state'::regclass and not tgisinternal) as triggers,
           md5(pg_get_functiondef('apply_position_batch'::regproc)) as apply_md5,
           pg_get_functiondef('apply_position_batch'::regproc) like '%nearest%' as apply_mentions_0011`;
  return {
    applyPathChanged: false,
    note: "0011 and 0017 create functions and their grants: no DDL on driver_state, and apply_position_batch is not redefined",
    driverStateIndexes: row!.indexes, driverStateTriggers: row!.triggers, applyPositionBatchMd5: row!.apply_md5,
  };
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

function summary(runs: number[]) {
  const s = [...runs].sort((a, b) => a - b);
  const round = (x: number) => (x >= 100 ? Math.round(x) : +x.toFixed(3));
  return { min: round(s[0]!), median: round(s[Math.floor((s.length - 1) / 2)]!), max: round(s[s.length - 1]!) };
}

function printTable(rows: Row[], jsMsPerPoint: number) {
  console.log(`\n${DRIVERS} drivers, ${POINTS} points, ${CONCURRENCY} concurrent callers, min / median / max of ${RUNS} runs`);
  console.log(`${"mix".padEnd(15)} ${"method".padEnd(15)} ${"metric".padEnd(14)} ${"min".padStart(10)} ${"median".padStart(10)} ${"max".padStart(10)}`);
  for (const r of rows) {
    const s = summary(r.runs);
    console.log(`${r.mix.padEnd(15)} ${r.method.padEnd(15)} ${r.metric.padEnd(14)} ${String(s.min).padStart(10)} ${String(s.median).padStart(10)} ${String(s.max).padStart(10)}`);
  }
  console.log(`h3-js search areas (rings 2 and 8) per point, uncached: ${jsMsPerPoint.toFixed(3)} ms`);
}

/** Latency and throughput (log scales), old against new, per mix; bars are medians, rules the min to max. */
function plotSpec(rows: Row[]): PlotSpec {
  const values = rows.map((r) => ({ mix: r.mix, method: r.method, metric: r.metric, ...summary(r.runs) }));
  const panel = (metrics: string[], title: string): PlotSpec => ({
    title,
    data: { values },
    transform: [{ filter: { field: "metric", oneOf: metrics } }],
    facet: { column: { field: "metric", type: "nominal", title: null, sort: metrics } },
    spec: {
      width: 150,
      height: 220,
      encoding: {
        x: { field: "mix", type: "nominal", title: null },
        xOffset: { field: "method" },
      },
      layer: [
        {
          mark: "bar",
          encoding: {
            y: { field: "median", type: "quantitative", title: null, scale: { type: "log" } },
            color: { field: "method", type: "nominal" },
          },
        },
        { mark: "rule", encoding: { y: { field: "min", type: "quantitative" }, y2: { field: "max" } } },
      ],
    },
    resolve: { scale: { y: "independent" } },
  });
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: `Nearest available driver, ${DRIVERS} drivers (bars: median of ${RUNS} runs; rules: min to max)`,
    vconcat: [
      panel(["p50 ms", "p99 ms"], "search latency, ms"),
      panel(["searches/s", "assignments/s", "assignments/s, wide"], `throughput, ${CONCURRENCY} concurrent callers (wide: ${WIDE_CONCURRENCY})`),
    ],
  } as PlotSpec;
}

try {
  await main();
} finally {
  await sql.end({ timeout: 5 });
  await indexSql.end({ timeout: 5 });
  await scratch.drop();
}
