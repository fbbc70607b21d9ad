/**
 * The live view of one order as Server-Sent Events. Events:
 *   `track`    the whole /track answer: first, then after every status change (and after a listener reconnect);
 *   `position` the driver moved: the database's notice as it is (no query per position);
 *   `end`      the order is delivered or cancelled; the server closes the stream (clients should not reconnect).
 * Every `track` and `position` carries an id: the version of the state it shows (see eventId). A client that
 * reconnects (EventSource sends the last id as Last-Event-ID) gets the current `track` at once, whatever it missed:
 * the latest state is all a map needs, so nothing is replayed. The id tells it whether that state is newer.
 * A comment line every heartbeat period keeps proxies and load balancers from dropping a quiet stream. Nothing queues for
 * a client that falls behind: it skips to the newest state, and one behind for two heartbeats is dropped (sse-sink.ts).
 */
import { AppError } from "../../../lib/errors.ts";
import type { FeedEvent, OrderFeed } from "./feed.ts";
import type { Track } from "./model.ts";
import type { TrackingService } from "./service.ts";
import type { Heartbeats } from "./heartbeats.ts";
import { createSseSink, type EventKind, type SinkClose, type SseSink } from "./sse-sink.ts";
import type { CloseReason } from "./streams.ts";

export const DEFAULT_HEARTBEAT_MS = 15_000;
const TERMINAL: ReadonlySet<string> = new Set(["delivered", "cancelled"]);

export interface LiveStreamDeps {
  feed: OrderFeed;
  tracking: TrackingService;
  /** The process's heartbeat timer (heartbeats.ts), shared by its streams. */
  heartbeats: Heartbeats;
}

/**
 * An event's id: the order's status and its driver's position time in ms (0 without one), e.g. `assigned.1764470000123`.
 * Both only move forward while an order is live, so a client can tell a newer state from a replay.
 */
export const eventId = (status: string, positionMs: number) =>
  `${status}.${Number.isFinite(positionMs) ? positionMs : 0}`;

export interface LiveStreamOptions {
  /** Called once when the stream closes, with why (not when opening fails: the caller sees that as a throw). */
  onClose?: (reason: CloseReason) => void;
}

/** What a stream writes to: an SSE body over Bun.serve (sse-sink.ts), or a raw socket (live-socket.ts). */
export type LiveSink = Pick<SseSink, "send" | "beat" | "end">;

/** Written first on every stream: EventSource waits this long before it reconnects. */
export const RETRY_HINT = "retry: 3000\n\n";

/** The stream's response headers (besides the status), on either server. */
export const LIVE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no", // nginx would otherwise buffer the stream
} as const;

/** The live stream of one order as the API's response (Bun.serve). */
export async function openLiveStream(
  orderId: string,
  deps: LiveStreamDeps,
  options: LiveStreamOptions = {},
): Promise<Response> {
  const sink = await startLiveStream(orderId, deps, (onClose) => createSseSink({ preamble: RETRY_HINT, onClose }), options);
  return new Response(sink.body, { headers: LIVE_HEADERS });
}

/**
 * Subscribes to the order, reads its snapshot and starts the stream on the sink `createSink` makes (it must call
 * onClose when the client goes away or is dropped). Throws, with nothing left subscribed, when the order is unknown or
 * the database fails.
 */
export async function startLiveStream<S extends LiveSink>(
  orderId: string,
  deps: LiveStreamDeps,
  createSink: (onClose: (reason: SinkClose) => void) => S,
  options: LiveStreamOptions = {},
): Promise<S> {
  // Subscribe before reading the snapshot: whatever commits in between is buffered, not lost.
  const early: FeedEvent[] = [];
  let deliver: ((event: FeedEvent) => void) | undefined;
  const unsubscribe = await deps.feed.subscribe(orderId, (event) => (deliver ? deliver(event) : early.push(event)));

  let snapshot: Track | undefined;
  try {
    snapshot = await deps.tracking.track(orderId);
  } catch (error) {
    unsubscribe();
    throw error;
  }
  if (!snapshot) {
    unsubscribe();
    throw new AppError("NOT_FOUND", `order ${orderId} does not exist`);
  }
  const first = snapshot;

  let finished = false;
  let stopBeating: (() => void) | undefined;
  // Positions not newer than the last one sent are stale (buffered before the snapshot, or replays).
  let lastPositionMs = first.driver?.updated_at ? Date.parse(first.driver.updated_at) : -Infinity;

  function finish(reason: CloseReason) {
    if (finished) return;
    finished = true;
    stopBeating?.();
    unsubscribe();
    options.onClose?.(reason);
  }
  const sink = createSink(finish);
  const frame = (event: string, data: unknown, id?: string) =>
    `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  const send = (kind: EventKind, data: unknown, id: string) => {
    if (!finished) sink.send(frame(kind, data, id), kind);
  };
  const end = (reason: CloseReason, last?: string) => {
    finish(reason);
    sink.end(last);
  };

  let lastStatus = first.status;
  const sendTrack = (track: Track) => {
    lastStatus = track.status;
    if (track.driver?.updated_at) lastPositionMs = Math.max(lastPositionMs, Date.parse(track.driver.updated_at));
    const id = eventId(track.status, lastPositionMs);
    if (TERMINAL.has(track.status)) {
      end("ended", frame("track", track, id) + frame("end", { order_id: track.order_id, status: track.status }));
    } else {
      send("track", track, id);
    }
  };

  // Status changes are rare, but several may arrive while one re-read runs: re-read once more after it, not N times.
  let refreshing = false;
  let refreshAgain = false;
  const refresh = async () => {
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    refreshing = true;
    try {
      do {
        refreshAgain = false;
        const track = await deps.tracking.track(orderId);
        if (!finished && track) sendTrack(track);
      } while (refreshAgain && !finished);
    } catch (error) {
      console.error(`[api] live ${orderId}: re-reading the order failed`, error);
    } finally {
      refreshing = false;
    }
  };

  const handle = (event: FeedEvent) => {
    if (finished) return;
    switch (event.kind) {
      case "position": {
        const at = event.notice.at ? Date.parse(event.notice.at) : Date.now();
        if (at <= lastPositionMs) return;
        lastPositionMs = at;
        send("position", event.notice, eventId(lastStatus, at));
        return;
      }
      case "status":
        // A notice of the status the client already has (committed before the snapshot was read) adds nothing.
        if (event.notice.status !== lastStatus) void refresh();
        return;
      case "resync":
        void refresh();
        return;
      case "closing":
        end("shutdown");
    }
  };

  sendTrack(first);
  for (const event of early.splice(0)) handle(event);
  deliver = handle;
  if (!finished) stopBeating = deps.heartbeats.add(sink.beat);

  return sink;
}
