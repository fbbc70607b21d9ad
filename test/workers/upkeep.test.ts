// Scheduled upkeep: a failing job is reported and runs again; a slow one is not doubled; compaction's pacing.
import { expect, test } from "bun:test";
import { pauseAfterStep, scheduleUpkeep } from "../../workers/upkeep.ts";
import { eventually } from "../../tools/node-workers.ts";

test("a failing job is reported each time (never thrown at the timer) and keeps its schedule", async () => {
  const failures: string[] = [];
  let runs = 0;
  const upkeep = scheduleUpkeep(
    [{ name: "sweep", everyMs: 5, run: async () => { runs++; throw new Error("database away"); } }],
    (job, error) => failures.push(`${job}: ${(error as Error).message}`),
  );
  try {
    await eventually(async () => failures.length >= 3, 10_000, "three failed runs");
  } finally {
    upkeep.stop();
  }
  expect(failures[0]).toBe("sweep: database away");
  expect(runs).toBeGreaterThanOrEqual(3);
});

test("a run still going when the next one is due is not doubled", async () => {
  let running = 0;
  let most = 0;
  let done = 0;
  const upkeep = scheduleUpkeep(
    [{
      name: "partitions",
      everyMs: 2,
      run: async () => {
        most = Math.max(most, ++running);
        await new Promise((r) => setTimeout(r, 20));
        running--;
        done++;
      },
    }],
    () => {},
  );
  try {
    await eventually(async () => done >= 3, 10_000, "three runs");
  } finally {
    upkeep.stop();
  }
  expect(most).toBe(1);
});

const PAUSE_CASES: { stepMs: number; busyShare: number; pauseMs: number }[] = [
  { stepMs: 400, busyShare: 1, pauseMs: 0 }, // no pacing
  { stepMs: 400, busyShare: 0.5, pauseMs: 400 },
  { stepMs: 400, busyShare: 0.25, pauseMs: 1_200 }, // the default: a quarter of the time working
  { stepMs: 1_000, busyShare: 0.1, pauseMs: 9_000 },
  { stepMs: 0, busyShare: 0.25, pauseMs: 0 },
  { stepMs: -5, busyShare: 0.25, pauseMs: 0 }, // a clock that stepped back pauses nothing, never a negative time
];

test.each(PAUSE_CASES)("compaction's pause after a $stepMs ms step at a busy share of $busyShare: $pauseMs ms", ({ stepMs, busyShare, pauseMs }) => {
  expect(pauseAfterStep(stepMs, busyShare)).toBeCloseTo(pauseMs, 6);
});

test.each([0, -0.5, 1.5, Number.NaN])("a busy share of %p is refused", (busyShare) => {
  expect(() => pauseAfterStep(100, busyShare)).toThrow(RangeError);
});
