// The compact trail (migration 0014) on real PostGIS: compaction of closed hours, driver_path over both parts,
// idempotency, late fixes, retention, and a redelivered batch through the worker's own apply.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cellOf } from "../../lib/h3.ts";
import { applyPositionBatch } from "../../workers/apply-batch.ts";
import type { StagedPosition } from "../../workers/decode-batch.ts";
import { generateTrailDay } from "../../bench/trail/generate.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;
const HOUR = 3_600_000;
// Three hours before the current hour: closed long ago, so compact_trail_step's default cutoff takes it.
const BASE = Math.floor(Date.now() / HOUR) * HOUR - 3 * HOUR;

interface Fix {
  at: number; // epoch ms, may carry a fraction (sub-millisecond)
  lat: number;
  lon: number;
  speed?: number | null;
  heading?: number | null;
  accuracy?: number | null;
  receivedAfter?: number | null; // ms after `at`
  h3?: bigint;
}
interface PathRow {
  driver_id: string;
  recorded_at: Date;
  lat: number;
  lon: number;
  h3: bigint;
  speed_kmh: number | null;
  heading_deg: number | null;
  accuracy_m: number | null;
  received_at: Date | null;
}

const newDriver = async () => (await db.sql<{ id: string }[]>`insert into drivers (name) values ('t') returning id`)[0]!.id;

async function insertRaw(driverId: string, fixes: Fix[]) {
  for (const f of fixes) {
    await db.sql`
      insert into position_trail (driver_id, recorded_at, lat, lon, h3, speed_kmh, heading_deg, accuracy_m, received_at)
      values (${driverId}, to_timestamp(${f.at / 1000}), ${f.lat}, ${f.lon}, ${(f.h3 ?? cellOf(f.lat, f.lon, 9)).toString()},
              ${f.speed === undefined ? 20.25 : f.speed}, ${f.heading === undefined ? 90.04 : f.heading},
              ${f.accuracy === undefined ? 5.5 : f.accuracy},
              ${f.receivedAfter === null ? null : new Date(Math.floor(f.at) + (f.receivedAfter ?? 150))})`;
  }
}

const path = (driverId: string, from = "2000-01-01T00:00:00Z", to = "2100-01-01T00:00:00Z") =>
  db.sql<PathRow[]>`select * from driver_path(${driverId}, ${from}::timestamptz, ${to}::timestamptz)`;
const compact = () => db.sql<{ positions: number; segments: number }[]>`select * from compact_trail_step(null, 1000)`;
const rawCount = async (driverId: string) =>
  (await db.sql<{ n: number }[]>`select count(*)::int n from position_trail where driver_id = ${driverId}`)[0]!.n;
const segments = (driverId: string) =>
  db.sql<{ first_at: Date; fixes: number }[]>`
    select first_at, fixes from position_trail_compact where driver_id = ${driverId} order by first_at`;
/** Every stored byte of the compact part, to compare two states. */
const compactState = async () =>
  (await db.sql<{ rows: number; digest: string; bytes: string }[]>`
    select count(*)::int as rows, md5(coalesce(string_agg(c::text, '|' order by driver_id, first_at), '')) as digest,
           (select sum(pg_total_relation_size(inhrelid))::text from pg_inherits
            where inhparent = 'position_trail_compact'::regclass) as bytes
    from position_trail_compact c`)[0]!;

/**
 * A fix reads back within the stated quantisation: time truncated to the millisecond, latitude and longitude within
 * half a micro-degree, speed, heading and accuracy on the 0.1 grid within half a step (accuracy clamped at 3276.7 m),
 * received_at to the millisecond, the H3 cell exactly, and unknown values unknown.
 */
function expectSamePath(rows: PathRow[], fixes: Fix[]) {
  expect(rows.map((r) => r.recorded_at.getTime())).toEqual(fixes.map((f) => Math.floor(f.at)));
  rows.forEach((r, i) => {
    const f = fixes[i]!;
    expect(Math.abs(r.lat - f.lat)).toBeLessThanOrEqual(5e-7 + 1e-12);
    expect(Math.abs(r.lon - f.lon)).toBeLessThanOrEqual(5e-7 + 1e-12);
    expect(r.h3).toBe(f.h3 ?? cellOf(f.lat, f.lon, 9));
    const tenths: [number | null, number | null | undefined, number, number][] = [
      [r.speed_kmh, f.speed, 20.25, Infinity],
      [r.heading_deg, f.heading, 90.04, Infinity],
      [r.accuracy_m, f.accuracy, 5.5, 3276.7],
    ];
    for (const [got, sent, fallback, max] of tenths) {
      if (sent === null) {
        expect(got).toBeNull();
        continue;
      }
      const want = Math.min(sent ?? fallback, max);
      expect(Math.abs(got! - want)).toBeLessThanOrEqual(0.05 + 1e-4);
      expect(Math.abs(got! * 10 - Math.round(got! * 10))).toBeLessThan(1e-3);
    }
    const received = f.receivedAfter === null ? null : Math.floor(f.at) + (f.receivedAfter ?? 150);
    expect(r.received_at?.getTime() ?? null).toBe(received);
  });
}

/** n fixes every 4 s from `start`, moving ~30 m north-east each. */
const ride = (start: number, n: number, lat = 40.7, lon = -74.0): Fix[] =>
  Array.from({ length: n }, (_, i) => ({ at: start + i * 4000 + (i % 7), lat: lat + i * 0.00027, lon: lon + i * 0.00021 }));

beforeAll(async () => {
  db = await freshDatabase("trail_compaction");
  await db.sql`select ensure_trail_partitions(${new Date(BASE - 2 * 24 * HOUR)}, now())`;
}, 180_000);
afterAll(() => db?.drop());

describe("round trip through compaction, exact to the stated quantisation", () => {
  const cases: { name: string; fixes: Fix[]; segments: number[] }[] = [
    { name: "a plain ride is one segment", fixes: ride(BASE, 20), segments: [20] },
    {
      name: "unknown speed, heading, accuracy and received time stay unknown",
      fixes: ride(BASE, 3).map((f, i) => (i === 1 ? { ...f, speed: null, heading: null, accuracy: null, receivedAfter: null } : f)),
      segments: [3],
    },
    {
      name: "southern and western hemispheres, values at half a step",
      fixes: [
        { at: BASE, lat: -33.8688005, lon: 151.2092955, speed: 0.05, heading: 359.95, accuracy: 0.05 },
        { at: BASE + 4000, lat: -33.8690004, lon: 151.2094, speed: 0, heading: 0, accuracy: 0 },
      ],
      segments: [2],
    },
    {
      name: "a gap over 32.767 s starts a new segment",
      fixes: [...ride(BASE, 3), ...ride(BASE + 3 * 4000 + 40_000, 3, 40.7009, -73.9993)],
      segments: [3, 3],
    },
    {
      name: "a jump over 32,767 micro-degrees starts a new segment",
      fixes: [...ride(BASE, 2), ...ride(BASE + 8000, 2, 40.75, -74.0)],
      segments: [2, 2],
    },
    {
      name: "an hour boundary starts a new segment",
      fixes: ride(BASE + HOUR - 8000, 4),
      segments: [2, 2],
    },
    {
      name: "sub-millisecond time is truncated to the millisecond; accuracy clamps at 3276.7 m",
      fixes: [{ at: BASE + 0.75, lat: 40.7, lon: -74, accuracy: 5000 }, { at: BASE + 4000.5, lat: 40.7001, lon: -74 }],
      segments: [2],
    },
    {
      name: "H3 cells, repeated or not, come back as they were",
      fixes: ride(BASE, 6).map((f, i) => ({ ...f, h3: [1n, 1n, 2n, 2n, 1n, 9_223_372_036_854_775_807n][i] })),
      segments: [6],
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const driver = await newDriver();
      await insertRaw(driver, c.fixes);
      const before = await path(driver);
      await compact();
      expect(await rawCount(driver)).toBe(0);
      expect((await segments(driver)).map((s) => s.fixes)).toEqual(c.segments);
      const after = await path(driver);
      expectSamePath(after, c.fixes);
      // Readers see the same path before and after (before: unquantised raw rows; after: within the quantisation).
      expect(after.map((r) => r.recorded_at.getTime())).toEqual(before.map((r) => Math.floor(r.recorded_at.getTime())));
    });
  }
});

test("compaction is idempotent: a second run moves nothing and leaves the same rows and bytes", async () => {
  const driver = await newDriver();
  await insertRaw(driver, ride(BASE + HOUR, 30));
  await compact();
  const first = await compactState();
  const [again] = await compact();
  expect(again).toMatchObject({ positions: 0, segments: 0 });
  expect(await compactState()).toEqual(first);
});

/** The compaction job's settings (tracking_settings, 0024) for one test; the pass row starts afresh. */
async function compactionSettings(settings: { perStep: number; spreadS: number; yieldLag?: number; everyS?: number }) {
  await db.sql`
    update tracking_settings
    set trail_compaction_drivers_per_step = ${settings.perStep}, trail_compaction_spread_s = ${settings.spreadS},
        trail_compaction_yield_lag = ${settings.yieldLag ?? 0}, trail_compaction_every_s = ${settings.everyS ?? 0}
    where id = 1`;
  await db.sql`
    update trail_compaction_pass
    set started_at = null, after_driver = null, last_step_moved = 0, moved = 0, last_started_at = null, finished_at = null`;
  await db.sql`delete from ingest_lag`;
}
const pass = async () =>
  (await db.sql<{ started: boolean; after_driver: string | null; moved: number; finished: boolean }[]>`
    select started_at is not null as started, after_driver, moved::int, finished_at is not null as finished
    from trail_compaction_pass`)[0]!;
const tick = (budget: string) => db.sql`call trail_compaction_tick(${budget}::interval)`;
const driverWithId = async (id: string) => {
  await db.sql`insert into drivers (id, name) values (${id}, 't')`;
  return id;
};

test("a tick walks every driver in steps, one pass, and starts no new pass before its time", async () => {
  await compactionSettings({ perStep: 1, spreadS: 0, everyS: 3600 });
  const drivers = [await newDriver(), await newDriver(), await newDriver()];
  for (const d of drivers) await insertRaw(d, ride(BASE + 40 * 60_000, 4));
  await tick("5 minutes");
  for (const d of drivers) {
    expect(await rawCount(d)).toBe(0);
    expect((await segments(d)).map((s) => s.fixes)).toEqual([4]);
  }
  expect(await pass()).toMatchObject({ started: false, finished: true });
  expect((await pass()).moved).toBeGreaterThanOrEqual(12);
  // The tick stamped its heartbeat (0025), which the worker exports as upkeep_job_age_seconds.
  const [beat] = await db.sql<{ age_s: number }[]>`select age_s from upkeep_heartbeats() where job = 'trail_compaction'`;
  expect(beat!.age_s).toBeLessThan(60);
  // The pass finished; the next may start an hour after this one did, so a tick now does nothing.
  const late = await newDriver();
  await insertRaw(late, ride(BASE + 40 * 60_000, 4));
  await tick("5 minutes");
  expect(await rawCount(late)).toBe(4);
  await db.sql`update tracking_settings set trail_compaction_every_s = 0`;
  await tick("5 minutes");
  expect(await rawCount(late)).toBe(0);
});

describe("a pass keeps to its schedule: after a step that moved fixes it waits until the share done is due", () => {
  // The pass is half done (the last driver's id is half the id space) and the last step moved fixes; the driver
  // after it has fixes to move. Started just now, half of the 50-minute spread is not due: the tick only waits. Started
  // an hour ago, the pass is behind: the tick goes on at once.
  const cases = [
    { name: "ahead of schedule: waits, moves nothing", startedAgo: "0 s", budget: "1.5 seconds", moves: false },
    { name: "behind schedule (a backlog): no wait", startedAgo: "1 hour", budget: "1 minute", moves: true },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      await compactionSettings({ perStep: 1, spreadS: 3000 });
      const next = await driverWithId(`c${crypto.randomUUID().slice(1)}`);
      await insertRaw(next, ride(BASE + 40 * 60_000, 4));
      await db.sql`
        update trail_compaction_pass
        set started_at = now() - ${c.startedAgo}::interval, last_started_at = now() - ${c.startedAgo}::interval,
            after_driver = '80000000-0000-4000-8000-000000000000', last_step_moved = 5`;
      await tick(c.budget);
      expect(await rawCount(next)).toBe(c.moves ? 0 : 4);
      expect((await pass()).started).toBe(!c.moves);
    });
  }
});

test("a pass waits while the workers report ingest behind, then goes on", async () => {
  await compactionSettings({ perStep: 100_000, spreadS: 0, yieldLag: 10_000 });
  const driver = await newDriver();
  await insertRaw(driver, ride(BASE + 40 * 60_000, 4));
  await db.sql`select report_ingest_lag('worker-a', 6000), report_ingest_lag('worker-b', 6000)`; // 12,000 in all
  await tick("1.5 seconds");
  expect(await rawCount(driver)).toBe(4);
  expect((await pass()).started).toBe(true);
  await db.sql`select report_ingest_lag('worker-b', 0)`;
  await tick("1 minute");
  expect(await rawCount(driver)).toBe(0);
  expect(await pass()).toMatchObject({ started: false, finished: true });
});

test("a wait for ingest pauses the pass's schedule: its start moves on by the time waited (0026)", async () => {
  await compactionSettings({ perStep: 100_000, spreadS: 3000, yieldLag: 10_000 });
  // After the pass's last driver (a quarter of the id space), so its next step reaches it.
  const driver = await driverWithId(`c${crypto.randomUUID().slice(1)}`);
  await insertRaw(driver, ride(BASE + 40 * 60_000, 4));
  await db.sql`
    update trail_compaction_pass
    set started_at = now() - interval '20 minutes', last_started_at = now() - interval '20 minutes',
        after_driver = '40000000-0000-4000-8000-000000000000', last_step_moved = 5`;
  const startedAt = async () =>
    (await db.sql<{ at: Date }[]>`select started_at as at from trail_compaction_pass`)[0]!.at.getTime();
  const before = await startedAt();
  await db.sql`select report_ingest_lag('worker-a', 12000)`;
  const tickStarted = performance.now();
  await tick("1.5 seconds");
  const tickMs = performance.now() - tickStarted;
  expect(await rawCount(driver)).toBe(4);
  // The tick slept at least 1 s for ingest (one sleep of 1 s, then the rest of its budget), and the pass's start
  // moved on by the time slept: never by more than the tick lasted.
  const moved = (await startedAt()) - before;
  expect(moved).toBeGreaterThanOrEqual(1_000);
  expect(moved).toBeLessThanOrEqual(tickMs + 50);
  // With ingest caught up the pass is where it was on its schedule (a quarter done at 20 of 50 minutes, less the
  // wait: behind), so it goes on at once and moves the fixes.
  await db.sql`select report_ingest_lag('worker-a', 0)`;
  await tick("1 minute");
  expect(await rawCount(driver)).toBe(0);
});

test("a lag report older than 10 s is a worker gone: it does not hold the compaction back", async () => {
  await compactionSettings({ perStep: 100_000, spreadS: 0, yieldLag: 10_000 });
  await db.sql`select report_ingest_lag('gone', 50000)`;
  expect(Number((await db.sql`select ingest_lag_now() as n`)[0]!.n)).toBe(50_000);
  await db.sql`update ingest_lag set reported_at = now() - interval '11 seconds'`;
  expect(Number((await db.sql`select ingest_lag_now() as n`)[0]!.n)).toBe(0);
});

const WAIT_CASES: { startedS: number; nowS: number; share: number; spreadS: number; waitS: number }[] = [
  { startedS: 0, nowS: 1, share: 0.5, spreadS: 40, waitS: 19 }, // ahead: wait for the schedule
  { startedS: 0, nowS: 20, share: 0.5, spreadS: 40, waitS: 0 }, // on time
  { startedS: 0, nowS: 30, share: 0.5, spreadS: 40, waitS: 0 }, // behind (a backlog): no wait
  { startedS: 5, nowS: 6, share: 0.25, spreadS: 40, waitS: 9 },
  { startedS: 0, nowS: 1, share: 1.5, spreadS: 40, waitS: 39 }, // a share past 1 counts as 1
  { startedS: 0, nowS: 1, share: -1, spreadS: 40, waitS: 0 },
  { startedS: 0, nowS: 1, share: 0.5, spreadS: 0, waitS: 0 }, // no spread: never a wait
];

test.each(WAIT_CASES)("on schedule: $share done at $nowS s of a $spreadS s spread → wait $waitS s", async ({ startedS, nowS, share, spreadS, waitS }) => {
  const [row] = await db.sql<{ s: number }[]>`
    select extract(epoch from trail_compaction_wait(to_timestamp(${startedS}), to_timestamp(${nowS}), ${share}, ${spreadS}))::float8 as s`;
  expect(row!.s).toBe(waitS);
});

const SHARE_CASES: [string, number][] = [
  ["00000000-0000-4000-8000-000000000000", 0],
  ["80000000-0000-4000-8000-000000000000", 0.5],
  ["40000000-1111-4000-8000-000000000000", 0.25],
  ["FFFFFFFF-ffff-4fff-bfff-ffffffffffff", (2 ** 32 - 1) / 2 ** 32],
];

test.each(SHARE_CASES)("driver %s is %p of the id space", async (id, share) => {
  const [row] = await db.sql<{ share: number }[]>`select trail_compaction_share(${id}::uuid) as share`;
  expect(row!.share).toBe(share);
});

test("the current hour is not compacted", async () => {
  const driver = await newDriver();
  const { now } = (await db.sql<{ now: Date }[]>`select now()`)[0]!;
  await insertRaw(driver, ride(now.getTime() - 60_000, 3));
  await compact();
  expect(await rawCount(driver)).toBe(3);
  expect((await segments(driver)).length).toBe(0);
  expect(await path(driver)).toHaveLength(3);
});

describe("a late fix for an already compacted hour: returned once at once, merged on the next run", () => {
  const cases: { name: string; late: (fixes: Fix[]) => Fix; total: number }[] = [
    { name: "a fix never seen before, in the middle", late: (f) => ({ ...f[2]!, at: f[2]!.at + 1000, lat: 40.70055 }), total: 7 },
    { name: "the same fix again (same time)", late: (f) => f[3]!, total: 6 },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const driver = await newDriver();
      // Two hours before the current one: closed for over an hour whatever the minute (the previous hour is not
      // compactable in its first 10 minutes, which made this test fail when run just after the hour).
      const fixes = ride(BASE + HOUR, 6);
      await insertRaw(driver, fixes);
      await compact();
      await insertRaw(driver, [c.late(fixes)]);
      const expected = [...fixes, c.late(fixes)]
        .filter((f, i, all) => all.findIndex((g) => Math.floor(g.at) === Math.floor(f.at)) === i)
        .sort((a, b) => a.at - b.at);
      expect(expected).toHaveLength(c.total);
      expect((await path(driver)).map((r) => r.recorded_at.getTime())).toEqual(expected.map((f) => Math.floor(f.at)));
      await compact();
      expect(await rawCount(driver)).toBe(0);
      expect((await segments(driver)).map((s) => s.fixes)).toEqual([c.total]);
      expectSamePath(await path(driver), expected);
    });
  }
});

test("a redelivered batch of a compacted hour changes nothing", async () => {
  const driver = await newDriver();
  await db.sql`insert into driver_state (driver_id) values (${driver})`;
  const rows: StagedPosition[] = ride(BASE + 30 * 60_000, 5).map((f, seq) => ({
    seq, driverId: driver, recordedMs: Math.floor(f.at), lat: f.lat, lon: f.lon, h3: cellOf(f.lat, f.lon, 9),
    speedKmh: 20, headingDeg: 45, accuracyM: 5, batteryPct: undefined, receivedMs: Math.floor(f.at) + 200, message: 0,
  }));
  expect((await applyPositionBatch(db.sql, rows)).applied).toBe(5);
  await compact();
  expect(await rawCount(driver)).toBe(0);
  const snapshot = async () => ({
    path: await path(driver),
    compact: await compactState(),
    state: (await db.sql`select position_at, lat, lon, status::text from driver_state where driver_id = ${driver}`)[0],
  });
  const before = await snapshot();
  const again = await applyPositionBatch(db.sql, rows);
  // Nothing applied. The raw part no longer holds these fixes, so the apply names them out_of_order, not duplicate.
  expect(again.applied).toBe(0);
  expect(again.duplicate + again.out_of_order).toBe(5);
  expect(await rawCount(driver)).toBe(0);
  expect(await snapshot()).toEqual(before);
});

test("retention drops the compact part too", async () => {
  const driver = await newDriver();
  const { old } = (await db.sql<{ old: Date }[]>`
    select (date_trunc('day', now() at time zone 'UTC') - interval '9 days') at time zone 'UTC' as old`)[0]!;
  await db.sql`select ensure_trail_partitions(${old}, ${old})`;
  await insertRaw(driver, ride(old.getTime() + HOUR, 4));
  await insertRaw(driver, ride(BASE, 4));
  await compact();
  expect((await segments(driver)).length).toBe(2);
  await db.sql`select trail_upkeep()`;
  expect((await segments(driver)).map((s) => s.first_at.getTime())).toEqual([Math.floor(ride(BASE, 1)[0]!.at)]);
  const oldPartition = `position_trail_compact_${old.toISOString().slice(0, 10).replaceAll("-", "")}`;
  const { parts } = (await db.sql<{ parts: number }[]>`
    select count(*)::int parts from pg_class where relname = ${oldPartition}`)[0]!;
  expect(parts).toBe(0);
  expect(await path(driver)).toHaveLength(4);
});

test("a generated day: the path of an hour, of the day and of an order read the same before and after", async () => {
  const day = new Date(Math.floor(Date.now() / (24 * HOUR)) * 24 * HOUR - 2 * 24 * HOUR);
  const before = await db.sql<{ n: number }[]>`select count(*)::int n from drivers`;
  const inserted = await generateTrailDay(db.sql, { drivers: 2, day });
  expect(inserted).toBeGreaterThan(2 * 21_000);
  const driver = (await db.sql<{ id: string }[]>`select id from drivers order by created_at desc, id limit 1`)[0]!;
  expect((await db.sql<{ n: number }[]>`select count(*)::int n from drivers`)[0]!.n).toBe(before[0]!.n + 2);
  const from = new Date(day.getTime() + 10 * HOUR).toISOString();
  const to = new Date(day.getTime() + 11 * HOUR).toISOString();
  const order = await db.sql<{ id: string }[]>`
    with c as (insert into customers (name, location) values ('c', 'SRID=4326;POINT(-74 40.7)') returning id),
         r as (insert into restaurants (name, location, h3) values ('r', 'SRID=4326;POINT(-74 40.7)', 1) returning id)
    insert into orders (customer_id, restaurant_id, delivery_location, driver_id, status, assigned_at, delivered_at)
    select c.id, r.id, 'SRID=4326;POINT(-74 40.7)', ${driver.id}, 'delivered', ${from}::timestamptz + interval '5 minutes',
           ${from}::timestamptz + interval '35 minutes'
    from c, r returning id`;
  const read = async () => ({
    hour: await path(driver.id, from, to),
    day: await path(driver.id, day.toISOString(), new Date(day.getTime() + 24 * HOUR).toISOString()),
    route: await db.sql<PathRow[]>`select * from order_route(${order[0]!.id})`,
  });
  const raw = await read();
  await compact();
  expect(await rawCount(driver.id)).toBe(0);
  const compacted = await read();
  for (const key of ["hour", "day", "route"] as const) {
    expect(compacted[key].length).toBeGreaterThan(0);
    expect(compacted[key].map((r) => r.recorded_at.getTime())).toEqual(raw[key].map((r) => r.recorded_at.getTime()));
    compacted[key].forEach((r, i) => {
      const w = raw[key][i]!;
      expect(Math.abs(r.lat - w.lat)).toBeLessThanOrEqual(5e-7 + 1e-12);
      expect(Math.abs(r.lon - w.lon)).toBeLessThanOrEqual(5e-7 + 1e-12);
      expect(r.h3).toBe(w.h3);
      expect(Math.abs(r.speed_kmh! - w.speed_kmh!)).toBeLessThanOrEqual(0.05 + 1e-4);
      expect(r.received_at!.getTime()).toBe(w.received_at!.getTime());
    });
  }
  expect(compacted.route.length).toBeGreaterThan(400);
  expect(compacted.route.length).toBeLessThan(451);
});
