// The worker's timers: a failing job is reported and runs again; a slow one is not doubled.
import { expect, test } from "bun:test";
import { scheduleUpkeep } from "../../workers/upkeep.ts";
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
