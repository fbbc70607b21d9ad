import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportDrivers, generateData } from "../../db/generate.ts";
import { cityByName, homePoint } from "../../lib/cities.ts";
import { loadDriversFromDb, loadDriversFromFile, loadPlaces } from "../../sim/world.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

const city = cityByName("nyc");
let db: TestDatabase;
let dir: string;

beforeAll(async () => {
  db = await freshDatabase("sim_world");
  dir = mkdtempSync(join(tmpdir(), "sim-world-"));
  await generateData(db.sql, {
    drivers: 50, restaurants: 5, customers: 30, orders: 0, mode: "truncate", seed: 11, city, online: false, progress: false,
  });
});

afterAll(async () => {
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

test("the database and the generator's export give the same fleet", async () => {
  const file = join(dir, "drivers.json");
  await exportDrivers(db.sql, file, city);
  const fromDb = await loadDriversFromDb(db.sql, city, 1_000);
  const fromFile = await loadDriversFromFile(file, city, 1_000);
  expect(fromDb.length).toBe(50);
  expect(fromFile.map((d) => d.id)).toEqual(fromDb.map((d) => d.id));
  for (const [i, d] of fromDb.entries()) {
    // Offline drivers without a position start at their home point, wherever they are loaded from.
    const home = homePoint(city, d.id);
    expect(d.lat).toBeCloseTo(home.lat, 6);
    expect(fromFile[i]!.lat).toBeCloseTo(home.lat, 6);
    expect(fromFile[i]!.lon).toBeCloseTo(home.lon, 6);
  }
  expect(await loadDriversFromDb(db.sql, city, 7)).toHaveLength(7);
  expect(await loadDriversFromFile(file, city, 7)).toHaveLength(7);
});

test("a drivers file keeps given positions, fills missing ones and refuses entries without a UUID", async () => {
  const id = crypto.randomUUID();
  const file = join(dir, "hand.json");
  writeFileSync(file, JSON.stringify([{ id: crypto.randomUUID(), lat: 40.75, lon: -73.98 }, { id }]));
  const [placed, missing] = await loadDriversFromFile(file, city, 10);
  expect(placed).toMatchObject({ lat: 40.75, lon: -73.98 });
  expect(missing).toEqual({ id, ...homePoint(city, id) });
  writeFileSync(file, JSON.stringify([{ id: "driver-1", lat: 1, lon: 2 }]));
  await expect(loadDriversFromFile(file, city, 10)).rejects.toThrow("no UUID id");
  writeFileSync(file, JSON.stringify({ drivers: [] }));
  await expect(loadDriversFromFile(file, city, 10)).rejects.toThrow("JSON array");
});

test("places for orders come with their coordinates", async () => {
  const { customers, restaurants } = await loadPlaces(db.sql, 20);
  expect(customers).toHaveLength(20);
  expect(restaurants).toHaveLength(5);
  for (const p of [...customers, ...restaurants]) {
    expect(Object.keys(p).sort()).toEqual(["id", "lat", "lon"]);
    expect(p.lat).toBeGreaterThan(city.bbox.south);
    expect(p.lon).toBeLessThan(city.bbox.east);
  }
});
