/** bench:fanout's starvation verdict: a quiet stream is the fan-out's fault only when a newer commit was due to it. */
import { describe, expect, test } from "bun:test";
import { createCommitWatch, decodeQuiet, judgeQuiet } from "../../bench/fanout/starvation.ts";

const LISTED = 1_000_000;
const GRACE = 10_000;

describe("bench:fanout starvation verdict", () => {
  const cases: { name: string; lastEventAtMs: number; commit?: { atMs: number; seenAtMs: number }; starved: boolean }[] = [
    { name: "a commit after its last event, seen long enough ago", lastEventAtMs: LISTED - 40_000, commit: { atMs: LISTED - 20_000, seenAtMs: LISTED - 15_000 }, starved: true },
    { name: "a commit seen exactly graceMs before the listing", lastEventAtMs: LISTED - 40_000, commit: { atMs: LISTED - 30_000, seenAtMs: LISTED - GRACE }, starved: true },
    { name: "an old transaction seen only just now (a long batch): its notice may be on the way", lastEventAtMs: LISTED - 40_000, commit: { atMs: LISTED - 30_000, seenAtMs: LISTED - GRACE + 1 }, starved: false },
    { name: "the last commit is what it last got", lastEventAtMs: LISTED - 40_000, commit: { atMs: LISTED - 40_500, seenAtMs: LISTED - 40_000 }, starved: false },
    { name: "the driver's positions are not applied yet", lastEventAtMs: LISTED - 40_000, starved: false },
    { name: "no event ever, though its driver's commit was seen", lastEventAtMs: 0, commit: { atMs: LISTED - 60_000, seenAtMs: LISTED - 20_000 }, starved: true },
    { name: "no event ever, and nothing applied", lastEventAtMs: 0, starved: false },
  ];
  for (const c of cases) {
    test(`${c.name}: ${c.starved ? "starved" : "waiting on ingest"}`, () => {
      const verdict = judgeQuiet([{ target: 3, lastEventAtMs: c.lastEventAtMs }], (t) => (t === 3 ? c.commit : undefined), LISTED, GRACE);
      expect(verdict).toEqual(c.starved ? { starved: 1, waitingOnIngest: 0 } : { starved: 0, waitingOnIngest: 1 });
    });
  }

  test("counts a mixed list, and decodes the load generators' flat pairs", () => {
    const quiet = decodeQuiet([0, LISTED - 50_000, 1, 0, 2, LISTED - 35_000]);
    expect(quiet).toEqual([
      { target: 0, lastEventAtMs: LISTED - 50_000 },
      { target: 1, lastEventAtMs: 0 },
      { target: 2, lastEventAtMs: LISTED - 35_000 },
    ]);
    const commits = new Map([[0, { atMs: LISTED - 30_000, seenAtMs: LISTED - 25_000 }], [2, { atMs: LISTED - 36_000, seenAtMs: LISTED - 36_000 }]]);
    expect(judgeQuiet(quiet, (t) => commits.get(t), LISTED, GRACE)).toEqual({ starved: 1, waitingOnIngest: 2 });
  });

  test("refuses an odd list", () => {
    expect(() => decodeQuiet([1, 2, 3])).toThrow("expected pairs");
  });

  test("the commit watch dates a value from when it was first read, and forgets drivers no longer read", () => {
    const watch = createCommitWatch();
    watch.observe([{ driverId: "a", atMs: 100 }, { driverId: "b", atMs: 200 }], 5_000);
    watch.observe([{ driverId: "a", atMs: 100 }, { driverId: "b", atMs: 300 }], 10_000);
    expect(watch.get("a")).toEqual({ atMs: 100, seenAtMs: 5_000 }); // unchanged: still visible since the first read
    expect(watch.get("b")).toEqual({ atMs: 300, seenAtMs: 10_000 }); // a newer commit: visible from this read
    watch.observe([{ driverId: "b", atMs: 300 }], 15_000);
    expect(watch.get("a")).toBeUndefined();
    expect(watch.get("b")).toEqual({ atMs: 300, seenAtMs: 10_000 });
  });
});
