/**
 * Assignments in batches (issue 16, migration 0017): concurrent requests to assign an order to one of its proposed
 * drivers are gathered while earlier batches are in flight and sent as one `assign_batch` call, so they share a
 * transaction and its commit (each assignment's own commit capped them at ~1,000/s on this box). The database ranks
 * each order's candidates by their current rows and claims one; a batch never waits for a row lock.
 *
 * Per order the answer is its driver, or the refusal as an error carrying the SQLSTATE (so api/errors.ts maps it as
 * any other database refusal); 55P03 (the order or its nearest driver locked by another transaction) is retried here
 * alone with `assign_among`, which waits for the lock as 0015 does.
 */
import { type Sql, sqlState } from "../../../lib/db.ts";
import { arrayLiteral, NO_DRIVER } from "./assignment.ts";
import type { DriverIndex } from "./driver-index.ts";

/** Orders per assign_batch call (the function takes up to 1,000). */
export const MAX_BATCH = 256;
const LOCKED = "55P03";

export interface DispatcherOptions {
  /**
   * Batches in flight at once: the waiting orders are split evenly over the free slots, so the database's cores
   * share the work (more slots use more connections and meet more lock conflicts).
   */
  inFlight: number;
  maxBatch?: number;
}

interface Pending {
  orderId: string;
  candidates: string[];
  resolve: (driverId: string) => void;
  reject: (error: unknown) => void;
}

/** A refusal from the database for one order of a batch, shaped as postgres.js shapes errors. */
export class AssignmentRefused extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "AssignmentRefused";
  }
}

export function createDispatcher(sql: Sql, options: DispatcherOptions) {
  const maxBatch = Math.max(1, Math.min(options.maxBatch ?? MAX_BATCH, MAX_BATCH));
  const queue: Pending[] = [];
  let inFlight = 0;
  const counters = { batches: 0, orders: 0, lockedRetries: 0 };

  async function alone(p: Pending): Promise<void> {
    counters.lockedRetries++;
    try {
      const [row] = await sql<{ driver_id: string }[]>`
        select driver_id from assign_among(${p.orderId}, ${arrayLiteral(p.candidates)}::uuid[])`;
      p.resolve(row!.driver_id);
    } catch (error) {
      p.reject(error);
    }
  }

  async function send(batch: Pending[]): Promise<void> {
    counters.batches++;
    counters.orders += batch.length;
    const rows = await sql<{ order_id: string; driver_id: string | null; error_code: string | null; error_message: string | null }[]>`
      select order_id, driver_id, error_code, error_message from assign_batch(
        ${arrayLiteral(batch.map((p) => p.orderId))}::uuid[],
        ${arrayLiteral(batch.flatMap((p) => p.candidates))}::uuid[],
        ${arrayLiteral(batch.flatMap((p, i) => p.candidates.map(() => i + 1)))}::int[])`;
    for (const [i, p] of batch.entries()) {
      const row = rows[i];
      if (row?.driver_id) p.resolve(row.driver_id);
      // Retried on its own connection, outside this batch's slot: waiting for the lock must not stall the next batch.
      else if (row?.error_code === LOCKED) void alone(p);
      else p.reject(new AssignmentRefused(row?.error_code ?? "XX000", row?.error_message ?? "assign_batch gave no answer"));
    }
  }

  let pumpScheduled = false;
  /**
   * After the current turn's microtasks: the callers a finished batch released re-submit in them, and go together
   * in the next batch instead of the first going alone.
   */
  function schedulePump() {
    if (pumpScheduled) return;
    pumpScheduled = true;
    setImmediate(() => {
      pumpScheduled = false;
      pump();
    });
  }

  function pump() {
    while (inFlight < options.inFlight && queue.length > 0) {
      const share = Math.ceil(queue.length / (options.inFlight - inFlight));
      const batch = queue.splice(0, Math.min(maxBatch, share));
      inFlight++;
      send(batch)
        .catch((error) => {
          for (const p of batch) p.reject(error);
        })
        .finally(() => {
          inFlight--;
          schedulePump();
        });
    }
  }

  return {
    /** The driver the order went to, among `candidates` (non-empty); rejects with the database's refusal. */
    assign(orderId: string, candidates: readonly string[]): Promise<string> {
      return new Promise<string>((resolve, reject) => {
        queue.push({ orderId, candidates: [...candidates], resolve, reject });
        schedulePump();
      });
    },
    stats: () => ({ ...counters, queued: queue.length, inFlight }),
  };
}

export type Dispatcher = ReturnType<typeof createDispatcher>;

/** Dispatch through the in-memory index and batches (0017); without it, every assignment searches H3 cells (0011). */
export interface DispatchDeps {
  index: DriverIndex;
  dispatcher: Dispatcher;
}

/**
 * The order given to the nearest of the index's proposals that is still free, or undefined when the index has no
 * recent snapshot, proposes nobody, or none of its proposals is free (T1409): the caller then searches exactly.
 * Any other refusal is thrown.
 */
export async function assignProposed(dispatch: DispatchDeps, orderId: string, lat: number, lon: number) {
  const proposed = dispatch.index.propose(lat, lon);
  if (!proposed || proposed.length === 0) return undefined;
  try {
    const driverId = await dispatch.dispatcher.assign(orderId, proposed);
    dispatch.index.claimed(driverId);
    return driverId;
  } catch (error) {
    if (sqlState(error) === NO_DRIVER) return undefined;
    throw error;
  }
}
