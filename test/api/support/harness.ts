/**
 * The API against a fresh database: the same createApp as production, called through app.handle(Request).
 * Tests that do not send positions get a Kafka link that is down: every call fails as a disconnected one would.
 */
import { createApp } from "../../../api/app.ts";
import { createTokenService } from "../../../api/auth/tokens.ts";
import type { MqttCredentialIssuer } from "../../../api/modules/drivers/credentials.ts";
import type { TrackCacheOptions } from "../../../api/modules/tracking/cache.ts";
import { createOrderFeed } from "../../../api/modules/tracking/feed.ts";
import type { KafkaLink } from "../../../api/kafka/link.ts";
import type { AuthConfig } from "../../../lib/config.ts";
import { connectDatabase } from "../../../lib/db.ts";
import { type Caller, testAuthConfig, tokenMinter } from "./auth.ts";
import { serviceUrl } from "../../../tools/service-url.ts";
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
  /** The live-stream ceiling; unbounded by default. */
  liveStreamsMax?: number;
  kafkaSendTimeoutMs?: number;
  probeTimeoutMs?: number;
  /** GET /track's cache, as production configures it; off by default so a test reads back what it just wrote. */
  trackCache?: TrackCacheOptions;
  /** Token settings; a fresh random secret by default. */
  auth?: AuthConfig;
  mqttCredentials?: MqttCredentialIssuer;
  mqttUrl?: string;
}

export interface CallOptions {
  /** Who calls: a principal (a valid token is minted) or a raw token; nobody (no Authorization) when absent. */
  as?: Caller;
  headers?: Record<string, string>;
}

export function kafkaDown(): KafkaLink {
  const refuse = () => Promise.reject(new Error("Kafka is not connected (test: down)"));
  return { send: refuse, probe: refuse };
}

export async function startHarness(label: string, options: HarnessOptions = {}) {
  const db: TestDatabase = await freshDatabase(label);
  // The app runs as the API's own role, with exactly its production rights; db.sql (the owner) seeds and inspects.
  const apiSql = connectDatabase(serviceUrl(db.url, "tracking_api"), { max: 10, application: `test-api-${label}` });
  const feed = createOrderFeed(apiSql);
  const auth = options.auth ?? testAuthConfig();
  const tokens = createTokenService(auth);
  const tokenFor = tokenMinter(tokens);
  const app = createApp({
    sql: apiSql,
    kafka: options.kafka ?? kafkaDown(),
    positionsTopic: options.positionsTopic ?? `unused-${label}`,
    feed,
    heartbeatMs: options.heartbeatMs,
    liveStreamsMax: options.liveStreamsMax,
    kafkaSendTimeoutMs: options.kafkaSendTimeoutMs,
    probeTimeoutMs: options.probeTimeoutMs,
    trackCache: options.trackCache,
    auth,
    mqttCredentials: options.mqttCredentials,
    mqttUrl: options.mqttUrl,
  });

  /** The raw Response (for streams and non-JSON bodies). */
  const fetch = async (method: string, path: string, init: { body?: string } & CallOptions = {}) => {
    const headers = { ...init.headers };
    if (init.as !== undefined) headers.authorization = `Bearer ${await tokenFor(init.as)}`;
    return app.handle(new Request(`http://localhost${path}`, { method, body: init.body, headers }));
  };

  /** A JSON call: an object body is serialised, a string body is sent as it is (to test malformed input). */
  const call = async <T = any>(
    method: string,
    path: string,
    body?: unknown,
    options: CallOptions = {},
  ): Promise<Answer<T>> => {
    const init =
      body === undefined
        ? { ...options }
        : {
            ...options,
            body: typeof body === "string" ? body : JSON.stringify(body),
            headers: { "content-type": "application/json", ...options.headers },
          };
    const res = await fetch(method, path, init);
    const text = await res.text();
    let parsed: unknown = text;
    if (res.headers.get("content-type")?.includes("json")) parsed = JSON.parse(text);
    return { status: res.status, headers: res.headers, body: parsed as T };
  };

  return {
    db,
    sql: db.sql,
    apiSql,
    app,
    feed,
    auth,
    tokens,
    /** The bearer token a caller's calls carry. */
    tokenFor,
    call,
    fetch,
    async close() {
      feed.close();
      await apiSql.end({ timeout: 5 });
      await db.drop();
    },
  };
}

export type Harness = Awaited<ReturnType<typeof startHarness>>;
