// A phone's sign-in end to end: the real API (over HTTP, in this process) issues MQTT credentials through
// lib/mqtt-credentials.ts into the real Mosquitto; the phone connects with them and its position arrives.
import { afterAll, beforeAll, expect, test } from "bun:test";
import mqtt, { type MqttClient } from "mqtt";
import { config, parseMqttAdminConfig } from "../../lib/config.ts";
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
