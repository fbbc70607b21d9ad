// The apply retry policy (pure: the attempt and the sleep are plain functions).
import { expect, test } from "bun:test";
import { classifyApplyError, nextBackoffMs, UNKNOWN_ERROR_TRIES, withApplyRetries } from "../../workers/apply-retry.ts";

const withCode = (code: string) => Object.assign(new Error(code), { code });

test.each([
  ["serialization failure", withCode("40001"), "transient"],
  ["connection exception class", withCode("08006"), "transient"],
  ["socket refused", withCode("ECONNREFUSED"), "transient"],
  ["value out of range", withCode("22003"), "content"],
  ["unique violation", withCode("23505"), "content"],
  ["no SQLSTATE at all", new Error("boom"), "unknown"],
  ["in failed transaction (the earlier error not said)", withCode("25P02"), "unknown"],
  ["missing function", withCode("42883"), "deployment"],
  ["statement timeout of the worker's role", withCode("57014"), "transient"],
  ["missing privilege (a grant the deployment lacks)", withCode("42501"), "deployment"],
] as const)("%s is %s", (_name, error, kind) => {
  expect(classifyApplyError(error)).toBe(kind);
});

test("backoff doubles and is capped", () => {
  expect(nextBackoffMs(100)).toBe(200);
  expect(nextBackoffMs(4_000)).toBe(5_000);
});

async function run(failures: unknown[], unknownTries = UNKNOWN_ERROR_TRIES) {
  const waits: number[] = [];
  let calls = 0;
  const outcome = withApplyRetries(
    async () => {
      const failure = failures[calls++];
      if (failure) throw failure;
      return "applied";
    },
    { unknownTries, isStopping: () => false, onRetry: () => {}, sleep: async (ms) => void waits.push(ms) },
  );
  return { outcome, waits, calls: () => calls };
}

test("transient errors are retried with growing backoff until the batch applies", async () => {
  const r = await run([withCode("40001"), withCode("57P01"), withCode("ECONNRESET")]);
  expect(await r.outcome).toBe("applied");
  expect(r.waits).toEqual([100, 200, 400]);
});

test("an unknown error is retried a bounded number of times, then thrown (to be isolated)", async () => {
  const boom = new Error("boom");
  const r = await run(Array.from({ length: 10 }, () => boom));
  await expect(r.outcome).rejects.toBe(boom);
  expect(r.calls()).toBe(UNKNOWN_ERROR_TRIES);
});

test("an unknown error that goes away is a blip: the batch applies", async () => {
  const r = await run([new Error("blip")]);
  expect(await r.outcome).toBe("applied");
});

test("content and deployment errors are thrown at once", async () => {
  for (const error of [withCode("22003"), withCode("42883")]) {
    const r = await run([error]);
    await expect(r.outcome).rejects.toBe(error);
    expect(r.calls()).toBe(1);
  }
});

test("asked to stop while retrying: gives up without throwing", async () => {
  const outcome = await withApplyRetries(
    async () => {
      throw withCode("08006");
    },
    { unknownTries: 1, isStopping: () => true, onRetry: () => {} },
  );
  expect(outcome).toBeUndefined();
});
