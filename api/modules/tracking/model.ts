import { t } from "elysia";
import { Int, Timestamp, Uuid } from "../../model.ts";

export const TrackParams = t.Object({ order_id: Uuid });

export const ORDER_STATUSES = ["created", "confirmed", "assigned", "picked_up", "delivered", "cancelled"] as const;
export const DRIVER_STATES = ["offline", "available", "assigned", "at_restaurant", "delivering", "arriving"] as const;
export const OrderStatus = t.UnionEnum(ORDER_STATUSES);
export const DriverState = t.UnionEnum(DRIVER_STATES);

export const TrackedDriver = t.Object({
  id: Uuid,
  name: t.String(),
  lat: t.Nullable(t.Number()),
  lon: t.Nullable(t.Number()),
  h3: t.Nullable(t.String({ description: "H3 cell of the position, hex" })),
  state: DriverState,
  updated_at: t.Nullable(Timestamp),
  position_age_seconds: t.Nullable(t.Number()),
});

export const Track = t.Object({
  order_id: Uuid,
  status: OrderStatus,
  restaurant: t.Object({ id: Uuid, name: t.String(), lat: t.Number(), lon: t.Number() }),
  delivery: t.Object({ lat: t.Number(), lon: t.Number() }),
  driver: t.Nullable(TrackedDriver, { description: "Only while a driver is on the order (assigned, picked up)" }),
  eta_seconds: t.Nullable(Int()),
});
export type Track = typeof Track.static;

/** The `position` event of the live stream: the driver moved (the database's notice as it is). */
export const PositionUpdate = t.Object({
  order_id: Uuid,
  status: OrderStatus,
  driver_id: Uuid,
  driver_state: DriverState,
  lat: t.Number(),
  lon: t.Number(),
  at: Timestamp,
  eta_seconds: t.Nullable(Int()),
});
