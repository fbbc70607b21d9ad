/**
 * A batch's refusals → dead letters: one per refused Kafka message, carrying its bytes once, whether the decoder
 * refused the whole message, the decoder or SQL refused some of its positions, or both. A binary (v2) record is
 * dead-lettered in its JSON v1 form, the same content readable by an operator with kcat; its refused positions keep
 * their indexes. A value that does not decode is dead-lettered as it came.
 */
import { mainReason, type Refusal } from "../lib/dead-letter.ts";
import type { RejectReason } from "../lib/errors.ts";
import type { ConsumedMessage, DlqRecord } from "../lib/kafka.ts";
import { decodeRecord, RECORD_V2_MARKER } from "../lib/position-record.ts";
import type { DecodedBatch, Reject } from "./decode-batch.ts";

/** The value to dead-letter: a v2 record as JSON v1, anything else unchanged. */
export function readableValue(value: Buffer | null): Buffer {
  if (value === null) return Buffer.alloc(0);
  if (value[0] !== RECORD_V2_MARKER) return value;
  const decoded = decodeRecord(value);
  return decoded.ok ? Buffer.from(JSON.stringify(decoded.record)) : value;
}

/** SQL's refusals (by staged seq) as rejects of their message and position. */
export function sqlRejects(decoded: DecodedBatch, seqs: readonly number[], reasons: readonly string[]): Reject[] {
  return seqs.map((seq, i) => {
    const row = decoded.rows[seq]!;
    return {
      message: row.message,
      index: decoded.positionIndex[seq],
      reason: reasons[i] as RejectReason,
      detail: `driver ${row.driverId} at ${new Date(row.recordedMs).toISOString()}`,
    };
  });
}

export function deadLetters(messages: readonly ConsumedMessage[], rejects: readonly Reject[]): DlqRecord[] {
  const byMessage = new Map<number, Reject[]>();
  for (const r of rejects) {
    const list = byMessage.get(r.message);
    if (list) list.push(r);
    else byMessage.set(r.message, [r]);
  }
  return [...byMessage.entries()]
    .sort(([a], [b]) => a - b)
    .map(([message, list]) => {
      const m = messages[message]!;
      const base = {
        key: m.key?.toString() ?? null,
        value: readableValue(m.value),
        source: `kafka:${m.topic}/${m.partition}@${m.offset}`,
      };
      const whole = list.find((r) => r.index === undefined);
      if (whole) return { ...base, reason: whole.reason, detail: whole.detail };
      const refused: Refusal[] = list.map((r) => ({ index: r.index!, reason: r.reason }));
      const first = list.reduce((a, b) => (b.index! < a.index! ? b : a));
      return {
        ...base,
        reason: mainReason(refused),
        detail: list.length === 1 ? first.detail : `${list.length} positions refused; first: ${first.detail}`,
        refused,
      };
    });
}
