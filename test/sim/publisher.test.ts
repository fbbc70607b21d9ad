// Against the real Mosquitto that `bin/stack up` started: what the simulator publishes is what the bridge decodes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import mqtt, { type MqttClient } from "mqtt";
import { config, parseMqttAdminConfig } from "../../lib/config.ts";
import { createMqttCredentialStore } from "../../lib/mqtt-credentials.ts";
import { quantiseFix } from "../../lib/position-binary.ts";
import { decodeMqttMessage, type DevicePosition } from "../../lib/position.ts";
import { cityByName, insideBbox } from "../../lib/cities.ts";
import { MAX_SPEED_KMH } from "../../sim/movement.ts";
import { encodePositions, positionTopic } from "../../sim/payload.ts";
import { BROKER_MAX_PAYLOAD_BYTES, connectPublisher } from "../../sim/publisher.ts";
import { startFleet } from "../../sim/simulated-fleet.ts";
import { haversineM } from "../../lib/position.ts";
import { readFileSync } from "node:fs";

interface Received {
  topic: string;
  payload: Uint8Array;
}

let subscriber: MqttClient;
const received: Received[] = [];

beforeAll(async () => {
  subscriber = await mqtt.connectAsync(config().mqttUrl, { clientId: `publisher-test-${process.pid}`, clean: true });
  subscriber.on("message", (topic, payload) => received.push({ topic, payload: new Uint8Array(payload) }));
});

afterAll(async () => {
  await subscriber?.endAsync(true);
});

const uuid = () => crypto.randomUUID();
const messagesFor = (ids: Set<string>) => received.filter((m) => ids.has(m.topic.split("/")[1] ?? ""));

async function waitFor(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for messages");
    await Bun.sleep(20);
  }
}

describe("publisher", () => {
  test("JSON, JSON batch, compact and binary messages arrive intact and decode as the bridge decodes them", async () => {
    const driver = uuid();
    await subscriber.subscribeAsync([`drivers/${driver}/location`, `drivers/${driver}/l`, `drivers/${driver}/b`], { qos: 1 });
    const publisher = await connectPublisher({ mqttUrl: config().mqttUrl, connections: 2 });
    const at = (i: number): DevicePosition => ({ lat: 40.75 + i / 1e4, lon: -73.98, tst: 1764083000 + i, acc: 5, vel: 30, cog: 90, batt: 80 });
    const single = [at(0)];
    const batch = [at(1), at(2), at(3)];
    const compact = [at(4), { lat: 40.76, lon: -73.97, tst: 1764083005.25 }];
    const binary = [at(5), at(6), at(7), { lat: 40.7654321, lon: -73.9712345, tst: 1764083008.125 }];
    expect(publisher.publish(0, positionTopic(driver, "json"), encodePositions(single, "json"), 1)).toBe(true);
    expect(publisher.publish(1, positionTopic(driver, "json"), encodePositions(batch, "json"), 3)).toBe(true);
    expect(publisher.publish(0, positionTopic(driver, "compact"), encodePositions(compact, "compact"), 2)).toBe(true);
    expect(publisher.publish(1, positionTopic(driver, "binary"), encodePositions(binary, "binary"), 4)).toBe(true);
    await waitFor(() => messagesFor(new Set([driver])).length === 4);
    await publisher.close();
    expect(publisher.stats()).toMatchObject({ connections: 2, messages: 4, positions: 10, inFlight: 0, errors: 0 });

    const decoded = messagesFor(new Set([driver])).map((m) => decodeMqttMessage(m.topic, m.payload));
    const byCount = new Map(decoded.map((d) => [d.ok ? d.positions.length : -1, d]));
    expect(byCount.get(1)).toEqual({ ok: true, driverId: driver, positions: single, rejects: [] });
    expect(byCount.get(3)).toEqual({ ok: true, driverId: driver, positions: batch, rejects: [] });
    expect(byCount.get(2)).toEqual({ ok: true, driverId: driver, positions: compact, rejects: [] });
    // The binary form keeps micro-degrees and milliseconds (lib/position-binary.ts): what it keeps, exactly.
    expect(byCount.get(4)).toEqual({ ok: true, driverId: driver, positions: binary.map(quantiseFix), rejects: [] });
    const compactMessage = messagesFor(new Set([driver])).find((m) => m.topic.endsWith("/l"));
    expect(new TextDecoder().decode(compactMessage!.payload).split("\n")).toHaveLength(2);
  });

  test("one driver per connection with its own credentials; the broker's refusals and oversized messages are counted", async () => {
    const store = createMqttCredentialStore({ ...parseMqttAdminConfig(), mqttUrl: config().mqttUrl });
    const phones = await store.issueMany([uuid(), uuid()]);
    try {
      const publisher = await connectPublisher({
        mqttUrl: config().mqttUrl,
        connections: 2,
        credentials: (i) => ({ username: phones[i]!.username, password: phones[i]!.password, clientId: phones[i]!.client_id }),
      });
      const [own, other] = [phones[0]!.username, phones[1]!.username];
      await subscriber.subscribeAsync(`drivers/${own}/location`, { qos: 1 });
      const payload = encodePositions([{ lat: 40.75, lon: -73.98, tst: 1764083000 }], "json");
      expect(publisher.publish(0, positionTopic(own, "json"), payload, 1)).toBe(true);
      expect(publisher.publish(0, positionTopic(other, "json"), payload, 1)).toBe(true);
      // Over the broker's 256 KiB limit (identity-guard's plugin_opt_max_payload, which would answer 0x87): refused
      // before sending and counted apart as `oversized`.
      expect(publisher.publish(0, positionTopic(own, "json"), "x".repeat(BROKER_MAX_PAYLOAD_BYTES + 1), 1)).toBe(false);
      await publisher.close();
      expect(publisher.stats()).toMatchObject({ messages: 1, positions: 1, errors: 0, refused: { "0x87": 1, oversized: 1 } });
      await waitFor(() => messagesFor(new Set([own])).length === 1);
    } finally {
      await Promise.all(phones.map((p) => store.revoke(p.username)));
      await store.close();
    }
  });

  test("the simulator's payload limit is the broker's (identity-guard's plugin_opt_max_payload)", () => {
    const conf = readFileSync(new URL("../../infra/mosquitto/mosquitto.conf", import.meta.url), "utf8");
    expect(/^plugin_opt_max_payload (\d+)$/m.exec(conf)?.[1]).toBe(String(BROKER_MAX_PAYLOAD_BYTES));
  });

  test("a connection with too many unacknowledged messages refuses more", async () => {
    const publisher = await connectPublisher({ mqttUrl: config().mqttUrl, connections: 1, maxInFlight: 2 });
    const topic = positionTopic(uuid(), "json");
    const payload = encodePositions([{ lat: 40.75, lon: -73.98, tst: 1764083000 }], "json");
    // Synchronously: no acknowledgement can have arrived between these calls.
    expect([1, 2, 3].map(() => publisher.publish(0, topic, payload, 1))).toEqual([true, true, false]);
    await publisher.close();
    expect(publisher.stats()).toMatchObject({ messages: 2, inFlight: 0 });
  });
});

describe("startFleet", () => {
  test("every driver reports at the configured rate with plausible, decodable JSON positions", async () => {
    const city = cityByName("nyc");
    const drivers = Array.from({ length: 12 }, (_, i) => ({ id: uuid(), lat: 40.72 + i * 0.005, lon: -73.99 + i * 0.001 }));
    const ids = new Set(drivers.map((d) => d.id));
    await subscriber.subscribeAsync("drivers/+/location", { qos: 1 });
    const ticks: number[] = [];
    const fleet = await startFleet({
      drivers, rateHz: 4, mqttUrl: config().mqttUrl, city, seed: 1, driversPerConnection: 5, onTick: (s) => ticks.push(s.offered),
    });
    await Bun.sleep(2_500);
    await fleet.stop();
    const stats = fleet.stats();
    await waitFor(() => messagesFor(ids).length >= stats.messages);

    expect(stats).toMatchObject({ drivers: 12, connections: 3, dropped: 0, inFlight: 0, buffered: 0, errors: 0 });
    expect(stats.sent).toBe(stats.offered);
    // 12 drivers × 4 Hz × 2.5 s = 120, give or take the start-up and the last tick.
    expect(stats.offered).toBeGreaterThan(100);
    expect(stats.offered).toBeLessThanOrEqual(124);
    expect(ticks.length).toBeGreaterThan(20);

    const byDriver = new Map<string, DevicePosition[]>();
    for (const m of messagesFor(ids)) {
      const decoded = decodeMqttMessage(m.topic, m.payload);
      if (!decoded.ok) throw new Error(`rejected: ${decoded.reason}`);
      expect(decoded.rejects).toEqual([]);
      byDriver.set(decoded.driverId, [...(byDriver.get(decoded.driverId) ?? []), ...decoded.positions]);
    }
    expect(byDriver.size).toBe(12);
    for (const positions of byDriver.values()) {
      expect(positions.length).toBeGreaterThanOrEqual(8);
      positions.sort((a, b) => a.tst - b.tst);
      for (const [i, p] of positions.entries()) {
        expect(insideBbox(city, p)).toBe(true);
        expect(p.vel!).toBeLessThanOrEqual(MAX_SPEED_KMH);
        expect(p.cog!).toBeGreaterThanOrEqual(0);
        expect(p.cog!).toBeLessThan(360);
        expect(p.acc!).toBeGreaterThan(0);
        expect(Math.abs(p.tst - Date.now() / 1000)).toBeLessThan(30);
        const prev = positions[i - 1];
        if (!prev) continue;
        // Reports are 1/rateHz apart; the distance between them fits the speed limit (plus a few metres of GPS noise).
        expect(p.tst - prev.tst).toBeCloseTo(0.25, 1);
        const metres = haversineM(prev.lat, prev.lon, p.lat, p.lon);
        expect(metres).toBeLessThan((MAX_SPEED_KMH / 3.6) * (p.tst - prev.tst) + 25);
      }
    }
  });

  test.each([
    ["compact", "l"],
    ["binary", "b"],
  ] as const)("%s batches carry `batch` positions per message on drivers/{id}/%s", async (form, suffix) => {
    const drivers = Array.from({ length: 4 }, () => ({ id: uuid(), lat: 40.75, lon: -73.98 }));
    const ids = new Set(drivers.map((d) => d.id));
    await subscriber.subscribeAsync(`drivers/+/${suffix}`, { qos: 1 });
    const fleet = await startFleet({ drivers, rateHz: 10, batch: 3, form, mqttUrl: config().mqttUrl, seed: 2 });
    await Bun.sleep(1_500);
    await fleet.stop();
    const stats = fleet.stats();
    await waitFor(() => messagesFor(ids).length >= stats.messages);
    const messages = messagesFor(ids);
    expect(messages.length).toBe(stats.messages);
    expect(stats.sent).toBe(stats.offered);
    expect(stats.buffered).toBe(0);
    let full = 0;
    for (const m of messages) {
      expect(m.topic.endsWith(`/${suffix}`)).toBe(true);
      const decoded = decodeMqttMessage(m.topic, m.payload);
      if (!decoded.ok) throw new Error(`rejected: ${decoded.reason}`);
      expect(decoded.positions.length).toBeLessThanOrEqual(3);
      if (decoded.positions.length === 3) full++;
    }
    // Partial batches: each phone's first (it starts mid-batch, so phones do not all send at once) and its last
    // (flushed at stop).
    expect(full).toBeGreaterThanOrEqual(messages.length - 2 * drivers.length);
    expect(full).toBeGreaterThan(0);
  });

  test("driveTo brings a driver to the target, holds it there, and release lets it roam again", async () => {
    const driver = { id: uuid(), lat: 40.75, lon: -73.98 };
    const target = { lat: 40.7502, lon: -73.98 }; // ~22 m north
    await subscriber.subscribeAsync(`drivers/${driver.id}/location`, { qos: 1 });
    const fleet = await startFleet({ drivers: [driver], rateHz: 10, mqttUrl: config().mqttUrl, gpsNoiseM: 0, seed: 3 });
    expect(fleet.has(driver.id)).toBe(true);
    expect(fleet.has(uuid())).toBe(false);
    const startedMs = Date.now();
    await fleet.driveTo(driver.id, target);
    // 22 m at 20–45 km/h, sampled every 100 ms.
    expect(Date.now() - startedMs).toBeLessThan(5_000);
    expect(fleet.stats().dispatched).toBe(1);
    await Bun.sleep(500);
    const ids = new Set([driver.id]);
    await waitFor(() => messagesFor(ids).length >= 3);
    const last = messagesFor(ids).slice(-3).map((m) => decodeMqttMessage(m.topic, m.payload));
    for (const d of last) {
      if (!d.ok) throw new Error("rejected");
      expect(d.positions[0]).toMatchObject({ lat: target.lat, lon: target.lon, vel: 0 });
    }
    fleet.release(driver.id);
    expect(fleet.stats().dispatched).toBe(0);
    await expect(fleet.driveTo(uuid(), target)).rejects.toThrow("not in this fleet");
    await fleet.stop();
  });
});
