/**
 * MQTT → Kafka bridge. Runs on Node (the Kafka client's addon does not work under Bun; see bin/stack).
 * Subscribes with a shared subscription so several bridges split the load; each phone message becomes one binary
 * Kafka record (lib/position-record.ts) on `driver-pos` keyed by driver id; malformed input goes to the DLQ with its
 * original bytes. A message is acknowledged to the broker only after Kafka confirmed it (or the DLQ did), so a crash
 * never loses one.
 */
import { config } from "../lib/config.ts";
import { mainReason } from "../lib/dead-letter.ts";
import { exitCodeFor } from "../lib/errors.ts";
import { createRecordProducer, sendToDlq, type RecordProducer } from "../lib/kafka.ts";
import { decodeMqttMessage } from "../lib/position.ts";
import { encodeRecord } from "../lib/position-record.ts";
import { logger } from "./log.ts";
import { BROKER_STATS_TOPICS, brokerStatsHandler, createMetrics, serveMetrics, type Metrics } from "./metrics.ts";
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

/** Turns one MQTT message into Kafka records; resolves once Kafka has all of them. */
export function createForwarder(producer: RecordProducer, metrics: Metrics, topics = { main: config().kafkaTopic, dlq: config().kafkaDlqTopic }) {
  const prefix = config().mqttTopicPrefix;
  // Once per message: the timing is a number (not prom-client's timer closures) and the work a promise chain.
  const forwarded = (startedMs: number, positions: number) => () => {
    metrics.forwardSeconds.observe((performance.now() - startedMs) / 1000);
    metrics.messages.inc({ outcome: "forwarded" });
    metrics.positionsIn.inc(positions);
  };
  function forward(fullTopic: string, payload: Buffer): Promise<void> {
    const startedMs = performance.now();
    const topic = fullTopic.slice(prefix.length);
    const decoded = decodeMqttMessage(topic, payload);
    if (!decoded.ok) {
      metrics.messages.inc({ outcome: "rejected" });
      metrics.positionsRejected.inc({ reason: decoded.reason });
      metrics.deadLetters.inc();
      return sendToDlq(producer, topics.dlq, [
        { key: null, value: payload, reason: decoded.reason, source: `mqtt:${topic}`, detail: decoded.detail },
      ]);
    }
    // The binary record (lib/position-record.ts): the same content as JSON v1, without JSON's cost on either side.
    const value = encodeRecord(decoded.driverId, Date.now(), decoded.positions);
    const sent = producer.send({ topic: topics.main, key: decoded.driverId, value });
    const done = forwarded(startedMs, decoded.positions.length);
    if (decoded.rejects.length === 0) return sent.then(done);
    for (const r of decoded.rejects) metrics.positionsRejected.inc({ reason: r.reason });
    // One dead letter for the message, its bytes once, its refused positions listed by index (not one copy each).
    metrics.deadLetters.inc();
    const deadLettered = sendToDlq(producer, topics.dlq, [
      {
        key: decoded.driverId,
        value: payload,
        reason: mainReason(decoded.rejects),
        source: `mqtt:${topic}`,
        detail: `${decoded.rejects.length} of ${decoded.rejects.length + decoded.positions.length} positions refused`,
        refused: decoded.rejects,
      },
    ]);
    return Promise.all([sent, deadLettered]).then(done);
  }
  // Whatever throws becomes the returned promise's rejection (the message then stays unacknowledged), as it did when
  // this was an async function.
  return (fullTopic: string, payload: Buffer): Promise<void> => {
    try {
      return forward(fullTopic, payload);
    } catch (error) {
      return Promise.reject(error);
    }
  };
}

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
