/**
 * The body of one live stream: Bun's direct stream (no per-stream queue: the server writes straight to the socket),
 * with at most one write the client has not taken yet. While the client is behind, newer events replace what waits
 * instead of queueing behind it: a `track` (the whole state) replaces everything waiting, a `position` the position
 * waiting. A map only needs the latest, so a slow client skips to it; what one stream can hold is one write in flight
 * plus two events, whatever the rate. A client still behind after `heartbeats` heartbeats in a row (a dead peer, a
 * stalled reader) is dropped: its connection is reset, which frees the descriptor at once.
 *
 * Measured with `bench/fanout/stream-memory.ts` (10,000 idle streams, Bun alone): a direct stream costs the server
 * ~4.0 KB of RSS, a ReadableStream with a byte-length queue ~8.4-8.8 KB.
 */
import { SLOW_CLIENT_HEARTBEATS } from "./streams.ts";

/** What Bun hands a `type: "direct"` source's pull(): write() answers a Promise when the client is behind. */
export interface DirectController {
  write(data: string): number | Promise<number>;
  flush(): number | Promise<number> | undefined;
  close(): void;
}

/** What waits for a client that is behind: the newest of each kind. */
export type EventKind = "track" | "position";

export type SinkClose = "client" | "slow_client";

export interface SseSink {
  /** The Response body: a `type: "direct"` stream whose pull() is attach(). */
  readonly body: ReadableStream<Uint8Array>;
  /** Writes now, or holds the text as the newest of its kind while the client has not taken the last write. */
  send(text: string, kind: EventKind): void;
  /** A heartbeat comment if the client keeps up; if it has been behind for too many beats, drops it. */
  beat(): void;
  /** Writes `last` (after whatever waits) and closes the stream normally. */
  end(last?: string): void;
}

export interface SseSinkOptions {
  /** Written first, when the server starts taking the stream (e.g. the `retry:` hint). */
  preamble: string;
  /** Heartbeats in a row with the client behind before it is dropped. */
  heartbeats?: number;
  /** The stream is over for a reason the sink saw: the client went away, or it was dropped for being behind. */
  onClose(reason: SinkClose): void;
}

const HEARTBEAT = ": heartbeat\n\n";

/** The sink without its ReadableStream: what pull() and cancel() call, so the rules can be tested with a fake controller. */
export interface SseSinkCore extends Omit<SseSink, "body"> {
  /** The server (or a reader) starts taking the stream: open while the promise is pending (see `done`). */
  attach(controller: DirectController): Promise<void>;
  /** The client went away. */
  cancel(): void;
}

export function createSseSink(options: SseSinkOptions): SseSink {
  const core = createSseSinkCore(options);
  const body = new ReadableStream({
    type: "direct",
    pull: (controller: DirectController) => core.attach(controller),
    cancel: () => core.cancel(),
  } as unknown as ConstructorParameters<typeof ReadableStream<Uint8Array>>[0]);
  return { body, send: core.send, beat: core.beat, end: core.end };
}

export function createSseSinkCore(options: SseSinkOptions): SseSinkCore {
  const limit = options.heartbeats ?? SLOW_CLIENT_HEARTBEATS;
  let controller: DirectController | undefined;
  /** No write is possible: the server has not started taking the stream, or the client has not taken the last write. */
  let behind = true;
  let beatsBehind = 0;
  let heldTrack = "";
  let heldPosition = "";
  let over = false;
  let ending = false;

  let settle!: { resolve: () => void; reject: (reason?: unknown) => void };
  // What pull() returns: the stream stays open while it is pending, closes when it resolves, and resets the
  // connection when it rejects. Rejected with undefined: Bun prints a stream's error object, one log line per client.
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  done.catch(() => undefined); // a stream dropped before the server pulled it is not an unhandled rejection

  const close = (reason: SinkClose | undefined, drop: boolean) => {
    if (over) return;
    over = true;
    heldTrack = heldPosition = "";
    if (drop) {
      settle.reject(undefined);
    } else {
      settle.resolve(); // ends a response Bun.serve is sending
      try {
        controller?.close(); // ends a stream a reader is reading (app.handle in tests), which pull()'s end does not
      } catch {
        // already closed by the client
      }
    }
    if (reason) options.onClose(reason);
  };

  const write = (text: string) => {
    if (!controller) return;
    let pending: Promise<number> | undefined;
    try {
      const written = controller.write(text);
      const flushed = controller.flush();
      pending = written instanceof Promise ? written : flushed instanceof Promise ? flushed : undefined;
    } catch {
      close("client", false); // the client went away between two events
      return;
    }
    if (pending) {
      behind = true;
      pending.then(caughtUp, () => close("client", false));
    }
  };

  /** The client took the last write: send what waited (the newest state), or finish an ending stream. */
  function caughtUp() {
    if (over) return;
    behind = false;
    beatsBehind = 0;
    const waiting = heldTrack + heldPosition;
    heldTrack = heldPosition = "";
    if (waiting) write(waiting);
    if (ending) close(undefined, false);
  }

  return {
    attach(c) {
      if (controller) return done; // a reader's later read: the stream is already running
      controller = c;
      if (!over) {
        heldTrack = options.preamble + heldTrack;
        caughtUp();
      }
      return done;
    },
    cancel() {
      close("client", false);
    },
    send(text, kind) {
      if (over || ending) return;
      if (!behind) return write(text);
      if (kind === "track") {
        heldTrack = text;
        heldPosition = ""; // the track carries the newest position
      } else {
        heldPosition = text;
      }
    },
    beat() {
      if (over || ending) return;
      if (!behind) {
        beatsBehind = 0;
        write(HEARTBEAT);
      } else if (++beatsBehind >= limit) {
        close("slow_client", true);
      }
    },
    end(last = "") {
      if (over || ending) return;
      ending = true;
      heldTrack += heldPosition + last;
      heldPosition = "";
      // A client that is behind still gets the last words: one more write, then the stream closes.
      if (controller) caughtUp();
    },
  };
}
