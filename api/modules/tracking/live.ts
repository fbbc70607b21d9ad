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
  const stream = new LiveStream<S>(orderId, deps, options.onClose);
  // Subscribe before reading the snapshot: whatever commits in between is buffered, not lost.
  stream.unsubscribe = await deps.feed.subscribe(orderId, stream.onEvent);

  let snapshot: Track | undefined;
  try {
    snapshot = await deps.tracking.track(orderId);
  } catch (error) {
    stream.unsubscribe();
    throw error;
  }
  if (!snapshot) {
    stream.unsubscribe();
    throw new AppError("NOT_FOUND", `order ${orderId} does not exist`);
  }
  return stream.start(snapshot, createSink(stream.onSinkClose));
}

/**
 * One stream's state and rules. A class rather than closures: at 100,000 streams every function and scope a stream
 * holds costs ~100 bytes times 100,000 (issue #15: 4 KB per stream, all in).
 */
class LiveStream<S extends LiveSink> {
  sink: S | undefined;
  unsubscribe: () => void = () => undefined;
  /** Events that arrived before the snapshot was read, handled once it is sent. */
  private early: FeedEvent[] | undefined = [];
  private finished = false;
  private lastStatus = "";
  /** Positions not newer than the last one sent are stale (buffered before the snapshot, or replays). */
  private lastPositionMs = -Infinity;
  /** Status changes are rare, but several may arrive while one re-read runs: re-read once more after it, not N times. */
  private refreshing = false;
  private refreshAgain = false;

  constructor(
    private readonly orderId: string,
    private readonly deps: LiveStreamDeps,
    private readonly onClose: ((reason: CloseReason) => void) | undefined,
  ) {}

  /** The feed's listener. */
  readonly onEvent = (event: FeedEvent): void => {
    if (this.early) this.early.push(event);
    else this.handle(event);
  };

  /** The sink's: the client went away or was dropped. */
  readonly onSinkClose = (reason: CloseReason): void => this.finish(reason);

  start(snapshot: Track, sink: S): S {
    this.sink = sink;
    this.lastPositionMs = snapshot.driver?.updated_at ? Date.parse(snapshot.driver.updated_at) : -Infinity;
    this.sendTrack(snapshot);
    const early = this.early ?? [];
    this.early = undefined;
    for (const event of early) this.handle(event);
    if (!this.finished) this.deps.heartbeats.add(this);
    return sink;
  }

  /** The process's heartbeat timer calls this once per period (heartbeats.ts). */
  beat(): void {
    this.sink?.beat();
  }

  private finish(reason: CloseReason): void {
    if (this.finished) return;
    this.finished = true;
    this.deps.heartbeats.remove(this);
    this.unsubscribe();
    this.onClose?.(reason);
  }

  private send(kind: EventKind, data: unknown, id: string): void {
    if (!this.finished) this.sink!.send(frame(kind, data, id), kind);
  }

  private end(reason: CloseReason, last?: string): void {
    this.finish(reason);
    this.sink!.end(last);
  }

  private sendTrack(track: Track): void {
    this.lastStatus = track.status;
    if (track.driver?.updated_at) this.lastPositionMs = Math.max(this.lastPositionMs, Date.parse(track.driver.updated_at));
    const id = eventId(track.status, this.lastPositionMs);
    if (TERMINAL.has(track.status)) {
      this.end("ended", frame("track", track, id) + frame("end", { order_id: track.order_id, status: track.status }));
    } else {
      this.send("track", track, id);
    }
  }

  private async refresh(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = true;
    try {
      do {
        this.refreshAgain = false;
        const track = await this.deps.tracking.track(this.orderId);
        if (!this.finished && track) this.sendTrack(track);
      } while (this.refreshAgain && !this.finished);
    } catch (error) {
      console.error(`[api] live ${this.orderId}: re-reading the order failed`, error);
    } finally {
      this.refreshing = false;
    }
  }

  private handle(event: FeedEvent): void {
    if (this.finished) return;
    switch (event.kind) {
      case "position": {
        const at = event.notice.at ? Date.parse(event.notice.at) : Date.now();
        if (at <= this.lastPositionMs) return;
        this.lastPositionMs = at;
        this.send("position", event.notice, eventId(this.lastStatus, at));
        return;
      }
      case "status":
        // A notice of the status the client already has (committed before the snapshot was read) adds nothing.
        if (event.notice.status !== this.lastStatus) void this.refresh();
        return;
      case "resync":
        void this.refresh();
        return;
      case "closing":
        this.end("shutdown");
    }
  }
}

const frame = (event: string, data: unknown, id?: string) =>
  `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
