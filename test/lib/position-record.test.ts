// The binary Kafka record (lib/position-record.ts): lossless against the JSON v1 record, and refusing damage.
import { expect, test } from "bun:test";
import fc from "fast-check";
import type { DevicePosition } from "../../lib/position.ts";
import { decodeRecord, encodeRecord, RECORD_V2_MARKER } from "../../lib/position-record.ts";

const ID = "6b1b6f0e-1111-4222-8333-944455556666";

const anyNumber = fc.double({ noNaN: false });
const position: fc.Arbitrary<DevicePosition> = fc.record(
  { lat: anyNumber, lon: anyNumber, tst: anyNumber, acc: anyNumber, vel: anyNumber, cog: anyNumber, batt: anyNumber },
  { requiredKeys: ["lat", "lon", "tst"] },
);

test("any positions decode to exactly what was encoded, whatever the numbers (-0, NaN, infinities included)", () => {
  fc.assert(
    fc.property(fc.uuid(), fc.double(), fc.array(position, { minLength: 1, maxLength: 50 }), (id, receivedMs, positions) => {
      const decoded = decodeRecord(encodeRecord(id, receivedMs, positions));
      expect(decoded).toEqual({ ok: true, record: { v: 1, driver_id: id.toLowerCase(), received_ms: receivedMs, positions } });
    }),
    { numRuns: 500 },
  );
});

test("a record starts with its marker and costs 25 bytes per position plus 8 per optional field", () => {
  const bytes = encodeRecord(ID, 1, [{ lat: 1, lon: 2, tst: 3 }, { lat: 1, lon: 2, tst: 3, acc: 4, batt: 5 }]);
  expect(bytes[0]).toBe(RECORD_V2_MARKER);
  expect(bytes.length).toBe(27 + 25 + 25 + 16);
});

test("a decoded record reads from a view into a larger buffer (as a consumed Kafka value can be)", () => {
  const bytes = encodeRecord(ID, 42, [{ lat: 1, lon: 2, tst: 3 }]);
  const padded = new Uint8Array(bytes.length + 10);
  padded.set(bytes, 5);
  expect(decodeRecord(padded.subarray(5, 5 + bytes.length))).toEqual({
    ok: true,
    record: { v: 1, driver_id: ID, received_ms: 42, positions: [{ lat: 1, lon: 2, tst: 3 }] },
  });
});

test.each([
  ["a driver id that is not a UUID", () => encodeRecord("driver-7", 1, [{ lat: 1, lon: 2, tst: 3 }]), "driver id is not a UUID"],
  ["no positions", () => encodeRecord(ID, 1, []), "0 positions"],
  ["more than 65,535 positions", () => encodeRecord(ID, 1, Array(65_536).fill({ lat: 1, lon: 2, tst: 3 })), "65536 positions"],
])("encoding refuses %s", (_name, encode, message) => {
  expect(encode).toThrow(message);
});

test("any bytes decode or are refused with a reason, never an exception", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const decoded = decodeRecord(Uint8Array.from([RECORD_V2_MARKER, ...bytes]));
      expect(decoded.ok || decoded.detail.length > 0).toBe(true);
    }),
    { numRuns: 2_000 },
  );
  expect(decodeRecord(new TextEncoder().encode('{"v":1}'))).toEqual({ ok: false, detail: "not a v2 position record" });
});
