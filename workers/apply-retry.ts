/**
 * When applying a batch fails: which failures are worth the same batch again, and how long to wait between tries.
 *
 *   transient  the database is away, restarting, overloaded, or we lost a lock race: retried with backoff for as
 *              long as it takes (the worker consumes nothing else meanwhile: back-pressure);
 *   content    the database refuses a value (SQLSTATE class 22/23): the same batch fails the same way again, so its
 *              refused rows are isolated (isolate-refused.ts);
 *   unknown    no SQLSTATE at all (a socket error under a name we do not know, a bug, a row COPY cannot encode), or
 *              25P02 (an earlier statement of the transaction failed, which is not said): retried a few times in case
 *              it was a blip, then isolated like a content error;
 *   deployment any other SQLSTATE (a missing function or table): the deployment's fault; nothing is committed and
 *              the worker stops.
 */
import { sqlState } from "../lib/db.ts";

export type ApplyErrorKind = "transient" | "content" | "unknown" | "deployment";

const TRANSIENT_STATES = new Set([
  "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300", "53200",
  // The worker role's statement_timeout (db/roles.sql) cut a statement that waited too long: try the batch again.
  "57014",
  // postgres.js and the socket name connection failures by errno-like codes
  "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "CONNECTION_CLOSED", "CONNECTION_ENDED",
  "CONNECTION_DESTROYED", "CONNECT_TIMEOUT",
]);

/**
 * States that say an earlier statement of the transaction failed without telling which: found by bench:catch-up, a
 * batch's first try after a database outage failed with 25P02 on a loaded box and the worker stopped. The earlier
 * error is not known, so it is handled as an unknown one: tried again, and isolated if it keeps failing.
 */
const HIDDEN_CAUSE_STATES = new Set(["25P02"]);

export function classifyApplyError(error: unknown): ApplyErrorKind {
  const state = sqlState(error);
  if (state === undefined || HIDDEN_CAUSE_STATES.has(state)) return "unknown";
  if (state.startsWith("08") || TRANSIENT_STATES.has(state)) return "transient";
  if (state.startsWith("22") || state.startsWith("23")) return "content";
  return "deployment";
}

/** Tries of an unknown error before it is treated as bad content. */
export const UNKNOWN_ERROR_TRIES = 3;
export const FIRST_BACKOFF_MS = 100;
export const MAX_BACKOFF_MS = 5_000;

/** Doubling, capped. */
export const nextBackoffMs = (backoffMs: number): number => Math.min(backoffMs * 2, MAX_BACKOFF_MS);

export interface RetryOptions {
  /** Tries for an error without SQLSTATE (1 = no retry). */
  unknownTries: number;
  isStopping: () => boolean;
  onRetry: (error: unknown, kind: ApplyErrorKind, backoffMs: number) => void;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Runs `attempt` until it succeeds; retries transient errors without end and unknown ones `unknownTries` times, and
 * throws anything else (or the last unknown error). Resolves undefined if asked to stop while retrying.
 */
export async function withApplyRetries<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T | undefined> {
  const sleep = options.sleep ?? defaultSleep;
  let backoff = FIRST_BACKOFF_MS;
  let unknownFailures = 0;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      const kind = classifyApplyError(error);
      if (kind === "unknown") unknownFailures++;
      const retry = kind === "transient" || (kind === "unknown" && unknownFailures < options.unknownTries);
      if (!retry) throw error;
      options.onRetry(error, kind, backoff);
      if (options.isStopping()) return undefined;
      await sleep(backoff);
      backoff = nextBackoffMs(backoff);
    }
  }
}
