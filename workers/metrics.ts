/**
 * Prometheus metrics of a worker process, served on METRICS_PORT (0 = any free port, printed at start-up).
 * Runs on Node or Bun: node:http only.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

export function createMetrics(process: string) {
  const registry = new Registry();
  registry.setDefaultLabels({ process });
  collectDefaultMetrics({ register: registry });
  // Up to 300 s, so an overloaded run reports how late it really is rather than the last bucket for every percentile.
  const freshnessBuckets = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 12.5, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300];
  return {
    registry,
    positionsIn: new Counter({ name: "positions_in_total", help: "Positions received", registers: [registry] }),
    positionsApplied: new Counter({
      name: "positions_applied_total",
      help: "Positions applied to the database",
      registers: [registry],
    }),
    positionsRejected: new Counter({
      name: "positions_rejected_total",
      help: "Positions rejected, by reason",
      labelNames: ["reason"],
      registers: [registry],
    }),
    messages: new Counter({
      name: "mqtt_messages_total",
      help: "MQTT messages handled, by outcome",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: "batch_size_messages",
      help: "Kafka messages per applied batch",
      buckets: [1, 10, 100, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 50_000],
      registers: [registry],
    }),
    applySeconds: new Histogram({
      name: "batch_apply_seconds",
      help: "COPY + apply procedure + commit, per batch",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6],
      registers: [registry],
    }),
    transitions: new Counter({
      name: "driver_transitions_total",
      help: "Driver state transitions fired by positions",
      registers: [registry],
    }),
    consumerLag: new Gauge({
      name: "kafka_consumer_lag_messages",
      help: "Messages behind the high watermark, summed over assigned partitions",
      registers: [registry],
    }),
    freshnessFromDevice: new Histogram({
      name: "position_freshness_from_device_seconds",
      help: "Device timestamp to committed in the database",
      buckets: freshnessBuckets,
      registers: [registry],
    }),
    freshnessFromSend: new Histogram({
      name: "position_freshness_from_send_seconds",
      help: "Device timestamp of each message's newest position (the phone's send) to committed in the database",
      buckets: freshnessBuckets,
      registers: [registry],
    }),
    freshnessFromBridge: new Histogram({
      name: "position_freshness_from_bridge_seconds",
      help: "Bridge receive time to committed in the database",
      buckets: freshnessBuckets,
      registers: [registry],
    }),
    mqttInFlight: new Gauge({
      name: "mqtt_inflight_messages",
      help: "MQTT messages received and not yet acknowledged (waiting for Kafka)",
      registers: [registry],
    }),
    forwardSeconds: new Histogram({
      name: "bridge_forward_seconds",
      help: "MQTT message received to Kafka confirmed",
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers: [registry],
    }),
    mqttProblems: new Counter({
      name: "mqtt_connection_problems_total",
      help: "MQTT problems, by kind: connect_refused (CONNACK code), subscribe_refused (SUBACK 0x80), socket_error, qos0_message_lost, side_handler_error",
      labelNames: ["kind"],
      registers: [registry],
    }),
    mqttSubscribed: new Gauge({
      name: "mqtt_subscribed",
      help: "1 while the broker granted every subscription of this process, else 0 (the process is then not ready)",
      registers: [registry],
    }),
    retries: new Counter({
      name: "batch_retries_total",
      help: "Batch apply attempts that failed and were retried",
      labelNames: ["cause"],
      registers: [registry],
    }),
    deadLetters: new Counter({
      name: "dead_letters_total",
      help: "Records sent to the DLQ (one per refused message, however many of its positions were refused)",
      registers: [registry],
    }),
    brokerOversizedDropped: new Gauge({
      name: "mqtt_broker_oversized_dropped",
      help:
        "MQTT messages the broker refused as over its payload limit (identity-guard's plugin_opt_max_payload) since " +
        "the broker started; read from the retained $SYS/identity-guard/oversized (it falls back to 0 when the broker " +
        "restarts). Absent until the broker's value arrived (not 0), so absent() shows a bridge that cannot read it",
      // Registered by brokerStatsHandler with the first value: an unlabelled gauge would otherwise read 0 at once.
      registers: [],
    }),
    brokerQueueDropped: new Gauge({
      name: "mqtt_broker_queue_dropped",
      help:
        "MQTT messages the broker dropped because a client's queue was full (max_queued_messages / max_queued_bytes " +
        "in infra/mosquitto/mosquitto.conf: a disconnected persistent session such as a stopped bridge, or a client " +
        "too slow to read) since the broker started; Mosquitto's $SYS/broker/publish/messages/dropped, published " +
        "every sys_interval. Absent until the broker's value arrived",
      registers: [],
    }),
    brokerStoredMessages: new Gauge({
      name: "mqtt_broker_stored_messages",
      help:
        "Messages the broker holds (queued for sessions, in flight, retained); Mosquitto's " +
        "$SYS/broker/store/messages/count, published every sys_interval. A stopped bridge's backlog shows here before " +
        "max_queued_messages drops anything. Absent until the broker's value arrived",
      registers: [],
    }),
    notifyQueueUsage: new Gauge({
      name: "db_notify_queue_usage",
      help:
        "PostgreSQL's LISTEN/NOTIFY queue fill, 0..1 (pg_notification_queue_usage()); over tracking.notify_queue_limit " +
        "(0.5 by default) the apply procedure and the sweep skip their order notices (migration 0012)",
      registers: [registry],
    }),
    orderNoticesSkipped: new Gauge({
      name: "db_order_notices_skipped",
      help:
        "Order notices the database skipped because the notification queue was over its limit, since the database " +
        "was created (notify_queue_status(); counted by every worker's transaction that skipped, a retried one again)",
      registers: [registry],
    }),
    upkeepFailures: new Counter({
      name: "upkeep_failures_total",
      help: "The worker's own timed jobs (the lag report, the notification queue, the jobs' ages) that failed, by job",
      labelNames: ["job"],
      registers: [registry],
    }),
    upkeepJobAge: new Gauge({
      name: "upkeep_job_age_seconds",
      help:
        "Seconds since each of the database's scheduled jobs (pg_cron: the offline sweep, trail compaction, trail " +
        "partitions) last finished its work (upkeep_heartbeats(), migration 0025); one that keeps growing is failing " +
        "or not running. The sweep stamps every 5 s, the compaction every minute, the partitions every hour",
      labelNames: ["job"],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The broker's count of refused oversized messages: identity-guard publishes it there, retained, as a decimal. */
export const BROKER_OVERSIZED_TOPIC = "$SYS/identity-guard/oversized";
/**
 * Mosquitto 2.0.11's own count of outgoing messages dropped on a full client queue, since the broker started (each
 * drop episode is also logged at notice level: "Outgoing messages are being dropped for client <id>.").
 */
export const BROKER_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped";
/** Mosquitto's count of messages held in its store. */
export const BROKER_STORED_TOPIC = "$SYS/broker/store/messages/count";
/** The side topics the bridge follows (the ACL lets bridge-0/1 and tester read exactly these). */
export const BROKER_STATS_TOPICS = [BROKER_OVERSIZED_TOPIC, BROKER_DROPPED_TOPIC, BROKER_STORED_TOPIC];

type BrokerGauge = "brokerOversizedDropped" | "brokerQueueDropped" | "brokerStoredMessages";
const GAUGE_OF_TOPIC: Record<string, BrokerGauge> = {
  [BROKER_OVERSIZED_TOPIC]: "brokerOversizedDropped",
  [BROKER_DROPPED_TOPIC]: "brokerQueueDropped",
  [BROKER_STORED_TOPIC]: "brokerStoredMessages",
};

/**
 * The handler of the broker's side topics (not of positions): sets the gauge of each BROKER_STATS_TOPICS topic from
 * its decimal payload (a gauge is registered with its first value, so a bridge that cannot read it shows as absent).
 * `onDropped` hears of every growth of the broker's dropped count (the first value too, if not 0: dropped since the
 * broker started). Anything else, or a payload that is not a count, goes to `onBadMessage` and changes nothing.
 */
export function brokerStatsHandler(
  metrics: Pick<Metrics, BrokerGauge | "registry">,
  onBadMessage?: (topic: string, payload: string) => void,
  onDropped?: (newlyDropped: number, total: number) => void,
) {
  let dropped: number | undefined;
  return (topic: string, payload: Buffer): void => {
    const text = payload.toString("utf8");
    const gauge = GAUGE_OF_TOPIC[topic];
    if (gauge && /^\d{1,15}$/.test(text)) {
      const value = Number(text);
      metrics[gauge].set(value);
      const name = (metrics[gauge] as unknown as { name: string }).name;
      if (!metrics.registry.getSingleMetric(name)) metrics.registry.registerMetric(metrics[gauge]);
      if (gauge === "brokerQueueDropped") {
        // A smaller value: the broker restarted and counts from 0 again.
        const grown = dropped === undefined || value < dropped ? value : value - dropped;
        dropped = value;
        if (grown > 0) onDropped?.(grown, value);
      }
      return;
    }
    onBadMessage?.(topic, text);
  };
}

/**
 * The notification queue watch (migration 0012's notify_queue_status()): sets db_notify_queue_usage and
 * db_order_notices_skipped, and tells `onSkipped` how many notices were skipped since the last reading (the first
 * reading reports the whole count, if not 0).
 */
export function notifyQueueWatch(
  metrics: Pick<Metrics, "notifyQueueUsage" | "orderNoticesSkipped">,
  onSkipped: (newlySkipped: number, total: number, usage: number) => void,
) {
  let skipped: number | undefined;
  return (status: { usage: number; skipped: number | bigint }): void => {
    const total = Number(status.skipped);
    metrics.notifyQueueUsage.set(status.usage);
    metrics.orderNoticesSkipped.set(total);
    const grown = skipped === undefined ? total : total - skipped;
    skipped = total;
    if (grown > 0) onSkipped(grown, total, status.usage);
  };
}

/** `ready` (default: always) answers GET /ready: 200 when it holds, else 503 (e.g. the bridge without its subscription). */
export async function serveMetrics(
  registry: Registry,
  port: number,
  ready: () => boolean = () => true,
): Promise<{ port: number; close(): void }> {
  const server = createServer(async (req, res) => {
    if (req.url === "/metrics") {
      res.writeHead(200, { "content-type": registry.contentType });
      res.end(await registry.metrics());
    } else if (req.url === "/ready") {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
      res.end(ok ? '{"status":"ready"}' : '{"status":"not ready"}');
    } else if (req.url === "/health") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"status":"ok"}');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}
