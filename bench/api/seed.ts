/**
 * Trackable orders in bulk for bench:api: `count` orders, each `assigned` to its own available driver (the state the
 * customer's map shows), written set-based in one transaction rather than through the API one by one. The same rows
 * order_transition + assign_nearest_driver would leave, minus the history (not read by GET /track).
 */
import type { Sql } from "../../lib/db.ts";

export async function seedTrackableOrders(sql: Sql, count: number, chunk = 10_000): Promise<string[]> {
  const ids: string[] = [];
  while (ids.length < count) {
    const made = await seedChunk(sql, Math.min(chunk, count - ids.length), ids.length);
    if (made.length === 0) break; // no available driver left
    ids.push(...made);
  }
  return ids;
}

/**
 * One transaction of up to `count` orders. The drivers are locked first, in id order, skipping any a position worker
 * holds: the bench may seed while ingest runs, and taking 100,000 rows in one statement against the worker's
 * batches deadlocked. The worker waits for these rows instead, for one chunk's time.
 */
async function seedChunk(sql: Sql, count: number, offset: number): Promise<string[]> {
  return sql.begin(async (tx) => {
    const rows = await tx<{ id: string }[]>`
      with free as (
        select driver_id
        from driver_state
        where status = 'available' and current_order_id is null
        order by driver_id
        limit ${count}
        for update skip locked
      ),
      d as (select driver_id, row_number() over (order by driver_id) - 1 + ${offset} as rn from free),
      -- Customers and restaurants numbered and joined by the driver's number modulo their count (hash joins):
      -- subscripting an array of 10,000 locations per row detoasted the whole array each time (minutes at 100,000).
      c as (select id, location, row_number() over (order by id) - 1 as rn from customers),
      r as (select id, row_number() over (order by id) - 1 as rn from restaurants),
      o as (
        insert into orders (customer_id, restaurant_id, delivery_location, items, status, driver_id,
                            confirmed_at, assigned_at)
        select c.id, r.id, c.location,
               '[{"name": "bench meal", "qty": 1, "price_cents": 1000}]'::jsonb, 'assigned', d.driver_id, now(), now()
        from d
        join c on c.rn = d.rn % (select count(*) from customers)
        join r on r.rn = d.rn % (select count(*) from restaurants)
        returning id, driver_id
      ),
      s as (
        update driver_state ds set status = 'assigned', current_order_id = o.id
        from o where ds.driver_id = o.driver_id
        returning ds.driver_id
      )
      select id from o`;
    return rows.map((r) => r.id);
  });
}

/** Orders the API can track right now (assigned or picked up, with a driver). */
export async function trackableOrderIds(sql: Sql, limit: number): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`
    select id from orders where status in ('assigned', 'picked_up') and driver_id is not null limit ${limit}`;
  return rows.map((r) => r.id);
}
