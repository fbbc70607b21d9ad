// The pages from the API as production starts it (a real `bun api/server.ts` process): HTML with the map settings
// and a strict CSP, the bundle built by Bun's bundler in that process, an unknown asset refused.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { freshDatabase, type TestDatabase } from "../support/db.ts";
import { type ApiProcess, startApiProcess } from "../api/support/server-process.ts";

let db: TestDatabase;
let api: ApiProcess;
beforeAll(async () => {
  db = await freshDatabase("ui_pages_server");
  api = await startApiProcess({ DATABASE_URL: db.url, MAP_CITY: "sf" });
}, 60_000);
afterAll(async () => {
  await api?.stop();
  await db?.drop();
}, 30_000);

test("serves both pages, their bundled scripts and stylesheet, and nothing else under /ui/assets", async () => {
  for (const page of ["ops", "track"]) {
    const res = await fetch(`${api.base}/ui/${page}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
    const html = await res.text();
    expect(html).toContain('"name":"sf"'); // MAP_CITY, written into the page
    expect(html).toContain(`/ui/assets/${page}.js`);
    const script = await fetch(`${api.base}/ui/assets/${page}.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toContain("javascript");
    expect((await script.text()).length).toBeGreaterThan(10_000); // Leaflet is in it: no CDN
  }
  const css = await fetch(`${api.base}/ui/assets/pages.css`);
  expect(await css.text()).toContain(".leaflet-container");
  expect((await fetch(`${api.base}/ui/assets/secrets.env`)).status).toBe(404);
  expect((await fetch(`${api.base}/ui/assets/..%2Fpackage.json`)).status).toBe(400);
}, 60_000);
