/**
 * Staging rows → database, in one transaction: COPY into this session's staging table, then one call of the
 * set-based apply procedure. Nothing is decided here; SQL decides.
 */
import type { Sql } from "../lib/db.ts";
import type { StagedPosition } from "./decode-batch.ts";

export interface ApplyResult {
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

export const emptyResult = (): ApplyResult => ({
  staged: 0, applied: 0, duplicate: 0, out_of_order: 0, unknown_driver: 0, transitions: 0, orders_notified: 0,
  rejected_seq: [], rejected_reason: [],
});

/** The counts of two halves of one batch, as if applied at once. */
export function mergeResults(a: ApplyResult, b: ApplyResult): ApplyResult {
  return {
    staged: a.staged + b.staged,
    applied: a.applied + b.applied,
    duplicate: a.duplicate + b.duplicate,
    out_of_order: a.out_of_order + b.out_of_order,
    unknown_driver: a.unknown_driver + b.unknown_driver,
    transitions: a.transitions + b.transitions,
    orders_notified: a.orders_notified + b.orders_notified,
    rejected_seq: [...a.rejected_seq, ...b.rejected_seq],
    rejected_reason: [...a.rejected_reason, ...b.rejected_reason],
  };
}

const COPY_COLUMNS =
  "seq, driver_id, recorded_at, lat, lon, h3, speed_kmh, heading_deg, accuracy_m, battery_pct, received_at";

const opt = (v: number | undefined) => (v === undefined ? "\\N" : String(v));

/** COPY text format, one line per position. Every field is a number, a UUID or an ISO time: nothing to escape. */
export function toCopyText(rows: StagedPosition[]): string {
  const lines = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    lines[i] =
      `${r.seq}\t${r.driverId}\t${new Date(r.recordedMs).toISOString()}\t${r.lat}\t${r.lon}\t${r.h3}\t` +
      `${opt(r.speedKmh)}\t${opt(r.headingDeg)}\t${opt(r.accuracyM)}\t${opt(r.batteryPct)}\t` +
      `${new Date(r.receivedMs).toISOString()}\n`;
  }
  return lines.join("");
}

export async function applyPositionBatch(sql: Sql, rows: StagedPosition[]): Promise<ApplyResult> {
  return sql.begin(async (tx) => {
    await tx`select open_position_staging()`;
    if (rows.length > 0) {
      const writable = await tx.unsafe(`copy position_staging (${COPY_COLUMNS}) from stdin`).writable();
      await new Promise<void>((resolve, reject) => {
        writable.on("error", reject);
        writable.on("finish", resolve);
        writable.end(toCopyText(rows));
      });
    }
    const [result] = await tx<ApplyResult[]>`select * from apply_position_batch()`;
    return result!;
  }) as Promise<ApplyResult>;
}
