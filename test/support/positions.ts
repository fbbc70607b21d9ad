/**
 * Applies positions the way the position worker does (which tests of other parts cannot start): in one
 * transaction on one reserved connection, open the session's staging table, insert the batch, apply it.
 */
import { config } from "../../lib/config.ts";
import type { Sql } from "../../lib/db.ts";
import { cellOf } from "../../lib/h3.ts";

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
export interface AppliedBatch {
  staged: number;
  applied: number;
  duplicate: number;
  out_of_order: number;
  unknown_driver: number;
  transitions: number;
  orders_notified: number;
  rejected_seq: number[];
  rejected_reason: string[];
}

let lastMs = 0;
function monotonicNow(): Date {
  lastMs = Math.max(Date.now(), lastMs + 1);
  return new Date(lastMs);
}

export async function applyPositions(sql: Sql, positions: StagedPosition[]): Promise<AppliedBatch> {
  const rows = positions.map((p, seq) => ({
    seq,
    driver_id: p.driverId,
    recorded_at: p.recordedAt ?? monotonicNow(),
    lat: p.lat,
    lon: p.lon,
    h3: cellOf(p.lat, p.lon, config().h3Resolution).toString(),
    speed_kmh: p.speedKmh ?? null,
    heading_deg: p.headingDeg ?? null,
    accuracy_m: p.accuracyM ?? null,
    battery_pct: p.batteryPct ?? null,
    received_at: p.receivedAt ?? new Date(),
  }));
  const [result] = await sql.begin(async (tx) => {
    await tx`select open_position_staging()`;
    // Unqualified, the name resolves to the session's temporary table first (pg_temp leads the search path).
    if (rows.length > 0) await tx`insert into position_staging ${tx(rows)}`;
    return tx<AppliedBatch[]>`select * from apply_position_batch()`;
  });
  if (!result) throw new Error("apply_position_batch() returned no row");
  return result;
}
