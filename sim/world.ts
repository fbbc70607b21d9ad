/**
 * What a simulator starts from: the drivers (from the database or a `bun run generate -- --export` file) and, for
 * the order flow, the customers and restaurants that orders are placed between.
 */
import { readFile } from "node:fs/promises";
import type { Sql } from "../lib/db.ts";
import { isUuid } from "../lib/position.ts";
import { homePoint, type City } from "../lib/cities.ts";
import type { Place } from "./order-flow.ts";
import type { FleetDriver } from "./simulated-fleet.ts";

/** Up to `limit` drivers, at their last known position or their home point. */
export async function loadDriversFromDb(sql: Sql, city: City, limit: number): Promise<FleetDriver[]> {
  const rows = await sql<{ id: string; lat: number | null; lon: number | null }[]>`
    select d.id, s.lat, s.lon from drivers d left join driver_state s on s.driver_id = d.id
    order by d.id limit ${limit}`;
  return rows.map((r) => (r.lat !== null && r.lon !== null ? { id: r.id, lat: r.lat, lon: r.lon } : { id: r.id, ...homePoint(city, r.id) }));
}

/** The driver list of an export: `[{id, name, lat, lon}]`; entries without a position start at their home point. */
export async function loadDriversFromFile(file: string, city: City, limit: number): Promise<FleetDriver[]> {
  const parsed: unknown = JSON.parse(await readFile(file, "utf8"));
  if (!Array.isArray(parsed)) throw new Error(`${file}: expected a JSON array of drivers`);
  const drivers: FleetDriver[] = [];
  for (const entry of (parsed as unknown[]).slice(0, limit)) {
    const e = (typeof entry === "object" && entry !== null ? entry : {}) as Record<string, unknown>;
    if (!isUuid(e.id)) throw new Error(`${file}: entry ${drivers.length} has no UUID id`);
    const placed = typeof e.lat === "number" && typeof e.lon === "number";
    drivers.push(placed ? { id: e.id, lat: e.lat as number, lon: e.lon as number } : { id: e.id, ...homePoint(city, e.id) });
  }
  return drivers;
}

/** Customers and restaurants to place orders between; customers are capped, a sample is as good as all of them. */
export async function loadPlaces(sql: Sql, maxCustomers = 20_000): Promise<{ customers: Place[]; restaurants: Place[] }> {
  const [customers, restaurants] = await Promise.all([
    sql<Place[]>`select id, st_y(location::geometry) as lat, st_x(location::geometry) as lon
                 from customers order by id limit ${maxCustomers}`,
    sql<Place[]>`select id, st_y(location::geometry) as lat, st_x(location::geometry) as lon from restaurants`,
  ]);
  const plain = (rows: readonly Place[]) => rows.map((r) => ({ id: r.id, lat: r.lat, lon: r.lon }));
  return { customers: plain(customers), restaurants: plain(restaurants) };
}
