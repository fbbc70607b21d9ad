// A phone's sign-in end to end: the real API (over HTTP, in this process) issues MQTT credentials through
// lib/mqtt-credentials.ts into the real Mosquitto; the phone connects with them and its position arrives.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import mqtt, { type MqttClient } from "mqtt";
import { config, parseMqttAdminConfig } from "../../lib/config.ts";
import { decodeMqttMessage } from "../../lib/position.ts";
import { createMqttCredentialStore } from "../../lib/mqtt-credentials.ts";
import { createApiClient } from "../../sim/api-client.ts";
import type { IdentityProvider } from "../../sim/identity.ts";
import { signInFleet } from "../../sim/mqtt-sign-in.ts";
import { startFleet } from "../../sim/simulated-fleet.ts";
import { driver } from "../api/support/auth.ts";
import { type Harness, startHarness } from "../api/support/harness.ts";

const brokerUrl = (() => {
  const u = new URL(config().mqttUrl);
  u.username = "";
  u.password = "";
  return u.toString();
})();
const store = createMqttCredentialStore({ ...parseMqttAdminConfig(), mqttUrl: config().mqttUrl });
let h: Harness;
let server: ReturnType<typeof Bun.serve>;
let tester: MqttClient;
const issued: string[] = [];
/** Driver tokens for whoever `who(sub)` says is calling (the identity provider stand-in). */
const tokensAs = (who: (sub: string) => string): IdentityProvider => ({
  tokenFor: (_role, sub) => h.tokenFor(driver(who(sub))),
});

beforeAll(async () => {
  h = await startHarness("mqtt-sign-in", { mqttCredentials: store, mqttUrl: brokerUrl });
  server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => h.app.handle(req) });
  tester = await mqtt.connectAsync(config().mqttUrl, { clientId: `sign-in-test-${process.pid}`, reconnectPeriod: 0 });
});

afterAll(async () => {
  await tester?.endAsync(true);
  server?.stop(true);
  await store.revokeMany(issued);
  await store.close();
  await h?.close();
});

test("a driver signs in for MQTT credentials of its own and publishes its position with them", async () => {
  const { id } = (await h.sql<{ id: string }[]>`insert into drivers (name) values ('Phone') returning id`)[0]!;
  issued.push(id);
  const api = `http://127.0.0.1:${server.port}`;
  const signedIn = await createApiClient(api, 10_000, tokensAs(() => id)).mqttSignIn(id);
  expect(signedIn).toMatchObject({ username: id, client_id: id, mqtt_url: brokerUrl });

  const received: string[] = [];
  tester.on("message", (topic, payload) => received.push(`${topic} ${payload}`));
  await tester.subscribeAsync(`drivers/${id}/location`, { qos: 1 });
  const phone = await mqtt.connectAsync(signedIn.mqtt_url, {
    username: signedIn.username,
    password: signedIn.password,
    clientId: signedIn.client_id,
    protocolVersion: 5,
    reconnectPeriod: 0,
  });
  await phone.publishAsync(`drivers/${id}/location`, '{"lat":40.75,"lon":-73.99,"tst":1764083000}', { qos: 1 });
  await phone.endAsync();
  const deadline = Date.now() + 10_000;
  while (received.length === 0 && Date.now() < deadline) await Bun.sleep(10);
  expect(received).toEqual([`drivers/${id}/location {"lat":40.75,"lon":-73.99,"tst":1764083000}`]);
});

test("another driver's token is refused (403) and issues nothing", async () => {
  const { id } = (await h.sql<{ id: string }[]>`insert into drivers (name) values ('Victim') returning id`)[0]!;
  const api = `http://127.0.0.1:${server.port}`;
  const stranger = crypto.randomUUID();
  const error = await createApiClient(api, 10_000, tokensAs(() => stranger)).mqttSignIn(id).then(
    () => undefined,
    (e: { status: number; code: string }) => e,
  );
  expect(error).toMatchObject({ status: 403, code: "FORBIDDEN" });
});

test("the demo fleet (--sign-in): every driver signs in and reports over a connection of its own", async () => {
  const rows = await h.sql<{ id: string }[]>`insert into drivers (name) select 'Fleet ' || g from generate_series(1, 5) g returning id`;
  const ids = rows.map((r) => r.id);
  issued.push(...ids);
  const api = createApiClient(`http://127.0.0.1:${server.port}`, 10_000, tokensAs((sub) => sub));
  const signedIn = await signInFleet(api, ids, 3);
  expect(signedIn.map((c) => c.username)).toEqual(ids);

  const seen = new Set<string>();
  tester.on("message", (topic) => seen.add(topic.split("/")[1]!));
  await tester.subscribeAsync(ids.map((id) => `drivers/${id}/location`), { qos: 1 });
  const fleet = await startFleet({
    drivers: ids.map((id, i) => ({ id, lat: 40.72 + i * 0.01, lon: -73.99 })),
    rateHz: 4,
    mqttUrl: signedIn[0]!.mqtt_url,
    driverCredentials: signedIn,
    seed: 3,
  });
  const deadline = Date.now() + 15_000;
  while (seen.size < ids.length && Date.now() < deadline) await Bun.sleep(20);
  await fleet.stop();
  expect([...seen].sort()).toEqual([...ids].sort());
  expect(fleet.stats()).toMatchObject({ connections: 5, errors: 0, refused: {} });
});

test("the demo fleet with --phones: each phone runs phone/client.ts over TLS, batches while idle, and loses no fix", async () => {
  const rows = await h.sql<{ id: string }[]>`insert into drivers (name) select 'Phone ' || g from generate_series(1, 4) g returning id`;
  const ids = rows.map((r) => r.id);
  issued.push(...ids);
  const api = createApiClient(`http://127.0.0.1:${server.port}`, 10_000, tokensAs((sub) => sub));
  const signedIn = await signInFleet(api, ids, 2);

  // Fix times per driver, as the broker delivered them (binary form, `drivers/{id}/b`).
  const got = new Map<string, number[]>(ids.map((id) => [id, []]));
  let messages = 0;
  const undecodable: string[] = [];
  tester.on("message", (topic, payload) => {
    const id = topic.split("/")[1]!;
    if (!topic.endsWith("/b") || !got.has(id)) return;
    messages++;
    const decoded = decodeMqttMessage(topic, payload);
    if (!decoded.ok) return void undecodable.push(decoded.detail);
    got.get(id)!.push(...decoded.positions.map((p) => p.tst));
  });
  await tester.subscribeAsync(ids.map((id) => `drivers/${id}/b`), { qos: 1 });

  const root = new URL("../../", import.meta.url).pathname;
  const fleet = await startFleet({
    drivers: ids.map((id, i) => ({ id, lat: 40.72 + i * 0.01, lon: -73.99 })),
    rateHz: 8,
    mqttUrl: signedIn[0]!.mqtt_url,
    driverCredentials: signedIn,
    phones: { url: "mqtts://127.0.0.1:8883", ca: readFileSync(`${root}.stack/tls/ca.crt`, "utf8") },
    seed: 5,
  });
  // No retained command for these new drivers: the phones are idle, send their first fix and then keep fixes
  // until 100 m or the 30 s bound (in fix time: 8 fixes/s here, so well past this test's few seconds).
  const deadline = Date.now() + 20_000;
  while ([...got.values()].some((times) => times.length === 0) && Date.now() < deadline) await Bun.sleep(20);
  while (fleet.stats().buffered < 12 && Date.now() < deadline) await Bun.sleep(20);
  const running = fleet.stats();
  expect(running).toMatchObject({ connections: 4, connected: 4, errors: 0, refused: {}, modes: { live: 0, idle: 4, off: 0 } });
  expect(running.buffered).toBeGreaterThanOrEqual(12);

  // Stopping flushes what the phones keep; every fix taken reaches the broker once, in order, in fewer messages.
  await fleet.stop();
  const final = fleet.stats();
  while ([...got.values()].reduce((n, t) => n + t.length, 0) < final.offered && Date.now() < deadline + 10_000) await Bun.sleep(20);
  expect(undecodable).toEqual([]);
  expect(final.sent).toBe(final.offered);
  expect([...got.values()].reduce((n, t) => n + t.length, 0)).toBe(final.offered);
  for (const times of got.values()) expect(times).toEqual([...times].sort((a, b) => a - b));
  expect(messages).toBeLessThan(final.offered);
});
