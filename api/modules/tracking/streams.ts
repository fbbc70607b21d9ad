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
  "slow_client", // the client stopped reading: it stayed behind for SLOW_CLIENT_HEARTBEATS heartbeats (sse-sink.ts)
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
  /** acquire() without the closure, for a caller that frees its slot exactly once itself: false at the ceiling. */
  take(): boolean;
  /** Frees a slot that take() gave (bound: it may be passed around as it is). */
  readonly free: (reason?: CloseReason) => void;
}

export function createLiveStreamGate(max: number): LiveStreamGate {
  let open = 0;
  let refused = 0;
  const closed = Object.fromEntries(CLOSE_REASONS.map((r) => [r, 0])) as Record<CloseReason, number>;
  const take = () => {
    if (open >= max) {
      refused += 1;
      return false;
    }
    open += 1;
    return true;
  };
  const free = (reason?: CloseReason) => {
    open -= 1;
    if (reason) closed[reason] += 1;
  };
  return {
    max,
    get open() {
      return open;
    },
    get refused() {
      return refused;
    },
    closed,
    take,
    free,
    acquire() {
      if (!take()) return undefined;
      let freed = false;
      return (reason) => {
        if (freed) return;
        freed = true;
        free(reason);
      };
    },
  };
}

/**
 * Heartbeats in a row with the client behind (the last write not taken) before it is dropped: 30-45 s at the default
 * 15 s. Meanwhile nothing queues for it: newer events replace the waiting ones (see sse-sink.ts).
 */
export const SLOW_CLIENT_HEARTBEATS = 2;
