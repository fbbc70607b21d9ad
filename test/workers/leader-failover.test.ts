// A Kafka partition leader killed mid-stream (SIGKILL) on a 3-node cluster of the test's own (bin/stack kafka-cluster,
// the code and configuration of `bin/stack up --kafka-brokers 3`, beside the dev stack's single broker): a keyed
// stream goes through the bridge's forwarder and the project's idempotent acks=all producer while a real position
// worker applies it into a fresh database. Every acknowledged position must be in the trail exactly once, nothing
// dead-lettered, the group's lag back to zero, and the killed node back in every partition's in-sync replicas.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import type { Subprocess } from "bun";
import { bundleForNode } from "../../lib/node-bundle.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { readTopic } from "../../tools/kafka-cli.ts";
import { kafkaCluster, type PartitionState } from "../../tools/kafka-cluster.ts";
import { eventually, startNodeWorker, type WorkerProcess } from "../../tools/node-workers.ts";
import { kafkaIdentity, seedDrivers } from "../../tools/pipeline.ts";
import { serviceUrl } from "../../tools/service-url.ts";

const DIR = new URL("../../.stack/test-kafka-cluster", import.meta.url).pathname;
// Beside the dev stack's 9092-9097 (its own single broker, or its cluster).
const cluster = kafkaCluster(DIR, 19092);
const run = `kf${process.pid}${Date.now() % 1e6}`;
const TOPIC = `test-pos-${run}`;
const DLQ = `test-dlq-${run}`;
const GROUP = `test-${run}`;
const PARTITIONS = 8;
const DRIVERS = 200;
const RATE = 1_000; // messages/s at most: a steady stream a busy 2-core box sustains beside three brokers
// Steps are seconds after T0: a stream of up to 3,000 steps per driver stays in the past.
const T0 = Math.floor(Date.now() / 1000) - 3_000;
const LOG = `${DIR}/stream-${run}.json`;
/** Where the figures go when a benchmark runs this test (bench/kafka-failover.ts). */
const RESULT_FILE = process.env.KAFKA_FAILOVER_RESULT;
/** Keep the cluster between runs (repeated benchmark runs, debugging): `up` is idempotent, a killed node restarts. */
const REUSE_CLUSTER = process.env.KAFKA_FAILOVER_REUSE_CLUSTER === "1";

let db: TestDatabase;
let worker: WorkerProcess | undefined;
let streamProc: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let streamOutput = "";
let drivers: string[] = [];
const figures: Record<string, number> = {};

const streamScript = () => bundleForNode(new URL("../../tools/kafka-stream.ts", import.meta.url).pathname, "tools");
const env = (identity: Record<string, string>) => ({
  ...process.env,
  ...identity,
  KAFKA_BOOTSTRAP_SERVERS: cluster.bootstrap,
  KAFKA_TOPIC: TOPIC,
  KAFKA_DLQ_TOPIC: DLQ,
  KAFKA_GROUP_ID: GROUP,
});
const admin = () => env({});

/** One run of tools/kafka-stream.ts to its end; its last JSON line. */
async function kafkaStream(args: string[], identity: Record<string, string>): Promise<Record<string, unknown>> {
  const proc = Bun.spawn(["node", await streamScript(), ...args], { env: identity, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`kafka-stream ${args[0]} failed (${code}): ${stdout}${stderr}`);
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

interface Progress {
  sent: number;
  acked: number;
  failed: number;
}
/** The stream's last complete progress line (a chunk may end mid-line). */
const progress = (): Progress => {
  const line = streamOutput.slice(0, streamOutput.lastIndexOf("\n")).split("\n").findLast((l) => l.startsWith("{"));
  return line ? (JSON.parse(line) as Progress) : { sent: 0, acked: 0, failed: 0 };
};

const trailCount = async () => (await db.sql<{ n: number }[]>`select count(*)::int n from position_trail`)[0]!.n;
/** Positions in the trail of the steps before `step` (every driver's first `step` positions). */
const trailCountBefore = async (step: number) =>
  (await db.sql<{ n: number }[]>`
    select count(*)::int n from position_trail where recorded_at < to_timestamp(${T0 + step})`)[0]!.n;
const fullyReplicated = (partitions: PartitionState[]) =>
  partitions.length === PARTITIONS && partitions.every((p) => p.leader > 0 && p.isr.length === 3);
const timed = async (what: string, fn: () => Promise<unknown>) => {
  const started = performance.now();
  await fn();
  figures[what] = Math.round(performance.now() - started);
};

beforeAll(async () => {
  // A cluster left by an interrupted run (its pid files say which processes are its own) goes first.
  if (!REUSE_CLUSTER) {
    await cluster.down();
    rmSync(DIR, { recursive: true, force: true });
  }
  await timed("clusterStartMs", () => cluster.up());
  db = await freshDatabase("failover");
  drivers = await seedDrivers(db.sql, DRIVERS);
  writeFileSync(`${DIR}/drivers-${run}.json`, JSON.stringify(drivers));
  await kafkaStream(["create-topics", `${TOPIC}:${PARTITIONS}`, `${DLQ}:1`], admin());
  await eventually(async () => fullyReplicated(await cluster.partitions(TOPIC)), 60_000, "the topic on all three nodes");
  worker = await startNodeWorker("positions", {
    ...env(kafkaIdentity("test-worker", "KAFKA_TEST_WORKER_PASSWORD")),
    DATABASE_URL: serviceUrl(db.url, "tracking_worker"),
    METRICS_PORT: "0",
    OFFLINE_AFTER: "86400",
    BATCH_MAX_WAIT_MS: "50",
  });
  await worker.waitFor("partitions assign", 120_000);
}, 600_000);

afterAll(async () => {
  streamProc?.kill("SIGKILL");
  worker?.proc.kill("SIGTERM");
  await Promise.all([streamProc?.exited, worker?.proc.exited]);
  rmSync(`${DIR}/drivers-${run}.json`, { force: true });
  rmSync(LOG, { force: true });
  if (!REUSE_CLUSTER) {
    await cluster.down();
    rmSync(DIR, { recursive: true, force: true });
  }
  await db?.drop();
  if (RESULT_FILE) writeFileSync(RESULT_FILE, JSON.stringify(figures));
  console.log(`kafka leader failover: ${JSON.stringify(figures)}`);
}, 180_000);

test("the leader of the busiest partition killed mid-stream: nothing lost, nothing twice, lag back to zero", async () => {
  streamProc = Bun.spawn(
    ["node", await streamScript(), "stream", `${DIR}/drivers-${run}.json`, String(RATE), LOG, String(T0)],
    { env: env(kafkaIdentity("test-bridge", "KAFKA_TEST_BRIDGE_PASSWORD")), stdout: "pipe", stderr: "pipe" },
  );
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of streamProc!.stdout) streamOutput += decoder.decode(chunk);
  })();
  const stderr = new Response(streamProc.stderr).text();
  const streamFailed = async (error: unknown) => {
    throw new Error(`${error}\nstream: ${streamOutput.slice(-500)}${await Promise.race([stderr, ""])}\nworker: ${worker!.output().slice(-2000)}`);
  };

  // Mid-stream: records flowing and being applied.
  await eventually(async () => progress().acked >= 3_000 && (await trailCount()) > 0, 120_000, "the stream under way").catch(
    streamFailed,
  );
  const offsets = await cluster.endOffsets(TOPIC, PARTITIONS);
  const busiest = offsets.indexOf(Math.max(...offsets));
  const leader = (await cluster.partitions(TOPIC)).find((p) => p.partition === busiest)!.leader;
  const ledBefore = (await cluster.partitions(TOPIC)).filter((p) => p.leader === leader).map((p) => p.partition);
  const sentAtKill = progress().sent;
  const killedAt = Date.now();
  process.kill(cluster.nodePid(leader), "SIGKILL");

  // The controller fences the dead node (broker session timeout) and moves its partitions to in-sync followers.
  await timed("leaderMovedMs", () =>
    eventually(
      async () => (await cluster.partitions(TOPIC)).every((p) => p.leader > 0 && p.leader !== leader),
      120_000,
      `new leaders for partitions ${ledBefore.join(",")}`,
    ),
  );
  // End to end: every message sent before the kill (every driver's steps up to then) reaches the trail.
  const stepsBeforeKill = Math.floor(sentAtKill / DRIVERS);
  await eventually(
    async () => (await trailCountBefore(stepsBeforeKill)) === stepsBeforeKill * DRIVERS,
    120_000,
    "every position sent before the kill applied",
  ).catch(streamFailed);
  figures.endToEndRecoveryMs = Date.now() - killedAt;

  // Restarted, the node catches up from the leaders and rejoins every partition's in-sync replicas.
  const ackedBeforeRestart = progress().acked;
  await timed("restartMs", () => cluster.up());
  await timed("rejoinMs", () =>
    eventually(async () => fullyReplicated(await cluster.partitions(TOPIC)), 120_000, "node back in sync"),
  );
  // Still mid-stream: more records acknowledged after the node is back, then the stream ends.
  const ackedAtRejoin = progress().acked;
  await eventually(async () => progress().acked >= ackedAtRejoin + 2_000, 120_000, "the stream after the rejoin").catch(
    streamFailed,
  );
  expect(ackedAtRejoin).toBeGreaterThan(ackedBeforeRestart);
  streamProc.kill("SIGTERM");
  expect(await streamProc.exited).toBe(0);
  const done = JSON.parse(streamOutput.trim().split("\n").at(-1)!) as Progress & { done: boolean; firstError: string };
  expect(done.firstError).toBe("");
  expect(done.failed).toBe(0);
  expect(done.acked).toBe(done.sent);

  // Producer recovery: the last record sent before the kill was acknowledged this long after it.
  const log = JSON.parse(await Bun.file(LOG).text()) as [number, number, number][];
  expect(log.length).toBe(done.sent);
  figures.producerRecoveryMs = Math.max(0, ...log.filter(([, sent]) => sent < killedAt).map(([, , acked]) => acked - killedAt));
  figures.maxAckLatencyMs = Math.max(...log.map(([, sent, acked]) => acked - sent));
  figures.positions = done.sent;

  await eventually(async () => (await trailCount()) >= done.acked, 120_000, "every acknowledged position applied").catch(
    streamFailed,
  );
  // Exactly the positions acknowledged, each once: driver d has steps 0..n_d-1, record i = (i mod drivers, i div drivers).
  const perDriver = await db.sql<{ driver_id: string; n: number; distinct_n: number; first: number; last: number }[]>`
    select driver_id, count(*)::int n, count(distinct recorded_at)::int distinct_n,
           extract(epoch from min(recorded_at))::int first, extract(epoch from max(recorded_at))::int last
    from position_trail group by driver_id`;
  expect(perDriver.length).toBe(DRIVERS);
  const byDriver = new Map(perDriver.map((r) => [r.driver_id, r]));
  const wrong = drivers.flatMap((id, d) => {
    const steps = Math.floor(done.sent / DRIVERS) + (d < done.sent % DRIVERS ? 1 : 0);
    const row = byDriver.get(id);
    const expected = { n: steps, distinct_n: steps, first: T0, last: T0 + steps - 1 };
    return row && row.n === expected.n && row.distinct_n === expected.distinct_n && row.first === expected.first &&
      row.last === expected.last
      ? []
      : [{ id, expected, got: row }];
  });
  expect(wrong).toEqual([]);
  expect(await trailCount()).toBe(done.acked);
  // Nothing refused on the way (a reordered or duplicated record would show as out_of_order or duplicate here).
  expect(await readTopic(DLQ, { bootstrap: cluster.bootstrap })).toEqual([]);

  // The group recovers: its committed offsets reach every partition's end.
  await timed("lagZeroAfterStreamMs", () =>
    eventually(async () => (await kafkaStream(["group-lag", GROUP, TOPIC], admin())).lag === 0, 120_000, "lag zero"),
  );
}, 600_000);
