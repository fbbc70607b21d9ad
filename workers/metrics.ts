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
  const freshnessBuckets = [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 12.5, 15, 20, 30];
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
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2],
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
    upkeepFailures: new Counter({
      name: "upkeep_failures_total",
      help: "Scheduled upkeep runs (offline sweep, trail partitions, lag) that failed, by job",
      labelNames: ["job"],
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The broker's count of refused oversized messages: identity-guard publishes it there, retained, as a decimal. */
export const BROKER_OVERSIZED_TOPIC = "$SYS/identity-guard/oversized";

/**
 * The handler of the broker's side topics (not of positions): sets mqtt_broker_oversized_dropped from
 * BROKER_OVERSIZED_TOPIC. Anything else, or a payload that is not a count, goes to `onBadMessage` and changes nothing.
 */
export function brokerStatsHandler(
  metrics: Pick<Metrics, "brokerOversizedDropped" | "registry">,
  onBadMessage?: (topic: string, payload: string) => void,
) {
  return (topic: string, payload: Buffer): void => {
    const text = payload.toString("utf8");
    if (topic === BROKER_OVERSIZED_TOPIC && /^\d{1,15}$/.test(text)) {
      metrics.brokerOversizedDropped.set(Number(text));
      if (!metrics.registry.getSingleMetric("mqtt_broker_oversized_dropped")) {
        metrics.registry.registerMetric(metrics.brokerOversizedDropped);
      }
      return;
    }
    onBadMessage?.(topic, text);
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
