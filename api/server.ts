/**
 * `bun api/server.ts`: the API on API_PORT. SIGTERM (or SIGINT) drains it: no new connections, live streams told
 * to finish, in-flight requests completed, then the Kafka sidecar flushed and the database pool closed.
 */
// First: Elysia reads NODE_ENV when it is loaded (see the file).
import "./production-mode.ts";
import { isProduction } from "elysia/error";
import { authConfig, config, parseMqttAdminConfigIfSet } from "../lib/config.ts";
import { connectDatabase } from "../lib/db.ts";
import { exitCodeFor } from "../lib/errors.ts";
import { createMqttCredentialStore } from "../lib/mqtt-credentials.ts";
import { createApp } from "./app.ts";
import { startKafkaSidecar } from "./kafka/sidecar-client.ts";
import { FALLBACK_REACH_M } from "./modules/orders/assignment.ts";
import { createDispatcher } from "./modules/orders/dispatcher.ts";
import { createDriverIndex, readerInWorker } from "./modules/orders/driver-index.ts";
import { createOrderFeed } from "./modules/tracking/feed.ts";
import { createHeartbeats } from "./modules/tracking/heartbeats.ts";
import { DEFAULT_HEARTBEAT_MS } from "./modules/tracking/live.ts";
import { startLiveSocketServer } from "./modules/tracking/live-socket.ts";
import { trackingService } from "./modules/tracking/service.ts";
import { createLiveStreamGate, liveStreamCeiling, openFileLimit } from "./modules/tracking/streams.ts";
import { orderAccess } from "./auth/order-access.ts";
import { createTokenService } from "./auth/tokens.ts";

const SHUTDOWN_DEADLINE_MS = 15_000;
let stopping = false;

// Something loaded Elysia before production-mode.ts ran: validation errors would echo bodies again.
if (!isProduction) throw new Error("[api] Elysia is not in production mode (import api/production-mode.ts first)");

// Settings are parsed before anything starts; a refused one ends the process with EXIT_CONFIG, so a supervisor
// (api/index.ts) does not restart it in a loop.
const settings = (() => {
  try {
    return { cfg: config(), auth: authConfig(), mqttAdmin: parseMqttAdminConfigIfSet() };
  } catch (error) {
    console.error(`[api] ${error instanceof Error ? error.message : String(error)}`);
    process.exit(exitCodeFor(error));
  }
})();
const cfg = settings.cfg;
// Read here, after Bun raised its soft limit to the hard one: the number this process can really open.
const fileLimit = openFileLimit();
const liveStreamsMax = liveStreamCeiling(cfg.liveStreamsMax, fileLimit);
const sql = connectDatabase(cfg.databaseUrl, { max: cfg.apiDbPoolMax, application: "api" });
// Not awaited: the API serves reads while Kafka connects; PATCH answers 503 and /ready says why until then.
const kafka = startKafkaSidecar({ clientId: "tracking-api" });
const feed = createOrderFeed(sql);
// LISTEN at start-up, before the first stream: issued lazily, it met a restart's reconnect storm and timed out there
// (bench:fanout, 18,878 streams). Retried until it holds; /ready answers 503 until then.
void (async () => {
  for (let backoffMs = 250; !stopping; backoffMs = Math.min(backoffMs * 2, 10_000)) {
    try {
      await feed.start();
      console.log("[api] listening for order notices");
      return;
    } catch (error) {
      if (stopping) return;
      console.error(`[api] LISTEN failed, retrying in ${backoffMs} ms: ${error instanceof Error ? error.message : String(error)}`);
      await Bun.sleep(backoffMs);
    }
  }
})();
// Dispatch: the available drivers in memory, re-read every DISPATCH_INDEX_REFRESH_MS, or less often when reads take
// more than DISPATCH_INDEX_READ_PERCENT of the time (a failed read is logged and retried at the next; after three
// refreshes without one, assignments search H3 cells until one succeeds).
const dispatch = cfg.dispatchIndexRefreshMs > 0
  ? {
      // Read, decoded and indexed on a worker thread with its own connection: never on the event loop.
      index: createDriverIndex(readerInWorker(cfg.databaseUrl), {
        refreshMs: cfg.dispatchIndexRefreshMs,
        readShare: cfg.dispatchIndexReadPercent / 100,
        candidates: cfg.dispatchCandidates,
        maxDistanceKm: FALLBACK_REACH_M / 1000,
        onError: (error) =>
          console.error(`[api] reading available drivers failed: ${error instanceof Error ? error.message : String(error)}`),
      }),
      dispatcher: createDispatcher(sql, { inFlight: cfg.dispatchBatchesInFlight }),
    }
  : undefined;
dispatch?.index.start();
// Drivers' MQTT sign-in needs the broker's password file; without MQTT_PASSWORD_FILE those routes answer 503.
const mqttAdmin = settings.mqttAdmin;
const mqttCredentials = mqttAdmin ? createMqttCredentialStore({ ...mqttAdmin, mqttUrl: cfg.mqttUrl }) : undefined;

const tls = cfg.apiTls ? { cert: Bun.file(cfg.apiTls.certFile), key: Bun.file(cfg.apiTls.keyFile) } : undefined;
// One ceiling for the process's streams, whichever port they come in on.
const liveStreams = createLiveStreamGate(liveStreamsMax);

const app = createApp({
  sql,
  kafka,
  positionsTopic: cfg.kafkaTopic,
  feed,
  liveStreams,
  trackCache: { ttlMs: cfg.trackCacheTtlMs, maxEntries: cfg.trackCacheMaxEntries },
  // Parsed here, at start-up: no AUTH_TOKEN_SECRET (or a short one) stops the API before it listens.
  auth: settings.auth,
  mqttUrl: cfg.mqttUrl,
  mqttCredentials,
  dispatch,
}).listen({
  port: cfg.apiPort,
  hostname: cfg.apiHost,
  // The largest legitimate body is a 500-position batch, well under this.
  maxRequestBodySize: 1024 * 1024,
  // Longer than the live streams' 15 s heartbeat, or Bun would cut quiet streams.
  idleTimeout: 30,
  // SO_REUSEPORT (also Elysia's default, said here because it is relied on): several API processes on one host share
  // API_PORT and the kernel spreads new connections over them, each with its own live-stream ceiling.
  reusePort: true,
  ...(tls ? { tls } : {}),
});
// LIVE_PORT: the live streams (and only they) also from raw sockets, at less memory per stream (live-socket.ts).
const liveSocket = cfg.livePort > 0
  ? startLiveSocketServer(
      {
        live: { feed, tracking: trackingService(sql), heartbeats: createHeartbeats(DEFAULT_HEARTBEAT_MS) },
        tokens: createTokenService(settings.auth),
        access: orderAccess(sql),
        liveStreams,
      },
      { hostname: cfg.apiHost, port: cfg.livePort, tls },
    )
  : undefined;
if (liveSocket) console.log(`[api] live streams also on ${tls ? "https" : "http"}://${cfg.apiHost}:${liveSocket.port}/track/{order_id}/live`);
console.log(
  `[api] listening on ${cfg.apiTls ? "https" : "http"}://${app.server?.hostname}:${app.server?.port} (production mode; at most ` +
    `${liveStreamsMax} live streams, open-file limit ${fileLimit ?? "unknown"})`,
);

async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`[api] ${signal}: draining`);
  const deadline = setTimeout(() => {
    console.error("[api] shutdown deadline passed, exiting");
    process.exit(1);
  }, SHUTDOWN_DEADLINE_MS);
  liveSocket?.stop(); // no new connections; feed.close() ends the streams it holds
  feed.close();
  dispatch?.index.close();
  await app.stop();
  await kafka.close();
  await mqttCredentials?.close();
  await sql.end({ timeout: 5 });
  clearTimeout(deadline);
  console.log("[api] stopped");
  process.exit(0);
}
process.once("SIGTERM", () => void shutdown("SIGTERM"));
process.once("SIGINT", () => void shutdown("SIGINT"));
