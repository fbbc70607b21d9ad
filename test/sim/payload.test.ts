import { expect, test } from "bun:test";
import { decodeMqttMessage, type DevicePosition } from "../../lib/position.ts";
import { quantiseFix } from "../../lib/position-binary.ts";
import { encodePositions, positionTopic } from "../../sim/payload.ts";

const id = "3f1c1b0e-5a43-4b8e-9a52-6f1f3c2d9e10";
const full: DevicePosition = { lat: 40.741123, lon: -73.989712, tst: 1764083000.512, acc: 5, vel: 32.4, cog: 180, batt: 77 };
const bare: DevicePosition = { lat: 40.75, lon: -73.98, tst: 1764083004 };
const bytes = (s: string) => new TextEncoder().encode(s);

test("one JSON position is an object with exactly the v1 fields", () => {
  const payload = encodePositions([full], "json");
  expect(JSON.parse(payload)).toEqual(full);
  expect(decodeMqttMessage(positionTopic(id, "json"), bytes(payload))).toEqual({ ok: true, driverId: id, positions: [full], rejects: [] });
});

test("a JSON batch is an array, and absent optional fields are left out", () => {
  const payload = encodePositions([full, bare], "json");
  expect(JSON.parse(payload)).toEqual([full, bare]);
  const decoded = decodeMqttMessage(positionTopic(id, "json"), bytes(payload));
  expect(decoded).toEqual({ ok: true, driverId: id, positions: [full, bare], rejects: [] });
});

test("the compact form is one line per position on drivers/{id}/l", () => {
  expect(positionTopic(id, "compact")).toBe(`drivers/${id}/l`);
  const payload = encodePositions([full, bare], "compact");
  expect(payload).toBe("1764083000.512,40.741123,-73.989712,5,32.4,180,77\n1764083004,40.75,-73.98,,,,");
  expect(payload.length).toBeLessThan(encodePositions([full, bare], "json").length / 1.5);
  expect(decodeMqttMessage(positionTopic(id, "compact"), bytes(payload))).toEqual({
    ok: true, driverId: id, positions: [full, bare], rejects: [],
  });
});

test("a binary batch goes to drivers/{id}/b and decodes to what the binary form keeps of each fix", () => {
  const payload = encodePositions([full, bare], "binary");
  expect(positionTopic(id, "binary", "bench/1/")).toBe(`bench/1/drivers/${id}/b`);
  const decoded = decodeMqttMessage(positionTopic(id, "binary"), payload);
  expect(decoded).toEqual({ ok: true, driverId: id, positions: [full, bare].map(quantiseFix), rejects: [] });
  expect(payload.length).toBeLessThan(encodePositions([full, bare], "compact").length / 2);
});
