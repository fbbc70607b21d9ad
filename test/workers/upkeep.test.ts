// Scheduled upkeep: a failing job is reported and runs again; a slow one is not doubled; compaction's pacing.
import { expect, test } from "bun:test";
import { idSpaceShare, pauseOnSchedule, scheduleUpkeep } from "../../workers/upkeep.ts";
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

const SCHEDULE_CASES: { startedMs: number; nowMs: number; doneShare: number; spreadMs: number; pauseMs: number }[] = [
  { startedMs: 0, nowMs: 1_000, doneShare: 0.5, spreadMs: 40_000, pauseMs: 19_000 }, // ahead: wait for the schedule
  { startedMs: 0, nowMs: 20_000, doneShare: 0.5, spreadMs: 40_000, pauseMs: 0 }, // on time
  { startedMs: 0, nowMs: 30_000, doneShare: 0.5, spreadMs: 40_000, pauseMs: 0 }, // behind (a backlog): no pause
  { startedMs: 5_000, nowMs: 6_000, doneShare: 0.25, spreadMs: 40_000, pauseMs: 9_000 },
  { startedMs: 0, nowMs: 1_000, doneShare: 1.5, spreadMs: 40_000, pauseMs: 39_000 }, // a share past 1 counts as 1
  { startedMs: 0, nowMs: 1_000, doneShare: -1, spreadMs: 40_000, pauseMs: 0 },
  { startedMs: 0, nowMs: 1_000, doneShare: 0.5, spreadMs: 0, pauseMs: 0 }, // no spread: never a pause
];

test.each(SCHEDULE_CASES)("compaction on schedule: $doneShare done at $nowMs ms of a $spreadMs ms spread → pause $pauseMs ms", ({ startedMs, nowMs, doneShare, spreadMs, pauseMs }) => {
  expect(pauseOnSchedule(startedMs, nowMs, doneShare, spreadMs)).toBe(pauseMs);
});

const SHARE_CASES: [string, number][] = [
  ["00000000-0000-4000-8000-000000000000", 0],
  ["80000000-0000-4000-8000-000000000000", 0.5],
  ["40000000-1111-4000-8000-000000000000", 0.25],
  ["FFFFFFFF-ffff-4fff-bfff-ffffffffffff", (2 ** 32 - 1) / 2 ** 32],
];

test.each(SHARE_CASES)("driver %s is %p of the id space", (id, share) => {
  expect(idSpaceShare(id)).toBe(share);
});

test("an id that is not a UUID is refused, not read as a share", () => {
  expect(() => idSpaceShare("not-a-uuid")).toThrow(RangeError);
});
