/**
 * Dispatch fixtures on a real database (test/db/dispatch*.test.ts): drivers placed around a centre in Manhattan with
 * the H3 cell the worker would give them, and confirmed orders at restaurants placed anywhere.
 */
import { connectDatabase, type Sql } from "../../../lib/db.ts";
import { waitFor } from "../../api/support/wait.ts";
import { cellOf } from "../../../lib/h3.ts";
import type { TestDatabase } from "../../support/db.ts";

export const RESOLUTION = 9;
export const CENTRE = { lat: 40.75, lon: -73.98 };
export const M_PER_DEG_LAT = 111_195;
export const M_PER_DEG_LON = M_PER_DEG_LAT * Math.cos((CENTRE.lat * Math.PI) / 180);

/** A point `north` and `east` metres from the centre. */
export const offset = (north: number, east: number) => ({
  lat: CENTRE.lat + north / M_PER_DEG_LAT,
  lon: CENTRE.lon + east / M_PER_DEG_LON,
});

export interface DriverSpec {
  lat: number;
  lon: number;
  status?: "available" | "offline" | "assigned";
  /** Seconds since its last position reached us (OFFLINE_AFTER is 60 s). */
  silentS?: number;
}

export const geography = (sql: Sql, p: { lat: number; lon: number }) =>
  sql`st_setsrid(st_makepoint(${p.lon}, ${p.lat}), 4326)::geography`;

/** A driver_mode notice without what differs between two drivers (its id, its time). */
export function modeOf(notice: string): Record<string, unknown> {
  const { driver_id: _id, at: _at, ...rest } = JSON.parse(notice) as Record<string, unknown>;
  return rest;
}

export function dispatchFixtures(db: TestDatabase) {
  let customerId: string | undefined;

  async function customer(): Promise<string> {
    if (customerId) return customerId;
    const [c] = await db.sql<{ id: string }[]>`
      insert into customers (name, location) values ('c', 'SRID=4326;POINT(-73.99 40.73)') returning id`;
    customerId = c!.id;
    return customerId;
  }

  return {
    /** What an assignment left on the order, the driver and the history (to compare two assignments). */
    async assignmentEffects(orderId: string, driverId: string) {
      const [order] = await db.sql`
        select status, driver_id = ${driverId} as has_driver, assigned_at is not null as assigned_at_set,
               assigned_at = updated_at as stamped_together
        from orders where id = ${orderId}`;
      const [driver] = await db.sql`
        select status, current_order_id = ${orderId} as on_order, status_since = updated_at as stamped_together,
               status_since >= now() - interval '1 minute' as fresh_since
        from driver_state where driver_id = ${driverId}`;
      const history = await db.sql`
        select entity, from_status, to_status, event from state_history
        where entity_id in (${orderId}, ${driverId}) order by id`;
      return { order, driver, history: [...history] };
    },

    /** The order_tracking and driver_mode notices sent while `run` runs, once `count` of each have arrived. */
    async noticesDuring(run: () => Promise<void>, count: number) {
      const listener = connectDatabase(db.url, { max: 1, application: "test-dispatch-notices" });
      const orders: string[] = [];
      const modes: string[] = [];
      try {
        await listener.listen("order_tracking", (p) => orders.push(p));
        await listener.listen("driver_mode", (p) => modes.push(p));
        await run();
        await waitFor(`${count} order and ${count} mode notices`, () => orders.length === count && modes.length === count);
      } finally {
        await listener.end({ timeout: 5 });
      }
      return { orders, modes };
    },

    async clearFleet() {
      await db.sql`delete from state_history`;
      await db.sql`update driver_state set current_order_id = null`;
      await db.sql`delete from orders`;
      await db.sql`delete from restaurants`;
      await db.sql`delete from drivers`;
    },

    /** Drivers at their positions, with the H3 cell the worker would give them; returns their ids in order. */
    async placeDrivers(specs: DriverSpec[]): Promise<string[]> {
      if (specs.length === 0) return [];
      const ids = await db.sql<{ id: string }[]>`
        insert into drivers (name) select 'd' || g from generate_series(1, ${specs.length}) g returning id`;
      await db.sql`
        insert into driver_state (driver_id, status, position, lat, lon, h3, position_at, received_at)
        select d, s::driver_status, st_setsrid(st_makepoint(lon, lat), 4326)::geography, lat, lon, h3,
               now() - make_interval(secs => silent), now() - make_interval(secs => silent)
        from unnest(${ids.map((r) => r.id)}::uuid[], ${specs.map((s) => s.status ?? "available")}::text[],
                    ${specs.map((s) => s.lat)}::float8[], ${specs.map((s) => s.lon)}::float8[],
                    ${specs.map((s) => String(cellOf(s.lat, s.lon, RESOLUTION)))}::bigint[],
                    ${specs.map((s) => s.silentS ?? 1)}::float8[]) as x(d, s, lat, lon, h3, silent)`;
      return ids.map((r) => r.id);
    },

    /** A confirmed order at a (new) restaurant at `at`. */
    async placeOrder(at: { lat: number; lon: number }, sql: Sql = db.sql): Promise<string> {
      const customerId = await customer();
      const [r] = await sql<{ id: string }[]>`
        insert into restaurants (name, location, h3)
        values ('r', st_setsrid(st_makepoint(${at.lon}, ${at.lat}), 4326)::geography, ${String(cellOf(at.lat, at.lon, RESOLUTION))})
        returning id`;
      const [o] = await sql<{ id: string }[]>`
        insert into orders (customer_id, restaurant_id, delivery_location, status, confirmed_at)
        values (${customerId}, ${r!.id}, 'SRID=4326;POINT(-73.99 40.73)', 'confirmed', now()) returning id`;
      return o!.id;
    },
  };
}
