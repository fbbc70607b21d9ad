/**
 * The environment, parsed once into a typed, frozen object. A bad value stops the process at start-up with the
 * variable's name and what is wrong with it, instead of failing later somewhere deep in a driver.
 */
import { AppError } from "./errors.ts";

type Env = Record<string, string | undefined>;

function fail(name: string, problem: string): never {
  throw new AppError("CONFIG_INVALID", `${name}: ${problem}`);
}

function text(env: Env, name: string, fallback: string): string {
  const value = env[name]?.trim();
  return value ? value : fallback;
}

function url(env: Env, name: string, fallback: string, protocols: string[]): string {
  const value = text(env, name, fallback);
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    fail(name, `"${value}" is not a URL (expected e.g. ${fallback})`);
  }
  if (!protocols.includes(parsed.protocol)) {
    fail(name, `protocol "${parsed.protocol}" is not one of ${protocols.join(", ")}`);
  }
  if (!parsed.hostname) fail(name, `"${value}" has no host`);
  return value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  if (!/^-?\d+$/.test(raw)) fail(name, `"${raw}" is not a whole number`);
  const value = Number(raw);
  if (value < min || value > max) fail(name, `${value} is outside ${min}..${max}`);
  return value;
}

function hostPorts(env: Env, name: string, fallback: string): string {
  const value = text(env, name, fallback);
  for (const part of value.split(",")) {
    if (!/^[\w.-]+:\d{1,5}$/.test(part.trim())) fail(name, `"${part}" is not host:port`);
  }
  return value;
}

function topicName(env: Env, name: string, fallback: string): string {
  const value = text(env, name, fallback);
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(value)) fail(name, `"${value}" is not a valid Kafka topic name`);
  return value;
}

function identifier(env: Env, name: string, fallback: string): string {
  const value = text(env, name, fallback);
  if (!/^[\w.-]{1,100}$/.test(value)) fail(name, `"${value}" may hold only letters, digits, "_", "." and "-"`);
  return value;
}

function mqttPrefix(env: Env, name: string): string {
  const value = text(env, name, "");
  if (value && !/^[\w.-]+(\/[\w.-]+)*\/$/.test(value)) fail(name, `"${value}" must be topic levels ending in "/"`);
  return value;
}

export function parseConfig(env: Env = process.env) {
  return Object.freeze({
    databaseUrl: url(env, "DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/food_delivery", [
      "postgres:",
      "postgresql:",
    ]),
    kafkaBootstrapServers: hostPorts(env, "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    kafkaTopic: topicName(env, "KAFKA_TOPIC", "driver-pos"),
    kafkaDlqTopic: topicName(env, "KAFKA_DLQ_TOPIC", "driver-pos-dlq"),
    /** Consumer group of the position workers; tests and benchmarks use their own. */
    kafkaGroupId: identifier(env, "KAFKA_GROUP_ID", "position-workers"),
    mqttUrl: url(env, "MQTT_URL", "mqtt://127.0.0.1:1883", ["mqtt:", "mqtts:", "ws:", "wss:", "tcp:"]),
    /** Prepended to every MQTT topic the bridge listens on (isolates a test run or a tenant); "" in production. */
    mqttTopicPrefix: mqttPrefix(env, "MQTT_TOPIC_PREFIX"),
    /** Bridges sharing this name split the messages between them ($share/<group>/…). */
    bridgeShareGroup: identifier(env, "BRIDGE_SHARE_GROUP", "bridge"),
    /** The bridge's MQTT client id; its persistent session (queued QoS 1 messages) survives restarts under it. */
    bridgeClientId: identifier(env, "BRIDGE_CLIENT_ID", "bridge-0"),
    apiPort: integer(env, "API_PORT", 8000, 0, 65535),
    driverApiUrl: url(env, "DRIVER_API_URL", "http://127.0.0.1:8000", ["http:", "https:"]),
    h3Resolution: integer(env, "H3_RESOLUTION", 9, 0, 15),
    offlineAfterSeconds: integer(env, "OFFLINE_AFTER", 60, 1, 86_400),
    // Messages, not positions: phones batch, so 10,000 messages are ~40,000 positions, where bench:db peaks.
    batchMaxMessages: integer(env, "BATCH_MAX_MESSAGES", 10_000, 1, 1_000_000),
    batchMaxWaitMs: integer(env, "BATCH_MAX_WAIT_MS", 100, 1, 60_000),
    // Each batch split by driver over this many connections, applied in parallel transactions: one per core here.
    applyConnections: integer(env, "APPLY_CONNECTIONS", 2, 1, 16),
    metricsPort: integer(env, "METRICS_PORT", 0, 0, 65535),
    /** Longest GET /track serves a cached answer without a notice from the database; 0 reads it every time. */
    trackCacheTtlMs: integer(env, "TRACK_CACHE_TTL_MS", 1_000, 0, 60_000),
    trackCacheMaxEntries: integer(env, "TRACK_CACHE_MAX_ENTRIES", 100_000, 1, 10_000_000),
  });
}

export type Config = ReturnType<typeof parseConfig>;

let loaded: Config | undefined;
/** The process-wide config, parsed on first use. */
export function config(): Config {
  loaded ??= parseConfig();
  return loaded;
}
