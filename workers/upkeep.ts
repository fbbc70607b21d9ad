/**
 * The worker's own timers (the notification-queue gauge, the lag gauge and its report to the database). A failed run
 * is logged and counted, never thrown at the timer, and the next run comes at its time; a run still going when the
 * next is due is not doubled. The database's upkeep (sweep, partitions, compaction) is scheduled in the database
 * itself (pg_cron, migration 0024).
 */

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
