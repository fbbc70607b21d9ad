// Splitting a batch by driver for parallel apply (pure).
import { expect, test } from "bun:test";
import { splitByDriver } from "../../workers/apply-batch.ts";
import type { StagedPosition } from "../../workers/decode-batch.ts";

const row = (seq: number, driverId: string): StagedPosition => ({
  seq, driverId, recordedMs: seq, lat: 0, lon: 0, h3: 0n, speedKmh: undefined, headingDeg: undefined,
  accuracyM: undefined, batteryPct: undefined, receivedMs: seq, message: seq,
});
const ids = Array.from({ length: 64 }, () => crypto.randomUUID());
const rows = Array.from({ length: 640 }, (_, i) => row(i, ids[i % ids.length]!));

test.each([1, 2, 3, 8])("into %i part(s): every row once, each driver in one part, seq kept", (parts) => {
  const split = splitByDriver(rows, parts);
  expect(split.length).toBeLessThanOrEqual(parts);
  expect(split.every((part) => part.length > 0)).toBe(true);
  expect(split.flat().map((r) => r.seq).sort((a, b) => a - b)).toEqual(rows.map((r) => r.seq));
  const partOf = new Map<string, number>();
  split.forEach((part, i) => {
    for (const r of part) {
      expect(partOf.get(r.driverId) ?? i).toBe(i);
      partOf.set(r.driverId, i);
    }
  });
});

test("64 random drivers over 2 parts: both parts get some", () => {
  expect(splitByDriver(rows, 2)).toHaveLength(2);
});

test("an empty batch stays one (empty) batch", () => {
  expect(splitByDriver([], 4)).toEqual([[]]);
});
