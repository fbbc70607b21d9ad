/**
 * Kafka messages → staging rows: decodes each record, runs the worker's clock and accuracy checks and computes the H3
 * cell. Pure. Speed (fix to fix from the driver's last accepted position) and the fix's time against when the bridge
 * received it are judged in SQL (migration 0008), which sees every accepted fix; the worker's own clock check
 * stays as a guard against a producer whose received_ms is itself ahead (30 s against this process's clock).
 */
import type { RejectReason } from "../lib/errors.ts";
import { cellOf } from "../lib/h3.ts";
import type { ConsumedMessage } from "../lib/kafka.ts";
import { checkDevicePosition, checkInContext, DEFAULT_LIMITS, isUuid, type PositionRecord } from "../lib/position.ts";

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
  /** The position's index in its message's list; absent when the whole message is refused. */
  index?: number;
  reason: RejectReason;
  detail: string;
}

export interface DecodedBatch {
  rows: StagedPosition[];
  rejects: Reject[];
  /** positionIndex[seq]: the staged row's index in its message's list, to name it in a dead letter. */
  positionIndex: number[];
}

export function decodeBatch(messages: ConsumedMessage[], options: { nowMs: number; h3Resolution: number }): DecodedBatch {
  const rows: StagedPosition[] = [];
  const rejects: Reject[] = [];
  const positionIndex: number[] = [];
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
    const ordered = record.positions
      .map((p, index) => ({ p, index }))
      .sort((a, b) => (a.p?.tst ?? 0) - (b.p?.tst ?? 0));
    for (const { p, index } of ordered) {
      const reason = checkDevicePosition(p) ?? checkInContext(p, undefined, limits);
      if (reason) {
        rejects.push({ message, index, reason, detail: `tst ${p?.tst}` });
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
      positionIndex.push(index);
    }
  });
  return { rows, rejects, positionIndex };
}
