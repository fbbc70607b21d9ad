/**
 * Staging rows → database, in one transaction: COPY into this session's staging table, then one call of the
 * set-based apply procedure. Nothing is decided here; SQL decides.
 */
import type { Sql } from "../lib/db.ts";
import { COPY_COLUMNS, toCopyBinary } from "./copy-binary.ts";
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

/**
 * Splits a batch into up to `parts` batches by driver, every driver's rows in one of them (a driver's positions are
 * judged together), to be applied in parallel transactions. Rows keep their `seq`, unique across the parts.
 */
export function splitByDriver(rows: StagedPosition[], parts: number): StagedPosition[][] {
  if (parts <= 1 || rows.length === 0) return [rows];
  const out: StagedPosition[][] = Array.from({ length: parts }, () => []);
  // The last two hex digits of the UUID: uniform for random (v4) ids.
  for (const r of rows) out[(Number.parseInt(r.driverId.slice(-2), 16) || 0) % parts]!.push(r);
  return out.filter((part) => part.length > 0);
}

export async function applyPositionBatch(sql: Sql, rows: StagedPosition[]): Promise<ApplyResult> {
  // Encoded before the transaction opens: no transaction is held while this process works, and a row it cannot
  // encode fails the batch before anything was sent.
  const data = rows.length > 0 ? toCopyBinary(rows) : undefined;
  return sql.begin(async (tx) => {
    await tx`select open_position_staging()`;
    if (data) {
      const writable = await tx
        .unsafe(`copy position_staging (${COPY_COLUMNS}) from stdin with (format binary)`)
        .writable();
      await new Promise<void>((resolve, reject) => {
        writable.on("error", reject);
        writable.on("finish", resolve);
        writable.end(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      });
    }
    const [result] = await tx<ApplyResult[]>`select * from apply_position_batch()`;
    return result!;
  }) as Promise<ApplyResult>;
}
