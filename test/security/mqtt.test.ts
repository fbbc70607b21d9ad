// Against the real Mosquitto that `bin/stack up` started (password_file + acl_file + identity-guard plugin): every
// client proves who it is, and a driver touches only its own topics. Credentials come from lib/mqtt-credentials.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { config, parseMqttAdminConfig } from "../../lib/config.ts";
import { createMqttCredentialStore, type MqttCredentials } from "../../lib/mqtt-credentials.ts";

const broker = (() => {
  const u = new URL(config().mqttUrl);
  u.username = "";
  u.password = "";
  return u.toString();
})();
const store = createMqttCredentialStore({ ...parseMqttAdminConfig(), mqttUrl: config().mqttUrl });
const clients: MqttClient[] = [];
let tester: MqttClient;
let alice: MqttCredentials;
let bob: MqttCredentials;

/** Connects once (no reconnects); rejects with the broker's refusal. */
async function connect(options: IClientOptions): Promise<MqttClient> {
  const client = await mqtt.connectAsync(broker, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
  clients.push(client);
  return client;
}
const asDriver = (c: MqttCredentials, extra: IClientOptions = {}) =>
  connect({ username: c.username, password: c.password, clientId: c.client_id, ...extra });

/** The broker's refusal of a CONNECT, as mqtt.js reports it (3.1.1 return code or MQTT 5 reason code). */
async function refusal(options: IClientOptions): Promise<number> {
  const err = await connect(options).then(
    () => {
      throw new Error("connected, expected a refusal");
    },
    (e: { code?: number }) => e,
  );
  return err.code ?? -1;
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/** What a subscriber received, in order, as "topic payload". */
function recorder(client: MqttClient): string[] {
  const seen: string[] = [];
  client.on("message", (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
  return seen;
}

beforeAll(async () => {
  [alice, bob] = (await store.issueMany([crypto.randomUUID(), crypto.randomUUID()])) as [MqttCredentials, MqttCredentials];
  tester = await connect({ clientId: `sec-tester-${process.pid}`, username: new URL(config().mqttUrl).username, password: decodeURIComponent(new URL(config().mqttUrl).password) });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await Promise.all([alice, bob].filter(Boolean).map((c) => store.revoke(c!.username)));
  await store.close();
});

describe("who may connect", () => {
  test.each([
    ["anonymous, MQTT 3.1.1", { protocolVersion: 4 }, 5],
    ["anonymous, MQTT 5", { protocolVersion: 5 }, 0x87],
    ["a driver with a wrong password", { protocolVersion: 4, username: "alice", password: "wrong" }, 5],
  ] as const)("%s is refused", async (_name, options, code) => {
    const opts = { ...options, clientId: `sec-anon-${process.pid}` } as IClientOptions;
    if (opts.username === "alice") {
      opts.username = alice.username;
      opts.clientId = alice.client_id;
    }
    expect(await refusal(opts)).toBe(code);
  });

  test("an issued credential connects, and publishes on its own topic to the bridge's kind of subscription", async () => {
    const group = `sec-${process.pid}`;
    const seen = recorder(tester);
    await tester.subscribeAsync(`$share/${group}/drivers/${alice.username}/location`, { qos: 1 });
    const phone = await asDriver(alice);
    await phone.publishAsync(`drivers/${alice.username}/location`, "own", { qos: 1 });
    await waitFor(() => seen.includes(`drivers/${alice.username}/location own`), "alice's position");
  });

  test("another driver's client id (or the bridge's) is refused, and the session holding it stays connected", async () => {
    const bobPhone = await asDriver(bob);
    expect(await refusal({ username: alice.username, password: alice.password, clientId: bob.client_id })).toBe(5);
    expect(await refusal({ username: alice.username, password: alice.password, clientId: "bridge-0" })).toBe(5);
    expect(await refusal({ username: alice.username, password: alice.password, clientId: "bridge-0", protocolVersion: 5 })).toBe(0x87);
    // Bob's session was not taken over: it still round-trips a QoS 1 publish on the same connection.
    expect(bobPhone.connected).toBe(true);
    await bobPhone.publishAsync(`drivers/${bob.username}/location`, "still here", { qos: 1 });
    expect(bobPhone.connected).toBe(true);
  });

  test("a revoked driver's connected session is dropped and it cannot connect again", async () => {
    const [carol] = await store.issueMany([crypto.randomUUID()]);
    const phone = await asDriver(carol!);
    const closed = new Promise<void>((resolve) => phone.once("close", () => resolve()));
    await store.revoke(carol!.username);
    await closed;
    expect(await refusal({ username: carol!.username, password: carol!.password, clientId: carol!.client_id })).toBe(5);
  });

  test("re-issuing replaces the earlier password", async () => {
    const id = crypto.randomUUID();
    const first = await store.issue(id);
    const second = await store.issue(id);
    expect(second.password).not.toBe(first.password);
    expect(await refusal({ username: first.username, password: first.password, clientId: first.client_id })).toBe(5);
    (await asDriver(second)).end(true);
    await store.revoke(id);
  });
});

describe("what a driver may touch", () => {
  test("publishing to another driver's topic: MQTT 5 gets 0x87, 3.1.1 is acknowledged, and nothing is delivered", async () => {
    const group = `sec-pub-${process.pid}`;
    const seen = recorder(tester);
    await tester.subscribeAsync(`$share/${group}/drivers/${bob.username}/+`, { qos: 1 });
    const v5 = await asDriver(alice, { protocolVersion: 5, clientId: alice.client_id });
    const refused = await v5.publishAsync(`drivers/${bob.username}/location`, "forged5", { qos: 1 }).then(
      (ack) => (ack as { reasonCode?: number } | undefined)?.reasonCode ?? 0,
      (err: { code?: number }) => err.code ?? -1,
    );
    expect(refused).toBe(0x87);
    v5.end(true);
    const v311 = await asDriver(alice, { protocolVersion: 4 });
    await v311.publishAsync(`drivers/${bob.username}/location`, "forged311", { qos: 1 });
    await v311.publishAsync(`drivers/${bob.username}/l`, "forged311-compact", { qos: 1 });
    // Bob's own message after the forged ones: delivery per publisher is ordered, so once it arrived, the forged ones
    // would have arrived first.
    const bobPhone = await asDriver(bob);
    await bobPhone.publishAsync(`drivers/${bob.username}/location`, "marker", { qos: 1 });
    await waitFor(() => seen.includes(`drivers/${bob.username}/location marker`), "bob's marker");
    expect(seen.filter((m) => m.includes("forged"))).toEqual([]);
  });

  test.each([
    ["#", 0x80],
    ["drivers/#", 0x80],
    ["drivers/+/location", 0x80],
    ["$share/bridge/drivers/+/location", 0x80],
    ["$share/bridge/drivers/+/l", 0x80],
    ["$share/bridge/sensor/data", 0x80],
    ["$SYS/#", 0x80],
    ["own command topic", 1],
  ] as const)("a driver subscribing to %s gets SUBACK %d", async (filter, granted) => {
    const topic = filter === "own command topic" ? `drivers/${alice.username}/cmd` : filter;
    const phone = await asDriver(alice);
    // The SUBACK as the broker sent it (mqtt.js's callback echoes the requested QoS and drops the error's code).
    const suback = new Promise<unknown>((resolve) =>
      phone.on("packetreceive", (p) => p.cmd === "suback" && resolve((p as { granted: number[] }).granted)),
    );
    phone.subscribe(topic, { qos: 1 }, () => {});
    const codes = await suback;
    expect(codes).toEqual([granted]);
    phone.end(true);
  });

  test("a driver reads its own command topic and nothing of another driver's", async () => {
    const phone = await asDriver(alice);
    const seen = recorder(phone);
    // Literal topic: acl_file grants the SUBSCRIBE and filters at delivery, so Bob's commands never arrive.
    await phone.subscribeAsync([`drivers/${bob.username}/cmd`, `drivers/${alice.username}/cmd`], { qos: 1 });
    await tester.publishAsync(`drivers/${bob.username}/cmd`, "for bob", { qos: 1 });
    await tester.publishAsync(`drivers/${alice.username}/cmd`, "for alice", { qos: 1 });
    await waitFor(() => seen.length > 0, "alice's command");
    // Same publisher, so Bob's command (sent first) would have arrived first.
    expect(seen).toEqual([`drivers/${alice.username}/cmd for alice`]);
  });
});

describe("oversized messages (message_size_limit 262144)", () => {
  const big = "x".repeat(262_144 + 1);

  // Measured on 2.0.11: libmosquitto's MQTT 5 client (mosquitto_pub -V mqttv5) gets PUBACK 0x95 for this message,
  // but mqtt.js 5.16 (Bun and Node alike) never gets an answer: its callback does not fire and the message stays in
  // flight. So the simulator counts such messages itself (sim/publisher.ts refuses and counts them before sending).
  test("an MQTT 5 client built on libmosquitto is told: PUBACK 0x95 (packet too large)", async () => {
    const tester = new URL(config().mqttUrl);
    const file = `/tmp/oversized-${process.pid}.bin`;
    await Bun.write(file, big);
    // mosquitto_pub takes the password as -P (a throwaway credential of this test, revoked at the end).
    const pub = Bun.spawnSync(
      ["mosquitto_pub", "-h", tester.hostname, "-p", tester.port || "1883", "-V", "mqttv5", "-q", "1", "-d",
        "-u", alice.username, "-P", alice.password, "-i", alice.client_id, "-t", `drivers/${alice.username}/location`, "-f", file],
    );
    expect(pub.stdout.toString() + pub.stderr.toString()).toContain("PUBACK (Mid: 1, RC:149)");
  });

  test("an MQTT 3.1.1 phone gets a normal PUBACK and the message is dropped (measured: the protocol has no code)", async () => {
    const group = `sec-big-${process.pid}`;
    const seen = recorder(tester);
    await tester.subscribeAsync(`$share/${group}/drivers/${alice.username}/location`, { qos: 1 });
    const phone = await asDriver(alice, { protocolVersion: 4 });
    await phone.publishAsync(`drivers/${alice.username}/location`, big, { qos: 1 });
    await phone.publishAsync(`drivers/${alice.username}/location`, "after", { qos: 1 });
    await waitFor(() => seen.some((m) => m.endsWith(" after")), "the message after the oversized one");
    expect(seen.filter((m) => m.includes(`drivers/${alice.username}/location`)).map((m) => m.length < 1000)).not.toContain(false);
  });
});
