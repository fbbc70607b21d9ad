// Several workers share the partitions: one joins mid-stream, another leaves; every position lands exactly once.
import { afterAll, beforeAll, expect, test } from "bun:test";
import mqtt, { type MqttClient } from "mqtt";
import { config } from "../../lib/config.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { eventually, startNodeWorker, type WorkerProcess } from "../../tools/node-workers.ts";
import { isolatedPipeline, seedDrivers } from "../../tools/pipeline.ts";

const run = `rb${process.pid}${Date.now() % 1e6}`;
let PREFIX: string;
let db: TestDatabase;
let publisher: MqttClient;
const processes: WorkerProcess[] = [];
let env: Record<string, string>;
let drivers: string[] = [];

const trailCount = async () => (await db.sql<{ n: number }[]>`select count(*)::int n from position_trail`)[0]!.n;

beforeAll(async () => {
  db = await freshDatabase("rebalance");
  const pipeline = await isolatedPipeline(run, db.url, 8);
  PREFIX = pipeline.prefix;
  drivers = await seedDrivers(db.sql, 400);
  env = { ...pipeline.env, BATCH_MAX_MESSAGES: "500" };
  const bridge = await startNodeWorker("bridge", env);
  processes.push(bridge);
  await bridge.waitFor("mqtt connected");
  publisher = await mqtt.connectAsync(config().mqttUrl, { clientId: `pub-${run}` });
});

afterAll(async () => {
  await publisher?.endAsync();
  for (const p of processes) p.proc.kill("SIGTERM");
  await Promise.all(processes.map((p) => p.proc.exited));
  await db?.drop();
});

test("a worker joining and another leaving mid-stream lose nothing and apply nothing twice", async () => {
  const t0 = Math.floor(Date.now() / 1000) - 300;
  const ROUNDS = 30;
  const first = await startNodeWorker("positions", env);
  processes.push(first);
  await first.waitFor("partitions assign");

  let second: WorkerProcess | undefined;
  for (let round = 0; round < ROUNDS; round++) {
    await Promise.all(
      drivers.map((id, d) =>
        publisher.publishAsync(`${PREFIX}drivers/${id}/location`, JSON.stringify({ lat: 40.7 + d * 0.001, lon: -74, tst: t0 + round * 4 }), { qos: 1 }),
      ),
    );
    if (round === 10) {
      second = await startNodeWorker("positions", env);
      processes.push(second);
    }
    if (round === 20) {
      // The first leaves gracefully while messages keep coming: its partitions move to the second.
      first.proc.kill("SIGTERM");
      await first.proc.exited;
    }
  }
  await eventually(async () => (await trailCount()) >= drivers.length * ROUNDS, 60_000, "every position");
  expect(await trailCount()).toBe(drivers.length * ROUNDS);
  expect(second!.output()).toContain("partitions assign");
  const [stale] = await db.sql<{ n: number }[]>`
    select count(*)::int n from driver_state where position_at <> to_timestamp(${t0 + (ROUNDS - 1) * 4})`;
  expect(stale!.n).toBe(0);
  const [online] = await db.sql<{ n: number }[]>`
    select count(*)::int n from state_history where event = 'online'`;
  expect(online!.n).toBe(drivers.length);
});
