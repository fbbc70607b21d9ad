/**
 * What one idle SSE stream costs a Bun server, by way of holding it: `bun bench/fanout/stream-memory.ts --streams
 * 10000 --variant readable|direct|readable-no-timer|tcp|app`. A server child process with only the stream (no
 * database, no auth) for the first three; `app` is not supported here (bench:fanout measures the real API). The
 * parent opens the streams with bench:fanout's raw-socket client and prints the server's RSS before and after, per
 * stream. Tells Bun's own per-connection cost from what the API adds on top.
 */
import { parseArgs } from "node:util";
import { procSample } from "../support/process-stats.ts";
import { createSseClient } from "./sse-client.ts";

const { values: args } = parseArgs({
  options: {
    streams: { type: "string", default: "10000" },
    variant: { type: "string", default: "readable" },
    serve: { type: "boolean", default: false },
    port: { type: "string", default: "0" },
  },
});

if (args.serve && args.variant === "tcp") {
  // No HTTP server at all: Bun.listen's sockets answering any request with the stream's headers and first event,
  // then holding the socket. The floor of one idle stream under Bun, below which no HTTP layer can go.
  const head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
  const event = "retry: 3000\n\nid: x.1\nevent: track\ndata: {}\n\n";
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: Number(args.port),
    socket: {
      data(socket) {
        socket.write(`${head}${event.length.toString(16)}\r\n${event}\r\n`);
      },
    },
  });
  console.log(`port ${listener.port}`);
} else if (args.serve) {
  const encoder = new TextEncoder();
  const variant = args.variant;
  const server = Bun.serve({
    port: Number(args.port),
    idleTimeout: 0,
    fetch() {
      const headers = { "content-type": "text/event-stream", "cache-control": "no-cache" };
      if (variant === "direct") {
        return new Response(
          new ReadableStream({
            type: "direct",
            async pull(controller: { write(text: string): void; flush(): void }) {
              controller.write("retry: 3000\n\nid: x.1\nevent: track\ndata: {}\n\n");
              controller.flush();
              await new Promise(() => undefined); // held open until the client goes
            },
          } as unknown as ConstructorParameters<typeof ReadableStream<Uint8Array>>[0]),
          { headers },
        );
      }
      let timer: ReturnType<typeof setInterval> | undefined;
      const body = new ReadableStream<Uint8Array>(
        {
          start(c) {
            c.enqueue(encoder.encode("retry: 3000\n\nid: x.1\nevent: track\ndata: {}\n\n"));
            if (variant === "readable") timer = setInterval(() => c.enqueue(encoder.encode(": heartbeat\n\n")), 15_000);
          },
          cancel() {
            clearInterval(timer);
          },
        },
        new ByteLengthQueuingStrategy({ highWaterMark: 16 * 1024 }),
      );
      return new Response(body, { headers });
    },
  });
  console.log(`port ${server.port}`);
} else {
  const streams = Number(args.streams);
  const child = Bun.spawn(
    ["bash", "-c", `ulimit -n 20000 && exec bun ${import.meta.path} --serve --variant ${args.variant}`],
    { stdout: "pipe", stderr: "inherit" },
  );
  const reader = (child.stdout as ReadableStream<Uint8Array>).getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  const port = Number(/port (\d+)/.exec(first)![1]);
  const serverPid = Number(Bun.spawnSync(["pgrep", "-P", String(child.pid)]).stdout.toString().trim() || child.pid);
  await Bun.sleep(1_000);
  const before = procSample(serverPid)!.rssBytes;
  const client = createSseClient({ host: "127.0.0.1", port, localAddresses: ["127.0.0.2", "127.0.0.3"] });
  await client.start(Array.from({ length: streams }, () => ({ orderId: "x", token: "x" })), 5_000);
  while (client.open < streams) await Bun.sleep(200);
  Bun.gc(true);
  await Bun.sleep(3_000);
  const after = procSample(serverPid)!.rssBytes;
  console.log(
    JSON.stringify({
      variant: args.variant, streams, rssBeforeMb: +(before / 2 ** 20).toFixed(1), rssAfterMb: +(after / 2 ** 20).toFixed(1),
      bytesPerStream: Math.round((after - before) / streams),
    }),
  );
  client.close();
  child.kill();
  process.exit(0);
}
