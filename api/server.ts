/**
 * `bun api/server.ts`: the API on API_PORT. SIGTERM (or SIGINT) drains it: no new connections, live streams told
 * to finish, in-flight requests completed, then the Kafka sidecar flushed and the database pool closed.
 */
// First: Elysia reads NODE_ENV when it is loaded (see the file).
import "./production-mode.ts";
import { isProduction } from "elysia/error";
import { authConfig, config, parseMqttAdminConfigIfSet } from "../lib/config.ts";
import { connectDatabase } from "../lib/db.ts";
import { createMqttCredentialStore } from "../lib/mqtt-credentials.ts";
import { createApp } from "./app.ts";
import { startKafkaSidecar } from "./kafka/sidecar-client.ts";
import { createOrderFeed } from "./modules/tracking/feed.ts";

const SHUTDOWN_DEADLINE_MS = 15_000;

// Something loaded Elysia before production-mode.ts ran: validation errors would echo bodies again.
if (!isProduction) throw new Error("[api] Elysia is not in production mode (import api/production-mode.ts first)");

const cfg = config();
const sql = connectDatabase(cfg.databaseUrl, { max: 20, application: "api" });
// Not awaited: the API serves reads while Kafka connects; PATCH answers 503 and /ready says why until then.
const kafka = startKafkaSidecar({ clientId: "tracking-api" });
const feed = createOrderFeed(sql);
// Drivers' MQTT sign-in needs the broker's password file; without MQTT_PASSWORD_FILE those routes answer 503.
const mqttAdmin = parseMqttAdminConfigIfSet();
const mqttCredentials = mqttAdmin ? createMqttCredentialStore({ ...mqttAdmin, mqttUrl: cfg.mqttUrl }) : undefined;

const app = createApp({
  sql,
  kafka,
  positionsTopic: cfg.kafkaTopic,
  feed,
  trackCache: { ttlMs: cfg.trackCacheTtlMs, maxEntries: cfg.trackCacheMaxEntries },
  // Parsed here, at start-up: no AUTH_TOKEN_SECRET (or a short one) stops the API before it listens.
  auth: authConfig(),
  mqttUrl: cfg.mqttUrl,
  mqttCredentials,
}).listen({
  port: cfg.apiPort,
  hostname: cfg.apiHost,
  // The largest legitimate body is a 500-position batch, well under this.
  maxRequestBodySize: 1024 * 1024,
  // Longer than the live streams' 15 s heartbeat, or Bun would cut quiet streams.
  idleTimeout: 30,
});
console.log(`[api] listening on http://${app.server?.hostname}:${app.server?.port} (production mode)`);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  console.log(`[api] ${signal}: draining`);
  const deadline = setTimeout(() => {
    console.error("[api] shutdown deadline passed, exiting");
    process.exit(1);
  }, SHUTDOWN_DEADLINE_MS);
  feed.close();
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
