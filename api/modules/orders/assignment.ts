/**
 * Nearest-driver assignment: the SQL side (assign_nearest_driver) ranks candidates by true distance, but only
 * among the H3 cells we pass, so the search widens ring by ring (about 1 km, then 3 km at resolution 9) before the
 * slow distance-only fallback. Each try is its own statement: a T1409 ("no driver") just means "try wider".
 */
import { type Sql, sqlState } from "../../../lib/db.ts";
import { cellsAround } from "../../../lib/h3.ts";

export const SEARCH_RINGS = [5, 15] as const;
const NO_DRIVER = "T1409";

/** The cells to search, nearest rings first, then `null` for the distance-only fallback. */
export function searchAreas(restaurantCell: bigint, rings: readonly number[] = SEARCH_RINGS): (bigint[] | null)[] {
  return [...rings.map((k) => cellsAround(restaurantCell, k)), null];
}

/** PostgreSQL bigint[] from JS bigints: postgres.js sends text[], the cast makes it bigint[]. */
export function bigintArray(sql: Sql, cells: readonly bigint[]) {
  return sql`${sql.array(cells.map(String))}::bigint[]`;
}

/**
 * Runs `assign(cells)` area by area until one finds a driver; undefined when none has one. Any other error (the
 * order cannot be assigned, the database is down) ends the search at once.
 */
export async function assignInWideningAreas<T>(
  areas: readonly (bigint[] | null)[],
  assign: (cells: bigint[] | null) => Promise<T>,
): Promise<T | undefined> {
  for (const cells of areas) {
    try {
      return await assign(cells);
    } catch (error) {
      if (sqlState(error) !== NO_DRIVER) throw error;
    }
  }
  return undefined;
}
