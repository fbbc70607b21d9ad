// The batch apply procedure on real PostGIS, through the worker's own COPY path.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { cellOf } from "../../lib/h3.ts";
import { sqlState } from "../../lib/db.ts";
import { applyPositionBatch } from "../../workers/apply-batch.ts";
import type { StagedPosition } from "../../workers/decode-batch.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;
let driverA: string;
let driverB: string;
let orderId: string;
const RESTAURANT = { lat: 40.7505, lon: -73.9934 };
const DELIVERY = { lat: 40.7306, lon: -73.9866 };
const NOW = Date.now();

function row(driverId: string, secondsAgo: number, lat: number, lon: number, extra: Partial<StagedPosition> = {}) {
  return {
    driverId, recordedMs: NOW - secondsAgo * 1000, lat, lon, h3: cellOf(lat, lon, 9),
    speedKmh: undefined, headingDeg: undefined, accuracyM: 5, batteryPct: undefined, receivedMs: NOW, message: 0,
    ...extra,
  };
}
const batch = (rows: Omit<StagedPosition, "seq">[]): StagedPosition[] => rows.map((r, seq) => ({ ...r, seq }));
const state = async (id: string) =>
  (await db.sql<{ status: string; position_at: Date; lat: number }[]>`
    select status::text, position_at, lat from driver_state where driver_id = ${id}`)[0]!;

beforeAll(async () => {
  db = await freshDatabase("apply_batch");
  [driverA, driverB] = (
    await db.sql<{ id: string }[]>`insert into drivers (name) values ('A'), ('B') returning id`
  ).map((r) => r.id) as [string, string];
  await db.sql`insert into driver_state (driver_id) select id from drivers`;
  const [ids] = await db.sql<{ c: string; r: string }[]>`
    with c as (insert into customers (name, location) values ('c', 'SRID=4326;POINT(-73.9866 40.7306)') returning id),
         r as (insert into restaurants (name, location, h3)
               values ('r', ${`SRID=4326;POINT(${RESTAURANT.lon} ${RESTAURANT.lat})`},
                       ${cellOf(RESTAURANT.lat, RESTAURANT.lon, 9)}) returning id)
    select c.id c, r.id r from c, r`;
  [{ id: orderId }] = (await db.sql`
    insert into orders (customer_id, restaurant_id, delivery_location)
    values (${ids!.c}, ${ids!.r}, ${`SRID=4326;POINT(${DELIVERY.lon} ${DELIVERY.lat})`}) returning id`) as unknown as [
    { id: string },
  ];
});
afterAll(() => db?.drop());

test("fresh positions move drivers online; unknown drivers, in-batch repeats are counted", async () => {
  const unknown = crypto.randomUUID();
  const r = await applyPositionBatch(db.sql, batch([
    row(driverA, 50, 40.70, -74.0),
    row(driverA, 40, 40.701, -74.0),
    row(driverA, 40, 40.701, -74.0),
    row(unknown, 40, 40.70, -74.0),
    row(driverB, 120, 40.7503, -73.9934),
  ]));
  expect(r).toMatchObject({ staged: 5, applied: 3, duplicate: 1, out_of_order: 0, unknown_driver: 1, transitions: 2 });
  expect(r.rejected_seq).toEqual([3]);
  expect(r.rejected_reason).toEqual(["unknown_driver"]);
  expect(await state(driverA)).toMatchObject({ status: "available", lat: 40.701 });
  expect((await state(driverA)).position_at.getTime()).toBe(NOW - 40_000);
});

test("re-applying the same batch changes nothing (idempotent)", async () => {
  const rows = batch([row(driverA, 30, 40.702, -74.0), row(driverA, 20, 40.703, -74.0)]);
  const first = await applyPositionBatch(db.sql, rows);
  const trail = async () => (await db.sql<{ n: number }[]>`select count(*)::int n from position_trail`)[0]!.n;
  const before = { trail: await trail(), state: await state(driverA) };
  const second = await applyPositionBatch(db.sql, rows);
  expect(first.applied).toBe(2);
  expect(second).toMatchObject({ applied: 0, duplicate: 2, out_of_order: 0, transitions: 0 });
  expect(second.rejected_seq).toEqual([]);
  expect({ trail: await trail(), state: await state(driverA) }).toEqual(before);
});

test("a late position never seen before is out_of_order and does not move the driver back", async () => {
  const r = await applyPositionBatch(db.sql, batch([row(driverA, 35, 40.69, -74.0)]));
  expect(r).toMatchObject({ applied: 0, out_of_order: 1 });
  expect(r.rejected_reason).toEqual(["out_of_order"]);
  expect((await state(driverA)).lat).toBe(40.703);
});

test("assignment takes the nearest driver; the restaurant geofence fires; ETA follows", async () => {
  await db.sql`select order_transition(${orderId}, 'confirm')`;
  const cells = [cellOf(RESTAURANT.lat, RESTAURANT.lon, 9)];
  // B is 20 m from the restaurant, A kilometres away: with the rings around the restaurant, B is found.
  const [assigned] = await db.sql<{ driver_id: string }[]>`
    select driver_id from assign_nearest_driver(${orderId}, ${cells.map(String)}::bigint[])`;
  expect(assigned!.driver_id).toBe(driverB);
  expect((await state(driverB)).status).toBe("assigned");

  const r = await applyPositionBatch(db.sql, batch([row(driverB, 100, RESTAURANT.lat, RESTAURANT.lon + 0.0003, { speedKmh: 18 })]));
  expect(r).toMatchObject({ applied: 1, transitions: 1, orders_notified: 1 });
  expect((await state(driverB)).status).toBe("at_restaurant");
  const [order] = await db.sql<{ eta_seconds: number }[]>`
    select eta_seconds from driver_state where driver_id = ${driverB} and current_order_id = ${orderId}`;
  // ~2.2 km restaurant → delivery × 1.3 detour at the smoothed 5 m/s: a few hundred seconds, not the old 60 s/100 m.
  expect(order!.eta_seconds).toBeGreaterThan(300);
  expect(order!.eta_seconds).toBeLessThan(1_200);

  await db.sql`select order_transition(${orderId}, 'pickup')`;
  expect((await state(driverB)).status).toBe("delivering");
  // 2.2 km in 95 s: a plausible ride (position trust refuses faster ones, see position-trust.test.ts).
  await applyPositionBatch(db.sql, batch([row(driverB, 5, DELIVERY.lat + 0.0002, DELIVERY.lon, { speedKmh: 20 })]));
  expect((await state(driverB)).status).toBe("arriving");
  const [{ status }] = (await db.sql`select status from order_transition(${orderId}, 'deliver')`) as unknown as [
    { status: string },
  ];
  expect(status).toBe("delivered");
  expect((await state(driverB)).status).toBe("available");
});

test("two concurrent assignments never take the same driver", async () => {
  const [ids] = await db.sql<{ c: string; r: string }[]>`select (select id from customers limit 1) c,
                                                                 (select id from restaurants limit 1) r`;
  const orders = await db.sql<{ id: string }[]>`
    insert into orders (customer_id, restaurant_id, delivery_location, status)
    select ${ids!.c}, ${ids!.r}, 'SRID=4326;POINT(-73.99 40.73)', 'confirmed' from generate_series(1, 2)
    returning id`;
  // Only driver B (available, fresh, near) can be taken now; A is available too but far (fallback by distance).
  const attempt = (id: string) =>
    db.sql.begin(async (tx) => {
      const [r] = await tx<{ driver_id: string }[]>`select driver_id from assign_nearest_driver(${id}, null, 50000)`;
      await tx`select pg_sleep(0.2)`; // hold the lock while the other one looks
      return r!.driver_id;
    });
  const results = await Promise.allSettled(orders.map((o) => attempt(o.id)));
  const winners = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  expect(new Set(winners).size).toBe(winners.length);
  for (const r of results) if (r.status === "rejected") expect(sqlState(r.reason)).toBe("T1409");
  expect(winners.length).toBeGreaterThanOrEqual(1);
});

test("a trail row already beyond its driver's position is kept once, not refused (the slow path)", async () => {
  // Such a row can only come from an older apply_position_batch in a race, or by hand: the fast path's plain INSERT
  // meets the unique key, and the batch is applied again with ON CONFLICT DO NOTHING.
  const early = row(driverA, 15, 40.704, -74.0);
  await db.sql`insert into position_trail (driver_id, recorded_at, lat, lon, h3)
               values (${driverA}, ${new Date(early.recordedMs)}, ${early.lat}, ${early.lon}, ${early.h3})`;
  const r = await applyPositionBatch(db.sql, batch([early, row(driverA, 12, 40.705, -74.0)]));
  expect(r).toMatchObject({ staged: 2, applied: 1, duplicate: 0, out_of_order: 0, unknown_driver: 0 });
  expect((await state(driverA)).position_at.getTime()).toBe(NOW - 12_000);
  const [{ n }] = (await db.sql`
    select count(*)::int n from position_trail
    where driver_id = ${driverA} and recorded_at in (${new Date(NOW - 15_000)}, ${new Date(NOW - 12_000)})`) as unknown as [
    { n: number },
  ];
  expect(n).toBe(2);
});

test("a driver moved by another transaction meanwhile: the batch is refused with 40001, then applies cleanly", async () => {
  const trailOf = async () =>
    (await db.sql<{ at: Date }[]>`
      select recorded_at at from position_trail where driver_id = ${driverA} and recorded_at > ${new Date(NOW - 10_000)}
      order by 1`).map((r) => NOW - r.at.getTime());
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let holding!: () => void;
  const held = new Promise<void>((resolve) => (holding = resolve));
  // First transaction: applies a position of A and holds its row lock, uncommitted.
  const first = db.sql.begin(async (tx) => {
    const p = row(driverA, 8, 40.706, -74.0);
    await tx`select open_position_staging()`;
    await tx`insert into position_staging (seq, driver_id, recorded_at, lat, lon, h3)
             values (0, ${driverA}, ${new Date(p.recordedMs)}, ${p.lat}, ${p.lon}, ${p.h3})`;
    const [r] = await tx<{ applied: number }[]>`select applied from apply_position_batch()`;
    holding();
    await released;
    return r!.applied;
  });
  await held;
  // Second: judged against A's position before the first commits, it waits on A's row...
  const rows = batch([row(driverA, 6, 40.707, -74.0), row(driverA, 4, 40.708, -74.0)]);
  const second = applyPositionBatch(db.sql, rows).then(
    () => "applied",
    (error: unknown) => sqlState(error),
  );
  for (;;) {
    const [{ waiting }] = (await db.sql`
      select count(*)::int waiting from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock'`) as unknown as [{ waiting: number }];
    if (waiting > 0) break;
    await Bun.sleep(10);
  }
  release();
  expect(await first).toBe(1);
  // ...and finds it moved once the first commits: refused whole, nothing of it written.
  expect(await second).toBe("40001");
  expect(await trailOf()).toEqual([8_000]);
  // Applied again (as the worker does on 40001), it is judged against the committed position.
  expect(await applyPositionBatch(db.sql, rows)).toMatchObject({ applied: 2, duplicate: 0, out_of_order: 0 });
  expect(await trailOf()).toEqual([8_000, 6_000, 4_000]);
  expect((await state(driverA)).position_at.getTime()).toBe(NOW - 4_000);
});

test("a second batch in one transaction starts from an empty staging table, and the table keeps its file (so the apply's plan is kept, 0023)", async () => {
  const driverC = (await db.sql<{ id: string }[]>`insert into drivers (name) values ('C') returning id`)[0]!.id;
  await db.sql`insert into driver_state (driver_id) values (${driverC})`;
  const conn = await db.sql.reserve();
  try {
    const stage = async (secondsAgo: number[]) => {
      await conn`select open_position_staging()`;
      for (const [seq, s] of secondsAgo.entries()) {
        const p = row(driverC, s, 40.71 + seq * 0.0001, -74.0);
        await conn`insert into position_staging (seq, driver_id, recorded_at, lat, lon, h3)
                   values (${seq}, ${driverC}, ${new Date(p.recordedMs)}, ${p.lat}, ${p.lon}, ${p.h3})`;
      }
    };
    const apply = async () => (await conn<{ staged: number; applied: number }[]>`select staged, applied from apply_position_batch()`)[0]!;
    const fileOf = async () => (await conn<{ f: string }[]>`select pg_relation_filenode('pg_temp.position_staging')::text as f`)[0]!.f;

    await conn`begin`;
    await stage([30, 28]);
    const file = await fileOf();
    expect(await apply()).toMatchObject({ staged: 2, applied: 2 });
    await stage([26]);
    expect(await apply()).toMatchObject({ staged: 1, applied: 1 }); // not the first batch's rows again
    expect(await fileOf()).toBe(file);
    await conn`commit`;

    await conn`begin`;
    await stage([24, 22, 20]);
    expect(await apply()).toMatchObject({ staged: 3, applied: 3 });
    expect(await fileOf()).toBe(file); // a TRUNCATE would give it a new file, and every plan reading it would be made again
    await conn`commit`;
  } finally {
    conn.release();
  }
  expect((await state(driverC)).position_at.getTime()).toBe(NOW - 20_000);
});
