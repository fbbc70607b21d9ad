/**
 * Prometheus metrics of one app: requests by route pattern (not by URL, which would make one series per order id)
 * and status, their latency, live streams, GET /track's cache, and the process's default metrics. A registry per
 * app, so tests can build several apps in one process.
 */
import { Elysia } from "elysia";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { TrackCache } from "../tracking/cache.ts";
import { CLOSE_REASONS, type LiveStreamGate } from "../tracking/streams.ts";

export function createHttpMetrics(options: {
  liveSubscribers: () => number;
  liveStreams?: Pick<LiveStreamGate, "max" | "open" | "refused" | "closed">;
  trackCache?: Pick<TrackCache, "hits" | "reads" | "size">;
}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const labelNames = ["method", "route", "status"] as const;
  const requests = new Counter({
    name: "http_requests_total",
    help: "HTTP requests answered, by route pattern and status",
    labelNames,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "http_request_duration_seconds",
    help: "Time to the response (for streams: to the start of the stream)",
    labelNames,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  new Gauge({
    name: "live_tracking_subscribers",
    help: "Open live tracking streams",
    registers: [registry],
    collect() {
      this.set(options.liveSubscribers());
    },
  });

  const streams = options.liveStreams;
  if (streams) {
    new Gauge({
      name: "live_streams",
      help: "Live tracking streams held (each one socket)",
      registers: [registry],
      collect() {
        this.set(streams.open);
      },
    });
    new Gauge({
      name: "live_streams_max",
      help: "The most live streams this process holds (LIVE_STREAMS_MAX or the open-file limit less a reserve)",
      registers: [registry],
      collect() {
        this.set(streams.max);
      },
    });
    new Counter({
      name: "live_streams_refused_total",
      help: "Live streams refused at the ceiling (503 TOO_MANY_STREAMS)",
      registers: [registry],
      collect() {
        this.reset();
        this.inc(streams.refused);
      },
    });
    new Counter({
      name: "live_streams_closed_total",
      help: "Live streams closed, by reason: ended, client, slow_client (dropped for not reading), shutdown",
      labelNames: ["reason"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const reason of CLOSE_REASONS) this.inc({ reason }, streams.closed[reason]);
      },
    });
  }

  const cache = options.trackCache;
  if (cache) {
    // The cache keeps its own counts; each scrape copies them (a hit ratio is hits / (hits + reads)).
    new Counter({
      name: "track_cache_hits_total",
      help: "GET /track answers served from memory",
      registers: [registry],
      collect() {
        this.reset();
        this.inc(cache.hits);
      },
    });
    new Counter({
      name: "track_cache_reads_total",
      help: "GET /track answers read from the database",
      registers: [registry],
      collect() {
        this.reset();
        this.inc(cache.reads);
      },
    });
    new Gauge({
      name: "track_cache_entries",
      help: "GET /track answers held in memory",
      registers: [registry],
      collect() {
        this.set(cache.size);
      },
    });
  }

  const started = new WeakMap<Request, number>();
  const plugin = new Elysia()
    .onRequest(({ request }) => {
      started.set(request, performance.now());
    })
    .onAfterResponse({ as: "global" }, ({ request, route, set }) => {
      const start = started.get(request);
      const labels = {
        method: request.method,
        route: route || "unmatched",
        status: String(typeof set.status === "number" ? set.status : 200),
      };
      requests.inc(labels);
      if (start !== undefined) duration.observe(labels, (performance.now() - start) / 1000);
    });

  return { registry, plugin };
}
