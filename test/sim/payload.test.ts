import { expect, test } from "bun:test";
import { decodeMqttMessage, type DevicePosition } from "../../lib/position.ts";
import { encodePositions, positionTopic } from "../../sim/payload.ts";

const id = "3f1c1b0e-5a43-4b8e-9a52-6f1f3c2d9e10";
const full: DevicePosition = { lat: 40.741123, lon: -73.989712, tst: 1764083000.512, acc: 5, vel: 32.4, cog: 180, batt: 77 };
const bare: DevicePosition = { lat: 40.75, lon: -73.98, tst: 1764083004 };
const bytes = (s: string) => new TextEncoder().encode(s);

test("one JSON position is an object with exactly the v1 fields", () => {
  const payload = encodePositions([full], false);
  expect(JSON.parse(payload)).toEqual(full);
  expect(decodeMqttMessage(positionTopic(id, false), bytes(payload))).toEqual({ ok: true, driverId: id, positions: [full], rejects: [] });
});

test("a JSON batch is an array, and absent optional fields are left out", () => {
  const payload = encodePositions([full, bare], false);
  expect(JSON.parse(payload)).toEqual([full, bare]);
  const decoded = decodeMqttMessage(positionTopic(id, false), bytes(payload));
  expect(decoded).toEqual({ ok: true, driverId: id, positions: [full, bare], rejects: [] });
});

test("the compact form is one line per position on drivers/{id}/l", () => {
  expect(positionTopic(id, true)).toBe(`drivers/${id}/l`);
  const payload = encodePositions([full, bare], true);
  expect(payload).toBe("1764083000.512,40.741123,-73.989712,5,32.4,180,77\n1764083004,40.75,-73.98,,,,");
  expect(payload.length).toBeLessThan(encodePositions([full, bare], false).length / 1.5);
  expect(decodeMqttMessage(positionTopic(id, true), bytes(payload))).toEqual({
    ok: true, driverId: id, positions: [full, bare], rejects: [],
  });
});
