/**
 * Positions on the wire: what phones publish over MQTT (and PATCH over HTTP), what the bridge puts on Kafka, and
 * the checks each side makes. The bridge checks shape and ranges (cheap, no state); the worker adds the checks that
 * need a clock or the driver's previous position.
 */
import type { RejectReason } from "./errors.ts";
import { decodeBinaryPositions } from "./position-binary.ts";

/** One position as a phone reports it (OwnTracks-like): degrees, epoch seconds, metres, km/h, degrees, percent. */
export interface DevicePosition {
  lat: number;
  lon: number;
  tst: number;
  acc?: number;
  vel?: number;
  cog?: number;
  batt?: number;
}

/** The Kafka record value on `driver-pos`: one phone message, normalised, stamped with the bridge's receive time. */
export interface PositionRecord {
  v: 1;
  driver_id: string;
  /** When the bridge (or the HTTP API) received it, epoch milliseconds. */
  received_ms: number;
  positions: DevicePosition[];
}

export type Decoded =
  | { ok: true; driverId: string; positions: DevicePosition[]; rejects: { index: number; reason: RejectReason }[] }
  | { ok: false; reason: RejectReason; detail: string };

export const MAX_POSITIONS_PER_MESSAGE = 500;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (value: unknown): value is string => typeof value === "string" && UUID.test(value);

/**
 * MQTT topics: `drivers/{id}/location` (JSON v1), `drivers/{id}/l` (compact text), `drivers/{id}/b` (binary,
 * lib/position-binary.ts), `sensor/data` (legacy).
 */
export function driverIdFromTopic(topic: string): string | undefined {
  const parts = topic.split("/");
  if (parts.length === 3 && parts[0] === "drivers" && (parts[2] === "location" || parts[2] === "l" || parts[2] === "b")) {
    return parts[1];
  }
  return undefined;
}

/** Absent, or a finite number within [min, max] (the database stores these as `real`: no 1e300, no 1e-50). */
const optionalInRange = (value: unknown, min: number, max: number): boolean =>
  value === undefined ||
  value === null ||
  (typeof value === "number" && Number.isFinite(value) && value >= min && value <= max && (value === 0 || Math.abs(value) >= 1e-6));

/** Range and type checks of one position; undefined when it is fine. */
export function checkDevicePosition(raw: unknown): RejectReason | undefined {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return "invalid_shape";
  const p = raw as Record<string, unknown>;
  if (typeof p.lat !== "number" || typeof p.lon !== "number") return "invalid_coordinates";
  if (!Number.isFinite(p.lat) || !Number.isFinite(p.lon)) return "invalid_coordinates";
  if (p.lat < -90 || p.lat > 90 || p.lon < -180 || p.lon > 180) return "invalid_coordinates";
  if (typeof p.tst !== "number" || !Number.isFinite(p.tst) || p.tst <= 0) return "invalid_timestamp";
  if (
    !optionalInRange(p.acc, 0, 100_000) ||
    !optionalInRange(p.vel, 0, 1_000) ||
    !optionalInRange(p.cog, -360, 360) ||
    !optionalInRange(p.batt, 0, 100)
  ) {
    return "invalid_shape";
  }
  // Seconds since 1970, not milliseconds: a year-33000 timestamp is a unit mistake, not a position.
  if (p.tst > 1e11) return "invalid_timestamp";
  return undefined;
}

function normalise(p: Record<string, unknown>): DevicePosition {
  const out: DevicePosition = { lat: p.lat as number, lon: p.lon as number, tst: p.tst as number };
  if (typeof p.acc === "number") out.acc = p.acc;
  if (typeof p.vel === "number") out.vel = p.vel;
  if (typeof p.cog === "number") out.cog = p.cog;
  if (typeof p.batt === "number") out.batt = p.batt;
  return out;
}

/** Checks a list of positions from one driver; keeps the good ones and names the bad ones by index. */
export function decodePositionList(driverId: string, body: unknown): Decoded {
  if (!isUuid(driverId)) return { ok: false, reason: "invalid_driver_id", detail: `"${driverId}" is not a UUID` };
  const list = Array.isArray(body) ? body : [body];
  if (list.length === 0) return { ok: false, reason: "invalid_shape", detail: "empty batch" };
  if (list.length > MAX_POSITIONS_PER_MESSAGE) {
    return { ok: false, reason: "batch_too_large", detail: `${list.length} positions > ${MAX_POSITIONS_PER_MESSAGE}` };
  }
  const positions: DevicePosition[] = [];
  const rejects: { index: number; reason: RejectReason }[] = [];
  list.forEach((raw, index) => {
    const reason = checkDevicePosition(raw);
    if (reason) rejects.push({ index, reason });
    else positions.push(normalise(raw as Record<string, unknown>));
  });
  if (positions.length === 0) {
    const first = rejects[0]!;
    return { ok: false, reason: first.reason, detail: `no valid position (first problem at index ${first.index})` };
  }
  return { ok: true, driverId: driverId.toLowerCase(), positions, rejects };
}

/**
 * Compact form for phones, topic `drivers/{id}/l`: one position per line, `tst,lat,lon[,acc,vel,cog,batt]`
 * (empty fields allowed), e.g. `1764083000.5,40.7411,-73.9897,5,32,180,77`. About half the bytes of JSON.
 */
export function parseCompact(text: string): unknown[] {
  const out: unknown[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const f = line.split(",").map((x) => (x.trim() === "" ? undefined : Number(x)));
    out.push({ tst: f[0], lat: f[1], lon: f[2], acc: f[3], vel: f[4], cog: f[5], batt: f[6] });
  }
  return out;
}

/** Decodes one MQTT message of any accepted form. Never throws. */
export function decodeMqttMessage(topic: string, payload: Uint8Array): Decoded {
  if (topic.endsWith("/b")) {
    const driverId = driverIdFromTopic(topic);
    if (driverId === undefined) return { ok: false, reason: "invalid_shape", detail: `unexpected topic ${topic}` };
    const binary = decodeBinaryPositions(payload, MAX_POSITIONS_PER_MESSAGE);
    if (!binary.ok) return { ok: false, reason: "invalid_shape", detail: binary.detail };
    return decodePositionList(driverId, binary.fixes);
  }
  const text = new TextDecoder().decode(payload);
  const topicDriver = driverIdFromTopic(topic);
  if (topicDriver !== undefined && topic.endsWith("/l")) {
    return decodePositionList(topicDriver, parseCompact(text));
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return { ok: false, reason: "malformed_json", detail: "payload is not JSON" };
  }
  if (topicDriver !== undefined) return decodePositionList(topicDriver, body);
  if (topic === "sensor/data") return decodeLegacy(body);
  return { ok: false, reason: "invalid_shape", detail: `unexpected topic ${topic}` };
}

/** The original producer's form: `{"driver_id", "timestamp", "lat", "lon"}`. */
function decodeLegacy(body: unknown): Decoded {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, reason: "invalid_shape", detail: "legacy payload must be an object" };
  }
  const b = body as Record<string, unknown>;
  return decodePositionList(String(b.driver_id), { lat: b.lat, lon: b.lon, tst: b.timestamp });
}

export interface ContextLimits {
  nowMs: number;
  maxFutureSkewMs: number;
  maxAgeMs: number;
  maxAccuracyM: number;
  maxSpeedMps: number;
}

export const DEFAULT_LIMITS: Omit<ContextLimits, "nowMs"> = {
  maxFutureSkewMs: 30_000,
  maxAgeMs: 24 * 3600_000,
  maxAccuracyM: 1_000,
  // 252 km/h: nothing a delivery vehicle does. The rule that counts is tracking_settings.max_speed_m_per_s, which
  // apply_position_batch judges fix to fix from the last accepted position (migration 0008); this copy is for callers
  // that pass checkInContext a previous fix, and a test keeps it equal to the database's default.
  maxSpeedMps: 70,
};

/**
 * How far a fix's time may be ahead of the moment the bridge (or the API) received it: the database's rule
 * (tracking_settings.max_future_skew_ms, migration 0008, kept equal by a test). The API receives, so it judges with
 * this at once; the worker's 30 s above is only a guard against a producer's wrong `received_ms`.
 */
export const MAX_FUTURE_SKEW_AT_RECEIPT_MS = 2_000;

export interface LastFix {
  lat: number;
  lon: number;
  tMs: number;
}

const EARTH_RADIUS_M = 6_371_008.8;
export function haversineM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

/**
 * The checks that need a clock (and, given one, a previous fix). The worker and the API call it without a previous
 * fix: speed is judged in SQL against the driver's last accepted position, which only the database knows.
 */
export function checkInContext(p: DevicePosition, previous: LastFix | undefined, limits: ContextLimits) {
  const tMs = p.tst * 1000;
  if (tMs > limits.nowMs + limits.maxFutureSkewMs) return "future_timestamp" as const;
  if (tMs < limits.nowMs - limits.maxAgeMs) return "too_old" as const;
  if (p.acc !== undefined && p.acc > limits.maxAccuracyM) return "low_accuracy" as const;
  if (previous && tMs > previous.tMs) {
    const metres = haversineM(previous.lat, previous.lon, p.lat, p.lon);
    // Short hops are GPS noise territory; only a real jump over a real distance counts.
    if (metres > 500 && metres / ((tMs - previous.tMs) / 1000) > limits.maxSpeedMps) return "impossible_speed" as const;
  }
  return undefined;
}
