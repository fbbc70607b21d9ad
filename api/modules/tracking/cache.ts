/**
 * The customer's GET /track answer, kept in memory between the database's notices. Every change a customer can see
 * is announced on `order_tracking` (a position of the order's driver, a status change, a driver swept offline), so
 * an entry stays valid until its order's notice arrives, and is then dropped. A short time-to-live bounds what a
 * missed notice could cost (the LISTEN connection drops before it reconnects and says so); a reconnect empties
 * the whole cache. `position_age_seconds` is worked out per answer from the position's time, never cached.
 *
 * Loads are single-flight per order, and a load overtaken by a notice for its order is served to the requests that
 * were waiting on it (it was true when read) but not kept: the notice may describe a commit it did not see.
 */
import type { OrderFeed } from "./feed.ts";
import type { Track } from "./model.ts";

export interface TrackCacheOptions {
  /** Longest an entry is served without a notice; 0 turns the cache off. */
  ttlMs: number;
  maxEntries: number;
  now?: () => number;
}

export interface TrackCache {
  get(orderId: string): Promise<Track | undefined>;
  /** Entries held, answers served from them, and answers read from the database (for /metrics and the tests). */
  readonly size: number;
  readonly hits: number;
  readonly reads: number;
}

interface Entry {
  track: Track;
  positionAtMs: number | null;
  expiresAt: number;
}

interface Load {
  promise: Promise<Track | undefined>;
  overtaken: boolean;
}

/** The answer as of `nowMs`: only the driver's position age moves while an entry is held. */
function aged(entry: Entry, nowMs: number): Track {
  const { track, positionAtMs } = entry;
  if (!track.driver || positionAtMs === null) return track;
  return { ...track, driver: { ...track.driver, position_age_seconds: (nowMs - positionAtMs) / 1000 } };
}

export function createTrackCache(
  load: (orderId: string) => Promise<Track | undefined>,
  feed: OrderFeed,
  options: TrackCacheOptions,
): TrackCache {
  const now = options.now ?? Date.now;
  const entries = new Map<string, Entry>();
  const loading = new Map<string, Load>();
  let hits = 0;
  let reads = 0;
  const read = (orderId: string) => {
    reads += 1;
    return load(orderId);
  };

  const forget = (orderId: string | null) => {
    if (orderId === null) {
      entries.clear();
      for (const inFlight of loading.values()) inFlight.overtaken = true;
      loading.clear();
      return;
    }
    entries.delete(orderId);
    const inFlight = loading.get(orderId);
    if (inFlight) {
      inFlight.overtaken = true;
      loading.delete(orderId);
    }
  };
  // Nothing is kept until LISTEN is active (a notice sent before it would be missed); a failed LISTEN is retried
  // by the next request, which meanwhile reads the database. The feed drops its observers when it closes.
  let observing: Promise<unknown> | undefined;
  let active = false;
  const listening = (): boolean => {
    if (active) return true;
    observing ??= feed.observe(forget).then(
      () => (active = true),
      () => (observing = undefined),
    );
    return false;
  };

  const keep = (orderId: string, track: Track) => {
    if (entries.size >= options.maxEntries) {
      // Map order is insertion order: the oldest entry goes first.
      const oldest = entries.keys().next().value;
      if (oldest !== undefined) entries.delete(oldest);
    }
    const updatedAt = track.driver?.updated_at;
    entries.set(orderId, {
      track,
      positionAtMs: updatedAt ? Date.parse(updatedAt) : null,
      expiresAt: now() + options.ttlMs,
    });
  };

  return {
    async get(rawId) {
      if (options.ttlMs <= 0 || !listening()) return read(rawId);
      const orderId = rawId.toLowerCase();
      const entry = entries.get(orderId);
      const at = now();
      if (entry && entry.expiresAt > at) {
        hits += 1;
        return aged(entry, at);
      }
      if (entry) entries.delete(orderId);
      let inFlight = loading.get(orderId);
      if (!inFlight) {
        const started: Load = { promise: read(orderId), overtaken: false };
        inFlight = started;
        loading.set(orderId, started);
        started.promise.then(
          (track) => {
            if (loading.get(orderId) === started) loading.delete(orderId);
            // Unknown orders are not kept: one may be created the next moment, and creation sends no notice.
            if (track && !started.overtaken) keep(orderId, track);
          },
          () => {
            if (loading.get(orderId) === started) loading.delete(orderId);
          },
        );
      }
      return inFlight.promise;
    },
    get size() {
      return entries.size;
    },
    get hits() {
      return hits;
    },
    get reads() {
      return reads;
    },
  };
}
