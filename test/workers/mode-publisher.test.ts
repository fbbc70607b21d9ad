// The mode publisher end to end: the real service (`bun run workers -- modes`, as tracking_modes and MQTT user
// `modes`), a fresh database moved through the real state-machine functions, and the real Mosquitto, where a
// subscriber logged in as `tester` reads the retained commands on drivers/{id}/cmd.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import mqtt, { type MqttClient } from "mqtt";
import { config } from "../../lib/config.ts";
import { mosquittoInstance } from "../../tools/mosquitto-instance.ts";
import { serviceUrl } from "../../tools/service-url.ts";
import { spawnWatched, type WatchedProcess } from "../../tools/watched-process.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

const ENTRY = new URL("../../workers/index.ts", import.meta.url).pathname;
let db: TestDatabase;
let customer: string;
let restaurant: string;
const clients: MqttClient[] = [];
const usedTopics = new Set<string>();
const running = new Set<WatchedProcess>();
let publishers = 0;

interface Command {
  v: number;
  mode: string;
  state: string;
  at: string;
}

function modesUrl(port?: number): string {
  const password = process.env.MQTT_MODES_PASSWORD;
  if (!password) throw new Error("MQTT_MODES_PASSWORD is not set: run bin/stack up");
  const u = new URL(config().mqttUrl);
  u.username = "modes";
  u.password = password;
  if (port !== undefined) u.port = String(port);
  return u.toString();
}

/** The tester's URL on another broker (a Mosquitto of the test's own). */
function testerUrl(port: number): string {
  const u = new URL(config().mqttUrl);
  u.port = String(port);
  return u.toString();
}

function startPublisher(extra: Record<string, string> = {}): WatchedProcess {
  const publisher = spawnWatched("modes", [process.execPath, ENTRY, "modes"], {
    ...process.env,
    MQTT_TOPIC_PREFIX: "",
    DATABASE_URL: serviceUrl(db.url, "tracking_modes"),
    MQTT_URL: modesUrl(),
    // Its own client id (the stack's publisher may be running as `modes`, and a test that failed may have left one of
    // ours running); the user is the service's.
    MODES_CLIENT_ID: `modes-test-${process.pid}-${++publishers}`,
    MODES_CHECK_EVERY_MS: "200",
    METRICS_PORT: "0",
    ...extra,
  });
  running.add(publisher);
  return publisher;
}

async function stopPublisher(publisher: WatchedProcess): Promise<number> {
  publisher.proc.kill("SIGTERM");
  const code = await publisher.proc.exited;
  running.delete(publisher);
  return code;
}

const metricsPort = (p: WatchedProcess) => Number(/"metricsPort":(\d+)/.exec(p.output())![1]);

/** A tester-side subscriber of some drivers' command topics: every command received, per driver, in order. */
async function subscriber(driverIds: string[], brokerUrl = config().mqttUrl) {
  const client = await mqtt.connectAsync(brokerUrl, {
    clientId: `modes-sub-${process.pid}-${crypto.randomUUID().slice(0, 8)}`,
    reconnectPeriod: 0,
  });
  clients.push(client);
  const seen = new Map<string, Command[]>(driverIds.map((id) => [id, []]));
  client.on("message", (topic, payload) => {
    if (payload.length === 0) return;
    seen.get(topic.split("/")[1]!)?.push(JSON.parse(payload.toString()) as Command);
  });
  for (const id of driverIds) usedTopics.add(`drivers/${id}/cmd`);
  await client.subscribeAsync(driverIds.map((id) => `drivers/${id}/cmd`), { qos: 1 });
  return { seen: (id: string) => seen.get(id)!, brief: (id: string) => seen.get(id)!.map((c) => `${c.mode} ${c.state}`) };
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

async function newDriver(status = "offline"): Promise<string> {
  const [{ id }] = (await db.sql`insert into drivers (name) values ('d') returning id`) as unknown as [{ id: string }];
  await db.sql`insert into driver_state (driver_id, status, received_at) values (${id}, ${status}::driver_status, now())`;
  return id;
}

beforeAll(async () => {
  db = await freshDatabase("mode_publisher");
  [{ id: customer }] = (await db.sql`
    insert into customers (name, location) values ('c', 'SRID=4326;POINT(-73.99 40.73)') returning id`) as unknown as [
    { id: string },
  ];
  [{ id: restaurant }] = (await db.sql`
    insert into restaurants (name, location, h3) values ('r', 'SRID=4326;POINT(-73.98 40.75)', 1) returning id`) as unknown as [
    { id: string },
  ];
}, 60_000);

afterAll(async () => {
  await Promise.all([...running].map(stopPublisher));
  // Retained messages outlive the test: clear them (an empty retained message deletes the topic's).
  const cleaner = await mqtt.connectAsync(config().mqttUrl, { clientId: `modes-clean-${process.pid}`, reconnectPeriod: 0 });
  await Promise.all([...usedTopics].map((t) => cleaner.publishAsync(t, "", { qos: 1, retain: true })));
  await cleaner.endAsync();
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await db?.drop();
}, 60_000);

describe("the mode follows the state machine", () => {
  let publisher: WatchedProcess;
  beforeAll(async () => {
    publisher = startPublisher();
    await publisher.waitFor("modes info started", 30_000);
    await publisher.waitFor("modes info reconciled", 30_000);
  }, 60_000);

  test("available → assigned → at_restaurant → delivering → arriving → available → offline: idle, live, idle, off", async () => {
    const driver = await newDriver("offline");
    const sub = await subscriber([driver]);
    const order = ((await db.sql`
      insert into orders (customer_id, restaurant_id, delivery_location, status)
      values (${customer}, ${restaurant}, 'SRID=4326;POINT(-73.99 40.73)', 'confirmed') returning id`) as unknown as [
      { id: string },
    ])[0].id;

    // Each step through the real functions; after each mode change, its command arrives before the next step.
    await db.sql`select driver_transition(${driver}, 'online')`;
    await waitFor("idle", () => sub.seen(driver).length === 1);
    await db.sql`select order_transition(${order}, 'assign', ${driver})`;
    await waitFor("live", () => sub.seen(driver).length === 2);
    await db.sql`select driver_transition(${driver}, 'enter_restaurant')`;
    await db.sql`select order_transition(${order}, 'pickup')`;
    await db.sql`select driver_transition(${driver}, 'enter_delivery')`;
    await db.sql`select order_transition(${order}, 'deliver')`;
    await waitFor("idle again", () => sub.seen(driver).length === 3);
    await db.sql`select driver_transition(${driver}, 'sign_off')`;
    await waitFor("off", () => sub.seen(driver).length === 4);

    expect(sub.brief(driver)).toEqual(["idle available", "live assigned", "idle available", "off offline"]);
    for (const command of sub.seen(driver)) {
      expect(command.v).toBe(1);
      expect(Number.isNaN(Date.parse(command.at))).toBe(false);
    }
    // A phone that connects later (or reconnects) gets only the latest, retained.
    const late = await subscriber([driver]);
    await waitFor("the retained command", () => late.seen(driver).length === 1);
    expect(late.brief(driver)).toEqual(["off offline"]);
  }, 60_000);

  test("several drivers at once: each gets its own commands; state changes within a mode send nothing", async () => {
    const drivers = await Promise.all([newDriver("available"), newDriver("available"), newDriver("available")]);
    const sub = await subscriber(drivers);
    await waitFor("each driver's retained idle", () => drivers.every((d) => sub.seen(d).length === 1));
    const orders = (await db.sql`
      insert into orders (customer_id, restaurant_id, delivery_location, status)
      select ${customer}, ${restaurant}, 'SRID=4326;POINT(-73.99 40.73)', 'confirmed' from generate_series(1, 3)
      returning id`) as unknown as { id: string }[];
    await Promise.all(drivers.map((d, i) => db.sql`select order_transition(${orders[i]!.id}, 'assign', ${d})`));
    for (const d of drivers) await db.sql`select driver_transition(${d}, 'enter_restaurant')`;
    // A marker: once the last driver's sign-off arrived, anything the within-mode moves sent would have too.
    await db.sql`select driver_transition(${drivers[2]!}, 'sign_off')`;
    await waitFor("the marker", () => sub.seen(drivers[2]!).length === 3);
    await waitFor("the others' live", () => drivers.every((d) => sub.seen(d).length >= 2));
    expect(drivers.map((d) => sub.brief(d))).toEqual([
      ["idle available", "live assigned"],
      ["idle available", "live assigned"],
      ["idle available", "live assigned", "off offline"],
    ]);
  }, 60_000);

  test("/ready answers 200 and /metrics counts what was published", async () => {
    const port = metricsPort(publisher);
    expect((await fetch(`http://127.0.0.1:${port}/ready`)).status).toBe(200);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const published = Number(/mode_published_total\{source="notice",process="modes"\} (\d+)/.exec(text)?.[1] ?? 0);
    expect(published).toBeGreaterThanOrEqual(7);
    expect(text).toContain('mode_reconcile_runs_total{reason="start",process="modes"} 1');
    expect(text).toContain("mode_publish_failed_total");
  }, 30_000);

  test("notices the database skipped (queue over its limit) are found by a reconciliation", async () => {
    const driver = await newDriver("offline");
    const sub = await subscriber([driver]);
    const url = new URL(db.url);
    url.searchParams.set("options", "-c tracking.notify_queue_limit=0");
    const { connectDatabase } = await import("../../lib/db.ts");
    const limited = connectDatabase(url.toString(), { max: 1, application: "test-modes-limited" });
    try {
      await limited`select driver_transition(${driver}, 'online')`;
    } finally {
      await limited.end({ timeout: 5 });
    }
    await waitFor("the reconciled idle", () => sub.seen(driver).length === 1);
    expect(sub.brief(driver)).toEqual(["idle available"]);
    await publisher.waitFor('"reason":"notices_skipped"');
  }, 60_000);

  afterAll(async () => {
    expect(await stopPublisher(publisher)).toBe(0);
  }, 60_000);
});

describe("reconciliation at start", () => {
  test("what changed while the publisher was down is published when it starts, and only that", async () => {
    const [changed, unchanged] = [await newDriver("available"), await newDriver("available")];
    // Both published once, by a first run.
    const first = startPublisher();
    const sub = await subscriber([changed, unchanged]);
    await waitFor("both idle", () => sub.seen(changed).length === 1 && sub.seen(unchanged).length === 1);
    expect(await stopPublisher(first)).toBe(0);

    // While it is away: one driver goes live (its notice is lost: nobody listens).
    const order = ((await db.sql`
      insert into orders (customer_id, restaurant_id, delivery_location, status)
      values (${customer}, ${restaurant}, 'SRID=4326;POINT(-73.99 40.73)', 'confirmed') returning id`) as unknown as [
      { id: string },
    ])[0].id;
    await db.sql`select order_transition(${order}, 'assign', ${changed})`;

    const second = startPublisher();
    await second.waitFor("modes info reconciled", 30_000);
    await waitFor("the live command", () => sub.seen(changed).length === 2);
    expect(sub.brief(changed)).toEqual(["idle available", "live assigned"]);
    // The unchanged driver was not published again (its recorded mode matched).
    expect(sub.brief(unchanged)).toEqual(["idle available"]);
    expect(second.output()).toMatch(/reconciled \{"reason":"start","differences":1,"published":1/);
    expect(await stopPublisher(second)).toBe(0);
  }, 60_000);
});

describe("a command the broker refuses", () => {
  test("is counted as failed, not recorded as published, and retried", async () => {
    const driver = await newDriver("available");
    // Under a topic root the `modes` user may not write: every command is refused (MQTT 5 PUBACK 0x87).
    const refused = startPublisher({ MQTT_TOPIC_PREFIX: `test/modes-${process.pid}/` });
    await refused.waitFor("mode commands not published", 30_000);
    await refused.waitFor('"reason":"retry"', 30_000);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort(refused)}/metrics`)).text();
    expect(Number(/mode_publish_failed_total\{process="modes"\} (\d+)/.exec(text)?.[1] ?? 0)).toBeGreaterThanOrEqual(1);
    const [row] = await db.sql`select count(*)::int as n from driver_mode_published where driver_id = ${driver}`;
    expect(row!.n).toBe(0);
    expect(await stopPublisher(refused)).toBe(0);
  }, 60_000);
});

describe("a broker that crashed", () => {
  test("loses its newest retained commands; the publisher publishes them again when it reconnects", async () => {
    // A broker of its own (the project's config, users and ACL) that never autosaves during the test: a crash loses
    // every retained message it took, as a real crash loses those since its last autosave.
    const port = 19_300 + (process.pid % 90);
    const broker = mosquittoInstance({
      port,
      dir: new URL(`../../.stack/test-modes-crash-${process.pid}`, import.meta.url).pathname,
      settings: { autosave_interval: 3_600, plugin_opt_hold_publishers_seconds: 0 },
    });
    await broker.start();
    try {
      const publisher = startPublisher({ MQTT_URL: modesUrl(port) });
      await publisher.waitFor("modes info reconciled", 30_000);
      const driver = await newDriver("offline");
      const before = await subscriber([driver], testerUrl(port));
      await db.sql`select driver_transition(${driver}, 'online')`;
      await waitFor("idle before the crash", () => before.seen(driver).length === 1);

      await broker.stop("SIGKILL");
      await broker.start();
      await publisher.waitFor("mqtt connected again", 30_000);
      await publisher.waitFor("publishing recent commands again", 30_000);
      // A phone connecting now finds its mode retained again.
      const after = await subscriber([driver], testerUrl(port));
      await waitFor("the retained command after the crash", () => after.seen(driver).length === 1);
      expect(after.brief(driver)).toEqual(["idle available"]);
      expect(publisher.output()).toMatch(/publishing recent commands again [^{]*\{"commands":[1-9]/);
      expect(await stopPublisher(publisher)).toBe(0);
    } finally {
      await broker.remove();
    }
  }, 90_000);
});
