/**
 * Kafka messages → staging rows: decodes each record, runs the worker's context checks (clock, accuracy, implied
 * speed against the driver's last accepted fix) and computes the H3 cell. Pure apart from the fix cache it reads.
 */
import type { RejectReason } from "../lib/errors.ts";
import { cellOf } from "../lib/h3.ts";
import type { ConsumedMessage } from "../lib/kafka.ts";
import {
  checkDevicePosition,
  checkInContext,
  DEFAULT_LIMITS,
  isUuid,
  type LastFix,
  type PositionRecord,
} from "../lib/position.ts";

export interface StagedPosition {
  seq: number;
  driverId: string;
  recordedMs: number;
  lat: number;
  lon: number;
  h3: bigint;
  speedKmh: number | undefined;
  headingDeg: number | undefined;
  accuracyM: number | undefined;
  batteryPct: number | undefined;
  receivedMs: number;
  /** Which Kafka message it came from, to send its bytes to the DLQ if SQL rejects it. */
  message: number;
}

export interface Reject {
  message: number;
  reason: RejectReason;
  detail: string;
}

export interface DecodedBatch {
  rows: StagedPosition[];
  rejects: Reject[];
}

/** What the decoder needs of the fix cache: the last accepted fix, and a count of speed rejections in a row. */
export interface FixMemory {
  get(driverId: string): LastFix | undefined;
  /** Counts one more impossible jump for the driver; returns how many in a row. */
  strike(driverId: string): number;
}

/** After this many "impossible" jumps in a row, the old anchor is the outlier: accept and re-anchor. */
export const STRIKES_TO_REANCHOR = 3;

export function decodeBatch(
  messages: ConsumedMessage[],
  fixes: FixMemory,
  options: { nowMs: number; h3Resolution: number },
): DecodedBatch {
  const rows: StagedPosition[] = [];
  const rejects: Reject[] = [];
  // Positions accepted earlier in this same batch count as the previous fix too.
  const batchFix = new Map<string, LastFix>();
  const limits = { ...DEFAULT_LIMITS, nowMs: options.nowMs };

  messages.forEach((m, message) => {
    let record: PositionRecord;
    try {
      record = JSON.parse(m.value?.toString() ?? "");
    } catch {
      rejects.push({ message, reason: "malformed_json", detail: "Kafka value is not JSON" });
      return;
    }
    if (
      record?.v !== 1 ||
      !Array.isArray(record.positions) ||
      !Number.isFinite(record.received_ms) ||
      Math.abs(record.received_ms - options.nowMs) > 366 * 86_400_000
    ) {
      rejects.push({ message, reason: "invalid_shape", detail: "not a v1 position record" });
      return;
    }
    if (!isUuid(record.driver_id)) {
      rejects.push({ message, reason: "invalid_driver_id", detail: String(record.driver_id) });
      return;
    }
    const driverId = record.driver_id.toLowerCase();
    const ordered = [...record.positions].sort((a, b) => (a?.tst ?? 0) - (b?.tst ?? 0));
    for (const p of ordered) {
      const shape = checkDevicePosition(p);
      const previous = batchFix.get(driverId) ?? fixes.get(driverId);
      let reason = shape ?? checkInContext(p, previous, limits);
      // One bad fix accepted as the anchor would otherwise lock a driver out for as long as the bogus distance
      // takes at the speed limit.
      if (reason === "impossible_speed" && fixes.strike(driverId) >= STRIKES_TO_REANCHOR) reason = undefined;
      if (reason) {
        rejects.push({ message, reason, detail: `tst ${p?.tst}` });
        continue;
      }
      const recordedMs = Math.round(p.tst * 1000);
      rows.push({
        seq: rows.length,
        driverId,
        recordedMs,
        lat: p.lat,
        lon: p.lon,
        h3: cellOf(p.lat, p.lon, options.h3Resolution),
        speedKmh: p.vel,
        headingDeg: p.cog,
        accuracyM: p.acc,
        batteryPct: p.batt === undefined ? undefined : Math.max(0, Math.min(100, Math.round(p.batt))),
        receivedMs: record.received_ms,
        message,
      });
      if (!previous || recordedMs > previous.tMs) batchFix.set(driverId, { lat: p.lat, lon: p.lon, tMs: recordedMs });
    }
  });
  return { rows, rejects };
}
