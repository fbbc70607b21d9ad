/** The process's one heartbeat timer for its live streams, with real timers and short periods. */
import { describe, expect, test } from "bun:test";
import { createHeartbeats, type Heartbeats } from "../../../../api/modules/tracking/heartbeats.ts";
import { waitFor } from "../../support/wait.ts";

/** Registers `beat` as a stream of its own; returns what stops it. */
function join(heartbeats: Heartbeats, beat: () => void): () => void {
  const member = { beat };
  heartbeats.add(member);
  return () => heartbeats.remove(member);
}

describe("heartbeats", () => {
  test("every stream beats once per period: counts never differ by more than one", async () => {
    const heartbeats = createHeartbeats(80, 4);
    const counts = Array.from({ length: 10 }, () => 0);
    const stops = counts.map((_, i) => join(heartbeats, () => void (counts[i]! += 1)));
    expect(heartbeats.size).toBe(10);
    const spreads: number[] = [];
    await waitFor("every stream to beat three times", () => {
      spreads.push(Math.max(...counts) - Math.min(...counts));
      return Math.min(...counts) >= 3;
    });
    expect(Math.max(...spreads)).toBeLessThanOrEqual(1);
    for (const stop of stops) stop();
    expect(heartbeats.size).toBe(0);
  });

  test("a stream that stopped is not beaten again; stopping twice counts once", async () => {
    const heartbeats = createHeartbeats(40, 4);
    const counts = Array.from({ length: 8 }, () => 0);
    const stops = counts.map((_, i) => join(heartbeats, () => void (counts[i]! += 1)));
    await waitFor("a first beat for every stream", () => Math.min(...counts) >= 1);
    stops[0]!();
    stops[0]!();
    expect(heartbeats.size).toBe(7);
    const at = counts[0]!;
    const others = () => Math.min(...counts.slice(1));
    const target = others() + 2; // two more full cycles of every bucket
    await waitFor("two more beats for the others", () => others() >= target);
    expect(counts[0]).toBe(at);
    for (const stop of stops) stop();
    expect(heartbeats.size).toBe(0);
  });

  test("a beat that throws stops no other stream's", async () => {
    const heartbeats = createHeartbeats(40, 2);
    let healthy = 0;
    const a = join(heartbeats, () => {
      throw new Error("broken stream");
    });
    const b = join(heartbeats, () => void (healthy += 1));
    await waitFor("the healthy stream to keep beating", () => healthy >= 3);
    a();
    b();
  });

  test("a stream's first beat comes no sooner than (slots - 1) / slots of a period after it joins", async () => {
    const heartbeats = createHeartbeats(160, 4);
    const keep = join(heartbeats, () => undefined); // the timer is already running when the streams below join
    const firstAfter: number[] = [];
    const stops: (() => void)[] = [];
    for (let i = 0; i < 6; i++) {
      const joined = performance.now();
      let beaten = false;
      stops.push(
        join(heartbeats, () => {
          if (!beaten) firstAfter.push(performance.now() - joined);
          beaten = true;
        }),
      );
      await Bun.sleep(30); // joining at different points of the cycle
    }
    await waitFor("every stream's first beat", () => firstAfter.length === 6);
    // At least 3 of the 4 ticks of 40 ms (120 ms); bounded at 100 for a tick that fires a little early. Joining any
    // bucket in turn, as before, gave first beats from ~0 ms.
    expect(Math.min(...firstAfter)).toBeGreaterThanOrEqual(100);
    for (const stop of [keep, ...stops]) stop();
  });

  test("a period or slot count that is not positive is refused", () => {
    expect(() => createHeartbeats(0)).toThrow(RangeError);
    expect(() => createHeartbeats(15_000, 0)).toThrow(RangeError);
    expect(() => createHeartbeats(Number.NaN)).toThrow(RangeError);
  });
});
