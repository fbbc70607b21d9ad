/**
 * The worker's scheduled upkeep (the offline sweep, trail partitions and compaction, the lag gauge). A failed run
 * is logged and counted, never thrown at the timer, and the next run comes at its time; a run still going when the
 * next is due is not doubled.
 */
import type { Sql } from "../lib/db.ts";

export interface UpkeepJob {
  name: string;
  everyMs: number;
  run: () => Promise<unknown>;
}

export interface Upkeep {
  stop(): void;
}

export function scheduleUpkeep(jobs: UpkeepJob[], onFailure: (job: string, error: unknown) => void): Upkeep {
  const timers = jobs.map((job) => {
    let running = false;
    return setInterval(() => {
      if (running) return;
      running = true;
      // The job's own promise, so a synchronous throw is caught as well.
      Promise.resolve()
        .then(job.run)
        .catch((error: unknown) => onFailure(job.name, error))
        .finally(() => (running = false));
    }, job.everyMs);
  });
  return { stop: () => timers.forEach(clearInterval) };
}

/** How often a compaction waiting for ingest to catch up looks again. */
export const INGEST_CHECK_MS = 1_000;

export interface CompactionPacing {
  /** Drivers per step (one transaction each). */
  driversPerStep: number;
  /**
   * A pass that finds fixes to move is spread over this long: after a step that moved some, the job waits until
   * the pass's start plus this share of the drivers' id space walked × `spreadMs`, so a closed hour is compacted
   * evenly over the next one instead of taking a core in a burst. A pass behind that schedule (a backlog) does not
   * wait. 0 = no pauses.
   */
  spreadMs: number;
  /**
   * Whether ingest is behind (the worker's Kafka lag over a limit): then the job waits between steps, checking every
   * second, until it is not. Fresh positions come first; compaction catches up when the box has room.
   */
  ingestBehind?: () => boolean;
  /** The clock and the pause (a test passes its own pause to see them without waiting). */
  now?: () => number;
  sleep?: (ms: number) => Promise<unknown>;
}

/**
 * The share of the driver id space up to `driverId`, in [0, 1): drivers are walked in id order and their ids are
 * random (v4) UUIDs, so this is the share of a pass done, without counting the drivers.
 */
export function idSpaceShare(driverId: string): number {
  const head = Number.parseInt(driverId.slice(0, 8), 16);
  if (!Number.isFinite(head)) throw new RangeError(`not a UUID: ${driverId}`);
  return head / 2 ** 32;
}

/** The pause that keeps a pass started at `startedMs` on schedule: `doneShare` of it due at `doneShare × spreadMs`. */
export function pauseOnSchedule(startedMs: number, nowMs: number, doneShare: number, spreadMs: number): number {
  return Math.max(0, startedMs + Math.min(Math.max(doneShare, 0), 1) * spreadMs - nowMs);
}

/**
 * Rolls the trail's closed hours into the compact table (migration 0014), `driversPerStep` drivers per transaction
 * so no step holds its locks long, paced over `spreadMs` and yielding while ingest is behind; returns the positions
 * moved. Steps serialise in the database, so two workers running this at once only wait for each other. A step
 * after a long pause (hours of raw trail per driver) may outlast the worker role's 60 s statement timeout: the
 * step's own transaction allows it 10 minutes. On shutdown the worker exits without waiting for a pause to end.
 */
export async function compactTrail(sql: Sql, pacing: CompactionPacing = { driversPerStep: 200, spreadMs: 0 }): Promise<number> {
  const now = pacing.now ?? (() => Date.now());
  const sleep = pacing.sleep ?? ((ms: number) => new Promise((resolve) => setTimeout(resolve, ms)));
  const startedMs = now();
  let after: string | null = null;
  let moved = 0;
  do {
    const [step]: { last_driver: string | null; positions: number }[] = await sql.begin(async (tx) => {
      await tx`set local statement_timeout = '10min'`;
      return tx<{ last_driver: string | null; positions: number }[]>`
        select last_driver, positions from compact_trail_step(${after}::uuid, ${pacing.driversPerStep})`;
    });
    after = step?.last_driver ?? null;
    moved += step?.positions ?? 0;
    if (after !== null && (step?.positions ?? 0) > 0 && pacing.spreadMs > 0) {
      const pause = pauseOnSchedule(startedMs, now(), idSpaceShare(after), pacing.spreadMs);
      if (pause > 0) await sleep(pause);
    }
    while (after !== null && pacing.ingestBehind?.()) await sleep(INGEST_CHECK_MS);
  } while (after !== null);
  return moved;
}
