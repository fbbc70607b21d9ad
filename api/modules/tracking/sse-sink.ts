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

/** How the transport learns the stream is over: `reset` when the client was dropped (reset the connection). */
export interface StreamEnd {
  ended(reset: boolean): void;
}

/** The sink without its ReadableStream: what pull() and cancel() call, so the rules can be tested with a fake controller. */
export interface SseSinkCore extends Omit<SseSink, "body"> {
  /**
   * The server (or a reader) starts taking the stream: open while the promise is pending, closed when it resolves,
   * reset when it rejects (what a direct stream's pull() returns).
   */
  attach(controller: DirectController): Promise<void>;
  /** The same for a transport that is told directly (the live socket server): no promise per stream. */
  run(controller: DirectController, end: StreamEnd): void;
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
  return { body, send: (text, kind) => core.send(text, kind), beat: () => core.beat(), end: (last) => core.end(last) };
}

export function createSseSinkCore(options: SseSinkOptions): SseSinkCore {
  return new Sink(options);
}

/**
 * One class, not a closure per rule: at 100,000 streams each function and scope a stream holds is ~100 bytes times
 * 100,000 (bench/fanout: issue #15's 4 KB per stream).
 */
class Sink implements SseSinkCore {
  private controller: DirectController | undefined;
  private ender: StreamEnd | undefined;
  /** What pull() got, once attach() was called. */
  private done: Promise<void> | undefined;
  /** How the stream ended, if it ended before the transport attached. */
  private outcome: "closed" | "reset" | undefined;
  /** No write is possible: the server has not started taking the stream, or the client has not taken the last write. */
  private behind = true;
  private beatsBehind = 0;
  private heldTrack = "";
  private heldPosition = "";
  private over = false;
  private ending = false;

  // The options' fields, not the options object: one object fewer per stream.
  private readonly preamble: string;
  private readonly heartbeatsBehindLimit: number;
  private readonly onClose: (reason: SinkClose) => void;

  constructor(options: SseSinkOptions) {
    this.preamble = options.preamble;
    this.heartbeatsBehindLimit = options.heartbeats ?? SLOW_CLIENT_HEARTBEATS;
    this.onClose = options.onClose;
  }

  attach(controller: DirectController): Promise<void> {
    if (this.done) return this.done; // a reader's later read: the stream is already running
    this.done = new Promise<void>((resolve, reject) => {
      // Rejected with undefined: Bun prints a stream's error object, one log line per client.
      this.run(controller, { ended: (reset) => (reset ? reject(undefined) : resolve()) });
    });
    this.done.catch(() => undefined); // a stream dropped before the server pulled it is not an unhandled rejection
    return this.done;
  }

  run(controller: DirectController, end: StreamEnd): void {
    if (this.controller) return;
    this.controller = controller;
    this.ender = end;
    if (this.outcome) return end.ended(this.outcome === "reset");
    this.heldTrack = this.preamble + this.heldTrack;
    this.caughtUp();
  }

  cancel(): void {
    this.close("client", false);
  }

  send(text: string, kind: EventKind): void {
    if (this.over || this.ending) return;
    if (!this.behind) return this.write(text);
    if (kind === "track") {
      this.heldTrack = text;
      this.heldPosition = ""; // the track carries the newest position
    } else {
      this.heldPosition = text;
    }
  }

  beat(): void {
    if (this.over || this.ending) return;
    if (!this.behind) {
      this.beatsBehind = 0;
      this.write(HEARTBEAT);
    } else if (++this.beatsBehind >= this.heartbeatsBehindLimit) {
      this.close("slow_client", true);
    }
  }

  end(last = ""): void {
    if (this.over || this.ending) return;
    this.ending = true;
    this.heldTrack += this.heldPosition + last;
    this.heldPosition = "";
    // A client that is behind still gets the last words: one more write, then the stream closes.
    if (this.controller) this.caughtUp();
  }

  private close(reason: SinkClose | undefined, drop: boolean): void {
    if (this.over) return;
    this.over = true;
    this.heldTrack = this.heldPosition = "";
    if (this.ender) {
      this.ender.ended(drop); // ends (or resets) a response the server is sending
    } else {
      this.outcome = drop ? "reset" : "closed";
    }
    if (!drop) {
      try {
        this.controller?.close(); // ends a stream a reader is reading (app.handle in tests), which pull()'s end does not
      } catch {
        // already closed by the client
      }
    }
    if (reason) this.onClose(reason);
  }

  private write(text: string): void {
    const controller = this.controller;
    if (!controller) return;
    let pending: Promise<number> | undefined;
    try {
      const written = controller.write(text);
      const flushed = controller.flush();
      pending = written instanceof Promise ? written : flushed instanceof Promise ? flushed : undefined;
    } catch {
      this.close("client", false); // the client went away between two events
      return;
    }
    if (pending) {
      this.behind = true;
      pending.then(
        () => this.caughtUp(),
        () => this.close("client", false),
      );
    }
  }

  /** The client took the last write: send what waited (the newest state), or finish an ending stream. */
  private caughtUp(): void {
    if (this.over) return;
    this.behind = false;
    this.beatsBehind = 0;
    const waiting = this.heldTrack + this.heldPosition;
    this.heldTrack = this.heldPosition = "";
    if (waiting) this.write(waiting);
    if (this.ending) this.close(undefined, false);
  }
}
