/**
 * The recorded one-hour route bench:device replays: one driver in Manhattan, a fix every 4 s (900 fixes), made
 * deterministically from lib/cities.ts and sim/movement.ts and committed as route-nyc-1h.json, so every run and every
 * mode replays the same fixes. `bun bench/device/route.ts` rewrites the file (same seed, same file).
 *
 *   0-20 min   available: drives 8 min to Midtown, then waits there (GPS jitter, standing)
 *   20-40 min  watched: assigned (to the restaurant), at_restaurant, delivering (to the customer), arriving
 *   40-60 min  available: drives back toward the East Village hotspot, then waits
 */
import { cityByName, pointNear, type LatLon } from "../../lib/cities.ts";
import { createRng } from "../../lib/random.ts";
import { advance, nextSpeedKmh, planRoute, type Motion } from "../../sim/movement.ts";

export const FIX_INTERVAL_S = 4;
export const ROUTE_SECONDS = 3600;
export const WATCHED_STATES = ["assigned", "at_restaurant", "delivering", "arriving"] as const;
export type RouteState = "available" | (typeof WATCHED_STATES)[number];

export interface RouteFix {
  /** Seconds since the route's start. */
  t: number;
  lat: number;
  lon: number;
  acc: number;
  vel: number;
  cog: number;
  batt: number;
  state: RouteState;
}

export const ROUTE_FILE = new URL("./route-nyc-1h.json", import.meta.url).pathname;

export const isWatched = (state: RouteState) => state !== "available";

/** The route, computed (the committed file is this, written once). */
export function makeRoute(seed = 11): RouteFix[] {
  const city = cityByName("nyc");
  const rng = createRng(seed, "bench-device-route");
  const hotspot = (name: string) => city.hotspots.find((h) => h.name === name)!;
  const home: LatLon = { lat: 40.7831, lon: -73.9712 };
  const midtown = pointNear(city, rng, hotspot("Midtown"), 200);
  const restaurant = pointNear(city, rng, hotspot("Midtown"), 500);
  const customer = pointNear(city, rng, hotspot("West Village"), 400);
  const eastVillage = pointNear(city, rng, hotspot("East Village"), 200);
  // [until (s), state, destination or undefined = stand]
  const segments: [number, RouteState, LatLon | undefined][] = [
    [480, "available", midtown],
    [1200, "available", undefined],
    [1560, "assigned", restaurant],
    [1800, "at_restaurant", undefined],
    [2340, "delivering", customer],
    [2400, "arriving", undefined],
    [2880, "available", eastVillage],
    [3600, "available", undefined],
  ];
  let motion: Motion = { ...home, route: [], speedKmh: 0, headingDeg: 0 };
  const cruise = 32;
  let batt = 92;
  const fixes: RouteFix[] = [];
  let segment = -1;
  for (let t = 0; t < ROUTE_SECONDS; t += FIX_INTERVAL_S) {
    const index = segments.findIndex(([until]) => t < until);
    if (index !== segment) {
      segment = index;
      const destination = segments[index]![2];
      motion = { ...motion, route: destination ? planRoute(city, motion, destination) : [] };
    }
    if (t > 0) motion = advance(motion, FIX_INTERVAL_S, nextSpeedKmh(rng, cruise, motion.speedKmh)).motion;
    const moving = motion.route.length > 0;
    // A standing phone's GPS wanders a few metres.
    const jitter = moving ? 0 : 3;
    batt -= 0.004;
    fixes.push({
      t,
      lat: Number((motion.lat + (rng.gaussian() * jitter) / 111_320).toFixed(6)),
      lon: Number((motion.lon + (rng.gaussian() * jitter) / 84_300).toFixed(6)),
      acc: Math.round(moving ? rng.between(4, 9) : rng.between(6, 15)),
      vel: moving ? Math.round(motion.speedKmh) : 0,
      cog: Math.round(motion.headingDeg),
      batt: Math.round(batt),
      state: segments[index]![1],
    });
  }
  return fixes;
}

export async function loadRoute(): Promise<RouteFix[]> {
  return (await Bun.file(ROUTE_FILE).json()) as RouteFix[];
}

if (import.meta.main) {
  const fixes = makeRoute();
  await Bun.write(ROUTE_FILE, `[\n${fixes.map((f) => JSON.stringify(f)).join(",\n")}\n]\n`);
  console.log(`${fixes.length} fixes written to ${ROUTE_FILE}`);
}
