/**
 * bench:fanout's starvation verdict. A stream is quiet when it is open and has had no event for longer than the
 * starvation limit. A quiet stream is **starved** (the fan-out's fault) when its order's driver had a position
 * committed after the stream's last event, at least `graceMs` ago: a notice was due and did not arrive. Otherwise it
 * is **waiting on ingest**: nothing newer of its driver is in the database yet (its positions are still queued in
 * MQTT, Kafka or the worker), so there is nothing to push.
 *
 * The load generators report their quiet streams as flat pairs [target index, last event ms (0: none yet)]; the
 * parent reads each quiet driver's `driver_state.updated_at` (the applying transaction's time, a little before its
 * commit) and judges them here.
 */

/** One quiet stream: which target (order) it watches, and when its last event arrived (0 before any). */
export interface QuietStream {
  target: number;
  lastEventAtMs: number;
}

export interface StarvationVerdict {
  /** Quiet although a newer position of its driver was committed at least graceMs before now. */
  starved: number;
  /** Quiet because nothing newer of its driver was committed (or only within the last graceMs). */
  waitingOnIngest: number;
}

/** Flat [target, lastEventAtMs, target, lastEventAtMs, …] as the load generators print them. */
export function decodeQuiet(flat: readonly number[]): QuietStream[] {
  if (flat.length % 2 !== 0) throw new Error(`quiet streams: expected pairs, got ${flat.length} numbers`);
  const out: QuietStream[] = [];
  for (let i = 0; i < flat.length; i += 2) out.push({ target: flat[i]!, lastEventAtMs: flat[i + 1]! });
  return out;
}

/**
 * @param committedAtMs the driver's last applied position's time (ms) by target index; undefined: none applied yet.
 */
export function judgeQuiet(
  quiet: readonly QuietStream[],
  committedAtMs: (target: number) => number | undefined,
  nowMs: number,
  graceMs: number,
): StarvationVerdict {
  let starved = 0;
  for (const q of quiet) {
    const committed = committedAtMs(q.target);
    if (committed !== undefined && committed > q.lastEventAtMs && committed <= nowMs - graceMs) starved += 1;
  }
  return { starved, waitingOnIngest: quiet.length - starved };
}
