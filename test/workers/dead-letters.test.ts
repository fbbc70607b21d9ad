// A batch's refusals → one dead letter per refused message (pure).
import { expect, test } from "bun:test";
import type { ConsumedMessage } from "../../lib/kafka.ts";
import { deadLetters, sqlRejects } from "../../workers/dead-letters.ts";
import { decodeBatch } from "../../workers/decode-batch.ts";
import { encodeRecord } from "../../lib/position-record.ts";

const ID = "6b1b6f0e-1111-4222-8333-944455556666";
const NOW_MS = 1_764_000_000_000;
const message = (value: string, offset: number): ConsumedMessage => ({
  topic: "driver-pos", partition: 3, offset, key: Buffer.from(ID), value: Buffer.from(value),
});

test("1 good + 499 bad positions in one message: one dead letter, its bytes once, 499 indexes listed", () => {
  const positions = [
    { lat: 40.7, lon: -74, tst: NOW_MS / 1000 - 5 },
    ...Array.from({ length: 499 }, (_, i) => ({ lat: 40.7, lon: -74, tst: NOW_MS / 1000 - 4 + i / 1000, acc: 5_000 })),
  ];
  const value = JSON.stringify({ v: 1, driver_id: ID, received_ms: NOW_MS, positions });
  const messages = [message(value, 41)];
  const decoded = decodeBatch(messages, { nowMs: NOW_MS, h3Resolution: 9 });
  const letters = deadLetters(messages, decoded.rejects);
  expect(letters.length).toBe(1);
  expect(Buffer.from(letters[0]!.value).toString()).toBe(value);
  expect(letters[0]!).toMatchObject({ key: ID, reason: "low_accuracy", source: "kafka:driver-pos/3@41" });
  expect(letters[0]!.refused!.map((r) => r.index).sort((a, b) => a - b)).toEqual(Array.from({ length: 499 }, (_, i) => i + 1));
});

test("the decoder's and SQL's refusals of one message share its letter; other messages get their own", () => {
  const t = NOW_MS / 1000;
  const record = (positions: unknown[]) => JSON.stringify({ v: 1, driver_id: ID, received_ms: NOW_MS, positions });
  const messages = [
    message(record([{ lat: 40.7, lon: -74, tst: t - 9 }, { lat: 40.7, lon: -74, tst: t - 8, acc: 5_000 }, { lat: 41, lon: -74, tst: t - 7 }]), 1),
    message("{", 2),
    message(record([{ lat: 40.7, lon: -74, tst: t - 6 }]), 3),
  ];
  const decoded = decodeBatch(messages, { nowMs: NOW_MS, h3Resolution: 9 });
  // SQL refused the third position of the first message (staged seq 1).
  expect(decoded.positionIndex).toEqual([0, 2, 0]);
  const letters = deadLetters(messages, [...decoded.rejects, ...sqlRejects(decoded, [1], ["impossible_speed"])]);
  expect(letters.map((l) => [l.source, l.reason, l.refused])).toEqual([
    ["kafka:driver-pos/3@1", "low_accuracy", [{ index: 1, reason: "low_accuracy" }, { index: 2, reason: "impossible_speed" }]],
    ["kafka:driver-pos/3@2", "malformed_json", undefined],
  ]);
});

test("a binary (v2) record is dead-lettered in its JSON v1 form, its refused positions under their indexes", () => {
  const t = NOW_MS / 1000;
  const positions = [{ lat: 40.7, lon: -74, tst: t - 9, vel: 12.5 }, { lat: 40.7, lon: -74, tst: t - 8, acc: 5_000 }];
  const messages: ConsumedMessage[] = [
    { topic: "driver-pos", partition: 3, offset: 7, key: Buffer.from(ID), value: encodeRecord(ID, NOW_MS, positions) },
  ];
  const decoded = decodeBatch(messages, { nowMs: NOW_MS, h3Resolution: 9 });
  const [letter, ...others] = deadLetters(messages, decoded.rejects);
  expect(others).toEqual([]);
  expect(JSON.parse(Buffer.from(letter!.value).toString())).toEqual({ v: 1, driver_id: ID, received_ms: NOW_MS, positions });
  expect(letter!.refused).toEqual([{ index: 1, reason: "low_accuracy" }]);
});

test("a v2 value that does not decode is dead-lettered byte for byte", () => {
  const whole = encodeRecord(ID, NOW_MS, [{ lat: 40.7, lon: -74, tst: NOW_MS / 1000 }]);
  const truncated = Buffer.from(whole.subarray(0, whole.length - 3));
  const messages = [{ topic: "driver-pos", partition: 3, offset: 8, key: Buffer.from(ID), value: truncated }];
  const [letter] = deadLetters(messages, decodeBatch(messages, { nowMs: NOW_MS, h3Resolution: 9 }).rejects);
  expect(letter).toMatchObject({ reason: "invalid_shape", detail: "truncated in position 0" });
  expect(Buffer.compare(Buffer.from(letter!.value), truncated)).toBe(0);
});
