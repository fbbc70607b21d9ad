/**
 * Paces publishing: tokens accrue at the target rate and each tick spends the whole ones, so the offered rate stays
 * exact however late a tick fires. If the process stalls, at most `burst` tokens are kept; the rest are counted as
 * shed rather than released as a thundering burst.
 */
export interface TokenBucket {
  /** Whole tokens accrued since the last call; they are spent by taking them. */
  take(nowMs: number): number;
  /** Tokens dropped because they exceeded the burst. */
  shed(): number;
}

export function createTokenBucket(ratePerSecond: number, burst: number, startMs: number): TokenBucket {
  let tokens = 0;
  let last = startMs;
  let shed = 0;
  return {
    take(nowMs) {
      tokens += (ratePerSecond * Math.max(0, nowMs - last)) / 1000;
      last = Math.max(last, nowMs);
      if (tokens > burst) {
        shed += tokens - burst;
        tokens = burst;
      }
      const whole = Math.floor(tokens);
      tokens -= whole;
      return whole;
    },
    shed: () => Math.floor(shed),
  };
}
