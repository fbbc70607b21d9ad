// bench:device's arithmetic: the LTE radio model, the pcap reader, route time, and the committed route file.
import { describe, expect, test } from "bun:test";
import { parsePcap } from "../../bench/device/capture.ts";
import { percentile } from "../../bench/device/metrics.ts";
import { routeTime } from "../../bench/device/modes.ts";
import { LTE, radioCost } from "../../bench/device/radio.ts";
import { loadRoute, makeRoute } from "../../bench/device/route.ts";

const packet = (t: number, bytes = 0, up = true) => ({ t, bytes, up });

describe("LTE radio model", () => {
  test.each([
    ["nothing sent", [], { wakeUps: 0, radioOnS: 0 }],
    ["one packet: a promotion and a full tail", [packet(0)], { wakeUps: 1, radioOnS: LTE.promotionS + LTE.tailS }],
    ["every 4 s for a minute: one wake-up, never idle", Array.from({ length: 16 }, (_, i) => packet(i * 4)), { wakeUps: 1, radioOnS: LTE.promotionS + 60 + LTE.tailS }],
    ["20 s apart: two wake-ups, two tails", [packet(0), packet(20)], { wakeUps: 2, radioOnS: 2 * (LTE.promotionS + LTE.tailS) }],
    ["11 s apart: within the tail, one wake-up", [packet(0), packet(11)], { wakeUps: 1, radioOnS: LTE.promotionS + 11 + LTE.tailS }],
  ] as const)("%s", (_name, packets, expected) => {
    const cost = radioCost(packets);
    expect(cost.wakeUps).toBe(expected.wakeUps);
    expect(cost.radioOnS).toBeCloseTo(expected.radioOnS, 6);
  });

  test("bytes cost transfer energy on top of the tail: 6 Mbit up at 6 Mbps is 1 s at beta + alpha_u * 6", () => {
    const idle = radioCost([packet(0)]).energyJ;
    const loaded = radioCost([packet(0, 750_000, true)]).energyJ;
    expect(loaded - idle).toBeCloseTo(LTE.betaW + LTE.alphaUpWPerMbps * 6, 6);
  });
});

describe("pcap reader", () => {
  test("reads times, IP sizes and direction of an Ethernet (lo) capture", () => {
    const header = new Uint8Array(24);
    const h = new DataView(header.buffer);
    h.setUint32(0, 0xa1b2c3d4, true);
    h.setUint16(4, 2, true);
    h.setUint16(6, 4, true);
    h.setUint32(16, 128, true);
    h.setUint32(20, 1, true);
    const record = (sec: number, usec: number, dstPort: number, ipBytes: number) => {
      const frame = new Uint8Array(14 + 20 + 4);
      frame[14] = 0x45; // IPv4, 20-byte header
      new DataView(frame.buffer).setUint16(14 + 20 + 2, dstPort, false);
      const r = new Uint8Array(16 + frame.length);
      const v = new DataView(r.buffer);
      v.setUint32(0, sec, true);
      v.setUint32(4, usec, true);
      v.setUint32(8, frame.length, true);
      v.setUint32(12, 14 + ipBytes, true);
      r.set(frame, 16);
      return r;
    };
    const file = new Uint8Array([...header, ...record(1_700_000_000, 500_000, 8883, 120), ...record(1_700_000_001, 0, 51000, 52)]);
    expect(parsePcap(file, [8883])).toEqual([
      { atMs: 1_700_000_000_500, bytes: 120, up: true },
      { atMs: 1_700_000_001_000, bytes: 52, up: false },
    ]);
  });
});

test("route time: the latest anchor's route time plus the real time since", () => {
  const anchors = [
    { wallMs: 1000, t: 0 },
    { wallMs: 1100, t: 4 },
    { wallMs: 1200, t: 8 },
  ];
  expect(routeTime(anchors, 1150)).toBeCloseTo(4.05, 9);
  expect(routeTime(anchors, 1200)).toBe(8);
  expect(routeTime(anchors, 900)).toBeCloseTo(-0.1, 9);
});

test("percentile: nearest rank", () => {
  expect(percentile([5, 1, 4, 2, 3], 50)).toBe(3);
  expect(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 99)).toBe(99);
  expect(percentile([], 50)).toBeNaN();
});

test("the committed route is the generator's output: an hour, available / watched / available", async () => {
  const route = await loadRoute();
  expect(route).toEqual(makeRoute());
  expect(route).toHaveLength(900);
  const watched = route.filter((f) => f.state !== "available");
  expect(watched[0]!.t).toBe(1200);
  expect(watched.at(-1)!.t).toBe(2396);
});
