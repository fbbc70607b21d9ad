// Positions on the wire: every accepted form decodes, every bad input gets its reason (table-driven).
import { describe, expect, test } from "bun:test";
import { checkDevicePosition, checkInContext, DEFAULT_LIMITS, decodeMqttMessage } from "../../lib/position.ts";

const ID = "6b1b6f0e-1111-4222-8333-944455556666";
const NOW = 1_764_000_000;
const enc = (x: unknown) => new TextEncoder().encode(typeof x === "string" ? x : JSON.stringify(x));

describe("decodeMqttMessage", () => {
  test.each([
    ["v1 object", `drivers/${ID}/location`, { lat: 40.7, lon: -74, tst: NOW, acc: 5, vel: 30, cog: 90, batt: 80 }, 1],
    ["v1 batch", `drivers/${ID}/location`, [{ lat: 40.7, lon: -74, tst: NOW }, { lat: 40.71, lon: -74, tst: NOW + 4 }], 2],
    ["compact", `drivers/${ID}/l`, `${NOW},40.7,-74,5,30,90,80\n${NOW + 4},40.71,-74,,,,\n`, 2],
    ["legacy", "sensor/data", { driver_id: ID, timestamp: NOW, lat: 40.7, lon: -74 }, 1],
  ])("%s decodes", (_name, topic, payload, count) => {
    const d = decodeMqttMessage(topic, enc(payload));
    expect(d.ok).toBe(true);
    if (d.ok) {
      expect(d.driverId).toBe(ID);
      expect(d.positions.length).toBe(count);
      expect(d.rejects).toEqual([]);
    }
  });

  test.each([
    ["not JSON", `drivers/${ID}/location`, "{nope", "malformed_json"],
    ["driver id not a UUID", "drivers/42/location", { lat: 1, lon: 1, tst: NOW }, "invalid_driver_id"],
    ["latitude out of range", `drivers/${ID}/location`, { lat: 91, lon: 1, tst: NOW }, "invalid_coordinates"],
    ["NaN-ish longitude", `drivers/${ID}/location`, { lat: 1, lon: "x", tst: NOW }, "invalid_coordinates"],
    ["no timestamp", `drivers/${ID}/location`, { lat: 1, lon: 1 }, "invalid_timestamp"],
    ["milliseconds for seconds", `drivers/${ID}/location`, { lat: 1, lon: 1, tst: NOW * 1000 }, "invalid_timestamp"],
    ["speed beyond a real column", `drivers/${ID}/location`, { lat: 1, lon: 1, tst: NOW, vel: 1e300 }, "invalid_shape"],
    ["accuracy too small for a real", `drivers/${ID}/location`, { lat: 1, lon: 1, tst: NOW, acc: 1e-50 }, "invalid_shape"],
    ["negative accuracy", `drivers/${ID}/location`, { lat: 1, lon: 1, tst: NOW, acc: -1e300 }, "invalid_shape"],
    ["battery over 100", `drivers/${ID}/location`, { lat: 1, lon: 1, tst: NOW, batt: 130 }, "invalid_shape"],
    ["empty batch", `drivers/${ID}/location`, [], "invalid_shape"],
    ["unknown topic", "somewhere/else", { lat: 1, lon: 1, tst: NOW }, "invalid_shape"],
    ["legacy without driver", "sensor/data", { timestamp: NOW, lat: 1, lon: 1 }, "invalid_driver_id"],
  ])("%s → %s", (_name, topic, payload, reason) => {
    const d = decodeMqttMessage(topic, enc(payload));
    expect(d).toMatchObject({ ok: false, reason });
  });

  test("a batch keeps its good positions and names the bad ones by index", () => {
    const d = decodeMqttMessage(`drivers/${ID}/location`, enc([{ lat: 1, lon: 1, tst: NOW }, { lat: 100, lon: 1, tst: NOW }]));
    expect(d).toMatchObject({ ok: true, rejects: [{ index: 1, reason: "invalid_coordinates" }] });
  });
});

describe("checkInContext", () => {
  const limits = { ...DEFAULT_LIMITS, nowMs: NOW * 1000 };
  test.each([
    ["fresh", { lat: 40.7, lon: -74, tst: NOW - 5 }, undefined, undefined],
    ["from the future", { lat: 40.7, lon: -74, tst: NOW + 120 }, undefined, "future_timestamp"],
    ["two days old", { lat: 40.7, lon: -74, tst: NOW - 2 * 86_400 }, undefined, "too_old"],
    ["accuracy 5 km", { lat: 40.7, lon: -74, tst: NOW, acc: 5_000 }, undefined, "low_accuracy"],
    ["50 km in 10 s", { lat: 41.15, lon: -74, tst: NOW }, { lat: 40.7, lon: -74, tst: NOW - 10 }, "impossible_speed"],
    ["300 m in 10 s (GPS noise scale)", { lat: 40.7027, lon: -74, tst: NOW }, { lat: 40.7, lon: -74, tst: NOW - 10 }, undefined],
  ])("%s", (_name, p, prev, reason) => {
    const previous = prev && { lat: prev.lat, lon: prev.lon, tMs: prev.tst * 1000 };
    expect(checkDevicePosition(p)).toBeUndefined();
    expect(checkInContext(p, previous, limits)).toBe(reason as never);
  });
});
