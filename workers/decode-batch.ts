/**
 * Kafka messages → staging rows: decodes each record, runs the worker's clock and accuracy checks and computes the H3
 * cell. Pure. Speed (fix to fix from the driver's last accepted position) and the fix's time against when the bridge
 * received it are judged in SQL (migration 0008), which sees every accepted fix; the worker's own clock check
 * stays as a guard against a producer whose received_ms is itself ahead (30 s against this process's clock).
 */
import type { RejectReason } from "../lib/errors.ts";
import { cellOf } from "../lib/h3.ts";
import type { ConsumedMessage } from "../lib/kafka.ts";
import { checkDevicePosition, checkInContext, type ContextLimits, DEFAULT_LIMITS, isUuid, type PositionRecord } from "../lib/position.ts";
import { decodeRecord, RECORD_V2_MARKER } from "../lib/position-record.ts";

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

/** The batch being decoded: rows are numbered (seq) across the whole batch. */
function emptyBatch(): DecodedBatch {
  return { rows: [], rejects: [], positionIndex: [] };
}

export function decodeBatch(messages: ConsumedMessage[], options: { nowMs: number; h3Resolution: number }): DecodedBatch {
  const batch = emptyBatch();
  const limits = { ...DEFAULT_LIMITS, nowMs: options.nowMs };
  for (let message = 0; message < messages.length; message++) {
    decodeMessage(batch, messages[message]!, message, limits, options.h3Resolution);
  }
  return batch;
}

/** Messages decoded between two turns of the event loop by decodeBatchYielding: ~2,000 positions, a few ms. */
export const DECODE_CHUNK_MESSAGES = 500;

/**
 * decodeBatch, giving the event loop a turn every `chunk` messages. The worker decodes batch N+1 while PostgreSQL
 * applies batch N; decoded in one go (~13,000 positions at 25,000/s), the previous batch's transactions sat idle
 * waiting for this process to send their next command (docs/steady-state.md). Same result as decodeBatch.
 */
export async function decodeBatchYielding(
  messages: ConsumedMessage[],
  options: { nowMs: number; h3Resolution: number },
  chunk = DECODE_CHUNK_MESSAGES,
): Promise<DecodedBatch> {
  const batch = emptyBatch();
  const limits = { ...DEFAULT_LIMITS, nowMs: options.nowMs };
  for (let message = 0; message < messages.length; message++) {
    if (message > 0 && message % chunk === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    decodeMessage(batch, messages[message]!, message, limits, options.h3Resolution);
  }
  return batch;
}

/**
 * A Kafka value as a record: the bridge's binary form (lib/position-record.ts) or the JSON v1 form (the HTTP API's,
 * and any record written before the bridge switched forms).
 */
function readRecord(
  value: Buffer | null,
): { record: PositionRecord; canonicalId: boolean } | { refused: Omit<Reject, "message"> } {
  if (value !== null && value.length > 0 && value[0] === RECORD_V2_MARKER) {
    const decoded = decodeRecord(value);
    // The binary form carries the id as 16 bytes, read back as a lowercase canonical UUID: nothing left to check.
    return decoded.ok
      ? { record: decoded.record, canonicalId: true }
      : { refused: { reason: "invalid_shape", detail: decoded.detail } };
  }
  try {
    return { record: JSON.parse(value?.toString() ?? "") as PositionRecord, canonicalId: false };
  } catch {
    return { refused: { reason: "malformed_json", detail: "Kafka value is not JSON" } };
  }
}

/** One Kafka message's positions into `batch`: staged rows, or rejects naming the message (and position). */
function decodeMessage(
  batch: DecodedBatch,
  m: ConsumedMessage,
  message: number,
  limits: ContextLimits,
  h3Resolution: number,
): void {
  const { rows, rejects, positionIndex } = batch;
  const read = readRecord(m.value);
  if ("refused" in read) {
    rejects.push({ message, ...read.refused });
    return;
  }
  const { record, canonicalId } = read;
  if (
    record?.v !== 1 ||
    !Array.isArray(record.positions) ||
    !Number.isFinite(record.received_ms) ||
    Math.abs(record.received_ms - limits.nowMs) > 366 * 86_400_000
  ) {
    rejects.push({ message, reason: "invalid_shape", detail: "not a v1 position record" });
    return;
  }
  if (!canonicalId && !isUuid(record.driver_id)) {
    rejects.push({ message, reason: "invalid_driver_id", detail: String(record.driver_id) });
    return;
  }
  const driverId = canonicalId ? record.driver_id : record.driver_id.toLowerCase();
  // Oldest first; a message of one fix (a watched driver's) needs no sorting.
  const ordered =
    record.positions.length === 1
      ? [{ p: record.positions[0]!, index: 0 }]
      : record.positions.map((p, index) => ({ p, index })).sort((a, b) => (a.p?.tst ?? 0) - (b.p?.tst ?? 0));
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
      h3: cellOf(p.lat, p.lon, h3Resolution),
      speedKmh: p.vel,
      headingDeg: p.cog,
      accuracyM: p.acc,
      batteryPct: p.batt === undefined ? undefined : Math.max(0, Math.min(100, Math.round(p.batt))),
      receivedMs: record.received_ms,
      message,
    });
    positionIndex.push(index);
  }
}
