/**
 * The cities data and fleets live in: a bounding box, a land outline (so nobody orders food into the Hudson), the
 * restaurant hotspots, and the bearing of the street grid that simulated drivers follow.
 */
import { createRng, hashString, type Rng } from "./random.ts";

export interface LatLon {
  lat: number;
  lon: number;
}

export interface City {
  name: string;
  bbox: { south: number; west: number; north: number; east: number };
  /** Land outline as [lon, lat] vertices; every generated point lies inside it. */
  outline: readonly (readonly [number, number])[];
  /** Where restaurants cluster, each with a spread (1 sigma) in metres. */
  hotspots: readonly { name: string; lat: number; lon: number; sigmaM: number }[];
  /** Compass bearing of the avenues; drivers move along the grid when the city has one. */
  gridBearingDeg?: number;
}

const MANHATTAN: City = {
  name: "nyc",
  bbox: { south: 40.7, west: -74.02, north: 40.88, east: -73.907 },
  // Manhattan island, roughly, clockwise from the Battery; about 60 m of accuracy is plenty for a simulation.
  outline: [
    [-74.0165, 40.7005], [-74.009, 40.702], [-73.999, 40.708], [-73.976, 40.711], [-73.9725, 40.727],
    [-73.971, 40.743], [-73.96, 40.756], [-73.943, 40.775], [-73.929, 40.795], [-73.934, 40.809],
    [-73.933, 40.835], [-73.91, 40.873], [-73.928, 40.878], [-73.947, 40.85], [-73.962, 40.818],
    [-73.989, 40.78], [-74.003, 40.76], [-74.011, 40.74], [-74.0135, 40.72], [-74.019, 40.706],
  ],
  hotspots: [
    { name: "Midtown", lat: 40.7549, lon: -73.984, sigmaM: 700 },
    { name: "East Village", lat: 40.7265, lon: -73.9815, sigmaM: 450 },
    { name: "West Village", lat: 40.7336, lon: -74.0027, sigmaM: 400 },
    { name: "Chinatown", lat: 40.7158, lon: -73.997, sigmaM: 300 },
    { name: "Financial District", lat: 40.7075, lon: -74.0093, sigmaM: 350 },
    { name: "Upper West Side", lat: 40.787, lon: -73.9754, sigmaM: 600 },
    { name: "Upper East Side", lat: 40.7736, lon: -73.9566, sigmaM: 600 },
    { name: "Harlem", lat: 40.8116, lon: -73.9465, sigmaM: 600 },
  ],
  gridBearingDeg: 29,
};

const SAN_FRANCISCO: City = {
  name: "sf",
  bbox: { south: 37.708, west: -122.514, north: 37.81, east: -122.357 },
  outline: [
    [-122.514, 37.708], [-122.393, 37.708], [-122.376, 37.738], [-122.385, 37.76], [-122.387, 37.79],
    [-122.403, 37.807], [-122.43, 37.806], [-122.477, 37.81], [-122.506, 37.785], [-122.512, 37.76],
  ],
  hotspots: [
    { name: "Mission", lat: 37.7599, lon: -122.4148, sigmaM: 600 },
    { name: "SoMa", lat: 37.7785, lon: -122.4056, sigmaM: 500 },
    { name: "Chinatown", lat: 37.7941, lon: -122.4078, sigmaM: 300 },
    { name: "Richmond", lat: 37.78, lon: -122.4645, sigmaM: 800 },
    { name: "Sunset", lat: 37.7535, lon: -122.4945, sigmaM: 800 },
  ],
};

export const CITIES: Readonly<Record<string, City>> = { nyc: MANHATTAN, sf: SAN_FRANCISCO };

export function cityByName(name: string): City {
  const city = CITIES[name.toLowerCase()];
  if (!city) throw new Error(`unknown city "${name}" (known: ${Object.keys(CITIES).join(", ")})`);
  return city;
}

export function insideBbox(city: City, p: LatLon): boolean {
  const b = city.bbox;
  return p.lat >= b.south && p.lat <= b.north && p.lon >= b.west && p.lon <= b.east;
}

/** Inside the bounding box and on land (ray casting over the outline). */
export function insideCity(city: City, p: LatLon): boolean {
  if (!insideBbox(city, p)) return false;
  let inside = false;
  const ring = city.outline;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i]!;
    const [xj, yj] = ring[j]!;
    if (yi > p.lat !== yj > p.lat && p.lon < ((xj - xi) * (p.lat - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

export function randomPoint(city: City, rng: Rng): LatLon {
  const b = city.bbox;
  for (;;) {
    const p = { lat: rng.between(b.south, b.north), lon: rng.between(b.west, b.east) };
    if (insideCity(city, p)) return p;
  }
}

export const METRES_PER_DEG_LAT = 111_320;

/** A point scattered around a centre (normal, sigma in metres), kept on land; the centre itself if that fails. */
export function pointNear(city: City, rng: Rng, centre: LatLon, sigmaM: number): LatLon {
  const mPerDegLon = METRES_PER_DEG_LAT * Math.cos((centre.lat * Math.PI) / 180);
  for (let attempt = 0; attempt < 20; attempt++) {
    const p = {
      lat: centre.lat + (rng.gaussian() * sigmaM) / METRES_PER_DEG_LAT,
      lon: centre.lon + (rng.gaussian() * sigmaM) / mPerDegLon,
    };
    if (insideCity(city, p)) return p;
  }
  return { lat: centre.lat, lon: centre.lon };
}

/**
 * Where a driver without a known position starts: derived from its id, so the generator's export, an export from
 * the database and the simulator all agree without storing it.
 */
export function homePoint(city: City, driverId: string): LatLon {
  return randomPoint(city, createRng(hashString(driverId), "home"));
}
