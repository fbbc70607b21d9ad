/**
 * After a chaos run: what the phones saw acknowledged against what the database and the dead-letter topic hold.
 * Every acknowledged position must be in the trail exactly once or dead-lettered with a reason; each driver's state
 * must be its latest accepted position; no state transition may be recorded twice.
 */
import { parseRefused } from "../../lib/dead-letter.ts";
import type { Sql } from "../../lib/db.ts";
import type { PositionRecord } from "../../lib/position.ts";
import type { DlqEntry } from "../../tools/kafka-cli.ts";
import type { PhoneLog } from "./phones.ts";

export interface Accounting {
  sent: number;
  acknowledged: number;
  applied: number;
  deadLettered: number;
  deadLetterReasons: Record<string, number>;
  /** Acknowledged, and neither in the trail nor dead-lettered. */
  lost: number;
  /** In the trail and dead-lettered as well (it must be one or the other). */
  appliedAndDeadLettered: number;
  /** In the trail though no phone ever sent it. */
  neverSent: number;
  /** Drivers whose state is not their latest position in the trail. */
  stateMismatches: number;
  /** The same driver transition recorded twice in a row. */
  duplicateTransitions: number;
  examples: { lost: string[]; stateMismatches: string[] };
}

const key = (driverId: string, ms: number) => `${driverId}@${ms}`;

/** The positions a dead letter refused, as driver@ms keys, with their reasons. */
export function deadLetteredPositions(entries: readonly DlqEntry[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of entries) {
    let record: PositionRecord;
    try {
      record = JSON.parse(entry.value) as PositionRecord;
    } catch {
      continue; // not a position record (refused by the bridge before decoding): carries no position of a phone
    }
    if (!Array.isArray(record.positions)) continue;
    const refused = entry.refused
      ? parseRefused(entry.refused)
      : record.positions.map((_, index) => ({ index, reason: entry.reason }));
    for (const { index, reason } of refused) {
      const position = record.positions[index];
      if (position) out.set(key(record.driver_id, Math.round(position.tst * 1000)), reason);
    }
  }
  return out;
}

export async function reconcile(sql: Sql, logs: readonly PhoneLog[], dlq: readonly DlqEntry[]): Promise<Accounting> {
  const sent = new Set<string>();
  const acked = new Set<string>();
  for (const log of logs) {
    for (const ms of log.sent) sent.add(key(log.driverId, ms));
    for (const ms of log.acked) acked.add(key(log.driverId, ms));
  }
  const driverIds = logs.map((l) => l.driverId);
  const trailRows = await sql<{ driver_id: string; ms: string }[]>`
    select driver_id, round(extract(epoch from recorded_at) * 1000)::bigint::text as ms
    from trail_positions where driver_id = any(${driverIds}::uuid[])`; // both parts, raw and compacted (0014)
  const trail = new Set<string>();
  const latest = new Map<string, number>();
  for (const row of trailRows) {
    const ms = Number(row.ms);
    trail.add(key(row.driver_id, ms));
    if (ms > (latest.get(row.driver_id) ?? 0)) latest.set(row.driver_id, ms);
  }
  const dead = deadLetteredPositions(dlq);

  const lost: string[] = [];
  let applied = 0;
  let deadLettered = 0;
  const reasons: Record<string, number> = {};
  for (const k of acked) {
    if (trail.has(k)) applied++;
    else if (dead.has(k)) {
      deadLettered++;
      reasons[dead.get(k)!] = (reasons[dead.get(k)!] ?? 0) + 1;
    } else lost.push(k);
  }
  let appliedAndDeadLettered = 0;
  for (const k of dead.keys()) if (trail.has(k)) appliedAndDeadLettered++;
  let neverSent = 0;
  for (const k of trail) if (!sent.has(k)) neverSent++;

  const states = await sql<{ driver_id: string; ms: string | null }[]>`
    select driver_id, round(extract(epoch from position_at) * 1000)::bigint::text as ms
    from driver_state where driver_id = any(${driverIds}::uuid[])`;
  const stateMismatches = states
    .filter((s) => (s.ms === null ? undefined : Number(s.ms)) !== latest.get(s.driver_id))
    .map((s) => `${s.driver_id}: state ${s.ms}, trail ${latest.get(s.driver_id)}`);

  const [history] = await sql<{ duplicates: number }[]>`
    select count(*)::int as duplicates from (
      select from_status, to_status,
             lag(from_status) over w as previous_from, lag(to_status) over w as previous_to
      from state_history where entity = 'driver' and entity_id = any(${driverIds}::uuid[])
      window w as (partition by entity_id order by id)) h
    where from_status = previous_from and to_status = previous_to`;

  return {
    sent: sent.size,
    acknowledged: acked.size,
    applied,
    deadLettered,
    deadLetterReasons: reasons,
    lost: lost.length,
    appliedAndDeadLettered,
    neverSent,
    stateMismatches: stateMismatches.length,
    duplicateTransitions: history!.duplicates,
    examples: { lost: lost.slice(0, 5), stateMismatches: stateMismatches.slice(0, 5) },
  };
}
