/**
 * Live-tracking streams over raw node:net sockets: HTTP/1.1 GET, chunked transfer decoding and just enough of SSE to
 * see each event's id, name and the position's `at`. A fetch() per stream holds a Response, a ReadableStream and
 * their buffers; a socket and a few numbers cost far less, which is what lets one process hold ~15,000 streams.
 * A stream that closes reconnects after the server's `retry:` (plus jitter) with Last-Event-ID, as EventSource does.
 */
import net from "node:net";

export interface StreamTarget {
  orderId: string;
  token: string;
}

export interface SseEvent {
  id?: string;
  event: string;
  /** For `position` events: the position's device time (ms), read from the data without parsing all of it. */
  atMs?: number;
  /** A position's published_at (migration 0021): when the database sent its notice, just before the commit. */
  publishedAtMs?: number;
  data: string;
}

export interface SseStreamState {
  readonly target: StreamTarget;
  /** The response was 200 and its headers are in. */
  open: boolean;
  lastEventId?: string;
  /** When the last `track` or `position` arrived (Date.now() ms); 0 before any. */
  lastEventAtMs: number;
  /** Times this stream (re)opened with a 200. */
  opens: number;
  /** The server sent `end` (the order is over): not reconnected. */
  ended: boolean;
}

export interface SseClientOptions {
  host: string;
  port: number;
  /** Source addresses to spread connections over (loopback has ~28,000 ephemeral ports per source address). */
  localAddresses?: readonly string[];
  /** Called for every `track` / `position` event. */
  onEvent?: (stream: SseStreamState, event: SseEvent, receivedMs: number) => void;
  /** Called when a stream's request is refused (status other than 200). */
  onRefused?: (stream: SseStreamState, status: number) => void;
  /** Reconnect delay when the server sent no `retry:` (ms). */
  retryMs?: number;
  /**
   * Requests sent and not yet answered, at most, while starting: an open storm the server cannot answer only
   * queues (and times out) behind its listen backlog; this paces the ramp by the server's answers instead.
   */
  maxPending?: number;
  /** Added at random to each reconnect delay so a restart does not bring every client back in the same ms. */
  jitterMs?: number;
}

const AT = '"at":"';
const PUBLISHED_AT = '"published_at":"';

/** The ISO time of a `"name":"…"` field of an event's data, without parsing the whole JSON (the client is the load). */
function timeField(data: string, field: string): number | undefined {
  const start = data.indexOf(field);
  return start >= 0 ? Date.parse(data.slice(start + field.length, data.indexOf('"', start + field.length))) : undefined;
}

/**
 * Decodes a chunked body incrementally: `decode` returns the payload of the chunks in hand as text; `ended` turns
 * true at the last (empty) chunk, when the response is over though the connection may be kept alive.
 */
function createDechunker() {
  let buffer = "";
  let ended = false;
  let remaining = 0; // bytes of the current chunk still to read (the body is ASCII-safe JSON; counted in chars)
  let needCrlf = false;
  const decode = (text: string): string => {
    buffer += text;
    let out = "";
    for (;;) {
      if (needCrlf) {
        if (buffer.length < 2) break;
        buffer = buffer.slice(2);
        needCrlf = false;
      }
      if (remaining > 0) {
        const take = Math.min(remaining, buffer.length);
        out += buffer.slice(0, take);
        buffer = buffer.slice(take);
        remaining -= take;
        if (remaining > 0) break;
        needCrlf = true;
        continue;
      }
      const eol = buffer.indexOf("\r\n");
      if (eol < 0) break;
      remaining = Number.parseInt(buffer.slice(0, eol), 16);
      buffer = buffer.slice(eol + 2);
      if (!(remaining > 0)) {
        remaining = 0; // the last chunk (0) or garbage: nothing more comes
        ended = true;
        break;
      }
    }
    return out;
  };
  return { decode, ended: () => ended };
}

function parseBlock(block: string): SseEvent | undefined {
  let id: string | undefined;
  let event: string | undefined;
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("id: ")) id = line.slice(4);
    else if (line.startsWith("event: ")) event = line.slice(7);
    else if (line.startsWith("data: ")) data = line.slice(6);
  }
  if (event === undefined) return undefined; // heartbeats and the retry hint
  if (event !== "position") return { id, event, data };
  return { id, event, atMs: timeField(data, AT), publishedAtMs: timeField(data, PUBLISHED_AT), data };
}

export interface SseClient {
  readonly streams: readonly SseStreamState[];
  /** Open streams now. */
  readonly open: number;
  /** Reconnects since start (a stream that closed and opened again). */
  readonly reconnects: number;
  /** Opens one stream per target, `perSecond` at most each second; resolves when all were started. */
  start(targets: readonly StreamTarget[], perSecond: number): Promise<void>;
  close(): void;
}

export function createSseClient(options: SseClientOptions): SseClient {
  const streams: SseStreamState[] = [];
  const sockets = new Set<net.Socket>();
  const addresses = options.localAddresses?.length ? options.localAddresses : [undefined];
  let open = 0;
  let pending = 0;
  let reconnects = 0;
  let closed = false;
  let next = 0;

  const connect = (stream: SseStreamState, localAddress: string | undefined) => {
    if (closed) return;
    let retryMs = options.retryMs ?? 3_000;
    let headers = "";
    let status = 0;
    let body = "";
    let dechunk: ReturnType<typeof createDechunker> | { decode: (text: string) => string; ended: () => boolean } | undefined;
    const socket = net.connect({ host: options.host, port: options.port, localAddress });
    let answered = false;
    pending += 1;
    const answer = () => {
      if (!answered) {
        answered = true;
        pending -= 1;
      }
    };
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.setEncoding("latin1"); // one char per byte: chunk sizes count bytes
    const path = `/track/${stream.target.orderId}/live?token=${encodeURIComponent(stream.target.token)}`;
    const resume = stream.lastEventId ? `Last-Event-ID: ${stream.lastEventId}\r\n` : "";
    socket.on("connect", () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${options.host}\r\nAccept: text/event-stream\r\n${resume}\r\n`);
    });
    socket.on("data", (chunk: string) => {
      if (!dechunk) {
        headers += chunk;
        const end = headers.indexOf("\r\n\r\n");
        if (end < 0) return;
        status = Number(headers.slice(9, 12));
        answer();
        const rest = headers.slice(end + 4);
        const chunked = /transfer-encoding:\s*chunked/i.test(headers.slice(0, end));
        headers = "";
        if (status !== 200) {
          options.onRefused?.(stream, status);
          socket.destroy();
          return;
        }
        stream.open = true;
        stream.opens += 1;
        if (stream.opens > 1) reconnects += 1;
        open += 1;
        dechunk = chunked ? createDechunker() : { decode: (text: string) => text, ended: () => false };
        chunk = rest;
      }
      body += dechunk.decode(chunk);
      const receivedMs = Date.now();
      for (let end = body.indexOf("\n\n"); end >= 0; end = body.indexOf("\n\n")) {
        const block = body.slice(0, end);
        body = body.slice(end + 2);
        if (block.startsWith("retry: ")) retryMs = Number(block.slice(7)) || retryMs;
        const event = parseBlock(block);
        if (!event) continue;
        if (event.event === "end") stream.ended = true;
        if (event.id !== undefined) stream.lastEventId = event.id;
        stream.lastEventAtMs = receivedMs;
        options.onEvent?.(stream, event, receivedMs);
      }
      if (dechunk.ended()) socket.destroy(); // the response is over: this connection is not reused
    });
    socket.on("error", () => undefined); // "close" follows
    socket.on("close", () => {
      sockets.delete(socket);
      answer();
      if (stream.open) {
        stream.open = false;
        open -= 1;
      }
      if (closed || stream.ended) return;
      const delay = retryMs + Math.random() * (options.jitterMs ?? 1_000);
      setTimeout(() => connect(stream, localAddress), delay);
    });
  };

  return {
    streams,
    get open() {
      return open;
    },
    get reconnects() {
      return reconnects;
    },
    async start(targets, perSecond) {
      for (let i = 0; i < targets.length && !closed; i++) {
        const stream: SseStreamState = { target: targets[i]!, open: false, lastEventAtMs: 0, opens: 0, ended: false };
        streams.push(stream);
        connect(stream, addresses[next++ % addresses.length]);
        // Paced in slices of 1/20 s, so a big client does not open its thousands of sockets in one burst.
        const slice = Math.max(1, Math.floor(perSecond / 20));
        if ((i + 1) % slice === 0) await Bun.sleep(50);
        while (options.maxPending !== undefined && pending >= options.maxPending && !closed) await Bun.sleep(20);
      }
    },
    close() {
      closed = true;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
  };
}
