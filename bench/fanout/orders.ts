/**
 * bench:fanout's live orders, made in bulk in SQL (as db/generate.ts loads a city): one order per driver, already
 * `assigned` to it, so the driver's first position resumes it onto the order's leg (offline -> assigned) and every
 * position after that notifies the order's watchers. Each order gets a tracking-link token, as POST /orders mints one.
 */
import { createTokenService } from "../../api/auth/tokens.ts";
import { authConfig } from "../../lib/config.ts";
import type { Sql } from "../../lib/db.ts";
import type { StreamTarget } from "./sse-client.ts";

/** Places one assigned order for each of the first `count` drivers (by id); returns the orders with their drivers. */
export async function placeAssignedOrders(sql: Sql, count: number): Promise<{ orderId: string; driverId: string }[]> {
  const rows = await sql<{ id: string; driver_id: string }[]>`
    with d as (select id as driver_id, row_number() over (order by id) as rn from drivers order by id limit ${count}),
         c as (select id, location, row_number() over (order by id) as rn from customers),
         r as (select id, row_number() over (order by id) as rn from restaurants)
    insert into orders (customer_id, restaurant_id, delivery_location, items, status, driver_id, confirmed_at, assigned_at)
    select c.id, r.id, c.location, '[{"name": "bench meal", "qty": 1, "price_cents": 1000}]'::jsonb, 'assigned',
           d.driver_id, now(), now()
    from d
    join c on c.rn = 1 + (d.rn - 1) % (select count(*) from customers)
    join r on r.rn = 1 + (d.rn - 1) % (select count(*) from restaurants)
    returning id, driver_id`;
  await sql`
    update driver_state ds set current_order_id = o.id
    from orders o where o.driver_id = ds.driver_id and o.status = 'assigned'`;
  await sql`analyze orders`;
  await sql`analyze driver_state`;
  return rows.map((r) => ({ orderId: r.id, driverId: r.driver_id }));
}

/** A tracking-link token (role tracker, subject the order) per order, valid for `ttlSeconds`. */
export async function mintTrackingTokens(orderIds: readonly string[], ttlSeconds: number): Promise<StreamTarget[]> {
  const tokens = createTokenService(authConfig());
  const out: StreamTarget[] = [];
  for (const orderId of orderIds) out.push({ orderId, token: (await tokens.mint("tracker", orderId, { ttl: ttlSeconds })).token });
  return out;
}
