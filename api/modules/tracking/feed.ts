/**
 * The order tracking feed: ONE `LISTEN order_tracking` connection per API process, fanned out in memory to the live
 * streams by order id. The apply procedure notifies once per updated order per batch and order_transition once per
 * status change, so a process receives every order's updates; only those with a subscriber are decoded further.
 */
import type { Sql } from "../../../lib/db.ts";

export const TRACKING_CHANNEL = "order_tracking";

/** What the database says about one order (see 0004_apply_position_batch.sql and 0003_state_machines.sql). */
export interface OrderNotice {
  order_id: string;
  status: string;
  driver_id?: string;
  driver_state?: string;
  lat?: number;
  lon?: number;
  at?: string;
  eta_seconds?: number | null;
  /** When the database sent the notice, just before the commit that delivers it (migration 0021). */
  published_at?: string;
}

export type FeedEvent =
  /** A new position of the order's driver: everything a map needs is in the notice itself. */
  | { kind: "position"; notice: OrderNotice & { lat: number; lon: number } }
  /** The order changed status; the notice carries only the status, subscribers re-read the whole order. */
  | { kind: "status"; notice: OrderNotice }
  /** The listener reconnected and may have missed notices: re-read the order. */
  | { kind: "resync" }
  /** The process is shutting down. */
  | { kind: "closing" };

export type FeedListener = (event: FeedEvent) => void;

/** Sees every order that changed (`null`: any order may have, after a reconnect or at shutdown). */
export type FeedObserver = (orderId: string | null) => void;

export interface OrderFeed {
  /** Resolves once LISTEN is active, so nothing committed after it is missed; returns the unsubscribe function. */
  subscribe(orderId: string, listener: FeedListener): Promise<() => void>;
  /**
   * Follows every order's changes (the track cache): resolves once LISTEN is active, with the function that stops
   * following. Called for each notice, with null when notices may have been missed.
   */
  observe(observer: FeedObserver): Promise<() => void>;
  /**
   * Issues LISTEN now rather than at the first subscription; resolves once it is active (at once if it already is).
   * The server calls it at start-up, so the listener is not set up in the middle of a reconnect storm, and /ready
   * waits for it.
   */
  start(): Promise<void>;
  /** Live subscriptions (for the metrics and tests). */
  readonly subscribers: number;
  /** Tells every subscriber to finish; later subscriptions are refused. */
  close(): void;
}

function parseNotice(payload: string): OrderNotice | undefined {
  try {
    const value: unknown = JSON.parse(payload);
    if (typeof value !== "object" || value === null) return undefined;
    const notice = value as Partial<OrderNotice>;
    return typeof notice.order_id === "string" && typeof notice.status === "string"
      ? (notice as OrderNotice)
      : undefined;
  } catch {
    return undefined;
  }
}

function toEvent(notice: OrderNotice): FeedEvent {
  return typeof notice.lat === "number" && typeof notice.lon === "number"
    ? { kind: "position", notice: { ...notice, lat: notice.lat, lon: notice.lon } }
    : { kind: "status", notice };
}

export function createOrderFeed(sql: Sql): OrderFeed {
  // An order's one listener as it is, a Set only once a second one watches it: most orders have one watcher, and a Set
  // each would cost ~0.2 KB per stream at 100,000 streams (issue #15).
  const byOrder = new Map<string, FeedListener | Set<FeedListener>>();
  const observers = new Set<FeedObserver>();
  let listening: Promise<unknown> | undefined;
  let listenCount = 0;
  let closed = false;

  const dispatch = (orderId: string, event: FeedEvent) => {
    const listeners = byOrder.get(orderId);
    if (typeof listeners === "function") listeners(event);
    else if (listeners) for (const listener of listeners) listener(event);
  };
  const broadcast = (event: FeedEvent) => {
    for (const orderId of [...byOrder.keys()]) dispatch(orderId, event);
  };

  const onNotify = (payload: string) => {
    if (byOrder.size === 0 && observers.size === 0) return;
    const notice = parseNotice(payload);
    if (!notice) return;
    const orderId = notice.order_id.toLowerCase();
    for (const observer of observers) observer(orderId);
    if (byOrder.has(orderId)) dispatch(orderId, toEvent(notice));
  };
  // postgres.js re-issues LISTEN after a reconnect and calls this again; notices sent meanwhile are lost.
  const onListen = () => {
    listenCount += 1;
    if (listenCount > 1) {
      for (const observer of observers) observer(null);
      broadcast({ kind: "resync" });
    }
  };

  const ensureListening = () => {
    listening ??= sql.listen(TRACKING_CHANNEL, onNotify, onListen).catch((error: unknown) => {
      listening = undefined; // the next subscriber tries again
      throw error;
    });
    return listening;
  };

  return {
    async start() {
      if (closed) throw new Error("the order feed is closed");
      await ensureListening();
    },
    async subscribe(orderId, listener) {
      if (closed) throw new Error("the order feed is closed");
      const key = orderId.toLowerCase();
      const present = byOrder.get(key);
      if (!present) byOrder.set(key, listener);
      else if (typeof present === "function") byOrder.set(key, new Set([present, listener]));
      else present.add(listener);
      const unsubscribe = () => {
        const current = byOrder.get(key);
        if (current === listener) byOrder.delete(key);
        else if (typeof current === "object" && current.delete(listener) && current.size === 0) byOrder.delete(key);
      };
      try {
        await ensureListening();
      } catch (error) {
        unsubscribe();
        throw error;
      }
      return unsubscribe;
    },
    async observe(observer) {
      if (closed) throw new Error("the order feed is closed");
      observers.add(observer);
      try {
        await ensureListening();
      } catch (error) {
        observers.delete(observer);
        throw error;
      }
      return () => void observers.delete(observer);
    },
    get subscribers() {
      let count = 0;
      for (const listeners of byOrder.values()) count += typeof listeners === "function" ? 1 : listeners.size;
      return count;
    },
    close() {
      closed = true;
      for (const observer of observers) observer(null);
      observers.clear();
      broadcast({ kind: "closing" });
      byOrder.clear();
    },
  };
}
