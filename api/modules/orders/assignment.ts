/**
 * Nearest-driver assignment: the SQL side (assign_nearest_driver, migration 0011) finds the nearest available driver
 * exactly, best-first over the H3 cells we pass, each with a lower bound of its distance from the restaurant (its
 * nearest edge). Those bounds need H3's geometry, which lives here (h3-js), not in the database. An area answers
 * only for a driver it can prove nearest (within `coveredM`); otherwise, or when it holds nobody, SQL says T1409 and
 * the next, wider area is tried, ending with `null`: every available driver within FALLBACK_REACH_M (exhaustive,
 * slow, rare). See docs/dispatch.md.
 */
import { cellToBoundary, gridDiskDistances, latLngToCell } from "h3-js";
import { type Sql, sqlState } from "../../../lib/db.ts";

/** Rings around the restaurant's cell: 2 (~0.5 km at resolution 9) answers in any busy area, 8 (~2.5 km) in a quiet one. */
export const SEARCH_RINGS = [2, 8] as const;
/** The exhaustive fallback's reach, as 0005's default. */
export const FALLBACK_REACH_M = 15_000;
/** SQLSTATE of "no (proposed) driver is available here": the next, wider search may find one. */
export const NO_DRIVER = "T1409";
/** PostgreSQL's sphere for geography distances, WGS 84's mean radius. */
const EARTH_RADIUS_M = 6_371_008.7714;
/**
 * The bounds are measured on a local flat projection around the point, good to a few parts in 10,000 over the few
 * kilometres searched: 0.5% off every bound, and a metre, keep them below the truth (a looser bound only costs a read).
 */
const BOUND_SCALE = 0.995;
const BOUND_SLACK_M = 1;

/** Cells ordered by a lower bound of their distance from a point; nothing outside them is nearer than `coveredM`. */
export interface SearchArea {
  cells: bigint[];
  boundsM: number[];
  coveredM: number;
}

const toRad = (deg: number) => (deg * Math.PI) / 180;

/**
 * The point's distance to the nearest edge of a cell: x east and y north in metres around the point (an
 * equirectangular projection), each edge a straight segment; 0 inside the cell.
 */
function distanceToCellM(lat: number, lon: number, cell: string): number {
  const mPerDegLat = (Math.PI / 180) * EARTH_RADIUS_M;
  const mPerDegLon = mPerDegLat * Math.cos(toRad(lat));
  const ring = cellToBoundary(cell).map(([vLat, vLon]) => [(vLon - lon) * mPerDegLon, (vLat - lat) * mPerDegLat] as const);
  let nearest = Infinity;
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [ax, ay] = ring[j]!;
    const [bx, by] = ring[i]!;
    // The origin against the edge a→b: its nearest point, and a ray-cast towards +x for inside/outside.
    const dx = bx - ax;
    const dy = by - ay;
    const t = Math.max(0, Math.min(1, -(ax * dx + ay * dy) / (dx * dx + dy * dy || 1)));
    nearest = Math.min(nearest, Math.hypot(ax + t * dx, ay + t * dy));
    if (ay > 0 !== by > 0 && ax - (ay * dx) / dy > 0) inside = !inside;
  }
  return inside ? 0 : nearest;
}

/**
 * The cells within `rings` of the point's cell, each with a lower bound of the distance from the point to anything
 * in it. Anything outside the disk lies beyond the ring just outside it, so that ring's nearest bound is what the
 * disk covers.
 */
export function searchArea(lat: number, lon: number, rings: number, resolution: number): SearchArea {
  const bound = (cell: string) => Math.max(0, distanceToCellM(lat, lon, cell) * BOUND_SCALE - BOUND_SLACK_M);
  const byRing = gridDiskDistances(latLngToCell(lat, lon, resolution), rings + 1);
  const inside = byRing.slice(0, rings + 1).flat().map((cell) => ({ cell, boundM: bound(cell) }));
  inside.sort((a, b) => a.boundM - b.boundM);
  const coveredM = Math.min(...byRing[rings + 1]!.map(bound));
  return { cells: inside.map((c) => BigInt(`0x${c.cell}`)), boundsM: inside.map((c) => c.boundM), coveredM };
}

/** The areas to search, nearest first, then `null` for the exhaustive fallback. */
export function searchAreas(
  lat: number,
  lon: number,
  resolution: number,
  rings: readonly number[] = SEARCH_RINGS,
): (SearchArea | null)[] {
  return [...rings.map((k) => searchArea(lat, lon, k, resolution)), null];
}

/**
 * Restaurants do not move, and the areas cost h3-js a few hundred microseconds: they are kept per place (a bounded
 * map, emptied when full; the wider areas are only computed when a narrower one found nobody).
 */
export function searchAreaCache(resolution: number, rings: readonly number[] = SEARCH_RINGS, maxPlaces = 20_000) {
  const places = new Map<string, (SearchArea | null)[]>();
  return (lat: number, lon: number): (() => SearchArea | null)[] => {
    const key = `${lat},${lon}`;
    let areas = places.get(key);
    if (!areas) {
      if (places.size >= maxPlaces) places.clear();
      areas = [];
      places.set(key, areas);
    }
    const known = areas;
    return [
      ...rings.map((k, i) => () => (known[i] ??= searchArea(lat, lon, k, resolution))),
      () => null,
    ];
  };
}

/**
 * A PostgreSQL array as one text literal ('{1,2,3}'), cast by the caller. Not sql.array: postgres.js serialises that
 * with the array types it fetches on a pool's first connection, and a query built on a fresh pool before then sends
 * '1,2,3' (malformed array literal).
 */
export const arrayLiteral = (values: readonly (bigint | number | string)[]) => `{${values.join(",")}}`;

/** PostgreSQL bigint[] from JS bigints. */
export function bigintArray(sql: Sql, cells: readonly bigint[]) {
  return sql`${arrayLiteral(cells)}::bigint[]`;
}

/** The arguments after the order id of assign_nearest_driver(order, cells, bounds, covered) for an area. */
export function areaArguments(sql: Sql, area: SearchArea | null) {
  return area === null
    ? sql`null::bigint[], null::real[], ${FALLBACK_REACH_M}::real`
    : sql`${arrayLiteral(area.cells)}::bigint[], ${arrayLiteral(area.boundsM)}::real[], ${area.coveredM}::real`;
}

/**
 * Runs `assign(area)` area by area until one finds a driver; undefined when none has one. Any other error (the
 * order cannot be assigned, the database is down) ends the search at once. An area may be given as a function, so
 * wider ones are only computed when needed.
 */
export async function assignInWideningAreas<A, T>(
  areas: readonly (A | (() => A))[],
  assign: (area: A) => Promise<T>,
): Promise<T | undefined> {
  for (const area of areas) {
    try {
      return await assign(typeof area === "function" ? (area as () => A)() : area);
    } catch (error) {
      if (sqlState(error) !== NO_DRIVER) throw error;
    }
  }
  return undefined;
}
