/**
 * GET /track/{order_id}/live on a port of its own (LIVE_PORT), served from raw sockets (Bun.listen) instead of
 * Bun.serve. The stream is the same (live.ts: its events, ids, resume, heartbeats, skip-to-latest for a slow client),
 * so are its rules (TRACKERS: the order's parties, operations or its tracking link; the process's stream ceiling).
 * What differs is what each held stream costs: Bun.serve keeps a Request, a Response and a direct ReadableStream per
 * stream (~4 KB of RSS before any state of ours, measured with bench/fanout/stream-memory.ts), a socket ~1 KB. Issue
 * #15 asks for 100,000 streams at under 4 KB each. This server reads one request head per connection (request-head.ts:
 * strict, at most 8 KB, within 10 s), answers it with the stream or an error in the API's JSON shape, and closes the
 * connection when the stream ends (no keep-alive: a stream lasts the order's life). Every other path is 404, every
 * other method 405: this port serves that one route and nothing else.
 */
import type { Socket, TCPSocketListener, TCPSocketListenOptions } from "bun";
import { STATUS_CODES } from "node:http";
import { AppError } from "../../../lib/errors.ts";
import { isUuid } from "../../../lib/position.ts";
import type { OrderAccess } from "../../auth/order-access.ts";
import { principalFor, tokenFor, WWW_AUTHENTICATE } from "../../auth/plugin.ts";
import type { TokenService } from "../../auth/tokens.ts";
import { logServerError, toAppError } from "../../errors.ts";
import { TRACKERS } from "./index.ts";
import { LIVE_HEADERS, type LiveStreamDeps, RETRY_HINT, startLiveStream } from "./live.ts";
import { headEnd, MAX_HEAD_BYTES, parseRequestHead } from "./request-head.ts";
import { createSseSinkCore, type DirectController, type SseSinkCore, type StreamEnd } from "./sse-sink.ts";
import { LIVE_RETRY_AFTER_SECONDS, type LiveStreamGate } from "./streams.ts";

/** How long a connection may take to send its request head before it is answered 408 and closed. */
export const HEAD_TIMEOUT_SECONDS = 10;
/** How long an ended stream's last words may wait for a client that is not reading before the connection is reset. */
const ENDING_TIMEOUT_SECONDS = 30;

const ROUTE = /^\/track\/([^/]+)\/live$/;

export interface LiveSocketDeps {
  live: LiveStreamDeps;
  tokens: TokenService;
  access: OrderAccess;
  /** Shared with the API's own live route: one ceiling per process, whichever port a stream came in on. */
  liveStreams: LiveStreamGate;
}

export interface LiveSocketOptions {
  hostname: string;
  port: number;
  tls?: { cert: ReturnType<typeof Bun.file>; key: ReturnType<typeof Bun.file> };
}

type LiveSocket = Socket<Connection>;

const encoder = new TextEncoder();

/**
 * One connection: its request head while it arrives, then its stream's writes to the socket, as the sink
 * (sse-sink.ts) drives a direct stream. A write the kernel takes whole answers at once; one it takes in part keeps
 * the rest and answers a promise settled when the socket drains (or closes); the sink never writes again before that
 * promise settles. It also ends the connection when the sink says the stream is over: closed after the rest is
 * written, or reset at once for a client that was dropped. One object per connection (the socket's data).
 */
class Connection implements DirectController, StreamEnd {
  head = "";
  /** "head": reading it; "opening": checks and snapshot under way; "streaming"; "closed": the peer is gone. */
  phase: "head" | "opening" | "streaming" | "closed" = "head";
  sink: SseSinkCore | undefined;
  private rest: Uint8Array | undefined;
  private waiting: { resolve: (n: number) => void; reject: (e: Error) => void } | undefined;
  private endWhenDrained = false;

  constructor(private readonly socket: LiveSocket) {}

  write(text: string): number | Promise<number> {
    // The text as it is (Bun encodes it); bytes are made only for the rest of a write the kernel took in part.
    const written = this.socket.write(text);
    if (written < 0) throw new Error("the socket is closed");
    if (written === Buffer.byteLength(text)) return written;
    this.rest = encoder.encode(text).subarray(written);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  flush(): undefined {
    return undefined;
  }

  /** The sink's close of a reader's stream: ended() below does it for a socket. */
  close(): void {}

  ended(reset: boolean): void {
    if (reset) return this.socket.terminate();
    if (!this.rest) return void this.socket.end();
    // The last words are still in hand: close once they are written, or give up on a client that stopped reading.
    this.endWhenDrained = true;
    this.socket.timeout(ENDING_TIMEOUT_SECONDS);
  }

  /** The socket can take more: write what was left, and answer the sink once all of it is taken. */
  drained(): void {
    if (!this.rest) return;
    const written = this.socket.write(this.rest);
    if (written < 0) return this.closed();
    this.rest = written === this.rest.length ? undefined : this.rest.subarray(written);
    if (this.rest) return;
    if (this.endWhenDrained) this.socket.end();
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.resolve(written);
  }

  /** The peer is gone: a pending write fails, and the sink learns the client left. */
  closed(): void {
    this.phase = "closed";
    this.rest = undefined;
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.reject(new Error("the socket is closed"));
    this.sink?.cancel();
  }
}

/** An answer that is not a stream: the API's JSON error shape, then the connection closes. */
function refuse(socket: LiveSocket, error: AppError, headers: Record<string, string> = {}): void {
  logServerError(error);
  const body = JSON.stringify(error.toJSON());
  const fields = {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(body)),
    connection: "close",
    ...headers,
  };
  socket.end(`${statusLine(error.status)}${headerLines(fields)}\r\n${body}`);
}

const statusLine = (status: number) => `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n`;
const headerLines = (fields: Record<string, string>) =>
  Object.entries(fields)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join("");

/** The stream's response head: written first, with the retry hint, when the stream starts. */
const STREAM_HEAD = `${statusLine(200)}${headerLines({ ...LIVE_HEADERS, connection: "close" })}\r\n${RETRY_HINT}`;

export function startLiveSocketServer(deps: LiveSocketDeps, options: LiveSocketOptions): TCPSocketListener<Connection> {
  /** Checks the request, then opens its stream; every refusal is an answer on the socket, never a throw. */
  async function serve(socket: LiveSocket, head: string): Promise<void> {
    let holdsSlot = false;
    try {
      const request = parseRequestHead(head);
      const orderId = ROUTE.exec(request.path)?.[1];
      if (orderId === undefined) throw new AppError("NOT_FOUND", "no such route");
      if (request.method !== "GET") {
        return refuse(socket, new AppError("METHOD_NOT_ALLOWED", `${request.method} is not allowed here (GET only)`), {
          allow: "GET",
        });
      }
      const token = tokenFor(TRACKERS, { authorization: request.headers.get("authorization"), queryToken: request.query.get("token") ?? undefined });
      if (!token) {
        return refuse(socket, new AppError("UNAUTHENTICATED", "a bearer token is required"), {
          "www-authenticate": WWW_AUTHENTICATE,
        });
      }
      // Verified once for the stream's life: not kept in the token cache, where it would cost each stream ~0.5 KB.
      const principal = await principalFor(deps.tokens, TRACKERS, token, { remember: false });
      if (!isUuid(orderId)) throw new AppError("INVALID_ID", "params.order_id: not a UUID");
      // Before any database work: at the ceiling a refusal must cost next to nothing.
      if (!(holdsSlot = deps.liveStreams.take())) {
        return refuse(
          socket,
          new AppError("TOO_MANY_STREAMS", `this server holds its most live streams (${deps.liveStreams.max})`),
          { "retry-after": String(LIVE_RETRY_AFTER_SECONDS) },
        );
      }
      await deps.access.check(principal, orderId);
      // The stream frees its slot once, when it closes (live.ts finish()): the gate's own function, no closure each.
      const sink = await startLiveStream(
        orderId,
        deps.live,
        (onClose) => createSseSinkCore({ preamble: STREAM_HEAD, onClose }),
        { onClose: deps.liveStreams.free },
      );
      holdsSlot = false;
      attach(socket.data, sink);
    } catch (error) {
      if (holdsSlot) deps.liveStreams.free();
      if (socket.data.phase !== "closed") refuse(socket, toAppError(error));
    }
  }

  function attach(connection: Connection, sink: SseSinkCore): void {
    if (connection.phase === "closed") return sink.cancel(); // the client left while the snapshot was read
    connection.phase = "streaming";
    connection.sink = sink;
    // The sink ends it normally (the order finished, the process drains) or drops a client that stays behind.
    sink.run(connection, connection);
  }

  const listenOptions: TCPSocketListenOptions<Connection> & { reusePort: boolean } = {
    hostname: options.hostname,
    port: options.port,
    // SO_REUSEPORT: several API processes share LIVE_PORT as they share API_PORT, and the kernel spreads connections
    // over them. Bun 1.4 honours the option though its types do not list it (test/api/live-socket-server.test.ts).
    reusePort: true,
    ...(options.tls ? { tls: options.tls } : {}),
    socket: {
      open(socket) {
        socket.data = new Connection(socket);
        socket.timeout(HEAD_TIMEOUT_SECONDS);
      },
      data(socket, chunk) {
        const connection = socket.data;
        if (connection.phase !== "head") return; // a stream takes no input after its request
        connection.head += chunk.toString("latin1");
        const end = headEnd(connection.head);
        if (end === -1 ? connection.head.length > MAX_HEAD_BYTES : end > MAX_HEAD_BYTES) {
          connection.phase = "opening";
          return refuse(socket, new AppError("HEADERS_TOO_LARGE", `the request head is over ${MAX_HEAD_BYTES} bytes`));
        }
        if (end === -1) return;
        const head = connection.head.slice(0, end);
        connection.head = "";
        connection.phase = "opening";
        socket.timeout(0);
        void serve(socket, head);
      },
      timeout(socket) {
        if (socket.data.phase === "streaming") return socket.terminate(); // an ended stream's last words not taken
        if (socket.data.phase !== "head") return;
        socket.data.phase = "opening";
        refuse(socket, new AppError("REQUEST_TIMEOUT", `no complete request head within ${HEAD_TIMEOUT_SECONDS} s`));
      },
      drain(socket) {
        socket.data.drained();
      },
      close(socket) {
        socket.data.closed();
      },
      error(socket, error) {
        console.error(`[api] live socket: ${error.message}`);
        socket.terminate();
      },
    },
  };
  return Bun.listen<Connection>(listenOptions);
}
