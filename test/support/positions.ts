/**
 * Applies positions the way the position worker does (which tests of other parts cannot start): in one
 * transaction on one reserved connection, open the session's staging table, insert the batch, apply it.
 */
import { config } from "../../lib/config.ts";
import type { Sql } from "../../lib/db.ts";
import { cellOf } from "../../lib/h3.ts";
import { applyPositionBatch, type ApplyResult } from "../../workers/apply-batch.ts";

export interface StagedPosition {
  driverId: string;
  lat: number;
  lon: number;
  /** Device time; by default now, strictly increasing across calls so successive batches are never stale. */
  recordedAt?: Date;
  speedKmh?: number | null;
  headingDeg?: number | null;
  accuracyM?: number | null;
  batteryPct?: number | null;
  receivedAt?: Date;
}

/** The row apply_position_batch() returns (see 0004_apply_position_batch.sql). */
export type AppliedBatch = ApplyResult;

let lastMs = 0;
function monotonicNow(): Date {
  lastMs = Math.max(Date.now(), lastMs + 1);
  return new Date(lastMs);
}

export async function applyPositions(sql: Sql, positions: StagedPosition[]): Promise<AppliedBatch> {
  // The worker's own COPY path (workers/apply-batch.ts), so what the API tests see is what production does.
  return applyPositionBatch(
    sql,
    positions.map((p, seq) => ({
      seq,
      driverId: p.driverId,
      recordedMs: (p.recordedAt ?? monotonicNow()).getTime(),
      lat: p.lat,
      lon: p.lon,
      h3: cellOf(p.lat, p.lon, config().h3Resolution),
      speedKmh: p.speedKmh ?? undefined,
      headingDeg: p.headingDeg ?? undefined,
      accuracyM: p.accuracyM ?? undefined,
      batteryPct: p.batteryPct ?? undefined,
      receivedMs: (p.receivedAt ?? new Date()).getTime(),
      message: seq,
    })),
  );
}
