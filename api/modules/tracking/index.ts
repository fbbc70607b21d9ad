import { Elysia } from "elysia";
import type { Sql } from "../../../lib/db.ts";
import { AppError } from "../../../lib/errors.ts";
import type { OrderAccess } from "../../auth/order-access.ts";
import type { AuthPlugin, AuthRule } from "../../auth/plugin.ts";
import { ErrorModel, errorResponses } from "../../model.ts";
import { createTrackCache, type TrackCache, type TrackCacheOptions } from "./cache.ts";
import type { OrderFeed } from "./feed.ts";
import { createHeartbeats } from "./heartbeats.ts";
import { DEFAULT_HEARTBEAT_MS, openLiveStream } from "./live.ts";
import { Track, TrackParams } from "./model.ts";
import { trackingService } from "./service.ts";
import { LIVE_RETRY_AFTER_SECONDS, type LiveStreamGate } from "./streams.ts";

export interface TrackingDeps {
  sql: Sql;
  feed: OrderFeed;
  heartbeatMs?: number;
  /** The process's ceiling on live streams (api/modules/tracking/streams.ts). */
  liveStreams: LiveStreamGate;
  /** GET /track answers kept between notices; without it every request reads the database. */
  trackCache?: TrackCacheOptions;
  /** The cache itself, when the app built it (to show it on /metrics); otherwise built here from trackCache. */
  cache?: TrackCache;
  auth: AuthPlugin;
  access: OrderAccess;
}

/**
 * The order's customer and restaurant, operations, and whoever holds the order's tracking link; the token may come
 * as `?token=` because EventSource cannot set headers and a shared link is just a URL.
 */
export const TRACKERS: AuthRule = { roles: ["customer", "restaurant", "operations", "tracker"], tokenInQuery: true };

/** GET /track's cache over the database's answer, as configured (off without options). */
export function createTrackCacheFor(deps: Pick<TrackingDeps, "sql" | "feed" | "trackCache">): TrackCache {
  return createTrackCache(trackingService(deps.sql).track, deps.feed, deps.trackCache ?? { ttlMs: 0, maxEntries: 0 });
}

export function trackingModule(deps: TrackingDeps) {
  const tracking = trackingService(deps.sql);
  const live = { feed: deps.feed, tracking, heartbeats: createHeartbeats(deps.heartbeatMs ?? DEFAULT_HEARTBEAT_MS) };
  const cache = deps.cache ?? createTrackCacheFor(deps);

  return new Elysia({ prefix: "/track" })
    .use(deps.auth)
    .get(
      "/:order_id",
      async ({ params, principal }) => {
        await deps.access.check(principal, params.order_id);
        const track = await cache.get(params.order_id);
        if (!track) throw new AppError("NOT_FOUND", `order ${params.order_id} does not exist`);
        return track;
      },
      {
        auth: TRACKERS,
        params: TrackParams,
        response: { 200: Track, ...errorResponses, 401: ErrorModel, 403: ErrorModel },
        detail: { tags: ["tracking"], summary: "Where an order and its driver are now" },
      },
    )
    .get(
      "/:order_id/live",
      async ({ params, principal, set }) => {
        // Before any database work: at the ceiling a refusal must cost next to nothing.
        const release = deps.liveStreams.acquire();
        if (!release) {
          set.headers["retry-after"] = String(LIVE_RETRY_AFTER_SECONDS);
          // The refused client's socket is closed too: its descriptor is what the ceiling protects.
          set.headers.connection = "close";
          throw new AppError("TOO_MANY_STREAMS", `this server holds its most live streams (${deps.liveStreams.max})`);
        }
        try {
          await deps.access.check(principal, params.order_id);
          // The stream's own cancel() tells it the client went away (sse-sink.ts); an abort listener on the request
          // would keep the whole Request alive for the stream's life.
          return await openLiveStream(params.order_id, live, { onClose: release });
        } catch (error) {
          release();
          throw error;
        }
      },
      {
        auth: TRACKERS,
        params: TrackParams,
        detail: {
          tags: ["tracking"],
          summary: "Live updates of one order (Server-Sent Events)",
          description:
            "text/event-stream. `track`: the GET /track/{order_id} answer, first and after each status change. " +
            "`position`: {order_id, status, driver_id, driver_state, lat, lon, at, eta_seconds, published_at} when " +
            "the driver moves (at: the fix's time; published_at: when the database published it, just before its " +
            "commit). `end`: the order is delivered or cancelled and the stream closes. Comment lines are heartbeats. " +
            "503 TOO_MANY_STREAMS with Retry-After when this server holds its most streams (GET /track still " +
            "answers); a client that stops reading is disconnected.",
        },
      },
    );
}
