import { expect, test } from "bun:test";
import { isUuid } from "../../lib/position.ts";
import { CITIES, homePoint, insideBbox, insideCity, pointNear, randomPoint } from "../../lib/cities.ts";
import { createRng } from "../../lib/random.ts";

test("every city's outline and hotspots lie inside its bounding box, hotspots on land", () => {
  for (const city of Object.values(CITIES)) {
    for (const [lon, lat] of city.outline) expect(insideBbox(city, { lat, lon })).toBe(true);
    for (const h of city.hotspots) expect(insideCity(city, h)).toBe(true);
  }
});

test("the Manhattan outline keeps water and New Jersey out", () => {
  const nyc = CITIES.nyc!;
  expect(insideCity(nyc, { lat: 40.7484, lon: -73.9857 })).toBe(true); // Empire State Building
  expect(insideCity(nyc, { lat: 40.7851, lon: -73.9683 })).toBe(true); // Central Park
  expect(insideCity(nyc, { lat: 40.745, lon: -74.015 })).toBe(false); // Hudson River
  expect(insideCity(nyc, { lat: 40.72, lon: -73.96 })).toBe(false); // Williamsburg, Brooklyn
  expect(insideCity(nyc, { lat: 40.86, lon: -73.96 })).toBe(false); // Fort Lee, New Jersey
});

test("random and scattered points stay on land; a seed gives the same points", () => {
  const nyc = CITIES.nyc!;
  const a = createRng(5, "points");
  const b = createRng(5, "points");
  const scatter = createRng(6, "scatter");
  for (let i = 0; i < 2_000; i++) {
    const p = randomPoint(nyc, a);
    expect(insideCity(nyc, p)).toBe(true);
    expect(randomPoint(nyc, b)).toEqual(p);
    expect(insideCity(nyc, pointNear(nyc, scatter, p, 300))).toBe(true);
  }
});

test("a driver's home point depends on its id alone", () => {
  const nyc = CITIES.nyc!;
  const id = "3f1c1b0e-5a43-4b8e-9a52-6f1f3c2d9e10";
  expect(homePoint(nyc, id)).toEqual(homePoint(nyc, id));
  expect(homePoint(nyc, id)).not.toEqual(homePoint(nyc, "3f1c1b0e-5a43-4b8e-9a52-6f1f3c2d9e11"));
  expect(insideCity(nyc, homePoint(nyc, id))).toBe(true);
});

test("seeded streams: reproducible, independent per label, valid v4 UUIDs, uniform enough", () => {
  const draw = (seed: number, label: string) => Array.from({ length: 5 }, createRng(seed, label).next);
  expect(draw(1, "drivers")).toEqual(draw(1, "drivers"));
  expect(draw(1, "drivers")).not.toEqual(draw(2, "drivers"));
  expect(draw(1, "drivers")).not.toEqual(draw(1, "orders"));
  const rng = createRng(9);
  const ids = new Set(Array.from({ length: 10_000 }, () => rng.uuid()));
  expect(ids.size).toBe(10_000);
  for (const id of ids) {
    expect(isUuid(id)).toBe(true);
    expect(id[14]).toBe("4");
  }
  const buckets = new Array<number>(10).fill(0);
  for (let i = 0; i < 100_000; i++) buckets[Math.floor(rng.next() * 10)]!++;
  for (const n of buckets) expect(Math.abs(n - 10_000)).toBeLessThan(500);
  for (let i = 0; i < 1_000; i++) {
    const k = rng.int(1, 4);
    expect(k >= 1 && k <= 4 && Number.isInteger(k)).toBe(true);
  }
});
