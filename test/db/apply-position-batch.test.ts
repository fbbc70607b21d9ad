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
    row(driverB, 45, 40.7503, -73.9934),
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

  const r = await applyPositionBatch(db.sql, batch([row(driverB, 10, RESTAURANT.lat, RESTAURANT.lon + 0.0003, { speedKmh: 18 })]));
  expect(r).toMatchObject({ applied: 1, transitions: 1, orders_notified: 1 });
  expect((await state(driverB)).status).toBe("at_restaurant");
  const [order] = await db.sql<{ eta_seconds: number }[]>`
    select eta_seconds from driver_state where driver_id = ${driverB} and current_order_id = ${orderId}`;
  // ~2.2 km restaurant → delivery × 1.3 detour at the smoothed 5 m/s: a few hundred seconds, not the old 60 s/100 m.
  expect(order!.eta_seconds).toBeGreaterThan(300);
  expect(order!.eta_seconds).toBeLessThan(1_200);

  await db.sql`select order_transition(${orderId}, 'pickup')`;
  expect((await state(driverB)).status).toBe("delivering");
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
