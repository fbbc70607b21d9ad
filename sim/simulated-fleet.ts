/**
 * A simulated fleet of phones: every driver roams the city (or follows an order's legs when dispatched with
 * driveTo) and reports its position over MQTT at `rateHz`. A token bucket paces the whole fleet, and drivers report
 * round-robin, so each one reports every 1/rateHz seconds and the offered rate is exact. Usable as a library by
 * the end-to-end benchmark: startFleet(...) → { stats(), stop() }.
 */
import type { DevicePosition } from "../lib/position.ts";
import { cityByName, METRES_PER_DEG_LAT, randomPoint, type City, type LatLon } from "../lib/cities.ts";
import { advance, MAX_SPEED_KMH, MIN_SPEED_KMH, nextSpeedKmh, planRoute, type Motion } from "./movement.ts";
import { encodePositions, type PayloadForm, positionTopic } from "./payload.ts";
import { connectPublisher, type Publisher } from "./publisher.ts";
import { connectPhoneFleet, type PhoneFleet } from "./phone-fleet.ts";
import type { ReportingMode } from "../phone/reporting-policy.ts";
import { createRng } from "../lib/random.ts";
import { createTokenBucket } from "./token-bucket.ts";

export interface FleetDriver {
  id: string;
  lat: number;
  lon: number;
}

export interface FleetOptions {
  drivers: readonly FleetDriver[];
  /** Positions per driver per second. */
  rateHz: number;
  /** Positions per MQTT message (a phone that buffers); 1 sends each position on its own. */
  batch?: number;
  /** The payload's form (sim/payload.ts): JSON (the default), compact text, or the phone client's binary form. */
  form?: PayloadForm;
  /** Prepended to every topic, matching the bridge's MQTT_TOPIC_PREFIX (benchmarks use their own root). */
  topicPrefix?: string;
  mqttUrl: string;
  city?: City | string;
  seed?: number;
  driversPerConnection?: number;
  tickMs?: number;
  qos?: 0 | 1;
  /** Unacknowledged messages per connection before positions are dropped instead of queued. */
  maxInFlight?: number;
  /** Standard deviation of the simulated GPS error, metres. */
  gpsNoiseM?: number;
  onTick?: (stats: FleetStats) => void;
  /**
   * Each driver's own MQTT credentials (from its sign-in, sim/mqtt-sign-in.ts), in the order of `drivers`: every
   * driver then has a connection of its own, as a phone does. Without them the connections use the user in mqttUrl.
   */
  driverCredentials?: readonly { username: string; password: string; client_id: string }[];
  /** MQTT protocol of the simulated phones (default 5: refusals arrive as reason codes). */
  protocolVersion?: 4 | 5;
  /**
   * Run every driver's phone on the real phone client (phone/client.ts, sim/phone-fleet.ts): needs driverCredentials.
   * The phones then choose when to send from the mode the server pushes (batch and form no longer apply); `url`
   * overrides mqttUrl (e.g. the TLS listener) and `ca` is the PEM its certificate chains to.
   */
  phones?: { url?: string; ca?: string };
}

export interface FleetStats {
  drivers: number;
  connections: number;
  connected: number;
  elapsedS: number;
  /** Positions per second the fleet is configured to offer. */
  targetRate: number;
  /** Positions sampled and handed to MQTT (cumulative). */
  offered: number;
  /** Positions the broker acknowledged (cumulative). */
  sent: number;
  messages: number;
  inFlight: number;
  /** Positions waiting in phones' batches (offered, not yet published). */
  buffered: number;
  /** Positions not published because their connection was backed up. */
  dropped: number;
  /** Positions the schedule called for that a stalled process could not produce. */
  shed: number;
  errors: number;
  /** Messages the broker refused, by PUBACK reason code (e.g. "0x87"), and "oversized" ones never sent. */
  refused?: Record<string, number>;
  /** Drivers currently held by an order. */
  dispatched: number;
  /** With phones: how many are in each reporting mode the server pushed. */
  modes?: Record<ReportingMode, number>;
}

export interface Fleet {
  stats(): FleetStats;
  has(driverId: string): boolean;
  /** Sends a driver to a point and keeps it there; resolves once it has reported its position there. */
  driveTo(driverId: string, target: LatLon, signal?: AbortSignal): Promise<void>;
  /** Lets a dispatched driver roam again. */
  release(driverId: string): void;
  /** Publishes what phones still buffer, waits for acknowledgements and disconnects. */
  stop(): Promise<void>;
}

export class FleetStopped extends Error {
  constructor(message = "the fleet stopped") {
    super(message);
    this.name = "FleetStopped";
  }
}

interface SimDriver {
  id: string;
  /** Its place in the fleet (its phone with `phones`). */
  index: number;
  topic: string;
  connection: number;
  motion: Motion;
  cruiseKmh: number;
  lastMs: number;
  restUntilMs: number;
  battery: number;
  buffer: DevicePosition[];
  /** Buffered positions that make a message; the first batch is shorter at random, as if the phone had been on. */
  flushAt: number;
  /** On an order: stands at its target instead of roaming on. */
  held: boolean;
  mission?: { resolve: () => void; reject: (error: Error) => void };
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

export async function startFleet(options: FleetOptions): Promise<Fleet> {
  if (!(options.rateHz > 0)) throw new Error(`rateHz must be positive, got ${options.rateHz}`);
  const city = typeof options.city === "string" ? cityByName(options.city) : (options.city ?? cityByName("nyc"));
  const batch = Math.max(1, Math.floor(options.batch ?? 1));
  const form = options.form ?? "json";
  // A driver signed in with its own credentials is a phone: one connection each.
  const perConnection = options.driverCredentials ? 1 : Math.max(1, options.driversPerConnection ?? 500);
  const noiseM = options.gpsNoiseM ?? 3;
  const rng = createRng(options.seed ?? Math.floor(Math.random() * 2 ** 31), "fleet");
  const startedMs = Date.now();
  const startedPerf = performance.now();

  if (options.drivers.length === 0) throw new Error("a fleet needs at least one driver");
  const drivers: SimDriver[] = options.drivers.map((d, i) => ({
    id: d.id,
    index: i,
    topic: positionTopic(d.id, form, options.topicPrefix),
    connection: Math.floor(i / perConnection),
    motion: { lat: d.lat, lon: d.lon, route: [], speedKmh: 0, headingDeg: rng.between(0, 360) },
    cruiseKmh: rng.between(MIN_SPEED_KMH + 2, MAX_SPEED_KMH - 3),
    lastMs: startedMs,
    restUntilMs: 0,
    battery: rng.between(40, 100),
    buffer: [],
    flushAt: rng.int(1, batch),
    held: false,
  }));
  const byId = new Map(drivers.map((d) => [d.id, d]));

  const credentials = options.driverCredentials;
  if (credentials && credentials.length !== drivers.length) {
    throw new Error(`driverCredentials: ${credentials.length} for ${drivers.length} drivers`);
  }
  if (options.phones && !credentials) throw new Error("phones: each phone needs its driver's credentials (driverCredentials)");
  const phones: PhoneFleet | undefined =
    options.phones && credentials
      ? await connectPhoneFleet({
          url: options.phones.url ?? options.mqttUrl,
          ...(options.phones.ca === undefined ? {} : { ca: options.phones.ca }),
          credentials,
          driverIds: drivers.map((d) => d.id),
          ...(options.topicPrefix === undefined ? {} : { topicPrefix: options.topicPrefix }),
        })
      : undefined;
  const publisher: Publisher | undefined = phones
    ? undefined
    : await connectPublisher({
        mqttUrl: options.mqttUrl,
        connections: Math.ceil(drivers.length / perConnection),
        ...(credentials
          ? {
              credentials: (i: number) => ({ username: credentials[i]!.username, password: credentials[i]!.password, clientId: credentials[i]!.client_id }),
            }
          : {}),
        qos: options.qos ?? 1,
        ...(options.maxInFlight ? { maxInFlight: options.maxInFlight } : {}),
        ...(options.protocolVersion ? { protocolVersion: options.protocolVersion } : {}),
      });

  const targetRate = drivers.length * options.rateHz;
  const bucket = createTokenBucket(targetRate, Math.max(targetRate, 1), startedPerf);
  const counts = { offered: 0, dropped: 0, buffered: 0 };
  let cursor = 0;
  let held = 0;
  const hold = (d: SimDriver, value: boolean) => {
    if (d.held !== value) held += value ? 1 : -1;
    d.held = value;
  };

  function flush(d: SimDriver): void {
    if (phones) return phones.flush(d.index);
    if (d.buffer.length === 0 || !publisher) return;
    counts.buffered -= d.buffer.length;
    if (!publisher.publish(d.connection, d.topic, encodePositions(d.buffer, form), d.buffer.length)) {
      counts.dropped += d.buffer.length;
    }
    d.buffer = [];
    d.flushAt = batch;
  }

  function sample(d: SimDriver, atMs: number): void {
    // Two reports of one driver never share a timestamp (the pipeline would drop the second as a duplicate).
    const nowMs = Math.max(atMs, d.lastMs + 1);
    const dt = (nowMs - d.lastMs) / 1000;
    d.lastMs = nowMs;
    if (d.motion.route.length === 0 && !d.held && nowMs >= d.restUntilMs) {
      d.motion = { ...d.motion, route: planRoute(city, d.motion, randomPoint(city, rng)) };
    }
    if (d.motion.route.length > 0) {
      const step = advance(d.motion, dt, nextSpeedKmh(rng, d.cruiseKmh, d.motion.speedKmh));
      d.motion = step.motion;
      // A short stop at a roaming destination (a break, a pick-up elsewhere) before the next trip.
      if (step.arrived && !d.held) d.restUntilMs = nowMs + rng.between(0, 30_000);
    }
    d.battery = Math.max(5, d.battery - dt / 240);
    const mPerDegLon = METRES_PER_DEG_LAT * Math.cos((d.motion.lat * Math.PI) / 180);
    const fix = {
      lat: round(d.motion.lat + (rng.gaussian() * noiseM) / METRES_PER_DEG_LAT, 6),
      lon: round(d.motion.lon + (rng.gaussian() * noiseM) / mPerDegLon, 6),
      tst: nowMs / 1000,
      acc: Math.round(noiseM + rng.between(0, 3 * noiseM)),
      vel: round(d.motion.speedKmh, 1),
      cog: Math.round(d.motion.headingDeg) % 360,
      batt: Math.round(d.battery),
    };
    counts.offered++;
    if (phones) {
      phones.addFix(d.index, fix);
    } else {
      d.buffer.push(fix);
      counts.buffered++;
      if (d.buffer.length >= d.flushAt) flush(d);
    }
    // The order flow learns of the arrival only after the position that shows it has been handed over.
    if (d.held && d.mission && d.motion.route.length === 0) {
      const { resolve } = d.mission;
      d.mission = undefined;
      flush(d);
      resolve();
    }
  }

  function stats(): FleetStats {
    const phoneStats = phones?.stats();
    const p = phoneStats ?? publisher!.stats();
    return {
      drivers: drivers.length,
      connections: p.connections,
      connected: p.connected,
      elapsedS: (Date.now() - startedMs) / 1000,
      targetRate,
      offered: counts.offered,
      sent: p.positions,
      messages: p.messages,
      inFlight: p.inFlight,
      buffered: phoneStats?.buffered ?? counts.buffered,
      dropped: counts.dropped,
      shed: bucket.shed(),
      errors: p.errors,
      refused: p.refused,
      dispatched: held,
      ...(phoneStats ? { modes: phoneStats.modes } : {}),
    };
  }

  const tick = () => {
    const due = bucket.take(performance.now());
    for (let i = 0; i < due; i++) {
      // Stamped when the schedule called for it, so each phone's fixes are 1/rateHz apart whatever the tick jitter.
      sample(drivers[cursor]!, startedMs + (bucket.dueMs(i) - startedPerf));
      cursor = cursor + 1 === drivers.length ? 0 : cursor + 1;
    }
    if (options.onTick) options.onTick(stats());
  };
  const timer = setInterval(tick, options.tickMs ?? 50);
  let stopped = false;

  return {
    stats,
    has: (driverId) => byId.has(driverId),
    driveTo(driverId, target, signal) {
      const d = byId.get(driverId);
      if (!d) return Promise.reject(new Error(`driver ${driverId} is not in this fleet`));
      if (stopped) return Promise.reject(new FleetStopped());
      d.mission?.reject(new Error(`driver ${driverId} was sent elsewhere`));
      hold(d, true);
      d.motion = { ...d.motion, route: planRoute(city, d.motion, target) };
      return new Promise<void>((resolve, reject) => {
        const mission = { resolve, reject };
        d.mission = mission;
        signal?.addEventListener("abort", () => {
          if (d.mission !== mission) return;
          d.mission = undefined;
          reject(signal.reason instanceof Error ? signal.reason : new FleetStopped("dispatch aborted"));
        }, { once: true });
      });
    },
    release(driverId) {
      const d = byId.get(driverId);
      if (!d) return;
      d.mission?.reject(new Error(`driver ${driverId} was released`));
      d.mission = undefined;
      hold(d, false);
      d.restUntilMs = 0;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      for (const d of drivers) {
        flush(d);
        d.mission?.reject(new FleetStopped());
        d.mission = undefined;
      }
      await (phones ?? publisher)!.close();
    },
  };
}
