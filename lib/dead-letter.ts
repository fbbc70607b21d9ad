/**
 * What a dead letter says about the positions it refused. One record per refused message, carrying its original
 * bytes once: `reason` names the message's most common refusal (so readers of that one header keep working), and
 * `refused` lists every refused position by its index in the message, in runs: `0-3:impossible_speed;7:future_timestamp`.
 * A message of 500 positions with 499 refused costs its own bytes plus a short header, not 499 copies of itself.
 * `;` separates the runs because kcat prints headers as `name=value,name=value`.
 */
import type { RejectReason } from "./errors.ts";
import type { RecordProducer } from "./kafka.ts";

/** One refused position of a message: its index in the message's position list, and why. */
export interface Refusal {
  index: number;
  reason: RejectReason;
}

/** The most common reason; among equally common ones, the one refused first (lowest index). */
export function mainReason(refusals: readonly Refusal[]): RejectReason {
  if (refusals.length === 0) throw new RangeError("a dead letter needs at least one refusal");
  const counts = new Map<RejectReason, number>();
  for (const r of [...refusals].sort((a, b) => a.index - b.index)) counts.set(r.reason, (counts.get(r.reason) ?? 0) + 1);
  let best = refusals[0]!.reason;
  let most = 0;
  for (const [reason, n] of counts) {
    if (n > most) [best, most] = [reason, n];
  }
  return best;
}

/** The `refused` header: index order, consecutive indexes with one reason as a run `from-to:reason`. */
export function formatRefused(refusals: readonly Refusal[]): string {
  const sorted = [...refusals].sort((a, b) => a.index - b.index);
  const runs: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1]!.index === sorted[j]!.index + 1 && sorted[j + 1]!.reason === sorted[i]!.reason) j++;
    const from = sorted[i]!.index;
    const to = sorted[j]!.index;
    runs.push(`${from === to ? from : `${from}-${to}`}:${sorted[i]!.reason}`);
    i = j + 1;
  }
  return runs.join(";");
}

/** Reads a `refused` header back into one refusal per position. */
export function parseRefused(header: string): Refusal[] {
  if (header === "") return [];
  return header.split(";").flatMap((run) => {
    const match = /^(\d+)(?:-(\d+))?:([a-z_]+)$/.exec(run);
    if (!match) throw new SyntaxError(`not a refused run: "${run}"`);
    const from = Number(match[1]);
    const to = match[2] === undefined ? from : Number(match[2]);
    return Array.from({ length: to - from + 1 }, (_, k) => ({ index: from + k, reason: match[3] as RejectReason }));
  });
}

export interface DlqRecord {
  key: string | null;
  /** The original bytes of the refused message, once, however many of its positions were refused. */
  value: Uint8Array | string;
  /** From the closed list in lib/errors.ts: the message's own problem, or its most common refusal (mainReason). */
  reason: string;
  source: string;
  detail?: string;
  /** The refused positions by index, when only some of the message was refused (the `refused` header). */
  refused?: readonly Refusal[];
}

/**
 * Sends rejected input to the dead-letter topic, one record per refused message: the original bytes, `reason` from
 * the closed list, where from, and which positions were refused (the `refused` header, formatRefused above).
 */
export async function sendToDlq(producer: RecordProducer, topic: string, records: DlqRecord[]): Promise<void> {
  await Promise.all(
    records.map((r) =>
      producer.send({
        topic,
        key: r.key,
        value: Buffer.from(r.value),
        headers: {
          reason: r.reason,
          source: r.source,
          ...(r.detail ? { detail: r.detail } : {}),
          ...(r.refused && r.refused.length > 0 ? { refused: formatRefused(r.refused) } : {}),
        },
      }),
    ),
  );
}
