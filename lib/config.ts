/**
 * The environment, parsed once into a typed, frozen object. A bad value stops the process at start-up with the
 * variable's name and what is wrong with it, instead of failing later somewhere deep in a driver.
 */
import { accessSync, constants } from "node:fs";
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

function urlList(env: Env, name: string, fallback: string): readonly string[] {
  const value = text(env, name, fallback);
  const urls = value.split(",").map((part) => part.trim()).filter(Boolean);
  for (const part of urls) url({ [name]: part }, name, fallback, ["http:", "https:"]);
  return Object.freeze(urls);
}

function tileTemplate(env: Env, name: string): string {
  const value = text(env, name, "");
  if (!value) return "";
  url({ [name]: value.replace(/\{[a-z]\}/g, "0") }, name, "https://tile.example/{z}/{x}/{y}.png", ["http:", "https:"]);
  if (!["{z}", "{x}", "{y}"].every((part) => value.includes(part))) fail(name, `"${value}" lacks {z}, {x} or {y}`);
  return value;
}

function choice<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const value = text(env, name, fallback);
  if (!(allowed as readonly string[]).includes(value)) fail(name, `"${value}" is not one of ${allowed.join(", ")}`);
  return value as T;
}

const KAFKA_SASL_MECHANISMS = ["SCRAM-SHA-512", "SCRAM-SHA-256"] as const;
export type KafkaSasl = Readonly<{ mechanism: (typeof KAFKA_SASL_MECHANISMS)[number]; username: string; password: string }>;

/**
 * The Kafka identity of this process (bin/stack gives each service its own user). Both or neither: without them the
 * client speaks plaintext, which the stack's broker refuses — how a test proves an anonymous client gets nowhere.
 */
function kafkaSasl(env: Env): KafkaSasl | null {
  const username = env.KAFKA_USERNAME?.trim();
  const password = env.KAFKA_PASSWORD?.trim();
  if (!username && !password) return null;
  if (!username) fail("KAFKA_USERNAME", "missing while KAFKA_PASSWORD is set");
  if (!password) fail("KAFKA_PASSWORD", "missing while KAFKA_USERNAME is set (bin/stack generates it)");
  if (!/^[\w.-]{1,100}$/.test(username)) fail("KAFKA_USERNAME", `"${username}" may hold only letters, digits, "_", "." and "-"`);
  const mechanism = text(env, "KAFKA_SASL_MECHANISM", "SCRAM-SHA-512").toUpperCase();
  if (!(KAFKA_SASL_MECHANISMS as readonly string[]).includes(mechanism)) {
    fail("KAFKA_SASL_MECHANISM", `"${mechanism}" is not one of ${KAFKA_SASL_MECHANISMS.join(", ")}`);
  }
  return Object.freeze({ mechanism: mechanism as KafkaSasl["mechanism"], username, password });
}

function mqttPrefix(env: Env, name: string): string {
  const value = text(env, name, "");
  if (value && !/^[\w.-]+(\/[\w.-]+)*\/$/.test(value)) fail(name, `"${value}" must be topic levels ending in "/"`);
  return value;
}

function hostname(env: Env, name: string, fallback: string): string {
  const value = text(env, name, fallback);
  if (!/^[\w.:-]{1,253}$/.test(value)) fail(name, `"${value}" is not a host name or IP address`);
  return value;
}

/** HTTPS for the API: both files or neither (plain HTTP); each must be a readable file. */
function apiTls(env: Env): Readonly<{ certFile: string; keyFile: string }> | null {
  const certFile = env.API_TLS_CERT_FILE?.trim() ?? "";
  const keyFile = env.API_TLS_KEY_FILE?.trim() ?? "";
  if (!certFile && !keyFile) return null;
  if (!certFile) fail("API_TLS_CERT_FILE", "must be set when API_TLS_KEY_FILE is (both or neither)");
  if (!keyFile) fail("API_TLS_KEY_FILE", "must be set when API_TLS_CERT_FILE is (both or neither)");
  for (const [name, file] of [["API_TLS_CERT_FILE", certFile], ["API_TLS_KEY_FILE", keyFile]] as const) {
    try {
      accessSync(file, constants.R_OK);
    } catch {
      fail(name, `cannot read "${file}"`);
    }
  }
  return Object.freeze({ certFile, keyFile });
}

function secret(env: Env, name: string, required: boolean): string | undefined {
  const value = env[name]?.trim();
  if (!value) {
    if (required) fail(name, "missing (bin/stack generates it into .stack/secrets.env; never a default in code)");
    return undefined;
  }
  // HS256 wants a key of at least the hash's 256 bits; the generated ones are 48 hex characters (192 random bits).
  if (value.length < AUTH_SECRET_MIN_LENGTH) fail(name, `too short: at least ${AUTH_SECRET_MIN_LENGTH} characters`);
  return value;
}

export const AUTH_SECRET_MIN_LENGTH = 32;

/**
 * Bearer-token settings, parsed apart from the rest: only the API and the token minters (the IdP stand-in: the
 * CLI, the simulator) hold the signing secret, so the bridge and the worker neither need nor get it.
 */
export function parseAuthConfig(env: Env = process.env) {
  return Object.freeze({
    /** Signs new tokens and verifies them (HS256; its fingerprint is the `kid`). */
    tokenSecret: secret(env, "AUTH_TOKEN_SECRET", true) as string,
    /** The secret before a rotation: still verifies the tokens it signed until they expire, never signs. */
    previousTokenSecret: secret(env, "AUTH_TOKEN_SECRET_PREVIOUS", false),
    issuer: text(env, "AUTH_ISSUER", "driver-tracking-idp"),
    audience: text(env, "AUTH_AUDIENCE", "driver-tracking-api"),
    /** How long the shareable tracking link that POST /orders answers with stays valid. */
    trackingLinkTtlSeconds: integer(env, "AUTH_TRACKING_LINK_TTL", 6 * 3600, 60, 7 * 86_400),
    /** Clock skew tolerated on `exp`/`nbf`. */
    clockToleranceSeconds: integer(env, "AUTH_CLOCK_TOLERANCE", 30, 0, 300),
  });
}

export type AuthConfig = ReturnType<typeof parseAuthConfig>;

let loadedAuth: AuthConfig | undefined;
/** The process-wide auth config, parsed on first use (the API parses it at start-up, so it fails fast). */
export function authConfig(): AuthConfig {
  loadedAuth ??= parseAuthConfig();
  return loadedAuth;
}

/**
 * The MQTT credential issuer's settings (lib/mqtt-credentials.ts), parsed apart: only the process that issues and
 * revokes drivers' MQTT credentials (the API, tests) holds the broker's admin password and writes its password file.
 */
export function parseMqttAdminConfig(env: Env = process.env) {
  const passwordFile = env.MQTT_PASSWORD_FILE?.trim();
  if (!passwordFile) fail("MQTT_PASSWORD_FILE", "missing (bin/stack sets it: .stack/mosquitto/passwd)");
  const pidFile = env.MQTT_BROKER_PID_FILE?.trim();
  if (!pidFile) fail("MQTT_BROKER_PID_FILE", "missing (bin/stack sets it: .stack/pids/mosquitto.pid)");
  return Object.freeze({
    /** Operations' broker user: sends the revoked usernames to the identity-guard plugin, which drops them. */
    adminUsername: identifier(env, "MQTT_ADMIN_USERNAME", "admin"),
    adminPassword: secret(env, "MQTT_ADMIN_PASSWORD", true) as string,
    /** Mosquitto's password_file; driver lines are written here (hashed), then the broker re-reads it on SIGHUP. */
    passwordFile,
    brokerPidFile: pidFile,
    /** Issues and revocations arriving within this window share one file rewrite and one broker reload. */
    coalesceMs: integer(env, "MQTT_CREDENTIALS_COALESCE_MS", 20, 0, 10_000),
  });
}

export type MqttAdminConfig = ReturnType<typeof parseMqttAdminConfig>;

/** The issuer's settings when this process issues MQTT credentials (MQTT_PASSWORD_FILE set), undefined otherwise. */
export const parseMqttAdminConfigIfSet = (env: Env = process.env): MqttAdminConfig | undefined =>
  env.MQTT_PASSWORD_FILE?.trim() ? parseMqttAdminConfig(env) : undefined;

// The default is a developer's superuser URL: in production each process must be given its own role's URL. Checked
// when read, so a process without a database (the bridge) needs none; the API and the worker read it at start-up.
function databaseUrl(env: Env): () => string {
  if (env.NODE_ENV === "production" && !env.DATABASE_URL?.trim()) {
    return () => fail("DATABASE_URL", "must be set when NODE_ENV=production (the URL of the process's own role)");
  }
  const value = url(env, "DATABASE_URL", "postgresql://postgres:postgres@127.0.0.1:5432/food_delivery", [
    "postgres:",
    "postgresql:",
  ]);
  return () => value;
}

export function parseConfig(env: Env = process.env) {
  const database = databaseUrl(env);
  return Object.freeze({
    get databaseUrl(): string {
      return database();
    },
    kafkaBootstrapServers: hostPorts(env, "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    kafkaTopic: topicName(env, "KAFKA_TOPIC", "driver-pos"),
    kafkaDlqTopic: topicName(env, "KAFKA_DLQ_TOPIC", "driver-pos-dlq"),
    /** Consumer group of the position workers; tests and benchmarks use their own. */
    kafkaGroupId: identifier(env, "KAFKA_GROUP_ID", "position-workers"),
    /**
     * librdkafka's max.poll.interval.ms for the position workers: a worker holding a batch it cannot apply keeps
     * polling with its partitions paused (lib/kafka.ts holdWhile), so an outage longer than this does not cost it its
     * membership. At least session.timeout.ms (10 s), as librdkafka requires.
     */
    kafkaMaxPollIntervalMs: integer(env, "KAFKA_MAX_POLL_INTERVAL_MS", 300_000, 10_000, 86_400_000),
    /** SASL/SCRAM login (KAFKA_USERNAME, KAFKA_PASSWORD, KAFKA_SASL_MECHANISM); null = plaintext, no identity. */
    kafkaSasl: kafkaSasl(env),
    /** client.id of the API's Kafka producer (the sidecar): names it in the broker's logs and quotas. */
    kafkaClientId: identifier(env, "KAFKA_CLIENT_ID", "tracking-api"),
    mqttUrl: url(env, "MQTT_URL", "mqtt://127.0.0.1:1883", ["mqtt:", "mqtts:", "ws:", "wss:", "tcp:"]),
    /** Prepended to every MQTT topic the bridge listens on (isolates a test run or a tenant); "" in production. */
    mqttTopicPrefix: mqttPrefix(env, "MQTT_TOPIC_PREFIX"),
    /** Bridges sharing this name split the messages between them ($share/<group>/…). */
    bridgeShareGroup: identifier(env, "BRIDGE_SHARE_GROUP", "bridge"),
    /** The bridge's MQTT client id; its persistent session (queued QoS 1 messages) survives restarts under it. */
    bridgeClientId: identifier(env, "BRIDGE_CLIENT_ID", "bridge-0"),
    apiPort: integer(env, "API_PORT", 8000, 0, 65535),
    /**
     * Live tracking streams (GET /track/{id}/live only) served from raw sockets on this port as well, at ~1 KB of
     * memory per stream less than the API's port (api/modules/tracking/live-socket.ts); 0 = off.
     */
    livePort: integer(env, "LIVE_PORT", 0, 0, 65535),
    /** The API listens on loopback unless told otherwise (a proxy or 0.0.0.0 is a decision, not a default). */
    apiHost: hostname(env, "API_HOST", "127.0.0.1"),
    /** HTTPS (API_TLS_CERT_FILE + API_TLS_KEY_FILE, PEM); null = plain HTTP. */
    apiTls: apiTls(env),
    driverApiUrl: url(env, "DRIVER_API_URL", "http://127.0.0.1:8000", ["http:", "https:"]),
    h3Resolution: integer(env, "H3_RESOLUTION", 9, 0, 15),
    /**
     * The API's in-memory index of available drivers (dispatch, migration 0017) is re-read this often; 0 turns it
     * off (every assignment then searches H3 cells, 0011). Its answers are up to this old (docs/dispatch.md).
     */
    dispatchIndexRefreshMs: integer(env, "DISPATCH_INDEX_REFRESH_MS", 2_000, 0, 600_000),
    /**
     * The share of time, in percent, the index may spend reading, at most: after a read of r ms it pauses at least
     * r × (100 / percent − 1) ms (a 200 ms read of 100,000 drivers at 5%: 3.8 s). 100 = no bound.
     */
    dispatchIndexReadPercent: integer(env, "DISPATCH_INDEX_READ_PERCENT", 5, 1, 100),
    /** How many of the index's nearest drivers an assignment proposes to the database, which claims the nearest free one. */
    dispatchCandidates: integer(env, "DISPATCH_CANDIDATES", 8, 1, 256),
    /** Assignment batches in flight at once per API process (each one transaction on its own connection). */
    dispatchBatchesInFlight: integer(env, "DISPATCH_BATCHES_IN_FLIGHT", 2, 1, 16),
    offlineAfterSeconds: integer(env, "OFFLINE_AFTER", 60, 1, 86_400),
    // Messages, not positions: phones batch, so 10,000 messages are ~40,000 positions, where bench:db peaks.
    batchMaxMessages: integer(env, "BATCH_MAX_MESSAGES", 10_000, 1, 1_000_000),
    batchMaxWaitMs: integer(env, "BATCH_MAX_WAIT_MS", 100, 1, 60_000),
    /** The position worker answers 503 on /ready once a batch has kept failing this long (it cannot make progress). */
    workerStalledAfterMs: integer(env, "WORKER_STALLED_AFTER_MS", 30_000, 100, 3_600_000),
    /**
     * Trail compaction (migration 0014) in steps of this many drivers, a pass that finds closed hours spread over
     * this long (the job pauses to stay on that schedule; behind it, it does not pause). A closed hour of 100,000
     * drivers is ~10 minutes of one core's work (docs/trail.md): 40 minutes of the 50 before the next hour closes.
     * 0 = no pauses.
     */
    trailCompactionDriversPerStep: integer(env, "TRAIL_COMPACTION_DRIVERS_PER_STEP", 200, 1, 100_000),
    trailCompactionSpreadMs: integer(env, "TRAIL_COMPACTION_SPREAD_MS", 2_400_000, 0, 3_000_000),
    /**
     * Compaction waits between steps while the position worker's Kafka lag is over this many messages (fresh
     * positions first; ~1.6 s of messages at 25,000 positions/s in batches of 4). 0 = never waits for ingest.
     */
    trailCompactionYieldLag: integer(env, "TRAIL_COMPACTION_YIELD_LAG", 10_000, 0, 100_000_000),
    /** The bridge answers 503 on /ready once messages have waited this long with none forwarded (Kafka not taking them). */
    bridgeStalledAfterMs: integer(env, "BRIDGE_STALLED_AFTER_MS", 30_000, 100, 3_600_000),
    // Each batch split by driver over this many connections, applied in parallel transactions: one per core here.
    applyConnections: integer(env, "APPLY_CONNECTIONS", 2, 1, 16),
    metricsPort: integer(env, "METRICS_PORT", 0, 0, 65535),
    /** The mode publisher's MQTT client id; it is also its broker user (identity-guard reserves it to that user). */
    modesClientId: identifier(env, "MODES_CLIENT_ID", "modes"),
    /** The mode publisher's reconciliation: drivers read per page, and the most mode messages it sends per second. */
    modesReconcilePageSize: integer(env, "MODES_RECONCILE_PAGE_SIZE", 500, 1, 100_000),
    modesReconcilePerSecond: integer(env, "MODES_RECONCILE_PER_SECOND", 2_000, 1, 1_000_000),
    /** How often the mode publisher reads the database's count of skipped mode notices (it reconciles if it grew). */
    modesCheckEveryMs: integer(env, "MODES_CHECK_EVERY_MS", 5_000, 50, 600_000),
    /** Longest GET /track serves a cached answer without a notice from the database; 0 reads it every time. */
    trackCacheTtlMs: integer(env, "TRACK_CACHE_TTL_MS", 1_000, 0, 60_000),
    trackCacheMaxEntries: integer(env, "TRACK_CACHE_MAX_ENTRIES", 100_000, 1, 10_000_000),
    /**
     * Most live tracking streams one API process holds (503 TOO_MANY_STREAMS past it); 0 = the open-file limit less
     * a reserve for ordinary requests (api/modules/tracking/streams.ts), which is also the most it may be set to.
     */
    liveStreamsMax: integer(env, "LIVE_STREAMS_MAX", 0, 0, 10_000_000),
    /**
     * Database connections each API process may open for requests (its LISTEN is one more). N processes hold up to
     * N x this: 9 processes at 20 each ran PostgreSQL's max_connections out (bench:fanout, 150,000 streams).
     */
    apiDbPoolMax: integer(env, "API_DB_POOL_MAX", 20, 1, 200),
    /** POST /orders refuses (422 ORDER_LIMIT) an order whose items add up to more than this. */
    orderMaxTotalCents: integer(env, "ORDER_MAX_TOTAL_CENTS", 100_000, 1, 1_000_000_000),
    /** POST /orders refuses (422 ORDER_LIMIT) a delivery point farther than this from the restaurant. */
    orderMaxDeliveryKm: integer(env, "ORDER_MAX_DELIVERY_KM", 15, 1, 1_000),
    /** Prometheus endpoints of the bridge and the position worker, read for the operations page's health panel. */
    opsMetricsUrls: urlList(env, "OPS_METRICS_URLS", "http://127.0.0.1:9464/metrics,http://127.0.0.1:9465/metrics"),
    /** Base-map tiles ({z}/{x}/{y} template); "" draws the city outline on a plain background (no internet). */
    mapTileUrl: tileTemplate(env, "MAP_TILE_URL"),
    /** The city the pages' maps open on and outline (lib/cities.ts). */
    mapCity: choice(env, "MAP_CITY", "nyc", ["nyc", "sf"]),
  });
}

export type Config = ReturnType<typeof parseConfig>;

let loaded: Config | undefined;
/** The process-wide config, parsed on first use. */
export function config(): Config {
  loaded ??= parseConfig();
  return loaded;
}
