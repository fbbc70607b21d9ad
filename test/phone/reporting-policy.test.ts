// Table-driven: one row per (mode, pending fixes, last sent fix) → send or hold, covering every mode and every rule.
import { describe, expect, test } from "bun:test";
import { decide, parseModeCommand, DEFAULT_POLICY, type Fix, type ReportingMode } from "../../phone/reporting-policy.ts";

const T = 1_764_000_000;
/** A fix `north` metres north of a fixed point, taken `s` seconds after T. */
const fix = (s: number, north = 0): Fix => ({ lat: 40.75 + north / 111_195, lon: -73.98, tst: T + s });

const rows: [string, ReportingMode, Fix[], Fix | undefined, ReturnType<typeof decide>][] = [
  ["off holds a fresh fix", "off", [fix(4)], fix(0), { send: false }],
  ["off holds 1 km of movement (no movement rule)", "off", [fix(4, 500), fix(8, 1000)], fix(0), { send: false }],
  // Fixes while told off: the app is on duty and the server's offline is stale (swept after silence): resume.
  ["off resumes on the idle deadline (28 s)", "off", [4, 8, 12, 16, 20, 24, 28].map((s) => fix(s)), fix(0), { send: true, reason: "resume" }],
  ["off resumes at once when nothing was sent yet", "off", [fix(0)], undefined, { send: true, reason: "resume" }],
  ["off with nothing pending (off duty: no fixes taken)", "off", [], undefined, { send: false }],
  ["live sends every fix", "live", [fix(4)], fix(0), { send: true, reason: "live" }],
  ["live sends a batch left from idle", "live", [fix(4), fix(8)], fix(0), { send: true, reason: "live" }],
  ["live with nothing pending", "live", [], fix(0), { send: false }],
  ["idle sends the very first fix", "idle", [fix(0)], undefined, { send: true, reason: "first" }],
  ["idle holds 4 s without movement", "idle", [fix(4)], fix(0), { send: false }],
  ["idle holds 24 s (6 fixes) standing", "idle", [4, 8, 12, 16, 20, 24].map((s) => fix(s)), fix(0), { send: false }],
  // 28 s: waiting for the 32 s fix would leave the server 32 s behind (> 30 s - 2 s slack).
  ["idle sends at 28 s standing", "idle", [4, 8, 12, 16, 20, 24, 28].map((s) => fix(s)), fix(0), { send: true, reason: "age" }],
  ["idle holds 99 m of movement", "idle", [fix(4, 50), fix(8, 99)], fix(0), { send: false }],
  ["idle sends at 100 m", "idle", [fix(4, 50), fix(8, 100)], fix(0), { send: true, reason: "moved" }],
  ["idle sends on movement south too", "idle", [fix(12, -150)], fix(0), { send: true, reason: "moved" }],
  ["idle with nothing pending", "idle", [], fix(0), { send: false }],
];

describe("reporting policy", () => {
  test.each(rows)("%s", (_name, mode, pending, lastSent, expected) => {
    expect(decide(mode, { pending, lastSent }, DEFAULT_POLICY)).toEqual(expected);
  });

  test("idle keeps the server's newest position under 30 s for a phone standing still (an hour of 4 s fixes)", () => {
    let lastSent: Fix | undefined;
    let pending: Fix[] = [];
    let worst = 0;
    for (let s = 0; s <= 3600; s += 4) {
      // Just before this fix is taken, the server's newest is lastSent.
      if (lastSent) worst = Math.max(worst, T + s - lastSent.tst);
      pending.push(fix(s));
      if (decide("idle", { pending, lastSent }).send) {
        lastSent = pending.at(-1);
        pending = [];
      }
    }
    expect(worst).toBeLessThanOrEqual(28);
    expect(worst).toBeGreaterThan(20);
  });

  test.each([
    ['{"v":1,"mode":"live","state":"assigned","at":"2026-11-30T00:00:00Z"}', "live"],
    ['{"v":1,"mode":"idle","state":"available"}', "idle"],
    ['{"v":1,"mode":"off","state":"offline"}', "off"],
    ['{"v":2,"mode":"live"}', undefined],
    ['{"v":1,"mode":"fast"}', undefined],
    ["not json", undefined],
    ["null", undefined],
  ] as const)("command %s → %p", (payload, expected) => {
    expect(parseModeCommand(new TextEncoder().encode(payload))).toBe(expected);
  });
});
