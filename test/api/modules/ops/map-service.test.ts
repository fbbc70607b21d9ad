// The operations map's SQL against a real database: parents of stored H3 cells, dots below the limit, counts above.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cellToParent, latLngToCell } from "h3-js";
import { cellResolution, DOT_LIMIT, mapService, parentMasks } from "../../../../api/modules/ops/map-service.ts";
import { freshDatabase, type TestDatabase } from "../../../support/db.ts";
import { ORIGIN, offset, seedDriver } from "../../support/seed.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await freshDatabase("ops_map");
});
afterAll(() => db?.drop());

const near = { west: ORIGIN.lon - 0.02, south: ORIGIN.lat - 0.02, east: ORIGIN.lon + 0.02, north: ORIGIN.lat + 0.02 };

describe("parentMasks", () => {
  test.each([5, 6, 7, 8, 9])("the masks give h3-js's parent at resolution %p", (resolution) => {
    const cell = BigInt(`0x${latLngToCell(ORIGIN.lat, ORIGIN.lon, 9)}`);
    const { keep, set } = parentMasks(resolution);
    const parent = BigInt.asUintN(64, (cell & BigInt(keep)) | BigInt(set));
    expect(parent.toString(16)).toBe(cellToParent(cell.toString(16), resolution));
  });
  test("resolution follows the zoom, within 5 and the stored resolution", () => {
    expect([3, 11, 12, 13, 18].map((zoom) => cellResolution(zoom, 9, 4))).toEqual([5, 7, 8, 9, 9]);
  });
});

describe("mapService", () => {
  test("a few drivers come as dots with their state, available ones as density per cell", async () => {
    const at = [offset(ORIGIN, 0, 0), offset(ORIGIN, 50, 50), offset(ORIGIN, 5_000, 0)];
    for (const [i, p] of at.entries()) await seedDriver(db.sql, { at: p, state: i === 1 ? "offline" : "available" });
    await seedDriver(db.sql, {}); // never reported: no position, not on the map
    const maps = mapService(db.sql, 9);
    const map = await maps.map({ ...near, zoom: 15 });
    expect(map.drivers_in_view).toBe(2);
    expect(map.drivers.kind).toBe("dots");
    const points = map.drivers.kind === "dots" ? map.drivers.points : [];
    expect(points.length).toBe(6);
    expect(points.filter((_, i) => i % 3 === 2).sort()).toEqual([0, 1]); // offline, available
    expect(map.density.resolution).toBe(9);
    expect(map.density.cells).toEqual([latLngToCell(ORIGIN.lat, ORIGIN.lon, 9), 1]);
  });

  test(`past ${DOT_LIMIT} drivers in view, counts per cell and state instead of dots`, async () => {
    await db.sql`
      insert into drivers (id, name) select gen_random_uuid(), 'bulk ' || g from generate_series(1, ${DOT_LIMIT}) g`;
    const cell = latLngToCell(ORIGIN.lat, ORIGIN.lon, 9);
    await db.sql`
      insert into driver_state (driver_id, status, lat, lon, h3, position_at)
      select id, 'available', ${ORIGIN.lat}, ${ORIGIN.lon}, ${BigInt(`0x${cell}`).toString()}::bigint, now()
      from drivers where name like 'bulk %'`;
    const map = await mapService(db.sql, 9).map({ ...near, zoom: 12 });
    expect(map.drivers_in_view).toBe(DOT_LIMIT + 2);
    expect(map.drivers.kind).toBe("cells");
    const parent = cellToParent(cell, 8);
    if (map.drivers.kind !== "cells") throw new Error("expected cells");
    expect(map.drivers.resolution).toBe(8);
    // [cell, state index, count] triples: the bulk and the seeded available driver share the parent cell.
    const triples = [];
    for (let i = 0; i < map.drivers.cells.length; i += 3) triples.push(map.drivers.cells.slice(i, i + 3));
    expect(triples).toContainEqual([parent, 1, DOT_LIMIT + 1]);
    expect(triples).toContainEqual([parent, 0, 1]);
  });

  test("orders by status are counted in the database", async () => {
    expect(await mapService(db.sql, 9).ordersByStatus()).toEqual({});
  });
});
