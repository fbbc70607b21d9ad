/**
 * MQTT → Kafka bridge. Runs on Node (the Kafka client's addon does not work under Bun; see bin/stack).
 * Subscribes with a shared subscription so several bridges split the load; each phone message becomes one binary
 * Kafka record (lib/position-record.ts) on `driver-pos` keyed by driver id; malformed input goes to the DLQ with its
 * original bytes. A message is acknowledged to the broker only after Kafka confirmed it (or the DLQ did), so a crash
 * never loses one.
 */
import { config } from "../lib/config.ts";
import { exitCodeFor } from "../lib/errors.ts";
import { createRecordProducer } from "../lib/kafka.ts";
import { createForwarder } from "./forwarder.ts";
import { logger } from "./log.ts";
import { BROKER_STATS_TOPICS, brokerStatsHandler, createMetrics, serveMetrics } from "./metrics.ts";
import { startSubscriber } from "./mqtt-subscriber.ts";
import { createProgressWatch } from "./progress-watch.ts";

const log = logger("bridge");

/** The broker URL without its password, for logs. */
const redactedUrl = (raw: string) => {
  const u = new URL(raw);
  if (u.password) u.password = "***";
  return u.toString();
};

export const bridgeTopics = (group: string, prefix: string) =>
  ["drivers/+/location", "drivers/+/l", "drivers/+/b", "sensor/data"].map((t) => `$share/${group}/${prefix}${t}`);

async function main() {
  const cfg = config();
  const metrics = createMetrics("bridge");
  const producer = createRecordProducer(cfg.kafkaBootstrapServers, "bridge");
  await producer.connect();
  const forwardToKafka = createForwarder(producer, metrics);
  // Ready only while messages move: a message that arrived and none forwarded since, for BRIDGE_STALLED_AFTER_MS (Kafka
  // refusing or unreachable), makes /ready answer 503, as a missing subscription does.
  const progress = createProgressWatch(cfg.bridgeStalledAfterMs);
  const progressed = () => progress.progressed();
  const forward = (topic: string, payload: Buffer) => {
    progress.arrived();
    return forwardToKafka(topic, payload).then(progressed);
  };
  const clientId = cfg.bridgeClientId;
  const subscriber = startSubscriber({
    url: cfg.mqttUrl,
    clientId,
    topics: bridgeTopics(cfg.bridgeShareGroup, cfg.mqttTopicPrefix),
    onMessage: forward,
    // The broker's counts as gauges: oversized messages identity-guard refused (mqtt_broker_oversized_dropped),
    // messages Mosquitto dropped on a full client queue (mqtt_broker_queue_dropped, logged here as they grow) and
    // messages it holds (mqtt_broker_stored_messages). Side topics at QoS 0, never forwarded to Kafka; broker-wide,
    // so without the run's topic prefix.
    sideTopics: BROKER_STATS_TOPICS,
    onSideMessage: brokerStatsHandler(
      metrics,
      (topic, payload) => log.warn("unexpected broker stats message", { topic, payload: payload.slice(0, 100) }),
      (newlyDropped, total) =>
        log.error("the MQTT broker dropped messages: a client's queue was full (max_queued_messages/bytes)", {
          newlyDropped,
          sinceBrokerStart: total,
        }),
    ),
    onStatus: (event) => log.info(`mqtt ${event}`, { clientId }),
    // Loud: a bridge refused by the broker, or without its subscription, forwards nothing while looking alive.
    onProblem: (kind, detail) => {
      metrics.mqttProblems.inc({ kind });
      log.error(`mqtt ${kind}`, { clientId, detail });
    },
  });
  let stalledLogged = false;
  const ready = () => {
    const stalled = progress.stalled();
    if (stalled !== stalledLogged) {
      stalledLogged = stalled;
      if (stalled) log.error("not ready: messages are waiting and none was forwarded", { inFlight: subscriber.inFlight(), stalledAfterMs: cfg.bridgeStalledAfterMs });
      else log.info("forwarding again");
    }
    return subscriber.subscribed() && !stalled;
  };
  setInterval(() => {
    metrics.mqttInFlight.set(subscriber.inFlight());
    metrics.mqttSubscribed.set(subscriber.subscribed() ? 1 : 0);
    ready(); // logs a stall as it starts and ends, probed or not
  }, 500).unref();
  const server = await serveMetrics(metrics.registry, cfg.metricsPort, ready);
  log.info("started", { mqtt: redactedUrl(cfg.mqttUrl), kafka: cfg.kafkaBootstrapServers, metricsPort: server.port, clientId });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("stopping", { signal, inFlight: subscriber.inFlight() });
    await subscriber.close();
    await producer.disconnect();
    server.close();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

if (import.meta.main || process.argv[1]?.endsWith("bridge.js")) {
  main().catch((err) => {
    log.error("fatal", { error: String(err) });
    process.exit(exitCodeFor(err));
  });
}
