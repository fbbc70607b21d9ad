/**
 * The worker's scheduled upkeep (the offline sweep, trail partitions, the lag gauge). A failed run is logged and
 * counted, never thrown at the timer, and the next run comes at its time; a run still going when the next is due
 * is not doubled.
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
