/**
 * "Is this process still making progress?" for a readiness probe: a message arrived and none has been forwarded
 * since, for longer than `stalledAfterMs`. Idle (nothing arrived) is not a stall: a bridge without traffic is ready.
 * A message that fails and comes back (redelivered after a reconnect) keeps the stall's start.
 */
export interface ProgressWatch {
  /** A message arrived to be forwarded. */
  arrived(now?: number): void;
  /** A message was forwarded: whatever waited before is moving. */
  progressed(): void;
  /** True while something has waited longer than stalledAfterMs with nothing forwarded. */
  stalled(now?: number): boolean;
}

export function createProgressWatch(stalledAfterMs: number): ProgressWatch {
  let waitingSince: number | undefined;
  return {
    arrived(now = Date.now()) {
      waitingSince ??= now;
    },
    progressed() {
      waitingSince = undefined;
    },
    stalled(now = Date.now()) {
      return waitingSince !== undefined && now - waitingSince > stalledAfterMs;
    },
  };
}
