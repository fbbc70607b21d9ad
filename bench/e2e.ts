/**
 * `bun run bench:e2e [-- --rates 25000,50000 --seconds 60 --drivers 100000 --workers 1 --bridges 1 --form json]`
 *   --form: the phones' payload, json (the default, as the figures before 2026-12-01), compact or binary (the form the
 *   project's phone client sends, lib/position-binary.ts).
 * `bun run bench:e2e -- --fleet-mix 0.2 --drivers 20000 [--seconds 60]`: the fleet as the reporting modes shape it
 *   (issue #11): that fraction of drivers watched (live: one fix per message every --fix-every-s, 4 s), the rest
 *   available (idle: --idle-batch fixes, 7, per message every --idle-every-s, 30 s); --rates is then ignored (the
 *   offered rate follows from the mix). Compare with `--batch 4 --rates <drivers / 4>`: every driver every 4 s, in
 *   messages of 4 fixes (the simulator's fixed batching before the modes).
 * `bun run bench:e2e -- --rates 10000 --batch 4 --dispatch-orders-per-s 20`: with the API's dispatch running beside
 *   ingest in its own process (bench/dispatch/beside-ingest.ts: the index of available drivers re-read as the API
 *   does, and 20 orders a second assigned through it), counted in the server's CPU: issue 16's ingest-side cost,
 *   against the same command without the flag.
 *
 * The whole ingest path on this machine: a simulated fleet publishes over MQTT at a fixed offered rate; bridges
 * (Node) forward to Kafka; position workers (Node) apply to PostGIS. For each rate it reports the sustained applied
 * rate, freshness p50/p95/p99 (device time → committed in the database, from the workers' histograms: per position,
 * and per message from its newest position, the phone's send), consumer lag
 * over time, and CPU and RSS per process. Needs `bin/stack up`; uses its own database, topics and MQTT topic root,
 * so a running demo is not disturbed. Prints a table and writes JSON under bench/results/. Not a test.
 */
import { parseArgs } from "node:util";
import mqtt from "mqtt";
import { generateData, readDrivers } from "../db/generate.ts";
import { config } from "../lib/config.ts";
import { connectDatabase } from "../lib/db.ts";
import { startFleet } from "../sim/fleet.ts";
import { parsePayloadForm } from "../sim/payload.ts";
import { startNodeWorker, type WorkerProcess } from "../tools/node-workers.ts";
import { benchPipeline } from "../tools/pipeline.ts";
import { serviceUrl } from "../tools/service-url.ts";
import { createScratchDatabase } from "../tools/scratch-database.ts";
import { registerUpkeepJobs } from "../db/upkeep-jobs.ts";
import { CLK_TCK, pidsOf, procSample } from "./support/process-stats.ts";
import { quantile, scrape } from "./support/prometheus.ts";
import { prefillRawTrail } from "./trail/prefill.ts";
import { resultStem, writePlot, type PlotSpec } from "./support/plot.ts";
import { partitionedSize } from "./trail/measure.ts";
import { databaseWindow, sampleDatabase, type DatabaseSample } from "./support/steady-state.ts";
import type { RateResult, WindowResult } from "./support/e2e-result.ts";

const { values: args } = parseArgs({
  options: {
    rates: { type: "string", default: "25000,50000" },
    seconds: { type: "string", default: "60" },
    drivers: { type: "string", default: "100000" },
    workers: { type: "string", default: "1" },
    bridges: { type: "string", default: "1" },
    batch: { type: "string", default: "1" },
    /** The phones' payload form (sim/payload.ts): json, compact, or binary (what the project's phone client sends). */
    form: { type: "string", default: "json" },
    /** MQTT protocol of the simulated phones: 5 (what the simulator speaks) or 4 (3.1.1). */
    "mqtt-protocol": { type: "string", default: "5" },
    /** Its database's name (default bench_e2e_<run>): bench:api reads the same one while this ingests. */
    "db-name": { type: "string" },
    /** Once warm, this many orders are placed, confirmed and given to fleet drivers, so their customers can track. */
    "track-orders": { type: "string", default: "0" },
    /** Fleet mode: the fraction of drivers watched (live); the rest are available (idle, batched). */
    "fleet-mix": { type: "string" },
    "fix-every-s": { type: "string", default: "4" },
    "idle-batch": { type: "string", default: "7" },
    "idle-every-s": { type: "string", default: "30" },
    /** A sustained run's report window (issue #12): every this many seconds, a row of figures; 0 = none. */
    "window-s": { type: "string", default: "0" },
    /**
     * Before the run, the raw trail of the last this many closed hours (ending at the start of the current hour) for
     * every driver, in bulk (steady state's trail). Closed hours, so every run's first compaction pass finds all of it
     * (its cutoff is the hour that closed 10 minutes ago): ending a minute before the run, what a run had to compact
     * depended on the clock (28-90 million fixes for one hour at 100,000 drivers).
     */
    "prefill-trail-hours": { type: "string", default: "0" },
    /**
     * Once warm, the API's dispatch runs beside ingest in a process of its own (issue 16's ingest-side cost): its
     * index of available drivers re-read as the API does (DISPATCH_INDEX_REFRESH_MS, DISPATCH_INDEX_READ_PERCENT),
     * and this many orders a second assigned through it (0: reads only).
     */
    "dispatch-orders-per-s": { type: "string" },
    /**
     * Seconds of warm-up before measuring, at least (then until the lag is under 2,000 messages, 50 s at most): the
     * first message of each driver brings it online, a state change; with phones reporting every 40 s (100,000
     * drivers, batches of 4, 10,000/s) that takes 40 s.
     */
    "warm-up-s": { type: "string", default: "10" },
  },
});
const FORM = parsePayloadForm(args.form);
const WARM_UP_S = Number(args["warm-up-s"]);
if (!(WARM_UP_S >= 0)) throw new Error(`--warm-up-s: ${args["warm-up-s"]} is not a number of seconds`);
const DISPATCH_ORDERS_PER_S = args["dispatch-orders-per-s"] === undefined ? undefined : Number(args["dispatch-orders-per-s"]);
if (DISPATCH_ORDERS_PER_S !== undefined && !(DISPATCH_ORDERS_PER_S >= 0)) {
  throw new Error(`--dispatch-orders-per-s: ${args["dispatch-orders-per-s"]} is not a rate`);
}
const FLEET_MIX = args["fleet-mix"] === undefined ? undefined : Number(args["fleet-mix"]);
if (FLEET_MIX !== undefined && !(FLEET_MIX >= 0 && FLEET_MIX <= 1)) throw new Error(`--fleet-mix: ${args["fleet-mix"]} is not 0..1`);
const FIX_EVERY_S = Number(args["fix-every-s"]);
const IDLE_BATCH = Number(args["idle-batch"]);
const IDLE_EVERY_S = Number(args["idle-every-s"]);
const RATES = FLEET_MIX === undefined ? args.rates.split(",").map(Number) : [0];
const SECONDS = Number(args.seconds);
const WINDOW_S = Number(args["window-s"]);
if (!(WINDOW_S >= 0)) throw new Error(`--window-s: ${args["window-s"]} is not a number of seconds`);
const DRIVERS = Number(args.drivers);
const run = `${Date.now() % 1e8}`;
const PREFIX = `bench/${run}/`;

const scratch = await createScratchDatabase(args["db-name"] ?? `bench_e2e_${run}`);
const dbName = scratch.name;
const dbUrl = scratch.url;
const sql = connectDatabase(dbUrl, { max: 2 });
console.error(`generating ${DRIVERS} drivers…`);
await generateData(sql, {
  drivers: DRIVERS, restaurants: 2_000, customers: 10_000, orders: 0, mode: "truncate", seed: 7, city: "nyc",
  online: false, progress: false,
});
const drivers = await readDrivers(sql, "nyc");
const PREFILL_HOURS = Number(args["prefill-trail-hours"]);
let prefill: { hours: number; rows: number; seconds: number; bytes: number } | undefined;
if (PREFILL_HOURS > 0) {
  console.error(`prefilling the raw trail: ${PREFILL_HOURS} h of fixes every 4 s for ${drivers.length} drivers…`);
  const done = await prefillRawTrail(sql, {
    hours: PREFILL_HOURS,
    endsBefore: new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000),
    onHour: (rows) => console.error(`  ${rows} rows`),
  });
  await sql`vacuum analyze position_trail`;
  prefill = { hours: PREFILL_HOURS, ...done, bytes: (await partitionedSize(sql, "position_trail")).total };
  console.error(`prefilled ${done.rows} rows (${(prefill.bytes / 2 ** 30).toFixed(1)} GiB) in ${done.seconds.toFixed(0)} s`);
}

// Every process with authentication on and a narrow identity, as in production: the worker as tracking_worker and
// the Kafka principals confined by ACLs to bench-* topics (the stack's admin would skip the ACL checks).
const pipeline = await benchPipeline(run);
const { topic, dlq } = pipeline;
const bridgeEnv = pipeline.bridgeEnv;
const workerEnv = { ...pipeline.workerEnv, DATABASE_URL: serviceUrl(dbUrl, "tracking_worker") };
// The simulated fleet multiplexes 100,000 phones over a few hundred connections: the dev-only `loadgen` user.
const fleetMqttUrl = process.env.MQTT_LOADGEN_URL ?? config().mqttUrl;
const processes: { name: string; worker: WorkerProcess; port: number }[] = [];
/** The API's dispatch beside ingest, while one runs (--dispatch-orders-per-s). */
let dispatchLoad: DispatchLoad | undefined;
let stopping: Promise<void> | undefined;
/** The bridges and workers, their broker sessions, the connection and the scratch database; at the end or on a signal. */
const stopServices = () =>
  (stopping ??= (async () => {
    for (const p of processes) p.worker.proc.kill("SIGTERM");
    await Promise.all([...processes.map((p) => p.worker.proc.exited), dispatchLoad?.stop().catch(() => undefined)]);
    // Each bridge's persistent session would keep what was still queued for it in the broker for good (held in memory
    // and autosaved whole every 30 s, slowing every later client): a clean-session login under its client id discards it.
    for (let i = 0; i < Number(args.bridges); i++) {
      const session = await mqtt.connectAsync(config().mqttUrl, {
        clientId: `bench-bridge-${run}-${i}`, clean: true, protocolVersion: 4, reconnectPeriod: 0,
      });
      await session.endAsync();
    }
    await sql.end();
    await scratch.drop();
  })());
// Interrupted (Ctrl-C, or bench:api ending the ingest it ran): the same as the end.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping the bridge and workers, dropping ${dbName}`);
    void stopServices().finally(() => process.exit(130));
  });
}
const metricsPort = (w: WorkerProcess) => Number(/"metricsPort":(\d+)/.exec(w.output())![1]);
for (let i = 0; i < Number(args.bridges); i++) {
  const w = await startNodeWorker("bridge", { ...bridgeEnv, BRIDGE_CLIENT_ID: `bench-bridge-${run}-${i}` });
  await w.waitFor("mqtt connected");
  processes.push({ name: `bridge-${i}`, worker: w, port: metricsPort(w) });
}
for (let i = 0; i < Number(args.workers); i++) {
  const w = await startNodeWorker("positions", workerEnv);
  await w.waitFor("partitions assign", 60_000);
  processes.push({ name: `positions-${i}`, worker: w, port: metricsPort(w) });
}
const workerPorts = processes.filter((p) => p.name.startsWith("positions")).map((p) => p.port);
const scrapeWorkers = async () => {
  const merged = new Map<string, number>();
  for (const port of workerPorts) for (const [k, v] of await scrape(port)) merged.set(k, (merged.get(k) ?? 0) + v);
  return merged;
};

const watched = () => [
  ...processes.map((p) => ({ name: p.name, pids: [p.worker.proc.pid] })),
  { name: "bench+fleet (bun)", pids: [process.pid] },
  ...(dispatchLoad ? [{ name: "dispatch (API)", pids: [dispatchLoad.pid] }] : []),
  { name: "mosquitto", pids: pidsOf("mosquitto -c") },
  { name: "kafka", pids: pidsOf("kafka.Kafka") },
  // PostgreSQL's backends serving this benchmark's database, and the server's shared processes (WAL writer,
  // checkpointer, …; shared with whatever else runs on the machine, as Kafka and Mosquitto are).
  { name: "postgres (bench db)", pids: pidsOf(`postgres: [^ ]+ ${dbName} `) },
  { name: "postgres (shared)", pids: pidsOf("postgres: (checkpointer|background writer|walwriter|autovacuum|logical|stats)") },
];

/** Orders from random customers at random restaurants, confirmed and given to the nearest (online) fleet driver. */
async function placeTrackedOrders(count: number): Promise<number> {
  const orders = await sql<{ id: string }[]>`
    with c as (select id, location, row_number() over () as rn
               from (select id, location from customers order by random() limit ${count}) x),
         r as (select id, row_number() over () as rn
               from (select id from restaurants order by random() limit ${count}) y)
    insert into orders (customer_id, restaurant_id, delivery_location, items)
    select c.id, r.id, c.location, '[{"name": "bench meal", "qty": 1, "price_cents": 1000}]'::jsonb
    from c join r using (rn)
    returning id`;
  let assigned = 0;
  for (const { id } of orders) {
    await sql`select order_transition(${id}, 'confirm')`;
    // An order nobody is near enough for stays confirmed: it is simply not tracked.
    if (await sql`select assign_nearest_driver(${id}, null, 20000)`.then(() => true, () => false)) assigned++;
  }
  return assigned;
}

const results: RateResult[] = [];

interface DispatchLoad {
  pid: number;
  readyDrivers: number;
  /** SIGTERM, then its counts (idempotent). */
  stop(): Promise<Omit<NonNullable<RateResult["dispatch"]>, "ordersPerS">>;
}

/** bench/dispatch/beside-ingest.ts against this run's database, once its first read is in. */
async function startDispatchLoad(ordersPerS: number): Promise<DispatchLoad> {
  const proc = Bun.spawn(
    ["bun", "--preload", "./lib/stack-env.ts", "bench/dispatch/beside-ingest.ts", "--database-url", dbUrl, "--orders-per-s", String(ordersPerS)],
    { stdout: "pipe", stderr: "inherit" },
  );
  const lines = (async function* () {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of proc.stdout) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        yield JSON.parse(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    }
  })();
  const ready = await lines.next();
  if (ready.done) throw new Error(`the dispatch load exited (${await proc.exited}) before its first read`);
  let stopped: ReturnType<DispatchLoad["stop"]> | undefined;
  return {
    pid: proc.pid,
    readyDrivers: ready.value.drivers,
    stop: () =>
      (stopped ??= (async () => {
        proc.kill("SIGTERM");
        const counts = await lines.next();
        await proc.exited;
        if (counts.done) throw new Error("the dispatch load exited without its counts");
        return counts.value;
      })()),
  };
}

const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
/** A sustained run over time: applied rate and lag, and freshness percentiles, window by window. */
function sustainedPlot(r: RateResult): PlotSpec {
  const rows = r.windows!.flatMap((w) => [
    { t: w.endS, panel: "positions/s", series: "applied/s", value: w.appliedRate },
    { t: w.endS, panel: "positions/s", series: "offered/s", value: r.offeredRate },
    { t: w.endS, panel: "Kafka lag (messages)", series: "max in window", value: w.lagMax },
    { t: w.endS, panel: "send→db freshness (s)", series: "p50", value: w.freshnessSend.p50 },
    { t: w.endS, panel: "send→db freshness (s)", series: "p99", value: w.freshnessSend.p99 },
    { t: w.endS, panel: "WAL bytes per position", series: "WAL B/position", value: Math.round(w.database.walBytesPerPosition) },
  ]);
  return {
    title: `bench:e2e sustained, ${r.offeredRate} positions/s offered, per ${WINDOW_S} s window`,
    data: { values: rows },
    facet: { row: { field: "panel", type: "nominal", title: null } },
    spec: {
      width: 520,
      height: 110,
      mark: { type: "line", point: true },
      encoding: {
        x: { field: "t", type: "quantitative", title: "seconds into the run" },
        y: { field: "value", type: "quantitative", title: null },
        color: { field: "series", type: "nominal" },
      },
    },
    resolve: { scale: { y: "independent" } },
  };
}

/** One window of a sustained run, as printed while it runs. */
function windowLine(w: WindowResult): string {
  const server = w.processes.filter((p) => !p.name.startsWith("bench+fleet"));
  const d = w.database;
  return (
    `[${String(w.endS).padStart(4)} s] applied ${w.appliedRate}/s, lag max ${w.lagMax} end ${w.lagEnd}, send→db p50/p99 ` +
    `${w.freshnessSend.p50}/${w.freshnessSend.p99} s | WAL ${d.walBytesPerPosition.toFixed(0)} B/position, driver_state HOT ` +
    `${(100 * d.hotRatio).toFixed(1)}%, dead ${d.deadTuples}, autovacuum +${d.autovacuums}, growth: driver_state ` +
    `${mb(d.driverStateGrowthBytes)} MB, raw trail ${mb(d.trailRawGrowthBytes)} MB, db ${mb(d.databaseBytes)} MB | server CPU ` +
    `${server.reduce((a, p) => a + p.cpuPercent, 0)}% (${server.map((p) => `${p.name} ${p.cpuPercent}% ${p.rssMb} MB`).join(", ")})`
  );
}

/** CPU ticks of every watched process now, by pid. */
const tickSnapshot = () => {
  const ticks = new Map<number, number>();
  for (const w of watched()) for (const pid of w.pids) ticks.set(pid, procSample(pid)?.cpuTicks ?? 0);
  return ticks;
};
/**
 * CPU per watched process since `ticksAtStart`, `elapsed` seconds ago: the processes matched now, less what each had
 * used at the start (a process started meanwhile counts whole; one that ended meanwhile is lost, never negative).
 */
const cpuSince = (ticksAtStart: Map<number, number>, elapsed: number) =>
  watched().map((w) => {
    const used = w.pids.reduce((a, pid) => {
      const now = procSample(pid)?.cpuTicks;
      return now === undefined ? a : a + Math.max(0, now - (ticksAtStart.get(pid) ?? 0));
    }, 0);
    return { name: w.name, cpuPercent: Math.round((used / CLK_TCK / elapsed) * 100), pids: w.pids };
  });
const rssMbOf = (pids: readonly number[]) => Math.round(pids.map(procSample).reduce((a, s) => a + (s?.rssBytes ?? 0), 0) / 2 ** 20);
const quantiles = (before: Map<string, number>, after: Map<string, number>, metric: string) => ({
  p50: +quantile(before, after, metric, 0.5).toFixed(3),
  p99: +quantile(before, after, metric, 0.99).toFixed(3),
});

/** When the scheduled upkeep was registered (seconds from the start of the fleet's first rate), once warm. */
let upkeepRegisteredAtS: number | undefined;
const fleetStartedMs = Date.now();
for (const rate of RATES) {
  const common = {
    mqttUrl: fleetMqttUrl, city: "nyc", topicPrefix: PREFIX, driversPerConnection: 2_000, form: FORM,
    protocolVersion: args["mqtt-protocol"] === "4" ? (4 as const) : (5 as const),
  };
  // Fleet mode: two groups of phones, as the server's reporting modes make them report; else one fixed group.
  const groups =
    FLEET_MIX === undefined
      ? [{ group: "all", drivers, fixesPerMessage: Number(args.batch), messageEveryS: (Number(args.batch) * drivers.length) / rate }]
      : [
          { group: "live", drivers: drivers.slice(0, Math.round(drivers.length * FLEET_MIX)), fixesPerMessage: 1, messageEveryS: FIX_EVERY_S },
          { group: "idle", drivers: drivers.slice(Math.round(drivers.length * FLEET_MIX)), fixesPerMessage: IDLE_BATCH, messageEveryS: IDLE_EVERY_S },
        ].filter((g) => g.drivers.length > 0);
  const offered = Math.round(groups.reduce((a, g) => a + (g.drivers.length * g.fixesPerMessage) / g.messageEveryS, 0));
  console.error(`\noffering ${offered} positions/s for ${SECONDS} s (${groups.map((g) => `${g.group}: ${g.drivers.length} drivers, ${g.fixesPerMessage} fix(es) every ${+g.messageEveryS.toFixed(2)} s`).join("; ")})…`);
  const fleets = await Promise.all(
    groups.map((g) => startFleet({ ...common, drivers: g.drivers, rateHz: g.fixesPerMessage / g.messageEveryS, batch: g.fixesPerMessage })),
  );
  const fleet = {
    stats: () => fleets.map((f) => f.stats()).reduce((a, b) => ({ sent: a.sent + b.sent, messages: a.messages + b.messages }), { sent: 0, messages: 0 }),
    stop: () => Promise.all(fleets.map((f) => f.stop())),
  };
  // Warm-up: the first seconds bring every driver online (a state change per driver), not steady state. Measure
  // once the backlog of that is gone (or after 60 s, if the pipeline cannot keep up at all).
  await Bun.sleep(WARM_UP_S * 1000);
  const warmDeadline = Date.now() + 50_000;
  while (Date.now() < warmDeadline && ((await scrapeWorkers()).get("kafka_consumer_lag_messages") ?? 0) > 2_000) {
    await Bun.sleep(1_000);
  }
  // The scheduled upkeep (pg_cron: the sweep, partitions, paced trail compaction), as the stack's database has it,
  // once the pipeline is warm: a running system starts a compaction pass at a steady state (10 minutes after an hour
  // closes), not while every phone connects; registered at the start, the first pass overlapped the warm-up and the
  // first minute's p99 went from ~0.5 s to 7-20 s (docs/steady-state.md). Its first run is at the next minute
  // boundary. Unregistered when the database is dropped.
  if (upkeepRegisteredAtS === undefined) {
    await registerUpkeepJobs(dbUrl);
    upkeepRegisteredAtS = Math.round((Date.now() - fleetStartedMs) / 1000);
    console.error(`scheduled upkeep registered (pg_cron), ${upkeepRegisteredAtS} s after the fleet started`);
  }
  if (DISPATCH_ORDERS_PER_S !== undefined) {
    dispatchLoad = await startDispatchLoad(DISPATCH_ORDERS_PER_S);
    console.error(`dispatch beside ingest: ${dispatchLoad.readyDrivers} available drivers in its first read, ${DISPATCH_ORDERS_PER_S} orders/s`);
  }
  if (rate === RATES[0] && Number(args["track-orders"]) > 0) {
    const tracked = await placeTrackedOrders(Number(args["track-orders"]));
    console.error(`tracking ${tracked} orders in ${dbName}`);
  }
  const before = await scrapeWorkers();
  const fleetBefore = fleet.stats();
  const ticksAtStart = tickSnapshot();
  const maxRss = new Map<string, number>();
  const lag: number[] = [];
  const started = performance.now();
  const windows: WindowResult[] = [];
  let win: { at: number; scrape: Map<string, number>; db: DatabaseSample | undefined; ticks: Map<number, number>; lagMax: number } = {
    at: started, scrape: before, db: WINDOW_S > 0 ? await sampleDatabase(sql) : undefined, ticks: ticksAtStart, lagMax: 0,
  };
  while (performance.now() - started < SECONDS * 1000) {
    await Bun.sleep(1_000);
    const now = await scrapeWorkers();
    const lagNow = now.get("kafka_consumer_lag_messages") ?? 0;
    lag.push(lagNow);
    win.lagMax = Math.max(win.lagMax, lagNow);
    for (const w of watched()) {
      const rss = w.pids.map(procSample).reduce((a, s) => a + (s?.rssBytes ?? 0), 0);
      maxRss.set(w.name, Math.max(maxRss.get(w.name) ?? 0, rss));
    }
    const windowSeconds = (performance.now() - win.at) / 1000;
    if (WINDOW_S > 0 && windowSeconds >= WINDOW_S) {
      const db = await sampleDatabase(sql);
      const applied = (now.get("positions_applied_total") ?? 0) - (win.scrape.get("positions_applied_total") ?? 0);
      const w: WindowResult = {
        endS: Math.round((performance.now() - started) / 1000),
        appliedRate: Math.round(applied / windowSeconds),
        lagMax: win.lagMax,
        lagEnd: lagNow,
        freshnessSend: quantiles(win.scrape, now, "position_freshness_from_send_seconds"),
        freshnessDevice: quantiles(win.scrape, now, "position_freshness_from_device_seconds"),
        database: databaseWindow(win.db!, db, applied),
        processes: cpuSince(win.ticks, windowSeconds).map((p) => ({ name: p.name, cpuPercent: p.cpuPercent, rssMb: rssMbOf(p.pids) })),
      };
      windows.push(w);
      console.error(windowLine(w));
      win = { at: performance.now(), scrape: now, db, ticks: tickSnapshot(), lagMax: 0 };
    }
  }
  const elapsed = (performance.now() - started) / 1000;
  const after = await scrapeWorkers();
  const fleetAfter = fleet.stats();
  const cpu = cpuSince(ticksAtStart, elapsed).map((p) => ({
    name: p.name,
    cpuPercent: p.cpuPercent,
    maxRssMb: Math.round((maxRss.get(p.name) ?? 0) / 2 ** 20),
  }));
  const dispatch = dispatchLoad ? { ordersPerS: DISPATCH_ORDERS_PER_S!, ...(await dispatchLoad.stop()) } : undefined;
  dispatchLoad = undefined;
  await fleet.stop();
  const delta = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  const q = (metric: string) => ({
    p50: +quantile(before, after, metric, 0.5).toFixed(3),
    p95: +quantile(before, after, metric, 0.95).toFixed(3),
    p99: +quantile(before, after, metric, 0.99).toFixed(3),
  });
  results.push({
    offeredRate: offered,
    ...(FLEET_MIX === undefined ? {} : { fleet: groups.map((g) => ({ ...g, drivers: g.drivers.length })) }),
    sentRate: Math.round((fleetAfter.sent - fleetBefore.sent) / elapsed),
    messageRate: Math.round((fleetAfter.messages - fleetBefore.messages) / elapsed),
    serverCpuPercent: cpu.filter((p) => !p.name.startsWith("bench+fleet")).reduce((a, p) => a + p.cpuPercent, 0),
    appliedRate: Math.round(delta("positions_applied_total") / elapsed),
    freshnessDevice: q("position_freshness_from_device_seconds"),
    freshnessSend: q("position_freshness_from_send_seconds"),
    freshnessBridge: q("position_freshness_from_bridge_seconds"),
    applySeconds: q("batch_apply_seconds"),
    lagOverTime: lag,
    processes: cpu,
    ...(WINDOW_S > 0 ? { windows } : {}),
    ...(dispatch ? { dispatch } : {}),
  });
  // Drain before the next rate so its numbers are its own.
  const drainDeadline = Date.now() + 60_000;
  while (Date.now() < drainDeadline && ((await scrapeWorkers()).get("kafka_consumer_lag_messages") ?? 0) > 0) {
    await Bun.sleep(500);
  }
}

const fmt = (f: { p50: number; p95: number; p99: number }) =>
  `${f.p50.toFixed(2).padStart(6)} ${f.p95.toFixed(2).padStart(6)} ${f.p99.toFixed(2).padStart(6)}`;
console.log(
  FLEET_MIX === undefined
    ? `\nbatch ${args.batch} position(s) per MQTT message (${FORM}), ${DRIVERS} drivers, ${SECONDS} s per rate`
    : `\nfleet mix ${FLEET_MIX} watched (1 fix every ${FIX_EVERY_S} s), the rest idle (${IDLE_BATCH} fixes every ${IDLE_EVERY_S} s), ${DRIVERS} drivers, ${SECONDS} s`,
);
// fix→db: every position from its GPS time (includes the phone holding it for its batch); send→db: each message's
// newest fix (the phone's send) to committed, what the customer's map lags behind the phone; bridge→db: our servers.
console.log("offered/s   sent/s  applied/s   fix→db p50/p95/p99 s    send→db p50/p95/p99 s   bridge→db p50/p95/p99 s   max lag (msgs)");
for (const r of results) {
  console.log(
    `${String(r.offeredRate).padStart(9)} ${String(r.sentRate).padStart(8)} ${String(r.appliedRate).padStart(10)}` +
      `   ${fmt(r.freshnessDevice)}     ${fmt(r.freshnessSend)}     ${fmt(r.freshnessBridge)}      ${String(Math.max(...r.lagOverTime)).padStart(8)}`,
  );
  console.log(`      MQTT messages/s ${r.messageRate}, positions/s ${r.sentRate}, server CPU ${r.serverCpuPercent}%${r.applySeconds ? `, one batch's apply p50/p95/p99 ${fmt(r.applySeconds)} s` : ""}`);
  if (r.dispatch) {
    const d = r.dispatch;
    console.log(
      `      dispatch beside ingest: ${d.reads.ok} index reads (${d.reads.failed} failed) of ${d.reads.drivers} drivers, ` +
        `${d.orders.placed} orders placed (${d.ordersPerS}/s): ${d.orders.assigned} assigned, ${d.orders.refused} refused` +
        (d.orders.firstRefusal ? ` (first: ${d.orders.firstRefusal})` : ""),
    );
  }
  for (const p of r.processes) {
    console.log(`      ${p.name.padEnd(20)} cpu ${String(p.cpuPercent).padStart(4)}%  max rss ${String(p.maxRssMb).padStart(5)} MB`);
  }
}
for (const r of results.filter((x) => x.windows && x.windows.length > 0)) {
  console.log(`\n  per ${WINDOW_S} s window (offered ${r.offeredRate}/s):`);
  for (const w of r.windows!) console.log(`  ${windowLine(w)}`);
  const first = r.windows![0]!;
  const last = r.windows!.at(-1)!;
  console.log(
    `  last window's applied rate / first's: ${(last.appliedRate / first.appliedRate).toFixed(3)}; ` +
      `lag at the windows' ends: ${r.windows!.map((w) => w.lagEnd).join(", ")}`,
  );
}
const stem = resultStem("e2e");
const file = `${stem}.json`;
// The trail compaction runs as in production (pg_cron's job in the database, paced): its settings go with the result,
// and, after a prefill, what it had to do (a run's first pass finds more or less of the prefilled hour closed,
// depending on the clock): the fixes it moved, and the raw ones still before its cutoff at the end.
const compactionWork = prefill
  ? (await sql<{ moved: string; waiting: string }[]>`
      select (select coalesce(sum(fixes), 0) from position_trail_compact)::text as moved,
             (select count(*) from position_trail where recorded_at < trail_compaction_cutoff())::text as waiting`)[0]
  : undefined;
if (compactionWork) console.log(`trail compaction: ${compactionWork.moved} fixes moved, ${compactionWork.waiting} still before its cutoff`);
const trailCompaction = {
  scheduler: "pg_cron",
  spreadMs: config().trailCompactionSpreadMs,
  driversPerStep: config().trailCompactionDriversPerStep,
  yieldLag: config().trailCompactionYieldLag,
  registeredAfterFleetS: upkeepRegisteredAtS,
  ...(compactionWork ? { movedFixes: Number(compactionWork.moved), waitingFixes: Number(compactionWork.waiting) } : {}),
};
// The worker's batching, from the same environment the workers were started with (BATCH_MAX_WAIT_MS etc.).
const workerSettings = {
  batchMaxMessages: config().batchMaxMessages,
  batchMaxWaitMs: config().batchMaxWaitMs,
  applyConnections: config().applyConnections,
};
await Bun.write(file, JSON.stringify({ drivers: DRIVERS, seconds: SECONDS, args, workerSettings, trailCompaction, ...(prefill ? { prefill } : {}), results }, null, 2));
console.log(`\nwritten ${file}`);
const sustained = results.find((r) => r.windows && r.windows.length > 0);
if (sustained) console.log(`plotted ${await writePlot(`${stem}.svg`, sustainedPlot(sustained))}`);

await stopServices();
process.exit(0);
