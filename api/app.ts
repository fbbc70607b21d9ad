/**
 * The HTTP API assembled from its modules. Everything with a connection comes in through `deps`, so tests build
 * the same app against their own database and Kafka topic and call `app.handle(new Request(...))`.
 */
import { openapi } from "@elysiajs/openapi";
import { Elysia } from "elysia";
import type { Sql } from "../lib/db.ts";
import { errorHandler } from "./errors.ts";
import type { KafkaLink } from "./kafka/link.ts";
import { driversModule } from "./modules/drivers/index.ts";
import { healthModule } from "./modules/health/index.ts";
import { createHttpMetrics } from "./modules/health/metrics.ts";
import { readinessService } from "./modules/health/service.ts";
import { ordersModule } from "./modules/orders/index.ts";
import type { TrackCacheOptions } from "./modules/tracking/cache.ts";
import type { OrderFeed } from "./modules/tracking/feed.ts";
import { createTrackCacheFor, trackingModule } from "./modules/tracking/index.ts";

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
  /** GET /track's cache (config TRACK_CACHE_*); tests that write and read back at once leave it off. */
  trackCache?: TrackCacheOptions;
  kafkaSendTimeoutMs?: number;
  probeTimeoutMs?: number;
}

export function createApp(deps: ApiDeps) {
  const cache = createTrackCacheFor(deps);
  const metrics = createHttpMetrics({ liveSubscribers: () => deps.feed.subscribers, trackCache: cache });
  const readiness = readinessService(deps);

  return new Elysia()
    .use(errorHandler)
    .use(metrics.plugin)
    .use(
      openapi({
        path: "/openapi",
        documentation: {
          info: {
            title: "Driver tracking API",
            version: "1.0.0",
            description: "Real-time food-delivery driver tracking: orders, drivers, live tracking, health.",
          },
        },
      }),
    )
    .use(healthModule({ readiness, registry: metrics.registry }))
    .use(trackingModule({ ...deps, cache }))
    .use(driversModule(deps))
    .use(ordersModule(deps));
}

export type App = ReturnType<typeof createApp>;
