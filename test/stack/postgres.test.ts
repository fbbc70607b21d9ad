// Proof that postgres.js reaches the real PostgreSQL + PostGIS: a geodesic distance and COPY FROM STDIN.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { freshDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await freshDatabase("stack_postgres");
});
afterAll(() => db?.drop());

test("PostGIS measures Times Square to Empire State Building (~1.0 km)", async () => {
  const [row] = await db.sql<{ metres: number }[]>`
    select st_distance('SRID=4326;POINT(-73.9855 40.7580)'::geography,
                       'SRID=4326;POINT(-73.9857 40.7484)'::geography) as metres`;
  expect(row!.metres).toBeGreaterThan(1_000);
  expect(row!.metres).toBeLessThan(1_100);
});

test("COPY FROM STDIN loads rows", async () => {
  await db.sql`create unlogged table copy_probe (id int, label text)`;
  const writable = await db.sql`copy copy_probe (id, label) from stdin`.writable();
  const done = new Promise<void>((resolve, reject) => {
    writable.on("finish", resolve);
    writable.on("error", reject);
  });
  for (let i = 0; i < 10_000; i++) writable.write(`${i}\tlabel-${i}\n`);
  writable.end();
  await done;
  const [row] = await db.sql<{ n: number; total: number }[]>`select count(*)::int n, sum(id)::int total from copy_probe`;
  expect(row!.n).toBe(10_000);
  expect(row!.total).toBe((9_999 * 10_000) / 2);
});
