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

export interface CompactionPacing {
  /** Drivers per step (one transaction each). */
  driversPerStep: number;
  /**
   * The share of wall time compaction may spend working, 0 < share ≤ 1: after a step of r ms it pauses
   * r × (1 / share − 1) ms, so a closed hour is spread over the next one instead of taking a core in a burst.
   */
  busyShare: number;
  /** The pause itself (a test passes its own to see the pauses without waiting them). */
  sleep?: (ms: number) => Promise<unknown>;
}

/** The pause after a step of `stepMs` that keeps compaction at `busyShare` of the wall time. */
export function pauseAfterStep(stepMs: number, busyShare: number): number {
  if (!(busyShare > 0 && busyShare <= 1)) throw new RangeError(`busyShare must be in (0, 1], got ${busyShare}`);
  return Math.max(0, stepMs) * (1 / busyShare - 1);
}

/**
 * Rolls the trail's closed hours into the compact table (migration 0014), `driversPerStep` drivers per transaction
 * so no step holds its locks long, pausing between steps to stay within `busyShare`; returns the positions moved.
 * Steps serialise in the database, so two workers running this at once only wait for each other. A step after a
 * long pause (hours of raw trail per driver) may outlast the worker role's 60 s statement timeout: the step's own
 * transaction allows it 10 minutes.
 */
export async function compactTrail(sql: Sql, pacing: CompactionPacing = { driversPerStep: 200, busyShare: 1 }): Promise<number> {
  const sleep = pacing.sleep ?? ((ms: number) => new Promise((resolve) => setTimeout(resolve, ms)));
  let after: string | null = null;
  let moved = 0;
  do {
    const started = performance.now();
    const [step]: { last_driver: string | null; positions: number }[] = await sql.begin(async (tx) => {
      await tx`set local statement_timeout = '10min'`;
      return tx<{ last_driver: string | null; positions: number }[]>`
        select last_driver, positions from compact_trail_step(${after}::uuid, ${pacing.driversPerStep})`;
    });
    after = step?.last_driver ?? null;
    moved += step?.positions ?? 0;
    const pause = pauseAfterStep(performance.now() - started, pacing.busyShare);
    if (after !== null && pause > 0) await sleep(pause);
  } while (after !== null);
  return moved;
}
