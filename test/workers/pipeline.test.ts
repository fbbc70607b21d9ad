// End to end on the real servers: MQTT → bridge (Node) → Kafka → position worker (Node) → PostGIS, and the DLQ.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import mqtt, { type MqttClient } from "mqtt";
import { config } from "../../lib/config.ts";
import { parseRefused } from "../../lib/dead-letter.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { readTopic } from "../../tools/kafka-cli.ts";
import { eventually, startNodeWorker, type WorkerProcess } from "../../tools/node-workers.ts";
import { isolatedPipeline, seedDrivers } from "../../tools/pipeline.ts";

const run = `pl${process.pid}${Date.now() % 1e6}`;
let dlq: string;
let PREFIX: string;
let db: TestDatabase;
let publisher: MqttClient;
let bridge: WorkerProcess;
let worker: WorkerProcess;
let env: Record<string, string>;
let drivers: string[] = [];
const T0 = Math.floor(Date.now() / 1000) - 3_000;

const position = (d: number, i: number) => ({
  lat: 40.70 + d * 0.0001 + i * 0.00005,
  lon: -74.0 + d * 0.0001,
  tst: T0 + i * 4,
  acc: 5,
  vel: 20,
});

const trailCount = async () => (await db.sql<{ n: number }[]>`select count(*)::int n from position_trail`)[0]!.n;

beforeAll(async () => {
  db = await freshDatabase("pipeline");
  const pipeline = await isolatedPipeline(run, db.url, 4);
  ({ dlq, prefix: PREFIX } = pipeline);
  drivers = await seedDrivers(db.sql, 1_000);
  // Two parallel apply transactions per batch: the checks below hold for a batch split by driver, too.
  env = { ...pipeline.env, BATCH_MAX_WAIT_MS: "50", APPLY_CONNECTIONS: "2" };
  bridge = await startNodeWorker("bridge", env);
  await bridge.waitFor("mqtt connected");
  worker = await startNodeWorker("positions", env);
  await worker.waitFor("partitions assign");
  publisher = await mqtt.connectAsync(config().mqttUrl, { clientId: `test-pub-${run}` });
});

afterAll(async () => {
  await publisher?.endAsync();
  for (const p of [bridge, worker]) p?.proc.kill("SIGTERM");
  await Promise.all([bridge?.proc.exited, worker?.proc.exited]);
  await db?.drop();
});

describe("pipeline", () => {
  test("20,000 positions of 1,000 drivers: valid ones in the trail once, latest in the state, the rest in the DLQ", async () => {
    const sends: Promise<unknown>[] = [];
    const publish = (t: string, payload: string) => sends.push(publisher.publishAsync(t, payload, { qos: 1 }));
    drivers.forEach((id, d) => {
      for (let m = 0; m < 4; m++) {
        const batch = Array.from({ length: 4 }, (_, k) => position(d, m * 4 + k));
        publish(`${PREFIX}drivers/${id}/location`, JSON.stringify(batch));
      }
      // A redelivered message: its 4 positions are duplicates, never applied twice and never dead-lettered.
      publish(`${PREFIX}drivers/${id}/location`, JSON.stringify(Array.from({ length: 4 }, (_, k) => position(d, k))));
    });
    for (let i = 0; i < 50; i++) {
      publish(`${PREFIX}drivers/${drivers[i]}/location`, "{not json");
      publish(`${PREFIX}drivers/${drivers[i]}/location`, JSON.stringify({ lat: 123, lon: 0, tst: T0 }));
      publish(`${PREFIX}drivers/${crypto.randomUUID()}/location`, JSON.stringify(position(i, 3)));
    }
    await Promise.all(sends);
    await eventually(async () => (await trailCount()) >= 16_000, 60_000, "16,000 positions in the trail");

    // Late positions (older than each driver's latest, never seen before) arrive after the fact.
    await Promise.all(
      drivers.slice(0, 100).map((id, d) =>
        publisher.publishAsync(`${PREFIX}drivers/${id}/location`, JSON.stringify({ ...position(d, 2), tst: T0 + 2 * 4 + 1 }), {
          qos: 1,
        }),
      ),
    );
    const wanted = { out_of_order: 100, malformed_json: 50, invalid_coordinates: 50, unknown_driver: 50 };
    await eventually(
      async () => (await readTopic(dlq)).length >= Object.values(wanted).reduce((a, b) => a + b, 0),
      60_000,
      "dead letters",
    );

    expect(await trailCount()).toBe(16_000);
    const mismatched = await db.sql<{ n: number }[]>`
      select count(*)::int n from driver_state
      where position_at is distinct from to_timestamp(${T0 + 15 * 4}) or status <> 'available'`;
    expect(mismatched[0]!.n).toBe(0);
    const [first] = await db.sql<{ lat: number; lon: number }[]>`
      select lat, lon from driver_state where driver_id = ${drivers[0]!}`;
    expect(first!.lat).toBeCloseTo(position(0, 15).lat, 9);
    expect(first!.lon).toBeCloseTo(position(0, 15).lon, 9);
    // Each driver came online exactly once, however often its positions were delivered.
    const [online] = await db.sql<{ n: number }[]>`
      select count(*)::int n from state_history where entity = 'driver' and event = 'online'`;
    expect(online!.n).toBe(1_000);

    const letters = await readTopic(dlq);
    const byReason: Record<string, number> = {};
    for (const l of letters) byReason[l.reason] = (byReason[l.reason] ?? 0) + 1;
    expect(byReason).toEqual(wanted);
    const malformed = letters.find((l) => l.reason === "malformed_json");
    expect(malformed!.value).toBe("{not json");
  });

  test("the original producer's form on sensor/data moves its driver", async () => {
    const id = drivers[999]!;
    const tst = Math.floor(Date.now() / 1000);
    await publisher.publishAsync(`${PREFIX}sensor/data`, JSON.stringify({ driver_id: id, timestamp: tst, lat: 40.75, lon: -73.99 }), {
      qos: 1,
    });
    await eventually(
      async () =>
        (await db.sql`select 1 from driver_state where driver_id = ${id} and position_at = to_timestamp(${tst})`)
          .length === 1,
      30_000,
      "the legacy position applied",
    );
    const [row] = await db.sql<{ lat: number; lon: number; h3: bigint }[]>`
      select lat, lon, h3 from driver_state where driver_id = ${id}`;
    expect(row!.lat).toBe(40.75);
    expect(row!.lon).toBe(-73.99);
    expect(row!.h3).toBeGreaterThan(0n);
  });

  test("a worker killed with SIGKILL mid-stream loses nothing and applies nothing twice", async () => {
    const before = await trailCount();
    const base = Math.floor(Date.now() / 1000) - 600;
    // 999 drivers (the last one reported a newer position through sensor/data above), 5 messages of 4 fixes each.
    const publish = (messages: number[]) =>
      drivers.slice(0, 999).flatMap((id, d) =>
        messages.map((m) => {
          const batch = Array.from({ length: 4 }, (_, k) => ({ ...position(d, 0), tst: base + (m * 4 + k) * 4 }));
          return publisher.publishAsync(`${PREFIX}drivers/${id}/location`, JSON.stringify(batch), { qos: 1 });
        }),
      );
    // The kill comes once the first new batch is in, while the first two messages of each driver may still be in
    // flight and before the other three are sent: mid-stream by construction, however fast the worker applies.
    const firstSends = publish([0, 1]);
    await eventually(async () => (await trailCount()) > before, 30_000, "the first new batch");
    worker.proc.kill("SIGKILL");
    await worker.proc.exited;
    const atKill = await trailCount();
    await Promise.all(firstSends);
    await Promise.all(publish([2, 3, 4]));
    worker = await startNodeWorker("positions", env);
    await eventually(async () => (await trailCount()) >= before + 19_980, 60_000, "all 19,980 new positions").catch(
      async (error) => {
        throw new Error(`${error}; trail ${await trailCount()} of ${before + 19_980}\n${worker.output()}\n${bridge.output()}`);
      },
    );
    expect(atKill).toBeLessThan(before + 19_980);
    expect(await trailCount()).toBe(before + 19_980);
    const [stale] = await db.sql<{ n: number }[]>`
      select count(*)::int n from driver_state
      where driver_id <> ${drivers[999]!} and position_at <> to_timestamp(${base + 19 * 4})`;
    expect(stale!.n).toBe(0);
  });

  // One dead letter per refused message, its bytes once, however many of its positions were refused; a later
  // message of the same driver from the same producer marks when everything of the first has been written.
  const lettersOf = async (driverId: string) => (await readTopic(dlq)).filter((l) => l.key === driverId);
  const refusedIndexes = (header: string) => parseRefused(header).map((r) => r.index);

  test("the bridge: 1 good + 499 bad positions in one message → one dead letter listing the 499", async () => {
    const id = drivers[998]!;
    const now = Math.floor(Date.now() / 1000);
    const payload = JSON.stringify([
      { ...position(998, 16), tst: now - 100 },
      ...Array.from({ length: 499 }, (_, i) => ({ lat: 123, lon: -74, tst: now - 99 + i / 100 })),
    ]);
    await publisher.publishAsync(`${PREFIX}drivers/${id}/location`, payload, { qos: 1 });
    await publisher.publishAsync(`${PREFIX}drivers/${id}/location`, "{sentinel", { qos: 1 });
    // A whole refused message has no driver to key it by: found by its bytes.
    await eventually(async () => (await readTopic(dlq)).some((l) => l.value === "{sentinel"), 30_000, "the sentinel");
    const letters = await lettersOf(id);
    expect(letters.length).toBe(1);
    expect(letters[0]!.reason).toBe("invalid_coordinates");
    expect(letters[0]!.refused).toBe("1-499:invalid_coordinates");
    expect(letters[0]!.value).toBe(payload);
    await eventually(
      async () => (await db.sql`select 1 from driver_state where driver_id = ${id} and position_at = to_timestamp(${now - 100})`)
        .length === 1,
      30_000,
      "the good position applied",
    );
  });

  test("the worker: 1 good + 499 positions SQL refuses (dated ahead of their receipt) → one dead letter", async () => {
    const id = drivers[997]!;
    const now = Date.now() / 1000;
    // Within the worker's own 30 s clock check, beyond the database's 2 s skew over the bridge's receive time.
    const payload = JSON.stringify([
      { ...position(997, 16), tst: Math.floor(now) - 50 },
      ...Array.from({ length: 499 }, (_, i) => ({ ...position(997, 16), tst: Math.floor(now) + 10 + i * 0.03 })),
    ]);
    await publisher.publishAsync(`${PREFIX}drivers/${id}/location`, payload, { qos: 1 });
    await eventually(async () => (await lettersOf(id)).length > 0, 30_000, "the dead letter");
    const sentinel = JSON.stringify({ ...position(997, 16), tst: Math.floor(Date.now() / 1000) + 20 });
    await publisher.publishAsync(`${PREFIX}drivers/${id}/location`, sentinel, { qos: 1 });
    await eventually(async () => (await lettersOf(id)).length > 1, 30_000, "the sentinel's dead letter");
    const [letter, ...others] = await lettersOf(id);
    expect(others.length).toBe(1); // the sentinel's
    expect(letter!.reason).toBe("future_timestamp");
    expect(refusedIndexes(letter!.refused)).toEqual(Array.from({ length: 499 }, (_, i) => i + 1));
    // The Kafka record's bytes, once: about the phone's payload, not 499 copies of it.
    expect(letter!.value.length).toBeLessThan(payload.length * 2);
    expect(JSON.parse(letter!.value).positions.length).toBe(500);
    const [row] = await db.sql<{ at: Date }[]>`select position_at at from driver_state where driver_id = ${id}`;
    expect(row!.at.getTime()).toBe((Math.floor(now) - 50) * 1000);
  });
});
