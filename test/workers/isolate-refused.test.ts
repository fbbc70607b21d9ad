// Bisecting a refused batch down to its refused rows (pure: `apply` is a plain function standing in for the
// database's verdict; the real path is covered by pipeline.test.ts).
import { expect, test } from "bun:test";
import { emptyResult } from "../../workers/apply-batch.ts";
import type { StagedPosition } from "../../workers/decode-batch.ts";
import { applyIsolating } from "../../workers/isolate-refused.ts";

const rows = (n: number) => Array.from({ length: n }, (_, seq) => ({ seq }) as StagedPosition);
const withCode = (code: string) => Object.assign(new Error(code), { code });

function database(bad: Set<number>, error: () => unknown) {
  const calls: { seqs: number[]; whole: boolean }[] = [];
  const apply = async (part: StagedPosition[], whole: boolean) => {
    calls.push({ seqs: part.map((r) => r.seq), whole });
    if (part.some((r) => bad.has(r.seq))) throw error();
    return { ...emptyResult(), staged: part.length, applied: part.length };
  };
  return { apply, calls };
}

test.each([
  ["a value the database refuses", () => withCode("22003")],
  ["an error that keeps failing without a SQLSTATE", () => new Error("cannot encode")],
])("%s: the rest applies, the refused rows are named", async (_name, error) => {
  const db = database(new Set([3, 12]), error);
  const refused: number[] = [];
  const result = await applyIsolating(rows(16), db.apply, (row) => refused.push(row.seq));
  expect(refused.sort((a, b) => a - b)).toEqual([3, 12]);
  expect(result).toMatchObject({ staged: 14, applied: 14 });
  // Only the first try is of the whole batch (where an unknown error is retried).
  expect(db.calls.filter((c) => c.whole).length).toBe(1);
});

test("a deployment error (missing function) is not isolated: nothing is applied, the error goes up", async () => {
  const db = database(new Set([0]), () => withCode("42883"));
  await expect(applyIsolating(rows(4), db.apply, () => {})).rejects.toMatchObject({ code: "42883" });
  expect(db.calls.length).toBe(1);
});
