/**
 * `bun run bench:catch-up [-- --rate 25000 --batch 4 --outage-seconds 600 --drivers 100000 --workers 1]`
 *
 * A PostgreSQL outage seen from the pipeline: a simulated fleet keeps publishing at the offered rate while the
 * position worker's way to the database is cut (a TCP proxy, so nothing else on the box loses its database) for
 * `--outage-seconds`. Kafka holds the backlog; once the database is back the worker drains it while the fleet keeps
 * publishing. Reports how long the drain took (from the restore until the consumer lag is back under two seconds of
 * traffic), the apply rate while draining, the worker's and Kafka's peak memory, and the backlog's size on Kafka's
 * disk. Prints a table, writes JSON and an SVG plot (lag and applied rate over time) under bench/results/.
 * Needs `bin/stack up`; uses its own database, topics and MQTT topic root. Not a test.
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { generateData, readDrivers } from "../db/generate.ts";
import { config } from "../lib/config.ts";
import { connectDatabase } from "../lib/db.ts";
import { startFleet } from "../sim/fleet.ts";
import { deleteTopic } from "../tools/kafka-cli.ts";
import { startNodeWorker, type WorkerProcess } from "../tools/node-workers.ts";
import { benchPipeline } from "../tools/pipeline.ts";
import { serviceUrl } from "../tools/service-url.ts";
import { createScratchDatabase } from "../tools/scratch-database.ts";
import { spawnTcpProxy } from "../tools/tcp-proxy.ts";
import { type PlotSpec, resultStem, writePlot } from "./support/plot.ts";
import { pidsOf, procSample } from "./support/process-stats.ts";
import { scrape } from "./support/prometheus.ts";

const { values: args } = parseArgs({
  options: {
    rate: { type: "string", default: "25000" },
    batch: { type: "string", default: "4" },
    drivers: { type: "string", default: "100000" },
    workers: { type: "string", default: "1" },
    "warm-seconds": { type: "string", default: "60" },
    "outage-seconds": { type: "string", default: "600" },
    /** Give up on the drain after this long (the result then says it did not catch up). */
    "max-drain-seconds": { type: "string", default: "2400" },
  },
  strict: true,
});
const RATE = Number(args.rate);
const BATCH = Number(args.batch);
const DRIVERS = Number(args.drivers);
const OUTAGE_S = Number(args["outage-seconds"]);
const run = `${Date.now() % 1e8}`;
const SAMPLE_MS = 5_000;
/** Drained: the lag is under this many messages (two seconds of offered traffic) for three samples (15 s) in a row. */
const DRAINED_LAG = Math.max(1_000, Math.round((2 * RATE) / BATCH));

const scratch = await createScratchDatabase(`bench_catchup_${run}`);
const sql = connectDatabase(scratch.url, { max: 2 });
console.error(`generating ${DRIVERS} drivers…`);
await generateData(sql, {
  drivers: DRIVERS, restaurants: 2_000, customers: 10_000, orders: 0, mode: "truncate", seed: 7, city: "nyc",
  online: false, progress: false,
});
const drivers = await readDrivers(sql, "nyc");

const pipeline = await benchPipeline(run);
const { topic, dlq } = pipeline;
// The workers reach PostgreSQL only through the proxy, which the outage cuts.
const databaseHost = new URL(scratch.url);
// In a process of its own: on the fleet's busy event loop it delayed the workers' commits by seconds (measured).
const proxy = await spawnTcpProxy(databaseHost.hostname, Number(databaseHost.port || 5432));
const workerUrl = new URL(serviceUrl(scratch.url, "tracking_worker"));
workerUrl.hostname = "127.0.0.1";
workerUrl.port = String(proxy.port);

const metricsPort = (w: WorkerProcess) => Number(/"metricsPort":(\d+)/.exec(w.output())![1]);
const bridge = await startNodeWorker("bridge", { ...pipeline.bridgeEnv, BRIDGE_CLIENT_ID: `bench-bridge-${run}` });
await bridge.waitFor("mqtt connected");
const workers: WorkerProcess[] = [];
for (let i = 0; i < Number(args.workers); i++) {
  const w = await startNodeWorker("positions", { ...pipeline.workerEnv, DATABASE_URL: workerUrl.toString() });
  await w.waitFor("partitions assign", 60_000);
  workers.push(w);
}
const workerPorts = workers.map(metricsPort);
// Every service's output and the samples so far are kept in .stack/logs/catch-up-<run>-*, however the run ends.
process.on("exit", () => {
  mkdirSync(".stack/logs", { recursive: true });
  [bridge, ...workers].forEach((w, i) =>
    writeFileSync(`.stack/logs/catch-up-${run}-${i === 0 ? "bridge" : `positions-${i - 1}`}.log`, w.output()),
  );
  writeFileSync(`.stack/logs/catch-up-${run}-samples.json`, JSON.stringify(samples));
  for (const w of [bridge, ...workers]) w.proc.kill("SIGTERM");
});
// Ctrl-C ends the run through the exit handler above (the logs kept, the services stopped), not around it.
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));
/** A worker that died: its exit status and last output, once the process has really gone (then the run ends). */
async function reportDeadWorker(i: number): Promise<never> {
  const w = workers[i]!;
  await Promise.race([w.proc.exited, Bun.sleep(10_000)]);
  await Bun.sleep(500); // its last output
  console.error(`position worker ${i} exited (code ${w.proc.exitCode}, signal ${w.proc.signalCode}):\n${w.output().slice(-3_000)}`);
  process.exit(1);
}
async function workerTotals(): Promise<{ lag: number; applied: number }> {
  let lag = 0;
  let applied = 0;
  for (const [i, port] of workerPorts.entries()) {
    const w = workers[i]!;
    if (w.proc.exitCode !== null || w.proc.signalCode) await reportDeadWorker(i);
    const m = await scrape(port).catch(() => reportDeadWorker(i));
    lag += m.get("kafka_consumer_lag_messages") ?? 0;
    applied += m.get("positions_applied_total") ?? 0;
  }
  return { lag, applied };
}
const rssMb = (pids: number[]) => Math.round(pids.map(procSample).reduce((a, s) => a + (s?.rssBytes ?? 0), 0) / 2 ** 20);
/** Bytes the run's topic holds on Kafka's disks (every replica, every broker of the stack). */
function topicBytesOnDisk(): number {
  const dirs = [".stack/kafka/data", ...[1, 2, 3, 4, 5].map((n) => `.stack/kafka/cluster/node-${n}/data`)];
  let bytes = 0;
  for (const dir of dirs) {
    let entries: string[];
    try {
      entries = readdirSync(dir).filter((e) => e.startsWith(`${topic}-`));
    } catch {
      continue;
    }
    for (const e of entries) {
      for (const f of readdirSync(`${dir}/${e}`)) if (f.endsWith(".log")) bytes += Bun.file(`${dir}/${e}/${f}`).size;
    }
  }
  return bytes;
}

interface Sample { t: number; phase: "warm" | "outage" | "drain"; lag: number; appliedPerS: number; workerRssMb: number; kafkaRssMb: number; bridgeRssMb: number }
const samples: Sample[] = [];
const started = performance.now();
const at = () => (performance.now() - started) / 1000;
let phase: Sample["phase"] = "warm";
let previous = await workerTotals();
let previousT = at();
let peakTopicBytes = 0;
const sampler = setInterval(() => {
  void (async () => {
    const now = await workerTotals();
    const t = at();
    samples.push({
      t: +t.toFixed(1), phase, lag: now.lag,
      appliedPerS: Math.round((now.applied - previous.applied) / (t - previousT)),
      workerRssMb: rssMb(workers.map((w) => w.proc.pid)),
      kafkaRssMb: rssMb(pidsOf("kafka.Kafka")),
      bridgeRssMb: rssMb([bridge.proc.pid]),
    });
    peakTopicBytes = Math.max(peakTopicBytes, topicBytesOnDisk());
    previous = now;
    previousT = t;
  })().catch((error: unknown) => console.error(`sample failed: ${String(error)}`));
}, SAMPLE_MS);

console.error(`offering ${RATE} positions/s (${BATCH} per message) from ${DRIVERS} drivers; warming ${args["warm-seconds"]} s…`);
const fleet = await startFleet({
  drivers, rateHz: RATE / drivers.length, batch: BATCH, mqttUrl: process.env.MQTT_LOADGEN_URL ?? config().mqttUrl,
  city: "nyc", topicPrefix: pipeline.prefix, driversPerConnection: 2_000, protocolVersion: 5,
});
await Bun.sleep(Number(args["warm-seconds"]) * 1000);
const sentAtCut = fleet.stats().sent;
console.error(`cutting the workers' database for ${OUTAGE_S} s…`);
phase = "outage";
proxy.cut();
const cutAt = at();
await Bun.sleep(OUTAGE_S * 1000);
proxy.restore();
phase = "drain";
const restoredAt = at();
const backlogAtRestore = (await workerTotals()).lag;
console.error(`restored at ${restoredAt.toFixed(0)} s with ${backlogAtRestore} messages behind; draining…`);
let drainedAt: number | undefined;
let under = 0;
const drainDeadline = performance.now() + Number(args["max-drain-seconds"]) * 1000;
while (performance.now() < drainDeadline) {
  await Bun.sleep(SAMPLE_MS);
  under = (await workerTotals()).lag < DRAINED_LAG ? under + 1 : 0;
  if (under >= 3) {
    drainedAt = at() - (2 * SAMPLE_MS) / 1000;
    break;
  }
}
const sentInAll = fleet.stats().sent;
await fleet.stop();
clearInterval(sampler);

const drainSamples = samples.filter((s) => s.phase === "drain" && (drainedAt === undefined || s.t <= drainedAt));
const max = (values: number[]) => values.reduce((a, b) => Math.max(a, b), 0);
const result = {
  command: `bun run bench:catch-up -- ${process.argv.slice(2).join(" ")}`.trim(),
  commit: Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim(),
  kafkaBrokers: Number((await Bun.file(".stack/kafka-brokers").text().catch(() => "1")).trim()),
  load: (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).map(Number),
  offeredRate: RATE, batch: BATCH, drivers: DRIVERS, outageSeconds: OUTAGE_S,
  cutAtS: +cutAt.toFixed(1), restoredAtS: +restoredAt.toFixed(1),
  backlogMessagesAtRestore: backlogAtRestore,
  backlogPositionsAtRestore: backlogAtRestore * BATCH,
  caughtUp: drainedAt !== undefined,
  drainSeconds: drainedAt === undefined ? null : +(drainedAt - restoredAt).toFixed(1),
  drainApplyRate: {
    mean: drainSamples.length ? Math.round(drainSamples.reduce((a, s) => a + s.appliedPerS, 0) / drainSamples.length) : 0,
    max: max(drainSamples.map((s) => s.appliedPerS)),
  },
  peakRssMb: {
    worker: max(samples.map((s) => s.workerRssMb)),
    kafka: max(samples.map((s) => s.kafkaRssMb)),
    bridge: max(samples.map((s) => s.bridgeRssMb)),
  },
  peakTopicBytesOnDisk: peakTopicBytes,
  positionsSent: sentInAll,
  positionsSentBeforeCut: sentAtCut,
  drainedLagThreshold: DRAINED_LAG,
  samples,
};

console.log(`\n${RATE} positions/s offered (${BATCH} per message), ${DRIVERS} drivers, database cut for ${OUTAGE_S} s, ${result.kafkaBrokers} Kafka broker(s), load ${result.load.join(" ")}`);
console.log(`backlog at restore        ${backlogAtRestore.toLocaleString("en")} messages (${(backlogAtRestore * BATCH).toLocaleString("en")} positions)`);
console.log(`drain (lag < ${DRAINED_LAG} msgs) ${result.caughtUp ? `${result.drainSeconds} s` : `NOT CAUGHT UP within ${args["max-drain-seconds"]} s`}`);
console.log(`apply rate while draining mean ${result.drainApplyRate.mean}/s, max ${result.drainApplyRate.max}/s (offered ${RATE}/s)`);
console.log(`peak RSS MB               worker ${result.peakRssMb.worker}, bridge ${result.peakRssMb.bridge}, Kafka (all brokers) ${result.peakRssMb.kafka}`);
console.log(`backlog on Kafka's disk   ${(peakTopicBytes / 2 ** 20).toFixed(0)} MiB at most (all replicas), ${(peakTopicBytes / Math.max(1, backlogAtRestore * BATCH * result.kafkaBrokers)).toFixed(1)} bytes per position per replica`);

const stem = resultStem("catch-up");
await Bun.write(`${stem}.json`, JSON.stringify(result, null, 2));
await writePlot(`${stem}.svg`, plotSpec(samples));
console.log(`\nwritten ${stem}.json and .svg`);

for (const w of [bridge, ...workers]) w.proc.kill("SIGTERM");
await Promise.all([bridge, ...workers].map((w) => w.proc.exited));
await proxy.close();
await sql.end({ timeout: 5 });
await scratch.drop();
await deleteTopic(topic).catch(() => {});
await deleteTopic(dlq).catch(() => {});
process.exit(0);

function plotSpec(rows: Sample[]): PlotSpec {
  const values = rows.flatMap((s) => [
    { t: s.t, phase: s.phase, series: "consumer lag (messages)", value: s.lag },
    { t: s.t, phase: s.phase, series: "applied positions/s", value: s.appliedPerS },
  ]);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: `Catch-up after a ${OUTAGE_S} s database outage at ${RATE} positions/s offered`,
    data: { values },
    facet: { row: { field: "series", type: "nominal", title: null } },
    spec: {
      width: 600,
      height: 160,
      mark: "line",
      encoding: {
        x: { field: "t", type: "quantitative", title: "seconds since start" },
        y: { field: "value", type: "quantitative", title: null },
        color: { field: "phase", type: "nominal" },
      },
    },
    resolve: { scale: { y: "independent" } },
  } as PlotSpec;
}
