/**
 * The HTTP API assembled from its modules. Everything with a connection comes in through `deps`, so tests build
 * the same app against their own database and Kafka topic and call `app.handle(new Request(...))`.
 */
import { openapi } from "@elysiajs/openapi";
import { Elysia } from "elysia";
import { type AuthConfig, config } from "../lib/config.ts";
import type { Sql } from "../lib/db.ts";
import { orderAccess } from "./auth/order-access.ts";
import { assertEveryRouteHasARule, authPlugin } from "./auth/plugin.ts";
import { createTokenService } from "./auth/tokens.ts";
import { errorHandler } from "./errors.ts";
import type { KafkaLink } from "./kafka/link.ts";
import type { MqttCredentialIssuer } from "./modules/drivers/credentials.ts";
import { driversModule } from "./modules/drivers/index.ts";
import { healthModule } from "./modules/health/index.ts";
import { createHttpMetrics } from "./modules/health/metrics.ts";
import { readinessService } from "./modules/health/service.ts";
import { opsModule } from "./modules/ops/index.ts";
import { pagesModule } from "./modules/ops/pages.ts";
import { createPipelineHealth } from "./modules/ops/pipeline-health.ts";
import { ordersModule } from "./modules/orders/index.ts";
import type { DispatchDeps } from "./modules/orders/dispatcher.ts";
import type { TrackCacheOptions } from "./modules/tracking/cache.ts";
import type { OrderFeed } from "./modules/tracking/feed.ts";
import { createTrackCacheFor, trackingModule } from "./modules/tracking/index.ts";
import { createLiveStreamGate, type LiveStreamGate } from "./modules/tracking/streams.ts";

export interface ApiDeps {
  sql: Sql;
  /** Kafka for positions and readiness: the Node sidecar in production (see api/kafka/link.ts for why). */
  kafka: KafkaLink;
  /** Where PATCH /drivers/{id}/location sends positions: config().kafkaTopic in production. */
  positionsTopic: string;
  /** The process's one LISTEN connection, fanned out to live streams. */
  feed: OrderFeed;
  /** Live stream heartbeat period (default 15 s). */
  heartbeatMs?: number;
  /** Most live streams at once (server.ts: liveStreamCeiling()); unbounded when absent, as in most tests. */
  liveStreamsMax?: number;
  /** The process's stream ceiling itself, when the live socket server shares it (server.ts); else made from liveStreamsMax. */
  liveStreams?: LiveStreamGate;
  /** GET /track's cache (config TRACK_CACHE_*); tests that write and read back at once leave it off. */
  trackCache?: TrackCacheOptions;
  kafkaSendTimeoutMs?: number;
  probeTimeoutMs?: number;
  /** Bearer tokens: the secret(s) that verify them, issuer, audience (authConfig() in production). */
  auth: AuthConfig;
  /** MQTT sign-in for drivers (POST /drivers/{id}/mqtt-credentials); those routes answer 503 without it. */
  mqttCredentials?: MqttCredentialIssuer;
  /** The broker URL given to drivers with their MQTT credentials (config().mqttUrl in production). */
  mqttUrl?: string;
  /** The workers' Prometheus endpoints the operations page's health panel reads (default: OPS_METRICS_URLS). */
  opsMetricsUrls?: readonly string[];
  /** Dispatch through the in-memory index of available drivers and batched assignments (config DISPATCH_*). */
  dispatch?: DispatchDeps;
}

export function createApp(deps: ApiDeps) {
  const cache = createTrackCacheFor(deps);
  const liveStreams = deps.liveStreams ?? createLiveStreamGate(deps.liveStreamsMax ?? Number.POSITIVE_INFINITY);
  const metrics = createHttpMetrics({ liveSubscribers: () => deps.feed.subscribers, liveStreams, trackCache: cache });
  const readiness = readinessService(deps);
  const tokens = createTokenService(deps.auth);
  const auth = authPlugin(tokens);
  const access = orderAccess(deps.sql);
  const cfg = config();
  const pipeline = createPipelineHealth({ urls: deps.opsMetricsUrls ?? cfg.opsMetricsUrls });

  const app = new Elysia()
    .use(errorHandler)
    .use(metrics.plugin)
    .use(
      openapi({
        path: "/openapi",
        documentation: {
          info: {
            title: "Driver tracking API",
            version: "1.0.0",
            description:
              "Real-time food-delivery driver tracking: orders, drivers, live tracking, health. Every route but " +
              "/health, /ready and /openapi needs a bearer token (JWT, roles customer, restaurant, driver, " +
              "operations, tracker); the track routes also take it as `?token=`.",
          },
          components: {
            securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
          },
        },
      }),
    )
    .use(healthModule({ readiness, registry: metrics.registry, auth }))
    .use(trackingModule({ ...deps, cache, auth, access, liveStreams }))
    .use(driversModule({ ...deps, auth, mqttUrl: deps.mqttUrl ?? "mqtt://127.0.0.1:1883" }))
    .use(ordersModule({ sql: deps.sql, auth, access, tokens, trackingLinkTtlSeconds: deps.auth.trackingLinkTtlSeconds, dispatch: deps.dispatch }))
    .use(opsModule({ sql: deps.sql, auth, pipeline, h3Resolution: cfg.h3Resolution }))
    .use(pagesModule({ auth, config: { tileUrl: cfg.mapTileUrl, city: cfg.mapCity } }));
  // Deny by default: a route that forgot to say who may call it stops the API from starting.
  assertEveryRouteHasARule(app.routes);
  return app;
}

export type App = ReturnType<typeof createApp>;
