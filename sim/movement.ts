/**
 * How a simulated driver moves: along a route of waypoints at a speed between 20 and 45 km/h, heading for the next
 * waypoint. Pure functions over plain values, so the model is testable without a clock or a broker. Distances use a
 * local flat-earth approximation, which is far below GPS noise at city scale.
 */
import { insideCity, METRES_PER_DEG_LAT, type City, type LatLon } from "../lib/cities.ts";
import type { Rng } from "../lib/random.ts";

export const MIN_SPEED_KMH = 20;
export const MAX_SPEED_KMH = 45;

export interface Motion {
  lat: number;
  lon: number;
  /** Waypoints still ahead; the last one is the destination. Empty when the driver is standing. */
  route: LatLon[];
  speedKmh: number;
  /** Course over ground, degrees clockwise from north (the `cog` of a position). */
  headingDeg: number;
}

export interface Step {
  motion: Motion;
  /** The destination was reached during this step (the driver stands on it now). */
  arrived: boolean;
  metres: number;
}

const mPerDegLon = (lat: number) => METRES_PER_DEG_LAT * Math.cos((lat * Math.PI) / 180);

/** East and north offsets in metres from a to b. */
function offsetM(a: LatLon, b: LatLon): { east: number; north: number } {
  return { east: (b.lon - a.lon) * mPerDegLon(a.lat), north: (b.lat - a.lat) * METRES_PER_DEG_LAT };
}

function moveBy(p: LatLon, east: number, north: number): LatLon {
  return { lat: p.lat + north / METRES_PER_DEG_LAT, lon: p.lon + east / mPerDegLon(p.lat) };
}

export function distanceM(a: LatLon, b: LatLon): number {
  const { east, north } = offsetM(a, b);
  return Math.hypot(east, north);
}

export function bearingDeg(a: LatLon, b: LatLon): number {
  const { east, north } = offsetM(a, b);
  const deg = (Math.atan2(east, north) * 180) / Math.PI;
  return deg < 0 ? deg + 360 : deg;
}

/**
 * A route from one point to another. In a city with a street grid the driver goes along the avenue, then along the
 * street (an L), turning at whichever corner is on land; otherwise, or when neither corner is, it goes straight.
 */
export function planRoute(city: City, from: LatLon, to: LatLon): LatLon[] {
  if (city.gridBearingDeg === undefined) return [to];
  const theta = (city.gridBearingDeg * Math.PI) / 180;
  const avenue = { east: Math.sin(theta), north: Math.cos(theta) };
  const street = { east: Math.cos(theta), north: -Math.sin(theta) };
  const d = offsetM(from, to);
  const alongAvenue = d.east * avenue.east + d.north * avenue.north;
  const alongStreet = d.east * street.east + d.north * street.north;
  const corners = [
    moveBy(from, alongAvenue * avenue.east, alongAvenue * avenue.north),
    moveBy(from, alongStreet * street.east, alongStreet * street.north),
  ];
  const corner = corners.find((c) => insideCity(city, c));
  return corner ? [corner, to] : [to];
}

/** A driver's next speed: a small random walk around its own cruising speed, always within the legal bounds. */
export function nextSpeedKmh(rng: Rng, cruiseKmh: number, currentKmh: number): number {
  const target = currentKmh <= 0 ? cruiseKmh : currentKmh + (cruiseKmh - currentKmh) * 0.3 + rng.gaussian() * 3;
  return Math.min(MAX_SPEED_KMH, Math.max(MIN_SPEED_KMH, target));
}

/** Advances the driver by dtSeconds at speedKmh along its route (clamped to the bounds). */
export function advance(motion: Motion, dtSeconds: number, speedKmh: number): Step {
  if (motion.route.length === 0) return { motion: { ...motion, speedKmh: 0 }, arrived: false, metres: 0 };
  const speed = Math.min(MAX_SPEED_KMH, Math.max(MIN_SPEED_KMH, speedKmh));
  let budget = Math.max(0, dtSeconds) * (speed / 3.6);
  let here: LatLon = { lat: motion.lat, lon: motion.lon };
  let heading = motion.headingDeg;
  const route = [...motion.route];
  let metres = 0;
  while (route.length > 0) {
    const next = route[0]!;
    const left = distanceM(here, next);
    if (left > 0) heading = bearingDeg(here, next);
    if (left > budget) {
      const f = budget / left;
      here = { lat: here.lat + (next.lat - here.lat) * f, lon: here.lon + (next.lon - here.lon) * f };
      metres += budget;
      budget = 0;
      break;
    }
    here = next;
    budget -= left;
    metres += left;
    route.shift();
  }
  const arrived = route.length === 0;
  return {
    motion: { lat: here.lat, lon: here.lon, route, speedKmh: arrived ? 0 : speed, headingDeg: heading },
    arrived,
    metres,
  };
}
