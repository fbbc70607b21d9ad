/** bench:fanout's starvation verdict: a quiet stream is the fan-out's fault only when a newer commit was due to it. */
import { describe, expect, test } from "bun:test";
import { decodeQuiet, judgeQuiet } from "../../bench/fanout/starvation.ts";

const NOW = 1_000_000;
const GRACE = 10_000;

describe("bench:fanout starvation verdict", () => {
  const cases: { name: string; lastEventAtMs: number; committedAtMs: number | undefined; starved: boolean }[] = [
    { name: "a commit after its last event, long enough ago", lastEventAtMs: NOW - 40_000, committedAtMs: NOW - 20_000, starved: true },
    { name: "a commit exactly graceMs ago", lastEventAtMs: NOW - 40_000, committedAtMs: NOW - GRACE, starved: true },
    { name: "a commit within the grace: its notice may be on the way", lastEventAtMs: NOW - 40_000, committedAtMs: NOW - GRACE + 1, starved: false },
    { name: "the last commit is what it last got", lastEventAtMs: NOW - 40_000, committedAtMs: NOW - 40_500, starved: false },
    { name: "the driver's positions are not applied yet", lastEventAtMs: NOW - 40_000, committedAtMs: undefined, starved: false },
    { name: "no event ever, though its driver has a commit", lastEventAtMs: 0, committedAtMs: NOW - 60_000, starved: true },
    { name: "no event ever, and nothing applied", lastEventAtMs: 0, committedAtMs: undefined, starved: false },
  ];
  for (const c of cases) {
    test(`${c.name}: ${c.starved ? "starved" : "waiting on ingest"}`, () => {
      const verdict = judgeQuiet([{ target: 3, lastEventAtMs: c.lastEventAtMs }], (t) => (t === 3 ? c.committedAtMs : undefined), NOW, GRACE);
      expect(verdict).toEqual(c.starved ? { starved: 1, waitingOnIngest: 0 } : { starved: 0, waitingOnIngest: 1 });
    });
  }

  test("counts a mixed list, and decodes the load generators' flat pairs", () => {
    const quiet = decodeQuiet([0, NOW - 50_000, 1, 0, 2, NOW - 35_000]);
    expect(quiet).toEqual([
      { target: 0, lastEventAtMs: NOW - 50_000 },
      { target: 1, lastEventAtMs: 0 },
      { target: 2, lastEventAtMs: NOW - 35_000 },
    ]);
    const commits = new Map([[0, NOW - 30_000], [2, NOW - 36_000]]);
    expect(judgeQuiet(quiet, (t) => commits.get(t), NOW, GRACE)).toEqual({ starved: 1, waitingOnIngest: 2 });
  });

  test("refuses an odd list", () => {
    expect(() => decodeQuiet([1, 2, 3])).toThrow("expected pairs");
  });
});
