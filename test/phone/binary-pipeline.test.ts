// The binary form end to end on the real servers: the phone client publishes `drivers/{id}/b` → bridge (Node) →
// Kafka → position worker (Node) → PostGIS; the driver's state holds the newest fix, the trail every fix once.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { config } from "../../lib/config.ts";
import { createPhoneClient, type PhoneClient } from "../../phone/client.ts";
import { eventually, startNodeWorker, type WorkerProcess } from "../../tools/node-workers.ts";
import { isolatedPipeline, seedDrivers } from "../../tools/pipeline.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

const run = `ph${process.pid}${Date.now() % 1e6}`;
let db: TestDatabase;
let bridge: WorkerProcess;
let worker: WorkerProcess;
let phone: PhoneClient;
let driver: string;
const T0 = Math.floor(Date.now() / 1000) - 300;

beforeAll(async () => {
  db = await freshDatabase("phonebinary");
  const pipeline = await isolatedPipeline(run, db.url, 2);
  driver = (await seedDrivers(db.sql, 1))[0]!;
  const env = { ...pipeline.env, BATCH_MAX_WAIT_MS: "50" };
  bridge = await startNodeWorker("bridge", env);
  await bridge.waitFor("mqtt connected");
  worker = await startNodeWorker("positions", env);
  await worker.waitFor("partitions assign");
  const login = new URL(config().mqttUrl);
  phone = createPhoneClient({
    url: `mqtt://${login.host}`,
    username: decodeURIComponent(login.username),
    password: decodeURIComponent(login.password),
    driverId: driver!,
    clientId: `test-phone-${run}`,
    topicPrefix: pipeline.prefix,
    fixedMode: "idle",
  });
  await phone.start();
}, 180_000);

afterAll(async () => {
  await phone?.stop({ force: true });
  for (const p of [bridge, worker]) p?.proc.kill("SIGTERM");
  await Promise.all([bridge?.proc.exited, worker?.proc.exited]);
  await db?.drop();
});

test("idle batches in the binary form land in driver_state and the trail, through the real bridge and worker", async () => {
  // 12 fixes 4 s apart, 30 m apart: idle sends the first, then a batch each time the phone moved 100 m.
  const fixes = Array.from({ length: 12 }, (_, i) => ({
    lat: 40.75 + (i * 30) / 111_195,
    lon: -73.98,
    tst: T0 + i * 4,
    acc: 5,
    vel: 27,
    cog: 0,
    batt: 80,
  }));
  for (const f of fixes) phone.addFix(f);
  await phone.drained();
  const held = phone.pendingFixes();
  const sent = fixes.length - held;
  expect(sent).toBeGreaterThan(6);

  await eventually(
    async () => (await db.sql<{ n: number }[]>`select count(*)::int n from position_trail`)[0]!.n >= sent,
    60_000,
    "the sent fixes in the trail",
  );
  const [state] = await db.sql<{ lat: number; lon: number; position_at: Date; status: string }[]>`
    select lat, lon, position_at, status from driver_state where driver_id = ${driver!}`;
  const newest = fixes[sent - 1]!;
  expect(state!.position_at.getTime()).toBe(newest.tst * 1000);
  expect(state!.lat).toBeCloseTo(newest.lat, 6);
  expect(state!.lon).toBeCloseTo(newest.lon, 6);
  expect(state!.status).toBe("available");
  expect((await db.sql<{ n: number }[]>`select count(*)::int n from position_trail`)[0]!.n).toBe(sent);
}, 90_000);
