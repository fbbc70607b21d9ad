import { describe, expect, test } from "bun:test";
import { haversineM } from "../../lib/position.ts";
import { cityByName, insideCity, type LatLon } from "../../lib/cities.ts";
import {
  advance, bearingDeg, distanceM, MAX_SPEED_KMH, MIN_SPEED_KMH, nextSpeedKmh, planRoute, type Motion,
} from "../../sim/movement.ts";
import { createRng } from "../../lib/random.ts";

const nyc = cityByName("nyc");
const start: LatLon = { lat: 40.7484, lon: -73.9857 }; // Empire State Building
const north: LatLon = { lat: 40.7574, lon: -73.9857 }; // ~1 km due north

const standing = (at: LatLon, route: LatLon[]): Motion => ({ ...at, route, speedKmh: 0, headingDeg: 0 });

describe("advance", () => {
  test("covers speed × time towards the next waypoint", () => {
    const step = advance(standing(start, [north]), 10, 36); // 10 m/s for 10 s
    expect(step.arrived).toBe(false);
    expect(step.metres).toBeCloseTo(100, 6);
    expect(haversineM(start.lat, start.lon, step.motion.lat, step.motion.lon)).toBeCloseTo(100, 0);
    expect(step.motion.speedKmh).toBe(36);
    expect(step.motion.headingDeg).toBeCloseTo(0, 6);
    expect(distanceM(step.motion, north)).toBeCloseTo(distanceM(start, north) - 100, 6);
  });

  test("keeps the speed between 20 and 45 km/h whatever it is asked", () => {
    const fast = advance(standing(start, [north]), 1, 120);
    expect(fast.motion.speedKmh).toBe(MAX_SPEED_KMH);
    expect(fast.metres).toBeCloseTo(MAX_SPEED_KMH / 3.6, 9);
    const slow = advance(standing(start, [north]), 1, 2);
    expect(slow.motion.speedKmh).toBe(MIN_SPEED_KMH);
    expect(slow.metres).toBeCloseTo(MIN_SPEED_KMH / 3.6, 9);
  });

  test("heads for the destination in every direction", () => {
    for (const [dLat, dLon, heading] of [[0.005, 0, 0], [0, 0.005, 90], [-0.005, 0, 180], [0, -0.005, 270]] as const) {
      const to = { lat: start.lat + dLat, lon: start.lon + dLon };
      const step = advance(standing(start, [to]), 2, 30);
      expect(step.motion.headingDeg).toBeCloseTo(heading, 6);
      expect(distanceM(step.motion, to)).toBeLessThan(distanceM(start, to));
    }
  });

  test("arrives exactly on the destination and stands there", () => {
    const step = advance(standing(start, [north]), 600, 30);
    expect(step.arrived).toBe(true);
    expect(step.motion).toMatchObject({ lat: north.lat, lon: north.lon, route: [], speedKmh: 0 });
    expect(step.metres).toBeCloseTo(distanceM(start, north), 6);
    const after = advance(step.motion, 10, 30);
    expect(after).toMatchObject({ arrived: false, metres: 0 });
    expect([after.motion.lat, after.motion.lon]).toEqual([north.lat, north.lon]);
  });

  test("passes a corner within one step and turns there", () => {
    const corner = { lat: start.lat, lon: start.lon + 0.0005 }; // ~42 m east
    const end = { lat: start.lat + 0.001, lon: corner.lon }; // then ~111 m north
    const step = advance(standing(start, [corner, end]), 10, 36);
    expect(step.motion.route).toEqual([end]);
    expect(step.motion.headingDeg).toBeCloseTo(0, 3);
    expect(distanceM(step.motion, end)).toBeCloseTo(distanceM(start, corner) + distanceM(corner, end) - 100, 3);
  });

  test("a trip sampled every 4 s never implies an impossible speed and ends at the destination", () => {
    const rng = createRng(1, "trip");
    const to = { lat: 40.7831, lon: -73.9712 };
    let motion = standing(start, planRoute(nyc, start, to));
    let seconds = 0;
    let arrived = false;
    while (!arrived && seconds < 3600) {
      const step = advance(motion, 4, nextSpeedKmh(rng, 30, motion.speedKmh));
      const kmh = (haversineM(motion.lat, motion.lon, step.motion.lat, step.motion.lon) / 4) * 3.6;
      expect(kmh).toBeLessThanOrEqual(MAX_SPEED_KMH * 1.01);
      if (!step.arrived) expect(kmh).toBeGreaterThanOrEqual(MIN_SPEED_KMH * 0.99);
      expect(insideCity(nyc, step.motion)).toBe(true);
      motion = step.motion;
      arrived = step.arrived;
      seconds += 4;
    }
    expect(arrived).toBe(true);
    expect([motion.lat, motion.lon]).toEqual([to.lat, to.lon]);
    const [corner] = planRoute(nyc, start, to);
    const routeM = distanceM(start, corner!) + distanceM(corner!, to);
    expect(seconds).toBeGreaterThanOrEqual(Math.floor(routeM / (MAX_SPEED_KMH / 3.6)));
    expect(seconds).toBeLessThanOrEqual(Math.ceil(routeM / (MIN_SPEED_KMH / 3.6)) + 4);
  });
});

describe("planRoute", () => {
  test("follows Manhattan's grid: an avenue leg and a street leg, turning on land", () => {
    const from = { lat: 40.7831, lon: -73.9712 }; // Upper West Side, to the East Village
    const route = planRoute(nyc, from, { lat: 40.7265, lon: -73.9815 });
    expect(route.length).toBe(2);
    const [corner, end] = route as [LatLon, LatLon];
    expect(end).toEqual({ lat: 40.7265, lon: -73.9815 });
    expect(insideCity(nyc, corner)).toBe(true);
    // Each leg runs along the grid: avenues at 29° (or 209°), streets at 119° (or 299°).
    const onGrid = (deg: number) => Math.min(...[29, 119, 209, 299].map((g) => Math.abs(deg - g))) < 0.5;
    expect(onGrid(bearingDeg(from, corner))).toBe(true);
    expect(onGrid(bearingDeg(corner, end))).toBe(true);
  });

  test("goes straight in a city without a grid", () => {
    const sf = cityByName("sf");
    expect(planRoute(sf, { lat: 37.76, lon: -122.42 }, { lat: 37.78, lon: -122.41 })).toEqual([{ lat: 37.78, lon: -122.41 }]);
  });
});

describe("nextSpeedKmh", () => {
  test("wanders around the cruising speed and never leaves the bounds", () => {
    const rng = createRng(3, "speed");
    let speed = 0;
    let sum = 0;
    for (let i = 0; i < 5_000; i++) {
      speed = nextSpeedKmh(rng, 32, speed);
      expect(speed).toBeGreaterThanOrEqual(MIN_SPEED_KMH);
      expect(speed).toBeLessThanOrEqual(MAX_SPEED_KMH);
      sum += speed;
    }
    expect(sum / 5_000).toBeCloseTo(32, 0);
  });

  test("starts from standstill at the cruising speed", () => {
    expect(nextSpeedKmh(createRng(1), 27, 0)).toBe(27);
  });
});
