/**
 * What the operations map draws, aggregated in PostgreSQL so the answer stays small at 100,000 drivers: within the
 * viewport, each driver as a dot while there are few enough to see one by one, otherwise a count per H3 cell and
 * state; the density of available drivers per H3 cell; and orders by status. Plain reads of tables the API role
 * may already select (0009); H3 parents are computed from the stored cell's bits, no extension needed.
 */
import type { Sql } from "../../../lib/db.ts";
import { DRIVER_STATES } from "../tracking/model.ts";
import type { OpsMap, OrdersByStatus, Viewport } from "./model.ts";

/** Above this many drivers in the viewport, dots become counts per cell (a dot each would be noise, and bytes). */
export const DOT_LIMIT = 3_000;
const STATE_INDEX = new Map<string, number>(DRIVER_STATES.map((state, i) => [state, i]));

/**
 * The bit masks that turn a stored H3 cell (a bigint) into its parent at `resolution`: the 4 resolution bits set to
 * it and the digits of the finer resolutions set to 7 (unused), as the H3 index layout defines.
 */
export function parentMasks(resolution: number): { keep: string; set: string } {
  const unusedDigits = (1n << BigInt(3 * (15 - resolution))) - 1n;
  const resolutionBits = 15n << 52n;
  return {
    keep: BigInt.asIntN(64, ~(resolutionBits | unusedDigits)).toString(),
    set: ((BigInt(resolution) << 52n) | unusedDigits).toString(),
  };
}

/** Finer cells as the map zooms in, never finer than the stored cell. */
export function cellResolution(zoom: number, storedResolution: number, offset: number): number {
  return Math.max(5, Math.min(storedResolution, Math.round(zoom) - offset));
}

const round5 = (x: number) => Math.round(x * 1e5) / 1e5;

export function mapService(sql: Sql, storedResolution: number) {
  const parentOf = (resolution: number) => {
    const { keep, set } = parentMasks(resolution);
    return sql`to_hex((h3 & ${keep}::bigint) | ${set}::bigint)`;
  };
  const inViewport = (v: Viewport) =>
    sql`lat between ${v.south} and ${v.north} and lon between ${v.west} and ${v.east} and h3 is not null`;

  return {
    /**
     * One scan of the viewport grouped by cell and state gives the count, the density and the cells; a second,
     * only when few enough drivers are in view, reads them one by one.
     */
    async map(v: Viewport): Promise<OpsMap> {
      const resolution = cellResolution(v.zoom, storedResolution, 4);
      const grouped = await sql<{ cell: string; status: string; n: number }[]>`
        select ${parentOf(resolution)} as cell, status::text as status, count(*)::int as n
        from driver_state where ${inViewport(v)}
        group by 1, 2`;
      let inView = 0;
      const density: (string | number)[] = [];
      const cells: (string | number)[] = [];
      for (const row of grouped) {
        inView += row.n;
        if (row.status === "available") density.push(row.cell, row.n);
        cells.push(row.cell, STATE_INDEX.get(row.status) ?? 0, row.n);
      }
      const base = { states: [...DRIVER_STATES], drivers_in_view: inView, density: { resolution, cells: density } };
      if (inView > DOT_LIMIT) return { ...base, drivers: { kind: "cells", resolution, cells } };
      const rows = await sql<{ lat: number; lon: number; status: string }[]>`
        select lat, lon, status::text as status from driver_state where ${inViewport(v)}`;
      const points: number[] = [];
      for (const row of rows) points.push(round5(row.lat), round5(row.lon), STATE_INDEX.get(row.status) ?? 0);
      return { ...base, drivers: { kind: "dots", points } };
    },

    async ordersByStatus(): Promise<OrdersByStatus> {
      const rows = await sql<{ status: string; n: number }[]>`
        select status::text as status, count(*)::int as n from orders group by 1`;
      return Object.fromEntries(rows.map((row) => [row.status, row.n]));
    },
  };
}
