import type { Sql } from "../../../lib/db.ts";
import { cellToHex } from "../../../lib/h3.ts";
import { isoOrNull } from "../../model.ts";
import type { Track } from "./model.ts";

type Status = Track["status"];
type DriverState = NonNullable<Track["driver"]>["state"];

interface TrackRow {
  order_id: string;
  status: Status;
  eta_seconds: number | null;
  restaurant_id: string;
  restaurant_name: string;
  restaurant_lat: number;
  restaurant_lon: number;
  delivery_lat: number;
  delivery_lon: number;
  driver_id: string | null;
  driver_name: string | null;
  driver_lat: number | null;
  driver_lon: number | null;
  driver_h3: bigint | null;
  driver_state: DriverState | null;
  driver_updated_at: Date | null;
  position_age_seconds: number | null;
}

function toTrack(row: TrackRow): Track {
  return {
    order_id: row.order_id,
    status: row.status,
    restaurant: { id: row.restaurant_id, name: row.restaurant_name, lat: row.restaurant_lat, lon: row.restaurant_lon },
    delivery: { lat: row.delivery_lat, lon: row.delivery_lon },
    driver:
      row.driver_id === null
        ? null
        : {
            id: row.driver_id,
            name: row.driver_name ?? "",
            lat: row.driver_lat,
            lon: row.driver_lon,
            h3: row.driver_h3 === null ? null : cellToHex(row.driver_h3),
            state: row.driver_state ?? "offline",
            updated_at: isoOrNull(row.driver_updated_at),
            position_age_seconds: row.position_age_seconds,
          },
    eta_seconds: row.eta_seconds,
  };
}

export function trackingService(sql: Sql) {
  return {
    /**
     * The customer's view of one order, in one statement of primary-key look-ups. A customer sees the driver only
     * while that driver is on their order: after delivery or cancellation the driver's position is none of theirs.
     */
    async track(orderId: string): Promise<Track | undefined> {
      const [row] = await sql<TrackRow[]>`
        select o.id as order_id, o.status,
               -- The apply procedure refreshes the live leg's ETA on the driver's row (one write per position).
               case when ds.current_order_id = o.id then ds.eta_seconds end as eta_seconds,
               r.id as restaurant_id, r.name as restaurant_name,
               st_y(r.location::geometry) as restaurant_lat, st_x(r.location::geometry) as restaurant_lon,
               st_y(o.delivery_location::geometry) as delivery_lat, st_x(o.delivery_location::geometry) as delivery_lon,
               d.id as driver_id, d.name as driver_name, ds.lat as driver_lat, ds.lon as driver_lon,
               ds.h3 as driver_h3, ds.status as driver_state, ds.position_at as driver_updated_at,
               extract(epoch from now() - ds.position_at)::float8 as position_age_seconds
        from orders o
        join restaurants r on r.id = o.restaurant_id
        left join drivers d on d.id = o.driver_id and o.status in ('assigned', 'picked_up')
        left join driver_state ds on ds.driver_id = d.id
        where o.id = ${orderId}`;
      return row && toTrack(row);
    },
  };
}

export type TrackingService = ReturnType<typeof trackingService>;
