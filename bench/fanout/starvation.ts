/**
 * bench:fanout's starvation verdict. A stream is quiet when it is open and has had no event for longer than the
 * starvation limit. A quiet stream is **starved** (the fan-out's fault) when its order's driver has a position
 * committed after the stream's last event that the database had shown for at least `graceMs` when the load generator
 * listed the stream as quiet: a notice was due and did not arrive. Otherwise it is **waiting on ingest**: nothing
 * newer of its driver is in the database (its positions are still queued in MQTT, Kafka or the worker), so there is
 * nothing to push.
 *
 * A commit's own time is not in the database: `driver_state.updated_at` is the applying transaction's start, and a
 * big batch under load commits seconds later. So the parent watches the quiet streams' drivers: a value of
 * `updated_at` it has not read before counts as visible from when it read it (never earlier than the commit).
 *
 * The load generators report their quiet streams as flat pairs [target index, last event ms (0: none yet)], with the
 * time they listed them.
 */

/** One quiet stream: which target (order) it watches, and when its last event arrived (0 before any). */
export interface QuietStream {
  target: number;
  lastEventAtMs: number;
}

/** A driver's last applied position: its transaction's time, and since when the parent has seen it committed. */
export interface CommitSeen {
  atMs: number;
  seenAtMs: number;
}

export interface StarvationVerdict {
  /** Quiet although a newer position of its driver had been visible for at least graceMs. */
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

/** Judges the streams a load generator listed as quiet at `listedAtMs`. */
export function judgeQuiet(
  quiet: readonly QuietStream[],
  commitOf: (target: number) => CommitSeen | undefined,
  listedAtMs: number,
  graceMs: number,
): StarvationVerdict {
  let starved = 0;
  for (const q of quiet) {
    const c = commitOf(q.target);
    if (c !== undefined && c.atMs > q.lastEventAtMs && listedAtMs - c.seenAtMs >= graceMs) starved += 1;
  }
  return { starved, waitingOnIngest: quiet.length - starved };
}

/** Since when each watched driver's current `updated_at` has been seen; drivers no longer read are forgotten. */
export function createCommitWatch() {
  let seen = new Map<string, CommitSeen>();
  return {
    /** The drivers' `updated_at` (ms) as read at `nowMs`: a value not seen before counts as visible from now. */
    observe(rows: readonly { driverId: string; atMs: number }[], nowMs: number): void {
      const next = new Map<string, CommitSeen>();
      for (const r of rows) {
        const before = seen.get(r.driverId);
        next.set(r.driverId, before?.atMs === r.atMs ? before : { atMs: r.atMs, seenAtMs: nowMs });
      }
      seen = next;
    },
    get: (driverId: string): CommitSeen | undefined => seen.get(driverId),
  };
}
