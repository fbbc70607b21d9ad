// The worker's binary COPY encoding, read back by the real PostgreSQL: every column, NULLs, extremes, exactly.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { COPY_COLUMNS, CopyEncodingError, toCopyBinary } from "../../workers/copy-binary.ts";
import type { StagedPosition } from "../../workers/decode-batch.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;
beforeAll(async () => (db = await freshDatabase("copy_binary")));
afterAll(() => db?.drop());

const base: StagedPosition = {
  seq: 0, driverId: "6b1b6f0e-1111-4222-8333-944455556666", recordedMs: Date.UTC(2026, 10, 26, 21, 58, 42, 614),
  lat: 40.712776, lon: -74.005974, h3: 617733122422996991n, speedKmh: 23.5, headingDeg: 359.5, accuracyM: 4.25,
  batteryPct: 87, receivedMs: Date.UTC(2026, 10, 26, 21, 58, 43, 1), message: 0,
};

const cases: [string, Partial<StagedPosition>][] = [
  ["every column set", {}],
  ["optional columns absent (NULL)", { speedKmh: undefined, headingDeg: undefined, accuracyM: undefined, batteryPct: undefined }],
  ["upper-case UUID, southern and eastern extremes", { driverId: "FFFFFFFF-0000-4000-8000-ABCDEFABCDEF", lat: -90, lon: 180 }],
  ["zeroes, a time before 2000 and the largest seq", { seq: 2 ** 31 - 1, lat: 0, lon: -0.000001, speedKmh: 0, batteryPct: 0, recordedMs: Date.UTC(1999, 11, 31, 23, 59, 59, 999) }],
  ["the smallest H3 cell id PostgreSQL's bigint holds", { h3: -(2n ** 63n) }],
];

test.each(cases)("%s: read back exactly", async (_, change) => {
  const row = { ...base, ...change };
  const bytes = toCopyBinary([row, { ...row, seq: row.seq - 1 }]);
  const [back] = await db.sql.begin(async (tx) => {
    await tx`select open_position_staging()`;
    const writable = await tx.unsafe(`copy position_staging (${COPY_COLUMNS}) from stdin with (format binary)`).writable();
    await new Promise<void>((resolve, reject) => {
      writable.on("error", reject);
      writable.on("finish", resolve);
      writable.end(Buffer.from(bytes));
    });
    return tx`
      select seq, driver_id, (extract(epoch from recorded_at) * 1000)::float8 recorded_ms, lat, lon, h3::text,
             speed_kmh, heading_deg, accuracy_m, battery_pct, (extract(epoch from received_at) * 1000)::float8 received_ms,
             (select count(*)::int from position_staging) n
      from position_staging order by seq desc limit 1`;
  });
  expect(back).toEqual({
    seq: row.seq, driver_id: row.driverId.toLowerCase(), recorded_ms: row.recordedMs, lat: row.lat, lon: row.lon,
    h3: String(row.h3), speed_kmh: row.speedKmh ?? null, heading_deg: row.headingDeg ?? null,
    accuracy_m: row.accuracyM ?? null, battery_pct: row.batteryPct ?? null, received_ms: row.receivedMs, n: 2,
  });
});

test.each([
  ["too short", "6b1b6f0e-1111-4222-8333-94445555666"],
  ["not hex", "6b1b6f0e-1111-4222-8333-94445555666g"],
  ["dash misplaced", "6b1b6f0e1-111-4222-8333-944455556666"],
  ["non-ASCII", "6b1b6f0e-1111-4222-8333-94445555666é"],
])("a driver id that is not a UUID (%s) is refused, with its code", (_, driverId) => {
  expect(() => toCopyBinary([{ ...base, driverId }])).toThrow(CopyEncodingError);
  try {
    toCopyBinary([{ ...base, driverId }]);
  } catch (error) {
    expect((error as CopyEncodingError).code).toBe("COPY_ENCODING");
    expect(String(error)).toContain(driverId);
  }
});

test("no rows is a valid, empty COPY", () => {
  expect([...toCopyBinary([])]).toEqual([...Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"), 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
});
