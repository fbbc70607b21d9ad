/**
 * bench:trail — the position trail on disk, today's layout against the compact one (migration 0014), in one run.
 * A realistic day is generated in bulk in SQL (bench/trail/generate.sql), then, per run: loaded into the raw trail
 * in time order (as the apply writes it), measured (bytes per position, path queries), compacted (positions/s and
 * per CPU-second of the backend), measured again; then compacted again with lz4 TOAST compression (size and cost).
 * Its own database (trail_bench, dropped and migrated at start). Not a test.
 *
 *   bun run bench:trail -- [--drivers 100] [--runs 3] [--queries 200] [--step 500]
 *
 * Writes bench/results/trail-<time>.json and .svg (bytes per position by layout) and prints a table.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import postgres from "postgres";
import { migrateDatabase } from "../db/migrate.ts";
import { config } from "../lib/config.ts";
import { connectDatabase, type Sql } from "../lib/db.ts";
import { generateTrailDay } from "./trail/generate.ts";
import { brinSize, compactAll, latency, partitionedSize, setCompactCompression, type PathSample } from "./trail/measure.ts";
import { resultStem, writePlot } from "./support/plot.ts";

const { values: args } = parseArgs({
  options: {
    drivers: { type: "string", default: "100" },
    runs: { type: "string", default: "3" },
    queries: { type: "string", default: "200" },
    step: { type: "string", default: "500" },
  },
});
const DRIVERS = Number(args.drivers);
const RUNS = Number(args.runs);
const QUERIES = Number(args.queries);
const STEP = Number(args.step);
const DATABASE = "trail_bench";
const HOUR = 3_600_000;
const DRIVER_DAYS = 100_000 * 7; // the fleet the projection is for: 100,000 drivers, 7 days of retention
const FIXES_PER_DAY = 21_600; // one fix every 4 s

const log = (message: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor((s.length - 1) / 2)]!, max: s[s.length - 1]! };
};

async function freshBenchDatabase(): Promise<string> {
  const url = new URL(config().databaseUrl);
  url.pathname = "/postgres";
  const admin = postgres(url.toString(), { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${DATABASE} with (force)`);
  await admin.unsafe(`create database ${DATABASE}`);
  await admin.end();
  url.pathname = `/${DATABASE}`;
  await migrateDatabase(url.toString());
  return url.toString();
}

async function loadRaw(sql: Sql) {
  await sql`truncate position_trail, position_trail_compact`;
  await sql`insert into position_trail select * from trail_source order by recorded_at, driver_id`;
  await sql`vacuum analyze position_trail`;
}

async function oneRun(sql: Sql, day: Date, samples: { hour: PathSample[]; day: PathSample[] }, positions: number) {
  await setCompactCompression(sql, "pglz");
  await loadRaw(sql);
  const raw = await partitionedSize(sql, "position_trail");
  const brin = await brinSize(sql);
  const rawQuery = (s: PathSample) =>
    sql`select * from position_trail where driver_id = ${s.driverId} and recorded_at >= ${s.from}
        and recorded_at <= ${s.to} order by recorded_at`;
  const pathQuery = (s: PathSample) => sql`select * from driver_path(${s.driverId}, ${s.from}, ${s.to})`;
  const rawLatency = { hour: await latency(samples.hour, rawQuery), day: await latency(samples.day, rawQuery) };

  const before = new Date(day.getTime() + 24 * HOUR);
  const compaction = await compactAll(sql, before, STEP);
  const compact = await partitionedSize(sql, "position_trail_compact");
  const compactLatency = { hour: await latency(samples.hour, pathQuery), day: await latency(samples.day, pathQuery) };

  await sql`truncate position_trail_compact`;
  await setCompactCompression(sql, "lz4");
  await loadRaw(sql);
  const compactionLz4 = await compactAll(sql, before, STEP);
  const compactLz4 = await partitionedSize(sql, "position_trail_compact");

  const per = (bytes: number) => bytes / positions;
  return {
    bytesPerPosition: {
      raw: per(raw.total),
      rawHeapOnly: per(raw.heap),
      rawHeapPlusBrin: per(raw.heap + raw.toast + brin),
      compactPglz: per(compact.total),
      compactLz4: per(compactLz4.total),
    },
    sizes: { raw, brin, compact, compactLz4 },
    compaction,
    compactionLz4,
    latency: { raw: rawLatency, compactPglz: compactLatency },
  };
}

const sql = connectDatabase(await freshBenchDatabase(), { max: 2, application: "bench-trail" });
try {
  const { version } = (await sql<{ version: string }[]>`select version()`)[0]!;
  const day = new Date(Math.floor(Date.now() / (24 * HOUR)) * 24 * HOUR - 2 * 24 * HOUR);
  log(`generating ${DRIVERS} drivers x a day (${day.toISOString().slice(0, 10)}) in SQL`);
  const genStarted = performance.now();
  const positions = await generateTrailDay(sql, { drivers: DRIVERS, day });
  await sql`create unlogged table trail_source as select * from position_trail`;
  log(`${positions} positions in ${((performance.now() - genStarted) / 1000).toFixed(1)} s`);
  await sql`select ensure_compact_trail_partitions(${day}, ${day})`;

  // The same 200 random (driver, hour) and (driver, day) look-ups for every layout and run.
  const drivers = (await sql<{ id: string }[]>`select id from drivers order by id`).map((r) => r.id);
  const pick = <T>(xs: T[], i: number) => xs[(i * 7919) % xs.length]!;
  const samples = {
    hour: Array.from({ length: QUERIES }, (_, i) => {
      const from = new Date(day.getTime() + ((i * 37) % 24) * HOUR);
      return { driverId: pick(drivers, i), from, to: new Date(from.getTime() + HOUR - 1) };
    }),
    day: Array.from({ length: QUERIES }, (_, i) => ({
      driverId: pick(drivers, i),
      from: day,
      to: new Date(day.getTime() + 24 * HOUR - 1),
    })),
  };

  const runs: Awaited<ReturnType<typeof oneRun>>[] = [];
  for (let r = 1; r <= RUNS; r++) {
    log(`run ${r}/${RUNS}`);
    runs.push(await oneRun(sql, day, samples, positions));
    log(`run ${r}: ${JSON.stringify(runs[runs.length - 1]!.bytesPerPosition)}`);
  }

  const layouts = [
    { layout: "raw (today: heap + primary key)", key: "raw" },
    { layout: "raw heap only (no index)", key: "rawHeapOnly" },
    { layout: "raw heap + BRIN, no btree", key: "rawHeapPlusBrin" },
    { layout: "compact segments (pglz, shipped)", key: "compactPglz" },
    { layout: "compact segments (lz4)", key: "compactLz4" },
  ] as const;
  const bytes = layouts.map((l) => ({ layout: l.layout, ...stats(runs.map((x) => x.bytesPerPosition[l.key])) }));
  const lat = (pick: (x: (typeof runs)[number]) => number) => stats(runs.map(pick));
  const summary = {
    bytesPerPosition: bytes,
    compaction: {
      positionsPerSecond: stats(runs.map((x) => x.compaction.positionsPerSecond)),
      positionsPerCpuSecond: stats(runs.map((x) => x.compaction.positionsPerCpuSecond ?? NaN)),
      lz4PositionsPerCpuSecond: stats(runs.map((x) => x.compactionLz4.positionsPerCpuSecond ?? NaN)),
    },
    pathLatencyMs: {
      rawHour: { p50: lat((x) => x.latency.raw.hour.p50Ms), p99: lat((x) => x.latency.raw.hour.p99Ms) },
      rawDay: { p50: lat((x) => x.latency.raw.day.p50Ms), p99: lat((x) => x.latency.raw.day.p99Ms) },
      compactHour: { p50: lat((x) => x.latency.compactPglz.hour.p50Ms), p99: lat((x) => x.latency.compactPglz.hour.p99Ms) },
      compactDay: { p50: lat((x) => x.latency.compactPglz.day.p50Ms), p99: lat((x) => x.latency.compactPglz.day.p99Ms) },
    },
    applyCostPerPosition: "unchanged: the apply (0012) still writes the raw trail; compaction runs apart",
    fleetProjection: Object.fromEntries(
      layouts.map((l) => {
        const median = bytes.find((b) => b.layout === l.layout)!.median;
        return [l.key, { gbFor100kDrivers7Days: (median * FIXES_PER_DAY * DRIVER_DAYS) / 1e9 }];
      }),
    ),
  };
  const result = {
    benchmark: "trail",
    at: new Date().toISOString(),
    postgres: version,
    config: { drivers: DRIVERS, positions, runs: RUNS, queries: QUERIES, driversPerStep: STEP, day: day.toISOString() },
    summary,
    runs,
  };

  const stem = resultStem("trail");
  writeFileSync(`${stem}.json`, JSON.stringify(result, null, 2));
  await writePlot(`${stem}.svg`, {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: `Trail bytes per position on disk (heap + indexes + TOAST), ${positions.toLocaleString("en")} positions, ${RUNS} runs`,
    width: 520,
    height: 180,
    data: { values: bytes },
    layer: [
      { mark: "bar", encoding: { y: { field: "layout", type: "nominal", sort: null, title: null }, x: { field: "median", type: "quantitative", title: "bytes per position (median; rule: min-max)" } } },
      { mark: { type: "rule" }, encoding: { y: { field: "layout", type: "nominal", sort: null }, x: { field: "min", type: "quantitative" }, x2: { field: "max" } } },
      { mark: { type: "text", align: "left", dx: 4 }, encoding: { y: { field: "layout", type: "nominal", sort: null }, x: { field: "max", type: "quantitative" }, text: { field: "median", type: "quantitative", format: ".1f" } } },
    ],
  });

  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
  const mmm = (s: { min: number; median: number; max: number }) => `${f(s.min)} / ${f(s.median)} / ${f(s.max)}`;
  console.log(`\nbench:trail — ${positions} positions (${DRIVERS} drivers x 1 day), ${RUNS} runs, min / median / max\n`);
  console.log("| layout | bytes per position | 100k drivers x 7 days |\n|---|---|---|");
  for (const l of layouts) {
    const b = bytes.find((x) => x.layout === l.layout)!;
    console.log(`| ${l.layout} | ${mmm(b)} | ${(summary.fleetProjection[l.key]!.gbFor100kDrivers7Days).toFixed(0)} GB |`);
  }
  console.log(`\ncompaction: ${mmm(summary.compaction.positionsPerSecond)} positions/s wall, ` +
    `${mmm(summary.compaction.positionsPerCpuSecond)} positions per backend CPU-second (lz4: ${mmm(summary.compaction.lz4PositionsPerCpuSecond)})`);
  console.log("\n| path query (ms) | p50 | p99 |\n|---|---|---|");
  for (const [name, v] of Object.entries(summary.pathLatencyMs)) console.log(`| ${name} | ${mmm(v.p50)} | ${mmm(v.p99)} |`);
  console.log(`\n${stem}.json\n${stem}.svg`);
} finally {
  await sql.end();
}
