// The phone client on a Mosquitto of its own (the project's config, users and ACL; tools/mosquitto-instance.ts), so
// restarting the broker disturbs nobody: the outbox survives a broker restart and a new client object, the reporting
// mode follows the retained command topic, and TLS (the 8883 listener) works with the stack's development CA.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import mqtt, { type MqttClient } from "mqtt";
import { decodeBinaryPositions } from "../../lib/position-binary.ts";
import { createPhoneClient, type PhoneClient } from "../../phone/client.ts";
import type { Fix } from "../../phone/reporting-policy.ts";
import { mosquittoInstance, type MosquittoInstance } from "../../tools/mosquitto-instance.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const PORT = 19_100 + (process.pid % 90);
const TLS_PORT = PORT + 100;
const tester = new URL(process.env.MQTT_URL!);
const DRIVER = crypto.randomUUID();
const POSITIONS = `drivers/${DRIVER}/b`;
const CMD = `drivers/${DRIVER}/cmd`;
const T0 = Math.floor(Date.now() / 1000) - 600;
const fix = (i: number, north = 0): Fix => ({ lat: 40.75 + i * 1e-5 + north / 111_195, lon: -73.98, tst: T0 + i * 4, acc: 5 });

let broker: MosquittoInstance;
let watcher: MqttClient;
const received: Fix[] = [];
const phones: PhoneClient[] = [];

async function eventually(check: () => boolean, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

function phone(options: Partial<Parameters<typeof createPhoneClient>[0]> = {}) {
  const p = createPhoneClient({
    url: `mqtt://127.0.0.1:${PORT}`,
    username: tester.username,
    password: decodeURIComponent(tester.password),
    driverId: DRIVER,
    // tester may not take a driver's id as client id (identity-guard); a real phone uses its own.
    clientId: `test-phone-${process.pid}-${phones.length}`,
    mqtt: { reconnectPeriod: 100 },
    ...options,
  });
  phones.push(p);
  return p;
}

beforeAll(async () => {
  broker = mosquittoInstance({
    port: PORT,
    tlsPort: TLS_PORT,
    dir: `${ROOT}.stack/test-phone-${process.pid}`,
    // tester is a service for identity-guard; the hold applies to phones only, but keep the restart quick anyway.
    settings: { plugin_opt_hold_publishers_seconds: 0 },
  });
  await broker.start();
  // A persistent session: what the phone publishes while the watcher reconnects is kept for it.
  watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${PORT}`, {
    protocolVersion: 5,
    clientId: `test-phone-watcher-${process.pid}`,
    username: tester.username,
    password: decodeURIComponent(tester.password),
    clean: false,
    reconnectPeriod: 100,
    properties: { sessionExpiryInterval: 600 },
  });
  watcher.on("message", (topic, payload) => {
    if (topic !== POSITIONS) return;
    const decoded = decodeBinaryPositions(payload, 500);
    if (decoded.ok) received.push(...decoded.fixes);
  });
  await watcher.subscribeAsync(POSITIONS, { qos: 1 });
});

afterAll(async () => {
  for (const p of phones) await p.stop({ force: true }).catch(() => undefined);
  await watcher?.endAsync(true);
  await broker?.remove();
});

const receivedTimes = () => new Set(received.map((f) => f.tst));

describe("phone client", () => {
  test("the outbox resends after a broker restart: every fix arrives, the outbox empties", async () => {
    received.length = 0;
    const p = phone({ fixedMode: "live" });
    await p.start();
    for (let i = 0; i < 3; i++) p.addFix(fix(i));
    await eventually(() => receivedTimes().size === 3, "3 fixes before the restart");
    await p.drained();

    await broker.stop("SIGTERM");
    for (let i = 3; i < 8; i++) p.addFix(fix(i));
    expect(p.outbox.size()).toBe(5);
    await broker.start();

    await eventually(() => receivedTimes().size === 8 && p.outbox.size() === 0, "8 fixes and an empty outbox");
    expect([...receivedTimes()].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7].map((i) => T0 + i * 4));
    await p.stop();
  });

  test("a new client object publishes what the previous one left in the outbox", async () => {
    received.length = 0;
    const first = phone({ fixedMode: "live" });
    await first.start();
    await broker.stop("SIGTERM");
    for (let i = 20; i < 24; i++) first.addFix(fix(i));
    // The app is killed: the connection object is gone, the outbox (the app's storage) is not.
    await first.stop({ force: true });
    expect(first.outbox.size()).toBe(4);
    await broker.start();

    const second = phone({ fixedMode: "live", outbox: first.outbox });
    await second.start();
    await second.drained();
    await eventually(() => receivedTimes().size === 4, "the 4 fixes left by the first client");
    expect([...receivedTimes()].sort()).toEqual([20, 21, 22, 23].map((i) => T0 + i * 4));
    await second.stop();
  });

  test("the mode follows the retained command: idle batches, live flushes and sends each fix, off sends nothing", async () => {
    received.length = 0;
    const modes: string[] = [];
    const sent: number[] = [];
    const p = phone({ onMode: (m) => modes.push(m), onSend: (s) => sent.push(s.fixes.length) });
    await p.start();
    expect(p.mode()).toBe("idle"); // no retained command yet
    p.addFix(fix(40));
    p.addFix(fix(41));
    p.addFix(fix(42));
    expect(sent).toEqual([1]); // the first fix, then a batch held (standing still, 8 s old)
    expect(p.pendingFixes()).toBe(2);

    const command = (mode: string, state: string) =>
      watcher.publishAsync(CMD, JSON.stringify({ v: 1, mode, state, at: new Date().toISOString() }), { qos: 1, retain: true });
    await command("live", "assigned");
    await eventually(() => p.mode() === "live", "mode live");
    expect(p.pendingFixes()).toBe(0); // switching to live flushed the batch
    p.addFix(fix(43));
    expect(sent).toEqual([1, 2, 1]);

    await command("off", "offline");
    await eventually(() => p.mode() === "off", "mode off");
    p.addFix(fix(44));
    p.addFix(fix(45, 500));
    expect(sent).toEqual([1, 2, 1]);
    expect(p.pendingFixes()).toBe(2);

    await command("idle", "available");
    await eventually(() => p.mode() === "idle", "mode idle");
    p.addFix(fix(46, 500)); // 500 m from the last sent fix: moved enough
    expect(sent).toEqual([1, 2, 1, 3]);
    await p.drained();
    await eventually(() => receivedTimes().size === 7, "all 7 fixes");
    expect(modes).toEqual(["live", "off", "idle"]);
    await p.stop();

    // A phone that connects later gets the retained mode at once.
    await command("live", "delivering");
    const later = phone();
    await later.start();
    await eventually(() => later.mode() === "live", "the retained mode on connect");
    await later.stop();
    await watcher.publishAsync(CMD, "", { qos: 1, retain: true });
  });

  test("flush sends the kept fixes at once; a message the broker refuses leaves the outbox and is reported", async () => {
    received.length = 0;
    const sent: string[] = [];
    const p = phone({ onSend: (s) => sent.push(`${s.reason}:${s.fixes.length}`) });
    await p.start();
    p.addFix(fix(70));
    p.addFix(fix(71));
    p.addFix(fix(72));
    expect(p.pendingFixes()).toBe(2); // idle: the first fix went, two are kept
    p.flush(); // the driver tapped "arrived": the server must see where
    expect(sent).toEqual(["first:1", "app:2"]);
    p.flush(); // nothing kept: nothing sent
    expect(sent).toHaveLength(2);
    await p.drained();
    await eventually(() => receivedTimes().size === 3, "the 3 fixes");

    // tester may not write outside its roots: the broker answers PUBACK 0x87 and resending would not help.
    const refused: number[] = [];
    const acknowledged: number[] = [];
    const outsider = phone({
      topicPrefix: "not-a-root/",
      fixedMode: "live",
      onRefused: (entry, code) => refused.push(entry.fixes, code),
      onAcknowledged: (entry) => acknowledged.push(entry.fixes),
    });
    await outsider.start();
    outsider.addFix(fix(73));
    await outsider.drained();
    expect(refused).toEqual([1, 0x87]);
    expect(acknowledged).toEqual([]);
    expect(outsider.outbox.size()).toBe(0);
    await outsider.stop();
    await p.stop();
  });

  test("over TLS (8883 listener, the stack's development CA): MQTT 5, topic alias, positions delivered", async () => {
    received.length = 0;
    const p = phone({
      url: `mqtts://127.0.0.1:${TLS_PORT}`,
      ca: readFileSync(`${ROOT}.stack/tls/ca.crt`, "utf8"),
      fixedMode: "live",
    });
    await p.start();
    expect(p.mqtt?.options.protocolVersion).toBe(5);
    for (let i = 60; i < 63; i++) p.addFix(fix(i));
    await p.drained();
    await eventually(() => receivedTimes().size === 3, "3 fixes over TLS");
    // The broker offered aliases (Mosquitto's max_topic_alias default, 10) and the client uses one for positions.
    expect(p.mqtt?.serverProperties?.topicAliasMaximum).toBeGreaterThan(0);
    // mqtt.js keeps its alias table private; read it to see the position topic really has one.
    const aliases = (p.mqtt as unknown as { topicAliasSend?: { getAliasByTopic(t: string): number | undefined } }).topicAliasSend;
    expect(aliases?.getAliasByTopic(POSITIONS)).toBe(1);
    await p.stop();
  });
});
