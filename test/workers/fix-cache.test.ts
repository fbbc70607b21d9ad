// The worker's bounded last-fix memory (pure).
import { expect, test } from "bun:test";
import { createFixCache } from "../../workers/fix-cache.ts";

const fix = (tMs: number, lat = 40.7, lon = -74) => ({ lat, lon, tMs });

test("keeps each driver's newest fix; an older or equal one does not replace it", () => {
  const cache = createFixCache(10);
  expect(cache.get("a")).toBeUndefined();
  cache.remember("a", fix(2_000, 40.71, -74.01));
  cache.remember("a", fix(1_000, 41, -75)); // older
  cache.remember("a", fix(2_000, 42, -76)); // same time
  expect(cache.get("a")).toEqual(fix(2_000, 40.71, -74.01));
  cache.remember("a", fix(3_000, 40.72, -74.02));
  expect(cache.get("a")).toEqual(fix(3_000, 40.72, -74.02));
  expect(cache.size()).toBe(1);
});

test("strikes count up per driver, start at 0 again with a newer fix, and are 0 for unknown drivers", () => {
  const cache = createFixCache(10);
  expect(cache.strike("nobody")).toBe(0);
  cache.remember("a", fix(1_000));
  cache.remember("b", fix(1_000));
  expect([cache.strike("a"), cache.strike("a"), cache.strike("b"), cache.strike("a")]).toEqual([1, 2, 1, 3]);
  cache.remember("a", fix(2_000));
  expect(cache.strike("a")).toBe(1);
  for (let i = 0; i < 300; i++) cache.strike("b");
  expect(cache.strike("b")).toBe(255); // saturates, never wraps to 0
});

test("at capacity, the driver updated least recently is forgotten and its slot reused", () => {
  const cache = createFixCache(3);
  cache.remember("a", fix(1));
  cache.remember("b", fix(1));
  cache.remember("c", fix(1));
  cache.remember("a", fix(2)); // a is now the most recent; b the least
  cache.remember("d", fix(5, 1, 2));
  expect(cache.size()).toBe(3);
  expect(cache.get("b")).toBeUndefined();
  expect(cache.get("d")).toEqual(fix(5, 1, 2));
  expect(cache.get("a")).toEqual(fix(2));
  cache.remember("e", fix(6)); // c goes next
  expect(["a", "b", "c", "d", "e"].map((id) => cache.get(id) !== undefined)).toEqual([true, false, false, true, true]);
});

test("a capacity below 1 is refused", () => {
  expect(() => createFixCache(0)).toThrow(RangeError);
});
