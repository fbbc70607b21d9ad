/**
 * bench:fanout's measuring parts: the raw-socket SSE client against a real Bun server sending a chunked event
 * stream (ids, events split across writes, heartbeats, the retry hint, reconnect with Last-Event-ID), and the
 * latency histogram's percentiles.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { bucketCount, createHistogram, mergeBuckets, quantileMs } from "../../bench/fanout/histogram.ts";
import { createSseClient, type SseEvent } from "../../bench/fanout/sse-client.ts";
import { waitFor } from "../api/support/wait.ts";

const requests: { url: string; lastEventId: string | null }[] = [];
let connection = 0;
const server = Bun.serve({
  port: 0,
  idleTimeout: 0,
  fetch(request) {
    requests.push({ url: request.url, lastEventId: request.headers.get("last-event-id") });
    connection += 1;
    const first = connection === 1;
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      async start(c) {
        c.enqueue(encoder.encode("retry: 50\n\n"));
        c.enqueue(encoder.encode(`id: assigned.${first ? 1 : 3}\nevent: track\ndata: {"name":"Zoë"}\n\n`));
        if (!first) return; // the second connection stays open
        c.enqueue(encoder.encode(': heartbeat\n\nid: assigned.2\nevent: posi'));
        await Bun.sleep(20);
        c.enqueue(encoder.encode('tion\ndata: {"order_id":"o","at":"2026-01-01T00:00:00.000Z","lat":1,"published_at":"2026-01-01T00:00:01.5+00:00"}\n\n'));
        c.close(); // the server goes away: the client comes back with the last id it saw
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  },
});
afterAll(() => server.stop(true));

describe("bench:fanout's SSE client", () => {
  test("reads ids, events split across chunks and the position's times, and resumes with Last-Event-ID", async () => {
    const seen: SseEvent[] = [];
    const client = createSseClient({
      host: "127.0.0.1",
      port: server.port!,
      jitterMs: 10,
      onEvent: (_stream, event) => void seen.push(event),
    });
    try {
      await client.start([{ orderId: "o", token: "a b" }], 100);
      await waitFor("the second connection's snapshot", () => seen.length === 3);
      expect(seen.map((e) => [e.id, e.event])).toEqual([
        ["assigned.1", "track"],
        ["assigned.2", "position"],
        ["assigned.3", "track"],
      ]);
      expect(seen[1]!.atMs).toBe(Date.UTC(2026, 0, 1));
      expect(seen[1]!.publishedAtMs).toBe(Date.UTC(2026, 0, 1, 0, 0, 1, 500));
      expect(seen[0]!.publishedAtMs).toBeUndefined(); // only position events carry the times
      expect(requests.map((r) => r.lastEventId)).toEqual([null, "assigned.2"]);
      expect(new URL(requests[0]!.url).searchParams.get("token")).toBe("a b");
      expect(client.reconnects).toBe(1);
      expect(client.open).toBe(1);
    } finally {
      client.close();
    }
  });
});

describe("bench:fanout's latency histogram", () => {
  test("percentiles within the buckets' 5% of the true ones, after merging", () => {
    const a = createHistogram();
    const b = createHistogram();
    for (let ms = 1; ms <= 1000; ms++) (ms % 2 ? a : b).add(ms);
    const merged = mergeBuckets(a.take(), b.take());
    expect(bucketCount(merged)).toBe(1000);
    expect(quantileMs(merged, 0.5)).toBeCloseTo(500, -2);
    expect(Math.abs(quantileMs(merged, 0.5) - 500) / 500).toBeLessThan(0.05);
    expect(Math.abs(quantileMs(merged, 0.99) - 990) / 990).toBeLessThan(0.05);
    expect(a.count).toBe(0); // taken
    expect(quantileMs({}, 0.5)).toBeNaN();
  });
});
