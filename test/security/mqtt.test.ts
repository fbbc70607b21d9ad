// Against the real Mosquitto that `bin/stack up` started (password_file + acl_file + identity-guard plugin): every
// client proves who it is, and a driver touches only its own topics. Credentials come from lib/mqtt-credentials.ts.
import { readFileSync } from "node:fs";
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
    // Nor may a driver hold a second session under any other id (a leaked password beside the phone).
    expect(await refusal({ username: alice.username, password: alice.password, clientId: "side-session" })).toBe(5);
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

describe("the mode publisher's user (modes): writes drivers' command topics and nothing else", () => {
  const asModes = (extra: IClientOptions = {}) => {
    const password = process.env.MQTT_MODES_PASSWORD;
    if (!password) throw new Error("MQTT_MODES_PASSWORD is not set: run bin/stack up");
    return connect({ username: "modes", password, clientId: `sec-modes-${process.pid}`, protocolVersion: 5, ...extra });
  };
  const refusedCode = (client: MqttClient, topic: string) =>
    client.publishAsync(topic, "x", { qos: 1 }).then(
      (ack) => (ack as { reasonCode?: number } | undefined)?.reasonCode ?? 0,
      (err: { code?: number }) => err.code ?? -1,
    );

  test("its retained command reaches the driver, also one that subscribes later", async () => {
    const modes = await asModes();
    await modes.publishAsync(`drivers/${alice.username}/cmd`, '{"v":1,"mode":"idle"}', { qos: 1, retain: true });
    const phone = await asDriver(alice);
    const seen = recorder(phone);
    await phone.subscribeAsync(`drivers/${alice.username}/cmd`, { qos: 1 });
    await waitFor(() => seen.length > 0, "the retained command");
    expect(seen).toEqual([`drivers/${alice.username}/cmd {"v":1,"mode":"idle"}`]);
    await modes.publishAsync(`drivers/${alice.username}/cmd`, "", { qos: 1, retain: true }); // clears it
  });

  test.each([
    ["a driver's position topic", (id: string) => `drivers/${id}/location`],
    ["a driver's compact topic", (id: string) => `drivers/${id}/l`],
    ["sensor/data", () => "sensor/data"],
    ["test/…", () => "test/probe"],
    ["identity-guard's control topic", () => "$CONTROL/identity-guard/v1/kick"],
  ] as const)("publishing to %s is refused (0x87)", async (_name, topic) => {
    const modes = await asModes();
    expect(await refusedCode(modes, topic(alice.username))).toBe(0x87);
  });

  test("a wildcard subscription is refused (MQTT 5: SUBACK 0x87): it reads nothing", async () => {
    const modes = await asModes();
    const suback = new Promise<unknown>((resolve) =>
      modes.on("packetreceive", (p) => p.cmd === "suback" && resolve((p as { granted: number[] }).granted)),
    );
    modes.subscribe("drivers/+/cmd", { qos: 1 }, () => {});
    expect(await suback).toEqual([0x87]);
  });

  test("its client id `modes` is reserved to it", async () => {
    expect(await refusal({ username: alice.username, password: alice.password, clientId: "modes" })).toBe(5);
  });
});

describe("oversized messages (identity-guard's plugin_opt_max_payload 262144)", () => {
  const OVERSIZED_TOPIC = "$SYS/identity-guard/oversized";
  const LOG = new URL("../../.stack/logs/mosquitto.log", import.meta.url).pathname;
  // The broker's counter as the tester sees it: the retained value on subscribe, then each new value, in order.
  const counts: number[] = [];
  beforeAll(async () => {
    tester.on("message", (topic, payload) => {
      if (topic === OVERSIZED_TOPIC) counts.push(Number(payload.toString()));
    });
    await tester.subscribeAsync(OVERSIZED_TOPIC, { qos: 0 });
    // identity-guard publishes the count (0 at start) retained, so a subscriber always gets the current value.
    await waitFor(() => counts.length > 0, "the retained count");
  });
  /** Resolves with the first value the broker publishes above `before` (each refusal publishes the new count). */
  const nextCount = async (before: number) => {
    await waitFor(() => counts.some((n) => n > before), `a count above ${before}`);
    return counts.find((n) => n > before)!;
  };
  const logHas = async (text: string) => {
    // Mosquitto flushes each log line; wait for ours rather than for a while.
    await waitFor(() => readFileSync(LOG, "utf8").includes(text), `"${text}" in ${LOG}`);
  };

  test("an MQTT 3.1.1 driver's 300 KB QoS 1 message: a plain PUBACK, delivered to nobody, counted and logged", async () => {
    const group = `sec-big-${process.pid}`;
    const seen = recorder(tester);
    await tester.subscribeAsync(`$share/${group}/drivers/${alice.username}/location`, { qos: 1 });
    const before = counts.at(-1)!;
    const phone = await asDriver(alice, { protocolVersion: 4 });
    // MQTT 3.1.1 has no refusal code: the broker acknowledges (this resolves) and drops the message.
    await phone.publishAsync(`drivers/${alice.username}/location`, "x".repeat(300_000), { qos: 1 });
    await phone.publishAsync(`drivers/${alice.username}/location`, "after", { qos: 1 });
    // Delivery per publisher is ordered: once "after" arrived, the big one would have arrived before it.
    await waitFor(() => seen.some((m) => m.endsWith(" after")), "the message after the oversized one");
    expect(seen.filter((m) => m.length > 1_000)).toEqual([]);
    expect(await nextCount(before)).toBe(before + 1);
    await logHas(
      `Warning: identity-guard: oversized message refused: client ${alice.client_id}, user ${alice.username}, ` +
        `topic drivers/${alice.username}/location, 300000 bytes (limit 262144)`,
    );
  });

  test("an MQTT 5 driver's oversized message is refused with PUBACK 0x87 (not authorized) and counted", async () => {
    const before = counts.at(-1)!;
    const phone = await asDriver(alice, { protocolVersion: 5 });
    const code = await phone.publishAsync(`drivers/${alice.username}/l`, "x".repeat(262_145), { qos: 1 }).then(
      (ack) => (ack as { reasonCode?: number } | undefined)?.reasonCode ?? 0,
      (err: { code?: number }) => err.code ?? -1,
    );
    // 0x87, not 0x95: a plugin's refusal of a PUBLISH is MOSQ_ERR_ACL_DENIED, which 2.0.11 answers with 0x87 only.
    expect(code).toBe(0x87);
    expect(phone.connected).toBe(true);
    expect(await nextCount(before)).toBe(before + 1);
    await logHas(`user ${alice.username}, topic drivers/${alice.username}/l, 262145 bytes (limit 262144)`);
  });

  test("a 200 KB message (under the limit) is delivered whole, and the limit itself passes", async () => {
    const group = `sec-200k-${process.pid}`;
    const seen = recorder(tester);
    await tester.subscribeAsync(`$share/${group}/drivers/${alice.username}/location`, { qos: 1 });
    const phone = await asDriver(alice, { protocolVersion: 4 });
    const at200k = "y".repeat(200_000);
    const atLimit = "z".repeat(262_144);
    await phone.publishAsync(`drivers/${alice.username}/location`, at200k, { qos: 1 });
    await phone.publishAsync(`drivers/${alice.username}/location`, atLimit, { qos: 1 });
    await waitFor(() => seen.includes(`drivers/${alice.username}/location ${atLimit}`), "the message at the limit");
    expect(seen).toContain(`drivers/${alice.username}/location ${at200k}`);
  });

  test("over max_packet_size (1 MiB) the broker closes the connection: MQTT 5 gets DISCONNECT 0x95, 3.1.1 nothing", async () => {
    const huge = "h".repeat(1_100_000);
    const v5 = await asDriver(alice, { protocolVersion: 5 });
    // Writing the rest of the packet to a closed socket may fail; that is the point, not an error of the test.
    v5.on("error", () => {});
    const disconnect = new Promise<number | undefined>((resolve) => v5.once("disconnect", (p) => resolve(p.reasonCode)));
    const v5Closed = new Promise<void>((resolve) => v5.once("close", () => resolve()));
    // The publish never completes (the broker closes the connection instead of answering); its callback swallows
    // whatever mqtt.js reports when the client is ended.
    v5.publish(`drivers/${alice.username}/location`, huge, { qos: 1 }, () => {});
    expect(await disconnect).toBe(0x95);
    await v5Closed;
    const v311 = await asDriver(alice, { protocolVersion: 4 });
    v311.on("error", () => {});
    const packets: string[] = [];
    v311.on("packetreceive", (p) => packets.push(p.cmd));
    const v311Closed = new Promise<void>((resolve) => v311.once("close", () => resolve()));
    v311.publish(`drivers/${alice.username}/location`, huge, { qos: 1 }, () => {});
    await v311Closed;
    expect(packets).not.toContain("puback");
  });
});

describe("identity-guard's counter topic", () => {
  test("a driver's literal subscription to it is granted but nothing is delivered (acl_file filters at delivery)", async () => {
    const phone = await asDriver(alice);
    const seen = recorder(phone);
    // One SUBSCRIBE: a retained count would be sent right after the SUBACK, before the command published below.
    await phone.subscribeAsync(["$SYS/identity-guard/oversized", `drivers/${alice.username}/cmd`], { qos: 1 });
    await tester.publishAsync(`drivers/${alice.username}/cmd`, "ping", { qos: 1 });
    await waitFor(() => seen.length > 0, "alice's command");
    expect(seen).toEqual([`drivers/${alice.username}/cmd ping`]);
  });
});
