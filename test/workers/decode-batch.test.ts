// The worker's decoding of Kafka records into staging rows (pure).
import { expect, test } from "bun:test";
import type { RejectReason } from "../../lib/errors.ts";
import { cellOf } from "../../lib/h3.ts";
import type { ConsumedMessage } from "../../lib/kafka.ts";
import { encodeRecord } from "../../lib/position-record.ts";
import { decodeBatch, decodeBatchYielding } from "../../workers/decode-batch.ts";

const ID = "6b1b6f0e-1111-4222-8333-944455556666";
const NOW_MS = 1_764_000_000_000;
const message = (value: unknown, offset = 0): ConsumedMessage => ({
  topic: "driver-pos", partition: 0, offset, key: Buffer.from(ID),
  value: Buffer.from(typeof value === "string" ? value : JSON.stringify(value)),
});
const record = (positions: unknown[]) => ({ v: 1, driver_id: ID, received_ms: NOW_MS, positions });
const opts = { nowMs: NOW_MS, h3Resolution: 9 };

test("positions become staging rows with their H3 cell, oldest first", () => {
  const { rows, rejects, positionIndex } = decodeBatch(
    [message(record([{ lat: 40.7001, lon: -74, tst: NOW_MS / 1000 - 4 }, { lat: 40.7, lon: -74, tst: NOW_MS / 1000 - 8, vel: 20 }]))],
    opts,
  );
  expect(rejects).toEqual([]);
  expect(rows.map((r) => r.recordedMs)).toEqual([NOW_MS - 8000, NOW_MS - 4000]);
  expect(rows[0]!.h3).toBe(cellOf(40.7, -74, 9));
  expect(rows[0]!.speedKmh).toBe(20);
  expect(rows.map((r) => r.seq)).toEqual([0, 1]);
  // Each staged row still knows its index in the message, to be named in a dead letter.
  expect(positionIndex).toEqual([1, 0]);
});

test.each([
  ["not JSON", "{", "malformed_json"],
  ["not a v1 record", { v: 2 }, "invalid_shape"],
  ["received time absurd", { ...record([]), received_ms: 1e20 }, "invalid_shape"],
  ["driver not a UUID", { ...record([{ lat: 1, lon: 1, tst: NOW_MS / 1000 }]), driver_id: "x" }, "invalid_driver_id"],
])("%s → %s", (_name, value, reason) => {
  const { rows, rejects } = decodeBatch([message(value)], opts);
  expect(rows).toEqual([]);
  expect(rejects).toMatchObject([{ message: 0, reason }]);
});

test("a refused position is named by its index in the message; a whole refused message has no index", () => {
  const t = NOW_MS / 1000;
  const { rows, rejects, positionIndex } = decodeBatch(
    [
      message(record([{ lat: 40.7, lon: -74, tst: t - 2 }, { lat: 40.7, lon: -74, tst: t + 3_600 }, { lat: 40.7, lon: -74, tst: t - 1, acc: 5_000 }])),
      message("{", 1),
    ],
    opts,
  );
  expect(rows.length).toBe(1);
  expect(positionIndex).toEqual([0]);
  expect(rejects).toMatchObject([
    { message: 0, index: 2, reason: "low_accuracy" },
    { message: 0, index: 1, reason: "future_timestamp" },
    { message: 1, reason: "malformed_json" },
  ]);
  expect(rejects[2]!.index).toBeUndefined();
});

test("speed is not the decoder's to judge any more (SQL judges it from the last accepted position)", () => {
  const t = NOW_MS / 1000;
  const far = [{ lat: 40.7, lon: -74, tst: t - 20 }, { lat: 41.2, lon: -74, tst: t - 10 }];
  expect(decodeBatch([message(record(far))], opts).rows.length).toBe(2);
});

test("the bridge's binary (v2) record stages exactly what its JSON v1 form stages", () => {
  const t = NOW_MS / 1000;
  const positions = [
    { lat: 40.7000123, lon: -74.0000456, tst: t - 8.25, acc: 4.5, vel: 31.7, cog: -12.5, batt: 76.6 },
    { lat: 40.7001, lon: -74, tst: t - 12 },
    { lat: 40.7002, lon: -74, tst: t + 3_600 }, // refused: ahead of the clock
    { lat: 40.7003, lon: -74, tst: t - 4, acc: 5_000 }, // refused: too inaccurate
  ];
  const v1 = decodeBatch([message(record(positions))], opts);
  const v2 = decodeBatch([{ ...message(""), value: encodeRecord(ID, NOW_MS, positions) }], opts);
  expect(v2).toEqual(v1);
  expect(v2.rows.length).toBe(2);
  expect(v2.rejects.map((r) => [r.index, r.reason])).toEqual([[3, "low_accuracy"], [2, "future_timestamp"]]);
});

test.each([
  ["truncated", (b: Uint8Array) => b.subarray(0, b.length - 1), "truncated in position 0"],
  ["trailing bytes", (b: Uint8Array) => Uint8Array.from([...b, 0]), "1 bytes after the last position"],
  ["unknown flags", (b: Uint8Array) => Uint8Array.from(b, (x, i) => (i === 27 ? 16 : x)), "unknown flags 16 in position 0"],
  ["no positions", (b: Uint8Array) => Uint8Array.from(b.subarray(0, 27), (x, i) => (i === 26 ? 0 : x)), "no positions"],
])("a damaged v2 record (%s) is refused whole as invalid_shape", (_name, damage, detail) => {
  const good = encodeRecord(ID, NOW_MS, [{ lat: 40.7, lon: -74, tst: NOW_MS / 1000 }]);
  const { rows, rejects } = decodeBatch([{ ...message(""), value: Buffer.from(damage(good)) }], opts);
  expect(rows).toEqual([]);
  expect(rejects).toEqual([{ message: 0, reason: "invalid_shape", detail }]);
});

/** A mixed batch: good messages of several positions, refused positions, and whole refused messages. */
function mixedBatch(): ConsumedMessage[] {
  const t = NOW_MS / 1000;
  return Array.from({ length: 23 }, (_, i) =>
    i % 7 === 3
      ? message("{", i)
      : message(record([
          { lat: 40.7 + i / 1000, lon: -74, tst: t - 8 - i },
          { lat: 40.7, lon: -74 + i / 1000, tst: t - 4 - i, acc: i % 5 === 0 ? 5_000 : 10 },
        ]), i));
}

test.each([1, 4, 500])("decoding with the event loop given a turn every %i messages gives decodeBatch's result", async (chunk) => {
  const messages = mixedBatch();
  expect(await decodeBatchYielding(messages, opts, chunk)).toEqual(decodeBatch(messages, opts));
});

test("decodeBatchYielding lets callbacks already queued run before it has finished", async () => {
  let finished = false;
  let ranBeforeTheEnd: boolean | undefined;
  setImmediate(() => {
    ranBeforeTheEnd = !finished;
  });
  await decodeBatchYielding(mixedBatch(), opts, 4);
  finished = true;
  expect(ranBeforeTheEnd).toBe(true);
});

// The driver's id: the binary record's is canonical by construction (16 bytes), so the worker no longer checks it;
// a JSON record's is still checked and lower-cased. A message of one fix (a watched driver's) skips the sort.
const ID_CASES = [
  { name: "binary, one fix", value: () => encodeRecord(ID, NOW_MS, [{ lat: 40.7, lon: -74, tst: NOW_MS / 1000 - 1 }]), driverId: ID },
  { name: "binary, upper-case id given to the bridge", value: () => encodeRecord(ID.toUpperCase(), NOW_MS, [{ lat: 40.7, lon: -74, tst: NOW_MS / 1000 - 1 }]), driverId: ID },
  { name: "JSON, one fix", value: () => Buffer.from(JSON.stringify(record([{ lat: 40.7, lon: -74, tst: NOW_MS / 1000 - 1 }]))), driverId: ID },
  {
    name: "JSON, upper-case id",
    value: () => Buffer.from(JSON.stringify({ ...record([{ lat: 40.7, lon: -74, tst: NOW_MS / 1000 - 1 }]), driver_id: ID.toUpperCase() })),
    driverId: ID,
  },
  {
    name: "JSON, an id that is not a UUID",
    value: () => Buffer.from(JSON.stringify({ ...record([{ lat: 40.7, lon: -74, tst: NOW_MS / 1000 - 1 }]), driver_id: "driver-7" })),
    refused: "invalid_driver_id",
  },
] as { name: string; value: () => Buffer; driverId?: string; refused?: RejectReason }[];

test.each(ID_CASES)("driver id: $name", ({ value, driverId, refused }) => {
  const { rows, rejects } = decodeBatch([{ ...message(""), value: value() }], opts);
  if (refused) {
    expect(rows).toEqual([]);
    expect(rejects.map((r) => r.reason)).toEqual([refused]);
    return;
  }
  expect(rejects).toEqual([]);
  expect(rows.map((r) => [r.driverId, r.recordedMs, r.h3])).toEqual([[driverId!, NOW_MS - 1_000, cellOf(40.7, -74, 9)]]);
});
