/**
 * `bun run bench:fanout [-- --streams 10000 --minutes 5 --api-processes 2 --clients 1 --rate 2500]`
 *
 * Live tracking at fleet scale (issue #15): N live orders, each assigned to a driver of a simulated fleet that
 * publishes positions over MQTT (the dev-only loadgen user) through the real pipeline, Mosquitto -> bridge -> Kafka
 * -> position worker -> PostgreSQL NOTIFY -> API (one LISTEN per process) -> the order's SSE stream. Load-generator
 * processes (bench/fanout/load-client.ts) hold one stream per order with the order's tracking-link token.
 *
 * Per minute it reports streams held, API CPU and RSS (and RSS per stream over the API's RSS before any stream),
 * events/s received, push latency p50/p99 from each position's published_at (the database's clock as it sends the
 * batch's notices, just before the commit: migration 0021) to the client's receipt, latency from the position's device
 * time (the simulated phone's clock: the same machine) to the client's receipt, with the worker's own send->commit
 * p50/p99 over the same minute beside it, and quiet streams (open, and no event for --starve-after seconds while every
 * driver reports every streams/rate seconds), judged by bench/fanout/starvation.ts: starved (a newer position of its
 * driver was committed and not pushed: the fan-out's fault) or waiting on ingest (nothing newer committed yet). Uses
 * its own database, topics and MQTT root; JSON, a table and an SVG plot under bench/results/fanout-<time>.*. Not a
 * test.
 */
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { parseArgs } from "node:util";
import { generateData, readDrivers } from "../db/generate.ts";
import { config } from "../lib/config.ts";
import { connectDatabase } from "../lib/db.ts";
import { startFleet } from "../sim/fleet.ts";
import { parsePayloadForm } from "../sim/payload.ts";
import { freePort } from "../tools/free-port.ts";
import { startNodeWorker, type WorkerProcess } from "../tools/node-workers.ts";
import { benchPipeline } from "../tools/pipeline.ts";
import { createScratchDatabase } from "../tools/scratch-database.ts";
import { serviceUrl } from "../tools/service-url.ts";
import { type Buckets, bucketCount, mergeBuckets, quantileMs } from "./fanout/histogram.ts";
import { mintTrackingTokens, placeAssignedOrders } from "./fanout/orders.ts";
import { childPids, loadAverage, sampleAll } from "./support/process-stats.ts";
import { quantile as histogramQuantile, scrape } from "./support/prometheus.ts";
import { printTable, writeFanoutPlot, type MinuteRow } from "./fanout/report.ts";
import { createCommitWatch, decodeQuiet, judgeQuiet, type QuietStream } from "./fanout/starvation.ts";
import { resultStem } from "./support/plot.ts";

const { values: args } = parseArgs({
  options: {
    streams: { type: "string", default: "1000" },
    /** Live orders (each with a moving driver); streams watch the first --streams of them. Default: --streams. */
    orders: { type: "string" },
    minutes: { type: "string", default: "1" },
    "api-processes": { type: "string", default: "1" },
    /**
     * Each API process's database pool (API_DB_POOL_MAX); default: 20, or 120 shared by the processes when there are
     * more than 6, so that the pools and a LISTEN each fit PostgreSQL's 200 connections beside the pipeline's.
     */
    "api-pool": { type: "string" },
    /** Load-generator processes; default: one per 15,000 streams. */
    clients: { type: "string" },
    /** Positions per second offered by the whole fleet; default: every driver every 4 s (streams / 4). */
    rate: { type: "string" },
    "starve-after": { type: "string", default: "30" },
    /** Streams each client opens per second while ramping up. */
    "open-rate": { type: "string", default: "1000" },
    /** After the measured minutes: restart the API processes and time until every client is back. */
    "restart-api": { type: "boolean", default: false },
    workers: { type: "string", default: "1" },
    /** Pipeline source: fixes per MQTT message (phones that batch, as bench:e2e --batch) and the payload's form. */
    batch: { type: "string", default: "1" },
    form: { type: "string", default: "json" },
    /**
     * pipeline: the simulated fleet through MQTT, bridge, Kafka and the position worker (the real path);
     * notify: the bench sends the apply procedure's notices itself (notify_order_tracking, each stamped with its
     * send time), to measure the API's fan-out alone, commit -> client, when ingest cannot keep up on a busy box;
     * idle: nothing moves, the streams carry heartbeats only (starvation is not judged).
     */
    source: { type: "string", default: "pipeline" },
    /**
     * http: the streams on the API's port (Bun.serve, Elysia's route); socket: on LIVE_PORT, the raw-socket live
     * server (api/modules/tracking/live-socket.ts), the same stream at less memory each.
     */
    transport: { type: "string", default: "socket" },
    label: { type: "string", default: "" },
  },
});
const STREAMS = Number(args.streams);
const ORDERS = Math.max(STREAMS, Number(args.orders ?? STREAMS));
const MINUTES = Number(args.minutes);
const API_PROCESSES = Number(args["api-processes"]);
const API_POOL = Number(args["api-pool"] ?? Math.min(20, Math.floor(120 / API_PROCESSES)));
if (!Number.isInteger(API_POOL) || API_POOL < 1) throw new Error("--api-pool must be a positive integer");
const STREAMS_PER_CLIENT = 15_000;
const CLIENTS = Number(args.clients ?? Math.max(1, Math.ceil(STREAMS / STREAMS_PER_CLIENT)));
const RATE = Number(args.rate ?? Math.max(50, Math.round(ORDERS / 4)));
// Idle streams get no events by design: never judged starved.
const STARVE_AFTER_S = args.source === "idle" ? 1e9 : Number(args["starve-after"]);
/** A commit visible for less than this when a stream was listed quiet may still be on its way: not held against the fan-out. */
const STARVE_GRACE_MS = 10_000;
const REPORT_MS = 5_000;
/** The load generators report every second (their lines are deltas), so a restart is timed to about a second. */
const CLIENT_REPORT_MS = 1_000;
const FD_LIMIT = 20_000; // the hard limit on this box; each API and client process raises its soft limit to it
const SOURCE = args.source;
if (SOURCE !== "pipeline" && SOURCE !== "notify" && SOURCE !== "idle") throw new Error("--source must be pipeline, notify or idle");
const BATCH = Number(args.batch);
if (!Number.isInteger(BATCH) || BATCH < 1) throw new Error("--batch must be a positive integer");
const FORM = parsePayloadForm(args.form);
const TRANSPORT = args.transport;
if (TRANSPORT !== "http" && TRANSPORT !== "socket") throw new Error("--transport must be http or socket");
const ROOT = new URL("../", import.meta.url).pathname;
const command = `bun run bench:fanout -- ${process.argv.slice(2).join(" ")}`.trim();
const run = `${Date.now() % 1e8}`;
const PREFIX = `bench/${run}/`;
const log = (m: string) => console.error(`[fanout] ${m}`);

if (CLIENTS * STREAMS_PER_CLIENT < STREAMS) throw new Error(`--clients ${CLIENTS} cannot hold ${STREAMS} streams`);

const startedAt = new Date();
const scratch = await createScratchDatabase(`bench_fanout_${run}`);
const sql = connectDatabase(scratch.url, { max: 2 });
const children: { name: string; kill: () => void; exited: Promise<unknown> }[] = [];
let targetsFile: string | undefined;
let shuttingDown: Promise<void> | undefined;
const shutdown = () =>
  (shuttingDown ??= (async () => {
    for (const c of children.reverse()) c.kill();
    await Promise.race([Promise.all(children.map((c) => c.exited.catch(() => undefined))), Bun.sleep(30_000)]);
    await sql.end();
    // The API drains its streams on SIGTERM; its sessions must be gone before the database can be dropped.
    for (let attempt = 1; ; attempt++) {
      try {
        await scratch.drop();
        break;
      } catch (error) {
        if (attempt >= 10) throw error;
        await Bun.sleep(3_000);
      }
    }
    if (targetsFile) rmSync(targetsFile, { force: true });
  })());
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => void shutdown().finally(() => process.exit(130)));
}

try {
  log(`generating ${ORDERS} drivers and their orders in ${scratch.name}…`);
  await generateData(sql, {
    drivers: ORDERS, restaurants: Math.min(2_000, ORDERS), customers: Math.min(50_000, ORDERS), orders: 0,
    mode: "truncate", seed: 7, city: "nyc", online: false, progress: false,
  });
  const orders = await placeAssignedOrders(sql, ORDERS);
  const targets = await mintTrackingTokens(orders.slice(0, STREAMS).map((o) => o.orderId), 6 * 3600);
  targetsFile = `${tmpdir()}/fanout-${run}-targets.json`;
  writeFileSync(targetsFile, JSON.stringify(targets));
  const drivers = await readDrivers(sql, "nyc");

  const workers: WorkerProcess[] = [];
  const scrapeWorkers = async () => {
    const merged = new Map<string, number>();
    for (const w of workers) for (const [k, v] of await scrape(metricsPort(w))) merged.set(k, (merged.get(k) ?? 0) + v);
    return merged;
  };
  const metricsPort = (w: WorkerProcess) => Number(/"metricsPort":(\d+)/.exec(w.output())![1]);
  if (SOURCE === "pipeline") await startPipeline();
  else if (SOURCE === "notify") startNotices();
  // idle: no positions at all, the streams carry heartbeats only (what an idle stream costs, issue #15's 4 KB).

  // The ingest pipeline, as bench:e2e runs it: its own topics and MQTT root, narrow identities.
  async function startPipeline() {
    const pipeline = await benchPipeline(run);
    const bridge = await startNodeWorker("bridge", { ...pipeline.bridgeEnv, BRIDGE_CLIENT_ID: `bench-bridge-${run}` });
    children.push({ name: "bridge", kill: () => bridge.proc.kill("SIGTERM"), exited: bridge.proc.exited });
    await bridge.waitFor("mqtt connected");
    for (let i = 0; i < Number(args.workers); i++) {
      const w = await startNodeWorker("positions", {
        ...pipeline.workerEnv, DATABASE_URL: serviceUrl(scratch.url, "tracking_worker"),
      });
      children.push({ name: `positions-${i}`, kill: () => w.proc.kill("SIGTERM"), exited: w.proc.exited });
      await w.waitFor("partitions assign", 60_000);
      workers.push(w);
    }

    log(`fleet: ${drivers.length} drivers offering ${RATE} positions/s`);
    const fleet = await startFleet({
      drivers, rateHz: RATE / drivers.length, mqttUrl: process.env.MQTT_LOADGEN_URL ?? config().mqttUrl, city: "nyc",
      topicPrefix: PREFIX, driversPerConnection: 2_000, batch: BATCH, form: FORM,
    });
    children.push({ name: "fleet", kill: () => void fleet.stop(), exited: Promise.resolve() });
    // Warm-up: every driver's first position resumes its order's leg (a state change each); measure after that.
    await Bun.sleep(5_000);
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await Bun.sleep(1_000)) {
      if (((await scrapeWorkers()).get("kafka_consumer_lag_messages") ?? 0) < 2_000) break;
    }
  }

  /** The apply procedure's notices for the orders' drivers, RATE a second in ticks of 100 ms, round robin. */
  function startNotices() {
    const notifier = connectDatabase(scratch.url, { max: 1 });
    const perTick = Math.max(1, Math.round(RATE / 10));
    let next = 0;
    let stopped = false;
    const tick = async () => {
      while (!stopped) {
        const started = Date.now();
        const at = new Date(started).toISOString();
        const payloads: string[] = [];
        for (let i = 0; i < perTick; i++, next = (next + 1) % orders.length) {
          const o = orders[next]!;
          payloads.push(JSON.stringify({
            order_id: o.orderId, status: "assigned", driver_id: o.driverId, driver_state: "assigned",
            lat: 40.7 + Math.random() / 10, lon: -74 + Math.random() / 10, at, eta_seconds: 300,
          }));
        }
        // As one JSON array: postgres.js's text[] literal does not quote the braces inside JSON payloads.
        await notifier`
          select notify_order_tracking((select array_agg(p) from json_array_elements_text(${notifier.json(payloads)}::json) p))`;
        await Bun.sleep(Math.max(0, 100 - (Date.now() - started)));
      }
    };
    const running = tick();
    children.push({ name: "notices", kill: () => void (stopped = true), exited: running.then(() => notifier.end()) });
  }

  // The API, with its own port and the highest open-file limit this box allows.
  const port = 20_000 + (Number(run) % 20_000);
  // A port the kernel says is free (port + 1 was taken once: the API then could not listen).
  const livePort = TRANSPORT === "socket" ? await freePort() : port;
  const api = Bun.spawn(
    ["bash", "-c", `ulimit -n ${FD_LIMIT} && exec bun api/index.ts --processes ${API_PROCESSES}`],
    {
      cwd: ROOT, stdout: "ignore", stderr: "inherit",
      env: {
        ...process.env,
        API_PORT: String(port),
        LIVE_PORT: TRANSPORT === "socket" ? String(livePort) : "0",
        API_DB_POOL_MAX: String(API_POOL),
        DATABASE_URL: serviceUrl(scratch.url, "tracking_api"),
      },
    },
  );
  children.push({ name: "api", kill: () => api.kill("SIGTERM"), exited: api.exited });
  for (const deadline = Date.now() + 60_000; ; await Bun.sleep(250)) {
    if ((await fetch(`http://127.0.0.1:${port}/ready`).catch(() => undefined))?.status === 200) break;
    if (Date.now() > deadline) throw new Error("the API did not become ready in 60 s");
  }
  const apiPids = () => childPids(api.pid);
  await Bun.sleep(2_000);
  const apiBaseline = sampleAll(apiPids());
  log(`API: ${apiPids().length} process(es) on :${port}, streams on :${livePort} (${TRANSPORT}), ${(apiBaseline.rssBytes / 2 ** 20).toFixed(0)} MB before streams`);

  // The load generators: each its share of the streams, from source addresses of its own.
  interface ClientLine {
    open: number; positions: number; tracks: number; refused: number; reconnects: number; starved: number;
    neverEvent: number; quiet?: number[]; at: number; latency: Buckets; push: Buckets; rssBytes: number;
  }
  const latest: (ClientLine | undefined)[] = Array(CLIENTS).fill(undefined);
  const latestQuiet: { listedAtMs: number; streams: QuietStream[] }[] = Array.from({ length: CLIENTS }, () => ({ listedAtMs: 0, streams: [] }));
  const commits = createCommitWatch();
  let window = { positions: 0, tracks: 0, latency: {} as Buckets, push: {} as Buckets, starvedMax: 0, waitingOnIngestMax: 0 };
  /**
   * The quiet streams' verdict: with the pipeline, by their drivers' last applied position (driver_state.updated_at,
   * dated from when this process first read it); with bench-sent notices nothing is applied, so every quiet stream is
   * the fan-out's.
   */
  const judgeQuietNow = async () => {
    const quiet = latestQuiet.flatMap((q) => q.streams);
    if (quiet.length === 0 || SOURCE !== "pipeline") return { starved: quiet.length, waitingOnIngest: 0 };
    const readAt = Date.now();
    const rows = await sql<{ driver_id: string; ms: number }[]>`
      select driver_id, extract(epoch from updated_at) * 1000 as ms from driver_state
      where driver_id = any(${quiet.map((q) => orders[q.target]!.driverId)}::uuid[]) and position_at is not null`;
    commits.observe(rows.map((r) => ({ driverId: r.driver_id, atMs: Number(r.ms) })), readAt);
    const verdict = { starved: 0, waitingOnIngest: 0 };
    for (const q of latestQuiet) {
      const v = judgeQuiet(q.streams, (t) => commits.get(orders[t]!.driverId), q.listedAtMs, STARVE_GRACE_MS);
      verdict.starved += v.starved;
      verdict.waitingOnIngest += v.waitingOnIngest;
    }
    return verdict;
  };
  const clientPids: number[] = [];
  const perClient = Math.ceil(STREAMS / CLIENTS);
  for (let i = 0; i < CLIENTS; i++) {
    const addresses = [1, 2].map((j) => `127.0.${i + 1}.${j}`).join(",");
    const client = Bun.spawn(
      ["bash", "-c", `ulimit -n ${FD_LIMIT} && exec bun bench/fanout/load-client.ts "$@"`, "load-client",
       "--targets", targetsFile, "--from", String(i * perClient), "--to", String(Math.min(STREAMS, (i + 1) * perClient)),
       "--port", String(livePort), "--addresses", addresses, "--per-second", args["open-rate"],
       "--report-ms", String(CLIENT_REPORT_MS), "--starve-after-ms", String(STARVE_AFTER_S * 1000)],
      { cwd: ROOT, stdout: "pipe", stderr: "inherit" },
    );
    clientPids.push(client.pid);
    children.push({ name: `client-${i}`, kill: () => client.kill("SIGTERM"), exited: client.exited });
    void (async () => {
      let buffer = "";
      for await (const chunk of client.stdout as ReadableStream<Uint8Array>) {
        buffer += new TextDecoder().decode(chunk);
        for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
          const line = JSON.parse(buffer.slice(0, nl)) as ClientLine;
          buffer = buffer.slice(nl + 1);
          latest[i] = line;
          if (line.quiet) latestQuiet[i] = { listedAtMs: line.at, streams: decodeQuiet(line.quiet) };
          window.positions += line.positions;
          window.tracks += line.tracks;
          mergeBuckets(window.latency, line.latency);
          mergeBuckets(window.push, line.push ?? {});
        }
      }
    })();
  }
  const total = (k: keyof Omit<ClientLine, "latency" | "push" | "quiet" | "at">) => latest.reduce((a, l) => a + (l?.[k] ?? 0), 0);

  log(`opening ${STREAMS} streams from ${CLIENTS} client process(es)…`);
  const rampStarted = Date.now();
  const rampDeadline = rampStarted + (STREAMS / (Number(args["open-rate"]) * CLIENTS)) * 1000 + 120_000;
  while (Date.now() < rampDeadline && total("open") < STREAMS) {
    await Bun.sleep(REPORT_MS);
    log(`  ${total("open")} open, ${total("refused")} refused, API RSS ${(sampleAll(apiPids()).rssBytes / 2 ** 20).toFixed(0)} MB`);
  }
  const rampSeconds = (Date.now() - rampStarted) / 1000;
  // Starvation counts from here: a stream that got its snapshot during the ramp is judged from then.
  await Bun.sleep(REPORT_MS);

  const rows: MinuteRow[] = [];
  for (let minute = 1; minute <= MINUTES; minute++) {
    const apiBefore = sampleAll(apiPids());
    const clientsBefore = sampleAll(clientPids.flatMap((p) => [p, ...childPids(p)]));
    const workerBefore = await scrapeWorkers();
    window = { positions: 0, tracks: 0, latency: {}, push: {}, starvedMax: 0, waitingOnIngestMax: 0 };
    const started = Date.now();
    while (Date.now() - started < 60_000) {
      await Bun.sleep(REPORT_MS);
      const verdict = await judgeQuietNow();
      window.starvedMax = Math.max(window.starvedMax, verdict.starved);
      window.waitingOnIngestMax = Math.max(window.waitingOnIngestMax, verdict.waitingOnIngest);
    }
    const seconds = (Date.now() - started) / 1000;
    const apiAfter = sampleAll(apiPids());
    const clientsAfter = sampleAll(clientPids.flatMap((p) => [p, ...childPids(p)]));
    const workerAfter = await scrapeWorkers();
    const open = total("open");
    const row: MinuteRow = {
      minute,
      streams: open,
      refused: total("refused"),
      reconnects: total("reconnects"),
      apiCpuPercent: Math.round(((apiAfter.cpuSeconds - apiBefore.cpuSeconds) / seconds) * 100),
      apiRssMb: +(apiAfter.rssBytes / 2 ** 20).toFixed(1),
      apiBytesPerStream: open > 0 ? Math.round((apiAfter.rssBytes - apiBaseline.rssBytes) / open) : 0,
      clientCpuPercent: Math.round(((clientsAfter.cpuSeconds - clientsBefore.cpuSeconds) / seconds) * 100),
      clientRssMb: +(total("rssBytes") / 2 ** 20).toFixed(1),
      eventsPerSecond: Math.round(window.positions / seconds),
      tracksPerSecond: +(window.tracks / seconds).toFixed(1),
      latencyP50Ms: Math.round(quantileMs(window.latency, 0.5)),
      latencyP99Ms: Math.round(quantileMs(window.latency, 0.99)),
      latencySamples: bucketCount(window.latency),
      pushP50Ms: Math.round(quantileMs(window.push, 0.5)),
      pushP99Ms: Math.round(quantileMs(window.push, 0.99)),
      pushSamples: bucketCount(window.push),
      sendCommitP50Ms: Math.round(histogramQuantile(workerBefore, workerAfter, "position_freshness_from_send_seconds", 0.5) * 1000),
      sendCommitP99Ms: Math.round(histogramQuantile(workerBefore, workerAfter, "position_freshness_from_send_seconds", 0.99) * 1000),
      commitP50Ms: Math.round(histogramQuantile(workerBefore, workerAfter, "position_freshness_from_device_seconds", 0.5) * 1000),
      commitP99Ms: Math.round(histogramQuantile(workerBefore, workerAfter, "position_freshness_from_device_seconds", 0.99) * 1000),
      appliedPerSecond: Math.round(((workerAfter.get("positions_applied_total") ?? 0) - (workerBefore.get("positions_applied_total") ?? 0)) / seconds),
      noticesSkipped: (workerAfter.get("db_order_notices_skipped") ?? 0),
      starvedMax: window.starvedMax,
      waitingOnIngestMax: window.waitingOnIngestMax,
      load: loadAverage(),
    };
    rows.push(row);
    log(`minute ${minute}: ${JSON.stringify(row)}`);
  }

  let restart: { streamsBefore: number; backWithinSeconds: number | null } | undefined;
  if (args["restart-api"]) {
    const before = total("open");
    const pids = apiPids();
    log(`restarting the ${pids.length} API process(es) under ${before} streams (SIGKILL; the supervisor restarts them)…`);
    const killedAt = Date.now();
    for (const pid of pids) process.kill(pid, "SIGKILL");
    const reconnectsBefore = total("reconnects");
    let back: number | null = null;
    while (Date.now() - killedAt < 60_000) {
      await Bun.sleep(500);
      if (total("reconnects") - reconnectsBefore >= before && total("open") >= before) {
        back = (Date.now() - killedAt) / 1000;
        break;
      }
    }
    restart = { streamsBefore: before, backWithinSeconds: back };
    log(`restart: ${JSON.stringify(restart)}`);
  }

  const stem = resultStem(`fanout${args.label ? `-${args.label}` : ""}`, startedAt);
  const result = {
    command,
    commit: Bun.spawnSync(["git", "rev-parse", "HEAD"], { cwd: ROOT }).stdout.toString().trim(),
    startedAt: startedAt.toISOString(),
    machine: { cpus: navigator.hardwareConcurrency, loadAtStart: rows[0]?.load, bun: Bun.version },
    params: { streams: STREAMS, orders: ORDERS, source: SOURCE, transport: TRANSPORT, minutes: MINUTES, apiProcesses: API_PROCESSES, apiPool: API_POOL, clients: CLIENTS, rate: RATE,
      starveAfterS: STARVE_AFTER_S, starveGraceMs: STARVE_GRACE_MS, openRate: Number(args["open-rate"]), workers: Number(args.workers), batch: BATCH, form: FORM },
    latencyClock: SOURCE === "pipeline"
      ? "push: published_at (the database's clock as it sends the notices, just before the commit) -> client receipt; latency: position device time (simulated phone, same machine) -> client receipt; sendCommit: the worker's newest fix of a message -> commit over the same minute (commit: every fix -> commit)"
      : "latency: the notice's send time (the bench's clock, just before its commit) -> client receipt; push: its published_at -> client receipt",
    apiBaselineRssMb: +(apiBaseline.rssBytes / 2 ** 20).toFixed(1),
    rampSeconds,
    minutes: rows,
    restart,
  };
  writeFileSync(`${stem}.json`, JSON.stringify(result, null, 2));
  await writeFanoutPlot(`${stem}.svg`, rows, STREAMS);
  printTable(result.params, rows);
  console.log(`\ncommand: ${command}\nwritten ${stem}.json and ${stem}.svg`);
} finally {
  await shutdown();
}
process.exit(0);
