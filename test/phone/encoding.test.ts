// The binary form round-trips (property-based), the decoder never throws on garbage, and the three forms decode to the
// same positions through the bridge's decoder (lib/position.ts).
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodeBinaryPositions, encodeBinaryPositions, quantiseFix, type BinaryFix } from "../../lib/position-binary.ts";
import { decodeMqttMessage, MAX_POSITIONS_PER_MESSAGE } from "../../lib/position.ts";
import { encodeFixes, payloadBytes, positionTopicFor, PAYLOAD_FORMS } from "../../phone/encoding.ts";

const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const fixArb: fc.Arbitrary<BinaryFix> = fc
  .record({
    lat: fc.double({ min: -90, max: 90, noNaN: true }),
    lon: fc.double({ min: -180, max: 180, noNaN: true }),
    tst: fc.integer({ min: 1, max: 99_999_999_999_999 }).map((ms) => ms / 1000),
    acc: optional(fc.integer({ min: 0, max: 100_000 })),
    vel: optional(fc.double({ min: 0, max: 1000, noNaN: true })),
    cog: optional(fc.integer({ min: -360, max: 360 })),
    batt: optional(fc.integer({ min: 0, max: 100 })),
  })
  .map((f) => Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined)) as unknown as BinaryFix);

const DRIVER = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";

describe("binary position form", () => {
  test("round trip: decode(encode(fixes)) = the fixes at the form's precision", () => {
    fc.assert(
      fc.property(fc.array(fixArb, { minLength: 1, maxLength: 60 }), (fixes) => {
        const decoded = decodeBinaryPositions(encodeBinaryPositions(fixes), MAX_POSITIONS_PER_MESSAGE);
        expect(decoded).toEqual({ ok: true, fixes: fixes.map(quantiseFix) });
      }),
      { numRuns: 500 },
    );
  });

  test("precision: within 0.5e-6 degree and 0.5 ms of the original", () => {
    fc.assert(
      fc.property(fixArb, (f) => {
        const q = quantiseFix(f);
        expect(Math.abs(q.lat - f.lat)).toBeLessThanOrEqual(0.5e-6 + 1e-12);
        expect(Math.abs(q.lon - f.lon)).toBeLessThanOrEqual(0.5e-6 + 1e-12);
        expect(Math.abs(q.tst - f.tst)).toBeLessThanOrEqual(0.0005 + 1e-9);
      }),
    );
  });

  test("any bytes: the decoder answers ok or a reason, never throws", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const out = decodeBinaryPositions(Uint8Array.from([0xb1, ...bytes]), MAX_POSITIONS_PER_MESSAGE);
        expect(typeof out.ok).toBe("boolean");
        const viaBridge = decodeMqttMessage(`drivers/${DRIVER}/b`, bytes);
        expect(typeof viaBridge.ok).toBe("boolean");
      }),
      { numRuns: 2000 },
    );
  });

  test.each([
    ["empty", []],
    ["wrong marker", [0x7b, 1]],
    ["no fixes", [0xb1, 0]],
    ["too many fixes", [0xb1, 0xf5, 0x03]],
    ["truncated fix", [0xb1, 1, 0, 0x80]],
    ["unknown flag", [0xb1, 1, 0x10, 1, 2, 3]],
    ["trailing bytes", [0xb1, 1, 0, 1, 2, 3, 9]],
  ])("refused: %s", (_name, bytes) => {
    expect(decodeBinaryPositions(Uint8Array.from(bytes), MAX_POSITIONS_PER_MESSAGE).ok).toBe(false);
    expect(decodeMqttMessage(`drivers/${DRIVER}/b`, Uint8Array.from(bytes))).toMatchObject({ ok: false, reason: "invalid_shape" });
  });
});

describe("the three forms through the bridge's decoder", () => {
  const fixes = [0, 4, 8, 12].map((i) => ({ lat: 40.741123 + i * 1e-4, lon: -73.989712, tst: 1_764_083_000 + i, acc: 5, vel: 32, cog: 180, batt: 77 }));
  test.each(PAYLOAD_FORMS.map((f) => [f]))("%s decodes to the same positions", (form) => {
    const payload = encodeFixes(fixes, form);
    const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    const decoded = decodeMqttMessage(positionTopicFor(DRIVER, form), bytes);
    expect(decoded).toEqual({ ok: true, driverId: DRIVER, positions: fixes, rejects: [] });
  });

  test("bytes per fix: binary < line < json, for one fix and for a batch of 8", () => {
    const size = (form: (typeof PAYLOAD_FORMS)[number], n: number) => payloadBytes(encodeFixes(fixes.concat(fixes).slice(0, n), form));
    for (const n of [1, 8]) {
      expect(size("binary", n)).toBeLessThan(size("line", n));
      expect(size("line", n)).toBeLessThan(size("json", n));
    }
  });

  test("a bad fix in a binary batch is refused by index, the rest kept (the same checks as JSON)", () => {
    const bad = [{ ...fixes[0]!, lat: 40.7 }, { ...fixes[1]!, acc: 200_000 }];
    const decoded = decodeMqttMessage(`drivers/${DRIVER}/b`, encodeBinaryPositions(bad));
    expect(decoded).toMatchObject({ ok: true, rejects: [{ index: 1, reason: "invalid_shape" }] });
  });
});
