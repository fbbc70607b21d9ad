/**
 * One timer per process for every live stream's heartbeat, instead of a setInterval per stream (a timer object and
 * its closure each: ~0.4 KB per stream in Bun alone, `bench/fanout/stream-memory.ts`). The timer visits one of
 * `slots` buckets every periodMs / slots; a stream joins the bucket visited last, so its first beat comes between
 * (slots - 1) / slots of a period and a period after it opens, and one every period after that: the beats are spread
 * as the streams' openings are, as with a timer each. The timer runs only while some stream is registered, so an
 * idle process (or a test) has none.
 */
/** What beats: a stream (its own method, so a stream holds no closure for its heartbeat). */
export interface Beater {
  beat(): void;
}

export interface Heartbeats {
  /** Calls `member.beat()` once per period from now on, until remove(member). */
  add(member: Beater): void;
  /** Stops beating `member`; removing one that is not registered does nothing. */
  remove(member: Beater): void;
  /** Streams registered. */
  readonly size: number;
}

export const HEARTBEAT_SLOTS = 16;

export function createHeartbeats(periodMs: number, slots = HEARTBEAT_SLOTS): Heartbeats {
  if (!(periodMs > 0) || !Number.isInteger(slots) || slots < 1) {
    throw new RangeError(`heartbeats: period ${periodMs} ms and ${slots} slots must be positive`);
  }
  const buckets = Array.from({ length: slots }, () => new Set<Beater>());
  let size = 0;
  let visiting = 0; // the bucket the next tick beats
  let timer: ReturnType<typeof setInterval> | undefined;

  const tick = () => {
    const bucket = buckets[visiting]!;
    visiting = (visiting + 1) % slots;
    for (const member of bucket) {
      try {
        member.beat();
      } catch (error) {
        console.error("[api] a live stream's heartbeat failed", error); // one stream's fault stops no other
      }
    }
  };

  return {
    add(member) {
      // The bucket visited last: the timer comes back to it (slots - 1) ticks from the next one.
      const bucket = buckets[(visiting + slots - 1) % slots]!;
      if (bucket.has(member)) return;
      bucket.add(member);
      size += 1;
      timer ??= setInterval(tick, periodMs / slots);
    },
    remove(member) {
      // Looked up rather than remembered per member: 16 set lookups once per stream beat a stored handle per stream.
      for (const bucket of buckets) {
        if (!bucket.delete(member)) continue;
        size -= 1;
        if (size === 0) {
          clearInterval(timer);
          timer = undefined;
        }
        return;
      }
    },
    get size() {
      return size;
    },
  };
}
