import { t } from "elysia";
import { REJECT_REASONS } from "../../../lib/errors.ts";
import { MAX_POSITIONS_PER_MESSAGE } from "../../../lib/position.ts";
import { Int, Timestamp, Uuid } from "../../model.ts";
import { DriverState } from "../tracking/model.ts";

export const DriverParams = t.Object({ driver_id: Uuid });

export const DriverPosition = t.Object({
  lat: t.Number(),
  lon: t.Number(),
  h3: t.String({ description: "H3 cell, hex" }),
  recorded_at: Timestamp,
  received_at: t.Nullable(Timestamp),
  age_seconds: t.Number(),
  speed_kmh: t.Nullable(t.Number()),
  heading_deg: t.Nullable(t.Number()),
  accuracy_m: t.Nullable(t.Number()),
  battery_pct: t.Nullable(Int()),
});

export const Driver = t.Object({
  id: Uuid,
  name: t.String(),
  vehicle: t.String(),
  state: DriverState,
  state_since: t.Nullable(Timestamp),
  current_order_id: t.Nullable(Uuid),
  position: t.Nullable(DriverPosition, { description: "The latest applied position; null before the first" }),
});
export type Driver = typeof Driver.static;

/** One position as phones publish it over MQTT (payload v1); the body is one of these or an array of them. */
export const DevicePosition = t.Object({
  lat: t.Number({ minimum: -90, maximum: 90 }),
  lon: t.Number({ minimum: -180, maximum: 180 }),
  tst: t.Number({ exclusiveMinimum: 0, description: "epoch seconds, fraction allowed" }),
  acc: t.Optional(t.Number({ description: "accuracy, m" })),
  vel: t.Optional(t.Number({ description: "speed, km/h" })),
  cog: t.Optional(t.Number({ description: "heading, degrees" })),
  batt: t.Optional(t.Number({ description: "battery, %" })),
});
/** For the OpenAPI document only: the route validates with decodePositionList, exactly as the MQTT bridge does. */
export const LocationBody = t.Union([DevicePosition, t.Array(DevicePosition, { maxItems: MAX_POSITIONS_PER_MESSAGE })]);

export const LocationAccepted = t.Object({
  accepted: Int({ description: "positions handed to Kafka" }),
  rejected: t.Array(t.Object({ index: Int(), reason: t.UnionEnum(REJECT_REASONS) })),
});
export type LocationAccepted = typeof LocationAccepted.static;
