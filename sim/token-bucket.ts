/**
 * Paces publishing: tokens accrue at the target rate and each tick spends the whole ones, so the offered rate stays
 * exact however late a tick fires. If the process stalls, at most `burst` tokens are kept; the rest are counted as
 * shed rather than released as a thundering burst. Each token also has the moment it accrued (`dueMs`), so a
 * simulated phone can stamp its fix on its own regular clock instead of on whenever the tick happened to fire.
 */
export interface TokenBucket {
  /** Whole tokens accrued since the last call; they are spent by taking them. */
  take(nowMs: number): number;
  /** When the i-th token (0-based) of the last take accrued: never after the take's nowMs. */
  dueMs(i: number): number;
  /** Tokens dropped because they exceeded the burst. */
  shed(): number;
}

export function createTokenBucket(ratePerSecond: number, burst: number, startMs: number): TokenBucket {
  let tokens = 0;
  let last = startMs;
  let shed = 0;
  /** Tokens that have left the bucket, taken or shed (fractional): the schedule position of the next one. */
  let consumed = 0;
  let takeStart = 0;
  return {
    take(nowMs) {
      tokens += (ratePerSecond * Math.max(0, nowMs - last)) / 1000;
      last = Math.max(last, nowMs);
      if (tokens > burst) {
        shed += tokens - burst;
        consumed += tokens - burst;
        tokens = burst;
      }
      const whole = Math.floor(tokens);
      tokens -= whole;
      takeStart = consumed;
      consumed += whole;
      return whole;
    },
    dueMs: (i) => startMs + ((takeStart + i + 1) * 1000) / ratePerSecond,
    shed: () => Math.floor(shed),
  };
}
