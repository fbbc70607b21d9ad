// The worker's decoding of Kafka records into staging rows (pure).
import { expect, test } from "bun:test";
import { cellOf } from "../../lib/h3.ts";
import type { ConsumedMessage } from "../../lib/kafka.ts";
import { decodeBatch, STRIKES_TO_REANCHOR } from "../../workers/decode-batch.ts";
import { createFixCache } from "../../workers/fix-cache.ts";

const ID = "6b1b6f0e-1111-4222-8333-944455556666";
const NOW_MS = 1_764_000_000_000;
const message = (value: unknown, offset = 0): ConsumedMessage => ({
  topic: "driver-pos", partition: 0, offset, key: Buffer.from(ID),
  value: Buffer.from(typeof value === "string" ? value : JSON.stringify(value)),
});
const record = (positions: unknown[]) => ({ v: 1, driver_id: ID, received_ms: NOW_MS, positions });
const opts = { nowMs: NOW_MS, h3Resolution: 9 };

test("positions become staging rows with their H3 cell, oldest first", () => {
  const fixes = createFixCache(10);
  const { rows, rejects } = decodeBatch(
    [message(record([{ lat: 40.7001, lon: -74, tst: NOW_MS / 1000 - 4 }, { lat: 40.7, lon: -74, tst: NOW_MS / 1000 - 8, vel: 20 }]))],
    fixes,
    opts,
  );
  expect(rejects).toEqual([]);
  expect(rows.map((r) => r.recordedMs)).toEqual([NOW_MS - 8000, NOW_MS - 4000]);
  expect(rows[0]!.h3).toBe(cellOf(40.7, -74, 9));
  expect(rows[0]!.speedKmh).toBe(20);
  expect(rows.map((r) => r.seq)).toEqual([0, 1]);
});

test.each([
  ["not JSON", "{", "malformed_json"],
  ["not a v1 record", { v: 2 }, "invalid_shape"],
  ["received time absurd", { ...record([]), received_ms: 1e20 }, "invalid_shape"],
  ["driver not a UUID", { ...record([{ lat: 1, lon: 1, tst: NOW_MS / 1000 }]), driver_id: "x" }, "invalid_driver_id"],
])("%s → %s", (_name, value, reason) => {
  const { rows, rejects } = decodeBatch([message(value)], createFixCache(10), opts);
  expect(rows).toEqual([]);
  expect(rejects).toMatchObject([{ message: 0, reason }]);
});

test("an impossible jump is refused, but a driver is re-anchored after repeated ones (the old fix was the outlier)", () => {
  const fixes = createFixCache(10);
  fixes.remember(ID, { lat: 41.2, lon: -74, tMs: NOW_MS - 60_000 }); // a bogus fix ~55 km away
  const t = NOW_MS / 1000;
  const attempts = Array.from({ length: STRIKES_TO_REANCHOR }, (_, i) =>
    decodeBatch([message(record([{ lat: 40.7, lon: -74, tst: t - 30 + i }]))], fixes, opts),
  );
  for (const early of attempts.slice(0, -1)) expect(early.rejects).toMatchObject([{ reason: "impossible_speed" }]);
  expect(attempts.at(-1)!.rows.length).toBe(1);
});
