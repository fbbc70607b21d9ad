import { t } from "elysia";
import { Int, LatLon, Timestamp, Uuid } from "../../model.ts";
import { OrderStatus } from "../tracking/model.ts";

export const OrderParams = t.Object({ order_id: Uuid });

/**
 * Printable text: control characters have no place in a dish's name, and PostgreSQL cannot store \u0000 in jsonb
 * or text at all (22P05), so they are refused here, named, instead of there.
 */
export const PrintableName = t.String({
  minLength: 1,
  maxLength: 200,
  pattern: "^[^\\u0000-\\u001F\\u007F]+$",
  description: "printable text, no control characters",
});

export const OrderItem = t.Object({
  name: PrintableName,
  qty: Int({ minimum: 1, maximum: 100 }),
  price_cents: Int({ minimum: 0, maximum: 10_000_000 }),
});

export const NewOrder = t.Object({
  customer_id: Uuid,
  restaurant_id: Uuid,
  delivery: LatLon,
  items: t.Array(OrderItem, { minItems: 1, maxItems: 100 }),
});
export type NewOrder = typeof NewOrder.static;

export const Order = t.Object({
  id: Uuid,
  customer_id: Uuid,
  restaurant_id: Uuid,
  status: OrderStatus,
  delivery: t.Object({ lat: t.Number(), lon: t.Number() }),
  // Looser than OrderItem: an answer must not fail on a row stored before a rule tightened.
  items: t.Array(t.Object({ name: t.String(), qty: Int(), price_cents: Int() })),
  total_cents: Int(),
  driver: t.Nullable(t.Object({ id: Uuid, name: t.String() })),
  eta_seconds: t.Nullable(Int()),
  created_at: Timestamp,
  confirmed_at: t.Nullable(Timestamp),
  assigned_at: t.Nullable(Timestamp),
  picked_up_at: t.Nullable(Timestamp),
  delivered_at: t.Nullable(Timestamp),
  cancelled_at: t.Nullable(Timestamp),
  updated_at: Timestamp,
});
export type Order = typeof Order.static;

/** Events the API sends to order_transition as they are (confirm and assign also pick a driver). */
export type OrderEvent = "confirm" | "pickup" | "deliver" | "cancel";
