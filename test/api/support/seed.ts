/** Plain SQL seeds for API tests: customers, restaurants (with their H3 cell), drivers with a state row. */
import { config } from "../../../lib/config.ts";
import type { Sql } from "../../../lib/db.ts";
import { cellOf } from "../../../lib/h3.ts";

export interface Point {
  lat: number;
  lon: number;
}

/** Union Square, New York: the tests' neighbourhood. */
export const ORIGIN: Point = { lat: 40.7359, lon: -73.9911 };

/** A point `north` and `east` metres away (flat-earth, fine at a few km). */
export function offset(from: Point, north: number, east: number): Point {
  const metresPerDegree = 111_320;
  return {
    lat: from.lat + north / metresPerDegree,
    lon: from.lon + east / (metresPerDegree * Math.cos((from.lat * Math.PI) / 180)),
  };
}

const geography = (sql: Sql, p: Point) => sql`st_setsrid(st_makepoint(${p.lon}, ${p.lat}), 4326)::geography`;

export async function seedCustomer(sql: Sql, at: Point = offset(ORIGIN, 1000, 0), name = "Ada"): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into customers (name, location) values (${name}, ${geography(sql, at)}) returning id`;
  return row!.id;
}

export async function seedRestaurant(sql: Sql, at: Point = ORIGIN, name = "Noodle Bar"): Promise<string> {
  const h3 = cellOf(at.lat, at.lon, config().h3Resolution);
  const [row] = await sql<{ id: string }[]>`
    insert into restaurants (name, location, h3) values (${name}, ${geography(sql, at)}, ${h3.toString()}) returning id`;
  return row!.id;
}

export interface DriverSeed {
  name?: string;
  state?: "offline" | "available";
  /** Without a position the driver has never reported (state row only). */
  at?: Point;
  positionAgeSeconds?: number;
}

export async function seedDriver(sql: Sql, seed: DriverSeed = {}): Promise<string> {
  const [driver] = await sql<{ id: string }[]>`insert into drivers (name) values (${seed.name ?? "Dan"}) returning id`;
  const id = driver!.id;
  const { at } = seed;
  if (at) {
    const h3 = cellOf(at.lat, at.lon, config().h3Resolution);
    await sql`
      insert into driver_state (driver_id, status, position, lat, lon, h3, position_at, received_at)
      values (${id}, ${seed.state ?? "available"}, ${geography(sql, at)}, ${at.lat}, ${at.lon}, ${h3.toString()},
              now() - make_interval(secs => ${seed.positionAgeSeconds ?? 0}),
              now() - make_interval(secs => ${seed.positionAgeSeconds ?? 0}))`;
  } else {
    await sql`insert into driver_state (driver_id, status) values (${id}, ${seed.state ?? "offline"})`;
  }
  return id;
}

/**
 * API tests move drivers across a neighbourhood between two calls, far faster than any vehicle: the speed check
 * (migration 0008, tested in test/db/position-trust.test.ts) would refuse those fixes, so these databases skip it.
 */
export async function allowTeleports(sql: Sql): Promise<void> {
  await sql`update tracking_settings set speed_noise_m = 1e9`;
}
