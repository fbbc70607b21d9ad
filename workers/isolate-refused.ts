/**
 * A batch the database refuses for its content must not stop the pipeline: halves are applied separately until each
 * refused position stands alone, and those are named (they go to the DLQ as `rejected_by_database`). log2(batch)
 * extra round trips, and only when it happens.
 */
import { classifyApplyError } from "./apply-retry.ts";
import { emptyResult, mergeResults, type ApplyResult } from "./apply-batch.ts";
import type { StagedPosition } from "./decode-batch.ts";

/** Applies `rows`, bisecting on a content error; `apply` gets whether this is the first try of the whole batch. */
export async function applyIsolating(
  rows: StagedPosition[],
  apply: (rows: StagedPosition[], wholeBatch: boolean) => Promise<ApplyResult | undefined>,
  onRefused: (row: StagedPosition, error: unknown) => void,
  wholeBatch = true,
): Promise<ApplyResult | undefined> {
  try {
    return await apply(rows, wholeBatch);
  } catch (error) {
    // Only content errors (or ones that kept failing without saying why) are isolated; a missing function or table
    // is the deployment's fault: stop, commit nothing.
    const kind = classifyApplyError(error);
    if ((kind !== "content" && kind !== "unknown") || rows.length === 0) throw error;
    if (rows.length === 1) {
      onRefused(rows[0]!, error);
      return emptyResult();
    }
    const middle = Math.ceil(rows.length / 2);
    const first = await applyIsolating(rows.slice(0, middle), apply, onRefused, false);
    if (!first) return undefined;
    const second = await applyIsolating(rows.slice(middle), apply, onRefused, false);
    if (!second) return undefined;
    return mergeResults(first, second);
  }
}
