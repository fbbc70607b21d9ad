// The database goes away under a running worker: it must neither crash nor commit what it could not apply, and
// must apply everything once the database is back.
import { afterAll, beforeAll, expect, test } from "bun:test";
import mqtt, { type MqttClient } from "mqtt";
import { config } from "../../lib/config.ts";
import type { Sql } from "../../lib/db.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { eventually, startNodeWorker, type WorkerProcess } from "../../tools/node-workers.ts";
import { isolatedPipeline, seedDrivers } from "../../tools/pipeline.ts";
import { startTcpProxy, type TcpProxy } from "../../tools/tcp-proxy.ts";

const MAX_POLL_INTERVAL_MS = 12_000;
const run = `bp${process.pid}${Date.now() % 1e6}`;
let PREFIX: string;
let db: TestDatabase;
let proxy: TcpProxy;
let publisher: MqttClient;
let bridge: WorkerProcess;
let worker: WorkerProcess;
let drivers: string[] = [];

const metricsPort = () => Number(/"metricsPort":(\d+)/.exec(worker.output())![1]);
const trailCount = async (sql: Sql) => (await sql<{ n: number }[]>`select count(*)::int n from position_trail`)[0]!.n;

beforeAll(async () => {
  db = await freshDatabase("backpressure");
  const target = new URL(db.url);
  proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
  const viaProxy = Object.assign(new URL(db.url), { port: String(proxy.port) }).toString();
  const pipeline = await isolatedPipeline(run, viaProxy, 2);
  PREFIX = pipeline.prefix;
  drivers = await seedDrivers(db.sql, 50);
  // Not ready after half a second of failing batches, so the test sees /ready follow the cut. A short poll interval,
  // so the test can hold the cut longer than it (a member that stops polling for that long is dropped from its group).
  const env = { ...pipeline.env, WORKER_STALLED_AFTER_MS: "500", KAFKA_MAX_POLL_INTERVAL_MS: String(MAX_POLL_INTERVAL_MS) };
  bridge = await startNodeWorker("bridge", env);
  await bridge.waitFor("mqtt connected");
  worker = await startNodeWorker("positions", env);
  await worker.waitFor("partitions assign");
  publisher = await mqtt.connectAsync(config().mqttUrl, { clientId: `pub-${run}` });
});

afterAll(async () => {
  await publisher?.endAsync();
  for (const p of [bridge, worker]) p?.proc.kill("SIGTERM");
  await Promise.all([bridge?.proc.exited, worker?.proc.exited]);
  await proxy?.close();
  await db?.drop();
});

/** The longest hold the worker has reported so far (its "holding the batch" lines), in ms. */
const longestHoldMs = () =>
  Math.max(0, ...[...worker.output().matchAll(/holding the batch[^\n]*"heldMs":(\d+)/g)].map((m) => Number(m[1])));

test("the worker reports its Kafka lag to the database and exports the age of the database's jobs (0024/0025)", async () => {
  await db.sql`select stamp_upkeep('sweep_offline_drivers')`; // as the sweep job does after each sweep
  const metrics = async () => (await fetch(`http://127.0.0.1:${metricsPort()}/metrics`)).text();
  await eventually(async () => /upkeep_job_age_seconds\{job="sweep_offline_drivers"[^}]*\} \d/.test(await metrics()), 30_000, "the job's age");
  const age = Number(/upkeep_job_age_seconds\{job="sweep_offline_drivers"[^}]*\} ([\d.e+-]+)/.exec(await metrics())![1]);
  expect(age).toBeGreaterThanOrEqual(0);
  expect(age).toBeLessThan(60);
  // Its lag report: one row, named after its host and pid, fresh (the compaction job sums these).
  await eventually(async () => (await db.sql`select 1 from ingest_lag where worker like ${`%:${worker.proc.pid}`}`).length === 1, 30_000, "the lag report");
  const [{ n }] = (await db.sql`select count(*)::int as n from ingest_lag where reported_at > now() - interval '10 seconds'`) as unknown as [{ n: number }];
  expect(n).toBe(1);
});

test("while PostgreSQL is unreachable, for longer than max.poll.interval.ms, the worker retries, stays in its group, and applies everything once it is back", async () => {
  const t0 = Math.floor(Date.now() / 1000) - 200;
  const publishRound = (round: number) =>
    Promise.all(
      drivers.map((id, d) =>
        publisher.publishAsync(
          `${PREFIX}drivers/${id}/location`,
          JSON.stringify({ lat: 40.7 + d * 0.001, lon: -74, tst: t0 + round * 4 }),
          { qos: 1 },
        ),
      ),
    );
  await publishRound(0);
  await eventually(async () => (await trailCount(db.sql)) === 50, 30_000, "the first round applied");

  proxy.cut();
  await publishRound(1);
  await publishRound(2);
  await worker.waitFor("batch apply failed; retrying", 30_000);
  expect(worker.proc.exitCode).toBeNull();
  // It cannot make progress, and says so: /ready answers 503 (an orchestrator stops routing to it or restarts it).
  const ready = async () => (await fetch(`http://127.0.0.1:${metricsPort()}/ready`)).status;
  await eventually(async () => (await ready()) === 503, 30_000, "/ready to answer 503 during the cut");
  expect(await trailCount(db.sql)).toBe(50);
  // The cut outlasts librdkafka's poll interval twice over: the worker holds the batch and keeps polling meanwhile.
  // (Before holdWhile, the worker died here: librdkafka's "max.poll.interval.ms exceeded", fatal.)
  await eventually(
    async () => longestHoldMs() > 2 * MAX_POLL_INTERVAL_MS || worker.proc.exitCode !== null,
    120_000,
    "a hold of twice the poll interval",
  );
  expect(worker.proc.exitCode).toBeNull();
  expect(longestHoldMs()).toBeGreaterThan(2 * MAX_POLL_INTERVAL_MS);

  proxy.restore();
  await eventually(async () => (await trailCount(db.sql)) === 150, 60_000, "the rounds published while it was down");
  expect(worker.proc.exitCode).toBeNull();
  expect(await ready()).toBe(200);
  const [late] = await db.sql<{ n: number }[]>`
    select count(*)::int n from driver_state where position_at = to_timestamp(${t0 + 8})`;
  expect(late!.n).toBe(50);
  // It never left the group: no poll-interval error, no failed commit, its partitions never taken away.
  expect(worker.output()).not.toContain("max.poll.interval.ms");
  expect(worker.output()).not.toContain("offset commit failed");
  expect(worker.output()).not.toContain("partitions revoke");
});
