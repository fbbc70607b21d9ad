import { Elysia } from "elysia";
import type { Sql } from "../../../lib/db.ts";
import { AppError } from "../../../lib/errors.ts";
import { errorResponses } from "../../model.ts";
import { createTrackCache, type TrackCache, type TrackCacheOptions } from "./cache.ts";
import type { OrderFeed } from "./feed.ts";
import { DEFAULT_HEARTBEAT_MS, openLiveStream } from "./live.ts";
import { Track, TrackParams } from "./model.ts";
import { trackingService } from "./service.ts";

export interface TrackingDeps {
  sql: Sql;
  feed: OrderFeed;
  heartbeatMs?: number;
  /** GET /track answers kept between notices; without it every request reads the database. */
  trackCache?: TrackCacheOptions;
  /** The cache itself, when the app built it (to show it on /metrics); otherwise built here from trackCache. */
  cache?: TrackCache;
}

/** GET /track's cache over the database's answer, as configured (off without options). */
export function createTrackCacheFor(deps: Pick<TrackingDeps, "sql" | "feed" | "trackCache">): TrackCache {
  return createTrackCache(trackingService(deps.sql).track, deps.feed, deps.trackCache ?? { ttlMs: 0, maxEntries: 0 });
}

export function trackingModule(deps: TrackingDeps) {
  const tracking = trackingService(deps.sql);
  const live = { feed: deps.feed, tracking, heartbeatMs: deps.heartbeatMs ?? DEFAULT_HEARTBEAT_MS };
  const cache = deps.cache ?? createTrackCacheFor(deps);

  return new Elysia({ prefix: "/track" })
    .get(
      "/:order_id",
      async ({ params }) => {
        const track = await cache.get(params.order_id);
        if (!track) throw new AppError("NOT_FOUND", `order ${params.order_id} does not exist`);
        return track;
      },
      {
        params: TrackParams,
        response: { 200: Track, ...errorResponses },
        detail: { tags: ["tracking"], summary: "Where an order and its driver are now" },
      },
    )
    .get("/:order_id/live", ({ params, request }) => openLiveStream(params.order_id, live, request.signal), {
      params: TrackParams,
      detail: {
        tags: ["tracking"],
        summary: "Live updates of one order (Server-Sent Events)",
        description:
          "text/event-stream. `track`: the GET /track/{order_id} answer, first and after each status change. " +
          "`position`: {order_id, status, driver_id, driver_state, lat, lon, at, eta_seconds} when the driver " +
          "moves. `end`: the order is delivered or cancelled and the stream closes. Comment lines are heartbeats.",
      },
    });
}
