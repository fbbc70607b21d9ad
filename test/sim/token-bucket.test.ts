import { expect, test } from "bun:test";
import { createTokenBucket } from "../../sim/token-bucket.ts";

test("hands out exactly rate × time, carrying fractions between ticks", () => {
  const bucket = createTokenBucket(25, 100, 0);
  let total = 0;
  for (let t = 7; t <= 10_000; t += 7) total += bucket.take(t); // 7 ms ticks: 0.175 tokens each
  expect(total).toBe(Math.floor((25 * 9996) / 1000));
  expect(bucket.shed()).toBe(0);
});

test("keeps at most a burst after a stall and counts the rest as shed", () => {
  const bucket = createTokenBucket(1_000, 200, 0);
  expect(bucket.take(1_000)).toBe(200);
  expect(bucket.shed()).toBe(800);
  expect(bucket.take(1_100)).toBe(100);
});

test("a clock that goes backwards gives nothing rather than negative tokens", () => {
  const bucket = createTokenBucket(100, 100, 1_000);
  expect(bucket.take(500)).toBe(0);
  expect(bucket.take(1_100)).toBe(10);
});

test("each token's due time is on the rate's regular schedule, however irregular the ticks", () => {
  const bucket = createTokenBucket(40, 100, 1_000); // one token every 25 ms
  const due: number[] = [];
  for (const t of [1_030, 1_070, 1_180, 1_181, 1_260]) {
    const n = bucket.take(t);
    for (let i = 0; i < n; i++) {
      expect(bucket.dueMs(i)).toBeLessThanOrEqual(t);
      due.push(bucket.dueMs(i));
    }
  }
  expect(due).toEqual(Array.from({ length: 10 }, (_, k) => 1_025 + 25 * k));
});
