/**
 * The dispatch index's pacing (api/modules/orders/driver-index.ts): reads are kept to a share of the time, so a dear
 * read (100,000 available drivers on a busy box) stretches the pause after it. Pure; no database.
 */
import { describe, expect, test } from "bun:test";
import { createDriverIndex, parsePackedDrivers, refreshDelayMs } from "../../../../api/modules/orders/driver-index.ts";

describe("refreshDelayMs", () => {
  const cases: [string, number, number | undefined, number | undefined, number][] = [
    // name, refreshMs, lastReadMs, readShare, expected pause
    ["no read yet: the refresh", 2_000, undefined, 0.05, 2_000],
    ["no bound: the refresh whatever the read took", 2_000, 900, undefined, 2_000],
    ["a cheap read: the refresh", 2_000, 50, 0.05, 2_000],
    ["a dear read: stretched to 5% of the time", 2_000, 200, 0.05, 3_800],
    ["a read on a saturated box backs off further", 2_000, 600, 0.05, 11_400],
    ["share 1: reading back to back is allowed, the refresh still holds", 2_000, 5_000, 1, 2_000],
  ];
  for (const [name, refresh, read, share, expected] of cases) {
    test(name, () => expect(refreshDelayMs(refresh, read, share)).toBe(expected));
  }
  test("a share outside (0, 1] is refused", () => {
    expect(() => refreshDelayMs(2_000, 100, 0)).toThrow(RangeError);
    expect(() => refreshDelayMs(2_000, 100, 1.5)).toThrow(RangeError);
  });
});

/** One driver at (lat, lon), packed as available_drivers() sends it. */
function packed(lat: number, lon: number): Uint8Array {
  const bytes = new Uint8Array(32);
  bytes.set([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]);
  const view = new DataView(bytes.buffer);
  view.setFloat64(16, lat);
  view.setFloat64(24, lon);
  return bytes;
}

describe("createDriverIndex paces its reads", () => {
  test("after a read of ~40 ms with a 10% share, the next waits 9 times as long; the snapshot is still trusted", async () => {
    const index = createDriverIndex(
      {
        read: async () => {
          await Bun.sleep(40);
          return parsePackedDrivers(packed(40.75, -73.98), Date.now());
        },
        close: () => {},
      },
      { refreshMs: 10, readShare: 0.1, candidates: 1, maxDistanceKm: 5 },
    );
    await index.refresh();
    const stats = index.stats();
    expect(stats.lastReadMs).toBeGreaterThanOrEqual(30);
    expect(stats.nextDelayMs).toBeGreaterThanOrEqual(270);
    expect(stats.nextDelayMs).toBe(refreshDelayMs(10, stats.lastReadMs, 0.1));
    expect(index.propose(40.7501, -73.9801)).toEqual(["12345678-9abc-def0-1234-56789abcdef0"]);
    index.close();
  });
});

/** Drivers packed as available_drivers() sends them: each id given as its 32 hex digits. */
function packedMany(drivers: { id: string; lat: number; lon: number }[]): Uint8Array {
  const bytes = new Uint8Array(32 * drivers.length);
  const view = new DataView(bytes.buffer);
  for (const [i, d] of drivers.entries()) {
    bytes.set(Uint8Array.from(d.id.replaceAll("-", "").match(/../g)!.map((h) => Number.parseInt(h, 16))), i * 32);
    view.setFloat64(i * 32 + 16, d.lat);
    view.setFloat64(i * 32 + 24, d.lon);
  }
  return bytes;
}

describe("createDriverIndex: a claimed driver is not proposed until a later read", () => {
  // Claims are looked up by the id's first 4 bytes first (a cheap key), then by the whole id: drivers sharing those
  // bytes with a claimed one must still be proposed.
  const A = "aaaaaaaa-0000-4000-8000-000000000001";
  const A_TWIN = "aaaaaaaa-ffff-4000-8000-000000000002"; // same first 4 bytes as A
  const B = "bbbbbbbb-0000-4000-8000-000000000003";
  const C = "cccccccc-0000-4000-8000-000000000004";
  const drivers = [
    { id: A, lat: 40.7500, lon: -73.9800 }, // nearest to the point asked
    { id: A_TWIN, lat: 40.7503, lon: -73.9800 },
    { id: B, lat: 40.7506, lon: -73.9800 },
    { id: C, lat: 40.7509, lon: -73.9800 },
  ];
  const cases: { name: string; claim: string[]; expected: string[] }[] = [
    { name: "nothing claimed: the nearest first", claim: [], expected: [A, A_TWIN, B] },
    { name: "the nearest claimed: its twin (same first 4 bytes) still proposed", claim: [A], expected: [A_TWIN, B, C] },
    { name: "the twin claimed: the nearest still proposed", claim: [A_TWIN], expected: [A, B, C] },
    { name: "two claimed", claim: [A, B], expected: [A_TWIN, C] },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      let readAt = Date.now();
      const index = createDriverIndex(
        { read: async () => parsePackedDrivers(packedMany(drivers), readAt), close: () => {} },
        { refreshMs: 60_000, candidates: 3, maxDistanceKm: 5 },
      );
      await index.refresh();
      for (const id of c.claim) index.claimed(id); // as PostgreSQL prints ids: lower case
      expect(index.propose(40.7499, -73.98)).toEqual(c.expected);
      readAt = Date.now() + 1; // a later read forgets every claim made before it
      await Bun.sleep(2);
      await index.refresh();
      expect(index.propose(40.7499, -73.98)).toEqual([A, A_TWIN, B]);
      index.close();
    });
  }
});
