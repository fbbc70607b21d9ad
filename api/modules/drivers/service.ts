import type { Sql } from "../../../lib/db.ts";
import { AppError } from "../../../lib/errors.ts";
import { cellToHex } from "../../../lib/h3.ts";
import {
  type ContextLimits,
  checkInContext,
  DEFAULT_LIMITS,
  MAX_FUTURE_SKEW_AT_RECEIPT_MS,
  type DevicePosition,
  decodePositionList,
  type PositionRecord,
} from "../../../lib/position.ts";
import type { KafkaLink } from "../../kafka/link.ts";
import { isoOrNull } from "../../model.ts";
import type { Driver, LocationAccepted } from "./model.ts";

interface DriverRow {
  id: string;
  name: string;
  vehicle: string;
  status: Driver["state"] | null;
  status_since: Date | null;
  current_order_id: string | null;
  lat: number | null;
  lon: number | null;
  h3: bigint | null;
  position_at: Date | null;
  received_at: Date | null;
  age_seconds: number | null;
  speed_kmh: number | null;
  heading_deg: number | null;
  accuracy_m: number | null;
  battery_pct: number | null;
}

function toDriver(row: DriverRow): Driver {
  const { lat, lon, h3, position_at } = row;
  return {
    id: row.id,
    name: row.name,
    vehicle: row.vehicle,
    // A driver without a state row has never come online.
    state: row.status ?? "offline",
    state_since: isoOrNull(row.status_since),
    current_order_id: row.current_order_id,
    position:
      lat !== null && lon !== null && h3 !== null && position_at !== null
        ? {
            lat,
            lon,
            h3: cellToHex(h3),
            recorded_at: position_at.toISOString(),
            received_at: isoOrNull(row.received_at),
            age_seconds: row.age_seconds ?? 0,
            speed_kmh: row.speed_kmh,
            heading_deg: row.heading_deg,
            accuracy_m: row.accuracy_m,
            battery_pct: row.battery_pct,
          }
        : null,
  };
}

export interface DriversDeps {
  sql: Sql;
  kafka: KafkaLink;
  positionsTopic: string;
  /** A send that Kafka neither confirms nor refuses by then is answered 503 (the client retries). */
  kafkaSendTimeoutMs?: number;
}

/** Driver ids known to exist: PATCH is a hot fallback path, and drivers are added, not removed. Bounded, FIFO. */
export function knownDriverCache(maxEntries = 100_000) {
  const known = new Set<string>();
  return {
    has: (id: string) => known.has(id),
    add(id: string) {
      if (known.size >= maxEntries) known.delete(known.values().next().value as string);
      known.add(id);
    },
    get size() {
      return known.size;
    },
  };
}

/**
 * The checks that need only a clock (future, too old, accuracy), so a phone hears at once instead of its fixes
 * going to the DLQ. Speed needs the previous accepted fix and stays the database's (apply_position_batch). Rejects keep the body's indexes.
 */
function checkClock(
  decoded: { positions: DevicePosition[]; rejects: LocationAccepted["rejected"] },
  limits: ContextLimits,
) {
  const rejected = new Set(decoded.rejects.map((r) => r.index));
  const refused: LocationAccepted["rejected"] = [];
  const positions: DevicePosition[] = [];
  let index = 0;
  for (const position of decoded.positions) {
    while (rejected.has(index)) index++;
    const reason = checkInContext(position, undefined, limits);
    if (reason) refused.push({ index, reason });
    else positions.push(position);
    index++;
  }
  const rejects = [...decoded.rejects, ...refused].sort((a, b) => a.index - b.index);
  return { positions, rejects, refused };
}

async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function driversService(deps: DriversDeps) {
  const sendTimeoutMs = deps.kafkaSendTimeoutMs ?? 10_000;
  const known = knownDriverCache();

  /** One primary-key lookup per driver the process has not seen yet. */
  const mustExist = async (driverId: string) => {
    if (known.has(driverId)) return;
    const [row] = await deps.sql<{ id: string }[]>`select id from drivers where id = ${driverId}`;
    if (!row) throw new AppError("NOT_FOUND", `driver ${driverId} does not exist`);
    known.add(driverId);
  };

  return {
    async find(driverId: string): Promise<Driver | undefined> {
      const [row] = await deps.sql<DriverRow[]>`
        select d.id, d.name, d.vehicle, ds.status, ds.status_since, ds.current_order_id,
               ds.lat, ds.lon, ds.h3, ds.position_at, ds.received_at,
               extract(epoch from now() - ds.position_at)::float8 as age_seconds,
               ds.speed_kmh, ds.heading_deg, ds.accuracy_m, ds.battery_pct
        from drivers d
        left join driver_state ds on ds.driver_id = d.id
        where d.id = ${driverId}`;
      return row && toDriver(row);
    },

    /**
     * The HTTP fallback of MQTT: the same checks as the bridge, the same Kafka record, so the worker cannot tell
     * them apart. Answers once Kafka has the record (acks=all), like the bridge's QoS 1 acknowledgement.
     */
    async reportLocation(driverId: string, rawBody: string): Promise<LocationAccepted> {
      let body: unknown;
      try {
        body = JSON.parse(rawBody);
      } catch {
        throw new AppError("INVALID_POSITION", "malformed_json: the body is not JSON");
      }
      const decoded = decodePositionList(driverId, body);
      if (!decoded.ok) throw new AppError("INVALID_POSITION", `${decoded.reason}: ${decoded.detail}`);
      // The database's limits at receipt (received_ms is now), so HTTP and MQTT refuse the same fixes.
      const nowMs = Date.now();
      const limits = { ...DEFAULT_LIMITS, maxFutureSkewMs: MAX_FUTURE_SKEW_AT_RECEIPT_MS, nowMs };
      const { positions, rejects, refused } = checkClock(decoded, limits);
      if (positions.length === 0) {
        const first = refused[0]!; // decoding left at least one, so the clock refused it
        throw new AppError("POSITION_REJECTED", `${first.reason}: no position is acceptable (index ${first.index})`);
      }
      await mustExist(decoded.driverId);

      const record: PositionRecord = { v: 1, driver_id: decoded.driverId, received_ms: nowMs, positions };
      try {
        await withTimeout(
          deps.kafka.send(deps.positionsTopic, [{ key: decoded.driverId, value: JSON.stringify(record) }]),
          sendTimeoutMs,
          "the Kafka send",
        );
      } catch (error) {
        throw new AppError("UPSTREAM_UNAVAILABLE", "Kafka did not take the positions; retry", { cause: error });
      }
      return { accepted: positions.length, rejected: rejects };
    },
  };
}
