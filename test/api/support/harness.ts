/**
 * The API against a fresh database: the same createApp as production, called through app.handle(Request).
 * Tests that do not send positions get a Kafka link that is down: every call fails as a disconnected one would.
 */
import { createApp } from "../../../api/app.ts";
import type { TrackCacheOptions } from "../../../api/modules/tracking/cache.ts";
import { createOrderFeed } from "../../../api/modules/tracking/feed.ts";
import type { KafkaLink } from "../../../api/kafka/link.ts";
import { freshDatabase, type TestDatabase } from "../../support/db.ts";

// Bodies default to `any`: tests assert their shape with expect(), which is the point of reading them.
export interface Answer<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export interface HarnessOptions {
  kafka?: KafkaLink;
  positionsTopic?: string;
  heartbeatMs?: number;
  kafkaSendTimeoutMs?: number;
  probeTimeoutMs?: number;
  /** GET /track's cache, as production configures it; off by default so a test reads back what it just wrote. */
  trackCache?: TrackCacheOptions;
}

export function kafkaDown(): KafkaLink {
  const refuse = () => Promise.reject(new Error("Kafka is not connected (test: down)"));
  return { send: refuse, probe: refuse };
}

export async function startHarness(label: string, options: HarnessOptions = {}) {
  const db: TestDatabase = await freshDatabase(label);
  const feed = createOrderFeed(db.sql);
  const app = createApp({
    sql: db.sql,
    kafka: options.kafka ?? kafkaDown(),
    positionsTopic: options.positionsTopic ?? `unused-${label}`,
    feed,
    heartbeatMs: options.heartbeatMs,
    kafkaSendTimeoutMs: options.kafkaSendTimeoutMs,
    probeTimeoutMs: options.probeTimeoutMs,
    trackCache: options.trackCache,
  });

  /** The raw Response (for streams and non-JSON bodies). */
  const fetch = (method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}) =>
    app.handle(new Request(`http://localhost${path}`, { method, body: init.body, headers: init.headers }));

  /** A JSON call: an object body is serialised, a string body is sent as it is (to test malformed input). */
  const call = async <T = any>(method: string, path: string, body?: unknown): Promise<Answer<T>> => {
    const init =
      body === undefined
        ? {}
        : { body: typeof body === "string" ? body : JSON.stringify(body), headers: { "content-type": "application/json" } };
    const res = await fetch(method, path, init);
    const text = await res.text();
    let parsed: unknown = text;
    if (res.headers.get("content-type")?.includes("json")) parsed = JSON.parse(text);
    return { status: res.status, headers: res.headers, body: parsed as T };
  };

  return {
    db,
    sql: db.sql,
    app,
    feed,
    call,
    fetch,
    async close() {
      feed.close();
      await db.drop();
    },
  };
}

export type Harness = Awaited<ReturnType<typeof startHarness>>;
