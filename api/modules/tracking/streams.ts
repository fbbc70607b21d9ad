/**
 * How many live streams one API process holds, and when one is dropped. Each stream is a socket, and a process that
 * reaches its open-file limit seizes (issue #17: at 19,964 streams under a limit of 20,000, Bun's accept loop retried
 * EMFILE at 91% CPU and /health timed out while the listen backlog filled). So streams stop well below the limit and
 * the rest of the descriptors stay for ordinary requests, the database pool and its LISTEN connection, the Kafka
 * sidecar's pipes and Bun's own; past the ceiling a new stream is refused at once (503 TOO_MANY_STREAMS).
 */
import { readFileSync } from "node:fs";
import { AppError } from "../../../lib/errors.ts";

/** What a refused client is told to wait: streams last an order's life, so a slot frees up in seconds, not ms. */
export const LIVE_RETRY_AFTER_SECONDS = 10;

/** Without /proc (macOS in development) the limit is unknown: a ceiling that fits its default soft limit of 10,240. */
const CEILING_WITHOUT_LIMIT = 8_192;

export const CLOSE_REASONS = [
  "ended", // the order was delivered or cancelled
  "client", // the client closed it, or its socket failed
  "slow_client", // the client stopped reading: its queue stayed over the mark (see createStallWatch)
  "shutdown", // the process is draining
] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];

/** The soft "Max open files" of /proc/self/limits (RLIMIT_NOFILE); undefined where it is unknown or unlimited. */
export function openFileLimit(limits?: string): number | undefined {
  let text = limits;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/limits", "utf8");
    } catch {
      return undefined;
    }
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1];
  return soft && /^\d+$/.test(soft) ? Number(soft) : undefined;
}

/** Descriptors kept from streams: a tenth of the limit, at least 256 (20 database connections and ~15 of Bun's). */
export const descriptorReserve = (limit: number) => Math.max(256, Math.ceil(limit / 10));

/**
 * The process's ceiling: LIVE_STREAMS_MAX when set (0: unset), else the open-file limit minus the reserve. A set value
 * that eats into the reserve is refused at start-up, naming the variable: it would bring back the seizure.
 */
export function liveStreamCeiling(configured: number, limit: number | undefined): number {
  if (limit === undefined) return configured > 0 ? configured : CEILING_WITHOUT_LIMIT;
  const most = Math.max(0, limit - descriptorReserve(limit));
  if (configured > most) {
    throw new AppError(
      "CONFIG_INVALID",
      `LIVE_STREAMS_MAX: ${configured} is more than ${most}, the open-file limit ${limit} less a reserve of ` +
        `${descriptorReserve(limit)} for ordinary requests (raise the limit with ulimit -n, or run more processes)`,
    );
  }
  return configured > 0 ? configured : most;
}

/** The process's live streams: a slot each, counted for /metrics. */
export interface LiveStreamGate {
  readonly max: number;
  readonly open: number;
  /** Streams refused at the ceiling since start. */
  readonly refused: number;
  /** Streams closed since start, by why. */
  readonly closed: Readonly<Record<CloseReason, number>>;
  /**
   * A slot for one stream, or undefined at the ceiling (counted as refused). Free it once: with the reason the stream
   * closed, or with none when it never opened (the order was not found, the database failed).
   */
  acquire(): ((reason?: CloseReason) => void) | undefined;
}

export function createLiveStreamGate(max: number): LiveStreamGate {
  let open = 0;
  let refused = 0;
  const closed = Object.fromEntries(CLOSE_REASONS.map((r) => [r, 0])) as Record<CloseReason, number>;
  return {
    max,
    get open() {
      return open;
    },
    get refused() {
      return refused;
    },
    closed,
    acquire() {
      if (open >= max) {
        refused += 1;
        return undefined;
      }
      open += 1;
      let freed = false;
      return (reason) => {
        if (freed) return;
        freed = true;
        open -= 1;
        if (reason) closed[reason] += 1;
      };
    },
  };
}

/**
 * A stream's queue may hold this many bytes before it counts as not draining (ByteLengthQueuingStrategy): about 50
 * position events, so a client that reads at all never reaches it, while a stalled one costs at most a few times it.
 */
export const LIVE_QUEUE_MARK_BYTES = 16 * 1024;
/** Heartbeats in a row with the queue over its mark before the client is dropped (30-45 s at the default 15 s). */
export const SLOW_CLIENT_HEARTBEATS = 2;
/** Over this much queued the client is dropped at once, whatever the heartbeats say: memory per stream is bounded. */
export const LIVE_QUEUE_MAX_BYTES = 4 * LIVE_QUEUE_MARK_BYTES;

/**
 * The write-timeout rule of one stream, on the controller's desiredSize (mark - queued bytes; below 0 means the
 * client is not taking what is sent). `beat` runs at each heartbeat, `wrote` after each write; both answer true when
 * the client must be dropped. A dead peer (gone without a FIN) fills the socket's buffer, then this queue, and is
 * dropped the same way; a quiet but healthy client drains its heartbeats and is never dropped.
 */
export function createStallWatch(options: { markBytes?: number; maxBytes?: number; heartbeats?: number } = {}) {
  const mark = options.markBytes ?? LIVE_QUEUE_MARK_BYTES;
  const max = options.maxBytes ?? LIVE_QUEUE_MAX_BYTES;
  const limit = options.heartbeats ?? SLOW_CLIENT_HEARTBEATS;
  let stalled = 0;
  return {
    beat(desiredSize: number | null): boolean {
      if (desiredSize === null) return false; // errored or closed: finished elsewhere
      stalled = desiredSize < 0 ? stalled + 1 : 0;
      return stalled >= limit;
    },
    wrote(desiredSize: number | null): boolean {
      return desiredSize !== null && mark - desiredSize > max;
    },
  };
}
