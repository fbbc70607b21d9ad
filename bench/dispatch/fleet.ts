/** The fleet the dispatch benchmarks share: generated drivers in Manhattan, all available and fresh for the whole run. */
import { generateData } from "../../db/generate.ts";
import { cityByName } from "../../lib/cities.ts";
import type { Sql } from "../../lib/db.ts";

export async function availableFleet(sql: Sql, drivers: number): Promise<void> {
  await generateData(sql, {
    drivers, restaurants: 2000, customers: 100, orders: 0, mode: "truncate", seed: 16, city: cityByName("nyc"),
    online: true, progress: false,
  });
  // Generated drivers have no received_at, and dispatch skips stale ones: every driver fresh for the whole run.
  await sql`update tracking_settings set offline_after_s = 86400 where id = 1`;
  await sql`update driver_state set received_at = now()`;
  await sql`vacuum analyze driver_state`;
}

/** Every order gone and every driver available again, between measurements. */
export async function resetOrders(sql: Sql): Promise<void> {
  await sql`update driver_state set status = 'available', current_order_id = null where current_order_id is not null`;
  await sql`delete from orders`;
  await sql`delete from state_history`;
}
