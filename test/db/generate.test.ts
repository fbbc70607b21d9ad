import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportDrivers, generateData, parseGenerateArgs, type ExportedDriver, type GenerateOptions } from "../../db/generate.ts";
import { config } from "../../lib/config.ts";
import { cellOf } from "../../lib/h3.ts";
import { haversineM } from "../../lib/position.ts";
import { cityByName, homePoint, insideBbox, insideCity } from "../../lib/cities.ts";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

const city = cityByName("nyc");
const resolution = config().h3Resolution;
let db: TestDatabase;
let dir: string;

const base: GenerateOptions = {
  drivers: 600,
  restaurants: 40,
  customers: 300,
  orders: 150,
  mode: "truncate",
  seed: 7,
  city,
  online: false,
  progress: false,
};

async function counts() {
  const [row] = await db.sql<Record<string, bigint>[]>`
    select (select count(*) from drivers) as drivers, (select count(*) from driver_state) as driver_state,
           (select count(*) from restaurants) as restaurants, (select count(*) from customers) as customers,
           (select count(*) from orders) as orders, (select count(*) from state_history) as state_history`;
  return Object.fromEntries(Object.entries(row!).map(([k, v]) => [k, Number(v)]));
}

const ids = async (table: string) =>
  (await db.sql.unsafe<{ id: string }[]>(`select id from ${table} order by id`)).map((r) => r.id);

beforeAll(async () => {
  db = await freshDatabase("generate");
  dir = mkdtempSync(join(tmpdir(), "generate-test-"));
});

afterAll(async () => {
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe("generateData", () => {
  test("loads the requested rows and reports them per table", async () => {
    const summary = await generateData(db.sql, { ...base, exportFile: join(dir, "drivers.json") });
    expect(summary.tables.map((t) => [t.table, t.rows])).toEqual([
      ["drivers", 600], ["driver_state", 600], ["restaurants", 40], ["customers", 300], ["orders", 150],
    ]);
    expect(summary.exported).toBe(600);
    expect(await counts()).toEqual({
      drivers: 600, driver_state: 600, restaurants: 40, customers: 300, orders: 150, state_history: 0,
    });
    const states = await db.sql`select status, count(*)::int as n, count(position)::int as placed from driver_state group by status`;
    expect([...states]).toEqual([{ status: "offline", n: 600, placed: 0 }]);
  });

  test("puts every place on land inside the city's bounding box", async () => {
    const points = await db.sql<{ kind: string; lat: number; lon: number }[]>`
      select 'restaurant' as kind, st_y(location::geometry) as lat, st_x(location::geometry) as lon from restaurants
      union all select 'customer', st_y(location::geometry), st_x(location::geometry) from customers
      union all select 'delivery', st_y(delivery_location::geometry), st_x(delivery_location::geometry) from orders`;
    expect(points.length).toBe(40 + 300 + 150);
    for (const p of points) {
      expect(insideBbox(city, p)).toBe(true);
      expect(insideCity(city, p)).toBe(true);
    }
  });

  test("clusters restaurants around the hotspots", async () => {
    const rows = await db.sql<{ lat: number; lon: number }[]>`
      select st_y(location::geometry) as lat, st_x(location::geometry) as lon from restaurants`;
    const nearHotspot = rows.filter((r) =>
      city.hotspots.some((h) => haversineM(r.lat, r.lon, h.lat, h.lon) < 3 * h.sigmaM)).length;
    // 80% are drawn around a hotspot; uniform points would hit these discs far less often.
    expect(nearHotspot / rows.length).toBeGreaterThan(0.7);
  });

  test("stores the restaurants' H3 cells as lib/h3.ts computes them", async () => {
    const rows = await db.sql<{ lat: number; lon: number; h3: bigint }[]>`
      select st_y(location::geometry) as lat, st_x(location::geometry) as lon, h3 from restaurants`;
    for (const r of rows) expect(r.h3).toBe(cellOf(r.lat, r.lon, resolution));
  });

  test("creates orders in status created, with 1–4 items, delivered near the customer", async () => {
    const rows = await db.sql<{ status: string; items: unknown; metres: number; restaurant: string | null }[]>`
      select o.status, o.items, st_distance(o.delivery_location, c.location) as metres, r.id as restaurant
      from orders o join customers c on c.id = o.customer_id left join restaurants r on r.id = o.restaurant_id`;
    expect(rows.length).toBe(150);
    for (const o of rows) {
      expect(o.status).toBe("created");
      expect(o.restaurant).not.toBeNull();
      expect(o.metres).toBeLessThan(150);
      expect(Array.isArray(o.items)).toBe(true);
      const items = o.items as { name: unknown; qty: unknown; price_cents: unknown }[];
      expect(items.length).toBeGreaterThanOrEqual(1);
      expect(items.length).toBeLessThanOrEqual(4);
      for (const item of items) {
        expect(typeof item.name).toBe("string");
        expect(Number.isInteger(item.qty) && (item.qty as number) >= 1).toBe(true);
        expect(Number.isInteger(item.price_cents) && (item.price_cents as number) > 0).toBe(true);
      }
    }
  });

  test("exports every driver with its name and its home point", async () => {
    const exported = JSON.parse(readFileSync(join(dir, "drivers.json"), "utf8")) as ExportedDriver[];
    const rows = await db.sql<{ id: string; name: string }[]>`select id, name from drivers order by id`;
    expect(exported.map((d) => [d.id, d.name])).toEqual(rows.map((r) => [r.id, r.name]));
    for (const d of exported) {
      expect(insideCity(city, d)).toBe(true);
      const home = homePoint(city, d.id);
      expect(d.lat).toBeCloseTo(home.lat, 6);
      expect(d.lon).toBeCloseTo(home.lon, 6);
    }
  });

  test("a second truncating run with the same seed gives the same rows and clears the history", async () => {
    const before = { drivers: await ids("drivers"), orders: await ids("orders") };
    await db.sql`insert into state_history (entity, entity_id, from_status, to_status, event)
                 values ('driver', ${before.drivers[0]!}, 'offline', 'available', 'online')`;
    await generateData(db.sql, base);
    expect(await counts()).toEqual({
      drivers: 600, driver_state: 600, restaurants: 40, customers: 300, orders: 150, state_history: 0,
    });
    expect(await ids("drivers")).toEqual(before.drivers);
    expect(await ids("orders")).toEqual(before.orders);
  });

  test("--export-only writes the same file from the database", async () => {
    const file = join(dir, "again.json");
    expect(await exportDrivers(db.sql, file, city)).toBe(600);
    expect(readFileSync(file, "utf8")).toBe(readFileSync(join(dir, "drivers.json"), "utf8"));
  });

  test("upsert keeps existing rows and adds new ones; rows already there are kept as they are", async () => {
    const added = await generateData(db.sql, { ...base, mode: "upsert", seed: 8 });
    expect(added.tables.map((t) => t.rows)).toEqual([600, 600, 40, 300, 150]);
    expect(await counts()).toMatchObject({ drivers: 1200, driver_state: 1200, restaurants: 80, customers: 600, orders: 300 });

    // A live driver of the first run: upserting the same seed again must not reset it.
    const [live] = await ids("drivers");
    await db.sql`update drivers set name = 'Renamed' where id = ${live!}`;
    await db.sql`update driver_state set status = 'available' where driver_id = ${live!}`;
    const again = await generateData(db.sql, { ...base, mode: "upsert", seed: 7 });
    expect(again.tables.map((t) => t.rows)).toEqual([0, 0, 0, 0, 0]);
    expect(await counts()).toMatchObject({ drivers: 1200, orders: 300 });
    const [kept] = await db.sql`select d.name, s.status from drivers d join driver_state s on s.driver_id = d.id
                                where d.id = ${live!}`;
    expect(kept).toEqual({ name: "Renamed", status: "available" });
  });

  test("orders alone draw on the customers and restaurants already there", async () => {
    await generateData(db.sql, { ...base, mode: "upsert", seed: 9, drivers: 0, restaurants: 0, customers: 0, orders: 50 });
    expect(await counts()).toMatchObject({ drivers: 1200, restaurants: 80, customers: 600, orders: 350 });
    const [orphans] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from orders o
      where not exists (select 1 from customers c where c.id = o.customer_id)
         or not exists (select 1 from restaurants r where r.id = o.restaurant_id)`;
    expect(orphans?.n).toBe(0);
  });

  test("--online drivers are available at a position whose H3 cell matches lib/h3.ts", async () => {
    await generateData(db.sql, { ...base, online: true, seed: 10, orders: 0 });
    const rows = await db.sql<{ status: string; lat: number; lon: number; h3: bigint; plat: number; plon: number; fresh: boolean }[]>`
      select status, lat, lon, h3, st_y(position::geometry) as plat, st_x(position::geometry) as plon,
             position_at > now() - interval '1 minute' as fresh
      from driver_state`;
    expect(rows.length).toBe(600);
    for (const r of rows) {
      expect(r.status).toBe("available");
      expect(r.fresh).toBe(true);
      expect(insideCity(city, r)).toBe(true);
      expect(r.plat).toBeCloseTo(r.lat, 9);
      expect(r.plon).toBeCloseTo(r.lon, 9);
      expect(r.h3).toBe(cellOf(r.lat, r.lon, resolution));
    }
    // An online driver's export entry is where it stands.
    const file = join(dir, "online.json");
    await exportDrivers(db.sql, file, city);
    const exported = JSON.parse(readFileSync(file, "utf8")) as ExportedDriver[];
    const byId = new Map((await db.sql<{ id: string; lat: number; lon: number }[]>`select driver_id as id, lat, lon from driver_state`).map((r) => [r.id, r]));
    for (const d of exported) expect([d.lat, d.lon]).toEqual([byId.get(d.id)!.lat, byId.get(d.id)!.lon]);
  });
});

describe("parseGenerateArgs", () => {
  test("reads counts and modes, with or without the -- separator", () => {
    const { options } = parseGenerateArgs(["--", "--drivers", "10", "--orders", "3", "--upsert", "--seed", "5", "--city", "sf"]);
    expect(options).toMatchObject({ drivers: 10, orders: 3, mode: "upsert", seed: 5, online: false });
    expect(options.city.name).toBe("sf");
    expect(parseGenerateArgs([]).options.mode).toBe("truncate");
  });

  test("refuses contradictions and bad numbers", () => {
    expect(() => parseGenerateArgs(["--truncate", "--upsert"])).toThrow("exclude each other");
    expect(() => parseGenerateArgs(["--export-only"])).toThrow("--export-only needs --export");
    expect(() => parseGenerateArgs(["--drivers", "ten"])).toThrow("--drivers");
    expect(() => parseGenerateArgs(["--city", "atlantis"])).toThrow("unknown city");
  });
});
